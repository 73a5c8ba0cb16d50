//! Single Logout at `{prefix}/slo`: LogoutRequests from the IdP (its own sign-out, or another
//! SP's) end the sessions they name; LogoutResponses finish a sign-out we started. The
//! HTTP-Redirect (`GET`) and HTTP-POST (`POST`) bindings differ only in how a message is read
//! and authenticated; both end in [`Gateway::end_sessions`] or [`Gateway::finish_sp_logout`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::body::{is_form_urlencoded, read_limited};
use super::{ConnInfo, Gateway, Policy, VERIFY_QUEUE_WAIT};
use crate::pages;
use crate::proxy::{self, Body};
use crate::ratelimit::Limit;
use crate::saml::authn::{new_request_id, redirect_message_url};
use crate::saml::error::LoginError;
use crate::saml::logout::{self as slo, LogoutResponseSpec};
use crate::saml::prefilter::{prefilter_root, Root};
use crate::saml::verify::Verifier;
use crate::state::{FirstUse, ReplayKind, StateError};

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

    /// The shared state backend could not answer: 503, nothing ended or answered.
    fn state_unavailable(e: StateError) -> Self {
        SloRefusal {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "state_unavailable",
            reason: e.to_string(),
        }
    }
}

/// How long our LogoutRequest waits for the IdP's LogoutResponse.
pub(super) const LOGOUT_REQUEST_TTL: Duration = Duration::from_secs(10 * 60);

/// Oldest IssueInstant accepted on a logout message from the IdP (plus clock skew).
const LOGOUT_MESSAGE_MAX_AGE_SECS: i64 = 10 * 60;

impl Gateway {
    /// `/saml/slo`: Single Logout. `GET` is the HTTP-Redirect binding, `POST` the HTTP-POST
    /// binding (Okta answers by POST). A `SAMLRequest` is the IdP ending the person's sessions
    /// (IdP-initiated, or another SP's sign-out); a `SAMLResponse` answers the LogoutRequest we
    /// sent on sign-out. Both bindings end in the same checks ([`Self::end_sessions`],
    /// [`Self::finish_sp_logout`]); they differ in how the message is read and authenticated.
    pub(super) async fn slo(
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
            slo::check_redirect_signature(&m, &v.idp.signing_x509(), required)?;
            self.end_sessions(&v, lr, m.relay_state.as_deref(), conn, user)
                .await
        } else {
            let lr = slo::parse_logout_response(&xml)?;
            // The IdP may leave its LogoutResponse unsigned (SimpleSAMLphp without
            // sign.logout); a signature that is there must verify. InResponseTo ties it to
            // our request.
            slo::check_redirect_signature(&m, &v.idp.signing_x509(), false)?;
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
        let first = self
            .flows
            .first_use(ReplayKind::Logout, &lr.id, ttl, None)
            .await
            .map_err(SloRefusal::state_unavailable)?;
        if first != FirstUse::Fresh {
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
    pub(super) async fn auto_post(
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
        let ours = self
            .flows
            .take_logout_request(irt)
            .await
            .map_err(SloRefusal::state_unavailable)?;
        if !ours {
            return Err(format!(
                "InResponseTo {} answers no LogoutRequest of ours (or was used)",
                crate::saml::error::clip(irt)
            )
            .into());
        }
        // Our local session is already gone; the session cookie is cleared regardless.
        if let Ok(Some((key, s))) = self.authenticate(headers).await {
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
}
