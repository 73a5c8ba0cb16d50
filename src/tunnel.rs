//! Upgraded (WebSocket) tunnels: the client connection's slot under `server.max_connections`
//! travels with the upgrade request ([`TunnelPermit`]) into the task that splices client and
//! upstream together ([`splice`]), which closes the tunnel once no byte has moved either way
//! for `proxy.upgrade_idle_timeout_secs`, or once the session it was opened under has ended
//! ([`TunnelSession`], asked every `proxy.upgrade_session_check_secs`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

/// The client connection's slot under the connection cap, shared between the connection and
/// the tunnel an upgrade turns it into. The server puts one in the extensions of a request
/// that carries `Upgrade` (only those: normal requests pay nothing); the proxy moves it into
/// the splice task, so the slot stays taken while the tunnel is open.
#[derive(Clone)]
pub struct TunnelPermit(pub Arc<OwnedSemaphorePermit>);

/// Whether the session a tunnel was opened under is still live: a session-store lookup,
/// which also counts as activity for the session's idle timer (an open tunnel is use).
pub type SessionAlive = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// The session an upgrade request was authenticated with, carried like [`TunnelPermit`] (only
/// on authenticated upgrade requests): the tunnel asks `alive` every `every` and closes when
/// the answer is no (sign-out, Single Logout, expiry).
#[derive(Clone)]
pub struct TunnelSession {
    pub alive: SessionAlive,
    pub every: Duration,
    /// Whose session it is, for the audit line when the tunnel is closed.
    pub user: String,
    /// Changes when sessions were ended before their time (sign-out, Single Logout, SCIM
    /// deprovisioning, the admin API, a revocation relayed from another replica): the tunnel
    /// asks `alive` at once instead of waiting for `every`.
    pub recheck: Option<tokio::sync::watch::Receiver<u64>>,
}

/// How a splice ended.
#[derive(Debug, PartialEq, Eq)]
pub enum SpliceEnd {
    /// One side closed or failed.
    Closed,
    /// No byte moved for the idle limit.
    Idle,
    /// The session it was opened under ended.
    SessionEnded,
}

/// Copies bytes both ways between `a` and `b` until either side ends, until no byte has
/// moved in either direction for `idle_limit`, or until `session` says it has ended.
/// `permit` (the client connection's slot) is held until then.
pub async fn splice<A, B>(
    a: A,
    b: B,
    idle_limit: Duration,
    permit: Option<TunnelPermit>,
    session: Option<TunnelSession>,
) -> SpliceEnd
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let _permit = permit;
    let start = Instant::now();
    // Milliseconds after `start` of the last byte moved (atomics keep the future `Send`).
    let last_moved = AtomicU64::new(0);
    let mut a = Stamped {
        io: a,
        start,
        last_moved: &last_moved,
    };
    let mut b = Stamped {
        io: b,
        start,
        last_moved: &last_moved,
    };
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    tokio::pin!(copy);
    let mut next_session_check = session.as_ref().map(|s| start + s.every);
    let mut recheck = session.as_ref().and_then(|s| s.recheck.clone());
    loop {
        let last = start + Duration::from_millis(last_moved.load(Ordering::Relaxed));
        let deadline = last + idle_limit;
        tokio::select! {
            _ = &mut copy => return SpliceEnd::Closed,
            _ = tokio::time::sleep_until(deadline) => {
                let last = start + Duration::from_millis(last_moved.load(Ordering::Relaxed));
                if Instant::now().saturating_duration_since(last) >= idle_limit {
                    return SpliceEnd::Idle;
                }
            }
            _ = sleep_until_some(next_session_check) => {
                if let Some(s) = &session {
                    if !(s.alive)().await {
                        return SpliceEnd::SessionEnded;
                    }
                    next_session_check = Some(Instant::now() + s.every);
                }
            }
            changed = changed_or_never(&mut recheck) => {
                if !changed {
                    // The sender is gone (shutdown): fall back to the periodic check.
                    recheck = None;
                    continue;
                }
                if let Some(s) = &session {
                    if !(s.alive)().await {
                        return SpliceEnd::SessionEnded;
                    }
                }
            }
        }
    }
}

