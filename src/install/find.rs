//! Where the installer looks for its answer, first hit wins: QEMU's fw_cfg
//! (`opt/dev.ferrite/answer`, as Ignition uses `opt/com.coreos/config`), a filesystem labelled
//! `FERRITE-ANS` on any disk or CD (waiting for slow devices rather than looking once), and an
//! answer baked into the ISO by `ferrite install prepare-iso`. The network is never probed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where an answer came from, for the console log.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    FwCfg,
    Label(PathBuf),
    Iso(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::FwCfg => write!(f, "QEMU fw_cfg opt/dev.ferrite/answer"),
            Source::Label(d) => write!(f, "{} (label {})", d.display(), super::ANSWER_LABEL),
            Source::Iso(p) => write!(f, "{} on the ISO", p.display()),
        }
    }
}

/// An answer's text, its file name (for the format) and where it came from.
#[derive(Debug, Clone)]
pub struct Found {
    pub text: String,
    pub name: String,
    pub source: Source,
}

/// Why no answer could be read.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    #[error("no answer found: not in QEMU fw_cfg (opt/dev.ferrite/answer), not on a filesystem labelled {label} (waited {waited}s), not baked into the ISO ({iso})")]
    NotFound {
        label: &'static str,
        waited: u64,
        iso: String,
    },
    #[error("{0}: {1}")]
    Read(String, String),
}

const FW_CFG: &str = "/sys/firmware/qemu_fw_cfg/by_name/opt/dev.ferrite/answer/raw";
const NAMES: &[&str] = &["answer.toml", "answer.json"];

/// Searches every source; `wait` bounds how long to keep looking for the labelled filesystem.
pub fn find(iso: &Path, mount_dir: &Path, wait: Duration) -> Result<Found, FindError> {
    if let Ok(bytes) = std::fs::read(FW_CFG) {
        let text = String::from_utf8(bytes)
            .map_err(|_| FindError::Read(FW_CFG.into(), "not UTF-8".into()))?;
        return Ok(Found {
            name: "answer".into(),
            text,
            source: Source::FwCfg,
        });
    }
    let t0 = Instant::now();
    loop {
        for dev in labelled() {
            if let Some(found) = read_from_device(&dev, mount_dir)? {
                return Ok(found);
            }
        }
        if t0.elapsed() >= wait {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    for n in NAMES {
        let p = iso.join("ferrite").join(n);
        if let Ok(text) = std::fs::read_to_string(&p) {
            return Ok(Found {
                text,
                name: (*n).into(),
                source: Source::Iso(p),
            });
        }
    }
    Err(FindError::NotFound {
        label: super::ANSWER_LABEL,
        waited: wait.as_secs(),
        iso: iso.join("ferrite/answer.toml").display().to_string(),
    })
}

/// Devices carrying the label, in any case (FAT upper-cases labels; ISO 9660 may not).
fn labelled() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for label in [
        super::ANSWER_LABEL.to_string(),
        super::ANSWER_LABEL.to_lowercase(),
    ] {
        // blkid probes the devices itself, so this works without udev.
        if let Ok(o) = Command::new("blkid")
            .args(["-c", "/dev/null", "-o", "device", "-t"])
            .arg(format!("LABEL={label}"))
            .output()
        {
            for l in String::from_utf8_lossy(&o.stdout).lines() {
                let p = PathBuf::from(l.trim());
                if !l.trim().is_empty() && !out.contains(&p) {
                    out.push(p);
                }
            }
        }
    }
    out
}

fn read_from_device(dev: &Path, mount_dir: &Path) -> Result<Option<Found>, FindError> {
    std::fs::create_dir_all(mount_dir)
        .map_err(|e| FindError::Read(mount_dir.display().to_string(), e.to_string()))?;
    let ok = Command::new("mount")
        .args(["-o", "ro"])
        .arg(dev)
        .arg(mount_dir)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return Ok(None);
    }
    let mut found = None;
    for n in NAMES {
        if let Ok(text) = std::fs::read_to_string(mount_dir.join(n)) {
            found = Some(Found {
                text,
                name: (*n).into(),
                source: Source::Label(dev.to_path_buf()),
            });
            break;
        }
    }
    let _ = Command::new("umount").arg(mount_dir).status();
    Ok(found)
}
