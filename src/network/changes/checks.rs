//! The rules a network change must pass before the kernel is touched: lower links (bridge
//! ports, bond members) exist, are not bridges and belong to nothing else; VLAN parents exist
//! and a (parent, id) pair is used once; VLAN settings need a VLAN-aware bridge. Plus the
//! defaults a stored body is completed with and the objects a change affects.

use serde_json::{json, Value};

use super::{ChangeError, Refusal};
use crate::network::{Snapshot, KINDS};
use crate::store::{objects, Store};

/// The links a change to `body` touches: itself, its ports or members, its parent.
pub(super) fn touched(name: &str, body: &Value) -> Vec<String> {
    let mut n = vec![name.to_string()];
    n.extend(super::super::refs_of(body));
    n
}

/// Fills defaults so stored bodies are complete (reads and plans never guess).
pub(super) fn with_defaults(kind: &str, mut body: Value) -> Value {
    if let Some(m) = body.as_object_mut() {
        let defaults: &[(&str, Value)] = match kind {
            "bridge" => &[
                ("ports", json!({})),
                ("vlan_aware", json!(false)),
                ("stp", json!(false)),
                ("addresses", json!([])),
                ("autostart", json!(true)),
                ("tags", json!([])),
            ],
            "vlan" => &[("addresses", json!([])), ("tags", json!([]))],
            _ => &[
                ("members", json!([])),
                ("miimon", json!(100)),
                ("tags", json!([])),
            ],
        };
        for (k, v) in defaults {
            m.entry(k.to_string()).or_insert_with(|| v.clone());
        }
    }
    body
}

/// Which managed object, if any, uses `link` as a port, member or parent (other than `except`).
pub(super) fn users_of(all: &[(String, objects::Object)], link: &str, except: &str) -> Vec<String> {
    all.iter()
        .filter(|(_, o)| o.id != except)
        .filter(|(kind, o)| match kind.as_str() {
            "bridge" => o.body["ports"].get(link).is_some(),
            "bond" => o.body["members"]
                .as_array()
                .is_some_and(|m| m.iter().any(|x| x == link)),
            "container" | "vm" => o.body["net"]
                .as_object()
                .is_some_and(|n| n.values().any(|x| x["bridge"] == link)),
            _ => o.body["parent"] == link,
        })
        .map(|(kind, o)| format!("{kind} {}", o.id))
        .collect()
}

pub fn all_objects(store: &Store) -> Result<Vec<(String, objects::Object)>, ChangeError> {
    let mut out = Vec::new();
    for k in KINDS {
        for o in store.read(|c| objects::all(c, k))? {
            out.push((k.to_string(), o));
        }
    }
    Ok(out)
}

/// The objects that matter to a change of `names`: those named so, and those referring to
/// them (found through the reference index, not by scanning every object).
pub(super) fn related_objects(
    store: &Store,
    names: &[String],
) -> Result<Vec<(String, objects::Object)>, ChangeError> {
    // Large changes (batches): one pass over every network object beats thousands of
    // point lookups that mostly miss.
    if names.len() > 64 {
        let wanted: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
        return Ok(all_objects(store)?
            .into_iter()
            .filter(|(_, o)| {
                wanted.contains(o.id.as_str())
                    || super::super::refs_of(&o.body)
                        .iter()
                        .any(|r| wanted.contains(r.as_str()))
            })
            .collect());
    }
    let mut out: Vec<(String, objects::Object)> = Vec::new();
    let mut have: std::collections::HashSet<(String, String)> = std::collections::HashSet::new();
    let mut push = |kind: &str,
                    id: &str,
                    out: &mut Vec<(String, objects::Object)>|
     -> Result<(), ChangeError> {
        if have.contains(&(kind.to_string(), id.to_string())) {
            return Ok(());
        }
        if let Some(o) = store.get_cached(kind, id)? {
            have.insert((kind.to_string(), id.to_string()));
            out.push((kind.to_string(), (*o).clone()));
        }
        Ok(())
    };
    // One read transaction for every name's referrers.
    let refs = store.read(|c| {
        names
            .iter()
            .map(|n| objects::referrers(c, n))
            .collect::<Result<Vec<_>, _>>()
    })?;
    for (n, referrers) in names.iter().zip(refs) {
        for k in KINDS {
            push(k, n, &mut out)?;
        }
        for (k, id) in referrers {
            push(&k, &id, &mut out)?;
        }
    }
    Ok(out)
}

