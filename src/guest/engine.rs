//! The contract every guest engine (containers, VMs, and the QEMU engine to come) fulfils, so
//! the API's guest handlers are written once (`api/handlers/guests.rs`) and a new engine gets
//! create, update, delete, power actions, snapshots, templates and its console by implementing
//! this trait.
//!
//! Methods block (they fork helpers, wait for guests, talk netlink): callers run them on a
//! blocking thread. Each returns the engine's own typed error, which `api/problem.rs` maps
//! to a status.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::store::Object;

pub trait Engine: Send + Sync + 'static {
    type Error: std::error::Error + Send + 'static;

    /// The store kind of this engine's guests (`container`, `vm`).
    fn kind(&self) -> &'static str;
    /// The API collection (`containers`, `vms`), for `Location` headers.
    fn collection(&self) -> &'static str;

    /// The guest's row (not found is an error).
    fn get(&self, id: &str) -> Result<Object, Self::Error>;
    /// Observed state (`state`, and what the engine measures), rendered as `status`.
    fn status(&self, id: &str) -> Value;
    /// Whether the guest's process runs.
    fn running(&self, id: &str) -> bool;

    /// Creates guest `id` (already allocated) from a validated create body.
    fn create(&self, id: u32, body: &Value) -> Result<Object, Self::Error>;
    /// Applies a validated update body (`null` clears a field), `if_match` a revision.
    fn update(&self, id: &str, patch: &Value, if_match: Option<i64>)
        -> Result<Object, Self::Error>;
    /// Deletes the guest; refused while it runs unless `force`.
    fn delete(&self, id: &str, force: bool) -> Result<(), Self::Error>;

    fn start(&self, id: &str) -> Result<(), Self::Error>;
    /// Kills the guest at once.
    fn stop(&self, id: &str) -> Result<(), Self::Error>;
    /// Asks the guest to power off, waits up to `timeout`, then stops it.
    fn shutdown(&self, id: &str, timeout: Duration) -> Result<(), Self::Error>;
    /// Shuts down (as [`Engine::shutdown`]) and starts again.
    fn reboot(&self, id: &str, timeout: Duration) -> Result<(), Self::Error>;
    /// Suspends (`true`) or resumes a running guest: a container's cgroup freezer, a VM's
    /// vCPUs.
    fn suspend(&self, id: &str, suspended: bool) -> Result<(), Self::Error>;

    /// Takes snapshot `name` of every volume the guest writes, with its configuration.
    fn snapshot(&self, id: &str, name: &str, description: Option<&str>) -> Result<(), Self::Error>;
    /// Returns the guest to snapshot `name`.
    fn revert(&self, id: &str, name: &str) -> Result<(), Self::Error>;
    fn delete_snapshot(&self, id: &str, name: &str) -> Result<(), Self::Error>;
    /// Turns the guest into a template (it no longer starts; clones are made from it).
    fn make_template(&self, id: &str) -> Result<(), Self::Error>;

    /// The console output a running guest's process writes (refused when it is not running).
    fn console_log(&self, id: &str) -> Result<PathBuf, Self::Error>;
    /// Types into the running guest's console.
    fn console_input(&self, id: &str, data: &[u8]) -> Result<(), Self::Error>;
}

/// Where an `onboot` guest goes in the boot order: by `startup_order` (absent last), then id.
pub fn boot_slot(o: &Object) -> Option<(i64, String)> {
    use serde::Deserialize as _;
    #[derive(serde::Deserialize)]
    struct Boot {
        #[serde(default)]
        onboot: Option<bool>,
        startup_order: Option<i64>,
    }
    let b = Boot::deserialize(&o.body).ok()?;
    b.onboot
        .unwrap_or(false)
        .then(|| (b.startup_order.unwrap_or(i64::MAX), o.id.clone()))
}

/// Starts the guests of `slots` (from [`boot_slot`]) in order, as a host does at boot; a
/// guest that fails to start is logged and the next one starts anyway.
pub fn boot_in_order<E: Engine>(e: &E, mut slots: Vec<(i64, String)>) {
    slots.sort();
    for (_, id) in slots {
        match e.start(&id) {
            Ok(()) => tracing::info!(kind = e.kind(), id = %id, "started on boot"),
            Err(err) => {
                tracing::error!(kind = e.kind(), id = %id, error = %err, "onboot start failed")
            }
        }
    }
}
