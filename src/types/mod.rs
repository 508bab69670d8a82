//! Newtypes for values that cross module boundaries (API body, store row, netlink, the VMM's
//! configuration): each is parsed and displayed in exactly one place, so a MAC or a VLAN id
//! means the same thing in the handler, the engine and the kernel call.
//!
//! This module depends on nothing else in the crate: the VMM, the network engine and the
//! guest model all build on it.

mod mac;
mod vlan;

pub use mac::{Mac, MacError};
pub use vlan::{VlanId, VlanIdError};
