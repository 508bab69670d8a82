//! `ferrite-vmm`: one microVM per process. Run by `ferrited` with `--config` and
//! `--api-sock`, or standalone from flags for debugging and benchmarks (serial on stdout,
//! exit when the guest powers off or resets).
//!
//! Exit status: 0 power-off (or stopped through the API), 3 guest reset, 1 error or crash.
//! With `--exit-file`, the reason is also written there as JSON for a daemon that did not
//! start this process (after a restart) and so cannot collect the status.

use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use ferrite::types::Mac;
use ferrite::vmm::config::{DiskConfig, MachineConfig, NetConfig};
use ferrite::vmm::devices::virtio::blk::CacheMode;
use ferrite::vmm::devices::VmEvent;
use ferrite::vmm::machine::{Machine, SerialSetup};
use ferrite::vmm::{control, seccomp, snapshot};

#[derive(Parser, Debug)]
#[command(
    name = "ferrite-vmm",
    about = "Ferrite's microVM monitor (one VM per process)"
)]
struct Args {
    /// Kernel: ELF vmlinux (PVH note or 64-bit entry) or a 64-bit bzImage.
    #[arg(long)]
    kernel: Option<PathBuf>,
    #[arg(long)]
    initrd: Option<PathBuf>,
    #[arg(long, default_value = "")]
    cmdline: String,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 128)]
    memory: u64,
    #[arg(long, default_value_t = 1)]
    vcpus: u8,
    /// Back guest memory with transparent hugepages.
    #[arg(long)]
    hugepages: bool,
    /// Raw disk image: PATH[,ro][,cache=writeback|writethrough]. Repeatable.
    #[arg(long)]
    disk: Vec<String>,
    /// Existing tap device: NAME[,mac=aa:bb:cc:dd:ee:ff]. Repeatable.
    #[arg(long)]
    tap: Vec<String>,
    /// Add a virtio-rng device.
    #[arg(long)]
    rng: bool,
    /// Machine configuration as JSON (what ferrited passes); replaces the machine flags.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Restore from a snapshot directory instead of booting.
    #[arg(long)]
    restore: Option<PathBuf>,
    /// Start with vCPUs paused (resume through the control socket).
    #[arg(long)]
    paused: bool,
    /// Control socket path.
    #[arg(long)]
    api_sock: Option<PathBuf>,
    /// Serial log file (bounded, see --serial-log-size).
    #[arg(long)]
    serial_log: Option<PathBuf>,
    #[arg(long, default_value_t = 1 << 20)]
    serial_log_size: u64,
    /// Do not copy serial output to stdout.
    #[arg(long)]
    no_stdout: bool,
    /// Write the exit reason here as JSON.
    #[arg(long)]
    exit_file: Option<PathBuf>,
    /// Enter this network namespace (a file such as /run/netns/NAME) before opening taps.
    #[arg(long)]
    netns: Option<PathBuf>,
    /// Skip the seccomp filter (debugging only).
    #[arg(long)]
    no_seccomp: bool,
}

fn machine_config(a: &Args) -> Result<MachineConfig, String> {
    if let Some(p) = &a.config {
        let s = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        return serde_json::from_str(&s).map_err(|e| format!("{}: {e}", p.display()));
    }
    let kernel = a
        .kernel
        .clone()
        .ok_or("--kernel is required (or --config / --restore)")?;
    let mut disks = Vec::new();
    for d in &a.disk {
        let mut parts = d.split(',');
        let path = PathBuf::from(parts.next().unwrap_or_default());
        let mut disk = DiskConfig {
            path,
            read_only: false,
            cache: CacheMode::Writeback,
        };
        for opt in parts {
            match opt {
                "ro" => disk.read_only = true,
                "cache=writeback" => disk.cache = CacheMode::Writeback,
                "cache=writethrough" => disk.cache = CacheMode::Writethrough,
                other => return Err(format!("--disk {d}: unknown option {other:?}")),
            }
        }
        disks.push(disk);
    }
    let mut nets = Vec::new();
    for (i, t) in a.tap.iter().enumerate() {
        let mut parts = t.split(',');
        let tap = parts.next().unwrap_or_default().to_string();
        let mut mac = [0x52, 0x54, 0x00, 0xfe, 0x00, i as u8];
        for opt in parts {
            match opt.strip_prefix("mac=").map(str::parse::<Mac>) {
                Some(Ok(m)) => mac = m.octets(),
                Some(Err(e)) => return Err(format!("--tap {t}: {e}")),
                None => return Err(format!("--tap {t}: bad option {opt:?}")),
            }
        }
        nets.push(NetConfig { tap, mac });
    }
    Ok(MachineConfig {
        kernel,
        initrd: a.initrd.clone(),
        cmdline: a.cmdline.clone(),
        memory_mib: a.memory,
        vcpus: a.vcpus,
        hugepages: a.hugepages,
        disks,
        nets,
        rng: a.rng,
    })
}

fn write_exit(a: &Args, reason: &str, detail: &str) {
    if let Some(p) = &a.exit_file {
        let body = serde_json::json!({"reason": reason, "detail": detail}).to_string();
        if let Err(e) = std::fs::write(p, body) {
            eprintln!("ferrite-vmm: {}: {e}", p.display());
        }
    }
}

/// Moves this (still single-threaded) process into the network namespace at `path`.
fn enter_netns(path: &std::path::Path) -> Result<(), String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("entering {}: {e}", path.display()))
}

fn run(a: &Args) -> Result<ExitCode, String> {
    if let Some(ns) = &a.netns {
        enter_netns(ns)?;
    }
    let serial = SerialSetup {
        stdout: !a.no_stdout,
        log: a.serial_log.clone().map(|p| (p, a.serial_log_size)),
    };
    let (machine, paused) = match &a.restore {
        Some(dir) => {
            let (state, mem) = snapshot::load(dir).map_err(|e| e.to_string())?;
            let m = Machine::build(state.config.clone(), serial, Some((&state, mem)))
                .map_err(|e| e.to_string())?;
            (m, a.paused)
        }
        None => {
            let config = machine_config(a)?;
            (
                Machine::build(config, serial, None).map_err(|e| e.to_string())?,
                a.paused,
            )
        }
    };
    let machine = Arc::new(machine);
    let events = machine.take_events().ok_or("event channel already taken")?;
    if paused {
        machine.hold_paused();
    }
    if let Some(sock) = &a.api_sock {
        let _ = std::fs::remove_file(sock);
        let listener = UnixListener::bind(sock).map_err(|e| format!("{}: {e}", sock.display()))?;
        control::serve(machine.clone(), listener).map_err(|e| e.to_string())?;
    }
    machine.start().map_err(|e| e.to_string())?;
    if !a.no_seccomp {
        seccomp::install().map_err(|e| e.to_string())?;
    }
    let event = events
        .recv()
        .unwrap_or(VmEvent::Crash("event channel closed".into()));
    machine.stop();
    if let Some(sock) = &a.api_sock {
        let _ = std::fs::remove_file(sock);
    }
    Ok(match event {
        VmEvent::PowerOff => {
            write_exit(a, "poweroff", "");
            ExitCode::SUCCESS
        }
        VmEvent::Reset => {
            write_exit(a, "reset", "");
            ExitCode::from(3)
        }
        VmEvent::Crash(msg) => {
            write_exit(a, "crash", &msg);
            eprintln!("ferrite-vmm: guest crashed: {msg}");
            ExitCode::from(1)
        }
    })
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FERRITE_VMM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            write_exit(&args, "error", &e);
            eprintln!("ferrite-vmm: {e}");
            ExitCode::from(1)
        }
    }
}
