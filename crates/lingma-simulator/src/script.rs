//! What one simulated chat turn sends, decided up front: parses the `[[sim:NAME]]` /
//! `[[sim:NAME=VALUE]]` test directives out of the latest user text of the question (see
//! `prompt.rs`) and turns the turn into a `Plan` (a list of `Step`s): plain answers, answers
//! that call a declared tool the way the prompt's tool contract asks (or in a variant a real
//! model writes), answers to tool results, and Lingma's own agent-tool path. Pure code, no
//! sockets, threads or clocks: the generator threads in `chat.rs` only execute plans, so every
//! behaviour here is tested on string literals.

use serde_json::{json, Map, Value};

use super::models::Model;
use super::prompt::{self, Prompt, ToolChoice};

/// Opens the think block reasoning models put in front of the answer (four backticks; the
/// placeholder is sent literally, as the real server sometimes does).
pub const THINK_OPEN: &str = "````think::{THINK_TIME}\n";
pub const THINK_CLOSE: &str = "````\n";
/// The answer of `[[sim:unicode]]`: multi-byte characters of 2, 3 and 4 bytes.
pub const UNICODE_ANSWER: &str = "你好，世界 — héllo 🌍 ünïcödé ✓";
/// The WebSocket text message `[[sim:garbage]]` sends: not an LSP frame.
pub const GARBAGE: &str = "this is not a frame";

/// Delta sizes in characters, repeating.
const DELTA_SIZES: [usize; 5] = [1, 3, 5, 2, 4];
/// An empty delta follows every this many non-empty ones (the real server sends some).
const EMPTY_EVERY: usize = 7;
const QUOTE_CHARS: usize = 80;
const TITLE_CHARS: usize = 30;
const DIRECTIVE_OPEN: &str = "[[sim:";
const DIRECTIVE_CLOSE: &str = "]]";
/// The command of `[[sim:cmd=...]]` when there is none.
pub const DEFAULT_COMMAND: &str = "echo sim-tool";
/// How much of each tool result the answer to a tool-result turn quotes.
const RESULT_CHARS: usize = 2000;
/// The most calls one `[[sim:calls=N]]` answer holds.
const MAX_CALLS: usize = 100;

/// What the answer body is; the first body directive in the question wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
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
pub struct Wire {
    /// `wire=split`: every frame (or the packed message) is cut into parts at byte positions.
    pub split: bool,
    /// `wire=packed`: every event after the ack goes out as one message at the end.
    pub packed: bool,
    /// `wire=binary`: binary WebSocket messages instead of text.
    pub binary: bool,
}

/// `[[sim:deaf]]` / `[[sim:deaf=MS]]`: how long the connection stops reading its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deaf {
    /// Until the simulator stops.
    Forever,
    /// For this many milliseconds, then it reads again.
    For(u64),
}

/// How a tool call is written (`[[sim:style=S]]`), to exercise the gateway's tolerant parser.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Style {
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

    pub fn as_str(self) -> &'static str {
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
pub struct Directives {
    pub body: Option<Body>,
    pub think: bool,
    pub status: Option<u16>,
    pub crash: Option<usize>,
    pub stall: Option<usize>,
    pub close: Option<usize>,
    pub garbage: Option<usize>,
    /// `oversize=K`: after K deltas, a frame header declaring more than the frame limit.
    pub oversize: Option<usize>,
    /// `deaf` / `deaf=MS`: once the turn has started (a turn without delays runs on the
    /// connection's reader, so: once it has ended), the connection reads nothing more.
    pub deaf: Option<Deaf>,
    /// `on=NAME`: the fault directives (status, crash, stall, close, garbage, oversize, deaf)
    /// apply only on the instance whose workDir basename is NAME.
    pub on: Option<String>,
    pub delay_ms: Option<u64>,
    pub first_ms: Option<u64>,
    /// `pad=BYTES` (with `chunks`): each delta `cN ` is filled with dots up to BYTES (at
    /// most 1 MiB), for answers larger than socket buffers without a million frames.
    pub pad: Option<usize>,
    pub wire: Wire,
    /// `tool=NAME`: call this declared tool.
    pub tool: Option<String>,
    /// `calls=N`: that many calls in one answer.
    pub calls: Option<usize>,
    /// `lazy`: call no tool unless the gateway's retry instruction is present.
    pub lazy: bool,
    /// `style=S`.
    pub style: Option<Style>,
    /// `cmd=COMMAND`: the value of `command` / `cmd` parameters.
    pub cmd: Option<String>,
    /// `native=NAME`: go through Lingma's own tool events with this tool.
    pub native: Option<String>,
    /// `native_args=JSON`: the native tool's parameters (a JSON object).
    pub native_args: Option<Value>,
    /// Unknown or malformed directives, for the log.
    pub ignored: Vec<String>,
}

/// Parses every `[[sim:NAME]]` / `[[sim:NAME=VALUE]]` in `text`.
pub fn parse_directives(text: &str) -> Directives {
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
        "native_args" => {
            d.native_args = Some(serde_json::from_str(value?).ok().filter(Value::is_object)?)
        }
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

/// How a turn ended, as `chat/finish.reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Success,
    Cancelled,
    Error,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Success => "success",
            Reason::Cancelled => "cancelled",
            Reason::Error => "error",
        }
    }
}

/// Lingma's own agent-tool path for one tool (protocol §5): the generator sends the
/// `tool/call/sync` and `tool/invoke` requests, waits for the client's approval and result,
/// and streams the outcome as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeCall {
    pub name: String,
    pub tool_call_id: String,
    pub parameters: Value,
}

/// One thing the generator does, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `chat/process_step_callback` with this `step` and status `done`.
    Progress(&'static str),
    /// `session/title/update` (new sessions only).
    Title(String),
    /// One `chat/answer` delta; the generator waits the first-token or chunk delay before it.
    Delta(String),
    /// A WebSocket text message that is not an LSP frame.
    Garbage,
    /// An LSP frame header declaring a body over `jsonrpc::MAX_FRAME_BYTES`.
    Oversize,
    /// Run a native tool call; its outcome is streamed as more deltas.
    Native(NativeCall),
    /// `context/usage/sync`.
    Usage { used: u64, limit: u64 },
    /// `chat/finish`, whose `fullAnswer` is every delta sent; ends the plan.
    Finish { status: u16, reason: Reason },
    /// Send nothing more until `chat/stop` (then finish `cancelled`) or the connection ends.
    Stall,
    /// Shut this connection's socket down.
    Close,
    /// Exit the whole process with code 101.
    Crash,
}

