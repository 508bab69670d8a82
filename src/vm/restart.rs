//! When to restart a guest that reset itself.
//!
//! A reset is a reboot, so the first one is restarted at once. A guest that keeps resetting
//! (a kernel that panics with `panic=1`, a broken bootloader) would otherwise be restarted
//! forever, four times a second, burning a core and flooding the log. So restarts within
//! [`WINDOW`] of each other wait longer each time (1 s, 2 s, 4 s, ... up to [`MAX_DELAY`]),
//! and after [`BURST`] of them the daemon gives up and leaves the guest stopped, saying why.
//! The same idea as systemd's `StartLimitBurst` with `RestartSec` back-off.
//!
//! The plan lives in memory and is saved in the VM's directory ([`Saved`]) whenever it
//! changes, so a daemon restarted during a back-off still makes the planned restart, and a
//! guest that keeps resetting across daemon restarts still reaches the limit.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Restarts within this long of the latest one count towards [`BURST`] and the back-off.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Restarts within [`WINDOW`] after which the next reset is not restarted.
pub const BURST: usize = 5;
/// The delay before the second restart within the window; each later one doubles it.
const FIRST_DELAY: Duration = Duration::from_secs(1);
const MAX_DELAY: Duration = Duration::from_secs(30);

/// What to do about a reset.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Restart after this delay (zero: at once).
    After(Duration),
    /// Do not restart: `BURST` restarts already happened within `WINDOW`.
    GiveUp,
}

#[derive(Default)]
struct Entry {
    /// When restarts were planned (monotonic, and wall clock for saving), oldest first,
    /// pruned to [`WINDOW`].
    recent: VecDeque<(Instant, SystemTime)>,
    /// A planned restart: when it is due (monotonic, and wall clock for the API).
    due: Option<(Instant, SystemTime)>,
}

/// One VM's plan as saved on disk: wall-clock milliseconds since the Unix epoch, since
/// monotonic instants mean nothing to the next daemon process.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// When the restarts within [`WINDOW`] were planned.
    pub resets: Vec<u64>,
    /// When the planned restart is due, if one is.
    pub due: Option<u64>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The monotonic instant of a saved wall-clock time, seen from (`now`, `wall_now`); a time
/// in the future (the clock was stepped back) counts as now, and one the monotonic clock
/// cannot reach back to as none.
fn instant_of(ms: u64, now: Instant, wall_now: SystemTime) -> Option<(Instant, SystemTime)> {
    let wall = (UNIX_EPOCH + Duration::from_millis(ms)).min(wall_now);
    let ago = wall_now.duration_since(wall).unwrap_or_default();
    Some((now.checked_sub(ago)?, wall))
}

/// Planned restarts of every VM.
#[derive(Default)]
pub struct Restarts {
    vms: Mutex<HashMap<String, Entry>>,
}

