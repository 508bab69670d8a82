//! VMs: the shared guest handlers (`guests.rs`) bound to the VM engine, plus what only VMs
//! have (the serial log, clone options for linked clones).

use std::sync::Arc;

use super::guests::{self, act, allocate, blocking, timeout_of};
use crate::api::{ApiError, App, Req, Resp};
use crate::guest::Engine;

pub async fn vm_list(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    guests::list(&app, Arc::clone(&app.vms), req).await
}

pub async fn vm_create(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    guests::create(&app, Arc::clone(&app.vms), req).await
}

pub async fn vm_view(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    guests::view(Arc::clone(&app.vms), req).await
}

pub async fn vm_update(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    guests::update(Arc::clone(&app.vms), req).await
}

pub async fn vm_delete(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    guests::delete(Arc::clone(&app.vms), req).await
}

pub async fn vm_start(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    act(Arc::clone(&app.vms), &req, Engine::start).await
}

pub async fn vm_stop(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    act(Arc::clone(&app.vms), &req, Engine::stop).await
}

pub async fn vm_shutdown(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let t = timeout_of(&req);
    act(Arc::clone(&app.vms), &req, move |v, id| {
        Engine::shutdown(v, id, t)
    })
    .await
}

pub async fn vm_reboot(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let t = timeout_of(&req);
    act(Arc::clone(&app.vms), &req, move |v, id| {
        Engine::reboot(v, id, t)
    })
    .await
}

pub async fn vm_pause(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    act(Arc::clone(&app.vms), &req, |v, id| {
        Engine::suspend(v, id, true)
    })
    .await
}

pub async fn vm_resume(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    act(Arc::clone(&app.vms), &req, |v, id| {
        Engine::suspend(v, id, false)
    })
    .await
}

pub async fn vm_serial(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("id").to_string();
    let v = Arc::clone(&app.vms);
    let out = blocking(move || v.serial(&id)).await?;
    Ok(Resp::json(200, &out))
}

pub async fn vm_serial_input(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("id").to_string();
    let data = req.body["data"].as_str().unwrap_or_default().to_string();
    let v = Arc::clone(&app.vms);
    blocking(move || v.serial_input(&id, &data)).await?;
    Ok(Resp::no_content())
}

/// The serial console over WebSocket: the recent log, then live output as binary frames;
/// text or binary frames from the client are typed into COM1.
pub async fn vm_console(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    guests::console(Arc::clone(&app.vms), req).await
}

pub async fn vm_clone(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("id").to_string();
    let new_id = allocate(
        &app,
        req.body["id"].as_u64().and_then(|i| u32::try_from(i).ok()),
    )?;
    let body = req.body.clone();
    let v = Arc::clone(&app.vms);
    blocking(move || {
        v.clone_to(
            &id,
            &crate::vm::CloneSpec {
                new_id,
                name: body["name"].as_str().unwrap_or_default(),
                snapshot: body["snapshot"].as_str(),
                pool: body["pool"].as_str(),
                linked: body["linked"].as_bool().unwrap_or(false),
            },
        )
    })
    .await?;
    guests::respond(Arc::clone(&app.vms), 201, new_id.to_string()).await
}

pub async fn vm_template(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    act(Arc::clone(&app.vms), &req, |v, id| {
        Engine::make_template(v, id)
    })
    .await
}

pub async fn vm_snapshot_list(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    guests::snapshot_list(&app, &*app.vms, req).await
}

pub async fn vm_snapshot_create(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    guests::snapshot_create(Arc::clone(&app.vms), req).await
}

pub async fn vm_snapshot_restore(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    guests::snapshot_revert(Arc::clone(&app.vms), req).await
}

pub async fn vm_snapshot_delete(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    guests::snapshot_delete(Arc::clone(&app.vms), req).await
}

/// The graphical display of a qemu VM over WebSocket: RFB (VNC) bytes in binary frames, both
/// ways, proxied to QEMU's VNC socket in the VM's directory.
pub async fn vm_vnc(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("id").to_string();
    let (vms, i) = (Arc::clone(&app.vms), id.clone());
    let sock = blocking(move || vms.vnc_socket(&i)).await?;
    let (upgrade, accept) = super::websocket(req.websocket)?;
    tokio::spawn(crate::console::proxy(format!("vm {id}"), sock, upgrade));
    Ok(Resp::websocket(accept))
}

/// A one-time ticket for the display or serial console WebSocket (browsers cannot send an
/// Authorization header on a WebSocket).
pub async fn vm_console_ticket(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("id").to_string();
    let (vms, i) = (Arc::clone(&app.vms), id.clone());
    blocking(move || vms.get(&i).map(drop)).await?;
    let user = req
        .principal
        .as_ref()
        .map(|p| p.user.clone())
        .ok_or_else(|| ApiError::unauthorized("no caller"))?;
    let route = match req.body["console"].as_str() {
        Some("vnc") => "vnc",
        _ => "console",
    };
    let path = format!("{}/vms/{id}/{route}", crate::API_PREFIX);
    let (ticket, expires_at) = app
        .access
        .console
        .issue(&user, &path, crate::time::now_unix());
    if ticket.is_empty() {
        return Err(ApiError::new(
            503,
            "too-many-tickets",
            "Too many console tickets",
            "too many unused console tickets are outstanding; try again in 30 s",
        ));
    }
    Ok(Resp::json(
        201,
        &serde_json::json!({"ticket": ticket, "expires_at": expires_at,
                            "path": format!("{path}?ticket={ticket}")}),
    ))
}
