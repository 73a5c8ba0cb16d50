//! The password sources against a real OpenLDAP (`tests/support/slapd.rs`: slapd on loopback
//! with a generated config and a small directory) and a real users file: success, wrong
//! password, unknown user, empty password (with a slapd that would accept an unauthenticated
//! bind), filter and DN injection, an ambiguous filter, groups from `memberOf` and from a group
//! search, LDAPS and StartTLS with the certificate verified, the directory down (a clear error;
//! local accounts still work), method restrictions, the credential cache, the lockout, and
//! the no-enumeration property: an unknown name and a wrong password cost the same number of
//! binds and argon2 verifications (asserted) and about the same time (reported, not asserted).

#[path = "support/slapd.rs"]
mod slapd;

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use samlgate::password::ldap::{LdapAnswer, LdapSource};
use samlgate::password::limits::Brake;
use samlgate::password::local::{hash_password, LocalUsers};
use samlgate::password::settings::{
    validate, GroupSource, LdapSection, LocalSection, PasswordSettings,
};
use samlgate::password::{Method, PasswordSignin, PasswordSigninSection, SigninError, Work};
use slapd::Slapd;

const CLIENT: &str = "192.0.2.10";

fn client() -> IpAddr {
    CLIENT.parse().unwrap()
}

/// `[password_signin.ldap]` for search-then-bind against `slapd` at `url`.
fn search_section(url: &str) -> LdapSection {
    LdapSection {
        url: url.into(),
        bind_dn: slapd::SERVICE_DN.into(),
        bind_password_file: Some("service.pw".into()),
        user_base: slapd::PEOPLE.into(),
        timeout_secs: 3,
        connect_timeout_secs: 2,
        ..LdapSection::default()
    }
}

/// Validated settings with the files they name written into `dir`.
fn settings(dir: &Path, section: PasswordSigninSection) -> PasswordSettings {
    std::fs::write(
        dir.join("service.pw"),
        format!("{}\n", slapd::SERVICE_PASSWORD),
    )
    .unwrap();
    validate(&section, dir).unwrap().expect("enabled")
}

fn ldap_source(dir: &Path, ldap: LdapSection) -> LdapSource {
    let s = settings(
        dir,
        PasswordSigninSection {
            enabled: true,
            methods: vec![Method::Ldap],
            ldap,
            ..Default::default()
        },
    );
    LdapSource::new(s.ldap.unwrap()).unwrap()
}

fn accepted(
    answer: Result<LdapAnswer, samlgate::password::ldap::LdapError>,
) -> samlgate::session::Identity {
    match answer {
        Ok(LdapAnswer::Accepted(identity)) => *identity,
        other => panic!("expected Accepted, got {other:?}"),
    }
}

#[tokio::test]
async fn search_then_bind_accepts_refuses_and_maps_groups() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let src = ldap_source(dir.path(), search_section(&slapd.url()));

    let alice = accepted(src.verify("alice", "alice-secret").await);
    assert_eq!(alice.user, "alice");
    assert_eq!(alice.email.as_deref(), Some("alice@example.test"));
    assert_eq!(alice.display_name.as_deref(), Some("Alice Example"));
    let mut groups = alice.groups.clone();
    groups.sort();
    assert_eq!(groups, vec!["admins", "engineers"]);
    // The directory's spelling of the name is the identity, whatever case was typed.
    assert_eq!(
        accepted(src.verify("ALICE", "alice-secret").await).user,
        "alice"
    );
    assert!(accepted(src.verify("carol", "carol-secret").await)
        .groups
        .is_empty());

    assert_eq!(
        src.verify("alice", "wrong").await.unwrap(),
        LdapAnswer::WrongPassword
    );
    assert_eq!(
        src.verify("nobody", "alice-secret").await.unwrap(),
        LdapAnswer::UnknownUser
    );
    // An empty password never reaches the directory as a bind.
    let before = src.password_binds();
    assert_eq!(
        src.verify("alice", "").await.unwrap(),
        LdapAnswer::WrongPassword
    );
    assert_eq!(src.password_binds(), before);
}

