//! lingma-gateway: the writer a response goes through. Every stretch of writing that ends in
//! a flush (a whole plain response, one event of a stream) must reach the socket within
//! `send_timeout`, else it fails with `TimedOut`: a client that stops reading (or reads a
//! byte now and then) cannot hold the worker writing to it. When the writer is dropped, the
//! connection's thread learns whether the response went out whole, and only then reads the
//! next request head: one request per connection at a time.

use std::io::{self, BufWriter, ErrorKind, Write};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::connection::Connection;

/// A connection's write side, shared by the connection's thread and its responses' writers
/// (one at a time), with the send timeout the socket has now (so that a response whose
/// first stretch needs the same timeout as the last one's sets nothing).
pub(crate) struct Output {
    stream: Connection,
    set_to: Mutex<Option<Duration>>,
}

impl Output {
    pub(crate) fn new(stream: Connection) -> Arc<Self> {
        Arc::new(Output {
            stream,
            set_to: Mutex::new(None),
        })
    }

    /// Sets the socket's send timeout, unless it is within 50 ms of what it is already.
    pub(crate) fn send_timeout(&self, t: Duration) -> io::Result<()> {
        let mut set_to = self.set_to.lock().unwrap_or_else(|p| p.into_inner());
        let near = |set: Duration| {
            set <= t + Duration::from_millis(50) && t <= set + Duration::from_millis(50)
        };
        if !set_to.is_some_and(near) {
            self.stream.set_write_timeout(Some(t))?;
            *set_to = Some(t);
        }
        Ok(())
    }

    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write_ref(buf)
    }

    pub(crate) fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        self.stream.shutdown(how)
    }
}

/// Shortest timeout the socket accepts (zero means "none" to the OS).
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// The socket, with the deadline of the stretch being written.
struct DeadlineSocket {
    output: Arc<Output>,
    timeout: Duration,
    /// When the stretch being written began (the first write since the last flush).
    since: Option<Instant>,
}

impl DeadlineSocket {
    fn arm(&mut self) -> io::Result<()> {
        let since = *self.since.get_or_insert_with(Instant::now);
        let left = self.timeout.saturating_sub(since.elapsed());
        if left < MIN_TIMEOUT {
            return Err(timed_out());
        }
        self.output.send_timeout(left)
    }
}

fn timed_out() -> io::Error {
    io::Error::new(
        ErrorKind::TimedOut,
        "the client did not read the response in time",
    )
}

impl Write for DeadlineSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm()?;
        match self.output.write(buf) {
            // SO_SNDTIMEO expiring shows as WouldBlock on Unix.
            Err(e) if e.kind() == ErrorKind::WouldBlock => Err(timed_out()),
            other => other,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.since = None;
        Ok(())
    }
}

/// A response's writer; see the module comment.
pub(crate) struct ResponseWriter {
    out: BufWriter<DeadlineSocket>,
    /// Told `true` when the response went out whole, `false` when a write failed.
    done: Option<Sender<bool>>,
    failed: bool,
}

impl ResponseWriter {
    pub(crate) fn new(output: Arc<Output>, send_timeout: Duration, done: Sender<bool>) -> Self {
        ResponseWriter {
            out: BufWriter::with_capacity(
                8 * 1024,
                DeadlineSocket {
                    output,
                    timeout: send_timeout,
                    since: None,
                },
            ),
            done: Some(done),
            failed: false,
        }
    }

    fn note<T>(&mut self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r {
            if !self.failed && e.kind() == ErrorKind::TimedOut {
                log::info!("a client did not read its response in time; closing");
            }
            self.failed = true;
        }
        r
    }
}

impl Write for ResponseWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::new(ErrorKind::BrokenPipe, "the response failed"));
        }
        let r = self.out.write(buf);
        self.note(r)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::new(ErrorKind::BrokenPipe, "the response failed"));
        }
        let r = self.out.flush();
        self.note(r)
    }
}

impl Drop for ResponseWriter {
    fn drop(&mut self) {
        if !self.failed {
            let r = self.out.flush();
            let _ = self.note(r);
        }
        if let Some(done) = self.done.take() {
            let _ = done.send(!self.failed);
        }
    }
}
