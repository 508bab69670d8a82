//! Converging the kernel to the desired links, as one transaction: every step that changes the
//! kernel records how to undo itself, and a failure undoes the completed steps in reverse.

use std::collections::{BTreeMap, HashMap};

use super::model::{normalize_cidr, Desired};
use super::netlink::{Kernel, KernelError, LinkState, Snapshot, VlanFlags};

mod vlans;

/// How to undo one completed step.
#[derive(Debug, Clone)]
enum Undo {
    Delete {
        name: String,
    },
    Mtu {
        name: String,
        mtu: u32,
    },
    BridgeOptions {
        name: String,
        vlan_filtering: bool,
        stp: bool,
    },
    Up {
        name: String,
        up: bool,
    },
    Master {
        name: String,
        master: Option<String>,
    },
    VlanRestore {
        dev: String,
        vid: u16,
        old: Option<VlanFlags>,
        bridge_self: bool,
    },
    AddrDel {
        dev: String,
        cidr: String,
    },
    RouteDel {
        dev: String,
        gw: std::net::IpAddr,
    },
    AddrAdd {
        dev: String,
        cidr: String,
    },
}

/// What a converge run did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Per object: the differences found (each was repaired).
    pub drift: BTreeMap<String, Vec<String>>,
    pub writes: u64,
}

/// A converge run failed; the kernel was put back as it was.
#[derive(Debug)]
pub struct Failed {
    pub object: String,
    pub error: KernelError,
    pub undo_errors: Vec<String>,
}

/// Which links a converge run reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every link (the background reconciler).
    Full,
    /// Only the desired links, their ports, members and parents (an API change).
    Touched,
}

struct Run<'a> {
    k: &'a Kernel,
    scope: Scope,
    names: Vec<String>,
    /// The desired links themselves (whose addresses are managed).
    own: Vec<String>,
    vlans: bool,
    journal: Vec<Undo>,
    report: Report,
    current: String,
}

fn idx(s: &Snapshot, name: &str) -> Option<u32> {
    s.get(name).map(|l| l.index)
}

fn name_of(s: &Snapshot, index: u32) -> Option<String> {
    s.values()
        .find(|l| l.index == index)
        .map(|l| l.name.clone())
}

