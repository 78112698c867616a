use std::convert::TryFrom;
use std::io::{self, Cursor, ErrorKind, Read, Write};

use std::fmt;
use std::net::SocketAddr;

use crate::util::Reservation;
use crate::{HTTPVersion, Header, Method, Response};

/// Represents an HTTP request made by a client.
///
/// lingma-gateway: a `Request` reaches the handler with its body already read (or, as
/// `body_status` says, deliberately not read, or refused): no handler ever waits on a
/// client's body. A connection carries one request at a time: the next request head is read
/// only once this one's response is finished (its writer dropped), so pipelined requests
/// queue in the socket, not in memory, and a response can never be taken for another.
///
/// # Automatic cleanup
///
/// If a `Request` object is destroyed without `into_writer` or `respond` being called,
/// an empty response with a 500 status code (internal server error) will automatically be
/// sent back to the client.
pub struct Request {
    body: Cursor<Vec<u8>>,
    body_status: BodyStatus,
    /// The body's bytes held against the server's body budget, until the response is done.
    reservation: Option<Reservation>,

    // if this writer is empty, then the request has been answered
    response_writer: Option<Box<dyn Write + Send + 'static>>,

    /// The connection's input, handed over for `upgrade`.
    upgrade_source: Option<Box<dyn Read + Send + 'static>>,

    remote_addr: Option<SocketAddr>,
    method: Method,
    path: String,
    http_version: HTTPVersion,
    headers: Vec<Header>,
    body_length: Option<usize>,
    will_close: bool,
}

/// What became of a request's body before the handler got the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyStatus {
    /// Read whole (empty when the request had none): `as_reader` and `take_body` give it.
    Complete,
    /// Not read, because the server's body policy did not ask for it (the request will be
    /// refused anyway). The connection closes after the response.
    Unread,
    /// Longer than the body policy's limit (declared, or as it arrived); not read further.
    TooLarge { limit: u64 },
    /// It did not arrive within the body deadline.
    TimedOut,
    /// The memory all request bodies may hold at once was in use.
    Overloaded,
    /// Its chunked coding was malformed (the reason says how).
    Malformed(&'static str),
}

/// Whether the server reads a request's body before handing the request out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPolicy {
    /// Read it whole, up to `limit` bytes (beyond: `BodyStatus::TooLarge`).
    Read { limit: u64 },
    /// Do not read it (`BodyStatus::Unread`); the connection closes after the response.
    Ignore,
}

/// A response writer that keeps the body's reservation until the response is done.
struct Holding<W> {
    inner: W,
    _reservation: Option<Reservation>,
}

impl<W: Write> Write for Holding<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Request {
    pub(crate) fn new(
        head: crate::head::Head,
        remote_addr: Option<SocketAddr>,
        writer: Box<dyn Write + Send + 'static>,
        body_length: Option<u64>,
        will_close: bool,
    ) -> Request {
        Request {
            body: Cursor::new(Vec::new()),
            body_status: BodyStatus::Complete,
            reservation: None,
            response_writer: Some(writer),
            upgrade_source: None,
            remote_addr,
            method: head.method,
            path: head.target,
            http_version: head.version,
            headers: head.headers,
            body_length: body_length.and_then(|n| usize::try_from(n).ok()),
            will_close,
        }
    }

    /// Attaches what became of the body.
    pub(crate) fn set_body(
        &mut self,
        status: BodyStatus,
        bytes: Vec<u8>,
        reservation: Option<Reservation>,
    ) {
        self.body_status = status;
        self.body = Cursor::new(bytes);
        self.reservation = reservation;
        if status != BodyStatus::Complete {
            self.will_close = true;
        }
    }

    pub(crate) fn set_upgrade_source(&mut self, source: Box<dyn Read + Send + 'static>) {
        self.upgrade_source = Some(source);
    }

    /// Returns the method requested by the client (eg. `GET`, `POST`, etc.).
    #[inline]
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Returns the resource requested by the client.
    #[inline]
    pub fn url(&self) -> &str {
        &self.path
    }

    /// Returns a list of all headers sent by the client.
    #[inline]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// Returns the HTTP version of the request.
    #[inline]
    pub fn http_version(&self) -> &HTTPVersion {
        &self.http_version
    }

    /// The body's length as the client declared it (`Content-Length`), if it did.
    #[inline]
    pub fn body_length(&self) -> Option<usize> {
        self.body_length
    }

