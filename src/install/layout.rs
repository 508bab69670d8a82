//! The disk layout, as a plan computed from the answer and the disk's size before anything is
//! written, so a disk too small is refused with numbers and the partition table is one
//! `sfdisk` script.
//!
//! GPT: BIOS boot (GRUB's core image under SeaBIOS), ESP (GRUB for UEFI at the removable path,
//! kernels and initrds of both slots), root A and root B (each a raw read-only squashfs image
//! of the system, so an upgrade writes the passive slot whole), `/var` (ext4: the overlay that
//! holds /etc changes and the data dir), and optionally an LVM physical volume for guests.

use super::answer::{GuestStorage, InstallDisk};

const MIB: u64 = 1 << 20;

/// GPT partition type GUIDs.
pub mod types {
    pub const BIOS_BOOT: &str = "21686148-6449-6E6F-744E-656564454649";
    pub const ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
    /// Linux root (x86-64), from the UAPI Discoverable Partitions Specification.
    pub const ROOT_X86_64: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
    /// Linux /var.
    pub const VAR: &str = "4D21B016-B534-45C2-A9FB-5C16E091FD2D";
    pub const LVM: &str = "E6D6D379-F507-44C2-A23C-238F2A3DF928";
}

/// One partition of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// GPT partition name; the initramfs finds partitions by it.
    pub name: &'static str,
    pub type_guid: &'static str,
    /// Size in MiB; `None` takes the rest of the disk.
    pub size_mib: Option<u64>,
}

/// Partition names the initramfs and upgrades rely on.
pub const ESP: &str = "ferrite-esp";
pub const ROOT_A: &str = "ferrite-root-a";
pub const ROOT_B: &str = "ferrite-root-b";
pub const VAR: &str = "ferrite-var";
pub const LVM: &str = "ferrite-lvm";

/// The layout for a disk of `disk_bytes`, or why it does not fit.
pub fn plan(disk: &InstallDisk, disk_bytes: u64) -> Result<Vec<Part>, String> {
    let root = u64::from(disk.root_size_gib) * 1024;
    let thin = disk.guest_storage == GuestStorage::Lvmthin;
    let var = disk
        .var_size_gib
        .map(|g| u64::from(g) * 1024)
        .or(thin.then_some(16 * 1024));
    let mut parts = vec![
        Part {
            name: "ferrite-bios",
            type_guid: types::BIOS_BOOT,
            size_mib: Some(1),
        },
        Part {
            name: ESP,
            type_guid: types::ESP,
            size_mib: Some(512),
        },
        Part {
            name: ROOT_A,
            type_guid: types::ROOT_X86_64,
            size_mib: Some(root),
        },
        Part {
            name: ROOT_B,
            type_guid: types::ROOT_X86_64,
            size_mib: Some(root),
        },
    ];
    // What must fit: 1 MiB before the first partition and 1 MiB of GPT backup and slack at
    // the end, the fixed parts, and 2 GiB of /var (1 GiB of thin pool) at least.
    let fixed: u64 = 2 + parts.iter().filter_map(|p| p.size_mib).sum::<u64>();
    let need = fixed + var.unwrap_or(2048) + if thin { 1024 } else { 0 };
    let have = disk_bytes / MIB;
    if have < need {
        return Err(format!(
            "the disk has {} MiB; this layout needs {need} MiB (root slots {root} MiB each{})",
            have,
            var.map(|v| format!(", /var {v} MiB")).unwrap_or_default()
        ));
    }
    if thin {
        parts.push(Part {
            name: VAR,
            type_guid: types::VAR,
            size_mib: var,
        });
        parts.push(Part {
            name: LVM,
            type_guid: types::LVM,
            size_mib: None,
        });
    } else if let Some(v) = var {
        parts.push(Part {
            name: VAR,
            type_guid: types::VAR,
            size_mib: Some(v),
        });
    } else {
        parts.push(Part {
            name: VAR,
            type_guid: types::VAR,
            size_mib: None,
        });
    }
    Ok(parts)
}

/// The plan as an `sfdisk` script (1 MiB aligned, GPT).
pub fn sfdisk_script(parts: &[Part]) -> String {
    let mut s = String::from("label: gpt\nunit: sectors\n");
    for p in parts {
        let size = p
            .size_mib
            .map(|m| format!("size={}MiB, ", m))
            .unwrap_or_default();
        s.push_str(&format!(
            "{size}type={}, name=\"{}\"\n",
            p.type_guid, p.name
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn disk(storage: GuestStorage, var: Option<u32>) -> InstallDisk {
        InstallDisk {
            path: Some("/dev/vda".into()),
            matcher: None,
            wipe: false,
            root_size_gib: 2,
            var_size_gib: var,
            guest_storage: storage,
        }
    }

    #[test]
    fn dir_layout_gives_var_the_rest_and_thin_gives_it_to_lvm() {
        let p = plan(&disk(GuestStorage::Dir, None), 16 * GIB).expect("fits");
        let names: Vec<_> = p.iter().map(|p| p.name).collect();
        assert_eq!(names, ["ferrite-bios", ESP, ROOT_A, ROOT_B, VAR]);
        assert_eq!(p[4].size_mib, None);
        let t = plan(&disk(GuestStorage::Lvmthin, None), 64 * GIB).expect("fits");
        assert_eq!(t[4].size_mib, Some(16 * 1024));
        assert_eq!((t[5].name, t[5].size_mib), (LVM, None));
    }

    #[test]
    fn a_small_disk_is_refused_with_numbers() {
        let e = plan(&disk(GuestStorage::Lvmthin, None), 8 * GIB).expect_err("too small");
        assert!(e.contains("8192 MiB") && e.contains("needs"), "{e}");
        assert!(plan(&disk(GuestStorage::Dir, None), 7 * GIB).is_ok());
    }

    #[test]
    fn script_names_every_partition() {
        let s = sfdisk_script(&plan(&disk(GuestStorage::Dir, Some(4)), 16 * GIB).expect("fits"));
        assert!(s.starts_with("label: gpt\n"));
        assert!(s.contains(&format!(
            "size=1MiB, type={}, name=\"ferrite-bios\"",
            types::BIOS_BOOT
        )));
        assert!(s.contains(
            "size=4096MiB, type=4D21B016-B534-45C2-A9FB-5C16E091FD2D, name=\"ferrite-var\""
        ));
    }
}
