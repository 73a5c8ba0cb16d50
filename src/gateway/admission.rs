//! Admission: the **route → authenticate → authorize** phases, once, for the reverse proxy and
//! for forward-auth alike. [`Gateway::admit`] judges a request (the original one, for a
//! forward-auth check) and returns an [`Admission`] that says what to do; the caller decides
//! only how to answer it (forward the request, or answer the proxy that asked).

use std::ops::ControlFlow;
use std::sync::Arc;

use http::{HeaderMap, Method, Response, StatusCode};

use super::answers::{ambiguous_path, clip_path};
use super::password_signin::BasicOutcome;
use super::{ConnInfo, Gateway, Policy};
use crate::deprovision::EndReason;
use crate::pages;
use crate::proxy::Body;
use crate::ratelimit::Limit;
use crate::rules::{Decision, Requirement};
use crate::scim::ViewRefusal;
use crate::session::cookie::find_cookies;
use crate::session::{Session, SessionKey};
use crate::state::StateError;

/// The request an admission judges: for a proxied request its own method, path and headers;
/// for a forward-auth check the original method and path a trusted proxy described, with the
/// check's headers (cookies, `Accept`).
pub struct Ask<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    /// The request has no body (a CORS preflight is only recognised without one). Always
    /// `true` for forward-auth: the original body is not ours to see.
    pub body_empty: bool,
    pub via: Via,
}

/// Which flow asks: it names the flow in the `access_denied` audit line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Proxy,
    ForwardAuth,
}

/// What to do with a request, decided by [`Gateway::admit`].
pub enum Admission {
    /// An `allow` rule covers it: no session is looked up and no identity is sent.
    Anonymous,
    /// A live session whose user the rule's requirement admits. `key` is `None` for a
    /// stateless HTTP Basic sign-in; `basic_path`: the rule allows Basic (the proxy removes
    /// `Authorization: Basic` before forwarding); `set_cookie`: the session cookie of a Basic
    /// sign-in with `basic_session`.
    Admitted {
        key: Option<SessionKey>,
        session: Arc<Session>,
        basic_path: bool,
        set_cookie: Option<String>,
    },
    /// No live session, and the client's auth-failure budget had room: the caller challenges
    /// (sign-in redirect or 401).
    Challenge,
    /// Refused; `answer` is the response (already audited and, for a rate limit, counted).
    Refuse {
        why: Refusal,
        answer: Response<Body>,
    },
}

/// Which phase refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A `deny` rule covers the path (403, whoever asks).
    DenyRule,
    /// The path reads differently under another decoding while rules restrict paths (400).
    AmbiguousPath,
    /// No live session, and the client has spent its auth-failure budget (429).
    TooManyFailures,
    /// Signed in as `user`, whom the rule's requirement does not admit (403).
    Forbidden { user: String },
    /// The shared state backend could not say whether the cookie's session lives (503).
    StateUnavailable,
    /// HTTP Basic credentials refused (`[password_signin]`: 401, 429, 503 or 400).
    Password,
}

/// What authentication found: the session key (none for a stateless Basic sign-in), the
/// session, and a cookie to set (Basic with `basic_session`).
type Found = (Option<SessionKey>, Arc<Session>, Option<String>);

