//! `schema/catalog.json` against the route table: every resource's collection, item path and
//! types are real routes with those request and response types.

use ferrite::schema::Registry;
use serde_json::Value;

/// `/a/{x}/b/{y}` and `/a/{p}/b/{q}` are the same route.
fn shape(path: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in path.chars() {
        match c {
            '{' => {
                depth += 1;
                out.push_str("{}");
            }
            '}' => depth -= 1,
            _ if depth > 0 => {}
            _ => out.push(c),
        }
    }
    out
}

fn expand(path: &str) -> Vec<String> {
    // The snapshot resource's collection is either guest kind.
    if path.contains("{guest_type}s") {
        ["/containers", "/vms"]
            .iter()
            .map(|k| path.replace("/{guest_type}s", k))
            .collect()
    } else {
        vec![path.to_string()]
    }
}

#[test]
fn catalog_matches_routes() {
    let reg = Registry::load().expect("schema loads");
    let cat = ferrite_ansible_gen::catalog();
    let routes = reg.routes();
    let find = |method: &str, path: &str| {
        routes
            .iter()
            .find(|r| r.method == method && shape(&r.path) == shape(path))
            .unwrap_or_else(|| panic!("no route {method} {path}"))
    };
    let resources = cat["resources"].as_array().expect("resources");
    assert!(resources.len() >= 15);
    for r in resources {
        let name = r["name"].as_str().expect("name");
        let s = |k: &str| r[k].as_str().unwrap_or_default();
        let read = s("read");
        assert!(reg.defs().contains_key(read), "{name}: read type {read}");
        for coll in expand(s("collection")) {
            let item = expand(s("item"))
                .into_iter()
                .find(|i| i.starts_with(&coll))
                .expect("item under collection");
            assert!(
                item.contains(&format!("{{{}}}", s("id_field"))) || s("id_field") == "name",
                "{name}: id field in item path"
            );
            match r["upload_route"].as_str() {
                Some(up) => {
                    let route = find("POST", up);
                    assert_eq!(
                        route.query.as_deref(),
                        Some(s("create")),
                        "{name}: upload query"
                    );
                }
                None => {
                    let route = find("POST", &coll);
                    let want = r["create"].as_str();
                    if name != "snapshot" {
                        assert_eq!(route.request.as_deref(), want, "{name}: create type");
                    }
                    let resp = r["create_response"].as_str().unwrap_or(read);
                    if route.response.schema.as_deref() != Some(resp) {
                        // Snapshot creates answer with the owner (guest or volume).
                        assert_eq!(
                            r["read_in_list"],
                            Value::Bool(true),
                            "{name}: create answer"
                        );
                    }
                }
            }
            if r["read_in_list"] == Value::Bool(true) {
                let l = find("GET", &coll);
                assert!(l.response.list.is_some(), "{name}: list");
            } else {
                let g = find("GET", &item);
                assert_eq!(
                    g.response.schema.as_deref(),
                    Some(read),
                    "{name}: read type"
                );
                assert!(g.etag, "{name}: reads carry an ETag");
            }
            find("DELETE", &item);
            if let Some(u) = r["update"].get("put").and_then(Value::as_str) {
                let p = find("PUT", &item);
                assert_eq!(p.request.as_deref(), Some(u), "{name}: update type");
            }
            if r["update"] == Value::String("resize".into()) {
                find("POST", &format!("{item}/resize"));
            }
            if let Some(sr) = r["secret_route"]["path"].as_str() {
                find("PUT", &format!("{item}/{sr}"));
            }
        }
    }
}
