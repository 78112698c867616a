//! Soak: a long mixed load through the release gateway on its simulator, every answer
//! checked as a client would check it, and the gateway's memory watched. Run by
//! `scripts/soak.sh`; exits non-zero unless there were no errors, no lost answers and the
//! gateway's RSS at the end is at most 10 % above its RSS after the warm-up.
//!
//! The load is a fixed rotation of jobs over the three APIs (chat completions, Anthropic
//! messages, Responses), streamed and not: greetings from four models (a reasoning one among
//! them, plain, multi-byte and multi-line questions), `[[sim:chunks=N]]` answers of 2 to 100
//! deltas, and three-turn `[[sim:turn]]` conversations whose later turns must land on the
//! same Lingma session (session reuse; on Responses through `previous_response_id` or the
//! whole input with `store: false`, alternately). The simulator's answers are deterministic,
//! so every text is compared exactly; streams must end with their protocol's terminal event.
//!
//! An answer that did not arrive whole (connection error, timeout, body cut short, a stream
//! without any terminal event) is *lost*; one that arrived but is not the expected answer
//! (status, text, stop reason, event order, an error event) is an *error*.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{rss_kib, start_gateway, temp_dir, Http};
use serde_json::{json, Value};

struct Args {
    bin: PathBuf,
    requests: usize,
    concurrency: usize,
    warmup: usize,
    instances: usize,
    progress: Duration,
    timeout: Duration,
}

const USAGE: &str = "soak [--bin PATH] [--requests N] [--concurrency N] [--warmup N] \
                     [--instances N] [--progress SECS] [--timeout SECS]";

fn parse_args() -> Args {
    let mut a = Args {
        bin: PathBuf::from("target/release/lingma-gateway"),
        requests: 100_000,
        concurrency: 64,
        // Long enough to fill the gateway's bounded caches at their defaults (the session
        // cache's 10,000 entries take at least 10,000 answers): after the warm-up the RSS
        // should hold, and growth past it is what the soak is looking for.
        warmup: 20_000,
        instances: 2,
        progress: Duration::from_secs(5),
        timeout: Duration::from_secs(60),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let v = argv.get(i + 1).cloned().unwrap_or_default();
        let num = |what: &str| -> usize {
            v.parse()
                .unwrap_or_else(|_| panic!("{what} needs a number\n{USAGE}"))
        };
        match argv[i].as_str() {
            "--bin" => a.bin = PathBuf::from(&v),
            "--requests" => a.requests = num("--requests"),
            "--concurrency" => a.concurrency = num("--concurrency"),
            "--warmup" => a.warmup = num("--warmup"),
            "--instances" => a.instances = num("--instances"),
            "--progress" => a.progress = Duration::from_secs(num("--progress") as u64),
            "--timeout" => a.timeout = Duration::from_secs(num("--timeout") as u64),
            other => panic!("unknown argument {other}\n{USAGE}"),
        }
        i += 2;
    }
    assert!(
        a.concurrency > 0 && a.instances > 0,
        "--concurrency and --instances must be positive"
    );
    assert!(a.warmup < a.requests, "--warmup must be below --requests");
    a
}

// ---------------------------------------------------------------- the mix

#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Chat,
    Messages,
    Responses,
}

const APIS: [Api; 3] = [Api::Chat, Api::Messages, Api::Responses];

impl Api {
    fn path(self) -> &'static str {
        match self {
            Api::Chat => "/v1/chat/completions",
            Api::Messages => "/v1/messages",
            Api::Responses => "/v1/responses",
        }
    }
    fn name(self) -> &'static str {
        match self {
            Api::Chat => "chat",
            Api::Messages => "messages",
            Api::Responses => "responses",
        }
    }
}

/// (the name a request uses, the display name the simulator's greeting shows).
const MODELS: [(&str, &str); 4] = [
    ("auto", "Auto"),
    ("Qwen3-Coder", "Qwen3-Coder"),
    // A reasoning model: every answer starts with a think block, which must stay out of
    // the text (chat `reasoning_content`, a Responses reasoning item, dropped on messages).
    ("Qwen-Plus-Thinking", "Qwen-Plus-Thinking"),
    ("kmodel", "Kimi-K2"),
];

enum Kind {
    /// The simulator's greeting, which quotes the question's last line.
    Greeting { model: usize, question: String },
    /// `[[sim:chunks=N]]`: `c1 c2 … cN `.
    Chunks(usize),
    /// A conversation of `[[sim:turn]]` turns; on Responses, `chained` continues it by
    /// `previous_response_id`, otherwise the whole conversation is sent every turn.
    Conversation { turns: usize, chained: bool },
}

