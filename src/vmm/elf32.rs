//! 32-bit ELF images with a PVH entry note, which QEMU boots and `linux-loader` (ELF64 only)
//! refuses with "Invalid program header size". A PVH entry starts in 32-bit protected mode
//! with paging off, so the image's class does not matter to the guest once it is in memory:
//! this loader places the `PT_LOAD` segments at their physical addresses and reads the entry
//! from the `XEN_ELFNOTE_PHYS32_ENTRY` note. Images without that note are refused with the
//! reason (a 32-bit image has no other entry this VMM can take).

use linux_loader::loader::elf::PvhBootCapability;
use linux_loader::loader::KernelLoaderResult;
use vm_memory::{Bytes, GuestAddress};

use super::layout;
use super::memory::GuestMem;

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const EM_386: u16 = 3;
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
const EHDR_SIZE: usize = 52;
const PHDR_SIZE: usize = 32;

/// Why an image is not a bootable ELF32 PVH image.
#[derive(Debug, thiserror::Error)]
#[error("32-bit ELF: {0}")]
pub struct Elf32Error(String);

fn bad(m: impl Into<String>) -> Elf32Error {
    Elf32Error(m.into())
}

/// Whether `head` (the file's first bytes) is a 32-bit ELF.
pub fn is_elf32(head: &[u8]) -> bool {
    head.starts_with(b"\x7fELF") && head.get(4) == Some(&1)
}

/// One loadable segment.
struct Segment {
    offset: usize,
    paddr: u64,
    filesz: usize,
    memsz: u64,
}

/// A parsed image: its loadable segments and the PVH entry.
pub struct Image {
    segments: Vec<Segment>,
    pub entry: u64,
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, Elf32Error> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| bad("truncated"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, Elf32Error> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| bad("truncated"))
}

/// Parses the headers and finds the PVH entry.
pub fn parse(file: &[u8]) -> Result<Image, Elf32Error> {
    if !is_elf32(file) {
        return Err(bad("not a 32-bit ELF file"));
    }
    if file.get(5) != Some(&1) {
        return Err(bad("not little-endian"));
    }
    if file.len() < EHDR_SIZE {
        return Err(bad("truncated header"));
    }
    if u16_at(file, 18)? != EM_386 {
        return Err(bad("not an x86 (EM_386) image"));
    }
    let phoff = u32_at(file, 28)? as usize;
    let phentsize = u16_at(file, 42)? as usize;
    let phnum = u16_at(file, 44)? as usize;
    if phentsize != PHDR_SIZE {
        return Err(bad(format!(
            "program header size {phentsize}, not {PHDR_SIZE}"
        )));
    }
    let mut segments = Vec::new();
    let mut entry = None;
    for i in 0..phnum {
        let at = phoff + i * PHDR_SIZE;
        let (p_type, offset, paddr) = (
            u32_at(file, at)?,
            u32_at(file, at + 4)?,
            u32_at(file, at + 12)?,
        );
        let (filesz, memsz) = (u32_at(file, at + 16)?, u32_at(file, at + 20)?);
        let (offset, filesz) = (offset as usize, filesz as usize);
        if offset
            .checked_add(filesz)
            .is_none_or(|end| end > file.len())
        {
            return Err(bad(format!("segment {i} runs past the end of the file")));
        }
        match p_type {
            PT_LOAD if memsz > 0 => {
                if filesz as u64 > u64::from(memsz) {
                    return Err(bad(format!("segment {i} has more file bytes than memory")));
                }
                segments.push(Segment {
                    offset,
                    paddr: u64::from(paddr),
                    filesz,
                    memsz: u64::from(memsz),
                });
            }
            PT_NOTE => entry = entry.or(pvh_note(&file[offset..offset + filesz])?),
            _ => {}
        }
    }
    let entry = entry.ok_or_else(|| {
        bad("no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); a 32-bit image boots only through PVH")
    })?;
    if segments.is_empty() {
        return Err(bad("no loadable segment"));
    }
    Ok(Image { segments, entry })
}

