//! The HTTP side: ferrite's CLI client with retries, idempotency keys and problem documents
//! turned into Terraform diagnostics.

use std::time::Duration;

use ferrite::cli::{Body, CliError, Client, Problem, Request, Trust};
use serde_json::Value as Json;

/// Why an API call failed.
#[derive(Debug)]
pub enum ApiError {
    NotFound,
    Problem(Box<Problem>),
    Other(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::NotFound => f.write_str("not found"),
            ApiError::Problem(p) => {
                write!(f, "{} ({})", p.title, p.status)?;
                if let Some(d) = &p.detail {
                    write!(f, ": {d}")?;
                }
                for (ptr, msg) in &p.invalid_params {
                    write!(f, "\n  {ptr}: {msg}")?;
                }
                Ok(())
            }
            ApiError::Other(s) => f.write_str(s),
        }
    }
}

/// Settings from the provider block (or the environment).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub endpoint: String,
    pub token: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub fingerprint: Option<String>,
    pub insecure: bool,
    pub timeout: Duration,
}

#[derive(Clone)]
pub struct Api {
    client: std::sync::Arc<Client>,
    timeout: Duration,
    /// The resource's own `timeouts` entry, when it set one (uploads have no other deadline).
    explicit_timeout: Option<Duration>,
    /// Set when a call answered that its change waits for confirmation (it touched a
    /// management interface); one flag per [`Api::with_timeout`] scope, that is per apply.
    confirm_requested: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Retries after transport failures and 5xx answers, with backoff; a request is retried only
/// when repeating it cannot do the work twice (reads, PUT/DELETE, POST with an idempotency key).
const RETRIES: u32 = 3;

impl Api {
    /// Connects: logs in when a password is given and checks the credential once.
    pub fn connect(s: &Settings) -> Result<Api, String> {
        let trust = if s.insecure {
            Trust::Insecure
        } else if let Some(fp) = &s.fingerprint {
            Trust::pinned(fp).map_err(|e| e.to_string())?
        } else {
            Trust::Unpinned
        };
        let client =
            Client::new(&s.endpoint, trust.clone(), s.token.clone()).map_err(|e| e.to_string())?;
        let mut api = Api {
            client: std::sync::Arc::new(client),
            timeout: s.timeout,
            explicit_timeout: None,
            confirm_requested: Default::default(),
        };
        if s.token.is_none() {
            if let (Some(u), Some(p)) = (&s.username, &s.password) {
                let body = serde_json::json!({"username": u, "password": p});
                let t = api
                    .call("POST", "/access/login", &[], Some(&body), None)
                    .map_err(|e| format!("login as {u} failed: {e}"))?;
                let ticket = t
                    .as_ref()
                    .and_then(|t| t.get("ticket"))
                    .and_then(Json::as_str)
                    .ok_or("login answered without a ticket")?
                    .to_string();
                api.client = std::sync::Arc::new(
                    Client::new(&s.endpoint, trust, Some(ticket)).map_err(|e| e.to_string())?,
                );
            }
        }
        // One cheap authenticated read, so a wrong endpoint, pin or credential fails at
        // plan time with its own message instead of in the middle of an apply.
        api.call("GET", "/access/me", &[], None, None)
            .map_err(|e| format!("cannot use {}: {e}", s.endpoint))?;
        Ok(api)
    }

    /// The same connection with another per-call deadline (a resource's `timeouts`).
    pub fn with_timeout(&self, timeout: Option<Duration>) -> Api {
        Api {
            client: std::sync::Arc::clone(&self.client),
            timeout: timeout.unwrap_or(self.timeout),
            explicit_timeout: timeout,
            confirm_requested: Default::default(),
        }
    }

    /// Whether a call in this scope made (or, after a lost answer, may have made) a change the
    /// daemon rolls back unless confirmed.
    pub fn confirm_requested(&self) -> bool {
        self.confirm_requested
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn request_confirm(&self) {
        self.confirm_requested
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// One call; `Ok(None)` for an empty (204) answer.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Json>,
        idempotency_key: Option<&str>,
    ) -> Result<Option<Json>, ApiError> {
        let mut req = self.request(method, path, query);
        req.body = body;
        if let Some(k) = idempotency_key {
            req.headers.push(("Idempotency-Key", k.to_string()));
        }
        let repeatable = method != "POST" || idempotency_key.is_some();
        self.execute(&req, repeatable)
    }

    /// Streams a local file as the body of a `POST` (an upload). Never retried: the file may
    /// have been taken whole before the answer was lost, and a second upload then conflicts.
    /// No deadline but the resource's `timeouts.create`: a large file over a slow link takes
    /// as long as it takes, and the provider-wide `timeout` is meant for single calls.
    pub fn upload(
        &self,
        path: &str,
        query: &[(&str, String)],
        file: &std::path::Path,
    ) -> Result<Option<Json>, ApiError> {
        let mut req = self.request("POST", path, query);
        req.file = Some(file);
        req.timeout = self.explicit_timeout;
        self.execute(&req, false)
    }

    fn request<'a>(&self, method: &'a str, path: &'a str, query: &[(&str, String)]) -> Request<'a> {
        let mut req = Request::new(method, path);
        req.query = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        req.timeout = Some(self.timeout);
        req
    }

    fn execute(&self, req: &Request<'_>, repeatable: bool) -> Result<Option<Json>, ApiError> {
        let (method, path) = (req.method, req.path);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let err = match self.client.send(req) {
                Ok(r) => {
                    if r.confirm_deadline.is_some() {
                        self.request_confirm();
                    }
                    return Ok(match r.body {
                        Body::Json(j) => Some(j),
                        Body::Empty => None,
                        Body::Text(t) => Some(Json::String(t)),
                    });
                }
                Err(CliError::Api(p)) if p.status == 404 => {
                    // A DELETE retried after a lost answer finds the object gone: the first
                    // attempt deleted it, and its answer may have asked for a confirmation
                    // that is now unknown. Confirming the name is harmless when nothing waits.
                    if method == "DELETE" && attempt > 1 {
                        self.request_confirm();
                    }
                    return Err(ApiError::NotFound);
                }
                Err(CliError::Api(p)) => {
                    if p.status >= 500 && p.status != 501 && p.status != 507 {
                        ApiError::Problem(p)
                    } else {
                        return Err(ApiError::Problem(p));
                    }
                }
                Err(e) => ApiError::Other(e.to_string()),
            };
            if !repeatable || attempt > RETRIES {
                return Err(err);
            }
            tracing_line(&format!(
                "{method} {path} failed ({err}); retry {attempt}/{RETRIES}"
            ));
            std::thread::sleep(Duration::from_millis(500 << attempt));
        }
    }
}

/// Logs to stderr, which Terraform relays into TF_LOG output.
pub fn tracing_line(msg: &str) {
    eprintln!("[INFO] terraform-provider-ferrite: {msg}");
}

/// Parses a duration as Terraform users write them (`30s`, `10m`, `1h30m`, `500ms`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("'{s}' is not a duration (e.g. 30s, 10m, 1h30m)");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => return Err(bad()),
        };
        total += Duration::from_secs_f64(secs);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_like_terraforms() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        for bad in ["", "soon", "10", "m5", "5x"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
