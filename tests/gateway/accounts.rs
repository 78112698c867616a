//! Accounts and login: the auth gate, auto-login through a real headless Chromium against the
//! simulator's login page, wrong passwords, session bundles exported and brought up on a
//! fresh instance, and malicious bundles refused.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::json;

use crate::harness::*;

const ADMIN: &str = "adm-accounts-7f3c";
const USER: &str = "alice@example.com";
const PASSWORD: &str = "wonder-pass-91";

fn logged_out(extra: &[(&str, &str)]) -> Options {
    let mut o = Options::default()
        .env("admin_token", ADMIN)
        .env("auto_login_timeout", "60");
    o.env.push(("LINGMA_SIM_LOGGED_OUT".into(), "1".into()));
    o.env.push(("LINGMA_SIM_LOGIN_USER".into(), USER.into()));
    o.env
        .push(("LINGMA_SIM_LOGIN_PASSWORD".into(), PASSWORD.into()));
    for (k, v) in extra {
        o = o.env(k, v);
    }
    o
}

fn admin(gw: &GatewayProcess, method: &str, path: &str) -> Resp {
    request(
        &gw.addr,
        method,
        path,
        &[("Authorization", &format!("Bearer {ADMIN}"))],
        None,
    )
}

/// Auto-login drives Debian's chromium through chromedriver. The tests that need them are
/// `#[ignore]`d (a machine without the browser lists them as ignored); run with
/// `cargo test -- --include-ignored` (CI does), a missing browser fails them.
fn require_browser() {
    for bin in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            Path::new(bin).is_file(),
            "{bin} is missing: apt-get install chromium chromium-driver"
        );
    }
}

#[test]
fn a_logged_out_instance_gets_401_with_guidance_in_each_protocol() {
    let gw = GatewayProcess::start_with(logged_out(&[]));
    let r = gw.post("/v1/chat/completions", &chat_body("auto", "hi"));
    assert_eq!(r.status, 401, "{}", r.text());
    let e = &r.json()["error"];
    assert_eq!(e["code"], "lingma_not_logged_in");
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("lingma-0 is not logged in"), "{msg}");
    assert!(msg.contains("login-url --instance lingma-0"), "{msg}");
    let r = gw.post(
        "/v1/messages",
        &json!({"model": "auto", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "authentication_error");
    assert_eq!(gw.get("/v1/models").status, 401);
    let r = admin(&gw, "GET", "/internal/models/raw");
    assert_eq!(
        r.status,
        401,
        "the raw model list passes the gate too: {}",
        r.text()
    );
    // Exporting a login that does not exist is a conflict.
    let r = admin(&gw, "POST", "/internal/session/export?instance=lingma-0");
    assert_eq!(r.status, 409, "{}", r.text());
    // A person can still get the login URL.
    let r = admin(&gw, "GET", "/internal/login-url?instance=lingma-0");
    assert_eq!(r.status, 200, "{}", r.text());
    let url = r.json()["login_url"].as_str().unwrap().to_string();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("/login?"),
        "{url}"
    );
    // The CLI asks the running gateway (same config: here its port and admin token).
    let port = gw.addr.rsplit(':').next().unwrap();
    let cli = |token: &str| {
        Command::new(BIN)
            .args(["login-url", "--instance", "lingma-0", "--simulator"])
            .env("LINGMA_GATEWAY_PORT", port)
            .env("LINGMA_GATEWAY_ADMIN_TOKEN", token)
            .current_dir(&gw.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = cli(ADMIN);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.trim().starts_with("http://127.0.0.1:") && printed.contains("/login?"),
        "{printed}"
    );
    let wrong = cli("not-the-token");
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("answered 401"));
}

