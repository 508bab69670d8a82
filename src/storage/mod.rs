//! Storage: pools of volumes behind one facade.
//!
//! Every volume has a row in the store (kind `volume`, id `POOL:NAME`) carrying what the
//! backing store cannot: content type, owner, template flag, the snapshot tree. A row is
//! written in state `creating` *before* anything is made on disk and turned `ready` after, so a
//! daemon killed half way finds the row at the next start and removes whatever was made
//! ([`Storage::open`]): nothing is ever left on disk that the API does not show.

mod dir;
mod lvmthin;
pub mod pool;
mod qemu_img;
pub mod sink;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::store::{objects, Object, Store, StoreError};
pub use pool::{Capacity, Pool, Source, VolRef};

/// Store kind of pools.
pub const POOL_KIND: &str = "storage_pool";
/// Store kind of volumes.
pub const VOLUME_KIND: &str = "volume";
/// The pool every install has.
pub const DEFAULT_POOL: &str = "local";

/// What a volume holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Content {
    Images,
    Rootdir,
    Iso,
    Template,
    Backup,
    Snippets,
}

impl Content {
    pub const ALL: [Content; 6] = [
        Content::Images,
        Content::Rootdir,
        Content::Iso,
        Content::Template,
        Content::Backup,
        Content::Snippets,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Content::Images => "images",
            Content::Rootdir => "rootdir",
            Content::Iso => "iso",
            Content::Template => "template",
            Content::Backup => "backup",
            Content::Snippets => "snippets",
        }
    }

    fn parse(s: &str) -> Option<Content> {
        Content::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// How a volume is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Raw,
    Qcow2,
    Subvol,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Subvol => "subvol",
        }
    }

    fn parse(s: &str) -> Option<Format> {
        [Format::Raw, Format::Qcow2, Format::Subvol]
            .into_iter()
            .find(|f| f.as_str() == s)
    }
}

/// A request for a new volume.
#[derive(Debug, Clone)]
pub struct VolumeSpec {
    pub name: String,
    pub content: Content,
    /// `None`: the pool's default for the content type.
    pub format: Option<Format>,
    pub size: u64,
    pub owner: Option<String>,
    pub comment: Option<String>,
}

/// Why a storage operation failed. Each variant maps to one HTTP status in the API.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage pool '{0}' does not exist")]
    UnknownPool(String),
    #[error("volume '{0}' does not exist")]
    UnknownVolume(String),
    #[error("volume '{0}' already exists")]
    Exists(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("pool '{pool}' has {free} bytes free of {total}; this needs {need} bytes")]
    Full {
        pool: String,
        need: u64,
        free: u64,
        total: u64,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Tool(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl StorageError {
    fn invalid(field: &str, message: impl Into<String>) -> Self {
        StorageError::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// A command for a storage tool (qemu-img, lvm, cp) that dies with the daemon: a tool left
/// running after a SIGKILL of ferrited would keep writing into a volume the next start removes.
pub(crate) fn tool(program: &str) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let mut c = std::process::Command::new(program);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        c.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    c
}

/// Maps an I/O error to [`StorageError::Io`] with what was being done (`"creating PATH"`).
pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StorageError {
    let context = context.into();
    move |source| StorageError::Io { context, source }
}

/// A volume id split into pool and name, checked so no name can leave its pool.
pub fn parse_volid(volid: &str) -> Result<(&str, &str), StorageError> {
    let (p, n) = volid
        .split_once(':')
        .ok_or_else(|| StorageError::invalid("/volume", format!("'{volid}' is not POOL:VOLUME")))?;
    check_name("/volume", n)?;
    Ok((p, n))
}

/// Refuses names that could escape a pool's directory, whatever the schema let through.
fn check_name(field: &str, n: &str) -> Result<(), StorageError> {
    if n.is_empty()
        || n.contains('/')
        || n.contains("..")
        || n.starts_with('.')
        || n.contains('\0')
        || n.len() > 128
    {
        return Err(StorageError::invalid(
            field,
            format!("'{n}' is not a volume name (no '/', no '..', not starting with '.')"),
        ));
    }
    Ok(())
}

/// The state of a volume row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Creating,
    Ready,
    Deleting,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Creating => "creating",
            State::Ready => "ready",
            State::Deleting => "deleting",
        }
    }
}

