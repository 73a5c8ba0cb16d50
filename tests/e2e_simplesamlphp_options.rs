//! samlgate's `[saml]` options end to end against a real SimpleSAMLphp IdP
//! (tests/support/simplesamlphp.rs): metadata fetched from the IdP's URL, IdP-initiated
//! sign-in, `force_authn` and `name_id_format`. Same setup as tests/e2e_simplesamlphp.rs: the
//! gateway's listener is bound first, the IdP is started with an SP entry for the gateway's
//! entity ID / ACS, then the gateway is built and served on that listener.
//!
//! Needs the Debian packages `simplesamlphp php-cli php-xml php-mbstring php-curl php-sqlite3`
//! (scripts/install-deps.sh); without them the tests fail, never skip.

#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/simplesamlphp.rs"]
mod simplesamlphp;

use gateway::{start_upstream, Upstream, HTML};
use simplesamlphp::{drive_login, login_client, PostForm, SimpleSamlPhp, SpEntry, TestUser, ALICE};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const USER_IS_UID: &str = "[headers]\nuser_attribute = \"uid\"\n";
const TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";

/// A running gateway started on a listener bound before the IdP was configured.
struct Gw {
    base: String,
    entity_id: String,
    acs_url: String,
    dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
}

impl Gw {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Field order = drop order: the gateway stops before the IdP's processes are killed.
struct Setup {
    gw: Gw,
    up: Upstream,
    idp: SimpleSamlPhp,
}

impl Setup {
    /// `saml_toml` is appended to `[saml]`; with `metadata_from_url` the gateway fetches the
    /// IdP metadata from SimpleSAMLphp's metadata URL (cache file `idp-cache.xml` in its
    /// tempdir) instead of reading a file.
    async fn start(saml_toml: &str, metadata_from_url: bool) -> Setup {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://127.0.0.1:{}", addr.port());
        let entry = SpEntry::new(
            &format!("{base}/saml/metadata"),
            &format!("{base}/saml/acs"),
        );
        let idp = SimpleSamlPhp::start(
            std::slice::from_ref(&entry),
            &simplesamlphp::default_users(),
        )
        .await
        .unwrap_or_else(|e| panic!("SimpleSAMLphp did not start: {e}"));
        let up = start_upstream().await;

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cookie.secret"),
            "0123456789abcdef0123456789abcdef-e2e-ssp-options",
        )
        .unwrap();
        let metadata = if metadata_from_url {
            format!(
                "idp_metadata_url = \"{}/saml2/idp/metadata.php\"\nidp_metadata_cache_file = \"idp-cache.xml\"\n",
                idp.base_url
            )
        } else {
            std::fs::write(dir.path().join("idp.xml"), &idp.metadata_xml).unwrap();
            "idp_metadata_file = \"idp.xml\"\n".to_string()
        };
        let toml = format!(
            "listen = \"{addr}\"\npublic_url = \"{base}\"\nupstream = \"{}\"\n\n[saml]\n{metadata}{saml_toml}\n[session]\ncookie_secret_file = \"cookie.secret\"\n\n[log]\nlevel = \"warn\"\n\n{USER_IS_UID}",
            up.url()
        );
        let path = dir.path().join("samlgate.toml");
        std::fs::write(&path, &toml).unwrap();
        let app = samlgate::app::build(&path)
            .unwrap_or_else(|e| panic!("gateway config refused: {e}\n{toml}"));
        let entity_id = app.settings.saml.sp_entity_id.clone();
        let acs_url = app.settings.saml.acs_url.clone();
        assert_eq!(entity_id, entry.entity_id);
        assert_eq!(acs_url, entry.acs_url);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            samlgate::app::serve_on(app, listener, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let gw = Gw {
            base,
            entity_id,
            acs_url,
            dir,
            stop: Some(stop),
        };
        Setup { gw, up, idp }
    }

    /// GET a protected path without a session: 302 to the IdP's SSO URL.
    async fn begin(&self, c: &reqwest::Client, path: &str) -> String {
        let r = c
            .get(self.gw.url(path))
            .header("accept", HTML)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302, "no session: sent to the IdP");
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        assert!(
            loc.starts_with(&format!("{}?", self.idp.sso_url)),
            "redirect goes to the IdP's SSO service: {loc}"
        );
        loc
    }

    async fn idp_login(
        &self,
        c: &reqwest::Client,
        start: &str,
        user: &TestUser,
    ) -> Result<PostForm, String> {
        let form = drive_login(c, start, user).await?;
        assert_eq!(form.action, self.gw.acs_url, "the IdP posts to the ACS");
        Ok(form)
    }

