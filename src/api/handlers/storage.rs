//! Storage pools and volumes: thin handlers over `crate::storage`, which owns every rule about
//! what may be created where. Slow work (clones, imports) runs as tasks; uploads stream.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use serde_json::{json, Value};

use super::paging;
use crate::api::{server, ApiError, App, Req, Resp};
use crate::storage::{
    CloneRequest, Content, Format, Storage, StorageError, VolumeSpec, POOL_KIND, VOLUME_KIND,
};
use crate::store::{objects, Object};
use crate::tasks::{TaskFailure, TaskFuture};

fn pool_location(name: &str) -> String {
    format!("{}/storage/pools/{name}", crate::API_PREFIX)
}

pub(super) fn volume_location(volid: &str) -> String {
    let (p, n) = volid.split_once(':').unwrap_or((volid, ""));
    format!("{}/storage/pools/{p}/volumes/{n}", crate::API_PREFIX)
}

/// A pool as the API shows it: the row plus capacity read from the backing store now.
fn render_pool(storage: &Storage, o: &Object) -> Value {
    let mut v = o.to_api();
    v["capacity"] = match storage.capacity(&o.id) {
        Ok(c) => json!({"total": c.total, "used": c.used, "free": c.free, "active": true}),
        Err(e) => json!({"total": 0, "used": 0, "free": 0, "active": false,
            "error": storage.inactive_reason(&o.id).unwrap_or_else(|| e.to_string())}),
    };
    v
}

/// A pool answer: rendered off the runtime (capacity reads the backing store), with its ETag.
async fn pool_response(app: &App, status: u16, o: Arc<Object>) -> Result<Resp, ApiError> {
    let st = Arc::clone(&app.storage);
    let v = tokio::task::spawn_blocking(move || render_pool(&st, &o))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let rev = v["revision"].as_i64().unwrap_or(1);
    Ok(Resp::json(status, &v).etag(rev))
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(ApiError::from)
}

