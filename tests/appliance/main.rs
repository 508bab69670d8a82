//! The appliance end to end, under QEMU's TCG (this machine's KVM cannot boot a stock kernel
//! in useful time): build the ISO, install unattended from an answer on a FAT image labelled
//! FERRITE-ANS under SeaBIOS and under OVMF, boot the installed disk alone, reach the API
//! through a forwarded loopback port with the fingerprint the installer printed, log in with
//! the answer's password, keep state across a reboot with the ISO still attached (no
//! reinstall), and refuse bad targets before a byte is written.

#[path = "../common/mod.rs"]
mod common;
mod vm;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vm::{Firmware, Machine};

const ADMIN_PW: &str = "appliance-admin-password";
const MAC: &str = "52:54:00:fe:00:01";

/// One machine at a time: two TCG guests on two cores only slow each other down.
static QEMU: Mutex<()> = Mutex::new(());

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The ISO, built once per run from this build's binaries (the root filesystem is cached).
fn iso() -> PathBuf {
    static ISO: OnceLock<PathBuf> = OnceLock::new();
    ISO.get_or_init(|| {
        let bins = Path::new(env!("CARGO_BIN_EXE_ferrited"))
            .parent()
            .expect("bin dir")
            .to_path_buf();
        let t0 = Instant::now();
        let out = Command::new(repo().join("scripts/build-iso"))
            .arg("--bin-dir")
            .arg(&bins)
            .current_dir(repo())
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run scripts/build-iso");
        assert!(out.status.success(), "scripts/build-iso failed");
        let path = PathBuf::from(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .expect("ISO path")
                .trim(),
        );
        eprintln!("ISO {} built in {:?}", path.display(), t0.elapsed());
        path
    })
    .clone()
}

fn sh(cmd: &mut Command) {
    let st = cmd.status().expect("spawn");
    assert!(st.success(), "{cmd:?} failed");
}

/// A FAT image labelled FERRITE-ANS holding `answer.toml`, made with mtools (no loop device).
fn answer_media(dir: &Path, answer: &str) -> PathBuf {
    let img = dir.join("answer.img");
    let toml = dir.join("answer.toml");
    std::fs::write(&toml, answer).expect("answer");
    let _ = std::fs::remove_file(&img);
    sh(Command::new("mkfs.vfat")
        .args(["-n", "FERRITE-ANS", "-C"])
        .arg(&img)
        .arg("2048"));
    sh(Command::new("mcopy")
        .arg("-i")
        .arg(&img)
        .arg(&toml)
        .arg("::answer.toml"));
    img
}

fn blank_disk(dir: &Path, name: &str, gib: u32) -> PathBuf {
    let p = dir.join(name);
    sh(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&p)
        .arg(format!("{gib}G")));
    p
}

/// Static settings for SLIRP's network (10.0.2.0/24, gateway .2, DNS .3).
const STATIC: &str = "address = \"10.0.2.15/24\"\ngateway = \"10.0.2.2\"\ndns = [\"10.0.2.3\"]";
/// The same from SLIRP's DHCP server, kept as static by the installer.
const DHCP: &str = "dhcp = true";

