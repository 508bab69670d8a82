//! The `tfplugin6.Provider` gRPC service: schema, validation, plan, apply, read, import and
//! data sources, all driven by the generated catalog.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value as Json;
use tonic::{Request, Response, Status};

use crate::api::{Api, ApiError, Settings};
use crate::proto::tfplugin6 as pb;
use crate::proto::tfplugin6::provider_server::Provider;
use crate::resources::{catalog, DataSource, Resource, Update};
use crate::tfschema::{from_api, to_api, Attr, Kind, Nesting};
use crate::value::{Type, Value};

mod diag;
mod plan;

use diag::{error, path_of, problem_diags, warning};

#[derive(Default)]
pub struct FerriteProvider {
    api: RwLock<Option<Arc<Api>>>,
}

fn dynamic(v: &Value, ty: &Type) -> Option<pb::DynamicValue> {
    Some(pb::DynamicValue {
        msgpack: v.to_msgpack(ty),
        json: Vec::new(),
    })
}

fn decode(d: &Option<pb::DynamicValue>, ty: &Type) -> Result<Value, String> {
    match d {
        None => Ok(Value::Null),
        Some(d) if !d.msgpack.is_empty() => {
            Value::from_msgpack(&d.msgpack, ty).map_err(|e| e.to_string())
        }
        Some(d) if !d.json.is_empty() => {
            let j: Json = serde_json::from_slice(&d.json).map_err(|e| e.to_string())?;
            Value::from_json(&j, ty).map_err(|e| e.to_string())
        }
        Some(_) => Ok(Value::Null),
    }
}

fn schema_attr(a: &Attr) -> pb::schema::Attribute {
    let mut out = pb::schema::Attribute {
        name: a.name.clone(),
        description: a.description.clone(),
        description_kind: pb::StringKind::Markdown as i32,
        required: a.required,
        optional: a.optional,
        computed: a.computed,
        sensitive: a.sensitive,
        ..Default::default()
    };
    match &a.kind {
        Kind::Prim(t, _) => out.r#type = t.to_json().to_string().into_bytes(),
        Kind::Nested(n, attrs) => {
            use pb::schema::object::NestingMode as M;
            out.nested_type = Some(pb::schema::Object {
                attributes: attrs.iter().map(schema_attr).collect(),
                nesting: match n {
                    Nesting::Single => M::Single,
                    Nesting::List => M::List,
                    Nesting::Set => M::Set,
                    Nesting::Map => M::Map,
                } as i32,
            })
        }
    }
    out
}

