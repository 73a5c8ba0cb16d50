//! The embedded session store: a moka cache with per-entry expiry, so each session ends at
//! the earlier of its idle timeout (refreshed on every read) and its absolute end.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use moka::sync::Cache;
use moka::Expiry;

use super::{Session, SessionKey, SessionStore};

pub struct MemoryStore {
    cache: Cache<SessionKey, Arc<Session>>,
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
        MemoryStore {
            cache: Cache::builder()
                .max_capacity(max_sessions)
                .expire_after(SessionExpiry { idle })
                .build(),
        }
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
        self.cache.insert(key, session);
    }

    async fn remove(&self, key: &SessionKey) {
        self.cache.invalidate(key);
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
