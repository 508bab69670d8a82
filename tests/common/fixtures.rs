//! Test inputs and guest helpers: a busybox template, the micro-guests, GRUB boot images,
//! uploads with checksums, VM serial logs, and the guard that reaps a test's VMs.

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
    upload_query(c, pool, path, &format!("name={name}&content={content}"))
}

/// Uploads a disk image of `format` (raw or qcow2) into the `local` pool as content images.
pub fn upload_image(c: &Client, path: &std::path::Path, name: &str, format: &str) -> Value {
    upload_query(
        c,
        "local",
        path,
        &format!("name={name}&content=images&format={format}"),
    )
}

/// Uploads a file with `query` and its checksum; panics unless the daemon answers 201.
fn upload_query(c: &Client, pool: &str, path: &std::path::Path, query: &str) -> Value {
    let data = std::fs::read(path).expect("read");
    let sum = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data));
    let r = c.send_bytes(
        "POST",
        &format!("/storage/pools/{pool}/upload?{query}&sha256={sum}"),
        &data,
        "application/octet-stream",
    );
    assert_eq!(r.status, 201, "{}", r.text);
    r.body
}

/// A GRUB image (BIOS and UEFI, bootable as a CD-ROM and as a disk) made by `grub-mkrescue`
/// in `dir`, whose `grub.cfg` is `cfg` after the serial console is set up.
pub fn grub_image(dir: &std::path::Path, name: &str, cfg: &str) -> std::path::PathBuf {
    let root = dir.join(format!("{name}.d"));
    std::fs::create_dir_all(root.join("boot/grub")).expect("mkdir");
    std::fs::write(
        root.join("boot/grub/grub.cfg"),
        format!("serial --unit=0 --speed=115200\nterminal_input serial\nterminal_output serial\n{cfg}\n"),
    )
    .expect("grub.cfg");
    let out = dir.join(name);
    let st = Command::new("grub-mkrescue")
        .args(["--locales=", "--fonts=", "--themes=", "-o"])
        .arg(&out)
        .arg(&root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect(
            "grub-mkrescue (apt install grub-common grub-pc-bin grub-efi-amd64-bin xorriso mtools)",
        );
    assert!(st.success(), "grub-mkrescue failed");
    out
}

/// Force-deletes every VM when a test ends, passed or failed: VMs outlive their daemon.
pub struct ReapVms(pub Client);

impl Drop for ReapVms {
    fn drop(&mut self) {
        let items = self.0.get("/vms").body["items"].clone();
        for vm in items.as_array().into_iter().flatten() {
            if let Some(id) = vm["id"].as_i64() {
                self.0
                    .request("DELETE", &format!("/vms/{id}?force=true"), None, &[]);
            }
        }
    }
}

/// A VM's serial log (both halves of the rotated log).
pub fn serial(c: &Client, id: i64) -> String {
    let r = c.get(&format!("/vms/{id}/serial"));
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["data"].as_str().unwrap_or_default().to_string()
}

/// Waits (generously: guest code runs at emulation speed here) up to 120 s for `pred` on a
/// VM's serial log; `what` names it in the failure, which shows the log.
pub fn wait_serial(c: &Client, id: i64, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let t0 = Instant::now();
    loop {
        let s = serial(c, id);
        if pred(&s) {
            return s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "vm {id}: no {what} on serial after 120 s; log so far:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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

/// Reads an HTTP/1.1 request's head from `s` (test file servers) and returns its path, or
/// `None` when the client went away first.
pub fn request_path(s: &mut impl std::io::Read) -> Option<String> {
    let mut req = Vec::new();
    let mut b = [0u8; 1];
    while !req.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => req.push(b[0]),
            _ => return None,
        }
    }
    let line = String::from_utf8_lossy(&req);
    Some(line.split_whitespace().nth(1).unwrap_or("/").to_string())
}
