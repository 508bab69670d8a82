//! virtio-net over a tap device (`IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, 12-byte header, no
//! offloads). The host side (bridge, VLANs) belongs to the daemon's guest NIC attachment.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use virtio_queue::{desc::split::Descriptor, Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};

use super::{VirtioDevice, TYPE_NET, VIRTIO_F_VERSION_1};
use crate::vmm::memory::GuestMem;

const F_MAC: u64 = 1 << 5;
const F_STATUS: u64 = 1 << 16;
const VNET_HDR_LEN: usize = 12;
const MAX_FRAME: usize = 65_562;
const QUEUE_SIZE: u16 = 256;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;

#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Opens the existing tap `name` for frames with a virtio-net header.
pub fn open_tap(name: &str) -> std::io::Result<File> {
    if name.is_empty() || name.len() > 15 {
        return Err(std::io::Error::other(format!(
            "tap name {name:?} must be 1..15 bytes"
        )));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    let mut req = IfReq {
        name: [0; 16],
        flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    let fd = file.as_raw_fd();
    // SAFETY: the ioctls take pointers to properly sized, initialised values that outlive them.
    unsafe {
        if libc::ioctl(fd, TUNSETIFF, &mut req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let hdr: libc::c_int = VNET_HDR_LEN as libc::c_int;
        if libc::ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::ioctl(fd, TUNSETOFFLOAD, 0 as libc::c_uint) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(file)
}

pub struct Net {
    tap: File,
    config: [u8; 8],
    pending: Option<Vec<u8>>,
    queue_sizes: [u16; 2],
}

impl Net {
    pub fn new(tap: File, mac: [u8; 6]) -> Self {
        let mut config = [0u8; 8];
        config[..6].copy_from_slice(&mac);
        config[6] = 1; // VIRTIO_NET_S_LINK_UP
        Net {
            tap,
            config,
            pending: None,
            queue_sizes: [QUEUE_SIZE, QUEUE_SIZE],
        }
    }

    /// Moves frames from the tap into receive buffers. Returns (interrupt?, out of buffers?).
    fn receive(&mut self, q: &mut Queue, mem: &GuestMem) -> (bool, bool) {
        let mut irq = false;
        loop {
            let frame = match self.pending.take() {
                Some(f) => f,
                None => {
                    let mut buf = vec![0u8; MAX_FRAME];
                    match self.tap.read(&mut buf) {
                        Ok(n) => {
                            buf.truncate(n);
                            buf
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            return (irq, false)
                        }
                        Err(e) => {
                            tracing::warn!("virtio-net: tap read: {e}");
                            return (irq, false);
                        }
                    }
                }
            };
            let Some(chain) = q.pop_descriptor_chain(mem) else {
                self.pending = Some(frame);
                return (irq, true);
            };
            let head = chain.head_index();
            let mut frame = frame;
            if frame.len() >= VNET_HDR_LEN {
                frame[10..12].copy_from_slice(&1u16.to_le_bytes()); // num_buffers
            }
            let mut done = 0usize;
            for d in chain.filter(Descriptor::is_write_only) {
                if done == frame.len() {
                    break;
                }
                let n = (d.len() as usize).min(frame.len() - done);
                if mem.write_slice(&frame[done..done + n], d.addr()).is_err() {
                    break;
                }
                done += n;
            }
            // A frame that does not fit is dropped, as a NIC with short buffers would.
            let len = if done == frame.len() { done as u32 } else { 0 };
            if let Err(e) = q.add_used(mem, head, len) {
                tracing::warn!("virtio-net: rx used ring: {e:?}");
            }
            irq = true;
        }
    }

    fn transmit(&mut self, q: &mut Queue, mem: &GuestMem) -> bool {
        let mut used = false;
        while let Some(chain) = q.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let mut frame = Vec::new();
            for d in chain.filter(|d| !d.is_write_only()) {
                let start = frame.len();
                if start + d.len() as usize > MAX_FRAME {
                    break;
                }
                frame.resize(start + d.len() as usize, 0);
                if mem
                    .read_slice(&mut frame[start..], GuestAddress(d.addr().0))
                    .is_err()
                {
                    frame.clear();
                    break;
                }
            }
            if frame.len() > VNET_HDR_LEN {
                if let Err(e) = self.tap.write_all(&frame) {
                    tracing::debug!("virtio-net: tap write: {e}");
                }
            }
            if let Err(e) = q.add_used(mem, head, 0) {
                tracing::warn!("virtio-net: tx used ring: {e:?}");
            }
            used = true;
        }
        used
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        TYPE_NET
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | F_MAC | F_STATUS
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

    fn process_queue(&mut self, queue: usize, queues: &mut [Queue], mem: &GuestMem) -> bool {
        match queue {
            0 => queues
                .first_mut()
                .map(|q| self.receive(q, mem).0)
                .unwrap_or(false),
            1 => queues
                .get_mut(1)
                .map(|q| self.transmit(q, mem))
                .unwrap_or(false),
            _ => false,
        }
    }

    fn event_fd(&self) -> Option<RawFd> {
        Some(self.tap.as_raw_fd())
    }

    fn process_event(&mut self, queues: &mut [Queue], mem: &GuestMem) -> (bool, bool) {
        match queues.first_mut() {
            Some(q) => self.receive(q, mem),
            None => (false, true),
        }
    }

    fn reset(&mut self) {
        self.pending = None;
    }
}
