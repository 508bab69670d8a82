//! Containers: thin handlers over `crate::container`; slow parts run on blocking threads.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::paging;
use crate::api::{ApiError, App, Req, Resp};
use crate::container::{ContainerError, Containers, KIND};
use crate::store::Object;

fn render(c: &Containers, o: &Object) -> Value {
    let mut v = o.to_api();
    v["status"] = c.status(&o.id);
    if let Value::Object(m) = &mut v {
        m.retain(|_, x| !x.is_null());
    }
    v
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ContainerError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(ApiError::from)
}

async fn respond(app: &App, status: u16, id: String) -> Result<Resp, ApiError> {
    let c = Arc::clone(&app.containers);
    let (v, rev) = blocking(move || {
        let o = c.get(&id)?;
        Ok((render(&c, &o), o.revision))
    })
    .await?;
    let mut r = Resp::json(status, &v).etag(rev);
    if status == 201 {
        r = r.location(format!(
            "{}/containers/{}",
            crate::API_PREFIX,
            v["id"].as_i64().unwrap_or_default()
        ));
    }
    Ok(r)
}

pub async fn container_list(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let f = paging::filter(&req)?;
    let page = app.store.list_cached(KIND, &f)?;
    let e = Arc::clone(&app.containers);
    let next = page.next.clone();
    let parts = blocking(move || Ok(paging::guest_parts(&page.items, |id| e.status(id)))).await?;
    Ok(paging::parts_response(parts, next))
}

/// Host-path bind mounts hand a host directory to the container: root's power, so they also
/// need Sys.Modify on `/`.
fn check_mounts(app: &App, req: &Req, body: &Value) -> Result<(), ApiError> {
    let host_paths = body["mounts"]
        .as_object()
        .is_some_and(|m| m.values().any(|x| x.get("path").is_some()));
    if host_paths && !app.access.allowed(req.principal()?, "Sys.Modify", "/") {
        return Err(ApiError::forbidden(
            "bind-mounting a host path into a container also requires Sys.Modify on /",
        ));
    }
    Ok(())
}

/// A guest id: the requested one if free (409 naming `/id` otherwise), else the next.
pub(crate) fn allocate(app: &App, requested: Option<u32>) -> Result<u32, ApiError> {
    app.store
        .write(|tx| crate::guest::allocate_id(tx, requested))
        .map_err(|e| match e {
            crate::guest::GuestIdError::Store(s) => ApiError::from(s),
            other => {
                let mut a = ApiError::field("body", "/id", other.to_string());
                a.status = 409;
                a
            }
        })
}

pub async fn container_create(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let body = req.body.clone();
    check_mounts(&app, &req, &body)?;
    let requested = body["id"].as_u64().map(|i| i as u32);
    let id = allocate(&app, requested)?;
    if let Some(p) = body["pool"].as_str() {
        app.store
            .require_cached(crate::storage::POOL_KIND, p)
            .map_err(|_| {
                let mut e =
                    ApiError::field("body", "/pool", format!("storage pool {p} does not exist"));
                e.status = 422;
                e
            })?;
    }
    let c = Arc::clone(&app.containers);
    blocking(move || c.create(id, &body)).await?;
    respond(&app, 201, id.to_string()).await
}

pub async fn container_view(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    respond(&app, 200, req.param("id").to_string()).await
}

pub async fn container_update(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("id").to_string();
    check_mounts(&app, &req, &req.body)?;
    let c = Arc::clone(&app.containers);
    let (i2, patch, if_match) = (id.clone(), req.body.clone(), req.if_match);
    blocking(move || c.update(&i2, &patch, if_match)).await?;
    respond(&app, 200, id).await
}

pub async fn container_delete(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("id").to_string();
    let force = req.query_bool("force").unwrap_or(false);
    let c = Arc::clone(&app.containers);
    blocking(move || c.delete(&id, force)).await?;
    Ok(Resp::no_content())
}

