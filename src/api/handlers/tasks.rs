//! Tasks: list, view (with `?wait`), cancel, and the log stream (JSON lines or SSE).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::json;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::paging;
use crate::api::{ApiError, App, Req, Resp};
use crate::store::{tasks as db, LogLine, TaskFilter, TaskRecord};

fn load(app: &App, req: &Req) -> Result<TaskRecord, ApiError> {
    let t = app.tasks.get(req.param("id"))?;
    req.require_owner_or_privileged(&t.user, "this task")?;
    Ok(t)
}

pub async fn list(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let mut f = TaskFilter {
        state: req.query_str("state").map(String::from),
        kind: req.query_str("type").map(String::from),
        user: req.query_str("user").map(String::from),
        after: paging::decode_token(&req)?,
        limit: req.query_i64("limit").unwrap_or(100) as usize,
    };
    if !req.privileged {
        f.user = Some(req.principal()?.user.clone());
    }
    let (items, next) = app.store.read(|c| db::list_tasks(c, &f))?;
    Ok(paging::list_response(
        items.iter().map(TaskRecord::to_api).collect(),
        next,
    ))
}

pub async fn view(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let mut t = load(&app, &req)?;
    if let Some(w) = req.query_i64("wait") {
        if !t.is_finished() && w > 0 {
            t = app.tasks.wait(&t.id, Duration::from_secs(w as u64)).await?;
        }
    }
    Ok(Resp::json(200, &t.to_api()))
}

pub async fn cancel(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let t = load(&app, &req)?;
    let t = app.tasks.cancel(&t.id)?;
    Ok(Resp::json(202, &t.to_api()).location(format!("{}/tasks/{}", crate::API_PREFIX, t.id)))
}

type Tx = mpsc::Sender<Result<Frame<Bytes>, Infallible>>;

async fn send_line(tx: &Tx, sse: bool, line: &LogLine) -> bool {
    let data = line.to_api().to_string();
    let chunk = if sse {
        format!("id: {}\nevent: log\ndata: {data}\n\n", line.seq)
    } else {
        format!("{data}\n")
    };
    tx.send(Ok(Frame::data(Bytes::from(chunk)))).await.is_ok()
}

/// `GET /tasks/{id}/log`. Lines already written come first; with `follow` the stream stays
/// open until the task finishes. SSE ends with an `end` event carrying the final task.
pub async fn log(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let t = load(&app, &req)?;
    let sse = req
        .accept
        .as_deref()
        .is_some_and(|a| a.contains("text/event-stream"));
    let follow = req.query_bool("follow").unwrap_or(sse);
    let since = req.query_i64("since").unwrap_or(0);
    let mut sub = if follow {
        app.tasks.subscribe_log(&t.id)
    } else {
        None
    };
    let (tx, rx) = mpsc::channel(64);
    let id = t.id.clone();
    tokio::spawn(async move {
        let mut last = since;
        let backlog = app
            .store
            .read(|c| db::read_log(c, &id, last))
            .unwrap_or_default();
        for l in &backlog {
            if !send_line(&tx, sse, l).await {
                return;
            }
            last = l.seq;
        }
        if let Some(sub) = sub.as_mut() {
            loop {
                match sub.recv().await {
                    Ok(l) if l.seq > last => {
                        if !send_line(&tx, sse, &l).await {
                            return;
                        }
                        last = l.seq;
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        for l in app
                            .store
                            .read(|c| db::read_log(c, &id, last))
                            .unwrap_or_default()
                        {
                            if !send_line(&tx, sse, &l).await {
                                return;
                            }
                            last = l.seq;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
            // The task finished: flush anything written after the channel closed.
            for l in app
                .store
                .read(|c| db::read_log(c, &id, last))
                .unwrap_or_default()
            {
                if !send_line(&tx, sse, &l).await {
                    return;
                }
            }
        }
        if sse {
            let fin = app
                .tasks
                .get(&id)
                .map(|t| t.to_api())
                .unwrap_or(json!(null));
            let _ = tx
                .send(Ok(Frame::data(Bytes::from(format!(
                    "event: end\ndata: {fin}\n\n"
                )))))
                .await;
        }
    });
    let body = StreamBody::new(ReceiverStream::new(rx)).boxed();
    let mut r = Resp::stream(
        if sse {
            "text/event-stream"
        } else {
            "application/jsonl"
        },
        body,
    );
    r.headers.push(("cache-control", "no-cache".into()));
    Ok(r)
}
