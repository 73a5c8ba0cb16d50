//! AuthnRequest options end to end: signed AuthnRequests (HTTP-Redirect binding) against
//! SimpleSAMLphp with `validate.authnrequest`, ForceAuthn / IsPassive / RequestedAuthnContext
//! on the wire, the required AuthnContextClassRef at the ACS, and IdP-initiated sign-in
//! (minted unsolicited responses and the dev IdP's `/idp-initiated`).
//!
//! The SimpleSAMLphp tests need the Debian packages `simplesamlphp php-cli php-xml
//! php-mbstring php-curl php-sqlite3` (scripts/install-deps.sh); without them they fail.

#[path = "support/e2e.rs"]
mod e2e;
#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/mint.rs"]
mod mint;
#[path = "support/simplesamlphp.rs"]
mod simplesamlphp;

use std::collections::HashMap;

use e2e::GatewayListener;
use gateway::*;
use mint::{ResponseSpec, TestIdp};

const IDP_ENTITY: &str = "https://idp.test/metadata";
const IDP_SSO: &str = "https://idp.test/sso";
const MFA: &str = "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract";

async fn setup(saml_toml: &str) -> (TestIdp, Upstream, TestGateway) {
    let idp = TestIdp::generate(IDP_ENTITY);
    let up = start_upstream().await;
    let gw = start_gateway(
        &up.url(),
        &idp.metadata_xml(IDP_SSO),
        Options {
            saml_toml: saml_toml.to_string(),
            ..Options::default()
        },
    )
    .await;
    (idp, up, gw)
}

/// The IdP redirect for a browser navigation to `path`: (query pairs, AuthnRequest XML).
async fn idp_redirect(
    c: &reqwest::Client,
    gw: &TestGateway,
    path: &str,
) -> (HashMap<String, String>, String) {
    let r = get_accepting(c, &gw.url(path), HTML).await;
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    (query_map(&loc), redirect_request_xml(&loc))
}

async fn status_location_body(r: reqwest::Response) -> (u16, Option<String>, String) {
    let status = r.status().as_u16();
    let loc = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    (status, loc, r.text().await.unwrap_or_default())
}

/// POSTs to the ACS as an API client would: failures come back as JSON naming their kind.
async fn post_acs_json(
    c: &reqwest::Client,
    gw: &TestGateway,
    saml_response_b64: &str,
    relay: Option<&str>,
) -> (u16, Option<String>, String) {
    let acs = gw.acs_url();
    let r = post_saml_response(c, &acs, saml_response_b64, relay, "application/json").await;
    status_location_body(r).await
}

fn kind_is(body: &str, kind: &str) -> bool {
    body.contains(&format!("\"error\":\"{kind}\""))
}

/// Whether `c` now holds a session: the protected page is proxied, not a 401.
async fn has_session(c: &reqwest::Client, gw: &TestGateway) -> bool {
    c.get(gw.url("/whoami")).send().await.unwrap().status() == 200
}

// ---------------------------------------------------------------------------------------------
// Request options on the wire
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn request_options_reach_the_authn_request() {
    let (_idp, _up, gw) = setup("").await;
    let (q, xml) = idp_redirect(&client(), &gw, "/x").await;
    assert!(!q.contains_key("SigAlg") && !q.contains_key("Signature"));
    assert!(!xml.contains("ForceAuthn") && !xml.contains("IsPassive"));
    assert!(!xml.contains("RequestedAuthnContext"));

    let (_idp, _up, gw) = setup(&format!(
        "force_authn = true\nauthn_context_class_ref = \"{MFA}\"\nname_id_format = \"urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress\"\n"
    ))
    .await;
    let (_, xml) = idp_redirect(&client(), &gw, "/x").await;
    let req: samael::schema::AuthnRequest = xml.parse().unwrap();
    assert_eq!(req.force_authn, Some(true));
    assert_eq!(req.is_passive, None);
    assert!(xml.contains(&format!(
        r#"<samlp:RequestedAuthnContext Comparison="exact"><saml:AuthnContextClassRef>{MFA}</saml:AuthnContextClassRef></samlp:RequestedAuthnContext>"#
    )));
    assert!(xml.contains(
        r#"<samlp:NameIDPolicy Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress""#
    ));

    let (_idp, _up, gw) = setup("is_passive = true\n").await;
    let (_, xml) = idp_redirect(&client(), &gw, "/x").await;
    let req: samael::schema::AuthnRequest = xml.parse().unwrap();
    assert_eq!(req.is_passive, Some(true));
    assert_eq!(req.force_authn, None);
}

