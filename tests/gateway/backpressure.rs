//! Backpressure: chat requests over `gateway_max_in_flight` wait in a queue up to
//! `gateway_queue_timeout_sec`, then get 429 with `Retry-After` in their protocol's shape.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

/// A stream that holds a chat slot for a while (its head is in: the slot is taken).
fn hold_slot(gw: &GatewayProcess, chunks: u32) -> Stream {
    let s = gw.post_stream(
        "/v1/chat/completions",
        &stream_body("auto", &format!("[[sim:chunks={chunks}]] [[sim:delay=50]]")),
    );
    assert_eq!(s.status, 200);
    s
}

fn metric(text: &str, line_prefix: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix)?.trim().parse().ok())
}

#[test]
fn over_the_cap_gets_429_with_retry_after_in_each_protocols_shape() {
    let gw = GatewayProcess::start_with(
        Options::default()
            .env("gateway_max_in_flight", "1")
            .env("gateway_queue_timeout_sec", "0"),
    );
    let held = hold_slot(&gw, 200);

    let r = gw.post("/v1/chat/completions", &chat_body("auto", "hello"));
    assert_eq!(r.status, 429, "{}", r.text());
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let body = r.json();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("maximum of 1"));

    let r = gw.post(
        "/v1/messages",
        &json!({"model": "auto", "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}]}),
    );
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    let body = r.json();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");

    // Routes that are not chats never queue.
    assert_eq!(gw.get("/healthz").status, 200);
    assert_eq!(gw.get("/v1/models").status, 200);
    // A request is counted just after its last byte is sent: wait for the scrape to see it.
    let deadline = Instant::now() + WAIT;
    let counted = "lingma_gateway_requests_total{route=\"/v1/messages\",protocol=\"anthropic\",status=\"429\"} 1";
    let m = loop {
        let m = gw.get("/metrics").text();
        if m.contains(counted) {
            break m;
        }
        assert!(Instant::now() < deadline, "{m}");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        metric(&m, "lingma_gateway_queue_rejected_total "),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "lingma_gateway_in_flight_requests "),
        Some(1.0),
        "{m}"
    );

    // Once the slot is free, requests pass again.
    drop(held);
    let deadline = Instant::now() + WAIT;
    loop {
        let r = gw.post("/v1/chat/completions", &chat_body("auto", "again"));
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 429);
        assert!(Instant::now() < deadline, "the slot never came back");
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn a_queued_request_that_gets_a_slot_in_time_is_answered() {
    let gw = GatewayProcess::start_with(
        Options::default()
            .env("gateway_max_in_flight", "1")
            .env("gateway_queue_timeout_sec", "30"),
    );
    let held = hold_slot(&gw, 400);
    let addr = gw.addr.clone();
    let waiter = std::thread::spawn(move || {
        let body = chat_body("auto", "queued question").to_string();
        request(
            &addr,
            "POST",
            "/v1/chat/completions",
            &[],
            Some(body.as_bytes()),
        )
    });
    // The queue is visible while it waits.
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = gw.get("/internal/stats").json();
        if stats["concurrency"]["queued"] == 1 {
            assert_eq!(stats["concurrency"]["in_flight"], 1);
            let m = gw.get("/metrics").text();
            assert_eq!(
                metric(&m, "lingma_gateway_queued_requests "),
                Some(1.0),
                "{m}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the request never queued: {stats}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The holder goes away; its slot passes to the waiting request.
    drop(held);
    let r = waiter.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("queued question"));
    let stats = gw.get("/internal/stats").json();
    assert_eq!(stats["concurrency"]["queued"], 0);
    assert_eq!(stats["concurrency"]["rejected"], 0);
}
