//! Resource verbs people type (`ferrite ct start web`, `ferrite vm list`, `ferrite net list`),
//! in the spirit of `pct`/`qm`/`pvesm` and `incus`. Each verb is one API route; the table in
//! [`route`] names it, and a test checks every entry against `schema/routes.json`, so a renamed
//! route breaks the build's tests rather than the user. Bodies come from `KEY=VALUE` pairs
//! ([`super::fields`]), so no verb restates the schema's fields.

use std::io::Write;

use serde_json::{json, Value};

use super::columns::{self, Column};
use super::commands::{print_response, Context, RESPONSE_GRACE};
use super::{Body, CliError, Format, Request, EXIT_OK};

/// Containers or VMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestKind {
    Ct,
    Vm,
}

impl GuestKind {
    fn collection(self) -> &'static str {
        match self {
            GuestKind::Ct => "containers",
            GuestKind::Vm => "vms",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            GuestKind::Ct => "container",
            GuestKind::Vm => "vm",
        }
    }
}

/// `ferrite ct|vm ...`. GUEST is an id or a name.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum GuestCommand {
    /// List guests: id, name, state, addresses, memory, pool.
    List {
        /// Only names matching this glob.
        #[arg(long)]
        name: Option<String>,
        /// Only guests with this tag.
        #[arg(long)]
        tag: Option<String>,
    },
    /// Show one guest.
    Show { guest: String },
    /// Create from KEY=VALUE fields (dotted keys nest: net.net0.bridge=vmbr0; values are
    /// JSON when they parse, else strings) and/or --json.
    Create {
        fields: Vec<String>,
        /// A JSON object (or `-` for stdin); KEY=VALUE pairs override its fields.
        #[arg(long)]
        json: Option<String>,
        /// Start the guest once it is created.
        #[arg(long)]
        start: bool,
    },
    /// Change fields (KEY=VALUE; `KEY=null` clears).
    Update {
        guest: String,
        fields: Vec<String>,
        #[arg(long)]
        json: Option<String>,
    },
    /// Start a stopped guest.
    Start { guest: String },
    /// Stop at once (kill).
    Stop { guest: String },
    /// Ask the guest to shut down, then stop it after --timeout seconds.
    Shutdown {
        guest: String,
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Shut down and start again.
    Reboot {
        guest: String,
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Freeze a container or pause a VM.
    Pause { guest: String },
    /// Thaw a container or resume a VM.
    Resume { guest: String },
    /// Delete the guest and its volumes.
    Delete {
        guest: String,
        /// Stop it first if it runs.
        #[arg(long)]
        force: bool,
    },
    /// Take a snapshot named NAME.
    Snapshot { guest: String, name: String },
    /// List the guest's snapshots.
    Snapshots { guest: String },
    /// Roll the guest back to snapshot NAME (restore, for VMs).
    Rollback { guest: String, name: String },
    /// Clone into a new guest (`name=NEW` is required; `id=`, `snapshot=` optional).
    Clone { guest: String, fields: Vec<String> },
    /// Turn a stopped guest into a template.
    Template { guest: String },
    /// Run a command in a running container; its exit code becomes ferrite's.
    Exec {
        guest: String,
        /// Seconds before the command is killed [server default 60].
        #[arg(long)]
        timeout: Option<u64>,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Attach this terminal to the guest's console (detach with Ctrl-] or Enter ~ .).
    Console { guest: String },
}

/// The route a verb calls: method and path template (`{id}`, `{snapshot}`).
pub fn route(kind: GuestKind, verb: &str) -> Option<(&'static str, String)> {
    let c = kind.collection();
    let (m, p) = match (kind, verb) {
        (_, "list") => ("GET", format!("/{c}")),
        (_, "create") => ("POST", format!("/{c}")),
        (_, "show") => ("GET", format!("/{c}/{{id}}")),
        (_, "update") => ("PUT", format!("/{c}/{{id}}")),
        (_, "delete") => ("DELETE", format!("/{c}/{{id}}")),
        (_, "start" | "stop" | "shutdown" | "reboot" | "clone" | "template") => {
            ("POST", format!("/{c}/{{id}}/{verb}"))
        }
        (GuestKind::Ct, "pause") => ("POST", format!("/{c}/{{id}}/freeze")),
        (GuestKind::Ct, "resume") => ("POST", format!("/{c}/{{id}}/unfreeze")),
        (GuestKind::Vm, "pause" | "resume") => ("POST", format!("/{c}/{{id}}/{verb}")),
        (_, "snapshot") => ("POST", format!("/{c}/{{id}}/snapshots")),
        (_, "snapshots") => ("GET", format!("/{c}/{{id}}/snapshots")),
        (GuestKind::Ct, "rollback") => (
            "POST",
            format!("/{c}/{{id}}/snapshots/{{snapshot}}/rollback"),
        ),
        (GuestKind::Vm, "rollback") => (
            "POST",
            format!("/{c}/{{id}}/snapshots/{{snapshot}}/restore"),
        ),
        (GuestKind::Ct, "exec") => ("POST", format!("/{c}/{{id}}/exec")),
        (_, "console") => ("GET", format!("/{c}/{{id}}/console")),
        _ => return None,
    };
    Some((m, p))
}

impl GuestCommand {
    fn verb(&self) -> &'static str {
        match self {
            GuestCommand::List { .. } => "list",
            GuestCommand::Show { .. } => "show",
            GuestCommand::Create { .. } => "create",
            GuestCommand::Update { .. } => "update",
            GuestCommand::Start { .. } => "start",
            GuestCommand::Stop { .. } => "stop",
            GuestCommand::Shutdown { .. } => "shutdown",
            GuestCommand::Reboot { .. } => "reboot",
            GuestCommand::Pause { .. } => "pause",
            GuestCommand::Resume { .. } => "resume",
            GuestCommand::Delete { .. } => "delete",
            GuestCommand::Snapshot { .. } => "snapshot",
            GuestCommand::Snapshots { .. } => "snapshots",
            GuestCommand::Rollback { .. } => "rollback",
            GuestCommand::Clone { .. } => "clone",
            GuestCommand::Template { .. } => "template",
            GuestCommand::Exec { .. } => "exec",
            GuestCommand::Console { .. } => "console",
        }
    }

    fn guest(&self) -> Option<&str> {
        match self {
            GuestCommand::List { .. } | GuestCommand::Create { .. } => None,
            GuestCommand::Show { guest }
            | GuestCommand::Update { guest, .. }
            | GuestCommand::Start { guest }
            | GuestCommand::Stop { guest }
            | GuestCommand::Shutdown { guest, .. }
            | GuestCommand::Reboot { guest, .. }
            | GuestCommand::Pause { guest }
            | GuestCommand::Resume { guest }
            | GuestCommand::Delete { guest, .. }
            | GuestCommand::Snapshot { guest, .. }
            | GuestCommand::Snapshots { guest }
            | GuestCommand::Rollback { guest, .. }
            | GuestCommand::Clone { guest, .. }
            | GuestCommand::Template { guest }
            | GuestCommand::Exec { guest, .. }
            | GuestCommand::Console { guest } => Some(guest),
        }
    }
}

/// Finds a guest's id: digits are an id; anything else must be exactly one guest's name.
fn resolve(ctx: &Context, kind: GuestKind, guest: &str) -> Result<String, CliError> {
    if !guest.is_empty() && guest.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(guest.to_string());
    }
    let resp = ctx.client()?.send(&Request {
        query: vec![("name".into(), guest.to_string())],
        ..Request::new("GET", kind.collection())
    })?;
    let items = match &resp.body {
        Body::Json(v) => v["items"].as_array().cloned().unwrap_or_default(),
        _ => Vec::new(),
    };
    let ids: Vec<String> = items
        .iter()
        .filter(|i| i["name"] == json!(guest))
        .filter_map(|i| {
            i["id"]
                .as_u64()
                .map(|n| n.to_string())
                .or_else(|| i["id"].as_str().map(String::from))
        })
        .collect();
    match ids.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(CliError::Api(Box::new(super::Problem {
            status: 404,
            title: "Not found".into(),
            detail: Some(format!("no {} named '{guest}'", kind.noun())),
            invalid_params: Vec::new(),
            request_id: None,
            hint: Some(format!("`ferrite {} list` shows them", cli_name(kind))),
        }))),
        _ => Err(CliError::Usage(format!(
            "several {}s are named '{guest}': use an id ({})",
            kind.noun(),
            ids.join(", ")
        ))),
    }
}

