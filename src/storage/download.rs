//! Files fetched by URL into a pool (ISOs, cloud images, templates from a mirror).
//!
//! The bytes take the same road as an upload: into a staging file on the pool's filesystem,
//! hashed as written, renamed into place only once everything checked out
//! ([`Storage::finish_file`]). What is checked here is what only a download has: the
//! server's answer, a transfer cut short (fewer bytes than `Content-Length`), a server that
//! stops sending (`stall_timeout`), and the checksum of the bytes as they came over the wire,
//! which for a compressed download is not the checksum of the volume.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256, Sha512};

use super::*;
use crate::tls::{normalize_fingerprint, pinned_client_config, PinnedVerifier};

/// Redirects followed before giving up (mirrors redirect once or twice).
const MAX_REDIRECTS: u32 = 5;
/// The context of a read error from the decompressor (or the plain reader).
const DECODING: &str = "decoding the download";
/// Seconds between two progress lines in the task log.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// How the downloaded bytes are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decompress {
    #[default]
    None,
    Gz,
    Xz,
    Zst,
}

/// A download, as the API takes it (`VolumeDownload` in `schema/storage.json`, which the
/// request was validated against before it gets here).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadRequest {
    pub url: String,
    pub name: String,
    pub content: Content,
    pub format: Option<Format>,
    pub sha256: Option<String>,
    pub sha512: Option<String>,
    #[serde(default)]
    pub decompress: Decompress,
    pub tls_fingerprint: Option<String>,
    #[serde(default = "default_stall")]
    pub stall_timeout: u64,
}

/// Seconds without a byte before a download fails, unless the request says otherwise (the
/// schema's default for `stall_timeout`).
pub const DEFAULT_STALL_SECS: u64 = 60;

fn default_stall() -> u64 {
    DEFAULT_STALL_SECS
}

impl DownloadRequest {
    /// The URL without a password, for logs and errors.
    pub fn shown_url(&self) -> String {
        match url_userinfo(&self.url) {
            Some((start, end)) => format!("{}{}", &self.url[..start], &self.url[end + 1..]),
            None => self.url.clone(),
        }
    }

    /// The expected digest: (field, algorithm, lower-case hex).
    fn expected(&self) -> Option<(&'static str, Hasher, &str)> {
        if let Some(h) = &self.sha512 {
            return Some(("/sha512", Hasher::Sha512(Sha512::new()), h));
        }
        self.sha256
            .as_deref()
            .map(|h| ("/sha256", Hasher::Sha256(Sha256::new()), h))
    }
}

/// The last path segment of a URL, without query or fragment (empty when the URL ends in
/// `/`): the default volume name of a download.
pub fn file_name_of(url: &str) -> &str {
    url.split(['?', '#'])
        .next()
        .and_then(|u| u.rsplit('/').next())
        .unwrap_or_default()
}

/// Where `user:password@` sits in a URL: (start of user, index of '@').
fn url_userinfo(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let end_host = url[start..]
        .find(['/', '?', '#'])
        .map(|i| start + i)
        .unwrap_or(url.len());
    url[start..end_host].rfind('@').map(|i| (start, start + i))
}

enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(b),
            Hasher::Sha512(h) => h.update(b),
        }
    }

    fn hex(self) -> String {
        match self {
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

/// What a download reports while it runs and how it learns it should stop.
pub struct Progress<'a> {
    pub log: &'a (dyn Fn(String) + Sync),
    pub cancelled: &'a (dyn Fn() -> bool + Sync),
}

/// The response body as it comes off the wire: counted, hashed, logged, cancellable. A read
/// error is kept so that the download reports it (a stall, a reset) rather than what a
/// decompressor made of the missing bytes.
struct Wire<'a> {
    inner: Box<dyn Read + Send + Sync>,
    hasher: Option<Hasher>,
    received: u64,
    total: Option<u64>,
    progress: &'a Progress<'a>,
    last_report: Instant,
    failure: Option<StorageError>,
    url: String,
}

