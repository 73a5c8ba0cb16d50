//! Single Logout over the HTTP-Redirect binding, end to end over real sockets with messages
//! built and signed in-test (openssl over the raw query octets, as an IdP does): IdP-initiated
//! LogoutRequests end exactly the named subject's sessions and are answered with a signed
//! LogoutResponse; unsigned, mis-signed, foreign, misdirected, stale and DOCTYPE-laden ones
//! are refused; SP-initiated sign-out sends a signed LogoutRequest and accepts the answer once.
//! Against SimpleSAMLphp (`sign.logout` on): SP-initiated and IdP-initiated SLO end to end.
//! Those tests need the Debian packages of scripts/install-deps.sh; without them they fail.

#[path = "support/e2e.rs"]
mod e2e;
#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/mint.rs"]
mod mint;
#[path = "support/signin.rs"]
mod signin;
#[path = "support/simplesamlphp.rs"]
mod simplesamlphp;

use std::io::Write;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{Duration, Utc};
use e2e::{GatewayListener, SspSetup};
use gateway::*;
use mint::TestIdp;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;

const IDP_ENTITY: &str = "https://idp.test/metadata";
const IDP_SSO: &str = "https://idp.test/sso";
const IDP_SLO: &str = "https://idp.test/slo";
const REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";

struct Setup {
    idp: TestIdp,
    _up: Upstream,
    gw: TestGateway,
    sp_cert_pem: String,
}

async fn setup(idp_has_slo: bool, saml_toml: &str) -> Setup {
    let idp = TestIdp::generate(IDP_ENTITY);
    let mut md = idp.metadata_xml(IDP_SSO);
    if idp_has_slo {
        md = md.replacen(
            "<md:NameIDFormat>",
            &format!(
                r#"<md:SingleLogoutService Binding="{REDIRECT}" Location="{IDP_SLO}"/><md:NameIDFormat>"#
            ),
            1,
        );
    }
    let pair = samlgate::certgen::self_signed(&samlgate::certgen::CertSpec {
        common_name: "samlgate slo test".into(),
        rsa_bits: 2048,
        days: 5,
        purpose: samlgate::certgen::Purpose::Saml,
        san: vec![],
    })
    .unwrap();
    let sp_cert_pem = pair.cert_pem().unwrap();
    let up = start_upstream().await;
    let gw = start_gateway(
        &up.url(),
        &md,
        Options {
            saml_toml: saml_toml.to_string(),
            sp_key: Some((pair.key_pem().unwrap(), sp_cert_pem.clone())),
            ..Options::default()
        },
    )
    .await;
    Setup {
        idp,
        _up: up,
        gw,
        sp_cert_pem,
    }
}

/// Signs `who` in; returns the client holding the session and the assertion's SessionIndex.
async fn sign_in(s: &Setup, who: &str) -> (reqwest::Client, String) {
    let mut index = None;
    let (c, _) = signin::sign_in_as(&s.idp, &s.gw, "/", |spec| {
        spec.name_id = who.to_string();
        spec.attributes[0] = ("uid".to_string(), vec![who.to_string()]);
        index = spec.session_index.clone();
    })
    .await;
    assert!(alive(&c, &s.gw).await, "{who} signs in");
    (c, index.unwrap())
}

