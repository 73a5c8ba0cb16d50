//! Sign-ins in flight: what the gateway remembers between sending an AuthnRequest and
//! receiving the IdP's Response, so that only a response to *this* browser's request, once,
//! can create a session (InResponseTo, login CSRF, replay).
//!
//! A pending login is found by its RelayState token and must be claimed by the browser that
//! holds the matching login cookie. Claiming removes it: a second POST of the same response
//! finds nothing.

use std::time::Duration;

use moka::sync::Cache;

use super::cookie::Sealer;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLogin {
    /// Our AuthnRequest ID; the Response's InResponseTo must equal it.
    pub request_id: String,
    /// Local path to return to after sign-in (already validated).
    pub return_path: String,
    /// SHA-256 of the browser's login-cookie id.
    pub browser: [u8; 32],
}

pub struct PendingLogins {
    cache: Cache<String, PendingLogin>,
}

/// Why a pending login could not be claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimError {
    /// No RelayState, or one we never issued or that already expired / was used.
    Unknown,
    /// The login exists but this browser lacks the cookie that started it.
    WrongBrowser,
}

/// What one pending login costs beyond its strings (key, the login, the cache's own entry).
const ENTRY_OVERHEAD_BYTES: usize = 160;

/// Bytes a pending login is counted as: memory, not entries, is what the bound protects.
fn weight(relay_token: &str, login: &PendingLogin) -> u32 {
    let bytes =
        ENTRY_OVERHEAD_BYTES + relay_token.len() + login.request_id.len() + login.return_path.len();
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

impl PendingLogins {
    /// Logins expire after `timeout`; together they are kept under about `max_bytes`. When a
    /// flood of sign-ins would pass it, the least recently used logins go first: LRU, not
    /// moka's default TinyLFU, which would refuse every *new* login (all are seen once) while
    /// the flood's entries sit in the cache, so a few addresses could lock everyone out.
    pub fn new(timeout: Duration, max_bytes: u64) -> Self {
        PendingLogins {
            cache: Cache::builder()
                .max_capacity(max_bytes)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .weigher(|k: &String, v: &PendingLogin| weight(k, v))
                .time_to_live(timeout)
                .build(),
        }
    }

    pub fn insert(&self, relay_token: String, login: PendingLogin) {
        self.cache.insert(relay_token, login);
    }

    /// Removes and returns the login when `browser_ids` (every login-cookie id the browser
    /// sent, already HMAC-checked) contains the one that started it.
    pub fn claim(
        &self,
        relay_token: &str,
        browser_ids: &[[u8; 32]],
    ) -> Result<PendingLogin, ClaimError> {
        let login = self.cache.get(relay_token).ok_or(ClaimError::Unknown)?;
        let hashed: Vec<[u8; 32]> = browser_ids.iter().map(browser_hash).collect();
        if !hashed.contains(&login.browser) {
            return Err(ClaimError::WrongBrowser);
        }
        // remove() is atomic: of two concurrent claims only one gets the value.
        self.cache.remove(relay_token).ok_or(ClaimError::Unknown)
    }

    pub fn approximate_len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }
}

pub fn browser_hash(id: &[u8; 32]) -> [u8; 32] {
    super::SessionKey::from_id(id).0
}

/// Reads every valid login-cookie id the browser sent.
pub fn browser_ids(headers: &http::HeaderMap, cookie_name: &str, sealer: &Sealer) -> Vec<[u8; 32]> {
    super::cookie::find_cookies(headers, cookie_name)
        .filter_map(|v| sealer.open(v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(browser: [u8; 32]) -> PendingLogin {
        PendingLogin {
            request_id: "_abc".into(),
            return_path: "/dash".into(),
            browser: browser_hash(&browser),
        }
    }

    #[test]
    fn claim_is_single_use_and_bound_to_the_browser() {
        let p = PendingLogins::new(Duration::from_secs(60), 100_000);
        p.insert("tok".into(), login([1; 32]));
        assert_eq!(p.claim("tok", &[[2; 32]]), Err(ClaimError::WrongBrowser));
        assert_eq!(p.claim("tok", &[]), Err(ClaimError::WrongBrowser));
        assert_eq!(
            p.claim("tok", &[[2; 32], [1; 32]]).unwrap().return_path,
            "/dash"
        );
        assert_eq!(p.claim("tok", &[[1; 32]]), Err(ClaimError::Unknown));
        assert_eq!(p.claim("nope", &[[1; 32]]), Err(ClaimError::Unknown));
    }

    #[test]
    fn long_return_paths_count_by_their_size() {
        let max_bytes = 64 * 1024;
        let p = PendingLogins::new(Duration::from_secs(60), max_bytes);
        for i in 0..1000 {
            let mut l = login([1; 32]);
            l.return_path = format!("/{i}/{}", "x".repeat(2000));
            p.insert(format!("tok{i}"), l);
        }
        p.cache.run_pending_tasks();
        assert!(
            p.cache.weighted_size() <= max_bytes,
            "{}",
            p.cache.weighted_size()
        );
        // About 2.2 KB each: some 29 fit, not 1000.
        let kept = p.approximate_len();
        assert!((10..=32).contains(&kept), "{kept} kept");
        // The newest logins are the ones kept: a flood cannot keep new sign-ins out.
        assert_eq!(
            p.claim("tok999", &[[1; 32]]).map(|l| l.request_id),
            Ok("_abc".into())
        );
        assert_eq!(p.claim("tok0", &[[1; 32]]), Err(ClaimError::Unknown));
        // Short ones still fit many more in the same budget.
        let small = PendingLogins::new(Duration::from_secs(60), max_bytes);
        for i in 0..200 {
            small.insert(format!("tok{i}"), login([1; 32]));
        }
        assert_eq!(small.approximate_len(), 200);
    }

    #[test]
    fn pending_logins_expire() {
        let p = PendingLogins::new(Duration::from_millis(50), 100_000);
        p.insert("tok".into(), login([1; 32]));
        std::thread::sleep(Duration::from_millis(90));
        assert_eq!(p.claim("tok", &[[1; 32]]), Err(ClaimError::Unknown));
    }
}
