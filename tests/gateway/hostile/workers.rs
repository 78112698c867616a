//! Finding 2: no worker waits on a slow client. Heads without a key followed by a trickled
//! body, keyed bodies trickled a byte at a time, clients that stop reading a long answer,
//! and a body that stops half way: meanwhile `/healthz` is answered within a second (the
//! issue's bound), real chats are answered, and once the slow clients are cut the workers
//! serve again. When every worker is busy, new requests get an answer (a 503 at worst).

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::probe_health;
use super::smuggling::{error_shape, unless_busy, Conn};
use crate::harness::*;

const KEY: &str = "sk-workers";
/// The bound for a liveness probe's answer.
const PROBE_BOUND: Duration = Duration::from_secs(1);
/// How long the probes run while an attack is on.
const PROBING: Duration = Duration::from_secs(4);
/// Connections each attack opens.
const ATTACKERS: usize = 120;

fn gateway(opts: Options) -> GatewayProcess {
    GatewayProcess::start_with(Options {
        key: Some(KEY.into()),
        ..opts
            .env("max_workers", "8")
            .env("gateway_max_in_flight", "4")
    })
}

/// `/healthz` every 200 ms for `span`: each probe is answered within `PROBE_BOUND` with a
/// status in `ok`. The statuses.
fn probes_are_answered(addr: &str, span: Duration, ok: &[u16]) -> Vec<u16> {
    let until = Instant::now() + span;
    let mut statuses = Vec::new();
    let mut n = 0;
    while Instant::now() < until {
        let (status, took) =
            probe_health(addr).unwrap_or_else(|e| panic!("probe {n} got no answer: {e}"));
        assert!(ok.contains(&status), "probe {n}: status {status}");
        statuses.push(status);
        assert!(
            took < PROBE_BOUND,
            "probe {n} was answered only after {took:?}"
        );
        n += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(n >= 5, "only {n} probes ran");
    statuses
}

/// A keyed chat is answered correctly.
fn chat_is_answered(gw: &GatewayProcess, q: &str) {
    let r = gw.post("/v1/chat/completions", &chat_body("auto", q));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        default_answer("Auto", q)
    );
}

/// A keyed chat is answered correctly, once a worker is free (see `unless_busy`).
fn chat_is_answered_unless_busy(gw: &GatewayProcess, q: &str) {
    let r = unless_busy(
        || gw.post("/v1/chat/completions", &chat_body("auto", q)),
        |r| r.status,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        default_answer("Auto", q)
    );
}

/// `n` connections that each sent `head`.
fn open_attackers(addr: &str, n: usize, head: &str) -> Vec<Conn> {
    (0..n)
        .map(|_| {
            let mut c = Conn::open(addr);
            c.stream.write_all(head.as_bytes()).unwrap();
            c
        })
        .collect()
}

/// Sends one body byte on each connection every 2 s until `stop` (a write that fails means
/// the server closed that one).
fn trickle(conns: Vec<TcpStream>, stop: &AtomicBool) {
    let mut open = vec![true; conns.len()];
    while !stop.load(Ordering::SeqCst) {
        for (mut c, open) in conns.iter().zip(open.iter_mut()) {
            if *open && c.write_all(b"a").is_err() {
                *open = false;
            }
        }
        let next = Instant::now() + Duration::from_secs(2);
        while Instant::now() < next && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Runs `during` while `conns` trickle their bodies.
fn while_trickling(conns: &[Conn], during: impl FnOnce()) {
    let writers: Vec<TcpStream> = conns
        .iter()
        .map(|c| c.stream.try_clone().unwrap())
        .collect();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| trickle(writers, &stop));
        // Stop the trickle even when `during` fails.
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _stop = Stop(&stop);
        during();
    });
}

