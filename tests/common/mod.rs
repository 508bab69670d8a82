//! Test harness: starts the real `ferrited` on a loopback port with a temp data dir, and a
//! client that validates every response against the daemon's own OpenAPI document.
#![allow(dead_code)]

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub mod tf;

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
        let dir = tempfile::tempdir().expect("tempdir");
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

/// A response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// Pointers named in a problem's invalid_params (each once; a field that breaks two
    /// rules of its schema is named twice by the daemon, once per rule).
    pub fn pointers(&self) -> Vec<String> {
        let mut v: Vec<String> = self.body["invalid_params"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["pointer"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        v.dedup();
        v
    }
}

static OPENAPI: Mutex<Option<Value>> = Mutex::new(None);
/// Operations exercised in this test binary ("METHOD /path/template status").
pub static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// An HTTP client bound to one daemon.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub token: Option<String>,
    agent: ureq::Agent,
}

fn match_template(template: &str, path: &str) -> bool {
    let a: Vec<&str> = template.split('/').collect();
    let b: Vec<&str> = path.split('/').collect();
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(t, p)| (t.starts_with('{') && t.ends_with('}')) || t == p)
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .build();
        Client {
            base: base.to_string(),
            token,
            agent,
        }
    }

    pub fn with_token(&self, token: &str) -> Client {
        Client {
            token: Some(token.to_string()),
            ..self.clone()
        }
    }

    pub fn anonymous(&self) -> Client {
        Client {
            token: None,
            ..self.clone()
        }
    }

    pub fn login(&self, user: &str, pw: &str) -> String {
        let r = self
            .anonymous()
            .post("/access/login", json!({"username": user, "password": pw}));
        assert_eq!(r.status, 200, "login failed: {}", r.text);
        r.body["ticket"].as_str().expect("ticket").to_string()
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = self.begin(method, path);
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let res = match body {
            Some(b) => req
                .set("Content-Type", "application/json")
                .send_string(&b.to_string()),
            None => req.call(),
        };
        self.finish(method, path, res)
    }

    /// A request to `path` under /api/v1, with this client's credentials.
    fn begin(&self, method: &str, path: &str) -> ureq::Request {
        let url = format!("{}/api/v1{}", self.base, path);
        let req = self.agent.request(method, &url);
        match &self.token {
            Some(t) => req.set("Authorization", &format!("Bearer {t}")),
            None => req,
        }
    }

    /// Reads an answer and checks it against the contract.
    fn finish(&self, method: &str, path: &str, res: Result<ureq::Response, ureq::Error>) -> Resp {
        let resp = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: transport error {e}"),
        };
        let status = resp.status();
        let headers: Vec<(String, String)> = resp
            .headers_names()
            .into_iter()
            .filter_map(|n| resp.header(&n).map(|v| (n.clone(), v.to_string())))
            .collect();
        let ct = resp.content_type().to_string();
        let text = resp.into_string().unwrap_or_default();
        let body: Value =
            if text.is_empty() || ct == "application/jsonl" || ct == "text/event-stream" {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::Null)
            };
        let r = Resp {
            status,
            headers,
            body,
            text,
        };
        self.check_contract(method, path, &r, &ct);
        r
    }

    /// Validates a response against the OpenAPI document the daemon serves.
    fn check_contract(&self, method: &str, path: &str, r: &Resp, ct: &str) {
        let doc = {
            let mut g = OPENAPI.lock().unwrap_or_else(|p| p.into_inner());
            if g.is_none() {
                let text = ureq::get(&format!("{}/api/v1/openapi.json", self.base))
                    .call()
                    .expect("openapi")
                    .into_string()
                    .expect("openapi text");
                *g = Some(serde_json::from_str(&text).expect("openapi json"));
            }
            g.clone().expect("openapi")
        };
        let path_only = path.split('?').next().unwrap_or(path);
        let full = format!("/api/v1{path_only}");
        let Some((template, item)) =
            doc["paths"]
                .as_object()
                .expect("paths")
                .iter()
                .find(|(t, item)| {
                    match_template(t, &full) && item.get(method.to_lowercase()).is_some()
                })
        else {
            // Unknown routes must be problem documents.
            assert!(
                r.status >= 400,
                "{method} {path} is not in the OpenAPI document but answered {}",
                r.status
            );
            assert_eq!(ct, "application/problem+json");
            return;
        };
        let op = &item[method.to_lowercase()];
        let key = format!("{method} {template} {}", r.status);
        SEEN.lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(HashSet::new)
            .insert(key.clone());
        let resp = op["responses"]
            .get(r.status.to_string())
            .unwrap_or_else(|| {
                // Every status is documented per operation, except 408: a client too slow
                // to send its body can meet it on any route.
                assert!(
                    r.status == 408,
                    "{method} {template} answered undocumented {}: {}",
                    r.status,
                    r.text
                );
                &Value::Null
            });
        if r.status >= 400 {
            assert_eq!(
                ct, "application/problem+json",
                "{method} {path} error is not problem+json"
            );
            validate(
                &doc,
                &json!({"$ref": "#/components/schemas/Problem"}),
                &r.body,
                &key,
            );
            return;
        }
        if let Some(schema) = resp["content"]["application/json"].get("schema") {
            validate(&doc, schema, &r.body, &key);
        }
    }

    /// Sends raw bytes (an upload) and checks the answer against the contract like any call.
    pub fn send_bytes(&self, method: &str, path: &str, bytes: &[u8], content_type: &str) -> Resp {
        let res = self
            .begin(method, path)
            .set("Content-Type", content_type)
            .send_bytes(bytes);
        self.finish(method, path, res)
    }

    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, None, &[])
    }
    pub fn post(&self, path: &str, body: Value) -> Resp {
        self.request("POST", path, Some(&body), &[])
    }
    pub fn put(&self, path: &str, body: Value) -> Resp {
        self.request("PUT", path, Some(&body), &[])
    }
    pub fn delete(&self, path: &str) -> Resp {
        self.request("DELETE", path, None, &[])
    }
}

