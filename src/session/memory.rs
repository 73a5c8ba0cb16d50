//! The embedded session store: a moka cache with per-entry expiry, so each session ends at
//! the earlier of its idle timeout (refreshed on every read) and its absolute end.
//!
//! A secondary index maps the IdP's NameID to the keys of that subject's sessions (with their
//! SessionIndex) for Single Logout. It is pruned by the cache's eviction listener whenever an
//! entry leaves the cache (removal, expiry, capacity eviction), so it never holds more than
//! the cache does plus entries awaiting maintenance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use moka::notification::RemovalCause;
use moka::sync::Cache;
use moka::Expiry;

use super::{Session, SessionKey, SessionStore};

/// NameID → (session key, SessionIndex) of each indexed session.
type SubjectIndex = HashMap<String, Vec<(SessionKey, Option<String>)>>;

pub struct MemoryStore {
    cache: Cache<SessionKey, Arc<Session>>,
    by_subject: Arc<Mutex<SubjectIndex>>,
}

fn lock(index: &Mutex<SubjectIndex>) -> std::sync::MutexGuard<'_, SubjectIndex> {
    // A panic while holding the lock leaves a consistent map (every edit is one call).
    index.lock().unwrap_or_else(|p| p.into_inner())
}

fn unindex(index: &Mutex<SubjectIndex>, key: &SessionKey, name_id: &str) {
    let mut map = lock(index);
    if let Some(keys) = map.get_mut(name_id) {
        keys.retain(|(k, _)| k != key);
        if keys.is_empty() {
            map.remove(name_id);
        }
    }
}

struct SessionExpiry {
    idle: Duration,
}

impl SessionExpiry {
    fn ttl(&self, session: &Session) -> Duration {
        self.idle.min(session.remaining(SystemTime::now()))
    }
}

impl Expiry<SessionKey, Arc<Session>> for SessionExpiry {
    fn expire_after_create(
        &self,
        _k: &SessionKey,
        v: &Arc<Session>,
        _now: Instant,
    ) -> Option<Duration> {
        Some(self.ttl(v))
    }
    fn expire_after_read(
        &self,
        _k: &SessionKey,
        v: &Arc<Session>,
        _now: Instant,
        _current: Option<Duration>,
        _last_modified: Instant,
    ) -> Option<Duration> {
        Some(self.ttl(v))
    }
    fn expire_after_update(
        &self,
        _k: &SessionKey,
        v: &Arc<Session>,
        _now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.ttl(v))
    }
}

impl MemoryStore {
    pub fn new(max_sessions: u64, idle: Duration) -> Self {
        let by_subject: Arc<Mutex<SubjectIndex>> = Arc::default();
        let index = by_subject.clone();
        MemoryStore {
            cache: Cache::builder()
                .max_capacity(max_sessions)
                .expire_after(SessionExpiry { idle })
                .eviction_listener(move |key: Arc<SessionKey>, v: Arc<Session>, cause| {
                    // A replaced value keeps its key (insert re-indexes it).
                    if cause != RemovalCause::Replaced {
                        unindex(&index, &key, &v.identity.name_id);
                    }
                })
                .build(),
            by_subject,
        }
    }

    /// Subjects currently indexed (for tests: the index shrinks as sessions go).
    pub fn indexed_subjects(&self) -> usize {
        self.cache.run_pending_tasks();
        lock(&self.by_subject).len()
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
        {
            let mut map = lock(&self.by_subject);
            let keys = map.entry(session.identity.name_id.clone()).or_default();
            keys.retain(|(k, _)| *k != key);
            keys.push((key, session.identity.session_index.clone()));
        }
        self.cache.insert(key, session);
    }

    async fn remove(&self, key: &SessionKey) {
        self.cache.invalidate(key);
    }

    async fn remove_by_subject(&self, name_id: &str, session_index: Option<&str>) -> usize {
        let keys: Vec<SessionKey> = lock(&self.by_subject)
            .get(name_id)
            .map(|keys| {
                keys.iter()
                    .filter(|(_, si)| session_index.is_none() || si.as_deref() == session_index)
                    .map(|(k, _)| *k)
                    .collect()
            })
            .unwrap_or_default();
        // The lock is released: the eviction listener takes it as entries go.
        let now = SystemTime::now();
        let mut ended = 0;
        for key in keys {
            if let Some(s) = self.cache.remove(&key) {
                if s.identity.name_id == name_id && !s.is_expired(now) {
                    ended += 1;
                }
            }
            // Stale entry (already gone from the cache): drop it from the index as well.
            unindex(&self.by_subject, &key, name_id);
        }
        ended
    }

    fn approximate_len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
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
}
