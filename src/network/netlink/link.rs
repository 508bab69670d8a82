//! Link writes: creating bridges, VLAN interfaces, bonds, veth pairs; options, master, state,
//! MTU, address, namespace moves and deletion. Each counts as one write.

use super::*;

impl Kernel {
    pub(super) async fn exec_link_add(
        &self,
        op: &str,
        msg: LinkMessage,
    ) -> Result<(), KernelError> {
        self.wrote();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| KernelError::from_rtnl(op, e))
    }

    pub(super) async fn exec_link_set(
        &self,
        op: &str,
        msg: LinkMessage,
    ) -> Result<(), KernelError> {
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
    pub(super) fn bridge_message(
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
}
