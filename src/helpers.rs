//! The helper binaries `ferrited` spawns (`ferrite-ctr` for containers, `ferrite-vmm` for VMs).
//!
//! They are installed beside the daemon. A checkout built with `cargo build --bin ferrited`
//! alone lacks them, and the first container start used to fail with a bare 500 ("No such
//! file or directory"). So the daemon checks them at start (logged once, with the fix), reports
//! what is missing in `GET /nodes/{node}` (`problems`), and every operation that would spawn one
//! checks it first and answers 503 naming the helper. The check runs again on each use, so
//! installing the binary fixes a running daemon without a restart.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The command that builds every binary the daemon spawns.
pub const BUILD_HINT: &str =
    "build it with `cargo build --release --bins` (./scripts/run builds every binary the daemon spawns)";

/// A helper binary the daemon runs.
#[derive(Debug, Clone)]
pub struct Helper {
    name: &'static str,
    path: PathBuf,
    /// How to fix a missing one.
    hint: &'static str,
}

/// A helper that cannot be run.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the helper {name} cannot be run: {reason} ({}); {hint}", path.display())]
pub struct HelperMissing {
    pub name: &'static str,
    pub path: PathBuf,
    pub reason: String,
    pub hint: &'static str,
}

/// How to get QEMU.
pub const QEMU_HINT: &str = "install Debian's qemu-system-x86 package (apt install qemu-system-x86), or point ferrited --qemu at the binary";

impl Helper {
    /// The helper `name` in the directory of the running executable (where cargo and the
    /// appliance both put it).
    pub fn beside_daemon(name: &'static str) -> Helper {
        let path = std::env::current_exe()
            .map(|p| p.with_file_name(name))
            .unwrap_or_else(|_| PathBuf::from(name));
        Helper {
            name,
            path,
            hint: BUILD_HINT,
        }
    }

    /// A helper at an explicit path.
    pub fn at(name: &'static str, path: PathBuf) -> Helper {
        Helper {
            name,
            path,
            hint: BUILD_HINT,
        }
    }

    /// A program installed from the distribution, found on `PATH` (or at `path` when that
    /// is absolute); `hint` says how to install it.
    pub fn system(name: &'static str, path: &Path, hint: &'static str) -> Helper {
        let found = if path.is_absolute() {
            Some(path.to_path_buf())
        } else {
            std::env::var_os("PATH").and_then(|dirs| {
                std::env::split_paths(&dirs)
                    .map(|d| d.join(path))
                    .find(|p| p.is_file())
            })
        };
        Helper {
            name,
            path: found.unwrap_or_else(|| PathBuf::from("/usr/bin").join(path)),
            hint,
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the helper exists as an executable regular file.
    pub fn check(&self) -> Result<(), HelperMissing> {
        let missing = |reason: String| HelperMissing {
            name: self.name,
            path: self.path.clone(),
            reason,
            hint: self.hint,
        };
        let meta = std::fs::metadata(&self.path).map_err(|e| {
            missing(match e.kind() {
                std::io::ErrorKind::NotFound => "no such file".to_string(),
                _ => e.to_string(),
            })
        })?;
        if !meta.is_file() {
            return Err(missing("not a regular file".into()));
        }
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(missing("not executable".into()));
        }
        Ok(())
    }
}

/// The problems `GET /nodes/{node}` lists for these helpers (schema `NodeProblem`).
pub fn problems(helpers: &[&Helper]) -> Vec<serde_json::Value> {
    helpers
        .iter()
        .filter_map(|h| h.check().err())
        .map(|e| {
            serde_json::json!({
                "kind": "missing-helper",
                "subject": e.name,
                "detail": e.to_string(),
            })
        })
        .collect()
}

/// Logs each helper that cannot be run, once, at daemon start.
pub fn log_missing(helpers: &[&Helper]) {
    for h in helpers {
        if let Err(e) = h.check() {
            tracing::warn!(helper = h.name, path = %h.path.display(), "{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_non_executable_helpers_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = Helper::at("ferrite-ctr", dir.path().join("ferrite-ctr"));
        let e = h.check().expect_err("absent");
        assert!(e.to_string().contains("ferrite-ctr"), "{e}");
        assert!(e.to_string().contains("no such file"), "{e}");
        std::fs::write(h.path(), b"#!/bin/sh\n").expect("write");
        let e = h.check().expect_err("not executable");
        assert!(e.reason.contains("not executable"), "{e}");
        std::fs::set_permissions(h.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        h.check().expect("runnable");
        assert!(problems(&[&h]).is_empty());
    }
}
