//! Turning jsonschema errors into per-field problem entries, and query strings into typed JSON.

use jsonschema::error::ValidationErrorKind;
use serde::Serialize;
use std::collections::HashSet;

use serde_json::{Map, Value};

/// One offending field of a request.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InvalidParam {
    /// JSON pointer to the field (for query parameters: `/name`).
    pub pointer: String,
    /// Where the field was: `body`, `query`, `path` or `header`.
    #[serde(rename = "in")]
    pub location: String,
    pub message: String,
}

/// Runs a validator and names each offending field, pointing at the field itself for
/// `required` and `additionalProperties` errors rather than at its parent object.
///
/// When a field inside an `allOf` part is wrong, the part fails and JSON Schema then reports
/// every other field of that part as unevaluated ("unknown field") too. Those echoes are
/// dropped when a real error explains them: an unevaluated name is kept only if `declared`
/// (the field names the schema declares at that pointer) does not know it.
pub(super) fn collect(
    v: &jsonschema::Validator,
    instance: &Value,
    location: &str,
    declared: &dyn Fn(&str) -> HashSet<String>,
) -> Vec<InvalidParam> {
    let errors: Vec<_> = v.iter_errors(instance).collect();
    let explained = errors
        .iter()
        .any(|e| !matches!(e.kind(), ValidationErrorKind::UnevaluatedProperties { .. }));
    let mut out = Vec::new();
    for err in &errors {
        let base = err.instance_path().to_string();
        match err.kind() {
            ValidationErrorKind::UnevaluatedProperties { unexpected } => {
                let known = if explained {
                    declared(&base)
                } else {
                    HashSet::new()
                };
                for name in unexpected.iter().filter(|n| !known.contains(n.as_str())) {
                    out.push(unknown_field(&base, name, location));
                }
            }
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                for name in unexpected {
                    out.push(unknown_field(&base, name, location));
                }
            }
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                out.push(InvalidParam {
                    pointer: format!("{base}/{}", escape(name)),
                    location: location.to_string(),
                    message: format!("'{name}' is required"),
                });
            }
            // `"not": {"required": [a, b]}` is how the schema says "a or b, not both".
            ValidationErrorKind::Not { schema } if schema["required"].is_array() => {
                let names: Vec<&str> = schema["required"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n.as_str())
                    .collect();
                let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
                out.push(InvalidParam {
                    pointer: format!("{base}/{}", escape(names.last().copied().unwrap_or(""))),
                    location: location.to_string(),
                    message: format!("set {} but not both", quoted.join(" or ")),
                });
            }
            _ => out.push(InvalidParam {
                pointer: base,
                location: location.to_string(),
                message: err.to_string(),
            }),
        }
    }
    out.dedup();
    out
}

fn unknown_field(base: &str, name: &str, location: &str) -> InvalidParam {
    InvalidParam {
        pointer: format!("{base}/{}", escape(name)),
        location: location.to_string(),
        message: format!("unknown field '{name}'"),
    }
}

impl InvalidParam {
    /// `pointer: message`, or the message alone for the body as a whole (empty pointer).
    pub fn summary(&self) -> String {
        if self.pointer.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.pointer, self.message)
        }
    }
}

fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// Converts query-string pairs into a JSON object, typing each value by the schema's property
/// type. Values that do not parse stay strings, so validation reports them against the field.
pub fn coerce_query(pairs: &[(String, String)], props: Option<&Map<String, Value>>) -> Value {
    let mut obj = Map::new();
    for (k, v) in pairs {
        let ty = props
            .and_then(|p| p.get(k))
            .and_then(|s| s.get("type"))
            .and_then(Value::as_str);
        let val = match ty {
            Some("integer") => v
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(v.clone())),
            Some("boolean") => match v.as_str() {
                "true" | "1" => Value::Bool(true),
                "false" | "0" => Value::Bool(false),
                _ => Value::String(v.clone()),
            },
            _ => Value::String(v.clone()),
        };
        obj.insert(k.clone(), val);
    }
    Value::Object(obj)
}