fn cli_name(kind: GuestKind) -> &'static str {
    match kind {
        GuestKind::Ct => "ct",
        GuestKind::Vm => "vm",
    }
}

fn fill(template: &str, id: &str, snapshot: Option<&str>) -> String {
    let p = template.replace("{id}", id);
    match snapshot {
        Some(s) => p.replace("{snapshot}", s),
        None => p,
    }
}

/// Runs `ferrite ct|vm VERB ...`.
pub(super) fn guest(ctx: &Context, kind: GuestKind, cmd: &GuestCommand) -> Result<u8, CliError> {
    let verb = cmd.verb();
    let (method, template) = route(kind, verb).ok_or_else(|| {
        CliError::Usage(format!(
            "`{verb}` is for containers only; VMs have no {verb} route"
        ))
    })?;
    let id = match cmd.guest() {
        Some(g) => resolve(ctx, kind, g)?,
        None => String::new(),
    };
    let client = ctx.client()?;
    let send = |body: Option<&Value>, query: Vec<(String, String)>, snapshot: Option<&str>| {
        let path = fill(&template, &id, snapshot);
        client.send(&Request {
            body,
            query,
            timeout: Some(RESPONSE_GRACE * 2),
            ..Request::new(method, &path)
        })
    };
    match cmd {
        GuestCommand::List { name, tag } => {
            let mut query = Vec::new();
            if let Some(n) = name {
                query.push(("name".into(), n.clone()));
            }
            if let Some(t) = tag {
                query.push(("tag".into(), t.clone()));
            }
            list(ctx, &template, query, columns::GUESTS)
        }
        GuestCommand::Create {
            fields,
            json,
            start,
        } => {
            let body = super::fields::body(fields, json.as_deref())?;
            let resp = send(Some(&body), Vec::new(), None)?;
            print_response(ctx.format, &resp)?;
            if *start {
                let Body::Json(created) = &resp.body else {
                    return Err(CliError::Protocol {
                        what: format!("POST /{}", kind.collection()),
                        detail: "no JSON body".into(),
                    });
                };
                let id = created["id"].to_string().trim_matches('"').to_string();
                let path = format!("/{}/{id}/start", kind.collection());
                let resp = client.send(&Request {
                    timeout: Some(RESPONSE_GRACE * 2),
                    ..Request::new("POST", &path)
                })?;
                print_response(ctx.format, &resp)?;
            }
            Ok(EXIT_OK)
        }
        GuestCommand::Update { fields, json, .. } => {
            let body = super::fields::body(fields, json.as_deref())?;
            print_response(ctx.format, &send(Some(&body), Vec::new(), None)?)?;
            Ok(EXIT_OK)
        }
        GuestCommand::Shutdown { timeout, .. } | GuestCommand::Reboot { timeout, .. } => {
            let body = match timeout {
                Some(t) => json!({"timeout": t}),
                None => json!({}),
            };
            print_response(ctx.format, &send(Some(&body), Vec::new(), None)?)?;
            Ok(EXIT_OK)
        }
        GuestCommand::Delete { force, .. } => {
            let query = if *force {
                vec![("force".into(), "true".into())]
            } else {
                Vec::new()
            };
            send(None, query, None)?;
            Ok(EXIT_OK)
        }
        GuestCommand::Snapshot { name, .. } | GuestCommand::Rollback { name, .. } => {
            let resp = match cmd {
                GuestCommand::Snapshot { .. } => {
                    send(Some(&json!({"name": name})), Vec::new(), None)?
                }
                _ => send(None, Vec::new(), Some(name))?,
            };
            match (&resp.body, ctx.format) {
                (Body::Json(v), Format::Table) => {
                    println!("{} (snapshot {name})", one_line(kind, v))
                }
                _ => print_response(ctx.format, &resp)?,
            }
            Ok(EXIT_OK)
        }
        GuestCommand::Clone { fields, .. } => {
            let body = super::fields::body(fields, None)?;
            print_response(ctx.format, &send(Some(&body), Vec::new(), None)?)?;
            Ok(EXIT_OK)
        }
        GuestCommand::Exec {
            command, timeout, ..
        } => {
            let mut body = json!({"command": command});
            if let Some(t) = timeout {
                body["timeout"] = json!(t);
            }
            let resp = send(Some(&body), Vec::new(), None)?;
            exec_result(ctx.format, &resp.body)
        }
        GuestCommand::Console { .. } => super::console::attach(ctx, &fill(&template, &id, None)),
        _ => {
            let resp = send(None, Vec::new(), None)?;
            match (&resp.body, ctx.format, verb) {
                (_, _, "show" | "snapshots") | (_, Format::Json | Format::Yaml, _) => {
                    print_response(ctx.format, &resp)?
                }
                (Body::Json(v), _, _) => println!("{}", one_line(kind, v)),
                _ => {}
            }
            Ok(EXIT_OK)
        }
    }
}

