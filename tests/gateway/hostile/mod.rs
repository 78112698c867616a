//! The hostile-traffic suite: each finding of the hostile-traffic review reproduced at a
//! bounded scale (raw sockets, pipelining, trickled bytes, unread bodies, huge counts of tiny
//! things, a Lingma that stops reading), asserting what must hold as a client sees it.
//! `scripts/hostile.sh` runs the same attacks at full scale by hand.

use std::time::{Duration, Instant};

use crate::harness::*;

mod config;
mod grammar;
mod logs;
mod memory;
mod pipelining;
mod rebinding;
mod smuggling;
mod upstream;
mod workers;

/// The gateway's resident set size in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// The gateway's peak resident set size so far in KiB.
pub fn peak_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `GET /healthz` on a fresh connection: its status and how long the answer took, or the
/// I/O error a client would see.
pub fn probe_health(addr: &str) -> std::io::Result<(u16, Duration)> {
    let start = Instant::now();
    try_request(addr, "GET", "/healthz", &[], None).map(|r| (r.status, start.elapsed()))
}
