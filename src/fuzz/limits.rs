//! Properties of the body pre-scan (`http::limits::count_values`): on any JSON text, however
//! it is spaced, it counts exactly the values the parser builds; on any bytes at all it
//! returns without a panic and never counts past its limit by more than one.

use serde_json::Value;

use super::{check, Bytes, Json, Rng};
use crate::http::limits::count_values;

/// The values the parser builds for `v`: itself and everything inside it.
fn values_in(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(values_in).sum(),
        Value::Object(o) => o.values().map(values_in).sum(),
        _ => 0,
    }
}

/// `v` as JSON text: compact, pretty, or with random blanks between tokens.
fn spaced(rng: &mut Rng, v: &Value) -> String {
    match rng.below(3) {
        0 => v.to_string(),
        1 => serde_json::to_string_pretty(v).expect("a Value serialises"),
        _ => {
            let blanks = [" ", "\n", "\t", "\r\n", "  "];
            match v {
                Value::Array(a) => {
                    let items: Vec<String> = a.iter().map(|x| spaced(rng, x)).collect();
                    format!(
                        "[{}{}{}]",
                        rng.pick(&blanks),
                        items.join(" , "),
                        rng.pick(&blanks)
                    )
                }
                Value::Object(o) => {
                    let items: Vec<String> = o
                        .iter()
                        .map(|(k, x)| format!("{} :\t{}", Value::from(k.as_str()), spaced(rng, x)))
                        .collect();
                    format!("{{{}{}}}", rng.pick(&blanks), items.join(",\n"))
                }
                other => other.to_string(),
            }
        }
    }
}

#[test]
fn the_pre_scan_counts_what_the_parser_builds() {
    check(
        "the_pre_scan_counts_what_the_parser_builds",
        500,
        |rng| {
            let v = super::value(rng, 5);
            let text = spaced(rng, &v);
            (Json(v), text)
        },
        |(v, text)| {
            let parsed: Value = serde_json::from_str(text).map_err(|e| format!("{e}"))?;
            // (Not compared with `v` itself: floats need not read back bit for bit.)
            let want = values_in(&parsed);
            if want != values_in(&v.0) {
                return Err("the spaced text is not the same value".into());
            }
            let got = count_values(text.as_bytes(), usize::MAX);
            if got != want {
                return Err(format!("counted {got} values, the parser built {want}"));
            }
            let limit = want / 2;
            let stopped = count_values(text.as_bytes(), limit);
            if want > limit && stopped != limit + 1 {
                return Err(format!("with limit {limit} it counted {stopped}"));
            }
            Ok(())
        },
    );
}

#[test]
fn the_pre_scan_takes_any_bytes() {
    check(
        "the_pre_scan_takes_any_bytes",
        500,
        |rng| {
            let mut text = super::value(rng, 4).to_string().into_bytes();
            // Cut it, and scatter the bytes the scanner looks at.
            text.truncate(rng.below(text.len() + 1));
            for _ in 0..rng.below(8) {
                let at = rng.below(text.len() + 1);
                text.insert(at, *rng.pick(b"\"\\,[]{} x"));
            }
            if rng.one_in(4) {
                let n = rng.below(200);
                text = rng.bytes(n);
            }
            (Bytes(text), rng.below(50))
        },
        |(text, limit)| {
            let n = count_values(&text.0, *limit);
            if n > limit + 1 {
                return Err(format!("counted {n} with limit {limit}"));
            }
            Ok(())
        },
    );
}
