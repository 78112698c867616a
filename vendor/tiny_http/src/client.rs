//! lingma-gateway: one client connection, served on its own thread, one request at a time.
//!
//! For each request the thread reads the head (strict grammar, `head.rs`) within the head
//! deadline, asks the server's body policy whether the body is wanted, reads the whole body
//! within the body deadline and the server's body budget, hands the request to the queue,
//! and waits until its response is finished. Only then is the next head read, so a request
//! is in flight alone, whatever the client pipelines. A response after which the stream
//! cannot be trusted to be at a request boundary (a body not read whole, a refused head,
//! `Connection: close`, HTTP/1.0) closes the connection, lingering: the write side is shut
//! and whatever the client still sends is read and dropped for a while, so a client still
//! writing its body reads the answer instead of a reset.

use std::convert::TryFrom;
use std::io::{self, ErrorKind, Read};
use std::net::{Shutdown, SocketAddr};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::chunked::ChunkedDecoder;
use crate::connection::Connection;
use crate::head::{Framing, Head, HeadParser, Refusal};
use crate::request::{BodyPolicy, BodyStatus};
use crate::util::{Budget, Phase, Reservation, Tracked};
use crate::writer::{Output, ResponseWriter};
use crate::{Request, ServerOptions};

/// Shortest timeout the socket accepts (zero means "none" to the OS).
const MIN_TIMEOUT: Duration = Duration::from_millis(1);
/// A connection's input buffer starts this small and grows only for a large head.
const INITIAL_BUFFER: usize = 4 * 1024;
/// The most body bytes read from the socket at once.
const BODY_READ: usize = 64 * 1024;

/// What every connection of a server shares.
pub(crate) struct Shared {
    pub options: ServerOptions,
    pub budget: Arc<Budget>,
}

/// The connection's read side with what was read but not used yet (the rest of a head's
/// read, or pipelined requests: they wait here, bounded by the buffer, for their turn).
struct Input {
    stream: Connection,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    timeout: Option<Duration>,
}

impl Input {
    fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    fn set_timeout(&mut self, t: Duration) -> io::Result<()> {
        // Whole tenths of a second (a deadline ends up to 0.1 s early), so that reads close
        // together need no new system call each.
        let tenths = t.as_millis() / 100;
        let t = if tenths > 0 {
            Duration::from_millis(tenths as u64 * 100)
        } else {
            t.max(MIN_TIMEOUT)
        };
        if self.timeout != Some(t) {
            self.stream.set_read_timeout(Some(t))?;
            self.timeout = Some(t);
        }
        Ok(())
    }

    /// Reads more into the buffer (at most `cap` bytes buffered), waiting up to `timeout`.
    fn fill(&mut self, timeout: Duration, cap: usize) -> io::Result<usize> {
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < cap {
                let grown = (self.buf.len() * 2).clamp(INITIAL_BUFFER, cap);
                self.buf.resize(grown, 0);
            } else {
                return Err(io::Error::other("input buffer full"));
            }
        }
        self.set_timeout(timeout)?;
        let n = self.stream.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Reads into `dst`: buffered bytes first, else straight from the socket.
    fn read_into(&mut self, dst: &mut [u8], timeout: Duration) -> io::Result<usize> {
        let buffered = self.buffered();
        if !buffered.is_empty() {
            let n = buffered.len().min(dst.len());
            dst[..n].copy_from_slice(&buffered[..n]);
            self.consume(n);
            return Ok(n);
        }
        self.set_timeout(timeout)?;
        self.stream.read(dst)
    }

    /// Gives back a buffer that a large head made grow.
    fn shrink(&mut self) {
        if self.buf.len() > 4 * INITIAL_BUFFER && self.end - self.start <= INITIAL_BUFFER {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            self.buf.truncate(INITIAL_BUFFER);
            self.buf.shrink_to_fit();
        }
    }
}

/// Hands the connection's input to an upgraded stream: buffered bytes first.
impl Read for Input {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        let buffered = self.buffered();
        if !buffered.is_empty() {
            let n = buffered.len().min(dst.len());
            dst[..n].copy_from_slice(&buffered[..n]);
            self.consume(n);
            return Ok(n);
        }
        self.stream.read(dst)
    }
}

