//! Virtual machines: desired configuration in the store (kind `vm`), one `ferrite-vmm`
//! process per running VM, driven over its control socket. Runtime state (the VMM's PID and
//! start time) lives in `DATA/vms/ID/runtime.json`, so a restarted daemon re-adopts running
//! VMs. A monitor thread notices VMs that stopped on their own, cleans up their taps, and
//! starts again the ones whose guest asked for a reset.

mod checks;
mod clones;
mod control;
mod engine;
mod monitor;
pub mod qemu;
mod restart;
mod start;

pub use clones::CloneSpec;
mod snapshots;

use crate::guest::GuestError;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::guest::claims::Claim;
use crate::guest::nics;
use crate::guest::process::{self, RuntimeState};
use crate::guest::spec::{self, DiskCache, StoredVm, VmCreate, VmEngine, VmSpec};
use crate::network::attach::NicKind;
use crate::storage::{Content, Format, Storage};
use crate::store::{objects, Object, Store, StoreError};
use crate::vmm::config::{DiskConfig, MachineConfig, NetConfig};
use crate::vmm::devices::virtio::blk::CacheMode;

/// Store kind of VMs.
pub const KIND: &str = "vm";

/// VM operations fail with the shared guest error.
pub type VmError = crate::guest::GuestError;

/// In a VM's directory while it has a restart plan after guest resets (a
/// [`restart::Saved`] as JSON): past resets and a planned restart.
const RESTART_MARK: &str = "restart-planned";

