//! go-plugin's AutoMTLS: Terraform passes its client certificate in `PLUGIN_CLIENT_CERT`, we
//! answer with a fresh self-signed server certificate published in the handshake line, and
//! only a client presenting exactly Terraform's certificate gets through.
//!
//! Terraform's client key is ECDSA P-521, which ring does not verify; those signatures are
//! checked with the RustCrypto `p521` crate instead of turning client authentication off.

use std::sync::Arc;

use p521::ecdsa::signature::Verifier;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("PLUGIN_CLIENT_CERT holds no certificate")]
    NoClientCert,
    #[error("PLUGIN_CLIENT_CERT is not a certificate: {0}")]
    BadClientCert(String),
    #[error("cannot make the server certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A fresh self-signed certificate for `localhost` (Terraform checks that name).
pub fn server_certificate() -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Ferrite");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
        rcgen::KeyUsagePurpose::KeyAgreement,
        rcgen::KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.self_signed(&key)?;
    Ok((
        cert.der().clone(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    ))
}

/// Accepts exactly one client certificate.
struct PinnedClient {
    der: Vec<u8>,
    /// The client's P-521 public key (SEC1 point), when it is one.
    p521: Option<p521::ecdsa::VerifyingKey>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl std::fmt::Debug for PinnedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedClient")
            .field("p521", &self.p521.is_some())
            .finish()
    }
}

impl ClientCertVerifier for PinnedClient {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.der.as_slice() {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "client certificate is not the one in PLUGIN_CLIENT_CERT".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme == SignatureScheme::ECDSA_NISTP521_SHA512 {
            return self.verify_p521(message, dss);
        }
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
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme == SignatureScheme::ECDSA_NISTP521_SHA512 {
            return self.verify_p521(message, dss);
        }
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        let mut s = self
            .provider
            .signature_verification_algorithms
            .supported_schemes();
        if self.p521.is_some() {
            s.push(SignatureScheme::ECDSA_NISTP521_SHA512);
        }
        s
    }
}

impl PinnedClient {
    fn verify_p521(
        &self,
        message: &[u8],
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let key = self.p521.as_ref().ok_or(rustls::Error::General(
            "P-521 signature from a client whose key is not P-521".into(),
        ))?;
        let sig = p521::ecdsa::Signature::from_der(dss.signature())
            .map_err(|_| rustls::Error::General("malformed P-521 signature".into()))?;
        key.verify(message, &sig)
            .map(|_| HandshakeSignatureValid::assertion())
            .map_err(|_| rustls::Error::General("bad P-521 signature".into()))
    }
}

/// The server TLS configuration for AutoMTLS with the client certificate PEM Terraform passed.
pub fn server_config(
    client_pem: &str,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, TlsError> {
    let client = rustls_pemfile::certs(&mut client_pem.as_bytes())
        .next()
        .ok_or(TlsError::NoClientCert)?
        .map_err(|e| TlsError::BadClientCert(e.to_string()))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(client.as_ref())
        .map_err(|e| TlsError::BadClientCert(e.to_string()))?;
    let point = parsed
        .tbs_certificate
        .subject_pki
        .subject_public_key
        .data
        .to_vec();
    let p521 = p521::ecdsa::VerifyingKey::from_sec1_bytes(&point).ok();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedClient {
        der: client.as_ref().to_vec(),
        p521,
        provider: Arc::clone(&provider),
    });
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}