/// Validates `instance` against a schema that uses `#/components/schemas/...` references.
pub fn validate(doc: &Value, schema: &Value, instance: &Value, what: &str) {
    let mut root = schema.as_object().cloned().unwrap_or_default();
    root.insert("components".into(), doc["components"].clone());
    let v = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&Value::Object(root))
        .expect("schema compiles");
    let errors: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: response does not match the OpenAPI schema: {errors:?}\nbody: {instance}"
    );
}

/// Creates a user with the given password and returns a ticket-bearing client for it.
pub fn user_client(root: &Client, userid: &str, pw: &str) -> Client {
    let r = root.post("/access/users", json!({"userid": userid, "password": pw}));
    assert_eq!(r.status, 201, "{}", r.text);
    let t = root.login(userid, pw);
    root.with_token(&t)
}

/// A network namespace the test creates (and deletes on drop), named uniquely per process.
pub struct NetNs {
    pub name: String,
}

static NS_COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl NetNs {
    pub fn new(tag: &str) -> NetNs {
        let n = NS_COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("fer-{tag}-{}-{n}", std::process::id());
        sh(&format!("ip netns add {name}"));
        sh(&format!("ip -n {name} link set lo up"));
        NetNs { name }
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Runs `ip -n NS ARGS`, panicking on failure.
    pub fn ip(&self, args: &str) -> String {
        sh(&format!("ip -n {} {args}", self.name))
    }

    /// Runs a command inside the namespace; returns success.
    pub fn exec_ok(&self, cmd: &str) -> bool {
        Command::new("sh")
            .arg("-c")
            .arg(format!("ip netns exec {} {cmd}", self.name))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// `ip -j -d link show` as JSON, keyed by name.
    pub fn links(&self) -> std::collections::BTreeMap<String, Value> {
        let out = self.ip("-j -d link show");
        let v: Value = serde_json::from_str(&out).expect("ip -j output");
        v.as_array()
            .expect("array")
            .iter()
            .map(|l| (l["ifname"].as_str().expect("name").to_string(), l.clone()))
            .collect()
    }

    /// Connects a new veth: `local` end in this namespace, `remote` end in `other`.
    pub fn veth_to(&self, local: &str, other: &NetNs, remote: &str) {
        sh(&format!(
            "ip -n {} link add {local} type veth peer name {remote} netns {}",
            self.name, other.name
        ));
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs a shell command, panicking with its output on failure.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The kernel options VLAN-aware bridges, 802.1Q interfaces and bonds need that this kernel
/// lacks (each probed in a throwaway namespace); empty when all are there.
pub fn missing_vlan_features() -> Vec<&'static str> {
    let needs = [
        ("CONFIG_BRIDGE_VLAN_FILTERING", "ip -n NS link add name pbr type bridge vlan_filtering 1"),
        ("CONFIG_VLAN_8021Q", "ip -n NS link add name pv0 type veth peer name pv1 && ip -n NS link add link pv0 name pv0.10 type vlan id 10"),
        ("CONFIG_BONDING", "ip -n NS link add name pb0 type bond mode active-backup"),
    ];
    needs
        .iter()
        .filter(|(_, probe)| !kernel_supports(probe))
        .map(|(n, _)| *n)
        .collect()
}

/// Whether this kernel can do something (probed in a throwaway namespace).
pub fn kernel_supports(setup: &str) -> bool {
    let ns = NetNs::new("probe");
    let cmd = setup.replace("NS", &ns.name);
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

impl Daemon {
    /// A daemon whose network engine manages `ns` (its API stays on host loopback).
    pub fn start_in(ns: &NetNs) -> Daemon {
        let p = ns.path();
        Self::start_with(&["--no-tls", "--netns", &p])
    }
}

/// Records a skipped test with its reason where `scripts/test` prints it after the run, so a
/// green suite never hides what it did not prove.
pub fn skip(test: &str, reason: &str) {
    use std::io::Write as _;
    eprintln!("SKIPPED {test}: {reason}");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped-tests.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{test}: {reason}");
    }
}

/// Whether a test runs on this host. Where the kernel lacks the features named in `missing`,
/// the test (`module::name`) is re-run in the kernel VM instead, or recorded as skipped where
/// no VM can run; either way the caller returns.
pub fn runs_here(test: &str, missing: &[&str]) -> bool {
    if missing.is_empty() {
        return true;
    }
    let name = test.rsplit("::").next().unwrap_or(test);
    if !rerun_in_kernel_vm(name) {
        skip(
            test,
            &format!(
                "this kernel ({}) lacks {}, and no kernel VM is available",
                sh("uname -r").trim(),
                missing.join(", ")
            ),
        );
    }
    false
}

/// Where this machine's kernel lacks a feature a test needs, re-runs that test inside the
/// kernel test VM (`scripts/kernel-vm`: Debian's stock kernel under QEMU, sharing this host's
/// filesystem), so the feature is still proven against a real kernel. Returns true when the
/// test ran there and passed (a failure there fails the test here, with the VM's output);
/// false when no VM can run (not prepared, or already inside one): the caller then skips.
pub fn rerun_in_kernel_vm(test: &str) -> bool {
    use std::io::Write as _;
    if std::env::var_os("FERRITE_IN_KERNEL_VM").is_some() {
        return false;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kernel-vm/kernel-vm");
    let ok = Command::new(script)
        .arg("available")
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return false;
    }
    let exe = std::env::current_exe().expect("test binary path");
    eprintln!("{test}: this kernel lacks what the test needs; running it in the kernel VM");
    let out = Command::new(script)
        .arg("run")
        .arg(&exe)
        .args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .output()
        .expect("kernel-vm run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("---- kernel VM output ----\n{text}\n---- end of kernel VM output ----");
    assert!(
        out.status.success() && text.contains("test result: ok. 1 passed"),
        "{test} failed in the kernel VM (status {:?})",
        out.status
    );
    assert!(
        !text.contains(&format!("SKIPPED {test}")) && !text.contains("SKIPPED "),
        "{test} was skipped inside the kernel VM too"
    );
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("kernel-vm-tests.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let kver = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/target/kernel-vm/kernel-version"
        ))
        .unwrap_or_default();
        let _ = writeln!(f, "{test}: passed in the kernel VM ({})", kver.trim());
    }
    true
}

/// Builds a busybox root filesystem tarball (gzip) from the host's busybox-static.
pub fn busybox_template(dir: &std::path::Path) -> std::path::PathBuf {
    let root = dir.join("bbroot");
    for d in ["bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("busybox-static is a test prerequisite (/bin/busybox)");
    for a in [
        "sh", "hostname", "id", "cat", "sleep", "echo", "ls", "ps", "head", "tail", "tr", "seq",
        "true", "grep", "wc", "ping", "ip",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).expect("symlink");
    }
    std::os::unix::fs::symlink("../bin/busybox", root.join("sbin/init")).expect("symlink");
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    let out = dir.join("busybox.tar.gz");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-czf")
        .arg(&out)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    out
}

/// Uploads a file into the `local` pool with its checksum.
pub fn upload(c: &Client, path: &std::path::Path, name: &str, content: &str) -> Value {
    upload_to(c, "local", path, name, content)
}

/// The hex SHA-256 of a file's contents.
pub fn file_sha256(path: &std::path::Path) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        std::fs::read(path).expect("read file to hash"),
    ))
}

