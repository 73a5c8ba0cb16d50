//! The SCIM endpoint against the `scim2-tester` conformance checker (PyPI), run on the live
//! gateway: discovery (`ServiceProviderConfig`, `ResourceTypes`, `Schemas`), then create, read,
//! query, replace, PATCH add/replace/remove and delete for every attribute the published
//! schemas declare, on Users and Groups. Every check it runs must pass (SUCCESS, COMPLIANT or
//! ACCEPTABLE); a DEVIATION, ERROR or CRITICAL fails the test with its title and reason.
//!
//! Run twice: on the embedded store, and on the shared Redis store (`[state] backend =
//! "redis"`, a real `redis-server`), which must behave alike.
//!
//! The checker lives in a venv that `scripts/install-scim-check.sh` builds (pinned versions);
//! without it the test fails with that hint, it is never skipped.

#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/mint.rs"]
mod mint;
#[path = "support/redis.rs"]
mod redis_server;
#[path = "support/scim.rs"]
mod scim;

use std::path::PathBuf;

use serde_json::Value;

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("SAMLGATE_SCIM_CHECK_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache")
                });
            cache.join("samlgate/scim-check-venv")
        });
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "scim2-tester is not installed in {}: run scripts/install-scim-check.sh",
        venv.display()
    );
    python
}

#[tokio::test]
async fn scim2_tester_finds_no_fault() {
    run_checker("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim2_tester_finds_no_fault_with_the_redis_store() {
    let redis = redis_server::RedisServer::start();
    let state = format!(
        "[state]\nbackend = \"redis\"\nredis_url = \"{}\"\n",
        redis.url()
    );
    run_checker(&state).await;
    // The checker's changes went to Redis.
    let mut c = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let version: u64 = redis::cmd("GET")
        .arg("{samlgate:scim}:version")
        .query_async(&mut c)
        .await
        .expect("version");
    eprintln!("SCIM changes stored in Redis: {version}");
    assert!(version >= 20, "only {version} changes reached Redis");
}

/// Runs the checker against a gateway with `[scim]` plus `extra_toml`; every check it runs
/// must pass.
async fn run_checker(extra_toml: &str) {
    let python = venv_python();
    let dir = scim::ScimDir::new();
    let idp = mint::TestIdp::generate("https://idp.test/metadata");
    let up = gateway::start_upstream().await;
    let opts = gateway::Options {
        // The checker sends a few hundred requests in seconds.
        extra_toml: format!(
            "{}{extra_toml}",
            dir.toml("rate_limit_per_second = 10000\nrate_limit_burst = 10000")
        ),
        ..Default::default()
    };
    let gw =
        gateway::start_gateway(&up.url(), &idp.metadata_xml("https://idp.test/sso"), opts).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scim_check/check.py");
    let base = gw.url("/scim/v2");
    // On the blocking pool: the gateway keeps serving on the test's runtime meanwhile.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&python)
            .arg(script)
            .arg(base)
            .arg(scim::TOKEN)
            .output()
            .expect("python runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "checker failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let count = |s: &str| results.iter().filter(|r| r["status"] == s).count();
    let passed = count("SUCCESS") + count("COMPLIANT") + count("ACCEPTABLE");
    let failed: Vec<&Value> = results
        .iter()
        .filter(|r| {
            matches!(
                r["status"].as_str(),
                Some("DEVIATION" | "ERROR" | "CRITICAL")
            )
        })
        .collect();
    eprintln!(
        "scim2-tester: {} checks: {passed} passed, {} failed, {} skipped",
        results.len(),
        failed.len(),
        count("SKIPPED")
    );
    for f in &failed {
        eprintln!("FAILED {f}");
    }
    assert!(
        failed.is_empty(),
        "{} checks failed (listed above)",
        failed.len()
    );
    // The checker really exercised both resource types (not only discovery).
    for rt in ["User", "Group"] {
        let ran = results
            .iter()
            .filter(|r| r["resource_type"] == rt && r["status"] != "SKIPPED")
            .count();
        assert!(ran >= 10, "only {ran} checks ran on {rt}");
    }
    assert_eq!(up.count(), 0, "no SCIM request reached the upstream");
}
