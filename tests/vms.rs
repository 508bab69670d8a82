//! The KVM engine through the real API: `ferrited` starts `ferrite-vmm` processes that boot
//! the micro-guests in `tests/guests/` (built here with the system gcc). Together they prove
//! serial output, both direct-boot entries (PVH and 64-bit), multi-vCPU start, virtio-blk
//! writes seen on the host, virtio-net frames exchanged with a peer on a bridge, virtio-rng,
//! power-off, guest reset, pause/snapshot/restore where a counter keeps counting, daemon
//! restarts that leave guests running, and refusals that leave nothing behind.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{serial, wait_serial, Client, Daemon, NetNs, ReapVms as Reap};
use serde_json::{json, Value};

fn setup_in(d: &Daemon) -> Client {
    let c = d.root();
    common::upload_guests(&c);
    c
}

/// A daemon with the micro-guests uploaded and a guard that reaps its VMs, or `None` (the
/// skip recorded) where `/dev/kvm` cannot be used.
fn vm_daemon(test: &str) -> Option<(Daemon, Client, Reap)> {
    if !common::kvm_or_skip(test) {
        return None;
    }
    let d = Daemon::start();
    let c = setup_in(&d);
    let reap = Reap(c.clone());
    Some((d, c, reap))
}

fn create(c: &Client, body: Value) -> i64 {
    let r = c.post("/vms", body);
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_i64().expect("id")
}