fn schema_of(attrs: &[Attr], description: &str, version: i64) -> pb::Schema {
    pb::Schema {
        version,
        block: Some(pb::schema::Block {
            version,
            attributes: attrs.iter().map(schema_attr).collect(),
            block_types: Vec::new(),
            description: description.to_string(),
            description_kind: pb::StringKind::Markdown as i32,
            deprecated: false,
        }),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Provider settings: configuration first, then `FERRITE_*` environment variables.
fn settings(cfg: &Value) -> Result<Settings, String> {
    let s = |k: &str, e: &str| cfg.get(k).as_str().map(String::from).or_else(|| env(e));
    let endpoint = s("endpoint", "FERRITE_ENDPOINT")
        .ok_or("endpoint is not set (provider block or FERRITE_ENDPOINT)")?;
    let insecure = cfg.get("insecure").as_bool().unwrap_or_else(|| {
        env("FERRITE_INSECURE").is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes"))
    });
    let timeout = match cfg.get("timeout") {
        Value::Number(n) => n.as_f64(),
        _ => env("FERRITE_TIMEOUT")
            .and_then(|v| v.parse().ok())
            .unwrap_or(300.0),
    };
    if !(1.0..=86400.0).contains(&timeout) {
        return Err(format!("timeout must be 1..86400 seconds, got {timeout}"));
    }
    Ok(Settings {
        endpoint,
        token: s("token", "FERRITE_TOKEN"),
        username: s("username", "FERRITE_USERNAME"),
        password: s("password", "FERRITE_PASSWORD"),
        fingerprint: s("tls_fingerprint", "FERRITE_TLS_FINGERPRINT"),
        insecure,
        timeout: Duration::from_secs_f64(timeout),
    })
}

/// Runs blocking HTTP work off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("worker failed: {e}")))
}

/// The path of one object, e.g. `/network/bridges/br0` or `/storage/pools/local/volumes/v1`.
fn item_path(r: &Resource, state: &Value) -> Result<String, String> {
    let coll = collection_path(r, state)?;
    let key = match state.get(r.def.key) {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.as_i64().map(|i| i.to_string()).unwrap_or_default(),
        _ => return Err(format!("{} is not known", r.def.key)),
    };
    Ok(format!("{coll}/{key}"))
}

fn collection_path(r: &Resource, state: &Value) -> Result<String, String> {
    fill_path(r.def.collection, r, state)
}

/// A route with the parent attributes' values in its `{name}` placeholders.
fn fill_path(route: &str, r: &Resource, state: &Value) -> Result<String, String> {
    let mut path = route.to_string();
    for p in r.def.parents {
        let v = match state.get(p.name) {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.as_i64().map(|i| i.to_string()).unwrap_or_default(),
            _ => return Err(format!("{} is not known", p.name)),
        };
        path = path.replace(&format!("{{{}}}", p.name), &v);
    }
    Ok(path)
}

/// Builds state from an API object. `reference` (the plan or prior state) supplies what the
/// API does not return (write-only secrets, provider settings) and decides normalisation: an
/// empty collection the user left unset stays null, so plans stay empty.
fn state_from_api(r: &Resource, obj: &Json, reference: &Value) -> Value {
    let mut m = BTreeMap::new();
    for a in &r.attrs {
        let v = if a.provider_only {
            match a.name.as_str() {
                "running" => Value::Bool(
                    obj.pointer("/status/state").and_then(Json::as_str) == Some("running"),
                ),
                _ => match reference.get(&a.name) {
                    Value::Null | Value::Unknown => a.default.clone().unwrap_or(Value::Null),
                    v => v.clone(),
                },
            }
        } else if r.def.parents.iter().any(|p| p.name == a.name)
            && obj.get(&a.name).is_none_or(Json::is_null)
        {
            // Path parameters the object does not repeat (a snapshot's guest).
            reference.get(&a.name).clone()
        } else if a.keep_prior {
            match obj.get(&a.name) {
                Some(j) if !j.is_null() => from_api(a, Some(j)),
                _ => match reference.get(&a.name) {
                    Value::Unknown => Value::Null,
                    v => v.clone(),
                },
            }
        } else {
            normalise(a, from_api(a, obj.get(&a.name)), reference.get(&a.name))
        };
        m.insert(a.name.clone(), v);
    }
    Value::Object(m)
}

/// Keeps the user's spelling where the API's answer means the same thing. A field the API
/// leaves out takes its schema default, as a plan does when the configuration leaves it out:
/// an object made without Terraform (then imported) reads back as it was planned.
fn normalise(a: &Attr, got: Value, reference: &Value) -> Value {
    let got = match (got, &a.default) {
        (Value::Null, Some(d)) => d.clone(),
        (g, _) => g,
    };
    let empty = |v: &Value| match v {
        Value::List(l) => l.is_empty(),
        Value::Map(m) => m.is_empty(),
        _ => false,
    };
    match (reference, &got) {
        (Value::Null, g) if empty(g) && !a.computed => return Value::Null,
        (r, Value::Null) if empty(r) => return r.clone(),
        _ => {}
    }
    match (&a.kind, got, reference) {
        (Kind::Nested(Nesting::Single, attrs), Value::Object(g), r) => Value::Object(
            attrs
                .iter()
                .map(|x| {
                    let gv = g.get(&x.name).cloned().unwrap_or(Value::Null);
                    (x.name.clone(), normalise(x, gv, r.get(&x.name)))
                })
                .collect(),
        ),
        (Kind::Nested(Nesting::Map, attrs), Value::Map(g), r) => Value::Map(
            g.into_iter()
                .map(|(k, o)| {
                    let ro = match r {
                        Value::Map(rm) => rm.get(&k).cloned().unwrap_or(Value::Null),
                        _ => Value::Null,
                    };
                    let o = match o {
                        Value::Object(om) => Value::Object(
                            attrs
                                .iter()
                                .map(|x| {
                                    let gv = om.get(&x.name).cloned().unwrap_or(Value::Null);
                                    (x.name.clone(), normalise(x, gv, ro.get(&x.name)))
                                })
                                .collect(),
                        ),
                        o => o,
                    };
                    (k, o)
                })
                .collect(),
        ),
        (_, g, r) => {
            // The same set in another order is the user's order.
            if g.same(r, &a.ty()) {
                r.clone()
            } else {
                g
            }
        }
    }
}

/// Fields of an object value as an API request body. Creates leave nulls out; updates send
/// them, since null clears a field there.
fn body_of(r: &Resource, v: &Value, keep_null: bool, pick: impl Fn(&Attr) -> bool) -> Json {
    let mut m = serde_json::Map::new();
    for a in r.attrs.iter().filter(|a| !a.provider_only && pick(a)) {
        if r.def.parents.iter().any(|p| p.name == a.name) {
            continue;
        }
        let x = v.get(&a.name);
        if matches!(x, Value::Unknown) || (x.is_null() && !keep_null) {
            continue;
        }
        m.insert(a.name.clone(), to_api(a, x));
    }
    Json::Object(m)
}

impl FerriteProvider {
    fn api(&self) -> Result<Arc<Api>, Status> {
        self.api
            .read()
            .ok()
            .and_then(|g| g.clone())
            .ok_or_else(|| Status::failed_precondition("provider is not configured"))
    }

    fn resource(name: &str) -> Result<&'static Resource, Status> {
        catalog()
            .resources
            .get(name)
            .ok_or_else(|| Status::not_found(format!("no resource type {name}")))
    }

    fn data_source(name: &str) -> Result<&'static DataSource, Status> {
        catalog()
            .data_sources
            .get(name)
            .ok_or_else(|| Status::not_found(format!("no data source {name}")))
    }
}

