//! Every audit event, captured as the JSON line the production formatter writes
//! (`samlgate::observability` with `[log] format = "json"`) while a real in-process gateway
//! serves real HTTP: sign-in started, succeeded, refused (every failure kind a client can
//! provoke, each with its exact reason), sign-out and its refusals, Single Logout in both directions, access denied (user, rule, forward-auth),
//! rate limited (and its summary), the refusals before dispatch, IdP-initiated responses,
//! config reload applied and refused, and a tunnel closed with its session. Each test checks
//! the event's fields, and that no captured line carries a SAMLResponse, a cookie value, the
//! cookie secret, a RelayState or a CSRF token.
//!
//! The subscriber is process-wide, so the tests take turns (a lock) and each reads only the
//! lines written since it began.

#[path = "support/encrypt.rs"]
mod encrypt;
#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/log_capture.rs"]
mod log_capture;
#[path = "support/logout_messages.rs"]
mod logout_messages;
#[path = "support/mint.rs"]
mod mint;
#[path = "support/signin.rs"]
mod signin;

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use gateway::*;
use log_capture::Captured;
use logout_messages::{logout_request, logout_response, redirect_query, RESPONDER, SUCCESS};
use mint::{ResponseSpec, TestIdp};
use samael::service_provider::Error as SamaelError;
use samlgate::forward_auth::OriginalError;
use samlgate::saml::decrypt::DecryptError;
use samlgate::saml::error::{InResponseToError, LoginError, RequestRef};
use samlgate::saml::prefilter::PrefilterError;
use samlgate::saml::verify::map_samael_error;
use samlgate::target::TargetRefusal;
use serde_json::Value;

const IDP_ENTITY: &str = "https://idp.test/metadata";
const IDP_SSO: &str = "https://idp.test/sso";
const IDP_SLO: &str = "https://idp.test/slo";
/// The cookie secret `tests/support/gateway.rs` writes for every gateway.
const COOKIE_SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";

// ---- capture ----------------------------------------------------------------------------------

static CAPTURED: LazyLock<Captured> = LazyLock::new(|| {
    let captured = Captured::default();
    let writer = captured.clone();
    samlgate::observability::init_with_writer("json", "info", false, move || writer.clone());
    captured
});
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One test's view of the log: the lines written since it began, and what must never
/// appear in them.
struct Log {
    from: usize,
    secrets: Vec<String>,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Log {
    async fn begin() -> Log {
        let turn = TURN.lock().await;
        Log {
            from: CAPTURED.len(),
            secrets: vec![COOKIE_SECRET.to_string()],
            _turn: turn,
        }
    }

    fn text(&self) -> String {
        CAPTURED.text_from(self.from)
    }

    fn lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// The audit lines of `event`.
    fn events(&self, event: &str) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|l| l["target"] == "samlgate::audit" && l["event"] == event)
            .collect()
    }

    /// The one audit line of `event` matching `also`, waiting up to 5 s for it.
    async fn event(&self, event: &str, also: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found: Vec<Value> = self.events(event).into_iter().filter(&also).collect();
            if found.len() == 1 {
                return found.into_iter().next().unwrap();
            }
            assert!(
                found.len() < 2,
                "more than one {event} line matches:\n{}",
                self.text()
            );
            assert!(
                Instant::now() < deadline,
                "no {event} line matches:\n{}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The access lines with `status` (one request each, not summaries).
    fn access(&self, status: u64) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|l| {
                l["target"] == "samlgate::access"
                    && l["status"] == status
                    && l["suppressed"].is_null()
            })
            .collect()
    }

    fn keep_secret(&mut self, s: impl Into<String>) {
        let s = s.into();
        assert!(s.len() >= 16, "too short to scan for: {s:?}");
        self.secrets.push(s);
    }

    /// Holds a `name=value` cookie's value (a `Set-Cookie` value too) as a secret; an
    /// emptied cookie has none.
    fn keep_cookie(&mut self, cookie: &str) {
        let value = cookie.split_once('=').map_or(cookie, |(_, v)| v);
        let value = value.split(';').next().unwrap_or(value);
        if !value.is_empty() {
            self.keep_secret(value);
        }
    }

    /// No line carries any secret of this test (also URL-encoded, as a query would).
    fn assert_no_secrets(&self) {
        let text = self.text();
        assert!(!text.is_empty(), "the test logged nothing");
        for s in &self.secrets {
            let encoded: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
            for form in [s.as_str(), encoded.as_str()] {
                assert!(!text.contains(form), "a log line carries {form:?}:\n{text}");
            }
        }
    }
}

fn client_is_loopback(l: &Value) {
    assert_eq!(l["client"], "127.0.0.1", "{l}");
}

// ---- set-up -------------------------------------------------------------------------------------

async fn minted_gateway(extra_toml: &str) -> (TestIdp, Upstream, TestGateway) {
    signin::start_minted(extra_toml).await
}

