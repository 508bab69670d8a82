//! virtio-blk backed by a raw image file: read, write, flush, discard, write-zeroes, get-id,
//! and a read-only mode that refuses every write with an I/O error status.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use virtio_queue::{desc::split::Descriptor, Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};

use super::{VirtioDevice, TYPE_BLOCK, VIRTIO_F_VERSION_1};
use crate::vmm::memory::GuestMem;

const SECTOR: u64 = 512;
const F_SEG_MAX: u64 = 1 << 2;
const F_RO: u64 = 1 << 5;
const F_BLK_SIZE: u64 = 1 << 6;
const F_FLUSH: u64 = 1 << 9;
const F_DISCARD: u64 = 1 << 13;
const F_WRITE_ZEROES: u64 = 1 << 14;

const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
const T_DISCARD: u32 = 11;
const T_WRITE_ZEROES: u32 = 13;

const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;

const QUEUE_SIZE: u16 = 256;

/// How writes reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// Writes land in the host page cache; the guest's flush makes them durable.
    #[default]
    Writeback,
    /// Every write is durable before it completes (O_DSYNC).
    Writethrough,
}

pub struct Block {
    file: File,
    read_only: bool,
    capacity: u64,
    id: [u8; 20],
    config: Vec<u8>,
    queue_sizes: [u16; 1],
}

