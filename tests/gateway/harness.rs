//! Test harness: starts the real `lingma-gateway` binary on 127.0.0.1:0 against the bundled
//! simulator, learns its port from the log, and speaks raw HTTP/1.1 to it (so tests see
//! exactly the bytes a client sees, including SSE framing and disconnects).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_lingma-gateway");
/// The request id of the gateway's dialect probe (`src/upstream/dialect.rs`).
const DIALECT_PROBE: &str = "lingma-gateway-dialect-probe";
/// Upper bound for any single wait in these tests; they finish far sooner when all is well.
pub const WAIT: Duration = Duration::from_secs(30);

pub fn temp_dir(tag: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("lgw-test-{tag}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct GatewayProcess {
    child: Option<Child>,
    pub addr: String,
    pub dir: PathBuf,
    pub log: Arc<Mutex<Vec<String>>>,
    pub key: Option<String>,
}

pub struct Options {
    pub instances: usize,
    pub env: Vec<(String, String)>,
    pub key: Option<String>,
    /// Wait for `/healthz` to report this many ready instances.
    pub wait_ready: usize,
    /// Pass `--simulator` (else set `lingma_bin` through `env`).
    pub simulator: bool,
    pub log_level: &'static str,
    /// Pass `--work-dir` as a path relative to the gateway's working directory.
    pub relative_work_dir: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            instances: 1,
            env: Vec::new(),
            key: None,
            wait_ready: 1,
            simulator: true,
            log_level: "debug",
            relative_work_dir: false,
        }
    }
}

impl Options {
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((
            format!("LINGMA_GATEWAY_{}", k.to_uppercase()),
            v.to_string(),
        ));
        self
    }
}

impl GatewayProcess {
    pub fn start() -> GatewayProcess {
        Self::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> GatewayProcess {
        let dir = temp_dir("gw");
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--port", "0", "--log-level", opts.log_level])
            .arg("--instances")
            .arg(opts.instances.to_string())
            .arg("--work-dir")
            .arg(if opts.relative_work_dir {
                PathBuf::from("./work")
            } else {
                dir.join("work")
            })
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if opts.simulator {
            cmd.arg("--simulator");
        }
        for (k, _) in std::env::vars() {
            if k.starts_with("LINGMA_GATEWAY_") || k.starts_with("LINGMA_SIM_") {
                cmd.env_remove(k);
            }
        }
        if let Some(k) = &opts.key {
            cmd.env("LINGMA_GATEWAY_API_KEYS", k);
        }
        // The dialect this test target runs its suites on (`main.rs`: the default;
        // `gateway_acp.rs`: ACP); a test's own settings come after and win.
        for (k, v) in crate::DIALECT_ENV {
            cmd.env(k, v);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start lingma-gateway");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find("listening on http://") {
                    let _ = tx.send(line[i + "listening on http://".len()..].trim().to_string());
                }
                log2.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("gateway did not start; log: {:?}", log.lock().unwrap()));
        let gw = GatewayProcess {
            child: Some(child),
            addr,
            dir,
            log,
            key: opts.key,
        };
        gw.wait_ready(opts.wait_ready);
        gw
    }

    /// Polls `/healthz` until `n` instances are ready.
    pub fn wait_ready(&self, n: usize) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(r) = try_request(&self.addr, "GET", "/healthz", &[], None) {
                let v = r.json();
                if v["ready"].as_u64().unwrap_or(0) as usize >= n {
                    return v;
                }
            }
            assert!(
                Instant::now() < deadline,
                "instances not ready; log: {:#?}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn health(&self) -> Value {
        self.get("/healthz").json()
    }

    /// The simulator log of an instance, without the lines of the gateway's dialect probe
    /// (`lingma_dialect = auto` asks a runtime that may speak both a `chat/stop` for a chat
    /// that does not exist): a test looking for `recv chat/stop` means a real chat's.
    pub fn sim_log(&self, instance: usize) -> String {
        let log = std::fs::read_to_string(
            self.dir
                .join("work")
                .join(format!("instance-{instance}"))
                .join("logs/lingma.log"),
        )
        .unwrap_or_default();
        log.lines()
            .filter(|l| !l.contains(DIALECT_PROBE))
            .flat_map(|l| [l, "\n"])
            .collect()
    }

