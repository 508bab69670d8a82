//! One-time console tickets, for WebSocket clients that cannot send an `Authorization`
//! header (a browser's WebSocket, noVNC): an authenticated caller asks for one
//! (`POST /vms/{id}/console-ticket`), then opens the console or display with `?ticket=` in
//! the URL. A ticket is random, names the user and the one path it opens, works once and
//! for 30 seconds, and lives only in the daemon's memory (a restart voids them all). The
//! route's privilege is still checked for the user, as for any request.

use std::collections::HashMap;
use std::sync::Mutex;

use rand::RngCore;

/// How long an unused ticket stays valid.
pub const LIFETIME_SECS: i64 = 30;
/// Outstanding tickets kept at most (the oldest expired ones go first).
const MAX: usize = 10_000;

struct Issued {
    user: String,
    path: String,
    expires_at: i64,
}

#[derive(Default)]
pub struct ConsoleTickets {
    issued: Mutex<HashMap<String, Issued>>,
}

impl ConsoleTickets {
    /// A ticket for `user` to open `path` (as the request path reads, `/api/v1/...`).
    pub fn issue(&self, user: &str, path: &str, now: i64) -> (String, i64) {
        let mut raw = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let ticket = format!("fct-{}", hex::encode(raw));
        let expires_at = now + LIFETIME_SECS;
        let mut m = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, t| t.expires_at > now);
        if m.len() >= MAX {
            return (String::new(), 0);
        }
        m.insert(
            ticket.clone(),
            Issued {
                user: user.to_string(),
                path: path.to_string(),
                expires_at,
            },
        );
        (ticket, expires_at)
    }

    /// The user a ticket was issued to, if it is valid for `path` now; it is used up either
    /// way (a ticket tried on the wrong path is burnt, not left for guessing).
    pub fn redeem(&self, ticket: &str, path: &str, now: i64) -> Option<String> {
        let mut m = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        let t = m.remove(ticket)?;
        (t.path == path && t.expires_at > now).then_some(t.user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_opens_its_path_once_and_only_in_time() {
        let t = ConsoleTickets::default();
        let (a, exp) = t.issue("root@local", "/api/v1/vms/100/vnc", 1000);
        assert_eq!(exp, 1030);
        assert_eq!(
            t.redeem(&a, "/api/v1/vms/100/vnc", 1001).as_deref(),
            Some("root@local")
        );
        assert_eq!(
            t.redeem(&a, "/api/v1/vms/100/vnc", 1001),
            None,
            "used twice"
        );
        let (b, _) = t.issue("u@local", "/api/v1/vms/100/vnc", 1000);
        assert_eq!(
            t.redeem(&b, "/api/v1/vms/101/vnc", 1001),
            None,
            "another path"
        );
        assert_eq!(
            t.redeem(&b, "/api/v1/vms/100/vnc", 1001),
            None,
            "burnt by the wrong try"
        );
        let (c, _) = t.issue("u@local", "/api/v1/vms/100/vnc", 1000);
        assert_eq!(t.redeem(&c, "/api/v1/vms/100/vnc", 1030), None, "expired");
    }
}
