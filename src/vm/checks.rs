//! Checks of a VM's spec that need nothing but the spec: fields only the qemu engine has,
//! and a volume used in two slots.

use super::VmError;
use crate::guest::spec::{Accel, DiskBus, Firmware, NicModel, VmSpec};
use crate::guest::GuestError;

/// The qemu-only fields a microvm sets to something other than their default (422 naming
/// the field, rather than a setting that silently does nothing).
pub fn microvm_fields(b: &VmSpec) -> Result<(), VmError> {
    let needs = |field: &str, what: &str| {
        Err(GuestError::invalid(
            field,
            format!("{what} needs engine qemu; ferrite-vmm does not have it"),
        ))
    };
    if b.accel == Accel::Tcg {
        return needs("/accel", "accel tcg");
    }
    if b.firmware == Firmware::Uefi {
        return needs("/firmware", "firmware uefi");
    }
    if !b.cdrom.is_empty() {
        return needs("/cdrom", "a CD-ROM drive");
    }
    if b.boot.is_some() {
        return needs("/boot", "a boot order");
    }
    if b.agent {
        return needs("/agent", "the guest agent channel");
    }
    if b.cloud_init.is_some() {
        return needs("/cloud_init", "cloud-init");
    }
    for (slot, d) in &b.disks {
        if d.bus != DiskBus::Virtio {
            return needs(
                &format!("/disks/{slot}/bus"),
                "a disk bus other than virtio",
            );
        }
        if d.discard {
            return needs(&format!("/disks/{slot}/discard"), "discard");
        }
        if d.iothread {
            return needs(&format!("/disks/{slot}/iothread"), "an I/O thread");
        }
    }
    for (slot, n) in &b.net {
        if n.model != NicModel::Virtio {
            return needs(
                &format!("/net/{slot}/model"),
                "a NIC model other than virtio",
            );
        }
    }
    Ok(())
}

/// One volume in two disk or CD-ROM slots: the guest would see one disk twice and corrupt
/// it (a shared ISO in two drives is harmless, but also pointless, so refused alike).
pub fn same_volume_twice(b: &VmSpec) -> Result<(), VmError> {
    let mut seen: Vec<(&str, String)> = Vec::new();
    let disks = b
        .disks
        .iter()
        .map(|(s, d)| (d.volume.as_str(), format!("/disks/{s}/volume")));
    let cds = b
        .cdrom
        .iter()
        .filter_map(|(s, c)| Some((c.volume.as_deref()?, format!("/cdrom/{s}/volume"))));
    for (v, field) in disks.chain(cds) {
        if let Some((_, first)) = seen.iter().find(|(w, _)| *w == v) {
            return Err(GuestError::invalid(
                &field,
                format!("volume {v} is already used at {first}; a volume fills one slot"),
            ));
        }
        seen.push((v, field));
    }
    Ok(())
}
