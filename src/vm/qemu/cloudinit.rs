//! The NoCloud seed for a qemu VM with `cloud_init` settings: `meta-data`, `user-data` (a
//! `#cloud-config` generated from the settings, plus the user's snippet as a second MIME
//! part) and `network-config` (version 2, NICs matched by MAC address), on a small FAT
//! filesystem labelled `CIDATA` that QEMU attaches read-only. FAT, written with the `fatfs`
//! crate, needs no external tool on the host (an ISO would need xorriso). Rebuilt at every
//! start, so changed settings apply at the next start; the instance id carries a hash of the
//! seed, so cloud-init sees a new instance and runs its per-instance modules again.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::guest::spec::VmCloudInit;

/// What goes on the seed filesystem.
#[derive(Debug, Clone, PartialEq)]
pub struct Seed {
    pub meta_data: String,
    pub user_data: Vec<u8>,
    pub network_config: Option<String>,
}

/// The generated `#cloud-config` (JSON is YAML).
fn cloud_config(ci: &VmCloudInit, hostname: &str) -> Value {
    let mut c = Map::new();
    c.insert("hostname".into(), json!(hostname));
    c.insert("preserve_hostname".into(), json!(false));
    c.insert("manage_etc_hosts".into(), json!(true));
    match &ci.user {
        Some(user) => {
            let mut u = json!({"name": user, "shell": "/bin/bash",
                               "sudo": "ALL=(ALL) NOPASSWD:ALL",
                               "lock_passwd": ci.password_hash.is_none()});
            if let Some(h) = &ci.password_hash {
                u["hashed_passwd"] = json!(h);
            }
            if !ci.ssh_keys.is_empty() {
                u["ssh_authorized_keys"] = json!(ci.ssh_keys);
            }
            c.insert("users".into(), json!(["default", u]));
        }
        None if !ci.ssh_keys.is_empty() => {
            // The image's default user gets the keys.
            c.insert("ssh_authorized_keys".into(), json!(ci.ssh_keys));
        }
        None => {}
    }
    c.insert("ssh_pwauth".into(), json!(ci.password_hash.is_some()));
    Value::Object(c)
}

/// Network config version 2 for the NICs named in `cloud_init.network`.
fn network_config(ci: &VmCloudInit, macs: &[(String, String)]) -> Option<String> {
    if ci.network.is_empty() {
        return None;
    }
    let mut eth = Map::new();
    for (slot, n) in &ci.network {
        let Some((_, mac)) = macs.iter().find(|(s, _)| s == slot) else {
            continue;
        };
        let mut e = json!({"match": {"macaddress": mac}});
        let mut addrs = Vec::new();
        let mut routes = Vec::new();
        match n.ip.as_deref() {
            Some("dhcp") => e["dhcp4"] = json!(true),
            Some(ip) => {
                addrs.push(ip.to_string());
                if let Some(gw) = n.gw {
                    routes.push(json!({"to": "0.0.0.0/0", "via": gw.to_string()}));
                }
            }
            None => {}
        }
        match n.ip6.as_deref() {
            Some("dhcp") => e["dhcp6"] = json!(true),
            Some("auto") => e["accept-ra"] = json!(true),
            Some(ip) => {
                addrs.push(ip.to_string());
                if let Some(gw) = n.gw6 {
                    routes.push(json!({"to": "::/0", "via": gw.to_string()}));
                }
            }
            None => {}
        }
        if !addrs.is_empty() {
            e["addresses"] = json!(addrs);
        }
        if !routes.is_empty() {
            e["routes"] = json!(routes);
        }
        if !ci.nameservers.is_empty() || !ci.search.is_empty() {
            e["nameservers"] = json!({"addresses": ci.nameservers, "search": ci.search});
        }
        eth.insert(slot.clone(), e);
    }
    Some(json!({"version": 2, "ethernets": eth}).to_string())
}

/// The MIME content type cloud-init gives a user-data part, from its first line.
fn part_type(data: &[u8]) -> &'static str {
    if data.starts_with(b"#cloud-config") {
        "text/cloud-config"
    } else if data.starts_with(b"#!") {
        "text/x-shellscript"
    } else if data.starts_with(b"#cloud-boothook") {
        "text/cloud-boothook"
    } else {
        "text/plain"
    }
}

/// The seed for VM `id` named `name`; `macs` pairs NIC slots with their MACs; `extra` is
/// the content of the `user_data` snippet.
pub fn seed(
    id: &str,
    name: &str,
    ci: &VmCloudInit,
    macs: &[(String, String)],
    extra: Option<&[u8]>,
) -> Seed {
    let hostname = ci.hostname.clone().unwrap_or_else(|| name.to_string());
    let generated = format!("#cloud-config\n{}\n", cloud_config(ci, &hostname));
    let user_data = match extra {
        None => generated.into_bytes(),
        Some(extra) => {
            let boundary = "==ferrite-cloud-init==";
            let mut u = format!(
                "Content-Type: multipart/mixed; boundary=\"{boundary}\"\nMIME-Version: 1.0\n\n\
                 --{boundary}\nContent-Type: text/cloud-config; charset=\"utf-8\"\n\
                 Content-Disposition: attachment; filename=\"ferrite.cfg\"\n\n{generated}\n\
                 --{boundary}\nContent-Type: {}; charset=\"utf-8\"\n\
                 Content-Disposition: attachment; filename=\"user-data\"\n\n",
                part_type(extra)
            )
            .into_bytes();
            u.extend_from_slice(extra);
            u.extend(format!("\n--{boundary}--\n").into_bytes());
            u
        }
    };
    let network_config = network_config(ci, macs);
    let mut h = Sha256::new();
    h.update(&user_data);
    h.update(network_config.as_deref().unwrap_or_default());
    h.update(&hostname);
    let digest = hex::encode(h.finalize());
    Seed {
        meta_data: format!(
            "instance-id: iid-ferrite-{id}-{}\nlocal-hostname: {hostname}\n",
            &digest[..12]
        ),
        user_data,
        network_config,
    }
}

