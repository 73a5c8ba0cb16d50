//! Password sign-in through the running gateway, against a real OpenLDAP
//! (`tests/support/slapd.rs`) and a local users file written by the real `samlgate passwd`
//! binary: the form at `/saml/password` (CSRF-bound, same session cookie and identity headers
//! as SAML, audit `method=ldap via=form`), HTTP Basic on a `basic_auth` path (no cookie, no
//! `Authorization` forwarded, no browser prompt, per-rule groups), refusals that look the
//! same for unknown users and wrong passwords and never reach the upstream, the directory
//! down (503, while the local break-glass account still works), and the link to the form on
//! the SAML sign-in error page.

#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/log_capture.rs"]
mod log_capture;
#[path = "support/mint.rs"]
mod mint;
#[path = "support/redis.rs"]
mod redis_server;
#[path = "support/scim.rs"]
mod scim;
#[path = "support/signin.rs"]
mod signin;
#[path = "support/slapd.rs"]
mod slapd;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::LazyLock;

use base64::Engine as _;
use gateway::*;
use log_capture::Captured;
use slapd::Slapd;

static CAPTURED: LazyLock<Captured> = LazyLock::new(|| {
    let captured = Captured::default();
    let writer = captured.clone();
    samlgate::observability::init_with_writer("json", "info", false, move || writer.clone());
    captured
});

/// Adds `user` to the users file at `path` with the real binary (`--password-stdin`).
fn passwd(path: &Path, user: &str, password: &str, groups: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_samlgate"))
        .args(["passwd", "--file"])
        .arg(path)
        .args([user, "--groups", groups, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with(&format!("added `{user}`")), "{stdout}");
    assert!(!stdout.contains(password), "the password is never printed");
}

struct Setup {
    slapd: Slapd,
    idp: mint::TestIdp,
    up: Upstream,
    gw: TestGateway,
    _files: tempfile::TempDir,
}

/// slapd, a users file with `breakglass` (local only), and a gateway with
/// `[password_signin]` = ldap then local, `/api/` allowing Basic, `/api/admin/` only for
/// `admins`, plus `extra` appended to `[password_signin]`.
async fn setup(extra: &str) -> Setup {
    setup_with(extra, "").await
}

/// [`setup`] with `sections` (whole TOML sections, e.g. `[scim]`) added to the config.
async fn setup_with(extra: &str, sections: &str) -> Setup {
    LazyLock::force(&CAPTURED);
    let slapd = Slapd::start();
    let files = tempfile::tempdir().unwrap();
    let d = files.path();
    std::fs::write(d.join("service.pw"), slapd::SERVICE_PASSWORD).unwrap();
    passwd(
        &d.join("users"),
        "breakglass",
        "glass-secret",
        "breakglass,admins",
    );
    let toml = format!(
        "[password_signin]\nenabled = true\nmethods = [\"ldap\", \"local\"]\n{extra}\n\
         [password_signin.ldap]\nurl = \"{url}\"\nbind_dn = \"{svc}\"\nbind_password_file = \"{pw}\"\n\
         user_base = \"{people}\"\ntimeout_secs = 3\nconnect_timeout_secs = 2\n\
         [password_signin.local]\nusers_file = \"{users}\"\nallowed_users = [\"breakglass\"]\n\
         [[access.rules]]\nname = \"api-admin\"\npath_prefix = \"/api/admin/\"\naction = \"authenticate\"\nbasic_auth = true\nallowed_groups = [\"admins\"]\n\
         [[access.rules]]\nname = \"api\"\npath_prefix = \"/api/\"\naction = \"authenticate\"\nbasic_auth = true\n{sections}",
        url = slapd.url(),
        svc = slapd::SERVICE_DN,
        pw = d.join("service.pw").display(),
        people = slapd::PEOPLE,
        users = d.join("users").display(),
    );
    let (idp, up, gw) = signin::start_minted(&toml).await;
    Setup {
        slapd,
        idp,
        up,
        gw,
        _files: files,
    }
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// The hidden CSRF token in the form page.
fn form_token(page: &str) -> String {
    let start = page.find("name=\"csrf\" value=\"").expect("csrf field") + 19;
    let end = start + page[start..].find('"').unwrap();
    page[start..end].to_string()
}

async fn open_form(c: &reqwest::Client, s: &Setup, rd: &str) -> String {
    let r = get_accepting(c, &s.gw.url(&format!("/saml/password?rd={rd}")), HTML).await;
    assert_eq!(r.status(), 200);
    let cookies = set_cookies(&r);
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("samlgate_password_form=")
                && c.contains("Path=/saml/password")
                && c.contains("HttpOnly")),
        "{cookies:?}"
    );
    form_token(&r.text().await.unwrap())
}

