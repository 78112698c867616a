//! Counters and histograms for `GET /metrics`, written out by hand in the Prometheus text
//! exposition format (version 0.0.4). One mutex guards what every request records (a few
//! map and array updates, never I/O); gauges that describe the present (in-flight, queued,
//! instance states) are read from their owners at scrape time and passed in.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use crate::upstream::pool::{InstanceStatus, State};

/// Upper bounds (seconds) for whole-request latency and time to first token.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// Upper bounds (seconds) for the gateway's own share of a request: sub-millisecond when
/// all is well.
const ADDED_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The routes that run a chat; their latency histograms exist from the start.
pub const CHAT_ROUTES: &[&str] = &["/v1/chat/completions", "/v1/responses", "/v1/messages"];

/// What one finished request tells the metrics.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub route: &'static str,
    pub protocol: &'static str,
    pub status: u16,
    pub total: Duration,
    pub answer: Option<AnswerStats>,
}

/// What one chat answer measured (see `service::Answer::stats`).
#[derive(Debug, Clone, Copy, Default)]
pub struct AnswerStats {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Time the worker spent blocked waiting on Lingma's events.
    pub upstream_wait: Duration,
    /// From the request's start to the first text or tool call, if there was one.
    pub first_token: Option<Duration>,
}

/// Gauges read at scrape time.
pub struct Live<'a> {
    pub in_flight: usize,
    pub queued: usize,
    pub instances: &'a [InstanceStatus],
    /// Session reuse: `(hits, misses, entries)`, when it is on.
    pub sessions: Option<(u64, u64, usize)>,
    /// `/v1/responses` answers kept for `previous_response_id`.
    pub responses_stored: usize,
}

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, secs: f64) {
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.counts[i] += 1;
        }
        self.sum += secs;
        self.count += 1;
    }
}

#[derive(Default)]
struct Inner {
    /// `(route, protocol, status)` → requests.
    requests: BTreeMap<(&'static str, &'static str, u16), u64>,
    /// protocol → (input, output) tokens.
    tokens: BTreeMap<&'static str, (u64, u64)>,
    duration: BTreeMap<&'static str, Histogram>,
    first_token: BTreeMap<&'static str, Histogram>,
    added: BTreeMap<&'static str, Histogram>,
    queue_rejected: u64,
}

pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut inner = Inner::default();
        for route in CHAT_ROUTES {
            inner
                .duration
                .insert(route, Histogram::new(LATENCY_BUCKETS));
            inner
                .first_token
                .insert(route, Histogram::new(LATENCY_BUCKETS));
            inner.added.insert(route, Histogram::new(ADDED_BUCKETS));
        }
        for protocol in ["openai", "anthropic"] {
            inner.tokens.insert(protocol, (0, 0));
        }
        Metrics {
            inner: Mutex::new(inner),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record(&self, r: &RequestRecord) {
        let mut g = self.lock();
        *g.requests
            .entry((r.route, r.protocol, r.status))
            .or_insert(0) += 1;
        let total = r.total.as_secs_f64();
        if let Some(h) = g.duration.get_mut(r.route) {
            h.observe(total);
        }
        let Some(a) = r.answer else {
            return;
        };
        let t = g.tokens.entry(r.protocol).or_insert((0, 0));
        t.0 += a.input_tokens;
        t.1 += a.output_tokens;
        if let Some(h) = g.added.get_mut(r.route) {
            h.observe(r.total.saturating_sub(a.upstream_wait).as_secs_f64());
        }
        if let (Some(ft), Some(h)) = (a.first_token, g.first_token.get_mut(r.route)) {
            h.observe(ft.as_secs_f64());
        }
    }

    /// A chat request refused because the queue wait ran out.
    pub fn queue_rejected(&self) {
        self.lock().queue_rejected += 1;
    }

    /// Totals for `/internal/stats`.
    pub fn snapshot(&self) -> Snapshot {
        let g = self.lock();
        let mut by_status: BTreeMap<u16, u64> = BTreeMap::new();
        let mut by_route: BTreeMap<&'static str, u64> = BTreeMap::new();
        for ((route, _, status), n) in &g.requests {
            *by_status.entry(*status).or_insert(0) += n;
            *by_route.entry(route).or_insert(0) += n;
        }
        Snapshot {
            requests: by_status.values().sum(),
            by_status,
            by_route,
            input_tokens: g.tokens.values().map(|t| t.0).sum(),
            output_tokens: g.tokens.values().map(|t| t.1).sum(),
            queue_rejected: g.queue_rejected,
        }
    }

    /// The whole exposition.
    pub fn render(&self, live: &Live) -> String {
        let g = self.lock();
        let mut out = String::with_capacity(8 * 1024);
        gauge(
            &mut out,
            "lingma_gateway_build_info",
            "The gateway's version (always 1).",
            &[(
                format!("version=\"{}\"", env!("CARGO_PKG_VERSION")),
                1.to_string(),
            )],
        );
        family(
            &mut out,
            "lingma_gateway_requests_total",
            "counter",
            "HTTP requests answered, by route, protocol and status (499: the client went away).",
            g.requests
                .iter()
                .map(|((route, protocol, status), n)| {
                    (
                        format!(
                            "route=\"{}\",protocol=\"{}\",status=\"{status}\"",
                            escape(route),
                            escape(protocol)
                        ),
                        n.to_string(),
                    )
                })
                .collect(),
        );
        family(
            &mut out,
            "lingma_gateway_input_tokens_total",
            "counter",
            "Prompt tokens sent to Lingma (estimated: Lingma reports none), by protocol.",
            g.tokens
                .iter()
                .map(|(p, t)| (format!("protocol=\"{}\"", escape(p)), t.0.to_string()))
                .collect(),
        );
        family(
            &mut out,
            "lingma_gateway_output_tokens_total",
            "counter",
            "Answer tokens received from Lingma (estimated), by protocol.",
            g.tokens
                .iter()
                .map(|(p, t)| (format!("protocol=\"{}\"", escape(p)), t.1.to_string()))
                .collect(),
        );
        histograms(
            &mut out,
            "lingma_gateway_request_duration_seconds",
            "Whole chat requests, from the request head to the last byte of the answer.",
            &g.duration,
        );
        histograms(
            &mut out,
            "lingma_gateway_time_to_first_token_seconds",
            "From the request head to the first text or tool call of the answer.",
            &g.first_token,
        );
        histograms(
            &mut out,
            "lingma_gateway_added_latency_seconds",
            "Time the gateway added to a chat request: its whole duration minus the time spent waiting on Lingma (queueing included).",
            &g.added,
        );
        gauge(
            &mut out,
            "lingma_gateway_in_flight_requests",
            "Chat requests running now (at most gateway_max_in_flight).",
            &[(String::new(), live.in_flight.to_string())],
        );
        gauge(
            &mut out,
            "lingma_gateway_queued_requests",
            "Chat requests waiting for a slot now.",
            &[(String::new(), live.queued.to_string())],
        );
        family(
            &mut out,
            "lingma_gateway_queue_rejected_total",
            "counter",
            "Chat requests refused with 429 after waiting gateway_queue_timeout_sec for a slot.",
            vec![(String::new(), g.queue_rejected.to_string())],
        );
        let states = [
            State::Starting,
            State::Ready,
            State::Reconnecting,
            State::Failed,
            State::Closed,
        ];
        gauge(
            &mut out,
            "lingma_gateway_instances",
            "Lingma instances in the pool, by state.",
            &states
                .iter()
                .map(|st| {
                    let n = live.instances.iter().filter(|i| i.state == *st).count();
                    (format!("state=\"{}\"", st.as_str()), n.to_string())
                })
                .collect::<Vec<_>>(),
        );
        gauge(
            &mut out,
            "lingma_gateway_instance_in_flight_requests",
            "Requests each Lingma instance is serving now.",
            &live
                .instances
                .iter()
                .map(|i| {
                    (
                        format!("instance=\"{}\"", escape(&i.name)),
                        i.in_flight.to_string(),
                    )
                })
                .collect::<Vec<_>>(),
        );
        gauge(
            &mut out,
            "lingma_gateway_instance_info",
            "Each Lingma instance's dialect (cosy, acp; none before its first connection) and runtime version (serverInfo.version).",
            &live
                .instances
                .iter()
                .map(|i| {
                    let labels = format!(
                        "instance=\"{}\",dialect=\"{}\",version=\"{}\"",
                        escape(&i.name),
                        i.dialect.unwrap_or("none"),
                        escape(&i.runtime_version)
                    );
                    (labels, "1".to_string())
                })
                .collect::<Vec<_>>(),
        );
        family(
            &mut out,
            "lingma_gateway_upstream_restarts_total",
            "counter",
            "Times each Lingma instance was lost and re-established.",
            live.instances
                .iter()
                .map(|i| {
                    (
                        format!("instance=\"{}\"", escape(&i.name)),
                        i.restarts.to_string(),
                    )
                })
                .collect(),
        );
        if let Some((hits, misses, size)) = live.sessions {
            let one = |v: String| vec![(String::new(), v)];
            family(
                &mut out,
                "lingma_gateway_session_cache_hits_total",
                "counter",
                "Turns sent to Lingma as only the new text on a reused session.",
                one(hits.to_string()),
            );
            family(
                &mut out,
                "lingma_gateway_session_cache_misses_total",
                "counter",
                "Continuing turns that found no reusable session (sent whole, on a new one).",
                one(misses.to_string()),
            );
            gauge(
                &mut out,
                "lingma_gateway_session_cache_entries",
                "Conversations remembered for reuse.",
                &one(size.to_string()),
            );
        }
        gauge(
            &mut out,
            "lingma_gateway_responses_stored",
            "Responses kept for previous_response_id.",
            &[(String::new(), live.responses_stored.to_string())],
        );
        out
    }
}