impl Gateway {
    /// Route (access rules on `ask`'s method and path), authenticate (the session cookie) and
    /// authorize (the rule's requirement). A request without a live session spends one unit
    /// of the client's `Limit::AuthFailure` budget, whichever flow asks.
    pub(super) async fn admit(&self, ask: &Ask<'_>, conn: ConnInfo, policy: &Policy) -> Admission {
        let (requirement, rule) = match self.route_phase(ask, conn, policy) {
            ControlFlow::Continue(routed) => routed,
            ControlFlow::Break(answer) => return answer,
        };
        // HTTP Basic ([password_signin]) only through the proxy, on rules that allow it.
        let basic_path =
            ask.via == Via::Proxy && policy.password.is_some() && policy.rules.allows_basic(rule);
        let (key, session, set_cookie) =
            match self.authenticate_phase(ask, conn, policy, basic_path).await {
                ControlFlow::Continue(found) => found,
                ControlFlow::Break(answer) => return answer,
            };
        // SCIM: whether the user is still admitted, and the groups they carry now
        let session = match self.scim_view(&session, policy, ask.headers, conn).await {
            Ok(s) => s,
            Err(answer) => {
                return Admission::Refuse {
                    why: Refusal::Forbidden {
                        user: session.identity.user.clone(),
                    },
                    answer,
                }
            }
        };
        if let ControlFlow::Break(refusal) =
            self.authorize_phase(ask, conn, policy, &requirement, &session)
        {
            return refusal;
        }
        Admission::Admitted {
            key,
            session,
            basic_path,
            set_cookie,
        }
    }

