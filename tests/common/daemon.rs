//! The daemon under test: the real `ferrited` on a loopback port with a temp data dir.

use super::*;

pub const ROOT_PW: &str = "root-password-for-tests";

/// A running daemon; killed on drop, its log printed if the test failed.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub endpoint: String,
    pub extra_args: Vec<String>,
    /// Pass `--data-dir` relative to the daemon's working directory, as the quick start's
    /// `./data` is.
    pub relative: bool,
    /// Run this binary instead of the build's `ferrited` (a copy without its helpers).
    pub exe: Option<PathBuf>,
}

impl Daemon {
    pub fn start() -> Daemon {
        Self::start_with(&["--no-tls"])
    }

    pub fn start_with(args: &[&str]) -> Daemon {
        Self::launch(args, false)
    }

    /// Started as the README's quick start starts it: `--data-dir` relative to the working
    /// directory (plain HTTP, as the other tests).
    pub fn start_relative() -> Daemon {
        Self::launch(&["--no-tls"], true)
    }

    fn launch(args: &[&str], relative: bool) -> Daemon {
        Self::launch_prepared(args, relative, |_| {})
    }

    /// Like `start_with`, after `prepare` has put files into the fresh data dir (a first-start
    /// seed, a certificate).
    pub fn start_prepared(args: &[&str], prepare: impl FnOnce(&std::path::Path)) -> Daemon {
        Self::launch_prepared(args, false, prepare)
    }

    fn launch_prepared(
        args: &[&str],
        relative: bool,
        prepare: impl FnOnce(&std::path::Path),
    ) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        prepare(dir.path());
        let mut d = Daemon {
            dir,
            child: None,
            endpoint: String::new(),
            extra_args: args.iter().map(|s| s.to_string()).collect(),
            relative,
            exe: None,
        };
        d.spawn();
        d
    }

    /// What the daemon wrote to `api.json` at start: endpoint and, with TLS, the
    /// certificate's fingerprint.
    pub fn api_info(&self) -> Value {
        let s = std::fs::read_to_string(self.dir.path().join("api.json")).expect("api.json");
        serde_json::from_str(&s).expect("api.json is JSON")
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Starts (or restarts) the process on the same data dir.
    pub fn spawn(&mut self) {
        let info = self.dir.path().join("api.json");
        let _ = std::fs::remove_file(&info);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("ferrited.log"))
            .expect("log");
        let mut cmd = Command::new(
            self.exe
                .clone()
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ferrited"))),
        );
        match (
            self.relative,
            self.dir.path().parent(),
            self.dir.path().file_name(),
        ) {
            (true, Some(parent), Some(name)) => cmd.current_dir(parent).arg("--data-dir").arg(name),
            _ => cmd.arg("--data-dir").arg(self.dir.path()),
        };
        let child = cmd
            .args(["--listen", "127.0.0.1:0"])
            .args(&self.extra_args)
            .env("FERRITE_ROOT_PASSWORD", ROOT_PW)
            .env("FERRITE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ferrited");
        self.child = Some(child);
        // Under TCG in the kernel VM, on a loaded 2-core host, hashing the administrator's
        // password alone has taken 27 s: give the daemon room there, fail fast elsewhere.
        let limit = if std::env::var_os("FERRITE_IN_KERNEL_VM").is_some() {
            Duration::from_secs(180)
        } else {
            Duration::from_secs(30)
        };
        let t0 = Instant::now();
        loop {
            if let Ok(s) = std::fs::read_to_string(&info) {
                if let Ok(v) = serde_json::from_str::<Value>(&s) {
                    self.endpoint = v["endpoint"].as_str().unwrap_or_default().to_string();
                    break;
                }
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("ferrited exited early with {st}: {}", self.log());
            }
            assert!(
                t0.elapsed() < limit,
                "ferrited did not start within {limit:?}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the daemon (SIGTERM) and starts it again on the same data dir.
    pub fn restart(&mut self) {
        self.stop(nix::sys::signal::Signal::SIGTERM);
        self.spawn();
    }

    /// Sends a signal and waits for exit.
    pub fn stop(&mut self, sig: nix::sys::signal::Signal) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig);
        c.wait().expect("wait")
    }

    /// The running daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(|c| c.id())
            .expect("the daemon runs")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ferrited.log")).unwrap_or_default()
    }

    pub fn client(&self) -> Client {
        Client::new(&self.endpoint, None)
    }

    pub fn root(&self) -> Client {
        let mut c = self.client();
        let t = c.login("root@local", ROOT_PW);
        c.token = Some(t);
        c
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- ferrited log ----\n{}", self.log());
        }
    }
}

impl Daemon {
    /// A daemon whose network engine manages `ns` (its API stays on host loopback).
    pub fn start_in(ns: &NetNs) -> Daemon {
        let p = ns.path();
        Self::start_with(&["--no-tls", "--netns", &p])
    }
}