    /// Waits until the simulator log of some instance contains `needle`.
    pub fn wait_sim_log(&self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let n = self.health()["instances"].as_array().map_or(1, Vec::len);
            if (0..n).any(|i| self.sim_log(i).contains(needle)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "simulator never logged {needle:?}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn auth(&self) -> Vec<(String, String)> {
        self.key
            .iter()
            .map(|k| ("Authorization".to_string(), format!("Bearer {k}")))
            .collect()
    }

    pub fn get(&self, path: &str) -> Resp {
        let h = self.auth();
        request(&self.addr, "GET", path, &refs(&h), None)
    }

    /// Asks a plain chat question and expects it answered (status 200).
    pub fn assert_answers(&self, question: &str) {
        let r = self.post("/v1/chat/completions", &chat_body("auto", question));
        assert_eq!(r.status, 200, "{}", r.text());
    }

    pub fn post(&self, path: &str, body: &Value) -> Resp {
        let h = self.auth();
        request(
            &self.addr,
            "POST",
            path,
            &refs(&h),
            Some(body.to_string().as_bytes()),
        )
    }

    /// A POST with `key` as the Bearer credential (for gateways with several API keys).
    pub fn post_as(&self, key: &str, path: &str, body: &Value) -> Resp {
        request(
            &self.addr,
            "POST",
            path,
            &[("Authorization", &format!("Bearer {key}"))],
            Some(body.to_string().as_bytes()),
        )
    }

    /// Starts a streaming POST and returns once the response head is in.
    pub fn post_stream(&self, path: &str, body: &Value) -> Stream {
        let h = self.auth();
        Stream::open(&self.addr, path, &refs(&h), body)
    }

    /// Waits until the gateway's own log contains `needle`.
    pub fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.log_text().contains(needle) {
            assert!(Instant::now() < deadline, "gateway never logged {needle:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Sends SIGTERM without waiting.
    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("already stopped").id()
    }

    pub fn signal_term(&self) {
        self.signal(rustix::process::Signal::TERM);
    }

    pub fn signal(&self, signal: rustix::process::Signal) {
        let child = self.child.as_ref().expect("already stopped");
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        let _ = rustix::process::kill_process(pid, signal);
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal_term();
        self.wait_exit()
    }

    /// Waits for the gateway to exit (after a signal sent before).
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("already stopped");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("gateway ignored SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.terminate();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn refs(h: &[(String, String)]) -> Vec<(&str, &str)> {
    h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Resp {
    try_request(addr, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

pub fn raw_request(addr: &str, raw: &[u8]) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(WAIT))?;
    s.write_all(raw)?;
    let mut r = BufReader::new(s);
    read_response(&mut r)
}

pub fn try_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<Resp> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    if let Some(b) = body {
        bytes.extend_from_slice(b);
    }
    raw_request(addr, &bytes)
}

fn read_head(r: &mut impl BufRead) -> std::io::Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok((status, headers))
}

fn read_response(r: &mut impl BufRead) -> std::io::Result<Resp> {
    let (status, headers) = read_head(r)?;
    let find = |n: &str| find_header(&headers, n).map(String::from);
    let mut body = Vec::new();
    if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).map_err(std::io::Error::other)?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(len) = find("content-length") {
        let n: usize = len.parse().map_err(std::io::Error::other)?;
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else {
        r.read_to_end(&mut body)?;
    }
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// One SSE event as a client sees it.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data not JSON ({e}): {}", self.data))
    }
}

/// A streaming response read event by event (chunked framing undone on the fly).
pub struct Stream {
    reader: BufReader<TcpStream>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    chunked: bool,
    pending: Vec<u8>,
    pub ended: bool,
    /// The body, when the response was not a stream (an error before the first byte).
    pub body: Option<Vec<u8>>,
}

impl Stream {
    pub fn open(addr: &str, path: &str, headers: &[(&str, &str)], body: &Value) -> Stream {
        let body = body.to_string();
        let mut req = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n", body.len());
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut reader = BufReader::new(s);
        let (status, headers) = read_head(&mut reader).unwrap();
        let is_sse = headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("content-type") && v.starts_with("text/event-stream")
        });
        let chunked = headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
        let mut st = Stream {
            reader,
            status,
            headers,
            chunked,
            pending: Vec::new(),
            ended: false,
            body: None,
        };
        if !is_sse {
            let len = st
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut b = vec![0; len];
            st.reader.read_exact(&mut b).unwrap();
            st.body = Some(b);
            st.ended = true;
        }
        st
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn body_json(&self) -> Value {
        serde_json::from_slice(self.body.as_ref().expect("not an error body")).unwrap()
    }

