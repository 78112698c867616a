//! Integration tests of the bundled Lingma simulator: start `lingma-gateway simulate start` as a
//! child process, talk JSON-RPC over its WebSocket and check what a client sees.

use std::collections::VecDeque;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lingma_gateway::jsonrpc::{encode_frame, encode_message, Decoder};
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

#[path = "simulator/acp.rs"]
mod acp;

const BIN: &str = env!("CARGO_BIN_EXE_lingma-gateway");
const DEADLINE: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(10);

fn unique_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("lingma-sim-test-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Polls `check` until it returns `Some`, failing the test after `DEADLINE`.
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running simulator; killed, reaped and its workDir removed on drop.
struct Sim {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Sim {
    fn start(tag: &str, sim_opts: &[&str]) -> Sim {
        Self::start_in(unique_dir(tag), sim_opts)
    }

    fn start_in(dir: PathBuf, sim_opts: &[&str]) -> Sim {
        Self::start_env(dir, sim_opts, &[])
    }

    /// Starts with the simulator's `LINGMA_SIM_*` variables cleared, then `env` set.
    fn start_env(dir: PathBuf, sim_opts: &[&str], env: &[(&str, &str)]) -> Sim {
        let mut child = Command::new(BIN)
            .arg("simulate")
            .args(sim_opts)
            .args(["start", "--workDir"])
            .arg(&dir)
            .env_remove("LINGMA_SIM_LOGGED_OUT")
            .env_remove("LINGMA_SIM_LOGIN_USER")
            .env_remove("LINGMA_SIM_LOGIN_PASSWORD")
            .env_remove("LINGMA_SIM_DIALECT")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn simulator");
        let port = wait_for(".info", || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("simulator exited early: {status}");
            }
            read_info(&dir).map(|(port, _)| port)
        });
        Sim { child, dir, port }
    }

    fn connect(&self) -> Client {
        Client::connect(self.port)
    }

    fn wait_exit(&mut self) -> ExitStatus {
        wait_for("simulator exit", || self.child.try_wait().unwrap())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/lingma.log")).unwrap_or_default()
    }

    /// The HTTP port, from the log's ready line.
    fn http_port(&self) -> u16 {
        self.log()
            .lines()
            .find_map(|l| {
                l.split_once("HTTP: ")
                    .map(|(_, p)| p.trim().parse().unwrap())
            })
            .expect("ready line")
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_info(dir: &Path) -> Option<(u16, u32)> {
    let text = std::fs::read_to_string(dir.join(".info")).ok()?;
    let mut lines = text.lines();
    Some((lines.next()?.parse().ok()?, lines.next()?.parse().ok()?))
}

/// A WebSocket JSON-RPC client with a timeout on every read.
struct Client {
    ws: WebSocket<TcpStream>,
    decoder: Decoder,
    /// Messages read while looking for something else.
    queue: VecDeque<Value>,
}

impl Client {
    fn connect(port: u16) -> Client {
        let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        tcp.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        let (ws, _) =
            tungstenite::client(format!("ws://127.0.0.1:{port}/"), tcp).expect("handshake");
        Client {
            ws,
            decoder: Decoder::new(),
            queue: VecDeque::new(),
        }
    }

    fn send_raw(&mut self, msg: Message) {
        self.ws.send(msg).expect("send");
    }

    fn send(&mut self, msg: &Value) {
        self.send_raw(Message::text(
            String::from_utf8(encode_message(msg)).unwrap(),
        ));
    }

    fn request(&mut self, id: Value, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// The next raw WebSocket data message.
    fn read_raw(&mut self) -> Vec<u8> {
        loop {
            match self.ws.read().expect("read (timed out or closed)") {
                Message::Text(t) => return t.as_str().as_bytes().to_vec(),
                Message::Binary(b) => return b.to_vec(),
                _ => continue,
            }
        }
    }

    /// The next JSON-RPC message from the wire, decoded across WebSocket messages.
    fn read_message(&mut self) -> Value {
        loop {
            if let Some(body) = self.decoder.next_frame().expect("valid frames") {
                return serde_json::from_slice(&body).expect("valid JSON");
            }
            let bytes = self.read_raw();
            self.decoder.push(&bytes);
        }
    }

    /// The next JSON-RPC message, queued ones first.
    fn next(&mut self) -> Value {
        match self.queue.pop_front() {
            Some(v) => v,
            None => self.read_message(),
        }
    }

    /// Waits for the response to request `id`, keeping other messages for `next`.
    fn response(&mut self, id: &Value) -> Value {
        let is_it = |m: &Value| m.get("method").is_none() && m.get("id") == Some(id);
        if let Some(pos) = self.queue.iter().position(is_it) {
            return self.queue.remove(pos).unwrap();
        }
        loop {
            let msg = self.read_message();
            if is_it(&msg) {
                return msg;
            }
            self.queue.push_back(msg);
        }
    }

    fn call(&mut self, id: i64, method: &str, params: Value) -> Value {
        self.request(json!(id), method, params);
        self.response(&json!(id))
    }

    /// Reads until `chat/finish` of `request_id`; returns every message of that turn.
    fn turn(&mut self, request_id: &str) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let msg = self.next();
            let params = &msg["params"];
            if params["requestId"] != json!(request_id) {
                continue;
            }
            let method = msg["method"].as_str().unwrap_or("").to_string();
            events.push(msg);
            if method == "chat/finish" {
                return events;
            }
        }
    }
}

fn ask_params(request_id: &str, session_id: &str, question: &str) -> Value {
    json!({
        "requestId": request_id,
        "sessionId": session_id,
        "questionText": question,
        "chatTask": "FREE_INPUT",
        "chatContext": null,
        "isReply": !session_id.is_empty(),
        "source": 1,
        "stream": true,
        "sessionType": "chat",
        "mode": "chat",
        "extra": {"modelConfig": {"key": "auto"}},
    })
}

fn methods(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["method"].as_str().unwrap())
        .collect()
}

fn deltas(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["method"] == "chat/answer")
        .map(|e| e["params"]["text"].as_str().unwrap().to_string())
        .collect()
}

fn finish(events: &[Value]) -> &Value {
    &events.last().expect("events")["params"]
}

#[test]
fn initialize_then_initialized_gets_no_reply() {
    let sim = Sim::start("init", &[]);
    let mut c = sim.connect();
    let r = c.call(
        1,
        "initialize",
        json!({"processId": 1, "capabilities": {}, "rootUri": null}),
    );
    assert_eq!(
        r["result"]["serverInfo"],
        json!({"name": "lingma", "version": "2.11.1"})
    );
    assert!(r["result"]["capabilities"].is_object());
    c.notify("initialized", json!({}));
    // The very next message must be the ping's reply: `initialized` got none.
    c.request(json!("p-1"), "ping", json!({}));
    assert_eq!(
        c.next(),
        json!({"jsonrpc": "2.0", "id": "p-1", "result": {"success": true}})
    );
}