async fn post_form(c: &reqwest::Client, s: &Setup, fields: &[(&str, &str)]) -> reqwest::Response {
    c.post(s.gw.url("/saml/password"))
        .header("accept", HTML)
        .form(fields)
        .send()
        .await
        .unwrap()
}

fn audit_lines(event: &str, marker: &str) -> Vec<serde_json::Value> {
    CAPTURED
        .text_from(0)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == event && v.to_string().contains(marker))
        .collect()
}

#[tokio::test]
async fn the_form_signs_in_with_ldap_like_saml_would() {
    let s = setup("").await;
    let c = client();
    let token = open_form(&c, &s, "/app/page").await;
    let r = post_form(
        &c,
        &s,
        &[
            ("user", "alice"),
            ("password", "alice-secret"),
            ("csrf", &token),
            ("rd", "/app/page"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/app/page");
    let cookie = session_cookie(&r).expect("the same session cookie as SAML");
    assert!(
        set_cookies(&r)
            .iter()
            .any(|c| c.starts_with("samlgate_password_form=;")),
        "form cookie cleared"
    );

    let r = c.get(s.gw.url("/app/page")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let seen = s.up.last();
    assert_eq!(seen.one("x-forwarded-user").as_deref(), Some("alice"));
    assert_eq!(
        seen.one("x-forwarded-email").as_deref(),
        Some("alice@example.test")
    );
    let groups = seen.one("x-forwarded-groups").unwrap();
    assert!(
        groups.contains("engineers") && groups.contains("admins"),
        "{groups}"
    );
    assert!(
        !seen.headers.iter().any(|(_, v)| v.contains(&cookie)),
        "the session cookie stays ours"
    );

    let lines = audit_lines("login_success", "\"alice\"");
    let line = lines
        .iter()
        .find(|l| l["via"] == "form")
        .expect("audit line");
    assert_eq!(line["method"], "ldap");
    assert!(
        !CAPTURED.text_from(0).contains("alice-secret"),
        "passwords are never logged"
    );

    // A gateway path as the return path lands on / instead (no sign-in loop).
    let c = client();
    let token = open_form(&c, &s, "/saml/login").await;
    let r = post_form(
        &c,
        &s,
        &[
            ("user", "bob"),
            ("password", "bob-secret"),
            ("csrf", &token),
            ("rd", "/saml/login"),
        ],
    )
    .await;
    assert_eq!(r.headers()["location"], "/");
    drop(s.slapd);
}

#[tokio::test]
async fn form_refusals_look_alike_and_reach_nothing() {
    let s = setup("").await;
    let c = client();
    let token = open_form(&c, &s, "/app").await;
    let mut answers = Vec::new();
    for (user, password) in [
        ("alice", "wrong"),
        ("no-such-user", "wrong"),
        ("alice", ""),
        ("*", "alice-secret"),
    ] {
        let r = post_form(
            &c,
            &s,
            &[
                ("user", user),
                ("password", password),
                ("csrf", &token),
                ("rd", "/app"),
            ],
        )
        .await;
        let status = r.status();
        assert!(session_cookie(&r).is_none());
        let page = r.text().await.unwrap();
        assert!(
            page.contains("The user name or password is not correct."),
            "{user}: {page}"
        );
        answers.push(status);
    }
    assert!(answers.iter().all(|s| *s == 401), "{answers:?}");

    // No form cookie (another browser, a cross-site post): refused before any check.
    let other = client();
    let r = post_form(
        &other,
        &s,
        &[
            ("user", "alice"),
            ("password", "alice-secret"),
            ("csrf", &token),
            ("rd", "/app"),
        ],
    )
    .await;
    assert_eq!(r.status(), 403);
    assert!(session_cookie(&r).is_none());
    // A token from another form (another nonce) does not fit this browser's cookie.
    let c2 = client();
    let _ = open_form(&c2, &s, "/app").await;
    let r = post_form(
        &c2,
        &s,
        &[
            ("user", "alice"),
            ("password", "alice-secret"),
            ("csrf", &token),
            ("rd", "/app"),
        ],
    )
    .await;
    assert_eq!(r.status(), 403);
    assert_eq!(s.up.count(), 0, "nothing reached the upstream");
    let csrf = audit_lines("login_failure", "form token does not match");
    assert!(!csrf.is_empty());
}

#[tokio::test]
async fn basic_works_on_api_paths_only_and_never_prompts() {
    let s = setup("").await;
    let c = client();
    // An API client with Basic on /api/: in, stateless, and the header is not forwarded.
    for _ in 0..3 {
        let r = c
            .get(s.gw.url("/api/items"))
            .header("authorization", basic("bob", "bob-secret"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            set_cookies(&r).is_empty(),
            "no session cookie for Basic by default"
        );
    }
    let seen = s.up.last();
    assert_eq!(seen.one("x-forwarded-user").as_deref(), Some("bob"));
    assert_eq!(seen.one("x-forwarded-groups").as_deref(), Some("engineers"));
    assert!(
        seen.all("authorization").is_empty(),
        "the password never reaches the upstream"
    );
    // Audited once: the two later requests were cache hits.
    assert_eq!(
        audit_lines("login_success", "\"bob\"")
            .iter()
            .filter(|l| l["via"] == "basic")
            .count(),
        1
    );
    let count = s.up.count();

    // The rule's own groups still apply: bob is not in admins.
    let r = c
        .get(s.gw.url("/api/admin/x"))
        .header("authorization", basic("bob", "bob-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .get(s.gw.url("/api/admin/x"))
        .header("authorization", basic("alice", "alice-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let count = count + 1;

    // Wrong and unknown: the same 401 JSON, no Basic prompt.
    for (user, pw) in [("bob", "nope"), ("nobody", "nope")] {
        let r = c
            .get(s.gw.url("/api/items"))
            .header("authorization", basic(user, pw))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers().get("www-authenticate").is_none());
        let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(body["error"], "invalid_credentials");
    }
    // Outside a basic_auth rule Basic is not a way in: the usual SAML answer.
    let r = c
        .get(s.gw.url("/app"))
        .header("authorization", basic("bob", "bob-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "SAML realm=\"samlgate\"");
    // A browser without credentials on /api/ is sent to the IdP, never prompted.
    let r = get_accepting(&client(), &s.gw.url("/api/items"), HTML).await;
    assert_eq!(r.status(), 302);
    assert!(r.headers().get("www-authenticate").is_none());
    // Malformed Basic: 400.
    let r = c
        .get(s.gw.url("/api/items"))
        .header("authorization", "Basic %%%")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        s.up.count(),
        count,
        "no refused request reached the upstream"
    );
}

#[tokio::test]
async fn basic_prompt_and_sessions_are_operator_choices() {
    let s = setup("basic_prompt = true\nbasic_session = true").await;
    let r = get_accepting(&client(), &s.gw.url("/api/items"), HTML).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Basic realm=\"samlgate\", charset=\"UTF-8\""
    );
    let c = client();
    let r = c
        .get(s.gw.url("/api/items"))
        .header("authorization", basic("alice", "alice-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(session_cookie(&r).is_some(), "basic_session gives a cookie");
    // The cookie alone now works, also where Basic is not allowed.
    let r = c.get(s.gw.url("/app")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        s.up.last().one("x-forwarded-user").as_deref(),
        Some("alice")
    );
}

#[tokio::test]
async fn ldap_down_gives_503_and_breakglass_still_gets_in() {
    let mut s = setup("").await;
    s.slapd.stop();
    let c = client();
    let r = c
        .get(s.gw.url("/api/admin/x"))
        .header("authorization", basic("breakglass", "glass-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        s.up.last().one("x-forwarded-user").as_deref(),
        Some("breakglass")
    );
    let line = audit_lines("login_success", "\"breakglass\"");
    assert_eq!(line.last().unwrap()["method"], "local");

    let r = c
        .get(s.gw.url("/api/items"))
        .header("authorization", basic("bob", "bob-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(body["error"], "source_unavailable");
    let failure = audit_lines("login_failure", "\"bob\"");
    let reason = failure.last().unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("ldap=unavailable (cannot connect to ldap://127.0.0.1:"),
        "{reason}"
    );
}

#[tokio::test]
async fn the_saml_error_page_links_the_password_form() {
    let s = setup("").await;
    let c = client();
    let r = c
        .post(s.gw.url("/saml/acs"))
        .header("accept", HTML)
        .form(&[("SAMLResponse", "bm90IHhtbA==")])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    let page = r.text().await.unwrap();
    assert!(page.contains("href=\"/saml/password\""), "{page}");
    // And a SAML sign-in is audited as such.
    let (_c, _cookie) = signin::sign_in_as(&s.idp, &s.gw, "/app", |_| {}).await;
    assert!(audit_lines("login_success", "\"saml\"")
        .iter()
        .any(|l| l["method"] == "saml"));
}

/// `<target dir>/test-artifacts` (the test binary lives in `<target dir>/<profile>/deps/`).
fn artifacts_dir() -> std::path::PathBuf {
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Headless Chromium (playwright-core, `tests/browser/password_form.mjs`) opens the form,
/// types alice's LDAP password and presses "Sign in": it must land on the upstream page with
/// her identity headers, hold the session cookie (HttpOnly), and Chromium must report no CSP
/// violation. Needs `node`, Debian's `chromium` and `tests/browser/node_modules`
/// (`npm ci --prefix tests/browser`); without them it fails, never skips.
#[tokio::test]
async fn a_real_browser_signs_in_with_the_form() {
    let s = setup("").await;
    let screenshot = artifacts_dir().join("browser-password-form.png");
    let args = serde_json::json!({
        "form_url": s.gw.url("/saml/password?rd=/app/welcome"),
        "final_url": s.gw.url("/app/welcome"),
        "username": "alice",
        "password": "alice-secret",
        "screenshot": screenshot,
        "timeout_ms": 40000,
    });
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(manifest.join("tests/browser/password_form.mjs"))
            .arg(args.to_string())
            .current_dir(&manifest)
            .stdin(Stdio::null())
            .output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| {
        panic!("cannot run node ({e}): scripts/install-deps.sh test, then npm ci --prefix tests/browser")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| {
            panic!(
                "no result from the driver\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let result: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(
        result["ok"],
        true,
        "{result:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(result["form_title"], "Sign in with a password");
    let text = result["text"].as_str().unwrap();
    assert!(text.contains("upstream page"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("x-forwarded-user: alice"),
        "{text}"
    );
    assert!(
        text.to_ascii_lowercase()
            .contains("x-forwarded-email: alice@example.test"),
        "{text}"
    );
    let cookies = result["cookies"].as_array().unwrap();
    assert!(
        cookies
            .iter()
            .any(|c| c["name"] == "samlgate_session" && c["httpOnly"] == true),
        "{cookies:?}"
    );
    assert!(
        result["csp_violations"].as_array().unwrap().is_empty(),
        "{result:#}"
    );
    println!("screenshot: {}", screenshot.display());
}

#[tokio::test]
async fn a_user_scim_disabled_gets_no_password_session() {
    let dir = scim::ScimDir::new();
    let s = setup_with("", &dir.toml("")).await;
    let directory = scim::Scim::new(&s.gw);
    let (status, _) = directory
        .post(
            "/Users",
            serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "bob", "active": false}),
        )
        .await;
    assert_eq!(status, 201);
    let before = s.up.count();

    // The form: the right password, but SCIM has turned the account off.
    let c = client();
    let token = open_form(&c, &s, "/app").await;
    let fields = [
        ("user", "bob"),
        ("password", "bob-secret"),
        ("csrf", token.as_str()),
        ("rd", "/app"),
    ];
    let r = post_form(&c, &s, &fields).await;
    assert_eq!(r.status(), 403);
    assert!(
        session_cookie(&r).is_none(),
        "no session for a disabled user"
    );
    let page = r.text().await.unwrap();
    assert!(page.contains("turned off your access"), "{page}");
    let line = audit_lines("login_failure", "account_disabled");
    assert_eq!(line.last().expect("audit line")["via"], "form");

    // Basic, with and without basic_session: the same refusal.
    let r = client()
        .get(s.gw.url("/api/items"))
        .header("accept", "application/json")
        .header("authorization", basic("bob", "bob-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(body["error"], "account_disabled");
    assert_eq!(s.up.count(), before, "nothing reached the upstream");

    // A user SCIM never provisioned is admitted (scim.require_provisioned is off).
    let r = client()
        .get(s.gw.url("/api/items"))
        .header("authorization", basic("alice", "alice-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_password_sign_in_with_redis_down_gets_503_and_no_cookie() {
    let mut redis = redis_server::RedisServer::start();
    let state = format!(
        "[state]\nbackend = \"redis\"\nredis_url = \"{}\"\ncommand_timeout_ms = 300\n",
        redis.url()
    );
    let s = setup_with("basic_session = true", &state).await;
    redis.stop();
    let c = client();
    let token = open_form(&c, &s, "/app").await;
    let fields = [
        ("user", "alice"),
        ("password", "alice-secret"),
        ("csrf", token.as_str()),
        ("rd", "/app"),
    ];
    let r = post_form(&c, &s, &fields).await;
    assert_eq!(r.status(), 503);
    assert!(session_cookie(&r).is_none(), "no cookie nothing backs");
    let line = audit_lines("login_failure", "state_unavailable");
    assert_eq!(line.last().expect("audit line")["via"], "form");

    let r = client()
        .get(s.gw.url("/api/items"))
        .header("accept", "application/json")
        .header("authorization", basic("alice", "alice-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(session_cookie(&r).is_none());
    let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(body["error"], "state_unavailable");
}
