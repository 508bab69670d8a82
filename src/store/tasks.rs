//! Persisted tasks and their logs, so both survive a daemon restart.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde_json::{json, Value};

use super::StoreError;
use crate::time::unix_to_rfc3339;

/// A task row.
#[derive(Debug, Clone)]
pub struct TaskRecord {
    pub id: String,
    pub kind: String,
    pub object: Option<String>,
    pub user: String,
    pub state: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub cancel_requested: bool,
    pub result: Option<Value>,
    pub problem: Option<Value>,
}

impl TaskRecord {
    /// The API representation (schema `Task`).
    pub fn to_api(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "type": self.kind,
            "object": self.object,
            "state": self.state,
            "user": self.user,
            "created_at": unix_to_rfc3339(self.created_at),
            "started_at": self.started_at.map(unix_to_rfc3339),
            "finished_at": self.finished_at.map(unix_to_rfc3339),
            "cancel_requested": self.cancel_requested,
            "problem": self.problem,
        });
        if let Some(r) = &self.result {
            v["result"] = r.clone();
        }
        v
    }

    /// Whether the task has reached a final state.
    pub fn is_finished(&self) -> bool {
        matches!(self.state.as_str(), "succeeded" | "failed" | "cancelled")
    }
}

/// A task log line.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub seq: i64,
    pub time: i64,
    pub level: String,
    pub message: String,
}

impl LogLine {
    /// The API representation (schema `TaskLogLine`).
    pub fn to_api(&self) -> Value {
        json!({"seq": self.seq, "time": unix_to_rfc3339(self.time), "level": self.level, "message": self.message})
    }
}

/// Filters for the task list.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub state: Option<String>,
    pub kind: Option<String>,
    pub user: Option<String>,
    /// Continue after this id; ids are time-ordered (UUIDv7), newest pages come last.
    pub after: Option<String>,
    pub limit: usize,
}

const COLS: &str = "id, type, object, user, state, created_at, started_at, finished_at, cancel_requested, result, problem";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRecord> {
    let result: Option<String> = r.get(9)?;
    let problem: Option<String> = r.get(10)?;
    Ok(TaskRecord {
        id: r.get(0)?,
        kind: r.get(1)?,
        object: r.get(2)?,
        user: r.get(3)?,
        state: r.get(4)?,
        created_at: r.get(5)?,
        started_at: r.get(6)?,
        finished_at: r.get(7)?,
        cancel_requested: r.get(8)?,
        result: result.and_then(|s| serde_json::from_str(&s).ok()),
        problem: problem.and_then(|s| serde_json::from_str(&s).ok()),
    })
}

/// Inserts a new queued task.
pub fn insert_task(tx: &Transaction<'_>, t: &TaskRecord) -> Result<(), StoreError> {
    tx.prepare_cached(&format!(
        "INSERT INTO tasks ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    ))?
    .execute(params![
        t.id,
        t.kind,
        t.object,
        t.user,
        t.state,
        t.created_at,
        t.started_at,
        t.finished_at,
        t.cancel_requested,
        t.result.as_ref().map(Value::to_string),
        t.problem.as_ref().map(Value::to_string)
    ])?;
    Ok(())
}

/// Writes a task's state fields.
pub fn update_task(tx: &Transaction<'_>, t: &TaskRecord) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE tasks SET state = ?2, started_at = ?3, finished_at = ?4, cancel_requested = ?5, result = ?6, problem = ?7 WHERE id = ?1",
    )?
    .execute(params![
        t.id,
        t.state,
        t.started_at,
        t.finished_at,
        t.cancel_requested,
        t.result.as_ref().map(Value::to_string),
        t.problem.as_ref().map(Value::to_string)
    ])?;
    Ok(())
}

/// Reads one task.
pub fn get_task(conn: &Connection, id: &str) -> Result<Option<TaskRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLS} FROM tasks WHERE id = ?1"))?
        .query_row(params![id], row)
        .optional()?)
}

/// Lists tasks in id (creation) order.
pub fn list_tasks(
    conn: &Connection,
    f: &TaskFilter,
) -> Result<(Vec<TaskRecord>, Option<String>), StoreError> {
    let limit = f.limit.clamp(1, 1000);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLS} FROM tasks WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR type = ?2)
         AND (?3 IS NULL OR user = ?3) AND (?4 IS NULL OR id > ?4) ORDER BY id LIMIT ?5"
    ))?;
    let mut items = stmt
        .query_map(
            params![f.state, f.kind, f.user, f.after, (limit + 1) as i64],
            row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|t| t.id.clone())
    } else {
        None
    };
    Ok((items, next))
}

/// Tasks left queued or running by a previous daemon process.
pub fn unfinished_tasks(conn: &Connection) -> Result<Vec<TaskRecord>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLS} FROM tasks WHERE state IN ('queued', 'running')"
    ))?;
    let out = stmt.query_map([], row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(out)
}

/// Appends a log line, returning its sequence number.
pub fn append_log(
    tx: &Transaction<'_>,
    task: &str,
    level: &str,
    message: &str,
) -> Result<LogLine, StoreError> {
    let seq: i64 = tx
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM task_log WHERE task_id = ?1")?
        .query_row(params![task], |r| r.get(0))?;
    let time = crate::time::now_unix();
    tx.prepare_cached(
        "INSERT INTO task_log (task_id, seq, time, level, message) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![task, seq, time, level, message])?;
    Ok(LogLine {
        seq,
        time,
        level: level.to_string(),
        message: message.to_string(),
    })
}

/// Reads log lines after `since`.
pub fn read_log(conn: &Connection, task: &str, since: i64) -> Result<Vec<LogLine>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, time, level, message FROM task_log WHERE task_id = ?1 AND seq > ?2 ORDER BY seq",
    )?;
    let out = stmt
        .query_map(params![task, since], |r| {
            Ok(LogLine {
                seq: r.get(0)?,
                time: r.get(1)?,
                level: r.get(2)?,
                message: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(out)
}
