//! Container cgroups on a pure v2 hierarchy (appliances) or on a v1/v2 hybrid (this CI host:
//! memory, pids, cpu and freezer are v1 controllers). One `Cgroup` hides which.

use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";
/// v1 controllers a container is placed in.
const V1_CONTROLLERS: [&str; 5] = ["memory", "pids", "cpu", "cpuacct", "freezer"];

/// The cgroup layout of this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// cgroup2 mounted at /sys/fs/cgroup.
    V2,
    /// v1 controllers under /sys/fs/cgroup/<controller>.
    Hybrid,
}

impl Mode {
    /// Read once per process: a host does not switch cgroup layouts under a running daemon,
    /// and a list of guests would otherwise pay a stat per item.
    pub fn detect() -> Mode {
        static MODE: std::sync::OnceLock<Mode> = std::sync::OnceLock::new();
        *MODE.get_or_init(|| {
            if Path::new(ROOT).join("cgroup.controllers").exists() {
                Mode::V2
            } else {
                Mode::Hybrid
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::V2 => "v2",
            Mode::Hybrid => "hybrid (v1 controllers)",
        }
    }
}

/// Limits applied to a container's cgroup.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub memory: Option<u64>,
    pub swap: Option<u64>,
    pub pids: Option<u64>,
    /// CPU limit in cores (e.g. 1.5).
    pub cpu: Option<f64>,
    /// Relative weight, 1..10000 (v2 semantics).
    pub weight: Option<u64>,
}

/// Why a cgroup operation failed.
#[derive(Debug, thiserror::Error)]
#[error("cgroup {path}: {source}")]
pub struct CgroupError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

fn write(path: &Path, v: &str) -> Result<(), CgroupError> {
    fs::write(path, v).map_err(|source| CgroupError {
        path: path.to_path_buf(),
        source,
    })
}

/// One container's cgroup (one directory per v1 controller, or one v2 directory).
#[derive(Debug, Clone)]
pub struct Cgroup {
    pub mode: Mode,
    name: String,
}

impl Cgroup {
    /// The cgroup at `name` (a path relative to each hierarchy's root; not created yet).
    pub fn new(name: &str) -> Cgroup {
        Cgroup {
            mode: Mode::detect(),
            name: name.to_string(),
        }
    }

    /// Its path relative to the hierarchy root.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every directory of this cgroup.
    pub fn dirs(&self) -> Vec<PathBuf> {
        match self.mode {
            Mode::V2 => vec![Path::new(ROOT).join(&self.name)],
            Mode::Hybrid => V1_CONTROLLERS
                .iter()
                .map(|c| Path::new(ROOT).join(c).join(&self.name))
                .filter(|p| p.parent().and_then(Path::parent).is_some_and(Path::exists))
                .collect(),
        }
    }

    fn dir(&self, controller: &str) -> PathBuf {
        match self.mode {
            Mode::V2 => Path::new(ROOT).join(&self.name),
            Mode::Hybrid => Path::new(ROOT).join(controller).join(&self.name),
        }
    }

    /// Creates the cgroup and applies `limits`.
    pub fn create(&self, limits: &Limits) -> Result<(), CgroupError> {
        if self.mode == Mode::V2 {
            // Controllers must be enabled down the path for the leaf to get their files.
            let parent = Path::new(ROOT).join(
                Path::new(&self.name)
                    .parent()
                    .unwrap_or_else(|| Path::new("ferrite")),
            );
            fs::create_dir_all(&parent).map_err(|source| CgroupError {
                path: parent.clone(),
                source,
            })?;
            for p in [Path::new(ROOT).to_path_buf(), parent] {
                for c in ["+memory", "+pids", "+cpu"] {
                    let _ = fs::write(p.join("cgroup.subtree_control"), c);
                }
            }
        }
        for d in self.dirs().into_iter().chain(self.unified_extra()) {
            fs::create_dir_all(&d).map_err(|source| CgroupError {
                path: d.clone(),
                source,
            })?;
        }
        self.apply(limits)
    }

    /// On a hybrid host, the container's directory in the cgroup2 hierarchy mounted at
    /// /sys/fs/cgroup/unified (no controllers there): what the container sees as its cgroup
    /// tree, so that systemd runs inside in unified mode. On a v2 host the container's own
    /// directory already is that.
    fn unified_extra(&self) -> Option<PathBuf> {
        let unified = Path::new(ROOT).join("unified");
        (self.mode == Mode::Hybrid && unified.join("cgroup.procs").exists())
            .then(|| unified.join(&self.name))
    }

    /// The container's cgroup2 directory (its cgroup namespace's root).
    fn v2_dir(&self) -> Option<PathBuf> {
        match self.mode {
            Mode::V2 => Some(self.dir("")),
            Mode::Hybrid => self.unified_extra(),
        }
    }

