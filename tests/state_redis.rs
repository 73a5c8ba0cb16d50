//! The Redis state backend against a real `redis-server` (tests/support/redis.rs): two or
//! three backends on one Redis stand for replicas. What it proves: a pending sign-in is
//! claimed exactly once however many replicas race for it; a message id is refused on every
//! replica after its first use; nothing in Redis names anyone, and edited, moved or foreign
//! values are refused; a revocation on one replica reaches another's local cache within a
//! second (measured, printed); Redis going away is an error, never a yes, cached sessions
//! outlive it only for the grace period, and after a restart everything recovers without
//! restarting the gateway, old pending sign-ins and old IdP-initiated responses refused.

#[path = "support/redis.rs"]
mod redis_server;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::HeaderValue;
use redis::AsyncCommands;
use redis_server::RedisServer;
use samlgate::session::pending::{browser_hash, ClaimError, PendingLogin};
use samlgate::session::{Identity, IdentityHeaderValues, Session, SessionKey};
use samlgate::state::{
    FirstUse, Limits, Readiness, RedisSettings, ReplayKind, State, StateError, StateSettings,
};

const SECRET: [u8; 32] = [42; 32];

fn settings(redis: &RedisServer, grace: Duration) -> StateSettings {
    StateSettings::Redis(RedisSettings {
        key_prefix: "t:".into(),
        grace,
        command_timeout: Duration::from_millis(500),
        ..RedisSettings::single(redis.url())
    })
}

fn limits(idle: Duration) -> Limits {
    Limits {
        max_sessions: 10_000,
        idle_timeout: idle,
        login_timeout: Duration::from_secs(60),
        clock_skew: Duration::from_secs(2),
    }
}

async fn replica_with(
    redis: &RedisServer,
    secret: &[u8],
    grace: Duration,
    idle: Duration,
) -> State {
    let state = State::new(&settings(redis, grace), secret, limits(idle)).expect("backend");
    wait_ready(&state).await;
    state
}

async fn replica(redis: &RedisServer) -> State {
    replica_with(
        redis,
        &SECRET,
        Duration::from_secs(30),
        Duration::from_secs(600),
    )
    .await
}

