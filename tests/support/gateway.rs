//! Test support: a real samlgate server started in-process on a free loopback port, and a
//! real upstream HTTP server (echoes what it received, counts streamed uploads, echoes
//! WebSocket messages, answers slowly on request). Both stop when dropped.
//!
//! Include with `#[path = "support/gateway.rs"] mod gateway;`.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// What the upstream saw for the last request to it.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub path: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }
    pub fn one(&self, name: &str) -> Option<String> {
        let all = self.all(name);
        assert!(
            all.len() <= 1,
            "header {name} seen {} times: {all:?}",
            all.len()
        );
        all.into_iter().next()
    }
    /// Every header whose normalized name (lowercase, `_` as `-`) matches.
    pub fn any_variant(&self, name: &str) -> Vec<(String, String)> {
        let norm = |s: &str| s.to_ascii_lowercase().replace('_', "-");
        self.headers
            .iter()
            .filter(|(k, _)| norm(k) == norm(name))
            .cloned()
            .collect()
    }
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub stop: Option<oneshot::Sender<()>>,
}

impl Upstream {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn https_url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }
    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("upstream saw no request")
    }
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

type UBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

fn text(status: u16, s: String) -> Response<UBody> {
    let mut r = Response::new(Full::new(Bytes::from(s)).map_err(|n| match n {}).boxed());
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    r
}

async fn upstream_handle(
    mut req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<UBody>, Infallible> {
    let record = Seen {
        path: req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        version: format!("{:?}", req.version()),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    };
    seen.lock().unwrap().push(record.clone());
    let path = req.uri().path().to_string();
    if path == "/ws" {
        let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
            return Ok(text(400, "not a websocket request".into()));
        };
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            )
            .await;
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_text() || msg.is_binary() {
                    if ws.send(msg).await.is_err() {
                        break;
                    }
                } else if msg.is_close() {
                    break;
                }
            }
        });
        let mut r = text(101, String::new());
        let h = r.headers_mut();
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("connection", "upgrade".parse().unwrap());
        h.insert("sec-websocket-accept", accept.parse().unwrap());
        return Ok(r);
    }
    if path == "/upload" {
        let mut body = req.into_body();
        let mut total: u64 = 0;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Some(d) = f.data_ref() {
                        total += d.len() as u64;
                    }
                }
                Err(e) => return Ok(text(500, format!("body error: {e}"))),
            }
        }
        return Ok(text(200, format!("received {total} bytes")));
    }
    if let Some(ms) = path.strip_prefix("/slow/") {
        let ms: u64 = ms.parse().unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return Ok(text(200, format!("slept {ms} ms")));
    }
    let mut body = String::from("upstream page\n");
    for (k, v) in &record.headers {
        body.push_str(&format!("{k}: {v}\n"));
    }
    Ok(text(200, body))
}

/// Starts the echo upstream on a free loopback port.
pub async fn start_upstream() -> Upstream {
    start_upstream_with(None).await
}

/// Starts the echo upstream serving https with the given PEM certificate and key.
pub async fn start_tls_upstream(cert_pem: &str, key_pem: &str) -> Upstream {
    use rustls_pki_types::pem::PemObject;
    let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .map(|c| c.unwrap())
        .collect();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    start_upstream_with(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
}

async fn start_upstream_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (stop, mut stopped) = oneshot::channel::<()>();
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                _ = &mut stopped => break,
            };
            let seen = seen2.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| upstream_handle(req, seen.clone()));
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match tls {
                    Some(acceptor) => {
                        if let Ok(s) = acceptor.accept(stream).await {
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(s), svc)
                                .await;
                        }
                    }
                    None => {
                        let _ = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                            .await;
                    }
                }
            });
        }
    });
    Upstream {
        addr,
        seen,
        stop: Some(stop),
    }
}

/// A running gateway.
pub struct TestGateway {
    pub base: String,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub gateway: Arc<samlgate::gateway::Gateway>,
    pub settings: samlgate::config::Settings,
    pub stop: Option<oneshot::Sender<()>>,
    pub done: Option<tokio::task::JoinHandle<()>>,
}

