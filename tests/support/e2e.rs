//! A samlgate gateway and a real SimpleSAMLphp IdP wired to each other, and the browser's
//! steps of a sign-in through them. The IdP's SP entry needs the gateway's entity ID and ACS
//! URL (which derive from its public URL, so from its port) and the gateway needs the IdP's
//! metadata: the gateway's listener is bound first ([`GatewayListener`]), the IdP is started
//! with an entry for it, and only then is the gateway built and served on the already-bound
//! listener — no window for another process to take the port.
//!
//! Include next to `gateway.rs` and `simplesamlphp.rs`
//! (`#[path = "support/e2e.rs"] mod e2e;`).
#![allow(dead_code)]

use std::time::Instant;

use tokio::net::TcpListener;

use crate::gateway::{
    self, get_accepting, post_saml_response, start_gateway_on, Options, TestGateway, Upstream, HTML,
};
use crate::simplesamlphp::{self, drive_login, PostForm, SimpleSamlPhp, SpEntry, TestUser};

/// Maps the user header to SimpleSAMLphp's `uid` attribute: its NameID is persistent (opaque).
pub const USER_IS_UID: &str = "[headers]\nuser_attribute = \"uid\"\n";

/// A gateway's loopback listener, bound before the IdP is configured, and the public URL the
/// gateway will have.
pub struct GatewayListener {
    listener: TcpListener,
    /// `http://127.0.0.1:PORT` unless set with [`GatewayListener::with_public_url`].
    pub public_url: String,
}

impl GatewayListener {
    /// On a free loopback port.
    pub async fn bind() -> GatewayListener {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let public_url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        GatewayListener {
            listener,
            public_url,
        }
    }

    /// The gateway reached under another URL (a host name, https, a front proxy).
    pub fn with_public_url(self, public_url: String) -> GatewayListener {
        GatewayListener { public_url, ..self }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.listener.local_addr().unwrap()
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    /// The IdP's entry for this gateway, with the gateway's defaults: entity ID
    /// `public_url/saml/metadata`, ACS `public_url/saml/acs`.
    pub fn sp_entry(&self) -> SpEntry {
        SpEntry::new(
            &format!("{}/saml/metadata", self.public_url),
            &format!("{}/saml/acs", self.public_url),
        )
    }

    /// Builds the gateway (with `public_url` set to this listener's) and serves it here;
    /// asserts that it is the SP `entry` describes to the IdP.
    pub async fn serve(
        self,
        entry: &SpEntry,
        upstream: &str,
        idp_metadata_xml: &str,
        opts: Options,
    ) -> TestGateway {
        let opts = Options {
            public_url: Some(self.public_url),
            ..opts
        };
        let gw = start_gateway_on(self.listener, upstream, idp_metadata_xml, opts).await;
        assert_eq!(
            gw.sp_entity_id(),
            entry.entity_id,
            "the IdP's SP entry must name the gateway's entity ID"
        );
        assert_eq!(
            gw.acs_url(),
            entry.acs_url,
            "the IdP's SP entry must name the gateway's ACS"
        );
        gw
    }
}

/// SimpleSAMLphp with its default users, trusting the SPs `entries`; panics when it does not
/// start.
pub async fn start_simplesamlphp(entries: &[SpEntry]) -> SimpleSamlPhp {
    SimpleSamlPhp::start(entries, &simplesamlphp::default_users())
        .await
        .unwrap_or_else(|e| panic!("SimpleSAMLphp did not start: {e}"))
}

/// One IdP, one upstream, one gateway, wired to each other. Field order = drop order: the
/// gateway stops before the IdP's processes are killed.
pub struct SspSetup {
    pub gw: TestGateway,
    pub up: Upstream,
    pub idp: SimpleSamlPhp,
}

impl SspSetup {
    /// `sp` may adjust the IdP's entry for the gateway (signing, encryption …).
    pub async fn start(sp: impl FnOnce(&mut SpEntry), opts: Options) -> SspSetup {
        let listener = GatewayListener::bind().await;
        let mut entry = listener.sp_entry();
        sp(&mut entry);
        SspSetup::start_on(listener, entry, |_| opts).await
    }

    /// The IdP with `entry`, an upstream, and the gateway on `listener` with the options
    /// `opts` makes for that IdP (e.g. its metadata URL).
    pub async fn start_on(
        listener: GatewayListener,
        entry: SpEntry,
        opts: impl FnOnce(&SimpleSamlPhp) -> Options,
    ) -> SspSetup {
        let t = Instant::now();
        let idp = start_simplesamlphp(std::slice::from_ref(&entry)).await;
        let up = gateway::start_upstream().await;
        let gw = listener
            .serve(&entry, &up.url(), &idp.metadata_xml, opts(&idp))
            .await;
        eprintln!(
            "setup: IdP {} + gateway {} ready in {:?}",
            idp.base_url,
            gw.base,
            t.elapsed()
        );
        SspSetup { gw, up, idp }
    }

