//! Building a template with mmdebstrap, cached by the hash of the build's inputs.
//!
//! The cache key is the SHA-256 of everything that shapes the archive: mmdebstrap's whole
//! argument list (suite, packages, sources, the hooks' text) except the output path, and
//! mmdebstrap's version. An apt proxy does not change what is built and is not part of it.
//! Archives are written beside their final name and renamed once complete, so an interrupted
//! build never leaves a cache entry; older builds of the same template are dropped when a new
//! one lands.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::recipes::architecture;
use super::{Recipe, TemplateError, Templates};

/// What a build request may set besides the recipe.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    pub mirror: Option<String>,
    pub proxy: Option<String>,
    pub refresh: bool,
}

/// A built (or cached) template archive and its manifest (`TemplateManifest`).
#[derive(Debug, Clone)]
pub struct Built {
    pub archive: PathBuf,
    pub manifest: Value,
    pub from_cache: bool,
}

/// Marks the output path in the argument list that the cache key hashes.
const OUTPUT: &str = "@OUTPUT@";

/// One build at a time: two cores, and two builds of one template would both bootstrap.
fn build_lock() -> &'static Mutex<()> {
    static L: OnceLock<Mutex<()>> = OnceLock::new();
    L.get_or_init(|| Mutex::new(()))
}

/// mmdebstrap's hooks: what turns a bootstrapped root into a template.
fn hooks(r: &Recipe) -> Vec<String> {
    let mut h = vec![
        // Each container gets its own machine id at first start.
        r#": > "$1/etc/machine-id"; rm -f "$1/var/lib/dbus/machine-id""#.to_string(),
        r#"chroot "$1" systemctl enable systemd-networkd.service"#.to_string(),
        // The proxy (if any) was for the build only.
        r#"rm -f "$1/etc/apt/apt.conf.d/99mmdebstrap""#.to_string(),
        r#"echo localhost > "$1/etc/hostname""#.to_string(),
    ];
    if r.has_ssh() {
        h.push(
            r#"rm -f "$1"/etc/ssh/ssh_host_*; mkdir -p "$1/etc/systemd/system/ssh.service.d"; printf '[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n' > "$1/etc/systemd/system/ssh.service.d/ferrite-host-keys.conf""#
                .to_string(),
        );
    }
    h.push(
        r#"chroot "$1" dpkg-query -W -f='${binary:Package}=${Version}\n' > "$FERRITE_PACKAGES""#
            .to_string(),
    );
    h
}

/// mmdebstrap's arguments, with [`OUTPUT`] where the archive goes.
fn arguments(r: &Recipe, mirror: &str) -> Vec<String> {
    let mut a = vec![
        "--variant=minbase".to_string(),
        format!("--architectures={}", architecture()),
        format!("--include={}", r.packages().join(",")),
    ];
    for h in hooks(r) {
        a.push(format!("--customize-hook={h}"));
    }
    a.push(r.suite.to_string());
    a.push(OUTPUT.to_string());
    let mirror = mirror.trim_end_matches('/');
    a.push(format!("deb {mirror} {} main", r.suite));
    a.push(format!("deb {mirror} {}-updates main", r.suite));
    // Security updates come from Debian's security archive; a custom mirror is used alone
    // (sites with one usually mirror security too, under a name we cannot guess).
    if mirror == super::DEFAULT_MIRROR {
        a.push(format!(
            "deb http://deb.debian.org/debian-security {}-security main",
            r.suite
        ));
    }
    a
}

impl Templates {
    fn mmdebstrap_version(&self) -> String {
        static V: OnceLock<String> = OnceLock::new();
        V.get_or_init(|| {
            std::process::Command::new(self.mmdebstrap.path())
                .arg("--version")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default()
        })
        .clone()
    }

