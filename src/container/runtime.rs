//! The part of the container runtime that runs in `ferrite-ctr`, a small single-threaded helper
//! process: forking into new namespaces is only safe from a single-threaded process, never from
//! the daemon's tokio runtime. `start` double-forks so the container's init is not a child of
//! the helper or of `ferrited`: the daemon can die and restart without touching it.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Gid, Pid, Uid};
use serde::{Deserialize, Serialize};

/// What `ferrite-ctr start` needs to start a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartSpec {
    pub id: String,
    /// The container's cgroup, relative to the hierarchy roots.
    pub cgroup: String,
    /// The daemon's scope (keeps mount points of several daemons apart).
    pub scope: String,
    pub rootfs: PathBuf,
    pub hostname: String,
    pub init: Vec<String>,
    pub privileged: bool,
    /// First host id of the container's subordinate range (unprivileged only).
    pub id_base: u32,
    pub id_count: u32,
    /// Where the init's stdout and stderr go.
    pub console_log: PathBuf,
    /// A FIFO the console relay reads keyboard input from (written by the daemon's console
    /// endpoint); it outlives the daemon like the container does.
    #[serde(default)]
    pub console_input: PathBuf,
    /// Allow keyctl/add_key/request_key (systemd in containers wants them).
    pub keyctl: bool,
    /// Allow namespaces inside the container (nested containers, sandboxing services);
    /// refused by the seccomp filter otherwise.
    #[serde(default)]
    pub nesting: bool,
    /// Bind the host's `/dev/fuse` into the container (FUSE filesystems inside).
    #[serde(default)]
    pub fuse: bool,
    /// Bind mounts into the container (`mp0`..), made before it starts.
    #[serde(default)]
    pub mounts: Vec<MountSpec>,
}

/// One bind mount: a host directory (a storage volume's or a host path) at `target` inside.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MountSpec {
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: String,
    pub read_only: bool,
}

/// Makes `target` (inside `root`) as a directory, refusing any existing component that is a
/// symlink: the root filesystem belongs to the container, and a symlink it planted must never
/// redirect a mount made with the host's privileges.
fn safe_target(root: &Path, target: &str) -> Result<PathBuf, String> {
    let mut cur = root.to_path_buf();
    for c in Path::new(target).components() {
        match c {
            std::path::Component::RootDir | std::path::Component::CurDir => continue,
            std::path::Component::Normal(x) => cur.push(x),
            _ => {
                return Err(format!(
                    "mount target {target} is not a plain absolute path"
                ))
            }
        }
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!("mount target {target} {MOUNT_THROUGH_SYMLINK}"))
            }
            Ok(m) if !m.is_dir() => {
                return Err(format!("mount target {target} is not a directory"))
            }
            Ok(_) => {}
            Err(_) => {
                std::fs::create_dir(&cur).map_err(|e| fail(&format!("creating {target}"), e))?
            }
        }
    }
    Ok(cur)
}

fn bind_mounts(root: &Path, mounts: &[MountSpec]) -> Result<(), String> {
    for m in mounts {
        let t = safe_target(root, &m.target)?;
        mnt(
            Some(&m.source.to_string_lossy()),
            &t,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?;
        if m.read_only {
            mnt(
                None,
                &t,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None,
            )?;
        }
    }
    Ok(())
}

/// How a start that failed at the init's exec is reported (the daemon recognises it: the
/// container's `init` or its template is what to fix, not the host).
pub const INIT_EXEC_FAILED: &str = "cannot execute the init";
/// How a mount target the container redirected with a symlink is reported (its `mounts`
/// cannot be honoured while the root filesystem holds that symlink).
pub const MOUNT_THROUGH_SYMLINK: &str = "passes through a symlink";

pub(super) fn fail(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

fn write_all(fd: &OwnedFd, b: &[u8]) {
    let _ = nix::unistd::write(fd, b);
}

fn read_exact(fd: &OwnedFd, n: usize) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match nix::unistd::read(fd.as_raw_fd(), &mut out[got..]) {
            Ok(0) => return Err("the container process exited during setup".into()),
            Ok(k) => got += k,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(fail("reading from the container process", e)),
        }
    }
    Ok(out)
}

/// Capabilities taken out of the bounding set: a system container keeps the rest.
const DROPPED_CAPS: [i32; 9] = [16, 17, 25, 30, 32, 33, 35, 36, 37];

