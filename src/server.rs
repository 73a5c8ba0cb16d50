//! Listeners: plain TCP or TLS (the acceptor comes from [`crate::tls`]), HTTP/1.1 and HTTP/2
//! via hyper-util's auto builder with explicit per-connection limits, a header-read timeout,
//! a per-connection idle watchdog ([`watch_connection`]), a cap on open connections (held by
//! WebSocket tunnels too, see [`crate::tunnel`]), and graceful shutdown that stops accepting
//! and drains in-flight requests. Also the optional plain-HTTP listener
//! (`server.http_redirect_listen`) that sends every request to the https `public_url`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Version};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::config::ServerSettings;
use crate::gateway::{ConnInfo, Gateway};
use crate::proxy::{Body, ConnSlot};
use crate::tunnel::TunnelPermit;

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

/// Requests in flight on one connection and when the count last fell to zero: what
/// [`watch_connection`] reads. A request counts from the service call until its response
/// body is done (or dropped).
struct ConnActivity {
    start: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `start` (plus one) when the last request ended; 0: none yet.
    last_done_ms: AtomicU64,
}

impl ConnActivity {
    fn new() -> Arc<Self> {
        Arc::new(ConnActivity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
        })
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// (requests in flight, when the last one ended: `None` before the first).
    fn snapshot(&self) -> (usize, Option<Duration>) {
        // `in_flight` first: a request's end stamps the time before it decrements.
        let in_flight = self.in_flight.load(Ordering::Acquire);
        let done = self.last_done_ms.load(Ordering::Acquire);
        (
            in_flight,
            (done > 0).then(|| Duration::from_millis(done - 1)),
        )
    }
}