impl TestGateway {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
    pub fn acs_url(&self) -> String {
        self.settings.saml.acs_url.clone()
    }
    pub fn sp_entity_id(&self) -> String {
        self.settings.saml.sp_entity_id.clone()
    }
    /// Signals graceful shutdown and returns the server task to await.
    pub fn shutdown(&mut self) -> tokio::task::JoinHandle<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.done.take().expect("already shut down")
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Options beyond the defaults; `extra_toml` is appended to the generated file and may hold
/// whole sections (`[authz]`, `[proxy]` …) — but not `[saml]`/`[session]` keys that are
/// generated (use `saml_toml` / `session_toml` for those).
#[derive(Default, Clone)]
pub struct Options {
    pub saml_toml: String,
    pub session_toml: String,
    pub extra_toml: String,
    /// PEM (cert, key) to serve https.
    pub tls: Option<(String, String)>,
    /// `public_url` when the gateway sits behind another proxy (e.g. nginx's address, so the
    /// ACS URL, entity ID and cookies belong to what the browser talks to); default: the
    /// gateway's own address. `TestGateway::base` stays the gateway's own address either way.
    pub public_url: Option<String>,
    /// PEM (private key, certificate) of the SP: written as `sp.key` / `sp.crt` next to the
    /// config and named by `saml.sp_key_file` / `saml.sp_cert_file`.
    pub sp_key: Option<(String, String)>,
    /// Fetch the IdP metadata from this URL (`saml.idp_metadata_url`, cached in `idp-cache.xml`
    /// in the gateway's dir) instead of reading it from a file; no `idp.xml` is written then.
    pub idp_metadata_url: Option<String>,
}

/// `extra_toml` for tests that post dozens of responses from one address (attack batteries,
/// every cipher): rate limits raised out of their way, still on. The limits themselves are
/// tested in tests/rate_limits.rs.
#[allow(dead_code)]
pub const HIGH_RATE_LIMITS: &str =
    "[rate_limits]\nsign_in_burst = 10000\nacs_burst = 10000\nauth_failures_burst = 10000\n";

/// Starts samlgate in front of `upstream` trusting the IdP described by `idp_metadata_xml`.
pub async fn start_gateway(upstream: &str, idp_metadata_xml: &str, opts: Options) -> TestGateway {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    start(listener, upstream, idp_metadata_xml, opts, None).await
}

/// [`start_gateway`] on a listener the caller bound already (e.g. to write the gateway's
/// address into a front proxy's config before the gateway's `public_url` is known).
pub async fn start_gateway_on(
    listener: TcpListener,
    upstream: &str,
    idp_metadata_xml: &str,
    opts: Options,
) -> TestGateway {
    start(listener, upstream, idp_metadata_xml, opts, None).await
}

/// Like [`start_gateway`] with the admin listener (`[admin] listen`) on its own free loopback
/// port; returns that port's address too.
pub async fn start_gateway_with_admin(
    upstream: &str,
    idp_metadata_xml: &str,
    opts: Options,
) -> (TestGateway, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    (
        start(listener, upstream, idp_metadata_xml, opts, Some(admin)).await,
        admin_addr,
    )
}

/// A gateway's directory: `samlgate.toml` for a gateway listening on `addr` (with the admin
/// listener on `admin` if given) and the files it names (IdP metadata, cookie secret, keys).
/// Returns the directory, the config's path and its text. [`start_gateway`] serves it
/// in-process; a benchmark may run the `samlgate` binary on it instead.
pub fn write_config(
    addr: SocketAddr,
    upstream: &str,
    idp_metadata_xml: &str,
    opts: &Options,
    admin: Option<SocketAddr>,
) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let scheme = if opts.tls.is_some() { "https" } else { "http" };
    let base = format!("{scheme}://127.0.0.1:{}", addr.port());
    let public_url = opts.public_url.clone().unwrap_or_else(|| base.clone());
    let mut saml = match &opts.idp_metadata_url {
        Some(url) => {
            format!("idp_metadata_url = \"{url}\"\nidp_metadata_cache_file = \"idp-cache.xml\"\n")
        }
        None => {
            std::fs::write(dir.path().join("idp.xml"), idp_metadata_xml).unwrap();
            "idp_metadata_file = \"idp.xml\"\n".to_string()
        }
    };
    if let Some((key, cert)) = &opts.sp_key {
        std::fs::write(dir.path().join("sp.key"), key).unwrap();
        std::fs::write(dir.path().join("sp.crt"), cert).unwrap();
        saml.push_str("sp_key_file = \"sp.key\"\nsp_cert_file = \"sp.crt\"\n");
    }
    saml.push_str(&opts.saml_toml);
    std::fs::write(
        dir.path().join("cookie.secret"),
        "0123456789abcdef0123456789abcdef-test-secret",
    )
    .unwrap();
    let mut tls = String::new();
    if let Some((cert, key)) = &opts.tls {
        std::fs::write(dir.path().join("tls.crt"), cert).unwrap();
        std::fs::write(dir.path().join("tls.key"), key).unwrap();
        tls = "[tls]\ncert_file = \"tls.crt\"\nkey_file = \"tls.key\"\n".into();
    }
    let admin_toml = match admin {
        Some(a) => format!("[admin]\nlisten = \"{a}\"\n"),
        None => String::new(),
    };
    let toml = format!(
        "listen = \"{addr}\"\npublic_url = \"{public_url}\"\nupstream = \"{upstream}\"\n{tls}\n[saml]\n{saml}\n[session]\ncookie_secret_file = \"cookie.secret\"\n{}\n[log]\nlevel = \"warn\"\n{admin_toml}{}\n",
        opts.session_toml, opts.extra_toml
    );
    let path = dir.path().join("samlgate.toml");
    std::fs::write(&path, &toml).unwrap();
    (dir, path, toml)
}

