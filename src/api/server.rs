//! The hyper server: accept loop (plain or TLS), connection limits against slow clients, and
//! the request pipeline shared by every route.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use tokio::net::TcpListener;
use tracing::Instrument;

use super::{ApiError, App, Body, Req, Resp};
use crate::access::AuthKind;
use crate::schema::{coerce_query, Auth, InvalidParam};
use crate::store::{audit, AuditRecord};

use super::checks::{parse_if_match, validate_update, websocket_key};
use super::linger::expects_continue;
/// Largest request body accepted (413 beyond).
pub use super::linger::{discard, Refused};

pub const MAX_BODY: usize = 1024 * 1024;

/// Server limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time allowed to send the request headers (slow-loris defence).
    pub header_timeout: Duration,
    /// Time allowed to send the request body.
    pub body_timeout: Duration,
    /// Time allowed for the TLS handshake.
    pub tls_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            tls_timeout: Duration::from_secs(10),
        }
    }
}

/// Runs one connection until it ends, or until `stop` turns true: then it finishes the
/// request in flight and closes (keep-alive connections close at once).
macro_rules! drive {
    ($conn:expr, $stop:expr, $peer:expr) => {{
        let conn = $conn;
        tokio::pin!(conn);
        let mut stop = $stop;
        let res = tokio::select! {
            r = conn.as_mut() => r,
            _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                conn.as_mut().graceful_shutdown();
                conn.as_mut().await
            }
        };
        if let Err(e) = res {
            tracing::debug!(error = %e, peer = %$peer, "connection ended");
        }
    }};
}

/// Serves the API on `listener` until `shutdown` resolves, then drains connections.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    // Connections are driven by `drive!` below: they watch `stop` for the graceful shutdown
    // and the tracker waits for them to drain. (hyper-util's GracefulShutdown does not take
    // connections with upgrades, which the WebSocket routes need.)
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tracker = tokio_util::task::TaskTracker::new();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = Arc::clone(&app);
        let body_timeout = limits.body_timeout;
        let svc = hyper::service::service_fn(move |req| {
            let app = Arc::clone(&app);
            async move { Ok::<_, std::convert::Infallible>(handle(app, req, peer, body_timeout).await) }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .keep_alive(true);
        match &acceptor {
            None => {
                let stop = stop_rx.clone();
                tracker.spawn(async move {
                    drive!(
                        builder
                            .serve_connection(TokioIo::new(stream), svc)
                            .with_upgrades(),
                        stop,
                        peer
                    );
                });
            }
            Some(acc) => {
                let acc = acc.clone();
                let tls_timeout = limits.tls_timeout;
                let stop = stop_rx.clone();
                tracker.spawn(async move {
                    let tls = match tokio::time::timeout(tls_timeout, acc.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, %peer, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    drive!(
                        builder
                            .serve_connection(TokioIo::new(tls), svc)
                            .with_upgrades(),
                        stop,
                        peer
                    );
                });
            }
        }
    }
    tracing::info!("shutting down: draining connections");
    let _ = stop_tx.send(true);
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(10), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("connections did not drain within 10s");
    }
}

/// Request ids: a per-process random prefix and a counter, unique across restarts without a
/// random-number syscall per request.
fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let p = PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u128() as u32);
    format!(
        "{p:08x}{:08x}",
        COUNTER.fetch_add(1, Ordering::Relaxed) as u32
    )
}

fn finish(mut resp: Resp, request_id: &str) -> Response<Body> {
    let (ct, body) = resp.take_body();
    let mut r = Response::new(body);
    *r.status_mut() = hyper::StatusCode::from_u16(resp.status).unwrap_or(hyper::StatusCode::OK);
    let h = r.headers_mut();
    if let Some(ct) = ct {
        if let Ok(v) = HeaderValue::from_str(&ct) {
            h.insert(hyper::header::CONTENT_TYPE, v);
        }
    }
    for (k, v) in &resp.headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.append(HeaderName::from_static(k), v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-request-id", v);
    }
    r
}

