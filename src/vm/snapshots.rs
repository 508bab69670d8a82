//! VM snapshots: a paused VM's memory, vCPU and device state (written by its VMM) plus a
//! storage snapshot of each writable disk under the same name, so a restore brings disks and
//! memory back to the same moment. Restore runs in a fresh `ferrite-vmm` process.

use serde_json::{json, Value};

use super::{control, VmError, Vms, KIND};

impl Vms {
    fn snapshot_dir(&self, id: &str, name: &str) -> std::path::PathBuf {
        self.vm_dir(id).join("snapshots").join(name)
    }

    /// Deletes snapshot `name` of every writable disk (best effort: a disk already without
    /// it is fine).
    pub(super) fn drop_disk_snapshots(&self, spec: &crate::guest::spec::VmSpec, name: &str) {
        for (_, d) in spec.writable_disks() {
            let _ = self.base.storage.delete_snapshot(&d.volume, name);
        }
    }

    /// Snapshots a paused VM (machine state and disks, captured at one instant) or a stopped
    /// one (its disks: nothing else is changing). A running (unpaused) VM is refused: pause it
    /// first.
    pub fn snapshot(
        &self,
        id: &str,
        name: &str,
        description: Option<&str>,
    ) -> Result<Value, VmError> {
        let _b = self.claim(id)?;
        let o = self.get(id)?;
        let vmstate = self.running(id);
        if vmstate && self.runs_qemu(id) {
            return Err(VmError::Conflict(format!(
                "vm {id} runs under QEMU, whose machine state is not snapshotted yet; stop it and snapshot its disks"
            )));
        }
        if vmstate && self.status(id)["state"] != "paused" {
            return Err(VmError::Conflict(format!(
                "vm {id} is running; pause it before taking a snapshot"
            )));
        }
        if crate::guest::snapshots::find(&o.body, name).is_some() {
            return Err(VmError::Conflict(format!(
                "vm {id} already has a snapshot named {name}"
            )));
        }
        let mut done: Vec<String> = Vec::new();
        let row = self.stored(&o)?;
        for (_, d) in row.create.spec.writable_disks() {
            let v = d.volume.clone();
            if let Err(e) = self
                .base
                .storage
                .snapshot(&v, name, Some(&format!("vm {id} snapshot")))
            {
                for d in &done {
                    let _ = self.base.storage.delete_snapshot(d, name);
                }
                return Err(e.into());
            }
            done.push(v);
        }
        let dir = self.snapshot_dir(id, name);
        if vmstate {
            let r = self.ctl(id, json!({"op": "snapshot", "dir": dir}));
            if let Err(e) = r {
                let _ = std::fs::remove_dir_all(&dir);
                for d in &done {
                    let _ = self.base.storage.delete_snapshot(d, name);
                }
                return Err(e);
            }
        }
        let memory_bytes = std::fs::metadata(dir.join("memory"))
            .map(|m| m.len())
            .unwrap_or(0);
        let mut entry = json!({
            "name": name,
            "created_at": crate::time::now_rfc3339(),
            "memory_bytes": memory_bytes,
            "vmstate": vmstate,
        });
        if let Some(d) = description {
            entry["description"] = json!(d);
        }
        crate::guest::snapshots::record(&self.base.store, KIND, id, entry, false)?;
        Ok(self.status(id))
    }

    /// Restores a stopped VM: disks roll back to the snapshot; when the snapshot holds the
    /// machine state, a new VMM process loads memory and vCPU state and the guest continues
    /// where it was, otherwise the VM stays stopped.
    pub fn restore(&self, id: &str, name: &str) -> Result<Value, VmError> {
        let _b = self.claim(id)?;
        let o = self.get(id)?;
        if self.running(id) {
            return Err(VmError::Conflict(format!(
                "vm {id} is running; stop it before restoring a snapshot"
            )));
        }
        let dir = self.snapshot_dir(id, name);
        let Some(entry) = crate::guest::snapshots::find(&o.body, name) else {
            return Err(self.base.not_found(format!("{id} snapshot {name}")));
        };
        // Entries written before `vmstate` existed all held the machine state.
        let vmstate = entry["vmstate"].as_bool().unwrap_or(true);
        if vmstate && !dir.join("vmstate").exists() {
            return Err(self.base.not_found(format!("{id} snapshot {name}")));
        }
        if vmstate {
            // The state is loaded by a new `ferrite-vmm`: refuse before any disk rolls back.
            self.vmm_helper().check()?;
        }
        // A rollback cannot be undone, so everything that can be checked is checked first: a
        // damaged or unreadable machine state leaves the disks as they are.
        if vmstate {
            crate::vmm::snapshot::verify(&dir).map_err(|e| {
                VmError::Conflict(format!(
                    "vm {id} snapshot {name} cannot be restored ({e}); nothing was changed"
                ))
            })?;
        }
        let row = self.stored(&o)?;
        // From here the restore changes the VM: a restart planned after a guest reset would
        // undo it.
        self.cancel_restart(id);
        for (_, d) in row.create.spec.writable_disks() {
            self.base.storage.rollback(&d.volume, name)?;
        }
        if !vmstate {
            return Ok(self.status(id));
        }
        self.launch(
            id,
            &row.create.spec,
            vec![
                "--restore".to_string(),
                dir.display().to_string(),
                "--paused".into(),
            ],
        )?;
        if let Err(e) = control::call(&self.sock(id), &json!({"op": "resume"})) {
            self.stop_locked(id);
            return Err(self
                .base
                .failed(format!("vm {id}: resuming after restore"), e));
        }
        Ok(self.status(id))
    }

    pub fn delete_snapshot(&self, id: &str, name: &str) -> Result<(), VmError> {
        let _b = self.claim(id)?;
        let o = self.get(id)?;
        if crate::guest::snapshots::find(&o.body, name).is_none() {
            return Err(self.base.not_found(format!("{id} snapshot {name}")));
        }
        self.drop_disk_snapshots(&self.stored(&o)?.create.spec, name);
        let _ = std::fs::remove_dir_all(self.snapshot_dir(id, name));
        crate::guest::snapshots::forget(&self.base.store, KIND, id, name)?;
        Ok(())
    }
}
