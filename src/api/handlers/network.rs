//! Bridges, VLAN interfaces and bonds: `/network/...`. Each write converges the kernel first
//! (rolled back on any failure) and commits the store only when the kernel took it.

use std::sync::Arc;

use serde_json::{json, Value};

use super::paging;
use super::paging::tags_of;
use crate::api::{ApiError, App, Req, Resp};
use crate::network::{Desired, Failed, Snapshot, KINDS};
use crate::store::objects;

fn collection(kind: &str) -> &'static str {
    match kind {
        "bridge" => "bridges",
        "vlan" => "vlans",
        _ => "bonds",
    }
}

fn api(app: &App, o: &objects::Object, snap: &Snapshot) -> Value {
    let mut v = o.to_api();
    v["status"] = app.network.status_json(&o.id, snap);
    v
}

async fn snapshot(app: &App) -> Result<Snapshot, ApiError> {
    app.network
        .kernel()
        .snapshot(true)
        .await
        .map_err(|e| ApiError::internal(format!("reading the kernel's links: {e}")))
}

/// The links a change to `body` touches: itself, its ports or members, its parent.
fn touched(name: &str, body: &Value) -> Vec<String> {
    let mut n = vec![name.to_string()];
    n.extend(crate::network::refs_of(body));
    n
}

async fn snapshot_of(app: &App, names: &[String]) -> Result<Snapshot, ApiError> {
    app.network
        .kernel()
        .snapshot_of(names, names, false)
        .await
        .map_err(|e| ApiError::internal(format!("reading the kernel's links: {e}")))
}

/// Fills defaults so stored bodies are complete (reads and plans never guess).
fn with_defaults(kind: &str, mut body: Value) -> Value {
    if let Some(m) = body.as_object_mut() {
        let defaults: &[(&str, Value)] = match kind {
            "bridge" => &[
                ("ports", json!({})),
                ("vlan_aware", json!(false)),
                ("stp", json!(false)),
                ("addresses", json!([])),
                ("autostart", json!(true)),
                ("tags", json!([])),
            ],
            "vlan" => &[("addresses", json!([])), ("tags", json!([]))],
            _ => &[
                ("members", json!([])),
                ("miimon", json!(100)),
                ("tags", json!([])),
            ],
        };
        for (k, v) in defaults {
            m.entry(k.to_string()).or_insert_with(|| v.clone());
        }
    }
    body
}

/// Which managed object, if any, uses `link` as a port, member or parent (other than `except`).
fn users_of(all: &[(String, objects::Object)], link: &str, except: &str) -> Vec<String> {
    all.iter()
        .filter(|(_, o)| o.id != except)
        .filter(|(kind, o)| match kind.as_str() {
            "bridge" => o.body["ports"].get(link).is_some(),
            "bond" => o.body["members"]
                .as_array()
                .is_some_and(|m| m.iter().any(|x| x == link)),
            "container" | "vm" => o.body["net"]
                .as_object()
                .is_some_and(|n| n.values().any(|x| x["bridge"] == link)),
            _ => o.body["parent"] == link,
        })
        .map(|(kind, o)| format!("{kind} {}", o.id))
        .collect()
}

fn all_objects(app: &App) -> Result<Vec<(String, objects::Object)>, ApiError> {
    let mut out = Vec::new();
    for k in KINDS {
        for o in app.store.read(|c| objects::all(c, k))? {
            out.push((k.to_string(), o));
        }
    }
    Ok(out)
}

