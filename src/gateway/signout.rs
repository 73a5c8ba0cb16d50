//! Signing out at `{prefix}/logout`: a confirmation page with a CSRF token (`GET`), then
//! (`POST`) the session ends here and, when the IdP has a Single Logout endpoint and we can
//! sign, at the IdP too (SP-initiated Single Logout).

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::body::read_limited;
use super::slo::LOGOUT_REQUEST_TTL;
use super::{ConnInfo, Gateway};
use crate::pages;
use crate::proxy::Body;
use crate::saml::authn::{new_request_id, redirect_message_url};
use crate::saml::logout::{self as slo, LogoutRequestSpec};
use crate::session::Session;

const LOGOUT_FORM_LIMIT: usize = 4096;

impl Gateway {
    pub(super) async fn logout(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        user: &mut Option<String>,
    ) -> Response<Body> {
        // Whether the session lives must be known to end it: 503 while the backend cannot say.
        let session = match self.authenticate(req.headers()).await {
            Ok(session) => session,
            Err(e) => return self.state_unavailable(&e, req.headers(), conn),
        };
        let browser = pages::accepts_html(req.headers());
        // Kept for a 503 after the body (and with it the request) is consumed.
        let req_headers = &req.headers().clone();
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
                if let Err(e) = self.sessions.try_remove(&key).await {
                    // Not "signed out" while the session may live on other replicas.
                    return self.state_unavailable(&e, req_headers, conn);
                }
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
                if let Err(e) = self.flows.put_logout_request(&id, LOGOUT_REQUEST_TTL).await {
                    // The IdP's LogoutResponse will find nothing and be refused; the local
                    // session is already gone.
                    tracing::error!(target: "samlgate::audit", event = "state_backend_error", op = "put_logout_request", reason = %e);
                }
                tracing::info!(target: "samlgate::audit", event = "slo_started", request_id = %id, user = %session.identity.user);
                Some(r)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot build the IdP LogoutRequest; signing out locally only");
                None
            }
        }
    }

    pub(super) fn signed_out(&self) -> Response<Body> {
        let mut r = pages::signed_out(&self.login_url);
        if let Ok(v) = HeaderValue::from_str(&self.session_cookie().clear()) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
        r
    }
}
