//! virtio-mmio transport, version 2 (virtio 1.x "modern" register layout): the register
//! file a driver programs, the queues it sets up, and the hand-off to the device.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use virtio_queue::{Queue, QueueT};

use super::{Interrupt, VirtioDevice};
use crate::vmm::memory::GuestMem;

const MAGIC: u32 = 0x7472_6976; // "virt"
const VERSION: u32 = 2;
const VENDOR: u32 = 0x4654_5246; // "FRTF"

const STATUS_DRIVER_OK: u32 = 4;
const STATUS_FEATURES_OK: u32 = 8;

/// Everything about the transport a snapshot must carry.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TransportState {
    pub status: u32,
    pub device_features_sel: u32,
    pub driver_features_sel: u32,
    pub driver_features: u64,
    pub queue_sel: u32,
    pub interrupt_status: u32,
    pub config_generation: u32,
    pub queues: Vec<QueueSnapshot>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct QueueSnapshot {
    pub max_size: u16,
    pub size: u16,
    pub ready: bool,
    pub desc_table: u64,
    pub avail_ring: u64,
    pub used_ring: u64,
    pub next_avail: u16,
    pub next_used: u16,
    pub event_idx: bool,
}

pub struct MmioTransport {
    pub device: Box<dyn VirtioDevice>,
    pub queues: Vec<Queue>,
    pub interrupt: Interrupt,
    mem: GuestMem,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    config_generation: u32,
    /// Woken when the guest notifies, for the device's event poller.
    pub notify: Arc<vmm_sys_util::eventfd::EventFd>,
}