impl Read for Wire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if (self.progress.cancelled)() {
            self.failure = Some(StorageError::Conflict("cancelled".into()));
            return Err(std::io::Error::other("cancelled"));
        }
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) => {
                let message = if e.kind() == std::io::ErrorKind::TimedOut
                    || e.kind() == std::io::ErrorKind::WouldBlock
                {
                    format!("the server stopped sending after {} bytes", self.received)
                } else if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    match self.total {
                        Some(t) => format!(
                            "the transfer ended after {} of {t} bytes; nothing was kept",
                            self.received
                        ),
                        None => format!("the transfer ended early after {} bytes", self.received),
                    }
                } else {
                    format!("reading the response after {} bytes: {e}", self.received)
                };
                self.failure = Some(fetch_error(&self.url, message));
                return Err(e);
            }
        };
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.received += n as u64;
        if self.last_report.elapsed() >= PROGRESS_EVERY {
            self.last_report = Instant::now();
            (self.progress.log)(progress_line(self.received, self.total));
        }
        Ok(n)
    }
}

fn progress_line(received: u64, total: Option<u64>) -> String {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    match total {
        Some(t) if t > 0 => format!(
            "received {:.1} of {:.1} MiB ({:.0}%)",
            mib(received),
            mib(t),
            received as f64 * 100.0 / t as f64
        ),
        _ => format!("received {:.1} MiB", mib(received)),
    }
}

fn fetch_error(url: &str, message: impl Into<String>) -> StorageError {
    StorageError::Fetch {
        url: url.to_string(),
        message: message.into(),
    }
}

impl Storage {
    /// Fetches `req.url` into the staging file of `f` (see [`Storage::begin_file`]) and
    /// returns the SHA-256 of what was written (the volume's digest), once the transfer is
    /// complete and its checksum matched. The caller then calls [`Storage::finish_file`], or
    /// [`Storage::abort_file`] on an error.
    pub fn download(
        &self,
        f: &IncomingFile,
        req: &DownloadRequest,
        progress: &Progress<'_>,
    ) -> Result<String, StorageError> {
        let shown = req.shown_url();
        let agent = agent(req);
        let resp = match agent.get(&req.url).call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                return Err(fetch_error(
                    &shown,
                    format!("the server answered {code} {}", r.status_text()),
                ))
            }
            Err(ureq::Error::Transport(t)) => return Err(transport_error(&shown, req, &t)),
        };
        let total = resp
            .header("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        (progress.log)(match total {
            Some(t) => format!("downloading {shown} ({t} bytes)"),
            None => format!("downloading {shown} (length not given)"),
        });
        if let Some(t) = total {
            // Decompressed data is at least as large: a pool without room for the download
            // itself is refused before a byte is written.
            let pool = self.pool(&f.pool)?;
            self.check_space(&f.pool, pool.as_ref(), t)?;
        }
        let expected = req.expected();
        let (field, hasher, want) = match expected {
            Some((field, h, want)) => (field, Some(h), Some(want)),
            None => ("", None, None),
        };
        let mut wire = Wire {
            inner: Box::new(resp.into_reader()),
            hasher,
            received: 0,
            total,
            progress,
            last_report: Instant::now(),
            failure: None,
            url: shown.clone(),
        };
        let written = {
            let decoded = decoder(req.decompress, &mut wire);
            match decoded {
                Ok(mut r) => write_from(&f.staged, &mut *r),
                Err(e) => Err(e),
            }
        };
        // A decompressor stops at the end of its stream: hash whatever follows it too, so the
        // checksum covers the whole file as served.
        let drained = written
            .is_ok()
            .then(|| std::io::copy(&mut wire, &mut std::io::sink()));
        if let Some(failure) = wire.failure.take() {
            return Err(failure);
        }
        let digest = match written {
            Ok(d) => d,
            Err(StorageError::Io { context, source })
                if context == DECODING && req.decompress != Decompress::None =>
            {
                return Err(StorageError::invalid(
                    "/decompress",
                    format!("{context}: {source} (is the file really compressed that way?)"),
                ))
            }
            Err(e) => return Err(e),
        };
        if let Some(Err(e)) = drained {
            return Err(fetch_error(&shown, format!("reading the response: {e}")));
        }
        if let Some(t) = total {
            if wire.received != t {
                return Err(fetch_error(
                    &shown,
                    format!(
                        "the transfer ended after {} of {t} bytes; nothing was kept",
                        wire.received
                    ),
                ));
            }
        }
        (progress.log)(progress_line(wire.received, total));
        if let (Some(h), Some(want)) = (wire.hasher.take(), want) {
            let got = h.hex();
            if got != want {
                return Err(StorageError::invalid(
                    field,
                    format!(
                        "the downloaded file's {} is {got}, not the expected {want}; nothing was kept",
                        &field[1..]
                    ),
                ));
            }
            (progress.log)(format!("{} checked", &field[1..]));
        }
        Ok(digest)
    }
}

