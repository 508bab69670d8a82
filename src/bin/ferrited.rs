//! `ferrited`: the Ferrite API daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ferrite::daemon::{Config, TlsMode};

#[derive(Parser)]
#[command(name = "ferrited", version, about = "Ferrite API daemon")]
struct Args {
    /// Data directory: store, keys, TLS certificate, storage.
    #[arg(long, env = "FERRITE_DATA_DIR", default_value = "/var/lib/ferrite")]
    data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port; see DATA_DIR/api.json).
    #[arg(long, env = "FERRITE_LISTEN", default_value = "127.0.0.1:8006")]
    listen: SocketAddr,
    /// Serve plain HTTP instead of TLS.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    no_tls: bool,
    /// PEM certificate chain (instead of the generated self-signed one).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "FERRITE_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Seconds a client may take to send request headers.
    #[arg(long, default_value_t = 10)]
    header_timeout: u64,
    /// Seconds a client may take to send a request body (uploads stream and are not bound by
    /// this).
    #[arg(long, default_value_t = 30)]
    body_timeout: u64,
    /// Manage network links in this namespace (e.g. /run/netns/NAME) instead of the daemon's
    /// own: for tests and for appliances that keep guest networking in a namespace.
    #[arg(long, env = "FERRITE_NETNS")]
    netns: Option<PathBuf>,
    /// The interface that carries the management address; network changes that touch it are
    /// rolled back unless confirmed with POST /api/v1/network/confirm. Default `auto`: every
    /// link with a default route, and the one holding the listen address; `none` turns the
    /// confirm window off.
    #[arg(long, env = "FERRITE_MANAGEMENT_INTERFACE")]
    management_interface: Option<String>,
    /// QEMU for VMs with engine qemu: a name looked up on PATH, or a path.
    #[arg(long, env = "FERRITE_QEMU", default_value = "qemu-system-x86_64")]
    qemu: PathBuf,
    /// Where UEFI VMs find OVMF (Debian's ovmf package).
    #[arg(long, env = "FERRITE_OVMF_DIR", default_value = "/usr/share/OVMF")]
    ovmf_dir: PathBuf,
    /// Print the OpenAPI document generated from schema/ and exit.
    #[arg(long)]
    print_openapi: bool,
}

/// Keeps resident memory flat: argon2 allocates ~19 MiB per password hash, and glibc's
/// adaptive mmap threshold would otherwise keep such blocks on the heap after the first one,
/// one arena per thread.
fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> std::process::ExitCode {
    tune_allocator();
    let args = Args::parse();
    if args.print_openapi {
        return match ferrite::schema::Registry::load() {
            Ok(reg) => {
                let doc = ferrite::schema::openapi_document(&reg);
                println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ferrited: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRITE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let sub = tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_format == "json" {
        sub.json().init();
    } else {
        sub.init();
    }
    let tls = if args.no_tls {
        TlsMode::Off
    } else if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        TlsMode::Files { cert, key }
    } else {
        TlsMode::SelfSigned
    };
    let cfg = Config {
        data_dir: args.data_dir,
        listen: args.listen,
        tls,
        limits: ferrite::api::server::Limits {
            header_timeout: Duration::from_secs(args.header_timeout),
            body_timeout: Duration::from_secs(args.body_timeout),
            ..Default::default()
        },
        netns: args.netns,
        management_interface: args.management_interface,
        qemu: args.qemu,
        ovmf_dir: args.ovmf_dir,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferrited: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(ferrite::daemon::run(cfg)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "ferrited failed to start");
            eprintln!("ferrited: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
