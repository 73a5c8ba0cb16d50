//! Sessions in Redis with a moka cache in front: a verified session is served from this
//! replica's memory; Redis is read only on a miss, and touched now and then so its idle TTL
//! follows use on any replica. Every revocation deletes the Redis key and publishes the key on
//! the invalidation channel, which each replica's watcher ([`super::redis`]) turns into a local
//! invalidation; a cache entry that outlives a missed message is caught at its next touch
//! (the key is gone) or by the flush after a re-subscription.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use moka::sync::Cache;
use redis::AsyncCommands;

use super::redis::Shared;
use super::seal::{decode_session, encode_session, hex};
use super::StateError;
use crate::session::memory::user_index_key;
use crate::session::{Session, SessionKey, SessionStore};

/// Stores a session and adds it to its subject and user indexes, whose TTL is raised to the
/// session's absolute end when shorter.
pub(super) const INSERT_SESSION: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
for i = 2, 3 do
  redis.call('SADD', KEYS[i], ARGV[3])
  if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[4]) then
    redis.call('PEXPIRE', KEYS[i], ARGV[4])
  end
end
return 1
";

/// One cached session and when this replica last renewed its Redis TTL.
pub(super) struct Cached {
    session: Arc<Session>,
    touched: AtomicU64,
}

impl crate::session::memory::HoldsSession for Arc<Cached> {
    fn held(&self) -> &Session {
        &self.session
    }
}

/// This replica's cache of verified sessions.
pub(super) struct LocalCache {
    cache: Cache<SessionKey, Arc<Cached>>,
    /// Bumped by every invalidation: a miss that read Redis before a bump does not cache
    /// what it read (the value may be the one just revoked).
    generation: AtomicU64,
    /// Bumped by every invalidation message and flush, for open tunnels
    /// ([`SessionStore::revocations`]).
    revoked: tokio::sync::watch::Sender<u64>,
    /// Milliseconds are counted from here (touch times fit an atomic).
    epoch: Instant,
}

impl LocalCache {
    pub(super) fn new(max: u64, idle: Duration) -> Self {
        LocalCache {
            cache: Cache::builder()
                .max_capacity(max)
                .expire_after(crate::session::memory::SessionExpiry { idle })
                .build(),
            generation: AtomicU64::new(0),
            revoked: tokio::sync::watch::channel(0).0,
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn flush(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.cache.invalidate_all();
        self.signal_revoked();
    }

    fn signal_revoked(&self) {
        self.revoked.send_modify(|g| *g = g.wrapping_add(1));
    }

    pub(super) fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revoked.subscribe()
    }

    fn invalidate(&self, key: &SessionKey) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.cache.invalidate(key);
    }

    /// An invalidation message: session keys in hex, space-separated. Open tunnels are told
    /// once the keys are forgotten, so their re-check reads Redis.
    pub(super) fn invalidate_message(&self, payload: &[u8]) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.forget_keys(payload);
        self.signal_revoked();
    }

    fn forget_keys(&self, payload: &[u8]) {
        for word in payload.split(|b| *b == b' ') {
            match parse_key(word) {
                Some(k) => self.cache.invalidate(&k),
                // Not ours or garbled: forgetting everything is the safe reading.
                None if !word.is_empty() => {
                    self.cache.invalidate_all();
                    return;
                }
                None => {}
            }
        }
    }

    pub(super) fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }
}

fn parse_key(hex_key: &[u8]) -> Option<SessionKey> {
    if hex_key.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        let pair = std::str::from_utf8(&hex_key[i * 2..i * 2 + 2]).ok()?;
        *b = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(SessionKey(key))
}

pub struct RedisSessions {
    shared: Arc<Shared>,
}

