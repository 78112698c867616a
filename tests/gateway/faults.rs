//! The fault suite: every way the upstream can fail (crash, closed socket, garbage, an
//! oversized frame, a stall, a non-200 finish, a slow start), before and after the first
//! byte. For each: the client gets an error in its protocol's shape, never a hang or a
//! silent close; the instance comes back and answers; streams on other instances go on
//! untouched; and a failure before the first byte is retried once on another instance.

use serde_json::json;

use crate::harness::*;

/// The fault directives that break the instance itself (its socket or its process).
const BREAKING: [&str; 4] = ["crash", "close", "garbage", "oversize"];

fn two_instances() -> GatewayProcess {
    let opts = Options {
        instances: 2,
        wait_ready: 2,
        ..Default::default()
    };
    // A stalled Lingma is given up on after 2 s of silence.
    GatewayProcess::start_with(opts.env("idle_timeout_sec", "2"))
}

/// Which instance (0 or 1) conversations of `user` go to, from the simulator's `whoami`.
fn instance_of(gw: &GatewayProcess, user: &str) -> usize {
    let mut body = chat_body("auto", "where am I? [[sim:whoami]]");
    body["user"] = json!(user);
    let r = gw.post("/v1/chat/completions", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let who = r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let name = who.split_whitespace().nth(1).unwrap().to_string();
    name.strip_prefix("instance-").unwrap().parse().unwrap()
}

fn wait_all_ready(gw: &GatewayProcess, n: usize) {
    wait_for("every instance ready again", || gw.health()["ready"] == n);
}

fn restarts(gw: &GatewayProcess, i: usize) -> u64 {
    gw.health()["instances"][i]["restarts"].as_u64().unwrap()
}

#[test]
fn a_failure_before_the_first_byte_is_retried_once_on_another_instance() {
    let gw = two_instances();
    for (n, fault) in BREAKING.iter().enumerate() {
        for stream in [false, true] {
            wait_all_ready(&gw, 2);
            let user = format!("user-{fault}-{stream}");
            let home = instance_of(&gw, &user);
            let before = restarts(&gw, home);
            let asks = [gw.sim_asks(0), gw.sim_asks(1)];
            // The fault fires only on the conversation's own instance, before any delta.
            let q = format!("hello {n} [[sim:on=instance-{home}]] [[sim:{fault}=0]]");
            let mut body = if stream {
                stream_body("auto", &q)
            } else {
                chat_body("auto", &q)
            };
            body["user"] = json!(&user);
            let text = if stream {
                let mut s = gw.post_stream("/v1/chat/completions", &body);
                assert_eq!(s.status, 200, "{fault}: {}", s.body_json());
                let events = s.collect();
                assert_eq!(events.last().unwrap().data, "[DONE]", "{fault}");
                chat_stream_text(&events)
            } else {
                let r = gw.post("/v1/chat/completions", &body);
                assert_eq!(r.status, 200, "{fault}: {}", r.text());
                r.json()["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap()
                    .to_string()
            };
            // The client got the whole answer, from the other instance.
            assert_eq!(text, default_answer("Auto", &q), "{fault}");
            let other = 1 - home;
            assert_eq!(gw.sim_asks(home), asks[home] + 1, "{fault}");
            assert_eq!(gw.sim_asks(other), asks[other] + 1, "{fault}");
            gw.wait_log(&format!(
                "lingma-{home} failed before the answer's first byte"
            ));
            gw.wait_log(&format!("retrying once on lingma-{other}"));
            // The broken instance comes back, and the conversation's next turn is answered.
            wait_for("the failed instance to restart", || {
                restarts(&gw, home) > before
            });
        }
    }
    wait_all_ready(&gw, 2);
    gw.assert_answers("all well?");
}

#[test]
fn a_failure_everywhere_is_retried_only_once_and_reported_in_each_protocols_shape() {
    let gw = two_instances();
    // The fault fires on whichever instance gets it: one retry, then a clean 502.
    let r = gw.post(
        "/v1/chat/completions",
        &chat_body("auto", "[[sim:crash=0]]"),
    );
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "server_error");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Lingma"));
    assert_eq!(gw.sim_asks(0) + gw.sim_asks(1), 2, "one try, one retry");
    wait_all_ready(&gw, 2);
    let r = gw.post("/v1/messages", &messages_body("auto", "[[sim:close=0]]"));
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "api_error");
    assert_eq!(gw.sim_asks(0) + gw.sim_asks(1), 4);
    wait_all_ready(&gw, 2);
    gw.assert_answers("still here?");
}

