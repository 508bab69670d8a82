//! The installer's answer file and the pieces of an install that run without a VM: fixtures
//! of good answers with their parsed form and bad answers with their errors (the spec, as
//! pve-installer keeps it), the `ferrite install` CLI, the partition table written by real
//! `sfdisk` to a disk image, and the installed host's settings and first-start seed.

use std::path::{Path, PathBuf};
use std::process::Command;

use ferrite::install::{answer, layout, target};
use ferrite::schema::Registry;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("image/answers")
}

fn bless() -> bool {
    std::env::var_os("FERRITE_BLESS").is_some()
}

fn fixtures(sub: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir().join(sub))
        .expect("fixtures dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml" || x == "json"))
        .filter(|p| !p.to_string_lossy().ends_with(".expected.json"))
        .collect();
    v.sort();
    v
}

fn parse(reg: &Registry, p: &Path) -> Result<answer::InstallAnswer, answer::AnswerError> {
    let text = std::fs::read_to_string(p).expect("read fixture");
    answer::parse(
        reg,
        &text,
        answer::Format::guess(&p.display().to_string(), &text),
    )
}

/// Compares with the checked-in expectation, or writes it under FERRITE_BLESS=1.
fn expect(path: &Path, got: &str, failures: &mut Vec<String>) {
    if bless() {
        std::fs::write(path, got).expect("bless");
        return;
    }
    match std::fs::read_to_string(path) {
        Ok(want) if want == got => {}
        Ok(want) => failures.push(format!(
            "{}:\n--- want\n{want}\n--- got\n{got}",
            path.display()
        )),
        Err(_) => failures.push(format!(
            "{} is missing (FERRITE_BLESS=1 writes it)",
            path.display()
        )),
    }
}

