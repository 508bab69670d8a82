//! The Terraform provider, driven by the real `terraform` CLI against a real `ferrited` on
//! loopback, loaded through `dev_overrides` in a CLI config named by `TF_CLI_CONFIG_FILE`.
//!
//! Every scenario checks what users rely on: create, an empty plan right after (with and
//! without refresh), in-place updates, replacement, import round trips, drift shown and
//! repaired, and destroy leaving nothing in the API or the kernel.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::tf::{provider_dir, Tf};
use common::{Client, Daemon, NetNs, ReapVms, ROOT_PW};
use serde_json::{json, Value};

fn links(ns: &NetNs) -> Vec<String> {
    ns.links().keys().cloned().collect()
}

#[test]
fn bridge_lifecycle_update_replace_drift_import_destroy() {
    let ns = NetNs::new("tfbr");
    let d = Daemon::start_in(&ns);
    let c = d.root();
    ns.ip("link add tfp0 type veth peer name tfp1");
    // tfp0 carries the namespace's default route, so the daemon treats it as the management
    // interface: every change below opens a confirm window, which the provider confirms once
    // the daemon answers after the change (otherwise the daemon would roll it back).
    ns.ip("link set tfp0 up");
    ns.ip("addr add 10.98.5.1/24 dev tfp0");
    ns.ip("route add default via 10.98.5.254 dev tfp0");
    let tf = Tf::new(&d);
    let bridge = |name: &str, comment: &str, mtu: u32| {
        format!(
            r#"resource "ferrite_bridge" "br" {{
  name      = "{name}"
  ports     = {{ tfp0 = {{}} }}
  addresses = ["10.99.0.1/24"]
  mtu       = {mtu}
  comment   = "{comment}"
  tags      = ["lab", "tf"]
  timeouts  = {{ create = "2m", update = "90s", delete = "1m" }}
}}
"#
        )
    };
    tf.config(&bridge("tfbr0", "v1", 1500));
    tf.apply();
    let b = c.get("/network/bridges/tfbr0").body;
    assert!(
        b["status"]["confirm_deadline"].is_null(),
        "the provider left the change unconfirmed: {b}"
    );
    // The kernel has it, with its port: read back through netlink, not our store.
    let l = ns.links();
    assert!(l.contains_key("tfbr0"), "{l:?}");
    assert_eq!(l["tfp0"]["master"], "tfbr0", "{l:?}");
    assert_eq!(c.get("/network/bridges/tfbr0").body["comment"], "v1");

    // In place: no replacement.
    tf.config(&bridge("tfbr0", "v2", 1400));
    let (code, out) = tf.plan(&[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("updated in-place") && !out.contains("must be replaced"),
        "{out}"
    );
    tf.apply();
    assert_eq!(ns.links()["tfbr0"]["mtu"], 1400);

    // The name forces replacement.
    tf.config(&bridge("tfbr1", "v2", 1400));
    tf.plan_shows(&["must be replaced"]);
    tf.apply();
    let l = links(&ns);
    assert!(
        l.contains(&"tfbr1".to_string()) && !l.contains(&"tfbr0".to_string()),
        "{l:?}"
    );

    // Drift: a change made behind Terraform's back shows in the plan and the apply repairs it.
    // (Out-of-band changes touch the management interface too; the admin confirms them.)
    let r = c.put("/network/bridges/tfbr1", json!({"comment": "by hand"}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(c.post("/network/confirm", json!({})).status, 200);
    tf.plan_shows(&["\"by hand\" -> \"v2\""]);
    tf.apply();
    assert_eq!(c.get("/network/bridges/tfbr1").body["comment"], "v2");
    // Deleted out of band: planned for re-creation, not an error.
    assert_eq!(c.delete("/network/bridges/tfbr1").status, 204);
    assert_eq!(c.post("/network/confirm", json!({})).status, 200);
    tf.plan_shows(&["will be created"]);
    tf.apply();
    assert!(links(&ns).contains(&"tfbr1".to_string()));

    tf.import_round_trip(&d, "ferrite_bridge.br", "tfbr1", &["timeouts"]);
    // Removing an optional field from the configuration clears it (an update with null).
    tf.config(&bridge("tfbr1", "v2", 1400).replace("  comment   = \"v2\"\n", ""));
    tf.plan_shows(&["- comment"]);
    tf.apply();
    assert!(c
        .get("/network/bridges/tfbr1")
        .body
        .get("comment")
        .is_none());

    tf.destroy();
    assert_eq!(c.get("/network/bridges/tfbr1").status, 404);
    let l = links(&ns);
    assert!(!l.contains(&"tfbr1".to_string()), "{l:?}");
    // The port it did not own is still there, just released.
    assert!(l.contains(&"tfp0".to_string()), "{l:?}");
}

#[test]
fn vlan_aware_bridge_vlan_and_bond() {
    if !common::runs_here(
        "terraform::vlan_aware_bridge_vlan_and_bond",
        &common::missing_vlan_features(),
    ) {
        return;
    }
    let ns = NetNs::new("tfvl");
    let d = Daemon::start_in(&ns);
    let c = d.root();
    ns.ip("link add tfa0 type veth peer name tfa1");
    ns.ip("link add tfb0 type veth peer name tfb1");
    ns.ip("link add tfc0 type veth peer name tfc1");
    let tf = Tf::new(&d);
    let cfg_full = |miimon: u32, vid: u32, mode: &str, mtu: u32| {
        format!(
            r#"resource "ferrite_bond" "b" {{
  name    = "tfbond0"
  mode    = "active-backup"
  members = ["tfa0", "tfb0"]
  miimon  = {miimon}
}}
resource "ferrite_bond" "spare" {{
  name    = "tfbond1"
  mode    = "{mode}"
  members = ["tfc0"]
}}
resource "ferrite_bridge" "br" {{
  name       = "tfvbr0"
  vlan_aware = true
  vlans      = ["10", "20-30"]
  ports      = {{ (ferrite_bond.b.name) = {{ vlans = ["10", "20"] }} }}
}}
resource "ferrite_vlan" "v" {{
  parent  = ferrite_bridge.br.name
  vlan_id = {vid}
  addresses = ["10.98.0.1/24"]
  mtu     = {mtu}
}}
"#
        )
    };
    let cfg = |miimon: u32, vid: u32| cfg_full(miimon, vid, "active-backup", 1500);
    tf.config(&cfg(100, 10));
    tf.apply();
    let l = ns.links();
    assert_eq!(l["tfa0"]["master"], "tfbond0", "{l:?}");
    assert_eq!(l["tfbond0"]["master"], "tfvbr0", "{l:?}");
    assert!(l.contains_key("tfvbr0.10"), "{l:?}");
    assert_eq!(c.get("/network/vlans/tfvbr0.10").body["vlan_id"], 10);
    // Bond setting in place; VLAN id forces a new interface.
    tf.config(&cfg(200, 10));
    tf.plan_shows(&["updated in-place"]);
    tf.apply();
    assert_eq!(c.get("/network/bonds/tfbond0").body["miimon"], 200);
    tf.config(&cfg(200, 20));
    tf.plan_shows(&["must be replaced"]);
    tf.apply();
    let l = links(&ns);
    assert!(l.contains(&"tfvbr0.20".to_string()) && !l.contains(&"tfvbr0.10".to_string()));
    tf.import_round_trip(&d, "ferrite_vlan.v", "tfvbr0.20", &[]);
    tf.import_round_trip(&d, "ferrite_bond.b", "tfbond0", &[]);
    // Drift through the API: a bond setting changed and the VLAN deleted out of band are
    // planned as an update and a re-creation, and the apply repairs both.
    let r = c.put("/network/bonds/tfbond0", json!({"miimon": 300}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(c.delete("/network/vlans/tfvbr0.20").status, 204);
    tf.plan_shows(&["miimon", "will be created"]);
    tf.apply();
    assert_eq!(c.get("/network/bonds/tfbond0").body["miimon"], 200);
    assert!(links(&ns).contains(&"tfvbr0.20".to_string()));
    // The VLAN interface's MTU changes in place; a bond's mode forces a new bond (the spare
    // one: a bond that is a bridge port cannot be deleted under its bridge).
    tf.config(&cfg_full(200, 20, "balance-xor", 1400));
    tf.plan_shows(&[
        "ferrite_vlan.v will be updated in-place",
        "ferrite_bond.spare must be replaced",
    ]);
    tf.apply();
    let l = ns.links();
    assert_eq!(l["tfvbr0.20"]["mtu"], 1400, "{l:?}");
    assert_eq!(
        l["tfbond1"]["linkinfo"]["info_data"]["mode"], "balance-xor",
        "{:?}",
        l["tfbond1"]
    );
    assert_eq!(l["tfc0"]["master"], "tfbond1");
    tf.destroy();
    for gone in [
        "/network/bonds/tfbond0",
        "/network/bonds/tfbond1",
        "/network/bridges/tfvbr0",
        "/network/vlans/tfvbr0.20",
    ] {
        assert_eq!(c.get(gone).status, 404, "{gone}");
    }
    let l = links(&ns);
    for gone in ["tfvbr0", "tfvbr0.20", "tfbond0", "tfbond1"] {
        assert!(!l.contains(&gone.to_string()), "{gone} left behind: {l:?}");
    }
    assert!(l.contains(&"tfa0".to_string()) && l.contains(&"tfb0".to_string()));

    // The issue's scenario: a VLAN-aware bridge, a VLAN interface on it and 20 containers in
    // that VLAN, from empty in one apply with parallelism 10; they reach the host's VLAN
    // address; the destroy leaves no link.
    let tpl = common::busybox_template(&d.data());
    common::upload(&c, &tpl, "busybox.tar.gz", "template");
    tf.config(
        r#"resource "ferrite_bridge" "br" {
  name       = "tfvbr1"
  vlan_aware = true
  vlans      = ["30"] # the bridge itself carries VLAN 30 up to its VLAN interface
}
resource "ferrite_vlan" "v" {
  parent    = ferrite_bridge.br.name
  vlan_id   = 30
  addresses = ["10.96.0.1/24"]
}
resource "ferrite_container" "ct" {
  count    = 20
  name     = "vct${count.index}"
  template = "local:busybox.tar.gz"
  init     = ["/bin/sh", "-c", "exec sleep 1000000"]
  net = {
    net0 = { bridge = ferrite_bridge.br.name, tag = 30, ip = "10.96.0.${count.index + 10}/24" }
  }
  depends_on = [ferrite_vlan.v]
}
"#,
    );
    tf.apply();
    let items = c.get("/containers?limit=100").body["items"].clone();
    let items = items.as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 20);
    assert!(items.iter().all(|i| i["status"]["state"] == "running"));
    let first = items[0]["id"].as_i64().expect("id");
    let r = c.post(
        &format!("/containers/{first}/exec"),
        json!({"command": ["ping", "-c", "3", "-W", "5", "10.96.0.1"], "timeout": 60}),
    );
    assert_eq!(r.body["exit_code"], 0, "{}", r.text);
    let (code, _) = tf.plan(&[]);
    assert_eq!(code, 0, "the plan after the apply is empty");
    tf.destroy();
    assert_eq!(c.get("/containers").body["items"], json!([]));
    let l = links(&ns);
    assert!(
        !l.iter()
            .any(|n| n.starts_with("tfvbr1") || ferrite::network::attach::is_guest_port(n)),
        "links left behind: {l:?}"
    );
}

