//! Files Ferrite writes into a container's root filesystem before each start, the way
//! Proxmox configures its containers: `/etc/hostname`, a marked block in `/etc/hosts` naming
//! the host, and `/etc/resolv.conf` from the `dns` settings. A guest owner who manages one of
//! them keeps it by creating `/etc/.ferrite-ignore.NAME` (Proxmox's `.pve-ignore.NAME`).
//!
//! The writes happen on the host as root, into a tree the container's root owns: a path that
//! is a symlink is refused (it could point anywhere on the host), and what is written is
//! handed to the container's root.

use std::path::Path;

use crate::guest::GuestError;

const BEGIN: &str = "# --- BEGIN FERRITE ---";
const END: &str = "# --- END FERRITE ---";

/// One file to write: its name under /etc and its content (or, for `hosts`, the block).
pub(super) struct GuestFiles<'a> {
    pub rootfs: &'a Path,
    /// Host uid/gid of the container's root (`None` for a privileged container).
    pub owner: Option<u32>,
}

impl GuestFiles<'_> {
    /// Writes `hostname` and the hosts block naming it.
    pub fn hostname(&self, name: &str) -> Result<(), GuestError> {
        self.write("hostname", &format!("{name}\n"), "/hostname")?;
        let current = self.read("hosts");
        let short = name.split('.').next().unwrap_or(name);
        let line = if short == name {
            format!("127.0.1.1 {name}")
        } else {
            format!("127.0.1.1 {name} {short}")
        };
        let text = hosts_with_block(current.as_deref(), &line);
        self.write("hosts", &text, "/hostname")
    }

    /// Writes resolv.conf from the `dns` settings.
    pub fn resolv_conf(&self, servers: &[String], search: Option<&str>) -> Result<(), GuestError> {
        let mut text = String::from("# written by ferrite from the container's dns settings\n");
        if let Some(s) = search {
            text.push_str(&format!("search {s}\n"));
        }
        for a in servers {
            text.push_str(&format!("nameserver {a}\n"));
        }
        self.write("resolv.conf", &text, "/dns")
    }

    /// Root's password hash in /etc/shadow and SSH keys in /root/.ssh/authorized_keys, at
    /// create time.
    pub fn root_credentials(&self, hash: Option<&str>, keys: &[String]) -> Result<(), GuestError> {
        if let Some(h) = hash {
            let shadow = self.read("shadow").ok_or_else(|| {
                GuestError::invalid(
                    "/root_password_hash",
                    "the template has no readable /etc/shadow to set root's password in",
                )
            })?;
            let mut found = false;
            let lines: Vec<String> = shadow
                .lines()
                .map(|l| match l.split_once(':') {
                    Some(("root", rest)) => {
                        found = true;
                        let after = rest.split_once(':').map(|(_, a)| a).unwrap_or("");
                        format!("root:{h}:{after}")
                    }
                    _ => l.to_string(),
                })
                .collect();
            if !found {
                return Err(GuestError::invalid(
                    "/root_password_hash",
                    "the template's /etc/shadow has no root entry",
                ));
            }
            self.write("shadow", &(lines.join("\n") + "\n"), "/root_password_hash")?;
        }
        if keys.is_empty() {
            return Ok(());
        }
        let home = self.rootfs.join("root");
        let ssh = home.join(".ssh");
        let file = ssh.join("authorized_keys");
        if is_symlink(&home) || is_symlink(&ssh) || is_symlink(&file) {
            return Err(GuestError::invalid(
                "/ssh_keys",
                "the template's /root/.ssh is a symlink; keys not written",
            ));
        }
        let fail = |what: &Path, e: std::io::Error| {
            GuestError::failed("container", format!("writing {}", what.display()), e)
        };
        std::fs::create_dir_all(&ssh).map_err(|e| fail(&ssh, e))?;
        let text: String = keys.iter().map(|k| format!("{k}\n")).collect();
        std::fs::write(&file, text).map_err(|e| fail(&file, e))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| fail(&ssh, e))?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| fail(&file, e))?;
        self.hand_over(&ssh)?;
        self.hand_over(&file)
    }

    /// Gives `p` to the container's root (nothing to do for a privileged container).
    fn hand_over(&self, p: &Path) -> Result<(), GuestError> {
        let Some(id) = self.owner else {
            return Ok(());
        };
        nix::unistd::chown(
            p,
            Some(nix::unistd::Uid::from_raw(id)),
            Some(nix::unistd::Gid::from_raw(id)),
        )
        .map_err(|e| GuestError::failed("container", format!("chown {}", p.display()), e))
    }

    fn read(&self, name: &str) -> Option<String> {
        let f = self.rootfs.join("etc").join(name);
        if is_symlink(&f) {
            return None;
        }
        std::fs::read_to_string(f).ok()
    }

    fn write(&self, name: &str, text: &str, field: &str) -> Result<(), GuestError> {
        let etc = self.rootfs.join("etc");
        if etc.join(format!(".ferrite-ignore.{name}")).exists() {
            return Ok(());
        }
        let f = etc.join(name);
        if is_symlink(&etc) || is_symlink(&f) {
            return Err(GuestError::invalid(
                field,
                format!(
                    "the container's /etc/{name} is a symlink; not overwritten (create \
                     /etc/.ferrite-ignore.{name} inside to manage it yourself)"
                ),
            ));
        }
        let io = |e: std::io::Error| {
            GuestError::failed("container", format!("writing {}", f.display()), e)
        };
        std::fs::create_dir_all(&etc).map_err(io)?;
        // An existing file keeps its owner and mode (/etc/shadow stays root:shadow 0640).
        let existed = f.exists();
        std::fs::write(&f, text).map_err(io)?;
        if existed {
            return Ok(());
        }
        self.hand_over(&f)
    }
}

/// Whether `p` is a symlink (which the host-side writes refuse to follow).
fn is_symlink(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

/// `/etc/hosts` with Ferrite's block replaced (or added, with the localhost lines a new file
/// needs).
fn hosts_with_block(current: Option<&str>, line: &str) -> String {
    let block = format!("{BEGIN}\n{line}\n{END}\n");
    let Some(cur) = current else {
        return format!("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n{block}");
    };
    match (cur.find(BEGIN), cur.find(END)) {
        (Some(b), Some(e)) if e > b => {
            let after = cur[e + END.len()..].trim_start_matches('\n');
            format!("{}{block}{after}", &cur[..b])
        }
        _ => {
            let sep = if cur.is_empty() || cur.ends_with('\n') {
                ""
            } else {
                "\n"
            };
            format!("{cur}{sep}{block}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_block_is_replaced_not_repeated() {
        let first = hosts_with_block(Some("127.0.0.1 localhost\n"), "127.0.1.1 a");
        let second = hosts_with_block(Some(&first), "127.0.1.1 b.lab b");
        assert_eq!(
            second,
            "127.0.0.1 localhost\n# --- BEGIN FERRITE ---\n127.0.1.1 b.lab b\n# --- END FERRITE ---\n"
        );
        assert!(hosts_with_block(None, "127.0.1.1 x").starts_with("127.0.0.1 localhost\n"));
    }
}