struct Job {
    n: usize,
    api: Api,
    /// Whether the first (or only) request streams; a conversation alternates.
    stream: bool,
    kind: Kind,
}

impl Job {
    /// Job `n` of the rotation: the API cycles fastest, then stream or not, then the kind
    /// (6 greetings, 2 chunked answers, 2 conversations in every 10).
    fn nth(n: usize) -> Job {
        use Kind::*;
        let api = APIS[n % 3];
        let stream = (n / 3) % 2 == 1;
        let kind = match (n / 6) % 10 {
            0..=5 => Greeting {
                model: (n / 60) % MODELS.len(),
                question: match n % 4 {
                    0 | 1 => format!("soak {n}: hello there"),
                    2 => format!("soak {n}: grüße, 漢字 und 🚀 ok"),
                    _ => format!("first line of {n}\n\n  soak {n}: the last line counts  "),
                },
            },
            6 | 7 => Chunks(2 + (n * 7) % 99),
            _ => Conversation {
                turns: 3,
                chained: (n / 60) % 2 == 0,
            },
        };
        Job {
            n,
            api,
            stream,
            kind,
        }
    }

    fn requests(&self) -> usize {
        match self.kind {
            Kind::Conversation { turns, .. } => turns,
            _ => 1,
        }
    }
}

/// The simulator's greeting: it quotes the last non-empty line of the question (trimmed;
/// the questions here stay under its 80-character cut).
fn greeting(display: &str, question: &str) -> String {
    let quote = question
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("");
    assert!(
        quote.chars().count() <= 80,
        "question too long to quote whole"
    );
    format!("Hello from the Lingma simulator ({display}). You said: {quote}")
}

fn chunks_answer(n: usize) -> String {
    (1..=n).map(|i| format!("c{i} ")).collect()
}

/// One request of a job, as the wire sees it.
struct Ask<'a> {
    api: Api,
    stream: bool,
    model: &'a str,
    system: Option<&'a str>,
    /// Earlier (user, assistant) turns sent along.
    history: &'a [(String, String)],
    user: &'a str,
    previous_response_id: Option<&'a str>,
    /// Chat streams: `stream_options.include_usage` (a usage chunk before `[DONE]`).
    usage: bool,
}

impl Ask<'_> {
    fn body(&self) -> String {
        let mut b = match self.api {
            Api::Chat => {
                let mut messages = Vec::new();
                if let Some(s) = self.system {
                    messages.push(json!({"role": "system", "content": s}));
                }
                for (u, a) in self.history {
                    messages.push(json!({"role": "user", "content": u}));
                    messages.push(json!({"role": "assistant", "content": a}));
                }
                messages.push(json!({"role": "user", "content": self.user}));
                let mut b = json!({"model": self.model, "messages": messages});
                if self.stream && self.usage {
                    b["stream_options"] = json!({"include_usage": true});
                }
                b
            }
            Api::Messages => {
                let mut messages = Vec::new();
                for (u, a) in self.history {
                    messages.push(json!({"role": "user", "content": u}));
                    messages.push(json!({"role": "assistant", "content": a}));
                }
                messages.push(json!({"role": "user", "content": self.user}));
                let mut b = json!({"model": self.model, "max_tokens": 1024, "messages": messages});
                if let Some(s) = self.system {
                    b["system"] = json!(s);
                }
                b
            }
            Api::Responses => {
                let mut b = json!({"model": self.model});
                if let Some(s) = self.system {
                    b["instructions"] = json!(s);
                }
                if let Some(id) = self.previous_response_id {
                    b["previous_response_id"] = json!(id);
                    b["input"] = json!(self.user);
                } else if self.history.is_empty() {
                    b["input"] = json!(self.user);
                } else {
                    // Codex's way: the whole conversation every turn, nothing stored.
                    let mut input = Vec::new();
                    for (u, a) in self.history {
                        input.push(json!({"role": "user", "content": u}));
                        input.push(json!({"type": "message", "role": "assistant",
                            "content": [{"type": "output_text", "text": a}]}));
                    }
                    input.push(json!({"role": "user", "content": self.user}));
                    b["input"] = json!(input);
                    b["store"] = json!(false);
                }
                b
            }
        };
        b["stream"] = json!(self.stream);
        b.to_string()
    }
}

