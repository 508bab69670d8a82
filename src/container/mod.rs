//! System containers: desired configuration in the store (kind `container`), a root filesystem
//! volume from storage, namespaces and cgroups set up by the `ferrite-ctr` helper, and runtime
//! state (init PID and its start time) in `DATA/containers/ID/runtime.json`, so a restarted
//! daemon re-adopts running containers instead of losing them.

pub mod cgroup;
mod engine;
mod guest_files;
mod rootfs;
mod running;
pub mod runtime;
mod snapshots;
mod start;
pub mod template;

use crate::guest::GuestError;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::guest::claims::Claim;
use crate::guest::nics;
use crate::guest::process::{self, RuntimeState};
use crate::guest::spec::{self, ContainerCreate, ContainerSpec, StoredContainer};
use crate::storage::{Content, Format, Storage, StorageError, VolumeSpec};
use crate::store::{objects, Object, Store, StoreError};

/// Store kind of containers.
pub const KIND: &str = "container";
/// Subordinate id range every unprivileged container maps root to (as LXC does by default).
pub const ID_BASE: u32 = 100_000;
pub const ID_COUNT: u32 = 65_536;

/// Container operations fail with the shared guest error.
pub type ContainerError = crate::guest::GuestError;

/// The container engine.
pub struct Containers {
    /// Store, storage, network, runtime directory, claims and scope (its cgroups live under
    /// `scope`, so several daemons on one host never share a container's cgroup).
    base: crate::guest::Base,
    helper: crate::helpers::Helper,
}

impl Containers {
    /// Must be called inside the daemon's tokio runtime (NIC setup runs on it).
    pub fn new(
        store: Arc<Store>,
        storage: Arc<Storage>,
        network: Arc<crate::network::Network>,
        data_dir: &Path,
    ) -> Self {
        Containers {
            base: crate::guest::Base::new(KIND, "containers", store, storage, network, data_dir),
            helper: crate::helpers::Helper::beside_daemon("ferrite-ctr"),
        }
    }

    /// The `ferrite-ctr` helper this engine spawns.
    pub fn helper(&self) -> &crate::helpers::Helper {
        &self.helper
    }

    /// The cgroup of container `id`.
    pub fn cg(&self, id: &str) -> cgroup::Cgroup {
        cgroup::Cgroup::new(&format!("{}/ct-{id}", self.base.scope))
    }

