//! The `ferrite.virt` Ansible collection, driven by the real `ansible-playbook` (ansible-core
//! from PyPI) against a real `ferrited` on loopback.
//!
//! What every scenario proves: check mode predicts a change and writes nothing, the real run
//! makes exactly the predicted change, the next run reports `changed=0`, `state: absent`
//! twice is unchanged the second time, and the connection options do what they say.

mod ansible_play;
mod common;

use ansible_play::{predictions, Play, HEAD, RECORD};
use common::Daemon;
use serde_json::{json, Value};

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
