//! Reloading the configuration while serving (what `SIGHUP` triggers, driven here through
//! `app::reload_config` on the running in-process gateway), and the forward-auth endpoint
//! answered directly: rules of who may enter and header names change without dropping a
//! session, a retired header name stays stripped, a bad file changes nothing.

#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/mint.rs"]
mod mint;
#[path = "support/signin.rs"]
mod signin;

use gateway::*;
use mint::TestIdp;

const IDP_SSO: &str = "https://idp.test/sso";

async fn setup(extra_toml: &str) -> (TestIdp, Upstream, TestGateway) {
    signin::start_minted(extra_toml).await
}

/// Replaces `old` (a part of the running config file) by `new` and reloads.
fn rewrite_and_reload(gw: &TestGateway, old: &str, new: &str) {
    let path = gw.dir.path().join("samlgate.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(old), "the config holds {old:?}");
    std::fs::write(&path, text.replace(old, new)).unwrap();
    samlgate::app::reload_config(&path, &gw.gateway);
}

async fn status(c: &reqwest::Client, gw: &TestGateway, path: &str) -> u16 {
    c.get(gw.url(path))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn allowed_groups_and_header_names_reload_without_dropping_the_session() {
    let (idp, up, gw) = setup("[authz]\nallowed_groups = [\"admins\"]\n").await;
    let (c, _) = signin::sign_in_as(&idp, &gw, "/", |_| {}).await;
    assert_eq!(status(&c, &gw, "/a").await, 200);
    assert_eq!(up.last().one("x-forwarded-user").as_deref(), Some("alice"));

    // alice is in analysts and admins, not finance: the same session is now refused.
    rewrite_and_reload(
        &gw,
        "allowed_groups = [\"admins\"]",
        "allowed_groups = [\"finance\"]",
    );
    assert_eq!(status(&c, &gw, "/b").await, 403);
    assert_eq!(up.count(), 1, "a denied request never reaches the upstream");

    // Open again, with the user header renamed: the new name carries the identity and the
    // retired one is still stripped from what clients send (the app may still trust it).
    rewrite_and_reload(
        &gw,
        "[authz]\nallowed_groups = [\"finance\"]\n",
        "[authz]\n[headers]\nuser = \"X-Remote-User\"\n",
    );
    let r = c
        .get(gw.url("/c"))
        .header("x-forwarded-user", "mallory")
        .header("X_Forwarded_User", "mallory")
        .header("x-remote-user", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the session survived three reloads");
    let seen = up.last();
    assert_eq!(seen.all("x-remote-user"), vec!["alice".to_string()]);
    assert!(
        seen.any_variant("x-forwarded-user").is_empty(),
        "retired header name still stripped: {:?}",
        seen.headers
    );
}

#[tokio::test]
async fn a_config_that_does_not_validate_changes_nothing() {
    let (idp, _up, gw) = setup("[authz]\nallowed_groups = [\"admins\"]\n").await;
    let (c, _) = signin::sign_in_as(&idp, &gw, "/", |_| {}).await;
    for broken in [
        // not TOML
        "[authz\nallowed_groups = [\"finance\"]\n",
        // unknown key
        "[authz]\nallowed_groups = [\"finance\"]\nallowed_groupz = []\n",
        // invalid header name
        "[authz]\nallowed_groups = [\"finance\"]\n[headers]\nuser = \"bad header\"\n",
    ] {
        let path = gw.dir.path().join("samlgate.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let bad = text.replace("[authz]\nallowed_groups = [\"admins\"]\n", broken);
        assert_ne!(bad, text);
        std::fs::write(&path, &bad).unwrap();
        samlgate::app::reload_config(&path, &gw.gateway);
        assert_eq!(
            status(&c, &gw, "/").await,
            200,
            "the old [authz] (admins) is still in force after {broken:?}"
        );
        std::fs::write(&path, &text).unwrap();
    }
}

#[tokio::test]
async fn a_changed_idp_metadata_file_is_applied_and_a_bad_one_changes_nothing() {
    let (a, _up, gw) = setup(HIGH_RATE_LIMITS).await;
    let b = TestIdp::generate("https://idp.test/metadata");
    let (c, _) = signin::sign_in_as(&a, &gw, "/", |_| {}).await;
    assert!(signin::signs_in(&gw, &a).await, "A before the reload");
    assert!(!signin::signs_in(&gw, &b).await, "B is not trusted yet");

    // The IdP rolled its key: the file now lists only B.
    let metadata = gw.dir.path().join("idp.xml");
    let config = gw.dir.path().join("samlgate.toml");
    std::fs::write(&metadata, b.metadata_xml(IDP_SSO)).unwrap();
    samlgate::app::reload_config(&config, &gw.gateway);
    assert!(signin::signs_in(&gw, &b).await, "B after the reload");
    assert!(!signin::signs_in(&gw, &a).await, "A is no longer trusted");
    assert_eq!(
        status(&c, &gw, "/").await,
        200,
        "sessions survive the reload"
    );

    // Files that would leave nothing to verify with: refused, B stays.
    for (broken, what) in [
        ("<md:EntityDescriptor".to_string(), "not XML"),
        (
            b.metadata_xml_exact_certs(IDP_SSO, &[]),
            "no signing certificate",
        ),
        (String::new(), "empty"),
    ] {
        std::fs::write(&metadata, &broken).unwrap();
        samlgate::app::reload_config(&config, &gw.gateway);
        assert!(signin::signs_in(&gw, &b).await, "{what}: B still trusted");
        assert!(!signin::signs_in(&gw, &a).await, "{what}: A still refused");
    }

    // A bad config next to a changed metadata file: neither is applied.
    std::fs::write(&metadata, a.metadata_xml(IDP_SSO)).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\n[authz\n")).unwrap();
    samlgate::app::reload_config(&config, &gw.gateway);
    assert!(
        signin::signs_in(&gw, &b).await,
        "bad config: B still trusted"
    );
    assert!(
        !signin::signs_in(&gw, &a).await,
        "bad config: A's file not applied"
    );
    std::fs::write(&config, &text).unwrap();
    samlgate::app::reload_config(&config, &gw.gateway);
    assert!(
        signin::signs_in(&gw, &a).await,
        "config fixed: A's file applied"
    );
}

#[tokio::test]
async fn forward_auth_answers_with_identity_401_or_403() {
    let (idp, up, gw) = setup("").await;
    let anon = client();
    let r = anon
        .get(gw.url("/saml/auth"))
        // From an untrusted peer the proxy's description is ignored: the check is about "/".
        .header("x-forwarded-uri", "/spoofed/path")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(body["error"], "unauthenticated");
    assert_eq!(body["login_url"], "/saml/login?rd=%2F");

    let (c, _) = signin::sign_in_as(&idp, &gw, "/", |_| {}).await;
    let r = c
        .get(gw.url("/saml/auth"))
        .header("x-forwarded-user", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-forwarded-user"], "alice");
    assert_eq!(r.headers()["x-forwarded-email"], "alice@example.com");
    assert_eq!(r.headers()["x-forwarded-groups"], "analysts,admins");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(up.count(), 0, "a check never reaches the upstream");

    // Envoy's form: the original path appended to the check path.
    let r = c
        .get(gw.url("/saml/auth/reports/1?x=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Denied by [authz] → 403; forward-auth switched off → 404.
    rewrite_and_reload(
        &gw,
        "[log]",
        "[authz]\nallowed_groups = [\"finance\"]\n[log]",
    );
    let r = c.get(gw.url("/saml/auth")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("x-forwarded-user").is_none());
    rewrite_and_reload(
        &gw,
        "[authz]\nallowed_groups = [\"finance\"]\n",
        "[forward_auth]\nenabled = false\n",
    );
    assert_eq!(
        c.get(gw.url("/saml/auth")).send().await.unwrap().status(),
        404
    );
}

#[tokio::test]
async fn forward_auth_can_send_browsers_to_sign_in() {
    let (_idp, _up, gw) = setup("[forward_auth]\nredirect_browsers = true\n").await;
    let c = client();
    let r = c
        .get(gw.url("/saml/auth"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with(IDP_SSO));
    // API clients still get the status a proxy can act on.
    let r = c
        .get(gw.url("/saml/auth"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn rate_limit_state_survives_a_reload_that_does_not_touch_it() {
    let (_idp, _up, gw) = setup("[rate_limits]\nsign_in_burst = 1\nsign_in_per_minute = 1\n").await;
    let c = client();
    let nav = || c.get(gw.url("/app")).header("accept", HTML).send();
    assert_eq!(nav().await.unwrap().status(), 302);
    assert_eq!(nav().await.unwrap().status(), 429);
    // A reload for something else keeps the client's spent budget…
    rewrite_and_reload(&gw, "[log]", "[authz]\nallowed_users = [\"alice\"]\n[log]");
    assert_eq!(nav().await.unwrap().status(), 429);
    // …a change to [rate_limits] starts afresh.
    rewrite_and_reload(&gw, "sign_in_burst = 1\n", "sign_in_burst = 2\n");
    assert_eq!(nav().await.unwrap().status(), 302);
}
