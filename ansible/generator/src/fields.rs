//! Module options derived from the API's JSON Schema: one [`Field`] per property of a
//! resource's create, update and read types, with the facts the argument spec, the docs and
//! the diff engine need.

use ferrite::schema::walk::{Flat, Walk};
use serde_json::{Map, Value};

/// One option of a module (or one field of the object it returns).
#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub description: String,
    /// Ansible type: str, int, float, bool, list, dict or raw.
    pub ty: &'static str,
    /// For lists: the element type.
    pub elements: Option<&'static str>,
    pub choices: Vec<Value>,
    pub required: bool,
    pub no_log: bool,
    /// Sent on create / update; returned by reads.
    pub create: bool,
    pub update: bool,
    pub read: bool,
    /// How the diff engine compares it: scalar, set, list, map, object or vlanset.
    pub shape: &'static str,
    /// The update type accepts `null` (an empty value clears it).
    pub nullable: bool,
    /// A running guest picks the change up at once.
    pub live: bool,
    /// The server fills it when absent.
    pub server_default: bool,
    /// The server's default when absent (documented, never sent by the module).
    pub default: Option<Value>,
}

/// Reads types out of the merged `$defs` (through [`ferrite::schema::walk`]).
pub struct Defs<'a> {
    pub defs: &'a Map<String, Value>,
}

impl<'a> Defs<'a> {
    fn walk(&self) -> Walk<'a> {
        Walk::new(self.defs)
    }

    fn ref_name(s: &Value) -> Option<&str> {
        Walk::ref_name(s)
    }

    /// Follows `$ref`s; local keywords win over the target's.
    pub fn resolve(&self, s: &Value) -> Value {
        self.walk().resolve(s)
    }

    fn flatten(&self, s: &Value) -> Flat {
        self.walk().flatten(s)
    }

    fn flat_def(&self, name: &str) -> Flat {
        self.walk().flatten_def(name)
    }

    /// The type without its `null` alternative, and whether there was one.
    fn non_null(&self, s: &Value) -> (Value, bool) {
        self.walk().non_null(s)
    }

    fn json_type(s: &Value) -> &str {
        s.get("type").and_then(Value::as_str).unwrap_or_else(|| {
            if s.get("properties").is_some() || s.get("allOf").is_some() {
                "object"
            } else if s.get("anyOf").is_some() {
                "any"
            } else {
                "string"
            }
        })
    }

    fn scalar(ty: &str) -> &'static str {
        match ty {
            "integer" => "int",
            "number" => "float",
            "boolean" => "bool",
            "string" => "str",
            "object" => "dict",
            _ => "raw",
        }
    }

    /// A field built from one property schema.
    pub fn field(&self, name: &str, s: &Value) -> Field {
        let vlanset = Self::ref_name(s) == Some("VlanSet");
        let (t, nullable) = self.non_null(s);
        let flag = |k: &str| t.get(k).and_then(Value::as_bool) == Some(true);
        let mut f = Field {
            name: name.to_string(),
            description: t
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            ty: "raw",
            elements: None,
            choices: Vec::new(),
            required: false,
            no_log: flag("writeOnly") || flag("x-sensitive"),
            create: false,
            update: false,
            read: false,
            shape: "scalar",
            nullable,
            live: flag("x-live"),
            server_default: flag("x-server-default"),
            default: t.get("default").cloned(),
        };
        let jt = Self::json_type(&t);
        if vlanset {
            f.ty = "list";
            f.elements = Some("raw");
            f.shape = "vlanset";
        } else if jt == "array" {
            let (items, _) = self.non_null(t.get("items").unwrap_or(&Value::Null));
            f.ty = "list";
            f.elements = Some(Self::scalar(Self::json_type(&items)));
            if let Some(e) = items.get("enum").and_then(Value::as_array) {
                f.choices = e.clone();
            }
            f.shape = if t.get("uniqueItems").and_then(Value::as_bool) == Some(true) {
                "set"
            } else {
                "list"
            };
        } else if jt == "object" {
            f.ty = "dict";
            let keyed = t.get("additionalProperties").is_some_and(Value::is_object);
            f.shape = if keyed && self.flatten(&t).props.is_empty() {
                "map"
            } else {
                "object"
            };
        } else {
            f.ty = Self::scalar(jt);
            if let Some(e) = t.get("enum").and_then(Value::as_array) {
                f.choices = e.clone();
            }
        }
        f
    }

    /// The fields of a resource: create-type properties first, then read-only ones.
    pub fn resource_fields(
        &self,
        create: &str,
        update: Option<&str>,
        read: &[&str],
        hidden: &[&str],
    ) -> Vec<Field> {
        let c = self.flat_def(create);
        let u = update.map(|u| self.flat_def(u));
        let mut r = Map::new();
        for t in read {
            r.extend(self.flat_def(t).props);
        }
        let mut out = Vec::new();
        let mut names: Vec<&String> = c.props.keys().collect();
        names.extend(r.keys().filter(|k| !c.props.contains_key(*k)));
        for name in names {
            if hidden.contains(&name.as_str()) {
                continue;
            }
            let upd = u.as_ref().and_then(|u| u.props.get(name));
            let Some(s) = c.props.get(name).or(upd).or_else(|| r.get(name)) else {
                continue;
            };
            let mut f = self.field(name, s);
            f.create = c.props.contains_key(name);
            f.required = c.required.contains(name);
            f.update = upd.is_some();
            f.read = r.contains_key(name);
            if let Some(us) = upd {
                f.nullable = self.non_null(us).1;
            }
            out.push(f);
        }
        out
    }

    /// The read-only fields of one object type (returned values, info modules).
    pub fn object_fields(&self, ty: &str) -> Vec<Field> {
        let f = self.flat_def(ty);
        f.props
            .iter()
            .map(|(n, s)| {
                let mut x = self.field(n, s);
                x.read = true;
                x.required = f.required.contains(n);
                x
            })
            .collect()
    }

    /// One named property of a type (query options of info modules).
    pub fn property(&self, ty: &str, name: &str) -> Option<Field> {
        let f = self.flat_def(ty);
        f.props.get(name).map(|s| self.field(name, s))
    }
}
