//! Guest physical memory map of a Ferrite microVM (x86_64).
//!
//! The low addresses follow the Linux boot protocol conventions Firecracker and Cloud
//! Hypervisor use, so a stock kernel finds what it expects: boot structures below 1 MiB,
//! the kernel at 1 MiB, a 32-bit MMIO window below 4 GiB for devices, RAM split around it.

/// GDT used for 64-bit direct boot.
pub const BOOT_GDT: u64 = 0x500;
/// IDT (empty) used for 64-bit direct boot.
pub const BOOT_IDT: u64 = 0x520;
/// PVH `hvm_start_info`.
pub const PVH_INFO: u64 = 0x6000;
/// PVH module list (the initrd).
pub const PVH_MODLIST: u64 = 0x6040;
/// PVH memory map.
pub const PVH_MEMMAP: u64 = 0x7000;
/// Linux zero page (`boot_params`) for 64-bit direct boot.
pub const ZERO_PAGE: u64 = 0x7000;
/// Initial stack pointer for 64-bit direct boot.
pub const BOOT_STACK: u64 = 0x8ff0;
/// Identity page tables for 64-bit direct boot (PML4, PDPT, PD: first GiB in 2 MiB pages).
pub const PML4: u64 = 0x9000;
pub const PDPT: u64 = 0xa000;
pub const PD: u64 = 0xb000;
/// Kernel command line and its maximum length (with the terminating NUL).
pub const CMDLINE: u64 = 0x20000;
pub const CMDLINE_MAX: usize = 4096;
/// End of the low RAM the e820 map reports (the EBDA starts here).
pub const EBDA_START: u64 = 0x9fc00;
/// ACPI tables: the RSDP must sit in the BIOS area the kernel scans.
pub const RSDP: u64 = 0xe0000;
/// Where kernels are loaded.
pub const HIMEM_START: u64 = 0x10_0000;
/// 32-bit MMIO window for virtio-mmio devices (one 4 KiB slot each).
pub const MMIO_START: u64 = 0xd000_0000;
pub const MMIO_SLOT: u64 = 0x1000;
/// End of the MMIO window reserved below 4 GiB (the IOAPIC and LAPIC sit above).
pub const MMIO_END: u64 = 0xfec0_0000;
/// RAM above this address continues at 4 GiB.
pub const FIRST_ADDR_PAST_32BITS: u64 = 1 << 32;
/// KVM's TSS (three pages) sits just below the IOAPIC/LAPIC area, out of RAM's way.
pub const KVM_TSS: u64 = 0xfffb_d000;
/// First legacy GSI handed to virtio devices (COM1 uses 4).
pub const VIRTIO_GSI_BASE: u32 = 5;
/// Last GSI the in-kernel IOAPIC routes.
pub const GSI_MAX: u32 = 23;
/// COM1.
pub const COM1_PORT: u16 = 0x3f8;
pub const COM1_GSI: u32 = 4;
/// i8042 controller (data and command ports).
pub const I8042_DATA: u16 = 0x60;
pub const I8042_COMMAND: u16 = 0x64;
/// ACPI hardware-reduced sleep control register (FADT `sleep_control_reg`), a single byte port.
pub const SLEEP_CONTROL_PORT: u16 = 0x600;
/// ACPI sleep status register (FADT `sleep_status_reg`).
pub const SLEEP_STATUS_PORT: u16 = 0x601;
/// ACPI GED: the power button event register the DSDT's GED reads.
pub const GED_MMIO: u64 = MMIO_END - 0x1000;
pub const GED_GSI: u32 = 23;

/// Guest RAM regions for `mem_bytes` of memory: below the MMIO window, then above 4 GiB.
pub fn ram_regions(mem_bytes: u64) -> Vec<(u64, u64)> {
    if mem_bytes <= MMIO_START {
        vec![(0, mem_bytes)]
    } else {
        vec![
            (0, MMIO_START),
            (FIRST_ADDR_PAST_32BITS, mem_bytes - MMIO_START),
        ]
    }
}

/// Guest physical address of virtio-mmio slot `n`.
pub fn mmio_slot(n: usize) -> u64 {
    MMIO_START + n as u64 * MMIO_SLOT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_splits_around_the_mmio_window() {
        assert_eq!(ram_regions(128 << 20), vec![(0, 128 << 20)]);
        let r = ram_regions(4 << 30);
        assert_eq!(r[0], (0, MMIO_START));
        assert_eq!(r[1].0, 1 << 32);
        assert_eq!(r[0].1 + r[1].1, 4 << 30);
    }
}