// ---------------------------------------------------------------- checking answers

enum Fault {
    /// An answer arrived, and it is wrong.
    Error(String),
    /// No whole answer arrived.
    Lost(String),
}
use Fault::{Error, Lost};

/// What a correct answer carried.
struct Answer {
    text: String,
    /// The Responses `id`.
    id: Option<String>,
}

fn cut(s: &str) -> String {
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn json_of(data: &str) -> Result<Value, Fault> {
    serde_json::from_str(data).map_err(|e| Error(format!("bad JSON ({e}): {}", cut(data))))
}

fn expect(cond: bool, what: impl FnOnce() -> String) -> Result<(), Fault> {
    if cond {
        Ok(())
    } else {
        Err(Error(what()))
    }
}

/// An SSE event: its `event:` name (if any) and its `data:` lines joined.
struct Event {
    name: Option<String>,
    data: String,
}

/// Splits an event stream into events; comments (keep-alives) are skipped. A stream whose
/// last event is not closed by a blank line was cut short.
fn events(body: &str) -> Result<Vec<Event>, Fault> {
    if !body.is_empty() && !body.ends_with("\n\n") {
        return Err(Lost(format!(
            "stream cut mid-event: …{}",
            cut(body.get(body.len().saturating_sub(200)..).unwrap_or(""))
        )));
    }
    let mut out = Vec::new();
    for block in body.split("\n\n").filter(|b| !b.is_empty()) {
        let mut ev = Event {
            name: None,
            data: String::new(),
        };
        let mut has_data = false;
        for line in block.lines() {
            if line.starts_with(':') {
                continue;
            } else if let Some(v) = line.strip_prefix("event:") {
                ev.name = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("data:") {
                if has_data {
                    ev.data.push('\n');
                }
                ev.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                has_data = true;
            } else {
                return Err(Error(format!("not an SSE line: {}", cut(line))));
            }
        }
        if has_data || ev.name.is_some() {
            out.push(ev);
        }
    }
    Ok(out)
}

fn check(api: Api, stream: bool, status: u16, body: &[u8], usage: bool) -> Result<Answer, Fault> {
    let body = std::str::from_utf8(body).map_err(|e| Error(format!("body not UTF-8: {e}")))?;
    if status != 200 {
        return Err(Error(format!("HTTP {status}: {}", cut(body))));
    }
    match (api, stream) {
        (Api::Chat, false) => chat_plain(&json_of(body)?),
        (Api::Chat, true) => chat_stream(&events(body)?, usage),
        (Api::Messages, false) => messages_plain(&json_of(body)?),
        (Api::Messages, true) => messages_stream(&events(body)?),
        (Api::Responses, false) => responses_plain(&json_of(body)?),
        (Api::Responses, true) => responses_stream(&events(body)?),
    }
}

fn chat_plain(v: &Value) -> Result<Answer, Fault> {
    let c = &v["choices"][0];
    expect(
        v["object"] == "chat.completion" && c["finish_reason"] == "stop",
        || format!("not a finished chat.completion: {}", cut(&v.to_string())),
    )?;
    let text = c["message"]["content"].as_str();
    let text = text.ok_or_else(|| Error(format!("no content: {}", cut(&v.to_string()))))?;
    Ok(Answer {
        text: text.to_string(),
        id: None,
    })
}

fn chat_stream(evs: &[Event], usage: bool) -> Result<Answer, Fault> {
    let mut text = String::new();
    let mut finishes = Vec::new();
    let mut usage_seen = false;
    for (i, e) in evs.iter().enumerate() {
        if e.data == "[DONE]" {
            expect(i + 1 == evs.len(), || "events after [DONE]".into())?;
            expect(finishes == ["stop"], || {
                format!("finish reasons {finishes:?}")
            })?;
            expect(usage_seen == usage, || {
                format!("usage chunk seen: {usage_seen}")
            })?;
            return Ok(Answer { text, id: None });
        }
        let v = json_of(&e.data)?;
        expect(v.get("error").is_none(), || {
            format!("error event: {}", cut(&e.data))
        })?;
        expect(v["object"] == "chat.completion.chunk", || {
            format!("not a chunk: {}", cut(&e.data))
        })?;
        for c in v["choices"].as_array().into_iter().flatten() {
            if let Some(t) = c["delta"]["content"].as_str() {
                text.push_str(t);
            }
            if let Some(f) = c["finish_reason"].as_str() {
                finishes.push(f.to_string());
            }
        }
        if v["usage"].is_object() {
            usage_seen = true;
        }
    }
    Err(Lost(format!(
        "stream ended without [DONE] after {} events",
        evs.len()
    )))
}

fn messages_text(content: &Value) -> String {
    content
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b["text"].as_str())
        .collect()
}

fn messages_plain(v: &Value) -> Result<Answer, Fault> {
    expect(
        v["type"] == "message" && v["stop_reason"] == "end_turn",
        || format!("not a finished message: {}", cut(&v.to_string())),
    )?;
    Ok(Answer {
        text: messages_text(&v["content"]),
        id: None,
    })
}

fn messages_stream(evs: &[Event]) -> Result<Answer, Fault> {
    let mut text = String::new();
    let mut stop_reason = None;
    for (i, e) in evs.iter().enumerate() {
        let v = json_of(&e.data)?;
        let ty = v["type"].as_str().unwrap_or("");
        expect(e.name.as_deref() == Some(ty), || {
            format!("event {:?} carries type {ty:?}", e.name)
        })?;
        expect((i == 0) == (ty == "message_start"), || {
            format!("event {i} is {ty}")
        })?;
        match ty {
            "error" => return Err(Error(format!("error event: {}", cut(&e.data)))),
            "content_block_delta" if v["delta"]["type"] == "text_delta" => {
                text.push_str(v["delta"]["text"].as_str().unwrap_or(""));
            }
            "message_delta" => stop_reason = v["delta"]["stop_reason"].as_str().map(String::from),
            "message_stop" => {
                expect(i + 1 == evs.len(), || "events after message_stop".into())?;
                expect(stop_reason.as_deref() == Some("end_turn"), || {
                    format!("stop_reason {stop_reason:?}")
                })?;
                return Ok(Answer { text, id: None });
            }
            _ => {}
        }
    }
    Err(Lost(format!(
        "stream ended without message_stop after {} events",
        evs.len()
    )))
}

fn responses_text(r: &Value) -> String {
    r["output"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().into_iter().flatten())
        .filter(|c| c["type"] == "output_text")
        .filter_map(|c| c["text"].as_str())
        .collect()
}

fn responses_plain(v: &Value) -> Result<Answer, Fault> {
    expect(
        v["object"] == "response" && v["status"] == "completed",
        || format!("not a completed response: {}", cut(&v.to_string())),
    )?;
    let id = v["id"]
        .as_str()
        .ok_or_else(|| Error("response without id".into()))?;
    Ok(Answer {
        text: responses_text(v),
        id: Some(id.to_string()),
    })
}

fn responses_stream(evs: &[Event]) -> Result<Answer, Fault> {
    let mut text = String::new();
    let mut created_id = None;
    for (i, e) in evs.iter().enumerate() {
        let v = json_of(&e.data)?;
        let ty = v["type"].as_str().unwrap_or("");
        expect(e.name.as_deref() == Some(ty), || {
            format!("event {:?} carries type {ty:?}", e.name)
        })?;
        expect(v["sequence_number"] == json!(i), || {
            format!("event {i} has sequence_number {}", v["sequence_number"])
        })?;
        expect((i == 0) == (ty == "response.created"), || {
            format!("event {i} is {ty}")
        })?;
        match ty {
            "response.created" => created_id = v["response"]["id"].as_str().map(String::from),
            "response.output_text.delta" => text.push_str(v["delta"].as_str().unwrap_or("")),
            "response.failed" | "response.incomplete" | "error" => {
                return Err(Error(format!("{ty}: {}", cut(&e.data))))
            }
            "response.completed" => {
                let r = &v["response"];
                expect(i + 1 == evs.len(), || {
                    "events after response.completed".into()
                })?;
                expect(r["status"] == "completed", || {
                    format!("status {}", r["status"])
                })?;
                expect(r["id"].as_str() == created_id.as_deref(), || {
                    format!("id {} after {created_id:?}", r["id"])
                })?;
                let whole = responses_text(r);
                expect(whole == text, || {
                    format!("completed response says {whole:?}, the deltas {text:?}")
                })?;
                return Ok(Answer {
                    text,
                    id: created_id,
                });
            }
            _ => {}
        }
    }
    Err(Lost(format!(
        "stream ended without response.completed after {} events",
        evs.len()
    )))
}

// ---------------------------------------------------------------- the client threads

/// A client thread's connection, opened again after an error or `Connection: close`.
struct Client<'a> {
    addr: &'a str,
    timeout: Duration,
    http: Option<Http>,
}

