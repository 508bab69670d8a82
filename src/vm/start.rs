//! Starting a VM: the machine its row describes (volumes resolved, disks claimed against other
//! running guests, host memory checked), its taps, and the `ferrite-vmm` process whose
//! control socket must answer before the start counts. Any failure removes what was made.

use super::*;

impl Vms {
    /// The machine a VM's row describes, with volume paths resolved. Refuses disks another
    /// running VM has open.
    pub(super) fn machine_config(&self, id: &str, b: &VmSpec) -> Result<MachineConfig, VmError> {
        self.check(b)?;
        let path = |v: &str| self.base.storage.path(v).map_err(VmError::from);
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
    pub(super) fn check_disks_free(
        &self,
        id: &str,
        disks: &[(String, String)],
    ) -> Result<(), VmError> {
        let all = self.base.store.read(|c| objects::all(c, KIND))?;
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
    pub(super) fn attach_taps(&self, id: &str, b: &VmSpec) -> Result<Vec<String>, VmError> {
        let mut made = Vec::new();
        let k = self.base.network.kernel();
        for (slot, nic) in spec::slots_in_order(&b.net, "net") {
            let tap = nics::host_if(id, &slot);
            // A tap left by a crashed run is replaced, not reused with stale settings.
            let _ = self
                .base
                .rt
                .block_on(crate::network::attach::detach(k, &tap));
            let r = self.base.rt.block_on(crate::network::attach::attach(
                k,
                &NicKind::Tap { name: tap.clone() },
                &nics::attachment(id, &slot, &nic.nic),
            ));
            if let Err(e) = r {
                self.detach(&made);
                return Err(match e {
                    crate::network::netlink::KernelError::Unsupported { field, message } => {
                        GuestError::invalid(&format!("/net/{slot}/{field}"), message)
                    }
                    e => self.base.failed(format!("attaching {slot}"), e),
                });
            }
            made.push(tap);
        }
        Ok(made)
    }

    pub(super) fn detach(&self, taps: &[String]) {
        let k = self.base.network.kernel();
        for t in taps {
            let _ = self.base.rt.block_on(crate::network::attach::detach(k, t));
        }
    }

    pub(super) fn taps_of(&self, id: &str) -> Vec<String> {
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
    pub(super) fn spawn_vmm(&self, id: &str, args: &[String]) -> Result<(i32, u64), VmError> {
        self.vmm.check()?;
        let dir = self.vm_dir(id);
        let sock = self.sock(id);
        if let Some(p) = sock.parent() {
            std::fs::create_dir_all(p)
                .map_err(|e| self.base.failed(format!("creating {}", p.display()), e))?;
        }
        let _ = std::fs::remove_file(&sock);
        let _ = std::fs::remove_file(dir.join("exit.json"));
        let log = std::fs::File::create(dir.join("vmm.log"))
            .map_err(|e| self.base.failed("creating vmm.log", e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| self.base.failed("sharing vmm.log", e))?;
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new(self.vmm.path());
        if let Some(ns) = self.base.network.kernel().netns_path() {
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
            .map_err(|e| {
                self.base
                    .failed(format!("running {}", self.vmm.path().display()), e)
            })?;
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
                    return Err(GuestError::invalid(
                        "/kernel",
                        format!("vm {id} cannot start: {msg}"),
                    ));
                }
                return Err(self
                    .base
                    .failed(format!("vm {id} did not start ({status})"), msg.to_string()));
            }
            if control::call(&sock, &json!({"op": "status"})).is_ok() {
                return Ok((pid, starttime));
            }
            if t0.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(self.base.failed(
                    format!("starting vm {id}"),
                    "ferrite-vmm did not answer within 30 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub(super) fn record_runtime(&self, id: &str, (pid, starttime): (i32, u64)) {
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

    pub(super) fn start_locked(&self, id: &str) -> Result<Value, VmError> {
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
        if row.create.spec.engine() == crate::guest::spec::VmEngine::Qemu {
            self.start_qemu(id, &row)?;
            return Ok(self.status(id));
        }
        self.vmm.check()?;
        let cfg = self.machine_config(id, &row.create.spec)?;
        let dir = self.vm_dir(id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| self.base.failed(format!("creating {}", dir.display()), e))?;
        let cfg_path = dir.join("config.json");
        std::fs::write(
            &cfg_path,
            serde_json::to_vec_pretty(&cfg).unwrap_or_default(),
        )
        .map_err(|e| {
            self.base
                .failed(format!("writing {}", cfg_path.display()), e)
        })?;
        self.launch(
            id,
            &row.create.spec,
            vec!["--config".to_string(), cfg_path.display().to_string()],
        )?;
        Ok(self.status(id))
    }

    /// Starts `ferrite-vmm` for VM `id` with `args` (a config or a snapshot to restore) and a
    /// fresh serial log, its taps attached first and removed again if the VMM does not come
    /// up; records the running process.
    pub(super) fn launch(
        &self,
        id: &str,
        spec: &VmSpec,
        mut args: Vec<String>,
    ) -> Result<(), VmError> {
        let dir = self.vm_dir(id);
        // A new console session: the log starts with this boot (or restore).
        for f in ["serial.log", "serial.log.1"] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        let taps = self.attach_taps(id, spec)?;
        args.extend([
            "--serial-log".into(),
            dir.join("serial.log").display().to_string(),
            "--serial-log-size".into(),
            spec.serial_log_size.to_string(),
        ]);
        let spawned = match self.spawn_vmm(id, &args) {
            Ok(p) => p,
            Err(e) => {
                self.detach(&taps);
                return Err(e);
            }
        };
        self.record_runtime(id, spawned);
        Ok(())
    }
}