/// A browser's sign-in as `user` through the whole flow, its secrets kept; returns the
/// client and the session cookie.
async fn sign_in(
    log: &mut Log,
    idp: &TestIdp,
    gw: &TestGateway,
    user: &str,
) -> (reqwest::Client, String) {
    let c = client();
    let (location, login_cookies) = login_redirect(&c, &gw.url("/")).await;
    let (req_id, relay) = parse_idp_redirect(&location);
    for cookie in login_cookies {
        log.keep_cookie(&cookie);
    }
    let mut spec = ResponseSpec::valid(idp, &gw.sp_entity_id(), &gw.acs_url(), Some(&req_id));
    spec.name_id = user.to_string();
    spec.attributes[0] = ("uid".to_string(), vec![user.to_string()]);
    let b64 = mint::mint_b64(idp, &spec);
    let r = post_acs(&c, gw, &b64, Some(&relay)).await;
    assert_eq!(r.status(), 303, "{user} signs in");
    let cookie = session_cookie(&r).expect("session cookie");
    log.keep_secret(relay);
    log.keep_secret(b64);
    log.keep_cookie(&cookie);
    for login_cookie in set_cookies(&r) {
        log.keep_cookie(&login_cookie);
    }
    (c, cookie)
}

// ---- sign-in and sign-out -------------------------------------------------------------------------

