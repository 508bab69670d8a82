//! Guest-level snapshots and clones of containers: every volume of the container (today its
//! root filesystem) plus its configuration, taken crash-consistent by freezing a running
//! container for the moment of the snapshot.

use serde_json::{json, Value};

use super::{ContainerError, Containers, KIND};
use crate::storage::CloneRequest;
use crate::store::{objects, Object, StoreError};

/// The configuration a snapshot keeps: the body without its own bookkeeping.
fn config_of(body: &Value) -> Value {
    let mut c = body.clone();
    if let Value::Object(m) = &mut c {
        for k in ["snapshots", "current_snapshot", "id", "name", "rootfs"] {
            m.remove(k);
        }
    }
    c
}

impl Containers {
    fn rootfs_of(o: &Object) -> Result<String, ContainerError> {
        o.body["rootfs"].as_str().map(String::from).ok_or_else(|| {
            ContainerError::failed(
                KIND,
                format!("container {}", o.id),
                "its row names no root filesystem",
            )
        })
    }

    /// Takes snapshot `name` of a container: frozen for the moment if running.
    pub fn snapshot(
        &self,
        id: &str,
        name: &str,
        description: Option<&str>,
    ) -> Result<Object, ContainerError> {
        let _b = self.claim(id)?;
        let o = self.get(id)?;
        if crate::guest::snapshots::find(&o.body, name).is_some() {
            return Err(ContainerError::Conflict(format!(
                "container {id} already has a snapshot '{name}'"
            )));
        }
        let rootfs = Self::rootfs_of(&o)?;
        let cg = self.cg(id);
        let freeze = self.running(id) && !cg.frozen();
        if freeze {
            cg.freeze(true).map_err(|e| {
                self.base
                    .failed(format!("freezing container {id} for the snapshot"), e)
            })?;
        }
        let r = self.base.storage.snapshot(&rootfs, name, description);
        if freeze {
            let _ = cg.freeze(false);
        }
        r?;
        let entry = json!({
            "name": name,
            "parent": o.body["current_snapshot"],
            "created_at": crate::time::now_rfc3339(),
            "description": description,
            "running": self.running(id),
            "config": config_of(&o.body),
        });
        Ok(crate::guest::snapshots::record(
            &self.base.store,
            KIND,
            id,
            entry,
            true,
        )?)
    }

    /// Returns a stopped container to a snapshot: its volumes and its configuration.
    pub fn rollback(&self, id: &str, name: &str) -> Result<Object, ContainerError> {
        let _b = self.claim(id)?;
        let o = self.get(id)?;
        if self.running(id) {
            return Err(ContainerError::Conflict(format!(
                "container {id} is running; stop it before a rollback"
            )));
        }
        let snap = crate::guest::snapshots::find(&o.body, name)
            .ok_or_else(|| self.base.not_found(format!("{id}, snapshot {name}")))?;
        self.base.storage.rollback(&Self::rootfs_of(&o)?, name)?;
        Ok(self.base.store.write(|tx| -> Result<Object, StoreError> {
            let cur = objects::require(tx, KIND, id)?;
            let mut b = snap["config"].clone();
            for k in ["snapshots", "id", "name", "rootfs"] {
                b[k] = cur.body[k].clone();
            }
            b["current_snapshot"] = json!(name);
            objects::set_refs(tx, KIND, id, &super::refs_of(&b))?;
            objects::update(tx, KIND, id, None, &b, &cur.tags)
        })?)
    }

    /// Deletes a snapshot; its children take its parent.
    pub fn delete_snapshot(&self, id: &str, name: &str) -> Result<(), ContainerError> {
        let _b = self.claim(id)?;
        let o = self.get(id)?;
        if crate::guest::snapshots::find(&o.body, name).is_none() {
            return Err(self.base.not_found(format!("{id}, snapshot {name}")));
        }
        self.base
            .storage
            .delete_snapshot(&Self::rootfs_of(&o)?, name)?;
        crate::guest::snapshots::forget(&self.base.store, KIND, id, name)?;
        Ok(())
    }

