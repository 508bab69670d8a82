//! `ferrite-vmm`: Ferrite's own microVM monitor on KVM (kvm-ioctls and the rust-vmm crates).
//!
//! One process per VM. `ferrited` starts it with a [`config::MachineConfig`], talks to it
//! over the Unix socket in [`control`], and can restart without touching it. The modules
//! follow the guest's life: [`memory`] and [`boot`] build the machine, [`cpu`] sets up
//! vCPU registers, [`devices`] emulate COM1, the i8042, the ACPI sleep port and virtio-mmio
//! devices, [`machine`] runs vCPU threads and pauses them, [`snapshot`] saves and restores
//! a paused machine, [`seccomp`] confines the process once setup is done.

pub mod acpi;
pub mod boot;
pub mod config;
pub mod control;
pub mod cpu;
pub mod devices;
pub mod elf32;
pub mod error;
pub mod layout;
pub mod machine;
pub mod memory;
pub mod seccomp;
pub mod snapshot;

pub use config::MachineConfig;
pub use error::VmmError;