#[tokio::test]
async fn this_slapd_accepts_unauthenticated_binds_and_samlgate_never_does() {
    let slapd = Slapd::start();
    // The directory itself says yes to a DN with an empty password (RFC 4513 5.1.2)...
    let (conn, mut ldap) = ldap3::LdapConnAsync::new(&slapd.url()).await.unwrap();
    tokio::spawn(conn.drive());
    let raw = ldap
        .simple_bind("uid=alice,ou=people,dc=example,dc=test", "")
        .await
        .unwrap();
    assert_eq!(
        raw.rc, 0,
        "the test directory should allow unauthenticated binds"
    );

    // ...and samlgate refuses before asking, as invalid credentials, counting no bind.
    let dir = tempfile::tempdir().unwrap();
    let signin = PasswordSignin::new(&settings(
        dir.path(),
        PasswordSigninSection {
            enabled: true,
            methods: vec![Method::Ldap],
            ldap: search_section(&slapd.url()),
            ..Default::default()
        },
    ))
    .unwrap();
    let err = signin.sign_in(client(), "alice", "").await.unwrap_err();
    assert_eq!(err.reason(), "invalid_credentials: empty password");
    assert_eq!(signin.work(), Work::default());
}

#[tokio::test]
async fn filter_injection_finds_nobody() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let src = ldap_source(dir.path(), search_section(&slapd.url()));
    // Each would match alice (or everyone) if it reached the filter unescaped.
    for typed in [
        "*",
        "al*",
        "alice)(uid=*",
        "*)(|(uid=*",
        "alice)(|(objectClass=*)",
        "alice\\",
        "alice\u{0}",
    ] {
        assert_eq!(
            src.verify(typed, "alice-secret").await.unwrap(),
            LdapAnswer::UnknownUser,
            "typed {typed:?}"
        );
    }
    // The user whose name really has a `*` signs in with it, literally.
    assert_eq!(accepted(src.verify("x*y", "star-secret").await).user, "x*y");
    // A filter matching two entries is refused, not resolved to either.
    let twins = LdapSection {
        user_filter: "(cn={user})".into(),
        ..search_section(&slapd.url())
    };
    let src = ldap_source(dir.path(), twins);
    assert_eq!(
        src.verify("Twin", "twin-secret").await.unwrap(),
        LdapAnswer::Ambiguous
    );
}

#[tokio::test]
async fn direct_bind_escapes_the_dn() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let direct = LdapSection {
        url: slapd.url(),
        user_dn_template: format!("uid={{user}},{}", slapd::PEOPLE),
        ..LdapSection::default()
    };
    let src = ldap_source(dir.path(), direct);
    let alice = accepted(src.verify("alice", "alice-secret").await);
    assert_eq!(alice.email.as_deref(), Some("alice@example.test"));
    assert!(alice.groups.contains(&"engineers".to_string()));
    assert_eq!(
        src.verify("alice", "bad").await.unwrap(),
        LdapAnswer::WrongPassword
    );
    assert_eq!(accepted(src.verify("x*y", "star-secret").await).user, "x*y");
    // RDN tricks: each lands inside one escaped value, naming an entry that does not exist.
    // (` alice` is not among them: escaped as `\ alice` it still names alice's entry, since
    // the directory's matching rule ignores surrounding spaces; that is her own account.)
    for typed in [
        "bob,ou=people,dc=example,dc=test",
        "alice+cn=Alice Example",
        "alice,ou=people,dc=example,dc=test\u{0}",
        "#alice",
    ] {
        assert_eq!(
            src.verify(typed, "alice-secret").await.unwrap(),
            LdapAnswer::WrongPassword,
            "typed {typed:?}"
        );
    }
}