/// A volume row decoded.
#[derive(Debug, Clone)]
pub struct VolumeRow {
    pub volid: String,
    pub pool: String,
    pub vref: VolRef,
    pub state: String,
    pub template: bool,
    pub snapshots: Vec<String>,
    pub revision: i64,
    pub body: Value,
}

impl VolumeRow {
    fn from_object(o: &Object) -> Result<Self, StorageError> {
        let b = &o.body;
        let bad = || StorageError::Tool(format!("volume row {} is malformed", o.id));
        let content = b["content"]
            .as_str()
            .and_then(Content::parse)
            .ok_or_else(bad)?;
        let format = b["format"]
            .as_str()
            .and_then(Format::parse)
            .ok_or_else(bad)?;
        Ok(VolumeRow {
            volid: o.id.clone(),
            pool: b["pool"].as_str().unwrap_or_default().to_string(),
            vref: VolRef {
                name: b["name"].as_str().unwrap_or_default().to_string(),
                content,
                format,
                size: b["size"].as_u64().unwrap_or(0),
            },
            state: b["state"].as_str().unwrap_or("ready").to_string(),
            template: b["template"].as_bool().unwrap_or(false),
            snapshots: b["snapshots"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s["name"].as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
            revision: o.revision,
            body: o.body.clone(),
        })
    }
}

/// Marks a volume busy for the life of an operation, so two operations never interleave on it.
pub struct BusyGuard<'a> {
    set: &'a Mutex<HashSet<String>>,
    volid: String,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.set.lock() {
            s.remove(&self.volid);
        }
    }
}

/// The storage engine: pools by name, volume rows in the store.
pub struct Storage {
    store: Arc<Store>,
    pools: RwLock<HashMap<String, Arc<dyn Pool>>>,
    /// Pools whose backing store could not be opened, with the reason.
    inactive: RwLock<HashMap<String, String>>,
    busy: Mutex<HashSet<String>>,
}

/// Builds the backend for a pool row.
fn backend(body: &Value) -> Result<Arc<dyn Pool>, StorageError> {
    match body["type"].as_str() {
        Some("dir") => Ok(Arc::new(dir::DirPool::new(PathBuf::from(
            body["path"].as_str().unwrap_or_default(),
        ))?)),
        Some("lvmthin") => Ok(Arc::new(lvmthin::LvmThinPool::new(
            body["vg"].as_str().unwrap_or_default(),
            body["thinpool"].as_str().unwrap_or_default(),
        )?)),
        other => Err(StorageError::invalid(
            "/type",
            format!("unknown pool type {other:?}"),
        )),
    }
}

impl Storage {
    /// Opens every pool in the store (adding the default `local` pool under `data_dir` on a
    /// fresh install) and finishes what an earlier daemon left half done.
    pub fn open(store: Arc<Store>, data_dir: &Path) -> Result<Self, StorageError> {
        let s = Storage {
            store,
            pools: RwLock::new(HashMap::new()),
            inactive: RwLock::new(HashMap::new()),
            busy: Mutex::new(HashSet::new()),
        };
        let local = data_dir.join("storage").join(DEFAULT_POOL);
        s.store.write(|tx| -> Result<(), StorageError> {
            if objects::get(tx, POOL_KIND, DEFAULT_POOL)?.is_none() {
                let body = json!({
                    "name": DEFAULT_POOL,
                    "type": "dir",
                    "path": local.display().to_string(),
                    "content": Content::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                    "comment": "Directory pool under the data directory",
                    "tags": [],
                });
                objects::insert(tx, POOL_KIND, DEFAULT_POOL, DEFAULT_POOL, None, &body, &[])?;
            }
            Ok(())
        })?;
        for o in s.store.read(|c| objects::all(c, POOL_KIND))? {
            s.activate(&o.id, &o.body);
        }
        s.recover()?;
        Ok(s)
    }

    fn activate(&self, name: &str, body: &Value) {
        match backend(body) {
            Ok(p) => {
                p.cleanup_staging();
                if let Ok(mut m) = self.pools.write() {
                    m.insert(name.to_string(), p);
                }
                if let Ok(mut m) = self.inactive.write() {
                    m.remove(name);
                }
            }
            Err(e) => {
                tracing::warn!(pool = name, error = %e, "storage pool is not usable");
                if let Ok(mut m) = self.inactive.write() {
                    m.insert(name.to_string(), e.to_string());
                }
            }
        }
    }

