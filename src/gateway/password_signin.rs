//! Password sign-in wired into the gateway (`[password_signin]`, [`crate::password`]): the
//! form at `{prefix}/password` (GET shows it, POST checks it: CSRF token bound to a cookie,
//! then the same session and cookie a SAML sign-in gets), and HTTP Basic on protected paths
//! whose access rule says `basic_auth = true` (stateless unless `basic_session`; the
//! `Authorization` header is consumed, never forwarded). Audit lines carry `method`
//! (`ldap` | `local`) and `via` (`form` | `basic`).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::body::{is_form_urlencoded, read_limited};
use super::{route, ConnInfo, Gateway, Paths, Policy, Route};
use crate::config::Settings;
use crate::pages;
use crate::password::basic::{self, BasicHeader};
use crate::password::{self, web, PasswordSettings, PasswordSignin, SignIn, Verified};
use crate::proxy::{self, Body};
use crate::redirect::safe_return_path;
use crate::saml::error::LoginError;
use crate::session::cookie::{find_cookies, CookieSpec, SameSite, Sealer};
use crate::session::{random_id, Session, SessionKey};

/// The form's CSRF cookie; sent only to the form's own path.
const FORM_COOKIE: &str = "samlgate_password_form";
/// How long a shown form stays usable (the cookie's lifetime).
const FORM_TTL_SECS: u64 = 15 * 60;

/// Password sign-in for one policy version; kept across a reload that leaves
/// `[password_signin]` (and the files it names) unchanged, so the cache and the lockout
/// survive it.
pub struct PasswordGate {
    pub signin: PasswordSignin,
    settings: PasswordSettings,
    /// Seals the form's nonce into its cookie.
    form_cookie: Sealer,
    /// Tags the nonce for the form's hidden field (another key: one never verifies the other).
    form_field: Sealer,
}

impl PasswordGate {
    /// `None` when password sign-in is off.
    pub fn build(
        s: &Settings,
        previous: Option<&Policy>,
    ) -> Result<Option<Arc<PasswordGate>>, String> {
        let Some(ps) = &s.password_signin else {
            return Ok(None);
        };
        if let Some(prev) = previous.and_then(|p| p.password.as_ref()) {
            if prev.settings == *ps {
                return Ok(Some(prev.clone()));
            }
        }
        let secret = &s.session.cookie_secret;
        Ok(Some(Arc::new(PasswordGate {
            signin: PasswordSignin::new(ps)?,
            settings: ps.clone(),
            form_cookie: Sealer::new(secret, "password-form"),
            form_field: Sealer::new(secret, "password-form-field"),
        })))
    }

    /// Whether the form is served (and linked from sign-in error pages).
    pub fn form(&self) -> bool {
        self.signin.section().form
    }
}

/// What HTTP Basic made of a request on a protected path.
pub(super) enum BasicOutcome {
    /// Not a Basic request, or Basic not allowed here: the usual challenge follows.
    NotTried,
    /// Signed in. `key` and `set_cookie` only when a session was stored (`basic_session`).
    Signed {
        key: Option<SessionKey>,
        session: Arc<Session>,
        set_cookie: Option<String>,
    },
    /// Refused: answer this.
    Refused(Response<Body>),
}

/// `{prefix}/password`.
pub(super) fn password_path(paths: &Paths) -> String {
    format!("{}/password", paths.prefix)
}

/// Whether `path` is the form's path (no allocation: the router calls it for every request).
pub(super) fn is_password_path(path: &str, paths: &Paths) -> bool {
    path.strip_prefix(paths.prefix.as_str()) == Some("/password")
}

impl Gateway {
    fn password_form_cookie<'a>(&'a self, path: &'a str) -> CookieSpec<'a> {
        CookieSpec {
            name: FORM_COOKIE,
            path,
            domain: None,
            secure: self.settings.session.secure,
            same_site: SameSite::Lax,
            max_age_secs: Some(FORM_TTL_SECS),
        }
    }

