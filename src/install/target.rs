//! The installed system's own settings, written into the `/var` partition's overlay upper
//! directory: the root image stays the unmodified, shared squashfs, and everything that makes
//! this host this host (names, keys, passwords, the daemon's seed and certificate) lives where
//! an upgrade of the image leaves it alone.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::answer::{GuestStorage, InstallAnswer};

/// The name the management NIC is pinned to by MAC on the installed system: the live system's
/// kernel name (eth0) is not what udev's predictable naming gives it after reboot.
pub const MGMT_NIC: &str = "nic0";
/// The data dir inside the installed system.
pub const DATA_DIR: &str = "var/lib/ferrite";

/// A step of writing the target that failed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {cause}")]
pub struct TargetError {
    pub path: PathBuf,
    pub cause: String,
}

fn err(path: &Path, cause: impl ToString) -> TargetError {
    TargetError {
        path: path.to_path_buf(),
        cause: cause.to_string(),
    }
}

fn write(upper: &Path, rel: &str, data: &[u8], mode: u32) -> Result<PathBuf, TargetError> {
    let p = upper.join(rel);
    if let Some(dir) = p.parent() {
        fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    }
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(mode)
        .open(&p)
        .map_err(|e| err(&p, e))?;
    f.write_all(data).map_err(|e| err(&p, e))?;
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(|e| err(&p, e))?;
    Ok(p)
}

/// What `configure` produced that the installer reports.
#[derive(Debug, Clone)]
pub struct Configured {
    /// SHA-256 fingerprint of the API's TLS certificate, known before first boot.
    pub fingerprint: String,
}

/// Writes the target's settings. `lower` is the system image's root (to copy `/etc/shadow`
/// from and check the timezone against), `upper` the overlay's upper directory, `nic_mac` the
/// chosen management NIC's MAC.
pub fn configure(
    a: &InstallAnswer,
    lower: &Path,
    upper: &Path,
    nic_mac: &str,
) -> Result<Configured, TargetError> {
    let host = &a.system.hostname;
    let short = host.split('.').next().unwrap_or(host);
    write(
        upper,
        "etc/hostname",
        format!("{short}\n").as_bytes(),
        0o644,
    )?;
    let address = static_address(a)?;
    let ip = address.split('/').next().unwrap_or_default();
    let fq = if short == host {
        String::new()
    } else {
        format!("{host} ")
    };
    write(
        upper,
        "etc/hosts",
        format!(
            "127.0.0.1 localhost\n{ip} {fq}{short}\n::1 localhost ip6-localhost ip6-loopback\n"
        )
        .as_bytes(),
        0o644,
    )?;
    timezone(a, lower, upper)?;
    write(
        upper,
        "etc/default/keyboard",
        keyboard(&a.system.keyboard).as_bytes(),
        0o644,
    )?;
    shadow(a, lower, upper)?;
    if !a.system.root_ssh_keys.is_empty() {
        let mut keys = a.system.root_ssh_keys.join("\n");
        keys.push('\n');
        fs::create_dir_all(upper.join("root/.ssh")).map_err(|e| err(upper, e))?;
        fs::set_permissions(upper.join("root/.ssh"), fs::Permissions::from_mode(0o700))
            .map_err(|e| err(upper, e))?;
        write(upper, "root/.ssh/authorized_keys", keys.as_bytes(), 0o600)?;
    }
    let dns: String = a
        .network
        .dns
        .iter()
        .map(|d| format!("nameserver {d}\n"))
        .collect();
    write(upper, "etc/resolv.conf", dns.as_bytes(), 0o644)?;
    write(
        upper,
        &format!("etc/systemd/network/10-ferrite-{MGMT_NIC}.link"),
        format!("# Written by the Ferrite installer: the management NIC keeps one name.\n[Match]\nMACAddress={}\n\n[Link]\nName={MGMT_NIC}\n", nic_mac.to_lowercase()).as_bytes(),
        0o644,
    )?;
    // udev renames the NIC to nic0 during coldplug; the daemon's seed makes it a bridge port,
    // so the daemon waits for the renamed device rather than failing on a race.
    write(
        upper,
        "etc/systemd/system/ferrited.service.d/10-management-nic.conf",
        format!(
            "# Written by the Ferrite installer.\n[Unit]\nWants=sys-subsystem-net-devices-{MGMT_NIC}.device\nAfter=sys-subsystem-net-devices-{MGMT_NIC}.device\n"
        )
        .as_bytes(),
        0o644,
    )?;
    write(
        upper,
        "etc/default/ferrited",
        format!(
            "# Written by the Ferrite installer.\nFERRITED_ARGS=\"--listen {}\"\n",
            a.ferrite.listen
        )
        .as_bytes(),
        0o644,
    )?;
    let data = upper.join(DATA_DIR);
    fs::create_dir_all(&data).map_err(|e| err(&data, e))?;
    fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).map_err(|e| err(&data, e))?;
    let fingerprint = tls(a, &data)?;
    let seed = serde_json::to_vec_pretty(&seed(a)).map_err(|e| err(&data, e))?;
    write(&data, "bootstrap/seed.json", &seed, 0o600)?;
    write(
        upper,
        "etc/issue",
        format!(
            "Ferrite \\n (\\l)\n\nAPI: https://{ip}:{port}/api/v1\nTLS SHA-256 fingerprint:\n  {fingerprint}\n\n",
            port = a.ferrite.listen.rsplit(':').next().unwrap_or("8006")
        )
        .as_bytes(),
        0o644,
    )?;
    Ok(Configured { fingerprint })
}

