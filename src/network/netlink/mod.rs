//! Kernel access for networking, over rtnetlink only (no `ip`, `bridge` or `ifup`).
//!
//! Every write goes through [`Kernel::write_count`] so tests and benchmarks can prove that a
//! reconcile of an unchanged configuration makes zero kernel writes.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::TryStreamExt;
use netlink_sys::AsyncSocket;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{
    AfSpecBridge, BondMode, BondXmitHashPolicy, BridgeStpState, BridgeVlanInfoFlags, InfoBond,
    InfoBridge, InfoData, InfoVlan, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo,
    LinkMessage, State,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, LinkBond, LinkBridge, LinkBridgeVlan, LinkUnspec, LinkVeth, LinkVlan};

mod addr;
mod link;
mod read;
mod vlan;

use read::*;
pub use read::{bond_mode_name, parse_cidr, xmit_name};
pub use vlan::vlan_runs;

/// A kernel operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("{op}: {message}")]
    Netlink {
        op: String,
        message: String,
        errno: Option<i32>,
    },
    #[error("opening a netlink socket{ns}: {source}")]
    Socket { ns: String, source: std::io::Error },
    /// The kernel lacks a feature a setting needs (a traffic-control module, say); `field`
    /// is the setting's path below the object that asked for it (`rate/tx_mbps`).
    #[error("{field}: {message}")]
    Unsupported { field: String, message: String },
    /// The change needs a link put in a state Ferrite must not put it in (`field` names the
    /// setting that points at it).
    #[error("{field}: {message}")]
    Refused { field: String, message: String },
}

impl KernelError {
    pub(super) fn from_rtnl(op: impl Into<String>, e: rtnetlink::Error) -> Self {
        let errno = match &e {
            rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
            _ => None,
        };
        let message = match errno {
            Some(n) => format!("{} (errno {n})", std::io::Error::from_raw_os_error(n)),
            None => e.to_string(),
        };
        KernelError::Netlink {
            op: op.into(),
            message,
            errno,
        }
    }
}

/// A bridge VLAN entry as the kernel holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VlanFlags {
    pub pvid: bool,
    pub untagged: bool,
}

/// One link as read from the kernel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkState {
    pub index: u32,
    pub name: String,
    pub kind: String,
    pub up: bool,
    pub operstate: String,
    pub mtu: u32,
    pub mac: Option<String>,
    pub master: Option<u32>,
    /// For VLAN links: parent index and id.
    pub vlan_parent: Option<u32>,
    pub vlan_id: Option<u16>,
    /// For bridges.
    pub vlan_filtering: Option<bool>,
    pub stp: Option<bool>,
    /// For bonds.
    pub bond_mode: Option<String>,
    pub miimon: Option<u32>,
    pub xmit_hash_policy: Option<String>,
    /// Bridge VLAN entries (ports, and the bridge itself).
    pub vlans: BTreeMap<u16, VlanFlags>,
    /// Addresses as `ip/prefix`, link-local excluded.
    pub addresses: Vec<String>,
}

/// Above this many links a scoped read falls back to a full one.
const SCOPED_READ_LIMIT: usize = 64;

/// The kernel as Ferrite sees it: links by name.
pub type Snapshot = HashMap<String, LinkState>;

