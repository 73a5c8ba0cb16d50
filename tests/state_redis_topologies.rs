//! The Redis state backend against Redis Sentinel and Redis Cluster, all real processes
//! (tests/support/redis.rs). Two backends on one deployment stand for two replicas.
//!
//! What it proves. Sentinel (a master, a replica, three Sentinels): sessions, pending
//! sign-ins and the replay cache work through the master the Sentinels name; after
//! `SENTINEL FAILOVER` the same backends, without a restart, write to the new master within
//! a bounded wait, a revocation on one still reaches the other's cache over pub/sub, racing
//! claims of a pending sign-in still have exactly one winner, an IdP-initiated response whose
//! use the failover lost is still refused (the replay memory restarts at the failover), and a
//! pending sign-in stored before the failover is refused (the new master is another Redis run: it may have missed the
//! claim that spent it). A write refused by a demoted master is recognised as `READONLY`, the
//! answer that makes the backend ask the Sentinels again. Cluster (three masters): the same
//! single-use guarantees, revocation between replicas, removal by user and subject, every key
//! samlgate writes in one hash slot, and the invalidation subscription moving to another
//! node when its node dies.

#[path = "support/redis.rs"]
mod redis_server;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::HeaderValue;
use redis_server::{query, wait_until, RedisCluster, RedisServer, SentinelGroup, SENTINEL_MASTER};
use samlgate::scim::redis_store::RedisBackend;
use samlgate::scim::resources::Kind;
use samlgate::scim::store::{Backend, Changes, Write};
use samlgate::session::pending::{browser_hash, ClaimError, PendingLogin};
use samlgate::session::{Identity, IdentityHeaderValues, Session, SessionKey};
use samlgate::state::{
    FirstUse, Limits, Readiness, RedisSettings, ReplayKind, SentinelSettings, State, StateSettings,
    Topology,
};

const SECRET: [u8; 32] = [42; 32];
/// Longest wait for the deployment to settle after a failover or a node loss.
const SETTLE: Duration = Duration::from_secs(30);

fn limits() -> Limits {
    Limits {
        max_sessions: 10_000,
        idle_timeout: Duration::from_secs(600),
        login_timeout: Duration::from_secs(60),
        clock_skew: Duration::from_secs(2),
    }
}

fn settings(topology: Topology, prefix: &str) -> StateSettings {
    StateSettings::Redis(RedisSettings {
        topology,
        key_prefix: prefix.into(),
        command_timeout: Duration::from_millis(1000),
        ..RedisSettings::single("redis://unused:1")
    })
}

fn sentinel_topology(group: &SentinelGroup) -> Topology {
    Topology::Sentinel(Box::new(SentinelSettings {
        sentinels: group.sentinel_urls(),
        master: SENTINEL_MASTER.into(),
        database: 0,
        username: None,
        password: None,
    }))
}

