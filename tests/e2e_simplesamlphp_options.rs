//! samlgate's `[saml]` options end to end against a real SimpleSAMLphp IdP
//! (tests/support/simplesamlphp.rs): metadata fetched from the IdP's URL, IdP-initiated
//! sign-in, `force_authn` and `name_id_format`. Same setup as tests/e2e_simplesamlphp.rs
//! (tests/support/e2e.rs).
//!
//! Needs the Debian packages `simplesamlphp php-cli php-xml php-mbstring php-curl php-sqlite3`
//! (scripts/install-deps.sh); without them the tests fail, never skip.

#[path = "support/e2e.rs"]
mod e2e;
#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/simplesamlphp.rs"]
mod simplesamlphp;

use e2e::{expect_signed_in, try_login_at_idp, GatewayListener, SspSetup as Setup};
use gateway::{redirect_request_xml, set_cookies, Options};
use simplesamlphp::{login_client, PostForm, SimpleSamlPhp, TestUser, ALICE};

const TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";

/// `saml_toml` is appended to `[saml]`; with `metadata_from_url` the gateway fetches the IdP
/// metadata from SimpleSAMLphp's metadata URL (cache file `idp-cache.xml` in its tempdir)
/// instead of reading a file.
async fn start(saml_toml: &str, metadata_from_url: bool) -> Setup {
    let listener = GatewayListener::bind().await;
    let entry = listener.sp_entry();
    Setup::start_on(listener, entry, |idp| Options {
        saml_toml: saml_toml.to_string(),
        extra_toml: e2e::USER_IS_UID.to_string(),
        idp_metadata_url: metadata_from_url
            .then(|| format!("{}/saml2/idp/metadata.php", idp.base_url)),
        ..Options::default()
    })
    .await
}

/// [`try_login_at_idp`] for the gateway of `s`.
async fn idp_login(
    s: &Setup,
    c: &reqwest::Client,
    start: &str,
    user: &TestUser,
) -> Result<PostForm, String> {
    try_login_at_idp(c, start, user, &s.gw.acs_url()).await
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_is_fetched_from_simplesamlphp_url() {
    let s = start("", true).await;
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

/// SimpleSAMLphp 1.19's IdP-initiated URL for the gateway (`spentityid`, see
/// modules/saml/lib/IdP/SAML2.php).
fn idp_initiated_url(s: &Setup) -> String {
    let mut u = url::Url::parse(&format!("{}/saml2/idp/SSOService.php", s.idp.base_url)).unwrap();
    u.query_pairs_mut()
        .append_pair("spentityid", &s.gw.sp_entity_id());
    u.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_initiated_sign_in_from_simplesamlphp() {
    // Allowed: lands on the default path as alice.
    let s = start(
        "allow_idp_initiated = true\nidp_initiated_default_path = \"/welcome\"\n",
        false,
    )
    .await;
    let c = login_client();
    let form = idp_login(&s, &c, &idp_initiated_url(&s), &ALICE)
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
    let s = start("", false).await;
    let c = login_client();
    let form = idp_login(&s, &c, &idp_initiated_url(&s), &ALICE)
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
    let (loc, _) = s.begin(&c, "/again").await;
    idp_login(s, &c, &loc, &ALICE_WRONG_PASSWORD).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_authn_makes_the_idp_ask_again() {
    // Without force_authn: SimpleSAMLphp's session is reused, no password form (SSO).
    let s = start("", false).await;
    let form = second_sign_in(&s).await.unwrap_or_else(|e| {
        panic!(
            "SSO expected without force_authn: {e}\n{}",
            s.idp.log_tail(30)
        )
    });
    assert!(!form.response_xml().unwrap().is_empty());
    drop(s);

    // With force_authn: the AuthnRequest says so and the IdP shows the password form again.
    let s = start("force_authn = true\n", false).await;
    let (c, _jar) = jar_client();
    let (loc, _) = s.begin(&c, "/x").await;
    let req = redirect_request_xml(&loc);
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
    let (loc, _) = s.begin(&c, "/reports").await;
    let req = redirect_request_xml(&loc);
    match expect_requested {
        Some(f) => assert!(
            req.contains(&format!("Format=\"{f}\"")),
            "the AuthnRequest asks for {f}: {req}"
        ),
        None => assert!(!req.contains(TRANSIENT), "no format requested: {req}"),
    }
    let form = s.idp_login(&c, &loc, &ALICE).await;
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
    let s = start(&format!("name_id_format = \"{TRANSIENT}\"\n"), false).await;
    offer_transient_name_id(&s.idp);
    assert_eq!(
        issued_name_id_format(&s, Some(TRANSIENT)).await,
        TRANSIENT,
        "SimpleSAMLphp issued the requested transient NameID"
    );
    drop(s);

    // Same IdP setup, no name_id_format: the IdP picks the SP entry's persistent format.
    let s = start("", false).await;
    offer_transient_name_id(&s.idp);
    assert_eq!(
        issued_name_id_format(&s, None).await,
        simplesamlphp::NAMEID_PERSISTENT,
        "without a requested format the IdP's default applies"
    );
}
