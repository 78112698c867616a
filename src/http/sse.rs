//! The SSE writer: owns the bytes of a streamed response on the client's socket — the head,
//! chunked framing, one flush per event — and turns a failed write into "the client went
//! away". tiny_http's `Response` would buffer the body in 8 KiB chunks, so streams bypass it
//! and write to the raw connection.

use std::io::{self, Write};

pub(crate) struct SseWriter {
    out: Box<dyn Write + Send>,
    /// HTTP/1.0 clients get an unframed body ended by closing the connection.
    chunked: bool,
}

/// The client is gone (reset, closed, or not reading); stop generating for it.
#[derive(Debug)]
pub(crate) struct ClientGone(pub(crate) io::Error);

impl SseWriter {
    /// Writes the status line and headers and flushes them.
    pub(crate) fn start(
        mut out: Box<dyn Write + Send>,
        http10: bool,
        headers: &[(&str, String)],
    ) -> Result<Self, ClientGone> {
        let mut head = String::with_capacity(256);
        head.push_str(if http10 {
            "HTTP/1.0 200 OK\r\n"
        } else {
            "HTTP/1.1 200 OK\r\n"
        });
        head.push_str("Content-Type: text/event-stream; charset=utf-8\r\n");
        head.push_str("Cache-Control: no-cache, no-transform\r\n");
        head.push_str("X-Accel-Buffering: no\r\n");
        if http10 {
            head.push_str("Connection: close\r\n");
        } else {
            head.push_str("Transfer-Encoding: chunked\r\n");
        }
        for (name, value) in headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        out.write_all(head.as_bytes())
            .and_then(|_| out.flush())
            .map_err(ClientGone)?;
        Ok(SseWriter {
            out,
            chunked: !http10,
        })
    }

    /// Sends one event (`event:` line only when named) and flushes it to the socket.
    pub(crate) fn event(&mut self, name: Option<&str>, data: &str) -> Result<(), ClientGone> {
        self.write_chunk(event_text(name, data).as_bytes())
    }

    /// A comment line; keeps idle connections and proxies awake.
    pub(crate) fn comment(&mut self, text: &str) -> Result<(), ClientGone> {
        self.write_chunk(comment_text(text).as_bytes())
    }

    fn write_chunk(&mut self, payload: &[u8]) -> Result<(), ClientGone> {
        let res = if self.chunked {
            let mut buf = Vec::with_capacity(payload.len() + 16);
            buf.extend_from_slice(format!("{:x}\r\n", payload.len()).as_bytes());
            buf.extend_from_slice(payload);
            buf.extend_from_slice(b"\r\n");
            self.out.write_all(&buf)
        } else {
            self.out.write_all(payload)
        };
        res.and_then(|_| self.out.flush()).map_err(ClientGone)
    }

    /// Ends the body (the terminating chunk) so the connection can be reused.
    pub(crate) fn finish(mut self) -> Result<(), ClientGone> {
        if self.chunked {
            self.out
                .write_all(b"0\r\n\r\n")
                .and_then(|_| self.out.flush())
                .map_err(ClientGone)?;
        }
        Ok(())
    }
}

/// One event as it goes on the wire (before chunked framing): an `event:` line only when
/// named, one `data:` line per line of `data`, and the blank line that ends it.
pub(crate) fn event_text(name: Option<&str>, data: &str) -> String {
    let mut payload = String::with_capacity(data.len() + 32);
    if let Some(n) = name {
        payload.push_str("event: ");
        payload.push_str(n);
        payload.push('\n');
    }
    for line in data.split('\n') {
        payload.push_str("data: ");
        payload.push_str(line);
        payload.push('\n');
    }
    payload.push('\n');
    payload
}

/// A comment as it goes on the wire.
pub(crate) fn comment_text(text: &str) -> String {
    format!(": {text}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn frames_named_events_in_chunks() {
        let sink = Sink::default();
        let mut w = SseWriter::start(
            Box::new(sink.clone()),
            false,
            &[("X-Request-Id", "r1".into())],
        )
        .unwrap();
        w.event(Some("ping"), "{\"type\":\"ping\"}").unwrap();
        w.event(None, "a\nb").unwrap();
        w.finish().unwrap();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Transfer-Encoding: chunked\r\nX-Request-Id: r1\r\n\r\n"));
        let ev1 = "event: ping\ndata: {\"type\":\"ping\"}\n\n";
        assert!(text.contains(&format!("{:x}\r\n{ev1}\r\n", ev1.len())));
        assert!(text.contains("data: a\ndata: b\n\n"));
        assert!(text.ends_with("0\r\n\r\n"));
    }

    #[test]
    fn http10_is_unframed() {
        let sink = Sink::default();
        let mut w = SseWriter::start(Box::new(sink.clone()), true, &[]).unwrap();
        w.event(None, "x").unwrap();
        w.finish().unwrap();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("Connection: close") && text.ends_with("\r\n\r\ndata: x\n\n"));
    }
}
