//! What a qemu VM's start prepares besides the command line: its cloud-init seed (and the
//! checks of those settings) and its cgroup, whose `cgroup.procs` QEMU joins before exec.

use std::path::PathBuf;

use super::{argv, cloudinit};
use crate::guest::nics;
use crate::guest::spec::{self, StoredVm, VmSpec};
use crate::guest::GuestError;
use crate::storage::Content;
use crate::vm::{VmError, Vms};

/// QEMU's memory beyond guest RAM that its cgroup allows: under TCG its translation cache
/// (QEMU 7.2 sizes it up to 1 GiB) and I/O buffers; under KVM device state and I/O buffers.
pub fn memory_allowance_mib(kvm: bool) -> u64 {
    if kvm {
        512
    } else {
        1536
    }
}

impl Vms {
    /// Cloud-init settings that refer to the VM's NICs and to volumes.
    pub(super) fn check_cloud_init(
        &self,
        b: &VmSpec,
        ci: &spec::VmCloudInit,
    ) -> Result<(), VmError> {
        for slot in ci.network.keys() {
            if !b.net.contains_key(slot) {
                return Err(GuestError::invalid(
                    &format!("/cloud_init/network/{slot}"),
                    format!("{slot} is not a NIC of this VM"),
                ));
            }
        }
        if ci.password_hash.is_some() && ci.user.is_none() {
            return Err(GuestError::invalid(
                "/cloud_init/password_hash",
                "a password needs the user it is for: set cloud_init.user",
            ));
        }
        if let Some(v) = ci.user_data.as_deref() {
            let row = self.base.storage.row(v).map_err(|_| {
                GuestError::invalid(
                    "/cloud_init/user_data",
                    format!("volume {v} does not exist"),
                )
            })?;
            if row.vref.content != Content::Snippets {
                return Err(GuestError::invalid(
                    "/cloud_init/user_data",
                    format!(
                        "{v} holds {}; user-data comes from a snippets volume",
                        row.vref.content.as_str()
                    ),
                ));
            }
            let size = std::fs::metadata(self.base.storage.path(v)?)
                .map(|m| m.len())
                .unwrap_or(0);
            if size > 1 << 20 {
                return Err(GuestError::invalid(
                    "/cloud_init/user_data",
                    format!("{v} is {size} bytes; user-data is at most 1 MiB"),
                ));
            }
        }
        Ok(())
    }

    /// Writes the VM's cloud-init seed image (rebuilt at every start) and returns its path.
    pub(super) fn write_seed(&self, id: &str, row: &StoredVm) -> Result<Option<PathBuf>, VmError> {
        let b = &row.create.spec;
        let Some(ci) = &b.cloud_init else {
            let _ = std::fs::remove_file(self.vm_dir(id).join("cloud-init.img"));
            return Ok(None);
        };
        let extra = match ci.user_data.as_deref() {
            Some(v) => Some(
                std::fs::read(self.base.storage.path(v)?)
                    .map_err(|e| self.base.failed(format!("reading {v}"), e))?,
            ),
            None => None,
        };
        let macs: Vec<(String, String)> = b
            .net
            .iter()
            .map(|(slot, n)| (slot.clone(), nics::mac_of(id, slot, &n.nic).to_string()))
            .collect();
        let seed = cloudinit::seed(id, &row.create.name, ci, &macs, extra.as_deref());
        let path = self.vm_dir(id).join("cloud-init.img");
        cloudinit::write_image(&path, &seed)
            .map_err(|e| self.base.failed("writing the cloud-init seed", e))?;
        Ok(Some(path))
    }

    /// The VM's own cgroup: its vCPUs' worth of CPU time, guest memory plus QEMU's allowance.
    pub(super) fn qemu_cgroup(&self, id: &str) -> crate::container::cgroup::Cgroup {
        crate::container::cgroup::Cgroup::new(&format!("{}/vm-{id}", self.base.scope))
    }

    /// Creates the cgroup with the VM's limits and opens its `cgroup.procs` files, which the
    /// QEMU child writes itself into before exec (so every allocation is charged to it).
    pub(super) fn prepare_cgroup(
        &self,
        id: &str,
        m: &argv::Machine,
    ) -> Result<Vec<std::fs::File>, VmError> {
        let cg = self.qemu_cgroup(id);
        let limits = crate::container::cgroup::Limits {
            cpu: Some(f64::from(m.vcpus)),
            memory: Some((m.memory_mib + memory_allowance_mib(m.kvm)) << 20),
            ..Default::default()
        };
        cg.create(&limits)
            .map_err(|e| self.base.failed(format!("vm {id}: cgroup"), e))?;
        let mut procs = Vec::new();
        for d in cg.dirs() {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(d.join("cgroup.procs"))
                .map_err(|e| {
                    self.base
                        .failed(format!("vm {id}: cgroup {}", d.display()), e)
                });
            match f {
                Ok(f) => procs.push(f),
                Err(e) => {
                    let _ = cg.remove();
                    return Err(e);
                }
            }
        }
        Ok(procs)
    }
}
