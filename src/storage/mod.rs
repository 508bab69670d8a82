//! Storage: pools of volumes behind one facade.
//!
//! Every volume has a row in the store (kind `volume`, id `POOL:NAME`) carrying what the
//! backing store cannot: content type, owner, template flag, the snapshot tree. A row is
//! written in state `creating` *before* anything is made on disk and turned `ready` after, so a
//! daemon killed half way finds the row at the next start and removes whatever was made
//! ([`Storage::open`]): nothing is ever left on disk that the API does not show.

mod clones;
mod dir;
mod download;
mod ingest;
mod lvmthin;
mod model;
pub mod pool;
mod pools;
mod qemu_img;
pub mod sink;
mod snapshots;

pub use clones::{CloneRequest, PlannedClone};
pub use download::{file_name_of, Decompress, DownloadRequest, Progress, DEFAULT_STALL_SECS};
pub use ingest::IncomingFile;
use model::{check_name, State};
pub use model::{parse_volid, Content, Format, StorageError, VolumeRow, VolumeSpec};

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::store::{objects, Object, Store, StoreError};
pub use pool::{Capacity, Pool, Source, VolRef};

/// The `object_refs` name a user of a volume (a guest, a linked clone) records for a storage volume it uses (`pool:volume`), so a
/// volume delete can refuse with 409 naming the guest.
pub fn volume_ref(volid: &str) -> String {
    format!("volume/{volid}")
}

/// Store kind of pools.
pub const POOL_KIND: &str = "storage_pool";
/// Store kind of volumes.
pub const VOLUME_KIND: &str = "volume";
/// The pool every install has.
pub const DEFAULT_POOL: &str = "local";

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
            .read(|c| objects::referrers(c, &volume_ref(volid)))?
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