#[tokio::test]
async fn sign_in_and_sign_out_events_carry_their_fields() {
    let mut log = Log::begin().await;
    let (idp, _up, gw) = minted_gateway("").await;
    let (c, _) = sign_in(&mut log, &idp, &gw, "alice").await;

    let started = log.event("login_started", |_| true).await;
    assert!(started["request_id"].as_str().unwrap().starts_with('_'));
    client_is_loopback(&started);
    let ok = log.event("login_success", |_| true).await;
    assert_eq!(ok["user"], "alice");
    assert_eq!(ok["idp_initiated"], false);
    assert!(
        ok["groups"].is_u64() && ok["assertion_id"].is_string(),
        "{ok}"
    );
    assert_eq!(ok["session"].as_str().unwrap().len(), 8, "{ok}");
    client_is_loopback(&ok);

    // A wrong CSRF token: refused, session kept.
    let r = c
        .post(gw.url("/saml/logout"))
        .form(&[("csrf", "forged-token-forged-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let refused = log.event("logout_refused", |_| true).await;
    assert_eq!(refused["reason"], "missing or wrong CSRF token");
    assert_eq!(refused["user"], "alice");
    client_is_loopback(&refused);

    let token = logout_csrf_token(&c, &gw.url("/saml/logout")).await;
    log.keep_secret(token.clone());
    let r = c
        .post(gw.url("/saml/logout"))
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out = log.event("logout", |_| true).await;
    assert_eq!(out["user"], "alice");
    assert_eq!(out["session"], ok["session"], "the same session's tag");
    client_is_loopback(&out);
    log.assert_no_secrets();
}

/// A response edit that provokes one failure kind, and the error (kind and exact reason) the
/// `login_failure` line must carry, built from the edited response.
struct FailureCase {
    edit: fn(&mut ResponseSpec),
    expected: fn(&ResponseSpec, &TestGateway) -> LoginError,
}

/// A request id no browser started.
const OTHER_REQUEST: &str = "_0000000000000000000000000000000a";

/// The gateway's `saml.clock_skew_secs`.
fn skew(gw: &TestGateway) -> chrono::Duration {
    chrono::Duration::from_std(gw.settings.saml.clock_skew).unwrap()
}

/// A time as samael's errors write it.
fn samael_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Responses a valid IdP signature covers, each edited to fail one check (with
/// `headers.user_attribute = "uid"`).
fn edited_response_cases() -> Vec<FailureCase> {
    vec![
        FailureCase {
            edit: |s| s.status_code = mint::STATUS_REQUESTER.into(),
            expected: |_, _| LoginError::IdpStatus {
                code: mint::STATUS_REQUESTER.into(),
                sub_code: None,
                message: None,
            },
        },
        FailureCase {
            edit: |s| s.destination = Some("https://other-app.test/saml/acs".into()),
            expected: |s, _| LoginError::Destination {
                got: s.destination.clone(),
            },
        },
        FailureCase {
            edit: |s| s.issuer = "https://evil-idp.test/metadata".into(),
            expected: |s, _| LoginError::Issuer {
                got: Some(s.issuer.clone()),
            },
        },
        FailureCase {
            edit: |s| s.in_response_to = Some(OTHER_REQUEST.into()),
            expected: |_, _| {
                LoginError::InResponseTo(InResponseToError::NotThisRequest {
                    at: RequestRef::Response,
                    got: OTHER_REQUEST.into(),
                })
            },
        },
        FailureCase {
            edit: |s| s.sign_assertion = false,
            expected: |_, _| LoginError::AssertionNotSigned,
        },
        FailureCase {
            edit: |s| s.audience = Some("https://other-sp.test".into()),
            // samael's own audience check refuses it first, without naming the audience.
            expected: |_, _| LoginError::Audience { got: vec![] },
        },
        FailureCase {
            edit: |s| s.recipient = "https://other-app.test/saml/acs".into(),
            // samael's SubjectConfirmation checks refuse it first, in its words.
            expected: |s, gw| {
                map_samael_error(SamaelError::AssertionRecipientMismatch {
                    assertion_recipient: Some(s.recipient.clone()),
                    sp_acs_url: Some(gw.acs_url()),
                })
            },
        },
        FailureCase {
            edit: |s| {
                let now = chrono::Utc::now();
                s.not_before = now - chrono::Duration::minutes(10);
                s.not_on_or_after = now - chrono::Duration::seconds(150);
                s.subject_not_on_or_after = now - chrono::Duration::seconds(150);
            },
            // samael's Conditions check refuses it first, naming the end of the skew.
            expected: |s, gw| {
                map_samael_error(SamaelError::AssertionConditionExpired {
                    time: samael_time(s.not_on_or_after + skew(gw)),
                })
            },
        },
        FailureCase {
            edit: |s| {
                let now = chrono::Utc::now();
                s.not_before = now + chrono::Duration::minutes(10);
                s.not_on_or_after = now + chrono::Duration::minutes(15);
                s.subject_not_on_or_after = now + chrono::Duration::minutes(15);
            },
            expected: |s, gw| {
                map_samael_error(SamaelError::AssertionConditionExpiredBefore {
                    time: samael_time(s.not_before - skew(gw)),
                })
            },
        },
        FailureCase {
            edit: |s| s.name_id = "a".repeat(1025),
            expected: |_, _| LoginError::BadUserId("longer than 1024 bytes"),
        },
        FailureCase {
            edit: |s| s.sp_name_qualifier = Some("https://other-sp.test".into()),
            expected: |s, _| LoginError::SpNameQualifier(s.sp_name_qualifier.clone().unwrap()),
        },
        FailureCase {
            edit: |s| {
                s.authn_statement = false;
                s.session_not_on_or_after = None;
                s.session_index = None;
            },
            expected: |_, _| LoginError::NoAuthnStatement,
        },
        FailureCase {
            edit: |s| {
                s.attributes
                    .push(("groups".into(), vec!["superusers".into()]))
            },
            expected: |_, _| LoginError::DuplicateAttribute("groups".into()),
        },
        FailureCase {
            edit: |s| s.attributes.push((String::new(), vec!["x".into()])),
            expected: |_, _| LoginError::Invalid("attribute without a Name".into()),
        },
        FailureCase {
            edit: |s| s.attributes.retain(|(name, _)| name != "uid"),
            expected: |_, _| LoginError::MissingUserAttribute("uid".into()),
        },
    ]
}

/// Each way a sign-in can fail through the gateway's defaults: the `login_failure` line names
/// the kind, its exact reason, the client and the time spent. The kinds that need other
/// settings are in [`sign_in_failures_under_stricter_settings_are_logged_with_their_reason`],
/// [`an_encrypted_sign_in_failure_is_logged_with_its_reason`] and
/// [`a_trickled_acs_body_is_logged_as_body_timeout`]; the other `in_response_to` reasons in
/// tests/audit_in_response_to.rs. Two kinds cannot be provoked from outside: `busy` needs every
/// verification slot held for the 10 s queue wait, which no response within the size cap takes
/// to verify; `internal` needs a closed verification pool, a panicking verification, or IdP
/// metadata without a signing certificate, which samlgate refuses to load.
#[tokio::test]
async fn every_sign_in_failure_kind_is_logged_with_its_reason() {
    let other_idp = TestIdp::generate(IDP_ENTITY);
    let mut log = Log::begin().await;
    let (idp, up, gw) = minted_gateway(&format!(
        "{HIGH_RATE_LIMITS}[headers]\nuser_attribute = \"uid\"\n"
    ))
    .await;

    for case in edited_response_cases() {
        post_failure_case(&mut log, &idp, &gw, case).await;
    }

    // The rest, each built by hand.
    let c = client();
    let (req_id, relay) = begin_login(&c, &gw, "/").await;
    let valid = || ResponseSpec::valid(&idp, &gw.sp_entity_id(), &gw.acs_url(), Some(&req_id));
    // (None of these consumes the pending login, until the forged one.)
    let good = mint::mint_b64(&idp, &valid());
    // Another browser (no login cookie) with this RelayState.
    let r = post_acs(&client(), &gw, &good, Some(&relay)).await;
    assert_eq!(r.status(), 403);
    expect_failure(
        &log,
        &LoginError::WrongBrowser {
            login_cookie: false,
        },
    )
    .await;
    let r = post_acs(&c, &gw, "not base64 at all!", Some(&relay)).await;
    assert_eq!(r.status(), 400);
    expect_failure(
        &log,
        &LoginError::Malformed("SAMLResponse is not valid base64"),
    )
    .await;
    let doctype = mint::b64(&format!("<!DOCTYPE x>{}", mint::mint(&idp, &valid())));
    assert_eq!(
        post_acs(&c, &gw, &doctype, Some(&relay)).await.status(),
        400
    );
    expect_failure(&log, &LoginError::Prefilter(PrefilterError::Doctype)).await;
    let huge = "A".repeat(600 * 1024);
    assert_eq!(post_acs(&c, &gw, &huge, Some(&relay)).await.status(), 413);
    // The POST body's cap: room for base64 and form encoding around the response's own.
    let limit = gw.settings.saml.max_response_bytes * 2 + 8192;
    expect_failure(&log, &LoginError::BodyTooLarge { limit }).await;
    let forged = mint::mint_b64(&other_idp, &valid());
    assert_eq!(post_acs(&c, &gw, &forged, Some(&relay)).await.status(), 400);
    let forged_signature = map_samael_error(SamaelError::FailedToValidateSignature);
    expect_failure(&log, &forged_signature).await;
    // That pending login is used up now.
    assert_eq!(post_acs(&c, &gw, &good, Some(&relay)).await.status(), 400);
    expect_failure(
        &log,
        &LoginError::UnknownRequest {
            got: req_id.clone(),
        },
    )
    .await;

    // An assertion id that signed someone in, in a new response to a new request.
    sign_in(&mut log, &idp, &gw, "alice").await;
    let used = log.event("login_success", |_| true).await["assertion_id"]
        .as_str()
        .unwrap()
        .to_string();
    let c = client();
    let (req_id, relay) = begin_login(&c, &gw, "/").await;
    let mut spec = ResponseSpec::valid(&idp, &gw.sp_entity_id(), &gw.acs_url(), Some(&req_id));
    spec.assertion_id = used.clone();
    let replayed = mint::mint_b64(&idp, &spec);
    assert_eq!(
        post_acs(&c, &gw, &replayed, Some(&relay)).await.status(),
        400
    );
    expect_failure(&log, &LoginError::Replay(used)).await;

    // A Subject without a NameID (the IdP signs the assertion without it).
    let c = client();
    let (req_id, relay_no_name) = begin_login(&c, &gw, "/").await;
    let spec = ResponseSpec::valid(&idp, &gw.sp_entity_id(), &gw.acs_url(), Some(&req_id));
    let unsigned = mint::assertion_xml(&idp, &spec, true);
    let (start, end) = mint::xml::find_element(&unsigned, "NameID", 0).unwrap();
    let assertion = mint::sign_first_template(&idp, &mint::xml::splice(&unsigned, start, end, ""));
    let no_name = mint::b64(&mint::response_around(&idp, &spec, &assertion));
    let r = post_acs(&c, &gw, &no_name, Some(&relay_no_name)).await;
    assert_eq!(r.status(), 400);
    expect_failure(&log, &LoginError::NoNameId).await;

    for s in [
        forged,
        doctype,
        good,
        relay,
        replayed,
        relay_no_name,
        no_name,
    ] {
        log.keep_secret(s);
    }
    assert_eq!(up.count(), 0, "nothing reached the upstream");
    log.assert_no_secrets();
}

/// The kinds behind settings stricter than the defaults: `saml.require_signed_response` and
/// `saml.authn_context_class_ref`.
#[tokio::test]
async fn sign_in_failures_under_stricter_settings_are_logged_with_their_reason() {
    const MFA: &str = "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract";
    let mut log = Log::begin().await;
    let idp = TestIdp::generate(IDP_ENTITY);
    let up = start_upstream().await;
    let opts = Options {
        saml_toml: format!("require_signed_response = true\nauthn_context_class_ref = \"{MFA}\"\n"),
        extra_toml: HIGH_RATE_LIMITS.into(),
        ..Options::default()
    };
    let gw = start_gateway(&up.url(), &idp.metadata_xml(IDP_SSO), opts).await;
    let cases = [
        FailureCase {
            edit: |s| s.sign_response = false,
            expected: |_, _| LoginError::ResponseNotSigned,
        },
        FailureCase {
            edit: |_| {},
            expected: |s, _| LoginError::AuthnContext {
                required: MFA.into(),
                got: vec![s.authn_context_class_ref.clone()],
            },
        },
    ];
    for case in cases {
        post_failure_case(&mut log, &idp, &gw, case).await;
    }
    assert_eq!(up.count(), 0, "nothing reached the upstream");
    log.assert_no_secrets();
}

/// With an SP key and `saml.require_encryption`: a plaintext assertion, and an
/// `EncryptedAssertion` for another SP's key.
#[tokio::test]
async fn an_encrypted_sign_in_failure_is_logged_with_its_reason() {
    let mut log = Log::begin().await;
    let idp = TestIdp::generate(IDP_ENTITY);
    let other_sp = encrypt::SpKeys::generate("another SP");
    let sp = encrypt::SpKeys::generate("samlgate audit test SP");
    let up = start_upstream().await;
    let opts = Options {
        saml_toml: "require_encryption = true\n".into(),
        sp_key: Some((sp.key_pem.clone(), sp.cert_pem.clone())),
        extra_toml: HIGH_RATE_LIMITS.into(),
        ..Options::default()
    };
    let gw = start_gateway(&up.url(), &idp.metadata_xml(IDP_SSO), opts).await;
    assert_eq!(post_shape_a(&mut log, &idp, &gw, None).await, 400);
    expect_failure(&log, &LoginError::EncryptionRequired).await;
    assert_eq!(
        post_shape_a(&mut log, &idp, &gw, Some(&other_sp)).await,
        400
    );
    let expected = LoginError::Decryption(format!(
        "EncryptedAssertion: {}",
        DecryptError::KeyTransport
    ));
    expect_failure(&log, &expected).await;
    assert_eq!(up.count(), 0, "nothing reached the upstream");
    log.assert_no_secrets();
}

/// A new sign-in answered by an unsigned Response around a signed Assertion, encrypted to
/// `encrypt_to` or left in plaintext; its secrets kept. Returns the status.
async fn post_shape_a(
    log: &mut Log,
    idp: &TestIdp,
    gw: &TestGateway,
    encrypt_to: Option<&encrypt::SpKeys>,
) -> u16 {
    let c = client();
    let (req_id, relay) = begin_login(&c, gw, "/").await;
    let mut spec = ResponseSpec::valid(idp, &gw.sp_entity_id(), &gw.acs_url(), Some(&req_id));
    spec.sign_response = false;
    let xml = match encrypt_to {
        None => mint::mint(idp, &spec),
        Some(sp) => {
            let assertion = mint::assertion_text(idp, &spec);
            let encrypted = encrypt::encrypt(&assertion, &sp.public(), encrypt::Enc::default());
            mint::response_around(idp, &spec, &encrypted.encrypted_assertion())
        }
    };
    let b64 = mint::b64(&xml);
    let status = post_acs(&c, gw, &b64, Some(&relay)).await.status();
    log.keep_secret(b64);
    log.keep_secret(relay);
    status.as_u16()
}

/// A sign-in POST whose body trickles in past its deadline (3 × `header_read_timeout`): 408,
/// and `body_timeout` in the audit line.
#[tokio::test]
async fn a_trickled_acs_body_is_logged_as_body_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let log = Log::begin().await;
    let (_idp, up, gw) = minted_gateway("[server]\nheader_read_timeout_secs = 1\n").await;
    let (mut rd, mut wr) = tokio::net::TcpStream::connect(gw.addr)
        .await
        .unwrap()
        .into_split();
    wr.write_all(
        b"POST /saml/acs HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\
          Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 600000\r\n\r\nSAMLResponse=",
    )
    .await
    .unwrap();
    // One byte every 200 ms: each read makes progress, only the whole-body deadline ends it.
    let trickle = tokio::spawn(async move {
        for _ in 0..300 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr.write_all(b"A").await.is_err() {
                break;
            }
        }
    });
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), rd.read_to_end(&mut answer))
        .await
        .expect("the gateway gives up on the body")
        .unwrap();
    trickle.abort();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let after = gw.settings.server.header_read_timeout * 3;
    expect_failure(&log, &LoginError::BodyTimeout { after }).await;
    assert_eq!(up.count(), 0, "nothing reached the upstream");
    log.assert_no_secrets();
}

