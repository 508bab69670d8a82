//! Runs the real `ansible-playbook` and `ansible-inventory` (ansible-core from PyPI, in the venv
//! scripts/test makes) with the `ferrite.virt` collection from this repository.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};

use crate::common::{Daemon, ROOT_PW};

/// The venv holding ansible-core: `FERRITE_ANSIBLE_VENV`, else `target/ansible-venv`.
pub fn venv() -> PathBuf {
    let v = std::env::var_os("FERRITE_ANSIBLE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/ansible-venv"))
        });
    assert!(
        v.join("bin/ansible-playbook").exists(),
        "no ansible-playbook in {}: scripts/test installs ansible-core there \
         (python3 -m venv target/ansible-venv && target/ansible-venv/bin/pip install 'ansible-core>=2.19,<2.20')",
        v.display()
    );
    v
}

/// The directory holding `ansible_collections/ferrite/virt`.
fn collections() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/ansible")
}

/// One run's outcome: exit status, output and the PLAY RECAP totals.
pub struct Run {
    pub ok: bool,
    pub out: String,
    pub changed: u64,
    pub failed: u64,
    pub hosts: usize,
}

impl Run {
    pub fn assert_ok(&self, what: &str) -> &Self {
        assert!(
            self.ok && self.failed == 0,
            "{what}: ansible-playbook failed:\n{}",
            self.out
        );
        self
    }

    pub fn assert_changed(&self, what: &str, n: u64) -> &Self {
        self.assert_ok(what);
        assert_eq!(self.changed, n, "{what}: changed count:\n{}", self.out);
        self
    }
}

fn recap(out: &str) -> (u64, u64, usize) {
    let mut changed = 0;
    let mut failed = 0;
    let mut hosts = 0;
    let mut in_recap = false;
    for line in out.lines() {
        if line.starts_with("PLAY RECAP") {
            in_recap = true;
            continue;
        }
        if !in_recap || !line.contains("ok=") {
            continue;
        }
        hosts += 1;
        for part in line.split_whitespace() {
            let num = |p: &str| p.parse::<u64>().unwrap_or(0);
            if let Some(v) = part.strip_prefix("changed=") {
                changed += num(v);
            }
            if let Some(v) = part.strip_prefix("failed=") {
                failed += num(v);
            }
            if let Some(v) = part.strip_prefix("unreachable=") {
                failed += num(v);
            }
        }
    }
    (changed, failed, hosts)
}

/// A working directory of playbooks bound to one daemon.
pub struct Play {
    pub dir: tempfile::TempDir,
    pub endpoint: String,
    /// Connection settings through FERRITE_* (default: root's username and password).
    pub env: Vec<(String, String)>,
}