/// The default seccomp filter: calls that act on the host kernel as a whole answer EPERM.
fn seccomp(keyctl: bool, nesting: bool) -> Result<(), String> {
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule,
    };
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| fail("seccomp arch", e))?;
    let mut names: Vec<i64> = vec![
        nix::libc::SYS_kexec_load,
        nix::libc::SYS_kexec_file_load,
        nix::libc::SYS_init_module,
        nix::libc::SYS_finit_module,
        nix::libc::SYS_delete_module,
        nix::libc::SYS_open_by_handle_at,
        nix::libc::SYS_acct,
        nix::libc::SYS_swapon,
        nix::libc::SYS_swapoff,
        nix::libc::SYS_iopl,
        nix::libc::SYS_ioperm,
        nix::libc::SYS_lookup_dcookie,
        nix::libc::SYS_perf_event_open,
    ];
    if !keyctl {
        names.extend([
            nix::libc::SYS_keyctl,
            nix::libc::SYS_add_key,
            nix::libc::SYS_request_key,
        ]);
    }
    if !nesting {
        names.extend([nix::libc::SYS_unshare, nix::libc::SYS_setns]);
    }
    let mut rules: std::collections::BTreeMap<i64, Vec<SeccompRule>> =
        names.into_iter().map(|n| (n, vec![])).collect();
    if !nesting {
        // clone with any namespace flag; plain fork/thread clones stay allowed.
        let ns_flags = [
            nix::libc::CLONE_NEWNS,
            nix::libc::CLONE_NEWUTS,
            nix::libc::CLONE_NEWIPC,
            nix::libc::CLONE_NEWUSER,
            nix::libc::CLONE_NEWPID,
            nix::libc::CLONE_NEWNET,
            nix::libc::CLONE_NEWCGROUP,
        ];
        let mut clone_rules = Vec::new();
        for f in ns_flags {
            let f = f as u64;
            let cond =
                SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(f), f)
                    .map_err(|e| fail("seccomp clone rule", e))?;
            clone_rules
                .push(SeccompRule::new(vec![cond]).map_err(|e| fail("seccomp clone rule", e))?);
        }
        rules.insert(nix::libc::SYS_clone, clone_rules);
    }
    // Filters stack: a call must pass every one installed.
    let install = |rules: std::collections::BTreeMap<i64, Vec<SeccompRule>>, errno: i32| {
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(errno as u32),
            arch,
        )
        .map_err(|e| fail("building the seccomp filter", e))?;
        let prog: BpfProgram = filter
            .try_into()
            .map_err(|e| fail("compiling the seccomp filter", e))?;
        seccompiler::apply_filter(&prog).map_err(|e| fail("installing the seccomp filter", e))
    };
    install(rules, nix::libc::EPERM)?;
    if !nesting {
        // clone3 passes its flags in memory a filter cannot read: answer ENOSYS, so libc
        // falls back to clone, which the rules above can check.
        install(
            [(nix::libc::SYS_clone3, vec![])].into_iter().collect(),
            nix::libc::ENOSYS,
        )?;
    }
    Ok(())
}

/// Closes every descriptor above stderr, so nothing the daemon (or whatever started it)
/// inherited reaches the container: a lock file, a socket, a database.
fn close_inherited_fds() {
    // SAFETY: close_range only closes descriptors; none above 2 is used after this point
    // except through CLOEXEC-free exec, which is what we want to sanitize.
    unsafe {
        nix::libc::syscall(nix::libc::SYS_close_range, 3u32, u32::MAX, 0u32);
    }
}

