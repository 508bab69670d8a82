//! The `ferrite.virt` Ansible collection, driven by the real `ansible-playbook` (ansible-core
//! from PyPI) against a real `ferrited` on loopback.
//!
//! What every scenario proves: check mode predicts a change and writes nothing, the real run
//! makes exactly the predicted change, the next run reports `changed=0`, `state: absent`
//! twice is unchanged the second time, and the connection options do what they say.

mod ansible_play;
mod common;

use ansible_play::{Play, RECORD};
use common::{Daemon, NetNs};
use serde_json::{json, Value};

const HEAD: &str = r#"
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/ferrite.virt.ferrite:
      timeout: 120
"#;

/// Groups, roles, users, ACLs, pools and volumes: one playbook, declared state only.
const ACCESS_STORAGE: &str = r#"
  vars:
    recorded: [group, role, user, acl, pool, vol]
  tasks:
    - name: A group
      ferrite.virt.group:
        groupid: ops
        comment: COMMENT
        tags: [b, a]
      register: group
    - name: A role
      ferrite.virt.role:
        roleid: auditor
        privileges: [Sys.Audit, VM.Audit]
      register: role
    - name: A user
      ferrite.virt.user:
        userid: alice@local
        user_password: alice-password-1
        groups: [ops]
        email: EMAIL
      register: user
    - name: An ACL entry
      ferrite.virt.acl:
        path: /
        principal_type: group
        principal: ops
        role: auditor
      register: acl
    - name: A directory pool
      ferrite.virt.storage_pool:
        name: data
        type: dir
        path: "{{ pool_dir }}"
        content: [images]
      register: pool
    - name: A volume
      ferrite.virt.volume:
        pool: data
        name: vol1
        size: SIZE
      register: vol
"#;

const ACCESS_STORAGE_ABSENT: &str = r#"
  tasks:
    - ferrite.virt.volume: {pool: data, name: vol2, state: absent}
    - ferrite.virt.volume: {pool: data, name: vol1, state: absent}
    - ferrite.virt.storage_pool: {name: data, state: absent}
    - ferrite.virt.acl: {path: /, principal_type: group, principal: ops, role: auditor, state: absent}
    - ferrite.virt.user: {userid: alice@local, state: absent}
    - ferrite.virt.role: {roleid: auditor, state: absent}
    - ferrite.virt.group: {groupid: ops, state: absent}
"#;

fn access_storage(comment: &str, email: &str, size: u64) -> String {
    format!(
        "{HEAD}{}{RECORD}",
        ACCESS_STORAGE
            .replace("COMMENT", comment)
            .replace("EMAIL", email)
            .replace("SIZE", &size.to_string())
    )
}

/// Every registered result's `diff.after` and `changed`, by name.
fn predictions(v: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for (k, r) in v.as_object().expect("recorded object") {
        out.insert(
            k.clone(),
            json!({"changed": r["changed"], "after": r["diff"]["after"]}),
        );
    }
    Value::Object(out)
}

