//! `Idempotency-Key` on the routes that declare `idempotent`: the first request with a key
//! runs and its answer is stored per caller; a repeat of the same request gets that answer
//! back (`Idempotency-Replayed: true`), a different request under the same key is refused.
//! Requests with the same key are serialised, so a retry racing the original waits for it.

use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{handlers::Handler, ApiError, App, Req, Resp};
use crate::schema::Route;
use crate::store::{idempotency, IdempotencyRecord, StoredResponse};

/// The request's key, if its route takes one; refused when malformed.
pub(super) fn key_of(
    route: &Route,
    headers: &hyper::HeaderMap,
) -> Result<Option<String>, ApiError> {
    if !route.idempotent {
        return Ok(None);
    }
    let key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().map(String::from))
        .transpose()
        .map_err(|_| ApiError::field("header", "/Idempotency-Key", "must be visible ASCII"))?;
    if let Some(k) = &key {
        if k.is_empty() || k.len() > 255 {
            return Err(ApiError::field(
                "header",
                "/Idempotency-Key",
                "must be 1 to 255 characters",
            ));
        }
    }
    Ok(key)
}

/// Runs `handler` once per (caller, key): replays the stored answer to a repeat.
pub(super) async fn run_once(
    app: &Arc<App>,
    key: String,
    method: String,
    raw: &Bytes,
    r: Req,
    handler: Handler,
) -> Result<Resp, ApiError> {
    let Some(p) = r.principal.clone() else {
        return handler(Arc::clone(app), r).await;
    };
    let owner = match &p.token_id {
        Some(t) => format!("{}#{t}", p.user),
        None => p.user.clone(),
    };
    let body_hash = hex::encode(Sha256::digest(raw));
    let path = r.path();
    let lock = app.idempotency_lock(&owner, &key);
    let _guard = lock.lock().await;
    if let Some(prev) = app.store.read(|c| idempotency::get(c, &owner, &key))? {
        if prev.method != method || prev.path != path || prev.body_hash != body_hash {
            return Err(ApiError::unprocessable(format!(
                "Idempotency-Key '{key}' was already used for a different request ({} {}); use a new key",
                prev.method, prev.path
            )));
        }
        let mut resp = Resp {
            status: prev.response.status,
            headers: Vec::new(),
            json: Some(Bytes::from(prev.response.body)),
            stream: None,
        };
        // The confirm deadline too: a client that lost the first answer must still learn
        // that the change waits for its confirmation.
        for (k, v) in prev.response.headers {
            if let Some(name) = ["location", "etag", "x-ferrite-confirm-deadline"]
                .into_iter()
                .find(|n| *n == k)
            {
                resp.headers.push((name, v));
            }
        }
        resp.headers.push(("idempotency-replayed", "true".into()));
        return Ok(resp);
    }
    let resp = handler(Arc::clone(app), r).await?;
    let rec = IdempotencyRecord {
        method,
        path,
        body_hash,
        response: StoredResponse {
            status: resp.status,
            headers: resp
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            body: resp.json.as_ref().map(|b| b.to_vec()).unwrap_or_default(),
        },
    };
    app.store
        .write(|tx| idempotency::put(tx, &owner, &key, &rec))?;
    Ok(resp)
}
