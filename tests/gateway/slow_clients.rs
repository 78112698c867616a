//! Slow and idle clients: request head and body deadlines, and the connection cap. Hundreds
//! of connections that say nothing, or trickle a byte at a time, must not stop real
//! requests from being served.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::*;

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// Reads until the server closes (or resets) the connection; what arrived before that.
/// Fails the test if the server keeps it open.
fn read_to_close(mut s: TcpStream) -> String {
    let mut out = Vec::new();
    if let Err(e) = s.read_to_end(&mut out) {
        assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "the server kept the connection open"
        );
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A real client's requests, checked as it would: every one answered correctly.
fn real_requests_are_served(gw: &GatewayProcess, n: usize) {
    for i in 0..n {
        let q = format!("real {i}");
        if i % 2 == 0 {
            let r = gw.post("/v1/chat/completions", &chat_body("auto", &q));
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(
                r.json()["choices"][0]["message"]["content"],
                default_answer("Auto", &q)
            );
        } else {
            let mut s = gw.post_stream("/v1/chat/completions", &stream_body("auto", &q));
            assert_eq!(s.status, 200);
            let events = s.collect();
            assert_eq!(events.last().unwrap().data, "[DONE]");
            assert_eq!(chat_stream_text(&events), default_answer("Auto", &q));
        }
    }
}

#[test]
fn five_hundred_idle_and_trickling_connections_do_not_stop_real_requests() {
    let gw = GatewayProcess::start_with(Options::default().env("client_header_timeout_sec", "2"));
    // 250 connections that never send a byte.
    let idle: Vec<TcpStream> = (0..250).map(|_| connect(&gw.addr)).collect();
    // 250 that start a request head and then send one byte at a time.
    let trickling: Vec<TcpStream> = (0..250)
        .map(|_| {
            let mut s = connect(&gw.addr);
            s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<TcpStream> = trickling.iter().map(|s| s.try_clone().unwrap()).collect();
    let stop2 = Arc::clone(&stop);
    let trickler = std::thread::spawn(move || {
        let mut writers = writers;
        let mut cut = vec![false; writers.len()];
        while !stop2.load(Ordering::SeqCst) && cut.iter().any(|c| !c) {
            for (w, cut) in writers.iter_mut().zip(cut.iter_mut()) {
                if !*cut && w.write_all(b"a").is_err() {
                    *cut = true;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    // Meanwhile, real clients are served.
    real_requests_are_served(&gw, 20);
    assert_eq!(gw.health()["status"], "ok");
    // The trickling heads are cut at their deadline: the server ends each connection.
    for s in trickling {
        let got = read_to_close(s);
        assert!(
            got.is_empty() || got.starts_with("HTTP/1.1 408"),
            "a trickling head ends with 408 or a close, got {got:?}"
        );
    }
    stop.store(true, Ordering::SeqCst);
    trickler.join().unwrap();
    gw.wait_log("took too long to send its request head");
    drop(idle);
    real_requests_are_served(&gw, 2);
}

#[test]
fn a_stalled_request_head_gets_408_at_its_deadline() {
    let gw = GatewayProcess::start_with(Options::default().env("client_header_timeout_sec", "1"));
    let mut s = connect(&gw.addr);
    // Half a head, then silence (well within the 60 s socket timeout).
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let got = read_to_close(s);
    assert!(got.starts_with("HTTP/1.1 408"), "{got:?}");
    gw.assert_answers("still serving?");
}

#[test]
fn a_stalled_request_body_gets_408_at_its_deadline() {
    let gw = GatewayProcess::start_with(Options::default().env("client_body_timeout_sec", "1"));
    // A large body (read by the handler): 408 in the route's protocol shape.
    for (path, shape) in [
        ("/v1/chat/completions", "openai"),
        ("/v1/messages", "anthropic"),
    ] {
        let mut s = connect(&gw.addr);
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{{\"model\":"
        );
        s.write_all(head.as_bytes()).unwrap();
        let got = read_to_close(s);
        assert!(got.starts_with("HTTP/1.1 408"), "{got:?}");
        let body = &got[got.find("\r\n\r\n").unwrap() + 4..];
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        match shape {
            "openai" => assert_eq!(v["error"]["type"], "invalid_request_error", "{v}"),
            _ => {
                assert_eq!(v["type"], "error", "{v}");
                assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
            }
        }
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not arrive in time"));
    }
    // A small body (read before the handler sees the request): a bare 408.
    let mut s = connect(&gw.addr);
    s.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{",
    )
    .unwrap();
    let got = read_to_close(s);
    assert!(got.starts_with("HTTP/1.1 408"), "{got:?}");
    gw.wait_log("took too long to send its request body");
    gw.assert_answers("still serving?");
}

#[test]
fn at_the_connection_cap_idle_connections_make_room_and_busy_ones_get_503() {
    let gw = GatewayProcess::start_with(Options::default().env("max_connections", "16"));
    // Far more idle connections than the cap: each new one closes the longest-waiting.
    let idle: Vec<TcpStream> = (0..100).map(|_| connect(&gw.addr)).collect();
    real_requests_are_served(&gw, 6);
    gw.wait_log("closing the longest-waiting one that serves no request");
    drop(idle);
    // Sixteen connections each serving a slow stream: the cap is all busy.
    let body = stream_body("auto", "[[sim:chunks=40]] [[sim:delay=100]]");
    let mut held: Vec<Stream> = Vec::new();
    for _ in 0..16 {
        let mut s = gw.post_stream("/v1/chat/completions", &body);
        assert_eq!(s.status, 200);
        assert!(s.next_event().is_some());
        held.push(s);
    }
    // Idle connections from before may still be closing; the refusal comes once they are.
    wait_for("a refusal at the cap", || {
        let r = try_request(&gw.addr, "GET", "/v1/models", &[], None);
        match r {
            Ok(r) if r.status == 503 => {
                assert_eq!(r.header("retry-after"), Some("1"));
                let v = r.json();
                assert_eq!(v["type"], "error");
                assert_eq!(v["error"]["type"], "overloaded_error");
                assert!(v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("connections"));
                true
            }
            _ => false,
        }
    });
    gw.wait_log("all serving requests: refusing a new one");
    // The held streams are whole, and once they end the gateway serves again.
    for mut s in held {
        let events = s.collect();
        assert_eq!(events.last().unwrap().data, "[DONE]");
    }
    real_requests_are_served(&gw, 2);
}