/// Everything one turn sends, plus its per-request timing and wire overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub first_ms: Option<u64>,
    pub delay_ms: Option<u64>,
    pub wire: Wire,
    /// `[[sim:deaf]]`: the connection stops reading once the turn has started.
    pub deaf: Option<Deaf>,
    /// Directives that were not understood (or name a tool the prompt does not declare),
    /// for the log.
    pub ignored: Vec<String>,
    /// How the turn read the prompt and what it answers with, for the log; `None` for a
    /// plain question without tools.
    pub note: Option<String>,
    /// The turn's answer when it completes (stored in the session history); a native tool
    /// step adds its outcome to it at run time.
    pub answer: String,
}

/// What the plan depends on besides the question.
#[derive(Debug, Clone)]
pub struct Turn<'a> {
    pub question: &'a str,
    /// `None`: the requested model key is unknown.
    pub model: Option<&'a Model>,
    pub logged_in: bool,
    pub session_id: &'a str,
    pub new_session: bool,
    /// 1-based position of this turn in its session.
    pub number: usize,
    /// Basename of the workDir (`[[sim:whoami]]`).
    pub instance: &'a str,
    pub pid: u32,
    /// The `toolCallId` a native tool call of this turn gets.
    pub tool_call_id: &'a str,
}

/// The status codes of turns the server refuses before any text.
pub const STATUS_LOGGED_OUT: u16 = 403;
pub const STATUS_INTERNAL: u16 = 500;

pub fn plan(turn: &Turn) -> Plan {
    let prompt = prompt::read(turn.question);
    // Directives come from the latest user text only: older turns, tool results and system
    // text in a transcript must not fire again.
    let mut d = parse_directives(prompt.user);
    if d.on.as_deref().is_some_and(|on| on != turn.instance) {
        (
            d.status, d.crash, d.stall, d.close, d.garbage, d.oversize, d.deaf,
        ) = (None, None, None, None, None, None, None);
    }
    let mut plan = Plan {
        steps: vec![Step::Progress("step_start"), Step::Progress("step_end")],
        first_ms: d.first_ms,
        delay_ms: d.delay_ms,
        wire: d.wire,
        deaf: d.deaf,
        ignored: d.ignored.clone(),
        note: None,
        answer: String::new(),
    };
    let refusal = if !turn.logged_in {
        Some(STATUS_LOGGED_OUT)
    } else if turn.model.is_none() || turn.question.trim().is_empty() {
        Some(STATUS_INTERNAL)
    } else {
        d.status
    };
    let model = match (refusal, turn.model) {
        (None, Some(model)) => model,
        (status, _) => {
            let status = status.unwrap_or(STATUS_INTERNAL);
            plan.steps.push(Step::Finish {
                status,
                reason: Reason::Error,
            });
            return plan;
        }
    };
    if turn.new_session {
        plan.steps
            .push(Step::Title(title_of(user_text(&prompt, turn.question))));
    }
    let answer = choose_answer(turn, &prompt, &d);
    if let Some(name) = d.tool.as_deref() {
        if prompt.tools.as_ref().is_none_or(|t| t.get(name).is_none()) {
            plan.ignored.push(format!("tool={name} (not declared)"));
        }
    }
    if prompt.sections > 1 || prompt.tools.is_some() || d.native.is_some() || d.tool.is_some() {
        plan.note = Some(note(&prompt, &answer));
    }
    let (deltas, native) = answer_deltas(turn, model, &d, &prompt, answer);
    plan.answer = deltas.concat();
    if push_deltas(&mut plan.steps, deltas, &d) {
        plan.steps.extend(native.map(Step::Native));
        let used = (turn.question.chars().count() + plan.answer.chars().count()) as u64 / 4 + 1;
        plan.steps.push(Step::Usage {
            used,
            limit: model.max_input_tokens,
        });
        plan.steps.push(Step::Finish {
            status: 200,
            reason: Reason::Success,
        });
    }
    plan
}

/// What the body of an answer is, in priority order.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    /// The latest turn carries tool results: acknowledge them.
    ToolResults(String),
    /// `[[sim:native=NAME]]`.
    Native(NativeCall),
    /// Call a declared tool through the prompt's contract.
    Call {
        name: String,
        arguments: Value,
        calls: usize,
        style: Style,
    },
    /// A body directive, or the greeting.
    Body(Body),
}

fn choose_answer(turn: &Turn, prompt: &Prompt, d: &Directives) -> Answer {
    if prompt.tool_result_turn() {
        return Answer::ToolResults(tool_results_answer(prompt));
    }
    if let Some(name) = &d.native {
        // Without `[[sim:native_args=JSON]]`, what a `read_file` call takes.
        let parameters = d
            .native_args
            .clone()
            .unwrap_or_else(|| json!({"path": "README.md"}));
        return Answer::Native(NativeCall {
            name: name.clone(),
            tool_call_id: turn.tool_call_id.to_string(),
            parameters,
        });
    }
    if let Some((name, schema)) = tool_to_call(prompt, d) {
        let command = d.cmd.as_deref().unwrap_or(DEFAULT_COMMAND);
        return Answer::Call {
            arguments: arguments(&schema, command),
            name,
            calls: d.calls.unwrap_or(1),
            style: d.style.unwrap_or_default(),
        };
    }
    Answer::Body(d.body.unwrap_or(Body::Greeting))
}

