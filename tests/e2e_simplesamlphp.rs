//! samlgate end to end against a real SAML 2.0 IdP: SimpleSAMLphp from Debian, run by
//! `php -S` on a loopback port (tests/support/simplesamlphp.rs). Every test starts its own
//! IdP, its own echo upstream and its own gateway; nothing is minted in-process, so these
//! tests see exactly what a real IdP emits (persistent NameID, both signatures, multi-valued
//! and empty attributes).
//!
//! Needs the Debian packages `simplesamlphp php-cli php-xml php-mbstring php-curl php-sqlite3`
//! (scripts/install-deps.sh); without them the tests fail, never skip.
//!
//! The IdP and the gateway are wired to each other by tests/support/e2e.rs: the gateway's
//! listener is bound first, the IdP is configured with its URLs, then the gateway is served on
//! that listener.

#[path = "support/e2e.rs"]
mod e2e;
#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/simplesamlphp.rs"]
mod simplesamlphp;

use std::time::{Duration, Instant};

use e2e::{expect_signed_in, submit, SspSetup as Setup, USER_IS_UID};
use gateway::{get_accepting, post_saml_response, set_cookies, Options, HTML};
use simplesamlphp::{login_client, PostForm, SpEntry, TestUser, ALICE, BOB, CAROL};

/// Options for a gateway whose user header is SimpleSAMLphp's `uid`, with `extra_toml` after.
fn uid_options(extra_toml: &str) -> Options {
    Options {
        extra_toml: format!("{USER_IS_UID}{extra_toml}"),
        ..Options::default()
    }
}

/// IdP with the default SP entry, upstream, and a gateway with [`uid_options`].
async fn start(extra_toml: &str) -> Setup {
    Setup::start(|_| {}, uid_options(extra_toml)).await
}

/// Starts a sign-in of `user` at `path` and lets the IdP answer; posts the IdP's response
/// changed by `edit` (same RelayState) as an API client. Returns the IdP's form and the
/// ACS's answer.
async fn post_tampered(
    s: &Setup,
    c: &reqwest::Client,
    path: &str,
    user: &TestUser,
    edit: impl FnOnce(&str) -> String,
) -> (PostForm, reqwest::Response) {
    let (loc, _) = s.begin(c, path).await;
    let form = s.idp_login(c, &loc, user).await;
    let forged = tamper(&form, edit);
    let relay = form.relay_state.as_deref();
    let r = post_saml_response(c, &form.action, &forged, relay, "application/json").await;
    (form, r)
}

/// The ACS refused with 400 and the error kind `kind` (JSON), set no session cookie, and the
/// browser has no session. Returns the body.
async fn expect_refused(
    s: &Setup,
    c: &reqwest::Client,
    r: reqwest::Response,
    kind: &str,
) -> String {
    let status = r.status();
    let cookies = set_cookies(&r);
    let body = r.text().await.unwrap();
    eprintln!("refused: {status} {body}");
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains(&format!("\"error\":\"{kind}\"")),
        "refused as {kind}: {body}"
    );
    assert!(
        !cookies.iter().any(|c| c.starts_with("samlgate_session=")),
        "no session cookie for a refused response: {cookies:?}"
    );
    assert!(s.has_no_session(c).await, "no session after the refusal");
    body
}

