//! The managed resources as `schema/catalog.json` declares them (shared with the Ansible
//! collection and checked against the route table by `ansible/generator/tests/catalog.rs`),
//! turned into the provider's [`ResourceDef`]s. What only Terraform needs stays here: how a
//! path parameter is typed and described, and the notes its docs add to a description.

use std::sync::OnceLock;

use serde::Deserialize;

use crate::resources::{Parent, ResourceDef, Update};

const CATALOG: &str = include_str!("../../schema/catalog.json");

#[derive(Deserialize)]
struct File {
    resources: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    terraform: Option<String>,
    description: String,
    collection: String,
    id_field: String,
    #[serde(default)]
    parents: Vec<String>,
    create: String,
    create_response: Option<String>,
    update: Option<serde_json::Value>,
    read: String,
    #[serde(default)]
    read_in_list: bool,
    #[serde(default)]
    hidden: Vec<String>,
    #[serde(default)]
    guest: bool,
    secret_route: Option<SecretRoute>,
    upload_route: Option<String>,
}

#[derive(Deserialize)]
struct SecretRoute {
    field: String,
    path: String,
}

/// How Terraform presents each path parameter a catalog entry names as a parent.
const PARENTS: &[Parent] = &[
    Parent {
        name: "pool",
        number: false,
        one_of: &[],
        description: "The pool holding the volume.",
    },
    Parent {
        name: "guest_type",
        number: false,
        one_of: &["container", "vm"],
        description: "`container` or `vm`.",
    },
    Parent {
        name: "guest_id",
        number: true,
        one_of: &[],
        description: "The guest's id.",
    },
];

/// What the Terraform docs add to a catalog description (Terraform-specific behaviour).
const NOTES: &[(&str, &str)] = &[
    ("ferrite_container", "`running` is its desired power state."),
    ("ferrite_vm", "`running` is its desired power state."),
    (
        "ferrite_file",
        "It is read from the machine running Terraform (`source`); set \
         `sha256 = filesha256(source)` so that a changed file replaces the volume.",
    ),
    (
        "ferrite_api_token",
        "Terraform keeps it (`token`) in state.",
    ),
    (
        "ferrite_user",
        "`password` is write-only: changes are sent, reads keep it.",
    ),
    (
        "ferrite_snapshot",
        "A running VM is paused for the moment of the snapshot and resumed; a running \
         container is frozen by the daemon.",
    ),
];

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn leak_all(v: Vec<String>) -> &'static [&'static str] {
    Box::leak(
        v.into_iter()
            .map(leak)
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    )
}

fn update_of(v: Option<&serde_json::Value>) -> Result<Update, String> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(Update::None),
        Some(serde_json::Value::String(s)) if s == "resize" => Ok(Update::Resize),
        Some(v) => match v["put"].as_str() {
            Some(t) => Ok(Update::Put(leak(t.to_string()))),
            None => Err(format!(
                "update {v} is neither null, \"resize\" nor {{\"put\": TYPE}}"
            )),
        },
    }
}

fn parse() -> Result<Vec<ResourceDef>, String> {
    let file: File =
        serde_json::from_str(CATALOG).map_err(|e| format!("schema/catalog.json: {e}"))?;
    let mut out = Vec::new();
    for e in file.resources {
        // Entries without a Terraform type are for the Ansible collection only.
        let Some(name) = e.terraform else { continue };
        let note = NOTES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t);
        let description = match note {
            Some(n) => format!("{} {n}", e.description),
            None => e.description,
        };
        let parents: Vec<Parent> = e
            .parents
            .iter()
            .map(|p| {
                PARENTS
                    .iter()
                    .find(|x| x.name == p)
                    .copied()
                    .ok_or_else(|| format!("{name}: parent {p} has no Terraform presentation"))
            })
            .collect::<Result<_, _>>()?;
        out.push(ResourceDef {
            update: update_of(e.update.as_ref()).map_err(|m| format!("{name}: {m}"))?,
            name: leak(name),
            description: leak(description),
            collection: leak(e.collection),
            create: leak(e.create),
            create_response: e.create_response.map(leak),
            read: leak(e.read),
            key: leak(e.id_field),
            parents: Box::leak(parents.into_boxed_slice()),
            read_in_list: e.read_in_list,
            hidden: leak_all(e.hidden),
            guest: e.guest,
            secret_route: e.secret_route.map(|s| (leak(s.field), leak(s.path))),
            upload_route: e.upload_route.map(leak),
        });
    }
    Ok(out)
}

/// Every managed resource, in catalog order. The catalog is embedded at build time and
/// checked by tests, so a failure here is a build defect.
pub fn resources() -> &'static [ResourceDef] {
    static DEFS: OnceLock<Vec<ResourceDef>> = OnceLock::new();
    DEFS.get_or_init(|| match parse() {
        Ok(v) => v,
        Err(e) => panic!("embedded catalog: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_terraform_entry_loads_with_its_parents() {
        let r = resources();
        assert_eq!(r.len(), 14);
        let vol = r
            .iter()
            .find(|d| d.name == "ferrite_volume")
            .expect("volume");
        assert!(matches!(vol.update, Update::Resize));
        assert_eq!(vol.parents.len(), 1);
        let snap = r
            .iter()
            .find(|d| d.name == "ferrite_snapshot")
            .expect("snapshot");
        assert!(snap.parents[1].number && snap.read_in_list);
        let user = r.iter().find(|d| d.name == "ferrite_user").expect("user");
        assert_eq!(user.secret_route, Some(("password", "password")));
    }
}
