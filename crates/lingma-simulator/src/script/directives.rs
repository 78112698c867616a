//! The `[[sim:NAME]]` / `[[sim:NAME=VALUE]]` test directives of a question: what each one
//! means (`Directives`) and how they are read. Unknown or malformed ones are collected for
//! the log, never applied. Pure code.

use serde_json::Value;

const DIRECTIVE_OPEN: &str = "[[sim:";
const DIRECTIVE_CLOSE: &str = "]]";
/// The most calls one `[[sim:calls=N]]` answer holds.
const MAX_CALLS: usize = 100;

/// What the answer body is; the first body directive in the question wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    /// `Hello from the Lingma simulator (<model>). You said: <Q>`.
    Greeting,
    /// `[[sim:chunks=N]]`: deltas `c1 ` .. `cN `.
    Chunks(usize),
    /// `[[sim:turn]]`: `turn <N> of session <id>`.
    Turn,
    /// `[[sim:whoami]]`: `instance <workDir basename> pid <pid>`.
    Whoami,
    /// `[[sim:echo]]`: the question text exactly as received.
    Echo,
    /// `[[sim:unicode]]`: `UNICODE_ANSWER`.
    Unicode,
}

/// How this request's frames go on the wire; the flags combine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Wire {
    /// `wire=split`: every frame (or the packed message) is cut into parts at byte positions.
    pub(crate) split: bool,
    /// `wire=packed`: every event after the ack goes out as one message at the end.
    pub(crate) packed: bool,
    /// `wire=binary`: binary WebSocket messages instead of text.
    pub(crate) binary: bool,
}

/// `[[sim:deaf]]` / `[[sim:deaf=MS]]`: how long the connection stops reading its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deaf {
    /// Until the simulator stops.
    Forever,
    /// For this many milliseconds, then it reads again.
    For(u64),
}

/// How a tool call is written (`[[sim:style=S]]`), to exercise the gateway's tolerant parser.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Style {
    /// The contract's ```` ```json action ```` block with `{"tool", "parameters"}`.
    #[default]
    Action,
    /// A plain ```` ```json ```` fence holding `{"name", "arguments"}` over several lines.
    Fence,
    /// `<tool_call>\n{"name", "arguments"}\n</tool_call>`.
    Qwen,
    /// `{"tool", "parameters"}` alone on its line, no fence.
    Bare,
    /// The action block without its closing fence, ending the answer.
    Unclosed,
    /// The action block with the tool name in the wrong case (must not be accepted).
    BadName,
    /// The action block with `"parameters": {}` (must stay text when parameters are required).
    NoArgs,
}

impl Style {
    fn parse(value: &str) -> Option<Style> {
        Some(match value {
            "action" => Style::Action,
            "fence" => Style::Fence,
            "qwen" => Style::Qwen,
            "bare" => Style::Bare,
            "unclosed" => Style::Unclosed,
            "badname" => Style::BadName,
            "noargs" => Style::NoArgs,
            _ => return None,
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Style::Action => "action",
            Style::Fence => "fence",
            Style::Qwen => "qwen",
            Style::Bare => "bare",
            Style::Unclosed => "unclosed",
            Style::BadName => "badname",
            Style::NoArgs => "noargs",
        }
    }
}

/// The directives found in one question. Counts (`crash=K` ...) are numbers of deltas sent
/// before the action, empty deltas included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Directives {
    pub(crate) body: Option<Body>,
    pub(crate) think: bool,
    pub(crate) status: Option<u16>,
    pub(crate) crash: Option<usize>,
    pub(crate) stall: Option<usize>,
    pub(crate) close: Option<usize>,
    pub(crate) garbage: Option<usize>,
    /// `oversize=K`: after K deltas, a frame header declaring more than the frame limit.
    pub(crate) oversize: Option<usize>,
    /// `deaf` / `deaf=MS`: once the turn has started (a turn without delays runs on the
    /// connection's reader, so: once it has ended), the connection reads nothing more.
    pub(crate) deaf: Option<Deaf>,
    /// `on=NAME`: the fault directives (status, crash, stall, close, garbage, oversize, deaf)
    /// apply only on the instance whose workDir basename is NAME.
    pub(crate) on: Option<String>,
    pub(crate) delay_ms: Option<u64>,
    pub(crate) first_ms: Option<u64>,
    /// `pad=BYTES` (with `chunks`): each delta `cN ` is filled with dots up to BYTES (at
    /// most 1 MiB), for answers larger than socket buffers without a million frames.
    pub(crate) pad: Option<usize>,
    pub(crate) wire: Wire,
    /// `tool=NAME`: call this declared tool.
    pub(crate) tool: Option<String>,
    /// `calls=N`: that many calls in one answer.
    pub(crate) calls: Option<usize>,
    /// `lazy`: call no tool unless the gateway's retry instruction is present.
    pub(crate) lazy: bool,
    /// `style=S`.
    pub(crate) style: Option<Style>,
    /// `cmd=COMMAND`: the value of `command` / `cmd` parameters.
    pub(crate) cmd: Option<String>,
    /// `native=NAME`: go through Lingma's own tool events with this tool.
    pub(crate) native: Option<String>,
    /// `native_args=JSON`: the native tool's parameters (a JSON object).
    pub(crate) native_args: Option<Value>,
    /// `native_async`: the native tool's `tool/invoke` says `async: true`, so only a
    /// `tool/invokeResult` finishes it, as on the real server.
    pub(crate) native_async: bool,
    /// `content` / `content=N`: every (N-th) `chat/answer` carries its delta in `content`
    /// instead of `text`, as some server builds send it (protocol §6).
    pub(crate) content: Option<usize>,
    /// `usage=session`: the `context/usage/sync` names only its session, no `requestId`
    /// (the protocol's shape leaves the ids open).
    pub(crate) usage_by_session: bool,
    /// Unknown or malformed directives, for the log.
    pub(crate) ignored: Vec<String>,
}

