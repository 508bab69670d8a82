//! A lean full link dump for the reconciler: the kernel's RTM_GETLINK dump read straight from
//! the socket, picking out only the attributes [`LinkState`] needs. The general-purpose
//! rtnetlink path decodes every attribute of every link (AF_SPEC inet6 configuration, link
//! info of every kind, ...) into owned structures; for thousands of links that decoding cost
//! more than the kernel's own work, and the reconcile of unchanged objects is mostly this read.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use rtnetlink::packet_core::{NetlinkBuffer, NlaBuffer, NlasIterator};
use rtnetlink::packet_route::link::{BondMode, BondXmitHashPolicy};

use super::netlink::{bond_mode_name, xmit_name, KernelError, LinkState};

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_LINKINFO: u16 = 18;
const IFLA_EXT_MASK: u16 = 29;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_BR_STP_STATE: u16 = 5;
const IFLA_BR_VLAN_FILTERING: u16 = 7;
const IFLA_VLAN_ID: u16 = 1;
const IFLA_BOND_MODE: u16 = 1;
const IFLA_BOND_MIIMON: u16 = 3;
const IFLA_BOND_XMIT_HASH_POLICY: u16 = 14;
const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;
const IFF_UP: u32 = 1;

/// A netlink socket reserved for full link dumps, bound to the namespace it was made in.
pub struct LinkDumper {
    sock: Mutex<netlink_sys::Socket>,
    seq: AtomicU32,
}

fn err(op: &str, e: impl std::fmt::Display) -> KernelError {
    KernelError::Netlink {
        op: op.to_string(),
        message: e.to_string(),
        errno: None,
    }
}

/// The value of an attribute, borrowed from the receive buffer rather than from the attribute.
fn value_of(n: NlaBuffer<&[u8]>) -> &[u8] {
    let len = usize::from(n.length());
    let inner = n.into_inner();
    inner.get(4..len.min(inner.len())).unwrap_or_default()
}

