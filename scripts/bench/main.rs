//! Benchmark: the same chat requests sent straight to the Lingma simulator over its
//! WebSocket and through the gateway over HTTP, side by side. Run by `scripts/bench.sh`.
//!
//! Measures non-stream latency p50/p99 at concurrency 1 and 32, requests/s at 32, time to
//! the first answer event, the gateway's RSS idle and with 256 open streams, and the
//! gateway's CPU seconds per 1000 requests. Every request asks for a one-chunk answer from a
//! zero-delay simulator, so what is measured is the transport, not the model.

mod common;

use std::io::BufRead;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{rss_kib, start_gateway, temp_dir, Http, Proc};
use lingma_gateway::jsonrpc::{self, Decoder, Message};
use serde_json::{json, Value};
use tungstenite::Message as WsMessage;

const PROMPT: &str = "bench [[sim:chunks=1]]";

struct Args {
    bin: PathBuf,
    requests: usize,
    streams: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        bin: PathBuf::from("target/release/lingma-gateway"),
        requests: 3000,
        streams: 256,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let v = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--bin" => a.bin = PathBuf::from(v),
            "--requests" => a.requests = v.parse().expect("--requests N"),
            "--streams" => a.streams = v.parse().expect("--streams N"),
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

struct Run {
    lat: Vec<Duration>,
    wall: Duration,
}

impl Run {
    fn p(&self, p: f64) -> Duration {
        percentile(&self.lat, p)
    }
    fn rps(&self) -> f64 {
        self.lat.len() as f64 / self.wall.as_secs_f64()
    }
}

/// Runs `total` requests over `conc` threads, each with its own client made by `mk`.
fn run<C>(
    conc: usize,
    total: usize,
    mk: impl Fn() -> C + Sync,
    one: impl Fn(&mut C) -> Duration + Sync,
) -> Run {
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    let mut lat: Vec<Duration> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..conc)
            .map(|_| {
                s.spawn(|| {
                    let mut c = mk();
                    let mut out = Vec::new();
                    while next.fetch_add(1, Ordering::Relaxed) < total {
                        out.push(one(&mut c));
                    }
                    out
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let wall = start.elapsed();
    lat.sort();
    Run { lat, wall }
}

// ---------------------------------------------------------------- direct WebSocket client

struct Direct {
    ws: tungstenite::WebSocket<TcpStream>,
    dec: Decoder,
    next_id: u64,
}

impl Direct {
    fn connect(port: u16) -> Direct {
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_nodelay(true).unwrap();
        let (ws, _) = tungstenite::client(format!("ws://127.0.0.1:{port}/"), tcp).unwrap();
        let mut d = Direct {
            ws,
            dec: Decoder::new(),
            next_id: 1,
        };
        d.send(&jsonrpc::request(
            0,
            "initialize",
            json!({"processId": 1, "capabilities": {}}),
        ));
        while !matches!(d.recv(), Message::Response { .. }) {}
        d
    }

    fn send(&mut self, v: &Value) {
        let bytes = jsonrpc::encode_message(v);
        self.ws
            .send(WsMessage::text(String::from_utf8(bytes).unwrap()))
            .unwrap();
    }

    fn recv(&mut self) -> Message {
        loop {
            if let Some(body) = self.dec.next_frame().unwrap() {
                return Message::parse(&body).unwrap();
            }
            match self.ws.read().unwrap() {
                WsMessage::Text(t) => self.dec.push(t.as_bytes()),
                WsMessage::Binary(b) => self.dec.push(&b),
                _ => {}
            }
        }
    }

    /// One chat turn; returns (time to first answer delta, total).
    fn ask(&mut self) -> (Duration, Duration) {
        let rid = format!("b{}", self.next_id);
        self.next_id += 1;
        let start = Instant::now();
        self.send(&jsonrpc::notification(
            "chat/ask",
            json!({"requestId": rid, "sessionId": "", "questionText": PROMPT, "chatTask": "FREE_INPUT",
                   "stream": true, "source": 1, "isReply": false, "extra": {"modelConfig": {"key": "auto"}}}),
        ));
        let mut first = None;
        loop {
            let (method, params) = match self.recv() {
                Message::Request { method, params, id } => {
                    self.send(&jsonrpc::response(id, json!({})));
                    (method, params)
                }
                Message::Notification { method, params } => (method, params),
                Message::Response { .. } => continue,
            };
            if params.get("requestId").and_then(Value::as_str) != Some(rid.as_str()) {
                continue;
            }
            if method == "chat/answer"
                && first.is_none()
                && params["text"].as_str().is_some_and(|t| !t.is_empty())
            {
                first = Some(start.elapsed());
            }
            if method == "chat/finish" {
                let total = start.elapsed();
                return (first.unwrap_or(total), total);
            }
        }
    }
}

// ---------------------------------------------------------------- HTTP keep-alive client

impl Http {
    fn chat(&mut self) -> Duration {
        let body =
            json!({"model": "auto", "messages": [{"role": "user", "content": PROMPT}]}).to_string();
        let start = Instant::now();
        self.send("POST", "/v1/chat/completions", &body).unwrap();
        let head = self.head().unwrap();
        let buf = self.body(&head).unwrap();
        assert_eq!(head.status, 200, "{}", String::from_utf8_lossy(&buf));
        // Every client keeps its one connection; the figures assume it.
        assert!(!head.close, "the gateway closed a keep-alive connection");
        start.elapsed()
    }

    /// Sends a streaming request and returns the time to its first `data:` event.
    fn first_event(&mut self, prompt: &str) -> Duration {
        let body = json!({"model": "auto", "stream": true, "messages": [{"role": "user", "content": prompt}]}).to_string();
        let start = Instant::now();
        self.send("POST", "/v1/chat/completions", &body).unwrap();
        assert_eq!(self.head().unwrap().status, 200);
        let mut line = String::new();
        loop {
            line.clear();
            self.r.read_line(&mut line).unwrap();
            if line.starts_with("data:") {
                return start.elapsed();
            }
        }
    }

    /// Reads the rest of a chunked stream.
    fn drain_chunked(&mut self) {
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).unwrap() == 0 || line == "0\r\n" {
                let mut end = String::new();
                let _ = self.r.read_line(&mut end);
                return;
            }
        }
    }
}

// ---------------------------------------------------------------- processes

fn wait_info(dir: &Path) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(t) = std::fs::read_to_string(dir.join(".info")) {
            let l: Vec<&str> = t.lines().collect();
            if l.len() >= 2 {
                return l[0].trim().parse().unwrap();
            }
        }
        assert!(Instant::now() < deadline, "simulator did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

fn main() {
    let a = parse_args();
    let bin = std::fs::canonicalize(&a.bin).expect("gateway binary (build with --release)");
    let n = a.requests;

    // Direct: the simulator alone, one WebSocket per client thread.
    let sim_dir = temp_dir("bench-sim");
    let sim = Proc(
        Command::new(&bin)
            .args(["simulate", "start", "--workDir"])
            .arg(&sim_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let port = wait_info(&sim_dir);
    run(1, 200, || Direct::connect(port), |c| c.ask().1); // warm-up
    let d1 = run(1, n, || Direct::connect(port), |c| c.ask().1);
    // c=32 runs longer, after its own warm-up, so that one scheduling hiccup on this noisy
    // machine does not decide the requests/s figure.
    let n32 = n * 5;
    run(32, n, || Direct::connect(port), |c| c.ask().1);
    let d32 = run(32, n32, || Direct::connect(port), |c| c.ask().1);
    let dttf = run(1, n / 4, || Direct::connect(port), |c| c.ask().0);
    drop(sim);

    // Through the gateway: one instance, HTTP keep-alive clients.
    let gw_dir = temp_dir("bench-gw");
    let (gw, addr) = start_gateway(
        &bin,
        &gw_dir,
        1,
        &[
            ("LINGMA_GATEWAY_MAX_WORKERS", "1024".into()),
            // The memory row holds 256 streams open at once: above the default chat cap.
            ("LINGMA_GATEWAY_GATEWAY_MAX_IN_FLIGHT", "512".into()),
        ],
    );
    let rss = |pid| rss_kib(pid).expect("the gateway is running");
    let pid = gw.0.id();
    let rss_idle = rss(pid);
    run(1, 200, || Http::connect(&addr).unwrap(), |c| c.chat()); // warm-up
    let g1 = run(1, n, || Http::connect(&addr).unwrap(), |c| c.chat());
    run(32, n, || Http::connect(&addr).unwrap(), |c| c.chat());
    let cpu0 = cpu_secs(pid);
    let g32 = run(32, n32, || Http::connect(&addr).unwrap(), |c| c.chat());
    let cpu_per_1000 = (cpu_secs(pid) - cpu0) / n32 as f64 * 1000.0;
    let gttf = run(
        1,
        n / 4,
        || Http::connect(&addr).unwrap(),
        |c| {
            let t = c.first_event(PROMPT);
            c.drain_chunked();
            t
        },
    );
    // 256 open streams: each stalls after its first chunk until we hang up.
    let mut open: Vec<Http> = Vec::new();
    for i in 0..a.streams {
        let mut c = Http::connect(&addr).unwrap();
        c.first_event(&format!("hold {i} [[sim:stall=1]]"));
        open.push(c);
    }
    let rss_streams = rss(pid);
    drop(open);
    let rss_after = rss(pid);
    drop(gw);
    let _ = std::fs::remove_dir_all(&sim_dir);
    if std::env::var_os("BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&gw_dir);
    } else {
        eprintln!("gateway log kept in {}", gw_dir.display());
    }

    let added = |g: Duration, d: Duration| ms(g.saturating_sub(d));
    println!(
        "| measure ({n} requests at c=1, {n32} at c=32; one-chunk answers, zero-delay simulator) | direct WS | gateway | added |"
    );
    println!("|---|---:|---:|---:|");
    let row = |label: &str, d: &Run, g: &Run, p: f64| {
        let (dp, gp) = (d.p(p), g.p(p));
        println!("| {label} | {} | {} | {} |", ms(dp), ms(gp), added(gp, dp));
    };
    row("p50 latency, c=1 (ms)", &d1, &g1, 0.5);
    row("p99 latency, c=1 (ms)", &d1, &g1, 0.99);
    row("p50 latency, c=32 (ms)", &d32, &g32, 0.5);
    row("p99 latency, c=32 (ms)", &d32, &g32, 0.99);
    println!(
        "| max latency, c=32 (ms) | {} | {} | |",
        ms(d32.p(1.0)),
        ms(g32.p(1.0))
    );
    println!(
        "| requests/s, c=32 | {:.0} | {:.0} | |",
        d32.rps(),
        g32.rps()
    );
    row("time to first event p50, c=1 (ms)", &dttf, &gttf, 0.5);
    println!(
        "| gateway RSS idle (MiB) | | {:.1} | |",
        rss_idle as f64 / 1024.0
    );
    println!(
        "| gateway RSS with {} open streams (MiB) | | {:.1} | |",
        a.streams,
        rss_streams as f64 / 1024.0
    );
    println!(
        "| gateway RSS after they closed (MiB) | | {:.1} | |",
        rss_after as f64 / 1024.0
    );
    println!(
        "| gateway CPU seconds per 1000 requests (c=32) | | {:.3} | |",
        cpu_per_1000
    );
}
