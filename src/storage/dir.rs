//! The `dir` pool: volumes are files and directories under one directory, laid out as Proxmox
//! admins know it (`images/`, `private/`, `template/iso/`, `template/cache/`, `dump/`,
//! `snippets/`). Raw volumes are sparse files; snapshots and full clones of raw files use a
//! reflink where the filesystem has them (XFS, btrfs) and a sparse copy otherwise; qcow2 volumes
//! keep internal snapshots and back linked clones.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::pool::{Capacity, Pool, Source, VolRef};
use super::{io, qemu_img, Content, Format, StorageError};

/// A directory pool.
pub struct DirPool {
    root: PathBuf,
}

/// Clones `src` into a new file `dst` sharing its blocks (FICLONE); false when the filesystem
/// cannot, so the caller falls back to a copy.
fn reflink(src: &Path, dst: &Path) -> Result<bool, StorageError> {
    use std::os::fd::AsRawFd;
    const FICLONE: nix::libc::c_ulong = 0x4004_9409;
    let s = fs::File::open(src).map_err(io(format!("opening {}", src.display())))?;
    let d = fs::File::create(dst).map_err(io(format!("creating {}", dst.display())))?;
    // SAFETY: both descriptors are open for the duration of the call; FICLONE takes an fd.
    let r = unsafe { nix::libc::ioctl(d.as_raw_fd(), FICLONE as _, s.as_raw_fd()) };
    if r == 0 {
        return Ok(true);
    }
    drop(d);
    let _ = fs::remove_file(dst);
    Ok(false)
}

/// Copies a raw file keeping holes: reflink first, else qemu-img's sparse copy.
fn copy_raw(src: &Path, dst: &Path) -> Result<(), StorageError> {
    if reflink(src, dst)? {
        return Ok(());
    }
    qemu_img::convert(
        &Source {
            path: src.to_path_buf(),
            format: Format::Raw,
            qcow2_snapshot: None,
        },
        dst,
        Format::Raw,
        false,
    )
}

