//! The simulator's WebSocket side: the accept loop (thread `sim-accept`), one reader thread per
//! connection (`sim-conn-N`) that decodes frames and answers requests in order, and `Conn`,
//! the single writer that a connection's reader and generator threads share, through which
//! the client's replies to the simulator's own requests reach the generator waiting for them.
//!
//! Writes block while the client does not read, and the reader runs a turn without delays
//! itself: while it writes such a turn it reads nothing, so a client that stops reading
//! because its own writes are blocked meets a Lingma doing the same (the deadlock of a long
//! answer). `[[sim:deaf]]` makes a connection stop reading on purpose.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender};
use serde_json::{json, Value};
use tungstenite::protocol::Role;
use tungstenite::{Message as WsMessage, WebSocket};

use super::script::Deaf;
use super::{account, chat, login, models, native, Shared, VERSION};
use lingma_protocol::jsonrpc::{self, method, Decoder, Message, RpcError};
use lingma_protocol::wsio::{self, SplitStream};

/// JSON-RPC error codes the simulator sends.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

/// Login methods, which `jsonrpc::method` does not name.
pub(super) const GENERATE_URL: &str = "login/generateUrl";
pub(super) const LOGOUT: &str = "auth/logout";
/// Server→client notification: the AuthStatus after a login completed.
pub(super) const AUTH_REPORT: &str = "auth/report";

/// A client's reply to one of the simulator's requests.
pub(super) type Reply = Result<Value, RpcError>;

/// One WebSocket connection as its writers see it.
pub(super) struct Conn {
    pub number: u64,
    /// Every outgoing message of this connection goes through this lock, held for all parts
    /// of one frame, so frames of concurrent requests never interleave.
    writer: Mutex<WebSocket<SplitStream>>,
    socket: SplitStream,
    next_id: AtomicU64,
    /// Disconnected when the connection's reader ends: generators stop waiting at once.
    closed: Receiver<()>,
    /// Requests whose reply a generator waits for, by id (see `request_awaiting`).
    replies: Mutex<HashMap<u64, Sender<Reply>>>,
    /// Set by a `[[sim:deaf]]` turn; the reader takes it and stops reading.
    deaf: Mutex<Option<Deaf>>,
}

impl Conn {
    pub fn closed(&self) -> &Receiver<()> {
        &self.closed
    }

    /// A server→client request with a fresh int id (the reply is ignored).
    pub fn request(&self, method: &str, params: Value) -> Value {
        jsonrpc::request(self.next_id.fetch_add(1, Ordering::Relaxed), method, params)
    }

    /// A server→client request whose reply goes to the returned `AwaitedReply` (registered
    /// before the request can be sent, so a fast reply is not lost).
    pub fn request_awaiting(&self, method: &str, params: Value) -> (Value, AwaitedReply<'_>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, replies) = crossbeam_channel::bounded(1);
        self.lock_replies().insert(id, tx);
        let awaited = AwaitedReply {
            conn: self,
            id,
            replies,
        };
        (jsonrpc::request(id, method, params), awaited)
    }

    /// Hands a client reply to the generator waiting for it; false when none waits.
    fn deliver(&self, id: &Value, reply: Reply) -> bool {
        let Some(id) = id.as_u64() else {
            return false;
        };
        let waiting = self.lock_replies().remove(&id);
        waiting.is_some_and(|tx| tx.try_send(reply).is_ok())
    }

