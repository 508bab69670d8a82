//! The commands: settings resolution, `login`, `api` and `task wait|log`.

use std::io::{self, BufRead, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::client::normalize_endpoint;
use super::output::{log_line, write_value};
use super::{
    default_config_path, ApiArgs, Body, CliError, Client, Command, Config, Format, Globals,
    LoginArgs, Problem, Request, Response, TaskCommand, Trust, UploadArgs, DEFAULT_ENDPOINT,
    EXIT_OK,
};

/// Longest single `?wait=` poll: short enough that a proxy or NAT idle timeout does not cut
/// the connection, long enough that waiting costs few requests.
const WAIT_CHUNK_SECS: u64 = 30;
/// Slack on top of a server-side wait before the client gives up on a response.
pub(super) const RESPONSE_GRACE: Duration = Duration::from_secs(60);

/// The settings one invocation runs with, after merging flags, environment and config.
pub(super) struct Context {
    endpoint: String,
    trust: Trust,
    token: Option<String>,
    /// The saved login, when it belongs to `endpoint`; kept for hints on 401.
    saved: Option<Config>,
    token_from_config: bool,
    config_path: Option<PathBuf>,
    pub(super) format: Format,
}

/// Treats an empty flag or variable (`FERRITE_TOKEN=`) as unset.
fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl Context {
    /// Flag/env beat the config file. The saved fingerprint and ticket are only used for the
    /// endpoint they were saved for: a ticket for one daemon must never be sent to another,
    /// and another daemon's certificate must not be checked against the wrong pin.
    fn resolve(g: &Globals) -> Result<Context, CliError> {
        let config_path = g.config.clone().or_else(default_config_path);
        let saved = match &config_path {
            Some(p) => Config::load(p)?,
            None => None,
        };
        let endpoint = normalize_endpoint(
            non_empty(&g.endpoint)
                .or_else(|| saved.as_ref().and_then(|c| non_empty(&c.endpoint)))
                .unwrap_or(DEFAULT_ENDPOINT),
        )?;
        let saved = saved.filter(|c| match non_empty(&c.endpoint) {
            None => true,
            Some(e) => normalize_endpoint(e).is_ok_and(|e| e == endpoint),
        });
        let fingerprint = non_empty(&g.fingerprint)
            .or_else(|| saved.as_ref().and_then(|c| non_empty(&c.fingerprint)));
        let trust = match fingerprint {
            _ if g.insecure => Trust::Insecure,
            Some(fp) => Trust::pinned(fp)?,
            None => Trust::Unpinned,
        };
        let flag_token = non_empty(&g.token).map(String::from);
        let saved_token = saved
            .as_ref()
            .and_then(|c| non_empty(&c.ticket))
            .map(String::from);
        let token_from_config = flag_token.is_none() && saved_token.is_some();
        Ok(Context {
            endpoint,
            trust,
            token: flag_token.or(saved_token),
            saved,
            token_from_config,
            config_path,
            format: g.output,
        })
    }

    pub(super) fn client(&self) -> Result<Client, CliError> {
        Client::new(&self.endpoint, self.trust.clone(), self.token.clone())
    }

    /// Adds the obvious next step to an authentication failure.
    fn hint(&self, e: CliError) -> CliError {
        let CliError::Api(mut p) = e else { return e };
        if p.status == 401 && p.hint.is_none() {
            p.hint = Some(if self.token_from_config {
                let path = self
                    .config_path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                let when = self
                    .saved
                    .as_ref()
                    .and_then(|c| c.expires_at.as_deref())
                    .filter(|t| {
                        crate::time::parse_rfc3339(t).is_some_and(|t| t <= crate::time::now_unix())
                    })
                    .map(|t| format!(" expired at {t}"))
                    .unwrap_or_else(|| " may have expired or been revoked".to_string());
                format!("the ticket saved in {path}{when}; run `ferrite login` again")
            } else if self.token.is_none() {
                "run `ferrite login` first, or pass --token (or FERRITE_TOKEN)".to_string()
            } else {
                "the --token (or FERRITE_TOKEN) value was not accepted".to_string()
            });
        }
        CliError::Api(p)
    }
}

/// Runs a parsed command; returns the exit code on success.
pub(super) fn execute(g: &Globals, cmd: &Command) -> Result<u8, CliError> {
    // The installer's tools talk to no daemon: no config or endpoint needed.
    if let Command::Install(c) = cmd {
        return super::install::execute(c);
    }
    let ctx = Context::resolve(g)?;
    let result = match cmd {
        Command::Login(a) => login(&ctx, a),
        Command::Api(a) => api(&ctx, a),
        Command::Task(TaskCommand::Wait { id, timeout }) => task_wait(&ctx, id, *timeout),
        Command::Task(TaskCommand::Log { id, follow }) => task_log(&ctx, id, *follow),
        Command::Task(TaskCommand::List) => super::infra::task_list(&ctx),
        Command::Upload(a) => upload(&ctx, a),
        Command::Download(a) => super::download::run(&ctx, a),
        Command::Ct(c) => super::verbs::guest(&ctx, super::verbs::GuestKind::Ct, c),
        Command::Vm(c) => super::verbs::guest(&ctx, super::verbs::GuestKind::Vm, c),
        Command::Net(c) => super::infra::net(&ctx, c),
        Command::Storage(c) => super::infra::storage(&ctx, c),
        Command::Template(c) => super::template::run(&ctx, c),
        Command::Completions { shell } => completions(*shell),
        Command::Install(c) => super::install::execute(c),
    };
    result.map_err(|e| ctx.hint(e))
}

/// `ferrite completions SHELL`: the script for the whole command tree.
fn completions(shell: clap_complete::Shell) -> Result<u8, CliError> {
    use clap::CommandFactory;
    let mut cmd = super::Cli::command();
    let mut out = io::stdout().lock();
    clap_complete::generate(shell, &mut cmd, "ferrite", &mut out);
    out.flush().map_err(CliError::Output)?;
    Ok(EXIT_OK)
}

/// Reads all of stdin (request bodies, passwords).
pub(super) fn read_stdin() -> Result<String, CliError> {
    let mut s = String::new();
    io::stdin()
        .read_to_string(&mut s)
        .map_err(CliError::Stdin)?;
    Ok(s)
}

/// `ferrite login`: exchanges the password for a ticket and saves it.
fn login(ctx: &Context, a: &LoginArgs) -> Result<u8, CliError> {
    let path = ctx.config_path.clone().ok_or(CliError::NoConfigPath)?;
    let password = if a.password_stdin {
        let s = read_stdin()?;
        s.lines().next().unwrap_or_default().to_string()
    } else {
        rpassword::prompt_password(format!("Password for {}: ", a.username))
            .map_err(CliError::Password)?
    };
    if password.is_empty() {
        return Err(CliError::Usage("the password is empty".to_string()));
    }
    // Log in without any saved ticket: it may be the expired one this login replaces.
    let client = Client::new(&ctx.endpoint, ctx.trust.clone(), None)?;
    let body = json!({"username": a.username, "password": password});
    let resp = client.send(&Request {
        body: Some(&body),
        ..Request::new("POST", "access/login")
    })?;
    let what = "POST /access/login";
    let Body::Json(v) = resp.body else {
        return Err(protocol(what, "the body is not JSON"));
    };
    let ticket = v
        .get("ticket")
        .and_then(Value::as_str)
        .ok_or_else(|| protocol(what, "no ticket in the response"))?;
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(String::from);
    let config = Config {
        endpoint: Some(ctx.endpoint.clone()),
        // Only a fingerprint that was actually checked is worth saving; --insecure is
        // deliberately not persisted.
        fingerprint: match &ctx.trust {
            Trust::Pinned(fp) => Some(fp.clone()),
            _ => None,
        },
        ticket: Some(ticket.to_string()),
        username: text("username").or_else(|| Some(a.username.clone())),
        expires_at: text("expires_at"),
    };
    config.save(&path)?;
    let mut out = io::stdout().lock();
    match ctx.format {
        Format::Json | Format::Yaml => write_value(
            &mut out,
            &json!({
                "endpoint": config.endpoint,
                "username": config.username,
                "expires_at": config.expires_at,
                "config": path.display().to_string(),
            }),
            Format::Json,
        ),
        Format::Table => writeln!(
            out,
            "Logged in to {} as {}; the ticket expires at {}.\nSaved to {}.",
            ctx.endpoint,
            config.username.as_deref().unwrap_or_default(),
            config.expires_at.as_deref().unwrap_or("an unknown time"),
            path.display()
        ),
    }
    .map_err(CliError::Output)?;
    Ok(EXIT_OK)
}

fn protocol(what: &str, detail: &str) -> CliError {
    CliError::Protocol {
        what: what.to_string(),
        detail: detail.to_string(),
    }
}

/// An `If-Match` value: a bare revision is quoted into the ETag form the API issues.
fn etag(rev: &str) -> String {
    let r = rev.trim();
    if r == "*" || r.starts_with('"') || r.starts_with("W/") {
        r.to_string()
    } else {
        format!("\"{r}\"")
    }
}

/// `ferrite api METHOD PATH [JSON]`.
fn api(ctx: &Context, a: &ApiArgs) -> Result<u8, CliError> {
    let body: Option<Value> = match a.body.as_deref() {
        None => None,
        Some(text) => {
            let text = if text == "-" {
                read_stdin()?
            } else {
                text.to_string()
            };
            Some(
                serde_json::from_str(&text).map_err(|source| CliError::Json {
                    what: "the request body".to_string(),
                    source,
                })?,
            )
        }
    };
    let mut headers = Vec::new();
    if let Some(rev) = &a.if_match {
        headers.push(("If-Match", etag(rev)));
    }
    if let Some(k) = &a.idempotency_key {
        headers.push(("Idempotency-Key", k.clone()));
    }
    // A `?wait=N` makes the server hold the response for up to N seconds.
    let server_wait = a
        .query
        .iter()
        .find(|(k, _)| k == "wait")
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .unwrap_or(0);
    let req = Request {
        method: a.method.as_str(),
        path: &a.path,
        query: a.query.clone(),
        body: body.as_ref(),
        file: None,
        headers,
        timeout: Some(RESPONSE_GRACE * 2 + Duration::from_secs(server_wait)),
    };
    let resp = ctx.client()?.send(&req)?;
    print_response(ctx.format, &resp)?;
    Ok(EXIT_OK)
}

/// `ferrite upload`: streams a file to `POST /storage/pools/{pool}/upload`.
pub(super) fn upload(ctx: &Context, a: &UploadArgs) -> Result<u8, CliError> {
    let file_name = a
        .file
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| CliError::Usage(format!("{} names no file", a.file.display())))?;
    let content = match &a.content {
        Some(c) => c.clone(),
        None => content_of(file_name)
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "cannot tell what {file_name} is from its name: pass --content \
                     (iso, template, snippets or images)"
                ))
            })?
            .to_string(),
    };
    let name = a.name.clone().unwrap_or_else(|| file_name.to_string());
    let client = ctx.client()?;
    let sha256 = match &a.sha256 {
        Some(s) => s.trim().to_ascii_lowercase(),
        None => {
            // Hashing a large file takes a while: learn first whether the name is taken.
            let volume = format!("storage/pools/{}/volumes/{name}", a.pool);
            if client.send(&Request::new("GET", &volume)).is_ok() {
                return Err(CliError::Api(Box::new(Problem {
                    status: 409,
                    title: "Already exists".into(),
                    detail: Some(format!("volume '{}:{name}' already exists", a.pool)),
                    invalid_params: Vec::new(),
                    request_id: None,
                    hint: Some("choose another --name, or delete the volume first".into()),
                })));
            }
            file_sha256(&a.file)?
        }
    };
    let path = format!("storage/pools/{}/upload", a.pool);
    let req = Request {
        query: vec![
            ("name".into(), name),
            ("content".into(), content),
            ("sha256".into(), sha256),
        ],
        file: Some(&a.file),
        // A large file over a slow link takes as long as it takes.
        timeout: None,
        ..Request::new("POST", &path)
    };
    let resp = client.send(&req)?;
    print_response(ctx.format, &resp)?;
    Ok(EXIT_OK)
}

