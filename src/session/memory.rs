//! The embedded session store: a moka cache with per-entry expiry, so each session ends at
//! the earlier of its idle timeout (refreshed on every read) and its absolute end.
//!
//! Two secondary indexes find sessions without scanning: the IdP's NameID to the keys of that
//! subject's sessions (with their SessionIndex) for Single Logout, and the signed-in user name
//! (compared case-insensitively) to that user's sessions, for the admin API and
//! deprovisioning. Both are pruned by the cache's eviction listener whenever an entry leaves
//! the cache (removal, expiry, capacity eviction), so they never hold more than the cache does
//! plus entries awaiting maintenance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use moka::notification::RemovalCause;
use moka::sync::Cache;
use moka::Expiry;

use super::{Session, SessionKey, SessionStore};

/// The secondary indexes, edited together under one lock.
#[derive(Default)]
struct Indexes {
    /// NameID → (session key, SessionIndex) of each indexed session.
    by_subject: HashMap<String, Vec<(SessionKey, Option<String>)>>,
    /// [`user_index_key`] of the signed-in user → that user's sessions (the value too, so
    /// listing them is not a cache read that would extend their idle timeout).
    by_user: HashMap<String, Vec<(SessionKey, Arc<Session>)>>,
}

impl Indexes {
    fn add(&mut self, key: SessionKey, session: &Arc<Session>) {
        let keys = self
            .by_subject
            .entry(session.identity.name_id.clone())
            .or_default();
        keys.retain(|(k, _)| *k != key);
        keys.push((key, session.identity.session_index.clone()));
        let keys = self
            .by_user
            .entry(user_index_key(&session.identity.user))
            .or_default();
        keys.retain(|(k, _)| *k != key);
        keys.push((key, session.clone()));
    }

    fn remove(&mut self, key: &SessionKey, session: &Session) {
        if let Some(keys) = self.by_subject.get_mut(&session.identity.name_id) {
            keys.retain(|(k, _)| k != key);
            if keys.is_empty() {
                self.by_subject.remove(&session.identity.name_id);
            }
        }
        let user = user_index_key(&session.identity.user);
        if let Some(keys) = self.by_user.get_mut(&user) {
            keys.retain(|(k, _)| k != key);
            if keys.is_empty() {
                self.by_user.remove(&user);
            }
        }
    }
}

/// User names are looked up case-insensitively: IdPs and SCIM clients differ in the case
/// they send (`Alice@Example.com` vs `alice@example.com`), and ending too few sessions on a
/// deprovision is the failure that matters.
pub fn user_index_key(user: &str) -> String {
    user.to_lowercase()
}

pub struct MemoryStore {
    cache: Cache<SessionKey, Arc<Session>>,
    indexes: Arc<Mutex<Indexes>>,
    /// Bumped when sessions are removed ([`SessionStore::revocations`]).
    revoked: tokio::sync::watch::Sender<u64>,
}

fn lock(index: &Mutex<Indexes>) -> std::sync::MutexGuard<'_, Indexes> {
    // A panic while holding the lock leaves consistent maps (every edit is one call).
    index.lock().unwrap_or_else(|p| p.into_inner())
}

/// A cached value that holds a session (this store's `Arc<Session>`, the Redis store's local
/// cache entry).
pub(crate) trait HoldsSession {
    fn held(&self) -> &Session;
}

impl HoldsSession for Arc<Session> {
    fn held(&self) -> &Session {
        self
    }
}

/// Each cached session lives until the earlier of its idle timeout (renewed on every read) and
/// its absolute end; shared by every moka cache of sessions.
pub(crate) struct SessionExpiry {
    pub(crate) idle: Duration,
}

impl SessionExpiry {
    fn ttl(&self, session: &Session) -> Duration {
        self.idle.min(session.remaining(SystemTime::now()))
    }
}

impl<V: HoldsSession> Expiry<SessionKey, V> for SessionExpiry {
    fn expire_after_create(&self, _k: &SessionKey, v: &V, _now: Instant) -> Option<Duration> {
        Some(self.ttl(v.held()))
    }
    fn expire_after_read(
        &self,
        _k: &SessionKey,
        v: &V,
        _now: Instant,
        _current: Option<Duration>,
        _last_modified: Instant,
    ) -> Option<Duration> {
        Some(self.ttl(v.held()))
    }
    fn expire_after_update(
        &self,
        _k: &SessionKey,
        v: &V,
        _now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.ttl(v.held()))
    }
}