    fn lock_replies(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Sender<Reply>>> {
        self.replies.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends one framed JSON-RPC message as one text message.
    pub fn send(&self, msg: &Value) -> io::Result<()> {
        self.send_parts(&[&jsonrpc::encode_message(msg)], false)
    }

    /// Sends `parts` as consecutive WebSocket messages under one hold of the writer lock.
    /// Parts that are not valid UTF-8 (a cut inside a character) can only go as binary.
    pub fn send_parts(&self, parts: &[&[u8]], binary: bool) -> io::Result<()> {
        let mut ws = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        for part in parts {
            let msg = match std::str::from_utf8(part) {
                Ok(text) if !binary => WsMessage::text(text),
                _ => WsMessage::binary(part.to_vec()),
            };
            ws.send(msg).map_err(|e| match e {
                tungstenite::Error::Io(e) => e,
                other => io::Error::other(other.to_string()),
            })?;
        }
        Ok(())
    }

    /// Makes the reader stop reading once it is done with the frames at hand.
    pub fn go_deaf(&self, deaf: Deaf) {
        *self.deaf.lock().unwrap_or_else(|p| p.into_inner()) = Some(deaf);
    }

    fn take_deaf(&self) -> Option<Deaf> {
        self.deaf.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Shuts the TCP socket down (both directions): the reader thread ends, writes fail.
    pub fn shutdown(&self) {
        self.socket.shutdown();
    }
}

/// The open connections by number, for messages to every client (`auth/report`).
#[derive(Default)]
pub(super) struct Clients {
    conns: Mutex<HashMap<u64, Weak<Conn>>>,
}

impl Clients {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Weak<Conn>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, conn: &Arc<Conn>) {
        self.lock().insert(conn.number, Arc::downgrade(conn));
    }

    fn remove(&self, number: u64) {
        self.lock().remove(&number);
    }

    /// Sends a notification to every open connection (outside the registry's lock);
    /// returns how many got it.
    pub fn notify_all(&self, name: &str, params: &Value) -> usize {
        let conns: Vec<Arc<Conn>> = self.lock().values().filter_map(Weak::upgrade).collect();
        let msg = jsonrpc::notification(name, params.clone());
        conns
            .iter()
            .filter(|conn| match conn.send(&msg) {
                Ok(()) => true,
                Err(e) => {
                    log::debug!(
                        "simulator: connection {}: {name} not sent: {e}",
                        conn.number
                    );
                    false
                }
            })
            .count()
    }
}

/// The reply to one request, once it comes; unregisters the request when dropped.
pub(super) struct AwaitedReply<'a> {
    conn: &'a Conn,
    id: u64,
    pub replies: Receiver<Reply>,
}

impl Drop for AwaitedReply<'_> {
    fn drop(&mut self) {
        self.conn.lock_replies().remove(&self.id);
    }
}

/// The accept loop's handle; dropping it ends the loop and every connection.
pub(super) struct Acceptor {
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    pub fn spawn(listener: TcpListener, shared: Arc<Shared>) -> io::Result<Acceptor> {
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("sim-accept".into())
            .spawn(move || accept_loop(listener, shared, flag))?;
        Ok(Acceptor {
            stop,
            addr,
            thread: Some(thread),
        })
    }
}

impl Drop for Acceptor {
    /// Stops accepting, shuts every connection down and joins all their threads.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // accept() has no timeout: a connection of our own wakes it to see the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    // Each connection thread with a clone of its socket, to shut it down on stop.
    let mut conns: Vec<(JoinHandle<()>, TcpStream)> = Vec::new();
    // Dropped on stop: wakes the readers that are deaf, which read nothing to see the end.
    let (stopping, stopped) = crossbeam_channel::bounded::<()>(0);
    let mut number = 0;
    for incoming in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let tcp = match incoming {
            Ok(tcp) => tcp,
            Err(e) => {
                log::warn!("simulator: accept failed: {e}");
                thread::sleep(std::time::Duration::from_millis(20));
                continue;
            }
        };
        let (done, live): (Vec<_>, Vec<_>) = conns.into_iter().partition(|(h, _)| h.is_finished());
        conns = live;
        done.into_iter().for_each(|(h, _)| drop(h.join()));
        number += 1;
        let _ = tcp.set_nodelay(true);
        let spawned = tcp.try_clone().and_then(|clone| {
            let shared = Arc::clone(&shared);
            let stopped = stopped.clone();
            let handle = thread::Builder::new()
                .name(format!("sim-conn-{number}"))
                .spawn(move || connection_loop(shared, tcp, number, &stopped))?;
            Ok((handle, clone))
        });
        match spawned {
            Ok(conn) => conns.push(conn),
            Err(e) => log::warn!("simulator: cannot start connection {number}: {e}"),
        }
    }
    drop(stopping);
    for (_, tcp) in &conns {
        let _ = tcp.shutdown(Shutdown::Both);
    }
    for (handle, _) in conns {
        let _ = handle.join();
    }
}

