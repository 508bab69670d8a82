//! The QEMU engine: full operating systems (firmware, disks, ISOs) through Debian's
//! `qemu-system-x86_64`, one process per VM controlled over QMP on a socket in the VM's
//! directory. It shares everything else with the microVM engine (rows, taps, claims, the
//! monitor, re-adoption after a daemon restart): [`Vms`] asks the row's `engine` and calls
//! in here for what differs (checks, the command line, status, power, serial input).
//!
//! QEMU runs under its seccomp sandbox ([`argv::SANDBOX`]), in its own process group, in the
//! network engine's namespace (entered before exec so QEMU opens the taps there).

pub mod agent;
pub mod argv;
pub mod cloudinit;
pub mod qmp;
pub mod serial;
mod setup;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{VmError, Vms};
use crate::guest::nics;
use crate::guest::process;
use crate::guest::spec::{self, Accel, DiskBus, Firmware, StoredVm, VmSpec};
use crate::guest::GuestError;
use crate::storage::{Content, Format};

/// Where the engine finds QEMU and its firmware.
#[derive(Debug, Clone)]
pub struct Host {
    pub binary: crate::helpers::Helper,
    /// Debian's `ovmf` package: `OVMF_CODE_4M.fd` and `OVMF_VARS_4M.fd`.
    pub ovmf_dir: PathBuf,
}

impl Host {
    pub fn new(binary: &Path, ovmf_dir: PathBuf) -> Host {
        Host {
            binary: crate::helpers::Helper::system(
                "qemu-system-x86_64",
                binary,
                crate::helpers::QEMU_HINT,
            ),
            ovmf_dir,
        }
    }

    /// OVMF's code and the variable store template, or why there is none.
    pub fn ovmf(&self) -> Result<(PathBuf, PathBuf), String> {
        for (code, vars) in [
            ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"),
            ("OVMF_CODE.fd", "OVMF_VARS.fd"),
        ] {
            let (c, v) = (self.ovmf_dir.join(code), self.ovmf_dir.join(vars));
            if c.is_file() && v.is_file() {
                return Ok((c, v));
            }
        }
        Err(format!(
            "UEFI firmware (OVMF_CODE_4M.fd and OVMF_VARS_4M.fd) is not in {}; install Debian's ovmf package (apt install ovmf)",
            self.ovmf_dir.display()
        ))
    }
}

/// Whether KVM here runs stock kernels at speed: a hardware-assisted module is loaded. The
/// software-assisted `kvm_pvm` runs micro-guests but not a stock kernel in useful time.
pub fn kvm_at_speed() -> bool {
    Path::new("/dev/kvm").exists()
        && (Path::new("/sys/module/kvm_intel").exists()
            || Path::new("/sys/module/kvm_amd").exists())
}

/// Whether the file starts like an ISO 9660 image (the `CD001` volume descriptor at sector
/// 16).
pub fn is_iso9660(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut id = [0u8; 5];
    f.seek(SeekFrom::Start(16 * 2048 + 1)).is_ok()
        && f.read_exact(&mut id).is_ok()
        && &id == b"CD001"
}

/// Marks the VM's directory as running QEMU (read by status, power and serial calls).
const ENGINE_MARK: &str = "engine-qemu";

impl Vms {
    /// A socket in the VM's directory, or under /run when that path is too long.
    fn qemu_sock(&self, id: &str, name: &str) -> PathBuf {
        let p = self.vm_dir(id).join(format!("{name}.sock"));
        if p.as_os_str().len() < 100 {
            return p;
        }
        PathBuf::from(format!("/run/{}/vm-{id}-{name}.sock", self.base.scope))
    }

    pub(super) fn qemu_files(&self, id: &str) -> argv::Files {
        argv::Files {
            qmp: self.qemu_sock(id, "qmp"),
            serial: self.qemu_sock(id, "serial"),
            serial_log: self.vm_dir(id).join("serial.log"),
            vnc: self.qemu_sock(id, "vnc"),
        }
    }

    /// The guest agent's socket.
    pub(super) fn qga_sock(&self, id: &str) -> PathBuf {
        self.qemu_sock(id, "qga")
    }

    /// Whether the running process of VM `id` is QEMU.
    pub(super) fn runs_qemu(&self, id: &str) -> bool {
        self.vm_dir(id).join(ENGINE_MARK).exists()
    }