fn u32_of(n: &NlaBuffer<&[u8]>) -> Option<u32> {
    n.value()
        .get(..4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

fn u16_of(n: &NlaBuffer<&[u8]>) -> Option<u16> {
    n.value().get(..2).map(|b| u16::from_ne_bytes([b[0], b[1]]))
}

fn u8_of(n: &NlaBuffer<&[u8]>) -> Option<u8> {
    n.value().first().copied()
}

fn str_of(n: &NlaBuffer<&[u8]>) -> String {
    let v = n.value();
    let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

fn operstate(s: u8) -> &'static str {
    match s {
        1 => "notpresent",
        2 => "down",
        3 => "lowerlayerdown",
        4 => "testing",
        5 => "dormant",
        6 => "up",
        _ => "unknown",
    }
}

/// Decodes one RTM_NEWLINK payload (ifinfomsg + attributes) into the fields we use.
pub fn parse_link_payload(payload: &[u8]) -> Option<LinkState> {
    let hdr = payload.get(..16)?;
    let index = u32::from_ne_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
    let flags = u32::from_ne_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]);
    let mut l = LinkState {
        index,
        up: flags & IFF_UP != 0,
        kind: "device".into(),
        ..Default::default()
    };
    let mut info_data: Option<&[u8]> = None;
    for nla in NlasIterator::new(&payload[16..]).flatten() {
        match nla.kind() {
            IFLA_IFNAME => l.name = str_of(&nla),
            IFLA_MTU => l.mtu = u32_of(&nla).unwrap_or(0),
            IFLA_MASTER => l.master = u32_of(&nla),
            IFLA_LINK => l.vlan_parent = u32_of(&nla),
            IFLA_OPERSTATE => l.operstate = operstate(u8_of(&nla).unwrap_or(0)).into(),
            IFLA_ADDRESS if nla.value().len() == 6 => {
                let m = nla.value();
                l.mac = Some(format!(
                    "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                    m[0], m[1], m[2], m[3], m[4], m[5]
                ));
            }
            IFLA_LINKINFO => {
                let v = value_of(nla);
                for i in NlasIterator::new(v).flatten() {
                    match i.kind() {
                        IFLA_INFO_KIND => l.kind = str_of(&i),
                        IFLA_INFO_DATA => info_data = Some(value_of(i)),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(data) = info_data {
        for o in NlasIterator::new(data).flatten() {
            match (l.kind.as_str(), o.kind()) {
                ("bridge", IFLA_BR_VLAN_FILTERING) => l.vlan_filtering = u8_of(&o).map(|v| v != 0),
                ("bridge", IFLA_BR_STP_STATE) => l.stp = u32_of(&o).map(|v| v != 0),
                ("vlan", IFLA_VLAN_ID) => l.vlan_id = u16_of(&o),
                ("bond", IFLA_BOND_MODE) => {
                    l.bond_mode = u8_of(&o).map(|m| bond_mode_name(&BondMode::from(m)))
                }
                ("bond", IFLA_BOND_MIIMON) => l.miimon = u32_of(&o),
                ("bond", IFLA_BOND_XMIT_HASH_POLICY) => {
                    l.xmit_hash_policy = u8_of(&o).map(|p| xmit_name(&BondXmitHashPolicy::from(p)))
                }
                _ => {}
            }
        }
    }
    if l.kind != "vlan" {
        l.vlan_parent = None;
    }
    Some(l)
}

impl LinkDumper {
    /// Opens the socket in the calling thread's network namespace.
    pub fn new() -> std::io::Result<Self> {
        let mut s = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE)?;
        s.bind_auto()?;
        // A lost reply must fail the read, not hang the reconciler.
        let tv = nix::libc::timeval {
            tv_sec: 30,
            tv_usec: 0,
        };
        // SAFETY: `tv` outlives the call and the size passed is its size.
        let r = unsafe {
            nix::libc::setsockopt(
                s.as_raw_fd(),
                nix::libc::SOL_SOCKET,
                nix::libc::SO_RCVTIMEO,
                std::ptr::addr_of!(tv).cast(),
                std::mem::size_of::<nix::libc::timeval>() as nix::libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(LinkDumper {
            sock: Mutex::new(s),
            seq: AtomicU32::new(1),
        })
    }

    /// Every link, statistics skipped (blocking: call from a blocking thread).
    pub fn dump(&self) -> Result<Vec<LinkState>, KernelError> {
        const OP: &str = "listing links";
        let sock = self
            .sock
            .lock()
            .map_err(|_| err(OP, "dump socket poisoned"))?;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut req = Vec::with_capacity(40);
        req.extend_from_slice(&40u32.to_ne_bytes());
        req.extend_from_slice(&RTM_GETLINK.to_ne_bytes());
        req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        req.extend_from_slice(&seq.to_ne_bytes());
        req.extend_from_slice(&0u32.to_ne_bytes());
        req.extend_from_slice(&[0u8; 16]);
        req.extend_from_slice(&8u16.to_ne_bytes());
        req.extend_from_slice(&IFLA_EXT_MASK.to_ne_bytes());
        req.extend_from_slice(&RTEXT_FILTER_SKIP_STATS.to_ne_bytes());
        sock.send(&req, 0).map_err(|e| err(OP, e))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut out = Vec::new();
        loop {
            // SAFETY: `buf` is valid for `buf.len()` bytes for the duration of the call.
            let n =
                unsafe { nix::libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err(OP, e));
            }
            let data = &buf[..n as usize];
            let mut off = 0;
            while off < data.len() {
                let nb = NetlinkBuffer::new_checked(&data[off..]).map_err(|e| err(OP, e))?;
                let len = nb.length() as usize;
                if nb.sequence_number() == seq {
                    match nb.message_type() {
                        NLMSG_DONE => return Ok(out),
                        NLMSG_ERROR => {
                            let p = nb.payload();
                            let code = p
                                .get(..4)
                                .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                                .unwrap_or(0);
                            if code != 0 {
                                return Err(KernelError::Netlink {
                                    op: OP.into(),
                                    message: std::io::Error::from_raw_os_error(-code).to_string(),
                                    errno: Some(-code),
                                });
                            }
                        }
                        RTM_NEWLINK => {
                            if let Some(l) = parse_link_payload(nb.payload()) {
                                out.push(l);
                            }
                        }
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
            }
        }
    }
}
