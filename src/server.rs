//! Listeners: plain TCP or TLS (the acceptor comes from [`crate::tls`]), a cap on open
//! connections (held by WebSocket tunnels too, see [`crate::tunnel`]), and graceful shutdown
//! that stops accepting and drains in-flight requests; each accepted connection is served by
//! [`crate::connection`] (HTTP/1.1 and HTTP/2, limits, idle watchdog, parking). Also the
//! optional plain-HTTP listener (`server.http_redirect_listen`) that sends every request to
//! the https `public_url`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::config::ServerSettings;
use crate::connection::{self, refused_input, Client, ConnActivity, IdleLimits, Protocols};
use crate::gateway::{ConnInfo, Gateway};

/// At most one "connection limit reached" warning per listener in this interval; the next
/// one counts the refusals left out meanwhile.
const REFUSAL_WARN_INTERVAL: Duration = Duration::from_secs(1);

/// A listener with a cap on open connections: every listener here (main, redirect, admin)
/// accepts through one of these.
pub struct CappedListener {
    listener: TcpListener,
    connections: Arc<Semaphore>,
    limit: usize,
    /// Names the listener in log lines.
    name: &'static str,
    refusals: Mutex<RefusalLog>,
}

/// Throttles the warning for refused connections: a flood of them must not flood the log.
#[derive(Debug, Default)]
struct RefusalLog {
    last_warned: Option<Instant>,
    suppressed: u64,
}

impl RefusalLog {
    /// Notes one refusal at `now`. `Some(n)` when a warning is due, `n` being the refusals
    /// not warned about since the last warning; `None` while the interval is not over.
    fn refused(&mut self, now: Instant) -> Option<u64> {
        match self.last_warned {
            Some(t) if now.saturating_duration_since(t) < REFUSAL_WARN_INTERVAL => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last_warned = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

impl CappedListener {
    pub fn new(listener: TcpListener, limit: usize, name: &'static str) -> Self {
        CappedListener {
            listener,
            connections: Arc::new(Semaphore::new(limit)),
            limit,
            name,
            refusals: Mutex::new(RefusalLog::default()),
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
                    drop(stream);
                    let due = self
                        .refusals
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .refused(Instant::now());
                    if let Some(suppressed) = due {
                        tracing::warn!(listener = self.name, %peer, limit = self.limit, suppressed, "connection limit reached; closing new connections");
                    }
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
    let protocols = Arc::new(Protocols::new(&settings));
    let listener = CappedListener::new(listener, settings.max_connections, "main");
    // Each connection task holds a receiver: the drain is over when every one is dropped.
    // (WebSocket tunnels hold none: they end with the process, as before.)
    let (shutdown_tx, _) = watch::channel(false);
    let limits = IdleLimits {
        first_request: settings.header_read_timeout,
        between_requests: settings.idle_timeout,
        closing: settings.header_read_timeout,
    };
    tokio::pin!(shutdown);

    loop {
        let (stream, peer, permit) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let logs = gateway.logs();
        let protocols = protocols.clone();
        let tls = tls.clone();
        let mut client = Client {
            gateway: gateway.clone(),
            info: ConnInfo::new(peer, tls.is_some()),
            permit: Arc::new(permit),
            limits,
            shutdown: shutdown_tx.subscribe(),
        };
        let handshake_timeout = settings.header_read_timeout;
        tokio::spawn(async move {
            let activity = ConnActivity::new();
            let result = match tls {
                Some(acceptor) => {
                    // Boxed, as is the TLS connection below: rustls' state is large, and
                    // inline it would make every connection's task that large, plain or not.
                    let handshake = Box::pin(tokio::time::timeout(
                        handshake_timeout,
                        acceptor.accept(stream),
                    ));
                    let tls_stream = tokio::select! {
                        r = handshake => match r {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        },
                        _ = client.shutdown.changed() => return,
                    };
                    Box::pin(connection::serve(tls_stream, &protocols, client, activity)).await
                }
                None => connection::serve(stream, &protocols, client, activity).await,
            };
            if let Err(e) = result {
                match refused_input(&*e) {
                    Some(reason) => {
                        if logs.audit(peer.ip(), "bad_request", reason) {
                            tracing::warn!(target: "samlgate::audit", event = "bad_request", reason, detail = %e, peer = %peer.ip())
                        }
                    }
                    None => tracing::debug!(%peer, error = %e, "connection ended with an error"),
                }
            }
        });
    }

    gateway.set_draining();
    drop(listener);
    tracing::info!("shutting down: no new connections; draining in-flight requests");
    shutdown_tx.send_replace(true);
    tokio::select! {
        _ = shutdown_tx.closed() => tracing::info!("all connections drained"),
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
    fn refused_connections_warn_at_most_once_a_second_with_a_count() {
        let mut log = RefusalLog::default();
        let t0 = Instant::now();
        assert_eq!(log.refused(t0), Some(0));
        for ms in [1, 10, 500, 999] {
            assert_eq!(log.refused(t0 + Duration::from_millis(ms)), None);
        }
        assert_eq!(log.refused(t0 + Duration::from_millis(1000)), Some(4));
        assert_eq!(log.refused(t0 + Duration::from_millis(1500)), None);
        assert_eq!(log.refused(t0 + Duration::from_secs(5)), Some(1));
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