impl MemoryStore {
    pub fn new(max_sessions: u64, idle: Duration) -> Self {
        let indexes: Arc<Mutex<Indexes>> = Arc::default();
        let index = indexes.clone();
        MemoryStore {
            cache: Cache::builder()
                .max_capacity(max_sessions)
                .expire_after(SessionExpiry { idle })
                .eviction_listener(move |key: Arc<SessionKey>, v: Arc<Session>, cause| {
                    // A replaced value keeps its key (insert re-indexes it).
                    if cause != RemovalCause::Replaced {
                        lock(&index).remove(&key, &v);
                    }
                })
                .build(),
            indexes,
            revoked: tokio::sync::watch::channel(0).0,
        }
    }

    fn signal_revoked(&self) {
        self.revoked.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Subjects currently indexed (for tests: the index shrinks as sessions go).
    pub fn indexed_subjects(&self) -> usize {
        self.cache.run_pending_tasks();
        lock(&self.indexes).by_subject.len()
    }

    /// Users currently indexed (for tests, like [`MemoryStore::indexed_subjects`]).
    pub fn indexed_users(&self) -> usize {
        self.cache.run_pending_tasks();
        lock(&self.indexes).by_user.len()
    }

    /// Ends the sessions behind `keys` that still pass `belongs` (the index may be stale);
    /// returns how many live ones ended.
    fn remove_keys(&self, keys: Vec<SessionKey>, belongs: impl Fn(&Session) -> bool) -> usize {
        // The lock is not held here: the eviction listener takes it as entries go.
        let now = SystemTime::now();
        let mut ended = 0;
        for key in keys {
            if let Some(s) = self.cache.remove(&key) {
                if belongs(&s) && !s.is_expired(now) {
                    ended += 1;
                }
            }
        }
        self.signal_revoked();
        ended
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn get(&self, key: &SessionKey) -> Option<Arc<Session>> {
        let session = self.cache.get(key)?;
        if session.is_expired(SystemTime::now()) {
            self.cache.invalidate(key);
            return None;
        }
        Some(session)
    }

    async fn insert(&self, key: SessionKey, session: Arc<Session>) {
        lock(&self.indexes).add(key, &session);
        self.cache.insert(key, session);
    }

    async fn remove(&self, key: &SessionKey) {
        self.cache.invalidate(key);
        self.signal_revoked();
    }

    async fn remove_by_subject(&self, name_id: &str, session_index: Option<&str>) -> usize {
        let keys: Vec<SessionKey> = lock(&self.indexes)
            .by_subject
            .get(name_id)
            .map(|keys| {
                keys.iter()
                    .filter(|(_, si)| session_index.is_none() || si.as_deref() == session_index)
                    .map(|(k, _)| *k)
                    .collect()
            })
            .unwrap_or_default();
        self.remove_keys(keys, |s| s.identity.name_id == name_id)
    }

    async fn sessions_of_user(&self, user: &str) -> Vec<(SessionKey, Arc<Session>)> {
        let entries = lock(&self.indexes)
            .by_user
            .get(&user_index_key(user))
            .cloned()
            .unwrap_or_default();
        let now = SystemTime::now();
        // `contains_key` is not a read: an admin listing must not keep sessions alive.
        entries
            .into_iter()
            .filter(|(k, s)| !s.is_expired(now) && self.cache.contains_key(k))
            .collect()
    }

    async fn remove_by_user(&self, user: &str) -> usize {
        let user = user_index_key(user);
        let keys = lock(&self.indexes)
            .by_user
            .get(&user)
            .map(|entries| entries.iter().map(|(k, _)| *k).collect())
            .unwrap_or_default();
        self.remove_keys(keys, |s| user_index_key(&s.identity.user) == user)
    }

    fn approximate_len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revoked.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Identity, IdentityHeaderValues};

    fn session(lifetime: Duration) -> Arc<Session> {
        let now = SystemTime::now();
        Arc::new(Session {
            identity: Identity {
                user: "alice".into(),
                groups: (0..500).map(|i| format!("group-{i}")).collect(),
                ..Identity::default()
            },
            headers: IdentityHeaderValues {
                user: http::HeaderValue::from_static("alice"),
                email: None,
                groups: None,
                preferred_username: None,
                role_name: None,
                role: None,
                attributes: Vec::new(),
            },
            created_at: now,
            expires_at: now + lifetime,
        })
    }

    #[tokio::test]
    async fn absolute_end_is_enforced_even_when_idle_is_longer() {
        let store = MemoryStore::new(10, Duration::from_secs(3600));
        let key = SessionKey::from_id(&[1; 32]);
        store.insert(key, session(Duration::from_millis(50))).await;
        assert!(store.get(&key).await.is_some());
        std::thread::sleep(Duration::from_millis(80));
        assert!(store.get(&key).await.is_none());
    }

    #[tokio::test]
    async fn idle_timeout_ends_an_unused_session_and_reads_extend_it() {
        let store = MemoryStore::new(10, Duration::from_millis(120));
        let key = SessionKey::from_id(&[2; 32]);
        store.insert(key, session(Duration::from_secs(3600))).await;
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(60));
            assert!(store.get(&key).await.is_some(), "reads keep it alive");
        }
        std::thread::sleep(Duration::from_millis(200));
        assert!(store.get(&key).await.is_none());
    }

    fn subject(name_id: &str, session_index: Option<&str>) -> Arc<Session> {
        let now = SystemTime::now();
        Arc::new(Session {
            identity: Identity {
                user: name_id.into(),
                name_id: name_id.into(),
                session_index: session_index.map(str::to_string),
                ..Identity::default()
            },
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
            expires_at: now + Duration::from_secs(60),
        })
    }

    #[tokio::test]
    async fn remove_by_subject_ends_only_that_subjects_sessions() {
        let store = MemoryStore::new(100, Duration::from_secs(60));
        let a1 = SessionKey::from_id(&[10; 32]);
        let a2 = SessionKey::from_id(&[11; 32]);
        let b = SessionKey::from_id(&[12; 32]);
        store.insert(a1, subject("alice", Some("s1"))).await;
        store.insert(a2, subject("alice", Some("s2"))).await;
        store.insert(b, subject("bob", Some("s1"))).await;
        assert_eq!(store.indexed_subjects(), 2);

        // SessionIndex narrows it down.
        assert_eq!(store.remove_by_subject("alice", Some("s1")).await, 1);
        assert!(store.get(&a1).await.is_none());
        assert!(store.get(&a2).await.is_some());
        assert!(store.get(&b).await.is_some(), "bob's s1 is not alice's");
        // Unknown index or subject: nothing.
        assert_eq!(store.remove_by_subject("alice", Some("nope")).await, 0);
        assert_eq!(store.remove_by_subject("carol", None).await, 0);
        // No SessionIndex: all of the subject's sessions.
        store.insert(a1, subject("alice", Some("s1"))).await;
        assert_eq!(store.remove_by_subject("alice", None).await, 2);
        assert!(store.get(&a1).await.is_none() && store.get(&a2).await.is_none());
        assert!(store.get(&b).await.is_some());
        assert_eq!(store.remove_by_subject("alice", None).await, 0, "once");
        assert_eq!(store.indexed_subjects(), 1, "alice pruned from the index");
    }

    #[tokio::test]
    async fn the_index_is_pruned_on_remove_expiry_and_eviction() {
        let store = MemoryStore::new(100, Duration::from_millis(50));
        let k = SessionKey::from_id(&[20; 32]);
        store.insert(k, subject("alice", None)).await;
        store.remove(&k).await;
        assert_eq!(store.indexed_subjects(), 0, "explicit removal prunes");

        store.insert(k, subject("alice", None)).await;
        // moka's timer wheel evicts expired entries at about one-second granularity.
        std::thread::sleep(Duration::from_millis(2300));
        assert_eq!(store.indexed_subjects(), 0, "idle expiry prunes");
        assert_eq!(store.remove_by_subject("alice", None).await, 0);

        // Capacity eviction keeps the index bounded by the cache.
        let small = MemoryStore::new(5, Duration::from_secs(60));
        for i in 0..50u8 {
            let key = SessionKey::from_id(&[i; 32]);
            small.insert(key, subject(&format!("user{i}"), None)).await;
        }
        assert!(
            small.indexed_subjects() <= 5 + 1,
            "{}",
            small.indexed_subjects()
        );

        // Re-inserting the same key does not duplicate it.
        let store = MemoryStore::new(100, Duration::from_secs(60));
        store.insert(k, subject("alice", None)).await;
        store.insert(k, subject("alice", None)).await;
        assert_eq!(store.remove_by_subject("alice", None).await, 1);
    }

    #[tokio::test]
    async fn remove_ends_it_and_hundreds_of_groups_are_kept() {
        let store = MemoryStore::new(10, Duration::from_secs(60));
        let key = SessionKey::from_id(&[3; 32]);
        store.insert(key, session(Duration::from_secs(60))).await;
        assert_eq!(store.get(&key).await.unwrap().identity.groups.len(), 500);
        store.remove(&key).await;
        assert!(store.get(&key).await.is_none());
    }

    #[tokio::test]
    async fn every_way_of_ending_sessions_signals_the_tunnels_and_inserting_does_not() {
        let store = MemoryStore::new(10, Duration::from_secs(60));
        let mut signal = store.revocations();
        let key = SessionKey::from_id(&[4; 32]);
        store.insert(key, session(Duration::from_secs(60))).await;
        assert!(
            !signal.has_changed().unwrap(),
            "a new session revokes nothing"
        );
        store.remove(&key).await;
        assert!(signal.has_changed().unwrap(), "sign-out");
        signal.mark_unchanged();
        store.remove_by_subject("nobody", None).await;
        assert!(signal.has_changed().unwrap(), "Single Logout");
        signal.mark_unchanged();
        store.remove_by_user("nobody").await;
        assert!(signal.has_changed().unwrap(), "deprovisioning, admin API");
    }

    #[tokio::test]
    async fn a_users_sessions_are_listed_and_ended_whatever_the_case() {
        let store = MemoryStore::new(100, Duration::from_secs(3600));
        let alice = [1u8, 2, 3];
        for (n, user) in alice.iter().zip([
            "alice@example.com",
            "Alice@Example.COM",
            "alice@example.com",
        ]) {
            store
                .insert(SessionKey::from_id(&[*n; 32]), subject(user, None))
                .await;
        }
        let bob = SessionKey::from_id(&[9; 32]);
        store.insert(bob, subject("bob@example.com", None)).await;

        let listed = store.sessions_of_user("ALICE@example.com").await;
        let mut keys: Vec<SessionKey> = listed.iter().map(|(k, _)| *k).collect();
        keys.sort_by_key(|k| k.0);
        let mut want: Vec<SessionKey> = alice
            .iter()
            .map(|n| SessionKey::from_id(&[*n; 32]))
            .collect();
        want.sort_by_key(|k| k.0);
        assert_eq!(keys, want);
        assert_eq!(store.indexed_users(), 2);

        // One of alice's sessions already ended on its own: it is neither listed nor counted.
        store.remove(&SessionKey::from_id(&[1; 32])).await;
        assert_eq!(store.sessions_of_user("alice@example.com").await.len(), 2);
        assert_eq!(store.remove_by_user("alice@EXAMPLE.com").await, 2);
        assert!(store.sessions_of_user("alice@example.com").await.is_empty());
        assert_eq!(store.remove_by_user("alice@example.com").await, 0);
        assert!(store.get(&bob).await.is_some(), "bob keeps his session");
        assert_eq!(store.indexed_users(), 1, "alice's index entry is pruned");
        assert_eq!(store.remove_by_user("nobody").await, 0);
    }

    #[tokio::test]
    async fn listing_a_users_sessions_does_not_keep_them_alive() {
        let store = MemoryStore::new(10, Duration::from_millis(150));
        let key = SessionKey::from_id(&[4; 32]);
        store.insert(key, subject("carol", None)).await;
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(50));
            let _ = store.sessions_of_user("carol").await;
        }
        assert!(store.get(&key).await.is_none(), "listing is not a read");
        assert!(store.sessions_of_user("carol").await.is_empty());
    }
}