/// Request totals for `/internal/stats`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub requests: u64,
    pub by_status: BTreeMap<u16, u64>,
    pub by_route: BTreeMap<&'static str, u64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub queue_rejected: u64,
}

fn gauge(out: &mut String, name: &str, help: &str, samples: &[(String, String)]) {
    family(out, name, "gauge", help, samples.to_vec());
}

/// One metric family; nothing at all when it has no samples yet.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: Vec<(String, String)>) {
    if samples.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

fn histograms(
    out: &mut String,
    name: &str,
    help: &str,
    by_route: &BTreeMap<&'static str, Histogram>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (route, h) in by_route {
        let route = escape(route);
        let mut cumulative = 0;
        for (bound, n) in h.bounds.iter().zip(&h.counts) {
            cumulative += n;
            let _ = writeln!(
                out,
                "{name}_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(out, "{name}_sum{{route=\"{route}\"}} {}", h.sum);
        let _ = writeln!(out, "{name}_count{{route=\"{route}\"}} {}", h.count);
    }
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(route: &'static str, status: u16, total_ms: u64, wait_ms: u64) -> RequestRecord {
        RequestRecord {
            route,
            protocol: "openai",
            status,
            total: Duration::from_millis(total_ms),
            answer: Some(AnswerStats {
                input_tokens: 5,
                output_tokens: 7,
                upstream_wait: Duration::from_millis(wait_ms),
                first_token: Some(Duration::from_millis(wait_ms)),
            }),
        }
    }

    #[test]
    fn counts_buckets_cumulatively_and_subtracts_lingma_time() {
        let m = Metrics::new();
        m.record(&record("/v1/chat/completions", 200, 30, 28));
        m.record(&record("/v1/chat/completions", 200, 700, 690));
        m.record(&record("/v1/chat/completions", 502, 3, 0));
        let text = m.render(&Live {
            sessions: Some((1, 2, 3)),
            responses_stored: 4,
            in_flight: 1,
            queued: 2,
            instances: &[],
        });
        for line in [
            "lingma_gateway_requests_total{route=\"/v1/chat/completions\",protocol=\"openai\",status=\"200\"} 2",
            "lingma_gateway_requests_total{route=\"/v1/chat/completions\",protocol=\"openai\",status=\"502\"} 1",
            "lingma_gateway_input_tokens_total{protocol=\"openai\"} 15",
            "lingma_gateway_session_cache_hits_total 1",
            "lingma_gateway_session_cache_misses_total 2",
            "lingma_gateway_session_cache_entries 3",
            "lingma_gateway_responses_stored 4",
            "lingma_gateway_request_duration_seconds_bucket{route=\"/v1/chat/completions\",le=\"0.05\"} 2",
            "lingma_gateway_request_duration_seconds_bucket{route=\"/v1/chat/completions\",le=\"1\"} 3",
            "lingma_gateway_request_duration_seconds_bucket{route=\"/v1/chat/completions\",le=\"+Inf\"} 3",
            "lingma_gateway_request_duration_seconds_count{route=\"/v1/chat/completions\"} 3",
            // 2 ms, 10 ms and 3 ms added.
            "lingma_gateway_added_latency_seconds_bucket{route=\"/v1/chat/completions\",le=\"0.0025\"} 1",
            "lingma_gateway_added_latency_seconds_bucket{route=\"/v1/chat/completions\",le=\"0.005\"} 2",
            "lingma_gateway_added_latency_seconds_bucket{route=\"/v1/chat/completions\",le=\"0.01\"} 3",
            "lingma_gateway_added_latency_seconds_count{route=\"/v1/messages\"} 0",
            "lingma_gateway_in_flight_requests 1",
            "lingma_gateway_queued_requests 2",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
    }

    #[test]
    fn each_instance_shows_its_dialect_and_runtime_version() {
        let status = |name: &str, dialect, version: &str| InstanceStatus {
            name: name.into(),
            state: State::Ready,
            in_flight: 0,
            served: 0,
            pid: None,
            port: None,
            attached: false,
            restarts: 0,
            last_error: String::new(),
            dialect,
            runtime_version: version.into(),
        };
        let instances = [
            status("lingma-0", Some("acp"), "0.7.1"),
            status("lingma-1", None, ""),
        ];
        let text = Metrics::new().render(&Live {
            sessions: None,
            responses_stored: 0,
            in_flight: 0,
            queued: 0,
            instances: &instances,
        });
        for line in [
            "lingma_gateway_instance_info{instance=\"lingma-0\",dialect=\"acp\",version=\"0.7.1\"} 1",
            "lingma_gateway_instance_info{instance=\"lingma-1\",dialect=\"none\",version=\"\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