/// `container 101 (web): running`, for power actions people read at a glance.
fn one_line(kind: GuestKind, v: &Value) -> String {
    let state = v["status"]["state"]
        .as_str()
        .or_else(|| v["state"].as_str())
        .unwrap_or("done");
    format!(
        "{} {} ({}): {state}",
        kind.noun(),
        v["id"],
        v["name"].as_str().unwrap_or_default()
    )
}

/// Prints an exec's output as the command wrote it; its exit code becomes ours.
fn exec_result(format: Format, body: &Body) -> Result<u8, CliError> {
    let Body::Json(r) = body else {
        return Err(CliError::Protocol {
            what: "exec".into(),
            detail: "no JSON body".into(),
        });
    };
    if format != Format::Table {
        let mut out = std::io::stdout().lock();
        super::output::write_value(&mut out, r, format).map_err(CliError::Output)?;
        return Ok(EXIT_OK);
    }
    let out = r["stdout"].as_str().unwrap_or_default();
    let err = r["stderr"].as_str().unwrap_or_default();
    std::io::stdout()
        .write_all(out.as_bytes())
        .and_then(|_| std::io::stdout().flush())
        .map_err(CliError::Output)?;
    std::io::stderr()
        .write_all(err.as_bytes())
        .map_err(CliError::Output)?;
    if r["truncated"].as_bool() == Some(true) {
        eprintln!("(output truncated by the daemon)");
    }
    let code = r["exit_code"].as_i64().unwrap_or(1);
    Ok(u8::try_from(code).unwrap_or(1))
}

