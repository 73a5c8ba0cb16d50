//! Assertion ids already used: each is remembered until its assertion could no longer be
//! accepted anyway (NotOnOrAfter + skew), so a captured response cannot be posted twice.

use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;

pub struct ReplayCache {
    cache: Cache<String, Duration>,
}

struct UntilExpiry;

impl Expiry<String, Duration> for UntilExpiry {
    fn expire_after_create(&self, _k: &String, ttl: &Duration, _now: Instant) -> Option<Duration> {
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
        self.cache.entry(id.to_string()).or_insert(ttl).is_fresh()
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