#[tokio::test]
async fn groups_from_a_group_search() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let section = LdapSection {
        groups: GroupSource::Search,
        group_base: slapd::GROUPS.into(),
        ..search_section(&slapd.url())
    };
    let src = ldap_source(dir.path(), section);
    let mut groups = accepted(src.verify("alice", "alice-secret").await).groups;
    groups.sort();
    assert_eq!(groups, vec!["admins", "engineers"]);
    assert_eq!(
        accepted(src.verify("bob", "bob-secret").await).groups,
        vec!["engineers"]
    );
}

#[tokio::test]
async fn ldaps_and_starttls_verify_the_certificate() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), slapd.ca_pem()).unwrap();
    std::fs::write(
        dir.path().join("other-ca.pem"),
        slapd::tls::Ca::new().cert_pem(),
    )
    .unwrap();

    let ldaps = LdapSection {
        ca_file: Some("ca.pem".into()),
        ..search_section(&slapd.ldaps_url())
    };
    assert_eq!(
        accepted(
            ldaps_source(&dir, ldaps.clone())
                .verify("bob", "bob-secret")
                .await
        )
        .user,
        "bob"
    );
    let starttls = LdapSection {
        starttls: true,
        ca_file: Some("ca.pem".into()),
        ..search_section(&slapd.url())
    };
    assert_eq!(
        accepted(
            ldaps_source(&dir, starttls.clone())
                .verify("bob", "bob-secret")
                .await
        )
        .user,
        "bob"
    );

    // Signed by another CA: no answer at all, and the error says why.
    for section in [ldaps, starttls] {
        let wrong_ca = LdapSection {
            ca_file: Some("other-ca.pem".into()),
            ..section
        };
        let err = ldaps_source(&dir, wrong_ca)
            .verify("bob", "bob-secret")
            .await
            .unwrap_err();
        let text = err.to_string().to_lowercase();
        assert!(
            text.contains("certificate") || text.contains("issuer"),
            "{text}"
        );
    }
}

fn ldaps_source(dir: &tempfile::TempDir, section: LdapSection) -> LdapSource {
    ldap_source(dir.path(), section)
}

/// A users file with `breakglass` (group `breakglass`) and `ops` (group `operators`).
fn users_file(dir: &Path) {
    let text = LocalUsers::upsert_text(
        "",
        "breakglass",
        &hash_password("glass-secret").unwrap(),
        Some(&["breakglass".to_string()]),
    );
    let text = LocalUsers::upsert_text(
        &text,
        "ops",
        &hash_password("ops-secret").unwrap(),
        Some(&["operators".to_string()]),
    );
    std::fs::write(dir.join("users"), text).unwrap();
}

fn both_sources(dir: &Path, url: &str, local: LocalSection) -> PasswordSignin {
    users_file(dir);
    PasswordSignin::new(&settings(
        dir,
        PasswordSigninSection {
            enabled: true,
            methods: vec![Method::Ldap, Method::Local],
            ldap: search_section(url),
            local: LocalSection {
                users_file: Some("users".into()),
                ..local
            },
            ..Default::default()
        },
    ))
    .unwrap()
}

#[tokio::test]
async fn ldap_down_is_a_clear_error_and_local_still_works() {
    let mut slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let signin = both_sources(dir.path(), &slapd.url(), LocalSection::default());
    let alice = signin
        .sign_in(client(), "alice", "alice-secret")
        .await
        .unwrap();
    assert_eq!(alice.method, Method::Ldap);

    slapd.stop();
    let glass = signin
        .sign_in(client(), "breakglass", "glass-secret")
        .await
        .unwrap();
    assert_eq!(glass.method, Method::Local);
    assert_eq!(glass.identity.groups, vec!["breakglass"]);
    // bob is only in the directory: the answer says the directory is down, not "wrong".
    let err = signin
        .sign_in(client(), "bob", "bob-secret")
        .await
        .unwrap_err();
    assert_eq!(err.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    let reason = err.reason();
    assert!(
        reason.starts_with("source_unavailable: ldap=unavailable ("),
        "{reason}"
    );
    assert!(reason.ends_with("local=unknown_user"), "{reason}");
    assert!(!reason.contains("bob-secret"));

    // Nothing listening at all (a port no one bound): the same clear error.
    let free = slapd::free_port();
    let nowhere = ldap_source(
        dir.path(),
        search_section(&format!("ldap://127.0.0.1:{free}")),
    );
    let err = nowhere
        .verify("bob", "bob-secret")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("cannot connect to ldap://127.0.0.1:"),
        "{err}"
    );
}