    /// The password form: GET shows it, POST signs in.
    pub(super) async fn password_page(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        policy: &Policy,
        user: &mut Option<String>,
    ) -> Response<Body> {
        let browser = pages::accepts_html(req.headers());
        let Some(gate) = policy.password.as_ref().filter(|g| g.form()) else {
            return pages::simple(
                StatusCode::NOT_FOUND,
                "not_found",
                "There is nothing at this address.",
                browser,
            );
        };
        match *req.method() {
            Method::GET | Method::HEAD => {
                let rd = req.uri().query().and_then(|q| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .find(|(k, _)| k == "rd")
                        .map(|(_, v)| v.into_owned())
                });
                let rd = self.local_landing(rd.as_deref().unwrap_or("/"));
                self.show_password_form(gate, StatusCode::OK, &rd, "", None, None)
            }
            Method::POST => self.password_post(req, conn, policy, gate, user).await,
            _ => {
                let mut r = pages::simple(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "Use the sign-in form.",
                    browser,
                );
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
                r
            }
        }
    }

    /// A return path that is local and not the gateway's own (else `/`).
    fn local_landing(&self, rd: &str) -> String {
        match safe_return_path(rd) {
            Some(p) if route(p.split('?').next().unwrap_or(p), &self.paths) == Route::Protected => {
                p.to_string()
            }
            _ => "/".to_string(),
        }
    }

    /// The form with a token bound to a nonce: a fresh nonce (and cookie) unless `nonce` is
    /// the one the browser already holds.
    fn show_password_form(
        &self,
        gate: &PasswordGate,
        status: StatusCode,
        rd: &str,
        user: &str,
        error: Option<&str>,
        nonce: Option<[u8; 32]>,
    ) -> Response<Body> {
        let fresh = nonce.is_none();
        let nonce = nonce.unwrap_or_else(random_id);
        let path = password_path(&self.paths);
        let token = gate.form_field.tag(&nonce);
        let mut r = web::form_page(status, &path, &token, rd, user, error, &self.login_url);
        if fresh {
            let cookie = self
                .password_form_cookie(&path)
                .set(&gate.form_cookie.seal(&nonce));
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        r
    }

    async fn password_post(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        policy: &Policy,
        gate: &PasswordGate,
        user: &mut Option<String>,
    ) -> Response<Body> {
        let browser =
            pages::accepts_html(req.headers()) || !req.headers().contains_key(header::ACCEPT);
        // Malformed posts are summarised per client (`log_throttle`): no flood fills a disk.
        let refuse = |status, kind: &'static str, reason: &str, sentence: &str| {
            if policy.logs.audit(conn.client, "login_failure", kind) {
                tracing::warn!(target: "samlgate::audit", event = "login_failure", method = "password", via = "form", kind, reason, client = %conn.client);
            }
            pages::simple(status, kind, sentence, browser)
        };
        if !is_form_urlencoded(req.headers()) {
            return refuse(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "form body is not application/x-www-form-urlencoded",
                "The sign-in form could not be read. Open the form and try again.",
            );
        }
        let nonce = find_cookies(req.headers(), FORM_COOKIE).find_map(|v| gate.form_cookie.open(v));
        let body = match read_limited(
            req.into_body(),
            web::MAX_FORM_BYTES,
            self.body_read_timeout(),
        )
        .await
        {
            Ok(b) => b,
            Err(e) => {
                return refuse(
                    e.status(),
                    e.kind(),
                    &e.reason(),
                    "The sign-in form could not be read. Open the form and try again.",
                )
            }
        };
        let form = match web::parse_form(&body) {
            Ok(f) => f,
            Err(why) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    why,
                    "The sign-in form could not be read. Open the form and try again.",
                )
            }
        };
        // Login CSRF: the token must be the tag of the nonce in this browser's cookie.
        let Some(nonce) = nonce.filter(|n| gate.form_field.verify_tag(n, &form.csrf)) else {
            return refuse(
                StatusCode::FORBIDDEN,
                "csrf",
                "form token does not match its cookie",
                "The sign-in form has expired. Open it again and sign in.",
            );
        };
        let rd = self.local_landing(&form.rd);
        let started = Instant::now();
        match gate
            .signin
            .sign_in(conn.client, &form.user, &form.password)
            .await
        {
            Ok(signed) => match self.store_password_session(policy, &signed.verified).await {
                Ok((key, cookie)) => {
                    audit_success(&signed, "form", Some(key), conn);
                    *user = Some(signed.identity.user.clone());
                    let mut r = Response::new(proxy::full(Bytes::new()));
                    *r.status_mut() = StatusCode::SEE_OTHER;
                    let hm = r.headers_mut();
                    if let Ok(v) = HeaderValue::from_str(&rd) {
                        hm.insert(header::LOCATION, v);
                    }
                    for c in [
                        cookie,
                        self.password_form_cookie(&password_path(&self.paths))
                            .clear(),
                    ] {
                        if let Ok(v) = HeaderValue::from_str(&c) {
                            hm.append(header::SET_COOKIE, v);
                        }
                    }
                    hm.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                    r
                }
                Err(e) => refuse(e.status(), e.kind(), &e.reason(), e.user_message()),
            },
            Err(e) => {
                // Each checked password is one line; refusals by the brakes are summarised.
                let braked = matches!(e, password::SigninError::Braked(_));
                if !braked || policy.logs.audit(conn.client, "login_failure", e.kind()) {
                    tracing::warn!(target: "samlgate::audit", event = "login_failure", method = "password", via = "form", kind = e.kind(), reason = %e.reason(), user = %crate::saml::error::clip(&form.user), client = %conn.client, elapsed_us = started.elapsed().as_micros() as u64);
                }
                let mut r = self.show_password_form(
                    gate,
                    e.status(),
                    &rd,
                    &form.user,
                    Some(e.user_message()),
                    Some(nonce),
                );
                if let password::SigninError::Braked(b) = &e {
                    r.headers_mut().insert(
                        header::RETRY_AFTER,
                        HeaderValue::from(pages::retry_after_secs(
                            b.retry_after(gate.signin.lockout()),
                        )),
                    );
                }
                r
            }
        }
    }

    /// Stores a session for a password sign-in, as the ACS does for SAML: a fresh 256-bit id,
    /// the identity headers computed now, `session.max_lifetime`. Returns its key and cookie.
    async fn store_password_session(
        &self,
        policy: &Policy,
        verified: &Verified,
    ) -> Result<(SessionKey, String), SessionRefusal> {
        let session = Arc::new(self.password_session(policy, verified)?);
        let id = random_id();
        let key = SessionKey::from_id(&id);
        // Stored before it is announced, as at the ACS: a session the shared backend could not
        // keep is a failed sign-in (503), never a cookie that nothing backs.
        self.sessions
            .try_insert(key, session)
            .await
            .map_err(|e| SessionRefusal::StateUnavailable(e.to_string()))?;
        Ok((
            key,
            self.session_cookie().set(&self.session_sealer.seal(&id)),
        ))
    }

    /// The session a verified password makes, with the checks a SAML sign-in has at the ACS:
    /// SCIM's word on the account (disabled, deleted, not provisioned when required), then
    /// the identity headers (`[[roles]]`, `headers.encoding`).
    fn password_session(
        &self,
        policy: &Policy,
        verified: &Verified,
    ) -> Result<Session, SessionRefusal> {
        if let Some(scim) = &self.scim {
            scim.check_sign_in(&verified.identity.user)
                .map_err(|e| match e {
                    // SCIM's data not loaded yet (shared backend): try again, not "disabled".
                    LoginError::StateUnavailable(_) => SessionRefusal::StateUnavailable(e.reason()),
                    _ => SessionRefusal::AccountDisabled(e.reason()),
                })?;
        }
        let headers = crate::identity::render_identity_headers(
            &verified.identity,
            &policy.roles,
            &policy.header_settings,
        )
        .map_err(|_| SessionRefusal::IdentityHeaders)?;
        let created_at = SystemTime::now();
        Ok(Session {
            identity: verified.identity.clone(),
            headers,
            created_at,
            expires_at: created_at + self.settings.session.max_lifetime,
        })
    }

    /// HTTP Basic for a request without a session, on a path whose rule allows it
    /// (`basic_path`, from [`Gateway::admit`]).
    pub(super) async fn basic_sign_in(
        &self,
        basic_path: bool,
        headers: &HeaderMap,
        conn: ConnInfo,
        policy: &Policy,
    ) -> BasicOutcome {
        let Some(gate) = policy.password.as_ref().filter(|_| basic_path) else {
            return BasicOutcome::NotTried;
        };
        let basic = basic::parse(headers);
        let prompt = gate.signin.section().basic_prompt;
        let creds = match basic {
            BasicHeader::Absent | BasicHeader::OtherScheme if prompt => {
                return BasicOutcome::Refused(web::basic_refusal(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "Sign in first.",
                    true,
                    None,
                ));
            }
            BasicHeader::Absent | BasicHeader::OtherScheme => return BasicOutcome::NotTried,
            BasicHeader::Malformed(why) => {
                if policy
                    .logs
                    .audit(conn.client, "login_failure", "basic_malformed")
                {
                    tracing::warn!(target: "samlgate::audit", event = "login_failure", method = "password", via = "basic", kind = "bad_request", reason = why, client = %conn.client);
                }
                return BasicOutcome::Refused(web::basic_refusal(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "The Authorization header could not be read.",
                    false,
                    None,
                ));
            }
            BasicHeader::Credentials(c) => c,
        };
        match gate
            .signin
            .sign_in(conn.client, &creds.user, &creds.password)
            .await
        {
            Ok(signed) => {
                let outcome = if gate.signin.section().basic_session {
                    match self.store_password_session(policy, &signed.verified).await {
                        Ok((key, cookie)) => match self.sessions.get(&key).await {
                            Some(s) => Ok((Some(key), s, Some(cookie))),
                            None => Err(SessionRefusal::StateUnavailable(
                                "the session just stored cannot be read back".into(),
                            )),
                        },
                        Err(e) => Err(e),
                    }
                } else {
                    self.password_session(policy, &signed.verified)
                        .map(|s| (None, Arc::new(s), None))
                };
                let (key, session, set_cookie) = match outcome {
                    Ok(o) => o,
                    Err(e) => {
                        tracing::warn!(target: "samlgate::audit", event = "login_failure", method = "password", via = "basic", kind = e.kind(), reason = %e.reason(), client = %conn.client);
                        return BasicOutcome::Refused(web::basic_refusal(
                            e.status(),
                            e.kind(),
                            e.user_message(),
                            false,
                            None,
                        ));
                    }
                };
                if !signed.cached {
                    audit_success(&signed, "basic", key, conn);
                }
                BasicOutcome::Signed {
                    key,
                    session,
                    set_cookie,
                }
            }
            Err(e) => {
                if policy.logs.audit(conn.client, "login_failure", e.kind()) {
                    tracing::warn!(target: "samlgate::audit", event = "login_failure", method = "password", via = "basic", kind = e.kind(), reason = %e.reason(), user = %crate::saml::error::clip(&creds.user), client = %conn.client);
                }
                let retry = match &e {
                    password::SigninError::Braked(b) => Some(pages::retry_after_secs(
                        b.retry_after(gate.signin.lockout()),
                    )),
                    _ => None,
                };
                BasicOutcome::Refused(web::basic_refusal(
                    e.status(),
                    e.kind(),
                    e.user_message(),
                    prompt,
                    retry,
                ))
            }
        }
    }
}