#[test]
fn keyless_heads_with_a_trickled_body_hold_no_worker() {
    let gw = gateway(Options::default());
    let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n";
    let mut attackers = open_attackers(&gw.addr, ATTACKERS, head);
    while_trickling(&attackers, || {
        probes_are_answered(&gw.addr, PROBING, &[200]);
        chat_is_answered(&gw, "while keyless bodies trickle");
    });
    // Each was refused without its body being read, and closed.
    for (i, c) in attackers.iter_mut().enumerate() {
        let (answers, _) = c
            .until_close(WAIT)
            .unwrap_or_else(|e| panic!("attacker {i}: {e}"));
        let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
        // 401, or 503 for those that came while the workers were busy with the others.
        assert!(
            matches!(statuses[..], [401 | 503]),
            "attacker {i}: {statuses:?}"
        );
        error_shape("/v1/chat/completions", &answers[0]);
    }
    chat_is_answered(&gw, "after the keyless bodies");
}

#[test]
fn keyed_bodies_trickled_a_byte_at_a_time_hold_no_worker() {
    let gw = gateway(Options::default());
    let head = format!("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{{\"model\":");
    let attackers = open_attackers(&gw.addr, ATTACKERS, &head);
    while_trickling(&attackers, || {
        probes_are_answered(&gw.addr, PROBING, &[200]);
        for i in 0..3 {
            chat_is_answered(&gw, &format!("while keyed bodies trickle {i}"));
        }
        let mut s = gw.post_stream(
            "/v1/chat/completions",
            &stream_body("auto", "streamed meanwhile"),
        );
        assert_eq!(s.status, 200);
        assert_eq!(
            chat_stream_text(&s.collect()),
            default_answer("Auto", "streamed meanwhile")
        );
    });
    drop(attackers);
    chat_is_answered(&gw, "after the keyed bodies");
}