/// Reads one object; `None` when it is gone.
fn read_object(api: &Api, r: &Resource, state: &Value) -> Result<Option<Json>, ApiError> {
    if r.def.read_in_list {
        let coll = collection_path(r, state).map_err(ApiError::Other)?;
        let key = state.get(r.def.key).to_json();
        let list = match api.call("GET", &coll, &[], None, None) {
            Ok(l) => l.unwrap_or(Json::Null),
            // The parent itself is gone: so is the object.
            Err(ApiError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let items = list.get("items").cloned().unwrap_or(list);
        return Ok(items
            .as_array()
            .and_then(|a| a.iter().find(|o| o.get(r.def.key) == Some(&key)).cloned()));
    }
    let path = item_path(r, state).map_err(ApiError::Other)?;
    match api.call("GET", &path, &[], None, None) {
        Ok(j) => Ok(j),
        Err(ApiError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Create, update or delete one object; returns the new state and diagnostics.
fn apply(api: &Api, r: &Resource, prior: &Value, planned: &Value) -> (Value, Vec<pb::Diagnostic>) {
    let what = r.def.name;
    let mut diags = Vec::new();
    // The resource's `timeouts` for this operation bound every call it makes.
    let op = if planned.is_null() {
        "delete"
    } else if prior.is_null() {
        "create"
    } else {
        "update"
    };
    let source = if planned.is_null() { prior } else { planned };
    let deadline = source
        .get("timeouts")
        .get(op)
        .as_str()
        .and_then(|s| crate::api::parse_duration(s).ok());
    let scoped = api.with_timeout(deadline);
    let api = &scoped;
    if planned.is_null() {
        let path = match item_path(r, prior) {
            Ok(p) => p,
            Err(e) => {
                return (
                    Value::Null,
                    vec![error(&format!("Unable to delete {what}"), &e)],
                )
            }
        };
        let query: Vec<(&str, String)> = if r.def.guest {
            vec![("force", "true".into())]
        } else {
            Vec::new()
        };
        return match api.call("DELETE", &path, &query, None, None) {
            Ok(_) | Err(ApiError::NotFound) => {
                diags.extend(confirm_network_change(api, r, prior));
                (Value::Null, diags)
            }
            Err(e) => (
                prior.clone(),
                problem_diags(&format!("Unable to delete {what}"), &e, &r.attrs),
            ),
        };
    }
    let creating = prior.is_null();
    let mut state_ref = planned.clone();
    if creating {
        let body = body_of(r, planned, false, |a| a.in_create);
        let coll = match collection_path(r, planned) {
            Ok(c) => c,
            Err(e) => {
                return (
                    Value::Null,
                    vec![error(&format!("Unable to create {what}"), &e)],
                )
            }
        };
        let key = uuid::Uuid::new_v4().to_string();
        // A VM snapshot needs a paused VM: pause a running one for the moment and resume it.
        let paused_vm = pause_for_snapshot(api, r, planned);
        let result = match r.def.upload_route {
            Some(route) => upload(api, r, route, planned, &body),
            None => api.call("POST", &coll, &[], Some(&body), Some(&key)),
        };
        if let Some(vm) = paused_vm {
            if let Err(e) = api.call("POST", &format!("{vm}/resume"), &[], None, None) {
                diags.extend(problem_diags(
                    "Unable to resume the VM after its snapshot",
                    &e,
                    &r.attrs,
                ));
            }
        }
        let created = match result {
            Ok(Some(j)) => j,
            Ok(None) => Json::Null,
            Err(e) => {
                return (
                    Value::Null,
                    problem_diags(&format!("Unable to create {what}"), &e, &r.attrs),
                )
            }
        };
        // The key (a server-allocated id) and one-time secrets come from the create answer.
        if let Value::Object(m) = &mut state_ref {
            for a in &r.attrs {
                let key_unknown = a.name == r.def.key
                    && matches!(planned.get(&a.name), Value::Unknown | Value::Null);
                if key_unknown || a.keep_prior {
                    if let Some(j) = created.get(&a.name).filter(|j| !j.is_null()) {
                        m.insert(a.name.clone(), from_api(a, Some(j)));
                    }
                }
            }
        }
        if r.def.guest && planned.get("running").as_bool() == Some(true) {
            if let Err(e) = power(api, r, &state_ref, true) {
                diags.extend(problem_diags(
                    &format!("{what} was created but did not start"),
                    &e,
                    &r.attrs,
                ));
            }
        }
    } else {
        match update(api, r, prior, planned) {
            Ok(w) => diags.extend(w),
            Err(d) => {
                let now = read_object(api, r, prior)
                    .ok()
                    .flatten()
                    .map(|o| state_from_api(r, &o, prior))
                    .unwrap_or_else(|| prior.clone());
                return (now, d);
            }
        }
    }
    diags.extend(confirm_network_change(api, r, &state_ref));
    // Read after write: state always comes from the object's own endpoint.
    let mut read = read_object(api, r, &state_ref);
    let waits = |o: &Json| {
        o.pointer("/status/confirm_deadline")
            .is_some_and(Json::is_string)
    };
    if !api.confirm_requested() && matches!(&read, Ok(Some(o)) if waits(o)) {
        // The answer that asked for a confirmation was lost (a retried call), but the object
        // still waits for one: confirm it, and read it again.
        diags.extend(confirm_now(api, r, &state_ref));
        read = read_object(api, r, &state_ref);
    }
    match read {
        Ok(Some(obj)) => {
            let state = state_from_api(r, &obj, &state_ref);
            if r.def.guest {
                let want = planned.get("running").as_bool();
                let got = state.get("running").as_bool();
                if want == Some(true) && got == Some(false) {
                    let st = obj.get("status").cloned().unwrap_or(Json::Null);
                    diags.push(error(
                        &format!("{what} did not stay running"),
                        &format!("It stopped right after starting; status: {st}"),
                    ));
                }
            }
            (state, diags)
        }
        Ok(None) => {
            diags.push(error(
                &format!("Unable to read {what} after writing it"),
                "The object is gone: something deleted it at the same time.",
            ));
            (Value::Null, diags)
        }
        Err(e) => {
            diags.extend(problem_diags(
                &format!("Unable to read {what} after writing it"),
                &e,
                &r.attrs,
            ));
            (state_ref, diags)
        }
    }
}

/// Creates an uploaded resource (`ferrite_file`): the create fields go as the route's query
/// and the local `source` file as the streamed body.
fn upload(
    api: &Api,
    r: &Resource,
    route: &str,
    planned: &Value,
    fields: &Json,
) -> Result<Option<Json>, ApiError> {
    let path = fill_path(route, r, planned).map_err(ApiError::Other)?;
    let source = planned
        .get("source")
        .as_str()
        .ok_or_else(|| ApiError::Other("source is not known".into()))?;
    let query: Vec<(&str, String)> = fields
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let v = v
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| v.to_string());
            (k.as_str(), v)
        })
        .collect();
    match api.upload(&path, &query, std::path::Path::new(source)) {
        // The connection broke: the daemon may have stored the file before its answer was
        // lost. The volume with the planned checksum is the one this upload made (a name is
        // never taken twice), so it is adopted instead of failing with a conflict next time.
        Err(ApiError::Other(e)) => match read_object(api, r, planned) {
            Ok(Some(obj)) if obj.get("sha256") == fields.get("sha256") => {
                crate::api::tracing_line(&format!(
                    "upload to {path}: the answer was lost ({e}), but the volume is there"
                ));
                Ok(Some(obj))
            }
            _ => Err(ApiError::Other(e)),
        },
        other => other,
    }
}

/// Pauses a running VM before its snapshot; returns its path when it did.
fn pause_for_snapshot(api: &Api, r: &Resource, planned: &Value) -> Option<String> {
    if r.def.name != "ferrite_snapshot" || planned.get("guest_type").as_str() != Some("vm") {
        return None;
    }
    let id = planned.get("guest_id").to_json();
    let vm = format!("/vms/{id}");
    let obj = api.call("GET", &vm, &[], None, None).ok().flatten()?;
    if obj.pointer("/status/state").and_then(Json::as_str) != Some("running") {
        return None;
    }
    api.call("POST", &format!("{vm}/pause"), &[], None, None)
        .ok()
        .map(|_| vm)
}

/// A network change that touched the management interface is rolled back by the daemon
/// unless confirmed (`commit confirmed`). The daemon's answer says when a change waits for
/// that, whatever the resource type, and the provider then confirms it: the answer is the
/// proof that the change left the API reachable. A change that cut the provider off is never
/// confirmed, and the daemon puts it back.
fn confirm_network_change(api: &Api, r: &Resource, state: &Value) -> Vec<pb::Diagnostic> {
    if !api.confirm_requested() {
        return Vec::new();
    }
    confirm_now(api, r, state)
}

/// Confirms the pending change to this object (a no-op when none waits).
fn confirm_now(api: &Api, r: &Resource, state: &Value) -> Vec<pb::Diagnostic> {
    let Some(name) = state.get(r.def.key).as_str().map(String::from) else {
        return Vec::new();
    };
    let body = serde_json::json!({ "names": [name] });
    match api.call("POST", "/network/confirm", &[], Some(&body), None) {
        Ok(_) => Vec::new(),
        Err(e) => problem_diags(
            &format!("Unable to confirm the change to {name}; the daemon will roll it back"),
            &e,
            &r.attrs,
        ),
    }
}

/// Starts or stops a guest.
fn power(api: &Api, r: &Resource, state: &Value, on: bool) -> Result<(), ApiError> {
    let path = item_path(r, state).map_err(ApiError::Other)?;
    // A clean stop: SIGTERM to a container's init, the ACPI power button to a VM; either is
    // killed if it has not stopped after 30 s.
    let (action, body) = if on {
        ("start", None)
    } else {
        ("shutdown", Some(serde_json::json!({"timeout": 30})))
    };
    api.call(
        "POST",
        &format!("{path}/{action}"),
        &[],
        body.as_ref(),
        None,
    )
    .map(|_| ())
}

/// Changes an existing object; warnings on success, error diagnostics on failure.
fn update(
    api: &Api,
    r: &Resource,
    prior: &Value,
    planned: &Value,
) -> Result<Vec<pb::Diagnostic>, Vec<pb::Diagnostic>> {
    let what = r.def.name;
    let fail = |e: ApiError| problem_diags(&format!("Unable to update {what}"), &e, &r.attrs);
    let path = item_path(r, prior).map_err(|e| vec![error("Unable to update", &e)])?;
    let changed: Vec<&Attr> = r
        .attrs
        .iter()
        .filter(|a| !a.provider_only && a.in_update)
        .filter(|a| !planned.get(&a.name).same(prior.get(&a.name), &a.ty()))
        .collect();
    let mut warnings = Vec::new();
    let running = r.def.guest
        && read_object(api, r, prior)
            .map_err(fail)?
            .and_then(|o| {
                o.pointer("/status/state")
                    .and_then(Json::as_str)
                    .map(String::from)
            })
            .as_deref()
            == Some("running");
    let needs_restart = running && changed.iter().any(|a| !a.live);
    let reboot = planned.get("reboot_on_change").as_bool() == Some(true);
    let want_running = planned.get("running").as_bool();
    let mut restarted = false;
    if needs_restart && reboot && want_running != Some(false) {
        power(api, r, prior, false).map_err(fail)?;
        restarted = true;
    }
    match r.def.update {
        Update::Put(_) if !changed.is_empty() => {
            let body = body_of(r, planned, true, |a| {
                changed.iter().any(|c| c.name == a.name)
            });
            api.call("PUT", &path, &[], Some(&body), None)
                .map_err(fail)?;
        }
        Update::Resize if !changed.is_empty() => {
            let size = to_api(
                r.attr("size").ok_or_else(|| vec![error("no size", "")])?,
                planned.get("size"),
            );
            api.call(
                "POST",
                &format!("{path}/resize"),
                &[],
                Some(&serde_json::json!({ "size": size })),
                None,
            )
            .map_err(fail)?;
        }
        _ => {}
    }
    if let Some((attr, suffix)) = r.def.secret_route {
        let new = planned.get(attr);
        if !new.is_null() && new != prior.get(attr) {
            let body = serde_json::json!({ attr: new.to_json() });
            api.call("PUT", &format!("{path}/{suffix}"), &[], Some(&body), None)
                .map_err(fail)?;
        }
    }
    if r.def.guest {
        if restarted {
            power(api, r, prior, true).map_err(fail)?;
        } else if needs_restart && want_running != Some(false) {
            let names: Vec<&str> = changed
                .iter()
                .filter(|a| !a.live)
                .map(|a| a.name.as_str())
                .collect();
            warnings.push(warning(
                &format!("{what}: change takes effect at the next start"),
                &format!(
                    "{} changed while the guest runs. Restart it, or set reboot_on_change = true \
                     to let Terraform restart it.",
                    names.join(", ")
                ),
            ));
        }
        match (want_running, running || restarted) {
            (Some(true), false) => power(api, r, prior, true).map_err(fail)?,
            (Some(false), true) => power(api, r, prior, false).map_err(fail)?,
            _ => {}
        }
    }
    Ok(warnings)
}

type Res<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Provider for FerriteProvider {
    async fn get_metadata(
        &self,
        _: Request<pb::get_metadata::Request>,
    ) -> Res<pb::get_metadata::Response> {
        let cat = catalog();
        Ok(Response::new(pb::get_metadata::Response {
            server_capabilities: Some(capabilities()),
            diagnostics: Vec::new(),
            data_sources: cat
                .data_sources
                .keys()
                .map(|k| pb::get_metadata::DataSourceMetadata {
                    type_name: k.to_string(),
                })
                .collect(),
            resources: cat
                .resources
                .keys()
                .map(|k| pb::get_metadata::ResourceMetadata {
                    type_name: k.to_string(),
                })
                .collect(),
        }))
    }

    async fn get_provider_schema(
        &self,
        _: Request<pb::get_provider_schema::Request>,
    ) -> Res<pb::get_provider_schema::Response> {
        let cat = catalog();
        Ok(Response::new(pb::get_provider_schema::Response {
            provider: Some(schema_of(&cat.provider_attrs, "Ferrite API connection.", 0)),
            resource_schemas: cat
                .resources
                .iter()
                .map(|(k, r)| (k.to_string(), schema_of(&r.attrs, r.def.description, 0)))
                .collect(),
            data_source_schemas: cat
                .data_sources
                .iter()
                .map(|(k, d)| (k.to_string(), schema_of(&d.attrs, d.def.description, 0)))
                .collect(),
            diagnostics: Vec::new(),
            provider_meta: None,
            server_capabilities: Some(capabilities()),
        }))
    }

    async fn validate_provider_config(
        &self,
        req: Request<pb::validate_provider_config::Request>,
    ) -> Res<pb::validate_provider_config::Response> {
        let ty = crate::tfschema::object_type(&catalog().provider_attrs);
        let cfg = decode(&req.into_inner().config, &ty).map_err(Status::invalid_argument)?;
        let mut diagnostics = Vec::new();
        if let Value::Number(n) = cfg.get("timeout") {
            if !(1.0..=86400.0).contains(&n.as_f64()) {
                diagnostics.push(diag::at(
                    error(
                        "Invalid timeout",
                        "timeout must be between 1 and 86400 seconds",
                    ),
                    &["timeout"],
                ));
            }
        }
        Ok(Response::new(pb::validate_provider_config::Response {
            diagnostics,
        }))
    }

    async fn validate_resource_config(
        &self,
        req: Request<pb::validate_resource_config::Request>,
    ) -> Res<pb::validate_resource_config::Response> {
        let req = req.into_inner();
        let r = Self::resource(&req.type_name)?;
        let cfg = decode(&req.config, &r.ty).map_err(Status::invalid_argument)?;
        let diagnostics = plan::validate(r, &cfg);
        Ok(Response::new(pb::validate_resource_config::Response {
            diagnostics,
        }))
    }

    async fn validate_data_resource_config(
        &self,
        req: Request<pb::validate_data_resource_config::Request>,
    ) -> Res<pb::validate_data_resource_config::Response> {
        let req = req.into_inner();
        Self::data_source(&req.type_name)?;
        Ok(Response::new(pb::validate_data_resource_config::Response {
            diagnostics: Vec::new(),
        }))
    }

    async fn upgrade_resource_state(
        &self,
        req: Request<pb::upgrade_resource_state::Request>,
    ) -> Res<pb::upgrade_resource_state::Response> {
        let req = req.into_inner();
        let r = Self::resource(&req.type_name)?;
        let raw = req.raw_state.map(|s| s.json).unwrap_or_default();
        let (state, diagnostics) = if raw.is_empty() {
            (Value::Null, Vec::new())
        } else {
            match serde_json::from_slice::<Json>(&raw)
                .map_err(|e| e.to_string())
                .and_then(|j| Value::from_json(&j, &r.ty).map_err(|e| e.to_string()))
            {
                Ok(v) => (v, Vec::new()),
                Err(e) => (Value::Null, vec![error("Unable to read stored state", &e)]),
            }
        };
        Ok(Response::new(pb::upgrade_resource_state::Response {
            upgraded_state: dynamic(&state, &r.ty),
            diagnostics,
        }))
    }

    async fn configure_provider(
        &self,
        req: Request<pb::configure_provider::Request>,
    ) -> Res<pb::configure_provider::Response> {
        let ty = crate::tfschema::object_type(&catalog().provider_attrs);
        let cfg = decode(&req.into_inner().config, &ty).map_err(Status::invalid_argument)?;
        if cfg.has_unknown() {
            return Ok(Response::new(pb::configure_provider::Response {
                diagnostics: vec![error(
                    "Provider configuration is not known yet",
                    "endpoint and credentials must be known at plan time",
                )],
            }));
        }
        let result = match settings(&cfg) {
            Ok(s) => blocking(move || Api::connect(&s)).await?,
            Err(e) => Err(e),
        };
        let diagnostics = match result {
            Ok(api) => {
                if let Ok(mut g) = self.api.write() {
                    *g = Some(Arc::new(api));
                }
                Vec::new()
            }
            Err(e) => vec![error("Unable to configure the Ferrite provider", &e)],
        };
        Ok(Response::new(pb::configure_provider::Response {
            diagnostics,
        }))
    }

    async fn read_resource(
        &self,
        req: Request<pb::read_resource::Request>,
    ) -> Res<pb::read_resource::Response> {
        let req = req.into_inner();
        let r = Self::resource(&req.type_name)?;
        let prior = decode(&req.current_state, &r.ty).map_err(Status::invalid_argument)?;
        let api = self.api()?;
        let p2 = prior.clone();
        let got = blocking(move || read_object(&api, r, &p2)).await?;
        let (state, diagnostics) = match got {
            // Gone: Terraform drops it from state and plans a create.
            Ok(None) => (Value::Null, Vec::new()),
            Ok(Some(obj)) => (state_from_api(r, &obj, &prior), Vec::new()),
            Err(e) => (
                prior.clone(),
                problem_diags(&format!("Unable to read {}", r.def.name), &e, &r.attrs),
            ),
        };
        Ok(Response::new(pb::read_resource::Response {
            new_state: dynamic(&state, &r.ty),
            diagnostics,
            private: req.private,
        }))
    }

    async fn plan_resource_change(
        &self,
        req: Request<pb::plan_resource_change::Request>,
    ) -> Res<pb::plan_resource_change::Response> {
        let req = req.into_inner();
        let r = Self::resource(&req.type_name)?;
        let prior = decode(&req.prior_state, &r.ty).map_err(Status::invalid_argument)?;
        let proposed = decode(&req.proposed_new_state, &r.ty).map_err(Status::invalid_argument)?;
        let config = decode(&req.config, &r.ty).map_err(Status::invalid_argument)?;
        let out = plan::plan(r, &prior, &proposed, &config);
        Ok(Response::new(pb::plan_resource_change::Response {
            planned_state: dynamic(&out.planned, &r.ty),
            requires_replace: out.replace.iter().map(|n| path_of(&[n.as_str()])).collect(),
            planned_private: req.prior_private,
            diagnostics: out.diags,
        }))
    }

    async fn apply_resource_change(
        &self,
        req: Request<pb::apply_resource_change::Request>,
    ) -> Res<pb::apply_resource_change::Response> {
        let req = req.into_inner();
        let r = Self::resource(&req.type_name)?;
        let prior = decode(&req.prior_state, &r.ty).map_err(Status::invalid_argument)?;
        let planned = decode(&req.planned_state, &r.ty).map_err(Status::invalid_argument)?;
        let api = self.api()?;
        let (state, diagnostics) = blocking(move || apply(&api, r, &prior, &planned)).await?;
        Ok(Response::new(pb::apply_resource_change::Response {
            new_state: dynamic(&state, &r.ty),
            private: req.planned_private,
            diagnostics,
        }))
    }

    async fn import_resource_state(
        &self,
        req: Request<pb::import_resource_state::Request>,
    ) -> Res<pb::import_resource_state::Response> {
        let req = req.into_inner();
        let r = Self::resource(&req.type_name)?;
        let (stub, diagnostics) = match plan::import_stub(r, &req.id) {
            Ok(v) => (v, Vec::new()),
            Err(e) => (
                Value::Null,
                vec![error(&format!("Unable to import {}", r.def.name), &e)],
            ),
        };
        let imported_resources = if stub.is_null() {
            Vec::new()
        } else {
            vec![pb::import_resource_state::ImportedResource {
                type_name: req.type_name.clone(),
                state: dynamic(&stub, &r.ty),
                private: Vec::new(),
            }]
        };
        Ok(Response::new(pb::import_resource_state::Response {
            imported_resources,
            diagnostics,
        }))
    }

    async fn read_data_source(
        &self,
        req: Request<pb::read_data_source::Request>,
    ) -> Res<pb::read_data_source::Response> {
        let req = req.into_inner();
        let d = Self::data_source(&req.type_name)?;
        let cfg = decode(&req.config, &d.ty).map_err(Status::invalid_argument)?;
        let api = self.api()?;
        let c2 = cfg.clone();
        let (state, diagnostics) = blocking(move || plan::read_data(&api, d, &c2)).await?;
        Ok(Response::new(pb::read_data_source::Response {
            state: dynamic(&state, &d.ty),
            diagnostics,
        }))
    }

    async fn get_functions(
        &self,
        _: Request<pb::get_functions::Request>,
    ) -> Res<pb::get_functions::Response> {
        Ok(Response::new(pb::get_functions::Response::default()))
    }

    async fn stop_provider(
        &self,
        _: Request<pb::stop_provider::Request>,
    ) -> Res<pb::stop_provider::Response> {
        Ok(Response::new(pb::stop_provider::Response::default()))
    }
}

fn capabilities() -> pb::ServerCapabilities {
    pb::ServerCapabilities {
        plan_destroy: false,
        get_provider_schema_optional: true,
        move_resource_state: false,
    }
}