#[test]
#[ignore = "needs chromium and chromedriver: apt-get install chromium chromium-driver"]
fn auto_login_drives_chromium_through_the_login_page_and_the_next_chat_succeeds() {
    require_browser();
    let gw = GatewayProcess::start_with(logged_out(&[
        ("auto_login_enabled", "true"),
        ("account_main_username", USER),
        ("account_main_password", PASSWORD),
    ]));
    // The first chat finds the instance logged out, logs it in, then is answered.
    let r = gw.post("/v1/chat/completions", &chat_body("auto", "after login"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        default_answer("Auto", "after login")
    );
    let status = admin(&gw, "GET", "/internal/auto-login/status").json();
    let inst = &status["instances"][0];
    assert_eq!(inst["phase"], "logged_in", "{status}");
    assert_eq!(inst["account"], "main");
    assert_eq!(inst["attempts"], 1);
    assert!(gw.sim_log(0).contains(&format!("login ok for user {USER}")));
    assert_eq!(gw.get("/v1/models").status, 200);
    // The password is in no log line and no endpoint.
    assert!(
        !gw.log_text().contains(PASSWORD),
        "password in the gateway log"
    );
    assert!(
        !gw.sim_log(0).contains(PASSWORD),
        "password in the simulator log"
    );
    for path in ["/internal/auto-login/status", "/internal/effective-config"] {
        assert!(!admin(&gw, "GET", path).text().contains(PASSWORD), "{path}");
    }
}

#[test]
#[ignore = "needs chromium and chromedriver: apt-get install chromium chromium-driver"]
fn a_wrong_password_fails_cleanly_after_the_configured_retries() {
    require_browser();
    let gw = GatewayProcess::start_with(logged_out(&[
        ("auto_login_enabled", "true"),
        ("auto_login_max_retry", "1"),
        ("account_main_username", USER),
        ("account_main_password", "not-the-password"),
    ]));
    let r = gw.post("/v1/chat/completions", &chat_body("auto", "hi"));
    assert_eq!(r.status, 401, "{}", r.text());
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("auto-login failed"), "{msg}");
    assert!(msg.contains("Wrong user name or password"), "{msg}");
    let status = admin(&gw, "GET", "/internal/auto-login/status").json();
    assert_eq!(status["instances"][0]["phase"], "failed", "{status}");
    assert_eq!(
        status["instances"][0]["attempts"], 2,
        "one try and one retry"
    );
    let failures = gw
        .sim_log(0)
        .matches(&format!("login failed for user {USER}"))
        .count();
    assert_eq!(failures, 2);
    assert!(!gw.log_text().contains("not-the-password"));
    // The gateway is still serving: health, and the instance is still up.
    assert_eq!(gw.get("/healthz").status, 200);
}

