//! `ferrite-ctr`: the single-threaded helper `ferrited` runs to start a container (`start`,
//! spec as JSON on stdin, prints `{"pid": N}`) or to run a command inside one (`exec`). Kept
//! apart from the daemon because forking into namespaces is unsafe in a multi-threaded process.

use std::io::Read;

use clap::{Parser, Subcommand};
use ferrite::container::cgroup::Cgroup;
use ferrite::container::runtime;

#[derive(Parser)]
#[command(
    name = "ferrite-ctr",
    about = "Ferrite container runtime helper (run by ferrited)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a container; the spec (JSON) comes on stdin.
    Start,
    /// Run a command in a running container.
    Exec {
        /// The container's cgroup, relative to the hierarchy roots.
        #[arg(long)]
        cgroup: String,
        #[arg(long)]
        pid: i32,
        #[arg(long)]
        privileged: bool,
        #[arg(long)]
        keyctl: bool,
        #[arg(long)]
        nesting: bool,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Start => {
            let mut s = String::new();
            let r = std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("reading the spec: {e}"))
                .and_then(|_| {
                    serde_json::from_str::<runtime::StartSpec>(&s)
                        .map_err(|e| format!("bad spec: {e}"))
                })
                .and_then(|spec| {
                    let cg = Cgroup::new(&spec.cgroup);
                    runtime::start(&spec, &|pid| {
                        cg.add(pid).map_err(|e| e.to_string())?;
                        // The container's root owns its cgroup2 tree (systemd as init
                        // creates its slices there).
                        let root_uid = if spec.privileged { 0 } else { spec.id_base };
                        cg.delegate(root_uid).map_err(|e| e.to_string())
                    })
                });
            match r {
                Ok(pid) => {
                    println!("{}", serde_json::json!({ "pid": pid }));
                    0
                }
                Err(e) => {
                    eprintln!("{e}");
                    1
                }
            }
        }
        Cmd::Exec {
            cgroup,
            pid,
            privileged,
            keyctl,
            nesting,
            command,
        } => {
            let cg = Cgroup::new(&cgroup);
            match runtime::exec(pid, privileged, keyctl, nesting, &command, &|p| {
                cg.add(p).map_err(|e| e.to_string())
            }) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("ferrite-ctr: {e}");
                    125
                }
            }
        }
    };
    std::process::exit(code);
}
