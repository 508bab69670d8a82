//! The `ferrite` command-line client.
//!
//! The binary (`src/bin/ferrite.rs`) only parses flags; everything else lives here so it can
//! be unit-tested and reused. Commands:
//!
//! * `login`: exchanges a password for a ticket and saves it, with the endpoint and pinned
//!   certificate fingerprint, in the config file, so later commands need no flags.
//! * `api get|post|put|delete PATH [JSON]`: raw access to every route, in the spirit of
//!   Proxmox's `pvesh`; the API is the product, so the CLI does not hide it behind verbs.
//! * `task list|wait|log ID`: follow the long-running operations the API returns as 202 + task.
//! * `ct|vm list|show|create|start|stop|...|exec|console`, `net ...`, `storage ...`: resource
//!   verbs people type ([`verbs`], [`infra`]), each one route of the route table.
//! * `template busybox`: a minimal container template built from busybox-static.
//! * `install validate|devices|hash-password|prepare-iso|run`: the appliance installer.
//! * `completions SHELL`: shell completion scripts generated from these definitions.
//!
//! Exit codes are part of the interface (scripts branch on them): see [`EXIT_OK`],
//! [`EXIT_API`], [`EXIT_USAGE`] and [`EXIT_TIMEOUT`].

mod catalog;
mod client;
mod columns;
mod commands;
mod config;
mod console;
pub mod download;
mod error;
mod fields;
pub mod infra;
pub mod install;
mod output;
pub mod template;
pub mod verbs;

use std::path::PathBuf;

pub use client::{api_path, Body, Client, Request, Response, Trust};
pub use config::{default_config_path, Config};
pub use error::{CliError, Problem};
pub use output::Format;

/// The command succeeded (for `task wait`: the task succeeded).
pub const EXIT_OK: u8 = 0;
/// The API refused the request, or the awaited task failed or was cancelled.
pub const EXIT_API: u8 = 1;
/// Bad usage or an unreadable config.
pub const EXIT_USAGE: u8 = 2;
/// `task wait --timeout` elapsed before the task finished.
pub const EXIT_TIMEOUT: u8 = 3;
/// The daemon could not be reached, or its certificate was not the trusted one.
pub const EXIT_CONNECT: u8 = 4;

