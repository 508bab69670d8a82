//! `ferrite`: command-line client for the Ferrite API. Only flag parsing lives here; the
//! behaviour is in `ferrite::cli` so it can be tested without spawning processes.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "ferrite",
    version,
    about = "Command-line client for the Ferrite API",
    after_help = "Exit codes: 0 success, 1 API error or failed task, 2 usage/config/connection \
                  error, 3 task wait timed out."
)]
struct Cli {
    #[command(flatten)]
    globals: ferrite::cli::Globals,
    #[command(subcommand)]
    command: ferrite::cli::Command,
}

fn main() -> std::process::ExitCode {
    // clap exits with 2 on usage errors, matching the CLI's own code for them.
    let cli = Cli::parse();
    std::process::ExitCode::from(ferrite::cli::run(cli.globals, cli.command))
}