/// Parses every `[[sim:NAME]]` / `[[sim:NAME=VALUE]]` in `text`.
pub(crate) fn parse_directives(text: &str) -> Directives {
    let mut d = Directives::default();
    let mut rest = text;
    while let Some(start) = rest.find(DIRECTIVE_OPEN) {
        let after = &rest[start + DIRECTIVE_OPEN.len()..];
        let Some(end) = after.find(DIRECTIVE_CLOSE) else {
            break;
        };
        let inner = after[..end].trim();
        let (name, value) = match inner.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (inner, None),
        };
        if apply(&mut d, name, value).is_none() {
            d.ignored.push(inner.to_string());
        }
        rest = &after[end + DIRECTIVE_CLOSE.len()..];
    }
    d
}

/// Records one directive; `None` when the name is unknown or the value does not parse.
fn apply(d: &mut Directives, name: &str, value: Option<&str>) -> Option<()> {
    let count =
        |default: usize| -> Option<usize> { value.map_or(Some(default), |v| v.parse().ok()) };
    let number = || value.and_then(|v| v.parse::<u64>().ok());
    match name {
        "chunks" => set_body(d, Body::Chunks(value?.parse().ok()?)),
        "turn" => set_body(d, Body::Turn),
        "whoami" => set_body(d, Body::Whoami),
        "echo" => set_body(d, Body::Echo),
        "unicode" => set_body(d, Body::Unicode),
        "think" => d.think = true,
        "status" => d.status = Some(value?.parse().ok().filter(|c| (100..1000).contains(c))?),
        "crash" => d.crash = Some(count(3)?),
        "stall" => d.stall = Some(count(2)?),
        "close" => d.close = Some(count(2)?),
        "garbage" => d.garbage = Some(count(1)?),
        "oversize" => d.oversize = Some(count(1)?),
        "deaf" => {
            d.deaf = Some(match value {
                None => Deaf::Forever,
                Some(ms) => Deaf::For(ms.parse().ok()?),
            })
        }
        "on" => d.on = Some(non_empty(value)?),
        "delay" => d.delay_ms = Some(number()?),
        "first" => d.first_ms = Some(number()?),
        "pad" => d.pad = Some(number().filter(|&n| n <= 1 << 20)? as usize),
        "wire" => match value? {
            "split" => d.wire.split = true,
            "packed" => d.wire.packed = true,
            "binary" => d.wire.binary = true,
            _ => return None,
        },
        "tool" => d.tool = Some(non_empty(value)?),
        "calls" => {
            d.calls = Some(
                value?
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_CALLS).contains(n))?,
            )
        }
        "lazy" if value.is_none() => d.lazy = true,
        "style" => d.style = Some(Style::parse(value?)?),
        "cmd" => d.cmd = Some(non_empty(value)?),
        "native" => d.native = Some(non_empty(value)?),
        "native_async" if value.is_none() => d.native_async = true,
        "content" => d.content = Some(count(1).filter(|&n| n > 0)?),
        "native_args" => {
            d.native_args = Some(serde_json::from_str(value?).ok().filter(Value::is_object)?)
        }
        "usage" if value == Some("session") => d.usage_by_session = true,
        _ => return None,
    }
    Some(())
}