#[test]
fn option_config_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("idp.xml"), "<x/>").unwrap();
    std::fs::write(
        dir.path().join("secret"),
        "0123456789abcdef0123456789abcdef-test",
    )
    .unwrap();
    let refused = |saml: &str| {
        let toml = format!(
            "public_url = \"https://app.example.com/\"\nupstream = \"http://127.0.0.1:6273\"\n[saml]\nidp_metadata_file = \"idp.xml\"\n{saml}\n[session]\ncookie_secret_file = \"secret\"\n"
        );
        let file = samlgate::config::parse_with_env(&toml, &[]).unwrap();
        samlgate::config::validate(file, dir.path())
            .err()
            .map(|e| e.key().to_string())
    };
    assert_eq!(refused(""), None);
    assert_eq!(
        refused("sign_authn_requests = true").as_deref(),
        Some("saml.sign_authn_requests")
    );
    assert_eq!(
        refused("authn_context_class_ref = \" \"").as_deref(),
        Some("saml.authn_context_class_ref")
    );
    assert_eq!(
        refused("force_authn = true\nis_passive = true").as_deref(),
        Some("saml.is_passive")
    );
    for bad in ["https://evil", "//evil", "reports"] {
        assert_eq!(
            refused(&format!("idp_initiated_default_path = \"{bad}\"")).as_deref(),
            Some("saml.idp_initiated_default_path"),
            "{bad}"
        );
    }
    assert_eq!(refused("idp_initiated_default_path = \"/home\""), None);
}

// ---------------------------------------------------------------------------------------------
// Required AuthnContextClassRef at the ACS
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn required_authn_context_is_enforced_at_the_acs() {
    let (idp, _up, gw) = setup(&format!("authn_context_class_ref = \"{MFA}\"\n")).await;

    // The IdP reports a password sign-in: refused with the stronger-sign-in page.
    let c = client();
    let (req_id, relay) = begin_login(&c, &gw, "/reports").await;
    let spec = ResponseSpec::valid(&idp, &gw.sp_entity_id(), &gw.acs_url(), Some(&req_id));
    let (status, _, body) =
        status_location_body(post_acs(&c, &gw, &mint::mint_b64(&idp, &spec), Some(&relay)).await)
            .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("This application requires a stronger sign-in (for example multi-factor)"),
        "{body}"
    );
    assert!(!has_session(&c, &gw).await);
    let c = client();
    let (req_id, relay) = begin_login(&c, &gw, "/reports").await;
    let spec = ResponseSpec::valid(&idp, &gw.sp_entity_id(), &gw.acs_url(), Some(&req_id));
    let (status, _, body) =
        post_acs_json(&c, &gw, &mint::mint_b64(&idp, &spec), Some(&relay)).await;
    assert_eq!(status, 403, "{body}");
    assert!(kind_is(&body, "authn_context"), "{body}");

    // The required class: signed in.
    let c = client();
    let (req_id, relay) = begin_login(&c, &gw, "/reports").await;
    let mut spec = ResponseSpec::valid(&idp, &gw.sp_entity_id(), &gw.acs_url(), Some(&req_id));
    spec.authn_context_class_ref = MFA.to_string();
    let (status, loc, body) =
        status_location_body(post_acs(&c, &gw, &mint::mint_b64(&idp, &spec), Some(&relay)).await)
            .await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(loc.as_deref(), Some("/reports"));
    assert!(has_session(&c, &gw).await);
}

