//! How the simulator writes a tool call into its answer, the way the prompt's tool contract
//! asks or in a variant a real model writes (`[[sim:style=S]]`), with arguments made up to
//! satisfy the tool's JSON schema; and the card before a native tool call.

use serde_json::{json, Map, Value};

use super::directives::Style;

/// The command of `[[sim:cmd=...]]` when there is none.
pub(crate) const DEFAULT_COMMAND: &str = "echo sim-tool";

/// The text before a native tool call: a sentence, then the tool card on its own lines.
pub(crate) fn native_card(name: &str, tool_call_id: &str) -> String {
    format!("Let me use {name}.\n```toolCall::{name}::{tool_call_id}::INIT\n```\n")
}

/// `I'll call NAME now.` and `calls` calls of `name` written in `style`.
pub(crate) fn call_answer(name: &str, arguments: &Value, calls: usize, style: Style) -> String {
    let mut out = format!("I'll call {name} now.\n");
    for i in 0..calls {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&call_text(name, arguments, style, i + 1 == calls));
    }
    out
}

/// One call in `style`; `last` says whether it ends the answer (for `unclosed`).
fn call_text(name: &str, arguments: &Value, style: Style, last: bool) -> String {
    let action = |name: &str, arguments: &Value| {
        format!(
            "```json action\n{{\"tool\": {}, \"parameters\": {arguments}}}\n```\n",
            Value::from(name)
        )
    };
    let quoted = Value::from(name);
    match style {
        Style::Action => action(name, arguments),
        Style::Fence => {
            format!("```json\n{{\n  \"name\": {quoted},\n  \"arguments\": {arguments}\n}}\n```\n")
        }
        Style::Qwen => format!(
            "<tool_call>\n{{\"name\": {quoted}, \"arguments\": {arguments}}}\n</tool_call>\n"
        ),
        Style::Bare => format!("{{\"tool\": {quoted}, \"parameters\": {arguments}}}\n"),
        Style::Unclosed if last => {
            format!("```json action\n{{\"tool\": {quoted}, \"parameters\": {arguments}}}")
        }
        Style::Unclosed => action(name, arguments),
        Style::BadName => action(&wrong_case(name), arguments),
        Style::NoArgs => action(name, &json!({})),
    }
}

/// `name` in another case: upper-cased, or lower-cased when it is upper case already.
pub(crate) fn wrong_case(name: &str) -> String {
    let upper = name.to_uppercase();
    if upper != name {
        return upper;
    }
    let lower = name.to_lowercase();
    if lower != name {
        lower
    } else {
        format!("{name}_X")
    }
}

/// Arguments that satisfy `schema` (an object schema): every required property, plus any
/// `command` / `cmd` property, with a value of its type.
pub(crate) fn arguments(schema: &Value, command: &str) -> Value {
    let mut out = Map::new();
    let properties = schema.get("properties").and_then(Value::as_object);
    let required = schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str);
    let commands = properties
        .into_iter()
        .flat_map(|p| p.keys())
        .map(String::as_str)
        .filter(|k| is_command(k));
    for name in required.chain(commands) {
        if out.contains_key(name) {
            continue;
        }
        let property = properties.and_then(|p| p.get(name)).unwrap_or(&Value::Null);
        out.insert(name.to_string(), value_for(name, property, command));
    }
    Value::Object(out)
}

fn is_command(name: &str) -> bool {
    name == "command" || name == "cmd"
}

/// A value for the property `name` that its schema accepts.
fn value_for(name: &str, schema: &Value, command: &str) -> Value {
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    if let Some(value) = schema.get("const") {
        return value.clone();
    }
    let alternatives = ["anyOf", "oneOf", "allOf"]
        .iter()
        .find_map(|k| schema.get(*k).and_then(Value::as_array));
    if let Some(alt) = alternatives.and_then(|a| a.iter().find(|s| !is_null_type(s))) {
        return value_for(name, alt, command);
    }
    let ty = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ if schema.get("items").is_some() => "array",
        _ => "string",
    };
    match ty {
        "string" if is_command(name) => Value::from(command),
        "string" => Value::from(format!("sim-{name}")),
        "array" => {
            let items = schema.get("items").unwrap_or(&Value::Null);
            let strings = items.get("type").and_then(Value::as_str) == Some("string");
            if strings && is_command(name) {
                return json!(["bash", "-lc", command]);
            }
            let min = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0);
            (0..min.min(16))
                .map(|_| value_for(name, items, command))
                .collect()
        }
        "integer" | "number" => schema.get("minimum").cloned().unwrap_or(json!(1)),
        "boolean" => Value::Bool(false),
        "object" => arguments(schema, command),
        "null" => Value::Null,
        _ => Value::from(format!("sim-{name}")),
    }
}

fn is_null_type(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("null")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_follow_the_schema() {
        let schema = json!({
            "type": "object",
            "properties": {
                "command": {"type": "array", "items": {"type": "string"}},
                "workdir": {"type": "string"},
                "count": {"type": "integer", "minimum": 3},
                "ratio": {"type": "number"},
                "force": {"type": "boolean"},
                "tags": {"type": "array", "items": {"type": "integer"}},
                "two": {"type": "array", "items": {"type": "string"}, "minItems": 2},
                "mode": {"type": ["string", "null"], "enum": ["fast", "slow"]},
                "opts": {"type": "object", "properties": {"deep": {"type": "boolean"}}, "required": ["deep"]},
                "empty": {"type": "object"},
                "either": {"anyOf": [{"type": "null"}, {"type": "integer"}]},
            },
            "required": ["count", "ratio", "force", "tags", "two", "mode", "opts", "empty", "either", "extra"],
        });
        assert_eq!(
            arguments(&schema, "make test"),
            json!({
                "command": ["bash", "-lc", "make test"],
                "count": 3,
                "ratio": 1,
                "force": false,
                "tags": [],
                "two": ["sim-two", "sim-two"],
                "mode": "fast",
                "opts": {"deep": false},
                "empty": {},
                "either": 1,
                "extra": "sim-extra",
            })
        );
        // `cmd` as a string, filled though not required; no schema at all gives no arguments.
        let schema = json!({"type": "object", "properties": {"cmd": {"type": "string"}, "other": {"type": "string"}}});
        assert_eq!(arguments(&schema, "ls"), json!({"cmd": "ls"}));
        assert_eq!(arguments(&Value::Null, "ls"), json!({}));
    }
}
