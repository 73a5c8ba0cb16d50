//! The pipeline, in one place. [`Gateway::handle`] is every request's life: the client
//! address, the route, the request-target checks, dispatch to a flow, and one access line.
//! A protected request runs the phases in [`Gateway::proxy`]:
//!
//! 1. **route, authenticate, authorize**: [`Gateway::admit`] (shared with forward-auth);
//! 2. **rewrite**: identity headers in, everything a client could forge out;
//! 3. **forward**: to the upstream, streaming, on this connection's own upstream connection.
//!
//! The engine holds no policy: each phase's decision is a pure function elsewhere.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::{Body as _, Incoming};

use super::admission::{Admission, Ask, Refusal, Via};
use super::answers::{clip_method, clip_path, plain, refuse_target};
use super::{route, ConnInfo, Gateway, Policy, Route};
use crate::client_ip;
use crate::log_throttle::{Kind as LogKind, UpstreamAnswer};
use crate::metrics::UpstreamErrorKind;
use crate::pages;
use crate::proxy::{self, Body, Forwarded};
use crate::session::{Session, SessionKey};
use crate::state::Readiness;
use crate::target;
use crate::tunnel::TunnelSession;

impl Gateway {
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
                if !self.ready.load(Ordering::SeqCst) {
                    plain(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
                } else if let Readiness::Down(_) = self.flows.readiness() {
                    plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "state backend unreachable\n",
                    )
                } else if self.scim.as_ref().is_some_and(|s| !s.ready()) {
                    plain(StatusCode::SERVICE_UNAVAILABLE, "SCIM data not loaded\n")
                } else {
                    plain(StatusCode::OK, "ready\n")
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
            Route::Login => self.explicit_login(&req, conn, policy).await,
            Route::Acs => self.acs(req, conn, policy, user).await,
            Route::Logout => self.logout(req, conn, user).await,
            Route::Slo => self.slo(req, conn, policy, user).await,
            Route::ForwardAuth => self.forward_auth(&req, conn, policy, user).await,
            Route::Password => self.password_page(req, conn, policy, user).await,
            Route::Scim => match &self.scim {
                Some(scim) => scim.handle(req, conn.client).await,
                None => pages::simple(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "There is nothing at this address.",
                    false,
                ),
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
            Route::Protected => self.proxy(req, conn, upstream_slot, policy, user).await,
        }
    }

    /// A protected request: **route → authenticate → authorize** ([`Gateway::admit`]), then
    /// **rewrite** and **forward**.
    async fn proxy(
        &self,
        mut req: Request<Incoming>,
        conn: ConnInfo,
        upstream_slot: Option<proxy::ConnSlot>,
        policy: &Policy,
        user: &mut Option<String>,
    ) -> Response<Body> {
        let ask = Ask {
            method: req.method(),
            path: req.uri().path(),
            headers: req.headers(),
            body_empty: req.body().is_end_stream(),
            via: Via::Proxy,
        };
        let mut set_cookie = None;
        let session = match self.admit(&ask, conn, policy).await {
            Admission::Anonymous => None,
            Admission::Admitted {
                key,
                session,
                basic_path,
                set_cookie: cookie,
            } => {
                // (for the access log only: no copy when it is off)
                if tracing::enabled!(target: "samlgate::access", tracing::Level::INFO) {
                    *user = Some(session.identity.user.clone());
                }
                if basic_path {
                    // Basic credentials on such a path are ours: never the upstream's.
                    super::password_signin::strip_basic(req.headers_mut());
                }
                set_cookie = cookie;
                Some((key, session))
            }
            Admission::Challenge => return self.challenge(&req, conn, policy).await,
            Admission::Refuse { why, answer } => {
                if let Refusal::Forbidden { user: who } = why {
                    *user = Some(who);
                }
                return answer;
            }
        };
        let host = client_host(&req);
        let upgrade = self.rewrite(&mut req, conn, policy, session, host.clone());
        let mut resp = self.forward(req, host, upgrade, upstream_slot).await;
        if let Some(v) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
        resp
    }

    /// **rewrite**: the identity headers (none on an anonymous path) replace whatever the
    /// client sent under any identity or foreign name, the gateway's cookies are stripped and
    /// `X-Forwarded-*` set; an upgrade carries the session it was opened under. Returns whether
    /// the request is an upgrade.
    fn rewrite(
        &self,
        req: &mut Request<Incoming>,
        conn: ConnInfo,
        policy: &Policy,
        session: Option<(Option<SessionKey>, Arc<Session>)>,
        host: Option<HeaderValue>,
    ) -> bool {
        let upgrade = proxy::is_upgrade_request(req);
        let (key, session) = session.unzip();
        let key = key.flatten();
        if let (true, Some(key), Some(session)) = (upgrade, key, &session) {
            // A tunnel lasts no longer than the session it was opened under.
            let store = self.sessions.clone();
            req.extensions_mut().insert(TunnelSession {
                alive: Arc::new(move || {
                    let store = store.clone();
                    Box::pin(async move { store.get(&key).await.is_some() })
                }),
                every: self.settings.proxy.upgrade_session_check,
                user: session.identity.user.clone(),
                // Any revocation (sign-out, SLO, SCIM, admin API, another replica) makes
                // every tunnel ask at once.
                recheck: Some(self.sessions.revocations()),
            });
        }
        let fwd = Forwarded {
            client_ip: conn.client,
            proto: self.client_proto(conn),
            host,
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
        upgrade
    }

    /// **forward**: on this HTTP/1 connection's own upstream connection when it has one.
    async fn forward(
        &self,
        req: Request<Incoming>,
        host: Option<HeaderValue>,
        upgrade: bool,
        upstream_slot: Option<proxy::ConnSlot>,
    ) -> Response<Body> {
        let browser = pages::accepts_html(req.headers());
        match self
            .upstream
            .forward_on(req, host, upgrade, upstream_slot)
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

    fn client_proto(&self, conn: ConnInfo) -> &'static str {
        if conn.tls || self.settings.public_url.scheme() == "https" {
            "https"
        } else {
            "http"
        }
    }
}

/// The host the client asked for: its `Host` header, else the request target's authority.
fn client_host(req: &Request<Incoming>) -> Option<HeaderValue> {
    req.headers().get(header::HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    })
}
