//! `samlgate dev-idp`: a SAML 2.0 identity provider for development and tests (the SAML
//! counterpart of mock-oauth2-server). DEVELOPMENT ONLY: it signs an assertion for anyone who
//! presses a button. It binds to loopback unless told otherwise, logs a warning at start and
//! shows a banner on every page. Gateway code never imports this module.
//!
//! Endpoints (all GET unless noted):
//!
//! | path | what |
//! |---|---|
//! | `/` | home: entity ID, endpoints, SPs (with IdP-initiated links), users |
//! | `/metadata` | the IdP's metadata (`EntityDescriptor`, signing key, SSO and SLO by Redirect) |
//! | `/sso?SAMLRequest=…&RelayState=…` | SP-initiated sign-in (HTTP-Redirect binding) → login page |
//! | `/login` (POST) | the login page's forms → auto-submitting POST of the signed Response to the ACS |
//! | `/idp-initiated?sp=<entity ID>` | unsolicited sign-in (no InResponseTo) to that SP's ACS |
//! | `/slo?SAMLRequest=…` | Single Logout: ends the dev IdP's session, answers with a LogoutResponse by redirect |
//! | `/healthz` | `ok` |
//!
//! State is in memory: pending sign-ins (random token → request id, SP, ACS, RelayState; 15
//! minutes, single use) and the IdP's own login sessions (cookie `devidp_session`, 8 hours).
//!
//! Submodules: [`users`] (the people), [`sps`] (trusted SPs), [`response`] (the signed
//! Response), [`protocol`] (redirect binding, requests, LogoutResponse, metadata), [`pages`]
//! (HTML). This file holds the HTTP handler and the listener.

pub mod pages;
pub mod protocol;
pub mod response;
pub mod sps;
pub mod users;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use response::{Audience, ResponseSpec, SigningKey};
use sps::ServiceProvider;
use users::User;

/// The dev IdP's login-session cookie.
pub const SESSION_COOKIE: &str = "devidp_session";
/// How long a started sign-in waits on the login page.
pub const PENDING_TTL: Duration = Duration::from_secs(15 * 60);
/// How long the dev IdP remembers who signed in (SimpleSAMLphp's default session length).
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 60 * 60);
/// Largest login form accepted.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// Everything a dev IdP is built from.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where browsers reach it, e.g. `http://127.0.0.1:7000` (no trailing slash needed).
    pub base_url: String,
    pub users: Vec<User>,
    pub sps: Vec<ServiceProvider>,
    pub key: SigningKey,
}

/// A sign-in waiting on the login page.
#[derive(Debug, Clone)]
struct Pending {
    sp_entity_id: String,
    acs_url: String,
    /// `None` for IdP-initiated.
    request_id: Option<String>,
    relay_state: Option<String>,
    name_id_format: Option<String>,
}

pub struct DevIdp {
    base_url: String,
    entity_id: String,
    sso_url: String,
    slo_url: String,
    metadata_url: String,
    metadata_xml: String,
    secure_cookies: bool,
    users: Vec<User>,
    sps: RwLock<Vec<ServiceProvider>>,
    key: Arc<SigningKey>,
    pending: moka::sync::Cache<String, Pending>,
    sessions: moka::sync::Cache<String, String>,
}

/// Refuses a listen address off loopback unless `allow_non_loopback`.
pub fn check_listen(addr: SocketAddr, allow_non_loopback: bool) -> Result<(), String> {
    if addr.ip().is_loopback() || allow_non_loopback {
        Ok(())
    } else {
        Err(format!(
            "refusing to listen on {addr}: the dev IdP signs assertions for anyone who asks, so it binds to loopback only; pass --allow-non-loopback if you really mean it (never in production)"
        ))
    }
}

