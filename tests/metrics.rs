//! The admin listener and the metrics it serves, end to end over real sockets: requests,
//! sign-ins (succeeded and refused), sign-out and upstream failures move exactly the series
//! they should; `/metrics` exists only on the admin port; the admin port stops with the
//! gateway.

#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/mint.rs"]
mod mint;
#[path = "support/signin.rs"]
mod signin;

use std::collections::HashMap;
use std::net::SocketAddr;

use chrono::{Duration as ChronoDuration, Utc};
use gateway::*;
use mint::{ResponseSpec, TestIdp};

const IDP_ENTITY: &str = "https://idp.test/metadata";
const IDP_SSO: &str = "https://idp.test/sso";
const JSON: &str = "application/json";

/// Scrapes the admin listener: (status, content type, body).
async fn scrape(admin: SocketAddr, path: &str) -> (u16, String, String) {
    let r = client()
        .get(format!("http://{admin}{path}"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ctype, r.text().await.unwrap())
}

/// `series{labels}` → value from OpenMetrics text.
fn samples(text: &str) -> HashMap<String, f64> {
    assert!(
        text.ends_with("# EOF\n"),
        "not a complete exposition:\n{text}"
    );
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_string(), value.parse().unwrap())
        })
        .collect()
}

async fn metrics(admin: SocketAddr) -> HashMap<String, f64> {
    let (status, ctype, body) = scrape(admin, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        ctype,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    samples(&body)
}

fn requests(route: &str, status: &str) -> String {
    format!(r#"samlgate_http_requests_total{{route="{route}",status="{status}"}}"#)
}

/// Signs a browser in through the whole flow; returns the client holding the session.
async fn sign_in(idp: &TestIdp, gw: &TestGateway, path: &str) -> reqwest::Client {
    signin::sign_in_as(idp, gw, path, |_| {}).await.0
}

#[tokio::test]
async fn requests_and_sign_ins_move_exactly_their_series() {
    let idp = TestIdp::generate(IDP_ENTITY);
    let up = start_upstream().await;
    let (mut gw, admin) =
        start_gateway_with_admin(&up.url(), &idp.metadata_xml(IDP_SSO), Options::default()).await;

    let before = metrics(admin).await;
    assert_eq!(before["samlgate_sessions_active"], 0.0);
    assert_eq!(
        before[r#"samlgate_sign_ins_total{outcome="success",reason="none"}"#],
        0.0
    );
    assert!(!before.contains_key(&requests("protected", "200")));

    // A successful sign-in: GET /app (302 to the IdP), then the ACS post (303).
    let signed_in = sign_in(&idp, &gw, "/app").await;
    // A proxied request.
    let r = signed_in.get(gw.url("/app")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // A 401 for a client without a session.
    let anonymous = client();
    let r = get_accepting(&anonymous, &gw.url("/api/items"), JSON).await;
    assert_eq!(r.status(), 401);
    // A sign-in started and never finished.
    let _ = begin_login(&client(), &gw, "/abandoned").await;
    // A refused sign-in: the response expired long ago.
    let late = client();
    let (req_id, relay) = begin_login(&late, &gw, "/late").await;
    let mut spec = ResponseSpec::valid(&idp, &gw.sp_entity_id(), &gw.acs_url(), Some(&req_id));
    let past = Utc::now() - ChronoDuration::hours(2);
    spec.issue_instant = past;
    spec.not_before = past - ChronoDuration::minutes(5);
    spec.not_on_or_after = past + ChronoDuration::minutes(5);
    spec.subject_not_on_or_after = past + ChronoDuration::minutes(5);
    let r = late
        .post(gw.acs_url())
        .header("accept", JSON)
        .form(&[
            ("SAMLResponse", mint::mint_b64(&idp, &spec)),
            ("RelayState", relay),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let refused = r.text().await.unwrap();
    assert!(refused.contains("\"expired\""), "{refused}");

    // `/metrics` on the gateway's own port is an ordinary protected path: challenged without
    // a session, forwarded to the upstream with one, never the gateway's metrics.
    let r = get_accepting(&anonymous, &gw.url("/metrics"), JSON).await;
    assert_eq!(r.status(), 401);
    assert!(!r.text().await.unwrap().contains("samlgate_"));
    let r = signed_in.get(gw.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(body.starts_with("upstream page"), "{body}");
    assert!(!body.contains("samlgate_http_requests"));
    assert_eq!(up.last().path, "/metrics");
    assert_eq!(up.count(), 2);

    let m = metrics(admin).await;
    let expect = [
        (requests("protected", "200"), 2.0),
        (requests("protected", "302"), 3.0),
        (requests("protected", "401"), 2.0),
        (requests("acs", "303"), 1.0),
        (requests("acs", "400"), 1.0),
        (
            r#"samlgate_http_request_duration_seconds_count{route="protected"}"#.into(),
            7.0,
        ),
        (
            r#"samlgate_http_request_duration_seconds_count{route="acs"}"#.into(),
            2.0,
        ),
        (
            r#"samlgate_sign_ins_total{outcome="success",reason="none"}"#.into(),
            1.0,
        ),
        (
            r#"samlgate_sign_ins_total{outcome="failure",reason="expired"}"#.into(),
            1.0,
        ),
        ("samlgate_sessions_active".into(), 1.0),
        ("samlgate_sign_outs_total".into(), 0.0),
        (
            r#"samlgate_upstream_errors_total{kind="connect"}"#.into(),
            0.0,
        ),
        (
            format!(
                r#"samlgate_build_info{{version="{}"}}"#,
                env!("CARGO_PKG_VERSION")
            ),
            1.0,
        ),
    ];
    for (series, want) in &expect {
        assert_eq!(m.get(series), Some(want), "{series}");
    }
    let requests_total: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("samlgate_http_requests_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(requests_total, 9.0, "no other request was counted");
    assert_eq!(
        m["samlgate_pending_logins"], 1.0,
        "only the abandoned sign-in is pending; the finished and refused ones were used"
    );
    assert_eq!(
        m["samlgate_replay_cache_entries"], 1.0,
        "the accepted assertion's id"
    );

    // Sign-out through the confirm page.
    let token = logout_csrf_token(&signed_in, &gw.url("/saml/logout")).await;
    let r = signed_in
        .post(gw.url("/saml/logout"))
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m = metrics(admin).await;
    assert_eq!(m["samlgate_sign_outs_total"], 1.0);
    assert_eq!(m["samlgate_sessions_active"], 0.0);
    assert_eq!(m[&requests("logout", "200")], 2.0);

    // The admin port serves nothing else, and stops with the gateway.
    let (status, _, body) = scrape(admin, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    for path in ["/", "/metrics/extra", "/saml/login", "/app", "/readyz"] {
        assert_eq!(scrape(admin, path).await.0, 404, "{path}");
    }
    let r = client()
        .post(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);

    gw.shutdown().await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(admin).await.is_err(),
        "the admin listener is closed after shutdown"
    );
}

#[tokio::test]
async fn upstream_failures_count_by_kind() {
    let idp = TestIdp::generate(IDP_ENTITY);
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let (gw, admin) =
        start_gateway_with_admin(&dead_url, &idp.metadata_xml(IDP_SSO), Options::default()).await;
    let c = sign_in(&idp, &gw, "/").await;
    for _ in 0..2 {
        assert_eq!(c.get(gw.url("/x")).send().await.unwrap().status(), 502);
    }
    let m = metrics(admin).await;
    assert_eq!(m[r#"samlgate_upstream_errors_total{kind="connect"}"#], 2.0);
    assert_eq!(m[r#"samlgate_upstream_errors_total{kind="timeout"}"#], 0.0);
    assert_eq!(m[&requests("protected", "502")], 2.0);

    let up = start_upstream().await;
    let opts = Options {
        extra_toml: "[proxy]\nupstream_timeout_secs = 1\n".into(),
        ..Options::default()
    };
    let (gw, admin) = start_gateway_with_admin(&up.url(), &idp.metadata_xml(IDP_SSO), opts).await;
    let c = sign_in(&idp, &gw, "/").await;
    assert_eq!(
        c.get(gw.url("/slow/3000")).send().await.unwrap().status(),
        504
    );
    let m = metrics(admin).await;
    assert_eq!(m[r#"samlgate_upstream_errors_total{kind="timeout"}"#], 1.0);
    assert_eq!(m[r#"samlgate_upstream_errors_total{kind="connect"}"#], 0.0);
    assert_eq!(m[&requests("protected", "504")], 1.0);
}
