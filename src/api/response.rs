//! Handler responses: JSON with optional ETag and Location, empty, or streamed.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

/// The response body type of the server.
pub type Body = BoxBody<Bytes, Infallible>;

/// A handler's successful response.
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    /// Serialized JSON, kept so Idempotency-Key can replay it.
    pub json: Option<Bytes>,
    /// A streaming body (task logs); mutually exclusive with `json`.
    pub stream: Option<(String, Body)>,
}

impl Resp {
    /// A JSON response.
    pub fn json(status: u16, v: &Value) -> Self {
        Resp {
            status,
            headers: Vec::new(),
            json: Some(Bytes::from(v.to_string())),
            stream: None,
        }
    }

    /// A JSON response from already serialized bytes.
    pub fn json_bytes(status: u16, body: Bytes) -> Self {
        Resp {
            status,
            headers: Vec::new(),
            json: Some(body),
            stream: None,
        }
    }

    /// 204 No Content.
    pub fn no_content() -> Self {
        Resp {
            status: 204,
            headers: Vec::new(),
            json: None,
            stream: None,
        }
    }

    /// A streamed body of the given content type.
    pub fn stream(content_type: &str, body: Body) -> Self {
        Resp {
            status: 200,
            headers: Vec::new(),
            json: None,
            stream: Some((content_type.to_string(), body)),
        }
    }

    /// 101 Switching Protocols for a WebSocket handshake (`accept` is the derived
    /// `Sec-WebSocket-Accept`).
    pub fn websocket(accept: String) -> Self {
        Resp {
            status: 101,
            headers: vec![
                ("upgrade", "websocket".to_string()),
                ("connection", "Upgrade".to_string()),
                ("sec-websocket-accept", accept),
            ],
            json: None,
            stream: None,
        }
    }

    /// Adds an ETag for a revision.
    pub fn etag(mut self, revision: i64) -> Self {
        self.headers.push(("etag", format!("\"{revision}\"")));
        self
    }

    /// Adds a Location header.
    pub fn location(mut self, path: impl Into<String>) -> Self {
        self.headers.push(("location", path.into()));
        self
    }

    /// Converts into the body, consuming the stream if any.
    pub fn take_body(&mut self) -> (Option<String>, Body) {
        if let Some((ct, b)) = self.stream.take() {
            return (Some(ct), b);
        }
        match &self.json {
            Some(j) => (
                Some("application/json".into()),
                Full::new(j.clone()).boxed(),
            ),
            None => (None, Full::new(Bytes::new()).boxed()),
        }
    }
}