#[test]
fn protocol_errors_keep_the_connection() {
    let sim = Sim::start("errors", &[]);
    let mut c = sim.connect();
    c.send_raw(Message::text(
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{}}"#,
    ));
    let e = c.next();
    assert_eq!(
        (e["id"].clone(), e["error"]["code"].clone()),
        (Value::Null, json!(-32700))
    );
    assert_eq!(e["error"]["message"], "Unknown message header");

    c.send_raw(Message::binary(encode_frame(b"{not json")));
    assert_eq!(c.next()["error"]["code"], -32700);

    let e = c.call(2, "ping", json!([1, 2]));
    assert_eq!(
        (e["error"]["code"].clone(), e["error"]["message"].clone()),
        (json!(-32602), json!("params must be an object"))
    );
    c.send(&json!({"jsonrpc": "2.0", "id": 3, "method": "ping"}));
    assert_eq!(c.response(&json!(3))["error"]["code"], -32602);

    let e = c.call(4, "no/such/method", json!({}));
    assert_eq!(
        e["error"],
        json!({"code": -32601, "message": "unknown method: no/such/method"})
    );

    // Replies to the simulator's own requests are ignored; the connection still answers.
    c.send(&json!({"jsonrpc": "2.0", "id": 99, "result": {}}));
    assert_eq!(c.call(5, "ping", json!({}))["result"]["success"], true);
}

#[test]
fn plain_requests() {
    let sim = Sim::start("plain", &[]);
    let mut c = sim.connect();
    let auth = c.call(1, "auth/status", json!({}))["result"].clone();
    assert_eq!(
        (auth["status"].clone(), auth["id"].clone()),
        (json!(2), json!("sim-user-1"))
    );
    assert!(auth["token"].as_str().unwrap().starts_with("sim-token-"));
    let models = c.call(2, "config/queryModels", json!({}))["result"].clone();
    assert_eq!(models["chat"][0]["key"], "auto");
    assert_eq!(models["inline"].as_array().unwrap().len(), 2);
    assert_eq!(
        c.call(3, "config/getEndpoint", json!({}))["result"],
        json!({"endpoint": ""})
    );
    let r = c.call(
        4,
        "config/updateEndpoint",
        json!({"endpoint": "https://example.test"}),
    );
    assert_eq!(r["result"], json!({"success": true}));
    assert_eq!(
        c.call(5, "config/getEndpoint", json!({}))["result"]["endpoint"],
        "https://example.test"
    );
}

#[test]
fn chat_ask_request_streams_a_turn_and_sessions_continue() {
    let sim = Sim::start("ask", &[]);
    let mut c = sim.connect();
    c.request(
        json!(10),
        "chat/ask",
        ask_params("r-1", "", "some context\nhello simulator"),
    );
    let ack = c.next();
    assert_eq!(ack["id"], 10);
    assert_eq!(
        ack["result"],
        json!({"requestId": "r-1", "isSuccess": true, "errorMessage": ""})
    );

    let events = c.turn("r-1");
    let m = methods(&events);
    assert_eq!(
        &m[..3],
        [
            "chat/process_step_callback",
            "chat/process_step_callback",
            "session/title/update"
        ]
    );
    assert_eq!(events[0]["params"]["step"], "step_start");
    assert_eq!(events[1]["params"]["step"], "step_end");
    assert_eq!(events[2]["params"]["sessionTitle"], "hello simulator");
    assert_eq!(m[m.len() - 2], "context/usage/sync");
    assert!(
        events[0].get("id").is_none(),
        "step callbacks are notifications"
    );
    let ds = deltas(&events);
    assert!(ds.iter().all(|d| d.chars().count() <= 5));
    assert!(ds.iter().any(String::is_empty));
    let answers: Vec<&Value> = events
        .iter()
        .filter(|e| e["method"] == "chat/answer")
        .collect();
    assert!(answers
        .iter()
        .all(|a| a["id"].is_u64() && a["params"]["overwrite"] == false));
    let fin = finish(&events);
    assert_eq!(
        (fin["reason"].clone(), fin["statusCode"].clone()),
        (json!("success"), json!(200))
    );
    assert_eq!(fin["fullAnswer"], json!(ds.concat()));
    assert_eq!(
        ds.concat(),
        "Hello from the Lingma simulator (Auto). You said: hello simulator"
    );
    let session = fin["sessionId"].as_str().unwrap().to_string();
    assert!(!session.is_empty());
    assert!(events
        .iter()
        .all(|e| e["params"]["sessionId"] == json!(session)));

    // Second turn, as a notification, on the session the finish named.
    c.notify("chat/ask", ask_params("r-2", &session, "[[sim:turn]]"));
    let events = c.turn("r-2");
    assert!(!methods(&events).contains(&"session/title/update"));
    assert_eq!(
        finish(&events)["fullAnswer"],
        format!("turn 2 of session {session}")
    );
    assert_eq!(finish(&events)["sessionId"], json!(session));

    let s = c.call(11, "chat/getSessionById", json!({"sessionId": session}))["result"].clone();
    assert_eq!(s["chatRecords"].as_array().unwrap().len(), 2);
    assert_eq!(s["chatRecords"][1]["requestId"], "r-2");
    let list = c.call(12, "chat/listAllSessions", json!({}))["result"].clone();
    assert_eq!(
        list,
        json!([{"sessionId": session, "sessionTitle": "hello simulator"}])
    );
    assert_eq!(
        c.call(13, "chat/deleteSessionById", json!({"sessionId": session}))["result"],
        Value::Null
    );
    assert_eq!(
        c.call(14, "chat/listAllSessions", json!({}))["result"],
        json!([])
    );

    let log = sim.log();
    assert!(
        log.contains("recv chat/ask requestId=r-1 sessionId= isReply=false model=auto"),
        "{log}"
    );
    assert!(log.contains(&format!(
        "recv chat/ask requestId=r-2 sessionId={session} isReply=true model=auto"
    )));
    assert!(log.contains("Communication servers ready - WebSocket: "));
}

