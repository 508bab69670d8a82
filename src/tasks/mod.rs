//! Long-running operations: a state machine persisted in the store, a bounded worker pool,
//! live log fan-out, waiting and cancellation.
//!
//! A handler that starts long work calls [`TaskManager::spawn`] and answers `202 Accepted`
//! with the task. State and log lines are written to the store as they happen, so both
//! survive a daemon restart; tasks that were running when the daemon died are marked failed
//! at the next start (their work did not finish, and pretending otherwise would lie).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{broadcast, watch, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::store::tasks as db;
use crate::store::{LogLine, Store, StoreError, TaskRecord};

/// Tasks allowed to run at once; the rest wait in the queue.
pub const WORKERS: usize = 4;
/// Tasks allowed to wait; beyond this the API answers 503 with Retry-After.
pub const MAX_QUEUED: usize = 256;

/// Errors from the task manager.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("too many tasks are queued ({0}); retry later")]
    Busy(usize),
    #[error("task '{0}' does not exist")]
    NotFound(String),
    #[error("task '{0}' has already finished")]
    Finished(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a task's work ended, other than success.
#[derive(Debug, Clone)]
pub enum TaskFailure {
    /// The work saw the cancellation and stopped.
    Cancelled,
    /// The work failed; this becomes the task's problem object.
    Failed {
        /// Last path segment of the problem type URI (`https://ferrite.dev/problems/<kind>`).
        kind: String,
        title: String,
        detail: String,
        status: u16,
    },
}

impl TaskFailure {
    /// A failure with status 422 (valid request, impossible to carry out).
    pub fn failed(kind: &str, title: &str, detail: impl Into<String>) -> Self {
        TaskFailure::Failed {
            kind: kind.to_string(),
            title: title.to_string(),
            detail: detail.into(),
            status: 422,
        }
    }

    fn problem(&self, task_id: &str) -> Value {
        match self {
            TaskFailure::Cancelled => json!({
                "type": "https://ferrite.dev/problems/task-cancelled", "title": "Task cancelled",
                "status": 409, "detail": "the task was cancelled before it finished",
                "instance": format!("{}/tasks/{task_id}", crate::API_PREFIX)}),
            TaskFailure::Failed {
                kind,
                title,
                detail,
                status,
            } => json!({
                "type": format!("https://ferrite.dev/problems/{kind}"), "title": title,
                "status": status, "detail": detail,
                "instance": format!("{}/tasks/{task_id}", crate::API_PREFIX)}),
        }
    }
}

/// The future a task runs.
pub type TaskFuture = Pin<Box<dyn Future<Output = Result<Value, TaskFailure>> + Send>>;

struct Live {
    state: watch::Sender<String>,
    log: broadcast::Sender<LogLine>,
    cancel: CancellationToken,
}

/// What a task's work gets: logging and the cancellation signal.
#[derive(Clone)]
pub struct TaskContext {
    id: String,
    store: Arc<Store>,
    log: broadcast::Sender<LogLine>,
    cancel: CancellationToken,
}

impl TaskContext {
    /// The task id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn append(&self, level: &str, msg: &str) {
        match self
            .store
            .write(|tx| db::append_log(tx, &self.id, level, msg))
        {
            Ok(line) => {
                let _ = self.log.send(line);
            }
            Err(e) => {
                tracing::warn!(task = %self.id, error = %e, "could not persist task log line")
            }
        }
    }

    /// Appends an info line to the task log.
    pub fn log(&self, msg: impl AsRef<str>) {
        self.append("info", msg.as_ref());
    }

    /// Appends a warning to the task log.
    pub fn warn(&self, msg: impl AsRef<str>) {
        self.append("warn", msg.as_ref());
    }

    /// The cancellation token; long work checks it between steps.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

/// Runs and tracks tasks.
pub struct TaskManager {
    store: Arc<Store>,
    live: Mutex<HashMap<String, Live>>,
    workers: Arc<Semaphore>,
    queued: AtomicUsize,
}

impl TaskManager {
    /// Creates the manager and marks tasks a previous process left unfinished as failed.
    pub fn new(store: Arc<Store>) -> Result<Arc<Self>, StoreError> {
        let stale = store.read(db::unfinished_tasks)?;
        for mut t in stale {
            t.state = "failed".into();
            t.finished_at = Some(crate::time::now_unix());
            t.problem = Some(json!({
                "type": "https://ferrite.dev/problems/task-interrupted",
                "title": "Task interrupted",
                "status": 503,
                "detail": "ferrited stopped while this task was queued or running; check the object's state and retry",
                "instance": format!("{}/tasks/{}", crate::API_PREFIX, t.id),
            }));
            store.write(|tx| {
                db::append_log(
                    tx,
                    &t.id,
                    "error",
                    "interrupted: ferrited restarted before the task finished",
                )?;
                db::update_task(tx, &t)
            })?;
            tracing::warn!(task = %t.id, "marked interrupted task as failed");
        }
        Ok(Arc::new(TaskManager {
            store,
            live: Mutex::new(HashMap::new()),
            workers: Arc::new(Semaphore::new(WORKERS)),
            queued: AtomicUsize::new(0),
        }))
    }

    /// Queues `work` as a new task and returns the task in state `queued`.
    pub fn spawn(
        self: &Arc<Self>,
        kind: &str,
        object: Option<String>,
        user: &str,
        work: impl FnOnce(TaskContext) -> TaskFuture + Send + 'static,
    ) -> Result<TaskRecord, TaskError> {
        let q = self.queued.fetch_add(1, Ordering::SeqCst);
        if q >= MAX_QUEUED {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(TaskError::Busy(q));
        }
        let rec = TaskRecord {
            id: uuid::Uuid::now_v7().to_string(),
            kind: kind.to_string(),
            object,
            user: user.to_string(),
            state: "queued".into(),
            created_at: crate::time::now_unix(),
            started_at: None,
            finished_at: None,
            cancel_requested: false,
            result: None,
            problem: None,
        };
        if let Err(e) = self.store.write(|tx| db::insert_task(tx, &rec)) {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(e.into());
        }
        let (state_tx, _) = watch::channel("queued".to_string());
        let (log_tx, _) = broadcast::channel(256);
        let cancel = CancellationToken::new();
        if let Ok(mut live) = self.live.lock() {
            live.insert(
                rec.id.clone(),
                Live {
                    state: state_tx,
                    log: log_tx.clone(),
                    cancel: cancel.clone(),
                },
            );
        }
        let ctx = TaskContext {
            id: rec.id.clone(),
            store: Arc::clone(&self.store),
            log: log_tx,
            cancel: cancel.clone(),
        };
        let me = Arc::clone(self);
        let mut task = rec.clone();
        tokio::spawn(async move {
            let permit = tokio::select! {
                p = Arc::clone(&me.workers).acquire_owned() => p.ok(),
                _ = cancel.cancelled() => None,
            };
            me.queued.fetch_sub(1, Ordering::SeqCst);
            let outcome = match permit {
                Some(_permit) if !cancel.is_cancelled() => {
                    task.state = "running".into();
                    task.started_at = Some(crate::time::now_unix());
                    me.persist(&task);
                    me.publish_state(&task.id, "running");
                    ctx.log(format!("task {} started", task.kind));
                    let out = work(ctx.clone()).await;
                    // A cancel that arrives after the work finished does not undo it.
                    out
                }
                _ => Err(TaskFailure::Cancelled),
            };
            task.finished_at = Some(crate::time::now_unix());
            task.cancel_requested = cancel.is_cancelled();
            match outcome {
                Ok(result) => {
                    task.state = "succeeded".into();
                    task.result = Some(result);
                    ctx.log("TASK OK");
                }
                Err(f) => {
                    task.state = match f {
                        TaskFailure::Cancelled => "cancelled".into(),
                        TaskFailure::Failed { .. } => "failed".into(),
                    };
                    let p = f.problem(&task.id);
                    ctx.append(
                        "error",
                        &format!(
                            "TASK {}: {}",
                            task.state.to_uppercase(),
                            p["detail"].as_str().unwrap_or_default()
                        ),
                    );
                    task.problem = Some(p);
                }
            }
            me.persist(&task);
            me.publish_state(&task.id, &task.state);
            if let Ok(mut live) = me.live.lock() {
                live.remove(&task.id);
            }
        });
        Ok(rec)
    }

    fn persist(&self, t: &TaskRecord) {
        if let Err(e) = self.store.write(|tx| db::update_task(tx, t)) {
            tracing::error!(task = %t.id, error = %e, "could not persist task state");
        }
    }

    fn publish_state(&self, id: &str, state: &str) {
        if let Ok(live) = self.live.lock() {
            if let Some(l) = live.get(id) {
                let _ = l.state.send(state.to_string());
            }
        }
    }

    /// Reads a task.
    pub fn get(&self, id: &str) -> Result<TaskRecord, TaskError> {
        self.store
            .read(|c| db::get_task(c, id))?
            .ok_or_else(|| TaskError::NotFound(id.to_string()))
    }

    /// Waits up to `timeout` for a task to finish and returns its latest state.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<TaskRecord, TaskError> {
        let rx = self
            .live
            .lock()
            .ok()
            .and_then(|l| l.get(id).map(|t| t.state.subscribe()));
        if let Some(mut rx) = rx {
            let _ = tokio::time::timeout(timeout, async {
                loop {
                    let s = rx.borrow_and_update().clone();
                    if matches!(s.as_str(), "succeeded" | "failed" | "cancelled") {
                        break;
                    }
                    if rx.changed().await.is_err() {
                        break;
                    }
                }
            })
            .await;
        }
        self.get(id)
    }

    /// Requests cancellation; the task ends as `cancelled` once its work notices.
    pub fn cancel(&self, id: &str) -> Result<TaskRecord, TaskError> {
        let mut t = self.get(id)?;
        if t.is_finished() {
            return Err(TaskError::Finished(id.to_string()));
        }
        if let Ok(live) = self.live.lock() {
            if let Some(l) = live.get(id) {
                l.cancel.cancel();
            }
        }
        t.cancel_requested = true;
        self.store.write(|tx| {
            tx.execute("UPDATE tasks SET cancel_requested = 1 WHERE id = ?1", [id])
                .map_err(StoreError::from)
        })?;
        Ok(t)
    }

    /// Subscribes to a running task's new log lines (None when it is not running here).
    pub fn subscribe_log(&self, id: &str) -> Option<broadcast::Receiver<LogLine>> {
        self.live.lock().ok()?.get(id).map(|l| l.log.subscribe())
    }

    /// Subscribes to a running task's state changes.
    pub fn subscribe_state(&self, id: &str) -> Option<watch::Receiver<String>> {
        self.live.lock().ok()?.get(id).map(|l| l.state.subscribe())
    }

    /// Cancels every live task (daemon shutdown) and waits briefly for them to stop.
    pub async fn shutdown(&self, grace: Duration) {
        let ids: Vec<String> = self
            .live
            .lock()
            .map(|l| {
                l.values().for_each(|t| t.cancel.cancel());
                l.keys().cloned().collect()
            })
            .unwrap_or_default();
        for id in ids {
            let _ = self.wait(&id, grace).await;
        }
    }
}
