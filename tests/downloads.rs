//! Downloads by URL into a pool, against a file server on loopback (plain HTTP and TLS with
//! a self-signed certificate): checksums, decompression, redirects, and every way a download
//! fails (a wrong checksum, a truncated transfer, a stalled server, a refused connection, an
//! untrusted or mismatched certificate, a 404, a pool too small, a daemon killed mid-way)
//! leaving no volume, row or staging file behind.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{Client, Daemon};
use serde_json::{json, Value};
use sha2::{Digest, Sha256, Sha512};

const MIB: usize = 1 << 20;

/// What the server serves: a payload, and the same payload xz-compressed.
struct Files {
    payload: Vec<u8>,
    xz: Vec<u8>,
}

fn payload() -> Vec<u8> {
    (0..3 * MIB).map(|i| ((i * 7) % 251) as u8).collect()
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut e = xz2::write::XzEncoder::new(Vec::new(), 6);
    e.write_all(data).expect("xz");
    e.finish().expect("xz")
}

/// Answers one request; the routes are the test cases.
fn answer(mut s: impl Read + Write, files: &Files) {
    let Some(path) = common::request_path(&mut s) else {
        return;
    };
    let head = |s: &mut dyn Write, status: &str, len: usize, extra: &str| {
        let _ = write!(
            s,
            "HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n{extra}\r\n"
        );
    };
    match path.as_str() {
        "/file.bin" => {
            head(&mut s, "200 OK", files.payload.len(), "");
            let _ = s.write_all(&files.payload);
        }
        "/file.bin.xz" => {
            head(&mut s, "200 OK", files.xz.len(), "");
            let _ = s.write_all(&files.xz);
        }
        "/moved" => head(&mut s, "302 Found", 0, "Location: /file.bin\r\n"),
        "/truncated" => {
            head(&mut s, "200 OK", files.payload.len(), "");
            let _ = s.write_all(&files.payload[..MIB]);
        }
        "/stall" => {
            head(&mut s, "200 OK", files.payload.len(), "");
            let _ = s.write_all(&files.payload[..MIB / 2]);
            let _ = s.flush();
            std::thread::sleep(Duration::from_secs(30));
        }
        "/huge" => head(&mut s, "200 OK", 1 << 50, ""),
        _ => head(&mut s, "404 Not Found", 0, ""),
    }
    let _ = s.flush();
}

/// A file server on loopback; with `tls`, behind a self-signed certificate whose
/// fingerprint it returns.
fn serve(tls: bool) -> (String, Option<String>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let files = Arc::new(Files {
        payload: payload(),
        xz: xz(&payload()),
    });
    let (config, fp) = if tls {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
        let der = ck.cert.der().clone();
        let fp = ferrite::tls::fingerprint(&der);
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .expect("server config");
        (Some(Arc::new(cfg)), Some(fp))
    } else {
        (None, None)
    };
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let files = Arc::clone(&files);
            let config = config.clone();
            std::thread::spawn(move || match config {
                Some(c) => {
                    let Ok(conn) = rustls::ServerConnection::new(c) else {
                        return;
                    };
                    let mut s: TcpStream = s;
                    let stream = rustls::StreamOwned::new(conn, &mut s);
                    answer(stream, &files);
                }
                None => answer(s, &files),
            });
        }
    });
    let scheme = if tls { "https" } else { "http" };
    (format!("{scheme}://localhost:{port}"), fp)
}

fn hex_sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn download(c: &Client, body: Value) -> Value {
    let r = c.post("/storage/pools/local/download?wait=60", body);
    assert_eq!(r.status, 202, "{}", r.text);
    r.body
}

fn staging(d: &Daemon) -> PathBuf {
    d.data().join("storage/local/.staging")
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A failed download: the task names why, and nothing of it is left.
fn assert_failed(d: &Daemon, c: &Client, task: &Value, name: &str, why: &str) {
    assert_eq!(task["state"], "failed", "{task}");
    let detail = task["problem"]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(why), "expected '{why}' in: {task}");
    assert_eq!(
        c.get(&format!("/storage/pools/local/volumes/{name}"))
            .status,
        404
    );
    assert!(
        !d.data()
            .join("storage/local/template/iso")
            .join(name)
            .exists()
            && !d
                .data()
                .join("storage/local/template/cache")
                .join(name)
                .exists()
    );
    assert_eq!(entries(&staging(d)), Vec::<String>::new(), "staging left");
}

