//! Volume snapshots: take, roll back, delete; each volume's snapshot tree lives in its row.

use super::*;

impl Storage {
    /// Takes a named snapshot; it becomes the parent of the next one.
    pub fn snapshot(
        &self,
        volid: &str,
        snap: &str,
        description: Option<&str>,
    ) -> Result<Object, StorageError> {
        let (p, _) = parse_volid(volid)?;
        let row = self.ready_row(volid)?;
        let _g = self.claim(volid)?;
        if row.snapshots.iter().any(|s| s == snap) {
            return Err(StorageError::Conflict(format!(
                "volume '{volid}' already has a snapshot '{snap}'"
            )));
        }
        let pool = self.pool(p)?;
        if row.vref.format != Format::Qcow2 {
            let need = pool.allocated(&row.vref).unwrap_or(0);
            self.check_space(p, pool.as_ref(), need)?;
        }
        pool.snapshot(&row.vref, snap)?;
        self.update_row(volid, |b| {
            let parent = b["current_snapshot"].clone();
            let mut entry = json!({
                "name": snap,
                "parent": parent,
                "created_at": crate::time::now_rfc3339(),
            });
            if let Some(d) = description {
                entry["description"] = json!(d);
            }
            if let Some(a) = b["snapshots"].as_array_mut() {
                a.push(entry);
            } else {
                b["snapshots"] = json!([entry]);
            }
            b["current_snapshot"] = json!(snap);
        })
    }

    pub(super) fn require_snapshot(row: &VolumeRow, snap: &str) -> Result<(), StorageError> {
        if !row.snapshots.iter().any(|s| s == snap) {
            return Err(StorageError::UnknownVolume(format!(
                "{}@{snap} (no such snapshot)",
                row.volid
            )));
        }
        Ok(())
    }

    /// Returns a volume to a snapshot.
    pub fn rollback(&self, volid: &str, snap: &str) -> Result<Object, StorageError> {
        let (p, _) = parse_volid(volid)?;
        let row = self.ready_row(volid)?;
        let _g = self.claim(volid)?;
        Self::require_snapshot(&row, snap)?;
        if row.template {
            return Err(StorageError::Conflict(format!(
                "volume '{volid}' is a template; templates do not change"
            )));
        }
        self.pool(p)?.rollback(&row.vref, snap)?;
        self.update_row(volid, |b| b["current_snapshot"] = json!(snap))
    }

    /// Deletes a snapshot; its children take its parent.
    pub fn delete_snapshot(&self, volid: &str, snap: &str) -> Result<Object, StorageError> {
        let (p, _) = parse_volid(volid)?;
        let row = self.ready_row(volid)?;
        let _g = self.claim(volid)?;
        Self::require_snapshot(&row, snap)?;
        self.pool(p)?.delete_snapshot(&row.vref, snap)?;
        self.update_row(volid, |b| {
            let Some(a) = b["snapshots"].as_array_mut() else {
                return;
            };
            let parent = a
                .iter()
                .find(|s| s["name"] == snap)
                .map(|s| s["parent"].clone())
                .unwrap_or(Value::Null);
            a.retain(|s| s["name"] != snap);
            for s in a.iter_mut() {
                if s["parent"] == snap {
                    s["parent"] = parent.clone();
                }
            }
            if b["current_snapshot"] == snap {
                b["current_snapshot"] = parent;
            }
        })
    }
}
