//! The request pipeline, in one place: **route → authenticate → authorize → rewrite →
//! forward**, plus the gateway's own endpoints (sign-in start, ACS, metadata, sign-out,
//! health). Decisions are delegated to pure functions in [`crate::saml::policy`],
//! [`crate::authz`], [`crate::redirect`] and [`crate::proxy`]; this module wires them to
//! requests, cookies and the stores.

use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures_util::FutureExt;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body as _, Incoming};
use tokio::sync::Semaphore;

use crate::admin::AdminApi;
use crate::client_ip::{self, TrustedProxies};
use crate::config::{AuthzSection, ForwardAuthSection, HeadersSection, Settings};
use crate::deprovision::Deprovisioner;
use crate::forward_auth;
use crate::log_throttle::{Kind as LogKind, LogThrottle, UpstreamAnswer};
use crate::metrics::{ForwardAuthResult, LiveCounts, Metrics, RouteClass, UpstreamErrorKind};
use crate::pages;
use crate::proxy::{self, Body, Forwarded, IdentityHeaders, Upstream};
use crate::ratelimit::{Limit, RateLimitSection, RateLimits};
use crate::redirect::safe_return_path;
use crate::rules::{AccessRules, Decision};
use crate::saml::authn::{
    authn_request_xml, new_request_id, redirect_message_url, redirect_url, AuthnRequestSpec,
};
use crate::saml::error::LoginError;
use crate::saml::logout::{self as slo, LogoutRequestSpec, LogoutResponseSpec};
use crate::saml::metadata::{parse_idp_metadata, sp_metadata_xml_with_slo, SpMetadata};
use crate::saml::metadata_source::CurrentIdp;
use crate::saml::policy::{self, AttributeMap};
use crate::saml::prefilter::{prefilter_root, Root};
use crate::saml::replay::ReplayCache;
use crate::saml::verify::{acs_form, AcsForm, Verifier};
use crate::scim::Scim;
use crate::session::cookie::{find_cookies, CookieSpec, SameSite, Sealer};
use crate::session::memory::MemoryStore;
use crate::session::pending::{browser_hash, browser_ids, ClaimError, PendingLogin, PendingLogins};
use crate::session::{
    random_id, random_token, IdentityHeaderValues, Session, SessionKey, SessionStore,
};
use crate::target::{self, TargetRefusal};
use crate::tunnel::TunnelSession;