fn timed_out(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Why reading a head ended without one.
enum NoHead {
    /// The client closed, went silent between requests, or the socket failed: close
    /// without a word.
    Quiet,
    /// Answer this, then close.
    Refused(Refusal),
}

/// After a request: what the connection does next.
enum Next {
    KeepAlive,
    /// Close, lingering so the client can read what it was sent.
    Linger,
    /// Close at once (the client is gone, or the connection now belongs to someone else).
    Close,
}

pub(crate) struct ClientConnection {
    input: Option<Input>,
    /// The write side: what the connection itself writes (`100 Continue`, refusals) and
    /// each response's writer, in turn.
    output: Arc<Output>,
    remote_addr: Option<SocketAddr>,
    tracked: Arc<Tracked>,
    shared: Arc<Shared>,
}

impl ClientConnection {
    pub(crate) fn new(
        mut stream: Connection,
        tracked: Arc<Tracked>,
        shared: Arc<Shared>,
    ) -> io::Result<ClientConnection> {
        let remote_addr = stream.peer_addr()?;
        let output = Output::new(stream.try_clone()?);
        Ok(ClientConnection {
            input: Some(Input {
                stream,
                buf: vec![0; INITIAL_BUFFER],
                start: 0,
                end: 0,
                timeout: None,
            }),
            output,
            remote_addr,
            tracked,
            shared,
        })
    }

    /// Serves requests until the connection ends; each goes to `deliver`.
    pub(crate) fn serve(mut self, deliver: &dyn Fn(Request)) {
        loop {
            match self.one_request(deliver) {
                Next::KeepAlive => {
                    if let Some(input) = self.input.as_mut() {
                        input.shrink();
                    }
                }
                Next::Linger => return self.linger(),
                Next::Close => return,
            }
        }
    }

    fn input(&mut self) -> &mut Input {
        self.input.as_mut().expect("input taken only by an upgrade")
    }

    fn one_request(&mut self, deliver: &dyn Fn(Request)) -> Next {
        self.tracked.set(Phase::Idle);
        let head = match self.read_head() {
            Ok(head) => head,
            Err(NoHead::Quiet) => return Next::Close,
            Err(NoHead::Refused(r)) => {
                self.refuse(&r);
                return Next::Linger;
            }
        };
        let framing = head
            .check_host()
            .and_then(|()| head.framing())
            .and_then(|f| head.expects_continue().map(|c| (f, c)));
        let (framing, expects_continue) = match framing {
            Ok(f) => f,
            Err(r) => {
                self.refuse(&r);
                return Next::Linger;
            }
        };
        let upgrade = framing == Framing::None
            && head.connection_has("upgrade")
            && head.headers.iter().any(|h| h.field.equiv("Upgrade"));
        let declared = match framing {
            Framing::Length(n) => Some(n),
            _ => None,
        };
        let (done_tx, done_rx) = mpsc::channel();
        let writer = ResponseWriter::new(
            Arc::clone(&self.output),
            self.shared.options.send_timeout,
            done_tx,
        );
        let keep_alive = head.keep_alive() && !upgrade;
        let mut rq = Request::new(
            head,
            self.remote_addr,
            Box::new(writer),
            declared,
            !keep_alive,
        );
        let policy = (self.shared.options.body_policy)(&rq);
        match (framing, policy) {
            (Framing::None, _) => {}
            (_, BodyPolicy::Ignore) => rq.set_body(BodyStatus::Unread, Vec::new(), None),
            (Framing::Length(n), BodyPolicy::Read { limit }) if n > limit => {
                rq.set_body(BodyStatus::TooLarge { limit }, Vec::new(), None)
            }
            (framing, BodyPolicy::Read { limit }) => {
                if expects_continue && self.write_raw(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
                    return Next::Close;
                }
                match self.read_body(framing, limit) {
                    Some((status, bytes, reservation)) => {
                        rq.set_body(status, bytes, Some(reservation))
                    }
                    // The client went away mid-body (or was closed at the cap, and told).
                    None => return Next::Close,
                }
            }
        }
        if upgrade {
            if let Some(input) = self.input.take() {
                rq.set_upgrade_source(Box::new(input));
            }
        }
        let will_close = rq.will_close();
        self.tracked.set(Phase::Serving);
        deliver(rq);
        // The response is done when its writer is dropped; a dropped sender counts as failed.
        let whole = done_rx.recv().unwrap_or(false);
        if upgrade || !whole {
            Next::Close
        } else if will_close {
            Next::Linger
        } else {
            Next::KeepAlive
        }
    }

    /// Reads one request head: the wait for its first byte is bounded by the idle timeout,
    /// the head itself by the head deadline from that byte on.
    fn read_head(&mut self) -> Result<Head, NoHead> {
        let options = &self.shared.options;
        let (idle, head_timeout, max_head) = (
            options.idle_timeout,
            options.head_timeout,
            options.max_head_bytes,
        );
        let mut parser = HeadParser::new(max_head);
        let mut since = None;
        loop {
            if since.is_none() && !self.input().buffered().is_empty() {
                since = Some(Instant::now());
                self.tracked.set(Phase::Head);
            }
            match parser.advance(self.input().buffered()) {
                Ok(Some((head, used))) => {
                    self.input().consume(used);
                    return Ok(head);
                }
                Ok(None) => {}
                Err(r) => return Err(NoHead::Refused(r)),
            }
            let timeout = match since {
                None => idle,
                Some(t) => {
                    let left = head_timeout.saturating_sub(t.elapsed());
                    if left < MIN_TIMEOUT {
                        return Err(self.head_too_slow());
                    }
                    left
                }
            };
            match self.input().fill(timeout, max_head + INITIAL_BUFFER) {
                Ok(0) if self.tracked.evicted() && since.is_some() => {
                    return Err(NoHead::Refused(at_the_cap()))
                }
                Ok(0) => return Err(NoHead::Quiet),
                Ok(_) => {}
                Err(e) if timed_out(&e) && since.is_some() => return Err(self.head_too_slow()),
                Err(_) => return Err(NoHead::Quiet),
            }
        }
    }

    fn head_too_slow(&self) -> NoHead {
        log::info!("a client took too long to send its request head; closing");
        NoHead::Refused(Refusal {
            status: 408,
            reason: "the request head did not arrive in time".into(),
        })
    }

    /// Reads a whole body within the body deadline, the policy's `limit` and the server's
    /// body budget. `None`: the client went away (nothing to answer).
    fn read_body(
        &mut self,
        framing: Framing,
        limit: u64,
    ) -> Option<(BodyStatus, Vec<u8>, Reservation)> {
        self.tracked.set(Phase::Body);
        let deadline = Instant::now() + self.shared.options.body_timeout;
        let idle = self.shared.options.idle_timeout;
        let mut reservation = Reservation::new(&self.shared.budget);
        let mut body = Vec::new();
        let outcome = match framing {
            Framing::Length(n) => self.read_length(n, deadline, idle, &mut body, &mut reservation),
            Framing::Chunked => {
                self.read_chunked(limit, deadline, idle, &mut body, &mut reservation)
            }
            Framing::None => Ok(BodyStatus::Complete),
        };
        match outcome {
            Ok(status) => {
                if status != BodyStatus::Complete {
                    body = Vec::new();
                    reservation = Reservation::new(&self.shared.budget);
                }
                if status == BodyStatus::TimedOut {
                    log::info!("a client took too long to send its request body; closing");
                }
                Some((status, body, reservation))
            }
            Err(()) => {
                if self.tracked.evicted() {
                    self.refuse(&at_the_cap());
                }
                None
            }
        }
    }

    fn read_length(
        &mut self,
        n: u64,
        deadline: Instant,
        idle: Duration,
        body: &mut Vec<u8>,
        reservation: &mut Reservation,
    ) -> Result<BodyStatus, ()> {
        let n = usize::try_from(n).map_err(|_| ())?;
        // Only the address space is taken here; pages are touched as bytes arrive.
        body.reserve_exact(n);
        while body.len() < n {
            let want = (n - body.len()).min(BODY_READ);
            if !reservation.grow(want as u64) {
                return Ok(BodyStatus::Overloaded);
            }
            let Some(timeout) = left(deadline, idle) else {
                return Ok(BodyStatus::TimedOut);
            };
            let old = body.len();
            body.resize(old + want, 0);
            let got = self.input().read_into(&mut body[old..], timeout);
            match got {
                Ok(0) => return Err(()),
                Ok(k) => {
                    body.truncate(old + k);
                    reservation.shrink((want - k) as u64);
                }
                Err(e) if timed_out(&e) => return Ok(BodyStatus::TimedOut),
                Err(_) => return Err(()),
            }
        }
        Ok(BodyStatus::Complete)
    }

    fn read_chunked(
        &mut self,
        limit: u64,
        deadline: Instant,
        idle: Duration,
        body: &mut Vec<u8>,
        reservation: &mut Reservation,
    ) -> Result<BodyStatus, ()> {
        let mut decoder = ChunkedDecoder::new();
        loop {
            let before = body.len();
            let input = self.input();
            match decoder.feed(input.buffered(), body) {
                Ok(used) => input.consume(used),
                Err(m) => return Ok(BodyStatus::Malformed(m.0)),
            }
            if body.len() as u64 > limit {
                return Ok(BodyStatus::TooLarge { limit });
            }
            if !reservation.grow((body.len() - before) as u64) {
                return Ok(BodyStatus::Overloaded);
            }
            if decoder.is_done() {
                return Ok(BodyStatus::Complete);
            }
            let Some(timeout) = left(deadline, idle) else {
                return Ok(BodyStatus::TimedOut);
            };
            match self.input().fill(timeout, 4 * INITIAL_BUFFER + BODY_READ) {
                Ok(0) => return Err(()),
                Ok(_) => {}
                Err(e) if timed_out(&e) => return Ok(BodyStatus::TimedOut),
                Err(_) => return Err(()),
            }
        }
    }

    fn write_raw(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        self.output.send_timeout(self.shared.options.send_timeout)?;
        while !bytes.is_empty() {
            match self.output.write(bytes) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Answers a request the connection refused itself (its head, or its framing). The body
    /// carries both the OpenAI (`error.message`, `error.type`) and the Anthropic (`type:
    /// error`) fields, since the route cannot be trusted.
    fn refuse(&mut self, r: &Refusal) {
        let kind = match r.status {
            503 => "overloaded_error",
            _ => "invalid_request_error",
        };
        let body = format!(
            "{{\"type\":\"error\",\"error\":{{\"type\":\"{kind}\",\"message\":{}}}}}",
            json_string(&r.reason)
        );
        let reason = crate::StatusCode(r.status).default_reason_phrase();
        let head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            r.status,
            body.len()
        );
        let _ = self.write_raw(format!("{head}{body}").as_bytes());
    }

    /// Closes gracefully: no more writes, then what the client still sends is read and
    /// dropped until it closes, goes quiet, or the linger time is up. Closing with unread
    /// input would reset the connection and could destroy the answer in flight.
    fn linger(mut self) {
        self.tracked.set(Phase::Lingering);
        let _ = self.output.shutdown(Shutdown::Write);
        let Some(mut input) = self.input.take() else {
            return;
        };
        let until = Instant::now() + self.shared.options.linger;
        let mut sink = [0u8; 16 * 1024];
        while let Some(t) = left(until, Duration::from_secs(2)) {
            if input.set_timeout(t).is_err() {
                break;
            }
            match input.stream.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

/// Time left until `deadline`, at most `cap`; `None` once it has passed.
fn left(deadline: Instant, cap: Duration) -> Option<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    (left >= MIN_TIMEOUT).then(|| left.min(cap))
}

fn at_the_cap() -> Refusal {
    Refusal {
        status: 503,
        reason: "the server closed this connection to make room at its connection limit; retry"
            .into(),
    }
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