#[test]
fn notification_ask_with_empty_session_gets_a_new_one() {
    let sim = Sim::start("notify", &[]);
    let mut c = sim.connect();
    c.notify("chat/ask", ask_params("n-1", "", "one"));
    let first = finish(&c.turn("n-1"))["sessionId"].clone();
    c.notify("chat/ask", ask_params("n-2", "", "two"));
    let events = c.turn("n-2");
    assert!(methods(&events).contains(&"session/title/update"));
    assert_ne!(finish(&events)["sessionId"], first);
    // An unknown session id also starts a new session.
    c.notify(
        "chat/ask",
        ask_params("n-3", "not-a-session", "[[sim:turn]]"),
    );
    let fin = finish(&c.turn("n-3")).clone();
    assert_ne!(fin["sessionId"], "not-a-session");
    assert!(fin["fullAnswer"]
        .as_str()
        .unwrap()
        .starts_with("turn 1 of session "));
}

#[test]
fn ask_without_request_id_is_rejected() {
    let sim = Sim::start("noreq", &[]);
    let mut c = sim.connect();
    let e = c.call(1, "chat/ask", json!({"questionText": "hi"}));
    assert_eq!(e["error"]["code"], -32602);
}

#[test]
fn stop_cancels_a_stalled_turn() {
    let sim = Sim::start("stall", &[]);
    let mut c = sim.connect();
    c.notify("chat/ask", ask_params("s-1", "", "[[sim:stall]]"));
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let msg = c.next();
        if msg["method"] == "chat/answer" {
            seen.push(msg["params"]["text"].as_str().unwrap().to_string());
        }
    }
    let r = c.call(2, "chat/stop", json!({"requestId": "s-1", "sessionId": ""}));
    assert_eq!(r["result"], json!({}));
    let events = c.turn("s-1");
    let fin = finish(&events);
    assert_eq!(
        (fin["reason"].clone(), fin["statusCode"].clone()),
        (json!("cancelled"), json!(200))
    );
    assert_eq!(fin["fullAnswer"], json!(seen.concat()));
    assert!(sim.log().contains("recv chat/stop requestId=s-1"));
}

#[test]
fn status_directive_and_unknown_model_fail_the_turn() {
    let sim = Sim::start("status", &[]);
    let mut c = sim.connect();
    c.notify("chat/ask", ask_params("e-1", "", "[[sim:status=429]]"));
    let events = c.turn("e-1");
    assert_eq!(
        methods(&events),
        [
            "chat/process_step_callback",
            "chat/process_step_callback",
            "chat/finish"
        ]
    );
    let fin = finish(&events);
    assert_eq!(
        (
            fin["statusCode"].clone(),
            fin["reason"].clone(),
            fin["fullAnswer"].clone()
        ),
        (json!(429), json!("error"), json!(""))
    );

    let mut params = ask_params("e-2", "", "hi");
    params["extra"]["modelConfig"]["key"] = json!("gpt-99");
    c.notify("chat/ask", params);
    assert_eq!(finish(&c.turn("e-2"))["statusCode"], 500);
}

#[test]
fn wire_modes_still_decode_to_the_same_answer() {
    let sim = Sim::start("wire", &[]);
    let mut c = sim.connect();
    for (i, wire) in ["split", "packed", "binary"].iter().enumerate() {
        let id = format!("w-{i}");
        c.notify(
            "chat/ask",
            ask_params(&id, "", &format!("[[sim:unicode]][[sim:wire={wire}]]")),
        );
        let events = c.turn(&id);
        assert_eq!(
            finish(&events)["fullAnswer"],
            "你好，世界 — héllo 🌍 ünïcödé ✓",
            "wire={wire}"
        );
        assert_eq!(deltas(&events).concat(), "你好，世界 — héllo 🌍 ünïcödé ✓");
    }
}

