//! Request checks the pipeline runs before a handler: update bodies (where `null` clears a
//! field), `If-Match`, and whether the headers make a WebSocket handshake.

use hyper::header::HeaderValue;

use super::{ApiError, App};

/// Validates an update body, where `null` clears an optional field. Update types share their
/// fields with create and read types (through `allOf`), which cannot say "or null" without
/// restating every field, so nulls are checked here: each must name a field the type has,
/// and the other fields are validated as usual.
pub(super) fn validate_update(
    app: &App,
    ty: &str,
    v: &serde_json::Value,
) -> Vec<crate::schema::InvalidParam> {
    let Some(obj) = v.as_object() else {
        return app.registry.validate(ty, v, "body");
    };
    let (nulls, rest): (Vec<_>, Vec<_>) = obj.iter().partition(|(_, x)| x.is_null());
    if nulls.is_empty() {
        return app.registry.validate(ty, v, "body");
    }
    let fields = app.registry.field_names(ty);
    // Fields the object cannot exist without (required when creating) cannot be cleared.
    let required = app
        .registry
        .required_names(&format!("{}Create", ty.trim_end_matches("Update")));
    let mut errs: Vec<crate::schema::InvalidParam> = nulls
        .iter()
        .filter_map(|(k, _)| {
            let message = if !fields.contains(k.as_str()) {
                format!("unknown field '{k}'")
            } else if required.contains(k.as_str()) {
                format!("'{k}' is required and cannot be cleared")
            } else {
                return None;
            };
            Some(crate::schema::InvalidParam {
                pointer: format!("/{k}"),
                location: "body".into(),
                message,
            })
        })
        .collect();
    if !rest.is_empty() {
        let rest: serde_json::Map<String, serde_json::Value> = rest
            .into_iter()
            .map(|(k, x)| (k.clone(), x.clone()))
            .collect();
        errs.extend(
            app.registry
                .validate(ty, &serde_json::Value::Object(rest), "body"),
        );
    }
    errs
}

/// The client's `Sec-WebSocket-Key` when the headers make a WebSocket handshake (RFC 6455
/// section 4.2.1): `Upgrade: websocket`, `Connection: upgrade`, version 13.
pub(super) fn websocket_key(headers: &hyper::HeaderMap) -> Option<String> {
    let has = |name: hyper::header::HeaderName, want: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(want)))
        })
    };
    if !has(hyper::header::UPGRADE, "websocket") || !has(hyper::header::CONNECTION, "upgrade") {
        return None;
    }
    if headers
        .get(hyper::header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok())
        != Some("13")
    {
        return None;
    }
    headers
        .get(hyper::header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

pub(super) fn parse_if_match(v: Option<&HeaderValue>) -> Result<Option<i64>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    let s = v.to_str().unwrap_or_default().trim();
    if s == "*" {
        return Ok(None);
    }
    let inner = s.trim_start_matches("W/").trim_matches('"');
    inner.parse::<i64>().map(Some).map_err(|_| {
        ApiError::field(
            "header",
            "/If-Match",
            format!("'{s}' is not an ETag this API issued (expected \"<revision>\")"),
        )
    })
}
