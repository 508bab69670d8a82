//! `/templates`: the catalogue, builds with mmdebstrap, downloads from configured indexes,
//! and the indexes themselves. Builds and downloads reserve the volume before the 202 (a
//! taken name is a 409 at once) and run as tasks over `crate::templates` and
//! `crate::storage`; whatever fails leaves neither a volume nor a staging file.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use super::ingest::storage_failure;
use super::storage::{blocking, check_content, task_response};
use crate::api::{ApiError, App, Req, Resp};
use crate::storage::{Content, Decompress, DownloadRequest, Format, IncomingFile};
use crate::store::objects;
use crate::tasks::TaskFailure;
use crate::templates::build::BuildOptions;
use crate::templates::{index, TemplateError, Templates, INDEX_KIND};

/// `TemplateBuild`, as validated by the schema.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildBody {
    template: String,
    #[serde(default = "local")]
    pool: String,
    name: Option<String>,
    mirror: Option<String>,
    proxy: Option<String>,
    #[serde(default)]
    refresh: bool,
}

/// `TemplateDownload`, as validated by the schema.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DownloadBody {
    template: String,
    #[serde(default = "local")]
    pool: String,
    name: Option<String>,
}

fn local() -> String {
    crate::storage::DEFAULT_POOL.to_string()
}

async fn templates_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, TemplateError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(ApiError::from)
}

fn failure(e: impl Into<ApiError>) -> TaskFailure {
    let a: ApiError = e.into();
    TaskFailure::failed(a.kind, a.title, a.detail)
}

pub async fn template_catalog(app: Arc<App>, _req: Req) -> Result<Resp, ApiError> {
    let (store, dir) = (Arc::clone(&app.store), app.data_dir.clone());
    let v = templates_blocking(move || Templates::at(&dir).catalog(&store)).await?;
    Ok(Resp::json(200, &v))
}

/// Reserves the template volume `name` in `pool`.
async fn reserve(app: &App, pool: &str, name: String) -> Result<IncomingFile, ApiError> {
    // The pool is a field of the body here, not of the path: a missing one is the body's fault.
    if app
        .store
        .require_cached(crate::storage::POOL_KIND, pool)
        .is_err()
    {
        return Err(ApiError::unprocessable_field(
            "/pool".into(),
            format!("storage pool '{pool}' does not exist"),
        ));
    }
    check_content(app, pool, "template", "/pool")?;
    let (st, pool) = (Arc::clone(&app.storage), pool.to_string());
    blocking(move || st.begin_file(&pool, &name, Content::Template, Format::Raw, None)).await
}

pub async fn template_build(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let user = req.principal()?.user.clone();
    let b: BuildBody = req.body_as()?;
    let t = Templates::at(&app.data_dir);
    let recipe = t.recipe(&b.template)?;
    t.builder().check()?;
    let name = b
        .name
        .clone()
        .unwrap_or_else(|| format!("{}.tar.zst", recipe.name));
    let incoming = reserve(&app, &b.pool, name).await?;
    let opts = BuildOptions {
        mirror: b.mirror,
        proxy: b.proxy,
        refresh: b.refresh,
    };
    let task = super::ingest::spawn(
        &app,
        "template_build",
        &user,
        incoming,
        move |st, incoming, p| {
            let made = t
                .build(recipe, &opts, p.log, p.cancelled)
                .and_then(|built| {
                    (p.log)(format!(
                        "copying {} into {}",
                        built.archive.display(),
                        incoming.volid
                    ));
                    let digest = st.copy_in(incoming, &built.archive, p.cancelled)?;
                    let want = built.manifest["sha256"].as_str().map(String::from);
                    st.finish_file(incoming, &digest, want.as_deref())?;
                    Ok(st.set_manifest(&incoming.volid, built.manifest)?)
                });
            made.map_err(|e| match e {
                TemplateError::Cancelled => TaskFailure::Cancelled,
                TemplateError::Storage(s) => storage_failure(&incoming.pool, s),
                e => failure(e),
            })
        },
    )?;
    task_response(&app, &req, task).await
}

