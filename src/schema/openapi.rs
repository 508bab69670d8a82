//! Assembles the OpenAPI 3.1 document from the route table and `$defs`. Nothing here restates a
//! field: paths, parameters and bodies all come from `schema/`.

use serde_json::{json, Map, Value};

use super::{Auth, Registry};

/// Rewrites `#/$defs/X` references to `#/components/schemas/X`.
fn rewrite_refs(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, val) in m {
                if k == "$ref" {
                    if let Some(s) = val.as_str() {
                        out.insert(
                            k.clone(),
                            Value::String(s.replace("#/$defs/", "#/components/schemas/")),
                        );
                        continue;
                    }
                }
                out.insert(k.clone(), rewrite_refs(val));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(rewrite_refs).collect()),
        other => other.clone(),
    }
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// The JSON schema of a page of `item`s, as every list route returns.
pub fn list_schema(item: &str) -> Value {
    json!({
        "type": "object",
        "required": ["items"],
        "additionalProperties": false,
        "properties": {
            "items": {"type": "array", "items": schema_ref(item)},
            "next_page_token": {"type": ["string", "null"], "description": "Pass as page_token to get the next page; absent on the last page."}
        }
    })
}

fn problem(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/problem+json": {"schema": schema_ref("Problem")}}})
}

/// Builds the whole OpenAPI 3.1 document.
pub fn openapi_document(reg: &Registry) -> Value {
    let mut paths = Map::new();
    for r in reg.routes() {
        let mut params = Vec::new();
        for (name, ty) in &r.params {
            params.push(
                json!({"name": name, "in": "path", "required": true, "schema": schema_ref(ty)}),
            );
        }
        if let Some(q) = &r.query {
            if let Some(props) = reg.properties(q) {
                for (name, schema) in props {
                    let mut p = json!({"name": name, "in": "query", "required": false, "schema": rewrite_refs(schema)});
                    if let Some(d) = schema.get("description") {
                        p["description"] = d.clone();
                    }
                    params.push(p);
                }
            }
        }
        // Writes to a revisioned object honour If-Match, deletes included.
        if (r.etag || r.method == "DELETE") && r.method != "GET" && r.method != "POST" {
            params.push(json!({"name": "If-Match", "in": "header", "required": false,
                "description": "Revision from a previous ETag; the write fails with 412 if the object changed.",
                "schema": {"type": "string"}}));
        }
        if r.idempotent {
            params.push(json!({"name": "Idempotency-Key", "in": "header", "required": false,
                "description": "A retry with the same key returns the original result instead of acting twice.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255}}));
        }
        let mut op = json!({
            "operationId": r.operation_id,
            "summary": r.summary,
            "tags": [r.path.trim_start_matches('/').split('/').next().unwrap_or("api")],
            "parameters": params,
        });
        if let Some(req) = &r.request {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": schema_ref(req)}}});
        }
        if let Some(media) = &r.request_stream {
            op["requestBody"] = json!({"required": true, "content": {media.as_str(): {"schema": {"type": "string", "format": "binary"}}}});
        }
        let mut responses = Map::new();
        let status = r.response.status.to_string();
        let ok = if let Some(item) = &r.response.list {
            json!({"description": "A page of results", "content": {"application/json": {"schema": list_schema(item)}}})
        } else if let Some(s) = &r.response.schema {
            if r.response.stream {
                json!({"description": "A stream of records", "content": {
                    "application/jsonl": {"itemSchema": schema_ref(s), "schema": {"type": "string"}},
                    "text/event-stream": {"schema": {"type": "string"}}}})
            } else {
                json!({"description": "Success", "content": {"application/json": {"schema": schema_ref(s)}}})
            }
        } else if r.websocket {
            json!({"description": "Switching Protocols: a WebSocket (RFC 6455) follows; send `Connection: Upgrade`, `Upgrade: websocket`, `Sec-WebSocket-Version: 13` and a `Sec-WebSocket-Key`"})
        } else {
            json!({"description": "Success, no content"})
        };
        responses.insert(status, ok);
        if r.websocket {
            responses.insert(
                "426".into(),
                problem("Upgrade Required: the request was not a WebSocket handshake"),
            );
            responses.insert(
                "409".into(),
                problem("The guest is not running, so it has no console to attach to"),
            );
        }
        responses.insert(
            "400".into(),
            problem("Invalid request; invalid_params names each field"),
        );
        if r.auth != Auth::Public {
            responses.insert(
                "401".into(),
                problem("Missing, expired or invalid credentials"),
            );
            responses.insert(
                "403".into(),
                problem("Authenticated but lacking the privilege"),
            );
        }
        if !r.params.is_empty() {
            responses.insert("404".into(), problem("No such object"));
        }
        if r.method != "GET" {
            responses.insert(
                "409".into(),
                problem("Conflict: exists, in use, or a concurrent change"),
            );
            responses.insert("413".into(), problem("Request body too large"));
            responses.insert(
                "422".into(),
                problem("Valid, but impossible in the current state"),
            );
        }
        // Writes to a revisioned object honour If-Match, deletes included.
        if (r.etag || r.method == "DELETE") && r.method != "GET" && r.method != "POST" {
            responses.insert(
                "412".into(),
                problem("If-Match did not match the current revision"),
            );
        }
        for status in &r.errors {
            let what = match status {
                401 => "Wrong credentials",
                429 => "Too many failed attempts; retry after the Retry-After header",
                _ => "See the problem document",
            };
            responses.insert(status.to_string(), problem(what));
        }
        let allocates = ["/storage", "/containers", "/vms"]
            .iter()
            .any(|p| r.path.starts_with(p));
        if allocates && r.method != "GET" && r.method != "DELETE" {
            responses.insert(
                "507".into(),
                problem(
                    "Insufficient storage: the pool lacks the space; the detail gives the numbers",
                ),
            );
        }
        if r.request_stream.is_some() {
            responses.insert("415".into(), problem("Wrong Content-Type for the upload"));
        }
        responses.insert(
            "503".into(),
            problem("Busy (retry after the Retry-After header), or a helper binary the operation needs is missing (the detail names it; no Retry-After)"),
        );
        op["responses"] = Value::Object(responses);
        if r.auth == Auth::Public {
            op["security"] = json!([]);
        }
        if let (Some(p), Some(a)) = (&r.privilege, &r.acl_path) {
            op["x-ferrite-privilege"] =
                json!({"privilege": p, "acl_path": a, "self_service": r.self_service});
        }
        let path = format!("{}{}", crate::API_PREFIX, r.path);
        let entry = paths.entry(path).or_insert_with(|| json!({}));
        entry[r.method.to_lowercase()] = op;
    }
    let schemas: Map<String, Value> = reg
        .defs()
        .iter()
        .map(|(k, v)| (k.clone(), rewrite_refs(v)))
        .collect();
    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Ferrite API",
            "version": crate::VERSION,
            "description": "Generated from schema/ — do not edit. Errors are application/problem+json (RFC 9457). Long operations return 202 with a task.",
            "x-schema-digest": reg.digest(),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                "description": "A ticket from POST /api/v1/access/login or an API token"}}
        }
    })
}