/// The VM engine.
pub struct Vms {
    /// Store, storage, network, runtime directory, claims and scope.
    base: crate::guest::Base,
    vmm: crate::helpers::Helper,
    /// QEMU and its firmware, for VMs with engine qemu.
    qemu: qemu::Host,
    /// Kept connections to qemu VMs' serial sockets (see [`qemu::serial`]).
    serial_links: qemu::serial::SerialLinks,
    /// Recent guest agent answers (see [`qemu::agent`]).
    agents: qemu::agent::AgentCache,
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
        qemu: qemu::Host,
    ) -> Self {
        let vmm = crate::helpers::Helper::beside_daemon("ferrite-vmm");
        Vms {
            base: crate::guest::Base::new(KIND, "vms", store, storage, network, data_dir),
            vmm,
            qemu,
            serial_links: Default::default(),
            agents: Default::default(),
            restart_plan: restart::Restarts::default(),
        }
    }

    /// The `ferrite-vmm` helper this engine spawns.
    pub fn vmm_helper(&self) -> &crate::helpers::Helper {
        &self.vmm
    }

    /// The QEMU binary the qemu engine runs.
    pub fn qemu_helper(&self) -> &crate::helpers::Helper {
        &self.qemu.binary
    }

    /// Marks the VM busy. Waits up to two seconds for a short operation (the monitor's
    /// cleanup after an exit) before answering 409.
    fn claim(&self, id: &str) -> Result<Claim<'_>, VmError> {
        Ok(self.base.claims.claim_within(id, Duration::from_secs(2))?)
    }

    /// Claims without waiting (the monitor skips busy VMs and looks again later).
    fn try_claim(&self, id: &str) -> Option<Claim<'_>> {
        self.base.claims.try_claim(id)
    }

    fn vm_dir(&self, id: &str) -> PathBuf {
        self.base.dir_of(id)
    }

    /// The control socket: in the VM's directory, or under /run when that path is too long
    /// for a Unix socket address.
    fn sock(&self, id: &str) -> PathBuf {
        let p = self.vm_dir(id).join("ctl.sock");
        if p.as_os_str().len() < 100 {
            return p;
        }
        PathBuf::from(format!("/run/{}/vm-{id}.sock", self.base.scope))
    }

    fn runtime_state(&self, id: &str) -> Option<RuntimeState> {
        self.base.alive(id)
    }

    fn stored(&self, o: &Object) -> Result<StoredVm, VmError> {
        self.base.typed(o)
    }

    pub fn get(&self, id: &str) -> Result<Object, VmError> {
        self.base.get(id)
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
            Some(st) if self.runs_qemu(id) => {
                let (state, accel) = self.qemu_status(id);
                let mut v = json!({"state": state, "pid": st.pid, "started_at": st.started_at,
                                   "engine": "qemu"});
                if let Some(a) = accel {
                    v["accel"] = json!(a);
                }
                if let Some(a) = self.agent_status(id) {
                    v["agent"] = a;
                }
                v
            }
            Some(st) => {
                let state = control::call(&self.sock(id), &json!({"op": "status"}))
                    .ok()
                    .and_then(|v| v["state"].as_str().map(String::from))
                    .unwrap_or_else(|| "running".into());
                json!({"state": state, "pid": st.pid, "started_at": st.started_at,
                       "engine": "microvm", "accel": "kvm"})
            }
            None => {
                let mut v = json!({"state": "stopped"});
                if self.runs_qemu(id) && self.last_exit(id).is_none() {
                    // QEMU ended and the monitor has not been round yet: say why now.
                    self.qemu_exit(id);
                }
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

    /// Checks what a VM refers to (volumes, bridges, firmware, host memory) for its engine.
    pub fn check(&self, body: &VmSpec) -> Result<(), VmError> {
        nics::check(&self.base.store, body.net.iter().map(|(k, n)| (k, &n.nic)))?;
        checks::same_volume_twice(body)?;
        match body.engine() {
            VmEngine::Qemu => self.check_qemu(body)?,
            VmEngine::Microvm => {
                checks::microvm_fields(body)?;
                self.check_microvm(body)?;
            }
        }
        let mib = body.memory;
        if let Some(total) = host_total_bytes() {
            if mib << 20 > total {
                return Err(GuestError::invalid(
                    "/memory",
                    format!("{mib} MiB is more than this host has ({} MiB)", total >> 20),
                ));
            }
        }
        Ok(())
    }

    /// What ferrite-vmm needs: a kernel it can load, raw image disks.
    fn check_microvm(&self, body: &VmSpec) -> Result<(), VmError> {
        let Some(kernel) = body.kernel.as_deref() else {
            return Err(GuestError::invalid(
                "/kernel",
                "the microvm engine boots a kernel: set kernel, or engine qemu to boot disks and ISOs",
            ));
        };
        let kpath = self.base.storage.path(kernel).map_err(|_| {
            GuestError::invalid("/kernel", format!("volume {kernel} does not exist"))
        })?;
        kernel_kind(&kpath)
            .map_err(|e| GuestError::invalid("/kernel", format!("{kernel}: {e}")))?;
        if let Some(i) = body.initrd.as_deref() {
            self.base.storage.path(i).map_err(|_| {
                GuestError::invalid("/initrd", format!("volume {i} does not exist"))
            })?;
        }
        {
            for (slot, d) in &body.disks {
                let field = format!("/disks/{slot}/volume");
                let v = d.volume.as_str();
                let row = self.base.storage.row(v).map_err(|_| {
                    GuestError::invalid(&field, format!("volume {v} does not exist"))
                })?;
                if row.vref.format != Format::Raw {
                    return Err(GuestError::invalid(
                        &field,
                        format!(
                            "{v} is {}; ferrite-vmm disks are raw volumes",
                            row.vref.format.as_str()
                        ),
                    ));
                }
                if row.vref.content != Content::Images {
                    return Err(GuestError::invalid(
                        &field,
                        format!("{v} holds {}, not disk images", row.vref.content.as_str()),
                    ));
                }
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
        // The engine a VM runs under is fixed at create unless changed by an update.
        stored["engine"] = json!(want.spec.engine().as_str());
        let refs = refs_of(&stored);
        self.base.store.write(|tx| -> Result<Object, VmError> {
            crate::guest::insert_row(tx, KIND, &id_s, &name, &stored)?;
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
        let before = self.get(id)?.body;
        let mut body = before.clone();
        objects::merge_patch(&mut body, patch);
        let row: StoredVm = spec::parse(&format!("vm {id}"), &body)?;
        self.check(&row.create.spec)?;
        let old: StoredVm = spec::parse(&format!("vm {id}"), &before)?;
        // A running QEMU takes new media in its CD-ROM drives at once.
        let live = old.create.spec.cdrom != row.create.spec.cdrom
            && self.runs_qemu(id)
            && self.running(id);
        let _claim = if live { Some(self.claim(id)?) } else { None };
        let written = self.write_row(id, if_match, &body)?;
        if live {
            if let Err(e) = self.change_media(id, &old.create.spec, &row.create.spec) {
                // Nothing half-made: the row goes back to what the running VM has.
                self.write_row(id, None, &before)?;
                return Err(e);
            }
        }
        Ok(written)
    }

    fn write_row(&self, id: &str, if_match: Option<i64>, body: &Value) -> Result<Object, VmError> {
        let tags = objects::tags_of(body);
        let refs = refs_of(body);
        Ok(self.base.store.write(|tx| -> Result<Object, StoreError> {
            objects::update(tx, KIND, id, if_match, body, &tags)?;
            objects::set_refs(tx, KIND, id, &refs)?;
            objects::require(tx, KIND, id)
        })?)
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
        if self.runs_qemu(id) && self.running(id) {
            // QEMU flushes its disk caches on quit; SIGKILL below if it does not go.
            let _ = qemu::qmp::call(&self.qemu_files(id).qmp, "quit", None);
        }
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
        self.clean_up_qemu(id);
        process::clear(&self.vm_dir(id));
    }

    /// Presses the power button, waits up to `timeout` for the guest to power off, then kills.
    pub fn shutdown(&self, id: &str, timeout: Duration) -> Result<Value, VmError> {
        let _b = self.claim(id)?;
        self.get(id)?;
        self.cancel_restart(id);
        if self.running(id) && self.runs_qemu(id) {
            let _ = self.qmp(id, "cont", None);
            // The agent shuts down guests that ignore ACPI (no acpid); else the button.
            if !self.agent_shutdown(id) {
                let _ = self.qmp(id, "system_powerdown", None);
            }
        } else if self.running(id) {
            let _ = control::call(&self.sock(id), &json!({"op": "resume"}));
            let _ = control::call(&self.sock(id), &json!({"op": "power_button"}));
        }
        if self.running(id) {
            let t0 = Instant::now();
            while self.running(id) && t0.elapsed() < timeout {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if !self.running(id) && self.runs_qemu(id) {
            // The guest powered off as asked: say so before the cleanup forgets it was QEMU.
            self.qemu_exit(id);
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
            other => self.base.failed(format!("vm {id}: control socket"), other),
        })
    }

    pub fn pause(&self, id: &str, paused: bool) -> Result<Value, VmError> {
        let _b = self.claim(id)?;
        self.require_running(id)?;
        if self.runs_qemu(id) {
            self.qmp(id, if paused { "stop" } else { "cont" }, None)?;
            return Ok(self.status(id));
        }
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
        if self.runs_qemu(id) {
            return self.qemu_serial_input(id, data.as_bytes());
        }
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
        // Best effort: a row that no longer parses is still deleted, its disk snapshots left.
        match self.stored(&o) {
            Ok(row) => {
                for s in o.body["snapshots"].as_array().into_iter().flatten() {
                    if let Some(name) = s["name"].as_str() {
                        self.drop_disk_snapshots(&row.create.spec, name);
                    }
                }
            }
            Err(e) => tracing::warn!(vm = id, error = %e, "disk snapshots not removed"),
        }
        self.base.store.write(|tx| -> Result<(), StoreError> {
            objects::set_refs(tx, KIND, id, &[])?;
            objects::delete(tx, KIND, id, None).map(|_| ())
        })?;
        let _ = std::fs::remove_dir_all(self.vm_dir(id));
        Ok(())
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
    for c in body["cdrom"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
    {
        if let Some(v) = c["volume"].as_str() {
            r.push(crate::guest::volume_ref(v));
        }
    }
    if let Some(v) = body["cloud_init"]["user_data"].as_str() {
        r.push(crate::guest::volume_ref(v));
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