/// The HTTP client for one download: public CA roots, or only the pinned certificate.
fn agent(req: &DownloadRequest) -> ureq::Agent {
    let mut b = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(15))
        .timeout_read(Duration::from_secs(req.stall_timeout))
        .redirects(MAX_REDIRECTS)
        .user_agent(&format!("ferrited/{}", crate::VERSION));
    if let Some(fp) = &req.tls_fingerprint {
        let verifier = Arc::new(PinnedVerifier::new(Some(&normalize_fingerprint(fp))));
        b = b.tls_config(pinned_client_config(verifier));
    }
    b.build()
}

/// Words a connection failure for the task log: which step failed, and for a certificate
/// refused without a pin, how to trust it.
fn transport_error(shown: &str, req: &DownloadRequest, t: &ureq::Transport) -> StorageError {
    let detail = t
        .to_string()
        .replace(&req.url, shown)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let cert = detail.contains("certificate") || detail.contains("Certificate");
    let message = match t.kind() {
        ureq::ErrorKind::Dns => format!("cannot resolve the host: {detail}"),
        ureq::ErrorKind::ConnectionFailed if cert && req.tls_fingerprint.is_some() => format!(
            "the server's certificate does not match tls_fingerprint: {detail}"
        ),
        ureq::ErrorKind::ConnectionFailed if cert => format!(
            "the server's TLS certificate failed verification ({detail}); to trust it, set tls_fingerprint to its SHA-256 fingerprint"
        ),
        ureq::ErrorKind::ConnectionFailed => format!("cannot connect: {detail}"),
        ureq::ErrorKind::TooManyRedirects => {
            format!("more than {MAX_REDIRECTS} redirects: {detail}")
        }
        _ => detail,
    };
    fetch_error(shown, message)
}

/// The reader of decompressed bytes.
fn decoder<'r>(
    how: Decompress,
    wire: &'r mut Wire<'_>,
) -> Result<Box<dyn Read + 'r>, StorageError> {
    let buffered = std::io::BufReader::with_capacity(1 << 20, wire);
    Ok(match how {
        Decompress::None => Box::new(buffered),
        Decompress::Gz => Box::new(flate2::read::MultiGzDecoder::new(buffered)),
        Decompress::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(buffered)),
        Decompress::Zst => Box::new(
            ruzstd::StreamingDecoder::new(buffered)
                .map_err(|e| StorageError::invalid("/decompress", format!("not zstd: {e}")))?,
        ),
    })
}

/// Writes a reader to `path` through [`sink::write_hashed`] and returns its SHA-256.
fn write_from(path: &Path, r: &mut dyn Read) -> Result<String, StorageError> {
    let chunks = std::iter::from_fn(|| {
        let mut buf = bytes::BytesMut::zeroed(1 << 20);
        let mut filled = 0;
        // Fill whole chunks: a decompressor hands out small reads.
        while filled < buf.len() {
            match r.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Some(Err(io(DECODING)(e))),
            }
        }
        if filled == 0 {
            return None;
        }
        buf.truncate(filled);
        Some(Ok(buf.freeze()))
    });
    sink::write_hashed(path, chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(url: &str) -> DownloadRequest {
        serde_json::from_value(json!({"url": url, "name": "x", "content": "iso"})).expect("request")
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            req("https://u:secret@mirror.example/a@b.iso").shown_url(),
            "https://mirror.example/a@b.iso"
        );
        assert_eq!(
            req("http://mirror.example/x.iso?a=b@c").shown_url(),
            "http://mirror.example/x.iso?a=b@c"
        );
    }

    #[test]
    fn progress_lines_say_how_far() {
        assert_eq!(
            progress_line(1 << 20, Some(4 << 20)),
            "received 1.0 of 4.0 MiB (25%)"
        );
        assert_eq!(progress_line(3 << 19, None), "received 1.5 MiB");
    }
}
