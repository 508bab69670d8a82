//! The README's quick start as a new user meets it: the walkthrough block run as it is
//! written, `scripts/run` serving an API with every helper beside the daemon, and a daemon whose
//! helpers are missing saying so (node problems, 503 naming the helper) instead of a bare 500.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, NetNs, ROOT_PW};
use serde_json::{json, Value};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The fenced block that follows the README's walkthrough marker.
fn walkthrough() -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let after = readme
        .split_once("<!-- walkthrough:")
        .expect("README has a walkthrough marker")
        .1;
    let block = after.split_once("```sh\n").expect("a sh block follows").1;
    block
        .split_once("```")
        .expect("the block ends")
        .0
        .to_string()
}

/// Runs the README's walkthrough from a directory laid out like the checkout while
/// `./scripts/run` serves (`data/api.json`, `data/initial-root-password`,
/// `target/release/ferrite`), against a TLS daemon whose networking lives in a namespace.
#[test]
fn readme_walkthrough_runs_as_written() {
    let ns = NetNs::new("qs");
    let d = Daemon::start_with(&["--netns", &ns.path()]);
    assert!(d.endpoint.starts_with("https://"), "{}", d.endpoint);
    let cwd = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(cwd.path().join("data")).expect("data");
    std::fs::create_dir_all(cwd.path().join("target/release")).expect("target");
    std::fs::copy(d.data().join("api.json"), cwd.path().join("data/api.json")).expect("api.json");
    std::fs::write(
        cwd.path().join("data/initial-root-password"),
        format!("{ROOT_PW}\n"),
    )
    .expect("password");
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_ferrite"),
        cwd.path().join("target/release/ferrite"),
    )
    .expect("symlink");
    let script = format!("set -euo pipefail\n{}", walkthrough());
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(cwd.path())
        .env("FERRITE_ENDPOINT", &d.endpoint)
        .env("FERRITE_CONFIG", cwd.path().join("config.json"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash");
    // What a user types at the console: Ctrl-] to detach.
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"\x1d").expect("detach key");
    }
    let out = child.wait_with_output().expect("walkthrough");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the README walkthrough failed ({}):\n{stdout}\n{stderr}\n{}",
        out.status,
        d.log()
    );
    // `ct list` showed the container running with its address; the ping got an answer.
    assert!(
        stdout
            .lines()
            .any(|l| l.contains(" web ") && l.contains("running") && l.contains("10.10.0.2/24")),
        "{stdout}"
    );
    assert!(stdout.contains("1 packets received"), "{stdout}");
    assert!(stderr.contains("Detached from"), "{stderr}");
    // It cleaned up after itself: no container, no bridge, the template stays (read with the
    // CLI and the login the walkthrough saved, over the pinned TLS connection).
    let get = |path: &str| -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_ferrite"))
            .args(["api", "get", path, "--output", "json"])
            .env("FERRITE_ENDPOINT", &d.endpoint)
            .env("FERRITE_CONFIG", cwd.path().join("config.json"))
            .output()
            .expect("ferrite api get");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json")
    };
    assert_eq!(get("/containers")["items"], json!([]));
    assert_eq!(get("/network/bridges")["items"], json!([]));
    assert!(!ns.links().contains_key("vmbr1"));
    assert_eq!(
        get("/storage/pools/local/volumes/busybox.tar.gz")["content"],
        "template"
    );
}

