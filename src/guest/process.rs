//! A running guest's process (a container's init, a VM's `ferrite-vmm`), recorded in the
//! guest's directory as `runtime.json` so a restarted daemon re-adopts it. A PID alone can be
//! recycled; field 22 of `/proc/PID/stat` (start time in clock ticks) tells ours from a new
//! process with the same number.

use std::path::Path;

use nix::sys::wait::{waitpid, WaitPidFlag};

/// What the daemon records when a guest's process starts.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RuntimeState {
    pub pid: i32,
    /// Field 22 of `/proc/PID/stat` when the process started.
    pub starttime: u64,
    pub started_at: String,
}

const FILE: &str = "runtime.json";

/// The start time and state letter of `pid`, if it exists.
pub fn starttime(pid: i32) -> Option<(u64, char)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = s.get(s.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let state = f.first()?.chars().next()?;
    Some((f.get(19)?.parse().ok()?, state))
}

/// Collects `pid` if it is our child and has exited (a zombie otherwise stays forever).
pub fn reap(pid: i32) {
    let _ = waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
}

/// How a guest's process ended, when the daemon reaped it (its own child).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

const EXIT_FILE: &str = "exit-status";

/// Reaps `pid` if it is our exited child and records how it ended in `dir`. The leader of a
/// multi-threaded process (QEMU) shows as a zombie while its other threads are still exiting,
/// and cannot be reaped until they are: that takes milliseconds, so this waits up to 2 s
/// rather than leave a zombie nobody reaps later.
fn reap_into(dir: &Path, pid: i32) {
    use nix::sys::wait::WaitStatus;
    let t0 = std::time::Instant::now();
    let status = loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => break ExitStatus::Code(c),
            Ok(WaitStatus::Signaled(_, s, _)) => break ExitStatus::Signal(s as i32),
            Ok(WaitStatus::StillAlive) if t0.elapsed() < std::time::Duration::from_secs(2) => {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            // Not our child (adopted after a restart), or still exiting after 2 s.
            _ => return,
        }
    };
    if let Ok(body) = serde_json::to_vec(&status) {
        let _ = std::fs::write(dir.join(EXIT_FILE), body);
    }
}

/// How the guest's last process ended, if the daemon reaped it.
pub fn exit_status(dir: &Path) -> Option<ExitStatus> {
    serde_json::from_slice(&std::fs::read(dir.join(EXIT_FILE)).ok()?).ok()
}

/// The recorded process of the guest whose directory is `dir`, if that process still runs.
/// A zombie child is reaped here, its exit status kept for [`exit_status`].
pub fn alive(dir: &Path) -> Option<RuntimeState> {
    let st = recorded(dir)?;
    match starttime(st.pid) {
        Some((t, state)) if t == st.starttime && state != 'Z' && state != 'X' => Some(st),
        Some((_, 'Z')) => {
            reap_into(dir, st.pid);
            None
        }
        _ => None,
    }
}

/// What `runtime.json` says, alive or not.
pub fn recorded(dir: &Path) -> Option<RuntimeState> {
    let s = std::fs::read(dir.join(FILE)).ok()?;
    serde_json::from_slice(&s).ok()
}

/// Records `pid` (started at `starttime`, or now read from `/proc`) as the guest's process.
pub fn record(dir: &Path, pid: i32, starttime: Option<u64>) -> std::io::Result<RuntimeState> {
    let st = RuntimeState {
        pid,
        starttime: starttime
            .or_else(|| self::starttime(pid).map(|(t, _)| t))
            .unwrap_or(0),
        started_at: crate::time::now_rfc3339(),
    };
    let body = serde_json::to_vec(&st).map_err(std::io::Error::other)?;
    std::fs::write(dir.join(FILE), body)?;
    Ok(st)
}

/// Forgets the guest's process (after it is gone).
pub fn clear(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(FILE));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_process_is_alive_and_a_recycled_pid_is_not() {
        let dir = tempfile::tempdir().expect("test");
        assert!(alive(dir.path()).is_none());
        let me = std::process::id() as i32;
        let st = record(dir.path(), me, None).expect("test");
        assert_eq!(alive(dir.path()), Some(st.clone()));
        // Same PID, another start time: a different process.
        let other = RuntimeState {
            starttime: st.starttime + 1,
            ..st
        };
        std::fs::write(
            dir.path().join(FILE),
            serde_json::to_vec(&other).expect("test"),
        )
        .expect("test");
        assert!(alive(dir.path()).is_none());
        assert_eq!(recorded(dir.path()).map(|s| s.pid), Some(me));
        clear(dir.path());
        assert!(recorded(dir.path()).is_none());
    }
}
