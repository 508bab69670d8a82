//! Stateless login tickets signed with ed25519.
//!
//! Format: `FER1.<base64url(userid "\n" expiry-unix)>.<base64url(signature)>`. Only base64url
//! characters and dots, so it is a valid RFC 6750 bearer token. Verifying a signature costs
//! tens of microseconds, so verified tickets are cached until they expire.

use std::collections::HashMap;
use std::sync::RwLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

/// Ticket lifetime: 2 hours.
pub const LIFETIME_SECS: i64 = 2 * 3600;
const PREFIX: &str = "FER1.";

/// Why a ticket was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TicketError {
    #[error("ticket is malformed")]
    Malformed,
    #[error("ticket signature is invalid")]
    BadSignature,
    #[error("ticket expired")]
    Expired,
}

/// Signs and verifies tickets.
pub struct TicketKeys {
    signing: SigningKey,
    verifying: VerifyingKey,
    cache: RwLock<HashMap<String, (String, i64)>>,
}

impl TicketKeys {
    /// Builds the keypair from a 32-byte secret seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(seed);
        let verifying = signing.verifying_key();
        TicketKeys {
            signing,
            verifying,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// Issues a ticket for `user` expiring at `expires` (Unix seconds).
    pub fn sign(&self, user: &str, expires: i64) -> String {
        let payload = format!("{user}\n{expires}");
        let sig = self.signing.sign(payload.as_bytes());
        format!(
            "{PREFIX}{}.{}",
            B64.encode(payload),
            B64.encode(sig.to_bytes())
        )
    }

    /// Returns `(user, expires)` of a valid, unexpired ticket.
    pub fn verify(&self, ticket: &str, now: i64) -> Result<(String, i64), TicketError> {
        if let Ok(cache) = self.cache.read() {
            if let Some((user, exp)) = cache.get(ticket) {
                return if *exp > now {
                    Ok((user.clone(), *exp))
                } else {
                    Err(TicketError::Expired)
                };
            }
        }
        let rest = ticket.strip_prefix(PREFIX).ok_or(TicketError::Malformed)?;
        let (p, s) = rest.split_once('.').ok_or(TicketError::Malformed)?;
        let payload = B64.decode(p).map_err(|_| TicketError::Malformed)?;
        let sig_bytes: [u8; 64] = B64
            .decode(s)
            .map_err(|_| TicketError::Malformed)?
            .try_into()
            .map_err(|_| TicketError::Malformed)?;
        self.verifying
            .verify(&payload, &Signature::from_bytes(&sig_bytes))
            .map_err(|_| TicketError::BadSignature)?;
        let text = String::from_utf8(payload).map_err(|_| TicketError::Malformed)?;
        let (user, exp) = text.split_once('\n').ok_or(TicketError::Malformed)?;
        let exp: i64 = exp.parse().map_err(|_| TicketError::Malformed)?;
        if exp <= now {
            return Err(TicketError::Expired);
        }
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() >= 100_000 {
                cache.retain(|_, (_, e)| *e > now);
                if cache.len() >= 100_000 {
                    cache.clear();
                }
            }
            cache.insert(ticket.to_string(), (user.to_string(), exp));
        }
        Ok((user.to_string(), exp))
    }
}

/// Whether a bearer credential looks like a ticket (rather than an API token).
pub fn is_ticket(s: &str) -> bool {
    s.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_tamper_expire() {
        let k = TicketKeys::from_seed(&[7u8; 32]);
        let t = k.sign("alice@local", 2000);
        assert_eq!(k.verify(&t, 1000), Ok(("alice@local".into(), 2000)));
        assert_eq!(k.verify(&t, 2000), Err(TicketError::Expired));
        // Tamper with the payload: claim to be root.
        let forged_payload = B64.encode("root@local\n2000");
        let sig = t.rsplit('.').next().unwrap_or_default();
        let forged = format!("{PREFIX}{forged_payload}.{sig}");
        assert_eq!(k.verify(&forged, 1000), Err(TicketError::BadSignature));
        // Signed by another key.
        let other = TicketKeys::from_seed(&[8u8; 32]).sign("alice@local", 2000);
        assert_eq!(k.verify(&other, 1000), Err(TicketError::BadSignature));
        assert_eq!(k.verify("FER1.garbage", 1000), Err(TicketError::Malformed));
    }
}
