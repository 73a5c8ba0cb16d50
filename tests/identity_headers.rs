//! Identity headers through the running gateway (in-process, minted responses): a person
//! named "Zoë Łukasiewicz" in Cyrillic groups reaches the upstream in text each encoding's
//! reference decoder turns back into the same names (Python's `email.header` for RFC 2047,
//! `quopri` for quoted-printable, the `percent-encoding` crate for percent), `refuse`
//! refuses the sign-in with a page and an audit reason, the `[[roles]]` role reaches the
//! upstream and forward-auth answers and opens or closes `allowed_roles` paths (nothing
//! reaches the upstream when closed), and a client can forge neither the role nor a
//! forwarded attribute header.

#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/header_decoders.rs"]
mod header_decoders;
#[path = "support/log_capture.rs"]
mod log_capture;
#[path = "support/mint.rs"]
mod mint;
#[path = "support/signin.rs"]
mod signin;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gateway::*;
use header_decoders::decode;
use log_capture::Captured;
use mint::ResponseSpec;

const NAME: &str = "Zoë Łukasiewicz";
const GROUPS: [&str; 3] = ["Разработчики", "staff", "R&D, Berlin"];
const DEPARTMENT: [&str; 2] = ["Отдел №1", "Ops"];

/// Every log line of this test binary (one process-wide subscriber, installed once).
fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_env_filter("warn")
            .with_target(true)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        captured
    })
}

/// The audit lines holding every needle, waiting up to 5 s for one.
async fn audit_lines(needles: &[&str]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found: Vec<String> = logs()
            .text_from(0)
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_string)
            .collect();
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `[headers]` with this encoding and the department attribute forwarded, and a role mapping.
fn config(encoding: &str) -> String {
    format!(
        r#"
[headers]
encoding = "{encoding}"

[headers.attributes]
department = "X-Forwarded-Department"

[[roles]]
role = "Admin"
groups = ["admins"]

[[roles]]
role = "Editor"
groups = ["Разработчики"]

[[access.rules]]
name = "admin-area"
path_prefix = "/admin/"
action = "authenticate"
allowed_roles = ["Admin"]
"#
    )
}

fn zoe(spec: &mut ResponseSpec) {
    spec.name_id = "zoë".into();
    spec.attributes = vec![
        ("mail".into(), vec!["zoe@example.com".into()]),
        ("displayName".into(), vec![NAME.into()]),
        (
            "groups".into(),
            GROUPS.iter().map(|s| s.to_string()).collect(),
        ),
        (
            "department".into(),
            DEPARTMENT.iter().map(|s| s.to_string()).collect(),
        ),
    ];
}

fn split(v: &str) -> Vec<String> {
    v.split(',').map(str::to_string).collect()
}

#[tokio::test]
async fn non_ascii_names_and_groups_decode_back_under_each_encoding() {
    for encoding in ["rfc2047", "quoted-printable", "percent", "raw"] {
        let (idp, up, gw) = signin::start_minted(&config(encoding)).await;
        let (c, _) = signin::sign_in_as(&idp, &gw, "/app", zoe).await;
        assert_eq!(c.get(gw.url("/app")).send().await.unwrap().status(), 200);
        let seen = up.last();
        let one = |h: &str| seen.one(h).unwrap_or_else(|| panic!("{encoding}: no {h}"));
        let (user, name) = (
            one("x-forwarded-user"),
            one("x-forwarded-preferred-username"),
        );
        let (groups, dept) = (one("x-forwarded-groups"), one("x-forwarded-department"));
        if encoding != "raw" {
            for v in [&user, &name, &groups, &dept] {
                assert!(v.is_ascii(), "{encoding}: {v}");
            }
        }
        assert_eq!(decode(encoding, &[user, name]), ["zoë", NAME], "{encoding}");
        // Split on the separator first, then decode: exact even for "R&D, Berlin".
        if encoding == "raw" {
            assert_eq!(groups, GROUPS.join(","), "raw keeps today's ambiguity");
        } else {
            assert_eq!(
                decode(encoding, &split(&groups)),
                GROUPS,
                "{encoding}: {groups}"
            );
        }
        assert_eq!(
            decode(encoding, &split(&dept)),
            DEPARTMENT,
            "{encoding}: {dept}"
        );
        assert_eq!(one("x-forwarded-role"), "Editor", "{encoding}");
        assert_eq!(one("x-forwarded-email"), "zoe@example.com");
    }
}

