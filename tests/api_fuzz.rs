//! Property-based fuzz of every operation in the OpenAPI document (schemathesis, driven by
//! `tests/fuzz/run.py`) against a real daemon whose network engine works in a namespace of
//! the test's own. The contract: no 5xx except a 507 for a pool that cannot hold the request,
//! every status documented for its operation, every body matching its schema. A fixed seed
//! and a bounded number of examples per operation keep the run short and repeatable
//! (`FERRITE_FUZZ_SEED` and `FERRITE_FUZZ_EXAMPLES` override them for a longer hunt).
//!
//! Schemathesis lives in `target/fuzz-venv` (`need_schemathesis` in scripts/lib/prereqs.sh,
//! which `scripts/test` runs; this test runs it too when the venv is missing).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{busybox_template, Daemon, NetNs};

/// The venv's Python, installed through the same function `scripts/test` uses.
fn fuzz_python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let py = root.join("target/fuzz-venv/bin/python");
    let st = root.join("target/fuzz-venv/bin/st");
    if !st.exists() {
        let out = Command::new("bash")
            .arg("-c")
            .arg(". scripts/lib/prereqs.sh && need_schemathesis")
            .current_dir(root)
            .output()
            .expect("bash");
        assert!(
            out.status.success() && st.exists(),
            "installing schemathesis failed (scripts/lib/prereqs.sh need_schemathesis): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    py
}

#[test]
fn every_operation_keeps_the_contract_under_fuzzing() {
    let py = fuzz_python();
    // The network engine works in a namespace of the test's own, never on the host's links;
    // p1 is a link there for bridges and VLANs to use.
    let ns = NetNs::new("fuzz");
    ns.ip("link add p1 type veth peer name p1peer");
    let d = Daemon::start_in(&ns);
    let token = d.root().token.expect("root ticket");
    let scratch = tempfile::tempdir().expect("tempdir");
    let tpl = busybox_template(scratch.path());
    let work =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("api-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let t0 = std::time::Instant::now();
    let out = Command::new(&py)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz/run.py"))
        .args(["--base", &d.endpoint, "--token", &token])
        .arg("--workdir")
        .arg(&work)
        .arg("--template")
        .arg(&tpl)
        .output()
        .expect("running tests/fuzz/run.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let took = t0.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "the API fuzz found contract violations after {took:.0} s (status {:?}; schemathesis \
         output and findings kept in {}):\n{text}",
        out.status.code(),
        work.display()
    );
    eprintln!("{text}\napi fuzz took {took:.0} s");
    let _ = std::fs::remove_dir_all(&work);
}