    /// The VM's UEFI variable store (copied from OVMF's template at the first UEFI start).
    pub(super) fn efivars(&self, id: &str) -> PathBuf {
        self.vm_dir(id).join("efivars.fd")
    }

    /// What only the qemu engine checks: firmware, image formats, CD-ROM images, boot order,
    /// SATA ports.
    pub(super) fn check_qemu(&self, b: &VmSpec) -> Result<(), VmError> {
        if b.hugepages {
            return Err(GuestError::invalid(
                "/hugepages",
                "the qemu engine does not back memory with hugepages; set hugepages false or engine microvm",
            ));
        }
        if b.firmware == Firmware::Uefi {
            self.qemu
                .ovmf()
                .map_err(|e| GuestError::invalid("/firmware", e))?;
        }
        if let Some(k) = b.kernel.as_deref() {
            self.base.storage.path(k).map_err(|_| {
                GuestError::invalid("/kernel", format!("volume {k} does not exist"))
            })?;
        }
        for (slot, d) in &b.disks {
            let field = format!("/disks/{slot}/volume");
            let v = d.volume.as_str();
            let row =
                self.base.storage.row(v).map_err(|_| {
                    GuestError::invalid(&field, format!("volume {v} does not exist"))
                })?;
            if row.vref.content != Content::Images {
                return Err(GuestError::invalid(
                    &field,
                    format!("{v} holds {}, not disk images", row.vref.content.as_str()),
                ));
            }
            if !matches!(row.vref.format, Format::Raw | Format::Qcow2) {
                return Err(GuestError::invalid(
                    &field,
                    format!(
                        "{v} is {}; QEMU disks are raw or qcow2",
                        row.vref.format.as_str()
                    ),
                ));
            }
        }
        for (slot, c) in &b.cdrom {
            let Some(v) = c.volume.as_deref() else {
                continue;
            };
            let field = format!("/cdrom/{slot}/volume");
            let row =
                self.base.storage.row(v).map_err(|_| {
                    GuestError::invalid(&field, format!("volume {v} does not exist"))
                })?;
            if row.vref.content != Content::Iso {
                return Err(GuestError::invalid(
                    &field,
                    format!(
                        "{v} holds {}; a CD-ROM takes an iso volume",
                        row.vref.content.as_str()
                    ),
                ));
            }
            let path = self.base.storage.path(v)?;
            if !is_iso9660(&path) {
                return Err(GuestError::invalid(
                    &field,
                    format!("{v} is not an ISO 9660 image (no CD001 descriptor at sector 16)"),
                ));
            }
        }
        if let Some(boot) = &b.boot {
            for (i, slot) in boot.iter().enumerate() {
                let there = b.disks.contains_key(slot)
                    || b.cdrom.contains_key(slot)
                    || b.net.contains_key(slot);
                if !there {
                    return Err(GuestError::invalid(
                        &format!("/boot/{i}"),
                        format!("{slot} is not a disk, CD-ROM or NIC of this VM"),
                    ));
                }
            }
        }
        if let Some(ci) = &b.cloud_init {
            self.check_cloud_init(b, ci)?;
        }
        let sata = b.disks.values().filter(|d| d.bus == DiskBus::Sata).count();
        if sata + b.cdrom.len() > argv::SATA_PORTS {
            return Err(GuestError::invalid(
                "/disks",
                format!(
                    "{sata} SATA disks and {} CD-ROMs: q35's SATA controller has {} ports",
                    b.cdrom.len(),
                    argv::SATA_PORTS
                ),
            ));
        }
        Ok(())
    }