impl RedisSessions {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        RedisSessions { shared }
    }

    fn session_key(&self, key: &SessionKey) -> String {
        self.shared.key("s", &hex(&key.0))
    }

    /// How often a replica renews the Redis TTL of a session it serves from its cache.
    fn touch_interval(&self) -> Duration {
        (self.shared.limits.idle_timeout / 4)
            .clamp(Duration::from_millis(250), Duration::from_secs(60))
    }

    fn ttl(&self, session: &Session) -> Duration {
        self.shared
            .limits
            .idle_timeout
            .min(session.remaining(SystemTime::now()))
    }

    /// Renews the Redis TTL in the background when due; a key found gone means the session
    /// ended elsewhere and a revocation message was missed: drop it here too.
    fn maybe_touch(&self, key: SessionKey, cached: &Cached) {
        let now = self.shared.cache.now_ms();
        let last = cached.touched.load(Ordering::Relaxed);
        let due = u64::try_from(self.touch_interval().as_millis()).unwrap_or(u64::MAX);
        if now.saturating_sub(last) < due
            || cached
                .touched
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let shared = self.shared.clone();
        let redis_key = self.session_key(&key);
        let ttl = self.ttl(&cached.session);
        tokio::spawn(async move {
            let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
            let k = &redis_key;
            let touched = shared
                .run("touch", |mut c| async move { c.pexpire(k, ms).await })
                .await;
            if let Ok(false) = touched {
                shared.cache.invalidate(&key);
            }
        });
    }

    /// Reads and opens one stored session; a value that fails to open is refused (logged)
    /// and counts as no session.
    async fn fetch(&self, key: &SessionKey) -> Result<Option<Session>, StateError> {
        let s = &self.shared;
        let redis_key = self.session_key(key);
        let k = &redis_key;
        let value: Option<Vec<u8>> = s
            .run("get_session", |mut c| async move { c.get(k).await })
            .await?;
        Ok(value.and_then(|v| self.open(key, &redis_key, &v)))
    }

    fn open(&self, key: &SessionKey, redis_key: &str, value: &[u8]) -> Option<Session> {
        let opened = self
            .shared
            .keys
            .open(redis_key, value)
            .and_then(|plain| decode_session(&plain));
        match opened {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(target: "samlgate::audit", event = "state_value_refused", kind = "session", session = %key.log_tag(), reason = %e);
                None
            }
        }
    }

    /// The live sessions listed under an index key, opened; members whose session is gone
    /// are pruned from the index.
    async fn indexed(&self, index_key: &str) -> Result<Vec<(SessionKey, Session)>, StateError> {
        let s = &self.shared;
        let members: Vec<String> = s
            .run(
                "smembers",
                |mut c| async move { c.smembers(index_key).await },
            )
            .await?;
        let keys: Vec<SessionKey> = members
            .iter()
            .filter_map(|m| parse_key(m.as_bytes()))
            .collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let redis_keys: Vec<String> = keys.iter().map(|k| self.session_key(k)).collect();
        let rk = &redis_keys;
        let values: Vec<Option<Vec<u8>>> = s
            .run("mget", |mut c| async move {
                redis::cmd("MGET").arg(rk).query_async(&mut c).await
            })
            .await?;
        let now = SystemTime::now();
        let mut live = Vec::new();
        let mut gone = Vec::new();
        for ((key, redis_key), value) in keys.iter().zip(&redis_keys).zip(values) {
            match value.and_then(|v| self.open(key, redis_key, &v)) {
                Some(session) if !session.is_expired(now) => live.push((*key, session)),
                _ => gone.push(hex(&key.0)),
            }
        }
        if !gone.is_empty() {
            let gone = &gone;
            let _: Result<i64, _> = s
                .run("srem", |mut c| async move { c.srem(index_key, gone).await })
                .await;
        }
        Ok(live)
    }

    /// Deletes the given sessions, tells every replica, and returns how many were deleted
    /// here (a concurrent removal elsewhere is not counted twice).
    async fn delete(&self, keys: &[SessionKey]) -> Result<usize, StateError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let s = &self.shared;
        for k in keys {
            s.cache.invalidate(k);
        }
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.del(self.session_key(k));
        }
        let message: Vec<String> = keys.iter().map(|k| hex(&k.0)).collect();
        pipe.publish(&s.channel, message.join(" ")).ignore();
        let pipe = &pipe;
        let deleted: Vec<i64> = s
            .run(
                "revoke",
                |mut c| async move { pipe.query_async(&mut c).await },
            )
            .await?;
        Ok(deleted.iter().filter(|n| **n == 1).count())
    }

    async fn end_matching(
        &self,
        index_key: String,
        belongs: impl Fn(&Session) -> bool + Send,
    ) -> Result<usize, StateError> {
        let keys: Vec<SessionKey> = self
            .indexed(&index_key)
            .await?
            .into_iter()
            .filter(|(_, s)| belongs(s))
            .map(|(k, _)| k)
            .collect();
        self.delete(&keys).await
    }

    fn log_failure(op: &'static str, e: &StateError) {
        tracing::error!(target: "samlgate::audit", event = "state_backend_error", op, reason = %e);
    }
}