#[test]
fn check_mode_predicts_the_real_run_and_the_second_run_changes_nothing() {
    let d = Daemon::start();
    let c = d.root();
    let p = Play::new(&d);
    let pool_dir = p.path("pool");
    let vars = format!("pool_dir={} record_to=results.json", pool_dir.display());
    let book = access_storage("Operators", "alice@example.org", 4 << 20);

    // Check mode: six changes predicted, nothing written.
    let check = p.run("site.yml", &book, &["--check", "--diff", "-e", &vars]);
    check.assert_changed("check run", 6);
    let predicted = predictions(&p.recorded("results.json"));
    for path in [
        "/access/groups/ops",
        "/access/roles/auditor",
        "/access/users/alice@local",
        "/storage/pools/data",
    ] {
        assert_eq!(c.get(path).status, 404, "check mode wrote {path}");
    }
    assert!(!pool_dir.exists(), "check mode made the pool directory");

    // The real run makes exactly the predicted change.
    p.run("site.yml", &book, &["--diff", "-e", &vars])
        .assert_changed("first run", 6);
    let applied = predictions(&p.recorded("results.json"));
    assert_eq!(predicted, applied, "check mode predicted another change");
    let g = c.get("/access/groups/ops").body;
    assert_eq!(g["comment"], "Operators");
    let mut tags: Vec<&str> = g["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    tags.sort();
    assert_eq!(tags, ["a", "b"]);
    let u = c.get("/access/users/alice@local").body;
    assert_eq!(u["email"], "alice@example.org");
    assert_eq!(u["groups"], json!(["ops"]));
    let acl = c.get("/access/acl").body;
    assert_eq!(acl["items"].as_array().map(Vec::len), Some(1), "{acl}");
    assert_eq!(
        c.get("/storage/pools/data/volumes/vol1").body["size"],
        4 << 20
    );
    // The password set on create works.
    let alice = d.client();
    alice.login("alice@local", "alice-password-1");

    // Second run and a check run after it: nothing to do.
    p.run("site.yml", &book, &["-e", &vars])
        .assert_changed("second run", 0);
    p.run("site.yml", &book, &["--check", "-e", &vars])
        .assert_changed("check after apply", 0);

    // An update: the comment, the email and a bigger volume. --diff shows only managed fields.
    let book = access_storage("Operations", "alice@example.net", 8 << 20);
    let rev = c.get("/access/groups/ops").body["revision"].clone();
    let check = p.run("update.yml", &book, &["--check", "--diff", "-e", &vars]);
    check.assert_changed("update check", 3);
    assert!(check.out.contains("Operations"), "{}", check.out);
    assert!(
        !check.out.contains("\"revision\""),
        "diff shows unmanaged fields:\n{}",
        check.out
    );
    let predicted = predictions(&p.recorded("results.json"));
    assert_eq!(
        c.get("/access/groups/ops").body["revision"],
        rev,
        "check mode wrote"
    );
    p.run("update.yml", &book, &["--diff", "-e", &vars])
        .assert_changed("update", 3);
    assert_eq!(predictions(&p.recorded("results.json")), predicted);
    assert_eq!(c.get("/access/groups/ops").body["comment"], "Operations");
    assert_eq!(
        c.get("/storage/pools/data/volumes/vol1").body["size"],
        8 << 20
    );
    p.run("update.yml", &book, &["-e", &vars])
        .assert_changed("update again", 0);

    // A clone is a task on the server: followed to the end, then listed and waited on.
    let clone = format!(
        "{HEAD}  tasks:\n    - ferrite.virt.volume: {{pool: data, name: vol2, clone_from: vol1}}\n"
    );
    p.run("clone.yml", &clone, &["--check"])
        .assert_changed("clone check", 1);
    assert_eq!(
        c.get("/storage/pools/data/volumes/vol2").status,
        404,
        "check mode cloned"
    );
    p.run("clone.yml", &clone, &[]).assert_changed("clone", 1);
    p.run("clone.yml", &clone, &[])
        .assert_changed("clone again", 0);
    assert_eq!(
        c.get("/storage/pools/data/volumes/vol2").body["size"],
        8 << 20
    );
    let tasks = format!(
        "{HEAD}  tasks:\n    - ferrite.virt.task_info: {{type: volume_clone}}\n      register: t\n    \
         - ferrite.virt.task: {{id: \"{{{{ t.tasks[0].id }}}}\"}}\n      register: done\n    \
         - ansible.builtin.assert:\n        that: [t.tasks | length == 1, done.task.state == 'succeeded']\n"
    );
    p.run("tasks.yml", &tasks, &[]).assert_changed("tasks", 0);

    // Volumes never shrink: the task fails with the reason, the volume is kept.
    let shrink = p.run(
        "shrink.yml",
        &access_storage("Operations", "alice@example.net", 4 << 20),
        &["-e", &vars],
    );
    assert!(
        !shrink.ok && shrink.out.contains("never shrink"),
        "{}",
        shrink.out
    );

    // A create-only field cannot change in place: a clear error, nothing written.
    let bad = format!("{HEAD}  tasks:\n    - ferrite.virt.acl: {{path: /, principal_type: group, principal: ops, role: auditor, propagate: false}}\n");
    let r = p.run("acl.yml", &bad, &[]);
    assert!(
        !r.ok && r.out.contains("cannot change in place"),
        "{}",
        r.out
    );

    // Teardown twice: the second run has nothing left to delete.
    let absent = format!("{HEAD}{ACCESS_STORAGE_ABSENT}");
    p.run("absent.yml", &absent, &["--check"])
        .assert_changed("absent check", 7);
    assert_eq!(
        c.get("/access/groups/ops").status,
        200,
        "check mode deleted"
    );
    p.run("absent.yml", &absent, &[])
        .assert_changed("absent", 7);
    p.run("absent.yml", &absent, &[])
        .assert_changed("absent again", 0);
    assert_eq!(c.get("/access/groups/ops").status, 404);
    assert_eq!(c.get("/storage/pools/data").status, 404);
}

const WHOAMI: &str = r#"
- hosts: localhost
  gather_facts: false
  tasks:
    - ferrite.virt.access_info:
      register: access
    - ferrite.virt.node_info:
      register: node
    - ferrite.virt.guest_info:
      register: guests
    - ferrite.virt.storage_info: {pool: local}
      register: storage
    - ferrite.virt.network_info:
      register: net
    - ferrite.virt.task_info:
      register: tasks
    - ansible.builtin.assert:
        that:
          - access.users | selectattr('userid', 'equalto', 'root@local') | list | length == 1
          - node.node.cpu.count >= 1
          - guests.containers == [] and guests.vms == []
          - storage.pools | selectattr('name', 'equalto', 'local') | list | length == 1
          - net.interfaces | selectattr('name', 'equalto', 'lo') | list | length == 1
          - tasks.tasks is sequence
"#;

const TOKEN: &str = r#"
- hosts: localhost
  gather_facts: false
  vars:
    recorded: [tok]
    record_to: token.json
  tasks:
    - ferrite.virt.api_token:
        name: ansible-ci
      register: tok
RECORD"#;

#[test]
fn token_only_password_only_and_pinning_before_credentials() {
    // TLS with the daemon's self-signed certificate, pinned by fingerprint.
    let d = Daemon::start_with(&[]);
    assert!(d.endpoint.starts_with("https://"), "{}", d.endpoint);
    let info: Value = serde_json::from_str(
        &std::fs::read_to_string(d.data().join("api.json")).expect("api.json"),
    )
    .expect("api.json JSON");
    let fp = info["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_string();
    let mut p = Play::new(&d);

    // Password only, pinned: reads, and creates an API token whose secret comes back once.
    p.env = vec![
        ("FERRITE_USERNAME".into(), "root@local".into()),
        ("FERRITE_PASSWORD".into(), common::ROOT_PW.into()),
        (
            "FERRITE_TLS_FINGERPRINT".into(),
            fp.to_lowercase().replace(':', ""),
        ),
    ];
    p.run("who.yml", WHOAMI, &[])
        .assert_changed("password only", 0);
    let token_book = TOKEN.replace("RECORD", RECORD);
    p.run("token.yml", &token_book, &["--check"])
        .assert_changed("token check", 1);
    assert!(
        p.recorded("token.json")["tok"].get("secret").is_none(),
        "check mode made a token"
    );
    p.run("token.yml", &token_book, &[])
        .assert_changed("token create", 1);
    let token = p.recorded("token.json")["tok"]["secret"]
        .as_str()
        .expect("the token's secret is returned on create")
        .to_string();
    let again = p.run("token.yml", &token_book, &[]);
    again.assert_changed("token again", 0);
    assert!(
        p.recorded("token.json")["tok"].get("secret").is_none(),
        "the secret is returned only on create"
    );
    let password_env = p.env.clone();

    // Token only: no username anywhere, so no login is attempted.
    p.env = vec![
        ("FERRITE_TOKEN".into(), token.clone()),
        ("FERRITE_TLS_FINGERPRINT".into(), fp.clone()),
    ];
    p.run("who.yml", WHOAMI, &[])
        .assert_changed("token only", 0);
    p.env = password_env;
    // Both: an error, not a silent choice.
    p.env.push(("FERRITE_TOKEN".into(), token));
    let r = p.run("who.yml", WHOAMI, &[]);
    assert!(
        !r.ok && r.out.contains("both token and username/password"),
        "{}",
        r.out
    );

    // A wrong fingerprint fails before any credential leaves: the daemon never sees the
    // (deliberately wrong) password, so it logs no failed login for that user.
    let mut wrong = fp.clone();
    let last = if wrong.ends_with('0') { "1" } else { "0" };
    wrong.replace_range(wrong.len() - 1.., last);
    p.env = vec![
        ("FERRITE_USERNAME".into(), "probe@local".into()),
        ("FERRITE_PASSWORD".into(), "not-the-password".into()),
        ("FERRITE_TLS_FINGERPRINT".into(), wrong),
    ];
    let r = p.run("who.yml", WHOAMI, &[]);
    assert!(!r.ok && r.out.contains("fingerprint mismatch"), "{}", r.out);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        !d.log().contains("probe@local"),
        "a credential reached the daemon:\n{}",
        d.log()
    );
    // The control: without pinning the same password does reach it (and is refused).
    p.env = vec![
        ("FERRITE_USERNAME".into(), "probe@local".into()),
        ("FERRITE_PASSWORD".into(), "not-the-password".into()),
        ("FERRITE_INSECURE".into(), "true".into()),
    ];
    let r = p.run("who.yml", WHOAMI, &[]);
    assert!(!r.ok, "{}", r.out);
    let t0 = std::time::Instant::now();
    while !d.log().contains("probe@local") && t0.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        d.log().contains("probe@local"),
        "the control login was not logged:\n{}",
        d.log()
    );
}

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

