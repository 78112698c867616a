//! Randomised property tests (test builds only): a seeded PRNG, a runner that makes every
//! case reproducible from one seed, and generators of JSON values and mutations. No crates:
//! the dependency tree stays as audited.
//!
//! Every case gets its own seed; a failure prints it with the input, and
//! `LINGMA_FUZZ_SEED=<seed> LINGMA_FUZZ_ITERS=1 cargo test --lib <test>` replays exactly that
//! case. `LINGMA_FUZZ_ITERS` sets the number of cases per property (default: small, so
//! `cargo test` stays fast), `LINGMA_FUZZ_SECS` runs each property for that long instead
//! (`scripts/fuzz.sh`), `LINGMA_FUZZ_SEED` sets the first case's seed (default: fixed, so
//! `cargo test` is deterministic).

mod decoders;
mod jsonrpc;
mod limits;

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

/// SplitMix64: tiny, fast, and every 64-bit seed gives a good stream.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// The seed of the case after the one seeded with `seed`.
fn next_seed(seed: u64) -> u64 {
    Rng::new(seed).next_u64()
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

/// Longest input shown in a failure report (the seed reproduces it whole).
const MAX_SHOWN: usize = 8 * 1024;

/// How many cases a property runs, from which seed.
struct Plan {
    seed: u64,
    cases: u64,
    deadline: Option<Instant>,
}

impl Plan {
    /// From the environment (see the module doc).
    fn from_env(name: &str, default_cases: u64) -> Plan {
        Plan {
            // A fixed start per property, so two properties do not draw the same inputs.
            seed: env_u64("LINGMA_FUZZ_SEED").unwrap_or_else(|| {
                name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
                })
            }),
            cases: env_u64("LINGMA_FUZZ_ITERS").unwrap_or(default_cases),
            deadline: env_u64("LINGMA_FUZZ_SECS").map(|s| Instant::now() + Duration::from_secs(s)),
        }
    }

    fn more(&self, done: u64) -> bool {
        match self.deadline {
            Some(d) => done == 0 || Instant::now() < d,
            None => done < self.cases,
        }
    }
}

/// Runs `prop` on inputs from `gen`: `default_cases` of them unless the environment says
/// otherwise (see the module doc). `Err` or a panic fails the test with the case's seed and
/// its input. `name` is the test's name, for the replay command.
pub fn check<T: fmt::Debug>(
    name: &str,
    default_cases: u64,
    gen: impl Fn(&mut Rng) -> T,
    prop: impl Fn(&T) -> Result<(), String>,
) {
    run(name, &Plan::from_env(name, default_cases), gen, prop);
}