    fn claim(&self, id: &str) -> Result<Claim<'_>, ContainerError> {
        Ok(self.base.claim(id)?)
    }

    fn ct_dir(&self, id: &str) -> PathBuf {
        self.base.dir_of(id)
    }

    fn recorded_pid(&self, id: &str) -> Option<i32> {
        process::recorded(&self.ct_dir(id)).map(|st| st.pid)
    }

    fn runtime_state(&self, id: &str) -> Option<RuntimeState> {
        self.base.alive(id)
    }

    fn stored(&self, o: &Object) -> Result<StoredContainer, ContainerError> {
        self.base.typed(o)
    }

    /// The container's row.
    pub fn get(&self, id: &str) -> Result<Object, ContainerError> {
        self.base.get(id)
    }

    /// The console log of a running container (refused when it is not running).
    pub fn console_log(&self, id: &str) -> Result<PathBuf, ContainerError> {
        self.get(id)?;
        if !self.running(id) {
            return Err(ContainerError::Conflict(format!(
                "container {id} is not running"
            )));
        }
        Ok(self.ct_dir(id).join("console.log"))
    }

    /// Types into the container's console (through its relay's FIFO).
    pub fn console_input(&self, id: &str, data: &[u8]) -> Result<(), ContainerError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        if !self.running(id) {
            return Err(ContainerError::Conflict(format!(
                "container {id} is not running"
            )));
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(self.ct_dir(id).join("console.in"))
            .map_err(|e| {
                ContainerError::Conflict(format!("container {id} has no console relay: {e}"))
            })?;
        f.write_all(data)
            .map_err(|e| ContainerError::Conflict(format!("container {id}: console input: {e}")))
    }

    /// Whether the container's init is alive.
    pub fn running(&self, id: &str) -> bool {
        self.runtime_state(id).is_some()
    }

    /// Observed state: power state, PID, resource usage.
    pub fn status(&self, id: &str) -> Value {
        let cg = self.cg(id);
        match self.runtime_state(id) {
            Some(st) => {
                let mut usage = cg.usage();
                usage["net"] = net_counters(st.pid);
                json!({
                    "state": if cg.frozen() { "frozen" } else { "running" },
                    "pid": st.pid,
                    "started_at": st.started_at,
                    "cgroup_mode": cg.mode.as_str(),
                    "usage": usage,
                })
            }
            None => json!({"state": "stopped", "cgroup_mode": cg.mode.as_str()}),
        }
    }

    /// Creates a container: its row, its root filesystem volume, the template unpacked into
    /// it. On any failure nothing of it remains.
    pub fn create(&self, id: u32, body: &Value) -> Result<Object, ContainerError> {
        let want: ContainerCreate = spec::parse("the request body", body)?;
        nics::check(
            &self.base.store,
            want.spec.net.iter().map(|(k, n)| (k, &n.nic)),
        )?;
        let id_s = id.to_string();
        let name = want.name.clone();
        let pool = want
            .pool
            .clone()
            .unwrap_or_else(|| crate::storage::DEFAULT_POOL.to_string());
        let template = want.template.clone();
        if self
            .base
            .store
            .get_cached(crate::storage::POOL_KIND, &pool)?
            .is_none()
        {
            return Err(GuestError::invalid(
                "/pool",
                format!("storage pool {pool} does not exist"),
            ));
        }
        let tpl_row = self.base.storage.row(&template).map_err(|_| {
            GuestError::invalid(
                "/template",
                format!("template volume {template} does not exist"),
            )
        })?;
        if tpl_row.vref.content != Content::Template {
            return Err(GuestError::invalid(
                "/template",
                format!(
                    "{template} is a {} volume, not a template",
                    tpl_row.vref.content.as_str()
                ),
            ));
        }
        let tpl_path = self.base.storage.path(&template)?;
        let rootfs_name = format!("ct-{id}-rootfs");
        let rootfs = format!("{pool}:{rootfs_name}");
        let mut stored = body.clone();
        // Credentials are applied to the root filesystem once, below, and never kept.
        if let Some(m) = stored.as_object_mut() {
            m.remove("root_password_hash");
            m.remove("ssh_keys");
        }
        stored["id"] = json!(id);
        stored["rootfs"] = json!(rootfs);
        if stored.get("hostname").is_none() {
            stored["hostname"] = json!(name);
        }
        // The row first (it reserves id and name), then the volume, then the unpack.
        self.base
            .store
            .write(|tx| crate::guest::insert_row(tx, KIND, &id_s, &name, &stored))?;
        let undo_row = || {
            let _ = self
                .base
                .store
                .write(|tx| crate::guest::delete_row(tx, KIND, &id_s));
        };
        let size = want.rootfs_size.unwrap_or(4096) * 1024 * 1024;
        let vol = match self.base.storage.create_volume(
            &pool,
            &VolumeSpec {
                name: rootfs_name,
                content: Content::Rootdir,
                format: Some(Format::Subvol),
                size,
                owner: Some(format!("ct/{id}")),
                comment: None,
            },
        ) {
            Ok(v) => v,
            Err(e) => {
                undo_row();
                return Err(e.into());
            }
        };
        let unpack = self
            .base
            .storage
            .path(&vol.id)
            .map_err(ContainerError::from)
            .and_then(|p| {
                let shift = if want.privileged { 0 } else { ID_BASE };
                template::unpack(&tpl_path, &p, shift)
                    .map_err(|e| GuestError::invalid("/template", e.to_string()))?;
                guest_files::GuestFiles {
                    rootfs: &p,
                    owner: (!want.privileged).then_some(ID_BASE),
                }
                .root_credentials(want.root_password_hash.as_deref(), &want.ssh_keys)
            });
        if let Err(e) = unpack {
            let _ = self.base.storage.delete_volume(&vol.id);
            undo_row();
            return Err(e);
        }
        let refs = refs_of(&stored);
        let o = self.base.store.write(|tx| -> Result<Object, StoreError> {
            objects::set_refs(tx, KIND, &id_s, &refs)?;
            objects::require(tx, KIND, &id_s)
        });
        match o {
            Ok(o) => Ok(o),
            Err(e) => {
                let _ = self.base.storage.delete_volume(&vol.id);
                undo_row();
                Err(e.into())
            }
        }
    }

    /// Applies an update (fields present replace the stored ones, `null` clears one); limits
    /// reach a running container at once, the rest at its next start.
    pub fn update(
        &self,
        id: &str,
        patch: &Value,
        if_match: Option<i64>,
    ) -> Result<Object, ContainerError> {
        let mut body = self.get(id)?.body;
        objects::merge_patch(&mut body, patch);
        let row: StoredContainer = spec::parse(&format!("container {id}"), &body)?;
        nics::check(
            &self.base.store,
            row.create.spec.net.iter().map(|(k, n)| (k, &n.nic)),
        )?;
        let tags = objects::tags_of(&body);
        let refs = refs_of(&body);
        let o = self.base.store.write(|tx| -> Result<Object, StoreError> {
            objects::update(tx, KIND, id, if_match, &body, &tags)?;
            objects::set_refs(tx, KIND, id, &refs)?;
            objects::require(tx, KIND, id)
        })?;
        self.apply_limits(id)?;
        Ok(o)
    }

    /// Deletes a container and its root filesystem; refused while running unless `force`.
    pub fn delete(&self, id: &str, force: bool) -> Result<(), ContainerError> {
        let _b = self.claim(id)?;
        let o = self.get(id)?;
        if self.running(id) {
            if !force {
                return Err(ContainerError::Conflict(format!(
                    "container {id} is running; stop it first or delete with force=true"
                )));
            }
            self.stop_locked(id);
        }
        let _ = self.cg(id).remove();
        self.base
            .store
            .write(|tx| objects::set_refs(tx, KIND, id, &[]))?;
        if let Some(rootfs) = o.body["rootfs"].as_str() {
            match self.base.storage.delete_volume(rootfs) {
                Ok(()) | Err(StorageError::UnknownVolume(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.base
            .store
            .write(|tx| objects::delete(tx, KIND, id, None))?;
        let _ = std::fs::remove_dir_all(self.ct_dir(id));
        Ok(())
    }

    /// At daemon start: reports which containers are still running (their runtime state is
    /// kept), drops stale state of dead ones, then starts `onboot` containers in order.
    pub fn adopt_and_boot(&self) {
        let all = self.base.all();
        let mut boot: Vec<(i64, String)> = Vec::new();
        for o in &all {
            if let Some(st) = self.runtime_state(&o.id) {
                tracing::info!(container = %o.id, pid = st.pid, "re-adopted a running container");
            } else {
                let _ = std::fs::remove_file(self.ct_dir(&o.id).join("runtime.json"));
                let cg = self.cg(&o.id);
                if cg.exists() {
                    self.kill_cgroup(&cg);
                    let _ = cg.remove();
                }
                boot.extend(crate::guest::boot_slot(o));
            }
        }
        crate::guest::boot_in_order(self, boot);
    }
}

/// What a container refers to: its volumes and the bridges of its NICs (so deleting either is
/// refused with 409 naming the container).
pub fn refs_of(body: &Value) -> Vec<String> {
    let mut r = Vec::new();
    for k in ["rootfs", "template"] {
        if let Some(v) = body[k].as_str() {
            r.push(crate::guest::volume_ref(v));
        }
    }
    if let Some(m) = body["mounts"].as_object() {
        for mp in m.values() {
            if let Some(v) = mp["volume"].as_str() {
                r.push(crate::guest::volume_ref(v));
            }
        }
    }
    if let Some(n) = body["net"].as_object() {
        for nic in n.values() {
            if let Some(b) = nic["bridge"].as_str() {
                r.push(b.to_string());
            }
        }
    }
    r
}

pub use crate::guest::scope_of;

/// Makes this process the reaper of the container inits its helper double-forks (call once at
/// start), so stopped containers do not linger as zombies of a host init that never reaps.
pub fn become_subreaper() {
    // SAFETY: prctl with integer arguments only.
    unsafe {
        nix::libc::prctl(nix::libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

/// Per-interface traffic counters as the container sees them (its own network namespace,
/// read through its init's `/proc/PID/net/dev`): `{"eth0": {"rx_bytes", ...}}`, loopback left
/// out.
fn net_counters(pid: i32) -> Value {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    let mut out = serde_json::Map::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if f.len() < 16 {
            continue;
        }
        out.insert(
            name.to_string(),
            json!({
                "rx_bytes": (f[0]), "rx_packets": (f[1]), "rx_errors": (f[2]), "rx_dropped": (f[3]),
                "tx_bytes": (f[8]), "tx_packets": (f[9]), "tx_errors": (f[10]), "tx_dropped": (f[11]),
            }),
        );
    }
    Value::Object(out)
}
