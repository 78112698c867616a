//! Finding 3: pipelining. A connection has one request in flight at a time, so one that
//! pipelines thousands of heads and never reads its answers stalls only itself: other
//! clients are answered within a second, and the heads wait in the socket, not in the
//! gateway's memory. Heads far over the limit get 431 and leave no memory behind. A client
//! that pipelines a few requests and then reads gets every answer, in order.

use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::smuggling::Conn;
use super::{probe_health, rss_kib};
use crate::harness::*;

/// The bound for a liveness probe's answer.
const PROBE_BOUND: Duration = Duration::from_secs(1);
/// How far the gateway's RSS may rise over its level before an attack, in KiB, while the
/// attack is on. Each connection buffers at most one head (64 KiB) and serves one request
/// at a time, so the attacks below need a few MiB at most; the code before the rewrite
/// queued every pipelined head (45 MB of them in the first attack, 72 MB in the second).
const RSS_RISE_KIB: u64 = 24 * 1024;
/// How far above its level before the attack RSS may stay once the attackers are gone.
const RSS_LEFT_KIB: u64 = 8 * 1024;

/// Writes `bytes` on `s` until all are written, the server closes, or `stop`; a blocked
/// write (the server reads no more) is retried so that `stop` is seen.
fn write_until(mut s: &TcpStream, bytes: &[u8], stop: &AtomicBool) {
    s.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut at = 0;
    while at < bytes.len() && !stop.load(Ordering::SeqCst) {
        match s.write(&bytes[at..]) {
            Ok(0) => return,
            Ok(n) => at += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// The highest RSS of `pid` (KiB) sampled every 20 ms until `stop`.
fn sample_peak(pid: u32, stop: &AtomicBool) -> u64 {
    let mut peak = 0;
    while !stop.load(Ordering::SeqCst) {
        peak = peak.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(20));
    }
    peak.max(rss_kib(pid))
}

/// Sets the flag when dropped, so that helper threads stop even when an assertion fails.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A settled RSS: after a few requests, so that lazily built state exists.
fn settled_rss(gw: &GatewayProcess) -> u64 {
    for i in 0..3 {
        gw.assert_answers(&format!("warm up {i}"));
    }
    rss_kib(gw.pid())
}

#[test]
fn a_connection_pipelining_3000_heads_stalls_no_one_else() {
    let gw = GatewayProcess::start();
    let before = settled_rss(&gw);
    // 3,000 heads of 15 KB each (under the 16 KiB request-line limit), 45 MB in all.
    let head = format!(
        "GET /nf-{} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "x".repeat(15_000)
    );
    let flood = head.repeat(3_000).into_bytes();
    let attacker = Conn::open(&gw.addr);
    let stop = AtomicBool::new(false);
    let peak = std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        s.spawn(|| write_until(&attacker.stream, &flood, &stop));
        let sampler = s.spawn(|| sample_peak(gw.pid(), &stop));
        // Meanwhile, for four seconds: every probe answered within the bound, and chats.
        let until = Instant::now() + Duration::from_secs(4);
        let mut n = 0;
        while Instant::now() < until {
            let (status, took) = probe_health(&gw.addr).unwrap_or_else(|e| {
                let now = rss_kib(gw.pid());
                panic!("probe {n}: no answer ({e}); RSS {before} KiB before, {now} KiB now")
            });
            assert_eq!(status, 200, "probe {n}");
            assert!(took < PROBE_BOUND, "probe {n} answered after {took:?}");
            if n % 5 == 0 {
                let q = format!("beside the pipeliner {n}");
                let start = Instant::now();
                gw.assert_answers(&q);
                let took = start.elapsed();
                assert!(took < PROBE_BOUND, "a chat answered after {took:?}");
            }
            n += 1;
            std::thread::sleep(Duration::from_millis(200));
        }
        stop.store(true, Ordering::SeqCst);
        sampler.join().unwrap()
    });
    eprintln!("RSS: {before} KiB before, {peak} KiB at the peak");
    assert!(
        peak.saturating_sub(before) < RSS_RISE_KIB,
        "RSS rose from {before} KiB to {peak} KiB"
    );
    drop(attacker);
    gw.assert_answers("after the pipeliner");
}

