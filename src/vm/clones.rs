//! VM templates and clones.
//!
//! A template is a stopped VM that may no longer start; its writable disks become template
//! volumes. A clone is a new VM (new id, new MACs) whose writable disks are copies of the
//! source's, now or at one of its snapshots, or linked clones of a template's disks (a
//! qcow2 backing file or a thin snapshot). Kernel, initrd and read-only disks are shared:
//! nothing writes them. Any failure removes what the clone made so far.

use serde_json::{json, Value};

use super::{refs_of, VmError, Vms, KIND};
use crate::storage::CloneRequest;
use crate::store::{objects, Object, StoreError};

/// What a clone request asks for.
pub struct CloneSpec<'a> {
    pub new_id: u32,
    pub name: &'a str,
    pub snapshot: Option<&'a str>,
    pub pool: Option<&'a str>,
    pub linked: bool,
}

impl Vms {
    /// Slots and volumes of a VM's writable disks, in slot order (what a clone copies and
    /// a template freezes).
    fn writable_volumes(&self, o: &Object) -> Result<Vec<(String, String)>, VmError> {
        Ok(self
            .stored(o)?
            .create
            .spec
            .writable_disks()
            .into_iter()
            .map(|(slot, d)| (slot, d.volume.clone()))
            .collect())
    }

    /// Turns a stopped VM into a template: it cannot start any more, and its writable disks
    /// become template volumes (the sources of linked clones).
    pub fn make_template(&self, id: &str) -> Result<Object, VmError> {
        let _b = self.claim(id)?;
        let o = self.get(id)?;
        if self.running(id) {
            return Err(VmError::Conflict(format!(
                "vm {id} is running; stop it before making it a template"
            )));
        }
        let disks = self.writable_volumes(&o)?;
        // The VM's own references would make storage refuse; the VM can no longer start, so
        // they are set aside while the volumes change.
        self.base.store.write(|tx| -> Result<(), StoreError> {
            let mut b = o.body.clone();
            b["is_template"] = json!(true);
            objects::update(tx, KIND, id, None, &b, &o.tags)?;
            let keep: Vec<String> = refs_of(&b)
                .into_iter()
                .filter(|r| !disks.iter().any(|(_, v)| *r == crate::guest::volume_ref(v)))
                .collect();
            objects::set_refs(tx, KIND, id, &keep)
        })?;
        let mut result = Ok(());
        for (_, vol) in &disks {
            if let Err(e) = self.base.storage.make_template(vol) {
                result = Err(VmError::from(e));
                break;
            }
        }
        self.base.store.write(|tx| -> Result<(), StoreError> {
            objects::set_refs(tx, KIND, id, &refs_of(&o.body))?;
            if result.is_err() {
                objects::update(tx, KIND, id, None, &o.body, &o.tags)?;
            }
            Ok(())
        })?;
        result?;
        self.get(id)
    }

    /// A new VM from this one: full copies of its writable disks (now or at `snapshot`), or
    /// linked clones of a template's.
    pub fn clone_to(&self, id: &str, spec: &CloneSpec<'_>) -> Result<Object, VmError> {
        let _b = self.claim(id)?;
        let o = self.get(id)?;
        if spec.linked && !o.body["is_template"].as_bool().unwrap_or(false) {
            return Err(VmError::Invalid {
                field: "/linked".into(),
                message: format!("vm {id} is not a template; linked clones need one"),
            });
        }
        if spec.linked {
            // Pools that link through qcow2 backing files (dir) would give the clone qcow2
            // disks, which ferrite-vmm does not boot; thin pools link raw volumes.
            for (_, src) in self.writable_volumes(&o)? {
                let pool = src.split(':').next().unwrap_or_default();
                if self.base.storage.pool(pool)?.staging_dir().is_some() {
                    return Err(VmError::Invalid {
                        field: "/linked".into(),
                        message: format!(
                            "pool '{pool}' links disks as qcow2, and ferrite-vmm boots raw disks \
                             only; make a full clone, or keep templates on an lvmthin pool"
                        ),
                    });
                }
            }
        }
        if let Some(s) = spec.snapshot {
            if crate::guest::snapshots::find(&o.body, s).is_none() {
                return Err(self.base.not_found(format!("{id}, snapshot {s}")));
            }
        }
        let new_s = spec.new_id.to_string();
        let mut body = o.body.clone();
        if let Value::Object(m) = &mut body {
            for k in ["snapshots", "is_template", "cloned_from", "id"] {
                m.remove(k);
            }
        }
        // New identity: MACs follow the new id unless pinned again.
        if let Some(nets) = body.get_mut("net").and_then(Value::as_object_mut) {
            for nic in nets.values_mut() {
                if let Value::Object(m) = nic {
                    m.remove("mac");
                }
            }
        }
        body["id"] = json!(spec.new_id);
        body["name"] = json!(spec.name);
        body["cloned_from"] = json!(o.id);
        // The new row first (it claims the name and id), without references yet.
        self.base
            .store
            .write(|tx| crate::guest::insert_row(tx, KIND, &new_s, spec.name, &body))?;
        let mut made: Vec<String> = Vec::new();
        let undo = |made: &[String]| {
            for v in made {
                let _ = self.base.storage.delete_volume(v);
            }
            let _ = self
                .base
                .store
                .write(|tx| objects::delete(tx, KIND, &new_s, None));
        };
        for (slot, src) in self.writable_volumes(&o)? {
            let src_pool = src.split(':').next().unwrap_or("local").to_string();
            let req = CloneRequest {
                name: format!("vm-{}-{slot}", spec.new_id),
                pool: Some(spec.pool.map(String::from).unwrap_or(src_pool)),
                linked: spec.linked,
                snapshot: spec.snapshot.map(String::from),
                owner: Some(format!("vm/{}", spec.new_id)),
            };
            let done = self
                .base
                .storage
                .begin_clone(&src, &req)
                .and_then(|plan| self.base.storage.run_clone(&plan));
            match done {
                Ok(v) => {
                    let volid = v.body["volid"].as_str().unwrap_or_default().to_string();
                    body["disks"][&slot]["volume"] = json!(volid);
                    made.push(volid);
                }
                Err(e) => {
                    undo(&made);
                    return Err(e.into());
                }
            }
        }
        let stored = self.base.store.write(|tx| -> Result<Object, StoreError> {
            objects::update(tx, KIND, &new_s, None, &body, &objects::tags_of(&body))?;
            objects::set_refs(tx, KIND, &new_s, &refs_of(&body))?;
            objects::require(tx, KIND, &new_s)
        });
        match stored {
            Ok(o) => Ok(o),
            Err(e) => {
                undo(&made);
                Err(e.into())
            }
        }
    }
}
