//! Identity headers from a real IdP (SimpleSAMLphp, tests/support/simplesamlphp.rs): the role
//! `[[roles]]` maps from SimpleSAMLphp's `groups` reaches the upstream and opens or closes an
//! `allowed_roles` path, and Zoë Łukasiewicz's name and Cyrillic group, as SimpleSAMLphp
//! asserts them, arrive RFC 2047-encoded (the default) and decode back with Python's
//! `email.header`.
//!
//! Needs the Debian packages `simplesamlphp php-cli php-xml php-mbstring php-curl php-sqlite3`
//! (scripts/install-deps.sh) and python3; without them the tests fail, never skip.

#[path = "support/e2e.rs"]
mod e2e;
#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/header_decoders.rs"]
mod header_decoders;
#[path = "support/simplesamlphp.rs"]
mod simplesamlphp;

use e2e::{SspSetup, USER_IS_UID};
use gateway::{get_accepting, Options};
use header_decoders::decode;
use simplesamlphp::{login_client, ALICE, ZOE};

const ROLES: &str = r#"
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
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_non_ascii_names_from_simplesamlphp() {
    let s = SspSetup::start(
        |_| {},
        Options {
            extra_toml: format!("{USER_IS_UID}{ROLES}"),
            ..Options::default()
        },
    )
    .await;

    // alice is in "admins": Admin, and the admin area is open to her.
    let alice = login_client();
    s.sign_in(&alice, "/admin/panel", &ALICE).await;
    s.upstream_sees(&alice, "/admin/panel", &ALICE).await;
    assert_eq!(
        s.up.last().one("x-forwarded-role").as_deref(),
        Some("Admin")
    );

    // zoe is in "Разработчики": Editor. Her name and groups decode back exactly.
    let zoe = login_client();
    s.sign_in(&zoe, "/app", &ZOE).await;
    let r = zoe
        .get(s.gw.url("/app"))
        .header("X-Forwarded-Role", "Admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = s.up.last();
    assert_eq!(seen.one("x-forwarded-role").as_deref(), Some("Editor"));
    let name = seen.one("x-forwarded-preferred-username").unwrap();
    let groups = seen.one("x-forwarded-groups").unwrap();
    assert!(name.is_ascii() && groups.is_ascii(), "{name} {groups}");
    assert_eq!(decode("rfc2047", &[name]), [ZOE.display_name]);
    let items: Vec<String> = groups.split(',').map(str::to_string).collect();
    assert_eq!(decode("rfc2047", &items), ZOE.groups);

    // The admin area stays closed to an Editor, whatever role header she sends.
    let before = s.up.count();
    let r = get_accepting(&zoe, &s.gw.url("/admin/panel"), "application/json").await;
    assert_eq!(r.status(), 403);
    assert_eq!(s.up.count(), before, "nothing reached the upstream");
}
