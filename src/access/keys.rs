//! Key material kept in the data directory: the ed25519 ticket key and the token HMAC key.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rand::RngCore;

/// Reads a 32-byte key from `path`, creating it (mode 0600) on first start.
pub fn load_or_create(path: &Path) -> std::io::Result<[u8; 32]> {
    if let Ok(bytes) = fs::read(path) {
        if let Ok(k) = <[u8; 32]>::try_from(bytes.as_slice()) {
            return Ok(k);
        }
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is not a 32-byte key", path.display()),
        ));
    }
    let mut k = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut k);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&k)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    Ok(k)
}
