//! Networking against the real kernel, in namespaces each test creates: the daemon manages an
//! "appliance" namespace (`--netns`), test hosts live in namespaces of their own, and every
//! check of the kernel reads netlink through iproute2, not through Ferrite's store.

mod common;

use std::time::{Duration, Instant};

use common::{kernel_supports, Client, Daemon, NetNs};
use serde_json::{json, Value};

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn master_of(links: &std::collections::BTreeMap<String, Value>, port: &str) -> Option<String> {
    links
        .get(port)
        .and_then(|l| l["master"].as_str())
        .map(String::from)
}

/// Two test hosts on a bridge: h1 and h2, addresses 10.77.0.1 and .2, ports p1 and p2.
fn two_hosts(app: &NetNs) -> (NetNs, NetNs) {
    let h1 = NetNs::new("h1");
    let h2 = NetNs::new("h2");
    for (h, port, addr) in [(&h1, "p1", "10.77.0.1/24"), (&h2, "p2", "10.77.0.2/24")] {
        app.veth_to(port, h, "eth0");
        h.ip(&format!("addr add {addr} dev eth0"));
        h.ip("link set eth0 up");
    }
    (h1, h2)
}

#[test]
fn bridge_is_built_in_the_kernel_and_hosts_talk_through_it() {
    let app = NetNs::new("app");
    let (h1, h2) = two_hosts(&app);
    let d = Daemon::start_in(&app);
    let root = d.root();
    let r = root.post("/network/bridges", json!({"name": "br0", "ports": {"p1": {}, "p2": {}}, "mtu": 1450, "addresses": ["10.77.0.254/24"], "stp": false, "tags": ["lab"]}));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["status"]["present"], true);
    // Read the kernel through netlink (iproute2), not through our store.
    let links = app.links();
    let br = &links["br0"];
    assert_eq!(br["linkinfo"]["info_kind"], "bridge");
    assert_eq!(br["mtu"], 1450);
    assert!(br["flags"]
        .as_array()
        .expect("flags")
        .iter()
        .any(|f| f == "UP"));
    assert_eq!(master_of(&links, "p1").as_deref(), Some("br0"));
    assert_eq!(master_of(&links, "p2").as_deref(), Some("br0"));
    assert!(app.ip("addr show dev br0").contains("10.77.0.254/24"));
    // Hosts reach each other and the bridge's own address.
    wait_for("h1 to reach h2", || h1.exec_ok("ping -c1 -W1 10.77.0.2"));
    assert!(h2.exec_ok("ping -c1 -W1 10.77.0.254"));
    // The kernel's view through the API.
    let ifs = root.get("/network/interfaces");
    let items = ifs.body["items"].as_array().expect("items");
    let b = items
        .iter()
        .find(|i| i["name"] == "br0")
        .expect("br0 listed");
    assert_eq!(b["managed"], true);
    assert_eq!(b["kind"], "bridge");
    assert!(items
        .iter()
        .any(|i| i["name"] == "p1" && i["master"] == "br0"));
    assert_eq!(
        root.get("/network/bridges?tag=lab").body["items"]
            .as_array()
            .expect("items")
            .len(),
        1
    );
    // Update in place: drop a port, change MTU.
    let u = root.request(
        "PUT",
        "/network/bridges/br0",
        Some(&json!({"ports": {"p1": {}}, "mtu": 1400})),
        &[("If-Match", "\"1\"")],
    );
    assert_eq!(u.status, 200, "{}", u.text);
    let links = app.links();
    assert_eq!(links["br0"]["mtu"], 1400);
    assert_eq!(master_of(&links, "p2"), None);
    assert!(!h1.exec_ok("ping -c1 -W1 10.77.0.2"), "p2 was released");
    // Delete: the link goes, the ports are released.
    assert_eq!(root.delete("/network/bridges/br0").status, 204);
    let links = app.links();
    assert!(!links.contains_key("br0"));
    assert_eq!(master_of(&links, "p1"), None);
    assert_eq!(root.get("/network/bridges/br0").status, 404);
}

