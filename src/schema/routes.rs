//! The route table as data (`schema/routes.json`): each route names its handler, its access
//! rule and the schema of everything it takes and returns.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Who may call a route, before any privilege check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Auth {
    /// No credentials needed (version, OpenAPI, login).
    Public,
    /// Any authenticated caller holding a ticket (not a token).
    Ticket,
    /// Any authenticated caller.
    User,
    /// An authenticated caller holding `privilege` on `acl_path`.
    Privilege,
}

/// One API route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub method: String,
    /// Path under `/api/v1`, with `{param}` placeholders.
    pub path: String,
    /// Handler name; also the OpenAPI operationId and the CLI/provider name.
    pub operation_id: String,
    pub summary: String,
    pub auth: Auth,
    pub privilege: Option<String>,
    /// ACL path the privilege is checked on; may use the route's `{param}`s.
    pub acl_path: Option<String>,
    /// Callers without the privilege may still act on objects they own (their own user, tokens,
    /// tasks); the handler makes that check and answers 403 otherwise.
    #[serde(default)]
    pub self_service: bool,
    /// Path parameter name → schema type.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    pub query: Option<String>,
    pub request: Option<String>,
    /// The body is raw bytes of this media type, streamed to the handler unread (uploads);
    /// exclusive with `request`.
    #[serde(default)]
    pub request_stream: Option<String>,
    /// A WebSocket endpoint: the handler answers 101 and takes over the connection.
    #[serde(default)]
    pub websocket: bool,
    pub response: RouteResponse,
    /// Accepts `Idempotency-Key`.
    #[serde(default)]
    pub idempotent: bool,
    /// Returns an `ETag`.
    #[serde(default)]
    pub etag: bool,
    /// Error statuses this route answers beyond those every route of its shape documents (see
    /// `openapi::responses`): 401 and 429 for the public login, say.
    #[serde(default)]
    pub errors: Vec<u16>,
}

/// What a route answers on success.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteResponse {
    pub status: u16,
    pub schema: Option<String>,
    /// The response is a page of this type: `{items, next_page_token}`.
    pub list: Option<String>,
    /// The response is a stream of this type (JSON lines or Server-Sent Events).
    #[serde(default)]
    pub stream: bool,
}

impl Route {
    /// Types this route refers to.
    pub fn referenced_types(&self) -> impl Iterator<Item = &str> {
        self.params
            .values()
            .map(String::as_str)
            .chain(self.query.as_deref())
            .chain(self.request.as_deref())
            .chain(self.response.schema.as_deref())
            .chain(self.response.list.as_deref())
    }

    /// Whether the method changes state (and so is written to the audit log).
    pub fn is_mutating(&self) -> bool {
        self.method != "GET"
    }
}