async fn replica(settings: &StateSettings) -> State {
    let state = State::new(settings, &SECRET, limits()).expect("backend");
    let deadline = Instant::now() + SETTLE;
    while state.flows.readiness() != Readiness::Ready || !subscribed(&state) {
        assert!(Instant::now() < deadline, "backend never became ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    state
}

fn subscribed(state: &State) -> bool {
    state.redis.as_ref().is_some_and(|r| r.is_subscribed())
}

fn invalidations(state: &State) -> u64 {
    state.redis.as_ref().map_or(0, |r| r.invalidations.get())
}

fn session(user: &str, name_id: &str, session_index: Option<&str>) -> Arc<Session> {
    let now = SystemTime::now();
    Arc::new(Session {
        identity: Identity {
            user: user.into(),
            name_id: name_id.into(),
            session_index: session_index.map(str::to_string),
            ..Identity::default()
        },
        headers: IdentityHeaderValues {
            user: HeaderValue::from_str(user).expect("header"),
            email: None,
            groups: None,
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
        request_id: "_req-1".into(),
        return_path: "/after".into(),
        browser: browser_hash(&browser),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha_hex(s: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, s.as_bytes()).as_ref())
}

/// Sixteen claims of one pending sign-in, spread over both replicas: exactly one wins.
async fn claims_race(a: &State, b: &State, relay: &'static str) {
    let mut tasks = Vec::new();
    for i in 0..16 {
        let flows = if i % 2 == 0 {
            a.flows.clone()
        } else {
            b.flows.clone()
        };
        tasks.push(tokio::spawn(async move {
            flows.claim_pending(relay, &[[9; 32], [1; 32]]).await
        }));
    }
    let (mut won, mut unknown) = (0, 0);
    for t in tasks {
        match t.await.expect("task") {
            Ok(Ok(p)) => {
                assert_eq!(p.request_id, "_req-1");
                won += 1;
            }
            Ok(Err(ClaimError::Unknown)) => unknown += 1,
            other => panic!("unexpected claim result {other:?}"),
        }
    }
    assert_eq!((won, unknown), (1, 15), "exactly one claim wins");
}

/// Polls (bounded) until `replica` no longer serves `key` (revocations travel by pub/sub).
async fn gone_from(replica: &State, key: &SessionKey) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while replica.sessions.lookup(key).await.expect("up").is_some() {
        assert!(
            Instant::now() < deadline,
            "the session outlived its revocation"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A session written on `a`, cached on `b`, deleted in Redis behind `b`'s back (so only a
/// message can drop it from `b`'s cache), then revoked on `a`: `b` must stop serving it and
/// count the message. Returns false when `b`'s cache was emptied by other means meanwhile
/// (a re-subscription after a failover), so the caller tries again.
async fn revocation_reaches(
    a: &State,
    b: &State,
    key: SessionKey,
    delete_behind: impl Fn(&str),
) -> bool {
    a.sessions
        .try_insert(key, session("rita", "n-rita", None))
        .await
        .expect("insert");
    assert!(b.sessions.lookup(&key).await.expect("up").is_some());
    delete_behind(&hex(&key.0));
    if b.sessions.lookup(&key).await.expect("up").is_none() {
        return false;
    }
    let before = invalidations(b);
    a.sessions.try_remove(&key).await.expect("revoke");
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.sessions.lookup(&key).await.expect("up").is_some() {
        assert!(Instant::now() < deadline, "the revocation never reached b");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    invalidations(b) > before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sentinel_failover_keeps_sessions_single_use_and_invalidation() {
    let group = SentinelGroup::start();
    let s = settings(sentinel_topology(&group), "t:");
    let a = replica(&s).await;
    let b = replica(&s).await;

    // Before: everything goes through the master the Sentinels name.
    let k1 = SessionKey::from_id(&[1; 32]);
    a.sessions
        .try_insert(k1, session("alice", "n-alice", Some("_s1")))
        .await
        .expect("insert");
    assert!(b.sessions.lookup(&k1).await.expect("up").is_some());
    let on_master: i64 = query(&group.master, &["EXISTS", &format!("t:s:{}", hex(&k1.0))]);
    assert_eq!(on_master, 1, "written on the master");
    a.flows
        .put_pending("before", &pending([1; 32]))
        .await
        .expect("put");
    a.flows
        .put_pending("race-1", &pending([1; 32]))
        .await
        .expect("put");
    claims_race(&a, &b, "race-1").await;
    let ttl = Duration::from_secs(60);
    assert_eq!(
        a.flows
            .first_use(ReplayKind::Assertion, "_a1", ttl, None)
            .await,
        Ok(FirstUse::Fresh)
    );
    assert_eq!(
        b.flows
            .first_use(ReplayKind::Assertion, "_a1", ttl, None)
            .await,
        Ok(FirstUse::Replay)
    );
    // An IdP-initiated response, used once before the failover.
    let idp_issued = SystemTime::now();
    assert_eq!(
        a.flows
            .first_use(ReplayKind::Assertion, "_idp1", ttl, Some(idp_issued))
            .await,
        Ok(FirstUse::Fresh)
    );
    // Let the replica catch up before the failover (what `WAIT` would do for a client).
    let _: i64 = query(&group.master, &["WAIT", "1", "5000"]);

    group.failover();
    let old_master_role = redis_server::info(&group.master, "replication");
    assert!(old_master_role.contains("role:slave"), "{old_master_role}");

    // The same backends write to the new master within a bounded wait, no restart.
    let k2 = SessionKey::from_id(&[2; 32]);
    let started = Instant::now();
    let deadline = started + SETTLE;
    while a
        .sessions
        .try_insert(k2, session("bob", "n-bob", None))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "no write after the failover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "sentinel: first write accepted {:?} after the failover completed",
        started.elapsed()
    );
    let on_new: i64 = query(&group.replica, &["EXISTS", &format!("t:s:{}", hex(&k2.0))]);
    assert_eq!(on_new, 1, "written on the new master");
    // A session from before the failover was replicated and is still served.
    let fresh = replica(&s).await;
    assert!(fresh.sessions.lookup(&k1).await.expect("up").is_some());
    // The replay cache came along: still a replay.
    assert_eq!(
        b.flows
            .first_use(ReplayKind::Assertion, "_a1", ttl, None)
            .await,
        Ok(FirstUse::Replay)
    );

    // The failover lost that use (asynchronous replication can: simulated by deleting the
    // entry on the new master). The replayed response is still refused: the new master's
    // replay memory begins at the failover, not at its (earlier) process start.
    let deleted: i64 = query(
        &group.replica,
        &["DEL", &format!("t:ra:{}", sha_hex("_idp1"))],
    );
    assert_eq!(deleted, 1, "the entry had been replicated");
    assert_eq!(
        b.flows
            .first_use(ReplayKind::Assertion, "_idp1", ttl, Some(idp_issued))
            .await,
        Ok(FirstUse::BeforeMemory)
    );
    // A response issued after the failover (beyond the clock skew) is accepted, once.
    let later = SystemTime::now() + Duration::from_secs(3);
    assert_eq!(
        a.flows
            .first_use(ReplayKind::Assertion, "_idp2", ttl, Some(later))
            .await,
        Ok(FirstUse::Fresh)
    );
    assert_eq!(
        b.flows
            .first_use(ReplayKind::Assertion, "_idp2", ttl, Some(later))
            .await,
        Ok(FirstUse::Replay)
    );

    // A pending sign-in from before is refused (another Redis run), never claimed.
    assert_eq!(
        b.flows.claim_pending("before", &[[1; 32]]).await,
        Ok(Err(ClaimError::Unknown))
    );
    // New ones are claimed exactly once, however many replicas race.
    a.flows
        .put_pending("race-2", &pending([1; 32]))
        .await
        .expect("put");
    claims_race(&a, &b, "race-2").await;

    // Invalidation reaches b through its subscription on the new master.
    let new_master = &group.replica;
    let deadline = Instant::now() + SETTLE;
    let mut n = 10u8;
    while !revocation_reaches(&a, &b, SessionKey::from_id(&[n; 32]), |h| {
        let _: i64 = query(new_master, &["DEL", &format!("t:s:{h}")]);
    })
    .await
    {
        assert!(Instant::now() < deadline, "no invalidation after failover");
        n += 1;
    }
    assert!(subscribed(&b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_master_means_errors_until_the_sentinels_promote_the_replica() {
    let mut group = SentinelGroup::start();
    let s = settings(sentinel_topology(&group), "t:");
    let a = replica(&s).await;
    a.flows
        .put_pending("before", &pending([1; 32]))
        .await
        .expect("put");
    let _: i64 = query(&group.master, &["WAIT", "1", "5000"]);
    let old_port = group.master.port();
    group.master.stop();
    let killed = Instant::now();

    // While the Sentinels still name the dead master, no write succeeds anywhere: the
    // replica refuses (READONLY) and the dead master cannot answer. Then writes resume on
    // the promoted replica without restarting the backend.
    let deadline = Instant::now() + SETTLE;
    let (mut refused, mut i) = (0, 0u8);
    let (written, accepted) = loop {
        i = i.wrapping_add(1);
        let key = SessionKey::from_id(&[i; 32]);
        let result = a
            .sessions
            .try_insert(key, session("erin", "n-erin", None))
            .await;
        // Asked after the write: if every Sentinel still names the dead master now, they
        // did during the write too.
        let all_name_dead = group.master_ports().iter().all(|p| *p == old_port);
        match result {
            Ok(()) => {
                assert!(
                    !all_name_dead,
                    "a write while only the dead master was named"
                );
                break (key, killed.elapsed());
            }
            Err(_) if all_name_dead => refused += 1,
            Err(_) => {}
        }
        assert!(Instant::now() < deadline, "no write after the master died");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(refused > 0, "the gap before the promotion was observed");
    wait_until(SETTLE, "every sentinel to name the replica", || {
        group
            .master_ports()
            .iter()
            .all(|p| *p == group.replica.port())
    });
    let on_new: i64 = query(
        &group.replica,
        &["EXISTS", &format!("t:s:{}", hex(&written.0))],
    );
    assert_eq!(on_new, 1, "written on the promoted replica");
    assert_eq!(
        a.flows.claim_pending("before", &[[1; 32]]).await,
        Ok(Err(ClaimError::Unknown)),
        "a pending sign-in from the dead master's run is refused"
    );
    eprintln!(
        "sentinel: {refused} writes refused while the dead master was still named; \
         first write accepted {accepted:?} after the kill"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_a_demoted_master_is_recognised_as_readonly() {
    let group = SentinelGroup::start();
    let mut conn = group
        .replica
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let set = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async::<()>(&mut conn)
        .await
        .expect_err("a replica refuses writes");
    assert!(samlgate::state::connection::is_readonly(&set), "{set:?}");
    // A script that writes fails the same way (the backend's writes are scripts).
    let script = redis::Script::new("redis.call('SET', KEYS[1], '1') return 1");
    let scripted = script
        .key("k")
        .invoke_async::<i64>(&mut conn)
        .await
        .expect_err("a replica refuses a writing script");
    assert!(
        samlgate::state::connection::is_readonly(&scripted),
        "{scripted:?}"
    );
    // A read is not refused, and a plain server error is not taken for a demotion.
    let wrong = redis::cmd("GET")
        .arg("one")
        .arg("too many")
        .query_async::<()>(&mut conn)
        .await
        .expect_err("wrong arity");
    assert!(
        !samlgate::state::connection::is_readonly(&wrong),
        "{wrong:?}"
    );
}

/// The node answering for `key`'s slot (the others answer MOVED).
fn owner<'c>(cluster: &'c RedisCluster, key: &str) -> &'c RedisServer {
    cluster
        .nodes
        .iter()
        .find(|n| {
            let mut c = n.client().get_connection().expect("conn");
            redis::cmd("EXISTS").arg(key).query::<i64>(&mut c).is_ok()
        })
        .expect("one node owns the slot")
}

fn home_of(cluster: &RedisCluster, port: u16) -> &RedisServer {
    cluster
        .nodes
        .iter()
        .find(|x| x.port() == port)
        .expect("home node")
}

/// A key prefix whose slot is not on the first node (which the test takes down later).
fn prefix_off_first_node(cluster: &RedisCluster) -> String {
    (0..100)
        .map(|i| format!("t{i}:"))
        .find(|p| owner(cluster, &format!("{{{p}}}x")).port() != cluster.nodes[0].port())
        .expect("a prefix on another node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_keeps_every_guarantee_with_all_keys_in_one_slot() {
    let mut cluster = RedisCluster::start();
    let prefix = prefix_off_first_node(&cluster);
    let s = settings(
        Topology::Cluster {
            nodes: cluster.urls(),
        },
        &prefix,
    );
    let a = replica(&s).await;
    let b = replica(&s).await;
    let home_port = owner(&cluster, &format!("{{{prefix}}}x")).port();
    let home = home_of(&cluster, home_port);

    // Sessions and the indexes.
    let k1 = SessionKey::from_id(&[1; 32]);
    let k2 = SessionKey::from_id(&[2; 32]);
    a.sessions
        .try_insert(k1, session("carol", "n-carol", Some("_s1")))
        .await
        .expect("insert");
    a.sessions
        .try_insert(k2, session("carol", "n-carol", Some("_s2")))
        .await
        .expect("insert");
    assert!(b.sessions.lookup(&k1).await.expect("up").is_some());
    assert_eq!(b.sessions.sessions_of_user("CAROL").await.len(), 2);

    // Pending sign-ins: another browser cannot spend it; racing claims, one winner.
    a.flows
        .put_pending("relay-1", &pending([1; 32]))
        .await
        .expect("put");
    assert_eq!(
        b.flows.claim_pending("relay-1", &[[2; 32]]).await,
        Ok(Err(ClaimError::WrongBrowser))
    );
    claims_race(&a, &b, "relay-1").await;
    a.flows
        .put_pending("left-over", &pending([1; 32]))
        .await
        .expect("put");

    // Replay caches: first use once, on any replica; the two kinds apart.
    let ttl = Duration::from_secs(60);
    let f = |st: &State, kind| {
        let flows = st.flows.clone();
        async move { flows.first_use(kind, "_m1", ttl, None).await }
    };
    assert_eq!(f(&a, ReplayKind::Assertion).await, Ok(FirstUse::Fresh));
    assert_eq!(f(&b, ReplayKind::Assertion).await, Ok(FirstUse::Replay));
    assert_eq!(f(&b, ReplayKind::Logout).await, Ok(FirstUse::Fresh));
    assert_eq!(
        a.flows
            .first_use(
                ReplayKind::Assertion,
                "_old",
                ttl,
                Some(SystemTime::UNIX_EPOCH)
            )
            .await,
        Ok(FirstUse::BeforeMemory)
    );
    a.flows
        .put_logout_request("_lr1", ttl)
        .await
        .expect("put logout");
    assert_eq!(b.flows.take_logout_request("_lr1").await, Ok(true));
    assert_eq!(a.flows.take_logout_request("_lr1").await, Ok(false));

    // SCIM data written through one replica is read by the other (the write script publishes
    // on the gateway's channel and touches five keys: all must be in the one slot).
    let scim_a = RedisBackend::new(a.redis.clone().expect("redis"));
    let scim_b = RedisBackend::new(b.redis.clone().expect("redis"));
    let batch = [
        Write::Put(
            Kind::User,
            "u-1".into(),
            br#"{"userName":"carol"}"#.to_vec(),
        ),
        Write::Deleted("mallory".into(), true),
    ];
    assert_eq!(scim_a.write(&batch, 0).await.expect("scim write"), 1);
    match scim_b.changes(0, true).await.expect("scim read") {
        Changes::Reload(snapshot) => {
            assert_eq!(snapshot.version, 1);
            assert_eq!(snapshot.users.len(), 1);
            assert_eq!(snapshot.deleted, vec!["mallory".to_string()]);
        }
        _ => panic!("a full read gives the snapshot"),
    }

    // Every key samlgate wrote is in the one slot of its hash tag, on one node.
    let tag_slot: i64 = query(home, &["CLUSTER", "KEYSLOT", &format!("{{{prefix}}}")]);
    let mut kinds = BTreeSet::new();
    let mut total = 0;
    for node in &cluster.nodes {
        let keys: Vec<String> = query(node, &["KEYS", "*"]);
        if node.port() != home.port() {
            assert!(keys.is_empty(), "keys on a second node: {keys:?}");
        }
        for k in keys {
            let slot: i64 = query(node, &["CLUSTER", "KEYSLOT", &k]);
            assert_eq!(slot, tag_slot, "{k} outside the tag's slot");
            let rest = k
                .strip_prefix(&format!("{{{prefix}}}"))
                .unwrap_or_else(|| panic!("{k} without the hash tag"));
            kinds.insert(rest.split(':').next().unwrap_or("").to_string());
            total += 1;
        }
    }
    eprintln!("cluster: {total} keys, all in slot {tag_slot}: kinds {kinds:?}");
    let want: BTreeSet<String> = ["s", "n", "u", "p", "ra", "rl", "m", "scim"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(kinds, want, "every kind of key was checked");

    // Revocation between replicas over pub/sub; removal by subject and by user.
    assert!(
        revocation_reaches(&a, &b, SessionKey::from_id(&[7; 32]), |h| {
            let _: i64 = query(home, &["DEL", &format!("{{{prefix}}}s:{h}")]);
        })
        .await
    );
    assert_eq!(
        b.sessions.remove_by_subject("n-carol", Some("_s1")).await,
        1
    );
    gone_from(&a, &k1).await;
    assert!(
        a.sessions.lookup(&k2).await.expect("up").is_some(),
        "other SessionIndex kept"
    );
    assert_eq!(b.sessions.remove_by_user("Carol").await, 1);
    gone_from(&a, &k2).await;
    assert_eq!(a.sessions.remove_by_user("carol").await, 0, "once");

    // The node b subscribed to first (the first in the list) dies: b subscribes to another
    // and revocations reach it again; commands are unaffected (the slot lives elsewhere).
    cluster.nodes[0].stop();
    let home = home_of(&cluster, home_port);
    let deadline = Instant::now() + SETTLE;
    let mut n = 20u8;
    while !revocation_reaches(&a, &b, SessionKey::from_id(&[n; 32]), |h| {
        let _: i64 = query(home, &["DEL", &format!("{{{prefix}}}s:{h}")]);
    })
    .await
    {
        assert!(
            Instant::now() < deadline,
            "no invalidation after a node loss"
        );
        n += 1;
    }
    wait_until(SETTLE, "b subscribed again", || subscribed(&b));
}

/// The node of `cluster` (other than `skip`) that serves `key`'s slot as master.
fn master_of(cluster: &RedisCluster, key: &str, skip: usize) -> usize {
    cluster
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != skip)
        .find(|(_, n)| {
            let Ok(mut c) = n.client().get_connection() else {
                return false;
            };
            redis::cmd("EXISTS").arg(key).query::<i64>(&mut c).is_ok()
        })
        .map(|(i, _)| i)
        .expect("a master for the slot")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_failover_promotes_the_replica_and_keeps_every_guarantee() {
    let mut cluster = RedisCluster::start_with(1);
    let prefix = "t:";
    let slot_key = format!("{{{prefix}}}x");
    let s = settings(
        Topology::Cluster {
            nodes: cluster.urls(),
        },
        prefix,
    );
    let a = replica(&s).await;
    let b = replica(&s).await;
    let home = master_of(&cluster, &slot_key, usize::MAX);

    // Before: a session, a pending sign-in, a used assertion and an IdP-initiated response.
    let k1 = SessionKey::from_id(&[1; 32]);
    a.sessions
        .try_insert(k1, session("alice", "n-alice", Some("_s1")))
        .await
        .expect("insert");
    a.flows
        .put_pending("before", &pending([1; 32]))
        .await
        .expect("put");
    let ttl = Duration::from_secs(60);
    let used = |st: &State, id: &'static str, issued: Option<SystemTime>| {
        let flows = st.flows.clone();
        async move {
            flows
                .first_use(ReplayKind::Assertion, id, ttl, issued)
                .await
        }
    };
    assert_eq!(used(&a, "_a1", None).await, Ok(FirstUse::Fresh));
    let idp_issued = SystemTime::now();
    assert_eq!(
        used(&a, "_idp1", Some(idp_issued)).await,
        Ok(FirstUse::Fresh)
    );
    let _: i64 = query(&cluster.nodes[home], &["WAIT", "1", "5000"]);

    // The master of samlgate's slot dies; the cluster promotes its replica.
    cluster.nodes[home].stop();
    let k2 = SessionKey::from_id(&[2; 32]);
    let started = Instant::now();
    while a
        .sessions
        .try_insert(k2, session("bob", "n-bob", None))
        .await
        .is_err()
    {
        assert!(started.elapsed() < SETTLE, "no write after the failover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "cluster: first write accepted {:?} after the master was killed",
        started.elapsed()
    );
    let promoted = master_of(&cluster, &slot_key, home);
    assert!(promoted >= 3, "a replica was promoted (node {promoted})");

    // What was replicated is still there, and still single use.
    let fresh = replica(&s).await;
    assert!(fresh.sessions.lookup(&k1).await.expect("up").is_some());
    assert_eq!(used(&b, "_a1", None).await, Ok(FirstUse::Replay));
    // A use the failover lost (simulated: deleted on the new master) is still refused for a
    // response issued before the failover: the replay memory begins at the promotion.
    let deleted: i64 = query(
        &cluster.nodes[promoted],
        &["DEL", &format!("{{{prefix}}}ra:{}", sha_hex("_idp1"))],
    );
    assert_eq!(deleted, 1, "the entry had been replicated");
    assert_eq!(
        used(&b, "_idp1", Some(idp_issued)).await,
        Ok(FirstUse::BeforeMemory)
    );
    // A pending sign-in from before names another Redis run: refused, never claimed.
    assert_eq!(
        b.flows.claim_pending("before", &[[1; 32]]).await,
        Ok(Err(ClaimError::Unknown))
    );
    a.flows
        .put_pending("race-1", &pending([1; 32]))
        .await
        .expect("put");
    claims_race(&a, &b, "race-1").await;

    // Revocations still reach b (its subscription moves if its node was the one lost).
    let new_master = &cluster.nodes[promoted];
    let deadline = Instant::now() + SETTLE;
    let mut n = 10u8;
    while !revocation_reaches(&a, &b, SessionKey::from_id(&[n; 32]), |h| {
        let _: i64 = query(new_master, &["DEL", &format!("{{{prefix}}}s:{h}")]);
    })
    .await
    {
        assert!(Instant::now() < deadline, "no invalidation after failover");
        n += 1;
    }
}
