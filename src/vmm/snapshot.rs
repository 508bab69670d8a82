//! Snapshots of a paused machine, restored into a fresh process where the guest continues.
//!
//! A snapshot is a directory with two files:
//! - `vmstate`: a magic line, a format version, the SHA-256 of the JSON that follows, then
//!   the JSON [`MachineState`] (configuration, vCPU registers, interrupt controllers,
//!   kvmclock, COM1 and virtio transport state, and the SHA-256 of the memory file);
//! - `memory`: guest RAM, regions back to back.
//!
//! Both checksums are verified before anything is loaded; an unknown version is refused.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use kvm_bindings::{
    kvm_clock_data, kvm_debugregs, kvm_irqchip, kvm_lapic_state, kvm_mp_state, kvm_msr_entry,
    kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave, Msrs, KVM_IRQCHIP_IOAPIC,
    KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
};
use kvm_ioctls::{VcpuFd, VmFd};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

use super::config::MachineConfig;
use super::devices::virtio::mmio::TransportState;
use super::devices::Devices;
use super::error::{Result, VmmError};
use super::machine::Machine;
use super::memory::{self, GuestMem};

const MAGIC: &str = "FERRITE-VMSTATE";
/// Version 2: no PIT state (machines have no PIT since).
pub const FORMAT_VERSION: u32 = 2;
/// Versions this build restores. Version 1 differs only by the PIT state, which is ignored
/// when read (the restored machine has no PIT, as a fresh one).
const READS: std::ops::RangeInclusive<u32> = 1..=FORMAT_VERSION;

#[derive(Serialize, Deserialize)]
pub struct VcpuState {
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub xsave: kvm_xsave,
    pub xcrs: kvm_xcrs,
    pub lapic: kvm_lapic_state,
    pub mp_state: kvm_mp_state,
    pub events: kvm_vcpu_events,
    pub debugregs: kvm_debugregs,
    pub msrs: Vec<(u32, u64)>,
}

