//! Message ids already used: each is remembered until its message could no longer be
//! accepted anyway (NotOnOrAfter + skew), so a captured response cannot be posted twice.
//! Ids are kept as SHA-256 digests: every entry costs the same few bytes however long the id
//! a message carried.

use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;

/// SHA-256 of an id.
type IdDigest = [u8; 32];

pub struct ReplayCache {
    cache: Cache<IdDigest, Duration>,
}

struct UntilExpiry;

impl Expiry<IdDigest, Duration> for UntilExpiry {
    fn expire_after_create(
        &self,
        _k: &IdDigest,
        ttl: &Duration,
        _now: Instant,
    ) -> Option<Duration> {
        Some(*ttl)
    }
}

/// Longest an id is kept even if the IdP asserts a far-future NotOnOrAfter.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

impl ReplayCache {
    pub fn new(capacity: u64) -> Self {
        ReplayCache {
            cache: Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilExpiry)
                .build(),
        }
    }

    /// Records `id`; returns false when it was already recorded (a replay). Atomic.
    pub fn first_use(&self, id: &str, ttl: Duration) -> bool {
        let ttl = ttl.clamp(Duration::from_secs(1), MAX_TTL);
        let mut key = IdDigest::default();
        key.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, id.as_bytes()).as_ref());
        self.cache.entry(key).or_insert(ttl).is_fresh()
    }

    pub fn approximate_len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_use_is_a_replay() {
        let c = ReplayCache::new(100);
        assert!(c.first_use("_a", Duration::from_secs(60)));
        assert!(!c.first_use("_a", Duration::from_secs(60)));
        assert!(c.first_use("_b", Duration::from_secs(60)));
        // Long ids are told apart even when they share a long prefix.
        let long = "x".repeat(10_000);
        assert!(c.first_use(&format!("{long}1"), Duration::from_secs(60)));
        assert!(c.first_use(&format!("{long}2"), Duration::from_secs(60)));
        assert!(!c.first_use(&format!("{long}1"), Duration::from_secs(60)));
    }

    #[test]
    fn concurrent_uses_admit_exactly_one() {
        let c = std::sync::Arc::new(ReplayCache::new(100));
        let wins: usize = (0..8)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || c.first_use("_same", Duration::from_secs(60)) as usize)
            })
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(wins, 1);
    }
}
