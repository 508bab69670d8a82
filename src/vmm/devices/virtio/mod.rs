//! virtio devices over the MMIO transport: block, network and entropy.
//!
//! Devices see their queues only while the transport hands them over, so all queue state
//! lives in one place ([`mmio::MmioTransport`]) and snapshots read it from there.

pub mod blk;
pub mod mmio;
pub mod net;
pub mod rng;

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use virtio_queue::Queue;
use vmm_sys_util::eventfd::EventFd;

use crate::vmm::memory::GuestMem;

pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
pub const VIRTIO_MMIO_INT_VRING: u32 = 1;

pub const TYPE_NET: u32 = 1;
pub const TYPE_BLOCK: u32 = 2;
pub const TYPE_RNG: u32 = 4;

/// The device's interrupt: the transport's InterruptStatus plus the irqfd behind its GSI.
#[derive(Clone)]
pub struct Interrupt {
    pub status: Arc<AtomicU32>,
    pub evt: Arc<EventFd>,
}

impl Interrupt {
    pub fn signal_used_queue(&self) {
        self.status
            .fetch_or(VIRTIO_MMIO_INT_VRING, Ordering::SeqCst);
        if let Err(e) = self.evt.write(1) {
            tracing::warn!("virtio interrupt: {e}");
        }
    }
}

/// What a device type implements; the transport does the rest.
pub trait VirtioDevice: Send {
    fn device_type(&self) -> u32;
    /// Feature bits offered (VERSION_1 included).
    fn features(&self) -> u64;
    fn queue_max_sizes(&self) -> &[u16];
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Handles a notification on `queue`; returns true when the guest should be interrupted.
    fn process_queue(&mut self, queue: usize, queues: &mut [Queue], mem: &GuestMem) -> bool;
    /// A host fd whose readability means work (a tap's incoming frames); polled by a helper
    /// thread that then calls [`VirtioDevice::process_event`].
    fn event_fd(&self) -> Option<RawFd> {
        None
    }
    /// Handles readiness of [`VirtioDevice::event_fd`]; returns (interrupt?, wait for queue).
    /// `wait for queue` tells the poller to stop watching the fd until the guest notifies.
    fn process_event(&mut self, _queues: &mut [Queue], _mem: &GuestMem) -> (bool, bool) {
        (false, false)
    }
    /// Called when the driver resets the device.
    fn reset(&mut self) {}
}
