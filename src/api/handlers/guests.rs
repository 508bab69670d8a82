//! Handlers shared by every guest engine (containers, VMs): each parses the request, calls one
//! [`Engine`] method on a blocking thread and renders the guest. The per-engine handler files
//! name the engine and add what only that engine has (exec, serial log, clone options).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::paging;
use crate::api::{ApiError, App, Req, Resp};
use crate::guest::Engine;
use crate::store::Object;

/// A guest as the API shows it: its row, `status` from the engine, nulls dropped.
pub(super) fn render<E: Engine>(e: &E, o: &Object) -> Value {
    let mut v = o.to_api();
    v["status"] = e.status(&o.id);
    if let Value::Object(m) = &mut v {
        m.retain(|_, x| !x.is_null());
    }
    v
}

/// Runs engine work on a blocking thread; its typed error becomes a problem document.
pub(super) async fn blocking<T, Er>(
    f: impl FnOnce() -> Result<T, Er> + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    Er: Send + 'static,
    ApiError: From<Er>,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(ApiError::from)
}

/// Answers with the guest as it is now (`201` adds its `Location`).
pub(super) async fn respond<E: Engine>(e: Arc<E>, status: u16, id: String) -> Result<Resp, ApiError>
where
    ApiError: From<E::Error>,
{
    let e2 = Arc::clone(&e);
    let (v, rev) = blocking(move || {
        let o = e2.get(&id)?;
        Ok::<_, E::Error>((render(&*e2, &o), o.revision))
    })
    .await?;
    let mut r = Resp::json(status, &v).etag(rev);
    if status == 201 {
        r = r.location(format!(
            "{}/{}/{}",
            crate::API_PREFIX,
            e.collection(),
            v["id"].as_i64().unwrap_or_default()
        ));
    }
    Ok(r)
}

/// A guest id: the requested one if free (409 naming `/id` otherwise), else the next.
pub(crate) fn allocate(app: &App, requested: Option<u32>) -> Result<u32, ApiError> {
    Ok(app
        .store
        .write(|tx| crate::guest::allocate_id(tx, requested))?)
}

fn requested_id(req: &Req) -> Option<u32> {
    req.body["id"].as_u64().and_then(|i| u32::try_from(i).ok())
}

pub(super) async fn list<E: Engine>(app: &App, e: Arc<E>, req: Req) -> Result<Resp, ApiError>
where
    ApiError: From<E::Error>,
{
    let f = paging::filter(&req)?;
    let page = app.store.list_cached(e.kind(), &f)?;
    let next = page.next.clone();
    let parts =
        blocking(move || Ok::<_, E::Error>(paging::guest_parts(&page.items, |id| e.status(id))))
            .await?;
    Ok(paging::parts_response(parts, next))
}

pub(super) async fn create<E: Engine>(app: &App, e: Arc<E>, req: Req) -> Result<Resp, ApiError>
where
    ApiError: From<E::Error>,
{
    let id = allocate(app, requested_id(&req))?;
    let (e2, body) = (Arc::clone(&e), req.body);
    blocking(move || e2.create(id, &body)).await?;
    respond(e, 201, id.to_string()).await
}

pub(super) async fn view<E: Engine>(e: Arc<E>, req: Req) -> Result<Resp, ApiError>
where
    ApiError: From<E::Error>,
{
    respond(e, 200, req.param("id").to_string()).await
}

pub(super) async fn update<E: Engine>(e: Arc<E>, req: Req) -> Result<Resp, ApiError>
where
    ApiError: From<E::Error>,
{
    let id = req.param("id").to_string();
    let (e2, i2, if_match) = (Arc::clone(&e), id.clone(), req.if_match);
    blocking(move || e2.update(&i2, &req.body, if_match)).await?;
    respond(e, 200, id).await
}

pub(super) async fn delete<E: Engine>(e: Arc<E>, req: Req) -> Result<Resp, ApiError>
where
    ApiError: From<E::Error>,
{
    let id = req.param("id").to_string();
    let force = req.query_bool("force").unwrap_or(false);
    blocking(move || e.delete(&id, force)).await?;
    Ok(Resp::no_content())
}

/// Runs an action on the guest named by the path and answers with the guest.
pub(super) async fn act<E: Engine>(
    e: Arc<E>,
    req: &Req,
    f: impl FnOnce(&E, &str) -> Result<(), E::Error> + Send + 'static,
) -> Result<Resp, ApiError>
where
    ApiError: From<E::Error>,
{
    let id = req.param("id").to_string();
    let (e2, i2) = (Arc::clone(&e), id.clone());
    blocking(move || f(&e2, &i2)).await?;
    respond(e, 200, id).await
}

/// The `timeout` (seconds) of a shutdown or reboot body; 30 when absent.
pub(super) fn timeout_of(req: &Req) -> Duration {
    Duration::from_secs(req.body["timeout"].as_u64().unwrap_or(30))
}

pub(super) async fn snapshot_list<E: Engine>(app: &App, e: &E, req: Req) -> Result<Resp, ApiError> {
    let o = app.store.require_cached(e.kind(), req.param("id"))?;
    let items = o.body["snapshots"].as_array().cloned().unwrap_or_default();
    Ok(paging::list_response(items, None))
}

pub(super) async fn snapshot_create<E: Engine>(e: Arc<E>, req: Req) -> Result<Resp, ApiError>
where
    ApiError: From<E::Error>,
{
    let id = req.param("id").to_string();
    let name = req.body["name"].as_str().unwrap_or_default().to_string();
    let desc = req.body["description"].as_str().map(String::from);
    let (e2, i2) = (Arc::clone(&e), id.clone());
    blocking(move || e2.snapshot(&i2, &name, desc.as_deref())).await?;
    respond(e, 201, id).await
}

pub(super) async fn snapshot_revert<E: Engine>(e: Arc<E>, req: Req) -> Result<Resp, ApiError>
where
    ApiError: From<E::Error>,
{
    let snap = req.param("snapshot").to_string();
    act(e, &req, move |e, id| e.revert(id, &snap)).await
}

pub(super) async fn snapshot_delete<E: Engine>(e: Arc<E>, req: Req) -> Result<Resp, ApiError>
where
    ApiError: From<E::Error>,
{
    let id = req.param("id").to_string();
    let snap = req.param("snapshot").to_string();
    blocking(move || e.delete_snapshot(&id, &snap)).await?;
    Ok(Resp::no_content())
}

/// The guest's console over WebSocket: recent output, then live; frames from the client are
/// typed into the console.
pub(super) async fn console<E: Engine>(e: Arc<E>, req: Req) -> Result<Resp, ApiError>
where
    ApiError: From<E::Error>,
    E::Error: std::fmt::Display,
{
    let id = req.param("id").to_string();
    let (e0, i0) = (Arc::clone(&e), id.clone());
    let log = blocking(move || e0.console_log(&i0)).await?;
    let (upgrade, accept) = super::websocket(req.websocket)?;
    let (e1, e2, i1, i2) = (Arc::clone(&e), Arc::clone(&e), id.clone(), id.clone());
    tokio::spawn(crate::console::serve(
        format!("{} {id}", e.kind()),
        log,
        upgrade,
        Arc::new(move || e1.running(&i1)),
        Arc::new(move |data: Vec<u8>| e2.console_input(&i2, &data).map_err(|x| x.to_string())),
    ));
    Ok(Resp::websocket(accept))
}