    /// The machine a qemu VM's row describes, resolved: paths, accelerator, boot order.
    pub(super) fn qemu_machine(&self, id: &str, row: &StoredVm) -> Result<argv::Machine, VmError> {
        let b = &row.create.spec;
        self.check(b)?;
        let path = |v: &str| self.base.storage.path(v).map_err(VmError::from);
        let ours: Vec<(String, String)> = b
            .disks
            .iter()
            .map(|(s, d)| (s.clone(), d.volume.clone()))
            .collect();
        self.check_disks_free(id, &ours)?;
        let mut disks = Vec::new();
        for (slot, d) in spec::slots_in_order(&b.disks, "disk") {
            let vrow = self.base.storage.row(&d.volume)?;
            disks.push(argv::Disk {
                slot,
                path: path(&d.volume)?,
                format: vrow.vref.format.as_str(),
                bus: d.bus,
                cache: d.cache,
                read_only: d.read_only,
                discard: d.discard,
                iothread: d.iothread,
            });
        }
        let mut cdroms = Vec::new();
        for (slot, c) in spec::slots_in_order(&b.cdrom, "cdrom") {
            cdroms.push(argv::Cdrom {
                slot,
                path: match c.volume.as_deref() {
                    Some(v) => Some(path(v)?),
                    None => None,
                },
            });
        }
        let nics = spec::slots_in_order(&b.net, "net")
            .into_iter()
            .map(|(slot, n)| argv::Nic {
                tap: nics::host_if(id, &slot),
                mac: nics::mac_of(id, &slot, &n.nic).to_string(),
                model: n.model,
                slot,
            })
            .collect();
        let boot = match &b.boot {
            Some(order) => order.clone(),
            None => disks
                .iter()
                .map(|d: &argv::Disk| d.slot.clone())
                .chain(cdroms.iter().map(|c: &argv::Cdrom| c.slot.clone()))
                .collect(),
        };
        let kvm = match b.accel {
            Accel::Kvm => true,
            Accel::Tcg => false,
            Accel::Auto => kvm_at_speed(),
        };
        if kvm && !Path::new("/dev/kvm").exists() {
            return Err(GuestError::invalid(
                "/accel",
                "accel kvm needs /dev/kvm, which this host lacks; use auto or tcg",
            ));
        }
        let uefi = match b.firmware {
            Firmware::Bios => None,
            Firmware::Uefi => {
                let (code, template) = self
                    .qemu
                    .ovmf()
                    .map_err(|e| GuestError::invalid("/firmware", e))?;
                let vars = self.efivars(id);
                if !vars.exists() {
                    let tmp = vars.with_extension("tmp");
                    std::fs::copy(&template, &tmp)
                        .and_then(|_| std::fs::rename(&tmp, &vars))
                        .map_err(|e| self.base.failed("copying the UEFI variable store", e))?;
                }
                Some(argv::Uefi { code, vars })
            }
        };
        let kernel = match b.kernel.as_deref() {
            Some(k) => Some((
                path(k)?,
                match b.initrd.as_deref() {
                    Some(i) => Some(path(i)?),
                    None => None,
                },
                b.cmdline.clone().unwrap_or_default(),
            )),
            None => None,
        };
        Ok(argv::Machine {
            name: row.create.name.clone(),
            kvm,
            vcpus: b.vcpus,
            memory_mib: b.memory,
            uefi,
            kernel,
            disks,
            cdroms,
            nics,
            boot,
            rng: b.rng,
            seed: None,
            agent: b.agent.then(|| self.qga_sock(id)),
            files: self.qemu_files(id),
        })
    }

    /// Starts a qemu VM: taps, then QEMU, which counts as started once QMP answers. On
    /// failure no process, tap or socket is left.
    pub(super) fn start_qemu(&self, id: &str, row: &StoredVm) -> Result<(), VmError> {
        self.qemu.binary.check()?;
        let dir = self.vm_dir(id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| self.base.failed(format!("creating {}", dir.display()), e))?;
        let mut machine = self.qemu_machine(id, row)?;
        machine.seed = self.write_seed(id, row)?;
        let args = machine
            .argv()
            .map_err(|e| GuestError::invalid("/disks", e))?;
        for f in ["serial.log", "serial.log.1", "exit.json", "exit-status"] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        let procs = self.prepare_cgroup(id, &machine)?;
        let taps = match self.attach_taps(id, &row.create.spec) {
            Ok(t) => t,
            Err(e) => {
                let _ = self.qemu_cgroup(id).remove();
                return Err(e);
            }
        };
        match self.spawn_qemu(id, &args, procs) {
            Ok(p) => {
                let _ = std::fs::write(dir.join(ENGINE_MARK), b"");
                self.record_runtime(id, p);
                Ok(())
            }
            Err(e) => {
                self.detach(&taps);
                self.clean_up_qemu(id);
                Err(e)
            }
        }
    }

