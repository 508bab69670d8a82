//! `POST /storage/pools/{pool}/download`: a file fetched by URL into a pool, as a task. The
//! volume is reserved (and the name checked) before the 202, so a clash is a 409 at once;
//! the network work and every check of what arrived happen in the task
//! ([`crate::storage::Storage::download`]).

use std::sync::Arc;

use super::ingest::storage_failure;
use super::storage::{blocking, check_content, task_response};
use crate::api::{ApiError, App, Req, Resp};
use crate::storage::{Content, DownloadRequest, Format};

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
    let t = super::ingest::spawn(
        &app,
        "volume_download",
        &user,
        incoming,
        move |st, incoming, progress| {
            let digest = st
                .download(incoming, &dl, progress)
                .map_err(|e| storage_failure(&incoming.pool, e))?;
            st.finish_file(incoming, &digest, None)
                .map_err(|e| storage_failure(&incoming.pool, e))
        },
    )?;
    task_response(&app, &req, t).await
}
