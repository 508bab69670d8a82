//! Login, ticket renewal and "who am I".

use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;

use crate::access::{password, AuthKind, ROOT_USER};
use crate::api::{ApiError, App, Req, Resp};
use crate::store::objects;

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

fn ticket_response(app: &App, user: &str) -> Resp {
    let (ticket, exp) = app.access.issue_ticket(user);
    Resp::json(
        200,
        &json!({"username": user, "ticket": ticket, "expires_at": crate::time::unix_to_rfc3339(exp)}),
    )
}

/// `POST /access/login`. Failures are all "invalid username or password" (no user
/// enumeration) and are rate limited per user and source.
pub async fn login(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let body: Login = req.body_as()?;
    if let Err(wait) = app.access.limiter.check(&body.username, req.peer) {
        let mut e = ApiError::new(
            429,
            "too-many-attempts",
            "Too many failed logins",
            format!(
                "too many failed logins for {} from {}; retry in {wait} s",
                body.username, req.peer
            ),
        );
        e.retry_after = Some(wait);
        return Err(e);
    }
    let now = crate::time::now_unix();
    let active = app.access.snapshot().user_active(&body.username, now);
    let stored = app
        .store
        .read(|c| objects::get_secret(c, "user", &body.username))?;
    let pw = body.password.clone();
    // Verify even for unknown users so timing does not reveal which users exist.
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Cw1yCmGsAHp1d4i0hdXiGHC1yo1vJuAyZEW5hAAjZOU";
    let hash = stored.clone().unwrap_or_else(|| DUMMY.to_string());
    let ok = tokio::task::spawn_blocking(move || password::verify(&pw, &hash))
        .await
        .map_err(|e| ApiError::internal(format!("password check panicked: {e}")))?;
    if !(ok && stored.is_some() && active) {
        app.access.limiter.failed(&body.username, req.peer);
        tracing::info!(user = %body.username, "failed login");
        return Err(ApiError::unauthorized(
            "invalid username or password, or the user is disabled",
        ));
    }
    app.access.limiter.succeeded(&body.username, req.peer);
    Ok(ticket_response(&app, &body.username))
}

/// `POST /access/renew`: a valid ticket buys a fresh one.
pub async fn renew(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let p = req.principal()?;
    Ok(ticket_response(&app, &p.user))
}

/// `GET /access/me`.
pub async fn whoami(app: Arc<App>, req: Req) -> Result<Resp, ApiError> {
    let p = req.principal()?;
    let privs = app.access.privileges(p, "/").names();
    let mut v = json!({
        "username": p.user,
        "auth": if p.kind == AuthKind::Ticket { "ticket" } else { "token" },
        "superuser": p.user == ROOT_USER && p.token_id.is_none(),
        "privileges": privs,
    });
    if let Some(t) = &p.token_id {
        v["token_id"] = json!(t);
    }
    Ok(Resp::json(200, &v))
}
