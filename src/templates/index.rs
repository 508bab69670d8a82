//! Template indexes: JSON documents an admin adds by URL, each listing templates with where
//! to fetch them and their checksum (`{"templates": [{name, url, sha256 | sha512,
//! description, distro, release, architecture}]}`), the way Proxmox's appliance index does.
//! Entries without a checksum or with a malformed field are skipped and named, so one bad
//! entry does not hide the rest.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::TemplateError;
use crate::store::{objects, Store};

/// How long a fetched index is reused (the catalogue is read often, indexes change rarely).
const FRESH_FOR: Duration = Duration::from_secs(60);

type Fetched = (Instant, Result<Vec<Value>, String>);

fn memo() -> &'static Mutex<HashMap<String, Fetched>> {
    static M: OnceLock<Mutex<HashMap<String, Fetched>>> = OnceLock::new();
    M.get_or_init(Default::default)
}

/// Forgets a fetched index (it was changed or removed).
pub fn forget(url: &str) {
    memo().lock().unwrap_or_else(|p| p.into_inner()).remove(url);
}

/// The catalogue entries of index `id` (whose stored body is `body`).
pub fn entries(id: &str, body: &Value) -> Result<Vec<Value>, String> {
    let url = body["url"].as_str().unwrap_or_default().to_string();
    let pin = body["tls_fingerprint"].as_str().map(String::from);
    {
        let m = memo().lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, r)) = m.get(&url) {
            if at.elapsed() < FRESH_FOR {
                return r.clone().map(|v| tag(v, id));
            }
        }
    }
    let r = fetch(&url, pin.as_deref()).and_then(|doc| parse(&doc));
    memo()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(url, (Instant::now(), r.clone()));
    r.map(|v| tag(v, id))
}

fn tag(mut v: Vec<Value>, id: &str) -> Vec<Value> {
    for e in &mut v {
        e["index"] = json!(id);
    }
    v
}

fn fetch(url: &str, pin: Option<&str>) -> Result<Value, String> {
    let mut b = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(15))
        .redirects(5)
        .user_agent(&format!("ferrited/{}", crate::VERSION));
    if let Some(fp) = pin {
        let v = std::sync::Arc::new(crate::tls::PinnedVerifier::new(Some(
            &crate::tls::normalize_fingerprint(fp),
        )));
        b = b.tls_config(crate::tls::pinned_client_config(v));
    }
    let resp = b.build().get(url).call().map_err(|e| match e {
        ureq::Error::Status(code, r) => {
            format!("{url}: the server answered {code} {}", r.status_text())
        }
        ureq::Error::Transport(t) => format!("{url}: {t}"),
    })?;
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(resp.into_reader(), 8 << 20),
        &mut text,
    )
    .map_err(|e| format!("{url}: reading the index: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{url}: the index is not JSON: {e}"))
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || (i > 0 && matches!(b, b'.' | b'+' | b'_' | b'-'))
        })
}

fn hex_of(v: &Value, len: usize) -> Option<String> {
    v.as_str()
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The usable entries of an index document.
fn parse(doc: &Value) -> Result<Vec<Value>, String> {
    let list = doc["templates"]
        .as_array()
        .ok_or("the index has no \"templates\" list")?;
    let mut out = Vec::new();
    for e in list {
        let name = e["name"].as_str().unwrap_or_default();
        let url = e["url"].as_str().unwrap_or_default();
        if !valid_name(name) || !(url.starts_with("http://") || url.starts_with("https://")) {
            tracing::warn!(entry = %e, "template index entry without a valid name or URL skipped");
            continue;
        }
        let mut item = json!({
            "name": name,
            "source": "index",
            "url": url,
            "description": e["description"].as_str().unwrap_or(name),
            "distro": e["distro"].as_str().unwrap_or("unknown"),
            "release": e["release"].as_str().unwrap_or("unknown"),
            "architecture": e["architecture"].as_str().unwrap_or("amd64"),
        });
        if let Some(v) = e["variant"].as_str() {
            item["variant"] = json!(v);
        }
        match (hex_of(&e["sha512"], 128), hex_of(&e["sha256"], 64)) {
            (Some(h), _) => item["sha512"] = json!(h),
            (None, Some(h)) => item["sha256"] = json!(h),
            (None, None) => {
                tracing::warn!(
                    template = name,
                    "template index entry without a checksum skipped"
                );
                continue;
            }
        }
        out.push(item);
    }
    Ok(out)
}

/// The index entry named `template` (from the first index listing it), with the index's
/// stored body (its TLS pin applies to the download).
pub fn find(store: &Store, template: &str) -> Result<(Value, Value), TemplateError> {
    let mut errors = Vec::new();
    for ix in store.read(|c| objects::all(c, super::INDEX_KIND))? {
        match entries(&ix.id, &ix.body) {
            Ok(list) => {
                if let Some(e) = list.into_iter().find(|e| e["name"] == template) {
                    return Ok((e, ix.body.clone()));
                }
            }
            Err(e) => errors.push(format!("index {}: {e}", ix.id)),
        }
    }
    let mut message = format!("no configured template index lists '{template}'");
    if !errors.is_empty() {
        message.push_str(&format!(" (unreadable: {})", errors.join("; ")));
    }
    Err(TemplateError::invalid("/template", message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_without_checksum_or_name_are_skipped() {
        let doc = json!({"templates": [
            {"name": "alpine-3.20", "url": "https://m/a.tar.xz", "sha256": "A".repeat(64)},
            {"name": "nosum", "url": "https://m/b.tar.xz"},
            {"name": "Bad Name", "url": "https://m/c.tar.xz", "sha256": "a".repeat(64)},
            {"name": "ftp", "url": "ftp://m/d.tar.xz", "sha256": "a".repeat(64)},
        ]});
        let v = parse(&doc).expect("parsed");
        assert_eq!(v.len(), 1);
        assert_eq!(v[0]["sha256"], "a".repeat(64));
        assert_eq!(v[0]["source"], "index");
        assert!(parse(&json!({"x": 1})).is_err());
    }
}
