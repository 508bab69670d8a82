//! `ferrite template busybox`: a minimal container template built here from Debian's
//! `busybox-static` and uploaded into a pool, so a new user has something to start before the
//! template catalogue exists. The image is a `.tar.gz` with busybox, a link per applet, an
//! `inittab` that keeps a shell on the console, and `/etc/passwd`/`/etc/group`.
//!
//! The archive is reproducible (fixed modification times, owners and order), so building it
//! twice gives the same SHA-256 and a second upload is refused as already present.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::commands::Context;
use super::{CliError, UploadArgs};

/// `ferrite template ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TemplateCommand {
    /// The catalogue: Debian templates this host can build, and what configured indexes list.
    List,
    /// Build a catalogue template (e.g. debian-12-standard) with mmdebstrap into a pool; a
    /// build with the same inputs is served from the daemon's cache.
    Build(super::catalog::BuildArgs),
    /// Download a template an index lists into a pool, checked against the index's checksum.
    Download(super::catalog::DownloadArgs),
    /// Build a minimal busybox container template and upload it into a pool.
    Busybox {
        /// Pool to upload into.
        #[arg(long, default_value = "local")]
        pool: String,
        /// Volume name.
        #[arg(long, default_value = "busybox.tar.gz")]
        name: String,
        /// The statically linked busybox to use (Debian: `apt install busybox-static`).
        #[arg(long, default_value = "/bin/busybox")]
        busybox: PathBuf,
        /// Write the archive to this file instead of uploading it.
        #[arg(long, value_name = "FILE")]
        save: Option<PathBuf>,
    },
}

/// Fixed timestamp for every entry (2024-01-01T00:00:00Z): same input, same bytes.
const MTIME: u64 = 1_704_067_200;

const INITTAB: &str = "\
# Ferrite busybox template: a shell on the console, clean shutdown on SIGTERM/SIGPWR.
::sysinit:/bin/mkdir -p /run /var/run /var/log
::respawn:-/bin/sh
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/sync
";

fn file_error(path: &Path) -> impl Fn(std::io::Error) -> CliError + '_ {
    move |source| CliError::File {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `path` is a statically linked executable (a dynamic busybox would find no libc in
/// the container).
fn check_static(path: &Path) -> Result<Vec<u8>, CliError> {
    let data = std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            CliError::Usage(format!(
                "{} does not exist: install Debian's busybox-static (`apt install busybox-static`) \
                 or pass --busybox PATH",
                path.display()
            ))
        } else {
            CliError::File {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    if !data.starts_with(b"\x7fELF") {
        return Err(CliError::Usage(format!(
            "{} is not an ELF executable",
            path.display()
        )));
    }
    // A dynamic executable names its loader in a PT_INTERP segment; its path is in the file.
    let interp = data.windows(13).any(|w| w == b"/lib64/ld-lin")
        || data.windows(10).any(|w| w == b"/lib/ld-li");
    if interp {
        return Err(CliError::Usage(format!(
            "{} is dynamically linked; a container template needs busybox-static",
            path.display()
        )));
    }
    Ok(data)
}

/// The applets `busybox --list` names.
fn applets(busybox: &Path) -> Result<Vec<String>, CliError> {
    let out = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(file_error(busybox))?;
    if !out.status.success() {
        return Err(CliError::Usage(format!(
            "`{} --list` failed",
            busybox.display()
        )));
    }
    let mut list: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && !a.contains('/') && *a != "busybox")
        .map(String::from)
        .collect();
    list.sort();
    list.dedup();
    Ok(list)
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(MTIME);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Builds the archive bytes.
pub fn build(busybox: &Path) -> Result<Vec<u8>, CliError> {
    let binary = check_static(busybox)?;
    let applets = applets(busybox)?;
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut tar = tar::Builder::new(gz);
    let io = |e: std::io::Error| CliError::Output(e);
    for dir in [
        "bin", "dev", "etc", "proc", "root", "run", "sbin", "sys", "tmp", "usr", "usr/bin",
        "usr/sbin", "var", "var/log",
    ] {
        let mut h = header(
            tar::EntryType::Directory,
            if dir == "tmp" { 0o1777 } else { 0o755 },
            0,
        );
        tar.append_data(&mut h, format!("./{dir}/"), std::io::empty())
            .map_err(io)?;
    }
    let mut h = header(tar::EntryType::Regular, 0o755, binary.len() as u64);
    tar.append_data(&mut h, "./bin/busybox", binary.as_slice())
        .map_err(io)?;
    for a in &applets {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        tar.append_link(&mut h, format!("./bin/{a}"), "busybox")
            .map_err(io)?;
    }
    let mut h = header(tar::EntryType::Symlink, 0o777, 0);
    tar.append_link(&mut h, "./sbin/init", "../bin/busybox")
        .map_err(io)?;
    let files: [(&str, &str, u32); 5] = [
        ("./etc/inittab", INITTAB, 0o644),
        ("./etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644),
        ("./etc/group", "root:x:0:\n", 0o644),
        ("./etc/hostname", "busybox\n", 0o644),
        (
            "./etc/profile",
            "export PATH=/bin:/sbin:/usr/bin:/usr/sbin\nexport PS1='\\h:\\w# '\n",
            0o644,
        ),
    ];
    for (path, text, mode) in files {
        let mut h = header(tar::EntryType::Regular, mode, text.len() as u64);
        tar.append_data(&mut h, path, text.as_bytes()).map_err(io)?;
    }
    let gz = tar.into_inner().map_err(io)?;
    gz.finish().map_err(io)
}

/// Runs `ferrite template busybox`.
pub(super) fn run(ctx: &Context, cmd: &TemplateCommand) -> Result<u8, CliError> {
    let (pool, name, busybox, save) = match cmd {
        TemplateCommand::List => return super::catalog::list(ctx),
        TemplateCommand::Build(a) => return super::catalog::build(ctx, a),
        TemplateCommand::Download(a) => return super::catalog::download(ctx, a),
        TemplateCommand::Busybox {
            pool,
            name,
            busybox,
            save,
        } => (pool, name, busybox, save),
    };
    let data = build(busybox)?;
    if let Some(out) = save {
        std::fs::write(out, &data).map_err(file_error(out))?;
        eprintln!("wrote {} ({} bytes)", out.display(), data.len());
        return Ok(super::EXIT_OK);
    }
    // Streamed through the same path as `ferrite upload`, from a private temporary file.
    let dir = std::env::temp_dir().join(format!("ferrite-template-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(file_error(&dir))?;
    let file = dir.join(name);
    let result = (|| {
        let mut f = std::fs::File::create(&file).map_err(file_error(&file))?;
        f.write_all(&data).map_err(file_error(&file))?;
        drop(f);
        let args = UploadArgs {
            pool: pool.clone(),
            file: file.clone(),
            name: Some(name.clone()),
            content: Some("template".into()),
            sha256: None,
        };
        super::commands::upload(ctx, &args)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