impl Block {
    pub fn open(path: &Path, read_only: bool, cache: CacheMode, id: &str) -> std::io::Result<Self> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(!read_only);
        if cache == CacheMode::Writethrough {
            opts.custom_flags(libc::O_DSYNC);
        }
        let file = opts.open(path)?;
        let bytes = file.metadata()?.len();
        let capacity = bytes / SECTOR;
        let mut config = vec![0u8; 60];
        config[0..8].copy_from_slice(&capacity.to_le_bytes());
        config[12..16].copy_from_slice(&u32::from(QUEUE_SIZE - 2).to_le_bytes()); // seg_max
        config[20..24].copy_from_slice(&(SECTOR as u32).to_le_bytes()); // blk_size
        config[34..36].copy_from_slice(&1u16.to_le_bytes()); // num_queues
        config[36..40].copy_from_slice(&0x003f_ffffu32.to_le_bytes()); // max_discard_sectors
        config[40..44].copy_from_slice(&1u32.to_le_bytes()); // max_discard_seg
        config[44..48].copy_from_slice(&8u32.to_le_bytes()); // discard alignment: 4 KiB
        config[48..52].copy_from_slice(&0x003f_ffffu32.to_le_bytes()); // max_write_zeroes_sectors
        config[52..56].copy_from_slice(&1u32.to_le_bytes()); // max_write_zeroes_seg
        config[56] = 1; // write_zeroes_may_unmap
        let mut ident = [0u8; 20];
        let n = id.len().min(20);
        ident[..n].copy_from_slice(&id.as_bytes()[..n]);
        Ok(Block {
            file,
            read_only,
            capacity,
            id: ident,
            config,
            queue_sizes: [QUEUE_SIZE],
        })
    }

    fn in_range(&self, sector: u64, len: u64) -> bool {
        sector
            .checked_mul(SECTOR)
            .and_then(|o| o.checked_add(len))
            .is_some_and(|end| end <= self.capacity * SECTOR)
    }

    /// Runs one request; returns the status and how many bytes were written to the guest.
    fn execute(&mut self, descs: &[Descriptor], mem: &GuestMem) -> (u8, u32) {
        let Some(hdr_desc) = descs.first() else {
            return (S_IOERR, 0);
        };
        let Ok(hdr) = mem.read_obj::<[u8; 16]>(hdr_desc.addr()) else {
            return (S_IOERR, 0);
        };
        let kind = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let sector = u64::from_le_bytes([
            hdr[8], hdr[9], hdr[10], hdr[11], hdr[12], hdr[13], hdr[14], hdr[15],
        ]);
        let data = if descs.len() > 2 {
            &descs[1..descs.len() - 1]
        } else {
            &[][..]
        };
        match kind {
            T_IN => {
                let mut offset = sector * SECTOR;
                let total: u64 = data.iter().map(|d| u64::from(d.len())).sum();
                if !self.in_range(sector, total) || data.iter().any(|d| !d.is_write_only()) {
                    return (S_IOERR, 0);
                }
                let mut written = 0u32;
                for d in data {
                    let mut buf = vec![0u8; d.len() as usize];
                    if self.file.read_exact_at(&mut buf, offset).is_err()
                        || mem.write_slice(&buf, d.addr()).is_err()
                    {
                        return (S_IOERR, written);
                    }
                    offset += u64::from(d.len());
                    written += d.len();
                }
                (S_OK, written)
            }
            T_OUT => {
                let total: u64 = data.iter().map(|d| u64::from(d.len())).sum();
                if self.read_only || !self.in_range(sector, total) {
                    return (S_IOERR, 0);
                }
                let mut offset = sector * SECTOR;
                for d in data {
                    let mut buf = vec![0u8; d.len() as usize];
                    if mem.read_slice(&mut buf, d.addr()).is_err()
                        || self.file.write_all_at(&buf, offset).is_err()
                    {
                        return (S_IOERR, 0);
                    }
                    offset += u64::from(d.len());
                }
                (S_OK, 0)
            }
            T_FLUSH => {
                if self.read_only || self.file.sync_data().is_ok() {
                    (S_OK, 0)
                } else {
                    (S_IOERR, 0)
                }
            }
            T_GET_ID => match data.first() {
                Some(d) if d.is_write_only() => {
                    let n = (d.len() as usize).min(20);
                    if mem.write_slice(&self.id[..n], d.addr()).is_err() {
                        return (S_IOERR, 0);
                    }
                    (S_OK, n as u32)
                }
                _ => (S_IOERR, 0),
            },
            T_DISCARD | T_WRITE_ZEROES => {
                if self.read_only {
                    return (S_IOERR, 0);
                }
                for d in data {
                    for seg in 0..(d.len() / 16) {
                        let at = GuestAddress(d.addr().0 + u64::from(seg) * 16);
                        let Ok(s) = mem.read_obj::<[u8; 16]>(at) else {
                            return (S_IOERR, 0);
                        };
                        let start =
                            u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]);
                        let count = u64::from(u32::from_le_bytes([s[8], s[9], s[10], s[11]]));
                        if !self.in_range(start, count * SECTOR) {
                            return (S_IOERR, 0);
                        }
                        // Both read back as zeroes afterwards; punching frees the space.
                        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
                        // SAFETY: plain fallocate on a file descriptor we own.
                        let rc = unsafe {
                            libc::fallocate(
                                self.file.as_raw_fd(),
                                mode,
                                (start * SECTOR) as libc::off_t,
                                (count * SECTOR) as libc::off_t,
                            )
                        };
                        if rc != 0 {
                            return (S_IOERR, 0);
                        }
                    }
                }
                (S_OK, 0)
            }
            _ => (S_UNSUPP, 0),
        }
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        TYPE_BLOCK
    }

    fn features(&self) -> u64 {
        let mut f = VIRTIO_F_VERSION_1 | F_SEG_MAX | F_BLK_SIZE | F_FLUSH;
        if self.read_only {
            f |= F_RO;
        } else {
            f |= F_DISCARD | F_WRITE_ZEROES;
        }
        f
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let off = offset as usize;
        if let Some(src) = self.config.get(off..off + data.len()) {
            data.copy_from_slice(src);
        }
    }

    fn process_queue(&mut self, _queue: usize, queues: &mut [Queue], mem: &GuestMem) -> bool {
        let Some(q) = queues.first_mut() else {
            return false;
        };
        let mut used = false;
        while let Some(chain) = q.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let descs: Vec<Descriptor> = chain.collect();
            let (status, written) = self.execute(&descs, mem);
            if let Some(last) = descs.last().filter(|d| d.is_write_only() && d.len() >= 1) {
                if mem.write_obj(status, last.addr()).is_err() {
                    tracing::warn!("virtio-blk: status byte outside guest memory");
                }
            }
            if let Err(e) = q.add_used(mem, head, written + 1) {
                tracing::warn!("virtio-blk: used ring: {e:?}");
            }
            used = true;
        }
        used
    }
}