#[test]
fn garbage_and_close_directives() {
    let sim = Sim::start("faults", &[]);
    let mut c = sim.connect();
    c.notify("chat/ask", ask_params("g-1", "", "[[sim:garbage]]"));
    let mut saw_garbage = false;
    loop {
        let raw = c.read_raw();
        if raw == b"this is not a frame" {
            saw_garbage = true;
            continue;
        }
        c.decoder.push(&raw);
        let mut done = false;
        while let Some(body) = c.decoder.next_frame().unwrap() {
            let v: Value = serde_json::from_slice(&body).unwrap();
            done |= v["method"] == "chat/finish";
        }
        if done {
            break;
        }
    }
    assert!(saw_garbage);

    c.notify("chat/ask", ask_params("c-1", "", "[[sim:close]]"));
    let closed = loop {
        match c.ws.read() {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(
        !matches!(closed, tungstenite::Error::Io(ref e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "{closed}"
    );
    // The process survives and takes new connections.
    let mut c2 = sim.connect();
    assert_eq!(c2.call(1, "ping", json!({}))["result"]["success"], true);
}

#[test]
fn whoami_names_the_instance() {
    let sim = Sim::start("whoami", &[]);
    let mut c = sim.connect();
    c.notify("chat/ask", ask_params("i-1", "", "[[sim:whoami]]"));
    let base = sim.dir.file_name().unwrap().to_string_lossy().into_owned();
    let want = format!("instance {base} pid {}", sim.child.id());
    assert_eq!(finish(&c.turn("i-1"))["fullAnswer"], json!(want));
}

#[test]
fn crash_directive_exits_with_101() {
    let mut sim = Sim::start("crash", &[]);
    let mut c = sim.connect();
    c.notify("chat/ask", ask_params("x-1", "", "[[sim:crash]]"));
    let status = sim.wait_exit();
    assert_eq!(status.code(), Some(101));
}

#[test]
fn logged_out_instance_refuses_chats() {
    let sim = Sim::start("loggedout", &["--logged-out"]);
    let mut c = sim.connect();
    let auth = c.call(1, "auth/status", json!({}))["result"].clone();
    assert_eq!(
        (auth["status"].clone(), auth["id"].clone()),
        (json!(1), json!(""))
    );
    assert_eq!(
        c.call(2, "config/queryModels", json!({}))["result"],
        json!({})
    );
    c.notify("chat/ask", ask_params("l-1", "", "hi"));
    let fin = finish(&c.turn("l-1")).clone();
    assert_eq!(
        (fin["statusCode"].clone(), fin["reason"].clone()),
        (json!(403), json!("error"))
    );
}

#[test]
fn sigterm_exits_cleanly_and_removes_info() {
    let mut sim = Sim::start("sigterm", &[]);
    let (_, pid) = read_info(&sim.dir).unwrap();
    assert_eq!(pid, sim.child.id());
    // A stalled turn in flight must not hold the shutdown up.
    let mut c = sim.connect();
    c.notify("chat/ask", ask_params("t-1", "", "[[sim:stall=0]]"));
    while c.next()["method"] != "chat/process_step_callback" {}
    let pid = rustix::process::Pid::from_child(&sim.child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert_eq!(sim.wait_exit().code(), Some(0));
    assert!(!sim.dir.join(".info").exists());
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("simulate")
        .args(args)
        .output()
        .expect("run simulator")
}

#[test]
fn version_status_and_usage() {
    let out = run(&["version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "version: 2.11.1"
    );

    let dir = unique_dir("status");
    let dir_arg = dir.to_str().unwrap();
    let out = run(&["status", "-o", "json", "--workDir", dir_arg]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, json!({"logged_in": false, "version": "2.11.1"}));

    // Starting creates the test login in the workDir, which `status` then reports.
    let sim = Sim::start_in(dir.clone(), &[]);
    let out = run(&["status", "-o", "json", "--workDir", dir_arg]);
    drop(sim);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        json!({"logged_in": true, "username": "simulator", "user_type": "personal_standard", "version": "2.11.1"})
    );

    assert!(String::from_utf8_lossy(&run(&["--help"]).stdout).contains("SIMULATOR"));
    assert_eq!(run(&["start", "--workDir"]).status.code(), Some(2));
}

#[test]
fn exits_when_its_parent_dies() {
    let dir = unique_dir("orphan");
    // A shell parent that waits on the simulator; killing it orphans the simulator.
    let mut shell = Command::new("sh")
        .arg("-c")
        .arg("\"$0\" simulate start --workDir \"$1\" 2>/dev/null & wait")
        .arg(BIN)
        .arg(&dir)
        .spawn()
        .expect("spawn sh");
    let (_, pid) = wait_for(".info", || read_info(&dir));
    shell.kill().unwrap();
    shell.wait().unwrap();
    let gone = Instant::now();
    while dir.join(".info").exists() && gone.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(20));
    }
    let still_there = dir.join(".info").exists();
    if still_there {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid as i32).unwrap(),
            rustix::process::Signal::KILL,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!still_there, "orphaned simulator {pid} did not exit");
}

#[test]
fn delays_are_configurable_and_stop_interrupts_them() {
    let sim = Sim::start("delays", &["--first-token-ms", "60000", "--chunk-ms=1"]);
    let mut c = sim.connect();
    c.notify("chat/ask", ask_params("d-1", "", "hi"));
    while c.next()["method"] != "session/title/update" {}
    let asked = Instant::now();
    c.notify("chat/stop", json!({"requestId": "d-1", "sessionId": ""}));
    let events = c.turn("d-1");
    assert!(asked.elapsed() < Duration::from_secs(5));
    assert_eq!(finish(&events)["reason"], "cancelled");
    assert_eq!(finish(&events)["fullAnswer"], "");

    // Per-request directives override the command line.
    let asked = Instant::now();
    c.notify(
        "chat/ask",
        ask_params("d-2", "", "[[sim:first=150]][[sim:chunks=3]]"),
    );
    let events = c.turn("d-2");
    assert!(asked.elapsed() >= Duration::from_millis(150));
    assert_eq!(deltas(&events), ["c1 ", "c2 ", "c3 "]);
}

#[test]
fn concurrent_turns_and_connections_do_not_interleave_frames() {
    let sim = Sim::start("concurrent", &[]);
    let port = sim.port;
    let other = std::thread::spawn(move || {
        let mut c = Client::connect(port);
        c.notify(
            "chat/ask",
            ask_params(
                "b-1",
                "",
                "[[sim:chunks=40]][[sim:delay=1]][[sim:wire=split]]",
            ),
        );
        deltas(&c.turn("b-1")).concat()
    });
    let mut c = sim.connect();
    let q = "[[sim:unicode]][[sim:delay=1]][[sim:wire=split]]";
    c.notify("chat/ask", ask_params("a-1", "", q));
    c.notify("chat/ask", ask_params("a-2", "", q));
    let mut finished = Vec::new();
    let mut text = std::collections::HashMap::<String, String>::new();
    while finished.len() < 2 {
        let msg = c.next();
        let id = msg["params"]["requestId"]
            .as_str()
            .unwrap_or("")
            .to_string();
        match msg["method"].as_str() {
            Some("chat/answer") => text
                .entry(id)
                .or_default()
                .push_str(msg["params"]["text"].as_str().unwrap()),
            Some("chat/finish") => {
                assert_eq!(msg["params"]["fullAnswer"], json!(text[&id]));
                finished.push(id);
            }
            _ => {}
        }
    }
    let want: String = (1..=40).map(|i| format!("c{i} ")).collect();
    assert_eq!(other.join().unwrap(), want);
}

#[test]
fn http_port_serves_the_home_page() {
    use std::io::{Read, Write};
    let sim = Sim::start("http", &[]);
    let log = sim.log();
    let port: u16 = log
        .lines()
        .find_map(|l| {
            l.split_once("HTTP: ")
                .map(|(_, p)| p.trim().parse().unwrap())
        })
        .expect("ready line");
    let get = |path: &str| {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        write!(
            tcp,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        tcp.read_to_string(&mut out).unwrap();
        out
    };
    let home = get("/");
    assert!(home.starts_with("HTTP/1.1 200"), "{home}");
    assert!(home.contains("Lingma simulator"));
    assert!(get("/nope").starts_with("HTTP/1.1 404"));
}

#[test]
fn wire_directives_shape_the_websocket_messages() {
    let sim = Sim::start("wireshape", &[]);
    let mut c = sim.connect();
    let next_ws = |c: &mut Client| loop {
        match c.ws.read().expect("read") {
            m @ (Message::Text(_) | Message::Binary(_)) => break m,
            _ => continue,
        }
    };
    // split: every frame starts with a message cut inside its header.
    c.notify(
        "chat/ask",
        ask_params("x-1", "", "[[sim:wire=split]][[sim:chunks=1]]"),
    );
    assert_eq!(next_ws(&mut c), Message::text("Content-L"));
    c.decoder.push(b"Content-L");
    assert_eq!(finish(&c.turn("x-1"))["fullAnswer"], "c1 ");

    // packed: the whole turn (2 steps, title, 1 delta, usage, finish) in one message.
    c.notify(
        "chat/ask",
        ask_params("x-2", "", "[[sim:wire=packed]][[sim:chunks=1]]"),
    );
    let Message::Text(packed) = next_ws(&mut c) else {
        panic!("packed turn is not text")
    };
    let mut d = Decoder::new();
    d.push(packed.as_str().as_bytes());
    let mut count = 0;
    while d.next_frame().unwrap().is_some() {
        count += 1;
    }
    assert_eq!(count, 6);

    // binary: binary messages, each one whole frame.
    c.notify(
        "chat/ask",
        ask_params("x-3", "", "[[sim:wire=binary]][[sim:chunks=1]]"),
    );
    let Message::Binary(first) = next_ws(&mut c) else {
        panic!("not binary")
    };
    assert!(first.starts_with(b"Content-Length: "));
    c.decoder.push(&first);
    assert_eq!(finish(&c.turn("x-3"))["fullAnswer"], "c1 ");
}

/// A question as the gateway renders a conversation with declared tools.
fn tool_prompt(turns: &str) -> String {
    let schema = r#"{"type":"object","properties":{"command":{"type":"string"},"timeout":{"type":"number"}},"required":["command"]}"#;
    format!(
        "[system]\nYou are terse.\n\n[tools]\nYou can call tools. To call one, write a fenced block tagged `json action` that holds one JSON object with the tool's exact name and its parameters:\n\n```json action\n{{\"tool\": \"TOOL_NAME\", \"parameters\": {{\"PARAMETER\": \"VALUE\"}}}}\n```\n\nTool choice: auto. Call a tool when it helps; otherwise answer in plain text.\n\n## Tool: Bash\nRuns a shell command.\n## Tool: (not a new tool)\nParameters (JSON schema): {schema}\n\n{turns}"
    )
}

#[test]
fn tool_call_and_tool_result_turns_over_the_socket() {
    let sim = Sim::start("toolcall", &[]);
    let mut c = sim.connect();
    let first = tool_prompt("[user]\nList files [[sim:tool=Bash]][[sim:cmd=ls -1]]");
    c.request(json!(1), "chat/ask", ask_params("t-1", "", &first));
    let events = c.turn("t-1");
    let call = "I'll call Bash now.\n```json action\n{\"tool\": \"Bash\", \"parameters\": {\"command\":\"ls -1\"}}\n```\n";
    assert_eq!(deltas(&events).concat(), call);
    assert_eq!(finish(&events)["fullAnswer"], call);
    assert_eq!(finish(&events)["statusCode"], 200);
    let title = events
        .iter()
        .find(|e| e["method"] == "session/title/update")
        .unwrap();
    assert_eq!(
        title["params"]["sessionTitle"],
        "List files [[sim:tool=Bash]][["
    );

    // The client's next request: the same conversation plus the call and its result.
    let second = tool_prompt(&format!(
        "[user]\nList files [[sim:tool=Bash]][[sim:cmd=ls -1]]\n\n[assistant]\n{call}\n[tool_result Bash call_id=toolu_01]\nCargo.toml\nsrc"
    ));
    c.notify("chat/ask", ask_params("t-2", "", &second));
    let events = c.turn("t-2");
    assert_eq!(
        finish(&events)["fullAnswer"],
        "Tool result received: Cargo.toml\nsrc"
    );
    let log = sim.log();
    assert!(
        log.contains("requestId=t-1: prompt sections=3 tools=1 choice=auto retry=false -> call Bash x1 style=action"),
        "{log}"
    );
    assert!(log.contains(
        "requestId=t-2: prompt sections=5 tools=1 choice=auto retry=false -> tool-results(1)"
    ));
}

/// Reads the messages of a native-tool turn until its `chat/finish`, letting `react` answer
/// the simulator's requests; returns every message of the turn.
fn native_turn(
    c: &mut Client,
    request_id: &str,
    mut react: impl FnMut(&mut Client, &Value),
) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let msg = c.next();
        if msg["params"]["requestId"] != json!(request_id) {
            continue;
        }
        react(c, &msg);
        let done = msg["method"] == "chat/finish";
        events.push(msg);
        if done {
            return events;
        }
    }
}

/// The `toolCallStatus` of every `tool/call/sync` in `events`, checking their shape.
fn sync_statuses(events: &[Value], tool_call_id: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["method"] == "tool/call/sync")
        .map(|e| {
            let p = &e["params"];
            assert!(e["id"].is_u64(), "sync is a request: {e}");
            assert_eq!(p["toolCallId"], tool_call_id);
            assert_eq!(p["projectPath"], "");
            assert_eq!(p["parameters"], json!({"path": "README.md"}));
            assert!(p["sessionId"].as_str().is_some_and(|s| !s.is_empty()));
            p["toolCallStatus"].as_str().unwrap().to_string()
        })
        .collect()
}

