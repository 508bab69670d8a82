//! An in-memory snapshot of everything access decisions need (users, groups, roles, ACL entries,
//! tokens), rebuilt from the store after every access change so requests never query for it.

use std::collections::HashMap;

use rusqlite::Connection;
use serde_json::Value;

use super::privileges::PrivSet;
use crate::store::{objects, StoreError};

/// The built-in administrator, which bypasses ACL checks.
pub const ROOT_USER: &str = "root@local";

#[derive(Debug, Clone)]
pub struct UserInfo {
    pub enabled: bool,
    pub expires_at: Option<i64>,
    pub groups: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub user: String,
    pub hash: String,
    pub privileges: Option<PrivSet>,
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct AclRule {
    pub path: String,
    pub principal_type: String,
    pub principal: String,
    pub role: String,
    pub propagate: bool,
}

/// The snapshot.
#[derive(Debug, Default)]
pub struct AccessState {
    pub users: HashMap<String, UserInfo>,
    pub roles: HashMap<String, PrivSet>,
    pub tokens: HashMap<String, TokenInfo>,
    /// ACL rules grouped by path.
    pub acl: HashMap<String, Vec<AclRule>>,
}

fn ts(v: &Value) -> Option<i64> {
    v.as_str().and_then(crate::time::parse_rfc3339)
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

impl AccessState {
    /// Loads the snapshot from the store.
    pub fn load(conn: &Connection) -> Result<Self, StoreError> {
        let mut st = AccessState::default();
        for u in objects::all(conn, "user")? {
            st.users.insert(
                u.id.clone(),
                UserInfo {
                    enabled: u.body["enabled"].as_bool().unwrap_or(true),
                    expires_at: ts(&u.body["expires_at"]),
                    groups: str_list(&u.body["groups"]),
                },
            );
        }
        for r in objects::all(conn, "role")? {
            let privs = str_list(&r.body["privileges"]);
            st.roles.insert(
                r.id.clone(),
                PrivSet::from_patterns(privs.iter().map(String::as_str)),
            );
        }
        for t in objects::all(conn, "token")? {
            let hash = objects::get_secret(conn, "token", &t.id)?.unwrap_or_default();
            let privileges = t.body["privileges"].as_array().map(|_| {
                PrivSet::from_patterns(str_list(&t.body["privileges"]).iter().map(String::as_str))
            });
            st.tokens.insert(
                t.id.clone(),
                TokenInfo {
                    user: t.body["user"].as_str().unwrap_or_default().to_string(),
                    hash,
                    privileges,
                    expires_at: ts(&t.body["expires_at"]),
                },
            );
        }
        for a in objects::all(conn, "acl")? {
            let rule = AclRule {
                path: a.body["path"].as_str().unwrap_or("/").to_string(),
                principal_type: a.body["principal_type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                principal: a.body["principal"].as_str().unwrap_or_default().to_string(),
                role: a.body["role"].as_str().unwrap_or_default().to_string(),
                propagate: a.body["propagate"].as_bool().unwrap_or(true),
            };
            st.acl.entry(rule.path.clone()).or_default().push(rule);
        }
        Ok(st)
    }

    /// Whether a user may log in or act now.
    pub fn user_active(&self, user: &str, now: i64) -> bool {
        self.users
            .get(user)
            .is_some_and(|u| u.enabled && u.expires_at.is_none_or(|e| e > now))
    }

    /// Privileges granted to `principal_type:principal` (and, for users, their groups) on `path`.
    ///
    /// Walks from `/` down to `path`. At each level, rules that apply (exact path, or an
    /// ancestor's rule with `propagate`) replace what was inherited; a user's own rules override
    /// its groups' rules at the same level; the `NoAccess` role clears everything.
    fn acl_privileges(
        &self,
        principal_type: &str,
        principal: &str,
        groups: &[String],
        path: &str,
    ) -> PrivSet {
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let mut current = PrivSet::EMPTY;
        for depth in 0..=comps.len() {
            let prefix = format!("/{}", comps[..depth].join("/"));
            let exact = depth == comps.len();
            let Some(rules) = self.acl.get(&prefix) else {
                continue;
            };
            let applicable = |r: &&AclRule| r.propagate || exact;
            let own: Vec<&AclRule> = rules
                .iter()
                .filter(applicable)
                .filter(|r| r.principal_type == principal_type && r.principal == principal)
                .collect();
            let chosen = if !own.is_empty() {
                own
            } else {
                rules
                    .iter()
                    .filter(applicable)
                    .filter(|r| r.principal_type == "group" && groups.contains(&r.principal))
                    .collect()
            };
            if chosen.is_empty() {
                continue;
            }
            if chosen.iter().any(|r| r.role == "NoAccess") {
                current = PrivSet::EMPTY;
                continue;
            }
            current = chosen
                .iter()
                .filter_map(|r| self.roles.get(&r.role))
                .fold(PrivSet::EMPTY, |a, b| a.union(*b));
        }
        current
    }

    /// Effective privileges of a user (optionally through a token) on `path`.
    pub fn privileges(&self, user: &str, token: Option<&str>, path: &str, now: i64) -> PrivSet {
        if !self.user_active(user, now) {
            return PrivSet::EMPTY;
        }
        let mut set = if user == ROOT_USER {
            PrivSet::all()
        } else {
            let groups = self
                .users
                .get(user)
                .map(|u| u.groups.as_slice())
                .unwrap_or(&[]);
            self.acl_privileges("user", user, groups, path)
        };
        if let Some(tid) = token {
            match self.tokens.get(tid) {
                Some(t) => {
                    if let Some(limit) = t.privileges {
                        set = set.intersect(limit);
                    }
                    // A token with ACL rules of its own is further limited to them.
                    if self
                        .acl
                        .values()
                        .flatten()
                        .any(|r| r.principal_type == "token" && r.principal == tid)
                    {
                        set = set.intersect(self.acl_privileges("token", tid, &[], path));
                    }
                }
                None => return PrivSet::EMPTY,
            }
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> AccessState {
        let reg = crate::schema::Registry::load().expect("schema");
        super::super::privileges::init(reg.privileges());
        let mut st = AccessState::default();
        for (n, p) in [
            ("Administrator", vec!["*"]),
            ("VMUser", vec!["VM.Audit", "VM.PowerMgmt"]),
            ("NoAccess", vec![]),
        ] {
            st.roles.insert(n.into(), PrivSet::from_patterns(p));
        }
        st.users.insert(
            "alice@local".into(),
            UserInfo {
                enabled: true,
                expires_at: None,
                groups: vec!["ops".into()],
            },
        );
        let rule = |path: &str, t: &str, p: &str, role: &str, propagate| AclRule {
            path: path.into(),
            principal_type: t.into(),
            principal: p.into(),
            role: role.into(),
            propagate,
        };
        st.acl.insert(
            "/vms".into(),
            vec![rule("/vms", "group", "ops", "VMUser", true)],
        );
        st.acl.insert(
            "/vms/100".into(),
            vec![rule("/vms/100", "user", "alice@local", "NoAccess", true)],
        );
        st.acl.insert(
            "/network".into(),
            vec![rule(
                "/network",
                "user",
                "alice@local",
                "Administrator",
                false,
            )],
        );
        st
    }

    #[test]
    fn propagation_override_and_noaccess() {
        let st = state();
        let vmp = PrivSet::from_patterns(["VM.PowerMgmt"]);
        assert!(st
            .privileges("alice@local", None, "/vms/101", 0)
            .contains(vmp));
        assert!(!st
            .privileges("alice@local", None, "/vms/100", 0)
            .contains(vmp));
        assert!(st.privileges("alice@local", None, "/", 0).is_empty());
        // Not propagated: applies on /network only.
        assert_eq!(
            st.privileges("alice@local", None, "/network", 0),
            PrivSet::all()
        );
        assert!(st
            .privileges("alice@local", None, "/network/vmbr0", 0)
            .is_empty());
        assert!(st
            .privileges("mallory@local", None, "/vms/101", 0)
            .is_empty());
    }
}
