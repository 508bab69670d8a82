//! Guest NIC attachment: the host side of a container's or VM's network interface.
//!
//! A container gets a veth pair whose peer moves into its network namespace; a VM gets a
//! persistent tap device its `ferrite-vmm` process opens. Either way the host end is attached
//! to a bridge, brought up, and given the guest's VLANs (an access tag, or a trunk list) on a
//! VLAN-aware bridge. Any failure removes what was created, so nothing is left half-made.

use std::os::fd::AsRawFd;

use super::netlink::{Kernel, KernelError, VlanFlags};
use super::ratelimit::RateLimit;
use crate::types::Mac;

/// How the guest sees its NIC.
#[derive(Debug, Clone)]
pub enum NicKind {
    /// A veth pair; `peer` is moved into the namespace open at `netns` (if given) under the
    /// name `peer_name`.
    Veth {
        host: String,
        peer: String,
        netns: Option<std::path::PathBuf>,
        /// The guest end's name inside `netns` (renamed as it moves); default: `peer`.
        guest_name: Option<String>,
    },
    /// A persistent tap device for a VMM to open.
    Tap { name: String },
}

/// The guest attachment settings, built from a typed `GuestNic` by `guest::nics::attachment`.
#[derive(Debug, Clone)]
pub struct NicSpec {
    pub bridge: String,
    /// Access VLAN: untagged on the guest side.
    pub tag: Option<u16>,
    /// Trunk: tagged VLANs.
    pub trunks: Vec<u16>,
    pub mac: Mac,
    pub mtu: Option<u32>,
    /// Traffic limits, enforced on the host end.
    pub rate: Option<RateLimit>,
}

/// What was created.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    /// The host-side link attached to the bridge.
    pub host_if: String,
    /// The guest's MAC address.
    pub mac: Mac,
}

/// The host-side name of guest `id`'s NIC `netN`: `v<id>i<N>` (at most 15 bytes for any id up
/// to 999,999,999 and 100 slots). Links so named belong to the guest engines; the network
/// reconciler never treats them as drift on a bridge.
pub fn guest_host_if(id: &str, n: &str) -> String {
    format!("v{id}i{n}")
}

/// Whether a link name is a guest NIC's host end (see [`guest_host_if`]).
pub fn is_guest_port(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('v') else {
        return false;
    };
    let Some((id, n)) = rest.split_once('i') else {
        return false;
    };
    !id.is_empty()
        && !n.is_empty()
        && id.bytes().all(|b| b.is_ascii_digit())
        && n.bytes().all(|b| b.is_ascii_digit())
}

fn invalid(op: &str, message: String) -> KernelError {
    KernelError::Netlink {
        op: op.to_string(),
        message,
        errno: Some(libc::EINVAL),
    }
}

/// Creates a persistent tap device (`ip tuntap add` does the same ioctls; tun devices cannot be
/// created over rtnetlink).
fn create_tap(name: &str) -> Result<(), KernelError> {
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
    const IFF_TAP: libc::c_short = 0x0002;
    const IFF_NO_PI: libc::c_short = 0x1000;
    const IFF_VNET_HDR: libc::c_short = 0x4000;
    let op = format!("creating tap {name}");
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(invalid(&op, "name must be 1 to 15 bytes".into()));
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| KernelError::Netlink {
            op: op.clone(),
            message: format!("opening /dev/net/tun: {e}"),
            errno: e.raw_os_error(),
        })?;
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    // SAFETY: the fd is an open /dev/net/tun; TUNSETIFF reads and writes one ifreq, which
    // lives for the duration of the call.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), TUNSETIFF as _, &mut ifr as *mut libc::ifreq) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        return Err(KernelError::Netlink {
            op,
            message: e.to_string(),
            errno: e.raw_os_error(),
        });
    }
    // SAFETY: TUNSETPERSIST takes an integer argument by value.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), TUNSETPERSIST as _, 1 as libc::c_ulong) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        return Err(KernelError::Netlink {
            op,
            message: format!("making it persistent: {e}"),
            errno: e.raw_os_error(),
        });
    }
    Ok(())
}