/// The content type a file's name implies, when it implies one.
pub(super) fn content_of(file_name: &str) -> Option<&'static str> {
    let n = file_name.to_ascii_lowercase();
    if n.ends_with(".iso") {
        Some("iso")
    } else if n.ends_with(".tar") || n.contains(".tar.") || n.ends_with(".tgz") {
        Some("template")
    } else {
        None
    }
}

/// The hex SHA-256 of a file (streamed into the hasher, as `vmm::snapshot::verify` does).
fn file_sha256(path: &std::path::Path) -> Result<String, CliError> {
    use sha2::{Digest, Sha256};
    let err = |source| CliError::File {
        path: path.to_path_buf(),
        source,
    };
    let mut h = Sha256::new();
    io::copy(&mut std::fs::File::open(path).map_err(err)?, &mut h).map_err(err)?;
    Ok(hex::encode(h.finalize()))
}

/// Prints a response body, and for created objects or accepted tasks where to find them.
pub(super) fn print_response(format: Format, resp: &Response) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    match &resp.body {
        Body::Empty => {}
        Body::Json(v) => write_value(&mut out, v, format).map_err(CliError::Output)?,
        Body::Text(t) => {
            out.write_all(t.as_bytes()).map_err(CliError::Output)?;
            if !t.ends_with('\n') {
                writeln!(out).map_err(CliError::Output)?;
            }
        }
    }
    if let Body::Json(v) = &resp.body {
        if let (Format::Table, Some(next)) = (format, v.get("next_page_token")) {
            let next = next.as_str().unwrap_or_default();
            eprintln!("(more items: add --query page_token={next})");
        }
    }
    if let (201 | 202, Some(loc)) = (resp.status, &resp.location) {
        // In JSON mode stdout stays one parseable document.
        match format {
            Format::Table => writeln!(out, "Location: {loc}").map_err(CliError::Output)?,
            Format::Json | Format::Yaml => eprintln!("Location: {loc}"),
        }
        if let Some(id) = loc.strip_prefix(&format!("{}/tasks/", crate::API_PREFIX)) {
            if format == Format::Table {
                eprintln!("(follow it with: ferrite task wait {id})");
            }
        }
    }
    if let Some(d) = &resp.confirm_deadline {
        eprintln!(
            "This change touches a management interface and is rolled back at {d} unless \
             confirmed: ferrite api post network/confirm (from a connection that still works)"
        );
    }
    out.flush().map_err(CliError::Output)
}

