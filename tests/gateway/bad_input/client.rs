//! Sending a raw request as a client would, and judging the answer against what the case
//! expects: status, the protocol's error shape, the field a 400 names, the success body.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use serde_json::Value;

use super::{anthropic_path, info, Case, Expect, Kind, HANG};

pub(super) struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub(super) enum Answer {
    Response(Resp),
    /// The connection closed (or was reset) before a status line.
    Closed(String),
}

pub(super) fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Sends one raw request and reads the answer as a client would (interim 1xx answers
/// skipped). `Err`: no answer in `HANG`, or an answer cut off.
pub(super) fn send(addr: &str, raw: &[u8], head: bool) -> Result<Answer, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(HANG)).unwrap();
    s.set_write_timeout(Some(HANG)).unwrap();
    // The server may answer (and stop reading) before the whole request is in.
    let _ = s.write_all(raw);
    let mut r = BufReader::new(s);
    loop {
        let mut line = Vec::new();
        match r.read_until(b'\n', &mut line) {
            Ok(0) => return Ok(Answer::Closed("closed".into())),
            Err(e) if is_timeout(&e) => return Err("no answer (a hang)".into()),
            Err(e) => return Ok(Answer::Closed(e.to_string())),
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&line).to_string();
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {line:?}"))?;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            r.read_line(&mut h)
                .map_err(|e| format!("reading the head: {e}"))?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        if (100..200).contains(&status) {
            continue;
        }
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        if head {
            return Ok(Answer::Response(resp));
        }
        let cut = |e: std::io::Error| format!("answer {status} cut off: {e}");
        if resp
            .header("transfer-encoding")
            .is_some_and(|v| v.contains("chunked"))
        {
            loop {
                let mut size = String::new();
                r.read_line(&mut size).map_err(cut)?;
                let n = usize::from_str_radix(size.trim(), 16)
                    .map_err(|e| format!("chunk size {size:?}: {e}"))?;
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk).map_err(cut)?;
                if n == 0 {
                    break;
                }
                resp.body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(len) = resp.header("content-length") {
            let n: usize = len.parse().map_err(|_| format!("Content-Length {len:?}"))?;
            resp.body.resize(n, 0);
            r.read_exact(&mut resp.body).map_err(cut)?;
        } else {
            r.read_to_end(&mut resp.body).map_err(cut)?;
        }
        return Ok(Answer::Response(resp));
    }
}

/// `child` is inside `parent` (`messages[1].content` in `messages`).
pub(super) fn under(child: &str, parent: &str) -> bool {
    child.len() > parent.len()
        && child.starts_with(parent)
        && matches!(child.as_bytes()[parent.len()], b'.' | b'[')
}

/// The location holding `at`, if any.
pub(super) fn parent(at: &str) -> Option<&str> {
    at.rfind(['.', '[']).map(|i| &at[..i])
}

/// An error naming `param` is about `at`: the same place, one inside or around it, or one
/// next to it (a missing `role` when `type` was spoiled).
pub(super) fn names(param: &str, at: &str) -> bool {
    let near = |a: &str, b: &str| a == b || under(a, b) || under(b, a);
    near(param, at) || parent(at).is_some_and(|p| near(param, p))
}

/// The error body of a path, in its protocol's shape.
pub(super) fn check_shape(path: &str, r: &Resp) -> Result<Value, String> {
    if r.header("x-request-id").is_none() {
        return Err("no x-request-id".into());
    }
    if !r
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
    {
        return Err(format!("Content-Type {:?}", r.header("content-type")));
    }
    let v: Value = serde_json::from_slice(&r.body).map_err(|e| format!("not JSON ({e})"))?;
    let s = |x: &Value| x.is_string();
    let s_or_null = |x: &Value| x.is_string() || x.is_null();
    let ok = if anthropic_path(path) {
        v.as_object().is_some_and(|o| o.len() == 2)
            && v["type"] == "error"
            && v["error"].as_object().is_some_and(|o| o.len() == 2)
            && s(&v["error"]["type"])
            && s(&v["error"]["message"])
    } else {
        v.as_object().is_some_and(|o| o.len() == 1)
            && v["error"].as_object().is_some_and(|o| o.len() == 4)
            && s(&v["error"]["message"])
            && s(&v["error"]["type"])
            && s_or_null(&v["error"]["param"])
            && s_or_null(&v["error"]["code"])
    };
    if ok {
        Ok(v)
    } else {
        Err("not the protocol's error shape".into())
    }
}

