//! The shared backend (`state.backend = "redis"`): Redis ≥ 6 or Valkey — one endpoint, a
//! Sentinel-monitored master or a Cluster — through one reconnecting connection for commands
//! ([`super::connection`]) and one pub/sub connection per replica for cache invalidation.
//!
//! Key layout under `state.key_prefix` (default `samlgate:`; in Cluster mode wrapped as the
//! hash tag `{samlgate:}`, so that every key is in one slot and the scripts, MGET and
//! pipelines below never span two), every part a digest:
//!
//! | key | value | TTL |
//! |---|---|---|
//! | `s:<SHA-256 of session id>` | sealed session ([`super::seal`]) | min(idle, absolute end), renewed by use |
//! | `n:<HMAC of NameID>` / `u:<HMAC of user>` | set of session keys (Single Logout, admin) | the longest session's absolute end |
//! | `p:<SHA-256 of RelayState>` | browser hash ‖ Redis run id ‖ sealed request id and return path | `saml.login_timeout_secs` |
//! | `ra:` / `rl:<SHA-256 of message id>` | `1` (assertion / logout replay cache) | NotOnOrAfter + skew |
//! | `l:<SHA-256 of our LogoutRequest id>` | `1` | ten minutes |
//! | `m:replid` | the master's replication id and when it was first seen (failover detection for the replay cache) | none |
//!
//! and the channel `<prefix>revoke` (Cluster: `{<prefix>}revoke`), on which every revocation
//! publishes the session keys it ended; each replica drops them from its local cache
//! ([`super::redis_sessions`]). Messages starting `scim:` on the same channel belong to the
//! SCIM store ([`crate::scim::redis_store`]): they go to its [`ChannelListener`], which is also
//! told about every (re)subscription, since messages may have been missed meanwhile.
//!
//! A Redis restart without persistence loses sessions (people sign in again) but never
//! admits a replay: a pending sign-in carries the run id of the Redis that stored it and is
//! refused by any other (so a response whose pending sign-in survived in a restored snapshot
//! finds nothing to complete), and an IdP-initiated response, which no pending sign-in vouches
//! for, is refused when it was issued before the Redis server started (plus clock skew), or
//! before a failover made it master (`m:replid`), because whether it was already used is no
//! longer known. A failover also changes the run id, so pending sign-ins from before it are
//! refused like those from before a restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use redis::{AsyncCommands, RedisError, Script};

use super::connection::{Connector, RedisConn};
use super::redis_sessions::{LocalCache, RedisSessions};
use super::seal::{hex, Keys, StoredPending};
use super::{
    FirstUse, FlowStore, Limits, Readiness, RedisMode, RedisSettings, ReplayKind, State, StateError,
};
use crate::session::pending::{browser_hash, ClaimError, PendingLogin};

/// Upper bounds (seconds) of the backend latency histogram: 50 µs to 2.5 s.
const LATENCY_BUCKETS: [f64; 12] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0, 2.5,
];
/// Longest wait between two attempts to re-subscribe to the invalidation channel (and, for
/// one endpoint, between two reconnection attempts).
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often the watcher checks that commands get through while subscribed.
const PING_INTERVAL: Duration = Duration::from_millis(500);
/// Longest a message id is kept even if the IdP asserts a far-future NotOnOrAfter.
const MAX_REPLAY_TTL: Duration = Duration::from_secs(24 * 3600);

/// Stores a pending sign-in with the run id of this Redis server in front of it.
const PUT_PENDING: &str = r"
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
redis.call('SET', KEYS[1], ARGV[1] .. run .. ARGV[2], 'PX', ARGV[3])
return 1
";