/// The PVH entry in a `PT_NOTE` segment, if it holds one.
fn pvh_note(notes: &[u8]) -> Result<Option<u64>, Elf32Error> {
    let align = |n: usize| n.div_ceil(4) * 4;
    let mut at = 0;
    while at + 12 <= notes.len() {
        let namesz = u32_at(notes, at)? as usize;
        let descsz = u32_at(notes, at + 4)? as usize;
        let kind = u32_at(notes, at + 8)?;
        let name_at = at + 12;
        let desc_at = name_at + align(namesz);
        let next = desc_at + align(descsz);
        if next > notes.len() {
            return Err(bad("truncated note"));
        }
        let name = &notes[name_at..name_at + namesz];
        if kind == XEN_ELFNOTE_PHYS32_ENTRY && name.starts_with(b"Xen") {
            let e = match descsz {
                4 => u64::from(u32_at(notes, desc_at)?),
                8 => {
                    u64::from(u32_at(notes, desc_at)?)
                        | (u64::from(u32_at(notes, desc_at + 4)?) << 32)
                }
                n => return Err(bad(format!("PVH entry note of {n} bytes"))),
            };
            return Ok(Some(e));
        }
        at = next;
    }
    Ok(None)
}

/// Loads `file` into guest memory; segments must sit at or above 1 MiB (below are the boot
/// structures) and inside RAM.
pub fn load(mem: &GuestMem, file: &[u8]) -> Result<KernelLoaderResult, Elf32Error> {
    let img = parse(file)?;
    let (mut low, mut high) = (u64::MAX, 0u64);
    for s in &img.segments {
        if s.paddr < layout::HIMEM_START {
            return Err(bad(format!(
                "a segment loads at {:#x}, below 1 MiB where the boot structures live",
                s.paddr
            )));
        }
        let end = s.paddr + s.memsz;
        mem.write_slice(&file[s.offset..s.offset + s.filesz], GuestAddress(s.paddr))
            .map_err(|e| bad(format!("segment at {:#x}: {e}", s.paddr)))?;
        let zeros = vec![0u8; (s.memsz - s.filesz as u64) as usize];
        mem.write_slice(&zeros, GuestAddress(s.paddr + s.filesz as u64))
            .map_err(|e| bad(format!("segment at {:#x} (to {end:#x}): {e}", s.paddr)))?;
        low = low.min(s.paddr);
        high = high.max(end);
    }
    Ok(KernelLoaderResult {
        kernel_load: GuestAddress(low),
        kernel_end: high,
        setup_header: None,
        pvh_boot_cap: PvhBootCapability::PvhEntryPresent(GuestAddress(img.entry)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF32 with one PT_LOAD at 1 MiB and, optionally, a PVH note.
    fn image(with_note: bool) -> Vec<u8> {
        let mut f = vec![0u8; 0x200];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 1;
        f[5] = 1;
        f[18..20].copy_from_slice(&EM_386.to_le_bytes());
        f[28..32].copy_from_slice(&(EHDR_SIZE as u32).to_le_bytes());
        f[42..44].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        f[44..46].copy_from_slice(&2u16.to_le_bytes());
        let ph = |f: &mut Vec<u8>, at: usize, vals: [u32; 6]| {
            for (i, v) in vals.iter().enumerate() {
                f[at + i * 4..at + i * 4 + 4].copy_from_slice(&v.to_le_bytes());
            }
        };
        ph(
            &mut f,
            EHDR_SIZE,
            [PT_LOAD, 0x100, 0x10_0000, 0x10_0000, 0x40, 0x80],
        );
        let note_kind = if with_note {
            XEN_ELFNOTE_PHYS32_ENTRY
        } else {
            1
        };
        ph(
            &mut f,
            EHDR_SIZE + PHDR_SIZE,
            [PT_NOTE, 0x180, 0, 0, 20, 20],
        );
        for (i, v) in [4u32, 4, note_kind].iter().enumerate() {
            f[0x180 + i * 4..0x184 + i * 4].copy_from_slice(&v.to_le_bytes());
        }
        f[0x18c..0x190].copy_from_slice(b"Xen\0");
        f[0x190..0x194].copy_from_slice(&0x10_0010u32.to_le_bytes());
        f
    }

    #[test]
    fn the_pvh_entry_comes_from_the_note() {
        let img = parse(&image(true)).expect("parses");
        assert_eq!(img.entry, 0x10_0010);
        assert_eq!(img.segments.len(), 1);
        let e = parse(&image(false)).err().expect("no note").to_string();
        assert!(e.contains("no PVH entry note"), "{e}");
        let mut trunc = image(true);
        trunc.truncate(0x150);
        assert!(parse(&trunc).is_err());
    }
}
