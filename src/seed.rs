//! The first-start seed (`BootstrapSeed`, `DATA_DIR/bootstrap/seed.json`): what the installer
//! knows that the daemon must apply before it serves anything: the administrator's password
//! hash, the management bridge with its port, address and gateway, and storage pools. It goes
//! through the same schema and domain functions as API requests, before the listener opens,
//! so there is no window where the API answers and the network is not there yet. Once
//! applied it is renamed `seed.applied.json`; a seed that fails stops the daemon with the
//! reason, and a second start skips whatever the first one already created.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use crate::network::Network;
use crate::schema::Registry;
use crate::storage::Storage;
use crate::store::{objects, Store};

/// A validated seed and where it was read from.
#[derive(Debug, Clone)]
pub struct Seed {
    path: PathBuf,
    body: Value,
}

/// Why the seed could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("{0}: {1}")]
    Read(PathBuf, String),
    #[error("{path} is invalid: {problems}")]
    Invalid { path: PathBuf, problems: String },
    #[error("{path}: {what}: {cause}")]
    Apply {
        path: PathBuf,
        what: &'static str,
        cause: String,
    },
}

fn seed_path(data_dir: &Path) -> PathBuf {
    data_dir.join("bootstrap/seed.json")
}

/// Reads and validates the seed, if there is one waiting.
pub fn load(data_dir: &Path, reg: &Registry) -> Result<Option<Seed>, SeedError> {
    let path = seed_path(data_dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SeedError::Read(path, e.to_string())),
    };
    let body: Value =
        serde_json::from_slice(&bytes).map_err(|e| SeedError::Read(path.clone(), e.to_string()))?;
    let problems = reg.validate("BootstrapSeed", &body, "seed");
    if !problems.is_empty() {
        return Err(SeedError::Invalid {
            path,
            problems: problems
                .iter()
                .map(|p| p.summary())
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    Ok(Some(Seed { path, body }))
}

impl Seed {
    /// The administrator's argon2id hash, used when `root@local` is created.
    pub fn admin_password_hash(&self) -> Option<&str> {
        self.body["admin_password_hash"].as_str()
    }

    /// Creates the seed's pools and network objects (those not already in the store), then
    /// renames the file so later starts leave it alone.
    pub async fn apply(
        &self,
        store: &Arc<Store>,
        network: &Network,
        storage: &Arc<Storage>,
    ) -> Result<(), SeedError> {
        let fail = |what: &'static str, cause: String| SeedError::Apply {
            path: self.path.clone(),
            what,
            cause,
        };
        for pool in self.body["pools"].as_array().cloned().unwrap_or_default() {
            let name = pool["name"].as_str().unwrap_or_default().to_string();
            if storage.pool(&name).is_ok() {
                continue;
            }
            let st = Arc::clone(storage);
            tokio::task::spawn_blocking(move || st.create_pool(pool))
                .await
                .map_err(|e| fail("pools", e.to_string()))?
                .map_err(|e| fail("pools", format!("pool {name}: {e}")))?;
            tracing::info!(pool = %name, "seed: created storage pool");
        }
        if let Some(batch) = self
            .missing_network(store)
            .map_err(|e| fail("network", e))?
        {
            crate::network::changes::batch(network, store, &batch)
                .await
                .map_err(|e| fail("network", e.to_string()))?;
            tracing::info!("seed: created the management network");
        }
        let done = self.path.with_file_name("seed.applied.json");
        std::fs::rename(&self.path, &done)
            .map_err(|e| fail("rename", format!("{}: {e}", done.display())))?;
        Ok(())
    }

    /// The seed's network batch without the objects a previous start already made.
    fn missing_network(&self, store: &Store) -> Result<Option<Value>, String> {
        let mut batch = self.body["network"].clone();
        let Some(obj) = batch.as_object_mut() else {
            return Ok(None);
        };
        for (key, kind) in [("bonds", "bond"), ("bridges", "bridge"), ("vlans", "vlan")] {
            if let Some(items) = obj.get_mut(key).and_then(Value::as_array_mut) {
                let mut keep = Vec::new();
                for it in items.drain(..) {
                    let name = it["name"].as_str().unwrap_or_default().to_string();
                    let exists = store
                        .read(|c| objects::get(c, kind, &name))
                        .map_err(|e| e.to_string())?
                        .is_some();
                    if !exists {
                        keep.push(it);
                    }
                }
                *items = keep;
            }
        }
        obj.retain(|_, v| v.as_array().is_some_and(|a| !a.is_empty()));
        Ok((!obj.is_empty()).then_some(batch))
    }
}
