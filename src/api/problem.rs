//! The one place where domain errors become HTTP statuses and RFC 9457 problem documents.
//! The client gets `detail`; the log gets `log_detail` too (never shown to clients).

use serde_json::{json, Value};

use crate::schema::InvalidParam;
use crate::store::StoreError;
use crate::tasks::TaskError;

/// An error response.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    /// Slug of the problem type: `https://ferrite.dev/problems/<kind>`.
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub invalid: Vec<InvalidParam>,
    pub retry_after: Option<u64>,
    pub allow: Option<String>,
    /// Server-side detail for the log only.
    pub log_detail: Option<String>,
}

impl ApiError {
    pub fn new(
        status: u16,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            kind,
            title,
            detail: detail.into(),
            invalid: Vec::new(),
            retry_after: None,
            allow: None,
            log_detail: None,
        }
    }

    pub fn invalid(detail: impl Into<String>, invalid: Vec<InvalidParam>) -> Self {
        let mut e = Self::new(400, "invalid-request", "Invalid request", detail);
        e.invalid = invalid;
        e
    }

    pub fn field(location: &str, pointer: &str, message: impl Into<String>) -> Self {
        let param = InvalidParam {
            pointer: pointer.to_string(),
            location: location.to_string(),
            message: message.into(),
        };
        Self::invalid(param.summary(), vec![param])
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(401, "unauthenticated", "Authentication required", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(403, "forbidden", "Permission denied", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, "not-found", "Not found", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(409, "conflict", "Conflict", detail)
    }

    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(
            422,
            "unprocessable",
            "Request cannot be carried out",
            detail,
        )
    }

    /// 422 naming one body field: valid, but impossible with this value.
    pub fn unprocessable_field(pointer: String, message: String) -> Self {
        let mut a = Self::unprocessable(format!("{pointer}: {message}"));
        a.invalid = vec![InvalidParam {
            pointer,
            location: "body".into(),
            message,
        }];
        a
    }

    pub fn busy(detail: impl Into<String>, retry_after: u64) -> Self {
        let mut e = Self::new(503, "busy", "Service busy", detail);
        e.retry_after = Some(retry_after);
        e
    }

    pub fn internal(log: impl Into<String>) -> Self {
        let mut e = Self::new(
            500,
            "internal",
            "Internal error",
            "the daemon failed to complete the request; see its log for this request id",
        );
        e.log_detail = Some(log.into());
        e
    }

    /// The problem document.
    pub fn body(&self, instance: &str, request_id: &str) -> Value {
        let mut v = json!({
            "type": format!("https://ferrite.dev/problems/{}", self.kind),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
            "request_id": request_id,
        });
        if !self.invalid.is_empty() {
            v["invalid_params"] = serde_json::to_value(&self.invalid).unwrap_or(Value::Null);
        }
        v
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::NotFound { .. } => ApiError::not_found(e.to_string()),
            StoreError::Exists { .. } => {
                let mut a = ApiError::conflict(e.to_string());
                a.kind = "exists";
                a.title = "Already exists";
                a
            }
            StoreError::RevisionMismatch { .. } => ApiError::new(
                412,
                "precondition-failed",
                "Precondition failed",
                format!("{e}: re-read the object and retry with its current ETag"),
            ),
            StoreError::Busy => ApiError::busy("the store is busy", 1),
            _ => ApiError::internal(e.to_string()),
        }
    }
}

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> Self {
        match e {
            TaskError::Busy(_) => ApiError::busy(e.to_string(), 5),
            TaskError::NotFound(_) => ApiError::not_found(e.to_string()),
            TaskError::Finished(_) => ApiError::conflict(e.to_string()),
            TaskError::Store(s) => s.into(),
        }
    }
}

impl From<crate::storage::StorageError> for ApiError {
    fn from(e: crate::storage::StorageError) -> Self {
        use crate::storage::StorageError as S;
        match e {
            S::UnknownPool(_) | S::UnknownVolume(_) => ApiError::not_found(e.to_string()),
            S::Exists(_) => {
                let mut a = ApiError::conflict(e.to_string());
                a.kind = "exists";
                a.title = "Already exists";
                a
            }
            S::Conflict(_) => ApiError::conflict(e.to_string()),
            S::Invalid { field, message } => ApiError::unprocessable_field(field, message),
            S::Malformed { field, message } => ApiError::field("body", &field, message),
            S::Full { .. } => ApiError::new(
                507,
                "insufficient-storage",
                "Insufficient storage",
                e.to_string(),
            ),
            S::Store(s) => s.into(),
            S::Fetch { .. } => {
                ApiError::new(502, "download-failed", "Download failed", e.to_string())
            }
            S::Io { .. } | S::Tool(_) => {
                let mut a = ApiError::new(
                    500,
                    "storage-failed",
                    "Storage operation failed",
                    e.to_string(),
                );
                a.log_detail = Some(e.to_string());
                a
            }
        }
    }
}

impl From<crate::templates::TemplateError> for ApiError {
    fn from(e: crate::templates::TemplateError) -> Self {
        use crate::templates::TemplateError as T;
        match e {
            T::Invalid { field, message } => ApiError::unprocessable_field(field, message),
            T::Helper(h) => h.into(),
            T::Storage(s) => s.into(),
            T::Store(s) => s.into(),
            T::Cancelled => ApiError::conflict(e.to_string()),
            T::Build { .. } => {
                let mut a = ApiError::new(
                    500,
                    "template-build-failed",
                    "Template build failed",
                    e.to_string(),
                );
                a.log_detail = Some(e.to_string());
                a
            }
        }
    }
}