/// A new sign-in answered by a valid response `case` edits: refused with the status and the
/// audit line of the error `case` expects. The response and RelayState are kept as secrets.
async fn post_failure_case(log: &mut Log, idp: &TestIdp, gw: &TestGateway, case: FailureCase) {
    let c = client();
    let (req_id, relay) = begin_login(&c, gw, "/").await;
    let mut spec = ResponseSpec::valid(idp, &gw.sp_entity_id(), &gw.acs_url(), Some(&req_id));
    (case.edit)(&mut spec);
    let expected = (case.expected)(&spec, gw);
    let b64 = mint::mint_b64(idp, &spec);
    let r = post_acs(&c, gw, &b64, Some(&relay)).await;
    assert_eq!(r.status(), expected.status(), "{}", expected.kind());
    log.keep_secret(b64);
    log.keep_secret(relay);
    expect_failure(log, &expected).await;
}

/// The one `login_failure` line of `expected`'s kind carries exactly its reason.
async fn expect_failure(log: &Log, expected: &LoginError) {
    let kind = expected.kind();
    let line = log.event("login_failure", |l| l["kind"] == kind).await;
    assert_eq!(line["reason"], expected.reason(), "{kind}: {line}");
    assert!(line["elapsed_us"].is_u64(), "{line}");
    client_is_loopback(&line);
}

