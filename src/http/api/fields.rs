//! The one reader of request fields, for every wire protocol: typed access to a JSON
//! object's fields whose errors name the parameter and say what was wrong in the
//! protocol's own words (OpenAI's "Invalid type for 'x': expected …", Anthropic's
//! "x: Input should be …"). `null` counts as absent, as both APIs read fields so; `raw`
//! is there for the few places where a `null` is an error of its own. Pure.

use serde_json::{Map, Value};

use crate::error::GatewayError;

/// Whose words an error is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    OpenAi,
    Anthropic,
}

/// The JSON types a field may be required to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    String,
    Bool,
    Number,
    Array,
    Object,
}

impl Dialect {
    /// How the dialect names a type in its errors.
    pub(crate) fn want(self, want: Want) -> &'static str {
        match (self, want) {
            (Dialect::OpenAi, Want::String) => "a string",
            (Dialect::OpenAi, Want::Bool) => "a boolean",
            (Dialect::OpenAi, Want::Number) => "a number",
            (Dialect::OpenAi, Want::Array) => "an array",
            (Dialect::OpenAi, Want::Object) => "an object",
            (Dialect::Anthropic, Want::String) => "a valid string",
            (Dialect::Anthropic, Want::Bool) => "a valid boolean",
            (Dialect::Anthropic, Want::Number) => "a valid number",
            (Dialect::Anthropic, Want::Array) => "a valid list",
            (Dialect::Anthropic, Want::Object) => "a valid dictionary",
        }
    }

    /// `param` holds `got` where `want` (in the dialect's words) belongs.
    pub(crate) fn type_error(self, param: &str, want: &str, got: &Value) -> GatewayError {
        let got = kind_of(got);
        let message = match self {
            Dialect::OpenAi => {
                format!("Invalid type for '{param}': expected {want}, but got {got}.")
            }
            Dialect::Anthropic => format!("{param}: Input should be {want}, not {got}"),
        };
        GatewayError::invalid(param, message)
    }

    /// `param` is required and absent.
    pub(crate) fn missing(self, param: &str) -> GatewayError {
        let message = match self {
            Dialect::OpenAi => format!("Missing required parameter: '{param}'."),
            Dialect::Anthropic => format!("{param}: Field required"),
        };
        GatewayError::invalid(param, message)
    }
}

/// How an error names a JSON value's type.
pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The fields of one JSON object (the body, a message, a tool, a content part), with the
/// path that names them in errors: `at` is `""` for the body, else the object's own
/// parameter (`messages[2]`, `messages.2`), to which a field's name is joined by a dot.
pub(crate) struct Fields<'a> {
    obj: Option<&'a Map<String, Value>>,
    at: String,
    dialect: Dialect,
}

impl<'a> Fields<'a> {
    /// The request body, which must be an object (the same 400 for every route).
    pub(crate) fn body(body: &'a Value, dialect: Dialect) -> Result<Self, GatewayError> {
        match body.as_object() {
            Some(obj) => Ok(Fields::new(obj, "", dialect)),
            None => Err(GatewayError::invalid(
                "body",
                format!(
                    "The request body must be a JSON object, not {}.",
                    kind_of(body)
                ),
            )),
        }
    }

    pub(crate) fn new(
        obj: &'a Map<String, Value>,
        at: impl Into<String>,
        dialect: Dialect,
    ) -> Self {
        Fields {
            obj: Some(obj),
            at: at.into(),
            dialect,
        }
    }

    /// `v`'s fields; `v` must be an object (else the dialect's type error naming `at`).
    pub(crate) fn object(
        v: &'a Value,
        at: impl Into<String>,
        dialect: Dialect,
    ) -> Result<Self, GatewayError> {
        let at = at.into();
        match v.as_object() {
            Some(obj) => Ok(Fields::new(obj, at, dialect)),
            None => Err(dialect.type_error(&at, dialect.want(Want::Object), v)),
        }
    }

    /// `v`'s fields if it is an object; anything else reads as an object without fields
    /// (for parts whose missing `type` is the error to report).
    pub(crate) fn lenient(v: &'a Value, at: impl Into<String>, dialect: Dialect) -> Self {
        Fields {
            obj: v.as_object(),
            at: at.into(),
            dialect,
        }
    }

    /// The parameter that names this object itself.
    pub(crate) fn at(&self) -> &str {
        &self.at
    }

