//! The gateway: one [`Gateway`] holding the stores, sealers, upstream client and the
//! reloadable [`Policy`], and the flows a request can take through it, one file each.
//!
//! A request's life is [`Gateway::handle`] (in `pipeline`): **route → authenticate →
//! authorize → rewrite → forward**. Route, authenticate and authorize are one step,
//! [`Gateway::admit`] (in `admission`), whose [`Admission`] says what to do; the reverse proxy
//! (`pipeline`) and forward-auth (`forward_auth`) both use it and differ only in how they
//! answer. The gateway's own endpoints are `signin` (sign-in start, cookies), `acs` (the IdP's
//! answer), `signout` and `slo` (sign-out, Single Logout); `reload` swaps the policy;
//! `routes`, `body` and `answers` are the small shared pieces. Decisions are pure functions
//! (here, or in [`crate::saml::policy`], [`crate::authz`], [`crate::rules`],
//! [`crate::redirect`], [`crate::proxy`]); these files wire them to requests and stores.

mod acs;
mod admission;
mod answers;
mod body;
mod forward_auth;
mod password_signin;
mod pipeline;
mod reload;
mod routes;
mod signin;
mod signout;
mod slo;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::sync::Semaphore;

pub use reload::Policy;
pub use routes::{route, Paths, Route};

use crate::admin::AdminApi;
use crate::config::Settings;
use crate::deprovision::Deprovisioner;
use crate::log_throttle::LogThrottle;
use crate::metrics::{LiveCounts, Metrics};
use crate::proxy::Upstream;
use crate::saml::metadata::{parse_idp_metadata, sp_metadata_for};
use crate::saml::metadata_source::CurrentIdp;
use crate::saml::verify::Verifier;
use crate::scim::Scim;
use crate::session::cookie::Sealer;
use crate::session::SessionStore;
use crate::state::{FlowStore, State};

/// What the server knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
    /// The client's address: the peer's, or from `X-Forwarded-For` when the peer is a trusted
    /// proxy (set per request by [`Gateway::handle`]). Logs and rate limits use this.
    pub client: IpAddr,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, tls: bool) -> Self {
        ConnInfo {
            peer,
            tls,
            client: peer.ip(),
        }
    }
}

pub struct Gateway {
    settings: Settings,
    paths: Paths,
    login_url: String,
    verifier: Arc<CurrentIdp>,
    sessions: Arc<dyn SessionStore>,
    /// Pending sign-ins, the replay caches and our LogoutRequest ids (`[state]`).
    flows: Arc<dyn FlowStore>,
    session_sealer: Sealer,
    login_sealer: Sealer,
    csrf_sealer: Sealer,
    policy: ArcSwap<Policy>,
    upstream: Upstream,
    verify_permits: Arc<Semaphore>,
    sp_metadata: Bytes,
    ready: AtomicBool,
    /// Absolute URL of `paths.slo` (LogoutRequest/LogoutResponse `Destination`).
    slo_url: String,
    metrics: Arc<Metrics>,
    /// The IdP metadata file's content the current verifier was built from (file mode; a
    /// reload applies a changed file).
    applied_idp_metadata: Mutex<String>,
    /// The SCIM service, when `[scim]` is enabled.
    scim: Option<Arc<Scim>>,
    /// Ends all sessions (and tunnels) of a user: SCIM and the admin API.
    deprovision: Arc<Deprovisioner>,
    admin_api: Option<Arc<AdminApi>>,
}

/// How long a sign-in waits for a verification slot before it is shed with a 503.
const VERIFY_QUEUE_WAIT: Duration = Duration::from_secs(10);

