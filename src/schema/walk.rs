//! Reading types out of `schema/`'s merged `$defs`: following `$ref`s, flattening `allOf`
//! into one property set, and seeing through `null` alternatives. Shared by everything that
//! derives an artefact from the schema (the Terraform provider's attributes, the Ansible
//! collection's argument specs), so both read a type the same way.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

/// The merged `$defs` of `schema/`.
#[derive(Clone, Copy)]
pub struct Walk<'a> {
    pub defs: &'a Map<String, Value>,
}

/// An object type flattened through `allOf`: its properties and required names.
#[derive(Debug, Default, Clone)]
pub struct Flat {
    pub props: Map<String, Value>,
    pub required: BTreeSet<String>,
}

/// Annotations a `null`-able wrapper carries that belong to the value inside it.
const CARRIED: [&str; 4] = ["description", "x-live", "x-server-default", "x-sensitive"];

impl<'a> Walk<'a> {
    pub fn new(defs: &'a Map<String, Value>) -> Self {
        Walk { defs }
    }

    /// The type a `{"$ref": "#/$defs/Name"}` names.
    pub fn ref_name(s: &Value) -> Option<&str> {
        s.get("$ref")?.as_str()?.strip_prefix("#/$defs/")
    }

    /// Follows `$ref`s; local keywords (a description, say) win over the target's.
    pub fn resolve(&self, s: &Value) -> Value {
        match Self::ref_name(s) {
            Some(n) => {
                let mut t = self.resolve(self.defs.get(n).unwrap_or(&Value::Null));
                if let (Some(t), Some(local)) = (t.as_object_mut(), s.as_object()) {
                    for (k, v) in local {
                        if k != "$ref" {
                            t.insert(k.clone(), v.clone());
                        }
                    }
                }
                t
            }
            None => s.clone(),
        }
    }

    /// The properties and required names of an object schema, through `allOf`.
    pub fn flatten(&self, s: &Value) -> Flat {
        let s = self.resolve(s);
        let mut f = Flat::default();
        for part in s
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let sub = self.flatten(part);
            f.props.extend(sub.props);
            f.required.extend(sub.required);
        }
        if let Some(p) = s.get("properties").and_then(Value::as_object) {
            f.props.extend(p.clone());
        }
        let req = s.get("required").and_then(Value::as_array);
        for r in req.into_iter().flatten().filter_map(Value::as_str) {
            f.required.insert(r.to_string());
        }
        f
    }

    /// [`Walk::flatten`] of the type named `name`.
    pub fn flatten_def(&self, name: &str) -> Flat {
        self.flatten(&json!({ "$ref": format!("#/$defs/{name}") }))
    }

    /// The type without its `null` alternative (`anyOf [X, null]` is X, `type: [T, "null"]`
    /// is T), and whether there was one.
    pub fn non_null(&self, s: &Value) -> (Value, bool) {
        let r = self.resolve(s);
        if let Some(alts) = r.get("anyOf").and_then(Value::as_array) {
            let rest: Vec<&Value> = alts
                .iter()
                .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"))
                .collect();
            if rest.len() == 1 && rest.len() < alts.len() {
                let (mut inner, _) = self.non_null(rest[0]);
                for k in CARRIED {
                    if let (Some(d), Some(o)) = (r.get(k), inner.as_object_mut()) {
                        o.insert(k.into(), d.clone());
                    }
                }
                return (inner, true);
            }
        }
        if let Some(types) = r.get("type").and_then(Value::as_array) {
            let rest: Vec<&Value> = types
                .iter()
                .filter(|t| t.as_str() != Some("null"))
                .collect();
            if rest.len() == 1 {
                let mut o = r.clone();
                if let Some(m) = o.as_object_mut() {
                    m.insert("type".into(), rest[0].clone());
                }
                return (o, rest.len() < types.len());
            }
        }
        (r, false)
    }
}