async fn power(
    app: Arc<App>,
    req: Req,
    f: impl FnOnce(&Containers, &str) -> Result<Value, ContainerError> + Send + 'static,
) -> Result<Resp, ApiError> {
    let id = req.param("id").to_string();
    let c = Arc::clone(&app.containers);
    let i2 = id.clone();
    blocking(move || f(&c, &i2)).await?;
    respond(&app, 200, id).await
}

pub async fn container_start(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    power(app, req, |c, id| c.start(id)).await
}

pub async fn container_stop(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    power(app, req, |c, id| c.stop(id)).await
}

pub async fn container_shutdown(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let t = Duration::from_secs(req.body["timeout"].as_u64().unwrap_or(30));
    power(app, req, move |c, id| c.shutdown(id, t)).await
}

pub async fn container_reboot(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let t = Duration::from_secs(req.body["timeout"].as_u64().unwrap_or(30));
    power(app, req, move |c, id| c.reboot(id, t)).await
}

pub async fn container_freeze(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    power(app, req, |c, id| c.freeze(id, true)).await
}

pub async fn container_unfreeze(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    power(app, req, |c, id| c.freeze(id, false)).await
}

/// The container's console terminal over WebSocket: recent output, then live; frames from
/// the client are typed into the terminal.
pub async fn container_console(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("id").to_string();
    let c = Arc::clone(&app.containers);
    let i0 = id.clone();
    let log = blocking(move || c.console_log(&i0)).await?;
    let (upgrade, accept) = super::websocket(req.websocket)?;
    let (c1, c2, i1, i2) = (
        Arc::clone(&app.containers),
        Arc::clone(&app.containers),
        id.clone(),
        id.clone(),
    );
    tokio::spawn(crate::console::serve(
        format!("container {id}"),
        log,
        upgrade,
        Arc::new(move || c1.running(&i1)),
        Arc::new(move |data: Vec<u8>| c2.console_input(&i2, &data).map_err(|e| e.to_string())),
    ));
    Ok(Resp::websocket(accept))
}

pub async fn container_exec(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("id").to_string();
    let command: Vec<String> = req.body["command"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let timeout = Duration::from_secs(req.body["timeout"].as_u64().unwrap_or(60));
    let v = app
        .containers
        .exec(&id, &command, timeout)
        .await
        .map_err(ApiError::from)?;
    Ok(Resp::json(200, &json!(v)))
}

pub async fn container_snapshot_list(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let o = app.store.require_cached(KIND, req.param("id"))?;
    let items = o.body["snapshots"].as_array().cloned().unwrap_or_default();
    Ok(paging::list_response(items, None))
}

pub async fn container_snapshot_create(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("id").to_string();
    let name = req.body["name"].as_str().unwrap_or_default().to_string();
    let desc = req.body["description"].as_str().map(String::from);
    let c = Arc::clone(&app.containers);
    let i2 = id.clone();
    blocking(move || c.snapshot(&i2, &name, desc.as_deref())).await?;
    respond(&app, 201, id).await
}

pub async fn container_snapshot_rollback(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("id").to_string();
    let snap = req.param("snapshot").to_string();
    let c = Arc::clone(&app.containers);
    let i2 = id.clone();
    blocking(move || c.rollback(&i2, &snap)).await?;
    respond(&app, 200, id).await
}

pub async fn container_snapshot_delete(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("id").to_string();
    let snap = req.param("snapshot").to_string();
    let c = Arc::clone(&app.containers);
    blocking(move || c.delete_snapshot(&id, &snap)).await?;
    Ok(Resp::no_content())
}

pub async fn container_clone(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("id").to_string();
    let requested = req.body["id"].as_u64().map(|i| i as u32);
    let new_id = allocate(&app, requested)?;
    let name = req.body["name"].as_str().unwrap_or_default().to_string();
    let snapshot = req.body["snapshot"].as_str().map(String::from);
    let pool = req.body["pool"].as_str().map(String::from);
    let c = Arc::clone(&app.containers);
    blocking(move || c.clone_to(&id, new_id, &name, snapshot.as_deref(), pool.as_deref())).await?;
    respond(&app, 201, new_id.to_string()).await
}

pub async fn container_template(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    power(app, req, |c, id| c.make_template(id).map(|_| Value::Null)).await
}
