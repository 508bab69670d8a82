//! Times a full kernel read (every link, plus addresses) the way the reconciler does it, with
//! the lean dump and with rtnetlink's full decoder, in the namespace given as the first argument
//! (a file such as /run/netns/NAME). Used for docs/BENCHMARKS.md.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let ns = std::env::args().nth(1).map(std::path::PathBuf::from);
    let (k, _events) = ferrite::network::netlink::Kernel::connect(ns.as_deref()).expect("connect");
    for round in 0..3 {
        let t = std::time::Instant::now();
        let lean = k.snapshot(false).await.expect("lean");
        let lean_t = t.elapsed();
        let t = std::time::Instant::now();
        let full = k.snapshot_rtnl(false).await.expect("rtnetlink");
        println!(
            "round {round}: {} links: lean dump {lean_t:?}, rtnetlink decoder {:?} ({} links)",
            lean.len(),
            t.elapsed(),
            full.len()
        );
    }
}
