//! Host facts read from the kernel: cpu, memory, kernel, KVM and cgroup mode.

use std::fs;
use std::path::Path;

use serde_json::{json, Value};

/// The node's name (its hostname).
pub fn node_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn meminfo() -> std::collections::HashMap<String, u64> {
    fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, rest) = l.split_once(':')?;
            let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
            Some((k.to_string(), kb * 1024))
        })
        .collect()
}

/// cgroup mode: `unified` (pure v2), `hybrid` (v1 controllers plus a v2 hierarchy), `legacy`.
pub fn cgroup_mode() -> (String, Option<String>) {
    const CGROUP2_MAGIC: i64 = 0x6367_7270;
    let magic = |p: &str| {
        nix::sys::statfs::statfs(p)
            .ok()
            .map(|s| s.filesystem_type().0)
    };
    if magic("/sys/fs/cgroup") == Some(CGROUP2_MAGIC) {
        return ("unified".into(), Some("/sys/fs/cgroup".into()));
    }
    if magic("/sys/fs/cgroup/unified") == Some(CGROUP2_MAGIC) {
        return ("hybrid".into(), Some("/sys/fs/cgroup/unified".into()));
    }
    ("legacy".into(), None)
}

/// KVM availability: whether /dev/kvm opens, which modules back it, and whether it is
/// hardware-backed (kvm_intel/kvm_amd) or a software-assisted nested flavour such as kvm_pvm.
pub fn kvm_facts() -> Value {
    let open = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm");
    let modules: Vec<String> = fs::read_to_string("/proc/modules")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|m| m.starts_with("kvm"))
        .map(String::from)
        .collect();
    let builtin_hw =
        Path::new("/sys/module/kvm_intel").exists() || Path::new("/sys/module/kvm_amd").exists();
    let pvm = modules.iter().any(|m| m == "kvm_pvm") || Path::new("/sys/module/kvm_pvm").exists();
    let hw = (builtin_hw || modules.iter().any(|m| m == "kvm_intel" || m == "kvm_amd")) && !pvm;
    let mut v = json!({"available": open.is_ok(), "modules": modules, "hardware_backed": open.is_ok() && hw});
    if let Err(e) = open {
        v["reason"] = json!(format!("cannot open /dev/kvm: {e}"));
    } else if pvm {
        v["reason"] = json!("KVM is provided by kvm_pvm (software-assisted nested virtualization): small guests only");
    }
    v
}

/// All facts for `GET /nodes/{node}`.
pub fn facts() -> Value {
    let uts = nix::sys::utsname::uname().ok();
    let s = |f: Option<&std::ffi::OsStr>| {
        f.map(|x| x.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or_default();
    let virt: Vec<&str> = ["vmx", "svm"]
        .into_iter()
        .filter(|f| flags.split_whitespace().any(|x| x == *f))
        .collect();
    let count = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let load: Vec<f64> = fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|x| x.parse().ok())
        .collect();
    let load = if load.len() == 3 {
        load
    } else {
        vec![0.0, 0.0, 0.0]
    };
    let mem = meminfo();
    let uptime: f64 = fs::read_to_string("/proc/uptime")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .and_then(|x| x.parse().ok())
        .unwrap_or(0.0);
    let (mode, v2) = cgroup_mode();
    let mut cgroup = json!({"mode": mode});
    if let Some(p) = v2 {
        cgroup["v2_mount"] = json!(p);
    }
    json!({
        "node": node_name(),
        "kernel": {
            "sysname": s(uts.as_ref().map(|u| u.sysname())),
            "release": s(uts.as_ref().map(|u| u.release())),
            "version": s(uts.as_ref().map(|u| u.version())),
            "machine": s(uts.as_ref().map(|u| u.machine())),
        },
        "cpu": {"count": count, "model": model, "flags_virtualization": virt, "load_average": load},
        "memory": {
            "total_bytes": mem.get("MemTotal").copied().unwrap_or(0),
            "available_bytes": mem.get("MemAvailable").copied().unwrap_or(0),
            "swap_total_bytes": mem.get("SwapTotal").copied().unwrap_or(0),
            "swap_free_bytes": mem.get("SwapFree").copied().unwrap_or(0),
        },
        "kvm": kvm_facts(),
        "cgroup": cgroup,
        "uptime_seconds": uptime,
    })
}
