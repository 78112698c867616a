//! The WebSocket settings both ends use, and the simulator's socket: a TCP stream split into
//! an independent read half and a locked, blocking write half, so that one thread can block
//! in a WebSocket read while others send frames (the gateway's side does not block on its
//! writes at all: see `upstream::writer`).
//!
//! tungstenite's `WebSocket` owns its stream and is not split-able. The simulator runs two
//! `WebSocket` values over the same socket: the reader's (which also writes the occasional
//! pong or close reply) and the writer's. Every `write` call takes the shared lock and writes
//! its whole buffer, and tungstenite flushes whole frames per call, so frames from the two
//! never interleave on the wire. A write blocks while the peer does not read, as Lingma's do.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};

use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::WebSocket;

pub struct SplitStream {
    read: TcpStream,
    write: Arc<Mutex<TcpStream>>,
}

impl SplitStream {
    pub fn new(stream: TcpStream) -> io::Result<Self> {
        let write = stream.try_clone()?;
        Ok(SplitStream {
            read: stream,
            write: Arc::new(Mutex::new(write)),
        })
    }

    /// A second handle that shares the write lock; its reads use their own clone.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(SplitStream {
            read: self.read.try_clone()?,
            write: Arc::clone(&self.write),
        })
    }

    /// Unblocks any thread reading from this socket (used to stop reader loops).
    pub fn shutdown(&self) {
        let _ = self.read.shutdown(Shutdown::Both);
    }
}

impl Read for SplitStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read.read(buf)
    }
}

impl Write for SplitStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut w = self.write.lock().unwrap_or_else(|p| p.into_inner());
        w.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Buffer sizes small enough that hundreds of sockets stay cheap; frames still may be large.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(crate::jsonrpc::MAX_FRAME_BYTES + 1024))
        .max_frame_size(Some(crate::jsonrpc::MAX_FRAME_BYTES + 1024))
}

/// For a `WebSocket` that only writes: a tiny read buffer, and each frame handed to the
/// stream in one `write` call as soon as it is made.
pub fn writer_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(256)
        .write_buffer_size(0)
}

/// The writing half's own `WebSocket` over a clone of `stream` (it never reads).
pub fn writer_half(stream: &SplitStream, role: Role) -> io::Result<WebSocket<SplitStream>> {
    Ok(WebSocket::from_raw_socket(
        stream.try_clone()?,
        role,
        Some(writer_config()),
    ))
}
