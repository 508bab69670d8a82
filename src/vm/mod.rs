//! Virtual machines: desired configuration in the store (kind `vm`), one `ferrite-vmm`
//! process per running VM, driven over its control socket. Runtime state (the VMM's PID and
//! start time) lives in `DATA/vms/ID/runtime.json`, so a restarted daemon re-adopts running
//! VMs. A monitor thread notices VMs that stopped on their own, cleans up their taps, and
//! starts again the ones whose guest asked for a reset.

mod clones;
mod control;
mod engine;
mod restart;

pub use clones::CloneSpec;
mod snapshots;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::guest::claims::{Claim, Claims};
use crate::guest::nics;
use crate::guest::process::{self, RuntimeState};
use crate::guest::spec::{self, DiskCache, StoredVm, VmCreate, VmSpec};
use crate::network::attach::NicKind;
use crate::storage::{Content, Format, Storage, StorageError};
use crate::store::{objects, Object, Store, StoreError};
use crate::vmm::config::{DiskConfig, MachineConfig, NetConfig};
use crate::vmm::devices::virtio::blk::CacheMode;

/// Store kind of VMs.
pub const KIND: &str = "vm";

/// Why a VM operation failed; each variant is one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("vm {0} does not exist")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    Runtime(String),
    #[error(transparent)]
    Busy(#[from] crate::guest::claims::Busy),
    #[error(transparent)]
    Nic(#[from] crate::guest::nics::NicError),
    /// A stored row that no longer fits the typed model (a 500: the daemon's own data).
    #[error(transparent)]
    Spec(#[from] crate::guest::spec::SpecError),
    #[error(transparent)]
    HelperMissing(#[from] crate::helpers::HelperMissing),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// In a VM's directory while it has a restart plan after guest resets (a
/// [`restart::Saved`] as JSON): past resets and a planned restart.
const RESTART_MARK: &str = "restart-planned";

fn invalid(field: &str, m: impl Into<String>) -> VmError {
    VmError::Invalid {
        field: field.into(),
        message: m.into(),
    }
}

/// The VM engine.
pub struct Vms {
    store: Arc<Store>,
    storage: Arc<Storage>,
    network: Arc<crate::network::Network>,
    rt: tokio::runtime::Handle,
    dir: PathBuf,
    vmm: crate::helpers::Helper,
    claims: Claims,
    scope: String,
    restart_plan: restart::Restarts,
}

/// What a kernel file looks like, from its first bytes.
pub fn kernel_kind(path: &Path) -> Result<&'static str, String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut head = vec![0u8; 0x210];
    let n = f.read(&mut head).map_err(|e| e.to_string())?;
    head.truncate(n);
    if crate::vmm::elf32::is_elf32(&head) {
        // Booted only through its PVH note: check for it now rather than at start.
        let file = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        crate::vmm::elf32::parse(&file).map_err(|e| e.to_string())?;
        return Ok("elf32-pvh");
    }
    if head.starts_with(b"\x7fELF") {
        // What the loader checks first: little-endian x86-64 with 64-bit program headers.
        let u16_at = |at: usize| {
            head.get(at..at + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
        };
        if head.get(5) != Some(&1) {
            return Err("a big-endian ELF; an x86-64 vmlinux is little-endian".into());
        }
        if u16_at(18) != Some(62) {
            return Err("an ELF for another machine; an x86-64 vmlinux is needed".into());
        }
        if u16_at(54) != Some(56) {
            return Err("an ELF whose program headers are not 64-bit ones".into());
        }
        return Ok("elf");
    }
    if head.get(0x202..0x206) == Some(b"HdrS") {
        return Ok("bzimage");
    }
    Err("neither an ELF vmlinux nor a bzImage".into())
}

impl Vms {
    /// Must be called inside the daemon's tokio runtime (tap setup runs on it).
    pub fn new(
        store: Arc<Store>,
        storage: Arc<Storage>,
        network: Arc<crate::network::Network>,
        data_dir: &Path,
    ) -> Self {
        let vmm = crate::helpers::Helper::beside_daemon("ferrite-vmm");
        Vms {
            store,
            storage,
            network,
            rt: tokio::runtime::Handle::current(),
            dir: data_dir.join("vms"),
            vmm,
            claims: Claims::new("vm"),
            scope: crate::container::scope_of(data_dir),
            restart_plan: restart::Restarts::default(),
        }
    }

    /// The `ferrite-vmm` helper this engine spawns.
    pub fn vmm_helper(&self) -> &crate::helpers::Helper {
        &self.vmm
    }

    /// Marks the VM busy. Waits up to two seconds for a short operation (the monitor's
    /// cleanup after an exit) before answering 409.
    fn claim(&self, id: &str) -> Result<Claim<'_>, VmError> {
        Ok(self.claims.claim_within(id, Duration::from_secs(2))?)
    }

    /// Claims without waiting (the monitor skips busy VMs and looks again later).
    fn try_claim(&self, id: &str) -> Option<Claim<'_>> {
        self.claims.try_claim(id)
    }

    fn vm_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// The control socket: in the VM's directory, or under /run when that path is too long
    /// for a Unix socket address.
    fn sock(&self, id: &str) -> PathBuf {
        let p = self.vm_dir(id).join("ctl.sock");
        if p.as_os_str().len() < 100 {
            return p;
        }
        PathBuf::from(format!("/run/{}/vm-{id}.sock", self.scope))
    }

    fn runtime_state(&self, id: &str) -> Option<RuntimeState> {
        process::alive(&self.vm_dir(id))
    }

    /// The VM's row, typed.
    fn stored(&self, o: &Object) -> Result<StoredVm, VmError> {
        Ok(spec::parse(&format!("vm {}", o.id), &o.body)?)
    }

    pub fn get(&self, id: &str) -> Result<Object, VmError> {
        self.store
            .read(|c| objects::get(c, KIND, id))?
            .ok_or_else(|| VmError::NotFound(id.to_string()))
    }

    pub fn running(&self, id: &str) -> bool {
        self.runtime_state(id).is_some()
    }

    fn last_exit(&self, id: &str) -> Option<Value> {
        let s = std::fs::read_to_string(self.vm_dir(id).join("exit.json")).ok()?;
        serde_json::from_str(&s).ok()
    }

    /// Times the monitor restarted the VM after a guest reset since its last start through
    /// the API (kept in the VM's directory, so it survives a daemon restart).
    fn restarts(&self, id: &str) -> u64 {
        std::fs::read_to_string(self.vm_dir(id).join("restarts"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    fn set_restarts(&self, id: &str, n: u64) {
        let _ = std::fs::write(self.vm_dir(id).join("restarts"), n.to_string());
    }

    /// Observed state: running or paused (asked of the VMM), or stopped with the last exit;
    /// with the count of automatic restarts (a guest stuck in a reset loop shows here).
    pub fn status(&self, id: &str) -> Value {
        let mut v = match self.runtime_state(id) {
            Some(st) => {
                let state = control::call(&self.sock(id), &json!({"op": "status"}))
                    .ok()
                    .and_then(|v| v["state"].as_str().map(String::from))
                    .unwrap_or_else(|| "running".into());
                json!({"state": state, "pid": st.pid, "started_at": st.started_at})
            }
            None => {
                let mut v = json!({"state": "stopped"});
                if let Some(e) = self.last_exit(id) {
                    v["last_exit"] = e;
                }
                if let Some(t) = self.restart_plan.pending_at(id) {
                    let secs = t
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs_f64().ceil() as i64)
                        .unwrap_or(0);
                    v["next_restart_at"] = json!(crate::time::unix_to_rfc3339(secs));
                }
                v
            }
        };
        v["restarts"] = json!(self.restarts(id));
        v
    }

    /// Checks what a VM refers to: kernel and initrd files, raw disk volumes, host memory.
    pub fn check(&self, body: &VmSpec) -> Result<(), VmError> {
        nics::check(&self.store, body.net.iter().map(|(k, n)| (k, &n.nic)))?;
        let kernel = body.kernel.as_deref().unwrap_or_default();
        let kpath = self
            .storage
            .path(kernel)
            .map_err(|_| invalid("/kernel", format!("volume {kernel} does not exist")))?;
        kernel_kind(&kpath).map_err(|e| invalid("/kernel", format!("{kernel}: {e}")))?;
        if let Some(i) = body.initrd.as_deref() {
            self.storage
                .path(i)
                .map_err(|_| invalid("/initrd", format!("volume {i} does not exist")))?;
        }
        {
            for (slot, d) in &body.disks {
                let field = format!("/disks/{slot}/volume");
                let v = d.volume.as_str();
                let row = self
                    .storage
                    .row(v)
                    .map_err(|_| invalid(&field, format!("volume {v} does not exist")))?;
                if row.vref.format != Format::Raw {
                    return Err(invalid(
                        &field,
                        format!(
                            "{v} is {}; ferrite-vmm disks are raw volumes",
                            row.vref.format.as_str()
                        ),
                    ));
                }
                if row.vref.content != Content::Images {
                    return Err(invalid(
                        &field,
                        format!("{v} holds {}, not disk images", row.vref.content.as_str()),
                    ));
                }
            }
        }
        let mib = body.memory;
        if let Some(total) = host_total_bytes() {
            if mib << 20 > total {
                return Err(invalid(
                    "/memory",
                    format!("{mib} MiB is more than this host has ({} MiB)", total >> 20),
                ));
            }
        }
        Ok(())
    }

    /// Creates a VM's row; nothing runs yet.
    pub fn create(&self, id: u32, body: &Value) -> Result<Object, VmError> {
        let want: VmCreate = spec::parse("the request body", body)?;
        self.check(&want.spec)?;
        let id_s = id.to_string();
        let name = want.name;
        let mut stored = body.clone();
        stored["id"] = json!(id);
        let refs = refs_of(&stored);
        self.store.write(|tx| -> Result<Object, VmError> {
            if let Some(o) = objects::all(tx, KIND)?
                .into_iter()
                .find(|o| o.body["name"] == json!(name))
            {
                return Err(VmError::Conflict(format!(
                    "a vm named {name} already exists (id {})",
                    o.id
                )));
            }
            objects::insert(
                tx,
                KIND,
                &id_s,
                &name,
                None,
                &stored,
                &objects::tags_of(&stored),
            )?;
            objects::set_refs(tx, KIND, &id_s, &refs)?;
            Ok(objects::require(tx, KIND, &id_s)?)
        })
    }

    /// Applies an update (fields present replace the stored ones, `null` clears one) after
    /// the same checks as a create; a running VM picks it up at its next start.
    pub fn update(
        &self,
        id: &str,
        patch: &Value,
        if_match: Option<i64>,
    ) -> Result<Object, VmError> {
        let mut body = self.get(id)?.body;
        objects::merge_patch(&mut body, patch);
        let row: StoredVm = spec::parse(&format!("vm {id}"), &body)?;
        self.check(&row.create.spec)?;
        let tags = objects::tags_of(&body);
        let refs = refs_of(&body);
        Ok(self.store.write(|tx| -> Result<Object, StoreError> {
            objects::update(tx, KIND, id, if_match, &body, &tags)?;
            objects::set_refs(tx, KIND, id, &refs)?;
            objects::require(tx, KIND, id)
        })?)
    }

    /// The machine a VM's row describes, with volume paths resolved. Refuses disks another
    /// running VM has open.
    fn machine_config(&self, id: &str, b: &VmSpec) -> Result<MachineConfig, VmError> {
        self.check(b)?;
        let path = |v: &str| self.storage.path(v).map_err(VmError::from);
        let mut disks = Vec::new();
        let mut ours = Vec::new();
        for (slot, disk) in spec::slots_in_order(&b.disks, "disk") {
            ours.push((slot.clone(), disk.volume.clone()));
            disks.push(DiskConfig {
                path: path(&disk.volume)?,
                read_only: disk.read_only,
                cache: match disk.cache {
                    DiskCache::Writethrough => CacheMode::Writethrough,
                    DiskCache::Writeback => CacheMode::Writeback,
                },
            });
        }
        self.check_disks_free(id, &ours)?;
        let nets = spec::slots_in_order(&b.net, "net")
            .into_iter()
            .map(|(slot, n)| NetConfig {
                tap: nics::host_if(id, &slot),
                mac: nics::mac_of(id, &slot, &n.nic).octets(),
            })
            .collect();
        let mib = b.memory;
        if let Some(avail) = crate::vmm::memory::host_available_bytes() {
            if mib << 20 > avail {
                return Err(VmError::Conflict(format!(
                    "vm {id} needs {mib} MiB; the host has {} MiB available now",
                    avail >> 20
                )));
            }
        }
        Ok(MachineConfig {
            kernel: path(b.kernel.as_deref().unwrap_or_default())?,
            initrd: match b.initrd.as_deref() {
                Some(i) => Some(path(i)?),
                None => None,
            },
            cmdline: b.cmdline.clone().unwrap_or_default(),
            memory_mib: mib,
            vcpus: b.vcpus,
            hugepages: b.hugepages,
            disks,
            nets,
            rng: b.rng,
        })
    }

    /// A disk volume is open by one running guest at a time (409 naming the holder).
    fn check_disks_free(&self, id: &str, disks: &[(String, String)]) -> Result<(), VmError> {
        let all = self.store.read(|c| objects::all(c, KIND))?;
        for other in all.iter().filter(|o| o.id != id && self.running(&o.id)) {
            let Some(theirs) = other.body["disks"].as_object() else {
                continue;
            };
            for (slot, vol) in disks {
                if theirs.values().any(|d| d["volume"].as_str() == Some(vol)) {
                    return Err(VmError::Conflict(format!(
                        "disks.{slot}: volume {vol} is in use by running vm {}",
                        other.id
                    )));
                }
            }
        }
        Ok(())
    }

    /// Creates the VM's taps on their bridges; on failure removes those it made.
    fn attach_taps(&self, id: &str, b: &VmSpec) -> Result<Vec<String>, VmError> {
        let mut made = Vec::new();
        let k = self.network.kernel();
        for (slot, nic) in spec::slots_in_order(&b.net, "net") {
            let tap = nics::host_if(id, &slot);
            // A tap left by a crashed run is replaced, not reused with stale settings.
            let _ = self.rt.block_on(crate::network::attach::detach(k, &tap));
            let r = self.rt.block_on(crate::network::attach::attach(
                k,
                &NicKind::Tap { name: tap.clone() },
                &nics::attachment(id, &slot, &nic.nic),
            ));
            if let Err(e) = r {
                self.detach(&made);
                return Err(match e {
                    crate::network::netlink::KernelError::Unsupported { field, message } => {
                        invalid(&format!("/net/{slot}/{field}"), message)
                    }
                    e => VmError::Runtime(format!("{slot}: {e}")),
                });
            }
            made.push(tap);
        }
        Ok(made)
    }

    fn detach(&self, taps: &[String]) {
        let k = self.network.kernel();
        for t in taps {
            let _ = self.rt.block_on(crate::network::attach::detach(k, t));
        }
    }

    fn taps_of(&self, id: &str) -> Vec<String> {
        let Ok(row) = self.get(id).and_then(|o| self.stored(&o)) else {
            return Vec::new();
        };
        row.create
            .spec
            .net
            .keys()
            .map(|s| nics::host_if(id, s))
            .collect()
    }

    /// Spawns `ferrite-vmm` with `args` and waits until its control socket answers.
    /// Starts a `ferrite-vmm` and waits for its control socket; returns its pid and start time
    /// (for the runtime record).
    fn spawn_vmm(&self, id: &str, args: &[String]) -> Result<(i32, u64), VmError> {
        self.vmm.check()?;
        let dir = self.vm_dir(id);
        let sock = self.sock(id);
        if let Some(p) = sock.parent() {
            std::fs::create_dir_all(p)
                .map_err(|e| VmError::Runtime(format!("creating {}: {e}", p.display())))?;
        }
        let _ = std::fs::remove_file(&sock);
        let _ = std::fs::remove_file(dir.join("exit.json"));
        let log = std::fs::File::create(dir.join("vmm.log"))
            .map_err(|e| VmError::Runtime(format!("vmm.log: {e}")))?;
        let log2 = log
            .try_clone()
            .map_err(|e| VmError::Runtime(e.to_string()))?;
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new(self.vmm.path());
        if let Some(ns) = self.network.kernel().netns_path() {
            // Taps live in the namespace the network engine manages.
            cmd.arg("--netns").arg(ns);
        }
        let mut child = cmd
            .args(args)
            .arg("--api-sock")
            .arg(&sock)
            .arg("--exit-file")
            .arg(dir.join("exit.json"))
            .arg("--no-stdout")
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2)
            // Its own process group: signals aimed at the daemon's group never reach guests.
            .process_group(0)
            .spawn()
            .map_err(|e| VmError::Runtime(format!("running {}: {e}", self.vmm.path().display())))?;
        let pid = child.id() as i32;
        // Read now, while the child is ours and not reaped: once `try_wait` below reaps an
        // early exit, the pid may be reused, and the record must not name another process.
        let starttime = process::starttime(pid).map(|(t, _)| t).unwrap_or(0);
        let t0 = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                // A small guest can run and power off (or reset) before the first look at
                // its socket: the VMM recorded why it exited, so it did start; the monitor
                // handles the exit as for any other.
                let ran = std::fs::read_to_string(dir.join("exit.json"))
                    .ok()
                    .and_then(|s| serde_json::from_str::<Value>(&s).ok())
                    .is_some_and(|v| v["reason"] != "error");
                if ran {
                    return Ok((pid, starttime));
                }
                let out = std::fs::read_to_string(dir.join("vmm.log")).unwrap_or_default();
                let msg = out.trim().trim_start_matches("ferrite-vmm: ");
                // The kernel file itself is the problem (it changed since the VM was made, or
                // passed the create-time look at its header): the VM's `kernel` is to fix.
                if msg.contains(crate::vmm::error::NOT_A_KERNEL) {
                    return Err(invalid("/kernel", format!("vm {id} cannot start: {msg}")));
                }
                return Err(VmError::Runtime(format!(
                    "vm {id} did not start ({status}): {msg}"
                )));
            }
            if control::call(&sock, &json!({"op": "status"})).is_ok() {
                return Ok((pid, starttime));
            }
            if t0.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(VmError::Runtime(format!(
                    "vm {id}: ferrite-vmm did not answer within 30 s"
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn record_runtime(&self, id: &str, (pid, starttime): (i32, u64)) {
        if let Err(e) = process::record(&self.vm_dir(id), pid, Some(starttime)) {
            tracing::warn!(vm = id, error = %e, "could not record the running VM");
        }
    }

    /// Starts a stopped VM; on failure no process or tap is left.
    pub fn start(&self, id: &str) -> Result<Value, VmError> {
        let _b = self.claim(id)?;
        // Before the start: the monitor may count a reset as soon as the guest runs.
        self.set_restarts(id, 0);
        self.cancel_restart(id);
        self.start_locked(id)
    }

    fn start_locked(&self, id: &str) -> Result<Value, VmError> {
        let o = self.get(id)?;
        if self.running(id) {
            return Err(VmError::Conflict(format!("vm {id} is already running")));
        }
        let row = self.stored(&o)?;
        if row.is_template {
            return Err(VmError::Conflict(format!(
                "vm {id} is a template; clone it and start the clone"
            )));
        }
        self.vmm.check()?;
        let cfg = self.machine_config(id, &row.create.spec)?;
        let dir = self.vm_dir(id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| VmError::Runtime(format!("creating {}: {e}", dir.display())))?;
        let cfg_path = dir.join("config.json");
        std::fs::write(
            &cfg_path,
            serde_json::to_vec_pretty(&cfg).unwrap_or_default(),
        )
        .map_err(|e| VmError::Runtime(format!("{}: {e}", cfg_path.display())))?;
        for f in ["serial.log", "serial.log.1"] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        let taps = self.attach_taps(id, &row.create.spec)?;
        let args = vec![
            "--config".to_string(),
            cfg_path.display().to_string(),
            "--serial-log".into(),
            dir.join("serial.log").display().to_string(),
            "--serial-log-size".into(),
            row.create.spec.serial_log_size.to_string(),
        ];
        let spawned = match self.spawn_vmm(id, &args) {
            Ok(p) => p,
            Err(e) => {
                self.detach(&taps);
                return Err(e);
            }
        };
        self.record_runtime(id, spawned);
        Ok(self.status(id))
    }

    /// Kills the VMM process and removes the VM's taps.
    pub fn stop(&self, id: &str) -> Result<Value, VmError> {
        let _b = self.claim(id)?;
        self.get(id)?;
        // A stopped guest waiting for its restart after a reset stays stopped.
        self.cancel_restart(id);
        self.stop_locked(id);
        Ok(self.status(id))
    }

    fn stop_locked(&self, id: &str) {
        if let Some(st) = self.runtime_state(id) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(st.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let t0 = Instant::now();
            while self.runtime_state(id).is_some() && t0.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(5));
            }
            process::reap(st.pid);
        }
        self.finish(id);
    }

    /// Cleans up after a VMM process that is gone: taps, socket, runtime state.
    fn finish(&self, id: &str) {
        self.detach(&self.taps_of(id));
        let _ = std::fs::remove_file(self.sock(id));
        process::clear(&self.vm_dir(id));
    }

    /// Presses the power button, waits up to `timeout` for the guest to power off, then kills.
    pub fn shutdown(&self, id: &str, timeout: Duration) -> Result<Value, VmError> {
        let _b = self.claim(id)?;
        self.get(id)?;
        self.cancel_restart(id);
        if self.running(id) {
            let _ = control::call(&self.sock(id), &json!({"op": "resume"}));
            let _ = control::call(&self.sock(id), &json!({"op": "power_button"}));
            let t0 = Instant::now();
            while self.running(id) && t0.elapsed() < timeout {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.stop_locked(id);
        Ok(self.status(id))
    }

    pub fn reboot(&self, id: &str, timeout: Duration) -> Result<Value, VmError> {
        self.shutdown(id, timeout)?;
        self.start(id)
    }

    fn require_running(&self, id: &str) -> Result<(), VmError> {
        self.get(id)?;
        if !self.running(id) {
            return Err(VmError::Conflict(format!("vm {id} is not running")));
        }
        Ok(())
    }

    fn ctl(&self, id: &str, req: Value) -> Result<Value, VmError> {
        control::call(&self.sock(id), &req).map_err(|e| match e {
            control::CtlError::Refused(m) => VmError::Conflict(format!("vm {id}: {m}")),
            other => VmError::Runtime(format!("vm {id}: {other}")),
        })
    }

    pub fn pause(&self, id: &str, paused: bool) -> Result<Value, VmError> {
        let _b = self.claim(id)?;
        self.require_running(id)?;
        self.ctl(id, json!({"op": if paused { "pause" } else { "resume" }}))?;
        Ok(self.status(id))
    }

    /// The serial console log (both halves of the rotated log), oldest first.
    pub fn serial(&self, id: &str) -> Result<Value, VmError> {
        self.get(id)?;
        let dir = self.vm_dir(id);
        let mut data = std::fs::read(dir.join("serial.log.1")).unwrap_or_default();
        data.extend(std::fs::read(dir.join("serial.log")).unwrap_or_default());
        Ok(json!({"data": String::from_utf8_lossy(&data), "bytes": data.len()}))
    }

    /// Where the live serial log of a running VM is (refused when it is not running).
    pub fn console_log(&self, id: &str) -> Result<PathBuf, VmError> {
        self.require_running(id)?;
        Ok(self.vm_dir(id).join("serial.log"))
    }

    pub fn serial_input(&self, id: &str, data: &str) -> Result<(), VmError> {
        self.require_running(id)?;
        self.ctl(id, json!({"op": "serial_input", "data": data}))
            .map(|_| ())
    }

    /// Deletes a VM (its memory snapshots and their disk snapshots too; its volumes stay);
    /// refused while running unless `force`.
    pub fn delete(&self, id: &str, force: bool) -> Result<(), VmError> {
        let _b = self.claim(id)?;
        let o = self.get(id)?;
        if self.running(id) {
            if !force {
                return Err(VmError::Conflict(format!(
                    "vm {id} is running; stop it first or delete with force=true"
                )));
            }
            self.stop_locked(id);
        }
        self.cancel_restart(id);
        self.finish(id);
        for s in o.body["snapshots"].as_array().into_iter().flatten() {
            if let Some(name) = s["name"].as_str() {
                self.drop_disk_snapshots(&o.body, name);
            }
        }
        self.store.write(|tx| -> Result<(), StoreError> {
            objects::set_refs(tx, KIND, id, &[])?;
            objects::delete(tx, KIND, id, None).map(|_| ())
        })?;
        let _ = std::fs::remove_dir_all(self.vm_dir(id));
        Ok(())
    }

    /// At daemon start: re-adopts running VMs, cleans up after dead ones, starts `onboot`
    /// VMs in order, then watches for VMs that stop on their own.
    pub fn adopt_and_boot(self: &Arc<Self>) {
        let all = self
            .store
            .read(|c| objects::all(c, KIND))
            .unwrap_or_default();
        let mut boot: Vec<(i64, String)> = Vec::new();
        for o in &all {
            // The restart plan goes on where the last daemon left it, for running guests
            // too: past resets still count, and a guest that reset while no daemon ran, or
            // was waiting out a back-off, is restarted by the monitor as it would have been.
            if let Some(saved) = self.saved_restart_plan(&o.id) {
                self.restart_plan.restore(&o.id, &saved, Instant::now());
            }
            if let Some(st) = self.runtime_state(&o.id) {
                tracing::info!(vm = %o.id, pid = st.pid, "re-adopted a running vm");
                continue;
            }
            let was_running = self.vm_dir(&o.id).join("runtime.json").exists();
            if was_running {
                self.finish(&o.id);
            }
            let reset = self
                .last_exit(&o.id)
                .filter(|e| was_running && e["reason"] == "reset");
            if let Some(exit) = reset {
                tracing::info!(vm = %o.id, "guest reset while the daemon was away");
                self.after_reset(&o.id, exit);
                continue;
            }
            if self.restart_plan.pending_at(&o.id).is_some() {
                tracing::info!(vm = %o.id, "a restart after a guest reset is still planned");
                continue;
            }
            if o.body["onboot"].as_bool().unwrap_or(false) {
                boot.push((
                    o.body["startup_order"].as_i64().unwrap_or(i64::MAX),
                    o.id.clone(),
                ));
            }
        }
        boot.sort();
        for (_, id) in boot {
            match self.start(&id) {
                Ok(_) => tracing::info!(vm = %id, "started on boot"),
                Err(e) => tracing::error!(vm = %id, error = %e, "onboot start failed"),
            }
        }
        let me = Arc::downgrade(self);
        let _ = std::thread::Builder::new()
            .name("vm-monitor".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(250));
                let Some(vms) = me.upgrade() else { return };
                vms.check_exits();
            });
    }

    /// Where a planned restart is marked, so a restarted daemon makes it too.
    fn restart_mark(&self, id: &str) -> PathBuf {
        self.vm_dir(id).join(RESTART_MARK)
    }

    /// Cancels a planned restart after a guest reset, and forgets past resets (the user took
    /// over through the API).
    fn cancel_restart(&self, id: &str) {
        self.restart_plan.forget(id);
        self.save_restart_plan(id);
    }

    /// Takes a due restart for making (see [`restart::Restarts::take`]); the saved plan
    /// keeps the count of past resets.
    fn take_restart(&self, id: &str) -> bool {
        let taken = self.restart_plan.take(id);
        self.save_restart_plan(id);
        taken
    }

    /// Writes the VM's restart plan next to it, so the next daemon process goes on with it;
    /// removes the file when there is no plan left.
    fn save_restart_plan(&self, id: &str) {
        let path = self.restart_mark(id);
        let written = match self.restart_plan.saved(id) {
            // Written aside and renamed over: a crash mid-write must not turn "gave up" into
            // "a restart is due".
            Some(s) => {
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, json!(s).to_string())
                    .and_then(|_| std::fs::rename(&tmp, &path))
            }
            None => std::fs::remove_file(&path).or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            }),
        };
        if let Err(e) = written {
            tracing::warn!(vm = %id, error = %e, "cannot save the restart plan");
        }
    }

    /// The restart plan an earlier daemon process saved. An empty mark (written by an older
    /// version while a restart was planned) means a restart is due.
    fn saved_restart_plan(&self, id: &str) -> Option<restart::Saved> {
        let text = std::fs::read(self.restart_mark(id)).ok()?;
        if text.is_empty() {
            return Some(restart::Saved {
                resets: Vec::new(),
                due: Some(0),
            });
        }
        serde_json::from_slice(&text)
            .map_err(
                |e| tracing::warn!(vm = %id, error = %e, "ignoring an unreadable restart plan"),
            )
            .ok()
    }

    /// A guest reset (its `exit.json` says so): plans its restart with back-off, or gives up
    /// and says why in `exit.json`.
    fn after_reset(&self, id: &str, mut exit: Value) {
        match self.restart_plan.plan(id, Instant::now()) {
            restart::Decision::After(d) => {
                tracing::info!(vm = %id, delay_ms = d.as_millis() as u64, "guest reset: restart planned")
            }
            restart::Decision::GiveUp => {
                let why = format!(
                    "the guest reset again after {} automatic restarts within {} s; the daemon stopped restarting it (start it through the API)",
                    restart::BURST,
                    restart::WINDOW.as_secs()
                );
                tracing::warn!(vm = %id, "{why}");
                exit["restarts_stopped"] = json!(why);
                let _ = std::fs::write(self.vm_dir(id).join("exit.json"), exit.to_string());
            }
        }
        // Saved either way: a daemon restarted during the back-off still makes the restart
        // (see `adopt_and_boot`), and one restarted after giving up still counts the resets.
        self.save_restart_plan(id);
    }

    /// Finds VMs whose process ended on its own: cleans up, and restarts reset guests.
    fn check_exits(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().to_string();
            if !e.path().join("runtime.json").exists() || self.running(&id) {
                continue;
            }
            let Some(_b) = self.try_claim(&id) else {
                continue;
            };
            if self.running(&id) || !e.path().join("runtime.json").exists() {
                continue;
            }
            self.finish(&id);
            let reason = self.last_exit(&id);
            let shown = reason.clone().unwrap_or(Value::Null).to_string();
            tracing::info!(vm = %id, exit = %shown, "vm stopped on its own");
            if let Some(exit) = reason.filter(|r| r["reason"] == "reset") {
                self.after_reset(&id, exit);
            }
        }
        self.restart_due();
    }

    /// Makes the planned restarts that are due. A VM busy with an API call is tried again on
    /// the next round; one that is running again, or gone, needs none.
    fn restart_due(&self) {
        for id in self.restart_plan.due(Instant::now()) {
            let Some(_b) = self.try_claim(&id) else {
                continue;
            };
            if !self.take_restart(&id) || self.running(&id) || self.get(&id).is_err() {
                continue;
            }
            self.set_restarts(&id, self.restarts(&id) + 1);
            match self.start_locked(&id) {
                Ok(_) => tracing::info!(vm = %id, "restarted after a guest reset"),
                Err(e) => tracing::error!(vm = %id, error = %e, "restart after reset failed"),
            }
        }
    }
}

fn host_total_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// What a VM refers to: kernel, initrd and disk volumes and its NICs' bridges (so deleting
/// any of them is refused with 409 naming the VM).
pub fn refs_of(body: &Value) -> Vec<String> {
    let mut r = Vec::new();
    for k in ["kernel", "initrd"] {
        if let Some(v) = body[k].as_str() {
            r.push(crate::guest::volume_ref(v));
        }
    }
    for d in body["disks"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
    {
        if let Some(v) = d["volume"].as_str() {
            r.push(crate::guest::volume_ref(v));
        }
    }
    for n in body["net"].as_object().into_iter().flat_map(|m| m.values()) {
        if let Some(b) = n["bridge"].as_str() {
            r.push(b.to_string());
        }
    }
    r.sort();
    r.dedup();
    r
}
