//! The QEMU engine through the real API, under TCG (this host's nested KVM does not run
//! stock firmware in useful time): `ferrited` runs Debian's `qemu-system-x86_64` for VMs
//! with `engine: qemu`. Boot media are GRUB images the test makes with `grub-mkrescue` (a
//! hybrid image boots as a CD-ROM and as a disk), each printing its own marker on the
//! serial port, so the serial log says which medium the firmware booted: that proves the boot
//! order under SeaBIOS and OVMF, CD-ROM and SATA disk attachment, the per-VM UEFI variable
//! store, serial output and input, pause, re-adoption after the daemon is killed, a guest
//! poweroff recorded as such, and refusals that leave nothing behind.

#[path = "../common/mod.rs"]
mod common;
mod os;
mod rfb;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{grub_image, serial, Client, Daemon, NetNs, ReapVms as Reap};
use serde_json::{json, Value};

/// A menu that waits forever: the guest keeps running, showing `marker`. The `reboot`
/// command is loaded now: after a disc change GRUB could not load it from the new disc.
fn waiting(marker: &str) -> String {
    format!(
        "insmod reboot\necho {marker}\nset timeout=-1\nmenuentry \"{marker}\" {{ echo chosen }}"
    )
}

fn create(c: &Client, body: Value) -> i64 {
    let r = c.post("/vms", body);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["engine"], "qemu", "{}", r.text);
    r.body["id"].as_i64().expect("id")
}

fn post_ok(c: &Client, path: &str, body: Value) -> Value {
    let r = c.post(path, body);
    assert_eq!(r.status, 200, "{path}: {}", r.text);
    r.body
}

