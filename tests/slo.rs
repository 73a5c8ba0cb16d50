//! Single Logout over the HTTP-Redirect and HTTP-POST bindings, end to end over real sockets
//! with messages built and signed in-test (openssl over the raw query octets for Redirect,
//! an enveloped XML signature by libxmlsec1 for POST, as an IdP does): IdP-initiated
//! LogoutRequests end exactly the named subject's sessions and are answered with a signed
//! LogoutResponse (by Redirect, or by an auto-submit POST page when that is all the IdP
//! offers); unsigned, mis-signed, foreign, misdirected, stale, replayed, oversized and
//! DOCTYPE-laden ones are refused, each with its exact audit reason; SP-initiated sign-out
//! sends a signed LogoutRequest and accepts the answer once; Entra's second issuer name is
//! accepted only under its rule. Against SimpleSAMLphp (`sign.logout` on): SP-initiated and
//! IdP-initiated SLO end to end over both bindings.
//! Those tests need the Debian packages of scripts/install-deps.sh; without them they fail.

#[path = "support/e2e.rs"]
mod e2e;
#[path = "support/forms.rs"]
mod forms;
#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/log_capture.rs"]
mod log_capture;
#[path = "support/mint.rs"]
mod mint;
#[path = "support/signin.rs"]
mod signin;
#[path = "support/simplesamlphp.rs"]
mod simplesamlphp;

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{Duration, Utc};
use e2e::{GatewayListener, SspSetup};
use gateway::*;
use log_capture::Captured;
use mint::TestIdp;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;

const IDP_ENTITY: &str = "https://idp.test/metadata";
const IDP_SSO: &str = "https://idp.test/sso";
const IDP_SLO: &str = "https://idp.test/slo";
const IDP_SLO_POST: &str = "https://idp.test/slo-post";
const REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
const POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";

struct Setup {
    idp: TestIdp,
    _up: Upstream,
    gw: TestGateway,
    sp_cert_pem: String,
}

/// Which `SingleLogoutService` the IdP's metadata lists.
#[derive(Clone, Copy)]
enum IdpSlo {
    None,
    Redirect,
    /// Only the HTTP-POST binding: answers travel in an auto-submit form.
    PostOnly,
}

async fn setup(idp_has_slo: bool, saml_toml: &str) -> Setup {
    let slo = if idp_has_slo {
        IdpSlo::Redirect
    } else {
        IdpSlo::None
    };
    setup_with(IDP_ENTITY, slo, saml_toml, "").await
}