/// Claims a pending sign-in: `U` unknown, `W` wrong browser (kept), `E` stored by another
/// Redis run (deleted), `O` ‖ browser hash ‖ sealed payload (deleted: single use).
const CLAIM_PENDING: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then return 'U' end
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
local browser = string.sub(v, 1, 64)
if string.sub(v, 65, 64 + #run) ~= run then
  redis.call('DEL', KEYS[1])
  return 'E'
end
for i = 1, #ARGV do
  if ARGV[i] == browser then
    redis.call('DEL', KEYS[1])
    return 'O' .. browser .. string.sub(v, 65 + #run)
  end
end
return 'W'
";

/// Set-if-absent with TTL; with an issue time (ms), first refuses a message issued before
/// the replay cache's memory began plus the clock skew: 1 fresh, 0 replay, 2 before memory.
///
/// The memory begins when this Redis server started — or, when it became master by a
/// failover, when that was first seen: a promoted replica may lack the last replay-cache
/// entries of the old master (asynchronous replication). KEYS[2] holds the replication id
/// (`master_replid`, new at each promotion and restart) and when it was first seen; a key
/// from another replication id (copied from the old master) marks a failover. An absent key
/// (a fresh server) leaves the server's start as the beginning.
const FIRST_USE: &str = r"
if ARGV[2] ~= '' then
  local up = tonumber(string.match(redis.call('INFO', 'server'), 'uptime_in_seconds:(%d+)'))
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local started = tonumber(t[1]) * 1000 - up * 1000
  local replid = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')
  local seen = redis.call('GET', KEYS[2])
  local since = started
  local record = true
  if seen then
    local id, ms = string.match(seen, '^(%x+) (%d+)$')
    if id == replid then
      since = tonumber(ms)
      record = false
    else
      since = now
    end
  end
  if record then redis.call('SET', KEYS[2], replid .. ' ' .. since) end
  if since > started then started = since end
  if tonumber(ARGV[2]) < started + tonumber(ARGV[3]) then return 2 end
end
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 1 end
return 0
";

/// What the backend's parts share: the connection, keys, health, counters.
pub struct Shared {
    /// The connection for commands, made at the first one, and the subscription's source.
    connector: Connector,
    pub(crate) keys: Keys,
    /// What every key starts with: `state.key_prefix`, or in Cluster mode the hash tag
    /// `{<key_prefix>}` ([`key_base`]).
    pub(crate) prefix: String,
    pub(crate) channel: String,
    grace: Duration,
    timeout: Duration,
    pub(super) limits: Limits,
    /// `None` while Redis answers and the invalidation channel is subscribed.
    down_since: Mutex<Option<Instant>>,
    subscribed: AtomicBool,
    pub(super) cache: LocalCache,
    /// Whether the invalidation watcher runs: it starts with the first use inside the runtime
    /// (`check-config` builds the gateway with no runtime and never connects).
    watcher_started: AtomicBool,
    /// Where `scim:` messages and (re)subscriptions are reported (the SCIM store, if any).
    listener: OnceLock<Weak<dyn ChannelListener>>,
    put_pending: Script,
    claim_pending: Script,
    first_use: Script,
    pub(super) insert_session: Script,
    /// Failed or timed-out commands (`samlgate_state_backend_errors_total`).
    pub errors: Counter,
    /// Command latency (`samlgate_state_backend_latency_seconds`).
    pub latency: Histogram,
    /// Invalidation messages received (`samlgate_state_invalidations_total`).
    pub invalidations: Counter,
    /// 1 while Redis answers and the invalidation channel is subscribed
    /// (`samlgate_state_backend_up`).
    pub up: Gauge,
}

/// Builds the Redis backend; the connection is made lazily (a gateway starts while Redis is
/// down and `/readyz` says so).
pub fn state(r: &RedisSettings, cookie_secret: &[u8], limits: Limits) -> Result<State, String> {
    let shared = Shared::new(r, cookie_secret, limits)?;
    Ok(State {
        sessions: Arc::new(RedisSessions::new(shared.clone())),
        flows: Arc::new(RedisFlows {
            shared: shared.clone(),
        }),
        redis: Some(shared),
    })
}

/// What every key starts with: in Cluster mode the prefix becomes the hash tag, so all of
/// samlgate's keys hash to one slot (one shard: high availability, not sharding).
pub fn key_base(prefix: &str, mode: RedisMode) -> String {
    match mode {
        RedisMode::Cluster => format!("{{{prefix}}}"),
        RedisMode::Single | RedisMode::Sentinel => prefix.to_string(),
    }
}

impl Shared {
    pub fn new(
        r: &RedisSettings,
        cookie_secret: &[u8],
        limits: Limits,
    ) -> Result<Arc<Shared>, String> {
        let shared = Arc::new(Shared {
            connector: Connector::new(r)?,
            keys: Keys::new(cookie_secret),
            prefix: key_base(&r.key_prefix, r.topology.mode()),
            // Under the hash tag too in Cluster mode: redis-rs routes a pipeline by the slots
            // of its keys and counts PUBLISH's channel as one, so the revocation pipeline (DEL
            // + PUBLISH) must name one slot. Classic PUBLISH still reaches every node.
            channel: format!("{}revoke", key_base(&r.key_prefix, r.topology.mode())),
            grace: r.grace,
            timeout: r.command_timeout,
            limits,
            down_since: Mutex::new(Some(Instant::now())),
            subscribed: AtomicBool::new(false),
            cache: LocalCache::new(limits.max_sessions, limits.idle_timeout),
            watcher_started: AtomicBool::new(false),
            listener: OnceLock::new(),
            put_pending: Script::new(PUT_PENDING),
            claim_pending: Script::new(CLAIM_PENDING),
            first_use: Script::new(FIRST_USE),
            insert_session: Script::new(super::redis_sessions::INSERT_SESSION),
            errors: Counter::default(),
            latency: Histogram::new(LATENCY_BUCKETS),
            invalidations: Counter::default(),
            up: Gauge::default(),
        });
        shared.start_watcher();
        Ok(shared)
    }

    /// Starts the watcher task once, as soon as a tokio runtime is at hand.
    pub fn start_watcher(self: &Arc<Self>) {
        if self.watcher_started.load(Ordering::Acquire) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self
            .watcher_started
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            handle.spawn(watch(Arc::downgrade(self), self.channel.clone()));
        }
    }

    /// Runs one command with the timeout, recording latency and failures. A command that
    /// met a dropped connection (Redis restarted, a proxy closed it) is sent once more on the
    /// manager's new connection: every command here is safe to repeat, and a repeat can only
    /// fail closed (a claim or a first use already done answers "unknown" / "replay").
    pub(crate) async fn run<T, F, Fut>(
        &self,
        op: &'static str,
        mut send: F,
    ) -> Result<T, StateError>
    where
        F: FnMut(RedisConn) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        let started = Instant::now();
        let conn = self.connector.connection();
        let mut result = tokio::time::timeout(self.timeout, send(conn.clone())).await;
        if let Ok(Err(e)) = &result {
            if e.is_connection_dropped() || e.is_io_error() {
                let left = self.timeout.saturating_sub(started.elapsed());
                result = tokio::time::timeout(left, send(conn.clone())).await;
            }
        }
        self.latency.observe(started.elapsed().as_secs_f64());
        let err = match result {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => {
                if e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout()
                {
                    self.mark_down();
                }
                format!("{op}: {e}")
            }
            Err(_) => {
                conn.timed_out();
                self.mark_down();
                format!("{op}: no answer within {} ms", self.timeout.as_millis())
            }
        };
        self.errors.inc();
        Err(StateError::Unavailable(err))
    }

    pub(super) fn key(&self, kind: &str, digest_hex: &str) -> String {
        format!("{}{kind}:{digest_hex}", self.prefix)
    }

    /// Adds the backend's series to the gateway's registry.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "samlgate_state_backend_errors",
            "Redis commands that failed or timed out",
            self.errors.clone(),
        );
        registry.register_with_unit(
            "samlgate_state_backend_latency",
            "Time of one Redis command (with its one retry after a dropped connection)",
            Unit::Seconds,
            self.latency.clone(),
        );
        registry.register(
            "samlgate_state_invalidations",
            "Session invalidation messages received from other replicas (and this one)",
            self.invalidations.clone(),
        );
        registry.register(
            "samlgate_state_backend_up",
            "1 while Redis answers and this replica listens for revocations, else 0",
            self.up.clone(),
        );
    }

    fn mark_down(&self) {
        self.up.set(0);
        let mut d = self.down_since.lock().unwrap_or_else(|p| p.into_inner());
        if d.is_none() {
            *d = Some(Instant::now());
            tracing::warn!(target: "samlgate::audit", event = "state_backend_down", "redis unreachable");
        }
    }

    fn mark_up(&self) {
        self.up.set(1);
        let mut d = self.down_since.lock().unwrap_or_else(|p| p.into_inner());
        if d.take().is_some() {
            tracing::info!(target: "samlgate::audit", event = "state_backend_up", "redis reachable again");
        }
    }

    pub fn readiness(&self) -> Readiness {
        match *self.down_since.lock().unwrap_or_else(|p| p.into_inner()) {
            None => Readiness::Ready,
            Some(since) => Readiness::Down(since.elapsed()),
        }
    }

    /// Whether a session cached on this replica may still be served: yes while Redis is up,
    /// and for `state.grace_secs` after it went down.
    pub(super) fn cache_usable(&self) -> Result<(), StateError> {
        match self.readiness() {
            Readiness::Down(for_) if for_ > self.grace => Err(StateError::GraceExpired),
            _ => Ok(()),
        }
    }

    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    /// Registers the one listener for `scim:` messages (a second registration is ignored).
    pub(crate) fn set_listener(&self, listener: Weak<dyn ChannelListener>) {
        let _ = self.listener.set(listener);
    }

    fn listener(&self) -> Option<Arc<dyn ChannelListener>> {
        self.listener.get().and_then(Weak::upgrade)
    }

    fn on_invalidation(&self, payload: &[u8]) {
        if let Some(rest) = payload.strip_prefix(SCIM_MESSAGE) {
            if let Some(l) = self.listener() {
                l.message(rest);
            }
            return;
        }
        self.invalidations.inc();
        self.cache.invalidate_message(payload);
    }
}

