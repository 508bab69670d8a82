//! API conventions against a real daemon: problem documents, validation, limits, slow clients,
//! ETag/If-Match, pagination, idempotency, and the OpenAPI contract.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Daemon, ROOT_PW};
use serde_json::{json, Value};

fn addr(d: &Daemon) -> String {
    d.endpoint.trim_start_matches("http://").to_string()
}

fn raw(d: &Daemon, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr(d)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.windows(4).any(|w| w == b"\r\n\r\n")
            && String::from_utf8_lossy(&out).contains("\"request_id\"")
        {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn version_openapi_and_node_facts() {
    let d = Daemon::start();
    let c = d.client();
    let v = c.get("/version");
    assert_eq!(v.status, 200);
    assert_eq!(v.body["api"], "v1");
    let doc = c.get("/openapi.json");
    assert_eq!(doc.status, 200);
    assert_eq!(doc.body["openapi"], "3.1.0");
    let root = d.root();
    let n = root.get("/nodes");
    let node = n.body["items"][0]["node"]
        .as_str()
        .expect("node")
        .to_string();
    let f = root.get(&format!("/nodes/{node}"));
    assert_eq!(f.status, 200, "{}", f.text);
    assert!(f.body["cpu"]["count"].as_i64().expect("cpus") >= 1);
    assert!(f.body["memory"]["total_bytes"].as_i64().expect("mem") > 0);
    let mode = f.body["cgroup"]["mode"].as_str().expect("mode");
    assert!(["unified", "hybrid", "legacy"].contains(&mode));
    assert_eq!(
        f.body["kvm"]["available"],
        json!(std::path::Path::new("/dev/kvm").exists())
    );
    eprintln!("node facts: cgroup mode {mode}, kvm {}", f.body["kvm"]);
    assert_eq!(root.get("/nodes/not-this-node").status, 404);
}

#[test]
fn bad_input_gets_clear_problems() {
    let d = Daemon::start();
    let root = d.root();
    // Wrong types, unknown fields, out of range, missing required: each field named.
    let r = root.post(
        "/access/users",
        json!({"userid": "a@local", "enabled": "yes", "colour": "red", "groups": "ops"}),
    );
    assert_eq!(r.status, 400);
    for p in ["/enabled", "/colour", "/groups"] {
        assert!(
            r.pointers().contains(&p.to_string()),
            "{p} not named: {}",
            r.text
        );
    }
    let r = root.post("/access/users", json!({"enabled": true}));
    assert_eq!(r.status, 400);
    assert!(r.pointers().contains(&"/userid".to_string()));
    let r = root.post("/access/users", json!({"userid": "no-realm"}));
    assert_eq!(r.status, 400);
    assert!(r.pointers().contains(&"/userid".to_string()));
    let r = root.get("/access/users?limit=0");
    assert_eq!(r.status, 400);
    assert!(r.pointers().contains(&"/limit".to_string()));
    let r = root.get("/access/users?limit=5000&bogus=1");
    assert_eq!(r.pointers().len(), 2, "{}", r.text);
    // Malformed JSON.
    let r = root.request("POST", "/access/groups", None, &[]);
    assert_eq!(
        r.status, 400,
        "missing body must fail validation: {}",
        r.text
    );
    let url = format!("{}/api/v1/access/groups", d.endpoint);
    let res = ureq::post(&url)
        .set(
            "Authorization",
            &format!("Bearer {}", root.token.clone().expect("token")),
        )
        .set("Content-Type", "application/json")
        .send_string("{\"groupid\": ");
    let Err(ureq::Error::Status(400, resp)) = res else {
        panic!("malformed JSON accepted")
    };
    assert_eq!(resp.content_type(), "application/problem+json");
    let body: Value = serde_json::from_str(&resp.into_string().expect("body")).expect("json");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("malformed JSON"),
        "{body}"
    );
    // Wrong content type.
    let res = ureq::post(&url)
        .set(
            "Authorization",
            &format!("Bearer {}", root.token.clone().expect("t")),
        )
        .set("Content-Type", "text/plain")
        .send_string("{}");
    assert!(matches!(res, Err(ureq::Error::Status(415, _))));
    // No such route / method.
    assert_eq!(root.get("/no/such/thing").status, 404);
    let r = root.request("PATCH", "/access/users", Some(&json!({})), &[]);
    assert_eq!(r.status, 405);
    assert!(r.header("allow").is_some_and(|a| a.contains("POST")));
    // Bodies where none is taken.
    assert_eq!(
        root.request("DELETE", "/access/groups/x", Some(&json!({"a": 1})), &[])
            .status,
        400
    );
    // The daemon keeps serving.
    assert_eq!(root.get("/version").status, 200);
}

#[test]
fn oversized_bodies_get_413() {
    let d = Daemon::start();
    let root = d.root();
    let token = root.token.clone().expect("token");
    // Declared too large: refused before the body is read.
    let req = format!("POST /api/v1/access/groups HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\n\r\n");
    let resp = raw(&d, req.as_bytes());
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(resp.contains("application/problem+json"));
    // Chunked and too large: cut off at the limit.
    let big = json!({"groupid": "g", "comment": "x".repeat(2 * 1024 * 1024)}).to_string();
    let mut req = format!("POST /api/v1/access/groups HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
    for chunk in big.as_bytes().chunks(65536) {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let resp = raw(&d, &req);
    assert!(
        resp.starts_with("HTTP/1.1 413"),
        "{}",
        &resp[..resp.len().min(300)]
    );
    assert_eq!(
        root.get("/access/groups/g").status,
        404,
        "nothing half-made"
    );
    assert_eq!(root.get("/version").status, 200);
}

#[test]
fn slow_loris_connections_are_dropped_and_service_continues() {
    let d = Daemon::start_with(&["--no-tls", "--header-timeout", "2"]);
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(addr(&d)).expect("connect");
        s.write_all(b"GET /api/v1/version HTTP/1.1\r\nHost: x\r\n")
            .expect("partial headers");
        slow.push(s);
    }
    // Service continues while they dangle.
    assert_eq!(d.client().get("/version").status, 200);
    let t0 = Instant::now();
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(
            n == 0 || text.starts_with("HTTP/1.1 408"),
            "unexpected answer {text}"
        );
    }
    assert!(
        t0.elapsed() < Duration::from_secs(14),
        "slow connections were not cut off"
    );
    assert_eq!(d.client().get("/version").status, 200);
}

/// A body that stops arriving is answered 408 after `--body-timeout`, naming the limit.
#[test]
fn a_stalled_body_gets_408_after_the_body_timeout() {
    let d = Daemon::start_with(&["--no-tls", "--body-timeout", "1"]);
    let mut s = TcpStream::connect(addr(&d)).expect("connect");
    s.write_all(
        b"POST /api/v1/access/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"us",
    )
    .expect("partial body");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("within 1 seconds"), "{text}");
    assert_eq!(d.client().get("/version").status, 200);
}

