//! What SCIM adds per request, and what its list filter costs, on a directory of 10,000 users
//! and 500 groups of 20 members: `Scim::view` (the admission check plus, with `groups_source`
//! `both`, the merged groups and the identity headers rendered again) against `assertion` (admission
//! only), and `GET /Users?filter=userName eq "…"` through `Scim::handle` (the lookup Okta and
//! Entra ID make before every create).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::Full;
use samlgate::config::HeadersSection;
use samlgate::deprovision::Deprovisioner;
use samlgate::identity::{render_identity_headers, HeaderSettings, Roles};
use samlgate::scim::resources::Kind;
use samlgate::scim::settings::{GroupsSource, ScimSettings};
use samlgate::scim::store::{MemoryBackend, Write};
use samlgate::scim::Scim;
use samlgate::session::memory::MemoryStore;
use samlgate::session::{Identity, Session};
use serde_json::json;

const TOKEN: &str = "bench-token-0123456789abcdefghijklmnopqrstuvwxyz";

fn scim(rt: &tokio::runtime::Runtime, source: GroupsSource) -> Scim {
    let settings = ScimSettings {
        path: "/scim/v2".into(),
        tokens: vec![TOKEN.into()],
        db_file: "/nonexistent/scim.redb".into(),
        max_body_bytes: 1 << 20,
        rate_limit_per_second: 1_000_000,
        rate_limit_burst: 1_000_000,
        groups_source: source,
        require_provisioned: false,
        max_resources: 1_000_000,
        max_page_size: 200,
    };
    let sessions = Arc::new(MemoryStore::new(1000, Duration::from_secs(600)));
    let deprovision = Arc::new(Deprovisioner::new(sessions));
    let backend = Arc::new(MemoryBackend::default());
    let s = Scim::with_backend(settings, "https://gw", deprovision, backend).expect("scim");
    let mut batch = Vec::new();
    for i in 0..10_000 {
        let u = json!({"id": format!("u{i}"), "userName": format!("user{i}@example.com"),
            "active": true, "meta": {"created": format!("2026-01-01T00:00:{i:05}Z")}});
        batch.push(Write::Put(
            Kind::User,
            format!("u{i}"),
            serde_json::to_vec(&u).expect("json"),
        ));
    }
    for g in 0..500 {
        let members: Vec<_> = (0..20)
            .map(|m| json!({"value": format!("u{}", (g * 20 + m) % 10_000)}))
            .collect();
        let doc =
            json!({"id": format!("g{g}"), "displayName": format!("group-{g}"), "members": members});
        batch.push(Write::Put(
            Kind::Group,
            format!("g{g}"),
            serde_json::to_vec(&doc).expect("json"),
        ));
    }
    rt.block_on(async {
        let _turn = s.directory.lock().await.expect("lock");
        s.directory.commit(batch).await.expect("commit");
    });
    s
}

fn session(user: &str) -> Arc<Session> {
    let cfg = HeaderSettings::from_config(&HeadersSection::default());
    let identity = Identity {
        user: user.into(),
        groups: vec!["staff".into(), "analysts".into()],
        ..Identity::default()
    };
    let headers =
        render_identity_headers(&identity, &Roles::new(Vec::new(), None), &cfg).expect("values");
    let now = SystemTime::now();
    Arc::new(Session {
        identity,
        headers,
        created_at: now,
        expires_at: now + Duration::from_secs(3600),
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let cfg = HeaderSettings::from_config(&HeadersSection::default());
    let roles = Roles::new(Vec::new(), None);
    let s = session("user4321@example.com");
    let mut group = c.benchmark_group("scim");
    for (name, source) in [
        ("view_assertion", GroupsSource::Assertion),
        ("view_both", GroupsSource::Both),
    ] {
        let scim = scim(&rt, source);
        group.bench_function(name, |b| {
            b.iter(|| {
                let render = |id: &Identity| render_identity_headers(id, &roles, &cfg);
                black_box(scim.view(black_box(&s), render))
            })
        });
    }
    let scim = scim(&rt, GroupsSource::Assertion);
    let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
    group.bench_function("list_filter_user_name_eq_10k", |b| {
        b.iter(|| {
            let req = http::Request::get(
                "/scim/v2/Users?filter=userName%20eq%20%22user9876%40example.com%22",
            )
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Full::new(Bytes::new()))
            .expect("request");
            let r = rt.block_on(scim.handle(req, client));
            assert_eq!(r.status(), 200);
            black_box(r)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
