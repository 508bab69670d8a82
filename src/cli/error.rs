//! CLI errors and the API problem document, each mapped to an exit code.

use std::fmt;
use std::path::PathBuf;

use serde_json::Value;

use super::{EXIT_API, EXIT_CONNECT, EXIT_TIMEOUT, EXIT_USAGE};

/// An `application/problem+json` refusal, reduced to what a person at a terminal needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub status: u16,
    pub title: String,
    pub detail: Option<String>,
    /// `(pointer, message)` per invalid field, so the user can find the offending input.
    pub invalid_params: Vec<(String, String)>,
    /// Quoted back so an operator can find the request in the daemon's log.
    pub request_id: Option<String>,
    /// A next step the CLI can suggest (e.g. log in again), printed last.
    pub hint: Option<String>,
}

impl Problem {
    /// Builds a problem from an error response. Bodies that are not problem documents (a
    /// proxy's HTML page, say) still yield a usable message from the status alone.
    pub fn from_response(status: u16, request_id: Option<String>, text: &str) -> Problem {
        let doc: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let str_field = |k: &str| doc.get(k).and_then(Value::as_str).map(String::from);
        let invalid_params = doc
            .get("invalid_params")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|p| {
                        let f = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default();
                        (f("pointer").to_string(), f("message").to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let detail = str_field("detail").or_else(|| {
            let t = text.trim();
            (!doc.is_object() && !t.is_empty()).then(|| t.chars().take(200).collect())
        });
        Problem {
            status,
            title: str_field("title").unwrap_or_else(|| reason(status).to_string()),
            detail,
            invalid_params,
            request_id: str_field("request_id").or(request_id),
            hint: None,
        }
    }
}

/// Reason phrases for statuses whose body carried no title.
fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "HTTP error",
    }
}

impl fmt::Display for Problem {
    /// `<status> <title>: <detail>`, then one `  <pointer>: <message>` line per field and
    /// the request id: the format the CLI promises on stderr.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.title)?;
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        for (pointer, message) in &self.invalid_params {
            let pointer = if pointer.is_empty() { "/" } else { pointer };
            write!(f, "\n  {pointer}: {message}")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, "\n  request id: {id}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong in the CLI, with enough context to act on.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The API answered with an error status.
    #[error("{0}")]
    Api(Box<Problem>),
    #[error("{0}")]
    Usage(String),
    #[error("no config file path: set --config or FERRITE_CONFIG, or HOME")]
    NoConfigPath,
    #[error("reading config {}: {source}", path.display())]
    ConfigRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {} is not valid: {source}", path.display())]
    ConfigParse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("writing config {}: {source}", path.display())]
    ConfigWrite {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid endpoint '{0}': expected https://HOST:PORT (or http:// for a daemon run with --no-tls)")]
    Endpoint(String),
    #[error("'{0}' is not a SHA-256 fingerprint (expected 32 hex bytes, e.g. AB:CD:...)")]
    Fingerprint(String),
    /// Trust on first use must be a deliberate act, so the CLI shows the fingerprint and
    /// stops instead of silently trusting it.
    #[error(
        "{endpoint} presented a certificate with SHA-256 fingerprint\n  {seen}\n\
         but no fingerprint is pinned. Compare it with the one the daemon logged at start-up \
         (or DATA_DIR/api.json), then re-run with\n  --fingerprint {seen}\n\
         (`ferrite login` saves it for later commands; --insecure skips verification)"
    )]
    Unpinned { endpoint: String, seen: String },
    #[error(
        "{endpoint} presented a certificate with SHA-256 fingerprint\n  {seen}\n\
         which does not match the pinned\n  {expected}\n\
         Refusing to connect: the daemon's certificate changed, or this is not the server you \
         expect. If the change is legitimate, re-run with --fingerprint {seen}"
    )]
    FingerprintMismatch {
        endpoint: String,
        seen: String,
        expected: String,
    },
    #[error("cannot reach {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: Box<ureq::Transport>,
    },
    #[error("reading the response to {what}: {source}")]
    ReadResponse {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} is not valid JSON: {source}")]
    Json {
        what: String,
        source: serde_json::Error,
    },
    #[error("unexpected response to {what}: {detail}")]
    Protocol { what: String, detail: String },
    #[error("reading {}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading stdin: {0}")]
    Stdin(std::io::Error),
    #[error("reading the password: {0} (use --password-stdin when there is no terminal)")]
    Password(std::io::Error),
    #[error("writing output: {0}")]
    Output(std::io::Error),
    /// The awaited task ended without succeeding.
    #[error("task {id} {state}{}", problem_suffix(.problem))]
    TaskUnsuccessful {
        id: String,
        state: String,
        problem: Option<Value>,
    },
    #[error("task {id} is still {state} after {seconds}s")]
    TaskTimeout {
        id: String,
        state: String,
        seconds: u64,
    },
}

/// `: <title>: <detail>` from a task's problem object, when it has one.
fn problem_suffix(problem: &Option<Value>) -> String {
    let Some(p) = problem.as_ref().filter(|p| p.is_object()) else {
        return String::new();
    };
    let mut s = String::new();
    for k in ["title", "detail"] {
        if let Some(v) = p.get(k).and_then(Value::as_str) {
            s.push_str(": ");
            s.push_str(v);
        }
    }
    s
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Api(_) | CliError::TaskUnsuccessful { .. } => EXIT_API,
            CliError::TaskTimeout { .. } => EXIT_TIMEOUT,
            CliError::Connect { .. }
            | CliError::Unpinned { .. }
            | CliError::FingerprintMismatch { .. }
            | CliError::ReadResponse { .. }
            | CliError::Protocol { .. } => EXIT_CONNECT,
            _ => EXIT_USAGE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_lists_fields_and_request_id() {
        let p = Problem::from_response(
            400,
            Some("hdr".into()),
            r#"{"type":"t","title":"Invalid request","status":400,"detail":"bad",
                "invalid_params":[{"pointer":"/bogus","in":"body","message":"unknown field"}],
                "request_id":"abc"}"#,
        );
        assert_eq!(
            p.to_string(),
            "400 Invalid request: bad\n  /bogus: unknown field\n  request id: abc"
        );
    }

    #[test]
    fn non_json_error_body_still_reports() {
        let p = Problem::from_response(502, Some("r1".into()), "<html>bad gateway</html>");
        assert_eq!(p.title, "Bad Gateway");
        assert_eq!(p.detail.as_deref(), Some("<html>bad gateway</html>"));
        assert_eq!(p.request_id.as_deref(), Some("r1"));
    }

    #[test]
    fn task_failure_names_the_problem() {
        let e = CliError::TaskUnsuccessful {
            id: "t1".into(),
            state: "failed".into(),
            problem: Some(
                serde_json::json!({"title": "Store backup failed", "detail": "disk full"}),
            ),
        };
        assert_eq!(
            e.to_string(),
            "task t1 failed: Store backup failed: disk full"
        );
        assert_eq!(e.exit_code(), EXIT_API);
    }
}
