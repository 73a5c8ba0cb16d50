//! The admin listener (`[admin] listen`): a small plain-HTTP/1.1 server, separate from the
//! gateway's listener, serving `GET /metrics` (Prometheus / OpenMetrics text) and
//! `GET /healthz`, and, when `[admin_api] token_files` is set, the admin API
//! ([`AdminApi`]: `GET` / `DELETE /admin/users/{user}/sessions`, bearer token), 404 for
//! anything else. It is bounded like the main server (header-read
//! timeout, connection cap) and stops with it. Nothing here is reachable through the gateway's
//! own port, so the endpoints neither shadow upstream paths nor need authentication there.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::deprovision::{Deprovisioner, EndReason};
use crate::metrics::{self, Metrics};
use crate::server::CappedListener;

/// The admin API: a user's sessions listed or ended (the path SCIM deprovisioning takes).
pub struct AdminApi {
    token_digests: Vec<[u8; 32]>,
    deprovision: Arc<Deprovisioner>,
}

/// What an admin API request asks (pure routing).
#[derive(Debug, PartialEq, Eq)]
pub enum ApiRoute {
    ListSessions(String),
    EndSessions(String),
    /// Right path, other method.
    MethodNotAllowed,
    NotFound,
}

/// Routes `/admin/users/{user}/sessions` (the user percent-decoded, non-empty, no controls).
pub fn api_route(method: &Method, path: &str) -> ApiRoute {
    let Some(user) = path
        .strip_prefix("/admin/users/")
        .and_then(|r| r.strip_suffix("/sessions"))
    else {
        return ApiRoute::NotFound;
    };
    let decoded = percent_encoding::percent_decode_str(user).decode_utf8();
    let Ok(user) = decoded else {
        return ApiRoute::NotFound;
    };
    if user.is_empty() || user.contains('/') || user.chars().any(char::is_control) {
        return ApiRoute::NotFound;
    }
    match *method {
        Method::GET => ApiRoute::ListSessions(user.into_owned()),
        Method::DELETE => ApiRoute::EndSessions(user.into_owned()),
        _ => ApiRoute::MethodNotAllowed,
    }
}

impl AdminApi {
    pub fn new(tokens: &[String], deprovision: Arc<Deprovisioner>) -> AdminApi {
        AdminApi {
            token_digests: tokens
                .iter()
                .map(|t| {
                    let d = ring::digest::digest(&ring::digest::SHA256, t.as_bytes());
                    let mut out = [0u8; 32];
                    out.copy_from_slice(d.as_ref());
                    out
                })
                .collect(),
            deprovision,
        }
    }

