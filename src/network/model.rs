//! Desired state of managed links, read from store objects (validated by `schema/network.json`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::netlink::VlanFlags;

/// A VLAN id or an inclusive range.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum VlanItem {
    One(u16),
    Range { from: u16, to: u16 },
}

fn expand(items: &[VlanItem]) -> Vec<u16> {
    let mut out = Vec::new();
    for i in items {
        match i {
            VlanItem::One(v) => out.push(*v),
            VlanItem::Range { from, to } => out.extend(*from.min(to)..=*from.max(to)),
        }
    }
    out
}

/// VLAN membership of one bridge port (or of the bridge itself).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PortSpec {
    pub pvid: Option<u16>,
    #[serde(default)]
    pub vlans: Vec<VlanItem>,
}

impl PortSpec {
    /// The exact bridge VLAN table this spec asks for.
    pub fn table(&self) -> BTreeMap<u16, VlanFlags> {
        let mut t: BTreeMap<u16, VlanFlags> = expand(&self.vlans)
            .into_iter()
            .map(|v| {
                (
                    v,
                    VlanFlags {
                        pvid: false,
                        untagged: false,
                    },
                )
            })
            .collect();
        if let Some(p) = self.pvid {
            t.insert(
                p,
                VlanFlags {
                    pvid: true,
                    untagged: true,
                },
            );
        }
        t
    }

    pub fn is_empty(&self) -> bool {
        self.pvid.is_none() && self.vlans.is_empty()
    }
}

fn yes() -> bool {
    true
}

fn miimon_default() -> u32 {
    100
}

#[derive(Debug, Clone, Deserialize)]
pub struct BridgeSpec {
    pub name: String,
    #[serde(default)]
    pub ports: BTreeMap<String, PortSpec>,
    #[serde(default)]
    pub vlan_aware: bool,
    pub pvid: Option<u16>,
    #[serde(default)]
    pub vlans: Vec<VlanItem>,
    pub mtu: Option<u32>,
    #[serde(default)]
    pub stp: bool,
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The host's default route leaves through this bridge via this address.
    pub gateway: Option<std::net::IpAddr>,
    #[serde(default = "yes")]
    pub autostart: bool,
}

impl BridgeSpec {
    /// The bridge's own (host) VLAN table.
    pub fn self_table(&self) -> BTreeMap<u16, VlanFlags> {
        PortSpec {
            pvid: self.pvid,
            vlans: self.vlans.clone(),
        }
        .table()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct VlanSpec {
    pub name: String,
    pub parent: String,
    pub vlan_id: u16,
    pub mtu: Option<u32>,
    #[serde(default)]
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BondSpec {
    pub name: String,
    pub mode: String,
    #[serde(default)]
    pub members: Vec<String>,
    #[serde(default = "miimon_default")]
    pub miimon: u32,
    pub xmit_hash_policy: Option<String>,
    pub mtu: Option<u32>,
}

/// One managed link.
#[derive(Debug, Clone)]
pub enum Desired {
    Bridge(BridgeSpec),
    Vlan(VlanSpec),
    Bond(BondSpec),
}

impl Desired {
    /// Store kind of each variant.
    pub fn from_object(kind: &str, body: &Value) -> Result<Desired, serde_json::Error> {
        Ok(match kind {
            "bridge" => Desired::Bridge(serde_json::from_value(body.clone())?),
            "vlan" => Desired::Vlan(serde_json::from_value(body.clone())?),
            _ => Desired::Bond(serde_json::from_value(body.clone())?),
        })
    }

    pub fn name(&self) -> &str {
        match self {
            Desired::Bridge(b) => &b.name,
            Desired::Vlan(v) => &v.name,
            Desired::Bond(b) => &b.name,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Desired::Bridge(_) => "bridge",
            Desired::Vlan(_) => "vlan",
            Desired::Bond(_) => "bond",
        }
    }

    pub fn mtu(&self) -> Option<u32> {
        match self {
            Desired::Bridge(b) => b.mtu,
            Desired::Vlan(v) => v.mtu,
            Desired::Bond(b) => b.mtu,
        }
    }

    /// The default gateway the host reaches through this link (bridges only).
    pub fn gateway(&self) -> Option<std::net::IpAddr> {
        match self {
            Desired::Bridge(b) => b.gateway,
            _ => None,
        }
    }

    pub fn addresses(&self) -> &[String] {
        match self {
            Desired::Bridge(b) => &b.addresses,
            Desired::Vlan(v) => &v.addresses,
            Desired::Bond(_) => &[],
        }
    }

    /// Links this one enslaves (bridge ports, bond members).
    pub fn lower_links(&self) -> Vec<&str> {
        match self {
            Desired::Bridge(b) => b.ports.keys().map(String::as_str).collect(),
            Desired::Bond(b) => b.members.iter().map(String::as_str).collect(),
            Desired::Vlan(_) => Vec::new(),
        }
    }
}

/// Normalizes an address to the kernel's spelling (`2001:DB8::1/64` → `2001:db8::1/64`).
pub fn normalize_cidr(s: &str) -> String {
    match super::netlink::parse_cidr(s) {
        Some((ip, len)) => format!("{ip}/{len}"),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_tables() {
        let p: PortSpec = serde_json::from_value(
            serde_json::json!({"pvid": 10, "vlans": [20, {"from": 30, "to": 32}, 10]}),
        )
        .expect("spec");
        let t = p.table();
        assert_eq!(t.len(), 5);
        assert_eq!(
            t[&10],
            VlanFlags {
                pvid: true,
                untagged: true
            }
        );
        assert_eq!(
            t[&31],
            VlanFlags {
                pvid: false,
                untagged: false
            }
        );
        assert_eq!(normalize_cidr("2001:DB8::1/64"), "2001:db8::1/64");
    }
}