/// The host's address: the answer's, or the DHCP lease the installer has put in its place.
fn static_address(a: &InstallAnswer) -> Result<&str, TargetError> {
    a.network.address.as_deref().ok_or_else(|| {
        err(
            Path::new("/network/address"),
            "no address: the DHCP lease was not resolved before writing the target",
        )
    })
}

fn timezone(a: &InstallAnswer, lower: &Path, upper: &Path) -> Result<(), TargetError> {
    let tz = &a.system.timezone;
    let zone = lower.join("usr/share/zoneinfo").join(tz);
    if !zone.is_file() {
        return Err(err(
            Path::new("/system/timezone"),
            format!("'{tz}' is not a timezone this image knows"),
        ));
    }
    let link = upper.join("etc/localtime");
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(Path::new("/usr/share/zoneinfo").join(tz), &link)
        .map_err(|e| err(&link, e))?;
    write(upper, "etc/timezone", format!("{tz}\n").as_bytes(), 0o644)?;
    Ok(())
}

fn keyboard(layout: &str) -> String {
    let (l, v) = layout.split_once('-').unwrap_or((layout, ""));
    format!("XKBMODEL=\"pc105\"\nXKBLAYOUT=\"{l}\"\nXKBVARIANT=\"{v}\"\nXKBOPTIONS=\"\"\nBACKSPACE=\"guess\"\n")
}

/// The image's `/etc/shadow` with root's password field replaced (`*`, locked, when the
/// answer gives no hash: SSH keys only).
fn shadow(a: &InstallAnswer, lower: &Path, upper: &Path) -> Result<(), TargetError> {
    let src = lower.join("etc/shadow");
    let text = fs::read_to_string(&src).map_err(|e| err(&src, e))?;
    let hash = a.system.root_password_hash.as_deref().unwrap_or("*");
    let out: String = text
        .lines()
        .map(|l| match l.split_once(':') {
            Some(("root", rest)) => {
                let tail = rest.split_once(':').map(|(_, t)| t).unwrap_or("");
                format!("root:{hash}:{tail}\n")
            }
            _ => format!("{l}\n"),
        })
        .collect();
    let p = write(upper, "etc/shadow", out.as_bytes(), 0o640)?;
    // Group `shadow` as in the image, so tools reading it keep working.
    if let Ok(meta) = fs::metadata(&src) {
        use std::os::unix::fs::MetadataExt;
        let _ = nix::unistd::chown(&p, Some(0.into()), Some(meta.gid().into()));
    }
    Ok(())
}

/// The certificate from the answer, or a self-signed one made now for the host's names and
/// address; returns its fingerprint.
fn tls(a: &InstallAnswer, data: &Path) -> Result<String, TargetError> {
    let crt = data.join("tls/ferrited.crt");
    let key = data.join("tls/ferrited.key");
    match (&a.ferrite.tls_cert_pem, &a.ferrite.tls_key_pem) {
        (Some(c), Some(k)) => {
            write(data, "tls/ferrited.crt", c.as_bytes(), 0o644)?;
            write(data, "tls/ferrited.key", k.as_bytes(), 0o600)?;
        }
        _ => {
            let host = a.system.hostname.clone();
            let short = host.split('.').next().unwrap_or(&host).to_string();
            let ip = static_address(a)?
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string();
            let mut names = vec![host, short, ip, "localhost".into(), "127.0.0.1".into()];
            names.dedup();
            let ck = rcgen::generate_simple_self_signed(names).map_err(|e| err(&crt, e))?;
            write(
                data,
                "tls/ferrited.key",
                ck.key_pair.serialize_pem().as_bytes(),
                0o600,
            )?;
            write(data, "tls/ferrited.crt", ck.cert.pem().as_bytes(), 0o644)?;
        }
    }
    let (_, fp) = crate::tls::server_config(&crt, &key).map_err(|e| err(&crt, e))?;
    Ok(fp)
}

/// The daemon's first-start seed (`BootstrapSeed`): the administrator's hash, the management
/// bridge with the NIC as its port and the host's address, and the thin pool.
pub fn seed(a: &InstallAnswer) -> Value {
    let mut bridge = json!({
        "name": a.network.bridge,
        "ports": {MGMT_NIC: {}},
        "addresses": [a.network.address.as_deref().unwrap_or_default()],
        "comment": "management (from the installer)"
    });
    if let Some(gw) = &a.network.gateway {
        bridge["gateway"] = json!(gw);
    }
    let pools: Vec<Value> = if a.disk.guest_storage == GuestStorage::Lvmthin {
        vec![
            json!({"name": "local-thin", "type": "lvmthin", "vg": "ferrite", "thinpool": "data",
                     "comment": "guest disks (from the installer)"}),
        ]
    } else {
        vec![]
    };
    json!({
        "admin_password_hash": a.ferrite.admin_password_hash,
        "network": {"bridges": [bridge]},
        "pools": pools,
    })
}