/// One request in flight; dropped with the response body.
struct InFlight(Arc<ConnActivity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.0.last_done_ms.store(ms + 1, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted in flight until it is done.
struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What the watchdog does next: wait this long and look again, or act now.
#[derive(Debug, PartialEq, Eq)]
enum Watch {
    Wait(Duration),
    Act,
}

/// The watchdog's decision (pure). `now` and `idle_since` count from the connection's start;
/// `idle_since` is when the connection last had nothing in flight (its start, the end of its
/// last request, or the graceful shutdown, whichever is latest). A request in flight is
/// never cut: look again in `limit`.
fn idle_watch(in_flight: usize, idle_since: Duration, now: Duration, limit: Duration) -> Watch {
    if in_flight > 0 {
        return Watch::Wait(limit);
    }
    match limit.checked_sub(now.saturating_sub(idle_since)) {
        Some(left) if !left.is_zero() => Watch::Wait(left),
        _ => Watch::Act,
    }
}

/// How long a connection may stay without a request in flight.
#[derive(Debug, Clone, Copy)]
struct IdleLimits {
    /// Before its first request (`server.header_read_timeout_secs`): also bounds the bytes
    /// hyper-util reads, with no timer of its own, to tell HTTP/1 from HTTP/2.
    first_request: Duration,
    /// Between requests (`server.idle_timeout_secs`); HTTP/2 has no idle timeout of its own.
    between_requests: Duration,
    /// After a graceful shutdown, for the connection to finish closing before it is dropped.
    closing: Duration,
}

/// Drives one connection until it ends: asks it to shut down gracefully once it has had
/// nothing in flight for its idle limit, or when `shutdown` changes, and drops it if it is
/// still open after a further `limits.closing` with nothing in flight. For an auto
/// connection still reading the protocol preface, the graceful shutdown cancels the read;
/// HTTP/1 closes after the current exchange; HTTP/2 sends GOAWAY and lets streams finish.
async fn watch_connection<C, E>(
    conn: C,
    graceful_shutdown: impl Fn(Pin<&mut C>),
    activity: &ConnActivity,
    limits: IdleLimits,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    tokio::pin!(conn);
    let mut closing_since: Option<Duration> = None;
    // The first request's time counts from here: after the TLS handshake, if any.
    let began = activity.start.elapsed();
    let mut deadline = Instant::now() + limits.first_request;
    loop {
        tokio::select! {
            result = &mut conn => return result,
            _ = tokio::time::sleep_until(deadline) => {
                let (in_flight, last_done) = activity.snapshot();
                let now = activity.start.elapsed();
                let idle_since = last_done.unwrap_or(began).max(closing_since.unwrap_or_default());
                let limit = match (closing_since, last_done) {
                    (Some(_), _) => limits.closing,
                    (None, None) => limits.first_request,
                    (None, Some(_)) => limits.between_requests,
                };
                match idle_watch(in_flight, idle_since, now, limit) {
                    Watch::Wait(wait) => deadline = Instant::now() + wait,
                    Watch::Act if closing_since.is_some() => return Ok(()),
                    Watch::Act => {
                        graceful_shutdown(conn.as_mut());
                        closing_since = Some(now);
                        deadline = Instant::now() + limits.closing;
                    }
                }
            }
            changed = shutdown.changed(), if closing_since.is_none() => {
                // Changed, or the sender is gone: the server is shutting down either way.
                let _ = changed;
                graceful_shutdown(conn.as_mut());
                closing_since = Some(activity.start.elapsed());
                deadline = Instant::now() + limits.closing;
            }
        }
    }
}

/// Why hyper itself refused what a client sent (it answered 400, 414 or 431 and closed the
/// connection before the request reached the gateway), for the audit log. `None` for ends
/// that are no sign of bad input: resets, closed or idle connections, timeouts, shutdown.
fn refused_input(e: &(dyn std::error::Error + Send + Sync + 'static)) -> Option<&'static str> {
    let e = e.downcast_ref::<hyper::Error>()?;
    if e.is_parse_too_large() {
        Some("request head too large")
    } else if e.is_parse() {
        Some("malformed HTTP request")
    } else {
        None
    }
}

/// The auto builder with every per-connection limit set explicitly rather than left to
/// hyper's defaults, which may change between versions.
fn connection_builder(settings: &ServerSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .keep_alive(true)
        // Request line plus headers beyond 64 KiB get 431: no legitimate request to this
        // gateway needs more (cookies and SAML bindings are far smaller; SAML POSTs are
        // bodies), and it bounds the buffer each connection may make us hold.
        .max_buf_size(64 * 1024)
        // 100 header lines (hyper's default, now pinned): more get 431. Still within
        // hyper's stack array, so no heap allocation per request.
        .max_headers(100);
    builder
        .http2()
        .timer(TokioTimer::new())
        // A ping every 30 s finds dead peers...
        .keep_alive_interval(Some(Duration::from_secs(30)))
        // ...that do not answer within 20 s.
        .keep_alive_timeout(Duration::from_secs(20))
        // Streams per connection, as nginx's `http2_max_concurrent_streams` default: bounds
        // the upstream requests one connection can hold open at once.
        .max_concurrent_streams(100)
        // Decoded header list per request: 16 KiB is ample for cookies and identity-free
        // browser requests, and HPACK makes a larger list cheap to send but dear to hold.
        .max_header_list_size(16 * 1024)
        // Response bytes buffered per stream before backpressure on the upstream body.
        .max_send_buf_size(128 * 1024)
        // Rapid reset (CVE-2023-44487): streams the client opens and cancels before we
        // accept them; more than 20 pending ends the connection.
        .max_pending_accept_reset_streams(Some(20))
        // Streams we had to reset for the client's protocol errors: a client provoking more
        // than 1024 (the "MadeYouReset" pattern) loses the connection.
        .max_local_error_reset_streams(Some(1024));
    builder
}

/// Serves until `shutdown` resolves, then drains for at most `shutdown_grace`.
pub async fn serve(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()>,
) {
    let builder = Arc::new(connection_builder(&settings));
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
        let gateway = gateway.clone();
        let logs = gateway.logs();
        let builder = builder.clone();
        let tls = tls.clone();
        let mut shutdown_rx = shutdown_tx.subscribe();
        let handshake_timeout = settings.header_read_timeout;
        tokio::spawn(async move {
            // Shared with a WebSocket tunnel this connection may become (see `TunnelPermit`).
            let permit = Arc::new(permit);
            let info = ConnInfo::new(peer, tls.is_some());
            // HTTP/1 requests on this connection share one upstream connection (see ConnSlot).
            let upstream_slot = ConnSlot::new();
            let tunnel_permit = permit.clone();
            let activity = ConnActivity::new();
            let counted = activity.clone();
            let service = service_fn(move |mut req: Request<Incoming>| {
                let gateway = gateway.clone();
                let in_flight = counted.begin();
                // A parameter, not a request extension: no extension map per request.
                let slot = (req.version() != Version::HTTP_2).then(|| upstream_slot.clone());
                // Only a request that may upgrade carries the slot (no work for the rest).
                if req.headers().contains_key(http::header::UPGRADE) {
                    req.extensions_mut()
                        .insert(TunnelPermit(tunnel_permit.clone()));
                }
                async move {
                    let response = gateway.handle(req, info, slot).await;
                    Ok::<_, Infallible>(response.map(|inner| TrackedBody {
                        inner,
                        _in_flight: in_flight,
                    }))
                }
            });
            let result = match tls {
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(handshake_timeout, acceptor.accept(stream));
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
                        _ = shutdown_rx.changed() => return,
                    };
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(tls_stream), service);
                    watch_connection(
                        conn,
                        |c| c.graceful_shutdown(),
                        &activity,
                        limits,
                        shutdown_rx,
                    )
                    .await
                }
                None => {
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watch_connection(
                        conn,
                        |c| c.graceful_shutdown(),
                        &activity,
                        limits,
                        shutdown_rx,
                    )
                    .await
                }
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
    fn watchdog_waits_out_the_limit_and_never_cuts_a_request_in_flight() {
        let s = Duration::from_secs;
        let limit = s(10);
        // Idle since 0, now 4: six seconds left.
        assert_eq!(idle_watch(0, s(0), s(4), limit), Watch::Wait(s(6)));
        // Idle since the last request ended at 7: counted from there.
        assert_eq!(idle_watch(0, s(7), s(12), limit), Watch::Wait(s(5)));
        assert_eq!(idle_watch(0, s(7), s(17), limit), Watch::Act);
        assert_eq!(idle_watch(0, s(0), s(100), limit), Watch::Act);
        // A request in flight: look again later, however long it has been.
        assert_eq!(idle_watch(1, s(0), s(100), limit), Watch::Wait(limit));
        assert_eq!(idle_watch(3, s(0), s(10), limit), Watch::Wait(limit));
    }

    #[tokio::test]
    async fn requests_count_in_flight_until_their_response_body_is_dropped() {
        let activity = ConnActivity::new();
        assert_eq!(activity.snapshot(), (0, None));
        let first = activity.begin();
        let second = activity.begin();
        assert_eq!(activity.snapshot().0, 2);
        drop(first);
        assert_eq!(activity.snapshot().0, 1);
        let body = TrackedBody {
            inner: crate::proxy::full("x"),
            _in_flight: second,
        };
        assert_eq!(activity.snapshot().0, 1);
        drop(body);
        let (in_flight, last_done) = activity.snapshot();
        assert_eq!(in_flight, 0);
        assert!(last_done.is_some(), "the end of the last request is noted");
    }

    /// The error a real hyper HTTP/1 server connection ends with after reading `input`.
    async fn served_error(input: &[u8]) -> Option<Box<dyn std::error::Error + Send + Sync>> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(256 * 1024);
        let builder = connection_builder(&ServerSettings {
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(5),
            max_connections: 1,
            shutdown_grace: Duration::from_secs(1),
            http_redirect_listen: None,
        });
        let conn = builder.serve_connection(
            TokioIo::new(server),
            service_fn(|_req: Request<Incoming>| async {
                Ok::<_, Infallible>(http::Response::new(crate::proxy::full("ok")))
            }),
        );
        client.write_all(input).await.unwrap();
        client.shutdown().await.unwrap();
        let result = conn.await;
        let mut answer = Vec::new();
        let _ = client.read_to_end(&mut answer).await;
        result.err()
    }

    #[tokio::test]
    async fn requests_hyper_refuses_are_told_apart_from_ordinary_ends() {
        let e = served_error(b"GET / HTTP/1.1\r\nHost: a\r\nbad header line\r\n\r\n")
            .await
            .expect("a malformed header ends the connection with an error");
        assert_eq!(refused_input(&*e), Some("malformed HTTP request"));

        let huge = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
            "a".repeat(70_000)
        );
        let e = served_error(huge.as_bytes())
            .await
            .expect("a head over 64 KiB ends the connection with an error");
        assert_eq!(refused_input(&*e), Some("request head too large"));

        // A request cut off mid-head is the client going away, not bad input.
        if let Some(e) = served_error(b"GET / HTTP/1.1\r\nHo").await {
            assert_eq!(refused_input(&*e), None, "{e}");
        }
        // A complete request followed by the client closing: not bad input either.
        if let Some(e) = served_error(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await {
            assert_eq!(refused_input(&*e), None, "{e}");
        }
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
