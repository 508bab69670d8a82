//! Host networking: bridges, VLAN interfaces and bonds, declared in the store and converged
//! into the kernel over netlink by a reconciler that also repairs out-of-band changes.
//!
//! Flow: an API handler takes [`Network::lock`], validates against the kernel's current view,
//! converges the kernel for the objects it changes (rolling back on failure) and only then
//! commits the store. The background reconciler converges every managed link at start, on
//! netlink link events and every 30 s, and records what it had to repair as drift.

pub mod attach;
pub mod changes;
pub mod linkdump;
pub mod model;
pub mod netlink;
pub mod ratelimit;
pub mod reconcile;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

pub use model::Desired;
pub use netlink::{Kernel, KernelError, Snapshot};
pub use reconcile::{Failed, Report};

use crate::store::{objects, Store};

/// Store kinds managed here.
pub const KINDS: [&str; 3] = ["bridge", "vlan", "bond"];

/// Reconcile state of one object, shown as `status` in the API.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub drift: Vec<String>,
    pub drift_detected_at: Option<i64>,
    pub repairs: u64,
    pub error: Option<String>,
}

/// Which interfaces carry management traffic (a change touching one is rolled back unless
/// confirmed).
#[derive(Debug, Clone, PartialEq)]
pub enum Management {
    /// No confirm windows.
    Off,
    /// This interface.
    Named(String),
    /// Whatever carries a default route, and the link holding `listen` (the API's address
    /// when it is a specific, non-loopback address in the managed namespace).
    Auto { listen: Option<std::net::IpAddr> },
}

impl Management {
    /// From the `--management-interface` setting: `auto` (also when absent), `none`, or a name.
    pub fn parse(setting: Option<&str>, listen: Option<std::net::IpAddr>) -> Management {
        match setting {
            None | Some("auto") => Management::Auto {
                listen: listen.filter(|ip| !ip.is_loopback() && !ip.is_unspecified()),
            },
            Some("none") => Management::Off,
            Some(n) => Management::Named(n.to_string()),
        }
    }
}

/// The management interfaces found at one moment (see [`Network::management`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManagementSet {
    /// The links known to carry management traffic.
    pub names: std::collections::BTreeSet<String>,
    /// The kernel could not be read: any link may carry it.
    pub unknown: bool,
}

impl ManagementSet {
    /// Whether `name` is known to carry management traffic (for listings).
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// Whether a change to `name` must be treated as touching management traffic: when it is
    /// known to, and when nothing is known.
    pub fn touches(&self, name: &str) -> bool {
        self.unknown || self.names.contains(name)
    }
}

/// A change that touched the management interface and waits for confirmation.
#[derive(Debug, Clone)]
pub struct Pending {
    pub kind: String,
    /// The object before the change; `None` when the change created it.
    pub previous: Option<Value>,
    /// The object after the change; `None` when the change deleted it.
    pub current: Option<Value>,
    pub deadline: i64,
    cancel: tokio_util::sync::CancellationToken,
}

/// The networking engine.
pub struct Network {
    kernel: Kernel,
    lock: tokio::sync::Mutex<()>,
    status: Mutex<HashMap<String, Status>>,
    /// How the interfaces carrying management traffic are found (changes touching them
    /// need a confirm).
    management: Management,
    pending: Mutex<HashMap<String, Pending>>,
}

/// The links a network object refers to: bridge ports, bond members, a VLAN's parent.
pub fn refs_of(body: &Value) -> Vec<String> {
    let mut n: Vec<String> = Vec::new();
    if let Some(p) = body["ports"].as_object() {
        n.extend(p.keys().cloned());
    }
    if let Some(m) = body["members"].as_array() {
        n.extend(m.iter().filter_map(|x| x.as_str().map(String::from)));
    }
    if let Some(p) = body["parent"].as_str() {
        n.push(p.to_string());
    }
    n
}

/// Fills `object_refs` for objects stored before it existed.
fn backfill_refs(store: &Store) -> Result<(), crate::store::StoreError> {
    store.write(|tx| {
        for kind in KINDS {
            for o in objects::all(tx, kind)? {
                objects::set_refs(tx, kind, &o.id, &refs_of(&o.body))?;
            }
        }
        Ok(())
    })
}