#[test]
fn good_answers_parse_to_their_expected_form() {
    let reg = Registry::load().expect("schema");
    let mut failures = Vec::new();
    let all = fixtures("ok");
    assert!(all.len() >= 3);
    for p in all {
        let a = parse(&reg, &p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let got = serde_json::to_string_pretty(&a).expect("json") + "\n";
        expect(&p.with_extension("expected.json"), &got, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn bad_answers_fail_naming_the_field() {
    let reg = Registry::load().expect("schema");
    let mut failures = Vec::new();
    let all = fixtures("fail");
    assert!(all.len() >= 10);
    for p in all {
        let e = match parse(&reg, &p) {
            Ok(_) => {
                failures.push(format!("{} parsed", p.display()));
                continue;
            }
            Err(e) => e,
        };
        // Every field error names a field; syntax errors carry the line.
        match &e {
            answer::AnswerError::Invalid(params) => {
                assert!(!params.is_empty());
                assert!(
                    params.iter().all(|p| p.pointer.starts_with('/')),
                    "{params:?}"
                );
            }
            answer::AnswerError::Syntax { message, .. } => assert!(message.contains("line")),
        }
        expect(&p.with_extension("err"), &format!("{e}\n"), &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_typed_answer_matches_the_schema() {
    let defs: serde_json::Value =
        serde_json::from_str(include_str!("../schema/install.json")).expect("install.json");
    let mut all = serde_json::Map::new();
    for f in [
        "common.json",
        "network.json",
        "storage.json",
        "install.json",
    ] {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema").join(f);
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(p).expect("read")).expect("json");
        all.extend(v["$defs"].as_object().cloned().unwrap_or_default());
    }
    assert!(defs["$defs"]["InstallAnswer"].is_object());
    let mut found = Vec::new();
    for (name, rust) in answer::schema_pairs() {
        let rust = serde_json::to_value(&rust).expect("schema json");
        found.extend(ferrite::schema::agree::disagreements(&all, name, &rust));
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

fn ferrite() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferrite"))
}

#[test]
fn cli_validates_hashes_and_lists_devices() {
    let ok = ferrite()
        .args(["install", "validate"])
        .arg(dir().join("ok/minimal.toml"))
        .output()
        .expect("run");
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("valid"));
    let bad = ferrite()
        .args(["install", "validate"])
        .arg(dir().join("fail/path-and-match.toml"))
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/disk: set either 'path' or 'match'"));
    // A hash made by the CLI is accepted by the answer and verifies the password.
    let mut child = ferrite()
        .args(["install", "hash-password"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"s3cret pass\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    let hash = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string();
    assert!(ferrite::access::password::verify("s3cret pass", &hash));
    let tmp = tempfile::tempdir().expect("tmp");
    let text = std::fs::read_to_string(dir().join("ok/minimal.toml")).expect("read");
    let start = text.find("$argon2id").expect("hash in fixture");
    let end = start + text[start..].find('"').expect("closing quote");
    let f = tmp.path().join("a.toml");
    std::fs::write(&f, format!("{}{hash}{}", &text[..start], &text[end..])).expect("write");
    let st = ferrite()
        .args(["install", "validate"])
        .arg(&f)
        .status()
        .expect("run");
    assert!(st.success());
    let dev = ferrite()
        .args(["install", "devices"])
        .output()
        .expect("run");
    let v: serde_json::Value = serde_json::from_slice(&dev.stdout).expect("devices JSON");
    assert!(v["disks"].as_array().is_some_and(|d| !d.is_empty()), "{v}");
    assert!(v["nics"].is_array());
}

#[test]
fn sfdisk_writes_the_planned_table_to_a_disk_image() {
    if Command::new("sfdisk").arg("--version").output().is_err() {
        panic!("sfdisk (util-linux fdisk) is required");
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let img = tmp.path().join("disk.img");
    let f = std::fs::File::create(&img).expect("create");
    f.set_len(64 << 30).expect("sparse 64 GiB");
    let reg = Registry::load().expect("schema");
    let a = parse(&reg, &dir().join("ok/full.toml")).expect("full answer");
    let plan = layout::plan(&a.disk, 64 << 30).expect("fits");
    let mut child = Command::new("sfdisk")
        .args(["--quiet"])
        .arg(&img)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("sfdisk");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(layout::sfdisk_script(&plan).as_bytes())
        .expect("script");
    assert!(child.wait().expect("wait").success());
    let out = Command::new("sfdisk")
        .arg("--json")
        .arg(&img)
        .output()
        .expect("read back");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("sfdisk json");
    let parts = v["partitiontable"]["partitions"]
        .as_array()
        .expect("partitions");
    let names: Vec<&str> = parts.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "ferrite-bios",
            layout::ESP,
            layout::ROOT_A,
            layout::ROOT_B,
            layout::VAR,
            layout::LVM
        ]
    );
    let sizes: Vec<u64> = parts.iter().filter_map(|p| p["size"].as_u64()).collect();
    // Sectors of 512 bytes: 1 MiB, 512 MiB, 4 GiB twice, 32 GiB, then the rest.
    assert_eq!(&sizes[..5], &[2048, 1 << 20, 8 << 20, 8 << 20, 64 << 20]);
    assert!(parts[0]["start"].as_u64() == Some(2048), "1 MiB aligned");
    assert_eq!(
        parts[0]["type"].as_str(),
        Some(layout::types::BIOS_BOOT),
        "BIOS boot type GUID"
    );
}

#[test]
fn the_installed_host_gets_its_settings_and_a_valid_seed() {
    let reg = Registry::load().expect("schema");
    let a = parse(&reg, &dir().join("ok/full.toml")).expect("full answer");
    let tmp = tempfile::tempdir().expect("tmp");
    let lower = tmp.path().join("lower");
    let upper = tmp.path().join("upper");
    std::fs::create_dir_all(lower.join("etc")).expect("lower");
    std::fs::create_dir_all(lower.join("usr/share/zoneinfo/Europe")).expect("zoneinfo");
    std::fs::write(lower.join("usr/share/zoneinfo/Europe/Berlin"), b"TZif").expect("tz");
    std::fs::write(
        lower.join("etc/shadow"),
        "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n",
    )
    .expect("shadow");
    let c = target::configure(&a, &lower, &upper, "52:54:00:12:34:56").expect("configure");
    let shadow = std::fs::read_to_string(upper.join("etc/shadow")).expect("shadow");
    assert!(shadow.starts_with(&format!(
        "root:{}:19000:",
        a.system.root_password_hash.as_deref().expect("hash")
    )));
    assert!(shadow.contains("daemon:*:19000"));
    assert_eq!(
        std::fs::read_link(upper.join("etc/localtime")).expect("localtime"),
        Path::new("/usr/share/zoneinfo/Europe/Berlin")
    );
    let link = std::fs::read_to_string(upper.join("etc/systemd/network/10-ferrite-nic0.link"))
        .expect("link file");
    assert!(link.contains("MACAddress=52:54:00:12:34:56") && link.contains("Name=nic0"));
    assert!(std::fs::read_to_string(upper.join("etc/default/ferrited"))
        .expect("defaults")
        .contains("--listen 0.0.0.0:8006"));
    assert!(std::fs::read_to_string(upper.join("etc/issue"))
        .expect("issue")
        .contains(&c.fingerprint));
    // The certificate on disk is the one whose fingerprint was announced.
    let data = upper.join(target::DATA_DIR);
    let (_, fp) = ferrite::tls::server_config(
        &data.join("tls/ferrited.crt"),
        &data.join("tls/ferrited.key"),
    )
    .expect("tls");
    assert_eq!(fp, c.fingerprint);
    let seed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("bootstrap/seed.json")).expect("seed"))
            .expect("seed json");
    let problems = reg.validate("BootstrapSeed", &seed, "body");
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        seed["network"]["bridges"][0]["ports"]["nic0"],
        serde_json::json!({})
    );
    assert_eq!(seed["pools"][0]["type"], "lvmthin");
    // A timezone the image does not ship is refused before anything else is written.
    let mut bad = a.clone();
    bad.system.timezone = "Mars/Olympus".into();
    let e = target::configure(&bad, &lower, &tmp.path().join("u2"), "52:54:00:12:34:56")
        .expect_err("unknown zone");
    assert!(e.to_string().contains("Mars/Olympus"), "{e}");
}

#[test]
fn prepare_iso_bakes_a_validated_answer_into_a_copy() {
    let tmp = tempfile::tempdir().expect("tmp");
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(tree.join("live")).expect("tree");
    std::fs::write(tree.join("live/marker"), b"from the original ISO").expect("marker");
    let input = tmp.path().join("in.iso");
    let st = Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-V", "FERRITE", "-o"])
        .arg(&input)
        .arg(&tree)
        .status()
        .expect("xorriso (apt install xorriso)");
    assert!(st.success());
    let output = tmp.path().join("out.iso");
    // A bad answer is refused and no ISO is written.
    let bad = ferrite()
        .args(["install", "prepare-iso", "--answer"])
        .arg(dir().join("fail/unknown-key.toml"))
        .arg(&input)
        .arg(&output)
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/system/colour"));
    assert!(!output.exists());
    let ok = ferrite()
        .args(["install", "prepare-iso", "--answer"])
        .arg(dir().join("ok/minimal.toml"))
        .arg(&input)
        .arg(&output)
        .output()
        .expect("run");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let x = tmp.path().join("x");
    let st = Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(&output)
        .args(["-extract", "/"])
        .arg(&x)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("extract");
    assert!(st.success());
    assert_eq!(
        std::fs::read(x.join("ferrite/answer.toml")).expect("baked answer"),
        std::fs::read(dir().join("ok/minimal.toml")).expect("fixture")
    );
    assert_eq!(
        std::fs::read(x.join("live/marker")).expect("original content"),
        b"from the original ISO"
    );
}