/// The tool (name and schema) this turn calls through the prompt's contract: the tool the
/// choice forces, else the declared tool `[[sim:tool=NAME]]` names. None when the choice is
/// `none`, or under `[[sim:lazy]]` until the retry instruction is there.
fn tool_to_call(prompt: &Prompt, d: &Directives) -> Option<(String, Value)> {
    let tools = prompt.tools.as_ref()?;
    if tools.choice == ToolChoice::None || (d.lazy && !prompt.retry) {
        return None;
    }
    let directed = d.tool.as_deref().and_then(|name| tools.get(name));
    let tool = match &tools.choice {
        ToolChoice::Named(name) => match tools.get(name) {
            Some(tool) => tool,
            // Not declared: the gateway broke the contract; call it anyway, visibly.
            None => return Some((name.clone(), Value::Null)),
        },
        ToolChoice::Any => directed.or(tools.tools.first())?,
        ToolChoice::Auto | ToolChoice::None => directed?,
    };
    Some((tool.name.clone(), tool.schema.clone()))
}

/// `Tool result received: ` and the first 2000 characters of each result, joined by ` | `.
fn tool_results_answer(prompt: &Prompt) -> String {
    let parts: Vec<String> = prompt
        .results
        .iter()
        .map(|r| r.text.chars().take(RESULT_CHARS).collect())
        .collect();
    format!("Tool result received: {}", parts.join(" | "))
}

/// The log line's summary of the prompt and the answer chosen.
fn note(prompt: &Prompt, answer: &Answer) -> String {
    let choice = match prompt.tools.as_ref().map(|t| &t.choice) {
        None => "-".to_string(),
        Some(ToolChoice::Auto) => "auto".into(),
        Some(ToolChoice::None) => "none".into(),
        Some(ToolChoice::Any) => "required".into(),
        Some(ToolChoice::Named(name)) => format!("required:{name}"),
    };
    let answer = match answer {
        Answer::ToolResults(_) => format!("tool-results({})", prompt.results.len()),
        Answer::Native(call) => format!("native {} toolCallId={}", call.name, call.tool_call_id),
        Answer::Call {
            name, calls, style, ..
        } => format!("call {name} x{calls} style={}", style.as_str()),
        Answer::Body(_) => "text".into(),
    };
    format!(
        "prompt sections={} tools={} choice={choice} retry={} -> {answer}",
        prompt.sections,
        prompt.tools.as_ref().map_or(0, |t| t.tools.len()),
        prompt.retry,
    )
}

/// The answer's deltas, empty ones included, and the native tool call that follows them.
fn answer_deltas(
    turn: &Turn,
    model: &Model,
    d: &Directives,
    prompt: &Prompt,
    answer: Answer,
) -> (Vec<String>, Option<NativeCall>) {
    let quote = quote(user_text(prompt, turn.question));
    let mut deltas = Vec::new();
    if d.think || model.is_reasoning {
        deltas = split_deltas(&format!(
            "{THINK_OPEN}Thinking about: {quote}\n{THINK_CLOSE}"
        ));
    }
    let mut native = None;
    let body = match answer {
        Answer::ToolResults(text) => text,
        Answer::Native(call) => {
            let text = native_card(&call.name, &call.tool_call_id);
            native = Some(call);
            text
        }
        Answer::Call {
            name,
            arguments,
            calls,
            style,
        } => call_answer(&name, &arguments, calls, style),
        Answer::Body(Body::Chunks(n)) => {
            let pad = d.pad.unwrap_or(0);
            deltas.extend((1..=n).map(|i| {
                let mut delta = format!("c{i} ");
                let dots = pad.saturating_sub(delta.len());
                delta.extend(std::iter::repeat_n('.', dots));
                delta
            }));
            return (with_empty_deltas(deltas), None);
        }
        Answer::Body(Body::Greeting) => {
            let greeting = format!(
                "Hello from the Lingma simulator ({}). You said: {quote}",
                model.display_name
            );
            match &prompt.json_format {
                None => greeting,
                // Asked for JSON, it answers in a ```json fence, as models like to.
                Some(schema) => {
                    let value = match schema {
                        Value::Null => json!({"answer": greeting}),
                        schema => arguments(schema, DEFAULT_COMMAND),
                    };
                    format!("```json\n{value}\n```")
                }
            }
        }
        Answer::Body(Body::Turn) => format!("turn {} of session {}", turn.number, turn.session_id),
        Answer::Body(Body::Whoami) => format!("instance {} pid {}", turn.instance, turn.pid),
        Answer::Body(Body::Echo) => turn.question.to_string(),
        Answer::Body(Body::Unicode) => UNICODE_ANSWER.to_string(),
    };
    deltas.extend(split_deltas(&body));
    (with_empty_deltas(deltas), native)
}

/// The text before a native tool call: a sentence, then the tool card on its own lines.
pub fn native_card(name: &str, tool_call_id: &str) -> String {
    format!("Let me use {name}.\n```toolCall::{name}::{tool_call_id}::INIT\n```\n")
}

/// `I'll call NAME now.` and `calls` calls of `name` written in `style`.
pub fn call_answer(name: &str, arguments: &Value, calls: usize, style: Style) -> String {
    let mut out = format!("I'll call {name} now.\n");
    for i in 0..calls {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&call_text(name, arguments, style, i + 1 == calls));
    }
    out
}

/// One call in `style`; `last` says whether it ends the answer (for `unclosed`).
fn call_text(name: &str, arguments: &Value, style: Style, last: bool) -> String {
    let action = |name: &str, arguments: &Value| {
        format!(
            "```json action\n{{\"tool\": {}, \"parameters\": {arguments}}}\n```\n",
            Value::from(name)
        )
    };
    let quoted = Value::from(name);
    match style {
        Style::Action => action(name, arguments),
        Style::Fence => {
            format!("```json\n{{\n  \"name\": {quoted},\n  \"arguments\": {arguments}\n}}\n```\n")
        }
        Style::Qwen => format!(
            "<tool_call>\n{{\"name\": {quoted}, \"arguments\": {arguments}}}\n</tool_call>\n"
        ),
        Style::Bare => format!("{{\"tool\": {quoted}, \"parameters\": {arguments}}}\n"),
        Style::Unclosed if last => {
            format!("```json action\n{{\"tool\": {quoted}, \"parameters\": {arguments}}}")
        }
        Style::Unclosed => action(name, arguments),
        Style::BadName => action(&wrong_case(name), arguments),
        Style::NoArgs => action(name, &json!({})),
    }
}

