//! End-to-end tests of the `ferrite` CLI against a real `ferrited` serving TLS with its
//! self-signed certificate: fingerprint pinning, login and the saved config, `api` output and
//! errors, and following a task. Both binaries run as separate processes, as users run them.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::ROOT_PW;
use serde_json::Value;

/// The shared test daemon serving TLS (its self-signed certificate), with the fingerprint it
/// reports and a private home for the CLI's config.
struct Daemon {
    /// Held for its lifetime: dropping it stops the daemon (and prints its log on a panic).
    _daemon: common::Daemon,
    endpoint: String,
    fingerprint: String,
    /// Scratch space for files the tests hand the CLI.
    dir: tempfile::TempDir,
}

/// What one `ferrite` run produced.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Daemon {
    fn start() -> Daemon {
        let d = common::Daemon::start_with(&[]);
        let info = d.api_info();
        let fingerprint = info["fingerprint"]
            .as_str()
            .expect("fingerprint")
            .to_string();
        assert!(d.endpoint.starts_with("https://"), "{}", d.endpoint);
        Daemon {
            endpoint: d.endpoint.clone(),
            fingerprint,
            _daemon: d,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("home/.config/ferrite/config.json")
    }

    /// Runs `ferrite` against this daemon with a private config and no inherited settings.
    fn ferrite(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrite"));
        cmd.args(args)
            .env_remove("FERRITE_TOKEN")
            .env_remove("FERRITE_FINGERPRINT")
            .env("HOME", self.dir.path().join("home"))
            .env("FERRITE_CONFIG", self.config())
            .env("FERRITE_ENDPOINT", &self.endpoint)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn ferrite");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin pipe");
            pipe.write_all(input.as_bytes()).expect("write stdin");
        }
        let out = child.wait_with_output().expect("ferrite output");
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        eprintln!("$ ferrite {}\n{run:#?}", args.join(" "));
        run
    }

    /// Logs in as root with the right fingerprint, saving the ticket to the config.
    fn login(&self) {
        let r = self.ferrite(
            &[
                "login",
                "--password-stdin",
                "--fingerprint",
                &self.fingerprint,
            ],
            Some(&format!("{ROOT_PW}\n")),
        );
        assert_eq!(r.code, 0, "{r:?}");
    }
}

/// A valid fingerprint that is not the daemon's: the first byte changed.
fn other_fingerprint(fp: &str) -> String {
    let replacement = if fp.starts_with("00") { "11" } else { "00" };
    format!("{replacement}{}", &fp[2..])
}

#[test]
fn login_pins_the_certificate_and_saves_a_private_config() {
    let d = Daemon::start();
    let pw = format!("{ROOT_PW}\n");

    // (1) Without a pinned fingerprint the CLI refuses, but shows the server's.
    let r = d.ferrite(&["login", "--password-stdin"], Some(&pw));
    assert_eq!(r.code, 4, "{r:?}"); // trust and connection errors exit 4
    assert!(r.stderr.contains(&d.fingerprint), "{r:?}");
    assert!(r.stderr.contains("--fingerprint"), "{r:?}");
    assert!(!d.config().exists(), "nothing may be saved before trust");

    // A wrong password is an API error, and saves nothing either.
    let r = d.ferrite(
        &["login", "--password-stdin", "--fingerprint", &d.fingerprint],
        Some("wrong-password\n"),
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.starts_with("error: 401"), "{r:?}");
    assert!(!d.config().exists());

    // (2) With the fingerprint (in lowercase, without colons: any spelling works).
    let loose = d.fingerprint.replace(':', "").to_lowercase();
    let r = d.ferrite(
        &["login", "--password-stdin", "--fingerprint", &loose],
        Some(&pw),
    );
    assert_eq!(r.code, 0, "{r:?}");
    let meta = std::fs::metadata(d.config()).expect("config written");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(d.config()).expect("read config"))
            .expect("config is JSON");
    assert_eq!(saved["endpoint"], d.endpoint.as_str());
    assert_eq!(saved["fingerprint"], d.fingerprint.as_str());
    assert_eq!(saved["username"], "root@local");
    assert!(saved["ticket"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(saved["expires_at"].is_string());

    // (4) A wrong fingerprint overrides the saved one and is refused, naming both.
    let wrong = other_fingerprint(&d.fingerprint);
    let r = d.ferrite(&["api", "get", "version", "--fingerprint", &wrong], None);
    assert_eq!(r.code, 4, "{r:?}"); // trust and connection errors exit 4
    assert!(r.stderr.contains("does not match"), "{r:?}");
    assert!(r.stderr.contains(&d.fingerprint), "{r:?}");

    // A malformed fingerprint is a usage error before any connection.
    let r = d.ferrite(&["api", "get", "version", "--fingerprint", "AB:CD"], None);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("not a SHA-256 fingerprint"), "{r:?}");
}

