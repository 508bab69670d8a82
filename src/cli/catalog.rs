//! `ferrite template list|build|download`: the template catalogue from the command line.
//! Builds and downloads are tasks: the CLI follows the task's log (mmdebstrap's progress,
//! the download's) and exits as the task ended.

use serde_json::{json, Value};

use super::commands::{print_response, task_log, task_wait, Context};
use super::{columns, Body, CliError, Request, EXIT_OK};

/// `ferrite template build TEMPLATE`.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildArgs {
    /// Catalogue name, e.g. debian-12-minimal (see `ferrite template list`).
    pub template: String,
    /// Pool to store it in.
    #[arg(long, default_value = "local")]
    pub pool: String,
    /// Volume name [default: TEMPLATE.tar.zst].
    #[arg(long)]
    pub name: Option<String>,
    /// Debian mirror to bootstrap from [default: the daemon's].
    #[arg(long)]
    pub mirror: Option<String>,
    /// HTTP proxy for apt during the build (not kept in the template).
    #[arg(long)]
    pub proxy: Option<String>,
    /// Bootstrap again even if a build with the same inputs is cached.
    #[arg(long)]
    pub refresh: bool,
    /// Print the task and return at once.
    #[arg(long)]
    pub no_wait: bool,
}

/// `ferrite template download TEMPLATE`.
#[derive(Debug, Clone, clap::Args)]
pub struct DownloadArgs {
    /// Name of an index entry (see `ferrite template list`).
    pub template: String,
    /// Pool to store it in.
    #[arg(long, default_value = "local")]
    pub pool: String,
    /// Volume name [default: the file name in the entry's URL].
    #[arg(long)]
    pub name: Option<String>,
    /// Print the task and return at once.
    #[arg(long)]
    pub no_wait: bool,
}

pub(super) fn list(ctx: &Context) -> Result<u8, CliError> {
    let resp = ctx
        .client()?
        .send(&Request::new("GET", "templates/catalog"))?;
    let Body::Json(cat) = &resp.body else {
        return Err(CliError::Protocol {
            what: "GET templates/catalog".into(),
            detail: "the body is not JSON".into(),
        });
    };
    for e in cat["index_errors"].as_array().into_iter().flatten() {
        eprintln!(
            "warning: index {} could not be read: {}",
            e["index"].as_str().unwrap_or_default(),
            e["detail"].as_str().unwrap_or_default()
        );
    }
    let items: Vec<Value> = cat["items"].as_array().cloned().unwrap_or_default();
    super::verbs::print_items(ctx.format, columns::TEMPLATES, &items)
}

/// Starts a task with `body` at `path` and follows it (or prints it with `no_wait`): the
/// task's log as it arrives, then the task, with its outcome as the exit code.
pub(super) fn run_task(
    ctx: &Context,
    path: &str,
    body: &Value,
    no_wait: bool,
) -> Result<u8, CliError> {
    let resp = ctx.client()?.send(&Request {
        body: Some(body),
        ..Request::new("POST", path)
    })?;
    let id = match &resp.body {
        Body::Json(t) => t["id"].as_str().unwrap_or_default().to_string(),
        _ => String::new(),
    };
    if no_wait || id.is_empty() {
        print_response(ctx.format, &resp)?;
        return Ok(EXIT_OK);
    }
    task_log(ctx, &id, true)?;
    task_wait(ctx, &id, None)
}

pub(super) fn build(ctx: &Context, a: &BuildArgs) -> Result<u8, CliError> {
    let mut b = json!({"template": a.template, "pool": a.pool, "refresh": a.refresh});
    for (k, v) in [
        ("name", &a.name),
        ("mirror", &a.mirror),
        ("proxy", &a.proxy),
    ] {
        if let Some(v) = v {
            b[k] = json!(v);
        }
    }
    run_task(ctx, "templates/build", &b, a.no_wait)
}

pub(super) fn download(ctx: &Context, a: &DownloadArgs) -> Result<u8, CliError> {
    let mut b = json!({"template": a.template, "pool": a.pool});
    if let Some(n) = &a.name {
        b["name"] = json!(n);
    }
    run_task(ctx, "templates/download", &b, a.no_wait)
}