#[tokio::test]
async fn rfc2047_is_the_default_and_ascii_passes_unchanged() {
    let (idp, up, gw) = signin::start_minted("").await;
    let (c, _) = signin::sign_in_as(&idp, &gw, "/app", zoe).await;
    assert_eq!(c.get(gw.url("/app")).send().await.unwrap().status(), 200);
    let seen = up.last();
    assert_eq!(
        seen.one("x-forwarded-preferred-username").unwrap(),
        "=?UTF-8?B?Wm/DqyDFgXVrYXNpZXdpY3o=?="
    );
    assert_eq!(seen.one("x-forwarded-email").unwrap(), "zoe@example.com");
    assert!(
        seen.any_variant("x-forwarded-role").is_empty(),
        "no [[roles]]: no role"
    );

    let (c, _) = signin::sign_in_as(&idp, &gw, "/app", |_| {}).await;
    assert_eq!(c.get(gw.url("/app")).send().await.unwrap().status(), 200);
    let seen = up.last();
    assert_eq!(seen.one("x-forwarded-user").unwrap(), "alice");
    assert_eq!(
        seen.one("x-forwarded-preferred-username").unwrap(),
        "Alice Example"
    );
    assert_eq!(seen.one("x-forwarded-groups").unwrap(), "analysts,admins");
}

