//! The `ferrite.virt` collection's network and guest modules and its inventory plugin, driven
//! by the real `ansible-playbook` against a real `ferrited` whose network engine manages a
//! namespace the test creates: check mode, real runs, no-change reruns, parallel creates.

mod ansible_play;
mod common;

use ansible_play::{predictions, Play, HEAD, RECORD};
use common::{Daemon, NetNs};
use serde_json::json;

/// Force-deletes every container when a test ends: containers outlive their daemon.
struct Reap(common::Client);

impl Drop for Reap {
    fn drop(&mut self) {
        let items = self.0.get("/containers?limit=1000").body["items"].clone();
        for ct in items.as_array().into_iter().flatten() {
            if let Some(id) = ct["id"].as_i64() {
                self.0
                    .request("DELETE", &format!("/containers/{id}?force=true"), None, &[]);
            }
        }
    }
}

const GUESTS: &str = r#"
- hosts: localhost
  gather_facts: false
  vars:
    recorded: [br, tpl, web]
    record_to: guests.json
  tasks:
    - name: A bridge
      ferrite.virt.bridge:
        name: anbr0
        addresses: [10.20.0.1/24]
      register: br
    - name: The busybox template, streamed with its SHA-256
      ferrite.virt.upload:
        pool: local
        name: busybox.tar.gz
        content: template
        src: "{{ tpl_src }}"
      register: tpl
    - name: A container on the bridge
      ferrite.virt.container:
        name: web1
        template: local:busybox.tar.gz
        init: [/bin/sh, -c, exec sleep 1000000]
        memory: MEMORY
        tags: [web]
        net:
          net0: {bridge: anbr0, ip: 10.20.0.2/24}
        state: STATE
      register: web
RECORD"#;

const EXEC: &str = r#"
- hosts: localhost
  gather_facts: false
  tasks:
    - ferrite.virt.container_exec:
        name: web1
        command: [cat, /proc/self/status]
      register: out
    - ansible.builtin.assert:
        that:
          - out.rc == 0
          - "'Name:' in out.stdout"
"#;

const PARALLEL: &str = r#"
- hosts: par
  gather_facts: false
  tasks:
    - ferrite.virt.container:
        name: "{{ inventory_hostname }}"
        template: local:busybox.tar.gz
        tags: [par]
        net:
          net0: {bridge: anbr0}
        state: STATE
"#;

const TEARDOWN: &str = r#"
- hosts: localhost
  gather_facts: false
  tasks:
    - ferrite.virt.container: {name: web1, state: absent}
    - ferrite.virt.upload: {pool: local, name: busybox.tar.gz, state: absent}
"#;

fn guests(memory: u32, state: &str) -> String {
    GUESTS
        .replace("MEMORY", &memory.to_string())
        .replace("STATE", state)
        .replace("RECORD", RECORD)
}