/// Accepts a bare task id or a pasted Location (`/api/v1/tasks/ID`), and refuses anything
/// that could change the request path.
fn task_id(id: &str) -> Result<&str, CliError> {
    let id = id.trim();
    let id = id.rsplit_once("/tasks/").map_or(id, |(_, rest)| rest);
    let ok = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(id)
    } else {
        Err(CliError::Usage(format!("'{id}' is not a task id")))
    }
}

/// `ferrite task wait ID`: long-polls in chunks until the task finishes or time runs out.
pub(super) fn task_wait(ctx: &Context, id: &str, timeout: Option<u64>) -> Result<u8, CliError> {
    let id = task_id(id)?;
    let client = ctx.client()?;
    let path = format!("tasks/{id}");
    let deadline = timeout.map(|t| Instant::now() + Duration::from_secs(t));
    loop {
        let chunk = match deadline {
            None => WAIT_CHUNK_SECS,
            // Round up so a fraction of a second left is still waited for, not spun on.
            Some(d) => {
                let ms = d.saturating_duration_since(Instant::now()).as_millis();
                u64::try_from(ms.div_ceil(1000))
                    .unwrap_or(WAIT_CHUNK_SECS)
                    .min(WAIT_CHUNK_SECS)
            }
        };
        let resp = client.send(&Request {
            query: vec![("wait".to_string(), chunk.to_string())],
            timeout: Some(Duration::from_secs(chunk) + RESPONSE_GRACE),
            ..Request::new("GET", &path)
        })?;
        let Body::Json(task) = resp.body else {
            return Err(protocol(&format!("GET {path}"), "the body is not JSON"));
        };
        let state = task
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string();
        match state.as_str() {
            "succeeded" => {
                print_task(ctx.format, &task)?;
                return Ok(EXIT_OK);
            }
            "failed" | "cancelled" => {
                print_task(ctx.format, &task)?;
                return Err(CliError::TaskUnsuccessful {
                    id: id.to_string(),
                    state,
                    problem: task.get("problem").cloned(),
                });
            }
            _ => {}
        }
        if let (Some(d), Some(t)) = (deadline, timeout) {
            if Instant::now() >= d {
                return Err(CliError::TaskTimeout {
                    id: id.to_string(),
                    state,
                    seconds: t,
                });
            }
        }
    }
}

