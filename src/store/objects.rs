//! Typed objects with revisions: one table for every kind, the body stored as JSON.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde_json::{Map, Value};

use super::StoreError;

/// A stored object.
#[derive(Debug, Clone)]
pub struct Object {
    pub kind: String,
    pub id: String,
    pub name: String,
    pub owner: Option<String>,
    pub revision: i64,
    pub body: Value,
    pub tags: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The API rendering, memoized: a cached object is an immutable snapshot of one
    /// revision, so hot GETs serialize it once.
    pub rendered: std::sync::OnceLock<bytes::Bytes>,
}

impl Object {
    /// The memoized rendering, produced by `render` on first use.
    pub fn rendered_with(&self, render: impl FnOnce(&Object) -> Value) -> bytes::Bytes {
        self.rendered
            .get_or_init(|| bytes::Bytes::from(render(self).to_string()))
            .clone()
    }

    /// The API representation: the body plus revision and timestamps.
    pub fn to_api(&self) -> Value {
        let mut v = match &self.body {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        v.insert("revision".into(), self.revision.into());
        v.insert(
            "created_at".into(),
            crate::time::unix_to_rfc3339(self.created_at).into(),
        );
        v.insert(
            "updated_at".into(),
            crate::time::unix_to_rfc3339(self.updated_at).into(),
        );
        Value::Object(v)
    }
}

/// The `tags` of a request or stored body, for the store's tag index.
/// Applies an update body to a stored one: fields present replace the stored ones, `null`
/// removes an optional field (the API's update convention).
pub fn merge_patch(body: &mut Value, patch: &Value) {
    if let (Some(m), Some(p)) = (body.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            if v.is_null() {
                m.remove(k);
            } else {
                m.insert(k.clone(), v.clone());
            }
        }
    }
}

pub fn tags_of(v: &Value) -> Vec<String> {
    v["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Filters and pagination for a list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Exact name, or a glob with `*` and `?`.
    pub name: Option<String>,
    pub tag: Option<String>,
    pub owner: Option<String>,
    /// Continue after this id (from the previous page).
    pub after: Option<String>,
    pub limit: usize,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Id to continue after, when there are more items.
    pub next: Option<String>,
}

const COLUMNS: &str = "kind, id, name, owner, revision, body, created_at, updated_at";
const COLUMNS_O: &str =
    "o.kind, o.id, o.name, o.owner, o.revision, o.body, o.created_at, o.updated_at";

fn row_to_object(conn: &Connection, row: &rusqlite::Row<'_>) -> Result<Object, StoreError> {
    let kind: String = row.get(0)?;
    let id: String = row.get(1)?;
    let body: String = row.get(5)?;
    let mut stmt = conn
        .prepare_cached("SELECT tag FROM object_tags WHERE kind = ?1 AND id = ?2 ORDER BY tag")?;
    let tags = stmt
        .query_map(params![kind, id], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Object {
        kind,
        id,
        name: row.get(2)?,
        owner: row.get(3)?,
        revision: row.get(4)?,
        body: serde_json::from_str(&body)?,
        tags,
        created_at: row.get(6)?,
        updated_at: row.get(7)?,
        rendered: std::sync::OnceLock::new(),
    })
}

/// Reads one object.
pub fn get(conn: &Connection, kind: &str, id: &str) -> Result<Option<Object>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM objects WHERE kind = ?1 AND id = ?2"
    ))?;
    let mut rows = stmt.query(params![kind, id])?;
    match rows.next()? {
        Some(row) => Ok(Some(row_to_object(conn, row)?)),
        None => Ok(None),
    }
}

/// Reads one object or fails with `NotFound`.
pub fn require(conn: &Connection, kind: &str, id: &str) -> Result<Object, StoreError> {
    get(conn, kind, id)?.ok_or_else(|| StoreError::NotFound {
        kind: kind.to_string(),
        id: id.to_string(),
    })
}

/// SQLite GLOB treats `[` as a class; users only get `*` and `?`.
fn glob(pattern: &str) -> String {
    pattern.replace('[', "[[]")
}

/// Lists objects of a kind in id order.
pub fn list(conn: &Connection, kind: &str, f: &ListFilter) -> Result<Page<Object>, StoreError> {
    let limit = f.limit.clamp(1, 10_000);
    let name = f.name.as_deref().map(glob);
    // With a tag, walk the tag index (kind, tag, id) in id order instead of testing every
    // object of the kind.
    let sql = if f.tag.is_some() {
        format!(
            "SELECT {COLUMNS_O} FROM object_tags t JOIN objects o ON o.kind = t.kind AND o.id = t.id
             WHERE t.kind = ?1 AND t.tag = ?3
               AND (?2 IS NULL OR o.name GLOB ?2)
               AND (?4 IS NULL OR o.owner = ?4)
               AND (?5 IS NULL OR t.id > ?5)
             ORDER BY t.id LIMIT ?6"
        )
    } else {
        format!(
            "SELECT {COLUMNS} FROM objects WHERE kind = ?1
               AND (?2 IS NULL OR name GLOB ?2)
               AND (?4 IS NULL OR owner = ?4)
               AND (?5 IS NULL OR id > ?5)
             ORDER BY id LIMIT ?6"
        )
    };
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params![
        kind,
        name,
        f.tag,
        f.owner,
        f.after,
        (limit + 1) as i64
    ])?;
    let mut items = Vec::new();
    while let Some(row) = rows.next()? {
        items.push(row_to_object(conn, row)?);
    }
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|o| o.id.clone())
    } else {
        None
    };
    Ok(Page { items, next })
}

