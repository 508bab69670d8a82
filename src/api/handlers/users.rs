//! Users: `/access/users`.

use std::sync::Arc;

use serde_json::{json, Value};

use super::paging;
use super::paging::tags_of;
use crate::access::{password, ROOT_USER};
use crate::api::{ApiError, App, Req, Resp};
use crate::store::objects;

const KIND: &str = "user";

fn api(o: &objects::Object) -> Value {
    let mut v = o.to_api();
    v["superuser"] = json!(o.id == ROOT_USER);
    v
}

/// Every group named must exist.
fn check_groups(tx: &rusqlite::Connection, body: &Value) -> Result<(), ApiError> {
    if let Some(groups) = body["groups"].as_array() {
        for (i, g) in groups.iter().enumerate() {
            let g = g.as_str().unwrap_or_default();
            if objects::get(tx, "group", g)?.is_none() {
                return Err(ApiError::field(
                    "body",
                    &format!("/groups/{i}"),
                    format!("group '{g}' does not exist"),
                ));
            }
        }
    }
    Ok(())
}

pub async fn list(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let f = paging::filter(&req)?;
    let page = app.store.list_cached(KIND, &f)?;
    Ok(paging::page_response_cached(page, api))
}

pub async fn create(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let mut body = req.body.clone();
    let userid = body["userid"].as_str().unwrap_or_default().to_string();
    let hash = match body.get("password").and_then(Value::as_str) {
        Some(pw) => {
            let pw = pw.to_string();
            Some(
                tokio::task::spawn_blocking(move || password::hash(&pw))
                    .await
                    .map_err(|e| ApiError::internal(e.to_string()))?
                    .map_err(ApiError::internal)?,
            )
        }
        None => None,
    };
    if let Some(m) = body.as_object_mut() {
        m.remove("password");
        m.entry("enabled").or_insert(json!(true));
        m.entry("groups").or_insert(json!([]));
        m.entry("tags").or_insert(json!([]));
        for k in ["email", "comment", "expires_at"] {
            m.entry(k).or_insert(Value::Null);
        }
    }
    let tags = tags_of(&body);
    let obj = app.store.write(|tx| {
        check_groups(tx, &body)?;
        let o = objects::insert(tx, KIND, &userid, &userid, None, &body, &tags)?;
        if let Some(h) = &hash {
            objects::set_secret(tx, KIND, &userid, h)?;
        }
        Ok::<_, ApiError>(o)
    })?;
    app.access.reload(&app.store)?;
    Ok(Resp::json(201, &api(&obj))
        .etag(obj.revision)
        .location(format!("{}/access/users/{userid}", crate::API_PREFIX)))
}

pub async fn view(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("userid");
    req.require_owner_or_privileged(id, "this user")?;
    let o = app.store.require_cached(KIND, id)?;
    Ok(Resp::json_bytes(200, o.rendered_with(api)).etag(o.revision))
}

pub async fn update(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("userid").to_string();
    if id == ROOT_USER && req.body.get("enabled") == Some(&json!(false)) {
        return Err(ApiError::unprocessable(
            "root@local cannot be disabled: it is the recovery administrator",
        ));
    }
    let o = app.store.write(|tx| {
        let cur = objects::require(tx, KIND, &id)?;
        let mut body = cur.body.clone();
        super::merge_update(&mut body, &req.body);
        check_groups(tx, &body)?;
        let tags = tags_of(&body);
        Ok::<_, ApiError>(objects::update(tx, KIND, &id, req.if_match, &body, &tags)?)
    })?;
    app.access.reload(&app.store)?;
    Ok(Resp::json(200, &api(&o)).etag(o.revision))
}

pub async fn delete(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("userid").to_string();
    if id == ROOT_USER {
        return Err(ApiError::unprocessable(
            "root@local cannot be deleted: it is the recovery administrator",
        ));
    }
    app.store.write(|tx| {
        objects::require(tx, KIND, &id)?;
        let tokens = objects::list(
            tx,
            "token",
            &crate::store::ListFilter {
                owner: Some(id.clone()),
                limit: 10_000,
                ..Default::default()
            },
        )?;
        let acls: Vec<String> = objects::all(tx, "acl")?
            .into_iter()
            .filter(|a| a.body["principal_type"] == "user" && a.body["principal"] == id.as_str())
            .map(|a| a.id)
            .collect();
        if !acls.is_empty() {
            return Err(ApiError::conflict(format!(
                "user '{id}' is named by ACL entries {}; delete them first",
                acls.join(", ")
            )));
        }
        objects::delete(tx, KIND, &id, req.if_match)?;
        // The user's API tokens go with it.
        for t in tokens.items {
            objects::delete(tx, "token", &t.id, None)?;
        }
        Ok::<_, ApiError>(())
    })?;
    app.access.reload(&app.store)?;
    Ok(Resp::no_content())
}

pub async fn password(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("userid").to_string();
    req.require_owner_or_privileged(&id, "this user")?;
    if !req.privileged && req.principal()?.token_id.is_some() {
        return Err(ApiError::forbidden(
            "API tokens cannot change passwords; log in with a ticket",
        ));
    }
    let pw = req.body["password"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let hash = tokio::task::spawn_blocking(move || password::hash(&pw))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(ApiError::internal)?;
    app.store.write(|tx| {
        objects::require(tx, KIND, &id)?;
        objects::set_secret(tx, KIND, &id, &hash)?;
        Ok::<_, ApiError>(())
    })?;
    Ok(Resp::no_content())
}
