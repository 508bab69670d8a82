//! Unpacking a template tarball into a container's root filesystem, safely: no member may land
//! outside the root (`..`, absolute paths, or a path through a symlink the archive made), and
//! owners are shifted into the container's subordinate id range so the unprivileged container
//! sees them as its own root.

use std::fs;
use std::io::{BufReader, Read};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Why a template could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read the template {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the template is not a .tar, .tar.gz, .tar.xz or .tar.zst archive: {0}")]
    Format(String),
    #[error("the template is corrupt: {0}")]
    Corrupt(String),
    #[error("the template member '{0}' would land outside the root filesystem")]
    Escape(String),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn reader(path: &Path) -> Result<Box<dyn Read>, TemplateError> {
    let open = |p: &Path| {
        fs::File::open(p).map_err(|source| TemplateError::Open {
            path: p.to_path_buf(),
            source,
        })
    };
    let mut f = open(path)?;
    let mut magic = [0u8; 6];
    let n = f.read(&mut magic).map_err(|source| TemplateError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let f = BufReader::with_capacity(1 << 20, open(path)?);
    let m = &magic[..n];
    Ok(if m.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else if m.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(xz2::read::XzDecoder::new_multi_decoder(f))
    } else if m.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            ruzstd::StreamingDecoder::new(f)
                .map_err(|e| TemplateError::Corrupt(format!("zstd: {e}")))?,
        )
    } else {
        Box::new(f)
    })
}

/// Checks a member path and returns it relative to the root.
fn safe_relative(p: &Path) -> Result<PathBuf, TemplateError> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(x) => out.push(x),
            Component::CurDir => {}
            _ => return Err(TemplateError::Escape(p.display().to_string())),
        }
    }
    Ok(out)
}

/// Fails when any existing ancestor of `rel` under `root` is a symlink (which could point
/// anywhere): members are only ever written through real directories.
fn check_ancestors(root: &Path, rel: &Path) -> Result<(), TemplateError> {
    let mut cur = root.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            cur.push(c);
            if let Ok(m) = fs::symlink_metadata(&cur) {
                if m.file_type().is_symlink() {
                    return Err(TemplateError::Escape(rel.display().to_string()));
                }
            }
        }
    }
    Ok(())
}

/// Unpacks `archive` into `root` (which must exist and be empty), shifting owners by
/// `id_shift`. Returns the number of members written.
pub fn unpack(archive: &Path, root: &Path, id_shift: u32) -> Result<u64, TemplateError> {
    // The root directory belongs to the container's root.
    nix::unistd::chown(
        root,
        Some(nix::unistd::Uid::from_raw(id_shift)),
        Some(nix::unistd::Gid::from_raw(id_shift)),
    )
    .map_err(|e| TemplateError::Write {
        path: root.to_path_buf(),
        source: e.into(),
    })?;
    let mut ar = tar::Archive::new(reader(archive)?);
    let mut n = 0u64;
    let entries = ar
        .entries()
        .map_err(|e| TemplateError::Format(e.to_string()))?;
    for entry in entries {
        let mut e = entry.map_err(|e| TemplateError::Corrupt(e.to_string()))?;
        let raw = e
            .path()
            .map_err(|e| TemplateError::Corrupt(e.to_string()))?
            .into_owned();
        let rel = safe_relative(&raw)?;
        if rel.as_os_str().is_empty() {
            // The archive's own "./": its mode applies to the root directory.
            if let Ok(m) = e.header().mode() {
                let _ = fs::set_permissions(root, fs::Permissions::from_mode(m & 0o7777));
            }
            continue;
        }
        check_ancestors(root, &rel)?;
        let dest = root.join(&rel);
        let h = e.header().clone();
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let uid = h.uid().unwrap_or(0) as u32;
        let gid = h.gid().unwrap_or(0) as u32;
        let werr = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TemplateError::Write { path, source }
        };
        if let Some(p) = dest.parent() {
            fs::create_dir_all(p).map_err(werr(p))?;
        }
        match h.entry_type() {
            tar::EntryType::Directory => {
                if !dest.is_dir() {
                    fs::create_dir(&dest).map_err(werr(&dest))?;
                }
                fs::set_permissions(&dest, fs::Permissions::from_mode(mode))
                    .map_err(werr(&dest))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let _ = fs::remove_file(&dest);
                let mut f = fs::File::create(&dest).map_err(werr(&dest))?;
                std::io::copy(&mut e, &mut f)
                    .map_err(|e| TemplateError::Corrupt(format!("{}: {e}", rel.display())))?;
                fs::set_permissions(&dest, fs::Permissions::from_mode(mode))
                    .map_err(werr(&dest))?;
            }
            tar::EntryType::Symlink => {
                let target = h
                    .link_name()
                    .map_err(|e| TemplateError::Corrupt(e.to_string()))?
                    .ok_or_else(|| {
                        TemplateError::Corrupt(format!("{} has no target", rel.display()))
                    })?;
                let _ = fs::remove_file(&dest);
                // A symlink may point anywhere inside the container; it is never followed here.
                symlink(&target, &dest).map_err(werr(&dest))?;
            }
            tar::EntryType::Link => {
                let target = h
                    .link_name()
                    .map_err(|e| TemplateError::Corrupt(e.to_string()))?
                    .ok_or_else(|| {
                        TemplateError::Corrupt(format!("{} has no target", rel.display()))
                    })?;
                let trel = safe_relative(&target)?;
                check_ancestors(root, &trel)?;
                let src = root.join(&trel);
                if fs::symlink_metadata(&src).is_ok_and(|m| m.file_type().is_symlink()) {
                    return Err(TemplateError::Escape(target.display().to_string()));
                }
                let _ = fs::remove_file(&dest);
                fs::hard_link(&src, &dest).map_err(werr(&dest))?;
            }
            // Device nodes cannot be made in an unprivileged container's root; /dev is
            // provided at start instead. FIFOs and others are skipped likewise.
            _ => continue,
        }
        nix::unistd::fchownat(
            None,
            &dest,
            Some(nix::unistd::Uid::from_raw(uid.saturating_add(id_shift))),
            Some(nix::unistd::Gid::from_raw(gid.saturating_add(id_shift))),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| TemplateError::Write {
            path: dest.clone(),
            source: e.into(),
        })?;
        n += 1;
    }
    if n == 0 {
        return Err(TemplateError::Corrupt("the archive has no members".into()));
    }
    Ok(n)
}
