//! Request bodies typed on the command line as `KEY=VALUE` pairs, so no verb restates the
//! schema's field list: the daemon validates the body and names any wrong field.
//!
//! Dotted keys nest (`net.net0.bridge=vmbr0`); a value is JSON when it parses as JSON
//! (`memory=512`, `onboot=true`, `tags=["a","b"]`) and a string otherwise
//! (`template=local:busybox.tar.gz`). Quote a JSON string to force one (`name='"true"'`).

use serde_json::{Map, Value};

use super::CliError;

/// Builds a JSON object from `--json` (a document, or `-` for stdin) and `KEY=VALUE` pairs;
/// pairs override the document's fields.
pub fn body(fields: &[String], json: Option<&str>) -> Result<Value, CliError> {
    let mut root = match json {
        None => Value::Object(Map::new()),
        Some(text) => {
            let text = if text == "-" {
                super::commands::read_stdin()?
            } else {
                text.to_string()
            };
            serde_json::from_str(&text).map_err(|source| CliError::Json {
                what: "--json".to_string(),
                source,
            })?
        }
    };
    if !root.is_object() {
        return Err(CliError::Usage("--json must be a JSON object".into()));
    }
    for f in fields {
        let (key, raw) = f
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| CliError::Usage(format!("'{f}' is not KEY=VALUE")))?;
        let value =
            serde_json::from_str::<Value>(raw).unwrap_or_else(|_| Value::String(raw.into()));
        set(&mut root, key, value)?;
    }
    Ok(root)
}

/// Sets `a.b.c` in `root`, making objects on the way.
fn set(root: &mut Value, key: &str, value: Value) -> Result<(), CliError> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(CliError::Usage(format!("'{key}' has an empty part")));
    }
    let mut cur = root;
    for (i, p) in parts.iter().enumerate() {
        let obj = cur.as_object_mut().ok_or_else(|| {
            CliError::Usage(format!(
                "'{key}': {} is not an object",
                parts[..i].join(".")
            ))
        })?;
        if i + 1 == parts.len() {
            obj.insert((*p).to_string(), value);
            return Ok(());
        }
        cur = obj
            .entry((*p).to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pairs_nest_and_type_their_values() {
        let v = body(
            &[
                "name=web".into(),
                "memory=512".into(),
                "onboot=true".into(),
                "template=local:busybox.tar.gz".into(),
                "net.net0.bridge=vmbr0".into(),
                "net.net0.tag=10".into(),
                "tags=[\"a\"]".into(),
            ],
            None,
        )
        .expect("parses");
        assert_eq!(
            v,
            json!({"name": "web", "memory": 512, "onboot": true,
                   "template": "local:busybox.tar.gz",
                   "net": {"net0": {"bridge": "vmbr0", "tag": 10}}, "tags": ["a"]})
        );
        assert!(body(&["novalue".into()], None).is_err());
        assert!(body(&["a..b=1".into()], None).is_err());
        assert!(body(&["a=1".into(), "a.b=2".into()], None).is_err());
        let v = body(
            &["memory=256".into()],
            Some(r#"{"memory": 128, "name": "x"}"#),
        )
        .expect("merge");
        assert_eq!(v, json!({"memory": 256, "name": "x"}));
    }
}
