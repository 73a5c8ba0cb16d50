//! The in-process backend (`state.backend = "memory"`, the default): today's moka stores —
//! [`MemoryStore`] for sessions, [`PendingLogins`], two [`ReplayCache`]s and a cache of our
//! LogoutRequest ids — behind the [`FlowStore`] trait. Nothing here can fail, and the process's
//! memory is the whole truth: one replica, or sticky sessions, and a restart signs everyone out.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::{FirstUse, FlowStore, Limits, Readiness, ReplayKind, State, StateError};
use crate::saml::replay::ReplayCache;
use crate::session::memory::MemoryStore;
use crate::session::pending::{ClaimError, PendingLogin, PendingLogins};

/// How long our LogoutRequest waits for the IdP's LogoutResponse.
const LOGOUT_REQUEST_MAX_TTL: Duration = Duration::from_secs(10 * 60);

pub struct MemoryFlows {
    pending: PendingLogins,
    replay: ReplayCache,
    /// Logout message ids apart from assertion ids: a flood of logout messages cannot push
    /// assertion ids out of theirs.
    slo_replay: ReplayCache,
    logout_requests: moka::sync::Cache<String, ()>,
}

impl MemoryFlows {
    pub fn new(login_timeout: Duration) -> Self {
        MemoryFlows {
            // About 200,000 sign-ins in flight with ordinary return paths (a few hundred
            // bytes each); fewer, not more memory, if a flood brings long ones.
            pending: PendingLogins::new(login_timeout, 64 * 1024 * 1024),
            replay: ReplayCache::new(1_000_000),
            slo_replay: ReplayCache::new(100_000),
            logout_requests: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(LOGOUT_REQUEST_MAX_TTL)
                .build(),
        }
    }
}

pub fn state(limits: Limits) -> State {
    State {
        sessions: Arc::new(MemoryStore::new(limits.max_sessions, limits.idle_timeout)),
        flows: Arc::new(MemoryFlows::new(limits.login_timeout)),
        redis: None,
    }
}

#[async_trait]
impl FlowStore for MemoryFlows {
    async fn put_pending(&self, relay_token: &str, login: &PendingLogin) -> Result<(), StateError> {
        self.pending.insert(relay_token.to_string(), login.clone());
        Ok(())
    }

    async fn claim_pending(
        &self,
        relay_token: &str,
        browser_ids: &[[u8; 32]],
    ) -> Result<Result<PendingLogin, ClaimError>, StateError> {
        Ok(self.pending.claim(relay_token, browser_ids))
    }

    /// The process's memory began with the process, and so did every pending sign-in it
    /// holds; `issued` is not checked here, as before this backend existed.
    async fn first_use(
        &self,
        kind: ReplayKind,
        id: &str,
        ttl: Duration,
        _issued: Option<SystemTime>,
    ) -> Result<FirstUse, StateError> {
        let cache = match kind {
            ReplayKind::Assertion => &self.replay,
            ReplayKind::Logout => &self.slo_replay,
        };
        Ok(if cache.first_use(id, ttl) {
            FirstUse::Fresh
        } else {
            FirstUse::Replay
        })
    }

    async fn put_logout_request(&self, id: &str, _ttl: Duration) -> Result<(), StateError> {
        self.logout_requests.insert(id.to_string(), ());
        Ok(())
    }

    async fn take_logout_request(&self, id: &str) -> Result<bool, StateError> {
        Ok(self.logout_requests.remove(id).is_some())
    }

    fn readiness(&self) -> Readiness {
        Readiness::Ready
    }

    fn pending_len(&self) -> Option<u64> {
        Some(self.pending.approximate_len())
    }

    fn replay_len(&self) -> Option<u64> {
        Some(self.replay.approximate_len())
    }
}