impl MmioTransport {
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMem,
        interrupt: Interrupt,
    ) -> std::io::Result<Self> {
        let queues = device
            .queue_max_sizes()
            .iter()
            .map(|m| Queue::new(*m).map_err(|e| std::io::Error::other(format!("{e:?}"))))
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(MmioTransport {
            device,
            queues,
            interrupt,
            mem,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            config_generation: 0,
            notify: Arc::new(vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK)?),
        })
    }

    pub fn is_active(&self) -> bool {
        self.status & STATUS_DRIVER_OK != 0
    }

    fn selected(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= 0x100 {
            self.device.read_config(offset - 0x100, data);
            return;
        }
        if data.len() != 4 {
            return;
        }
        let v: u32 = match offset {
            0x000 => MAGIC,
            0x004 => VERSION,
            0x008 => self.device.device_type(),
            0x00c => VENDOR,
            0x010 => {
                let f = self.device.features();
                match self.device_features_sel {
                    0 => f as u32,
                    1 => (f >> 32) as u32,
                    _ => 0,
                }
            }
            0x034 => self.selected().map(|q| q.max_size() as u32).unwrap_or(0),
            0x044 => self.selected().map(|q| u32::from(q.ready())).unwrap_or(0),
            0x060 => self.interrupt.status.load(Ordering::SeqCst),
            0x070 => self.status,
            0x0fc => self.config_generation,
            _ => 0,
        };
        data.copy_from_slice(&v.to_le_bytes());
    }

    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= 0x100 || data.len() != 4 {
            return;
        }
        let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        let setup = self.status & STATUS_DRIVER_OK == 0;
        match offset {
            0x014 => self.device_features_sel = v,
            0x020 if self.status & STATUS_FEATURES_OK == 0 => match self.driver_features_sel {
                0 => self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(v),
                1 => {
                    self.driver_features =
                        (self.driver_features & 0xffff_ffff) | (u64::from(v) << 32)
                }
                _ => {}
            },
            0x024 => self.driver_features_sel = v,
            0x030 => self.queue_sel = v,
            0x038 if setup => {
                if let Some(q) = self.selected() {
                    q.set_size(v as u16);
                }
            }
            0x044 if setup => {
                if let Some(q) = self.selected() {
                    q.set_ready(v == 1);
                }
            }
            0x050 => self.notify_queue(v as usize),
            0x064 => {
                self.interrupt.status.fetch_and(!v, Ordering::SeqCst);
            }
            0x070 => self.set_status(v),
            0x080 | 0x084 | 0x090 | 0x094 | 0x0a0 | 0x0a4 if setup => {
                let (low, high) = if offset & 4 == 0 {
                    (Some(v), None)
                } else {
                    (None, Some(v))
                };
                if let Some(q) = self.selected() {
                    match offset & !4 {
                        0x080 => q.set_desc_table_address(low, high),
                        0x090 => q.set_avail_ring_address(low, high),
                        _ => q.set_used_ring_address(low, high),
                    }
                }
            }
            _ => {}
        }
    }

    fn set_status(&mut self, v: u32) {
        if v == 0 {
            self.status = 0;
            self.driver_features = 0;
            for q in &mut self.queues {
                q.reset();
            }
            self.interrupt.status.store(0, Ordering::SeqCst);
            self.device.reset();
            return;
        }
        if v & STATUS_FEATURES_OK != 0 && self.status & STATUS_FEATURES_OK == 0 {
            // Refuse features the device did not offer, and require virtio 1.x.
            let offered = self.device.features();
            if self.driver_features & !offered != 0
                || self.driver_features & super::VIRTIO_F_VERSION_1 == 0
            {
                self.status = v & !STATUS_FEATURES_OK;
                return;
            }
        }
        self.status = v;
        if self.is_active() {
            // Buffers may already be waiting (a receive queue filled before DRIVER_OK).
            let _ = self.notify.write(1);
        }
    }

    fn notify_queue(&mut self, idx: usize) {
        if !self.is_active() || idx >= self.queues.len() {
            return;
        }
        if self.device.process_queue(idx, &mut self.queues, &self.mem) {
            self.interrupt.signal_used_queue();
        }
        let _ = self.notify.write(1);
    }

    /// Runs the device's host-side event handler (a readable tap); see [`VirtioDevice::process_event`].
    pub fn process_event(&mut self) -> bool {
        if !self.is_active() {
            return true;
        }
        let (irq, wait) = self.device.process_event(&mut self.queues, &self.mem);
        if irq {
            self.interrupt.signal_used_queue();
        }
        wait
    }

    pub fn state(&self) -> TransportState {
        TransportState {
            status: self.status,
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            driver_features: self.driver_features,
            queue_sel: self.queue_sel,
            interrupt_status: self.interrupt.status.load(Ordering::SeqCst),
            config_generation: self.config_generation,
            queues: self
                .queues
                .iter()
                .map(|q| QueueSnapshot {
                    max_size: q.max_size(),
                    size: q.size(),
                    ready: q.ready(),
                    desc_table: q.desc_table(),
                    avail_ring: q.avail_ring(),
                    used_ring: q.used_ring(),
                    next_avail: q.next_avail(),
                    next_used: q.next_used(),
                    event_idx: q.event_idx_enabled(),
                })
                .collect(),
        }
    }

    pub fn restore(&mut self, s: &TransportState) {
        self.status = s.status;
        self.device_features_sel = s.device_features_sel;
        self.driver_features_sel = s.driver_features_sel;
        self.driver_features = s.driver_features;
        self.queue_sel = s.queue_sel;
        self.config_generation = s.config_generation;
        self.interrupt
            .status
            .store(s.interrupt_status, Ordering::SeqCst);
        for (q, qs) in self.queues.iter_mut().zip(&s.queues) {
            q.set_size(qs.size);
            q.set_desc_table_address(
                Some(qs.desc_table as u32),
                Some((qs.desc_table >> 32) as u32),
            );
            q.set_avail_ring_address(
                Some(qs.avail_ring as u32),
                Some((qs.avail_ring >> 32) as u32),
            );
            q.set_used_ring_address(Some(qs.used_ring as u32), Some((qs.used_ring >> 32) as u32));
            q.set_next_avail(qs.next_avail);
            q.set_next_used(qs.next_used);
            q.set_event_idx(qs.event_idx);
            q.set_ready(qs.ready);
        }
    }
}

/// Shared interrupt status for a new transport.
pub fn new_status() -> Arc<AtomicU32> {
    Arc::new(AtomicU32::new(0))
}
