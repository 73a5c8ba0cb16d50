//! The gateway end to end over real sockets, with responses minted in-process: sign-in,
//! the authenticated proxy (identity headers, spoofing, cookies), 302 versus 401, sign-out,
//! WebSocket and streamed uploads through the proxy, upstream failures, HTTP/2 over TLS, and
//! graceful shutdown.

#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/mint.rs"]
mod mint;
#[path = "support/signin.rs"]
mod signin;

use gateway::*;
use mint::{ResponseSpec, TestIdp};

const IDP_ENTITY: &str = "https://idp.test/metadata";
const IDP_SSO: &str = "https://idp.test/sso";

async fn setup(opts: Options) -> (TestIdp, Upstream, TestGateway) {
    let idp = TestIdp::generate(IDP_ENTITY);
    let up = start_upstream().await;
    let gw = start_gateway(&up.url(), &idp.metadata_xml(IDP_SSO), opts).await;
    (idp, up, gw)
}

/// Signs a browser in through the whole flow; returns the client holding the session.
async fn sign_in(idp: &TestIdp, gw: &TestGateway, path: &str) -> reqwest::Client {
    sign_in_with_cookie(idp, gw, path).await.0
}

/// Like [`sign_in`], also returning the `name=value` of the session cookie.
async fn sign_in_with_cookie(
    idp: &TestIdp,
    gw: &TestGateway,
    path: &str,
) -> (reqwest::Client, String) {
    signin::sign_in_as(idp, gw, path, |_| {}).await
}

