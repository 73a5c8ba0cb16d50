//! The dev IdP (`samlgate dev-idp`) over real loopback sockets, against the real gateway:
//! SP-initiated sign-in end to end (gateway → dev IdP login page → auto-submit form → ACS →
//! upstream sees the identity), a user without groups, refusal of unknown SPs and foreign
//! ACS URLs, metadata the gateway accepts, a response samael verifies on its own,
//! IdP-initiated sign-in (refused by default: `no_pending_login`; accepted with
//! `saml.allow_idp_initiated`), passwords, Single
//! Logout, and the `dev-idp` command line.

// The development tools are a cargo feature (`dev-tools`, on by default). A production build
// (`--no-default-features`) has nothing here to test, so the file compiles to nothing then.
// (A `required-features` entry in Cargo.toml would do the same, but would make Cargo.toml
// name a file the Docker build context does not carry.)
#![cfg(feature = "dev-tools")]

#[path = "support/forms.rs"]
mod forms;
#[path = "support/gateway.rs"]
mod gateway;

use std::time::Duration;

use base64::Engine as _;
use forms::{form_action, input};
use gateway::*;
use samlgate::devidp::{self, response::SigningKey, sps::ServiceProvider, users::User};

// ---------------------------------------------------------------------------------------
// Helpers: start things, read the dev IdP's HTML the way a browser's form submission would.
// ---------------------------------------------------------------------------------------

async fn start_idp(users: Vec<User>, sps: Vec<ServiceProvider>) -> devidp::Running {
    devidp::start(devidp::Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        public_url: None,
        allow_non_loopback: false,
        users,
        sps,
        key: SigningKey::generate("devidp test").unwrap(),
    })
    .await
    .unwrap()
}

/// Upstream, dev IdP (default users) and gateway, with the gateway registered at the IdP.
async fn setup() -> (Upstream, devidp::Running, TestGateway) {
    setup_with(devidp::users::default_users()).await
}

async fn setup_with(users: Vec<User>) -> (Upstream, devidp::Running, TestGateway) {
    setup_opts(users, Options::default()).await
}

async fn setup_opts(users: Vec<User>, opts: Options) -> (Upstream, devidp::Running, TestGateway) {
    let up = start_upstream().await;
    let idp = start_idp(users, vec![]).await;
    let gw = start_gateway(&up.url(), idp.idp.metadata_xml(), opts).await;
    idp.idp.register_sp(ServiceProvider {
        entity_id: gw.sp_entity_id(),
        acs_urls: vec![gw.acs_url()],
        slo_url: None,
    });
    (up, idp, gw)
}

async fn body(r: reqwest::Response) -> String {
    r.text().await.unwrap()
}

/// What the dev IdP's auto-submit page carries.
struct AutoPost {
    action: String,
    saml_response: String,
    relay_state: Option<String>,
}

impl AutoPost {
    fn parse(html: &str) -> AutoPost {
        assert!(
            html.contains("document.forms[0].submit()"),
            "not an auto-submit page: {html}"
        );
        AutoPost {
            action: form_action(html).expect("form action"),
            saml_response: input(html, "SAMLResponse").expect("SAMLResponse"),
            relay_state: input(html, "RelayState"),
        }
    }
    fn xml(&self) -> String {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(&self.saml_response)
                .unwrap(),
        )
        .unwrap()
    }
    /// POSTs the form as the browser's script would.
    async fn submit(&self, c: &reqwest::Client, accept: &str) -> reqwest::Response {
        let relay = self.relay_state.as_deref();
        post_saml_response(c, &self.action, &self.saml_response, relay, accept).await
    }
}

/// On a login page: the pending sign-in's token.
fn token(login_page: &str) -> String {
    input(login_page, "token").expect("login page has a token")
}

/// POSTs the login form.
async fn post_login(
    c: &reqwest::Client,
    idp: &devidp::Running,
    token: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = vec![("token", token)];
    form.extend_from_slice(fields);
    c.post(format!("{}/login", idp.url()))
        .header("accept", HTML)
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// Browser navigation to `path` on the gateway, through to the dev IdP's login page.
/// Returns (the AuthnRequest ID the gateway sent, the login page).
async fn to_login_page(
    c: &reqwest::Client,
    gw: &TestGateway,
    idp: &devidp::Running,
    path: &str,
) -> (String, String) {
    let r = c
        .get(gw.url(path))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!("{}?", idp.idp.sso_url())),
        "{location}"
    );
    let (request_id, _) = parse_idp_redirect(&location);
    let r = c
        .get(&location)
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = body(r).await;
    assert!(page.contains("DEVELOPMENT ONLY — never use in production"));
    (request_id, page)
}

