//! Legacy platform pieces: the ACPI hardware-reduced sleep control register (how a guest
//! powers off) and the Generic Event Device that carries the power button to the guest.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Mutex;

use super::{EventFdTrigger, VmEvent};
use vm_superio::Trigger;

/// SLP_TYP value the DSDT's `_S5_` package names, and the SLP_EN bit.
pub const S5_SLEEP_TYPE: u8 = 5;
const SLP_EN: u8 = 1 << 5;

/// FADT `sleep_control_reg`: writing SLP_EN with the S5 type powers the machine off.
pub struct SleepControl {
    events: Mutex<Sender<VmEvent>>,
}

impl SleepControl {
    pub fn new(events: Sender<VmEvent>) -> Self {
        SleepControl {
            events: Mutex::new(events),
        }
    }

    pub fn write(&self, v: u8) {
        if v & SLP_EN != 0 && (v >> 2) & 0x7 == S5_SLEEP_TYPE {
            if let Ok(tx) = self.events.lock() {
                // A closed channel means the machine is already stopping.
                let _ = tx.send(VmEvent::PowerOff);
            }
        }
    }
}

/// GED event bits the DSDT's `_EVT` method tests.
pub const GED_POWER_BUTTON: u8 = 1 << 0;

/// ACPI Generic Event Device: a one-byte "what happened" register plus an interrupt.
pub struct Ged {
    pending: AtomicU8,
    irq: EventFdTrigger,
}

impl Ged {
    pub fn new(irq: EventFdTrigger) -> Self {
        Ged {
            pending: AtomicU8::new(0),
            irq,
        }
    }

    /// Presses the power button: an ACPI-aware guest shuts down in response.
    pub fn power_button(&self) -> std::io::Result<()> {
        self.pending.fetch_or(GED_POWER_BUTTON, Ordering::SeqCst);
        self.irq.trigger()
    }

    pub fn read(&self, offset: u64, data: &mut [u8]) {
        if offset == 0 {
            if let Some(b) = data.first_mut() {
                *b = self.pending.swap(0, Ordering::SeqCst);
            }
        }
    }
}