/// Waits (bounded) until the backend reports Redis reachable and subscribed.
async fn wait_ready(state: &State) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while state.flows.readiness() != Readiness::Ready {
        assert!(Instant::now() < deadline, "backend never became ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn session(user: &str, name_id: &str, session_index: Option<&str>) -> Arc<Session> {
    let now = SystemTime::now();
    Arc::new(Session {
        identity: Identity {
            user: user.into(),
            email: Some(format!("{user}.mail@example.org")),
            display_name: Some("Secret Display Name".into()),
            groups: vec!["confidential-group".into(), "analysts".into()],
            name_id: name_id.into(),
            session_index: session_index.map(str::to_string),
            ..Identity::default()
        },
        headers: IdentityHeaderValues {
            user: HeaderValue::from_str(user).expect("header"),
            email: None,
            groups: Some(HeaderValue::from_static("confidential-group,analysts")),
            preferred_username: None,
            role_name: None,
            role: None,
            attributes: Vec::new(),
        },
        created_at: now,
        expires_at: now + Duration::from_secs(3600),
    })
}

fn pending(browser: [u8; 32]) -> PendingLogin {
    PendingLogin {
        request_id: "_req-secret-path".into(),
        return_path: "/reports/salaries-of-alice".into(),
        browser: browser_hash(&browser),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pending_sign_in_is_claimed_exactly_once_across_replicas() {
    let redis = RedisServer::start();
    let a = replica(&redis).await;
    let b = replica(&redis).await;
    a.flows
        .put_pending("relay-1", &pending([1; 32]))
        .await
        .expect("put");

    // Another browser cannot claim it, and trying does not spend it.
    assert_eq!(
        b.flows.claim_pending("relay-1", &[[2; 32]]).await,
        Ok(Err(ClaimError::WrongBrowser))
    );
    // Sixteen racing claims over both replicas: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let flows = if i % 2 == 0 {
            a.flows.clone()
        } else {
            b.flows.clone()
        };
        tasks.push(tokio::spawn(async move {
            flows.claim_pending("relay-1", &[[9; 32], [1; 32]]).await
        }));
    }
    let mut won = Vec::new();
    let mut unknown = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(Ok(p)) => won.push(p),
            Ok(Err(ClaimError::Unknown)) => unknown += 1,
            other => panic!("unexpected claim result {other:?}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one claim wins");
    assert_eq!(unknown, 15);
    assert_eq!(won[0].request_id, "_req-secret-path");
    assert_eq!(won[0].return_path, "/reports/salaries-of-alice");
    assert_eq!(won[0].browser, browser_hash(&[1; 32]));
    assert_eq!(
        a.flows.claim_pending("never-issued", &[[1; 32]]).await,
        Ok(Err(ClaimError::Unknown))
    );
}

#[tokio::test]
async fn a_message_id_is_used_once_on_any_replica() {
    let redis = RedisServer::start();
    let a = replica(&redis).await;
    let b = replica(&redis).await;
    let ttl = Duration::from_secs(60);
    let f = |s: &State, kind, id: &'static str| {
        let flows = s.flows.clone();
        async move {
            flows
                .first_use(kind, id, ttl, None)
                .await
                .expect("first_use")
        }
    };
    assert_eq!(f(&a, ReplayKind::Assertion, "_a1").await, FirstUse::Fresh);
    assert_eq!(f(&b, ReplayKind::Assertion, "_a1").await, FirstUse::Replay);
    assert_eq!(f(&a, ReplayKind::Assertion, "_a1").await, FirstUse::Replay);
    // Logout ids live apart from assertion ids.
    assert_eq!(f(&b, ReplayKind::Logout, "_a1").await, FirstUse::Fresh);
    assert_eq!(f(&a, ReplayKind::Logout, "_a1").await, FirstUse::Replay);
    // Our LogoutRequest ids are single use too.
    a.flows.put_logout_request("_lr1", ttl).await.expect("put");
    assert_eq!(b.flows.take_logout_request("_lr1").await, Ok(true));
    assert_eq!(a.flows.take_logout_request("_lr1").await, Ok(false));
    // The replay entry expires with its TTL (Redis PX), not before.
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let keys: Vec<String> = conn.keys("t:ra:*").await.expect("keys");
    assert_eq!(keys.len(), 1);
    let pttl: i64 = conn.pttl(&keys[0]).await.expect("pttl");
    assert!((50_000..=60_000).contains(&pttl), "{pttl}");
}

/// Every key and value in the database, as bytes.
async fn dump(redis: &RedisServer) -> Vec<(String, Vec<u8>)> {
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let keys: Vec<String> = conn.keys("*").await.expect("keys");
    let mut out = Vec::new();
    for k in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&k)
            .query_async(&mut conn)
            .await
            .expect("type");
        let value = match kind.as_str() {
            "string" => conn.get(&k).await.expect("get"),
            "set" => {
                let members: Vec<Vec<u8>> = conn.smembers(&k).await.expect("smembers");
                members.concat()
            }
            other => panic!("unexpected type {other} at {k}"),
        };
        out.push((k, value));
    }
    out
}

