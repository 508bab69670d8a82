//! Writes an incoming file (an upload, or an import from a host path) to disk while hashing
//! it, as fast as two cores allow.
//!
//! Why not a `BufWriter` and one loop: the loop hashes, then writes, each chunk in turn, and a
//! `BufWriter` copies every byte once more into its own buffer. Here the chunks are written as
//! they come (the network layer's buffers, no copy), SHA-256 runs on a second thread over the
//! same reference-counted buffers, and writeback to the disk is started every
//! [`WRITEBACK_STEP`] bytes so that the `fsync` that makes the file durable has little left
//! to do at the end.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{io, StorageError};

/// Bytes written between two calls that start writeback of what was just written.
const WRITEBACK_STEP: u64 = 32 << 20;
/// Chunks in flight to the hashing thread; bounds memory (and the writer waits for it).
const HASH_QUEUE: usize = 64;

/// Writes `chunks` to a new file at `path`, syncs it, and returns the hex SHA-256 of what was
/// written. The first error among the chunks (a failed read, a cancel) stops it and is
/// returned. Errors name the step that failed (and keep the OS error, so a full disk can be
/// told apart).
pub fn write_hashed(
    path: &Path,
    chunks: impl Iterator<Item = Result<Bytes, StorageError>>,
) -> Result<String, StorageError> {
    let mut f = File::create(path).map_err(io(format!("creating {}", path.display())))?;
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Bytes>(HASH_QUEUE);
        let hasher = s.spawn(move || {
            let mut h = Sha256::new();
            for c in rx {
                h.update(&c);
            }
            hex::encode(h.finalize())
        });
        let written = write_all(&mut f, path, chunks, &tx);
        drop(tx);
        let digest = hasher
            .join()
            .map_err(|_| StorageError::Tool("the hashing thread panicked".into()))?;
        written?;
        f.sync_all()
            .map_err(io(format!("syncing {}", path.display())))?;
        Ok(digest)
    })
}

fn write_all(
    f: &mut File,
    path: &Path,
    chunks: impl Iterator<Item = Result<Bytes, StorageError>>,
    hash: &std::sync::mpsc::SyncSender<Bytes>,
) -> Result<(), StorageError> {
    let mut offset = 0u64;
    let mut flushed = 0u64;
    for c in chunks {
        let c = c?;
        // A send fails only when the hasher is gone (it panicked, which `join` reports): stop
        // rather than write the rest of a file that cannot be checked.
        if hash.send(c.clone()).is_err() {
            return Ok(());
        }
        f.write_all(&c)
            .map_err(io(format!("writing {}", path.display())))?;
        offset += c.len() as u64;
        if offset - flushed >= WRITEBACK_STEP {
            start_writeback(f, flushed, offset - flushed);
            flushed = offset;
        }
    }
    Ok(())
}

/// Asks the kernel to start writing a range to the disk without waiting for it. Only an
/// optimisation (the final `fsync` is what makes the file durable), so a failure is ignored.
fn start_writeback(f: &File, offset: u64, len: u64) {
    // SAFETY: a plain syscall on an open file descriptor; no memory is passed.
    unsafe {
        libc::sync_file_range(
            f.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_chunk_and_hashes_what_it_wrote() {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = dir.path().join("f");
        let chunks: Vec<Bytes> = (0..200u32)
            .map(|i| Bytes::from(vec![(i % 251) as u8; 300_000 + i as usize]))
            .collect();
        let mut whole = Vec::new();
        for c in &chunks {
            whole.extend_from_slice(c);
        }
        let digest = write_hashed(&p, chunks.into_iter().map(Ok)).expect("write");
        assert_eq!(std::fs::read(&p).expect("read back"), whole);
        assert_eq!(digest, hex::encode(Sha256::digest(&whole)));
    }

    #[test]
    fn an_error_among_the_chunks_stops_the_write_and_is_returned() {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = dir.path().join("f");
        let chunks = vec![
            Ok(Bytes::from_static(b"first")),
            Err(StorageError::Conflict("cancelled".into())),
            Ok(Bytes::from_static(b"never written")),
        ];
        let e = write_hashed(&p, chunks.into_iter()).expect_err("stopped");
        assert_eq!(e.to_string(), "cancelled");
        assert_eq!(std::fs::read(&p).expect("read back"), b"first");
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_path() {
        let e = write_hashed(Path::new("/nonexistent-dir/f"), std::iter::empty())
            .expect_err("no directory")
            .to_string();
        assert!(e.contains("/nonexistent-dir/f"), "{e}");
    }
}