async fn start(
    listener: TcpListener,
    upstream: &str,
    idp_metadata_xml: &str,
    opts: Options,
    admin: Option<TcpListener>,
) -> TestGateway {
    let addr = listener.local_addr().unwrap();
    let scheme = if opts.tls.is_some() { "https" } else { "http" };
    let base = format!("{scheme}://127.0.0.1:{}", addr.port());
    let admin_addr = admin.as_ref().map(|l| l.local_addr().unwrap());
    let (dir, path, toml) = write_config(addr, upstream, idp_metadata_xml, &opts, admin_addr);
    let app = samlgate::app::build(&path)
        .unwrap_or_else(|e| panic!("gateway config refused: {e}\n{toml}"));
    let gateway = app.gateway.clone();
    let settings = app.settings.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        match admin {
            // Bound here first to learn the port; `[admin] listen` names the same address.
            Some(admin) => {
                samlgate::app::serve_on_with_admin(app, listener, Some(admin), shutdown).await
            }
            None => samlgate::app::serve_on(app, listener, shutdown).await,
        }
        .unwrap();
    });
    TestGateway {
        base,
        addr,
        dir,
        gateway,
        settings,
        stop: Some(stop),
        done: Some(done),
    }
}

/// An HTTP client that keeps cookies, follows no redirects and accepts self-signed TLS.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(true)
        .no_proxy()
        .build()
        .unwrap()
}

