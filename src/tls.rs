//! TLS for the API: a self-signed certificate generated on first start (clients pin its
//! SHA-256 fingerprint), or a certificate and key the operator supplies.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// TLS setup errors.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("writing {0}: {1}")]
    Write(PathBuf, std::io::Error),
    #[error("{0} holds no PEM certificate")]
    NoCert(PathBuf),
    #[error("{0} holds no PEM private key")]
    NoKey(PathBuf),
    #[error("generating the self-signed certificate: {0}")]
    Generate(String),
    #[error("certificate and key do not form a usable TLS config: {0}")]
    Config(String),
}

/// The colon-separated uppercase SHA-256 fingerprint of a DER certificate.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Normalizes a user-supplied fingerprint (any case, with or without colons).
pub fn normalize_fingerprint(s: &str) -> String {
    let hex: String = s
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect::<String>()
        .to_uppercase();
    hex.as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// Writes `data` to a temporary file, syncs it and renames it into place: a power cut during
/// the first start must not leave an empty certificate that every later start refuses.
fn write_private(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    let err = |e| TlsError::Write(path.to_path_buf(), e);
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data).and_then(|()| f.sync_all()).map_err(err)?;
    fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
    }
    Ok(())
}

/// A file that exists and holds something: an empty one (left by a crash before this code
/// wrote atomically) is regenerated rather than refused forever.
fn present(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.len() > 0)
}

/// Generates `DIR/tls/ferrited.{crt,key}` unless they exist.
pub fn ensure_self_signed(data_dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
    let dir = data_dir.join("tls");
    let crt = dir.join("ferrited.crt");
    let key = dir.join("ferrited.key");
    if present(&crt) && present(&key) {
        return Ok((crt, key));
    }
    fs::create_dir_all(&dir).map_err(|e| TlsError::Write(dir.clone(), e))?;
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Ok(h) = nix::unistd::gethostname() {
        if let Some(h) = h.to_str() {
            if !names.iter().any(|n| n == h) {
                names.push(h.to_string());
            }
        }
    }
    let ck =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    write_private(&key, ck.key_pair.serialize_pem().as_bytes(), 0o600)?;
    write_private(&crt, ck.cert.pem().as_bytes(), 0o644)?;
    Ok((crt, key))
}

/// Loads a PEM certificate chain and key; returns the server config and the leaf fingerprint.
pub fn server_config(
    crt: &Path,
    key: &Path,
) -> Result<(Arc<rustls::ServerConfig>, String), TlsError> {
    let crt_pem = fs::read(crt).map_err(|e| TlsError::Read(crt.to_path_buf(), e))?;
    let key_pem = fs::read(key).map_err(|e| TlsError::Read(key.to_path_buf(), e))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut crt_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Read(crt.to_path_buf(), e))?;
    let leaf = certs
        .first()
        .ok_or_else(|| TlsError::NoCert(crt.to_path_buf()))?;
    let fp = fingerprint(leaf);
    let key_der: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| TlsError::Read(key.to_path_buf(), e))?
        .ok_or_else(|| TlsError::NoKey(key.to_path_buf()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(cfg), fp))
}

/// A client verifier that accepts exactly one certificate, by SHA-256 fingerprint. Used by the
/// CLI (and later the Terraform provider) to talk to a self-signed daemon without disabling
/// verification.
#[derive(Debug)]
pub struct PinnedVerifier {
    /// Expected fingerprint (normalized); `None` accepts anything (`--insecure`).
    pub expected: Option<String>,
    /// The fingerprint the server presented, for error messages.
    pub seen: std::sync::Mutex<Option<String>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl PinnedVerifier {
    pub fn new(expected: Option<&str>) -> Self {
        PinnedVerifier {
            expected: expected.map(normalize_fingerprint),
            seen: std::sync::Mutex::new(None),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }
}

impl rustls::client::danger::ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let fp = fingerprint(end_entity);
        if let Ok(mut s) = self.seen.lock() {
            *s = Some(fp.clone());
        }
        match &self.expected {
            None => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            Some(want) if *want == fp => {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            Some(_) => Err(rustls::Error::General(format!(
                "server certificate fingerprint {fp} does not match the pinned one"
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A rustls client config that trusts exactly the pinned certificate.
pub fn pinned_client_config(verifier: Arc<PinnedVerifier>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Arc::new(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_and_loads() {
        let d = tempfile::tempdir().expect("tempdir");
        let (c, k) = ensure_self_signed(d.path()).expect("gen");
        let (_cfg, fp) = server_config(&c, &k).expect("load");
        assert_eq!(fp.len(), 95);
        assert_eq!(
            normalize_fingerprint(&fp.replace(':', "").to_lowercase()),
            fp
        );
        // Second call keeps the same certificate.
        ensure_self_signed(d.path()).expect("again");
        assert_eq!(server_config(&c, &k).expect("load").1, fp);
    }
}
