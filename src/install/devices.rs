//! What the installer can install onto and configure: disks and NICs as the kernel shows
//! them in sysfs, and the answer's filters applied to them. `ferrite install devices` prints
//! the same records, so a filter can be written against what the machine really reports.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::answer::{InstallDisk, InstallDiskMatch, InstallNicMatch};

/// A whole disk.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Disk {
    /// Kernel name (`vda`, `sda`, `nvme0n1`).
    pub name: String,
    pub path: PathBuf,
    pub size_bytes: u64,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub removable: bool,
    pub read_only: bool,
    /// Kernel names of its partitions.
    pub partitions: Vec<String>,
    /// Holds the answer (a filesystem labelled `FERRITE-ANS`): never a target.
    pub holds_answer: bool,
}

/// A physical network interface.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Nic {
    pub name: String,
    pub mac: String,
    pub driver: Option<String>,
}

/// Why no single disk or NIC was chosen.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SelectError {
    #[error("{pointer}: no {what} matches; the machine has: {seen}")]
    None {
        pointer: &'static str,
        what: &'static str,
        seen: String,
    },
    #[error("{pointer}: {n} {what}s match ({names}); exactly one must")]
    Many {
        pointer: &'static str,
        what: &'static str,
        n: usize,
        names: String,
    },
    #[error("{pointer}: {path} is not a disk this machine has; it has: {seen}")]
    NoSuchPath {
        pointer: &'static str,
        path: String,
        seen: String,
    },
    #[error(
        "{pointer}: {name} holds the answer file (label FERRITE-ANS) and cannot be the target"
    )]
    AnswerMedia { pointer: &'static str, name: String },
}

const GIB: u64 = 1 << 30;

