//! The writing side of one Lingma connection: a queue of whole WebSocket frames, bounded in
//! bytes, and the writer thread (`lingma-wr-<name>`, owned and joined by the `Connection`)
//! that alone writes them to the socket, under a deadline. Everyone else who writes
//! (`Connection::send`, the reader's replies to Lingma's requests, tungstenite's own pong and
//! close replies on the reader's `WebSocket`) only enqueues, so a Lingma that stops reading
//! stalls nothing but this thread. A write that misses its deadline, or a queue over its
//! bound, marks the connection stuck (`Link::stuck`): the socket is shut down, which ends the
//! reader and with it every waiter, and the supervisor restarts the instance.
//!
//! The deadline runs while nothing moves: no byte of ours taken and none of Lingma's heard.
//! A Lingma that does not read while it streams to us (its reader waits for its own blocked
//! writes, as the simulator's does during a turn) is busy, not stuck: our reader keeps
//! taking what it sends, so it gets to read again. The queue bound catches one that streams
//! for ever without reading.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::jsonrpc;

/// Bytes that may wait for the writer: two of the largest frames Lingma takes. A Lingma that
/// reads keeps the queue near empty, and one that stops is caught by the write deadline long
/// before; the bound catches one that reads too slowly to ever miss it.
pub(super) const MAX_QUEUED_BYTES: usize = 2 * jsonrpc::MAX_FRAME_BYTES;
/// The writer hands the kernel up to this many queued bytes in one call.
const BATCH_BYTES: usize = 256 * 1024;
/// ... and at most this many frames (`writev` takes 1024 slices at most).
const BATCH_FRAMES: usize = 256;

/// The bytes in the queue, against its bound. Pure bookkeeping, shared by the senders and the
/// writer.
#[derive(Debug)]
pub(super) struct Backlog {
    queued: AtomicUsize,
    limit: usize,
}

impl Backlog {
    pub(super) fn new(limit: usize) -> Self {
        Backlog {
            queued: AtomicUsize::new(0),
            limit,
        }
    }

    /// Counts `len` more bytes in, or refuses them (counting nothing) when that would take
    /// the queue over its bound. One frame is always taken into an empty queue, whatever its
    /// size: frame sizes are bounded where frames are made.
    pub(super) fn admit(&self, len: usize) -> Result<(), usize> {
        let before = self.queued.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before + len > self.limit {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            return Err(before);
        }
        Ok(())
    }

    /// Counts `len` written bytes out.
    pub(super) fn written(&self, len: usize) {
        self.queued.fetch_sub(len, Ordering::AcqRel);
    }

    #[cfg(test)]
    fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

/// What the senders, the writer and the reader share about one socket.
pub(super) struct Link {
    name: String,
    socket: TcpStream,
    backlog: Backlog,
    /// Why the connection was given up as stuck; the first reason wins.
    stuck: Mutex<Option<String>>,
    /// Set by `close`: a failed write after it is expected and not worth a word.
    closing: AtomicBool,
    /// When Lingma last sent something, in nanoseconds since `opened`.
    heard: AtomicU64,
    opened: Instant,
}

impl Link {
    pub(super) fn new(name: &str, socket: TcpStream, limit: usize) -> Self {
        Link {
            name: name.to_string(),
            socket,
            backlog: Backlog::new(limit),
            stuck: Mutex::new(None),
            closing: AtomicBool::new(false),
            heard: AtomicU64::new(0),
            opened: Instant::now(),
        }
    }

    /// Lingma sent something (the reader calls this for every message).
    pub(super) fn heard(&self) {
        let ns = self.opened.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        self.heard.store(ns, Ordering::Release);
    }

    fn last_heard(&self) -> Instant {
        self.opened + Duration::from_nanos(self.heard.load(Ordering::Acquire))
    }

    /// Gives the connection up because Lingma does not take our writes: logs why, and shuts
    /// the socket down, which ends the reader (it reports `why` as the connection's end).
    pub(super) fn stuck(&self, why: String) {
        {
            let mut stuck = self.stuck.lock().unwrap_or_else(|p| p.into_inner());
            if stuck.is_some() || self.closing.load(Ordering::Acquire) {
                return;
            }
            log::error!(
                "[{}] {why}; giving the connection up, the instance will be restarted",
                self.name
            );
            *stuck = Some(why);
        }
        self.shutdown();
    }