#[test]
fn etag_if_match_and_pagination() {
    let d = Daemon::start();
    let root = d.root();
    let r = root.post(
        "/access/groups",
        json!({"groupid": "ops", "comment": "first", "tags": ["prod"]}),
    );
    assert_eq!(r.status, 201);
    assert_eq!(r.header("etag"), Some("\"1\""));
    assert_eq!(r.header("location"), Some("/api/v1/access/groups/ops"));
    let g = root.get("/access/groups/ops");
    assert_eq!(g.header("etag"), Some("\"1\""));
    let u = root.request(
        "PUT",
        "/access/groups/ops",
        Some(&json!({"comment": "second"})),
        &[("If-Match", "\"1\"")],
    );
    assert_eq!(u.status, 200, "{}", u.text);
    assert_eq!(u.header("etag"), Some("\"2\""));
    let stale = root.request(
        "PUT",
        "/access/groups/ops",
        Some(&json!({"comment": "third"})),
        &[("If-Match", "\"1\"")],
    );
    assert_eq!(stale.status, 412);
    assert_eq!(root.get("/access/groups/ops").body["comment"], "second");
    let bad = root.request(
        "PUT",
        "/access/groups/ops",
        Some(&json!({"comment": "x"})),
        &[("If-Match", "yesterday")],
    );
    assert_eq!(bad.status, 400);
    let del = root.request(
        "DELETE",
        "/access/groups/ops",
        None,
        &[("If-Match", "\"1\"")],
    );
    assert_eq!(del.status, 412);
    assert_eq!(
        root.request(
            "DELETE",
            "/access/groups/ops",
            None,
            &[("If-Match", "\"2\"")]
        )
        .status,
        204
    );
    assert_eq!(root.get("/access/groups/ops").status, 404);

    for i in 0..25 {
        let tags = if i % 5 == 0 {
            json!(["five"])
        } else {
            json!([])
        };
        assert_eq!(
            root.post(
                "/access/groups",
                json!({"groupid": format!("team{i:02}"), "tags": tags})
            )
            .status,
            201
        );
    }
    let mut seen = Vec::new();
    let mut path = "/access/groups?limit=10".to_string();
    loop {
        let p = root.get(&path);
        assert_eq!(p.status, 200);
        for it in p.body["items"].as_array().expect("items") {
            seen.push(it["groupid"].as_str().expect("id").to_string());
        }
        match p.body["next_page_token"].as_str() {
            Some(t) => path = format!("/access/groups?limit=10&page_token={t}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 25, "pages overlap");
    assert_eq!(
        root.get("/access/groups?tag=five").body["items"]
            .as_array()
            .expect("items")
            .len(),
        5
    );
    assert_eq!(
        root.get("/access/groups?name=team1*").body["items"]
            .as_array()
            .expect("items")
            .len(),
        10
    );
    assert_eq!(
        root.get("/access/groups?name=team07").body["items"]
            .as_array()
            .expect("items")
            .len(),
        1
    );
    assert_eq!(root.get("/access/groups?page_token=!!").status, 400);
}

#[test]
fn idempotency_keys_and_parallel_creates() {
    let d = Daemon::start();
    let root = d.root();
    let h = [("Idempotency-Key", "create-ops-1")];
    let a = root.request(
        "POST",
        "/access/groups",
        Some(&json!({"groupid": "ops"})),
        &h,
    );
    assert_eq!(a.status, 201);
    let b = root.request(
        "POST",
        "/access/groups",
        Some(&json!({"groupid": "ops"})),
        &h,
    );
    assert_eq!(
        b.status, 201,
        "a retry returns the original result: {}",
        b.text
    );
    assert_eq!(b.body, a.body);
    assert_eq!(b.header("idempotency-replayed"), Some("true"));
    // Without a key, a second create conflicts.
    assert_eq!(
        root.post("/access/groups", json!({"groupid": "ops"}))
            .status,
        409
    );
    // Reusing a key for a different request is refused.
    let c = root.request(
        "POST",
        "/access/groups",
        Some(&json!({"groupid": "dev"})),
        &h,
    );
    assert_eq!(c.status, 422);
    assert_eq!(root.get("/access/groups/dev").status, 404);

    // Parallel creates with the same key: exactly one object, every caller gets the same answer.
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let r = root.clone();
            std::thread::spawn(move || r.request("POST", "/access/acl", Some(&json!({"path": "/", "principal_type": "group", "principal": "ops", "role": "Auditor"})), &[("Idempotency-Key", "acl-par")]))
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    let ids: std::collections::HashSet<_> = results
        .iter()
        .map(|r| r.body["id"].as_str().unwrap_or("none").to_string())
        .collect();
    assert!(
        results.iter().all(|r| r.status == 201),
        "{:?}",
        results.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(ids.len(), 1);
    assert_eq!(
        root.get("/access/acl").body["items"]
            .as_array()
            .expect("items")
            .len(),
        1
    );

    // Parallel creates of distinct objects get distinct server-allocated ids.
    let handles: Vec<_> = (0..12)
        .map(|i| {
            let r = root.clone();
            std::thread::spawn(move || r.post("/access/acl", json!({"path": format!("/vms/{i}"), "principal_type": "group", "principal": "ops", "role": "VMUser"})))
        })
        .collect();
    let ids: std::collections::HashSet<_> = handles
        .into_iter()
        .map(|h| {
            h.join().expect("thread").body["id"]
                .as_str()
                .expect("id")
                .to_string()
        })
        .collect();
    assert_eq!(ids.len(), 12);
}

#[test]
fn graceful_shutdown_on_sigterm() {
    let mut d = Daemon::start();
    assert_eq!(d.root().get("/version").status, 200);
    let st = d.stop(nix::sys::signal::Signal::SIGTERM);
    assert!(st.success(), "ferrited exited with {st}");
    assert!(d.log().contains("SIGTERM received"));
    // Restart on the same data dir: same root password works, state persisted.
    d.spawn();
    let c = d.client();
    let _ = c.login("root@local", ROOT_PW);
}

#[test]
fn tls_with_self_signed_certificate_and_pinning() {
    let d = Daemon::start_with(&[]);
    assert!(d.endpoint.starts_with("https://"));
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(d.data().join("api.json")).expect("info"))
            .expect("json");
    let fp = info["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_string();
    assert!(d.log().contains(&fp), "fingerprint is logged");
    let verifier = std::sync::Arc::new(ferrite::tls::PinnedVerifier::new(Some(&fp)));
    let agent = ureq::AgentBuilder::new()
        .tls_config(ferrite::tls::pinned_client_config(verifier))
        .build();
    let r = agent
        .get(&format!("{}/api/v1/version", d.endpoint))
        .call()
        .expect("pinned TLS works");
    assert_eq!(r.status(), 200);
    let wrong = std::sync::Arc::new(ferrite::tls::PinnedVerifier::new(Some(&"00".repeat(32))));
    let agent = ureq::AgentBuilder::new()
        .tls_config(ferrite::tls::pinned_client_config(wrong))
        .build();
    assert!(agent
        .get(&format!("{}/api/v1/version", d.endpoint))
        .call()
        .is_err());
    // The key is private to root.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(d.data().join("tls/ferrited.key"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0);
}

/// Updates: `null` clears an optional field, even where the field's type is shared with create
/// and read types; a field the object cannot exist without, or one the type lacks, is refused
/// with 400 naming it, and nothing changes.
#[test]
fn null_in_an_update_clears_optional_fields_only() {
    let d = Daemon::start();
    let c = d.root();
    common::upload_guests(&c);
    let r = c.post(
        "/vms",
        json!({"name": "nulls", "kernel": "local:guest.elf", "cmdline": "x", "description": "d"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_i64().expect("id");
    let r = c.put(
        &format!("/vms/{id}"),
        json!({"cmdline": null, "description": null}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.body.get("cmdline").is_none() && r.body.get("description").is_none(),
        "{}",
        r.text
    );
    // `kernel` is optional in the schema since the qemu engine, and required by the microvm
    // engine this VM runs under: the engine refuses the null, naming the field.
    let r = c.put(&format!("/vms/{id}"), json!({"kernel": null}));
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.pointers(), vec!["/kernel"]);
    let r = c.put(&format!("/vms/{id}"), json!({"colour": null}));
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.pointers(), vec!["/colour"]);
    assert_eq!(
        c.get(&format!("/vms/{id}")).body["kernel"],
        "local:guest.elf"
    );
    // Access types declare their nulls in the schema; the same rule holds.
    assert_eq!(
        c.post("/access/groups", json!({"groupid": "g", "comment": "c"}))
            .status,
        201
    );
    let r = c.put("/access/groups/g", json!({"comment": null}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.body.get("comment").is_none_or(Value::is_null),
        "{}",
        r.text
    );
}