/// The tool card's `toolCallId` in the answer text.
fn card_id(text: &str) -> String {
    let card = text
        .lines()
        .find_map(|l| l.strip_prefix("```toolCall::read_file::"))
        .unwrap_or_else(|| panic!("no tool card in {text:?}"));
    card.strip_suffix("::INIT").expect("INIT card").to_string()
}

#[test]
fn native_tool_approved_and_invoked() {
    let sim = Sim::start("native-ok", &[]);
    let mut c = sim.connect();
    c.notify(
        "chat/ask",
        ask_params("n-1", "", "read it [[sim:native=read_file]]"),
    );
    let mut next_id = 100;
    let mut tool_call_id = String::new();
    let mut invoke = Value::Null;
    let events = native_turn(&mut c, "n-1", |c, msg| {
        let p = &msg["params"];
        match (
            msg["method"].as_str().unwrap(),
            p["toolCallStatus"].as_str(),
        ) {
            ("tool/call/sync", Some("PENDING")) => {
                tool_call_id = p["toolCallId"].as_str().unwrap().to_string();
                // Replies to the simulator's other requests are accepted and ignored.
                c.send(&json!({"jsonrpc": "2.0", "id": msg["id"], "result": {}}));
                next_id += 1;
                let approve = json!({"sessionId": p["sessionId"], "requestId": "n-1",
                    "toolCallId": tool_call_id, "approval": true});
                assert_eq!(
                    c.call(next_id, "tool/call/approve", approve)["result"],
                    json!({})
                );
            }
            ("tool/invoke", _) => {
                invoke = msg.clone();
                let result = json!({"toolCallId": p["toolCallId"], "name": "read_file",
                    "success": true, "errorMessage": "", "result": {"content": "hello"},
                    "startTime": 1, "timeConsuming": 2});
                c.send(&json!({"jsonrpc": "2.0", "id": msg["id"], "result": result}));
            }
            _ => {}
        }
    });
    let text = deltas(&events).concat();
    assert_eq!(card_id(&text), tool_call_id);
    assert_eq!(
        text,
        format!("Let me use read_file.\n```toolCall::read_file::{tool_call_id}::INIT\n```\nTool read_file finished: success=true")
    );
    assert_eq!(
        sync_statuses(&events, &tool_call_id),
        ["PENDING", "RUNNING", "FINISHED"]
    );
    assert_eq!(
        invoke["params"],
        json!({"requestId": "n-1", "toolCallId": tool_call_id, "name": "read_file",
            "parameters": {"path": "README.md"}, "async": false})
    );
    assert!(invoke["id"].is_u64());
    // The order a client sees: card text, PENDING, (approval), RUNNING, invoke, FINISHED, text.
    let order: Vec<&str> = events
        .iter()
        .map(|e| e["method"].as_str().unwrap())
        .filter(|m| m.starts_with("tool/"))
        .collect();
    assert_eq!(
        order,
        [
            "tool/call/sync",
            "tool/call/sync",
            "tool/invoke",
            "tool/call/sync"
        ]
    );
    let finished = events
        .iter()
        .find(|e| e["params"]["toolCallStatus"] == "FINISHED")
        .unwrap();
    assert_eq!(
        finished["params"]["results"][0]["result"],
        json!({"content": "hello"})
    );
    let fin = finish(&events);
    assert_eq!(
        (fin["statusCode"].clone(), fin["reason"].clone()),
        (json!(200), json!("success"))
    );
    assert_eq!(fin["fullAnswer"], json!(text));
    let log = sim.log();
    for line in [
        format!("send tool/call/sync toolCallId={tool_call_id} status=PENDING"),
        format!("recv tool/call/approve toolCallId={tool_call_id} approval=true"),
        format!("send tool/invoke toolCallId={tool_call_id} name=read_file"),
        format!("recv tool/invoke reply toolCallId={tool_call_id} success=true"),
        format!("send tool/call/sync toolCallId={tool_call_id} status=FINISHED"),
    ] {
        assert!(log.contains(&line), "{line} not in {log}");
    }
}

