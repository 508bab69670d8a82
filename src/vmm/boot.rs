//! Direct kernel boot: load an ELF `vmlinux` (PVH entry when its note is present; 32-bit
//! images through [`super::elf32`], PVH only) or a
//! 64-bit bzImage, the initrd and the command line, and write the structure the chosen entry
//! expects (PVH `hvm_start_info` or the Linux zero page) with the memory map.

use std::fs::File;
use std::path::Path;

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use linux_loader::loader::{
    self, BzImage, Elf, KernelLoader, KernelLoaderResult, PvhBootCapability,
};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use super::error::{Result, VmmError};
use super::layout;
use super::memory::GuestMem;

/// How the boot vCPU enters the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BootMode {
    /// 32-bit protected mode at the PVH entry, `%ebx` = start_info.
    Pvh,
    /// 64-bit long mode at the entry point, `%rsi` = zero page.
    Linux64,
}

#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub mode: BootMode,
    pub addr: u64,
}

const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;
const XLF_KERNEL_64: u16 = 1;
const PVH_MAGIC: u32 = 0x336e_c578;
const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT: u32 = 0x0100_0000;

/// Loads the kernel and reports how to enter it.
pub fn load_kernel(mem: &GuestMem, path: &Path) -> Result<(Entry, KernelLoaderResult)> {
    let mut f = File::open(path).map_err(|e| VmmError::io(path, e))?;
    let himem = Some(GuestAddress(layout::HIMEM_START));
    let mut head = [0u8; 8];
    let n = std::io::Read::read(&mut f, &mut head).map_err(|e| VmmError::io(path, e))?;
    if super::elf32::is_elf32(&head[..n]) {
        let file = std::fs::read(path).map_err(|e| VmmError::io(path, e))?;
        let r = super::elf32::load(mem, &file).map_err(|e| VmmError::NotAKernel {
            path: path.into(),
            detail: e.to_string(),
        })?;
        let addr = match r.pvh_boot_cap {
            PvhBootCapability::PvhEntryPresent(a) => a.raw_value(),
            _ => r.kernel_load.raw_value(),
        };
        return Ok((
            Entry {
                mode: BootMode::Pvh,
                addr,
            },
            r,
        ));
    }
    std::io::Seek::rewind(&mut f).map_err(|e| VmmError::io(path, e))?;
    match Elf::load(mem, None, &mut f, himem) {
        Ok(r) => {
            let entry = match r.pvh_boot_cap {
                PvhBootCapability::PvhEntryPresent(a) => Entry {
                    mode: BootMode::Pvh,
                    addr: a.raw_value(),
                },
                _ => Entry {
                    mode: BootMode::Linux64,
                    addr: r.kernel_load.raw_value(),
                },
            };
            return Ok((entry, r));
        }
        Err(loader::Error::Elf(loader::elf::Error::InvalidElfMagicNumber)) => {}
        Err(e) => {
            return Err(VmmError::NotAKernel {
                path: path.into(),
                detail: e.to_string(),
            })
        }
    }
    let r = BzImage::load(mem, None, &mut f, himem).map_err(|e| VmmError::NotAKernel {
        path: path.into(),
        detail: format!("not ELF, and as bzImage: {e}"),
    })?;
    let hdr = r.setup_header.ok_or_else(|| VmmError::NotAKernel {
        path: path.into(),
        detail: "bzImage without a setup header".into(),
    })?;
    if hdr.version < 0x020c || hdr.xloadflags & XLF_KERNEL_64 == 0 {
        return Err(VmmError::NotAKernel {
            path: path.into(),
            detail: format!(
                "bzImage protocol {:#x} without a 64-bit entry (needs >= 2.12 and XLF_KERNEL_64)",
                { hdr.version }
            ),
        });
    }
    Ok((
        Entry {
            mode: BootMode::Linux64,
            addr: r.kernel_load.raw_value() + 0x200,
        },
        r,
    ))
}

/// Copies the initrd page-aligned to the top of low RAM (below `max_addr`); returns (addr, size).
pub fn load_initrd(mem: &GuestMem, path: &Path, max_addr: u64) -> Result<(u64, u64)> {
    let data = std::fs::read(path).map_err(|e| VmmError::io(path, e))?;
    let size = data.len() as u64;
    let low_end = mem
        .iter()
        .map(|r| r.start_addr().raw_value() + r.len())
        .filter(|end| *end <= layout::MMIO_START)
        .max()
        .unwrap_or(0)
        .min(max_addr);
    let addr = low_end
        .checked_sub(size)
        .map(|a| a & !0xfff)
        .filter(|a| *a >= layout::HIMEM_START)
        .ok_or_else(|| VmmError::InitrdTooBig {
            path: path.into(),
            size,
        })?;
    mem.write_slice(&data, GuestAddress(addr))
        .map_err(|e| VmmError::GuestMemory {
            addr,
            detail: e.to_string(),
        })?;
    Ok((addr, size))
}

