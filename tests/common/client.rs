//! An HTTP client that checks every response against the daemon's own OpenAPI document
//! (status documented for the operation, body matching its schema).

use super::*;

/// A response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// Pointers named in a problem's invalid_params (each once; a field that breaks two
    /// rules of its schema is named twice by the daemon, once per rule).
    pub fn pointers(&self) -> Vec<String> {
        let mut v: Vec<String> = self.body["invalid_params"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["pointer"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        v.dedup();
        v
    }
}

static OPENAPI: Mutex<Option<Value>> = Mutex::new(None);
/// Operations exercised in this test binary ("METHOD /path/template status").
pub static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// An HTTP client bound to one daemon.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub token: Option<String>,
    agent: ureq::Agent,
}

fn match_template(template: &str, path: &str) -> bool {
    let a: Vec<&str> = template.split('/').collect();
    let b: Vec<&str> = path.split('/').collect();
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(t, p)| (t.starts_with('{') && t.ends_with('}')) || t == p)
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .build();
        Client {
            base: base.to_string(),
            token,
            agent,
        }
    }

    pub fn with_token(&self, token: &str) -> Client {
        Client {
            token: Some(token.to_string()),
            ..self.clone()
        }
    }

    pub fn anonymous(&self) -> Client {
        Client {
            token: None,
            ..self.clone()
        }
    }

    pub fn login(&self, user: &str, pw: &str) -> String {
        let r = self
            .anonymous()
            .post("/access/login", json!({"username": user, "password": pw}));
        assert_eq!(r.status, 200, "login failed: {}", r.text);
        r.body["ticket"].as_str().expect("ticket").to_string()
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = self.begin(method, path);
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let res = match body {
            Some(b) => req
                .set("Content-Type", "application/json")
                .send_string(&b.to_string()),
            None => req.call(),
        };
        self.finish(method, path, res)
    }

    /// A request to `path` under /api/v1, with this client's credentials.
    fn begin(&self, method: &str, path: &str) -> ureq::Request {
        let url = format!("{}/api/v1{}", self.base, path);
        let req = self.agent.request(method, &url);
        match &self.token {
            Some(t) => req.set("Authorization", &format!("Bearer {t}")),
            None => req,
        }
    }

    /// Reads an answer and checks it against the contract.
    fn finish(&self, method: &str, path: &str, res: Result<ureq::Response, ureq::Error>) -> Resp {
        let resp = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: transport error {e}"),
        };
        let status = resp.status();
        let headers: Vec<(String, String)> = resp
            .headers_names()
            .into_iter()
            .filter_map(|n| resp.header(&n).map(|v| (n.clone(), v.to_string())))
            .collect();
        let ct = resp.content_type().to_string();
        let text = resp.into_string().unwrap_or_default();
        let body: Value =
            if text.is_empty() || ct == "application/jsonl" || ct == "text/event-stream" {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::Null)
            };
        let r = Resp {
            status,
            headers,
            body,
            text,
        };
        self.check_contract(method, path, &r, &ct);
        r
    }

    /// Validates a response against the OpenAPI document the daemon serves.
    fn check_contract(&self, method: &str, path: &str, r: &Resp, ct: &str) {
        let doc = {
            let mut g = OPENAPI.lock().unwrap_or_else(|p| p.into_inner());
            if g.is_none() {
                let text = ureq::get(&format!("{}/api/v1/openapi.json", self.base))
                    .call()
                    .expect("openapi")
                    .into_string()
                    .expect("openapi text");
                *g = Some(serde_json::from_str(&text).expect("openapi json"));
            }
            g.clone().expect("openapi")
        };
        let path_only = path.split('?').next().unwrap_or(path);
        let full = format!("/api/v1{path_only}");
        let Some((template, item)) =
            doc["paths"]
                .as_object()
                .expect("paths")
                .iter()
                .find(|(t, item)| {
                    match_template(t, &full) && item.get(method.to_lowercase()).is_some()
                })
        else {
            // Unknown routes must be problem documents.
            assert!(
                r.status >= 400,
                "{method} {path} is not in the OpenAPI document but answered {}",
                r.status
            );
            assert_eq!(ct, "application/problem+json");
            return;
        };
        let op = &item[method.to_lowercase()];
        let key = format!("{method} {template} {}", r.status);
        SEEN.lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(HashSet::new)
            .insert(key.clone());
        let resp = op["responses"]
            .get(r.status.to_string())
            .unwrap_or_else(|| {
                // Every status is documented per operation, except 408: a client too slow
                // to send its body can meet it on any route.
                assert!(
                    r.status == 408,
                    "{method} {template} answered undocumented {}: {}",
                    r.status,
                    r.text
                );
                &Value::Null
            });
        if r.status >= 400 {
            assert_eq!(
                ct, "application/problem+json",
                "{method} {path} error is not problem+json"
            );
            validate(
                &doc,
                &json!({"$ref": "#/components/schemas/Problem"}),
                &r.body,
                &key,
            );
            return;
        }
        if let Some(schema) = resp["content"]["application/json"].get("schema") {
            validate(&doc, schema, &r.body, &key);
        }
    }

    /// Sends raw bytes (an upload) and checks the answer against the contract like any call.
    pub fn send_bytes(&self, method: &str, path: &str, bytes: &[u8], content_type: &str) -> Resp {
        let res = self
            .begin(method, path)
            .set("Content-Type", content_type)
            .send_bytes(bytes);
        self.finish(method, path, res)
    }

    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, None, &[])
    }
    pub fn post(&self, path: &str, body: Value) -> Resp {
        self.request("POST", path, Some(&body), &[])
    }
    pub fn put(&self, path: &str, body: Value) -> Resp {
        self.request("PUT", path, Some(&body), &[])
    }
    pub fn delete(&self, path: &str) -> Resp {
        self.request("DELETE", path, None, &[])
    }
}

/// Validates `instance` against a schema that uses `#/components/schemas/...` references.
pub fn validate(doc: &Value, schema: &Value, instance: &Value, what: &str) {
    let mut root = schema.as_object().cloned().unwrap_or_default();
    root.insert("components".into(), doc["components"].clone());
    let v = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&Value::Object(root))
        .expect("schema compiles");
    let errors: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: response does not match the OpenAPI schema: {errors:?}\nbody: {instance}"
    );
}

/// Creates a user with the given password and returns a ticket-bearing client for it.
pub fn user_client(root: &Client, userid: &str, pw: &str) -> Client {
    let r = root.post("/access/users", json!({"userid": userid, "password": pw}));
    assert_eq!(r.status, 201, "{}", r.text);
    let t = root.login(userid, pw);
    root.with_token(&t)
}
