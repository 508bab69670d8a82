//! Operations on a running container: stop, shutdown, reboot, freeze, exec, live limits, and
//! the cleanup of its processes and NICs.

use super::*;

impl Containers {
    /// Shuts down (as `shutdown`) and starts again.
    pub fn reboot(&self, id: &str, timeout: Duration) -> Result<Value, ContainerError> {
        self.shutdown(id, timeout)?;
        self.start(id)
    }

    /// Removes the host ends of a container's NICs now (the kernel would too once the
    /// container's network namespace is gone, but later, from a work queue).
    pub(super) fn detach_nics(&self, id: &str) {
        let Ok(o) = self.get(id) else { return };
        let Ok(row) = self.stored(&o) else { return };
        let k = self.base.network.kernel();
        for slot in row.create.spec.net.keys() {
            let host = nics::host_if(id, slot);
            let _ = self
                .base
                .rt
                .block_on(crate::network::attach::detach(k, &host));
        }
    }

    pub(super) fn kill_cgroup(&self, cg: &cgroup::Cgroup) {
        if cg.frozen() {
            let _ = cg.freeze(false);
        }
        for p in cg.pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let t0 = Instant::now();
        while !cg.pids().is_empty() && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Applies the stored limits to a running container's cgroup (after an update).
    pub fn apply_limits(&self, id: &str) -> Result<(), ContainerError> {
        let o = self.get(id)?;
        if self.running(id) {
            self.cg(id)
                .apply(&Self::limits(&self.stored(&o)?.create.spec))
                .map_err(|e| {
                    self.base
                        .failed(format!("applying the limits of container {id}"), e)
                })?;
        }
        Ok(())
    }

    /// Kills the container's processes and removes its cgroup.
    pub fn stop(&self, id: &str) -> Result<Value, ContainerError> {
        let _b = self.claim(id)?;
        self.get(id)?;
        self.stop_locked(id);
        Ok(self.status(id))
    }

    pub(super) fn stop_locked(&self, id: &str) {
        let cg = self.cg(id);
        self.detach_nics(id);
        if let Some(st) = self.runtime_state(id) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(st.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let pid = self.recorded_pid(id);
        self.kill_cgroup(&cg);
        let t0 = Instant::now();
        while self.runtime_state(id).is_some() && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(p) = pid {
            process::reap(p);
        }
        let _ = cg.remove();
        let _ = std::fs::remove_file(self.ct_dir(id).join("runtime.json"));
    }

    /// Asks init to stop, then kills after `timeout`. systemd takes SIGRTMIN+3 (SIGTERM
    /// would make it re-execute itself), as LXC's `lxc.signal.halt` does for it; other inits
    /// (busybox, sysvinit, a shell) SIGTERM.
    pub fn shutdown(&self, id: &str, timeout: Duration) -> Result<Value, ContainerError> {
        let _b = self.claim(id)?;
        self.get(id)?;
        if let Some(st) = self.runtime_state(id) {
            let systemd = std::fs::read_link(format!("/proc/{}/exe", st.pid))
                .is_ok_and(|p| p.file_name().is_some_and(|n| n == "systemd"));
            let signal = if systemd {
                libc::SIGRTMIN() + 3
            } else {
                libc::SIGTERM
            };
            // SAFETY: kill(2) with a pid we started and a valid signal number.
            unsafe { libc::kill(st.pid, signal) };
            let t0 = Instant::now();
            while self.runtime_state(id).is_some() && t0.elapsed() < timeout {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.stop_locked(id);
        Ok(self.status(id))
    }

    /// Freezes or thaws every process of a running container.
    pub fn freeze(&self, id: &str, frozen: bool) -> Result<Value, ContainerError> {
        let _b = self.claim(id)?;
        self.get(id)?;
        if !self.running(id) {
            return Err(ContainerError::Conflict(format!(
                "container {id} is not running"
            )));
        }
        self.cg(id)
            .freeze(frozen)
            .map_err(|e| self.base.failed(format!("freezing container {id}"), e))?;
        Ok(self.status(id))
    }

    /// Runs a command inside; returns stdout, stderr and the exit code.
    pub async fn exec(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<Value, ContainerError> {
        let o = self.get(id)?;
        self.helper.check()?;
        let st = self
            .runtime_state(id)
            .ok_or_else(|| ContainerError::Conflict(format!("container {id} is not running")))?;
        if self.cg(id).frozen() {
            return Err(ContainerError::Conflict(format!(
                "container {id} is frozen"
            )));
        }
        let mut cmd = tokio::process::Command::new(self.helper.path());
        cmd.arg("exec")
            .arg("--cgroup")
            .arg(self.cg(id).name())
            .arg("--pid")
            .arg(st.pid.to_string());
        if o.body["privileged"].as_bool().unwrap_or(false) {
            cmd.arg("--privileged");
        }
        if o.body["features"]["keyctl"].as_bool().unwrap_or(false) {
            cmd.arg("--keyctl");
        }
        if o.body["features"]["nesting"].as_bool().unwrap_or(false) {
            cmd.arg("--nesting");
        }
        cmd.arg("--").args(command).kill_on_drop(true);
        cmd.stdin(std::process::Stdio::null());
        let t0 = Instant::now();
        let out = tokio::time::timeout(timeout, cmd.output())
            .await
            .map_err(|_| {
                ContainerError::Conflict(format!(
                    "the command did not finish within {} s and was killed",
                    timeout.as_secs()
                ))
            })?
            .map_err(|e| self.base.failed("running the exec helper", e))?;
        let code = out.status.code().unwrap_or(128);
        if code == 125 {
            return Err(self.base.failed(
                format!("exec in container {id}"),
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        const MAX: usize = 1 << 20;
        let cut = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(MAX)]).into_owned();
        Ok(json!({
            "exit_code": code,
            "stdout": cut(&out.stdout),
            "stderr": cut(&out.stderr),
            "truncated": out.stdout.len() > MAX || out.stderr.len() > MAX,
            "duration_ms": t0.elapsed().as_millis() as u64,
        }))
    }
}