/// Removes `Authorization: Basic` (well-formed or not) from a request on a path whose rule
/// allows Basic: those credentials were for samlgate. Other schemes stay.
pub(super) fn strip_basic(headers: &mut HeaderMap) {
    if matches!(
        basic::parse(headers),
        BasicHeader::Credentials(_) | BasicHeader::Malformed(_)
    ) {
        headers.remove(header::AUTHORIZATION);
    }
}

fn audit_success(signed: &SignIn, via: &'static str, key: Option<SessionKey>, conn: ConnInfo) {
    tracing::info!(
        target: "samlgate::audit",
        event = "login_success",
        method = signed.method.as_str(),
        via,
        user = %signed.identity.user,
        groups = signed.identity.groups.len(),
        session = %key.map_or_else(|| "-".to_string(), |k| k.log_tag()),
        client = %conn.client,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_path_is_matched_without_allocating() {
        let p = Paths {
            prefix: "/saml".into(),
            login: "/saml/login".into(),
            acs: "/saml/acs".into(),
            metadata: "/saml/metadata".into(),
            logout: "/saml/logout".into(),
            slo: "/saml/slo".into(),
            auth: "/saml/auth".into(),
            scim: None,
        };
        for (path, want) in [
            ("/saml/password", true),
            ("/saml/password/", false),
            ("/saml/passwordx", false),
            ("/password", false),
            ("/samlx/password", false),
        ] {
            assert_eq!(is_password_path(path, &p), want, "{path}");
        }
        assert_eq!(route("/saml/password", &p), Route::Password);
        assert_eq!(password_path(&p), "/saml/password");
    }
}

/// Why a verified password sign-in still gets no session.
#[derive(Debug)]
enum SessionRefusal {
    /// The identity cannot be sent in the identity headers (`headers.encoding = "refuse"`, or
    /// a value no header can carry).
    IdentityHeaders,
    /// SCIM does not admit the user (disabled, deleted, or not provisioned when required);
    /// the reason for the audit line.
    AccountDisabled(String),
    /// The state backend could not store the session (Redis unreachable).
    StateUnavailable(String),
}

impl SessionRefusal {
    fn status(&self) -> StatusCode {
        match self {
            SessionRefusal::IdentityHeaders => StatusCode::BAD_REQUEST,
            SessionRefusal::AccountDisabled(_) => StatusCode::FORBIDDEN,
            SessionRefusal::StateUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            SessionRefusal::IdentityHeaders => "bad_user_id",
            SessionRefusal::AccountDisabled(_) => "account_disabled",
            SessionRefusal::StateUnavailable(_) => "state_unavailable",
        }
    }

    fn reason(&self) -> String {
        match self {
            SessionRefusal::IdentityHeaders => {
                "the identity cannot be sent in the identity headers".into()
            }
            SessionRefusal::AccountDisabled(why) => why.clone(),
            SessionRefusal::StateUnavailable(e) => format!("the session could not be stored: {e}"),
        }
    }

    fn user_message(&self) -> &'static str {
        match self {
            SessionRefusal::IdentityHeaders => {
                "Your account's name cannot be passed to the application. Ask your administrator."
            }
            SessionRefusal::AccountDisabled(_) => crate::scim::DISABLED_PAGE.1,
            SessionRefusal::StateUnavailable(_) => {
                "Sign-in is unavailable for a moment. Please try again shortly."
            }
        }
    }
}
