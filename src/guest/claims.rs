//! One operation at a time per guest: a start racing a delete, or two snapshots at once,
//! would leave half-made state. An operation claims the guest's id; a second claim is refused
//! (or waits briefly) until the first guard drops.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The guests of one engine that are busy now.
#[derive(Debug)]
pub struct Claims {
    kind: &'static str,
    busy: Mutex<HashSet<String>>,
}

/// Held while an operation runs; dropping it frees the guest.
#[derive(Debug)]
pub struct Claim<'a> {
    claims: &'a Claims,
    id: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut s = self.claims.busy.lock().unwrap_or_else(|p| p.into_inner());
        s.remove(&self.id);
    }
}

/// The guest is busy with another operation (a 409 for the caller).
#[derive(Debug, thiserror::Error)]
#[error("{kind} {id} is busy with another operation; retry when it finishes")]
pub struct Busy {
    pub kind: &'static str,
    pub id: String,
}

impl Claims {
    /// `kind` names the guests in messages ("container", "vm").
    pub fn new(kind: &'static str) -> Self {
        Claims {
            kind,
            busy: Mutex::new(HashSet::new()),
        }
    }

    /// Claims `id` now, or says it is busy.
    pub fn claim(&self, id: &str) -> Result<Claim<'_>, Busy> {
        self.try_claim(id).ok_or_else(|| Busy {
            kind: self.kind,
            id: id.to_string(),
        })
    }

    /// Claims `id`, waiting up to `patience` for a short operation (a monitor's cleanup) to
    /// finish first.
    pub fn claim_within(&self, id: &str, patience: Duration) -> Result<Claim<'_>, Busy> {
        let t0 = Instant::now();
        loop {
            if let Some(c) = self.try_claim(id) {
                return Ok(c);
            }
            if t0.elapsed() > patience {
                return self.claim(id);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Claims `id` if it is free (monitors skip busy guests and look again later).
    pub fn try_claim(&self, id: &str) -> Option<Claim<'_>> {
        // A panic while holding the set leaves it consistent (insert/remove are atomic).
        let mut s = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        s.insert(id.to_string()).then(|| Claim {
            claims: self,
            id: id.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_claim_per_guest_until_dropped() {
        let c = Claims::new("vm");
        let a = c.claim("100").expect("test");
        assert_eq!(
            c.claim("100").expect_err("test").to_string(),
            "vm 100 is busy with another operation; retry when it finishes"
        );
        assert!(c.claim("101").is_ok());
        assert!(c.claim_within("100", Duration::from_millis(30)).is_err());
        drop(a);
        assert!(c.try_claim("100").is_some());
    }
}
