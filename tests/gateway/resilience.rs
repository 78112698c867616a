//! Unhappy paths on purpose: Lingma failing, crashing, stalling, closing its socket; clients
//! going away; load spread over instances.

use std::time::Instant;

use serde_json::json;

use crate::harness::*;

#[test]
fn lingma_status_codes_become_openai_errors_with_the_right_status() {
    let gw = GatewayProcess::start();
    for (code, status, kind) in [
        (429, 429, "rate_limit_error"),
        (403, 403, "permission_error"),
        (500, 502, "server_error"),
    ] {
        let r = gw.post(
            "/v1/chat/completions",
            &chat_body("auto", &format!("[[sim:status={code}]]")),
        );
        assert_eq!(r.status, status, "{}", r.text());
        assert_eq!(r.json()["error"]["type"], kind);
        if code == 429 {
            assert!(r.header("retry-after").is_some());
        }
        // Before the first byte a stream request gets the same HTTP error, not a 200 stream.
        let s = gw.post_stream(
            "/v1/chat/completions",
            &stream_body("auto", &format!("[[sim:status={code}]]")),
        );
        assert_eq!(s.status, status);
        assert_eq!(s.body_json()["error"]["type"], kind);
    }
}

#[test]
fn content_filter_finish_is_a_finish_reason_not_an_error() {
    let gw = GatewayProcess::start();
    let r = gw.post(
        "/v1/chat/completions",
        &chat_body("auto", "[[sim:status=406]]"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["choices"][0]["finish_reason"], "content_filter");
}

#[test]
fn crash_mid_stream_gives_an_error_event_then_the_instance_comes_back() {
    let gw = GatewayProcess::start();
    let before = gw.health()["instances"][0]["pid"].as_u64().unwrap();
    let mut s = gw.post_stream(
        "/v1/chat/completions",
        &stream_body("auto", "[[sim:chunks=20]] [[sim:crash=4]]"),
    );
    assert_eq!(s.status, 200);
    let events = s.collect();
    let last = events.last().expect("some events");
    let err = last.json();
    assert!(
        err["error"]["message"].as_str().unwrap().contains("Lingma"),
        "{err}"
    );
    assert_eq!(err["error"]["type"], "server_error");
    assert!(
        !chat_stream_text(&events).is_empty(),
        "the text before the crash was delivered"
    );
    assert!(events.iter().all(|e| e.data != "[DONE]"));
    // A non-stream request during the crash fails cleanly too, never hangs.
    let r = gw.post(
        "/v1/chat/completions",
        &chat_body("auto", "[[sim:crash=1]]"),
    );
    assert_eq!(r.status, 502, "{}", r.text());
    // The supervisor respawns Lingma and the next request is answered.
    wait_for("a new Lingma process", || {
        let h = gw.health();
        h["ready"] == 1 && h["instances"][0]["pid"].as_u64() != Some(before)
    });
    assert!(gw.health()["instances"][0]["restarts"].as_u64().unwrap() >= 1);
    let r = gw.post("/v1/chat/completions", &chat_body("auto", "Back?"));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        default_answer("Auto", "Back?")
    );
}

#[test]
fn socket_closed_mid_stream_reconnects_to_the_same_process() {
    let gw = GatewayProcess::start();
    let pid = gw.health()["instances"][0]["pid"].as_u64().unwrap();
    let mut s = gw.post_stream(
        "/v1/chat/completions",
        &stream_body("auto", "[[sim:chunks=20]] [[sim:close=3]]"),
    );
    let events = s.collect();
    assert!(events.last().unwrap().json()["error"]["message"].is_string());
    wait_for("reconnect", || {
        gw.health()["instances"][0]["restarts"].as_u64() >= Some(1) && gw.health()["ready"] == 1
    });
    assert_eq!(
        gw.health()["instances"][0]["pid"].as_u64(),
        Some(pid),
        "same process, new socket"
    );
    gw.assert_answers("again");
}

#[test]
fn garbage_from_lingma_fails_the_request_and_recovers() {
    let gw = GatewayProcess::start();
    let r = gw.post(
        "/v1/chat/completions",
        &chat_body("auto", "[[sim:chunks=10]] [[sim:garbage=2]]"),
    );
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "server_error");
    wait_for("ready again", || {
        let h = gw.health();
        h["ready"] == 1 && h["instances"][0]["restarts"].as_u64() >= Some(1)
    });
    gw.assert_answers("fine");
}

#[test]
fn stalled_upstream_times_out_with_an_error() {
    let gw = GatewayProcess::start_with(
        Options::default()
            .env("idle_timeout_sec", "1")
            .env("first_token_timeout_sec", "1"),
    );
    let r = gw.post(
        "/v1/chat/completions",
        &chat_body("auto", "[[sim:stall=0]]"),
    );
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "timeout");
    let mut s = gw.post_stream(
        "/v1/chat/completions",
        &stream_body("auto", "[[sim:stall=2]]"),
    );
    assert_eq!(s.status, 200);
    let events = s.collect();
    assert!(events.last().unwrap().json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("timed out"));
    // The gateway told Lingma to stop both stalled answers.
    wait_for("two chat/stop", || gw.sim_stops(0) >= 2);
    gw.assert_answers("next");
}

