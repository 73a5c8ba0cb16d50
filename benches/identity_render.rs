//! Cost of `identity::render_identity_headers`: what a sign-in pays once, and what rendering
//! per request (after a SCIM group change) would cost. An ASCII identity with the default
//! settings; a non-ASCII one (Latin-2 name, 50 Cyrillic groups, a forwarded attribute) under
//! each encoding; the role lookup alone against 20 `[[roles]]` entries.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use http::HeaderName;
use samlgate::identity::{
    render_identity_headers, HeaderEncoding, HeaderSettings, RoleRule, Roles,
};
use samlgate::session::Identity;

fn identity(non_ascii: bool) -> Identity {
    let (name, group) = if non_ascii {
        ("Zoë Łukasiewicz", "Разработчики-")
    } else {
        ("Zoe Lukasiewicz", "developers-")
    };
    Identity {
        user: "zoe@example.com".into(),
        email: Some("zoe@example.com".into()),
        display_name: Some(name.into()),
        groups: (0..50).map(|i| format!("{group}{i}")).collect(),
        attributes: vec![("department".into(), vec![format!("{group}dept")])],
        ..Identity::default()
    }
}

fn roles() -> Roles {
    let rules = (0..20)
        .map(|i| RoleRule {
            role: format!("role-{i}"),
            groups: vec![format!("nobody-{i}"), format!("nothing-{i}")],
            users: vec![],
        })
        .collect();
    Roles::new(rules, Some("Viewer".into()))
}

fn settings(encoding: HeaderEncoding) -> HeaderSettings {
    HeaderSettings {
        encoding,
        separator: ",".into(),
        attributes: vec![(
            "department".into(),
            HeaderName::from_static("x-forwarded-department"),
        )],
    }
}

fn bench(c: &mut Criterion) {
    let roles = roles();
    let ascii = identity(false);
    c.bench_function("render/ascii-50-groups/rfc2047", |b| {
        let s = settings(HeaderEncoding::Rfc2047);
        b.iter(|| render_identity_headers(black_box(&ascii), &roles, &s).expect("renders"))
    });
    let zoe = identity(true);
    for (label, enc) in [
        ("rfc2047", HeaderEncoding::Rfc2047),
        ("quoted-printable", HeaderEncoding::QuotedPrintable),
        ("percent", HeaderEncoding::Percent),
        ("raw", HeaderEncoding::Raw),
    ] {
        let s = settings(enc);
        c.bench_function(&format!("render/non-ascii-50-groups/{label}"), |b| {
            b.iter(|| render_identity_headers(black_box(&zoe), &roles, &s).expect("renders"))
        });
    }
    c.bench_function("role_for/20-rules-50-groups-no-match", |b| {
        b.iter(|| roles.role_for(black_box(&zoe)).map(str::len))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