#[tokio::test]
async fn redis_holds_nothing_readable_and_refuses_edited_or_foreign_values() {
    let redis = RedisServer::start();
    let a = replica(&redis).await;
    let k1 = SessionKey::from_id(&[1; 32]);
    let k2 = SessionKey::from_id(&[2; 32]);
    a.sessions
        .try_insert(
            k1,
            session(
                "alice.secret@example.org",
                "nameid-alice-7f3",
                Some("_idx1"),
            ),
        )
        .await
        .expect("insert");
    a.sessions
        .try_insert(
            k2,
            session("bob.secret@example.org", "nameid-bob-9c1", None),
        )
        .await
        .expect("insert");
    a.flows
        .put_pending("relay-x", &pending([5; 32]))
        .await
        .expect("put");

    let all = dump(&redis).await;
    assert!(
        all.len() >= 6,
        "sessions, indexes and the pending sign-in: {all:?}"
    );
    for needle in [
        "alice",
        "bob",
        "secret",
        "nameid",
        "confidential",
        "Display",
        "salaries",
        "_req",
        "_idx1",
        "example.org",
    ] {
        for (k, v) in &all {
            assert!(!k.contains(needle), "`{needle}` in key {k}");
            assert!(
                !v.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "`{needle}` readable in the value at {k}"
            );
        }
    }
    // The cookie's id is not a key either: keys are digests.
    let id_hex: String = [1u8; 32].iter().map(|b| format!("{b:02x}")).collect();
    assert!(all.iter().all(|(k, _)| !k.contains(&id_hex)));

    // A fresh replica (empty cache) reads both from Redis.
    let c = replica(&redis).await;
    assert_eq!(
        c.sessions
            .lookup(&k1)
            .await
            .expect("up")
            .expect("found")
            .identity
            .user,
        "alice.secret@example.org"
    );

    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let key1 = format!("t:s:{}", hex(&k1.0));
    let key2 = format!("t:s:{}", hex(&k2.0));
    let original: Vec<u8> = conn.get(&key1).await.expect("get");

    // Edited: one bit flipped in the ciphertext.
    let mut edited = original.clone();
    edited[30] ^= 1;
    let _: () = conn.set(&key1, &edited).await.expect("set");
    let d = replica(&redis).await;
    assert!(
        matches!(d.sessions.lookup(&k1).await, Ok(None)),
        "an edited value is refused"
    );

    // Moved: alice's valid value copied under bob's key does not make bob alice.
    let _: () = conn.set(&key2, &original).await.expect("set");
    let e = replica(&redis).await;
    assert!(
        matches!(e.sessions.lookup(&k2).await, Ok(None)),
        "a moved value is refused"
    );

    // Foreign: a value written by someone with another cookie secret.
    let _: () = conn.set(&key1, &original).await.expect("set");
    let other = replica_with(
        &redis,
        &[7; 32],
        Duration::from_secs(30),
        Duration::from_secs(600),
    )
    .await;
    assert!(
        matches!(other.sessions.lookup(&k1).await, Ok(None)),
        "another secret's value is refused"
    );
    // Plain JSON written straight into Redis is refused too.
    let _: () = conn
        .set(
            &key1,
            br#"{"user":"mallory","groups":["admins"]}"#.as_slice(),
        )
        .await
        .expect("set");
    let f = replica(&redis).await;
    assert!(
        matches!(f.sessions.lookup(&k1).await, Ok(None)),
        "a forged value is refused"
    );

    // A pending sign-in whose sealed part was edited completes nothing.
    let pkeys: Vec<String> = conn.keys("t:p:*").await.expect("keys");
    let mut pv: Vec<u8> = conn.get(&pkeys[0]).await.expect("get");
    let last = pv.len() - 1;
    pv[last] ^= 1;
    let _: () = conn.set(&pkeys[0], &pv).await.expect("set");
    assert_eq!(
        a.flows.claim_pending("relay-x", &[[5; 32]]).await,
        Ok(Err(ClaimError::Unknown))
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Polls `replica` until the session is gone; returns how long that took.
async fn time_until_gone(replica: &State, key: &SessionKey, started: Instant) -> Duration {
    let deadline = started + Duration::from_secs(5);
    loop {
        if replica
            .sessions
            .lookup(key)
            .await
            .expect("backend up")
            .is_none()
        {
            return started.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "the session outlived its revocation by 5 s"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_every_replicas_cache_within_a_second() {
    let redis = RedisServer::start();
    let a = replica(&redis).await;
    let b = replica(&redis).await;
    let c = replica(&redis).await;
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("conn");

    // Sign-in on A; B and C serve it from their caches once read.
    let k = SessionKey::from_id(&[3; 32]);
    a.sessions
        .try_insert(k, session("carol", "n-carol", Some("_s1")))
        .await
        .expect("insert");
    assert!(b.sessions.lookup(&k).await.expect("up").is_some());
    assert!(c.sessions.lookup(&k).await.expect("up").is_some());
    // Proof that B answers from its cache: deleted behind its back (no message), B still
    // serves it; only a revocation message removes it.
    let _: i64 = conn.del(format!("t:s:{}", hex(&k.0))).await.expect("del");
    assert!(
        b.sessions.lookup(&k).await.expect("up").is_some(),
        "served from B's cache"
    );

    let mut delays = Vec::new();
    // Sign-out on A (remove), measured on B and C.
    let t0 = Instant::now();
    a.sessions.remove(&k).await;
    delays.push(time_until_gone(&b, &k, t0).await);
    delays.push(time_until_gone(&c, &k, t0).await);

    // Single Logout by subject on C ends the session cached on A and B.
    let k2 = SessionKey::from_id(&[4; 32]);
    let k3 = SessionKey::from_id(&[5; 32]);
    a.sessions
        .try_insert(k2, session("dave", "n-dave", Some("_s1")))
        .await
        .expect("insert");
    a.sessions
        .try_insert(k3, session("dave", "n-dave", Some("_s2")))
        .await
        .expect("insert");
    assert!(b.sessions.lookup(&k2).await.expect("up").is_some());
    assert!(b.sessions.lookup(&k3).await.expect("up").is_some());
    let t0 = Instant::now();
    assert_eq!(c.sessions.remove_by_subject("n-dave", Some("_s1")).await, 1);
    delays.push(time_until_gone(&b, &k2, t0).await);
    delays.push(time_until_gone(&a, &k2, t0).await);
    assert!(
        b.sessions.lookup(&k3).await.expect("up").is_some(),
        "other SessionIndex kept"
    );

    // Deprovisioning by user name (any case) on B ends it on A.
    assert_eq!(b.sessions.sessions_of_user("DAVE").await.len(), 1);
    let t0 = Instant::now();
    assert_eq!(b.sessions.remove_by_user("Dave").await, 1);
    delays.push(time_until_gone(&a, &k3, t0).await);
    assert!(a.sessions.sessions_of_user("dave").await.is_empty());
    assert_eq!(a.sessions.remove_by_user("dave").await, 0, "once");

    let worst = delays.iter().max().copied().unwrap_or_default();
    eprintln!("revocation delays across replicas: {delays:?} (worst {worst:?})");
    assert!(
        worst < Duration::from_secs(1),
        "worst revocation delay {worst:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_in_redis_with_their_idle_timeout() {
    let redis = RedisServer::start();
    let a = replica_with(
        &redis,
        &SECRET,
        Duration::from_secs(30),
        Duration::from_millis(1500),
    )
    .await;
    let b = replica_with(
        &redis,
        &SECRET,
        Duration::from_secs(30),
        Duration::from_millis(1500),
    )
    .await;
    let k = SessionKey::from_id(&[6; 32]);
    a.sessions
        .try_insert(k, session("erin", "n-erin", None))
        .await
        .expect("insert");
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let pttl: i64 = conn.pttl(format!("t:s:{}", hex(&k.0))).await.expect("pttl");
    assert!(
        (1..=1500).contains(&pttl),
        "idle timeout is the Redis TTL: {pttl}"
    );
    // Used on A every 300 ms for 3 s: A's touches keep it alive in Redis for everyone.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(a.sessions.lookup(&k).await.expect("up").is_some());
    }
    assert!(
        b.sessions.lookup(&k).await.expect("up").is_some(),
        "alive in Redis"
    );
    // Unused for longer than the idle timeout: gone everywhere.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(matches!(b.sessions.lookup(&k).await, Ok(None)));
    assert!(matches!(a.sessions.lookup(&k).await, Ok(None)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_an_error_cached_sessions_last_the_grace_and_a_restart_recovers() {
    let mut redis = RedisServer::start();
    let grace = Duration::from_secs(2);
    let a = replica_with(&redis, &SECRET, grace, Duration::from_secs(600)).await;
    let k = SessionKey::from_id(&[7; 32]);
    a.sessions
        .try_insert(k, session("frank", "n-frank", None))
        .await
        .expect("insert");
    let uncached = SessionKey::from_id(&[8; 32]);
    a.flows
        .put_pending("relay-before", &pending([1; 32]))
        .await
        .expect("put");
    let issued_before = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    redis.stop();
    let down_at = Instant::now();
    // Nothing that needs Redis says yes.
    macro_rules! unavailable {
        ($r:expr) => {
            matches!($r, Err(StateError::Unavailable(_)))
        };
    }
    let claim = a.flows.claim_pending("relay-before", &[[1; 32]]).await;
    assert!(unavailable!(&claim), "{claim:?}");
    let first = a
        .flows
        .first_use(ReplayKind::Assertion, "_x", Duration::from_secs(60), None)
        .await;
    assert!(unavailable!(&first), "{first:?}");
    let miss = a.sessions.lookup(&uncached).await;
    assert!(unavailable!(&miss), "{miss:?}");
    let insert = a
        .sessions
        .try_insert(uncached, session("gina", "n-gina", None))
        .await;
    assert!(unavailable!(&insert), "{insert:?}");
    assert!(matches!(a.flows.readiness(), Readiness::Down(_)));
    // The cached session keeps working within the grace, then stops.
    assert!(a.sessions.lookup(&k).await.expect("within grace").is_some());
    while down_at.elapsed() < grace + Duration::from_millis(300) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(matches!(
        a.sessions.lookup(&k).await,
        Err(StateError::GraceExpired)
    ));
    // Ending a session cannot be confirmed either: the sign-out says so instead of "done".
    let removal = a.sessions.try_remove(&uncached).await;
    assert!(unavailable!(&removal), "{removal:?}");
    assert!(a.redis.as_ref().expect("redis").errors.get() >= 5);

    // Redis comes back empty (no persistence): the gateway recovers by itself.
    redis.restart();
    wait_ready(&a).await;
    assert!(
        matches!(a.sessions.lookup(&k).await, Ok(None)),
        "sessions are lost, not resurrected"
    );
    // An IdP-initiated response issued before the restart cannot be known unused: refused.
    assert_eq!(
        a.flows
            .first_use(
                ReplayKind::Assertion,
                "_old",
                Duration::from_secs(60),
                Some(issued_before)
            )
            .await,
        Ok(FirstUse::BeforeMemory)
    );
    // New sign-ins work again.
    a.flows
        .put_pending("relay-after", &pending([1; 32]))
        .await
        .expect("put");
    assert!(matches!(
        a.flows.claim_pending("relay-after", &[[1; 32]]).await,
        Ok(Ok(_))
    ));
    a.sessions
        .try_insert(k, session("frank", "n-frank", None))
        .await
        .expect("insert");
    assert!(a.sessions.lookup(&k).await.expect("up").is_some());
}

#[tokio::test]
async fn a_pending_sign_in_restored_into_another_redis_run_is_refused() {
    let mut redis = RedisServer::start();
    let a = replica(&redis).await;
    a.flows
        .put_pending("relay-snap", &pending([1; 32]))
        .await
        .expect("put");
    // What a snapshot restore would do: the same bytes back under the same key, in a Redis
    // that restarted (persistence on, the response already used after the snapshot).
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let keys: Vec<String> = conn.keys("t:p:*").await.expect("keys");
    let saved: Vec<u8> = conn.get(&keys[0]).await.expect("get");
    drop(conn);
    redis.restart();
    wait_ready(&a).await;
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let _: () = conn.set(&keys[0], &saved).await.expect("set");
    assert_eq!(
        a.flows.claim_pending("relay-snap", &[[1; 32]]).await,
        Ok(Err(ClaimError::Unknown))
    );
    let left: i64 = conn.exists(&keys[0]).await.expect("exists");
    assert_eq!(left, 0, "the stale pending sign-in is deleted");
}
