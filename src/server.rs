//! Listeners: plain TCP or TLS (the acceptor comes from [`crate::tls`]), HTTP/1.1 and HTTP/2
//! via hyper-util's auto builder, a header-read timeout, a cap on open connections, and
//! graceful shutdown that stops accepting and drains in-flight requests. Also the optional
//! plain-HTTP listener (`server.http_redirect_listen`) that sends every request to the https
//! `public_url`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::config::ServerSettings;
use crate::gateway::{ConnInfo, Gateway};
use crate::proxy::ConnSlot;

/// A listener with a cap on open connections: every listener here (main, redirect, admin)
/// accepts through one of these.
pub struct CappedListener {
    listener: TcpListener,
    connections: Arc<Semaphore>,
    limit: usize,
    /// Names the listener in log lines.
    name: &'static str,
}

impl CappedListener {
    pub fn new(listener: TcpListener, limit: usize, name: &'static str) -> Self {
        CappedListener {
            listener,
            connections: Arc::new(Semaphore::new(limit)),
            limit,
            name,
        }
    }

    /// The next connection with its slot under the cap (held until the permit is dropped).
    /// Accept errors (EMFILE and friends) back off briefly instead of spinning; a connection
    /// over the cap is closed at once.
    pub async fn accept(&self) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(listener = self.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match self.connections.clone().try_acquire_owned() {
                Ok(permit) => return (stream, peer, permit),
                Err(_) => {
                    tracing::warn!(listener = self.name, %peer, limit = self.limit, "connection limit reached; closing new connection");
                    drop(stream);
                }
            }
        }
    }
}

/// Serves until `shutdown` resolves, then drains for at most `shutdown_grace`.
pub async fn serve(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .max_concurrent_streams(250);
    let builder = Arc::new(builder);
    let listener = CappedListener::new(listener, settings.max_connections, "main");
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);

    loop {
        let (stream, peer, permit) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let gateway = gateway.clone();
        let builder = builder.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        let handshake_timeout = settings.header_read_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let info = ConnInfo::new(peer, tls.is_some());
            // HTTP/1 requests on this connection share one upstream connection (see ConnSlot).
            let upstream_slot = ConnSlot::new();
            let service = service_fn(move |req: Request<Incoming>| {
                let gateway = gateway.clone();
                // A parameter, not a request extension: no extension map per request.
                let slot = (req.version() != Version::HTTP_2).then(|| upstream_slot.clone());
                async move { Ok::<_, Infallible>(gateway.handle(req, info, slot).await) }
            });
            let result =
                match tls {
                    Some(acceptor) => {
                        let tls_stream =
                            match tokio::time::timeout(handshake_timeout, acceptor.accept(stream))
                                .await
                            {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!(%peer, "TLS handshake timed out");
                                    return;
                                }
                            };
                        let conn = builder
                            .serve_connection_with_upgrades(TokioIo::new(tls_stream), service);
                        watcher.watch(conn.into_owned()).await
                    }
                    None => {
                        let conn =
                            builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        watcher.watch(conn.into_owned()).await
                    }
                };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }

    gateway.set_draining();
    drop(listener);
    tracing::info!("shutting down: no new connections; draining in-flight requests");
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(settings.shutdown_grace) => tracing::warn!(grace = ?settings.shutdown_grace, "grace period over; closing remaining connections"),
    }
}

/// Where the plain-HTTP listener sends a request: `origin` (the configured `public_url`'s
/// scheme, host and port) followed by the request's path and query. The request's `Host`
/// header and any authority in its target are ignored, so no request can choose the site it
/// is sent to.
pub fn https_redirect_location(origin: &str, uri: &http::Uri) -> String {
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with('/'))
        .unwrap_or("/");
    format!("{origin}{path_and_query}")
}

/// The plain-HTTP listener of `server.http_redirect_listen`: `/healthz` answers 200, every
/// other request 308 to [`https_redirect_location`]. HTTP/1.1 only, one request per
/// connection, the header-read timeout and connection cap of the main listener, and each
/// connection closed after twice the header-read timeout at most. Stops accepting when
/// `shutdown` resolves; open connections end on their own within that bound.
pub async fn serve_http_redirect(
    listener: TcpListener,
    origin: String,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()>,
) {
    let origin: Arc<str> = origin.into();
    let listener = CappedListener::new(listener, settings.max_connections, "http redirect");
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .keep_alive(false);
    let connection_deadline = settings.header_read_timeout.saturating_mul(2);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer, permit) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => break,
        };
        let origin = origin.clone();
        let conn = builder.serve_connection(
            TokioIo::new(stream),
            service_fn(move |req: Request<Incoming>| {
                let response = redirect_response(&origin, req.uri());
                async move { Ok::<_, Infallible>(response) }
            }),
        );
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(connection_deadline, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "redirect connection ended with an error")
                }
                Err(_) => tracing::debug!(%peer, "redirect connection timed out"),
            }
        });
    }
    drop(listener);
    tracing::info!("http redirect listener stopped");
}

fn redirect_response(
    origin: &str,
    uri: &http::Uri,
) -> http::Response<http_body_util::Full<bytes::Bytes>> {
    let small = |status: http::StatusCode, body: &'static str| {
        let mut r = http::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(
            body.as_bytes(),
        )));
        *r.status_mut() = status;
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    };
    if uri.path() == "/healthz" {
        return small(http::StatusCode::OK, "ok\n");
    }
    let location = https_redirect_location(origin, uri);
    // The path and query passed hyper's URI parser, so this only fails on a bad origin,
    // which validation rules out; the site's root is still the right place then.
    let location = http::HeaderValue::from_str(&location)
        .or_else(|_| http::HeaderValue::from_str(&format!("{origin}/")))
        .unwrap_or_else(|_| http::HeaderValue::from_static("/"));
    let mut r = small(
        http::StatusCode::PERMANENT_REDIRECT,
        "This site is served over HTTPS.\n",
    );
    r.headers_mut().insert(http::header::LOCATION, location);
    r
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(target: &str) -> String {
        https_redirect_location("https://app.example.com:8443", &target.parse().unwrap())
    }

    #[test]
    fn redirect_keeps_path_and_query_and_ignores_any_authority() {
        assert_eq!(location("/"), "https://app.example.com:8443/");
        assert_eq!(
            location("/a/b?x=1&y=%2F"),
            "https://app.example.com:8443/a/b?x=1&y=%2F"
        );
        // Absolute-form request targets name a host; it is not used.
        assert_eq!(
            location("http://evil.example/steal?q=1"),
            "https://app.example.com:8443/steal?q=1"
        );
        assert_eq!(
            location("http://evil.example"),
            "https://app.example.com:8443/"
        );
        // `//evil.example` stays a path on our host.
        assert_eq!(
            location("//evil.example/x"),
            "https://app.example.com:8443//evil.example/x"
        );
        assert_eq!(location("*"), "https://app.example.com:8443/");
    }

    #[test]
    fn redirect_listener_answers_healthz_and_308() {
        let origin = "https://app.example.com";
        let ok = redirect_response(origin, &"/healthz".parse().unwrap());
        assert_eq!(ok.status(), 200);
        let r = redirect_response(origin, &"/healthz?x".parse().unwrap());
        assert_eq!(r.status(), 200);
        let r = redirect_response(origin, &"/healthz/x".parse().unwrap());
        assert_eq!(r.status(), 308);
        assert_eq!(r.headers()["location"], "https://app.example.com/healthz/x");
    }
}
