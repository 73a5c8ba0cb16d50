//! The audit line of each way a response fails to answer this browser's pending sign-in,
//! through a running gateway: `login_failure` with the failure's `kind` and its own exact
//! `reason` (InResponseTo missing, naming another request, differing between the Response and
//! the SubjectConfirmationData, no pending sign-in, a sign-in bound to another browser).
//!
//! This file installs its own process-wide log subscriber that records every line, so it
//! holds a single test.

#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/log_capture.rs"]
mod log_capture;
#[path = "support/mint.rs"]
mod mint;

use std::time::{Duration, Instant};

use gateway::*;
use log_capture::Captured;
use mint::{ResponseSpec, TestIdp};

impl Captured {
    /// The `login_failure` lines containing `needle`, waiting up to 5 s for one to appear.
    async fn failures_with(&self, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found: Vec<String> = self
                .text_from(0)
                .lines()
                .filter(|l| l.contains("event=\"login_failure\"") && l.contains(needle))
                .map(str::to_string)
                .collect();
            if !found.is_empty() || Instant::now() > deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn post(c: &reqwest::Client, gw: &TestGateway, xml: &str, relay: Option<&str>) -> u16 {
    let b64 = mint::b64(xml);
    let mut form = vec![("SAMLResponse", b64.as_str())];
    form.extend(relay.map(|r| ("RelayState", r)));
    c.post(gw.acs_url())
        .header("accept", "application/json")
        .form(&form)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn each_in_response_to_failure_is_logged_with_its_own_reason() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_target(true)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let idp = TestIdp::generate("https://idp.test/metadata");
    let up = start_upstream().await;
    let gw = start_gateway(
        &up.url(),
        &idp.metadata_xml("https://idp.test/sso"),
        Options {
            extra_toml: HIGH_RATE_LIMITS.into(),
            ..Options::default()
        },
    )
    .await;
    let spec = |req: &str| ResponseSpec::valid(&idp, &gw.sp_entity_id(), &gw.acs_url(), Some(req));
    let mut expected = Vec::new();

    // The Response names the pending request, its SubjectConfirmationData another one.
    let c = client();
    let (req, relay) = begin_login(&c, &gw, "/app").await;
    let other = mint::new_id();
    let mut s = spec(&req);
    s.subject_in_response_to = Some(other.clone());
    assert_eq!(
        post(&c, &gw, &mint::mint(&idp, &s), Some(&relay)).await,
        400
    );
    expected.push((
        "in_response_to",
        format!(
            "Response InResponseTo {req} differs from SubjectConfirmationData InResponseTo {other}"
        ),
    ));

    // Only the SubjectConfirmationData names a request, and not the pending one.
    let (_req, relay) = begin_login(&c, &gw, "/app").await;
    let other = mint::new_id();
    let mut s = spec(&other);
    s.in_response_to = None;
    assert_eq!(
        post(&c, &gw, &mint::mint(&idp, &s), Some(&relay)).await,
        400
    );
    expected.push((
        "in_response_to",
        format!(
            "SubjectConfirmationData InResponseTo {other} is not this browser's pending request"
        ),
    ));

    // Nothing names a request, posted against a pending sign-in.
    let (_req, relay) = begin_login(&c, &gw, "/app").await;
    let mut s = spec("_unused");
    s.in_response_to = None;
    s.subject_in_response_to = None;
    assert_eq!(
        post(&c, &gw, &mint::mint(&idp, &s), Some(&relay)).await,
        400
    );
    expected.push((
        "in_response_to",
        "the response answers no request (no InResponseTo on the Response or the SubjectConfirmationData), but was posted against a pending sign-in".into(),
    ));

    // A sign-in bound to another browser: one without a login cookie, one with its own.
    let (req, relay) = begin_login(&c, &gw, "/app").await;
    let xml = mint::mint(&idp, &spec(&req));
    assert_eq!(post(&client(), &gw, &xml, Some(&relay)).await, 403);
    expected.push((
        "wrong_browser",
        "pending sign-in is bound to another browser: this one sent no valid login cookie".into(),
    ));
    let victim = client();
    begin_login(&victim, &gw, "/app").await;
    assert_eq!(post(&victim, &gw, &xml, Some(&relay)).await, 403);
    expected.push((
        "wrong_browser",
        "pending sign-in is bound to another browser: this one's login cookie is a different one"
            .into(),
    ));

    // No pending sign-in: the response names a request we do not hold; or names none.
    let gone = mint::new_id();
    let mut s = spec(&gone);
    s.in_response_to = None;
    assert_eq!(
        post(&c, &gw, &mint::mint(&idp, &s), Some("nope")).await,
        400
    );
    expected.push((
        "no_pending_login",
        format!("the response answers request {gone}, but no pending sign-in matches the RelayState (none sent, unknown, used or expired)"),
    ));
    let unsolicited = ResponseSpec::valid(&idp, &gw.sp_entity_id(), &gw.acs_url(), None);
    assert_eq!(
        post(&c, &gw, &mint::mint(&idp, &unsolicited), None).await,
        400
    );
    expected.push((
        "no_pending_login",
        "no RelayState and the response answers no request: unsolicited, and saml.allow_idp_initiated is off".into(),
    ));

    for (kind, reason) in &expected {
        let lines = captured.failures_with(reason).await;
        assert_eq!(lines.len(), 1, "{reason}\n{}", captured.text_from(0));
        assert!(lines[0].contains("samlgate::audit"), "{}", lines[0]);
        assert!(
            lines[0].contains(&format!("kind=\"{kind}\"")),
            "{}",
            lines[0]
        );
    }
    // One line per refusal, and none says "InResponseTo None".
    assert_eq!(
        captured
            .text_from(0)
            .matches("event=\"login_failure\"")
            .count(),
        expected.len(),
        "{}",
        captured.text_from(0)
    );
    assert!(!captured.text_from(0).contains("InResponseTo None"));
    assert_eq!(up.count(), 0, "nothing reached the upstream");
}