#[tokio::test]
async fn browser_signs_in_and_upstream_sees_identity() {
    let (idp, up, gw) = setup(Options::default()).await;
    let c = client();
    let r = get_accepting(&c, &gw.url("/dashboard?tab=2"), HTML).await;
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with(IDP_SSO), "{loc}");
    let set_cookie = set_cookies(&r);
    assert!(
        set_cookie
            .iter()
            .any(|c| c.starts_with("samlgate_login=") && c.contains("HttpOnly")),
        "{set_cookie:?}"
    );
    let (req_id, relay) = parse_idp_redirect(&loc);
    assert!(
        req_id.len() >= 33,
        "request ids carry at least 128 random bits: {req_id}"
    );
    assert!(
        !relay.contains('/'),
        "RelayState is an opaque token, not a path: {relay}"
    );
    assert_eq!(up.count(), 0, "nothing reached the upstream before sign-in");

    let spec = ResponseSpec::valid(&idp, &gw.sp_entity_id(), &gw.acs_url(), Some(&req_id));
    let r = post_acs(&c, &gw, &mint::mint_b64(&idp, &spec), Some(&relay)).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/dashboard?tab=2");
    let session_cookie = set_cookies(&r)
        .into_iter()
        .find(|c| c.starts_with("samlgate_session="))
        .expect("session cookie set");
    assert!(
        session_cookie.contains("HttpOnly") && session_cookie.contains("SameSite=Lax"),
        "{session_cookie}"
    );

    let session = session_cookie.split(';').next().unwrap().to_string();
    // An explicit Cookie header replaces the jar's, so send the session alongside the app's.
    let r = client()
        .get(gw.url("/dashboard?tab=2"))
        .header("accept", HTML)
        .header("cookie", format!("app=1; {session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().starts_with("upstream page"));
    let seen = up.last();
    assert_eq!(seen.path, "/dashboard?tab=2");
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
        Some("Alice Example")
    );
    assert_eq!(seen.one("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen.one("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        seen.one("x-forwarded-host").as_deref(),
        Some(gw.addr.to_string().as_str())
    );
    assert_eq!(
        seen.one("host").as_deref(),
        Some(gw.addr.to_string().as_str()),
        "client Host passed through"
    );
    let cookies = seen.all("cookie").join("; ");
    assert!(
        cookies.contains("app=1"),
        "the app's own cookies pass: {cookies}"
    );
    assert!(
        !cookies.contains("samlgate_"),
        "gateway cookies never reach the upstream: {cookies}"
    );
}

#[tokio::test]
async fn api_clients_get_401_json_and_browsers_302() {
    let (_idp, up, gw) = setup(Options::default()).await;
    let c = client();
    for (method, accept, extra) in [
        ("GET", "application/json", None),
        ("GET", "*/*", None),
        ("POST", HTML, None),
        ("GET", HTML, Some(("x-requested-with", "XMLHttpRequest"))),
        ("GET", HTML, Some(("sec-fetch-mode", "cors"))),
    ] {
        let mut rb = c
            .request(method.parse().unwrap(), gw.url("/api/items"))
            .header("accept", accept);
        if let Some((k, v)) = extra {
            rb = rb.header(k, v);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), 401, "{method} {accept} {extra:?}");
        assert!(r.headers().get("location").is_none());
        assert_eq!(r.headers()["content-type"], "application/json");
        let body = r.text().await.unwrap();
        assert!(
            body.contains("\"login_url\":\"/saml/login?rd=%2Fapi%2Fitems\""),
            "{body}"
        );
    }
    let r = c
        .head(gw.url("/x"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let (idp, up, gw) = setup(Options::default()).await;
    let c = sign_in(&idp, &gw, "/").await;
    let raw_variants = [
        "X-Forwarded-User",
        "x-forwarded-user",
        "X_Forwarded_User",
        "x-forwarded_user",
        "X-FORWARDED-USER",
    ];
    let mut rb = c.get(gw.url("/")).header("accept", HTML);
    for v in raw_variants {
        rb = rb.header(v, "mallory");
    }
    for v in [
        "X-Forwarded-Groups",
        "x_forwarded_groups",
        "X-Forwarded-Email",
        "X_FORWARDED_EMAIL",
        "X-Forwarded-Preferred-Username",
        "x_forwarded_preferred_username",
    ] {
        rb = rb.header(v, "evil");
    }
    let r = rb.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(
        seen.any_variant("x-forwarded-user"),
        vec![("x-forwarded-user".into(), "alice".into())]
    );
    assert_eq!(
        seen.any_variant("x-forwarded-groups"),
        vec![("x-forwarded-groups".into(), "analysts,admins".into())]
    );
    assert_eq!(
        seen.any_variant("x-forwarded-email"),
        vec![("x-forwarded-email".into(), "alice@example.com".into())]
    );
    assert_eq!(seen.any_variant("x-forwarded-preferred-username").len(), 1);
    assert!(
        seen.headers
            .iter()
            .all(|(_, v)| v != "mallory" && v != "evil"),
        "{:?}",
        seen.headers
    );
}

#[tokio::test]
async fn custom_header_names_like_grafana_are_injected_and_stripped() {
    // A space separator needs an encoding that escapes spaces inside names (Grafana's
    // headers_encoded decodes quoted-printable); ASCII names pass unchanged.
    let opts = Options { extra_toml: "[headers]\nuser = \"X-WEBAUTH-USER\"\ngroups = \"X-WEBAUTH-GROUPS\"\ngroups_separator = \" \"\nencoding = \"quoted-printable\"\n".into(), ..Options::default() };
    let (idp, up, gw) = setup(opts).await;
    let c = sign_in(&idp, &gw, "/").await;
    c.get(gw.url("/"))
        .header("x_webauth_user", "admin")
        .header("X-Forwarded-User", "kept-not-ours")
        .send()
        .await
        .unwrap();
    let seen = up.last();
    assert_eq!(
        seen.any_variant("x-webauth-user"),
        vec![("x-webauth-user".into(), "alice".into())]
    );
    assert_eq!(
        seen.one("x-webauth-groups").as_deref(),
        Some("analysts admins")
    );
    // With its own names configured, samlgate no longer sends X-Forwarded-User, but a
    // client's copy is still stripped: it is another gateway's identity header (oauth2-proxy's),
    // in the default foreign list (tests/foreign_headers.rs covers emptying that list).
    assert_eq!(
        seen.one("x-forwarded-user"),
        None,
        "a client's X-Forwarded-User is stripped as a foreign identity header"
    );
}

#[tokio::test]
async fn allowed_groups_deny_with_a_page_naming_what_is_missing() {
    let opts = Options {
        extra_toml: "[authz]\nallowed_groups = [\"finance\"]\n".into(),
        ..Options::default()
    };
    let (idp, up, gw) = setup(opts).await;
    let c = sign_in(&idp, &gw, "/").await;
    let r = get_accepting(&c, &gw.url("/"), HTML).await;
    assert_eq!(r.status(), 403);
    let body = r.text().await.unwrap();
    assert!(body.contains("finance") && body.contains("alice"), "{body}");
    let r = get_accepting(&c, &gw.url("/api"), "application/json").await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("\"error\":\"forbidden\""));
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn forged_or_tampered_session_cookies_are_refused() {
    let (idp, up, gw) = setup(Options::default()).await;
    let c = sign_in(&idp, &gw, "/").await;
    let r = c.get(gw.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let plain = client();
    for forged in ["samlgate_session=abc", "samlgate_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "samlgate_session="] {
        let r = plain.get(gw.url("/")).header("cookie", forged).header("accept", "application/json").send().await.unwrap();
        assert_eq!(r.status(), 401, "{forged}");
    }
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn logout_needs_csrf_token_and_ends_the_session() {
    let (idp, up, gw) = setup(Options::default()).await;
    let c = sign_in(&idp, &gw, "/").await;
    let token = logout_csrf_token(&c, &gw.url("/saml/logout")).await;
    let r = c
        .post(gw.url("/saml/logout"))
        .form(&[("csrf", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        403,
        "cross-site sign-out without the token is refused"
    );
    assert_eq!(
        c.get(gw.url("/")).send().await.unwrap().status(),
        200,
        "session still alive"
    );
    let r = c
        .post(gw.url("/saml/logout"))
        .header("accept", HTML)
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        set_cookies(&r).iter().any(|c| c.contains("Max-Age=0")),
        "the session cookie is cleared"
    );
    assert!(r.text().await.unwrap().contains("signed out"));
    let r = get_accepting(&c, &gw.url("/"), "application/json").await;
    assert_eq!(r.status(), 401, "session ended server-side");
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn health_metadata_and_unknown_gateway_paths() {
    let (_idp, up, gw) = setup(Options::default()).await;
    let c = client();
    assert_eq!(
        c.get(gw.url("/healthz")).send().await.unwrap().status(),
        200
    );
    assert_eq!(c.get(gw.url("/readyz")).send().await.unwrap().status(), 200);
    let r = c.get(gw.url("/saml/metadata")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let md = r.text().await.unwrap();
    assert!(md.contains(&format!("entityID=\"{}\"", gw.sp_entity_id())));
    assert!(md.contains(&format!("Location=\"{}\"", gw.acs_url())));
    assert_eq!(
        c.get(gw.url("/saml/nope")).send().await.unwrap().status(),
        404
    );
    assert_eq!(up.count(), 0, "gateway endpoints are never forwarded");
}

#[tokio::test]
async fn explicit_login_refuses_open_redirects() {
    let (_idp, _up, gw) = setup(Options::default()).await;
    let c = client();
    let r = c
        .get(gw.url("/saml/login?rd=/reports%3Fx%3D1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    for bad in [
        "https://evil.example/",
        "//evil.example",
        "/%2F%2Fevil.example",
        "/\\evil.example",
        "/%5Cevil.example",
    ] {
        let url = format!("{}?rd={}", gw.url("/saml/login"), percent_encode(bad));
        let r = c.get(url).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn websocket_echo_through_the_proxy() {
    let (idp, up, gw) = setup(Options::default()).await;
    let (_c, cookie) = sign_in_with_cookie(&idp, &gw, "/").await;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let mut req = format!("ws://{}/ws", gw.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    req.headers_mut()
        .insert("x-forwarded-user", "mallory".parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket upgrade through the gateway");
    assert_eq!(resp.status(), 101);
    for i in 0..5 {
        ws.send(Message::Text(format!("hello {i}"))).await.unwrap();
        let echoed = ws.next().await.unwrap().unwrap();
        assert_eq!(echoed, Message::Text(format!("hello {i}")));
    }
    ws.close(None).await.unwrap();
    let seen = up.last();
    assert_eq!(seen.path, "/ws");
    assert_eq!(seen.one("x-forwarded-user").as_deref(), Some("alice"));
}

#[tokio::test]
async fn unauthenticated_websocket_is_refused() {
    let (_idp, up, gw) = setup(Options::default()).await;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let req = format!("ws://{}/ws", gw.addr)
        .into_client_request()
        .unwrap();
    let err = tokio_tungstenite::connect_async(req)
        .await
        .expect_err("no session, no upgrade");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 401),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(up.count(), 0);
}

/// Resident set size of this test process (gateway and upstream run in-process).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test]
async fn large_upload_is_streamed_not_buffered() {
    let (idp, _up, gw) = setup(Options::default()).await;
    let (_c, cookie) = sign_in_with_cookie(&idp, &gw, "/").await;
    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 1024; // 1 GiB
    let before = rss_kib();
    let chunk = bytes::Bytes::from(vec![b'x'; CHUNK]);
    let stream = futures_util::stream::iter(
        (0..CHUNKS).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    let started = std::time::Instant::now();
    let r = client()
        .post(gw.url("/upload"))
        .header("cookie", cookie)
        .header("accept", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        format!("received {} bytes", CHUNK * CHUNKS)
    );
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    println!(
        "1 GiB upload through the gateway in {:?}; RSS grew {grown_mib} MiB",
        started.elapsed()
    );
    assert!(
        grown_mib < 128,
        "a 1 GiB upload must not be buffered (RSS grew {grown_mib} MiB)"
    );
}

#[tokio::test]
async fn upstream_down_gives_502_and_slow_upstream_504() {
    let idp = TestIdp::generate(IDP_ENTITY);
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let gw = start_gateway(&dead_url, &idp.metadata_xml(IDP_SSO), Options::default()).await;
    let (c, _) = sign_in_with_cookie(&idp, &gw, "/").await;
    let r = get_accepting(&c, &gw.url("/"), HTML).await;
    assert_eq!(r.status(), 502);
    assert!(r.text().await.unwrap().contains("cannot be reached"));
    let r = get_accepting(&c, &gw.url("/"), "application/json").await;
    assert_eq!(r.status(), 502);
    assert!(r.text().await.unwrap().contains("upstream_unavailable"));

    let opts = Options {
        extra_toml: "[proxy]\nupstream_timeout_secs = 1\n".into(),
        ..Options::default()
    };
    let (idp, _up, gw) = setup(opts).await;
    let c = sign_in(&idp, &gw, "/").await;
    let r = get_accepting(&c, &gw.url("/slow/5000"), HTML).await;
    assert_eq!(r.status(), 504);
    assert!(r.text().await.unwrap().contains("did not answer in time"));
    let r = c.get(gw.url("/slow/100")).send().await.unwrap();
    assert_eq!(r.status(), 200, "the gateway keeps serving");
}

#[tokio::test]
async fn http2_client_over_tls_reaches_http1_upstream() {
    let opts = Options {
        tls: Some(self_signed_tls()),
        ..Options::default()
    };
    let (idp, up, gw) = setup(opts).await;
    assert!(gw.base.starts_with("https://"));
    let c = client();
    let r = get_accepting(&c, &gw.url("/h2"), HTML).await;
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN negotiates h2");
    assert_eq!(r.status(), 302);
    let login_cookie = set_cookies(&r);
    assert!(
        login_cookie
            .iter()
            .any(|c| c.contains("SameSite=None") && c.contains("Secure")),
        "cross-site POST needs SameSite=None; Secure over https: {login_cookie:?}"
    );
    let (req_id, relay) = parse_idp_redirect(r.headers()["location"].to_str().unwrap());
    let spec = ResponseSpec::valid(&idp, &gw.sp_entity_id(), &gw.acs_url(), Some(&req_id));
    let r = post_acs(&c, &gw, &mint::mint_b64(&idp, &spec), Some(&relay)).await;
    assert_eq!(r.status(), 303);
    assert!(r
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|v| v.to_str().unwrap().contains("Secure")));
    let session = session_cookie(&r).expect("session cookie");
    // HTTP/2 clients may send one Cookie header per cookie; the upstream gets one joined header.
    let r = client()
        .get(gw.url("/h2?x=1"))
        .header("cookie", "a=1")
        .header("cookie", session)
        .header("cookie", "b=2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(seen.version, "HTTP/1.1");
    assert_eq!(seen.path, "/h2?x=1");
    assert_eq!(
        seen.one("host").as_deref(),
        Some(gw.addr.to_string().as_str())
    );
    assert_eq!(seen.one("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(seen.one("x-forwarded-user").as_deref(), Some("alice"));
    let cookie = seen.one("cookie").unwrap_or_default();
    assert!(
        cookie.contains("a=1") && cookie.contains("b=2") && !cookie.contains("samlgate"),
        "{cookie}"
    );
}

#[tokio::test]
async fn graceful_shutdown_drains_in_flight_requests() {
    let (idp, _up, mut gw) = setup(Options::default()).await;
    let (_c, cookie) = sign_in_with_cookie(&idp, &gw, "/").await;
    let url = gw.url("/slow/800");
    let in_flight = tokio::spawn(async move {
        client()
            .get(url)
            .header("cookie", cookie)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let server = gw.shutdown();
    let status = in_flight
        .await
        .unwrap()
        .expect("in-flight request completes during shutdown");
    assert_eq!(status, 200);
    tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .expect("server stops after draining")
        .unwrap();
    assert!(
        client().get(gw.url("/healthz")).send().await.is_err(),
        "no new connections after shutdown"
    );
}

#[tokio::test]
async fn https_upstream_with_a_private_ca() {
    let (cert, key) = self_signed_tls();
    let up = start_tls_upstream(&cert, &key).await;
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = ca_dir.path().join("upstream-ca.pem");
    std::fs::write(&ca, &cert).unwrap();
    let idp = TestIdp::generate(IDP_ENTITY);
    let opts = Options {
        extra_toml: format!("[proxy]\nupstream_ca_file = \"{}\"\n", ca.display()),
        ..Options::default()
    };
    let gw = start_gateway(&up.https_url(), &idp.metadata_xml(IDP_SSO), opts).await;
    let c = sign_in(&idp, &gw, "/").await;
    let r = c.get(gw.url("/tls")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().one("x-forwarded-user").as_deref(), Some("alice"));

    // Without the CA the same upstream is refused: certificates are verified.
    let gw2 = start_gateway(
        &up.https_url(),
        &idp.metadata_xml(IDP_SSO),
        Options::default(),
    )
    .await;
    let c2 = sign_in(&idp, &gw2, "/").await;
    assert_eq!(c2.get(gw2.url("/tls")).send().await.unwrap().status(), 502);
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn hundreds_of_groups_live_server_side() {
    let (idp, up, gw) = setup(Options::default()).await;
    let c = client();
    let (req_id, relay) = begin_login(&c, &gw, "/").await;
    let mut spec = ResponseSpec::valid(&idp, &gw.sp_entity_id(), &gw.acs_url(), Some(&req_id));
    let groups: Vec<String> = (0..400).map(|i| format!("team-{i:03}")).collect();
    spec.attributes.retain(|(name, _)| name != "groups");
    spec.attributes.push(("groups".into(), groups.clone()));
    let r = post_acs(&c, &gw, &mint::mint_b64(&idp, &spec), Some(&relay)).await;
    assert_eq!(r.status(), 303);
    let set_cookie = set_cookies(&r);
    let session = set_cookie
        .iter()
        .find(|c| c.starts_with("samlgate_session="))
        .unwrap();
    assert!(
        session.len() < 200,
        "the cookie holds only the sealed id: {} bytes",
        session.len()
    );
    assert_eq!(c.get(gw.url("/")).send().await.unwrap().status(), 200);
    assert_eq!(
        up.last().one("x-forwarded-groups").unwrap(),
        groups.join(",")
    );
}

/// The `Set-Cookie` value among `cookies` that sets (or clears) `name`.
fn cookie_named<'a>(cookies: &'a [String], name: &str) -> Option<&'a str> {
    cookies
        .iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(String::as_str)
}

#[tokio::test]
async fn the_acs_answer_clears_the_login_cookie() {
    let (idp, _up, gw) = setup(Options::default()).await;
    let c = client();
    let (loc, started) = login_redirect(&c, &gw.url("/one")).await;
    let first = cookie_named(&started, "samlgate_login")
        .expect("the sign-in start sets the login cookie")
        .to_string();
    let (req_id, relay) = parse_idp_redirect(&loc);
    let spec = ResponseSpec::valid(&idp, &gw.sp_entity_id(), &gw.acs_url(), Some(&req_id));
    let r = post_acs(&c, &gw, &mint::mint_b64(&idp, &spec), Some(&relay)).await;
    assert_eq!(r.status(), 303);
    let answered = set_cookies(&r);
    assert!(
        cookie_named(&answered, "samlgate_session").is_some(),
        "{answered:?}"
    );
    let cleared = cookie_named(&answered, "samlgate_login")
        .unwrap_or_else(|| panic!("the ACS answer clears the login cookie: {answered:?}"));
    assert!(
        cleared.starts_with("samlgate_login=;")
            && cleared.contains("Max-Age=0")
            && cleared.contains("Path=/"),
        "{cleared}"
    );
    // The browser no longer holds it: the next sign-in binds a fresh browser id.
    assert_eq!(c.get(gw.url("/one")).send().await.unwrap().status(), 200);
    let (_, restarted) = login_redirect(&c, &gw.url("/saml/login?rd=/two")).await;
    let second = cookie_named(&restarted, "samlgate_login").expect("a new login cookie");
    assert_ne!(
        first.split(';').next(),
        second.split(';').next(),
        "the spent login cookie was not sent back, so its id was not reused"
    );
}

#[tokio::test]
async fn over_https_the_cookies_default_to_host_prefixed_names() {
    let opts = Options {
        tls: Some(self_signed_tls()),
        ..Options::default()
    };
    let (idp, up, gw) = setup(opts).await;
    assert_eq!(gw.settings.session.cookie_name, "__Host-samlgate_session");
    let c = client();
    let (loc, started) = login_redirect(&c, &gw.url("/p")).await;
    let host_rules = |set: &str| {
        set.contains("; Secure") && set.contains("; Path=/") && !set.contains("Domain=")
    };
    let login = cookie_named(&started, "__Host-samlgate_login")
        .unwrap_or_else(|| panic!("the login cookie is __Host-: {started:?}"));
    assert!(
        host_rules(login) && login.contains("SameSite=None"),
        "{login}"
    );
    assert!(
        cookie_named(&started, "samlgate_login").is_none(),
        "{started:?}"
    );

    let (req_id, relay) = parse_idp_redirect(&loc);
    let spec = ResponseSpec::valid(&idp, &gw.sp_entity_id(), &gw.acs_url(), Some(&req_id));
    let r = post_acs(&c, &gw, &mint::mint_b64(&idp, &spec), Some(&relay)).await;
    assert_eq!(r.status(), 303);
    let answered = set_cookies(&r);
    let session_set = cookie_named(&answered, "__Host-samlgate_session")
        .unwrap_or_else(|| panic!("the session cookie is __Host-: {answered:?}"));
    assert!(host_rules(session_set), "{session_set}");
    // A clearing Set-Cookie must meet the prefix rules too, or browsers ignore it.
    let cleared = cookie_named(&answered, "__Host-samlgate_login")
        .unwrap_or_else(|| panic!("the login cookie is cleared: {answered:?}"));
    assert!(
        host_rules(cleared) && cleared.contains("Max-Age=0"),
        "{cleared}"
    );

    // The session works under its name; none of samlgate's names, prefixed or not, reach the
    // application, its own cookies do.
    let session = session_cookie(&r).expect("session cookie");
    let value = session.split_once('=').map(|(_, v)| v).unwrap_or("");
    let r = client()
        .get(gw.url("/app"))
        .header(
            "cookie",
            format!("a=1; {session}; samlgate_session={value}; samlgate_login=x; b=2"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(seen.one("x-forwarded-user").as_deref(), Some("alice"));
    assert_eq!(seen.one("cookie").as_deref(), Some("a=1; b=2"));
    // The same sealed value under the plain name is no session: only the __Host- cookie counts.
    let seen_before = up.count();
    let r = client()
        .get(gw.url("/app"))
        .header("cookie", format!("samlgate_session={value}"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(up.count(), seen_before, "nothing reached the upstream");

    // Sign-out clears the __Host- session cookie (again by the prefix rules).
    let token = logout_csrf_token(&c, &gw.url("/saml/logout")).await;
    let r = c
        .post(gw.url("/saml/logout"))
        .header("accept", HTML)
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out = set_cookies(&r);
    let cleared = cookie_named(&out, "__Host-samlgate_session")
        .unwrap_or_else(|| panic!("sign-out clears the session cookie: {out:?}"));
    assert!(
        host_rules(cleared) && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
}
