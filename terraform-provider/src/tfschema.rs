//! Terraform attribute schemas generated from the API's JSON Schema (`schema/`).
//!
//! Nothing here lists a resource's fields: each resource names its create, update and read
//! types and this module derives the attributes, their types and their flags from them:
//!
//! - in the create type and `required` there → Required;
//! - in the create type otherwise → Optional; also Computed when the schema gives a `default`
//!   (planned as that value, so removing the field reverts it) or says `x-server-default`
//!   (the server picks a value: planned as "known after apply", kept afterwards);
//! - in the create type but not the update type → changing it forces replacement;
//! - only in the read type → Computed;
//! - `writeOnly` or `x-sensitive` → Sensitive.
//!
//! Nested objects become nested attributes (protocol 6), objects keyed by name (ports, disks,
//! NICs) become maps of nested attributes, so there is no ordering drift.

use std::collections::BTreeSet;

use serde_json::{Map, Value as Json};

use crate::value::{Type, Value};

/// How an attribute's value maps to API JSON when it is not a plain one-to-one copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conv {
    Plain,
    /// `VlanSet`: ids and `{from,to}` ranges in the API, strings `"10"` / `"20-29"` here
    /// (Terraform lists hold one element type).
    VlanSet,
    /// A free-form object, kept as a JSON string.
    JsonString,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nesting {
    Single,
    List,
    Set,
    Map,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Prim(Type, Conv),
    Nested(Nesting, Vec<Attr>),
}

/// One attribute of a resource, data source or nested object.
#[derive(Debug, Clone)]
pub struct Attr {
    pub name: String,
    pub description: String,
    pub kind: Kind,
    pub required: bool,
    pub optional: bool,
    pub computed: bool,
    pub sensitive: bool,
    /// Planned when the configuration leaves the attribute null.
    pub default: Option<Value>,
    /// A change needs a new object (the update type lacks the field).
    pub force_new: bool,
    /// Sent in the create request.
    pub in_create: bool,
    /// Sent in update requests.
    pub in_update: bool,
    /// Not returned by reads (passwords, one-time secrets): reads keep the state's value.
    pub keep_prior: bool,
    /// Computed and changed by every write (revision, updated_at).
    pub volatile: bool,
    /// Handled by the provider itself, never sent as-is (`running`, `reboot_on_change`).
    pub provider_only: bool,
    /// A change applies to a running guest at once (`x-live` in the schema); other changes
    /// wait for the next start.
    pub live: bool,
}

impl Attr {
    pub fn ty(&self) -> Type {
        match &self.kind {
            Kind::Prim(t, _) => t.clone(),
            Kind::Nested(n, attrs) => {
                let o = object_type(attrs);
                match n {
                    Nesting::Single => o,
                    Nesting::List => Type::List(Box::new(o)),
                    Nesting::Set => Type::Set(Box::new(o)),
                    Nesting::Map => Type::Map(Box::new(o)),
                }
            }
        }
    }

    /// A computed attribute with no configuration side.
    pub fn computed_only(name: &str, kind: Kind, description: &str) -> Attr {
        Attr {
            name: name.to_string(),
            description: description.to_string(),
            kind,
            required: false,
            optional: false,
            computed: true,
            sensitive: false,
            default: None,
            force_new: false,
            in_create: false,
            in_update: false,
            keep_prior: false,
            volatile: false,
            provider_only: false,
            live: true,
        }
    }
}

pub fn object_type(attrs: &[Attr]) -> Type {
    Type::Object(attrs.iter().map(|a| (a.name.clone(), a.ty())).collect())
}

/// Reads JSON Schema definitions (`$defs` of all files merged).
pub struct Defs<'a> {
    pub defs: &'a Map<String, Json>,
}

use ferrite::schema::walk::{Flat, Walk};

