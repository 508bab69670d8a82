//! Network changes through the API: create, update, delete and batch-create of bridges, VLAN
//! interfaces and bonds. Each takes the engine lock, checks the change against the store and
//! a scoped kernel read, converges the kernel (undone on failure), commits the store (the
//! kernel is put back if that fails) and arms the confirm window when the change touches a
//! management interface. Handlers only parse the request and render what these return.

mod checks;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::{Desired, Failed, KernelError, ManagementSet, Network, Snapshot};
use crate::store::{objects, Object, Store, StoreError};
pub use checks::all_objects;
use checks::{
    check_lower, check_vlan, related_objects, synthetic, touched, users_of, with_defaults,
    VlanIndex,
};

/// How a field-level refusal is to be read (the API maps each to a status in one place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request contradicts itself (a bridge containing itself): fix the request.
    Malformed,
    /// The request is well formed but something it names is missing or unfit.
    Unprocessable,
    /// Something it names is taken by another object.
    Conflict,
}

/// Why a network change was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("{pointer}: {message}")]
    Field {
        refusal: Refusal,
        pointer: String,
        message: String,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unprocessable(String),
    /// The kernel refused; every step already made was undone (or `undo_errors` says not).
    #[error("the kernel refused the change ({})", .0.error)]
    Kernel(Failed),
    #[error("deleting {name}: {error}")]
    KernelRemove { name: String, error: KernelError },
    #[error("reading the kernel's links: {0}")]
    KernelRead(KernelError),
    /// A per-item refusal inside a batch; `prefix` is the item's JSON pointer (`/vlans/3`).
    #[error("{prefix}: {inner}")]
    InBatch {
        prefix: String,
        inner: Box<ChangeError>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ChangeError {
    fn field(refusal: Refusal, pointer: &str, message: impl Into<String>) -> Self {
        ChangeError::Field {
            refusal,
            pointer: pointer.to_string(),
            message: message.into(),
        }
    }

    fn in_batch(self, prefix: &str) -> Self {
        ChangeError::InBatch {
            prefix: prefix.to_string(),
            inner: Box::new(self),
        }
    }
}

/// What a create or update made.
#[derive(Debug)]
pub struct Outcome {
    pub object: Object,
    /// When the change is rolled back unless confirmed (unix seconds); set when it touched a
    /// management interface.
    pub confirm_deadline: Option<i64>,
}

/// A kernel read scoped to `names`.
pub async fn snapshot_of(net: &Network, names: &[String]) -> Result<Snapshot, ChangeError> {
    net.kernel()
        .snapshot_of(names, names, false)
        .await
        .map_err(ChangeError::KernelRead)
}

/// The VLAN interface's name when the body gives none: `PARENT.ID`, refused past 15 bytes.
fn name_vlan(body: &mut Value, pointer: &str) -> Result<(), ChangeError> {
    if body.get("name").is_some() {
        return Ok(());
    }
    let n = format!(
        "{}.{}",
        body["parent"].as_str().unwrap_or_default(),
        body["vlan_id"]
    );
    if n.len() > 15 {
        return Err(ChangeError::field(
            Refusal::Malformed,
            pointer,
            format!("the default name {n} is longer than 15 characters; give a name"),
        ));
    }
    body["name"] = json!(n);
    Ok(())
}

fn desired(kind: &str, body: &Value, pointer: &str) -> Result<Desired, ChangeError> {
    Desired::from_object(kind, body)
        .map_err(|e| ChangeError::field(Refusal::Malformed, pointer, e.to_string()))
}

fn refuse_if_pending(net: &Network, name: &str) -> Result<(), ChangeError> {
    match net.pending(name) {
        Some(p) => Err(ChangeError::Conflict(format!(
            "a change to {name} touched the management interface and awaits POST /api/v1/network/confirm (rolled back at {})",
            crate::time::unix_to_rfc3339(p.deadline)
        ))),
        None => Ok(()),
    }
}

/// If-Match is checked before the kernel is touched, not only at commit.
fn check_if_match(
    kind: &str,
    name: &str,
    expected: Option<i64>,
    actual: i64,
) -> Result<(), ChangeError> {
    match expected {
        Some(expected) if expected != actual => Err(StoreError::RevisionMismatch {
            kind: kind.into(),
            id: name.into(),
            expected,
            actual,
        }
        .into()),
        _ => Ok(()),
    }
}

/// Arms the confirm window when the change from `old` to `new` touches a management
/// interface (`mgmt`, read before the change: applying it may move the default route).
#[allow(clippy::too_many_arguments)]
fn maybe_await_confirm(
    net: &Arc<Network>,
    store: &Arc<Store>,
    mgmt: &ManagementSet,
    kind: &str,
    name: &str,
    old: Option<&Value>,
    new: Option<&Value>,
    window: Duration,
) -> Option<i64> {
    let touches = [old, new]
        .into_iter()
        .flatten()
        .any(|b| touched(name, b).iter().any(|t| mgmt.touches(t)));
    touches.then(|| {
        net.await_confirm(
            Arc::clone(store),
            name,
            kind,
            old.cloned(),
            new.cloned(),
            window,
        )
    })
}

fn tags(body: &Value) -> Vec<String> {
    objects::tags_of(body)
}

/// Creates a bridge, VLAN interface or bond from a validated body.
pub async fn create(
    net: &Arc<Network>,
    store: &Arc<Store>,
    kind: &str,
    body: Value,
    window: Duration,
) -> Result<Outcome, ChangeError> {
    let mut body = with_defaults(kind, body);
    if kind == "vlan" {
        name_vlan(&mut body, "/name")?;
    }
    let name = body["name"].as_str().unwrap_or_default().to_string();
    let _g = net.lock().await;
    let all = related_objects(store, &touched(&name, &body))?;
    if let Some((k, _)) = all.iter().find(|(_, o)| o.id == name) {
        return Err(ChangeError::Conflict(format!(
            "a {k} named {name} already exists"
        )));
    }
    refuse_if_pending(net, &name)?;
    let snap = snapshot_of(net, &touched(&name, &body)).await?;
    if snap.contains_key(&name) {
        return Err(ChangeError::Conflict(format!(
            "interface {name} already exists on the host and is not managed by Ferrite"
        )));
    }
    check_lower(kind, &name, &body, &snap, &all)?;
    if kind == "vlan" {
        check_vlan(&body, &snap, &all, &name)?;
    }
    let want = desired(kind, &body, "")?;
    let mgmt = net.management().await;
    net.apply(std::slice::from_ref(&want))
        .await
        .map_err(ChangeError::Kernel)?;
    let stored = store.write(|tx| {
        let o = objects::insert(tx, kind, &name, &name, None, &body, &tags(&body))?;
        objects::set_refs(tx, kind, &name, &super::refs_of(&body))?;
        Ok::<_, StoreError>(o)
    });
    let object = match stored {
        Ok(o) => o,
        Err(e) => {
            // The store refused: take the kernel back too, so nothing is half-made.
            let _ = super::reconcile::remove(net.kernel(), &name).await;
            return Err(e.into());
        }
    };
    let confirm_deadline =
        maybe_await_confirm(net, store, &mgmt, kind, &name, None, Some(&body), window);
    Ok(Outcome {
        object,
        confirm_deadline,
    })
}

/// Applies a validated update body (`null` clears a field) to object `name`.
#[allow(clippy::too_many_arguments)]
pub async fn update(
    net: &Arc<Network>,
    store: &Arc<Store>,
    kind: &str,
    name: &str,
    patch: &Value,
    if_match: Option<i64>,
    window: Duration,
) -> Result<Outcome, ChangeError> {
    let _g = net.lock().await;
    let cur = store.read(|c| objects::require(c, kind, name))?;
    refuse_if_pending(net, name)?;
    check_if_match(kind, name, if_match, cur.revision)?;
    let mut body = cur.body.clone();
    objects::merge_patch(&mut body, patch);
    let all = related_objects(store, &touched(name, &body))?;
    let snap = snapshot_of(net, &touched(name, &body)).await?;
    check_lower(kind, name, &body, &snap, &all)?;
    let want = desired(kind, &body, "")?;
    let mgmt = net.management().await;
    net.apply(std::slice::from_ref(&want))
        .await
        .map_err(ChangeError::Kernel)?;
    let stored = store.write(|tx| {
        let o = objects::update(tx, kind, name, Some(cur.revision), &body, &tags(&body))?;
        objects::set_refs(tx, kind, name, &super::refs_of(&body))?;
        Ok::<_, StoreError>(o)
    });
    let object = match stored {
        Ok(o) => o,
        Err(e) => {
            // Put the kernel back to the stored configuration.
            if let Ok(old) = Desired::from_object(kind, &cur.body) {
                let _ = net.apply(std::slice::from_ref(&old)).await;
            }
            return Err(e.into());
        }
    };
    let confirm_deadline = maybe_await_confirm(
        net,
        store,
        &mgmt,
        kind,
        name,
        Some(&cur.body),
        Some(&body),
        window,
    );
    Ok(Outcome {
        object,
        confirm_deadline,
    })
}

/// Deletes object `name` when nothing uses it; returns the confirm deadline, if armed.
pub async fn delete(
    net: &Arc<Network>,
    store: &Arc<Store>,
    kind: &str,
    name: &str,
    if_match: Option<i64>,
    window: Duration,
) -> Result<Option<i64>, ChangeError> {
    let _g = net.lock().await;
    let cur = store.read(|c| objects::require(c, kind, name))?;
    refuse_if_pending(net, name)?;
    check_if_match(kind, name, if_match, cur.revision)?;
    let users = users_of(
        &related_objects(store, std::slice::from_ref(&name.to_string()))?,
        name,
        name,
    );
    if !users.is_empty() {
        return Err(ChangeError::Conflict(format!(
            "{kind} {name} is in use by {}; change or delete them first",
            users.join(", ")
        )));
    }
    let mgmt = net.management().await;
    super::reconcile::remove(net.kernel(), name)
        .await
        .map_err(|error| ChangeError::KernelRemove {
            name: name.to_string(),
            error,
        })?;
    store.write(|tx| objects::delete(tx, kind, name, Some(cur.revision)))?;
    net.forget(name);
    Ok(maybe_await_confirm(
        net,
        store,
        &mgmt,
        kind,
        name,
        Some(&cur.body),
        None,
        window,
    ))
}

/// Creates many objects as one change (`bonds`, `bridges`, `vlans` of a `NetworkBatch`);
/// items may refer to each other. Nothing is created unless everything is.
pub async fn batch(
    net: &Network,
    store: &Arc<Store>,
    request: &Value,
) -> Result<Vec<Object>, ChangeError> {
    let t0 = std::time::Instant::now();
    let mut items: Vec<(&'static str, String, Value, String)> = Vec::new();
    let mut seen: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for (kind, key) in [("bond", "bonds"), ("bridge", "bridges"), ("vlan", "vlans")] {
        for (i, b) in request[key]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let prefix = format!("/{key}/{i}");
            let mut body = with_defaults(kind, b);
            if kind == "vlan" {
                name_vlan(&mut body, &format!("{prefix}/name"))?;
            }
            let name = body["name"].as_str().unwrap_or_default().to_string();
            if let Some(other) = seen.get(&name) {
                return Err(ChangeError::field(
                    Refusal::Conflict,
                    &format!("{prefix}/name"),
                    format!("{name} is also created by {other}"),
                ));
            }
            seen.insert(name.clone(), prefix.clone());
            items.push((kind, name, body, prefix));
        }
    }
    let _g = net.lock().await;
    let mgmt = net.management().await;
    for (_, n, b, prefix) in &items {
        if let Some(m) = touched(n, b).into_iter().find(|t| mgmt.touches(t)) {
            let what = if mgmt.contains(&m) {
                format!("touches the management interface {m}")
            } else {
                format!("touches {m}, which may carry management traffic (the kernel could not be read to tell)")
            };
            return Err(ChangeError::Unprocessable(format!(
                "{prefix} {what}; make that change on its own so it can be confirmed"
            )));
        }
    }
    let mut names: Vec<String> = items
        .iter()
        .flat_map(|(_, n, b, _)| touched(n, b))
        .collect();
    names.sort();
    names.dedup();
    let mut all = related_objects(store, &names)?;
    let t_related = t0.elapsed();
    let snap = snapshot_of(net, &names).await?;
    let t_snap = t0.elapsed();
    let existing: std::collections::HashMap<&str, &str> = all
        .iter()
        .map(|(k, o)| (o.id.as_str(), k.as_str()))
        .collect();
    for (_, name, _, prefix) in &items {
        if let Some(k) = existing.get(name.as_str()) {
            return Err(ChangeError::field(
                Refusal::Conflict,
                &format!("{prefix}/name"),
                format!("a {k} named {name} already exists"),
            ));
        }
        if snap.contains_key(name) {
            return Err(ChangeError::field(
                Refusal::Conflict,
                &format!("{prefix}/name"),
                format!(
                    "interface {name} already exists on the host and is not managed by Ferrite"
                ),
            ));
        }
        refuse_if_pending(net, name)?;
    }
    drop(existing);
    all.extend(items.iter().map(|(k, n, b, _)| synthetic(k, n, b)));
    let index = VlanIndex::new(&all);
    let mut wanted = Vec::with_capacity(items.len());
    for (kind, name, body, prefix) in &items {
        check_lower(kind, name, body, &snap, &all).map_err(|e| e.in_batch(prefix))?;
        if *kind == "vlan" {
            index
                .check(body, &snap, name)
                .map_err(|e| e.in_batch(prefix))?;
        }
        wanted.push(desired(kind, body, prefix)?);
    }
    let t_checks = t0.elapsed();
    net.apply(&wanted).await.map_err(ChangeError::Kernel)?;
    let t_apply = t0.elapsed();
    let stored = store.write(|tx| {
        let mut out = Vec::with_capacity(items.len());
        for (kind, name, body, _) in &items {
            out.push(objects::insert(
                tx,
                kind,
                name,
                name,
                None,
                body,
                &tags(body),
            )?);
            objects::set_refs(tx, kind, name, &super::refs_of(body))?;
        }
        Ok::<_, StoreError>(out)
    });
    let objs = match stored {
        Ok(o) => o,
        Err(e) => {
            // Take the kernel back too: VLANs first, then bridges, then bonds.
            for (_, name, _, _) in items.iter().rev() {
                let _ = super::reconcile::remove(net.kernel(), name).await;
            }
            return Err(e.into());
        }
    };
    tracing::debug!(
        objects = items.len(),
        related_ms = t_related.as_millis() as u64,
        snapshot_ms = (t_snap - t_related).as_millis() as u64,
        checks_ms = (t_checks - t_snap).as_millis() as u64,
        kernel_ms = (t_apply - t_checks).as_millis() as u64,
        store_ms = (t0.elapsed() - t_apply).as_millis() as u64,
        "network batch phases"
    );
    Ok(objs)
}