/// Decodes, edits and re-encodes a SAMLResponse.
fn tamper(form: &PostForm, edit: impl FnOnce(&str) -> String) -> String {
    use base64::Engine as _;
    let xml = form.response_xml().unwrap();
    let changed = edit(&xml);
    assert_ne!(changed, xml, "the edit changed nothing");
    base64::engine::general_purpose::STANDARD.encode(changed.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_signs_in_through_simplesamlphp() {
    let t = Instant::now();
    let s = start("").await;
    let c = login_client();

    let (loc, cookies) = s.begin(&c, "/reports?q=1").await;
    assert!(
        cookies.iter().any(|c| c.starts_with("samlgate_login=")),
        "{cookies:?}"
    );
    assert_eq!(
        s.up.count(),
        0,
        "nothing reaches the upstream before sign-in"
    );

    let form = s.idp_login(&c, &loc, &ALICE).await;
    let xml = form.response_xml().unwrap();
    assert!(
        xml.contains("nameid-format:persistent"),
        "SimpleSAMLphp emits a persistent NameID"
    );

    let r = submit(&c, &form, HTML).await;
    expect_signed_in(r, "/reports?q=1").await;
    assert_eq!(s.up.count(), 0, "the ACS itself is never forwarded");

    // The person's browser follows the 303, carrying forged identity headers (any spelling)
    // that must never reach the upstream.
    let r = c
        .get(s.gw.url("/reports?q=1"))
        .header("accept", HTML)
        .header("X-Forwarded-User", "mallory")
        .header("x-forwarded-groups", "superadmins")
        .header("X_Forwarded_Email", "mallory@evil.test")
        .header("x-forwarded-preferred-username", "Mallory")
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("upstream page"), "{body}");
    assert_eq!(s.up.count(), 1);

    let seen = s.up.last();
    assert_eq!(seen.path, "/reports?q=1");
    assert_eq!(seen.one("x-forwarded-user").as_deref(), Some("alice"));
    assert_eq!(
        seen.one("x-forwarded-groups").as_deref(),
        Some("analysts,admins")
    );
    assert_eq!(
        seen.one("x-forwarded-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        seen.one("x-forwarded-preferred-username").as_deref(),
        Some("Alice Analyst")
    );
    for (name, expected) in [
        ("x-forwarded-user", "alice"),
        ("x-forwarded-groups", "analysts,admins"),
        ("x-forwarded-email", "alice@example.com"),
        ("x-forwarded-preferred-username", "Alice Analyst"),
    ] {
        let variants = seen.any_variant(name);
        assert_eq!(
            variants,
            vec![(name.to_string(), expected.to_string())],
            "only the gateway's own {name} reaches the upstream"
        );
    }
    let all_values: Vec<&str> = seen.headers.iter().map(|(_, v)| v.as_str()).collect();
    for forged in ["mallory", "superadmins", "Mallory"] {
        assert!(
            !all_values.iter().any(|v| v.contains(forged)),
            "forged value {forged:?} reached the upstream: {:?}",
            seen.headers
        );
    }
    for cookie in seen.all("cookie") {
        assert!(
            !cookie.contains("samlgate_"),
            "gateway cookies must not reach the upstream: {cookie}"
        );
    }
    eprintln!("alice_signs_in_through_simplesamlphp: {:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bob_is_denied_by_allowed_groups() {
    let s = start("\n[authz]\nallowed_groups = [\"analysts\"]\n").await;
    let c = login_client();
    s.sign_in(&c, "/reports", &BOB).await;

    let (status, body) = s.get_page(&c, "/reports").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("analysts"),
        "the page names the group: {body}"
    );
    assert!(
        body.contains("bob"),
        "the page names who is signed in: {body}"
    );
    assert_eq!(
        s.up.count(),
        0,
        "a denied request never reaches the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carol_with_no_groups_is_denied_when_groups_are_required() {
    // SimpleSAMLphp sends `groups` as an Attribute with no AttributeValue at all.
    {
        let s = start("\n[authz]\nallowed_groups = [\"analysts\"]\n").await;
        let c = login_client();
        s.sign_in(&c, "/", &CAROL).await;
        let (status, body) = s.get_page(&c, "/").await;
        assert_eq!(status, 403, "no groups never admits: {body}");
        assert!(body.contains("analysts"), "{body}");
        assert_eq!(s.up.count(), 0);
    }
    // Without a group requirement carol is admitted, and the upstream sees no groups header
    // at all (not an empty one).
    {
        let s = start("\n[authz]\nallowed_groups = []\n").await;
        let c = login_client();
        s.sign_in(&c, "/", &CAROL).await;
        let (status, body) = s.get_page(&c, "/").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(s.up.count(), 1);
        let seen = s.up.last();
        assert_eq!(seen.one("x-forwarded-user").as_deref(), Some("carol"));
        assert_eq!(
            seen.one("x-forwarded-email").as_deref(),
            Some("carol@example.com")
        );
        assert!(
            seen.any_variant("x-forwarded-groups").is_empty(),
            "no groups header for a user without groups: {:?}",
            seen.headers
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_real_response_is_rejected() {
    let s = start("").await;
    let c = login_client();
    // Grant alice an extra group inside the signed assertion.
    let (form, r) = post_tampered(&s, &c, "/reports", &ALICE, |xml| {
        let v = ">analysts</saml:AttributeValue>";
        assert!(xml.contains(v), "unexpected attribute encoding: {xml}");
        xml.replacen(v, ">superadmins</saml:AttributeValue>", 1)
    })
    .await;
    expect_refused(&s, &c, r, "signature").await;

    // The untampered original with the same RelayState: the tampered attempt consumed the
    // pending login, so this sign-in must be restarted.
    let r = submit(&c, &form, "application/json").await;
    let body = expect_refused(&s, &c, r, "no_pending_login").await;
    assert!(
        body.contains("\"login_url\":\"/saml/login?rd=%2Freports\"")
            || body.contains("\"login_url\":\"/saml/login\""),
        "offers to sign in again: {body}"
    );
    assert_eq!(s.up.count(), 0);

    // Restarting works (the IdP still has alice's session, so no password page this time).
    s.sign_in(&c, "/reports", &ALICE).await;
    s.upstream_sees(&c, "/reports", &ALICE).await;
    assert_eq!(
        s.up.last().one("x-forwarded-groups").as_deref(),
        Some("analysts,admins"),
        "the forged group never made it into a session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_name_id_and_user_attribute_are_rejected() {
    let s = start("").await;
    let c = login_client();
    // Become alice: the uid attribute value (and the NameID is left alone, as it is opaque).
    let (_, r) = post_tampered(&s, &c, "/", &BOB, |xml| {
        let v = ">bob</saml:AttributeValue>";
        assert!(xml.contains(v), "unexpected attribute encoding: {xml}");
        xml.replacen(v, ">alice</saml:AttributeValue>", 1)
    })
    .await;
    expect_refused(&s, &c, r, "signature").await;

    // A fresh attempt, this time changing the persistent NameID's text.
    let (_, r) = post_tampered(&s, &c, "/", &BOB, |xml| {
        let start = xml.find("<saml:NameID").expect("NameID") + 1;
        let open_end = start + xml[start..].find('>').unwrap() + 1;
        let close = open_end + xml[open_end..].find("</saml:NameID>").unwrap();
        format!(
            "{}{}{}",
            &xml[..open_end],
            "_forged0000000000",
            &xml[close..]
        )
    })
    .await;
    expect_refused(&s, &c, r, "signature").await;
    assert_eq!(s.up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_response_signed_idp_is_refused_by_default() {
    let only_response = |sp: &mut SpEntry| {
        sp.sign_response = true;
        sp.sign_assertion = false;
    };
    // Default: require_signed_assertion = true.
    {
        let s = Setup::start(only_response, uid_options("")).await;
        let c = login_client();
        let (loc, _) = s.begin(&c, "/reports").await;
        let form = s.idp_login(&c, &loc, &ALICE).await;
        let xml = form.response_xml().unwrap();
        let assertion_at = xml.find("<saml:Assertion").expect("a plain Assertion");
        let signatures: Vec<usize> = xml
            .match_indices("<ds:SignatureValue")
            .map(|(i, _)| i)
            .collect();
        assert!(
            signatures.len() == 1 && signatures[0] < assertion_at,
            "only the Response is signed: {xml}"
        );
        let r = submit(&c, &form, "application/json").await;
        expect_refused(&s, &c, r, "assertion_not_signed").await;
        assert_eq!(s.up.count(), 0);
    }
    // Opting out: a signed Response covering the assertion is enough.
    {
        let s = Setup::start(
            only_response,
            Options {
                saml_toml: "require_signed_assertion = false\n".into(),
                ..uid_options("")
            },
        )
        .await;
        let c = login_client();
        s.sign_in(&c, "/reports", &ALICE).await;
        s.upstream_sees(&c, "/reports", &ALICE).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_login_still_succeeds() {
    const PAUSE: Duration = Duration::from_secs(3);
    let s = start("").await;
    let c = login_client();
    let (loc, cookies) = s.begin(&c, "/reports?q=slow").await;
    let login_cookie = cookies
        .iter()
        .find(|c| c.starts_with("samlgate_login="))
        .unwrap_or_else(|| panic!("no login cookie: {cookies:?}"));
    let max_age: u64 = login_cookie
        .split(';')
        .map(str::trim)
        .find_map(|a| {
            a.split_once('=')
                .filter(|(k, _)| k.eq_ignore_ascii_case("max-age"))
                .map(|(_, v)| v.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("login cookie without Max-Age: {login_cookie}"));
    assert!(
        max_age >= 600,
        "the login cookie must outlive a slow password page: {login_cookie}"
    );

    // Follow the IdP's redirects to its password page, as the browser would, and show it.
    let mut url = url::Url::parse(&loc).unwrap();
    let login_page = loop {
        let r = c.get(url.clone()).send().await.unwrap();
        if r.status().is_redirection() {
            let next = r.headers()["location"].to_str().unwrap().to_string();
            url = url.join(&next).unwrap();
            continue;
        }
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains("name=\"password\"") && body.contains("AuthState"),
            "the IdP's password page: {body}"
        );
        break url;
    };
    // The person takes their time typing the password.
    tokio::time::sleep(PAUSE).await;
    let form = s.idp_login(&c, login_page.as_str(), &ALICE).await;
    let r = submit(&c, &form, HTML).await;
    expect_signed_in(r, "/reports?q=slow").await;
    s.upstream_sees(&c, "/reports?q=slow", &ALICE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_client_gets_401_not_redirect() {
    let s = start("").await;
    let c = login_client();
    let r = get_accepting(&c, &s.gw.url("/api/reports?q=1"), "application/json").await;
    assert_eq!(r.status(), 401);
    assert!(
        r.headers().get("location").is_none(),
        "no redirect for APIs"
    );
    assert!(
        set_cookies(&r).is_empty(),
        "no pending login is started for an API call"
    );
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    assert!(r.headers().contains_key("www-authenticate"));
    let body = r.text().await.unwrap();
    assert!(body.contains("\"error\":\"unauthenticated\""), "{body}");
    let login_url = "/saml/login?rd=%2Fapi%2Freports%3Fq%3D1";
    assert!(
        body.contains(&format!("\"login_url\":\"{login_url}\"")),
        "{body}"
    );
    assert_eq!(s.up.count(), 0);

    // The login_url it offers starts a sign-in through the real IdP, back to the API path.
    let (loc, _) = s.begin(&c, login_url).await;
    let form = s.idp_login(&c, &loc, &ALICE).await;
    expect_signed_in(submit(&c, &form, HTML).await, "/api/reports?q=1").await;
    let r = get_accepting(&c, &s.gw.url("/api/reports?q=1"), "application/json").await;
    assert_eq!(r.status(), 200, "the API call now passes with the session");
    assert_eq!(
        s.up.last().one("x-forwarded-user").as_deref(),
        Some("alice")
    );
}
