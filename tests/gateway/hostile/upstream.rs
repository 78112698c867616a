//! Finding 4: a long answer must not deadlock an instance. The simulator runs a turn without
//! delays on its connection's reader thread, so while it streams it reads nothing: the
//! gateway's replies to its `chat/answer` requests pile up in the socket until the gateway
//! can write no more, exactly the "Lingma blocked writing to us does not read" case. And
//! `[[sim:deaf]]` makes a Lingma stop reading for good (or for a while), so the gateway's
//! writes get stuck (or wait).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;

/// The `[[sim:chunks=N]]` answer: deltas `c1 ` to `cN ` (the empty deltas the simulator puts
/// in between carry no text).
fn chunks_answer(n: usize) -> String {
    (1..=n).map(|i| format!("c{i} ")).collect()
}

const LONG: usize = 100_000;

#[test]
fn a_hundred_thousand_delta_answer_streams_to_the_end() {
    let gw = GatewayProcess::start();
    let q = format!("[[sim:chunks={LONG}]]");
    let mut s = gw.post_stream("/v1/chat/completions", &stream_body("auto", &q));
    assert_eq!(s.status, 200);
    // Each read waits at most `WAIT`: a stream that stops fails here instead of hanging.
    let events = s.collect();
    let last = events.last().map(|e| e.data.clone()).unwrap_or_default();
    assert_eq!(
        last,
        "[DONE]",
        "the stream ended early after {} events",
        events.len()
    );
    let text = chat_stream_text(&events);
    assert_eq!(text.len(), chunks_answer(LONG).len(), "every delta arrived");
    assert!(text == chunks_answer(LONG), "every delta arrived, in order");
    // And the instance still answers.
    gw.assert_answers("still there?");
}

/// A client that pauses reading while Lingma writes a 100,000-delta answer as fast as it can:
/// what waits for it is the answer's text, not a parsed frame per delta (which took about
/// 170 MB here), and once it reads again it gets every delta.
#[test]
fn an_answer_waiting_for_a_paused_client_holds_its_text_not_its_frames() {
    let gw = GatewayProcess::start();
    let start = super::rss_kib(gw.pid());
    let q = format!("[[sim:chunks={LONG}]][[sim:first=1]]");
    let mut s = gw.post_stream("/v1/chat/completions", &stream_body("auto", &q));
    assert_eq!(s.status, 200);
    let first = s.next_event().expect("the first event");
    // The pause is the attack: the client reads nothing while the whole answer arrives.
    std::thread::sleep(Duration::from_secs(4));
    let held = super::rss_kib(gw.pid()).saturating_sub(start);
    assert!(
        held < 48 * 1024,
        "the gateway grew by {} MiB holding the answer for a paused client",
        held / 1024
    );
    let mut events = vec![first];
    events.extend(s.collect());
    assert_eq!(events.last().unwrap().data, "[DONE]");
    assert!(
        chat_stream_text(&events) == chunks_answer(LONG),
        "every delta, in order"
    );
}

/// The write deadline these tests run with (`lingma_write_timeout_sec`).
const WRITE_TIMEOUT_SEC: u64 = 2;
/// A question this big makes a `chat/ask` frame (which carries it twice) larger than the
/// socket buffers between the gateway and a Lingma that reads nothing can hold.
/// (`max_prompt_bytes` is raised to its ceiling to let it through.)
const BIG_QUESTION: usize = 8 << 20;
const PROMPT_CEILING: &str = "10485760";

/// What differs between the protocols here.
struct Protocol {
    path: &'static str,
    body: fn(&str) -> Value,
    /// Status and error type of an upstream failure before the first byte.
    status: u16,
    error_type: &'static str,
}

const OPENAI_CHAT: Protocol = Protocol {
    path: "/v1/chat/completions",
    body: |text| chat_body("auto", text),
    status: 502,
    error_type: "server_error",
};

const ANTHROPIC_MESSAGES: Protocol = Protocol {
    path: "/v1/messages",
    body: |text| messages_body("auto", text),
    status: 500,
    error_type: "api_error",
};

fn streamed(mut body: Value) -> Value {
    body["stream"] = json!(true);
    body
}

/// The answer text of stream events of either protocol.
fn text_of(events: &[SseEvent]) -> String {
    events
        .iter()
        .filter(|e| e.data != "[DONE]")
        .filter_map(|e| {
            let v = e.json();
            let text = match v["type"].as_str() {
                Some("content_block_delta") => v["delta"]["text"].as_str(),
                _ => v["choices"][0]["delta"]["content"].as_str(),
            };
            text.map(str::to_string)
        })
        .collect()
}

