//! Malformed and ambiguous input through the running gateway (in-process, minted responses,
//! raw bytes on the wire): request bodies that never finish, sign-out bodies too large or cut
//! off, request targets that are not paths, encoded spellings of the gateway's own paths, dot
//! segments with an upstream base path, conflicting `Host` headers, client-sent routing
//! overrides, and a CORS "preflight" carrying an HTTP/2 body. None of them reaches the
//! upstream in a form the access decision did not see.

#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/mint.rs"]
mod mint;
#[path = "support/signin.rs"]
mod signin;

use std::time::Duration;

use gateway::*;
use mint::TestIdp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bound on waiting for an answer that, without the fix under test, would never come: a
/// hang becomes a failure instead of a stuck test run. Far above every deadline configured
/// here, so it never decides a passing run.
const NO_ANSWER: Duration = Duration::from_secs(60);

/// Writes `request` as raw bytes and returns everything the gateway answers until it closes.
async fn raw(gw: &TestGateway, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(NO_ANSWER, s.read_to_end(&mut out))
        .await
        .expect("the gateway answers")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw answer.
fn status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

/// A GET of `target` with `headers` (each ending in CRLF), closing after the answer.
fn get(target: &str, headers: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nAccept: application/json\r\n{headers}Connection: close\r\n\r\n"
    )
}

/// The raw answer to a GET of `target` with `headers`, and its status.
async fn get_answer(gw: &TestGateway, target: &str, headers: &str) -> (u16, String) {
    let answer = raw(gw, &get(target, headers)).await;
    (status(&answer), answer)
}

/// A gateway in front of `upstream` with one signed-in browser: the gateway and the `Host`
/// and `Cookie` header lines that carry its session.
async fn signed_in_at(upstream: &str, idp: &TestIdp) -> (TestGateway, String) {
    let gw = start_gateway(
        upstream,
        &idp.metadata_xml("https://idp.test/sso"),
        Options::default(),
    )
    .await;
    let (_c, cookie) = signin::sign_in_as(idp, &gw, "/", |_| {}).await;
    (gw, format!("Host: 127.0.0.1\r\nCookie: {cookie}\r\n"))
}

/// [`signed_in_at`] an echo upstream with no base path.
async fn signed_in() -> (Upstream, TestGateway, String) {
    let idp = TestIdp::generate("https://idp.test/metadata");
    let up = start_upstream().await;
    let (gw, session) = signed_in_at(&up.url(), &idp).await;
    (up, gw, session)
}

