//! How forward-auth answers (`{prefix}/auth`, for nginx `auth_request`, Traefik `forwardAuth`,
//! Envoy `ext_authz`): the original request a trusted proxy describes goes through the same
//! [`Gateway::admit`] as a proxied request, and the answer is a status with the identity
//! headers instead of a forwarded request.

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::admission::{Admission, Ask, Refusal, Via};
use super::{ConnInfo, Gateway, Policy};
use crate::forward_auth;
use crate::metrics::ForwardAuthResult;
use crate::pages;
use crate::proxy::{self, Body, IdentityHeaders};
use crate::redirect::safe_return_path;
use crate::rules::AccessRules;
use crate::session::{IdentityHeaderValues, Session};

impl Gateway {
    /// `{prefix}/auth`: may the original request (described by a trusted proxy) pass? 200 with
    /// the identity headers, 401 (or the sign-in redirect for browsers, if configured), 403.
    /// The same [`Gateway::admit`] as a proxied request; only the answer differs.
    pub(super) async fn forward_auth(
        &self,
        req: &Request<Incoming>,
        conn: ConnInfo,
        policy: &Policy,
        user: &mut Option<String>,
    ) -> Response<Body> {
        if !policy.forward_auth.enabled {
            return pages::simple(
                StatusCode::NOT_FOUND,
                "not_found",
                "There is nothing at this address.",
                pages::accepts_html(req.headers()),
            );
        }
        let original = match self.original_request(req, conn, policy) {
            Ok(o) => o,
            Err(refused) => return refused.answer(),
        };
        let ask = Ask {
            method: &original.method,
            path: original.path(),
            headers: req.headers(),
            // The original body is not ours to see: a preflight is judged by its headers.
            body_empty: true,
            via: Via::ForwardAuth,
        };
        let (result, answer) = match self.admit(&ask, conn, policy).await {
            Admission::Anonymous => (ForwardAuthResult::Anonymous, anonymous_response(policy)),
            Admission::Admitted { session, .. } => {
                *user = Some(session.identity.user.clone());
                (
                    ForwardAuthResult::Allowed,
                    identity_response(policy, &session),
                )
            }
            Admission::Challenge => {
                let answer = if policy.forward_auth.redirect_browsers
                    && pages::is_browser_navigation(&original.method, req.headers())
                {
                    let return_path = safe_return_path(&original.uri).unwrap_or("/");
                    self.start_login(req.headers(), return_path, conn, policy)
                        .await
                } else {
                    self.unauthenticated(&original.uri)
                };
                (ForwardAuthResult::Unauthenticated, answer)
            }
            Admission::Refuse { why, answer } => {
                let result = match why {
                    // (Basic is never tried for a forward-auth check.)
                    Refusal::TooManyFailures | Refusal::Password | Refusal::StateUnavailable => {
                        ForwardAuthResult::Unauthenticated
                    }
                    Refusal::DenyRule | Refusal::AmbiguousPath => ForwardAuthResult::Denied,
                    Refusal::Forbidden { user: who } => {
                        *user = Some(who);
                        ForwardAuthResult::Denied
                    }
                };
                (result, answer)
            }
        };
        self.metrics.forward_auth(result);
        answer
    }

    /// The original request the check is about ([`forward_auth::original_request`]), or the
    /// refusal to answer: 403 when a trusted proxy's description cannot be trusted, 400 when
    /// the access rules depend on a path or method the proxy did not say.
    fn original_request(
        &self,
        req: &Request<Incoming>,
        conn: ConnInfo,
        policy: &Policy,
    ) -> Result<forward_auth::OriginalRequest, OriginalRefused> {
        let original = forward_auth::original_request(
            req.method(),
            req.uri().path(),
            req.uri().query(),
            &self.paths.auth,
            req.headers(),
            self.peer_is_trusted(policy, conn),
        )
        .map_err(|e| {
            if policy
                .logs
                .audit(conn.client, "forward_auth_refused", "original request")
            {
                tracing::warn!(target: "samlgate::audit", event = "forward_auth_refused", reason = %e, client = %conn.client);
            }
            OriginalRefused::Untrusted
        })?;
        // Rules that depend on the path (or method) cannot be judged without knowing it: a
        // proxy that is not trusted, or that does not say which request it asks about, gets
        // no answer. (nginx's auth_request subrequest is always GET: X-Original-Method.)
        let Some(reason) = undescribed(&original, &policy.rules) else {
            return Ok(original);
        };
        if policy
            .logs
            .audit(conn.client, "forward_auth_refused", reason)
        {
            tracing::warn!(target: "samlgate::audit", event = "forward_auth_refused", reason, peer = %conn.peer.ip(), client = %conn.client);
        }
        Err(OriginalRefused::Undescribed)
    }

