//! The config file `ferrite login` writes: endpoint, pinned fingerprint and ticket.
//!
//! It holds a bearer credential, so it is written owner-only (0600, directories 0700) and
//! replaced atomically: a crash mid-write must not leave a truncated file, and a reader must
//! never see a moment where the ticket is world-readable.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::CliError;

/// Saved login state. Every field is optional so a hand-written file with only an endpoint
/// (or only a fingerprint) works too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// `$HOME/.config/ferrite/config.json`, or `None` without a usable `HOME`.
pub fn default_config_path() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".config/ferrite/config.json"))
}

impl Config {
    /// Reads the config; a missing file is simply no saved login.
    pub fn load(path: &Path) -> Result<Option<Config>, CliError> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CliError::ConfigRead {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                eprintln!(
                    "warning: {} holds a ticket but has mode {mode:04o}; run chmod 600 on it",
                    path.display()
                );
            }
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| CliError::ConfigParse {
                path: path.to_path_buf(),
                source,
            })
    }

    /// Writes the config owner-only, atomically (temp file in the same directory, then
    /// rename), creating missing parent directories as 0700.
    pub fn save(&self, path: &Path) -> Result<(), CliError> {
        let werr = |source| CliError::ConfigWrite {
            path: path.to_path_buf(),
            source,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(werr)?;
        let name = path.file_name().ok_or_else(|| {
            CliError::Usage(format!("config path {} names no file", path.display()))
        })?;
        let mut tmp_name = name.to_os_string();
        tmp_name.push(format!(".tmp.{}", std::process::id()));
        let tmp = dir.join(tmp_name);
        let mut text = serde_json::to_string_pretty(self).map_err(|e| CliError::ConfigWrite {
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })?;
        text.push('\n');
        let write = || -> std::io::Result<()> {
            let _ = fs::remove_file(&tmp);
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            werr(e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_is_private_and_round_trips() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("a/b/config.json");
        let c = Config {
            endpoint: Some("https://h:8006".into()),
            ticket: Some("t".into()),
            ..Default::default()
        };
        c.save(&p).expect("save");
        let mode = fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(Config::load(&p).expect("load"), Some(c));
        assert_eq!(Config::load(&d.path().join("missing")).expect("load"), None);
    }

    #[test]
    fn corrupt_config_is_an_error() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("config.json");
        fs::write(&p, "{nope").expect("write");
        assert!(matches!(
            Config::load(&p),
            Err(CliError::ConfigParse { .. })
        ));
    }
}
