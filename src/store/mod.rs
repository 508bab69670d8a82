//! The daemon's store: SQLite in WAL mode, one writer, a small pool of readers.
//!
//! Desired state lives here. Every mutation runs in one transaction on the single writer
//! connection, so id allocation and revision checks cannot race. Objects carry a revision that
//! the API exposes as the ETag.

pub mod audit;
pub mod idempotency;
pub mod list_index;
mod migrations;
pub mod objects;
pub mod tasks;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use audit::{AuditFilter, AuditRecord};
pub use idempotency::{IdempotencyRecord, StoredResponse};
pub use objects::{ListFilter, Object, Page};
pub use tasks::{LogLine, TaskFilter, TaskRecord};

/// Errors from the store. The API maps each to one HTTP status in one place.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} '{id}' does not exist")]
    NotFound { kind: String, id: String },
    #[error("{kind} '{id}' already exists")]
    Exists { kind: String, id: String },
    #[error("{kind} '{id}' is at revision {actual}, not {expected}")]
    RevisionMismatch {
        kind: String,
        id: String,
        expected: i64,
        actual: i64,
    },
    #[error("the store is busy")]
    Busy,
    #[error("store query failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored object is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("opening the store at {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

impl StoreError {
    /// SQLITE_BUSY/LOCKED become `Busy`, so the API answers 503 with Retry-After.
    fn classify(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked) => {
                StoreError::Busy
            }
            _ => StoreError::Sqlite(e),
        }
    }
}

/// Readers: one per runtime worker; hot single-object reads are served from the cache.
const READERS: usize = 2;

/// The store handle shared by the daemon.
pub struct Store {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    /// Bumped after every committed write; cached reads are valid only for the generation
    /// they were read in. The daemon is the store's only writer, so this keeps the cache exact.
    generation: AtomicU64,
    cache: RwLock<HashMap<String, (u64, Arc<Object>)>>,
    /// Per kind, every object at one generation (see [`list_index`]).
    lists: RwLock<HashMap<String, Arc<list_index::KindIndex>>>,
}

/// Objects kept in the read cache at most (it is cleared when full).
const CACHE_MAX: usize = 20_000;

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // FULL: in WAL mode NORMAL does not sync at commit, so a power cut right after a 2xx
    // could lose the write (the appliance test lost a bridge Terraform had just made when
    // the VM was killed). Each write transaction now syncs the WAL before it is answered.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

