//! `POST /storage/pools/{pool}/download`: a file fetched by URL into a pool, as a task. The
//! volume is reserved (and the name checked) before the 202, so a clash is a 409 at once;
//! the network work and every check of what arrived happen in the task
//! ([`crate::storage::Storage::download`]).

use std::sync::Arc;

use serde_json::json;

use super::storage::{
    blocking, check_content, task_failure, task_response, volume_location, write_failure,
};
use crate::api::{ApiError, App, Req, Resp};
use crate::storage::{Content, DownloadRequest, Format, Progress, StorageError};
use crate::tasks::{TaskFailure, TaskFuture};

pub async fn volume_download(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let pool = req.param("pool").to_string();
    let user = req.principal()?.user.clone();
    let dl: DownloadRequest = req.body_as()?;
    check_content(&app, &pool, dl.content.as_str(), "/content")?;
    if dl.format.is_some_and(|f| f != Format::Raw) && dl.content != Content::Images {
        return Err(ApiError::field(
            "body",
            "/format",
            "only images volumes take a format",
        ));
    }
    if dl.format == Some(Format::Subvol) {
        return Err(ApiError::field(
            "body",
            "/format",
            "a download is a file: raw or qcow2",
        ));
    }
    let st = Arc::clone(&app.storage);
    let (p2, name, content, format) = (
        pool.clone(),
        dl.name.clone(),
        dl.content,
        dl.format.unwrap_or(Format::Raw),
    );
    let incoming = blocking(move || st.begin_file(&p2, &name, content, format, None)).await?;
    let st = Arc::clone(&app.storage);
    let t = app.tasks.spawn(
        "volume_download",
        Some(volume_location(&incoming.volid)),
        &user,
        move |ctx| -> TaskFuture {
            Box::pin(async move {
                let cancel = ctx.cancel_token();
                let log_ctx = ctx.clone();
                let r = tokio::task::spawn_blocking(move || {
                    let log = move |m: String| log_ctx.log(m);
                    let cancelled = move || cancel.is_cancelled();
                    let progress = Progress {
                        log: &log,
                        cancelled: &cancelled,
                    };
                    match st.download(&incoming, &dl, &progress) {
                        Ok(d) => st.finish_file(&incoming, &d, None),
                        Err(e) => {
                            st.abort_file(&incoming);
                            Err(e)
                        }
                    }
                })
                .await
                .map_err(|e| TaskFailure::failed("internal", "Internal error", e.to_string()))?;
                match r {
                    Ok(o) => {
                        ctx.log(format!("{} is ready", o.id));
                        Ok(json!({"volid": o.id, "sha256": o.body["sha256"], "size": o.body["size"]}))
                    }
                    Err(StorageError::Conflict(m)) if m == "cancelled" => {
                        Err(TaskFailure::Cancelled)
                    }
                    Err(e @ StorageError::Io { .. }) => {
                        let a = write_failure(&pool, e);
                        Err(TaskFailure::failed(a.kind, a.title, a.detail))
                    }
                    Err(e) => Err(task_failure(e)),
                }
            })
        },
    )?;
    task_response(&app, &req, t).await
}
