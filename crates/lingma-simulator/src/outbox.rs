//! How one generation's frames go on the wire (`script::Wire`): whole text messages,
//! binary messages, frames split at byte positions, or everything packed into one message.
//! Used by the generator threads; all writing goes through the connection's `Conn`.

use std::io;

use lingma_protocol::jsonrpc;
use serde_json::Value;

use crate::conn::Conn;
use crate::script::{self, Wire};

/// Puts one generation's frames on the wire as its `Wire` directives say.
pub(crate) struct Outbox<'a> {
    conn: &'a Conn,
    wire: Wire,
    /// `wire=packed`: everything since the ack, sent as one message by `flush`.
    packed: Vec<u8>,
}

impl<'a> Outbox<'a> {
    pub(crate) fn new(conn: &'a Conn, wire: Wire) -> Self {
        Outbox {
            conn,
            wire,
            packed: Vec::new(),
        }
    }

    pub(crate) fn notify(&mut self, name: &str, params: Value) -> io::Result<()> {
        self.send(&jsonrpc::notification(name, params))
    }

    pub(crate) fn request(&mut self, name: &str, params: Value) -> io::Result<()> {
        let msg = self.conn.request(name, params);
        self.send(&msg)
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