#[test]
fn native_tool_not_approved_is_cancelled() {
    let sim = Sim::start("native-no", &[]);
    let mut c = sim.connect();
    c.notify(
        "chat/ask",
        ask_params("n-2", "", "[[sim:native=read_file]]"),
    );
    let events = native_turn(&mut c, "n-2", |c, msg| {
        if msg["params"]["toolCallStatus"] == "PENDING" {
            // A notification this time.
            c.notify(
                "tool/call/approve",
                json!({"sessionId": msg["params"]["sessionId"], "requestId": "n-2",
                    "toolCallId": msg["params"]["toolCallId"], "approval": false}),
            );
        }
        assert_ne!(msg["method"], "tool/invoke", "invoked without approval");
    });
    let text = deltas(&events).concat();
    let id = card_id(&text);
    assert!(
        text.ends_with("```\nTool read_file was not approved."),
        "{text}"
    );
    assert_eq!(sync_statuses(&events, &id), ["PENDING", "CANCELLED"]);
    assert_eq!(finish(&events)["statusCode"], 200);
    assert_eq!(finish(&events)["reason"], "success");
    let log = sim.log();
    assert!(log.contains(&format!(
        "recv tool/call/approve toolCallId={id} approval=false"
    )));
    assert!(log.contains(&format!(
        "requestId=n-2: tool read_file toolCallId={id} not approved (approval=false)"
    )));
}

#[test]
fn native_tool_async_result_and_failure() {
    let sim = Sim::start("native-async", &[]);
    let mut c = sim.connect();
    c.notify(
        "chat/ask",
        ask_params("n-3", "", "[[sim:native=read_file]]"),
    );
    let events = native_turn(&mut c, "n-3", |c, msg| {
        let p = &msg["params"];
        if p["toolCallStatus"] == "PENDING" {
            // Approved before anything else; malformed events are refused first.
            let e = c.call(
                7,
                "tool/call/approve",
                json!({"toolCallId": p["toolCallId"], "approval": "yes"}),
            );
            assert_eq!(e["error"]["code"], -32602);
            c.notify(
                "tool/call/approve",
                json!({"toolCallId": p["toolCallId"], "approval": true}),
            );
        }
        if msg["method"] == "tool/invoke" {
            // Acked now, answered later through tool/invokeResult.
            c.send(&json!({"jsonrpc": "2.0", "id": msg["id"], "result": {}}));
            c.notify(
                "tool/invokeResult",
                json!({"toolCallId": p["toolCallId"], "name": "read_file", "success": false,
                    "errorMessage": "no such file", "result": null}),
            );
        }
    });
    let text = deltas(&events).concat();
    let id = card_id(&text);
    assert!(
        text.ends_with("Tool read_file finished: success=false (no such file)"),
        "{text}"
    );
    assert_eq!(sync_statuses(&events, &id), ["PENDING", "RUNNING", "ERROR"]);
    let error = events
        .iter()
        .find(|e| e["params"]["toolCallStatus"] == "ERROR")
        .unwrap();
    assert_eq!(error["params"]["errorMsg"], "no such file");
    assert_eq!(error["params"]["results"][0]["success"], false);
    let log = sim.log();
    assert!(log.contains(&format!(
        "recv tool/invoke reply toolCallId={id} ack, waiting for tool/invokeResult"
    )));
    assert!(log.contains(&format!(
        "recv tool/invokeResult toolCallId={id} success=false"
    )));
}

#[test]
fn an_async_native_tool_is_finished_by_tool_invoke_result_only() {
    let sim = Sim::start("native-async-strict", &[]);
    let mut c = sim.connect();
    c.notify(
        "chat/ask",
        ask_params("n-5", "", "[[sim:native=read_file]][[sim:native_async]]"),
    );
    let events = native_turn(&mut c, "n-5", |c, msg| {
        let p = &msg["params"];
        if p["toolCallStatus"] == "PENDING" {
            c.notify(
                "tool/call/approve",
                json!({"toolCallId": p["toolCallId"], "approval": true}),
            );
        }
        if msg["method"] == "tool/invoke" {
            assert_eq!(p["async"], true, "{msg}");
            // A full result as the reply does not finish an async invoke, as on the real
            // server: the tool/invokeResult after it does.
            c.send(&json!({"jsonrpc": "2.0", "id": msg["id"], "result": {
                "toolCallId": p["toolCallId"], "name": "read_file", "success": true,
                "errorMessage": "", "result": {"content": "from the reply"}}}));
            c.notify(
                "tool/invokeResult",
                json!({"toolCallId": p["toolCallId"], "name": "read_file", "success": false,
                    "errorMessage": "from tool/invokeResult", "result": null}),
            );
        }
    });
    let text = deltas(&events).concat();
    let id = card_id(&text);
    assert!(
        text.ends_with("Tool read_file finished: success=false (from tool/invokeResult)"),
        "{text}"
    );
    assert_eq!(sync_statuses(&events, &id), ["PENDING", "RUNNING", "ERROR"]);
    let log = sim.log();
    assert!(log.contains(&format!(
        "send tool/invoke toolCallId={id} name=read_file async=true"
    )));
    assert!(log.contains(&format!(
        "recv tool/invoke reply toolCallId={id} ignored (async: waiting for tool/invokeResult)"
    )));
}