    /// Whether the TCP peer is a configured trusted proxy (whose `X-Forwarded-*` count).
    pub(super) fn peer_is_trusted(&self, policy: &Policy, conn: ConnInfo) -> bool {
        policy.trusted.contains(conn.peer.ip())
    }
}

/// Why a check gets no answer about its original request (already audited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OriginalRefused {
    /// A trusted proxy's description is invalid, repeated or self-contradictory.
    Untrusted,
    /// The access rules depend on a path or method the proxy did not say.
    Undescribed,
}

impl OriginalRefused {
    fn answer(self) -> Response<Body> {
        match self {
            // 403, not 400: nginx's auth_request turns any answer but 2xx/401/403 into a
            // 500, and these headers may be a client's, passed through by the proxy.
            OriginalRefused::Untrusted => pages::simple(
                StatusCode::FORBIDDEN,
                "bad_forward_auth_request",
                "The proxy described the original request in a way that cannot be trusted.",
                false,
            ),
            OriginalRefused::Undescribed => pages::simple(
                StatusCode::BAD_REQUEST,
                "bad_forward_auth_request",
                "The proxy did not say which request to check.",
                false,
            ),
        }
    }
}

/// Why the access rules cannot judge a check whose proxy did not say what it asks about (an
/// untrusted peer, or no `X-Original-URI` / `X-Original-Method`), or `None` when they can.
fn undescribed(
    original: &forward_auth::OriginalRequest,
    rules: &AccessRules,
) -> Option<&'static str> {
    if !original.described && !rules.path_independent() {
        Some("the original URI is unknown (peer not in server.trusted_proxies, or no X-Original-URI / X-Forwarded-Uri) and access rules depend on it")
    } else if !original.method_described && !rules.method_independent() {
        Some("the original method is unknown (no X-Original-Method / X-Forwarded-Method from a trusted proxy) and access rules depend on it")
    } else {
        None
    }
}

/// 200 for a forward-auth check, carrying the identity headers the proxy copies upstream.
pub(super) fn identity_response(policy: &Policy, session: &Session) -> Response<Body> {
    let ids = &policy.ids;
    let mut r = Response::new(proxy::full(Bytes::new()));
    let h = r.headers_mut();
    let v = &session.headers;
    if let Some(list) = policy.envoy_removals.signed_in(v) {
        h.insert(ENVOY_REMOVE.clone(), list.into_owned());
    }
    ids.insert_values(h, v);
    // Identity in a response: no cache may keep it for someone else.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
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
pub(super) struct EnvoyRemovals {
    anonymous: Option<HeaderValue>,
    /// Indexed by which optional values a session has: bit 0 email, 1 groups, 2 display
    /// name, 3 role. A session with forwarded attributes has its list computed per answer.
    signed_in: [Option<HeaderValue>; 16],
}

impl EnvoyRemovals {
    pub(super) fn new(ids: &IdentityHeaders) -> Self {
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
            for (bit, name) in [&ids.email, &ids.groups, &ids.preferred_username, &ids.role]
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

    fn signed_in(&self, v: &IdentityHeaderValues) -> Option<std::borrow::Cow<'_, HeaderValue>> {
        let bits = usize::from(v.email.is_some())
            | usize::from(v.groups.is_some()) << 1
            | usize::from(v.preferred_username.is_some()) << 2
            | usize::from(v.role.is_some()) << 3;
        let list = self.signed_in[bits].as_ref()?;
        if v.attributes.is_empty() {
            return Some(std::borrow::Cow::Borrowed(list));
        }
        crate::identity::without_carried_attributes(list, v).map(std::borrow::Cow::Owned)
    }
}
