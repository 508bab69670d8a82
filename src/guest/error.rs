//! The error every guest engine returns. One type, so the API maps guest failures to
//! statuses in one place whatever the engine; `kind` ("container", "vm") keeps messages and
//! problem types specific.

/// What failed underneath a guest operation (an I/O error, a kernel or cgroup error, what a
/// helper printed).
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a guest operation failed; each variant is one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("{kind} {what} does not exist")]
    NotFound { kind: &'static str, what: String },
    #[error("{0}")]
    Conflict(String),
    /// The guest's configuration is at fault: the field to fix.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// Something on the host failed while acting on the guest (a 500): what was being done,
    /// and why.
    #[error("{op}: {cause}")]
    Failed {
        kind: &'static str,
        op: String,
        #[source]
        cause: Cause,
    },
    #[error(transparent)]
    Busy(#[from] super::claims::Busy),
    #[error(transparent)]
    Nic(#[from] super::nics::NicError),
    /// A stored row that no longer fits the typed model (a 500: the daemon's own data).
    #[error(transparent)]
    Spec(#[from] super::spec::SpecError),
    #[error(transparent)]
    HelperMissing(#[from] crate::helpers::HelperMissing),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl GuestError {
    pub fn not_found(kind: &'static str, what: impl Into<String>) -> Self {
        GuestError::NotFound {
            kind,
            what: what.into(),
        }
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        GuestError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn failed(kind: &'static str, op: impl Into<String>, cause: impl Into<Cause>) -> Self {
        GuestError::Failed {
            kind,
            op: op.into(),
            cause: cause.into(),
        }
    }
}