fn wait_for(what: &str, secs: u64, mut pred: impl FnMut() -> Option<String>) -> String {
    let t0 = Instant::now();
    loop {
        if let Some(s) = pred() {
            return s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "no {what} after {secs} s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for `want` on the VM's serial log.
fn wait_serial(c: &Client, id: i64, want: &str) -> String {
    common::wait_serial(c, id, want, |s| s.contains(want))
}

fn status(c: &Client, id: i64) -> Value {
    c.get(&format!("/vms/{id}")).body["status"].clone()
}

/// QEMU processes whose command line names `needle`.
fn qemu_procs(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let is_qemu = cmd.starts_with("qemu-system-x86_64") || cmd.contains("/qemu-system-x86_64 ");
        if is_qemu && cmd.contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// The files process `pid` has open.
fn open_files(pid: i64) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|p| p.display().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `pid` runs (a zombie left to a parent that does not reap does not).
fn runs(pid: i64) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit(") ").next().and_then(|r| r.chars().next());
    !matches!(state, None | Some('Z') | Some('X'))
}

/// What runs QEMU here: TCG unless a hardware-assisted KVM module is loaded.
fn expected_accel() -> &'static str {
    let hw =
        Path::new("/sys/module/kvm_intel").exists() || Path::new("/sys/module/kvm_amd").exists();
    if hw && Path::new("/dev/kvm").exists() {
        "kvm"
    } else {
        "tcg"
    }
}

#[test]
fn boots_cdrom_and_disk_in_the_boot_order_under_seabios_and_ovmf() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cd = grub_image(tmp.path(), "cd.iso", &waiting("BOOTED-FROM-CDROM"));
    let disk = grub_image(tmp.path(), "disk.img", &waiting("BOOTED-FROM-DISK"));
    let d = Daemon::start();
    let c = d.root();
    let _reap = Reap(c.clone());
    common::upload(&c, &cd, "cd.iso", "iso");
    common::upload(&c, &disk, "disk.raw", "images");
    let id = create(
        &c,
        json!({"name": "fullos", "memory": 256,
               "disks": {"disk0": {"volume": "local:disk.raw", "bus": "sata"}},
               "cdrom": {"cdrom0": {"volume": "local:cd.iso"}},
               "boot": ["cdrom0", "disk0"]}),
    );
    // The CD-ROM first.
    let st = post_ok(&c, &format!("/vms/{id}/start"), json!({}))["status"].clone();
    assert_eq!(st["state"], "running", "{st}");
    assert_eq!(st["engine"], "qemu", "{st}");
    assert_eq!(st["accel"], expected_accel(), "{st}");
    // QEMU runs in the VM's own cgroup, limited to its one vCPU's worth of CPU time.
    let pid = st["pid"].as_i64().expect("pid");
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    let line = cgroups
        .lines()
        .find(|l| l.contains(&format!("/vm-{id}")) && (l.starts_with("0::") || l.contains("cpu")))
        .unwrap_or_else(|| panic!("QEMU is not in its VM's cgroup:\n{cgroups}"));
    let rel = line.splitn(3, ':').nth(2).expect("path");
    let (cg_dir, file) = if line.starts_with("0::") {
        (PathBuf::from(format!("/sys/fs/cgroup{rel}")), "cpu.max")
    } else {
        (
            PathBuf::from(format!("/sys/fs/cgroup/cpu{rel}")),
            "cpu.cfs_quota_us",
        )
    };
    let quota = std::fs::read_to_string(cg_dir.join(file)).expect("cpu quota");
    assert!(quota.starts_with("100000"), "one vCPU's CPU time: {quota}");
    let log = wait_serial(&c, id, "BOOTED-FROM-CDROM");
    assert!(!log.contains("BOOTED-FROM-DISK"), "{log}");
    // The boot order is honoured: the disk first now.
    post_ok(&c, &format!("/vms/{id}/stop"), json!({}));
    let r = c.put(&format!("/vms/{id}"), json!({"boot": ["disk0", "cdrom0"]}));
    assert_eq!(r.status, 200, "{}", r.text);
    post_ok(&c, &format!("/vms/{id}/start"), json!({}));
    let log = wait_serial(&c, id, "BOOTED-FROM-DISK");
    assert!(!log.contains("BOOTED-FROM-CDROM"), "{log}");
    // UEFI: OVMF boots the CD-ROM's EFI image; the VM keeps its own variable store.
    post_ok(&c, &format!("/vms/{id}/stop"), json!({}));
    let r = c.put(
        &format!("/vms/{id}"),
        json!({"firmware": "uefi", "boot": ["cdrom0"], "agent": true,
               "cloud_init": {"user": "ops", "ssh_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOps ops@test"]}}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    post_ok(&c, &format!("/vms/{id}/start"), json!({}));
    wait_serial(&c, id, "BOOTED-FROM-CDROM");
    let vars = d.data().join(format!("vms/{id}/efivars.fd"));
    assert!(
        vars.is_file(),
        "no per-VM UEFI variable store at {}",
        vars.display()
    );
    // The cloud-init seed QEMU has open: a FAT filesystem labelled CIDATA, as NoCloud wants.
    let seed = d.data().join(format!("vms/{id}/cloud-init.img"));
    let blkid = common::sh(&format!("blkid {}", seed.display()));
    assert!(blkid.contains("LABEL=\"CIDATA\""), "{blkid}");
    let st = status(&c, id);
    assert!(open_files(st["pid"].as_i64().expect("pid"))
        .iter()
        .any(|f| f.ends_with("cloud-init.img")));
    // GRUB has no guest agent: the status has no agent part (and does not hang on it).
    assert!(st.get("agent").is_none(), "{st}");
    post_ok(&c, &format!("/vms/{id}/stop"), json!({}));
    assert!(qemu_procs(&d.data().display().to_string()).is_empty());
    assert!(
        !cg_dir.exists(),
        "the VM's cgroup {} is left after stop",
        cg_dir.display()
    );
    // Every QEMU the daemon ran was reaped: no zombie children.
    let zombies = common::sh(&format!(
        "ps -o stat= --ppid {} | grep -c Z || true",
        d.pid()
    ));
    assert_eq!(zombies.trim(), "0", "the daemon left zombie QEMU processes");
    // A running VM's volumes are in use: deleting the ISO is refused while the VM has it.
    let r = c.delete("/storage/pools/local/volumes/cd.iso");
    assert_eq!(r.status, 409, "{}", r.text);
}

#[test]
fn qemu_guests_survive_a_killed_daemon_and_take_serial_input_pause_and_shutdown() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cd = grub_image(tmp.path(), "menu.iso", &waiting("MENU-READY"));
    let second = grub_image(tmp.path(), "second.iso", &waiting("SECOND-DISC"));
    let ns = NetNs::new("qemu");
    let mut d = Daemon::start_in(&ns);
    let c = d.root();
    let mut reap = Reap(c.clone());
    common::upload(&c, &cd, "menu.iso", "iso");
    let r = c.post("/network/bridges", json!({"name": "vmbr0"}));
    assert_eq!(r.status, 201, "{}", r.text);
    let id = create(
        &c,
        json!({"name": "adopt", "memory": 128, "accel": "tcg",
               "cdrom": {"cdrom0": {"volume": "local:menu.iso"}},
               "net": {"net0": {"bridge": "vmbr0", "model": "e1000"}}}),
    );
    let st = post_ok(&c, &format!("/vms/{id}/start"), json!({}))["status"].clone();
    let pid = st["pid"].as_i64().expect("pid");
    assert_eq!(st["accel"], "tcg", "{st}");
    // Its tap is on the bridge in the daemon's namespace.
    assert_eq!(ns.links()[&format!("v{id}i0")]["master"], "vmbr0");
    wait_serial(&c, id, "MENU-READY");
    // The daemon dies hard; QEMU goes on and is adopted by the next daemon.
    d.stop(nix::sys::signal::Signal::SIGKILL);
    assert!(runs(pid), "QEMU died with the daemon");
    d.spawn();
    let c = d.root();
    reap.0 = c.clone();
    let st = status(&c, id);
    assert_eq!(
        (st["state"].as_str(), st["pid"].as_i64()),
        (Some("running"), Some(pid)),
        "{st}"
    );
    // Serial input reaches GRUB: `c` opens its command line, which echoes what is typed.
    let r = c.post(&format!("/vms/{id}/serial"), json!({"data": "c"}));
    assert_eq!(r.status, 204, "{}", r.text);
    wait_serial(&c, id, "grub>");
    let r = c.post(
        &format!("/vms/{id}/serial"),
        json!({"data": "echo TYPED-OK\r"}),
    );
    assert_eq!(r.status, 204, "{}", r.text);
    // The keystrokes echo one by one between cursor moves; the command prints the word whole.
    wait_serial(&c, id, "TYPED-OK");
    // Another disc in the running drive: QEMU opens it at once (the old one is closed), and
    // the guest, rebooting on its own in the same QEMU process, boots from it.
    common::upload(&c, &second, "second.iso", "iso");
    let r = c.put(
        &format!("/vms/{id}"),
        json!({"cdrom": {"cdrom0": {"volume": "local:second.iso"}}}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let open = open_files(pid);
    assert!(open.iter().any(|f| f.ends_with("second.iso")), "{open:?}");
    assert!(!open.iter().any(|f| f.ends_with("menu.iso")), "{open:?}");
    let r = c.post(&format!("/vms/{id}/serial"), json!({"data": "reboot\r"}));
    assert_eq!(r.status, 204, "{}", r.text);
    wait_serial(&c, id, "SECOND-DISC");
    assert_eq!(
        status(&c, id)["pid"].as_i64(),
        Some(pid),
        "the guest rebooted inside QEMU"
    );
    // Ejected: the drive is empty, the file closed.
    let r = c.put(&format!("/vms/{id}"), json!({"cdrom": {"cdrom0": {}}}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        !open_files(pid).iter().any(|f| f.ends_with(".iso")),
        "{:?}",
        open_files(pid)
    );
    // Pause and resume over QMP.
    assert_eq!(
        post_ok(&c, &format!("/vms/{id}/pause"), json!({}))["status"]["state"],
        "paused"
    );
    assert_eq!(status(&c, id)["state"], "paused");
    assert_eq!(
        post_ok(&c, &format!("/vms/{id}/resume"), json!({}))["status"]["state"],
        "running"
    );
    // GRUB ignores the ACPI power button: the shutdown times out and the VM is stopped.
    let st = post_ok(&c, &format!("/vms/{id}/shutdown"), json!({"timeout": 1}))["status"].clone();
    assert_eq!(st["state"], "stopped", "{st}");
    assert!(!runs(pid), "QEMU still runs");
    assert!(
        !ns.links().contains_key(&format!("v{id}i0")),
        "tap left behind"
    );
    let dir = d.data().join(format!("vms/{id}"));
    for f in ["qmp.sock", "serial.sock", "vnc.sock", "runtime.json"] {
        assert!(!dir.join(f).exists(), "{f} left behind");
    }
}

#[test]
fn a_guest_poweroff_stops_the_vm_and_is_recorded() {
    let tmp = tempfile::tempdir().expect("tmp");
    let iso = grub_image(tmp.path(), "halt.iso", "echo HALTING\nhalt");
    let d = Daemon::start();
    let c = d.root();
    let _reap = Reap(c.clone());
    common::upload(&c, &iso, "halt.iso", "iso");
    let id = create(
        &c,
        json!({"name": "halts", "memory": 128, "cdrom": {"cdrom0": {"volume": "local:halt.iso"}}}),
    );
    post_ok(&c, &format!("/vms/{id}/start"), json!({}));
    let exit = wait_for("poweroff", 120, || {
        let st = status(&c, id);
        (st["state"] == "stopped").then(|| st["last_exit"].to_string())
    });
    assert!(exit.contains("\"poweroff\""), "{exit}");
    assert!(serial(&c, id).contains("HALTING"));
}

/// Each refusal: 422 naming the field, and no row, process, socket or tap.
#[test]
fn bad_qemu_vms_are_refused_and_leave_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let iso = grub_image(tmp.path(), "ok.iso", "halt");
    let no_ovmf = tmp.path().join("no-ovmf");
    std::fs::create_dir_all(&no_ovmf).expect("mkdir");
    let ovmf_arg = no_ovmf.display().to_string();
    let d = Daemon::start_with(&["--no-tls", "--ovmf-dir", &ovmf_arg]);
    let c = d.root();
    let _reap = Reap(c.clone());
    common::upload(&c, &iso, "ok.iso", "iso");
    let junk = tmp.path().join("junk.iso");
    std::fs::write(&junk, vec![7u8; 64 * 1024]).expect("junk");
    common::upload(&c, &junk, "junk.iso", "iso");
    let disk = tmp.path().join("d.raw");
    std::fs::write(&disk, vec![0u8; 1 << 20]).expect("disk");
    common::upload(&c, &disk, "d.raw", "images");
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"disks": {"disk0": {"volume": "local:ok.iso"}}}),
            "/disks/disk0/volume",
            "not disk images",
        ),
        (
            json!({"cdrom": {"cdrom0": {"volume": "local:junk.iso"}}}),
            "/cdrom/cdrom0/volume",
            "not an ISO 9660",
        ),
        (
            json!({"cdrom": {"cdrom0": {"volume": "local:d.raw"}}}),
            "/cdrom/cdrom0/volume",
            "iso volume",
        ),
        (json!({"firmware": "uefi"}), "/firmware", "apt install ovmf"),
        (
            json!({"disks": {"disk0": {"volume": "local:d.raw"}, "disk1": {"volume": "local:d.raw"}}}),
            "/disks/disk1/volume",
            "already used",
        ),
        (json!({"boot": ["disk3"]}), "/boot/0", "not a disk"),
        (json!({"engine": "microvm"}), "/kernel", "boots a kernel"),
        (json!({"hugepages": true}), "/hugepages", "hugepages"),
        (
            json!({"cloud_init": {"network": {"net1": {"ip": "dhcp"}}}}),
            "/cloud_init/network/net1",
            "not a NIC",
        ),
        (
            json!({"cloud_init": {"password_hash": "$6$s$h"}}),
            "/cloud_init/password_hash",
            "set cloud_init.user",
        ),
        (
            json!({"cloud_init": {"user_data": "local:ok.iso"}}),
            "/cloud_init/user_data",
            "snippets",
        ),
    ];
    for (extra, field, words) in cases {
        let mut body = json!({"name": "bad", "memory": 64});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        let r = c.post("/vms", body.clone());
        assert_eq!(r.status, 422, "{body}: {}", r.text);
        assert!(
            r.text.contains(field) && r.text.contains(words),
            "{body}: {}",
            r.text
        );
    }
    assert_eq!(
        c.get("/vms").body["items"],
        json!([]),
        "a refused VM left a row"
    );
    // A field only QEMU has, on a microVM.
    let r = c.post(
        "/vms",
        json!({"name": "micro", "kernel": "local:d.raw",
               "disks": {"disk0": {"volume": "local:d.raw", "bus": "sata"}}}),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(
        r.text.contains("/disks/disk0/bus") && r.text.contains("engine qemu"),
        "{}",
        r.text
    );
    assert!(qemu_procs(&d.data().display().to_string()).is_empty());
}