    /// Why the connection was given up as stuck, if it was.
    pub(super) fn stuck_reason(&self) -> Option<String> {
        self.stuck.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Shuts the socket down for an orderly close: the reader wakes, a blocked write fails.
    pub(super) fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.shutdown();
    }

    fn shutdown(&self) {
        let _ = self.socket.shutdown(Shutdown::Both);
    }

    /// Puts one whole frame in the queue, or fails the connection when the queue is full.
    fn enqueue(&self, frames: &Sender<Vec<u8>>, frame: &[u8]) -> io::Result<()> {
        if self.stuck_reason().is_some() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the connection was given up",
            ));
        }
        if let Err(queued) = self.backlog.admit(frame.len()) {
            self.stuck(format!(
                "writes to Lingma are stuck: {queued} bytes wait to be written, no room for \
                 {} more (limit {} bytes); Lingma reads too slowly or not at all",
                frame.len(),
                self.backlog.limit
            ));
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the write queue is full",
            ));
        }
        frames.send(frame.to_vec()).map_err(|_| {
            self.backlog.written(frame.len());
            io::Error::new(io::ErrorKind::BrokenPipe, "the writer has stopped")
        })
    }
}

/// A tungstenite `WebSocket`'s stream: reads come from the socket, and every write is one
/// whole frame for the queue. With `write_buffer_size(0)` tungstenite formats each frame
/// (pongs and close replies included) into an empty buffer and hands it over in a single
/// `write` call, which this always takes whole, so frames from the connection's two
/// `WebSocket`s never interleave.
pub(super) struct QueuedStream {
    read: TcpStream,
    frames: Sender<Vec<u8>>,
    link: Arc<Link>,
}

impl QueuedStream {
    pub(super) fn new(read: TcpStream, frames: Sender<Vec<u8>>, link: Arc<Link>) -> Self {
        QueuedStream { read, frames, link }
    }

    /// Another stream into the same queue (for a `WebSocket` that never reads).
    pub(super) fn try_clone(&self) -> io::Result<Self> {
        Ok(QueuedStream {
            read: self.read.try_clone()?,
            frames: self.frames.clone(),
            link: Arc::clone(&self.link),
        })
    }
}

impl Read for QueuedStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read.read(buf)
    }
}

impl Write for QueuedStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.link.enqueue(&self.frames, buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Starts `lingma-wr-<name>`, which writes what arrives on `frames` to `socket` until every
/// sender is gone or a write fails.
pub(super) fn spawn(
    name: &str,
    socket: TcpStream,
    deadline: Duration,
    link: Arc<Link>,
    frames: Receiver<Vec<u8>>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("lingma-wr-{name}"))
        .spawn(move || writer_loop(socket, deadline, &link, &frames))
}

fn writer_loop(mut socket: TcpStream, deadline: Duration, link: &Link, frames: &Receiver<Vec<u8>>) {
    while let Ok(first) = frames.recv() {
        let mut batch = vec![first];
        let mut bytes = batch[0].len();
        while bytes < BATCH_BYTES && batch.len() < BATCH_FRAMES {
            match frames.try_recv() {
                Ok(frame) => {
                    bytes += frame.len();
                    batch.push(frame);
                }
                Err(_) => break,
            }
        }
        let wrote = write_within(&mut socket, &batch, deadline, &|| link.last_heard());
        link.backlog.written(bytes);
        match wrote {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                link.stuck(format!(
                    "writes to Lingma are stuck: no byte of a {bytes}-byte write taken and \
                     nothing heard from Lingma for {}s (lingma_write_timeout_sec); it stopped \
                     reading",
                    deadline.as_secs()
                ));
                return;
            }
            Err(e) => {
                // The socket is gone (Lingma closed it, or we did): the reader sees it too.
                if !link.closing.load(Ordering::Acquire) {
                    log::debug!("[{}] write to Lingma failed: {e}", link.name);
                }
                link.shutdown();
                return;
            }
        }
    }
}

