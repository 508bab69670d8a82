//! `qemu-img` (Debian's qemu-utils): the one tool that reads and writes qcow2 correctly,
//! including internal snapshots and backing files. Every call names the operation in its error.

use std::path::Path;

use super::pool::Source;
use super::{Format, StorageError};

fn run(what: &str, args: &[&str]) -> Result<String, StorageError> {
    let out = super::tool("qemu-img")
        .args(args)
        .output()
        .map_err(|e| StorageError::Tool(format!("{what}: cannot run qemu-img: {e}")))?;
    if !out.status.success() {
        return Err(StorageError::Tool(format!(
            "{what}: qemu-img {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn fmt(f: Format) -> &'static str {
    match f {
        Format::Qcow2 => "qcow2",
        _ => "raw",
    }
}

/// Creates a qcow2 image, optionally on a backing file (a linked clone).
pub fn create_qcow2(
    path: &Path,
    size: u64,
    backing: Option<(&Path, Format)>,
) -> Result<(), StorageError> {
    let p = path.to_string_lossy();
    let size = size.to_string();
    let mut args = vec!["create", "-q", "-f", "qcow2"];
    let b;
    if let Some((bp, bf)) = backing {
        b = bp.to_string_lossy().into_owned();
        args.extend(["-b", &b, "-F", fmt(bf)]);
    }
    args.extend([&p as &str, &size]);
    run("creating a qcow2 image", &args).map(|_| ())
}

/// Grows an image to `size` bytes.
pub fn resize(path: &Path, format: Format, size: u64) -> Result<(), StorageError> {
    let size = size.to_string();
    run(
        "resizing an image",
        &[
            "resize",
            "-q",
            "-f",
            fmt(format),
            &path.to_string_lossy(),
            &size,
        ],
    )
    .map(|_| ())
}

/// Internal qcow2 snapshot operations: `-c` create, `-a` apply, `-d` delete.
pub fn snapshot(path: &Path, op: &str, name: &str) -> Result<(), StorageError> {
    run(
        "a qcow2 snapshot operation",
        &["snapshot", "-q", op, name, &path.to_string_lossy()],
    )
    .map(|_| ())
}

/// Copies `src` (optionally at a qcow2 snapshot) into `dst`, keeping it sparse. With
/// `dst_exists`, the target (a pre-created file or block device) is written in place.
pub fn convert(
    src: &Source,
    dst: &Path,
    dst_format: Format,
    dst_exists: bool,
) -> Result<(), StorageError> {
    let s = src.path.to_string_lossy().into_owned();
    let d = dst.to_string_lossy().into_owned();
    let snap;
    let mut args = vec![
        "convert",
        "-q",
        "-f",
        fmt(src.format),
        "-O",
        fmt(dst_format),
    ];
    if let Some(n) = &src.qcow2_snapshot {
        snap = format!("snapshot.name={n}");
        args.extend(["-l", &snap]);
    }
    if dst_exists {
        args.push("-n");
    }
    args.extend([&s as &str, &d]);
    run("copying an image", &args).map(|_| ())
}

/// The format and virtual size qemu-img detects in a file.
pub fn probe(path: &Path) -> Result<(String, u64), StorageError> {
    let out = run(
        "inspecting an image",
        &["info", "--output=json", &path.to_string_lossy()],
    )?;
    let v: serde_json::Value = serde_json::from_str(&out)
        .map_err(|e| StorageError::Tool(format!("qemu-img info printed bad JSON: {e}")))?;
    Ok((
        v["format"].as_str().unwrap_or("raw").to_string(),
        v["virtual-size"].as_u64().unwrap_or(0),
    ))
}