    /// Full sign-in of `user` at `path`; returns the IdP's form that was posted.
    async fn sign_in(&self, c: &reqwest::Client, path: &str, user: &TestUser) -> PostForm {
        let loc = self.begin(c, path).await;
        let form = self
            .idp_login(c, &loc, user)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.idp.log_tail(30)));
        let r = form.submit(c).await.unwrap();
        expect_signed_in(r, path).await;
        form
    }

    /// The upstream sees `user` on `path` (the browser has a session).
    async fn upstream_sees(&self, c: &reqwest::Client, path: &str, user: &TestUser) {
        let r = c
            .get(self.gw.url(path))
            .header("accept", HTML)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "signed in: proxied");
        let seen = self.up.last();
        assert_eq!(seen.path, path);
        assert_eq!(seen.one("x-forwarded-user").as_deref(), Some(user.uid));
    }

    /// An API-style request has no session (401).
    async fn has_no_session(&self, c: &reqwest::Client) -> bool {
        let r = c
            .get(self.gw.url("/reports"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        r.status() == 401
    }
}

fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

async fn expect_signed_in(r: reqwest::Response, path: &str) {
    let status = r.status();
    let loc = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let cookies = set_cookies(&r);
    let body = r.text().await.unwrap_or_default();
    assert_eq!(status, 303, "the ACS accepts the IdP's response: {body}");
    assert_eq!(loc.as_deref(), Some(path), "lands on {path}");
    assert!(
        cookies.iter().any(|c| c.starts_with("samlgate_session=")),
        "session cookie set: {cookies:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_is_fetched_from_simplesamlphp_url() {
    let s = Setup::start("", true).await;
    assert!(
        !s.gw.dir.path().join("idp.xml").exists(),
        "no metadata file was written for this gateway"
    );
    let c = login_client();
    s.sign_in(&c, "/reports", &ALICE).await;
    s.upstream_sees(&c, "/reports", &ALICE).await;
    let cache = s.gw.dir.path().join("idp-cache.xml");
    let cached = std::fs::read_to_string(&cache)
        .unwrap_or_else(|e| panic!("cache file {} missing: {e}", cache.display()));
    assert!(
        cached.contains(&format!("entityID=\"{}\"", s.idp.entity_id)),
        "the cache holds the IdP's metadata ({}): {cached}",
        s.idp.entity_id
    );
}

/// The deflated, base64 `SAMLRequest` of the gateway's redirect to the IdP, as XML.
fn authn_request_xml(location: &str) -> String {
    use base64::Engine as _;
    use std::io::Read as _;
    let url = url::Url::parse(location).unwrap();
    let (_, req) = url
        .query_pairs()
        .find(|(k, _)| k == "SAMLRequest")
        .unwrap_or_else(|| panic!("no SAMLRequest in {location}"));
    let raw = base64::engine::general_purpose::STANDARD
        .decode(req.as_bytes())
        .unwrap();
    let mut xml = String::new();
    flate2::read::DeflateDecoder::new(&raw[..])
        .read_to_string(&mut xml)
        .unwrap();
    xml
}

/// SimpleSAMLphp 1.19's IdP-initiated URL for the gateway (`spentityid`, see
/// modules/saml/lib/IdP/SAML2.php).
fn idp_initiated_url(s: &Setup) -> String {
    let mut u = url::Url::parse(&format!("{}/saml2/idp/SSOService.php", s.idp.base_url)).unwrap();
    u.query_pairs_mut()
        .append_pair("spentityid", &s.gw.entity_id);
    u.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_initiated_sign_in_from_simplesamlphp() {
    // Allowed: lands on the default path as alice.
    let s = Setup::start(
        "allow_idp_initiated = true\nidp_initiated_default_path = \"/welcome\"\n",
        false,
    )
    .await;
    let c = login_client();
    let form = s
        .idp_login(&c, &idp_initiated_url(&s), &ALICE)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", s.idp.log_tail(30)));
    let xml = form.response_xml().unwrap();
    assert!(
        !xml.contains("InResponseTo"),
        "an IdP-initiated response answers no request: {xml}"
    );
    assert_eq!(s.up.count(), 0);
    let r = form.submit(&c).await.unwrap();
    expect_signed_in(r, "/welcome").await;
    s.upstream_sees(&c, "/welcome", &ALICE).await;
    drop(s);

    // Default (off): the same unsolicited response is refused and no session is made.
    let s = Setup::start("", false).await;
    let c = login_client();
    let form = s
        .idp_login(&c, &idp_initiated_url(&s), &ALICE)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", s.idp.log_tail(30)));
    let r = form.submit(&c).await.unwrap();
    let cookies = set_cookies(&r);
    assert_eq!(r.status(), 400, "unsolicited response refused");
    assert!(
        !cookies.iter().any(|c| c.starts_with("samlgate_session=")),
        "no session cookie: {cookies:?}"
    );
    assert!(s.has_no_session(&c).await, "no session after the refusal");
    assert_eq!(s.up.count(), 0, "nothing reached the upstream");
}

/// A client like [`login_client`] whose cookie jar the test can edit.
fn jar_client() -> (reqwest::Client, std::sync::Arc<reqwest::cookie::Jar>) {
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let c = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    (c, jar)
}

/// Alice with a wrong password: `drive_login` fails iff SimpleSAMLphp shows its login form
/// (it posts the wrong password and the form comes back); with an IdP session (SSO) no form
/// shows up and the response comes straight back.
const ALICE_WRONG_PASSWORD: TestUser = TestUser {
    password: "definitely-not-alices-password",
    ..ALICE
};

/// Signs alice in, drops only the gateway's session cookie (the IdP's cookies stay), and
/// starts a second sign-in with a wrong password. Returns drive_login's result for it.
async fn second_sign_in(s: &Setup) -> Result<PostForm, String> {
    let (c, jar) = jar_client();
    s.sign_in(&c, "/reports", &ALICE).await;
    s.upstream_sees(&c, "/reports", &ALICE).await;
    let gw_url: url::Url = s.gw.base.parse().unwrap();
    jar.add_cookie_str(
        "samlgate_session=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
        &gw_url,
    );
    assert!(s.has_no_session(&c).await, "the gateway session is gone");
    let loc = s.begin(&c, "/again").await;
    s.idp_login(&c, &loc, &ALICE_WRONG_PASSWORD).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_authn_makes_the_idp_ask_again() {
    // Without force_authn: SimpleSAMLphp's session is reused, no password form (SSO).
    let s = Setup::start("", false).await;
    let form = second_sign_in(&s).await.unwrap_or_else(|e| {
        panic!(
            "SSO expected without force_authn: {e}\n{}",
            s.idp.log_tail(30)
        )
    });
    assert!(!form.response_xml().unwrap().is_empty());
    drop(s);

    // With force_authn: the AuthnRequest says so and the IdP shows the password form again.
    let s = Setup::start("force_authn = true\n", false).await;
    let (c, _jar) = jar_client();
    let loc = s.begin(&c, "/x").await;
    let req = authn_request_xml(&loc);
    assert!(
        req.contains("ForceAuthn=\"true\""),
        "the request carries ForceAuthn: {req}"
    );
    let err = match second_sign_in(&s).await {
        Ok(_) => panic!("force_authn: the IdP reused its session without asking for a password"),
        Err(e) => e,
    };
    assert!(
        err.contains("rejected") && err.contains("login form came back"),
        "the IdP showed its password form again: {err}"
    );
}

/// SimpleSAMLphp 1.19 honours a requested NameID format only when an authproc filter has
/// produced a NameID of that format (modules/saml/lib/IdP/SAML2.php, `saml:NameID`); otherwise
/// it falls back to the SP entry's `NameIDFormat` (persistent in the harness). So the gateway's
/// SP entry gets `saml:TransientNameID`: a transient NameID is then available, and issued only
/// when the AuthnRequest asks for it. `php -S` reads the metadata file on every request.
fn offer_transient_name_id(idp: &SimpleSamlPhp) {
    let path = idp.dir().join("metadata/saml20-sp-remote.php");
    let php = std::fs::read_to_string(&path).unwrap();
    let anchor = "'simplesaml.nameidattribute' => 'uid',";
    assert!(php.contains(anchor), "unexpected SP entry: {php}");
    let php = php.replace(
        anchor,
        &format!("{anchor}\n    'authproc' => [90 => ['class' => 'saml:TransientNameID']],"),
    );
    std::fs::write(&path, php).unwrap();
}

/// Signs alice in at /reports and returns the `Format` of the NameID SimpleSAMLphp issued.
async fn issued_name_id_format(s: &Setup, expect_requested: Option<&str>) -> String {
    let c = login_client();
    let loc = s.begin(&c, "/reports").await;
    let req = authn_request_xml(&loc);
    match expect_requested {
        Some(f) => assert!(
            req.contains(&format!("Format=\"{f}\"")),
            "the AuthnRequest asks for {f}: {req}"
        ),
        None => assert!(!req.contains(TRANSIENT), "no format requested: {req}"),
    }
    let form = s
        .idp_login(&c, &loc, &ALICE)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", s.idp.log_tail(30)));
    let xml = form.response_xml().unwrap();
    let r = form.submit(&c).await.unwrap();
    expect_signed_in(r, "/reports").await;
    s.upstream_sees(&c, "/reports", &ALICE).await;
    let name_id = xml
        .split("NameID ")
        .nth(1)
        .and_then(|rest| rest.split('>').next())
        .unwrap_or_else(|| panic!("no NameID element: {xml}"));
    name_id
        .split("Format=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("NameID without Format: {name_id}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_id_format_is_requested() {
    let s = Setup::start(&format!("name_id_format = \"{TRANSIENT}\"\n"), false).await;
    offer_transient_name_id(&s.idp);
    assert_eq!(
        issued_name_id_format(&s, Some(TRANSIENT)).await,
        TRANSIENT,
        "SimpleSAMLphp issued the requested transient NameID"
    );
    drop(s);

    // Same IdP setup, no name_id_format: the IdP picks the SP entry's persistent format.
    let s = Setup::start("", false).await;
    offer_transient_name_id(&s.idp);
    assert_eq!(
        issued_name_id_format(&s, None).await,
        simplesamlphp::NAMEID_PERSISTENT,
        "without a requested format the IdP's default applies"
    );
}