/// A Lingma that stops reading while a stream is in flight, then gets a question the gateway
/// cannot write whole: both clients hear of it in their protocol's shape within the deadline,
/// the instance is restarted, and the next question is answered.
fn a_deaf_lingma(p: &Protocol) {
    let opts = Options::default()
        .env("lingma_write_timeout_sec", &WRITE_TIMEOUT_SEC.to_string())
        .env("max_prompt_bytes", PROMPT_CEILING);
    let gw = GatewayProcess::start_with(opts);
    let health = gw.health();
    let (pid, restarts) = (
        &health["instances"][0]["pid"],
        &health["instances"][0]["restarts"],
    );
    // Two deltas, then silence, and from then on the simulator reads nothing.
    let q = "[[sim:deaf]][[sim:chunks=5]][[sim:stall=2]]";
    let mut stream = gw.post_stream(p.path, &streamed((p.body)(q)));
    assert_eq!(stream.status, 200);
    let mut seen = Vec::new();
    while text_of(&seen) != "c1 c2 " {
        seen.push(stream.next_event().expect("the deltas before the stall"));
    }
    gw.wait_sim_log("deaf, reading nothing more");
    let question = format!("{} hello", "x".repeat(BIG_QUESTION));
    let asked = Instant::now();
    let r = gw.post(p.path, &(p.body)(&question));
    let took = asked.elapsed();
    assert_eq!(r.status, p.status, "{}", r.text());
    let err = r.json();
    assert_eq!(err["error"]["type"], p.error_type, "{err}");
    let stuck = |v: &Value| {
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("writes to Lingma are stuck"))
    };
    assert!(stuck(&err), "the client is told why: {err}");
    // The deadline, plus generous slack for a busy machine: not a hang.
    let limit = Duration::from_secs(WRITE_TIMEOUT_SEC + 20);
    assert!(took < limit, "the error came after {took:?}");
    // From then on `/healthz` never calls the stuck connection ready.
    let now = gw.health();
    assert!(
        now["ready"] == 0 || now["instances"][0]["restarts"] != *restarts,
        "{now}"
    );
    // The stream in flight ends with an error event, nothing after the stall.
    let rest = stream.collect();
    let last = rest.last().expect("an error event").json();
    assert_eq!(last["error"]["type"], p.error_type, "{last}");
    assert!(stuck(&last), "{last}");
    assert_eq!(text_of(&rest), "");
    // The log says why, and the stuck process is replaced.
    gw.wait_log("[lingma-0] writes to Lingma are stuck");
    gw.wait_log("stopped reading its socket; stopping it to restart the instance");
    wait_for("the instance to restart", || {
        let now = gw.health();
        now["ready"] == 1 && now["instances"][0]["restarts"] != *restarts
    });
    assert_ne!(
        gw.health()["instances"][0]["pid"],
        *pid,
        "a new Lingma process"
    );
    let r = gw.post(p.path, &(p.body)("back?"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        !gw.log_text().contains("ignored SIGTERM"),
        "the deaf simulator stopped when told"
    );
}

#[test]
fn a_lingma_that_stops_reading_fails_openai_chats_with_errors_and_is_restarted() {
    a_deaf_lingma(&OPENAI_CHAT);
}

#[test]
fn a_lingma_that_stops_reading_fails_anthropic_messages_with_errors_and_is_restarted() {
    a_deaf_lingma(&ANTHROPIC_MESSAGES);
}

#[test]
fn a_lingma_that_stops_reading_for_less_than_the_deadline_is_waited_for() {
    let gw = GatewayProcess::start_with(Options::default().env("max_prompt_bytes", PROMPT_CEILING));
    // The default deadline (10 s) is well past the two seconds the simulator reads nothing.
    gw.assert_answers("pause [[sim:deaf=2000]]");
    gw.wait_sim_log("deaf, reading nothing for 2000 ms");
    let question = format!("{} hello", "x".repeat(BIG_QUESTION));
    let r = gw.post("/v1/chat/completions", &chat_body("auto", &question));
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json()["choices"][0]["message"]["content"].clone();
    let said = format!("You said: {}", &question[..20]);
    assert!(answer.as_str().unwrap().contains(&said), "{answer}");
    assert!(gw.sim_log(0).contains("reading again"));
    assert_eq!(gw.health()["instances"][0]["restarts"], 0);
    assert!(!gw.log_text().contains("writes to Lingma are stuck"));
}