#[tokio::test]
async fn without_a_required_class_any_class_is_accepted() {
    let (idp, _up, gw) = setup("").await;
    let c = client();
    let (req_id, relay) = begin_login(&c, &gw, "/").await;
    let mut spec = ResponseSpec::valid(&idp, &gw.sp_entity_id(), &gw.acs_url(), Some(&req_id));
    spec.authn_context_class_ref = "urn:example:weird&<class>".to_string();
    let (status, _, body) =
        status_location_body(post_acs(&c, &gw, &mint::mint_b64(&idp, &spec), Some(&relay)).await)
            .await;
    assert_eq!(status, 303, "{body}");
}

// ---------------------------------------------------------------------------------------------
// IdP-initiated sign-in with minted responses
// ---------------------------------------------------------------------------------------------

fn unsolicited(idp: &TestIdp, gw: &TestGateway) -> ResponseSpec {
    ResponseSpec::valid(idp, &gw.sp_entity_id(), &gw.acs_url(), None)
}

#[tokio::test]
async fn unsolicited_responses_are_refused_by_default() {
    let (idp, _up, gw) = setup("").await;
    let c = client();
    let b64 = mint::mint_b64(&idp, &unsolicited(&idp, &gw));
    for relay in [None, Some("/reports")] {
        let (status, _, body) = post_acs_json(&c, &gw, &b64, relay).await;
        assert_eq!(status, 400, "{body}");
        assert!(kind_is(&body, "no_pending_login"), "{body}");
    }
    assert!(!has_session(&c, &gw).await);
}

#[tokio::test]
async fn unsolicited_responses_are_accepted_when_enabled() {
    let (idp, up, gw) = setup("allow_idp_initiated = true\n").await;

    // No RelayState: the default path.
    let c = client();
    let spec = unsolicited(&idp, &gw);
    let b64 = mint::mint_b64(&idp, &spec);
    let (status, loc, body) = post_acs_json(&c, &gw, &b64, None).await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(loc.as_deref(), Some("/"));
    assert!(has_session(&c, &gw).await);
    assert_eq!(
        up.last().one("x-forwarded-user").as_deref(),
        Some("alice"),
        "{:?}",
        up.last()
    );

    // Replayed: refused, even from another browser.
    let c2 = client();
    let (status, _, body) = post_acs_json(&c2, &gw, &b64, None).await;
    assert_eq!(status, 400, "{body}");
    assert!(kind_is(&body, "replay"), "{body}");
    assert!(!has_session(&c2, &gw).await);

    // A local RelayState is honoured.
    let c = client();
    let b64 = mint::mint_b64(&idp, &spec.with_fresh_ids());
    let (status, loc, body) = post_acs_json(&c, &gw, &b64, Some("/reports?q=1")).await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(loc.as_deref(), Some("/reports?q=1"));

    // Anything else lands on the default path.
    for relay in [
        "https://evil",
        "//evil.example",
        "/\\evil",
        "%2F%2Fevil",
        "not-a-token",
    ] {
        let c = client();
        let b64 = mint::mint_b64(&idp, &spec.with_fresh_ids());
        let (status, loc, body) = post_acs_json(&c, &gw, &b64, Some(relay)).await;
        assert_eq!(status, 303, "{relay}: {body}");
        assert_eq!(loc.as_deref(), Some("/"), "{relay}");
    }
}

#[tokio::test]
async fn unsolicited_sign_in_lands_on_the_configured_default_path() {
    let (idp, _up, gw) =
        setup("allow_idp_initiated = true\nidp_initiated_default_path = \"/home\"\n").await;
    let c = client();
    let b64 = mint::mint_b64(&idp, &unsolicited(&idp, &gw));
    let (status, loc, body) = post_acs_json(&c, &gw, &b64, Some("https://evil")).await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(loc.as_deref(), Some("/home"));
}

