//! A real operating system under the QEMU engine: the Debian 12 image `image/guest/build`
//! makes (cached between runs), uploaded as a qcow2 template and linked-cloned, booted from
//! its disk under OVMF on virtio-scsi with TCG. Cloud-init
//! from Ferrite's NoCloud seed sets the hostname, a user with an SSH key and a static address
//! on the NIC (matched by MAC); the guest agent reports that address in `status.agent`; a
//! peer namespace on the same bridge pings it; `shutdown` goes through the agent and the VM
//! stops as a clean poweroff.

use super::*;

/// The image, built (or found in the cache) by `image/guest/build`.
fn guest_image() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = root.join("target/image/guest");
    let o = std::process::Command::new(root.join("image/guest/build"))
        .arg(&out)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("image/guest/build");
    assert!(o.status.success(), "image/guest/build failed");
    let path = String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .expect("the image's path")
        .trim()
        .to_string();
    PathBuf::from(path)
}

/// Waits for `pred` on the VM's status, printing the serial log's tail when it times out.
fn wait_status(c: &Client, id: i64, secs: u64, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let t0 = Instant::now();
    loop {
        let st = status(c, id);
        if pred(&st) {
            return st;
        }
        if t0.elapsed() > Duration::from_secs(secs) {
            let log = serial(c, id);
            let tail: String = log
                .chars()
                .rev()
                .take(3000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            panic!("vm {id}: no {what} after {secs} s; status {st}; serial tail:\n{tail}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The guests booted: (last address byte, firmware, disk bus).
const GUESTS: &[(u8, &str, &str)] = &[(3, "uefi", "scsi")];

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFerriteTestKeyFerriteTestKey00000 ops@ferrite";

#[test]
fn debian_boots_from_its_disk_with_cloud_init_and_the_agent() {
    let image = guest_image();
    let ns = NetNs::new("qos");
    let peer = NetNs::new("qospeer");
    let d = Daemon::start_in(&ns);
    let c = d.root();
    let _reap = Reap(c.clone());
    // A cloud image is qcow2: the upload says so, and the daemon checks it.
    common::upload_image(&c, &image, "debian-12.qcow2", "qcow2");
    let r = c.post(
        "/storage/pools/local/volumes/debian-12.qcow2/template",
        json!({}),
    );
    assert!(r.status < 300, "{}", r.text);
    ns.veth_to("peerport", &peer, "eth0");
    let r = c.post(
        "/network/bridges",
        json!({"name": "vmbr0", "ports": {"peerport": {}}}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    peer.ip("addr add 10.78.0.1/24 dev eth0");
    peer.ip("link set eth0 up");
    let mut vms = Vec::new();
    // One guest keeps the suite lean (each boot takes about 80 s under TCG here): UEFI from a
    // virtio-scsi disk. SeaBIOS from a disk is shown with the GRUB image in main.rs, and
    // `image/guest/boot-check` boots this image under every firmware and bus by hand.
    for &(n, firmware, bus) in GUESTS {
        let disk = format!("deb-{firmware}.qcow2");
        let r = c.post(
            "/storage/pools/local/volumes/debian-12.qcow2/clone",
            json!({"name": disk, "linked": true}),
        );
        assert!(r.status < 300, "{}", r.text);
        let id = create(
            &c,
            json!({"name": format!("deb-{firmware}"), "memory": 512, "accel": "tcg",
                   "firmware": firmware, "agent": true,
                   "disks": {"disk0": {"volume": format!("local:{disk}"), "bus": bus}},
                   "net": {"net0": {"bridge": "vmbr0"}},
                   "cloud_init": {"hostname": format!("guest-{firmware}"), "user": "ops",
                                  "ssh_keys": [KEY],
                                  "network": {"net0": {"ip": format!("10.78.0.{n}/24"), "gw": "10.78.0.1"}}}}),
        );
        post_ok(&c, &format!("/vms/{id}/start"), json!({}));
        vms.push((id, firmware, n));
    }
    for &(id, firmware, n) in &vms {
        // Cloud-init set the hostname: the login prompt says it.
        wait_serial(&c, id, &format!("guest-{firmware} login:"));
        // The agent answers with the address cloud-init configured.
        let addr = format!("10.78.0.{n}/24");
        let st = wait_status(&c, id, 240, "agent address", |st| {
            st["agent"].to_string().contains(&addr)
        });
        assert!(st["agent"]["interfaces"].is_array(), "{st}");
        assert!(
            peer.exec_ok(&format!("ping -c 1 -W 5 10.78.0.{n}")),
            "vm {id} ({firmware}) does not answer a ping from the bridge"
        );
        let log = serial(&c, id);
        assert!(log.contains("ops") || log.contains("cloud-init"), "{log}");
    }
    for &(id, firmware, _) in &vms {
        // The agent powers the guest off cleanly; the VM stops on its own before the timeout.
        let st =
            post_ok(&c, &format!("/vms/{id}/shutdown"), json!({"timeout": 240}))["status"].clone();
        assert_eq!(st["state"], "stopped", "{firmware}: {st}");
        assert_eq!(st["last_exit"]["reason"], "poweroff", "{firmware}: {st}");
    }
}
