//! Creating a pool: the checks a pool body must pass beyond its schema (fields each type
//! needs or refuses, a sane path, content types the type can hold), shared by the API and
//! the installer's first-start seed.

use serde_json::{json, Value};

use super::{Storage, StorageError};
use crate::store::Object;

impl Storage {
    /// Checks a `StoragePoolCreate` body, fills `content` and `tags`, opens the backend and
    /// writes the row. Backend failures are reported against the field that named it.
    pub fn create_pool(&self, mut body: Value) -> Result<Object, StorageError> {
        let name = body["name"].as_str().unwrap_or_default().to_string();
        let ty = body["type"].as_str().unwrap_or_default().to_string();
        let need: &[&str] = if ty == "dir" {
            &["path"]
        } else {
            &["vg", "thinpool"]
        };
        let forbid: &[&str] = if ty == "dir" {
            &["vg", "thinpool"]
        } else {
            &["path"]
        };
        for f in need {
            if body.get(*f).is_none() {
                return Err(StorageError::Malformed {
                    field: format!("/{f}"),
                    message: format!("a {ty} pool needs '{f}'"),
                });
            }
        }
        for f in forbid {
            if body.get(*f).is_some() {
                return Err(StorageError::Malformed {
                    field: format!("/{f}"),
                    message: format!("a {ty} pool does not take '{f}'"),
                });
            }
        }
        if let Some(p) = body["path"].as_str() {
            if p.split('/').any(|c| c == ".." || c == ".") || p == "/" {
                return Err(StorageError::Malformed {
                    field: "/path".into(),
                    message: "must be a normalized absolute directory other than /".into(),
                });
            }
        }
        let allowed: &[&str] = if ty == "dir" {
            &["images", "rootdir", "iso", "template", "backup", "snippets"]
        } else {
            &["images"]
        };
        match body["content"].as_array() {
            None => body["content"] = json!(allowed),
            Some(a) => {
                for (i, c) in a.iter().enumerate() {
                    if !allowed.contains(&c.as_str().unwrap_or_default()) {
                        return Err(StorageError::Malformed {
                            field: format!("/content/{i}"),
                            message: format!("a {ty} pool cannot hold {c}"),
                        });
                    }
                }
            }
        }
        if body.get("tags").is_none() {
            body["tags"] = json!([]);
        }
        let dir = body["type"] == "dir";
        self.add_pool(&name, &body).map_err(|e| match e {
            StorageError::Invalid { .. } | StorageError::Store(_) => e,
            StorageError::Tool(m) | StorageError::Conflict(m) => StorageError::Invalid {
                field: if dir { "/path" } else { "/vg" }.into(),
                message: m,
            },
            StorageError::Io { context, source } => StorageError::Invalid {
                field: "/path".into(),
                message: format!("{context}: {source}"),
            },
            other => other,
        })
    }
}