#[test]
fn stop_ends_a_native_tool_waiting_for_approval() {
    let sim = Sim::start("native-stop", &[]);
    let mut c = sim.connect();
    c.notify(
        "chat/ask",
        ask_params("n-4", "", "[[sim:native=read_file]]"),
    );
    let asked = Instant::now();
    let events = native_turn(&mut c, "n-4", |c, msg| {
        if msg["params"]["toolCallStatus"] == "PENDING" {
            c.notify("chat/stop", json!({"requestId": "n-4", "sessionId": ""}));
        }
    });
    assert!(asked.elapsed() < Duration::from_secs(5));
    let text = deltas(&events).concat();
    assert_eq!(
        sync_statuses(&events, &card_id(&text)),
        ["PENDING", "CANCELLED"]
    );
    let fin = finish(&events);
    assert_eq!(fin["reason"], "cancelled");
    assert_eq!(fin["fullAnswer"], json!(text));
}

/// One HTTP exchange with the simulator's HTTP port.
struct HttpReply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl HttpReply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn is_html(&self) -> bool {
        self.header("Content-Type") == Some("text/html; charset=utf-8")
    }
}

/// A plain HTTP/1.1 request over TCP (`Connection: close`), no redirects followed.
fn http(port: u16, method: &str, path: &str, form: Option<&str>) -> HttpReply {
    use std::io::{Read, Write};
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    let body = form.unwrap_or("");
    if form.is_some() {
        head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    write!(tcp, "{head}\r\n{body}").unwrap();
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    HttpReply {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Percent-encodes a form value the way a browser does (space as `+`).
fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b' ' => "+".to_string(),
            b if b.is_ascii_alphanumeric() || b"-_.*".contains(&b) => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

fn login_form(state: &str, user: &str, password: &str) -> String {
    format!(
        "state={}&username={}&password={}",
        form_encode(state),
        form_encode(user),
        form_encode(password)
    )
}

/// The query parameters of a URL (the values here need no decoding).
fn query_params(url: &str) -> std::collections::HashMap<String, String> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `login/generateUrl`: checks the result's shape, returns the login page's path and state.
fn generate_url(c: &mut Client, id: i64, http_port: u16, params: Value) -> (String, String) {
    let r = c.call(id, "login/generateUrl", params)["result"].clone();
    assert_eq!(
        (&r["success"], &r["errorCode"], &r["errorMsg"]),
        (&json!(true), &json!(""), &json!(""))
    );
    let url = r["loginUrl"].as_str().unwrap().to_string();
    let origin = format!("http://127.0.0.1:{http_port}");
    let path = url.strip_prefix(&origin).expect("a URL on the HTTP port");
    assert!(path.starts_with("/login?nonce="), "{url}");
    let q = query_params(&url);
    assert_eq!(q["port"], http_port.to_string());
    assert_eq!(q["challenge_method"], "S256");
    for key in ["nonce", "state", "challenge", "machine_id"] {
        assert!(!q[key].is_empty(), "{key} empty in {url}");
    }
    (path.to_string(), q["state"].clone())
}

fn ask_status(c: &mut Client, request_id: &str) -> Value {
    c.notify("chat/ask", ask_params(request_id, "", "hello"));
    finish(&c.turn(request_id))["statusCode"].clone()
}

/// The next `auth/report` on `c`, other messages kept for later.
fn auth_report(c: &mut Client) -> Value {
    if let Some(pos) = c.queue.iter().position(|m| m["method"] == "auth/report") {
        return c.queue.remove(pos).unwrap();
    }
    loop {
        let msg = c.read_message();
        if msg["method"] == "auth/report" {
            return msg;
        }
        c.queue.push_back(msg);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

const TEST_USER: &str = "tester";
/// Characters a form must encode, so the test also checks the decoding.
const TEST_PASSWORD: &str = "p@ss w+rd&é=1%";

#[test]
fn login_page_flow_logs_in_and_logout_logs_out() {
    let sim = Sim::start(
        "login",
        &[
            "--logged-out",
            "--login-user",
            TEST_USER,
            &format!("--login-password={TEST_PASSWORD}"),
        ],
    );
    let port = sim.http_port();
    let mut c = sim.connect();
    let mut other = sim.connect();
    let auth = c.call(1, "auth/status", json!({}))["result"].clone();
    assert_eq!((&auth["status"], &auth["id"]), (&json!(1), &json!("")));

    let (path, state) = generate_url(&mut c, 2, port, json!({}));
    // A second pending login at once, with the other parameter form.
    let (_, state2) = generate_url(&mut c, 3, port, json!({"loginDedicatedType": ""}));
    assert_ne!(state, state2);

    // The login page.
    let page = http(port, "GET", &path, None);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.is_html(), "{:?}", page.headers);
    for part in [
        "<title>Lingma simulator login</title>",
        "<form id=\"login-form\" method=\"post\" action=\"/login\">",
        "<input id=\"username\" name=\"username\" type=\"text\">",
        "<input id=\"password\" name=\"password\" type=\"password\">",
        &format!("name=\"state\" type=\"hidden\" value=\"{state}\""),
        "<button id=\"login-submit\" type=\"submit\">Log in</button>",
    ] {
        assert!(
            page.body.contains(part),
            "page lacks {part}:\n{}",
            page.body
        );
    }
    assert!(!page.body.contains("login-error"));
    let unknown = http(port, "GET", "/login?state=nope", None);
    assert_eq!(unknown.status, 400);
    assert!(unknown.is_html() && unknown.body.contains("expired"));

    // Wrong password, then wrong user: the form again with the error, still logged out.
    for (user, password) in [(TEST_USER, "wrong"), ("intruder", TEST_PASSWORD)] {
        let r = http(
            port,
            "POST",
            "/login",
            Some(&login_form(&state, user, password)),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.is_html() && r.header("Location").is_none());
        assert!(r
            .body
            .contains("<p id=\"login-error\" class=\"error\">Wrong user name or password.</p>"));
        assert!(r.body.contains("id=\"login-form\""));
        assert!(!r.body.contains(TEST_PASSWORD) && !r.body.contains("wrong"));
    }
    let auth = c.call(4, "auth/status", json!({}))["result"].clone();
    assert_eq!((&auth["status"], &auth["id"]), (&json!(1), &json!("")));
    // Right credentials for an unknown state do nothing either.
    let r = http(
        port,
        "POST",
        "/login",
        Some(&login_form("nope", TEST_USER, TEST_PASSWORD)),
    );
    assert_eq!(r.status, 400);

    // Right credentials: redirected to the callback.
    let r = http(
        port,
        "POST",
        "/login",
        Some(&login_form(&state, TEST_USER, TEST_PASSWORD)),
    );
    assert_eq!(r.status, 302, "{}", r.body);
    let location = r.header("Location").expect("Location").to_string();
    let prefix = format!("/auth/callback?state={state}&code=");
    assert!(location.starts_with(&prefix), "{location}");
    let code = &location[prefix.len()..];
    assert!(!code.is_empty());
    // Not logged in before the callback.
    assert_eq!(c.call(5, "auth/status", json!({}))["result"]["status"], 1);
    // A wrong code for the state is refused and does not use the login up.
    let bad = http(port, "GET", &format!("{prefix}x{code}"), None);
    assert_eq!(bad.status, 400);
    assert!(bad.is_html());

    let ok = http(port, "GET", &location, None);
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.is_html());
    assert!(ok.body.contains(&format!(
        "<p id=\"login-ok\">Logged in as {TEST_USER}. You can close this window.</p>"
    )));
    // One use only.
    assert_eq!(http(port, "GET", &location, None).status, 400);

    // Every connected client got the AuthStatus.
    for client in [&mut c, &mut other] {
        let report = auth_report(client);
        assert!(report.get("id").is_none(), "a notification: {report}");
        let p = &report["params"];
        assert_eq!((&p["status"], &p["name"]), (&json!(2), &json!(TEST_USER)));
        assert!(!p["id"].as_str().unwrap().is_empty());
        assert!(!p["token"].as_str().unwrap().is_empty());
    }
    let auth = c.call(6, "auth/status", json!({}))["result"].clone();
    assert_eq!(
        (&auth["status"], &auth["name"]),
        (&json!(2), &json!(TEST_USER))
    );
    let id = auth["id"].as_str().unwrap().to_string();
    assert!(!id.is_empty());
    let models = c.call(7, "config/queryModels", json!({}))["result"].clone();
    assert_eq!(models["chat"][0]["key"], "auto");
    assert_eq!(ask_status(&mut c, "in-1"), json!(200));
    // The other pending login is still usable after this one completed.
    assert_eq!(
        http(port, "GET", &format!("/login?state={state2}"), None).status,
        200
    );

    // A copy of the workDir (as a session bundle moves it) is logged in as the same user.
    let copy = unique_dir("login-copy");
    copy_dir(&sim.dir, &copy);
    let _ = std::fs::remove_file(copy.join(".info")); // stale, as clients remove it
    let second = Sim::start_in(copy, &[]);
    let mut c2 = second.connect();
    let auth2 = c2.call(1, "auth/status", json!({}))["result"].clone();
    assert_eq!(
        (&auth2["status"], &auth2["id"], &auth2["name"]),
        (&json!(2), &json!(id), &json!(TEST_USER))
    );
    assert_eq!(ask_status(&mut c2, "copy-1"), json!(200));

    // Logging out.
    assert_eq!(
        c.call(8, "auth/logout", json!({}))["result"],
        json!({"success": true})
    );
    let auth = c.call(9, "auth/status", json!({}))["result"].clone();
    assert_eq!(
        (&auth["status"], &auth["id"], &auth["token"]),
        (&json!(1), &json!(""), &json!(""))
    );
    assert_eq!(
        c.call(10, "config/queryModels", json!({}))["result"],
        json!({})
    );
    assert_eq!(ask_status(&mut c, "out-1"), json!(403));
    // The copy is a login of its own.
    assert_eq!(c2.call(2, "auth/status", json!({}))["result"]["status"], 2);

    let log = sim.log();
    for line in [
        "login/generateUrl: login ",
        "login page served",
        &format!("login failed for user {TEST_USER}"),
        "login failed for user intruder",
        &format!("login ok for user {TEST_USER}"),
        &format!("auth/callback: logged in as {TEST_USER}"),
        "auth/report sent to 2 client(s)",
        "auth/logout",
    ] {
        assert!(log.contains(line), "log lacks {line:?}:\n{log}");
    }
    for log in [log, second.log()] {
        assert!(!log.contains(TEST_PASSWORD), "password in the log:\n{log}");
        assert!(!log.contains(&form_encode(TEST_PASSWORD)));
        assert!(!log.contains("p@ss"));
    }
}

#[test]
fn login_credentials_from_the_environment_and_html_pages() {
    let sim = Sim::start_env(
        unique_dir("login-env"),
        &["--logged-out"],
        &[
            ("LINGMA_SIM_LOGIN_USER", "env-user"),
            ("LINGMA_SIM_LOGIN_PASSWORD", "env-pass"),
        ],
    );
    let port = sim.http_port();
    let mut c = sim.connect();
    let (_, state) = generate_url(&mut c, 1, port, json!({}));
    // The defaults no longer work; the environment's do.
    let r = http(
        port,
        "POST",
        "/login",
        Some(&login_form(&state, "lingma-test", "lingma-pass")),
    );
    assert!(r.body.contains("login-error"));
    let r = http(
        port,
        "POST",
        "/login",
        Some(&login_form(&state, "env-user", "env-pass")),
    );
    assert_eq!(r.status, 302);
    let ok = http(port, "GET", r.header("Location").unwrap(), None);
    assert!(ok.body.contains("Logged in as env-user."), "{}", ok.body);
    assert_eq!(auth_report(&mut c)["params"]["name"], "env-user");
    assert_eq!(
        c.call(2, "auth/status", json!({}))["result"]["name"],
        "env-user"
    );
    let status = run(&[
        "status",
        "-o",
        "json",
        "--workDir",
        sim.dir.to_str().unwrap(),
    ]);
    let v: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        (&v["logged_in"], &v["username"]),
        (&json!(true), &json!("env-user"))
    );

    // Every page but `/` is HTML; a bad callback and unknown paths are refused.
    assert_eq!(
        http(port, "GET", "/", None).header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    for (method, path, status) in [
        ("GET", "/auth/callback?state=x&code=y", 400),
        ("GET", "/auth/callback", 400),
        ("GET", "/login", 400),
        ("GET", "/nope", 404),
        ("PUT", "/login", 405),
    ] {
        let r = http(port, method, path, None);
        assert_eq!(r.status, status, "{method} {path}");
        assert!(r.is_html(), "{method} {path}: {:?}", r.headers);
    }
    assert!(!sim.log().contains("env-pass"));
}
