//! Unauthenticated metadata: version and the OpenAPI document.

use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use serde_json::json;

use crate::api::{ApiError, App, Req, Resp};

pub async fn version_view(app: Arc<App>, _req: Req) -> Result<Resp, ApiError> {
    Ok(Resp::json(
        200,
        &json!({"version": crate::VERSION, "api": "v1", "schema_digest": app.registry.digest()}),
    ))
}

pub async fn openapi_view(app: Arc<App>, _req: Req) -> Result<Resp, ApiError> {
    let mut r = Resp::stream("application/json", Full::new(app.openapi.clone()).boxed());
    r.status = 200;
    Ok(r)
}
