//! API token secrets: high-entropy, so a keyed hash (HMAC-SHA256 with a per-install key) is
//! the right check; argon2 would cost milliseconds per request for no gain.
//!
//! Format: `fer.<base64url(token id)>.<base64url(32 random bytes)>`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

const PREFIX: &str = "fer.";

/// A new token string for `id` and the hash to store.
pub fn generate(key: &[u8; 32], id: &str) -> (String, String) {
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let secret = B64.encode(secret);
    let token = format!("{PREFIX}{}.{secret}", B64.encode(id));
    (token, hash(key, &secret))
}

/// The stored form of a secret.
pub fn hash(key: &[u8; 32], secret: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(secret.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Splits a token string into `(id, secret)`.
pub fn parse(token: &str) -> Option<(String, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('.')?;
    let id = String::from_utf8(B64.decode(id).ok()?).ok()?;
    Some((id, secret))
}

/// Constant-time comparison of a presented secret with a stored hash.
pub fn verify(key: &[u8; 32], secret: &str, stored_hex: &str) -> bool {
    let Ok(stored) = hex::decode(stored_hex) else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(secret.as_bytes());
    mac.verify_slice(&stored).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let key = [3u8; 32];
        let (tok, h) = generate(&key, "bob@local!ci");
        let (id, secret) = parse(&tok).expect("parses");
        assert_eq!(id, "bob@local!ci");
        assert!(verify(&key, secret, &h));
        assert!(!verify(&key, "nope", &h));
        assert!(!verify(&[4u8; 32], secret, &h));
        assert!(parse("Bearer x").is_none());
    }
}