#[test]
fn client_disconnect_mid_stream_sends_chat_stop_and_frees_the_slot() {
    let gw = GatewayProcess::start();
    let mut s = gw.post_stream(
        "/v1/chat/completions",
        &stream_body("auto", "[[sim:chunks=100000]] [[sim:delay=5]]"),
    );
    assert_eq!(s.status, 200);
    assert!(s.next_event().is_some());
    assert_eq!(gw.health()["instances"][0]["in_flight"], 1);
    drop(s);
    gw.wait_sim_stop();
    wait_for("slot freed", || {
        gw.health()["instances"][0]["in_flight"] == 0
    });
    gw.wait_log(" 499 ");
}

#[test]
fn two_instances_share_load() {
    let opts = Options {
        instances: 2,
        wait_ready: 2,
        ..Default::default()
    };
    let gw = GatewayProcess::start_with(opts.env("stream_keepalive_sec", "1"));
    // Hold one instance busy with a stalled stream.
    let mut held = gw.post_stream(
        "/v1/chat/completions",
        &stream_body("auto", "hold [[sim:stall=1]]"),
    );
    assert!(held.next_event().is_some());
    let busy: Vec<u64> = gw.health()["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["in_flight"].as_u64().unwrap())
        .collect();
    let busy_idx = busy
        .iter()
        .position(|n| *n == 1)
        .expect("one instance busy");
    // A different conversation goes to the idle instance.
    let v = gw
        .post(
            "/v1/chat/completions",
            &chat_body("auto", "who? [[sim:whoami]]"),
        )
        .json();
    let who = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        who.starts_with(&format!("instance instance-{}", 1 - busy_idx)),
        "{who}"
    );
    // Hanging up on a silent stream frees its instance: keep-alives notice the client left.
    drop(held);
    wait_for("the held instance to be freed", || {
        gw.health()["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["in_flight"] == 0)
    });
    gw.wait_sim_stop();
    // Sequential conversations with different first messages rotate over both.
    let mut seen = std::collections::HashSet::new();
    for i in 0..4 {
        let v = gw
            .post(
                "/v1/chat/completions",
                &chat_body("auto", &format!("conv {i} [[sim:whoami]]")),
            )
            .json();
        seen.insert(
            v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .split(" pid")
                .next()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[test]
fn same_user_sticks_to_one_instance() {
    let gw = GatewayProcess::start_with(Options {
        instances: 2,
        wait_ready: 2,
        ..Default::default()
    });
    let mut first = None;
    for i in 0..4 {
        let mut body = chat_body("auto", &format!("q{i} [[sim:whoami]]"));
        body["user"] = json!("alice");
        let v = gw.post("/v1/chat/completions", &body).json();
        let who = v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(first.get_or_insert(who.clone()), &who);
    }
}

#[test]
fn no_ready_instance_is_503_after_the_pool_wait() {
    // A "Lingma" that exits at once never becomes ready.
    let opts = Options {
        simulator: false,
        wait_ready: 0,
        ..Default::default()
    };
    let gw = GatewayProcess::start_with(
        opts.env("lingma_bin", "/bin/true")
            .env("pool_wait_sec", "1"),
    );
    let r = gw.post("/v1/chat/completions", &chat_body("auto", "anyone?"));
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.json()["error"]["type"], "server_error");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no Lingma instance is ready"));
    let h = request(&gw.addr, "GET", "/healthz", &[], None);
    assert_eq!(h.status, 503);
    wait_for("the startup failure to be reported", || {
        gw.health()["instances"][0]["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("exited during startup")
    });
}

#[test]
fn requests_over_max_workers_get_503_with_retry_after() {
    let opts = Options::default()
        .env("max_workers", "1")
        .env("stream_keepalive_sec", "1");
    let gw = GatewayProcess::start_with(opts);
    // The worker that answered the last /healthz poll may not have clocked out yet, so the
    // first attempt can itself be the one over the cap.
    let deadline = Instant::now() + WAIT;
    let mut held = loop {
        let s = gw.post_stream(
            "/v1/chat/completions",
            &stream_body("auto", "[[sim:stall=1]]"),
        );
        if s.status == 200 {
            break s;
        }
        assert_eq!(s.status, 503);
        assert!(Instant::now() < deadline, "the only worker never came free");
    };
    assert!(held.next_event().is_some());
    let r = gw.post("/v1/chat/completions", &chat_body("auto", "one too many"));
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("maximum of 1"));
    drop(held);
}