impl DevIdp {
    pub fn new(s: Settings) -> Result<Arc<DevIdp>, String> {
        let base = url::Url::parse(&s.base_url)
            .map_err(|e| format!("dev IdP base URL {:?}: {e}", s.base_url))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(format!(
                "dev IdP base URL {:?} must be http:// or https:// with a host",
                s.base_url
            ));
        }
        if base.path() != "/" || base.query().is_some() || base.fragment().is_some() {
            return Err(format!(
                "dev IdP base URL {:?} must not carry a path, query or fragment (the IdP serves at the root of its host)",
                s.base_url
            ));
        }
        if s.users.is_empty() {
            return Err("the dev IdP needs at least one user".into());
        }
        let base_url = s.base_url.trim_end_matches('/').to_string();
        let entity_id = format!("{base_url}/metadata");
        let sso_url = format!("{base_url}/sso");
        let slo_url = format!("{base_url}/slo");
        let metadata_xml =
            protocol::idp_metadata_xml(&entity_id, &sso_url, &slo_url, &s.key.cert_b64());
        Ok(Arc::new(DevIdp {
            secure_cookies: base.scheme() == "https",
            metadata_url: entity_id.clone(),
            base_url,
            entity_id,
            sso_url,
            slo_url,
            metadata_xml,
            users: s.users,
            sps: RwLock::new(s.sps),
            key: Arc::new(s.key),
            pending: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(PENDING_TTL)
                .build(),
            sessions: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(SESSION_TTL)
                .build(),
        }))
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }
    /// The entity ID, which is also the metadata URL (as with SimpleSAMLphp).
    pub fn entity_id(&self) -> &str {
        &self.entity_id
    }
    pub fn sso_url(&self) -> &str {
        &self.sso_url
    }
    pub fn slo_url(&self) -> &str {
        &self.slo_url
    }
    pub fn metadata_xml(&self) -> &str {
        &self.metadata_xml
    }
    pub fn cert_der(&self) -> &[u8] {
        &self.key.cert_der
    }
    pub fn users(&self) -> &[User] {
        &self.users
    }

    /// The SPs trusted now.
    pub fn sps(&self) -> Vec<ServiceProvider> {
        self.sps.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Trusts one more SP (replacing one with the same entity ID). For tests and the demo,
    /// which learn the SP's URLs after the IdP is up.
    pub fn register_sp(&self, sp: ServiceProvider) {
        if let Ok(mut sps) = self.sps.write() {
            sps.retain(|s| s.entity_id != sp.entity_id);
            sps.push(sp);
        }
    }

    fn session_user(&self, headers: &HeaderMap) -> Option<(String, String)> {
        crate::session::cookie::find_cookies(headers, SESSION_COOKIE)
            .find_map(|token| self.sessions.get(token).map(|u| (token.to_string(), u)))
    }

    fn session_cookie(&self, value: &str, max_age: u64) -> String {
        format!(
            "{SESSION_COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
            if self.secure_cookies { "; Secure" } else { "" }
        )
    }

    /// Serves one request. Generic over the body so tests can call it without a socket.
    pub async fn handle<B>(self: &Arc<Self>, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        let get = method == Method::GET || method == Method::HEAD;
        match (path.as_str(), get, method == Method::POST) {
            ("/", true, _) => self.home(req.headers()),
            ("/metadata", true, _) => respond(
                StatusCode::OK,
                "application/samlmetadata+xml",
                self.metadata_xml.clone(),
                Csp::Page,
            ),
            ("/healthz", true, _) => respond(StatusCode::OK, "text/plain", "ok".into(), Csp::Page),
            ("/sso", true, _) => self.sso(&req),
            ("/idp-initiated", true, _) => self.idp_initiated(&req),
            ("/slo", true, _) => self.slo(&req),
            ("/login", _, true) => self.login(req).await,
            ("/", ..)
            | ("/metadata", ..)
            | ("/healthz", ..)
            | ("/idp-initiated", ..)
            | ("/slo", ..)
            | ("/login", ..) => error(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed",
                "This endpoint does not take that method.",
            ),
            ("/sso", ..) => error(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed",
                "The dev IdP takes AuthnRequests by the HTTP-Redirect binding (GET) only.",
            ),
            _ => error(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing at this address.",
            ),
        }
    }

    fn home(&self, headers: &HeaderMap) -> Response<Full<Bytes>> {
        let sps = self.sps();
        let session = self.session_user(headers);
        html(
            StatusCode::OK,
            pages::home_page(&pages::HomeView {
                entity_id: &self.entity_id,
                sso_url: &self.sso_url,
                slo_url: &self.slo_url,
                metadata_url: &self.metadata_url,
                users: &self.users,
                sps: &sps,
                session_user: session.as_ref().map(|(_, u)| u.as_str()),
            }),
            Csp::Page,
        )
    }

    fn login_page(
        &self,
        status: StatusCode,
        token: &str,
        p: &Pending,
        headers: &HeaderMap,
        error: Option<&str>,
    ) -> Response<Full<Bytes>> {
        let session = self.session_user(headers);
        html(
            status,
            pages::login_page(&pages::LoginView {
                token,
                sp_entity_id: &p.sp_entity_id,
                users: &self.users,
                session_user: session.as_ref().map(|(_, u)| u.as_str()),
                error,
                idp_initiated: p.request_id.is_none(),
            }),
            Csp::Form,
        )
    }

    fn sso<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let q = query(req);
        let Some(raw) = first(&q, "SAMLRequest") else {
            return error(
                StatusCode::BAD_REQUEST,
                "No SAMLRequest",
                "The SSO endpoint expects an AuthnRequest by the HTTP-Redirect binding (?SAMLRequest=…).",
            );
        };
        let info =
            match protocol::decode_redirect(raw).and_then(|x| protocol::parse_authn_request(&x)) {
                Ok(i) => i,
                Err(e) => {
                    tracing::warn!(target: "samlgate::devidp", error = %e, "bad AuthnRequest");
                    return error(StatusCode::BAD_REQUEST, "Bad AuthnRequest", &e);
                }
            };
        let sps = self.sps();
        let (sp, acs) = match sps::resolve(&sps, info.issuer.as_deref(), info.acs_url.as_deref()) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(target: "samlgate::devidp", error = %e, "AuthnRequest refused");
                return html(
                    StatusCode::FORBIDDEN,
                    pages::unknown_sp_page(
                        &e.to_string(),
                        info.issuer.as_deref(),
                        info.acs_url.as_deref(),
                        &sps,
                    ),
                    Csp::Page,
                );
            }
        };
        let pending = Pending {
            sp_entity_id: sp.entity_id.clone(),
            acs_url: acs,
            request_id: Some(info.id),
            relay_state: first(&q, "RelayState").map(str::to_string),
            name_id_format: info.name_id_format,
        };
        let token = crate::session::random_token();
        self.pending.insert(token.clone(), pending.clone());
        self.login_page(StatusCode::OK, &token, &pending, req.headers(), None)
    }

    fn idp_initiated<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let q = query(req);
        let sps = self.sps();
        let Some(entity) = first(&q, "sp") else {
            return html(
                StatusCode::BAD_REQUEST,
                pages::unknown_sp_page(
                    "Name the service provider: /idp-initiated?sp=<its entity ID>.",
                    None,
                    None,
                    &sps,
                ),
                Csp::Page,
            );
        };
        let Some(sp) = sps.iter().find(|s| s.entity_id == entity) else {
            return html(
                StatusCode::FORBIDDEN,
                pages::unknown_sp_page(
                    &sps::SpError::UnknownSp(entity.to_string()).to_string(),
                    Some(entity),
                    None,
                    &sps,
                ),
                Csp::Page,
            );
        };
        let pending = Pending {
            sp_entity_id: sp.entity_id.clone(),
            acs_url: sp.default_acs().to_string(),
            request_id: None,
            relay_state: first(&q, "RelayState").map(str::to_string),
            name_id_format: None,
        };
        let token = crate::session::random_token();
        self.pending.insert(token.clone(), pending.clone());
        self.login_page(StatusCode::OK, &token, &pending, req.headers(), None)
    }

    async fn login<B>(self: &Arc<Self>, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let headers = req.headers().clone();
        let body = match Limited::new(req.into_body(), MAX_FORM_BYTES)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Form too large",
                    "The login form is too large.",
                )
            }
        };
        let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let token = field("token").unwrap_or("");
        let Some(pending) = self.pending.get(token) else {
            return error(
                StatusCode::BAD_REQUEST,
                "Sign-in expired",
                "This sign-in expired or was already used. Start again from the application.",
            );
        };
        let username = field("username").unwrap_or("").trim();
        let session = self.session_user(&headers);
        let continuing =
            field("continue") == Some("1") && session.as_ref().is_some_and(|(_, u)| u == username);
        let user = if continuing {
            self.users.iter().find(|u| u.username == username)
        } else {
            users::authenticate(&self.users, username, field("password"))
        };
        let Some(user) = user.cloned() else {
            tracing::info!(target: "samlgate::devidp", username, "wrong username or password");
            return self.login_page(
                StatusCode::UNAUTHORIZED,
                token,
                &pending,
                &headers,
                Some("Wrong username or password."),
            );
        };
        // Single use: only the request that removes it goes on.
        if self.pending.remove(token).is_none() {
            return error(
                StatusCode::BAD_REQUEST,
                "Sign-in expired",
                "This sign-in expired or was already used. Start again from the application.",
            );
        }
        let spec = ResponseSpec::for_user(
            &user,
            &Audience {
                idp_entity_id: &self.entity_id,
                sp_entity_id: &pending.sp_entity_id,
                acs_url: &pending.acs_url,
                in_response_to: pending.request_id.as_deref(),
                requested_name_id_format: pending.name_id_format.as_deref(),
            },
            chrono::Utc::now(),
        );
        let key = self.key.clone();
        let signed =
            match tokio::task::spawn_blocking(move || response::sign_response(&spec, &key)).await {
                Ok(Ok(xml)) => xml,
                Ok(Err(e)) => {
                    tracing::error!(target: "samlgate::devidp", error = %e, "signing failed");
                    return error(StatusCode::INTERNAL_SERVER_ERROR, "Signing failed", &e);
                }
                Err(e) => {
                    tracing::error!(target: "samlgate::devidp", error = %e, "signing task failed");
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Signing failed",
                        "The signing task failed.",
                    );
                }
            };
        let session_token = match session {
            Some((t, u)) if u == user.username => t,
            _ => crate::session::random_token(),
        };
        self.sessions
            .insert(session_token.clone(), user.username.clone());
        tracing::info!(
            target: "samlgate::devidp",
            user = %user.username,
            sp = %pending.sp_entity_id,
            acs = %pending.acs_url,
            idp_initiated = pending.request_id.is_none(),
            "issued a signed SAML response"
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(signed.as_bytes());
        let mut r = html(
            StatusCode::OK,
            pages::auto_post_page(&pending.acs_url, &b64, pending.relay_state.as_deref()),
            Csp::AutoPost,
        );
        set_cookie(
            &mut r,
            &self.session_cookie(&session_token, SESSION_TTL.as_secs()),
        );
        r
    }

    fn slo<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let q = query(req);
        let logout = match first(&q, "SAMLRequest") {
            None => None,
            Some(raw) => match protocol::decode_redirect(raw)
                .and_then(|x| protocol::parse_logout_request(&x))
            {
                Ok(i) => Some(i),
                Err(e) => {
                    tracing::warn!(target: "samlgate::devidp", error = %e, "bad LogoutRequest");
                    return error(StatusCode::BAD_REQUEST, "Bad LogoutRequest", &e);
                }
            },
        };
        let ended = self.session_user(req.headers());
        if let Some((token, _)) = &ended {
            self.sessions.invalidate(token);
        }
        tracing::info!(
            target: "samlgate::devidp",
            user = ended.as_ref().map(|(_, u)| u.as_str()).unwrap_or("-"),
            sp = logout.as_ref().and_then(|l| l.issuer.as_deref()).unwrap_or("-"),
            "signed out"
        );
        let target = logout.as_ref().and_then(|l| {
            let issuer = l.issuer.as_deref()?;
            let slo = self
                .sps()
                .into_iter()
                .find(|s| s.entity_id == issuer)?
                .slo_url?;
            Some((l.id.clone(), slo))
        });
        let mut r = match target {
            Some((request_id, slo)) => {
                let xml = protocol::logout_response_xml(
                    &response::new_id(),
                    &self.entity_id,
                    &slo,
                    &request_id,
                    chrono::Utc::now(),
                );
                match protocol::redirect_url(&slo, "SAMLResponse", &xml, first(&q, "RelayState")) {
                    Ok(location) => redirect(&location),
                    Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "Bad SLO URL", &e),
                }
            }
            None => html(StatusCode::OK, pages::signed_out_page(), Csp::Page),
        };
        set_cookie(&mut r, &self.session_cookie("", 0));
        r
    }
}