#[tokio::test]
async fn methods_can_be_restricted_to_users_or_groups() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let signin = both_sources(
        dir.path(),
        &slapd.url(),
        LocalSection {
            allowed_users: vec!["breakglass".into()],
            ..Default::default()
        },
    );
    assert_eq!(
        signin
            .sign_in(client(), "breakglass", "glass-secret")
            .await
            .unwrap()
            .method,
        Method::Local
    );
    let err = signin
        .sign_in(client(), "ops", "ops-secret")
        .await
        .unwrap_err();
    assert_eq!(
        err.reason(),
        "invalid_credentials: ldap=unknown_user local=not_allowed (user is not in allowed_users)"
    );
    // Same answer for the client as any wrong password.
    assert_eq!(
        err.user_message(),
        "The user name or password is not correct."
    );

    let dir = tempfile::tempdir().unwrap();
    users_file(dir.path());
    let ldap_admins = PasswordSignin::new(&settings(
        dir.path(),
        PasswordSigninSection {
            enabled: true,
            methods: vec![Method::Ldap],
            ldap: LdapSection {
                allowed_groups: vec!["admins".into()],
                ..search_section(&slapd.url())
            },
            ..Default::default()
        },
    ))
    .unwrap();
    assert!(ldap_admins
        .sign_in(client(), "alice", "alice-secret")
        .await
        .is_ok());
    let err = ldap_admins
        .sign_in(client(), "bob", "bob-secret")
        .await
        .unwrap_err();
    assert!(
        err.reason()
            .contains("not a member of any allowed group (admins)"),
        "{}",
        err.reason()
    );
}

#[tokio::test]
async fn the_cache_spares_the_directory_and_wrong_passwords_are_not_cached() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let signin = both_sources(dir.path(), &slapd.url(), LocalSection::default());
    signin
        .sign_in(client(), "alice", "alice-secret")
        .await
        .unwrap();
    let after_first = signin.work();
    for _ in 0..20 {
        signin
            .sign_in(client(), "alice", "alice-secret")
            .await
            .unwrap();
    }
    assert_eq!(signin.work(), after_first, "cache hits reach no source");
    assert_eq!(signin.cached_credentials(), 1);
    // A different password is a miss, and its failure is not cached.
    assert!(signin
        .sign_in(client(), "alice", "alice-secreT")
        .await
        .is_err());
    assert!(signin
        .sign_in(client(), "alice", "alice-secreT")
        .await
        .is_err());
    assert_eq!(signin.work().ldap_binds, after_first.ldap_binds + 2);
}

#[tokio::test]
async fn repeated_failures_lock_a_name_known_or_not() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    users_file(dir.path());
    let signin = PasswordSignin::new(&settings(
        dir.path(),
        PasswordSigninSection {
            enabled: true,
            methods: vec![Method::Ldap],
            ldap: search_section(&slapd.url()),
            lockout_failures: 3,
            user_attempts_burst: 100,
            client_attempts_burst: 100,
            ..Default::default()
        },
    ))
    .unwrap();
    for name in ["bob", "nobody"] {
        for _ in 0..3 {
            let err = signin.sign_in(client(), name, "guess").await.unwrap_err();
            assert_eq!(err.kind(), "invalid_credentials");
        }
        let binds = signin.work().ldap_binds;
        // Locked: even the right password is not tried.
        let err = signin
            .sign_in(client(), name, "bob-secret")
            .await
            .unwrap_err();
        assert_eq!(err, SigninError::Braked(Brake::LockedOut), "{name}");
        assert_eq!(signin.work().ldap_binds, binds);
    }
    // Another name is unaffected.
    assert!(signin
        .sign_in(client(), "alice", "alice-secret")
        .await
        .is_ok());
}