#[tokio::test]
async fn unsolicited_responses_with_an_in_response_to_are_refused() {
    let (idp, _up, gw) = setup("allow_idp_initiated = true\n").await;
    // InResponseTo on the Response and in the SubjectConfirmationData.
    let both = ResponseSpec::valid(&idp, &gw.sp_entity_id(), &gw.acs_url(), Some("_gone"));
    // Only in the SubjectConfirmationData (the envelope looks unsolicited).
    let mut inner = unsolicited(&idp, &gw);
    inner.subject_in_response_to = Some("_gone".into());
    // Only on the Response.
    let mut outer = unsolicited(&idp, &gw);
    outer.in_response_to = Some("_gone".into());
    for (what, spec) in [("both", both), ("assertion", inner), ("response", outer)] {
        let c = client();
        for relay in [None, Some("/reports")] {
            let b64 = mint::mint_b64(&idp, &spec.with_fresh_ids());
            let (status, _, body) = post_acs_json(&c, &gw, &b64, relay).await;
            assert_eq!(status, 400, "{what}: {body}");
            assert!(kind_is(&body, "no_pending_login"), "{what}: {body}");
        }
        assert!(!has_session(&c, &gw).await, "{what}");
    }
}

#[tokio::test]
async fn unsolicited_responses_must_be_fresh_and_still_for_us() {
    let (idp, _up, gw) = setup("allow_idp_initiated = true\n").await;
    let now = chrono::Utc::now();
    // Issued five minutes ago, though its conditions are still open.
    let mut old = unsolicited(&idp, &gw);
    old.issue_instant = now - chrono::Duration::minutes(5);
    old.not_before = now - chrono::Duration::minutes(6);
    // For another SP.
    let mut foreign = unsolicited(&idp, &gw);
    foreign.audience = Some("https://other-sp.example/metadata".into());
    // To another ACS.
    let mut elsewhere = unsolicited(&idp, &gw);
    elsewhere.recipient = "https://other-sp.example/acs".into();
    for (spec, kind) in [
        (old, "expired"),
        (foreign, "audience"),
        (elsewhere, "recipient"),
    ] {
        let c = client();
        let (status, _, body) = post_acs_json(&c, &gw, &mint::mint_b64(&idp, &spec), None).await;
        assert_eq!(status, 400, "{kind}: {body}");
        assert!(kind_is(&body, kind), "{kind}: {body}");
    }
}

#[tokio::test]
async fn solicited_sign_in_is_unchanged_when_idp_initiated_is_enabled() {
    let (idp, _up, gw) = setup("allow_idp_initiated = true\n").await;
    // The normal flow.
    let c = client();
    let (req_id, relay) = begin_login(&c, &gw, "/reports").await;
    let spec = ResponseSpec::valid(&idp, &gw.sp_entity_id(), &gw.acs_url(), Some(&req_id));
    let (status, loc, body) =
        post_acs_json(&c, &gw, &mint::mint_b64(&idp, &spec), Some(&relay)).await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(loc.as_deref(), Some("/reports"));

    // A pending token whose response answers another request: refused, not "unsolicited".
    let c = client();
    let (_req_id, relay) = begin_login(&c, &gw, "/reports").await;
    let spec = ResponseSpec::valid(&idp, &gw.sp_entity_id(), &gw.acs_url(), Some("_other"));
    let (status, _, body) =
        post_acs_json(&c, &gw, &mint::mint_b64(&idp, &spec), Some(&relay)).await;
    assert_eq!(status, 400, "{body}");
    assert!(kind_is(&body, "in_response_to"), "{body}");

    // A pending token with an unsolicited response: refused too (the request is unanswered).
    let c = client();
    let (_req_id, relay) = begin_login(&c, &gw, "/reports").await;
    let b64 = mint::mint_b64(&idp, &unsolicited(&idp, &gw));
    let (status, _, body) = post_acs_json(&c, &gw, &b64, Some(&relay)).await;
    assert_eq!(status, 400, "{body}");
    assert!(kind_is(&body, "in_response_to"), "{body}");

    // Another browser's pending token stays a login-CSRF refusal.
    let c = client();
    let (req_id, relay) = begin_login(&c, &gw, "/reports").await;
    let spec = ResponseSpec::valid(&idp, &gw.sp_entity_id(), &gw.acs_url(), Some(&req_id));
    let other = client();
    let (status, _, body) =
        post_acs_json(&other, &gw, &mint::mint_b64(&idp, &spec), Some(&relay)).await;
    assert_eq!(status, 403, "{body}");
    assert!(kind_is(&body, "wrong_browser"), "{body}");
}