impl<'a> Defs<'a> {
    fn walk(&self) -> Walk<'a> {
        Walk::new(self.defs)
    }

    fn ref_name(s: &Json) -> Option<&str> {
        Walk::ref_name(s)
    }

    /// Follows `$ref`s; local keywords (description) win over the target's.
    fn resolve(&self, s: &Json) -> Json {
        self.walk().resolve(s)
    }

    fn flatten(&self, s: &Json) -> Flat {
        self.walk().flatten(s)
    }

    /// The property names of an object type (through `allOf`).
    pub fn property_names(&self, name: &str) -> BTreeSet<String> {
        self.flatten_def(name).props.keys().cloned().collect()
    }

    fn flatten_def(&self, name: &str) -> Flat {
        self.walk().flatten_def(name)
    }

    /// Drops `null` alternatives: `anyOf [X, null]` and `type: [T, "null"]` are just X / T.
    fn non_null(&self, s: &Json) -> Json {
        self.walk().non_null(s).0
    }

    fn sensitive(&self, s: &Json) -> bool {
        let r = self.resolve(s);
        r.get("writeOnly").and_then(Json::as_bool) == Some(true)
            || r.get("x-sensitive").and_then(Json::as_bool) == Some(true)
    }

    /// The kind of a property schema.
    pub fn kind(&self, s: &Json) -> Kind {
        if Self::ref_name(s) == Some("VlanSet") {
            return Kind::Prim(Type::List(Box::new(Type::String)), Conv::VlanSet);
        }
        let s = self.non_null(s);
        let ty = s.get("type").and_then(Json::as_str).unwrap_or_else(|| {
            if s.get("properties").is_some() || s.get("allOf").is_some() {
                "object"
            } else {
                "string"
            }
        });
        match ty {
            "integer" | "number" => Kind::Prim(Type::Number, Conv::Plain),
            "boolean" => Kind::Prim(Type::Bool, Conv::Plain),
            "array" => {
                let items = s.get("items").cloned().unwrap_or(Json::Null);
                let unique = s.get("uniqueItems").and_then(Json::as_bool) == Some(true);
                match self.kind(&items) {
                    Kind::Prim(t, Conv::Plain) => Kind::Prim(
                        if unique {
                            Type::Set(Box::new(t))
                        } else {
                            Type::List(Box::new(t))
                        },
                        Conv::Plain,
                    ),
                    Kind::Nested(Nesting::Single, attrs) => {
                        Kind::Nested(if unique { Nesting::Set } else { Nesting::List }, attrs)
                    }
                    _ => Kind::Prim(Type::String, Conv::JsonString),
                }
            }
            "object" => {
                let flat = self.flatten(&s);
                if !flat.props.is_empty() {
                    return Kind::Nested(Nesting::Single, self.nested_attrs(&flat));
                }
                match s.get("additionalProperties") {
                    Some(v @ Json::Object(_)) => match self.kind(v) {
                        Kind::Prim(t, Conv::Plain) => {
                            Kind::Prim(Type::Map(Box::new(t)), Conv::Plain)
                        }
                        Kind::Nested(Nesting::Single, attrs) => Kind::Nested(Nesting::Map, attrs),
                        _ => Kind::Prim(Type::String, Conv::JsonString),
                    },
                    _ => Kind::Prim(Type::String, Conv::JsonString),
                }
            }
            _ => Kind::Prim(Type::String, Conv::Plain),
        }
    }

    fn description(&self, s: &Json) -> String {
        let r = self.non_null(s);
        r.get("description")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string()
    }

    fn default_of(&self, s: &Json, kind: &Kind) -> Option<Value> {
        let d = self.resolve(s).get("default").cloned()?;
        match kind {
            Kind::Prim(t, Conv::Plain) => Value::from_json(&d, t).ok(),
            _ => None,
        }
    }

    fn server_default(&self, s: &Json) -> bool {
        self.resolve(s)
            .get("x-server-default")
            .and_then(Json::as_bool)
            == Some(true)
    }

    /// Attributes of a nested object: the same type serves request and response.
    fn nested_attrs(&self, flat: &Flat) -> Vec<Attr> {
        flat.props
            .iter()
            .map(|(name, s)| {
                let kind = self.kind(s);
                let required = flat.required.contains(name);
                let default = self.default_of(s, &kind);
                Attr {
                    name: name.clone(),
                    description: self.description(s),
                    required,
                    optional: !required,
                    computed: !required && (default.is_some() || self.server_default(s)),
                    sensitive: self.sensitive(s),
                    default,
                    kind,
                    force_new: false,
                    in_create: true,
                    in_update: true,
                    keep_prior: false,
                    volatile: false,
                    provider_only: false,
                    live: false,
                }
            })
            .collect()
    }

    /// The top-level attributes of a resource built from its API types.
    pub fn resource_attrs(
        &self,
        create: &str,
        update: Option<&str>,
        reads: &[&str],
        hidden: &[&str],
    ) -> Vec<Attr> {
        let c = self.flatten_def(create);
        let u = update.map(|u| self.flatten_def(u));
        let mut read_props = Map::new();
        for r in reads {
            read_props.extend(self.flatten_def(r).props);
        }
        let mut names: Vec<&String> = c.props.keys().collect();
        names.extend(read_props.keys().filter(|k| !c.props.contains_key(*k)));
        let mut out = Vec::new();
        for name in names {
            if hidden.contains(&name.as_str()) {
                continue;
            }
            let in_create = c.props.contains_key(name);
            let s = c.props.get(name).or_else(|| read_props.get(name));
            let Some(s) = s else { continue };
            let kind = self.kind(s);
            let required = in_create && c.required.contains(name);
            let default = if in_create {
                self.default_of(s, &kind)
            } else {
                None
            };
            let in_update = u.as_ref().is_some_and(|u| u.props.contains_key(name));
            out.push(Attr {
                name: name.clone(),
                description: self.description(s),
                required,
                optional: in_create && !required,
                computed: !in_create
                    || (!required && (default.is_some() || self.server_default(s))),
                sensitive: self.sensitive(s),
                default,
                force_new: in_create && !in_update,
                in_create,
                in_update,
                keep_prior: in_create && !read_props.contains_key(name),
                volatile: !in_create && matches!(name.as_str(), "revision" | "updated_at"),
                provider_only: false,
                live: self.resolve(s).get("x-live").and_then(Json::as_bool) == Some(true),
                kind,
            });
        }
        out
    }

    /// Attributes of a read-only object (data sources): everything computed.
    pub fn computed_attrs(&self, read: &str, hidden: &[&str]) -> Vec<Attr> {
        let f = self.flatten_def(read);
        f.props
            .iter()
            .filter(|(n, _)| !hidden.contains(&n.as_str()))
            .map(|(n, s)| {
                let mut a = Attr::computed_only(n, self.kind(s), &self.description(s));
                a.sensitive = self.sensitive(s);
                make_computed(&mut a);
                a
            })
            .collect()
    }
}

