//! Stored responses for `Idempotency-Key`, so a retried create returns the first result.

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::StoreError;

/// A response as first sent.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    pub status: u16,
    /// Header name/value pairs worth replaying (Location, ETag, Content-Type).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// An idempotency record: which request a key was first used for, and its response.
#[derive(Debug, Clone)]
pub struct IdempotencyRecord {
    pub method: String,
    pub path: String,
    pub body_hash: String,
    pub response: StoredResponse,
}

/// Looks up a key for a user.
pub fn get(
    conn: &Connection,
    user: &str,
    key: &str,
) -> Result<Option<IdempotencyRecord>, StoreError> {
    let rec = conn
        .prepare_cached(
            "SELECT method, path, body_hash, status, headers, body FROM idempotency WHERE user = ?1 AND key = ?2",
        )?
        .query_row(params![user, key], |r| {
            let headers: String = r.get(4)?;
            Ok(IdempotencyRecord {
                method: r.get(0)?,
                path: r.get(1)?,
                body_hash: r.get(2)?,
                response: StoredResponse {
                    status: r.get(3)?,
                    headers: serde_json::from_str(&headers).unwrap_or_default(),
                    body: r.get(5)?,
                },
            })
        })
        .optional()?;
    Ok(rec)
}

/// Records the response for a key.
pub fn put(
    tx: &Transaction<'_>,
    user: &str,
    key: &str,
    rec: &IdempotencyRecord,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO idempotency (user, key, method, path, body_hash, status, headers, body, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        user,
        key,
        rec.method,
        rec.path,
        rec.body_hash,
        rec.response.status,
        serde_json::to_string(&rec.response.headers)?,
        rec.response.body,
        crate::time::now_unix()
    ])?;
    Ok(())
}

/// Forgets keys older than `max_age_secs`.
pub fn expire(tx: &Transaction<'_>, max_age_secs: i64) -> Result<usize, StoreError> {
    Ok(tx.execute(
        "DELETE FROM idempotency WHERE created_at < ?1",
        params![crate::time::now_unix() - max_age_secs],
    )?)
}