impl Gateway {
    /// Builds the gateway from validated settings; fails (refusing to start) on bad IdP
    /// metadata, a missing signing certificate, or an unusable upstream.
    pub fn new(settings: Settings) -> Result<Arc<Gateway>, String> {
        let s = &settings.saml;
        let idp =
            parse_idp_metadata(&s.idp_metadata_xml, s.idp_entity_id.as_deref()).map_err(|e| {
                format!(
                    "saml.idp_metadata_file ({}): {e}",
                    s.idp_metadata_file.display()
                )
            })?;
        let verifier = Arc::new(CurrentIdp::new(Arc::new(Verifier::new(s, idp))));
        let prefix = s.path_prefix.clone();
        let paths = Paths {
            login: format!("{prefix}/login"),
            acs: s.acs_path.clone(),
            metadata: format!("{prefix}/metadata"),
            logout: format!("{prefix}/logout"),
            slo: format!("{prefix}/slo"),
            auth: format!("{prefix}/auth"),
            prefix,
            scim: settings.scim.as_ref().map(|s| s.path.clone()),
        };
        let login_url = paths.login.clone();
        let secret = &settings.session.cookie_secret;
        let slo_url = format!(
            "{}{}",
            settings.public_url.as_str().trim_end_matches('/'),
            paths.slo
        );
        let sp_metadata = Bytes::from(sp_metadata_for(s, &slo_url));
        let upstream = Upstream::new(&settings.upstream, &settings.proxy)?;
        let state = State::new(
            &settings.state,
            secret,
            crate::state::Limits {
                max_sessions: settings.session.max_sessions,
                idle_timeout: settings.session.idle_timeout,
                login_timeout: s.login_timeout,
                clock_skew: s.clock_skew,
            },
        )?;
        let sessions: Arc<dyn SessionStore> = state.sessions;
        let deprovision = Arc::new(Deprovisioner::new(sessions.clone()));
        let scim = crate::scim::open_for(
            settings.scim.as_ref(),
            settings.public_url.as_str(),
            &deprovision,
            state.redis.as_ref(),
        )?;
        let admin_api = (!settings.admin_api_tokens.is_empty()).then(|| {
            Arc::new(AdminApi::new(
                &settings.admin_api_tokens,
                deprovision.clone(),
            ))
        });
        let gateway = Arc::new(Gateway {
            sessions,
            scim,
            deprovision,
            admin_api,
            flows: state.flows,
            session_sealer: Sealer::new(secret, "session"),
            login_sealer: Sealer::new(secret, "login"),
            csrf_sealer: Sealer::new(secret, "logout-csrf"),
            policy: ArcSwap::from_pointee(Policy::from_settings(&settings, None)?),
            verify_permits: Arc::new(Semaphore::new(s.max_concurrent_verifications)),
            verifier,
            upstream,
            paths,
            login_url,
            sp_metadata,
            ready: AtomicBool::new(true),
            slo_url,
            metrics: Arc::new(Metrics::with_state_backend(state.redis.as_deref())),
            applied_idp_metadata: Mutex::new(s.idp_metadata_xml.clone()),
            settings,
        });
        let live: Weak<Gateway> = Arc::downgrade(&gateway);
        gateway.metrics.watch(live);
        Ok(gateway)
    }

    /// The gateway's metrics (rendered by the admin listener).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The admin API (on the admin listener), when `[admin_api]` has tokens.
    pub fn admin_api(&self) -> Option<Arc<AdminApi>> {
        self.admin_api.clone()
    }

    pub fn idp_entity_id(&self) -> String {
        self.verifier.get().idp.entity_id.clone()
    }

    /// The verifier in use, swapped by the metadata refresh (`saml.idp_metadata_url`).
    pub fn current_idp(&self) -> Arc<CurrentIdp> {
        self.verifier.clone()
    }

    pub fn sp_metadata(&self) -> &[u8] {
        &self.sp_metadata
    }

    /// Marks the gateway as draining: `/readyz` answers 503 so load balancers stop sending.
    pub fn set_draining(&self) {
        self.ready.store(false, Ordering::SeqCst);
    }

    /// The throttle for repeated refusals' log lines (the same one across reloads).
    pub fn logs(&self) -> Arc<LogThrottle> {
        self.policy.load().logs.clone()
    }

    /// Writes the summaries of refusals suppressed in intervals over at `now`, and forgets
    /// those intervals (every [`crate::log_throttle::INTERVAL`] from the server).
    pub fn flush_log_summaries(&self, now: Instant) {
        self.policy.load().logs.flush(now);
    }

    /// Periodic upkeep (every minute from the server): forgets rate-limit entries whose budget
    /// has refilled, so the table only holds clients that are actually busy.
    pub fn housekeeping(&self) {
        let policy = self.policy.load();
        policy.limits.retain_recent();
        if let Some(gate) = &policy.password {
            gate.signin.housekeeping();
        }
    }

    pub fn session_count(&self) -> u64 {
        self.sessions.approximate_len()
    }
}

impl LiveCounts for Gateway {
    fn sessions_active(&self) -> u64 {
        self.session_count()
    }
    fn replay_cache_entries(&self) -> Option<u64> {
        self.flows.replay_len()
    }
    fn pending_logins(&self) -> Option<u64> {
        self.flows.pending_len()
    }
}
