//! What containers and VMs share, so a third engine (QEMU) plugs in without copying:
//!
//! - [`ids`]: one id space and its allocation;
//! - [`spec`]: the typed guest model (specs, NICs, disks, mounts), parsed once from the API
//!   body or the store row and checked field by field against `schema/` by a test;
//! - [`nics`]: NIC rules (bridges, VLAN-awareness, stable MACs, host-side names);
//! - [`process`]: the runtime record of a guest's process and how a PID is told from a
//!   recycled one;
//! - [`claims`]: one operation at a time per guest;
//! - [`Engine`]: what an engine implements so the API's guest handlers serve it.

mod base;
pub mod claims;
mod engine;
mod error;
mod ids;
pub mod nics;
pub mod process;
pub mod snapshots;
pub mod spec;

pub use crate::storage::volume_ref;
pub use base::{scope_of, Base};
pub use engine::{boot_in_order, boot_slot, Engine};
pub use error::{Cause, GuestError};
pub use ids::{allocate_id, delete_row, insert_row, owner_of, GuestIdError, GUEST_KINDS, MIN_ID};