fn set_tags(tx: &Transaction<'_>, kind: &str, id: &str, tags: &[String]) -> Result<(), StoreError> {
    tx.prepare_cached("DELETE FROM object_tags WHERE kind = ?1 AND id = ?2")?
        .execute(params![kind, id])?;
    let mut ins =
        tx.prepare_cached("INSERT OR IGNORE INTO object_tags (kind, id, tag) VALUES (?1, ?2, ?3)")?;
    for t in tags {
        ins.execute(params![kind, id, t])?;
    }
    Ok(())
}

/// Creates an object at revision 1; fails with `Exists` if the id is taken.
pub fn insert(
    tx: &Transaction<'_>,
    kind: &str,
    id: &str,
    name: &str,
    owner: Option<&str>,
    body: &Value,
    tags: &[String],
) -> Result<Object, StoreError> {
    let now = crate::time::now_unix();
    let n = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO objects (kind, id, name, owner, revision, body, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?6)",
        )?
        .execute(params![kind, id, name, owner, body.to_string(), now])?;
    if n == 0 {
        return Err(StoreError::Exists {
            kind: kind.to_string(),
            id: id.to_string(),
        });
    }
    set_tags(tx, kind, id, tags)?;
    require(tx, kind, id)
}

fn check_revision(
    tx: &Transaction<'_>,
    kind: &str,
    id: &str,
    expected: Option<i64>,
) -> Result<Object, StoreError> {
    let cur = require(tx, kind, id)?;
    if let Some(exp) = expected {
        if exp != cur.revision {
            return Err(StoreError::RevisionMismatch {
                kind: kind.to_string(),
                id: id.to_string(),
                expected: exp,
                actual: cur.revision,
            });
        }
    }
    Ok(cur)
}

/// Replaces an object's body and tags, bumping its revision. `expected` is the If-Match value.
pub fn update(
    tx: &Transaction<'_>,
    kind: &str,
    id: &str,
    expected: Option<i64>,
    body: &Value,
    tags: &[String],
) -> Result<Object, StoreError> {
    check_revision(tx, kind, id, expected)?;
    tx.prepare_cached(
        "UPDATE objects SET body = ?3, revision = revision + 1, updated_at = ?4 WHERE kind = ?1 AND id = ?2",
    )?
    .execute(params![kind, id, body.to_string(), crate::time::now_unix()])?;
    set_tags(tx, kind, id, tags)?;
    require(tx, kind, id)
}

/// Deletes an object (and its tags and secret).
pub fn delete(
    tx: &Transaction<'_>,
    kind: &str,
    id: &str,
    expected: Option<i64>,
) -> Result<Object, StoreError> {
    let cur = check_revision(tx, kind, id, expected)?;
    tx.prepare_cached("DELETE FROM objects WHERE kind = ?1 AND id = ?2")?
        .execute(params![kind, id])?;
    tx.prepare_cached("DELETE FROM secrets WHERE kind = ?1 AND id = ?2")?
        .execute(params![kind, id])?;
    Ok(cur)
}

/// Records the names an object refers to (replacing earlier ones).
pub fn set_refs(
    tx: &Transaction<'_>,
    kind: &str,
    id: &str,
    refs: &[String],
) -> Result<(), StoreError> {
    tx.prepare_cached("DELETE FROM object_refs WHERE kind = ?1 AND id = ?2")?
        .execute(params![kind, id])?;
    let mut ins =
        tx.prepare_cached("INSERT OR IGNORE INTO object_refs (ref, kind, id) VALUES (?1, ?2, ?3)")?;
    for r in refs {
        ins.execute(params![r, kind, id])?;
    }
    Ok(())
}

/// Objects that refer to `name`, as (kind, id).
pub fn referrers(conn: &Connection, name: &str) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT kind, id FROM object_refs WHERE ref = ?1 ORDER BY kind, id")?;
    let out = stmt
        .query_map(params![name], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(out)
}

/// Allocates the next value of a named sequence (ids that never repeat, even after deletes).
pub fn next_id(tx: &Transaction<'_>, name: &str) -> Result<i64, StoreError> {
    tx.prepare_cached(
        "INSERT INTO sequences (name, value) VALUES (?1, 1)
         ON CONFLICT(name) DO UPDATE SET value = value + 1",
    )?
    .execute(params![name])?;
    Ok(tx
        .prepare_cached("SELECT value FROM sequences WHERE name = ?1")?
        .query_row(params![name], |r| r.get(0))?)
}

/// Stores a secret hash (password or token) beside an object, never in its body.
pub fn set_secret(
    tx: &Transaction<'_>,
    kind: &str,
    id: &str,
    hash: &str,
) -> Result<(), StoreError> {
    tx.prepare_cached("INSERT OR REPLACE INTO secrets (kind, id, hash) VALUES (?1, ?2, ?3)")?
        .execute(params![kind, id, hash])?;
    Ok(())
}

/// Reads a secret hash.
pub fn get_secret(conn: &Connection, kind: &str, id: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT hash FROM secrets WHERE kind = ?1 AND id = ?2")?
        .query_row(params![kind, id], |r| r.get(0))
        .optional()?)
}

/// Every object of a kind (for in-memory snapshots such as the ACL state).
pub fn all(conn: &Connection, kind: &str) -> Result<Vec<Object>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM objects WHERE kind = ?1 ORDER BY id"
    ))?;
    let mut rows = stmt.query(params![kind])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(row_to_object(conn, row)?);
    }
    Ok(out)
}