#[async_trait]
impl SessionStore for RedisSessions {
    /// Every revocation, this replica's included, comes back through the invalidation
    /// channel and signals there.
    fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.cache.revocations()
    }

    async fn get(&self, key: &SessionKey) -> Option<Arc<Session>> {
        self.lookup(key).await.ok().flatten()
    }

    async fn insert(&self, key: SessionKey, session: Arc<Session>) {
        if let Err(e) = self.try_insert(key, session).await {
            Self::log_failure("insert", &e);
        }
    }

    async fn remove(&self, key: &SessionKey) {
        if let Err(e) = self.delete(&[*key]).await {
            Self::log_failure("remove", &e);
        }
    }

    async fn remove_by_subject(&self, name_id: &str, session_index: Option<&str>) -> usize {
        let index = self.shared.key("n", &self.shared.keys.index_tag(name_id));
        let belongs = |s: &Session| {
            s.identity.name_id == name_id
                && (session_index.is_none() || s.identity.session_index.as_deref() == session_index)
        };
        self.end_matching(index, belongs).await.unwrap_or_else(|e| {
            Self::log_failure("remove_by_subject", &e);
            0
        })
    }

    async fn sessions_of_user(&self, user: &str) -> Vec<(SessionKey, Arc<Session>)> {
        let wanted = user_index_key(user);
        let index = self.shared.key("u", &self.shared.keys.index_tag(&wanted));
        match self.indexed(&index).await {
            Ok(list) => list
                .into_iter()
                .filter(|(_, s)| user_index_key(&s.identity.user) == wanted)
                .map(|(k, s)| (k, Arc::new(s)))
                .collect(),
            Err(e) => {
                Self::log_failure("sessions_of_user", &e);
                Vec::new()
            }
        }
    }

    async fn remove_by_user(&self, user: &str) -> usize {
        let wanted = user_index_key(user);
        let index = self.shared.key("u", &self.shared.keys.index_tag(&wanted));
        self.end_matching(index, |s| user_index_key(&s.identity.user) == wanted)
            .await
            .unwrap_or_else(|e| {
                Self::log_failure("remove_by_user", &e);
                0
            })
    }

    /// Sessions cached on this replica (the shared total lives in Redis).
    fn approximate_len(&self) -> u64 {
        self.shared.cache.len()
    }

    async fn lookup(&self, key: &SessionKey) -> Result<Option<Arc<Session>>, StateError> {
        self.shared.start_watcher();
        let s = &self.shared;
        let generation = s.cache.generation.load(Ordering::Acquire);
        if let Some(cached) = s.cache.cache.get(key) {
            s.cache_usable()?;
            if cached.session.is_expired(SystemTime::now()) {
                s.cache.invalidate(key);
                return Ok(None);
            }
            // An invalidation or flush that raced with this read wins: ask Redis instead.
            if s.cache.generation.load(Ordering::Acquire) == generation {
                self.maybe_touch(*key, &cached);
                return Ok(Some(cached.session.clone()));
            }
        }
        let Some(session) = self.fetch(key).await? else {
            return Ok(None);
        };
        if session.is_expired(SystemTime::now()) {
            return Ok(None);
        }
        let session = Arc::new(session);
        let cached = Arc::new(Cached {
            session: session.clone(),
            // Due for a touch at once: this read renews the idle TTL in Redis.
            touched: AtomicU64::new(0),
        });
        self.maybe_touch(*key, &cached);
        if s.cache.generation.load(Ordering::Acquire) == generation {
            s.cache.cache.insert(*key, cached);
        }
        Ok(Some(session))
    }

    async fn try_remove(&self, key: &SessionKey) -> Result<(), StateError> {
        self.delete(&[*key]).await.map(|_| ())
    }

    async fn try_insert(&self, key: SessionKey, session: Arc<Session>) -> Result<(), StateError> {
        self.shared.start_watcher();
        let s = &self.shared;
        let redis_key = self.session_key(&key);
        let sealed = s.keys.seal(&redis_key, &encode_session(&session));
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        let subject = s.key("n", &s.keys.index_tag(&session.identity.name_id));
        let user = s.key(
            "u",
            &s.keys.index_tag(&user_index_key(&session.identity.user)),
        );
        let mut call = s.insert_session.key(&redis_key);
        call.key(&subject)
            .key(&user)
            .arg(sealed)
            .arg(ms(self.ttl(&session)))
            .arg(hex(&key.0))
            .arg(ms(session.remaining(SystemTime::now())));
        let call = &call;
        s.run("insert_session", |mut c| async move {
            call.invoke_async::<i64>(&mut c).await
        })
        .await?;
        s.cache.cache.insert(
            key,
            Arc::new(Cached {
                session,
                touched: AtomicU64::new(s.cache.now_ms()),
            }),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Identity, IdentityHeaderValues};

    fn cached(ttl: Duration) -> Arc<Cached> {
        let now = SystemTime::now();
        Arc::new(Cached {
            session: Arc::new(Session {
                identity: Identity::default(),
                headers: IdentityHeaderValues {
                    user: http::HeaderValue::from_static("u"),
                    email: None,
                    groups: None,
                    preferred_username: None,
                    role_name: None,
                    role: None,
                    attributes: Vec::new(),
                },
                created_at: now,
                expires_at: now + ttl,
            }),
            touched: AtomicU64::new(0),
        })
    }

    #[test]
    fn invalidation_messages_drop_what_they_name_and_garbage_drops_everything() {
        let cache = LocalCache::new(100, Duration::from_secs(60));
        let keys: Vec<SessionKey> = (1..=3u8).map(|i| SessionKey::from_id(&[i; 32])).collect();
        let fill = |c: &LocalCache| {
            for k in &keys {
                c.cache.insert(*k, cached(Duration::from_secs(60)));
            }
        };
        fill(&cache);
        let g0 = cache.generation.load(Ordering::Acquire);
        let msg = format!("{} {}", hex(&keys[0].0), hex(&keys[2].0));
        cache.invalidate_message(msg.as_bytes());
        assert!(
            cache.generation.load(Ordering::Acquire) > g0,
            "a bump stops stale fills"
        );
        assert!(cache.cache.get(&keys[0]).is_none());
        assert!(cache.cache.get(&keys[1]).is_some());
        assert!(cache.cache.get(&keys[2]).is_none());
        // A word that is not a session key: everything goes (we cannot tell what was meant).
        fill(&cache);
        cache.invalidate_message(format!("{} zz", hex(&keys[0].0)).as_bytes());
        cache.cache.run_pending_tasks();
        assert_eq!(cache.cache.entry_count(), 0);
        // Empty words (double spaces) are ignored.
        fill(&cache);
        cache.invalidate_message(format!("  {}  ", hex(&keys[1].0)).as_bytes());
        assert!(cache.cache.get(&keys[0]).is_some());
        assert!(cache.cache.get(&keys[1]).is_none());
    }

    #[test]
    fn session_keys_parse_only_from_64_hex_digits() {
        let k = SessionKey::from_id(&[7; 32]);
        assert_eq!(parse_key(hex(&k.0).as_bytes()), Some(k));
        for bad in ["", "00", &"g".repeat(64), &"0".repeat(63), &"0".repeat(65)] {
            assert_eq!(parse_key(bad.as_bytes()), None, "{bad}");
        }
    }
}