    /// Hands the container's cgroup2 directory to the container's root user (`uid`, a host
    /// id), as systemd's delegation contract asks: the directory and the files that move
    /// processes and enable controllers. Limits stay out of its reach (they are the parent's
    /// files on v2, and the v1 controllers on a hybrid host).
    pub fn delegate(&self, uid: u32) -> Result<(), CgroupError> {
        let Some(d) = self.v2_dir() else {
            return Ok(());
        };
        let owner = Some(nix::unistd::Uid::from_raw(uid));
        let group = Some(nix::unistd::Gid::from_raw(uid));
        for p in [
            d.clone(),
            d.join("cgroup.procs"),
            d.join("cgroup.threads"),
            d.join("cgroup.subtree_control"),
        ] {
            if p.exists() {
                nix::unistd::chown(&p, owner, group).map_err(|e| CgroupError {
                    path: p.clone(),
                    source: e.into(),
                })?;
            }
        }
        Ok(())
    }

    /// Writes limits (also used for live updates).
    pub fn apply(&self, l: &Limits) -> Result<(), CgroupError> {
        match self.mode {
            Mode::V2 => {
                let d = self.dir("");
                if let Some(m) = l.memory {
                    write(&d.join("memory.max"), &m.to_string())?;
                }
                if let Some(s) = l.swap {
                    if d.join("memory.swap.max").exists() {
                        write(&d.join("memory.swap.max"), &s.to_string())?;
                    }
                }
                if let Some(p) = l.pids {
                    write(&d.join("pids.max"), &p.to_string())?;
                }
                if let Some(c) = l.cpu {
                    write(
                        &d.join("cpu.max"),
                        &format!("{} 100000", (c * 100_000.0) as u64),
                    )?;
                }
                if let Some(w) = l.weight {
                    write(&d.join("cpu.weight"), &w.to_string())?;
                }
            }
            Mode::Hybrid => {
                if let Some(m) = l.memory {
                    let d = self.dir("memory");
                    write(&d.join("memory.limit_in_bytes"), &m.to_string())?;
                    if let Some(s) = l.swap {
                        let f = d.join("memory.memsw.limit_in_bytes");
                        if f.exists() {
                            write(&f, &(m + s).to_string())?;
                        }
                    }
                }
                if let Some(p) = l.pids {
                    write(&self.dir("pids").join("pids.max"), &p.to_string())?;
                }
                if let Some(c) = l.cpu {
                    let d = self.dir("cpu");
                    write(&d.join("cpu.cfs_period_us"), "100000")?;
                    write(
                        &d.join("cpu.cfs_quota_us"),
                        &((c * 100_000.0) as u64).to_string(),
                    )?;
                }
                if let Some(w) = l.weight {
                    // v2 weight 100 = v1 shares 1024.
                    write(
                        &self.dir("cpu").join("cpu.shares"),
                        &(w * 1024 / 100).max(2).to_string(),
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Moves a process into the cgroup.
    pub fn add(&self, pid: i32) -> Result<(), CgroupError> {
        for d in self.dirs() {
            self.add_to(&d, pid)?;
        }
        if let Some(d) = self.unified_extra() {
            self.add_to(&d, pid)?;
        }
        Ok(())
    }

    /// Writes `pid` into `d`; where `d` is a cgroup2 directory an init (systemd) has turned
    /// into an inner node (controllers enabled for its children, so it takes no processes:
    /// EBUSY), into the cgroup of the container's init instead, as `lxc-attach` does.
    fn add_to(&self, d: &Path, pid: i32) -> Result<(), CgroupError> {
        match write(&d.join("cgroup.procs"), &pid.to_string()) {
            Err(e) if e.source.raw_os_error() == Some(nix::libc::EBUSY) => {
                match self.init_leaf(d) {
                    Some(leaf) => write(&leaf.join("cgroup.procs"), &pid.to_string()),
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    /// The deepest cgroup under `d` holding a process (where the container's init put
    /// itself: systemd's `init.scope`).
    fn init_leaf(&self, d: &Path) -> Option<PathBuf> {
        let has_procs = |p: &Path| {
            fs::read_to_string(p.join("cgroup.procs")).is_ok_and(|s| !s.trim().is_empty())
        };
        let init = d.join("init.scope");
        if has_procs(&init) {
            return Some(init);
        }
        subtree(d).into_iter().rev().find(|p| has_procs(p))
    }

    /// Freezes or thaws every process in the cgroup and waits until the kernel says it is
    /// done. Freezing is asynchronous on both hierarchies: v1 reports `FREEZING` until every
    /// task has stopped (and wants `FROZEN` written again to retry), v2 flips `frozen` in
    /// `cgroup.events` only once the whole subtree has settled. Returning before that would
    /// let a snapshot copy a filesystem that is still being written.
    pub fn freeze(&self, frozen: bool) -> Result<(), CgroupError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match self.mode {
                Mode::V2 => write(
                    &self.dir("").join("cgroup.freeze"),
                    if frozen { "1" } else { "0" },
                )?,
                Mode::Hybrid => write(
                    &self.dir("freezer").join("freezer.state"),
                    if frozen { "FROZEN" } else { "THAWED" },
                )?,
            }
            if self.settled(frozen) {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                if frozen {
                    // Leave nothing half-frozen behind a failed request.
                    let _ = self.freeze(false);
                }
                return Err(CgroupError {
                    path: self.dir(if self.mode == Mode::V2 { "" } else { "freezer" }),
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the kernel did not finish freezing within 10 s",
                    ),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Whether the kernel reports the freeze (or thaw) as complete.
    fn settled(&self, frozen: bool) -> bool {
        match self.mode {
            Mode::V2 => fs::read_to_string(self.dir("").join("cgroup.events")).is_ok_and(|s| {
                s.lines()
                    .any(|l| l == if frozen { "frozen 1" } else { "frozen 0" })
            }),
            Mode::Hybrid => fs::read_to_string(self.dir("freezer").join("freezer.state"))
                .is_ok_and(|s| s.trim() == if frozen { "FROZEN" } else { "THAWED" }),
        }
    }

    /// Whether the cgroup is frozen (or being frozen: a container on its way to frozen
    /// must not accept exec either).
    pub fn frozen(&self) -> bool {
        match self.mode {
            Mode::V2 => fs::read_to_string(self.dir("").join("cgroup.freeze"))
                .is_ok_and(|s| s.trim() == "1"),
            Mode::Hybrid => fs::read_to_string(self.dir("freezer").join("freezer.state"))
                .is_ok_and(|s| matches!(s.trim(), "FROZEN" | "FREEZING")),
        }
    }

    /// Processes in the cgroup, with those in cgroups an init made below it.
    pub fn pids(&self) -> Vec<i32> {
        let d = match self.mode {
            Mode::V2 => self.dir(""),
            Mode::Hybrid => self.dir("pids"),
        };
        std::iter::once(d.clone())
            .chain(subtree(&d))
            .flat_map(|c| {
                fs::read_to_string(c.join("cgroup.procs"))
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect()
    }

    /// Memory in use, and the OOM kills seen, read from the cgroup.
    pub fn usage(&self) -> serde_json::Value {
        let read = |p: PathBuf| fs::read_to_string(p).ok().map(|s| s.trim().to_string());
        let num = |s: Option<String>| s.and_then(|v| v.parse::<u64>().ok());
        match self.mode {
            Mode::V2 => {
                let d = self.dir("");
                let cpu = read(d.join("cpu.stat")).and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("usage_usec ").map(String::from))
                });
                let oom = read(d.join("memory.events")).and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("oom_kill ").map(String::from))
                });
                serde_json::json!({
                    "memory_bytes": num(read(d.join("memory.current"))),
                    "pids": num(read(d.join("pids.current"))),
                    "cpu_usec": num(cpu),
                    "oom_kills": num(oom),
                })
            }
            Mode::Hybrid => {
                let oom = read(self.dir("memory").join("memory.oom_control")).and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("oom_kill ").map(String::from))
                });
                serde_json::json!({
                    "memory_bytes": num(read(self.dir("memory").join("memory.usage_in_bytes"))),
                    "pids": num(read(self.dir("pids").join("pids.current"))),
                    "cpu_usec": num(read(self.dir("cpuacct").join("cpuacct.usage"))).map(|n| n / 1000),
                    "oom_kills": num(oom),
                })
            }
        }
    }

    /// Removes the cgroup (every process must have exited).
    pub fn remove(&self) -> Result<(), CgroupError> {
        if self.frozen() {
            let _ = self.freeze(false);
        }
        for d in self.dirs().into_iter().chain(self.unified_extra()) {
            // Cgroups the container's init made inside go first, deepest first.
            for sub in subtree(&d).into_iter().rev() {
                let _ = fs::remove_dir(&sub);
            }
            if d.exists() {
                let mut tries = 0;
                loop {
                    match fs::remove_dir(&d) {
                        Ok(()) => break,
                        Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) && tries < 100 => {
                            tries += 1;
                            std::thread::sleep(std::time::Duration::from_millis(20));
                        }
                        Err(source) => return Err(CgroupError { path: d, source }),
                    }
                }
            }
            // The daemon's scope directory goes too once its last container has (an rmdir of
            // a non-empty cgroup simply fails).
            if let Some(parent) = d.parent() {
                let _ = fs::remove_dir(parent);
            }
        }
        Ok(())
    }

    /// Whether any of the cgroup's directories exist.
    ///
    /// (Only the controller directories count: the unified one on a hybrid host is made and
    /// removed with them.)
    pub fn exists(&self) -> bool {
        self.dirs().iter().any(|d| d.exists())
    }
}

/// Every cgroup below `d`, parents before children.
fn subtree(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut queue = vec![d.to_path_buf()];
    while let Some(c) = queue.pop() {
        for e in fs::read_dir(&c).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(e.path());
                queue.push(e.path());
            }
        }
    }
    // Parents were pushed before their children, but a later sibling's children may come
    // before an earlier sibling: sort by depth so reversing gives deepest first.
    out.sort_by_key(|p| p.components().count());
    out
}
