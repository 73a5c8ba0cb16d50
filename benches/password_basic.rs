//! HTTP Basic with the credential cache against the SAML-session path, in one run.
//!
//! One run (`cargo bench --bench password_basic`) starts a real OpenLDAP
//! (tests/support/slapd.rs), an in-process upstream and samlgate in-process (tokio, 2 worker
//! threads, `[log] level = "warn"`), then measures with `wrk -t1 -c32 -d<secs>s`:
//!
//! 1. `GET /app` with a SAML session cookie (signed in once with a minted response);
//! 2. `GET /api/items` with `Authorization: Basic` for an LDAP user, the credential cache on
//!    (the default 60 s): one bind, then cache hits;
//! 3. the same with the cache off (`cache_ttl_secs = 0`, limits raised out of the way): a
//!    search and a bind in slapd for every request, for scale.
//!
//! Every run must be all 2xx. A table (req/s, p50, p99, ratio to the session path) is printed
//! and written to `target/bench-password-basic.txt`. Knob: `PASSWORD_BENCH_SECS` (5).
//! Without `--bench` (as under `cargo test --all-targets`) it does nothing: it needs slapd,
//! ldap-utils and wrk (`scripts/install-deps.sh bench`).

#[path = "../tests/support/gateway.rs"]
mod gateway;
#[path = "../tests/support/mint.rs"]
mod mint;
#[path = "../tests/support/signin.rs"]
mod signin;
#[path = "../tests/support/slapd.rs"]
mod slapd;

use std::fmt::Write as _;
use std::process::Command;

use base64::Engine as _;

struct Wrk {
    label: &'static str,
    rps: f64,
    p50: String,
    p99: String,
    non_2xx: u64,
}

fn run_wrk(label: &'static str, url: &str, header: &str, secs: u64) -> Wrk {
    let out = Command::new("wrk")
        .args([
            "-t1",
            "-c32",
            &format!("-d{secs}s"),
            "--latency",
            "-H",
            header,
            url,
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!("wrk not found ({e}); install it with `scripts/install-deps.sh bench`")
        });
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_string()))
    };
    let rps = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"));
    let non_2xx = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Wrk {
        label,
        rps,
        p50: field("50%").unwrap_or_default(),
        p99: field("99%").unwrap_or_default(),
        non_2xx,
    }
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Authorization: Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn config(slapd: &slapd::Slapd, dir: &std::path::Path, cache_ttl: u64) -> String {
    std::fs::write(dir.join("service.pw"), slapd::SERVICE_PASSWORD).unwrap();
    format!(
        "[password_signin]\nenabled = true\nmethods = [\"ldap\"]\ncache_ttl_secs = {cache_ttl}\n\
         client_attempts_burst = 10000000\nclient_attempts_per_minute = 10000000\n\
         user_attempts_burst = 10000000\nuser_attempts_per_minute = 10000000\n\
         [password_signin.ldap]\nurl = \"{url}\"\nbind_dn = \"{svc}\"\nbind_password_file = \"{pw}\"\n\
         user_base = \"{people}\"\n\
         [[access.rules]]\nname = \"api\"\npath_prefix = \"/api/\"\naction = \"authenticate\"\nbasic_auth = true\n",
        url = slapd.url(),
        svc = slapd::SERVICE_DN,
        pw = dir.join("service.pw").display(),
        people = slapd::PEOPLE,
    )
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("password_basic: load test; run it with `cargo bench --bench password_basic`");
        return;
    }
    let secs: u64 = std::env::var("PASSWORD_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    samlgate::observability::init("human", "warn");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let slapd = slapd::Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let results = rt.block_on(async {
        let (idp, _up, gw) = signin::start_minted(&config(&slapd, dir.path(), 60)).await;
        let (_client, cookie) = signin::sign_in_as(&idp, &gw, "/app", |_| {}).await;
        let session = run_wrk(
            "SAML session cookie, /app",
            &gw.url("/app"),
            &format!("Cookie: {cookie}"),
            secs,
        );
        let cached = run_wrk(
            "Basic, credential cache on",
            &gw.url("/api/items"),
            &basic("alice", "alice-secret"),
            secs,
        );
        let (_idp2, _up2, gw2) = signin::start_minted(&config(&slapd, dir.path(), 0)).await;
        let uncached = run_wrk(
            "Basic, cache off (bind per request)",
            &gw2.url("/api/items"),
            &basic("alice", "alice-secret"),
            secs,
        );
        vec![session, cached, uncached]
    });
    let base = results[0].rps;
    let mut table = format!("password_basic: wrk -t1 -c32 -d{secs}s, samlgate on 2 tokio workers, slapd on loopback\n\n");
    let _ = writeln!(table, "| path | req/s | p50 | p99 | vs session | non-2xx |");
    let _ = writeln!(table, "|---|---:|---:|---:|---:|---:|");
    for r in &results {
        let _ = writeln!(
            table,
            "| {} | {:.0} | {} | {} | {:.2} | {} |",
            r.label,
            r.rps,
            r.p50,
            r.p99,
            r.rps / base,
            r.non_2xx
        );
    }
    print!("{table}");
    let _ = std::fs::create_dir_all("target");
    let _ = std::fs::write("target/bench-password-basic.txt", &table);
    for r in &results {
        assert_eq!(r.non_2xx, 0, "{}: every answer must be 2xx", r.label);
    }
}
