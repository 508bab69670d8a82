//! Rate limiting of failed logins, per user and source address and per source alone, so
//! password guessing is slow without letting one attacker lock every user out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed attempts allowed per (user, source) within the window.
pub const PER_USER_SOURCE: usize = 5;
/// Failed attempts allowed per source within the window, across users.
pub const PER_SOURCE: usize = 20;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(300);

#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<(String, IpAddr), Vec<Instant>>>,
    by_source: Mutex<HashMap<IpAddr, Vec<Instant>>>,
}

fn prune(v: &mut Vec<Instant>, now: Instant) {
    v.retain(|t| now.duration_since(*t) < WINDOW);
}

fn retry_after(v: &[Instant], now: Instant) -> u64 {
    v.first()
        .map(|t| {
            WINDOW
                .saturating_sub(now.duration_since(*t))
                .as_secs()
                .max(1)
        })
        .unwrap_or(1)
}

impl LoginLimiter {
    /// `Err(seconds)` when the caller must wait before trying again.
    pub fn check(&self, user: &str, src: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        if let Ok(mut m) = self.failures.lock() {
            if let Some(v) = m.get_mut(&(user.to_string(), src)) {
                prune(v, now);
                if v.len() >= PER_USER_SOURCE {
                    return Err(retry_after(v, now));
                }
            }
        }
        if let Ok(mut m) = self.by_source.lock() {
            if let Some(v) = m.get_mut(&src) {
                prune(v, now);
                if v.len() >= PER_SOURCE {
                    return Err(retry_after(v, now));
                }
            }
        }
        Ok(())
    }

    /// Records a failed attempt.
    pub fn failed(&self, user: &str, src: IpAddr) {
        let now = Instant::now();
        if let Ok(mut m) = self.failures.lock() {
            if m.len() > 100_000 {
                m.retain(|_, v| {
                    prune(v, now);
                    !v.is_empty()
                });
            }
            m.entry((user.to_string(), src)).or_default().push(now);
        }
        if let Ok(mut m) = self.by_source.lock() {
            m.entry(src).or_default().push(now);
        }
    }

    /// Clears a user's failures from a source after a successful login.
    pub fn succeeded(&self, user: &str, src: IpAddr) {
        if let Ok(mut m) = self.failures.lock() {
            m.remove(&(user.to_string(), src));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_after_five() {
        let l = LoginLimiter::default();
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        for _ in 0..PER_USER_SOURCE {
            assert!(l.check("a@local", ip).is_ok());
            l.failed("a@local", ip);
        }
        assert!(l.check("a@local", ip).is_err());
        assert!(l.check("b@local", ip).is_ok());
    }
}
