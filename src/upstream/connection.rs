//! One WebSocket connection to Lingma: the senders (any thread: they frame a message into the
//! writer's queue behind a short lock and never wait on the socket), the writer thread
//! (`lingma-wr-<name>`, see `writer.rs`), the dedicated reader thread (`lingma-rd-<name>`)
//! that decodes frames and routes them, and the table of pending requests. Entries leave the
//! table when their `Subscription` drops (finished, timed out, or abandoned by a client that
//! went away). Each entry is a `Mailbox` the reader puts into without ever waiting (a slow
//! consumer's text deltas are joined, and what it may hold is bounded). When the socket dies,
//! or its writes get stuck, the table is emptied at once and every mailbox closed: every
//! waiter wakes with "disconnected" immediately.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};
use serde_json::{json, Value};
use tungstenite::protocol::Role;
use tungstenite::{Message as WsMessage, WebSocket};

use super::acp;
use super::endpoint::Endpoint;
use super::mailbox::{Mailbox, Routed};
use super::runtime::Runtime;
use super::writer::{self, Link, QueuedStream};
use crate::jsonrpc::{self, method, Decoder, Message, RpcError};
use crate::redact;
use crate::wsio;

/// Why an upstream call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamError {
    /// The socket or process went away (or had already).
    Disconnected(String),
    /// No reply or event within the deadline; says what was awaited.
    Timeout(String),
    /// Lingma answered with a JSON-RPC error.
    Rpc(RpcError),
    /// Lingma finished a chat with a non-200 `statusCode`.
    Status { code: i64, message: String },
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Disconnected(why) => write!(f, "Lingma connection lost: {why}"),
            UpstreamError::Timeout(what) => write!(f, "timed out waiting for {what}"),
            UpstreamError::Rpc(e) => write!(f, "Lingma error: {e}"),
            UpstreamError::Status { code, message } => {
                write!(f, "Lingma finished with status {code}: {message}")
            }
        }
    }
}

/// The outcome of every tool Lingma asks the gateway to run (`tool/invoke`): Lingma waits
/// for the IDE to run it, and the gateway is no IDE and runs nothing on this machine for a
/// remote client, so it says so at once and the turn goes on.
fn invoke_refused(params: &Value) -> Value {
    let field = |k: &str| params.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "toolCallId": field("toolCallId"), "name": field("name"), "success": false,
        "errorMessage": "IDE tools are not available through lingma-gateway",
        "result": null, "startTime": 0, "timeConsuming": 0,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Rpc(u64),
    Chat(String),
    /// An ACP session's updates that name no request (routed to the turn running in it).
    Session(String),
}

/// The pending-request table. `None` once the connection is dead.
struct Table {
    map: Mutex<Option<HashMap<Key, Arc<Mailbox>>>>,
}

impl Table {
    fn insert(self: &Arc<Self>, key: Key) -> Result<Subscription, UpstreamError> {
        let mailbox = Arc::new(Mailbox::default());
        let mut guard = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let Some(map) = guard.as_mut() else {
            return Err(UpstreamError::Disconnected("connection closed".into()));
        };
        map.insert(key.clone(), Arc::clone(&mailbox));
        Ok(Subscription {
            table: Arc::clone(self),
            keys: vec![key],
            mailbox,
        })
    }

    /// Routes `key` to `sub`'s mailbox too, until `sub` drops.
    fn alias(&self, sub: &mut Subscription, key: Key) -> Result<(), UpstreamError> {
        let mut guard = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let Some(map) = guard.as_mut() else {
            return Err(UpstreamError::Disconnected("connection closed".into()));
        };
        map.insert(key.clone(), Arc::clone(&sub.mailbox));
        sub.keys.push(key);
        Ok(())
    }

    fn route(&self, key: &Key, msg: Routed) -> bool {
        let mailbox = {
            let guard = self.map.lock().unwrap_or_else(|p| p.into_inner());
            guard.as_ref().and_then(|m| m.get(key)).cloned()
        };
        // A mailbox never waits on its consumer: the reader never waits on a slow client.
        mailbox.is_some_and(|m| m.put(msg))
    }

