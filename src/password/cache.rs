//! The credential cache: a verified user name and password, remembered briefly, so an API
//! client sending HTTP Basic on every request costs one LDAP bind (or one argon2 hash) per
//! `cache_ttl_secs`, not one per request. The key is HMAC-SHA256 under a random per-process
//! key of the length-prefixed name and password: the password is never stored, and a memory
//! dump gives no hash to test guesses against offline without that key. Bounded (moka, LRU-ish
//! by TinyLFU) and emptied when the policy is rebuilt (a reload), so a changed users file or
//! a removed user takes effect at once there, and at most after the TTL otherwise.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use ring::hmac;

use super::Verified;

/// What the cache is keyed by: the HMAC of the credentials.
pub type CacheKey = [u8; 32];

pub struct CredentialCache {
    key: hmac::Key,
    entries: Option<Cache<CacheKey, Arc<Verified>>>,
}

impl CredentialCache {
    /// `ttl` zero: no cache (every check reaches a source).
    pub fn new(ttl: Duration, max_entries: u64) -> CredentialCache {
        let entries = (!ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl)
                .build()
        });
        CredentialCache {
            key: hmac::Key::new(hmac::HMAC_SHA256, &crate::session::random_id()),
            entries,
        }
    }

    /// The cache key of `user` and `password`. Length prefixes keep `("ab", "c")` and
    /// `("a", "bc")` apart.
    pub fn key_of(&self, user: &str, password: &str) -> CacheKey {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&(user.len() as u64).to_be_bytes());
        ctx.update(user.as_bytes());
        ctx.update(&(password.len() as u64).to_be_bytes());
        ctx.update(password.as_bytes());
        let tag = ctx.sign();
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    pub fn get(&self, key: &CacheKey) -> Option<Arc<Verified>> {
        self.entries.as_ref()?.get(key)
    }

    pub fn insert(&self, key: CacheKey, verified: Arc<Verified>) {
        if let Some(entries) = &self.entries {
            entries.insert(key, verified);
        }
    }

    /// Entries held now (approximate; for tests and metrics).
    pub fn len(&self) -> u64 {
        self.entries.as_ref().map_or(0, |c| {
            c.run_pending_tasks();
            c.entry_count()
        })
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::password::Method;
    use crate::session::Identity;

    fn verified(user: &str) -> Arc<Verified> {
        Arc::new(Verified {
            method: Method::Local,
            identity: Identity {
                user: user.into(),
                ..Default::default()
            },
        })
    }

    #[test]
    fn keys_separate_names_and_passwords() {
        let cache = CredentialCache::new(Duration::from_secs(60), 10);
        assert_ne!(cache.key_of("ab", "c"), cache.key_of("a", "bc"));
        assert_ne!(cache.key_of("alice", "pw"), cache.key_of("alice", "pW"));
        assert_eq!(cache.key_of("alice", "pw"), cache.key_of("alice", "pw"));
        // Another process (another cache) derives other keys.
        let other = CredentialCache::new(Duration::from_secs(60), 10);
        assert_ne!(cache.key_of("alice", "pw"), other.key_of("alice", "pw"));
    }

    #[test]
    fn hits_only_for_the_same_credentials_and_bounded() {
        let cache = CredentialCache::new(Duration::from_secs(60), 8);
        let k = cache.key_of("alice", "pw");
        cache.insert(k, verified("alice"));
        assert_eq!(cache.get(&k).unwrap().identity.user, "alice");
        assert!(cache.get(&cache.key_of("alice", "other")).is_none());
        for i in 0..100 {
            cache.insert(cache.key_of(&format!("u{i}"), "pw"), verified("u"));
        }
        assert!(cache.len() <= 8, "{} entries", cache.len());
    }

    #[test]
    fn a_zero_ttl_caches_nothing() {
        let cache = CredentialCache::new(Duration::ZERO, 8);
        let k = cache.key_of("alice", "pw");
        cache.insert(k, verified("alice"));
        assert!(cache.get(&k).is_none());
        assert!(cache.is_empty());
    }
}
