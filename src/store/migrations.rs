//! Schema migrations, applied in order and tracked in `PRAGMA user_version`.

use rusqlite::Connection;

use super::StoreError;

/// Each entry moves the database from version `i` to `i + 1`. Never edit a released entry;
/// append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: objects, tags, id sequences, tasks and their logs, idempotency keys, audit log.
    r#"
    CREATE TABLE objects (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        name TEXT NOT NULL,
        owner TEXT,
        revision INTEGER NOT NULL,
        body TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (kind, id)
    ) WITHOUT ROWID;
    CREATE INDEX objects_name ON objects(kind, name);
    CREATE INDEX objects_owner ON objects(kind, owner);
    CREATE TABLE object_tags (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        tag TEXT NOT NULL,
        PRIMARY KEY (kind, tag, id),
        FOREIGN KEY (kind, id) REFERENCES objects(kind, id) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE INDEX object_tags_obj ON object_tags(kind, id);
    CREATE TABLE secrets (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        hash TEXT NOT NULL,
        PRIMARY KEY (kind, id)
    ) WITHOUT ROWID;
    CREATE TABLE sequences (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        object TEXT,
        user TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        started_at INTEGER,
        finished_at INTEGER,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        result TEXT,
        problem TEXT
    );
    CREATE INDEX tasks_state ON tasks(state);
    CREATE TABLE task_log (
        task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        time INTEGER NOT NULL,
        level TEXT NOT NULL,
        message TEXT NOT NULL,
        PRIMARY KEY (task_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE idempotency (
        user TEXT NOT NULL,
        key TEXT NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        body_hash TEXT NOT NULL,
        status INTEGER NOT NULL,
        headers TEXT NOT NULL,
        body BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (user, key)
    ) WITHOUT ROWID;
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time INTEGER NOT NULL,
        request_id TEXT NOT NULL,
        user TEXT,
        token_id TEXT,
        source TEXT NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        status INTEGER NOT NULL
    );
    CREATE INDEX audit_user ON audit(user);
    "#,
    // 2: which objects name which others (bridge ports, bond members, VLAN parents), so
    // "who uses X" is an index lookup instead of a scan of every object.
    r#"
    CREATE TABLE object_refs (
        ref TEXT NOT NULL,
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        PRIMARY KEY (ref, kind, id),
        FOREIGN KEY (kind, id) REFERENCES objects(kind, id) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE INDEX object_refs_obj ON object_refs(kind, id);
    "#,
];

/// Brings the database to the newest version, each step in its own transaction.
pub(super) fn run(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied store migration");
    }
    Ok(())
}
