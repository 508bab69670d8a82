//! Container templates a new user can get without making one: a catalogue of Debian releases
//! bootstrapped on this host with mmdebstrap ([`build`]), plus whatever admin-configured
//! indexes list ([`index`], fetched like any download).
//!
//! A build is cached by the hash of its inputs (recipe, mirror, mmdebstrap's version): a
//! second build of the same template copies the cached archive into the pool and costs
//! seconds; `refresh` bootstraps again for the newest packages. The template's manifest
//! (distro, release, packages, build time, SHA-256) is recorded on the volume.

pub mod build;
pub mod index;
mod recipes;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

pub use recipes::{Recipe, RECIPES};

use crate::store::{objects, Store, StoreError};

/// Store kind of template indexes.
pub const INDEX_KIND: &str = "template_index";
/// Where builds bootstrap from unless the request or the daemon's environment says otherwise.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// What went wrong with a template operation.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error(transparent)]
    Helper(#[from] crate::helpers::HelperMissing),
    #[error("building {template}: {message}")]
    Build { template: String, message: String },
    #[error("cancelled")]
    Cancelled,
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TemplateError {
    fn invalid(field: &str, message: impl Into<String>) -> Self {
        TemplateError::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Templates of one daemon: where its build cache is, what it bootstraps from.
pub struct Templates {
    cache: PathBuf,
    mirror: String,
    mmdebstrap: crate::helpers::Helper,
}

/// How to get mmdebstrap.
pub const MMDEBSTRAP_HINT: &str = "install Debian's mmdebstrap and zstd packages (apt install mmdebstrap zstd) to build templates on this host";

impl Templates {
    /// The templates of the daemon whose data directory is `data_dir`.
    pub fn at(data_dir: &Path) -> Templates {
        Templates {
            cache: data_dir.join("cache/templates"),
            mirror: std::env::var("FERRITE_TEMPLATE_MIRROR")
                .ok()
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| DEFAULT_MIRROR.to_string()),
            mmdebstrap: crate::helpers::Helper::system(
                "mmdebstrap",
                Path::new("mmdebstrap"),
                MMDEBSTRAP_HINT,
            ),
        }
    }

    /// The build recipe named `name`, or a 422 listing the ones there are.
    pub fn recipe(&self, name: &str) -> Result<&'static Recipe, TemplateError> {
        RECIPES.iter().find(|r| r.name == name).ok_or_else(|| {
            let names: Vec<&str> = RECIPES.iter().map(|r| r.name).collect();
            TemplateError::invalid(
                "/template",
                format!(
                    "no template named '{name}' can be built here; these can: {}",
                    names.join(", ")
                ),
            )
        })
    }

    /// The catalogue: built-in recipes (with whether a build is cached), then every entry of
    /// every configured index; an index that cannot be read is named in `index_errors`.
    pub fn catalog(&self, store: &Store) -> Result<Value, TemplateError> {
        let mut items: Vec<Value> = RECIPES
            .iter()
            .map(|r| {
                let mut e = r.entry();
                e["cached"] = json!(self.cached(r, &self.mirror).is_some());
                e
            })
            .collect();
        let mut errors = Vec::new();
        for ix in store.read(|c| objects::all(c, INDEX_KIND))? {
            match index::entries(&ix.id, &ix.body) {
                Ok(list) => items.extend(list),
                Err(e) => errors.push(json!({"index": ix.id, "detail": e})),
            }
        }
        let mut out = json!({"items": items});
        if !errors.is_empty() {
            out["index_errors"] = json!(errors);
        }
        Ok(out)
    }

    /// mmdebstrap, which builds need.
    pub fn builder(&self) -> &crate::helpers::Helper {
        &self.mmdebstrap
    }

    /// The mirror a build uses when the request names none.
    pub fn default_mirror(&self) -> &str {
        &self.mirror
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_recipes_name_the_known_ones() {
        let t = Templates::at(Path::new("/nonexistent"));
        let e = t.recipe("debian-11-minimal").err().map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("debian-12-minimal, debian-12-standard")),
            "{e:?}"
        );
        assert!(t.recipe("debian-13-standard").is_ok());
    }
}
