//! The binary's command line, configuration errors, attaching to a running Lingma, and an
//! orderly shutdown that leaves no Lingma process behind.

use std::io::BufRead;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = temp_dir("cli");
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(&dir).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("LINGMA_GATEWAY_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn help_explains_every_flag_and_key() {
    let (code, out, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    for flag in [
        "--config",
        "--simulator",
        "--port",
        "--host",
        "--instances",
        "--lingma-bin",
        "--log-level",
        "check-config",
        "simulate",
    ] {
        assert!(out.contains(flag), "--help lacks {flag}");
    }
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.ini")).unwrap();
    for line in shipped.lines() {
        if let Some((key, _)) = line.trim_start_matches([';', ' ']).split_once(" = ") {
            if !key.contains(' ') && !key.starts_with('[') {
                assert!(out.contains(key.trim()), "--help lacks key {key}");
            }
        }
    }
}

#[test]
fn bad_configuration_is_a_clear_error_naming_the_key() {
    let (code, _, err) = run(&["--simulator"], &[("LINGMA_GATEWAY_PORT", "eighty")]);
    assert_eq!(code, 2);
    assert!(
        err.contains("LINGMA_GATEWAY_PORT") && err.contains("`port`"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let dir = temp_dir("ini");
    let ini = dir.join("bad.ini");
    std::fs::write(
        &ini,
        "[gateway]\nport = 8080\napi_keys = sk-hidden-value\n\n[lingma]\ninstance_count = many\n",
    )
    .unwrap();
    let (code, _, err) = run(&["--config", ini.to_str().unwrap(), "--simulator"], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("bad.ini:6") && err.contains("instance_count") && err.contains("many"),
        "{err}"
    );
    assert!(!err.contains("sk-hidden-value"));

    let (code, _, err) = run(&[], &[]);
    assert_eq!(code, 2, "no lingma_bin and no simulator");
    assert!(
        err.contains("lingma_bin") && err.contains("simulator"),
        "{err}"
    );

    std::fs::write(
        &ini,
        "[gateway]\napi_keys = sk-hidden-value\n[lingma]\nsimulator = true\n",
    )
    .unwrap();
    let (code, out, _) = run(&["check-config", "--config", ini.to_str().unwrap()], &[]);
    assert_eq!(code, 0);
    assert!(
        out.contains("api_keys = <redacted>") && !out.contains("sk-hidden-value"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn simulator_use_is_logged_loudly_and_no_keys_warns() {
    let gw = GatewayProcess::start();
    let log = gw.log_text();
    assert!(log.contains("USING THE BUNDLED LINGMA SIMULATOR"), "{log}");
    assert!(log.contains("NO API KEYS CONFIGURED"));
}

fn pid_alive(pid: u64) -> bool {
    // The /proc entry exists until the process is reaped, so a zombie counts as alive.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.split_whitespace().nth(2) != Some("X"))
}

#[test]
fn sigterm_stops_the_gateway_and_reaps_lingma() {
    let mut gw = GatewayProcess::start_with(Options {
        instances: 2,
        wait_ready: 2,
        ..Default::default()
    });
    let pids: Vec<u64> = gw.health()["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["pid"].as_u64().unwrap())
        .collect();
    assert!(pids.iter().all(|p| pid_alive(*p)));
    let status = gw.terminate();
    assert_eq!(status.code(), Some(0));
    // The simulators were terminated and reaped (no zombie, no orphan).
    for p in pids {
        let deadline = Instant::now() + WAIT;
        while pid_alive(p) {
            assert!(
                Instant::now() < deadline,
                "Lingma pid {p} outlived the gateway"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert!(gw.log_text().contains("stopped"));
}

#[test]
fn attaches_to_an_already_running_lingma() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = temp_dir("attach");
    let mut sim = Command::new(BIN)
        .args(["simulate", "start", "--workDir"])
        .arg(dir.join("sim"))
        .arg(format!("--socketPort={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while std::fs::read_to_string(dir.join("sim/.info")).is_err() {
        assert!(Instant::now() < deadline, "simulator did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let gw =
        GatewayProcess::start_with(Options::default().env("lingma_socket_port", &port.to_string()));
    let inst = &gw.health()["instances"][0];
    assert_eq!(inst["attached"], true);
    assert_eq!(inst["port"].as_u64(), Some(port as u64));
    let v = gw
        .post("/v1/chat/completions", &chat_body("auto", "[[sim:whoami]]"))
        .json();
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .starts_with("instance sim "));
    drop(gw);
    // The gateway did not own it, so it is still running.
    assert!(
        sim.try_wait().unwrap().is_none(),
        "an attached Lingma must not be killed"
    );
    let _ = sim.kill();
    let _ = sim.wait();
    let mut lines = std::io::BufReader::new(sim.stderr.take().unwrap()).lines();
    assert!(lines.next().is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_relative_work_dir_is_relative_to_the_gateways_directory() {
    // Lingma runs in its own binary's directory; a relative workDir must still mean ours.
    let gw = GatewayProcess::start_with(Options {
        relative_work_dir: true,
        ..Default::default()
    });
    assert!(gw.dir.join("work/instance-0/.info").is_file());
    gw.assert_answers("Hi");
}

#[test]
fn shutdown_lets_streams_finish_and_refuses_new_requests() {
    let mut gw = GatewayProcess::start_with(Options::default().env("shutdown_grace_sec", "20"));
    let mut s = gw.post_stream(
        "/v1/chat/completions",
        &stream_body("auto", "[[sim:chunks=15]] [[sim:delay=100]]"),
    );
    assert_eq!(s.status, 200);
    assert!(s.next_event().is_some());
    gw.signal_term();
    gw.wait_log("shutting down");
    let r = gw.post("/v1/chat/completions", &chat_body("auto", "too late"));
    assert_eq!(r.status, 503);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("shutting down"));
    // The stream that was running when the signal came is answered in full.
    let rest = s.collect();
    assert_eq!(rest.last().unwrap().data, "[DONE]");
    let text: String = chat_stream_text(&rest);
    assert!(text.ends_with("c15 "), "{text}");
    assert_eq!(gw.terminate().code(), Some(0));
}

#[test]
fn sigint_past_the_grace_cuts_streams_with_an_error_event_and_reaps_lingma() {
    let mut gw = GatewayProcess::start_with(Options::default().env("shutdown_grace_sec", "1"));
    let pid = gw.health()["instances"][0]["pid"].as_u64().unwrap();
    // A stream that would take 20 s, far past the 1 s grace.
    let mut s = gw.post_stream(
        "/v1/chat/completions",
        &stream_body("auto", "[[sim:chunks=100]] [[sim:delay=200]]"),
    );
    assert_eq!(s.status, 200);
    assert!(s.next_event().is_some());
    gw.signal(rustix::process::Signal::INT);
    // The client is told, in the protocol's shape, rather than cut off silently.
    let rest = s.collect();
    let last = rest.last().expect("an event after the signal");
    assert_ne!(last.data, "[DONE]");
    assert!(last.json()["error"]["message"].is_string(), "{}", last.data);
    assert!(!chat_stream_text(&rest).contains("c100"));
    assert_eq!(gw.wait_exit().code(), Some(0));
    gw.wait_log("still running after 1s; closing them");
    let deadline = Instant::now() + WAIT;
    while pid_alive(pid) {
        assert!(Instant::now() < deadline, "Lingma outlived the gateway");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_during_a_slow_lingma_start_stops_promptly_and_kills_it() {
    // A "Lingma" that never writes .info: the gateway is stuck in its startup wait.
    let dir = temp_dir("slow");
    let script = dir.join("Lingma");
    let pidfile = dir.join("pid");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho $$ > {}\nexec sleep 1000\n",
            pidfile.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let opts = Options {
        simulator: false,
        wait_ready: 0,
        ..Default::default()
    };
    let mut gw = GatewayProcess::start_with(
        opts.env("lingma_bin", script.to_str().unwrap())
            .env("lingma_startup_timeout", "600"),
    );
    let deadline = Instant::now() + WAIT;
    let pid: u64 = loop {
        if let Some(p) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            break p;
        }
        assert!(Instant::now() < deadline, "the fake Lingma never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(gw.health()["instances"][0]["state"], "starting");
    // With a 600 s startup timeout, only abandoning the wait lets this return in time.
    assert_eq!(gw.terminate().code(), Some(0));
    let deadline = Instant::now() + WAIT;
    while pid_alive(pid) {
        assert!(
            Instant::now() < deadline,
            "the starting Lingma outlived the gateway"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `NAME=value` pairs of a process's environment.
fn environ(pid: u64) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap()
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

#[test]
fn the_gateway_tunes_glibc_malloc_for_itself_only_and_leaves_an_operators_choice_alone() {
    let tunables = |pid: u64| {
        environ(pid)
            .into_iter()
            .find_map(|e| e.strip_prefix("GLIBC_TUNABLES=").map(str::to_string))
    };
    let lingma = |gw: &GatewayProcess| gw.health()["instances"][0]["pid"].as_u64().unwrap();
    // By default: the gateway runs (same pid, re-executed) with one arena and no tcache...
    let gw = GatewayProcess::start();
    // (glibc rewrites the variable in place as it reads it, so /proc shows only part.)
    let own = tunables(gw.pid() as u64).expect("GLIBC_TUNABLES on the gateway");
    assert!(own.starts_with("glibc.malloc.arena_max=1"), "{own}");
    gw.wait_log("glibc malloc: one arena, no per-thread cache");
    // ...and Lingma does not inherit it.
    assert_eq!(tunables(lingma(&gw)), None);
    gw.assert_answers("tuned?");
    // An operator's own settings stay as they are.
    let gw = GatewayProcess::start_with(Options {
        env: vec![("GLIBC_TUNABLES".into(), "glibc.malloc.arena_max=4".into())],
        ..Default::default()
    });
    assert_eq!(
        tunables(gw.pid() as u64).as_deref(),
        Some("glibc.malloc.arena_max=4")
    );
    gw.wait_log("the operator's GLIBC_TUNABLES/MALLOC_ARENA_MAX apply");
    // And `malloc_tuning = false` leaves glibc's defaults.
    let gw = GatewayProcess::start_with(Options::default().env("malloc_tuning", "false"));
    assert_eq!(tunables(gw.pid() as u64), None);
    gw.assert_answers("untuned?");
}
