//! Attaching to a runtime that is already running (an IDE's), through its directory's
//! discovery file: `.info.json` or a 3-line `.info`, followed across a restart on a new port,
//! never stopped by the gateway; and a runtime that takes only upgrades with a path and a
//! machine token (the Qoder CN sidecar's `/ws` and `Cosy-MachineToken`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::harness::*;

/// A simulator started by the test, not by the gateway: `simulate OPTS start --workDir DIR`.
struct Sim {
    child: Child,
    dir: PathBuf,
}

impl Sim {
    /// Starts it on `port` and waits for its discovery file `file`.
    fn start(dir: &Path, opts: &[&str], port: u16, file: &str) -> Sim {
        std::fs::create_dir_all(dir).unwrap();
        let stderr = std::fs::File::create(dir.with_extension("stderr")).unwrap();
        let child = Command::new(BIN)
            .arg("simulate")
            .args(opts)
            .args(["start", "--workDir"])
            .arg(dir)
            .arg(format!("--socketPort={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let sim = Sim {
            child,
            dir: dir.to_path_buf(),
        };
        wait_for(&format!("the simulator's {file}"), || {
            dir.join(file).is_file()
        });
        sim
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/lingma.log")).unwrap_or_default()
    }

    /// SIGTERM, and waits for its exit (it removes its discovery files).
    fn stop(&mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + WAIT;
        while self.running() {
            assert!(Instant::now() < deadline, "simulator ignored SIGTERM");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on now, other than `not`.
fn free_port(not: u16) -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if port != not {
            return port;
        }
    }
}

fn attached_to(dir: &Path) -> Options {
    Options::default().env("lingma_attach_dir", &dir.display().to_string())
}

fn whoami(gw: &GatewayProcess) -> String {
    let r = gw.post("/v1/chat/completions", &chat_body("auto", "[[sim:whoami]]"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn attaches_through_a_directorys_info_json_and_never_stops_the_runtime() {
    let root = temp_dir("attach-json");
    let dir = root.join("sim");
    let port = free_port(0);
    let mut sim = Sim::start(&dir, &["--info-file", "json"], port, ".info.json");
    assert!(!dir.join(".info").exists(), "only .info.json is written");
    // No binary and no simulator of its own: an IDE's runtime is all it needs.
    let gw = GatewayProcess::start_with(Options {
        simulator: false,
        ..attached_to(&dir)
    });
    let inst = &gw.health()["instances"][0];
    assert_eq!(inst["attached"], true);
    assert_eq!(inst["port"].as_u64(), Some(port as u64));
    assert_eq!(inst["pid"].as_u64(), Some(sim.pid() as u64));
    assert_eq!(
        whoami(&gw),
        format!("instance sim pid {}", sim.pid()),
        "answered by the attached runtime"
    );
    let attach_line = format!(
        "ATTACHING to the running Lingma that {} names: port {port}, pid {}",
        dir.join(".info.json").display(),
        sim.pid()
    );
    assert!(gw.log_text().contains(&attach_line), "{}", gw.log_text());
    drop(gw);
    assert!(sim.running(), "an attached runtime must not be stopped");
    assert!(
        !sim.log().contains("SIGTERM"),
        "nor signalled: {}",
        sim.log()
    );
    sim.stop();
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn attaches_through_a_three_line_info_and_follows_the_runtime_to_its_new_port() {
    let root = temp_dir("attach-info3");
    let dir = root.join("sim");
    let first_port = free_port(0);
    let mut first = Sim::start(&dir, &["--info-file", "info3"], first_port, ".info");
    let info = std::fs::read_to_string(dir.join(".info")).unwrap();
    assert_eq!(info.lines().count(), 3, "{info:?}");
    let gw = GatewayProcess::start_with(attached_to(&dir));
    assert_eq!(
        gw.health()["instances"][0]["port"].as_u64(),
        Some(first_port as u64)
    );
    assert_eq!(whoami(&gw), format!("instance sim pid {}", first.pid()));
    gw.wait_log(&format!(
        "{} names: port {first_port}",
        dir.join(".info").display()
    ));

    // The runtime restarts (an IDE update, a crash) and comes back on another port.
    first.stop();
    let second_port = free_port(first_port);
    let mut second = Sim::start(&dir, &["--info-file", "info3"], second_port, ".info");
    gw.wait_log(&format!(
        "{} names: port {second_port}",
        dir.join(".info").display()
    ));
    gw.wait_ready(1);
    assert_eq!(
        whoami(&gw),
        format!("instance sim pid {}", second.pid()),
        "the next chat is answered by the restarted runtime"
    );
    let inst = &gw.health()["instances"][0];
    assert_eq!(inst["port"].as_u64(), Some(second_port as u64));
    assert!(inst["restarts"].as_u64().unwrap() >= 1, "{inst}");
    assert!(gw.log_text().contains("lost Lingma"), "{}", gw.log_text());
    drop(gw);
    assert!(second.running(), "an attached runtime must not be stopped");
    second.stop();
    let _ = std::fs::remove_dir_all(&root);
}

/// A simulator that takes only upgrades on `/ws` carrying its machine token.
fn strict_sim(root: &Path) -> (Sim, PathBuf) {
    let dir = root.join("sim");
    let opts = ["--ws-path", "/ws", "--ws-token-header", "Cosy-MachineToken"];
    let sim = Sim::start(&dir, &opts, free_port(0), ".info");
    let token_file = dir.join("cache/machine_token.json");
    assert!(token_file.is_file());
    (sim, token_file)
}

#[test]
fn a_runtime_that_wants_a_path_and_a_machine_token_is_reached_with_the_keys() {
    let root = temp_dir("attach-token");
    let (mut sim, token_file) = strict_sim(&root);
    let token: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&token_file).unwrap()).unwrap();
    let token = token["token"].as_str().unwrap().to_string();
    let mut opts = attached_to(&sim.dir)
        .env("lingma_ws_path", "/ws")
        .env("lingma_ws_header", "Cosy-MachineToken")
        .env("lingma_ws_header_file", &token_file.display().to_string());
    opts.log_level = "trace";
    let gw = GatewayProcess::start_with(opts);
    assert_eq!(whoami(&gw), format!("instance sim pid {}", sim.pid()));
    // At trace every Lingma frame is logged: a token pasted into a chat is redacted too.
    gw.assert_answers(&format!("is {token} my token?"));
    gw.wait_log("is <redacted> my token?");
    assert!(!sim.log().contains("refused"), "{}", sim.log());
    assert!(
        !gw.log_text().contains(&token),
        "the machine token must never be logged"
    );
    drop(gw);
    sim.stop();
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn without_the_path_or_the_token_the_instance_is_not_ready_and_says_why() {
    let root = temp_dir("attach-refused");
    let (mut sim, token_file) = strict_sim(&root);
    for (opts, refusal, status) in [
        (attached_to(&sim.dir), "path / is not /ws", "404"),
        (
            attached_to(&sim.dir).env("lingma_ws_path", "/ws"),
            "no Cosy-MachineToken header",
            "401",
        ),
    ] {
        let gw = GatewayProcess::start_with(Options {
            wait_ready: 0,
            ..opts.env("pool_wait_sec", "1")
        });
        gw.wait_log(&format!("HTTP error: {status}"));
        let inst = &gw.health()["instances"][0];
        assert_ne!(inst["state"], "ready", "{inst}");
        assert_eq!(gw.health()["ready"].as_u64(), Some(0));
        assert!(
            inst["last_error"].as_str().unwrap().contains(status),
            "{inst}"
        );
        wait_for("the simulator's refusal", || sim.log().contains(refusal));
        let r = gw.post("/v1/chat/completions", &chat_body("auto", "hello"));
        assert_eq!(r.status, 503, "{}", r.text());
    }
    assert!(token_file.is_file());
    assert!(sim.running());
    sim.stop();
    let _ = std::fs::remove_dir_all(&root);
}