fn print_task(format: Format, task: &Value) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    write_value(&mut out, task, format).map_err(CliError::Output)?;
    out.flush().map_err(CliError::Output)
}

/// `ferrite task log ID [--follow]`: prints lines as they arrive.
pub(super) fn task_log(ctx: &Context, id: &str, follow: bool) -> Result<u8, CliError> {
    let id = task_id(id)?;
    let path = format!("tasks/{id}/log");
    let mut query = Vec::new();
    if follow {
        query.push(("follow".to_string(), "true".to_string()));
    }
    let reader = ctx.client()?.stream(&Request {
        query,
        // A followed task may stay quiet for a long time; only the server ends the stream.
        timeout: (!follow).then_some(RESPONSE_GRACE * 2),
        ..Request::new("GET", &path)
    })?;
    let mut out = io::stdout().lock();
    for line in reader.lines() {
        let line = line.map_err(|source| CliError::ReadResponse {
            what: format!("GET {path}"),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let text = match ctx.format {
            Format::Json | Format::Yaml => line,
            // A line that is not JSON is shown as is rather than lost.
            Format::Table => serde_json::from_str::<Value>(&line)
                .map(|v| log_line(&v))
                .unwrap_or(line),
        };
        writeln!(out, "{text}").map_err(CliError::Output)?;
        out.flush().map_err(CliError::Output)?;
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_quoted() {
        assert_eq!(etag("3"), "\"3\"");
        assert_eq!(etag("\"3\""), "\"3\"");
        assert_eq!(etag("*"), "*");
    }

    #[test]
    fn upload_content_follows_the_file_name() {
        assert_eq!(content_of("debian-12.7.0-amd64-netinst.ISO"), Some("iso"));
        assert_eq!(content_of("alpine-3.20.tar.xz"), Some("template"));
        assert_eq!(content_of("rootfs.tgz"), Some("template"));
        assert_eq!(content_of("user-data.yaml"), None);
    }

    #[test]
    fn task_ids_accept_locations() {
        assert_eq!(task_id("abc-1").ok(), Some("abc-1"));
        assert_eq!(task_id("/api/v1/tasks/abc-1").ok(), Some("abc-1"));
        assert!(task_id("../x").is_err());
        assert!(task_id("").is_err());
    }

    fn globals(endpoint: Option<&str>, config: PathBuf) -> Globals {
        Globals {
            endpoint: endpoint.map(String::from),
            token: None,
            fingerprint: None,
            insecure: false,
            output: Format::Table,
            config: Some(config),
        }
    }

    #[test]
    fn saved_login_applies_only_to_its_endpoint() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("config.json");
        let fp = "AB:".repeat(31) + "AB";
        Config {
            endpoint: Some("https://a:8006".into()),
            fingerprint: Some(fp.clone()),
            ticket: Some("T".into()),
            ..Default::default()
        }
        .save(&p)
        .expect("save");

        let ctx = Context::resolve(&globals(None, p.clone())).expect("resolve");
        assert_eq!(ctx.endpoint, "https://a:8006");
        assert_eq!(ctx.trust, Trust::Pinned(fp));
        assert_eq!(ctx.token.as_deref(), Some("T"));

        let ctx = Context::resolve(&globals(Some("https://b:8006"), p)).expect("resolve");
        assert_eq!(ctx.trust, Trust::Unpinned);
        assert_eq!(ctx.token, None);
    }
}
