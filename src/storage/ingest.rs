//! Files arriving into a pool (uploads and host-file imports): staged on the pool's filesystem,
//! hashed as written, renamed into place only once complete.

use super::*;

impl Storage {
    /// Reserves a volume for a file about to arrive (upload or import) and returns where to
    /// write it: a staging file on the pool's filesystem, invisible until [`Storage::finish_file`].
    pub fn begin_file(
        &self,
        pool_name: &str,
        name: &str,
        content: Content,
        format: Format,
        size_hint: Option<u64>,
    ) -> Result<IncomingFile, StorageError> {
        check_name("/name", name)?;
        let pool = self.pool(pool_name)?;
        if !pool.supports(content, format) {
            return Err(StorageError::invalid(
                "/content",
                format!(
                    "pool '{pool_name}' does not hold {} files as {}",
                    content.as_str(),
                    format.as_str()
                ),
            ));
        }
        if let Some(n) = size_hint {
            self.check_space(pool_name, pool.as_ref(), n)?;
        }
        let v = VolRef {
            name: name.to_string(),
            content,
            format,
            size: size_hint.unwrap_or(0),
        };
        let volid = self.reserve(pool_name, &v, None, json!({}), &[])?;
        if pool.exists(&v) {
            self.store
                .write(|tx| objects::delete(tx, VOLUME_KIND, &volid, None))?;
            return Err(StorageError::Conflict(format!(
                "{} already exists on the pool's backing store but is not a known volume",
                pool.path(&v).display()
            )));
        }
        let dir = pool.staging_dir().unwrap_or_else(std::env::temp_dir);
        let staged = dir.join(format!("incoming-{}", uuid::Uuid::new_v4()));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            self.abandon(pool.as_ref(), &volid, &v);
            return Err(io(format!("creating {}", dir.display()))(e));
        }
        Ok(IncomingFile {
            pool: pool_name.to_string(),
            volid,
            vref: v,
            staged,
        })
    }

    /// Checks a staged file's digest and size and moves it into place; or, on `Err` from the
    /// caller's side (`ok = false`), drops it. Either way nothing is left half made.
    pub fn finish_file(
        &self,
        f: &IncomingFile,
        digest: &str,
        expected: Option<&str>,
    ) -> Result<Object, StorageError> {
        let pool = self.pool(&f.pool)?;
        let fail = |e: StorageError| {
            let _ = std::fs::remove_file(&f.staged);
            self.abandon(pool.as_ref(), &f.volid, &f.vref);
            e
        };
        if let Some(want) = expected {
            if want != digest {
                return Err(fail(StorageError::invalid(
                    "/sha256",
                    format!("the file's SHA-256 is {digest}, not the expected {want}; nothing was stored"),
                )));
            }
        }
        let mut v = f.vref.clone();
        v.size = std::fs::metadata(&f.staged)
            .map_err(io(format!("reading {}", f.staged.display())))
            .map_err(&fail)?
            .len();
        if v.format == Format::Qcow2 || v.content == Content::Images {
            let (found, vsize) = qemu_img::probe(&f.staged).map_err(&fail)?;
            if found != v.format.as_str() {
                return Err(fail(StorageError::invalid(
                    "/format",
                    format!("the file is {found}, not {}", v.format.as_str()),
                )));
            }
            v.size = vsize;
        }
        pool.adopt_file(&f.staged, &v).map_err(&fail)?;
        let size = v.size;
        self.update_row(&f.volid, |b| {
            b["state"] = json!(State::Ready.as_str());
            b["size"] = json!(size);
            b["sha256"] = json!(digest);
        })
    }

    /// Records what a template volume holds (`TemplateManifest`) on its row.
    pub fn set_manifest(&self, volid: &str, manifest: Value) -> Result<Object, StorageError> {
        self.update_row(volid, |b| b["manifest"] = manifest)
    }

    /// Drops a staged file and its reservation (upload aborted).
    pub fn abort_file(&self, f: &IncomingFile) {
        let _ = std::fs::remove_file(&f.staged);
        if let Ok(pool) = self.pool(&f.pool) {
            self.abandon(pool.as_ref(), &f.volid, &f.vref);
        }
    }

    /// Copies a host file into the staging file, hashing as it goes (blocking), the way an
    /// upload is written ([`sink::write_hashed`]).
    pub fn copy_in(
        &self,
        f: &IncomingFile,
        from: &Path,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<String, StorageError> {
        let mut src =
            std::fs::File::open(from).map_err(io(format!("opening {}", from.display())))?;
        let chunks = std::iter::from_fn(|| {
            if cancelled() {
                return Some(Err(StorageError::Conflict("cancelled".into())));
            }
            let mut buf = bytes::BytesMut::zeroed(1 << 20);
            match src.read(&mut buf) {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some(Ok(buf.freeze()))
                }
                Err(e) => Some(Err(io(format!("reading {}", from.display()))(e))),
            }
        });
        sink::write_hashed(&f.staged, chunks)
    }
}

/// A file being received into a pool.
#[derive(Debug, Clone)]
pub struct IncomingFile {
    pub pool: String,
    pub volid: String,
    pub vref: VolRef,
    /// Where the bytes go until they are checked.
    pub staged: PathBuf,
}
