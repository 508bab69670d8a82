//! A full-OS VM through Terraform: `ferrite_vm` with the qemu engine's fields (generated from
//! `schema/`, like every attribute), applied and running under TCG, an empty plan after
//! apply, a disc change applied to the running VM in place (same QEMU process), firmware
//! changed with `reboot_on_change`, import of the VM into a configuration that sets only what
//! the API call set, and destroy leaving no QEMU behind.

mod common;

use common::tf::Tf;
use common::{grub_image, Daemon, ReapVms};
use serde_json::{json, Value};

fn config(iso: &str, firmware: &str) -> String {
    format!(
        r#"resource "ferrite_volume" "disk" {{
  pool    = "local"
  name    = "tfq-disk0.qcow2"
  content = "images"
  format  = "qcow2"
  size    = 67108864
}}
resource "ferrite_vm" "full" {{
  name             = "tfqemu"
  engine           = "qemu"
  accel            = "tcg"
  memory           = 256
  firmware         = "{firmware}"
  running          = true
  reboot_on_change = true
  disks = {{
    disk0 = {{ volume = ferrite_volume.disk.volid, bus = "scsi", discard = true }}
  }}
  cdrom = {{
    cdrom0 = {{ volume = "local:{iso}" }}
  }}
  boot = ["cdrom0", "disk0"]
}}
"#
    )
}

#[test]
fn a_qemu_vm_through_terraform() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = Daemon::start();
    let c = d.root();
    let _reap = ReapVms(c.clone());
    for (name, marker) in [("one.iso", "DISC-ONE"), ("two.iso", "DISC-TWO")] {
        let cfg = format!("echo {marker}\nset timeout=-1\nmenuentry x {{ echo x }}");
        common::upload(&c, &grub_image(tmp.path(), name, &cfg), name, "iso");
    }
    let tf = Tf::new(&d);
    tf.config(&config("one.iso", "bios"));
    tf.apply();
    let st = tf.state();
    let id = st["ferrite_vm.full"]["id"].as_i64().expect("id");
    let vm = |c: &common::Client| c.get(&format!("/vms/{id}")).body;
    let v = vm(&c);
    assert_eq!(v["status"]["state"], "running", "{v}");
    assert_eq!(v["status"]["engine"], "qemu", "{v}");
    let pid = v["status"]["pid"].clone();
    let serial = |c: &common::Client| -> String {
        c.get(&format!("/vms/{id}/serial")).body["data"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let wait = |c: &common::Client, m: &str| {
        let t0 = std::time::Instant::now();
        while !serial(c).contains(m) {
            assert!(t0.elapsed().as_secs() < 120, "no {m}: {}", serial(c));
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    wait(&c, "DISC-ONE");
    // A disc change: in place, no restart (the drive exists), the same QEMU process.
    tf.config(&config("two.iso", "bios"));
    tf.plan_shows(&["~ cdrom", "local:two.iso"]);
    tf.apply();
    let v = vm(&c);
    assert_eq!(v["cdrom"]["cdrom0"]["volume"], "local:two.iso");
    assert_eq!(v["status"]["pid"], pid, "a disc change restarted the VM");
    // Firmware needs a restart, which reboot_on_change makes: OVMF boots the disc.
    tf.config(&config("two.iso", "uefi"));
    tf.apply();
    let v = vm(&c);
    assert_eq!(v["firmware"], "uefi");
    assert_ne!(
        v["status"]["pid"], pid,
        "firmware changed without a restart"
    );
    wait(&c, "DISC-TWO");
    // Import: a qemu VM made through the API with only a name and a disc.
    let r = c.post(
        "/vms",
        json!({"name": "imported", "cdrom": {"cdrom0": {"volume": "local:one.iso"}}}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let imported = r.body["id"].as_i64().expect("id");
    let mut cfg = config("two.iso", "uefi");
    cfg.push_str(
        r#"resource "ferrite_vm" "imported" {
  name    = "imported"
  running = false
  cdrom = {
    cdrom0 = { volume = "local:one.iso" }
  }
}
"#,
    );
    tf.config(&cfg);
    let (code, out) = tf.run(&[
        "import",
        "-no-color",
        "ferrite_vm.imported",
        &imported.to_string(),
    ]);
    assert_eq!(code, 0, "{out}");
    tf.assert_no_changes();
    let (code, out) = tf.run(&["destroy", "-auto-approve", "-no-color"]);
    assert_eq!(code, 0, "{out}");
    let left: Value = c.get("/vms").body["items"].clone();
    assert_eq!(left, json!([]), "destroy left VMs");
    let procs = std::process::Command::new("pgrep")
        .args([
            "-f",
            &format!("qemu-system-x86_64 .*{}", d.data().display()),
        ])
        .output()
        .expect("pgrep");
    assert!(
        String::from_utf8_lossy(&procs.stdout).trim().is_empty(),
        "QEMU left running"
    );
}