pub async fn storage_pool_list(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let f = paging::filter(&req)?;
    let page = app.store.read(|c| objects::list(c, POOL_KIND, &f))?;
    let st = Arc::clone(&app.storage);
    let items = blocking(move || {
        Ok(page
            .items
            .iter()
            .map(|o| render_pool(&st, o))
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(paging::list_response(items, page.next))
}

pub async fn storage_pool_create(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let body = req.body.clone();
    let name = body["name"].as_str().unwrap_or_default().to_string();
    let st = Arc::clone(&app.storage);
    let o = blocking(move || st.create_pool(body)).await?;
    Ok(pool_response(&app, 201, Arc::new(o))
        .await?
        .location(pool_location(&name)))
}

pub async fn storage_pool_view(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let o = app.store.require_cached(POOL_KIND, req.param("pool"))?;
    pool_response(&app, 200, o).await
}

pub async fn storage_pool_update(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let name = req.param("pool").to_string();
    let cur = app.store.read(|c| objects::require(c, POOL_KIND, &name))?;
    let mut body = cur.body.clone();
    if let Some(c) = req.body["content"].as_array() {
        if body["type"] == "lvmthin" {
            if let Some(i) = c.iter().position(|x| x != "images") {
                return Err(ApiError::field(
                    "body",
                    &format!("/content/{i}"),
                    "an lvmthin pool holds images only",
                ));
            }
        }
    }
    for k in ["content", "comment", "tags"] {
        if let Some(v) = req.body.get(k) {
            body[k] = v.clone();
        }
    }
    let tags: Vec<String> = paging::tags_of(&body);
    let o = app
        .store
        .write(|tx| objects::update(tx, POOL_KIND, &name, req.if_match, &body, &tags))?;
    pool_response(&app, 200, Arc::new(o)).await
}

pub async fn storage_pool_delete(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let name = req.param("pool").to_string();
    if name == crate::storage::DEFAULT_POOL {
        return Err(ApiError::conflict(
            "the 'local' pool is built in and cannot be removed",
        ));
    }
    let st = Arc::clone(&app.storage);
    blocking(move || st.remove_pool(&name)).await?;
    Ok(Resp::no_content())
}

fn volid(req: &Req) -> String {
    format!("{}:{}", req.param("pool"), req.param("volume"))
}

/// Fails unless the pool exists and accepts `content`.
pub(super) fn check_content(
    app: &App,
    pool: &str,
    content: &str,
    field: &str,
) -> Result<(), ApiError> {
    let p = app.store.require_cached(POOL_KIND, pool)?;
    let ok = p.body["content"]
        .as_array()
        .is_some_and(|a| a.iter().any(|c| c == content));
    if !ok {
        return Err(ApiError::field(
            "body",
            field,
            format!("pool '{pool}' does not accept {content} content (see its 'content' list)"),
        ));
    }
    Ok(())
}

async fn render_volume(app: &App, o: Object) -> Result<Value, ApiError> {
    let st = Arc::clone(&app.storage);
    tokio::task::spawn_blocking(move || st.render(&o))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))
}

async fn volume_response(app: &App, status: u16, o: Object) -> Result<Resp, ApiError> {
    let rev = o.revision;
    let id = o.id.clone();
    let v = render_volume(app, o).await?;
    let r = Resp::json(status, &v).etag(rev);
    Ok(if status == 201 {
        r.location(volume_location(&id))
    } else {
        r
    })
}

pub async fn volume_list(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let pool = req.param("pool").to_string();
    app.store.require_cached(POOL_KIND, &pool)?;
    let mut f = paging::filter(&req)?;
    f.name = Some(format!("{pool}:{}", f.name.as_deref().unwrap_or("*")));
    f.owner = req.query_str("owner").map(String::from);
    let page = app.store.read(|c| objects::list(c, VOLUME_KIND, &f))?;
    let content = req.query_str("content").map(String::from);
    let st = Arc::clone(&app.storage);
    let items = blocking(move || {
        Ok(page
            .items
            .iter()
            .filter(|o| content.as_deref().is_none_or(|c| o.body["content"] == c))
            .map(|o| st.render(o))
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(paging::list_response(items, page.next))
}

pub async fn volume_create(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let pool = req.param("pool").to_string();
    let b = &req.body;
    let content = b["content"].as_str().unwrap_or("images");
    check_content(&app, &pool, content, "/content")?;
    let spec = VolumeSpec {
        name: b["name"].as_str().unwrap_or_default().to_string(),
        content: serde_json::from_value(json!(content))
            .map_err(|e| ApiError::field("body", "/content", e.to_string()))?,
        format: match b.get("format") {
            Some(f) => Some(
                serde_json::from_value::<Format>(f.clone())
                    .map_err(|e| ApiError::field("body", "/format", e.to_string()))?,
            ),
            None => None,
        },
        size: b["size"].as_u64().unwrap_or(0),
        owner: b["owner"].as_str().map(String::from),
        comment: b["comment"].as_str().map(String::from),
    };
    let st = Arc::clone(&app.storage);
    let o = blocking(move || st.create_volume(&pool, &spec)).await?;
    volume_response(&app, 201, o).await
}

pub async fn volume_view(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let o = app.store.require_cached(VOLUME_KIND, &volid(&req))?;
    volume_response(&app, 200, (*o).clone()).await
}

pub async fn volume_delete(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = volid(&req);
    let st = Arc::clone(&app.storage);
    blocking(move || st.delete_volume(&id)).await?;
    Ok(Resp::no_content())
}

pub async fn volume_resize(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = volid(&req);
    let size = req.body["size"].as_u64().unwrap_or(0);
    let st = Arc::clone(&app.storage);
    let o = blocking(move || st.resize(&id, size)).await?;
    volume_response(&app, 200, o).await
}

pub async fn volume_template(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = volid(&req);
    let st = Arc::clone(&app.storage);
    let o = blocking(move || st.make_template(&id)).await?;
    volume_response(&app, 200, o).await
}

pub async fn volume_snapshot_list(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let o = app.store.require_cached(VOLUME_KIND, &volid(&req))?;
    let items = o.body["snapshots"].as_array().cloned().unwrap_or_default();
    Ok(paging::list_response(items, None))
}

pub async fn volume_snapshot_create(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = volid(&req);
    let name = req.body["name"].as_str().unwrap_or_default().to_string();
    let desc = req.body["description"].as_str().map(String::from);
    let st = Arc::clone(&app.storage);
    let o = blocking(move || st.snapshot(&id, &name, desc.as_deref())).await?;
    let rev = o.revision;
    let loc = volume_location(&o.id);
    let v = render_volume(&app, o).await?;
    Ok(Resp::json(201, &v).etag(rev).location(loc))
}

pub async fn volume_snapshot_rollback(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = volid(&req);
    let snap = req.param("snapshot").to_string();
    let st = Arc::clone(&app.storage);
    let o = blocking(move || st.rollback(&id, &snap)).await?;
    volume_response(&app, 200, o).await
}

pub async fn volume_snapshot_delete(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = volid(&req);
    let snap = req.param("snapshot").to_string();
    let st = Arc::clone(&app.storage);
    blocking(move || st.delete_snapshot(&id, &snap)).await?;
    Ok(Resp::no_content())
}

pub(super) fn task_failure(e: StorageError) -> TaskFailure {
    let a = ApiError::from(e);
    TaskFailure::failed(a.kind, a.title, a.detail)
}

pub(super) async fn task_response(
    app: &App,
    req: &Req,
    t: crate::store::TaskRecord,
) -> Result<Resp, ApiError> {
    let mut t = t;
    if let Some(w) = req.query_i64("wait").filter(|w| *w > 0) {
        t = app.tasks.wait(&t.id, Duration::from_secs(w as u64)).await?;
    }
    Ok(Resp::json(202, &t.to_api()).location(format!("{}/tasks/{}", crate::API_PREFIX, t.id)))
}

pub async fn volume_clone(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let src = volid(&req);
    let creq: CloneRequest = req.body_as()?;
    if let Some(p) = &creq.pool {
        let content = app.store.require_cached(VOLUME_KIND, &src)?.body["content"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        check_content(&app, p, &content, "/pool")?;
    }
    let st = Arc::clone(&app.storage);
    let s2 = src.clone();
    let plan = blocking(move || st.begin_clone(&s2, &creq)).await?;
    let user = req.principal()?.user.clone();
    let st = Arc::clone(&app.storage);
    let t = app.tasks.spawn(
        "volume_clone",
        Some(volume_location(&plan.dst_volid)),
        &user,
        move |ctx| -> TaskFuture {
            Box::pin(async move {
                ctx.log(format!(
                    "{} clone of {} into {}",
                    if plan.linked { "linked" } else { "full" },
                    plan.src.volid,
                    plan.dst_volid
                ));
                let o = tokio::task::spawn_blocking(move || st.run_clone(&plan))
                    .await
                    .map_err(|e| TaskFailure::failed("internal", "Internal error", e.to_string()))?
                    .map_err(task_failure)?;
                ctx.log(format!("{} is ready", o.id));
                Ok(json!({"volid": o.id}))
            })
        },
    )?;
    task_response(&app, &req, t).await
}

pub async fn volume_import(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let pool = req.param("pool").to_string();
    let p = req.principal()?.clone();
    // Reading any host file is root's power: ask for Sys.Modify on / as well.
    if !app.access.allowed(&p, "Sys.Modify", "/") {
        return Err(ApiError::forbidden(
            "importing a host file also requires Sys.Modify on /",
        ));
    }
    let b = req.body.clone();
    let content_s = b["content"].as_str().unwrap_or_default().to_string();
    check_content(&app, &pool, &content_s, "/content")?;
    let content: Content = serde_json::from_value(json!(content_s))
        .map_err(|e| ApiError::field("body", "/content", e.to_string()))?;
    let format = match b.get("format") {
        Some(f) => serde_json::from_value::<Format>(f.clone())
            .map_err(|e| ApiError::field("body", "/format", e.to_string()))?,
        None => Format::Raw,
    };
    if format != Format::Raw && content != Content::Images {
        return Err(ApiError::field(
            "body",
            "/format",
            "only images volumes take a format",
        ));
    }
    let path = std::path::PathBuf::from(b["path"].as_str().unwrap_or_default());
    let meta = std::fs::metadata(&path).map_err(|e| {
        ApiError::field(
            "body",
            "/path",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    if !meta.is_file() {
        return Err(ApiError::field(
            "body",
            "/path",
            format!("{} is not a regular file", path.display()),
        ));
    }
    let name = b["name"].as_str().unwrap_or_default().to_string();
    let expected = b["sha256"].as_str().map(String::from);
    let st = Arc::clone(&app.storage);
    let len = meta.len();
    let incoming =
        blocking(move || st.begin_file(&pool, &name, content, format, Some(len))).await?;
    let t = super::ingest::spawn(
        &app,
        "volume_import",
        &p.user,
        incoming,
        move |st, incoming, progress| {
            (progress.log)(format!(
                "copying {} into {}",
                path.display(),
                incoming.volid
            ));
            let fail = |e| super::ingest::storage_failure(&incoming.pool, e);
            let digest = st
                .copy_in(incoming, &path, progress.cancelled)
                .map_err(fail)?;
            st.finish_file(incoming, &digest, expected.as_deref())
                .map_err(fail)
        },
    )?;
    task_response(&app, &req, t).await
}

/// An upload's write failed: a full disk is the pool's capacity running out (507, as the
/// up-front check answers), anything else a storage failure.
pub(super) fn write_failure(pool: &str, e: StorageError) -> ApiError {
    match &e {
        StorageError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
            ApiError::new(
                507,
                "insufficient-storage",
                "Insufficient storage",
                format!("pool '{pool}' filled up during the upload ({e}); nothing was kept"),
            )
        }
        _ => e.into(),
    }
}

/// Streams the request body to a staging file, hashing as it arrives, then checks the digest
/// before the volume becomes visible. Memory is bounded by the chunks in flight (32 on the
/// way to the writer, 64 on the way to the hasher), whatever the file size.
pub async fn volume_upload(app: Arc<App>, mut req: Req) -> Result<Resp, ApiError> {
    let Some(body) = req.stream.take() else {
        return Err(ApiError::field("body", "", "the upload has no body"));
    };
    match begin_upload(&app, &req).await {
        Ok(incoming) => receive_upload(&app, incoming, body, &req).await,
        Err(e) => {
            server::discard(body, req.expect_continue, server::Refused::ByHandler);
            Err(e)
        }
    }
}

async fn begin_upload(app: &Arc<App>, req: &Req) -> Result<crate::storage::IncomingFile, ApiError> {
    let pool = req.param("pool").to_string();
    let content_s = req.query_str("content").unwrap_or_default().to_string();
    check_content(app, &pool, &content_s, "/content")?;
    let content: Content = serde_json::from_value(json!(content_s))
        .map_err(|e| ApiError::field("query", "/content", e.to_string()))?;
    let name = req.query_str("name").unwrap_or_default().to_string();
    let format = match req.query_str("format") {
        Some("qcow2") => Format::Qcow2,
        _ => Format::Raw,
    };
    if format != Format::Raw && content != Content::Images {
        return Err(ApiError::field(
            "query",
            "/format",
            "only images volumes take a format",
        ));
    }
    let st = Arc::clone(&app.storage);
    let hint = req.content_length;
    blocking(move || st.begin_file(&pool, &name, content, format, hint)).await
}

async fn receive_upload(
    app: &Arc<App>,
    incoming: crate::storage::IncomingFile,
    mut body: hyper::body::Incoming,
    req: &Req,
) -> Result<Resp, ApiError> {
    let expected = req.query_str("sha256").unwrap_or_default().to_string();
    // The network side only receives; hashing and writing run on blocking threads fed
    // through a bounded channel, so TLS decryption, hashing and disk writes overlap and memory
    // stays bounded by the channels.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(32);
    let path = incoming.staged.clone();
    let writer = tokio::task::spawn_blocking(move || {
        crate::storage::sink::write_hashed(&path, std::iter::from_fn(|| rx.blocking_recv().map(Ok)))
    });
    let received: Result<(), ApiError> = async {
        while let Some(frame) = body.frame().await {
            let frame = frame
                .map_err(|e| ApiError::field("body", "", format!("the upload broke off: {e}")))?;
            if let Ok(data) = frame.into_data() {
                // A full channel makes this wait: backpressure onto the client.
                tx.send(data)
                    .await
                    .map_err(|_| ApiError::internal("the upload writer stopped"))?;
            }
        }
        Ok(())
    }
    .await;
    drop(tx);
    // A writer that stopped early (a full disk) leaves the client still sending: let it
    // finish and read the answer (a no-op when the body was read to the end).
    if received.is_err() {
        server::discard(body, false, server::Refused::ByHandler);
    }
    let written = writer
        .await
        .map_err(|e| ApiError::internal(e.to_string()))
        .and_then(|r| r.map_err(|e| write_failure(req.param("pool"), e)));
    // A writer that failed (a full disk, say) explains more than the network side, which
    // only saw the writer stop.
    let result = match (received, written) {
        (_, Err(w)) => Err(w),
        (r, Ok(digest)) => r.map(|_| digest),
    };
    let st = Arc::clone(&app.storage);
    let o = match result {
        Ok(digest) => blocking(move || st.finish_file(&incoming, &digest, Some(&expected))).await?,
        Err(e) => {
            tokio::task::spawn_blocking(move || st.abort_file(&incoming))
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?;
            return Err(e);
        }
    };
    volume_response(app, 201, o).await
}