    /// Removes what interrupted creates made and finishes interrupted deletes.
    fn recover(&self) -> Result<(), StorageError> {
        for o in self.store.read(|c| objects::all(c, VOLUME_KIND))? {
            let row = VolumeRow::from_object(&o)?;
            if row.state == State::Ready.as_str() {
                continue;
            }
            let Ok(pool) = self.pool(&row.pool) else {
                continue;
            };
            tracing::warn!(
                volume = %row.volid,
                state = %row.state,
                "cleaning up a volume operation interrupted by a daemon stop"
            );
            pool.remove(&row.vref, &row.snapshots)?;
            self.store.write(|tx| -> Result<(), StorageError> {
                objects::delete(tx, VOLUME_KIND, &row.volid, None)?;
                objects::set_refs(tx, VOLUME_KIND, &row.volid, &[])?;
                Ok(())
            })?;
        }
        Ok(())
    }

    /// The backend of a pool.
    pub fn pool(&self, name: &str) -> Result<Arc<dyn Pool>, StorageError> {
        if let Some(p) = self.pools.read().ok().and_then(|m| m.get(name).cloned()) {
            return Ok(p);
        }
        if let Some(why) = self.inactive.read().ok().and_then(|m| m.get(name).cloned()) {
            return Err(StorageError::Conflict(format!(
                "storage pool '{name}' is not active: {why}"
            )));
        }
        Err(StorageError::UnknownPool(name.to_string()))
    }

    /// The reason a pool is inactive, if it is.
    pub fn inactive_reason(&self, name: &str) -> Option<String> {
        self.inactive.read().ok().and_then(|m| m.get(name).cloned())
    }

    /// Adds a pool: the backend must open before the row is written.
    pub fn add_pool(&self, name: &str, body: &Value) -> Result<Object, StorageError> {
        let p = backend(body)?;
        let o = self.store.write(|tx| {
            objects::insert(
                tx,
                POOL_KIND,
                name,
                name,
                None,
                body,
                &objects::tags_of(body),
            )
        })?;
        if let Ok(mut m) = self.pools.write() {
            m.insert(name.to_string(), p);
        }
        Ok(o)
    }

    /// Removes a pool that holds no volumes (its data on disk is left alone).
    pub fn remove_pool(&self, name: &str) -> Result<(), StorageError> {
        self.store.write(|tx| -> Result<(), StorageError> {
            objects::require(tx, POOL_KIND, name)?;
            let prefix = format!("{name}:");
            let n = objects::all(tx, VOLUME_KIND)?
                .iter()
                .filter(|o| o.id.starts_with(&prefix))
                .count();
            if n > 0 {
                return Err(StorageError::Conflict(format!(
                    "storage pool '{name}' still holds {n} volume(s); delete them first"
                )));
            }
            objects::delete(tx, POOL_KIND, name, None)?;
            Ok(())
        })?;
        if let Ok(mut m) = self.pools.write() {
            m.remove(name);
        }
        if let Ok(mut m) = self.inactive.write() {
            m.remove(name);
        }
        Ok(())
    }

    /// Capacity of a pool, read now.
    pub fn capacity(&self, name: &str) -> Result<Capacity, StorageError> {
        self.pool(name)?.capacity()
    }

    /// Refuses work that needs `need` bytes on a pool with less free.
    fn check_space(&self, pool_name: &str, pool: &dyn Pool, need: u64) -> Result<(), StorageError> {
        let c = pool.capacity()?;
        if need > c.free {
            return Err(StorageError::Full {
                pool: pool_name.to_string(),
                need,
                free: c.free,
                total: c.total,
            });
        }
        Ok(())
    }

