//! The audit log: one row per mutating request.

use rusqlite::{params, Connection, Transaction};
use serde_json::{json, Value};

use super::StoreError;

/// One audited request.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub seq: i64,
    pub time: i64,
    pub request_id: String,
    pub user: Option<String>,
    pub token_id: Option<String>,
    pub source: String,
    pub method: String,
    pub path: String,
    pub status: u16,
}

impl AuditRecord {
    /// The API representation (schema `AuditEntry`).
    pub fn to_api(&self) -> Value {
        json!({
            "seq": self.seq, "time": crate::time::unix_to_rfc3339(self.time),
            "request_id": self.request_id, "user": self.user, "token_id": self.token_id,
            "source": self.source, "method": self.method, "path": self.path, "status": self.status
        })
    }
}

/// Filter for reading the log (newest first).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub user: Option<String>,
    /// Continue below this sequence number.
    pub before: Option<i64>,
    pub limit: usize,
}

/// Appends records.
pub fn append(tx: &Transaction<'_>, recs: &[AuditRecord]) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO audit (time, request_id, user, token_id, source, method, path, status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for r in recs {
        stmt.execute(params![
            r.time,
            r.request_id,
            r.user,
            r.token_id,
            r.source,
            r.method,
            r.path,
            r.status
        ])?;
    }
    Ok(())
}

/// Reads the log, newest first.
pub fn list(
    conn: &Connection,
    f: &AuditFilter,
) -> Result<(Vec<AuditRecord>, Option<i64>), StoreError> {
    let limit = f.limit.clamp(1, 1000);
    let mut stmt = conn.prepare_cached(
        "SELECT seq, time, request_id, user, token_id, source, method, path, status FROM audit
         WHERE (?1 IS NULL OR user = ?1) AND (?2 IS NULL OR seq < ?2) ORDER BY seq DESC LIMIT ?3",
    )?;
    let mut items = stmt
        .query_map(params![f.user, f.before, (limit + 1) as i64], |r| {
            Ok(AuditRecord {
                seq: r.get(0)?,
                time: r.get(1)?,
                request_id: r.get(2)?,
                user: r.get(3)?,
                token_id: r.get(4)?,
                source: r.get(5)?,
                method: r.get(6)?,
                path: r.get(7)?,
                status: r.get(8)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|r| r.seq)
    } else {
        None
    };
    Ok((items, next))
}