#[test]
fn heads_of_1_8_mb_get_431_and_leave_no_memory_behind() {
    let gw = GatewayProcess::start();
    let before = settled_rss(&gw);
    // A head of 1.8 MB: 112 header lines of 16,000 bytes (within the limits of a line and
    // of the count of lines, not of a head's size); ten of them pipelined on each of four
    // connections.
    let mut head = String::from("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for i in 0..112 {
        head.push_str(&format!("X-Pad-{i:03}: {}\r\n", "p".repeat(15_980)));
    }
    head.push_str("\r\n");
    let heads = head.repeat(10).into_bytes();
    let mut attackers: Vec<Conn> = (0..4).map(|_| Conn::open(&gw.addr)).collect();
    let stop = AtomicBool::new(false);
    let writers: Vec<TcpStream> = attackers
        .iter()
        .map(|c| c.stream.try_clone().unwrap())
        .collect();
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        for w in &writers {
            s.spawn(|| write_until(w, &heads, &stop));
        }
        let sampler = s.spawn(|| sample_peak(gw.pid(), &stop));
        let firsts: Vec<Result<Resp, String>> =
            attackers.iter_mut().map(|c| c.response(WAIT)).collect();
        gw.assert_answers("beside the large heads");
        stop.store(true, Ordering::SeqCst);
        let peak = sampler.join().unwrap();
        eprintln!("RSS: {before} KiB before, {peak} KiB at the peak");
        assert!(
            peak.saturating_sub(before) < RSS_RISE_KIB,
            "RSS rose from {before} KiB to {peak} KiB"
        );
        // Each got 431, then the connection closed: none of its other heads was answered.
        for (i, (c, first)) in attackers.iter_mut().zip(firsts).enumerate() {
            let first = first.unwrap_or_else(|e| panic!("attacker {i}: {e}"));
            assert_eq!(first.status, 431, "attacker {i}: {}", first.text());
            assert_eq!(first.header("connection"), Some("close"));
            assert!(first.json()["error"]["message"].is_string());
            let (rest, _) = c
                .until_close(WAIT)
                .unwrap_or_else(|e| panic!("attacker {i}: {e}"));
            assert!(rest.is_empty(), "attacker {i}: {} more answers", rest.len());
        }
    });
    drop(attackers);
    gw.assert_answers("after the large heads");
    let after = rss_kib(gw.pid());
    eprintln!("RSS: {before} KiB before, {after} KiB after");
    assert!(
        after.saturating_sub(before) < RSS_LEFT_KIB,
        "RSS stayed at {after} KiB, from {before} KiB before"
    );
}

#[test]
fn well_behaved_pipelining_gets_every_answer_in_order() {
    let gw = GatewayProcess::start();
    let chat = chat_body("auto", "pipelined").to_string();
    let requests = [
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_string(),
        "GET /capabilities HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_string(),
        "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_string(),
        "GET /nf-pipelined HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_string(),
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{chat}",
            chat.len()
        ),
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".to_string(),
    ];
    let mut c = Conn::open(&gw.addr);
    c.stream.write_all(requests.concat().as_bytes()).unwrap();
    let (answers, _) = c.until_close(WAIT).unwrap_or_else(|e| panic!("{e}"));
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 200, 404, 200, 200]);
    assert_eq!(answers[0].json()["status"], "ok");
    assert!(answers[1].json()["features"].is_object());
    assert_eq!(answers[2].json()["object"], "list");
    assert!(answers[3].text().contains("/nf-pipelined"));
    assert_eq!(
        answers[4].json()["choices"][0]["message"]["content"],
        default_answer("Auto", "pipelined")
    );
    assert_eq!(answers[5].json()["status"], "ok");
    for r in &answers[..5] {
        assert_ne!(r.header("connection"), Some("close"), "{:?}", r.headers);
    }
}
