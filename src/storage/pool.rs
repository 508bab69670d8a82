//! The narrow trait every pool backend implements. Callers (the storage facade, and through it
//! containers and VMs) never see a backend type, so NFS, ZFS or Ceph RBD can be added as new
//! modules without touching them.

use std::path::{Path, PathBuf};

use super::{Content, Format, StorageError};

/// One volume as a backend sees it: enough to find and size it.
#[derive(Debug, Clone)]
pub struct VolRef {
    pub name: String,
    pub content: Content,
    pub format: Format,
    pub size: u64,
}

/// Capacity of the backing store.
#[derive(Debug, Clone, Copy, Default)]
pub struct Capacity {
    pub total: u64,
    pub used: u64,
    pub free: u64,
}

/// Where to read a volume's data from, possibly as it was at a snapshot.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub format: Format,
    /// A qcow2 internal snapshot to read instead of the current state.
    pub qcow2_snapshot: Option<String>,
}

/// A storage backend. Methods are blocking; the facade runs them off the async runtime.
pub trait Pool: Send + Sync {
    /// Capacity read from the backing store now.
    fn capacity(&self) -> Result<Capacity, StorageError>;
    /// The format a new volume of `content` gets when the request names none.
    fn default_format(&self, content: Content) -> Format;
    /// Whether this backend can hold `content` in `format`.
    fn supports(&self, content: Content, format: Format) -> bool;
    /// Whether the backend can make linked clones of a template in `format`.
    fn can_link(&self, format: Format) -> bool;
    /// The host path of a volume (file, block device or directory).
    fn path(&self, v: &VolRef) -> PathBuf;
    /// Whether the volume exists on the backing store.
    fn exists(&self, v: &VolRef) -> bool;
    /// Bytes the backing store really uses for the volume, when it can tell.
    fn allocated(&self, v: &VolRef) -> Option<u64>;
    /// Creates an empty volume.
    fn create(&self, v: &VolRef) -> Result<(), StorageError>;
    /// Removes a volume and its snapshots; a volume that is already gone is not an error.
    fn remove(&self, v: &VolRef, snapshots: &[String]) -> Result<(), StorageError>;
    /// Grows a volume to `size` bytes.
    fn resize(&self, v: &VolRef, size: u64) -> Result<(), StorageError>;
    /// Takes a named snapshot.
    fn snapshot(&self, v: &VolRef, snap: &str) -> Result<(), StorageError>;
    /// Returns the volume to a snapshot.
    fn rollback(&self, v: &VolRef, snap: &str) -> Result<(), StorageError>;
    /// Deletes a snapshot.
    fn delete_snapshot(&self, v: &VolRef, snap: &str) -> Result<(), StorageError>;
    /// Where to read the volume (or one of its snapshots) from, for a full clone.
    fn source(&self, v: &VolRef, snap: Option<&str>) -> Result<Source, StorageError>;
    /// Makes `dst` a linked clone of the template `base` (same pool).
    fn linked_clone(&self, base: &VolRef, dst: &VolRef) -> Result<(), StorageError>;
    /// Marks a volume read-only as a template.
    fn make_template(&self, v: &VolRef) -> Result<(), StorageError>;
    /// A directory on the pool's filesystem for staging uploads (so the final step is a rename),
    /// or `None` when the pool is not a filesystem.
    fn staging_dir(&self) -> Option<PathBuf>;
    /// Moves (or copies) a finished staged file into place as volume `v`.
    fn adopt_file(&self, staged: &Path, v: &VolRef) -> Result<(), StorageError>;
    /// Removes leftovers of interrupted operations (staging files), at daemon start.
    fn cleanup_staging(&self);
}