type Query = Vec<(String, String)>;

fn query<B>(req: &Request<B>) -> Query {
    url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn first<'a>(q: &'a Query, name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Which Content-Security-Policy a page gets.
#[derive(Clone, Copy)]
enum Csp {
    /// No script, no forms elsewhere.
    Page,
    /// Forms that post back to the dev IdP.
    Form,
    /// The one inline script (by hash) and a form to the SP's ACS.
    AutoPost,
}

fn csp(kind: Csp) -> String {
    const BASE: &str =
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'";
    match kind {
        Csp::Page => format!("{BASE}; form-action 'none'"),
        Csp::Form => format!("{BASE}; form-action 'self'"),
        Csp::AutoPost => {
            let digest =
                ring::digest::digest(&ring::digest::SHA256, pages::AUTO_POST_SCRIPT.as_bytes());
            format!(
                "{BASE}; script-src 'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
            )
        }
    }
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: String,
    kind: Csp,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let policy =
        HeaderValue::from_str(&csp(kind)).unwrap_or(HeaderValue::from_static("default-src 'none'"));
    crate::pages::set_page_headers(r.headers_mut(), content_type, policy);
    r
}

fn html(status: StatusCode, body: String, kind: Csp) -> Response<Full<Bytes>> {
    respond(status, "text/html; charset=utf-8", body, kind)
}

fn error(status: StatusCode, title: &str, sentence: &str) -> Response<Full<Bytes>> {
    html(status, pages::error_page(title, sentence), Csp::Page)
}

fn redirect(location: &str) -> Response<Full<Bytes>> {
    let mut r = respond(StatusCode::FOUND, "text/plain", String::new(), Csp::Page);
    match HeaderValue::from_str(location) {
        Ok(v) => {
            r.headers_mut().insert(header::LOCATION, v);
            r
        }
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Bad redirect",
            "The redirect URL is not a valid header value.",
        ),
    }
}