#[test]
fn clients_that_stop_reading_a_long_answer_are_cut_at_the_send_deadline() {
    let gw = GatewayProcess::start_with(
        Options {
            key: Some(KEY.into()),
            ..Options::default()
        }
        .env("max_workers", "2")
        .env("gateway_max_in_flight", "2")
        .env("client_send_timeout_sec", "1"),
    );
    // Two clients (as many as there are workers) ask for an answer far larger than the
    // socket buffers hold, and never read it. (`first=1` runs the turn on a thread of its
    // own in the simulator, so that it reads the gateway's `chat/stop` at once.)
    // 12 MB of text: more than socket buffers hold, and more than a chat may keep waiting.
    let body =
        stream_body("auto", "[[sim:first=1]][[sim:chunks=3000]][[sim:pad=4096]]").to_string();
    let head = format!("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let mut readers: Vec<Conn> = (0..2)
        .map(|_| {
            let (c, status) = unless_busy(
                || {
                    let mut c = open_attackers(&gw.addr, 1, &head).pop().unwrap();
                    let status = c.status(WAIT).unwrap_or_else(|e| panic!("{e}"));
                    (c, status)
                },
                |(_, status)| *status,
            );
            assert_eq!(status, 200);
            c
        })
        .collect();
    // Each is given up at the deadline, and Lingma is told to stop.
    // (Or, should the answer pile up first, stopped for holding more than a chat may.)
    wait_for("two clients cut at the send deadline", || {
        let log = gw.log_text();
        log.matches("a client did not read its response in time")
            .count()
            + log
                .matches("the client read the answer so much slower than Lingma wrote it")
                .count()
            >= 2
    });
    wait_for("two chat/stop", || {
        gw.sim_log(0).matches("recv chat/stop").count() >= 2
    });
    // Each answer ends short of its `[DONE]`: cut at the deadline, its connection closes;
    // stopped for holding too much, it ends whole with the protocol's error event.
    for (i, c) in readers.iter_mut().enumerate() {
        match c.response(WAIT) {
            Ok(r) => {
                let text = r.text();
                assert!(!text.contains("[DONE]"), "reader {i} got the whole answer");
                assert!(
                    text.contains("slower than Lingma wrote it"),
                    "reader {i}: a whole response without the error event: {}",
                    &text[text.len().saturating_sub(400)..]
                );
            }
            Err(e) => assert!(e.starts_with("the connection ended"), "reader {i}: {e}"),
        }
    }
    // Both workers serve again (once they have logged both streams: a cut one as 499, one
    // that ended with the error event as 200): two streams at once, each answered whole.
    wait_for("the access-log lines of the two streams", || {
        let log = gw.log_text();
        log.matches("POST /v1/chat/completions 499 ").count()
            + log.matches("POST /v1/chat/completions 200 ").count()
            >= 2
    });
    let q = "[[sim:chunks=20]] [[sim:delay=50]]";
    let mut streams: Vec<Stream> = (0..2)
        .map(|_| gw.post_stream("/v1/chat/completions", &stream_body("auto", q)))
        .collect();
    for s in &mut streams {
        assert_eq!(
            s.status,
            200,
            "{:?}",
            s.body
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
        );
        assert_eq!(s.collect().last().unwrap().data, "[DONE]");
    }
}

#[test]
fn with_every_worker_busy_new_requests_get_an_answer_within_a_second() {
    let gw = GatewayProcess::start_with(
        Options {
            key: Some(KEY.into()),
            ..Options::default()
        }
        .env("max_workers", "2")
        .env("gateway_max_in_flight", "2"),
    );
    // Both workers serve slow streams.
    let slow = stream_body("auto", "[[sim:chunks=60]] [[sim:delay=100]]");
    let mut held: Vec<Stream> = (0..2)
        .map(|_| {
            unless_busy(
                || gw.post_stream("/v1/chat/completions", &slow),
                |s| s.status,
            )
        })
        .collect();
    for s in &mut held {
        assert_eq!(s.status, 200);
        assert!(s.next_event().is_some());
    }
    // Meanwhile: health and a new chat are answered, 200 or 503, within the bound.
    let statuses = probes_are_answered(&gw.addr, Duration::from_secs(2), &[200, 503]);
    assert!(
        statuses.contains(&503),
        "every worker was busy: {statuses:?}"
    );
    let start = Instant::now();
    let auth = format!("Bearer {KEY}");
    let r = request(
        &gw.addr,
        "POST",
        "/v1/chat/completions",
        &[("Authorization", &auth)],
        Some(chat_body("auto", "a newcomer").to_string().as_bytes()),
    );
    let took = start.elapsed();
    assert!(matches!(r.status, 200 | 503), "{}", r.text());
    assert!(
        took < PROBE_BOUND,
        "the new chat was answered after {took:?}"
    );
    // And the same while keyless clients trickle bodies at the busy gateway.
    let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n";
    let attackers = open_attackers(&gw.addr, 50, head);
    while_trickling(&attackers, || {
        probes_are_answered(&gw.addr, Duration::from_secs(2), &[200, 503]);
    });
    for mut s in held {
        assert_eq!(s.status, 200);
        assert_eq!(s.collect().last().unwrap().data, "[DONE]");
    }
    chat_is_answered_unless_busy(&gw, "after the busy spell");
}

#[test]
fn a_body_that_stops_half_way_gets_408_without_holding_a_worker() {
    let gw = GatewayProcess::start_with(
        Options {
            key: Some(KEY.into()),
            ..Options::default()
        }
        .env("max_workers", "2")
        .env("gateway_max_in_flight", "2")
        .env("client_body_timeout_sec", "3"),
    );
    let stalled: Vec<(&str, Conn)> = ["/v1/chat/completions", "/v1/messages"]
        .into_iter()
        .map(|path| {
            let head = format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{{\"model\":\"auto\",");
            (path, open_attackers(&gw.addr, 1, &head).pop().unwrap())
        })
        .collect();
    // While they wait for the rest of their bodies (two, as many as there are workers),
    // the workers serve others.
    for i in 0..3 {
        chat_is_answered(&gw, &format!("while bodies stall {i}"));
        assert_eq!(gw.get("/healthz").status, 200);
    }
    // At the deadline each gets 408 in its route's shape, and the connection closes.
    for (path, mut c) in stalled {
        let (answers, _) = c
            .until_close(WAIT)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [408], "{path}");
        let v = error_shape(path, &answers[0]);
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("did not arrive in time"),
            "{v}"
        );
    }
    chat_is_answered_unless_busy(&gw, "after the stalled bodies");
}
