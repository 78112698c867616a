//! LSP base-protocol framing (`Content-Length: N\r\n\r\n<json>`) and JSON-RPC 2.0 message
//! shapes, shared by the gateway's Lingma client and by the simulator. Pure code: no sockets,
//! threads or clocks, so it is tested on byte literals.

use serde_json::{json, Value};

/// Method and event names of the Lingma protocol (`shared/lingma-protocol.md`).
pub mod method {
    pub const INITIALIZE: &str = "initialize";
    pub const INITIALIZED: &str = "initialized";
    pub const AUTH_STATUS: &str = "auth/status";
    pub const QUERY_MODELS: &str = "config/queryModels";
    pub const GET_ENDPOINT: &str = "config/getEndpoint";
    pub const UPDATE_ENDPOINT: &str = "config/updateEndpoint";
    pub const PING: &str = "ping";
    pub const LOGIN_GENERATE_URL: &str = "login/generateUrl";
    pub const AUTH_LOGOUT: &str = "auth/logout";
    /// Server→client notification: the AuthStatus after a login completed.
    pub const AUTH_REPORT: &str = "auth/report";
    pub const CHAT_ASK: &str = "chat/ask";
    pub const CHAT_STOP: &str = "chat/stop";
    pub const CHAT_ANSWER: &str = "chat/answer";
    pub const CHAT_FINISH: &str = "chat/finish";
    pub const CHAT_STEP: &str = "chat/process_step_callback";
    pub const CHAT_DELETE_SESSION: &str = "chat/deleteSessionById";
    pub const CHAT_LIST_SESSIONS: &str = "chat/listAllSessions";
    pub const CHAT_GET_SESSION: &str = "chat/getSessionById";
    pub const TITLE_UPDATE: &str = "session/title/update";
    pub const CONTEXT_USAGE: &str = "context/usage/sync";
    pub const TOOL_CALL_SYNC: &str = "tool/call/sync";
    pub const TOOL_CALL_APPROVE: &str = "tool/call/approve";
    pub const TOOL_INVOKE: &str = "tool/invoke";
    pub const TOOL_INVOKE_RESULT: &str = "tool/invokeResult";
    // The ACP dialect (§7).
    pub const SESSION_NEW: &str = "session/new";
    pub const SESSION_SET_MODEL: &str = "session/set_model";
    pub const SESSION_PROMPT: &str = "session/prompt";
    pub const SESSION_CANCEL: &str = "session/cancel";
    /// Server→client notification: one event of a prompt's turn.
    pub const SESSION_UPDATE: &str = "session/update";
}

/// Frames larger than this are treated as a broken peer rather than buffered forever.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;
/// A header block longer than this cannot be a real LSP header.
const MAX_HEADER_BYTES: usize = 1024;

/// Wraps one JSON body in an LSP frame. The length counts UTF-8 bytes, not characters.
pub fn encode_frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 32);
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    out
}

/// Serialises a JSON-RPC message and frames it.
pub fn encode_message(msg: &Value) -> Vec<u8> {
    encode_frame(&serde_json::to_vec(msg).expect("a serde_json::Value always serialises"))
}

pub fn request(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

pub fn notification(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params})
}

pub fn response(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

pub fn error_response(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// Why a byte stream could not be split into frames. After any of these the stream is out of
/// step and the connection has to be dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Bytes that do not start with a `Content-Length` header (the real server answers
    /// `Unknown message header`).
    MissingHeader(String),
    BadLength(String),
    TooLarge(usize),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::MissingHeader(s) => write!(f, "Unknown message header: {s:?}"),
            FrameError::BadLength(s) => write!(f, "bad Content-Length: {s:?}"),
            FrameError::TooLarge(n) => write!(f, "frame of {n} bytes exceeds the limit"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Incremental frame decoder: feed it the payload of every WebSocket message (text or binary)
/// in order; it yields whole bodies. One message may hold several frames and one frame may
/// span several messages.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered but not yet part of a complete frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Drops everything buffered (the simulator does this after rejecting a message).
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// Returns the next complete body, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let Some(header_end) = find(&self.buf, b"\r\n\r\n") else {
            // Check the prefix early so garbage is rejected without waiting for more bytes.
            if !looks_like_header_prefix(&self.buf) {
                return Err(FrameError::MissingHeader(preview(&self.buf)));
            }
            // Past this, a header end still to come would be beyond the limit.
            if self.buf.len() > MAX_HEADER_BYTES + 3 {
                return Err(FrameError::MissingHeader(preview(&self.buf)));
            }
            return Ok(None);
        };
        // The same limit when the whole header arrived at once, so that how the stream is
        // cut into messages never decides whether a frame is accepted.
        if header_end > MAX_HEADER_BYTES {
            return Err(FrameError::MissingHeader(preview(&self.buf)));
        }
        let header = &self.buf[..header_end];
        let len = parse_header(header)?;
        if len > MAX_FRAME_BYTES {
            return Err(FrameError::TooLarge(len));
        }
        let start = header_end + 4;
        if self.buf.len() < start + len {
            return Ok(None);
        }
        let body = self.buf[start..start + len].to_vec();
        self.buf.drain(..start + len);
        Ok(Some(body))
    }
}

