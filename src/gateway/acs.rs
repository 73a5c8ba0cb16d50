//! The Assertion Consumer Service (`POST {acs_path}`): the IdP's answer to a sign-in. The steps
//! are pure decisions on plain data — [`solicitation`] (is this the answer to this browser's
//! pending sign-in, or an allowed unsolicited response?) and [`session_expiry`] — around the
//! I/O that sits between them: reading the form, claiming the pending sign-in, verifying the
//! signature on the blocking pool, the replay cache and the session store. [`Gateway::acs`] is
//! the thin handler that logs and answers.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::answers::clip_path;
use super::body::{is_form_urlencoded, read_limited};
use super::{ConnInfo, Gateway, Policy, VERIFY_QUEUE_WAIT};
use crate::pages;
use crate::proxy::{self, Body};
use crate::ratelimit::Limit;
use crate::redirect::safe_return_path;
use crate::saml::error::LoginError;
use crate::saml::policy::{self, AcceptedAssertion, AttributeMap};
use crate::saml::prefilter::EnvelopeFacts;
use crate::saml::verify::{acs_form, AcsForm};
use crate::session::pending::{browser_ids, ClaimError, PendingLogin};
use crate::session::{random_id, Session, SessionKey};
use crate::state::{FirstUse, ReplayKind};

/// Whose sign-in a response answers, decided before the signature is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Solicitation {
    /// The AuthnRequest ID the response must answer; `None` for an unsolicited response.
    pub request_id: Option<String>,
    /// Where the browser lands after sign-in (a local path).
    pub landing: String,
}

impl Solicitation {
    /// An IdP-initiated response (no pending sign-in).
    pub fn unsolicited(&self) -> bool {
        self.request_id.is_none()
    }
}

/// The ACS settings [`solicitation`] needs.
pub struct UnsolicitedRules<'a> {
    /// `saml.allow_idp_initiated`.
    pub allowed: bool,
    /// `saml.idp_initiated_default_path`: the landing when RelayState is no local path.
    pub default_path: &'a str,
}

/// Solicited: the RelayState is this browser's pending-login token (`claim`, the result of
/// claiming it; `None` when no RelayState was sent). Unsolicited (IdP-initiated, allowed by
/// `rules`): no pending login matches and nothing in the response answers a request;
/// RelayState, if any, is at most a local path to land on. `login_cookie`: the browser sent
/// a valid login cookie (it tells a login CSRF from a lost cookie).
pub fn solicitation(
    claim: Option<Result<PendingLogin, ClaimError>>,
    relay_state: Option<&str>,
    facts: &EnvelopeFacts,
    rules: &UnsolicitedRules<'_>,
    login_cookie: bool,
) -> Result<Solicitation, LoginError> {
    match claim {
        Some(Ok(pending)) => Ok(Solicitation {
            request_id: Some(pending.request_id),
            landing: pending.return_path,
        }),
        Some(Err(ClaimError::WrongBrowser)) => Err(LoginError::WrongBrowser { login_cookie }),
        Some(Err(ClaimError::Unknown)) | None => {
            // A response that answers a request we no longer hold is never unsolicited.
            policy::check_unsolicited(facts, relay_state.is_some(), rules.allowed)?;
            let landing = relay_state
                .and_then(safe_return_path)
                .unwrap_or(rules.default_path);
            Ok(Solicitation {
                request_id: None,
                landing: landing.to_string(),
            })
        }
    }
}

/// When a session started at `created_at` ends: after `max_lifetime`, or at the IdP's
/// `SessionNotOnOrAfter` if that comes first.
pub fn session_expiry(
    created_at: SystemTime,
    max_lifetime: Duration,
    idp_end: Option<SystemTime>,
) -> SystemTime {
    let ours = created_at + max_lifetime;
    match idp_end {
        Some(idp_end) if idp_end < ours => idp_end,
        _ => ours,
    }
}