#[tokio::test]
async fn per_client_budget_stops_a_spray() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let signin = PasswordSignin::new(&settings(
        dir.path(),
        PasswordSigninSection {
            enabled: true,
            methods: vec![Method::Ldap],
            ldap: search_section(&slapd.url()),
            client_attempts_burst: 4,
            client_attempts_per_minute: 1,
            ..Default::default()
        },
    ))
    .unwrap();
    let mut kinds = Vec::new();
    for i in 0..6 {
        let err = signin
            .sign_in(client(), &format!("user{i}"), "guess")
            .await
            .unwrap_err();
        kinds.push(err.kind());
    }
    assert_eq!(
        kinds,
        [
            "invalid_credentials",
            "invalid_credentials",
            "invalid_credentials",
            "invalid_credentials",
            "client_rate_limited",
            "client_rate_limited"
        ]
    );
    // Another client still has its budget.
    let other: IpAddr = "192.0.2.99".parse().unwrap();
    assert!(signin.sign_in(other, "alice", "alice-secret").await.is_ok());
}

/// Unknown name vs wrong password through LDAP then local: the same answer, the same work
/// (asserted), and timing distributions printed for the record (never asserted: speed is
/// measured, not tested).
#[tokio::test]
async fn unknown_users_and_wrong_passwords_cost_the_same() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let section = |d: &Path| {
        users_file(d);
        PasswordSigninSection {
            enabled: true,
            methods: vec![Method::Ldap, Method::Local],
            ldap: search_section(&slapd.url()),
            local: LocalSection {
                users_file: Some("users".into()),
                ..Default::default()
            },
            cache_ttl_secs: 0,
            client_attempts_burst: 10_000,
            user_attempts_burst: 10_000,
            lockout_failures: 10_000,
            ..Default::default()
        }
    };
    let signin = PasswordSignin::new(&settings(dir.path(), section(dir.path()))).unwrap();

    const ROUNDS: usize = 15;
    let mut samples: [(Vec<Duration>, Work, Option<SigninError>); 3] = Default::default();
    // (name, what it is): an LDAP user with a wrong password, a local user with a wrong
    // password, a name that exists nowhere.
    let cases = [
        ("bob", "ldap user"),
        ("ops", "local user"),
        ("nobody-here", "unknown"),
    ];
    for _ in 0..ROUNDS {
        for (i, (name, _)) in cases.iter().enumerate() {
            let before = signin.work();
            let start = Instant::now();
            let err = signin
                .sign_in(client(), name, "not-the-password")
                .await
                .unwrap_err();
            samples[i].0.push(start.elapsed());
            let after = signin.work();
            samples[i].1 = Work {
                ldap_binds: after.ldap_binds - before.ldap_binds,
                argon2_verifications: after.argon2_verifications - before.argon2_verifications,
            };
            samples[i].2 = Some(err);
        }
    }
    for (i, (name, what)) in cases.iter().enumerate() {
        let (times, work, err) = &samples[i];
        let err = err.as_ref().unwrap();
        assert_eq!(
            err.user_message(),
            "The user name or password is not correct.",
            "{name}"
        );
        assert_eq!(err.status(), http::StatusCode::UNAUTHORIZED);
        assert_eq!(
            *work,
            Work {
                ldap_binds: 1,
                argon2_verifications: 1
            },
            "{what} `{name}`: every failure costs one bind and one argon2 verification"
        );
        let mut sorted = times.clone();
        sorted.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        eprintln!(
            "enumeration timing, {what:<10} `{name}`: min {:.1} ms, median {:.1} ms, max {:.1} ms ({ROUNDS} runs)",
            ms(sorted[0]),
            ms(sorted[ROUNDS / 2]),
            ms(sorted[ROUNDS - 1])
        );
    }
}
