//! `network.dhcp = true`: one DHCP exchange at install time (busybox `udhcpc` from the image),
//! whose lease becomes the host's static settings. A hypervisor's management address must not
//! move under its guests and its API clients, and `ferrited`'s bridges take static addresses.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// What a DHCP server offered.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// `address/prefix`.
    pub address: String,
    pub gateway: Option<String>,
    pub dns: Vec<String>,
}

/// Run by udhcpc on each event; records the lease's variables for the installer.
const SCRIPT: &str = "#!/bin/sh\n\
case \"$1\" in bound|renew) ;; *) exit 0 ;; esac\n\
{ echo \"ip=$ip\"; echo \"subnet=$subnet\"; echo \"router=$router\"; echo \"dns=$dns\"; } > \"$FERRITE_LEASE\"\n";

/// Asks for a lease on `ifname`, a few tries over about 20 s.
pub fn lease(ifname: &str, work: &Path) -> Result<Lease, String> {
    std::fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;
    let script = work.join("udhcpc.sh");
    let out = work.join("lease");
    let _ = std::fs::remove_file(&out);
    std::fs::write(&script, SCRIPT).map_err(|e| format!("{}: {e}", script.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", script.display()))?;
    let up = Command::new("ip")
        .args(["link", "set", ifname, "up"])
        .status()
        .map_err(|e| format!("ip: {e}"))?;
    if !up.success() {
        return Err(format!("could not bring {ifname} up"));
    }
    let st = Command::new("busybox")
        .args([
            "udhcpc", "-i", ifname, "-f", "-q", "-n", "-t", "6", "-T", "3", "-s",
        ])
        .arg(&script)
        .env("FERRITE_LEASE", &out)
        .output()
        .map_err(|e| format!("busybox udhcpc: {e}"))?;
    let text = std::fs::read_to_string(&out).map_err(|_| {
        format!(
            "no DHCP lease on {ifname} ({}); set network.address instead",
            String::from_utf8_lossy(&st.stderr).trim()
        )
    })?;
    parse(&text)
}

/// Reads the script's `key=value` lines.
pub fn parse(text: &str) -> Result<Lease, String> {
    let kv: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let ip = kv
        .get("ip")
        .filter(|v| !v.is_empty())
        .ok_or("the lease has no address")?;
    let mask: std::net::Ipv4Addr = kv
        .get("subnet")
        .and_then(|m| m.parse().ok())
        .ok_or("the lease has no subnet mask")?;
    let prefix = u32::from(mask).count_ones();
    let words = |k: &str| -> Vec<String> {
        kv.get(k)
            .map(|v| v.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    };
    Ok(Lease {
        address: format!("{ip}/{prefix}"),
        gateway: words("router").into_iter().next(),
        dns: words("dns"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slirp_lease_reads_as_static_settings() {
        let l =
            parse("ip=10.0.2.15\nsubnet=255.255.255.0\nrouter=10.0.2.2\ndns=10.0.2.3 10.0.2.4\n")
                .expect("lease");
        assert_eq!(
            l,
            Lease {
                address: "10.0.2.15/24".into(),
                gateway: Some("10.0.2.2".into()),
                dns: vec!["10.0.2.3".into(), "10.0.2.4".into()],
            }
        );
        let bare = parse("ip=192.0.2.7\nsubnet=255.255.254.0\nrouter=\ndns=\n").expect("lease");
        assert_eq!(
            (bare.address.as_str(), bare.gateway),
            ("192.0.2.7/23", None)
        );
        assert!(parse("ip=\nsubnet=255.0.0.0\n").is_err());
    }

    /// The script udhcpc runs writes what `parse` reads (run with a shell and the variables
    /// udhcpc sets).
    #[test]
    fn the_event_script_records_the_lease() {
        let dir = tempfile::tempdir().expect("tmp");
        let out = dir.path().join("lease");
        let st = Command::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("udhcpc.sh")
            .arg("bound")
            .env("FERRITE_LEASE", &out)
            .env("ip", "10.0.2.15")
            .env("subnet", "255.255.255.0")
            .env("router", "10.0.2.2")
            .env("dns", "10.0.2.3")
            .status()
            .expect("sh");
        assert!(st.success());
        let l = parse(&std::fs::read_to_string(&out).expect("lease file")).expect("parse");
        assert_eq!(l.address, "10.0.2.15/24");
    }
}
