//! One simulator WebSocket connection as its writers see it (`Conn`): the single writer that
//! the connection's reader and generator threads share, the table through which the client's
//! replies to the simulator's own requests reach the generator waiting for them, and the
//! registry of open connections (`Clients`) for notifications to every client.
//!
//! Writes block while the client does not read, as Lingma's do: every frame is written under
//! the writer lock, so frames of concurrent requests never interleave.

use std::collections::HashMap;
use std::io;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crossbeam_channel::{Receiver, Sender};
use lingma_protocol::jsonrpc::{self, RpcError};
use lingma_protocol::wsio::{self, SplitStream};
use serde_json::Value;
use tungstenite::protocol::Role;
use tungstenite::{Message as WsMessage, WebSocket};

use crate::script::Deaf;
use crate::upgrade::{Upgrade, REFUSED};
use tungstenite::handshake::server::Request;

/// A client's reply to one of the simulator's requests.
pub(crate) type Reply = Result<Value, RpcError>;

/// One WebSocket connection as its writers see it.
pub(crate) struct Conn {
    pub(crate) number: u64,
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

/// What the WebSocket handshake of connection `number` gives: the reader's own `WebSocket`,
/// the shared `Conn`, and the sender whose drop tells the connection's generators that it
/// has ended.
pub(crate) type Opened = (WebSocket<SplitStream>, Conn, Sender<()>);

impl Conn {
    /// Accepts the WebSocket handshake on `tcp` if it carries what `upgrade` wants.
    pub(crate) fn open(tcp: TcpStream, number: u64, upgrade: &Upgrade) -> Result<Opened, String> {
        let split = SplitStream::new(tcp).map_err(|e| e.to_string())?;
        // A cell: the handshake's error keeps the callback (and its borrows) alive.
        let refused = std::cell::Cell::new(None);
        #[allow(clippy::result_large_err)] // tungstenite's callback type
        let check = |req: &Request, resp| match upgrade.check(req) {
            Ok(()) => Ok(resp),
            Err((status, why)) => {
                let refusal = crate::upgrade::refusal(status, &why);
                refused.set(Some(why));
                Err(refusal)
            }
        };
        let ws = tungstenite::accept_hdr_with_config(split, check, Some(wsio::ws_config()));
        let ws = match (ws, refused.take()) {
            (Ok(ws), _) => ws,
            (Err(_), Some(why)) => return Err(format!("{REFUSED}{why}")),
            (Err(e), None) => return Err(format!("no WebSocket handshake: {e}")),
        };
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

    pub(crate) fn closed(&self) -> &Receiver<()> {
        &self.closed
    }

    /// A server→client request with a fresh int id (the reply is ignored).
    pub(crate) fn request(&self, method: &str, params: Value) -> Value {
        jsonrpc::request(self.next_id.fetch_add(1, Ordering::Relaxed), method, params)
    }

    /// A server→client request whose reply goes to the returned `AwaitedReply` (registered
    /// before the request can be sent, so a fast reply is not lost).
    pub(crate) fn request_awaiting(
        &self,
        method: &str,
        params: Value,
    ) -> (Value, AwaitedReply<'_>) {
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
    pub(crate) fn deliver(&self, id: &Value, reply: Reply) -> bool {
        let Some(id) = id.as_u64() else {
            return false;
        };
        let waiting = self.lock_replies().remove(&id);
        waiting.is_some_and(|tx| tx.try_send(reply).is_ok())
    }

    fn lock_replies(&self) -> MutexGuard<'_, HashMap<u64, Sender<Reply>>> {
        self.replies.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends one framed JSON-RPC message as one text message.
    pub(crate) fn send(&self, msg: &Value) -> io::Result<()> {
        self.send_parts(&[&jsonrpc::encode_message(msg)], false)
    }

    /// Sends `parts` as consecutive WebSocket messages under one hold of the writer lock.
    /// Parts that are not valid UTF-8 (a cut inside a character) can only go as binary.
    pub(crate) fn send_parts(&self, parts: &[&[u8]], binary: bool) -> io::Result<()> {
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
    pub(crate) fn go_deaf(&self, deaf: Deaf) {
        *self.deaf.lock().unwrap_or_else(|p| p.into_inner()) = Some(deaf);
    }

    pub(crate) fn take_deaf(&self) -> Option<Deaf> {
        self.deaf.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Shuts the TCP socket down (both directions): the reader thread ends, writes fail.
    pub(crate) fn shutdown(&self) {
        self.socket.shutdown();
    }
}

/// The reply to one request, once it comes; unregisters the request when dropped.
pub(crate) struct AwaitedReply<'a> {
    conn: &'a Conn,
    id: u64,
    pub(crate) replies: Receiver<Reply>,
}

impl Drop for AwaitedReply<'_> {
    fn drop(&mut self) {
        self.conn.lock_replies().remove(&self.id);
    }
}

/// The open connections by number, for messages to every client (`auth/report`).
#[derive(Default)]
pub(crate) struct Clients {
    conns: Mutex<HashMap<u64, Weak<Conn>>>,
}

impl Clients {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Weak<Conn>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn add(&self, conn: &Arc<Conn>) {
        self.lock().insert(conn.number, Arc::downgrade(conn));
    }

    pub(crate) fn remove(&self, number: u64) {
        self.lock().remove(&number);
    }

    /// Sends a notification to every open connection (outside the registry's lock);
    /// returns how many got it.
    pub(crate) fn notify_all(&self, name: &str, params: &Value) -> usize {
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