#[test]
fn downloads_are_checked_decompressed_and_fail_cleanly() {
    let d = Daemon::start();
    let c = d.root();
    let (base, _) = serve(false);
    let data = payload();
    let packed = xz(&data);

    // Plain, checked by SHA-256; the task log shows the progress.
    let t = download(
        &c,
        json!({"url": format!("{base}/file.bin"), "name": "a.iso", "content": "iso",
               "sha256": hex_sha256(&data)}),
    );
    assert_eq!(t["state"], "succeeded", "{t}");
    let v = c.get("/storage/pools/local/volumes/a.iso").body;
    assert_eq!(v["sha256"], hex_sha256(&data));
    assert_eq!(v["size"], data.len());
    let log = c.get(&format!(
        "/tasks/{}/log",
        t["id"].as_str().unwrap_or_default()
    ));
    assert!(log.text.contains("sha256 checked"), "{}", log.text);

    // Compressed: the checksum (SHA-512, as Debian lists them) is of the .xz, the volume is
    // the decompressed file. Redirects are followed.
    let t = download(
        &c,
        json!({"url": format!("{base}/file.bin.xz"), "name": "b.iso", "content": "iso",
               "sha512": hex::encode(Sha512::digest(&packed)), "decompress": "xz"}),
    );
    assert_eq!(t["state"], "succeeded", "{t}");
    assert_eq!(
        c.get("/storage/pools/local/volumes/b.iso").body["sha256"],
        hex_sha256(&data)
    );
    let t = download(
        &c,
        json!({"url": format!("{base}/moved"), "name": "c.iso", "content": "iso"}),
    );
    assert_eq!(t["state"], "succeeded", "{t}");

    // Every failure leaves nothing behind and says why.
    let bad = "0".repeat(64);
    let cases = [
        ("file.bin", json!({"sha256": bad}), "not the expected"),
        (
            "truncated",
            json!({}),
            "ended after 1048576 of 3145728 bytes",
        ),
        ("stall", json!({"stall_timeout": 2}), "stopped sending"),
        ("nothing-here", json!({}), "answered 404"),
        ("huge", json!({}), "bytes free"),
        ("file.bin", json!({"decompress": "gz"}), "decompress"),
    ];
    for (i, (path, extra, why)) in cases.iter().enumerate() {
        let name = format!("f{i}.iso");
        let mut body = json!({"url": format!("{base}/{path}"), "name": name, "content": "iso"});
        for (k, v) in extra.as_object().into_iter().flatten() {
            body[k] = v.clone();
        }
        let t = download(&c, body);
        assert_failed(&d, &c, &t, &name, why);
    }
    // A port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let t = download(
        &c,
        json!({"url": format!("http://127.0.0.1:{port}/x"), "name": "g.iso", "content": "iso"}),
    );
    assert_failed(&d, &c, &t, "g.iso", "cannot connect");

    // Bad requests are refused before a task exists, naming the field.
    let bad_requests = [
        (
            json!({"url": "ftp://mirror/x", "name": "h.iso", "content": "iso"}),
            400,
            "/url",
        ),
        (
            json!({"url": format!("{base}/file.bin"), "name": "h.iso", "content": "iso",
                   "sha256": hex_sha256(&data), "sha512": "0".repeat(128)}),
            400,
            "/sha512",
        ),
        (
            json!({"url": format!("{base}/file.bin"), "name": "h.iso", "content": "iso",
                   "decompress": "bz2"}),
            400,
            "/decompress",
        ),
        (
            json!({"url": format!("{base}/file.bin"), "name": "h.iso", "content": "iso",
                   "format": "qcow2"}),
            400,
            "/format",
        ),
        (
            json!({"url": format!("{base}/file.bin"), "name": "a.iso", "content": "iso"}),
            409,
            "",
        ),
    ];
    for (body, status, pointer) in bad_requests {
        let r = c.post("/storage/pools/local/download", body);
        assert_eq!(r.status, status, "{}", r.text);
        if !pointer.is_empty() {
            assert_eq!(r.pointers(), vec![pointer], "{}", r.text);
        }
    }
    assert_eq!(
        c.get("/storage/pools/local/volumes/h.iso").status,
        404,
        "no refused request left a volume"
    );

    // The CLI: the URL's suffix says to decompress; the task's log is followed and the exit
    // code is the task's.
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ferrite"))
            .args(args)
            .env("FERRITE_ENDPOINT", &d.endpoint)
            .env("FERRITE_TOKEN", c.token.as_deref().unwrap_or_default())
            .env("FERRITE_CONFIG", d.data().join("cli.json"))
            .output()
            .expect("ferrite")
    };
    let sha512 = hex::encode(Sha512::digest(&packed));
    let url = format!("{base}/file.bin.xz");
    let out = cli(&[
        "download",
        "local",
        &url,
        "--content",
        "iso",
        "--sha512",
        &sha512,
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("sha512 checked"), "{text}");
    assert_eq!(
        c.get("/storage/pools/local/volumes/file.bin").body["sha256"],
        hex_sha256(&data)
    );
    let out = cli(&[
        "download",
        "local",
        &format!("{base}/truncated"),
        "--name",
        "t.iso",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ended after"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tls_downloads_need_a_trusted_or_pinned_certificate() {
    let d = Daemon::start();
    let c = d.root();
    let (base, fp) = serve(true);
    let fp = fp.unwrap_or_default();
    let url = format!("{base}/file.bin");
    let t = download(&c, json!({"url": url, "name": "t1.iso", "content": "iso"}));
    assert_failed(&d, &c, &t, "t1.iso", "set tls_fingerprint");
    let wrong = format!("00{}", &fp[2..]);
    let t = download(
        &c,
        json!({"url": url, "name": "t2.iso", "content": "iso", "tls_fingerprint": wrong}),
    );
    assert_failed(&d, &c, &t, "t2.iso", "does not match tls_fingerprint");
    // The pin in any case, with or without colons.
    let t = download(
        &c,
        json!({"url": url, "name": "t3.iso", "content": "iso",
               "tls_fingerprint": fp.replace(':', "").to_lowercase()}),
    );
    assert_eq!(t["state"], "succeeded", "{t}");
    assert_eq!(
        c.get("/storage/pools/local/volumes/t3.iso").body["sha256"],
        hex_sha256(&payload())
    );
}

#[test]
fn a_daemon_killed_mid_download_leaves_nothing_behind() {
    let mut d = Daemon::start();
    let c = d.root();
    let (base, _) = serve(false);
    let r = c.post(
        "/storage/pools/local/download",
        json!({"url": format!("{base}/stall"), "name": "k.iso", "content": "iso"}),
    );
    assert_eq!(r.status, 202, "{}", r.text);
    let task = r.body["id"].as_str().unwrap_or_default().to_string();
    // Wait until bytes are arriving in the staging area.
    let t0 = std::time::Instant::now();
    while entries(&staging(&d)).is_empty() && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !entries(&staging(&d)).is_empty(),
        "the download never started"
    );
    assert_eq!(
        c.get("/storage/pools/local/volumes/k.iso").body["state"],
        "creating"
    );
    d.stop(nix::sys::signal::Signal::SIGKILL);
    d.spawn();
    let c = d.root();
    let t = c.get(&format!("/tasks/{task}")).body;
    assert_eq!(t["state"], "failed", "{t}");
    assert_failed(&d, &c, &t, "k.iso", "ferrited stopped");
    // The name is free again.
    let t = download(
        &c,
        json!({"url": format!("{base}/file.bin"), "name": "k.iso", "content": "iso"}),
    );
    assert_eq!(t["state"], "succeeded", "{t}");
}
