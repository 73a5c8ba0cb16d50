//! ACS verification cost for one realistic sign-in: a minted Response with both signatures
//! (Response and Assertion, rsa-sha256, exclusive c14n) and ~40 group values.
//!
//! - `acs/decode_and_screen`: base64 decode + structural pre-filter (async-worker side).
//! - `acs/verify_signed`: samael/libxmlsec1 signature verification + policy checks
//!   (blocking-pool side).
//! - `acs/full`: both, as the gateway runs them for one POST to the ACS.
//!
//! After criterion, the CPU time of one whole verification is measured with the thread's
//! scheduler clock (`/proc/thread-self/schedstat`) and compared with the 1 ms target.
//!
//! Run: `cargo bench --bench acs`.

#[path = "../tests/support/mint.rs"]
mod mint;
#[path = "../tests/support/verifier.rs"]
mod support_verifier;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::Criterion;
use mint::{ResponseSpec, TestIdp};
use samlgate::saml::verify::Verifier;

const IDP_ENTITY: &str = "https://idp.bench.example/metadata";
const IDP_SSO: &str = "https://idp.bench.example/sso";
const PUBLIC_URL: &str = "https://app.bench.example";
/// Target: at most this much CPU per sign-in for the whole ACS verification.
const CPU_TARGET: Duration = Duration::from_millis(1);
const GROUPS: usize = 40;

/// Group counts for `acs_groups/verify_signed/N` (how the cost grows with the response).
const GROUP_SCALING: [usize; 4] = [0, 10, 40, 160];

/// A valid response as a directory-backed IdP sends it: both signatures, the usual
/// attributes and `groups` LDAP-style group DNs.
fn realistic_spec(
    idp: &TestIdp,
    sp_entity_id: &str,
    acs_url: &str,
    req_id: &str,
    groups: usize,
) -> ResponseSpec {
    let spec = ResponseSpec::valid(idp, sp_entity_id, acs_url, Some(req_id))
        .with_directory_attributes(groups);
    assert!(spec.sign_response && spec.sign_assertion);
    spec
}

/// Builds the verifier exactly as the gateway does (tests/support/verifier.rs).
fn verifier(idp: &TestIdp, dir: &Path) -> Verifier {
    support_verifier::verifier(&idp.metadata_xml(IDP_SSO), PUBLIC_URL, dir)
}

/// CPU time the calling thread has used so far (scheduler clock, ns resolution).
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not (criterion then
    // runs each benchmark once as a smoke test, and so does the CPU measurement).
    let full_run = std::env::args().any(|a| a == "--bench");

    let dir = tempfile::tempdir().unwrap();
    let idp = TestIdp::generate(IDP_ENTITY);
    let verifier = verifier(&idp, dir.path());
    let req_id = mint::new_id();
    let spec = realistic_spec(
        &idp,
        &verifier.sp_entity_id,
        &verifier.acs_url,
        &req_id,
        GROUPS,
    );
    let b64 = mint::mint_b64(&idp, &spec);

    let (xml, facts) = match verifier.decode_and_screen(&b64) {
        Ok(v) => v,
        Err(e) => panic!(
            "the pre-filter refused a valid minted response ({}): {}",
            e.kind(),
            e.reason()
        ),
    };
    let accepted = verifier
        .verify_signed(&xml, &facts, Some(&req_id), Utc::now())
        .unwrap_or_else(|e| panic!("valid minted response refused: {}", e.reason()));
    let groups = accepted
        .attributes
        .iter()
        .find(|a| a.name == "groups")
        .map_or(0, |a| a.values.len());
    assert_eq!(groups, GROUPS);
    println!(
        "acs: response {} bytes XML / {} bytes base64, Response and Assertion signed, {} groups",
        xml.len(),
        b64.len(),
        groups
    );

    // The minted response is valid for 5 minutes after minting; criterion's default of
    // 3 s warm-up + 5 s measurement per benchmark stays well inside that.
    let mut c = Criterion::default().configure_from_args();
    {
        let mut g = c.benchmark_group("acs");
        g.bench_function("decode_and_screen", |b| {
            b.iter(|| black_box(verifier.decode_and_screen(black_box(&b64)).is_ok()))
        });
        g.bench_function("verify_signed", |b| {
            b.iter(|| {
                let r = verifier.verify_signed(
                    black_box(&xml),
                    black_box(&facts),
                    Some(&req_id),
                    Utc::now(),
                );
                // A refusal would be a (much cheaper) different path: never time one.
                assert!(r.is_ok(), "verification failed during the benchmark");
                black_box(r)
            })
        });
        g.bench_function("full", |b| {
            b.iter(|| {
                let ok = verifier
                    .decode_and_screen(black_box(&b64))
                    .and_then(|(xml, facts)| {
                        verifier.verify_signed(&xml, &facts, Some(&req_id), Utc::now())
                    })
                    .is_ok();
                assert!(ok, "verification failed during the benchmark");
                black_box(ok)
            })
        });
        g.finish();
    }
    {
        // Same response with more or fewer group values: shows how verification scales.
        let mut g = c.benchmark_group("acs_groups");
        g.sample_size(20)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        for n in GROUP_SCALING {
            let spec = realistic_spec(&idp, &verifier.sp_entity_id, &verifier.acs_url, &req_id, n);
            let (xml, facts) = verifier
                .decode_and_screen(&mint::mint_b64(&idp, &spec))
                .unwrap_or_else(|e| panic!("{n} groups: pre-filter refused: {}", e.reason()));
            g.bench_function(format!("verify_signed/{n}"), |b| {
                b.iter(|| {
                    let r = verifier.verify_signed(&xml, &facts, Some(&req_id), Utc::now());
                    black_box(r.expect("valid response verifies"))
                })
            });
        }
        g.finish();
    }

    // CPU per sign-in: the same full verification in a plain loop on this thread.
    let n: u32 = if full_run { 500 } else { 3 };
    let cpu0 = thread_cpu();
    let wall0 = Instant::now();
    for _ in 0..n {
        let accepted = verifier
            .decode_and_screen(&b64)
            .and_then(|(xml, facts)| {
                verifier.verify_signed(&xml, &facts, Some(&req_id), Utc::now())
            })
            .expect("valid response verifies");
        black_box(accepted);
    }
    let wall = wall0.elapsed() / n;
    match (cpu0, thread_cpu()) {
        (Some(a), Some(b)) => {
            let cpu = (b - a) / n;
            let verdict = if !full_run {
                "not judged (test-mode smoke run, likely unoptimized)"
            } else if cpu <= CPU_TARGET {
                "OK"
            } else {
                "OVER TARGET"
            };
            println!(
                "acs: CPU per sign-in (decode + pre-filter + both signatures + policy): {:.0} µs \
                 (wall {:.0} µs, {n} runs); target ≤ {:.0} µs: {verdict}",
                micros(cpu),
                micros(wall),
                micros(CPU_TARGET)
            );
        }
        _ => println!(
            "acs: /proc/thread-self/schedstat unavailable; wall per sign-in {:.0} µs ({n} runs)",
            micros(wall)
        ),
    }

    c.final_summary();
}
