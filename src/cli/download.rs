//! `ferrite download POOL URL`: asks the daemon to fetch a file into a pool, then follows the
//! task's log (progress, the checksum check) and exits as the task ended. What can be told
//! from the URL is: the volume name (its last path segment), the content type, and whether
//! to decompress (`.xz`, `.gz`, `.zst`; a container template stays compressed, since the
//! container engine reads compressed templates itself).

use serde_json::{json, Value};

use super::commands::{content_of, Context};
use super::CliError;

/// `ferrite download POOL URL`.
#[derive(Debug, Clone, clap::Args)]
pub struct DownloadArgs {
    /// Pool to download into (e.g. `local`).
    pub pool: String,
    /// http or https URL of the file.
    pub url: String,
    /// Volume name [default: the URL's file name, without the compression suffix when it is
    /// decompressed].
    #[arg(long)]
    pub name: Option<String>,
    /// What the file is: iso, template, snippets or images [default: from the name: .iso,
    /// .tar*, .qcow2/.img/.raw].
    #[arg(long)]
    pub content: Option<String>,
    /// images only: raw or qcow2 [default: qcow2 for a .qcow2 name, else raw].
    #[arg(long)]
    pub format: Option<String>,
    /// SHA-256 of the file as served (before decompression).
    #[arg(long, conflicts_with = "sha512")]
    pub sha256: Option<String>,
    /// SHA-512 of the file as served, as Debian's SHA512SUMS lists it.
    #[arg(long)]
    pub sha512: Option<String>,
    /// none, gz, xz or zst [default: from the URL's suffix].
    #[arg(long)]
    pub decompress: Option<String>,
    /// SHA-256 fingerprint of a server certificate to trust (a private mirror).
    #[arg(long)]
    pub tls_fingerprint: Option<String>,
    /// Seconds without data before the download fails [daemon default: 60].
    #[arg(long)]
    pub stall_timeout: Option<u64>,
    /// Print the task and return at once instead of following it.
    #[arg(long)]
    pub no_wait: bool,
}

/// The request body, with what the URL tells filled in.
pub fn body(a: &DownloadArgs) -> Result<Value, CliError> {
    let file = if a.url.ends_with("//") {
        String::new()
    } else {
        crate::storage::file_name_of(&a.url).to_string()
    };
    let suffix = ["xz", "gz", "zst"]
        .into_iter()
        .find(|s| file.to_ascii_lowercase().ends_with(&format!(".{s}")));
    let template = content_of(&file) == Some("template");
    let decompress = match (&a.decompress, suffix) {
        (Some(d), _) => d.clone(),
        (None, Some(s)) if !template => s.to_string(),
        _ => "none".to_string(),
    };
    let stored = match suffix {
        Some(s) if decompress == s => file[..file.len() - s.len() - 1].to_string(),
        _ => file.clone(),
    };
    let name = match &a.name {
        Some(n) => n.clone(),
        None if !stored.is_empty() => stored.clone(),
        None => {
            return Err(CliError::Usage(format!(
                "{} names no file: pass --name",
                a.url
            )))
        }
    };
    // The name the volume gets says what it is (a --name beats the URL's).
    let lower = name.to_ascii_lowercase();
    let image = [".qcow2", ".img", ".raw"]
        .iter()
        .any(|s| lower.ends_with(s));
    let content = match (&a.content, content_of(&name)) {
        (Some(c), _) => c.clone(),
        (None, Some(c)) => c.to_string(),
        (None, None) if image => "images".to_string(),
        (None, None) => {
            return Err(CliError::Usage(format!(
                "cannot tell what {name} is from its name: pass --content \
                 (iso, template, snippets or images)"
            )))
        }
    };
    let mut b = json!({"url": a.url, "name": name, "content": content, "decompress": decompress});
    match (&a.format, content.as_str()) {
        (Some(f), _) => b["format"] = json!(f),
        (None, "images") if lower.ends_with(".qcow2") => b["format"] = json!("qcow2"),
        _ => {}
    }
    for (k, v) in [("sha256", &a.sha256), ("sha512", &a.sha512)] {
        if let Some(v) = v {
            b[k] = json!(v.trim().to_ascii_lowercase());
        }
    }
    if let Some(fp) = &a.tls_fingerprint {
        b["tls_fingerprint"] = json!(fp.trim());
    }
    if let Some(t) = a.stall_timeout {
        b["stall_timeout"] = json!(t);
    }
    Ok(b)
}

/// Runs `ferrite download`.
pub(super) fn run(ctx: &Context, a: &DownloadArgs) -> Result<u8, CliError> {
    let b = body(a)?;
    let path = format!("storage/pools/{}/download", a.pool);
    super::catalog::run_task(ctx, &path, &b, a.no_wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: &str) -> DownloadArgs {
        DownloadArgs {
            pool: "local".into(),
            url: url.into(),
            name: None,
            content: None,
            format: None,
            sha256: None,
            sha512: None,
            decompress: None,
            tls_fingerprint: None,
            stall_timeout: None,
            no_wait: false,
        }
    }

    #[test]
    fn the_url_names_the_volume_and_how_to_unpack_it() {
        let b = body(&args("https://m/debian-12.iso.xz?x=1")).expect("body");
        assert_eq!(
            (&b["name"], &b["content"], &b["decompress"]),
            (&json!("debian-12.iso"), &json!("iso"), &json!("xz"))
        );
        let b = body(&args("https://m/rootfs.tar.zst")).expect("body");
        assert_eq!(
            (&b["name"], &b["content"], &b["decompress"]),
            (&json!("rootfs.tar.zst"), &json!("template"), &json!("none"))
        );
        let b = body(&args("https://m/cloud.qcow2")).expect("body");
        assert_eq!(
            (&b["content"], &b["format"]),
            (&json!("images"), &json!("qcow2"))
        );
        assert!(body(&args("https://m/")).is_err());
        assert!(body(&args("https://m/readme")).is_err());
    }
}