#[test]
fn api_prints_tables_json_and_problems() {
    let d = Daemon::start();
    d.login();

    // (3) The saved ticket and fingerprint are used; table output for one object.
    let r = d.ferrite(&["api", "get", "/version"], None);
    assert_eq!(r.code, 0, "{r:?}");
    let first = r.stdout.lines().next().unwrap_or_default();
    assert!(first.starts_with("KEY") && first.contains("VALUE"), "{r:?}");
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("version") && l.ends_with(env!("CARGO_PKG_VERSION"))),
        "{r:?}"
    );

    let r = d.ferrite(&["api", "get", "access/users", "--output", "json"], None);
    assert_eq!(r.code, 0, "{r:?}");
    let v: Value = serde_json::from_str(&r.stdout).expect("stdout is JSON");
    let users: Vec<&str> = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|u| u["userid"].as_str())
        .collect();
    assert!(users.contains(&"root@local"), "{v}");

    // A list as a table: a header row, then a row per item.
    let r = d.ferrite(&["api", "get", "/api/v1/access/users"], None);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("USERID"), "{r:?}");
    assert!(r
        .stdout
        .lines()
        .nth(1)
        .is_some_and(|l| l.starts_with("root@local")));

    // (5) Validation problems name the offending field and the request id.
    let r = d.ferrite(
        &[
            "api",
            "post",
            "access/users",
            r#"{"userid":"x@local","bogus":1}"#,
        ],
        None,
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.starts_with("error: 400 "), "{r:?}");
    assert!(r.stderr.contains("  /bogus: "), "{r:?}");
    assert!(r.stderr.contains("request id: "), "{r:?}");
    assert!(r.stdout.is_empty(), "{r:?}");

    // A body from stdin; then DELETE answers 204 and prints nothing.
    let r = d.ferrite(
        &["api", "post", "access/users", "-"],
        Some(r#"{"userid":"x@local"}"#),
    );
    assert_eq!(r.code, 0, "{r:?}");
    let r = d.ferrite(&["api", "delete", "access/users/x@local"], None);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.is_empty(), "{r:?}");

    // Usage errors exit 2, invalid JSON bodies included.
    let r = d.ferrite(&["api", "frob", "version"], None);
    assert_eq!(r.code, 2, "{r:?}");
    let r = d.ferrite(&["api", "post", "access/users", "{nope"], None);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("not valid JSON"), "{r:?}");

    // Without a token the API refuses, and the CLI suggests logging in.
    let r = d.ferrite(
        &[
            "api",
            "get",
            "access/users",
            "--config",
            "/nonexistent/ferrite.json",
        ],
        None,
    );
    assert_eq!(r.code, 4, "{r:?}"); // trust and connection errors exit 4
    let r = d.ferrite(
        &[
            "api",
            "get",
            "access/users",
            "--config",
            "/nonexistent/ferrite.json",
            "--fingerprint",
            &d.fingerprint,
        ],
        None,
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("ferrite login"), "{r:?}");
}

/// Starts a store backup and returns its task id.
fn start_backup(d: &Daemon, body: &str) -> String {
    let r = d.ferrite(
        &[
            "api",
            "post",
            "nodes/localhost/store-backup",
            body,
            "--output",
            "json",
        ],
        None,
    );
    assert_eq!(r.code, 0, "{r:?}");
    let task: Value = serde_json::from_str(&r.stdout).expect("task JSON");
    let id = task["id"].as_str().expect("task id").to_string();
    assert!(
        r.stderr.contains(&format!("Location: /api/v1/tasks/{id}")),
        "{r:?}"
    );
    id
}

