//! What request validation costs: the first compile of a type's validator (time and RSS
//! growth) and the validation of the networking benchmark's 1,000-VLAN batch.
//!
//! `cargo run --release --example schema_compile_cost`

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let r = ferrite::schema::Registry::load().expect("registry");
    let start = rss_kib();
    let n = 1000;
    let batch = serde_json::json!({
        "bridges": [{"name": "vbr0", "vlan_aware": true,
                     "ports": {"p0": {"vlans": [{"from": 2, "to": n + 1}]}}}],
        "vlans": (2..n + 2)
            .map(|i| serde_json::json!({"parent": "u0", "vlan_id": i}))
            .collect::<Vec<_>>(),
    });
    for round in ["first (compiles)", "second", "third"] {
        let t = std::time::Instant::now();
        let errors = r.validate("NetworkBatch", &batch, "body");
        println!(
            "NetworkBatch of {n} VLANs, {round}: {:?}, {} errors, RSS +{} KiB",
            t.elapsed(),
            errors.len(),
            rss_kib() - start
        );
    }
    let t = std::time::Instant::now();
    r.compile_all().expect("every type compiles");
    println!(
        "every other type compiled: {:?}, RSS +{} KiB",
        t.elapsed(),
        rss_kib() - start
    );
}