async fn setup_with(entity: &str, slo: IdpSlo, saml_toml: &str, extra_toml: &str) -> Setup {
    let idp = TestIdp::generate(entity);
    let mut md = idp.metadata_xml(IDP_SSO);
    let endpoint = match slo {
        IdpSlo::None => None,
        IdpSlo::Redirect => Some((REDIRECT, IDP_SLO)),
        IdpSlo::PostOnly => Some((POST, IDP_SLO_POST)),
    };
    if let Some((binding, location)) = endpoint {
        md = md.replacen(
            "<md:NameIDFormat>",
            &format!(
                r#"<md:SingleLogoutService Binding="{binding}" Location="{location}"/><md:NameIDFormat>"#
            ),
            1,
        );
    }
    // The SP's signing pair: the test helper's self-signed RSA-2048 (certgen is a dev tool).
    let sp = TestIdp::generate("samlgate slo test SP");
    let sp_cert_pem = sp.cert_pem.clone();
    let up = start_upstream().await;
    let gw = start_gateway(
        &up.url(),
        &md,
        Options {
            saml_toml: saml_toml.to_string(),
            extra_toml: extra_toml.to_string(),
            sp_key: Some((sp.key_pem, sp_cert_pem.clone())),
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
    let r = client().put(gw.url("/saml/slo")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, POST");
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
    // The HTTP-POST binding spends the same budget, before its body is read.
    let post = client()
        .post(s.gw.url("/saml/slo"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("SAMLRequest=x")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 429);
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
async fn sp_metadata_advertises_the_slo_endpoint_for_both_bindings() {
    let s = setup(true, "").await;
    let md = sp_metadata(&s.gw).await;
    let slo = s.gw.url("/saml/slo");
    assert!(md.contains(&format!(
        r#"<md:SingleLogoutService Binding="{REDIRECT}" Location="{slo}"/><md:SingleLogoutService Binding="{POST}" Location="{slo}"/>"#
    )), "{md}");
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

// ---- HTTP-POST binding -----------------------------------------------------------------------

/// Every formatted log line of this test binary (one process-wide subscriber), so a test can
/// read the exact reason of the refusal it caused. Tests tell their lines apart by the client
/// address each request claims through a trusted `X-Forwarded-For` ([`fresh_client`]).
fn log() -> &'static Captured {
    static LOG: OnceLock<Captured> = OnceLock::new();
    LOG.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_env_filter("warn")
            .with_target(true)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        captured
    })
}

/// The `reason` of the `slo_refused` audit line for `client`, waiting up to 5 s for it.
async fn refusal_reason(client: &str) -> String {
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let text = log().text_from(0);
        let found = text.lines().find_map(|l| {
            let rest = l.split_once("event=\"slo_refused\" reason=")?.1;
            let (reason, who) = rest.rsplit_once(" client=")?;
            (who.trim_end() == client).then(|| reason.to_string())
        });
        if let Some(reason) = found {
            return reason;
        }
        assert!(
            Instant::now() < deadline,
            "no slo_refused line for client {client}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A client address no other request in this binary uses.
fn fresh_client() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("10.77.{}.{}", n / 250, n % 250 + 1)
}

/// The gateway trusts loopback's `X-Forwarded-For` (see [`fresh_client`]); rate limits out of
/// the way of the batteries below.
const POST_TOML: &str = "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n[rate_limits]\nsign_in_burst = 10000\nacs_burst = 10000\nauth_failures_burst = 10000\n";

/// Signs `xml` (a logout message with `ID` and a `saml:Issuer`) with `key`'s IdP key: an
/// enveloped rsa-sha256 signature after the Issuer, Reference `#ID`, the certificate in
/// KeyInfo, filled in by libxmlsec1.
fn sign_post(idp: &TestIdp, xml: &str) -> String {
    let id = xml
        .split_once(" ID=\"")
        .unwrap()
        .1
        .split('"')
        .next()
        .unwrap();
    let template = format!(
        r##"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="{RSA_SHA256}"/><ds:Reference URI="#{id}"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue></ds:SignatureValue><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>"##,
        idp.cert_b64()
    );
    let with_template = xml.replacen("</saml:Issuer>", &format!("</saml:Issuer>{template}"), 1);
    mint::sign_first_template(idp, &with_template)
}

/// POSTs a form to `/saml/slo` as a browser at `client` would.
async fn post_slo(gw: &TestGateway, fields: &[(&str, &str)], client_ip: &str) -> reqwest::Response {
    client()
        .post(gw.url("/saml/slo"))
        .header("accept", HTML)
        .header("x-forwarded-for", client_ip)
        .form(fields)
        .send()
        .await
        .unwrap()
}

/// Posts `fields` from a fresh client; expects `status` and the audit reason to contain
/// `reason`; returns the reason.
async fn refused(gw: &TestGateway, fields: &[(&str, &str)], status: u16, reason: &str) -> String {
    let ip = fresh_client();
    let r = post_slo(gw, fields, &ip).await;
    assert_eq!(r.status(), status, "expected {status} for `{reason}`");
    let got = refusal_reason(&ip).await;
    assert!(
        got.contains(reason),
        "reason {got:?} should contain {reason:?}"
    );
    got
}

/// The `field` of the auto-submit page `html`, decoded, its enveloped signature verified by
/// libxmlsec1 with the SP certificate; returns the bytes the signature covers.
fn signed_by_sp(s: &Setup, html: &str, field: &str) -> String {
    use samael::crypto::CryptoProvider;
    let xml =
        String::from_utf8(STANDARD.decode(forms::input(html, field).unwrap()).unwrap()).unwrap();
    let sp_cert = openssl::x509::X509::from_pem(s.sp_cert_pem.as_bytes()).unwrap();
    let certs = [samael::crypto::CertificateDer::from(
        sp_cert.to_der().unwrap(),
    )];
    samael::crypto::Crypto::reduce_xml_to_signed(
        &xml,
        &certs,
        samael::crypto::ReduceMode::PreDigest,
    )
    .expect("signed by the SP key")
}

#[tokio::test]
async fn post_logout_request_signed_is_accepted_answered_by_redirect_and_not_replayed() {
    log();
    let s = setup_with(IDP_ENTITY, IdpSlo::Redirect, "", POST_TOML).await;
    let (alice, _) = sign_in(&s, "alice").await;
    let (bob, _) = sign_in(&s, "bob").await;
    let req = Req::new(&s.gw, "alice");
    let signed = mint::b64(&sign_post(&s.idp, &req.xml()));
    let fields = [
        ("SAMLRequest", signed.as_str()),
        ("RelayState", "relay/1+x"),
    ];
    let r = post_slo(&s.gw, &fields, &fresh_client()).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    // The IdP's metadata offers Redirect: the answer goes that way, signed, RelayState echoed.
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        loc.starts_with(&format!("{IDP_SLO}?SAMLResponse=")),
        "{loc}"
    );
    let raw = url::Url::parse(&loc).unwrap().query().unwrap().to_string();
    assert!(verify_redirect(&raw, &s.sp_cert_pem));
    let p = query_map(&loc);
    assert_eq!(p["RelayState"], "relay/1+x");
    let resp = inflate_b64(&p["SAMLResponse"]);
    assert!(
        resp.contains(&format!(r#"InResponseTo="{}""#, req.id)),
        "{resp}"
    );
    assert!(!alive(&alice, &s.gw).await, "alice's session ended");
    assert!(alive(&bob, &s.gw).await, "bob's survives");

    // The same message again is a replay.
    let reason = refused(&s.gw, &fields, 400, "was already used").await;
    assert_eq!(reason, format!("LogoutRequest {} was already used", req.id));
}

#[tokio::test]
async fn post_logout_request_gets_an_auto_submit_answer_when_the_idp_offers_only_post() {
    let s = setup_with(IDP_ENTITY, IdpSlo::PostOnly, "", POST_TOML).await;
    let (alice, _) = sign_in(&s, "alice").await;
    let req = Req::new(&s.gw, "alice");
    let signed = mint::b64(&sign_post(&s.idp, &req.xml()));
    let relay = "r\"<&>";
    let r = post_slo(
        &s.gw,
        &[("SAMLRequest", &signed), ("RelayState", relay)],
        &fresh_client(),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(
        set_cookies(&r).iter().any(|c| c.contains("Max-Age=0")),
        "the session cookie is cleared"
    );
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    let html = r.text().await.unwrap();
    assert!(!alive(&alice, &s.gw).await, "alice's session ended");
    assert_eq!(forms::form_action(&html).as_deref(), Some(IDP_SLO_POST));
    assert_eq!(forms::input(&html, "RelayState").as_deref(), Some(relay));
    // The CSP runs only the page's script, and has no form-action: Chromium would apply it to
    // the IdP's redirects after the POST and stall the sign-out.
    assert!(!csp.contains("form-action"), "{csp}");
    let script = html
        .split_once("<script>")
        .unwrap()
        .1
        .split_once("</script>")
        .unwrap()
        .0;
    let hash = STANDARD.encode(openssl::sha::sha256(script.as_bytes()));
    assert!(
        csp.contains(&format!("script-src 'sha256-{hash}'")),
        "{csp}"
    );
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    // The LogoutResponse carries an enveloped signature by the SP key that libxmlsec1 accepts.
    let verified = signed_by_sp(&s, &html, "SAMLResponse");
    assert!(
        verified.contains(&format!(r#"InResponseTo="{}""#, req.id)),
        "{verified}"
    );
    assert!(
        verified.contains(&format!(r#"Destination="{IDP_SLO_POST}""#)),
        "{verified}"
    );
    assert!(verified.contains(SUCCESS));
}

#[tokio::test]
async fn bad_post_logout_requests_are_refused_with_their_reason_and_end_nothing() {
    log();
    let s = setup_with(IDP_ENTITY, IdpSlo::Redirect, "", POST_TOML).await;
    let (alice, _) = sign_in(&s, "alice").await;
    let gw = &s.gw;
    let stranger = TestIdp::generate(IDP_ENTITY);
    let signed = |r: &Req<'_>| mint::b64(&sign_post(&s.idp, &r.xml()));
    let good = Req::new(gw, "alice");

    let unsigned = mint::b64(&Req::new(gw, "alice").xml());
    refused(
        gw,
        &[("SAMLRequest", &unsigned)],
        400,
        "message is not signed",
    )
    .await;
    let foreign = mint::b64(&sign_post(&stranger, &Req::new(gw, "alice").xml()));
    refused(
        gw,
        &[("SAMLRequest", &foreign)],
        400,
        "signature does not verify with the IdP's signing certificates",
    )
    .await;
    // Signed, then the NameID changed: the signature no longer covers it.
    let tampered = mint::b64(
        &sign_post(&s.idp, &Req::new(gw, "bob").xml())
            .replace(">bob</saml:NameID>", ">alice</saml:NameID>"),
    );
    refused(
        gw,
        &[("SAMLRequest", &tampered)],
        400,
        "signature does not verify",
    )
    .await;
    let mut evil = Req::new(gw, "alice");
    evil.issuer = "https://evil.test/metadata";
    refused(
        gw,
        &[("SAMLRequest", &signed(&evil))],
        400,
        "Issuer https://evil.test/metadata is not the IdP",
    )
    .await;
    let mut elsewhere = Req::new(gw, "alice");
    elsewhere.destination = Some("https://other.test/saml/slo".into());
    refused(
        gw,
        &[("SAMLRequest", &signed(&elsewhere))],
        400,
        "Destination https://other.test/saml/slo is not our SLO URL",
    )
    .await;
    let mut nowhere = Req::new(gw, "alice");
    nowhere.destination = None;
    refused(
        gw,
        &[("SAMLRequest", &signed(&nowhere))],
        400,
        "signed HTTP-POST message has no Destination",
    )
    .await;
    let mut stale = Req::new(gw, "alice");
    stale.issue_instant = Utc::now() - Duration::hours(2);
    refused(gw, &[("SAMLRequest", &signed(&stale))], 400, "is too old").await;
    let mut doctype = Req::new(gw, "alice");
    doctype.prolog = r#"<!DOCTYPE x [<!ENTITY e "alice">]>"#;
    refused(
        gw,
        &[("SAMLRequest", &mint::b64(&doctype.xml()))],
        400,
        "refused by the pre-filter: DOCTYPE declarations are not allowed",
    )
    .await;
    let xslt = mint::b64(&sign_post(&s.idp, &good.xml()).replacen(
        "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
        "http://www.w3.org/TR/1999/REC-xslt-19991116",
        1,
    ));
    refused(
        gw,
        &[("SAMLRequest", &xslt)],
        400,
        "refused by the pre-filter: Transform algorithm not allowed",
    )
    .await;
    let response_root = mint::b64(&good.xml().replace("LogoutRequest", "Response"));
    refused(
        gw,
        &[("SAMLRequest", &response_root)],
        400,
        "root element must be samlp:LogoutRequest, found samlp:Response",
    )
    .await;
    refused(
        gw,
        &[("SAMLRequest", &signed(&good)), ("SigAlg", RSA_SHA256)],
        400,
        "POST-SimpleSign",
    )
    .await;
    refused(gw, &[("SAMLRequest", "%%%")], 400, "message is not base64").await;
    refused(
        gw,
        &[("RelayState", "x")],
        400,
        "no SAMLRequest or SAMLResponse",
    )
    .await;

    // Not a form; far too large a form (413 before parsing, like the ACS).
    let ip = fresh_client();
    let r = client()
        .post(gw.url("/saml/slo"))
        .header("x-forwarded-for", &ip)
        .header("content-type", "text/xml")
        .body(good.xml())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        refusal_reason(&ip).await,
        "POST body is not application/x-www-form-urlencoded"
    );
    let big = "A".repeat(200 * 1024);
    let ip = fresh_client();
    let r = post_slo(gw, &[("SAMLRequest", &big)], &ip).await;
    assert_eq!(r.status(), 413);
    let reason = refusal_reason(&ip).await;
    assert!(
        reason.starts_with("POST body exceeds ") && reason.ends_with(" bytes"),
        "{reason}"
    );

    assert!(alive(&alice, gw).await, "nothing ended alice's session");
    // The well-formed one still works afterwards (no refusal spent its ID).
    let r = post_slo(gw, &[("SAMLRequest", &signed(&good))], &fresh_client()).await;
    assert_eq!(r.status(), 303);
    assert!(!alive(&alice, gw).await);
}

#[tokio::test]
async fn unsigned_post_requests_are_accepted_only_when_allowed_and_a_bad_signature_never() {
    log();
    let s = setup_with(
        IDP_ENTITY,
        IdpSlo::None,
        "require_signed_logout_requests = false\n",
        POST_TOML,
    )
    .await;
    let (alice, _) = sign_in(&s, "alice").await;
    let foreign = mint::b64(&sign_post(
        &TestIdp::generate("x"),
        &Req::new(&s.gw, "alice").xml(),
    ));
    refused(
        &s.gw,
        &[("SAMLRequest", &foreign)],
        400,
        "signature does not verify",
    )
    .await;
    assert!(alive(&alice, &s.gw).await);
    let unsigned = mint::b64(&Req::new(&s.gw, "alice").xml());
    let r = post_slo(&s.gw, &[("SAMLRequest", &unsigned)], &fresh_client()).await;
    assert_eq!(r.status(), 200, "no IdP SLO endpoint: the signed-out page");
    assert!(r.text().await.unwrap().contains("signed out"));
    assert!(!alive(&alice, &s.gw).await);
}

/// Signs alice in and out with the CSRF form; returns the id of the LogoutRequest sent.
async fn sp_logout(s: &Setup) -> String {
    let (alice, _) = sign_in(s, "alice").await;
    let r = csrf_logout(&alice, &s.gw).await;
    assert_eq!(r.status(), 200, "a page that moves on to the IdP");
    let xml = inflate_b64(&query_map(&idp_sign_out_url(&r.text().await.unwrap()))["SAMLRequest"]);
    let lr: samael::schema::LogoutRequest = xml.parse().unwrap();
    lr.id.unwrap()
}

#[tokio::test]
async fn post_logout_response_answers_our_request_once() {
    log();
    let s = setup_with(IDP_ENTITY, IdpSlo::Redirect, "", POST_TOML).await;
    let gw = &s.gw;
    let id = sp_logout(&s).await;
    let answer = |issuer: &str, signer: Option<&TestIdp>| {
        let xml = logout_response(gw, &id, issuer);
        mint::b64(&match signer {
            Some(idp) => sign_post(idp, &xml),
            None => xml,
        })
    };
    let stranger = TestIdp::generate(IDP_ENTITY);
    refused(
        gw,
        &[("SAMLResponse", &answer(IDP_ENTITY, Some(&stranger)))],
        400,
        "signature does not verify",
    )
    .await;
    let reason = refused(
        gw,
        &[("SAMLResponse", &answer("https://evil.test/", Some(&s.idp)))],
        400,
        "is not the IdP",
    )
    .await;
    assert_eq!(reason, "Issuer https://evil.test/ is not the IdP");
    let unknown = mint::b64(&sign_post(
        &s.idp,
        &logout_response(gw, "_nope", IDP_ENTITY),
    ));
    refused(
        gw,
        &[("SAMLResponse", &unknown)],
        400,
        "InResponseTo _nope answers no LogoutRequest of ours (or was used)",
    )
    .await;

    // The refusals spent nothing: the IdP's signed answer still lands, once.
    let ok = answer(IDP_ENTITY, Some(&s.idp));
    let r = post_slo(gw, &[("SAMLResponse", &ok)], &fresh_client()).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("signed out"));
    let reason = refused(
        gw,
        &[("SAMLResponse", &ok)],
        400,
        "answers no LogoutRequest",
    )
    .await;
    assert_eq!(
        reason,
        format!("InResponseTo {id} answers no LogoutRequest of ours (or was used)")
    );

    // As with Redirect, a LogoutResponse may come unsigned: InResponseTo ties it to us.
    let id = sp_logout(&s).await;
    let r = post_slo(
        gw,
        &[(
            "SAMLResponse",
            &mint::b64(&logout_response(gw, &id, IDP_ENTITY)),
        )],
        &fresh_client(),
    )
    .await;
    assert_eq!(r.status(), 200);
}

/// An IdP whose metadata offers Single Logout by HTTP-POST only gets our LogoutRequest in an
/// auto-submit page, signed with an enveloped signature by the SP key; its answer lands once.
#[tokio::test]
async fn sp_initiated_logout_to_a_post_only_idp_posts_a_signed_request() {
    let s = setup_with(IDP_ENTITY, IdpSlo::PostOnly, "", POST_TOML).await;
    let (alice, index) = sign_in(&s, "alice").await;
    let r = csrf_logout(&alice, &s.gw).await;
    assert_eq!(r.status(), 200);
    assert!(
        set_cookies(&r).iter().any(|c| c.contains("Max-Age=0")),
        "the session cookie is cleared"
    );
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(!csp.contains("form-action"), "{csp}");
    let html = r.text().await.unwrap();
    assert_eq!(forms::form_action(&html).as_deref(), Some(IDP_SLO_POST));
    assert_eq!(forms::input(&html, "RelayState"), None);
    let verified = signed_by_sp(&s, &html, "SAMLRequest");
    let lr: samael::schema::LogoutRequest = verified.parse().unwrap();
    assert_eq!(lr.name_id.unwrap().value, "alice");
    assert_eq!(lr.destination.as_deref(), Some(IDP_SLO_POST));
    assert!(verified.contains(&format!("<samlp:SessionIndex>{index}</samlp:SessionIndex>")));
    assert!(!alive(&alice, &s.gw).await, "local session already gone");

    let answer = mint::b64(&sign_post(
        &s.idp,
        &logout_response(&s.gw, &lr.id.unwrap(), IDP_ENTITY),
    ));
    let r = post_slo(&s.gw, &[("SAMLResponse", &answer)], &fresh_client()).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("signed out"));
}

const TENANT: &str = "4f1a2b3c-5d6e-4f70-8a9b-0c1d2e3f4a5b";

/// Entra ID's metadata names the tenant `https://sts.windows.net/<tenant>/`, its
/// LogoutResponse `https://login.microsoftonline.com/<tenant>/`: accepted for that tenant
/// only, derived from the metadata; any other name needs `saml.extra_logout_issuers`.
#[tokio::test]
async fn entra_logout_issuer_variant_is_accepted_only_under_its_rule() {
    log();
    let entity = format!("https://sts.windows.net/{TENANT}/");
    let s = setup_with(&entity, IdpSlo::Redirect, "", POST_TOML).await;
    let gw = &s.gw;
    let id = sp_logout(&s).await;
    let post = |issuer: &str| mint::b64(&sign_post(&s.idp, &logout_response(gw, &id, issuer)));
    let other_tenant = "https://login.microsoftonline.com/00000000-0000-4000-8000-000000000000/";
    let reason = refused(
        gw,
        &[("SAMLResponse", &post(other_tenant))],
        400,
        "is not the IdP",
    )
    .await;
    assert_eq!(reason, format!("Issuer {other_tenant} is not the IdP"));
    refused(
        gw,
        &[(
            "SAMLResponse",
            &post(&format!("https://login.microsoftonline.com/{TENANT}/v2.0")),
        )],
        400,
        "is not the IdP",
    )
    .await;
    let r = post_slo(
        gw,
        &[(
            "SAMLResponse",
            &post(&format!("https://login.microsoftonline.com/{TENANT}/")),
        )],
        &fresh_client(),
    )
    .await;
    assert_eq!(r.status(), 200, "the same tenant's second name");
    assert!(r.text().await.unwrap().contains("signed out"));

    // A LogoutRequest under that name is accepted too (logout only: sign-in stays strict).
    let (alice, _) = sign_in(&s, "alice").await;
    let mut req = Req::new(gw, "alice");
    let variant = format!("https://login.microsoftonline.com/{TENANT}/");
    req.issuer = &variant;
    let r = post_slo(
        gw,
        &[("SAMLRequest", &mint::b64(&sign_post(&s.idp, &req.xml())))],
        &fresh_client(),
    )
    .await;
    assert_eq!(r.status(), 303);
    assert!(!alive(&alice, gw).await);

    // An entity ID that is not exactly the sts.windows.net form with a GUID derives nothing.
    let named = "https://sts.windows.net/contoso.onmicrosoft.com/";
    let s = setup_with(named, IdpSlo::Redirect, "", POST_TOML).await;
    let id = sp_logout(&s).await;
    let variant = "https://login.microsoftonline.com/contoso.onmicrosoft.com/";
    let xml = mint::b64(&sign_post(&s.idp, &logout_response(&s.gw, &id, variant)));
    refused(&s.gw, &[("SAMLResponse", &xml)], 400, "is not the IdP").await;

    // Configured by the operator, it is accepted.
    let toml = format!("extra_logout_issuers = [\"{variant}\"]\n");
    let s = setup_with(named, IdpSlo::Redirect, &toml, POST_TOML).await;
    let id = sp_logout(&s).await;
    let xml = mint::b64(&sign_post(&s.idp, &logout_response(&s.gw, &id, variant)));
    let r = post_slo(&s.gw, &[("SAMLResponse", &xml)], &fresh_client()).await;
    assert_eq!(r.status(), 200);
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

// ---- SimpleSAMLphp over the HTTP-POST binding --------------------------------------------------

/// The SAML auto-submit form on `html`, if there is one: its action and fields.
fn saml_post_form(html: &str) -> Option<(String, Vec<(String, String)>)> {
    let form = &html[html.find("<form")?..];
    let start = form.find("action=\"")? + "action=\"".len();
    let action = form[start..start + form[start..].find('"')?].replace("&amp;", "&");
    let fields: Vec<(String, String)> = ["SAMLRequest", "SAMLResponse", "RelayState"]
        .iter()
        .filter_map(|n| forms::input(html, n).map(|v| (n.to_string(), v)))
        .collect();
    fields
        .iter()
        .any(|(n, _)| n != "RelayState")
        .then_some((action, fields))
}

/// Like [`follow`], but also submits SAML auto-submit forms as a browser would; the trail
/// names each step `GET url` or `POST url` and keeps the last form posted.
async fn follow_posting(
    c: &reqwest::Client,
    start: &str,
) -> (Vec<String>, Vec<(String, String)>, u16, String) {
    let mut next = (Method::Get, url::Url::parse(start).unwrap(), Vec::new());
    let mut trail = Vec::new();
    let mut last_form = Vec::new();
    for _ in 0..20 {
        let (method, url, fields) = next;
        let r = match method {
            Method::Get => {
                trail.push(format!("GET {url}"));
                get_accepting(c, url.as_str(), HTML).await
            }
            Method::Post => {
                trail.push(format!("POST {url}"));
                c.post(url.as_str())
                    .header("accept", HTML)
                    .form(&fields)
                    .send()
                    .await
                    .unwrap()
            }
        };
        if r.status().is_redirection() {
            let loc = r.headers()["location"].to_str().unwrap().to_string();
            next = (Method::Get, url.join(&loc).unwrap(), Vec::new());
            continue;
        }
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        match saml_post_form(&body) {
            Some((action, fields)) if status == 200 => {
                last_form = fields.clone();
                next = (Method::Post, url.join(&action).unwrap(), fields);
            }
            _ => return (trail, last_form, status, body),
        }
    }
    panic!("redirect loop: {trail:?}");
}

#[derive(Clone, Copy)]
enum Method {
    Get,
    Post,
}

/// [`start_ssp_and_sign_in`] with the gateway's SLO endpoint offered to SimpleSAMLphp with
/// the HTTP-POST binding only: the IdP then sends its logout messages by auto-submit form.
async fn start_ssp_post_slo_and_sign_in(c: &reqwest::Client) -> SspSetup {
    let (sp_key, sp_cert) = simplesamlphp::generate_key_pair("samlgate slo SP").unwrap();
    let listener = GatewayListener::bind().await;
    let mut entry = listener.sp_entry();
    entry.slo_url = Some(format!("{}/saml/slo", listener.public_url));
    entry.slo_post_only = true;
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

/// The base64 SAML field of a posted form, decoded.
fn form_xml(fields: &[(String, String)], name: &str) -> String {
    let b64 = &fields.iter().find(|(n, _)| n == name).unwrap().1;
    String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap()
}

#[tokio::test]
async fn simplesamlphp_answers_our_logout_request_by_post_with_a_signed_response() {
    let c = simplesamlphp::login_client();
    let s = start_ssp_post_slo_and_sign_in(&c).await;
    let (idp, gw) = (&s.idp, &s.gw);

    let r = csrf_logout(&c, gw).await;
    assert_eq!(r.status(), 200, "a page that moves on to the IdP");
    let loc = idp_sign_out_url(&r.text().await.unwrap());
    assert!(
        loc.starts_with(&format!("{}?SAMLRequest=", idp.slo_url)),
        "{loc}"
    );
    let (trail, form, status, body) = follow_posting(&c, &loc).await;
    assert_eq!(
        trail.last().unwrap(),
        &format!("POST {}", gw.url("/saml/slo")),
        "the IdP answers by HTTP-POST: {trail:?}\n{}",
        idp.log_tail(30)
    );
    let xml = form_xml(&form, "SAMLResponse");
    assert!(
        xml.starts_with("<samlp:LogoutResponse") && xml.contains("<ds:Signature"),
        "an enveloped-signed LogoutResponse: {xml}"
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("signed out"), "{body}");
    assert_eq!(gw_status(&c, gw).await, 401, "her gateway session is gone");
    let r = get_accepting(&c, &gw.url("/reports"), HTML).await;
    let (_, _, page) = follow(&c, r.headers()["location"].to_str().unwrap()).await;
    assert!(
        page.contains("password"),
        "the IdP session is gone too: {page}"
    );
}

#[tokio::test]
async fn simplesamlphp_idp_initiated_logout_by_post_ends_the_gateway_session() {
    let c = simplesamlphp::login_client();
    let s = start_ssp_post_slo_and_sign_in(&c).await;
    let (idp, gw) = (&s.idp, &s.gw);

    let return_to = format!("{}/saml2/idp/metadata.php", idp.base_url);
    let start = format!("{}?ReturnTo={}", idp.slo_url, enc(&return_to));
    let (trail, form, status, body) = follow_posting(&c, &start).await;
    let posted = format!("POST {}", gw.url("/saml/slo"));
    let xml = form_xml(&form, "SAMLRequest");
    assert!(
        xml.starts_with("<samlp:LogoutRequest") && xml.contains("<ds:Signature"),
        "an enveloped-signed LogoutRequest (signatures are required): {xml}"
    );
    assert!(
        trail.contains(&posted),
        "the IdP posted a LogoutRequest to the gateway: {trail:?} {status}\n{}",
        idp.log_tail(30)
    );
    // Its metadata offers Redirect for SLO: that is how the gateway answers.
    assert!(
        trail
            .iter()
            .any(|u| u.starts_with(&format!("GET {}?SAMLResponse=", idp.slo_url))),
        "the gateway answered the IdP: {trail:?}"
    );
    assert_eq!(
        trail.last().unwrap(),
        &format!("GET {return_to}"),
        "{trail:?}"
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(gw_status(&c, gw).await, 401, "her gateway session is gone");
}

/// `saml.extra_logout_issuers` entries must be plain names: an empty one, or one with spaces
/// or control characters, stops the configuration from loading, naming the key.
#[test]
fn extra_logout_issuers_are_validated() {
    use samlgate::config::{validate, FileConfig, SamlSection, SessionSection};
    let dir = tempfile::tempdir().unwrap();
    let idp = TestIdp::generate(IDP_ENTITY);
    std::fs::write(dir.path().join("idp.xml"), idp.metadata_xml(IDP_SSO)).unwrap();
    std::fs::write(
        dir.path().join("cookie.secret"),
        "0123456789abcdef0123456789abcdef-test-secret",
    )
    .unwrap();
    let load = |issuers: &[&str]| {
        validate(
            FileConfig {
                public_url: Some("https://app.test".into()),
                upstream: Some("http://127.0.0.1:9".into()),
                saml: SamlSection {
                    idp_metadata_file: Some("idp.xml".into()),
                    extra_logout_issuers: issuers.iter().map(|s| s.to_string()).collect(),
                    ..SamlSection::default()
                },
                session: SessionSection {
                    cookie_secret_file: Some("cookie.secret".into()),
                    ..SessionSection::default()
                },
                ..FileConfig::default()
            },
            dir.path(),
        )
    };
    let ok = load(&["https://login.microsoftonline.com/contoso/"]).unwrap();
    assert_eq!(
        ok.saml.extra_logout_issuers,
        ["https://login.microsoftonline.com/contoso/"]
    );
    for bad in ["", "https://idp.test/ x", "https://idp.test/\n"] {
        let e = load(&["https://ok.test/", bad]).unwrap_err();
        assert_eq!(e.key(), "saml.extra_logout_issuers", "{bad:?}");
    }
}