fn start(c: &Client, id: i64) {
    let r = c.post(&format!("/vms/{id}/start"), json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
}

fn state(c: &Client, id: i64) -> Value {
    c.get(&format!("/vms/{id}")).body["status"].clone()
}

fn wait_state(c: &Client, id: i64, want: &str) -> Value {
    wait_for_status(c, id, &format!("vm {id} to be {want}"), 60, |s| {
        s["state"] == want
    })
}

/// Polls the VM's status until `done` holds (up to 120 s).
fn wait_status(c: &Client, id: i64, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    wait_for_status(c, id, what, 120, done)
}

fn wait_for_status(
    c: &Client,
    id: i64,
    what: &str,
    limit_secs: u64,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let t0 = Instant::now();
    loop {
        let st = state(c, id);
        if done(&st) {
            return st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(limit_secs),
            "waited {limit_secs} s for {what}: {st}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `ferrite-vmm` processes whose command line mentions this daemon's data dir.
fn vmm_processes(d: &Daemon) -> Vec<String> {
    let needle = d.data().display().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("ferrite-vmm") && cmd.contains(&needle) {
            out.push(cmd);
        }
    }
    out
}

#[test]
fn micro_guests_boot_through_the_api_on_both_entries_and_power_off() {
    let Some((d, c, _reap)) =
        vm_daemon("micro_guests_boot_through_the_api_on_both_entries_and_power_off")
    else {
        return;
    };
    let pvh = create(
        &c,
        json!({"name": "pvh", "kernel": "local:guest.elf", "memory": 32, "cmdline": "test=hello"}),
    );
    let long = create(
        &c,
        json!({"name": "long", "kernel": "local:guest64.elf", "memory": 32, "cmdline": "test=hello"}),
    );
    let v = c.get(&format!("/vms/{pvh}")).body;
    assert_eq!(v["status"]["state"], "stopped");
    assert_eq!(v["name"], "pvh");
    start(&c, pvh);
    start(&c, long);
    let s = wait_serial(&c, pvh, "hello", |s| s.contains("Hello"));
    assert!(
        s.contains("Hello from a Ferrite micro-guest (PVH entry)"),
        "{s}"
    );
    let s = wait_serial(&c, long, "hello", |s| s.contains("Hello"));
    assert!(
        s.contains("Hello from a Ferrite micro-guest (64-bit entry)"),
        "{s}"
    );
    // The guest powers off through the ACPI sleep port: the VM stops and says why.
    for id in [pvh, long] {
        let st = wait_state(&c, id, "stopped");
        assert_eq!(st["last_exit"]["reason"], "poweroff", "{st}");
    }
    assert!(vmm_processes(&d).is_empty(), "{:?}", vmm_processes(&d));
    // Started again, it boots again from scratch.
    start(&c, pvh);
    wait_state(&c, pvh, "stopped");
    assert_eq!(serial(&c, pvh).matches("Hello").count(), 1);
    // Listed, and deleted.
    let list = c.get("/vms").body;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(c.delete(&format!("/vms/{pvh}")).status, 204);
    assert_eq!(c.get(&format!("/vms/{pvh}")).status, 404);
}

#[test]
fn every_vcpu_starts_and_reports() {
    let Some((_d, c, _reap)) = vm_daemon("every_vcpu_starts_and_reports") else {
        return;
    };
    let id = create(
        &c,
        json!({"name": "smp", "kernel": "local:guest.elf", "memory": 32, "vcpus": 4, "cmdline": "test=smp cpus=4"}),
    );
    start(&c, id);
    let s = wait_serial(&c, id, "cpus up", |s| s.contains("cpus up:"));
    for n in 0..4 {
        assert!(
            s.contains(&format!("cpu {n} up")),
            "vCPU {n} did not report:\n{s}"
        );
    }
    assert!(s.contains("cpus up: 4"), "{s}");
    wait_state(&c, id, "stopped");
}

/// The ACPI tables a stock kernel reads, walked by the guest itself from the pointer its boot
/// structure carries (both entries): checksums, one local APIC per vCPU, every virtio-mmio
/// slot declared as `LNRO0005` in the DSDT, the GED power button, `_S5_`, hardware-reduced
/// FADT with our sleep port.
#[test]
fn acpi_tables_declare_cpus_and_virtio_devices() {
    let Some((_d, c, _reap)) = vm_daemon("acpi_tables_declare_cpus_and_virtio_devices") else {
        return;
    };
    let r = c.post(
        "/storage/pools/local/volumes",
        json!({"name": "acpi.raw", "size": 1048576, "content": "images", "format": "raw"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    for kernel in ["guest.elf", "guest64.elf"] {
        let id = create(
            &c,
            json!({"name": format!("acpi-{}", kernel.replace('.', "-")), "kernel": format!("local:{kernel}"),
                   "memory": 32, "vcpus": 3, "cmdline": "test=acpi",
                   "disks": {"disk0": {"volume": "local:acpi.raw", "read_only": true}}, "rng": true}),
        );
        start(&c, id);
        // The whole report line: serial output arrives a byte at a time.
        let s = wait_serial(&c, id, "acpi report", |s| {
            s.split_once("acpi ")
                .is_some_and(|(_, rest)| rest.contains('\n'))
        });
        assert!(
            s.contains(
                "acpi ok cpus=3 ioapics=1 virtio=2 ged=1 pwrb=1 s5=1 hw_reduced=1 sleep_port=1536"
            ),
            "{kernel}: {s}"
        );
        wait_state(&c, id, "stopped");
        assert_eq!(c.delete(&format!("/vms/{id}")).status, 204);
    }
}

fn volume_path(c: &Client, volid: &str) -> PathBuf {
    let r = c.get(&format!(
        "/storage/pools/local/volumes/{}",
        volid.trim_start_matches("local:")
    ));
    assert_eq!(r.status, 200, "{}", r.text);
    PathBuf::from(r.body["path"].as_str().expect("path"))
}

#[test]
fn virtio_blk_writes_reach_the_volume_and_read_only_disks_refuse() {
    let Some((_d, c, _reap)) =
        vm_daemon("virtio_blk_writes_reach_the_volume_and_read_only_disks_refuse")
    else {
        return;
    };
    for name in ["data.raw", "ro.raw"] {
        let r = c.post(
            "/storage/pools/local/volumes",
            json!({"name": name, "size": 1048576, "content": "images", "format": "raw"}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let data = volume_path(&c, "local:data.raw");
    let ro = volume_path(&c, "local:ro.raw");
    for p in [&data, &ro] {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(p)
            .expect("open");
        std::io::Write::write_all(&mut f, b"hello from the host side\n").expect("write");
    }
    let id = create(
        &c,
        json!({"name": "blk", "kernel": "local:guest.elf", "memory": 32, "cmdline": "test=blk",
               "disks": {"disk0": {"volume": "local:data.raw"},
                         "disk1": {"volume": "local:ro.raw", "read_only": true}}}),
    );
    // A disk in use is refused for deletion, naming the VM.
    let r = c.delete("/storage/pools/local/volumes/data.raw");
    assert_eq!(r.status, 409, "{}", r.text);
    start(&c, id);
    let s = wait_serial(&c, id, "blk done", |s| s.contains("blk done"));
    assert!(s.contains("blk0 capacity 2048"), "{s}");
    assert!(
        s.contains("blk0 read status 0: hello from the host side"),
        "{s}"
    );
    assert!(s.contains("blk0 write status 0"), "{s}");
    assert!(s.contains("blk0 flush status 0"), "{s}");
    assert!(
        s.contains("blk1 write status 1"),
        "read-only disk accepted a write:\n{s}"
    );
    wait_state(&c, id, "stopped");
    let written = std::fs::read(&data).expect("read back");
    assert_eq!(
        &written[512..512 + 39],
        b"written by the guest through virtio-blk",
        "sector 1 on the host"
    );
    let untouched = std::fs::read(&ro).expect("read back");
    assert!(
        untouched[512..1024].iter().all(|b| *b == 0),
        "read-only disk changed"
    );
}

#[test]
fn virtio_rng_and_guest_reset_restarts_the_vm() {
    let Some((_d, c, _reap)) = vm_daemon("virtio_rng_and_guest_reset_restarts_the_vm") else {
        return;
    };
    let rng = create(
        &c,
        json!({"name": "rng", "kernel": "local:guest.elf", "memory": 32, "cmdline": "test=rng"}),
    );
    start(&c, rng);
    let s = wait_serial(&c, rng, "rng bytes", |s| s.contains("rng 16 bytes"));
    let hex = s.split("bytes ").nth(1).unwrap_or_default().trim();
    assert_eq!(hex.len(), 32, "{s}");
    assert_ne!(hex, "00000000000000000000000000000000");
    // A guest that resets (i8042) is started again by the daemon, as a reboot would.
    let reset = create(
        &c,
        json!({"name": "reset", "kernel": "local:guest.elf", "memory": 32, "cmdline": "test=reset"}),
    );
    start(&c, reset);
    // The guest resets within milliseconds of each start. The daemon restarts the first reset
    // at once and counts it; the next one waits (back-off), shown as `next_restart_at`.
    let pending = wait_status(&c, reset, "a restart planned after a back-off", |st| {
        st["next_restart_at"].is_string() && st["restarts"].as_u64() >= Some(1)
    });
    assert_eq!(pending["state"], "stopped", "{pending}");
    assert_eq!(pending["last_exit"]["reason"], "reset", "{pending}");
    assert!(pending["restarts"].as_u64() >= Some(1), "{pending}");
    assert!(serial(&c, reset).contains("resetting"));
    // A stop during the back-off cancels the planned restart.
    let r = c.post(&format!("/vms/{reset}/stop"), json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["status"]["next_restart_at"].is_null(), "{}", r.text);
    // (The planned restart may have been made before the stop arrived: count from the stop.)
    let stopped = r.body["status"].clone();
    let due = pending["next_restart_at"]
        .as_str()
        .and_then(ferrite::time::parse_rfc3339)
        .map(|t| t - ferrite::time::now_unix());
    std::thread::sleep(Duration::from_secs(
        due.unwrap_or(2).clamp(0, 30) as u64 + 2,
    ));
    let st = state(&c, reset);
    assert_eq!(st["state"], "stopped", "restarted after a stop: {st}");
    assert_eq!(st["restarts"], stopped["restarts"], "{st}");
    // Started again through the API, a guest that keeps resetting is restarted five times
    // (after 0, 1, 2, 4 and 8 s), then left stopped with the reason.
    start(&c, reset);
    wait_gave_up_after_five_restarts(&c, reset);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(state(&c, reset)["restarts"], 5);
    assert_eq!(state(&c, reset)["state"], "stopped");
}

/// Waits for the daemon to give up on a guest in a reset loop: stopped after exactly 5
/// automatic restarts, with the reason, and nothing planned.
fn wait_gave_up_after_five_restarts(c: &Client, id: i64) {
    let st = wait_status(c, id, "the daemon giving up on restarts", |st| {
        st["last_exit"]["restarts_stopped"].is_string()
    });
    assert_eq!(st["state"], "stopped", "{st}");
    assert_eq!(st["restarts"], 5, "{st}");
    assert!(st["next_restart_at"].is_null(), "{st}");
    assert!(
        st["last_exit"]["restarts_stopped"]
            .as_str()
            .is_some_and(|m| m.contains("after 5 automatic restarts within 60 s")),
        "{st}"
    );
}

#[test]
fn a_restart_planned_after_a_reset_survives_a_daemon_restart() {
    if !common::kvm_or_skip("a_restart_planned_after_a_reset_survives_a_daemon_restart") {
        return;
    }
    let mut d = Daemon::start();
    let c = setup_in(&d);
    let id = create(
        &c,
        json!({"name": "reset", "kernel": "local:guest.elf", "memory": 32, "cmdline": "test=reset"}),
    );
    start(&c, id);
    // Wait for a back-off long enough (the third restart waits 2 s, the fourth 4 s) that the
    // daemon is surely killed before the planned restart is made.
    let pending = wait_status(&c, id, "a restart planned 2 s or more ahead", |st| {
        st["next_restart_at"]
            .as_str()
            .and_then(ferrite::time::parse_rfc3339)
            .is_some_and(|t| t - ferrite::time::now_unix() >= 2)
    });
    d.stop(nix::sys::signal::Signal::SIGKILL);
    d.spawn();
    let c = d.root();
    let _reap = Reap(c.clone());
    let before = pending["restarts"].as_u64().expect("restarts");
    wait_status(&c, id, "the restarted daemon to restart the guest", |st| {
        st["restarts"].as_u64() > Some(before)
    });
    // The resets before the daemon restart still count: it gives up after 5 restarts in
    // all, not 5 more.
    wait_gave_up_after_five_restarts(&c, id);
}

/// A guest that runs a while between resets (as a slow kernel that panics with `panic=1`)
/// when the daemon restarts: its resets before the restart still count towards the limit.
#[test]
fn resets_before_a_daemon_restart_count_while_the_guest_runs() {
    if !common::kvm_or_skip("resets_before_a_daemon_restart_count_while_the_guest_runs") {
        return;
    }
    let mut d = Daemon::start();
    let c = setup_in(&d);
    let id = create(
        &c,
        json!({"name": "resetter", "kernel": "local:guest.elf", "memory": 32, "cmdline": "test=echo"}),
    );
    start(&c, id);
    // Once the VM runs with `n` restarts behind it, the guest is told to reset.
    let reset_after = |d: &Daemon, c: &Client, n: u64| {
        wait_status(
            c,
            id,
            &format!("the guest running after {n} restarts"),
            |st| st["state"] == "running" && st["restarts"].as_u64() == Some(n),
        );
        let mut con = common::Console::attach(d, c, &format!("vms/{id}/console"));
        con.send(tungstenite::Message::text("reset\n"));
    };
    reset_after(&d, &c, 0);
    reset_after(&d, &c, 1);
    wait_status(&c, id, "the guest running after 2 restarts", |st| {
        st["state"] == "running" && st["restarts"].as_u64() == Some(2)
    });
    d.stop(nix::sys::signal::Signal::SIGKILL);
    d.spawn();
    let c = d.root();
    let _reap = Reap(c.clone());
    for n in 2..=5 {
        reset_after(&d, &c, n);
    }
    wait_gave_up_after_five_restarts(&c, id);
}

#[test]
fn snapshot_of_a_paused_vm_restores_and_the_counter_keeps_counting() {
    let Some((d, c, _reap)) =
        vm_daemon("snapshot_of_a_paused_vm_restores_and_the_counter_keeps_counting")
    else {
        return;
    };
    let r = c.post(
        "/storage/pools/local/volumes",
        json!({"name": "snapdisk.raw", "size": 1048576, "content": "images"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let id = create(
        &c,
        json!({"name": "counter", "kernel": "local:guest.elf", "memory": 32, "vcpus": 2,
               "cmdline": "test=count delay=50000", "disks": {"disk0": {"volume": "local:snapdisk.raw"}}}),
    );
    start(&c, id);
    wait_serial(&c, id, "count 3", |s| s.contains("count 3\n"));
    // A running VM is refused: it must be paused first.
    let r = c.post(&format!("/vms/{id}/snapshots"), json!({"name": "s1"}));
    assert_eq!(r.status, 409, "{}", r.text);
    let r = c.post(&format!("/vms/{id}/pause"), json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"]["state"], "paused");
    let before = serial(&c, id);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(serial(&c, id), before, "a paused guest kept printing");
    let r = c.post(
        &format!("/vms/{id}/snapshots"),
        json!({"name": "s1", "description": "mid-count"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let snaps = c.get(&format!("/vms/{id}/snapshots")).body;
    assert_eq!(snaps["items"][0]["name"], "s1");
    assert_eq!(snaps["items"][0]["memory_bytes"], 32 << 20);
    let last: u64 = before
        .lines()
        .filter_map(|l| l.strip_prefix("count ").and_then(|n| n.trim().parse().ok()))
        .max()
        .expect("a count");
    // The disk was snapshotted under the same name.
    let vol = c.get("/storage/pools/local/volumes/snapdisk.raw").body;
    assert!(vol["snapshots"].to_string().contains("s1"), "{vol}");
    // Restore needs a stopped VM; then a new process continues the guest.
    let r = c.post(&format!("/vms/{id}/snapshots/s1/restore"), json!({}));
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(c.post(&format!("/vms/{id}/stop"), json!({})).status, 200);
    // A damaged memory file is refused before the disks are rolled back: the disk keeps what
    // was written after the snapshot, and the VM stays stopped.
    let disk = std::path::PathBuf::from(
        c.get("/storage/pools/local/volumes/snapdisk.raw").body["path"]
            .as_str()
            .expect("path"),
    );
    std::fs::write(&disk, vec![7u8; 4096]).expect("write disk");
    let mem = d.dir.path().join(format!("vms/{id}/snapshots/s1/memory"));
    let good = std::fs::read(&mem).expect("snapshot memory file");
    let mut bad = good.clone();
    bad[4096] ^= 0xff;
    std::fs::write(&mem, &bad).expect("damage the memory file");
    let r = c.post(&format!("/vms/{id}/snapshots/s1/restore"), json!({}));
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(
        r.text.contains("memory file is damaged") && r.text.contains("nothing was changed"),
        "{}",
        r.text
    );
    assert_eq!(
        std::fs::read(&disk).expect("read disk")[..4096],
        [7u8; 4096]
    );
    assert_eq!(state(&c, id)["state"], "stopped");
    std::fs::write(&mem, &good).expect("mend the memory file");
    let r = c.post(&format!("/vms/{id}/snapshots/s1/restore"), json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"]["state"], "running");
    let next = format!("count {}\n", last + 1);
    let s = wait_serial(&c, id, &next, |s| s.contains(&next));
    assert!(
        !s.contains("count 1\n"),
        "the restored guest started over:\n{s}"
    );
    // A stopped VM's snapshot holds its disks only; its restore rolls them back and leaves
    // the VM stopped.
    assert_eq!(c.post(&format!("/vms/{id}/stop"), json!({})).status, 200);
    std::fs::write(&disk, vec![1u8; 4096]).expect("write disk");
    let r = c.post(&format!("/vms/{id}/snapshots"), json!({"name": "cold"}));
    assert_eq!(r.status, 201, "{}", r.text);
    let snaps = c.get(&format!("/vms/{id}/snapshots")).body;
    let cold = snaps["items"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == "cold"))
        .cloned()
        .expect("cold snapshot listed");
    assert_eq!(
        (cold["vmstate"].clone(), cold["memory_bytes"].clone()),
        (json!(false), json!(0))
    );
    std::fs::write(&disk, vec![2u8; 4096]).expect("write disk");
    let r = c.post(&format!("/vms/{id}/snapshots/cold/restore"), json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"]["state"], "stopped");
    assert_eq!(
        std::fs::read(&disk).expect("read disk")[..4096],
        [1u8; 4096]
    );
    assert_eq!(c.delete(&format!("/vms/{id}/snapshots/cold")).status, 204);
    // Deleting the snapshot removes the disk snapshot too.
    assert_eq!(c.delete(&format!("/vms/{id}/snapshots/s1")).status, 204);
    let vol = c.get("/storage/pools/local/volumes/snapdisk.raw").body;
    assert!(!vol["snapshots"].to_string().contains("s1"), "{vol}");
    assert_eq!(
        c.post(&format!("/vms/{id}/snapshots/s1/restore"), json!({}))
            .status,
        404
    );
}

#[test]
fn vms_survive_a_daemon_kill_and_are_readopted() {
    if !common::kvm_or_skip("vms_survive_a_daemon_kill_and_are_readopted") {
        return;
    }
    let mut d = Daemon::start();
    let c = setup_in(&d);
    let id = create(
        &c,
        json!({"name": "survivor", "kernel": "local:guest.elf", "memory": 32, "cmdline": "test=count delay=50000"}),
    );
    start(&c, id);
    let pid = state(&c, id)["pid"].as_i64().expect("pid");
    wait_serial(&c, id, "count 2", |s| s.contains("count 2\n"));
    d.stop(nix::sys::signal::Signal::SIGKILL);
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "the VM died with the daemon"
    );
    d.spawn();
    let c = d.root();
    let _reap = Reap(c.clone());
    let st = state(&c, id);
    assert_eq!(st["state"], "running", "{st}");
    assert_eq!(st["pid"], pid);
    // Still under control: pause, resume, and a stop that really stops it.
    assert_eq!(
        c.post(&format!("/vms/{id}/pause"), json!({})).body["status"]["state"],
        "paused"
    );
    assert_eq!(
        c.post(&format!("/vms/{id}/resume"), json!({})).body["status"]["state"],
        "running"
    );
    let n = serial(&c, id).matches("count").count();
    wait_serial(&c, id, "more counting", |s| s.matches("count").count() > n);
    assert_eq!(c.post(&format!("/vms/{id}/stop"), json!({})).status, 200);
    let t0 = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        // The new daemon is not the VMM's parent: the host's init reaps it.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.contains(") Z") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "VMM {pid} still alive"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn virtio_net_exchanges_frames_with_a_peer_on_the_bridge() {
    if !common::kvm_or_skip("virtio_net_exchanges_frames_with_a_peer_on_the_bridge") {
        return;
    }
    let ns = NetNs::new("vmnet");
    let peer = NetNs::new("vmpeer");
    let d = Daemon::start_in(&ns);
    let c = setup_in(&d);
    let _reap = Reap(c.clone());
    // The peer: a host in its own namespace, plugged into the bridge by a veth that the
    // bridge declares as a port (the reconciler removes undeclared ones).
    ns.veth_to("peerport", &peer, "eth0");
    let r = c.post(
        "/network/bridges",
        json!({"name": "vmbr0", "ports": {"peerport": {}}}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    peer.ip("addr add 10.77.0.1/24 dev eth0");
    peer.ip("link set eth0 up");
    let peer_mac = peer.links()["eth0"]["address"]
        .as_str()
        .expect("mac")
        .to_string();
    let id = create(
        &c,
        json!({"name": "netvm", "kernel": "local:guest.elf", "memory": 32,
               "cmdline": "test=net ip=10.77.0.2 peer=10.77.0.1 hold=1",
               "net": {"net0": {"bridge": "vmbr0", "mac": "52:54:00:12:34:56",
                                "rate": {"rx_mbps": 100}}}}),
    );
    start(&c, id);
    // The tap is on the bridge in the daemon's namespace, and what it sends to the guest is
    // shaped at 100 Mbit/s (12.5 MB/s) by a tbf qdisc the kernel reports.
    let links = ns.links();
    assert_eq!(links[&format!("v{id}i0")]["master"], "vmbr0");
    let q = common::sh(&format!(
        "ip netns exec {} tc -j qdisc show dev v{id}i0",
        ns.name
    ));
    assert!(
        q.contains("\"kind\":\"tbf\"") && q.contains("\"rate\":12500000"),
        "{q}"
    );
    let s = wait_serial(&c, id, "arp reply", |s| {
        s.contains("arp reply") || s.contains("no reply")
    });
    assert!(s.contains("net mac 52:54:00:12:34:56"), "{s}");
    assert!(
        s.contains(&format!("net arp reply from {peer_mac}")),
        "{s}\nbridge namespace:\n{}\npeer:\n{}",
        ns.ip("-d -s link"),
        peer.ip("-s link")
    );
    // The peer learned the guest's MAC from its request: frames went both ways.
    let neigh = common::sh(&format!("ip -n {} neigh show 10.77.0.2", peer.name));
    assert!(neigh.contains("52:54:00:12:34:56"), "{neigh}");
    // A key on the console lets the holding guest power off on its own.
    wait_serial(&c, id, "holding", |s| s.contains("holding"));
    let r = c.post(&format!("/vms/{id}/serial"), json!({"data": "x"}));
    assert_eq!(r.status, 204, "{}", r.text);
    wait_state(&c, id, "stopped");
    // The bridge cannot be deleted under the VM; once the VM is gone the tap is too.
    let r = c.delete("/network/bridges/vmbr0");
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("vm {id}")),
        "{}",
        r.text
    );
    // The daemon notices the exit and removes the tap (its monitor looks 4 times a second).
    let t0 = Instant::now();
    while ns.links().contains_key(&format!("v{id}i0")) {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "tap left after the VM stopped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(c.delete(&format!("/vms/{id}")).status, 204);
    assert_eq!(c.delete("/network/bridges/vmbr0").status, 204);
}

#[test]
fn bad_input_is_refused_and_leaves_nothing() {
    let Some((d, c, _reap)) = vm_daemon("bad_input_is_refused_and_leaves_nothing") else {
        return;
    };
    let junk = d.data().join("junk.bin");
    std::fs::write(&junk, b"#!/bin/sh\necho not a kernel\n").expect("write");
    common::upload(&c, &junk, "junk.bin", "snippets");
    let cases = [
        (
            json!({"name": "a", "kernel": "local:missing.elf"}),
            422,
            "/kernel",
        ),
        (
            json!({"name": "a", "kernel": "local:junk.bin"}),
            422,
            "/kernel",
        ),
        (
            json!({"name": "a", "kernel": "local:guest.elf", "memory": 4000000}),
            422,
            "/memory",
        ),
        (
            json!({"name": "a", "kernel": "local:guest.elf", "vcpus": 0}),
            400,
            "/vcpus",
        ),
        (
            json!({"name": "a", "kernel": "local:guest.elf", "vcpus": 65}),
            400,
            "/vcpus",
        ),
        (
            json!({"name": "a", "kernel": "local:guest.elf", "disks": {"disk0": {"volume": "local:nope.raw"}}}),
            422,
            "/disks/disk0/volume",
        ),
        (
            json!({"name": "a", "kernel": "local:guest.elf", "net": {"net0": {"bridge": "nobr0"}}}),
            422,
            "/net/net0/bridge",
        ),
        (
            json!({"name": "a", "kernel": "local:guest.elf", "disks": {"d0": {"volume": "local:x.raw"}}}),
            400,
            "/disks",
        ),
    ];
    for (body, status, pointer) in cases {
        let r = c.post("/vms", body.clone());
        assert_eq!(r.status, status, "{body}: {}", r.text);
        assert!(
            r.pointers().iter().any(|p| p.starts_with(pointer)),
            "{body}: {pointer} not named in {:?}: {}",
            r.pointers(),
            r.text
        );
    }
    assert_eq!(c.get("/vms").body["items"], json!([]));
    // A qcow2 disk is not something ferrite-vmm opens.
    let r = c.post(
        "/storage/pools/local/volumes",
        json!({"name": "q.qcow2", "size": 1048576, "content": "images", "format": "qcow2"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = c.post("/vms", json!({"name": "a", "kernel": "local:guest.elf", "disks": {"disk0": {"volume": "local:q.qcow2"}}}));
    assert_eq!(r.status, 422, "{}", r.text);
    // A disk held by a running VM is refused to a second one, naming the holder.
    let r = c.post(
        "/storage/pools/local/volumes",
        json!({"name": "shared.raw", "size": 1048576, "content": "images"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let disk = json!({"disk0": {"volume": "local:shared.raw"}});
    let a = create(
        &c,
        json!({"name": "holder", "kernel": "local:guest.elf", "memory": 32, "cmdline": "test=hang", "disks": disk}),
    );
    let b = create(
        &c,
        json!({"name": "second", "kernel": "local:guest.elf", "memory": 32, "cmdline": "test=hang", "disks": disk}),
    );
    start(&c, a);
    let r = c.post(&format!("/vms/{b}/start"), json!({}));
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.text.contains(&format!("running vm {a}")), "{}", r.text);
    assert_eq!(state(&c, b)["state"], "stopped");
    // Duplicate name; delete while running; snapshot of a running VM.
    let r = c.post(
        "/vms",
        json!({"name": "holder", "kernel": "local:guest.elf"}),
    );
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(c.delete(&format!("/vms/{a}")).status, 409);
    assert_eq!(
        c.post(&format!("/vms/{a}/snapshots"), json!({"name": "x"}))
            .status,
        409
    );
    // Pause of a stopped VM; serial input to a stopped VM.
    assert_eq!(c.post(&format!("/vms/{b}/pause"), json!({})).status, 409);
    assert_eq!(
        c.post(&format!("/vms/{b}/serial"), json!({"data": "x"}))
            .status,
        409
    );
    // Shutdown of a guest that ignores the power button falls back to a kill.
    let r = c.post(&format!("/vms/{a}/shutdown"), json!({"timeout": 1}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"]["state"], "stopped");
    assert!(vmm_processes(&d).is_empty(), "{:?}", vmm_processes(&d));
    for id in [a, b] {
        assert_eq!(c.delete(&format!("/vms/{id}")).status, 204);
    }
    assert!(!d.data().join(format!("vms/{a}")).exists());
}

/// A stock Debian kernel (the one `scripts/kernel-vm` caches) booting to a shell prompt on
/// the serial console. Only meaningful on hardware-backed KVM: on software-assisted nested
/// KVM (`kvm_pvm`) a stock kernel does not boot in useful time, so the test says so and skips.
#[test]
fn stock_debian_kernel_boots_to_a_shell_prompt() {
    let test = "stock_debian_kernel_boots_to_a_shell_prompt";
    if !common::kvm_or_skip(test) {
        return;
    }
    if Path::new("/sys/module/kvm_pvm").exists() {
        common::skip(
            test,
            "/dev/kvm is software-assisted nested KVM (kvm_pvm): a stock kernel does not boot in useful time; runs where KVM is hardware-backed",
        );
        return;
    }
    let cache = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/target/kernel-vm"));
    let (kernel, initrd) = (cache.join("vmlinuz"), cache.join("initrd.gz"));
    if !kernel.exists() || !initrd.exists() {
        common::skip(
            test,
            "Debian kernel not prepared (scripts/kernel-vm/kernel-vm prepare)",
        );
        return;
    }
    let d = Daemon::start();
    let c = d.root();
    let _reap = Reap(c.clone());
    common::upload(&c, &kernel, "vmlinuz", "snippets");
    common::upload(&c, &initrd, "initrd.gz", "snippets");
    let id = create(
        &c,
        json!({"name": "debian", "kernel": "local:vmlinuz", "initrd": "local:initrd.gz", "memory": 512,
               "vcpus": 2, "cmdline": "console=ttyS0 reboot=k panic=1 ferrite.shell=1"}),
    );
    start(&c, id);
    let s = wait_serial(&c, id, "shell prompt", |s| s.contains("ferrite-shell#"));
    assert!(s.contains("Linux version"), "{s}");
    // virtio-rng (on by default) was found through the DSDT: virtio_mmio bound LNRO0005.
    assert!(s.contains("virtio device: virtio0 id 0x0004"), "{s}");
}

/// The serial console over WebSocket: the recent log arrives first, then live output; lines
/// typed into the socket reach the guest's COM1 (it echoes them); the socket closes when the
/// VM powers off. A plain GET is told to upgrade (426), and an anonymous handshake is refused.
#[test]
fn serial_console_over_websocket() {
    let Some((d, c, _reap)) = vm_daemon("serial_console_over_websocket") else {
        return;
    };
    let id = create(
        &c,
        json!({"name": "echo", "kernel": "local:guest.elf", "memory": 32, "cmdline": "test=echo"}),
    );
    // Not running yet: nothing to attach to.
    assert_eq!(c.get(&format!("/vms/{id}/console")).status, 409);
    start(&c, id);
    wait_serial(&c, id, "echo ready", |s| s.contains("echo ready"));
    assert_eq!(c.get(&format!("/vms/{id}/console")).status, 426);
    let url = format!(
        "{}/api/v1/vms/{id}/console",
        d.endpoint.replacen("http", "ws", 1)
    );
    assert!(
        tungstenite::connect(url.as_str()).is_err(),
        "anonymous console accepted"
    );
    let mut con = common::Console::attach(&d, &c, &format!("vms/{id}/console"));
    // History first: the guest printed this before we attached.
    con.read_until("echo ready");
    con.send(tungstenite::Message::text("hello console\n"));
    con.read_until("echo: hello console");
    con.send(tungstenite::Message::binary(b"bye\n".to_vec()));
    con.read_until("echo: bye");
    // The guest powers off; the server closes the socket.
    con.wait_closed();
    wait_state(&c, id, "stopped");
}

/// Templates and clones: a full clone gets a new id, new MACs and a copy of each writable
/// disk (checked byte for byte on the host) and boots; a template no longer starts; a linked
/// clone of a template's qcow2 disk is backed by it; bad requests leave nothing behind.
#[test]
fn vm_templates_and_full_and_linked_clones() {
    let Some((_d, c, _reap)) = vm_daemon("vm_templates_and_full_and_linked_clones") else {
        return;
    };
    let r = c.post(
        "/storage/pools/local/volumes",
        json!({"name": "tpl.raw", "size": 1048576, "content": "images", "format": "raw"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let pattern: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(volume_path(&c, "local:tpl.raw"))
            .expect("open raw volume");
        f.write_all(&pattern).expect("write pattern");
    }
    let base = create(
        &c,
        json!({"name": "base", "kernel": "local:guest.elf", "memory": 32, "cmdline": "test=hello",
               "disks": {"disk0": {"volume": "local:tpl.raw"}},
               "net": {}}),
    );
    // A linked clone needs a template.
    let r = c.post(
        &format!("/vms/{base}/clone"),
        json!({"name": "nope", "linked": true}),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.pointers(), vec!["/linked"]);
    // Full clone.
    let r = c.post(&format!("/vms/{base}/clone"), json!({"name": "full1"}));
    assert_eq!(r.status, 201, "{}", r.text);
    let full = r.body["id"].as_i64().expect("id");
    assert_ne!(full, base);
    assert_eq!(r.body["cloned_from"], base.to_string());
    let vol = r.body["disks"]["disk0"]["volume"]
        .as_str()
        .expect("volume")
        .to_string();
    assert_eq!(vol, format!("local:vm-{full}-disk0"));
    let copy = std::fs::read(volume_path(&c, &vol)).expect("read clone disk");
    assert_eq!(
        &copy[..pattern.len()],
        &pattern[..],
        "the clone's disk is a copy"
    );
    start(&c, full);
    wait_serial(&c, full, "hello", |s| {
        s.contains("Hello from a Ferrite micro-guest")
    });
    wait_state(&c, full, "stopped");
    // A duplicate name is refused and leaves no VM or volume behind.
    let before = c.get("/vms").body["items"].as_array().map(Vec::len);
    let vols_before = c.get("/storage/pools/local/volumes").body["items"]
        .as_array()
        .map(Vec::len);
    let r = c.post(&format!("/vms/{base}/clone"), json!({"name": "full1"}));
    assert_eq!(r.status, 409, "{}", r.text);
    let r = c.post(
        &format!("/vms/{base}/clone"),
        json!({"name": "x", "snapshot": "nosuch"}),
    );
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(c.get("/vms").body["items"].as_array().map(Vec::len), before);
    assert_eq!(
        c.get("/storage/pools/local/volumes").body["items"]
            .as_array()
            .map(Vec::len),
        vols_before
    );
    // Template: it no longer starts.
    let r = c.post(&format!("/vms/{base}/template"), json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["is_template"], true);
    let r = c.post(&format!("/vms/{base}/start"), json!({}));
    assert_eq!(r.status, 409, "{}", r.text);
    // Linked clones need a pool that can link raw disks (thin snapshots on lvmthin); a
    // dir pool cannot, and the refusal leaves nothing behind.
    let vms_before = c.get("/vms").body["items"].as_array().map(Vec::len);
    let r = c.post(
        &format!("/vms/{base}/clone"),
        json!({"name": "linked1", "linked": true}),
    );
    assert!(r.status == 422 || r.status == 409, "{}", r.text);
    assert_eq!(
        c.get("/vms").body["items"].as_array().map(Vec::len),
        vms_before
    );
    assert_eq!(
        c.get("/storage/pools/local/volumes").body["items"]
            .as_array()
            .map(Vec::len),
        vols_before
    );
    // A full clone of the template starts.
    let r = c.post(
        &format!("/vms/{base}/clone"),
        json!({"name": "from-template"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let from_tpl = r.body["id"].as_i64().expect("id");
    start(&c, from_tpl);
    wait_state(&c, from_tpl, "stopped");
}

/// `AnonHugePages` of a process, in KiB (from /proc/PID/smaps_rollup).
fn anon_huge_kib(pid: i64) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("AnonHugePages:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// `hugepages: true` backs guest RAM with transparent huge pages: after the guest touches
/// 16 MiB, the VMM's RSS holds huge pages; the same guest without the flag gets none.
#[test]
fn hugepages_back_guest_memory_when_asked() {
    if !common::kvm_or_skip("hugepages_back_guest_memory_when_asked") {
        return;
    }
    let thp =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    if !thp.contains("[always]") && !thp.contains("[madvise]") {
        common::skip(
            "vms::hugepages_back_guest_memory_when_asked",
            &format!(
                "transparent hugepages are off on this host ({})",
                thp.trim()
            ),
        );
        return;
    }
    let d = Daemon::start();
    let c = setup_in(&d);
    let _reap = Reap(c.clone());
    let mut huge = Vec::new();
    for (name, flag) in [("huge", true), ("small", false)] {
        let id = create(
            &c,
            json!({"name": name, "kernel": "local:guest.elf", "memory": 64, "hugepages": flag,
                   "cmdline": "test=touch mib=16 hold=1"}),
        );
        start(&c, id);
        wait_serial(&c, id, "touched", |s| s.contains("touched 16 MiB"));
        let pid = state(&c, id)["pid"].as_i64().expect("pid");
        huge.push(anon_huge_kib(pid));
        assert_eq!(c.post(&format!("/vms/{id}/stop"), json!({})).status, 200);
    }
    eprintln!("AnonHugePages KiB with and without hugepages: {huge:?}");
    assert!(
        huge[0] >= 8 * 1024,
        "guest RAM with hugepages holds only {} KiB of huge pages",
        huge[0]
    );
    assert_eq!(huge[1], 0, "guest RAM without hugepages holds huge pages");
}

/// `shutdown` presses the ACPI power button (the GED event the DSDT declares): a guest that
/// handles it powers off on its own, so the VM stops with `poweroff` as its exit reason
/// instead of being killed at the timeout.
#[test]
fn shutdown_presses_the_power_button_and_the_guest_powers_off() {
    let Some((d, c, _reap)) =
        vm_daemon("shutdown_presses_the_power_button_and_the_guest_powers_off")
    else {
        return;
    };
    let id = create(
        &c,
        json!({"name": "acpi-off", "kernel": "local:guest.elf", "memory": 32,
               "cmdline": "test=touch mib=1 hold=1"}),
    );
    start(&c, id);
    wait_serial(&c, id, "holding", |s| s.contains("holding"));
    let r = c.post(&format!("/vms/{id}/shutdown"), json!({"timeout": 120}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"]["state"], "stopped", "{}", r.text);
    assert_eq!(
        r.body["status"]["last_exit"]["reason"], "poweroff",
        "{}",
        r.text
    );
    assert!(serial(&c, id).contains("power button"));
    assert!(vmm_processes(&d).is_empty(), "{:?}", vmm_processes(&d));
}
