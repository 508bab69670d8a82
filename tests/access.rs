//! Access control against a real daemon: tickets, tokens, ACLs, rate limits, audit log, and a
//! walk over every route proving 401 for anonymous and 403 for unprivileged callers.

mod common;

use common::{user_client, Daemon, ROOT_PW};
use serde_json::json;

#[test]
fn first_start_generates_root_password_when_unset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferrited"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0", "--no-tls"])
        .env_remove("FERRITE_ROOT_PASSWORD")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let info = dir.path().join("api.json");
    let t0 = std::time::Instant::now();
    while !info.exists() {
        assert!(t0.elapsed().as_secs() < 30, "daemon did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pw_file = dir.path().join("initial-root-password");
    let pw = std::fs::read_to_string(&pw_file)
        .expect("password file")
        .trim()
        .to_string();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&pw_file)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(pw.len() >= 20);
    let endpoint: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&info).expect("info")).expect("json");
    let c = common::Client::new(endpoint["endpoint"].as_str().expect("ep"), None);
    let _ = c.login("root@local", &pw);
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&pw),
        "password printed once on stdout"
    );
}

#[test]
fn tickets_expired_forged_tampered_and_renewal() {
    let d = Daemon::start();
    let c = d.client();
    let r = c.anonymous().post(
        "/access/login",
        json!({"username": "root@local", "password": "wrong-password"}),
    );
    assert_eq!(r.status, 401);
    let r = c.anonymous().post(
        "/access/login",
        json!({"username": "ghost@local", "password": "whatever1"}),
    );
    assert_eq!(r.status, 401);
    let root = d.root();
    let me = root.get("/access/me");
    assert_eq!(me.body["username"], "root@local");
    assert_eq!(me.body["auth"], "ticket");
    let renewed = root.request("POST", "/access/renew", None, &[]);
    assert_eq!(renewed.status, 200, "{}", renewed.text);
    assert_eq!(
        root.with_token(renewed.body["ticket"].as_str().expect("t"))
            .get("/access/me")
            .status,
        200
    );

    // Sign tickets with the daemon's own key: expired is refused.
    let seed: [u8; 32] = std::fs::read(d.data().join("keys/ticket-ed25519.key"))
        .expect("key")
        .try_into()
        .expect("32 bytes");
    let keys = ferrite::access::ticket::TicketKeys::from_seed(&seed);
    let now = ferrite::time::now_unix();
    let expired = keys.sign("root@local", now - 1);
    let r = c.with_token(&expired).get("/access/me");
    assert_eq!(r.status, 401);
    assert!(r.body["detail"]
        .as_str()
        .expect("detail")
        .contains("expired"));
    assert_eq!(
        c.with_token(&keys.sign("root@local", now + 60))
            .get("/access/me")
            .status,
        200
    );
    // Forged with another key.
    let forged =
        ferrite::access::ticket::TicketKeys::from_seed(&[9u8; 32]).sign("root@local", now + 3600);
    assert_eq!(c.with_token(&forged).get("/access/me").status, 401);
    // Tampered: a bob ticket with the payload swapped for root.
    let t = root.token.clone().expect("ticket");
    let parts: Vec<&str> = t.split('.').collect();
    use base64::Engine;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("root@local\n{}", now + 7000));
    let tampered = format!("{}.{}.{}", parts[0], payload, parts[2]);
    assert_eq!(c.with_token(&tampered).get("/access/me").status, 401);
    assert_eq!(c.with_token("garbage").get("/access/me").status, 401);
    let r = c.request(
        "GET",
        "/access/me",
        None,
        &[("Authorization", "Basic cm9vdDpyb290")],
    );
    assert_eq!(r.status, 401);
    // A ticket for a user that was later disabled stops working.
    let bob = user_client(&root, "bob@local", "bob-password");
    assert_eq!(bob.get("/access/me").status, 200);
    assert_eq!(
        root.put("/access/users/bob@local", json!({"enabled": false}))
            .status,
        200
    );
    assert_eq!(bob.get("/access/me").status, 401);
    assert_eq!(
        c.anonymous()
            .post(
                "/access/login",
                json!({"username": "bob@local", "password": "bob-password"})
            )
            .status,
        401
    );
}