impl Play {
    pub fn new(d: &Daemon) -> Play {
        Play {
            dir: tempfile::tempdir().expect("tempdir"),
            endpoint: d.endpoint.clone(),
            env: vec![
                ("FERRITE_USERNAME".into(), "root@local".into()),
                ("FERRITE_PASSWORD".into(), ROOT_PW.into()),
            ],
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write playbook");
        p
    }

    fn command(&self, tool: &str) -> Command {
        let v = venv();
        let mut c = Command::new(v.join("bin").join(tool));
        c.current_dir(self.dir.path())
            .env("ANSIBLE_COLLECTIONS_PATH", collections())
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_FORCE_COLOR", "0")
            .env("ANSIBLE_HOME", self.dir.path().join(".ansible"))
            .env("ANSIBLE_LOCAL_TEMP", self.dir.path().join(".ansible/tmp"))
            // The module side's temp dir too: in the kernel VM the host's /root is not
            // writable, and the default is ~/.ansible/tmp.
            .env(
                "ANSIBLE_REMOTE_TMP",
                self.dir.path().join(".ansible/remote-tmp"),
            )
            .env("ANSIBLE_PYTHON_INTERPRETER", v.join("bin/python"))
            .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
            .env("ANSIBLE_INVENTORY_UNPARSED_WARNING", "0")
            .env("ANSIBLE_LOCALHOST_WARNING", "0")
            .env("FERRITE_ENDPOINT", &self.endpoint)
            .env_remove("FERRITE_TOKEN")
            .env_remove("FERRITE_USERNAME")
            .env_remove("FERRITE_PASSWORD")
            .env_remove("FERRITE_TLS_FINGERPRINT")
            // Under TCG in the kernel VM on a loaded 2-core host one argon2 login has taken
            // over 30 s (the modules' default per-request timeout): give requests room there.
            .env(
                "FERRITE_REQUEST_TIMEOUT",
                if std::env::var_os("FERRITE_IN_KERNEL_VM").is_some() {
                    "180"
                } else {
                    "30"
                },
            )
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }

    /// `ansible-playbook` of `yaml` (written as `name`) on `localhost`, or on `inventory`.
    pub fn run(&self, name: &str, yaml: &str, args: &[&str]) -> Run {
        let book = self.write(name, yaml);
        let inv = self.path("hosts.ini");
        if !inv.exists() {
            std::fs::write(&inv, "localhost ansible_connection=local\n").expect("inventory");
        }
        let out = self
            .command("ansible-playbook")
            .arg("-i")
            .arg(&inv)
            .arg(&book)
            .args(args)
            .output()
            .expect("run ansible-playbook");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let (changed, failed, hosts) = recap(&text);
        Run {
            ok: out.status.success(),
            out: text,
            changed,
            failed,
            hosts,
        }
    }

    /// `ansible-inventory --list` of an inventory file written as `name`.
    pub fn inventory(&self, name: &str, yaml: &str) -> Value {
        let p = self.write(name, yaml);
        let out = self
            .command("ansible-inventory")
            .env("ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED", "1")
            .env("ANSIBLE_INVENTORY_ENABLED", "auto")
            .arg("-i")
            .arg(&p)
            .arg("--list")
            .output()
            .expect("run ansible-inventory");
        assert!(
            out.status.success(),
            "ansible-inventory failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        plain(serde_json::from_slice(&out.stdout).expect("inventory JSON"))
    }

    /// The JSON a playbook's `record` task wrote (see [`RECORD`]).
    pub fn recorded(&self, name: &str) -> Value {
        let text = std::fs::read_to_string(self.path(name)).expect("recorded results");
        serde_json::from_str(&text).expect("recorded JSON")
    }
}

/// `ansible-inventory` marks strings from plugins `{"__ansible_unsafe": s}`; this unwraps them.
fn plain(v: Value) -> Value {
    match v {
        Value::Object(mut o) => {
            if o.len() == 1 {
                if let Some(s) = o.remove("__ansible_unsafe") {
                    return s;
                }
            }
            Value::Object(o.into_iter().map(|(k, v)| (k, plain(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(plain).collect()),
        other => other,
    }
}

/// A task that writes registered results to `{{ record_to }}`, in check mode too, and changes
/// nothing the recap counts. `{{ recorded }}` names the registered variables.
pub const RECORD: &str = r#"
    - name: Record the results for the test
      ansible.builtin.copy:
        content: "{{ dict(recorded | zip(recorded | map('extract', vars))) | to_json }}"
        dest: "{{ record_to }}"
        mode: "0600"
      check_mode: false
      changed_when: false
"#;

/// The play header every scenario shares (connection from FERRITE_*).
pub const HEAD: &str = r#"
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/ferrite.virt.ferrite:
      timeout: 120
"#;

/// Every registered result's `diff.after` and `changed`, by name.
pub fn predictions(v: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for (k, r) in v.as_object().expect("recorded object") {
        out.insert(
            k.clone(),
            json!({"changed": r["changed"], "after": r["diff"]["after"]}),
        );
    }
    Value::Object(out)
}
