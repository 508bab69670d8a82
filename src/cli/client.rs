//! A blocking HTTP client for the API: certificate pinning, bearer auth, and error
//! responses turned into [`Problem`]s.
//!
//! Blocking `ureq` keeps the CLI free of an async runtime; each invocation makes a handful of
//! requests, so there is nothing to gain from one.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::{CliError, Problem};
use crate::tls::{normalize_fingerprint, pinned_client_config, PinnedVerifier};

/// How the server certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Accept exactly this certificate (normalized SHA-256 fingerprint).
    Pinned(String),
    /// Accept any certificate (`--insecure`).
    Insecure,
    /// Nothing pinned: refuse every certificate, but learn its fingerprint so the error can
    /// show it. Trusting on first use must be an explicit `--fingerprint`.
    Unpinned,
}

impl Trust {
    /// Validates a user-supplied fingerprint so a typo fails here, clearly, rather than as a
    /// mismatch against the server.
    pub fn pinned(fp: &str) -> Result<Trust, CliError> {
        let n = normalize_fingerprint(fp);
        let hex_digits = fp.chars().filter(char::is_ascii_hexdigit).count();
        let only_hex_and_separators = fp
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == ':' || c.is_whitespace());
        if hex_digits != 64 || !only_hex_and_separators {
            return Err(CliError::Fingerprint(fp.to_string()));
        }
        Ok(Trust::Pinned(n))
    }
}

/// One API request.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    /// Path relative to `/api/v1` (normalized by [`api_path`]).
    pub path: &'a str,
    pub query: Vec<(String, String)>,
    pub body: Option<&'a Value>,
    /// A file sent as the raw body (`application/octet-stream`, streamed with its length)
    /// instead of `body`: uploads.
    pub file: Option<&'a Path>,
    pub headers: Vec<(&'static str, String)>,
    /// Overall deadline; `None` waits as long as the server keeps the connection open.
    pub timeout: Option<Duration>,
}

impl<'a> Request<'a> {
    /// A request without query, body or extra headers, with a default deadline.
    pub fn new(method: &'a str, path: &'a str) -> Request<'a> {
        Request {
            method,
            path,
            query: Vec::new(),
            body: None,
            file: None,
            headers: Vec::new(),
            timeout: Some(Duration::from_secs(120)),
        }
    }
}

/// A response body.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// 204, or no bytes at all.
    Empty,
    Json(Value),
    /// Anything that is not a JSON document (JSON lines, text).
    Text(String),
}

/// A successful (2xx) response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub location: Option<String>,
    /// Set when the change touched a management interface: it is rolled back at this time
    /// unless confirmed (`POST /network/confirm`).
    pub confirm_deadline: Option<String>,
    pub body: Body,
}

/// Maps a user-typed path onto the API: `version`, `/version`, `api/v1/version` and
/// `/api/v1/version` all mean `/api/v1/version`, so paths can be pasted from the docs, from
/// Location headers or typed short.
pub fn api_path(path: &str) -> String {
    let p = path.trim().trim_start_matches('/');
    let prefix = crate::API_PREFIX.trim_start_matches('/');
    let rest = match p.strip_prefix(prefix) {
        Some(r) if r.is_empty() || r.starts_with('/') || r.starts_with('?') => {
            r.trim_start_matches('/')
        }
        _ => p,
    };
    format!("{}/{rest}", crate::API_PREFIX)
}

/// Checks and normalizes an endpoint: a scheme is required (so `http://` is never assumed
/// by accident) and a trailing `/` or `/api/v1` is dropped.
pub fn normalize_endpoint(endpoint: &str) -> Result<String, CliError> {
    let e = endpoint.trim().trim_end_matches('/');
    let e = e.strip_suffix(crate::API_PREFIX).unwrap_or(e);
    let host = e
        .strip_prefix("https://")
        .or_else(|| e.strip_prefix("http://"));
    match host {
        Some(h) if !h.is_empty() && !h.contains('/') => Ok(e.to_string()),
        _ => Err(CliError::Endpoint(endpoint.to_string())),
    }
}

/// A connection to one daemon.
pub struct Client {
    agent: ureq::Agent,
    endpoint: String,
    token: Option<String>,
    trust: Trust,
    verifier: Arc<PinnedVerifier>,
}

impl Client {
    /// Builds a client; nothing is sent until the first request.
    pub fn new(endpoint: &str, trust: Trust, token: Option<String>) -> Result<Client, CliError> {
        let endpoint = normalize_endpoint(endpoint)?;
        let verifier = Arc::new(match &trust {
            Trust::Pinned(fp) => PinnedVerifier::new(Some(fp)),
            Trust::Insecure => PinnedVerifier::new(None),
            // An empty expected fingerprint matches no certificate, yet the verifier still
            // records the one presented.
            Trust::Unpinned => PinnedVerifier::new(Some("")),
        });
        let agent = ureq::AgentBuilder::new()
            .tls_config(pinned_client_config(Arc::clone(&verifier)))
            .timeout_connect(Duration::from_secs(10))
            .redirects(0)
            .user_agent(&format!("ferrite-cli/{}", crate::VERSION))
            .build();
        Ok(Client {
            agent,
            endpoint,
            token,
            trust,
            verifier,
        })
    }

