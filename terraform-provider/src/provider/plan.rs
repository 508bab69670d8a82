//! Plan-time work: validation against the JSON Schema, planned values, replacement, import
//! stubs, and data source reads.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::diag::{error, pointer_path, problem_diags};
use crate::api::{Api, ApiError};
use crate::proto::tfplugin6 as pb;
use crate::resources::{catalog, DataSource, Resource, Update};
use crate::tfschema::{from_api, to_api, Attr, Kind, Nesting};
use crate::value::{Num, Value};

/// Checks the known parts of a configuration against the create type, so `terraform plan`
/// refuses what the API would refuse (ranges, patterns, enums, VLAN ids, CIDRs) before
/// anything is touched. Unknown values are skipped; Terraform itself checks presence.
pub fn validate(r: &Resource, cfg: &Value) -> Vec<pb::Diagnostic> {
    let mut body = serde_json::Map::new();
    for a in r.attrs.iter().filter(|a| a.in_create && !a.provider_only) {
        let v = cfg.get(&a.name);
        if v.is_null() || v.has_unknown() {
            continue;
        }
        body.insert(a.name.clone(), to_api(a, v));
    }
    let mut diags = Vec::new();
    for p in r.def.parents {
        body.remove(p.name);
        if let Some(v) = cfg.get(p.name).as_str() {
            if !p.one_of.is_empty() && !p.one_of.contains(&v) {
                diags.push(super::diag::at(
                    error(
                        &format!("Invalid {} configuration", r.def.name),
                        &format!(
                            "{} must be one of {}, got '{v}'",
                            p.name,
                            p.one_of.join(", ")
                        ),
                    ),
                    &[p.name],
                ));
            }
        }
    }
    if let Value::Object(t) = cfg.get("timeouts") {
        for (op, v) in t {
            if let Some(s) = v.as_str() {
                if let Err(e) = crate::api::parse_duration(s) {
                    diags.push(super::diag::at(
                        error(&format!("Invalid {} timeouts", r.def.name), &e),
                        &["timeouts", op],
                    ));
                }
            }
        }
    }
    let errs = catalog()
        .registry
        .validate(r.def.create, &Json::Object(body), "body");
    diags.extend(
        errs.into_iter()
            .filter(|e| !e.message.ends_with("' is required"))
            .map(|e| {
                let mut d = error(
                    &format!("Invalid {} configuration", r.def.name),
                    &format!("{}: {}", e.pointer, e.message),
                );
                d.attribute = pointer_path(&r.attrs, &e.pointer);
                d
            }),
    );
    diags
}

pub struct PlanOut {
    pub planned: Value,
    pub replace: Vec<String>,
    pub diags: Vec<pb::Diagnostic>,
}

fn settable(a: &Attr) -> bool {
    a.required || a.optional
}

fn plan_attr(a: &Attr, cfg: &Value, pri: &Value, creating: bool) -> Value {
    if !settable(a) {
        return if creating {
            Value::Unknown
        } else {
            pri.clone()
        };
    }
    match cfg {
        Value::Unknown => Value::Unknown,
        Value::Null => match (&a.default, a.computed) {
            (Some(d), _) => d.clone(),
            // Computed on create; afterwards whatever the server said, null included.
            (None, true) if creating => Value::Unknown,
            (None, true) => pri.clone(),
            (None, false) => Value::Null,
        },
        cfg => match &a.kind {
            Kind::Nested(n, attrs) => plan_nested(*n, attrs, cfg, pri),
            Kind::Prim(..) => cfg.clone(),
        },
    }
}