/// Reads and answers one connection until it closes (or `stopped` says the simulator stops);
/// then joins its generators.
fn connection_loop(shared: Arc<Shared>, tcp: TcpStream, number: u64, stopped: &Receiver<()>) {
    let peer = tcp
        .peer_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string());
    let (mut ws, conn, closed_tx) = match open(tcp, number) {
        Ok(opened) => opened,
        Err(e) => {
            log::debug!("simulator: connection {number} from {peer}: {e}");
            return;
        }
    };
    let conn = Arc::new(conn);
    shared.clients.add(&conn);
    shared
        .log
        .line(&format!("connection {number} opened from {peer}"));
    let dispatch = Dispatch {
        shared: Arc::clone(&shared),
        conn: Arc::clone(&conn),
    };
    let mut generators: Vec<JoinHandle<()>> = Vec::new();
    let mut decoder = Decoder::new();
    loop {
        let bytes = match ws.read() {
            Ok(WsMessage::Text(text)) => text.as_str().as_bytes().to_vec(),
            Ok(WsMessage::Binary(bin)) => bin.to_vec(),
            Ok(_) => continue, // ping, pong, close: tungstenite answers them itself
            Err(e) => {
                log::debug!("simulator: connection {number} read: {e}");
                break;
            }
        };
        decoder.push(&bytes);
        dispatch.decoded(&mut decoder, &mut generators);
        let (done, live) = generators.into_iter().partition(JoinHandle::is_finished);
        generators = live;
        join_all(done);
        if let Some(deaf) = conn.take_deaf() {
            if !stay_deaf(&shared, number, deaf, stopped) {
                break;
            }
        }
    }
    // Shutting the socket down first fails any generator blocked in a write; dropping the
    // sender wakes every generator waiting on a delay or a stall.
    shared.clients.remove(number);
    conn.shutdown();
    drop(closed_tx);
    join_all(generators);
    shared.log.line(&format!("connection {number} closed"));
}

/// Reads nothing for as long as `deaf` says; false when the simulator stops meanwhile.
fn stay_deaf(shared: &Shared, number: u64, deaf: Deaf, stopped: &Receiver<()>) -> bool {
    let log = &shared.log;
    match deaf {
        Deaf::Forever => {
            log.line(&format!("connection {number}: deaf, reading nothing more"));
            // Nobody sends on `stopped`: this returns when the simulator stops.
            let _ = stopped.recv();
            false
        }
        Deaf::For(ms) => {
            log.line(&format!(
                "connection {number}: deaf, reading nothing for {ms} ms"
            ));
            let timeout = std::time::Duration::from_millis(ms);
            let reads = matches!(
                stopped.recv_timeout(timeout),
                Err(crossbeam_channel::RecvTimeoutError::Timeout)
            );
            if reads {
                log.line(&format!("connection {number}: reading again"));
            }
            reads
        }
    }
}

/// The WebSocket handshake; returns the reader, the shared `Conn`, and the sender whose drop
/// tells the connection's generators that it has ended.
fn open(tcp: TcpStream, number: u64) -> Result<(WebSocket<SplitStream>, Conn, Sender<()>), String> {
    let split = SplitStream::new(tcp).map_err(|e| e.to_string())?;
    let ws = tungstenite::accept_with_config(split, Some(wsio::ws_config()))
        .map_err(|e| format!("no WebSocket handshake: {e}"))?;
    let writer = wsio::writer_half(ws.get_ref(), Role::Server).map_err(|e| e.to_string())?;
    let socket = ws.get_ref().try_clone().map_err(|e| e.to_string())?;
    let (closed_tx, closed) = crossbeam_channel::bounded::<()>(0);
    let conn = Conn {
        number,
        writer: Mutex::new(writer),
        socket,
        next_id: AtomicU64::new(1),
        closed,
        replies: Mutex::new(HashMap::new()),
        deaf: Mutex::new(None),
    };
    Ok((ws, conn, closed_tx))
}

fn join_all(handles: Vec<JoinHandle<()>>) {
    for handle in handles {
        let _ = handle.join();
    }
}

/// Answers the messages of one connection (runs on its reader thread).
struct Dispatch {
    shared: Arc<Shared>,
    conn: Arc<Conn>,
}

type RpcResult = Result<Value, (i64, String)>;