#[test]
fn with_one_instance_there_is_nothing_to_retry_on() {
    let gw = GatewayProcess::start();
    let r = gw.post(
        "/v1/chat/completions",
        &chat_body("auto", "[[sim:oversize=0]]"),
    );
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "server_error");
    gw.wait_log("no other instance is ready to retry on");
    assert_eq!(gw.sim_asks(0), 1);
    wait_all_ready(&gw, 1);
    gw.assert_answers("back?");
}

#[test]
fn a_fault_mid_stream_leaves_streams_on_the_other_instance_untouched() {
    let gw = two_instances();
    for fault in BREAKING.iter().chain(&["stall"]) {
        wait_all_ready(&gw, 2);
        // A slow, healthy stream holds one instance...
        let mut healthy = gw.post_stream(
            "/v1/chat/completions",
            &stream_body("auto", "[[sim:chunks=30]] [[sim:delay=40]]"),
        );
        assert_eq!(healthy.status, 200);
        assert!(healthy.next_event().is_some());
        // ...so the faulty one goes to the other (the least busy), and fails after 3 deltas.
        let mut faulty = gw.post_stream(
            "/v1/chat/completions",
            &stream_body("auto", &format!("[[sim:chunks=30]] [[sim:{fault}=3]]")),
        );
        assert_eq!(faulty.status, 200, "{fault}");
        let events = faulty.collect();
        let last = events.last().unwrap();
        assert_ne!(last.data, "[DONE]", "{fault}");
        let err = last.json();
        assert!(err["error"]["message"].is_string(), "{fault}: {err}");
        assert!(
            ["server_error", "timeout_error"].contains(&err["error"]["type"].as_str().unwrap()),
            "{fault}: {err}"
        );
        assert!(
            chat_stream_text(&events).starts_with("c1 c2 "),
            "{fault}: what came before the fault was delivered"
        );
        // The other stream is whole: every chunk, in order, then [DONE].
        let rest = healthy.collect();
        assert_eq!(rest.last().unwrap().data, "[DONE]", "{fault}");
        let text = chat_stream_text(&rest);
        assert!(text.ends_with("c29 c30 "), "{fault}: {text}");
    }
    wait_all_ready(&gw, 2);
    gw.assert_answers("both fine?");
}

#[test]
fn non_200_finish_codes_are_errors_in_each_protocols_shape_and_not_retried() {
    let gw = two_instances();
    // (Lingma's statusCode, OpenAI status and type, Anthropic status and type)
    let cases = [
        (429, 429, "rate_limit_error", 429, "rate_limit_error"),
        (401, 403, "permission_error", 403, "permission_error"),
        (403, 403, "permission_error", 403, "permission_error"),
        (408, 504, "server_error", 504, "timeout_error"),
        (500, 502, "server_error", 500, "api_error"),
        (503, 502, "server_error", 500, "api_error"),
    ];
    for (code, o_status, o_type, a_status, a_type) in cases {
        let asks = gw.sim_asks(0) + gw.sim_asks(1);
        let q = format!("[[sim:status={code}]]");
        let r = gw.post("/v1/chat/completions", &chat_body("auto", &q));
        assert_eq!(r.status, o_status, "{code}: {}", r.text());
        assert_eq!(r.json()["error"]["type"], o_type, "{code}");
        let r = gw.post("/v1/responses", &json!({"model": "auto", "input": q}));
        assert_eq!(r.status, o_status, "{code}: {}", r.text());
        assert_eq!(r.json()["error"]["type"], o_type, "{code}");
        let r = gw.post("/v1/messages", &messages_body("auto", &q));
        assert_eq!(r.status, a_status, "{code}: {}", r.text());
        assert_eq!(r.json()["type"], "error");
        assert_eq!(r.json()["error"]["type"], a_type, "{code}");
        // Streams fail before their head: the same HTTP error, not a 200 stream.
        let mut body = messages_body("auto", &q);
        body["stream"] = json!(true);
        let s = gw.post_stream("/v1/messages", &body);
        assert_eq!(s.status, a_status, "{code}");
        assert_eq!(s.body_json()["error"]["type"], a_type, "{code}");
        // Lingma's answer is an answer: it is not asked again elsewhere.
        assert_eq!(gw.sim_asks(0) + gw.sim_asks(1), asks + 4, "{code}");
    }
    assert_eq!(gw.health()["ready"], 2);
    gw.assert_answers("fine?");
}