fn problem_response(e: &ApiError, instance: &str, request_id: &str) -> Response<Body> {
    if e.status >= 500 {
        tracing::error!(request_id, status = e.status, detail = %e.detail, log = ?e.log_detail, "request failed");
    } else {
        tracing::debug!(request_id, status = e.status, detail = %e.detail, "request refused");
    }
    let body = e.body(instance, request_id);
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *r.status_mut() =
        hyper::StatusCode::from_u16(e.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if let Some(s) = e.retry_after {
        h.insert(hyper::header::RETRY_AFTER, HeaderValue::from(s));
    }
    if let Some(a) = &e.allow {
        if let Ok(v) = HeaderValue::from_str(a) {
            h.insert(hyper::header::ALLOW, v);
        }
    }
    if e.status == 401 {
        h.insert(
            hyper::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"ferrite\""),
        );
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-request-id", v);
    }
    r
}

/// Entry point for one request.
async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
    peer: SocketAddr,
    body_timeout: Duration,
) -> Response<Body> {
    let rid = request_id();
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    // A debug span: cheap when disabled; problems are logged with the request id anyway.
    let span = tracing::debug_span!("request", id = %rid, %method, %path, peer = %peer.ip());
    async move {
        let mut audit_ctx = AuditCtx::default();
        let resp = match pipeline(&app, req, peer.ip(), &rid, &mut audit_ctx, body_timeout).await {
            Ok(r) => finish(r, &rid),
            Err(e) => problem_response(&e, &path, &rid),
        };
        tracing::debug!(status = resp.status().as_u16(), "done");
        if audit_ctx.mutating {
            let rec = AuditRecord {
                seq: 0,
                time: crate::time::now_unix(),
                request_id: rid.clone(),
                user: audit_ctx.user,
                token_id: audit_ctx.token,
                source: peer.ip().to_string(),
                method,
                path,
                status: resp.status().as_u16(),
            };
            if let Err(e) = app
                .store
                .write(|tx| audit::append(tx, std::slice::from_ref(&rec)))
            {
                tracing::error!(error = %e, "could not write the audit log");
            }
        }
        resp
    }
    .instrument(span)
    .await
}

#[derive(Default)]
struct AuditCtx {
    mutating: bool,
    user: Option<String>,
    token: Option<String>,
}

async fn pipeline(
    app: &Arc<App>,
    req: Request<Incoming>,
    peer: IpAddr,
    rid: &str,
    audit_ctx: &mut AuditCtx,
    body_timeout: Duration,
) -> Result<Resp, ApiError> {
    let (mut parts, incoming) = req.into_parts();
    // Present on every HTTP/1.1 request; used only by WebSocket routes.
    let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let method = parts.method.as_str().to_string();
    audit_ctx.mutating = method != "GET" && method != "HEAD" && method != "OPTIONS";
    let full_path = parts.uri.path();
    let headers = parts.headers;
    let query_string = parts.uri.query();
    // Read the (bounded) body before any refusal: answering while the client is still
    // sending would force hyper to close a keep-alive connection the client may reuse.
    // Upload routes stream their body to the handler instead.
    let sub = full_path
        .strip_prefix(crate::API_PREFIX)
        .filter(|s| s.is_empty() || s.starts_with('/'));
    let found = sub.map(|s| app.router.find(&method, s));
    let streams = matches!(&found, Some(super::router::Match::Found { index, .. })
        if app.registry.routes()[*index].request_stream.is_some());
    let (raw, stream) = if streams {
        (Bytes::new(), Some(incoming))
    } else {
        (read_body(incoming, body_timeout).await?, None)
    };
    let mut stream = stream;
    let expect_continue = expects_continue(&headers);
    let r = route_and_run(
        app,
        found,
        Parts {
            method,
            full_path,
            headers,
            query_string,
            peer,
            rid,
            upgrade,
            expect_continue,
        },
        raw,
        &mut stream,
        audit_ctx,
    )
    .await;
    if r.is_err() {
        if let Some(b) = stream.take() {
            discard(b, expect_continue, Refused::Unvetted);
        }
    }
    r
}

