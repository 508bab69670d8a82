//! `ferrite install ...`: the appliance installer's tools, usable on the ISO and on any
//! machine that prepares answers: `validate` an answer, list the `devices` its filters can
//! match, `hash-password` for the answer's admin hash, `prepare-iso` to bake an answer into
//! an ISO, and `run` (what the ISO's initramfs calls).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::install::{answer, devices, run};

use super::{CliError, EXIT_API, EXIT_OK};

/// `ferrite install ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum InstallCommand {
    /// Check an answer file (TOML, or JSON by name or content); exit 1 naming every bad field.
    Validate {
        /// The answer file.
        file: PathBuf,
        /// Print the answer with every default filled in, as JSON.
        #[arg(long)]
        show: bool,
    },
    /// Disks and NICs this machine has, with the properties answer filters match on.
    Devices,
    /// Hash a password for `ferrite.admin_password_hash` (argon2id), read from stdin.
    HashPassword,
    /// Copy an installer ISO, adding an answer that it uses when no other source has one.
    PrepareIso {
        /// The answer to bake in (validated first).
        #[arg(long)]
        answer: PathBuf,
        /// The Ferrite ISO to start from.
        #[arg(value_name = "IN")]
        source_iso: PathBuf,
        /// Where to write the new ISO (`output` would clash with the global `--output`).
        #[arg(value_name = "OUT")]
        target_iso: PathBuf,
    },
    /// Install unattended (run by the ISO's initramfs inside the system image).
    Run {
        /// Where the installer ISO is mounted.
        #[arg(long, default_value = "/run/iso")]
        iso: PathBuf,
        /// Seconds to wait for a filesystem labelled FERRITE-ANS to appear.
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
}

fn registry() -> Result<crate::schema::Registry, CliError> {
    crate::schema::Registry::load().map_err(|e| CliError::Usage(e.to_string()))
}

/// Runs an install subcommand; needs no API connection.
pub fn execute(cmd: &InstallCommand) -> Result<u8, CliError> {
    match cmd {
        InstallCommand::Validate { file, show } => validate(file, *show),
        InstallCommand::Devices => {
            let d = devices::disks(Path::new("/sys"), &devices::label_of);
            let n = devices::nics(Path::new("/sys"));
            let doc = serde_json::json!({"disks": d, "nics": n});
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            Ok(EXIT_OK)
        }
        InstallCommand::HashPassword => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| CliError::Usage(format!("reading stdin: {e}")))?;
            let pw = line.trim_end_matches(['\r', '\n']);
            if pw.is_empty() {
                return Err(CliError::Usage("the password on stdin is empty".into()));
            }
            let h = crate::access::password::hash(pw).map_err(CliError::Usage)?;
            println!("{h}");
            Ok(EXIT_OK)
        }
        InstallCommand::PrepareIso {
            answer,
            source_iso,
            target_iso,
        } => prepare_iso(answer, source_iso, target_iso),
        InstallCommand::Run { iso, wait } => {
            // The one command here that erases disks runs only on the installer's own boot.
            let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
            if !cmdline.split_whitespace().any(|w| w == "ferrite.mode=live") {
                return Err(CliError::Usage(
                    "`ferrite install run` erases disks and only runs from the Ferrite ISO \
                     (kernel command line ferrite.mode=live); to check an answer here use \
                     `ferrite install validate`"
                        .into(),
                ));
            }
            Ok(run::main(&run::Options {
                iso: iso.clone(),
                lower: PathBuf::from("/"),
                wait: Duration::from_secs(*wait),
            }))
        }
    }
}

fn read_answer(
    file: &Path,
) -> Result<Result<answer::InstallAnswer, answer::AnswerError>, CliError> {
    let text = std::fs::read_to_string(file).map_err(|source| CliError::File {
        path: file.to_path_buf(),
        source,
    })?;
    let fmt = answer::Format::guess(&file.display().to_string(), &text);
    Ok(answer::parse(&registry()?, &text, fmt))
}

fn validate(file: &Path, show: bool) -> Result<u8, CliError> {
    match read_answer(file)? {
        Ok(a) => {
            if show {
                println!("{}", serde_json::to_string_pretty(&a).unwrap_or_default());
            } else {
                println!("{}: valid", file.display());
            }
            Ok(EXIT_OK)
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            Ok(EXIT_API)
        }
    }
}

fn prepare_iso(answer: &Path, input: &Path, output: &Path) -> Result<u8, CliError> {
    if let Err(e) = read_answer(answer)? {
        eprintln!("{}: {e}", answer.display());
        return Ok(EXIT_API);
    }
    let name = if answer.extension().is_some_and(|x| x == "json") {
        "answer.json"
    } else {
        "answer.toml"
    };
    // xorriso rewrites the ISO with the file added and replays the boot setup (BIOS, EFI and
    // the hybrid MBR/GPT) that grub-mkrescue made.
    let st = std::process::Command::new("xorriso")
        .args(["-indev"])
        .arg(input)
        .args(["-outdev"])
        .arg(output)
        .args(["-map"])
        .arg(answer)
        .arg(format!("/ferrite/{name}"))
        .args(["-boot_image", "any", "replay"])
        .output()
        .map_err(|e| CliError::Usage(format!("running xorriso (apt install xorriso): {e}")))?;
    if !st.status.success() {
        return Err(CliError::Usage(format!(
            "xorriso failed: {}",
            String::from_utf8_lossy(&st.stderr).trim()
        )));
    }
    println!("{}", output.display());
    Ok(EXIT_OK)
}
