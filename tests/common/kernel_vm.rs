//! Tests this machine cannot run as they are: re-run in the kernel test VM, or skipped with
//! the reason recorded where `scripts/test` prints it.

use super::*;

/// Records a skipped test with its reason where `scripts/test` prints it after the run, so a
/// green suite never hides what it did not prove.
pub fn skip(test: &str, reason: &str) {
    use std::io::Write as _;
    eprintln!("SKIPPED {test}: {reason}");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped-tests.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{test}: {reason}");
    }
}

/// Whether a test runs on this host. Where the kernel lacks the features named in `missing`,
/// the test (`module::name`) is re-run in the kernel VM instead, or recorded as skipped where
/// no VM can run; either way the caller returns.
pub fn runs_here(test: &str, missing: &[&str]) -> bool {
    if missing.is_empty() {
        return true;
    }
    let name = test.rsplit("::").next().unwrap_or(test);
    if !rerun_in_kernel_vm(name) {
        skip(
            test,
            &format!(
                "this kernel ({}) lacks {}, and no kernel VM is available",
                sh("uname -r").trim(),
                missing.join(", ")
            ),
        );
    }
    false
}

/// Where this machine's kernel lacks a feature a test needs, re-runs that test inside the
/// kernel test VM (`scripts/kernel-vm`: Debian's stock kernel under QEMU, sharing this host's
/// filesystem), so the feature is still proven against a real kernel. Returns true when the
/// test ran there and passed (a failure there fails the test here, with the VM's output);
/// false when no VM can run (not prepared, or already inside one): the caller then skips.
pub fn rerun_in_kernel_vm(test: &str) -> bool {
    use std::io::Write as _;
    if std::env::var_os("FERRITE_IN_KERNEL_VM").is_some() {
        return false;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kernel-vm/kernel-vm");
    let ok = Command::new(script)
        .arg("available")
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return false;
    }
    let exe = std::env::current_exe().expect("test binary path");
    eprintln!("{test}: this kernel lacks what the test needs; running it in the kernel VM");
    let out = Command::new(script)
        .arg("run")
        .arg(&exe)
        .args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .output()
        .expect("kernel-vm run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("---- kernel VM output ----\n{text}\n---- end of kernel VM output ----");
    assert!(
        out.status.success() && text.contains("test result: ok. 1 passed"),
        "{test} failed in the kernel VM (status {:?})",
        out.status
    );
    assert!(
        !text.contains(&format!("SKIPPED {test}")) && !text.contains("SKIPPED "),
        "{test} was skipped inside the kernel VM too"
    );
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("kernel-vm-tests.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let kver = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/target/kernel-vm/kernel-version"
        ))
        .unwrap_or_default();
        let _ = writeln!(f, "{test}: passed in the kernel VM ({})", kver.trim());
    }
    true
}

/// Where KVM is missing the tests skip with a reason instead of failing CI.
pub fn kvm_or_skip(test: &str) -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => true,
        Err(e) => {
            skip(test, &format!("/dev/kvm unusable here: {e}"));
            false
        }
    }
}