impl From<crate::helpers::HelperMissing> for ApiError {
    /// 503: the daemon cannot do this until the helper is installed (no `Retry-After`: waiting
    /// does not fix it).
    fn from(e: crate::helpers::HelperMissing) -> Self {
        ApiError::new(
            503,
            "helper-missing",
            "Helper binary missing",
            e.to_string(),
        )
    }
}

impl From<crate::network::changes::ChangeError> for ApiError {
    fn from(e: crate::network::changes::ChangeError) -> Self {
        use crate::network::changes::{ChangeError as C, Refusal};
        match e {
            C::Field {
                refusal,
                pointer,
                message,
            } => {
                let mut a = ApiError::field("body", &pointer, message);
                a.status = match refusal {
                    Refusal::Malformed => 400,
                    Refusal::Unprocessable => 422,
                    Refusal::Conflict => 409,
                };
                a
            }
            C::Conflict(m) => ApiError::conflict(m),
            C::Unprocessable(m) => ApiError::unprocessable(m),
            C::Kernel(f) => kernel_failure(f),
            e @ C::KernelRemove { .. } => ApiError::new(
                422,
                "kernel-refused",
                "Kernel refused the change",
                e.to_string(),
            ),
            e @ C::KernelRead(_) => ApiError::internal(e.to_string()),
            C::InBatch { prefix, inner } => {
                // The item's place in the batch prefixes its field pointers and its detail.
                let mut a = ApiError::from(*inner);
                for p in &mut a.invalid {
                    p.pointer = format!("{prefix}{}", p.pointer);
                }
                a.detail = format!("{prefix}: {}", a.detail);
                a
            }
            C::Store(s) => s.into(),
        }
    }
}

/// A kernel refusal: 409 when the kernel says busy or exists, 422 otherwise, with whether the
/// rollback was complete.
fn kernel_failure(f: crate::network::Failed) -> ApiError {
    if let crate::network::KernelError::Refused { field, message } = &f.error {
        return ApiError::unprocessable_field(format!("/{field}"), message.clone());
    }
    let status = match f.error {
        crate::network::KernelError::Netlink { errno: Some(e), .. }
            if e == libc::EBUSY || e == libc::EEXIST =>
        {
            409
        }
        _ => 422,
    };
    let mut detail = format!(
        "the kernel refused the change ({}); every step already made was rolled back",
        f.error
    );
    if !f.undo_errors.is_empty() {
        detail.push_str(&format!(
            "; rollback was incomplete: {}",
            f.undo_errors.join("; ")
        ));
        tracing::error!(errors = ?f.undo_errors, "network rollback incomplete");
    }
    ApiError::new(
        status,
        "kernel-refused",
        "Kernel refused the change",
        detail,
    )
}

impl From<crate::guest::GuestIdError> for ApiError {
    /// An id that is taken or too small: 409 naming `/id`.
    fn from(e: crate::guest::GuestIdError) -> Self {
        match e {
            crate::guest::GuestIdError::Store(s) => s.into(),
            other => {
                let mut a = ApiError::field("body", "/id", other.to_string());
                a.status = 409;
                a
            }
        }
    }
}

impl From<crate::guest::claims::Busy> for ApiError {
    fn from(e: crate::guest::claims::Busy) -> Self {
        ApiError::conflict(e.to_string())
    }
}

impl From<crate::guest::nics::NicError> for ApiError {
    /// 422 naming the NIC field to fix.
    fn from(e: crate::guest::nics::NicError) -> Self {
        match (e.pointer(), e) {
            (_, crate::guest::nics::NicError::Store(s)) => s.into(),
            (Some(p), e) => ApiError::unprocessable_field(p, e.to_string()),
            (None, e) => ApiError::internal(e.to_string()),
        }
    }
}

impl From<crate::guest::spec::SpecError> for ApiError {
    /// The API validated the body before, so a body or row that does not parse is the
    /// daemon's fault (or a row from an incompatible version): 500, logged.
    fn from(e: crate::guest::spec::SpecError) -> Self {
        ApiError::internal(e.to_string())
    }
}

impl From<crate::guest::GuestError> for ApiError {
    fn from(e: crate::guest::GuestError) -> Self {
        use crate::guest::GuestError as G;
        match e {
            G::NotFound { .. } => ApiError::not_found(e.to_string()),
            G::Conflict(_) => ApiError::conflict(e.to_string()),
            G::Invalid { field, message } => ApiError::unprocessable_field(field, message),
            G::HelperMissing(h) => h.into(),
            G::Busy(b) => b.into(),
            G::Nic(n) => n.into(),
            G::Spec(x) => x.into(),
            G::Storage(s) => s.into(),
            G::Store(s) => s.into(),
            G::Failed { kind, .. } => {
                // The problem type names the engine, as it did before the engines shared
                // one error type.
                let (ty, title) = match kind {
                    "vm" => ("vm-failed", "VM operation failed"),
                    "container" => ("container-failed", "Container operation failed"),
                    _ => ("guest-failed", "Guest operation failed"),
                };
                let mut a = ApiError::new(500, ty, title, e.to_string());
                a.log_detail = Some(format!("{e:?}"));
                a
            }
        }
    }
}