#[test]
fn tokens_restriction_and_revocation() {
    let d = Daemon::start();
    let root = d.root();
    let r = root.post(
        "/access/tokens",
        json!({"name": "ci", "comment": "pipeline"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let secret = r.body["token"].as_str().expect("token").to_string();
    assert_eq!(r.body["id"], "root@local!ci");
    let tok = root.with_token(&secret);
    let me = tok.get("/access/me");
    assert_eq!(me.body["auth"], "token");
    assert_eq!(me.body["token_id"], "root@local!ci");
    // The secret is never shown again and never stored in clear.
    let view = root.get("/access/tokens/root@local!ci");
    assert!(view.body.get("token").is_none());
    let db = std::fs::read(d.data().join("ferrite.db")).expect("db");
    assert!(!db.windows(secret.len()).any(|w| w == secret.as_bytes()));
    // A token cannot renew tickets or change passwords.
    assert_eq!(tok.request("POST", "/access/renew", None, &[]).status, 403);

    // Restricted token: only Sys.Audit.
    let r = root.post(
        "/access/tokens",
        json!({"name": "audit", "privileges": ["Sys.Audit"]}),
    );
    let audit = root.with_token(r.body["token"].as_str().expect("token"));
    assert_eq!(audit.get("/access/users").status, 200);
    assert_eq!(
        audit
            .post("/access/groups", json!({"groupid": "nope"}))
            .status,
        403
    );
    // A token created by a restricted token cannot exceed it.
    let r = audit.post("/access/tokens", json!({"name": "child"}));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["privileges"], json!(["Sys.Audit"]));
    // Expired tokens are refused at creation.
    assert_eq!(
        root.post(
            "/access/tokens",
            json!({"name": "old", "expires_at": "2001-01-01T00:00:00Z"})
        )
        .status,
        400
    );

    // Revocation takes effect at once.
    assert_eq!(root.delete("/access/tokens/root@local!ci").status, 204);
    let r = tok.get("/access/me");
    assert_eq!(r.status, 401);
    assert!(r.body["detail"]
        .as_str()
        .expect("detail")
        .contains("revoked"));
    // Wrong secret for an existing id.
    let forged = format!("fer.{}.{}", base64_id("root@local!audit"), "A".repeat(43));
    assert_eq!(root.with_token(&forged).get("/access/me").status, 401);
}

fn base64_id(id: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
}

#[test]
fn acl_roles_groups_and_propagation() {
    let d = Daemon::start();
    let root = d.root();
    assert_eq!(
        root.post("/access/groups", json!({"groupid": "ops"}))
            .status,
        201
    );
    let r = root.post("/access/users", json!({"userid": "alice@local", "password": "alice-password", "groups": ["ops"], "email": "alice@example.com"}));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        root.post(
            "/access/users",
            json!({"userid": "eve@local", "groups": ["missing"]})
        )
        .pointers(),
        vec!["/groups/0"]
    );
    let alice = root.with_token(&root.login("alice@local", "alice-password"));
    assert_eq!(alice.get("/access/users").status, 403);
    // Users may read themselves and change their own password.
    assert_eq!(alice.get("/access/users/alice@local").status, 200);
    assert_eq!(alice.get("/access/users/root@local").status, 403);
    assert_eq!(
        alice
            .put(
                "/access/users/alice@local/password",
                json!({"password": "new-alice-password"})
            )
            .status,
        204
    );
    let _ = root.login("alice@local", "new-alice-password");

    // Custom role, granted to the group on /access with propagation.
    let r = root.post(
        "/access/roles",
        json!({"roleid": "Reader", "privileges": ["Sys.Audit"]}),
    );
    assert_eq!(r.status, 201);
    let acl = root.post(
        "/access/acl",
        json!({"path": "/access", "principal_type": "group", "principal": "ops", "role": "Reader"}),
    );
    assert_eq!(acl.status, 201, "{}", acl.text);
    let acl_id = acl.body["id"].as_str().expect("id").to_string();
    assert_eq!(alice.get("/access/users").status, 200);
    assert_eq!(
        alice.post("/access/groups", json!({"groupid": "x"})).status,
        403
    );
    // Duplicate entry, unknown role, unknown principal.
    assert_eq!(root.post("/access/acl", json!({"path": "/access", "principal_type": "group", "principal": "ops", "role": "Reader"})).status, 409);
    assert_eq!(root.post("/access/acl", json!({"path": "/access", "principal_type": "group", "principal": "ops", "role": "Nope"})).pointers(), vec!["/role"]);
    assert_eq!(root.post("/access/acl", json!({"path": "/access", "principal_type": "user", "principal": "nobody@local", "role": "Reader"})).pointers(), vec!["/principal"]);
    assert_eq!(root.post("/access/acl", json!({"path": "no-slash", "principal_type": "user", "principal": "alice@local", "role": "Reader"})).pointers(), vec!["/path"]);
    // Role in use, group with members: refused with 409 naming them.
    let r = root.delete("/access/roles/Reader");
    assert_eq!(r.status, 409);
    assert!(r.body["detail"].as_str().expect("d").contains(&acl_id));
    let r = root.delete("/access/groups/ops");
    assert_eq!(r.status, 409);
    assert!(r.body["detail"]
        .as_str()
        .expect("d")
        .contains("alice@local"));
    // Built-in roles are read-only.
    assert_eq!(
        root.put("/access/roles/Administrator", json!({"privileges": []}))
            .status,
        422
    );
    assert_eq!(root.delete("/access/roles/Administrator").status, 422);
    // A user entry overrides the group entry at the same path: NoAccess cancels.
    let na = root.post("/access/acl", json!({"path": "/access", "principal_type": "user", "principal": "alice@local", "role": "NoAccess"}));
    assert_eq!(na.status, 201);
    assert_eq!(alice.get("/access/users").status, 403);
    assert_eq!(
        root.delete(&format!(
            "/access/acl/{}",
            na.body["id"].as_str().expect("id")
        ))
        .status,
        204
    );
    assert_eq!(alice.get("/access/users").status, 200);
    // Non-propagating entries apply only at their path: Sys.Audit on /nodes/x does not cover /nodes.
    // Role changes apply at once.
    assert_eq!(
        root.put(
            "/access/roles/Reader",
            json!({"privileges": ["Network.Audit"]})
        )
        .status,
        200
    );
    assert_eq!(alice.get("/access/users").status, 403);
    // root@local cannot be deleted or disabled.
    assert_eq!(root.delete("/access/users/root@local").status, 422);
    assert_eq!(
        root.put("/access/users/root@local", json!({"enabled": false}))
            .status,
        422
    );
}

#[test]
fn failed_logins_are_rate_limited() {
    let d = Daemon::start();
    let c = d.client().anonymous();
    for _ in 0..5 {
        assert_eq!(
            c.post(
                "/access/login",
                json!({"username": "root@local", "password": "guess-guess"})
            )
            .status,
            401
        );
    }
    let r = c.post(
        "/access/login",
        json!({"username": "root@local", "password": ROOT_PW}),
    );
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(r.header("retry-after").is_some());
    assert_eq!(c.get("/version").status, 200);
}

#[test]
fn mutating_requests_are_audited() {
    let d = Daemon::start();
    let root = d.root();
    let r = root.post("/access/groups", json!({"groupid": "audited"}));
    let rid = r.header("x-request-id").expect("request id").to_string();
    let _ = root.post("/access/groups", json!({"groupid": "bad name!"}));
    let _ = root.anonymous().delete("/access/groups/audited");
    let log = root.get("/access/audit?limit=50");
    let items = log.body["items"].as_array().expect("items");
    let hit = items
        .iter()
        .find(|e| e["request_id"] == rid.as_str())
        .expect("create audited");
    assert_eq!(hit["user"], "root@local");
    assert_eq!(hit["status"], 201);
    assert_eq!(hit["method"], "POST");
    assert!(items.iter().any(|e| e["status"] == 400));
    assert!(items
        .iter()
        .any(|e| e["status"] == 401 && e["method"] == "DELETE"));
    assert!(items
        .iter()
        .any(|e| e["path"] == "/api/v1/access/login" && e["status"] == 200));
    assert!(items.iter().all(|e| e["method"] != "GET"));
    assert_eq!(
        root.get("/access/audit?user=root@local&limit=1").body["items"]
            .as_array()
            .expect("items")
            .len(),
        1
    );
}

/// Walks every route in the table: anonymous gets 401, an unprivileged user's token gets 403
/// (on objects it does not own), except the routes that are self-service by design.
#[test]
fn every_route_refuses_anonymous_and_unprivileged_callers() {
    let d = Daemon::start();
    let root = d.root();
    // Objects owned by root for the self-service routes.
    let rt = root.post("/access/tokens", json!({"name": "roottok"}));
    assert_eq!(rt.status, 201);
    let task = root.post("/nodes/localhost/store-backup?wait=10", json!({}));
    assert_eq!(task.status, 202);
    let task_id = task.body["id"].as_str().expect("task").to_string();
    let _ = user_client(&root, "mallory@local", "mallory-password");
    let mallory = root.with_token(&root.login("mallory@local", "mallory-password"));
    let mt = mallory.post("/access/tokens", json!({"name": "m"}));
    assert_eq!(mt.status, 201, "{}", mt.text);
    let unpriv = root.with_token(mt.body["token"].as_str().expect("token"));
    let anon = root.anonymous();

    let reg = ferrite::schema::Registry::load().expect("schema");
    let mut checked = 0;
    for r in reg.routes() {
        let mut path = r.path.clone();
        for (name, value) in [
            ("userid", "root@local"),
            ("groupid", "g"),
            ("roleid", "Administrator"),
            ("node", "localhost"),
            ("id", ""),
        ] {
            let v = if name == "id" {
                if r.path.starts_with("/tasks") {
                    task_id.as_str()
                } else if r.path.contains("tokens") {
                    "root@local!roottok"
                } else {
                    "acl-1"
                }
            } else {
                value
            };
            path = path.replace(&format!("{{{name}}}"), v);
        }
        let body = match (r.request.as_deref(), r.operation_id.as_str()) {
            (_, "user_password") => Some(json!({"password": "mallory-new-password"})),
            (_, "token_create") => Some(json!({"name": "walk"})),
            (Some(_), _) => Some(json!({})),
            (None, _) if r.method == "POST" => Some(json!(null)),
            _ => None,
        };
        let call = |c: &common::Client| {
            c.request(
                &r.method,
                &path,
                body.as_ref().filter(|b| !b.is_null()),
                &[],
            )
        };
        if r.auth == ferrite::schema::Auth::Public {
            continue;
        }
        let a = call(&anon);
        assert_eq!(a.status, 401, "{} {} anonymous: {}", r.method, path, a.text);
        let expected = match r.operation_id.as_str() {
            // Self-service by design: callers see their own tokens and tasks, make their own tokens.
            "access_whoami" | "token_list" | "task_list" => 200,
            "token_create" => 201,
            _ => 403,
        };
        let u = call(&unpriv);
        assert_eq!(
            u.status, expected,
            "{} {} unprivileged: {}",
            r.method, path, u.text
        );
        checked += 1;
    }
    assert!(checked >= 30, "walked {checked} routes");
    // Root's objects are untouched.
    assert_eq!(root.get("/access/tokens/root@local!roottok").status, 200);
    // Unprivileged lists show only the caller's own objects.
    let own = unpriv.get("/access/tokens").body["items"]
        .as_array()
        .expect("items")
        .clone();
    assert!(own.iter().all(|t| t["user"] == "mallory@local"));
    assert!(unpriv.get("/tasks").body["items"]
        .as_array()
        .expect("items")
        .is_empty());
}