/// Waits for the next change of `rx` (`true`), or `false` once its sender is gone; never
/// resolves without a receiver.
async fn changed_or_never(rx: &mut Option<tokio::sync::watch::Receiver<u64>>) -> bool {
    match rx {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`, or forever when there is no such time.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// An IO that notes when it last moved a byte.
struct Stamped<'a, T> {
    io: T,
    start: Instant,
    last_moved: &'a AtomicU64,
}

impl<T> Stamped<'_, T> {
    fn moved(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_moved.store(ms, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Stamped<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.moved();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Stamped<'_, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn an_idle_tunnel_closes_and_a_busy_one_does_not() {
        let (mut client, gateway_side) = tokio::io::duplex(1024);
        let (upstream_side, mut upstream) = tokio::io::duplex(1024);
        let limit = Duration::from_secs(1);
        let tunnel = tokio::spawn(splice(gateway_side, upstream_side, limit, None, None));
        let mut buf = [0u8; 4];
        // Traffic every 200 ms, one way or the other, keeps it open past twice the limit.
        for i in 0..12 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if i % 2 == 0 {
                client.write_all(b"ping").await.unwrap();
                upstream.read_exact(&mut buf).await.unwrap();
            } else {
                upstream.write_all(b"pong").await.unwrap();
                client.read_exact(&mut buf).await.unwrap();
            }
        }
        assert!(!tunnel.is_finished());
        // Then silence: closed by the idle limit (5 s: a generous upper bound).
        let end = tokio::time::timeout(Duration::from_secs(5), tunnel).await;
        assert_eq!(end.unwrap().unwrap(), SpliceEnd::Idle);
        // The client sees the close.
        assert_eq!(client.read(&mut buf).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_busy_tunnel_closes_once_its_session_has_ended() {
        let (mut client, gateway_side) = tokio::io::duplex(1024);
        let (upstream_side, mut upstream) = tokio::io::duplex(1024);
        let live = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (l, a) = (live.clone(), asked.clone());
        let session = TunnelSession {
            alive: Arc::new(move || {
                a.fetch_add(1, Ordering::SeqCst);
                let live = l.load(Ordering::SeqCst);
                Box::pin(async move { live })
            }),
            every: Duration::from_millis(100),
            user: "alice".into(),
            recheck: None,
        };
        let tunnel = tokio::spawn(splice(
            gateway_side,
            upstream_side,
            Duration::from_secs(600),
            None,
            Some(session),
        ));
        let mut buf = [0u8; 4];
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            client.write_all(b"ping").await.unwrap();
            upstream.read_exact(&mut buf).await.unwrap();
        }
        assert!(!tunnel.is_finished(), "a live session keeps the tunnel");
        assert!(
            asked.load(Ordering::SeqCst) >= 2,
            "the session is asked about"
        );
        // Signed out: traffic goes on, but the next check closes the tunnel.
        live.store(false, Ordering::SeqCst);
        client.write_all(b"ping").await.unwrap();
        let end = tokio::time::timeout(Duration::from_secs(5), tunnel).await;
        assert_eq!(end.unwrap().unwrap(), SpliceEnd::SessionEnded);
    }

    #[tokio::test]
    async fn a_revocation_signal_makes_the_tunnel_ask_at_once() {
        let (_client, gateway_side) = tokio::io::duplex(64);
        let (upstream_side, _upstream) = tokio::io::duplex(64);
        let live = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let l = live.clone();
        let (revoked, revocations) = tokio::sync::watch::channel(0u64);
        let session = TunnelSession {
            alive: Arc::new(move || {
                let live = l.load(Ordering::SeqCst);
                Box::pin(async move { live })
            }),
            // Far beyond the test's wait: only the signal can close the tunnel in time.
            every: Duration::from_secs(600),
            user: "alice".into(),
            recheck: Some(revocations),
        };
        let tunnel = tokio::spawn(splice(
            gateway_side,
            upstream_side,
            Duration::from_secs(600),
            None,
            Some(session),
        ));
        // Another session's revocation: this one is live and its tunnel stays.
        revoked.send_modify(|g| *g += 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!tunnel.is_finished(), "a live session keeps the tunnel");
        live.store(false, Ordering::SeqCst);
        revoked.send_modify(|g| *g += 1);
        let end = tokio::time::timeout(Duration::from_secs(5), tunnel).await;
        assert_eq!(end.unwrap().unwrap(), SpliceEnd::SessionEnded);
    }

    #[tokio::test]
    async fn a_closed_side_ends_the_tunnel_and_frees_the_permit() {
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let permit = TunnelPermit(Arc::new(slots.clone().try_acquire_owned().unwrap()));
        let (client, gateway_side) = tokio::io::duplex(64);
        let (upstream_side, _upstream) = tokio::io::duplex(64);
        let tunnel = tokio::spawn(splice(
            gateway_side,
            upstream_side,
            Duration::from_secs(600),
            Some(permit),
            None,
        ));
        assert_eq!(slots.available_permits(), 0);
        drop(client);
        drop(_upstream);
        assert_eq!(tunnel.await.unwrap(), SpliceEnd::Closed);
        assert_eq!(slots.available_permits(), 1);
    }
}
