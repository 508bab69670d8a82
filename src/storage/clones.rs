//! Volume clones: a full copy or a linked clone of a template, now or at a snapshot, into the
//! same or another pool. Planning reserves the new row; running it copies.

use super::*;

impl Storage {
    /// Checks a clone request and reserves the new volume; the copy itself is [`Storage::run_clone`].
    pub fn begin_clone(&self, src: &str, req: &CloneRequest) -> Result<PlannedClone, StorageError> {
        let (sp, _) = parse_volid(src)?;
        let row = self.ready_row(src)?;
        let spool = self.pool(sp)?;
        let dp = req.pool.clone().unwrap_or_else(|| sp.to_string());
        let dpool = self.pool(&dp)?;
        if let Some(s) = &req.snapshot {
            Self::require_snapshot(&row, s)?;
        }
        let (format, refs, base) = if req.linked {
            if !row.template {
                return Err(StorageError::invalid(
                    "/linked",
                    format!("linked clones need a template volume; '{src}' is not one (POST .../template first)"),
                ));
            }
            if dp != sp {
                return Err(StorageError::invalid(
                    "/pool",
                    "a linked clone stays in its template's pool",
                ));
            }
            if req.snapshot.is_some() {
                return Err(StorageError::invalid(
                    "/snapshot",
                    "linked clones are made from a template's current state",
                ));
            }
            if !spool.can_link(row.vref.format) {
                return Err(StorageError::invalid(
                    "/linked",
                    format!(
                        "pool '{sp}' cannot make linked clones of {} volumes",
                        row.vref.format.as_str()
                    ),
                ));
            }
            let f = if spool.staging_dir().is_some() {
                Format::Qcow2
            } else {
                row.vref.format
            };
            (f, vec![super::volume_ref(src)], Some(src.to_string()))
        } else {
            let f = if dpool.supports(row.vref.content, row.vref.format) {
                row.vref.format
            } else {
                dpool.default_format(row.vref.content)
            };
            if !dpool.supports(row.vref.content, f)
                || (row.vref.format == Format::Subvol) != (f == Format::Subvol)
            {
                return Err(StorageError::invalid(
                    "/pool",
                    format!(
                        "pool '{dp}' cannot hold a copy of a {} {} volume",
                        row.vref.content.as_str(),
                        row.vref.format.as_str()
                    ),
                ));
            }
            let need = spool.allocated(&row.vref).unwrap_or(row.vref.size);
            self.check_space(&dp, dpool.as_ref(), need)?;
            (f, Vec::new(), None)
        };
        let dst = VolRef {
            name: req.name.clone(),
            content: row.vref.content,
            format,
            size: row.vref.size,
        };
        let volid = self.reserve(
            &dp,
            &dst,
            req.owner.as_deref(),
            json!({"base": base}),
            &refs,
        )?;
        Ok(PlannedClone {
            src: row,
            dst,
            dst_volid: volid,
            dst_pool: dp,
            snapshot: req.snapshot.clone(),
            linked: req.linked,
        })
    }

    /// Makes the copy planned by [`Storage::begin_clone`] (blocking; run it in a task). On
    /// failure nothing of the new volume is left.
    pub fn run_clone(&self, plan: &PlannedClone) -> Result<Object, StorageError> {
        let _g = self.claim(&plan.dst_volid)?;
        let spool = self.pool(&plan.src.pool)?;
        let dpool = self.pool(&plan.dst_pool)?;
        let r = (|| {
            if plan.linked {
                return spool.linked_clone(&plan.src.vref, &plan.dst);
            }
            let source = spool.source(&plan.src.vref, plan.snapshot.as_deref())?;
            if plan.dst.format == Format::Subvol {
                return dir::copy_tree(&source.path, &dpool.path(&plan.dst));
            }
            dpool.create(&plan.dst)?;
            qemu_img::convert(&source, &dpool.path(&plan.dst), plan.dst.format, true)
        })();
        if let Err(e) = r {
            self.abandon(dpool.as_ref(), &plan.dst_volid, &plan.dst);
            return Err(e);
        }
        self.update_row(&plan.dst_volid, |b| {
            b["state"] = json!(State::Ready.as_str())
        })
    }
}

/// A clone request, as the API takes it.
#[derive(Debug, Clone, Deserialize)]
pub struct CloneRequest {
    pub name: String,
    pub pool: Option<String>,
    #[serde(default)]
    pub linked: bool,
    pub snapshot: Option<String>,
    pub owner: Option<String>,
}

/// A clone checked and reserved, ready to run.
#[derive(Debug, Clone)]
pub struct PlannedClone {
    pub src: VolumeRow,
    pub dst: VolRef,
    pub dst_volid: String,
    pub dst_pool: String,
    pub snapshot: Option<String>,
    pub linked: bool,
}