#[test]
fn drift_is_detected_reported_and_repaired() {
    let app = NetNs::new("app");
    let (h1, _h2) = two_hosts(&app);
    let d = Daemon::start_in(&app);
    let root = d.root();
    let r = root.post(
        "/network/bridges",
        json!({"name": "br0", "ports": {"p1": {}, "p2": {}}, "addresses": ["10.77.0.254/24"]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let first_index = app.links()["br0"]["ifindex"].as_i64().expect("ifindex");
    // Delete the bridge behind the daemon's back.
    app.ip("link del br0");
    wait_for("the bridge to come back with its ports", || {
        let l = app.links();
        l.contains_key("br0")
            && master_of(&l, "p1").as_deref() == Some("br0")
            && master_of(&l, "p2").as_deref() == Some("br0")
    });
    assert_ne!(app.links()["br0"]["ifindex"].as_i64(), Some(first_index));
    wait_for("the address to come back", || {
        app.ip("addr show dev br0").contains("10.77.0.254/24")
    });
    let v = root.get("/network/bridges/br0");
    let status = &v.body["status"];
    assert!(
        status["repairs"].as_u64().expect("repairs") >= 1,
        "{status}"
    );
    assert!(status["drift_detected_at"].is_string());
    let drift = status["drift"].to_string();
    assert!(
        drift.contains("missing") || drift.contains("not attached"),
        "{drift}"
    );
    wait_for("hosts to talk again", || {
        h1.exec_ok("ping -c1 -W1 10.77.0.254")
    });
    // Detach a port and remove the address by hand: both come back.
    app.ip("link set p2 nomaster");
    app.ip("addr del 10.77.0.254/24 dev br0");
    wait_for("port and address repaired", || {
        master_of(&app.links(), "p2").as_deref() == Some("br0")
            && app.ip("addr show dev br0").contains("10.77.0.254/24")
    });
    // Links the daemon does not own are never touched.
    app.ip("link add mine type bridge");
    std::thread::sleep(Duration::from_millis(500));
    assert!(app.links().contains_key("mine"));
}

#[test]
fn a_change_that_fails_half_way_is_rolled_back() {
    let app = NetNs::new("app");
    let (_h1, _h2) = two_hosts(&app);
    let d = Daemon::start_in(&app);
    let root = d.root();
    assert_eq!(
        root.post(
            "/network/bridges",
            json!({"name": "br0", "ports": {"p1": {}}, "mtu": 1400})
        )
        .status,
        201
    );
    // p2 attaches fine, then the kernel refuses the loopback device: p2 must be released again.
    let r = root.put(
        "/network/bridges/br0",
        json!({"ports": {"p1": {}, "p2": {}, "lo": {}}, "mtu": 1300}),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.body["detail"]
        .as_str()
        .expect("detail")
        .contains("rolled back"));
    let links = app.links();
    assert_eq!(master_of(&links, "p1").as_deref(), Some("br0"));
    assert_eq!(
        master_of(&links, "p2"),
        None,
        "p2 was attached and must be released by the rollback"
    );
    assert_eq!(master_of(&links, "lo"), None);
    assert_eq!(links["br0"]["mtu"], 1400);
    let v = root.get("/network/bridges/br0");
    assert_eq!(v.body["revision"], 1);
    assert_eq!(v.body["ports"], json!({"p1": {}}));
    // A create that fails leaves no link and no row.
    let r = root.post(
        "/network/bridges",
        json!({"name": "br1", "ports": {"p2": {}, "lo": {}}}),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    let links = app.links();
    assert!(!links.contains_key("br1"));
    assert_eq!(master_of(&links, "p2"), None);
    assert_eq!(root.get("/network/bridges/br1").status, 404);
}

#[test]
fn restart_reconciles_with_zero_kernel_writes() {
    let app = NetNs::new("app");
    let (_h1, _h2) = two_hosts(&app);
    let mut d = Daemon::start_in(&app);
    let root = d.root();
    assert_eq!(root.post("/network/bridges", json!({"name": "br0", "ports": {"p1": {}, "p2": {}}, "mtu": 1450, "addresses": ["10.77.0.254/24", "fd77::1/64"], "stp": true})).status, 201);
    let before = app.links();
    let st = d.stop(nix::sys::signal::Signal::SIGTERM);
    assert!(st.success());
    // The bridge stays while the daemon is down.
    assert!(app.links().contains_key("br0"));
    d.spawn();
    wait_for("the initial reconcile", || {
        d.log().matches("initial reconcile finished").count() >= 2
    });
    let last = d
        .log()
        .lines()
        .rfind(|l| l.contains("initial reconcile finished"))
        .expect("line")
        .to_string();
    assert!(
        last.contains("writes=0"),
        "restart changed the kernel: {last}"
    );
    assert!(last.contains("objects=1"), "{last}");
    let after = app.links();
    for name in ["br0", "p1", "p2"] {
        assert_eq!(
            before[name]["ifindex"], after[name]["ifindex"],
            "{name} was recreated"
        );
    }
    let root = d.root();
    let status = root.get("/network/bridges/br0").body["status"].clone();
    assert_eq!(status["repairs"], 0, "{status}");
}

#[test]
fn bad_input_is_refused_and_the_kernel_untouched() {
    let app = NetNs::new("app");
    let (_h1, _h2) = two_hosts(&app);
    app.ip("link add hostbr type bridge");
    app.ip("link add p3 type veth peer name p3peer");
    app.ip("link set p3 master hostbr");
    let d = Daemon::start_in(&app);
    let root = d.root();
    let before: Vec<String> = app.links().keys().cloned().collect();
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "/network/vlans",
            json!({"parent": "p1", "vlan_id": 0}),
            400,
            "/vlan_id",
        ),
        (
            "/network/vlans",
            json!({"parent": "p1", "vlan_id": 4095}),
            400,
            "/vlan_id",
        ),
        (
            "/network/vlans",
            json!({"parent": "nope", "vlan_id": 10}),
            422,
            "/parent",
        ),
        (
            "/network/vlans",
            json!({"parent": "p1", "vlan_id": 10, "name": "a-very-long-name0"}),
            400,
            "/name",
        ),
        ("/network/bridges", json!({"name": "br/0"}), 400, "/name"),
        (
            "/network/bridges",
            json!({"name": "sixteen-chars-xx"}),
            400,
            "/name",
        ),
        (
            "/network/bridges",
            json!({"name": "br0", "ports": {"br0": {}}}),
            400,
            "/ports/br0",
        ),
        (
            "/network/bridges",
            json!({"name": "br0", "ports": {"p3": {}}}),
            409,
            "/ports/p3",
        ),
        (
            "/network/bridges",
            json!({"name": "br0", "ports": {"ghost": {}}}),
            422,
            "/ports/ghost",
        ),
        (
            "/network/bridges",
            json!({"name": "br0", "ports": {"hostbr": {}}}),
            400,
            "/ports/hostbr",
        ),
        (
            "/network/bridges",
            json!({"name": "br0", "mtu": 50}),
            400,
            "/mtu",
        ),
        (
            "/network/bridges",
            json!({"name": "br0", "mtu": 70000}),
            400,
            "/mtu",
        ),
        (
            "/network/bridges",
            json!({"name": "br0", "ports": {"p1": {"pvid": 10}}}),
            422,
            "/vlan_aware",
        ),
        (
            "/network/bridges",
            json!({"name": "br0", "ports": {"p1": {"pvid": 0}}, "vlan_aware": true}),
            400,
            "/ports/p1/pvid",
        ),
        (
            "/network/bridges",
            json!({"name": "br0", "addresses": ["10.0.0.1"]}),
            400,
            "/addresses/0",
        ),
        (
            "/network/bridges",
            json!({"name": "br0", "colour": "blue"}),
            400,
            "/colour",
        ),
        (
            "/network/bonds",
            json!({"name": "bond0", "mode": "fastest"}),
            400,
            "/mode",
        ),
        (
            "/network/bonds",
            json!({"name": "bond0", "mode": "active-backup", "members": ["p3"]}),
            409,
            "/members/0",
        ),
    ];
    for (path, body, status, pointer) in cases {
        let r = root.post(path, body.clone());
        assert_eq!(r.status, status, "{path} {body}: {}", r.text);
        assert!(
            r.pointers().contains(&pointer.to_string()),
            "{path} {body} should name {pointer}: {}",
            r.text
        );
    }
    // An existing unmanaged link is never taken over; duplicates conflict.
    let r = root.post("/network/bridges", json!({"name": "hostbr"}));
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(
        root.post(
            "/network/bridges",
            json!({"name": "br0", "ports": {"p1": {}}})
        )
        .status,
        201
    );
    assert_eq!(
        root.post("/network/bridges", json!({"name": "br0"})).status,
        409
    );
    let r = root.post(
        "/network/bridges",
        json!({"name": "br1", "ports": {"p1": {}}}),
    );
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.body["detail"].as_str().expect("detail").contains("br0"));
    let after: Vec<String> = app.links().keys().cloned().collect();
    let mut expected = before.clone();
    expected.push("br0".into());
    expected.sort();
    let mut after_sorted = after.clone();
    after_sorted.sort();
    assert_eq!(after_sorted, expected, "only br0 was added");
    assert_eq!(
        master_of(&app.links(), "p3").as_deref(),
        Some("hostbr"),
        "unmanaged port untouched"
    );
}

/// VLAN-aware bridges, 802.1Q interfaces and bonds need CONFIG_BRIDGE_VLAN_FILTERING,
/// CONFIG_VLAN_8021Q and CONFIG_BONDING. Where the kernel lacks them the test says so and
/// stops; it is not counted as proof.
#[test]
fn vlans_isolate_hosts_and_trunks_carry_both() {
    if !common::runs_here(
        "network::vlans_isolate_hosts_and_trunks_carry_both",
        &common::missing_vlan_features(),
    ) {
        return;
    }
    let app = NetNs::new("app");
    let hosts: Vec<NetNs> = (1..=4).map(|i| NetNs::new(&format!("v{i}"))).collect();
    for (i, h) in hosts.iter().enumerate() {
        app.veth_to(&format!("p{}", i + 1), h, "eth0");
        h.ip("link set eth0 up");
    }
    // h1, h2 in VLAN 10; h3 in VLAN 20; h4 is a trunk with both, tagged.
    hosts[0].ip("addr add 10.10.0.1/24 dev eth0");
    hosts[1].ip("addr add 10.10.0.2/24 dev eth0");
    hosts[2].ip("addr add 10.10.0.3/24 dev eth0");
    hosts[3].ip("link add link eth0 name eth0.10 type vlan id 10");
    hosts[3].ip("link add link eth0 name eth0.20 type vlan id 20");
    hosts[3].ip("addr add 10.10.0.4/24 dev eth0.10");
    hosts[3].ip("addr add 10.20.0.4/24 dev eth0.20");
    hosts[3].ip("link set eth0.10 up");
    hosts[3].ip("link set eth0.20 up");
    hosts[2].ip("addr add 10.20.0.3/24 dev eth0");
    // A bond of two veths as an uplink port.
    app.ip("link add u1 type veth peer name u1p");
    app.ip("link add u2 type veth peer name u2p");
    let d = Daemon::start_in(&app);
    let root = d.root();
    let r = root.post(
        "/network/bonds",
        json!({"name": "bond0", "mode": "active-backup", "members": ["u1", "u2"], "miimon": 100}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = root.post("/network/bridges", json!({
        "name": "vbr0", "vlan_aware": true,
        "ports": {"p1": {"pvid": 10}, "p2": {"pvid": 10}, "p3": {"pvid": 20}, "p4": {"vlans": [10, 20]}, "bond0": {"vlans": [{"from": 10, "to": 20}]}}
    }));
    assert_eq!(r.status, 201, "{}", r.text);
    let links = app.links();
    assert_eq!(links["vbr0"]["linkinfo"]["info_data"]["vlan_filtering"], 1);
    assert_eq!(links["bond0"]["linkinfo"]["info_kind"], "bond");
    assert_eq!(master_of(&links, "u1").as_deref(), Some("bond0"));
    assert_eq!(master_of(&links, "bond0").as_deref(), Some("vbr0"));
    // Read back from the kernel (bridge -j vlan show), not from our store.
    let vl = bridge_vlans(&app);
    assert_eq!(vl["p1"], vec![(10, true, true)], "{vl:?}");
    assert_eq!(vl["p2"], vec![(10, true, true)], "{vl:?}");
    assert_eq!(vl["p3"], vec![(20, true, true)], "{vl:?}");
    assert_eq!(
        vl["p4"],
        vec![(10, false, false), (20, false, false)],
        "{vl:?}"
    );
    assert_eq!(
        vl["bond0"],
        (10..=20).map(|v| (v, false, false)).collect::<Vec<_>>(),
        "{vl:?}"
    );
    wait_for("VLAN 10 hosts to talk", || {
        hosts[0].exec_ok("ping -c1 -W1 10.10.0.2")
    });
    assert!(
        !hosts[0].exec_ok("ping -c1 -W1 10.10.0.3"),
        "VLAN 20 must not be reachable from VLAN 10"
    );
    assert!(
        hosts[3].exec_ok("ping -c1 -W1 10.10.0.1"),
        "trunk carries VLAN 10"
    );
    assert!(
        hosts[3].exec_ok("ping -c1 -W1 10.20.0.3"),
        "trunk carries VLAN 20"
    );
    // A VLAN interface on the bridge, and in-use protection.
    let r = root.post(
        "/network/vlans",
        json!({"parent": "vbr0", "vlan_id": 10, "addresses": ["10.10.0.254/24"]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["name"], "vbr0.10");
    let r = root.delete("/network/bridges/vbr0");
    assert_eq!(r.status, 409);
    assert!(r.body["detail"].as_str().expect("d").contains("vbr0.10"));
    // Drift: the bridge deleted behind the daemon's back comes back with its ports and VLANs,
    // and the repair is visible in the API.
    app.ip("link del vbr0");
    wait_for("vbr0 to be rebuilt with its VLANs", || {
        let vl = bridge_vlans(&app);
        app.links().contains_key("vbr0")
            && vl.get("p4") == Some(&vec![(10, false, false), (20, false, false)])
            && vl.get("bond0").map(Vec::len) == Some(11)
    });
    let st = root.get("/network/bridges/vbr0").body["status"].clone();
    assert!(
        st["drift"].as_array().is_some_and(|d| !d.is_empty()),
        "drift is reported: {st}"
    );
    wait_for("VLAN 10 hosts to talk again", || {
        hosts[0].exec_ok("ping -c1 -W1 10.10.0.2")
    });
    assert!(!hosts[0].exec_ok("ping -c1 -W1 10.10.0.3"));
}

/// Bridge VLANs per port as the kernel reports them: (vid, pvid, untagged), ports' default
/// VLAN 1 entries aside.
fn bridge_vlans(ns: &NetNs) -> std::collections::BTreeMap<String, Vec<(u64, bool, bool)>> {
    let out = common::sh(&format!("bridge -n {} -j vlan show", ns.name));
    let v: serde_json::Value = serde_json::from_str(&out).expect("bridge -j output");
    let mut m = std::collections::BTreeMap::new();
    for port in v.as_array().into_iter().flatten() {
        let mut list = Vec::new();
        for e in port["vlans"].as_array().into_iter().flatten() {
            let flags: Vec<&str> = e["flags"]
                .as_array()
                .map(|f| f.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            let start = e["vlan"].as_u64().unwrap_or(0);
            let end = e["vlanEnd"].as_u64().unwrap_or(start);
            for vid in start..=end {
                list.push((
                    vid,
                    flags.contains(&"PVID"),
                    flags.contains(&"Egress Untagged"),
                ));
            }
        }
        m.insert(
            port["ifname"].as_str().unwrap_or_default().to_string(),
            list,
        );
    }
    m
}

#[test]
fn changes_to_the_management_interface_are_rolled_back_unless_confirmed() {
    let app = NetNs::new("app");
    let (_h1, _h2) = two_hosts(&app);
    let path = app.path();
    let d = Daemon::start_with(&["--no-tls", "--netns", &path, "--management-interface", "p1"]);
    let root = d.root();
    // Not confirmed: the bridge goes away again and p1 is released.
    let body = json!({"name": "mgmt0", "ports": {"p1": {}}});
    let key = [("Idempotency-Key", "mgmt0-create")];
    let r = root.request(
        "POST",
        "/network/bridges?confirm_timeout=5",
        Some(&body),
        &key,
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(r.header("x-ferrite-confirm-deadline").is_some());
    // A client whose answer was lost retries with the same key: the replayed answer still
    // says that the change waits for confirmation.
    let again = root.request(
        "POST",
        "/network/bridges?confirm_timeout=5",
        Some(&body),
        &key,
    );
    assert_eq!(again.header("idempotency-replayed"), Some("true"));
    assert_eq!(
        again.header("x-ferrite-confirm-deadline"),
        r.header("x-ferrite-confirm-deadline")
    );
    assert!(r.body["status"]["confirm_deadline"].is_string());
    assert_eq!(master_of(&app.links(), "p1").as_deref(), Some("mgmt0"));
    let busy = root.put("/network/bridges/mgmt0", json!({"mtu": 1400}));
    assert_eq!(
        busy.status, 409,
        "changes wait for the confirm: {}",
        busy.text
    );
    wait_for("the unconfirmed bridge to be rolled back", || {
        !app.links().contains_key("mgmt0") && root.get("/network/bridges/mgmt0").status == 404
    });
    assert_eq!(master_of(&app.links(), "p1"), None);
    // Confirmed: it stays.
    let r = root.post(
        "/network/bridges?confirm_timeout=5",
        json!({"name": "mgmt0", "ports": {"p1": {}}}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let c = root.post("/network/confirm", json!({}));
    assert_eq!(c.body["confirmed"], json!(["mgmt0"]));
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(master_of(&app.links(), "p1").as_deref(), Some("mgmt0"));
    assert!(root.get("/network/bridges/mgmt0").body["status"]["confirm_deadline"].is_null());
    // Changes that do not touch p1 need no confirmation.
    let r = root.post(
        "/network/bridges",
        json!({"name": "br1", "ports": {"p2": {}}}),
    );
    assert_eq!(r.status, 201);
    assert!(r.header("x-ferrite-confirm-deadline").is_none());
    // An update that takes p1 off the bridge, unconfirmed, is undone.
    let r = root.put(
        "/network/bridges/mgmt0?confirm_timeout=5",
        json!({"ports": {}}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(master_of(&app.links(), "p1"), None);
    wait_for("p1 to be put back on mgmt0", || {
        master_of(&app.links(), "p1").as_deref() == Some("mgmt0")
            && root.get("/network/bridges/mgmt0").body["ports"] == json!({"p1": {}})
    });
    // The CLI tells its user when a change waits for confirmation, and how to confirm it.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrite"))
            .args(["--endpoint", &d.endpoint, "--output", "json"])
            .args(args)
            .env("FERRITE_TOKEN", root.token.clone().unwrap_or_default())
            .env("FERRITE_CONFIG", d.dir.path().join("cli.json"))
            .output()
            .expect("run ferrite");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = cli(&["api", "put", "network/bridges/mgmt0", r#"{"mtu": 1400}"#]);
    assert!(
        err.contains("touches a management interface")
            && err.contains("ferrite api post network/confirm"),
        "{err}"
    );
    cli(&["api", "post", "network/confirm", "{}"]);
    assert!(root.get("/network/bridges/mgmt0").body["status"]["confirm_deadline"].is_null());
    let err = cli(&["api", "get", "network/bridges/mgmt0"]);
    assert!(!err.contains("management"), "{err}");
}

#[test]
fn a_batch_is_all_or_nothing() {
    let app = NetNs::new("app");
    for i in 0..6 {
        app.ip(&format!("link add b{i} type veth peer name b{i}peer"));
    }
    let d = Daemon::start_in(&app);
    let root = d.root();
    let bridges: Vec<Value> = (0..5)
        .map(|i| json!({"name": format!("bb{i}"), "ports": {format!("b{i}"): {}}, "mtu": 1400}))
        .collect();
    let r = root.post("/network/batch", json!({"bridges": bridges}));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["bridges"].as_array().expect("bridges").len(), 5);
    let links = app.links();
    for i in 0..5 {
        assert_eq!(
            master_of(&links, &format!("b{i}")).as_deref(),
            Some(format!("bb{i}").as_str())
        );
        assert_eq!(links[&format!("bb{i}")]["mtu"], 1400);
    }
    assert_eq!(
        root.get("/network/bridges?name=bb*").body["items"]
            .as_array()
            .expect("items")
            .len(),
        5
    );
    // A bad item is named by its place in the batch, and nothing is created.
    let r = root.post("/network/batch", json!({"bridges": [{"name": "cc0", "ports": {"b5": {}}}, {"name": "cc1", "ports": {"ghost": {}}}]}));
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(
        r.pointers().contains(&"/bridges/1/ports/ghost".to_string()),
        "{}",
        r.text
    );
    // Two items claiming one port conflict.
    let r = root.post("/network/batch", json!({"bridges": [{"name": "cc0", "ports": {"b5": {}}}, {"name": "cc1", "ports": {"b5": {}}}]}));
    assert_eq!(r.status, 409, "{}", r.text);
    // The kernel refuses one item half way: everything is rolled back.
    let r = root.post("/network/batch", json!({"bridges": [{"name": "cc0", "ports": {"b5": {}}}, {"name": "cc1", "ports": {"lo": {}}}]}));
    assert_eq!(r.status, 422, "{}", r.text);
    let links = app.links();
    assert!(!links.contains_key("cc0") && !links.contains_key("cc1"));
    assert_eq!(master_of(&links, "b5"), None);
    assert_eq!(root.get("/network/bridges/cc0").status, 404);
}

/// The reconciler's lean link dump must read exactly what rtnetlink's full decoder reads, for
/// every kind of link we manage. Where this kernel lacks VLANs or bonds, the test runs in the
/// kernel VM so those kinds are compared too.
#[test]
fn lean_link_dump_matches_the_full_decoder() {
    let vlan_probe = "ip -n NS link add name pv0 type veth peer name pv1 && ip -n NS link add link pv0 name pv0.10 type vlan id 10";
    let bond_probe = "ip -n NS link add name pb0 type bond mode active-backup";
    let full = kernel_supports(vlan_probe) && kernel_supports(bond_probe);
    if !full && common::rerun_in_kernel_vm("lean_link_dump_matches_the_full_decoder") {
        return;
    }
    let ns = NetNs::new("dump");
    ns.ip("link add name br0 type bridge stp_state 1");
    ns.ip("link set br0 mtu 1400 up");
    ns.ip("link add name a0 type veth peer name a1");
    ns.ip("link set a0 master br0");
    ns.ip("link set a0 up");
    ns.ip("addr add 192.0.2.1/24 dev br0");
    ns.ip("addr add 2001:db8::1/64 dev br0");
    ns.ip("link add name t0 type veth peer name t1");
    if full {
        ns.ip("link add name br1 type bridge vlan_filtering 1");
        ns.ip("link add link t0 name t0.42 type vlan id 42");
        ns.ip(
            "link add name bond0 type bond mode balance-xor xmit_hash_policy layer3+4 miimon 150",
        );
        ns.ip("link set t1 master bond0");
    } else {
        common::skip(
            "network::lean_link_dump_matches_the_full_decoder (VLAN and bond kinds)",
            "this kernel lacks 802.1Q or bonding and no kernel VM is available",
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let path = std::path::PathBuf::from(ns.path());
        let (k, _events) =
            ferrite::network::netlink::Kernel::connect(Some(&path)).expect("connect");
        for vlans in [false, true] {
            let lean = k.snapshot(vlans).await.expect("lean");
            let reference = k.snapshot_rtnl(vlans).await.expect("reference");
            assert_eq!(lean.len(), reference.len());
            for (name, l) in &reference {
                assert_eq!(lean.get(name), Some(l), "{name} differs");
            }
            assert_eq!(lean["br0"].stp, Some(true));
            assert_eq!(lean["br0"].mtu, 1400);
            assert!(lean["br0"].addresses.contains(&"192.0.2.1/24".to_string()));
            if full {
                assert_eq!(lean["t0.42"].vlan_id, Some(42));
                assert_eq!(lean["bond0"].bond_mode.as_deref(), Some("balance-xor"));
                assert_eq!(lean["bond0"].miimon, Some(150));
                assert_eq!(lean["br1"].vlan_filtering, Some(true));
            }
        }
    });
}

/// Without `--management-interface`, the daemon finds the management interface itself: the
/// link carrying the default route. A change that takes it into a bridge gets a confirm
/// window and is rolled back unconfirmed; other links need none; `none` turns it off.
#[test]
fn the_management_interface_is_found_from_the_default_route() {
    let app = NetNs::new("app");
    let (_h1, _h2) = two_hosts(&app);
    app.ip("addr add 10.77.0.100/24 dev p1");
    app.ip("link set p1 up");
    app.ip("route add default via 10.77.0.1 dev p1");
    let d = Daemon::start_in(&app);
    let root = d.root();
    let items = root.get("/network/interfaces").body["items"].clone();
    let flag = |n: &str| {
        items
            .as_array()
            .and_then(|a| a.iter().find(|l| l["name"] == n))
            .map(|l| l["management"].clone())
    };
    assert_eq!(flag("p1"), Some(json!(true)), "{items}");
    assert_eq!(flag("p2"), Some(json!(false)), "{items}");
    let r = root.post(
        "/network/bridges?confirm_timeout=5",
        json!({"name": "mgmt0", "ports": {"p1": {}}}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(
        r.header("x-ferrite-confirm-deadline").is_some(),
        "{}",
        r.text
    );
    assert_eq!(master_of(&app.links(), "p1").as_deref(), Some("mgmt0"));
    wait_for("the unconfirmed bridge to be rolled back", || {
        !app.links().contains_key("mgmt0") && root.get("/network/bridges/mgmt0").status == 404
    });
    assert_eq!(master_of(&app.links(), "p1"), None);
    // A batch may not hide a management change among others.
    let r = root.post(
        "/network/batch",
        json!({"bridges": [{"name": "bx0", "ports": {"p2": {}}}, {"name": "bx1", "ports": {"p1": {}}}]}),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(!app.links().contains_key("bx0"), "the batch left a bridge");
    let r = root.post(
        "/network/bridges",
        json!({"name": "br2", "ports": {"p2": {}}}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(r.header("x-ferrite-confirm-deadline").is_none());
    drop(root);
    drop(d);
    // Turned off, the same change is applied at once.
    let d = Daemon::start_with(&[
        "--no-tls",
        "--netns",
        &app.path(),
        "--management-interface",
        "none",
    ]);
    let root = d.root();
    let r = root.post(
        "/network/bridges",
        json!({"name": "mgmt0", "ports": {"p1": {}}}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(r.header("x-ferrite-confirm-deadline").is_none());
}

/// The management set follows the links under the one with the default route: with the
/// route on a bridge whose port is a bond, and on a VLAN interface on that bridge, changing
/// the bond or the bridge opens a confirm window too. Needs bonding and 802.1Q (kernel VM
/// where this kernel lacks them).
#[test]
fn management_detection_follows_lower_links() {
    if !common::runs_here(
        "network::management_detection_follows_lower_links",
        &common::missing_vlan_features(),
    ) {
        return;
    }
    let app = NetNs::new("app");
    app.ip("link add m0 type veth peer name m0peer");
    let d = Daemon::start_in(&app);
    let root = d.root();
    let r = root.post(
        "/network/batch",
        json!({"bonds": [{"name": "mb0", "mode": "active-backup", "members": ["m0"]}],
               "bridges": [{"name": "mbr0", "ports": {"mb0": {}}, "addresses": ["10.66.0.1/24"]}],
               "vlans": [{"parent": "mbr0", "vlan_id": 7, "addresses": ["10.67.0.1/24"]}]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    // The default route leaves through the VLAN interface on the bridge on the bond.
    app.ip("route add default via 10.67.0.254 dev mbr0.7");
    let mgmt = management_names(&root);
    for n in ["mbr0.7", "mbr0", "mb0", "m0"] {
        assert!(
            mgmt.iter().any(|m| m == n),
            "{n} not in the management set {mgmt:?}"
        );
    }
    bond_change_is_confirmed(&root, 200);
    // A named management interface is followed down too: naming the bridge covers the bond
    // and its member beneath it, and not the VLAN interface above it.
    let mut d = d;
    d.stop(nix::sys::signal::Signal::SIGTERM);
    d.extra_args
        .extend(["--management-interface".to_string(), "mbr0".to_string()]);
    d.spawn();
    let root = d.root();
    assert_eq!(management_names(&root), vec!["m0", "mb0", "mbr0"]);
    bond_change_is_confirmed(&root, 100);
}

/// The interfaces `GET /network/interfaces` marks as carrying management traffic.
fn management_names(c: &Client) -> Vec<String> {
    c.get("/network/interfaces").body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["management"] == true)
        .filter_map(|l| l["name"].as_str().map(String::from))
        .collect()
}

/// A change to bond `mb0` opens a confirm window, and confirming it names the bond.
fn bond_change_is_confirmed(c: &Client, miimon: u32) {
    let r = c.put(
        "/network/bonds/mb0?confirm_timeout=30",
        json!({ "miimon": miimon }),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.header("x-ferrite-confirm-deadline").is_some(),
        "{}",
        r.text
    );
    let confirmed = c.post("/network/confirm", json!({}));
    assert_eq!(confirmed.body["confirmed"], json!(["mb0"]));
}

/// A VLAN on a parent that is down: ifupdown2 brings the parent up, and so does Ferrite for
/// a link an admin hands it (a NIC, a bond, a bridge, a veth standing in for a NIC); `status`
/// shows the VLAN's operational state. A parent it must not touch (a tap here) is named in a
/// 422 and nothing is left behind. Needs 802.1Q (the kernel VM where the host lacks it).
#[test]
fn a_vlan_on_a_down_parent_brings_it_up_or_names_it() {
    if !common::runs_here(
        "network::a_vlan_on_a_down_parent_brings_it_up_or_names_it",
        &common::missing_vlan_features(),
    ) {
        return;
    }
    let ns = NetNs::new("vdown");
    ns.ip("link add up0 type veth peer name up0p");
    ns.ip("tuntap add tap9 mode tap");
    let d = Daemon::start_in(&ns);
    let c = d.root();
    let r = c.post("/network/vlans", json!({"parent": "up0", "vlan_id": 10}));
    assert_eq!(r.status, 201, "{}", r.text);
    let name = r.body["name"].as_str().expect("name").to_string();
    let links = ns.links();
    assert!(
        links["up0"]["flags"]
            .as_array()
            .is_some_and(|f| f.contains(&json!("UP"))),
        "parent not brought up: {}",
        links["up0"]
    );
    assert!(links[&name]["flags"]
        .as_array()
        .is_some_and(|f| f.contains(&json!("UP"))));
    let v = c.get(&format!("/network/vlans/{name}"));
    assert!(v.body["status"]["operstate"].is_string(), "{}", v.text);

    let r = c.post("/network/vlans", json!({"parent": "tap9", "vlan_id": 11}));
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.pointers(), vec!["/parent"], "{}", r.text);
    assert!(r.text.contains("tap9"), "{}", r.text);
    let links = ns.links();
    assert!(!links.keys().any(|k| k.contains(".11")), "{links:?}");
    assert!(!links["tap9"]["flags"]
        .as_array()
        .is_some_and(|f| f.contains(&json!("UP"))));
    let list = c.get("/network/vlans").body;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
}
