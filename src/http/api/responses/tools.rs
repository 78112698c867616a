//! The tools of a Responses request: function tools, custom (freeform) tools and the tools
//! inside a `namespace` become tools of the prompt contract, each with the name the prompt
//! gives it and, when that is not its wire name, how a call of it goes back on the wire.
//! Hosted tools (web search, file search, computer use, ...) cannot be emulated and are
//! skipped with a log line. Pure.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::error::GatewayError;
use crate::http::api::fields::{Dialect, Fields};
use crate::http::api::openai::decode::check_tool_choice;
use crate::model::{ToolChoice, ToolSpec};

const D: Dialect = Dialect::OpenAi;

/// How a tool the model sees in the prompt is called on the wire, for the tools that are
/// not plain top-level functions.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WireTool {
    pub(crate) custom: bool,
    pub(crate) namespace: Option<String>,
    pub(crate) name: String,
}

/// Prompt tool name → wire form.
pub(crate) type WireTools = HashMap<String, WireTool>;

/// The name a namespaced tool has in the prompt (and so in the model's calls).
pub(crate) fn prompt_name(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}__{name}"),
        None => name.to_string(),
    }
}

/// The request's `tools`, noting the wire form of those that need one in `wire`.
pub(crate) fn parse_tools(f: &Fields, wire: &mut WireTools) -> Result<Vec<ToolSpec>, GatewayError> {
    let mut out = Vec::new();
    for (i, t) in f.opt_array("tools")?.unwrap_or_default().iter().enumerate() {
        let to = Fields::object(t, format!("tools[{i}]"), D)?;
        if to.get("type").and_then(Value::as_str) != Some("namespace") {
            out.extend(tool_spec(&to, None, wire)?);
            continue;
        }
        let ns = required_name(&to)?;
        let inner = to
            .raw("tools")
            .and_then(Value::as_array)
            .ok_or_else(|| to.missing("tools"))?;
        let ns_desc = to.raw("description").and_then(Value::as_str).unwrap_or("");
        for (j, t) in inner.iter().enumerate() {
            let inner = Fields::object(t, format!("{}[{j}]", to.param("tools")), D)?;
            out.extend(tool_spec(&inner, Some((&ns, ns_desc)), wire)?);
        }
    }
    Ok(out)
}

/// The object's non-empty `name`.
pub(crate) fn required_name(f: &Fields) -> Result<String, GatewayError> {
    match f.raw("name") {
        Some(Value::String(n)) if !n.is_empty() => Ok(n.clone()),
        _ => Err(f.missing("name")),
    }
}

/// One function or custom tool (`None`: a tool type that cannot be emulated, skipped).
fn tool_spec(
    to: &Fields,
    namespace: Option<(&str, &str)>,
    wire: &mut WireTools,
) -> Result<Option<ToolSpec>, GatewayError> {
    let kind = match to.raw("type") {
        Some(Value::String(k)) => k.as_str(),
        _ => return Err(to.missing("type")),
    };
    if kind != "function" && kind != "custom" {
        log::warn!(
            "{} has type {kind:?}, a hosted tool Lingma cannot run; skipped",
            to.at()
        );
        return Ok(None);
    }
    let name = required_name(to)?;
    let mut description = to
        .raw("description")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if let Some((ns, ns_desc)) = namespace {
        let group = if ns_desc.is_empty() {
            format!("(Part of the {ns} tools.)")
        } else {
            format!("(Part of the {ns} tools: {ns_desc})")
        };
        description = if description.is_empty() {
            group
        } else {
            format!("{description}\n{group}")
        };
    }
    let schema = if kind == "custom" {
        description.push_str(&freeform_note(to.raw("format")));
        json!({"type": "object", "properties": {"input": {"type": "string", "description": "The tool's whole input, as free-form text."}}, "required": ["input"]})
    } else {
        match to.opt_object("parameters")? {
            None => json!({"type": "object", "properties": {}}),
            Some(o) => Value::Object(o.clone()),
        }
    };
    let prompt = prompt_name(namespace.map(|(ns, _)| ns), &name);
    if kind == "custom" || namespace.is_some() {
        wire.insert(
            prompt.clone(),
            WireTool {
                custom: kind == "custom",
                namespace: namespace.map(|(ns, _)| ns.to_string()),
                name,
            },
        );
    }
    Ok(Some(ToolSpec {
        name: prompt,
        description,
        schema,
    }))
}

/// What the contract tells the model about a custom tool's free-form input.
fn freeform_note(format: Option<&Value>) -> String {
    let mut note = String::from(
        "\nThis tool takes free-form text, not JSON: put its whole input in the `input` parameter.",
    );
    if let Some(f) = format.filter(|f| f.get("type").and_then(Value::as_str) == Some("grammar")) {
        let syntax = f.get("syntax").and_then(Value::as_str).unwrap_or("lark");
        if let Some(def) = f.get("definition").and_then(Value::as_str) {
            note.push_str(&format!(
                "\nThe input must match this {syntax} grammar:\n{def}"
            ));
        }
    }
    note
}

pub(crate) fn parse_tool_choice(
    f: &Fields,
    tools: &[ToolSpec],
) -> Result<ToolChoice, GatewayError> {
    let choice = match f.get("tool_choice") {
        None => return Ok(ToolChoice::Auto),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Any,
            other => return Err(GatewayError::invalid("tool_choice", format!("Invalid value for 'tool_choice': '{other}'. Supported values are: 'none', 'auto' and 'required'."))),
        },
        Some(Value::Object(o)) => {
            let o = Fields::new(o, "tool_choice", D);
            match o.raw("type").and_then(Value::as_str) {
                Some("function") | Some("custom") => {
                    let name = required_name(&o)?;
                    let ns = o.raw("namespace").and_then(Value::as_str);
                    ToolChoice::Named(prompt_name(ns, &name))
                }
                Some("allowed_tools") => match o.raw("mode").and_then(Value::as_str) {
                    Some("required") => ToolChoice::Any,
                    _ => ToolChoice::Auto,
                },
                Some(other) => {
                    return Err(GatewayError::invalid(
                        "tool_choice",
                        format!("Invalid value for 'tool_choice': a '{other}' tool cannot be forced; this gateway runs no hosted tools."),
                    ))
                }
                None => return Err(o.missing("type")),
            }
        }
        Some(other) => return Err(f.type_error("tool_choice", "a string or an object", other)),
    };
    check_tool_choice("tool_choice", "tool", choice, tools)
}
