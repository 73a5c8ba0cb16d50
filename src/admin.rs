//! The admin listener (`[admin] listen`): a small plain-HTTP/1.1 server, separate from the
//! gateway's listener, serving `GET /metrics` (Prometheus / OpenMetrics text) and
//! `GET /healthz`, 404 for anything else. It is bounded like the main server (header-read
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

use crate::metrics::{self, Metrics};
use crate::server::CappedListener;

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
        let service = service_fn(move |req: Request<Incoming>| {
            let resp = respond(&metrics, req.method(), req.uri().path());
            async move { Ok::<_, Infallible>(resp) }
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
}
