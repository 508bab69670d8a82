//! Groups: `/access/groups`. Membership is set on users; a group shows its members.

use std::sync::Arc;

use serde_json::{json, Value};

use super::paging;
use super::paging::tags_of;
use crate::api::{ApiError, App, Req, Resp};
use crate::store::objects;

const KIND: &str = "group";

fn with_members(app: &App, o: &objects::Object) -> Value {
    let st = app.access.snapshot();
    let mut members: Vec<&String> = st
        .users
        .iter()
        .filter(|(_, u)| u.groups.contains(&o.id))
        .map(|(k, _)| k)
        .collect();
    members.sort();
    let mut v = o.to_api();
    v["members"] = json!(members);
    v
}

pub async fn list(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let f = paging::filter(&req)?;
    let page = app.store.list_cached(KIND, &f)?;
    Ok(paging::page_response_cached(page, |o| {
        with_members(&app, o)
    }))
}

pub async fn create(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let mut body = req.body.clone();
    let id = body["groupid"].as_str().unwrap_or_default().to_string();
    if let Some(m) = body.as_object_mut() {
        m.entry("tags").or_insert(json!([]));
        m.entry("comment").or_insert(Value::Null);
    }
    let o = app
        .store
        .write(|tx| objects::insert(tx, KIND, &id, &id, None, &body, &tags_of(&body)))?;
    Ok(Resp::json(201, &with_members(&app, &o))
        .etag(o.revision)
        .location(format!("{}/access/groups/{id}", crate::API_PREFIX)))
}

pub async fn view(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let o = app.store.require_cached(KIND, req.param("groupid"))?;
    Ok(Resp::json(200, &with_members(&app, &o)).etag(o.revision))
}

pub async fn update(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("groupid").to_string();
    let o = app.store.write(|tx| {
        let cur = objects::require(tx, KIND, &id)?;
        let mut body = cur.body.clone();
        super::merge_update(&mut body, &req.body);
        objects::update(tx, KIND, &id, req.if_match, &body, &tags_of(&body))
    })?;
    Ok(Resp::json(200, &with_members(&app, &o)).etag(o.revision))
}

pub async fn delete(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let id = req.param("groupid").to_string();
    app.store.write(|tx| {
        objects::require(tx, KIND, &id)?;
        let members: Vec<String> = objects::all(tx, "user")?
            .into_iter()
            .filter(|u| {
                u.body["groups"]
                    .as_array()
                    .is_some_and(|g| g.iter().any(|x| x == id.as_str()))
            })
            .map(|u| u.id)
            .collect();
        if !members.is_empty() {
            return Err(ApiError::conflict(format!(
                "group '{id}' still has members: {}",
                members.join(", ")
            )));
        }
        let acls: Vec<String> = objects::all(tx, "acl")?
            .into_iter()
            .filter(|a| a.body["principal_type"] == "group" && a.body["principal"] == id.as_str())
            .map(|a| a.id)
            .collect();
        if !acls.is_empty() {
            return Err(ApiError::conflict(format!(
                "group '{id}' is named by ACL entries {}",
                acls.join(", ")
            )));
        }
        objects::delete(tx, KIND, &id, req.if_match)?;
        Ok::<_, ApiError>(())
    })?;
    app.access.reload(&app.store)?;
    Ok(Resp::no_content())
}