#[test]
fn users_groups_roles_acls_and_tokens() {
    let d = Daemon::start();
    let c = d.root();
    let tf = Tf::new(&d);
    let cfg_full = |pw: &str, privs: &str, propagate: bool, token: &str| {
        format!(
            r#"resource "ferrite_group" "ops" {{
  groupid = "ops"
  comment = "operators"
}}
resource "ferrite_user" "alice" {{
  userid   = "alice@local"
  password = "{pw}"
  email    = "alice@example.com"
  groups   = [ferrite_group.ops.groupid]
}}
resource "ferrite_role" "auditor" {{
  roleid     = "TfAuditor"
  privileges = [{privs}]
}}
resource "ferrite_acl" "a" {{
  path           = "/"
  principal_type = "group"
  principal      = ferrite_group.ops.groupid
  role           = ferrite_role.auditor.roleid
  propagate      = {propagate}
}}
resource "ferrite_api_token" "t" {{
  name = "{token}"
  user = ferrite_user.alice.userid
}}
output "token" {{
  value     = ferrite_api_token.t.token
  sensitive = true
}}
"#
        )
    };
    let cfg = |pw: &str, privs: &str| cfg_full(pw, privs, true, "ci");
    tf.config(&cfg("first-password", r#""VM.Audit", "Sys.Audit""#));
    tf.apply();
    // The password works, and so does the token Terraform kept.
    let alice = c.anonymous();
    alice.login("alice@local", "first-password");
    let (code, out) = tf.run(&["output", "-raw", "token"]);
    assert_eq!(code, 0, "{out}");
    let tok = c.with_token(out.trim());
    assert_eq!(tok.get("/access/me").status, 200);
    // Password change goes through its own route, in place; the role's privileges too.
    tf.config(&cfg("second-password", r#""VM.Audit""#));
    let (code, out) = tf.plan(&[]);
    assert!(code == 2 && !out.contains("must be replaced"), "{out}");
    tf.apply();
    alice.login("alice@local", "second-password");
    assert_eq!(
        c.get("/access/roles/TfAuditor").body["privileges"],
        json!(["VM.Audit"])
    );
    // Drift in a group's comment and a role's privileges; the apply puts both back.
    assert_eq!(
        c.put("/access/groups/ops", json!({"comment": "x"})).status,
        200
    );
    assert_eq!(
        c.put(
            "/access/roles/TfAuditor",
            json!({"privileges": ["VM.Audit", "Sys.Modify"]})
        )
        .status,
        200
    );
    tf.plan_shows(&[
        "ferrite_group.ops will be updated in-place",
        "ferrite_role.auditor will be updated in-place",
    ]);
    tf.apply();
    assert_eq!(c.get("/access/groups/ops").body["comment"], "operators");
    assert_eq!(
        c.get("/access/roles/TfAuditor").body["privileges"],
        json!(["VM.Audit"])
    );
    let acl_id = tf.string_id("ferrite_acl.a");
    tf.import_round_trip(&d, "ferrite_group.ops", "ops", &[]);
    tf.import_round_trip(&d, "ferrite_role.auditor", "TfAuditor", &[]);
    tf.import_round_trip(&d, "ferrite_acl.a", &acl_id, &[]);
    // Secrets cannot be read back: the imported user lacks its password, the token its value.
    tf.import_round_trip(
        &d,
        "ferrite_user.alice",
        "alice@local",
        &["password", "revision"],
    );
    let token_id = tf.string_id("ferrite_api_token.t");
    tf.import_round_trip(&d, "ferrite_api_token.t", &token_id, &["token"]);
    // A token revoked out of band is planned for re-creation, and the new one works.
    assert_eq!(c.delete(&format!("/access/tokens/{token_id}")).status, 204);
    assert_eq!(tok.get("/access/me").status, 401);
    tf.plan_shows(&["ferrite_api_token.t will be created"]);
    tf.apply();
    let (_, out) = tf.run(&["output", "-raw", "token"]);
    let tok = c.with_token(out.trim());
    assert_eq!(tok.get("/access/me").status, 200);
    // Drift: a user's email changed and the ACL deleted behind Terraform's back.
    assert_eq!(
        c.put(
            "/access/users/alice@local",
            json!({"email": "x@example.com"})
        )
        .status,
        200
    );
    assert_eq!(c.delete(&format!("/access/acl/{acl_id}")).status, 204);
    tf.plan_shows(&[
        "\"x@example.com\" -> \"alice@example.com\"",
        "ferrite_acl.a will be created",
    ]);
    tf.apply();
    assert_eq!(
        c.get("/access/users/alice@local").body["email"],
        "alice@example.com"
    );
    // ACL entries and tokens have no update: a change replaces them (a new token secret, the
    // old one revoked).
    tf.config(&cfg_full("second-password", r#""VM.Audit""#, false, "ci2"));
    tf.plan_shows(&[
        "ferrite_acl.a must be replaced",
        "ferrite_api_token.t must be replaced",
    ]);
    tf.apply();
    assert_eq!(
        tok.get("/access/me").status,
        401,
        "the replaced token still works"
    );
    let (_, out) = tf.run(&["output", "-raw", "token"]);
    let tok = c.with_token(out.trim());
    assert_eq!(tok.get("/access/me").status, 200);
    let acl_id = tf.string_id("ferrite_acl.a");
    assert_eq!(
        c.get(&format!("/access/acl/{acl_id}")).body["propagate"],
        false
    );
    // A group's comment changed in the configuration is updated in place.
    let base = cfg_full("second-password", r#""VM.Audit""#, false, "ci2");
    let commented = base.replace(r#"comment = "operators""#, r#"comment = "site operators""#);
    tf.config(&commented);
    let (code, out) = tf.plan(&[]);
    assert!(
        code == 2
            && out.contains("ferrite_group.ops will be updated in-place")
            && !out.contains("must be replaced"),
        "{out}"
    );
    tf.apply();
    assert_eq!(
        c.get("/access/groups/ops").body["comment"],
        "site operators"
    );
    // Renaming a user, group or role replaces it (the id is the key), and what refers to it
    // follows: the ACL and the token are made again for the new names.
    let renamed = commented
        .replace(r#"groupid = "ops""#, r#"groupid = "ops2""#)
        .replace("alice@local", "alice2@local")
        .replace("TfAuditor", "TfAuditor2");
    tf.config(&renamed);
    tf.plan_shows(&[
        "ferrite_group.ops must be replaced",
        "ferrite_user.alice must be replaced",
        "ferrite_role.auditor must be replaced",
        "ferrite_acl.a must be replaced",
        "ferrite_api_token.t must be replaced",
    ]);
    tf.apply();
    assert_eq!(c.get("/access/users/alice@local").status, 404);
    assert_eq!(c.get("/access/groups/ops").status, 404);
    assert_eq!(c.get("/access/roles/TfAuditor").status, 404);
    assert_eq!(c.get(&format!("/access/acl/{acl_id}")).status, 404);
    assert_eq!(tok.get("/access/me").status, 401, "the old user's token");
    let user = c.get("/access/users/alice2@local").body;
    assert_eq!(user["groups"], json!(["ops2"]), "{user}");
    c.anonymous().login("alice2@local", "second-password");
    assert_eq!(
        c.get("/access/roles/TfAuditor2").body["privileges"],
        json!(["VM.Audit"])
    );
    let acl_id = tf.string_id("ferrite_acl.a");
    let acl = c.get(&format!("/access/acl/{acl_id}")).body;
    assert_eq!(
        (acl["principal"].clone(), acl["role"].clone()),
        (json!("ops2"), json!("TfAuditor2")),
        "{acl}"
    );
    let (_, out) = tf.run(&["output", "-raw", "token"]);
    let tok = c.with_token(out.trim());
    assert_eq!(tok.get("/access/me").body["username"], "alice2@local");
    let (code, out) = tf.plan(&[]);
    assert_eq!(code, 0, "the renamed objects do not converge:\n{out}");
    tf.destroy();
    assert_eq!(c.get("/access/users/alice2@local").status, 404);
    assert_eq!(c.get("/access/groups/ops2").status, 404);
    assert_eq!(c.get("/access/roles/TfAuditor2").status, 404);
    assert_eq!(c.get(&format!("/access/acl/{acl_id}")).status, 404);
    assert_eq!(
        tok.get("/access/me").status,
        401,
        "token revoked with the resource"
    );
}

#[test]
fn pools_volumes_and_data_sources() {
    let d = Daemon::start();
    let c = d.root();
    let tf = Tf::new(&d);
    let pool_dir = d.data().join("tfpool");
    let cfg_full = |size: u64, content: &str, vol: &str| {
        format!(
            r#"resource "ferrite_storage_pool" "p" {{
  name    = "tfpool"
  type    = "dir"
  path    = "{}"
  content = [{content}]
  comment = "pool for terraform"
}}
resource "ferrite_volume" "v" {{
  pool = ferrite_storage_pool.p.name
  name = "{vol}"
  size = {size}
}}
data "ferrite_storage_pools" "all" {{
  depends_on = [ferrite_storage_pool.p]
}}
data "ferrite_node" "n" {{}}
output "pools" {{ value = [for p in data.ferrite_storage_pools.all.items : p.name] }}
output "kernel" {{ value = data.ferrite_node.n.kernel.release }}
"#,
            pool_dir.display()
        )
    };
    let cfg = |size: u64| cfg_full(size, r#""images", "iso""#, "data.raw");
    tf.config(&cfg(8 << 20));
    tf.apply();
    let file = pool_dir.join("images/data.raw");
    let on_disk = |f: &PathBuf| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
    let vol_file = if file.exists() {
        file
    } else {
        // The layout is the pool's business; find the file by name.
        PathBuf::from(common::sh(&format!("find {} -name data.raw", pool_dir.display())).trim())
    };
    assert_eq!(on_disk(&vol_file), 8 << 20);
    let (_, out) = tf.run(&["output", "-json", "pools"]);
    assert!(out.contains("tfpool") && out.contains("local"), "{out}");
    let (_, out) = tf.run(&["output", "-raw", "kernel"]);
    assert_eq!(out.trim(), common::sh("uname -r").trim());
    // Growing is in place and real.
    tf.config(&cfg(16 << 20));
    tf.plan_shows(&["updated in-place"]);
    tf.apply();
    assert_eq!(on_disk(&vol_file), 16 << 20);
    // Shrinking is refused at plan time, naming the attribute.
    tf.config(&cfg(4 << 20));
    let (code, out) = tf.plan(&[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("cannot shrink") && out.contains("size"),
        "{out}"
    );
    tf.config(&cfg(16 << 20));
    tf.import_round_trip(&d, "ferrite_volume.v", "tfpool:data.raw", &[]);
    tf.import_round_trip(&d, "ferrite_storage_pool.p", "tfpool", &[]);
    // The pool's content types change in place.
    tf.config(&cfg_full(
        16 << 20,
        r#""images", "iso", "backup""#,
        "data.raw",
    ));
    let (code, out) = tf.plan(&[]);
    assert!(
        code == 2 && out.contains("updated in-place") && !out.contains("replaced"),
        "{out}"
    );
    tf.apply();
    // Drift: the pool's comment changed and the volume deleted behind Terraform's back.
    assert_eq!(
        c.put("/storage/pools/tfpool", json!({"comment": "by hand"}))
            .status,
        200
    );
    assert_eq!(
        c.delete("/storage/pools/tfpool/volumes/data.raw").status,
        204
    );
    tf.plan_shows(&[
        "\"by hand\" -> \"pool for terraform\"",
        "ferrite_volume.v will be created",
    ]);
    tf.apply();
    assert_eq!(on_disk(&vol_file), 16 << 20);
    // A volume's name forces a new volume.
    tf.config(&cfg_full(
        16 << 20,
        r#""images", "iso", "backup""#,
        "data2.raw",
    ));
    tf.plan_shows(&["ferrite_volume.v must be replaced"]);
    tf.apply();
    assert!(!vol_file.exists());
    let vol2 = c.get("/storage/pools/tfpool/volumes/data2.raw");
    assert_eq!(vol2.status, 200, "{}", vol2.text);
    let vol_file = PathBuf::from(vol2.body["path"].as_str().expect("path"));
    // A pool's path forces a new pool (once it holds no volume; a pool with volumes is
    // refused deletion, so Terraform stops before losing data).
    let pool_dir2 = d.data().join("tfpool2");
    let templates = |dir: &PathBuf| {
        format!(
            r#"resource "ferrite_storage_pool" "p" {{
  name    = "tfpool"
  type    = "dir"
  path    = "{}"
  content = ["images", "template"]
  comment = "pool for terraform"
}}
data "ferrite_templates" "t" {{
  pool       = ferrite_storage_pool.p.name
  depends_on = [ferrite_storage_pool.p]
}}
output "templates" {{ value = [for t in data.ferrite_templates.t.items : t.name] }}
"#,
            dir.display()
        )
    };
    tf.config(&templates(&pool_dir));
    tf.apply();
    assert!(!vol_file.exists());
    // Templates in the pool are listed by the ferrite_templates data source.
    let tpl = common::busybox_template(&d.data());
    common::upload_to(&c, "tfpool", &tpl, "busybox.tar.gz", "template");
    tf.apply();
    let (_, out) = tf.run(&["output", "-json", "templates"]);
    assert_eq!(out.trim(), r#"["busybox.tar.gz"]"#);
    assert_eq!(
        c.delete("/storage/pools/tfpool/volumes/busybox.tar.gz")
            .status,
        204
    );
    tf.config(&templates(&pool_dir2));
    tf.plan_shows(&["ferrite_storage_pool.p must be replaced"]);
    tf.apply();
    let p = c.get("/storage/pools/tfpool").body;
    assert_eq!(p["path"], pool_dir2.display().to_string(), "{p}");
    tf.destroy();
    assert_eq!(c.get("/storage/pools/tfpool").status, 404);
}

#[test]
fn file_uploads_follow_the_local_file() {
    let d = Daemon::start();
    let c = d.root();
    let tf = Tf::new(&d);
    let src = d.data().join("netinst.iso");
    std::fs::write(&src, vec![0x11u8; 3 << 20]).expect("write iso");
    let cfg = |source: &PathBuf, extra: &str| {
        format!(
            r#"resource "ferrite_file" "iso" {{
  pool    = "local"
  name    = "netinst.iso"
  content = "iso"
  source  = "{0}"
  sha256  = filesha256("{0}")
}}
{extra}"#,
            source.display()
        )
    };
    tf.config(&cfg(&src, ""));
    tf.apply();
    let vol = c.get("/storage/pools/local/volumes/netinst.iso");
    assert_eq!(vol.status, 200, "{}", vol.text);
    let stored = PathBuf::from(vol.body["path"].as_str().expect("path"));
    assert_eq!(common::file_sha256(&stored), common::file_sha256(&src));
    assert_eq!(vol.body["sha256"], common::file_sha256(&src).as_str());
    assert_eq!(tf.state()["ferrite_file.iso"]["size"], json!(3 << 20));
    tf.assert_no_changes();
    tf.import_round_trip(&d, "ferrite_file.iso", "local:netinst.iso", &["source"]);
    // The same bytes from another path: nothing to upload again.
    let moved = d.data().join("moved.iso");
    std::fs::copy(&src, &moved).expect("copy");
    tf.config(&cfg(&moved, ""));
    let (code, out) = tf.plan(&[]);
    assert!(
        code == 2 && out.contains("updated in-place") && !out.contains("replaced"),
        "{out}"
    );
    tf.apply();
    // New bytes in the file: a new volume with them.
    std::fs::write(&moved, vec![0x22u8; 2 << 20]).expect("rewrite iso");
    tf.plan_shows(&["ferrite_file.iso must be replaced"]);
    tf.apply();
    assert_eq!(common::file_sha256(&stored), common::file_sha256(&moved));
    // Drift: the volume deleted behind Terraform's back is uploaded again.
    assert_eq!(
        c.delete("/storage/pools/local/volumes/netinst.iso").status,
        204
    );
    tf.plan_shows(&["ferrite_file.iso will be created"]);
    tf.apply();
    assert_eq!(common::file_sha256(&stored), common::file_sha256(&moved));
    // A checksum the file does not have fails the apply, naming the field, and stores nothing.
    let bad = |source: &str| {
        format!(
            r#"resource "ferrite_file" "bad" {{
  pool    = "local"
  name    = "bad.iso"
  content = "iso"
  source  = "{source}"
  sha256  = "{}"
}}"#,
            "0".repeat(64)
        )
    };
    tf.config(&cfg(&moved, &bad(&moved.display().to_string())));
    let (code, out) = tf.run(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("sha256") && out.contains("422"), "{out}");
    assert_eq!(c.get("/storage/pools/local/volumes/bad.iso").status, 404);
    // A source that is not there fails the apply with the path.
    tf.config(&cfg(&moved, &bad("/nonexistent/bad.iso")));
    let (code, out) = tf.run(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("/nonexistent/bad.iso"), "{out}");
    tf.config(&cfg(&moved, ""));
    tf.destroy();
    assert_eq!(
        c.get("/storage/pools/local/volumes/netinst.iso").status,
        404
    );
    assert!(!stored.exists());
}

#[test]
fn plan_rejects_bad_config_before_anything_is_touched() {
    let d = Daemon::start();
    let c = d.root();
    let tf = Tf::new(&d);
    tf.config(
        r#"resource "ferrite_bridge" "bad" {
  name = "a-name-far-too-long-for-linux"
}
resource "ferrite_vlan" "bad" {
  parent  = "eth0"
  vlan_id = 4095
}
resource "ferrite_container" "bad" {
  name     = "x"
  template = "local:none.tar.gz"
  memory   = 8
  running  = false
  timeouts = { create = "soon" }
}
"#,
    );
    let (code, out) = tf.plan(&[]);
    assert_eq!(code, 1, "{out}");
    for (attr, line) in [
        ("name", "a-name-far-too-long-for-linux"),
        ("vlan_id", "4095"),
        ("memory", "memory   = 8"),
    ] {
        assert!(out.contains(line), "diagnostic for {attr} missing:\n{out}");
    }
    assert!(out.contains("Invalid ferrite_vlan configuration"), "{out}");
    assert!(out.contains("'soon' is not a duration"), "{out}");
    // Nothing was created.
    for p in ["/network/bridges", "/network/vlans", "/containers"] {
        assert_eq!(c.get(p).body["items"], json!([]), "{p}");
    }
}

/// Reaps containers when the test ends, passed or failed (they outlive their daemon).
struct Reap(Client);

impl Drop for Reap {
    fn drop(&mut self) {
        let list = self.0.get("/containers?limit=1000");
        for ct in list.body["items"].as_array().into_iter().flatten() {
            if let Some(id) = ct["id"].as_i64() {
                self.0.delete(&format!("/containers/{id}?force=true"));
            }
        }
    }
}

#[test]
fn twenty_containers_on_a_bridge_in_one_parallel_apply() {
    let ns = NetNs::new("tfct");
    let d = Daemon::start_in(&ns);
    let c = d.root();
    let _reap = Reap(c.clone());
    let tpl = common::busybox_template(&d.data());
    common::upload(&c, &tpl, "busybox.tar.gz", "template");
    let tf = Tf::new(&d);
    let cfg = |memory: u32, extra: &str| {
        format!(
            r#"resource "ferrite_bridge" "br" {{
  name = "tfctbr0"
}}
resource "ferrite_container" "ct" {{
  count    = 20
  name     = "ct${{count.index}}"
  template = "local:busybox.tar.gz"
  memory   = {memory}
  init     = ["/bin/sh", "-c", "exec sleep 1000000"]
  net = {{
    net0 = {{ bridge = ferrite_bridge.br.name, ip = "10.97.0.${{count.index + 10}}/24" }}
  }}
  tags = ["tf"]
  {extra}
}}
data "ferrite_containers" "tf" {{
  tag        = "tf"
  depends_on = [ferrite_container.ct]
}}
output "count" {{ value = length(data.ferrite_containers.tf.items) }}
"#
        )
    };
    tf.config(&cfg(64, ""));
    tf.apply();
    let list = c.get("/containers?limit=1000").body["items"].clone();
    let items = list.as_array().expect("items");
    assert_eq!(items.len(), 20, "{list}");
    let mut ids: Vec<i64> = items.iter().filter_map(|i| i["id"].as_i64()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "server-allocated ids never collide");
    for it in items {
        assert_eq!(it["status"]["state"], "running", "{it}");
    }
    let (_, out) = tf.run(&["output", "-raw", "count"]);
    assert_eq!(out.trim(), "20");
    let ct3 = tf.state()["ferrite_container.ct[3]"]["id"].to_string();
    tf.import_round_trip(&d, "ferrite_container.ct[3]", &ct3, &[]);
    let pid_of = |id: i64| c.get(&format!("/containers/{id}")).body["status"]["pid"].clone();
    let pid_before = pid_of(ids[0]);
    // A live change (memory) applies in place without a restart.
    tf.config(&cfg(96, ""));
    tf.apply();
    assert_eq!(
        pid_of(ids[0]),
        pid_before,
        "memory change restarted the container"
    );
    assert_eq!(c.get(&format!("/containers/{}", ids[0])).body["memory"], 96);
    // A change that needs a restart restarts only with reboot_on_change.
    tf.config(&cfg(
        96,
        "hostname = \"h${count.index}\"\n  reboot_on_change = true",
    ));
    tf.apply();
    assert_ne!(
        pid_of(ids[0]),
        pid_before,
        "hostname change did not restart"
    );
    // Out of band: one stopped, one deleted; the plan shows both, the apply repairs both.
    assert_eq!(
        c.post(&format!("/containers/{}/stop", ids[1]), json!({}))
            .status,
        200
    );
    assert_eq!(
        c.delete(&format!("/containers/{}?force=true", ids[2]))
            .status,
        204
    );
    tf.plan_shows(&["running", "will be created"]);
    tf.apply();
    assert_eq!(
        c.get(&format!("/containers/{}", ids[1])).body["status"]["state"],
        "running"
    );
    tf.destroy();
    assert_eq!(c.get("/containers").body["items"], json!([]));
    assert_eq!(c.get("/network/bridges/tfctbr0").status, 404);
    let l = links(&ns);
    assert!(
        l.iter()
            .all(|n| !n.starts_with('v') && !n.starts_with('p') && n != "tfctbr0"),
        "leftover links: {l:?}"
    );
}