/// Without QEMU the start answers 503 naming it and how to install it; nothing is left.
#[test]
fn a_missing_qemu_answers_503_and_leaves_no_tap() {
    let ns = NetNs::new("noqemu");
    let p = ns.path();
    let d = Daemon::start_with(&[
        "--no-tls",
        "--netns",
        &p,
        "--qemu",
        "/nonexistent/qemu-system-x86_64",
    ]);
    let c = d.root();
    let _reap = Reap(c.clone());
    assert_eq!(
        c.post("/network/bridges", json!({"name": "vmbr0"})).status,
        201
    );
    let id = create(
        &c,
        json!({"name": "noqemu", "net": {"net0": {"bridge": "vmbr0"}}}),
    );
    let r = c.post(&format!("/vms/{id}/start"), json!({}));
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(
        r.text.contains("qemu-system-x86_64") && r.text.contains("apt install qemu-system-x86"),
        "{}",
        r.text
    );
    assert!(
        !ns.links().contains_key(&format!("v{id}i0")),
        "tap left behind"
    );
    assert_eq!(status(&c, id)["state"], "stopped");
    let name = c.get("/nodes").body["items"][0]["node"]
        .as_str()
        .expect("node")
        .to_string();
    let node = c.get(&format!("/nodes/{name}")).body;
    assert!(
        node["problems"].to_string().contains("qemu-system-x86_64"),
        "{node}"
    );
}

