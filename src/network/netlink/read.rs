//! Reading the kernel: links with their bridge, bond and VLAN details, addresses, default
//! routes, whole snapshots (scoped or full) for the reconciler.

use super::*;

impl Kernel {
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

    pub(super) async fn fill_vlans(
        &self,
        by_index: &mut BTreeMap<u32, LinkState>,
    ) -> Result<(), KernelError> {
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

    /// The default routes of the main table, IPv4 and IPv6: each with the links it leaves by
    /// (every hop of a multipath route) and its gateway.
    async fn default_routes(&self) -> Result<Vec<(Vec<u32>, Option<IpAddr>)>, KernelError> {
        use rtnetlink::packet_route::route::{
            RouteAddress, RouteAttribute, RouteHeader, RouteMessage,
        };
        let _turn = self.dumps.lock().await;
        let mut out = Vec::new();
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
                let mut links = Vec::new();
                let mut gateway = None;
                for a in &r.attributes {
                    match a {
                        RouteAttribute::Oif(i) => links.push(*i),
                        RouteAttribute::MultiPath(hops) => {
                            links.extend(hops.iter().map(|h| h.interface_index));
                        }
                        RouteAttribute::Gateway(RouteAddress::Inet(g)) => {
                            gateway = Some(IpAddr::V4(*g));
                        }
                        RouteAttribute::Gateway(RouteAddress::Inet6(g)) => {
                            gateway = Some(IpAddr::V6(*g));
                        }
                        _ => {}
                    }
                }
                out.push((links, gateway));
            }
        }
        Ok(out)
    }

    /// The indexes of links that carry a default route (IPv4 or IPv6, main table), every hop
    /// of a multipath route included: where management traffic leaves this namespace.
    pub async fn default_route_links(
        &self,
    ) -> Result<std::collections::BTreeSet<u32>, KernelError> {
        Ok(self
            .default_routes()
            .await?
            .into_iter()
            .flat_map(|(links, _)| links)
            .collect())
    }

    /// The gateways of default routes that leave by link `index`.
    pub async fn default_gateways(&self, index: u32) -> Result<Vec<IpAddr>, KernelError> {
        Ok(self
            .default_routes()
            .await?
            .into_iter()
            .filter(|(links, _)| links.contains(&index))
            .filter_map(|(_, gw)| gw)
            .collect())
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

pub(super) fn bond_mode(name: &str) -> BondMode {
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

pub(super) fn xmit(name: &str) -> BondXmitHashPolicy {
    match name {
        "layer3+4" => BondXmitHashPolicy::Layer34,
        "layer2+3" => BondXmitHashPolicy::Layer23,
        "encap2+3" => BondXmitHashPolicy::Encap23,
        "encap3+4" => BondXmitHashPolicy::Encap34,
        "vlan+srcmac" => BondXmitHashPolicy::VlanSrcMac,
        _ => BondXmitHashPolicy::Layer2,
    }
}

pub(super) fn parse_link(msg: &LinkMessage) -> LinkState {
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

pub(super) fn into_snapshot(by_index: BTreeMap<u32, LinkState>) -> Snapshot {
    by_index
        .into_values()
        .map(|l| (l.name.clone(), l))
        .collect()
}

/// `ip/prefix` of a non-link-local address message.
pub(super) fn address_string(msg: &AddressMessage) -> Option<String> {
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
