//! The installer's first-start seed (`DATA_DIR/bootstrap/seed.json`): ferrited applies it
//! before it listens (administrator hash, management bridge with port, address and gateway,
//! pools), renames it, and refuses to start on a bad one, leaving nothing half-made.

mod common;
use common::*;

use serde_json::{json, Value};
use std::process::{Command, Stdio};

const SEED_PW: &str = "password-from-the-installer";

fn seed(port: &str, pool_dir: &std::path::Path) -> Value {
    let hash = ferrite::access::password::hash(SEED_PW).expect("hash");
    json!({
        "admin_password_hash": hash,
        "network": {"bridges": [{
            "name": "vmbr0", "ports": {port: {}},
            "addresses": ["192.0.2.10/24"], "gateway": "192.0.2.1"
        }]},
        "pools": [{"name": "extra", "type": "dir", "path": pool_dir.display().to_string()}]
    })
}

fn write_seed(data: &std::path::Path, v: &Value) {
    std::fs::create_dir_all(data.join("bootstrap")).expect("bootstrap dir");
    std::fs::write(data.join("bootstrap/seed.json"), v.to_string()).expect("seed");
}

#[test]
fn the_seed_is_applied_before_the_api_listens_and_only_once() {
    let ns = NetNs::new("seed");
    ns.ip("link add nic0 type veth peer name nic0-peer");
    // A cable in: the peer end up, so the bridge gets carrier and the gateway route holds.
    ns.ip("link set nic0-peer up");
    let pool_dir = tempfile::tempdir().expect("pool dir");
    let s = seed("nic0", pool_dir.path());
    let mut d = Daemon::start_prepared(&["--no-tls", "--netns", &ns.path()], |dir| {
        write_seed(dir, &s)
    });
    // The harness's FERRITE_ROOT_PASSWORD loses to the installer's hash.
    let r = d.client().anonymous().post(
        "/access/login",
        json!({"username": "root@local", "password": ROOT_PW}),
    );
    assert_eq!(r.status, 401, "{}", r.text);
    let mut c = d.client();
    c.token = Some(c.login("root@local", SEED_PW));
    // The bridge is there the moment the API answers.
    let links = ns.links();
    assert_eq!(links["nic0"]["master"], "vmbr0", "{:?}", links.get("nic0"));
    let addrs = ns.ip("-j addr show dev vmbr0");
    assert!(addrs.contains("192.0.2.10"), "{addrs}");
    let routes = ns.ip("-j route show default");
    assert!(routes.contains("192.0.2.1"), "{routes}");
    assert_eq!(c.get("/network/bridges/vmbr0").status, 200);
    let pool = c.get("/storage/pools/extra");
    assert_eq!(pool.status, 200, "{}", pool.text);
    let data = d.data();
    assert!(!data.join("bootstrap/seed.json").exists());
    assert!(data.join("bootstrap/seed.applied.json").exists());
    // A restart does not apply it again (the renamed file is left alone).
    d.restart();
    let mut c = d.client();
    c.token = Some(c.login("root@local", SEED_PW));
    assert_eq!(
        c.get("/network/bridges").body["items"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

/// Runs ferrited on `data` expecting it to refuse to start; returns its stderr.
fn refused(data: &std::path::Path, ns: &NetNs) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrited"))
        .arg("--data-dir")
        .arg(data)
        .args(["--no-tls", "--listen", "127.0.0.1:0", "--netns", &ns.path()])
        .stdin(Stdio::null())
        .output()
        .expect("run ferrited");
    assert!(!out.status.success(), "ferrited started on a bad seed");
    assert!(!data.join("api.json").exists(), "it must not have listened");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn a_bad_seed_stops_the_daemon_and_leaves_nothing() {
    let ns = NetNs::new("badseed");
    let data = tempfile::tempdir().expect("data");
    write_seed(
        data.path(),
        &json!({"admin_password_hash": "hunter2", "colour": "blue"}),
    );
    let err = refused(data.path(), &ns);
    assert!(
        err.contains("/admin_password_hash") && err.contains("/colour"),
        "{err}"
    );
    // A seed whose bridge names a port the machine lacks: no bridge, no pool row, and the
    // seed stays for the next try.
    let data = tempfile::tempdir().expect("data");
    let pool_dir = tempfile::tempdir().expect("pool dir");
    let mut s = seed("nic9", pool_dir.path());
    s["pools"] = json!([]);
    write_seed(data.path(), &s);
    let err = refused(data.path(), &ns);
    assert!(err.contains("network") && err.contains("nic9"), "{err}");
    assert!(!ns.links().contains_key("vmbr0"));
    assert!(data.path().join("bootstrap/seed.json").exists());
}
