//! What SCIM adds per request, and what its list filter costs, on a directory of 10,000 users
//! and 500 groups of 20 members: `Scim::view` (the admission check plus, with `groups_source`
//! `both`, the merged groups and the identity headers rendered again) against `assertion` (admission
//! only), and `GET /Users?filter=userName eq "…"` through `Scim::handle` (the lookup Okta and
//! Entra ID make before every create). Then the cost of one change (`PATCH` of a user's
//! `active`, through `Scim::handle`, 1,000 users stored) on the embedded redb store against the
//! shared Redis store (a real `redis-server` on loopback: the version check, the write script,
//! sealing).

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
use samlgate::scim::redis_store::RedisBackend;
use samlgate::scim::resources::Kind;
use samlgate::scim::settings::{GroupsSource, ScimSettings};
use samlgate::scim::store::{Backend, MemoryBackend, RedbBackend, Write};
use samlgate::scim::Scim;
use samlgate::session::memory::MemoryStore;
use samlgate::session::{Identity, Session};
use samlgate::state::redis::Shared;
use samlgate::state::{Limits, RedisSettings};
use serde_json::json;

#[path = "../tests/support/redis.rs"]
mod redis_server;

const TOKEN: &str = "bench-token-0123456789abcdefghijklmnopqrstuvwxyz";

fn settings(source: GroupsSource) -> ScimSettings {
    ScimSettings {
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
    }
}

fn scim(rt: &tokio::runtime::Runtime, source: GroupsSource) -> Scim {
    let s = with_backend(Arc::new(MemoryBackend::default()), source);
    fill(rt, &s, 10_000, 500);
    s
}

fn with_backend(backend: Arc<dyn Backend>, source: GroupsSource) -> Scim {
    let sessions = Arc::new(MemoryStore::new(1000, Duration::from_secs(600)));
    let deprovision = Arc::new(Deprovisioner::new(sessions));
    Scim::with_backend(settings(source), "https://gw", deprovision, backend).expect("scim")
}

/// `users` users and `groups` groups of 20 members.
fn fill(rt: &tokio::runtime::Runtime, s: &Scim, users: usize, groups: usize) {
    let mut batch = Vec::new();
    for i in 0..users {
        let u = json!({"id": format!("u{i}"), "userName": format!("user{i}@example.com"),
            "active": true, "meta": {"created": format!("2026-01-01T00:00:{i:05}Z")}});
        batch.push(Write::Put(
            Kind::User,
            format!("u{i}"),
            serde_json::to_vec(&u).expect("json"),
        ));
    }
    for g in 0..groups {
        let members: Vec<_> = (0..20)
            .map(|m| json!({"value": format!("u{}", (g * 20 + m) % users)}))
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
}

/// One `PATCH` setting user `u7`'s `active` to `on`, which must succeed.
fn patch_active(rt: &tokio::runtime::Runtime, s: &Scim, on: bool) {
    let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": on}]});
    let req = http::Request::patch("/scim/v2/Users/u7")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/scim+json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let r = rt.block_on(s.handle(req, IpAddr::V4(Ipv4Addr::LOCALHOST)));
    assert_eq!(r.status(), 200);
}

/// A change on the embedded store against one on the shared Redis store.
fn bench_store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let dir = tempfile::tempdir().expect("tempdir");
    let redb = RedbBackend::open(&dir.path().join("scim.redb")).expect("redb");
    let redis = redis_server::RedisServer::start();
    let shared = rt.block_on(async {
        Shared::new(
            &RedisSettings {
                key_prefix: "bench:".into(),
                command_timeout: Duration::from_secs(2),
                ..RedisSettings::single(redis.url())
            },
            &[7; 32],
            Limits {
                max_sessions: 1000,
                idle_timeout: Duration::from_secs(600),
                login_timeout: Duration::from_secs(300),
                clock_skew: Duration::from_secs(60),
            },
        )
        .expect("redis backend")
    });
    let mut group = c.benchmark_group("scim_store");
    let stores: [(&str, Arc<dyn Backend>); 2] = [
        ("patch_redb", Arc::new(redb)),
        ("patch_redis", Arc::new(RedisBackend::new(shared))),
    ];
    for (name, backend) in stores {
        let s = with_backend(backend, GroupsSource::Both);
        rt.block_on(async {
            // The shared store is read by the sync task (a no-op for redb).
            while !s.ready() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        fill(&rt, &s, 1000, 50);
        let mut on = false;
        group.bench_function(name, |b| {
            b.iter(|| {
                patch_active(&rt, &s, on);
                on = !on;
            })
        });
    }
    group.finish();
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

criterion_group!(benches, bench, bench_store);
criterion_main!(benches);
