//! Containers: the shared guest handlers (`guests.rs`) bound to the container engine, plus
//! what only containers have (exec, host-path mounts' extra privilege, clone to a pool).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::guests::{self, act, allocate, blocking, timeout_of};
use crate::api::{ApiError, App, Req, Resp};
use crate::guest::Engine;

/// Host-path bind mounts hand a host directory to the container: root's power, so they also
/// need Sys.Modify on `/` (authorisation, so it stays in the handler).
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

pub async fn container_list(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    guests::list(&app, Arc::clone(&app.containers), req).await
}

pub async fn container_create(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    check_mounts(&app, &req, &req.body)?;
    guests::create(&app, Arc::clone(&app.containers), req).await
}

pub async fn container_view(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    guests::view(Arc::clone(&app.containers), req).await
}

pub async fn container_update(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    check_mounts(&app, &req, &req.body)?;
    guests::update(Arc::clone(&app.containers), req).await
}

pub async fn container_delete(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    guests::delete(Arc::clone(&app.containers), req).await
}

pub async fn container_start(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    act(Arc::clone(&app.containers), &req, |c, id| {
        Engine::start(c, id)
    })
    .await
}

pub async fn container_stop(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    act(Arc::clone(&app.containers), &req, |c, id| {
        Engine::stop(c, id)
    })
    .await
}

pub async fn container_shutdown(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let t = timeout_of(&req);
    act(Arc::clone(&app.containers), &req, move |c, id| {
        Engine::shutdown(c, id, t)
    })
    .await
}

pub async fn container_reboot(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let t = timeout_of(&req);
    act(Arc::clone(&app.containers), &req, move |c, id| {
        Engine::reboot(c, id, t)
    })
    .await
}

pub async fn container_freeze(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    act(Arc::clone(&app.containers), &req, |c, id| {
        Engine::suspend(c, id, true)
    })
    .await
}

pub async fn container_unfreeze(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    act(Arc::clone(&app.containers), &req, |c, id| {
        Engine::suspend(c, id, false)
    })
    .await
}

pub async fn container_console(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    guests::console(Arc::clone(&app.containers), req).await
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
    guests::snapshot_list(&app, &*app.containers, req).await
}

pub async fn container_snapshot_create(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    guests::snapshot_create(Arc::clone(&app.containers), req).await
}

pub async fn container_snapshot_rollback(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    guests::snapshot_revert(Arc::clone(&app.containers), req).await
}

pub async fn container_snapshot_delete(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    guests::snapshot_delete(Arc::clone(&app.containers), req).await
}

pub async fn container_clone(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("id").to_string();
    let requested = req.body["id"].as_u64().and_then(|i| u32::try_from(i).ok());
    let new_id = allocate(&app, requested)?;
    let name = req.body["name"].as_str().unwrap_or_default().to_string();
    let snapshot = req.body["snapshot"].as_str().map(String::from);
    let pool = req.body["pool"].as_str().map(String::from);
    let c = Arc::clone(&app.containers);
    blocking(move || c.clone_to(&id, new_id, &name, snapshot.as_deref(), pool.as_deref())).await?;
    guests::respond(Arc::clone(&app.containers), 201, new_id.to_string()).await
}

pub async fn container_template(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    act(Arc::clone(&app.containers), &req, |c, id| {
        Engine::make_template(c, id)
    })
    .await
}
