//! Authentication (tickets, API tokens, passwords) and authorization (roles, ACLs).
//!
//! Decisions read an in-memory [`AccessState`] snapshot; handlers that change users, groups,
//! roles, ACL entries or tokens call [`Access::reload`] after their transaction commits.

pub mod bootstrap;
pub mod console_ticket;
pub mod keys;
pub mod password;
pub mod privileges;
pub mod ratelimit;
pub mod state;
pub mod ticket;
pub mod token;

use std::path::Path;
use std::sync::{Arc, RwLock};

pub use privileges::PrivSet;
pub use state::{AccessState, ROOT_USER};

use crate::store::{Store, StoreError};

/// How a caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    Ticket,
    Token,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: String,
    pub token_id: Option<String>,
    pub kind: AuthKind,
}

/// Why a request is not authenticated (always 401).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials: send 'Authorization: Bearer <ticket or token>'")]
    Missing,
    #[error("the console ticket is unknown, used, expired, or for another path")]
    BadConsoleTicket,
    #[error("the Authorization header must use the Bearer scheme")]
    Scheme,
    #[error("invalid ticket: {0}")]
    Ticket(#[from] ticket::TicketError),
    #[error("invalid, revoked or unknown API token")]
    BadToken,
    #[error("API token expired")]
    TokenExpired,
    #[error("user is disabled, expired or deleted")]
    UserInactive,
}

/// Key material, the access snapshot and the login limiter.
pub struct Access {
    tickets: ticket::TicketKeys,
    token_key: [u8; 32],
    state: RwLock<Arc<AccessState>>,
    /// Failed-login limiter.
    pub limiter: ratelimit::LoginLimiter,
    /// Token strings whose secret already checked out, with the stored hash it matched: a
    /// revoked or re-created token no longer matches the snapshot and is checked afresh.
    verified_tokens: RwLock<std::collections::HashMap<String, (String, String)>>,
    /// One-time tickets for console WebSockets (see [`console_ticket`]).
    pub console: console_ticket::ConsoleTickets,
}

/// Why access control could not be set up at daemon start.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("key material in {0}: {1}")]
    Keys(std::path::PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Io(std::path::PathBuf, std::io::Error),
    #[error("bootstrap: {0}")]
    Bootstrap(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Access {
    /// Loads (or creates) the keys in `DATA_DIR/keys` and the snapshot from the store.
    pub fn open(data_dir: &Path, store: &Store) -> Result<Self, AccessError> {
        let keydir = data_dir.join("keys");
        let seed = keys::load_or_create(&keydir.join("ticket-ed25519.key"))
            .map_err(|e| AccessError::Keys(keydir.clone(), e))?;
        let token_key = keys::load_or_create(&keydir.join("token-hmac.key"))
            .map_err(|e| AccessError::Keys(keydir.clone(), e))?;
        let access = Access {
            tickets: ticket::TicketKeys::from_seed(&seed),
            token_key,
            state: RwLock::new(Arc::new(AccessState::default())),
            limiter: ratelimit::LoginLimiter::default(),
            verified_tokens: RwLock::new(std::collections::HashMap::new()),
            console: Default::default(),
        };
        access.reload(store)?;
        Ok(access)
    }

    /// Rebuilds the snapshot from the store.
    pub fn reload(&self, store: &Store) -> Result<(), StoreError> {
        let st = store.read(AccessState::load)?;
        if let Ok(mut s) = self.state.write() {
            *s = Arc::new(st);
        }
        Ok(())
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<AccessState> {
        self.state
            .read()
            .map(|s| Arc::clone(&s))
            .unwrap_or_else(|p| Arc::clone(&p.into_inner()))
    }

    /// The key API token secrets are hashed with.
    pub fn token_key(&self) -> &[u8; 32] {
        &self.token_key
    }

    /// Issues a ticket for `user`, returning it and its expiry.
    pub fn issue_ticket(&self, user: &str) -> (String, i64) {
        let exp = crate::time::now_unix() + ticket::LIFETIME_SECS;
        (self.tickets.sign(user, exp), exp)
    }

    /// Authenticates a one-time console ticket presented on `path` (used up either way).
    pub fn authenticate_console(&self, ticket: &str, path: &str) -> Result<Principal, AuthError> {
        let now = crate::time::now_unix();
        let user = self
            .console
            .redeem(ticket, path, now)
            .ok_or(AuthError::BadConsoleTicket)?;
        if !self.snapshot().user_active(&user, now) {
            return Err(AuthError::UserInactive);
        }
        Ok(Principal {
            user,
            token_id: None,
            kind: AuthKind::Ticket,
        })
    }

    /// Authenticates an `Authorization` header value.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let cred = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(AuthError::Scheme)?
            .trim();
        let now = crate::time::now_unix();
        let st = self.snapshot();
        if ticket::is_ticket(cred) {
            let (user, _exp) = self.tickets.verify(cred, now)?;
            if !st.user_active(&user, now) {
                return Err(AuthError::UserInactive);
            }
            return Ok(Principal {
                user,
                token_id: None,
                kind: AuthKind::Ticket,
            });
        }
        let cached = self
            .verified_tokens
            .read()
            .ok()
            .and_then(|c| c.get(cred).cloned());
        let (id, info) = match cached {
            Some((id, hash)) if st.tokens.get(&id).is_some_and(|t| t.hash == hash) => {
                let info = st.tokens.get(&id).ok_or(AuthError::BadToken)?;
                (id, info)
            }
            _ => {
                let (id, secret) = token::parse(cred).ok_or(AuthError::BadToken)?;
                let info = st.tokens.get(&id).ok_or(AuthError::BadToken)?;
                if !token::verify(&self.token_key, secret, &info.hash) {
                    return Err(AuthError::BadToken);
                }
                if let Ok(mut c) = self.verified_tokens.write() {
                    if c.len() >= 10_000 {
                        c.clear();
                    }
                    c.insert(cred.to_string(), (id.clone(), info.hash.clone()));
                }
                (id, info)
            }
        };
        if info.expires_at.is_some_and(|e| e <= now) {
            return Err(AuthError::TokenExpired);
        }
        if !st.user_active(&info.user, now) {
            return Err(AuthError::UserInactive);
        }
        Ok(Principal {
            user: info.user.clone(),
            token_id: Some(id),
            kind: AuthKind::Token,
        })
    }

    /// Effective privileges of a caller on an ACL path.
    pub fn privileges(&self, p: &Principal, path: &str) -> PrivSet {
        self.snapshot().privileges(
            &p.user,
            p.token_id.as_deref(),
            path,
            crate::time::now_unix(),
        )
    }

    /// Whether a caller holds `privilege` on `path`.
    pub fn allowed(&self, p: &Principal, privilege: &str, path: &str) -> bool {
        match PrivSet::named(privilege) {
            Some(want) => self.privileges(p, path).contains(want),
            None => false,
        }
    }
}