impl Run<'_> {
    fn drift(&mut self, what: String) {
        self.report
            .drift
            .entry(self.current.clone())
            .or_default()
            .push(what);
    }

    async fn snapshot(&self) -> Result<Snapshot, KernelError> {
        match self.scope {
            Scope::Full => self.k.snapshot(self.vlans).await,
            Scope::Touched => self.k.snapshot_of(&self.names, &self.own, self.vlans).await,
        }
    }

    async fn undo_all(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        while let Some(u) = self.journal.pop() {
            if let Err(e) = self.undo(&u).await {
                errors.push(format!("{u:?}: {e}"));
            }
        }
        errors
    }

    async fn undo(&self, u: &Undo) -> Result<(), KernelError> {
        let s = self.k.snapshot(false).await?;
        let need = |n: &str| {
            idx(&s, n).ok_or_else(|| KernelError::Netlink {
                op: format!("undo on {n}"),
                message: "link vanished".into(),
                errno: None,
            })
        };
        match u {
            Undo::Delete { name } => match idx(&s, name) {
                Some(i) => self.k.delete(i, name).await,
                None => Ok(()),
            },
            Undo::Mtu { name, mtu } => self.k.set_mtu(need(name)?, name, *mtu).await,
            Undo::BridgeOptions {
                name,
                vlan_filtering,
                stp,
            } => {
                let cur = s.get(name).and_then(|l| l.vlan_filtering).unwrap_or(false);
                self.k
                    .set_bridge_options(need(name)?, name, *vlan_filtering, *stp, cur)
                    .await
            }
            Undo::Up { name, up } => self.k.set_up(need(name)?, name, *up).await,
            Undo::Master { name, master } => {
                let m = match master {
                    Some(m) => Some((need(m)?, m.as_str())),
                    None => None,
                };
                self.k.set_master(need(name)?, name, m).await
            }
            Undo::VlanRestore {
                dev,
                vid,
                old,
                bridge_self,
            } => match old {
                Some(f) => {
                    self.k
                        .vlan_add(need(dev)?, dev, *vid, *f, *bridge_self)
                        .await
                }
                None => self.k.vlan_del(need(dev)?, dev, *vid, *bridge_self).await,
            },
            Undo::AddrDel { dev, cidr } => self.k.addr_del(need(dev)?, dev, cidr).await,
            Undo::AddrAdd { dev, cidr } => self.k.addr_add(need(dev)?, dev, cidr).await,
            Undo::RouteDel { dev, gw } => self.k.route_del_default_via(need(dev)?, *gw).await,
        }
    }

    fn missing(&self, name: &str) -> KernelError {
        KernelError::Netlink {
            op: format!("configuring {}", self.current),
            message: format!("interface {name} does not exist"),
            errno: Some(libc::ENODEV),
        }
    }

    /// Phase 1, first half: decides whether a link must be created, deleting a link of the
    /// same name but another identity (only ever reached for links we own).
    async fn needs_create(
        &mut self,
        d: &Desired,
        s: &Snapshot,
        repairing: bool,
    ) -> Result<bool, KernelError> {
        let name = d.name().to_string();
        if let Some(l) = s.get(&name) {
            let wrong = match d {
                Desired::Vlan(v) => {
                    l.kind != "vlan"
                        || l.vlan_id != Some(v.vlan_id)
                        || l.vlan_parent.and_then(|p| name_of(s, p)).as_deref()
                            != Some(v.parent.as_str())
                }
                other => l.kind != other.kind(),
            };
            if !wrong {
                return Ok(false);
            }
            self.drift(format!(
                "{name} is a {} link with different identity; recreated",
                l.kind
            ));
            self.k.delete(l.index, &name).await?;
        } else if repairing {
            self.drift(format!("{name} was missing; recreated"));
        }
        Ok(true)
    }

    /// Phase 1, second half: creates links, many requests in flight at once (the kernel
    /// handles them in order; the round trips overlap). Every link that was made is journaled
    /// before the first failure is returned.
    async fn create_all(&mut self, ds: &[&Desired], s: &Snapshot) -> Result<(), KernelError> {
        use futures_util::StreamExt;
        let k = self.k;
        let mut raised = std::collections::HashSet::new();
        for d in ds {
            if let Desired::Vlan(v) = d {
                // Created down-parented, the VLAN cannot come up (ENETDOWN): parent first.
                if raised.insert(v.parent.as_str()) {
                    self.parent_up(&v.parent, s).await?;
                }
            }
        }
        let mut parents = Vec::with_capacity(ds.len());
        for d in ds {
            parents.push(match d {
                Desired::Vlan(v) => Some(idx(s, &v.parent).ok_or_else(|| self.missing(&v.parent))?),
                _ => None,
            });
        }
        type Op = std::pin::Pin<
            Box<dyn std::future::Future<Output = (String, Result<(), KernelError>)> + Send>,
        >;
        let ops: Vec<Op> = ds
            .iter()
            .zip(parents)
            .map(|(d, parent)| {
                let k = k.clone();
                let d = (*d).clone();
                Box::pin(async move {
                    let name = d.name().to_string();
                    let r = match &d {
                        Desired::Bridge(b) => {
                            k.create_bridge(&name, b.vlan_aware, b.stp, b.mtu).await
                        }
                        Desired::Bond(b) => {
                            k.create_bond(
                                &name,
                                &b.mode,
                                b.miimon,
                                b.xmit_hash_policy.as_deref(),
                                b.mtu,
                            )
                            .await
                        }
                        Desired::Vlan(v) => {
                            k.create_vlan(&name, parent.unwrap_or_default(), v.vlan_id, v.mtu)
                                .await
                        }
                    };
                    (name, r)
                }) as Op
            })
            .collect();
        let results: Vec<(String, Result<(), KernelError>)> = futures_util::stream::iter(ops)
            .buffer_unordered(32)
            .collect()
            .await;
        let mut first_err = None;
        for (name, r) in results {
            match r {
                Ok(()) => self.journal.push(Undo::Delete { name }),
                Err(e) => {
                    if first_err.is_none() {
                        self.current = name;
                        first_err = Some(e);
                    }
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Phase 2: bridge options, up state.
    async fn attributes(
        &mut self,
        d: &Desired,
        l: &LinkState,
        s: &Snapshot,
    ) -> Result<(), KernelError> {
        let name = d.name().to_string();
        if let Desired::Bridge(b) = d {
            let (vf, stp) = (l.vlan_filtering.unwrap_or(false), l.stp.unwrap_or(false));
            if vf != b.vlan_aware || stp != b.stp {
                self.drift(format!(
                    "{name}: vlan_filtering={vf} stp={stp}, want {} {}",
                    b.vlan_aware, b.stp
                ));
                self.k
                    .set_bridge_options(l.index, &name, b.vlan_aware, b.stp, vf)
                    .await?;
                self.journal.push(Undo::BridgeOptions {
                    name: name.clone(),
                    vlan_filtering: vf,
                    stp,
                });
            }
        }
        let want_up = match d {
            Desired::Bridge(b) => b.autostart,
            _ => true,
        };
        if let (Desired::Vlan(v), true) = (d, want_up) {
            self.parent_up(&v.parent, s).await?;
        }
        if l.up != want_up {
            self.drift(format!("{name} is {}", if l.up { "up" } else { "down" }));
            self.k.set_up(l.index, &name, want_up).await?;
            self.journal.push(Undo::Up { name, up: l.up });
        }
        Ok(())
    }

    /// A VLAN interface cannot go up on a parent that is down (ENETDOWN). As ifupdown2 does,
    /// the parent is brought up when it is a link an admin hands to Ferrite (a NIC, a bond, a
    /// bridge, or a veth or dummy standing in for a NIC); any other parent (a guest's port, a
    /// tunnel, ...) is named in a refusal instead of being touched.
    async fn parent_up(&mut self, parent: &str, s: &Snapshot) -> Result<(), KernelError> {
        let Some(p) = s.get(parent) else {
            return Err(self.missing(parent));
        };
        if p.up {
            return Ok(());
        }
        const MAY_RAISE: &[&str] = &["device", "bond", "bridge", "veth", "dummy"];
        if !MAY_RAISE.contains(&p.kind.as_str()) || super::attach::is_guest_port(parent) {
            return Err(KernelError::Refused {
                field: "parent".into(),
                message: format!(
                    "parent {parent} is down and is a {} link Ferrite does not bring up; \
                     bring it up (`ip link set {parent} up`) or choose another parent",
                    p.kind
                ),
            });
        }
        self.k.set_up(p.index, parent, true).await?;
        self.journal.push(Undo::Up {
            name: parent.to_string(),
            up: false,
        });
        Ok(())
    }

    /// MTU, set after membership: attaching ports makes a bridge adopt their MTU.
    async fn mtu(&mut self, d: &Desired, l: &LinkState) -> Result<(), KernelError> {
        let name = d.name().to_string();
        if let Some(m) = d.mtu() {
            if l.mtu != m {
                self.drift(format!("{name}: mtu {} instead of {m}", l.mtu));
                self.k.set_mtu(l.index, &name, m).await?;
                self.journal.push(Undo::Mtu { name, mtu: l.mtu });
            }
        }
        Ok(())
    }

    /// Phase 3: bridge ports and bond members.
    async fn membership(
        &mut self,
        d: &Desired,
        s: &Snapshot,
        children: &HashMap<u32, Vec<String>>,
    ) -> Result<(), KernelError> {
        let name = d.name().to_string();
        let Some(master) = s.get(&name).cloned() else {
            return Err(self.missing(&name));
        };
        let lower = d.lower_links();
        for port in &lower {
            let Some(p) = s.get(*port) else {
                return Err(self.missing(port));
            };
            if p.master == Some(master.index) {
                continue;
            }
            self.drift(format!("{port} is not attached to {name}"));
            let old = p.master.and_then(|m| name_of(s, m));
            if matches!(d, Desired::Bond(_)) && p.up {
                // The kernel enslaves only links that are down.
                self.k.set_up(p.index, port, false).await?;
                self.journal.push(Undo::Up {
                    name: port.to_string(),
                    up: true,
                });
            }
            self.k
                .set_master(p.index, port, Some((master.index, &name)))
                .await?;
            self.journal.push(Undo::Master {
                name: port.to_string(),
                master: old,
            });
        }
        // Links attached here that are no longer wanted are released.
        let attached = children.get(&master.index).cloned().unwrap_or_default();
        for l in attached.iter().filter_map(|n| s.get(n)) {
            // Guest NICs are attached by the container and VM engines, not configured here.
            if !lower.contains(&l.name.as_str()) && !super::attach::is_guest_port(&l.name) {
                self.drift(format!(
                    "{} is attached to {name} but not configured",
                    l.name
                ));
                self.k.set_master(l.index, &l.name, None).await?;
                self.journal.push(Undo::Master {
                    name: l.name.clone(),
                    master: Some(name.clone()),
                });
            }
        }
        Ok(())
    }

    /// Ports must be up to forward.
    async fn ports_up(&mut self, d: &Desired, s: &Snapshot) -> Result<(), KernelError> {
        for port in d.lower_links() {
            let Some(p) = s.get(port) else {
                return Err(self.missing(port));
            };
            if !p.up {
                self.drift(format!("port {port} is down"));
                self.k.set_up(p.index, port, true).await?;
                self.journal.push(Undo::Up {
                    name: port.to_string(),
                    up: false,
                });
            }
        }
        Ok(())
    }

    /// Phase 5: host addresses (link-local ones are the kernel's and left alone).
    async fn addresses(&mut self, d: &Desired, l: &LinkState) -> Result<(), KernelError> {
        let name = d.name().to_string();
        let want: Vec<String> = d.addresses().iter().map(|a| normalize_cidr(a)).collect();
        for a in &want {
            if !l.addresses.contains(a) {
                self.drift(format!("{name}: address {a} missing"));
                self.k.addr_add(l.index, &name, a).await?;
                self.journal.push(Undo::AddrDel {
                    dev: name.clone(),
                    cidr: a.clone(),
                });
            }
        }
        for a in &l.addresses {
            if !want.contains(a) {
                self.drift(format!("{name}: address {a} not configured"));
                self.k.addr_del(l.index, &name, a).await?;
                self.journal.push(Undo::AddrAdd {
                    dev: name.clone(),
                    cidr: a.clone(),
                });
            }
        }
        Ok(())
    }
}

impl Run<'_> {
    /// Phase 6: the default route through a bridge's `gateway` (after its addresses, which
    /// make the gateway reachable). A default route someone else added is left alone.
    async fn gateway(&mut self, d: &Desired, l: &LinkState) -> Result<(), KernelError> {
        let Some(gw) = d.gateway() else {
            return Ok(());
        };
        if self.k.default_gateways(l.index).await?.contains(&gw) {
            return Ok(());
        }
        let name = d.name().to_string();
        self.drift(format!("{name}: default route via {gw} missing"));
        self.k.route_add_default_via(l.index, gw).await?;
        self.journal.push(Undo::RouteDel { dev: name, gw });
        Ok(())
    }
}

fn order(d: &Desired) -> u8 {
    match d {
        Desired::Bond(_) => 0,
        Desired::Bridge(_) => 1,
        Desired::Vlan(_) => 2,
    }
}

/// Converges the kernel to `desired` (every managed link, or a subset). With `repairing`, the
/// differences found are reported as drift. On failure every completed step is undone.
pub async fn converge(
    k: &Kernel,
    desired: &[Desired],
    repairing: bool,
    scope: Scope,
) -> Result<Report, Failed> {
    let start = k.write_count();
    let mut names: Vec<String> = Vec::new();
    for d in desired {
        names.push(d.name().to_string());
        names.extend(d.lower_links().into_iter().map(String::from));
        if let Desired::Vlan(v) = d {
            names.push(v.parent.clone());
        }
    }
    names.sort();
    names.dedup();
    let vlans = desired
        .iter()
        .any(|d| matches!(d, Desired::Bridge(b) if b.vlan_aware));
    let own: Vec<String> = desired.iter().map(|d| d.name().to_string()).collect();
    let mut run = Run {
        k,
        scope,
        names,
        own,
        vlans,
        journal: Vec::new(),
        report: Report::default(),
        current: String::new(),
    };
    let mut sorted: Vec<&Desired> = desired.iter().collect();
    sorted.sort_by_key(|d| order(d));
    let result: Result<(), KernelError> = async {
        // VLANs may sit on bridges or bonds created just before, so re-read between kinds;
        // every later phase re-reads only when the one before it changed something.
        let t_read = std::time::Instant::now();
        let mut s = run.snapshot().await?;
        tracing::debug!(
            links = s.len(),
            read_ms = t_read.elapsed().as_secs_f64() * 1000.0,
            "converge: kernel read"
        );
        let mut last = None;
        let mut seen = k.write_count();
        // Links this converge created (or re-created) so far.
        let mut made: std::collections::HashSet<String> = std::collections::HashSet::new();
        for group in sorted.chunk_by(|a, b| order(a) == order(b)) {
            // Re-read only when this kind sits on a link the read does not show as it is now
            // (a VLAN on a bridge created or re-created just before): a full read of
            // thousands of links is the largest cost of a big batch after the writes.
            let stale = group.iter().any(|d| {
                d.lower_links()
                    .into_iter()
                    .chain(match d {
                        Desired::Vlan(v) => Some(v.parent.as_str()),
                        _ => None,
                    })
                    .any(|n| !s.contains_key(n) || made.contains(n))
            });
            if last.is_some() && k.write_count() != seen && stale {
                s = run.snapshot().await?;
                seen = k.write_count();
            }
            last = Some(order(group[0]));
            let mut fresh: Vec<&Desired> = Vec::new();
            for d in group {
                run.current = d.name().to_string();
                if run.needs_create(d, &s, repairing).await? {
                    fresh.push(d);
                }
            }
            made.extend(fresh.iter().map(|d| d.name().to_string()));
            run.create_all(&fresh, &s).await?;
        }
        if k.write_count() != seen {
            s = run.snapshot().await?;
            seen = k.write_count();
        }
        // Links by master, built once: scanning every link per bridge is quadratic.
        let children = children_of(&s);
        for d in &sorted {
            run.current = d.name().to_string();
            let l = s
                .get(d.name())
                .cloned()
                .ok_or_else(|| run.missing(d.name()))?;
            run.attributes(d, &l, &s).await?;
            run.membership(d, &s, &children).await?;
        }
        if k.write_count() != seen {
            s = run.snapshot().await?;
        }
        for d in &sorted {
            run.current = d.name().to_string();
            let l = s
                .get(d.name())
                .cloned()
                .ok_or_else(|| run.missing(d.name()))?;
            run.mtu(d, &l).await?;
            run.ports_up(d, &s).await?;
            run.vlans(d, &s).await?;
            run.addresses(d, &l).await?;
            run.gateway(d, &l).await?;
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            run.report.writes = k.write_count() - start;
            Ok(run.report)
        }
        Err(error) => {
            let object = run.current.clone();
            let undo_errors = run.undo_all().await;
            Err(Failed {
                object,
                error,
                undo_errors,
            })
        }
    }
}

/// Deletes a managed link (the kernel releases its ports and members).
pub async fn remove(k: &Kernel, name: &str) -> Result<(), KernelError> {
    match k.link(name).await? {
        Some(l) => k.delete(l.index, name).await,
        None => Ok(()),
    }
}

/// Attached links, by the index of their master.
fn children_of(s: &Snapshot) -> HashMap<u32, Vec<String>> {
    let mut m: HashMap<u32, Vec<String>> = HashMap::new();
    for l in s.values() {
        if let Some(master) = l.master {
            m.entry(master).or_default().push(l.name.clone());
        }
    }
    m
}

/// Names of links by index, for presenting masters.
pub fn names_by_index(s: &Snapshot) -> HashMap<u32, String> {
    s.values().map(|l| (l.index, l.name.clone())).collect()
}