fn answer(disk_match: &str, wipe: bool, on_error: &str, net: &str) -> String {
    let hash = ferrite::access::password::hash(ADMIN_PW).expect("hash");
    format!(
        r#"version = 1
[system]
hostname = "fe-test.example.org"
root_ssh_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGr7lQ0u4yF8tqgJ1v4+Vd0a9nq3n0kq0s9fX0V9cQ7b test"]
on_success = "power-off"
on_error = "{on_error}"
[disk]
match = {disk_match}
wipe = {wipe}
[network]
nic = {{ mac = "{MAC}" }}
{net}
[ferrite]
admin_password_hash = "{hash}"
"#
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// An HTTPS agent that trusts exactly `fingerprint`.
fn agent(fingerprint: &str) -> ureq::Agent {
    let v = Arc::new(ferrite::tls::PinnedVerifier::new(Some(fingerprint)));
    ureq::AgentBuilder::new()
        .tls_config(ferrite::tls::pinned_client_config(v))
        .timeout(Duration::from_secs(10))
        .build()
}

/// Logs in through the forwarded port once the API answers; returns the ticket.
fn login(port: u16, fingerprint: &str, limit: Duration, m: &mut vm::Running) -> String {
    let a = agent(fingerprint);
    let url = format!("https://127.0.0.1:{port}/api/v1/access/login");
    let t0 = Instant::now();
    loop {
        match a
            .post(&url)
            .send_json(json!({"username": "root@local", "password": ADMIN_PW}))
        {
            Ok(r) => {
                let v: Value = r.into_json().expect("login JSON");
                return v["ticket"].as_str().expect("ticket").to_string();
            }
            Err(ureq::Error::Status(code, r)) => {
                panic!(
                    "login refused ({code}): {}",
                    r.into_string().unwrap_or_default()
                )
            }
            Err(_) if !m.alive() => {
                panic!("QEMU exited before the API answered; serial:\n{}", m.log())
            }
            Err(_) if t0.elapsed() < limit => std::thread::sleep(Duration::from_secs(2)),
            Err(e) => panic!(
                "the API did not answer within {limit:?} ({e}); serial:\n{}",
                m.log()
            ),
        }
    }
}

fn get(port: u16, fingerprint: &str, ticket: &str, path: &str) -> (u16, Value) {
    let r = agent(fingerprint)
        .get(&format!("https://127.0.0.1:{port}/api/v1{path}"))
        .set("Authorization", &format!("Bearer {ticket}"))
        .call();
    match r {
        Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
        Err(ureq::Error::Status(c, r)) => (c, r.into_json().unwrap_or(Value::Null)),
        Err(e) => panic!("GET {path}: {e}"),
    }
}

/// The fingerprint the installer printed on the serial port.
fn fingerprint_in(log: &str) -> String {
    let at = log
        .find("TLS SHA-256 fingerprint ")
        .unwrap_or_else(|| panic!("no fingerprint in the installer's output:\n{log}"));
    log[at + "TLS SHA-256 fingerprint ".len()..]
        .split(|c: char| c == ')' || c.is_whitespace())
        .next()
        .expect("fingerprint")
        .to_string()
}

fn install_and_boot(fw: Firmware, tag: &str) {
    let _one = QEMU.lock().unwrap_or_else(|e| e.into_inner());
    let iso = iso();
    let dir = tempfile::tempdir_in(repo().join("target")).expect("tmp");
    let target = blank_disk(dir.path(), "target.qcow2", 16);
    let media = answer_media(
        dir.path(),
        &answer(
            r#"{ serial = "ferrite-target" }"#,
            false,
            "power-off",
            if fw == Firmware::Uefi { DHCP } else { STATIC },
        ),
    );
    let port = free_port();
    let mut m = Machine {
        dir: dir.path().to_path_buf(),
        firmware: fw,
        disks: vec![
            (target.clone(), "qcow2", "ferrite-target".into()),
            (media, "raw", "answers".into()),
        ],
        cdrom: Some(iso.clone()),
        mac: MAC,
        api_port: port,
    };
    let mut run = m.start(&format!("{tag}-install"));
    run.wait_exit(Duration::from_secs(900));
    let log = run.log();
    assert!(
        log.contains("ferrite-install: SUCCESS"),
        "install failed:\n{log}"
    );
    let fp = fingerprint_in(&log);

    // The installed disk alone.
    m.cdrom = None;
    m.disks.truncate(1);
    let mut booted = m.start(&format!("{tag}-boot"));
    let ticket = login(port, &fp, Duration::from_secs(600), &mut booted);
    let (st, br) = get(port, &fp, &ticket, "/network/bridges/vmbr0");
    assert_eq!(st, 200, "{br}");
    assert_eq!(br["addresses"], json!(["10.0.2.15/24"]), "{br}");
    assert!(br["ports"].get("nic0").is_some(), "{br}");
    let (st, node) = get(port, &fp, &ticket, "/nodes");
    assert_eq!(st, 200, "{node}");
    if fw == Firmware::Uefi {
        booted.kill();
    }

    if fw == Firmware::Bios {
        // Terraform against the appliance: a second bridge and a user, pinned to the
        // installer's fingerprint; the next plan is empty.
        let tf = common::tf::Tf::remote(
            &format!("https://127.0.0.1:{port}"),
            "root@local",
            ADMIN_PW,
            &fp,
        );
        tf.config(
            r#"
resource "ferrite_bridge" "lab" {
  name      = "vmbr1"
  addresses = ["10.10.0.1/24"]
}
resource "ferrite_user" "ops" {
  userid  = "ops@local"
  comment = "made by terraform"
}
"#,
        );
        tf.apply();
        booted.kill();
        // The ISO still attached and first in the boot order: the installed system comes up,
        // with the same certificate and password, and nothing is reinstalled; what Terraform
        // made is still there and its plan is still empty.
        m.cdrom = Some(iso);
        let mut again = m.start(&format!("{tag}-iso-attached"));
        let ticket = login(port, &fp, Duration::from_secs(600), &mut again);
        assert_eq!(get(port, &fp, &ticket, "/network/bridges/vmbr0").0, 200);
        let (st, lab) = get(port, &fp, &ticket, "/network/bridges/vmbr1");
        assert_eq!(st, 200, "{lab}");
        assert_eq!(lab["status"]["drift"], json!([]), "{lab}");
        tf.assert_no_changes();
        let log = again.log();
        assert!(log.contains("booting it"), "{log}");
        assert!(!log.contains("ferrite install run"), "reinstalled:\n{log}");
    }
}

#[test]
fn installs_under_seabios_boots_and_survives_the_iso_left_attached() {
    install_and_boot(Firmware::Bios, "bios");
}

#[test]
fn installs_under_ovmf_and_boots() {
    install_and_boot(Firmware::Uefi, "uefi");
}

/// The partition table of a qcow2 image, as sfdisk sees it after conversion to raw.
fn has_partitions(dir: &Path, qcow: &Path) -> bool {
    let raw = dir.join("probe.raw");
    sh(Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(qcow)
        .arg(&raw));
    let out = Command::new("sfdisk")
        .arg("--dump")
        .arg(&raw)
        .output()
        .expect("sfdisk");
    let _ = std::fs::remove_file(&raw);
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("start=")
}

#[test]
fn refuses_ambiguous_or_occupied_disks_before_writing() {
    let _one = QEMU.lock().unwrap_or_else(|e| e.into_inner());
    let iso = iso();
    let dir = tempfile::tempdir_in(repo().join("target")).expect("tmp");
    let a = blank_disk(dir.path(), "a.qcow2", 16);
    let b = blank_disk(dir.path(), "b.qcow2", 16);
    // Two disks match `vd*`; the answer media is never a candidate.
    let media = answer_media(
        dir.path(),
        &answer(r#"{ name = "vd*" }"#, true, "power-off", STATIC),
    );
    let m = Machine {
        dir: dir.path().to_path_buf(),
        firmware: Firmware::Bios,
        disks: vec![
            (a.clone(), "qcow2", "disk-a".into()),
            (b.clone(), "qcow2", "disk-b".into()),
            (media, "raw", "answers".into()),
        ],
        cdrom: Some(iso.clone()),
        mac: MAC,
        api_port: free_port(),
    };
    let mut run = m.start("two-disks");
    run.wait_exit(Duration::from_secs(600));
    let log = run.log();
    assert!(
        log.contains("FAILED: /disk/match: 2 disks match (vda, vdb)"),
        "{log}"
    );
    assert!(!has_partitions(dir.path(), &a) && !has_partitions(dir.path(), &b));

    // A disk that holds partitions, with wipe = false: refused, the table left as it was.
    let raw = dir.path().join("used.raw");
    std::fs::File::create(&raw)
        .and_then(|f| f.set_len(16 << 30))
        .expect("raw disk");
    let mut sf = Command::new("sfdisk")
        .arg("--quiet")
        .arg(&raw)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("sfdisk");
    use std::io::Write;
    sf.stdin
        .take()
        .expect("stdin")
        .write_all(b"label: gpt\nsize=100MiB, name=\"someone-elses\"\n")
        .expect("script");
    assert!(sf.wait().expect("sfdisk").success());
    let media = answer_media(
        dir.path(),
        &answer(r#"{ serial = "used-disk" }"#, false, "power-off", STATIC),
    );
    let m = Machine {
        disks: vec![
            (raw.clone(), "raw", "used-disk".into()),
            (media, "raw", "answers".into()),
        ],
        ..m
    };
    let mut run = m.start("occupied");
    run.wait_exit(Duration::from_secs(600));
    let log = run.log();
    assert!(
        log.contains("holds partitions (vda1); set wipe = true to erase it"),
        "{log}"
    );
    let dump = Command::new("sfdisk")
        .arg("--dump")
        .arg(&raw)
        .output()
        .expect("dump");
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.contains("someone-elses") && !dump.contains("ferrite-"),
        "{dump}"
    );
}