#[tokio::test]
async fn a_trickled_acs_body_is_cut_off_with_408() {
    // Body deadline: 3 × header_read_timeout.
    let (_idp, _up, gw) = signin::start_minted("[server]\nheader_read_timeout_secs = 1\n").await;
    let s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    wr.write_all(
        b"POST /saml/acs HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\
          Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 600000\r\n\r\nSAMLResponse=",
    )
    .await
    .unwrap();
    // One byte every 200 ms: each read makes progress, only a whole-body deadline ends it.
    let trickle = tokio::spawn(async move {
        for _ in 0..300 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr.write_all(b"A").await.is_err() {
                break;
            }
        }
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(NO_ANSWER, rd.read_to_end(&mut out))
        .await
        .expect("the gateway gives up on the body");
    trickle.abort();
    let answer = String::from_utf8_lossy(&out);
    assert_eq!(status(&answer), 408, "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
}

#[tokio::test]
async fn sign_out_bodies_too_large_or_cut_off_are_told_apart() {
    let (_up, gw, session) = signed_in().await;
    let post = |length: usize, body: &str| {
        format!(
            "POST /saml/logout HTTP/1.1\r\n{session}Accept: application/json\r\n\
             Content-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {length}\r\nConnection: close\r\n\r\n{body}"
        )
    };
    let big = format!("csrf={}", "x".repeat(10_000));
    let answer = raw(&gw, &post(big.len(), &big)).await;
    assert_eq!(status(&answer), 413, "{answer}");

    // Announces 100 bytes, sends 10, then ends its side of the connection.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(post(100, "csrf=short").as_bytes())
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(NO_ANSWER, s.read_to_end(&mut out))
        .await
        .expect("the gateway answers")
        .unwrap();
    let answer = String::from_utf8_lossy(&out);
    assert_eq!(status(&answer), 400, "{answer}");

    // The session survived both: neither was a sign-out.
    let (code, answer) = get_answer(&gw, "/app", &session).await;
    assert_eq!(code, 200, "{answer}");
}

#[tokio::test]
async fn targets_that_are_not_paths_are_never_forwarded() {
    let (up, gw, session) = signed_in().await;
    let before = up.count();
    let answer = raw(
        &gw,
        &format!("CONNECT 127.0.0.1:22 HTTP/1.1\r\n{session}\r\n"),
    )
    .await;
    assert_eq!(status(&answer), 405, "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nallow: get, head, post, put, patch, delete, options\r\n"),
        "{answer}"
    );
    let answer = raw(
        &gw,
        &format!("OPTIONS * HTTP/1.1\r\n{session}Connection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status(&answer), 400, "{answer}");
    assert_eq!(up.count(), before, "neither reached the upstream");
}

#[tokio::test]
async fn encoded_spellings_of_gateway_paths_are_not_forwarded() {
    let (up, gw, session) = signed_in().await;
    let before = up.count();
    for target in [
        "/%73aml/x",
        "/saml%2Fx",
        "/saml%2fmetadata",
        "/%2573aml/login",
    ] {
        let (code, answer) = get_answer(&gw, target, &session).await;
        assert_eq!(code, 400, "{target}: {answer}");
        assert!(answer.contains("ambiguous_path"), "{target}: {answer}");
    }
    assert_eq!(up.count(), before, "none reached the upstream");
    // An ordinary encoded path still does.
    let (code, answer) = get_answer(&gw, "/files/a%20b", &session).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(up.last().path, "/files/a%20b");
}

#[tokio::test]
async fn dot_segments_never_leave_the_upstream_base_path() {
    let idp = TestIdp::generate("https://idp.test/metadata");
    let up = start_upstream().await;
    let (gw, session) = signed_in_at(&format!("{}/app/", up.url()), &idp).await;
    let (code, answer) = get_answer(&gw, "/page", &session).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(up.last().path, "/app/page");
    let before = up.count();
    for target in [
        "/../admin",
        "/%2e%2e/admin",
        "/%2E%2e/admin",
        "/x/..%2f..%2fadmin",
        "/./admin",
        "/x/..;/..;/admin",
    ] {
        let (code, answer) = get_answer(&gw, target, &session).await;
        assert_eq!(code, 400, "{target}: {answer}");
    }
    assert_eq!(up.count(), before, "none reached the upstream");
}

#[tokio::test]
async fn conflicting_hosts_are_refused() {
    let (up, gw, session) = signed_in().await;
    let before = up.count();
    for (target, extra) in [
        ("/app", "Host: evil.test\r\n"),
        ("http://evil.test/app", ""),
    ] {
        let (code, answer) = get_answer(&gw, target, &format!("{session}{extra}")).await;
        assert_eq!(code, 400, "{target} {extra:?}: {answer}");
    }
    assert_eq!(up.count(), before, "neither reached the upstream");
    // The same host both ways is fine.
    let (code, answer) = get_answer(&gw, "http://127.0.0.1/app", &session).await;
    assert_eq!(code, 200, "{answer}");
}

#[tokio::test]
async fn routing_override_headers_never_reach_the_upstream() {
    let (up, gw, session) = signed_in().await;
    let overrides = "X-Original-URL: /admin\r\nX_Rewrite_Url: /admin\r\n\
                     X-HTTP-Method-Override: DELETE\r\nX-Forwarded-Prefix: /other\r\n";
    let (code, answer) =
        get_answer(&gw, "/app", &format!("{session}{overrides}X-App: kept\r\n")).await;
    assert_eq!(code, 200, "{answer}");
    let seen = up.last();
    for name in [
        "x-original-url",
        "x-rewrite-url",
        "x-http-method-override",
        "x-forwarded-prefix",
    ] {
        assert!(
            seen.any_variant(name).is_empty(),
            "{name} reached the upstream"
        );
    }
    assert_eq!(seen.one("x-app").as_deref(), Some("kept"));
}

#[tokio::test]
async fn an_http2_options_with_a_body_is_no_preflight() {
    let (_idp, up, gw) = signin::start_minted("[access]\nallow_cors_preflight = true\n").await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .build()
        .unwrap();
    let preflight = |body: Option<reqwest::Body>| {
        let rb = h2
            .request(reqwest::Method::OPTIONS, gw.url("/api/items"))
            .header("origin", "https://other.example")
            .header("access-control-request-method", "POST")
            .header("accept", "application/json");
        match body {
            Some(b) => rb.body(b),
            None => rb,
        }
    };
    let r = preflight(None).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200, "a real preflight passes anonymously");
    let before = up.count();
    // A streamed body: DATA frames, and no content-length header announcing them.
    let chunks: Vec<Result<&'static str, std::io::Error>> = vec![Ok("smuggled "), Ok("body")];
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let r = preflight(Some(body)).send().await.unwrap();
    assert_eq!(r.status(), 401, "a body makes it an ordinary request");
    assert_eq!(up.count(), before, "the body never reached the upstream");
}