#[derive(Serialize, Deserialize, Default)]
pub struct SerialSnapshot {
    pub regs: [u8; 9],
    pub in_buffer: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
pub struct MachineState {
    pub config: MachineConfig,
    pub vcpus: Vec<VcpuState>,
    pub pic_master: kvm_irqchip,
    pub pic_slave: kvm_irqchip,
    pub ioapic: kvm_irqchip,
    pub clock: kvm_clock_data,
    pub serial: SerialSnapshot,
    pub virtio: Vec<TransportState>,
    pub memory_bytes: u64,
    pub memory_sha256: String,
}

fn snap_err(path: &Path, detail: impl std::fmt::Display) -> VmmError {
    VmmError::Snapshot {
        path: path.into(),
        detail: detail.to_string(),
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// MSRs worth carrying: those KVM lists, read in one pass each (KVM stops at the first it
/// cannot read, so the unreadable ones are skipped one by one).
fn save_msrs(kvm: &kvm_ioctls::Kvm, vcpu: &VcpuFd) -> Result<Vec<(u32, u64)>> {
    let list = kvm
        .get_msr_index_list()
        .map_err(VmmError::kvm("KVM_GET_MSR_INDEX_LIST"))?;
    let mut indices: Vec<u32> = list.as_slice().to_vec();
    let mut out = Vec::new();
    while !indices.is_empty() {
        let entries: Vec<kvm_msr_entry> = indices
            .iter()
            .map(|i| kvm_msr_entry {
                index: *i,
                ..Default::default()
            })
            .collect();
        let mut msrs =
            Msrs::from_entries(&entries).map_err(|e| VmmError::State(format!("{e:?}")))?;
        let n = vcpu
            .get_msrs(&mut msrs)
            .map_err(VmmError::kvm("KVM_GET_MSRS"))?;
        out.extend(msrs.as_slice()[..n].iter().map(|e| (e.index, e.data)));
        indices.drain(..(n + 1).min(indices.len()));
    }
    Ok(out)
}

fn save_vcpu(kvm: &kvm_ioctls::Kvm, vcpu: &VcpuFd) -> Result<VcpuState> {
    Ok(VcpuState {
        regs: vcpu.get_regs().map_err(VmmError::kvm("KVM_GET_REGS"))?,
        sregs: vcpu.get_sregs().map_err(VmmError::kvm("KVM_GET_SREGS"))?,
        xsave: vcpu.get_xsave().map_err(VmmError::kvm("KVM_GET_XSAVE"))?,
        xcrs: vcpu.get_xcrs().map_err(VmmError::kvm("KVM_GET_XCRS"))?,
        lapic: vcpu.get_lapic().map_err(VmmError::kvm("KVM_GET_LAPIC"))?,
        mp_state: vcpu
            .get_mp_state()
            .map_err(VmmError::kvm("KVM_GET_MP_STATE"))?,
        events: vcpu
            .get_vcpu_events()
            .map_err(VmmError::kvm("KVM_GET_VCPU_EVENTS"))?,
        debugregs: vcpu
            .get_debug_regs()
            .map_err(VmmError::kvm("KVM_GET_DEBUGREGS"))?,
        msrs: save_msrs(kvm, vcpu)?,
    })
}

pub fn restore_vcpu(vcpu: &VcpuFd, s: &VcpuState) -> Result<()> {
    vcpu.set_sregs(&s.sregs)
        .map_err(VmmError::kvm("KVM_SET_SREGS"))?;
    vcpu.set_regs(&s.regs)
        .map_err(VmmError::kvm("KVM_SET_REGS"))?;
    // SAFETY: the xsave area came from KVM_GET_XSAVE of the same layout.
    unsafe { vcpu.set_xsave(&s.xsave) }.map_err(VmmError::kvm("KVM_SET_XSAVE"))?;
    vcpu.set_xcrs(&s.xcrs)
        .map_err(VmmError::kvm("KVM_SET_XCRS"))?;
    let entries: Vec<kvm_msr_entry> = s
        .msrs
        .iter()
        .map(|(index, data)| kvm_msr_entry {
            index: *index,
            data: *data,
            ..Default::default()
        })
        .collect();
    let msrs = Msrs::from_entries(&entries).map_err(|e| VmmError::State(format!("{e:?}")))?;
    let n = vcpu
        .set_msrs(&msrs)
        .map_err(VmmError::kvm("KVM_SET_MSRS"))?;
    if n != entries.len() {
        return Err(VmmError::State(format!(
            "KVM accepted {n} of {} saved MSRs (MSR {:#x} refused)",
            entries.len(),
            entries[n].index
        )));
    }
    vcpu.set_lapic(&s.lapic)
        .map_err(VmmError::kvm("KVM_SET_LAPIC"))?;
    vcpu.set_mp_state(s.mp_state)
        .map_err(VmmError::kvm("KVM_SET_MP_STATE"))?;
    vcpu.set_vcpu_events(&s.events)
        .map_err(VmmError::kvm("KVM_SET_VCPU_EVENTS"))?;
    vcpu.set_debug_regs(&s.debugregs)
        .map_err(VmmError::kvm("KVM_SET_DEBUGREGS"))?;
    Ok(())
}

fn irqchip(vm: &VmFd, id: u32) -> Result<kvm_irqchip> {
    let mut c = kvm_irqchip {
        chip_id: id,
        ..Default::default()
    };
    vm.get_irqchip(&mut c)
        .map_err(VmmError::kvm("KVM_GET_IRQCHIP"))?;
    Ok(c)
}

pub fn restore_vm(vm: &VmFd, s: &MachineState) -> Result<()> {
    let mut clock = s.clock;
    clock.flags = 0;
    vm.set_clock(&clock)
        .map_err(VmmError::kvm("KVM_SET_CLOCK"))?;
    for chip in [&s.pic_master, &s.pic_slave, &s.ioapic] {
        vm.set_irqchip(chip)
            .map_err(VmmError::kvm("KVM_SET_IRQCHIP"))?;
    }
    Ok(())
}

pub fn restore_devices(devices: &Devices, s: &MachineState) -> Result<()> {
    let r = &s.serial.regs;
    let state = vm_superio::SerialState {
        baud_divisor_low: r[0],
        baud_divisor_high: r[1],
        interrupt_enable: r[2],
        interrupt_identification: r[3],
        line_control: r[4],
        line_status: r[5],
        modem_control: r[6],
        modem_status: r[7],
        scratch: r[8],
        in_buffer: s.serial.in_buffer.clone(),
    };
    {
        let mut serial = lock(&devices.serial);
        let out = std::mem::replace(
            serial.writer_mut(),
            super::devices::serial::SerialOut::new(false, None)
                .map_err(|e| VmmError::State(e.to_string()))?,
        );
        let trigger = serial
            .interrupt_evt()
            .try_clone()
            .map_err(|e| VmmError::State(e.to_string()))?;
        *serial =
            vm_superio::Serial::from_state(&state, trigger, vm_superio::serial::NoEvents, out)
                .map_err(|e| VmmError::State(format!("serial state: {e:?}")))?;
    }
    if s.virtio.len() != devices.virtio.len() {
        return Err(VmmError::State(
            "snapshot device list does not match the configuration".into(),
        ));
    }
    for (t, ts) in devices.virtio.iter().zip(&s.virtio) {
        lock(t).restore(ts);
    }
    Ok(())
}

/// Writes a snapshot of a paused machine into `dir` (created if missing).
pub fn save(machine: &Machine, dir: &Path) -> Result<()> {
    if !machine.is_paused() {
        return Err(VmmError::State(
            "the VM is running: pause it before a snapshot".into(),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| VmmError::io(dir, e))?;
    let mem_path = dir.join("memory");
    let mut hasher = Sha256::new();
    {
        let f = File::create(&mem_path).map_err(|e| VmmError::io(&mem_path, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        for region in machine.mem.iter() {
            // SAFETY: the region is mapped for the machine's lifetime and vCPUs are parked.
            let bytes =
                unsafe { std::slice::from_raw_parts(region.as_ptr(), region.len() as usize) };
            hasher.update(bytes);
            w.write_all(bytes).map_err(|e| VmmError::io(&mem_path, e))?;
        }
        let f = w
            .into_inner()
            .map_err(|e| VmmError::io(&mem_path, e.into_error()))?;
        f.sync_all().map_err(|e| VmmError::io(&mem_path, e))?;
    }
    let mut vcpus = Vec::new();
    for fd in machine.vcpu_fds() {
        vcpus.push(save_vcpu(machine.kvm(), &lock(fd))?);
    }
    let vm = machine.vm_fd();
    let serial = {
        let s = lock(&machine.devices.serial).state();
        SerialSnapshot {
            regs: [
                s.baud_divisor_low,
                s.baud_divisor_high,
                s.interrupt_enable,
                s.interrupt_identification,
                s.line_control,
                s.line_status,
                s.modem_control,
                s.modem_status,
                s.scratch,
            ],
            in_buffer: s.in_buffer,
        }
    };
    let state = MachineState {
        config: machine.config.clone(),
        vcpus,
        pic_master: irqchip(vm, KVM_IRQCHIP_PIC_MASTER)?,
        pic_slave: irqchip(vm, KVM_IRQCHIP_PIC_SLAVE)?,
        ioapic: irqchip(vm, KVM_IRQCHIP_IOAPIC)?,
        clock: vm.get_clock().map_err(VmmError::kvm("KVM_GET_CLOCK"))?,
        serial,
        virtio: machine
            .devices
            .virtio
            .iter()
            .map(|t| lock(t).state())
            .collect(),
        memory_bytes: memory::size(&machine.mem),
        memory_sha256: hex::encode(hasher.finalize()),
    };
    let json = serde_json::to_vec(&state).map_err(|e| snap_err(dir, e))?;
    let state_path = dir.join("vmstate");
    let mut f = File::create(&state_path).map_err(|e| VmmError::io(&state_path, e))?;
    let header = format!(
        "{MAGIC}\nversion {FORMAT_VERSION}\nsha256 {}\n",
        hex::encode(Sha256::digest(&json))
    );
    f.write_all(header.as_bytes())
        .and_then(|_| f.write_all(&json))
        .and_then(|_| f.sync_all())
        .map_err(|e| VmmError::io(&state_path, e))?;
    Ok(())
}

/// Reads the state file: magic, a version this build reads, the checksum of the JSON, and a
/// valid machine configuration.
fn read_state(dir: &Path) -> Result<MachineState> {
    let state_path = dir.join("vmstate");
    let raw = std::fs::read(&state_path).map_err(|e| VmmError::io(&state_path, e))?;
    let mut lines = raw.splitn(4, |b| *b == b'\n');
    let magic = lines.next().unwrap_or_default();
    let version = lines.next().unwrap_or_default();
    let sum = lines.next().unwrap_or_default();
    let json = lines.next().unwrap_or_default();
    if magic != MAGIC.as_bytes() {
        return Err(snap_err(&state_path, "not a Ferrite VM state file"));
    }
    let version = std::str::from_utf8(version)
        .ok()
        .and_then(|v| v.strip_prefix("version "))
        .and_then(|v| v.parse::<u32>().ok())
        .ok_or_else(|| snap_err(&state_path, "missing format version"))?;
    if !READS.contains(&version) {
        return Err(snap_err(
            &state_path,
            format!(
                "format version {version}; this ferrite-vmm reads versions {} to {}",
                READS.start(),
                READS.end()
            ),
        ));
    }
    let expected = std::str::from_utf8(sum)
        .ok()
        .and_then(|s| s.strip_prefix("sha256 "))
        .ok_or_else(|| snap_err(&state_path, "missing checksum"))?;
    if hex::encode(Sha256::digest(json)) != expected {
        return Err(snap_err(
            &state_path,
            "checksum mismatch: the state file is damaged",
        ));
    }
    let state: MachineState = serde_json::from_slice(json).map_err(|e| snap_err(&state_path, e))?;
    state.config.validate()?;
    Ok(state)
}

/// Checks a snapshot without loading it: the state file as [`load`] reads it, and the memory
/// file's length and checksum, streamed. The daemon calls this before it rolls a VM's disks
/// back, so a damaged or unreadable snapshot is refused while the disks are still untouched.
pub fn verify(dir: &Path) -> Result<()> {
    let state = read_state(dir)?;
    let mem_path = dir.join("memory");
    let mut f = File::open(&mem_path).map_err(|e| VmmError::io(&mem_path, e))?;
    let len = f.metadata().map_err(|e| VmmError::io(&mem_path, e))?.len();
    if len != state.memory_bytes {
        return Err(snap_err(
            &mem_path,
            format!(
                "the memory file holds {len} bytes, the state says {}: the snapshot is damaged",
                state.memory_bytes
            ),
        ));
    }
    let mut hasher = Sha256::new();
    std::io::copy(&mut f, &mut hasher).map_err(|e| VmmError::io(&mem_path, e))?;
    if hex::encode(hasher.finalize()) != state.memory_sha256 {
        return Err(snap_err(
            &mem_path,
            "checksum mismatch: the memory file is damaged",
        ));
    }
    Ok(())
}

/// Reads and verifies a snapshot; returns its state and guest memory filled from it.
pub fn load(dir: &Path) -> Result<(MachineState, GuestMem)> {
    let state = read_state(dir)?;
    let mem = memory::create(state.config.memory_mib, state.config.hugepages)?;
    if memory::size(&mem) != state.memory_bytes {
        return Err(snap_err(
            dir,
            "memory size does not match the configuration",
        ));
    }
    let mem_path = dir.join("memory");
    let mut f = File::open(&mem_path).map_err(|e| VmmError::io(&mem_path, e))?;
    let mut hasher = Sha256::new();
    for region in mem.iter() {
        // SAFETY: a fresh private mapping this function owns; no vCPU runs yet.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(region.as_ptr(), region.len() as usize) };
        f.read_exact(bytes)
            .map_err(|e| VmmError::io(&mem_path, e))?;
        hasher.update(&*bytes);
    }
    if hex::encode(hasher.finalize()) != state.memory_sha256 {
        return Err(snap_err(
            &mem_path,
            "checksum mismatch: the memory file is damaged",
        ));
    }
    Ok((state, mem))
}