/// Writes the NUL-terminated command line at [`layout::CMDLINE`].
pub fn load_cmdline(mem: &GuestMem, cmdline: &str) -> Result<()> {
    if cmdline.len() + 1 > layout::CMDLINE_MAX || cmdline.contains('\0') {
        return Err(VmmError::Cmdline(format!(
            "must be under {} bytes without NUL",
            layout::CMDLINE_MAX
        )));
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(layout::CMDLINE))
        .map_err(|e| VmmError::GuestMemory {
            addr: layout::CMDLINE,
            detail: e.to_string(),
        })
}

/// The memory map both boot protocols report: low RAM, the BIOS/EBDA hole, RAM from 1 MiB.
fn memory_map(mem: &GuestMem) -> Vec<(u64, u64, u32)> {
    let mut map = vec![
        (0, layout::EBDA_START, E820_RAM),
        (
            layout::EBDA_START,
            layout::HIMEM_START - layout::EBDA_START,
            E820_RESERVED,
        ),
    ];
    for r in mem.iter() {
        let start = r.start_addr().raw_value().max(layout::HIMEM_START);
        let end = r.start_addr().raw_value() + r.len();
        if end > start {
            map.push((start, end - start, E820_RAM));
        }
    }
    map
}

fn gm_err(e: impl std::fmt::Display) -> VmmError {
    VmmError::GuestMemory {
        addr: 0,
        detail: e.to_string(),
    }
}

/// PVH: `hvm_start_info` at [`layout::PVH_INFO`] with the memory map and the initrd module.
pub fn write_pvh_info(mem: &GuestMem, initrd: Option<(u64, u64)>) -> Result<()> {
    let mut info = hvm_start_info {
        magic: PVH_MAGIC,
        version: 1,
        cmdline_paddr: layout::CMDLINE,
        rsdp_paddr: layout::RSDP,
        ..Default::default()
    };
    if let Some((addr, size)) = initrd {
        info.nr_modules = 1;
        info.modlist_paddr = layout::PVH_MODLIST;
        let module = hvm_modlist_entry {
            paddr: addr,
            size,
            ..Default::default()
        };
        mem.write_obj(module, GuestAddress(layout::PVH_MODLIST))
            .map_err(gm_err)?;
    }
    let map = memory_map(mem);
    for (i, (addr, size, t)) in map.iter().enumerate() {
        let entry = hvm_memmap_table_entry {
            addr: *addr,
            size: *size,
            type_: *t,
            reserved: 0,
        };
        let at = layout::PVH_MEMMAP + (i * std::mem::size_of::<hvm_memmap_table_entry>()) as u64;
        mem.write_obj(entry, GuestAddress(at)).map_err(gm_err)?;
    }
    info.memmap_paddr = layout::PVH_MEMMAP;
    info.memmap_entries = map.len() as u32;
    mem.write_obj(info, GuestAddress(layout::PVH_INFO))
        .map_err(gm_err)
}

/// 64-bit Linux boot: the zero page at [`layout::ZERO_PAGE`], starting from the bzImage's
/// setup header when there is one.
pub fn write_zero_page(
    mem: &GuestMem,
    kernel: &KernelLoaderResult,
    cmdline_len: usize,
    initrd: Option<(u64, u64)>,
) -> Result<()> {
    let mut params = boot_params::default();
    if let Some(hdr) = kernel.setup_header {
        params.hdr = hdr;
    } else {
        params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT;
    }
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    params.hdr.header = KERNEL_HDR_MAGIC;
    params.hdr.cmd_line_ptr = layout::CMDLINE as u32;
    params.hdr.cmdline_size = cmdline_len as u32;
    if let Some((addr, size)) = initrd {
        params.hdr.ramdisk_image = addr as u32;
        params.hdr.ramdisk_size = size as u32;
    }
    params.acpi_rsdp_addr = layout::RSDP;
    let map = memory_map(mem);
    for (i, (addr, size, t)) in map.iter().enumerate().take(params.e820_table.len()) {
        params.e820_table[i] = boot_e820_entry {
            addr: *addr,
            size: *size,
            r#type: *t,
        };
    }
    params.e820_entries = map.len().min(params.e820_table.len()) as u8;
    mem.write_obj(params, GuestAddress(layout::ZERO_PAGE))
        .map_err(gm_err)
}

/// Highest address an initrd may end at for this kernel.
pub fn initrd_limit(kernel: &KernelLoaderResult) -> u64 {
    kernel
        .setup_header
        .map(|h| u64::from(h.initrd_addr_max) + 1)
        .unwrap_or(layout::MMIO_START)
        .min(layout::MMIO_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_map_reserves_the_bios_hole() {
        let mem = crate::vmm::memory::create(16, false).expect("memory");
        let map = memory_map(&mem);
        assert_eq!(map[0], (0, layout::EBDA_START, E820_RAM));
        assert_eq!(map[1].2, E820_RESERVED);
        assert_eq!(
            map[2],
            (
                layout::HIMEM_START,
                (16 << 20) - layout::HIMEM_START,
                E820_RAM
            )
        );
    }

    #[test]
    fn a_text_file_is_not_a_kernel() {
        let mem = crate::vmm::memory::create(16, false).expect("memory");
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("k");
        std::fs::write(&p, vec![b'x'; 4096]).expect("write");
        let err = load_kernel(&mem, &p).expect_err("must refuse");
        assert!(matches!(err, VmmError::NotAKernel { .. }), "{err}");
    }
}
