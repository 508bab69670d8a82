//! The validated request a handler receives.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ApiError;
use crate::access::Principal;
use crate::schema::Route;

/// A request that passed routing, authentication, the privilege check and schema validation.
pub struct Req {
    pub route: Arc<Route>,
    pub params: HashMap<String, String>,
    /// Query parameters, typed by the route's query schema.
    pub query: Value,
    /// The JSON body (validated), or `Null` for routes without one.
    pub body: Value,
    pub principal: Option<Principal>,
    /// Whether the caller holds the route's privilege. Self-service routes may still run
    /// without it and must then check ownership.
    pub privileged: bool,
    /// Parsed If-Match revision; `None` when absent or `*`.
    pub if_match: Option<i64>,
    pub request_id: String,
    pub accept: Option<String>,
    pub peer: IpAddr,
    /// The unread body of a `request_stream` route (uploads).
    pub stream: Option<hyper::body::Incoming>,
    /// The declared Content-Length, if any.
    pub content_length: Option<u64>,
    /// The client waits for `100 Continue` before sending the body (see
    /// [`crate::api::server::discard`]).
    pub expect_continue: bool,
    /// For WebSocket routes: the connection's upgrade and the client's `Sec-WebSocket-Key`,
    /// present only when the request is a well-formed WebSocket handshake.
    pub websocket: Option<(hyper::upgrade::OnUpgrade, String)>,
}

impl Req {
    /// A path parameter (the router guarantees it exists).
    pub fn param(&self, name: &str) -> &str {
        self.params
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// The caller; routes that are not public always have one.
    pub fn principal(&self) -> Result<&Principal, ApiError> {
        self.principal
            .as_ref()
            .ok_or_else(|| ApiError::unauthorized("authentication required"))
    }

    /// Fails with 403 unless the caller is privileged or `owner` is the caller.
    pub fn require_owner_or_privileged(&self, owner: &str, what: &str) -> Result<(), ApiError> {
        if self.privileged {
            return Ok(());
        }
        match &self.principal {
            Some(p) if p.user == owner => Ok(()),
            _ => Err(ApiError::forbidden(format!(
                "{what} belongs to another user and you lack {} on {}",
                self.route.privilege.as_deref().unwrap_or("the privilege"),
                self.route.acl_path.as_deref().unwrap_or("/")
            ))),
        }
    }

    /// Deserializes the (already validated) body into a typed struct.
    pub fn body_as<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_value(self.body.clone()).map_err(|e| {
            ApiError::field("body", "", format!("body does not match the schema: {e}"))
        })
    }

    /// A string query parameter.
    pub fn query_str(&self, name: &str) -> Option<&str> {
        self.query.get(name).and_then(Value::as_str)
    }

    /// An integer query parameter.
    pub fn query_i64(&self, name: &str) -> Option<i64> {
        self.query.get(name).and_then(Value::as_i64)
    }

    /// A boolean query parameter.
    pub fn query_bool(&self, name: &str) -> Option<bool> {
        self.query.get(name).and_then(Value::as_bool)
    }

    /// The API path of this request (for Location and problem `instance`).
    pub fn path(&self) -> String {
        let mut p = self.route.path.clone();
        for (k, v) in &self.params {
            p = p.replace(&format!("{{{k}}}"), v);
        }
        format!("{}{p}", crate::API_PREFIX)
    }
}