/// `name` in another case: upper-cased, or lower-cased when it is upper case already.
fn wrong_case(name: &str) -> String {
    let upper = name.to_uppercase();
    if upper != name {
        return upper;
    }
    let lower = name.to_lowercase();
    if lower != name {
        lower
    } else {
        format!("{name}_X")
    }
}

/// Arguments that satisfy `schema` (an object schema): every required property, plus any
/// `command` / `cmd` property, with a value of its type.
pub fn arguments(schema: &Value, command: &str) -> Value {
    let mut out = Map::new();
    let properties = schema.get("properties").and_then(Value::as_object);
    let required = schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str);
    let commands = properties
        .into_iter()
        .flat_map(|p| p.keys())
        .map(String::as_str)
        .filter(|k| is_command(k));
    for name in required.chain(commands) {
        if out.contains_key(name) {
            continue;
        }
        let property = properties.and_then(|p| p.get(name)).unwrap_or(&Value::Null);
        out.insert(name.to_string(), value_for(name, property, command));
    }
    Value::Object(out)
}

fn is_command(name: &str) -> bool {
    name == "command" || name == "cmd"
}

/// A value for the property `name` that its schema accepts.
fn value_for(name: &str, schema: &Value, command: &str) -> Value {
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    if let Some(value) = schema.get("const") {
        return value.clone();
    }
    let alternatives = ["anyOf", "oneOf", "allOf"]
        .iter()
        .find_map(|k| schema.get(*k).and_then(Value::as_array));
    if let Some(alt) = alternatives.and_then(|a| a.iter().find(|s| !is_null_type(s))) {
        return value_for(name, alt, command);
    }
    let ty = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ if schema.get("items").is_some() => "array",
        _ => "string",
    };
    match ty {
        "string" if is_command(name) => Value::from(command),
        "string" => Value::from(format!("sim-{name}")),
        "array" => {
            let items = schema.get("items").unwrap_or(&Value::Null);
            let strings = items.get("type").and_then(Value::as_str) == Some("string");
            if strings && is_command(name) {
                return json!(["bash", "-lc", command]);
            }
            let min = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0);
            (0..min.min(16))
                .map(|_| value_for(name, items, command))
                .collect()
        }
        "integer" | "number" => schema.get("minimum").cloned().unwrap_or(json!(1)),
        "boolean" => Value::Bool(false),
        "object" => arguments(schema, command),
        "null" => Value::Null,
        _ => Value::from(format!("sim-{name}")),
    }
}

fn is_null_type(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("null")
}

/// Appends the deltas with the fault directives placed after their counts; returns false when
/// a terminal fault (crash, close, stall) ends the plan before the finish.
fn push_deltas(steps: &mut Vec<Step>, deltas: Vec<String>, d: &Directives) -> bool {
    let n = deltas.len();
    // A count past the last delta acts after the last one (before the usage and finish).
    let at = |k: Option<usize>, i: usize| k.is_some_and(|k| k.min(n) == i);
    let mut deltas = deltas.into_iter();
    for i in 0..=n {
        if at(d.garbage, i) {
            steps.push(Step::Garbage);
        }
        if at(d.oversize, i) {
            steps.push(Step::Oversize);
        }
        let terminal = [
            (d.crash, Step::Crash),
            (d.close, Step::Close),
            (d.stall, Step::Stall),
        ];
        if let Some((_, step)) = terminal.into_iter().find(|(k, _)| at(*k, i)) {
            steps.push(step);
            return false;
        }
        if let Some(delta) = deltas.next() {
            steps.push(Step::Delta(delta));
        }
    }
    true
}

/// Splits `text` into deltas of 1, 3, 5, 2, 4, ... characters (never inside a character).
pub fn split_deltas(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars();
    for size in DELTA_SIZES.iter().cycle() {
        let delta: String = chars.by_ref().take(*size).collect();
        if delta.is_empty() {
            break;
        }
        out.push(delta);
    }
    out
}

/// Inserts an empty delta after every `EMPTY_EVERY`-th non-empty one.
pub fn with_empty_deltas(deltas: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(deltas.len() + deltas.len() / EMPTY_EVERY);
    let mut non_empty = 0;
    for delta in deltas {
        let empty = delta.is_empty();
        out.push(delta);
        if !empty {
            non_empty += 1;
            if non_empty % EMPTY_EVERY == 0 {
                out.push(String::new());
            }
        }
    }
    out
}

/// The last non-empty line of the question, trimmed.
fn last_line(question: &str) -> &str {
    question
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
}

/// `<Q>` of the answers: the last non-empty line, cut to 80 characters with `...`.
pub fn quote(question: &str) -> String {
    let line = last_line(question);
    match line.char_indices().nth(QUOTE_CHARS) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_string(),
    }
}

/// A new session's title: the first 30 characters of the last non-empty line of the latest
/// user text.
pub fn title(question: &str) -> String {
    title_of(user_text(&prompt::read(question), question))
}

fn title_of(text: &str) -> String {
    last_line(text).chars().take(TITLE_CHARS).collect()
}

/// The text answers quote: the latest user text, or the whole question when it has none.
fn user_text<'a>(prompt: &Prompt<'a>, question: &'a str) -> &'a str {
    if prompt.user.trim().is_empty() {
        question
    } else {
        prompt.user
    }
}