/// Uploads a file into `pool` with its checksum; panics unless the daemon answers 201.
pub fn upload_to(
    c: &Client,
    pool: &str,
    path: &std::path::Path,
    name: &str,
    content: &str,
) -> Value {
    let data = std::fs::read(path).expect("read");
    let sum = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data));
    let r = c.send_bytes(
        "POST",
        &format!("/storage/pools/{pool}/upload?name={name}&content={content}&sha256={sum}"),
        &data,
        "application/octet-stream",
    );
    assert_eq!(r.status, 201, "{}", r.text);
    r.body
}

/// Where KVM is missing the tests skip with a reason instead of failing CI.
pub fn kvm_or_skip(test: &str) -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => true,
        Err(e) => {
            skip(test, &format!("/dev/kvm unusable here: {e}"));
            false
        }
    }
}

/// Uploads the micro-guests (`guest.elf`, PVH entry; `guest64.elf`, 64-bit entry) into the
/// `local` pool as `local:guest.elf` and `local:guest64.elf`.
pub fn upload_guests(c: &Client) {
    for g in ["guest.elf", "guest64.elf"] {
        upload(c, &guests().join(g), g, "snippets");
    }
}

/// The micro-guests, built once per test binary with the system gcc.
pub fn guests() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("guests-{}", std::process::id()));
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/build.sh");
        let st = std::process::Command::new(script)
            .arg(&out)
            .status()
            .expect("building micro-guests");
        assert!(st.success(), "tests/guests/build.sh failed");
        out
    })
}

