//! The filesystems a container's init finds: /proc, /sys, a cgroup2 tree of its own at
//! /sys/fs/cgroup (its cgroup namespace's root, delegated to it, so systemd can run as init),
//! a minimal /dev with the host's safe character devices, a devpts instance, /dev/shm, and
//! /dev/console: the pty whose other end the console relay holds (what LXC does too), so an
//! init that writes to or runs a getty on the console finds a terminal.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::mount::MsFlags;

use super::runtime::{fail, mnt, StartSpec};

/// Mounts everything under `root` (the container's root filesystem, not yet pivoted into).
pub(super) fn populate(spec: &StartSpec, root: &Path, tty: &OwnedFd) -> Result<(), String> {
    for d in ["proc", "sys", "dev", "tmp"] {
        let _ = std::fs::create_dir_all(root.join(d));
    }
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mnt(Some("proc"), &root.join("proc"), Some("proc"), nosuid, None)?;
    if mnt(
        Some("sysfs"),
        &root.join("sys"),
        Some("sysfs"),
        nosuid | MsFlags::MS_RDONLY,
        None,
    )
    .is_err()
    {
        // Without a network namespace of its own sysfs cannot be mounted; a read-only bind
        // of the host's is the fallback.
        mnt(
            Some("/sys"),
            &root.join("sys"),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY,
            None,
        )?;
    }
    let dev = root.join("dev");
    mnt(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for d in ["null", "zero", "full", "random", "urandom", "tty"] {
        let t = dev.join(d);
        std::fs::File::create(&t).map_err(|e| fail(&format!("creating /dev/{d}"), e))?;
        mnt(Some(&format!("/dev/{d}")), &t, None, MsFlags::MS_BIND, None)?;
    }
    if spec.fuse {
        // The host's node as it is: an unprivileged container can open it only where the
        // host makes it world-accessible (Debian's default 0666).
        if !Path::new("/dev/fuse").exists() {
            return Err("features.fuse: this host has no /dev/fuse (load the fuse module)".into());
        }
        let t = dev.join("fuse");
        std::fs::File::create(&t).map_err(|e| fail("creating /dev/fuse", e))?;
        mnt(Some("/dev/fuse"), &t, None, MsFlags::MS_BIND, None)?;
    }
    let _ = std::fs::create_dir_all(dev.join("pts"));
    mnt(
        Some("devpts"),
        &dev.join("pts"),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    let _ = std::os::unix::fs::symlink("pts/ptmx", dev.join("ptmx"));
    let _ = std::fs::create_dir_all(dev.join("shm"));
    mnt(
        Some("tmpfs"),
        &dev.join("shm"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )?;
    for (l, t) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let _ = std::os::unix::fs::symlink(t, dev.join(l));
    }
    cgroup_tree(root);
    // The console: the pty slave itself (its /dev/pts path, as this mount namespace's copy
    // of the host's devpts shows it: a bind needs a source in the caller's namespace), bound
    // over /dev/console.
    let console = dev.join("console");
    std::fs::File::create(&console).map_err(|e| fail("creating /dev/console", e))?;
    let slave = std::fs::read_link(format!("/proc/self/fd/{}", tty.as_raw_fd()))
        .map_err(|e| fail("finding the console's pty", e))?;
    mnt(
        Some(&slave.to_string_lossy()),
        &console,
        None,
        MsFlags::MS_BIND,
        None,
    )?;
    Ok(())
}

/// Mounts cgroup2 at /sys/fs/cgroup: inside the container's cgroup namespace its root is the
/// container's own cgroup, which the start delegated to the container's root user. Where the
/// host cannot (no cgroup2 at all), the init goes without: a shell or busybox does not need
/// it, and systemd says on the console what it missed.
fn cgroup_tree(root: &Path) {
    let target = root.join("sys/fs/cgroup");
    if !target.is_dir() {
        return;
    }
    if let Err(e) = mnt(
        Some("cgroup2"),
        &target,
        Some("cgroup2"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    ) {
        eprintln!("ferrite: no cgroup tree for the container ({e})");
    }
}
