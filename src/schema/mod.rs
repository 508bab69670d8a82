//! The API contract, loaded from the JSON Schema documents in `schema/`.
//!
//! `schema/` is the single source of truth: request validation, the route table the daemon
//! dispatches from, the OpenAPI document, the Terraform provider's and the Ansible
//! collection's schemas (both through [`walk`]), and the typed guest model's agreement test
//! (through [`agree`]) all read these files. The files are embedded at build time so the daemon never serves a contract that
//! differs from the one it was built with.

pub mod agree;
mod openapi;
mod routes;
mod validate;
pub mod walk;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub use openapi::openapi_document;
pub use routes::{Auth, Route, RouteResponse};
pub use validate::{coerce_query, InvalidParam};

/// The schema documents, in load order. Names of `$defs` are global across files.
pub const SCHEMA_FILES: &[(&str, &str)] = &[
    ("common.json", include_str!("../../schema/common.json")),
    ("nodes.json", include_str!("../../schema/nodes.json")),
    ("tasks.json", include_str!("../../schema/tasks.json")),
    ("access.json", include_str!("../../schema/access.json")),
    ("network.json", include_str!("../../schema/network.json")),
    ("storage.json", include_str!("../../schema/storage.json")),
    (
        "containers.json",
        include_str!("../../schema/containers.json"),
    ),
    ("vms.json", include_str!("../../schema/vms.json")),
    ("install.json", include_str!("../../schema/install.json")),
    ("routes.json", include_str!("../../schema/routes.json")),
];

/// Errors in the schema documents themselves. These are build defects, caught by the unit
/// tests and at daemon start, never by a user request.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("schema file {file} is not valid JSON: {source}")]
    Parse {
        file: &'static str,
        source: serde_json::Error,
    },
    #[error("type {name} is defined twice (second time in {file})")]
    DuplicateDef { name: String, file: &'static str },
    #[error("type {name} does not compile: {message}")]
    Compile { name: String, message: String },
    #[error("route table is malformed: {0}")]
    Routes(String),
}

/// Every `$defs` type, compiled once, plus the route table.
pub struct Registry {
    defs: Map<String, Value>,
    /// Compiled on first use: most types are only ever nested inside others, and compiling
    /// every one up front costs tens of MiB of resident memory for nothing.
    validators: HashMap<String, OnceLock<Result<jsonschema::Validator, String>>>,
    routes: Vec<Arc<Route>>,
    privileges: Vec<String>,
    digest: String,
}