    /// Answers one request under `/admin/`.
    pub async fn respond(
        &self,
        method: &Method,
        path: &str,
        headers: &http::HeaderMap,
    ) -> Response<Full<Bytes>> {
        let route = api_route(method, path);
        if route == ApiRoute::NotFound {
            return json(
                StatusCode::NOT_FOUND,
                serde_json::json!({"error": "not_found"}),
            );
        }
        let token = headers.get(header::AUTHORIZATION).and_then(|v| {
            v.as_bytes()
                .get(..7)
                .filter(|s| s.eq_ignore_ascii_case(b"bearer "))
                .map(|_| &v.as_bytes()[7..])
        });
        let authorized =
            token.is_some_and(|t| crate::scim::token_matches(&self.token_digests, t.trim_ascii()));
        if !authorized {
            tracing::warn!(target: "samlgate::audit", event = "admin_api_refused", reason = "missing or wrong bearer token", path = %crate::saml::error::clip(path));
            let mut r = json(
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"error": "unauthorized"}),
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
        match route {
            ApiRoute::ListSessions(user) => {
                let list: Vec<serde_json::Value> = self
                    .deprovision
                    .sessions_of(&user)
                    .await
                    .into_iter()
                    .map(|(key, s)| {
                        let secs = |t: std::time::SystemTime| {
                            t.duration_since(std::time::UNIX_EPOCH)
                                .map(|d| d.as_secs())
                                .unwrap_or(0)
                        };
                        serde_json::json!({
                            "session": key.log_tag(),
                            "user": s.identity.user,
                            "created_at": secs(s.created_at),
                            "expires_at": secs(s.expires_at),
                            "groups": s.identity.groups,
                        })
                    })
                    .collect();
                json(
                    StatusCode::OK,
                    serde_json::json!({"user": user, "sessions": list}),
                )
            }
            ApiRoute::EndSessions(user) => {
                let ended = self.deprovision.end_user(&user, EndReason::Admin).await;
                json(
                    StatusCode::OK,
                    serde_json::json!({"user": user, "ended": ended}),
                )
            }
            ApiRoute::MethodNotAllowed | ApiRoute::NotFound => {
                let mut r = json(
                    StatusCode::METHOD_NOT_ALLOWED,
                    serde_json::json!({"error": "method_not_allowed"}),
                );
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, DELETE"));
                r
            }
        }
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Open admin connections at once; more are closed on accept (scrapers need one each).
pub const MAX_CONNECTIONS: usize = 32;
/// How long in-flight scrapes may finish after shutdown is signalled.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The answer to one admin request (pure: no sockets).
pub fn respond(metrics: &Metrics, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let known = matches!(path, "/metrics" | "/healthz");
    if !known {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if method != Method::GET && method != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    if path == "/healthz" {
        return text(StatusCode::OK, "ok\n");
    }
    match metrics.render() {
        Ok(body) => {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(_) => {
            tracing::error!("metrics could not be rendered");
            text(StatusCode::INTERNAL_SERVER_ERROR, "metrics unavailable\n")
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Serves the admin endpoints on `listener` until `shutdown` resolves, then lets in-flight
/// requests finish for a few seconds.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    api: Option<Arc<AdminApi>>,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let local_addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    let listener = CappedListener::new(listener, MAX_CONNECTIONS, "admin");
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    tracing::info!(
        listen = %local_addr,
        "admin listener serving /metrics and /healthz"
    );

    loop {
        let (stream, peer, permit) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => break,
        };
        let metrics = metrics.clone();
        let api = api.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let metrics = metrics.clone();
            let api = api.clone();
            async move {
                let path = req.uri().path();
                let resp = match &api {
                    Some(api) if path.starts_with("/admin/") => {
                        api.respond(req.method(), path, req.headers()).await
                    }
                    _ => respond(&metrics, req.method(), path),
                };
                Ok::<_, Infallible>(resp)
            }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let watched = graceful.watch(conn);
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = watched.await {
                tracing::debug!(%peer, error = %e, "admin connection ended with an error");
            }
        });
    }

    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {},
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => tracing::debug!("admin connections closed after the grace period"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(r: Response<Full<Bytes>>) -> String {
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn metrics_healthz_and_nothing_else() {
        let m = Metrics::new();
        m.sign_out();
        let r = respond(&m, &Method::GET, "/metrics");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], metrics::CONTENT_TYPE);
        let text = body(r).await;
        assert!(
            text.lines().any(|l| l == "samlgate_sign_outs_total 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));

        let r = respond(&m, &Method::GET, "/healthz");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body(r).await, "ok\n");
        assert_eq!(
            respond(&m, &Method::HEAD, "/metrics").status(),
            StatusCode::OK
        );

        for path in ["/", "/metrics/", "/Metrics", "/metrics.txt", "/readyz", ""] {
            assert_eq!(
                respond(&m, &Method::GET, path).status(),
                StatusCode::NOT_FOUND,
                "{path:?}"
            );
        }
        let r = respond(&m, &Method::POST, "/metrics");
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "GET, HEAD");
    }

    #[test]
    fn admin_api_routes() {
        let table = [
            (
                Method::GET,
                "/admin/users/alice/sessions",
                ApiRoute::ListSessions("alice".into()),
            ),
            (
                Method::DELETE,
                "/admin/users/alice%40example.com/sessions",
                ApiRoute::EndSessions("alice@example.com".into()),
            ),
            (
                Method::POST,
                "/admin/users/alice/sessions",
                ApiRoute::MethodNotAllowed,
            ),
            (Method::GET, "/admin/users//sessions", ApiRoute::NotFound),
            (
                Method::GET,
                "/admin/users/a%2Fb/sessions",
                ApiRoute::NotFound,
            ),
            (
                Method::GET,
                "/admin/users/a%0Ab/sessions",
                ApiRoute::NotFound,
            ),
            (Method::GET, "/admin/users/alice", ApiRoute::NotFound),
            (
                Method::GET,
                "/admin/users/alice/sessions/x",
                ApiRoute::NotFound,
            ),
        ];
        for (m, p, want) in table {
            assert_eq!(api_route(&m, p), want, "{m} {p}");
        }
    }
}