/// A console client over WebSocket (`GET /api/v1/{path}` upgraded, authenticated as `c`).
pub struct Console {
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    /// Everything received so far.
    pub seen: String,
}

impl Console {
    /// Connects and checks the handshake answered 101.
    pub fn attach(d: &Daemon, c: &Client, path: &str) -> Console {
        use tungstenite::client::IntoClientRequest;
        let url = format!("{}/api/v1/{path}", d.endpoint.replacen("http", "ws", 1));
        let mut req = url.as_str().into_client_request().expect("request");
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {}", c.token.clone().expect("token"))
                .parse()
                .expect("header"),
        );
        let (ws, resp) = tungstenite::connect(req).expect("websocket handshake");
        assert_eq!(resp.status(), 101);
        Console {
            ws,
            seen: String::new(),
        }
    }

    /// Reads output frames until `want` has been seen; panics if the socket closes first.
    pub fn read_until(&mut self, want: &str) {
        while !self.seen.contains(want) {
            match self.ws.read().expect("console frame") {
                tungstenite::Message::Binary(b) => self.seen.push_str(&String::from_utf8_lossy(&b)),
                tungstenite::Message::Close(_) => panic!("closed before {want:?}: {}", self.seen),
                _ => {}
            }
        }
    }

    pub fn send(&mut self, m: tungstenite::Message) {
        self.ws.send(m).expect("send");
    }

    /// Waits for the server to close the socket.
    pub fn wait_closed(&mut self) {
        loop {
            match self.ws.read() {
                Ok(tungstenite::Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

/// Runs a closure when dropped: clean-up (an unmount, say) that must happen even when an
/// assertion fails first.
pub struct Defer<F: FnMut()>(pub F);

impl<F: FnMut()> Drop for Defer<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}