impl Client<'_> {
    /// One POST; whatever keeps a whole response from arriving is `Lost`.
    fn post(&mut self, path: &str, body: &str) -> Result<(u16, Vec<u8>), Fault> {
        let http = match self.http.take() {
            Some(h) => h,
            None => {
                let h = Http::connect(self.addr).map_err(|e| Lost(format!("connect: {e}")))?;
                let s = h.r.get_ref();
                let _ = s.set_read_timeout(Some(self.timeout));
                let _ = s.set_write_timeout(Some(self.timeout));
                h
            }
        };
        let mut http = http;
        http.send("POST", path, body)
            .map_err(|e| Lost(format!("send: {e}")))?;
        let head = http
            .head()
            .map_err(|e| Lost(format!("reading the head: {e}")))?;
        let body = http
            .body(&head)
            .map_err(|e| Lost(format!("reading the body (HTTP {}): {e}", head.status)))?;
        if !head.close {
            self.http = Some(http);
        }
        Ok((head.status, body))
    }
}

/// Counters every thread adds to.
struct Totals {
    next_job: AtomicUsize,
    next_slot: AtomicUsize,
    done: AtomicUsize,
    errors: AtomicUsize,
    lost: AtomicUsize,
    /// Turns not sent because an earlier turn of their conversation failed.
    skipped: AtomicUsize,
    /// Requests by API and stream (`api * 2 + stream`).
    by_api: [AtomicUsize; 6],
    greetings: AtomicUsize,
    chunked: AtomicUsize,
    turns: AtomicUsize,
    /// Turns after the first that continued their conversation's Lingma session.
    continued: AtomicUsize,
    warm_rss: AtomicU64,
    warm_at: Mutex<Option<Instant>>,
    faults: Mutex<Vec<String>>,
}