/// The display WebSocket completes an RFB handshake and sends a screen that is not blank
/// (SeaBIOS's boot messages in VGA text mode); the screen is kept as a PNG under
/// target/tmp.
#[test]
fn the_vnc_websocket_speaks_rfb_and_shows_the_screen() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cd = grub_image(tmp.path(), "screen.iso", &waiting("ON-SCREEN"));
    let d = Daemon::start();
    let c = d.root();
    let _reap = Reap(c.clone());
    common::upload(&c, &cd, "screen.iso", "iso");
    let id = create(
        &c,
        json!({"name": "screen", "memory": 128, "cdrom": {"cdrom0": {"volume": "local:screen.iso"}}}),
    );
    // A stopped VM has no display to attach to.
    let r = c.get(&format!("/vms/{id}/vnc"));
    assert!(r.status == 409 || r.status == 426, "{}", r.text);
    post_ok(&c, &format!("/vms/{id}/start"), json!({}));
    wait_serial(&c, id, "ON-SCREEN");
    let token = c.token.clone().expect("token");
    let mut rfb = rfb::Rfb::connect(&d.endpoint, Some(&token), &format!("vms/{id}/vnc"));
    let (name, screen) = rfb.screen();
    assert_eq!(name, "QEMU (screen)", "the desktop is named after the VM");
    assert!(
        screen.width >= 640 && screen.height >= 350,
        "{}x{}",
        screen.width,
        screen.height
    );
    let png = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu-vnc-screen.png");
    screen.write_png(&png);
    assert!(
        screen.colours() > 1,
        "the screen is blank (one colour); saved at {}",
        png.display()
    );
    // Without credentials the display is refused like every route.
    let anon = c.anonymous().get(&format!("/vms/{id}/vnc"));
    assert_eq!(anon.status, 401, "{}", anon.text);
    // A browser cannot send the header: a one-time ticket in the URL opens it, once.
    let r = c.post(
        &format!("/vms/{id}/console-ticket"),
        json!({"console": "vnc"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let path = r.body["path"].as_str().expect("path").to_string();
    let rel = path.trim_start_matches("/api/v1/").to_string();
    let (name, _) = rfb::Rfb::connect(&d.endpoint, None, &rel).screen();
    assert_eq!(name, "QEMU (screen)");
    match rfb::Rfb::try_connect(&d.endpoint, None, &rel) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        Err(e) => panic!("a used ticket: {e}"),
        Ok(_) => panic!("a used ticket opened the display again"),
    }
    // A ticket for the display does not open the serial console.
    let r = c.post(
        &format!("/vms/{id}/console-ticket"),
        json!({"console": "vnc"}),
    );
    let ticket = r.body["ticket"].as_str().expect("ticket").to_string();
    match rfb::Rfb::try_connect(
        &d.endpoint,
        None,
        &format!("vms/{id}/console?ticket={ticket}"),
    ) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("a display ticket on the console: {:?}", other.is_ok()),
    }
}