    /// The normalized endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn build(&self, r: &Request<'_>) -> ureq::Request {
        let url = format!("{}{}", self.endpoint, api_path(r.path));
        let mut req = self
            .agent
            .request(r.method, &url)
            .set("Accept", "application/json");
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        for (k, v) in &r.headers {
            req = req.set(k, v);
        }
        for (k, v) in &r.query {
            req = req.query(k, v);
        }
        if let Some(t) = r.timeout {
            req = req.timeout(t);
        }
        req
    }

    /// Sends a request and returns the raw 2xx response; errors become [`CliError`]s.
    fn call(&self, r: &Request<'_>) -> Result<ureq::Response, CliError> {
        let req = self.build(r);
        let what = format!("{} {}", r.method, api_path(r.path));
        let result = match (r.file, r.body) {
            (Some(path), _) => {
                let read_err = |source| CliError::File {
                    path: path.to_path_buf(),
                    source,
                };
                let f = std::fs::File::open(path).map_err(read_err)?;
                // The length up front lets the daemon refuse a file that cannot fit before
                // a byte is sent, and frames the body without chunking.
                let len = f.metadata().map_err(read_err)?.len();
                req.set("Content-Type", "application/octet-stream")
                    .set("Content-Length", &len.to_string())
                    .send(f)
            }
            (None, Some(b)) => req.send_json(b),
            (None, None) => req.call(),
        };
        match result {
            Ok(resp) => Ok(resp),
            Err(ureq::Error::Status(status, resp)) => {
                let rid = resp.header("x-request-id").map(String::from);
                let text = read_text(resp, &what)?;
                Err(CliError::Api(Box::new(Problem::from_response(
                    status, rid, &text,
                ))))
            }
            Err(ureq::Error::Transport(t)) => Err(self.transport_error(t)),
        }
    }

    /// Sends a request and reads the whole response.
    pub fn send(&self, r: &Request<'_>) -> Result<Response, CliError> {
        let resp = self.call(r)?;
        let what = format!("{} {}", r.method, api_path(r.path));
        let status = resp.status();
        let location = resp.header("location").map(String::from);
        let confirm_deadline = resp.header("x-ferrite-confirm-deadline").map(String::from);
        let is_json = resp.content_type().ends_with("json");
        let text = read_text(resp, &what)?;
        let body = if text.trim().is_empty() {
            Body::Empty
        } else if is_json {
            serde_json::from_str(&text)
                .map(Body::Json)
                .map_err(|source| CliError::Json { what, source })?
        } else {
            Body::Text(text)
        };
        Ok(Response {
            status,
            location,
            confirm_deadline,
            body,
        })
    }

    /// Sends a request and returns the body as a line reader, for streams (task logs) that
    /// must be shown as they arrive rather than when they end.
    pub fn stream(&self, r: &Request<'_>) -> Result<impl BufRead, CliError> {
        let resp = self.call(r)?;
        Ok(BufReader::new(resp.into_reader()))
    }

    /// The certificate verifier (for connections made outside ureq: consoles).
    pub(super) fn verifier(&self) -> Arc<PinnedVerifier> {
        Arc::clone(&self.verifier)
    }

    /// The bearer token, if any.
    pub(super) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Turns a connection failure into the most useful error: a certificate we refused
    /// because of pinning is reported with the fingerprint the server presented.
    fn transport_error(&self, t: ureq::Transport) -> CliError {
        self.tls_error(CliError::Connect {
            endpoint: self.endpoint.clone(),
            source: Box::new(t),
        })
    }

    /// `fallback`, unless the failure was a certificate refused by pinning.
    pub(super) fn tls_error(&self, fallback: CliError) -> CliError {
        let seen = self.verifier.seen.lock().ok().and_then(|s| s.clone());
        if let Some(seen) = seen {
            match &self.trust {
                Trust::Unpinned => {
                    return CliError::Unpinned {
                        endpoint: self.endpoint.clone(),
                        seen,
                    }
                }
                Trust::Pinned(expected) if *expected != seen => {
                    return CliError::FingerprintMismatch {
                        endpoint: self.endpoint.clone(),
                        seen,
                        expected: expected.clone(),
                    }
                }
                _ => {}
            }
        }
        fallback
    }
}

/// Reads a response body as text (without ureq's 10 MiB cap on `into_string`).
fn read_text(resp: ureq::Response, what: &str) -> Result<String, CliError> {
    let mut text = String::new();
    resp.into_reader()
        .read_to_string(&mut text)
        .map_err(|source| CliError::ReadResponse {
            what: what.to_string(),
            source,
        })?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_normalize() {
        for p in [
            "version",
            "/version",
            "api/v1/version",
            "/api/v1/version",
            " /api/v1//version ",
        ] {
            assert_eq!(api_path(p), "/api/v1/version", "{p}");
        }
        assert_eq!(api_path("tasks?limit=1"), "/api/v1/tasks?limit=1");
        // Only a whole segment counts as the prefix.
        assert_eq!(api_path("api/v10/x"), "/api/v1/api/v10/x");
    }

    #[test]
    fn endpoints_need_a_scheme() {
        assert_eq!(
            normalize_endpoint("https://h:8006/").expect("ok"),
            "https://h:8006"
        );
        assert_eq!(
            normalize_endpoint("http://h:1/api/v1").expect("ok"),
            "http://h:1"
        );
        assert!(normalize_endpoint("h:8006").is_err());
        assert!(normalize_endpoint("https://").is_err());
        assert!(normalize_endpoint("https://h/x").is_err());
    }

    #[test]
    fn fingerprints_are_validated() {
        let fp = "ab".repeat(32);
        assert_eq!(
            Trust::pinned(&fp).expect("ok"),
            Trust::Pinned(normalize_fingerprint(&fp))
        );
        assert!(Trust::pinned("AB:CD").is_err());
        assert!(Trust::pinned(&format!("{fp}zz")).is_err());
    }
}