    fn fill(&mut self) -> bool {
        if self.chunked {
            let mut size = String::new();
            if self.reader.read_line(&mut size).unwrap_or(0) == 0 {
                return false;
            }
            let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
                return false;
            };
            let mut chunk = vec![0; n + 2];
            if self.reader.read_exact(&mut chunk).is_err() || n == 0 {
                return false;
            }
            self.pending.extend_from_slice(&chunk[..n]);
            true
        } else {
            let mut buf = [0u8; 4096];
            match self.reader.read(&mut buf) {
                Ok(0) | Err(_) => false,
                Ok(n) => {
                    self.pending.extend_from_slice(&buf[..n]);
                    true
                }
            }
        }
    }

    /// The next event, or `None` when the body ended.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(i) = self.pending.windows(2).position(|w| w == b"\n\n") {
                let raw: Vec<u8> = self.pending.drain(..i + 2).collect();
                let text = String::from_utf8(raw).expect("SSE is UTF-8");
                let mut ev = SseEvent {
                    event: None,
                    data: String::new(),
                };
                let mut data_lines = Vec::new();
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        ev.event = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data_lines.push(v.strip_prefix(' ').unwrap_or(v).to_string());
                    }
                }
                if data_lines.is_empty() && ev.event.is_none() {
                    continue; // a comment
                }
                ev.data = data_lines.join("\n");
                return Some(ev);
            }
            if self.ended || !self.fill() {
                self.ended = true;
                return None;
            }
        }
    }

    pub fn collect(&mut self) -> Vec<SseEvent> {
        let mut out = Vec::new();
        while let Some(e) = self.next_event() {
            out.push(e);
        }
        out
    }
}

/// Text of an OpenAI chat stream's content deltas.
pub fn chat_stream_text(events: &[SseEvent]) -> String {
    chat_stream_field(events, "content")
}

/// One `delta` field of an OpenAI chat stream, concatenated over its chunks.
pub fn chat_stream_field(events: &[SseEvent], field: &str) -> String {
    events
        .iter()
        .filter(|e| e.data != "[DONE]")
        .filter_map(|e| {
            e.json()["choices"][0]["delta"][field]
                .as_str()
                .map(String::from)
        })
        .collect()
}

pub fn chat_body(model: &str, text: &str) -> Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

pub fn stream_body(model: &str, text: &str) -> Value {
    serde_json::json!({"model": model, "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": text}]})
}

/// The simulator's deterministic default answer for a one-line question.
pub fn default_answer(display_name: &str, question: &str) -> String {
    format!("Hello from the Lingma simulator ({display_name}). You said: {question}")
}

/// An Anthropic Messages body with one user message (`max_tokens` 1024, not streamed).
pub fn messages_body(model: &str, text: &str) -> Value {
    serde_json::json!({"model": model, "max_tokens": 1024,
        "messages": [{"role": "user", "content": text}]})
}

impl GatewayProcess {
    /// How many chat turns the simulator of `instance` was asked for so far (`chat/ask` on
    /// cosy, `session/prompt` on ACP).
    pub fn sim_asks(&self, instance: usize) -> usize {
        sim_ask_lines(&self.sim_log(instance)).len()
    }

    /// How many chats the simulator of `instance` was told to stop (`chat/stop` on cosy,
    /// `session/cancel` on ACP).
    pub fn sim_stops(&self, instance: usize) -> usize {
        let log = self.sim_log(instance);
        log.matches("recv chat/stop").count() + log.matches("recv session/cancel").count()
    }

    /// Waits until some instance's simulator was told to stop a chat.
    pub fn wait_sim_stop(&self) {
        let n = self.health()["instances"].as_array().map_or(1, Vec::len);
        wait_for("a chat stopped upstream", || {
            (0..n).any(|i| self.sim_stops(i) > 0)
        });
    }

    /// The `usedTokens` the simulator of instance 0 reported last (its log line for the
    /// turn's context usage, on either dialect).
    pub fn sim_reported_used_tokens(&self) -> u64 {
        let log = self.sim_log(0);
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains("context/usage/sync usedTokens="))
            .unwrap_or_else(|| panic!("no usage reported: {log}"));
        let rest = &line[line.find("usedTokens=").unwrap() + "usedTokens=".len()..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    }
}

/// Polls `f` until it holds, failing the test after `WAIT`.
pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The simulator's `[[sim:turn]]` answer, `turn N of session S`, as (N, S).
pub fn turn(answer: &str) -> (u32, String) {
    let rest = answer
        .strip_prefix("turn ")
        .unwrap_or_else(|| panic!("not a turn answer: {answer}"));
    let (n, session) = rest.split_once(" of session ").unwrap();
    (n.parse().unwrap(), session.trim().to_string())
}

/// The simulator log's lines of asked chat turns, in order (`recv chat/ask` on cosy, `recv
/// session/prompt` on ACP; both say `sessionId=` and `isReply=`).
pub fn sim_ask_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("recv chat/ask ") || l.contains("recv session/prompt "))
        .collect()
}

/// The JSON-RPC method that asks Lingma for a chat turn in the dialect this target runs on.
pub fn ask_method() -> &'static str {
    if crate::DIALECT_ENV.iter().any(|(_, v)| *v == "acp") {
        "session/prompt"
    } else {
        "chat/ask"
    }
}

/// The JSON-RPC method that carries a turn's finish in the dialect this target runs on
/// (ACP's `chat_finish` is a `session/update`).
pub fn finish_method() -> &'static str {
    if ask_method() == "session/prompt" {
        "session/update"
    } else {
        "chat/finish"
    }
}