fn non_empty(value: Option<&str>) -> Option<String> {
    value.filter(|v| !v.is_empty()).map(str::to_string)
}

fn set_body(d: &mut Directives, body: Body) {
    d.body.get_or_insert(body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_names_values_and_combinations() {
        let d = parse_directives(
            "a [[sim:chunks=4]] b [[sim:think]][[sim: delay = 15 ]]\n[[sim:wire=split]]",
        );
        assert_eq!(d.body, Some(Body::Chunks(4)));
        assert_eq!(parse_directives("[[sim:pad=64]]").pad, Some(64));
        assert_eq!(parse_directives("[[sim:pad=9999999]]").pad, None);
        assert!(d.think);
        assert_eq!(d.delay_ms, Some(15));
        assert!(d.wire.split && !d.wire.packed && !d.wire.binary);
        assert!(d.ignored.is_empty());
    }

    #[test]
    fn fault_directives_have_defaults() {
        let d = parse_directives("[[sim:crash]][[sim:stall]][[sim:close]][[sim:garbage]]");
        assert_eq!(
            (d.crash, d.stall, d.close, d.garbage),
            (Some(3), Some(2), Some(2), Some(1))
        );
        let d =
            parse_directives("[[sim:crash=7]][[sim:stall=0]][[sim:first=250]][[sim:status=429]]");
        assert_eq!(
            (d.crash, d.stall, d.first_ms, d.status),
            (Some(7), Some(0), Some(250), Some(429))
        );
    }

    #[test]
    fn unknown_and_malformed_directives_are_reported_not_applied() {
        let d = parse_directives("[[sim:nope]] [[sim:chunks=x]] [[sim:status=42]] [[sim:wire=tcp]] [[sim:chunks]] [[sim:echo");
        assert_eq!(d.body, None);
        assert_eq!(d.status, None);
        assert_eq!(
            d.ignored,
            vec!["nope", "chunks=x", "status=42", "wire=tcp", "chunks"]
        );
    }

    #[test]
    fn first_body_directive_wins() {
        assert_eq!(
            parse_directives("[[sim:echo]][[sim:turn]]").body,
            Some(Body::Echo)
        );
    }

    #[test]
    fn tool_directives_parse_strictly() {
        let d = parse_directives(
            "[[sim:tool=Bash]][[sim:calls=2]][[sim:lazy]][[sim:style=qwen]][[sim:cmd=echo a=b]][[sim:native=read_file]][[sim:native_args={\"path\":\"x\"}]]",
        );
        assert_eq!(
            (d.tool.as_deref(), d.calls, d.lazy, d.style),
            (Some("Bash"), Some(2), true, Some(Style::Qwen))
        );
        assert_eq!(d.cmd.as_deref(), Some("echo a=b"));
        assert_eq!(d.native.as_deref(), Some("read_file"));
        assert_eq!(d.native_args, Some(json!({"path": "x"})));
        assert!(d.ignored.is_empty());
        assert!(parse_directives("[[sim:native_async]]").native_async);
        assert_eq!(
            parse_directives("[[sim:native_async=1]]").ignored,
            ["native_async=1"]
        );
        assert_eq!(parse_directives("[[sim:content=3]]").content, Some(3));
        assert_eq!(parse_directives("[[sim:content]]").content, Some(1));
        let d = parse_directives("[[sim:content=0]][[sim:content=x]]");
        assert_eq!(
            (d.content, d.ignored),
            (None, vec!["content=0".into(), "content=x".into()])
        );
        let d = parse_directives(
            "[[sim:tool=]][[sim:calls=0]][[sim:calls=101]][[sim:lazy=1]][[sim:style=xml]][[sim:native_args=[1]]][[sim:native]]",
        );
        assert_eq!(
            d.ignored,
            vec![
                "tool=",
                "calls=0",
                "calls=101",
                "lazy=1",
                "style=xml",
                "native_args=[1",
                "native"
            ]
        );
    }
}
