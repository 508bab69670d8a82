//! What every guest engine holds: the store and the engines it builds on, its directory of
//! per-guest runtime files, its claims, and the daemon's scope (so several daemons on one host
//! never share a cgroup or a socket path). Engines embed a [`Base`] instead of repeating these
//! fields and the lookups over them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::claims::{Busy, Claim, Claims};
use super::error::{Cause, GuestError};
use crate::storage::Storage;
use crate::store::{objects, Object, Store};

pub struct Base {
    /// The store kind of this engine's guests (`container`, `vm`).
    pub kind: &'static str,
    pub store: Arc<Store>,
    pub storage: Arc<Storage>,
    pub network: Arc<crate::network::Network>,
    /// The daemon's tokio runtime: NIC work is async netlink, engine methods block.
    pub rt: tokio::runtime::Handle,
    /// `DATA/<subdir>`: one directory per guest for its runtime files.
    pub dir: PathBuf,
    pub claims: Claims,
    /// `ferrite-<first 8 hex digits of SHA-256 of the data dir>`.
    pub scope: String,
}

impl Base {
    /// Must be called inside the daemon's tokio runtime.
    pub fn new(
        kind: &'static str,
        subdir: &str,
        store: Arc<Store>,
        storage: Arc<Storage>,
        network: Arc<crate::network::Network>,
        data_dir: &Path,
    ) -> Self {
        Base {
            kind,
            store,
            storage,
            network,
            rt: tokio::runtime::Handle::current(),
            dir: data_dir.join(subdir),
            claims: Claims::new(kind),
            scope: scope_of(data_dir),
        }
    }

    /// Guest `id`'s directory of runtime files.
    pub fn dir_of(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// The guest's row (404 when there is none).
    pub fn get(&self, id: &str) -> Result<Object, GuestError> {
        self.store
            .read(|c| objects::get(c, self.kind, id))?
            .ok_or_else(|| self.not_found(id))
    }

    /// Every guest row of this engine (empty when the store cannot be read: callers are
    /// start-up and monitor passes that try again).
    pub fn all(&self) -> Vec<Object> {
        self.store
            .read(|c| objects::all(c, self.kind))
            .unwrap_or_default()
    }

    /// The recorded process of guest `id`, if it still runs.
    pub fn alive(&self, id: &str) -> Option<super::process::RuntimeState> {
        super::process::alive(&self.dir_of(id))
    }

    /// A guest's row as the engine's typed model (`StoredContainer`, `StoredVm`).
    pub fn typed<T: serde::de::DeserializeOwned>(&self, o: &Object) -> Result<T, GuestError> {
        Ok(super::spec::parse(
            &format!("{} {}", self.kind, o.id),
            &o.body,
        )?)
    }

    /// One operation at a time on guest `id`.
    pub fn claim(&self, id: &str) -> Result<Claim<'_>, Busy> {
        self.claims.claim(id)
    }

    pub fn not_found(&self, what: impl Into<String>) -> GuestError {
        GuestError::not_found(self.kind, what)
    }

    /// A host-side failure while acting on one of this engine's guests.
    pub fn failed(&self, op: impl Into<String>, cause: impl Into<Cause>) -> GuestError {
        GuestError::failed(self.kind, op, cause)
    }
}

/// This daemon's scope: `ferrite-` and the first 8 hex digits of SHA-256 of the data
/// directory's path (the cgroup directory and runtime socket directory of its guests).
pub fn scope_of(data_dir: &Path) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(data_dir.display().to_string().as_bytes());
    format!("ferrite-{}", &hex::encode(h)[..8])
}