impl Gateway {
    /// `POST /saml/acs`: the IdP's answer. Every failure is logged with its precise reason
    /// and shown to the person in plain words.
    pub(super) async fn acs(
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
        match self.sign_in(req, conn, policy, &mut return_path).await {
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
                // While the IdP cannot be used, the password form is the way in.
                let password = policy
                    .password
                    .as_ref()
                    .filter(|g| g.form())
                    .map(|_| super::password_signin::password_path(&self.paths));
                pages::login_failed_with_password(
                    e.status(),
                    headline,
                    sentence,
                    &retry,
                    browser,
                    e.kind(),
                    password.as_deref(),
                )
            }
        }
    }

    /// Form → solicited/unsolicited decision → verification → identity → session. On success,
    /// the 303 to the landing path and the user's name; `return_path` is set as soon as a
    /// pending sign-in is claimed (for the retry link of a later failure).
    async fn sign_in(
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

        let s = &self.settings.saml;
        let claim = match relay_state.as_deref() {
            Some(relay) => Some(
                self.flows
                    .claim_pending(relay, &browsers)
                    .await
                    .map_err(|e| LoginError::StateUnavailable(e.to_string()))?,
            ),
            None => None,
        };
        if let Some(Ok(pending)) = &claim {
            *return_path = Some(pending.return_path.clone());
        }
        let rules = UnsolicitedRules {
            allowed: s.allow_idp_initiated,
            default_path: &s.idp_initiated_default_path,
        };
        let solicited = solicitation(
            claim,
            relay_state.as_deref(),
            &facts,
            &rules,
            !browsers.is_empty(),
        )?;
        if solicited.unsolicited() {
            tracing::info!(target: "samlgate::audit", event = "idp_initiated_response", landing = %clip_path(&solicited.landing), client = %conn.client);
        }

        let now = chrono::Utc::now();
        let accepted = self
            .verify(xml, facts, solicited.request_id.clone(), now)
            .await?;
        let replay_ttl = (accepted.replay_until - now)
            .to_std()
            .unwrap_or(Duration::from_secs(1));
        // An IdP-initiated response has no pending sign-in vouching that it is new: the shared
        // backend also checks it was issued after its replay memory began.
        let issued = solicited
            .unsolicited()
            .then(|| SystemTime::from(accepted.issue_instant));
        match self
            .flows
            .first_use(
                ReplayKind::Assertion,
                &accepted.assertion_id,
                replay_ttl,
                issued,
            )
            .await
            .map_err(|e| LoginError::StateUnavailable(e.to_string()))?
        {
            FirstUse::Fresh => {}
            FirstUse::Replay => return Err(LoginError::Replay(accepted.assertion_id)),
            FirstUse::BeforeMemory => {
                return Err(LoginError::IssuedBeforeReplayMemory(accepted.assertion_id))
            }
        }
        let (id, who) = self
            .open_session(&accepted, current, solicited.unsolicited(), conn)
            .await?;
        Ok((self.signed_in(&solicited.landing, &id), who))
    }

    /// The signature and the SAML policy checks, on the blocking pool under a verification
    /// permit (a full queue sheds the sign-in as `busy`).
    async fn verify(
        &self,
        xml: String,
        facts: EnvelopeFacts,
        request_id: Option<String>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<AcceptedAssertion, LoginError> {
        let permit = tokio::time::timeout(
            VERIFY_QUEUE_WAIT,
            self.verify_permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| LoginError::Busy)?
        .map_err(|_| LoginError::Internal("verification pool closed".into()))?;
        let verifier = self.verifier.get();
        tokio::task::spawn_blocking(move || {
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
        })?
    }

    /// The identity (attribute map of the current policy) and its header values, stored as a
    /// new session. Returns the new session id and the user's name.
    async fn open_session(
        &self,
        accepted: &AcceptedAssertion,
        current: &Policy,
        unsolicited: bool,
        conn: ConnInfo,
    ) -> Result<([u8; 32], String), LoginError> {
        let h = &current.headers;
        let mut identity = policy::identity(
            accepted,
            &AttributeMap {
                user: &h.user_attribute,
                email: &h.email_attribute,
                display_name: &h.display_name_attribute,
                groups: &h.groups_attribute,
                preferred_username: &h.preferred_username_attribute,
            },
        )?;
        identity.attributes =
            crate::identity::forwarded_attributes(&accepted.attributes, &current.header_settings);
        // SCIM: a disabled, deleted (or, if required, unprovisioned) user gets no session.
        if let Some(scim) = &self.scim {
            scim.check_sign_in(&identity.user)?;
        }
        let headers = crate::identity::render_identity_headers(
            &identity,
            &current.roles,
            &current.header_settings,
        )
        .map_err(LoginError::IdentityHeader)?;
        let created_at = SystemTime::now();
        let expires_at = session_expiry(
            created_at,
            self.settings.session.max_lifetime,
            accepted.session_not_on_or_after.map(SystemTime::from),
        );
        let id = random_id();
        let key = SessionKey::from_id(&id);
        let who = identity.user.clone();
        let groups = identity.groups.len();
        // Stored before it is announced: a session the backend could not keep is a failed
        // sign-in (503), not a cookie that nothing backs.
        self.sessions
            .try_insert(
                key,
                Arc::new(Session {
                    identity,
                    headers,
                    created_at,
                    expires_at,
                }),
            )
            .await
            .map_err(|e| LoginError::StateUnavailable(e.to_string()))?;
        tracing::info!(
            target: "samlgate::audit",
            event = "login_success",
            method = "saml",
            user = %who,
            groups,
            session = %key.log_tag(),
            assertion_id = %crate::saml::error::clip(&accepted.assertion_id),
            idp_initiated = unsolicited,
            client = %conn.client,
        );
        Ok((id, who))
    }

    /// The 303 to `landing` that sets the session cookie for session `id` and clears the login
    /// cookie: the pending sign-in it bound is spent.
    fn signed_in(&self, landing: &str, id: &[u8; 32]) -> Response<Body> {
        let mut r = Response::new(proxy::full(Bytes::new()));
        *r.status_mut() = StatusCode::SEE_OTHER;
        let hm = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(landing) {
            hm.insert(header::LOCATION, v);
        }
        if let Ok(v) =
            HeaderValue::from_str(&self.session_cookie().set(&self.session_sealer.seal(id)))
        {
            hm.append(header::SET_COOKIE, v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.login_cookie().clear()) {
            hm.append(header::SET_COOKIE, v);
        }
        hm.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> PendingLogin {
        PendingLogin {
            request_id: "_req1".into(),
            return_path: "/app/page?x=1".into(),
            browser: [7; 32],
        }
    }

    /// Facts of a response that answers request `irt` on the Response, on the
    /// SubjectConfirmationData, or nowhere.
    fn facts(response_irt: Option<&str>, subject_irt: Option<&str>) -> EnvelopeFacts {
        EnvelopeFacts {
            in_response_to: response_irt.map(Into::into),
            subject_in_response_to: subject_irt.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn solicited_and_unsolicited_responses_are_told_apart() {
        let allowed = UnsolicitedRules {
            allowed: true,
            default_path: "/home",
        };
        let refused = UnsolicitedRules {
            allowed: false,
            default_path: "/home",
        };
        let solicited = |landing: &str| {
            Ok(Solicitation {
                request_id: Some("_req1".into()),
                landing: landing.into(),
            })
        };
        let unsolicited = |landing: &str| {
            Ok(Solicitation {
                request_id: None,
                landing: landing.into(),
            })
        };
        let unknown = |got: &str| {
            Err(LoginError::UnknownRequest {
                got: got.to_string(),
            })
        };
        type Case<'a> = (
            &'a str,
            Option<Result<PendingLogin, ClaimError>>,
            Option<&'a str>,
            EnvelopeFacts,
            &'a UnsolicitedRules<'a>,
            bool,
            Result<Solicitation, LoginError>,
        );
        // (case, claim, RelayState, facts, settings, login cookie, decision)
        #[rustfmt::skip]
        let cases: Vec<Case<'_>> = vec![
            // The pending sign-in of this browser: solicited, whatever the settings.
            ("claimed", Some(Ok(pending())), Some("tok"), facts(Some("_req1"), None), &refused, true, solicited("/app/page?x=1")),
            ("claimed, facts not checked here", Some(Ok(pending())), Some("tok"), facts(None, None), &allowed, true, solicited("/app/page?x=1")),
            // Another browser's pending sign-in: never falls through to unsolicited.
            ("wrong browser, cookie", Some(Err(ClaimError::WrongBrowser)), Some("tok"), facts(None, None), &allowed, true, Err(LoginError::WrongBrowser { login_cookie: true })),
            ("wrong browser, no cookie", Some(Err(ClaimError::WrongBrowser)), Some("tok"), facts(None, None), &allowed, false, Err(LoginError::WrongBrowser { login_cookie: false })),
            // Nothing claimed and unsolicited responses off.
            ("no relay, off", None, None, facts(None, None), &refused, false, Err(LoginError::Unsolicited { relay_state: false })),
            ("unknown relay, off", Some(Err(ClaimError::Unknown)), Some("tok"), facts(None, None), &refused, true, Err(LoginError::Unsolicited { relay_state: true })),
            // Nothing claimed, yet the response answers a request: an answer to a sign-in we
            // no longer hold (expired, used), refused even when unsolicited ones are allowed.
            ("answers a request, allowed", Some(Err(ClaimError::Unknown)), Some("tok"), facts(Some("_old"), None), &allowed, true, unknown("_old")),
            ("subject answers a request", None, None, facts(None, Some("_old2")), &allowed, false, unknown("_old2")),
            ("answers a request, off", None, None, facts(Some("_old"), None), &refused, false, unknown("_old")),
            // Unsolicited and allowed: RelayState lands only on a local path.
            ("unsolicited, no relay", None, None, facts(None, None), &allowed, false, unsolicited("/home")),
            ("unsolicited, local relay", Some(Err(ClaimError::Unknown)), Some("/reports?q=1"), facts(None, None), &allowed, false, unsolicited("/reports?q=1")),
            ("unsolicited, foreign relay", Some(Err(ClaimError::Unknown)), Some("https://evil.example/"), facts(None, None), &allowed, false, unsolicited("/home")),
            ("unsolicited, protocol-relative relay", Some(Err(ClaimError::Unknown)), Some("//evil.example/"), facts(None, None), &allowed, false, unsolicited("/home")),
        ];
        for (name, claim, relay, facts, rules, cookie, want) in cases {
            assert_eq!(
                solicitation(claim, relay, &facts, rules, cookie),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn sessions_end_at_the_earlier_of_our_lifetime_and_the_idps() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = Duration::from_secs(3600);
        for (idp_end, want) in [
            (None, t0 + 8 * hour),
            (Some(t0 + hour), t0 + hour),
            (Some(t0 + 9 * hour), t0 + 8 * hour),
            (Some(t0 + 8 * hour), t0 + 8 * hour),
        ] {
            assert_eq!(session_expiry(t0, 8 * hour, idp_end), want, "{idp_end:?}");
        }
    }
}