    /// Browser navigation to a protected `path` without a session: must be a 302 to the
    /// IdP's SSO URL. Returns (Location, Set-Cookie values).
    pub async fn begin(&self, c: &reqwest::Client, path: &str) -> (String, Vec<String>) {
        redirect_to_idp(c, &self.gw.url(path), &self.idp).await
    }

    /// Drives the IdP's login for `user` from `start` (SP-initiated) and checks the form.
    pub async fn idp_login(&self, c: &reqwest::Client, start: &str, user: &TestUser) -> PostForm {
        login_at_idp(c, &self.idp, start, user, &self.gw.acs_url()).await
    }

    /// The whole browser sign-in for `user` starting at `path`; asserts the ACS's 303 back to
    /// `path` with a session cookie. Returns the IdP's form that was posted.
    pub async fn sign_in(&self, c: &reqwest::Client, path: &str, user: &TestUser) -> PostForm {
        let (loc, _) = self.begin(c, path).await;
        let form = self.idp_login(c, &loc, user).await;
        expect_signed_in(submit(c, &form, HTML).await, path).await;
        form
    }

    /// Browser navigation to `path`: (status, body).
    pub async fn get_page(&self, c: &reqwest::Client, path: &str) -> (u16, String) {
        let r = get_accepting(c, &self.gw.url(path), HTML).await;
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// A browser navigation to `path` with a session: proxied (200), and the upstream sees
    /// `user` on `path`.
    pub async fn upstream_sees(&self, c: &reqwest::Client, path: &str, user: &TestUser) {
        let (status, body) = self.get_page(c, path).await;
        assert_eq!(status, 200, "signed in: proxied: {body}");
        let seen = self.up.last();
        assert_eq!(seen.path, path);
        assert_eq!(seen.one("x-forwarded-user").as_deref(), Some(user.uid));
    }

    /// Whether an API-style request (JSON) to a protected path is unauthenticated (401).
    pub async fn has_no_session(&self, c: &reqwest::Client) -> bool {
        let r = get_accepting(c, &self.gw.url("/reports"), "application/json").await;
        r.status() == 401
    }
}

/// Browser navigation to the protected `url` without a session: must be a 302 to the IdP's
/// SSO URL. Returns (Location, Set-Cookie values).
pub async fn redirect_to_idp(
    c: &reqwest::Client,
    url: &str,
    idp: &SimpleSamlPhp,
) -> (String, Vec<String>) {
    let (loc, cookies) = gateway::login_redirect(c, url).await;
    assert!(
        loc.starts_with(&format!("{}?", idp.sso_url)),
        "redirect goes to the IdP's SSO service: {loc}"
    );
    (loc, cookies)
}

/// [`drive_login`] from `start` for `user`; on success the form must post to `acs_url`.
pub async fn try_login_at_idp(
    c: &reqwest::Client,
    start: &str,
    user: &TestUser,
    acs_url: &str,
) -> Result<PostForm, String> {
    let form = drive_login(c, start, user).await?;
    assert_eq!(form.action, acs_url, "the IdP posts to the gateway's ACS");
    Ok(form)
}

/// SimpleSAMLphp's login for `user` from `start`, a sign-in the gateway began (panics with
/// the IdP's log on failure): the form posts to `acs_url` and echoes the RelayState.
pub async fn login_at_idp(
    c: &reqwest::Client,
    idp: &SimpleSamlPhp,
    start: &str,
    user: &TestUser,
    acs_url: &str,
) -> PostForm {
    let t = Instant::now();
    let form = try_login_at_idp(c, start, user, acs_url)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", idp.log_tail(30)));
    eprintln!("drive_login({}) took {:?}", user.username, t.elapsed());
    assert!(
        form.relay_state.as_deref().is_some_and(|r| !r.is_empty()),
        "the IdP echoes the gateway's RelayState"
    );
    form
}

/// POSTs the IdP's auto-submit form to the ACS as a browser would, with the given Accept.
pub async fn submit(c: &reqwest::Client, form: &PostForm, accept: &str) -> reqwest::Response {
    let relay = form.relay_state.as_deref();
    post_saml_response(c, &form.action, &form.saml_response, relay, accept).await
}

/// The ACS answered 303 to `path` and set the session cookie.
pub async fn expect_signed_in(r: reqwest::Response, path: &str) {
    let status = r.status();
    let loc = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let cookies = gateway::set_cookies(&r);
    let body = r.text().await.unwrap_or_default();
    assert_eq!(
        status, 303,
        "the ACS accepts the real IdP's response: {body}"
    );
    assert_eq!(
        loc.as_deref(),
        Some(path),
        "back to where the person started"
    );
    assert!(
        cookies.iter().any(|c| c.starts_with("samlgate_session=")),
        "session cookie set: {cookies:?}"
    );
}