    /// What became of the body before the handler got the request.
    #[inline]
    pub fn body_status(&self) -> BodyStatus {
        self.body_status
    }

    /// Whether the connection closes after this response (the client asked for it, it is
    /// HTTP/1.0, or its body was not read whole). A handler that writes its own response
    /// head (`into_writer`) should then send `Connection: close`; `respond` does it itself.
    #[inline]
    pub fn will_close(&self) -> bool {
        self.will_close
    }

    /// Returns the address of the client that sent this request.
    ///
    /// The address is always `Some` for TCP listeners, but always `None` for UNIX listeners.
    #[inline]
    pub fn remote_addr(&self) -> Option<&SocketAddr> {
        self.remote_addr.as_ref()
    }

    /// The body, as read (empty unless `body_status` is `Complete`).
    #[inline]
    pub fn as_reader(&mut self) -> &mut dyn Read {
        &mut self.body
    }

    /// Takes the body's bytes (empty unless `body_status` is `Complete`), without a copy.
    pub fn take_body(&mut self) -> Vec<u8> {
        std::mem::take(self.body.get_mut())
    }

    /// Sends a response with a `Connection: upgrade` header, then turns the `Request` into a
    /// stream over the whole connection. Only a request that offered an upgrade (with
    /// `Connection: upgrade` and no body) can be upgraded; for any other this returns the
    /// request's response writer with an empty reader.
    pub fn upgrade<R: Read>(
        mut self,
        protocol: &str,
        response: Response<R>,
    ) -> Box<dyn ReadWrite + Send> {
        let mut writer = self.response_writer.take().expect("not answered yet");
        response
            .raw_print(
                writer.by_ref(),
                self.http_version.clone(),
                &self.headers,
                false,
                Some(protocol),
                false,
            )
            .ok();
        writer.flush().ok();
        let reader = self
            .upgrade_source
            .take()
            .unwrap_or_else(|| Box::new(io::empty()));
        Box::new(crate::util::CustomStream::new(reader, writer))
    }

    /// Turns the `Request` into a writer on the connection; the caller writes the whole
    /// response, head included. The connection's next request is read once it is dropped.
    #[inline]
    pub fn into_writer(mut self) -> Box<dyn Write + Send + 'static> {
        let inner = self.response_writer.take().expect("not answered yet");
        Box::new(Holding {
            inner,
            _reservation: self.reservation.take(),
        })
    }

    /// Sends a response to this request.
    #[inline]
    pub fn respond<R>(mut self, response: Response<R>) -> Result<(), io::Error>
    where
        R: Read,
    {
        self.respond_impl(response)
    }

    fn respond_impl<R>(&mut self, response: Response<R>) -> Result<(), io::Error>
    where
        R: Read,
    {
        let mut writer = self.response_writer.take().expect("not answered yet");
        let do_not_send_body = self.method == Method::Head;
        Self::ignore_client_closing_errors(response.raw_print(
            writer.by_ref(),
            self.http_version.clone(),
            &self.headers,
            do_not_send_body,
            None,
            self.will_close,
        ))?;
        Self::ignore_client_closing_errors(writer.flush())
    }

    fn ignore_client_closing_errors(result: io::Result<()>) -> io::Result<()> {
        result.or_else(|err| match err.kind() {
            ErrorKind::BrokenPipe => Ok(()),
            ErrorKind::ConnectionAborted => Ok(()),
            ErrorKind::ConnectionRefused => Ok(()),
            ErrorKind::ConnectionReset => Ok(()),
            _ => Err(err),
        })
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> Result<(), fmt::Error> {
        write!(
            formatter,
            "Request({} {} from {:?})",
            self.method, self.path, self.remote_addr
        )
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.response_writer.is_some() {
            let response = Response::empty(500);
            let _ = self.respond_impl(response); // ignoring any potential error
        }
    }
}

/// Dummy trait that regroups the `Read` and `Write` traits.
///
/// Automatically implemented on all types that implement both `Read` and `Write`.
pub trait ReadWrite: Read + Write {}
impl<T> ReadWrite for T where T: Read + Write {}

#[cfg(test)]
mod tests {
    use super::Request;

    #[test]
    fn must_be_send() {
        #![allow(dead_code)]
        fn f<T: Send>(_: &T) {}
        fn bar(rq: &Request) {
            f(rq);
        }
    }
}