    /// Route: the access rule for `ask`'s method and path; what it requires, or the answer
    /// when no session is needed (anonymous) or none may pass (deny, ambiguous path).
    fn route_phase<'p>(
        &self,
        ask: &Ask<'_>,
        conn: ConnInfo,
        policy: &'p Policy,
    ) -> ControlFlow<Admission, (Requirement<'p>, Option<&'p str>)> {
        match policy
            .rules
            .decide(ask.method, ask.path, ask.headers, ask.body_empty)
        {
            Decision::Deny { rule } => ControlFlow::Break(Admission::Refuse {
                why: Refusal::DenyRule,
                answer: self.denied_by_rule(rule, ask.path, ask.headers, conn),
            }),
            Decision::Ambiguous { reason } => ControlFlow::Break(Admission::Refuse {
                why: Refusal::AmbiguousPath,
                answer: ambiguous_path(reason, ask.path, ask.headers, conn, &policy.logs),
            }),
            Decision::Anonymous { .. } => ControlFlow::Break(Admission::Anonymous),
            Decision::Authenticate { requirement, rule } => {
                ControlFlow::Continue((requirement, rule))
            }
        }
    }

    /// Authenticate: the session cookie, else HTTP Basic where `basic_path` allows it. No
    /// session at all spends one unit of the client's auth-failure budget, then challenges.
    async fn authenticate_phase(
        &self,
        ask: &Ask<'_>,
        conn: ConnInfo,
        policy: &Policy,
        basic_path: bool,
    ) -> ControlFlow<Admission, Found> {
        match self.authenticate(ask.headers).await {
            Ok(Some((key, session))) => return ControlFlow::Continue((Some(key), session, None)),
            Ok(None) => {}
            Err(e) => {
                return ControlFlow::Break(Admission::Refuse {
                    why: Refusal::StateUnavailable,
                    answer: self.state_unavailable(&e, ask.headers, conn),
                })
            }
        }
        match self
            .basic_sign_in(basic_path, ask.headers, conn, policy)
            .await
        {
            BasicOutcome::Signed {
                key,
                session,
                set_cookie,
            } => ControlFlow::Continue((key, session, set_cookie)),
            BasicOutcome::Refused(answer) => ControlFlow::Break(Admission::Refuse {
                why: Refusal::Password,
                answer,
            }),
            BasicOutcome::NotTried => {
                // Guessing at cookies is limited per client, through either flow.
                match policy.over_limit(Limit::AuthFailure, conn, ask.headers, &self.metrics) {
                    Some(answer) => ControlFlow::Break(Admission::Refuse {
                        why: Refusal::TooManyFailures,
                        answer,
                    }),
                    None => ControlFlow::Break(Admission::Challenge),
                }
            }
        }
    }

    /// Authorize: the rule's requirement (users, groups, roles) against the session.
    fn authorize_phase(
        &self,
        ask: &Ask<'_>,
        conn: ConnInfo,
        policy: &Policy,
        requirement: &Requirement<'_>,
        session: &Session,
    ) -> ControlFlow<Admission> {
        let Err(denial) = requirement.authorize(
            &session.identity,
            session.headers.role_name.as_deref(),
            &policy.authz,
        ) else {
            return ControlFlow::Continue(());
        };
        // Never throttled: it takes a valid session, so no anonymous flood can produce it, and
        // each line is the record of who was refused where.
        let user = &session.identity.user;
        let path = clip_path(ask.path);
        match ask.via {
            Via::Proxy => {
                tracing::warn!(target: "samlgate::audit", event = "access_denied", user = %user, reason = %denial.reason(), path = %path, client = %conn.client)
            }
            Via::ForwardAuth => {
                tracing::warn!(target: "samlgate::audit", event = "access_denied", user = %user, reason = %denial.reason(), path = %path, via = "forward_auth", client = %conn.client)
            }
        }
        let answer = pages::forbidden(
            user,
            &denial.user_message(),
            &self.paths.logout,
            pages::accepts_html(ask.headers),
        );
        ControlFlow::Break(Admission::Refuse {
            why: Refusal::Forbidden { user: user.clone() },
            answer,
        })
    }

    /// SCIM's say on a live session (`[scim]` on): a user SCIM no longer admits loses every
    /// session here (403 "account disabled"); otherwise `scim.groups_source` may give the
    /// request other groups, with the identity headers (and role) rendered again.
    async fn scim_view(
        &self,
        session: &Arc<Session>,
        policy: &Policy,
        headers: &HeaderMap,
        conn: ConnInfo,
    ) -> Result<Arc<Session>, Response<Body>> {
        let Some(scim) = &self.scim else {
            return Ok(session.clone());
        };
        let render = |id: &crate::session::Identity| {
            crate::identity::render_identity_headers(id, &policy.roles, &policy.header_settings)
        };
        let user = &session.identity.user;
        match scim.view(session, render) {
            Ok(view) => Ok(view),
            Err(ViewRefusal::Account(admission)) => {
                tracing::warn!(target: "samlgate::audit", event = "access_denied", user = %user, reason = admission.reason(), client = %conn.client);
                self.deprovision
                    .end_user(user, EndReason::NotAdmitted)
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
            Err(ViewRefusal::Unavailable(reason)) => {
                Err(self.state_unavailable(&StateError::Unavailable(reason), headers, conn))
            }
            Err(ViewRefusal::Headers(reason)) => {
                tracing::warn!(target: "samlgate::audit", event = "access_denied", user = %user, reason = %format!("SCIM groups cannot be sent as headers: {reason}"), client = %conn.client);
                Err(pages::simple(
                    StatusCode::FORBIDDEN,
                    "identity_header",
                    "Your group memberships cannot be passed to this application. Contact your administrator.",
                    pages::accepts_html(headers),
                ))
            }
        }
    }

    /// Finds a live session from the cookie; the HMAC is checked before any lookup. `Err`
    /// when the shared state backend cannot answer (past its grace period): not "no session".
    pub(super) async fn authenticate(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<(SessionKey, Arc<Session>)>, StateError> {
        for value in find_cookies(headers, &self.settings.session.cookie_name) {
            let Some(id) = self.session_sealer.open(value) else {
                continue;
            };
            let key = SessionKey::from_id(&id);
            if let Some(s) = self.sessions.lookup(&key).await? {
                return Ok(Some((key, s)));
            }
        }
        Ok(None)
    }

    /// 503 when the shared state backend cannot answer, with its audit line (throttled per
    /// client like other refusals).
    pub(super) fn state_unavailable(
        &self,
        e: &StateError,
        headers: &HeaderMap,
        conn: ConnInfo,
    ) -> Response<Body> {
        if self
            .logs()
            .audit(conn.client, "state_unavailable", "backend")
        {
            tracing::warn!(target: "samlgate::audit", event = "state_unavailable", reason = %e, client = %conn.client);
        }
        pages::simple(
            StatusCode::SERVICE_UNAVAILABLE,
            "state_unavailable",
            "The sign-in service is temporarily unavailable. Please try again in a moment.",
            pages::accepts_html(headers),
        )
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
}
