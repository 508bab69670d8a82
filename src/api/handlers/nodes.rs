//! Nodes: host facts and the online store backup task.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::paging;
use crate::api::{ApiError, App, Req, Resp};
use crate::tasks::{TaskContext, TaskFailure, TaskFuture};

fn check_node(app: &App, req: &Req) -> Result<(), ApiError> {
    let n = req.param("node");
    if n != app.node && n != "localhost" {
        return Err(ApiError::not_found(format!(
            "node '{n}' does not exist; this node is '{}'",
            app.node
        )));
    }
    Ok(())
}

pub async fn list(app: Arc<App>, _req: Req) -> Result<Resp, ApiError> {
    Ok(paging::list_response(
        vec![json!({"node": app.node, "status": "online"})],
        None,
    ))
}

pub async fn view(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    check_node(&app, &req)?;
    let mut facts = tokio::task::spawn_blocking(crate::node::facts)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    facts["node"] = json!(app.node);
    let templates = crate::templates::Templates::at(&app.data_dir);
    facts["problems"] = json!(crate::helpers::problems(&[
        app.containers.helper(),
        app.vms.vmm_helper(),
        app.vms.qemu_helper(),
        templates.builder(),
    ]));
    Ok(Resp::json(200, &facts))
}

/// Copies the live store page by page with SQLite's online backup API, checking for
/// cancellation between steps, then renames the finished file into place.
fn run_backup(
    ctx: TaskContext,
    src: std::path::PathBuf,
    dest: std::path::PathBuf,
    pages: i32,
    pause: Duration,
) -> Result<serde_json::Value, TaskFailure> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        TaskFailure::failed(
            "store-backup-failed",
            "Store backup failed",
            format!("{what}: {e}"),
        )
    };
    let tmp = dest.with_extension("partial");
    let result = (|| {
        let from =
            rusqlite::Connection::open_with_flags(&src, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(|e| fail("opening the store", &e))?;
        let mut to = rusqlite::Connection::open(&tmp)
            .map_err(|e| fail(&format!("creating {}", tmp.display()), &e))?;
        let backup = rusqlite::backup::Backup::new(&from, &mut to)
            .map_err(|e| fail("starting the backup", &e))?;
        let mut steps = 0u64;
        loop {
            if ctx.cancel_token().is_cancelled() {
                return Err(TaskFailure::Cancelled);
            }
            let r = backup.step(pages).map_err(|e| fail("copying pages", &e))?;
            steps += 1;
            let p = backup.progress();
            if steps % 16 == 1 || matches!(r, rusqlite::backup::StepResult::Done) {
                ctx.log(format!(
                    "copied {} of {} pages",
                    p.pagecount - p.remaining,
                    p.pagecount
                ));
            }
            match r {
                rusqlite::backup::StepResult::Done => return Ok(p.pagecount),
                _ => std::thread::sleep(pause.max(Duration::from_millis(
                    if matches!(r, rusqlite::backup::StepResult::More) {
                        0
                    } else {
                        10
                    },
                ))),
            }
        }
    })();
    match result {
        Ok(pagecount) => {
            std::fs::rename(&tmp, &dest).map_err(|e| fail("renaming the finished backup", &e))?;
            let size = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
            ctx.log(format!("wrote {} ({size} bytes)", dest.display()));
            Ok(json!({"path": dest.display().to_string(), "size_bytes": size, "pages": pagecount}))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            if matches!(e, TaskFailure::Cancelled) {
                ctx.warn("cancelled; removed the partial backup");
            }
            Err(e)
        }
    }
}

pub async fn store_backup(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    check_node(&app, &req)?;
    let p = req.principal()?.clone();
    let name = match req.body["name"].as_str() {
        Some(n) => n.to_string(),
        None => format!("store-{}", crate::time::now_rfc3339().replace(':', "")),
    };
    let dir = app.data_dir.join("backups");
    std::fs::create_dir_all(&dir)
        .map_err(|e| ApiError::internal(format!("creating {}: {e}", dir.display())))?;
    let dest = dir.join(format!("{name}.sqlite"));
    if dest.exists() {
        return Err(ApiError::conflict(format!(
            "a store backup named '{name}' already exists"
        )));
    }
    let pages = req.body["pages_per_step"].as_i64().unwrap_or(1024) as i32;
    let pause = Duration::from_millis(req.body["step_pause_ms"].as_u64().unwrap_or(0));
    let src = app.store.path().to_path_buf();
    let object = format!("{}/nodes/{}", crate::API_PREFIX, app.node);
    let task = app.tasks.spawn(
        "store_backup",
        Some(object),
        &p.user,
        move |ctx| -> TaskFuture {
            Box::pin(async move {
                tokio::task::spawn_blocking(move || run_backup(ctx, src, dest, pages, pause))
                    .await
                    .map_err(|e| {
                        TaskFailure::failed(
                            "store-backup-failed",
                            "Store backup failed",
                            e.to_string(),
                        )
                    })?
            })
        },
    )?;
    let mut t = task;
    if let Some(w) = req.query_i64("wait").filter(|w| *w > 0) {
        t = app.tasks.wait(&t.id, Duration::from_secs(w as u64)).await?;
    }
    Ok(Resp::json(202, &t.to_api()).location(format!("{}/tasks/{}", crate::API_PREFIX, t.id)))
}