/// A netlink client bound to one network namespace.
#[derive(Clone)]
pub struct Kernel {
    handle: Handle,
    /// A socket of its own for full link dumps (see `linkdump`).
    dumper: std::sync::Arc<super::linkdump::LinkDumper>,
    writes: std::sync::Arc<AtomicU64>,
    netns: Option<std::sync::Arc<std::path::PathBuf>>,
    /// The kernel runs one dump at a time per netlink socket and answers a second one with
    /// EBUSY, so concurrent readers (guests starting in parallel) take turns.
    dumps: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl Kernel {
    /// Connects in the current network namespace, or in the one at `netns` (a file such as
    /// `/run/netns/NAME`). The socket is created on a short-lived thread that entered the
    /// namespace, so no runtime thread ever changes namespace; a socket stays in the namespace
    /// it was created in.
    pub fn connect(netns: Option<&Path>) -> Result<(Kernel, Events), KernelError> {
        let ns_label = netns
            .map(|p| format!(" in {}", p.display()))
            .unwrap_or_default();
        let rt = tokio::runtime::Handle::current();
        let netns = netns.map(Path::to_path_buf);
        let ns_for_kernel = netns.clone().map(std::sync::Arc::new);
        let label = ns_label.clone();
        let made = std::thread::spawn(move || -> Result<_, KernelError> {
            let _guard = rt.enter();
            if let Some(p) = &netns {
                let f = std::fs::File::open(p).map_err(|source| KernelError::Socket {
                    ns: label.clone(),
                    source,
                })?;
                nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                    KernelError::Socket {
                        ns: label.clone(),
                        source: std::io::Error::from(e),
                    }
                })?;
            }
            let (conn, handle, _) =
                rtnetlink::new_connection().map_err(|source| KernelError::Socket {
                    ns: label.clone(),
                    source,
                })?;
            // A second socket subscribed to link events, for drift detection.
            let (mut econn, _ehandle, emsgs) =
                rtnetlink::new_connection().map_err(|source| KernelError::Socket {
                    ns: label.clone(),
                    source,
                })?;
            let addr = netlink_sys::SocketAddr::new(0, rtnetlink::constants::RTMGRP_LINK);
            econn
                .socket_mut()
                .socket_mut()
                .bind(&addr)
                .map_err(|source| KernelError::Socket {
                    ns: label.clone(),
                    source,
                })?;
            let dumper =
                super::linkdump::LinkDumper::new().map_err(|source| KernelError::Socket {
                    ns: label.clone(),
                    source,
                })?;
            tokio::spawn(conn);
            tokio::spawn(econn);
            Ok((handle, emsgs, dumper))
        })
        .join()
        .map_err(|_| KernelError::Socket {
            ns: ns_label.clone(),
            source: std::io::Error::other("netlink thread panicked"),
        })??;
        let (handle, events, dumper) = made;
        Ok((
            Kernel {
                handle,
                dumper: std::sync::Arc::new(dumper),
                writes: std::sync::Arc::new(AtomicU64::new(0)),
                netns: ns_for_kernel,
                dumps: std::sync::Arc::new(tokio::sync::Mutex::new(())),
            },
            events,
        ))
    }

    /// The network namespace this kernel handle manages (`None`: the daemon's own). Processes
    /// that open network devices for it, such as a VM's taps, must enter it first.
    pub fn netns_path(&self) -> Option<&std::path::Path> {
        self.netns.as_deref().map(|p| p.as_path())
    }

    /// Runs `f` on a short-lived thread inside this client's network namespace, for the few
    /// operations that are not netlink (tap creation is an ioctl on /dev/net/tun, and creates
    /// the device in the caller's namespace).
    pub fn in_namespace<T: Send>(
        &self,
        f: impl FnOnce() -> Result<T, KernelError> + Send,
    ) -> Result<T, KernelError> {
        let Some(ns) = self.netns.clone() else {
            return f();
        };
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let file = std::fs::File::open(ns.as_path()).map_err(|source| {
                        KernelError::Socket {
                            ns: ns.display().to_string(),
                            source,
                        }
                    })?;
                    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                        KernelError::Socket {
                            ns: ns.display().to_string(),
                            source: std::io::Error::from(e),
                        }
                    })?;
                    f()
                })
                .join()
                .unwrap_or_else(|_| {
                    Err(KernelError::Socket {
                        ns: String::new(),
                        source: std::io::Error::other("namespace thread panicked"),
                    })
                })
        })
    }

    /// Kernel writes made so far.
    pub fn write_count(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// The rtnetlink handle, for requests built elsewhere in the module (traffic control).
    pub(super) fn handle(&self) -> Handle {
        self.handle.clone()
    }

    pub(super) fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }
}

/// Link events from the kernel (RTNLGRP_LINK), used to wake the reconciler.
pub type Events = futures_channel::mpsc::UnboundedReceiver<(
    rtnetlink::packet_core::NetlinkMessage<rtnetlink::packet_route::RouteNetlinkMessage>,
    netlink_sys::SocketAddr,
)>;

#[cfg(test)]
mod vlan_run_tests {
    use super::*;

    #[test]
    fn consecutive_equal_entries_become_ranges_and_pvid_stays_single() {
        let t = VlanFlags {
            pvid: false,
            untagged: false,
        };
        let u = VlanFlags {
            pvid: false,
            untagged: true,
        };
        let p = VlanFlags {
            pvid: true,
            untagged: true,
        };
        let input = vec![
            (5, t),
            (3, t),
            (4, t),
            (6, u),
            (7, u),
            (9, t),
            (10, p),
            (11, p),
        ];
        assert_eq!(
            vlan_runs(&input),
            vec![(3, 5, t), (6, 7, u), (9, 9, t), (10, 10, p), (11, 11, p)]
        );
        assert!(vlan_runs(&[]).is_empty());
    }
}
