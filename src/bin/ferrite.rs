//! `ferrite`: command-line client for the Ferrite API. Only flag parsing lives here; the
//! behaviour is in `ferrite::cli` so it can be tested without spawning processes.

use clap::Parser;

fn main() -> std::process::ExitCode {
    // clap exits with 2 on usage errors, matching the CLI's own code for them.
    let cli = ferrite::cli::Cli::parse();
    std::process::ExitCode::from(ferrite::cli::run(cli.globals, cli.command))
}
