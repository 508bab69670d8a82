//! ACL entries: `/access/acl`. Each entry grants one role to one principal on one path.

use std::sync::Arc;

use serde_json::json;

use super::paging;
use crate::api::{ApiError, App, Req, Resp};
use crate::store::objects;

const KIND: &str = "acl";

pub async fn list(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let f = paging::filter(&req)?;
    let page = app.store.list_cached(KIND, &f)?;
    Ok(paging::page_response_cached(page, objects::Object::to_api))
}

pub async fn create(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let mut body = req.body.clone();
    body["propagate"] = json!(body["propagate"].as_bool().unwrap_or(true));
    let ptype = body["principal_type"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let principal = body["principal"].as_str().unwrap_or_default().to_string();
    let role = body["role"].as_str().unwrap_or_default().to_string();
    let path = body["path"].as_str().unwrap_or_default().to_string();
    let o = app.store.write(|tx| {
        let (kind, what) = match ptype.as_str() {
            "user" => ("user", "user"),
            "group" => ("group", "group"),
            _ => ("token", "token"),
        };
        if objects::get(tx, kind, &principal)?.is_none() {
            return Err(ApiError::field(
                "body",
                "/principal",
                format!("{what} '{principal}' does not exist"),
            ));
        }
        if objects::get(tx, "role", &role)?.is_none() {
            return Err(ApiError::field(
                "body",
                "/role",
                format!("role '{role}' does not exist"),
            ));
        }
        let dup = objects::all(tx, KIND)?.into_iter().find(|a| {
            a.body["path"] == path.as_str()
                && a.body["principal_type"] == ptype.as_str()
                && a.body["principal"] == principal.as_str()
                && a.body["role"] == role.as_str()
        });
        if let Some(d) = dup {
            return Err(ApiError::conflict(format!(
                "an identical ACL entry already exists: {}",
                d.id
            )));
        }
        let n = objects::next_id(tx, "acl")?;
        let id = format!("acl-{n}");
        body["id"] = json!(id);
        Ok(objects::insert(tx, KIND, &id, &path, None, &body, &[])?)
    })?;
    app.access.reload(&app.store)?;
    Ok(Resp::json(201, &o.to_api())
        .etag(o.revision)
        .location(format!("{}/access/acl/{}", crate::API_PREFIX, o.id)))
}

pub async fn view(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let o = app.store.require_cached(KIND, req.param("id"))?;
    Ok(Resp::json(200, &o.to_api()).etag(o.revision))
}

pub async fn delete(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("id").to_string();
    app.store
        .write(|tx| objects::delete(tx, KIND, &id, req.if_match))?;
    app.access.reload(&app.store)?;
    Ok(Resp::no_content())
}