impl Restarts {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> T) -> T {
        let mut m = self.vms.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut m)
    }

    /// A guest reset at `now`: plans its restart, or gives up.
    pub fn plan(&self, id: &str, now: Instant) -> Decision {
        self.with(|m| {
            let e = m.entry(id.to_string()).or_default();
            while e
                .recent
                .front()
                .is_some_and(|(t, _)| now.saturating_duration_since(*t) > WINDOW)
            {
                e.recent.pop_front();
            }
            let n = e.recent.len();
            if n >= BURST {
                e.due = None;
                return Decision::GiveUp;
            }
            let delay = match n {
                0 => Duration::ZERO,
                n => FIRST_DELAY
                    .saturating_mul(1u32 << ((n - 1).min(16) as u32))
                    .min(MAX_DELAY),
            };
            let wall = SystemTime::now();
            e.recent.push_back((now, wall));
            e.due = Some((now + delay, wall + delay));
            Decision::After(delay)
        })
    }

    /// VMs whose planned restart is due at `now`. Each stays planned until [`Restarts::take`],
    /// so one that cannot be started this round is tried again.
    pub fn due(&self, now: Instant) -> Vec<String> {
        self.with(|m| {
            m.iter()
                .filter(|(_, e)| e.due.is_some_and(|(t, _)| t <= now))
                .map(|(id, _)| id.clone())
                .collect()
        })
    }

    /// Takes the planned restart of `id` for making: true when one was still planned (an API
    /// call may have cancelled it since [`Restarts::due`] listed it), and nothing is pending
    /// afterwards. Called under the VM's claim, as [`Restarts::forget`] is.
    pub fn take(&self, id: &str) -> bool {
        self.with(|m| m.get_mut(id).and_then(|e| e.due.take()).is_some())
    }

    /// The VM was started, stopped or deleted through the API: nothing is pending and past
    /// resets no longer count.
    pub fn forget(&self, id: &str) {
        self.with(|m| {
            m.remove(id);
        })
    }

    /// The plan of `id` for saving; `None` when there is nothing to remember.
    pub fn saved(&self, id: &str) -> Option<Saved> {
        self.with(|m| {
            m.get(id).map(|e| Saved {
                resets: e.recent.iter().map(|(_, w)| unix_ms(*w)).collect(),
                due: e.due.map(|(_, w)| unix_ms(w)),
            })
        })
    }

    /// Takes back a plan saved by an earlier daemon process, at `now`. Resets older than
    /// [`WINDOW`] no longer count; a restart that fell due while no daemon ran is due now.
    pub fn restore(&self, id: &str, saved: &Saved, now: Instant) {
        let wall_now = SystemTime::now();
        let mut e = Entry::default();
        for &ms in &saved.resets {
            match instant_of(ms, now, wall_now) {
                Some((t, w)) if now.saturating_duration_since(t) <= WINDOW => {
                    e.recent.push_back((t, w))
                }
                _ => {}
            }
        }
        e.due = saved.due.map(|ms| {
            let wall = UNIX_EPOCH + Duration::from_millis(ms);
            // Never further ahead than a back-off can be: a clock stepped back since must
            // not hold the restart for the size of the step.
            match wall.duration_since(wall_now) {
                Ok(ahead) => (now + ahead.min(MAX_DELAY), wall_now + ahead.min(MAX_DELAY)),
                Err(_) => (now, wall_now),
            }
        });
        self.with(|m| {
            m.insert(id.to_string(), e);
        })
    }

    /// When a planned restart is due, for the VM's status.
    pub fn pending_at(&self, id: &str) -> Option<SystemTime> {
        self.with(|m| m.get(id).and_then(|e| e.due.map(|(_, w)| w)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reset_restarts_at_once_then_delays_double_then_it_gives_up() {
        let r = Restarts::default();
        let t = Instant::now();
        let mut got = Vec::new();
        for i in 0..7u64 {
            got.push(r.plan("1", t + Duration::from_secs(i)));
        }
        let s = Duration::from_secs;
        assert_eq!(
            got,
            vec![
                Decision::After(Duration::ZERO),
                Decision::After(s(1)),
                Decision::After(s(2)),
                Decision::After(s(4)),
                Decision::After(s(8)),
                Decision::GiveUp,
                Decision::GiveUp,
            ]
        );
        assert_eq!(r.pending_at("1"), None);
    }

    #[test]
    fn a_saved_plan_keeps_counting_in_the_next_daemon() {
        let r = Restarts::default();
        let t = Instant::now();
        for i in 0..3u64 {
            r.plan("1", t + Duration::from_millis(i));
        }
        let saved = r.saved("1").expect("saved");
        assert_eq!(saved.resets.len(), 3);
        let due = saved.due.expect("due");
        assert!(
            due >= unix_ms(SystemTime::now()) + 1_500,
            "the third waits 2 s: {saved:?}"
        );
        // Through JSON, as on disk, into a fresh daemon's plan.
        let text = serde_json::to_string(&saved).expect("json");
        let back: Saved = serde_json::from_str(&text).expect("parse");
        let next = Restarts::default();
        let now = Instant::now();
        next.restore("1", &back, now);
        assert!(next.due(now).is_empty(), "not due before its time");
        assert_eq!(
            next.due(now + Duration::from_secs(5)),
            vec!["1".to_string()]
        );
        assert!(next.take("1"));
        // The fourth reset waits 4 s, and the sixth gives up: the count went on.
        assert_eq!(next.plan("1", now), Decision::After(Duration::from_secs(4)));
        assert_eq!(next.plan("1", now), Decision::After(Duration::from_secs(8)));
        assert_eq!(next.plan("1", now), Decision::GiveUp);
        // Resets older than the window, and a due time that passed, as after a long outage.
        let old = unix_ms(SystemTime::now()) - 2 * WINDOW.as_millis() as u64;
        next.restore(
            "2",
            &Saved {
                resets: vec![old; 5],
                due: Some(old),
            },
            now,
        );
        assert_eq!(next.due(now), vec!["2".to_string()]);
        assert!(next.take("2"));
        assert_eq!(next.plan("2", now), Decision::After(Duration::ZERO));
    }

    #[test]
    fn resets_far_apart_are_each_restarted_at_once() {
        let r = Restarts::default();
        let t = Instant::now();
        for i in 0..10u32 {
            let at = t + (WINDOW + Duration::from_secs(1)) * i;
            assert_eq!(r.plan("1", at), Decision::After(Duration::ZERO));
        }
    }

    #[test]
    fn a_restart_is_due_until_done_and_forget_clears_the_count() {
        let r = Restarts::default();
        let t = Instant::now();
        assert_eq!(r.plan("1", t), Decision::After(Duration::ZERO));
        assert_eq!(r.due(t), vec!["1".to_string()]);
        assert!(r.take("1"));
        assert!(!r.take("1"), "taken twice");
        assert!(r.due(t).is_empty());
        assert_eq!(r.plan("1", t), Decision::After(Duration::from_secs(1)));
        assert!(r.due(t).is_empty(), "due only after the delay");
        assert!(r.pending_at("1").is_some());
        assert_eq!(r.due(t + Duration::from_secs(1)), vec!["1".to_string()]);
        // Cancelled between being listed and being taken: not made.
        r.forget("1");
        assert!(!r.take("1"));
        assert!(r.due(t + Duration::from_secs(1)).is_empty());
        assert_eq!(r.plan("1", t), Decision::After(Duration::ZERO));
        // Other VMs are planned on their own.
        assert_eq!(r.plan("2", t), Decision::After(Duration::ZERO));
    }
}
