//! Roles: `/access/roles`. Built-in roles are read-only.

use std::sync::Arc;

use serde_json::{json, Value};

use super::paging;
use crate::api::{ApiError, App, Req, Resp};
use crate::store::objects;

const KIND: &str = "role";

pub async fn list(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let f = paging::filter(&req)?;
    let page = app.store.list_cached(KIND, &f)?;
    Ok(paging::page_response_cached(page, objects::Object::to_api))
}

pub async fn create(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let mut body = req.body.clone();
    let id = body["roleid"].as_str().unwrap_or_default().to_string();
    if let Some(m) = body.as_object_mut() {
        m.insert("builtin".into(), json!(false));
        m.entry("comment").or_insert(Value::Null);
    }
    let o = app
        .store
        .write(|tx| objects::insert(tx, KIND, &id, &id, None, &body, &[]))?;
    app.access.reload(&app.store)?;
    Ok(Resp::json(201, &o.to_api())
        .etag(o.revision)
        .location(format!("{}/access/roles/{id}", crate::API_PREFIX)))
}

pub async fn view(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let o = app.store.require_cached(KIND, req.param("roleid"))?;
    Ok(Resp::json_bytes(200, o.rendered_with(objects::Object::to_api)).etag(o.revision))
}

fn refuse_builtin(o: &objects::Object) -> Result<(), ApiError> {
    if o.body["builtin"] == json!(true) {
        return Err(ApiError::unprocessable(format!(
            "role '{}' is built in and cannot be changed; create your own role",
            o.id
        )));
    }
    Ok(())
}

pub async fn update(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("roleid").to_string();
    let o = app.store.write(|tx| {
        let cur = objects::require(tx, KIND, &id)?;
        refuse_builtin(&cur)?;
        let mut body = cur.body.clone();
        super::merge_update(&mut body, &req.body);
        Ok::<_, ApiError>(objects::update(tx, KIND, &id, req.if_match, &body, &[])?)
    })?;
    app.access.reload(&app.store)?;
    Ok(Resp::json(200, &o.to_api()).etag(o.revision))
}

pub async fn delete(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("roleid").to_string();
    app.store.write(|tx| {
        let cur = objects::require(tx, KIND, &id)?;
        refuse_builtin(&cur)?;
        let acls: Vec<String> = objects::all(tx, "acl")?
            .into_iter()
            .filter(|a| a.body["role"] == id.as_str())
            .map(|a| a.id)
            .collect();
        if !acls.is_empty() {
            return Err(ApiError::conflict(format!(
                "role '{id}' is in use by ACL entries {}",
                acls.join(", ")
            )));
        }
        objects::delete(tx, KIND, &id, req.if_match)?;
        Ok::<_, ApiError>(())
    })?;
    app.access.reload(&app.store)?;
    Ok(Resp::no_content())
}
