//! API tokens: `/access/tokens`. The secret is returned once; only its keyed hash is stored.

use std::sync::Arc;

use serde_json::{json, Value};

use super::paging;
use crate::access::{token, PrivSet};
use crate::api::{ApiError, App, Req, Resp};
use crate::store::objects;

const KIND: &str = "token";

pub async fn list(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let mut f = paging::filter(&req)?;
    if !req.privileged {
        f.owner = Some(req.principal()?.user.clone());
    }
    let page = app.store.list_cached(KIND, &f)?;
    Ok(paging::page_response_cached(page, objects::Object::to_api))
}

pub async fn create(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let p = req.principal()?.clone();
    let user = req.body["user"].as_str().unwrap_or(&p.user).to_string();
    if user != p.user && !req.privileged {
        return Err(ApiError::forbidden(
            "creating tokens for another user requires User.Modify on /access",
        ));
    }
    if let Some(exp) = req.body["expires_at"].as_str() {
        if crate::time::parse_rfc3339(exp).is_some_and(|e| e <= crate::time::now_unix()) {
            return Err(ApiError::field("body", "/expires_at", "lies in the past"));
        }
    }
    // A token made by a token can never exceed the creating token's privileges.
    let mut privileges = req.body.get("privileges").cloned().unwrap_or(Value::Null);
    if let Some(parent) = &p.token_id {
        let parent_set = app.access.privileges(&p, "/");
        let requested = match privileges.as_array() {
            Some(a) => PrivSet::from_patterns(a.iter().filter_map(Value::as_str)),
            None => PrivSet::all(),
        };
        privileges = json!(requested.intersect(parent_set).names());
        tracing::debug!(parent = %parent, "token created by a token is capped by it");
    }
    let name = req.body["name"].as_str().unwrap_or_default().to_string();
    let id = format!("{user}!{name}");
    let (secret, hash) = token::generate(app.access.token_key(), &id);
    let body = json!({
        "id": id, "name": name, "user": user,
        "comment": req.body.get("comment").cloned().unwrap_or(Value::Null),
        "expires_at": req.body.get("expires_at").cloned().unwrap_or(Value::Null),
        "privileges": privileges,
    });
    let o = app.store.write(|tx| {
        if objects::get(tx, "user", &user)?.is_none() {
            return Err(ApiError::field(
                "body",
                "/user",
                format!("user '{user}' does not exist"),
            ));
        }
        let o = objects::insert(tx, KIND, &id, &name, Some(&user), &body, &[])?;
        objects::set_secret(tx, KIND, &id, &hash)?;
        Ok(o)
    })?;
    app.access.reload(&app.store)?;
    let out = json!({
        "id": id, "token": secret, "user": user, "name": name,
        "expires_at": o.body["expires_at"], "privileges": o.body["privileges"], "revision": o.revision,
    });
    Ok(Resp::json(201, &out)
        .etag(o.revision)
        .location(format!("{}/access/tokens/{id}", crate::API_PREFIX)))
}

fn load(app: &App, req: &Req) -> Result<objects::Object, ApiError> {
    let o = app.store.read(|c| objects::get(c, KIND, req.param("id")))?;
    match o {
        Some(o) => {
            req.require_owner_or_privileged(o.owner.as_deref().unwrap_or_default(), "this token")?;
            Ok(o)
        }
        None if req.privileged => Err(ApiError::not_found(format!(
            "token '{}' does not exist",
            req.param("id")
        ))),
        // Without the privilege, do not reveal whether other users' tokens exist.
        None => Err(ApiError::forbidden("this token is not yours")),
    }
}

pub async fn view(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let o = load(&app, &req)?;
    Ok(Resp::json(200, &o.to_api()).etag(o.revision))
}

pub async fn delete(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let o = load(&app, &req)?;
    app.store.write(|tx| {
        let acls: Vec<String> = objects::all(tx, "acl")?
            .into_iter()
            .filter(|a| a.body["principal_type"] == "token" && a.body["principal"] == o.id.as_str())
            .map(|a| a.id)
            .collect();
        for a in acls {
            objects::delete(tx, "acl", &a, None)?;
        }
        objects::delete(tx, KIND, &o.id, req.if_match)
    })?;
    app.access.reload(&app.store)?;
    Ok(Resp::no_content())
}