/// Every managed link in the store.
pub fn desired_all(store: &Store) -> Result<Vec<Desired>, crate::store::StoreError> {
    let mut out = Vec::new();
    for kind in KINDS {
        for o in store.read(|c| objects::all(c, kind))? {
            match Desired::from_object(kind, &o.body) {
                Ok(d) => out.push(d),
                Err(e) => {
                    tracing::error!(kind, id = %o.id, error = %e, "stored network object does not parse")
                }
            }
        }
    }
    Ok(out)
}

impl Network {
    /// Connects to the kernel (in `netns` if given) and starts the reconciler. `after_boot`
    /// says this is the daemon's first start since the machine booted: links do not survive a
    /// reboot, so the first pass recreates them as a boot does, and reports no drift for it.
    pub async fn start(
        netns: Option<&Path>,
        management: Management,
        store: Arc<Store>,
        after_boot: bool,
    ) -> Result<Arc<Network>, KernelError> {
        if let Err(e) = backfill_refs(&store) {
            tracing::error!(error = %e, "could not index network object references");
        }
        let (kernel, mut events) = Kernel::connect(netns)?;
        let net = Arc::new(Network {
            kernel,
            lock: tokio::sync::Mutex::new(()),
            status: Mutex::new(HashMap::new()),
            management,
            pending: Mutex::new(HashMap::new()),
        });
        let n = Arc::clone(&net);
        tokio::spawn(async move {
            let before = n.kernel.write_count();
            let t0 = std::time::Instant::now();
            n.converge_all(&store, !after_boot).await;
            tracing::info!(
                objects = desired_all(&store).map(|d| d.len()).unwrap_or(0),
                writes = n.kernel.write_count() - before,
                duration_ms = t0.elapsed().as_secs_f64() * 1000.0,
                after_boot,
                "initial reconcile finished"
            );
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            tick.tick().await;
            loop {
                tokio::select! {
                    ev = events.next() => {
                        if ev.is_none() {
                            tracing::warn!("netlink event stream ended; falling back to periodic reconcile");
                            loop {
                                tick.tick().await;
                                n.reconcile_all(&store).await;
                            }
                        }
                        // Coalesce a burst of events (one change emits several; a bulk change
                        // many): wait for 300 ms of quiet, but no more than 5 s in all.
                        let burst = tokio::time::Instant::now();
                        while burst.elapsed() < Duration::from_secs(5) {
                            match tokio::time::timeout(Duration::from_millis(300), events.next()).await {
                                Ok(Some(_)) => continue,
                                _ => break,
                            }
                        }
                    }
                    _ = tick.tick() => {}
                }
                n.reconcile_all(&store).await;
            }
        });
        Ok(net)
    }

    /// The kernel client.
    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// Serializes changes: one converge at a time.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }

    /// Converges every managed link and records drift; never fails (errors go to status).
    pub async fn reconcile_all(&self, store: &Store) {
        self.converge_all(store, true).await
    }