    /// Closes every mailbox, waking all waiters with "disconnected".
    fn close(&self) {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner()).take();
        for mailbox in map.into_iter().flat_map(HashMap::into_values) {
            mailbox.close();
        }
    }
}

/// A registered interest in replies or chat events; leaves the table on drop.
pub struct Subscription {
    table: Arc<Table>,
    /// Its key, then its aliases.
    keys: Vec<Key>,
    mailbox: Arc<Mailbox>,
}

impl Subscription {
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Routed, RecvTimeoutError> {
        self.mailbox.take(timeout).map_err(RecvTimeoutError::from)
    }

    /// Whether its consumer fell so far behind (`mailbox::MAX_HELD_BYTES`) that it was cut.
    pub fn overflowed(&self) -> bool {
        self.mailbox.overflowed()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(map) = self
            .table
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            for key in &self.keys {
                // Only its own: an alias (a session's) may have passed to a later turn.
                if map.get(key).is_some_and(|m| Arc::ptr_eq(m, &self.mailbox)) {
                    map.remove(key);
                }
            }
        }
    }
}

/// How a connection ended, for the supervisor (what `on_dead` receives).
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    pub why: String,
    /// Lingma stopped taking our writes: the process behind the socket is stuck, not gone.
    pub stuck: bool,
}

pub struct Connection {
    name: String,
    link: Arc<Link>,
    /// Turns outgoing messages into frames (masked, as a client's must be) for the writer's
    /// queue. The lock covers the framing only, never the socket; `None` once closed.
    framer: Mutex<Option<WebSocket<QueuedStream>>>,
    table: Arc<Table>,
    next_id: AtomicU64,
    reader: Mutex<Option<JoinHandle<()>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// What the handshake learnt of the runtime (its dialect), set once after `initialize`.
    runtime: OnceLock<Runtime>,
}

