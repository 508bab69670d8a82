//! Starting a container: cgroup limits from the typed spec, bind mounts, `/etc/resolv.conf`,
//! the `ferrite-ctr` helper that makes the namespaces and execs the init, then the NICs. Any
//! failure kills what started and removes the cgroup.

use super::*;

impl Containers {
    /// The cgroup limits a spec asks for. CPU weight scales with `cores` (100, the kernel's
    /// default weight, per core), so a 4-core container gets four times a 1-core one's share
    /// under contention.
    pub(super) fn limits(s: &ContainerSpec) -> cgroup::Limits {
        let mib = |m: Option<u64>| m.map(|m| m * 1024 * 1024);
        cgroup::Limits {
            memory: mib(s.memory),
            swap: mib(s.swap),
            pids: s.pids_limit,
            cpu: s.cpu_limit,
            weight: s.cores.map(|c| (u64::from(c) * 100).clamp(1, 10_000)),
        }
    }

    /// Starts a stopped container; on failure no process or cgroup is left.
    pub fn start(&self, id: &str) -> Result<Value, ContainerError> {
        let _b = self.claim(id)?;
        let o = self.get(id)?;
        if self.running(id) {
            return Err(ContainerError::Conflict(format!(
                "container {id} is already running"
            )));
        }
        let row = self.stored(&o)?;
        if row.is_template {
            return Err(ContainerError::Conflict(format!(
                "container {id} is a template; clone it to get a container that starts"
            )));
        }
        self.helper.check()?;
        let b = &row.create.spec;
        nics::check(&self.base.store, b.net.iter().map(|(k, n)| (k, &n.nic)))?;
        let rootfs = self
            .base
            .storage
            .path(row.rootfs.as_deref().unwrap_or_default())?;
        let dir = self.ct_dir(id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| self.base.failed(format!("creating {}", dir.display()), e))?;
        let cg = self.cg(id);
        let spec = runtime::StartSpec {
            id: id.to_string(),
            cgroup: cg.name().to_string(),
            scope: self.base.scope.clone(),
            rootfs,
            hostname: b.hostname.clone().unwrap_or_else(|| id.to_string()),
            init: b.init.clone().unwrap_or_else(|| vec!["/sbin/init".into()]),
            privileged: row.create.privileged,
            id_base: ID_BASE,
            id_count: ID_COUNT,
            console_log: dir.join("console.log"),
            console_input: dir.join("console.in"),
            keyctl: b.features.as_ref().is_some_and(|f| f.keyctl),
            nesting: b.features.as_ref().is_some_and(|f| f.nesting),
            fuse: b.features.as_ref().is_some_and(|f| f.fuse),
            mounts: self.mounts_of(b)?,
        };
        let files = super::guest_files::GuestFiles {
            rootfs: &spec.rootfs,
            owner: (!row.create.privileged).then_some(ID_BASE),
        };
        files.hostname(&spec.hostname)?;
        if let Some(dns) = &b.dns {
            files.resolv_conf(&dns.servers, dns.search.as_deref())?;
        }
        // The cgroup last: every check that can refuse the start has passed.
        cg.create(&Self::limits(b)).map_err(|e| {
            self.base
                .failed(format!("creating the cgroup of container {id}"), e)
        })?;
        let started = (|| -> Result<i32, ContainerError> {
            use std::io::Write;
            let mut child = std::process::Command::new(self.helper.path())
                .arg("start")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| {
                    self.base
                        .failed(format!("running {}", self.helper.path().display()), e)
                })?;
            if let Some(mut i) = child.stdin.take() {
                let spec_json = serde_json::to_vec(&spec)
                    .map_err(|e| self.base.failed("encoding the start spec", e))?;
                i.write_all(&spec_json)
                    .map_err(|e| self.base.failed("sending the start spec to the helper", e))?;
            }
            let out = child
                .wait_with_output()
                .map_err(|e| self.base.failed("waiting for the helper", e))?;
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                // What the container's own configuration or root filesystem causes is the
                // caller's to fix (422 naming the field), not a daemon failure.
                for (marker, field) in [
                    (runtime::INIT_EXEC_FAILED, "/init"),
                    (runtime::MOUNT_THROUGH_SYMLINK, "/mounts"),
                ] {
                    if err.contains(marker) {
                        return Err(GuestError::invalid(
                            field,
                            format!("container {id} cannot start: {}", err.trim()),
                        ));
                    }
                }
                return Err(self
                    .base
                    .failed(format!("starting container {id}"), err.trim().to_string()));
            }
            let v: Value = serde_json::from_slice(&out.stdout)
                .map_err(|e| self.base.failed("reading the helper's answer", e))?;
            v["pid"].as_i64().map(|p| p as i32).ok_or_else(|| {
                self.base
                    .failed("reading the helper's answer", "it reported no PID")
            })
        })();
        let pid = match started {
            Ok(p) => p,
            Err(e) => {
                self.kill_cgroup(&cg);
                let _ = cg.remove();
                return Err(e);
            }
        };
        if let Err(e) = self.base.rt.block_on(self.attach_nics(id, pid, b)) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            self.kill_cgroup(&cg);
            process::reap(pid);
            let _ = cg.remove();
            return Err(e);
        }
        if let Err(e) = process::record(&dir, pid, None) {
            tracing::warn!(container = id, error = %e, "could not record the running container");
        }
        Ok(self.status(id))
    }

    /// The bind mounts of `mp0`..: storage volumes (directories) or host paths.
    pub(super) fn mounts_of(
        &self,
        b: &ContainerSpec,
    ) -> Result<Vec<runtime::MountSpec>, ContainerError> {
        let mut out = Vec::new();
        {
            for (slot, m) in &b.mounts {
                let source = match (&m.volume, &m.path) {
                    (Some(v), _) => self.base.storage.path(v)?,
                    (None, Some(p)) => PathBuf::from(p),
                    _ => {
                        return Err(GuestError::invalid(
                            &format!("/mounts/{slot}"),
                            "needs a volume or a path",
                        ))
                    }
                };
                if !source.is_dir() {
                    return Err(GuestError::invalid(
                        &format!("/mounts/{slot}"),
                        format!("{} is not a directory", source.display()),
                    ));
                }
                out.push(runtime::MountSpec {
                    source,
                    target: m.target.clone(),
                    read_only: m.read_only,
                });
            }
        }
        Ok(out)
    }

    /// Gives the container its NICs: a veth per `netN` whose host end joins the bridge (with
    /// the access tag or trunks) and whose guest end arrives in the container as `ethN` with
    /// its stable MAC, addresses and default routes. The veths die with the container's network
    /// namespace, so a stop needs no cleanup here.
    pub(super) async fn attach_nics(
        &self,
        id: &str,
        pid: i32,
        b: &ContainerSpec,
    ) -> Result<(), ContainerError> {
        use crate::network::attach::{attach, NicKind};
        if b.net.is_empty() {
            return Ok(());
        }
        let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
        let k = self.base.network.kernel();
        let mut inside = Vec::new();
        for (slot, nic) in &b.net {
            let n = spec::slot_number(slot, "net");
            let guest = format!("eth{n}");
            attach(
                k,
                &NicKind::Veth {
                    host: nics::host_if(id, slot),
                    peer: format!("p{id}i{n}"),
                    netns: Some(netns.clone()),
                    guest_name: Some(guest.clone()),
                },
                &nics::attachment(id, slot, &nic.nic),
            )
            .await
            .map_err(|e| match e {
                crate::network::netlink::KernelError::Unsupported { field, message } => {
                    GuestError::invalid(&format!("/net/{slot}/{field}"), message)
                }
                e => self.base.failed(format!("attaching {slot}"), e),
            })?;
            inside.push((guest, nic));
        }
        let (gk, _events) =
            crate::network::netlink::Kernel::connect(Some(&netns)).map_err(|e| {
                self.base.failed(
                    format!("entering the network namespace of container {id}"),
                    e,
                )
            })?;
        let rt = |e: crate::network::netlink::KernelError| {
            self.base
                .failed(format!("configuring the NICs inside container {id}"), e)
        };
        if let Some(lo) = gk.link("lo").await.map_err(rt)? {
            gk.set_up(lo.index, "lo", true).await.map_err(rt)?;
        }
        for (guest, nic) in inside {
            let l = gk.link(&guest).await.map_err(rt)?.ok_or_else(|| {
                self.base.failed(
                    format!("moving {guest} into container {id}"),
                    "it did not arrive",
                )
            })?;
            gk.set_up(l.index, &guest, true).await.map_err(rt)?;
            for a in [&nic.ip, &nic.ip6].into_iter().flatten() {
                gk.addr_add(l.index, &guest, a).await.map_err(rt)?;
            }
            if let Some(g) = nic.gw {
                gk.route_add_default_v4(g).await.map_err(rt)?;
            }
            if let Some(g) = nic.gw6 {
                gk.route_add_default_v6(g).await.map_err(rt)?;
            }
        }
        Ok(())
    }
}