fn run<T: fmt::Debug>(
    name: &str,
    plan: &Plan,
    gen: impl Fn(&mut Rng) -> T,
    prop: impl Fn(&T) -> Result<(), String>,
) {
    let mut seed = plan.seed;
    let mut done = 0u64;
    while plan.more(done) {
        let input = gen(&mut Rng::new(seed));
        let failure = match catch_unwind(AssertUnwindSafe(|| prop(&input))) {
            Ok(Ok(())) => None,
            Ok(Err(why)) => Some(why),
            Err(panic) => Some(format!("panicked: {}", panic_text(&panic))),
        };
        if let Some(why) = failure {
            let mut shown = format!("{input:?}");
            if shown.len() > MAX_SHOWN {
                let mut end = MAX_SHOWN;
                while !shown.is_char_boundary(end) {
                    end -= 1;
                }
                shown.truncate(end);
                shown.push_str("… (cut; the seed reproduces it whole)");
            }
            panic!(
                "property {name} failed on case {done} (first seed {}): {why}\n\
                 input: {shown}\n\
                 replay: LINGMA_FUZZ_SEED={seed} LINGMA_FUZZ_ITERS=1 cargo test --lib {name}",
                plan.seed
            );
        }
        done += 1;
        seed = next_seed(seed);
    }
    eprintln!(
        "property {name}: {done} cases passed (first seed {})",
        plan.seed
    );
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// Bytes shown as an escaped string in failure reports.
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

/// A JSON value shown as compact JSON in failure reports.
pub struct Json(pub Value);

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Field names and values the request decoders look at, so random values reach their
/// branches instead of being ignored as unknown fields.
const WORDS: &[&str] = &[
    "model",
    "messages",
    "role",
    "content",
    "type",
    "text",
    "name",
    "input",
    "output",
    "arguments",
    "function",
    "tools",
    "tool_choice",
    "tool_calls",
    "tool_call_id",
    "call_id",
    "id",
    "parameters",
    "input_schema",
    "schema",
    "json_schema",
    "format",
    "stream",
    "stream_options",
    "include_usage",
    "stop",
    "stop_sequences",
    "n",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "temperature",
    "top_p",
    "top_k",
    "user",
    "system",
    "instructions",
    "previous_response_id",
    "store",
    "metadata",
    "user_id",
    "thinking",
    "reasoning",
    "include",
    "truncation",
    "parallel_tool_calls",
    "response_format",
    "output_format",
    "namespace",
    "description",
    "tool_use_id",
    "is_error",
    "signature",
    "data",
    "refusal",
    "background",
    "conversation",
    "prompt",
    "prompt_cache_key",
    "safety_identifier",
    "functions",
    "function_call",
    "mode",
    "disable_parallel_tool_use",
    "required",
    "properties",
    "auto",
    "none",
    "any",
    "tool",
    "assistant",
    "developer",
    "message",
    "function_call_output",
    "custom_tool_call",
    "custom_tool_call_output",
    "item_reference",
    "web_search_call",
    "input_text",
    "output_text",
    "input_image",
    "image_url",
    "image",
    "document",
    "tool_use",
    "tool_result",
    "redacted_thinking",
    "server_tool_use",
    "custom",
    "json_object",
    "allowed_tools",
    "enabled",
    "adaptive",
    "disabled",
    "grammar",
    "definition",
    "syntax",
    "",
];

const ODD_STRINGS: &[&str] = &[
    "\u{0}",
    " ",
    "\n\n",
    "\r\n\r\n",
    "é",
    "你好",
    "🦀",
    "\u{202e}",
    "\u{feff}",
    "\u{fffd}",
    "data:image/png;base64,AAAA",
    "```json action\n{\"tool\": \"get_weather\", \"parameters\": {}}\n```",
    "<tool_call>{\"name\": \"get_weather\"}</tool_call>",
    "[system]",
    "{\"a\":",
    "{}",
    "[[sim:tool=get_weather]]",
    "-1",
    "1e999",
];

/// A random string: a word the decoders know, an odd one, or random characters.
pub fn string(rng: &mut Rng) -> String {
    match rng.below(6) {
        0..=2 => rng.pick(WORDS).to_string(),
        3 => rng.pick(ODD_STRINGS).to_string(),
        4 => (0..rng.below(12))
            .map(|_| char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('\u{fffd}'))
            .collect(),
        _ => "x".repeat(rng.range(100, 5000)),
    }
}

/// A random JSON number, with the edges a reader of integers can trip on.
pub fn number(rng: &mut Rng) -> Value {
    let n: serde_json::Number = match rng.below(10) {
        0 => 0.into(),
        1 => 1.into(),
        2 => (-1).into(),
        3 => u64::MAX.into(),
        4 => i64::MIN.into(),
        5 => serde_json::Number::from_f64(0.5).unwrap(),
        6 => serde_json::Number::from_f64(1e300).unwrap(),
        7 => serde_json::Number::from_f64(-0.0).unwrap(),
        8 => (rng.below(5000) as u64).into(),
        _ => serde_json::Number::from_f64(rng.next_u64() as f64 / 7.0).unwrap(),
    };
    Value::Number(n)
}

/// A random JSON value at most `depth` levels deep.
pub fn value(rng: &mut Rng, depth: usize) -> Value {
    let leaf = depth == 0 || rng.one_in(2);
    match (leaf, rng.below(4)) {
        (true, 0) => Value::Null,
        (true, 1) => Value::Bool(rng.one_in(2)),
        (true, 2) => number(rng),
        (true, _) => Value::String(string(rng)),
        (false, 0) => Value::Array((0..rng.below(4)).map(|_| value(rng, depth - 1)).collect()),
        (false, _) => Value::Object(object(rng, depth - 1)),
    }
}

/// A random object whose keys are mostly words the decoders read.
pub fn object(rng: &mut Rng, depth: usize) -> Map<String, Value> {
    (0..rng.below(6))
        .map(|_| {
            let key = if rng.one_in(8) {
                string(rng)
            } else {
                rng.pick(WORDS).to_string()
            };
            (key, value(rng, depth))
        })
        .collect()
}

/// Every location inside `v`, as JSON pointer tokens.
fn locations(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(at.clone());
    let children: Vec<(String, &Value)> = match v {
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, c)| (i.to_string(), c))
            .collect(),
        Value::Object(o) => o.iter().map(|(k, c)| (k.clone(), c)).collect(),
        _ => Vec::new(),
    };
    for (token, child) in children {
        at.push(token);
        locations(child, at, out);
        at.pop();
    }
}

