//! Storage through the real daemon: the default dir pool, volumes (raw, qcow2, subvol),
//! snapshots with a parent tree, full and linked clones, uploads and imports, crash recovery,
//! and lvmthin where the kernel has device-mapper. Every effect is checked on disk or with
//! qemu-img, never by trusting the API's own answer.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{skip, Daemon};
use serde_json::json;
use sha2::{Digest, Sha256};

const MIB: u64 = 1 << 20;

fn local_root(d: &Daemon) -> PathBuf {
    d.data().join("storage/local")
}

fn qemu_img_info(p: &Path) -> serde_json::Value {
    let out = Command::new("qemu-img")
        .args(["info", "--output=json", "-U"])
        .arg(p)
        .output()
        .expect("qemu-img");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

fn qemu_io(p: &Path, fmt: &str, cmd: &str) -> bool {
    Command::new("qemu-io")
        .args(["-f", fmt, "-c", cmd])
        .arg(p)
        .output()
        .map(|o| {
            o.status.success()
                && !String::from_utf8_lossy(&o.stdout).contains("Pattern verification failed")
        })
        .unwrap_or(false)
}

fn write_at(p: &Path, off: u64, data: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(p)
        .expect("open");
    f.seek(SeekFrom::Start(off)).expect("seek");
    f.write_all(data).expect("write");
}

fn read_at(p: &Path, off: u64, n: usize) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(p).expect("open");
    f.seek(SeekFrom::Start(off)).expect("seek");
    let mut b = vec![0; n];
    f.read_exact(&mut b).expect("read");
    b
}

/// Files in a directory tree whose name starts with `prefix` (leftover detection).
fn files_named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with(prefix) {
                out.push(p.clone());
            }
            if p.is_dir() {
                out.extend(files_named(&p, prefix));
            }
        }
    }
    out
}