/// The query of `url` as a map (the last value of a repeated name).
pub fn query_map(url: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// Undoes the HTTP-Redirect binding's encoding of a SAML message: base64, then raw DEFLATE.
pub fn inflate_b64(b64: &str) -> String {
    use std::io::Read;
    let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap();
    let mut xml = String::new();
    flate2::read::DeflateDecoder::new(&raw[..])
        .read_to_string(&mut xml)
        .unwrap();
    xml
}

/// The XML of the `SAMLRequest` in the IdP redirect `location`.
pub fn redirect_request_xml(location: &str) -> String {
    let q = query_map(location);
    let request = q
        .get("SAMLRequest")
        .unwrap_or_else(|| panic!("no SAMLRequest in {location}"));
    inflate_b64(request)
}

/// Reads `SAMLRequest`'s ID and the `RelayState` out of the IdP redirect.
pub fn parse_idp_redirect(location: &str) -> (String, String) {
    let req: samael::schema::AuthnRequest = redirect_request_xml(location).parse().unwrap();
    (req.id, query_map(location)["RelayState"].clone())
}

/// The Set-Cookie header values of a response.
pub fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// The session cookie a response sets under its default name (`samlgate_session`, or
/// `__Host-samlgate_session` over https), as `name=value` (what a Cookie header carries).
pub fn session_cookie(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("samlgate_session=") || v.starts_with("__Host-samlgate_session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
}

/// The IdP sign-out URL on the page that answers a sign-out form when the IdP's sign-out
/// comes next: checks that the page's meta refresh and its "Continue" link both name it, and
/// returns it with the HTML escaping undone.
#[allow(dead_code)]
pub fn idp_sign_out_url(page: &str) -> String {
    let between = |start: &str, end: char| {
        page.split(start)
            .nth(1)
            .and_then(|s| s.split(end).next())
            .unwrap_or_else(|| panic!("no {start:?} on the page: {page}"))
            .to_string()
    };
    let refresh = between("<meta http-equiv=\"refresh\" content=\"0;url=", '"');
    let link = between("id=\"continue\" href=\"", '"');
    assert_eq!(
        refresh, link,
        "the refresh and the link go to the same place"
    );
    link.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Opens the sign-out confirm page at `logout_url` as a browser; returns its CSRF token.
pub async fn logout_csrf_token(c: &reqwest::Client, logout_url: &str) -> String {
    let r = get_accepting(c, logout_url, HTML).await;
    assert_eq!(r.status(), 200, "the sign-out confirm page");
    let page = r.text().await.unwrap();
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("csrf token in the confirm page")
        .to_string()
}

pub const HTML: &str = "text/html,application/xhtml+xml";

/// GET `url` asking for `accept` (`HTML`: a browser's navigation; JSON: an API client).
pub async fn get_accepting(c: &reqwest::Client, url: &str, accept: &str) -> reqwest::Response {
    c.get(url).header("accept", accept).send().await.unwrap()
}

/// Starts a sign-in as a browser would (GET `path` accepting HTML) and returns (request id,
/// relay state) from the redirect to the IdP.
pub async fn begin_login(c: &reqwest::Client, gw: &TestGateway, path: &str) -> (String, String) {
    begin_login_at(c, &gw.url(path)).await
}

/// [`begin_login`] at a full URL (e.g. through a front proxy).
pub async fn begin_login_at(c: &reqwest::Client, url: &str) -> (String, String) {
    let (loc, _) = login_redirect(c, url).await;
    parse_idp_redirect(&loc)
}

/// Browser navigation to the protected `url` without a session: must be redirected (302) to
/// the IdP. Returns (Location, Set-Cookie values).
pub async fn login_redirect(c: &reqwest::Client, url: &str) -> (String, Vec<String>) {
    let r = get_accepting(c, url, HTML).await;
    assert_eq!(
        r.status(),
        302,
        "browser navigation without a session is redirected"
    );
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    (loc, set_cookies(&r))
}

/// POSTs a SAMLResponse to the ACS as the IdP's auto-submit form would.
pub async fn post_acs(
    c: &reqwest::Client,
    gw: &TestGateway,
    saml_response_b64: &str,
    relay: Option<&str>,
) -> reqwest::Response {
    post_saml_response(c, &gw.acs_url(), saml_response_b64, relay, HTML).await
}

/// POSTs `SAMLResponse` (and `RelayState`) to the ACS at `acs`, asking for `accept`.
pub async fn post_saml_response(
    c: &reqwest::Client,
    acs: &str,
    saml_response_b64: &str,
    relay: Option<&str>,
    accept: &str,
) -> reqwest::Response {
    let mut form = vec![("SAMLResponse", saml_response_b64)];
    if let Some(r) = relay {
        form.push(("RelayState", r));
    }
    c.post(acs)
        .header("accept", accept)
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// The SP metadata the gateway publishes at `/saml/metadata`.
pub async fn sp_metadata(gw: &TestGateway) -> String {
    client()
        .get(gw.url("/saml/metadata"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Makes a self-signed certificate for 127.0.0.1/localhost with the openssl crate.
pub fn self_signed_tls() -> (String, String) {
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509NameBuilder, X509};
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "localhost").unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    let san = SubjectAlternativeName::new()
        .ip("127.0.0.1")
        .dns("localhost")
        .build(&b.x509v3_context(None, None))
        .unwrap();
    b.append_extension(san).unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    let cert = b.build();
    (
        String::from_utf8(cert.to_pem().unwrap()).unwrap(),
        String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap(),
    )
}
