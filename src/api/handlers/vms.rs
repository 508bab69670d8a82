//! VMs: thin handlers over `crate::vm`; everything that waits runs on blocking threads.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::containers::allocate;
use super::paging;
use crate::api::{ApiError, App, Req, Resp};
use crate::store::Object;
use crate::vm::{VmError, Vms, KIND};

fn render(v: &Vms, o: &Object) -> Value {
    let mut out = o.to_api();
    out["status"] = v.status(&o.id);
    if let Value::Object(m) = &mut out {
        m.retain(|_, x| !x.is_null());
    }
    out
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, VmError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(ApiError::from)
}

async fn respond(app: &App, status: u16, id: String) -> Result<Resp, ApiError> {
    let v = Arc::clone(&app.vms);
    let (body, rev) = blocking(move || {
        let o = v.get(&id)?;
        Ok((render(&v, &o), o.revision))
    })
    .await?;
    let mut r = Resp::json(status, &body).etag(rev);
    if status == 201 {
        r = r.location(format!(
            "{}/vms/{}",
            crate::API_PREFIX,
            body["id"].as_i64().unwrap_or_default()
        ));
    }
    Ok(r)
}

pub async fn vm_list(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let f = paging::filter(&req)?;
    let page = app.store.list_cached(KIND, &f)?;
    let e = Arc::clone(&app.vms);
    let next = page.next.clone();
    let parts = blocking(move || Ok(paging::guest_parts(&page.items, |id| e.status(id)))).await?;
    Ok(paging::parts_response(parts, next))
}

pub async fn vm_create(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let body = req.body.clone();
    let id = allocate(&app, body["id"].as_u64().map(|i| i as u32))?;
    let v = Arc::clone(&app.vms);
    blocking(move || v.create(id, &body)).await?;
    respond(&app, 201, id.to_string()).await
}

pub async fn vm_view(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    respond(&app, 200, req.param("id").to_string()).await
}

pub async fn vm_update(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("id").to_string();
    let v = Arc::clone(&app.vms);
    let (i2, patch, if_match) = (id.clone(), req.body.clone(), req.if_match);
    blocking(move || v.update(&i2, &patch, if_match)).await?;
    respond(&app, 200, id).await
}

pub async fn vm_delete(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("id").to_string();
    let force = req.query_bool("force").unwrap_or(false);
    let v = Arc::clone(&app.vms);
    blocking(move || v.delete(&id, force)).await?;
    Ok(Resp::no_content())
}

async fn power(
    app: Arc<App>,
    req: Req,
    f: impl FnOnce(&Vms, &str) -> Result<Value, VmError> + Send + 'static,
) -> Result<Resp, ApiError> {
    let id = req.param("id").to_string();
    let v = Arc::clone(&app.vms);
    let i2 = id.clone();
    blocking(move || f(&v, &i2)).await?;
    respond(&app, 200, id).await
}

pub async fn vm_start(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    power(app, req, |v, id| v.start(id)).await
}

pub async fn vm_stop(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    power(app, req, |v, id| v.stop(id)).await
}

pub async fn vm_shutdown(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let t = Duration::from_secs(req.body["timeout"].as_u64().unwrap_or(30));
    power(app, req, move |v, id| v.shutdown(id, t)).await
}

pub async fn vm_reboot(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let t = Duration::from_secs(req.body["timeout"].as_u64().unwrap_or(30));
    power(app, req, move |v, id| v.reboot(id, t)).await
}

pub async fn vm_pause(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    power(app, req, |v, id| v.pause(id, true)).await
}

pub async fn vm_resume(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    power(app, req, |v, id| v.pause(id, false)).await
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
    let id = req.param("id").to_string();
    let v = Arc::clone(&app.vms);
    let i2 = id.clone();
    let log = blocking(move || v.console_log(&i2)).await?;
    let (upgrade, accept) = super::websocket(req.websocket)?;
    let (v1, v2, i1, i2) = (
        Arc::clone(&app.vms),
        Arc::clone(&app.vms),
        id.clone(),
        id.clone(),
    );
    tokio::spawn(crate::console::serve(
        format!("vm {id}"),
        log,
        upgrade,
        Arc::new(move || v1.running(&i1)),
        Arc::new(move |data: Vec<u8>| {
            v2.serial_input(&i2, &String::from_utf8_lossy(&data))
                .map_err(|e| e.to_string())
        }),
    ));
    Ok(Resp::websocket(accept))
}

pub async fn vm_clone(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("id").to_string();
    let new_id = allocate(&app, req.body["id"].as_u64().map(|i| i as u32))?;
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
    respond(&app, 201, new_id.to_string()).await
}

pub async fn vm_template(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("id").to_string();
    let v = Arc::clone(&app.vms);
    let i2 = id.clone();
    blocking(move || v.make_template(&i2)).await?;
    respond(&app, 200, id).await
}

pub async fn vm_snapshot_list(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let o = app.store.require_cached(KIND, req.param("id"))?;
    let items = o.body["snapshots"].as_array().cloned().unwrap_or_default();
    Ok(paging::list_response(items, None))
}

pub async fn vm_snapshot_create(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("id").to_string();
    let name = req.body["name"].as_str().unwrap_or_default().to_string();
    let desc = req.body["description"].as_str().map(String::from);
    let v = Arc::clone(&app.vms);
    let i2 = id.clone();
    blocking(move || v.snapshot(&i2, &name, desc.as_deref())).await?;
    respond(&app, 201, id).await
}

pub async fn vm_snapshot_restore(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("id").to_string();
    let snap = req.param("snapshot").to_string();
    let v = Arc::clone(&app.vms);
    let i2 = id.clone();
    blocking(move || v.restore(&i2, &snap)).await?;
    respond(&app, 200, id).await
}

pub async fn vm_snapshot_delete(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("id").to_string();
    let snap = req.param("snapshot").to_string();
    let v = Arc::clone(&app.vms);
    blocking(move || v.delete_snapshot(&id, &snap)).await?;
    Ok(Resp::no_content())
}