/// The whole SP-initiated sign-in as `username`; returns the ACS answer, the request ID and
/// the decoded Response XML.
async fn sign_in(
    c: &reqwest::Client,
    gw: &TestGateway,
    idp: &devidp::Running,
    path: &str,
    username: &str,
) -> (reqwest::Response, String, String) {
    let (request_id, page) = to_login_page(c, gw, idp, path).await;
    let r = post_login(c, idp, &token(&page), &[("username", username)]).await;
    assert_eq!(r.status(), 200);
    let form = AutoPost::parse(&body(r).await);
    assert_eq!(form.action, gw.acs_url());
    assert!(
        form.relay_state.is_some(),
        "the gateway's RelayState comes back"
    );
    let acs = form.submit(c, HTML).await;
    (acs, request_id, form.xml())
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn alice_signs_in_through_the_dev_idp_and_the_upstream_sees_her_groups() {
    let (up, idp, gw) = setup().await;
    let c = client();
    let (acs, _, _) = sign_in(&c, &gw, &idp, "/reports?q=1", "alice").await;
    assert_eq!(acs.status(), 303, "{}", body(acs).await);
    assert_eq!(acs.headers()["location"], "/reports?q=1");

    let r = c
        .get(gw.url("/reports?q=1"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(seen.path, "/reports?q=1");
    assert_eq!(seen.one("x-forwarded-user").as_deref(), Some("alice"));
    assert_eq!(
        seen.one("x-forwarded-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        seen.one("x-forwarded-groups").as_deref(),
        Some("analysts,admins")
    );
    assert_eq!(
        seen.one("x-forwarded-preferred-username").as_deref(),
        Some("Alice Anderson")
    );
}

#[tokio::test]
async fn carol_has_no_groups_and_the_gateway_sends_no_groups_header() {
    let (up, idp, gw) = setup().await;
    let c = client();
    let (acs, _, xml) = sign_in(&c, &gw, &idp, "/", "carol").await;
    assert_eq!(acs.status(), 303);
    // An empty groups attribute (libxml2 writes it self-closing after signing).
    assert!(
        xml.contains(r#"<saml:Attribute Name="groups" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic"/>"#),
        "{xml}"
    );
    c.get(gw.url("/")).send().await.unwrap();
    let seen = up.last();
    assert_eq!(seen.one("x-forwarded-user").as_deref(), Some("carol"));
    assert_eq!(seen.one("x-forwarded-groups"), None);
}

#[tokio::test]
async fn a_second_sign_in_offers_to_continue_as_the_same_user() {
    let (up, idp, gw) = setup().await;
    let c = client();
    let (acs, _, _) = sign_in(&c, &gw, &idp, "/", "dave").await;
    assert_eq!(acs.status(), 303);
    // Sign out of the gateway only; the dev IdP still knows dave.
    let r = c
        .get(gw.url("/saml/logout"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    let csrf = input(&body(r).await, "csrf").expect("csrf token");
    c.post(gw.url("/saml/logout"))
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    let (_, page) = to_login_page(&c, &gw, &idp, "/again").await;
    assert!(page.contains("Continue as dave"), "{page}");
    let r = post_login(
        &c,
        &idp,
        &token(&page),
        &[("username", "dave"), ("continue", "1")],
    )
    .await;
    let acs = AutoPost::parse(&body(r).await).submit(&c, HTML).await;
    assert_eq!(acs.status(), 303);
    c.get(gw.url("/again")).send().await.unwrap();
    assert_eq!(up.last().one("x-forwarded-user").as_deref(), Some("dave"));
    // "continue" without that session is an ordinary login: a fresh client is not dave.
    let other = client();
    let (_, page) = to_login_page(&other, &gw, &idp, "/").await;
    assert!(!page.contains("Continue as"));
}

#[tokio::test]
async fn unknown_sp_and_foreign_acs_urls_are_refused_with_a_clear_page() {
    let (_up, idp, gw) = setup().await;
    let c = client();
    let request = |issuer: &str, acs: &str| {
        let xml =
            samlgate::saml::authn::authn_request_xml(&samlgate::saml::authn::AuthnRequestSpec {
                id: "_evil0001",
                issue_instant: chrono::Utc::now(),
                destination: idp.idp.sso_url(),
                acs_url: acs,
                sp_entity_id: issuer,
                name_id_format: None,
                force_authn: false,
                is_passive: false,
                authn_context_class_ref: None,
            });
        samlgate::saml::authn::redirect_url(idp.idp.sso_url(), &xml, "relay", None).unwrap()
    };

    let r = c
        .get(request("http://evil.test/sp", "http://evil.test/acs"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let page = body(r).await;
    assert!(page.contains("Unknown service provider"), "{page}");
    assert!(
        page.contains("SP &quot;http://evil.test/sp&quot; is not configured"),
        "{page}"
    );
    assert!(page.contains("--sp-entity-id http://evil.test/sp --acs-url http://evil.test/acs"));
    assert!(page.contains("DEVELOPMENT ONLY"));
    assert!(!page.contains("name=\"token\""), "no sign-in is started");

    // The gateway's entity ID with somebody else's ACS URL.
    let r = c
        .get(request(&gw.sp_entity_id(), "http://evil.test/acs"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(body(r).await.contains("is not one of SP"));

    // IdP-initiated for an unknown SP.
    let r = c
        .get(format!(
            "{}/idp-initiated?sp=http%3A%2F%2Fevil.test%2Fsp",
            idp.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Garbage is a 400, not a crash.
    let r = c
        .get(format!("{}/sso?SAMLRequest=bm90IGRlZmxhdGU%3D", idp.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn metadata_is_what_the_gateway_accepts() {
    let idp = start_idp(devidp::users::default_users(), vec![]).await;
    let r = client()
        .get(format!("{}/metadata", idp.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/samlmetadata+xml");
    let xml = body(r).await;
    let info = samlgate::saml::metadata::parse_idp_metadata(&xml, None).unwrap();
    assert_eq!(info.entity_id, format!("{}/metadata", idp.url()));
    assert_eq!(info.sso_redirect_url, format!("{}/sso", idp.url()));
    assert_eq!(info.signing_cert_count, 1);
    let cert_b64 = base64::engine::general_purpose::STANDARD.encode(idp.idp.cert_der());
    assert!(xml.contains(&cert_b64));
    assert!(xml.contains(&format!(
        r#"<md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{}/slo"/>"#,
        idp.url()
    )));
}

#[tokio::test]
async fn the_signed_response_verifies_with_samael_alone() {
    let (_up, idp, gw) = setup().await;
    let c = client();
    let (request_id, page) = to_login_page(&c, &gw, &idp, "/").await;
    let r = post_login(&c, &idp, &token(&page), &[("username", "alice")]).await;
    let form = AutoPost::parse(&body(r).await);
    let xml = form.xml();

    // Shape, as SimpleSAMLphp's.
    assert!(xml.starts_with("<samlp:Response "));
    assert!(xml.contains(&format!(r#"Destination="{}""#, gw.acs_url())));
    assert!(xml.contains(&format!(r#"InResponseTo="{request_id}""#)));
    assert_eq!(xml.matches("<ds:Signature ").count(), 2);
    assert_eq!(
        xml.matches("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256")
            .count(),
        2
    );
    assert!(xml.contains(&format!(
        r#"SPNameQualifier="{}" Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">alice</saml:NameID>"#,
        gw.sp_entity_id()
    )));

    // samael, configured from the metadata only, accepts it for this request ID.
    let info = samlgate::saml::metadata::parse_idp_metadata(idp.idp.metadata_xml(), None).unwrap();
    let sp = samael::service_provider::ServiceProvider {
        entity_id: Some(gw.sp_entity_id()),
        acs_url: Some(gw.acs_url()),
        idp_metadata: info.descriptor,
        allowed_signature_algorithms: Some(vec![
            samael::crypto::AllowedSignatureAlgorithm::RsaSha256,
        ]),
        ..Default::default()
    };
    let assertion = sp
        .parse_xml_response(&xml, Some(&[request_id.as_str()]))
        .expect("samael verifies the dev IdP's response");
    let name_id = assertion.subject.unwrap().name_id.unwrap();
    assert_eq!(name_id.value, "alice");
    let conditions = assertion.conditions.unwrap();
    let window = conditions.not_on_or_after.unwrap() - conditions.not_before.unwrap();
    assert_eq!(window, chrono::Duration::seconds(330));

    // Every signature verifies against the metadata certificate, and only against it.
    let certs = [samael::crypto::CertificateDer::from(
        idp.idp.cert_der().to_vec(),
    )];
    use samael::crypto::CryptoProvider;
    samael::crypto::Crypto::reduce_xml_to_signed(
        &xml,
        &certs,
        samael::crypto::ReduceMode::ValidateAndMarkNoAncestors,
    )
    .unwrap();
    let tampered = xml.replacen(">alice<", ">mallory<", 1);
    assert!(sp
        .parse_xml_response(&tampered, Some(&[request_id.as_str()]))
        .is_err());
    // A different request ID is refused by samael too.
    assert!(sp.parse_xml_response(&xml, Some(&["_other"])).is_err());
}

/// Signs alice in at the dev IdP's `/idp-initiated` (with `relay` as RelayState) and returns
/// the unsolicited auto-submit form it produces for the gateway.
async fn idp_initiated_form(
    c: &reqwest::Client,
    idp: &devidp::Running,
    gw: &TestGateway,
    relay: Option<&str>,
) -> AutoPost {
    let mut url = format!(
        "{}/idp-initiated?sp={}",
        idp.url(),
        url::form_urlencoded::byte_serialize(gw.sp_entity_id().as_bytes()).collect::<String>()
    );
    if let Some(r) = relay {
        url.push_str("&RelayState=");
        url.extend(url::form_urlencoded::byte_serialize(r.as_bytes()));
    }
    let r = c.get(&url).header("accept", HTML).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let page = body(r).await;
    assert!(page.contains("Sign in and go to the service provider"));
    let r = post_login(c, idp, &token(&page), &[("username", "alice")]).await;
    let form = AutoPost::parse(&body(r).await);
    assert_eq!(form.action, gw.acs_url());
    assert_eq!(form.relay_state.as_deref(), relay);
    assert!(
        !form.xml().contains("InResponseTo"),
        "unsolicited: no InResponseTo"
    );
    form
}

#[tokio::test]
async fn idp_initiated_response_is_refused_by_default() {
    let (up, idp, gw) = setup().await;
    let c = client();
    let form = idp_initiated_form(&c, &idp, &gw, None).await;

    // The gateway has no pending sign-in for it and, with saml.allow_idp_initiated off (the
    // default), refuses.
    let r = form.submit(&c, "application/json").await;
    assert_eq!(r.status(), 400);
    let json = body(r).await;
    assert!(json.contains("\"error\":\"no_pending_login\""), "{json}");
    assert_eq!(up.count(), 0, "nothing reached the upstream");
}

#[tokio::test]
async fn idp_initiated_response_signs_in_when_enabled() {
    let (up, idp, gw) = setup_opts(
        devidp::users::default_users(),
        Options {
            saml_toml: "allow_idp_initiated = true\n".into(),
            ..Options::default()
        },
    )
    .await;

    // With a local RelayState: lands there, signed in.
    let c = client();
    let form = idp_initiated_form(&c, &idp, &gw, Some("/reports")).await;
    let r = form.submit(&c, HTML).await;
    assert_eq!(r.status(), 303, "{}", body(r).await);
    assert_eq!(r.headers()["location"], "/reports");
    let r = c.get(gw.url("/reports")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().one("x-forwarded-user").as_deref(), Some("alice"));

    // The same response again: a replay.
    let r = form.submit(&client(), "application/json").await;
    assert_eq!(r.status(), 400);
    let json = body(r).await;
    assert!(json.contains("\"error\":\"replay\""), "{json}");

    // A foreign RelayState: the default path.
    let c = client();
    let form = idp_initiated_form(&c, &idp, &gw, Some("https://evil.example/")).await;
    let r = form.submit(&c, HTML).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");
}

#[tokio::test]
async fn passwords_are_checked_and_a_wrong_one_shows_the_form_again() {
    let users = devidp::users::parse_users(
        "[[users]]\nusername = \"erin\"\npassword = \"correct horse\"\ngroups = [\"ops\"]\n",
    )
    .unwrap();
    let (up, idp, gw) = setup_with(users).await;
    let c = client();
    let (_, page) = to_login_page(&c, &gw, &idp, "/ops").await;
    assert!(
        !page.contains("value=\"erin\""),
        "no quick-pick button for a user with a password"
    );
    let t = token(&page);
    for wrong in [
        &[("username", "erin"), ("password", "wrong")][..],
        &[("username", "erin")][..],
    ] {
        let r = post_login(&c, &idp, &t, wrong).await;
        assert_eq!(r.status(), 401);
        let again = body(r).await;
        assert!(again.contains("Wrong username or password."));
        assert_eq!(token(&again), t, "the same sign-in continues");
    }
    let r = post_login(
        &c,
        &idp,
        &t,
        &[("username", "erin"), ("password", "correct horse")],
    )
    .await;
    assert_eq!(r.status(), 200);
    let acs = AutoPost::parse(&body(r).await).submit(&c, HTML).await;
    assert_eq!(acs.status(), 303);
    c.get(gw.url("/ops")).send().await.unwrap();
    assert_eq!(up.last().one("x-forwarded-user").as_deref(), Some("erin"));
    assert_eq!(up.last().one("x-forwarded-groups").as_deref(), Some("ops"));
    // The token was used up.
    let r = post_login(
        &c,
        &idp,
        &t,
        &[("username", "erin"), ("password", "correct horse")],
    )
    .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn single_logout_ends_the_idp_session_and_answers_the_sp() {
    let sp = ServiceProvider {
        entity_id: "http://sp.test/metadata".into(),
        acs_urls: vec!["http://sp.test/acs".into()],
        slo_url: Some("http://sp.test/slo?tenant=1".into()),
    };
    let idp = start_idp(devidp::users::default_users(), vec![sp]).await;
    let c = client();
    // Sign in at the IdP (IdP-initiated, so no SP needs to run).
    let r = c
        .get(format!(
            "{}/idp-initiated?sp=http%3A%2F%2Fsp.test%2Fmetadata",
            idp.url()
        ))
        .send()
        .await
        .unwrap();
    let page = body(r).await;
    let r = post_login(&c, &idp, &token(&page), &[("username", "bob")]).await;
    assert_eq!(r.status(), 200);
    let idp_cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(idp_cookie.starts_with("devidp_session="));
    let home_with = |cookie: String| {
        let url = format!("{}/", idp.url());
        async move {
            let r = client()
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            body(r).await
        }
    };
    let home = home_with(idp_cookie.clone()).await;
    assert!(home.contains("Signed in at this IdP as <strong>bob</strong>"));

    // The SP's LogoutRequest by redirect.
    let logout_request = format!(
        r#"<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_logout42" Version="2.0" IssueInstant="{}" Destination="{}/slo"><saml:Issuer>http://sp.test/metadata</saml:Issuer><saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">bob</saml:NameID></samlp:LogoutRequest>"#,
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        idp.url()
    );
    let url = devidp::protocol::redirect_url(
        idp.idp.slo_url(),
        "SAMLRequest",
        &logout_request,
        Some("rs-1"),
    )
    .unwrap();
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(location.path(), "/slo");
    let q: std::collections::HashMap<String, String> =
        location.query_pairs().into_owned().collect();
    assert_eq!(q["tenant"], "1");
    assert_eq!(q["RelayState"], "rs-1");
    let response_xml = devidp::protocol::decode_redirect(&q["SAMLResponse"]).unwrap();
    let lr: samael::schema::LogoutResponse = response_xml.parse().unwrap();
    assert_eq!(lr.in_response_to.as_deref(), Some("_logout42"));
    assert_eq!(
        lr.issuer.and_then(|i| i.value),
        Some(idp.idp.entity_id().to_string())
    );
    assert_eq!(
        lr.status.and_then(|s| s.status_code.value).as_deref(),
        Some("urn:oasis:names:tc:SAML:2.0:status:Success")
    );
    assert_eq!(
        lr.destination.as_deref(),
        Some("http://sp.test/slo?tenant=1")
    );

    // The session is gone on the server, not just the cookie in this browser.
    let home = home_with(idp_cookie).await;
    assert!(home.contains("Nobody is signed in at this IdP."), "{home}");
    let home = body(c.get(format!("{}/", idp.url())).send().await.unwrap()).await;
    assert!(home.contains("Nobody is signed in at this IdP."), "{home}");

    // From an SP without an SLO URL (or none at all): the signed-out page.
    let unknown = logout_request.replace("http://sp.test/metadata", "http://other.test/sp");
    let r = c
        .get(
            devidp::protocol::redirect_url(idp.idp.slo_url(), "SAMLRequest", &unknown, None)
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(body(r).await.contains("signed out of the dev IdP"));
    let r = c.get(idp.idp.slo_url()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(format!("{}?SAMLRequest=garbage", idp.idp.slo_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn refuses_to_listen_off_loopback_unless_allowed() {
    let err = devidp::start(devidp::Options {
        listen: "0.0.0.0:0".parse().unwrap(),
        public_url: None,
        allow_non_loopback: false,
        users: devidp::users::default_users(),
        sps: vec![],
        key: SigningKey::generate("x").unwrap(),
    })
    .await
    .err()
    .expect("refused");
    assert!(err.contains("--allow-non-loopback"), "{err}");
}

// ---------------------------------------------------------------------------------------
// The command line
// ---------------------------------------------------------------------------------------

fn samlgate_bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_samlgate"))
}

#[test]
fn cli_refuses_a_non_loopback_address_and_bad_flags() {
    let out = samlgate_bin()
        .args(["dev-idp", "--listen", "0.0.0.0:7000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-non-loopback"));

    let out = samlgate_bin()
        .args(["dev-idp", "--listen", "127.0.0.1:0", "--sp-entity-id", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs its --acs-url"));

    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    std::fs::write(&users, "[[users]]\nusername = \"a\"\nshoe_size = 9\n").unwrap();
    let out = samlgate_bin()
        .args(["dev-idp", "--listen", "127.0.0.1:0", "--config"])
        .arg(&users)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shoe_size"));
}

/// Kills the child on drop (by its own handle, never by name).
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn cli_serves_metadata_with_users_sp_metadata_and_given_keys() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        "[[users]]\nusername = \"zoe\"\ndisplay_name = \"Zoë\"\ngroups = [\"x\"]\n",
    )
    .unwrap();
    let sp_md = dir.path().join("sp.xml");
    std::fs::write(
        &sp_md,
        samlgate::saml::metadata::sp_metadata_xml(&samlgate::saml::metadata::SpMetadata {
            entity_id: "http://127.0.0.1:9/saml/metadata",
            acs_url: "http://127.0.0.1:9/saml/acs",
            name_id_format: None,
            cert_pem: None,
            want_assertions_signed: true,
            authn_requests_signed: false,
        }),
    )
    .unwrap();
    let pair = samlgate::certgen::self_signed(&samlgate::certgen::CertSpec {
        common_name: "given key".into(),
        rsa_bits: 2048,
        days: 5,
        purpose: samlgate::certgen::Purpose::Saml,
        san: vec![],
    })
    .unwrap();
    std::fs::write(dir.path().join("idp.key"), pair.key_pem().unwrap()).unwrap();
    std::fs::write(dir.path().join("idp.crt"), pair.cert_pem().unwrap()).unwrap();

    let child = samlgate_bin()
        .args(["dev-idp", "--listen", "127.0.0.1:0", "--config"])
        .arg(&users)
        .arg("--sp-metadata")
        .arg(&sp_md)
        .arg("--key")
        .arg(dir.path().join("idp.key"))
        .arg("--cert")
        .arg(dir.path().join("idp.crt"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Child(child);
    let stdout = child.0.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.contains("Ctrl-C");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    });
    let lines = tokio::time::timeout(Duration::from_secs(30), lines)
        .await
        .expect("dev-idp printed its banner")
        .unwrap();
    let text = lines.join("\n");
    assert!(
        text.contains("DEVELOPMENT ONLY — never use in production"),
        "{text}"
    );
    assert!(
        text.contains("SP        http://127.0.0.1:9/saml/metadata → http://127.0.0.1:9/saml/acs"),
        "{text}"
    );
    assert!(text.contains("Users: zoe"), "{text}");
    let metadata_url = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("metadata"))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("metadata line")
        .to_string();
    let xml = client()
        .get(&metadata_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let info = samlgate::saml::metadata::parse_idp_metadata(&xml, None).unwrap();
    assert_eq!(info.entity_id, metadata_url);
    let given = base64::engine::general_purpose::STANDARD.encode(pair.cert_der().unwrap());
    assert!(xml.contains(&given), "the given certificate is published");
}