fn vm_book(memory: u32, extra: &str) -> String {
    format!(
        "{HEAD}  tasks:\n    - ferrite.virt.vm:\n        name: vm1\n        kernel: local:guest.elf\n        \
         memory: {memory}\n        cmdline: test=hello\n        tags: [b, a]\n{extra}"
    )
}

#[test]
fn vm_create_update_template_and_delete_by_name() {
    let d = Daemon::start();
    let c = d.root();
    common::upload_guests(&c);
    let p = Play::new(&d);
    let vms = |c: &common::Client| c.get("/vms").body["items"].clone();

    p.run("vm.yml", &vm_book(32, ""), &["--check", "--diff"])
        .assert_changed("vm check", 1);
    assert_eq!(vms(&c), json!([]), "check mode created a VM");
    p.run("vm.yml", &vm_book(32, ""), &[])
        .assert_changed("vm", 1);
    p.run("vm.yml", &vm_book(32, ""), &[])
        .assert_changed("vm again", 0);
    let vm = vms(&c)[0].clone();
    assert_eq!(
        (vm["name"].clone(), vm["memory"].clone()),
        (json!("vm1"), json!(32))
    );

    // Memory needs a restart on a running VM; this one is stopped, so it just changes.
    p.run("vm.yml", &vm_book(48, ""), &["--check"])
        .assert_changed("memory check", 1);
    assert_eq!(vms(&c)[0]["memory"], 32, "check mode wrote");
    p.run("vm.yml", &vm_book(48, ""), &[])
        .assert_changed("memory", 1);
    p.run("vm.yml", &vm_book(48, ""), &[])
        .assert_changed("memory again", 0);
    assert_eq!(vms(&c)[0]["memory"], 48);

    // A template, once.
    let tpl = vm_book(48, "        is_template: true\n");
    p.run("vm.yml", &tpl, &[]).assert_changed("template", 1);
    p.run("vm.yml", &tpl, &[])
        .assert_changed("template again", 0);
    assert_eq!(vms(&c)[0]["is_template"], true);

    let absent = format!("{HEAD}  tasks:\n    - ferrite.virt.vm: {{name: vm1, state: absent}}\n");
    p.run("absent.yml", &absent, &[])
        .assert_changed("vm absent", 1);
    p.run("absent.yml", &absent, &[])
        .assert_changed("vm absent again", 0);
    assert_eq!(vms(&c), json!([]));
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
        "ansible::vlan_aware_bridge_vlan_and_bond",
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
