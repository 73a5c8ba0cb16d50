//! The shared state backend's cost: `[state] backend = "redis"` against the default `"memory"`,
//! in the same run, on loopback (`cargo bench --bench state_backend`):
//!
//! - authenticated proxy throughput with a warm cache: samlgate in-process (2 worker threads)
//!   in front of nginx (`return 200`), `wrk -t2 -c64 -d10s` with a session cookie, memory and
//!   redis in `STATE_BENCH_PAIRS` (4) pairs, the order swapped every pair so drift falls on
//!   both alike; the median of the pairs' redis/memory ratios is the figure (the local moka
//!   cache answers every request, so Redis only sees the occasional TTL renewal);
//! - sign-ins: `STATE_BENCH_SIGNINS` (300) ACS posts of minted responses (both signatures, 40
//!   groups), 16 at a time, after their sign-ins were started; sign-ins per second and the
//!   p50/p99 ACS latency for each backend (with Redis: the pending claim, the replay check and
//!   the session write are three round trips);
//! - Redis memory per session: `STATE_BENCH_SESSIONS` (100,000) sessions (10 groups, e-mail,
//!   display name) written through the backend, `used_memory` before and after, divided.
//!
//! The table is printed and written to `target/bench-state-backend.txt`. Needs nginx, wrk and
//! redis-server (`scripts/install-deps.sh bench`). Without `--bench` it does nothing.

#[path = "../tests/support/gateway.rs"]
mod gateway;
#[path = "support/load.rs"]
mod load;
#[path = "../tests/support/mint.rs"]
mod mint;
#[path = "../tests/support/nginx.rs"]
mod nginx;
#[path = "../tests/support/redis.rs"]
mod redis_server;

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use gateway::{
    begin_login, client, post_acs, session_cookie, start_gateway, Options, TestGateway,
    HIGH_RATE_LIMITS,
};
use load::{env_num, http_get, start_upstream};
use mint::{ResponseSpec, TestIdp};
use redis_server::RedisServer;
use tokio::runtime::Runtime;

const IDP_ENTITY: &str = "https://idp.bench.example/metadata";
const IDP_SSO: &str = "https://idp.bench.example/sso";

/// requests/s and p99 from `wrk --latency` output.
fn parse_wrk(out: &str) -> Option<(f64, String)> {
    let rps = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))?
        .trim()
        .parse()
        .ok()?;
    let p99 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))?
        .trim()
        .to_string();
    Some((rps, p99))
}