/// A "Lingma" that starts only once `hold` has passed: a shell condition polled every 0.1 s.
fn slow_lingma(dir: &std::path::Path, hold: &str) -> String {
    let script = dir.join("Lingma");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nwhile ! {hold}; do sleep 0.1; done\nexec {} simulate \"$@\"\n",
            BIN
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script.to_str().unwrap().to_string()
}

/// A gateway whose one Lingma starts only once the returned file exists.
fn gated_gateway(tag: &str, env: &[(&str, &str)]) -> (GatewayProcess, std::path::PathBuf) {
    let dir = temp_dir(tag);
    let gate = dir.join("go");
    let bin = slow_lingma(&dir, &format!("[ -e {} ]", gate.display()));
    let mut opts = Options {
        simulator: false,
        wait_ready: 0,
        ..Default::default()
    }
    .env("lingma_bin", &bin);
    for (k, v) in env {
        opts = opts.env(k, v);
    }
    (GatewayProcess::start_with(opts), gate)
}

#[test]
fn a_slow_start_is_waited_for_within_the_pool_wait() {
    let (gw, gate) = gated_gateway("slowstart", &[("pool_wait_sec", "30")]);
    assert_eq!(gw.health()["ready"], 0, "still starting");
    // Sent while Lingma is still starting: it waits for the instance, then is answered.
    let addr = gw.addr.clone();
    let early = std::thread::spawn(move || {
        request(
            &addr,
            "POST",
            "/v1/chat/completions",
            &[("content-type", "application/json")],
            Some(chat_body("auto", "early bird").to_string().as_bytes()),
        )
    });
    // Once it holds a chat slot it is waiting for an instance, and none can be ready before
    // the gate opens.
    wait_for(
        "the early request to be in flight, waiting for Lingma",
        || {
            let m = gw.get("/metrics");
            assert_eq!(m.status, 200, "{}", m.text());
            m.text()
                .lines()
                .any(|l| l == "lingma_gateway_in_flight_requests 1")
        },
    );
    assert!(!early.is_finished(), "it waits while Lingma starts");
    std::fs::write(&gate, "").unwrap();
    let r = early.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        default_answer("Auto", "early bird")
    );
}

#[test]
fn a_start_over_the_startup_timeout_is_a_clear_503_then_the_instance_comes_back() {
    let (gw, gate) = gated_gateway(
        "slowstart-timeout",
        &[("lingma_startup_timeout", "1"), ("pool_wait_sec", "0")],
    );
    wait_for("the startup timeout to be reported", || {
        gw.health()["instances"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("after 1s"))
    });
    for (path, body, status, kind) in [
        (
            "/v1/chat/completions",
            chat_body("auto", "now?"),
            503,
            "server_error",
        ),
        (
            "/v1/messages",
            messages_body("auto", "now?"),
            529,
            "overloaded_error",
        ),
    ] {
        let r = gw.post(path, &body);
        assert_eq!(r.status, status, "{}", r.text());
        assert!(r.header("retry-after").is_some());
        assert_eq!(r.json()["error"]["type"], kind, "{}", r.text());
        if path == "/v1/messages" {
            assert_eq!(r.json()["type"], "error");
        }
    }
    // Once Lingma starts promptly, the supervisor's next try brings it up, and the next
    // request is answered.
    std::fs::write(&gate, "").unwrap();
    gw.wait_ready(1);
    gw.assert_answers("ready now?");
}
