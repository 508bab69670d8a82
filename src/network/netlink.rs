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

pub fn bond_mode_name(m: &BondMode) -> String {
    match m {
        BondMode::BalanceRr => "balance-rr",
        BondMode::ActiveBackup => "active-backup",
        BondMode::BalanceXor => "balance-xor",
        BondMode::Broadcast => "broadcast",
        BondMode::Ieee8023Ad => "802.3ad",
        BondMode::BalanceTlb => "balance-tlb",
        BondMode::BalanceAlb => "balance-alb",
        _ => "other",
    }
    .to_string()
}

fn bond_mode(name: &str) -> BondMode {
    match name {
        "active-backup" => BondMode::ActiveBackup,
        "balance-xor" => BondMode::BalanceXor,
        "broadcast" => BondMode::Broadcast,
        "802.3ad" => BondMode::Ieee8023Ad,
        "balance-tlb" => BondMode::BalanceTlb,
        "balance-alb" => BondMode::BalanceAlb,
        _ => BondMode::BalanceRr,
    }
}

pub fn xmit_name(p: &BondXmitHashPolicy) -> String {
    match p {
        BondXmitHashPolicy::Layer2 => "layer2",
        BondXmitHashPolicy::Layer34 => "layer3+4",
        BondXmitHashPolicy::Layer23 => "layer2+3",
        BondXmitHashPolicy::Encap23 => "encap2+3",
        BondXmitHashPolicy::Encap34 => "encap3+4",
        BondXmitHashPolicy::VlanSrcMac => "vlan+srcmac",
        _ => "other",
    }
    .to_string()
}

fn xmit(name: &str) -> BondXmitHashPolicy {
    match name {
        "layer3+4" => BondXmitHashPolicy::Layer34,
        "layer2+3" => BondXmitHashPolicy::Layer23,
        "encap2+3" => BondXmitHashPolicy::Encap23,
        "encap3+4" => BondXmitHashPolicy::Encap34,
        "vlan+srcmac" => BondXmitHashPolicy::VlanSrcMac,
        _ => BondXmitHashPolicy::Layer2,
    }
}

