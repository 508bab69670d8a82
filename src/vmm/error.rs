//! The VMM's one error type: every failure names what it was doing.

use std::path::PathBuf;

/// How a kernel the loader refuses is reported; the daemon recognises it in the VMM's log.
pub const NOT_A_KERNEL: &str =
    "not an ELF vmlinux (with or without a PVH note) or a 64-bit bzImage";

#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error("KVM is not available: {0}")]
    KvmUnavailable(String),
    #[error("KVM ioctl {what} failed: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("cannot allocate {mib} MiB of guest memory: {detail}")]
    Memory { mib: u64, detail: String },
    #[error("guest memory access at {addr:#x} failed: {detail}")]
    GuestMemory { addr: u64, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {NOT_A_KERNEL}: {detail}", NOT_A_KERNEL = NOT_A_KERNEL)]
    NotAKernel { path: PathBuf, detail: String },
    #[error("initrd {path} ({size} bytes) does not fit below the kernel's limit")]
    InitrdTooBig { path: PathBuf, size: u64 },
    #[error("kernel command line: {0}")]
    Cmdline(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("device {device}: {detail}")]
    Device { device: String, detail: String },
    #[error("snapshot {path}: {detail}")]
    Snapshot { path: PathBuf, detail: String },
    #[error("{0}")]
    State(String),
}

impl VmmError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        VmmError::Io {
            path: path.into(),
            source,
        }
    }
    pub fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmmError {
        move |source| VmmError::Kvm { what, source }
    }
}

pub type Result<T> = std::result::Result<T, VmmError>;
