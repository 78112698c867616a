//! How one generation's frames go on the wire (`script::Wire`): whole text messages,
//! binary messages, frames split at byte positions, or everything packed into one message.
//! Used by the generator threads; all writing goes through the connection's `Conn`. A turn
//! asked with ACP's `session/prompt` has its events translated by an `acp_outbox::Encoder`.

use std::io;

use lingma_protocol::jsonrpc;
use serde_json::Value;

use crate::acp_outbox::{AcpTurn, Encoder};
use crate::conn::Conn;
use crate::script::{self, Step, Wire};

/// Puts one generation's frames on the wire as its `Wire` directives say.
pub(crate) struct Outbox<'a> {
    conn: &'a Conn,
    wire: Wire,
    /// `wire=packed`: everything since the ack, sent as one message by `flush`.
    packed: Vec<u8>,
    /// An ACP turn: its cosy events go out as the encoder writes them.
    acp: Option<Encoder>,
}

impl<'a> Outbox<'a> {
    pub(crate) fn new(conn: &'a Conn, wire: Wire) -> Self {
        Outbox {
            conn,
            wire,
            packed: Vec::new(),
            acp: None,
        }
    }

    /// Writes the events of the plan made of `steps` in ACP's form when `acp` is set.
    pub(crate) fn dialect(mut self, acp: Option<&AcpTurn>, steps: &[Step]) -> Self {
        self.acp = acp.map(|turn| Encoder::new(turn, steps));
        self
    }

    pub(crate) fn notify(&mut self, name: &str, params: Value) -> io::Result<()> {
        if let Some(msgs) = self.acp.as_mut().map(|acp| acp.encode(name, &params)) {
            return self.send_all(&msgs);
        }
        self.send(&jsonrpc::notification(name, params))
    }

    pub(crate) fn request(&mut self, name: &str, params: Value) -> io::Result<()> {
        if let Some(msgs) = self.acp.as_mut().map(|acp| acp.encode(name, &params)) {
            return self.send_all(&msgs);
        }
        let msg = self.conn.request(name, params);
        self.send(&msg)
    }

    /// An ACP prompt's answer, once its turn has finished.
    pub(crate) fn take_answer(&mut self) -> Option<Value> {
        self.acp.as_mut()?.take_answer()
    }

    fn send_all(&mut self, msgs: &[Value]) -> io::Result<()> {
        msgs.iter().try_for_each(|msg| self.send(msg))
    }

    pub(crate) fn send(&mut self, msg: &Value) -> io::Result<()> {
        let frame = jsonrpc::encode_message(msg);
        if self.wire.packed {
            self.packed.extend_from_slice(&frame);
            return Ok(());
        }
        self.write(&frame)
    }

    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if self.packed.is_empty() {
            return Ok(());
        }
        let packed = std::mem::take(&mut self.packed);
        self.write(&packed)
    }

    /// One WebSocket text message that is not an LSP frame, sent at once even when packing.
    pub(crate) fn garbage(&self) -> io::Result<()> {
        self.conn.send_parts(&[script::GARBAGE.as_bytes()], false)
    }

    /// A frame header declaring a body one byte over the frame limit, sent at once.
    pub(crate) fn oversize(&self) -> io::Result<()> {
        let head = format!("Content-Length: {}\r\n\r\n{{", jsonrpc::MAX_FRAME_BYTES + 1);
        self.conn.send_parts(&[head.as_bytes()], false)
    }

    fn write(&self, bytes: &[u8]) -> io::Result<()> {
        if !self.wire.split {
            return self.conn.send_parts(&[bytes], self.wire.binary);
        }
        let mut parts = Vec::new();
        let mut start = 0;
        for cut in script::split_points(bytes).into_iter().chain([bytes.len()]) {
            parts.push(&bytes[start..cut]);
            start = cut;
        }
        self.conn.send_parts(&parts, self.wire.binary)
    }
}
