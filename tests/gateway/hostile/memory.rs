//! Finding 5: memory bounded by configuration, not by what clients send. Bodies of hundreds
//! of thousands of tiny values are refused before they are parsed, message and content-part
//! counts and the prompt have limits, each answered in its protocol's shape naming the
//! parameter or the limit; the Responses store is bounded in bytes; and after the attack
//! bodies RSS comes back near where it started.

use std::thread;

use serde_json::{json, Value};

use super::{peak_kib, rss_kib};
use crate::harness::*;

/// The three chat APIs: path, whether it answers in Anthropic's shape, and the name of its
/// list of messages.
const ROUTES: [(&str, bool, &str); 3] = [
    ("/v1/chat/completions", false, "messages"),
    ("/v1/messages", true, "messages"),
    ("/v1/responses", false, "input"),
];

/// A body for `path` whose messages (or input items) are `messages`, raw JSON texts.
fn body(path: &str, messages: impl Iterator<Item = String>) -> Vec<u8> {
    let list: Vec<String> = messages.collect();
    let list = list.join(",");
    match path {
        "/v1/messages" => format!(r#"{{"model":"auto","max_tokens":64,"messages":[{list}]}}"#),
        "/v1/responses" => format!(r#"{{"model":"auto","input":[{list}]}}"#),
        _ => format!(r#"{{"model":"auto","messages":[{list}]}}"#),
    }
    .into_bytes()
}

/// `n` one-word user messages: the attack's shape.
fn tiny_messages(path: &str, n: usize) -> Vec<u8> {
    body(
        path,
        (0..n).map(|_| r#"{"role":"user","content":"hello"}"#.to_string()),
    )
}

/// One user message of `n` text parts.
fn many_parts(path: &str, n: usize) -> Vec<u8> {
    let kind = if path == "/v1/responses" {
        "input_text"
    } else {
        "text"
    };
    let part = format!(r#"{{"type":"{kind}","text":"a"}}"#);
    let parts = vec![part; n].join(",");
    body(
        path,
        std::iter::once(format!(r#"{{"role":"user","content":[{parts}]}}"#)),
    )
}

fn post_raw(gw: &GatewayProcess, path: &str, body: &[u8]) -> Resp {
    request(&gw.addr, "POST", path, &[], Some(body))
}

/// `r` is an error with `status` in the route's own shape, naming `param` (OpenAI's `param`;
/// Anthropic's shape has none, so its message must name it), with `needle` in its message.
fn assert_refused(r: &Resp, path: &str, status: u16, param: &str, needle: &str) {
    assert_eq!(r.status, status, "{path}: {}", r.text());
    let b = r.json();
    let message = b["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "{path}: {b}");
    if path == "/v1/messages" {
        assert_eq!(b["type"], "error", "{b}");
        let kind = if status == 413 {
            "request_too_large"
        } else {
            "invalid_request_error"
        };
        assert_eq!(b["error"]["type"], kind, "{b}");
        assert!(message.contains(param), "{path}: {b}");
    } else {
        assert_eq!(b["error"]["type"], "invalid_request_error", "{b}");
        assert_eq!(b["error"]["param"], param, "{b}");
    }
}

fn assert_chats(gw: &GatewayProcess) {
    for (path, _, _) in ROUTES {
        let r = post_raw(gw, path, &tiny_messages(path, 1));
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
}

/// The attack of the finding: 27 MB bodies of 800,000 one-word messages, one at a time and
/// four at once per API. Each is refused (413, naming the value limit) before it is parsed;
/// the gateway's RSS never goes far beyond the bodies themselves (four of them, at most
/// 32 MiB each: the documented ceiling is 384 MiB over the start) and comes back near its
/// start after. Unfixed, each body parsed into 1.2 GB, and glibc kept it.
#[test]
fn bodies_of_800000_tiny_messages_are_refused_and_rss_comes_back() {
    let gw = GatewayProcess::start();
    assert_chats(&gw);
    let pid = gw.pid();
    let start = rss_kib(pid);
    for (path, _, _) in ROUTES {
        let attack = tiny_messages(path, 800_000);
        assert!(attack.len() > 27_000_000, "about 27 MB");
        let r = post_raw(&gw, path, &attack);
        assert_refused(&r, path, 413, "body", "more than 500000 values");
        thread::scope(|s| {
            let four: Vec<_> = (0..4)
                .map(|_| s.spawn(|| post_raw(&gw, path, &attack)))
                .collect();
            for t in four {
                let r = t.join().unwrap();
                assert_refused(&r, path, 413, "body", "500000 values");
            }
        });
    }
    let peak = peak_kib(pid);
    eprintln!("RSS: {start} KiB at the start, peak {peak} KiB");
    assert!(
        peak < start + 384 * 1024,
        "peak RSS {peak} KiB, from {start} KiB at the start"
    );
    wait_for("RSS back within 32 MiB of its start", || {
        rss_kib(pid) < start + 32 * 1024
    });
    assert_chats(&gw);
}

/// More messages (or input items) than the limit, or more content parts in all: a 400 naming
/// the list, in each API; at the limit, an answer.
#[test]
fn too_many_messages_or_content_parts_get_a_400_naming_the_parameter() {
    let gw = GatewayProcess::start();
    for (path, _, list) in ROUTES {
        let r = post_raw(&gw, path, &tiny_messages(path, 50_001));
        assert_refused(&r, path, 400, list, "maximum length 50000");
        let r = post_raw(&gw, path, &many_parts(path, 100_001));
        assert_refused(&r, path, 400, list, "at most 100000 content parts");
        let r = post_raw(&gw, path, &tiny_messages(path, 50_000));
        assert_eq!(r.status, 200, "{path} at the limit: {}", r.text());
    }
}

/// A prompt over `max_prompt_bytes` is refused in each API's shape, before Lingma sees it.
#[test]
fn a_prompt_over_max_prompt_bytes_gets_a_400() {
    let gw = GatewayProcess::start_with(Options::default().env("max_prompt_bytes", "4096"));
    let asks = gw.sim_asks(0);
    for (path, anthropic, _) in ROUTES {
        let long = body(
            path,
            std::iter::once(json!({"role": "user", "content": "x".repeat(5000)}).to_string()),
        );
        let r = post_raw(&gw, path, &long);
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        let b = r.json();
        let message = b["error"]["message"].as_str().unwrap();
        assert!(message.contains("max_prompt_bytes"), "{b}");
        if anthropic {
            assert_eq!(b["error"]["type"], "invalid_request_error", "{b}");
        } else {
            assert_eq!(b["error"]["code"], "context_length_exceeded", "{b}");
        }
    }
    assert_eq!(gw.sim_asks(0), asks, "nothing reached Lingma");
    for (path, _, _) in ROUTES {
        let short = body(
            path,
            std::iter::once(json!({"role": "user", "content": "x".repeat(3000)}).to_string()),
        );
        assert_eq!(post_raw(&gw, path, &short).status, 200, "{path}");
    }
}

fn response(gw: &GatewayProcess, body: &Value) -> Resp {
    gw.post("/v1/responses", body)
}

/// A Responses body whose input is `bytes` long (the simulator's `turn` answer is short).
fn big_input(bytes: usize, tag: &str) -> Value {
    json!({"model": "auto", "input": format!("{tag} [[sim:turn]] {}", "x".repeat(bytes))})
}

/// With `responses_store_max_bytes` of 4 MiB, storing three 1.5 MiB inputs drops the oldest:
/// continuing it is the normal 400 naming `previous_response_id`, while the newest still
/// continues; a continuation shares its conversation's turns, so it takes no room for them
/// and the second stays too. A response larger than the whole bound is answered but not
/// stored.
#[test]
fn the_responses_store_is_bounded_in_bytes() {
    let gw =
        GatewayProcess::start_with(Options::default().env("responses_store_max_bytes", "4194304"));
    let id = |r: Resp| {
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["id"].as_str().unwrap().to_string()
    };
    let first = id(response(&gw, &big_input(3 << 19, "first")));
    let second = id(response(&gw, &big_input(3 << 19, "second")));
    let third = id(response(&gw, &big_input(3 << 19, "third")));
    let go_on = |id: &str| {
        response(
            &gw,
            &json!({"model": "auto", "previous_response_id": id, "input": "go on [[sim:turn]]"}),
        )
    };
    let r = go_on(&first);
    assert_eq!(r.status, 400, "{}", r.text());
    let e = &r.json()["error"];
    assert_eq!(e["param"], "previous_response_id", "{e}");
    assert_eq!(e["code"], "previous_response_not_found", "{e}");
    assert_eq!(gw.get(&format!("/v1/responses/{first}")).status, 404);
    for (id, what) in [(&third, "the newest"), (&second, "the second")] {
        let r = go_on(id);
        assert_eq!(r.status, 200, "{what} continues: {}", r.text());
        assert_eq!(
            turn(&output_text(&r.json())).0,
            2,
            "{what}: on its own session"
        );
    }

    let huge = id(response(&gw, &big_input(5 << 20, "huge")));
    let r = go_on(&huge);
    assert_eq!(r.status, 400, "larger than the store: never stored");
    assert_eq!(r.json()["error"]["param"], "previous_response_id");
}

fn output_text(r: &Value) -> String {
    r["output"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["text"].as_str().map(String::from))
        .collect()
}
