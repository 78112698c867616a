//! Which JSON is a call: a held block's content parses into calls of the client's declared
//! tools, spelled exactly, with every required argument, or it is not one (and why). The
//! scanner (`scan.rs`) decides what to hold; this decides what it held.

use serde_json::{Map, Value};

use crate::model::{ToolCall, ToolSpec};

/// Why a block is not a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Reject {
    /// Not JSON, or JSON without a tool name: ordinary text or code.
    NotACall,
    Undeclared(String),
    MissingArguments {
        tool: String,
        missing: Vec<String>,
    },
    BadArguments(String),
}

impl Reject {
    pub(super) fn describe(&self) -> String {
        match self {
            Reject::NotACall => "not a call".into(),
            Reject::Undeclared(n) => format!("the model called `{n}`, which the client did not declare (names must match exactly)"),
            Reject::MissingArguments { tool, missing } => format!("the call of `{tool}` lacks required arguments {missing:?}"),
            Reject::BadArguments(n) => format!("the arguments of `{n}` are not a JSON object"),
        }
    }
}

/// Parses a block's content into calls of declared tools. Accepts the contract's
/// `{"tool", "parameters"}` and the shapes real models write instead: `name` /
/// `tool_name` / `function`, `arguments` / `input` / `args` (an object or a JSON string),
/// one object, several objects in a row, or an array of them.
pub(super) fn parse_calls(body: &str, tools: &[ToolSpec]) -> Result<Vec<ToolCall>, Reject> {
    let mut values = Vec::new();
    for v in serde_json::Deserializer::from_str(body.trim()).into_iter::<Value>() {
        match v {
            Ok(Value::Array(items)) => values.extend(items),
            Ok(v) => values.push(v),
            Err(_) => return Err(Reject::NotACall),
        }
    }
    if values.is_empty() {
        return Err(Reject::NotACall);
    }
    values.iter().map(|v| one_call(v, tools)).collect()
}

fn one_call(v: &Value, tools: &[ToolSpec]) -> Result<ToolCall, Reject> {
    let Some(obj) = v.as_object() else {
        return Err(Reject::NotACall);
    };
    let function = obj.get("function").and_then(Value::as_object);
    let name = ["tool", "name", "tool_name"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_str))
        .or_else(|| function.and_then(|f| f.get("name")).and_then(Value::as_str))
        .or_else(|| obj.get("function").and_then(Value::as_str))
        .ok_or(Reject::NotACall)?;
    let raw_args = ["parameters", "arguments", "input", "args"]
        .iter()
        .find_map(|k| obj.get(*k))
        .or_else(|| function.and_then(|f| f.get("arguments")));
    let spec = tools
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| Reject::Undeclared(name.to_string()))?;
    let arguments = match raw_args {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::Object(o)) => Value::Object(o.clone()),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(o)) => Value::Object(o),
            _ => return Err(Reject::BadArguments(name.to_string())),
        },
        Some(_) => return Err(Reject::BadArguments(name.to_string())),
    };
    let missing: Vec<String> = spec
        .required()
        .into_iter()
        .filter(|r| arguments.get(*r).is_none())
        .map(String::from)
        .collect();
    if !missing.is_empty() {
        return Err(Reject::MissingArguments {
            tool: name.to_string(),
            missing,
        });
    }
    Ok(ToolCall {
        id: new_call_id(),
        name: spec.name.clone(),
        arguments,
    })
}

fn new_call_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("call_{}", &id[..24])
}