#[test]
fn an_exported_bundle_brings_a_fresh_instance_up_logged_in() {
    // A logged-in instance (the simulator's default test account) exports its login...
    let a = GatewayProcess::start_with(Options::default().env("admin_token", ADMIN));
    let r = admin(&a, "POST", "/internal/session/export?instance=lingma-0");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["instance"], "lingma-0");
    let b64 = v["bundle_b64"].as_str().unwrap().to_string();
    assert!(v["raw_bytes"].as_u64().unwrap() > 0);
    assert!(
        !a.log_text().contains(&b64[..40]),
        "the bundle is never logged"
    );
    // ...and a fresh gateway whose simulator keeps whatever login its workDir has (none of
    // its own) comes up logged in from the bundle alone.
    let mut o = Options::default()
        .env("admin_token", ADMIN)
        .env("account_main_session_bundle", &b64);
    o.env.push(("LINGMA_SIM_KEEP_LOGIN".into(), "1".into()));
    let b = GatewayProcess::start_with(o);
    let r = b.post("/v1/chat/completions", &chat_body("auto", "bundled"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(b.log_text().contains("session bundle unpacked"));
    let shown = admin(&b, "GET", "/internal/effective-config").text();
    assert!(
        !shown.contains(&b64[..40]),
        "the bundle is redacted in effective-config"
    );
    // Without the bundle, the same kind of fresh instance is logged out.
    let mut o = Options::default().env("admin_token", ADMIN);
    o.env.push(("LINGMA_SIM_KEEP_LOGIN".into(), "1".into()));
    let c = GatewayProcess::start_with(o);
    assert_eq!(
        c.post("/v1/chat/completions", &chat_body("auto", "x"))
            .status,
        401
    );
}

/// A gzip'd tar with one entry whose name is written raw (no path checks).
fn evil_bundle(name: &str, kind: u8, link: &str) -> String {
    let mut header = tar::Header::new_old();
    {
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    header.set_size(if kind == b'0' { 4 } else { 0 });
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::new(kind));
    header.set_cksum();
    let mut raw = Vec::new();
    raw.extend_from_slice(header.as_bytes());
    if kind == b'0' {
        let mut data = b"evil".to_vec();
        data.resize(512, 0);
        raw.extend_from_slice(&data);
    }
    raw.extend_from_slice(&[0; 1024]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
}

#[test]
fn malicious_bundles_stop_startup_and_write_nothing_outside() {
    for (what, b64) in [
        ("traversal", evil_bundle("../../escaped.txt", b'0', "")),
        (
            "absolute path",
            evil_bundle("/tmp/lgw-absolute-escape.txt", b'0', ""),
        ),
        ("symlink escape", evil_bundle("cache", b'2', "/tmp")),
    ] {
        let dir = temp_dir("evil");
        let out = Command::new(BIN)
            .args(["serve", "--simulator", "--port", "0", "--work-dir"])
            .arg(dir.join("work"))
            .env("LINGMA_GATEWAY_ACCOUNT_MAIN_SESSION_BUNDLE", &b64)
            .env_remove("LINGMA_GATEWAY_API_KEYS")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert!(
            stderr.contains("account.main.session_bundle"),
            "{what}: the error names the key: {stderr}"
        );
        assert!(
            !stderr.contains(&b64[..20]),
            "{what}: the bundle is not echoed"
        );
        // Nothing landed outside the instance's workDir.
        assert!(
            !dir.join("escaped.txt").exists()
                && !dir.parent().unwrap().join("escaped.txt").exists()
        );
        assert!(!Path::new("/tmp/lgw-absolute-escape.txt").exists());
        let listing: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(listing, ["work"], "{what}: only the workDir was created");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Logs instance `n` out behind the gateway's back, over its own WebSocket (as if its login
/// expired).
fn log_out_directly(gw: &GatewayProcess, n: usize) {
    let info = std::fs::read_to_string(gw.dir.join(format!("work/instance-{n}/.info"))).unwrap();
    let port: u16 = info.lines().next().unwrap().trim().parse().unwrap();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (mut ws, _) =
        tungstenite::client(format!("ws://127.0.0.1:{port}/"), tcp).expect("handshake");
    let body =
        json!({"jsonrpc": "2.0", "id": 1, "method": "auth/logout", "params": {}}).to_string();
    let frame = format!("Content-Length: {}\r\n\r\n{body}", body.len());
    ws.send(tungstenite::Message::text(frame)).unwrap();
    loop {
        let msg = ws.read().unwrap().into_text().unwrap();
        if msg.contains("\"id\":1") {
            assert!(msg.contains("success"), "{msg}");
            break;
        }
    }
}

#[test]
fn requests_go_to_a_logged_in_instance_when_another_lost_its_login() {
    let gw = GatewayProcess::start_with(
        Options {
            instances: 2,
            wait_ready: 2,
            ..Options::default()
        }
        .env("auth_recheck_sec", "1"),
    );
    // The instance that answers a conversation (the `user` hint keeps it on one), and the
    // whole response.
    let ask = |hint: &str| {
        let mut body = chat_body("auto", "who? [[sim:whoami]]");
        body["user"] = json!(hint);
        let r = gw.post("/v1/chat/completions", &body);
        let who = (r.status == 200).then(|| {
            r.json()["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .split_whitespace()
                .nth(1)
                .unwrap()
                .to_string()
        });
        (who, r)
    };
    let whoami = |hint: &str| {
        let (who, r) = ask(hint);
        who.unwrap_or_else(|| panic!("{}: {}", r.status, r.text()))
    };
    // Both serve while both are logged in.
    let served: Vec<(String, String)> = (0..6)
        .map(|i| format!("u{i}"))
        .map(|hint| (whoami(&hint), hint))
        .collect();
    let mut seen: Vec<String> = served.iter().map(|(who, _)| who.clone()).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["instance-0", "instance-1"]);
    let (_, on_one) = served.iter().find(|(who, _)| who == "instance-1").unwrap();
    log_out_directly(&gw, 1);
    // While the gate still trusts instance-1's login (auth_recheck_sec), its conversations
    // still go there and Lingma refuses them; once the trust runs out they move to
    // instance-0 instead of failing.
    wait_for(
        "instance-1's conversation to move to instance-0 once the gate stopped trusting its login",
        || ask(on_one).0.as_deref() == Some("instance-0"),
    );
    for i in 0..6 {
        assert_eq!(whoami(&format!("u{i}")), "instance-0");
    }
    assert!(gw
        .log_text()
        .contains("lingma-1 is not logged in; serving from lingma-0 instead"));
    // /v1/models too.
    for _ in 0..4 {
        assert_eq!(gw.get("/v1/models").status, 200);
    }
}