#[tokio::test]
async fn an_idp_initiated_response_is_logged_as_such() {
    let mut log = Log::begin().await;
    let idp = TestIdp::generate(IDP_ENTITY);
    let _up = start_upstream().await;
    let opts = Options {
        saml_toml: "allow_idp_initiated = true\n".into(),
        ..Options::default()
    };
    let gw = start_gateway(&_up.url(), &idp.metadata_xml(IDP_SSO), opts).await;
    let spec = ResponseSpec::valid(&idp, &gw.sp_entity_id(), &gw.acs_url(), None);
    let b64 = mint::mint_b64(&idp, &spec);
    let r = post_acs(&client(), &gw, &b64, None).await;
    assert_eq!(r.status(), 303);
    log.keep_secret(b64);
    log.keep_cookie(&session_cookie(&r).unwrap());
    let line = log.event("idp_initiated_response", |_| true).await;
    assert_eq!(line["landing"], "/");
    client_is_loopback(&line);
    let ok = log.event("login_success", |_| true).await;
    assert_eq!(ok["idp_initiated"], true);
    log.assert_no_secrets();
}

// ---- access decisions ---------------------------------------------------------------------------

#[tokio::test]
async fn access_denied_by_authz_and_by_a_rule() {
    const NOT_AUDITOR: &str = "not a member of any allowed group (auditors)";
    let mut log = Log::begin().await;
    let (idp, up, gw) = minted_gateway(
        "[authz]\nallowed_groups = [\"auditors\"]\n\
         [[access.rules]]\nname = \"internal\"\npath_prefix = \"/internal/\"\naction = \"deny\"\n",
    )
    .await;
    let (bob, _) = sign_in(&mut log, &idp, &gw, "bob").await;
    let (ivan, _) = sign_in(&mut log, &idp, &gw, "ivan").await;

    // Signed-in denials are never summarised: each one, whoever and wherever from (here two
    // users behind one address, and one of them twice), keeps its own line with user and path.
    for (c, user, path) in [
        (&bob, "bob", "/reports"),
        (&ivan, "ivan", "/reports/2026"),
        (&bob, "bob", "/reports/q3"),
    ] {
        let r = c.get(gw.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 403, "{user} {path}");
        let line = log
            .event("access_denied", |l| l["user"] == user && l["path"] == path)
            .await;
        assert_eq!(line["reason"], NOT_AUDITOR, "{line}");
        assert!(line["via"].is_null(), "{line}");
        assert!(line["suppressed"].is_null(), "{line}");
        client_is_loopback(&line);
    }

    let r = client().get(gw.url("/internal/x")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let rule = log
        .event("access_denied", |l| l["reason"] == "deny rule")
        .await;
    assert_eq!(rule["rule"], "internal");
    assert_eq!(rule["path"], "/internal/x");
    assert!(rule["user"].is_null(), "no user for a deny rule: {rule}");
    client_is_loopback(&rule);

    // A deny rule needs no session, so anyone can repeat it: the same client's second one in
    // this interval is counted, not written (summaries are tested with the floods below); its
    // 403 still stands.
    let r = client().get(gw.url("/internal/y")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(log.events("access_denied").len(), 4, "{}", log.text());
    gw.gateway
        .flush_log_summaries(Instant::now() + samlgate::log_throttle::INTERVAL);
    let summary = log
        .event("access_denied", |l| l["suppressed"].is_u64())
        .await;
    assert_eq!(summary["suppressed"], 1, "{summary}");
    assert_eq!(summary["reason"], "deny rule", "{summary}");
    assert_eq!(up.count(), 0, "nothing reached the upstream");
    log.assert_no_secrets();
}

#[tokio::test]
async fn forward_auth_denial_names_the_via() {
    let mut log = Log::begin().await;
    let (idp, _up, gw) = minted_gateway(
        "[authz]\nallowed_groups = [\"auditors\"]\n[forward_auth]\nenabled = true\n",
    )
    .await;
    let (c, _) = sign_in(&mut log, &idp, &gw, "carol").await;
    let r = c.get(gw.url("/saml/auth")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let line = log.event("access_denied", |_| true).await;
    assert_eq!(line["via"], "forward_auth");
    assert_eq!(line["user"], "carol");
    assert_eq!(
        line["reason"],
        "not a member of any allowed group (auditors)"
    );
    // Without a trusted proxy's description, the check is about `/`.
    assert_eq!(line["path"], "/");
    client_is_loopback(&line);
    log.assert_no_secrets();
}

/// The refusals decided before any session is looked at, each with its exact reason.
#[tokio::test]
async fn refusals_before_dispatch_name_their_reason() {
    let log = Log::begin().await;
    let (_idp, up, gw) = minted_gateway(
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n[forward_auth]\nenabled = true\n",
    )
    .await;

    let r = client()
        .get(gw.url("/saml/login?rd=https://evil.test/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let line = log.event("login_refused", |_| true).await;
    assert_eq!(line["reason"], "rd is not a local path");
    assert_eq!(line["rd"], "https://evil.test/");
    client_is_loopback(&line);

    let answer = raw_exchange(
        &gw,
        "CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    let line = log.event("request_refused", |_| true).await;
    assert_eq!(line["method"], "CONNECT");
    assert_eq!(line["request_target"], "example.test:443");
    assert_eq!(line["reason"], TargetRefusal::Connect.reason(), "{line}");
    client_is_loopback(&line);

    let answer = raw_exchange(&gw, "GET /a/../saml/metadata HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let line = log.event("path_refused", |_| true).await;
    assert_eq!(line["path"], "/a/../saml/metadata");
    assert_eq!(line["reason"], TargetRefusal::DotSegment.reason(), "{line}");
    client_is_loopback(&line);

    let r = client()
        .get(gw.url("/saml/auth"))
        .header("x-forwarded-uri", "/a")
        .header("x-original-uri", "/b")
        .send()
        .await
        .unwrap();
    // 403, not 400: nginx's auth_request would turn a 400 into a 500.
    assert_eq!(r.status(), 403);
    let line = log.event("forward_auth_refused", |_| true).await;
    assert_eq!(
        line["reason"],
        OriginalError::Conflict("x-original-uri").to_string(),
        "{line}"
    );
    client_is_loopback(&line);
    assert_eq!(up.count(), 0, "nothing reached the upstream");
    log.assert_no_secrets();
}

/// One request on a fresh connection, written as is (no client normalises it).
async fn raw_exchange(gw: &TestGateway, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

// ---- floods: rate limits and throttled lines ------------------------------------------------------

/// A client flooding the sign-in start gets one `rate_limited` line and one 429 access line
/// per interval; the rest are counted and reported in one summary line each. The 302s before
/// the limit (not refusals) and the upstream's own 4xx keep their line per request.
#[tokio::test]
async fn a_flood_of_refusals_is_logged_once_then_summarised() {
    let mut log = Log::begin().await;
    // Each request without a session also spends an auth failure: that budget is raised out
    // of the way, so the flood meets the sign-in limit alone.
    let (idp, _up, gw) = minted_gateway("[rate_limits]\nauth_failures_burst = 1000\n").await;
    let (c, _) = sign_in(&mut log, &idp, &gw, "dave").await;
    let (mut started, mut refused) = (1, 0); // the sign-in above started one
    for _ in 0..40 {
        match get_accepting(&client(), &gw.url("/flood"), HTML)
            .await
            .status()
            .as_u16()
        {
            302 => started += 1,
            429 => refused += 1,
            s => panic!("status {s}"),
        }
    }
    assert!(
        refused >= 20,
        "the sign-in budget (burst 10) ran out: {refused}"
    );
    for _ in 0..15 {
        let r = get_accepting(&client(), &gw.url("/api"), "application/json").await;
        assert_eq!(r.status(), 401);
    }
    // The upstream's own 400 (a /ws request that is no WebSocket), signed in: no refusal.
    for _ in 0..3 {
        assert_eq!(c.get(gw.url("/ws")).send().await.unwrap().status(), 400);
    }

    let limited = log.event("rate_limited", |_| true).await;
    assert_eq!(limited["limit"], "sign_in");
    assert!(
        limited["retry_after_secs"].as_u64().unwrap() >= 1,
        "{limited}"
    );
    client_is_loopback(&limited);
    assert_eq!(log.access(429).len(), 1, "{}", log.text());
    assert_eq!(log.access(401).len(), 1, "{}", log.text());
    assert_eq!(
        log.access(302).len(),
        started,
        "every sign-in start keeps its line"
    );
    assert_eq!(log.events("login_started").len(), started);
    assert_eq!(
        log.access(400).len(),
        3,
        "the upstream's 4xx are not summarised"
    );

    // The interval ends (the server does this every 10 s): one summary per kind.
    gw.gateway
        .flush_log_summaries(Instant::now() + samlgate::log_throttle::INTERVAL);
    let summary = log
        .event("rate_limited", |l| l["suppressed"].is_u64())
        .await;
    assert_eq!(summary["suppressed"], refused - 1, "{summary}");
    assert_eq!(summary["reason"], "sign_in");
    assert_eq!(summary["interval_secs"], 10);
    client_is_loopback(&summary);
    let access: Vec<Value> = log
        .lines()
        .into_iter()
        .filter(|l| l["target"] == "samlgate::access" && l["suppressed"].is_u64())
        .collect();
    assert_eq!(access.len(), 2, "{access:?}");
    for (status, suppressed) in [(429, refused - 1), (401, 14)] {
        let s = access.iter().find(|l| l["status"] == status).unwrap();
        assert_eq!(s["suppressed"], suppressed, "{s}");
        client_is_loopback(s);
    }
    // A new interval: the next refusal is written again.
    let r = get_accepting(&client(), &gw.url("/flood"), HTML).await;
    assert_eq!(r.status(), 429);
    assert_eq!(log.access(429).len(), 2);
    log.assert_no_secrets();
}

#[tokio::test]
async fn acs_and_forward_auth_limits_are_logged_with_their_limit() {
    let log = Log::begin().await;
    let (_idp, up, gw) = minted_gateway(
        "[rate_limits]\nacs_burst = 1\nacs_per_minute = 1\nauth_failures_burst = 1\nauth_failures_per_minute = 1\n\
         [forward_auth]\nenabled = true\n",
    )
    .await;
    for _ in 0..2 {
        post_acs(&client(), &gw, "bm90IGEgcmVzcG9uc2U=", None).await;
        client().get(gw.url("/saml/auth")).send().await.unwrap();
    }
    for limit in ["acs", "auth_failure"] {
        let line = log.event("rate_limited", |l| l["limit"] == limit).await;
        client_is_loopback(&line);
    }
    assert_eq!(up.count(), 0);
    log.assert_no_secrets();
}

// ---- Single Logout ---------------------------------------------------------------------------------

async fn slo_gateway() -> (TestIdp, Upstream, TestGateway) {
    let idp = TestIdp::generate(IDP_ENTITY);
    let md = idp.metadata_xml(IDP_SSO).replacen(
        "<md:NameIDFormat>",
        &format!(
            r#"<md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{IDP_SLO}"/><md:NameIDFormat>"#
        ),
        1,
    );
    // The SP's signing pair: the test helper's self-signed RSA-2048 (certgen is a dev tool).
    let sp = TestIdp::generate("samlgate audit test SP");
    let up = start_upstream().await;
    let gw = start_gateway(
        &up.url(),
        &md,
        Options {
            sp_key: Some((sp.key_pem, sp.cert_pem)),
            extra_toml: HIGH_RATE_LIMITS.into(),
            ..Options::default()
        },
    )
    .await;
    (idp, up, gw)
}

async fn get_slo(gw: &TestGateway, query: &str) -> u16 {
    let url = format!("{}?{query}", gw.url("/saml/slo"));
    client().get(url).send().await.unwrap().status().as_u16()
}

/// SP-initiated: `slo_started` when the signed LogoutRequest leaves, `slo_complete` or
/// `slo_partial` on the IdP's answer. IdP-initiated: `slo` with the sessions it ended.
/// And `slo_refused` for an unsigned request.
#[tokio::test]
async fn single_logout_in_both_directions() {
    let mut log = Log::begin().await;
    let (idp, _up, gw) = slo_gateway().await;

    let mut request_ids = Vec::new();
    for user in ["erin", "frank"] {
        let (c, _) = sign_in(&mut log, &idp, &gw, user).await;
        let token = logout_csrf_token(&c, &gw.url("/saml/logout")).await;
        log.keep_secret(token.clone());
        let r = c
            .post(gw.url("/saml/logout"))
            .form(&[("csrf", token.as_str())])
            .send()
            .await
            .unwrap();
        // 200: a page that moves on to the IdP (a redirect after the form's POST would be
        // blocked by the form page's CSP form-action).
        assert_eq!(r.status(), 200);
        assert!(
            r.text().await.unwrap().contains("SAMLRequest="),
            "the page carries the LogoutRequest"
        );
        let started = log.event("slo_started", |l| l["user"] == user).await;
        request_ids.push(started["request_id"].as_str().unwrap().to_string());
    }
    let answer = |irt: &str, status: &str| {
        let xml = logout_response(
            &mint::new_id(),
            IDP_ENTITY,
            &gw.url("/saml/slo"),
            irt,
            status,
        );
        redirect_query("SAMLResponse", &xml, Some(&idp.key_pem))
    };
    assert_eq!(get_slo(&gw, &answer(&request_ids[0], SUCCESS)).await, 200);
    let complete = log.event("slo_complete", |_| true).await;
    assert_eq!(complete["request_id"], request_ids[0].as_str());
    client_is_loopback(&complete);
    assert_eq!(get_slo(&gw, &answer(&request_ids[1], RESPONDER)).await, 200);
    let partial = log.event("slo_partial", |_| true).await;
    assert_eq!(partial["request_id"], request_ids[1].as_str());
    assert_eq!(partial["status"], RESPONDER);
    client_is_loopback(&partial);

    // IdP-initiated, for a signed-in user.
    sign_in(&mut log, &idp, &gw, "grace").await;
    let id = mint::new_id();
    let xml = logout_request(&id, IDP_ENTITY, &gw.url("/saml/slo"), "grace");
    assert_eq!(
        get_slo(
            &gw,
            &redirect_query("SAMLRequest", &xml, Some(&idp.key_pem))
        )
        .await,
        303
    );
    let slo = log.event("slo", |_| true).await;
    assert_eq!(slo["name_id"], "grace");
    assert_eq!(slo["sessions_ended"], 1);
    assert_eq!(slo["request_id"], id.as_str());
    client_is_loopback(&slo);

    // Unsigned, while signatures are required.
    let xml = logout_request(&mint::new_id(), IDP_ENTITY, &gw.url("/saml/slo"), "grace");
    assert_eq!(
        get_slo(&gw, &redirect_query("SAMLRequest", &xml, None)).await,
        400
    );
    let refused = log.event("slo_refused", |_| true).await;
    assert_eq!(refused["reason"], "message is not signed", "{refused}");
    client_is_loopback(&refused);
    log.assert_no_secrets();
}

// ---- reload and tunnels ---------------------------------------------------------------------------

#[tokio::test]
async fn config_reload_applied_and_refused() {
    let log = Log::begin().await;
    let (_idp, _up, gw) = minted_gateway("").await;
    let path = gw.dir.path().join("samlgate.toml");
    let original = std::fs::read_to_string(&path).unwrap();

    std::fs::write(
        &path,
        format!("{original}\n[authz]\nallowed_users = [\"alice\"]\n"),
    )
    .unwrap();
    samlgate::app::reload_config(&path, &gw.gateway);
    let applied = log.event("reload", |_| true).await;
    assert_eq!(applied["config"], path.display().to_string());
    assert_eq!(applied["level"], "INFO");

    std::fs::write(&path, format!("{original}\n[authz]\nallowed_users = 7\n")).unwrap();
    samlgate::app::reload_config(&path, &gw.gateway);
    let refused = log.event("reload_refused", |_| true).await;
    assert!(
        refused["error"].as_str().unwrap().contains("allowed_users"),
        "{refused}"
    );
    assert_eq!(refused["level"], "ERROR");
    log.assert_no_secrets();
}

#[tokio::test]
async fn a_tunnel_closed_with_its_session_is_logged() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut log = Log::begin().await;
    let (idp, _up, gw) = minted_gateway("[proxy]\nupgrade_session_check_secs = 1\n").await;
    let (c, cookie) = sign_in(&mut log, &idp, &gw, "heidi").await;
    let mut req = format!("ws://{}/ws", gw.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);

    let token = logout_csrf_token(&c, &gw.url("/saml/logout")).await;
    log.keep_secret(token.clone());
    let r = c
        .post(gw.url("/saml/logout"))
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The gateway closes the tunnel: the stream ends.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the tunnel was closed");
    let line = log.event("tunnel_closed", |_| true).await;
    assert_eq!(line["user"], "heidi");
    assert_eq!(line["reason"], "the session ended");
    log.assert_no_secrets();
}
