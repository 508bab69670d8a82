//! Bridges, VLAN interfaces and bonds: `/network/...`. Writes call `network::changes` (which
//! checks, converges the kernel, commits the store and arms the confirm window); these
//! handlers parse the request and render the object with its kernel status.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::paging;
use crate::api::{ApiError, App, Req, Resp};
use crate::network::{changes, Snapshot};
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

async fn snapshot_of(app: &App, names: &[String]) -> Result<Snapshot, ApiError> {
    Ok(changes::snapshot_of(&app.network, names).await?)
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

/// How long a change touching a management interface waits for its confirmation.
fn confirm_window(req: &Req) -> Duration {
    Duration::from_secs(req.query_i64("confirm_timeout").unwrap_or(60).max(5) as u64)
}

fn with_deadline(mut resp: Resp, deadline: Option<i64>) -> Resp {
    if let Some(d) = deadline {
        resp.headers.push((
            "x-ferrite-confirm-deadline",
            crate::time::unix_to_rfc3339(d),
        ));
    }
    resp
}

async fn create(kind: &'static str, app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let out = changes::create(
        &app.network,
        &app.store,
        kind,
        req.body.clone(),
        confirm_window(&req),
    )
    .await?;
    let o = out.object;
    let snap = snapshot_of(&app, std::slice::from_ref(&o.id)).await?;
    let resp = Resp::json(201, &api(&app, &o, &snap))
        .etag(o.revision)
        .location(format!(
            "{}/network/{}/{}",
            crate::API_PREFIX,
            collection(kind),
            o.id
        ));
    Ok(with_deadline(resp, out.confirm_deadline))
}

async fn update(kind: &'static str, app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let out = changes::update(
        &app.network,
        &app.store,
        kind,
        req.param("name"),
        &req.body,
        req.if_match,
        confirm_window(&req),
    )
    .await?;
    let o = out.object;
    let snap = snapshot_of(&app, std::slice::from_ref(&o.id)).await?;
    let resp = Resp::json(200, &api(&app, &o, &snap)).etag(o.revision);
    Ok(with_deadline(resp, out.confirm_deadline))
}

async fn delete(kind: &'static str, app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let deadline = changes::delete(
        &app.network,
        &app.store,
        kind,
        req.param("name"),
        req.if_match,
        confirm_window(&req),
    )
    .await?;
    Ok(with_deadline(Resp::no_content(), deadline))
}

/// `GET /network/interfaces`: every link the kernel has.
pub async fn interface_list(app: Arc<App>, _req: Req) -> Result<Resp, ApiError> {
    let snap = snapshot(&app).await?;
    let managed: Vec<String> = changes::all_objects(&app.store)?
        .into_iter()
        .map(|(_, o)| o.id)
        .collect();
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

/// `POST /network/batch`: many creates as one change. Items may refer to each other (a VLAN
/// on a bridge of the same batch, a bond as a bridge port).
pub async fn network_batch(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let objs = changes::batch(&app.network, &app.store, &req.body).await?;
    let created: Vec<String> = objs.iter().map(|o| o.id.clone()).collect();
    let snap = snapshot_of(&app, &created).await?;
    let mut out = json!({"bonds": [], "bridges": [], "vlans": []});
    for o in &objs {
        if let Some(a) = out[collection(&o.kind)].as_array_mut() {
            a.push(api(&app, o, &snap));
        }
    }
    Ok(Resp::json(201, &out))
}