fn node_mut<'a>(v: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |node, token| match node {
        Value::Array(a) => a.get_mut(token.parse::<usize>().ok()?),
        Value::Object(o) => o.get_mut(token),
        _ => None,
    })
}

/// `valid` with one to three random changes: a value replaced (by a random one, or by a
/// copy of another part of the body), removed, added to, or an array element repeated.
pub fn mutate(rng: &mut Rng, valid: &Value) -> Value {
    let mut v = valid.clone();
    for _ in 0..rng.range(1, 3) {
        let mut all = Vec::new();
        locations(&v, &mut Vec::new(), &mut all);
        let path = rng.pick(&all).clone();
        let donor = {
            let from = rng.pick(&all).clone();
            node_mut(&mut v.clone(), &from)
                .cloned()
                .unwrap_or(Value::Null)
        };
        let replacement = value(rng, 3);
        let Some(node) = node_mut(&mut v, &path) else {
            continue;
        };
        match rng.below(6) {
            0 | 1 => *node = replacement,
            2 => *node = donor,
            3 => match node {
                Value::Object(o) => {
                    let key = rng.pick(WORDS).to_string();
                    o.insert(key, replacement);
                }
                Value::Array(a) => {
                    let at = rng.below(a.len() + 1);
                    a.insert(at, replacement);
                }
                _ => *node = replacement,
            },
            4 => match node {
                Value::Array(a) if !a.is_empty() => {
                    let at = rng.below(a.len());
                    let copy = a[at].clone();
                    a.insert(at, copy);
                }
                _ => *node = Value::Null,
            },
            _ => {
                // Remove the node from its parent.
                if let Some((last, parent)) = path.split_last() {
                    match node_mut(&mut v, parent) {
                        Some(Value::Object(o)) => {
                            o.remove(last);
                        }
                        Some(Value::Array(a)) => {
                            if let Ok(i) = last.parse::<usize>() {
                                if i < a.len() {
                                    a.remove(i);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rng_is_reproducible_and_spread() {
        let draw = |seed| {
            let mut r = Rng::new(seed);
            (0..4).map(|_| r.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let mut r = Rng::new(1);
        let mut seen = [0usize; 8];
        for _ in 0..8000 {
            seen[r.below(8)] += 1;
        }
        assert!(seen.iter().all(|n| (800..1200).contains(n)), "{seen:?}");
    }

    #[test]
    fn a_failing_property_reports_the_seed_that_replays_it() {
        let report = catch_unwind(|| {
            let plan = Plan {
                seed: 5,
                cases: 1000,
                deadline: None,
            };
            run(
                "demo",
                &plan,
                |rng| rng.below(100),
                |n| {
                    if *n == 42 {
                        Err("42".into())
                    } else {
                        Ok(())
                    }
                },
            )
        })
        .expect_err("some case draws 42");
        let text = panic_text(&report);
        let seed: u64 = text
            .split("LINGMA_FUZZ_SEED=")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no seed in {text}"));
        assert_eq!(Rng::new(seed).below(100), 42, "{text}");
    }

    #[test]
    fn mutations_change_valid_bodies_and_stay_json() {
        let valid = serde_json::json!({"a": [1, {"b": "c"}], "d": null});
        let mut r = Rng::new(3);
        let changed = (0..200).filter(|_| mutate(&mut r, &valid) != valid).count();
        assert!(changed > 150, "{changed}");
    }
}
