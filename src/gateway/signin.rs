//! Starting a sign-in: `{prefix}/login?rd=` ([`Gateway::explicit_login`]), the challenge a
//! request without a session gets (a redirect to the IdP for a browser navigation, else a 401),
//! the pending sign-in bound to this browser, and the gateway's cookie specs.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{route, ConnInfo, Gateway, Policy, Route};
use crate::forward_auth;
use crate::pages;
use crate::proxy::{self, Body};
use crate::ratelimit::Limit;
use crate::redirect::safe_return_path;
use crate::saml::authn::{authn_request_xml, new_request_id, redirect_url, AuthnRequestSpec};
use crate::session::cookie::{CookieSpec, SameSite};
use crate::session::pending::{browser_hash, browser_ids, PendingLogin};
use crate::session::{random_id, random_token};

impl Gateway {
    pub(super) fn login_cookie(&self) -> CookieSpec<'_> {
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

    pub(super) fn session_cookie(&self) -> CookieSpec<'_> {
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

    pub(super) async fn explicit_login(
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
            Some(path) => self.start_login(req.headers(), path, conn, policy).await,
            None => {
                if policy.logs.audit(conn.client, "login_refused", "rd") {
                    tracing::warn!(target: "samlgate::audit", event = "login_refused", reason = "rd is not a local path", rd = %crate::saml::error::clip(&rd), client = %conn.client);
                }
                pages::simple(StatusCode::BAD_REQUEST, "bad_return_path", "The address to return to after sign-in is not on this site, so sign-in was not started.", browser)
            }
        }
    }

    /// Records a pending login bound to this browser and redirects to the IdP.
    pub(super) async fn start_login(
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
        let pending = PendingLogin {
            request_id: request_id.clone(),
            return_path: return_path.to_string(),
            browser: browser_hash(&browser_id),
        };
        if let Err(e) = self.flows.put_pending(&relay, &pending).await {
            return self.state_unavailable(&e, headers, conn);
        }
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

    /// No session: browsers navigating are sent to the IdP, everything else gets 401.
    pub(super) async fn challenge(
        &self,
        req: &Request<Incoming>,
        conn: ConnInfo,
        policy: &Policy,
    ) -> Response<Body> {
        let return_path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        if pages::is_browser_navigation(req.method(), req.headers()) {
            let return_path = safe_return_path(return_path).unwrap_or("/");
            return self
                .start_login(req.headers(), return_path, conn, policy)
                .await;
        }
        self.unauthenticated(return_path)
    }

    /// 401 with the login URL that returns to `return_path` (never a redirect: API clients
    /// and forward-auth proxies need the status).
    pub(super) fn unauthenticated(&self, return_path: &str) -> Response<Body> {
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
}