/// `terraform-provider/docs` is generated from the same catalog Terraform sees; a stale copy
/// fails here (`FERRITE_BLESS=1` rewrites it).
#[test]
fn provider_docs_match_the_schema() {
    let exe = provider_dir().join("terraform-provider-ferrite");
    let fresh = tempfile::tempdir().expect("tempdir");
    let st = Command::new(&exe)
        .arg("docs")
        .arg(fresh.path())
        .status()
        .expect("docs");
    assert!(st.success());
    let checked_in = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("terraform-provider/docs");
    if std::env::var_os("FERRITE_BLESS").is_some() {
        let _ = std::fs::remove_dir_all(&checked_in);
        let st = Command::new(&exe)
            .arg("docs")
            .arg(&checked_in)
            .status()
            .expect("docs");
        assert!(st.success());
        return;
    }
    for sub in ["resources", "data-sources"] {
        let mut names: Vec<String> = std::fs::read_dir(fresh.path().join(sub))
            .expect("generated")
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        names.sort();
        for n in names {
            let want = std::fs::read_to_string(fresh.path().join(sub).join(&n)).expect("read");
            let have = std::fs::read_to_string(checked_in.join(sub).join(&n)).unwrap_or_default();
            assert!(
                want == have,
                "terraform-provider/docs/{sub}/{n} is stale: run FERRITE_BLESS=1 cargo test --test terraform provider_docs"
            );
        }
    }
}