fn read_trim(p: &Path) -> Option<String> {
    let s = fs::read_to_string(p).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// A device's filesystem label as blkid reads it from the device itself (no udev needed).
pub fn label_of(dev: &Path) -> Option<String> {
    let o = std::process::Command::new("blkid")
        .args(["-c", "/dev/null", "-o", "value", "-s", "LABEL"])
        .arg(dev)
        .output()
        .ok()?;
    let l = String::from_utf8_lossy(&o.stdout).trim().to_string();
    (!l.is_empty()).then_some(l)
}

/// The disks under `sys` (normally `/sys`): not loop, RAM, device-mapper, md or optical
/// devices, not empty. `label_of` reads a device's filesystem label (blkid in production).
pub fn disks(sys: &Path, label_of: &dyn Fn(&Path) -> Option<String>) -> Vec<Disk> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(sys.join("block")) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if ["loop", "ram", "zram", "dm-", "md", "sr", "fd", "nbd"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            continue;
        }
        let dir = e.path();
        let sectors: u64 = read_trim(&dir.join("size"))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if sectors == 0 {
            continue;
        }
        let mut partitions: Vec<String> = fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .filter(|p| p.path().join("partition").exists())
                    .map(|p| p.file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default();
        partitions.sort();
        let path = PathBuf::from("/dev").join(&name);
        let holds_answer = std::iter::once(path.clone())
            .chain(partitions.iter().map(|p| PathBuf::from("/dev").join(p)))
            .any(|p| label_of(&p).is_some_and(|l| l.eq_ignore_ascii_case(super::ANSWER_LABEL)));
        out.push(Disk {
            serial: read_trim(&dir.join("serial"))
                .or_else(|| read_trim(&dir.join("device/serial"))),
            model: read_trim(&dir.join("device/model")),
            removable: read_trim(&dir.join("removable")).as_deref() == Some("1"),
            read_only: read_trim(&dir.join("ro")).as_deref() == Some("1"),
            size_bytes: sectors * 512,
            path,
            partitions,
            holds_answer,
            name,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Physical NICs under `sys` (those with a `device` link), sorted by name.
pub fn nics(sys: &Path) -> Vec<Nic> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(sys.join("class/net")) else {
        return out;
    };
    for e in rd.flatten() {
        let dir = e.path();
        if !dir.join("device").exists() {
            continue;
        }
        let driver = fs::read_link(dir.join("device/driver"))
            .ok()
            .and_then(|p| p.file_name().map(|f| f.to_string_lossy().to_string()));
        out.push(Nic {
            name: e.file_name().to_string_lossy().to_string(),
            mac: read_trim(&dir.join("address")).unwrap_or_default(),
            driver,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn glob_ok(pattern: &Option<String>, value: Option<&str>) -> bool {
    match pattern {
        None => true,
        Some(p) => match (glob::Pattern::new(p), value) {
            (Ok(pat), Some(v)) => pat.matches(v),
            _ => false,
        },
    }
}

fn matches(m: &InstallDiskMatch, d: &Disk) -> bool {
    glob_ok(&m.name, Some(&d.name))
        && glob_ok(&m.serial, d.serial.as_deref())
        && glob_ok(&m.model, d.model.as_deref())
        && m.min_size_gib.is_none_or(|g| d.size_bytes >= g * GIB)
        && m.max_size_gib.is_none_or(|g| d.size_bytes <= g * GIB)
}

/// One line per disk, for error messages.
pub fn describe(disks: &[Disk]) -> String {
    if disks.is_empty() {
        return "no disks".into();
    }
    disks
        .iter()
        .map(|d| {
            format!(
                "{} ({} GiB, serial {}, model {}{})",
                d.name,
                d.size_bytes / GIB,
                d.serial.as_deref().unwrap_or("-"),
                d.model.as_deref().unwrap_or("-"),
                if d.holds_answer { ", answer media" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The one disk the answer names. `resolve` canonicalises a path (symlinks under
/// /dev/disk/by-id lead to the kernel name).
pub fn select_disk(
    want: &InstallDisk,
    disks: &[Disk],
    resolve: &dyn Fn(&str) -> Option<PathBuf>,
) -> Result<Disk, SelectError> {
    if let Some(p) = &want.path {
        let real = resolve(p).unwrap_or_else(|| PathBuf::from(p));
        let d = disks
            .iter()
            .find(|d| d.path == real)
            .ok_or_else(|| SelectError::NoSuchPath {
                pointer: "/disk/path",
                path: p.clone(),
                seen: describe(disks),
            })?;
        if d.holds_answer {
            return Err(SelectError::AnswerMedia {
                pointer: "/disk/path",
                name: d.name.clone(),
            });
        }
        return Ok(d.clone());
    }
    let m = want.matcher.clone().unwrap_or_default();
    let hits: Vec<&Disk> = disks
        .iter()
        .filter(|d| !d.holds_answer && matches(&m, d))
        .collect();
    match hits.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(SelectError::None {
            pointer: "/disk/match",
            what: "disk",
            seen: describe(disks),
        }),
        many => Err(SelectError::Many {
            pointer: "/disk/match",
            what: "disk",
            n: many.len(),
            names: many
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The one NIC the answer names.
pub fn select_nic(want: &InstallNicMatch, nics: &[Nic]) -> Result<Nic, SelectError> {
    let hits: Vec<&Nic> = nics
        .iter()
        .filter(|n| match (&want.mac, &want.name) {
            (Some(mac), _) => n.mac.eq_ignore_ascii_case(mac),
            (None, name) => glob_ok(name, Some(&n.name)),
        })
        .collect();
    let seen = || {
        if nics.is_empty() {
            "no NICs".to_string()
        } else {
            nics.iter()
                .map(|n| format!("{} ({})", n.name, n.mac))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    match hits.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(SelectError::None {
            pointer: "/network/nic",
            what: "NIC",
            seen: seen(),
        }),
        many => Err(SelectError::Many {
            pointer: "/network/nic",
            what: "NIC",
            n: many.len(),
            names: many
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(name: &str, gib: u64, serial: &str) -> Disk {
        Disk {
            name: name.into(),
            path: PathBuf::from("/dev").join(name),
            size_bytes: gib * GIB,
            model: Some("QEMU HARDDISK".into()),
            serial: Some(serial.into()),
            removable: false,
            read_only: false,
            partitions: vec![],
            holds_answer: false,
        }
    }

    fn by_match(m: InstallDiskMatch) -> InstallDisk {
        InstallDisk {
            path: None,
            matcher: Some(m),
            wipe: false,
            root_size_gib: 2,
            var_size_gib: None,
            guest_storage: Default::default(),
        }
    }

    #[test]
    fn a_filter_must_select_exactly_one_disk() {
        let mut ans = disk("vdb", 1, "ANS");
        ans.holds_answer = true;
        let disks = vec![disk("vda", 16, "target-1"), ans, disk("vdc", 32, "other")];
        let none = |_: &str| None;
        let pick = |m| select_disk(&by_match(m), &disks, &none);
        let one = pick(InstallDiskMatch {
            serial: Some("target-*".into()),
            ..Default::default()
        });
        assert_eq!(one.map(|d| d.name), Ok("vda".to_string()));
        // vd* matches vda and vdc; the answer media is never a candidate.
        let many = pick(InstallDiskMatch {
            name: Some("vd*".into()),
            ..Default::default()
        });
        assert!(
            matches!(many, Err(SelectError::Many { n: 2, .. })),
            "{many:?}"
        );
        let sized = pick(InstallDiskMatch {
            name: Some("vd*".into()),
            min_size_gib: Some(20),
            ..Default::default()
        });
        assert_eq!(sized.map(|d| d.name), Ok("vdc".to_string()));
        let zero = pick(InstallDiskMatch {
            model: Some("Samsung*".into()),
            ..Default::default()
        });
        let msg = zero.expect_err("no match").to_string();
        assert!(
            msg.contains("/disk/match") && msg.contains("vda (16 GiB"),
            "{msg}"
        );
        let mut by_path = by_match(InstallDiskMatch::default());
        by_path.matcher = None;
        by_path.path = Some("/dev/vdb".into());
        assert!(matches!(
            select_disk(&by_path, &disks, &none),
            Err(SelectError::AnswerMedia { .. })
        ));
    }

    #[test]
    fn nics_by_mac_any_case_or_by_name_glob() {
        let nics = vec![
            Nic {
                name: "ens3".into(),
                mac: "52:54:00:12:34:56".into(),
                driver: None,
            },
            Nic {
                name: "ens4".into(),
                mac: "52:54:00:12:34:57".into(),
                driver: None,
            },
        ];
        let by_mac = InstallNicMatch {
            mac: Some("52:54:00:12:34:57".to_uppercase()),
            name: None,
        };
        assert_eq!(
            select_nic(&by_mac, &nics).map(|n| n.name),
            Ok("ens4".into())
        );
        let glob = InstallNicMatch {
            mac: None,
            name: Some("ens*".into()),
        };
        assert!(matches!(
            select_nic(&glob, &nics),
            Err(SelectError::Many { n: 2, .. })
        ));
    }

    /// The real sysfs: every disk listed has a size and a /dev path (this host has at least
    /// its root disk).
    #[test]
    fn this_machine_lists_its_disks() {
        let d = disks(Path::new("/sys"), &|_| None);
        assert!(!d.is_empty(), "no disks in /sys/block");
        assert!(d
            .iter()
            .all(|d| d.size_bytes > 0 && d.path.starts_with("/dev")));
    }
}
