//! What runs beside the API: re-adoption of running VMs at daemon start, `onboot` starts in
//! order, and the monitor thread that cleans up after VMs that stopped on their own and
//! restarts the ones whose guest reset (with the back-off of `restart.rs`, kept on disk).

use super::*;

impl Vms {
    /// At daemon start: re-adopts running VMs, cleans up after dead ones, starts `onboot`
    /// VMs in order, then watches for VMs that stop on their own.
    pub fn adopt_and_boot(self: &Arc<Self>) {
        let all = self.base.all();
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
            boot.extend(crate::guest::boot_slot(o));
        }
        crate::guest::boot_in_order(&**self, boot);
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
    pub(super) fn restart_mark(&self, id: &str) -> PathBuf {
        self.vm_dir(id).join(RESTART_MARK)
    }

    /// Cancels a planned restart after a guest reset, and forgets past resets (the user took
    /// over through the API).
    pub(super) fn cancel_restart(&self, id: &str) {
        self.restart_plan.forget(id);
        self.save_restart_plan(id);
    }

    /// Takes a due restart for making (see [`restart::Restarts::take`]); the saved plan
    /// keeps the count of past resets.
    pub(super) fn take_restart(&self, id: &str) -> bool {
        let taken = self.restart_plan.take(id);
        self.save_restart_plan(id);
        taken
    }

    /// Writes the VM's restart plan next to it, so the next daemon process goes on with it;
    /// removes the file when there is no plan left.
    pub(super) fn save_restart_plan(&self, id: &str) {
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
    pub(super) fn saved_restart_plan(&self, id: &str) -> Option<restart::Saved> {
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
    pub(super) fn after_reset(&self, id: &str, mut exit: Value) {
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
    pub(super) fn check_exits(&self) {
        let Ok(entries) = std::fs::read_dir(&self.base.dir) else {
            return;
        };
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().to_string();
            if !e.path().join("runtime.json").exists() {
                continue;
            }
            if self.running(&id) {
                if self.runs_qemu(&id) {
                    self.rotate_serial(&id);
                }
                continue;
            }
            let Some(_b) = self.try_claim(&id) else {
                continue;
            };
            if self.running(&id) || !e.path().join("runtime.json").exists() {
                continue;
            }
            if self.runs_qemu(&id) {
                // ferrite-vmm records why it exited; QEMU's exit status says it.
                self.qemu_exit(&id);
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

    /// QEMU writes the serial log itself and never rotates it: the monitor does, at the VM's
    /// `serial_log_size`.
    fn rotate_serial(&self, id: &str) {
        let limit = self
            .get(id)
            .and_then(|o| self.stored(&o))
            .map(|r| r.create.spec.serial_log_size)
            .unwrap_or(1 << 20);
        self.rotate_qemu_serial(id, limit);
    }

    /// Makes the planned restarts that are due. A VM busy with an API call is tried again on
    /// the next round; one that is running again, or gone, needs none.
    pub(super) fn restart_due(&self) {
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
