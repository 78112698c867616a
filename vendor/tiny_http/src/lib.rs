//! # Simple usage
//!
//! ## Creating the server
//!
//! The easiest way to create a server is to call `Server::http()`.
//!
//! The `http()` function returns an `IoResult<Server>` which will return an error
//! in the case where the server creation fails (for example if the listening port is already
//! occupied).
//!
//! ```no_run
//! let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! ```
//!
//! A newly-created `Server` will immediately start listening for incoming connections and HTTP
//! requests.
//!
//! ## Receiving requests
//!
//! Calling `server.recv()` will block until the next request is available.
//! This function returns an `IoResult<Request>`, so you need to handle the possible errors.
//!
//! ```no_run
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//!
//! loop {
//!     // blocks until the next request is received
//!     let request = match server.recv() {
//!         Ok(rq) => rq,
//!         Err(e) => { println!("error: {}", e); break }
//!     };
//!
//!     // do something with the request
//!     // ...
//! }
//! ```
//!
//! In a real-case scenario, you will probably want to spawn multiple worker tasks and call
//! `server.recv()` on all of them. Like this:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::thread;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! let server = Arc::new(server);
//! let mut guards = Vec::with_capacity(4);
//!
//! for _ in (0 .. 4) {
//!     let server = server.clone();
//!
//!     let guard = thread::spawn(move || {
//!         loop {
//!             let rq = server.recv().unwrap();
//!
//!             // ...
//!         }
//!     });
//!
//!     guards.push(guard);
//! }
//! ```
//!
//! If you don't want to block, you can call `server.try_recv()` instead.
//!
//! ## Handling requests
//!
//! The `Request` object returned by `server.recv()` contains informations about the client's request.
//! The most useful methods are probably `request.method()` and `request.url()` which return
//! the requested method (`GET`, `POST`, etc.) and url.
//!
//! To handle a request, you need to create a `Response` object. See the docs of this object for
//! more infos. Here is an example of creating a `Response` from a file:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! ```
//!
//! All that remains to do is call `request.respond()`:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! # let request = server.recv().unwrap();
//! # let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! let _ = request.respond(response);
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![allow(clippy::match_like_matches_macro)]

use std::error::Error;
use std::io::Error as IoError;
use std::io::ErrorKind as IoErrorKind;
use std::io::Result as IoResult;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use client::{ClientConnection, Shared};
use connection::Connection;
use util::MessagesQueue;

pub use common::{HTTPVersion, Header, HeaderField, Method, StatusCode};
pub use connection::{ConfigListenAddr, ListenAddr, Listener};
pub use request::{BodyPolicy, BodyStatus, ReadWrite, Request};
pub use response::{Response, ResponseBox};

mod chunked;
mod client;
mod common;
mod connection;
mod framing;
mod head;
mod request;
mod response;
mod util;
mod writer;

/// The main class of this library.
///
/// Destroying this object closes the listening socket and every connection that is not
/// serving a request. Requests that have already been returned by the `recv()` function
/// will not close and the responses will be transferred to the client.
pub struct Server {
    // should be false as long as the server exists
    close: Arc<AtomicBool>,

    // queue for messages received by child threads. Each connection has at most one
    // request in it at a time (its next head is read only after the response), so it
    // holds at most as many requests as there are connections.
    messages: Arc<MessagesQueue<Message>>,

    registry: Arc<util::Registry>,

    // result of TcpListener::local_addr()
    listening_addr: ListenAddr,
}

// Moved through the queue once per request: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Message {
    Error(IoError),
    NewRequest(Request),
}

impl From<IoError> for Message {
    fn from(e: IoError) -> Message {
        Message::Error(e)
    }
}

impl From<Request> for Message {
    fn from(rq: Request) -> Message {
        Message::NewRequest(rq)
    }
}

// Server must stay Sync + Send (the gateway's workers share it).
const _: fn() = || {
    fn shareable<T: Sync + Send>() {}
    shareable::<Server>();
};

