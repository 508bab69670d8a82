//! One id space for containers and VMs, so `100` names exactly one guest on a node.
//!
//! Ids are decimal integers from 100 up (Proxmox users expect that range). A client may ask for a
//! specific id; otherwise the next free one is allocated inside the caller's store transaction, so
//! parallel creates never race.

use rusqlite::Transaction;

use crate::store::{objects, StoreError};

/// Store kinds that live in the guest id space.
pub const GUEST_KINDS: [&str; 2] = ["container", "vm"];

/// Smallest id handed out or accepted.
pub const MIN_ID: u32 = 100;

/// Why an id could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GuestIdError {
    #[error("id {0} is already used by {1} {0}")]
    Taken(u32, String),
    #[error("id {0} is below the smallest guest id {MIN_ID}")]
    TooSmall(u32),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Returns `requested` if it is free in every guest kind, else the next free allocated id.
pub fn allocate_id(tx: &Transaction<'_>, requested: Option<u32>) -> Result<u32, GuestIdError> {
    if let Some(id) = requested {
        if id < MIN_ID {
            return Err(GuestIdError::TooSmall(id));
        }
        if let Some(kind) = owner_of(tx, id)? {
            return Err(GuestIdError::Taken(id, kind));
        }
        return Ok(id);
    }
    loop {
        let n = objects::next_id(tx, "guest")?;
        let id = u32::try_from(n + i64::from(MIN_ID) - 1).unwrap_or(u32::MAX);
        if owner_of(tx, id)?.is_none() {
            return Ok(id);
        }
    }
}

/// The kind of guest that holds `id`, if any.
pub fn owner_of(tx: &rusqlite::Connection, id: u32) -> Result<Option<String>, StoreError> {
    let key = id.to_string();
    for kind in GUEST_KINDS {
        if objects::get(tx, kind, &key)?.is_some() {
            return Ok(Some(kind.to_string()));
        }
    }
    Ok(None)
}

/// Inserts guest `id`'s row, refusing a name another guest of the kind has (409 naming it).
/// Tags are indexed from the body, as for any object.
pub fn insert_row(
    tx: &Transaction<'_>,
    kind: &'static str,
    id: &str,
    name: &str,
    body: &serde_json::Value,
) -> Result<(), super::GuestError> {
    if let Some(o) = objects::all(tx, kind)?
        .into_iter()
        .find(|o| o.body["name"] == name)
    {
        return Err(super::GuestError::Conflict(format!(
            "a {kind} named {name} already exists (id {})",
            o.id
        )));
    }
    objects::insert(tx, kind, id, name, None, body, &objects::tags_of(body))?;
    Ok(())
}

/// Removes guest `id`'s row and the references it recorded.
pub fn delete_row(tx: &Transaction<'_>, kind: &str, id: &str) -> Result<(), StoreError> {
    objects::set_refs(tx, kind, id, &[])?;
    objects::delete(tx, kind, id, None).map(|_| ())
}