async fn alive(c: &reqwest::Client, gw: &TestGateway) -> bool {
    let r = get_accepting(c, &gw.url("/"), "application/json").await;
    match r.status().as_u16() {
        200 => true,
        401 => false,
        s => panic!("unexpected status {s}"),
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn deflate_b64(xml: &str) -> String {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(xml.as_bytes()).unwrap();
    STANDARD.encode(e.finish().unwrap())
}

/// The raw Redirect-binding query, signed with `key_pem` (PKCS#8 PEM) when given.
fn query(param: &str, xml: &str, relay: Option<&str>, key_pem: Option<&str>) -> String {
    let mut q = format!("{param}={}", enc(&deflate_b64(xml)));
    if let Some(r) = relay {
        q.push_str(&format!("&RelayState={}", enc(r)));
    }
    if let Some(pem) = key_pem {
        q.push_str(&format!("&SigAlg={}", enc(RSA_SHA256)));
        let key = PKey::private_key_from_pem(pem.as_bytes()).unwrap();
        let mut signer = openssl::sign::Signer::new(MessageDigest::sha256(), &key).unwrap();
        signer.update(q.as_bytes()).unwrap();
        let sig = signer.sign_to_vec().unwrap();
        q.push_str(&format!("&Signature={}", enc(&STANDARD.encode(sig))));
    }
    q
}

struct Req<'a> {
    id: String,
    issuer: &'a str,
    destination: Option<String>,
    name_id: &'a str,
    session_index: Option<&'a str>,
    issue_instant: chrono::DateTime<Utc>,
    prolog: &'a str,
}

impl<'a> Req<'a> {
    fn new(gw: &TestGateway, name_id: &'a str) -> Self {
        Req {
            id: mint::new_id(),
            issuer: IDP_ENTITY,
            destination: Some(gw.url("/saml/slo")),
            name_id,
            session_index: None,
            issue_instant: Utc::now(),
            prolog: "",
        }
    }

    fn xml(&self) -> String {
        let dest = self
            .destination
            .as_ref()
            .map(|d| format!(r#" Destination="{d}""#))
            .unwrap_or_default();
        let index = self
            .session_index
            .map(|i| format!("<samlp:SessionIndex>{i}</samlp:SessionIndex>"))
            .unwrap_or_default();
        format!(
            r#"{prolog}<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{instant}"{dest}><saml:Issuer>{issuer}</saml:Issuer><saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">{name}</saml:NameID>{index}</samlp:LogoutRequest>"#,
            prolog = self.prolog,
            id = self.id,
            instant = self
                .issue_instant
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            issuer = self.issuer,
            name = self.name_id,
        )
    }
}

async fn get_slo(gw: &TestGateway, raw_query: &str) -> reqwest::Response {
    client()
        .get(format!("{}?{raw_query}", gw.url("/saml/slo")))
        .header("accept", HTML)
        .send()
        .await
        .unwrap()
}

/// Verifies a Redirect-binding signature over the raw octets of `raw_query`.
fn verify_redirect(raw_query: &str, cert_pem: &str) -> bool {
    let (signed, sig) = raw_query.rsplit_once("&Signature=").unwrap();
    let sig: String = url::form_urlencoded::parse(format!("s={sig}").as_bytes())
        .next()
        .unwrap()
        .1
        .into_owned();
    let cert = openssl::x509::X509::from_pem(cert_pem.as_bytes()).unwrap();
    let key = cert.public_key().unwrap();
    let mut v = openssl::sign::Verifier::new(MessageDigest::sha256(), &key).unwrap();
    v.update(signed.as_bytes()).unwrap();
    v.verify(&STANDARD.decode(sig).unwrap()).unwrap_or(false)
}

#[tokio::test]
async fn idp_initiated_logout_ends_exactly_that_users_sessions_and_answers_signed() {
    let s = setup(true, "").await;
    let (alice1, _) = sign_in(&s, "alice").await;
    let (alice2, _) = sign_in(&s, "alice").await;
    let (bob, _) = sign_in(&s, "bob").await;

    let req = Req::new(&s.gw, "alice");
    let q = query(
        "SAMLRequest",
        &req.xml(),
        Some("relay/1+x"),
        Some(&s.idp.key_pem),
    );
    let r = get_slo(&s.gw, &q).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        loc.starts_with(&format!("{IDP_SLO}?SAMLResponse=")),
        "{loc}"
    );
    let raw = url::Url::parse(&loc).unwrap().query().unwrap().to_string();
    let p = query_map(&loc);
    assert_eq!(p["RelayState"], "relay/1+x", "RelayState echoed");
    assert_eq!(p["SigAlg"], RSA_SHA256);
    assert!(
        verify_redirect(&raw, &s.sp_cert_pem),
        "signed with the SP key"
    );
    let resp = inflate_b64(&p["SAMLResponse"]);
    assert!(
        resp.contains(&format!(r#"InResponseTo="{}""#, req.id)),
        "{resp}"
    );
    assert!(resp.contains(SUCCESS), "{resp}");
    assert!(
        resp.contains(&format!(r#"Destination="{IDP_SLO}""#)),
        "{resp}"
    );
    assert!(resp.contains(&format!(
        "<saml:Issuer>{}</saml:Issuer>",
        s.gw.sp_entity_id()
    )));

    assert!(!alive(&alice1, &s.gw).await, "alice's first session ended");
    assert!(!alive(&alice2, &s.gw).await, "alice's second session ended");
    assert!(alive(&bob, &s.gw).await, "bob's session survives");

    // The same request again is a replay.
    assert_eq!(get_slo(&s.gw, &q).await.status(), 400);
}

#[tokio::test]
async fn session_index_narrows_the_logout_to_one_session() {
    let s = setup(true, "").await;
    let (alice1, index1) = sign_in(&s, "alice").await;
    let (alice2, _) = sign_in(&s, "alice").await;
    let mut req = Req::new(&s.gw, "alice");
    req.session_index = Some(&index1);
    let q = query("SAMLRequest", &req.xml(), None, Some(&s.idp.key_pem));
    let r = get_slo(&s.gw, &q).await;
    assert_eq!(r.status(), 303);
    let p = query_map(r.headers()["location"].to_str().unwrap());
    assert!(!p.contains_key("RelayState"), "no RelayState invented");
    assert!(!alive(&alice1, &s.gw).await);
    assert!(alive(&alice2, &s.gw).await, "another SessionIndex survives");
}

#[tokio::test]
async fn bad_logout_requests_are_refused_and_end_nothing() {
    // A dozen messages from one address: more than the default ACS budget they share.
    let s = setup(true, HIGH_RATE_LIMITS).await;
    let (alice, _) = sign_in(&s, "alice").await;
    let stranger = TestIdp::generate(IDP_ENTITY);
    let gw = &s.gw;

    let cases: Vec<(&str, String)> = vec![
        (
            "unsigned",
            query("SAMLRequest", &Req::new(gw, "alice").xml(), None, None),
        ),
        (
            "signed by another key",
            query(
                "SAMLRequest",
                &Req::new(gw, "alice").xml(),
                None,
                Some(&stranger.key_pem),
            ),
        ),
        ("wrong issuer", {
            let mut r = Req::new(gw, "alice");
            r.issuer = "https://evil.test/metadata";
            query("SAMLRequest", &r.xml(), None, Some(&s.idp.key_pem))
        }),
        ("wrong destination", {
            let mut r = Req::new(gw, "alice");
            r.destination = Some("https://other.test/saml/slo".into());
            query("SAMLRequest", &r.xml(), None, Some(&s.idp.key_pem))
        }),
        ("stale", {
            let mut r = Req::new(gw, "alice");
            r.issue_instant = Utc::now() - Duration::hours(2);
            query("SAMLRequest", &r.xml(), None, Some(&s.idp.key_pem))
        }),
        ("from the future", {
            let mut r = Req::new(gw, "alice");
            r.issue_instant = Utc::now() + Duration::hours(2);
            query("SAMLRequest", &r.xml(), None, Some(&s.idp.key_pem))
        }),
        ("doctype", {
            let mut r = Req::new(gw, "alice");
            r.prolog = r#"<!DOCTYPE x [<!ENTITY e "alice">]>"#;
            query("SAMLRequest", &r.xml(), None, Some(&s.idp.key_pem))
        }),
        ("tampered after signing", {
            let q = query(
                "SAMLRequest",
                &Req::new(gw, "alice").xml(),
                Some("a"),
                Some(&s.idp.key_pem),
            );
            q.replace("RelayState=a", "RelayState=b")
        }),
        ("garbage", "SAMLRequest=%%%".to_string()),
        ("nothing", String::new()),
    ];
    for (what, q) in cases {
        let r = get_slo(gw, &q).await;
        assert_eq!(r.status(), 400, "{what} is refused");
        assert!(alive(&alice, gw).await, "{what}: alice's session survives");
    }
    let r = client().post(gw.url("/saml/slo")).send().await.unwrap();
    assert_eq!(r.status(), 405);
}

/// Logout messages share the ACS budget: past it, 429 before the message is even decoded, and
/// the ACS posts of that client are refused too.
#[tokio::test]
async fn logout_messages_count_against_the_acs_rate_limit() {
    let s = setup(true, "[rate_limits]\nacs_burst = 2\nacs_per_minute = 1\n").await;
    // Not even valid messages: the limit applies before anything is parsed.
    for _ in 0..2 {
        assert_eq!(get_slo(&s.gw, "SAMLRequest=x").await.status(), 400);
    }
    let r = get_slo(&s.gw, "SAMLRequest=x").await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // The same client's ACS budget is the one spent.
    let acs = client()
        .post(s.gw.url("/saml/acs"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("SAMLResponse=x")
        .send()
        .await
        .unwrap();
    assert_eq!(acs.status(), 429);
}

#[tokio::test]
async fn unsigned_requests_can_be_allowed_and_without_an_idp_slo_endpoint_a_page_is_shown() {
    let s = setup(false, "require_signed_logout_requests = false\n").await;
    let (alice, _) = sign_in(&s, "alice").await;
    // A present but wrong signature still fails.
    let bad = query(
        "SAMLRequest",
        &Req::new(&s.gw, "alice").xml(),
        None,
        Some(&TestIdp::generate("x").key_pem),
    );
    assert_eq!(get_slo(&s.gw, &bad).await.status(), 400);
    assert!(alive(&alice, &s.gw).await);
    let q = query("SAMLRequest", &Req::new(&s.gw, "alice").xml(), None, None);
    let r = get_slo(&s.gw, &q).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("signed out"));
    assert!(!alive(&alice, &s.gw).await);
}

#[tokio::test]
async fn sp_metadata_advertises_the_slo_endpoint() {
    let s = setup(true, "").await;
    let md = sp_metadata(&s.gw).await;
    assert!(md.contains(&format!(
        r#"<md:SingleLogoutService Binding="{REDIRECT}" Location="{}"/>"#,
        s.gw.url("/saml/slo")
    )));
}

async fn csrf_logout(c: &reqwest::Client, gw: &TestGateway) -> reqwest::Response {
    let token = logout_csrf_token(c, &gw.url("/saml/logout")).await;
    c.post(gw.url("/saml/logout"))
        .header("accept", HTML)
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap()
}

fn logout_response(gw: &TestGateway, in_response_to: &str, issuer: &str) -> String {
    format!(
        r#"<samlp:LogoutResponse xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{}" Version="2.0" IssueInstant="{}" Destination="{}" InResponseTo="{in_response_to}"><saml:Issuer>{issuer}</saml:Issuer><samlp:Status><samlp:StatusCode Value="{SUCCESS}"/></samlp:Status></samlp:LogoutResponse>"#,
        mint::new_id(),
        Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        gw.url("/saml/slo"),
    )
}

#[tokio::test]
async fn sp_initiated_logout_sends_a_signed_request_and_accepts_the_answer_once() {
    let s = setup(true, "").await;
    let (alice, index) = sign_in(&s, "alice").await;
    let r = csrf_logout(&alice, &s.gw).await;
    // A page that moves on to the IdP, not a redirect (CSP form-action would block that).
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("location").is_none());
    assert!(
        set_cookies(&r).iter().any(|c| c.contains("Max-Age=0")),
        "the session cookie is cleared"
    );
    let loc = idp_sign_out_url(&r.text().await.unwrap());
    assert!(loc.starts_with(&format!("{IDP_SLO}?SAMLRequest=")), "{loc}");
    let raw = url::Url::parse(&loc).unwrap().query().unwrap().to_string();
    assert!(verify_redirect(&raw, &s.sp_cert_pem));
    let xml = inflate_b64(&query_map(&loc)["SAMLRequest"]);
    let lr: samael::schema::LogoutRequest = xml.parse().unwrap();
    let id = lr.id.clone().unwrap();
    assert_eq!(id.len(), 33);
    assert_eq!(lr.name_id.unwrap().value, "alice");
    assert!(xml.contains(&format!("<samlp:SessionIndex>{index}</samlp:SessionIndex>")));
    assert!(!alive(&alice, &s.gw).await, "local session already gone");

    // Not ours / wrong issuer / wrong signature: refused.
    let unknown = query(
        "SAMLResponse",
        &logout_response(&s.gw, "_nope", IDP_ENTITY),
        None,
        None,
    );
    assert_eq!(get_slo(&s.gw, &unknown).await.status(), 400);
    let forged = query(
        "SAMLResponse",
        &logout_response(&s.gw, &id, IDP_ENTITY),
        None,
        Some(&TestIdp::generate("x").key_pem),
    );
    assert_eq!(get_slo(&s.gw, &forged).await.status(), 400);

    // The IdP's signed answer: signed-out page, once.
    let ok = query(
        "SAMLResponse",
        &logout_response(&s.gw, &id, IDP_ENTITY),
        None,
        Some(&s.idp.key_pem),
    );
    let r = get_slo(&s.gw, &ok).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("signed out"));
    assert_eq!(get_slo(&s.gw, &ok).await.status(), 400, "single use");
}

#[tokio::test]
async fn without_an_idp_slo_endpoint_logout_stays_local() {
    let s = setup(false, "").await;
    let (alice, _) = sign_in(&s, "alice").await;
    let r = csrf_logout(&alice, &s.gw).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("signed out"));
    assert!(!alive(&alice, &s.gw).await);
}

// ---- end to end with SimpleSAMLphp ------------------------------------------------------------

/// Follows GET redirects by hand; returns every URL visited and the last response's status
/// and body.
async fn follow(c: &reqwest::Client, start: &str) -> (Vec<String>, u16, String) {
    let mut url = url::Url::parse(start).unwrap();
    let mut trail = Vec::new();
    for _ in 0..20 {
        trail.push(url.to_string());
        let r = get_accepting(c, url.as_str(), HTML).await;
        if r.status().is_redirection() {
            let loc = r.headers()["location"].to_str().unwrap().to_string();
            url = url.join(&loc).unwrap();
            continue;
        }
        let status = r.status().as_u16();
        return (trail, status, r.text().await.unwrap());
    }
    panic!("redirect loop: {trail:?}");
}

async fn gw_status(c: &reqwest::Client, gw: &TestGateway) -> u16 {
    let r = get_accepting(c, &gw.url("/reports"), "application/json").await;
    r.status().as_u16()
}

/// SimpleSAMLphp with `sign.logout` and the gateway's SLO endpoint, and alice signed in.
async fn start_ssp_and_sign_in(c: &reqwest::Client) -> SspSetup {
    let (sp_key, sp_cert) = simplesamlphp::generate_key_pair("samlgate slo SP").unwrap();
    let listener = GatewayListener::bind().await;
    let mut entry = listener.sp_entry();
    entry.slo_url = Some(format!("{}/saml/slo", listener.public_url));
    entry.sign_logout = true;
    entry.certificate_pem = Some(sp_cert.clone());
    let s = SspSetup::start_on(listener, entry, |_| Options {
        sp_key: Some((sp_key, sp_cert)),
        extra_toml: e2e::USER_IS_UID.to_string(),
        ..Options::default()
    })
    .await;
    s.sign_in(c, "/reports", &simplesamlphp::ALICE).await;
    assert_eq!(gw_status(c, &s.gw).await, 200, "alice is signed in");
    s
}

#[tokio::test]
async fn simplesamlphp_sp_initiated_logout_round_trip() {
    let c = simplesamlphp::login_client();
    let s = start_ssp_and_sign_in(&c).await;
    let (idp, gw) = (&s.idp, &s.gw);

    let r = csrf_logout(&c, gw).await;
    assert_eq!(r.status(), 200);
    let loc = idp_sign_out_url(&r.text().await.unwrap());
    assert!(
        loc.starts_with(&format!("{}?SAMLRequest=", idp.slo_url)),
        "{loc}"
    );
    let (trail, status, body) = follow(&c, &loc).await;
    let last = trail.last().unwrap();
    assert!(
        last.starts_with(&format!("{}?SAMLResponse=", gw.url("/saml/slo")))
            && last.contains("&Signature="),
        "the IdP answers with a signed LogoutResponse: {trail:?}\n{}",
        idp.log_tail(30)
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("signed out"), "{body}");
    assert_eq!(gw_status(&c, gw).await, 401, "her gateway session is gone");

    // The IdP session is gone too: signing in again asks for the password.
    let r = get_accepting(&c, &gw.url("/reports"), HTML).await;
    let (_, _, page) = follow(&c, r.headers()["location"].to_str().unwrap()).await;
    assert!(page.contains("password"), "login form shown again: {page}");
}

#[tokio::test]
async fn simplesamlphp_idp_initiated_logout_ends_the_gateway_session() {
    let c = simplesamlphp::login_client();
    let s = start_ssp_and_sign_in(&c).await;
    let (idp, gw) = (&s.idp, &s.gw);

    // SimpleSAMLphp only returns to its own URLs (trusted.url.domains).
    let return_to = format!("{}/saml2/idp/metadata.php", idp.base_url);
    let start = format!("{}?ReturnTo={}", idp.slo_url, enc(&return_to));
    let (trail, status, body) = follow(&c, &start).await;
    assert!(
        trail
            .iter()
            .any(|u| u.starts_with(&format!("{}?SAMLRequest=", gw.url("/saml/slo")))),
        "the IdP sent a LogoutRequest to the gateway: {trail:?} {status}\n{}",
        idp.log_tail(30)
    );
    assert!(
        trail
            .iter()
            .any(|u| u.starts_with(&format!("{}?SAMLResponse=", idp.slo_url))),
        "the gateway answered the IdP: {trail:?}"
    );
    assert_eq!(trail.last().unwrap(), &return_to, "{trail:?}");
    assert_eq!(status, 200, "{body}");
    assert_eq!(gw_status(&c, gw).await, 401, "her gateway session is gone");
}
