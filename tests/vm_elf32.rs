//! 32-bit ELF kernels with a PVH note, which QEMU boots: `ferrite-vmm` boots them standalone
//! and through the API, and a 32-bit image without the note is refused with the reason, by the
//! standalone binary and at `POST /vms` alike (it has no other entry the VMM can take).

mod common;

use std::process::Command;
use std::time::Duration;

use common::Daemon;
use serde_json::json;

fn vmm(kernel: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ferrite-vmm"))
        .arg("--kernel")
        .arg(kernel)
        .args(["--memory", "32", "--cmdline", "test=hello"])
        .output()
        .expect("ferrite-vmm")
}

#[test]
fn elf32_pvh_images_boot_and_images_without_the_note_are_refused() {
    let g = common::guests();
    // Refusals need no KVM: they happen before the VM exists.
    let out = vmm(&g.join("guest32-nopvh.elf"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no PVH entry note"), "{err}");
    assert!(!err.contains("Invalid program header size"), "{err}");

    let d = Daemon::start();
    let c = d.root();
    for f in ["guest32.elf", "guest32-nopvh.elf"] {
        common::upload(&c, &g.join(f), f, "snippets");
    }
    let r = c.post(
        "/vms",
        json!({"name": "nopvh", "kernel": "local:guest32-nopvh.elf"}),
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.pointers(), vec!["/kernel"]);
    assert!(r.text.contains("no PVH entry note"), "{}", r.text);
    assert_eq!(c.get("/vms").body["items"], json!([]));

    let r = c.post(
        "/vms",
        json!({"name": "pvh32", "kernel": "local:guest32.elf", "memory": 32, "cmdline": "test=hello"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].clone();
    if !common::kvm_or_skip("vm_elf32::elf32_pvh_images_boot (booting)") {
        return;
    }
    let out = vmm(&g.join("guest32.elf"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Hello from a Ferrite micro-guest (PVH entry)"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = c.post(&format!("/vms/{id}/start"), json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    let t0 = std::time::Instant::now();
    loop {
        let s = c.get(&format!("/vms/{id}/serial")).text;
        if s.contains("Hello from a Ferrite micro-guest (PVH entry)") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no greeting: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = c.post(&format!("/vms/{id}/stop"), json!({}));
    let r = c.delete(&format!("/vms/{id}?force=true"));
    assert_eq!(r.status, 204, "{}", r.text);
}
