//! List parameters shared by every list route: name/tag filters and opaque page tokens.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};

use crate::api::{ApiError, Req, Resp};
use crate::store::{ListFilter, Object, Page};

pub use crate::store::objects::tags_of;

/// Encodes a continuation point as an opaque token.
pub fn encode_token(after: &str) -> String {
    B64.encode(after)
}

/// Decodes a page token, naming the parameter when it is not one we issued.
pub fn decode_token(req: &Req) -> Result<Option<String>, ApiError> {
    match req.query_str("page_token") {
        None => Ok(None),
        Some(t) => B64
            .decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::field("query", "/page_token", "not a page token this API issued")
            }),
    }
}

/// The `ListQuery` parameters as a store filter.
pub fn filter(req: &Req) -> Result<ListFilter, ApiError> {
    Ok(ListFilter {
        name: req.query_str("name").map(String::from),
        tag: req.query_str("tag").map(String::from),
        owner: None,
        after: decode_token(req)?,
        limit: req.query_i64("limit").unwrap_or(100) as usize,
    })
}

/// A page of objects as the list response.
pub fn page_response(page: Page<Object>, map: impl Fn(&Object) -> Value) -> Resp {
    let items: Vec<Value> = page.items.iter().map(map).collect();
    list_response(items, page.next)
}

/// A page from [`crate::store::Store::list_cached`]: each item's rendering is memoized on
/// its object (valid for the store generation the index was built in), so the response is a
/// concatenation of cached JSON. Only for renderings that depend on the store alone.
pub fn page_response_cached(
    page: Page<std::sync::Arc<Object>>,
    render: impl Fn(&Object) -> Value,
) -> Resp {
    let parts: Vec<bytes::Bytes> = page
        .items
        .iter()
        .map(|o| o.rendered_with(|o| render(o)))
        .collect();
    parts_response(parts, page.next)
}

/// A list response from items already serialized.
pub fn parts_response(parts: Vec<bytes::Bytes>, next: Option<String>) -> Resp {
    let len: usize = parts.iter().map(|p| p.len() + 1).sum();
    let mut out = Vec::with_capacity(len + 64);
    out.extend_from_slice(b"{\"items\":[");
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(p);
    }
    out.push(b']');
    if let Some(n) = next {
        out.extend_from_slice(b",\"next_page_token\":");
        out.extend_from_slice(Value::String(encode_token(&n)).to_string().as_bytes());
    }
    out.push(b'}');
    Resp::json_bytes(200, bytes::Bytes::from(out))
}

/// Guests as list items: each guest's stored spec is serialized once per revision (nulls
/// left out, as a single guest shows it) and its `status`, read now by `status`, is spliced in.
pub fn guest_parts(
    items: &[std::sync::Arc<Object>],
    status: impl Fn(&str) -> Value,
) -> Vec<bytes::Bytes> {
    items
        .iter()
        .map(|o| {
            let base = o.rendered_with(|o| {
                let mut v = o.to_api();
                if let Value::Object(m) = &mut v {
                    m.remove("status");
                    m.retain(|_, x| !x.is_null());
                }
                v
            });
            with_member(&base, "status", &status(&o.id))
        })
        .collect()
}

/// An object's memoized JSON with one more member spliced in before its closing brace: a
/// guest's spec is cached per revision while its `status` is read fresh.
pub fn with_member(base: &[u8], key: &str, value: &Value) -> bytes::Bytes {
    let body = base.strip_suffix(b"}").unwrap_or(base);
    let mut out = Vec::with_capacity(base.len() + 256);
    out.extend_from_slice(body);
    if body.len() > 1 {
        out.push(b',');
    }
    out.extend_from_slice(Value::String(key.to_string()).to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(value.to_string().as_bytes());
    out.push(b'}');
    bytes::Bytes::from(out)
}

/// Items plus an optional continuation point.
pub fn list_response(items: Vec<Value>, next: Option<String>) -> Resp {
    let mut v = json!({ "items": items });
    if let Some(n) = next {
        v["next_page_token"] = json!(encode_token(&n));
    }
    Resp::json(200, &v)
}