/// The objects that matter to a change of `names`: those named so, and those referring to
/// them (found through the reference index, not by scanning every object).
fn related_objects(
    app: &App,
    names: &[String],
) -> Result<Vec<(String, objects::Object)>, ApiError> {
    // Large changes (batches): one pass over every network object beats thousands of
    // point lookups that mostly miss.
    if names.len() > 64 {
        let wanted: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
        return Ok(all_objects(app)?
            .into_iter()
            .filter(|(_, o)| {
                wanted.contains(o.id.as_str())
                    || crate::network::refs_of(&o.body)
                        .iter()
                        .any(|r| wanted.contains(r.as_str()))
            })
            .collect());
    }
    let mut out: Vec<(String, objects::Object)> = Vec::new();
    let mut have: std::collections::HashSet<(String, String)> = std::collections::HashSet::new();
    let mut push =
        |kind: &str, id: &str, out: &mut Vec<(String, objects::Object)>| -> Result<(), ApiError> {
            if have.contains(&(kind.to_string(), id.to_string())) {
                return Ok(());
            }
            if let Some(o) = app.store.get_cached(kind, id)? {
                have.insert((kind.to_string(), id.to_string()));
                out.push((kind.to_string(), (*o).clone()));
            }
            Ok(())
        };
    // One read transaction for every name's referrers.
    let refs = app.store.read(|c| {
        names
            .iter()
            .map(|n| objects::referrers(c, n))
            .collect::<Result<Vec<_>, _>>()
    })?;
    for (n, referrers) in names.iter().zip(refs) {
        for k in KINDS {
            push(k, n, &mut out)?;
        }
        for (k, id) in referrers {
            push(&k, &id, &mut out)?;
        }
    }
    Ok(out)
}

