//! One client connection of the main listener, from the first byte to the close: which
//! protocol it speaks (HTTP/2's preface or an HTTP/1 request, as hyper-util's auto builder
//! tells them apart), hyper's HTTP/1 or HTTP/2 server with explicit per-connection limits,
//! the idle watchdog ([`watch_connection`]: header-read, idle and closing limits, graceful
//! shutdown), and parking: an HTTP/1 connection with nothing to do for [`PARK_AFTER`] gives
//! back hyper's buffers (8 KiB each way) and its upstream connection, and waits for the
//! client's next byte with no buffer at all. Idle keep-alive clients then cost a socket and
//! a small task, as in nginx, not two HTTP connections' worth of buffers.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, Version};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::ServerSettings;
use crate::gateway::{ConnInfo, Gateway};
use crate::proxy::{Body, ConnSlot};
use crate::tunnel::TunnelPermit;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long an HTTP/1 connection waits with nothing in flight before it is parked. Long
/// enough that clients sending request after request (and a front proxy's pooled
/// connections under load) never park; short enough that idle clients give their buffers
/// and upstream connections back soon.
pub const PARK_AFTER: Duration = Duration::from_secs(2);

/// Parks between two trims of the heap ([`note_park`]). 256 rather than 1024 took 10,000
/// parked connections from 107 to 67–80 MiB RSS (benches/idle_connections.rs); a trim is a
/// few milliseconds on the blocking pool, and only idle connections park.
const PARKS_PER_TRIM: usize = 256;

/// Parks since the heap was last trimmed, and whether a trim is under way.
static PARKS_SINCE_TRIM: AtomicUsize = AtomicUsize::new(0);
static TRIMMING: AtomicBool = AtomicBool::new(false);

/// What an HTTP/2 client sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Requests in flight on one connection and when the count last fell to zero: what
/// [`watch_connection`] reads. A request counts from the service call until its response
/// body is done (or dropped). Also the parking flags [`ConnIo`] reads.
pub(crate) struct ConnActivity {
    start: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `start` (plus one) when the last request ended; 0: none yet.
    last_done_ms: AtomicU64,
    /// A park was asked for: hyper's closing `shutdown` must leave the socket open.
    parking: AtomicBool,
    /// Bytes went either way since the park was asked for: hyper was not idle after all
    /// (it finished an exchange first), so the connection closes rather than parks.
    moved_while_parking: AtomicBool,
}