/// Writes `seed` as a FAT filesystem labelled CIDATA at `path` (by a temporary file renamed
/// into place).
pub fn write_image(path: &Path, seed: &Seed) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let payload = seed.meta_data.len()
        + seed.user_data.len()
        + seed.network_config.as_ref().map_or(0, |n| n.len());
    // FAT12's overhead is small; leave room for cluster rounding.
    let size = (2 << 20) + 2 * payload as u64;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    f.set_len(size)?;
    fatfs::format_volume(
        &mut f,
        fatfs::FormatVolumeOptions::new().volume_label(*b"CIDATA     "),
    )?;
    f.seek(SeekFrom::Start(0))?;
    {
        let fs = fatfs::FileSystem::new(&mut f, fatfs::FsOptions::new())?;
        {
            let root = fs.root_dir();
            let put = |name: &str, data: &[u8]| -> std::io::Result<()> {
                let mut file = root.create_file(name)?;
                file.truncate()?;
                file.write_all(data)
            };
            put("meta-data", seed.meta_data.as_bytes())?;
            put("user-data", &seed.user_data)?;
            if let Some(n) = &seed.network_config {
                put("network-config", n.as_bytes())?;
            }
        }
        fs.unmount()?;
    }
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::spec::VmCloudInitNic;

    fn settings() -> VmCloudInit {
        let mut ci = VmCloudInit {
            user: Some("ops".into()),
            password_hash: Some("$6$salt$hash".into()),
            ssh_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB ops@x".into()],
            nameservers: vec!["10.0.0.53".into()],
            ..Default::default()
        };
        ci.network.insert(
            "net0".into(),
            VmCloudInitNic {
                ip: Some("10.0.0.5/24".into()),
                gw: Some("10.0.0.1".parse().expect("ip")),
                ..Default::default()
            },
        );
        ci
    }

    #[test]
    fn the_seed_says_what_the_settings_say() {
        let macs = vec![("net0".to_string(), "bc:24:11:00:00:05".to_string())];
        let s = seed("105", "web", &settings(), &macs, None);
        assert!(
            s.meta_data.starts_with("instance-id: iid-ferrite-105-"),
            "{}",
            s.meta_data
        );
        assert!(s.meta_data.contains("local-hostname: web\n"));
        let ud = String::from_utf8(s.user_data.clone()).expect("utf8");
        let cfg: Value =
            serde_json::from_str(ud.trim_start_matches("#cloud-config\n")).expect("json");
        assert_eq!(cfg["users"][1]["name"], "ops");
        assert_eq!(cfg["users"][1]["lock_passwd"], false);
        assert_eq!(cfg["ssh_pwauth"], true);
        let net: Value =
            serde_json::from_str(s.network_config.as_deref().expect("net")).expect("json");
        assert_eq!(
            net["ethernets"]["net0"]["match"]["macaddress"],
            "bc:24:11:00:00:05"
        );
        assert_eq!(net["ethernets"]["net0"]["routes"][0]["via"], "10.0.0.1");
        // Other settings, another instance id; the same settings, the same one.
        let mut other = settings();
        other.hostname = Some("db".into());
        assert_ne!(
            seed("105", "web", &other, &macs, None).meta_data,
            s.meta_data
        );
        assert_eq!(seed("105", "web", &settings(), &macs, None), s);
        // A snippet rides along as a second MIME part of its own type.
        let m = seed(
            "105",
            "web",
            &settings(),
            &macs,
            Some(b"#!/bin/sh\necho hi\n"),
        );
        let text = String::from_utf8(m.user_data).expect("utf8");
        assert!(text.contains("Content-Type: text/x-shellscript"), "{text}");
        assert!(text.contains("#cloud-config\n{"), "{text}");
    }

    #[test]
    fn the_image_is_a_fat_filesystem_labelled_cidata() {
        let dir = tempfile::tempdir().expect("tmp");
        let img = dir.path().join("seed.img");
        let s = seed("7", "x", &settings(), &[], None);
        write_image(&img, &s).expect("write");
        let f = std::fs::File::open(&img).expect("open");
        let fs = fatfs::FileSystem::new(f, fatfs::FsOptions::new()).expect("fat");
        assert_eq!(fs.volume_label().trim_end(), "CIDATA");
        let mut md = String::new();
        use std::io::Read;
        fs.root_dir()
            .open_file("meta-data")
            .expect("meta-data")
            .read_to_string(&mut md)
            .expect("read");
        assert_eq!(md, s.meta_data);
        // What the guest's blkid (cloud-init's lookup) sees.
        let out = std::process::Command::new("blkid")
            .arg(&img)
            .output()
            .expect("blkid (util-linux)");
        let o = String::from_utf8_lossy(&out.stdout);
        assert!(
            o.contains("LABEL=\"CIDATA\"") && o.contains("TYPE=\"vfat\""),
            "{o}"
        );
    }
}
