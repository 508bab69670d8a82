//! `ferrited` start-up and shutdown: data directory, store, keys, bootstrap, TLS, server.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::access::{bootstrap, privileges, Access};
use crate::api::{server, App};
use crate::schema::Registry;
use crate::store::{Store, StoreError};
use crate::tasks::TaskManager;

/// How the API is served.
#[derive(Debug, Clone)]
pub enum TlsMode {
    /// Plain HTTP (loopback development, benchmarks, behind a TLS proxy).
    Off,
    /// A self-signed certificate generated into the data directory.
    SelfSigned,
    /// Operator-supplied PEM files.
    Files { cert: PathBuf, key: PathBuf },
}

/// Daemon configuration (from flags).
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub tls: TlsMode,
    pub limits: server::Limits,
    /// Manage links in this network namespace (a file such as /run/netns/NAME) instead of
    /// the daemon's own.
    pub netns: Option<PathBuf>,
    /// The interface carrying the management address: changes touching it are rolled back
    /// unless confirmed. `None` or `auto`: found from the default route and the listen
    /// address; `none`: no confirm windows.
    pub management_interface: Option<String>,
    /// QEMU (a name looked up on PATH, or a path) and the OVMF directory, for VMs with
    /// engine qemu.
    pub qemu: PathBuf,
    pub ovmf_dir: PathBuf,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("key material in {0}: {1}")]
    Keys(PathBuf, std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Schema(#[from] crate::schema::SchemaError),
    #[error(transparent)]
    App(#[from] crate::api::AppError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("network: {0}")]
    Network(#[from] crate::network::KernelError),
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Access(#[from] crate::access::AccessError),
    #[error("bootstrap: {0}")]
    Bootstrap(String),
    #[error("first-start seed: {0}")]
    Seed(#[from] crate::seed::SeedError),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// Whether this data dir's daemon (for this network namespace) starts for the first time
/// since the machine booted: a marker under `/run` (a tmpfs, empty after every boot) says it
/// has run before. Where `/run` cannot be written, every start counts as a restart, so drift
/// is reported rather than hidden.
fn first_start_since_boot(data_dir: &std::path::Path, netns: Option<&std::path::Path>) -> bool {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(data_dir.as_os_str().as_encoded_bytes());
    if let Some(ns) = netns {
        h.update(b"\0");
        h.update(ns.as_os_str().as_encoded_bytes());
    }
    let key: String = h
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = std::path::Path::new("/run/ferrite");
    let marker = dir.join(format!("started-{key}"));
    if marker.exists() {
        return false;
    }
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&marker, b""))
        .is_ok()
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(cfg: Config) -> Result<(), StartError> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| StartError::Io(cfg.data_dir.clone(), e))?;
    // Made absolute once, here: the default pool, VM and container paths are kept in the store
    // and handed to other processes, so a relative `--data-dir ./data` (the quick start's)
    // must not leak into them. An absolute one is kept as given (symlinks unresolved): the
    // runtime scope of running guests is derived from it and must not change on upgrade.
    let cfg = if cfg.data_dir.is_relative() {
        Config {
            data_dir: std::path::absolute(&cfg.data_dir)
                .map_err(|e| StartError::Io(cfg.data_dir.clone(), e))?,
            ..cfg
        }
    } else {
        cfg
    };
    let _ = std::fs::set_permissions(&cfg.data_dir, std::fs::Permissions::from_mode(0o700));
    let registry = Registry::load()?;
    privileges::init(registry.privileges());
    let store = Arc::new(Store::open(&cfg.data_dir)?);
    bootstrap::builtin_roles(&store)?;
    let seed = crate::seed::load(&cfg.data_dir, &registry)?;
    bootstrap::root_user(
        &store,
        &cfg.data_dir,
        seed.as_ref().and_then(|s| s.admin_password_hash()),
    )?;
    let access = Access::open(&cfg.data_dir, &store)?;
    let tasks = TaskManager::new(Arc::clone(&store))?;
    // The API's own address lives in the daemon's namespace; it only says which link carries
    // management traffic when that is also the namespace the network engine manages.
    let listen = cfg.netns.is_none().then(|| cfg.listen.ip());
    let network = crate::network::Network::start(
        cfg.netns.as_deref(),
        crate::network::Management::parse(cfg.management_interface.as_deref(), listen),
        Arc::clone(&store),
        first_start_since_boot(&cfg.data_dir, cfg.netns.as_deref()),
    )
    .await?;
    let storage = {
        let (store, dir) = (Arc::clone(&store), cfg.data_dir.clone());
        tokio::task::spawn_blocking(move || crate::storage::Storage::open(store, &dir))
            .await
            .map_err(|e| StartError::Bootstrap(format!("storage start: {e}")))??
    };
    let storage = Arc::new(storage);
    if let Some(seed) = &seed {
        seed.apply(&store, &network, &storage).await?;
        tracing::info!("applied the first-start seed");
    }
    crate::container::become_subreaper();
    let containers = Arc::new(crate::container::Containers::new(
        Arc::clone(&store),
        Arc::clone(&storage),
        Arc::clone(&network),
        &cfg.data_dir,
    ));
    {
        let c = Arc::clone(&containers);
        tokio::task::spawn_blocking(move || c.adopt_and_boot())
            .await
            .map_err(|e| StartError::Bootstrap(format!("containers start: {e}")))?;
    }
    let vms = Arc::new(crate::vm::Vms::new(
        Arc::clone(&store),
        Arc::clone(&storage),
        Arc::clone(&network),
        &cfg.data_dir,
        crate::vm::qemu::Host::new(&cfg.qemu, cfg.ovmf_dir.clone()),
    ));
    crate::helpers::log_missing(&[containers.helper(), vms.vmm_helper(), vms.qemu_helper()]);
    // A template build the last stop interrupted left a partial archive in the cache.
    crate::templates::Templates::at(&cfg.data_dir).clean_partial();
    {
        let v = Arc::clone(&vms);
        tokio::task::spawn_blocking(move || v.adopt_and_boot())
            .await
            .map_err(|e| StartError::Bootstrap(format!("vms start: {e}")))?;
    }
    let app = App::new(
        registry,
        Arc::clone(&store),
        access,
        Arc::clone(&tasks),
        crate::api::Engines {
            network,
            storage,
            containers,
            vms,
        },
        cfg.data_dir.clone(),
    )?;

    let (tls, fingerprint) = match &cfg.tls {
        TlsMode::Off => (None, None),
        TlsMode::SelfSigned => {
            let (c, k) = crate::tls::ensure_self_signed(&cfg.data_dir)?;
            let (conf, fp) = crate::tls::server_config(&c, &k)?;
            (Some(conf), Some(fp))
        }
        TlsMode::Files { cert, key } => {
            let (conf, fp) = crate::tls::server_config(cert, key)?;
            (Some(conf), Some(fp))
        }
    };
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| StartError::Bind(cfg.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::Bind(cfg.listen, e))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let endpoint = format!("{scheme}://{addr}");
    // Tests and tooling read the bound address (port 0 picks a free one) and fingerprint here.
    let info = serde_json::json!({"endpoint": endpoint, "fingerprint": fingerprint, "pid": std::process::id()});
    match &fingerprint {
        Some(fp) => {
            tracing::info!(%endpoint, fingerprint = %fp, "listening (TLS); clients can pin this SHA-256 fingerprint")
        }
        None => tracing::info!(%endpoint, "listening (plain HTTP)"),
    }
    // Written after the log line and renamed into place, so a reader that sees `api.json`
    // sees it whole and finds the announcement already in the log.
    let info_path = cfg.data_dir.join("api.json");
    let tmp_path = cfg.data_dir.join(".api.json.tmp");
    std::fs::write(&tmp_path, info.to_string())
        .and_then(|()| std::fs::rename(&tmp_path, &info_path))
        .map_err(|e| StartError::Io(info_path, e))?;

    // Forget idempotency keys after a day, hourly.
    let purge_store = Arc::clone(&store);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            match purge_store.write(|tx| crate::store::idempotency::expire(tx, 86_400)) {
                Ok(n) if n > 0 => tracing::info!(removed = n, "expired idempotency keys"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not expire idempotency keys"),
            }
        }
    });

    let shutdown = async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot watch SIGTERM");
                    std::future::pending::<()>().await;
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        }
    };
    server::serve(app, listener, tls, cfg.limits.clone(), shutdown).await;
    tasks.shutdown(Duration::from_secs(10)).await;
    tracing::info!("stopped");
    Ok(())
}