/// The request line and headers, carried into [`route_and_run`].
struct Parts<'a> {
    method: String,
    full_path: &'a str,
    headers: hyper::HeaderMap,
    query_string: Option<&'a str>,
    peer: IpAddr,
    rid: &'a str,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
    /// Read once: both a refusal here and the upload handler need it.
    expect_continue: bool,
}

/// Everything after the body is read: routing, auth, validation, idempotency, the handler.
async fn route_and_run(
    app: &Arc<App>,
    found: Option<super::router::Match>,
    parts: Parts<'_>,
    raw: Bytes,
    stream: &mut Option<Incoming>,
    audit_ctx: &mut AuditCtx,
) -> Result<Resp, ApiError> {
    let Parts {
        method,
        full_path,
        headers,
        query_string,
        peer,
        rid,
        upgrade,
        expect_continue,
    } = parts;
    let found = found.ok_or_else(|| {
        ApiError::not_found(format!(
            "no route {full_path}; the API lives under {}",
            crate::API_PREFIX
        ))
    })?;
    let (index, params) = match found {
        super::router::Match::Found { index, params } => (index, params),
        super::router::Match::MethodNotAllowed(allowed) => {
            let mut e = ApiError::new(
                405,
                "method-not-allowed",
                "Method not allowed",
                format!(
                    "{method} is not allowed on {full_path}; allowed: {}",
                    allowed.join(", ")
                ),
            );
            e.allow = Some(allowed.join(", "));
            return Err(e);
        }
        super::router::Match::NotFound => {
            return Err(ApiError::not_found(format!(
                "no route {method} {full_path}"
            )))
        }
    };
    let route = Arc::clone(&app.registry.routes()[index]);

    // Authentication.
    let principal = if route.auth == Auth::Public {
        None
    } else {
        let auth = headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        // A WebSocket route opened with a one-time console ticket instead of a header.
        let console_ticket = match (auth, route.websocket, query_string) {
            (None, true, Some(q)) => form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "ticket")
                .map(|(_, v)| v.into_owned()),
            _ => None,
        };
        let p = match console_ticket {
            Some(t) => app.access.authenticate_console(&t, full_path),
            None => app.access.authenticate(auth),
        }
        .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        audit_ctx.user = Some(p.user.clone());
        audit_ctx.token = p.token_id.clone();
        if route.auth == Auth::Ticket && p.kind != AuthKind::Ticket {
            return Err(ApiError::forbidden(format!(
                "{} needs a login ticket; API tokens cannot use it",
                route.operation_id
            )));
        }
        Some(p)
    };

    // Authorization.
    let mut privileged = route.auth != Auth::Privilege;
    if let (Some(p), Some(privilege), Some(acl)) = (&principal, &route.privilege, &route.acl_path) {
        let mut acl_path = acl.clone();
        for (k, v) in &params {
            acl_path = acl_path.replace(&format!("{{{k}}}"), v);
        }
        privileged = app.access.allowed(p, privilege, &acl_path);
        if !privileged && !route.self_service {
            return Err(ApiError::forbidden(format!(
                "{} requires {privilege} on {acl_path}",
                route.operation_id
            )));
        }
    }

    // Path parameters.
    let mut invalid = Vec::new();
    for (name, ty) in &route.params {
        for mut e in app.registry.validate(
            ty,
            &Value::String(params.get(name).cloned().unwrap_or_default()),
            "path",
        ) {
            e.pointer = format!("/{name}");
            invalid.push(e);
        }
    }

    // Query.
    let pairs: Vec<(String, String)> = query_string
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let query = match &route.query {
        Some(q) => {
            let v = coerce_query(&pairs, app.registry.properties(q));
            invalid.extend(app.registry.validate(q, &v, "query"));
            v
        }
        None => {
            for (k, _) in &pairs {
                invalid.push(crate::schema::InvalidParam {
                    pointer: format!("/{k}"),
                    location: "query".into(),
                    message: format!("unknown query parameter '{k}'"),
                });
            }
            Value::Object(Default::default())
        }
    };
    if !invalid.is_empty() {
        return Err(ApiError::invalid(
            "the request has invalid parameters",
            invalid,
        ));
    }

    let if_match = parse_if_match(headers.get(hyper::header::IF_MATCH))?;

    // Body.
    let body = match &route.request {
        Some(ty) => {
            if let Some(ct) = headers
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
            {
                let base = ct
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase();
                if base != "application/json" && !base.ends_with("+json") {
                    return Err(ApiError::new(
                        415,
                        "unsupported-media-type",
                        "Unsupported media type",
                        format!("send JSON with Content-Type: application/json, not {ct}"),
                    ));
                }
            }
            let v: Value = if raw.is_empty() {
                Value::Object(Default::default())
            } else {
                serde_json::from_slice(&raw).map_err(|e| {
                    ApiError::field(
                        "body",
                        "",
                        format!(
                            "malformed JSON at line {} column {}: {e}",
                            e.line(),
                            e.column()
                        ),
                    )
                })?
            };
            let errs = if ty.ends_with("Update") {
                validate_update(app, ty, &v)
            } else {
                app.registry.validate(ty, &v, "body")
            };
            if !errs.is_empty() {
                let summary = errs
                    .iter()
                    .map(InvalidParam::summary)
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(ApiError::invalid(summary, errs));
            }
            v
        }
        None if route.request_stream.is_some() => {
            let want = route.request_stream.as_deref().unwrap_or_default();
            if let Some(ct) = headers
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
            {
                let base = ct.split(';').next().unwrap_or_default().trim();
                if !base.eq_ignore_ascii_case(want) {
                    return Err(ApiError::new(
                        415,
                        "unsupported-media-type",
                        "Unsupported media type",
                        format!("send the file as Content-Type: {want}, not {ct}"),
                    ));
                }
            }
            Value::Null
        }
        None => {
            // An empty JSON object is what many clients send for "no body"; accept it.
            let trimmed = raw.trim_ascii();
            if !trimmed.is_empty() && trimmed != b"{}" {
                return Err(ApiError::field(
                    "body",
                    "",
                    format!("{} takes no request body", route.operation_id),
                ));
            }
            Value::Null
        }
    };

    let accept = headers
        .get(hyper::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let idem_key = super::idempotency::key_of(&route, &headers)?;
    let handler = app.handlers[index];
    let route_is_websocket = route.websocket;
    let r = Req {
        route,
        params,
        query,
        body,
        principal,
        privileged,
        if_match,
        request_id: rid.to_string(),
        accept,
        peer,
        stream: stream.take(),
        expect_continue,
        content_length: headers
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()),
        websocket: if route_is_websocket {
            upgrade.zip(websocket_key(&headers))
        } else {
            None
        },
    };

    match idem_key {
        Some(key) => super::idempotency::run_once(app, key, method, &raw, r, handler).await,
        None => handler(Arc::clone(app), r).await,
    }
}

async fn read_body(body: Incoming, timeout: Duration) -> Result<Bytes, ApiError> {
    use hyper::body::Body as _;
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    // Refuse a declared oversized body before reading any of it.
    if body.size_hint().lower() > MAX_BODY as u64 {
        return Err(ApiError::new(
            413,
            "payload-too-large",
            "Payload too large",
            format!("request bodies are limited to {MAX_BODY} bytes"),
        ));
    }
    let limited = Limited::new(body, MAX_BODY);
    match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => Err(ApiError::new(
            408,
            "request-timeout",
            "Request timeout",
            format!(
                "the request body did not arrive within {} seconds",
                timeout.as_secs()
            ),
        )),
        Ok(Err(e)) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(ApiError::new(
                    413,
                    "payload-too-large",
                    "Payload too large",
                    format!("request bodies are limited to {MAX_BODY} bytes"),
                ))
            } else {
                Err(ApiError::field(
                    "body",
                    "",
                    format!("could not read the request body: {e}"),
                ))
            }
        }
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}