/// Prefix of the messages on the invalidation channel that are not session keys but SCIM
/// store changes.
pub(crate) const SCIM_MESSAGE: &[u8] = b"scim:";

/// Another part that shares the invalidation channel (the SCIM store).
pub(crate) trait ChannelListener: Send + Sync {
    /// A message that started with [`SCIM_MESSAGE`] (the rest of it).
    fn message(&self, rest: &[u8]);
    /// The channel is subscribed (again): anything published meanwhile was missed.
    fn resubscribed(&self);
}

/// Keeps this replica subscribed to the invalidation channel and watches Redis's health:
/// re-subscribes with backoff after a loss (to the master the Sentinels name now, or to the
/// next Cluster node), and empties the local cache then (revocations published meanwhile were
/// missed). Ends when the backend is dropped.
async fn watch(shared: Weak<Shared>, channel: String) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(s) = shared.upgrade() else { return };
        let subscribed = tokio::time::timeout(s.timeout, s.connector.subscribe(&channel)).await;
        match subscribed {
            Ok(Ok((epoch, pubsub))) => {
                drop(s);
                backoff = Duration::from_millis(50);
                if !follow(&shared, pubsub, epoch).await {
                    return;
                }
            }
            Ok(Err(e)) => {
                s.mark_down();
                tracing::debug!(error = %e, "redis subscribe failed");
            }
            Err(_) => s.mark_down(),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Reads invalidations until the subscription is lost, or until commands moved to another
/// Sentinel master than the one subscribed to; false when the backend is gone.
async fn follow(shared: &Weak<Shared>, pubsub: redis::aio::PubSub, epoch: u64) -> bool {
    let Some(s) = shared.upgrade() else {
        return false;
    };
    // Anything revoked while we were not listening is unknown: start from an empty cache.
    s.cache.flush();
    s.subscribed.store(true, Ordering::Release);
    if let Some(l) = s.listener() {
        l.resubscribed();
    }
    drop(s);
    let mut messages = pubsub.into_on_message();
    let mut tick = tokio::time::interval(PING_INTERVAL);
    loop {
        tokio::select! {
            msg = messages.next() => {
                let Some(s) = shared.upgrade() else { return false };
                match msg {
                    Some(m) => s.on_invalidation(m.get_payload_bytes()),
                    None => {
                        s.subscribed.store(false, Ordering::Release);
                        s.mark_down();
                        return true;
                    }
                }
            }
            _ = tick.tick() => {
                let Some(s) = shared.upgrade() else { return false };
                let ping = s
                    .run("PING", |mut c| async move {
                        redis::cmd("PING").query_async::<String>(&mut c).await
                    })
                    .await;
                if ping.is_ok() {
                    s.mark_up();
                }
                if s.connector.connection().epoch() != epoch {
                    // Commands go to another master than the one we listen to (a failover):
                    // what is published there we would not hear.
                    s.subscribed.store(false, Ordering::Release);
                    return true;
                }
            }
        }
    }
}

/// Pending sign-ins, replay caches and LogoutRequest ids in Redis.
pub struct RedisFlows {
    shared: Arc<Shared>,
}

fn sha_hex(s: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, s.as_bytes()).as_ref())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl FlowStore for RedisFlows {
    async fn put_pending(&self, relay_token: &str, login: &PendingLogin) -> Result<(), StateError> {
        self.shared.start_watcher();
        let s = &self.shared;
        let key = s.key("p", &sha_hex(relay_token));
        let payload = serde_json::to_vec(&StoredPending {
            request_id: login.request_id.clone(),
            return_path: login.return_path.clone(),
        })
        .map_err(|e| StateError::Unavailable(e.to_string()))?;
        let sealed = s.keys.seal(&key, &payload);
        let mut call = s.put_pending.key(&key);
        call.arg(hex(&login.browser))
            .arg(sealed)
            .arg(millis(s.limits.login_timeout));
        let call = &call;
        s.run("put_pending", |mut c| async move {
            call.invoke_async::<i64>(&mut c).await
        })
        .await
        .map(|_| ())
    }

    async fn claim_pending(
        &self,
        relay_token: &str,
        browser_ids: &[[u8; 32]],
    ) -> Result<Result<PendingLogin, ClaimError>, StateError> {
        self.shared.start_watcher();
        let s = &self.shared;
        let key = s.key("p", &sha_hex(relay_token));
        let mut call = s.claim_pending.key(&key);
        for id in browser_ids {
            call.arg(hex(&browser_hash(id)));
        }
        let call = &call;
        let reply: Vec<u8> = s
            .run("claim_pending", |mut c| async move {
                call.invoke_async(&mut c).await
            })
            .await?;
        Ok(decode_claim(&s.keys, &key, &reply))
    }

    async fn first_use(
        &self,
        kind: ReplayKind,
        id: &str,
        ttl: Duration,
        issued: Option<SystemTime>,
    ) -> Result<FirstUse, StateError> {
        self.shared.start_watcher();
        let s = &self.shared;
        let space = match kind {
            ReplayKind::Assertion => "ra",
            ReplayKind::Logout => "rl",
        };
        let key = s.key(space, &sha_hex(id));
        let ttl = ttl.clamp(Duration::from_secs(1), MAX_REPLAY_TTL);
        let issued = issued.map_or(String::new(), |t| {
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
                .to_string()
        });
        let mut call = s.first_use.key(&key);
        call.key(s.key("m", "replid"))
            .arg(millis(ttl))
            .arg(issued)
            .arg(millis(s.limits.clock_skew));
        let call = &call;
        let code: i64 = s
            .run("first_use", |mut c| async move {
                call.invoke_async(&mut c).await
            })
            .await?;
        Ok(match code {
            1 => FirstUse::Fresh,
            2 => FirstUse::BeforeMemory,
            _ => FirstUse::Replay,
        })
    }

    async fn put_logout_request(&self, id: &str, ttl: Duration) -> Result<(), StateError> {
        let s = &self.shared;
        let key = s.key("l", &sha_hex(id));
        let key = &key;
        s.run("put_logout_request", |mut c| async move {
            c.set_options::<_, _, ()>(
                key,
                1,
                redis::SetOptions::default()
                    .with_expiration(redis::SetExpiry::PX(millis(ttl) as _)),
            )
            .await
        })
        .await
    }

    async fn take_logout_request(&self, id: &str) -> Result<bool, StateError> {
        let s = &self.shared;
        let key = s.key("l", &sha_hex(id));
        let key = &key;
        let n: i64 = s
            .run(
                "take_logout_request",
                |mut c| async move { c.del(key).await },
            )
            .await?;
        Ok(n == 1)
    }

    fn readiness(&self) -> Readiness {
        self.shared.start_watcher();
        self.shared.readiness()
    }

    /// Kept in Redis, shared by all replicas: not counted per process.
    fn pending_len(&self) -> Option<u64> {
        None
    }

    fn replay_len(&self) -> Option<u64> {
        None
    }
}