impl Dispatch {
    /// Handles every complete frame in `decoder`, collecting the generators started.
    fn decoded(&self, decoder: &mut Decoder, generators: &mut Vec<JoinHandle<()>>) {
        loop {
            match decoder.next_frame() {
                Ok(Some(body)) => generators.extend(self.frame(&body)),
                Ok(None) => return,
                Err(e) => {
                    // The real server answers and stays connected; the rest of the message
                    // is dropped.
                    let n = self.conn.number;
                    self.shared
                        .log
                        .line(&format!("connection {n}: bad frame: {e}"));
                    self.reply_error(Value::Null, PARSE_ERROR, "Unknown message header");
                    decoder.clear();
                    return;
                }
            }
        }
    }

    /// Handles one frame body; returns the generator thread a `chat/ask` started.
    fn frame(&self, body: &[u8]) -> Option<JoinHandle<()>> {
        let msg = match Message::parse(body) {
            Ok(msg) => msg,
            Err(reason) => {
                self.shared.log.line(&format!(
                    "connection {}: rejected message: {reason}",
                    self.conn.number
                ));
                let code = if reason.starts_with("invalid JSON") {
                    PARSE_ERROR
                } else {
                    INVALID_REQUEST
                };
                self.reply_error(Value::Null, code, &reason);
                return None;
            }
        };
        match msg {
            Message::Request { id, method, params } => {
                self.log_recv(&method, &params);
                if !params.is_object() {
                    self.reply_error(id, INVALID_PARAMS, "params must be an object");
                    return None;
                }
                self.request(id, &method, params)
            }
            Message::Notification { method, params } => {
                self.log_recv(&method, &params);
                if !params.is_object() {
                    self.shared.log.line(&format!(
                        "ignored notification {method}: params must be an object"
                    ));
                    return None;
                }
                self.notification(&method, params)
            }
            Message::Response { id, result } => {
                // Only `tool/invoke` replies are awaited; the others are ignored.
                if !self.conn.deliver(&id, result) {
                    log::trace!("simulator: ignoring client reply to request {id}");
                }
                None
            }
        }
    }

    fn request(&self, id: Value, name: &str, params: Value) -> Option<JoinHandle<()>> {
        let shared = &self.shared;
        let result: RpcResult = match name {
            method::INITIALIZE => Ok(initialize_result()),
            method::AUTH_STATUS => Ok(account::auth_status(
                shared.account().as_ref(),
                &shared.tokens,
            )),
            method::QUERY_MODELS => Ok(models::query_models(shared.account().is_some())),
            method::GET_ENDPOINT => {
                Ok(json!({"endpoint": *shared.endpoint.lock().unwrap_or_else(|p| p.into_inner())}))
            }
            method::UPDATE_ENDPOINT => match params.get("endpoint").and_then(Value::as_str) {
                Some(url) => {
                    *shared.endpoint.lock().unwrap_or_else(|p| p.into_inner()) = url.to_string();
                    Ok(json!({"success": true}))
                }
                None => Err((INVALID_PARAMS, "endpoint must be a string".into())),
            },
            method::PING => Ok(json!({"success": true})),
            GENERATE_URL => Ok(self.generate_url()),
            LOGOUT => Ok(self.logout()),
            method::CHAT_ASK => return chat::ask(shared, &self.conn, params, Some(id)),
            method::CHAT_STOP => {
                self.stop(&params);
                Ok(json!({}))
            }
            method::CHAT_DELETE_SESSION => {
                shared.sessions.delete(str_param(&params, "sessionId"));
                Ok(Value::Null)
            }
            method::CHAT_LIST_SESSIONS => Ok(json!(shared.sessions.list())),
            native::APPROVE | native::INVOKE_RESULT => self
                .tool_event(name, &params)
                .map(|()| json!({}))
                .map_err(|e| (INVALID_PARAMS, e)),
            method::CHAT_GET_SESSION => {
                Ok(json!(shared.sessions.get(str_param(&params, "sessionId"))))
            }
            other => Err((METHOD_NOT_FOUND, format!("unknown method: {other}"))),
        };
        match result {
            Ok(value) => self.reply(&jsonrpc::response(id, value)),
            Err((code, message)) => self.reply_error(id, code, &message),
        }
        None
    }

