//! Finding 6: DNS rebinding. A gateway without API keys serves only requests addressed to
//! an IP address, localhost or an `allowed_hosts` name, and refuses a web page of another
//! site (its `Origin`); a login leaves the machine only with `admin_token`. A page whose
//! name was made to resolve to 127.0.0.1 sends its own name as `Host`, so these are the
//! requests it could make, each answered 403 in the route's protocol shape.

use std::io::Write;

use serde_json::json;

use super::smuggling::{error_shape, Conn};
use crate::harness::*;

const ADMIN: &str = "admin-rebinding";
const KEY: &str = "sk-rebinding";
const EXPORT: &str = "/internal/session/export?instance=lingma-0";

/// A request with exactly these headers (`Host` included); its answer.
fn send(
    gw: &GatewayProcess,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" {
        raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    raw.push_str("\r\n");
    raw.push_str(body);
    let mut c = Conn::open(&gw.addr);
    c.stream.write_all(raw.as_bytes()).unwrap();
    c.response(WAIT)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// The routes a rebound page would go for: (method, path, body).
fn targets() -> Vec<(&'static str, &'static str, String)> {
    vec![
        (
            "POST",
            "/v1/chat/completions",
            chat_body("auto", "rebound").to_string(),
        ),
        (
            "POST",
            "/v1/messages",
            messages_body("auto", "rebound").to_string(),
        ),
        ("GET", "/v1/models", String::new()),
        ("POST", EXPORT, String::new()),
    ]
}

/// `r` is a 403 in the protocol shape of `path`, and carries no login.
fn assert_forbidden(what: &str, path: &str, r: &Resp) {
    assert_eq!(r.status, 403, "{what}: {}", r.text());
    error_shape(path, r);
    assert!(!r.text().contains("bundle"), "{what}: {}", r.text());
}

/// `r` is the route's success.
fn assert_served(what: &str, path: &str, r: &Resp) {
    assert_eq!(r.status, 200, "{what}: {}", r.text());
    let v = r.json();
    match path {
        "/v1/chat/completions" => assert_eq!(
            v["choices"][0]["message"]["content"],
            default_answer("Auto", "rebound"),
            "{what}"
        ),
        "/v1/messages" => assert_eq!(
            v["content"][0]["text"],
            default_answer("Auto", "rebound"),
            "{what}"
        ),
        _ => assert_eq!(v["object"], "list", "{what}"),
    }
}

#[test]
fn without_keys_a_foreign_host_or_origin_is_refused() {
    let gw = GatewayProcess::start();
    let port = gw.addr.rsplit(':').next().unwrap().to_string();
    let asks = gw.sim_asks(0);
    let loopback = format!("127.0.0.1:{port}");
    let foreign_hosts = [
        "attacker.example".to_string(),
        format!("attacker.example:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
        format!("localhost.attacker.example:{port}"),
    ];
    for host in &foreign_hosts {
        for (method, path, body) in targets() {
            let what = format!("{method} {path} with Host {host}");
            let ct = ("Content-Type", "application/json");
            let r = send(&gw, method, path, &[("Host", host), ct], &body);
            assert_forbidden(&what, path, &r);
        }
    }
    // A page of another site, sending to the loopback address itself.
    for origin in [
        "https://attacker.example",
        "http://127.0.0.1.nip.io",
        "null",
    ] {
        for (method, path, body) in targets() {
            let what = format!("{method} {path} with Origin {origin}");
            let headers = [
                ("Host", loopback.as_str()),
                ("Origin", origin),
                ("Content-Type", "application/json"),
            ];
            let r = send(&gw, method, path, &headers, &body);
            assert_forbidden(&what, path, &r);
        }
    }
    assert_eq!(gw.sim_asks(0), asks, "a refused chat reached Lingma");
    // Loopback names, IP literals and loopback origins are served.
    let served_hosts = [
        loopback.clone(),
        format!("localhost:{port}"),
        "localhost".to_string(),
        format!("[::1]:{port}"),
        format!("app.localhost:{port}"),
        format!("LOCALHOST:{port}"),
        format!("192.168.1.5:{port}"),
    ];
    for host in &served_hosts {
        for (method, path, body) in targets().into_iter().take(3) {
            let what = format!("{method} {path} with Host {host}");
            let ct = ("Content-Type", "application/json");
            let r = send(&gw, method, path, &[("Host", host), ct], &body);
            assert_served(&what, path, &r);
        }
    }
    for origin in ["http://localhost:3000", "http://127.0.0.1:8080"] {
        let (method, path, body) = &targets()[0];
        let headers = [
            ("Host", loopback.as_str()),
            ("Origin", origin),
            ("Content-Type", "application/json"),
        ];
        let r = send(&gw, method, path, &headers, body);
        assert_served(&format!("Origin {origin}"), path, &r);
    }
}

#[test]
fn allowed_hosts_are_served_without_keys() {
    let gw =
        GatewayProcess::start_with(Options::default().env("allowed_hosts", "gw.lan,.corp.example"));
    let (method, path, body) = &targets()[0];
    let ct = ("Content-Type", "application/json");
    for host in [
        "gw.lan:8080",
        "gw.lan",
        "corp.example",
        "a.b.corp.example:80",
    ] {
        let r = send(&gw, method, path, &[("Host", host), ct], body);
        assert_served(&format!("Host {host}"), path, &r);
    }
    let r = send(
        &gw,
        method,
        path,
        &[("Host", "127.0.0.1"), ("Origin", "https://gw.lan"), ct],
        body,
    );
    assert_served("Origin https://gw.lan", path, &r);
    for host in ["xgw.lan", "evilcorp.example", "gw.lan.attacker.example"] {
        let r = send(&gw, method, path, &[("Host", host), ct], body);
        assert_forbidden(&format!("Host {host}"), path, &r);
    }
}

#[test]
fn exporting_a_login_always_needs_the_admin_token() {
    // Without admin_token, not even a loopback request exports it.
    let gw = GatewayProcess::start();
    let r = send(&gw, "POST", EXPORT, &[("Host", "127.0.0.1")], "");
    assert_forbidden("export without admin_token", EXPORT, &r);
    drop(gw);
    // With admin_token and API keys: only the admin token exports it.
    let gw = GatewayProcess::start_with(Options {
        key: Some(KEY.into()),
        ..Options::default().env("admin_token", ADMIN)
    });
    let key = format!("Bearer {KEY}");
    let admin = format!("Bearer {ADMIN}");
    for (what, auth) in [("no credential", None), ("an API key", Some(key.as_str()))] {
        let mut headers = vec![("Host", "127.0.0.1")];
        headers.extend(auth.map(|a| ("Authorization", a)));
        let r = send(&gw, "POST", EXPORT, &headers, "");
        assert!(
            matches!(r.status, 401 | 403),
            "export with {what}: {}",
            r.text()
        );
        error_shape(EXPORT, &r);
        assert!(!r.text().contains("bundle"), "{}", r.text());
    }
    let r = send(
        &gw,
        "POST",
        EXPORT,
        &[("Host", "127.0.0.1"), ("Authorization", &admin)],
        "",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["bundle_b64"].is_string());
}

#[test]
fn with_api_keys_a_foreign_host_is_served_when_the_key_is_right() {
    let gw = GatewayProcess::start_with(Options {
        key: Some(KEY.into()),
        ..Options::default()
    });
    let key = format!("Bearer {KEY}");
    let ct = ("Content-Type", "application/json");
    for (method, path, body) in targets().into_iter().take(3) {
        let headers = [("Host", "gateway.example.com"), ("Authorization", &key), ct];
        let r = send(&gw, method, path, &headers, &body);
        assert_served(&format!("{method} {path}"), path, &r);
        let r = send(
            &gw,
            method,
            path,
            &[("Host", "gateway.example.com"), ct],
            &body,
        );
        assert_eq!(r.status, 401, "{method} {path} without the key");
    }
}

#[test]
fn a_cors_simple_cross_site_post_cannot_export_the_login() {
    // What a page can send without a preflight: a text/plain POST, with its Origin, to the
    // loopback address or to its own rebound name.
    let simple = |host: &'static str| {
        [
            ("Host", host),
            ("Origin", "https://attacker.example"),
            ("Content-Type", "text/plain"),
        ]
    };
    let body = json!({"instance": "lingma-0"}).to_string();
    let keyless = GatewayProcess::start();
    let with_admin = GatewayProcess::start_with(Options::default().env("admin_token", ADMIN));
    for gw in [&keyless, &with_admin] {
        for host in ["127.0.0.1", "attacker.example"] {
            let r = send(gw, "POST", EXPORT, &simple(host), &body);
            assert!(
                matches!(r.status, 401 | 403),
                "Host {host}: {} {}",
                r.status,
                r.text()
            );
            error_shape(EXPORT, &r);
            assert!(!r.text().contains("bundle"), "{}", r.text());
        }
    }
}