/// The README's quick-start example is valid against the provider's schema, and the binary
/// run by hand explains itself instead of hanging.
#[test]
fn quickstart_example_validates_and_the_binary_explains_itself() {
    let d = Daemon::start();
    let tf = Tf::new(&d);
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("terraform-provider/examples/quickstart/main.tf");
    let text = std::fs::read_to_string(example).expect("example");
    std::fs::write(tf.dir.path().join("main.tf"), text).expect("write");
    let (code, out) = tf.run(&["validate", "-no-color"]);
    assert_eq!(code, 0, "{out}");
    let out = Command::new(provider_dir().join("terraform-provider-ferrite"))
        .output()
        .expect("run provider");
    assert!(!out.status.success());
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout outside the handshake"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("plugin for Terraform"));
}

/// A VM (a micro-guest that idles) and snapshots of it and of a container, through Terraform:
/// power state as an attribute, a change that needs a restart warned about (or done with
/// `reboot_on_change`), a snapshot of a running VM (paused for the moment, then resumed),
/// import by `guest_type/guest_id/name`, and destroy leaving no process.
#[test]
fn vm_power_state_changes_and_guest_snapshots() {
    if !common::kvm_or_skip("terraform::vm_power_state_changes_and_guest_snapshots") {
        return;
    }
    let d = Daemon::start();
    let c = d.root();
    let _reap = ReapVms(c.clone());
    let _reap_ct = Reap(c.clone());
    common::upload_guests(&c);
    let tpl = common::busybox_template(&d.data());
    common::upload(&c, &tpl, "busybox.tar.gz", "template");
    let tf = Tf::new(&d);
    let cfg_named = |memory: u32, running: bool, reboot: bool, snap: &str, vm: &str, ct: &str| {
        format!(
            r#"resource "ferrite_vm" "vm" {{
  name             = "{vm}"
  kernel           = "local:guest.elf"
  cmdline          = "test=touch mib=1 hold=1"
  memory           = {memory}
  running          = {running}
  reboot_on_change = {reboot}
}}
resource "ferrite_container" "ct" {{
  name     = "{ct}"
  template = "local:busybox.tar.gz"
  init     = ["/bin/sh", "-c", "exec sleep 1000000"]
}}
data "ferrite_vms" "all" {{
  name       = "tf*"
  depends_on = [ferrite_vm.vm]
}}
output "vms" {{ value = [for v in data.ferrite_vms.all.items : v.name] }}
{snap}
"#
        )
    };
    let cfg = |memory: u32, running: bool, reboot: bool, snap: &str| {
        cfg_named(memory, running, reboot, snap, "tfvm", "tfct")
    };
    let snaps = r#"resource "ferrite_snapshot" "vm" {
  guest_type  = "vm"
  guest_id    = ferrite_vm.vm.id
  name        = "first"
  description = "taken by terraform"
}
resource "ferrite_snapshot" "ct" {
  guest_type = "container"
  guest_id   = ferrite_container.ct.id
  name       = "first"
}
"#;
    tf.config(&cfg(32, true, false, ""));
    tf.apply();
    let (_, out) = tf.run(&["output", "-json", "vms"]);
    assert_eq!(out.trim(), r#"["tfvm"]"#, "the ferrite_vms data source");
    let st = tf.state();
    let vm_id = st["ferrite_vm.vm"]["id"].as_i64().expect("vm id");
    let ct_id = st["ferrite_container.ct"]["id"].as_i64().expect("ct id");
    let vm_state = |c: &Client| c.get(&format!("/vms/{vm_id}")).body["status"]["state"].clone();
    assert_eq!(vm_state(&c), "running");
    let pid = |c: &Client| c.get(&format!("/vms/{vm_id}")).body["status"]["pid"].clone();
    let pid0 = pid(&c);
    // Memory needs a restart: without reboot_on_change the apply warns and leaves it running.
    tf.config(&cfg(48, true, false, ""));
    let out = tf.apply();
    assert!(out.contains("takes effect at the next start"), "{out}");
    assert_eq!(pid(&c), pid0, "restarted without reboot_on_change");
    // With it, Terraform restarts the VM.
    tf.config(&cfg(64, true, true, ""));
    tf.apply();
    assert_ne!(pid(&c), pid0, "not restarted with reboot_on_change");
    assert_eq!(vm_state(&c), "running");
    // Snapshots of the running VM (paused, snapshotted, resumed) and of the container.
    tf.config(&cfg(64, true, true, snaps));
    tf.apply();
    assert_eq!(vm_state(&c), "running", "VM resumed after its snapshot");
    let vs = c.get(&format!("/vms/{vm_id}/snapshots")).body.clone();
    assert!(vs.to_string().contains("\"first\""), "{vs}");
    let cs = c
        .get(&format!("/containers/{ct_id}/snapshots"))
        .body
        .clone();
    assert!(cs.to_string().contains("\"first\""), "{cs}");
    tf.import_round_trip_after(
        &d,
        &[("ferrite_container.ct", &ct_id.to_string())],
        "ferrite_snapshot.ct",
        &format!("container/{ct_id}/first"),
        &[],
    );
    tf.import_round_trip_after(
        &d,
        &[("ferrite_vm.vm", &vm_id.to_string())],
        "ferrite_snapshot.vm",
        &format!("vm/{vm_id}/first"),
        &[],
    );
    // A snapshot deleted out of band is planned for re-creation and taken again.
    assert_eq!(
        c.delete(&format!("/vms/{vm_id}/snapshots/first")).status,
        204
    );
    tf.plan_shows(&["ferrite_snapshot.vm will be created"]);
    tf.apply();
    let vs = c.get(&format!("/vms/{vm_id}/snapshots")).body.clone();
    assert!(vs.to_string().contains("\"first\""), "{vs}");
    // Renaming a snapshot replaces it: the new name is taken, the old one deleted.
    let renamed = snaps.replace(
        "  guest_id   = ferrite_container.ct.id\n  name       = \"first\"",
        "  guest_id   = ferrite_container.ct.id\n  name       = \"second\"",
    );
    assert_ne!(renamed, snaps);
    tf.config(&cfg(64, true, true, &renamed));
    tf.plan_shows(&["ferrite_snapshot.ct must be replaced"]);
    tf.apply();
    let names: Vec<String> = c.get(&format!("/containers/{ct_id}/snapshots")).body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str().map(String::from))
        .collect();
    assert_eq!(names, vec!["second".to_string()]);
    let snaps: &str = &renamed;
    // Desired power state off: stopped, and the plan is empty afterwards.
    // The VM is shut down through the ACPI power button, which this guest honours.
    tf.config(&cfg(64, false, true, snaps));
    tf.apply();
    assert_eq!(vm_state(&c), "stopped");
    let st = c.get(&format!("/vms/{vm_id}")).body["status"].clone();
    assert_eq!(st["last_exit"]["reason"], "poweroff", "{st}");
    // Out of band start: drift back to the desired "stopped".
    assert_eq!(
        c.post(&format!("/vms/{vm_id}/start"), json!({})).status,
        200
    );
    tf.plan_shows(&["running"]);
    tf.apply();
    assert_eq!(vm_state(&c), "stopped");
    tf.import_round_trip(
        &d,
        "ferrite_vm.vm",
        &vm_id.to_string(),
        &["reboot_on_change"],
    );
    // A guest's name forces a new guest (and its snapshots with it).
    tf.config(&cfg_named(64, false, true, snaps, "tfvm2", "tfct2"));
    tf.plan_shows(&[
        "ferrite_vm.vm must be replaced",
        "ferrite_container.ct must be replaced",
    ]);
    tf.apply();
    assert_eq!(c.get(&format!("/vms/{vm_id}")).status, 404);
    assert_eq!(c.get(&format!("/containers/{ct_id}")).status, 404);
    let st = tf.state();
    let vm_id = st["ferrite_vm.vm"]["id"].as_i64().expect("vm id");
    let ct_id = st["ferrite_container.ct"]["id"].as_i64().expect("ct id");
    assert_eq!(c.get(&format!("/vms/{vm_id}")).body["name"], "tfvm2");
    tf.destroy();
    assert_eq!(c.get(&format!("/vms/{vm_id}")).status, 404);
    assert_eq!(c.get(&format!("/containers/{ct_id}")).status, 404);
    let procs = common::sh("ps -eo args");
    assert!(
        !procs
            .lines()
            .any(|l| l.contains("ferrite-vmm") && l.contains(&d.data().display().to_string())),
        "a ferrite-vmm outlived its VM"
    );
}