#[test]
fn fresh_install_has_a_local_pool_with_real_capacity() {
    // As the quick start runs it: `--data-dir` relative to the working directory.
    let d = Daemon::start_relative();
    let root = d.root();
    let r = root.get("/storage/pools");
    assert_eq!(r.status, 200);
    let local = r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|p| p["name"] == "local")
        .expect("local pool")
        .clone();
    assert_eq!(local["type"], "dir");
    assert_eq!(local["content"].as_array().expect("content").len(), 6);
    let st = nix::sys::statvfs::statvfs(&local_root(&d)).expect("statvfs");
    let total = st.blocks() as u64 * st.fragment_size() as u64;
    let free = st.blocks_available() as u64 * st.fragment_size() as u64;
    assert_eq!(local["capacity"]["total"].as_u64(), Some(total));
    let got_free = local["capacity"]["free"].as_u64().expect("free");
    assert!(
        got_free.abs_diff(free) < 256 * MIB,
        "free {got_free} vs statvfs {free}"
    );
    assert_eq!(local["capacity"]["active"], true);
    assert_eq!(
        local["path"].as_str().map(Path::new),
        Some(local_root(&d).as_path()),
        "the pool's path is absolute"
    );
    let r = root.post(
        "/storage/pools/local/volumes",
        json!({"name": "first.raw", "size": MIB, "content": "images"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        std::fs::metadata(local_root(&d).join("images/first.raw"))
            .expect("volume file")
            .len(),
        MIB
    );
    // The built-in pool cannot be removed.
    assert_eq!(root.delete("/storage/pools/local").status, 409);
}

#[test]
fn volumes_are_created_grown_and_refused_clearly() {
    let d = Daemon::start();
    let root = d.root();
    let base = "/storage/pools/local/volumes";
    let r = root.post(base, json!({"name": "vm-100-disk-0", "size": 64 * MIB}));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["format"], "raw");
    assert_eq!(r.body["state"], "ready");
    let raw = local_root(&d).join("images/vm-100-disk-0");
    let m = std::fs::metadata(&raw).expect("raw file exists");
    assert_eq!(m.len(), 64 * MIB);
    assert!(m.blocks() * 512 < MIB, "raw volumes are sparse");
    assert_eq!(r.body["path"], raw.display().to_string());

    let r = root.post(
        base,
        json!({"name": "vm-100-disk-1.qcow2", "size": 32 * MIB, "format": "qcow2", "owner": "vm/100"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let q = local_root(&d).join("images/vm-100-disk-1.qcow2");
    let info = qemu_img_info(&q);
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["virtual-size"].as_u64(), Some(32 * MIB));

    // Grow both; the file and the image really change.
    let r = root.post(
        &format!("{base}/vm-100-disk-0/resize"),
        json!({"size": 96 * MIB}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(std::fs::metadata(&raw).expect("raw").len(), 96 * MIB);
    let r = root.post(
        &format!("{base}/vm-100-disk-1.qcow2/resize"),
        json!({"size": 48 * MIB}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(qemu_img_info(&q)["virtual-size"].as_u64(), Some(48 * MIB));

    // Shrinking is refused, naming the field, and changes nothing.
    let r = root.post(
        &format!("{base}/vm-100-disk-0/resize"),
        json!({"size": 32 * MIB}),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.pointers(), vec!["/size"]);
    assert_eq!(std::fs::metadata(&raw).expect("raw").len(), 96 * MIB);

    // Lists filter by owner and content.
    let r = root.get(&format!("{base}?owner=vm/100"));
    assert_eq!(r.body["items"].as_array().expect("items").len(), 1);
    assert_eq!(r.body["items"][0]["name"], "vm-100-disk-1.qcow2");
    let r = root.get(&format!("{base}?content=iso"));
    assert!(r.body["items"].as_array().expect("items").is_empty());

    // Bad input: each refused with the field named, nothing made on disk.
    let before = files_named(&local_root(&d), "");
    for (body, pointer) in [
        (json!({"name": "../etc", "size": MIB}), "/name"),
        (json!({"name": "a..b", "size": MIB}), "/name"),
        (json!({"name": "a/b", "size": MIB}), "/name"),
        (json!({"name": ".hidden", "size": MIB}), "/name"),
        (json!({"name": "small", "size": 4096}), "/size"),
        (
            json!({"name": "fmt", "size": MIB, "format": "vmdk"}),
            "/format",
        ),
        (
            json!({"name": "x", "size": MIB, "colour": "red"}),
            "/colour",
        ),
    ] {
        let r = root.post(base, body.clone());
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert_eq!(r.pointers(), vec![pointer], "{body}");
    }
    let r = root.post(
        base,
        json!({"name": "sub", "size": MIB, "content": "iso", "format": "qcow2"}),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.pointers(), vec!["/format"]);
    let r = root.post(base, json!({"name": "vm-100-disk-0", "size": MIB}));
    assert_eq!(r.status, 409, "duplicate: {}", r.text);
    let r = root.post(
        "/storage/pools/nope/volumes",
        json!({"name": "x", "size": MIB}),
    );
    assert_eq!(r.status, 404, "{}", r.text);
    // A pool that cannot hold the volume: 507 with the numbers.
    let r = root.post(base, json!({"name": "huge", "size": 1u64 << 49}));
    assert_eq!(r.status, 507, "{}", r.text);
    let detail = r.body["detail"].as_str().expect("detail");
    assert!(
        detail.contains("bytes free") && detail.contains(&(1u64 << 49).to_string()),
        "{detail}"
    );
    assert_eq!(
        files_named(&local_root(&d), ""),
        before,
        "bad input left files behind"
    );
    let names: Vec<String> = root.get(base).body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|v| v["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(names, vec!["vm-100-disk-0", "vm-100-disk-1.qcow2"]);

    // Delete removes the file.
    assert_eq!(root.delete(&format!("{base}/vm-100-disk-0")).status, 204);
    assert!(!raw.exists());
    assert_eq!(root.get(&format!("{base}/vm-100-disk-0")).status, 404);
}

#[test]
fn snapshots_form_a_tree_and_roll_back_on_raw_qcow2_and_subvol() {
    let d = Daemon::start();
    let root = d.root();
    let base = "/storage/pools/local/volumes";
    // raw
    assert_eq!(
        root.post(base, json!({"name": "r", "size": 8 * MIB}))
            .status,
        201
    );
    let raw = local_root(&d).join("images/r");
    write_at(&raw, 4096, b"AAAA");
    let r = root.post(
        &format!("{base}/r/snapshots"),
        json!({"name": "s1", "description": "first"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    write_at(&raw, 4096, b"BBBB");
    assert_eq!(
        root.post(&format!("{base}/r/snapshots"), json!({"name": "s2"}))
            .status,
        201
    );
    write_at(&raw, 4096, b"CCCC");
    let snaps = root.get(&format!("{base}/r/snapshots")).body["items"].clone();
    assert_eq!(snaps[0]["name"], "s1");
    assert_eq!(snaps[0]["parent"], serde_json::Value::Null);
    assert_eq!(snaps[1]["parent"], "s1");
    let r = root.post(&format!("{base}/r/snapshots/s1/rollback"), json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(read_at(&raw, 4096, 4), b"AAAA");
    assert_eq!(r.body["current_snapshot"], "s1");
    let r = root.post(&format!("{base}/r/snapshots/s2/rollback"), json!({}));
    assert_eq!(r.status, 200);
    assert_eq!(read_at(&raw, 4096, 4), b"BBBB");
    // Deleting s1 re-parents s2.
    assert_eq!(root.delete(&format!("{base}/r/snapshots/s1")).status, 204);
    let snaps = root.get(&format!("{base}/r/snapshots")).body["items"].clone();
    assert_eq!(snaps.as_array().expect("snaps").len(), 1);
    assert_eq!(snaps[0]["parent"], serde_json::Value::Null);
    assert_eq!(
        root.post(&format!("{base}/r/snapshots/s1/rollback"), json!({}))
            .status,
        404
    );
    assert_eq!(
        root.post(&format!("{base}/r/snapshots"), json!({"name": "s2"}))
            .status,
        409
    );
    assert_eq!(
        root.post(&format!("{base}/r/snapshots"), json!({"name": "bad/name"}))
            .status,
        400
    );

    // qcow2: internal snapshots, verified with qemu-io.
    assert_eq!(
        root.post(
            base,
            json!({"name": "q", "size": 8 * MIB, "format": "qcow2"})
        )
        .status,
        201
    );
    let q = local_root(&d).join("images/q");
    assert!(qemu_io(&q, "qcow2", "write -P 0x41 0 64k"));
    assert_eq!(
        root.post(&format!("{base}/q/snapshots"), json!({"name": "before"}))
            .status,
        201
    );
    assert!(qemu_io(&q, "qcow2", "write -P 0x42 0 64k"));
    let info = qemu_img_info(&q);
    assert_eq!(info["snapshots"][0]["name"], "before");
    assert_eq!(
        root.post(&format!("{base}/q/snapshots/before/rollback"), json!({}))
            .status,
        200
    );
    assert!(
        qemu_io(&q, "qcow2", "read -P 0x41 0 64k"),
        "rollback restored the data"
    );
    assert_eq!(
        root.delete(&format!("{base}/q/snapshots/before")).status,
        204
    );
    assert!(qemu_img_info(&q).get("snapshots").is_none());

    // subvol (container root filesystems): a directory tree.
    let r = root.post(
        base,
        json!({"name": "ct-101-rootfs", "size": 64 * MIB, "content": "rootdir"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["format"], "subvol");
    let dir = local_root(&d).join("private/ct-101-rootfs");
    std::fs::create_dir_all(dir.join("etc")).expect("mkdir");
    std::fs::write(dir.join("etc/hostname"), "one\n").expect("write");
    assert_eq!(
        root.post(
            &format!("{base}/ct-101-rootfs/snapshots"),
            json!({"name": "clean"})
        )
        .status,
        201
    );
    std::fs::write(dir.join("etc/hostname"), "two\n").expect("write");
    std::fs::write(dir.join("junk"), "x").expect("write");
    assert_eq!(
        root.post(
            &format!("{base}/ct-101-rootfs/snapshots/clean/rollback"),
            json!({})
        )
        .status,
        200
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("etc/hostname")).expect("read"),
        "one\n"
    );
    assert!(!dir.join("junk").exists());
    // Deleting the volume removes its snapshots too.
    assert_eq!(root.delete(&format!("{base}/ct-101-rootfs")).status, 204);
    assert!(!dir.exists());
    assert!(files_named(&local_root(&d).join(".snapshots"), "ct-101-rootfs").is_empty());
}

#[test]
fn full_and_linked_clones_and_templates() {
    let d = Daemon::start();
    let root = d.root();
    let base = "/storage/pools/local/volumes";
    assert_eq!(
        root.post(base, json!({"name": "tpl", "size": 16 * MIB}))
            .status,
        201
    );
    let tpl = local_root(&d).join("images/tpl");
    write_at(&tpl, 0, b"TEMPLATE");
    write_at(&tpl, 9 * MIB, b"DEEP");

    // A linked clone needs a template.
    let r = root.post(
        &format!("{base}/tpl/clone?wait=60"),
        json!({"name": "l1", "linked": true}),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.pointers(), vec!["/linked"]);

    // Full clone, from a snapshot, then the source changes: the clone keeps the snapshot's data.
    assert_eq!(
        root.post(&format!("{base}/tpl/snapshots"), json!({"name": "gold"}))
            .status,
        201
    );
    write_at(&tpl, 0, b"CHANGED!");
    let r = root.post(
        &format!("{base}/tpl/clone?wait=60"),
        json!({"name": "full1", "snapshot": "gold", "owner": "vm/200"}),
    );
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["state"], "succeeded", "{}", r.text);
    let full = local_root(&d).join("images/full1");
    assert_eq!(read_at(&full, 0, 8), b"TEMPLATE");
    assert_eq!(read_at(&full, 9 * MIB, 4), b"DEEP");
    assert_eq!(std::fs::metadata(&full).expect("full").len(), 16 * MIB);
    let v = root.get(&format!("{base}/full1")).body;
    assert_eq!(v["owner"], "vm/200");
    assert_eq!(v["state"], "ready");

    // Template, then a linked clone: a qcow2 backed by the template, reading its data.
    let r = root.post(&format!("{base}/tpl/template"), json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["template"], true);
    let r = root.post(
        &format!("{base}/tpl/clone?wait=60"),
        json!({"name": "linked1", "linked": true}),
    );
    assert_eq!(r.body["state"], "succeeded", "{}", r.text);
    let linked = local_root(&d).join("images/linked1");
    let info = qemu_img_info(&linked);
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["backing-filename"], tpl.display().to_string());
    assert!(
        qemu_io(&linked, "qcow2", "read -P 0x43 0 1"),
        "linked clone reads the template ('C')"
    );
    let v = root.get(&format!("{base}/linked1")).body;
    assert_eq!(v["base"], "local:tpl");
    // The template cannot go while the clone uses it; the error names the clone.
    let r = root.delete(&format!("{base}/tpl"));
    assert_eq!(r.status, 409);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("local:linked1"),
        "{}",
        r.text
    );
    assert_eq!(
        root.get(&format!("{base}/tpl")).body["used_by"],
        json!(["volume/local:linked1"])
    );
    // Templates neither grow nor roll back.
    assert_eq!(
        root.post(&format!("{base}/tpl/resize"), json!({"size": 32 * MIB}))
            .status,
        409
    );
    assert_eq!(
        root.post(&format!("{base}/tpl/snapshots/gold/rollback"), json!({}))
            .status,
        409
    );
    // Bad clone requests leave nothing.
    let r = root.post(
        &format!("{base}/tpl/clone"),
        json!({"name": "x", "pool": "nope"}),
    );
    assert_eq!(r.status, 404, "{}", r.text);
    let r = root.post(
        &format!("{base}/tpl/clone"),
        json!({"name": "x", "snapshot": "nope"}),
    );
    assert_eq!(r.status, 404, "{}", r.text);
    let r = root.post(&format!("{base}/tpl/clone"), json!({"name": "full1"}));
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(!local_root(&d).join("images/x").exists());

    assert_eq!(root.delete(&format!("{base}/linked1")).status, 204);
    assert_eq!(root.delete(&format!("{base}/tpl")).status, 204);
    assert!(!tpl.exists() && !linked.exists());
    assert!(files_named(&local_root(&d).join(".snapshots"), "tpl").is_empty());
}

/// An upload of unknown length (chunked, so the size cannot be checked up front) into a pool
/// whose disk fills up: 507 naming the pool, and nothing kept.
#[test]
fn an_upload_that_fills_the_disk_is_refused_and_leaves_nothing() {
    let d = Daemon::start();
    let root = d.root();
    let mnt = tempfile::tempdir().expect("tempdir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tiny"])
        .arg(mnt.path())
        .status()
        .expect("run mount");
    assert!(mounted.success(), "mount tmpfs");
    let _unmount = common::Defer(|| {
        let _ = Command::new("umount").arg("-l").arg(mnt.path()).status();
    });
    let r = root.post(
        "/storage/pools",
        json!({"name": "tiny", "type": "dir", "path": mnt.path().display().to_string(), "content": ["iso"]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let src = d.data().join("big.bin");
    std::fs::write(&src, vec![0x5au8; 8 * MIB as usize]).expect("write source");
    let sum = common::file_sha256(&src);
    let out = Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", "POST"])
        .args(["-H", "Content-Type: application/octet-stream"])
        .args(["-H", "Transfer-Encoding: chunked"])
        .args([
            "-H",
            &format!(
                "Authorization: Bearer {}",
                root.token.clone().unwrap_or_default()
            ),
        ])
        .arg("--data-binary")
        .arg(format!("@{}", src.display()))
        .arg(format!(
            "{}/api/v1/storage/pools/tiny/upload?name=big.iso&content=iso&sha256={sum}",
            d.endpoint
        ))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.trim_end().ends_with("507"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("pool 'tiny' filled up during the upload"),
        "{text}"
    );
    assert_eq!(root.get("/storage/pools/tiny/volumes/big.iso").status, 404);
    let left = files_named(mnt.path(), "");
    assert!(
        left.iter().all(|p| p.is_dir()),
        "files left behind: {left:?}"
    );
    assert_eq!(root.delete("/storage/pools/tiny").status, 204);
}

#[test]
fn uploads_are_checked_before_they_appear() {
    let d = Daemon::start();
    let root = d.root();
    let data: Vec<u8> = (0..3 * MIB as usize + 12345)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let sum = hex::encode(Sha256::digest(&data));
    let iso_dir = local_root(&d).join("template/iso");

    // A wrong checksum: 422 naming sha256, and nothing visible or staged.
    let bad = "0".repeat(64);
    let r = root.send_bytes(
        "POST",
        &format!("/storage/pools/local/upload?name=boot.iso&content=iso&sha256={bad}"),
        &data,
        "application/octet-stream",
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.pointers(), vec!["/sha256"]);
    assert!(r.body["detail"].as_str().unwrap_or_default().contains(&sum));
    assert!(!iso_dir.join("boot.iso").exists());
    assert!(files_named(&local_root(&d).join(".staging"), "").is_empty());
    assert_eq!(
        root.get("/storage/pools/local/volumes/boot.iso").status,
        404
    );

    // The right checksum: the file is there, byte for byte.
    let r = root.send_bytes(
        "POST",
        &format!("/storage/pools/local/upload?name=boot.iso&content=iso&sha256={sum}"),
        &data,
        "application/octet-stream",
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["sha256"], sum);
    assert_eq!(r.body["size"].as_u64(), Some(data.len() as u64));
    assert_eq!(std::fs::read(iso_dir.join("boot.iso")).expect("iso"), data);
    // Same name again: 409; wrong media type: 415; bad query: 400 naming it.
    let r = root.send_bytes(
        "POST",
        &format!("/storage/pools/local/upload?name=boot.iso&content=iso&sha256={sum}"),
        &data,
        "application/octet-stream",
    );
    assert_eq!(r.status, 409, "{}", r.text);
    let r = root.send_bytes(
        "POST",
        &format!("/storage/pools/local/upload?name=x.iso&content=iso&sha256={sum}"),
        b"{}",
        "application/json",
    );
    assert_eq!(r.status, 415, "{}", r.text);
    let r = root.send_bytes(
        "POST",
        &format!("/storage/pools/local/upload?name=../x&content=iso&sha256={sum}"),
        &data,
        "application/octet-stream",
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.pointers(), vec!["/name"]);

    // Import a host file as a template (a task), with its checksum checked.
    let src = d.data().join("incoming.tar.gz");
    std::fs::write(&src, &data).expect("write");
    let r = root.post(
        "/storage/pools/local/import?wait=60",
        json!({"path": src.display().to_string(), "name": "busybox.tar.gz", "content": "template", "sha256": sum}),
    );
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["state"], "succeeded", "{}", r.text);
    assert_eq!(
        std::fs::read(local_root(&d).join("template/cache/busybox.tar.gz")).expect("tpl"),
        data
    );
    // A failed import (wrong checksum) fails its task and leaves nothing.
    let r = root.post(
        "/storage/pools/local/import?wait=60",
        json!({"path": src.display().to_string(), "name": "other.tar.gz", "content": "template", "sha256": bad}),
    );
    assert_eq!(r.body["state"], "failed", "{}", r.text);
    assert!(!local_root(&d).join("template/cache/other.tar.gz").exists());
    assert_eq!(
        root.get("/storage/pools/local/volumes/other.tar.gz").status,
        404
    );
    let r = root.post(
        "/storage/pools/local/import",
        json!({"path": "/nonexistent/file", "name": "n.iso", "content": "iso"}),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.pointers(), vec!["/path"]);
    assert!(files_named(&local_root(&d).join(".staging"), "").is_empty());
}

#[test]
fn a_daemon_killed_mid_clone_leaves_nothing_behind() {
    let mut d = Daemon::start();
    let root = d.root();
    let base = "/storage/pools/local/volumes";
    assert_eq!(
        root.post(base, json!({"name": "big", "size": 1536 * MIB}))
            .status,
        201
    );
    // Real data, so the copy takes a while.
    let big = local_root(&d).join("images/big");
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&big)
            .expect("open");
        let chunk: Vec<u8> = (0..MIB as usize).map(|i| (i % 253) as u8 + 1).collect();
        for _ in 0..1536 {
            f.write_all(&chunk).expect("fill");
        }
    }
    let r = root.post(&format!("{base}/big/clone"), json!({"name": "copy"}));
    assert_eq!(r.status, 202, "{}", r.text);
    let copy = local_root(&d).join("images/copy");
    let t0 = std::time::Instant::now();
    while !copy.exists() && t0.elapsed() < std::time::Duration::from_secs(30) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let state = root.get(&format!("{base}/copy")).body["state"].clone();
    d.stop(nix::sys::signal::Signal::SIGKILL);
    if state != "creating" {
        skip(
            "a_daemon_killed_mid_clone_leaves_nothing_behind",
            "the clone finished before the daemon could be killed",
        );
        return;
    }
    d.spawn();
    let root = d.root();
    assert_eq!(
        root.get(&format!("{base}/copy")).status,
        404,
        "the half-made clone is gone"
    );
    assert!(!copy.exists(), "no file left on disk");
    assert!(files_named(&local_root(&d), "copy").is_empty());
    // The source is intact and a new clone works.
    let r = root.post(
        &format!("{base}/big/clone?wait=120"),
        json!({"name": "copy"}),
    );
    assert_eq!(r.body["state"], "succeeded", "{}", r.text);
    assert_eq!(read_at(&copy, 1000 * MIB, 8), read_at(&big, 1000 * MIB, 8));
}

#[test]
fn pools_are_added_checked_and_removed() {
    let d = Daemon::start();
    let root = d.root();
    let dir = d.data().join("extra-pool");
    let r = root.post(
        "/storage/pools",
        json!({"name": "extra", "type": "dir", "path": dir.display().to_string(), "content": ["images", "iso"]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(dir.join("images").is_dir());
    // Content the pool does not accept.
    let r = root.post(
        "/storage/pools/extra/volumes",
        json!({"name": "ct", "size": MIB, "content": "rootdir"}),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.pointers(), vec!["/content"]);
    // Cross-pool full clone.
    assert_eq!(
        root.post(
            "/storage/pools/local/volumes",
            json!({"name": "src", "size": 4 * MIB})
        )
        .status,
        201
    );
    write_at(&local_root(&d).join("images/src"), 100, b"cross");
    let r = root.post(
        "/storage/pools/local/volumes/src/clone?wait=60",
        json!({"name": "dst", "pool": "extra"}),
    );
    assert_eq!(r.body["state"], "succeeded", "{}", r.text);
    assert_eq!(read_at(&dir.join("images/dst"), 100, 5), b"cross");
    // A pool with volumes cannot be removed; empty, it can.
    assert_eq!(root.delete("/storage/pools/extra").status, 409);
    assert_eq!(root.delete("/storage/pools/extra/volumes/dst").status, 204);
    let r = root.put("/storage/pools/extra", json!({"comment": "scratch"}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(root.delete("/storage/pools/extra").status, 204);
    assert_eq!(root.get("/storage/pools/extra").status, 404);

    // Bad pool definitions.
    for (body, status, pointer) in [
        (json!({"name": "p", "type": "dir"}), 400, "/path"),
        (
            json!({"name": "p", "type": "dir", "path": "relative"}),
            400,
            "/path",
        ),
        (
            json!({"name": "p", "type": "dir", "path": "/a/../b"}),
            400,
            "/path",
        ),
        (
            json!({"name": "p", "type": "lvmthin", "vg": "novg", "thinpool": "tp", "content": ["iso"]}),
            400,
            "/content/0",
        ),
        (
            json!({"name": "p", "type": "lvmthin", "vg": "ferrite-no-such-vg", "thinpool": "tp"}),
            422,
            "/vg",
        ),
        (
            json!({"name": "1p", "type": "dir", "path": "/tmp/x"}),
            400,
            "/name",
        ),
    ] {
        let r = root.post("/storage/pools", body.clone());
        assert_eq!(r.status, status, "{body}: {}", r.text);
        assert_eq!(r.pointers(), vec![pointer], "{body}");
    }
    assert_eq!(root.get("/storage/pools/p").status, 404);
}

/// lvmthin needs device-mapper; where the kernel has it, the pool is built on a loop device
/// this test makes and removes.
#[test]
fn lvmthin_pool_volumes_snapshots_and_linked_clones() {
    // /dev/mapper/control may exist (lvm2's packaging makes it) while the kernel lacks the
    // driver; /proc/misc is the kernel's own word.
    let dm = std::fs::read_to_string("/proc/misc").is_ok_and(|m| m.contains("device-mapper"));
    let lvm = Command::new("lvm")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !dm && common::rerun_in_kernel_vm("lvmthin_pool_volumes_snapshots_and_linked_clones") {
        return;
    }
    if !dm || !lvm {
        skip(
            "lvmthin_pool_volumes_snapshots_and_linked_clones",
            if !dm {
                "the kernel has no device-mapper (CONFIG_BLK_DEV_DM), so LVM thin pools cannot exist here"
            } else {
                "the lvm2 tools do not work here"
            },
        );
        return;
    }
    let d = Daemon::start();
    let root = d.root();
    let img = d.data().join("pv.img");
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(512 * MIB))
        .expect("img");
    let out = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&img)
        .output()
        .expect("losetup");
    let loopdev = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let vg = format!("ferritetest{}", std::process::id());
    let no_udev = !Path::new("/run/udev/control").exists();
    let sh = |c: &str| {
        let mut cmd = Command::new("sh");
        if no_udev {
            cmd.env("DM_DISABLE_UDEV", "1");
        }
        let o = cmd.arg("-c").arg(c).output().expect("sh");
        assert!(
            o.status.success(),
            "{c}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    sh(&format!("lvm pvcreate -q {loopdev} && lvm vgcreate -q {vg} {loopdev} && lvm lvcreate -q -L 256m -T {vg}/tp"));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let r = root.post(
            "/storage/pools",
            json!({"name": "thin", "type": "lvmthin", "vg": vg, "thinpool": "tp"}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        assert!(r.body["capacity"]["total"].as_u64().unwrap_or(0) >= 256 * MIB);
        let base = "/storage/pools/thin/volumes";
        assert_eq!(
            root.post(base, json!({"name": "base", "size": 64 * MIB}))
                .status,
            201
        );
        let dev = PathBuf::from(format!("/dev/{vg}/base"));
        write_at(&dev, 0, b"THIN");
        assert_eq!(
            root.post(&format!("{base}/base/snapshots"), json!({"name": "s"}))
                .status,
            201
        );
        write_at(&dev, 0, b"XXXX");
        assert_eq!(
            root.post(&format!("{base}/base/snapshots/s/rollback"), json!({}))
                .status,
            200
        );
        assert_eq!(read_at(&dev, 0, 4), b"THIN");
        assert_eq!(
            root.post(&format!("{base}/base/template"), json!({}))
                .status,
            200
        );
        let r = root.post(
            &format!("{base}/base/clone?wait=60"),
            json!({"name": "c1", "linked": true}),
        );
        assert_eq!(r.body["state"], "succeeded", "{}", r.text);
        assert_eq!(read_at(Path::new(&format!("/dev/{vg}/c1")), 0, 4), b"THIN");
        assert_eq!(root.delete(&format!("{base}/c1")).status, 204);
        assert_eq!(root.delete(&format!("{base}/base")).status, 204);
        // A VM template on the thin pool: its linked clone gets a thin snapshot of the raw
        // disk (raw, as ferrite-vmm boots), not a copy. (The "kernel" only has to be an ELF:
        // nothing boots here.)
        common::upload(&root, Path::new("/bin/busybox"), "kern.elf", "snippets");
        let r = root.post(base, json!({"name": "vmdisk", "size": 32 * MIB}));
        assert_eq!(r.status, 201, "{}", r.text);
        write_at(Path::new(&format!("/dev/{vg}/vmdisk")), 0, b"DISK");
        let r = root.post(
            "/vms",
            json!({"name": "thinvm", "kernel": "local:kern.elf", "memory": 32,
                   "disks": {"disk0": {"volume": "thin:vmdisk"}}}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        let vm = r.body["id"].as_i64().expect("vm id");
        assert_eq!(
            root.post(&format!("/vms/{vm}/template"), json!({})).status,
            200
        );
        let r = root.post(
            &format!("/vms/{vm}/clone"),
            json!({"name": "thinclone", "linked": true}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        let clone = r.body["id"].as_i64().expect("clone id");
        let disk = format!("vm-{clone}-disk0");
        assert_eq!(r.body["disks"]["disk0"]["volume"], format!("thin:{disk}"));
        let v = root.get(&format!("{base}/{disk}"));
        assert_eq!(v.body["base"], "thin:vmdisk", "{}", v.text);
        assert_eq!(v.body["format"], "raw", "{}", v.text);
        assert_eq!(
            read_at(Path::new(&format!("/dev/{vg}/{disk}")), 0, 4),
            b"DISK"
        );
        assert_eq!(root.delete(&format!("/vms/{clone}")).status, 204);
        assert_eq!(root.delete(&format!("/vms/{vm}")).status, 204);
        assert_eq!(root.delete(&format!("{base}/{disk}")).status, 204);
        assert_eq!(root.delete(&format!("{base}/vmdisk")).status, 204);
        assert_eq!(root.delete("/storage/pools/thin").status, 204);
    }));
    let _ = Command::new("sh")
        .env("DM_DISABLE_UDEV", if no_udev { "1" } else { "0" })
        .arg("-c")
        .arg(format!(
            "lvm vgremove -q -f {vg}; lvm pvremove -q {loopdev}; losetup -d {loopdev}"
        ))
        .status();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
