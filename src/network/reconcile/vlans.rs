//! The bridge VLAN phase of a converge run: each port's (and the bridge's own) VLAN table
//! brought to the desired entries, with every change journaled for the undo.

use super::*;

impl Run<'_> {
    pub(super) async fn vlan_table(
        &mut self,
        dev: &str,
        l: &LinkState,
        want: &BTreeMap<u16, VlanFlags>,
        bridge_self: bool,
    ) -> Result<(), KernelError> {
        // Plan first, then send the changes as ranges in few messages: a trunk of 1,000 VLANs
        // is one netlink request, not a thousand.
        let mut adds: Vec<(u16, VlanFlags)> = Vec::new();
        for (vid, f) in want {
            let cur = l.vlans.get(vid).copied();
            if cur != Some(*f) {
                self.drift(format!(
                    "{dev}: VLAN {vid} {}",
                    if cur.is_some() {
                        "has other flags"
                    } else {
                        "missing"
                    }
                ));
                adds.push((*vid, *f));
            }
        }
        let dels: Vec<u16> = l
            .vlans
            .keys()
            .filter(|vid| !want.contains_key(vid))
            .copied()
            .collect();
        for vid in &dels {
            self.drift(format!("{dev}: VLAN {vid} not configured"));
        }
        // 256 entries at most per call: one message each, so the journal records exactly
        // what reached the kernel if a later chunk fails.
        for adds in adds.chunks(256) {
            self.k
                .vlan_add_many(l.index, dev, adds, bridge_self)
                .await?;
            for (vid, _) in adds {
                self.journal.push(Undo::VlanRestore {
                    dev: dev.to_string(),
                    vid: *vid,
                    old: l.vlans.get(vid).copied(),
                    bridge_self,
                });
            }
        }
        for dels in dels.chunks(256) {
            self.k
                .vlan_del_many(l.index, dev, dels, bridge_self)
                .await?;
            for vid in dels {
                self.journal.push(Undo::VlanRestore {
                    dev: dev.to_string(),
                    vid: *vid,
                    old: l.vlans.get(vid).copied(),
                    bridge_self,
                });
            }
        }
        Ok(())
    }

    /// Phase 4: bridge VLAN entries on ports and on the bridge itself.
    pub(super) async fn vlans(&mut self, d: &Desired, s: &Snapshot) -> Result<(), KernelError> {
        let Desired::Bridge(b) = d else { return Ok(()) };
        if !b.vlan_aware {
            return Ok(());
        }
        for (port, spec) in &b.ports {
            let Some(l) = s.get(port) else {
                return Err(self.missing(port));
            };
            self.vlan_table(port, l, &spec.table(), false).await?;
        }
        let Some(l) = s.get(&b.name) else {
            return Err(self.missing(&b.name));
        };
        self.vlan_table(&b.name, l, &b.self_table(), true).await
    }
}