impl Connection {
    /// Connects to `ws://127.0.0.1:<port>/` and starts the writer and the reader. A write (the
    /// handshake's too) that Lingma takes nothing of for `write_timeout`, while it sends
    /// nothing either, gives the connection up as stuck. `on_dead` receives one message when
    /// the connection ends for any reason other than `close()`.
    pub fn open(
        name: &str,
        target: &Endpoint,
        timeout: Duration,
        write_timeout: Duration,
        on_dead: Sender<Ended>,
    ) -> Result<Arc<Self>, String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], target.port));
        let tcp = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| format!("connect {addr}: {e}"))?;
        tcp.set_nodelay(true).ok();
        tcp.set_read_timeout(Some(timeout)).ok();
        let clone = || tcp.try_clone().map_err(|e| e.to_string());
        let link = Arc::new(Link::new(name, clone()?, writer::MAX_QUEUED_BYTES));
        let (frames, queue) = crossbeam_channel::unbounded();
        let stream = QueuedStream::new(clone()?, frames, Arc::clone(&link));
        let writer = writer::spawn(name, clone()?, write_timeout, Arc::clone(&link), queue)
            .map_err(|e| e.to_string())?;
        // From here every sender of the queue lives in `conn` (or in the handshake, which
        // drops it on failure), so dropping `conn` on an error below ends the writer.
        let conn = Connection {
            name: name.to_string(),
            link,
            framer: Mutex::new(None),
            table: Arc::new(Table {
                map: Mutex::new(Some(HashMap::new())),
            }),
            next_id: AtomicU64::new(1),
            reader: Mutex::new(None),
            writer: Mutex::new(Some(writer)),
            runtime: OnceLock::new(),
        };
        let request = target.request()?;
        let (ws, _resp) =
            tungstenite::client::client_with_config(request, stream, Some(wsio::ws_config()))
                .map_err(|e| format!("WebSocket handshake with {}: {e}", target.url()))?;
        // The handshake is done: the reader now blocks without a deadline; deadlines live
        // with the waiters.
        tcp.set_read_timeout(None).ok();
        let framer = WebSocket::from_raw_socket(
            ws.get_ref().try_clone().map_err(|e| e.to_string())?,
            Role::Client,
            Some(wsio::writer_config()),
        );
        *conn.framer.lock().unwrap_or_else(|p| p.into_inner()) = Some(framer);
        let conn = Arc::new(conn);
        let reader = ReaderLoop {
            name: name.to_string(),
            ws,
            decoder: Decoder::new(),
            link: Arc::clone(&conn.link),
            table: Arc::clone(&conn.table),
            turns: HashMap::new(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("lingma-rd-{name}"))
            .spawn(move || {
                let ended = reader.run();
                let _ = on_dead.send(ended);
            })
            .map_err(|e| e.to_string())?;
        *conn.reader.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(conn)
    }

    /// Frames `msg` into the writer's queue; never waits on the socket.
    fn send(&self, msg: &Value) -> Result<(), UpstreamError> {
        let bytes = jsonrpc::encode_message(msg);
        if log::log_enabled!(target: "lingma::wire", log::Level::Trace) {
            let mut shown = msg.clone();
            redact::redact_json(&mut shown);
            log::trace!(target: "lingma::wire", "[{}] >> {shown}", self.name);
        }
        let mut framer = self.framer.lock().unwrap_or_else(|p| p.into_inner());
        let Some(ws) = framer.as_mut().filter(|_| self.is_alive()) else {
            return Err(UpstreamError::Disconnected("connection closed".into()));
        };
        ws.send(WsMessage::text(
            String::from_utf8(bytes).expect("JSON frames are UTF-8"),
        ))
        .map_err(|e| UpstreamError::Disconnected(format!("write failed: {e}")))
    }

    /// Sends a request and waits for its reply.
    pub fn call(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, UpstreamError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let sub = self.table.insert(Key::Rpc(id))?;
        self.send(&jsonrpc::request(id, method, params))?;
        match sub.recv_timeout(timeout) {
            Ok(Routed::Response(r)) => r.map_err(UpstreamError::Rpc),
            Ok(Routed::Event { .. }) => Err(UpstreamError::Disconnected(
                "unexpected event for an RPC id".into(),
            )),
            Err(RecvTimeoutError::Timeout) => {
                Err(UpstreamError::Timeout(format!("reply to {method}")))
            }
            Err(RecvTimeoutError::Disconnected) => Err(UpstreamError::Disconnected(format!(
                "while waiting for {method}"
            ))),
        }
    }

    pub fn notify(&self, method: &str, params: Value) -> Result<(), UpstreamError> {
        self.send(&jsonrpc::notification(method, params))
    }

    /// Registers for the `chat/*` events of `request_id`. Subscribe before sending
    /// `chat/ask`, so no event can arrive unrouted.
    pub fn subscribe_chat(&self, request_id: &str) -> Result<Subscription, UpstreamError> {
        self.table.insert(Key::Chat(request_id.to_string()))
    }

    /// Sends a request whose reply goes to `sub` (ACP's `session/prompt`: its error answer
    /// ends the turn).
    pub(crate) fn request_into(
        &self,
        sub: &mut Subscription,
        method: &str,
        params: Value,
    ) -> Result<(), UpstreamError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.table.alias(sub, Key::Rpc(id))?;
        self.send(&jsonrpc::request(id, method, params))
    }

    /// Routes to `sub` the updates of ACP session `session_id` that name no request.
    pub(crate) fn follow_session(
        &self,
        sub: &mut Subscription,
        session_id: &str,
    ) -> Result<(), UpstreamError> {
        self.table.alias(sub, Key::Session(session_id.to_string()))
    }

    /// Records what the handshake learnt of the runtime (once; later calls are ignored).
    pub(crate) fn set_runtime(&self, runtime: Runtime) {
        let _ = self.runtime.set(runtime);
    }

    /// The runtime behind the connection, once the handshake has run.
    pub(crate) fn runtime(&self) -> Option<&Runtime> {
        self.runtime.get()
    }

    /// Sends a request whose reply nobody waits for (the `chat/ask` ack).
    pub fn send_request_no_wait(&self, method: &str, params: Value) -> Result<(), UpstreamError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.send(&jsonrpc::request(id, method, params))
    }

    /// False once the connection was given up as stuck or the reader has seen the socket
    /// end (before the supervisor has reacted).
    pub fn is_alive(&self) -> bool {
        self.link.stuck_reason().is_none()
            && self
                .table
                .map
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some()
    }

    /// Why the connection was given up as stuck (Lingma stopped reading), if it was.
    pub fn stuck_reason(&self) -> Option<String> {
        self.link.stuck_reason()
    }

    /// Closes the socket and joins the reader, then the writer (whose stop signal is the
    /// drop of the framer's and the reader's queue senders). Waiters see "disconnected".
    pub fn close(&self) {
        self.link.close();
        self.table.close();
        drop(self.framer.lock().unwrap_or_else(|p| p.into_inner()).take());
        for thread in [&self.reader, &self.writer] {
            let handle = thread.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(h) = handle {
                if h.thread().id() != std::thread::current().id() {
                    let _ = h.join();
                }
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
    }
}

/// The reader thread's state. It owns the reading `WebSocket`, whose writes (replies, and
/// tungstenite's own pongs and close replies) go into the writer's queue, so reading never
/// waits for Lingma to read.
struct ReaderLoop {
    name: String,
    ws: WebSocket<QueuedStream>,
    decoder: Decoder,
    link: Arc<Link>,
    table: Arc<Table>,
    /// The running turn of each session (sessionId → requestId), learned from its events:
    /// a `context/usage/sync` that names only its session still reaches its turn.
    turns: HashMap<String, String>,
}

/// Sessions whose running turn the reader remembers, at most (then it starts afresh).
const MAX_TURNS: usize = 4096;

impl ReaderLoop {
    /// Runs until the socket ends; returns why. Empties the table on the way out.
    fn run(mut self) -> Ended {
        let why = self.read_loop();
        self.table.close();
        let ended = match self.link.stuck_reason() {
            Some(stuck) => Ended {
                why: stuck,
                stuck: true,
            },
            None => Ended { why, stuck: false },
        };
        log::debug!("[{}] reader stopped: {}", self.name, ended.why);
        ended
    }

    fn read_loop(&mut self) -> String {
        loop {
            let read = self.ws.read();
            if read.is_ok() {
                self.link.heard();
            }
            let payload = match read {
                Ok(WsMessage::Text(t)) => t.as_bytes().to_vec(),
                Ok(WsMessage::Binary(b)) => b.to_vec(),
                Ok(WsMessage::Close(_)) => return "Lingma closed the WebSocket".into(),
                Ok(_) => continue,
                Err(e) => return format!("read failed: {e}"),
            };
            self.decoder.push(&payload);
            loop {
                match self.decoder.next_frame() {
                    Ok(Some(body)) => self.dispatch(&body),
                    Ok(None) => break,
                    // The byte stream is out of step; nothing after this can be trusted.
                    Err(e) => return format!("protocol error: {e}"),
                }
            }
        }
    }

    fn dispatch(&mut self, body: &[u8]) {
        if log::log_enabled!(target: "lingma::wire", log::Level::Trace) {
            log::trace!(target: "lingma::wire", "[{}] << {}", self.name, redact::frame_for_log(body));
        }
        let msg = match Message::parse(body) {
            Ok(m) => m,
            Err(e) => {
                log::warn!(
                    "[{}] ignoring undecodable message from Lingma: {e}",
                    self.name
                );
                return;
            }
        };
        match msg {
            Message::Response { id, result } => {
                let Some(id) = id
                    .as_u64()
                    .or_else(|| id.as_str().and_then(|s| s.parse().ok()))
                else {
                    return;
                };
                self.table.route(&Key::Rpc(id), Routed::Response(result));
            }
            Message::Request { id, method, params } => {
                // Server→client requests are answered at once so none can block Lingma.
                self.reply(id, &method, &params);
                self.finish_async_invoke(&method, &params);
                self.route_event(method, params);
            }
            Message::Notification { method, params } => {
                self.finish_async_invoke(&method, &params);
                self.route_event(method, params)
            }
        }
    }

    fn reply(&mut self, id: Value, method: &str, params: &Value) {
        let result = match method {
            method::TOOL_INVOKE => invoke_refused(params),
            _ => json!({}),
        };
        self.send(&jsonrpc::response(id, result), method);
    }

    /// An async `tool/invoke` is finished only by a `tool/invokeResult` (protocol §6): sent
    /// at once beside the reply, so Lingma's turn never waits for it.
    fn finish_async_invoke(&mut self, method: &str, params: &Value) {
        if method == method::TOOL_INVOKE && params.get("async") == Some(&Value::Bool(true)) {
            let result = invoke_refused(params);
            self.send(
                &jsonrpc::notification(method::TOOL_INVOKE_RESULT, result),
                method::TOOL_INVOKE_RESULT,
            );
        }
    }

    fn send(&mut self, msg: &Value, what: &str) {
        let text = String::from_utf8(jsonrpc::encode_message(msg)).expect("UTF-8");
        if let Err(e) = self.ws.send(WsMessage::text(text)) {
            log::debug!("[{}] could not send {what}: {e}", self.name);
        }
    }

    fn route_event(&mut self, method: String, params: Value) {
        // Only what a waiter acts on is routed; progress events would just wake it up.
        if !matches!(
            method.as_str(),
            method::CHAT_ANSWER
                | method::CHAT_FINISH
                | method::TOOL_CALL_SYNC
                | method::TOOL_INVOKE
                | method::CONTEXT_USAGE
                | method::SESSION_UPDATE
        ) {
            log::trace!(target: "lingma::wire", "[{}] {method} not routed", self.name);
            return;
        }
        let rid = self
            .request_of(&method, &params)
            .or_else(|| acp::request_id_of(&params).map(str::to_string));
        let Some(rid) = rid else {
            let session = params.get("sessionId").and_then(Value::as_str);
            if let (true, Some(sid)) = (method == method::SESSION_UPDATE, session) {
                let key = Key::Session(sid.to_string());
                if !self.table.route(&key, Routed::Event { method, params }) {
                    log::trace!(target: "lingma::wire", "[{}] session/update for no running turn", self.name);
                }
                return;
            }
            log::debug!("[{}] {method} without a requestId", self.name);
            return;
        };
        if !self
            .table
            .route(&Key::Chat(rid.clone()), Routed::Event { method, params })
        {
            log::debug!(
                "[{}] event for request {rid} that nobody waits for (finished or abandoned)",
                self.name
            );
        }
    }

    /// The turn an event belongs to: its `requestId`, or for a usage report that names only
    /// its session, the turn running in that session.
    fn request_of(&mut self, method: &str, params: &Value) -> Option<String> {
        let field = |k: &str| {
            params
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let session = field("sessionId");
        let Some(rid) = field("requestId") else {
            return (method == method::CONTEXT_USAGE)
                .then(|| self.turns.get(session?).cloned())
                .flatten();
        };
        if let Some(session) = session {
            if method == method::CHAT_FINISH {
                self.turns.remove(session);
            } else if self.turns.get(session).is_none_or(|r| r != rid) {
                if self.turns.len() >= MAX_TURNS {
                    self.turns.clear();
                }
                self.turns.insert(session.to_string(), rid.to_string());
            }
        }
        Some(rid.to_string())
    }
}