pub struct IncomingRequests<'a> {
    server: &'a Server,
}

/// Represents the parameters required to create a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The addresses to try to listen to.
    pub addr: ConfigListenAddr,
}

/// The body policy: called on a connection's thread with each request before its body is
/// read (the request has its head, no body yet).
pub type BodyPolicyFn = dyn Fn(&Request) -> BodyPolicy + Send + Sync;

/// lingma-gateway: how the server treats its clients. Every read from a client and every
/// write to one is bounded in time, every buffer client input can grow is bounded in size.
#[derive(Clone)]
pub struct ServerOptions {
    /// Open connections at most (0: no limit). Beyond it, a new connection closes the one
    /// waiting longest that serves no request, or gets 503 when all are serving one.
    pub max_connections: usize,
    /// How long a connection may wait for the first byte of a request (keep-alive idle).
    pub idle_timeout: Duration,
    /// Longest time from a request head's first byte to its end (else 408).
    pub head_timeout: Duration,
    /// Longest time from the end of a head to the end of its body (else
    /// `BodyStatus::TimedOut`).
    pub body_timeout: Duration,
    /// Longest time one stretch of a response (a whole plain response, or one flushed
    /// event of a stream) may take to reach the socket; past it the connection is closed.
    pub send_timeout: Duration,
    /// After a response that closes the connection, how long the client's further input is
    /// read and dropped so that it can read the response.
    pub linger: Duration,
    /// Largest request head (request line and header fields).
    pub max_head_bytes: usize,
    /// Bytes all request bodies may hold at once, from their first byte to the end of their
    /// response (beyond: `BodyStatus::Overloaded`).
    pub max_buffered_body_bytes: u64,
    /// Whether to read a request's body, and up to how much.
    pub body_policy: Arc<BodyPolicyFn>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_connections: 0,
            idle_timeout: Duration::from_secs(60),
            head_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(30),
            linger: Duration::from_secs(5),
            max_head_bytes: 64 * 1024,
            max_buffered_body_bytes: u64::MAX,
            body_policy: Arc::new(|_: &Request| BodyPolicy::Read {
                limit: 64 * 1024 * 1024,
            }),
        }
    }
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("max_connections", &self.max_connections)
            .field("idle_timeout", &self.idle_timeout)
            .field("head_timeout", &self.head_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("send_timeout", &self.send_timeout)
            .field("linger", &self.linger)
            .field("max_head_bytes", &self.max_head_bytes)
            .field("max_buffered_body_bytes", &self.max_buffered_body_bytes)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Shortcut for a simple server on a specific address.
    #[inline]
    pub fn http<A>(addr: A) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
        })
    }

    #[cfg(unix)]
    #[inline]
    /// Shortcut for a UNIX socket server at a specific path
    pub fn http_unix(
        path: &std::path::Path,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::unix_from_path(path),
        })
    }

    /// Builds a new server that listens on the specified address.
    pub fn new(config: ServerConfig) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = config.addr.bind()?;
        Self::from_listener(listener, ServerOptions::default())
    }

    /// Builds a new server using the specified listener.
    pub fn from_listener<L: Into<Listener>>(
        listener: L,
        options: ServerOptions,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = listener.into();
        let close_trigger = Arc::new(AtomicBool::new(false));
        let registry = util::Registry::new(options.max_connections);
        let local_addr = listener.local_addr()?;
        log::debug!("Server listening on {}", local_addr);
        let shared = Arc::new(Shared {
            budget: util::Budget::new(options.max_buffered_body_bytes),
            options,
        });

        let messages = MessagesQueue::with_capacity(8);
        let inside_close_trigger = close_trigger.clone();
        let inside_messages = messages.clone();
        let inside_registry = Arc::clone(&registry);
        thread::Builder::new()
            .name("http-accept".into())
            .spawn(move || {
                accept_loop(
                    listener,
                    inside_registry,
                    shared,
                    inside_messages,
                    inside_close_trigger,
                )
            })?;

        Ok(Server {
            messages,
            close: close_trigger,
            registry,
            listening_addr: local_addr,
        })
    }

    /// Returns an iterator for all the incoming requests.
    ///
    /// The iterator will return `None` if the server socket is shutdown.
    #[inline]
    pub fn incoming_requests(&self) -> IncomingRequests<'_> {
        IncomingRequests { server: self }
    }

    /// Returns the address the server is listening to.
    #[inline]
    pub fn server_addr(&self) -> ListenAddr {
        self.listening_addr.clone()
    }

    /// Blocks until an HTTP request has been submitted and returns it.
    pub fn recv(&self) -> IoResult<Request> {
        match self.messages.pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(rq),
            None => Err(IoError::other("thread unblocked")),
        }
    }

    /// Same as `recv()` but doesn't block longer than timeout
    pub fn recv_timeout(&self, timeout: Duration) -> IoResult<Option<Request>> {
        match self.messages.pop_timeout(timeout) {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Same as `recv()` but doesn't block.
    pub fn try_recv(&self) -> IoResult<Option<Request>> {
        match self.messages.try_pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Unblock thread stuck in recv() or incoming_requests().
    /// If there are several such threads, only one is unblocked.
    /// This method allows graceful shutdown of server.
    pub fn unblock(&self) {
        self.messages.unblock();
    }
}

/// Accepts connections until the server closes; each is served on a pool thread.
fn accept_loop(
    listener: Listener,
    registry: Arc<util::Registry>,
    shared: Arc<Shared>,
    messages: Arc<MessagesQueue<Message>>,
    close: Arc<AtomicBool>,
) {
    let tasks_pool = util::TaskPool::new();
    log::debug!("Running accept thread");
    while !close.load(Relaxed) {
        let mut sock = match listener.accept() {
            Ok((sock, _)) => sock,
            // A receive timeout on the listener makes accept() return now and then.
            Err(e)
                if matches!(
                    e.kind(),
                    IoErrorKind::WouldBlock | IoErrorKind::TimedOut | IoErrorKind::Interrupted
                ) =>
            {
                continue
            }
            // lingma-gateway patch: upstream stopped accepting for good on the first
            // error, so running out of file descriptors once (EMFILE) killed the server.
            Err(e) => {
                log::error!("Error accepting new client: {}", e);
                messages.push(e.into());
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if close.load(Relaxed) {
            break;
        }
        let Some(tracked) = registry.admit(&mut sock) else {
            continue;
        };
        let client = match ClientConnection::new(sock, tracked, Arc::clone(&shared)) {
            Ok(c) => c,
            Err(_) => continue,
        };
        let messages = Arc::clone(&messages);
        let mut client = Some(client);
        tasks_pool.spawn(Box::new(move || {
            if let Some(client) = client.take() {
                client.serve(&|rq| messages.push(rq.into()));
            }
        }));
    }
    log::debug!("Terminating accept thread");
}

impl Iterator for IncomingRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.server.recv().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close.store(true, Relaxed);
        // Connect briefly to ourselves to unblock the accept thread
        let maybe_stream = match &self.listening_addr {
            ListenAddr::IP(addr) => TcpStream::connect(addr).map(Connection::from),
            #[cfg(unix)]
            ListenAddr::Unix(addr) => {
                // TODO: use connect_addr when its stabilized.
                let path = addr.as_pathname().unwrap();
                std::os::unix::net::UnixStream::connect(path).map(Connection::from)
            }
        };
        if let Ok(stream) = maybe_stream {
            let _ = stream.shutdown(Shutdown::Both);
        }
        self.registry.close_waiting();

        #[cfg(unix)]
        if let ListenAddr::Unix(addr) = &self.listening_addr {
            if let Some(path) = addr.as_pathname() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