// ---------------------------------------------------------------------------------------------
// Signed AuthnRequests against SimpleSAMLphp (validate.authnrequest)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn simplesamlphp_accepts_signed_authn_requests_and_refuses_unsigned_ones() {
    let (sp_key, sp_cert) = simplesamlphp::generate_key_pair("samlgate signing SP").unwrap();
    let signing = GatewayListener::bind().await;
    let unsigned = GatewayListener::bind().await;
    // One IdP, both gateways registered with validate.authnrequest and the SP certificate.
    let entry = |l: &GatewayListener| {
        let mut e = l.sp_entry();
        e.validate_authnrequest = true;
        e.certificate_pem = Some(sp_cert.clone());
        e
    };
    let entries = [entry(&signing), entry(&unsigned)];
    let idp = e2e::start_simplesamlphp(&entries).await;
    let up = start_upstream().await;
    let opts = |saml_toml: &str| Options {
        saml_toml: saml_toml.to_string(),
        sp_key: Some((sp_key.clone(), sp_cert.clone())),
        extra_toml: e2e::USER_IS_UID.to_string(),
        ..Options::default()
    };
    let gw_signing = signing
        .serve(
            &entries[0],
            &up.url(),
            &idp.metadata_xml,
            opts("sign_authn_requests = true\n"),
        )
        .await;
    let gw_unsigned = unsigned
        .serve(&entries[1], &up.url(), &idp.metadata_xml, opts(""))
        .await;

    // SP metadata tells the IdP admin.
    let md = sp_metadata(&gw_signing).await;
    assert!(md.contains(r#"AuthnRequestsSigned="true""#), "{md}");
    let md = sp_metadata(&gw_unsigned).await;
    assert!(md.contains(r#"AuthnRequestsSigned="false""#), "{md}");

    // Signed: alice signs in.
    let c = simplesamlphp::login_client();
    let (start, _) = e2e::redirect_to_idp(&c, &gw_signing.url("/reports"), &idp).await;
    let form = e2e::login_at_idp(
        &c,
        &idp,
        &start,
        &simplesamlphp::ALICE,
        &gw_signing.acs_url(),
    )
    .await;
    let r = form.submit(&c).await.unwrap();
    let (status, loc, body) = status_location_body(r).await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(loc.as_deref(), Some("/reports"));
    let r = c.get(gw_signing.url("/whoami")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().one("x-forwarded-user").as_deref(), Some("alice"));

    // Unsigned, same IdP entry (validate.authnrequest): the IdP refuses to go on.
    let c = simplesamlphp::login_client();
    let (start, _) = e2e::redirect_to_idp(&c, &gw_unsigned.url("/reports"), &idp).await;
    let refused = simplesamlphp::drive_login(&c, &start, &simplesamlphp::ALICE).await;
    let err = refused.expect_err("SimpleSAMLphp must refuse an unsigned AuthnRequest");
    assert!(err.contains("no signature found"), "{err}");
}
