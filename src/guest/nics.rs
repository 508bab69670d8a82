//! Rules for a guest's NICs, in one place for every engine: the bridge must be a managed
//! one, VLAN-aware when the NIC carries VLANs; a NIC without a MAC gets one that is stable for
//! the guest's life; the host end of `netN` on guest `ID` is named `vIDiN`.
//!
//! Handlers run [`check`] before a create or an update is stored, and engines run it again
//! before a start (a bridge may have changed since), so both answer with the same 422.

use sha2::{Digest, Sha256};

use super::spec::GuestNic;
use crate::network::attach::NicSpec;
use crate::network::ratelimit::RateLimit;
use crate::store::{Store, StoreError};
use crate::types::Mac;

/// Store kind of bridges (owned by `network`).
const BRIDGE_KIND: &str = "bridge";

/// Why a NIC cannot be attached as configured.
#[derive(Debug, thiserror::Error)]
pub enum NicError {
    #[error("bridge {bridge} does not exist (create it under /network/bridges)")]
    NoBridge { slot: String, bridge: String },
    #[error("bridge {bridge} is not VLAN-aware; a tag or trunks need vlan_aware")]
    NotVlanAware { slot: String, bridge: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl NicError {
    /// The JSON pointer of the field to fix (`/net/net0/bridge`).
    pub fn pointer(&self) -> Option<String> {
        match self {
            NicError::NoBridge { slot, .. } => Some(format!("/net/{slot}/bridge")),
            NicError::NotVlanAware { slot, .. } => Some(format!("/net/{slot}/tag")),
            NicError::Store(_) => None,
        }
    }
}

/// Checks every NIC's bridge against the store (cached reads: this runs on every create,
/// update and start).
pub fn check<'a>(
    store: &Store,
    nics: impl IntoIterator<Item = (&'a String, &'a GuestNic)>,
) -> Result<(), NicError> {
    for (slot, nic) in nics {
        let Some(bridge) = store.get_cached(BRIDGE_KIND, &nic.bridge)? else {
            return Err(NicError::NoBridge {
                slot: slot.clone(),
                bridge: nic.bridge.clone(),
            });
        };
        if nic.uses_vlans() && bridge.body["vlan_aware"] != serde_json::json!(true) {
            return Err(NicError::NotVlanAware {
                slot: slot.clone(),
                bridge: nic.bridge.clone(),
            });
        }
    }
    Ok(())
}

/// A stable, locally administered unicast MAC for a guest's NIC slot, so a guest keeps its
/// address (and DHCP lease) for its whole life without storing one.
pub fn stable_mac(guest_id: &str, slot: &str) -> Mac {
    Mac::local_from(&Sha256::digest(
        format!("ferrite-mac\0{guest_id}\0{slot}").as_bytes(),
    ))
}

/// The NIC's MAC: the configured one, else the stable generated one.
pub fn mac_of(guest_id: &str, slot: &str, nic: &GuestNic) -> Mac {
    nic.mac.unwrap_or_else(|| stable_mac(guest_id, slot))
}

/// The host-side name of NIC slot `netN` of guest `id` (the naming rule lives with the
/// network engine, which recognises such links as guest ports).
pub fn host_if(id: &str, slot: &str) -> String {
    crate::network::attach::guest_host_if(id, super::spec::slot_number(slot, "net"))
}

/// What the network engine needs to attach the NIC's host end.
pub fn attachment(guest_id: &str, slot: &str, nic: &GuestNic) -> NicSpec {
    NicSpec {
        bridge: nic.bridge.clone(),
        tag: nic.tag.map(|t| t.get()),
        trunks: nic.trunks.iter().map(|t| t.get()).collect(),
        mac: mac_of(guest_id, slot, nic),
        mtu: nic.mtu,
        rate: nic
            .rate
            .as_ref()
            .and_then(|r| RateLimit::from_mbps(r.rx_mbps, r.tx_mbps, r.burst_kib.map(u64::from))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_macs_are_local_unicast_and_stable() {
        let a = stable_mac("101", "net0");
        assert_eq!(a, stable_mac("101", "net0"));
        assert_ne!(a, stable_mac("101", "net1"));
        assert!(a.is_unicast());
        assert_eq!(a.octets()[0] & 0x02, 0x02, "locally administered");
        // The address guests created before the typed model got must not change.
        assert_eq!(stable_mac("101", "net0").to_string(), legacy("101", "net0"));
    }

    /// How the MAC was derived before `Mac` existed.
    fn legacy(id: &str, slot: &str) -> String {
        let h = Sha256::digest(format!("ferrite-mac\0{id}\0{slot}").as_bytes());
        let mut b = [h[0], h[1], h[2], h[3], h[4], h[5]];
        b[0] = (b[0] & 0xfe) | 0x02;
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    #[test]
    fn host_names_fit_ifnamsiz() {
        assert_eq!(host_if("101", "net3"), "v101i3");
        assert!(host_if("999999999", "net99").len() <= 15);
    }
}
