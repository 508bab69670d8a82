//! The HTTP API: server, route dispatch, the request pipeline and the handlers.
//!
//! Pipeline for every request (see `server.rs`): request id → route match → authentication →
//! privilege check on the route's ACL path → query and body validation against `schema/` →
//! Idempotency-Key replay → handler → audit log. Handlers receive a validated [`Req`] and never
//! see raw HTTP.

mod checks;
pub mod handlers;
mod idempotency;
mod linger;
mod problem;
mod request;
mod response;
mod router;
pub mod server;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

pub use problem::ApiError;
pub use request::Req;
pub use response::{Body, Resp};

use crate::access::Access;
use crate::schema::Registry;
use crate::store::Store;
use crate::tasks::TaskManager;

/// Serializes requests that carry the same (caller, Idempotency-Key).
type KeyLock = Arc<tokio::sync::Mutex<()>>;

/// Everything a handler may use.
pub struct App {
    pub registry: Registry,
    pub store: Arc<Store>,
    pub access: Access,
    pub tasks: Arc<TaskManager>,
    pub network: Arc<crate::network::Network>,
    pub storage: Arc<crate::storage::Storage>,
    pub containers: Arc<crate::container::Containers>,
    pub vms: Arc<crate::vm::Vms>,
    pub data_dir: PathBuf,
    pub node: String,
    /// The OpenAPI document, serialized once.
    pub openapi: Bytes,
    router: router::Router,
    handlers: Vec<handlers::Handler>,
    idempotency_locks: Mutex<HashMap<(String, String), KeyLock>>,
}

/// Building the app failed: the route table and the handlers disagree.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("route {0} has no handler")]
    MissingHandler(String),
    #[error("handler {0} has no route in schema/routes.json")]
    UnroutedHandler(String),
}

/// The engines handlers reach through the app.
pub struct Engines {
    pub network: Arc<crate::network::Network>,
    pub storage: Arc<crate::storage::Storage>,
    pub containers: Arc<crate::container::Containers>,
    pub vms: Arc<crate::vm::Vms>,
}

impl App {
    /// Wires the app together, checking that every route has exactly one handler.
    pub fn new(
        registry: Registry,
        store: Arc<Store>,
        access: Access,
        tasks: Arc<TaskManager>,
        engines: Engines,
        data_dir: PathBuf,
    ) -> Result<Arc<Self>, AppError> {
        let Engines {
            network,
            storage,
            containers,
            vms,
        } = engines;
        let table: HashMap<&str, handlers::Handler> = handlers::table().into_iter().collect();
        let mut ordered = Vec::new();
        for r in registry.routes() {
            match table.get(r.operation_id.as_str()) {
                Some(h) => ordered.push(*h),
                None => return Err(AppError::MissingHandler(r.operation_id.clone())),
            }
        }
        for name in table.keys() {
            if !registry.routes().iter().any(|r| r.operation_id == *name) {
                return Err(AppError::UnroutedHandler(name.to_string()));
            }
        }
        let openapi = Bytes::from(crate::schema::openapi_document(&registry).to_string());
        Ok(Arc::new(App {
            router: router::Router::new(registry.routes()),
            registry,
            store,
            access,
            tasks,
            network,
            storage,
            containers,
            vms,
            data_dir,
            node: crate::node::node_name(),
            openapi,
            handlers: ordered,
            idempotency_locks: Mutex::new(HashMap::new()),
        }))
    }

    fn idempotency_lock(&self, user: &str, key: &str) -> KeyLock {
        let mut m = self
            .idempotency_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if m.len() > 10_000 {
            m.retain(|_, l| Arc::strong_count(l) > 1);
        }
        Arc::clone(m.entry((user.to_string(), key.to_string())).or_default())
    }
}
