//! Test inputs: a busybox template, the micro-guests, uploads with checksums.

use super::*;

/// Builds a busybox root filesystem tarball (gzip) from the host's busybox-static.
pub fn busybox_template(dir: &std::path::Path) -> std::path::PathBuf {
    let root = dir.join("bbroot");
    for d in ["bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("busybox-static is a test prerequisite (/bin/busybox)");
    for a in [
        "sh", "hostname", "id", "cat", "sleep", "echo", "ls", "ps", "head", "tail", "tr", "seq",
        "true", "grep", "wc", "ping", "ip",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).expect("symlink");
    }
    std::os::unix::fs::symlink("../bin/busybox", root.join("sbin/init")).expect("symlink");
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    let out = dir.join("busybox.tar.gz");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-czf")
        .arg(&out)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    out
}

/// Uploads a file into the `local` pool with its checksum.
pub fn upload(c: &Client, path: &std::path::Path, name: &str, content: &str) -> Value {
    upload_to(c, "local", path, name, content)
}

/// The hex SHA-256 of a file's contents.
pub fn file_sha256(path: &std::path::Path) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        std::fs::read(path).expect("read file to hash"),
    ))
}

/// Uploads a file into `pool` with its checksum; panics unless the daemon answers 201.
pub fn upload_to(
    c: &Client,
    pool: &str,
    path: &std::path::Path,
    name: &str,
    content: &str,
) -> Value {
    let data = std::fs::read(path).expect("read");
    let sum = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data));
    let r = c.send_bytes(
        "POST",
        &format!("/storage/pools/{pool}/upload?name={name}&content={content}&sha256={sum}"),
        &data,
        "application/octet-stream",
    );
    assert_eq!(r.status, 201, "{}", r.text);
    r.body
}

/// Uploads the micro-guests (`guest.elf`, PVH entry; `guest64.elf`, 64-bit entry) into the
/// `local` pool as `local:guest.elf` and `local:guest64.elf`.
pub fn upload_guests(c: &Client) {
    for g in ["guest.elf", "guest64.elf"] {
        upload(c, &guests().join(g), g, "snippets");
    }
}

/// The micro-guests, built once per test binary with the system gcc.
pub fn guests() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("guests-{}", std::process::id()));
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/build.sh");
        let st = std::process::Command::new(script)
            .arg(&out)
            .status()
            .expect("building micro-guests");
        assert!(st.success(), "tests/guests/build.sh failed");
        out
    })
}
