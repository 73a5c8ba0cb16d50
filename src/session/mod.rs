//! Sessions: what a verified sign-in leaves behind, how a browser proves it owns one, and
//! where they are kept.
//!
//! A session id is 256 random bits handed to the browser in an HMAC-sealed cookie
//! ([`cookie::Sealer`]); the store is keyed by a SHA-256 of the id ([`SessionKey`]), so a dump
//! of the store holds no usable cookie. Groups and attributes live here, server-side, never in
//! the cookie. The store is a trait so a shared backend (Redis) can replace the in-memory
//! [`memory::MemoryStore`] without touching the request pipeline.

pub mod cookie;
pub mod memory;
pub mod pending;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use http::HeaderValue;

/// The store's key: SHA-256 of the session id that only the browser holds.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionKey(pub [u8; 32]);

impl SessionKey {
    pub fn from_id(id: &[u8; 32]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, id);
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        SessionKey(key)
    }

    /// A short, non-reversible tag for log lines (first 8 hex digits of the key hash).
    pub fn log_tag(&self) -> String {
        self.0[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionKey({})", self.log_tag())
    }
}

/// Who signed in, as the IdP asserted it (after every policy check).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    pub user: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub preferred_username: Option<String>,
    pub groups: Vec<String>,
    pub name_id: String,
    pub name_id_format: Option<String>,
    pub session_index: Option<String>,
    /// The SAML attributes `headers.attributes` forwards: (configured attribute name,
    /// values), kept so the headers can be rendered again from the identity.
    pub attributes: Vec<(String, Vec<String>)>,
}

/// Header values computed at sign-in ([`crate::identity::render_identity_headers`], again
/// when the identity changes) so the hot path only clones them. Already encoded by
/// `headers.encoding`.
#[derive(Debug, Clone)]
pub struct IdentityHeaderValues {
    pub user: HeaderValue,
    pub email: Option<HeaderValue>,
    pub groups: Option<HeaderValue>,
    pub preferred_username: Option<HeaderValue>,
    /// The role `[[roles]]` mapped (what `allowed_roles` checks), and its header value.
    pub role_name: Option<String>,
    pub role: Option<HeaderValue>,
    /// Forwarded attributes (`headers.attributes`) under the header names of the sign-in.
    pub attributes: Vec<(http::HeaderName, HeaderValue)>,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub identity: Identity,
    pub headers: IdentityHeaderValues,
    pub created_at: SystemTime,
    /// Absolute end: min(created + max lifetime, the IdP's SessionNotOnOrAfter).
    pub expires_at: SystemTime,
}

impl Session {
    pub fn is_expired(&self, now: SystemTime) -> bool {
        now >= self.expires_at
    }

    /// Time left before the absolute end (zero when past it).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.expires_at
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
    }
}

/// Where sessions live. Implementations must expire entries on their own (idle and absolute)
/// and be safe to call from many tasks at once.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    async fn get(&self, key: &SessionKey) -> Option<Arc<Session>>;
    async fn insert(&self, key: SessionKey, session: Arc<Session>);
    async fn remove(&self, key: &SessionKey);
    /// Ends every session of the subject `name_id` (the IdP's NameID), or only those whose
    /// SessionIndex equals `session_index` when one is given (SAML Single Logout). Returns how
    /// many live sessions were ended.
    async fn remove_by_subject(&self, name_id: &str, session_index: Option<&str>) -> usize;
    /// The live sessions of the signed-in user `user` ([`Identity::user`], compared
    /// case-insensitively), for the admin API. Listing does not extend their idle timeout.
    async fn sessions_of_user(&self, user: &str) -> Vec<(SessionKey, Arc<Session>)>;
    /// Ends every session of `user` (compared case-insensitively): the admin API's "sign this
    /// user out everywhere" and SCIM deprovisioning. Returns how many live sessions ended.
    async fn remove_by_user(&self, user: &str) -> usize;
    /// Approximate number of live sessions (for metrics and tests).
    fn approximate_len(&self) -> u64;
    /// A signal that changes whenever sessions were ended before their time (sign-out,
    /// Single Logout, deprovisioning, the admin API; with a shared backend also on another
    /// replica), so open WebSocket tunnels ask about their session at once instead of at
    /// their periodic check. Expiry does not signal: the periodic check finds it.
    fn revocations(&self) -> tokio::sync::watch::Receiver<u64>;
    /// [`SessionStore::get`] for the request path, where "no session" and "the store cannot
    /// answer" must differ: a shared backend that is unreachable (past its grace period)
    /// answers `Err`, and the request gets a 503 rather than a sign-in loop.
    async fn lookup(
        &self,
        key: &SessionKey,
    ) -> Result<Option<Arc<Session>>, crate::state::StateError> {
        Ok(self.get(key).await)
    }
    /// [`SessionStore::remove`] that says when the session could not be ended everywhere (a
    /// shared backend unreachable): the sign-out then answers 503 instead of "signed out".
    async fn try_remove(&self, key: &SessionKey) -> Result<(), crate::state::StateError> {
        self.remove(key).await;
        Ok(())
    }
    /// [`SessionStore::insert`] that says when the session could not be stored (the sign-in
    /// then fails with a 503 instead of handing out a cookie nothing backs).
    async fn try_insert(
        &self,
        key: SessionKey,
        session: Arc<Session>,
    ) -> Result<(), crate::state::StateError> {
        self.insert(key, session).await;
        Ok(())
    }
}

/// 32 bytes from the operating system's CSPRNG.
pub fn random_id() -> [u8; 32] {
    use ring::rand::SecureRandom;
    let mut id = [0u8; 32];
    // SystemRandom only fails if the OS has no entropy source at all; nothing sensible can
    // continue then, and no attacker input reaches this.
    ring::rand::SystemRandom::new()
        .fill(&mut id)
        .expect("operating system random number generator failed");
    id
}

/// A URL-safe random token of 128 bits (request ids, RelayState tokens).
pub fn random_token() -> String {
    use base64::Engine;
    let id = random_id();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&id[..16])
}