#[tokio::test]
async fn refuse_refuses_the_sign_in_with_a_page_and_the_reason() {
    logs(); // capturing before anything happens
    let (idp, up, gw) = signin::start_minted(&config("refuse")).await;
    let c = client();
    let (req_id, relay) = begin_login_at(&c, &gw.url("/app")).await;
    let mut spec = ResponseSpec::valid(&idp, &gw.sp_entity_id(), &gw.acs_url(), Some(&req_id));
    zoe(&mut spec);
    spec.name_id = "zoe-refused".into();
    let r = post_acs(&c, &gw, &mint::mint_b64(&idp, &spec), Some(&relay)).await;
    assert_eq!(r.status(), 403);
    assert!(session_cookie(&r).is_none(), "no session");
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Your account cannot be passed to this application"),
        "{page}"
    );
    let lines = audit_lines(&[
        "event=\"login_failure\"",
        "kind=\"identity_header\"",
        "the display name value is not ASCII and headers.encoding = \"refuse\"",
    ])
    .await;
    assert_eq!(lines.len(), 1, "{}", logs().text_from(0));
    assert_eq!(up.count(), 0, "nothing reached the upstream");
    assert_eq!(
        c.get(gw.url("/app"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // ASCII identities sign in as before.
    let (c, _) = signin::sign_in_as(&idp, &gw, "/app", |_| {}).await;
    assert_eq!(c.get(gw.url("/app")).send().await.unwrap().status(), 200);
    assert_eq!(
        up.last().one("x-forwarded-preferred-username").unwrap(),
        "Alice Example"
    );
}

#[tokio::test]
async fn the_role_opens_allowed_roles_paths_and_nothing_else_does() {
    logs(); // capturing before anything happens
    let (idp, up, gw) = signin::start_minted(&config("rfc2047")).await;
    // alice is in "admins": Admin.
    let (admin, _) = signin::sign_in_as(&idp, &gw, "/admin/", |_| {}).await;
    assert_eq!(
        admin
            .get(gw.url("/admin/panel"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(up.last().one("x-forwarded-role").unwrap(), "Admin");

    // bob-editor is an Editor, bob-none has no role: both kept out, upstream untouched.
    for (user, groups, has) in [
        ("bob-editor", vec!["Разработчики".to_string()], "\"Editor\""),
        ("bob-none", vec!["staff".to_string()], "(none)"),
    ] {
        let (c, _) = signin::sign_in_as(&idp, &gw, "/app", |spec| {
            spec.name_id = user.into();
            spec.attributes = vec![("groups".into(), groups)];
        })
        .await;
        assert_eq!(c.get(gw.url("/app")).send().await.unwrap().status(), 200);
        let before = up.count();
        let r = c
            .get(gw.url("/admin/panel"))
            .header("x-forwarded-role", "Admin")
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{user}");
        assert!(
            r.text().await.unwrap().contains("Admin"),
            "names the role needed"
        );
        assert_eq!(up.count(), before, "{user}: nothing reached the upstream");
        let reason = format!("role {has} is not an allowed role (Admin)");
        let lines =
            audit_lines(&["event=\"access_denied\"", &format!("user={user}"), &reason]).await;
        assert_eq!(lines.len(), 1, "{user}: {}", logs().text_from(0));
    }
}

#[tokio::test]
async fn clients_cannot_forge_the_role_or_attribute_headers() {
    let (idp, up, gw) = signin::start_minted(&config("rfc2047")).await;
    // No role and no department for this person: nothing of the client's may survive.
    let (c, _) = signin::sign_in_as(&idp, &gw, "/app", |spec| {
        spec.name_id = "mallory".into();
        spec.attributes = vec![("groups".into(), vec!["staff".into()])];
    })
    .await;
    let r = c
        .get(gw.url("/app"))
        .header("X-Forwarded-Role", "Admin")
        .header("x_forwarded_role", "Admin")
        .header("X-FORWARDED-ROLE", "Admin")
        .header("X-Forwarded-Department", "forged")
        .header("x_forwarded_department", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert!(
        seen.any_variant("x-forwarded-role").is_empty(),
        "{:?}",
        seen.headers
    );
    assert!(
        seen.any_variant("x-forwarded-department").is_empty(),
        "{:?}",
        seen.headers
    );
    assert_eq!(seen.one("x-forwarded-user").unwrap(), "mallory");

    // With a role and a department: exactly ours, once.
    let (c, _) = signin::sign_in_as(&idp, &gw, "/app", zoe).await;
    let r = c
        .get(gw.url("/app"))
        .header("X-Forwarded-Role", "Admin")
        .header("x_forwarded_department", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(
        seen.any_variant("x-forwarded-role"),
        [("x-forwarded-role".to_string(), "Editor".to_string())]
    );
    let dept = seen.any_variant("x-forwarded-department");
    assert_eq!(dept.len(), 1, "{dept:?}");
    assert_eq!(decode("rfc2047", &split(&dept[0].1)), DEPARTMENT);
}

#[tokio::test]
async fn forward_auth_answers_carry_the_role_and_attributes() {
    let toml = config("quoted-printable") + "\n[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n";
    let (idp, _up, gw) = signin::start_minted(&toml).await;
    let check = |c: &reqwest::Client, uri: &str| {
        c.get(gw.url("/saml/auth"))
            .header("x-forwarded-method", "GET")
            .header("x-forwarded-uri", uri)
            .header("accept", "application/json")
            .send()
    };
    let (c, _) = signin::sign_in_as(&idp, &gw, "/app", zoe).await;
    let r = check(&c, "/app").await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["x-forwarded-role"], "Editor");
    assert_eq!(
        h["x-forwarded-preferred-username"],
        "Zo=C3=AB =C5=81ukasiewicz"
    );
    let dept = h["x-forwarded-department"].to_str().unwrap();
    assert_eq!(decode("quoted-printable", &split(dept)), DEPARTMENT);
    let removed = h["x-envoy-auth-headers-to-remove"].to_str().unwrap();
    for carried in [
        "x-forwarded-role",
        "x-forwarded-department",
        "x-forwarded-user",
    ] {
        assert!(
            !removed.split(',').any(|n| n == carried),
            "{carried} in {removed}"
        );
    }
    // The admin area is closed to an Editor at the forward-auth check too.
    assert_eq!(check(&c, "/admin/panel").await.unwrap().status(), 403);

    // Without a role or department, Envoy is told to drop the client's copies.
    let (c, _) = signin::sign_in_as(&idp, &gw, "/app", |spec| {
        spec.attributes = vec![("groups".into(), vec!["admins".into()])];
    })
    .await;
    let r = check(&c, "/admin/panel").await.unwrap();
    assert_eq!(r.status(), 200, "alice is an Admin");
    assert_eq!(r.headers()["x-forwarded-role"], "Admin");
    let removed = r.headers()["x-envoy-auth-headers-to-remove"]
        .to_str()
        .unwrap();
    assert!(
        removed.split(',').any(|n| n == "x-forwarded-department"),
        "{removed}"
    );
    assert!(
        !removed.split(',').any(|n| n == "x-forwarded-role"),
        "{removed}"
    );
}
