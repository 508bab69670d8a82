//! Bridge VLAN entries on ports and on the bridge itself, sent as ranges (one message for a
//! trunk of thousands of VLANs).

use super::*;

impl Kernel {
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
}

/// Our VLAN flags as the kernel's.
pub(super) fn bridge_flags(flags: VlanFlags) -> BridgeVlanInfoFlags {
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
pub(super) fn vlan_message(
    index: u32,
    runs: &[(u16, u16, VlanFlags)],
    bridge_self: bool,
) -> LinkMessage {
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
