//! The typed guest model (`ferrite::guest::spec`) agrees with `schema/` field by field, and a
//! field renamed in a copy of the schema is caught.

use serde_json::{Map, Value};

/// The merged `$defs` of every file in `dir`.
fn defs_in(dir: &std::path::Path) -> Map<String, Value> {
    let mut defs = Map::new();
    for e in std::fs::read_dir(dir).expect("schema dir") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "json") {
            let v: Value = serde_json::from_slice(&std::fs::read(&p).expect("read")).expect("json");
            if let Some(d) = v["$defs"].as_object() {
                defs.extend(d.clone());
            }
        }
    }
    defs
}

/// Known, explained differences: (schema type, field path, why). None today: keep the
/// mechanism for the day a difference must be explained rather than removed.
const ACCEPTED: &[(&str, &str, &str)] = &[];

fn check(defs: &Map<String, Value>) -> Vec<String> {
    let mut all = Vec::new();
    let mut accepted_seen = 0;
    for (name, rust) in ferrite::guest::spec::schema_pairs() {
        let rust = serde_json::to_value(&rust).expect("schema json");
        for d in ferrite::schema::agree::disagreements(defs, name, &rust) {
            if ACCEPTED.iter().any(|(n, p, _)| *n == name && *p == d) {
                accepted_seen += 1;
            } else {
                all.push(d);
            }
        }
    }
    // An accepted difference that no longer occurs is stale: drop it from the list.
    if accepted_seen != ACCEPTED.len() {
        all.push(format!(
            "{} of {} accepted differences still occur",
            accepted_seen,
            ACCEPTED.len()
        ));
    }
    all
}

fn schema_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema")
}

#[test]
fn typed_guest_model_matches_the_schema() {
    let found = check(&defs_in(&schema_dir()));
    assert!(
        found.is_empty(),
        "typed specs disagree with schema/:\n{}",
        found.join("\n")
    );
    // The registry the daemon embeds is the same set of types.
    let reg = ferrite::schema::Registry::load().expect("registry");
    assert_eq!(check(reg.defs()), Vec::<String>::new());
}

/// Renames, retypes and re-defaults fields in a copy of the schema: each is reported.
#[test]
fn a_field_changed_in_a_copy_of_the_schema_is_caught() {
    let tmp = tempfile::tempdir().expect("tmp");
    for e in std::fs::read_dir(schema_dir()).expect("schema dir") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, tmp.path().join(p.file_name().expect("name"))).expect("copy");
    }
    let edit = |file: &str, f: &dyn Fn(&mut Value)| {
        let p = tmp.path().join(file);
        let mut v: Value = serde_json::from_slice(&std::fs::read(&p).expect("read")).expect("json");
        f(&mut v);
        std::fs::write(&p, serde_json::to_vec(&v).expect("json")).expect("write");
    };
    assert!(
        check(&defs_in(tmp.path())).is_empty(),
        "an untouched copy agrees"
    );
    edit("network.json", &|v| {
        let props = v["$defs"]["GuestNic"]["properties"]
            .as_object_mut()
            .expect("props");
        let b = props.remove("bridge").expect("bridge");
        props.insert("bridge_name".into(), b);
        v["$defs"]["GuestNic"]["required"] = serde_json::json!(["bridge_name"]);
    });
    edit("vms.json", &|v| {
        v["$defs"]["VmSpec"]["properties"]["vcpus"]["default"] = serde_json::json!(2);
        v["$defs"]["VmDisk"]["properties"]["cache"]["enum"] =
            serde_json::json!(["writeback", "writethrough", "none"]);
    });
    edit("containers.json", &|v| {
        v["$defs"]["ContainerSpec"]["properties"]["memory"]["type"] = serde_json::json!("string");
    });
    let found = check(&defs_in(tmp.path())).join("\n");
    for expect in [
        "GuestNic/bridge_name: in the schema, not in the Rust type",
        "GuestNic/bridge: in the Rust type, not in the schema",
        "VmSpec/vcpus: schema default 2, Rust default 1",
        "VmDisk/cache: schema enum",
        "ContainerSpec/memory: schema type string, Rust type integer",
        // Through the allOf that makes ContainerNic a GuestNic, and through the map of NICs.
        "ContainerNic/bridge_name: in the schema, not in the Rust type",
        "ContainerSpec/net/*/bridge_name: in the schema, not in the Rust type",
    ] {
        assert!(found.contains(expect), "missing {expect:?} in:\n{found}");
    }
}
