//! Structured-output requests, in every protocol's shape: chat `response_format`
//! (`{"type": "json_schema", "json_schema": {"name", "schema"}}`), Responses `text.format`
//! (`{"type": "json_schema", "name", "schema"}`) and Anthropic `output_format`
//! (`{"type": "json_schema", "schema"}`); `{"type": "json_object"}`; `{"type": "text"}` is
//! plain text. Its errors are in OpenAI's words for all three, as they always were. Pure.

use serde_json::Value;

use super::fields::{Dialect, Want};
use crate::error::GatewayError;
use crate::model::OutputFormat;

const D: Dialect = Dialect::OpenAi;

/// The output format `v` (the value of `param`) asks for; `None` is plain text.
pub(crate) fn output_format(param: &str, v: &Value) -> Result<Option<OutputFormat>, GatewayError> {
    let Some(o) = v.as_object() else {
        return Err(D.type_error(param, D.want(Want::Object), v));
    };
    match o.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(OutputFormat::JsonObject)),
        Some("json_schema") => {
            let inner = o.get("json_schema").and_then(Value::as_object).unwrap_or(o);
            let at = format!("{param}.schema");
            let schema = match inner.get("schema") {
                Some(s @ Value::Object(_)) => s.clone(),
                Some(other) => return Err(D.type_error(&at, D.want(Want::Object), other)),
                None => return Err(D.missing(&at)),
            };
            let name = inner.get("name").and_then(Value::as_str).unwrap_or("response");
            Ok(Some(OutputFormat::JsonSchema {
                name: name.to_string(),
                schema,
            }))
        }
        Some(other) => Err(GatewayError::invalid(
            format!("{param}.type"),
            format!("Invalid value: '{other}'. Supported values are: 'text', 'json_object' and 'json_schema'."),
        )),
        None => Err(D.missing(&format!("{param}.type"))),
    }
}
