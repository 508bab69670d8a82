//! The audit log: `GET /access/audit`.

use std::sync::Arc;

use super::paging;
use crate::api::{ApiError, App, Req, Resp};
use crate::store::{audit, AuditFilter};

pub async fn list(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let before = match paging::decode_token(&req)? {
        Some(t) => Some(t.parse::<i64>().map_err(|_| {
            ApiError::field("query", "/page_token", "not a page token this API issued")
        })?),
        None => None,
    };
    let f = AuditFilter {
        user: req.query_str("user").map(String::from),
        before,
        limit: req.query_i64("limit").unwrap_or(100) as usize,
    };
    let (items, next) = app.store.read(|c| audit::list(c, &f))?;
    Ok(paging::list_response(
        items.iter().map(|r| r.to_api()).collect(),
        next.map(|n| n.to_string()),
    ))
}
