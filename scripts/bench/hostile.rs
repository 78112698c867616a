//! Hostile traffic at full scale: each attack of issue 13's findings run against the
//! release gateway on its simulator for `--seconds` (default 60), while two probe threads
//! send `GET /healthz` and a keyed chat (`POST /v1/chat/completions`, not streamed) every
//! second, each on a fresh connection. Run by `scripts/hostile.sh`, whose header states
//! the bounds; exits non-zero unless every attack passed.
//!
//! Each attack gets a fresh gateway (so that its RSS figures are its own): one simulator
//! instance, an API key (attack 8: none), `malloc_tuning` as shipped, every other setting
//! at its default except where an attack says otherwise. An attack passes when
//! - every probe was answered within 1 s: `/healthz` with 200 and `"status":"ok"`, the chat
//!   with the simulator's exact answer to that probe's question (a 503 counts as answered
//!   only in the worker-exhaustion attack; no other status does);
//! - the gateway's RSS peaked (`VmHWM`; the gateway is fresh, so that is this attack's
//!   peak) at most `PEAK_MARGIN_MIB` above its RSS at the start, and was at most
//!   `AFTER_MARGIN_MIB` (plus the attack's `after_extra_mib`) above it `--settle` seconds
//!   (default 5) after the attack's connections were closed;
//! - the attack's own outcome holds (no smuggled request reached the gateway, every refusal
//!   had the right status, ...: see each attack).
//!
//! If the gateway's RSS passes `--rss-abort` MiB (default 3072) the attack is stopped
//! there, to spare the machine, and fails.

// Shared with the bench and the soak; this uses its gateway start, RSS and response parser,
// not its request writer.
#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use common::{rss_kib, start_gateway, temp_dir, Http};
use serde_json::{json, Value};

/// The API key of every gateway but attack 8's.
const KEY: &str = "sk-hostile-probe-7d41";
/// A probe slower than this fails its attack.
const PROBE_DEADLINE: Duration = Duration::from_secs(1);
/// A probe with no whole answer within this long is unanswered.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Peak RSS (`VmHWM`) at most this far above the RSS at the start. The largest legitimate
/// holder is request bodies: `max_buffered_body_bytes` (256 MiB by default) for all bodies
/// at once, plus what the handlers build from the ones admitted.
const PEAK_MARGIN_MIB: u64 = 512;
/// RSS `--settle` seconds after the attack at most this far above the RSS at the start:
/// the caches the probes and the attack filled (session cache, Responses store) and what
/// glibc keeps of the freed heap.
const AFTER_MARGIN_MIB: u64 = 64;

struct Args {
    bin: PathBuf,
    seconds: u64,
    settle: u64,
    only: Vec<String>,
    rss_abort_mib: u64,
}

const USAGE: &str = "hostile [--bin PATH] [--seconds N] [--only NAME[,NAME…]] [--settle SECS] \
                     [--rss-abort MIB]\nattacks: smuggling slow-bodies pipelining long-answer \
                     memory non-reading worker-exhaustion flood";

fn parse_args() -> Args {
    let mut a = Args {
        bin: PathBuf::from("target/release/lingma-gateway"),
        seconds: 60,
        settle: 5,
        only: Vec::new(),
        rss_abort_mib: 3072,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let v = argv.get(i + 1).cloned().unwrap_or_default();
        let num = |what: &str| -> u64 {
            v.parse()
                .unwrap_or_else(|_| panic!("{what} needs a number\n{USAGE}"))
        };
        match argv[i].as_str() {
            "--bin" => a.bin = PathBuf::from(&v),
            "--seconds" => a.seconds = num("--seconds"),
            "--settle" => a.settle = num("--settle"),
            "--rss-abort" => a.rss_abort_mib = num("--rss-abort"),
            "--only" => a.only = v.split(',').map(str::to_string).collect(),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => panic!("unknown argument {other}\n{USAGE}"),
        }
        i += 2;
    }
    for name in &a.only {
        assert!(
            ATTACKS.iter().any(|at| at.name == name),
            "no attack named {name}\n{USAGE}"
        );
    }
    assert!(a.seconds > 0, "--seconds must be positive");
    a
}

// ---------------------------------------------------------------- the attacks

/// What an attack reports: lines for the output, and what failed.
#[derive(Default)]
struct Outcome {
    lines: Vec<String>,
    failures: Vec<String>,
    /// A one-line summary for the table at the end.
    brief: String,
}

impl Outcome {
    fn line(&mut self, s: impl Into<String>) {
        self.lines.push(s.into());
    }
    fn fail(&mut self, s: impl Into<String>) {
        self.failures.push(s.into());
    }
    /// Fails with `what` unless `n` is zero.
    fn none(&mut self, n: usize, what: &str) {
        if n > 0 {
            self.fail(format!("{n} {what}"));
        }
    }
}

/// What an attack runs with.
struct Ctx<'a> {
    addr: &'a str,
    /// The gateway's API key, if it has one.
    key: Option<&'a str>,
    /// When the attack ends.
    until: Instant,
    /// Set when the attack must stop early (RSS over `--rss-abort`).
    abort: &'a AtomicBool,
    log: &'a Path,
    /// Stretches during which the one simulator instance is writing a zero-delay long
    /// answer (attack 4): it reads nothing meanwhile (see README, The simulator), so a
    /// chat probe sent then waits for it to end.
    sim_busy: &'a Mutex<Vec<(Instant, Instant)>>,
}

impl Ctx<'_> {
    fn on(&self) -> bool {
        Instant::now() < self.until && !self.abort.load(Ordering::Relaxed)
    }
    /// Sleeps `d`, or less if the attack ends first; whether it is still on.
    fn nap(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while self.on() {
            let now = Instant::now();
            if now >= end {
                return true;
            }
            thread::sleep((end - now).min(Duration::from_millis(100)));
        }
        false
    }
    fn auth(&self) -> Vec<(&'static str, String)> {
        self.key
            .map(|k| vec![("Authorization", format!("Bearer {k}"))])
            .unwrap_or_default()
    }
    /// The gateway's log so far.
    fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.log).unwrap_or_default()).into_owned()
    }
}

struct Attack {
    name: &'static str,
    about: &'static str,
    keyed: bool,
    /// `LINGMA_GATEWAY_*` settings of this attack's gateway.
    env: &'static [(&'static str, &'static str)],
    /// A probe's 503 counts as answered.
    allow_503: bool,
    /// What this attack may legitimately leave held, on top of `AFTER_MARGIN_MIB`.
    after_extra_mib: u64,
    run: fn(&Ctx) -> Outcome,
}

const ATTACKS: &[Attack] = &[
    Attack {
        name: "smuggling",
        about: "finding 1: bodies the gateway answers unread (1 MiB of padding, chunked, refused Expect: 100-continue), each ending in `GET /capabilities`",
        keyed: true,
        env: &[],
        allow_503: false,
        after_extra_mib: 0,
        run: smuggling,
    },
    Attack {
        name: "slow-bodies",
        about: "finding 2: 300 keyless and 300 keyed connections trickling a 1,000,000-byte chat body, a byte every 2 s",
        keyed: true,
        env: &[],
        allow_503: false,
        after_extra_mib: 0,
        run: slow_bodies,
    },
    Attack {
        name: "pipelining",
        about: "finding 3: one connection pipelining 3,000 `GET /nf-<15,000 bytes>` heads and never reading; four connections sending 1.8 MB heads over and over",
        keyed: true,
        env: &[],
        allow_503: false,
        after_extra_mib: 0,
        run: pipelining,
    },
    Attack {
        name: "long-answer",
        about: "finding 4: `[[sim:chunks=100000]]` streamed and read whole, then 3 chats on the same (only) instance, over and over",
        keyed: true,
        env: &[],
        allow_503: false,
        after_extra_mib: 0,
        run: long_answer,
    },
    Attack {
        name: "memory",
        about: "finding 5: chunked bodies with a 400 MB chunk-size line; Responses with 30 MB (and 7 MiB) inputs and store: true; four 29 MB bodies of 800,000 tiny messages at once",
        keyed: true,
        env: &[],
        allow_503: false,
        // The Responses store keeps up to responses_store_max_bytes (64 MiB) of the
        // stored 7 MiB inputs, by design.
        after_extra_mib: 64,
        run: memory,
    },
    Attack {
        name: "non-reading",
        about: "finding 2: 32 streams of 8 MB answers (2,000 deltas of 4 KiB) whose clients never read, each held 30 s then replaced",
        keyed: true,
        env: &[],
        allow_503: false,
        after_extra_mib: 0,
        run: non_reading,
    },
    Attack {
        name: "worker-exhaustion",
        about: "finding 2: 48 clients keeping slow streamed chats (20 deltas, 1 s apart) going on a gateway with max_workers = gateway_max_in_flight = 16",
        keyed: true,
        // gateway_max_in_flight not below max_workers: no chat ever waits in the queue
        // (which holds a worker up to gateway_queue_timeout_sec), so every request beyond
        // the 16 workers is refused at once.
        env: &[
            ("LINGMA_GATEWAY_MAX_WORKERS", "16"),
            ("LINGMA_GATEWAY_GATEWAY_MAX_IN_FLIGHT", "16"),
        ],
        allow_503: true,
        after_extra_mib: 0,
        run: worker_exhaustion,
    },
    Attack {
        name: "flood",
        about: "findings 6-8 as a flood on a keyless gateway: foreign Host and Origin (403), request lines with control bytes, NUL, bare LF and forged log lines (400)",
        keyed: false,
        env: &[],
        allow_503: false,
        after_extra_mib: 0,
        run: flood,
    },
];