/// Copies a directory tree with owners, modes, xattrs and hard links (reflinked where possible).
pub(super) fn copy_tree(src: &Path, dst: &Path) -> Result<(), StorageError> {
    fs::create_dir_all(dst).map_err(io(format!("creating {}", dst.display())))?;
    let out = super::tool("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg(format!("{}/.", src.display()))
        .arg(dst)
        .output()
        .map_err(|e| StorageError::Tool(format!("cannot run cp: {e}")))?;
    if !out.status.success() {
        let _ = fs::remove_dir_all(dst);
        return Err(StorageError::Tool(format!(
            "copying {} to {}: {}",
            src.display(),
            dst.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn remove_any(p: &Path) -> Result<(), StorageError> {
    let r = match fs::symlink_metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
    };
    r.map_err(io(format!("removing {}", p.display())))
}

fn tree_blocks(p: &Path) -> u64 {
    let Ok(m) = fs::symlink_metadata(p) else {
        return 0;
    };
    let mut n = m.blocks() * 512;
    if m.is_dir() {
        if let Ok(rd) = fs::read_dir(p) {
            for e in rd.flatten() {
                n += tree_blocks(&e.path());
            }
        }
    }
    n
}

impl DirPool {
    /// Opens (creating if needed) a directory pool.
    pub fn new(root: PathBuf) -> Result<Self, StorageError> {
        if !root.is_absolute() {
            return Err(StorageError::Invalid {
                field: "/path".into(),
                message: format!("{} is not an absolute path", root.display()),
            });
        }
        fs::create_dir_all(&root).map_err(io(format!("creating {}", root.display())))?;
        let pool = DirPool { root };
        for c in Content::ALL {
            let d = pool.content_dir(c);
            fs::create_dir_all(&d).map_err(io(format!("creating {}", d.display())))?;
        }
        Ok(pool)
    }

    fn content_dir(&self, c: Content) -> PathBuf {
        self.root.join(match c {
            Content::Images => "images",
            Content::Rootdir => "private",
            Content::Iso => "template/iso",
            Content::Template => "template/cache",
            Content::Backup => "dump",
            Content::Snippets => "snippets",
        })
    }

    fn snap_dir(&self, v: &VolRef) -> PathBuf {
        self.root
            .join(".snapshots")
            .join(v.content.as_str())
            .join(&v.name)
    }

    fn snap_path(&self, v: &VolRef, snap: &str) -> PathBuf {
        self.snap_dir(v).join(snap)
    }
}

impl Pool for DirPool {
    fn capacity(&self) -> Result<Capacity, StorageError> {
        let s = nix::sys::statvfs::statvfs(&self.root).map_err(|e| StorageError::Io {
            context: format!("reading the capacity of {}", self.root.display()),
            source: e.into(),
        })?;
        let frag = s.fragment_size() as u64;
        let total = s.blocks() as u64 * frag;
        let free = s.blocks_available() as u64 * frag;
        let used = total.saturating_sub(s.blocks_free() as u64 * frag);
        Ok(Capacity { total, used, free })
    }

    fn default_format(&self, content: Content) -> Format {
        match content {
            Content::Rootdir => Format::Subvol,
            _ => Format::Raw,
        }
    }

    fn supports(&self, content: Content, format: Format) -> bool {
        match content {
            Content::Images => matches!(format, Format::Raw | Format::Qcow2),
            Content::Rootdir => matches!(format, Format::Subvol | Format::Raw),
            _ => format == Format::Raw,
        }
    }

    fn can_link(&self, format: Format) -> bool {
        matches!(format, Format::Raw | Format::Qcow2)
    }

    fn path(&self, v: &VolRef) -> PathBuf {
        self.content_dir(v.content).join(&v.name)
    }

    fn exists(&self, v: &VolRef) -> bool {
        fs::symlink_metadata(self.path(v)).is_ok()
    }

    fn allocated(&self, v: &VolRef) -> Option<u64> {
        let p = self.path(v);
        fs::symlink_metadata(&p).ok()?;
        Some(tree_blocks(&p))
    }

    fn create(&self, v: &VolRef) -> Result<(), StorageError> {
        let p = self.path(v);
        match v.format {
            Format::Subvol => fs::create_dir(&p).map_err(io(format!("creating {}", p.display()))),
            Format::Qcow2 => qemu_img::create_qcow2(&p, v.size, None),
            Format::Raw => {
                let f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&p)
                    .map_err(io(format!("creating {}", p.display())))?;
                f.set_len(v.size)
                    .map_err(io(format!("sizing {}", p.display())))
            }
        }
    }

    fn remove(&self, v: &VolRef, _snapshots: &[String]) -> Result<(), StorageError> {
        remove_any(&self.snap_dir(v))?;
        remove_any(&self.path(v))
    }

    fn resize(&self, v: &VolRef, size: u64) -> Result<(), StorageError> {
        let p = self.path(v);
        match v.format {
            // A directory has no size of its own; the new size is recorded as its quota.
            Format::Subvol => Ok(()),
            Format::Qcow2 => qemu_img::resize(&p, Format::Qcow2, size),
            Format::Raw => fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .and_then(|f| f.set_len(size))
                .map_err(io(format!("growing {}", p.display()))),
        }
    }

    fn snapshot(&self, v: &VolRef, snap: &str) -> Result<(), StorageError> {
        let p = self.path(v);
        if v.format == Format::Qcow2 {
            return qemu_img::snapshot(&p, "-c", snap);
        }
        let d = self.snap_dir(v);
        fs::create_dir_all(&d).map_err(io(format!("creating {}", d.display())))?;
        let s = self.snap_path(v, snap);
        let r = match v.format {
            Format::Subvol => copy_tree(&p, &s),
            _ => copy_raw(&p, &s),
        };
        if r.is_err() {
            let _ = remove_any(&s);
        }
        r
    }

    fn rollback(&self, v: &VolRef, snap: &str) -> Result<(), StorageError> {
        let p = self.path(v);
        if v.format == Format::Qcow2 {
            return qemu_img::snapshot(&p, "-a", snap);
        }
        // Build the restored copy beside the volume, then swap it in with renames so a
        // failure half way leaves the current state untouched.
        let s = self.snap_path(v, snap);
        let tmp = p.with_file_name(format!(".rollback-{}", v.name));
        let old = p.with_file_name(format!(".replaced-{}", v.name));
        remove_any(&tmp)?;
        let r = match v.format {
            Format::Subvol => copy_tree(&s, &tmp),
            _ => copy_raw(&s, &tmp),
        };
        if let Err(e) = r {
            let _ = remove_any(&tmp);
            return Err(e);
        }
        fs::rename(&p, &old).map_err(io(format!("moving {} aside", p.display())))?;
        if let Err(e) = fs::rename(&tmp, &p) {
            let _ = fs::rename(&old, &p);
            let _ = remove_any(&tmp);
            return Err(io(format!("restoring {}", p.display()))(e));
        }
        remove_any(&old)
    }

    fn delete_snapshot(&self, v: &VolRef, snap: &str) -> Result<(), StorageError> {
        if v.format == Format::Qcow2 {
            return qemu_img::snapshot(&self.path(v), "-d", snap);
        }
        remove_any(&self.snap_path(v, snap))
    }

    fn source(&self, v: &VolRef, snap: Option<&str>) -> Result<Source, StorageError> {
        Ok(match (v.format, snap) {
            (Format::Qcow2, s) => Source {
                path: self.path(v),
                format: Format::Qcow2,
                qcow2_snapshot: s.map(String::from),
            },
            (f, Some(s)) => Source {
                path: self.snap_path(v, s),
                format: f,
                qcow2_snapshot: None,
            },
            (f, None) => Source {
                path: self.path(v),
                format: f,
                qcow2_snapshot: None,
            },
        })
    }

    fn linked_clone(&self, base: &VolRef, dst: &VolRef) -> Result<(), StorageError> {
        qemu_img::create_qcow2(
            &self.path(dst),
            dst.size,
            Some((&self.path(base), base.format)),
        )
    }

    fn make_template(&self, v: &VolRef) -> Result<(), StorageError> {
        use std::os::unix::fs::PermissionsExt;
        let p = self.path(v);
        if v.format == Format::Subvol {
            return Ok(());
        }
        fs::set_permissions(&p, fs::Permissions::from_mode(0o444))
            .map_err(io(format!("making {} read-only", p.display())))
    }

    fn staging_dir(&self) -> Option<PathBuf> {
        Some(self.root.join(".staging"))
    }

    fn adopt_file(&self, staged: &Path, v: &VolRef) -> Result<(), StorageError> {
        let p = self.path(v);
        fs::rename(staged, &p).map_err(io(format!(
            "moving {} to {}",
            staged.display(),
            p.display()
        )))
    }

    fn cleanup_staging(&self) {
        if let Some(d) = self.staging_dir() {
            let _ = fs::remove_dir_all(&d);
            let _ = fs::create_dir_all(&d);
        }
        for c in Content::ALL {
            if let Ok(rd) = fs::read_dir(self.content_dir(c)) {
                for e in rd.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n.starts_with(".rollback-") {
                        let _ = remove_any(&e.path());
                    }
                    // An interrupted rollback that moved the volume aside but did not finish.
                    if let Some(orig) = n.strip_prefix(".replaced-") {
                        let target = e.path().with_file_name(orig);
                        if target.exists() {
                            let _ = remove_any(&e.path());
                        } else {
                            let _ = fs::rename(e.path(), target);
                        }
                    }
                }
            }
        }
    }
}
