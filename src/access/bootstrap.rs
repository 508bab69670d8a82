//! First-start setup: built-in roles and the `root@local` administrator.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde_json::json;

use super::privileges::BUILTIN_ROLES;
use super::AccessError;
use super::{password, ROOT_USER};
use crate::store::{objects, Store, StoreError};

/// Creates or refreshes the built-in roles.
pub fn builtin_roles(store: &Store) -> Result<(), StoreError> {
    store.write(|tx| {
        for r in BUILTIN_ROLES {
            let privs = super::PrivSet::from_patterns(r.patterns.iter().copied()).names();
            let body = json!({"roleid": r.name, "privileges": privs, "builtin": true, "comment": r.comment});
            match objects::get(tx, "role", r.name)? {
                Some(cur) if cur.body == body => {}
                Some(cur) => {
                    objects::update(tx, "role", r.name, Some(cur.revision), &body, &[])?;
                }
                None => {
                    objects::insert(tx, "role", r.name, r.name, None, &body, &[])?;
                }
            }
        }
        Ok(())
    })
}

/// Creates `root@local` on first start. The password is the installer's `hash` (an argon2id
/// PHC string, so the appliance never sees it in clear), or comes from
/// `FERRITE_ROOT_PASSWORD`, or is generated, printed once on stdout and written to
/// `DATA_DIR/initial-root-password` (0600).
pub fn root_user(store: &Store, data_dir: &Path, hash: Option<&str>) -> Result<(), AccessError> {
    if store
        .read(|c| objects::get(c, "user", ROOT_USER))?
        .is_some()
    {
        return Ok(());
    }
    let (pw, generated) = match (hash, std::env::var("FERRITE_ROOT_PASSWORD")) {
        (Some(_), _) => (String::new(), false),
        (None, Ok(p)) if !p.is_empty() => (p, false),
        _ => (password::generate(), true),
    };
    let hash = match hash {
        Some(h) => h.to_string(),
        None => password::hash(&pw).map_err(AccessError::Bootstrap)?,
    };
    let body = json!({
        "userid": ROOT_USER, "enabled": true, "groups": [], "tags": [], "email": null,
        "comment": "Built-in administrator", "expires_at": null, "superuser": true
    });
    store.write(|tx| {
        objects::insert(tx, "user", ROOT_USER, ROOT_USER, None, &body, &[])?;
        objects::set_secret(tx, "user", ROOT_USER, &hash)
    })?;
    if generated {
        let path = data_dir.join("initial-root-password");
        let mut f = fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| AccessError::Io(path.clone(), e))?;
        writeln!(f, "{pw}").map_err(|e| AccessError::Io(path.clone(), e))?;
        println!("created {ROOT_USER} with password: {pw}");
        println!(
            "(also written to {}; change it and delete that file)",
            path.display()
        );
    }
    tracing::info!(user = ROOT_USER, generated, "created administrator");
    Ok(())
}
