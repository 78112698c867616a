//! Lingma's sessions are cleaned up: a conversation that leaves the session cache, or that
//! can never be continued, has its Lingma session deleted (`chat/deleteSessionById`), so the
//! simulator's session count (its log's `sessions=N`) stays bounded.

use serde_json::Value;

use crate::harness::*;

fn answer(v: &Value) -> String {
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no answer: {v}"))
        .to_string()
}

/// The session a `[[sim:turn]]` chat ran in.
fn session_of(gw: &GatewayProcess, text: &str) -> String {
    let v = gw
        .post("/v1/chat/completions", &chat_body("auto", text))
        .json();
    turn(&answer(&v)).1
}

/// The simulator's session count as its last log line that says it.
fn sessions(log: &str) -> Option<usize> {
    let line = log.lines().rev().find(|l| l.contains(" sessions="))?;
    let n = &line[line.rfind(" sessions=").unwrap() + " sessions=".len()..];
    n.split_whitespace().next()?.parse().ok()
}

#[test]
fn an_evicted_conversation_is_deleted_upstream() {
    let gw = GatewayProcess::start_with(Options::default().env("session_cache_max_entries", "1"));
    let first = session_of(&gw, "first conversation [[sim:turn]]");
    // The second conversation's entry takes the only place: the first one's session goes.
    let second = session_of(&gw, "second conversation [[sim:turn]]");
    gw.wait_sim_log(&format!(
        "chat/deleteSessionById sessionId={first} deleted=true"
    ));
    assert!(
        !gw.sim_log(0)
            .contains(&format!("chat/deleteSessionById sessionId={second}")),
        "the cached conversation keeps its session"
    );
}

#[test]
fn the_session_count_stays_bounded_over_a_thousand_one_shot_chats() {
    let gw = GatewayProcess::start_with(Options::default().env("session_reuse_enabled", "false"));
    for i in 0..1000 {
        let v = gw
            .post(
                "/v1/chat/completions",
                &chat_body("auto", &format!("one-shot {i}")),
            )
            .json();
        assert!(!answer(&v).is_empty());
    }
    wait_for("the simulator's sessions to be deleted", || {
        sessions(&gw.sim_log(0)).is_some_and(|n| n <= 24)
    });
    let log = gw.sim_log(0);
    assert_eq!(log.matches(" new session ").count(), 1000);
    assert!(log.matches("chat/deleteSessionById").count() >= 976);
    let stats = gw.get("/internal/stats").json();
    let cleanup = &stats["session_cleanup"];
    assert_eq!(cleanup["enabled"], true, "{stats}");
    assert!(cleanup["deleted"].as_u64().unwrap() >= 976, "{stats}");
    assert_eq!(cleanup["dropped"], 0, "{stats}");
}

#[test]
fn with_the_key_off_sessions_stay() {
    let gw = GatewayProcess::start_with(
        Options::default()
            .env("session_reuse_enabled", "false")
            .env("lingma_delete_sessions", "false"),
    );
    gw.assert_answers("keep me");
    let probe = gw
        .post("/v1/chat/completions", &chat_body("auto", "and me"))
        .json();
    assert!(!answer(&probe).is_empty());
    let log = gw.sim_log(0);
    assert!(!log.contains("chat/deleteSessionById"), "{log}");
    let stats = gw.get("/internal/stats").json();
    assert_eq!(
        stats["session_cleanup"],
        serde_json::json!({"enabled": false})
    );
    assert_eq!(sessions(&log), Some(2), "{log}");
}

#[test]
fn cached_conversations_are_deleted_at_shutdown() {
    let mut gw = GatewayProcess::start();
    let kept = session_of(&gw, "remember me [[sim:turn]]");
    assert!(!gw.sim_log(0).contains("chat/deleteSessionById"));
    gw.terminate();
    let log = gw.sim_log(0);
    assert!(
        log.contains(&format!(
            "chat/deleteSessionById sessionId={kept} deleted=true"
        )),
        "{log}"
    );
}

#[test]
fn an_expired_conversation_is_deleted_without_another_request() {
    let gw = GatewayProcess::start_with(Options::default().env("session_cache_ttl_sec", "1"));
    let expired = session_of(&gw, "forget me soon [[sim:turn]]");
    gw.wait_sim_log(&format!(
        "chat/deleteSessionById sessionId={expired} deleted=true"
    ));
    assert_eq!(sessions(&gw.sim_log(0)), Some(0));
}

/// The session ids the simulator created, in order.
fn created(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split(" new session ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn a_failed_answer_leaves_no_session() {
    let gw = GatewayProcess::start();
    let r = gw.post(
        "/v1/chat/completions",
        &chat_body("auto", "busy [[sim:status=429]]"),
    );
    assert_eq!(r.status, 429, "{}", r.text());
    let session = created(&gw.sim_log(0))
        .pop()
        .expect("a session was started");
    gw.wait_sim_log(&format!(
        "chat/deleteSessionById sessionId={session} deleted=true sessions=0"
    ));
}

#[test]
fn an_abandoned_stream_leaves_no_session() {
    // The keep-alive is how the gateway notices the client left.
    let gw = GatewayProcess::start_with(Options::default().env("stream_keepalive_sec", "1"));
    let mut s = gw.post_stream(
        "/v1/chat/completions",
        &serde_json::json!({"model": "auto", "stream": true,
            "messages": [{"role": "user", "content": "hold on [[sim:stall=2]]"}]}),
    );
    assert_eq!(s.status, 200);
    assert!(s.next_event().is_some());
    drop(s);
    gw.wait_sim_log("reached 1 generation(s)");
    let session = created(&gw.sim_log(0)).pop().unwrap();
    gw.wait_sim_log(&format!(
        "chat/deleteSessionById sessionId={session} deleted=true"
    ));
}

#[test]
fn a_forced_choice_retry_deletes_the_first_try_and_keeps_the_answer() {
    let gw = GatewayProcess::start();
    let body = serde_json::json!({
        "model": "auto",
        "messages": [{"role": "user", "content": "How is the weather? [[sim:lazy]]"}],
        "tools": [{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                "required": ["location"]}}}],
        "tool_choice": "required",
    });
    let v = gw.post("/v1/chat/completions", &body).json();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    let sessions = created(&gw.sim_log(0));
    assert_eq!(sessions.len(), 2, "the retry is a new session");
    gw.wait_sim_log(&format!(
        "chat/deleteSessionById sessionId={} deleted=true",
        sessions[0]
    ));
    assert!(
        !gw.sim_log(0)
            .contains(&format!("chat/deleteSessionById sessionId={}", sessions[1])),
        "the answer's session is cached for the next turn"
    );
}
