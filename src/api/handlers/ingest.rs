//! The task behind every file that arrives into a pool by the daemon's own hand (a host-file
//! import, a download, a template build or index download): the volume was reserved before
//! the 202; the work fills its staging file and finishes it, with the task's log and
//! cancellation at hand; whatever it returns as an error drops the reservation, so a failed
//! or cancelled task leaves neither a volume nor a staging file.

use std::sync::Arc;

use serde_json::json;

use super::storage::{task_failure, volume_location, write_failure};
use crate::api::{ApiError, App};
use crate::storage::{IncomingFile, Progress, Storage, StorageError};
use crate::store::{Object, TaskRecord};
use crate::tasks::{TaskFailure, TaskFuture};

/// What a storage error means for the task: a cancel, a full disk (507's problem), or the
/// error's own problem.
pub(super) fn storage_failure(pool: &str, e: StorageError) -> TaskFailure {
    match e {
        StorageError::Conflict(m) if m == "cancelled" => TaskFailure::Cancelled,
        e @ StorageError::Io { .. } => {
            let a = write_failure(pool, e);
            TaskFailure::failed(a.kind, a.title, a.detail)
        }
        e => task_failure(e),
    }
}

/// Spawns task `kind` that runs `work` (on a blocking thread) to fill `incoming`; `work`
/// returns the finished volume's row.
pub(super) fn spawn<W>(
    app: &App,
    kind: &str,
    user: &str,
    incoming: IncomingFile,
    work: W,
) -> Result<TaskRecord, ApiError>
where
    W: FnOnce(&Storage, &IncomingFile, &Progress<'_>) -> Result<Object, TaskFailure>
        + Send
        + 'static,
{
    let st = Arc::clone(&app.storage);
    Ok(app.tasks.spawn(
        kind,
        Some(volume_location(&incoming.volid)),
        user,
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
                    let made = work(&st, &incoming, &progress);
                    if made.is_err() {
                        st.abort_file(&incoming);
                    }
                    made
                })
                .await
                .map_err(|e| TaskFailure::failed("internal", "Internal error", e.to_string()))?;
                let o = r?;
                ctx.log(format!("{} is ready", o.id));
                Ok(json!({"volid": o.id, "sha256": o.body["sha256"], "size": o.body["size"]}))
            })
        },
    )?)
}
