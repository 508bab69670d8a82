//! What a VMM process builds: the machine description `ferrited` (or the command line)
//! hands it. Serialisable so snapshots carry the configuration they were taken with.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use super::error::{Result, VmmError};

/// Upper bound on vCPUs: the MADT and the APIC ids we hand out stay in xAPIC range.
pub const MAX_VCPUS: u8 = 64;
/// Smallest memory a machine may have: room for boot structures and a kernel.
pub const MIN_MEMORY_MIB: u64 = 8;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DiskConfig {
    pub path: PathBuf,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub cache: super::devices::virtio::blk::CacheMode,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NetConfig {
    /// Host tap device name; the VMM attaches to it (it must already exist).
    pub tap: String,
    pub mac: [u8; 6],
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MachineConfig {
    pub kernel: PathBuf,
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    #[serde(default)]
    pub cmdline: String,
    pub memory_mib: u64,
    pub vcpus: u8,
    #[serde(default)]
    pub hugepages: bool,
    #[serde(default)]
    pub disks: Vec<DiskConfig>,
    #[serde(default)]
    pub nets: Vec<NetConfig>,
    #[serde(default)]
    pub rng: bool,
}

impl MachineConfig {
    pub fn validate(&self) -> Result<()> {
        if self.vcpus == 0 || self.vcpus > MAX_VCPUS {
            return Err(VmmError::Config(format!(
                "vcpus must be 1..{MAX_VCPUS}, got {}",
                self.vcpus
            )));
        }
        if self.memory_mib < MIN_MEMORY_MIB {
            return Err(VmmError::Config(format!(
                "memory must be at least {MIN_MEMORY_MIB} MiB"
            )));
        }
        let devices = self.disks.len() + self.nets.len() + usize::from(self.rng);
        let slots = (super::layout::GSI_MAX - super::layout::VIRTIO_GSI_BASE) as usize;
        if devices > slots {
            return Err(VmmError::Config(format!(
                "at most {slots} virtio devices, got {devices}"
            )));
        }
        Ok(())
    }
}