impl Store {
    /// Opens (creating if needed) `ferrite.db` in `dir` and runs pending migrations.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join("ferrite.db");
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let mut writer = Connection::open(&path).map_err(open_err)?;
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        configure(&writer).map_err(open_err)?;
        migrations::run(&mut writer)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let c = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(open_err)?;
            configure(&c).map_err(open_err)?;
            readers.push(Mutex::new(c));
        }
        Ok(Store {
            path,
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            cache: RwLock::new(HashMap::new()),
            lists: RwLock::new(HashMap::new()),
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one write transaction; it commits only if `f` returns `Ok`.
    pub fn write<T, E>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| E::from(StoreError::classify(e)))?;
        let out = f(&tx)?;
        tx.commit().map_err(|e| E::from(StoreError::classify(e)))?;
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(out)
    }

    /// Reads one object through an in-memory cache. SQLite read transactions cost file-lock
    /// syscalls and a global mutex each; hot GETs should not pay them while nothing changes.
    pub fn get_cached(&self, kind: &str, id: &str) -> Result<Option<Arc<Object>>, StoreError> {
        let key = format!("{kind}\0{id}");
        let gen = self.generation.load(Ordering::SeqCst);
        if let Ok(c) = self.cache.read() {
            if let Some((g, o)) = c.get(&key) {
                if *g == gen {
                    return Ok(Some(Arc::clone(o)));
                }
            }
        }
        let Some(obj) = self.read(|c| objects::get(c, kind, id))? else {
            return Ok(None);
        };
        let obj = Arc::new(obj);
        if let Ok(mut c) = self.cache.write() {
            if c.len() >= CACHE_MAX {
                c.clear();
            }
            c.insert(key, (gen, Arc::clone(&obj)));
        }
        Ok(Some(obj))
    }

    /// A page of a list, cut from the kind's in-memory index (built from one read after the
    /// last write): same order and filters as [`objects::list`].
    pub fn list_cached(&self, kind: &str, f: &ListFilter) -> Result<Page<Arc<Object>>, StoreError> {
        let gen = self.generation.load(Ordering::SeqCst);
        let hit = self
            .lists
            .read()
            .ok()
            .and_then(|m| m.get(kind).cloned())
            .filter(|ix| ix.generation == gen);
        let ix = match hit {
            Some(ix) => ix,
            None => {
                let ix = Arc::new(self.read(|c| list_index::KindIndex::build(c, kind, gen))?);
                if let Ok(mut m) = self.lists.write() {
                    m.insert(kind.to_string(), Arc::clone(&ix));
                }
                ix
            }
        };
        Ok(ix.page(f))
    }

    /// Like [`Store::get_cached`], failing with `NotFound`.
    pub fn require_cached(&self, kind: &str, id: &str) -> Result<Arc<Object>, StoreError> {
        self.get_cached(kind, id)?
            .ok_or_else(|| StoreError::NotFound {
                kind: kind.to_string(),
                id: id.to_string(),
            })
    }

    /// Runs `f` on a read-only connection (sees the last committed state).
    pub fn read<T, E>(&self, f: impl FnOnce(&Connection) -> Result<T, E>) -> Result<T, E> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..READERS {
            if let Ok(c) = self.readers[(start + i) % READERS].try_lock() {
                return f(&c);
            }
        }
        let c = self.readers[start % READERS]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        f(&c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        (dir, s)
    }

    #[test]
    fn revisions_and_if_match() {
        let (_d, s) = store();
        let o = s
            .write(|tx| {
                objects::insert(
                    tx,
                    "user",
                    "a@local",
                    "a@local",
                    None,
                    &json!({"x": 1}),
                    &[],
                )
            })
            .expect("insert");
        assert_eq!(o.revision, 1);
        let dup =
            s.write(|tx| objects::insert(tx, "user", "a@local", "a@local", None, &json!({}), &[]));
        assert!(matches!(dup, Err(StoreError::Exists { .. })));
        let o2 = s
            .write(|tx| objects::update(tx, "user", "a@local", Some(1), &json!({"x": 2}), &[]))
            .expect("update");
        assert_eq!(o2.revision, 2);
        let stale = s.write(|tx| objects::update(tx, "user", "a@local", Some(1), &json!({}), &[]));
        assert!(matches!(
            stale,
            Err(StoreError::RevisionMismatch { actual: 2, .. })
        ));
        let got = s.read(|c| objects::get(c, "user", "a@local")).expect("get");
        assert_eq!(got.map(|o| o.body["x"].clone()), Some(json!(2)));
    }

    #[test]
    fn cache_sees_every_write() {
        let (_d, s) = store();
        s.write(|tx| objects::insert(tx, "group", "g", "g", None, &json!({"v": 1}), &[]))
            .expect("insert");
        assert_eq!(s.require_cached("group", "g").expect("get").body["v"], 1);
        s.write(|tx| objects::update(tx, "group", "g", None, &json!({"v": 2}), &[]))
            .expect("update");
        assert_eq!(s.require_cached("group", "g").expect("get").body["v"], 2);
        s.write(|tx| objects::delete(tx, "group", "g", None))
            .expect("delete");
        assert!(s.get_cached("group", "g").expect("get").is_none());
    }

    #[test]
    fn failed_transaction_leaves_nothing() {
        let (_d, s) = store();
        let r: Result<(), StoreError> = s.write(|tx| {
            objects::insert(tx, "group", "g", "g", None, &json!({}), &[])?;
            Err(StoreError::Busy)
        });
        assert!(r.is_err());
        assert!(s
            .read(|c| objects::get(c, "group", "g"))
            .expect("get")
            .is_none());
    }

    #[test]
    fn list_filters_and_pages() {
        let (_d, s) = store();
        for i in 0..25 {
            let tags = if i % 2 == 0 {
                vec!["even".to_string()]
            } else {
                vec![]
            };
            let id = format!("n{i:02}");
            s.write(|tx| objects::insert(tx, "group", &id, &id, None, &json!({}), &tags))
                .expect("insert");
        }
        let mut f = ListFilter {
            limit: 10,
            ..Default::default()
        };
        let p1 = s.read(|c| objects::list(c, "group", &f)).expect("list");
        assert_eq!(p1.items.len(), 10);
        f.after = p1.next.clone();
        let p2 = s.read(|c| objects::list(c, "group", &f)).expect("list");
        assert_eq!(p2.items[0].id, "n10");
        let f = ListFilter {
            tag: Some("even".into()),
            limit: 100,
            ..Default::default()
        };
        assert_eq!(
            s.read(|c| objects::list(c, "group", &f))
                .expect("list")
                .items
                .len(),
            13
        );
        let f = ListFilter {
            name: Some("n1*".into()),
            limit: 100,
            ..Default::default()
        };
        assert_eq!(
            s.read(|c| objects::list(c, "group", &f))
                .expect("list")
                .items
                .len(),
            10
        );
    }

    #[test]
    fn sequences_are_unique() {
        let (_d, s) = store();
        let a = s.write(|tx| objects::next_id(tx, "acl")).expect("seq");
        let b = s.write(|tx| objects::next_id(tx, "acl")).expect("seq");
        assert_eq!(b, a + 1);
    }
}
