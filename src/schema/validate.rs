//! Turning jsonschema errors into per-field problem entries, and query strings into typed JSON.

use jsonschema::error::ValidationErrorKind;
use serde::Serialize;
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
pub(super) fn collect(
    v: &jsonschema::Validator,
    instance: &Value,
    location: &str,
) -> Vec<InvalidParam> {
    let mut out = Vec::new();
    for err in v.iter_errors(instance) {
        let base = err.instance_path().to_string();
        match err.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected }
            | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
                for name in unexpected {
                    out.push(InvalidParam {
                        pointer: format!("{base}/{}", escape(name.as_ref())),
                        location: location.to_string(),
                        message: format!("unknown field '{name}'"),
                    });
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
