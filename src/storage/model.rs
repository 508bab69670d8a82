//! The storage vocabulary: what a volume holds and how it is stored, volume ids and names,
//! the decoded volume row, and the typed errors every storage operation returns.

use super::*;

/// What a volume holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Content {
    Images,
    Rootdir,
    Iso,
    Template,
    Backup,
    Snippets,
}

impl Content {
    pub const ALL: [Content; 6] = [
        Content::Images,
        Content::Rootdir,
        Content::Iso,
        Content::Template,
        Content::Backup,
        Content::Snippets,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Content::Images => "images",
            Content::Rootdir => "rootdir",
            Content::Iso => "iso",
            Content::Template => "template",
            Content::Backup => "backup",
            Content::Snippets => "snippets",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Content> {
        Content::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// How a volume is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Raw,
    Qcow2,
    Subvol,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Subvol => "subvol",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Format> {
        [Format::Raw, Format::Qcow2, Format::Subvol]
            .into_iter()
            .find(|f| f.as_str() == s)
    }
}

/// A request for a new volume.
#[derive(Debug, Clone)]
pub struct VolumeSpec {
    pub name: String,
    pub content: Content,
    /// `None`: the pool's default for the content type.
    pub format: Option<Format>,
    pub size: u64,
    pub owner: Option<String>,
    pub comment: Option<String>,
}

/// Why a storage operation failed. Each variant maps to one HTTP status in the API.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage pool '{0}' does not exist")]
    UnknownPool(String),
    #[error("volume '{0}' does not exist")]
    UnknownVolume(String),
    #[error("volume '{0}' already exists")]
    Exists(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The request's shape is wrong for what it names (a field its type needs or refuses):
    /// a 400 like any schema error, where `Invalid` (422) is a well-formed request the
    /// system cannot carry out.
    #[error("{field}: {message}")]
    Malformed { field: String, message: String },
    #[error("pool '{pool}' has {free} bytes free of {total}; this needs {need} bytes")]
    Full {
        pool: String,
        need: u64,
        free: u64,
        total: u64,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Tool(String),
    /// A download failed on the network side (refused, unreachable, a bad answer, cut short,
    /// stalled, an untrusted certificate).
    #[error("downloading {url}: {message}")]
    Fetch { url: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl StorageError {
    pub(super) fn invalid(field: &str, message: impl Into<String>) -> Self {
        StorageError::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// A volume id split into pool and name, checked so no name can leave its pool.
pub fn parse_volid(volid: &str) -> Result<(&str, &str), StorageError> {
    let (p, n) = volid
        .split_once(':')
        .ok_or_else(|| StorageError::invalid("/volume", format!("'{volid}' is not POOL:VOLUME")))?;
    check_name("/volume", n)?;
    Ok((p, n))
}

/// Refuses names that could escape a pool's directory, whatever the schema let through.
pub(super) fn check_name(field: &str, n: &str) -> Result<(), StorageError> {
    if n.is_empty()
        || n.contains('/')
        || n.contains("..")
        || n.starts_with('.')
        || n.contains('\0')
        || n.len() > 128
    {
        return Err(StorageError::invalid(
            field,
            format!("'{n}' is not a volume name (no '/', no '..', not starting with '.')"),
        ));
    }
    Ok(())
}

/// The state of a volume row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Creating,
    Ready,
    Deleting,
}

impl State {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            State::Creating => "creating",
            State::Ready => "ready",
            State::Deleting => "deleting",
        }
    }
}

/// A volume row decoded.
#[derive(Debug, Clone)]
pub struct VolumeRow {
    pub volid: String,
    pub pool: String,
    pub vref: VolRef,
    pub state: String,
    pub template: bool,
    pub snapshots: Vec<String>,
    pub revision: i64,
    pub body: Value,
}

impl VolumeRow {
    pub(super) fn from_object(o: &Object) -> Result<Self, StorageError> {
        let b = &o.body;
        let bad = || StorageError::Tool(format!("volume row {} is malformed", o.id));
        let content = b["content"]
            .as_str()
            .and_then(Content::parse)
            .ok_or_else(bad)?;
        let format = b["format"]
            .as_str()
            .and_then(Format::parse)
            .ok_or_else(bad)?;
        Ok(VolumeRow {
            volid: o.id.clone(),
            pool: b["pool"].as_str().unwrap_or_default().to_string(),
            vref: VolRef {
                name: b["name"].as_str().unwrap_or_default().to_string(),
                content,
                format,
                size: b["size"].as_u64().unwrap_or(0),
            },
            state: b["state"].as_str().unwrap_or("ready").to_string(),
            template: b["template"].as_bool().unwrap_or(false),
            snapshots: b["snapshots"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s["name"].as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
            revision: o.revision,
            body: o.body.clone(),
        })
    }
}