/// Fetches every page of a list and prints it as columns (or whole, for json/yaml).
pub(super) fn list(
    ctx: &Context,
    path: &str,
    query: Vec<(String, String)>,
    cols: &[Column],
) -> Result<u8, CliError> {
    let items = fetch_all(ctx, path, query)?;
    print_items(ctx.format, cols, &items)
}

/// Every item of a paginated list.
pub(super) fn fetch_all(
    ctx: &Context,
    path: &str,
    query: Vec<(String, String)>,
) -> Result<Vec<Value>, CliError> {
    let client = ctx.client()?;
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut q = query.clone();
        q.push(("limit".into(), "1000".into()));
        if let Some(t) = &token {
            q.push(("page_token".into(), t.clone()));
        }
        let resp = client.send(&Request {
            query: q,
            ..Request::new("GET", path)
        })?;
        let Body::Json(v) = resp.body else {
            return Err(CliError::Protocol {
                what: format!("GET {path}"),
                detail: "no JSON body".into(),
            });
        };
        items.extend(v["items"].as_array().cloned().unwrap_or_default());
        match v["next_page_token"].as_str() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => return Ok(items),
        }
    }
}

/// Items as columns, or the whole list as JSON/YAML.
pub(super) fn print_items(
    format: Format,
    cols: &[Column],
    items: &[Value],
) -> Result<u8, CliError> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Table => columns::write(&mut out, cols, items),
        _ => super::output::write_value(&mut out, &Value::Array(items.to_vec()), format),
    }
    .map_err(CliError::Output)?;
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every verb's route is in the route table, so a renamed route fails here.
    #[test]
    fn every_verb_calls_a_real_route() {
        let reg = crate::schema::Registry::load().expect("schema");
        let verbs = [
            "list",
            "show",
            "create",
            "update",
            "start",
            "stop",
            "shutdown",
            "reboot",
            "pause",
            "resume",
            "delete",
            "snapshot",
            "snapshots",
            "rollback",
            "clone",
            "template",
            "exec",
            "console",
        ];
        let mut checked = 0;
        for kind in [GuestKind::Ct, GuestKind::Vm] {
            for verb in verbs {
                let Some((method, path)) = route(kind, verb) else {
                    assert_eq!((kind, verb), (GuestKind::Vm, "exec"), "only VMs lack exec");
                    continue;
                };
                let found = reg.routes().iter().any(|r| {
                    r.method == method
                        && r.path.replace("{snapshot}", "{s}") == path.replace("{snapshot}", "{s}")
                });
                assert!(found, "{kind:?} {verb}: {method} {path} is not a route");
                checked += 1;
            }
        }
        assert_eq!(checked, 35);
    }
}