    /// A full clone: a new container (new id, new MACs) whose root filesystem is a copy of
    /// this one's, now or at a snapshot, in the same or another pool.
    pub fn clone_to(
        &self,
        id: &str,
        new_id: u32,
        name: &str,
        snapshot: Option<&str>,
        pool: Option<&str>,
    ) -> Result<Object, ContainerError> {
        let _b = self.claim(id)?;
        let o = self.get(id)?;
        let mut body = match snapshot {
            Some(s) => crate::guest::snapshots::find(&o.body, s)
                .map(|x| x["config"].clone())
                .ok_or_else(|| self.base.not_found(format!("{id}, snapshot {s}")))?,
            None => config_of(&o.body),
        };
        let src = Self::rootfs_of(&o)?;
        let target_pool = pool
            .map(String::from)
            .unwrap_or_else(|| src.split(':').next().unwrap_or("local").to_string());
        let new_s = new_id.to_string();
        let rootfs_name = format!("ct-{new_id}-rootfs");
        // New identity: the MACs follow the new id unless the source pinned them.
        if let Some(nets) = body.get_mut("net").and_then(Value::as_object_mut) {
            for nic in nets.values_mut() {
                if let Value::Object(m) = nic {
                    m.remove("mac");
                }
            }
        }
        body["id"] = json!(new_id);
        body["name"] = json!(name);
        body["hostname"] = json!(name);
        body["pool"] = json!(target_pool);
        body["rootfs"] = json!(format!("{target_pool}:{rootfs_name}"));
        body["template"] = o.body["template"].clone();
        body["cloned_from"] = json!(o.id);
        if let Value::Object(m) = &mut body {
            m.remove("is_template");
        }
        // The new row first (it claims the name and id), without references yet.
        self.base
            .store
            .write(|tx| crate::guest::insert_row(tx, KIND, &new_s, name, &body))?;
        let undo = || {
            let _ = self
                .base
                .store
                .write(|tx| objects::delete(tx, KIND, &new_s, None));
        };
        let plan = match self.base.storage.begin_clone(
            &src,
            &CloneRequest {
                name: rootfs_name,
                pool: Some(target_pool),
                linked: false,
                snapshot: snapshot.map(String::from),
                owner: Some(format!("ct/{new_id}")),
            },
        ) {
            Ok(p) => p,
            Err(e) => {
                undo();
                return Err(e.into());
            }
        };
        if let Err(e) = self.base.storage.run_clone(&plan) {
            undo();
            return Err(e.into());
        }
        Ok(self.base.store.write(|tx| -> Result<Object, StoreError> {
            objects::set_refs(tx, KIND, &new_s, &super::refs_of(&body))?;
            objects::require(tx, KIND, &new_s)
        })?)
    }

    /// Turns a stopped container into a template: it cannot start any more and its root
    /// filesystem becomes a template volume, the source of clones.
    pub fn make_template(&self, id: &str) -> Result<Object, ContainerError> {
        let _b = self.claim(id)?;
        let o = self.get(id)?;
        if self.running(id) {
            return Err(ContainerError::Conflict(format!(
                "container {id} is running; stop it before making it a template"
            )));
        }
        let rootfs = Self::rootfs_of(&o)?;
        // The container itself uses the volume; a template volume must not be attached to a
        // guest that could still change it, and this one can no longer start.
        self.base.store.write(|tx| -> Result<(), StoreError> {
            let mut b = o.body.clone();
            b["is_template"] = json!(true);
            objects::update(tx, KIND, id, None, &b, &o.tags)?;
            let refs: Vec<String> = super::refs_of(&b)
                .into_iter()
                .filter(|r| *r != crate::guest::volume_ref(&rootfs))
                .collect();
            objects::set_refs(tx, KIND, id, &refs)
        })?;
        let r = self.base.storage.make_template(&rootfs);
        self.base.store.write(|tx| -> Result<Object, StoreError> {
            objects::set_refs(tx, KIND, id, &super::refs_of(&o.body))?;
            if r.is_err() {
                objects::update(tx, KIND, id, None, &o.body, &o.tags)?;
            }
            objects::require(tx, KIND, id)
        })?;
        r?;
        self.get(id)
    }
}