/// True while `buf` could still become `Content-Length: ...` (or another header line first).
fn looks_like_header_prefix(buf: &[u8]) -> bool {
    let first = buf.split(|b| *b == b'\r').next().unwrap_or(buf);
    let want = b"content-";
    let n = first.len().min(want.len());
    first[..n].eq_ignore_ascii_case(&want[..n])
}

fn parse_header(header: &[u8]) -> Result<usize, FrameError> {
    let text =
        std::str::from_utf8(header).map_err(|_| FrameError::MissingHeader(preview(header)))?;
    let mut length = None;
    for line in text.split("\r\n") {
        let Some((name, value)) = line.split_once(':') else {
            return Err(FrameError::MissingHeader(line.to_string()));
        };
        // A line must start with its name: the check of an incomplete header above reads
        // the first line so, and the two must agree however the stream is cut.
        let name = name.trim_end();
        if name.eq_ignore_ascii_case("content-length") {
            let v = value.trim();
            length = Some(
                v.parse::<usize>()
                    .map_err(|_| FrameError::BadLength(v.to_string()))?,
            );
        } else if !name.eq_ignore_ascii_case("content-type") {
            return Err(FrameError::MissingHeader(line.to_string()));
        }
    }
    length.ok_or_else(|| FrameError::MissingHeader(text.to_string()))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn preview(bytes: &[u8]) -> String {
    let n = bytes.len().min(40);
    String::from_utf8_lossy(&bytes[..n]).into_owned()
}

/// One decoded JSON-RPC message, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Has `method` and `id`: the peer expects a reply.
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    /// Has `method`, no `id`.
    Notification { method: String, params: Value },
    /// Has `id` and `result` or `error`.
    Response {
        id: Value,
        result: Result<Value, RpcError>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JSON-RPC error {}: {}", self.code, self.message)
    }
}

