//! Ferrite: an infrastructure-as-code-first virtualization appliance.
//!
//! This crate holds the daemon (`ferrited`), its engines and the CLI client (`ferrite`).
//! Every request follows one flow; see `docs/ARCHITECTURE.md`:
//! `api` (route table from `schema/`) → validation → `access` → handler → `store` → `tasks`.

pub mod access;
pub mod api;
pub mod cli;
pub mod console;
pub mod container;
pub mod daemon;
pub mod guest;
pub mod helpers;
pub mod install;
pub mod network;
pub mod node;
pub mod schema;
pub mod seed;
pub mod storage;
pub mod store;
pub mod tasks;
pub mod templates;
pub mod time;
pub mod tls;
pub mod types;
pub mod vm;
pub mod vmm;

/// The Ferrite release, as reported by `GET /api/v1/version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Prefix of every API route.
pub const API_PREFIX: &str = "/api/v1";