impl ConnActivity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(ConnActivity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
            parking: AtomicBool::new(false),
            moved_while_parking: AtomicBool::new(false),
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

    fn set_parking(&self, parking: bool) {
        self.moved_while_parking.store(false, Ordering::Release);
        self.parking.store(parking, Ordering::Release);
    }

    /// Notes `n` bytes read or written by hyper.
    fn moved(&self, n: usize) {
        if n > 0 && self.parking.load(Ordering::Relaxed) {
            self.moved_while_parking.store(true, Ordering::Release);
        }
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

/// The client's socket (or TLS stream) as hyper sees it: first the bytes read ahead
/// (the protocol sniff, or what hyper had read but not parsed when the connection parked),
/// then the socket. While a park is under way its `shutdown` does nothing, so hyper can end
/// its connection without closing the client's.
struct ConnIo<S> {
    ahead: Bytes,
    io: S,
    activity: Arc<ConnActivity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for ConnIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.ahead.is_empty() {
            let n = self.ahead.len().min(buf.remaining());
            buf.put_slice(&self.ahead.split_to(n));
            self.activity.moved(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        self.activity.moved(buf.filled().len() - before);
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ConnIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.activity.moved(n);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            self.activity.moved(n);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.activity.parking.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// What the first bytes of a connection say (pure): `Some(true)` for HTTP/2's preface,
/// `Some(false)` for anything else (an HTTP/1 request), `None` while they are a strict
/// prefix of the preface. An empty read (the client closed) is HTTP/1, whose server then
/// ends quietly.
fn is_h2_preface(read: &[u8], closed: bool) -> Option<bool> {
    let n = read.len().min(H2_PREFACE.len());
    if read[..n] != H2_PREFACE[..n] {
        Some(false)
    } else if n == H2_PREFACE.len() {
        Some(true)
    } else if closed {
        Some(false)
    } else {
        None
    }
}

/// Reads until [`is_h2_preface`] can tell (24 bytes at most); returns its verdict and the
/// bytes read, for the server to read again.
async fn sniff_protocol<S: AsyncRead + Unpin>(io: &mut S) -> io::Result<(bool, Bytes)> {
    let mut buf = [0u8; 24];
    let mut filled = 0;
    loop {
        let n = io.read(&mut buf[filled..]).await?;
        filled += n;
        if let Some(h2) = is_h2_preface(&buf[..filled], n == 0) {
            return Ok((h2, Bytes::copy_from_slice(&buf[..filled])));
        }
    }
}

/// What the watchdog does next: wait this long and look again, close, or park.
#[derive(Debug, PartialEq, Eq)]
enum Watch {
    Wait(Duration),
    Act,
    Park,
}

/// The watchdog's decision (pure). `now` and `idle_since` count from the connection's start;
/// `idle_since` is when the connection last had nothing in flight (its start, the end of its
/// last request, or the graceful shutdown, whichever is latest). Past `limit` with nothing
/// in flight the connection closes; a request in flight is never cut. `park` (HTTP/1): the
/// park delay and whether the connection may park now; it parks once idle that long, and
/// is looked at again at least that often (a request may come and go meanwhile).
fn idle_watch(
    in_flight: usize,
    idle_since: Duration,
    now: Duration,
    limit: Duration,
    park: Option<(Duration, bool)>,
) -> Watch {
    let recheck = |wait: Duration| park.map_or(wait, |(after, _)| wait.min(after));
    if in_flight > 0 {
        return Watch::Wait(recheck(limit));
    }
    let idle = now.saturating_sub(idle_since);
    let Some(left) = limit.checked_sub(idle).filter(|l| !l.is_zero()) else {
        return Watch::Act;
    };
    match park {
        Some((after, true)) => match after.checked_sub(idle).filter(|l| !l.is_zero()) {
            None => Watch::Park,
            Some(to_park) => Watch::Wait(left.min(to_park)),
        },
        _ => Watch::Wait(recheck(left)),
    }
}

/// How long a connection may stay without a request in flight.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdleLimits {
    /// Before its first request (`server.header_read_timeout_secs`): also bounds the bytes
    /// read, with no timer of their own, to tell HTTP/1 from HTTP/2.
    pub first_request: Duration,
    /// Between requests (`server.idle_timeout_secs`); HTTP/2 has no idle timeout of its own.
    pub between_requests: Duration,
    /// After a graceful shutdown, for the connection to finish closing before it is dropped.
    pub closing: Duration,
}

/// How [`watch_connection`] left a connection.
#[derive(Debug)]
enum Watched<E> {
    /// It ended (or was dropped after its closing time), with hyper's result.
    Ended(Result<(), E>),
    /// A park was asked for and hyper ended its connection: `clean` when hyper was idle
    /// (nothing read or written since), so the client's socket may go on; otherwise it
    /// finished an exchange first and the socket must close.
    Parked { result: Result<(), E>, clean: bool },
}

/// Drives one connection until it ends or parks: asks it to shut down gracefully once it
/// has had nothing in flight for its idle limit, or when `shutdown` changes, and drops it if
/// it is still open after a further `limits.closing` with nothing in flight. With `park`
/// (HTTP/1), once it has served a request since it last parked, it asks for a park instead
/// after `park.after` with nothing in flight. For HTTP/1 a graceful shutdown closes after
/// the current exchange; HTTP/2 sends GOAWAY and lets streams finish.
async fn watch_connection<C, E>(
    conn: &mut Pin<Box<C>>,
    graceful_shutdown: impl Fn(Pin<&mut C>),
    activity: &ConnActivity,
    limits: IdleLimits,
    began: Duration,
    park: Option<Parking>,
    shutdown: &mut watch::Receiver<bool>,
) -> Watched<E>
where
    C: Future<Output = Result<(), E>>,
{
    let mut closing_since: Option<Duration> = None;
    let mut parking = false;
    // Look at once: the first wait depends on what came before (a resumed connection).
    let mut deadline = Instant::now();
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if !parking {
                    return Watched::Ended(result);
                }
                let clean = !activity.moved_while_parking.load(Ordering::Acquire);
                return Watched::Parked { result, clean };
            }
            _ = tokio::time::sleep_until(deadline) => {
                let (in_flight, last_done) = activity.snapshot();
                let now = activity.start.elapsed();
                let idle_since = last_done.unwrap_or(began).max(closing_since.unwrap_or_default());
                let limit = match (closing_since, last_done) {
                    (Some(_), _) => limits.closing,
                    (None, None) => limits.first_request,
                    (None, Some(_)) => limits.between_requests,
                };
                let park = park.filter(|_| closing_since.is_none()).map(|p| {
                    (p.after, last_done.is_some() && last_done != p.last_parked)
                });
                match idle_watch(in_flight, idle_since, now, limit, park) {
                    Watch::Wait(wait) => deadline = Instant::now() + wait,
                    Watch::Act if closing_since.is_some() => return Watched::Ended(Ok(())),
                    step => {
                        parking = step == Watch::Park;
                        activity.set_parking(parking);
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
pub(crate) fn refused_input(
    e: &(dyn std::error::Error + Send + Sync + 'static),
) -> Option<&'static str> {
    let e = e.downcast_ref::<hyper::Error>()?;
    if e.is_parse_too_large() {
        Some("request head too large")
    } else if e.is_parse() {
        Some("malformed HTTP request")
    } else {
        None
    }
}

/// hyper's HTTP/1 and HTTP/2 servers with every per-connection limit set explicitly rather
/// than left to hyper's defaults, which may change between versions.
pub(crate) struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Protocols {
    pub(crate) fn new(settings: &ServerSettings) -> Protocols {
        let mut http1 = http1::Builder::new();
        http1
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
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
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
            // Streams we had to reset for the client's protocol errors: a client provoking
            // more than 1024 (the "MadeYouReset" pattern) loses the connection.
            .max_local_error_reset_streams(Some(1024));
        Protocols { http1, http2 }
    }
}

/// What one connection's task needs besides the socket.
pub(crate) struct Client {
    pub gateway: Arc<Gateway>,
    pub info: ConnInfo,
    /// The connection's slot under `server.max_connections`, shared with a WebSocket tunnel
    /// it may become (see [`TunnelPermit`]).
    pub permit: Arc<tokio::sync::OwnedSemaphorePermit>,
    pub limits: IdleLimits,
    pub shutdown: watch::Receiver<bool>,
}

/// Serves one client connection (after the TLS handshake, if any) until it ends.
pub(crate) async fn serve<S>(
    mut io: S,
    protocols: &Protocols,
    client: Client,
    activity: Arc<ConnActivity>,
) -> Result<(), BoxError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Client {
        gateway,
        info,
        permit,
        limits,
        mut shutdown,
    } = client;
    // The first request's time counts from here: after the TLS handshake, if any.
    let began = activity.start.elapsed();
    let sniffed = tokio::select! {
        r = tokio::time::timeout(limits.first_request, sniff_protocol(&mut io)) => r,
        _ = shutdown.changed() => return Ok(()),
    };
    let Ok(sniffed) = sniffed else {
        return Ok(()); // nothing the first request's limit would have waited longer for
    };
    let (h2, ahead) = sniffed?;
    // HTTP/1 requests on this connection share one upstream connection (see ConnSlot).
    let upstream_slot = ConnSlot::new();
    let counted = activity.clone();
    let slot = upstream_slot.clone();
    let service = service_fn(move |mut req: Request<Incoming>| {
        let gateway = gateway.clone();
        let in_flight = counted.begin();
        // A parameter, not a request extension: no extension map per request.
        let slot = (req.version() != Version::HTTP_2).then(|| slot.clone());
        // Only a request that may upgrade carries the slot (no work for the rest).
        if req.headers().contains_key(http::header::UPGRADE) {
            req.extensions_mut().insert(TunnelPermit(permit.clone()));
        }
        async move {
            let response = gateway.handle(req, info, slot).await;
            Ok::<_, std::convert::Infallible>(response.map(|inner| TrackedBody {
                inner,
                _in_flight: in_flight,
            }))
        }
    });
    let io = ConnIo {
        ahead,
        io,
        activity: activity.clone(),
    };
    if h2 {
        let mut conn = Box::pin(protocols.http2.serve_connection(TokioIo::new(io), service));
        let watched = watch_connection(
            &mut conn,
            |c| c.graceful_shutdown(),
            &activity,
            limits,
            began,
            None,
            &mut shutdown,
        );
        return match watched.await {
            Watched::Ended(r) | Watched::Parked { result: r, .. } => r.map_err(Into::into),
        };
    }
    serve_http1(
        io,
        protocols,
        service,
        &activity,
        &upstream_slot,
        limits,
        began,
        shutdown,
    )
    .await
}

/// When to park (see [`watch_connection`]).
#[derive(Debug, Clone, Copy)]
struct Parking {
    after: Duration,
    /// When the last request before the previous park ended: a connection parks at most once
    /// per request served, so bytes a park carried over (a request on its way) do not park
    /// it again and again, each time restarting hyper's header-read timer.
    last_parked: Option<Duration>,
}

/// HTTP/1 with parking: hyper serves the connection until it has been idle for
/// [`PARK_AFTER`]; then hyper's connection (with its buffers) and the upstream connection
/// go, and the task waits for the client's next byte with no buffer, up to the idle limit,
/// before serving on with a fresh hyper connection. What hyper had read but not parsed is
/// read again first.
#[allow(clippy::too_many_arguments)]
async fn serve_http1<S, Svc>(
    mut io: ConnIo<S>,
    protocols: &Protocols,
    mut service: Svc,
    activity: &Arc<ConnActivity>,
    upstream_slot: &ConnSlot,
    limits: IdleLimits,
    began: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), BoxError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    Svc: hyper::service::HttpService<Incoming, ResBody = TrackedBody> + Unpin,
    Svc::Future: Send + 'static,
    Svc::Error: Into<BoxError>,
{
    let mut last_parked = None;
    loop {
        activity.set_parking(false);
        let mut conn = Box::pin(
            protocols
                .http1
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades(),
        );
        let parking = Parking {
            after: PARK_AFTER,
            last_parked,
        };
        // Boxed, like the connection: a parked connection's task keeps neither.
        let watched = Box::pin(watch_connection(
            &mut conn,
            |c| c.graceful_shutdown(),
            activity,
            limits,
            began,
            Some(parking),
            &mut shutdown,
        ))
        .await;
        let (result, clean) = match watched {
            Watched::Ended(r) => return r.map_err(Into::into),
            Watched::Parked { result, clean } => (result, clean),
        };
        // Upgraded connections have no parts; they never park (nothing in flight is needed).
        let Some(parts) = Pin::into_inner(conn).into_parts() else {
            return result.map_err(Into::into);
        };
        activity.set_parking(false);
        service = parts.service;
        io = parts.io.into_inner();
        // Copied: even an empty `read_buf` holds hyper's whole read buffer.
        io.ahead = read_first(&parts.read_buf, std::mem::take(&mut io.ahead));
        drop(parts.read_buf);
        if !clean || result.is_err() {
            // hyper finished an exchange first and then ended the connection as asked:
            // close it as hyper would have.
            let _ = tokio::time::timeout(limits.closing, io.io.shutdown()).await;
            return result.map_err(Into::into);
        }
        upstream_slot.release_idle();
        note_park();
        last_parked = activity.snapshot().1;
        if io.ahead.is_empty() && !wait_parked(&mut io, activity, limits, &mut shutdown).await? {
            let _ = tokio::time::timeout(limits.closing, io.io.shutdown()).await;
            return Ok(());
        }
    }
}

/// Counts a park; every [`PARKS_PER_TRIM`] parks, asks glibc's malloc to give free memory
/// back to the OS (`malloc_trim`), one trim at a time, on the blocking pool. glibc otherwise
/// keeps resident what a burst of busy connections freed when they parked (measured in
/// `benches/idle_connections.rs`: about 2.5× the memory the parked connections still use).
fn note_park() {
    if PARKS_SINCE_TRIM.fetch_add(1, Ordering::Relaxed) + 1 < PARKS_PER_TRIM
        || TRIMMING.swap(true, Ordering::AcqRel)
    {
        return;
    }
    PARKS_SINCE_TRIM.store(0, Ordering::Relaxed);
    tokio::task::spawn_blocking(|| {
        trim_heap();
        TRIMMING.store(false, Ordering::Release);
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // the crate's only `unsafe` (src/lib.rs says why)
fn trim_heap() {
    // SAFETY: malloc_trim takes no pointers; it only releases free pages of malloc's arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}

/// `first`, then `then`, in a buffer of their own.
fn read_first(first: &[u8], then: Bytes) -> Bytes {
    if first.is_empty() {
        return then;
    }
    let mut joined = BytesMut::with_capacity(first.len() + then.len());
    joined.extend_from_slice(first);
    joined.extend_from_slice(&then);
    joined.freeze()
}

/// A parked connection's wait: `true` once the client sent something (its first byte is
/// then read ahead), `false` when it closed, the server is shutting down, or it stayed idle
/// since its last request past `limits.between_requests` or past the header-read timeout
/// (`limits.first_request`), whichever comes first: the same bound as an unparked one,
/// whose hyper header timer runs while it waits for the next request.
async fn wait_parked<S: AsyncRead + Unpin>(
    io: &mut ConnIo<S>,
    activity: &ConnActivity,
    limits: IdleLimits,
    shutdown: &mut watch::Receiver<bool>,
) -> io::Result<bool> {
    let last_done = activity.snapshot().1.unwrap_or_default();
    let idle_end = activity.start + last_done + limits.between_requests.min(limits.first_request);
    let mut first = [0u8; 1];
    tokio::select! {
        read = io.io.read(&mut first) => {
            let n = read?;
            io.ahead = Bytes::copy_from_slice(&first[..n]);
            Ok(n > 0)
        }
        _ = tokio::time::sleep_until(idle_end) => Ok(false),
        _ = shutdown.changed() => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    #[test]
    fn watchdog_waits_out_the_limit_and_never_cuts_a_request_in_flight() {
        let s = Duration::from_secs;
        let limit = s(10);
        // Idle since 0, now 4: six seconds left.
        assert_eq!(idle_watch(0, s(0), s(4), limit, None), Watch::Wait(s(6)));
        // Idle since the last request ended at 7: counted from there.
        assert_eq!(idle_watch(0, s(7), s(12), limit, None), Watch::Wait(s(5)));
        assert_eq!(idle_watch(0, s(7), s(17), limit, None), Watch::Act);
        assert_eq!(idle_watch(0, s(0), s(100), limit, None), Watch::Act);
        // A request in flight: look again later, however long it has been.
        assert_eq!(idle_watch(1, s(0), s(100), limit, None), Watch::Wait(limit));
        assert_eq!(idle_watch(3, s(0), s(10), limit, None), Watch::Wait(limit));
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

    /// The error a real hyper HTTP/1 server connection ends with after reading `input`, read
    /// as the server reads it (the protocol sniff first, then hyper through [`ConnIo`]).
    async fn served_error(input: &[u8]) -> Option<Box<dyn std::error::Error + Send + Sync>> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, mut server) = tokio::io::duplex(256 * 1024);
        let protocols = Protocols::new(&ServerSettings {
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(5),
            max_connections: 1,
            shutdown_grace: Duration::from_secs(1),
            http_redirect_listen: None,
        });
        client.write_all(input).await.unwrap();
        client.shutdown().await.unwrap();
        let (h2, ahead) = sniff_protocol(&mut server).await.unwrap();
        assert!(!h2);
        let io = ConnIo {
            ahead,
            io: server,
            activity: ConnActivity::new(),
        };
        let conn = protocols.http1.serve_connection(
            TokioIo::new(io),
            service_fn(|_req: Request<Incoming>| async {
                Ok::<_, Infallible>(http::Response::new(crate::proxy::full("ok")))
            }),
        );
        let result = conn.await;
        let mut answer = Vec::new();
        let _ = client.read_to_end(&mut answer).await;
        result.err().map(Into::into)
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
        assert_eq!(refused_input(&*e), Some("request head too large"), "{e:?}");

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
    fn watchdog_parks_an_idle_http1_connection_once_it_may() {
        let s = Duration::from_secs;
        let limit = s(75);
        let park = Some((s(2), true));
        assert_eq!(idle_watch(0, s(10), s(11), limit, park), Watch::Wait(s(1)));
        assert_eq!(idle_watch(0, s(10), s(12), limit, park), Watch::Park);
        // Past the idle limit it closes rather than parks.
        assert_eq!(idle_watch(0, s(10), s(85), limit, park), Watch::Act);
        assert_eq!(idle_watch(0, s(0), s(0), s(1), park), Watch::Wait(s(1)));
        // A request in flight: look again within the park delay, to park soon after it.
        assert_eq!(idle_watch(1, s(0), s(100), limit, park), Watch::Wait(s(2)));
        // Not allowed to park (no request since the last park): no park, but look again
        // soon, a request may come and go meanwhile.
        let not_now = Some((s(2), false));
        assert_eq!(
            idle_watch(0, s(10), s(30), limit, not_now),
            Watch::Wait(s(2))
        );
        assert_eq!(idle_watch(0, s(10), s(85), limit, not_now), Watch::Act);
    }

    #[test]
    fn the_first_bytes_tell_http2_from_http1() {
        assert_eq!(is_h2_preface(b"", false), None);
        assert_eq!(is_h2_preface(b"P", false), None);
        assert_eq!(is_h2_preface(b"PRI * HT", false), None);
        assert_eq!(is_h2_preface(H2_PREFACE, false), Some(true));
        assert_eq!(is_h2_preface(b"GET / HTTP/1.1\r\n", false), Some(false));
        assert_eq!(is_h2_preface(b"POST", false), Some(false));
        assert_eq!(is_h2_preface(b"PRI * HTTP/1.1", false), Some(false));
        // The client stopped sending part-way, or sent nothing: HTTP/1, which ends quietly.
        assert_eq!(is_h2_preface(b"PRI * HT", true), Some(false));
        assert_eq!(is_h2_preface(b"", true), Some(false));
    }

    #[tokio::test]
    async fn bytes_read_ahead_come_first_and_a_park_keeps_the_socket_open() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(1024);
        let activity = ConnActivity::new();
        let mut io = ConnIo {
            ahead: Bytes::from_static(b"GET / HT"),
            io: server,
            activity: activity.clone(),
        };
        client.write_all(b"TP/1.1\r\n").await.unwrap();
        let mut got = vec![0u8; 16];
        let n = io.read(&mut got).await.unwrap();
        assert_eq!(&got[..n], b"GET / HT", "what was read ahead comes first");
        let n = io.read(&mut got).await.unwrap();
        assert_eq!(&got[..n], b"TP/1.1\r\n", "then the socket");

        // Parking: hyper's shutdown leaves the socket open; bytes moving are noted.
        activity.set_parking(true);
        io.shutdown().await.unwrap();
        assert!(!activity.moved_while_parking.load(Ordering::Acquire));
        io.write_all(b"still open").await.unwrap();
        assert!(activity.moved_while_parking.load(Ordering::Acquire));
        let n = client.read(&mut got).await.unwrap();
        assert_eq!(&got[..n], b"still open");

        // Not parking: shutdown closes.
        activity.set_parking(false);
        io.shutdown().await.unwrap();
        assert_eq!(client.read(&mut got).await.unwrap(), 0, "closed");
    }

    #[test]
    fn bytes_hyper_had_not_parsed_go_first() {
        assert_eq!(read_first(b"", Bytes::from_static(b"b")), "b");
        assert_eq!(read_first(b"a", Bytes::new()), "a");
        assert_eq!(read_first(b"GET ", Bytes::from_static(b"/ ")), "GET / ");
    }
}
