//! The `lvmthin` pool: volumes are thin LVs in one thin pool of a volume group, driven through
//! the lvm2 tools (their JSON reports for reads). Snapshots and linked clones are thin
//! snapshots, so both are instant whatever the volume size.
//!
//! Names: volume `NAME` is LV `NAME`; its snapshot `S` is LV `NAME__snap__S` (thin snapshots
//! are created with activation skip off so they can be read directly).

use std::path::{Path, PathBuf};

use super::pool::{Capacity, Pool, Source, VolRef};
use super::{Content, Format, StorageError};

/// A thin pool in a volume group.
pub struct LvmThinPool {
    vg: String,
    thinpool: String,
}

fn lvm(what: &str, args: &[&str]) -> Result<String, StorageError> {
    let mut cmd = super::tool("lvm");
    cmd.args(args).env("LVM_SUPPRESS_FD_WARNINGS", "1");
    // Without a running udev (minimal appliances, test VMs) lvm must make its device nodes
    // itself instead of waiting for udev to do it.
    if !std::path::Path::new("/run/udev/control").exists() {
        cmd.env("DM_DISABLE_UDEV", "1");
    }
    let out = cmd
        .output()
        .map_err(|e| StorageError::Tool(format!("{what}: cannot run lvm (install lvm2): {e}")))?;
    if !out.status.success() {
        return Err(StorageError::Tool(format!(
            "{what}: lvm {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn snap_lv(v: &VolRef, snap: &str) -> String {
    format!("{}__snap__{snap}", v.name)
}

impl LvmThinPool {
    /// Opens a thin pool, checking that it exists now.
    pub fn new(vg: &str, thinpool: &str) -> Result<Self, StorageError> {
        let p = LvmThinPool {
            vg: vg.to_string(),
            thinpool: thinpool.to_string(),
        };
        p.capacity()?;
        Ok(p)
    }

    fn lv(&self, name: &str) -> String {
        format!("{}/{name}", self.vg)
    }

    /// One row of `lvs` for an LV, as JSON.
    fn report(&self, lv: &str, fields: &str) -> Result<serde_json::Value, StorageError> {
        let out = lvm(
            "reading LVM state",
            &[
                "lvs",
                "--reportformat",
                "json",
                "--units",
                "b",
                "--nosuffix",
                "-o",
                fields,
                &self.lv(lv),
            ],
        )?;
        let v: serde_json::Value = serde_json::from_str(&out)
            .map_err(|e| StorageError::Tool(format!("lvs printed bad JSON: {e}")))?;
        Ok(v["report"][0]["lv"][0].clone())
    }

    fn num(v: &serde_json::Value, k: &str) -> f64 {
        v[k].as_str()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    }

    fn activate(&self, lv: &str) -> Result<(), StorageError> {
        lvm(
            "activating a volume",
            &["lvchange", "-ay", "-K", &self.lv(lv)],
        )
        .map(|_| ())
    }
}

impl Pool for LvmThinPool {
    fn capacity(&self) -> Result<Capacity, StorageError> {
        let r = self.report(&self.thinpool, "lv_size,data_percent")?;
        let total = Self::num(&r, "lv_size") as u64;
        let used = (total as f64 * Self::num(&r, "data_percent") / 100.0) as u64;
        Ok(Capacity {
            total,
            used,
            free: total.saturating_sub(used),
        })
    }

    fn default_format(&self, _content: Content) -> Format {
        Format::Raw
    }

    fn supports(&self, content: Content, format: Format) -> bool {
        content == Content::Images && format == Format::Raw
    }

    fn can_link(&self, format: Format) -> bool {
        format == Format::Raw
    }

    fn path(&self, v: &VolRef) -> PathBuf {
        Path::new("/dev").join(&self.vg).join(&v.name)
    }

    fn exists(&self, v: &VolRef) -> bool {
        self.report(&v.name, "lv_name").is_ok()
    }

    fn allocated(&self, v: &VolRef) -> Option<u64> {
        let r = self.report(&v.name, "lv_size,data_percent").ok()?;
        Some((Self::num(&r, "lv_size") * Self::num(&r, "data_percent") / 100.0) as u64)
    }

    fn create(&self, v: &VolRef) -> Result<(), StorageError> {
        let size = format!("{}b", v.size);
        let pool = self.lv(&self.thinpool);
        lvm(
            "creating a thin volume",
            &[
                "lvcreate", "-q", "-y", "-V", &size, "-T", &pool, "-n", &v.name,
            ],
        )
        .map(|_| ())
    }

    fn remove(&self, v: &VolRef, snapshots: &[String]) -> Result<(), StorageError> {
        for s in snapshots {
            let lv = snap_lv(v, s);
            if self.report(&lv, "lv_name").is_ok() {
                lvm(
                    "removing a snapshot",
                    &["lvremove", "-q", "-y", &self.lv(&lv)],
                )?;
            }
        }
        if !self.exists(v) {
            return Ok(());
        }
        lvm(
            "removing a volume",
            &["lvremove", "-q", "-y", &self.lv(&v.name)],
        )
        .map(|_| ())
    }

    fn resize(&self, v: &VolRef, size: u64) -> Result<(), StorageError> {
        let size = format!("{size}b");
        lvm(
            "growing a volume",
            &["lvextend", "-q", "-L", &size, &self.lv(&v.name)],
        )
        .map(|_| ())
    }

    fn snapshot(&self, v: &VolRef, snap: &str) -> Result<(), StorageError> {
        lvm(
            "taking a thin snapshot",
            &[
                "lvcreate",
                "-q",
                "-s",
                "-kn",
                "-n",
                &snap_lv(v, snap),
                &self.lv(&v.name),
            ],
        )
        .map(|_| ())
    }

    fn rollback(&self, v: &VolRef, snap: &str) -> Result<(), StorageError> {
        // Make the new current state first, under a temporary name, so a failure leaves the
        // volume as it was; then swap names.
        let tmp = format!("{}__rollback", v.name);
        lvm(
            "rolling back (copying the snapshot)",
            &[
                "lvcreate",
                "-q",
                "-s",
                "-kn",
                "-n",
                &tmp,
                &self.lv(&snap_lv(v, snap)),
            ],
        )?;
        if let Err(e) = lvm(
            "rolling back (removing the current state)",
            &["lvremove", "-q", "-y", &self.lv(&v.name)],
        ) {
            let _ = lvm("cleaning up", &["lvremove", "-q", "-y", &self.lv(&tmp)]);
            return Err(e);
        }
        lvm(
            "rolling back (renaming)",
            &["lvrename", &self.vg, &tmp, &v.name],
        )?;
        self.activate(&v.name)
    }

    fn delete_snapshot(&self, v: &VolRef, snap: &str) -> Result<(), StorageError> {
        lvm(
            "deleting a snapshot",
            &["lvremove", "-q", "-y", &self.lv(&snap_lv(v, snap))],
        )
        .map(|_| ())
    }

    fn source(&self, v: &VolRef, snap: Option<&str>) -> Result<Source, StorageError> {
        let lv = match snap {
            Some(s) => snap_lv(v, s),
            None => v.name.clone(),
        };
        self.activate(&lv)?;
        Ok(Source {
            path: Path::new("/dev").join(&self.vg).join(lv),
            format: Format::Raw,
            qcow2_snapshot: None,
        })
    }

    /// One `lvcreate`: with activation skip off (`-kn`) and `-ay` the snapshot comes up active,
    /// so no second `lvchange` is needed. Each lvm process costs a metadata scan, and the clone
    /// time target (< 1 s for a 10 GiB template) is mostly lvm's own start-up.
    fn linked_clone(&self, base: &VolRef, dst: &VolRef) -> Result<(), StorageError> {
        lvm(
            "making a linked clone",
            &[
                "lvcreate",
                "-q",
                "-s",
                "-kn",
                "-ay",
                "-n",
                &dst.name,
                &self.lv(&base.name),
            ],
        )
        .map(|_| ())
    }

    fn make_template(&self, v: &VolRef) -> Result<(), StorageError> {
        lvm(
            "making a template",
            &["lvchange", "-q", "-pr", &self.lv(&v.name)],
        )
        .map(|_| ())
    }

    fn staging_dir(&self) -> Option<PathBuf> {
        None
    }

    fn adopt_file(&self, staged: &Path, v: &VolRef) -> Result<(), StorageError> {
        self.create(v)?;
        let src = Source {
            path: staged.to_path_buf(),
            format: Format::Raw,
            qcow2_snapshot: None,
        };
        let r = super::qemu_img::convert(&src, &self.path(v), Format::Raw, true);
        if r.is_err() {
            let _ = self.remove(v, &[]);
        }
        r
    }

    fn cleanup_staging(&self) {
        if let Ok(out) = lvm(
            "listing volumes",
            &["lvs", "--noheadings", "-o", "lv_name", &self.vg],
        ) {
            for n in out.split_whitespace().filter(|n| n.ends_with("__rollback")) {
                let _ = lvm("cleaning up", &["lvremove", "-q", "-y", &self.lv(n)]);
            }
        }
    }
}