    /// [`Network::reconcile_all`], recording what it repaired as drift only when asked.
    async fn converge_all(&self, store: &Store, record_drift: bool) {
        let _g = self.lock.lock().await;
        let t0 = std::time::Instant::now();
        let desired = match desired_all(store) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "reconcile: cannot read the store");
                return;
            }
        };
        if desired.is_empty() {
            return;
        }
        let t_load = t0.elapsed();
        let result =
            reconcile::converge(&self.kernel, &desired, true, reconcile::Scope::Full).await;
        tracing::debug!(
            objects = desired.len(),
            load_ms = t_load.as_secs_f64() * 1000.0,
            converge_ms = (t0.elapsed() - t_load).as_secs_f64() * 1000.0,
            "reconcile phases"
        );
        match result {
            Ok(report) => {
                let now = crate::time::now_unix();
                let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
                for d in &desired {
                    let s = st.entry(d.name().to_string()).or_default();
                    s.error = None;
                    if let Some(drift) = report.drift.get(d.name()).filter(|_| record_drift) {
                        tracing::warn!(object = d.name(), drift = ?drift, "repaired drift");
                        s.drift = drift.clone();
                        s.drift_detected_at = Some(now);
                        s.repairs += 1;
                    }
                }
                if report.writes > 0 {
                    tracing::info!(writes = report.writes, "reconcile converged the kernel");
                }
            }
            Err(f) => {
                tracing::error!(object = %f.object, error = %f.error, undo_errors = ?f.undo_errors, "reconcile failed and was rolled back");
                let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
                st.entry(f.object.clone()).or_default().error = Some(f.error.to_string());
            }
        }
    }

    /// Converges the given links (the caller holds [`Network::lock`]).
    pub async fn apply(&self, desired: &[Desired]) -> Result<Report, Failed> {
        let r = reconcile::converge(&self.kernel, desired, false, reconcile::Scope::Touched).await;
        if r.is_ok() {
            let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
            for d in desired {
                st.entry(d.name().to_string()).or_default().error = None;
            }
        }
        r
    }

    /// Forgets an object's status after deletion.
    pub fn forget(&self, name: &str) {
        if let Ok(mut st) = self.status.lock() {
            st.remove(name);
        }
    }

    /// The interfaces that carry management traffic right now: the configured one, or (by
    /// default) every link with a default route plus the one holding the API's listen
    /// address; in both cases with the links beneath them. Read from the kernel at the time
    /// of each change, because the answer moves when an address or the default route moves
    /// onto a new bridge. A kernel that cannot be read gives an unknown set, which every
    /// change touches: a confirm window is the safe side when we cannot tell.
    pub async fn management(&self) -> ManagementSet {
        let found = match &self.management {
            Management::Off => return ManagementSet::default(),
            Management::Named(n) => {
                self.with_lower_links(std::iter::once(n.clone()).collect())
                    .await
            }
            Management::Auto { listen } => {
                async {
                    let idx = self.kernel.default_route_links().await?;
                    let top = self.kernel.link_names(&idx, *listen).await?;
                    self.with_lower_links(top).await
                }
                .await
            }
        };
        match found {
            Ok(names) => ManagementSet {
                names,
                unknown: false,
            },
            Err(e) => {
                tracing::warn!(error = %e, "could not read the management interfaces; every change gets a confirm window");
                ManagementSet {
                    names: match &self.management {
                        Management::Named(n) => std::iter::once(n.clone()).collect(),
                        _ => Default::default(),
                    },
                    unknown: true,
                }
            }
        }
    }

    /// `names` plus every link they sit on, followed down: a bridge's ports, a bond's
    /// members, a VLAN interface's parent. Changing any of those can cut the management
    /// address off as surely as changing the link that holds it.
    async fn with_lower_links(
        &self,
        mut names: std::collections::BTreeSet<String>,
    ) -> Result<std::collections::BTreeSet<String>, KernelError> {
        // Each round goes one level down; stacks are a few levels deep at most.
        for _ in 0..8 {
            let list: Vec<String> = names.iter().cloned().collect();
            let snap = self.kernel.snapshot_of(&list, &[], false).await?;
            let by_index: HashMap<u32, &str> =
                snap.values().map(|l| (l.index, l.name.as_str())).collect();
            let mut parents = std::collections::BTreeSet::new();
            let mut next = names.clone();
            for l in snap.values() {
                let master_in_set = l
                    .master
                    .and_then(|m| by_index.get(&m))
                    .is_some_and(|m| names.contains(*m));
                if master_in_set {
                    next.insert(l.name.clone());
                }
                // (IFLA_LINK also names a veth's peer, possibly in another namespace.)
                if names.contains(&l.name) && l.kind == "vlan" {
                    if let Some(p) = l.vlan_parent {
                        parents.insert(p);
                    }
                }
            }
            next.extend(self.kernel.link_names(&parents, None).await?);
            if next == names {
                break;
            }
            names = next;
        }
        Ok(names)
    }

    /// The pending confirmation for an object, if any.
    pub fn pending(&self, name: &str) -> Option<Pending> {
        self.pending.lock().ok()?.get(name).cloned()
    }

    /// Registers a change that must be confirmed within `timeout`, and arms its rollback.
    pub fn await_confirm(
        self: &Arc<Self>,
        store: Arc<Store>,
        name: &str,
        kind: &str,
        previous: Option<Value>,
        current: Option<Value>,
        timeout: Duration,
    ) -> i64 {
        let deadline = crate::time::now_unix() + timeout.as_secs() as i64;
        let cancel = tokio_util::sync::CancellationToken::new();
        let p = Pending {
            kind: kind.to_string(),
            previous,
            current,
            deadline,
            cancel: cancel.clone(),
        };
        if let Ok(mut m) = self.pending.lock() {
            m.insert(name.to_string(), p);
        }
        tracing::warn!(
            object = name,
            timeout_s = timeout.as_secs(),
            "change touches the management interface: rolled back unless confirmed"
        );
        let me = Arc::clone(self);
        let name = name.to_string();
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(timeout) => me.roll_back_unconfirmed(&store, &name).await,
            }
        });
        deadline
    }

    /// Confirms pending changes (all when `names` is empty); returns the confirmed names.
    pub fn confirm(&self, names: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(mut m) = self.pending.lock() {
            let keys: Vec<String> = m
                .keys()
                .filter(|k| names.is_empty() || names.contains(k))
                .cloned()
                .collect();
            for k in keys {
                if let Some(p) = m.remove(&k) {
                    p.cancel.cancel();
                    tracing::info!(object = %k, "change confirmed");
                    out.push(k);
                }
            }
        }
        out.sort();
        out
    }

    /// Puts the store and the kernel back to what they were before an unconfirmed change.
    async fn roll_back_unconfirmed(&self, store: &Store, name: &str) {
        let _g = self.lock.lock().await;
        let Some(p) = self.pending.lock().ok().and_then(|mut m| m.remove(name)) else {
            return;
        };
        tracing::warn!(
            object = name,
            "change was not confirmed in time: rolling back"
        );
        let result: Result<(), String> = async {
            match &p.previous {
                None => {
                    reconcile::remove(&self.kernel, name)
                        .await
                        .map_err(|e| e.to_string())?;
                    store
                        .write(|tx| objects::delete(tx, &p.kind, name, None).map(|_| ()))
                        .map_err(|e| e.to_string())?;
                }
                Some(prev) => {
                    let d = Desired::from_object(&p.kind, prev).map_err(|e| e.to_string())?;
                    reconcile::converge(
                        &self.kernel,
                        std::slice::from_ref(&d),
                        false,
                        reconcile::Scope::Full,
                    )
                    .await
                    .map_err(|f| f.error.to_string())?;
                    let tags: Vec<String> = prev["tags"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|t| t.as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default();
                    store
                        .write(|tx| {
                            match objects::get(tx, &p.kind, name)? {
                                Some(_) => objects::update(tx, &p.kind, name, None, prev, &tags)?,
                                None => {
                                    objects::insert(tx, &p.kind, name, name, None, prev, &tags)?
                                }
                            };
                            objects::set_refs(tx, &p.kind, name, &refs_of(prev))
                        })
                        .map_err(|e| e.to_string())?;
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::error!(object = name, error = %e, "rolling back an unconfirmed change failed");
            if let Ok(mut st) = self.status.lock() {
                st.entry(name.to_string()).or_default().error =
                    Some(format!("rolling back an unconfirmed change failed: {e}"));
            }
        }
    }

    /// The `status` object of a link (schema `LinkStatus`).
    pub fn status_json(&self, name: &str, snap: &Snapshot) -> Value {
        let st = self
            .status
            .lock()
            .ok()
            .and_then(|s| s.get(name).cloned())
            .unwrap_or_default();
        let l = snap.get(name);
        let mut v = json!({
            "present": l.is_some(),
            "drift": st.drift,
            "drift_detected_at": st.drift_detected_at.map(crate::time::unix_to_rfc3339),
            "repairs": st.repairs,
            "error": st.error,
        });
        v["confirm_deadline"] = json!(self
            .pending(name)
            .map(|p| crate::time::unix_to_rfc3339(p.deadline)));
        if let Some(l) = l {
            v["ifindex"] = json!(l.index);
            v["operstate"] = json!(l.operstate);
        }
        v
    }
}

#[cfg(test)]
mod management_set_tests {
    use super::ManagementSet;

    #[test]
    fn an_unknown_set_is_touched_by_every_change_but_lists_nothing() {
        let known = ManagementSet {
            names: ["br0".to_string()].into_iter().collect(),
            unknown: false,
        };
        assert!(known.touches("br0") && !known.touches("br1"));
        let unknown = ManagementSet {
            names: Default::default(),
            unknown: true,
        };
        assert!(unknown.touches("br1"));
        assert!(!unknown.contains("br1"));
        assert!(!ManagementSet::default().touches("br0"));
    }
}