/// Reads the claim script's reply. A payload that fails to open is treated as unknown (and
/// logged): only our own sealed values complete a sign-in.
fn decode_claim(keys: &Keys, key: &str, reply: &[u8]) -> Result<PendingLogin, ClaimError> {
    match reply.split_first() {
        Some((b'O', rest)) if rest.len() > 64 => {
            let (browser_hex, sealed) = rest.split_at(64);
            let mut browser = [0u8; 32];
            for (i, b) in browser.iter_mut().enumerate() {
                let pair = std::str::from_utf8(&browser_hex[i * 2..i * 2 + 2]).ok();
                *b = match pair.and_then(|p| u8::from_str_radix(p, 16).ok()) {
                    Some(v) => v,
                    None => return Err(ClaimError::Unknown),
                };
            }
            let opened = keys.open(key, sealed).map_err(|e| {
                tracing::warn!(target: "samlgate::audit", event = "state_value_refused", kind = "pending", reason = %e);
                ClaimError::Unknown
            })?;
            let p: StoredPending =
                serde_json::from_slice(&opened).map_err(|_| ClaimError::Unknown)?;
            Ok(PendingLogin {
                request_id: p.request_id,
                return_path: p.return_path,
                browser,
            })
        }
        Some((b'W', _)) => Err(ClaimError::WrongBrowser),
        Some((b'E', _)) => {
            tracing::warn!(target: "samlgate::audit", event = "pending_from_previous_redis", "a pending sign-in stored before the Redis server restarted was refused");
            Err(ClaimError::Unknown)
        }
        _ => Err(ClaimError::Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `check-config` builds the backend with no tokio runtime: nothing may connect (or
    /// panic) then, in any mode, and the backend is not ready until it has answered.
    #[test]
    fn every_topology_builds_without_a_runtime_or_a_connection() {
        let limits = Limits {
            max_sessions: 10,
            idle_timeout: Duration::from_secs(60),
            login_timeout: Duration::from_secs(60),
            clock_skew: Duration::from_secs(1),
        };
        let topologies = [
            super::super::Topology::Single {
                url: "redis://127.0.0.1:1/0".into(),
            },
            super::super::Topology::Sentinel(Box::new(super::super::SentinelSettings {
                sentinels: vec!["redis://127.0.0.1:1".into()],
                master: "mymaster".into(),
                database: 2,
                username: None,
                password: Some("pw".into()),
            })),
            super::super::Topology::Cluster {
                nodes: vec!["rediss://127.0.0.1:1".into()],
            },
        ];
        for topology in topologies {
            let settings = RedisSettings {
                topology,
                ..RedisSettings::single("redis://unused:1")
            };
            let built = state(&settings, &[1; 32], limits).expect("built");
            assert!(matches!(built.flows.readiness(), Readiness::Down(_)));
        }
    }

    #[test]
    fn only_cluster_mode_wraps_the_prefix_in_a_hash_tag() {
        assert_eq!(key_base("samlgate:", RedisMode::Single), "samlgate:");
        assert_eq!(key_base("samlgate:", RedisMode::Sentinel), "samlgate:");
        assert_eq!(key_base("samlgate:", RedisMode::Cluster), "{samlgate:}");
    }

    #[test]
    fn claim_replies_are_read_strictly() {
        let keys = Keys::new(&[3; 32]);
        let key = "t:p:abc";
        let payload = serde_json::to_vec(&StoredPending {
            request_id: "_r1".into(),
            return_path: "/x".into(),
        })
        .expect("json");
        let browser = [0xabu8; 32];
        let ok = [
            b"O".as_slice(),
            hex(&browser).as_bytes(),
            &keys.seal(key, &payload),
        ]
        .concat();
        let claimed = decode_claim(&keys, key, &ok).expect("claimed");
        assert_eq!(
            (claimed.request_id.as_str(), claimed.return_path.as_str()),
            ("_r1", "/x")
        );
        assert_eq!(claimed.browser, browser);
        // Sealed for another key, or under another secret: unknown, never a sign-in.
        let moved = [
            b"O".as_slice(),
            hex(&browser).as_bytes(),
            &keys.seal("t:p:other", &payload),
        ]
        .concat();
        let other = Keys::new(&[4; 32]);
        let cases: &[(&Keys, &[u8], ClaimError)] = &[
            (&keys, &moved, ClaimError::Unknown),
            (&other, &ok, ClaimError::Unknown),
            (&keys, b"W", ClaimError::WrongBrowser),
            (&keys, b"U", ClaimError::Unknown),
            (&keys, b"E", ClaimError::Unknown),
            (&keys, b"", ClaimError::Unknown),
            (&keys, b"Oshort", ClaimError::Unknown),
        ];
        for (k, reply, want) in cases {
            assert_eq!(decode_claim(k, key, reply).err(), Some(*want));
        }
        let mut bad_hex = ok.clone();
        bad_hex[1] = b'z';
        assert_eq!(
            decode_claim(&keys, key, &bad_hex).err(),
            Some(ClaimError::Unknown)
        );
    }
}