    /// What a QEMU process leaves once it is gone: the kept serial connection, its cgroup,
    /// the cached agent answer, its sockets and the engine mark.
    pub(super) fn clean_up_qemu(&self, id: &str) {
        self.serial_links.close(id);
        let cg = self.qemu_cgroup(id);
        if cg.exists() {
            if let Err(e) = cg.remove() {
                tracing::warn!(vm = %id, error = %e, "cgroup not removed");
            }
        }
        self.agents.forget(id);
        let f = self.qemu_files(id);
        for p in [f.qmp, f.serial, f.vnc, self.qga_sock(id)] {
            let _ = std::fs::remove_file(p);
        }
        let _ = std::fs::remove_file(self.vm_dir(id).join(ENGINE_MARK));
    }

    /// Runs QEMU in its own process group (in the network engine's namespace) and waits
    /// until QMP answers; returns its pid and start time.
    fn spawn_qemu(
        &self,
        id: &str,
        args: &[String],
        cgroup_procs: Vec<std::fs::File>,
    ) -> Result<(i32, u64), VmError> {
        use std::os::unix::process::CommandExt;
        let dir = self.vm_dir(id);
        let files = self.qemu_files(id);
        for p in [&files.qmp, &files.serial, &files.vnc, &self.qga_sock(id)] {
            if let Some(parent) = p.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let _ = std::fs::remove_file(p);
        }
        let log = std::fs::File::create(dir.join("qemu.log"))
            .map_err(|e| self.base.failed("creating qemu.log", e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| self.base.failed("sharing qemu.log", e))?;
        let netns = match self.base.network.kernel().netns_path() {
            Some(ns) => Some(
                std::fs::File::open(ns)
                    .map_err(|e| self.base.failed(format!("opening {}", ns.display()), e))?,
            ),
            None => None,
        };
        let mut cmd = std::process::Command::new(self.qemu.binary.path());
        cmd.args(args)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0);
        // SAFETY: write(2) and setns(2) are async-signal-safe; the fds were opened before the
        // fork, and nothing here allocates.
        unsafe {
            cmd.pre_exec(move || {
                for f in &cgroup_procs {
                    // "0": the writing process itself.
                    nix::unistd::write(f, b"0").map_err(std::io::Error::from)?;
                }
                if let Some(ns) = &netns {
                    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(std::io::Error::from)?;
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            self.base
                .failed(format!("running {}", self.qemu.binary.path().display()), e)
        })?;
        let pid = child.id() as i32;
        let starttime = process::starttime(pid).map(|(t, _)| t).unwrap_or(0);
        let t0 = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let out = std::fs::read_to_string(dir.join("qemu.log")).unwrap_or_default();
                return Err(self.base.failed(
                    format!("vm {id} did not start ({status})"),
                    out.trim().to_string(),
                ));
            }
            if qmp::call(&files.qmp, "query-status", None).is_ok() {
                return Ok((pid, starttime));
            }
            if t0.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(self.base.failed(
                    format!("starting vm {id}"),
                    "QEMU's QMP socket did not answer within 30 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// QMP on a running qemu VM; QEMU's refusals are conflicts, a dead socket an error.
    pub(super) fn qmp(&self, id: &str, cmd: &str, args: Option<Value>) -> Result<Value, VmError> {
        qmp::call(&self.qemu_files(id).qmp, cmd, args).map_err(|e| match e {
            qmp::QmpError::Refused { desc, .. } => VmError::Conflict(format!("vm {id}: {desc}")),
            other => self.base.failed(format!("vm {id}: QMP"), other),
        })
    }

    /// `state` (running or paused) and `accel` of a running qemu VM, asked over QMP.
    pub(super) fn qemu_status(&self, id: &str) -> (String, Option<&'static str>) {
        let Ok(mut s) = qmp::Session::open(&self.qemu_files(id).qmp, Duration::from_secs(5)) else {
            return ("running".into(), None);
        };
        let state = match s.execute("query-status", None) {
            Ok(v) if matches!(v["status"].as_str(), Some("paused" | "suspended")) => "paused",
            _ => "running",
        };
        let accel =
            s.execute("query-kvm", None)
                .ok()
                .map(|v| if v["enabled"] == true { "kvm" } else { "tcg" });
        (state.into(), accel)
    }

    /// What the guest agent reports, if the VM has the channel and the agent answers.
    pub(super) fn agent_status(&self, id: &str) -> Option<Value> {
        let sock = self.qga_sock(id);
        if !sock.exists() {
            return None;
        }
        self.agents.summary(id, &sock)
    }

    /// Asks the guest agent to power the guest off; false when no agent answers.
    pub(super) fn agent_shutdown(&self, id: &str) -> bool {
        let sock = self.qga_sock(id);
        let t = Duration::from_secs(1);
        sock.exists()
            && agent::call(&sock, "guest-ping", None, t).is_some()
            && agent::call(
                &sock,
                "guest-shutdown",
                Some(json!({"mode": "powerdown"})),
                t,
            )
            .is_some()
    }

    /// The VNC socket of a running qemu VM (409 for a stopped VM or a microVM, which has no
    /// display).
    pub fn vnc_socket(&self, id: &str) -> Result<PathBuf, VmError> {
        self.require_running(id)?;
        if !self.runs_qemu(id) {
            return Err(VmError::Conflict(format!(
                "vm {id} is a microVM: it has a serial console (GET /vms/{id}/console) and no display"
            )));
        }
        Ok(self.qemu_files(id).vnc)
    }

    /// Changes or ejects the media of a running VM's existing CD-ROM drives to match `new`
    /// (drives added or removed take effect at the next start: SATA has no hotplug here).
    pub(super) fn change_media(&self, id: &str, old: &VmSpec, new: &VmSpec) -> Result<(), VmError> {
        for (slot, c) in &new.cdrom {
            let Some(was) = old.cdrom.get(slot) else {
                continue;
            };
            if was.volume == c.volume {
                continue;
            }
            let dev = format!("dev-{slot}");
            match c.volume.as_deref() {
                Some(v) => {
                    let path = self.base.storage.path(v)?;
                    self.qmp(
                        id,
                        "blockdev-change-medium",
                        Some(json!({"id": dev, "filename": path, "format": "raw",
                                    "read-only-mode": "read-only", "force": true})),
                    )?;
                }
                None => {
                    self.qmp(id, "eject", Some(json!({"id": dev, "force": true})))?;
                }
            }
        }
        Ok(())
    }

    /// Sends text to the serial port over the connection the daemon keeps.
    pub(super) fn qemu_serial_input(&self, id: &str, data: &[u8]) -> Result<(), VmError> {
        self.serial_links
            .write(id, &self.qemu_files(id).serial, data)
            .map_err(|e| self.base.failed(format!("vm {id}: serial input"), e))
    }

    /// Why a qemu VM's process ended, as `exit.json` records it: the exit status the
    /// daemon reaped (its own child) or, for a process adopted after a restart, unknown.
    pub(super) fn qemu_exit(&self, id: &str) -> Value {
        let dir = self.vm_dir(id);
        let log_tail = || {
            let log = std::fs::read_to_string(dir.join("qemu.log")).unwrap_or_default();
            log.lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        };
        let exit = match process::exit_status(&dir) {
            Some(process::ExitStatus::Code(0)) => json!({"reason": "poweroff"}),
            Some(process::ExitStatus::Code(c)) => {
                json!({"reason": "error", "detail": format!("QEMU exited with status {c}: {}", log_tail())})
            }
            Some(process::ExitStatus::Signal(s)) => {
                json!({"reason": "crash", "detail": format!("QEMU was killed by signal {s}: {}", log_tail())})
            }
            None => {
                json!({"reason": "exited", "detail": "QEMU was adopted after a daemon restart, so its exit status is unknown"})
            }
        };
        let _ = std::fs::write(dir.join("exit.json"), exit.to_string());
        exit
    }

    /// Keeps a running qemu VM's serial log within `serial_log_size`: the log is copied to
    /// `serial.log.1` and emptied (QEMU appends, so it goes on writing at the new end).
    pub(super) fn rotate_qemu_serial(&self, id: &str, limit: u64) {
        let dir = self.vm_dir(id);
        let log = dir.join("serial.log");
        let Ok(meta) = std::fs::metadata(&log) else {
            return;
        };
        if meta.len() <= limit / 2 {
            return;
        }
        let tmp = dir.join("serial.log.1.tmp");
        if std::fs::copy(&log, &tmp).is_ok()
            && std::fs::rename(&tmp, dir.join("serial.log.1")).is_ok()
        {
            if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&log) {
                let _ = f.set_len(0);
            }
        }
    }
}