/// A stopped QEMU VM's snapshot covers its qcow2 disk; a clone gets its own copy of the disk,
/// shares the ISO and boots; a snapshot of a running QEMU VM is refused (409) until QEMU's
/// machine state is captured.
#[test]
fn qemu_vms_snapshot_and_clone_their_disks() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cd = grub_image(tmp.path(), "snap.iso", &waiting("CLONE-BOOTED"));
    let d = Daemon::start();
    let c = d.root();
    let _reap = Reap(c.clone());
    common::upload(&c, &cd, "snap.iso", "iso");
    let r = c.post(
        "/storage/pools/local/volumes",
        json!({"name": "snap-disk.qcow2", "size": 16 << 20, "format": "qcow2"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let id = create(
        &c,
        json!({"name": "snapsrc", "memory": 128,
               "disks": {"disk0": {"volume": "local:snap-disk.qcow2", "bus": "virtio"}},
               "cdrom": {"cdrom0": {"volume": "local:snap.iso"}}, "boot": ["cdrom0"]}),
    );
    post_ok(&c, &format!("/vms/{id}/start"), json!({}));
    let r = c.post(&format!("/vms/{id}/snapshots"), json!({"name": "live"}));
    assert_eq!(r.status, 409, "{}", r.text);
    post_ok(&c, &format!("/vms/{id}/stop"), json!({}));
    let r = c.post(&format!("/vms/{id}/snapshots"), json!({"name": "cold"}));
    assert!(r.status == 200 || r.status == 201, "{}", r.text);
    let vol = c.get("/storage/pools/local/volumes/snap-disk.qcow2").body;
    assert!(
        vol.to_string().contains("\"cold\""),
        "no disk snapshot: {vol}"
    );
    let r = c.post(&format!("/vms/{id}/snapshots/cold/restore"), json!({}));
    assert!(r.status < 300, "{}", r.text);
    let r = c.post(&format!("/vms/{id}/clone"), json!({"name": "snapcopy"}));
    assert_eq!(r.status, 201, "{}", r.text);
    let copy = r.body;
    let cid = copy["id"].as_i64().expect("id");
    assert_eq!(copy["engine"], "qemu", "{copy}");
    assert_eq!(
        copy["cdrom"]["cdrom0"]["volume"], "local:snap.iso",
        "{copy}"
    );
    assert_ne!(
        copy["disks"]["disk0"]["volume"], "local:snap-disk.qcow2",
        "{copy}"
    );
    post_ok(&c, &format!("/vms/{cid}/start"), json!({}));
    wait_serial(&c, cid, "CLONE-BOOTED");
}
