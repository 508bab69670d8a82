//! A guest's snapshot list, kept in its row (`snapshots`, and `current_snapshot` where the
//! engine tracks a tree): the part of snapshot bookkeeping containers and VMs share. Taking
//! and restoring the snapshot itself (disks, memory) is the engine's.

use serde_json::{json, Value};

use crate::store::{objects, Store, StoreError};

/// The entry named `name` in a row's `snapshots`, if any.
pub fn find(body: &Value, name: &str) -> Option<Value> {
    body["snapshots"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name).cloned())
}

/// Appends `entry` to guest `id`'s snapshots in one store write; with `current`, it also
/// becomes `current_snapshot` (the parent of the next one).
pub fn record(
    store: &Store,
    kind: &str,
    id: &str,
    entry: Value,
    current: bool,
) -> Result<objects::Object, StoreError> {
    store.write(|tx| {
        let cur = objects::require(tx, kind, id)?;
        let mut b = cur.body.clone();
        let name = entry["name"].clone();
        let mut list = b["snapshots"].as_array().cloned().unwrap_or_default();
        list.push(entry);
        b["snapshots"] = Value::Array(list);
        if current {
            b["current_snapshot"] = name;
        }
        objects::update(tx, kind, id, None, &b, &cur.tags)
    })
}

/// Removes snapshot `name` from guest `id`'s list in one store write. Its children (entries
/// whose `parent` it was) take its parent, and so does `current_snapshot` if it pointed at it.
pub fn forget(store: &Store, kind: &str, id: &str, name: &str) -> Result<(), StoreError> {
    store.write(|tx| {
        let cur = objects::require(tx, kind, id)?;
        let mut b = cur.body.clone();
        let mut list = b["snapshots"].as_array().cloned().unwrap_or_default();
        let parent = list
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["parent"].clone())
            .unwrap_or(Value::Null);
        list.retain(|s| s["name"] != name);
        for s in list.iter_mut() {
            if s["parent"] == name {
                s["parent"] = parent.clone();
            }
        }
        b["snapshots"] = json!(list);
        if b["current_snapshot"] == name {
            b["current_snapshot"] = parent;
        }
        objects::update(tx, kind, id, None, &b, &cur.tags).map(|_| ())
    })
}