    /// The parameter that names field `name` of this object in errors.
    pub(crate) fn param(&self, name: &str) -> String {
        if self.at.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.at)
        }
    }

    /// A field, `null` counting as absent.
    pub(crate) fn get(&self, name: &str) -> Option<&'a Value> {
        self.raw(name).filter(|v| !v.is_null())
    }

    /// A field as it is, `null` included.
    pub(crate) fn raw(&self, name: &str) -> Option<&'a Value> {
        self.obj.and_then(|o| o.get(name))
    }

    /// Whether the object has the key at all, even with `null`.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.obj.is_some_and(|o| o.contains_key(name))
    }

    pub(crate) fn missing(&self, name: &str) -> GatewayError {
        self.dialect.missing(&self.param(name))
    }

    pub(crate) fn type_error(&self, name: &str, want: &str, got: &Value) -> GatewayError {
        self.dialect.type_error(&self.param(name), want, got)
    }

    /// A field `pick` accepts, else the type error with `want` (in the dialect's words).
    pub(crate) fn typed<T>(
        &self,
        name: &str,
        want: &str,
        pick: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<Option<T>, GatewayError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => pick(v)
                .map(Some)
                .ok_or_else(|| self.type_error(name, want, v)),
        }
    }

    fn of_type<T>(
        &self,
        name: &str,
        want: Want,
        pick: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<Option<T>, GatewayError> {
        self.typed(name, self.dialect.want(want), pick)
    }

    pub(crate) fn opt_str(&self, name: &str) -> Result<Option<&'a str>, GatewayError> {
        self.of_type(name, Want::String, Value::as_str)
    }

    /// A required string.
    pub(crate) fn str(&self, name: &str) -> Result<&'a str, GatewayError> {
        self.opt_str(name)?.ok_or_else(|| self.missing(name))
    }

    /// An optional string, an empty one counting as absent.
    pub(crate) fn opt_text(&self, name: &str) -> Result<Option<String>, GatewayError> {
        Ok(self
            .opt_str(name)?
            .filter(|s| !s.is_empty())
            .map(String::from))
    }

    pub(crate) fn opt_bool(&self, name: &str) -> Result<Option<bool>, GatewayError> {
        self.of_type(name, Want::Bool, Value::as_bool)
    }

    pub(crate) fn opt_array(&self, name: &str) -> Result<Option<&'a [Value]>, GatewayError> {
        self.of_type(name, Want::Array, |v| v.as_array().map(Vec::as_slice))
    }

    /// A required array.
    pub(crate) fn array(&self, name: &str) -> Result<&'a [Value], GatewayError> {
        self.opt_array(name)?.ok_or_else(|| self.missing(name))
    }

    pub(crate) fn opt_object(
        &self,
        name: &str,
    ) -> Result<Option<&'a Map<String, Value>>, GatewayError> {
        self.of_type(name, Want::Object, Value::as_object)
    }

    /// An optional integer of at least 1.
    pub(crate) fn opt_positive(&self, name: &str) -> Result<Option<u64>, GatewayError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        match v.as_u64() {
            Some(n) if n >= 1 => Ok(Some(n)),
            _ => {
                let param = self.param(name);
                let message = match self.dialect {
                    Dialect::OpenAi => format!("'{param}' must be a positive integer."),
                    Dialect::Anthropic => format!("{param}: must be a positive integer"),
                };
                Err(GatewayError::invalid(param, message))
            }
        }
    }

    /// Refuses the first of `names` that is present and not a number.
    pub(crate) fn numbers(&self, names: &[&str]) -> Result<(), GatewayError> {
        for name in names {
            self.of_type(name, Want::Number, |v| v.is_number().then_some(()))?;
        }
        Ok(())
    }

    /// An optional array of strings (absent: none); `want` names the array, `each` what
    /// its elements must be (the element is what the error shows).
    pub(crate) fn strings(
        &self,
        name: &str,
        want: &str,
        each: &str,
    ) -> Result<Vec<String>, GatewayError> {
        let Some(items) = self.typed(name, want, Value::as_array)? else {
            return Ok(Vec::new());
        };
        items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(String::from)
                    .ok_or_else(|| self.type_error(name, each, v))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(body: &Value, read: impl Fn(&Fields) -> Result<(), GatewayError>) -> String {
        let e = read(&Fields::object(body, "", Dialect::OpenAi).unwrap()).unwrap_err();
        let a = read(&Fields::object(body, "", Dialect::Anthropic).unwrap()).unwrap_err();
        format!("{} | {}", e.message, a.message)
    }

    #[test]
    fn errors_are_in_each_dialects_words() {
        let body = json!({"s": 1, "b": "x", "n": null, "p": 0});
        assert_eq!(
            message(&body, |f| f.opt_str("s").map(drop)),
            "Invalid type for 's': expected a string, but got a number. | s: Input should be a valid string, not a number"
        );
        assert_eq!(
            message(&body, |f| f.opt_bool("b").map(drop)),
            "Invalid type for 'b': expected a boolean, but got a string. | b: Input should be a valid boolean, not a string"
        );
        assert_eq!(
            message(&body, |f| f.str("n").map(drop)),
            "Missing required parameter: 'n'. | n: Field required",
            "null is absent"
        );
        assert_eq!(
            message(&body, |f| f.opt_positive("p").map(drop)),
            "'p' must be a positive integer. | p: must be a positive integer"
        );
    }

    #[test]
    fn nested_fields_name_their_path() {
        let m = json!({"role": 5});
        let f = Fields::object(&m, "messages[0]", Dialect::OpenAi).unwrap();
        let e = f.str("role").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = Fields::object(&json!([]), "messages.1", Dialect::Anthropic)
            .err()
            .unwrap();
        assert_eq!(
            e.message,
            "messages.1: Input should be a valid dictionary, not an array"
        );
        let text = json!("text");
        let lenient = Fields::lenient(&text, "x", Dialect::OpenAi);
        assert!(lenient.get("type").is_none());
        assert_eq!(
            Fields::body(&json!(3), Dialect::Anthropic)
                .err()
                .unwrap()
                .message,
            "The request body must be a JSON object, not a number."
        );
    }
}