fn parse_link(msg: &LinkMessage) -> LinkState {
    let mut l = LinkState {
        index: msg.header.index,
        up: msg.header.flags.contains(LinkFlags::Up),
        kind: "device".into(),
        ..Default::default()
    };
    for a in &msg.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Mtu(m) => l.mtu = *m,
            LinkAttribute::Controller(m) => l.master = Some(*m),
            LinkAttribute::Link(p) => l.vlan_parent = Some(*p),
            LinkAttribute::OperState(s) => {
                l.operstate = match s {
                    State::Up => "up",
                    State::Down => "down",
                    State::LowerLayerDown => "lowerlayerdown",
                    State::Dormant => "dormant",
                    State::NotPresent => "notpresent",
                    State::Testing => "testing",
                    _ => "unknown",
                }
                .into()
            }
            LinkAttribute::Address(mac) if mac.len() == 6 => {
                l.mac = Some(
                    mac.iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":"),
                )
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => l.kind = k.to_string(),
                        LinkInfo::Data(InfoData::Bridge(opts)) => {
                            for o in opts {
                                match o {
                                    InfoBridge::VlanFiltering(v) => l.vlan_filtering = Some(*v),
                                    InfoBridge::StpState(s) => {
                                        l.stp = Some(!matches!(s, BridgeStpState::Disabled))
                                    }
                                    _ => {}
                                }
                            }
                        }
                        LinkInfo::Data(InfoData::Vlan(opts)) => {
                            for o in opts {
                                if let InfoVlan::Id(id) = o {
                                    l.vlan_id = Some(*id);
                                }
                            }
                        }
                        LinkInfo::Data(InfoData::Bond(opts)) => {
                            for o in opts {
                                match o {
                                    InfoBond::Mode(m) => l.bond_mode = Some(bond_mode_name(m)),
                                    InfoBond::MiiMon(m) => l.miimon = Some(*m),
                                    InfoBond::XmitHashPolicy(p) => {
                                        l.xmit_hash_policy = Some(xmit_name(p))
                                    }
                                    _ => {}
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if l.kind != "vlan" {
        l.vlan_parent = None;
    }
    l
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

    /// Reads every link, with bridge VLANs (when `vlans`) and addresses.
    pub async fn snapshot(&self, vlans: bool) -> Result<Snapshot, KernelError> {
        let _turn = self.dumps.lock().await;
        let dumper = std::sync::Arc::clone(&self.dumper);
        let links = tokio::task::spawn_blocking(move || dumper.dump())
            .await
            .map_err(|e| KernelError::Netlink {
                op: "listing links".into(),
                message: e.to_string(),
                errno: None,
            })??;
        let mut by_index: BTreeMap<u32, LinkState> =
            links.into_iter().map(|l| (l.index, l)).collect();
        if vlans {
            self.fill_vlans(&mut by_index).await?;
        }
        add_addresses(&mut by_index, self.handle.address().get().execute()).await?;
        Ok(into_snapshot(by_index))
    }

    /// [`Kernel::snapshot`] through rtnetlink's full decoder: the reference the lean dump is
    /// tested against.
    #[doc(hidden)]
    pub async fn snapshot_rtnl(&self, vlans: bool) -> Result<Snapshot, KernelError> {
        let _turn = self.dumps.lock().await;
        let mut by_index: BTreeMap<u32, LinkState> = BTreeMap::new();
        // Statistics are most of a link message and of the kernel's work to build it; skip them.
        let mut s = self
            .handle
            .link()
            .get()
            .set_filter_mask(AddressFamily::Unspec, vec![LinkExtentMask::SkipStats])
            .execute();
        while let Some(msg) = s
            .try_next()
            .await
            .map_err(|e| KernelError::from_rtnl("listing links", e))?
        {
            let l = parse_link(&msg);
            by_index.insert(l.index, l);
        }
        if vlans {
            self.fill_vlans(&mut by_index).await?;
        }
        add_addresses(&mut by_index, self.handle.address().get().execute()).await?;
        Ok(into_snapshot(by_index))
    }

    /// Reads only the named links, the links attached to any of them, and their addresses:
    /// a change touches a handful of links, and a full dump costs time in proportion to every
    /// link on the host.
    pub async fn snapshot_of(
        &self,
        names: &[String],
        addresses_of: &[String],
        vlans: bool,
    ) -> Result<Snapshot, KernelError> {
        // Past a few dozen links, per-link requests (each filtered dump still walks every
        // device in the kernel) cost more than one full read.
        if names.len() > SCOPED_READ_LIMIT {
            return self.snapshot(vlans).await;
        }
        let _turn = self.dumps.lock().await;
        let mut by_index: BTreeMap<u32, LinkState> = BTreeMap::new();
        for n in names {
            let mut s = self.handle.link().get().match_name(n.clone()).execute();
            match s.try_next().await {
                Ok(Some(msg)) => {
                    let l = parse_link(&msg);
                    by_index.insert(l.index, l);
                }
                Ok(None) => {}
                Err(rtnetlink::Error::NetlinkError(m))
                    if m.code.map(|c| -c.get()) == Some(libc::ENODEV) => {}
                Err(e) => return Err(KernelError::from_rtnl(format!("reading link {n}"), e)),
            }
        }
        let masters: Vec<u32> = by_index
            .values()
            .filter(|l| l.kind == "bridge" || l.kind == "bond")
            .map(|l| l.index)
            .collect();
        for m in masters {
            let mut req = self
                .handle
                .link()
                .get()
                .set_filter_mask(AddressFamily::Unspec, vec![LinkExtentMask::SkipStats]);
            req.message_mut()
                .attributes
                .push(LinkAttribute::Controller(m));
            let mut s = req.execute();
            while let Some(msg) = s
                .try_next()
                .await
                .map_err(|e| KernelError::from_rtnl("listing attached links", e))?
            {
                let l = parse_link(&msg);
                // Older kernels ignore the filter; keep only real members.
                if l.master == Some(m) {
                    by_index.insert(l.index, l);
                }
            }
        }
        if vlans {
            self.fill_vlans(&mut by_index).await?;
        }
        // Addresses matter only on the named links themselves, not on their ports.
        let indexes: Vec<u32> = by_index
            .values()
            .filter(|l| addresses_of.contains(&l.name))
            .map(|l| l.index)
            .collect();
        // One request per family: the kernel applies the interface filter per family, so a
        // filtered dump costs one device instead of every device in the namespace.
        let per_family = indexes
            .iter()
            .flat_map(|i| [(*i, AddressFamily::Inet), (*i, AddressFamily::Inet6)]);
        for (i, family) in per_family {
            let mut req = self.handle.address().get().set_link_index_filter(i);
            req.message_mut().header.index = i;
            req.message_mut().header.family = family;
            add_addresses(&mut by_index, req.execute()).await?;
        }
        Ok(into_snapshot(by_index))
    }

    /// Reads a single link by name.
    pub async fn link(&self, name: &str) -> Result<Option<LinkState>, KernelError> {
        let n = [name.to_string()];
        Ok(self.snapshot_of(&n, &n, false).await?.remove(name))
    }

    async fn fill_vlans(&self, by_index: &mut BTreeMap<u32, LinkState>) -> Result<(), KernelError> {
        let mut s = self
            .handle
            .link()
            .get()
            .set_filter_mask(AddressFamily::Bridge, vec![LinkExtentMask::Brvlan])
            .execute();
        while let Some(msg) = s
            .try_next()
            .await
            .map_err(|e| KernelError::from_rtnl("listing bridge VLANs", e))?
        {
            let Some(l) = by_index.get_mut(&msg.header.index) else {
                continue;
            };
            for a in &msg.attributes {
                if let LinkAttribute::AfSpecBridge(specs) = a {
                    let mut range_start: Option<u16> = None;
                    for sp in specs {
                        if let AfSpecBridge::VlanInfo(v) = sp {
                            let f = VlanFlags {
                                pvid: v.flags.contains(BridgeVlanInfoFlags::Pvid),
                                untagged: v.flags.contains(BridgeVlanInfoFlags::Untagged),
                            };
                            if v.flags.contains(BridgeVlanInfoFlags::RangeBegin) {
                                range_start = Some(v.vid);
                            } else if v.flags.contains(BridgeVlanInfoFlags::RangeEnd) {
                                for vid in range_start.take().unwrap_or(v.vid)..=v.vid {
                                    l.vlans.insert(vid, f);
                                }
                            } else {
                                l.vlans.insert(v.vid, f);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn exec_link_add(&self, op: &str, msg: LinkMessage) -> Result<(), KernelError> {
        self.wrote();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| KernelError::from_rtnl(op, e))
    }

    async fn exec_link_set(&self, op: &str, msg: LinkMessage) -> Result<(), KernelError> {
        self.wrote();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| KernelError::from_rtnl(op, e))
    }

    /// VLAN attributes are sent only for VLAN-aware bridges: kernels built without
    /// CONFIG_BRIDGE_VLAN_FILTERING refuse them even when they say "off".
    fn bridge_message(
        name: &str,
        index: Option<u32>,
        vlan_filtering: bool,
        stp: bool,
        mtu: Option<u32>,
    ) -> LinkMessage {
        let mut b = LinkBridge::new(name).append_info_data(InfoBridge::StpState(if stp {
            BridgeStpState::KernelStp
        } else {
            BridgeStpState::Disabled
        }));
        if vlan_filtering {
            b = b
                .append_info_data(InfoBridge::VlanFiltering(true))
                .append_info_data(InfoBridge::VlanDefaultPvid(0));
        }
        if let Some(i) = index {
            b = b.index(i);
        }
        if let Some(m) = mtu {
            b = b.mtu(m);
        }
        b.build()
    }

    pub async fn create_bridge(
        &self,
        name: &str,
        vlan_filtering: bool,
        stp: bool,
        mtu: Option<u32>,
    ) -> Result<(), KernelError> {
        self.exec_link_add(
            &format!("creating bridge {name}"),
            Self::bridge_message(name, None, vlan_filtering, stp, mtu),
        )
        .await
    }

    pub async fn set_bridge_options(
        &self,
        index: u32,
        name: &str,
        vlan_filtering: bool,
        stp: bool,
        currently_filtering: bool,
    ) -> Result<(), KernelError> {
        let mut msg = Self::bridge_message(name, Some(index), vlan_filtering, stp, None);
        if !vlan_filtering && currently_filtering {
            // Turning filtering off must say so explicitly.
            if let Some(LinkAttribute::LinkInfo(infos)) = msg
                .attributes
                .iter_mut()
                .find(|a| matches!(a, LinkAttribute::LinkInfo(_)))
            {
                for i in infos.iter_mut() {
                    if let LinkInfo::Data(InfoData::Bridge(opts)) = i {
                        opts.push(InfoBridge::VlanFiltering(false));
                    }
                }
            }
        }
        self.wrote();
        self.handle
            .link()
            .change(msg)
            .execute()
            .await
            .map_err(|e| KernelError::from_rtnl(format!("setting options of bridge {name}"), e))
    }

    pub async fn create_vlan(
        &self,
        name: &str,
        parent: u32,
        vid: u16,
        mtu: Option<u32>,
    ) -> Result<(), KernelError> {
        let mut b = LinkVlan::new(name, parent, vid).up();
        if let Some(m) = mtu {
            b = b.mtu(m);
        }
        self.exec_link_add(&format!("creating VLAN interface {name}"), b.build())
            .await
    }

    pub async fn create_bond(
        &self,
        name: &str,
        mode: &str,
        miimon: u32,
        xmit_policy: Option<&str>,
        mtu: Option<u32>,
    ) -> Result<(), KernelError> {
        let mut b = LinkBond::new(name)
            .mode(bond_mode(mode))
            .miimon(miimon)
            .up();
        if let Some(p) = xmit_policy {
            b = b.xmit_hash_policy(xmit(p));
        }
        if let Some(m) = mtu {
            b = b.mtu(m);
        }
        self.exec_link_add(&format!("creating bond {name}"), b.build())
            .await
    }

    pub async fn create_veth(&self, host: &str, peer: &str) -> Result<(), KernelError> {
        self.exec_link_add(
            &format!("creating veth {host}/{peer}"),
            LinkVeth::new(host, peer).build(),
        )
        .await
    }

    pub async fn set_address(
        &self,
        index: u32,
        name: &str,
        mac: Vec<u8>,
    ) -> Result<(), KernelError> {
        self.exec_link_set(
            &format!("setting the MAC address of {name}"),
            LinkUnspec::new_with_index(index).address(mac).build(),
        )
        .await
    }

    /// Moves a link into the network namespace open at `fd`.
    pub async fn move_to_netns(
        &self,
        index: u32,
        name: &str,
        fd: std::os::fd::RawFd,
    ) -> Result<(), KernelError> {
        self.exec_link_set(
            &format!("moving {name} into the guest's namespace"),
            LinkUnspec::new_with_index(index).setns_by_fd(fd).build(),
        )
        .await
    }

    /// Moves a link into another namespace, renaming it there in the same message (as
    /// `ip link set X netns N name Y`), so the temporary host-side name never clashes inside.
    pub async fn move_to_netns_as(
        &self,
        index: u32,
        name: &str,
        fd: std::os::fd::RawFd,
        new_name: &str,
    ) -> Result<(), KernelError> {
        self.exec_link_set(
            &format!("moving {name} into the guest's namespace as {new_name}"),
            LinkUnspec::new_with_index(index)
                .setns_by_fd(fd)
                .append_extra_attribute(LinkAttribute::IfName(new_name.to_string()))
                .build(),
        )
        .await
    }

    /// The indexes of links that carry a default route (IPv4 or IPv6, main table), every hop
    /// of a multipath route included: where management traffic leaves this namespace.
    pub async fn default_route_links(
        &self,
    ) -> Result<std::collections::BTreeSet<u32>, KernelError> {
        use rtnetlink::packet_route::route::{RouteAttribute, RouteHeader, RouteMessage};
        let _turn = self.dumps.lock().await;
        let mut out = std::collections::BTreeSet::new();
        let v4 = rtnetlink::RouteMessageBuilder::<std::net::Ipv4Addr>::new().build();
        let v6 = rtnetlink::RouteMessageBuilder::<std::net::Ipv6Addr>::new().build();
        for q in [v4, v6] {
            let routes: Vec<RouteMessage> = self
                .handle
                .route()
                .get(q)
                .execute()
                .try_collect()
                .await
                .map_err(|e| KernelError::from_rtnl("listing routes", e))?;
            for r in routes {
                let table = r
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        RouteAttribute::Table(t) => Some(*t),
                        _ => None,
                    })
                    .unwrap_or(u32::from(r.header.table));
                if r.header.destination_prefix_length != 0
                    || table != u32::from(RouteHeader::RT_TABLE_MAIN)
                {
                    continue;
                }
                for a in &r.attributes {
                    match a {
                        RouteAttribute::Oif(i) => {
                            out.insert(*i);
                        }
                        RouteAttribute::MultiPath(hops) => {
                            out.extend(hops.iter().map(|h| h.interface_index));
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(out)
    }

    /// The names of the links with these indexes, plus of those holding `holding` (an
    /// address), read from the kernel.
    pub async fn link_names(
        &self,
        indexes: &std::collections::BTreeSet<u32>,
        holding: Option<IpAddr>,
    ) -> Result<std::collections::BTreeSet<String>, KernelError> {
        let mut want = indexes.clone();
        if let Some(ip) = holding {
            let _turn = self.dumps.lock().await;
            let addrs: Vec<AddressMessage> = self
                .handle
                .address()
                .get()
                .execute()
                .try_collect()
                .await
                .map_err(|e| KernelError::from_rtnl("listing addresses", e))?;
            for m in addrs {
                if m.attributes.iter().any(|a| {
                    matches!(a, AddressAttribute::Local(x) | AddressAttribute::Address(x) if *x == ip)
                }) {
                    want.insert(m.header.index);
                }
            }
        }
        let mut out = std::collections::BTreeSet::new();
        for i in want {
            let mut st = self.handle.link().get().match_index(i).execute();
            // A link that vanished since is simply not there.
            if let Ok(Some(m)) = st.try_next().await {
                if let Some(n) = m.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                }) {
                    out.insert(n);
                }
            }
        }
        Ok(out)
    }

    /// Adds an IPv4 default route through `gw`.
    pub async fn route_add_default_v4(&self, gw: std::net::Ipv4Addr) -> Result<(), KernelError> {
        self.wrote();
        self.handle
            .route()
            .add(
                rtnetlink::RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                    .gateway(gw)
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| KernelError::from_rtnl(format!("adding a default route via {gw}"), e))
    }

    /// Adds an IPv6 default route through `gw`.
    pub async fn route_add_default_v6(&self, gw: std::net::Ipv6Addr) -> Result<(), KernelError> {
        self.wrote();
        self.handle
            .route()
            .add(
                rtnetlink::RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                    .gateway(gw)
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| KernelError::from_rtnl(format!("adding a default route via {gw}"), e))
    }

    pub async fn set_master(
        &self,
        index: u32,
        name: &str,
        master: Option<(u32, &str)>,
    ) -> Result<(), KernelError> {
        let b = LinkUnspec::new_with_index(index);
        let (b, op) = match master {
            Some((m, mname)) => (b.controller(m), format!("attaching {name} to {mname}")),
            None => (
                b.nocontroller(),
                format!("detaching {name} from its master"),
            ),
        };
        self.exec_link_set(&op, b.build()).await
    }

    pub async fn set_up(&self, index: u32, name: &str, up: bool) -> Result<(), KernelError> {
        let b = LinkUnspec::new_with_index(index);
        let b = if up { b.up() } else { b.down() };
        self.exec_link_set(
            &format!("setting {name} {}", if up { "up" } else { "down" }),
            b.build(),
        )
        .await
    }

    pub async fn set_mtu(&self, index: u32, name: &str, mtu: u32) -> Result<(), KernelError> {
        self.exec_link_set(
            &format!("setting MTU {mtu} on {name}"),
            LinkUnspec::new_with_index(index).mtu(mtu).build(),
        )
        .await
    }

    pub async fn delete(&self, index: u32, name: &str) -> Result<(), KernelError> {
        self.wrote();
        self.handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(|e| KernelError::from_rtnl(format!("deleting {name}"), e))
    }

    /// Adds (or changes the flags of) a bridge VLAN entry on a port, or on the bridge itself.
    pub async fn vlan_add(
        &self,
        index: u32,
        name: &str,
        vid: u16,
        flags: VlanFlags,
        bridge_self: bool,
    ) -> Result<(), KernelError> {
        let mut b = LinkBridgeVlan::new(index).vlan(vid, bridge_flags(flags));
        if bridge_self {
            b = b.bridge_self();
        }
        self.wrote();
        // RTM_SETLINK with AF_BRIDGE reaches the bridge's own handler. (rtnetlink's `set_port`
        // sends RTM_NEWLINK, which the kernel acknowledges without adding the VLAN.)
        self.handle
            .link()
            .set(b.build())
            .execute()
            .await
            .map_err(|e| KernelError::from_rtnl(format!("adding VLAN {vid} to {name}"), e))
    }

    /// Adds many bridge VLAN entries in as few messages as the kernel allows: runs of
    /// consecutive VIDs with the same flags go as one range (the kernel takes RANGE_BEGIN /
    /// RANGE_END pairs, but never a PVID range), up to 256 entries per message.
    pub async fn vlan_add_many(
        &self,
        index: u32,
        name: &str,
        vlans: &[(u16, VlanFlags)],
        bridge_self: bool,
    ) -> Result<(), KernelError> {
        for chunk in vlan_runs(vlans).chunks(256) {
            let b = vlan_message(index, chunk, bridge_self);
            self.wrote();
            self.handle.link().set(b).execute().await.map_err(|e| {
                KernelError::from_rtnl(format!("adding {} VLAN entries to {name}", chunk.len()), e)
            })?;
        }
        Ok(())
    }

    /// Removes many bridge VLAN entries, as ranges where consecutive.
    pub async fn vlan_del_many(
        &self,
        index: u32,
        name: &str,
        vids: &[u16],
        bridge_self: bool,
    ) -> Result<(), KernelError> {
        let plain: Vec<(u16, VlanFlags)> =
            vids.iter().map(|v| (*v, VlanFlags::default())).collect();
        for chunk in vlan_runs(&plain).chunks(256) {
            let b = vlan_message(index, chunk, bridge_self);
            self.wrote();
            self.handle
                .link()
                .del_with_message(b)
                .execute()
                .await
                .map_err(|e| {
                    KernelError::from_rtnl(
                        format!("removing {} VLAN entries from {name}", chunk.len()),
                        e,
                    )
                })?;
        }
        Ok(())
    }

    pub async fn vlan_del(
        &self,
        index: u32,
        name: &str,
        vid: u16,
        bridge_self: bool,
    ) -> Result<(), KernelError> {
        let mut b = LinkBridgeVlan::new(index).vlan(vid, BridgeVlanInfoFlags::empty());
        if bridge_self {
            b = b.bridge_self();
        }
        self.wrote();
        self.handle
            .link()
            .del_with_message(b.build())
            .execute()
            .await
            .map_err(|e| KernelError::from_rtnl(format!("removing VLAN {vid} from {name}"), e))
    }

    pub async fn addr_add(&self, index: u32, name: &str, cidr: &str) -> Result<(), KernelError> {
        let (ip, len) = parse_cidr(cidr).ok_or_else(|| KernelError::Netlink {
            op: format!("adding {cidr} to {name}"),
            message: "not an address/prefix".into(),
            errno: None,
        })?;
        self.wrote();
        self.handle
            .address()
            .add(index, ip, len)
            .execute()
            .await
            .map_err(|e| KernelError::from_rtnl(format!("adding {cidr} to {name}"), e))
    }

    pub async fn addr_del(&self, index: u32, name: &str, cidr: &str) -> Result<(), KernelError> {
        let turn = self.dumps.lock().await;
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        // The whole dump is read before anything else is sent on the socket.
        let mut found = None;
        while let Some(msg) = s
            .try_next()
            .await
            .map_err(|e| KernelError::from_rtnl("listing addresses", e))?
        {
            if found.is_none() && address_string(&msg).as_deref() == Some(cidr) {
                found = Some(msg);
            }
        }
        drop(turn);
        if let Some(msg) = found {
            self.wrote();
            return self
                .handle
                .address()
                .del(msg)
                .execute()
                .await
                .map_err(|e| KernelError::from_rtnl(format!("removing {cidr} from {name}"), e));
        }
        Ok(())
    }
}

/// Adds the addresses from an address dump to the links they belong to.
async fn add_addresses(
    by_index: &mut BTreeMap<u32, LinkState>,
    stream: impl futures_util::Stream<Item = Result<AddressMessage, rtnetlink::Error>>,
) -> Result<(), KernelError> {
    futures_util::pin_mut!(stream);
    while let Some(msg) = stream
        .try_next()
        .await
        .map_err(|e| KernelError::from_rtnl("listing addresses", e))?
    {
        if let Some(a) = address_string(&msg) {
            if let Some(l) = by_index.get_mut(&msg.header.index) {
                l.addresses.push(a);
            }
        }
    }
    Ok(())
}

fn into_snapshot(by_index: BTreeMap<u32, LinkState>) -> Snapshot {
    by_index
        .into_values()
        .map(|l| (l.name.clone(), l))
        .collect()
}

/// `ip/prefix` of a non-link-local address message.
fn address_string(msg: &AddressMessage) -> Option<String> {
    let ip = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let ip = ip.or_else(|| {
        msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })?;
    if let IpAddr::V6(v6) = ip {
        if (v6.segments()[0] & 0xffc0) == 0xfe80 {
            return None;
        }
    }
    Some(format!("{ip}/{}", msg.header.prefix_len))
}

/// Parses and normalizes `ip/prefix`.
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

/// Link events from the kernel (RTNLGRP_LINK), used to wake the reconciler.
pub type Events = futures_channel::mpsc::UnboundedReceiver<(
    rtnetlink::packet_core::NetlinkMessage<rtnetlink::packet_route::RouteNetlinkMessage>,
    netlink_sys::SocketAddr,
)>;

/// Our VLAN flags as the kernel's.
fn bridge_flags(flags: VlanFlags) -> BridgeVlanInfoFlags {
    let mut f = BridgeVlanInfoFlags::empty();
    if flags.pvid {
        f |= BridgeVlanInfoFlags::Pvid;
    }
    if flags.untagged {
        f |= BridgeVlanInfoFlags::Untagged;
    }
    f
}

/// One AF_BRIDGE message carrying VLAN runs (single VIDs, or RANGE_BEGIN/RANGE_END pairs).
fn vlan_message(index: u32, runs: &[(u16, u16, VlanFlags)], bridge_self: bool) -> LinkMessage {
    let mut b = LinkBridgeVlan::new(index);
    for &(from, to, flags) in runs {
        let f = bridge_flags(flags);
        b = if from == to {
            b.vlan(from, f)
        } else {
            b.vlan_range_start(from, f).vlan_range_end(to, f)
        };
    }
    if bridge_self {
        b = b.bridge_self();
    }
    b.build()
}

/// Groups sorted (vid, flags) entries into runs `(from, to, flags)` of consecutive VIDs with
/// equal flags; a PVID entry is always a run of one (the kernel refuses PVID ranges).
pub fn vlan_runs(vlans: &[(u16, VlanFlags)]) -> Vec<(u16, u16, VlanFlags)> {
    let mut sorted = vlans.to_vec();
    sorted.sort_by_key(|(v, _)| *v);
    let mut out: Vec<(u16, u16, VlanFlags)> = Vec::new();
    for (vid, f) in sorted {
        match out.last_mut() {
            Some((_, to, lf))
                if !f.pvid && !lf.pvid && *lf == f && to.checked_add(1) == Some(vid) =>
            {
                *to = vid
            }
            _ => out.push((vid, vid, f)),
        }
    }
    out
}

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