impl Registry {
    /// Loads and compiles the embedded schema documents.
    pub fn load() -> Result<Self, SchemaError> {
        let mut defs = Map::new();
        let mut routes_doc = None;
        let mut hasher = Sha256::new();
        for (file, text) in SCHEMA_FILES {
            hasher.update(text.as_bytes());
            let doc: Value =
                serde_json::from_str(text).map_err(|source| SchemaError::Parse { file, source })?;
            if let Some(Value::Object(d)) = doc.get("$defs") {
                for (name, schema) in d {
                    if defs.insert(name.clone(), schema.clone()).is_some() {
                        return Err(SchemaError::DuplicateDef {
                            name: name.clone(),
                            file,
                        });
                    }
                }
            }
            if *file == "routes.json" {
                routes_doc = doc.get("routes").cloned();
            }
        }
        let routes: Vec<Route> = serde_json::from_value(routes_doc.unwrap_or(Value::Null))
            .map_err(|e| SchemaError::Routes(e.to_string()))?;
        let routes: Vec<Arc<Route>> = routes.into_iter().map(Arc::new).collect();
        let privileges = defs
            .get("Privilege")
            .and_then(|p| p.get("enum"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let validators = defs.keys().map(|k| (k.clone(), OnceLock::new())).collect();
        let reg = Registry {
            defs,
            validators,
            routes,
            privileges,
            digest: hex::encode(hasher.finalize()),
        };
        reg.check_routes()?;
        Ok(reg)
    }

    /// Every route refers only to defined types, and no two routes share a method and path or an
    /// operation id.
    fn check_routes(&self) -> Result<(), SchemaError> {
        let mut seen = std::collections::HashSet::new();
        for r in &self.routes {
            for t in r.referenced_types() {
                if !self.defs.contains_key(t) {
                    return Err(SchemaError::Routes(format!(
                        "{} refers to undefined type {t}",
                        r.operation_id
                    )));
                }
            }
            if !seen.insert(format!("{} {}", r.method, r.path))
                || !seen.insert(r.operation_id.clone())
            {
                return Err(SchemaError::Routes(format!(
                    "duplicate route {}",
                    r.operation_id
                )));
            }
            if r.auth == Auth::Privilege && (r.privilege.is_none() || r.acl_path.is_none()) {
                return Err(SchemaError::Routes(format!(
                    "{} needs privilege and acl_path",
                    r.operation_id
                )));
            }
            if let Some(p) = &r.privilege {
                if !self.privileges.contains(p) {
                    return Err(SchemaError::Routes(format!(
                        "{} names unknown privilege {p}",
                        r.operation_id
                    )));
                }
            }
        }
        Ok(())
    }

    /// The types `name` refers to, transitively (including itself).
    fn closure(&self, name: &str) -> Map<String, Value> {
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                        if let Some(n) = r.strip_prefix("#/$defs/") {
                            out.push(n.to_string());
                        }
                    }
                    m.values().for_each(|x| refs(x, out));
                }
                Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
                _ => {}
            }
        }
        let mut out = Map::new();
        let mut todo = vec![name.to_string()];
        while let Some(n) = todo.pop() {
            if out.contains_key(&n) {
                continue;
            }
            if let Some(def) = self.defs.get(&n) {
                refs(def, &mut todo);
                out.insert(n, def.clone());
            }
        }
        out
    }

    /// Patterns run on the `regex` engine: linear time, so no request body can make
    /// validation backtrack for long (no pattern in `schema/` needs look-around).
    fn compile(&self, name: &str) -> Result<jsonschema::Validator, String> {
        // Only the referenced types: compiling a resource with every type in it costs tens of
        // MiB in the validator library, for types this validator never reaches.
        let wrapper = serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$ref": format!("#/$defs/{name}"),
            "$defs": Value::Object(self.closure(name)),
        });
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .build(&wrapper)
            .map_err(|e| e.to_string())
    }

    /// Compiles every type now (tests and `--check`), reporting the first that fails.
    pub fn compile_all(&self) -> Result<(), SchemaError> {
        for name in self.defs.keys() {
            self.compile(name).map_err(|message| SchemaError::Compile {
                name: name.clone(),
                message,
            })?;
        }
        Ok(())
    }

    /// The route table.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// The privilege names, in the order of the `Privilege` enum (their bit positions).
    pub fn privileges(&self) -> &[String] {
        &self.privileges
    }

    /// All `$defs`, merged across files.
    pub fn defs(&self) -> &Map<String, Value> {
        &self.defs
    }

    /// SHA-256 over the schema documents, so clients can tell which contract a daemon serves.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Validates `instance` against type `name`, returning one entry per offending field.
    pub fn validate(&self, name: &str, instance: &Value, location: &str) -> Vec<InvalidParam> {
        let compiled = self
            .validators
            .get(name)
            .map(|cell| cell.get_or_init(|| self.compile(name)));
        match compiled {
            Some(Ok(v)) => validate::collect(v, instance, location, &|ptr| {
                self.declared_fields_at(name, ptr)
            }),
            Some(Err(e)) => vec![InvalidParam {
                pointer: String::new(),
                location: location.to_string(),
                message: format!("schema {name} does not compile: {e}"),
            }],
            None => vec![InvalidParam {
                pointer: String::new(),
                location: location.to_string(),
                message: format!("no schema named {name}"),
            }],
        }
    }

    /// Every field name of an object type, through `allOf` references.
    pub fn field_names(&self, name: &str) -> std::collections::HashSet<String> {
        let mut out = std::collections::HashSet::new();
        self.each_part(name, &mut |def| {
            if let Some(p) = def.get("properties").and_then(Value::as_object) {
                out.extend(p.keys().cloned());
            }
        });
        out
    }

    /// The required field names of an object type, through `allOf` references.
    pub fn required_names(&self, name: &str) -> std::collections::HashSet<String> {
        let mut out = std::collections::HashSet::new();
        self.each_part(name, &mut |def| {
            let names = def.get("required").and_then(Value::as_array);
            out.extend(
                names
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(String::from),
            );
        });
        out
    }

    /// The field names the schema of type `name` declares for the object at JSON pointer
    /// `pointer` of an instance: `properties` through `$ref`, `allOf`, `anyOf` and `oneOf`,
    /// following `properties`, map values (`additionalProperties`) and array `items`.
    pub fn declared_fields_at(&self, name: &str, pointer: &str) -> HashSet<String> {
        let mut out = HashSet::new();
        let Some(def) = self.defs.get(name) else {
            return out;
        };
        let segments: Vec<String> = pointer
            .split('/')
            .skip(1)
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect();
        self.walk_declared(def, &segments, &mut out, 0);
        out
    }

    fn walk_declared(
        &self,
        schema: &Value,
        path: &[String],
        out: &mut HashSet<String>,
        depth: u32,
    ) {
        // Bounds recursive types; no real request nests this deep.
        if depth > 64 {
            return;
        }
        if let Some(target) = schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/$defs/"))
            .and_then(|r| self.defs.get(r))
        {
            self.walk_declared(target, path, out, depth + 1);
        }
        for key in ["allOf", "anyOf", "oneOf"] {
            for part in schema
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                self.walk_declared(part, path, out, depth + 1);
            }
        }
        let Some((seg, rest)) = path.split_first() else {
            if let Some(p) = schema.get("properties").and_then(Value::as_object) {
                out.extend(p.keys().cloned());
            }
            return;
        };
        if let Some(sub) = schema.get("properties").and_then(|p| p.get(seg.as_str())) {
            self.walk_declared(sub, rest, out, depth + 1);
        } else if let Some(sub) = schema.get("additionalProperties").filter(|a| a.is_object()) {
            self.walk_declared(sub, rest, out, depth + 1);
        }
        if let Some(sub) = schema.get("items").filter(|_| seg.parse::<usize>().is_ok()) {
            self.walk_declared(sub, rest, out, depth + 1);
        }
    }

    /// Calls `f` on an object type and on every type its `allOf` references, depth first.
    fn each_part(&self, name: &str, f: &mut dyn FnMut(&Value)) {
        let Some(def) = self.defs.get(name) else {
            return;
        };
        f(def);
        for part in def
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(r) = part
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/$defs/"))
            {
                self.each_part(r, f);
            }
        }
    }

    /// The `properties` of an object type (used for query parameters).
    pub fn properties(&self, name: &str) -> Option<&Map<String, Value>> {
        self.defs.get(name)?.get("properties")?.as_object()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_loads_and_every_example_validates() {
        let reg = Registry::load().expect("schema loads");
        reg.compile_all().expect("every type compiles");
        assert!(reg.routes().len() > 20);
        assert!(reg.privileges().iter().any(|p| p == "VM.Allocate"));
        for (name, def) in reg.defs() {
            if let Some(Value::Array(examples)) = def.get("examples") {
                for ex in examples {
                    let errs = reg.validate(name, ex, "body");
                    assert!(errs.is_empty(), "example of {name} invalid: {errs:?}");
                }
            }
        }
    }

    /// The case: only `/ports` is wrong, and the other bridge fields are not echoed
    /// back as unknown because the `allOf` part they live in failed.
    #[test]
    fn one_wrong_field_is_the_only_error() {
        let reg = Registry::load().expect("schema loads");
        let body = serde_json::json!({"name":"b","vlan_aware":true,"ports":["up0"],"addresses":["192.0.2.1/24"]});
        let errs = reg.validate("BridgeCreate", &body, "body");
        let pointers: Vec<_> = errs.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, ["/ports"], "{errs:?}");
        // A real unknown field next to a real error is still reported.
        let mut body = body;
        body["bogus"] = serde_json::json!(1);
        let errs = reg.validate("BridgeCreate", &body, "body");
        let pointers: Vec<_> = errs.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, ["/ports", "/bogus"], "{errs:?}");
    }

    /// Every type that wraps others with `allOf` and `unevaluatedProperties: false`: one field
    /// of a wrong type, the others at their (valid) schema defaults, gives exactly one error.
    #[test]
    fn wrapped_types_report_only_the_wrong_field() {
        let reg = Registry::load().expect("schema loads");
        let mut covered = 0;
        for (name, def) in reg.defs() {
            if def.get("allOf").is_none()
                || def.get("unevaluatedProperties") != Some(&Value::Bool(false))
            {
                continue;
            }
            let mut defaults = Map::new();
            reg.each_part(name, &mut |part| {
                for (k, p) in part
                    .get("properties")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    if let Some(d) = p.get("default") {
                        defaults.insert(k.clone(), d.clone());
                    }
                }
            });
            if defaults.len() < 2 {
                continue;
            }
            for wrong in defaults.keys() {
                let mut body = defaults.clone();
                body.insert(wrong.clone(), serde_json::json!(-1.5));
                let errs: Vec<_> = reg
                    .validate(name, &Value::Object(body), "body")
                    .into_iter()
                    .filter(|e| !e.message.ends_with("is required"))
                    .collect();
                let mut pointers: Vec<_> = errs.iter().map(|e| e.pointer.clone()).collect();
                pointers.dedup();
                assert_eq!(pointers, [format!("/{wrong}")], "{name}: {errs:?}");
            }
            covered += 1;
        }
        assert!(
            covered >= 4,
            "only {covered} wrapped types have two defaulted fields"
        );
    }

    #[test]
    fn validation_names_the_field() {
        let reg = Registry::load().expect("schema loads");
        let errs = reg.validate(
            "UserCreate",
            &serde_json::json!({"userid": "bob@local", "enabled": "yes", "bogus": 1}),
            "body",
        );
        let pointers: Vec<_> = errs.iter().map(|e| e.pointer.as_str()).collect();
        assert!(pointers.contains(&"/enabled"), "{errs:?}");
        assert!(pointers.contains(&"/bogus"), "{errs:?}");
        let errs = reg.validate("LoginRequest", &serde_json::json!({}), "body");
        assert!(errs.iter().any(|e| e.pointer == "/username"), "{errs:?}");
    }
}