#[test]
fn bridge_template_and_containers_by_name_in_parallel_with_inventory() {
    let ns = NetNs::new("ans");
    let d = Daemon::start_in(&ns);
    let c = d.root();
    let _reap = Reap(c.clone());
    let p = Play::new(&d);
    let tpl = common::busybox_template(&d.data());
    let vars = format!("tpl_src={}", tpl.display());
    let mut hosts = String::from("localhost ansible_connection=local\n[par]\n");
    for i in 1..=20 {
        hosts.push_str(&format!("ct{i:02} ansible_connection=local\n"));
    }
    p.write("hosts.ini", &hosts);

    // Check mode predicts three creations and makes nothing, in the API or the kernel.
    let check = p.run(
        "site.yml",
        &guests(64, "started"),
        &["--check", "--diff", "-e", &vars],
    );
    check.assert_changed("check", 3);
    let predicted = predictions(&p.recorded("guests.json"));
    assert_eq!(c.get("/network/bridges/anbr0").status, 404);
    assert_eq!(
        c.get("/storage/pools/local/volumes/busybox.tar.gz").status,
        404
    );
    assert_eq!(c.get("/containers").body["items"], json!([]));
    assert!(
        !ns.links().contains_key("anbr0"),
        "check mode made the bridge"
    );

    p.run("site.yml", &guests(64, "started"), &["-e", &vars])
        .assert_changed("apply", 3);
    assert_eq!(predictions(&p.recorded("guests.json")), predicted);
    assert!(ns.links().contains_key("anbr0"));
    let web = &c.get("/containers?name=web1").body["items"][0];
    assert_eq!(web["status"]["state"], "running", "{web}");
    assert_eq!(web["memory"], 64);
    p.run("site.yml", &guests(64, "started"), &["-e", &vars])
        .assert_changed("second run", 0);

    // A live change (memory) to the running guest, then a command inside it.
    p.run("site.yml", &guests(96, "started"), &["-e", &vars])
        .assert_changed("memory", 1);
    let web = &c.get("/containers?name=web1").body["items"][0];
    assert_eq!(
        (web["memory"].clone(), web["status"]["state"].clone()),
        (json!(96), json!("running"))
    );
    p.run("exec.yml", EXEC, &[]).assert_changed("exec", 1);
    // Power state: stopped, and stopped again is no change.
    p.run("site.yml", &guests(96, "stopped"), &["-e", &vars])
        .assert_changed("stop", 1);
    p.run("site.yml", &guests(96, "stopped"), &["-e", &vars])
        .assert_changed("stopped again", 0);
    assert_eq!(
        c.get("/containers?name=web1").body["items"][0]["status"]["state"],
        "stopped"
    );

    // Guest snapshots: predicted, taken, unchanged, restored, removed twice.
    let snap = |state: &str| {
        format!(
            "{HEAD}  tasks:\n    - ferrite.virt.snapshot: {{guest_type: container, guest: web1, name: s1, state: {state}}}\n"
        )
    };
    let snaps = |c: &common::Client| {
        let id = c.get("/containers?name=web1").body["items"][0]["id"].clone();
        c.get(&format!("/containers/{id}/snapshots")).body["items"]
            .as_array()
            .map(Vec::len)
    };
    p.run("snap.yml", &snap("present"), &["--check"])
        .assert_changed("snapshot check", 1);
    assert_eq!(snaps(&c), Some(0), "check mode took a snapshot");
    p.run("snap.yml", &snap("present"), &[])
        .assert_changed("snapshot", 1);
    p.run("snap.yml", &snap("present"), &[])
        .assert_changed("snapshot again", 0);
    assert_eq!(snaps(&c), Some(1));
    p.run("snap.yml", &snap("restored"), &[])
        .assert_changed("restore", 1);
    p.run("snap.yml", &snap("absent"), &[])
        .assert_changed("snapshot absent", 1);
    p.run("snap.yml", &snap("absent"), &[])
        .assert_changed("snapshot absent again", 0);
    assert_eq!(snaps(&c), Some(0));

    // Twenty containers created in parallel by name: no id race, no error, then no change.
    let par = PARALLEL.replace("STATE", "present");
    let r = p.run("par.yml", &par, &["-f", "20"]);
    r.assert_changed("parallel create", 20);
    assert_eq!(r.hosts, 20);
    let all = c.get("/containers?limit=1000").body["items"].clone();
    assert_eq!(all.as_array().map(Vec::len), Some(21), "{all}");
    p.run("par.yml", &par, &["-f", "20"])
        .assert_changed("parallel again", 0);

    // The inventory lists them with their groups and host variables.
    let inv = p.inventory(
        "guests.ferrite.yml",
        "plugin: ferrite.virt.ferrite\nkeyed_groups:\n  - key: (ferrite_config.memory | default('none')) | string\n    prefix: mem\n",
    );
    let group = |g: &str| -> Vec<String> {
        let mut v: Vec<String> = inv[g]["hosts"]
            .as_array()
            .unwrap_or_else(|| panic!("no group {g}: {inv}"))
            .iter()
            .filter_map(|h| h.as_str().map(String::from))
            .collect();
        v.sort();
        v
    };
    assert_eq!(group("ferrite_container").len(), 21);
    assert_eq!(group("ferrite_tag_par").len(), 20);
    assert_eq!(group("ferrite_tag_web"), ["web1"]);
    assert_eq!(group("ferrite_bridge_anbr0").len(), 21);
    assert_eq!(group("ferrite_stopped").len(), 21);
    assert_eq!(group("mem_96"), ["web1"]);
    let hv = &inv["_meta"]["hostvars"]["web1"];
    assert_eq!(hv["ansible_host"], "10.20.0.2", "{hv}");
    assert_eq!(hv["ferrite_type"], "container");
    assert_eq!(hv["ferrite_state"], "stopped");
    assert_eq!(hv["ferrite_tags"], json!(["web"]));
    assert!(hv["ferrite_id"].is_i64());
    assert_eq!(hv["ferrite_config"]["memory"], 96);

    // Teardown twice; the second run has nothing to do.
    let absent = PARALLEL.replace("STATE", "absent");
    p.run("par.yml", &absent, &["-f", "20"])
        .assert_changed("parallel absent", 20);
    p.run("par.yml", &absent, &["-f", "20"])
        .assert_changed("parallel absent again", 0);
    // The README's quick start (ansible/examples/quickstart.yml), up twice and down twice.
    let qs = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/ansible/examples/quickstart.yml"
    );
    let quick = std::fs::read_to_string(qs).expect("quickstart.yml");
    p.run("quickstart.yml", &quick, &[])
        .assert_changed("quick start", 2);
    p.run("quickstart.yml", &quick, &[])
        .assert_changed("quick start again", 0);
    assert_eq!(
        c.get("/containers?name=web").body["items"][0]["status"]["state"],
        "running"
    );
    let down = ["-e", "state=absent"];
    p.run("quickstart.yml", &quick, &down)
        .assert_changed("quick start down", 2);
    p.run("quickstart.yml", &quick, &down)
        .assert_changed("quick start down again", 0);
    assert_eq!(c.get("/network/bridges/vmbr1").status, 404);

    p.run("down.yml", TEARDOWN, &[])
        .assert_changed("teardown", 2);
    p.run("down.yml", TEARDOWN, &[])
        .assert_changed("teardown again", 0);
    assert_eq!(c.get("/containers").body["items"], json!([]));
}