#[test]
fn tasks_can_be_awaited_and_their_logs_read() {
    let d = Daemon::start();
    d.login();

    // (6) A task that succeeds: wait exits 0, the log ends with TASK OK.
    let id = start_backup(&d, "{}");
    let r = d.ferrite(&["task", "wait", &id], None);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("succeeded"), "{r:?}");
    let r = d.ferrite(&["task", "log", &id], None);
    assert_eq!(r.code, 0, "{r:?}");
    let last = r.stdout.lines().last().unwrap_or_default();
    assert!(last.contains("TASK OK"), "{r:?}");
    assert!(last.contains(" INFO "), "TIME LEVEL MESSAGE: {r:?}");
    let r = d.ferrite(&["task", "log", &id, "--output", "json"], None);
    assert_eq!(r.code, 0, "{r:?}");
    for line in r.stdout.lines() {
        let v: Value = serde_json::from_str(line).expect("JSON line");
        assert!(v["seq"].is_i64(), "{line}");
    }

    // A slow task: a short --timeout exits 3; after cancelling, wait exits 1. `log --follow`
    // streams until the task ends.
    let id = start_backup(
        &d,
        r#"{"name":"slow","pages_per_step":1,"step_pause_ms":1000}"#,
    );
    let r = d.ferrite(&["task", "wait", &id, "--timeout", "1"], None);
    assert_eq!(r.code, 3, "{r:?}");
    let r = d.ferrite(&["api", "delete", &format!("tasks/{id}")], None);
    assert_eq!(r.code, 0, "{r:?}");
    let r = d.ferrite(&["task", "log", &id, "--follow"], None);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.to_lowercase().contains("cancel"), "{r:?}");
    let r = d.ferrite(&["task", "wait", &format!("/api/v1/tasks/{id}")], None);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("cancelled"), "{r:?}");

    // Task ids cannot smuggle other paths.
    let r = d.ferrite(&["task", "wait", "../version"], None);
    assert_eq!(r.code, 2, "{r:?}");
}

/// A file of `len` bytes that no two tests share and compression cannot shrink.
fn noise(path: &std::path::Path, len: usize) -> String {
    use sha2::{Digest, Sha256};
    let mut data = Vec::with_capacity(len);
    let mut block = Sha256::digest(path.to_string_lossy().as_bytes());
    while data.len() < len {
        block = Sha256::digest(block);
        data.extend_from_slice(&block);
    }
    data.truncate(len);
    std::fs::write(path, &data).expect("write test file");
    hex::encode(Sha256::digest(&data))
}

#[test]
fn upload_streams_a_file_and_refusals_arrive_whole() {
    let d = Daemon::start();
    d.login();
    // Far larger than the socket buffers: a refusal sent before the body is read must still
    // reach a client that sends everything first (this one does), not break its pipe.
    let iso = d.dir.path().join("debian-netinst.iso");
    let sha = noise(&iso, 96 << 20);
    let iso_s = iso.to_str().expect("utf-8 path");
    let r = d.ferrite(&["--output", "json", "upload", "local", iso_s], None);
    assert_eq!(r.code, 0, "{r:?}");
    let v: Value = serde_json::from_str(&r.stdout).expect("volume JSON");
    assert_eq!(v["content"], "iso", "{v}");
    assert_eq!(v["sha256"], sha.as_str(), "{v}");
    let stored = PathBuf::from(v["path"].as_str().expect("path"));
    let on_disk = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(std::fs::read(&stored).expect("stored file")))
    };
    assert_eq!(on_disk, sha, "the stored bytes differ from the file sent");

    // The same name again, with the checksum given: the daemon refuses before reading the
    // body, and the answer still arrives.
    let r = d.ferrite(
        &["upload", "local", iso_s, "--sha256", &sha.to_uppercase()],
        None,
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("409") && r.stderr.contains("already exists"),
        "{r:?}"
    );
    assert!(
        r.stderr.contains("request id"),
        "the daemon's answer: {r:?}"
    );
    // Without the checksum the CLI asks before it spends time hashing.
    let r = d.ferrite(&["upload", "local", iso_s], None);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("409") && r.stderr.contains("already exists"),
        "{r:?}"
    );
    // A checksum the file does not have: refused after the transfer, and nothing is kept.
    let zeros = "0".repeat(64);
    let r = d.ferrite(
        &[
            "upload",
            "local",
            iso_s,
            "--name",
            "other.iso",
            "--sha256",
            &zeros,
        ],
        None,
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("422") && r.stderr.contains("/sha256"),
        "{r:?}"
    );
    let dir = stored.parent().expect("iso dir");
    let left: Vec<_> = std::fs::read_dir(dir)
        .expect("iso dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("debian-netinst.iso")]);
    // A name that says nothing about the content, and a file that is not there: usage errors.
    let notes = d.dir.path().join("notes");
    std::fs::write(&notes, b"x").expect("write notes");
    let r = d.ferrite(&["upload", "local", notes.to_str().expect("utf-8")], None);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--content"), "{r:?}");
    let r = d.ferrite(&["upload", "local", "/nonexistent/x.iso"], None);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("/nonexistent/x.iso"), "{r:?}");
}