/// The host of an http(s) URL (for deciding whether an index's TLS pin applies).
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.split(['/', '?', '#']).next().unwrap_or_default()
}

pub async fn template_download(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let user = req.principal()?.user.clone();
    let b: DownloadBody = req.body_as()?;
    let (store, template) = (Arc::clone(&app.store), b.template.clone());
    let (entry, ix) = templates_blocking(move || index::find(&store, &template)).await?;
    let url = entry["url"].as_str().unwrap_or_default().to_string();
    let file = crate::storage::file_name_of(&url).to_string();
    let name = match (&b.name, file.is_empty()) {
        (Some(n), _) => n.clone(),
        (None, false) => file,
        (None, true) => format!("{}.tar", b.template),
    };
    let ix_url = ix["url"].as_str().unwrap_or_default();
    let dl = DownloadRequest {
        url: url.clone(),
        name: name.clone(),
        content: Content::Template,
        format: None,
        sha256: entry["sha256"].as_str().map(String::from),
        sha512: entry["sha512"].as_str().map(String::from),
        decompress: Decompress::None,
        tls_fingerprint: (host_of(ix_url) == host_of(&url))
            .then(|| ix["tls_fingerprint"].as_str().map(String::from))
            .flatten(),
        stall_timeout: crate::storage::DEFAULT_STALL_SECS,
    };
    let incoming = reserve(&app, &b.pool, name).await?;
    let task = super::ingest::spawn(
        &app,
        "template_download",
        &user,
        incoming,
        move |st, incoming, p| {
            let fail = |e| storage_failure(&incoming.pool, e);
            let digest = st.download(incoming, &dl, p).map_err(fail)?;
            st.finish_file(incoming, &digest, None).map_err(fail)?;
            let mut m = json!({
                "template": entry["name"],
                "distro": entry["distro"],
                "release": entry["release"],
                "architecture": entry["architecture"],
                "source": dl.shown_url(),
                "created_at": crate::time::now_rfc3339(),
                "sha256": digest,
            });
            if let Some(v) = entry.get("variant") {
                m["variant"] = v.clone();
            }
            st.set_manifest(&incoming.volid, m).map_err(fail)
        },
    )?;
    task_response(&app, &req, task).await
}

pub async fn template_index_list(app: Arc<App>, _req: Req) -> Result<Resp, ApiError> {
    let items: Vec<Value> = app
        .store
        .read(|c| objects::all(c, INDEX_KIND))?
        .iter()
        .map(|o| o.to_api())
        .collect();
    Ok(Resp::json(200, &json!({ "items": items })))
}

pub async fn template_index_create(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let body = req.body.clone();
    let name = body["name"].as_str().unwrap_or_default().to_string();
    let url = body["url"].as_str().unwrap_or_default().to_string();
    // Read it now: an index that cannot be read is refused rather than stored broken.
    index::forget(&url);
    let (n, b) = (name.clone(), body.clone());
    let read = tokio::task::spawn_blocking(move || index::entries(&n, &b))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if let Err(e) = read {
        return Err(ApiError::unprocessable_field(
            "/url".into(),
            format!("cannot use this index: {e}"),
        ));
    }
    let o = app
        .store
        .write(|tx| objects::insert(tx, INDEX_KIND, &name, &name, None, &body, &[]))?;
    Ok(Resp::json(201, &o.to_api())
        .location(format!("{}/templates/indexes/{name}", crate::API_PREFIX)))
}

pub async fn template_index_delete(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let name = req.param("name").to_string();
    let o = app
        .store
        .write(|tx| objects::delete(tx, INDEX_KIND, &name, None))?;
    index::forget(o.body["url"].as_str().unwrap_or_default());
    Ok(Resp::no_content())
}
