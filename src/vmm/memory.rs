//! Guest RAM: anonymous mappings (optionally hugepage-backed) registered as KVM memory slots.

use kvm_ioctls::VmFd;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use super::error::{Result, VmmError};
use super::layout;

pub type GuestMem = vm_memory::GuestMemoryMmap<()>;

/// Allocates `mib` MiB split around the MMIO window. Pages are touched lazily by the guest.
pub fn create(mib: u64, hugepages: bool) -> Result<GuestMem> {
    let bytes = mib << 20;
    let ranges: Vec<(GuestAddress, usize)> = layout::ram_regions(bytes)
        .into_iter()
        .map(|(a, l)| (GuestAddress(a), l as usize))
        .collect();
    let mem = GuestMem::from_ranges(&ranges).map_err(|e| VmmError::Memory {
        mib,
        detail: e.to_string(),
    })?;
    for region in mem.iter() {
        let advice = if hugepages {
            libc::MADV_HUGEPAGE
        } else {
            libc::MADV_NOHUGEPAGE
        };
        // SAFETY: the range is a mapping this process owns for the memory's lifetime.
        unsafe { libc::madvise(region.as_ptr().cast(), region.len() as usize, advice) };
    }
    Ok(mem)
}

/// Registers every region as a KVM memory slot.
pub fn register(vm: &VmFd, mem: &GuestMem) -> Result<()> {
    for (slot, region) in mem.iter().enumerate() {
        let r = kvm_bindings::kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
        };
        // SAFETY: the region stays mapped as long as `mem`, which outlives the VM fd.
        unsafe { vm.set_user_memory_region(r) }
            .map_err(VmmError::kvm("KVM_SET_USER_MEMORY_REGION"))?;
    }
    Ok(())
}

/// Total guest RAM in bytes.
pub fn size(mem: &GuestMem) -> u64 {
    mem.iter().map(|r| r.len()).sum()
}

/// Bytes of memory the host could hand out now (MemAvailable), for refusing oversize guests.
pub fn host_available_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