// ---------------------------------------------------------------- raw HTTP

fn connect(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// A request head (and `Content-Length` for `body`, unless `headers` frame it otherwise).
fn head_bytes(
    method: &str,
    path: &str,
    addr: &str,
    headers: &[(&str, String)],
    body_len: Option<usize>,
) -> Vec<u8> {
    let mut h = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        let _ = write!(h, "{k}: {v}\r\n");
    }
    if let Some(n) = body_len {
        let _ = write!(
            h,
            "Content-Type: application/json\r\nContent-Length: {n}\r\n"
        );
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// A whole answer: status, whether it said `Connection: close`, body.
struct Answer {
    status: u16,
    close: bool,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn read_answer(h: &mut Http) -> io::Result<Answer> {
    let head = h.head()?;
    let body = if head.content_length.is_none() && !head.chunked {
        // Delimited by the close.
        let mut b = Vec::new();
        h.r.read_to_end(&mut b)?;
        b
    } else {
        h.body(&head)?
    };
    Ok(Answer {
        status: head.status,
        close: head.close,
        body,
    })
}

/// One request on a fresh connection; its whole answer.
fn exchange(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<Answer> {
    exchange_with(addr, method, path, headers, body, timeout, |_| {})
}

/// `exchange`, showing the connection to `opened` first.
fn exchange_with(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
    timeout: Duration,
    opened: impl FnOnce(&TcpStream),
) -> io::Result<Answer> {
    let s = connect(addr, timeout)?;
    opened(&s);
    let mut req = head_bytes(method, path, addr, headers, Some(body.len()));
    req.extend_from_slice(body);
    (&s).write_all(&req)?;
    let mut h = Http {
        addr: addr.to_string(),
        r: BufReader::new(s),
    };
    read_answer(&mut h)
}

/// The rest of a connection until the server closes it (`Ok`), or what ended it otherwise.
fn rest(h: &mut Http) -> (Vec<u8>, io::Result<()>) {
    let mut out = Vec::new();
    let r = h.r.read_to_end(&mut out).map(drop);
    (out, r)
}

fn reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A small receive buffer on `s`: a client that does not read makes the gateway's writes
/// block after a few kilobytes, not after the megabytes Linux would buffer on loopback.
fn small_receive_buffer(s: &TcpStream) {
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(s, 4096);
}

fn chat_body(question: &str, stream: bool) -> Vec<u8> {
    json!({"model": "auto", "stream": stream, "messages": [{"role": "user", "content": question}]})
        .to_string()
        .into_bytes()
}

/// The simulator's answer to `question` from model `auto` (tests/gateway/harness.rs,
/// `default_answer`; questions here are one line of under 80 characters).
fn greeting(question: &str) -> String {
    format!("Hello from the Lingma simulator (Auto). You said: {question}")
}

fn chunks_answer(n: usize) -> String {
    (1..=n).map(|i| format!("c{i} ")).collect()
}

/// The text of a chat completion.
fn chat_text(a: &Answer) -> Result<String, String> {
    if a.status != 200 {
        return Err(format!("HTTP {}: {}", a.status, cut(&a.text())));
    }
    let v: Value = serde_json::from_slice(&a.body).map_err(|e| format!("bad JSON: {e}"))?;
    v["choices"][0]["message"]["content"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no content: {}", cut(&v.to_string())))
}

/// The text of a streamed chat completion, which must end with `finish_reason: stop` and
/// `data: [DONE]`.
fn chat_stream_text(a: &Answer) -> Result<String, String> {
    if a.status != 200 {
        return Err(format!("HTTP {}: {}", a.status, cut(&a.text())));
    }
    let body = std::str::from_utf8(&a.body).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut text = String::new();
    let mut stop = false;
    for line in body.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            return if stop {
                Ok(text)
            } else {
                Err("[DONE] without finish_reason stop".into())
            };
        }
        let v: Value =
            serde_json::from_str(data).map_err(|e| format!("bad event ({e}): {}", cut(data)))?;
        if v.get("error").is_some() {
            return Err(format!("error event: {}", cut(data)));
        }
        let c = &v["choices"][0];
        if let Some(t) = c["delta"]["content"].as_str() {
            text.push_str(t);
        }
        if c["finish_reason"] == "stop" {
            stop = true;
        }
    }
    Err(format!("no [DONE] after {} bytes", body.len()))
}

fn cut(s: &str) -> String {
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Counts by a key, printed `k ×n, …`.
#[derive(Default)]
struct Tally(Mutex<BTreeMap<String, usize>>);

impl Tally {
    fn add(&self, k: impl Into<String>) {
        *self.0.lock().unwrap().entry(k.into()).or_insert(0) += 1;
    }
    fn get(&self, k: &str) -> usize {
        self.0.lock().unwrap().get(k).copied().unwrap_or(0)
    }
    fn total(&self) -> usize {
        self.0.lock().unwrap().values().sum()
    }
    /// The total of every key but `keep`.
    fn others(&self, keep: &[&str]) -> usize {
        let m = self.0.lock().unwrap();
        m.iter()
            .filter(|(k, _)| !keep.contains(&k.as_str()))
            .map(|(_, n)| n)
            .sum()
    }
    fn show(&self) -> String {
        let m = self.0.lock().unwrap();
        if m.is_empty() {
            return "none".into();
        }
        m.iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Remembers the first few distinct problems of an attack.
#[derive(Default)]
struct Notes(Mutex<Vec<String>>);

impl Notes {
    fn note(&self, s: String) {
        let mut v = self.0.lock().unwrap();
        if v.len() < 5 && !v.contains(&s) {
            v.push(s);
        }
    }
    fn into_lines(self, out: &mut Outcome) {
        for n in self.0.into_inner().unwrap() {
            out.line(format!("  e.g. {n}"));
        }
    }
}

fn count(a: &AtomicUsize) -> usize {
    a.load(Ordering::Relaxed)
}

fn bump(a: &AtomicUsize) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// How many access lines of the gateway's log are for `method path`.
fn access_lines(log: &str, method: &str, path: &str) -> usize {
    let needle = format!(" {method} {path} ");
    log.lines()
        .filter(|l| l.contains("access: ") && l.contains(&needle))
        .count()
}

// ---------------------------------------------------------------- 1. smuggling

/// Finding 1. Eight connections at a time send, in turn: `Content-Length` bodies of
/// exactly 1 MiB (padding, then a whole `GET /capabilities` request), the same as one
/// chunk of a chunked body, and `Expect: 100-continue` heads whose body (sent after the
/// gateway's refusal) is that request; each to `POST /healthz` (405), a keyless chat (401)
/// or an unknown path (404), none of which reads a body. Must hold: exactly one answer per
/// connection, saying `Connection: close`, then the close; and no `GET /capabilities` in
/// the gateway's access log (the probes never ask for it).
fn smuggling(c: &Ctx) -> Outcome {
    const THREADS: usize = 8;
    const TARGETS: [(&str, u16); 3] = [
        ("/healthz", 405),
        ("/v1/chat/completions", 401),
        ("/nf-smuggle", 404),
    ];
    const VARIANTS: [&str; 3] = ["content-length", "chunked", "expect"];
    let smuggled = format!("GET /capabilities HTTP/1.1\r\nHost: {}\r\n\r\n", c.addr);
    let mut body = vec![b'x'; (1 << 20) - smuggled.len()];
    body.extend_from_slice(smuggled.as_bytes());
    let mut chunked = format!("{:x}\r\n", body.len()).into_bytes();
    chunked.extend_from_slice(&body);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");

    let tries: [AtomicUsize; 3] = Default::default();
    let statuses = Tally::default();
    let wrong_status = AtomicUsize::new(0);
    let no_close = AtomicUsize::new(0);
    let second = AtomicUsize::new(0);
    let not_closed = AtomicUsize::new(0);
    let no_answer = AtomicUsize::new(0);
    let continues = AtomicUsize::new(0);
    let notes = Notes::default();
    thread::scope(|s| {
        for t in 0..THREADS {
            let (body, chunked, smuggled) = (&body, &chunked, &smuggled);
            let (tries, statuses, notes) = (&tries, &statuses, &notes);
            let (wrong_status, no_close, second, not_closed, no_answer, continues) = (
                &wrong_status,
                &no_close,
                &second,
                &not_closed,
                &no_answer,
                &continues,
            );
            s.spawn(move || {
                let mut i = t;
                while c.on() {
                    let variant = i % 3;
                    let (path, want) = TARGETS[(i / 3) % 3];
                    i += 1;
                    bump(&tries[variant]);
                    let r = smuggle_once(c.addr, variant, path, body, chunked, smuggled);
                    match r {
                        Ok(seen) => {
                            statuses.add(format!("{} {path} {}", VARIANTS[variant], seen.status));
                            if seen.status == 100 {
                                bump(continues);
                            }
                            if seen.status != want {
                                bump(wrong_status);
                            }
                            if !seen.close {
                                bump(no_close);
                                notes.note(format!(
                                    "{} {path}: {} without Connection: close",
                                    VARIANTS[variant], seen.status
                                ));
                            }
                            if !seen.extra.is_empty() {
                                bump(second);
                                notes.note(format!(
                                    "{} {path}: after the {} answer: {:?}",
                                    VARIANTS[variant],
                                    seen.status,
                                    cut(&String::from_utf8_lossy(&seen.extra))
                                ));
                            }
                            if let Some(e) = seen.end {
                                bump(not_closed);
                                notes.note(format!(
                                    "{} {path}: connection not closed: {e}",
                                    VARIANTS[variant]
                                ));
                            }
                        }
                        Err(e) => {
                            bump(no_answer);
                            notes.note(format!("{} {path}: no answer: {e}", VARIANTS[variant]));
                        }
                    }
                    thread::sleep(Duration::from_millis(20));
                }
            });
        }
    });
    let served = access_lines(&c.log_text(), "GET", "/capabilities");
    let counted = stats(c)["requests"]["by_route"]["/capabilities"]
        .as_u64()
        .unwrap_or(0) as usize;
    let mut out = Outcome::default();
    out.line(format!(
        "attack: {} connections: {} with a 1 MiB Content-Length body, {} with it chunked, {} after Expect: 100-continue",
        tries.iter().map(count).sum::<usize>(),
        count(&tries[0]),
        count(&tries[1]),
        count(&tries[2])
    ));
    out.line(format!("  answers: {}", statuses.show()));
    out.line(format!(
        "  smuggled `GET /capabilities` served: {served} in the gateway's access log, {counted} in /internal/stats; second answers on a connection: {}; answers without Connection: close: {}; connections left open: {}; no answer: {}; 100 Continue sent: {}",
        count(&second), count(&no_close), count(&not_closed), count(&no_answer), count(&continues)
    ));
    notes.into_lines(&mut out);
    out.none(served, "smuggled requests served (access log)");
    out.none(counted, "smuggled requests served (/internal/stats)");
    out.none(count(&second), "second answers on a connection");
    out.none(count(&no_close), "answers without Connection: close");
    out.none(count(&not_closed), "connections left open");
    out.none(count(&no_answer), "connections without an answer");
    out.none(count(&wrong_status), "answers with an unexpected status");
    out.brief = format!(
        "{} bodies, {served} smuggled",
        tries.iter().map(count).sum::<usize>()
    );
    out
}

/// What one smuggling connection saw: its first answer, what came after it, and how the
/// connection ended (`None`: the gateway closed it).
struct Seen {
    status: u16,
    close: bool,
    extra: Vec<u8>,
    end: Option<String>,
}

fn smuggle_once(
    addr: &str,
    variant: usize,
    path: &str,
    body: &[u8],
    chunked: &[u8],
    smuggled: &str,
) -> Result<Seen, String> {
    let s = connect(addr, Duration::from_secs(10)).map_err(|e| format!("connect: {e}"))?;
    let mut h = Http {
        addr: addr.to_string(),
        r: BufReader::new(s.try_clone().map_err(|e| e.to_string())?),
    };
    let mut w = &s;
    let mut first = match variant {
        0 | 1 => {
            let (framing, payload) = if variant == 0 {
                (format!("Content-Length: {}", body.len()), body)
            } else {
                ("Transfer-Encoding: chunked".to_string(), chunked)
            };
            let mut req = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{framing}\r\n\r\n").into_bytes();
            req.extend_from_slice(payload);
            // The gateway answers after the head and reads the rest only to drop it: a
            // failed write here is a reset before the client could read its answer.
            w.write_all(&req)
                .map_err(|e| format!("sending the body: {e}"))?;
            let _ = s.shutdown(Shutdown::Write);
            read_answer(&mut h).map_err(|e| format!("reading the answer: {e}"))?
        }
        _ => {
            let req = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n", smuggled.len());
            w.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
            read_answer(&mut h).map_err(|e| format!("reading the answer: {e}"))?
        }
    };
    let mut status = first.status;
    if variant == 2 {
        if first.status == 100 {
            // Told to go on: the body is then a body, and the real answer follows it.
            let _ = w.write_all(smuggled.as_bytes());
            first = read_answer(&mut h).map_err(|e| format!("after 100: {e}"))?;
            status = 100;
        } else {
            // Refused: a client may still send the body; it must not become a request.
            let _ = w.write_all(smuggled.as_bytes());
        }
        let _ = s.shutdown(Shutdown::Write);
    }
    let (extra, end) = rest(&mut h);
    Ok(Seen {
        status,
        close: first.close,
        extra,
        end: match end {
            Ok(()) => None,
            Err(e) if reset(&e) => None,
            Err(e) => Some(e.to_string()),
        },
    })
}

// ---------------------------------------------------------------- 2. slow bodies

/// Finding 2, slow bodies. One thread keeps 300 connections that sent a keyless chat head
/// with `Content-Length: 1000000` and 300 that sent the same with the key, each then
/// sending one byte of its body every 2 s; a connection the gateway closes is replaced.
/// Must hold: a keyless one gets 401 (with `Connection: close`) without its body being
/// waited for; a keyed one gets nothing but, at `client_body_timeout_sec` (60 s), 408.
fn slow_bodies(c: &Ctx) -> Outcome {
    const EACH: usize = 300;
    const PERIOD: Duration = Duration::from_secs(2);
    const TICK: Duration = Duration::from_millis(20);
    struct Slow {
        s: TcpStream,
        opened: Instant,
        got: Vec<u8>,
    }
    let open = |keyed: bool| -> io::Result<Slow> {
        let s = connect(c.addr, Duration::from_secs(5))?;
        let auth = if keyed { c.auth() } else { Vec::new() };
        let mut req = head_bytes(
            "POST",
            "/v1/chat/completions",
            c.addr,
            &auth,
            Some(1_000_000),
        );
        req.push(b'{');
        (&s).write_all(&req)?;
        s.set_nonblocking(true)?;
        Ok(Slow {
            s,
            opened: Instant::now(),
            got: Vec::new(),
        })
    };
    let answers = [Tally::default(), Tally::default()];
    let mut opened = [0usize; 2];
    let mut open_errors = 0usize;
    let mut lifetimes = [Duration::ZERO; 2];
    let mut closed = [0usize; 2];
    let notes = Notes::default();
    let mut conns: Vec<Option<Slow>> = Vec::new();
    for i in 0..2 * EACH {
        let keyed = i % 2 == 1;
        opened[keyed as usize] += 1;
        match open(keyed) {
            Ok(s) => conns.push(Some(s)),
            Err(e) => {
                open_errors += 1;
                notes.note(format!("connect: {e}"));
                conns.push(None);
            }
        }
    }
    let held_at_once = conns.iter().flatten().count();
    let per_tick = conns
        .len()
        .div_ceil((PERIOD.as_millis() / TICK.as_millis()) as usize);
    let mut next = 0;
    let mut buf = [0u8; 4096];
    while c.nap(TICK) {
        for _ in 0..per_tick {
            let i = next;
            next = (next + 1) % conns.len();
            let keyed = i % 2 == 1;
            let mut gone = conns[i].is_none();
            if let Some(conn) = conns[i].as_mut() {
                loop {
                    match (&conn.s).read(&mut buf) {
                        Ok(0) => {
                            gone = true;
                            break;
                        }
                        Ok(n) => conn.got.extend_from_slice(&buf[..n]),
                        Err(e) if timed_out(&e) => break,
                        Err(_) => {
                            gone = true;
                            break;
                        }
                    }
                }
                if !gone && (&conn.s).write_all(b" ").is_err() {
                    gone = true;
                }
            }
            if gone {
                if let Some(conn) = conns[i].take() {
                    closed[keyed as usize] += 1;
                    lifetimes[keyed as usize] += conn.opened.elapsed();
                    let text = String::from_utf8_lossy(&conn.got);
                    let status = text
                        .strip_prefix("HTTP/1.1 ")
                        .and_then(|t| t.get(..3))
                        .unwrap_or("closed without an answer")
                        .to_string();
                    if status.len() == 3
                        && !text
                            .to_ascii_lowercase()
                            .contains("\r\nconnection: close\r\n")
                    {
                        notes.note(format!("{status} without Connection: close"));
                        answers[keyed as usize].add(format!("{status} (no Connection: close)"));
                    } else {
                        answers[keyed as usize].add(status);
                    }
                }
                opened[keyed as usize] += 1;
                match open(keyed) {
                    Ok(s) => conns[i] = Some(s),
                    Err(e) => {
                        open_errors += 1;
                        notes.note(format!("connect: {e}"));
                    }
                }
            }
        }
    }
    // Answers that arrived on connections still open at the end. A keyed connection whose
    // body deadline (client_body_timeout_sec, 60 s from its head) is at most 10 s away is
    // given until 5 s past it for its 408: with the default --seconds, the first 300 are.
    let mut keyed_408_after = Vec::new();
    let aborted = c.abort.load(Ordering::Relaxed);
    for (i, conn) in conns.iter_mut().enumerate() {
        if let Some(conn) = conn {
            let due = conn.opened + Duration::from_secs(65);
            let wait = i % 2 == 1 && !aborted && due <= Instant::now() + Duration::from_secs(15);
            if wait {
                let _ = conn.s.set_nonblocking(false);
            }
            loop {
                if wait {
                    let left = due.saturating_duration_since(Instant::now());
                    let _ = conn
                        .s
                        .set_read_timeout(Some(left.max(Duration::from_millis(1))));
                }
                match (&conn.s).read(&mut buf) {
                    Ok(n) if n > 0 => conn.got.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            let text = String::from_utf8_lossy(&conn.got);
            if let Some(t) = text.strip_prefix("HTTP/1.1 ") {
                let status = t.get(..3).unwrap_or("?");
                if wait {
                    if text
                        .to_ascii_lowercase()
                        .contains("\r\nconnection: close\r\n")
                    {
                        answers[1].add(status);
                    } else {
                        answers[1].add(format!("{status} (no Connection: close)"));
                    }
                    keyed_408_after.push(conn.opened.elapsed());
                } else {
                    answers[i % 2].add(format!("{status} (still open)"));
                }
            }
        }
    }
    drop(conns);
    let mut out = Outcome::default();
    out.line(format!(
        "attack: {held_at_once} connections held at once; keyless: {} opened, answers {}; keyed: {} opened, answers {}; connect errors {open_errors}",
        opened[0],
        answers[0].show(),
        opened[1],
        answers[1].show()
    ));
    out.line(format!(
        "  keyless connections lived {:.1} s on average (401 at once, then the gateway's lingering close of at most 5 s); keyed ones {}",
        lifetimes[0].as_secs_f64() / closed[0].max(1) as f64,
        if !keyed_408_after.is_empty() {
            format!(
                "were answered at their body deadline: {} within {:.1} s of their head (client_body_timeout_sec is 60 s)",
                keyed_408_after.len(),
                keyed_408_after.iter().max().unwrap().as_secs_f64()
            )
        } else if closed[1] == 0 {
            "were all still open at the end (client_body_timeout_sec is 60 s)".to_string()
        } else {
            format!("that closed lived {:.1} s on average", lifetimes[1].as_secs_f64() / closed[1] as f64)
        }
    ));
    notes.into_lines(&mut out);
    out.none(
        answers[0].others(&["401", "401 (still open)"]),
        "keyless connections not answered 401 with Connection: close",
    );
    out.none(
        answers[1].others(&["408", "408 (still open)"]),
        "keyed connections answered other than 408 with Connection: close",
    );
    out.none(open_errors, "connections the attacker could not open");
    out.brief = format!(
        "{held_at_once} trickling; {} × 401, {} × 408",
        answers[0].get("401") + answers[0].get("401 (still open)"),
        answers[1].get("408") + answers[1].get("408 (still open)")
    );
    out
}

// ---------------------------------------------------------------- 3. pipelining

/// Finding 3. One connection writes 3,000 pipelined `GET /nf-<15,000 bytes>` heads (45 MB)
/// and never reads (with a 4 KiB receive buffer, so that the gateway's answers back up at
/// once); when the gateway closes it, the next such connection starts. Four more
/// connections each send a 1.8 MB head (120 fields of 15,000 bytes) over and over, a new
/// connection each time. Must hold: the pipeliner costs the gateway nothing but its
/// socket (the probes are answered, RSS stays flat); every big head gets 431.
fn pipelining(c: &Ctx) -> Outcome {
    const HEADS: usize = 3000;
    let one = format!(
        "GET /nf-{} HTTP/1.1\r\nHost: {}\r\n\r\n",
        "a".repeat(15_000),
        c.addr
    );
    let all = one.repeat(HEADS).into_bytes();
    let mut big = format!("GET /big-head HTTP/1.1\r\nHost: {}\r\n", c.addr);
    for i in 0..120 {
        let _ = write!(big, "X-Pad-{i}: {}\r\n", "b".repeat(15_000));
    }
    big.push_str("\r\n");
    let big = big.into_bytes();

    let cycles = Mutex::new(Vec::<String>::new());
    let taken_total = AtomicUsize::new(0);
    let pipe_errors = Notes::default();
    let big_answers = Tally::default();
    let notes = Notes::default();
    thread::scope(|s| {
        s.spawn(|| {
            while c.on() {
                let started = Instant::now();
                let conn = match connect(c.addr, Duration::from_millis(500)) {
                    Ok(s) => s,
                    Err(e) => {
                        pipe_errors.note(format!("connect: {e}"));
                        c.nap(Duration::from_secs(1));
                        continue;
                    }
                };
                small_receive_buffer(&conn);
                let mut written = 0;
                let end = loop {
                    if !c.on() {
                        break "the attack ended".to_string();
                    }
                    if written == all.len() {
                        // Every head taken (the gateway answered all 3,000 into the
                        // buffers): hold the connection a while, unread, then the next.
                        if started.elapsed() > Duration::from_secs(20) {
                            break "all heads written; held 20 s".to_string();
                        }
                        thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    let piece = &all[written..(written + 65_536).min(all.len())];
                    match (&conn).write(piece) {
                        Ok(n) => written += n,
                        Err(e) if timed_out(&e) => {}
                        Err(e) => break format!("the gateway closed it ({e})"),
                    }
                };
                let taken = written / one.len();
                taken_total.fetch_add(taken, Ordering::Relaxed);
                cycles.lock().unwrap().push(format!(
                    "{taken} heads written in {:.1} s, then {end}",
                    started.elapsed().as_secs_f64()
                ));
            }
        });
        for _ in 0..4 {
            let (big, big_answers, notes) = (&big, &big_answers, &notes);
            s.spawn(move || {
                while c.on() {
                    let r = (|| -> io::Result<Answer> {
                        let conn = connect(c.addr, Duration::from_secs(10))?;
                        let mut h = Http {
                            addr: c.addr.to_string(),
                            r: BufReader::new(conn.try_clone()?),
                        };
                        // The gateway refuses the head after 64 KiB and drops the rest.
                        let sent = (&conn).write_all(big);
                        let _ = conn.shutdown(Shutdown::Write);
                        let a = read_answer(&mut h);
                        if let (Err(e), Err(_)) = (&sent, &a) {
                            return Err(io::Error::new(e.kind(), format!("sending: {e}")));
                        }
                        let a = a?;
                        let (extra, _) = rest(&mut h);
                        if !extra.is_empty() {
                            notes.note(format!(
                                "bytes after the {} answer: {}",
                                a.status,
                                extra.len()
                            ));
                        }
                        Ok(a)
                    })();
                    match r {
                        Ok(a) if a.close => big_answers.add(a.status.to_string()),
                        Ok(a) => big_answers.add(format!("{} (no Connection: close)", a.status)),
                        Err(e) => {
                            notes.note(format!("no answer: {e}"));
                            big_answers.add("no answer");
                        }
                    }
                    thread::sleep(Duration::from_millis(20));
                }
            });
        }
    });
    let cycles = cycles.into_inner().unwrap();
    let mut out = Outcome::default();
    out.line(format!(
        "attack: pipeliner: {} connections, {} heads written in all (into the gateway and the sockets' buffers)",
        cycles.len(),
        count(&taken_total)
    ));
    for (i, cy) in cycles.iter().enumerate() {
        out.line(format!("  connection {}: {cy}", i + 1));
    }
    pipe_errors.into_lines(&mut out);
    out.line(format!(
        "  1.8 MB heads: {} sent, answers {}",
        big_answers.total(),
        big_answers.show()
    ));
    notes.into_lines(&mut out);
    out.none(
        big_answers.others(&["431"]),
        "1.8 MB heads not answered 431 with Connection: close",
    );
    if big_answers.get("431") == 0 {
        out.fail("no 1.8 MB head was answered");
    }
    out.brief = format!(
        "{} pipelined heads written; {} × 431",
        count(&taken_total),
        big_answers.get("431")
    );
    out
}

// ---------------------------------------------------------------- 4. a long answer

/// Finding 4, on a gateway with one instance. One client streams `[[sim:chunks=100000]]`
/// (24 MB of events), reads it whole and checks every delta, then sends three plain chats
/// and checks their answers; over and over. Must hold: every long answer streams to the
/// end, every chat after it is answered (the instance is not stuck).
///
/// The simulator writes a zero-delay turn on its connection's reader thread, so it reads
/// the probe's chat only once the long answer is written: a chat probe sent during a long
/// answer gets its 1 s from the end of that answer (the report shows both).
fn long_answer(c: &Ctx) -> Outcome {
    const CHUNKS: usize = 100_000;
    let want = chunks_answer(CHUNKS);
    let mut streams = 0;
    let mut whole = 0;
    let mut longest = Duration::ZERO;
    let mut chats = 0;
    let mut chats_ok = 0;
    let notes = Notes::default();
    let mut n = 0;
    while c.on() {
        n += 1;
        streams += 1;
        let start = Instant::now();
        let q = format!("long answer {n} [[sim:chunks={CHUNKS}]]");
        let r = exchange(
            c.addr,
            "POST",
            "/v1/chat/completions",
            &c.auth(),
            &chat_body(&q, true),
            Duration::from_secs(60),
        );
        let end = Instant::now();
        c.sim_busy.lock().unwrap().push((start, end));
        match r
            .map_err(|e| e.to_string())
            .and_then(|a| chat_stream_text(&a))
        {
            Ok(t) if t == want => {
                whole += 1;
                longest = longest.max(end - start);
            }
            Ok(t) => notes.note(format!(
                "long answer {n}: {} bytes of text, not c1 … c{CHUNKS}",
                t.len()
            )),
            Err(e) => notes.note(format!("long answer {n}: {e}")),
        }
        for k in 1..=3 {
            if !c.on() {
                break;
            }
            chats += 1;
            let q = format!("after long answer {n}, chat {k}");
            let r = exchange(
                c.addr,
                "POST",
                "/v1/chat/completions",
                &c.auth(),
                &chat_body(&q, false),
                Duration::from_secs(30),
            );
            match r.map_err(|e| e.to_string()).and_then(|a| chat_text(&a)) {
                Ok(t) if t == greeting(&q) => chats_ok += 1,
                Ok(t) => notes.note(format!("{q}: {}", cut(&t))),
                Err(e) => notes.note(format!("{q}: {e}")),
            }
        }
    }
    let mut out = Outcome::default();
    out.line(format!(
        "attack: {streams} long answers streamed ({whole} whole, each 100,000 deltas; the longest took {:.1} s), {chats} chats after them ({chats_ok} answered right)",
        longest.as_secs_f64()
    ));
    notes.into_lines(&mut out);
    // The last stream may have been cut by the end of the attack only if it was still
    // running then; it was not: each request runs to its end.
    out.none(streams - whole, "long answers not streamed whole");
    out.none(
        chats - chats_ok,
        "chats after a long answer not answered right",
    );
    out.brief = format!("{whole}/{streams} long answers whole, {chats_ok}/{chats} chats after");
    out
}

// ---------------------------------------------------------------- 5. memory

/// Finding 5, four loads at once. (a) A keyed chunked chat whose chunk-size line is 400 MB
/// of `0`: the gateway must refuse it (400) after a bounded line, not buffer it. (b)
/// Responses with `store: true`: 30 MB inputs (over `max_prompt_bytes`: 400) alternating
/// with 7 MiB ones (answered and stored; the store is bounded by
/// `responses_store_max_bytes`, 64 MiB). (c) Four threads each sending 29 MB bodies of
/// 800,000 one-word messages, over the three chat APIs in turn (413, refused before
/// parsing).
fn memory(c: &Ctx) -> Outcome {
    let size_line = Tally::default();
    let size_line_sent = AtomicU64::new(0);
    let responses = Tally::default();
    let tiny = Tally::default();
    let notes = Notes::default();
    let input_30 = "x".repeat(30_000_000);
    let input_7 = "y".repeat(7 << 20);
    let tiny_bodies: Vec<(&str, Vec<u8>)> =
        ["/v1/chat/completions", "/v1/messages", "/v1/responses"]
            .into_iter()
            .map(|path| {
                let list = vec![r#"{"role":"user","content":"hello"}"#; 800_000].join(",");
                let b = match path {
                    "/v1/messages" => {
                        format!(r#"{{"model":"auto","max_tokens":64,"messages":[{list}]}}"#)
                    }
                    "/v1/responses" => format!(r#"{{"model":"auto","input":[{list}]}}"#),
                    _ => format!(r#"{{"model":"auto","messages":[{list}]}}"#),
                };
                (path, b.into_bytes())
            })
            .collect();
    thread::scope(|s| {
        // (a) the chunk-size line.
        s.spawn(|| {
            let zeros = vec![b'0'; 65_536];
            while c.on() {
                let r = (|| -> io::Result<(String, u64)> {
                    let conn = connect(c.addr, Duration::from_secs(5))?;
                    let mut head =
                        head_bytes("POST", "/v1/chat/completions", c.addr, &c.auth(), None);
                    head.truncate(head.len() - 2);
                    head.extend_from_slice(
                        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
                    );
                    (&conn).write_all(&head)?;
                    conn.set_read_timeout(Some(Duration::from_millis(1)))?;
                    let mut sent = 0u64;
                    let mut got = Vec::new();
                    let mut buf = [0u8; 4096];
                    while sent < 400_000_000 && c.on() {
                        if let Err(e) = (&conn).write_all(&zeros) {
                            // Closed after its answer: read what it said.
                            conn.set_read_timeout(Some(Duration::from_secs(2)))?;
                            let _ = (&conn).read_to_end(&mut got);
                            if got.is_empty() {
                                return Err(e);
                            }
                            break;
                        }
                        sent += zeros.len() as u64;
                        match (&conn).read(&mut buf) {
                            Ok(n) if n > 0 => {
                                got.extend_from_slice(&buf[..n]);
                                break;
                            }
                            _ => {}
                        }
                    }
                    let text = String::from_utf8_lossy(&got);
                    let status = text
                        .strip_prefix("HTTP/1.1 ")
                        .and_then(|t| t.get(..3))
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("no answer after {sent} bytes"));
                    Ok((status, sent))
                })();
                match r {
                    Ok((status, sent)) => {
                        size_line.add(status);
                        size_line_sent.fetch_max(sent, Ordering::Relaxed);
                    }
                    Err(e) => {
                        notes.note(format!("chunk-size line: {e}"));
                        size_line.add("error");
                    }
                }
                thread::sleep(Duration::from_millis(200));
            }
        });
        // (b) Responses with big inputs, stored.
        s.spawn(|| {
            let mut n = 0;
            while c.on() {
                n += 1;
                let (what, input) = if n % 2 == 1 { ("30 MB", &input_30) } else { ("7 MiB", &input_7) };
                let body = json!({"model": "auto", "store": true, "input": format!("store {n} [[sim:turn]] {input}")});
                let body = body.to_string().into_bytes();
                match exchange(c.addr, "POST", "/v1/responses", &c.auth(), &body, Duration::from_secs(60)) {
                    Ok(a) => {
                        if !matches!((what, a.status), ("30 MB", 400) | ("7 MiB", 200)) {
                            notes.note(format!("responses {what}: HTTP {} {}", a.status, cut(&a.text())));
                        }
                        responses.add(format!("{what} {}", a.status));
                    }
                    Err(e) => {
                        notes.note(format!("responses {what}: {e}"));
                        responses.add(format!("{what} error"));
                    }
                }
                thread::sleep(Duration::from_millis(100));
            }
        });
        // (c) four at once: 800,000 tiny messages.
        for t in 0..4 {
            let (tiny_bodies, tiny, notes) = (&tiny_bodies, &tiny, &notes);
            s.spawn(move || {
                let mut i = t;
                while c.on() {
                    let (path, body) = &tiny_bodies[i % 3];
                    i += 1;
                    match exchange(
                        c.addr,
                        "POST",
                        path,
                        &c.auth(),
                        body,
                        Duration::from_secs(60),
                    ) {
                        Ok(a) => {
                            if a.status != 413 {
                                notes.note(format!(
                                    "{path} 800,000 messages: HTTP {} {}",
                                    a.status,
                                    cut(&a.text())
                                ));
                            }
                            tiny.add(a.status.to_string());
                        }
                        Err(e) => {
                            notes.note(format!("{path} 800,000 messages: {e}"));
                            tiny.add("error");
                        }
                    }
                    thread::sleep(Duration::from_millis(500));
                }
            });
        }
    });
    let stored = stats_responses_stored(c);
    let mut out = Outcome::default();
    out.line(format!(
        "attack: 400 MB chunk-size lines: {} tried, answers {} (at most {} KiB sent before the answer)",
        size_line.total(),
        size_line.show(),
        size_line_sent.load(Ordering::Relaxed) / 1024
    ));
    out.line(format!(
        "  Responses with store: true: {} sent, answers {}; responses stored at the end: {stored}",
        responses.total(),
        responses.show()
    ));
    out.line(format!(
        "  29 MB bodies of 800,000 messages (four at once): {} sent, answers {}",
        tiny.total(),
        tiny.show()
    ));
    notes.into_lines(&mut out);
    out.none(
        size_line.others(&["400"]),
        "chunk-size-line attacks not answered 400",
    );
    out.none(
        responses.others(&["30 MB 400", "7 MiB 200"]),
        "Responses answered otherwise than 30 MB: 400, 7 MiB: 200",
    );
    out.none(
        tiny.others(&["413"]),
        "800,000-message bodies not answered 413",
    );
    out.brief = format!(
        "{} size lines, {} Responses, {} × 29 MB",
        size_line.total(),
        responses.total(),
        tiny.total()
    );
    out
}

/// `responses_stored` of `/internal/stats` (the admin credential is the API key here).
fn stats_responses_stored(c: &Ctx) -> String {
    stats(c)["responses_store"]["entries"].to_string()
}

/// `GET /internal/stats` (the admin credential is the API key here), `null` if it failed.
fn stats(c: &Ctx) -> Value {
    let r = exchange(
        c.addr,
        "GET",
        "/internal/stats",
        &c.auth(),
        b"",
        Duration::from_secs(10),
    );
    r.ok()
        .filter(|a| a.status == 200)
        .and_then(|a| serde_json::from_slice(&a.body).ok())
        .unwrap_or(Value::Null)
}

// ---------------------------------------------------------------- 6. non-reading clients

/// Finding 2, clients that stop reading. 32 connections at a time each ask for a streamed
/// `[[sim:chunks=2000]][[sim:pad=4096]][[sim:first=1]]` answer (8 MB of text as fast as the
/// simulator writes it, more than the socket buffers take; `first=1` makes it write from a
/// thread of its own, so that the probes' chats are not queued behind the answer on its
/// connection) and never read, with a 4 KiB
/// receive buffer; each is held 30 s, then closed and replaced. Must hold: the gateway
/// gives up each held stream by itself, `client_send_timeout_sec` (15 s) after a write to
/// it stopped making progress: its log says so for that request (`X-Request-Id`), and the
/// request's access line (499) was written before the client closed.
fn non_reading(c: &Ctx) -> Outcome {
    const AT_ONCE: usize = 32;
    const HOLD: Duration = Duration::from_secs(30);
    let opened = AtomicUsize::new(0);
    let held = Mutex::new(Vec::<String>::new());
    let notes = Notes::default();
    thread::scope(|s| {
        for t in 0..AT_ONCE {
            let (opened, held, notes) = (&opened, &held, &notes);
            s.spawn(move || {
                // Spread the starts over the first 2 s.
                c.nap(Duration::from_millis(60 * t as u64));
                let mut n = 0;
                while c.on() {
                    n += 1;
                    let id = format!("nonreading-{t}-{n}");
                    let q = format!(
                        "never read {t}.{n} [[sim:chunks=2000]][[sim:pad=4096]][[sim:first=1]]"
                    );
                    let conn = match connect(c.addr, Duration::from_secs(5)) {
                        Ok(s) => s,
                        Err(e) => {
                            notes.note(format!("connect: {e}"));
                            c.nap(Duration::from_secs(1));
                            continue;
                        }
                    };
                    small_receive_buffer(&conn);
                    let body = chat_body(&q, true);
                    let mut headers = c.auth();
                    headers.push(("X-Request-Id", id.clone()));
                    let mut req = head_bytes(
                        "POST",
                        "/v1/chat/completions",
                        c.addr,
                        &headers,
                        Some(body.len()),
                    );
                    req.extend_from_slice(&body);
                    if let Err(e) = (&conn).write_all(&req) {
                        notes.note(format!("sending: {e}"));
                        continue;
                    }
                    bump(opened);
                    if c.nap(HOLD) {
                        held.lock().unwrap().push(id);
                    }
                }
            });
        }
    });
    let held = held.into_inner().unwrap();
    let log = c.log_text();
    // Per request id: whether the gateway said it gave up, and the access line's status
    // and duration.
    let mut gave_up = std::collections::HashSet::new();
    let mut ended = BTreeMap::new();
    for l in log.lines() {
        if let Some((_, rest)) = l.split_once("lingma_gateway::http::stream: ") {
            // Cut at the send deadline, or stopped when more of its answer waited than a
            // chat may hold (`upstream::mailbox`).
            if rest.contains(
                "client went away mid-stream (the client did not read the response in time)",
            ) || rest.contains("the client read the answer so much slower than Lingma wrote it")
            {
                gave_up.insert(rest.split_whitespace().next().unwrap_or("").to_string());
            }
        } else if let Some((_, rest)) = l.split_once("access: ") {
            let f: Vec<&str> = rest.split_whitespace().collect();
            if f.len() > 4 && f[0].starts_with("nonreading-") {
                let ms: u64 = f[4].trim_end_matches("ms").parse().unwrap_or(u64::MAX);
                ended.insert(f[0].to_string(), (f[3].to_string(), ms));
            }
        }
    }
    let mut ms = Vec::new();
    let mut not_given_up = 0;
    for id in &held {
        match ended.get(id) {
            Some((status, took)) if gave_up.contains(id) && *took < HOLD.as_millis() as u64 => {
                ms.push(*took)
            }
            other => {
                not_given_up += 1;
                let end = match other {
                    Some((status, took)) => format!("ended {status} after {took} ms"),
                    None => "no access line".into(),
                };
                notes.note(format!(
                    "{id}: {}, {end} (the client closed at {} s)",
                    if gave_up.contains(id) {
                        "given up as not reading only then"
                    } else {
                        "never given up as not reading"
                    },
                    HOLD.as_secs()
                ));
            }
        }
    }
    ms.sort_unstable();
    let mut out = Outcome::default();
    out.line(format!(
        "attack: {} non-reading streams of 100,000 deltas opened, {} held {} s; of these {} given up by the gateway before the client closed, {not_given_up} not",
        count(&opened),
        held.len(),
        HOLD.as_secs(),
        ms.len(),
    ));
    if let (Some(first), Some(last)) = (ms.first(), ms.last()) {
        out.line(format!(
            "  given up (access line, 499) {:.1} to {:.1} s after the request (median {:.1} s)",
            *first as f64 / 1000.0,
            *last as f64 / 1000.0,
            ms[ms.len() / 2] as f64 / 1000.0
        ));
    }
    notes.into_lines(&mut out);
    out.none(
        not_given_up,
        "held streams the gateway did not give up by itself",
    );
    if held.is_empty() {
        out.fail("no stream was held 30 s (--seconds too short?)");
    }
    out.brief = format!(
        "{} streams never read; {}/{} held ones given up",
        count(&opened),
        ms.len(),
        held.len()
    );
    out
}

// ---------------------------------------------------------------- 7. worker exhaustion

/// Finding 2, every worker busy: 48 clients each keep a slow streamed chat going
/// (`[[sim:chunks=20]][[sim:delay=1000]]`: 20 deltas 1 s apart), starting the next when one
/// ends or a new one 250 ms after a 503, on a gateway with `max_workers` and
/// `gateway_max_in_flight` of 16. Must hold: the streams that got a worker run to their
/// end with the right text; the others get 503 (counted); the probes are answered within
/// 1 s (503 counts).
fn worker_exhaustion(c: &Ctx) -> Outcome {
    const CLIENTS: usize = 48;
    let want = chunks_answer(20);
    let answers = Tally::default();
    let whole = AtomicUsize::new(0);
    let cut_by_end = AtomicUsize::new(0);
    let notes = Notes::default();
    // Streams still running when the attack ends are cut then (their sockets shut down).
    let open: Mutex<BTreeMap<(usize, usize), TcpStream>> = Mutex::default();
    thread::scope(|s| {
        s.spawn(|| {
            while c.nap(Duration::from_secs(1)) {}
            for conn in open.lock().unwrap().values() {
                let _ = conn.shutdown(Shutdown::Both);
            }
        });
        for t in 0..CLIENTS {
            let (answers, whole, cut_by_end, notes, want, open) =
                (&answers, &whole, &cut_by_end, &notes, &want, &open);
            s.spawn(move || {
                let mut n = 0;
                while c.on() {
                    n += 1;
                    let q = format!("slow {t}.{n} [[sim:chunks=20]][[sim:delay=1000]]");
                    let r = exchange_with(
                        c.addr,
                        "POST",
                        "/v1/chat/completions",
                        &c.auth(),
                        &chat_body(&q, true),
                        Duration::from_secs(30),
                        |conn| {
                            if let Ok(clone) = conn.try_clone() {
                                open.lock().unwrap().insert((t, n), clone);
                            }
                        },
                    );
                    open.lock().unwrap().remove(&(t, n));
                    if !c.on() {
                        // Shut down by the end of the attack, or finished just then.
                        if r.is_err() {
                            bump(cut_by_end);
                            continue;
                        }
                    }
                    match r {
                        Ok(a) if a.status == 503 => {
                            answers.add("503");
                            c.nap(Duration::from_millis(250));
                        }
                        Ok(a) => {
                            answers.add(a.status.to_string());
                            match chat_stream_text(&a) {
                                Ok(text) if text == *want => bump(whole),
                                Ok(text) => notes.note(format!("{q}: {}", cut(&text))),
                                Err(e) => notes.note(format!("{q}: {e}")),
                            }
                        }
                        Err(e) => {
                            answers.add("error");
                            notes.note(format!("{q}: {e}"));
                        }
                    }
                }
            });
        }
    });
    let mut out = Outcome::default();
    out.line(format!(
        "attack: {} slow streams asked for by {CLIENTS} clients: answers {}; {} streamed whole, {} cut by the end of the attack",
        answers.total() + count(&cut_by_end),
        answers.show(),
        count(&whole),
        count(&cut_by_end)
    ));
    notes.into_lines(&mut out);
    out.none(
        answers.get("200") - count(&whole).min(answers.get("200")),
        "streams not streamed whole",
    );
    out.none(
        answers.others(&["200", "503"]),
        "slow chats answered other than 200 or 503",
    );
    if answers.get("503") == 0 {
        out.fail("no request was refused: the workers were never all busy");
    }
    out.brief = format!(
        "{} streams whole, {} × 503",
        count(&whole),
        answers.get("503")
    );
    out
}

// ---------------------------------------------------------------- 8. the flood

/// `2025-01-31T12:34:56`: how each line the gateway's logger writes begins.
fn starts_with_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
    b.len() >= 19
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
}

/// Findings 6, 7 and 8 as a flood, on a gateway without keys: four threads send, each on a
/// fresh connection, requests with a foreign `Host` (to a chat, the model list and
/// `/internal/session/export`: 403), a cross-site `Origin` (403), and request lines with
/// ESC, NUL, a bare LF ending a forged access line, bare LF line ends, and a header with
/// a control byte (400). Must hold: each gets its status; no line of the gateway's log
/// was written by a client (every line starts with the logger's timestamp).
fn flood(c: &Ctx) -> Outcome {
    const FORGED: &str =
        "2026-01-01T00:00:00.000000000Z [INFO] access: req_forged GET /forged 200 0ms";
    let a = c.addr;
    let chat = String::from_utf8(chat_body("flood", false)).unwrap();
    let requests: Vec<(&str, String, u16)> = vec![
        ("foreign Host: chat", format!("POST /v1/chat/completions HTTP/1.1\r\nHost: rebind.attacker.example\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{chat}", chat.len()), 403),
        ("foreign Host: models", "GET /v1/models HTTP/1.1\r\nHost: rebind.attacker.example:8080\r\n\r\n".to_string(), 403),
        ("foreign Host: session export", "POST /internal/session/export HTTP/1.1\r\nHost: rebind.attacker.example\r\nContent-Length: 0\r\n\r\n".to_string(), 403),
        ("cross-site Origin", format!("POST /v1/chat/completions HTTP/1.1\r\nHost: {a}\r\nOrigin: http://evil.example\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{chat}", chat.len()), 403),
        ("ESC in the request line", format!("GET /a\x1b[2Jb HTTP/1.1\r\nHost: {a}\r\n\r\n"), 400),
        ("NUL in the request line", format!("GET /a\0b HTTP/1.1\r\nHost: {a}\r\n\r\n"), 400),
        ("forged log line after a bare LF", format!("GET /x\n{FORGED} HTTP/1.1\r\nHost: {a}\r\n\r\n"), 400),
        ("bare LF line ends", format!("GET /healthz HTTP/1.1\nHost: {a}\n\n"), 400),
        ("control byte in a header", format!("GET /healthz HTTP/1.1\r\nHost: {a}\r\nX-Note: a\x07b\r\n\r\n"), 400),
    ];
    let answers: Vec<Tally> = requests.iter().map(|_| Tally::default()).collect();
    let sent = AtomicUsize::new(0);
    let notes = Notes::default();
    thread::scope(|s| {
        for t in 0..4 {
            let (requests, answers, sent, notes) = (&requests, &answers, &sent, &notes);
            s.spawn(move || {
                let mut i = t;
                while c.on() {
                    let k = i % requests.len();
                    i += 1;
                    let (what, req, _) = &requests[k];
                    let r = (|| -> io::Result<Answer> {
                        let conn = connect(a, Duration::from_secs(10))?;
                        (&conn).write_all(req.as_bytes())?;
                        let mut h = Http {
                            addr: a.to_string(),
                            r: BufReader::new(conn),
                        };
                        read_answer(&mut h)
                    })();
                    bump(sent);
                    match r {
                        Ok(ans) => answers[k].add(ans.status.to_string()),
                        Err(e) => {
                            notes.note(format!("{what}: {e}"));
                            answers[k].add("no answer");
                        }
                    }
                    thread::sleep(Duration::from_millis(2));
                }
            });
        }
    });
    let log = c.log_text();
    let lines = log.lines().count();
    let forged: Vec<&str> = log.lines().filter(|l| !starts_with_timestamp(l)).collect();
    let mut out = Outcome::default();
    out.line(format!(
        "attack: {} requests, each on its own connection:",
        count(&sent)
    ));
    let mut wrong = 0;
    for ((what, _, want), got) in requests.iter().zip(&answers) {
        let others = got.others(&[&want.to_string()]);
        wrong += others;
        out.line(format!("  {what} (want {want}): {}", got.show()));
    }
    out.line(format!(
        "  gateway log: {lines} lines, {} not starting with a timestamp",
        forged.len()
    ));
    for l in forged.iter().take(3) {
        out.line(format!("  e.g. {:?}", cut(l)));
    }
    notes.into_lines(&mut out);
    out.none(
        wrong,
        "flood requests answered with another status (or not at all)",
    );
    out.none(forged.len(), "log lines not written by the logger");
    out.brief = format!(
        "{} requests, {} forged log lines",
        count(&sent),
        forged.len()
    );
    out
}

// ---------------------------------------------------------------- probes

enum Got {
    Ok,
    Unavailable,
    Wrong(String),
    NoAnswer(String),
}

struct Probe {
    chat: bool,
    sent: Instant,
    took: Duration,
    got: Got,
}

fn probe(addr: &str, key: Option<&str>, chat: bool, n: usize, attack: &str) -> Probe {
    let sent = Instant::now();
    let question = format!("hostile probe {attack} {n}");
    let auth: Vec<(&str, String)> = key
        .map(|k| vec![("Authorization", format!("Bearer {k}"))])
        .unwrap_or_default();
    let r = if chat {
        exchange(
            addr,
            "POST",
            "/v1/chat/completions",
            &auth,
            &chat_body(&question, false),
            PROBE_TIMEOUT,
        )
    } else {
        exchange(addr, "GET", "/healthz", &[], b"", PROBE_TIMEOUT)
    };
    let took = sent.elapsed();
    let got = match r {
        Err(e) => Got::NoAnswer(e.to_string()),
        Ok(a) if a.status == 503 => Got::Unavailable,
        Ok(a) if chat => match chat_text(&a) {
            Ok(t) if t == greeting(&question) => Got::Ok,
            Ok(t) => Got::Wrong(format!("chat answered {:?}", cut(&t))),
            Err(e) => Got::Wrong(format!("chat: {e}")),
        },
        Ok(a) => {
            let v: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
            if a.status == 200 && v["status"] == "ok" {
                Got::Ok
            } else {
                Got::Wrong(format!("/healthz: HTTP {} {}", a.status, cut(&a.text())))
            }
        }
    };
    Probe {
        chat,
        sent,
        took,
        got,
    }
}

/// The probes of one kind, judged.
struct ProbeView {
    sent: usize,
    answered: usize,
    slowest: Duration,
    over: usize,
    unavailable: usize,
    wrong: usize,
    unanswered: usize,
    first_problem: Option<String>,
}

/// `allow`: a chat probe's deadline starts at the end of the simulator's busy stretch it
/// was sent in (attack 4).
fn judge(
    probes: &[Probe],
    chat: bool,
    allow_503: bool,
    busy: &[(Instant, Instant)],
) -> (ProbeView, Duration) {
    let mut v = ProbeView {
        sent: 0,
        answered: 0,
        slowest: Duration::ZERO,
        over: 0,
        unavailable: 0,
        wrong: 0,
        unanswered: 0,
        first_problem: None,
    };
    let mut slowest_raw = Duration::ZERO;
    let mut problems = Vec::new();
    for p in probes.iter().filter(|p| p.chat == chat) {
        v.sent += 1;
        let mut note = |s: String| problems.push(s);
        let from = if chat {
            busy.iter()
                .filter(|(s, e)| *s <= p.sent && p.sent < *e)
                .map(|(_, e)| *e)
                .max()
                .unwrap_or(p.sent)
        } else {
            p.sent
        };
        let took = (p.sent + p.took).saturating_duration_since(from);
        match &p.got {
            Got::NoAnswer(e) => {
                v.unanswered += 1;
                note(format!(
                    "no answer after {:.1} s: {e}",
                    p.took.as_secs_f64()
                ));
                continue;
            }
            Got::Wrong(e) => {
                v.wrong += 1;
                note(e.clone());
                continue;
            }
            Got::Unavailable => {
                v.unavailable += 1;
                if !allow_503 {
                    note("503".into());
                    continue;
                }
            }
            Got::Ok => {}
        }
        v.answered += 1;
        slowest_raw = slowest_raw.max(p.took);
        v.slowest = v.slowest.max(took);
        if took > PROBE_DEADLINE {
            v.over += 1;
            note(format!(
                "answered after {:.0} ms",
                took.as_secs_f64() * 1000.0
            ));
        }
    }
    v.first_problem = problems.into_iter().next();
    (v, slowest_raw)
}

// ---------------------------------------------------------------- running an attack

fn vm_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

struct Row {
    name: &'static str,
    seconds: f64,
    probes: String,
    slowest: String,
    over: usize,
    unavailable: usize,
    rss: String,
    outcome: String,
    pass: bool,
}

fn run(a: &Args, at: &Attack, n: usize, of: usize, base: &Path) -> Row {
    let dir = base.join(at.name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut env: Vec<(&str, String)> = at.env.iter().map(|(k, v)| (*k, v.to_string())).collect();
    if at.keyed {
        env.push(("LINGMA_GATEWAY_API_KEYS", KEY.to_string()));
    }
    let key = at.keyed.then_some(KEY);
    let (gw, addr) = start_gateway(&a.bin, &dir, 1, &env);
    let pid = gw.0.id();
    println!("\n== {n}/{of} {}: {}", at.name, at.about);
    println!(
        "   fresh gateway pid {pid} on {addr}: 1 simulator instance, {}{}",
        if at.keyed { "an API key" } else { "no API key" },
        if at.env.is_empty() {
            String::new()
        } else {
            format!(
                ", {}",
                at.env
                    .iter()
                    .map(|(k, v)| format!(
                        "{}={v}",
                        k.trim_start_matches("LINGMA_GATEWAY_").to_ascii_lowercase()
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    // Warm up: the first chat starts the session machinery, the first connections their
    // threads.
    for i in 0..3 {
        let _ = probe(&addr, key, false, i, "warm-up");
        let _ = probe(&addr, key, true, i, "warm-up");
    }
    thread::sleep(Duration::from_secs(1));
    let rss_start = rss_kib(pid).unwrap_or(0);
    let log = dir.join("gateway.log");
    let abort = AtomicBool::new(false);
    let probes_on = AtomicBool::new(true);
    let probes = Mutex::new(Vec::<Probe>::new());
    let sim_busy = Mutex::new(Vec::new());
    let start = Instant::now();
    let ctx = Ctx {
        addr: &addr,
        key,
        until: start + Duration::from_secs(a.seconds),
        abort: &abort,
        log: &log,
        sim_busy: &sim_busy,
    };
    let abort_kib = a.rss_abort_mib * 1024;
    let mut aborted_at = None;
    let mut attack_secs = 0.0;
    let mut rss_after = 0;
    let watch_on = AtomicBool::new(true);
    let outcome = thread::scope(|s| {
        for chat in [false, true] {
            let (addr, probes, probes_on) = (&addr, &probes, &probes_on);
            s.spawn(move || {
                let mut next = Instant::now();
                let mut n = 0;
                while probes_on.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if now < next {
                        thread::sleep((next - now).min(Duration::from_millis(50)));
                        continue;
                    }
                    n += 1;
                    let p = probe(addr, key, chat, n, at.name);
                    probes.lock().unwrap().push(p);
                    next += Duration::from_secs(1);
                    next = next.max(Instant::now());
                }
            });
        }
        let watcher = s.spawn(|| {
            while watch_on.load(Ordering::Relaxed) {
                if rss_kib(pid).unwrap_or(0) > abort_kib {
                    abort.store(true, Ordering::Relaxed);
                    return Some(start.elapsed());
                }
                thread::sleep(Duration::from_millis(100));
            }
            None
        });
        let outcome = (at.run)(&ctx);
        attack_secs = start.elapsed().as_secs_f64();
        thread::sleep(Duration::from_secs(a.settle));
        rss_after = rss_kib(pid).unwrap_or(0);
        watch_on.store(false, Ordering::Relaxed);
        aborted_at = watcher.join().unwrap();
        probes_on.store(false, Ordering::Relaxed);
        outcome
    });
    let peak = vm_kib(pid, "VmHWM:").unwrap_or(0);
    let alive = rss_kib(pid).is_some();
    drop(gw);

    let mut out = outcome;
    let probes = probes.into_inner().unwrap();
    let busy = sim_busy.into_inner().unwrap();
    println!(
        "   {}",
        out.lines.first().map(String::as_str).unwrap_or("attack: -")
    );
    for l in out.lines.iter().skip(1) {
        println!("   {l}");
    }
    let mut over = 0;
    let mut unavailable = 0;
    let mut probe_cells = Vec::new();
    let mut slow_cells = Vec::new();
    for chat in [false, true] {
        let (v, raw) = judge(&probes, chat, at.allow_503, &busy);
        let what = if chat { "chat" } else { "/healthz" };
        let raw_note = if chat && !busy.is_empty() {
            format!(
                " (from the end of the simulator's long answer it waited for; {:.0} ms from sending)",
                raw.as_secs_f64() * 1000.0
            )
        } else {
            String::new()
        };
        println!(
            "   probes {what}: {} sent, {} answered, slowest {:.0} ms{raw_note}, {} over 1 s, {} got 503{}{}",
            v.sent,
            v.answered,
            v.slowest.as_secs_f64() * 1000.0,
            v.over,
            v.unavailable,
            if at.allow_503 { " (allowed)" } else { "" },
            if v.wrong + v.unanswered > 0 {
                format!(", {} wrong, {} unanswered", v.wrong, v.unanswered)
            } else {
                String::new()
            }
        );
        if let Some(p) = &v.first_problem {
            println!("     first problem: {p}");
        }
        let unanswered = v.sent - v.answered;
        if unanswered > 0 {
            out.fail(format!(
                "{unanswered} {what} probes not answered{}",
                if at.allow_503 {
                    ""
                } else {
                    " (503 counts as unanswered here)"
                }
            ));
        }
        out.none(v.over, &format!("{what} probes slower than 1 s"));
        if v.sent < a.seconds as usize / 2 {
            out.fail(format!(
                "only {} {what} probes sent in {} s",
                v.sent, a.seconds
            ));
        }
        over += v.over;
        unavailable += v.unavailable;
        probe_cells.push(format!("{}/{}", v.answered, v.sent));
        slow_cells.push(format!("{:.0}", v.slowest.as_secs_f64() * 1000.0));
    }
    println!(
        "   RSS: {:.1} MiB at the start, peak {:.1} MiB (+{:.1}), {:.1} MiB {} s after the attack (+{:.1}); bounds +{PEAK_MARGIN_MIB} / +{} MiB",
        mib(rss_start),
        mib(peak),
        mib(peak.saturating_sub(rss_start)),
        mib(rss_after),
        a.settle,
        mib(rss_after.saturating_sub(rss_start)),
        AFTER_MARGIN_MIB + at.after_extra_mib,
    );
    if let Some(t) = aborted_at {
        out.fail(format!(
            "RSS passed --rss-abort {} MiB after {:.1} s: attack stopped",
            a.rss_abort_mib,
            t.as_secs_f64()
        ));
    }
    if rss_start == 0 || peak == 0 || rss_after == 0 {
        out.fail("RSS not measured");
    }
    if peak > rss_start + PEAK_MARGIN_MIB * 1024 {
        out.fail(format!(
            "peak RSS {:.1} MiB over start + {PEAK_MARGIN_MIB} MiB",
            mib(peak)
        ));
    }
    let after_margin = AFTER_MARGIN_MIB + at.after_extra_mib;
    if rss_after > rss_start + after_margin * 1024 {
        out.fail(format!(
            "RSS after {:.1} MiB over start + {after_margin} MiB",
            mib(rss_after)
        ));
    }
    if !alive {
        out.fail("the gateway exited");
    }
    let pass = out.failures.is_empty();
    if pass {
        println!("   PASS ({attack_secs:.1} s)");
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("   FAIL: {}", out.failures.join("; "));
        println!(
            "   gateway log and simulator work dir kept in {}",
            dir.display()
        );
    }
    Row {
        name: at.name,
        seconds: attack_secs,
        probes: probe_cells.join(" · "),
        slowest: slow_cells.join(" · "),
        over,
        unavailable,
        rss: format!(
            "{:.1} / {:.1} / {:.1}",
            mib(rss_start),
            mib(peak),
            mib(rss_after)
        ),
        outcome: out.brief,
        pass,
    }
}

fn main() {
    let a = parse_args();
    let bin = std::fs::canonicalize(&a.bin).expect("gateway binary (build with --release)");
    let a = Args { bin, ..a };
    let base = temp_dir("hostile");
    let chosen: Vec<&Attack> = ATTACKS
        .iter()
        .filter(|at| a.only.is_empty() || a.only.iter().any(|o| o == at.name))
        .collect();
    println!(
        "hostile: {} attacks, {} s each, probes every second (/healthz and a keyed chat, fresh connections; deadline 1 s), RSS bounds: peak ≤ start + {PEAK_MARGIN_MIB} MiB, {} s after ≤ start + {AFTER_MARGIN_MIB} MiB",
        chosen.len(),
        a.seconds,
        a.settle
    );
    let started = Instant::now();
    let rows: Vec<Row> = chosen
        .iter()
        .enumerate()
        .map(|(i, at)| run(&a, at, i + 1, chosen.len(), &base))
        .collect();
    let total = started.elapsed();
    println!("\n== hostile summary ({:.0} s in all)", total.as_secs_f64());
    println!("| attack | s | probes answered (healthz · chat) | slowest ms (healthz · chat) | > 1 s | 503 | RSS MiB start / peak / after | outcome | result |");
    println!("|---|---:|---|---|---:|---:|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.seconds,
            r.probes,
            r.slowest,
            r.over,
            r.unavailable,
            r.rss,
            r.outcome,
            if r.pass { "PASS" } else { "FAIL" }
        );
    }
    let failed: Vec<&str> = rows.iter().filter(|r| !r.pass).map(|r| r.name).collect();
    if failed.is_empty() {
        println!("PASS");
        let _ = std::fs::remove_dir_all(&base);
    } else {
        println!("FAIL: {}", failed.join(", "));
        std::process::exit(1);
    }
}