const VLANS: &str = r#"
  tasks:
    - ferrite.virt.bridge: {name: vbr0, vlan_aware: true, vlans: ["10", "20-29"], state: STATE}
      when: "'STATE' == 'present'"
    - ferrite.virt.vlan: {parent: vbr0, vlan_id: 10, addresses: [10.30.0.1/24], state: STATE}
    - ferrite.virt.bond: {name: bond0, mode: active-backup, state: STATE}
    - ferrite.virt.bridge: {name: vbr0, state: STATE}
      when: "'STATE' == 'absent'"
"#;

#[test]
fn vlan_aware_bridge_vlan_and_bond() {
    if !common::runs_here(
        "ansible_guests::vlan_aware_bridge_vlan_and_bond",
        &common::missing_vlan_features(),
    ) {
        return;
    }
    let ns = NetNs::new("ansvl");
    let d = Daemon::start_in(&ns);
    let c = d.root();
    let p = Play::new(&d);
    let book = |state: &str| format!("{HEAD}{}", VLANS.replace("STATE", state));
    p.run("net.yml", &book("present"), &["--check", "--diff"])
        .assert_changed("check", 3);
    assert!(
        !ns.links().contains_key("vbr0"),
        "check mode made the bridge"
    );
    p.run("net.yml", &book("present"), &[])
        .assert_changed("apply", 3);
    p.run("net.yml", &book("present"), &[])
        .assert_changed("again", 0);
    let links = ns.links();
    for l in ["vbr0", "vbr0.10", "bond0"] {
        assert!(links.contains_key(l), "{l} missing: {links:?}");
    }
    assert_eq!(c.get("/network/vlans/vbr0.10").body["vlan_id"], 10);
    p.run("net.yml", &book("absent"), &[])
        .assert_changed("absent", 3);
    p.run("net.yml", &book("absent"), &[])
        .assert_changed("absent again", 0);
    assert!(!ns.links().contains_key("vbr0"));
}