impl Message {
    /// Parses one frame body. `Err` carries a short reason for the log.
    pub fn parse(body: &[u8]) -> Result<Message, String> {
        let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
        let Value::Object(mut obj) = v else {
            return Err("JSON-RPC message is not an object".into());
        };
        let id = obj.remove("id").filter(|v| !v.is_null());
        if let Some(Value::String(method)) = obj.remove("method") {
            let params = obj.remove("params").unwrap_or(Value::Null);
            return Ok(match id {
                Some(id) => Message::Request { id, method, params },
                None => Message::Notification { method, params },
            });
        }
        let Some(id) = id else {
            return Err("JSON-RPC message has neither method nor id".into());
        };
        if let Some(err) = obj.remove("error") {
            let code = err.get("code").and_then(Value::as_i64).unwrap_or(-32603);
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            return Ok(Message::Response {
                id,
                result: Err(RpcError { code, message }),
            });
        }
        let result = obj.remove("result").unwrap_or(Value::Null);
        Ok(Message::Response {
            id,
            result: Ok(result),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(dec: &mut Decoder) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(b) = dec.next_frame().unwrap() {
            out.push(String::from_utf8(b).unwrap());
        }
        out
    }

    #[test]
    fn encodes_byte_length_not_char_count() {
        let f = encode_frame("{\"t\":\"你好\"}".as_bytes());
        assert!(f.starts_with(b"Content-Length: 14\r\n\r\n"));
    }

    #[test]
    fn decodes_packed_frames() {
        let mut d = Decoder::new();
        let mut bytes = encode_frame(b"{\"a\":1}");
        bytes.extend(encode_frame(b"{\"b\":2}"));
        d.push(&bytes);
        assert_eq!(frames(&mut d), vec!["{\"a\":1}", "{\"b\":2}"]);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn decodes_frame_split_inside_header_and_inside_multibyte_char() {
        let body = "{\"t\":\"héllo 世界\"}".as_bytes();
        let all = encode_frame(body);
        for cut1 in 1..all.len() - 1 {
            let cut2 = (cut1 + 7).min(all.len() - 1);
            let mut d = Decoder::new();
            d.push(&all[..cut1]);
            let mut got = frames(&mut d);
            d.push(&all[cut1..cut2]);
            got.extend(frames(&mut d));
            d.push(&all[cut2..]);
            got.extend(frames(&mut d));
            assert_eq!(
                got,
                vec![String::from_utf8(body.to_vec()).unwrap()],
                "cut at {cut1}"
            );
        }
    }

    #[test]
    fn accepts_content_type_header_and_any_case() {
        let mut d = Decoder::new();
        d.push(b"content-length: 2\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n{}");
        assert_eq!(frames(&mut d), vec!["{}"]);
    }

    #[test]
    fn rejects_body_without_header() {
        let mut d = Decoder::new();
        d.push(b"{\"jsonrpc\":\"2.0\"}");
        assert!(matches!(d.next_frame(), Err(FrameError::MissingHeader(_))));
    }

    #[test]
    fn rejects_bad_length_and_oversized_frames() {
        let mut d = Decoder::new();
        d.push(b"Content-Length: abc\r\n\r\n");
        assert!(matches!(d.next_frame(), Err(FrameError::BadLength(_))));
        let mut d = Decoder::new();
        d.push(format!("Content-Length: {}\r\n\r\n", MAX_FRAME_BYTES + 1).as_bytes());
        assert!(matches!(d.next_frame(), Err(FrameError::TooLarge(_))));
    }

    #[test]
    fn rejects_endless_header() {
        let mut d = Decoder::new();
        d.push(b"Content-Length: 1");
        assert_eq!(d.next_frame(), Ok(None));
        d.push(&[b'1'; 2000]);
        assert!(d.next_frame().is_err());
    }

    #[test]
    fn a_long_header_is_refused_however_it_arrives() {
        let header = format!(
            "Content-Length: {}2\r\n\r\n{{}}",
            "0".repeat(MAX_HEADER_BYTES)
        );
        let mut whole = Decoder::new();
        whole.push(header.as_bytes());
        assert!(whole.next_frame().is_err());
        let mut bytewise = Decoder::new();
        let mut refused = false;
        for b in header.as_bytes() {
            bytewise.push(&[*b]);
            if bytewise.next_frame().is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused);
        // Right at the limit, it is a header in both cases.
        let pad = MAX_HEADER_BYTES - "Content-Length: 2".len();
        let header = format!("Content-Length: {}2\r\n\r\n{{}}", "0".repeat(pad));
        let mut bytewise = Decoder::new();
        let mut got = Vec::new();
        for b in header.as_bytes() {
            bytewise.push(&[*b]);
            got.extend(bytewise.next_frame().unwrap());
        }
        assert_eq!(got, vec![b"{}".to_vec()]);
    }

    #[test]
    fn a_header_line_starting_with_whitespace_is_refused_however_it_arrives() {
        for stream in [
            &b"\nContent-Length: 2\r\n\r\n{}"[..],
            b" Content-Length: 2\r\n\r\n{}",
        ] {
            let mut whole = Decoder::new();
            whole.push(stream);
            assert!(whole.next_frame().is_err());
            let mut split = Decoder::new();
            split.push(&stream[..5]);
            assert!(split.next_frame().is_err());
        }
        let mut d = Decoder::new();
        d.push(b"Content-Length : 2\r\n\r\n{}");
        assert_eq!(frames(&mut d), vec!["{}"]);
    }

    #[test]
    fn classifies_messages() {
        let m = Message::parse(
            br#"{"jsonrpc":"2.0","id":3,"method":"chat/answer","params":{"text":"x"}}"#,
        )
        .unwrap();
        assert!(matches!(m, Message::Request { ref method, .. } if method == "chat/answer"));
        let m = Message::parse(br#"{"jsonrpc":"2.0","method":"chat/finish","params":{}}"#).unwrap();
        assert!(matches!(m, Message::Notification { .. }));
        let m = Message::parse(br#"{"jsonrpc":"2.0","id":"a","result":{"ok":true}}"#).unwrap();
        assert_eq!(
            m,
            Message::Response {
                id: json!("a"),
                result: Ok(json!({"ok":true}))
            }
        );
        let m = Message::parse(
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"unknown method: x"}}"#,
        )
        .unwrap();
        assert!(matches!(
            m,
            Message::Response {
                result: Err(RpcError { code: -32601, .. }),
                ..
            }
        ));
        assert!(Message::parse(b"[1,2]").is_err());
        assert!(Message::parse(b"{\"jsonrpc\":\"2.0\"}").is_err());
    }
}