/// Creates the guest NIC's host side and attaches it. On error, nothing created is left.
pub async fn attach(k: &Kernel, kind: &NicKind, spec: &NicSpec) -> Result<Attachment, KernelError> {
    let bridge = k
        .link(&spec.bridge)
        .await?
        .filter(|l| l.kind == "bridge")
        .ok_or_else(|| KernelError::Netlink {
            op: "attaching a guest NIC".into(),
            message: format!("bridge {} does not exist", spec.bridge),
            errno: Some(libc::ENODEV),
        })?;
    let host = match kind {
        NicKind::Veth { host, .. } => host.clone(),
        NicKind::Tap { name } => name.clone(),
    };
    match kind {
        NicKind::Veth { host, peer, .. } => k.create_veth(host, peer).await?,
        NicKind::Tap { name } => k.in_namespace(|| create_tap(name))?,
    }
    let result = async {
        let h = k
            .link(&host)
            .await?
            .ok_or_else(|| invalid("attaching a guest NIC", format!("{host} vanished")))?;
        if let Some(m) = spec.mtu {
            k.set_mtu(h.index, &host, m).await?;
        }
        match kind {
            NicKind::Veth {
                peer,
                netns,
                guest_name,
                ..
            } => {
                let p = k
                    .link(peer)
                    .await?
                    .ok_or_else(|| invalid("attaching a guest NIC", format!("{peer} vanished")))?;
                k.set_address(p.index, peer, spec.mac.octets().to_vec())
                    .await?;
                if let Some(m) = spec.mtu {
                    k.set_mtu(p.index, peer, m).await?;
                }
                if let Some(ns) = netns {
                    let f = std::fs::File::open(ns).map_err(|e| {
                        invalid("moving the guest end", format!("{}: {e}", ns.display()))
                    })?;
                    match guest_name {
                        Some(g) => k.move_to_netns_as(p.index, peer, f.as_raw_fd(), g).await?,
                        None => k.move_to_netns(p.index, peer, f.as_raw_fd()).await?,
                    }
                }
            }
            NicKind::Tap { .. } => {}
        }
        k.set_master(h.index, &host, Some((bridge.index, &spec.bridge)))
            .await?;
        k.set_up(h.index, &host, true).await?;
        if bridge.vlan_filtering == Some(true) {
            if let Some(t) = spec.tag {
                k.vlan_add(
                    h.index,
                    &host,
                    t,
                    VlanFlags {
                        pvid: true,
                        untagged: true,
                    },
                    false,
                )
                .await?;
            }
            for v in &spec.trunks {
                k.vlan_add(
                    h.index,
                    &host,
                    *v,
                    VlanFlags {
                        pvid: false,
                        untagged: false,
                    },
                    false,
                )
                .await?;
            }
        } else if spec.tag.is_some() || !spec.trunks.is_empty() {
            return Err(invalid(
                "attaching a guest NIC",
                // The store-side rule (`guest::nics::check`) passed: the kernel's bridge lacks
                // VLAN filtering although its row asks for it.
                format!(
                    "bridge {} has no VLAN filtering in the kernel; its VLANs cannot be applied",
                    spec.bridge
                ),
            ));
        }
        if let Some(r) = &spec.rate {
            super::ratelimit::apply(k, h.index, &host, r).await?;
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Ok(Attachment {
            host_if: host,
            mac: spec.mac,
        }),
        Err(e) => {
            let _ = detach(k, &host).await;
            Err(e)
        }
    }
}

/// Removes the host side (a veth's peer goes with it).
pub async fn detach(k: &Kernel, host_if: &str) -> Result<(), KernelError> {
    super::reconcile::remove(k, host_if).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_port_names_are_recognised() {
        assert!(is_guest_port(&guest_host_if("101", "0")));
        assert!(is_guest_port("v999999999i99"));
        assert!(!is_guest_port("veth0"));
        assert!(!is_guest_port("v1i"));
        assert!(!is_guest_port("vbr0"));
        assert!(guest_host_if("999999999", "99").len() <= 15);
    }
}
