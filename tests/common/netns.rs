//! Network namespaces the tests create, shell helpers, and probes of what this kernel can do.

use super::*;

/// A network namespace the test creates (and deletes on drop), named uniquely per process.
pub struct NetNs {
    pub name: String,
}

static NS_COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl NetNs {
    pub fn new(tag: &str) -> NetNs {
        let n = NS_COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("fer-{tag}-{}-{n}", std::process::id());
        sh(&format!("ip netns add {name}"));
        sh(&format!("ip -n {name} link set lo up"));
        NetNs { name }
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Runs `ip -n NS ARGS`, panicking on failure.
    pub fn ip(&self, args: &str) -> String {
        sh(&format!("ip -n {} {args}", self.name))
    }

    /// Runs a command inside the namespace; returns success.
    pub fn exec_ok(&self, cmd: &str) -> bool {
        Command::new("sh")
            .arg("-c")
            .arg(format!("ip netns exec {} {cmd}", self.name))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// `ip -j -d link show` as JSON, keyed by name.
    pub fn links(&self) -> std::collections::BTreeMap<String, Value> {
        let out = self.ip("-j -d link show");
        let v: Value = serde_json::from_str(&out).expect("ip -j output");
        v.as_array()
            .expect("array")
            .iter()
            .map(|l| (l["ifname"].as_str().expect("name").to_string(), l.clone()))
            .collect()
    }

    /// Connects a new veth: `local` end in this namespace, `remote` end in `other`.
    pub fn veth_to(&self, local: &str, other: &NetNs, remote: &str) {
        sh(&format!(
            "ip -n {} link add {local} type veth peer name {remote} netns {}",
            self.name, other.name
        ));
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs a shell command, panicking with its output on failure.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The kernel options VLAN-aware bridges, 802.1Q interfaces and bonds need that this kernel
/// lacks (each probed in a throwaway namespace); empty when all are there.
pub fn missing_vlan_features() -> Vec<&'static str> {
    let needs = [
        ("CONFIG_BRIDGE_VLAN_FILTERING", "ip -n NS link add name pbr type bridge vlan_filtering 1"),
        ("CONFIG_VLAN_8021Q", "ip -n NS link add name pv0 type veth peer name pv1 && ip -n NS link add link pv0 name pv0.10 type vlan id 10"),
        ("CONFIG_BONDING", "ip -n NS link add name pb0 type bond mode active-backup"),
    ];
    needs
        .iter()
        .filter(|(_, probe)| !kernel_supports(probe))
        .map(|(n, _)| *n)
        .collect()
}

/// Whether this kernel can do something (probed in a throwaway namespace).
pub fn kernel_supports(setup: &str) -> bool {
    let ns = NetNs::new("probe");
    let cmd = setup.replace("NS", &ns.name);
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