/// A 200 of a known route carries its success body.
pub(super) fn check_success(path: &str, r: &Resp, head: bool) -> Result<(), String> {
    if head {
        return Ok(());
    }
    let route = path.split('?').next().unwrap();
    let sse = r
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream"));
    let text = String::from_utf8_lossy(&r.body);
    let json = || serde_json::from_slice::<Value>(&r.body).map_err(|e| format!("not JSON ({e})"));
    let ok = match info(route).kind {
        Kind::Chat if sse => text.contains("data: [DONE]"),
        Kind::Chat => {
            let v = json()?;
            v["object"] == "chat.completion" && v["choices"][0]["message"].is_object()
        }
        Kind::Responses if sse => {
            text.contains("event: response.completed")
                || text.contains("event: response.incomplete")
        }
        Kind::Responses => {
            let v = json()?;
            v["object"] == "response" && (v["status"] == "completed" || v["status"] == "incomplete")
        }
        Kind::Messages if sse => text.contains("event: message_stop"),
        Kind::Messages => json()?["type"] == "message",
        Kind::CountTokens => json()?["input_tokens"].is_u64(),
        Kind::Json => json()?.is_object(),
        Kind::Metrics => {
            r.header("content-type")
                .is_some_and(|c| c.starts_with("text/plain"))
                && !text.is_empty()
        }
        Kind::NoAccount => false,
    };
    if ok {
        Ok(())
    } else {
        Err("not the route's success body".into())
    }
}

/// Statuses the HTTP layer may answer a request it cannot frame with.
pub(super) const FRAMING: &[u16] = &[400, 408, 413, 414, 417, 431, 501, 505];

pub(super) fn judge(case: &Case, answer: &Answer) -> Result<(), String> {
    let r = match answer {
        Answer::Closed(why) if matches!(case.expect, Expect::Framing) => {
            let _ = why;
            return Ok(());
        }
        Answer::Closed(why) => return Err(format!("no answer: the connection closed ({why})")),
        Answer::Response(r) => r,
    };
    if r.status >= 500 && !matches!(case.expect, Expect::Framing | Expect::Refused(505)) {
        return Err(format!("a {} (a 5xx)", r.status));
    }
    let error_shape = |r: &Resp| -> Result<Option<Value>, String> {
        if case.head {
            return Ok(None);
        }
        check_shape(&case.path, r).map(Some)
    };
    match &case.expect {
        Expect::Ok if r.status == 200 => check_success(&case.path, r, case.head),
        Expect::Ok => Err(format!("{} where 200 was due", r.status)),
        Expect::Error(status) if r.status == *status => {
            error_shape(r)?;
            if *status == 405 && r.header("allow").is_none() {
                return Err("a 405 without Allow".into());
            }
            Ok(())
        }
        Expect::Error(status) => Err(format!("{} where {status} was due", r.status)),
        Expect::BadField(at) if r.status == 400 => {
            let Some(v) = error_shape(r)? else {
                return Ok(());
            };
            if anthropic_path(&case.path) {
                let message = v["error"]["message"].as_str().unwrap_or("");
                let mut place = Some(at.as_str());
                while let Some(p) = place {
                    if message.contains(p) {
                        return Ok(());
                    }
                    place = parent(p);
                }
                Err(format!("the message does not name {at}"))
            } else {
                let param = v["error"]["param"].as_str().unwrap_or("");
                if names(param, at) {
                    Ok(())
                } else {
                    Err(format!("param {param:?} is not {at}"))
                }
            }
        }
        Expect::BadField(at) => Err(format!("{} where a 400 naming {at} was due", r.status)),
        // The gateway puts an x-request-id on every answer; the HTTP layer's own have none.
        Expect::Refused(status) if r.status == *status && r.header("x-request-id").is_none() => {
            Ok(())
        }
        Expect::Refused(status) => Err(format!(
            "{} (x-request-id {:?}) where the HTTP layer's {status} was due",
            r.status,
            r.header("x-request-id")
        )),
        Expect::Framing if FRAMING.contains(&r.status) => Ok(()),
        Expect::Framing if (400..500).contains(&r.status) => error_shape(r).map(drop),
        Expect::Framing => Err(format!("{} to a request HTTP cannot frame", r.status)),
    }
}