    fn notification(&self, name: &str, params: Value) -> Option<JoinHandle<()>> {
        match name {
            method::CHAT_ASK => return chat::ask(&self.shared, &self.conn, params, None),
            method::CHAT_STOP => self.stop(&params),
            native::APPROVE | native::INVOKE_RESULT => {
                if let Err(e) = self.tool_event(name, &params) {
                    self.shared
                        .log
                        .line(&format!("ignored notification {name}: {e}"));
                }
            }
            // Like the real server, which also logs `initialized` as unknown.
            other => self
                .shared
                .log
                .line(&format!("unknown notification {other} ignored")),
        }
        None
    }

    /// `login/generateUrl`: starts a login whose page is on the simulator's HTTP port.
    fn generate_url(&self) -> Value {
        let shared = &self.shared;
        let port = shared.http_port;
        let state = shared.logins.begin();
        let url = format!(
            "http://127.0.0.1:{port}/login?nonce={}&port={port}&state={state}\
             &challenge={}&challenge_method=S256&machine_id={}",
            login::random_token(),
            login::random_token(),
            machine_id(&shared.work_dir),
        );
        shared
            .log
            .line(&format!("login/generateUrl: login {state} pending"));
        json!({"loginUrl": url, "success": true, "errorCode": "", "errorMsg": ""})
    }

    /// `auth/logout`: removes the login from the workDir.
    fn logout(&self) -> Value {
        match self.shared.log_out() {
            Ok(()) => {
                self.shared.log.line("auth/logout");
                json!({"success": true})
            }
            Err(e) => {
                self.shared
                    .log
                    .line(&format!("auth/logout failed: cannot remove the login: {e}"));
                json!({"success": false})
            }
        }
    }

    /// Passes a `tool/call/approve` or `tool/invokeResult` to the generator waiting for it.
    fn tool_event(&self, name: &str, params: &Value) -> Result<(), String> {
        if !self.shared.tool_calls.receive(name, params)? {
            self.shared.log.line(&format!(
                "{name}: no tool call waiting for toolCallId={}",
                str_param(params, "toolCallId")
            ));
        }
        Ok(())
    }

    fn stop(&self, params: &Value) {
        let (request_id, session_id) = (
            str_param(params, "requestId"),
            str_param(params, "sessionId"),
        );
        let stopped = self.shared.running.stop(request_id, session_id);
        self.shared.log.line(&format!(
            "chat/stop requestId={request_id} reached {stopped} generation(s)"
        ));
    }

    fn log_recv(&self, name: &str, params: &Value) {
        let line = match name {
            method::CHAT_ASK => format!(
                "recv chat/ask requestId={} sessionId={} isReply={} model={}",
                str_param(params, "requestId"),
                str_param(params, "sessionId"),
                params
                    .get("isReply")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                chat::model_key(params),
            ),
            method::CHAT_STOP => format!(
                "recv chat/stop requestId={}",
                str_param(params, "requestId")
            ),
            native::APPROVE => format!(
                "recv {name} toolCallId={} approval={}",
                str_param(params, "toolCallId"),
                params.get("approval").unwrap_or(&Value::Null)
            ),
            native::INVOKE_RESULT => format!(
                "recv {name} toolCallId={} success={}",
                str_param(params, "toolCallId"),
                params.get("success").unwrap_or(&Value::Null)
            ),
            other => format!("recv {other}"),
        };
        self.shared.log.line(&line);
    }

    fn reply(&self, msg: &Value) {
        if let Err(e) = self.conn.send(msg) {
            log::debug!(
                "simulator: connection {}: reply not sent: {e}",
                self.conn.number
            );
        }
    }

    fn reply_error(&self, id: Value, code: i64, message: &str) {
        self.reply(&jsonrpc::error_response(id, code, message));
    }
}

fn str_param<'a>(params: &'a Value, key: &str) -> &'a str {
    params.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A stable id of this "machine": derived from the workDir, so it differs between instances.
fn machine_id(work_dir: &std::path::Path) -> String {
    use sha1::{Digest, Sha1};
    let digest = Sha1::digest(work_dir.to_string_lossy().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn initialize_result() -> Value {
    json!({
        "capabilities": {
            "textDocumentSync": {"openClose": true, "change": 2},
            "workspace": {"workspaceFolders": {"supported": true, "changeNotifications": true}},
        },
        "serverInfo": {"name": "lingma", "version": VERSION},
    })
}