/// Checks a bridge's ports or a bond's members against the kernel and the other objects.
pub(super) fn check_lower(
    kind: &str,
    name: &str,
    body: &Value,
    snap: &Snapshot,
    all: &[(String, objects::Object)],
) -> Result<(), ChangeError> {
    let links: Vec<String> = match kind {
        "bridge" => body["ports"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default(),
        "bond" => body["members"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
        _ => return Ok(()),
    };
    let master_index = snap.get(name).map(|l| l.index);
    for (i, link) in links.iter().enumerate() {
        let pointer = if kind == "bridge" {
            format!("/ports/{link}")
        } else {
            format!("/members/{i}")
        };
        if link == name {
            return Err(ChangeError::field(
                Refusal::Malformed,
                &pointer,
                format!("a {kind} cannot contain itself"),
            ));
        }
        let managed_kind = all
            .iter()
            .find(|(_, o)| o.id == *link)
            .map(|(k, _)| k.as_str());
        let kernel = snap.get(link);
        if managed_kind == Some("bridge") || kernel.is_some_and(|l| l.kind == "bridge") {
            return Err(ChangeError::field(
                Refusal::Malformed,
                &pointer,
                format!(
                    "{link} is a bridge and cannot be a {}",
                    if kind == "bridge" {
                        "bridge port"
                    } else {
                        "bond member"
                    }
                ),
            ));
        }
        if kernel.is_none() && managed_kind.is_none() {
            return Err(ChangeError::field(
                Refusal::Unprocessable,
                &pointer,
                format!("interface {link} does not exist"),
            ));
        }
        let others = users_of(all, link, name)
            .into_iter()
            .filter(|u| !u.starts_with("vlan "))
            .collect::<Vec<_>>();
        if !others.is_empty() {
            return Err(ChangeError::field(
                Refusal::Conflict,
                &pointer,
                format!("{link} is already used by {}", others.join(", ")),
            ));
        }
        if let Some(m) = kernel.and_then(|l| l.master) {
            if Some(m) != master_index {
                let mname = snap
                    .values()
                    .find(|l| l.index == m)
                    .map(|l| l.name.clone())
                    .unwrap_or_else(|| format!("ifindex {m}"));
                return Err(ChangeError::field(
                    Refusal::Conflict,
                    &pointer,
                    format!("{link} is already attached to {mname}"),
                ));
            }
        }
    }
    if kind == "bridge" && body["vlan_aware"] != json!(true) {
        let uses_vlans = body["pvid"].is_number()
            || body["vlans"].as_array().is_some_and(|a| !a.is_empty())
            || body["ports"].as_object().is_some_and(|p| {
                p.values().any(|s| {
                    s.get("pvid").is_some() || s["vlans"].as_array().is_some_and(|a| !a.is_empty())
                })
            });
        if uses_vlans {
            return Err(ChangeError::field(
                Refusal::Unprocessable,
                "/vlan_aware",
                "VLAN settings on the bridge or its ports need vlan_aware: true",
            ));
        }
    }
    Ok(())
}

/// VLAN parents and (parent, id) pairs indexed once, so checking a batch of N VLANs is linear.
pub(super) struct VlanIndex<'a> {
    ids: std::collections::HashSet<&'a str>,
    pairs: std::collections::HashMap<(String, String), Vec<&'a str>>,
}

impl<'a> VlanIndex<'a> {
    pub(super) fn new(all: &'a [(String, objects::Object)]) -> Self {
        let mut pairs: std::collections::HashMap<(String, String), Vec<&'a str>> =
            std::collections::HashMap::new();
        for (k, o) in all {
            if k == "vlan" {
                pairs
                    .entry((
                        o.body["parent"].as_str().unwrap_or_default().to_string(),
                        o.body["vlan_id"].to_string(),
                    ))
                    .or_default()
                    .push(o.id.as_str());
            }
        }
        VlanIndex {
            ids: all.iter().map(|(_, o)| o.id.as_str()).collect(),
            pairs,
        }
    }

    /// The same rules as [`check_vlan`].
    pub(super) fn check(
        &self,
        body: &Value,
        snap: &Snapshot,
        name: &str,
    ) -> Result<(), ChangeError> {
        let parent = body["parent"].as_str().unwrap_or_default();
        if snap.get(parent).is_none() && !self.ids.contains(parent) {
            return Err(ChangeError::field(
                Refusal::Unprocessable,
                "/parent",
                format!("parent interface {parent} does not exist"),
            ));
        }
        let key = (parent.to_string(), body["vlan_id"].to_string());
        if let Some(other) = self
            .pairs
            .get(&key)
            .and_then(|v| v.iter().find(|id| **id != name))
        {
            return Err(ChangeError::Conflict(format!(
                "VLAN {} on {parent} already exists as {other}",
                body["vlan_id"]
            )));
        }
        Ok(())
    }
}

pub(super) fn check_vlan(
    body: &Value,
    snap: &Snapshot,
    all: &[(String, objects::Object)],
    name: &str,
) -> Result<(), ChangeError> {
    let parent = body["parent"].as_str().unwrap_or_default();
    if snap.get(parent).is_none() && !all.iter().any(|(_, o)| o.id == parent) {
        return Err(ChangeError::field(
            Refusal::Unprocessable,
            "/parent",
            format!("parent interface {parent} does not exist"),
        ));
    }
    if let Some((_, o)) = all.iter().find(|(k, o)| {
        k == "vlan"
            && o.id != name
            && o.body["parent"] == parent
            && o.body["vlan_id"] == body["vlan_id"]
    }) {
        return Err(ChangeError::Conflict(format!(
            "VLAN {} on {parent} already exists as {}",
            body["vlan_id"], o.id
        )));
    }
    Ok(())
}

pub(super) fn synthetic(kind: &str, name: &str, body: &Value) -> (String, objects::Object) {
    (
        kind.to_string(),
        objects::Object {
            kind: kind.to_string(),
            id: name.to_string(),
            name: name.to_string(),
            owner: None,
            revision: 0,
            body: body.clone(),
            tags: Vec::new(),
            created_at: 0,
            updated_at: 0,
            rendered: std::sync::OnceLock::new(),
        },
    )
}
