//! Does a Rust type agree with its `schema/` type? Compares the JSON Schema `schemars`
//! derives from the Rust type with the hand-written one, field by field: names, JSON types,
//! defaults, enums and which fields are required, following `$ref`, `allOf`, array items and
//! map values on both sides. `tests/typed_specs.rs` runs it over the typed guest model, so a
//! field renamed or retyped on one side only fails a test instead of a request.
//!
//! Keywords that only narrow a value (patterns, bounds, lengths) are the validator's business
//! and are not compared: the API refuses out-of-range input before a typed parse runs.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde_json::{Map, Value};

/// One side's view of a type, with `$ref`, `allOf` and nullable wrappers resolved.
#[derive(Default, Debug)]
struct Shape {
    ty: Option<String>,
    default: Option<Value>,
    enumeration: Option<BTreeSet<String>>,
    properties: BTreeMap<String, Value>,
    required: BTreeSet<String>,
    items: Option<Value>,
    values: Option<Value>,
    /// The `$defs` names passed through, to stop on recursive types.
    names: Vec<String>,
}

fn ref_name(v: &Value) -> Option<&str> {
    v.get("$ref")?.as_str()?.rsplit('/').next()
}

fn shape(node: &Value, defs: &Map<String, Value>) -> Shape {
    let mut out = Shape::default();
    fill(node, defs, &mut out, 0);
    out
}

fn fill(node: &Value, defs: &Map<String, Value>, out: &mut Shape, depth: usize) {
    if depth > 32 {
        return;
    }
    let Some(o) = node.as_object() else { return };
    if let Some(name) = ref_name(node) {
        out.names.push(name.to_string());
        if let Some(d) = defs.get(name) {
            fill(d, defs, out, depth + 1);
        }
    }
    for branch in o
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        fill(branch, defs, out, depth + 1);
    }
    // `Option<T>` derives as `anyOf: [T, null]`: the non-null branch is the type.
    if let Some(any) = o.get("anyOf").and_then(Value::as_array) {
        let real: Vec<&Value> = any.iter().filter(|b| b["type"] != "null").collect();
        if real.len() == 1 && any.len() == 2 {
            fill(real[0], defs, out, depth + 1);
        }
    }
    match o.get("type") {
        Some(Value::String(t)) => out.ty = Some(t.clone()),
        Some(Value::Array(ts)) => {
            out.ty = ts
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .map(String::from)
        }
        _ => {}
    }
    if let Some(d) = o.get("default") {
        out.default = Some(d.clone());
    }
    if let Some(e) = o.get("enum").and_then(Value::as_array) {
        out.enumeration = Some(e.iter().map(Value::to_string).collect());
    }
    if let Some(p) = o.get("properties").and_then(Value::as_object) {
        for (k, v) in p {
            out.properties.insert(k.clone(), v.clone());
        }
    }
    for r in o
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(r) = r.as_str() {
            out.required.insert(r.to_string());
        }
    }
    if let Some(i) = o.get("items") {
        out.items = Some(i.clone());
    }
    if let Some(a) = o.get("additionalProperties").filter(|a| a.is_object()) {
        out.values = Some(a.clone());
    }
    if out.ty.is_none() && !out.properties.is_empty() {
        out.ty = Some("object".into());
    }
}

/// An empty collection as a Rust default means "absent" (`#[serde(default)]` on a `Vec` or
/// a map); the schema writes no default for those.
fn meaningful(d: &Option<Value>) -> Option<&Value> {
    d.as_ref().filter(|v| match v {
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
        Value::Null => false,
        _ => true,
    })
}

struct Walk<'a> {
    schema_defs: &'a Map<String, Value>,
    rust_defs: &'a Map<String, Value>,
    seen: HashSet<(Vec<String>, Vec<String>)>,
    out: Vec<String>,
}

impl Walk<'_> {
    fn compare(&mut self, s_node: &Value, r_node: &Value, at: &str) {
        let s = shape(s_node, self.schema_defs);
        let r = shape(r_node, self.rust_defs);
        let named = !s.names.is_empty() || !r.names.is_empty();
        if named && !self.seen.insert((s.names.clone(), r.names.clone())) {
            return;
        }
        match (&s.ty, &r.ty) {
            (Some(a), Some(b)) if a != b => {
                self.out
                    .push(format!("{at}: schema type {a}, Rust type {b}"));
                return;
            }
            (Some(a), None) if a != "null" => self
                .out
                .push(format!("{at}: schema type {a}, Rust type unknown")),
            _ => {}
        }
        if let (Some(a), Some(b)) = (&s.enumeration, &r.enumeration) {
            if a != b {
                self.out
                    .push(format!("{at}: schema enum {a:?}, Rust enum {b:?}"));
            }
        } else if s.enumeration.is_some() != r.enumeration.is_some() {
            self.out.push(format!(
                "{at}: enum on one side only (schema {:?}, Rust {:?})",
                s.enumeration, r.enumeration
            ));
        }
        let (sd, rd) = (meaningful(&s.default), meaningful(&r.default));
        if sd != rd {
            self.out.push(format!(
                "{at}: schema default {}, Rust default {}",
                sd.map_or("none".into(), Value::to_string),
                rd.map_or("none".into(), Value::to_string)
            ));
        }
        if s.ty.as_deref() == Some("object") || r.ty.as_deref() == Some("object") {
            self.compare_fields(&s, &r, at);
        }
        if let (Some(a), Some(b)) = (&s.items, &r.items) {
            self.compare(a, b, &format!("{at}[]"));
        }
        match (&s.values, &r.values) {
            (Some(a), Some(b)) => self.compare(a, b, &format!("{at}/*")),
            (None, None) => {}
            (a, _) => self.out.push(format!(
                "{at}: a map of values on the {} side only",
                if a.is_some() { "schema" } else { "Rust" }
            )),
        }
    }

    fn compare_fields(&mut self, s: &Shape, r: &Shape, at: &str) {
        for k in s.properties.keys() {
            if !r.properties.contains_key(k) {
                self.out
                    .push(format!("{at}/{k}: in the schema, not in the Rust type"));
            }
        }
        for k in r.properties.keys() {
            if !s.properties.contains_key(k) {
                self.out
                    .push(format!("{at}/{k}: in the Rust type, not in the schema"));
            }
        }
        for k in s.required.symmetric_difference(&r.required) {
            if s.properties.contains_key(k) && r.properties.contains_key(k) {
                let side = if s.required.contains(k) {
                    "the schema"
                } else {
                    "the Rust type"
                };
                self.out.push(format!("{at}/{k}: required only in {side}"));
            }
        }
        for (k, sv) in &s.properties {
            if let Some(rv) = r.properties.get(k) {
                self.compare(sv, rv, &format!("{at}/{k}"));
            }
        }
    }
}

/// Every disagreement between schema type `name` (looked up in `schema_defs`, the merged
/// `$defs` of `schema/`) and `rust`, a `schemars` root schema; empty when they agree.
pub fn disagreements(schema_defs: &Map<String, Value>, name: &str, rust: &Value) -> Vec<String> {
    let empty = Map::new();
    let rust_defs = rust
        .get("$defs")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let Some(s) = schema_defs.get(name) else {
        return vec![format!("{name}: no such schema type")];
    };
    let mut w = Walk {
        schema_defs,
        rust_defs,
        seen: HashSet::new(),
        out: Vec::new(),
    };
    w.compare(s, rust, name);
    w.out
}
