//! The `ferrite` resource verbs as users type them, against a real TLS `ferrited` whose
//! networking lives in a namespace: create, start, exec (its exit code becomes the CLI's),
//! the console round trip over the WebSocket, list output as columns, JSON and YAML parsed back,
//! snapshots, clones, distinct exit codes, and completion scripts.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, NetNs, ROOT_PW};
use serde_json::Value;

struct Cli {
    endpoint: String,
    config: tempfile::TempDir,
}

impl Cli {
    fn login(d: &Daemon) -> Cli {
        let info: Value = serde_json::from_str(
            &std::fs::read_to_string(d.data().join("api.json")).expect("api.json"),
        )
        .expect("json");
        let cli = Cli {
            endpoint: d.endpoint.clone(),
            config: tempfile::tempdir().expect("tempdir"),
        };
        let fp = info["fingerprint"].as_str().expect("fingerprint");
        let out = cli.run_with_input(&["login", "--fingerprint", fp, "--password-stdin"], ROOT_PW);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        cli
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ferrite"));
        c.args(args)
            .env("FERRITE_ENDPOINT", &self.endpoint)
            .env("FERRITE_CONFIG", self.config.path().join("config.json"))
            .env_remove("FERRITE_TOKEN")
            .env_remove("FERRITE_FINGERPRINT");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args)
            .stdin(Stdio::null())
            .output()
            .expect("ferrite")
    }

    fn run_with_input(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ferrite");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write");
        child.wait_with_output().expect("wait")
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ferrite {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[test]
fn verbs_drive_a_container_from_create_to_delete() {
    let ns = NetNs::new("verbs");
    let d = Daemon::start_with(&["--netns", &ns.path()]);
    let cli = Cli::login(&d);

    cli.ok(&["template", "busybox"]);
    // Building it again gives the same bytes; the pool already holds that name: a refusal.
    let again = cli.run(&["template", "busybox"]);
    assert_eq!(
        code(&again),
        1,
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("409 Already exists"));

    cli.ok(&[
        "net",
        "create",
        "bridge",
        "name=vmbr7",
        r#"addresses=["10.7.0.1/24"]"#,
    ]);
    cli.ok(&[
        "ct",
        "create",
        "name=web",
        "template=local:busybox.tar.gz",
        "memory=96",
        "net.net0.bridge=vmbr7",
        "net.net0.ip=10.7.0.2/24",
        "--start",
    ]);

    // The list is columns people read, with the state, address and memory.
    let table = cli.ok(&["ct", "list"]);
    let header = table.lines().next().expect("header");
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["ID", "NAME", "STATE", "IPS", "MEMORY", "POOL"]
    );
    let row = table
        .lines()
        .find(|l| l.contains(" web "))
        .expect("web row");
    assert!(
        row.contains("running") && row.contains("10.7.0.2/24") && row.contains("96 MiB"),
        "{row}"
    );
    // The same list for scripts, parsed back.
    let json: Value =
        serde_json::from_str(&cli.ok(&["ct", "list", "--output", "json"])).expect("json");
    let web = json
        .as_array()
        .expect("array")
        .iter()
        .find(|c| c["name"] == "web")
        .expect("web in json")
        .clone();
    assert_eq!(web["status"]["state"], "running");
    let yaml = cli.ok(&["ct", "show", "web", "--output", "yaml"]);
    assert!(yaml.lines().any(|l| l == "name: web"), "{yaml}");
    let show = cli.ok(&["ct", "show", "web"]);
    assert!(
        show.lines()
            .any(|l| l.starts_with("net.net0.bridge") && l.ends_with("vmbr7")),
        "{show}"
    );

    // exec: output as the command wrote it, its exit code as ours.
    let out = cli.run(&[
        "ct",
        "exec",
        "web",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(code(&out), 7);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    let out = cli.run(&["ct", "exec", "web", "--", "ping", "-c1", "-W2", "10.7.0.1"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));

    console_round_trip(&cli, "web");

    // Snapshot while running, stop, roll back, clone by name, delete.
    assert!(cli
        .ok(&["ct", "snapshot", "web", "s1"])
        .contains("(snapshot s1)"));
    assert!(cli.ok(&["ct", "stop", "web"]).contains("stopped"));
    cli.ok(&["ct", "rollback", "web", "s1"]);
    assert!(cli.ok(&["ct", "snapshots", "web"]).contains("s1"));
    cli.ok(&["ct", "clone", "web", "name=web2"]);
    assert!(cli.ok(&["ct", "list", "--name", "web*"]).contains("web2"));
    cli.ok(&["ct", "delete", "web2"]);
    cli.ok(&["ct", "delete", "web", "--force"]);
    cli.ok(&["net", "delete", "bridge", "vmbr7"]);
    let left: Value =
        serde_json::from_str(&cli.ok(&["ct", "list", "--output", "json"])).expect("json");
    assert_eq!(left, Value::Array(Vec::new()));

    // Errors: a refusal names the field and exits 1; a name nobody has is a 404 with a hint;
    // an unreachable daemon exits 4; bad usage exits 2.
    let bad = cli.run(&[
        "ct",
        "create",
        "name=x",
        "memory=lots",
        "template=local:busybox.tar.gz",
    ]);
    assert_eq!(code(&bad), 1);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("400 Invalid request") && err.contains("/memory"),
        "{err}"
    );
    let missing = cli.run(&["ct", "start", "nosuch"]);
    assert_eq!(code(&missing), 1);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no container named 'nosuch'"));
    let down = cli.run(&["--endpoint", "https://127.0.0.1:1", "ct", "list"]);
    assert_eq!(code(&down), 4, "{}", String::from_utf8_lossy(&down.stderr));
    let usage = cli.run(&["ct", "start"]);
    assert_eq!(code(&usage), 2);
    let usage = cli.run(&["ct", "create", "novalue"]);
    assert_eq!(
        code(&usage),
        2,
        "{}",
        String::from_utf8_lossy(&usage.stderr)
    );
    let vm_exec = cli.run(&["vm", "exec", "1", "--", "true"]);
    assert_eq!(code(&vm_exec), 2);
}

/// Types a command into the console, sees the shell's answer, detaches with Ctrl-].
fn console_round_trip(cli: &Cli, guest: &str) {
    let mut child = cli
        .cmd(&["ct", "console", guest])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("console");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    // The shell computes the answer, so seeing it proves the input reached the guest.
    stdin.write_all(b"echo console-$((6*7))\r").expect("type");
    let t0 = Instant::now();
    let mut seen = String::new();
    while !seen.contains("console-42") {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no answer on the console: {seen}"
        );
        if let Ok(b) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push_str(&String::from_utf8_lossy(&b));
        }
    }
    stdin.write_all(b"\x1d").expect("detach");
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            assert!(st.success(), "console exited with {st}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "Ctrl-] did not detach"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    assert!(err.contains("Detached from"), "{err}");
}

#[test]
fn completions_are_generated_for_each_shell() {
    let run = |shell: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_ferrite"))
            .args(["completions", shell])
            .output()
            .expect("ferrite");
        assert!(out.status.success(), "{shell}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let bash = run("bash");
    assert!(
        bash.contains("_ferrite()") && bash.contains("complete -F _ferrite"),
        "{bash}"
    );
    assert!(
        bash.contains("ferrite__ct") || bash.contains("ct)"),
        "bash lacks the ct verbs"
    );
    assert!(run("zsh").starts_with("#compdef ferrite"));
    let fish = run("fish");
    assert!(
        fish.contains("complete -c ferrite") && fish.contains("console"),
        "{fish}"
    );
    // The bash script loads in bash without errors.
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("ferrite.bash");
    std::fs::write(&script, &bash).expect("write");
    let st = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -e; source {}; complete -p ferrite",
            script.display()
        ))
        .output()
        .expect("bash");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
}