/// Cuts one outgoing message into 2–3 parts for `wire=split`: inside the `Content-Length`
/// header, and inside the first multi-byte character after it (else the middle of the rest),
/// so a client that decodes per message or per character breaks visibly.
pub fn split_points(bytes: &[u8]) -> Vec<usize> {
    const IN_HEADER: usize = 9; // "Content-L|ength"
    if bytes.len() < 3 {
        return Vec::new();
    }
    let first = IN_HEADER.min(bytes.len() / 2).max(1);
    let second = bytes[first + 1..]
        .iter()
        .position(|b| b & 0xC0 == 0x80)
        .map(|p| p + first + 1)
        .unwrap_or(first + (bytes.len() - first) / 2);
    if second > first && second < bytes.len() {
        vec![first, second]
    } else {
        vec![first]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models;

    fn turn<'a>(question: &'a str, model: Option<&'a Model>) -> Turn<'a> {
        Turn {
            question,
            model,
            logged_in: true,
            session_id: "s-1",
            new_session: true,
            number: 1,
            instance: "inst-a",
            pid: 42,
            tool_call_id: "tc-1",
        }
    }

    fn auto() -> Option<&'static Model> {
        models::find("auto")
    }

    fn deltas(plan: &Plan) -> Vec<&str> {
        plan.steps
            .iter()
            .filter_map(|s| match s {
                Step::Delta(d) => Some(d.as_str()),
                _ => None,
            })
            .collect()
    }

    fn finish(plan: &Plan) -> (u16, Reason, &str) {
        match plan.steps.last() {
            Some(Step::Finish { status, reason }) => (*status, *reason, &plan.answer),
            other => panic!("plan does not end with a finish: {other:?}"),
        }
    }

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
    fn deaf_is_for_ever_or_for_some_milliseconds_and_leaves_the_answer_alone() {
        assert_eq!(parse_directives("[[sim:deaf]]").deaf, Some(Deaf::Forever));
        assert_eq!(
            parse_directives("[[sim:deaf=250]]").deaf,
            Some(Deaf::For(250))
        );
        let d = parse_directives("[[sim:deaf=soon]] [[sim:deaf=-1]]");
        assert_eq!(
            (d.deaf, d.ignored),
            (None, vec!["deaf=soon".into(), "deaf=-1".into()])
        );
        let p = plan(&turn("[[sim:deaf]][[sim:chunks=2]]", auto()));
        assert_eq!(p.deaf, Some(Deaf::Forever));
        assert_eq!(deltas(&p), vec!["c1 ", "c2 "]);
        assert_eq!(finish(&p).0, 200);
        let p = plan(&turn("[[sim:on=elsewhere]][[sim:deaf]]", auto()));
        assert_eq!(p.deaf, None, "scoped to another instance");
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
    fn deltas_follow_the_size_pattern_on_char_boundaries() {
        assert_eq!(
            split_deltas("abcdefghijklmnopq"),
            vec!["a", "bcd", "efghi", "jk", "lmno", "p", "q"]
        );
        let parts = split_deltas(UNICODE_ANSWER);
        assert_eq!(parts.concat(), UNICODE_ANSWER);
        assert_eq!(parts[0], "你");
        assert_eq!(parts[1], "好，世");
        assert!(split_deltas("").is_empty());
    }

    #[test]
    fn an_empty_delta_follows_every_seventh() {
        let input: Vec<String> = (1..=15).map(|i| i.to_string()).collect();
        let out = with_empty_deltas(input);
        assert_eq!(out.len(), 17);
        assert_eq!(out[7], "");
        assert_eq!(out[15], "");
        assert_eq!(out.iter().filter(|d| d.is_empty()).count(), 2);
    }

    #[test]
    fn default_turn_streams_the_greeting() {
        let p = plan(&turn("first line\nhello there\n\n", auto()));
        assert_eq!(p.steps[0], Step::Progress("step_start"));
        assert_eq!(p.steps[1], Step::Progress("step_end"));
        assert_eq!(p.steps[2], Step::Title("hello there".into()));
        let ds = deltas(&p);
        let answer = "Hello from the Lingma simulator (Auto). You said: hello there";
        assert_eq!(ds.concat(), answer);
        assert!(ds.iter().all(|d| d.chars().count() <= 5));
        assert!(ds.iter().any(|d| d.is_empty()));
        assert!(matches!(
            p.steps[p.steps.len() - 2],
            Step::Usage { limit: 131_072, .. }
        ));
        assert_eq!(finish(&p), (200, Reason::Success, answer));
        assert_eq!(p.answer, answer);
    }

    #[test]
    fn follow_up_turn_has_no_title() {
        let mut t = turn("[[sim:turn]]", auto());
        t.new_session = false;
        t.number = 3;
        let p = plan(&t);
        assert!(!p.steps.iter().any(|s| matches!(s, Step::Title(_))));
        assert_eq!(finish(&p).2, "turn 3 of session s-1");
    }

    #[test]
    fn long_questions_are_quoted_and_titled_short() {
        let q = "x".repeat(100);
        assert_eq!(quote(&q), format!("{}...", "x".repeat(80)));
        assert_eq!(quote(&"é".repeat(80)), "é".repeat(80));
        assert_eq!(title(&format!("{}\n\n", "ü".repeat(40))), "ü".repeat(30));
    }

    #[test]
    fn chunks_directive_gives_exact_deltas() {
        let p = plan(&turn("[[sim:chunks=9]]", auto()));
        let ds = deltas(&p);
        let mut want: Vec<String> = (1..=9).map(|i| format!("c{i} ")).collect();
        want.insert(7, String::new());
        assert_eq!(ds, want);
        assert_eq!(finish(&p).2, want.concat());
    }

    #[test]
    fn reasoning_models_and_think_directive_add_the_think_block() {
        let block = "````think::{THINK_TIME}\nThinking about: why\n````\n";
        let thinking = models::find("dashscope_qwen_plus_20250428_thinking");
        let p = plan(&turn("why", thinking));
        assert!(finish(&p).2.starts_with(block), "{}", p.answer);
        let p = plan(&turn("[[sim:think]]\nwhy", auto()));
        assert!(p.answer.starts_with(block));
        let p = plan(&turn("[[sim:think]][[sim:chunks=2]]\nwhy", auto()));
        assert_eq!(p.answer, format!("{block}c1 c2 "));
    }

    #[test]
    fn body_directives() {
        assert_eq!(
            plan(&turn("[[sim:whoami]]", auto())).answer,
            "instance inst-a pid 42"
        );
        let q = "  [[sim:echo]]\r\n multi\nline  ";
        assert_eq!(plan(&turn(q, auto())).answer, q);
        let p = plan(&turn("[[sim:unicode]]", auto()));
        assert_eq!(p.answer, UNICODE_ANSWER);
        assert!(deltas(&p).iter().all(|d| d.chars().count() <= 5));
    }

    #[test]
    fn refusals_finish_right_after_the_step_callbacks() {
        let mut t = turn("hi", auto());
        t.logged_in = false;
        let p = plan(&t);
        assert_eq!(p.steps.len(), 3);
        assert_eq!(finish(&p), (403, Reason::Error, ""));
        assert_eq!(finish(&plan(&turn("hi", None))), (500, Reason::Error, ""));
        assert_eq!(
            finish(&plan(&turn(" \n ", auto()))),
            (500, Reason::Error, "")
        );
        let p = plan(&turn("[[sim:status=429]]", auto()));
        assert_eq!(p.steps.len(), 3);
        assert_eq!(finish(&p), (429, Reason::Error, ""));
    }

    #[test]
    fn faults_come_after_their_delta_counts() {
        let p = plan(&turn("[[sim:crash]]", auto()));
        assert_eq!(
            p.steps
                .iter()
                .filter(|s| matches!(s, Step::Delta(_)))
                .count(),
            3
        );
        assert_eq!(p.steps.last(), Some(&Step::Crash));
        let p = plan(&turn("[[sim:stall=0]]", auto()));
        assert_eq!(p.steps.last(), Some(&Step::Stall));
        assert!(deltas(&p).is_empty());
        let p = plan(&turn("[[sim:close=2]]", auto()));
        assert_eq!(deltas(&p).len(), 2);
        assert_eq!(p.steps.last(), Some(&Step::Close));
        // The earliest terminal fault wins.
        let p = plan(&turn("[[sim:crash=5]][[sim:stall=1]]", auto()));
        assert_eq!(p.steps.last(), Some(&Step::Stall));
    }

    #[test]
    fn oversize_and_faults_scoped_to_another_instance() {
        let p = plan(&turn("[[sim:oversize=2]]", auto()));
        let pos = p.steps.iter().position(|s| *s == Step::Oversize).unwrap();
        assert!(matches!(p.steps[pos - 1], Step::Delta(_)));
        assert!(matches!(p.steps[pos + 1], Step::Delta(_)));
        // `on=` names another instance: every fault is off, the answer is normal.
        let q = "[[sim:on=elsewhere]] [[sim:crash=0]] [[sim:status=500]] [[sim:oversize]]";
        let p = plan(&turn(q, auto()));
        assert!(!p.steps.contains(&Step::Crash) && !p.steps.contains(&Step::Oversize));
        assert_eq!(finish(&p).0, 200);
    }

    #[test]
    fn garbage_is_sent_mid_stream_and_the_turn_goes_on() {
        let p = plan(&turn("[[sim:garbage]]", auto()));
        let pos = p.steps.iter().position(|s| *s == Step::Garbage).unwrap();
        assert!(matches!(p.steps[pos - 1], Step::Delta(_)));
        assert!(matches!(p.steps[pos + 1], Step::Delta(_)));
        assert_eq!(finish(&p).0, 200);
    }

    #[test]
    fn counts_past_the_end_act_after_the_last_delta() {
        let p = plan(&turn("[[sim:chunks=2]][[sim:stall=50]]", auto()));
        assert_eq!(deltas(&p), vec!["c1 ", "c2 "]);
        assert_eq!(p.steps.last(), Some(&Step::Stall));
    }

    #[test]
    fn timing_and_wire_overrides_pass_through() {
        let p = plan(&turn(
            "[[sim:delay=5]][[sim:first=7]][[sim:wire=packed]][[sim:wire=binary]][[sim:bogus]]",
            auto(),
        ));
        assert_eq!((p.first_ms, p.delay_ms), (Some(7), Some(5)));
        assert_eq!(
            p.wire,
            Wire {
                split: false,
                packed: true,
                binary: true
            }
        );
        assert_eq!(p.ignored, vec!["bogus"]);
    }

    #[test]
    fn split_points_cut_the_header_and_a_multibyte_char() {
        let frame = lingma_protocol::jsonrpc::encode_frame("{\"t\":\"ab 你\"}".as_bytes());
        let cuts = split_points(&frame);
        assert_eq!(cuts.len(), 2);
        assert_eq!(&frame[..cuts[0]], b"Content-L");
        assert!(
            std::str::from_utf8(&frame[cuts[1]..]).is_err(),
            "second cut is inside 你"
        );
        let ascii = lingma_protocol::jsonrpc::encode_frame(b"{\"a\":1}");
        let cuts = split_points(&ascii);
        assert_eq!(cuts.len(), 2);
        assert!(cuts[0] < cuts[1] && cuts[1] < ascii.len());
        assert!(split_points(b"ab").is_empty());
        assert_eq!(split_points(b"abc"), vec![1, 2]);
    }

    const AUTO: &str = "auto. Call a tool when it helps; otherwise answer in plain text.";
    const ANY: &str = "required. You must call at least one of the tools in this answer.";
    const NONE: &str = "none. Do not call any tool in this answer.";
    const WEATHER: &str = r#"{"type":"object","properties":{"location":{"type":"string","description":"City"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["location","unit"]}"#;
    const BASH: &str = r#"{"type":"object","properties":{"command":{"type":"string"},"timeout":{"type":"number"}},"required":["command"]}"#;
    const RETRY: &str = "[system]\nYour previous answer did not call a tool, but this answer must. Reply with only a ```json action block that calls one of the tools with all its required parameters.";

    /// A prompt as the gateway renders it: system text, the tool contract, then `turns`.
    fn prompt(choice: &str, turns: &str) -> String {
        format!(
            "[system]\nYou are terse.\n\n[tools]\nYou can call tools. To call one, write a fenced block tagged `json action` that holds one JSON object with the tool's exact name and its parameters:\n\n```json action\n{{\"tool\": \"TOOL_NAME\", \"parameters\": {{\"PARAMETER\": \"VALUE\"}}}}\n```\n\nRules:\n- Use a tool's name exactly as listed below, and give every required parameter.\n\nTool choice: {choice}\n\n## Tool: get_weather\nGet the current weather.\nIn a city.\nParameters (JSON schema): {WEATHER}\n\n## Tool: Bash\nRuns a command.\nParameters (JSON schema): {BASH}\n\n{turns}"
        )
    }

    fn answer_of(question: &str) -> String {
        let p = plan(&turn(question, auto()));
        assert_eq!(finish(&p).0, 200, "{p:?}");
        p.answer
    }

    const BASH_CALL: &str = "```json action\n{\"tool\": \"Bash\", \"parameters\": {\"command\":\"echo sim-tool\"}}\n```\n";

    #[test]
    fn tool_directive_calls_a_declared_tool_with_schema_arguments() {
        let q = prompt(AUTO, "[user]\nWeather in Paris? [[sim:tool=get_weather]]");
        let p = plan(&turn(&q, auto()));
        assert_eq!(
            p.answer,
            "I'll call get_weather now.\n```json action\n{\"tool\": \"get_weather\", \"parameters\": {\"location\":\"sim-location\",\"unit\":\"celsius\"}}\n```\n"
        );
        assert!(deltas(&p).iter().all(|d| d.chars().count() <= 5));
        assert_eq!(
            p.note.as_deref(),
            Some("prompt sections=3 tools=2 choice=auto retry=false -> call get_weather x1 style=action")
        );
        // The title and the quote come from the user text, not the transcript's last line.
        assert_eq!(
            p.steps[2],
            Step::Title("Weather in Paris? [[sim:tool=g".into())
        );
        let q = prompt(AUTO, "[user]\n[[sim:tool=Bash]][[sim:cmd=ls -la /tmp]]");
        assert_eq!(
            answer_of(&q),
            "I'll call Bash now.\n```json action\n{\"tool\": \"Bash\", \"parameters\": {\"command\":\"ls -la /tmp\"}}\n```\n"
        );
    }

    #[test]
    fn every_call_style() {
        let style = |s: &str| {
            let q = prompt(
                AUTO,
                &format!("[user]\ngo [[sim:tool=Bash]][[sim:style={s}]]"),
            );
            let a = answer_of(&q);
            a.strip_prefix("I'll call Bash now.\n")
                .unwrap_or_else(|| panic!("{a}"))
                .to_string()
        };
        let args = r#"{"command":"echo sim-tool"}"#;
        assert_eq!(style("action"), BASH_CALL);
        assert_eq!(
            style("fence"),
            format!("```json\n{{\n  \"name\": \"Bash\",\n  \"arguments\": {args}\n}}\n```\n")
        );
        assert_eq!(
            style("qwen"),
            format!("<tool_call>\n{{\"name\": \"Bash\", \"arguments\": {args}}}\n</tool_call>\n")
        );
        assert_eq!(
            style("bare"),
            format!("{{\"tool\": \"Bash\", \"parameters\": {args}}}\n")
        );
        assert_eq!(
            style("unclosed"),
            format!("```json action\n{{\"tool\": \"Bash\", \"parameters\": {args}}}")
        );
        assert_eq!(style("badname"), BASH_CALL.replace("\"Bash\"", "\"BASH\""));
        assert_eq!(
            style("noargs"),
            "```json action\n{\"tool\": \"Bash\", \"parameters\": {}}\n```\n"
        );
        assert_eq!(wrong_case("LS"), "ls");
        assert_eq!(wrong_case("42"), "42_X");
    }

    #[test]
    fn calls_directive_writes_several_blocks() {
        let q = prompt(AUTO, "[user]\n[[sim:tool=Bash]][[sim:calls=3]]");
        assert_eq!(
            answer_of(&q),
            format!("I'll call Bash now.\n{BASH_CALL}\n{BASH_CALL}\n{BASH_CALL}")
        );
        // Unclosed: only the last block lacks its fence.
        let q = prompt(
            AUTO,
            "[user]\n[[sim:tool=Bash]][[sim:calls=2]][[sim:style=unclosed]]",
        );
        let a = answer_of(&q);
        assert!(a.starts_with(&format!(
            "I'll call Bash now.\n{BASH_CALL}\n```json action\n"
        )));
        assert!(a.ends_with("}}"), "{a}");
    }

    #[test]
    fn forced_choices_call_without_a_directive() {
        let named = "required. You must call the tool \"get_weather\" in this answer.";
        let a = answer_of(&prompt(named, "[user]\nhi [[sim:tool=Bash]]"));
        assert!(
            a.starts_with("I'll call get_weather now.\n```json action\n{\"tool\": \"get_weather\"")
        );
        // Any: the directive's tool when declared, else the first declared tool.
        let a = answer_of(&prompt(ANY, "[user]\nhi [[sim:tool=Bash]]"));
        assert_eq!(a, format!("I'll call Bash now.\n{BASH_CALL}"));
        let a = answer_of(&prompt(ANY, "[user]\nhi [[sim:tool=nope]]"));
        assert!(a.starts_with("I'll call get_weather now."));
        // None: no call even when asked.
        let p = plan(&turn(&prompt(NONE, "[user]\nhi [[sim:tool=Bash]]"), auto()));
        assert_eq!(
            p.answer,
            "Hello from the Lingma simulator (Auto). You said: hi [[sim:tool=Bash]]"
        );
        assert!(p.note.unwrap().ends_with("choice=none retry=false -> text"));
    }

    #[test]
    fn lazy_waits_for_the_retry_instruction() {
        let q = prompt(ANY, "[user]\nplease [[sim:lazy]][[sim:tool=Bash]]");
        let a = answer_of(&q);
        assert!(a.starts_with("Hello from the Lingma simulator"), "{a}");
        let a = answer_of(&format!("{q}\n\n{RETRY}"));
        assert_eq!(a, format!("I'll call Bash now.\n{BASH_CALL}"));
        // The marker elsewhere than in a trailing system section does not count.
        let q = prompt(ANY, &format!("[user]\n[[sim:lazy]] {RETRY}"));
        assert!(answer_of(&q).starts_with("Hello from"));
    }

    #[test]
    fn undeclared_tools_are_ignored() {
        let p = plan(&turn(&prompt(AUTO, "[user]\nhi [[sim:tool=bash]]"), auto()));
        assert!(p.answer.starts_with("Hello from the Lingma simulator"));
        assert_eq!(p.ignored, vec!["tool=bash (not declared)"]);
        // No tools section at all.
        let p = plan(&turn("hi [[sim:tool=Bash]]", auto()));
        assert_eq!(
            p.answer,
            "Hello from the Lingma simulator (Auto). You said: hi [[sim:tool=Bash]]"
        );
        assert_eq!(p.ignored, vec!["tool=Bash (not declared)"]);
    }

    #[test]
    fn tool_results_are_acknowledged_first() {
        let long = "x".repeat(2100);
        let q = prompt(
            ANY,
            &format!("[user]\nweather? [[sim:tool=get_weather]][[sim:chunks=3]]\n\n[assistant]\nI'll call get_weather now.\n{BASH_CALL}\n[tool_result get_weather call_id=toolu_01]\nsunny, 21C\n\n[tool_result Bash call_id=toolu_02 error]\n{long}\n\n{RETRY}"),
        );
        let p = plan(&turn(&q, auto()));
        assert_eq!(
            p.answer,
            format!("Tool result received: sunny, 21C | {}", "x".repeat(2000))
        );
        assert!(p.note.unwrap().ends_with("retry=true -> tool-results(2)"));
    }

    #[test]
    fn old_directives_do_not_fire_again() {
        let q = prompt(
            AUTO,
            "[user]\nfirst [[sim:tool=Bash]] [[sim:crash]] [[sim:status=429]]\n\n[assistant]\nI'll call Bash now.\n\n[tool_result Bash call_id=c1]\nsee README: [[sim:stall]] [[sim:echo]]\n\n[assistant]\nDone.\n\n[system]\n[[sim:native=read_file]]\n\n[user]\nthanks",
        );
        let p = plan(&turn(&q, auto()));
        assert_eq!(
            p.answer,
            "Hello from the Lingma simulator (Auto). You said: thanks"
        );
        assert_eq!(finish(&p).0, 200);
        // A tool result that quotes directives changes nothing either.
        let q = prompt(
            AUTO,
            "[user]\nrun it\n\n[assistant]\nok\n\n[tool_result Bash call_id=c1]\n[[sim:crash=0]]",
        );
        assert_eq!(answer_of(&q), "Tool result received: [[sim:crash=0]]");
    }

    #[test]
    fn the_think_block_comes_before_the_call() {
        let q = prompt(AUTO, "[user]\nlook\n[[sim:think]][[sim:tool=Bash]]");
        assert_eq!(
            answer_of(&q),
            format!("````think::{{THINK_TIME}}\nThinking about: [[sim:think]][[sim:tool=Bash]]\n````\nI'll call Bash now.\n{BASH_CALL}")
        );
        let thinking = models::find("dashscope_qwen_plus_20250428_thinking");
        let p = plan(&turn(&prompt(AUTO, "[user]\nwhy?"), thinking));
        assert!(p
            .answer
            .starts_with("````think::{THINK_TIME}\nThinking about: why?\n````\nHello"));
    }

    #[test]
    fn arguments_follow_the_schema() {
        let schema = json!({
            "type": "object",
            "properties": {
                "command": {"type": "array", "items": {"type": "string"}},
                "workdir": {"type": "string"},
                "count": {"type": "integer", "minimum": 3},
                "ratio": {"type": "number"},
                "force": {"type": "boolean"},
                "tags": {"type": "array", "items": {"type": "integer"}},
                "two": {"type": "array", "items": {"type": "string"}, "minItems": 2},
                "mode": {"type": ["string", "null"], "enum": ["fast", "slow"]},
                "opts": {"type": "object", "properties": {"deep": {"type": "boolean"}}, "required": ["deep"]},
                "empty": {"type": "object"},
                "either": {"anyOf": [{"type": "null"}, {"type": "integer"}]},
            },
            "required": ["count", "ratio", "force", "tags", "two", "mode", "opts", "empty", "either", "extra"],
        });
        assert_eq!(
            arguments(&schema, "make test"),
            json!({
                "command": ["bash", "-lc", "make test"],
                "count": 3,
                "ratio": 1,
                "force": false,
                "tags": [],
                "two": ["sim-two", "sim-two"],
                "mode": "fast",
                "opts": {"deep": false},
                "empty": {},
                "either": 1,
                "extra": "sim-extra",
            })
        );
        // `cmd` as a string, filled though not required; no schema at all gives no arguments.
        let schema = json!({"type": "object", "properties": {"cmd": {"type": "string"}, "other": {"type": "string"}}});
        assert_eq!(arguments(&schema, "ls"), json!({"cmd": "ls"}));
        assert_eq!(arguments(&Value::Null, "ls"), json!({}));
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

    #[test]
    fn native_directive_plans_the_card_then_the_tool_step() {
        let p = plan(&turn("read it [[sim:native=read_file]]", auto()));
        assert_eq!(
            p.answer,
            "Let me use read_file.\n```toolCall::read_file::tc-1::INIT\n```\n"
        );
        let n = p.steps.len();
        assert_eq!(
            p.steps[n - 3],
            Step::Native(NativeCall {
                name: "read_file".into(),
                tool_call_id: "tc-1".into(),
                parameters: json!({"path": "README.md"}),
            })
        );
        assert!(matches!(p.steps[n - 4], Step::Delta(_)));
        assert!(matches!(p.steps[n - 2], Step::Usage { .. }));
        assert_eq!(finish(&p).0, 200);
        let p = plan(&turn(
            "[[sim:native=run_in_terminal]][[sim:native_args={\"command\":\"ls\"}]]",
            auto(),
        ));
        assert!(p.steps.contains(&Step::Native(NativeCall {
            name: "run_in_terminal".into(),
            tool_call_id: "tc-1".into(),
            parameters: json!({"command": "ls"}),
        })));
        // A fault before the end leaves the tool step out.
        let p = plan(&turn("[[sim:native=read_file]][[sim:stall=2]]", auto()));
        assert!(!p.steps.iter().any(|s| matches!(s, Step::Native(_))));
    }
}