fn drop_caps() -> Result<(), String> {
    for c in DROPPED_CAPS {
        // SAFETY: prctl with integer arguments only.
        let r = unsafe { nix::libc::prctl(nix::libc::PR_CAPBSET_DROP, c, 0, 0, 0) };
        if r != 0 {
            return Err(fail(
                &format!("dropping capability {c}"),
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

fn cstrings(v: &[String]) -> Result<Vec<CString>, String> {
    v.iter()
        .map(|s| CString::new(s.as_str()).map_err(|e| fail("argument", e)))
        .collect()
}

fn env() -> Vec<CString> {
    [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "container=ferrite",
        "TERM=linux",
        "HOME=/root",
    ]
    .iter()
    .filter_map(|s| CString::new(*s).ok())
    .collect()
}

pub(super) fn mnt(
    src: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), String> {
    mount(src, target, fstype, flags, data)
        .map_err(|e| fail(&format!("mounting {}", target.display()), e))
}

/// Inside the new namespaces, as the container's PID 1: filesystem, hostname, limits, exec.
fn become_init(
    spec: &StartSpec,
    root: &Path,
    tty: &OwnedFd,
) -> Result<std::convert::Infallible, String> {
    mnt(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    mnt(
        Some(&root.to_string_lossy()),
        root,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    super::rootfs::populate(spec, root, tty)?;
    let old = root.join(".ferrite-oldroot");
    let _ = std::fs::create_dir_all(&old);
    nix::unistd::pivot_root(root, &old).map_err(|e| fail("pivot_root", e))?;
    nix::unistd::chdir("/").map_err(|e| fail("chdir /", e))?;
    umount2("/.ferrite-oldroot", MntFlags::MNT_DETACH)
        .map_err(|e| fail("detaching the host root", e))?;
    let _ = std::fs::remove_dir("/.ferrite-oldroot");
    nix::unistd::sethostname(&spec.hostname).map_err(|e| fail("sethostname", e))?;
    // The console: a terminal of its own, controlling for the init's session, as on a real
    // machine's console (shells get job control, programs see a tty).
    nix::unistd::setsid().map_err(|e| fail("setsid", e))?;
    // SAFETY: TIOCSCTTY on an open terminal fd with arg 0 (do not steal).
    if unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSCTTY as _, 0) } != 0 {
        return Err(fail("TIOCSCTTY", std::io::Error::last_os_error()));
    }
    for fd in 0..3 {
        nix::unistd::dup2(tty.as_raw_fd(), fd).map_err(|e| fail("console stdio", e))?;
    }
    drop_caps()?;
    seccomp(spec.keyctl, spec.nesting)?;
    let argv = cstrings(&spec.init)?;
    // The error pipe is CLOEXEC and must stay open until exec: mark the rest to close on exec
    // instead of closing them now.
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags.
    unsafe {
        nix::libc::syscall(nix::libc::SYS_close_range, 3u32, u32::MAX, 4u32);
    }
    let prog = argv.first().ok_or("the init command is empty")?.clone();
    nix::unistd::execve(&prog, &argv, &env())
        .map_err(|e| fail(&format!("{INIT_EXEC_FAILED} {}", spec.init[0]), e))
}

/// Where a container's root filesystem is bound for its start: under /run, which every user
/// may traverse. The bind lives only in the container's own mount namespaces.
pub fn mount_point(scope: &str, id: &str) -> PathBuf {
    PathBuf::from(format!("/run/ferrite/{scope}/{id}/rootfs"))
}

/// Makes the container's console: a pseudo-terminal whose slave end becomes the init's
/// stdio, and a relay process holding the master end. The relay copies what the container
/// writes to the console log and what arrives on the input FIFO to the terminal; it runs in
/// a session of its own, so it outlives the daemon exactly as the container does, and it ends
/// when the last process holding the terminal (the container) is gone.
fn console_relay(spec: &StartSpec, log: std::fs::File) -> Result<OwnedFd, String> {
    let pty = nix::pty::openpty(None, None).map_err(|e| fail("openpty", e))?;
    if !spec.privileged {
        // The container's root owns its console (it is /dev/console inside): a getty or
        // systemd reopens it by name, which the host root's 0600 would refuse.
        let id = spec.id_base;
        nix::unistd::fchown(
            pty.slave.as_raw_fd(),
            Some(Uid::from_raw(id)),
            Some(Gid::from_raw(id)),
        )
        .map_err(|e| fail("handing the console to the container", e))?;
    }
    let input = &spec.console_input;
    let _ = std::fs::remove_file(input);
    nix::unistd::mkfifo(input, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(|e| fail("creating the console input FIFO", e))?;
    // Read-write, so the relay never sees end-of-file when a writer goes away.
    let fifo = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(input)
        .map_err(|e| fail("opening the console input FIFO", e))?;
    // SAFETY: single-threaded helper; the child only runs the relay loop and exits.
    match unsafe { fork() }.map_err(|e| fail("fork the console relay", e))? {
        ForkResult::Child => {
            drop(pty.slave);
            let _ = nix::unistd::setsid();
            // Hold nothing else: the start handshake pipes must close when the helper and
            // the init are done with them, and the daemon's pipes when it stops reading.
            let keep = [pty.master.as_raw_fd(), fifo.as_raw_fd(), log.as_raw_fd()];
            let open: Vec<i32> = std::fs::read_dir("/proc/self/fd")
                .map(|d| {
                    d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            for fd in open {
                if !keep.contains(&fd) {
                    // SAFETY: closing descriptors this process no longer uses; none is
                    // owned by a live Rust object except the three kept.
                    unsafe { libc::close(fd) };
                }
            }
            relay(pty.master, fifo, log, &spec.cgroup);
            std::process::exit(0);
        }
        ForkResult::Parent { .. } => {
            drop(pty.master);
            Ok(pty.slave)
        }
    }
}

/// The relay loop: terminal output to the log, FIFO input to the terminal, until the
/// container is gone. The master reads EIO whenever no process holds the slave end, which
/// also happens while the container lives: systemd and getty hang the console up
/// (`vhangup`) and reopen it. So EIO only ends the relay once `cgroup` holds no process;
/// until then the relay waits for the console to be reopened.
fn relay(master: OwnedFd, fifo: std::fs::File, mut log: std::fs::File, cgroup: &str) {
    let cg = super::cgroup::Cgroup::new(cgroup);
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut buf = [0u8; 4096];
    let mut fifo = fifo;
    loop {
        let mut fds = [
            PollFd::new(master.as_fd(), PollFlags::POLLIN),
            PollFd::new(fifo.as_fd(), PollFlags::POLLIN),
        ];
        if poll(&mut fds, PollTimeout::NONE).is_err() {
            continue;
        }
        let out = fds[0].revents().unwrap_or(PollFlags::empty());
        let inp = fds[1].revents().unwrap_or(PollFlags::empty());
        if !out.is_empty() {
            match nix::unistd::read(master.as_raw_fd(), &mut buf) {
                Ok(0) | Err(_) if cg.pids().is_empty() => return,
                Ok(0) | Err(_) => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Ok(n) => {
                    let _ = log.write_all(&buf[..n]);
                }
            }
        }
        if inp.contains(PollFlags::POLLIN) {
            if let Ok(n) = fifo.read(&mut buf) {
                let _ = nix::unistd::write(&master, &buf[..n]);
            }
        }
    }
}

/// Starts a container and returns its init's host PID once the init has been executed.
pub fn start(
    spec: &StartSpec,
    add_to_cgroup: &dyn Fn(i32) -> Result<(), String>,
) -> Result<i32, String> {
    let (c2p_r, c2p_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| fail("pipe", e))?;
    let (p2c_r, p2c_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| fail("pipe", e))?;
    let (err_r, err_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| fail("pipe", e))?;
    // SAFETY: this helper process is single-threaded.
    match unsafe { fork() }.map_err(|e| fail("fork", e))? {
        ForkResult::Child => {
            drop((c2p_r, p2c_w, err_r));
            let r = (|| -> Result<(), String> {
                nix::unistd::setsid().map_err(|e| fail("setsid", e))?;
                // As real root, in a mount namespace of its own: open the console log and bind
                // the root filesystem at a path every user can traverse (the data directory is
                // 0700, closed to the container's mapped root).
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&spec.console_log)
                    .map_err(|e| fail("opening the console log", e))?;
                let tty = console_relay(spec, log)?;
                unshare(CloneFlags::CLONE_NEWNS).map_err(|e| fail("new mount namespace", e))?;
                mnt(
                    None,
                    Path::new("/"),
                    None,
                    MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                    None,
                )?;
                let mp = mount_point(&spec.scope, &spec.id);
                std::fs::create_dir_all(&mp).map_err(|e| fail("creating the mount point", e))?;
                mnt(
                    Some(&spec.rootfs.to_string_lossy()),
                    &mp,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None,
                )?;
                bind_mounts(&mp, &spec.mounts)?;
                if !spec.privileged {
                    unshare(CloneFlags::CLONE_NEWUSER)
                        .map_err(|e| fail("new user namespace", e))?;
                }
                write_all(&c2p_w, b"U");
                read_exact(&p2c_r, 1)?;
                if !spec.privileged {
                    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
                        .map_err(|e| fail("setresgid", e))?;
                    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
                        .map_err(|e| fail("setresuid", e))?;
                }
                unshare(
                    CloneFlags::CLONE_NEWNS
                        | CloneFlags::CLONE_NEWUTS
                        | CloneFlags::CLONE_NEWIPC
                        | CloneFlags::CLONE_NEWNET
                        | CloneFlags::CLONE_NEWCGROUP
                        | CloneFlags::CLONE_NEWPID,
                )
                .map_err(|e| fail("new namespaces", e))?;
                // SAFETY: still single-threaded.
                match unsafe { fork() }.map_err(|e| fail("fork into the PID namespace", e))? {
                    ForkResult::Child => {
                        let e = match become_init(spec, &mp, &tty) {
                            Err(e) => e,
                            Ok(never) => match never {},
                        };
                        write_all(&err_w, e.as_bytes());
                        std::process::exit(1);
                    }
                    ForkResult::Parent { child } => {
                        write_all(&c2p_w, &child.as_raw().to_ne_bytes());
                        Ok(())
                    }
                }
            })();
            if let Err(e) = r {
                write_all(&err_w, e.as_bytes());
                std::process::exit(1);
            }
            std::process::exit(0);
        }
        ForkResult::Parent { child } => {
            drop((c2p_w, p2c_r, err_w));
            let r = (|| -> Result<i32, String> {
                read_exact(&c2p_r, 1)?;
                if !spec.privileged {
                    let map = format!("0 {} {}\n", spec.id_base, spec.id_count);
                    std::fs::write(format!("/proc/{child}/uid_map"), &map)
                        .map_err(|e| fail("writing uid_map", e))?;
                    std::fs::write(format!("/proc/{child}/gid_map"), &map)
                        .map_err(|e| fail("writing gid_map", e))?;
                }
                add_to_cgroup(child.as_raw())?;
                write_all(&p2c_w, b"G");
                let b = read_exact(&c2p_r, 4)?;
                Ok(i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            })();
            let _ = waitpid(child, None);
            // The error pipe closes without data when the init's exec succeeded.
            let mut msg = String::new();
            let mut f = std::fs::File::from(err_r);
            let _ = f.read_to_string(&mut msg);
            match (r, msg.is_empty()) {
                (Ok(pid), true) => Ok(pid),
                (Ok(pid), false) => {
                    let _ = nix::sys::signal::kill(
                        Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    Err(msg)
                }
                (Err(e), _) => Err(if msg.is_empty() { e } else { msg }),
            }
        }
    }
}

/// Runs `cmd` inside the running container whose init is `pid`, with this process's stdio,
/// and returns its exit code (128 + signal when killed).
#[allow(clippy::too_many_arguments)]
pub fn exec(
    pid: i32,
    privileged: bool,
    keyctl: bool,
    nesting: bool,
    cmd: &[String],
    add_to_cgroup: &dyn Fn(i32) -> Result<(), String>,
) -> Result<i32, String> {
    let open = |ns: &str| {
        std::fs::File::open(format!("/proc/{pid}/ns/{ns}"))
            .map_err(|e| fail(&format!("opening the container's {ns} namespace"), e))
    };
    let mut order: Vec<(&str, CloneFlags)> = Vec::new();
    if !privileged {
        order.push(("user", CloneFlags::CLONE_NEWUSER));
    }
    order.extend([
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("cgroup", CloneFlags::CLONE_NEWCGROUP),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ]);
    let files = order
        .iter()
        .map(|(n, f)| open(n).map(|file| (file, *f)))
        .collect::<Result<Vec<_>, _>>()?;
    add_to_cgroup(std::process::id() as i32)?;
    for (file, flag) in files {
        setns(file, flag).map_err(|e| fail("joining the container's namespaces", e))?;
    }
    if !privileged {
        nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .map_err(|e| fail("setresgid", e))?;
        nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .map_err(|e| fail("setresuid", e))?;
    }
    let argv = cstrings(cmd)?;
    // SAFETY: single-threaded helper.
    match unsafe { fork() }.map_err(|e| fail("fork", e))? {
        ForkResult::Child => {
            let r = (|| -> Result<std::convert::Infallible, String> {
                nix::unistd::chdir("/").map_err(|e| fail("chdir /", e))?;
                close_inherited_fds();
                drop_caps()?;
                seccomp(keyctl, nesting)?;
                let prog = argv.first().ok_or("the command is empty")?.clone();
                nix::unistd::execvpe(&prog, &argv, &env())
                    .map_err(|e| fail(&format!("executing {}", cmd[0]), e))
            })();
            let Err(e) = r;
            let _ = std::io::stderr().write_all(format!("ferrite-ctr: {e}\n").as_bytes());
            std::process::exit(127);
        }
        ForkResult::Parent { child } => loop {
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, c)) => return Ok(c),
                Ok(WaitStatus::Signaled(_, s, _)) => return Ok(128 + s as i32),
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(fail("waiting for the command", e)),
            }
        },
    }
}