/// Checks a bridge's ports or a bond's members against the kernel and the other objects.
fn check_lower(
    kind: &str,
    name: &str,
    body: &Value,
    snap: &Snapshot,
    all: &[(String, objects::Object)],
) -> Result<(), ApiError> {
    let links: Vec<String> = match kind {
        "bridge" => body["ports"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default(),
        "bond" => body["members"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
        _ => return Ok(()),
    };
    let master_index = snap.get(name).map(|l| l.index);
    for (i, link) in links.iter().enumerate() {
        let pointer = if kind == "bridge" {
            format!("/ports/{link}")
        } else {
            format!("/members/{i}")
        };
        if link == name {
            return Err(ApiError::field(
                "body",
                &pointer,
                format!("a {kind} cannot contain itself"),
            ));
        }
        let managed_kind = all
            .iter()
            .find(|(_, o)| o.id == *link)
            .map(|(k, _)| k.as_str());
        let kernel = snap.get(link);
        if managed_kind == Some("bridge") || kernel.is_some_and(|l| l.kind == "bridge") {
            return Err(ApiError::field(
                "body",
                &pointer,
                format!(
                    "{link} is a bridge and cannot be a {}",
                    if kind == "bridge" {
                        "bridge port"
                    } else {
                        "bond member"
                    }
                ),
            ));
        }
        if kernel.is_none() && managed_kind.is_none() {
            let mut e =
                ApiError::field("body", &pointer, format!("interface {link} does not exist"));
            e.status = 422;
            return Err(e);
        }
        let others = users_of(all, link, name)
            .into_iter()
            .filter(|u| !u.starts_with("vlan "))
            .collect::<Vec<_>>();
        if !others.is_empty() {
            let mut e = ApiError::field(
                "body",
                &pointer,
                format!("{link} is already used by {}", others.join(", ")),
            );
            e.status = 409;
            return Err(e);
        }
        if let Some(m) = kernel.and_then(|l| l.master) {
            if Some(m) != master_index {
                let mname = snap
                    .values()
                    .find(|l| l.index == m)
                    .map(|l| l.name.clone())
                    .unwrap_or_else(|| format!("ifindex {m}"));
                let mut e = ApiError::field(
                    "body",
                    &pointer,
                    format!("{link} is already attached to {mname}"),
                );
                e.status = 409;
                return Err(e);
            }
        }
    }
    if kind == "bridge" && body["vlan_aware"] != json!(true) {
        let uses_vlans = body["pvid"].is_number()
            || body["vlans"].as_array().is_some_and(|a| !a.is_empty())
            || body["ports"].as_object().is_some_and(|p| {
                p.values().any(|s| {
                    s.get("pvid").is_some() || s["vlans"].as_array().is_some_and(|a| !a.is_empty())
                })
            });
        if uses_vlans {
            let mut e = ApiError::field(
                "body",
                "/vlan_aware",
                "VLAN settings on the bridge or its ports need vlan_aware: true",
            );
            e.status = 422;
            return Err(e);
        }
    }
    Ok(())
}

/// VLAN parents and (parent, id) pairs indexed once, so checking a batch of N VLANs is linear.
struct VlanIndex<'a> {
    ids: std::collections::HashSet<&'a str>,
    pairs: std::collections::HashMap<(String, String), Vec<&'a str>>,
}

impl<'a> VlanIndex<'a> {
    fn new(all: &'a [(String, objects::Object)]) -> Self {
        let mut pairs: std::collections::HashMap<(String, String), Vec<&'a str>> =
            std::collections::HashMap::new();
        for (k, o) in all {
            if k == "vlan" {
                pairs
                    .entry((
                        o.body["parent"].as_str().unwrap_or_default().to_string(),
                        o.body["vlan_id"].to_string(),
                    ))
                    .or_default()
                    .push(o.id.as_str());
            }
        }
        VlanIndex {
            ids: all.iter().map(|(_, o)| o.id.as_str()).collect(),
            pairs,
        }
    }

    /// The same rules as [`check_vlan`].
    fn check(&self, body: &Value, snap: &Snapshot, name: &str) -> Result<(), ApiError> {
        let parent = body["parent"].as_str().unwrap_or_default();
        if snap.get(parent).is_none() && !self.ids.contains(parent) {
            let mut e = ApiError::field(
                "body",
                "/parent",
                format!("parent interface {parent} does not exist"),
            );
            e.status = 422;
            return Err(e);
        }
        let key = (parent.to_string(), body["vlan_id"].to_string());
        if let Some(other) = self
            .pairs
            .get(&key)
            .and_then(|v| v.iter().find(|id| **id != name))
        {
            return Err(ApiError::conflict(format!(
                "VLAN {} on {parent} already exists as {other}",
                body["vlan_id"]
            )));
        }
        Ok(())
    }
}

fn check_vlan(
    body: &Value,
    snap: &Snapshot,
    all: &[(String, objects::Object)],
    name: &str,
) -> Result<(), ApiError> {
    let parent = body["parent"].as_str().unwrap_or_default();
    if snap.get(parent).is_none() && !all.iter().any(|(_, o)| o.id == parent) {
        let mut e = ApiError::field(
            "body",
            "/parent",
            format!("parent interface {parent} does not exist"),
        );
        e.status = 422;
        return Err(e);
    }
    if let Some((_, o)) = all.iter().find(|(k, o)| {
        k == "vlan"
            && o.id != name
            && o.body["parent"] == parent
            && o.body["vlan_id"] == body["vlan_id"]
    }) {
        return Err(ApiError::conflict(format!(
            "VLAN {} on {parent} already exists as {}",
            body["vlan_id"], o.id
        )));
    }
    Ok(())
}

/// Whether a change from `old` to `new` touches a management interface (`mgmt`, read
/// before the change is applied: applying it may move the default route).
fn touches_management(
    mgmt: &crate::network::ManagementSet,
    name: &str,
    old: Option<&Value>,
    new: Option<&Value>,
) -> bool {
    [old, new]
        .into_iter()
        .flatten()
        .any(|b| touched(name, b).iter().any(|t| mgmt.touches(t)))
}

/// Arms the confirm window when needed; returns the deadline header to send.
fn maybe_await_confirm(
    app: &App,
    req: &Req,
    mgmt: &crate::network::ManagementSet,
    kind: &str,
    name: &str,
    old: Option<&Value>,
    new: Option<&Value>,
) -> Option<String> {
    if !touches_management(mgmt, name, old, new) {
        return None;
    }
    let secs = req.query_i64("confirm_timeout").unwrap_or(60).max(5) as u64;
    let deadline = app.network.await_confirm(
        Arc::clone(&app.store),
        name,
        kind,
        old.cloned(),
        new.cloned(),
        std::time::Duration::from_secs(secs),
    );
    Some(crate::time::unix_to_rfc3339(deadline))
}

fn refuse_if_pending(app: &App, name: &str) -> Result<(), ApiError> {
    match app.network.pending(name) {
        Some(p) => Err(ApiError::conflict(format!(
            "a change to {name} touched the management interface and awaits POST /api/v1/network/confirm (rolled back at {})",
            crate::time::unix_to_rfc3339(p.deadline)
        ))),
        None => Ok(()),
    }
}

/// `POST /network/confirm`.
pub async fn network_confirm(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let names: Vec<String> = req.body["names"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let confirmed = app.network.confirm(&names);
    Ok(Resp::json(200, &json!({ "confirmed": confirmed })))
}

/// If-Match is checked before the kernel is touched, not only at commit.
fn check_if_match(req: &Req, kind: &str, name: &str, revision: i64) -> Result<(), ApiError> {
    match req.if_match {
        Some(expected) if expected != revision => Err(crate::store::StoreError::RevisionMismatch {
            kind: kind.into(),
            id: name.into(),
            expected,
            actual: revision,
        }
        .into()),
        _ => Ok(()),
    }
}

fn kernel_failure(f: Failed) -> ApiError {
    if let crate::network::KernelError::Refused { field, message } = &f.error {
        return ApiError::unprocessable_field(format!("/{field}"), message.clone());
    }
    let status = match f.error {
        crate::network::KernelError::Netlink { errno: Some(e), .. }
            if e == libc::EBUSY || e == libc::EEXIST =>
        {
            409
        }
        _ => 422,
    };
    let mut detail = format!(
        "the kernel refused the change ({}); every step already made was rolled back",
        f.error
    );
    if !f.undo_errors.is_empty() {
        detail.push_str(&format!(
            "; rollback was incomplete: {}",
            f.undo_errors.join("; ")
        ));
        tracing::error!(errors = ?f.undo_errors, "network rollback incomplete");
    }
    ApiError::new(
        status,
        "kernel-refused",
        "Kernel refused the change",
        detail,
    )
}

async fn list(kind: &'static str, app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let f = paging::filter(&req)?;
    let page = app.store.read(|c| objects::list(c, kind, &f))?;
    let snap = snapshot(&app).await?;
    Ok(paging::page_response(page, |o| api(&app, o, &snap)))
}

async fn view(kind: &'static str, app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let o = app.store.require_cached(kind, req.param("name"))?;
    let snap = snapshot_of(&app, std::slice::from_ref(&o.id)).await?;
    Ok(Resp::json(200, &api(&app, &o, &snap)).etag(o.revision))
}

async fn create(kind: &'static str, app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let mut body = with_defaults(kind, req.body.clone());
    if kind == "vlan" && body.get("name").is_none() {
        let n = format!(
            "{}.{}",
            body["parent"].as_str().unwrap_or_default(),
            body["vlan_id"]
        );
        if n.len() > 15 {
            return Err(ApiError::field(
                "body",
                "/name",
                format!("the default name {n} is longer than 15 characters; give a name"),
            ));
        }
        body["name"] = json!(n);
    }
    let name = body["name"].as_str().unwrap_or_default().to_string();
    let _g = app.network.lock().await;
    let all = related_objects(&app, &touched(&name, &body))?;
    if let Some((k, _)) = all.iter().find(|(_, o)| o.id == name) {
        return Err(ApiError::conflict(format!(
            "a {k} named {name} already exists"
        )));
    }
    refuse_if_pending(&app, &name)?;
    let snap = snapshot_of(&app, &touched(&name, &body)).await?;
    if snap.contains_key(&name) {
        return Err(ApiError::conflict(format!(
            "interface {name} already exists on the host and is not managed by Ferrite"
        )));
    }
    check_lower(kind, &name, &body, &snap, &all)?;
    if kind == "vlan" {
        check_vlan(&body, &snap, &all, &name)?;
    }
    let desired = Desired::from_object(kind, &body)
        .map_err(|e| ApiError::field("body", "", e.to_string()))?;
    let mgmt = app.network.management().await;
    app.network
        .apply(std::slice::from_ref(&desired))
        .await
        .map_err(kernel_failure)?;
    let stored = app.store.write(|tx| {
        let o = objects::insert(tx, kind, &name, &name, None, &body, &tags_of(&body))?;
        objects::set_refs(tx, kind, &name, &crate::network::refs_of(&body))?;
        Ok::<_, crate::store::StoreError>(o)
    });
    let o = match stored {
        Ok(o) => o,
        Err(e) => {
            // The store refused: take the kernel back too, so nothing is half-made.
            let _ = crate::network::reconcile::remove(app.network.kernel(), &name).await;
            return Err(e.into());
        }
    };
    let confirm = maybe_await_confirm(&app, &req, &mgmt, kind, &name, None, Some(&body));
    let snap = snapshot_of(&app, std::slice::from_ref(&o.id)).await?;
    let mut resp = Resp::json(201, &api(&app, &o, &snap));
    if let Some(d) = confirm {
        resp.headers.push(("x-ferrite-confirm-deadline", d));
    }
    Ok(resp.etag(o.revision).location(format!(
        "{}/network/{}/{name}",
        crate::API_PREFIX,
        collection(kind)
    )))
}

async fn update(kind: &'static str, app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let name = req.param("name").to_string();
    let _g = app.network.lock().await;
    let cur = app.store.read(|c| objects::require(c, kind, &name))?;
    refuse_if_pending(&app, &name)?;
    check_if_match(&req, kind, &name, cur.revision)?;
    let mut body = cur.body.clone();
    super::merge_update(&mut body, &req.body);
    let all = related_objects(&app, &touched(&name, &body))?;
    let snap = snapshot_of(&app, &touched(&name, &body)).await?;
    check_lower(kind, &name, &body, &snap, &all)?;
    let desired = Desired::from_object(kind, &body)
        .map_err(|e| ApiError::field("body", "", e.to_string()))?;
    let mgmt = app.network.management().await;
    app.network
        .apply(std::slice::from_ref(&desired))
        .await
        .map_err(kernel_failure)?;
    let stored = app.store.write(|tx| {
        let o = objects::update(tx, kind, &name, Some(cur.revision), &body, &tags_of(&body))?;
        objects::set_refs(tx, kind, &name, &crate::network::refs_of(&body))?;
        Ok::<_, crate::store::StoreError>(o)
    });
    let o = match stored {
        Ok(o) => o,
        Err(e) => {
            // Put the kernel back to the stored configuration.
            if let Ok(old) = Desired::from_object(kind, &cur.body) {
                let _ = app.network.apply(std::slice::from_ref(&old)).await;
            }
            return Err(e.into());
        }
    };
    let confirm = maybe_await_confirm(&app, &req, &mgmt, kind, &name, Some(&cur.body), Some(&body));
    let snap = snapshot_of(&app, std::slice::from_ref(&o.id)).await?;
    let mut resp = Resp::json(200, &api(&app, &o, &snap)).etag(o.revision);
    if let Some(d) = confirm {
        resp.headers.push(("x-ferrite-confirm-deadline", d));
    }
    Ok(resp)
}

async fn delete(kind: &'static str, app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let name = req.param("name").to_string();
    let _g = app.network.lock().await;
    let cur = app.store.read(|c| objects::require(c, kind, &name))?;
    refuse_if_pending(&app, &name)?;
    check_if_match(&req, kind, &name, cur.revision)?;
    let users = users_of(
        &related_objects(&app, std::slice::from_ref(&name))?,
        &name,
        &name,
    );
    if !users.is_empty() {
        return Err(ApiError::conflict(format!(
            "{kind} {name} is in use by {}; change or delete them first",
            users.join(", ")
        )));
    }
    let mgmt = app.network.management().await;
    crate::network::reconcile::remove(app.network.kernel(), &name)
        .await
        .map_err(|e| {
            ApiError::new(
                422,
                "kernel-refused",
                "Kernel refused the change",
                format!("deleting {name}: {e}"),
            )
        })?;
    app.store
        .write(|tx| objects::delete(tx, kind, &name, Some(cur.revision)))?;
    app.network.forget(&name);
    let mut resp = Resp::no_content();
    if let Some(d) = maybe_await_confirm(&app, &req, &mgmt, kind, &name, Some(&cur.body), None) {
        resp.headers.push(("x-ferrite-confirm-deadline", d));
    }
    Ok(resp)
}

/// `GET /network/interfaces`: every link the kernel has.
pub async fn interface_list(app: Arc<App>, _req: Req) -> Result<Resp, ApiError> {
    let snap = snapshot(&app).await?;
    let managed: Vec<String> = all_objects(&app)?.into_iter().map(|(_, o)| o.id).collect();
    let mgmt = app.network.management().await;
    let names = crate::network::reconcile::names_by_index(&snap);
    let mut links: Vec<_> = snap.values().collect();
    links.sort_by_key(|l| l.index);
    let items = links
        .into_iter()
        .map(|l| {
            let vlans: Vec<Value> = l.vlans.iter().map(|(vid, f)| json!({"vid": vid, "pvid": f.pvid, "untagged": f.untagged})).collect();
            json!({
                "name": l.name, "ifindex": l.index, "kind": l.kind, "up": l.up, "operstate": l.operstate,
                "mtu": l.mtu, "mac": l.mac, "master": l.master.and_then(|m| names.get(&m).cloned()),
                "vlans": vlans, "addresses": l.addresses, "managed": managed.contains(&l.name), "management": mgmt.contains(&l.name),
            })
        })
        .collect();
    Ok(paging::list_response(items, None))
}

macro_rules! kind_handlers {
    ($kind:literal, $list:ident, $create:ident, $view:ident, $update:ident, $delete:ident) => {
        pub async fn $list(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
            list($kind, app, req).await
        }
        pub async fn $create(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
            create($kind, app, req).await
        }
        pub async fn $view(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
            view($kind, app, req).await
        }
        pub async fn $update(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
            update($kind, app, req).await
        }
        pub async fn $delete(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
            delete($kind, app, req).await
        }
    };
}

kind_handlers!(
    "bridge",
    bridge_list,
    bridge_create,
    bridge_view,
    bridge_update,
    bridge_delete
);
kind_handlers!(
    "vlan",
    vlan_list,
    vlan_create,
    vlan_view,
    vlan_update,
    vlan_delete
);
kind_handlers!(
    "bond",
    bond_list,
    bond_create,
    bond_view,
    bond_update,
    bond_delete
);

/// Prefixes the field pointers of a per-item error with the item's place in the batch.
fn in_batch(mut e: ApiError, prefix: &str) -> ApiError {
    for p in &mut e.invalid {
        p.pointer = format!("{prefix}{}", p.pointer);
    }
    e.detail = format!("{prefix}: {}", e.detail);
    e
}

fn synthetic(kind: &str, name: &str, body: &Value) -> (String, objects::Object) {
    (
        kind.to_string(),
        objects::Object {
            kind: kind.to_string(),
            id: name.to_string(),
            name: name.to_string(),
            owner: None,
            revision: 0,
            body: body.clone(),
            tags: Vec::new(),
            created_at: 0,
            updated_at: 0,
            rendered: std::sync::OnceLock::new(),
        },
    )
}

/// `POST /network/batch`: many creates as one change. Items may refer to each other (a VLAN
/// on a bridge of the same batch, a bond as a bridge port).
pub async fn network_batch(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let t0 = std::time::Instant::now();
    let mut items: Vec<(&'static str, String, Value, String)> = Vec::new();
    let mut seen: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for (kind, key) in [("bond", "bonds"), ("bridge", "bridges"), ("vlan", "vlans")] {
        for (i, b) in req.body[key]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let prefix = format!("/{key}/{i}");
            let mut body = with_defaults(kind, b);
            if kind == "vlan" && body.get("name").is_none() {
                let n = format!(
                    "{}.{}",
                    body["parent"].as_str().unwrap_or_default(),
                    body["vlan_id"]
                );
                if n.len() > 15 {
                    return Err(ApiError::field(
                        "body",
                        &format!("{prefix}/name"),
                        format!("the default name {n} is longer than 15 characters; give a name"),
                    ));
                }
                body["name"] = json!(n);
            }
            let name = body["name"].as_str().unwrap_or_default().to_string();
            if let Some(other) = seen.get(&name) {
                let mut e = ApiError::field(
                    "body",
                    &format!("{prefix}/name"),
                    format!("{name} is also created by {other}"),
                );
                e.status = 409;
                return Err(e);
            }
            seen.insert(name.clone(), prefix.clone());
            items.push((kind, name, body, prefix));
        }
    }
    let _g = app.network.lock().await;
    let mgmt = app.network.management().await;
    for (_, n, b, prefix) in &items {
        if let Some(m) = touched(n, b).into_iter().find(|t| mgmt.touches(t)) {
            let what = if mgmt.contains(&m) {
                format!("touches the management interface {m}")
            } else {
                format!("touches {m}, which may carry management traffic (the kernel could not be read to tell)")
            };
            return Err(ApiError::unprocessable(format!(
                "{prefix} {what}; make that change on its own so it can be confirmed"
            )));
        }
    }
    let mut names: Vec<String> = items
        .iter()
        .flat_map(|(_, n, b, _)| touched(n, b))
        .collect();
    names.sort();
    names.dedup();
    let mut all = related_objects(&app, &names)?;
    let t_related = t0.elapsed();
    let snap = snapshot_of(&app, &names).await?;
    let t_snap = t0.elapsed();
    let existing: std::collections::HashMap<&str, &str> = all
        .iter()
        .map(|(k, o)| (o.id.as_str(), k.as_str()))
        .collect();
    for (_, name, _, prefix) in &items {
        if let Some(k) = existing.get(name.as_str()) {
            let mut e = ApiError::field(
                "body",
                &format!("{prefix}/name"),
                format!("a {k} named {name} already exists"),
            );
            e.status = 409;
            return Err(e);
        }
        if snap.contains_key(name) {
            let mut e = ApiError::field(
                "body",
                &format!("{prefix}/name"),
                format!(
                    "interface {name} already exists on the host and is not managed by Ferrite"
                ),
            );
            e.status = 409;
            return Err(e);
        }
        refuse_if_pending(&app, name)?;
    }
    drop(existing);
    all.extend(items.iter().map(|(k, n, b, _)| synthetic(k, n, b)));
    let index = VlanIndex::new(&all);
    let mut desired = Vec::with_capacity(items.len());
    for (kind, name, body, prefix) in &items {
        check_lower(kind, name, body, &snap, &all).map_err(|e| in_batch(e, prefix))?;
        if *kind == "vlan" {
            index
                .check(body, &snap, name)
                .map_err(|e| in_batch(e, prefix))?;
        }
        desired.push(
            Desired::from_object(kind, body)
                .map_err(|e| ApiError::field("body", prefix, e.to_string()))?,
        );
    }
    let t_checks = t0.elapsed();
    app.network.apply(&desired).await.map_err(kernel_failure)?;
    let t_apply = t0.elapsed();
    let stored = app.store.write(|tx| {
        let mut out = Vec::with_capacity(items.len());
        for (kind, name, body, _) in &items {
            out.push(objects::insert(
                tx,
                kind,
                name,
                name,
                None,
                body,
                &tags_of(body),
            )?);
            objects::set_refs(tx, kind, name, &crate::network::refs_of(body))?;
        }
        Ok::<_, crate::store::StoreError>(out)
    });
    let objs = match stored {
        Ok(o) => o,
        Err(e) => {
            // Take the kernel back too: VLANs first, then bridges, then bonds.
            for (_, name, _, _) in items.iter().rev() {
                let _ = crate::network::reconcile::remove(app.network.kernel(), name).await;
            }
            return Err(e.into());
        }
    };
    let t_store = t0.elapsed();
    let created: Vec<String> = objs.iter().map(|o| o.id.clone()).collect();
    let snap = snapshot_of(&app, &created).await?;
    let t_reread = t0.elapsed();
    let mut out = json!({"bonds": [], "bridges": [], "vlans": []});
    for o in &objs {
        let key = collection(&o.kind);
        if let Some(a) = out[key].as_array_mut() {
            a.push(api(&app, o, &snap));
        }
    }
    let resp = Resp::json(201, &out);
    tracing::debug!(
        objects = items.len(),
        related_ms = t_related.as_millis() as u64,
        snapshot_ms = (t_snap - t_related).as_millis() as u64,
        checks_ms = (t_checks - t_snap).as_millis() as u64,
        kernel_ms = (t_apply - t_checks).as_millis() as u64,
        store_ms = (t_store - t_apply).as_millis() as u64,
        reread_ms = (t_reread - t_store).as_millis() as u64,
        render_ms = (t0.elapsed() - t_reread).as_millis() as u64,
        "network batch phases"
    );
    Ok(resp)
}