    /// Claims a volume for one operation.
    pub fn claim(&self, volid: &str) -> Result<BusyGuard<'_>, StorageError> {
        let mut s = self
            .busy
            .lock()
            .map_err(|_| StorageError::Tool("storage lock poisoned".into()))?;
        if !s.insert(volid.to_string()) {
            return Err(StorageError::Conflict(format!(
                "volume '{volid}' is busy with another operation; retry when it finishes"
            )));
        }
        Ok(BusyGuard {
            set: &self.busy,
            volid: volid.to_string(),
        })
    }

    /// A volume's row.
    pub fn row(&self, volid: &str) -> Result<VolumeRow, StorageError> {
        let o = self
            .store
            .read(|c| objects::get(c, VOLUME_KIND, volid))?
            .ok_or_else(|| StorageError::UnknownVolume(volid.to_string()))?;
        VolumeRow::from_object(&o)
    }

    fn ready_row(&self, volid: &str) -> Result<VolumeRow, StorageError> {
        let r = self.row(volid)?;
        if r.state != State::Ready.as_str() {
            return Err(StorageError::Conflict(format!(
                "volume '{volid}' is {}; retry when it is ready",
                r.state
            )));
        }
        Ok(r)
    }

    /// The host path of a ready volume.
    pub fn path(&self, volid: &str) -> Result<PathBuf, StorageError> {
        let (p, _) = parse_volid(volid)?;
        let row = self.ready_row(volid)?;
        Ok(self.pool(p)?.path(&row.vref))
    }

    /// Guests and clones using a volume, as `kind/id`.
    pub fn used_by(&self, volid: &str) -> Result<Vec<String>, StorageError> {
        Ok(self
            .store
            .read(|c| objects::referrers(c, &crate::guest::volume_ref(volid)))?
            .into_iter()
            .map(|(k, id)| format!("{k}/{id}"))
            .collect())
    }

    /// Writes the `creating` row that reserves a name before anything exists on disk.
    fn reserve(
        &self,
        pool: &str,
        v: &VolRef,
        owner: Option<&str>,
        extra: Value,
        refs: &[String],
    ) -> Result<String, StorageError> {
        check_name("/name", &v.name)?;
        let volid = format!("{pool}:{}", v.name);
        let mut body = json!({
            "volid": volid,
            "pool": pool,
            "name": v.name,
            "content": v.content.as_str(),
            "format": v.format.as_str(),
            "size": v.size,
            "state": State::Creating.as_str(),
            "owner": owner,
            "template": false,
            "base": null,
            "snapshots": [],
            "current_snapshot": null,
        });
        if let (Value::Object(b), Value::Object(x)) = (&mut body, extra) {
            b.extend(x);
        }
        self.store
            .write(|tx| -> Result<(), StorageError> {
                match objects::insert(tx, VOLUME_KIND, &volid, &volid, owner, &body, &[]) {
                    Err(StoreError::Exists { .. }) => {
                        return Err(StorageError::Exists(volid.clone()))
                    }
                    r => r?,
                };
                objects::set_refs(tx, VOLUME_KIND, &volid, refs)?;
                Ok(())
            })
            .map(|_| volid.clone())
    }

    /// Applies `f` to a volume row's body and bumps its revision.
    fn update_row(&self, volid: &str, f: impl FnOnce(&mut Value)) -> Result<Object, StorageError> {
        self.store.write(|tx| -> Result<Object, StorageError> {
            let o = objects::require(tx, VOLUME_KIND, volid)?;
            let mut b = o.body.clone();
            f(&mut b);
            Ok(objects::update(tx, VOLUME_KIND, volid, None, &b, &[])?)
        })
    }

    /// Undoes a reservation after a failed create.
    fn abandon(&self, pool: &dyn Pool, volid: &str, v: &VolRef) {
        if let Err(e) = pool.remove(v, &[]) {
            tracing::error!(volume = volid, error = %e, "could not remove a failed volume");
        }
        let r = self.store.write(|tx| -> Result<(), StorageError> {
            objects::delete(tx, VOLUME_KIND, volid, None)?;
            objects::set_refs(tx, VOLUME_KIND, volid, &[])?;
            Ok(())
        });
        if let Err(e) = r {
            tracing::error!(volume = volid, error = %e, "could not remove a failed volume row");
        }
    }

    /// Creates an empty volume.
    pub fn create_volume(
        &self,
        pool_name: &str,
        spec: &VolumeSpec,
    ) -> Result<Object, StorageError> {
        let pool = self.pool(pool_name)?;
        let format = spec
            .format
            .unwrap_or_else(|| pool.default_format(spec.content));
        if !pool.supports(spec.content, format) {
            return Err(StorageError::invalid(
                "/format",
                format!(
                    "pool '{pool_name}' cannot hold {} volumes in {} format",
                    spec.content.as_str(),
                    format.as_str()
                ),
            ));
        }
        // A directory volume reserves nothing up front (its size is the quota recorded for
        // it); files and LVs are checked against the free space.
        if format != Format::Subvol {
            self.check_space(pool_name, pool.as_ref(), spec.size)?;
        }
        let v = VolRef {
            name: spec.name.clone(),
            content: spec.content,
            format,
            size: spec.size,
        };
        let volid = self.reserve(
            pool_name,
            &v,
            spec.owner.as_deref(),
            json!({"comment": spec.comment}),
            &[],
        )?;
        let _g = self.claim(&volid)?;
        if pool.exists(&v) {
            // A file nobody owns in the store: never overwrite it.
            self.store
                .write(|tx| objects::delete(tx, VOLUME_KIND, &volid, None))?;
            return Err(StorageError::Conflict(format!(
                "{} already exists on the pool's backing store but is not a known volume",
                pool.path(&v).display()
            )));
        }
        if let Err(e) = pool.create(&v) {
            self.abandon(pool.as_ref(), &volid, &v);
            return Err(e);
        }
        self.update_row(&volid, |b| b["state"] = json!(State::Ready.as_str()))
    }

    /// Deletes a volume and its snapshots; refused while anything uses it.
    pub fn delete_volume(&self, volid: &str) -> Result<(), StorageError> {
        let (p, _) = parse_volid(volid)?;
        let row = self.row(volid)?;
        let _g = self.claim(volid)?;
        let users = self.used_by(volid)?;
        if !users.is_empty() {
            return Err(StorageError::Conflict(format!(
                "volume '{volid}' is in use by {}; detach or delete them first",
                users.join(", ")
            )));
        }
        let pool = self.pool(p)?;
        self.update_row(volid, |b| b["state"] = json!(State::Deleting.as_str()))?;
        pool.remove(&row.vref, &row.snapshots)?;
        self.store.write(|tx| -> Result<(), StorageError> {
            objects::delete(tx, VOLUME_KIND, volid, None)?;
            objects::set_refs(tx, VOLUME_KIND, volid, &[])?;
            Ok(())
        })
    }

    /// Grows a volume.
    pub fn resize(&self, volid: &str, size: u64) -> Result<Object, StorageError> {
        let (p, _) = parse_volid(volid)?;
        let row = self.ready_row(volid)?;
        let _g = self.claim(volid)?;
        if row.template {
            return Err(StorageError::Conflict(format!(
                "volume '{volid}' is a template; linked clones depend on its size"
            )));
        }
        if size <= row.vref.size {
            return Err(StorageError::invalid(
                "/size",
                format!(
                    "volumes only grow: {size} bytes is not more than the current {} bytes",
                    row.vref.size
                ),
            ));
        }
        let pool = self.pool(p)?;
        self.check_space(p, pool.as_ref(), size - row.vref.size)?;
        pool.resize(&row.vref, size)?;
        self.update_row(volid, |b| b["size"] = json!(size))
    }

    /// Makes a volume a read-only template.
    pub fn make_template(&self, volid: &str) -> Result<Object, StorageError> {
        let (p, _) = parse_volid(volid)?;
        let row = self.ready_row(volid)?;
        let _g = self.claim(volid)?;
        if row.template {
            return self.update_row(volid, |_| {});
        }
        let users: Vec<String> = self
            .used_by(volid)?
            .into_iter()
            .filter(|u| !u.starts_with("volume/"))
            .collect();
        if !users.is_empty() {
            return Err(StorageError::Conflict(format!(
                "volume '{volid}' is attached to {}; a template must not change under a guest",
                users.join(", ")
            )));
        }
        self.pool(p)?.make_template(&row.vref)?;
        self.update_row(volid, |b| b["template"] = json!(true))
    }

    /// Takes a named snapshot; it becomes the parent of the next one.
    pub fn snapshot(
        &self,
        volid: &str,
        snap: &str,
        description: Option<&str>,
    ) -> Result<Object, StorageError> {
        let (p, _) = parse_volid(volid)?;
        let row = self.ready_row(volid)?;
        let _g = self.claim(volid)?;
        if row.snapshots.iter().any(|s| s == snap) {
            return Err(StorageError::Conflict(format!(
                "volume '{volid}' already has a snapshot '{snap}'"
            )));
        }
        let pool = self.pool(p)?;
        if row.vref.format != Format::Qcow2 {
            let need = pool.allocated(&row.vref).unwrap_or(0);
            self.check_space(p, pool.as_ref(), need)?;
        }
        pool.snapshot(&row.vref, snap)?;
        self.update_row(volid, |b| {
            let parent = b["current_snapshot"].clone();
            let mut entry = json!({
                "name": snap,
                "parent": parent,
                "created_at": crate::time::now_rfc3339(),
            });
            if let Some(d) = description {
                entry["description"] = json!(d);
            }
            if let Some(a) = b["snapshots"].as_array_mut() {
                a.push(entry);
            } else {
                b["snapshots"] = json!([entry]);
            }
            b["current_snapshot"] = json!(snap);
        })
    }

    fn require_snapshot(row: &VolumeRow, snap: &str) -> Result<(), StorageError> {
        if !row.snapshots.iter().any(|s| s == snap) {
            return Err(StorageError::UnknownVolume(format!(
                "{}@{snap} (no such snapshot)",
                row.volid
            )));
        }
        Ok(())
    }

    /// Returns a volume to a snapshot.
    pub fn rollback(&self, volid: &str, snap: &str) -> Result<Object, StorageError> {
        let (p, _) = parse_volid(volid)?;
        let row = self.ready_row(volid)?;
        let _g = self.claim(volid)?;
        Self::require_snapshot(&row, snap)?;
        if row.template {
            return Err(StorageError::Conflict(format!(
                "volume '{volid}' is a template; templates do not change"
            )));
        }
        self.pool(p)?.rollback(&row.vref, snap)?;
        self.update_row(volid, |b| b["current_snapshot"] = json!(snap))
    }

    /// Deletes a snapshot; its children take its parent.
    pub fn delete_snapshot(&self, volid: &str, snap: &str) -> Result<Object, StorageError> {
        let (p, _) = parse_volid(volid)?;
        let row = self.ready_row(volid)?;
        let _g = self.claim(volid)?;
        Self::require_snapshot(&row, snap)?;
        self.pool(p)?.delete_snapshot(&row.vref, snap)?;
        self.update_row(volid, |b| {
            let Some(a) = b["snapshots"].as_array_mut() else {
                return;
            };
            let parent = a
                .iter()
                .find(|s| s["name"] == snap)
                .map(|s| s["parent"].clone())
                .unwrap_or(Value::Null);
            a.retain(|s| s["name"] != snap);
            for s in a.iter_mut() {
                if s["parent"] == snap {
                    s["parent"] = parent.clone();
                }
            }
            if b["current_snapshot"] == snap {
                b["current_snapshot"] = parent;
            }
        })
    }

    /// Checks a clone request and reserves the new volume; the copy itself is [`Storage::run_clone`].
    pub fn begin_clone(&self, src: &str, req: &CloneRequest) -> Result<PlannedClone, StorageError> {
        let (sp, _) = parse_volid(src)?;
        let row = self.ready_row(src)?;
        let spool = self.pool(sp)?;
        let dp = req.pool.clone().unwrap_or_else(|| sp.to_string());
        let dpool = self.pool(&dp)?;
        if let Some(s) = &req.snapshot {
            Self::require_snapshot(&row, s)?;
        }
        let (format, refs, base) = if req.linked {
            if !row.template {
                return Err(StorageError::invalid(
                    "/linked",
                    format!("linked clones need a template volume; '{src}' is not one (POST .../template first)"),
                ));
            }
            if dp != sp {
                return Err(StorageError::invalid(
                    "/pool",
                    "a linked clone stays in its template's pool",
                ));
            }
            if req.snapshot.is_some() {
                return Err(StorageError::invalid(
                    "/snapshot",
                    "linked clones are made from a template's current state",
                ));
            }
            if !spool.can_link(row.vref.format) {
                return Err(StorageError::invalid(
                    "/linked",
                    format!(
                        "pool '{sp}' cannot make linked clones of {} volumes",
                        row.vref.format.as_str()
                    ),
                ));
            }
            let f = if spool.staging_dir().is_some() {
                Format::Qcow2
            } else {
                row.vref.format
            };
            (
                f,
                vec![crate::guest::volume_ref(src)],
                Some(src.to_string()),
            )
        } else {
            let f = if dpool.supports(row.vref.content, row.vref.format) {
                row.vref.format
            } else {
                dpool.default_format(row.vref.content)
            };
            if !dpool.supports(row.vref.content, f)
                || (row.vref.format == Format::Subvol) != (f == Format::Subvol)
            {
                return Err(StorageError::invalid(
                    "/pool",
                    format!(
                        "pool '{dp}' cannot hold a copy of a {} {} volume",
                        row.vref.content.as_str(),
                        row.vref.format.as_str()
                    ),
                ));
            }
            let need = spool.allocated(&row.vref).unwrap_or(row.vref.size);
            self.check_space(&dp, dpool.as_ref(), need)?;
            (f, Vec::new(), None)
        };
        let dst = VolRef {
            name: req.name.clone(),
            content: row.vref.content,
            format,
            size: row.vref.size,
        };
        let volid = self.reserve(
            &dp,
            &dst,
            req.owner.as_deref(),
            json!({"base": base}),
            &refs,
        )?;
        Ok(PlannedClone {
            src: row,
            dst,
            dst_volid: volid,
            dst_pool: dp,
            snapshot: req.snapshot.clone(),
            linked: req.linked,
        })
    }

    /// Makes the copy planned by [`Storage::begin_clone`] (blocking; run it in a task). On
    /// failure nothing of the new volume is left.
    pub fn run_clone(&self, plan: &PlannedClone) -> Result<Object, StorageError> {
        let _g = self.claim(&plan.dst_volid)?;
        let spool = self.pool(&plan.src.pool)?;
        let dpool = self.pool(&plan.dst_pool)?;
        let r = (|| {
            if plan.linked {
                return spool.linked_clone(&plan.src.vref, &plan.dst);
            }
            let source = spool.source(&plan.src.vref, plan.snapshot.as_deref())?;
            if plan.dst.format == Format::Subvol {
                return dir::copy_tree(&source.path, &dpool.path(&plan.dst));
            }
            dpool.create(&plan.dst)?;
            qemu_img::convert(&source, &dpool.path(&plan.dst), plan.dst.format, true)
        })();
        if let Err(e) = r {
            self.abandon(dpool.as_ref(), &plan.dst_volid, &plan.dst);
            return Err(e);
        }
        self.update_row(&plan.dst_volid, |b| {
            b["state"] = json!(State::Ready.as_str())
        })
    }

    /// Reserves a volume for a file about to arrive (upload or import) and returns where to
    /// write it: a staging file on the pool's filesystem, invisible until [`Storage::finish_file`].
    pub fn begin_file(
        &self,
        pool_name: &str,
        name: &str,
        content: Content,
        format: Format,
        size_hint: Option<u64>,
    ) -> Result<IncomingFile, StorageError> {
        check_name("/name", name)?;
        let pool = self.pool(pool_name)?;
        if !pool.supports(content, format) {
            return Err(StorageError::invalid(
                "/content",
                format!(
                    "pool '{pool_name}' does not hold {} files as {}",
                    content.as_str(),
                    format.as_str()
                ),
            ));
        }
        if let Some(n) = size_hint {
            self.check_space(pool_name, pool.as_ref(), n)?;
        }
        let v = VolRef {
            name: name.to_string(),
            content,
            format,
            size: size_hint.unwrap_or(0),
        };
        let volid = self.reserve(pool_name, &v, None, json!({}), &[])?;
        if pool.exists(&v) {
            self.store
                .write(|tx| objects::delete(tx, VOLUME_KIND, &volid, None))?;
            return Err(StorageError::Conflict(format!(
                "{} already exists on the pool's backing store but is not a known volume",
                pool.path(&v).display()
            )));
        }
        let dir = pool.staging_dir().unwrap_or_else(std::env::temp_dir);
        let staged = dir.join(format!("incoming-{}", uuid::Uuid::new_v4()));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            self.abandon(pool.as_ref(), &volid, &v);
            return Err(io(format!("creating {}", dir.display()))(e));
        }
        Ok(IncomingFile {
            pool: pool_name.to_string(),
            volid,
            vref: v,
            staged,
        })
    }

    /// Checks a staged file's digest and size and moves it into place; or, on `Err` from the
    /// caller's side (`ok = false`), drops it. Either way nothing is left half made.
    pub fn finish_file(
        &self,
        f: &IncomingFile,
        digest: &str,
        expected: Option<&str>,
    ) -> Result<Object, StorageError> {
        let pool = self.pool(&f.pool)?;
        let fail = |e: StorageError| {
            let _ = std::fs::remove_file(&f.staged);
            self.abandon(pool.as_ref(), &f.volid, &f.vref);
            e
        };
        if let Some(want) = expected {
            if want != digest {
                return Err(fail(StorageError::invalid(
                    "/sha256",
                    format!("the file's SHA-256 is {digest}, not the expected {want}; nothing was stored"),
                )));
            }
        }
        let mut v = f.vref.clone();
        v.size = std::fs::metadata(&f.staged)
            .map_err(io(format!("reading {}", f.staged.display())))
            .map_err(&fail)?
            .len();
        if v.format == Format::Qcow2 || v.content == Content::Images {
            let (found, vsize) = qemu_img::probe(&f.staged).map_err(&fail)?;
            if found != v.format.as_str() {
                return Err(fail(StorageError::invalid(
                    "/format",
                    format!("the file is {found}, not {}", v.format.as_str()),
                )));
            }
            v.size = vsize;
        }
        pool.adopt_file(&f.staged, &v).map_err(&fail)?;
        let size = v.size;
        self.update_row(&f.volid, |b| {
            b["state"] = json!(State::Ready.as_str());
            b["size"] = json!(size);
            b["sha256"] = json!(digest);
        })
    }

    /// Drops a staged file and its reservation (upload aborted).
    pub fn abort_file(&self, f: &IncomingFile) {
        let _ = std::fs::remove_file(&f.staged);
        if let Ok(pool) = self.pool(&f.pool) {
            self.abandon(pool.as_ref(), &f.volid, &f.vref);
        }
    }

    /// Copies a host file into the staging file, hashing as it goes (blocking), the way an
    /// upload is written ([`sink::write_hashed`]).
    pub fn copy_in(
        &self,
        f: &IncomingFile,
        from: &Path,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<String, StorageError> {
        let mut src =
            std::fs::File::open(from).map_err(io(format!("opening {}", from.display())))?;
        let chunks = std::iter::from_fn(|| {
            if cancelled() {
                return Some(Err(StorageError::Conflict("cancelled".into())));
            }
            let mut buf = bytes::BytesMut::zeroed(1 << 20);
            match src.read(&mut buf) {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some(Ok(buf.freeze()))
                }
                Err(e) => Some(Err(io(format!("reading {}", from.display()))(e))),
            }
        });
        sink::write_hashed(&f.staged, chunks)
    }

    /// All volume rows of a pool.
    pub fn rows_of_pool(&self, pool: &str) -> Result<Vec<Object>, StorageError> {
        let prefix = format!("{pool}:");
        Ok(self
            .store
            .read(|c| objects::all(c, VOLUME_KIND))?
            .into_iter()
            .filter(|o| o.id.starts_with(&prefix))
            .collect())
    }

    /// The API rendering of a volume: its row plus what is computed on read.
    pub fn render(&self, o: &Object) -> Value {
        let mut v = o.to_api();
        v["used_by"] = json!(self.used_by(&o.id).unwrap_or_default());
        if let Ok(row) = VolumeRow::from_object(o) {
            if let Ok(pool) = self.pool(&row.pool) {
                if let Some(a) = pool.allocated(&row.vref) {
                    v["allocated"] = json!(a);
                }
                v["path"] = json!(pool.path(&row.vref).display().to_string());
            }
        }
        if let Value::Object(m) = &mut v {
            for k in ["comment", "sha256"] {
                if m.get(k).is_some_and(Value::is_null) {
                    m.remove(k);
                }
            }
        }
        v
    }
}

/// A clone request, as the API takes it.
#[derive(Debug, Clone, Deserialize)]
pub struct CloneRequest {
    pub name: String,
    pub pool: Option<String>,
    #[serde(default)]
    pub linked: bool,
    pub snapshot: Option<String>,
    pub owner: Option<String>,
}

/// A clone checked and reserved, ready to run.
#[derive(Debug, Clone)]
pub struct PlannedClone {
    pub src: VolumeRow,
    pub dst: VolRef,
    pub dst_volid: String,
    pub dst_pool: String,
    pub snapshot: Option<String>,
    pub linked: bool,
}

/// A file being received into a pool.
#[derive(Debug, Clone)]
pub struct IncomingFile {
    pub pool: String,
    pub volid: String,
    pub vref: VolRef,
    /// Where the bytes go until they are checked.
    pub staged: PathBuf,
}