/// Writes every frame of `batch`; partial writes go on with the rest. `TimedOut` once nothing
/// has moved for `deadline`: no byte taken, and nothing heard from Lingma since (`heard`
/// says when it last sent something).
fn write_within(
    socket: &mut TcpStream,
    batch: &[Vec<u8>],
    deadline: Duration,
    heard: &dyn Fn() -> Instant,
) -> io::Result<()> {
    let mut moved = Instant::now();
    let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|f| IoSlice::new(f)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let quiet = moved.max(heard()).elapsed();
        let left = deadline.saturating_sub(quiet);
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        socket.set_write_timeout(Some(left))?;
        match socket.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                IoSlice::advance_slices(&mut rest, n);
                moved = Instant::now();
            }
            // A send timeout (SO_SNDTIMEO) looks like this: see whether anything moved.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn the_backlog_takes_frames_up_to_its_bound_and_room_comes_back_as_they_are_written() {
        let b = Backlog::new(100);
        assert_eq!(b.admit(60), Ok(()));
        assert_eq!(b.admit(40), Ok(()), "exactly full is fine");
        assert_eq!(b.admit(1), Err(100), "one byte over is refused");
        assert_eq!(b.queued(), 100, "a refused frame is not counted");
        b.written(60);
        assert_eq!(b.admit(50), Ok(()));
        assert_eq!(b.queued(), 90);
    }

    #[test]
    fn one_frame_larger_than_the_bound_goes_into_an_empty_queue_only() {
        let b = Backlog::new(100);
        assert_eq!(b.admit(1000), Ok(()));
        assert_eq!(b.admit(1), Err(1000));
        b.written(1000);
        assert_eq!(b.admit(1), Ok(()));
        assert_eq!(b.admit(1000), Err(1));
    }

    /// A connected pair of loopback sockets.
    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    /// More than any socket buffer holds.
    fn too_big() -> Vec<Vec<u8>> {
        vec![vec![b'x'; 64 << 20]]
    }

    #[test]
    fn a_write_the_peer_never_reads_times_out_instead_of_blocking() {
        let (mut ours, _theirs) = pair();
        let never = Instant::now();
        let e =
            write_within(&mut ours, &too_big(), Duration::from_millis(300), &|| never).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn a_peer_that_sends_while_it_does_not_read_is_waited_for() {
        let (mut ours, _theirs) = pair();
        let start = Instant::now();
        // The peer "sends" for 900 ms, then falls silent.
        let busy = Duration::from_millis(900);
        let heard = move || Instant::now().min(start + busy);
        let e =
            write_within(&mut ours, &too_big(), Duration::from_millis(300), &heard).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(
            start.elapsed() >= busy,
            "gave up after {:?}",
            start.elapsed()
        );
    }

    #[test]
    fn the_writer_puts_queued_frames_on_the_wire_in_order_and_stops_with_its_senders() {
        let (ours, mut theirs) = pair();
        let link = Arc::new(Link::new("t", ours.try_clone().unwrap(), 1 << 20));
        let (tx, rx) = crossbeam_channel::unbounded();
        let read = ours.try_clone().unwrap();
        let writer = spawn("t", ours, Duration::from_secs(5), Arc::clone(&link), rx).unwrap();
        let mut stream = QueuedStream::new(read, tx, Arc::clone(&link));
        for i in 0..1000 {
            stream.write_all(format!("frame {i};").as_bytes()).unwrap();
        }
        drop(stream);
        writer.join().unwrap();
        let expected: String = (0..1000).map(|i| format!("frame {i};")).collect();
        let mut got = vec![0; expected.len()];
        theirs.read_exact(&mut got).unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), expected);
        assert_eq!(link.backlog.queued(), 0);
        assert_eq!(link.stuck_reason(), None);
    }

    #[test]
    fn a_full_queue_gives_the_connection_up() {
        let (ours, _theirs) = pair();
        let link = Arc::new(Link::new("t", ours.try_clone().unwrap(), 100));
        // No writer: nothing leaves the queue.
        let (tx, _rx) = crossbeam_channel::unbounded();
        let mut stream = QueuedStream::new(ours, tx, Arc::clone(&link));
        stream.write_all(&[b'a'; 80]).unwrap();
        let e = stream.write_all(&[b'b'; 80]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        let why = link.stuck_reason().expect("given up");
        assert!(why.contains("writes to Lingma are stuck"), "{why}");
        assert!(stream.write_all(b"c").is_err(), "nothing more is taken");
    }
}