/// `scripts/run` builds the daemon and every helper it spawns, then serves the API (the test
/// reuses the suite's debug build through `FERRITE_PROFILE=dev`, so cargo has nothing to do).
#[test]
fn scripts_run_serves_with_every_helper_built() {
    let data = tempfile::tempdir().expect("tempdir");
    let log = std::fs::File::create(data.path().join("run.log")).expect("log");
    let mut child = Command::new(repo().join("scripts/run"))
        .arg("--no-tls")
        .env("FERRITE_PROFILE", "dev")
        .env("FERRITE_DATA_DIR", data.path().join("data"))
        .env("FERRITE_LISTEN", "127.0.0.1:0")
        .env("FERRITE_ROOT_PASSWORD", ROOT_PW)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("scripts/run");
    let _kill = common::Defer(|| {
        let _ = child.kill();
        let _ = child.wait();
    });
    let info = data.path().join("data/api.json");
    let t0 = Instant::now();
    let endpoint = loop {
        if let Some(v) = std::fs::read_to_string(&info)
            .ok()
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        {
            break v["endpoint"].as_str().expect("endpoint").to_string();
        }
        let log = std::fs::read_to_string(data.path().join("run.log")).unwrap_or_default();
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "scripts/run did not serve: {log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let c = common::Client::new(&endpoint, None);
    let t = c.login("root@local", ROOT_PW);
    let c = c.with_token(&t);
    let node = c.get("/nodes").body["items"][0]["node"]
        .as_str()
        .expect("node")
        .to_string();
    let facts = c.get(&format!("/nodes/{node}"));
    assert_eq!(facts.status, 200, "{}", facts.text);
    assert_eq!(facts.body["problems"], json!([]), "{}", facts.text);
}

/// A daemon installed without its helpers: the start log names each one with the fix, the
/// node lists them as problems, starting a container or a VM answers 503 naming the helper
/// and leaves the guest stopped with no cgroup, and installing the helper fixes the running
/// daemon.
#[test]
fn missing_helpers_are_reported_and_refused_with_503() {
    let bin = tempfile::tempdir().expect("tempdir");
    let lone = bin.path().join("ferrited");
    std::fs::copy(env!("CARGO_BIN_EXE_ferrited"), &lone).expect("copy ferrited");
    let mut d = Daemon::start_with(&["--no-tls"]);
    d.exe = Some(lone.clone());
    d.restart();
    let log = d.log();
    for h in ["ferrite-ctr", "ferrite-vmm"] {
        assert!(
            log.lines()
                .filter(|l| l.contains(&format!("helper {h} cannot be run")))
                .count()
                == 1,
            "{h} not logged once: {log}"
        );
    }
    let c = d.root();
    let node = c.get("/nodes").body["items"][0]["node"]
        .as_str()
        .expect("node")
        .to_string();
    let facts = c.get(&format!("/nodes/{node}"));
    let subjects: Vec<&str> = facts.body["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| p["subject"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(subjects, ["ferrite-ctr", "ferrite-vmm"], "{}", facts.text);
    assert!(facts.body["problems"][0]["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("cargo build --release --bins"));

    let tdir = tempfile::tempdir().expect("tempdir");
    common::upload(
        &c,
        &common::busybox_template(tdir.path()),
        "busybox.tar.gz",
        "template",
    );
    let ct = c.post(
        "/containers",
        json!({"name": "lonely", "template": "local:busybox.tar.gz"}),
    );
    assert_eq!(ct.status, 201, "{}", ct.text);
    let id = ct.body["id"].to_string();
    let r = c.post(&format!("/containers/{id}/start"), json!({}));
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(
        r.body["type"],
        "https://ferrite.dev/problems/helper-missing"
    );
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("ferrite-ctr"),
        "{}",
        r.text
    );
    assert!(
        r.header("retry-after").is_none(),
        "waiting does not install a helper"
    );
    let r = c.post(
        &format!("/containers/{id}/exec"),
        json!({"command": ["true"]}),
    );
    assert!(r.status == 409 || r.status == 503, "{}", r.text);
    assert_eq!(
        c.get(&format!("/containers/{id}")).body["status"]["state"],
        "stopped"
    );
    let scope = ferrite::container::scope_of(&d.data());
    let leftover = common::sh(&format!(
        "find /sys/fs/cgroup -maxdepth 5 -path '*{scope}/ct-{id}' 2>/dev/null"
    ));
    assert_eq!(leftover.trim(), "", "a cgroup was left behind");

    common::upload_guests(&c);
    let vm = c.post(
        "/vms",
        json!({"name": "lonelyvm", "kernel": "local:guest.elf", "memory": 16}),
    );
    assert_eq!(vm.status, 201, "{}", vm.text);
    let r = c.post(&format!("/vms/{}/start", vm.body["id"]), json!({}));
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("ferrite-vmm"),
        "{}",
        r.text
    );

    // Installing the helper fixes the running daemon: no restart.
    let helper: PathBuf = Path::new(env!("CARGO_BIN_EXE_ferrited")).with_file_name("ferrite-ctr");
    std::fs::copy(&helper, bin.path().join("ferrite-ctr")).expect("install ferrite-ctr");
    let facts = c.get(&format!("/nodes/{node}"));
    assert_eq!(
        facts.body["problems"].as_array().map(Vec::len),
        Some(1),
        "{}",
        facts.text
    );
    let r = c.post(&format!("/containers/{id}/start"), json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    let r = c.delete(&format!("/containers/{id}?force=true"));
    assert_eq!(r.status, 204, "{}", r.text);
}