/// 200 for a forward-auth check, carrying the identity headers the proxy copies upstream.
fn identity_response(policy: &Policy, session: &Session) -> Response<Body> {
    let ids = &policy.ids;
    let mut r = Response::new(proxy::full(Bytes::new()));
    let h = r.headers_mut();
    let v = &session.headers;
    if let Some(list) = policy.envoy_removals.signed_in(v) {
        h.insert(ENVOY_REMOVE.clone(), list.clone());
    }
    h.insert(ids.user.clone(), v.user.clone());
    if let Some(e) = &v.email {
        h.insert(ids.email.clone(), e.clone());
    }
    if let Some(g) = &v.groups {
        h.insert(ids.groups.clone(), g.clone());
    }
    if let Some(p) = &v.preferred_username {
        h.insert(ids.preferred_username.clone(), p.clone());
    }
    // Identity in a response: no cache may keep it for someone else.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// 400 for a path that another decoding would read differently while rules restrict paths.
fn ambiguous_path(
    reason: &'static str,
    path: &str,
    headers: &HeaderMap,
    conn: ConnInfo,
    logs: &LogThrottle,
) -> Response<Body> {
    if logs.audit(conn.client, "path_refused", reason) {
        tracing::warn!(target: "samlgate::audit", event = "path_refused", reason, path = %clip_path(path), client = %conn.client);
    }
    pages::simple(
        StatusCode::BAD_REQUEST,
        "ambiguous_path",
        "This address is encoded in a way the gateway cannot check. Use the plain address.",
        pages::accepts_html(headers),
    )
}

/// 200 for a forward-auth check on an anonymous path. No identity — and Envoy, which only
/// replaces the headers an answer carries, is told to drop the client's copies of them.
fn anonymous_response(policy: &Policy) -> Response<Body> {
    let mut r = Response::new(proxy::full(Bytes::new()));
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(list) = &policy.envoy_removals.anonymous {
        h.insert(ENVOY_REMOVE.clone(), list.clone());
    }
    r
}

static ENVOY_REMOVE: HeaderName = HeaderName::from_static("x-envoy-auth-headers-to-remove");

/// `x-envoy-auth-headers-to-remove` values, computed once per policy. Envoy replaces only the
/// headers a forward-auth answer carries, so each 200 names the identity headers it does not
/// carry (all of them on an anonymous path; email, groups or display name when the user has
/// none; names a reload retired), and a client's copy of them cannot stay; plus the exact
/// foreign identity names and routing overrides ([`IdentityHeaders::removable_names`]).
struct EnvoyRemovals {
    anonymous: Option<HeaderValue>,
    /// Indexed by which optional values a session has: bit 0 email, 1 groups, 2 display name.
    signed_in: [Option<HeaderValue>; 8],
}

impl EnvoyRemovals {
    fn new(ids: &IdentityHeaders) -> Self {
        let list = |carried: &[&HeaderName]| {
            let names: Vec<&str> = ids
                .stripped_names()
                .chain(ids.removable_names())
                .filter(|n| !carried.iter().any(|c| c.as_str() == *n))
                .collect();
            HeaderValue::from_str(&names.join(","))
                .ok()
                .filter(|_| !names.is_empty())
        };
        let signed_in = std::array::from_fn(|bits| {
            let mut carried = vec![&ids.user];
            for (bit, name) in [&ids.email, &ids.groups, &ids.preferred_username]
                .into_iter()
                .enumerate()
            {
                if bits & (1 << bit) != 0 {
                    carried.push(name);
                }
            }
            list(&carried)
        });
        EnvoyRemovals {
            anonymous: list(&[]),
            signed_in,
        }
    }

    fn signed_in(&self, v: &IdentityHeaderValues) -> Option<&HeaderValue> {
        let bits = usize::from(v.email.is_some())
            | usize::from(v.groups.is_some()) << 1
            | usize::from(v.preferred_username.is_some()) << 2;
        self.signed_in[bits].as_ref()
    }
}

/// `path` is `base` or below it (`base/...`).
fn is_under(path: &str, base: &str) -> bool {
    path.strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

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

/// The settings `SIGHUP` reloads without dropping sessions or connections: access rules,
/// authorization, identity header names and attribute mapping, trusted proxies, rate limits,
/// forward-auth. Swapped whole, so each request sees one consistent version.
pub struct Policy {
    pub rules: AccessRules,
    pub authz: AuthzSection,
    pub trusted: TrustedProxies,
    /// Per-client limits; kept across a reload unless `[rate_limits]` changed.
    pub limits: Arc<RateLimits>,
    limits_section: RateLimitSection,
    /// Names to inject, plus every name used earlier in this process for stripping: an
    /// upstream may still trust a header name that a reload retired.
    pub ids: IdentityHeaders,
    /// Attribute mapping, used at sign-in (existing sessions keep their values).
    pub headers: HeadersSection,
    pub forward_auth: ForwardAuthSection,
    envoy_removals: EnvoyRemovals,
    /// Repeated refusals' log lines, summarised per client; kept across every reload.
    pub logs: Arc<LogThrottle>,
}

impl Policy {
    /// Fails only on what validation already refused (settings come validated).
    fn from_settings(s: &Settings, previous: Option<&Policy>) -> Result<Policy, String> {
        let mut ids = IdentityHeaders::from_config(&s.headers);
        if let Some(p) = previous {
            ids.also_strip(&p.ids);
        }
        Ok(Policy {
            rules: AccessRules::compile(&s.access).map_err(|e| e.to_string())?,
            authz: s.authz.clone(),
            trusted: TrustedProxies::parse(&s.trusted_proxies, "server.trusted_proxies")
                .map_err(|e| e.to_string())?,
            limits: match previous {
                Some(p) if p.limits_section == s.rate_limits => p.limits.clone(),
                _ => Arc::new(RateLimits::new(&s.rate_limits).map_err(|e| e.to_string())?),
            },
            limits_section: s.rate_limits.clone(),
            envoy_removals: EnvoyRemovals::new(&ids),
            ids,
            headers: s.headers.clone(),
            forward_auth: s.forward_auth.clone(),
            logs: previous.map_or_else(Default::default, |p| p.logs.clone()),
        })
    }

    /// Checks `limit` for this client: `Some` is the 429 to answer (logged and counted).
    fn over_limit(
        &self,
        limit: Limit,
        conn: ConnInfo,
        headers: &HeaderMap,
        metrics: &Metrics,
    ) -> Option<Response<Body>> {
        let retry_after = self.limits.check(limit, conn.client).err()?;
        if self.logs.audit(conn.client, "rate_limited", limit.as_str()) {
            tracing::warn!(target: "samlgate::audit", event = "rate_limited", limit = limit.as_str(), retry_after_secs = pages::retry_after_secs(retry_after), client = %conn.client);
        }
        metrics.rate_limited(limit.as_str());
        Some(pages::too_many_requests(
            retry_after,
            pages::accepts_html(headers),
        ))
    }
}

/// The gateway's endpoint paths, derived once from config.
#[derive(Debug, Clone)]
pub struct Paths {
    pub prefix: String,
    pub login: String,
    pub acs: String,
    pub metadata: String,
    pub logout: String,
    /// Forward-auth checks (`/saml/auth`, and `/saml/auth/<original path>` from Envoy).
    pub auth: String,
    /// Single Logout (HTTP-Redirect binding): LogoutRequests and LogoutResponses from the IdP.
    pub slo: String,
    /// The SCIM endpoint's base path, when `[scim]` is enabled.
    pub scim: Option<String>,
}

/// Which phase handles a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Healthz,
    Readyz,
    Login,
    Acs,
    Metadata,
    Logout,
    Slo,
    ForwardAuth,
    /// The SCIM endpoint (`scim.path` and below): bearer-token protected, never forwarded.
    Scim,
    /// Under the gateway prefix but not an endpoint: 404, never forwarded.
    UnknownGatewayPath,
    Protected,
}

impl Route {
    /// The `route` label of this route's metrics.
    pub fn class(self) -> RouteClass {
        match self {
            Route::Healthz => RouteClass::Healthz,
            Route::Readyz => RouteClass::Readyz,
            Route::Login => RouteClass::Login,
            Route::Acs => RouteClass::Acs,
            Route::Metadata => RouteClass::Metadata,
            Route::Logout => RouteClass::Logout,
            Route::Slo => RouteClass::Slo,
            Route::ForwardAuth => RouteClass::ForwardAuth,
            Route::UnknownGatewayPath | Route::Scim => RouteClass::GatewayOther,
            Route::Protected => RouteClass::Protected,
        }
    }
}

/// Route by exact path (pure).
pub fn route(path: &str, p: &Paths) -> Route {
    match path {
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        _ if path == p.acs => Route::Acs,
        _ if p.scim.as_deref().is_some_and(|s| is_under(path, s)) => Route::Scim,
        _ if path == p.login => Route::Login,
        _ if path == p.metadata => Route::Metadata,
        _ if path == p.logout => Route::Logout,
        _ if path == p.slo => Route::Slo,
        _ if is_under(path, &p.auth) => Route::ForwardAuth,
        _ if is_under(path, &p.prefix) => Route::UnknownGatewayPath,
        _ => Route::Protected,
    }
}

pub struct Gateway {
    settings: Settings,
    paths: Paths,
    login_url: String,
    verifier: Arc<CurrentIdp>,
    sessions: Arc<dyn SessionStore>,
    pending: PendingLogins,
    replay: ReplayCache,
    /// LogoutRequest ids, apart from assertion ids: a flood of logout messages cannot push
    /// assertion ids out of theirs.
    slo_replay: ReplayCache,
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
    /// Ids of our own LogoutRequests awaiting the IdP's LogoutResponse (single use).
    logout_requests: moka::sync::Cache<String, ()>,
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
const LOGOUT_FORM_LIMIT: usize = 4096;
/// A request body the gateway reads itself (ACS post, sign-out form) must arrive whole within
/// this many times `server.header_read_timeout`: the setting operators already fit to their
/// slowest clients, and 3 × the default 10 s leaves a half-megabyte form room on a slow link.
const BODY_READ_TIMEOUT_FACTOR: u32 = 3;
/// Why a Single Logout message was refused: the status and page kind it gets, and the reason
/// the audit line `slo_refused` carries. Most are 400 `slo_refused`; a body too large, too
/// slow or a full verification queue keep the ACS's status and kind.
#[derive(Debug)]
struct SloRefusal {
    status: StatusCode,
    kind: &'static str,
    reason: String,
}

impl From<String> for SloRefusal {
    fn from(reason: String) -> Self {
        SloRefusal {
            status: StatusCode::BAD_REQUEST,
            kind: "slo_refused",
            reason,
        }
    }
}

impl SloRefusal {
    /// A body-reading (or queueing) failure, with the ACS's status and kind for it.
    fn from_body(e: LoginError) -> Self {
        SloRefusal {
            status: e.status(),
            kind: e.kind(),
            reason: e.reason(),
        }
    }
}

/// How long our LogoutRequest waits for the IdP's LogoutResponse.
const LOGOUT_REQUEST_TTL: Duration = Duration::from_secs(10 * 60);
/// Oldest IssueInstant accepted on a logout message from the IdP (plus clock skew).
const LOGOUT_MESSAGE_MAX_AGE_SECS: i64 = 10 * 60;

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
        let sp_metadata = Bytes::from(sp_metadata_xml_with_slo(
            &SpMetadata {
                entity_id: &s.sp_entity_id,
                acs_url: &s.acs_url,
                name_id_format: s.name_id_format.as_deref(),
                cert_pem: s.sp_cert_pem.as_deref(),
                want_assertions_signed: s.require_signed_assertion,
                authn_requests_signed: s.sign_authn_requests,
            },
            Some(&slo_url),
        ));
        let upstream = Upstream::new(&settings.upstream, &settings.proxy)?;
        let sessions: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(
            settings.session.max_sessions,
            settings.session.idle_timeout,
        ));
        let deprovision = Arc::new(Deprovisioner::new(sessions.clone()));
        let scim = crate::scim::open_for(&settings, &deprovision)?;
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
            // About 200,000 sign-ins in flight with ordinary return paths (a few hundred
            // bytes each); fewer, not more memory, if a flood brings long ones.
            pending: PendingLogins::new(s.login_timeout, 64 * 1024 * 1024),
            replay: ReplayCache::new(1_000_000),
            slo_replay: ReplayCache::new(100_000),
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
            logout_requests: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(LOGOUT_REQUEST_TTL)
                .build(),
            metrics: Arc::new(Metrics::new()),
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

    /// Applies a reloaded configuration: the [`Policy`] part, and a changed IdP metadata file
    /// (a new verifier), are swapped in at once (sessions and open connections are
    /// untouched); nothing changes unless all of it validates. The keys that need a restart
    /// are returned (and keep running as they are).
    pub fn reload(&self, new: &Settings) -> Result<Vec<&'static str>, String> {
        let mut new = new.clone();
        // Only `[saml]`'s other keys decide whether a restart is needed: the metadata file's
        // content is applied here (file mode) or refreshes on its own (URL mode).
        let metadata_xml = std::mem::replace(
            &mut new.saml.idp_metadata_xml,
            self.settings.saml.idp_metadata_xml.clone(),
        );
        new.saml.idp_metadata_file = self.settings.saml.idp_metadata_file.clone();
        let mut applied = self
            .applied_idp_metadata
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // A changed file gets a new verifier under the running `[saml]` settings. Only when
        // the gateway runs from a file and still does: a switch between file and URL needs a
        // restart (the URL refresh task would undo the file's metadata).
        let file_mode =
            self.settings.saml.idp_metadata_url.is_none() && new.saml.idp_metadata_url.is_none();
        let next_verifier = if file_mode && metadata_xml != *applied {
            let running = &self.settings.saml;
            let idp = parse_idp_metadata(&metadata_xml, running.idp_entity_id.as_deref())
                .map_err(|e| format!("saml.idp_metadata_file: {e}"))?;
            Some((idp.signing_cert_count, Verifier::new(running, idp)))
        } else {
            None
        };
        let restart = crate::config::restart_needed(&self.settings, &new);
        let old = self.policy.load();
        let next = Policy::from_settings(&new, Some(&old))?;
        // Everything validated: apply it all.
        self.policy.store(Arc::new(next));
        if let Some((signing_certs, verifier)) = next_verifier {
            let previous = self.verifier.get();
            if previous.idp.entity_id != verifier.idp.entity_id {
                tracing::warn!(from = %previous.idp.entity_id, to = %verifier.idp.entity_id, "the reloaded IdP metadata names another IdP; existing sessions stay until they expire or the process restarts");
            }
            self.verifier.set(Arc::new(verifier));
            *applied = metadata_xml;
            tracing::info!(signing_certs, "IdP metadata file reloaded");
        }
        Ok(restart)
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
        self.policy.load().limits.retain_recent();
    }

    pub fn session_count(&self) -> u64 {
        self.sessions.approximate_len()
    }

    /// Entry point for every request: never panics outward, always logs one access line.
    /// `upstream_slot`: the HTTP/1 connection's own upstream connection (see
    /// [`proxy::ConnSlot`]); `None` for HTTP/2.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        mut conn: ConnInfo,
        upstream_slot: Option<proxy::ConnSlot>,
    ) -> Response<Body> {
        let started = Instant::now();
        // One policy for the whole request, even if a reload lands meanwhile.
        let policy = self.policy.load_full();
        if !policy.trusted.is_empty() {
            conn.client = client_ip::client_ip(conn.peer.ip(), req.headers(), &policy.trusted);
        }
        let method = req.method().clone();
        // A clone shares the request's buffer (no copy): the path is only formatted if logged.
        let uri = req.uri().clone();
        let mut user: Option<String> = None;
        let which = route(uri.path(), &self.paths);
        let result = AssertUnwindSafe(async {
            match target::check(&method, &uri, req.headers(), &self.paths, which) {
                Err(refusal) => {
                    refuse_target(refusal, &method, &uri, req.headers(), conn, &policy.logs)
                }
                Ok(()) => {
                    self.dispatch(which, req, conn, upstream_slot, &policy, &mut user)
                        .await
                }
            }
        })
        .catch_unwind()
        .await;
        let resp = match result {
            Ok(r) => r,
            Err(_) => {
                tracing::error!(target: "samlgate::audit", event = "panic", method = %clip_method(&method), path = %clip_path(uri.path()), "request handler panicked; answered 500");
                pages::simple(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Something went wrong on this server. Please try again.",
                    false,
                )
            }
        };
        let status = resp.status().as_u16();
        self.metrics
            .request(which.class(), status, started.elapsed());
        // One line per request, except that a client's refusals (a 4xx samlgate answered
        // itself, not the upstream's) are summarised per interval: a flood cannot fill a disk.
        if tracing::enabled!(target: "samlgate::access", tracing::Level::INFO)
            && (!resp.status().is_client_error()
                || resp.extensions().get::<UpstreamAnswer>().is_some()
                || policy.logs.admit(conn.client, LogKind::Access { status }))
        {
            tracing::info!(
                target: "samlgate::access",
                method = %clip_method(&method),
                path = %clip_path(uri.path()),
                status,
                latency_us = started.elapsed().as_micros() as u64,
                user = user.as_deref().unwrap_or("-"),
                client = %conn.client,
                peer = %conn.peer.ip(),
            );
        }
        resp
    }

    async fn dispatch(
        &self,
        which: Route,
        req: Request<Incoming>,
        conn: ConnInfo,
        upstream_slot: Option<proxy::ConnSlot>,
        policy: &Policy,
        user: &mut Option<String>,
    ) -> Response<Body> {
        match which {
            Route::Healthz => plain(StatusCode::OK, "ok\n"),
            Route::Readyz => {
                if self.ready.load(Ordering::SeqCst) {
                    plain(StatusCode::OK, "ready\n")
                } else {
                    plain(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
                }
            }
            Route::Metadata => {
                let mut r = Response::new(proxy::full(self.sp_metadata.clone()));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/samlmetadata+xml"),
                );
                r
            }
            Route::Login => self.explicit_login(&req, conn, policy),
            Route::Acs => self.acs(req, conn, policy, user).await,
            Route::Logout => self.logout(req, conn, user).await,
            Route::Slo => self.slo(req, conn, policy, user).await,
            Route::ForwardAuth => self.forward_auth(&req, conn, policy, user).await,
            Route::Scim => match &self.scim {
                Some(scim) => scim.handle(req, conn.client).await,
                None => plain(StatusCode::NOT_FOUND, "not found\n"),
            },
            Route::UnknownGatewayPath => {
                let browser = pages::accepts_html(req.headers());
                pages::simple(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "There is nothing at this address.",
                    browser,
                )
            }
            Route::Protected => self.protected(req, conn, upstream_slot, policy, user).await,
        }
    }

    // ---- the pipeline for protected requests -------------------------------------------

    async fn protected(
        &self,
        mut req: Request<Incoming>,
        conn: ConnInfo,
        upstream_slot: Option<proxy::ConnSlot>,
        policy: &Policy,
        user: &mut Option<String>,
    ) -> Response<Body> {
        // route (access rules, on the path this request will be forwarded with)
        let requirement = match policy.rules.decide(
            req.method(),
            req.uri().path(),
            req.headers(),
            req.body().is_end_stream(),
        ) {
            Decision::Deny { rule } => {
                return self.denied_by_rule(rule, req.uri().path(), req.headers(), conn)
            }
            Decision::Ambiguous { reason } => {
                return ambiguous_path(reason, req.uri().path(), req.headers(), conn, &policy.logs)
            }
            Decision::Anonymous { .. } => None,
            Decision::Authenticate { requirement, .. } => Some(requirement),
        };

        // authenticate and authorize (anonymous routes: neither, and no identity headers)
        let mut session_key = None;
        let session = match requirement {
            None => None,
            Some(requirement) => {
                let Some((key, session)) = self.authenticate(req.headers()).await else {
                    return self.challenge(&req, conn, policy);
                };
                let session = match self.scim_view(session, policy, req.headers(), conn).await {
                    Ok(s) => s,
                    Err(refused) => return refused,
                };
                session_key = Some(key);
                // (for the access log only: no copy when it is off)
                if tracing::enabled!(target: "samlgate::access", tracing::Level::INFO) {
                    *user = Some(session.identity.user.clone());
                }
                if let Err(denial) = requirement.authorize(&session.identity, &policy.authz) {
                    // Never throttled: it takes a valid session, so no anonymous flood can
                    // produce it, and each line is the record of who was refused where.
                    tracing::warn!(target: "samlgate::audit", event = "access_denied", user = %session.identity.user, reason = %denial.reason(), path = %clip_path(req.uri().path()), client = %conn.client);
                    let browser = pages::accepts_html(req.headers());
                    return pages::forbidden(
                        &session.identity.user,
                        &denial.user_message(),
                        &self.paths.logout,
                        browser,
                    );
                }
                Some(session)
            }
        };

        // rewrite
        let upgrade = proxy::is_upgrade_request(&req);
        if let (true, Some(key)) = (upgrade, session_key) {
            // A tunnel lasts no longer than the session it was opened under; ending a user's
            // sessions (SCIM, admin API) makes every tunnel ask at once.
            let store = self.sessions.clone();
            req.extensions_mut().insert(TunnelSession {
                alive: Arc::new(move || {
                    let store = store.clone();
                    Box::pin(async move { store.get(&key).await.is_some() })
                }),
                every: self.settings.proxy.upgrade_session_check,
                recheck: Some(self.deprovision.tunnel_recheck()),
                user: session
                    .as_ref()
                    .map(|s| s.identity.user.clone())
                    .unwrap_or_default(),
            });
        }
        let client_host = req.headers().get(header::HOST).cloned().or_else(|| {
            req.uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let fwd = Forwarded {
            client_ip: conn.client,
            proto: self.client_proto(conn),
            host: client_host.clone(),
        };
        let [d0, d1, d2, d3] = crate::session::cookie::DEFAULT_NAMES;
        let cookies = [
            self.settings.session.cookie_name.as_str(),
            self.settings.session.login_cookie_name.as_str(),
            d0,
            d1,
            d2,
            d3,
        ];
        proxy::rewrite_request_headers(
            req.headers_mut(),
            &policy.ids,
            &cookies,
            session.as_ref().map(|s| &s.headers),
            &fwd,
            upgrade,
        );

        // forward (on this HTTP/1 connection's own upstream connection when it has one)
        let browser = pages::accepts_html(req.headers());
        match self
            .upstream
            .forward_on(req, client_host, upgrade, upstream_slot)
            .await
        {
            Ok(mut resp) => {
                // The application's own 4xx is no refusal of ours: its access line stays.
                if resp.status().is_client_error() {
                    resp.extensions_mut().insert(UpstreamAnswer);
                }
                resp
            }
            Err(e) => {
                if let Some(kind) = UpstreamErrorKind::of(&e) {
                    self.metrics.upstream_error(kind);
                }
                tracing::warn!(target: "samlgate::upstream", error = %e, "upstream request failed");
                pages::upstream_error(e.status(), browser)
            }
        }
    }

    /// 403 for a path a `deny` rule covers (whoever asks).
    fn denied_by_rule(
        &self,
        rule: &str,
        path: &str,
        headers: &HeaderMap,
        conn: ConnInfo,
    ) -> Response<Body> {
        if self.logs().audit(conn.client, "access_denied", "deny rule") {
            tracing::warn!(target: "samlgate::audit", event = "access_denied", reason = "deny rule", rule = %rule, path = %clip_path(path), client = %conn.client);
        }
        pages::simple(
            StatusCode::FORBIDDEN,
            "forbidden",
            "This address is not available through the gateway.",
            pages::accepts_html(headers),
        )
    }

    fn client_proto(&self, conn: ConnInfo) -> &'static str {
        if conn.tls || self.settings.public_url.scheme() == "https" {
            "https"
        } else {
            "http"
        }
    }

    /// SCIM's say on a live session: a user SCIM no longer admits loses every session here
    /// (403 "account disabled"), and `scim.groups_source` may give the request other groups
    /// (identity and header values recomputed from the current SCIM data).
    async fn scim_view(
        &self,
        session: Arc<Session>,
        policy: &Policy,
        headers: &HeaderMap,
        conn: ConnInfo,
    ) -> Result<Arc<Session>, Response<Body>> {
        let Some(scim) = &self.scim else {
            return Ok(session);
        };
        match scim.view(&session, &policy.ids) {
            Ok(view) => Ok(view),
            Err(admission) => {
                let user = session.identity.user.clone();
                tracing::warn!(target: "samlgate::audit", event = "access_denied", user = %user, reason = admission.reason(), client = %conn.client);
                self.deprovision
                    .end_user(&user, crate::deprovision::EndReason::NotAdmitted)
                    .await;
                let (headline, sentence) = crate::scim::DISABLED_PAGE;
                Err(pages::login_failed(
                    StatusCode::FORBIDDEN,
                    headline,
                    sentence,
                    &self.login_url,
                    pages::accepts_html(headers),
                    "account_disabled",
                ))
            }
        }
    }

    /// Finds a live session from the cookie; the HMAC is checked before any lookup.
    async fn authenticate(&self, headers: &HeaderMap) -> Option<(SessionKey, Arc<Session>)> {
        for value in find_cookies(headers, &self.settings.session.cookie_name) {
            let Some(id) = self.session_sealer.open(value) else {
                continue;
            };
            let key = SessionKey::from_id(&id);
            if let Some(s) = self.sessions.get(&key).await {
                return Some((key, s));
            }
        }
        None
    }

    /// No session: browsers navigating are sent to the IdP, everything else gets 401.
    fn challenge(
        &self,
        req: &Request<Incoming>,
        conn: ConnInfo,
        policy: &Policy,
    ) -> Response<Body> {
        let return_path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        if pages::is_browser_navigation(req.method(), req.headers()) {
            let return_path = safe_return_path(return_path).unwrap_or("/");
            return self.start_login(req.headers(), return_path, conn, policy);
        }
        self.unauthenticated(return_path)
    }

    /// 401 with the login URL that returns to `return_path` (never a redirect: API clients
    /// and forward-auth proxies need the status).
    fn unauthenticated(&self, return_path: &str) -> Response<Body> {
        let login = format!(
            "{}?rd={}",
            self.login_url,
            percent_encoding::utf8_percent_encode(return_path, percent_encoding::NON_ALPHANUMERIC)
        );
        let mut r = pages::json(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Sign in first.",
            &[("login_url", &login)],
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("SAML realm=\"samlgate\""),
        );
        r
    }

    // ---- forward-auth ----------------------------------------------------------------------

    /// `{prefix}/auth`: may the original request (described by a trusted proxy) pass? 200 with
    /// the identity headers, 401 (or the sign-in redirect for browsers, if configured), 403.
    /// The same route → authenticate → authorize phases as a proxied request, without the
    /// forwarding.
    async fn forward_auth(
        &self,
        req: &Request<Incoming>,
        conn: ConnInfo,
        policy: &Policy,
        user: &mut Option<String>,
    ) -> Response<Body> {
        let browser = pages::accepts_html(req.headers());
        if !policy.forward_auth.enabled {
            return pages::simple(
                StatusCode::NOT_FOUND,
                "not_found",
                "There is nothing at this address.",
                browser,
            );
        }
        let original = match forward_auth::original_request(
            req.method(),
            req.uri().path(),
            req.uri().query(),
            &self.paths.auth,
            req.headers(),
            self.peer_is_trusted(policy, conn),
        ) {
            Ok(o) => o,
            Err(e) => {
                if policy
                    .logs
                    .audit(conn.client, "forward_auth_refused", "original request")
                {
                    tracing::warn!(target: "samlgate::audit", event = "forward_auth_refused", reason = %e, client = %conn.client);
                }
                // 403, not 400: nginx's auth_request turns any answer but 2xx/401/403 into a
                // 500, and these headers may be a client's, passed through by the proxy.
                return pages::simple(
                    StatusCode::FORBIDDEN,
                    "bad_forward_auth_request",
                    "The proxy described the original request in a way that cannot be trusted.",
                    false,
                );
            }
        };

        // Rules that depend on the path (or method) cannot be judged without knowing it: a
        // proxy that is not trusted, or that does not say which request it asks about, gets
        // no answer. (nginx's auth_request subrequest is always GET: X-Original-Method.)
        let unknown = if !original.described && !policy.rules.path_independent() {
            Some("the original URI is unknown (peer not in server.trusted_proxies, or no X-Original-URI / X-Forwarded-Uri) and access rules depend on it")
        } else if !original.method_described && !policy.rules.method_independent() {
            Some("the original method is unknown (no X-Original-Method / X-Forwarded-Method from a trusted proxy) and access rules depend on it")
        } else {
            None
        };
        if let Some(reason) = unknown {
            if policy
                .logs
                .audit(conn.client, "forward_auth_refused", reason)
            {
                tracing::warn!(target: "samlgate::audit", event = "forward_auth_refused", reason, peer = %conn.peer.ip(), client = %conn.client);
            }
            return pages::simple(
                StatusCode::BAD_REQUEST,
                "bad_forward_auth_request",
                "The proxy did not say which request to check.",
                false,
            );
        }

        // route: the access rules, on the original request
        let requirement = match policy
            .rules
            // The original body is not ours to see: a preflight is judged by its headers.
            .decide(&original.method, original.path(), req.headers(), true)
        {
            Decision::Deny { rule } => {
                self.metrics.forward_auth(ForwardAuthResult::Denied);
                return self.denied_by_rule(rule, original.path(), req.headers(), conn);
            }
            Decision::Ambiguous { reason } => {
                self.metrics.forward_auth(ForwardAuthResult::Denied);
                return ambiguous_path(reason, original.path(), req.headers(), conn, &policy.logs);
            }
            Decision::Anonymous { .. } => {
                self.metrics.forward_auth(ForwardAuthResult::Anonymous);
                return anonymous_response(policy);
            }
            Decision::Authenticate { requirement, .. } => requirement,
        };

        // authenticate
        let Some((_key, session)) = self.authenticate(req.headers()).await else {
            self.metrics
                .forward_auth(ForwardAuthResult::Unauthenticated);
            // Guessing at cookies through the check endpoint is limited per client.
            if let Some(r) =
                policy.over_limit(Limit::AuthFailure, conn, req.headers(), &self.metrics)
            {
                return r;
            }
            if policy.forward_auth.redirect_browsers
                && pages::is_browser_navigation(&original.method, req.headers())
            {
                let return_path = safe_return_path(&original.uri).unwrap_or("/");
                return self.start_login(req.headers(), return_path, conn, policy);
            }
            return self.unauthenticated(&original.uri);
        };
        let session = match self.scim_view(session, policy, req.headers(), conn).await {
            Ok(s) => s,
            Err(refused) => return refused,
        };
        *user = Some(session.identity.user.clone());

        // authorize
        if let Err(denial) = requirement.authorize(&session.identity, &policy.authz) {
            // Never throttled (it takes a valid session; see `protected`).
            tracing::warn!(target: "samlgate::audit", event = "access_denied", user = %session.identity.user, reason = %denial.reason(), path = %clip_path(original.path()), via = "forward_auth", client = %conn.client);
            self.metrics.forward_auth(ForwardAuthResult::Denied);
            return pages::forbidden(
                &session.identity.user,
                &denial.user_message(),
                &self.paths.logout,
                browser,
            );
        }
        self.metrics.forward_auth(ForwardAuthResult::Allowed);
        identity_response(policy, &session)
    }

    /// Whether the TCP peer is a configured trusted proxy (whose `X-Forwarded-*` count).
    fn peer_is_trusted(&self, policy: &Policy, conn: ConnInfo) -> bool {
        policy.trusted.contains(conn.peer.ip())
    }

    // ---- sign-in -------------------------------------------------------------------------

    fn login_cookie(&self) -> CookieSpec<'_> {
        let s = &self.settings.session;
        CookieSpec {
            name: &s.login_cookie_name,
            path: "/",
            domain: s.cookie_domain.as_deref(),
            secure: s.secure,
            // The IdP's POST back is cross-site: only SameSite=None survives it (and needs
            // Secure). Over plain http browsers refuse None without Secure, so fall back to Lax.
            same_site: if s.secure {
                SameSite::None
            } else {
                SameSite::Lax
            },
            max_age_secs: Some(self.settings.saml.login_timeout.as_secs()),
        }
    }

    fn session_cookie(&self) -> CookieSpec<'_> {
        let s = &self.settings.session;
        CookieSpec {
            name: &s.cookie_name,
            path: &s.cookie_path,
            domain: s.cookie_domain.as_deref(),
            secure: s.secure,
            same_site: SameSite::Lax,
            max_age_secs: None,
        }
    }

    fn explicit_login(
        &self,
        req: &Request<Incoming>,
        conn: ConnInfo,
        policy: &Policy,
    ) -> Response<Body> {
        let browser = pages::accepts_html(req.headers());
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return pages::simple(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Use GET to start signing in.",
                browser,
            );
        }
        let rd = req.uri().query().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "rd")
                .map(|(_, v)| v.into_owned())
        });
        // No `rd`: behind nginx (`error_page 401 = /saml/login`) the original URI comes from a
        // trusted proxy's X-Original-URI / X-Forwarded-Uri.
        let rd = rd.unwrap_or_else(|| {
            forward_auth::original_request(
                req.method(),
                req.uri().path(),
                None,
                &self.paths.auth,
                req.headers(),
                self.peer_is_trusted(policy, conn),
            )
            .map_or_else(|_| "/".to_string(), |o| o.uri)
        });
        match safe_return_path(&rd) {
            Some(path) => self.start_login(req.headers(), path, conn, policy),
            None => {
                if policy.logs.audit(conn.client, "login_refused", "rd") {
                    tracing::warn!(target: "samlgate::audit", event = "login_refused", reason = "rd is not a local path", rd = %crate::saml::error::clip(&rd), client = %conn.client);
                }
                pages::simple(StatusCode::BAD_REQUEST, "bad_return_path", "The address to return to after sign-in is not on this site, so sign-in was not started.", browser)
            }
        }
    }

    /// Records a pending login bound to this browser and redirects to the IdP.
    fn start_login(
        &self,
        headers: &HeaderMap,
        return_path: &str,
        conn: ConnInfo,
        policy: &Policy,
    ) -> Response<Body> {
        // Each start costs a pending-login entry and an IdP round trip: limited per client.
        if let Some(r) = policy.over_limit(Limit::SignIn, conn, headers, &self.metrics) {
            return r;
        }
        // A return path into the gateway itself (`/saml/login` as the original URI behind
        // nginx's `error_page 401 = /saml/login`, the ACS, …) would start over: land on "/".
        let return_path = match route(
            return_path.split_once('?').map_or(return_path, |(p, _)| p),
            &self.paths,
        ) {
            Route::Protected => return_path,
            _ => "/",
        };
        let request_id = new_request_id();
        let relay = random_token();
        let existing = browser_ids(
            headers,
            &self.settings.session.login_cookie_name,
            &self.login_sealer,
        );
        let browser_id = existing.first().copied().unwrap_or_else(random_id);
        self.pending.insert(
            relay.clone(),
            PendingLogin {
                request_id: request_id.clone(),
                return_path: return_path.to_string(),
                browser: browser_hash(&browser_id),
            },
        );
        let s = &self.settings.saml;
        let verifier = self.verifier.get();
        let xml = authn_request_xml(&AuthnRequestSpec {
            id: &request_id,
            issue_instant: chrono::Utc::now(),
            destination: &verifier.idp.sso_redirect_url,
            acs_url: &s.acs_url,
            sp_entity_id: &s.sp_entity_id,
            name_id_format: s.name_id_format.as_deref(),
            force_authn: s.force_authn,
            is_passive: s.is_passive,
            authn_context_class_ref: s.authn_context_class_ref.as_deref(),
        });
        // Config guarantees the key when signing is on (saml.sign_authn_requests); never
        // fall back to an unsigned request.
        let signing_key = match (s.sign_authn_requests, verifier.sp_key()) {
            (false, _) => Ok(None),
            (true, Some(key)) => Ok(Some(key)),
            (true, None) => Err("saml.sign_authn_requests is on but no SP key is loaded".into()),
        };
        let location = match signing_key
            .and_then(|key| redirect_url(&verifier.idp.sso_redirect_url, &xml, &relay, key))
        {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the IdP redirect");
                return pages::simple(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Sign-in could not be started.",
                    true,
                );
            }
        };
        tracing::info!(target: "samlgate::audit", event = "login_started", request_id = %request_id, client = %conn.client);
        let mut r = Response::new(proxy::full(Bytes::new()));
        *r.status_mut() = StatusCode::FOUND;
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&location) {
            h.insert(header::LOCATION, v);
        }
        if let Ok(v) = HeaderValue::from_str(
            &self
                .login_cookie()
                .set(&self.login_sealer.seal(&browser_id)),
        ) {
            h.append(header::SET_COOKIE, v);
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }

    /// `POST /saml/acs`: the IdP's answer. Every failure is logged with its precise reason
    /// and shown to the person in plain words.
    async fn acs(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        policy: &Policy,
        user: &mut Option<String>,
    ) -> Response<Body> {
        // Before the body is read: each post may cost a signature verification.
        if let Some(r) = policy.over_limit(Limit::Acs, conn, req.headers(), &self.metrics) {
            return r;
        }
        let browser =
            pages::accepts_html(req.headers()) || !req.headers().contains_key(header::ACCEPT);
        let started = Instant::now();
        let mut return_path = None;
        match self.acs_inner(req, conn, policy, &mut return_path).await {
            Ok((resp, who)) => {
                self.metrics.sign_in_success();
                *user = Some(who);
                resp
            }
            Err(e) => {
                self.metrics.sign_in_failure(&e);
                tracing::warn!(
                    target: "samlgate::audit",
                    event = "login_failure",
                    kind = e.kind(),
                    reason = %e.reason(),
                    client = %conn.client,
                    elapsed_us = started.elapsed().as_micros() as u64,
                );
                let (headline, sentence) = e.user_message();
                let retry = match return_path.as_deref() {
                    Some(p) if p != "/" => format!(
                        "{}?rd={}",
                        self.login_url,
                        percent_encoding::utf8_percent_encode(
                            p,
                            percent_encoding::NON_ALPHANUMERIC
                        )
                    ),
                    _ => self.login_url.clone(),
                };
                pages::login_failed(e.status(), headline, sentence, &retry, browser, e.kind())
            }
        }
    }

    async fn acs_inner(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        current: &Policy,
        return_path: &mut Option<String>,
    ) -> Result<(Response<Body>, String), LoginError> {
        if req.method() != Method::POST {
            return Err(LoginError::Malformed(
                "the ACS accepts only POST (HTTP-POST binding)",
            ));
        }
        if !is_form_urlencoded(req.headers()) {
            return Err(LoginError::Malformed(
                "ACS body is not application/x-www-form-urlencoded",
            ));
        }
        let browsers = browser_ids(
            req.headers(),
            &self.settings.session.login_cookie_name,
            &self.login_sealer,
        );
        // base64 grows by 4/3 and form encoding can triple '+', '/', '='; leave room for both.
        let limit = self.settings.saml.max_response_bytes * 2 + 8192;
        let body = read_limited(req.into_body(), limit, self.body_read_timeout()).await?;

        let AcsForm {
            saml_response,
            relay_state,
        } = acs_form(&body)?;

        // Cheap structural gate first: garbage never consumes a pending login.
        let (xml, facts) = self.verifier.get().decode_and_screen(&saml_response)?;

        // Solicited: the RelayState is this browser's pending-login token. Unsolicited
        // (IdP-initiated, `saml.allow_idp_initiated`): no pending login matches and nothing in
        // the response answers a request; RelayState, if any, is at most a local path.
        let s = &self.settings.saml;
        let claimed = match relay_state.as_deref() {
            Some(relay) => match self.pending.claim(relay, &browsers) {
                Ok(p) => Some(p),
                Err(ClaimError::WrongBrowser) => {
                    return Err(LoginError::WrongBrowser {
                        login_cookie: !browsers.is_empty(),
                    })
                }
                Err(ClaimError::Unknown) => None,
            },
            None => None,
        };
        let (request_id, landing) = match claimed {
            Some(pending) => {
                *return_path = Some(pending.return_path.clone());
                (Some(pending.request_id), pending.return_path)
            }
            None => {
                // A response that answers a request we no longer hold is never unsolicited.
                policy::check_unsolicited(&facts, relay_state.is_some(), s.allow_idp_initiated)?;
                let landing = relay_state
                    .as_deref()
                    .and_then(safe_return_path)
                    .unwrap_or(&s.idp_initiated_default_path)
                    .to_string();
                tracing::info!(target: "samlgate::audit", event = "idp_initiated_response", landing = %clip_path(&landing), client = %conn.client);
                (None, landing)
            }
        };
        let unsolicited = request_id.is_none();

        let now = chrono::Utc::now();
        let permit = tokio::time::timeout(
            VERIFY_QUEUE_WAIT,
            self.verify_permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| LoginError::Busy)?
        .map_err(|_| LoginError::Internal("verification pool closed".into()))?;
        let verifier = self.verifier.get();
        let accepted = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            verifier.verify_signed(&xml, &facts, request_id.as_deref(), now)
        })
        .await
        .map_err(|e| {
            LoginError::Internal(if e.is_panic() {
                "signature verification panicked".into()
            } else {
                e.to_string()
            })
        })??;

        let replay_ttl = (accepted.replay_until - now)
            .to_std()
            .unwrap_or(Duration::from_secs(1));
        if !self.replay.first_use(&accepted.assertion_id, replay_ttl) {
            return Err(LoginError::Replay(accepted.assertion_id));
        }

        let h = &current.headers;
        let identity = policy::identity(
            &accepted,
            &AttributeMap {
                user: &h.user_attribute,
                email: &h.email_attribute,
                display_name: &h.display_name_attribute,
                groups: &h.groups_attribute,
                preferred_username: &h.preferred_username_attribute,
            },
        )?;
        // SCIM: a disabled, deleted (or, if required, unprovisioned) user gets no session.
        if let Some(scim) = &self.scim {
            scim.check_sign_in(&identity.user)?;
        }
        let headers = current
            .ids
            .values(&identity)
            .map_err(LoginError::BadUserId)?;

        let created_at = SystemTime::now();
        let mut expires_at = created_at + self.settings.session.max_lifetime;
        if let Some(idp_end) = accepted.session_not_on_or_after {
            let idp_end = SystemTime::from(idp_end);
            if idp_end < expires_at {
                expires_at = idp_end;
            }
        }
        let id = random_id();
        let key = SessionKey::from_id(&id);
        let who = identity.user.clone();
        tracing::info!(
            target: "samlgate::audit",
            event = "login_success",
            user = %who,
            groups = identity.groups.len(),
            session = %key.log_tag(),
            assertion_id = %crate::saml::error::clip(&accepted.assertion_id),
            idp_initiated = unsolicited,
            client = %conn.client,
        );
        self.sessions
            .insert(
                key,
                Arc::new(Session {
                    identity,
                    headers,
                    created_at,
                    expires_at,
                }),
            )
            .await;

        let mut r = Response::new(proxy::full(Bytes::new()));
        *r.status_mut() = StatusCode::SEE_OTHER;
        let hm = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&landing) {
            hm.insert(header::LOCATION, v);
        }
        if let Ok(v) =
            HeaderValue::from_str(&self.session_cookie().set(&self.session_sealer.seal(&id)))
        {
            hm.append(header::SET_COOKIE, v);
        }
        // The pending sign-in it bound is spent: no login cookie outlives it.
        if let Ok(v) = HeaderValue::from_str(&self.login_cookie().clear()) {
            hm.append(header::SET_COOKIE, v);
        }
        hm.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok((r, who))
    }

    // ---- sign-out ------------------------------------------------------------------------

    async fn logout(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        user: &mut Option<String>,
    ) -> Response<Body> {
        let session = self.authenticate(req.headers()).await;
        let browser = pages::accepts_html(req.headers());
        match *req.method() {
            Method::GET | Method::HEAD => match session {
                Some((key, s)) => {
                    *user = Some(s.identity.user.clone());
                    pages::logout_confirm(&self.paths.logout, &self.csrf_sealer.tag(&key.0))
                }
                None => self.signed_out(),
            },
            Method::POST => {
                let Some((key, s)) = session else {
                    return self.signed_out();
                };
                *user = Some(s.identity.user.clone());
                let body = match read_limited(
                    req.into_body(),
                    LOGOUT_FORM_LIMIT,
                    self.body_read_timeout(),
                )
                .await
                {
                    Ok(body) => body,
                    Err(e) => {
                        if self.logs().audit(conn.client, "logout_refused", e.kind()) {
                            tracing::warn!(target: "samlgate::audit", event = "logout_refused", reason = %e.reason(), user = %s.identity.user, client = %conn.client);
                        }
                        return pages::simple(
                            e.status(),
                            e.kind(),
                            "The sign-out form could not be read. Open the sign-out page and press the button again.",
                            browser,
                        );
                    }
                };
                let token = url::form_urlencoded::parse(&body)
                    .find(|(k, _)| k == "csrf")
                    .map(|(_, v)| v.into_owned());
                if !token.is_some_and(|t| self.csrf_sealer.verify_tag(&key.0, &t)) {
                    if self.logs().audit(conn.client, "logout_refused", "csrf") {
                        tracing::warn!(target: "samlgate::audit", event = "logout_refused", reason = "missing or wrong CSRF token", user = %s.identity.user, client = %conn.client);
                    }
                    return pages::simple(StatusCode::FORBIDDEN, "csrf", "Sign-out could not be confirmed. Open the sign-out page and press the button again.", browser);
                }
                self.sessions.remove(&key).await;
                self.metrics.sign_out();
                tracing::info!(target: "samlgate::audit", event = "logout", user = %s.identity.user, session = %key.log_tag(), client = %conn.client);
                match self.idp_logout(&s).await {
                    Some(r) => r,
                    None => self.signed_out(),
                }
            }
            _ => pages::simple(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Use the sign-out page.",
                browser,
            ),
        }
    }

    /// `/saml/slo`: Single Logout. `GET` is the HTTP-Redirect binding, `POST` the HTTP-POST
    /// binding (Okta answers by POST). A `SAMLRequest` is the IdP ending the person's sessions
    /// (IdP-initiated, or another SP's sign-out); a `SAMLResponse` answers the LogoutRequest we
    /// sent on sign-out. Both bindings end in the same checks ([`Self::end_sessions`],
    /// [`Self::finish_sp_logout`]); they differ in how the message is read and authenticated.
    async fn slo(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        policy: &Policy,
        user: &mut Option<String>,
    ) -> Response<Body> {
        // Logout messages come through the browser like ACS posts, and share their budget.
        if let Some(r) = policy.over_limit(Limit::Acs, conn, req.headers(), &self.metrics) {
            return r;
        }
        let browser =
            pages::accepts_html(req.headers()) || !req.headers().contains_key(header::ACCEPT);
        // Not HEAD: handling a logout message has side effects.
        let result = match *req.method() {
            Method::GET => self.slo_redirect(&req, conn, user).await,
            Method::POST => self.slo_post(req, conn, user).await,
            _ => {
                let mut r = pages::simple(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "Single Logout accepts GET (HTTP-Redirect binding) and POST (HTTP-POST binding).",
                    browser,
                );
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
                return r;
            }
        };
        match result {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(target: "samlgate::audit", event = "slo_refused", reason = %crate::saml::error::clip(&e.reason), client = %conn.client);
                pages::simple(
                    e.status,
                    e.kind,
                    "This sign-out message could not be accepted.",
                    browser,
                )
            }
        }
    }

    /// `GET /saml/slo`: the HTTP-Redirect binding (signature over the query octets).
    async fn slo_redirect(
        &self,
        req: &Request<Incoming>,
        conn: ConnInfo,
        user: &mut Option<String>,
    ) -> Result<Response<Body>, SloRefusal> {
        let raw = req.uri().query().unwrap_or("");
        if raw.len() > 4 * slo::MAX_LOGOUT_PARAM_BYTES {
            return Err("query string too long".to_string().into());
        }
        let m = slo::parse_redirect_query(raw)?;
        let v = self.verifier.get();
        let xml = slo::decode_redirect_param(&m.message)?;
        if m.param == "SAMLRequest" {
            let lr = slo::parse_logout_request(&xml)?;
            let required = self.settings.saml.require_signed_logout_requests;
            self.check_redirect_signature(&v, &m, required)?;
            self.end_sessions(&v, lr, m.relay_state.as_deref(), conn, user)
                .await
        } else {
            let lr = slo::parse_logout_response(&xml)?;
            // The IdP may leave its LogoutResponse unsigned (SimpleSAMLphp without
            // sign.logout); a signature that is there must verify. InResponseTo ties it to
            // our request.
            self.check_redirect_signature(&v, &m, false)?;
            self.finish_sp_logout(&v, lr, req.headers(), conn, user)
                .await
        }
    }

    /// `POST /saml/slo`: the HTTP-POST binding. The form is read like the ACS's (form type,
    /// size cap, read deadline); the XML goes through the ACS pre-filter with a logout root,
    /// and an enveloped signature is verified by libxmlsec1 on the blocking pool, after which
    /// only the bytes it covered are parsed. The signing rules are the Redirect binding's: a
    /// LogoutRequest must be signed unless `saml.require_signed_logout_requests` is off, a
    /// LogoutResponse may be unsigned, and a signature that is there must verify.
    async fn slo_post(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        user: &mut Option<String>,
    ) -> Result<Response<Body>, SloRefusal> {
        if !is_form_urlencoded(req.headers()) {
            return Err("POST body is not application/x-www-form-urlencoded"
                .to_string()
                .into());
        }
        let (parts, body) = req.into_parts();
        let body = read_limited(body, slo::MAX_LOGOUT_FORM_BYTES, self.body_read_timeout())
            .await
            .map_err(SloRefusal::from_body)?;
        let m = slo::parse_post_form(&body)?;
        let v = self.verifier.get();
        let request = m.param == "SAMLRequest";
        let root = if request {
            Root::LogoutRequest
        } else {
            Root::LogoutResponse
        };
        let facts = prefilter_root(m.xml.as_bytes(), &slo::prefilter_policy(&v.prefilter), root)
            .map_err(|e| format!("refused by the pre-filter: {e}"))?;
        let required = request && self.settings.saml.require_signed_logout_requests;
        let xml = if facts.response_signed {
            self.verified_logout_xml(&v, m.xml).await?
        } else if required {
            return Err("message is not signed".to_string().into());
        } else {
            m.xml
        };
        // Bindings §3.5.5.2: a signed POST message names where it was sent, so one signed for
        // another SP of the same IdP cannot be replayed here.
        let destination_required = |d: &Option<String>| match d {
            None if facts.response_signed => {
                Err("signed HTTP-POST message has no Destination".to_string())
            }
            _ => Ok(()),
        };
        if request {
            let lr = slo::parse_logout_request(&xml)?;
            destination_required(&lr.destination)?;
            self.end_sessions(&v, lr, m.relay_state.as_deref(), conn, user)
                .await
        } else {
            let lr = slo::parse_logout_response(&xml)?;
            destination_required(&lr.destination)?;
            self.finish_sp_logout(&v, lr, &parts.headers, conn, user)
                .await
        }
    }

    /// The signed content of a POST logout message, verified on the blocking pool under the
    /// same permits as sign-ins.
    async fn verified_logout_xml(
        &self,
        v: &Arc<Verifier>,
        xml: String,
    ) -> Result<String, SloRefusal> {
        let permit = tokio::time::timeout(
            VERIFY_QUEUE_WAIT,
            self.verify_permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| SloRefusal::from_body(LoginError::Busy))?
        .map_err(|_| "verification pool closed".to_string())?;
        let v = v.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            v.verify_logout_signature(&xml)
        })
        .await
        .map_err(|e| {
            if e.is_panic() {
                "signature verification panicked".to_string()
            } else {
                e.to_string()
            }
        })?
        .map_err(SloRefusal::from)
    }

    /// Checks a Redirect-binding signature: a present signature must verify; an absent one is
    /// accepted only when `required` is off.
    fn check_redirect_signature(
        &self,
        v: &Verifier,
        m: &slo::RedirectMessage,
        required: bool,
    ) -> Result<(), String> {
        if m.signed {
            // The current metadata's certificates (it may have been refreshed).
            let certs: Vec<openssl::x509::X509> = samael::service_provider::ServiceProvider {
                idp_metadata: v.idp.descriptor.clone(),
                ..Default::default()
            }
            .idp_signing_certs()
            .ok()
            .flatten()
            .unwrap_or_default()
            .iter()
            .filter_map(|c| openssl::x509::X509::from_der(c.der_data()).ok())
            .collect();
            if m.signature_valid(&certs) {
                Ok(())
            } else {
                Err("signature does not verify with the IdP's signing certificates".into())
            }
        } else if required {
            Err("message is not signed".into())
        } else {
            Ok(())
        }
    }

    /// The Issuers the IdP's logout messages may carry (see [`slo::accepted_issuers`]).
    fn logout_issuers(&self, v: &Verifier) -> Vec<String> {
        slo::accepted_issuers(&v.idp.entity_id, &self.settings.saml.extra_logout_issuers)
    }

    /// An authenticated LogoutRequest (either binding): envelope, times and single use, then
    /// every session it names ends, and the IdP gets its LogoutResponse.
    async fn end_sessions(
        &self,
        v: &Arc<Verifier>,
        lr: slo::LogoutRequest,
        relay_state: Option<&str>,
        conn: ConnInfo,
        user: &mut Option<String>,
    ) -> Result<Response<Body>, SloRefusal> {
        let s = &self.settings.saml;
        slo::check_envelope(
            lr.issuer.as_deref(),
            lr.destination.as_deref(),
            &self.logout_issuers(v),
            &self.slo_url,
        )?;
        let now = chrono::Utc::now();
        slo::check_times(
            lr.issue_instant,
            lr.not_on_or_after,
            now,
            v.skew,
            chrono::Duration::seconds(LOGOUT_MESSAGE_MAX_AGE_SECS),
        )?;
        let ttl = Duration::from_secs(LOGOUT_MESSAGE_MAX_AGE_SECS as u64) + s.clock_skew * 2;
        if !self.slo_replay.first_use(&lr.id, ttl) {
            return Err(format!(
                "LogoutRequest {} was already used",
                crate::saml::error::clip(&lr.id)
            )
            .into());
        }
        let mut ended = 0;
        if lr.session_indexes.is_empty() {
            ended += self.sessions.remove_by_subject(&lr.name_id, None).await;
        } else {
            for index in &lr.session_indexes {
                ended += self
                    .sessions
                    .remove_by_subject(&lr.name_id, Some(index))
                    .await;
            }
        }
        *user = Some(lr.name_id.clone());
        tracing::info!(target: "samlgate::audit", event = "slo", name_id = %crate::saml::error::clip(&lr.name_id), sessions_ended = ended, request_id = %crate::saml::error::clip(&lr.id), client = %conn.client);
        self.answer_logout_request(v, &lr.id, relay_state, now)
            .await
    }

    /// The LogoutResponse to the IdP, by the binding its metadata offers: HTTP-Redirect when
    /// it has one, else an auto-submit HTTP-POST page, else (nowhere to answer) the
    /// signed-out page.
    async fn answer_logout_request(
        &self,
        v: &Arc<Verifier>,
        in_response_to: &str,
        relay_state: Option<&str>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Response<Body>, SloRefusal> {
        let s = &self.settings.saml;
        let id = new_request_id();
        let response = |dest: &str| {
            slo::logout_response_xml(&LogoutResponseSpec {
                id: &id,
                issue_instant: now,
                destination: dest,
                in_response_to,
                issuer: &s.sp_entity_id,
                status_code: slo::STATUS_SUCCESS,
            })
        };
        if let Some(dest) = v.idp.slo_response_url.as_deref() {
            let location = redirect_message_url(
                dest,
                "SAMLResponse",
                &response(dest),
                relay_state,
                v.sp_key(),
            )?;
            return Ok(self.redirect_clearing_session(&location));
        }
        let Some(dest) = v.idp.slo_post_response_url.as_deref() else {
            // Nowhere to answer: the person simply sees they are signed out.
            return Ok(self.signed_out());
        };
        self.auto_post(dest, "SAMLResponse", response(dest), &id, relay_state)
            .await
            .map_err(SloRefusal::from)
    }

    /// An auto-submit page that carries `xml` (whose root `ID` is `id`) to the IdP's `dest` by
    /// the HTTP-POST binding, signed with an enveloped signature when an SP key is configured
    /// (libxmlsec1, on the blocking pool). It also clears this browser's session cookie.
    async fn auto_post(
        &self,
        dest: &str,
        param: &str,
        xml: String,
        id: &str,
        relay_state: Option<&str>,
    ) -> Result<Response<Body>, String> {
        let s = &self.settings.saml;
        let xml = match s.sp_key_pem.clone() {
            Some(key) => {
                let (cert, id) = (s.sp_cert_pem.clone(), id.to_string());
                tokio::task::spawn_blocking(move || {
                    slo::sign_enveloped(&xml, &id, &key, cert.as_deref())
                })
                .await
                .map_err(|e| format!("signing the {param} failed: {e}"))??
            }
            None => xml,
        };
        let (html, csp) = slo::auto_post_page(dest, param, &xml, relay_state)?;
        let mut r = Response::new(proxy::full(html));
        let csp = HeaderValue::from_str(&csp).map_err(|_| "SLO URL unfit for a CSP".to_string())?;
        pages::set_page_headers(r.headers_mut(), "text/html; charset=utf-8", csp);
        if let Ok(v) = HeaderValue::from_str(&self.session_cookie().clear()) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
        Ok(r)
    }

    /// The IdP's LogoutResponse to our LogoutRequest (either binding, authenticated as the
    /// binding allows): Issuer and Destination first, then InResponseTo consumes our pending
    /// id (single use), then the local session, if still there, ends.
    async fn finish_sp_logout(
        &self,
        v: &Verifier,
        lr: slo::LogoutResponse,
        headers: &HeaderMap,
        conn: ConnInfo,
        user: &mut Option<String>,
    ) -> Result<Response<Body>, SloRefusal> {
        let irt = lr
            .in_response_to
            .as_deref()
            .ok_or("no InResponseTo".to_string())?;
        // Before the pending id is spent: a message refused here leaves it for the real one.
        slo::check_envelope(
            lr.issuer.as_deref(),
            lr.destination.as_deref(),
            &self.logout_issuers(v),
            &self.slo_url,
        )?;
        if self.logout_requests.remove(irt).is_none() {
            return Err(format!(
                "InResponseTo {} answers no LogoutRequest of ours (or was used)",
                crate::saml::error::clip(irt)
            )
            .into());
        }
        // Our local session is already gone; the session cookie is cleared regardless.
        if let Some((key, s)) = self.authenticate(headers).await {
            *user = Some(s.identity.user.clone());
            self.sessions.remove(&key).await;
        }
        let status = lr.status_code.as_deref().unwrap_or("-");
        if status != slo::STATUS_SUCCESS {
            tracing::warn!(target: "samlgate::audit", event = "slo_partial", status = %crate::saml::error::clip(status), request_id = %crate::saml::error::clip(irt), client = %conn.client);
        } else {
            tracing::info!(target: "samlgate::audit", event = "slo_complete", request_id = %crate::saml::error::clip(irt), client = %conn.client);
        }
        Ok(self.signed_out())
    }

    /// A 303 to `location` that also clears this browser's session cookie.
    fn redirect_clearing_session(&self, location: &str) -> Response<Body> {
        let mut r = Response::new(proxy::full(Bytes::new()));
        *r.status_mut() = StatusCode::SEE_OTHER;
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(location) {
            h.insert(header::LOCATION, v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.session_cookie().clear()) {
            h.append(header::SET_COOKIE, v);
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }

    /// SP-initiated Single Logout: when the IdP has an SLO endpoint and we can sign, the
    /// browser is sent there with a signed LogoutRequest for this session. By HTTP-Redirect
    /// when the IdP offers it, through a page that refreshes to it
    /// (`pages::signing_out_at_idp`: a redirect after the sign-out form would be blocked by
    /// the form page's CSP `form-action`); else by an auto-submit HTTP-POST page.
    async fn idp_logout(&self, session: &Session) -> Option<Response<Body>> {
        let v = self.verifier.get();
        let key = v.sp_key()?;
        let (dest, by_redirect) = match v.idp.slo_redirect_url.as_deref() {
            Some(url) => (url, true),
            None => (v.idp.slo_post_url.as_deref()?, false),
        };
        if !pages::is_http_url(dest) {
            tracing::error!(slo_url = %crate::saml::error::clip(dest), "the IdP's SingleLogoutService is not an http(s) URL; signing out locally only");
            return None;
        }
        let id = new_request_id();
        let xml = slo::logout_request_xml(&LogoutRequestSpec {
            id: &id,
            issue_instant: chrono::Utc::now(),
            destination: dest,
            issuer: &self.settings.saml.sp_entity_id,
            name_id: &session.identity.name_id,
            name_id_format: session.identity.name_id_format.as_deref(),
            session_index: session.identity.session_index.as_deref(),
        });
        let response = if by_redirect {
            redirect_message_url(dest, "SAMLRequest", &xml, None, Some(key)).map(|location| {
                let mut r = pages::signing_out_at_idp(&location);
                if let Ok(v) = HeaderValue::from_str(&self.session_cookie().clear()) {
                    r.headers_mut().append(header::SET_COOKIE, v);
                }
                r
            })
        } else {
            self.auto_post(dest, "SAMLRequest", xml, &id, None).await
        };
        match response {
            Ok(r) => {
                self.logout_requests.insert(id.clone(), ());
                tracing::info!(target: "samlgate::audit", event = "slo_started", request_id = %id, user = %session.identity.user);
                Some(r)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot build the IdP LogoutRequest; signing out locally only");
                None
            }
        }
    }

    /// Deadline for a whole request body the gateway reads itself.
    fn body_read_timeout(&self) -> Duration {
        self.settings
            .server
            .header_read_timeout
            .saturating_mul(BODY_READ_TIMEOUT_FACTOR)
    }

    fn signed_out(&self) -> Response<Body> {
        let mut r = pages::signed_out(&self.login_url);
        if let Ok(v) = HeaderValue::from_str(&self.session_cookie().clear()) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
        r
    }
}

impl LiveCounts for Gateway {
    fn sessions_active(&self) -> u64 {
        self.session_count()
    }
    fn replay_cache_entries(&self) -> u64 {
        self.replay.approximate_len()
    }
    fn pending_logins(&self) -> u64 {
        self.pending.approximate_len()
    }
}

/// Reads a request body up to `limit` bytes within `deadline`; larger bodies are refused
/// without buffering them, and one still arriving at the deadline is dropped (its
/// connection with it).
async fn read_limited(
    body: Incoming,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, LoginError> {
    match tokio::time::timeout(deadline, Limited::new(body, limit).collect()).await {
        Err(_elapsed) => Err(LoginError::BodyTimeout { after: deadline }),
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(LoginError::BodyTooLarge { limit })
        }
        Ok(Err(_)) => Err(LoginError::Malformed("the request body could not be read")),
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(proxy::full(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn clip_path(p: &str) -> String {
    crate::saml::error::clip(p)
}

/// Longest method a log line shows whole (an extension method may be as long as the request
/// line); hyper admits only token characters, so nothing else needs neutralising.
const METHOD_LOG_CHARS: usize = 32;

/// The method for a log line: borrowed when short (every real one), clipped otherwise.
fn clip_method(m: &Method) -> std::borrow::Cow<'_, str> {
    let m = m.as_str();
    if m.len() <= METHOD_LOG_CHARS {
        std::borrow::Cow::Borrowed(m)
    } else {
        std::borrow::Cow::Owned(crate::saml::error::clip_to(m, METHOD_LOG_CHARS))
    }
}

/// The answer to a request [`target::check`] refused: audited with its precise reason,
/// never dispatched.
fn refuse_target(
    refusal: TargetRefusal,
    method: &Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    conn: ConnInfo,
    logs: &LogThrottle,
) -> Response<Body> {
    let reason = refusal.reason();
    match refusal {
        TargetRefusal::EncodedGatewayPath | TargetRefusal::DotSegment => {
            return ambiguous_path(reason, uri.path(), headers, conn, logs)
        }
        _ => {
            if logs.audit(conn.client, "request_refused", reason) {
                tracing::warn!(target: "samlgate::audit", event = "request_refused", reason, method = %clip_method(method), request_target = %clip_path(&uri.to_string()), client = %conn.client);
            }
        }
    }
    let mut response = pages::simple(
        refusal.status(),
        refusal.code(),
        refusal.message(),
        pages::accepts_html(headers),
    );
    if refusal == TargetRefusal::Connect {
        // A 405 names what is allowed (RFC 9110 §15.5.6): any method but CONNECT goes on.
        response.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
        );
    }
    response
}

/// Whether a POST carries an HTML form (`application/x-www-form-urlencoded`, any parameters):
/// the only body the ACS and the HTTP-POST binding of `/saml/slo` read.
fn is_form_urlencoded(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_html_forms_are_read_as_saml_posts() {
        for (content_type, form) in [
            (Some("application/x-www-form-urlencoded"), true),
            (
                Some(" Application/X-WWW-Form-Urlencoded; charset=UTF-8"),
                true,
            ),
            (Some("multipart/form-data; boundary=x"), false),
            (Some("application/json"), false),
            (Some("text/plain"), false),
            (None, false),
        ] {
            let mut h = HeaderMap::new();
            if let Some(v) = content_type {
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
            }
            assert_eq!(super::is_form_urlencoded(&h), form, "{content_type:?}");
        }
    }

    use super::*;

    fn paths(acs: &str) -> Paths {
        Paths {
            prefix: "/saml".into(),
            login: "/saml/login".into(),
            acs: acs.into(),
            metadata: "/saml/metadata".into(),
            logout: "/saml/logout".into(),
            slo: "/saml/slo".into(),
            auth: "/saml/auth".into(),
            scim: None,
        }
    }

    #[test]
    fn scim_routes_only_when_enabled() {
        let mut p = paths("/saml/acs");
        assert_eq!(route("/scim/v2/Users", &p), Route::Protected);
        p.scim = Some("/scim/v2".into());
        assert_eq!(route("/scim/v2", &p), Route::Scim);
        assert_eq!(route("/scim/v2/Users/x", &p), Route::Scim);
        assert_eq!(route("/scim/v2x", &p), Route::Protected);
        assert_eq!(route("/scim", &p), Route::Protected);
    }

    #[test]
    fn routes() {
        let p = paths("/saml/acs");
        assert_eq!(route("/saml/acs", &p), Route::Acs);
        assert_eq!(route("/saml/login", &p), Route::Login);
        assert_eq!(route("/saml/metadata", &p), Route::Metadata);
        assert_eq!(route("/saml/logout", &p), Route::Logout);
        assert_eq!(route("/saml/slo", &p), Route::Slo);
        assert_eq!(route("/healthz", &p), Route::Healthz);
        assert_eq!(route("/readyz", &p), Route::Readyz);
        assert_eq!(route("/saml", &p), Route::UnknownGatewayPath);
        assert_eq!(route("/saml/other", &p), Route::UnknownGatewayPath);
        assert_eq!(route("/samlx", &p), Route::Protected);
        assert_eq!(route("/", &p), Route::Protected);
        assert_eq!(route("/saml/acs/", &p), Route::UnknownGatewayPath);
        assert_eq!(route("/saml/auth", &p), Route::ForwardAuth);
        assert_eq!(route("/saml/auth/api/items", &p), Route::ForwardAuth);
        assert_eq!(route("/saml/authx", &p), Route::UnknownGatewayPath);
    }

    #[test]
    fn long_methods_are_clipped_in_logs() {
        assert!(matches!(
            clip_method(&Method::GET),
            std::borrow::Cow::Borrowed("GET")
        ));
        let long = Method::from_bytes("X".repeat(400_000).as_bytes()).unwrap();
        let shown = clip_method(&long);
        assert_eq!(shown.chars().count(), METHOD_LOG_CHARS + 1, "{shown}");
        assert!(shown.ends_with('…'));
    }

    #[test]
    fn heavy_ai_acs_path_routes_outside_the_prefix() {
        let p = paths("/saml-post");
        assert_eq!(route("/saml-post", &p), Route::Acs);
        assert_eq!(route("/saml/acs", &p), Route::UnknownGatewayPath);
    }
}