/// Against a daemon serving TLS: the provider pins the certificate's SHA-256 fingerprint and
/// authenticates with an API token, both from the environment; a wrong pin is refused with a
/// diagnostic that shows the fingerprint the daemon presented.
#[test]
fn tls_fingerprint_pinning_and_token_auth() {
    let d = Daemon::start_with(&[]);
    assert!(d.endpoint.starts_with("https://"), "{}", d.endpoint);
    let info: Value = serde_json::from_str(
        &std::fs::read_to_string(d.data().join("api.json")).expect("api.json"),
    )
    .expect("json");
    let fp = info["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_string();
    let token = {
        let pw = std::fs::read_to_string(d.data().join("initial-root-password"))
            .unwrap_or_else(|_| ROOT_PW.to_string());
        let out = Command::new("curl")
            .args(["-sk", "-H", "Content-Type: application/json", "-d"])
            .arg(json!({"username": "root@local", "password": pw.trim()}).to_string())
            .arg(format!("{}/api/v1/access/login", d.endpoint))
            .output()
            .expect("curl");
        let t: Value = serde_json::from_slice(&out.stdout).expect("ticket");
        let ticket = t["ticket"].as_str().expect("ticket").to_string();
        let out = Command::new("curl")
            .args(["-sk", "-H", "Content-Type: application/json", "-H"])
            .arg(format!("Authorization: Bearer {ticket}"))
            .args(["-d", r#"{"name": "tf"}"#])
            .arg(format!("{}/api/v1/access/tokens", d.endpoint))
            .output()
            .expect("curl");
        let t: Value = serde_json::from_slice(&out.stdout).expect("token");
        t["token"].as_str().expect("token").to_string()
    };
    let mut tf = Tf::new(&d);
    tf.env = vec![
        ("FERRITE_TOKEN".into(), token.clone()),
        ("FERRITE_TLS_FINGERPRINT".into(), fp.clone()),
    ];
    tf.config(
        r#"resource "ferrite_group" "g" {
  groupid = "tls-pinned"
}
"#,
    );
    tf.apply();
    tf.destroy();
    // A pin that does not match: refused, naming what the daemon presented.
    let wrong = fp
        .chars()
        .map(|ch| {
            if ch == 'A' {
                'B'
            } else if ch.is_ascii_hexdigit() {
                'A'
            } else {
                ch
            }
        })
        .collect::<String>();
    tf.env = vec![
        ("FERRITE_TOKEN".into(), token),
        ("FERRITE_TLS_FINGERPRINT".into(), wrong),
    ];
    let (code, out) = tf.plan(&[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.to_uppercase().contains(&fp.to_uppercase()[..20]),
        "{out}"
    );
}
