//! Emulated devices and the two buses (port I/O and MMIO) the vCPU loop dispatches to.

pub mod legacy;
pub mod serial;
pub mod virtio;

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::EventFd;

use super::layout;
use legacy::{Ged, SleepControl};
use serial::SerialDevice;
use virtio::mmio::MmioTransport;

/// Why the machine stops on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmEvent {
    /// ACPI S5 through the sleep control register.
    PowerOff,
    /// i8042 reset line, a triple fault or KVM's reset system event.
    Reset,
    /// KVM could not run the guest any further.
    Crash(String),
}

/// An interrupt line: an eventfd registered as a KVM irqfd.
pub struct EventFdTrigger(pub EventFd);

impl vm_superio::Trigger for EventFdTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

impl EventFdTrigger {
    pub fn try_clone(&self) -> std::io::Result<Self> {
        Ok(EventFdTrigger(self.0.try_clone()?))
    }
}

/// Every device of one machine. Each sits behind its own lock so vCPUs touching different
/// devices never wait on each other.
pub struct Devices {
    pub serial: Mutex<SerialDevice>,
    pub i8042: Mutex<vm_superio::I8042Device<ResetTrigger>>,
    pub sleep: SleepControl,
    pub ged: Ged,
    pub virtio: Vec<Arc<Mutex<MmioTransport>>>,
}

/// The i8042's reset line: reports a reset to the machine.
pub struct ResetTrigger(pub Sender<VmEvent>);

impl vm_superio::Trigger for ResetTrigger {
    type E = std::sync::mpsc::SendError<VmEvent>;
    fn trigger(&self) -> Result<(), Self::E> {
        self.0.send(VmEvent::Reset)
    }
}

impl Devices {
    pub fn pio_read(&self, port: u16, data: &mut [u8]) {
        data.fill(0xff);
        match port {
            p if (layout::COM1_PORT..layout::COM1_PORT + 8).contains(&p) => {
                if let Ok(mut s) = self.serial.lock() {
                    data[0] = s.read((p - layout::COM1_PORT) as u8);
                }
            }
            layout::I8042_DATA | layout::I8042_COMMAND => {
                if let Ok(mut k) = self.i8042.lock() {
                    data[0] = k.read((port - layout::I8042_DATA) as u8);
                }
            }
            layout::SLEEP_STATUS_PORT | layout::SLEEP_CONTROL_PORT => data[0] = 0,
            _ => {}
        }
    }

    pub fn pio_write(&self, port: u16, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        match port {
            p if (layout::COM1_PORT..layout::COM1_PORT + 8).contains(&p) => {
                if let Ok(mut s) = self.serial.lock() {
                    if let Err(e) = s.write((p - layout::COM1_PORT) as u8, v) {
                        tracing::debug!("serial: {e:?}");
                    }
                }
            }
            layout::I8042_DATA | layout::I8042_COMMAND => {
                if let Ok(mut k) = self.i8042.lock() {
                    // The only failure is a send on a closed channel while the machine stops.
                    let _ = k.write((port - layout::I8042_DATA) as u8, v);
                }
            }
            layout::SLEEP_CONTROL_PORT => self.sleep.write(v),
            _ => {}
        }
    }

    pub fn mmio_read(&self, addr: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some((t, off)) = self.virtio_at(addr) {
            if let Ok(mut t) = t.lock() {
                t.read(off, data);
            }
        } else if (layout::GED_MMIO..layout::GED_MMIO + 0x1000).contains(&addr) {
            self.ged.read(addr - layout::GED_MMIO, data);
        }
    }

    pub fn mmio_write(&self, addr: u64, data: &[u8]) {
        if let Some((t, off)) = self.virtio_at(addr) {
            if let Ok(mut t) = t.lock() {
                t.write(off, data);
            }
        }
    }

    fn virtio_at(&self, addr: u64) -> Option<(&Arc<Mutex<MmioTransport>>, u64)> {
        if addr < layout::MMIO_START {
            return None;
        }
        let slot = ((addr - layout::MMIO_START) / layout::MMIO_SLOT) as usize;
        self.virtio
            .get(slot)
            .map(|t| (t, (addr - layout::MMIO_START) % layout::MMIO_SLOT))
    }
}