fn wrk(label: &str, url: &str, cookie: &str, secs: u64) -> (f64, String) {
    eprintln!("state_backend: wrk {label} for {secs} s");
    let out = Command::new("wrk")
        .args(["-t2", "-c64", &format!("-d{secs}s"), "--latency", "-H"])
        .arg(format!("Cookie: {cookie}"))
        .arg(format!("{url}/"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run wrk ({e}): scripts/install-deps.sh bench"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !text.contains("Non-2xx"),
        "{label}: the session did not work\n{text}"
    );
    parse_wrk(&text).unwrap_or_else(|| panic!("cannot parse wrk output:\n{text}"))
}

fn state_toml(backend: &str, redis: &RedisServer) -> String {
    match backend {
        "redis" => format!(
            "{HIGH_RATE_LIMITS}[state]\nbackend = \"redis\"\nredis_url = \"{}\"\n",
            redis.url()
        ),
        _ => HIGH_RATE_LIMITS.to_string(),
    }
}

fn spec(idp: &TestIdp, gw: &TestGateway, req_id: &str) -> ResponseSpec {
    ResponseSpec::valid(idp, &gw.sp_entity_id(), &gw.acs_url(), Some(req_id))
        .with_directory_attributes(40)
}

/// Sign-ins: all started and minted first, then posted `concurrency` at a time. Returns
/// (sign-ins per second, sorted latencies).
async fn sign_ins(
    idp: &TestIdp,
    gw: &TestGateway,
    n: usize,
    concurrency: usize,
) -> (f64, Vec<Duration>) {
    let mut pending = Vec::with_capacity(n);
    for _ in 0..n {
        let c = client();
        let (req_id, relay) = begin_login(&c, gw, "/").await;
        pending.push((c, relay, mint::mint_b64(idp, &spec(idp, gw, &req_id))));
    }
    let pending = Arc::new(tokio::sync::Mutex::new(pending));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let pending = pending.clone();
        let acs = gw.acs_url();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while let Some((c, relay, resp)) = pending.lock().await.pop() {
                let t = Instant::now();
                let r =
                    gateway::post_saml_response(&c, &acs, &resp, Some(&relay), gateway::HTML).await;
                assert_eq!(r.status(), 303, "sign-in failed");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    all.sort();
    (rate, all)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

async fn session_cookie_for(idp: &TestIdp, gw: &TestGateway) -> String {
    let c = client();
    let (req_id, relay) = begin_login(&c, gw, "/").await;
    let r = post_acs(
        &c,
        gw,
        &mint::mint_b64(idp, &spec(idp, gw, &req_id)),
        Some(&relay),
    )
    .await;
    session_cookie(&r).expect("session cookie")
}

/// `used_memory` of the Redis server.
fn used_memory(redis: &RedisServer) -> u64 {
    let mut conn = redis.client().get_connection().expect("redis");
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query(&mut conn)
        .expect("info");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory")
}

async fn memory_per_session(redis: &RedisServer, n: usize) -> (u64, f64) {
    use samlgate::session::{Identity, IdentityHeaderValues, Session, SessionKey};
    use samlgate::state::{Limits, RedisSettings, State, StateSettings};
    let settings = StateSettings::Redis(RedisSettings {
        key_prefix: "mem:".into(),
        grace: Duration::from_secs(30),
        command_timeout: Duration::from_secs(5),
        ..RedisSettings::single(redis.url())
    });
    let limits = Limits {
        max_sessions: 1000,
        idle_timeout: Duration::from_secs(3600),
        login_timeout: Duration::from_secs(300),
        clock_skew: Duration::from_secs(90),
    };
    let state = State::new(&settings, &[9; 32], limits).expect("state");
    let before = used_memory(redis);
    let sessions = state.sessions.clone();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let sessions = sessions.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let user = format!("user{i:06}@example.com");
                let now = SystemTime::now();
                let groups: Vec<String> = (0..10).map(|g| format!("group-{g}")).collect();
                let session = Session {
                    headers: IdentityHeaderValues {
                        user: http::HeaderValue::from_str(&user).expect("header"),
                        email: Some(http::HeaderValue::from_str(&user).expect("header")),
                        groups: Some(http::HeaderValue::from_str(&groups.join(",")).expect("h")),
                        preferred_username: None,
                        role_name: None,
                        role: None,
                        attributes: Vec::new(),
                    },
                    identity: Identity {
                        email: Some(user.clone()),
                        display_name: Some(format!("User {i}")),
                        name_id: format!("nameid-{i:06}-persistent-opaque-identifier"),
                        session_index: Some(format!("_session-index-{i}")),
                        user,
                        groups,
                        ..Identity::default()
                    },
                    created_at: now,
                    expires_at: now + Duration::from_secs(8 * 3600),
                };
                let mut id = [0u8; 32];
                id[..8].copy_from_slice(&(i as u64).to_le_bytes());
                sessions
                    .try_insert(SessionKey::from_id(&id), Arc::new(session))
                    .await
                    .expect("insert");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let after = used_memory(redis);
    (after - before, (after - before) as f64 / n as f64)
}

fn gateway_on(rt: &Runtime, upstream: &str, idp: &TestIdp, toml: String) -> TestGateway {
    rt.block_on(start_gateway(
        upstream,
        &idp.metadata_xml(IDP_SSO),
        Options {
            extra_toml: toml,
            ..Options::default()
        },
    ))
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs = env_num("STATE_BENCH_SECS", 10u64);
    let n_signins = env_num("STATE_BENCH_SIGNINS", 300usize);
    let n_sessions = env_num("STATE_BENCH_SESSIONS", 100_000usize);
    let upstream = start_upstream(4096);
    let redis = RedisServer::start();
    let idp = TestIdp::generate(IDP_ENTITY);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let mut out = String::new();
    let _ = writeln!(
        out,
        "state backend benchmark (wrk -t2 -c64 -d{secs}s, 2 worker threads)"
    );
    // Pairs in alternating order (memory first, then redis first) so that drift of the
    // machine's speed falls on both backends alike; the figure is the median of the pairs'
    // ratios.
    let pairs = env_num("STATE_BENCH_PAIRS", 4);
    let mut ratios = Vec::new();
    for pair in 0..pairs {
        let order = if pair % 2 == 0 {
            ["memory", "redis"]
        } else {
            ["redis", "memory"]
        };
        let mut rps = [0.0f64; 2];
        for backend in order {
            let gw = gateway_on(&rt, &upstream.url(), &idp, state_toml(backend, &redis));
            let cookie = rt.block_on(session_cookie_for(&idp, &gw));
            let (status, _) = http_get(gw.addr.port(), "/", &[&format!("Cookie: {cookie}")]);
            assert_eq!(status, 200, "{backend}: the session works");
            let (r, p99) = wrk(backend, &gw.base, &cookie, secs);
            let _ = writeln!(
                out,
                "proxy, warm cache, {backend:6}: {r:>9.0} req/s  p99 {p99}"
            );
            rps[usize::from(backend == "redis")] = r;
            drop(gw);
        }
        let ratio = rps[1] / rps[0];
        let _ = writeln!(out, "  pair {}: redis / memory {ratio:.3}", pair + 1);
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    let median = match ratios.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => ratios[n / 2],
        n => (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0,
    };
    let _ = writeln!(
        out,
        "proxy throughput redis / memory: median of {pairs} pairs {median:.3} (lowest {:.3}, highest {:.3})",
        ratios.first().copied().unwrap_or(f64::NAN),
        ratios.last().copied().unwrap_or(f64::NAN),
    );

    for backend in ["memory", "redis"] {
        let gw = gateway_on(&rt, &upstream.url(), &idp, state_toml(backend, &redis));
        let (rate, lat) = rt.block_on(sign_ins(&idp, &gw, n_signins, 16));
        let _ = writeln!(
            out,
            "sign-ins, {backend:6}: {rate:>7.1} /s ({n_signins} posts, 16 at a time), ACS latency p50 {:?} p99 {:?}",
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        );
    }

    let (bytes, per) = rt.block_on(memory_per_session(&redis, n_sessions));
    let _ = writeln!(
        out,
        "redis memory for {n_sessions} sessions (10 groups each, with indexes): {bytes} bytes, {per:.0} bytes/session"
    );
    print!("{out}");
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-state-backend.txt");
    let _ = std::fs::write(&path, &out);
    eprintln!("written to {}", path.display());
}
