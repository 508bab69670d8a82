//! The collection's generated files must match what the generator makes of `schema/` now.
//! `FERRITE_BLESS=1 cargo test -p ferrite-ansible-gen --test drift` rewrites them.

use ferrite::schema::Registry;

#[test]
fn generated_files_are_current() {
    let reg = Registry::load().expect("schema loads");
    let root = ferrite_ansible_gen::collection_dir();
    let bless = std::env::var("FERRITE_BLESS").is_ok_and(|v| v == "1");
    let mut stale = Vec::new();
    for (path, text) in ferrite_ansible_gen::generate(&reg) {
        let p = root.join(&path);
        let current = std::fs::read_to_string(&p).unwrap_or_default();
        if current == text {
            continue;
        }
        if bless {
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, text).expect("write");
        } else {
            stale.push(path);
        }
    }
    assert!(
        stale.is_empty(),
        "generated files are stale: {stale:?}\nrun FERRITE_BLESS=1 cargo test -p ferrite-ansible-gen --test drift"
    );
}

/// Every module file in the collection is either generated or listed here as hand-written
/// (none are), so no module escapes the drift check.
#[test]
fn every_module_is_generated() {
    let reg = Registry::load().expect("schema loads");
    let generated: std::collections::BTreeSet<String> = ferrite_ansible_gen::generate(&reg)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.starts_with("plugins/modules/"))
        .collect();
    let dir = ferrite_ansible_gen::collection_dir().join("plugins/modules");
    for e in std::fs::read_dir(&dir).expect("modules dir") {
        let name = e.expect("entry").file_name().to_string_lossy().into_owned();
        if name.ends_with(".py") && name != "__init__.py" {
            let p = format!("plugins/modules/{name}");
            assert!(generated.contains(&p), "{p} is not generated");
        }
    }
}