    /// The hash of the build's inputs.
    fn cache_key(&self, r: &Recipe, mirror: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.mmdebstrap_version());
        for a in arguments(r, mirror) {
            h.update([0]);
            h.update(a);
        }
        hex::encode(h.finalize())
    }

    fn cache_paths(&self, r: &Recipe, key: &str) -> (PathBuf, PathBuf) {
        let stem = format!("{}-{}", r.name, &key[..16]);
        (
            self.cache.join(format!("{stem}.tar.zst")),
            self.cache.join(format!("{stem}.json")),
        )
    }

    /// The cached archive for these inputs, with its manifest, if there is one.
    pub fn cached(&self, r: &Recipe, mirror: &str) -> Option<(PathBuf, Value)> {
        if !self.mmdebstrap.path().is_file() {
            return None;
        }
        let (archive, manifest) = self.cache_paths(r, &self.cache_key(r, mirror));
        let m: Value = serde_json::from_slice(&std::fs::read(&manifest).ok()?).ok()?;
        archive.is_file().then_some((archive, m))
    }

    /// Builds `r` (or finds it cached). `log` receives mmdebstrap's progress lines; a build
    /// is stopped when `cancelled` turns true.
    pub fn build(
        &self,
        r: &Recipe,
        opts: &BuildOptions,
        log: &(dyn Fn(String) + Sync),
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<Built, TemplateError> {
        self.mmdebstrap.check()?;
        let mirror = opts.mirror.as_deref().unwrap_or(&self.mirror).to_string();
        // Both end up in apt's sources and configuration, as root: a quote or a semicolon
        // would start an option of the caller's choosing (the schema refuses them too).
        for (field, v) in [
            ("/mirror", Some(mirror.as_str())),
            ("/proxy", opts.proxy.as_deref()),
        ] {
            if let Some(v) = v.filter(|v| !safe_url(v)) {
                return Err(TemplateError::Invalid {
                    field: field.into(),
                    message: format!("'{v}' has characters apt could take for syntax"),
                });
            }
        }
        let _one = build_lock().lock().unwrap_or_else(|p| p.into_inner());
        if !opts.refresh {
            if let Some((archive, manifest)) = self.cached(r, &mirror) {
                log(format!(
                    "using the cached build of {} ({})",
                    r.name,
                    archive.display()
                ));
                return Ok(Built {
                    archive,
                    manifest,
                    from_cache: true,
                });
            }
        }
        let key = self.cache_key(r, &mirror);
        let (archive, manifest_path) = self.cache_paths(r, &key);
        std::fs::create_dir_all(&self.cache).map_err(|e| self.fail(r, &self.cache, e))?;
        // mmdebstrap picks its compressor from the name: the partial file ends in .tar.zst.
        let partial = archive.with_extension("").with_extension("partial.tar.zst");
        let packages = manifest_path.with_extension("packages.partial");
        let result = self.run_mmdebstrap(r, &mirror, opts, &partial, &packages, log, cancelled);
        if let Err(e) = result {
            let _ = std::fs::remove_file(&partial);
            let _ = std::fs::remove_file(&packages);
            return Err(e);
        }
        let listed = std::fs::read_to_string(&packages).unwrap_or_default();
        let _ = std::fs::remove_file(&packages);
        let sha256 = file_sha256(&partial).map_err(|e| self.fail(r, &partial, e))?;
        let manifest = json!({
            "template": r.name,
            "distro": r.distro,
            "release": r.release,
            "variant": r.variant,
            "architecture": architecture(),
            "packages": listed.lines().filter(|l| !l.is_empty()).collect::<Vec<_>>(),
            "source": format!("{} from {mirror}", self.mmdebstrap_version()),
            "created_at": crate::time::now_rfc3339(),
            "sha256": sha256,
            "cache_key": key,
        });
        std::fs::write(&manifest_path, manifest.to_string())
            .map_err(|e| self.fail(r, &manifest_path, e))?;
        std::fs::rename(&partial, &archive).map_err(|e| self.fail(r, &archive, e))?;
        self.drop_older(r, &archive);
        Ok(Built {
            archive,
            manifest,
            from_cache: false,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn run_mmdebstrap(
        &self,
        r: &Recipe,
        mirror: &str,
        opts: &BuildOptions,
        out: &Path,
        packages: &Path,
        log: &(dyn Fn(String) + Sync),
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<(), TemplateError> {
        let mut args = arguments(r, mirror);
        for a in &mut args {
            if a == OUTPUT {
                *a = out.display().to_string();
            }
        }
        if let Some(p) = &opts.proxy {
            args.insert(0, format!("--aptopt=Acquire::http::Proxy \"{p}\""));
        }
        log(format!(
            "mmdebstrap {} {} from {mirror}",
            r.suite,
            r.packages().join(",")
        ));
        let mut child = crate::storage::tool(&self.mmdebstrap.path().display().to_string())
            .args(&args)
            .env("FERRITE_PACKAGES", packages)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.fail(r, self.mmdebstrap.path(), e))?;
        let tail = std::sync::Arc::new(Mutex::new(Vec::<String>::new()));
        let started = Instant::now();
        std::thread::scope(|s| {
            if let Some(err) = child.stderr.take() {
                let tail = std::sync::Arc::clone(&tail);
                s.spawn(move || {
                    for line in BufReader::new(err).lines().map_while(Result::ok) {
                        if line.starts_with("I: ") || line.starts_with("E: ") {
                            log(format!("[{:.0}s] {line}", started.elapsed().as_secs_f64()));
                        }
                        let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                        t.push(line);
                        if t.len() > 20 {
                            t.remove(0);
                        }
                    }
                });
            }
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if cancelled() => {
                        stop(&mut child);
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(200)),
                    Err(_) => break,
                }
            }
        });
        let status = child
            .wait()
            .map_err(|e| self.fail(r, self.mmdebstrap.path(), e))?;
        if cancelled() {
            return Err(TemplateError::Cancelled);
        }
        if !status.success() {
            let t = tail.lock().unwrap_or_else(|p| p.into_inner()).join("\n");
            return Err(TemplateError::Build {
                template: r.name.to_string(),
                message: format!("mmdebstrap failed ({status}); its last lines:\n{t}"),
            });
        }
        Ok(())
    }

    /// Removes cache entries of `r` other than `keep`.
    fn drop_older(&self, r: &Recipe, keep: &Path) {
        let prefix = format!("{}-", r.name);
        let keep_stem = keep.with_extension("").with_extension("");
        for e in std::fs::read_dir(&self.cache)
            .into_iter()
            .flatten()
            .flatten()
        {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let stem = p.with_extension("").with_extension("");
            // `debian-12-minimal-KEY...`: the name, then 16 hex digits and an extension.
            let ours = name.strip_prefix(&prefix).is_some_and(|rest| {
                rest.len() > 16 && rest[..16].bytes().all(|b| b.is_ascii_hexdigit())
            });
            if ours && stem != keep_stem {
                let _ = std::fs::remove_file(&p);
            }
        }
    }

    /// Removes builds a daemon stop interrupted (called at start).
    pub fn clean_partial(&self) {
        for e in std::fs::read_dir(&self.cache)
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.file_name().to_string_lossy().contains(".partial") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    fn fail(&self, r: &Recipe, path: &Path, e: std::io::Error) -> TemplateError {
        TemplateError::Build {
            template: r.name.to_string(),
            message: format!("{}: {e}", path.display()),
        }
    }
}

/// Whether `u` is an http(s) URL of letters, digits and `._~%+:@/-` only.
fn safe_url(u: &str) -> bool {
    (u.starts_with("http://") || u.starts_with("https://"))
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~%+:@/-".contains(&b))
}

/// Asks mmdebstrap to stop (it removes its temporary root on SIGTERM), then kills it.
fn stop(child: &mut std::process::Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
}

fn file_sha256(p: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(p)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_follows_what_shapes_the_archive() {
        let t = Templates::at(Path::new("/nonexistent"));
        let r = t.recipe("debian-12-minimal").expect("recipe");
        let s = t.recipe("debian-12-standard").expect("recipe");
        let k = t.cache_key(r, "http://deb.debian.org/debian");
        assert_eq!(k, t.cache_key(r, "http://deb.debian.org/debian"));
        assert_ne!(k, t.cache_key(r, "http://mirror.example/debian"));
        assert_ne!(k, t.cache_key(s, "http://deb.debian.org/debian"));
        let args = arguments(s, "http://deb.debian.org/debian/");
        assert!(args.iter().any(|a| a.contains("ssh-keygen -A")));
        assert!(args.contains(&"deb http://deb.debian.org/debian bookworm main".to_string()));
        assert!(args.iter().any(|a| a.contains("bookworm-security")));
        assert!(safe_url("http://user:pw@proxy.lan:3142/"));
        assert!(!safe_url("http://p:3142\";APT::Update::Pre-Invoke{\"x\"};"));
        assert!(!arguments(r, "http://mirror.example/debian")
            .iter()
            .any(|a| a.contains("security")));
    }
}