/// The whole command line: global options and one subcommand.
#[derive(Debug, clap::Parser)]
#[command(
    name = "ferrite",
    version,
    about = "Command-line client for the Ferrite API",
    after_help = "Exit codes: 0 success, 1 the API refused or a task failed, 2 usage or config \
                  error, 3 task wait timed out, 4 the daemon could not be reached or trusted. \
                  `ct exec` exits with the command's own code."
)]
pub struct Cli {
    #[command(flatten)]
    pub globals: Globals,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the CLI connects when neither a flag, the environment nor the config names an
/// endpoint: the daemon's own default listen address.
pub const DEFAULT_ENDPOINT: &str = "https://127.0.0.1:8006";

/// Options shared by every command. All are `global` so they may follow the subcommand
/// (`ferrite api get version --output json`), which is how people type them.
#[derive(Debug, Clone, clap::Args)]
pub struct Globals {
    /// API endpoint, e.g. https://host:8006 [default: the one saved by `login`, else
    /// https://127.0.0.1:8006].
    #[arg(long, env = "FERRITE_ENDPOINT", global = true)]
    pub endpoint: Option<String>,
    /// Ticket or API token sent as `Authorization: Bearer` [default: the ticket saved by
    /// `login`].
    #[arg(long, env = "FERRITE_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// SHA-256 fingerprint of the server certificate to trust (any case, colons optional)
    /// [default: the one saved by `login`].
    #[arg(long, env = "FERRITE_FINGERPRINT", global = true)]
    pub fingerprint: Option<String>,
    /// Accept any server certificate. Never saved by `login`: it applies to one invocation.
    #[arg(long, global = true)]
    pub insecure: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,
    /// Config file holding the saved login [default: $HOME/.config/ferrite/config.json].
    #[arg(long, env = "FERRITE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

/// The subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Log in with a password and save the ticket, endpoint and fingerprint to the config.
    Login(LoginArgs),
    /// Call any API route: `ferrite api get access/users`, `ferrite api post PATH '{...}'`.
    Api(ApiArgs),
    /// Wait for or read the log of a long-running operation.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Upload an ISO, a container template or a snippet into a pool: streamed, and checked
    /// against its SHA-256 by the daemon before the volume appears.
    Upload(UploadArgs),
    /// Download a file by URL into a pool (a task the daemon runs): checked against a
    /// SHA-256 or SHA-512 before the volume appears, decompressed on the way when its name
    /// ends in .xz, .gz or .zst (container templates excepted).
    Download(download::DownloadArgs),
    /// Containers: list, create, start, exec, console, snapshot, clone, ...
    #[command(subcommand)]
    Ct(verbs::GuestCommand),
    /// Virtual machines: list, create, start, console, snapshot, clone, ...
    #[command(subcommand)]
    Vm(verbs::GuestCommand),
    /// Host networking: bridges, VLANs and bonds.
    #[command(subcommand)]
    Net(infra::NetCommand),
    /// Storage pools and volumes.
    #[command(subcommand)]
    Storage(infra::StorageCommand),
    /// Container templates.
    #[command(subcommand)]
    Template(template::TemplateCommand),
    /// The appliance installer: validate answers, list devices, bake an answer into an ISO.
    #[command(subcommand)]
    Install(install::InstallCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `ferrite upload POOL FILE`.
#[derive(Debug, Clone, clap::Args)]
pub struct UploadArgs {
    /// Pool to upload into (e.g. `local`).
    pub pool: String,
    /// The file to send.
    pub file: PathBuf,
    /// Volume name [default: the file's name].
    #[arg(long)]
    pub name: Option<String>,
    /// What the file is: iso, template, snippets or images [default: iso for `.iso`,
    /// template for `.tar`, `.tar.*` and `.tgz`].
    #[arg(long)]
    pub content: Option<String>,
    /// The SHA-256 the file must have, e.g. from the distribution's SHA256SUMS [default: the
    /// file's own, computed here first, which still proves the transfer intact].
    #[arg(long)]
    pub sha256: Option<String>,
}

/// `ferrite login`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoginArgs {
    /// User to log in as (`name@realm`).
    #[arg(long, default_value = "root@local")]
    pub username: String,
    /// Read the password from the first line of stdin instead of prompting (for scripts).
    #[arg(long)]
    pub password_stdin: bool,
}

/// HTTP methods `ferrite api` accepts: the ones the API routes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    /// The method as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

/// `ferrite api METHOD PATH [JSON]`.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// HTTP method.
    #[arg(value_enum)]
    pub method: Method,
    /// Path relative to /api/v1 (a leading `/` or `/api/v1` prefix is accepted).
    pub path: String,
    /// JSON request body, or `-` to read it from stdin.
    pub body: Option<String>,
    /// Query parameter; repeat for several.
    #[arg(long = "query", short = 'q', value_name = "KEY=VALUE", value_parser = parse_query)]
    pub query: Vec<(String, String)>,
    /// Only apply the change if the object is still at this revision (its ETag).
    #[arg(long, value_name = "REVISION")]
    pub if_match: Option<String>,
    /// Makes a retried POST safe: the daemon replays the first response for the same key.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

/// `ferrite task ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TaskCommand {
    /// Recent tasks: id, type, object, state, user, creation time.
    List,
    /// Block until the task finishes; exit 0 if it succeeded, 1 if it failed or was
    /// cancelled, 3 if --timeout elapsed first.
    Wait {
        /// Task id (from the 202 response or its Location).
        id: String,
        /// Give up after this many seconds [default: wait indefinitely].
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
    },
    /// Print the task log as `TIME LEVEL MESSAGE` lines (raw JSON lines with --output json).
    Log {
        /// Task id.
        id: String,
        /// Keep streaming until the task finishes.
        #[arg(long, short = 'f')]
        follow: bool,
    },
}

/// Splits `KEY=VALUE` at the first `=`; values may themselves contain `=`.
fn parse_query(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not KEY=VALUE")),
    }
}

/// Runs one command and returns the process exit code. Errors are reported on stderr here so
/// every command formats them the same way.
pub fn run(globals: Globals, command: Command) -> u8 {
    match commands::execute(&globals, &command) {
        Ok(code) => code,
        // A reader that went away (`ferrite api get ... | head`) is not a failure.
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own consistency checks (duplicate names, global/local clashes) over the tree.
    #[test]
    fn the_command_tree_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn query_pairs_split_at_first_equals() {
        assert_eq!(
            parse_query("filter=a=b"),
            Ok(("filter".to_string(), "a=b".to_string()))
        );
        assert_eq!(parse_query("k="), Ok(("k".to_string(), String::new())));
        assert!(parse_query("novalue").is_err());
        assert!(parse_query("=v").is_err());
    }
}