fn set_cookie(r: &mut Response<Full<Bytes>>, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Serves the dev IdP on `listener` until `shutdown` resolves, then drains for up to 5 s.
pub async fn serve_on(idp: Arc<DevIdp>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(target: "samlgate::devidp", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let idp = idp.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let idp = idp.clone();
                async move { Ok::<_, Infallible>(idp.handle(req).await) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let _ = watcher.watch(conn.into_owned()).await;
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {},
        _ = tokio::time::sleep(Duration::from_secs(5)) => {},
    }
}

/// How to start a dev IdP.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    /// Overrides `http://<bound address>` as the base of every URL the IdP publishes.
    pub public_url: Option<String>,
    pub allow_non_loopback: bool,
    pub users: Vec<User>,
    pub sps: Vec<ServiceProvider>,
    pub key: SigningKey,
}

/// A dev IdP serving in the background. Dropping it stops the server.
pub struct Running {
    pub idp: Arc<DevIdp>,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub fn url(&self) -> &str {
        self.idp.base_url()
    }

    /// Stops accepting, drains, and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Binds `opts.listen` (loopback unless allowed otherwise) and serves in a spawned task.
pub async fn start(opts: Options) -> Result<Running, String> {
    check_listen(opts.listen, opts.allow_non_loopback)?;
    let listener = TcpListener::bind(opts.listen)
        .await
        .map_err(|e| format!("dev IdP: listen {}: {e}", opts.listen))?;
    start_on(opts, listener).await
}

/// Like [`start`] on an already-bound listener (the demo binds its ports first); the
/// listener's address counts, not `opts.listen`.
pub async fn start_on(opts: Options, listener: TcpListener) -> Result<Running, String> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    check_listen(addr, opts.allow_non_loopback)?;
    let base_url = opts
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let idp = DevIdp::new(Settings {
        base_url,
        users: opts.users,
        sps: opts.sps,
        key: opts.key,
    })?;
    tracing::warn!(
        target: "samlgate::devidp",
        url = %idp.base_url(),
        "DEVELOPMENT ONLY — never use in production: the samlgate dev IdP signs an assertion for anyone who picks a user"
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_on(idp.clone(), listener, async {
        let _ = stopped.await;
    }));
    Ok(Running {
        idp,
        addr,
        stop: Some(stop),
        task: Some(task),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idp() -> Arc<DevIdp> {
        DevIdp::new(Settings {
            base_url: "http://127.0.0.1:7000/".into(),
            users: users::default_users(),
            sps: vec![sps::from_flags(
                "http://127.0.0.1:8000/saml/metadata",
                "http://127.0.0.1:8000/saml/acs",
                Some("http://127.0.0.1:8000/saml/slo"),
            )
            .unwrap()],
            key: SigningKey::generate("unit").unwrap(),
        })
        .unwrap()
    }

    fn get(uri: &str) -> Request<Full<Bytes>> {
        Request::get(uri).body(Full::new(Bytes::new())).unwrap()
    }

    async fn text(r: Response<Full<Bytes>>) -> String {
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[test]
    fn listen_is_loopback_only_unless_allowed() {
        assert!(check_listen("127.0.0.1:7000".parse().unwrap(), false).is_ok());
        assert!(check_listen("[::1]:7000".parse().unwrap(), false).is_ok());
        let err = check_listen("0.0.0.0:7000".parse().unwrap(), false).unwrap_err();
        assert!(err.contains("--allow-non-loopback"), "{err}");
        assert!(check_listen("192.168.1.2:7000".parse().unwrap(), false).is_err());
        assert!(check_listen("0.0.0.0:7000".parse().unwrap(), true).is_ok());
    }

    #[test]
    fn urls_derive_from_the_base() {
        let idp = idp();
        assert_eq!(idp.entity_id(), "http://127.0.0.1:7000/metadata");
        assert_eq!(idp.sso_url(), "http://127.0.0.1:7000/sso");
        assert_eq!(idp.slo_url(), "http://127.0.0.1:7000/slo");
        let key = SigningKey::generate("unit").unwrap();
        for bad in ["ftp://x", "http://x/idp", "http://x/?a=1", "not a url"] {
            assert!(
                DevIdp::new(Settings {
                    base_url: bad.into(),
                    users: users::default_users(),
                    sps: vec![],
                    key: key.clone(),
                })
                .is_err(),
                "{bad}"
            );
        }
        assert!(DevIdp::new(Settings {
            base_url: "http://x".into(),
            users: vec![],
            sps: vec![],
            key,
        })
        .is_err());
    }

    #[tokio::test]
    async fn routes_and_headers() {
        let idp = idp();
        let r = idp.handle(get("/metadata")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/samlmetadata+xml");
        assert!(text(r).await.contains("IDPSSODescriptor"));
        let r = idp.handle(get("/")).await;
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'"));
        assert!(text(r).await.contains(pages::BANNER));
        assert_eq!(idp.handle(get("/nope")).await.status(), 404);
        assert_eq!(idp.handle(get("/sso")).await.status(), 400);
        assert_eq!(idp.handle(get("/sso?SAMLRequest=%%%")).await.status(), 400);
        assert_eq!(idp.handle(get("/idp-initiated")).await.status(), 400);
        assert_eq!(
            idp.handle(get("/idp-initiated?sp=http%3A%2F%2Fevil"))
                .await
                .status(),
            403
        );
        let post = Request::post("/sso").body(Full::new(Bytes::new())).unwrap();
        assert_eq!(idp.handle(post).await.status(), 405);
        let post = Request::post("/login")
            .body(Full::new(Bytes::from("token=unknown&username=alice")))
            .unwrap();
        assert_eq!(idp.handle(post).await.status(), 400);
    }

    #[test]
    fn auto_post_csp_allows_exactly_the_inline_script() {
        let c = csp(Csp::AutoPost);
        // echo -n 'document.forms[0].submit();' | openssl dgst -sha256 -binary | base64
        let digest = ring::digest::digest(&ring::digest::SHA256, b"document.forms[0].submit();");
        let want = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
        assert!(c.contains(&format!("script-src 'sha256-{want}'")), "{c}");
        assert!(!c.contains("form-action"));
        assert!(!csp(Csp::Page).contains("script-src"));
    }

    #[tokio::test]
    async fn idp_initiated_login_issues_an_unsolicited_response() {
        let idp = idp();
        let r = idp.handle(get("/idp-initiated?sp=http%3A%2F%2F127.0.0.1%3A8000%2Fsaml%2Fmetadata&RelayState=%2Fhome")).await;
        assert_eq!(r.status(), 200);
        let page = text(r).await;
        let token = page
            .split("name=\"token\" value=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string();
        // An unknown user gets the page again, with the same token still valid.
        let post = |body: String| {
            Request::post("/login")
                .body(Full::new(Bytes::from(body)))
                .unwrap()
        };
        let r = idp
            .handle(post(format!("token={token}&username=mallory")))
            .await;
        assert_eq!(r.status(), 401);
        assert!(text(r).await.contains("Wrong username or password."));
        let r = idp
            .handle(post(format!("token={token}&username=alice")))
            .await;
        assert_eq!(r.status(), 200);
        assert!(r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("devidp_session="));
        let page = text(r).await;
        assert!(page.contains(r#"action="http://127.0.0.1:8000/saml/acs""#));
        assert!(page.contains(r#"name="RelayState" value="/home""#));
        let b64 = page
            .split("name=\"SAMLResponse\" value=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let xml = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .unwrap();
        assert!(!xml.contains("InResponseTo"));
        assert!(xml.contains(">alice</saml:NameID>"));
        // The token is single use.
        let r = idp
            .handle(post(format!("token={token}&username=alice")))
            .await;
        assert_eq!(r.status(), 400);
    }
}
