//! System containers through the real daemon: a busybox root filesystem built by the test,
//! real namespaces, a real user namespace mapping, real cgroups (v2 or this host's hybrid), and
//! the kernel checked for leftovers after every failure.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Client, Daemon, NetNs};
use serde_json::{json, Value};

/// Force-deletes every container when a test ends, passed or failed: containers outlive
/// their daemon by design, so a failed test must not leave them running.
struct Reap(Client);

impl Drop for Reap {
    fn drop(&mut self) {
        let items = self.0.get("/containers").body["items"].clone();
        for ct in items.as_array().into_iter().flatten() {
            if let Some(id) = ct["id"].as_i64() {
                self.0
                    .request("DELETE", &format!("/containers/{id}?force=true"), None, &[]);
            }
        }
    }
}

fn setup() -> (Daemon, Client) {
    let d = Daemon::start();
    let root = d.root();
    let tpl = common::busybox_template(&d.data());
    common::upload(&root, &tpl, "busybox.tar.gz", "template");
    (d, root)
}

fn exec(c: &Client, id: i64, cmd: &str) -> Value {
    let r = c.post(
        &format!("/containers/{id}/exec"),
        json!({"command": ["/bin/sh", "-c", cmd], "timeout": 60}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

fn host_uid_of(pid: i64) -> u32 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    s.lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("uid")
}

fn ns_of(pid: &str, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// What a container leaves in the kernel: its cgroup directories and its mount point.
fn leftovers(d: &Daemon, id: i64) -> Vec<String> {
    let scope = ferrite::container::scope_of(&d.data());
    let mut out = Vec::new();
    for base in [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/cpu",
        "/sys/fs/cgroup/cpuacct",
        "/sys/fs/cgroup/freezer",
    ] {
        let p = Path::new(base).join(format!("{scope}/ct-{id}"));
        if p.exists() {
            out.push(p.display().to_string());
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if mounts.contains(&format!("ct-{id}-rootfs")) && mounts.contains(&scope) {
        out.push(format!("a mount of ct-{id}-rootfs"));
    }
    out
}

#[test]
fn a_container_starts_isolated_runs_commands_and_leaves_nothing() {
    let (d, c) = setup();
    let _reap = Reap(c.clone());
    let r = c.post(
        "/containers",
        json!({"name": "web1", "template": "local:busybox.tar.gz", "memory": 64, "pids_limit": 64,
               "init": ["/bin/sh", "-c", "echo booted; trap 'exit 0' TERM; while true; do sleep 1; done"]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_i64().expect("id");
    assert!(id >= 100);
    assert_eq!(r.body["status"]["state"], "stopped");
    assert_eq!(r.body["rootfs"], format!("local:ct-{id}-rootfs"));
    // The root filesystem volume is owned by the container and refuses deletion.
    let v = c
        .get(&format!("/storage/pools/local/volumes/ct-{id}-rootfs"))
        .body;
    assert_eq!(v["used_by"], json!([format!("container/{id}")]));
    assert_eq!(
        c.delete(&format!("/storage/pools/local/volumes/ct-{id}-rootfs"))
            .status,
        409
    );

    let r = c.post(&format!("/containers/{id}/start"), json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"]["state"], "running");
    let pid = r.body["status"]["pid"].as_i64().expect("pid");
    eprintln!("cgroup mode: {}", r.body["status"]["cgroup_mode"]);
    // Unprivileged: container root is a subordinate id on the host.
    assert_eq!(host_uid_of(pid), 100_000);
    let me = std::process::id().to_string();
    for ns in ["mnt", "pid", "uts", "ipc", "net", "user", "cgroup"] {
        assert_ne!(
            ns_of(&pid.to_string(), ns),
            ns_of(&me, ns),
            "{ns} namespace is shared"
        );
    }
    let out = exec(
        &c,
        id,
        "hostname; id -u; cat /proc/1/cmdline | tr '\\0' ' '; echo; ps | wc -l",
    );
    let lines: Vec<&str> = out["stdout"].as_str().unwrap_or_default().lines().collect();
    assert_eq!(lines[0], "web1");
    assert_eq!(lines[1], "0", "mapped root inside");
    assert!(lines[2].starts_with("/bin/sh -c echo booted"), "{lines:?}");
    assert_eq!(out["exit_code"], 0);
    let out = exec(&c, id, "echo to-stderr >&2; exit 3");
    assert_eq!(out["exit_code"], 3);
    assert_eq!(out["stderr"], "to-stderr\n");
    // The default seccomp filter refuses keyctl-class calls only where asked; module loading
    // and the like are refused regardless (no CAP_SYS_MODULE in the bounding set either).
    let caps = exec(&c, id, "grep CapBnd /proc/self/status");
    let bnd = u64::from_str_radix(
        caps["stdout"]
            .as_str()
            .unwrap_or_default()
            .split_whitespace()
            .nth(1)
            .unwrap_or("0"),
        16,
    )
    .unwrap_or(0);
    assert_eq!(bnd & (1 << 16), 0, "CAP_SYS_MODULE dropped");
    assert_eq!(
        std::fs::read_to_string(d.data().join(format!("containers/{id}/console.log")))
            .expect("log"),
        "booted\r\n" // the console is a terminal (ONLCR)
    );

    // Freeze and thaw.
    let r = c.post(&format!("/containers/{id}/freeze"), json!({}));
    assert_eq!(r.body["status"]["state"], "frozen", "{}", r.text);
    assert_eq!(
        c.post(
            &format!("/containers/{id}/exec"),
            json!({"command": ["true"]})
        )
        .status,
        409
    );
    let r = c.post(&format!("/containers/{id}/unfreeze"), json!({}));
    assert_eq!(r.body["status"]["state"], "running");

    // Running: delete is refused without force; shutdown lets init exit on SIGTERM.
    assert_eq!(c.delete(&format!("/containers/{id}")).status, 409);
    let r = c.post(
        &format!("/containers/{id}/shutdown"),
        json!({"timeout": 20}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"]["state"], "stopped");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "init {pid} is gone (reaped)"
    );
    assert!(leftovers(&d, id).is_empty(), "{:?}", leftovers(&d, id));
    let r = c.post(
        &format!("/containers/{id}/exec"),
        json!({"command": ["true"]}),
    );
    assert_eq!(r.status, 409, "exec in a stopped container: {}", r.text);

    // Start again, then delete with force: nothing remains.
    assert_eq!(
        c.post(&format!("/containers/{id}/start"), json!({})).status,
        200
    );
    assert_eq!(
        c.request("DELETE", &format!("/containers/{id}?force=true"), None, &[])
            .status,
        204
    );
    assert_eq!(c.get(&format!("/containers/{id}")).status, 404);
    assert_eq!(
        c.get(&format!("/storage/pools/local/volumes/ct-{id}-rootfs"))
            .status,
        404
    );
    assert!(!d
        .data()
        .join(format!("storage/local/private/ct-{id}-rootfs"))
        .exists());
    assert!(leftovers(&d, id).is_empty(), "{:?}", leftovers(&d, id));
}

/// The container's CPU weight in cgroup v2 units, read from the kernel's files.
fn cpu_weight(d: &common::Daemon, id: i64) -> u64 {
    let scope = ferrite::container::scope_of(&d.data());
    let cg = ferrite::container::cgroup::Cgroup::new(&format!("{scope}/ct-{id}"));
    for dir in cg.dirs() {
        if let Ok(w) = std::fs::read_to_string(dir.join("cpu.weight")) {
            return w.trim().parse().expect("cpu.weight");
        }
        if let Ok(s) = std::fs::read_to_string(dir.join("cpu.shares")) {
            return s.trim().parse::<u64>().expect("cpu.shares") * 100 / 1024;
        }
    }
    panic!("no cpu.weight or cpu.shares under {:?}", cg.dirs());
}

#[test]
fn memory_and_pids_limits_are_enforced_inside() {
    let (d, c) = setup();
    let _reap = Reap(c.clone());
    let r = c.post(
        "/containers",
        json!({"name": "limits", "template": "local:busybox.tar.gz", "memory": 32, "swap": 0, "pids_limit": 16,
               "cores": 2, "init": ["/bin/sh", "-c", "exec sleep 1000000"]}),
    );
    let id = r.body["id"].as_i64().expect("id");
    assert_eq!(
        c.post(&format!("/containers/{id}/start"), json!({})).status,
        200
    );
    // `cores` sets the CPU weight: 100 per core on cgroup v2 (1024 shares per core on v1).
    assert_eq!(cpu_weight(&d, id), 200);
    let r = c.put(&format!("/containers/{id}"), json!({"cores": 4}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(cpu_weight(&d, id), 400, "a live update reaches the cgroup");
    // (Init is a lone `sleep`: an init that forks would itself fail under the limits below.)
    // A process that grows past 32 MiB is killed inside; the daemon and host carry on.
    let out = exec(&c, id, "x=aaaaaaaa; while true; do x=$x$x; done");
    assert_eq!(
        out["exit_code"], 137,
        "the memory hog was not OOM-killed: {out}"
    );
    let st = c.get(&format!("/containers/{id}")).body["status"].clone();
    assert_eq!(st["state"], "running", "init survives: {st}");
    assert!(st["usage"]["oom_kills"].as_u64().unwrap_or(0) >= 1, "{st}");
    // More processes than pids_limit: forks fail inside.
    let out = exec(
        &c,
        id,
        "for i in $(seq 1 40); do sleep 5 & done 2>&1; wait; echo done",
    );
    let text = format!("{}{}", out["stdout"], out["stderr"]);
    assert!(
        text.contains("fork") || text.contains("Resource"),
        "no fork failure seen: {out}"
    );
    let pids = c.get(&format!("/containers/{id}")).body["status"]["usage"]["pids"].as_u64();
    assert!(pids.unwrap_or(0) <= 16, "{pids:?}");
    // A live update of the limit reaches the cgroup.
    let r = c.put(&format!("/containers/{id}"), json!({"pids_limit": 64}));
    assert_eq!(r.status, 200, "{}", r.text);
    let out = exec(
        &c,
        id,
        "for i in $(seq 1 30); do sleep 2 & done; wait; echo done",
    );
    assert_eq!(out["stdout"], "done\n", "{out}");
    assert_eq!(
        c.request("DELETE", &format!("/containers/{id}?force=true"), None, &[])
            .status,
        204
    );
    assert!(leftovers(&d, id).is_empty());
}

#[test]
fn containers_survive_a_daemon_kill_and_are_readopted() {
    let (mut d, c) = setup();
    let r = c.post(
        "/containers",
        json!({"name": "sturdy", "template": "local:busybox.tar.gz",
               "init": ["/bin/sh", "-c", "while true; do sleep 1; done"]}),
    );
    let id = r.body["id"].as_i64().expect("id");
    let r = c.post(&format!("/containers/{id}/start"), json!({}));
    let pid = r.body["status"]["pid"].as_i64().expect("pid");
    d.stop(nix::sys::signal::Signal::SIGKILL);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        host_uid_of(pid),
        100_000,
        "the container outlived the daemon"
    );
    d.spawn();
    let c = d.root();
    let _reap = Reap(c.clone());
    let r = c.get(&format!("/containers/{id}"));
    assert_eq!(r.body["status"]["state"], "running", "{}", r.text);
    assert_eq!(r.body["status"]["pid"].as_i64(), Some(pid));
    assert!(d.log().contains("re-adopted a running container"));
    assert_eq!(exec(&c, id, "hostname")["stdout"], "sturdy\n");
    let r = c.post(&format!("/containers/{id}/stop"), json!({}));
    assert_eq!(r.body["status"]["state"], "stopped");
    assert!(leftovers(&d, id).is_empty());
    assert_eq!(c.delete(&format!("/containers/{id}")).status, 204);
}

#[test]
fn bad_input_is_refused_and_leaves_nothing() {
    let (d, c) = setup();
    let _reap = Reap(c.clone());
    let count = |c: &Client| {
        c.get("/containers").body["items"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0)
    };
    let vols = |c: &Client| {
        c.get("/storage/pools/local/volumes?content=rootdir").body["items"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0)
    };
    // Schema-level refusals name the field.
    for (body, pointer) in [
        (
            json!({"name": "x", "template": "local:busybox.tar.gz", "memory": 8}),
            "/memory",
        ),
        (
            json!({"name": "bad name", "template": "local:busybox.tar.gz"}),
            "/name",
        ),
        (json!({"name": "x"}), "/template"),
        (
            json!({"name": "x", "template": "local:busybox.tar.gz", "id": 5}),
            "/id",
        ),
        (
            json!({"name": "x", "template": "local:busybox.tar.gz", "colour": 1}),
            "/colour",
        ),
    ] {
        let r = c.post("/containers", body.clone());
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert_eq!(r.pointers(), vec![pointer], "{body}");
    }
    // A template that does not exist, or is not a template.
    let r = c.post(
        "/containers",
        json!({"name": "x", "template": "local:nope.tar.gz"}),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.pointers(), vec!["/template"]);
    // A pool that does not exist, and a NIC on a bridge that does not exist: 422 naming them.
    let r = c.post(
        "/containers",
        json!({"name": "x", "template": "local:busybox.tar.gz", "pool": "nopool"}),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.pointers(), vec!["/pool"]);
    let r = c.post(
        "/containers",
        json!({"name": "x", "template": "local:busybox.tar.gz", "net": {"net0": {"bridge": "nobr0"}}}),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.pointers(), vec!["/net/net0/bridge"]);
    // A corrupt template and one whose members try to escape: 422, nothing written outside.
    let junk = d.data().join("junk.tar.gz");
    std::fs::write(&junk, b"\x1f\x8b\x08\x00 definitely not gzip").expect("junk");
    common::upload(&c, &junk, "junk.tar.gz", "template");
    let r = c.post(
        "/containers",
        json!({"name": "x", "template": "local:junk.tar.gz"}),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    let evil_dir = d.data().join("evil");
    std::fs::create_dir_all(evil_dir.join("a")).expect("mkdir");
    std::fs::write(evil_dir.join("a/f"), "x").expect("f");
    let evil = d.data().join("evil.tar");
    let st = Command::new("tar")
        .args(["-C"])
        .arg(&evil_dir)
        .args(["-cf"])
        .arg(&evil)
        .args(["--transform", "s,^a/f,../../escaped,", "a/f"])
        .status()
        .expect("tar");
    assert!(st.success());
    common::upload(&c, &evil, "evil.tar", "template");
    let r = c.post(
        "/containers",
        json!({"name": "x", "template": "local:evil.tar"}),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("outside"),
        "{}",
        r.text
    );
    assert!(!d.data().join("storage/local/escaped").exists());
    assert!(!d.data().join("storage/escaped").exists());
    assert_eq!(count(&c), 0, "no rows left");
    assert_eq!(vols(&c), 0, "no root filesystems left");
    // Duplicate names and ids.
    let r = c.post(
        "/containers",
        json!({"name": "dup", "template": "local:busybox.tar.gz", "id": 150}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = c.post(
        "/containers",
        json!({"name": "dup", "template": "local:busybox.tar.gz"}),
    );
    assert_eq!(r.status, 409, "{}", r.text);
    let r = c.post(
        "/containers",
        json!({"name": "other", "template": "local:busybox.tar.gz", "id": 150}),
    );
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.pointers(), vec!["/id"]);
    assert_eq!(count(&c), 1);
    assert_eq!(vols(&c), 1);
    // A start that fails (no such init) leaves no process or cgroup.
    let r = c.put("/containers/150", json!({"init": ["/no/such/init"]}));
    assert_eq!(r.status, 200);
    let r = c.post("/containers/150/start", json!({}));
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.pointers(), vec!["/init"]);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("/no/such/init"),
        "{}",
        r.text
    );
    assert_eq!(c.get("/containers/150").body["status"]["state"], "stopped");
    assert!(leftovers(&d, 150).is_empty(), "{:?}", leftovers(&d, 150));
    assert_eq!(
        c.post("/containers/150/exec", json!({"command": ["true"]}))
            .status,
        409
    );
    assert_eq!(c.delete("/containers/150").status, 204);
    assert_eq!(c.delete("/containers/150").status, 404);
}

fn net_setup(tag: &str) -> (NetNs, Daemon, Client) {
    let ns = NetNs::new(tag);
    let d = Daemon::start_in(&ns);
    let c = d.root();
    let tpl = common::busybox_template(&d.data());
    common::upload(&c, &tpl, "busybox.tar.gz", "template");
    (ns, d, c)
}

fn ct_with_nic(c: &Client, name: &str, nic: Value) -> i64 {
    let r = c.post(
        "/containers",
        json!({"name": name, "template": "local:busybox.tar.gz", "net": {"net0": nic},
               "init": ["/bin/sh", "-c", "exec sleep 1000000"]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_i64().expect("id");
    let r = c.post(&format!("/containers/{id}/start"), json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    id
}

fn pings(c: &Client, id: i64, ip: &str) -> bool {
    // Three tries: the first may spend its time on ARP (slow under emulation).
    let out = exec(c, id, &format!("ping -c3 -W3 {ip}"));
    eprintln!("container {id} ping {ip}: {out}");
    out["exit_code"] == 0
}

#[test]
fn containers_on_one_bridge_talk_and_the_bridge_cannot_go_under_them() {
    let (ns, _d, c) = net_setup("ctnet");
    let _reap = Reap(c.clone());
    let r = c.post("/network/bridges", json!({"name": "ctbr0"}));
    assert_eq!(r.status, 201, "{}", r.text);
    // An unknown bridge is refused before anything is made.
    let r = c.post(
        "/containers",
        json!({"name": "x", "template": "local:busybox.tar.gz", "net": {"net0": {"bridge": "nope0"}}}),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.pointers(), vec!["/net/net0/bridge"]);
    // A VLAN tag on a plain bridge likewise.
    let r = c.post(
        "/containers",
        json!({"name": "x", "template": "local:busybox.tar.gz", "net": {"net0": {"bridge": "ctbr0", "tag": 10}}}),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    let a = ct_with_nic(&c, "a", json!({"bridge": "ctbr0", "ip": "10.77.0.1/24"}));
    let b = ct_with_nic(
        &c,
        "b",
        json!({"bridge": "ctbr0", "ip": "10.77.0.2/24", "gw": "10.77.0.254"}),
    );
    assert!(pings(&c, a, "10.77.0.2"), "a reaches b over the bridge");
    assert!(pings(&c, b, "10.77.0.1"), "b reaches a");
    // The traffic shows in the containers' network counters.
    let usage = c.get(&format!("/containers/{a}")).body["status"]["usage"]["net"]["eth0"].clone();
    assert!(
        usage["tx_packets"].as_u64().unwrap_or(0) >= 3
            && usage["rx_bytes"].as_u64().unwrap_or(0) > 0,
        "{usage}"
    );
    // The NIC has its stable MAC inside, as eth0, and the default route was set.
    let mac = exec(&c, a, "cat /sys/class/net/eth0/address")["stdout"].clone();
    assert_eq!(
        mac.as_str().unwrap_or_default().trim(),
        ferrite::guest::nics::stable_mac(&a.to_string(), "net0").to_string()
    );
    let routes = exec(&c, b, "ip route")["stdout"].clone();
    assert!(
        routes
            .as_str()
            .unwrap_or_default()
            .contains("default via 10.77.0.254"),
        "{routes}"
    );
    // The host ends are on the bridge in the daemon's namespace.
    let links = ns.links();
    assert_eq!(links[&format!("v{a}i0")]["master"], "ctbr0");
    // Deleting the bridge under them is refused, naming them.
    let r = c.delete("/network/bridges/ctbr0");
    assert_eq!(r.status, 409, "{}", r.text);
    let detail = r.body["detail"].as_str().unwrap_or_default().to_string();
    assert!(
        detail.contains(&format!("container {a}")) && detail.contains(&format!("container {b}")),
        "{detail}"
    );
    // Stopping a container takes its veth away; deleting both frees the bridge.
    assert_eq!(
        c.request("DELETE", &format!("/containers/{a}?force=true"), None, &[])
            .status,
        204
    );
    assert!(!ns.links().contains_key(&format!("v{a}i0")));
    assert_eq!(
        c.request("DELETE", &format!("/containers/{b}?force=true"), None, &[])
            .status,
        204
    );
    assert_eq!(c.delete("/network/bridges/ctbr0").status, 204);
}

/// Needs a VLAN-aware bridge; where this kernel cannot, the test runs in the kernel VM (which
/// is also a pure cgroup v2 host, so the v2 path is proven there).
#[test]
fn containers_in_different_vlans_are_isolated() {
    let missing =
        if common::kernel_supports("ip -n NS link add name pbr type bridge vlan_filtering 1") {
            Vec::new()
        } else {
            vec!["CONFIG_BRIDGE_VLAN_FILTERING"]
        };
    if !common::runs_here(
        "containers::containers_in_different_vlans_are_isolated",
        &missing,
    ) {
        return;
    }
    let (_ns, _d, c) = net_setup("ctvlan");
    let _reap = Reap(c.clone());
    let r = c.post(
        "/network/bridges",
        json!({"name": "vbr0", "vlan_aware": true}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let a = ct_with_nic(
        &c,
        "a",
        json!({"bridge": "vbr0", "tag": 10, "ip": "10.10.0.1/24"}),
    );
    let b = ct_with_nic(
        &c,
        "b",
        json!({"bridge": "vbr0", "tag": 10, "ip": "10.10.0.2/24"}),
    );
    let x = ct_with_nic(
        &c,
        "x",
        json!({"bridge": "vbr0", "tag": 20, "ip": "10.10.0.3/24"}),
    );
    eprintln!(
        "cgroup mode: {}",
        c.get(&format!("/containers/{a}")).body["status"]["cgroup_mode"]
    );
    let same = pings(&c, a, "10.10.0.2");
    if !same {
        eprintln!(
            "{}",
            common::sh(&format!(
                "bridge -n {} vlan show; ip -n {} -br link",
                _ns.name, _ns.name
            ))
        );
        eprintln!("{}", exec(&c, a, "ip addr; ip route")["stdout"]);
    }
    assert!(same, "same VLAN: reachable");
    assert!(
        !pings(&c, a, "10.10.0.3"),
        "VLAN 20 is not reachable from VLAN 10"
    );
    assert!(!pings(&c, x, "10.10.0.2"), "nor the other way");
    for id in [a, b, x] {
        assert_eq!(
            c.request("DELETE", &format!("/containers/{id}?force=true"), None, &[])
                .status,
            204
        );
    }
}

#[test]
fn container_snapshots_rollback_clones_and_templates() {
    let (_d, c) = setup();
    let _reap = Reap(c.clone());
    let r = c.post(
        "/containers",
        json!({"name": "orig", "template": "local:busybox.tar.gz", "memory": 64,
               "init": ["/bin/sh", "-c", "exec sleep 1000000"]}),
    );
    let id = r.body["id"].as_i64().expect("id");
    assert_eq!(
        c.post(&format!("/containers/{id}/start"), json!({})).status,
        200
    );
    exec(&c, id, "echo one > /root/state");
    // Taken while running: frozen for the moment, thawed after.
    let r = c.post(
        &format!("/containers/{id}/snapshots"),
        json!({"name": "s1", "description": "first"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["current_snapshot"], "s1");
    assert_eq!(r.body["snapshots"][0]["running"], true);
    assert_eq!(r.body["status"]["state"], "running", "thawed again");
    exec(&c, id, "echo two > /root/state");
    assert_eq!(
        c.put(&format!("/containers/{id}"), json!({"memory": 256}))
            .status,
        200
    );
    assert_eq!(
        c.post(
            &format!("/containers/{id}/snapshots"),
            json!({"name": "s1"})
        )
        .status,
        409
    );
    // Rollback needs a stopped container; it brings back the files and the configuration.
    assert_eq!(
        c.post(
            &format!("/containers/{id}/snapshots/s1/rollback"),
            json!({})
        )
        .status,
        409
    );
    assert_eq!(
        c.post(&format!("/containers/{id}/stop"), json!({})).status,
        200
    );
    let r = c.post(
        &format!("/containers/{id}/snapshots/s1/rollback"),
        json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["memory"], 64, "configuration restored");
    assert_eq!(
        c.post(&format!("/containers/{id}/start"), json!({})).status,
        200
    );
    assert_eq!(exec(&c, id, "cat /root/state")["stdout"], "one\n");
    exec(&c, id, "echo three > /root/state");
    // Clones: a new id and name, the files as they are now or at a snapshot.
    let r = c.put(&format!("/containers/{id}"), json!({"tags": ["blue"]}));
    assert_eq!(r.status, 200, "{}", r.text);
    let r = c.post(&format!("/containers/{id}/clone"), json!({"name": "copy"}));
    assert_eq!(r.status, 201, "{}", r.text);
    let copy = r.body["id"].as_i64().expect("id");
    // The clone keeps the tags, and the tag filter finds it (its row's tags are indexed).
    let tagged: Vec<i64> = c.get("/containers?tag=blue").body["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["id"].as_i64()).collect())
        .unwrap_or_default();
    assert!(tagged.contains(&copy) && tagged.contains(&id), "{tagged:?}");
    assert_ne!(copy, id);
    assert_eq!(r.body["rootfs"], format!("local:ct-{copy}-rootfs"));
    assert_eq!(r.body["cloned_from"], id.to_string());
    assert_eq!(
        c.post(&format!("/containers/{copy}/start"), json!({}))
            .status,
        200
    );
    assert_eq!(
        exec(&c, copy, "hostname; cat /root/state")["stdout"],
        "copy\nthree\n"
    );
    let r = c.post(
        &format!("/containers/{id}/clone"),
        json!({"name": "old", "snapshot": "s1"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let old = r.body["id"].as_i64().expect("id");
    assert_eq!(
        c.post(&format!("/containers/{old}/start"), json!({}))
            .status,
        200
    );
    assert_eq!(exec(&c, old, "cat /root/state")["stdout"], "one\n");
    assert_eq!(
        c.post(&format!("/containers/{id}/clone"), json!({"name": "copy"}))
            .status,
        409
    );
    assert_eq!(
        c.post(
            &format!("/containers/{id}/clone"),
            json!({"name": "z", "snapshot": "nope"})
        )
        .status,
        404
    );
    // Snapshot delete.
    assert_eq!(
        c.delete(&format!("/containers/{id}/snapshots/s1")).status,
        204
    );
    assert!(c.get(&format!("/containers/{id}/snapshots")).body["items"]
        .as_array()
        .is_some_and(Vec::is_empty));
    // Template: a stopped container only; it never starts again; clones of it do.
    assert_eq!(
        c.post(&format!("/containers/{id}/template"), json!({}))
            .status,
        409
    );
    assert_eq!(
        c.post(&format!("/containers/{id}/stop"), json!({})).status,
        200
    );
    let r = c.post(&format!("/containers/{id}/template"), json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["is_template"], true);
    assert_eq!(
        c.post(&format!("/containers/{id}/start"), json!({})).status,
        409
    );
    let v = c
        .get(&format!("/storage/pools/local/volumes/ct-{id}-rootfs"))
        .body;
    assert_eq!(v["template"], true);
    let r = c.post(
        &format!("/containers/{id}/clone"),
        json!({"name": "fromtpl"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let t = r.body["id"].as_i64().expect("id");
    assert_eq!(
        c.post(&format!("/containers/{t}/start"), json!({})).status,
        200
    );
    assert_eq!(exec(&c, t, "cat /root/state")["stdout"], "three\n");
}

#[test]
fn mounts_dns_and_reboot() {
    let (d, c) = setup();
    let _reap = Reap(c.clone());
    let host_dir = d.data().join("shared");
    std::fs::create_dir_all(&host_dir).expect("mkdir");
    std::fs::write(host_dir.join("hello.txt"), "from the host\n").expect("write");
    let r = c.post(
        "/storage/pools/local/volumes",
        json!({"name": "data1", "size": 67108864, "content": "rootdir"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    // The volume's directory belongs to the container's root so it can write there.
    let vol_dir = d.data().join("storage/local/private/data1");
    nix::unistd::chown(
        &vol_dir,
        Some(nix::unistd::Uid::from_raw(100_000)),
        Some(nix::unistd::Gid::from_raw(100_000)),
    )
    .expect("chown");
    let r = c.post(
        "/containers",
        json!({"name": "mnt", "template": "local:busybox.tar.gz",
               "init": ["/bin/sh", "-c", "exec sleep 1000000"],
               "mounts": {
                   "mp0": {"path": host_dir.display().to_string(), "target": "/srv/shared", "read_only": true},
                   "mp1": {"volume": "local:data1", "target": "/data"}
               },
               "dns": {"servers": ["192.0.2.53", "2001:db8::53"], "search": "example.internal"}}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_i64().expect("id");
    // The volume is in use by the container now.
    assert_eq!(c.delete("/storage/pools/local/volumes/data1").status, 409);
    let r = c.post(&format!("/containers/{id}/start"), json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        exec(&c, id, "cat /srv/shared/hello.txt")["stdout"],
        "from the host\n"
    );
    let ro = exec(&c, id, "echo x > /srv/shared/new.txt");
    assert_ne!(ro["exit_code"], 0, "a read-only mount refuses writes: {ro}");
    assert!(!host_dir.join("new.txt").exists());
    assert_eq!(
        exec(&c, id, "echo written > /data/f; echo ok")["stdout"],
        "ok\n"
    );
    assert_eq!(
        std::fs::read_to_string(vol_dir.join("f")).expect("f"),
        "written\n"
    );
    let resolv = exec(&c, id, "cat /etc/resolv.conf")["stdout"].clone();
    let resolv = resolv.as_str().unwrap_or_default();
    assert!(resolv.contains("search example.internal"), "{resolv}");
    assert!(
        resolv.contains("nameserver 192.0.2.53") && resolv.contains("nameserver 2001:db8::53"),
        "{resolv}"
    );
    // Reboot: a new init, still running.
    let before = c.get(&format!("/containers/{id}")).body["status"]["pid"].as_i64();
    let r = c.post(&format!("/containers/{id}/reboot"), json!({"timeout": 2}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"]["state"], "running");
    assert_ne!(r.body["status"]["pid"].as_i64(), before);
    assert_eq!(exec(&c, id, "cat /data/f")["stdout"], "written\n");
    // A mount target through a symlink the container planted is refused at start.
    exec(&c, id, "ln -s / /evil");
    assert_eq!(
        c.post(&format!("/containers/{id}/stop"), json!({})).status,
        200
    );
    let r = c.put(
        &format!("/containers/{id}"),
        json!({"mounts": {"mp0": {"path": host_dir.display().to_string(), "target": "/evil/etc"}}}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = c.post(&format!("/containers/{id}/start"), json!({}));
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.pointers(), vec!["/mounts"]);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("symlink"),
        "{}",
        r.text
    );
    assert_eq!(
        c.get(&format!("/containers/{id}")).body["status"]["state"],
        "stopped"
    );
    assert!(leftovers(&d, id).is_empty(), "{:?}", leftovers(&d, id));
    // Bad mount definitions are refused by the schema.
    for (m, pointer) in [
        (json!({"mp0": {"target": "/x"}}), "/mounts/mp0"),
        (
            json!({"mp0": {"path": "/tmp", "target": "relative"}}),
            "/mounts/mp0/target",
        ),
        (
            json!({"mp0": {"path": "/tmp", "target": "/a/../b"}}),
            "/mounts/mp0/target",
        ),
        (json!({"disk": {"path": "/tmp", "target": "/x"}}), "/mounts"),
    ] {
        let r = c.put(&format!("/containers/{id}"), json!({"mounts": m}));
        assert_eq!(r.status, 400, "{m}: {}", r.text);
        assert!(
            r.pointers().iter().any(|p| p.starts_with(pointer)),
            "{m}: {:?}",
            r.pointers()
        );
    }
}

/// The console is a terminal, reachable over WebSocket: a shell as init reads what is typed
/// into the socket, runs it on a tty (stty works), and its output comes back; when the shell
/// exits the container stops and the socket closes. A plain GET is told to upgrade.
#[test]
fn console_is_a_terminal_over_websocket() {
    let (d, c) = setup();
    let _reap = Reap(c.clone());
    let r = c.post(
        "/containers",
        json!({"name": "tty", "template": "local:busybox.tar.gz", "init": ["/bin/sh"]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_i64().expect("id");
    assert_eq!(c.get(&format!("/containers/{id}/console")).status, 409);
    assert_eq!(
        c.post(&format!("/containers/{id}/start"), json!({})).status,
        200
    );
    assert_eq!(c.get(&format!("/containers/{id}/console")).status, 426);
    let mut con = common::Console::attach(&d, &c, &format!("containers/{id}/console"));
    // Computed by the shell, so the typed text (echoed by the terminal) cannot match.
    con.send(tungstenite::Message::text("echo hi-$((6*7))\n"));
    con.read_until("hi-42");
    con.send(tungstenite::Message::text(
        "busybox stty -g >/dev/null && echo TTY-$((1+1))-OK\n",
    ));
    con.read_until("TTY-2-OK");
    con.send(tungstenite::Message::text("exit\n"));
    con.wait_closed();
    let st = c.get(&format!("/containers/{id}")).body["status"]["state"].clone();
    assert_eq!(st, "stopped");
}

/// `features.nesting`: without it the default seccomp filter refuses namespaces inside the
/// container (unshare, setns, clone with namespace flags); with it a nested PID namespace
/// with its own /proc and a nested UTS namespace work, as nested containers need.
#[test]
fn nesting_feature_gates_namespaces_inside() {
    let (_d, c) = setup();
    let _reap = Reap(c.clone());
    let mut ids = Vec::new();
    for (name, nesting) in [("flat", false), ("nested", true)] {
        let r = c.post(
            "/containers",
            json!({"name": name, "template": "local:busybox.tar.gz",
                   "init": ["/bin/sh", "-c", "exec sleep 1000000"],
                   "features": {"nesting": nesting}}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        let id = r.body["id"].as_i64().expect("id");
        assert_eq!(
            c.post(&format!("/containers/{id}/start"), json!({})).status,
            200
        );
        ids.push(id);
    }
    let pidns = "busybox unshare -p -f -m --mount-proc busybox sh -c 'echo pid-$$'";
    let utsns = "busybox unshare -u busybox sh -c 'busybox hostname inner && busybox hostname'";
    let flat = exec(&c, ids[0], pidns);
    assert_ne!(
        flat["exit_code"], 0,
        "nested namespace allowed without nesting: {flat}"
    );
    assert_ne!(exec(&c, ids[0], utsns)["exit_code"], 0);
    // Ordinary forks still work under the filter.
    assert_eq!(
        exec(&c, ids[0], "busybox sh -c 'echo child' | busybox cat")["stdout"],
        "child\n"
    );
    let nested = exec(&c, ids[1], pidns);
    assert_eq!(nested["stdout"], "pid-1\n", "{nested}");
    let uts = exec(&c, ids[1], utsns);
    assert_eq!(uts["stdout"], "inner\n", "{uts}");
    // The container's own hostname is untouched by the nested one.
    assert_ne!(exec(&c, ids[1], "busybox hostname")["stdout"], "inner\n");
}

/// `onboot` containers start when the daemon starts, in `startup_order`; the others stay
/// stopped.
#[test]
fn onboot_containers_start_with_the_daemon_in_order() {
    let (mut d, c) = setup();
    let mut ids = Vec::new();
    for (name, onboot, order) in [
        ("second", true, 2),
        ("first", true, 1),
        ("manual", false, 0),
    ] {
        let r = c.post(
            "/containers",
            json!({"name": name, "template": "local:busybox.tar.gz", "onboot": onboot,
                   "startup_order": order, "init": ["/bin/sh", "-c", "exec sleep 1000000"]}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        ids.push(r.body["id"].as_i64().expect("id"));
    }
    d.stop(nix::sys::signal::Signal::SIGTERM);
    d.spawn();
    let c = d.root();
    let _reap = Reap(c.clone());
    let state = |id: i64| c.get(&format!("/containers/{id}")).body["status"]["state"].clone();
    let t0 = std::time::Instant::now();
    while state(ids[0]) != "running" || state(ids[1]) != "running" {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "onboot containers did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        state(ids[2]),
        "stopped",
        "a container without onboot was started"
    );
    let log = d.log();
    let at = |id: i64| {
        log.lines()
            .position(|l| {
                l.contains("started on boot")
                    && l.contains("kind=\"container\"")
                    && l.contains(&format!("id={id}"))
            })
            .unwrap_or_else(|| panic!("no boot start logged for {id}:\n{log}"))
    };
    assert!(
        at(ids[1]) < at(ids[0]),
        "startup_order 1 did not start before 2:\n{log}"
    );
}

/// `features.fuse` puts the host's `/dev/fuse` into the container (a privileged one here:
/// this host's node is 0600, which an unprivileged container's root may not open); without
/// it there is no such device.
#[test]
fn fuse_feature_provides_dev_fuse() {
    if !Path::new("/dev/fuse").exists() {
        common::skip(
            "containers::fuse_feature_provides_dev_fuse",
            "this host has no /dev/fuse",
        );
        return;
    }
    let (_d, c) = setup();
    let _reap = Reap(c.clone());
    let mut ids = Vec::new();
    for (name, fuse) in [("plain", false), ("fuse", true)] {
        let r = c.post(
            "/containers",
            json!({"name": name, "template": "local:busybox.tar.gz", "privileged": true,
                   "init": ["/bin/sh", "-c", "exec sleep 1000000"],
                   "features": {"fuse": fuse}}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        let id = r.body["id"].as_i64().expect("id");
        let r = c.post(&format!("/containers/{id}/start"), json!({}));
        assert_eq!(r.status, 200, "{}", r.text);
        ids.push(id);
    }
    let open = "busybox test -c /dev/fuse && exec 3<>/dev/fuse && echo opened";
    let plain = exec(&c, ids[0], open);
    assert_ne!(plain["exit_code"], 0, "{plain}");
    let fused = exec(&c, ids[1], open);
    assert_eq!(fused["stdout"], "opened\n", "{fused}");
}

/// `tc -s -j ARGS` in the namespace, as JSON: what the kernel really holds.
fn tc_json(ns: &NetNs, args: &str) -> Value {
    let out = common::sh(&format!("ip netns exec {} tc -s -j {args}", ns.name));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("tc {args}: {e}: {out}"))
}

/// The first object (depth first) whose `kind` is `kind`.
fn find_kind<'a>(v: &'a Value, kind: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) if m.get("kind").and_then(Value::as_str) == Some(kind) => Some(v),
        Value::Object(m) => m.values().find_map(|x| find_kind(x, kind)),
        Value::Array(a) => a.iter().find_map(|x| find_kind(x, kind)),
        _ => None,
    }
}

/// Rate limits on a guest NIC are programmed on the host end and bite: a flood towards the
/// limited container is shaped (the tbf qdisc counts overlimits and drops), a flood from it is
/// policed (the police action counts drops), while the unlimited peer's NIC carries no qdisc.
/// Policing needs cls_matchall and act_police; on a kernel without them the start is refused
/// with 422 naming the field and leaves nothing, and the rest runs in the kernel VM.
#[test]
fn nic_rate_limits_are_enforced_on_the_host_end() {
    let police = "ip -n NS link add name prl type veth peer name prl2 && \
                  ip netns exec NS tc qdisc add dev prl ingress && \
                  ip netns exec NS tc filter add dev prl parent ffff: matchall action police rate 1mbit burst 16k drop";
    let missing = if common::kernel_supports(police) {
        Vec::new()
    } else {
        vec!["cls_matchall/act_police"]
    };
    if !missing.is_empty() {
        let (ns, d, c) = net_setup("ctrate0");
        let _reap = Reap(c.clone());
        assert_eq!(
            c.post("/network/bridges", json!({"name": "rtbr0"})).status,
            201
        );
        let r = c.post(
            "/containers",
            json!({"name": "lim", "template": "local:busybox.tar.gz",
                       "net": {"net0": {"bridge": "rtbr0", "rate": {"tx_mbps": 1}}}}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        let id = r.body["id"].as_i64().expect("id");
        let r = c.post(&format!("/containers/{id}/start"), json!({}));
        assert_eq!(r.status, 422, "{}", r.text);
        assert_eq!(r.pointers(), vec!["/net/net0/rate/tx_mbps"], "{}", r.text);
        assert!(r.text.contains("act_police"), "{}", r.text);
        assert_eq!(
            c.get(&format!("/containers/{id}")).body["status"]["state"],
            "stopped"
        );
        let links = ns.links();
        assert!(
            !links.keys().any(|l| l.starts_with(&format!("v{id}i"))),
            "a host end was left: {links:?}"
        );
        assert_eq!(leftovers(&d, id), Vec::<String>::new());
    }
    if !common::runs_here(
        "containers::nic_rate_limits_are_enforced_on_the_host_end",
        &missing,
    ) {
        return;
    }
    let (ns, _d, c) = net_setup("ctrate");
    let _reap = Reap(c.clone());
    assert_eq!(
        c.post("/network/bridges", json!({"name": "rtbr0"})).status,
        201
    );
    // Bad values are refused before anything is made.
    for bad in [
        json!({"rx_mbps": 0}),
        json!({}),
        json!({"tx_mbps": 1, "x": 1}),
    ] {
        let r = c.post(
            "/containers",
            json!({"name": "bad", "template": "local:busybox.tar.gz",
                   "net": {"net0": {"bridge": "rtbr0", "rate": bad}}}),
        );
        assert_eq!(r.status, 400, "{}", r.text);
    }
    let a = ct_with_nic(
        &c,
        "limited",
        json!({"bridge": "rtbr0", "ip": "10.79.0.1/24", "rate": {"rx_mbps": 1, "tx_mbps": 1}}),
    );
    let b = ct_with_nic(&c, "free", json!({"bridge": "rtbr0", "ip": "10.79.0.2/24"}));
    assert!(pings(&c, b, "10.79.0.1"), "traffic within the limit flows");
    let host_a = format!("v{a}i0");
    let host_b = format!("v{b}i0");
    // What the kernel holds: a tbf root qdisc at 1 Mbit/s (125,000 bytes/s) on a's host end,
    // an ingress qdisc with a police action at the same rate; nothing on b's.
    let q = tc_json(&ns, &format!("qdisc show dev {host_a}"));
    let tbf = find_kind(&q, "tbf").unwrap_or_else(|| panic!("no tbf on {host_a}: {q}"));
    assert_eq!(tbf["options"]["rate"], 125_000, "{tbf}");
    assert!(find_kind(&q, "ingress").is_some(), "{q}");
    let qb = tc_json(&ns, &format!("qdisc show dev {host_b}"));
    assert!(
        find_kind(&qb, "tbf").is_none() && find_kind(&qb, "ingress").is_none(),
        "{qb}"
    );
    // A flood towards a (300 x 1.4 KB in about 0.3 s: ~11 Mbit/s) is shaped...
    exec(
        &c,
        b,
        "ping -q -c 300 -i 0.001 -s 1400 -W 2 10.79.0.1 >/dev/null; true",
    );
    let q = tc_json(&ns, &format!("qdisc show dev {host_a}"));
    let tbf = find_kind(&q, "tbf").expect("tbf");
    assert!(
        tbf["overlimits"].as_u64().unwrap_or(0) > 0 && tbf["drops"].as_u64().unwrap_or(0) > 0,
        "the flood to the guest was not shaped: {tbf}"
    );
    // ...and a flood from a is policed.
    exec(
        &c,
        a,
        "ping -q -c 300 -i 0.001 -s 1400 -W 2 10.79.0.2 >/dev/null; true",
    );
    let f = tc_json(&ns, &format!("filter show dev {host_a} ingress"));
    let p = find_kind(&f, "police").unwrap_or_else(|| panic!("no police action: {f}"));
    let drops = p["stats"]["drops"]
        .as_u64()
        .or_else(|| p["drops"].as_u64())
        .unwrap_or(0);
    assert!(drops > 0, "the flood from the guest was not policed: {p}");
    // Deleting the container takes the qdiscs with its host end.
    assert_eq!(
        c.request("DELETE", &format!("/containers/{a}?force=true"), None, &[])
            .status,
        204
    );
    assert!(!ns.links().contains_key(&host_a));
}