/// Marks a nested tree computed-only (data source results).
fn make_computed(a: &mut Attr) {
    a.required = false;
    a.optional = false;
    a.computed = true;
    a.default = None;
    if let Kind::Nested(_, attrs) = &mut a.kind {
        for x in attrs {
            make_computed(x);
        }
    }
}

/// Converts API JSON to a value of `attr`'s type.
pub fn from_api(attr: &Attr, j: Option<&Json>) -> Value {
    let Some(j) = j.filter(|j| !j.is_null()) else {
        return Value::Null;
    };
    match &attr.kind {
        Kind::Prim(_, Conv::JsonString) => Value::String(j.to_string()),
        Kind::Prim(_, Conv::VlanSet) => Value::List(
            j.as_array()
                .into_iter()
                .flatten()
                .map(|v| match (v.as_i64(), v.get("from"), v.get("to")) {
                    (Some(i), _, _) => Value::String(i.to_string()),
                    (None, Some(f), Some(t)) => Value::String(format!("{f}-{t}")),
                    _ => Value::String(v.to_string()),
                })
                .collect(),
        ),
        Kind::Prim(t, Conv::Plain) => Value::from_json(j, t).unwrap_or(Value::Null),
        Kind::Nested(n, attrs) => {
            let obj = |o: &Json| {
                Value::Object(
                    attrs
                        .iter()
                        .map(|a| (a.name.clone(), from_api(a, o.get(&a.name))))
                        .collect(),
                )
            };
            match n {
                Nesting::Single => obj(j),
                Nesting::List | Nesting::Set => {
                    Value::List(j.as_array().into_iter().flatten().map(obj).collect())
                }
                Nesting::Map => Value::Map(
                    j.as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), obj(v)))
                        .collect(),
                ),
            }
        }
    }
}

/// Converts a value of `attr`'s type to API JSON; nulls inside objects are left out.
pub fn to_api(attr: &Attr, v: &Value) -> Json {
    match (&attr.kind, v) {
        (_, Value::Null | Value::Unknown) => Json::Null,
        (Kind::Prim(_, Conv::JsonString), Value::String(s)) => {
            serde_json::from_str(s).unwrap_or(Json::String(s.clone()))
        }
        (Kind::Prim(_, Conv::VlanSet), Value::List(items)) => Json::Array(
            items
                .iter()
                .map(|x| {
                    let s = x.as_str().unwrap_or_default().trim();
                    if let Ok(i) = s.parse::<i64>() {
                        return serde_json::json!(i);
                    }
                    match s.split_once('-') {
                        Some((a, b)) => match (a.trim().parse::<i64>(), b.trim().parse::<i64>()) {
                            (Ok(a), Ok(b)) => serde_json::json!({"from": a, "to": b}),
                            _ => Json::String(s.to_string()),
                        },
                        None => Json::String(s.to_string()),
                    }
                })
                .collect(),
        ),
        (Kind::Prim(..), v) => v.to_json(),
        (Kind::Nested(n, attrs), v) => {
            let obj = |o: &Value| {
                let mut m = Map::new();
                for a in attrs {
                    let x = o.get(&a.name);
                    if !x.is_null() && !matches!(x, Value::Unknown) {
                        m.insert(a.name.clone(), to_api(a, x));
                    }
                }
                Json::Object(m)
            };
            match (n, v) {
                (Nesting::Single, o) => obj(o),
                (Nesting::List | Nesting::Set, Value::List(items)) => {
                    Json::Array(items.iter().map(obj).collect())
                }
                (Nesting::Map, Value::Map(m)) => {
                    Json::Object(m.iter().map(|(k, o)| (k.clone(), obj(o))).collect())
                }
                _ => Json::Null,
            }
        }
    }
}
