//! Per-path rules, trusted proxies and rate limits through the running gateway (in-process,
//! minted responses): anonymous paths reach the upstream without identity, deny rules and
//! group rules hold for signed-in users, traversal and encoding tricks sent as raw bytes never
//! turn a protected path into an anonymous one, `X-Forwarded-For` counts only from trusted
//! peers, and each rate limit answers 429 per client.

#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/mint.rs"]
mod mint;
#[path = "support/signin.rs"]
mod signin;

use gateway::*;
use mint::TestIdp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RULES: &str = r#"
[[access.rules]]
name = "health"
methods = ["GET", "HEAD"]
path_prefix = "/public/"
action = "allow"

[[access.rules]]
name = "admin-off"
path_prefix = "/admin/"
action = "deny"

[[access.rules]]
name = "finance-only"
path_regex = "/reports/[0-9]+"
action = "authenticate"
allowed_groups = ["finance"]
"#;

async fn setup(extra_toml: &str) -> (TestIdp, Upstream, TestGateway) {
    signin::start_minted(extra_toml).await
}

/// Sends `method target` with `extra_headers` as raw bytes (no client-side path
/// normalisation) and returns the whole response.
async fn raw(gw: &TestGateway, method: &str, target: &str, extra_headers: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n{extra_headers}Connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// The status of a raw GET.
async fn raw_status(gw: &TestGateway, target: &str, extra_headers: &str) -> u16 {
    let text = raw(gw, "GET", target, extra_headers).await;
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

#[tokio::test]
async fn anonymous_deny_and_group_rules_in_the_reverse_proxy() {
    let (idp, up, gw) = setup(RULES).await;
    let anon = client();

    // An anonymous path reaches the upstream with no identity, even a spoofed one.
    let r = anon
        .get(gw.url("/public/logo.png"))
        .header("x-forwarded-user", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(seen.path, "/public/logo.png");
    assert!(seen.any_variant("x-forwarded-user").is_empty());
    // The rule names GET and HEAD only.
    let r = anon
        .post(gw.url("/public/form"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Everything else still needs a session; /admin/ is closed to everyone.
    assert_eq!(raw_status(&gw, "/app", "").await, 401);
    assert_eq!(raw_status(&gw, "/admin/users", "").await, 403);
    let (c, _) = signin::sign_in_as(&idp, &gw, "/", |_| {}).await;
    let count = up.count();
    assert_eq!(
        c.get(gw.url("/admin/users")).send().await.unwrap().status(),
        403
    );
    // alice (analysts, admins) is not in finance: the rule's own list replaces [authz].
    let r = c.get(gw.url("/reports/7")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("finance"));
    assert_eq!(
        up.count(),
        count,
        "denied requests never reach the upstream"
    );
    assert_eq!(
        c.get(gw.url("/reports/summary"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // A finance user is let into /reports/7.
    let (f, _) = signin::sign_in_as(&idp, &gw, "/", |spec| {
        spec.name_id = "fred".into();
        spec.attributes
            .retain(|(name, _)| name != "groups" && name != "uid");
        spec.attributes
            .push(("groups".into(), vec!["finance".into()]));
    })
    .await;
    assert_eq!(
        f.get(gw.url("/reports/7")).send().await.unwrap().status(),
        200
    );
    assert_eq!(up.last().one("x-forwarded-user").as_deref(), Some("fred"));
}

#[tokio::test]
async fn traversal_and_encoding_never_open_a_protected_path() {
    let (_idp, up, gw) = setup(RULES).await;
    // Each of these could reach /admin/… or /app at an upstream that normalises paths.
    for target in [
        "/public/../app",
        "/public/%2e%2e/app",
        "/public/..%2fapp",
        "/public%2f..%2fapp",
        "/public/%252e%252e/app",
        "/public/..;/app",
        "/public/.%2E/app",
        "/public\\..\\app",
    ] {
        let status = raw_status(&gw, target, "").await;
        assert!(
            status == 401 || status == 400,
            "{target}: needs sign-in (or is refused), got {status}"
        );
    }
    for target in [
        "/public/../admin/x",
        "//admin/x",
        "/admin%2fx",
        "/admin/./x",
        "/x/../admin/x",
    ] {
        let status = raw_status(&gw, target, "").await;
        assert!(
            status == 403 || status == 400,
            "{target}: the deny rule holds, got {status}"
        );
    }
    assert_eq!(up.count(), 0, "none of them reached the upstream");
}

#[tokio::test]
async fn cors_preflights_pass_only_when_enabled() {
    let (_idp, up, gw) = setup("[access]\nallow_cors_preflight = true\n").await;
    let preflight = "Origin: https://other.example\r\nAccess-Control-Request-Method: POST\r\n";
    let out = raw(&gw, "OPTIONS", "/api/items", preflight).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(up.count(), 1);
    // Without the preflight headers an OPTIONS request is an ordinary protected request.
    let out = raw(&gw, "OPTIONS", "/api/items", "").await;
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");

    let (_idp2, _up2, off) = setup("").await;
    let out = raw(&off, "OPTIONS", "/api/items", preflight).await;
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
}

#[tokio::test]
async fn x_forwarded_for_counts_only_from_trusted_proxies() {
    for (config, sent, want, why) in [
        (
            "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n",
            "203.0.113.9, 127.0.0.1",
            "203.0.113.9",
            "the client address behind the trusted hop",
        ),
        (
            "",
            "203.0.113.9",
            "127.0.0.1",
            "an untrusted peer's claim is replaced by its own address",
        ),
    ] {
        let (idp, up, gw) = setup(config).await;
        let (c, _) = signin::sign_in_as(&idp, &gw, "/", |_| {}).await;
        c.get(gw.url("/x"))
            .header("x-forwarded-for", sent)
            .send()
            .await
            .unwrap();
        assert_eq!(
            up.last().all("x-forwarded-for"),
            vec![want.to_string()],
            "{why}"
        );
    }
}

#[tokio::test]
async fn rotating_ipv6_slash_64s_share_one_budget_once_the_table_fills() {
    // A table of 16 entries; a navigation without a session takes two (its client's
    // auth-failure and sign-in budgets): four /64s fill half of it, after which every new /64
    // of one /48 spends from a single shared budget.
    let limits = "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n[rate_limits]\nsign_in_burst = 1\nsign_in_per_minute = 1\nmax_tracked_clients = 16\n";
    let (_idp, _up, gw) = setup(limits).await;
    let c = client();
    let nav = |who: String| {
        c.get(gw.url("/app"))
            .header("accept", HTML)
            .header("x-forwarded-for", who)
            .send()
    };
    for i in 0..4 {
        let r = nav(format!("2001:db8:9:{i}::1")).await.unwrap();
        assert_eq!(r.status(), 302, "/64 number {i} while the table has room");
    }
    assert_eq!(nav("2001:db8:1:100::1".into()).await.unwrap().status(), 302);
    for i in 0x101..0x140 {
        let r = nav(format!("2001:db8:1:{i:x}::1")).await.unwrap();
        assert_eq!(
            r.status(),
            429,
            "/64 {i:x} of the same /48 shares its budget"
        );
    }
    // Other networks still get in.
    assert_eq!(nav("198.51.100.7".into()).await.unwrap().status(), 302);
    assert_eq!(nav("2001:db8:2::1".into()).await.unwrap().status(), 302);
}

#[tokio::test]
async fn rate_limits_answer_429_per_client() {
    let limits = "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n[rate_limits]\nsign_in_burst = 2\nsign_in_per_minute = 1\nacs_burst = 1\nacs_per_minute = 1\nauth_failures_burst = 3\nauth_failures_per_minute = 1\n";
    let (_idp, _up, gw) = setup(limits).await;
    let c = client();
    // Each navigation without a session also spends an auth failure (three allowed): the
    // sign-in limit is the one the third meets.
    let nav = |who: &'static str| {
        c.get(gw.url("/app"))
            .header("accept", HTML)
            .header("x-forwarded-for", who)
            .send()
    };
    assert_eq!(nav("198.51.100.1").await.unwrap().status(), 302);
    assert_eq!(nav("198.51.100.1").await.unwrap().status(), 302);
    let r = nav("198.51.100.1").await.unwrap();
    assert_eq!(r.status(), 429, "third sign-in start within the burst");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert!(r.text().await.unwrap().contains("<html"));
    // Another client is not affected.
    assert_eq!(nav("198.51.100.2").await.unwrap().status(), 302);

    // ACS: the second post from one client is refused before its body is read.
    let post = |who: &'static str| {
        c.post(gw.acs_url())
            .header("x-forwarded-for", who)
            .header("accept", "application/json")
            .form(&[("SAMLResponse", "bm90IHNhbWw="), ("RelayState", "x")])
            .send()
    };
    assert_eq!(post("198.51.100.3").await.unwrap().status(), 400);
    let r = post("198.51.100.3").await.unwrap();
    assert_eq!(r.status(), 429);
    let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(body["error"], "rate_limited");

    // Failed forward-auth checks.
    let check = |who: &'static str| {
        c.get(gw.url("/saml/auth"))
            .header("x-forwarded-for", who)
            .send()
    };
    for _ in 0..3 {
        assert_eq!(check("198.51.100.4").await.unwrap().status(), 401);
    }
    assert_eq!(check("198.51.100.4").await.unwrap().status(), 429);
    assert_eq!(check("198.51.100.5").await.unwrap().status(), 401);

    // Each refusal is counted by limit; every failed check by result.
    let metrics = gw.gateway.metrics().render().unwrap();
    for series in [
        "samlgate_rate_limited_total{limit=\"sign_in\"} 1",
        "samlgate_rate_limited_total{limit=\"acs\"} 1",
        "samlgate_rate_limited_total{limit=\"auth_failure\"} 1",
        "samlgate_forward_auth_total{result=\"unauthenticated\"} 5",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
}

/// The proxy and forward-auth admit requests through one step, so a request without a valid
/// session spends the client's `auth_failures` budget whichever way it comes: guessing at
/// cookies through the proxy is limited like guessing through `/saml/auth` (before the shared
/// admission, only forward-auth counted).
#[tokio::test]
async fn auth_failures_count_through_the_proxy_and_forward_auth_alike() {
    let limits = "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n[rate_limits]\nauth_failures_burst = 2\nauth_failures_per_minute = 1\n";
    let (_idp, up, gw) = setup(limits).await;
    let c = client();
    let via_proxy = |who: &'static str| {
        c.get(gw.url("/api/items"))
            .header("accept", "application/json")
            // A forged session cookie: its seal does not open.
            .header("cookie", "samlgate_session=forged")
            .header("x-forwarded-for", who)
            .send()
    };
    let via_check = |who: &'static str| {
        c.get(gw.url("/saml/auth"))
            .header("x-forwarded-uri", "/api/items")
            .header("x-forwarded-for", who)
            .send()
    };
    let error = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        (
            status,
            body["error"].as_str().unwrap_or_default().to_string(),
        )
    };
    let unauthenticated = (401, "unauthenticated".to_string());
    let limited = (429, "rate_limited".to_string());

    // Proxy first, then forward-auth: one budget of two.
    assert_eq!(
        error(via_proxy("198.51.100.20").await.unwrap()).await,
        unauthenticated
    );
    assert_eq!(
        error(via_check("198.51.100.20").await.unwrap()).await,
        unauthenticated
    );
    assert_eq!(
        error(via_proxy("198.51.100.20").await.unwrap()).await,
        limited
    );
    assert_eq!(
        error(via_check("198.51.100.20").await.unwrap()).await,
        limited
    );
    // Forward-auth first, then the proxy.
    assert_eq!(
        error(via_check("198.51.100.21").await.unwrap()).await,
        unauthenticated
    );
    assert_eq!(
        error(via_check("198.51.100.21").await.unwrap()).await,
        unauthenticated
    );
    assert_eq!(
        error(via_proxy("198.51.100.21").await.unwrap()).await,
        limited
    );
    // Another client has its own budget.
    assert_eq!(
        error(via_proxy("198.51.100.22").await.unwrap()).await,
        unauthenticated
    );

    // Nothing reached the application, and each 429 was counted under its limit.
    assert_eq!(
        up.count(),
        0,
        "no unauthenticated request reached the upstream"
    );
    let metrics = gw.gateway.metrics().render().unwrap();
    for series in [
        "samlgate_rate_limited_total{limit=\"auth_failure\"} 3",
        "samlgate_forward_auth_total{result=\"unauthenticated\"} 4",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
}

#[tokio::test]
async fn sign_in_never_returns_into_the_gateway() {
    // Behind nginx, `error_page 401 = /saml/login` makes the original URI /saml/login itself.
    let (idp, _up, gw) = setup("[server]\ntrusted_proxies = [\"127.0.0.1\"]\n").await;
    for (url, original) in [
        (gw.url("/saml/login"), Some("/saml/login")),
        (gw.url("/saml/login?rd=%2Fsaml%2Flogout"), None),
        (gw.url("/saml/login?rd=%2Fsaml%2Facs%3Fx%3D1"), None),
    ] {
        let c = client();
        let mut req = c.get(&url).header("accept", HTML);
        if let Some(o) = original {
            req = req.header("x-original-uri", o);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 302, "{url}");
        let (req_id, relay) = parse_idp_redirect(r.headers()["location"].to_str().unwrap());
        let spec =
            mint::ResponseSpec::valid(&idp, &gw.sp_entity_id(), &gw.acs_url(), Some(&req_id));
        let r = post_acs(&c, &gw, &mint::mint_b64(&idp, &spec), Some(&relay)).await;
        assert_eq!(r.status(), 303);
        assert_eq!(
            r.headers()["location"],
            "/",
            "{url} lands on / instead of starting over"
        );
    }
}

#[tokio::test]
async fn an_anonymous_forward_auth_answer_tells_envoy_to_drop_identity_headers() {
    let (_idp, up, gw) = setup(&format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n{RULES}"
    ))
    .await;
    let r = client()
        .get(gw.url("/saml/auth"))
        .header("x-original-uri", "/public/logo.png")
        .header("x-original-method", "GET")
        .header("x-forwarded-user", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-forwarded-user").is_none());
    let removed = envoy_removals(&r);
    assert_eq!(
        removed[..4],
        [
            "x-forwarded-user",
            "x-forwarded-email",
            "x-forwarded-groups",
            "x-forwarded-preferred-username"
        ],
        "our four first"
    );
    // Then other gateways' exact names and the routing overrides, which Envoy must drop too.
    for other in [
        "remote-user",
        "x-remote-user",
        "x-forwarded-login",
        "x-rewrite-url",
    ] {
        assert!(removed.contains(&other.to_string()), "{other}: {removed:?}");
    }
    // Envoy's own form (the original path appended) needs no trust.
    let r = client()
        .get(gw.url("/saml/auth/public/logo.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn forward_auth_with_method_rules_needs_the_original_method() {
    let (_idp, up, gw) = setup(&format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n{RULES}"
    ))
    .await;
    let check = |headers: &[(&'static str, &'static str)]| {
        let mut r = client().get(gw.url("/saml/auth"));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send()
    };
    // nginx's auth_request subrequest is always GET: without X-Original-Method a POST to
    // the GET/HEAD-only public rule would pass as a GET.
    assert_eq!(
        check(&[("x-original-uri", "/public/form")])
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        check(&[
            ("x-original-uri", "/public/form"),
            ("x-original-method", "GET")
        ])
        .await
        .unwrap()
        .status(),
        200
    );
    assert_eq!(
        check(&[
            ("x-original-uri", "/public/form"),
            ("x-original-method", "POST")
        ])
        .await
        .unwrap()
        .status(),
        401
    );
    // Without any method-scoped rule the method does not matter.
    let (_idp2, _up2, plain) = setup(
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n[[access.rules]]\npath_prefix = \"/public/\"\naction = \"allow\"\n",
    )
    .await;
    let r = client()
        .get(plain.url("/saml/auth"))
        .header("x-original-uri", "/public/form")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn a_double_encoded_path_is_refused_where_rules_restrict_paths() {
    let (idp, up, gw) = setup(RULES).await;
    let (c, cookie) = signin::sign_in_as(&idp, &gw, "/", |_| {}).await;
    drop(c);
    let session = format!("Cookie: {cookie}\r\n");
    // An upstream that decodes twice would read /reports/7 (finance only) or /admin/.
    for target in [
        "/x/%252e%252e/reports/7",
        "/x/%2e%2e%252freports/7",
        "/%252e%252e/admin/x",
    ] {
        let status = raw_status(&gw, target, &session).await;
        assert!(status == 400 || status == 403, "{target}: {status}");
    }
    assert_eq!(raw_status(&gw, "/admin%252fx", &session).await, 400);
    assert_eq!(up.count(), 0);
    // A plain path still works for the same session.
    assert_eq!(raw_status(&gw, "/reports/summary", &session).await, 200);
}

#[tokio::test]
async fn an_allowed_forward_auth_answer_names_the_identity_headers_it_does_not_carry() {
    let (idp, _up, gw) = setup("").await;
    let (c, _) = signin::sign_in_as(&idp, &gw, "/", |spec| {
        spec.attributes.retain(|(name, _)| name != "mail");
    })
    .await;
    let r = c.get(gw.url("/saml/auth")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-forwarded-user"], "alice");
    assert!(r.headers().get("x-forwarded-email").is_none());
    let removed = envoy_removals(&r);
    assert_eq!(removed[0], "x-forwarded-email", "{removed:?}");
    for carried in ["x-forwarded-user", "x-forwarded-groups"] {
        assert!(!removed.contains(&carried.to_string()), "{carried}");
    }
    assert!(removed.contains(&"x-http-method-override".to_string()));
}

/// The names in `x-envoy-auth-headers-to-remove`, in order.
fn envoy_removals(r: &reqwest::Response) -> Vec<String> {
    r.headers()["x-envoy-auth-headers-to-remove"]
        .to_str()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect()
}