fn plan_object(attrs: &[Attr], cfg: &Value, pri: &Value) -> Value {
    match cfg {
        Value::Object(_) => Value::Object(
            attrs
                .iter()
                .map(|x| {
                    (
                        x.name.clone(),
                        plan_attr(x, cfg.get(&x.name), pri.get(&x.name), pri.is_null()),
                    )
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

fn plan_nested(n: Nesting, attrs: &[Attr], cfg: &Value, pri: &Value) -> Value {
    match (n, cfg) {
        (Nesting::Single, _) => plan_object(attrs, cfg, pri),
        (Nesting::Map, Value::Map(m)) => Value::Map(
            m.iter()
                .map(|(k, o)| {
                    let po = match pri {
                        Value::Map(pm) => pm.get(k).cloned().unwrap_or(Value::Null),
                        _ => Value::Null,
                    };
                    (k.clone(), plan_object(attrs, o, &po))
                })
                .collect(),
        ),
        (Nesting::List, Value::List(l)) => Value::List(
            l.iter()
                .enumerate()
                .map(|(i, o)| {
                    let po = match pri {
                        Value::List(pl) => pl.get(i).cloned().unwrap_or(Value::Null),
                        _ => Value::Null,
                    };
                    plan_object(attrs, o, &po)
                })
                .collect(),
        ),
        (Nesting::Set, Value::List(l)) => Value::List(
            l.iter()
                .map(|o| plan_object(attrs, o, &Value::Null))
                .collect(),
        ),
        (_, other) => other.clone(),
    }
}

/// Plans a create, update or destroy.
pub fn plan(r: &Resource, prior: &Value, proposed: &Value, config: &Value) -> PlanOut {
    let mut out = PlanOut {
        planned: Value::Null,
        replace: Vec::new(),
        diags: Vec::new(),
    };
    if proposed.is_null() {
        return out;
    }
    let creating = prior.is_null();
    let mut m: BTreeMap<String, Value> = r
        .attrs
        .iter()
        .map(|a| {
            (
                a.name.clone(),
                plan_attr(a, config.get(&a.name), prior.get(&a.name), creating),
            )
        })
        .collect();
    if !creating {
        let changed = |a: &Attr, m: &BTreeMap<String, Value>| {
            let p = m.get(&a.name).unwrap_or(&Value::Null);
            matches!(p, Value::Unknown) && !prior.get(&a.name).is_null()
                || !p.same(prior.get(&a.name), &a.ty())
        };
        let any_change = r
            .attrs
            .iter()
            .any(|a| settable(a) && !a.provider_only && changed(a, &m));
        for a in r.attrs.iter().filter(|a| a.volatile) {
            if any_change {
                m.insert(a.name.clone(), Value::Unknown);
            }
        }
        out.replace = r
            .attrs
            .iter()
            .filter(|a| a.force_new && settable(a) && changed(a, &m))
            .map(|a| a.name.clone())
            .collect();
        if let Update::Resize = r.def.update {
            if let (Value::Number(new), Value::Number(old)) =
                (m.get("size").unwrap_or(&Value::Null), prior.get("size"))
            {
                if new.as_f64() < old.as_f64() {
                    out.diags.push(super::diag::at(
                        error(
                            &format!("{} cannot shrink", r.def.name),
                            &format!(
                                "size {} is below the current {}; volumes only grow (shrinking \
                                 would destroy data). Create a new volume instead.",
                                Value::Number(*new),
                                Value::Number(*old)
                            ),
                        ),
                        &["size"],
                    ));
                }
            }
        }
    }
    out.planned = Value::Object(m);
    out
}

/// The state an import starts from: only the key (and parent) are set; Read fills the rest.
pub fn import_stub(r: &Resource, id: &str) -> Result<Value, String> {
    let mut m: BTreeMap<String, Value> = r
        .attrs
        .iter()
        .map(|a| (a.name.clone(), Value::Null))
        .collect();
    // Parents first, then the key: `pool:name`, `container/105/before-upgrade`.
    let parts: Vec<&str> = id.splitn(r.def.parents.len() + 1, ['/', ':']).collect();
    if parts.len() != r.def.parents.len() + 1 || parts.iter().any(|p| p.is_empty()) {
        let mut want: Vec<&str> = r.def.parents.iter().map(|p| p.name).collect();
        want.push(r.def.key);
        return Err(format!("import id must be {}, got '{id}'", want.join("/")));
    }
    for (p, v) in r.def.parents.iter().zip(&parts) {
        let val = if p.number {
            Value::Number(Num::Int(
                v.parse()
                    .map_err(|_| format!("{} must be a number, got '{v}'", p.name))?,
            ))
        } else {
            Value::String(v.to_string())
        };
        m.insert(p.name.to_string(), val);
    }
    let key_value = parts[r.def.parents.len()];
    let key = r
        .attr(r.def.key)
        .ok_or_else(|| format!("{} has no key attribute", r.def.name))?;
    let v = match key.kind {
        Kind::Prim(crate::value::Type::Number, _) => {
            Value::Number(Num::Int(key_value.trim().parse().map_err(|_| {
                format!("import id must be a number ({}), got '{id}'", r.def.key)
            })?))
        }
        _ => Value::String(key_value.to_string()),
    };
    m.insert(r.def.key.to_string(), v);
    Ok(Value::Object(m))
}

/// Reads a data source.
pub fn read_data(api: &Api, d: &DataSource, cfg: &Value) -> (Value, Vec<pb::Diagnostic>) {
    let summary = format!("Unable to read {}", d.def.name);
    let mut state = match cfg {
        Value::Object(m) => m.clone(),
        _ => BTreeMap::new(),
    };
    let result: Result<(), ApiError> = (|| {
        match d.def.list {
            None => {
                let node = match cfg.get("node").as_str() {
                    Some(n) => n.to_string(),
                    None => {
                        let list = api.call("GET", "/nodes", &[], None, None)?;
                        list.as_ref()
                            .and_then(|l| l.get("items"))
                            .and_then(|i| i.get(0))
                            .and_then(|n| n.get("node"))
                            .and_then(Json::as_str)
                            .unwrap_or("localhost")
                            .to_string()
                    }
                };
                let obj = api
                    .call("GET", &format!("/nodes/{node}"), &[], None, None)?
                    .unwrap_or(Json::Null);
                for a in &d.attrs {
                    state.insert(a.name.clone(), from_api(a, obj.get(&a.name)));
                }
            }
            Some(path) => {
                let pool = cfg.get("pool").as_str().unwrap_or("local").to_string();
                let path = path.replace("{pool}", &pool);
                let mut query: Vec<(&str, String)> = vec![("limit", "1000".into())];
                for k in ["name", "tag"] {
                    if let Some(v) = cfg.get(k).as_str() {
                        query.push((k, v.to_string()));
                    }
                }
                if d.def.name == "ferrite_templates" {
                    query.push(("content", "template".into()));
                }
                let items_attr = d.attrs.iter().find(|a| a.name == "items");
                let inner: &[Attr] = match items_attr.map(|a| &a.kind) {
                    Some(Kind::Nested(_, attrs)) => attrs,
                    _ => &[],
                };
                let mut items = Vec::new();
                loop {
                    let page = api
                        .call("GET", &path, &query, None, None)?
                        .unwrap_or(Json::Null);
                    for it in page
                        .get("items")
                        .and_then(Json::as_array)
                        .into_iter()
                        .flatten()
                    {
                        items.push(Value::Object(
                            inner
                                .iter()
                                .map(|a| (a.name.clone(), from_api(a, it.get(&a.name))))
                                .collect(),
                        ));
                    }
                    match page.get("next_page_token").and_then(Json::as_str) {
                        Some(t) if !t.is_empty() => {
                            query.retain(|(k, _)| *k != "page_token");
                            query.push(("page_token", t.to_string()));
                        }
                        _ => break,
                    }
                }
                if d.def.name == "ferrite_templates" {
                    state.insert("pool".into(), Value::String(pool));
                }
                state.insert("items".into(), Value::List(items));
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => (Value::Object(state), Vec::new()),
        Err(e) => (Value::Null, problem_diags(&summary, &e, &d.attrs)),
    }
}