const SHOWN_FAULTS: usize = 20;

struct Soak<'a> {
    a: &'a Args,
    pid: u32,
    t: Totals,
}

impl Soak<'_> {
    fn thread(&self, addr: &str) {
        let mut c = Client {
            addr,
            timeout: self.a.timeout,
            http: None,
        };
        loop {
            let job = Job::nth(self.t.next_job.fetch_add(1, Ordering::Relaxed));
            let want = job.requests();
            let first = self.t.next_slot.fetch_add(want, Ordering::Relaxed);
            if first >= self.a.requests {
                return;
            }
            self.run(&mut c, &job, want.min(self.a.requests - first));
        }
    }

    /// Runs `requests` requests of `job` (fewer than it has only at the very end).
    fn run(&self, c: &mut Client, job: &Job, requests: usize) {
        let one = |c: &mut Client, ask: &Ask| {
            let r = c
                .post(ask.api.path(), &ask.body())
                .and_then(|(status, body)| check(ask.api, ask.stream, status, &body, ask.usage));
            self.t.by_api[ask.api as usize * 2 + ask.stream as usize]
                .fetch_add(1, Ordering::Relaxed);
            r
        };
        let usage = job.n % 4 == 1;
        match &job.kind {
            Kind::Greeting { model, question } => {
                let (name, display) = MODELS[*model];
                let ask = Ask {
                    api: job.api,
                    stream: job.stream,
                    model: name,
                    system: None,
                    history: &[],
                    user: question,
                    previous_response_id: None,
                    usage,
                };
                let want = greeting(display, question);
                let r = one(c, &ask).and_then(|ans| exact(&ans.text, &want));
                self.t.greetings.fetch_add(1, Ordering::Relaxed);
                self.record(job, 0, r);
            }
            Kind::Chunks(n) => {
                let user = format!("soak {}: count [[sim:chunks={n}]]", job.n);
                let ask = Ask {
                    api: job.api,
                    stream: job.stream,
                    model: "auto",
                    system: None,
                    history: &[],
                    user: &user,
                    previous_response_id: None,
                    usage,
                };
                let r = one(c, &ask).and_then(|ans| exact(&ans.text, &chunks_answer(*n)));
                self.t.chunked.fetch_add(1, Ordering::Relaxed);
                self.record(job, 0, r);
            }
            Kind::Conversation { chained, .. } => {
                let system = format!("You are soak conversation {}.", job.n);
                let mut history: Vec<(String, String)> = Vec::new();
                let mut session = String::new();
                let mut previous: Option<String> = None;
                for k in 1..=requests {
                    let user = format!("conversation {}, turn {k} [[sim:turn]]", job.n);
                    let chained = *chained && job.api == Api::Responses;
                    let ask = Ask {
                        api: job.api,
                        stream: job.stream ^ (k % 2 == 0),
                        model: "auto",
                        system: Some(&system),
                        history: if chained { &[] } else { &history },
                        user: &user,
                        previous_response_id: previous.as_deref(),
                        usage,
                    };
                    let r = one(c, &ask).and_then(|ans| {
                        if k == 1 {
                            let s = ans.text.strip_prefix("turn 1 of session ").unwrap_or("");
                            expect(!s.is_empty() && !s.contains(' '), || {
                                format!("expected turn 1 of a new session, got {:?}", ans.text)
                            })?;
                            session = s.to_string();
                        } else {
                            exact(&ans.text, &format!("turn {k} of session {session}"))?;
                            self.t.continued.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(ans)
                    });
                    self.t.turns.fetch_add(1, Ordering::Relaxed);
                    let ok = r.is_ok();
                    self.record(
                        job,
                        k,
                        r.map(|ans| {
                            if chained {
                                previous = ans.id;
                            }
                            history.push((user, ans.text));
                        }),
                    );
                    if !ok {
                        let left = requests - k;
                        self.t.skipped.fetch_add(left, Ordering::Relaxed);
                        self.t.done.fetch_add(left, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }
    }

    fn record(&self, job: &Job, turn: usize, r: Result<(), Fault>) {
        if let Err(f) = r {
            let (kind, what) = match f {
                Error(w) => {
                    self.t.errors.fetch_add(1, Ordering::Relaxed);
                    ("error", w)
                }
                Lost(w) => {
                    self.t.lost.fetch_add(1, Ordering::Relaxed);
                    ("lost", w)
                }
            };
            let mut faults = self.t.faults.lock().unwrap();
            if faults.len() < SHOWN_FAULTS {
                let line = format!(
                    "{kind}: job {} ({} {}{}{}): {what}",
                    job.n,
                    job.api.name(),
                    if job.stream { "stream" } else { "plain" },
                    match job.kind {
                        Kind::Greeting { .. } => ", greeting".to_string(),
                        Kind::Chunks(n) => format!(", chunks={n}"),
                        Kind::Conversation { chained, .. } =>
                            format!(", conversation chained={chained}"),
                    },
                    if turn > 0 {
                        format!(", turn {turn}")
                    } else {
                        String::new()
                    },
                );
                eprintln!("{line}");
                faults.push(line);
            }
        }
        let done = self.t.done.fetch_add(1, Ordering::Relaxed) + 1;
        if done == self.a.warmup {
            self.t
                .warm_rss
                .store(rss_kib(self.pid).unwrap_or(0), Ordering::Relaxed);
            *self.t.warm_at.lock().unwrap() = Some(Instant::now());
        }
    }
}

fn exact(got: &str, want: &str) -> Result<(), Fault> {
    expect(got == want, || {
        format!("expected {want:?}, got {:?}", cut(got))
    })
}

/// The gateway's thread count (`Threads` in `/proc/PID/status`): glibc keeps a cache of
/// freed memory per thread, so it bears on the RSS.
fn threads(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with("Threads:"))?;
            l.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// What the gateway's `/metrics` say about the chat routes.
struct GatewayView {
    /// `lingma_gateway_requests_total` of the three chat routes, by status.
    by_status: BTreeMap<String, u64>,
    cache_hits: u64,
    cache_misses: u64,
}

/// Reads `/metrics` once the gateway has counted `want` chat requests (it counts each just
/// after its last byte, so the last few may lag the client by a moment), or after 10 s.
fn gateway_view(addr: &str, want: u64) -> Result<GatewayView, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut h = Http::connect(addr).map_err(|e| e.to_string())?;
        h.send("GET", "/metrics", "").map_err(|e| e.to_string())?;
        let head = h.head().map_err(|e| e.to_string())?;
        let body = h.body(&head).map_err(|e| e.to_string())?;
        if head.status != 200 {
            return Err(format!("/metrics: HTTP {}", head.status));
        }
        let text = String::from_utf8_lossy(&body);
        let mut view = GatewayView {
            by_status: BTreeMap::new(),
            cache_hits: 0,
            cache_misses: 0,
        };
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let value: u64 = value.parse().unwrap_or(0);
            if let Some(labels) = series.strip_prefix("lingma_gateway_requests_total{") {
                let label = |name: &str| {
                    let at = labels
                        .find(&format!("{name}=\""))
                        .map(|i| i + name.len() + 2)?;
                    Some(&labels[at..at + labels[at..].find('"')?])
                };
                if APIS.iter().any(|a| label("route") == Some(a.path())) {
                    let status = label("status").unwrap_or("?").to_string();
                    *view.by_status.entry(status).or_insert(0) += value;
                }
            } else if series == "lingma_gateway_session_cache_hits_total" {
                view.cache_hits = value;
            } else if series == "lingma_gateway_session_cache_misses_total" {
                view.cache_misses = value;
            }
        }
        if view.by_status.values().sum::<u64>() >= want || Instant::now() > deadline {
            return Ok(view);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn main() {
    let a = parse_args();
    let bin = std::fs::canonicalize(&a.bin).expect("gateway binary (build with --release)");
    let dir = temp_dir("soak");
    // Every client thread may hold a chat: the chat cap (default 64) at twice the
    // concurrency, so that a thread's next request never waits for the previous one's slot
    // to be released, and the worker cap (default 256) well above it.
    let max_in_flight = (2 * a.concurrency).max(64);
    let max_workers = (4 * a.concurrency).max(256);
    let (gw, addr) = start_gateway(
        &bin,
        &dir,
        a.instances,
        &[
            ("LINGMA_GATEWAY_MAX_WORKERS", max_workers.to_string()),
            (
                "LINGMA_GATEWAY_GATEWAY_MAX_IN_FLIGHT",
                max_in_flight.to_string(),
            ),
        ],
    );
    let pid = gw.0.id();
    let rss_start = rss_kib(pid).unwrap_or(0);
    println!(
        "soak: {} requests at concurrency {}, warm-up {}, {} simulator instances \
         (gateway_max_in_flight {max_in_flight}, max_workers {max_workers}), gateway pid {pid} on {addr}, RSS {:.1} MiB",
        a.requests, a.concurrency, a.warmup, a.instances, mib(rss_start)
    );
    let soak = Soak {
        a: &a,
        pid,
        t: Totals {
            next_job: AtomicUsize::new(0),
            next_slot: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            errors: AtomicUsize::new(0),
            lost: AtomicUsize::new(0),
            skipped: AtomicUsize::new(0),
            by_api: Default::default(),
            greetings: AtomicUsize::new(0),
            chunked: AtomicUsize::new(0),
            turns: AtomicUsize::new(0),
            continued: AtomicUsize::new(0),
            warm_rss: AtomicU64::new(0),
            warm_at: Mutex::new(None),
            faults: Mutex::new(Vec::new()),
        },
    };
    let t = &soak.t;
    let start = Instant::now();
    let finished = AtomicBool::new(false);
    let mut peak_rss = rss_start;
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..a.concurrency)
            .map(|_| s.spawn(|| soak.thread(&addr)))
            .collect();
        // Progress: done/total, req/s overall and since the last line, faults, RSS.
        let progress = s.spawn(|| {
            let mut peak = rss_start;
            let (mut last_t, mut last_done) = (start, 0);
            let mut next = start + a.progress;
            while !finished.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                let now = Instant::now();
                if now < next {
                    continue;
                }
                next += a.progress;
                let done = t.done.load(Ordering::Relaxed);
                let rss = rss_kib(pid).unwrap_or(0);
                peak = peak.max(rss);
                println!(
                    "[{:6.1}s] {done:>7}/{} done  {:6.0} req/s (now {:6.0})  errors {}  lost {}  RSS {:.1} MiB",
                    (now - start).as_secs_f64(),
                    a.requests,
                    done as f64 / (now - start).as_secs_f64(),
                    (done - last_done) as f64 / (now - last_t).as_secs_f64(),
                    t.errors.load(Ordering::Relaxed),
                    t.lost.load(Ordering::Relaxed),
                    mib(rss),
                );
                (last_t, last_done) = (now, done);
            }
            peak
        });
        for th in threads {
            th.join().unwrap();
        }
        finished.store(true, Ordering::Relaxed);
        peak_rss = peak_rss.max(progress.join().unwrap());
    });
    let wall = start.elapsed();
    let rss_end = rss_kib(pid).unwrap_or(0);
    let threads_end = threads(pid);
    peak_rss = peak_rss.max(rss_end);
    let rss_warm = t.warm_rss.load(Ordering::Relaxed);
    let warm_after = t.warm_at.lock().unwrap().map(|w| (w - start).as_secs_f64());

    let load = |x: &AtomicUsize| x.load(Ordering::Relaxed);
    let (done, errors, lost, skipped) = (
        load(&t.done),
        load(&t.errors),
        load(&t.lost),
        load(&t.skipped),
    );
    let mut verdict = Vec::new();
    let view = gateway_view(&addr, (done - skipped) as u64);
    let alive = rss_kib(pid).is_some();
    drop(gw);

    let mut out = String::new();
    let _ = writeln!(out, "\n== soak summary ==");
    let _ = writeln!(
        out,
        "requests     {done} at concurrency {} over {} simulator instances in {:.1} s: {:.0} req/s (shared, noisy 2-core machine)",
        a.concurrency,
        a.instances,
        wall.as_secs_f64(),
        done as f64 / wall.as_secs_f64()
    );
    let by = |api: Api, stream: bool| load(&t.by_api[api as usize * 2 + stream as usize]);
    let _ = writeln!(
        out,
        "mix          chat {}+{} streamed, messages {}+{} streamed, responses {}+{} streamed",
        by(Api::Chat, false),
        by(Api::Chat, true),
        by(Api::Messages, false),
        by(Api::Messages, true),
        by(Api::Responses, false),
        by(Api::Responses, true),
    );
    let _ = writeln!(
        out,
        "             {} greetings (4 models), {} [[sim:chunks=2..100]] answers, {} conversation turns ({} continued their Lingma session)",
        load(&t.greetings),
        load(&t.chunked),
        load(&t.turns),
        load(&t.continued),
    );
    let _ = writeln!(out, "errors       {errors}");
    let _ = writeln!(out, "lost         {lost}");
    if skipped > 0 {
        let _ = writeln!(
            out,
            "skipped      {skipped} (later turns of failed conversations)"
        );
    }
    let growth = (rss_end as f64 / rss_warm.max(1) as f64 - 1.0) * 100.0;
    let _ = writeln!(
        out,
        "gateway RSS  {:.1} MiB at start, {:.1} MiB after the warm-up ({} requests, {:.1} s), {:.1} MiB at the end ({growth:+.1} %), peak {:.1} MiB",
        mib(rss_start),
        mib(rss_warm),
        a.warmup,
        warm_after.unwrap_or(0.0),
        mib(rss_end),
        mib(peak_rss),
    );
    let _ = writeln!(out, "gateway threads {threads_end} at the end");
    let sent = (done - skipped) as u64;
    match &view {
        Ok(v) => {
            let chats: u64 = v.by_status.values().sum();
            let _ = writeln!(
                out,
                "gateway saw  {chats} chat requests, by status {:?}; session cache hits {}, misses {}",
                v.by_status, v.cache_hits, v.cache_misses
            );
            if chats != sent {
                verdict.push(format!(
                    "the gateway counted {chats} chat requests, the soak sent {sent}"
                ));
            }
            let non_200: u64 = v
                .by_status
                .iter()
                .filter(|(k, _)| k.as_str() != "200")
                .map(|(_, n)| n)
                .sum();
            if non_200 > 0 {
                verdict.push(format!(
                    "the gateway answered {non_200} chat requests with a status other than 200"
                ));
            }
        }
        Err(e) => verdict.push(format!("no /metrics: {e}")),
    }
    if errors > 0 {
        verdict.push(format!("{errors} errors"));
    }
    if lost > 0 {
        verdict.push(format!("{lost} lost answers"));
    }
    if done != a.requests {
        verdict.push(format!("{done} of {} requests done", a.requests));
    }
    if !alive {
        verdict.push("the gateway exited".into());
    }
    if rss_warm == 0 || rss_end == 0 {
        verdict.push("RSS not measured".into());
    } else if rss_end * 10 > rss_warm * 11 {
        verdict.push(format!(
            "RSS grew {growth:+.1} % after the warm-up (limit +10 %)"
        ));
    }
    let faults = t.faults.lock().unwrap();
    if !faults.is_empty() {
        let _ = writeln!(out, "first faults:");
        for f in faults.iter() {
            let _ = writeln!(out, "  {f}");
        }
    }
    if verdict.is_empty() {
        let _ = writeln!(out, "PASS");
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        let _ = writeln!(out, "FAIL: {}", verdict.join("; "));
        let _ = writeln!(
            out,
            "gateway log and simulator work dirs kept in {}",
            dir.display()
        );
    }
    print!("{out}");
    if !verdict.is_empty() {
        std::process::exit(1);
    }
}
