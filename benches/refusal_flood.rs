//! What one client's flood of refused requests costs everyone else, and how much it logs.
//!
//! One run (`cargo bench --bench refusal_flood`): nginx as the upstream (`return 200`, one
//! worker, tests/support/nginx.rs, stopped by PID), samlgate in-process on a 2-worker tokio
//! runtime with the default `[rate_limits]`, `server.trusted_proxies = ["127.0.0.1"]` and the
//! production log settings (`info`, JSON) writing to a file through a counting writer (one
//! `write` per line, as stdout to a file does). Then, `FLOOD_ROUNDS` (3) times:
//! - **alone**: `wrk` as a signed-in user (session cookie) for `FLOOD_SECS` (10 s);
//! - **flooded**: the same, while a second `wrk` floods the same gateway as another client
//!   (`X-Forwarded-For: 198.51.100.7`) with unauthenticated browser navigations: after the
//!   sign-in burst, every one is answered 429 (`rate_limits.sign_in_*`).
//!
//! Printed (and written to `target/bench-refusal-flood.txt`): per round the signed-in req/s
//! alone and flooded and their ratio, the flood's req/s and refusals, and the lines and bytes
//! logged for the flooding client during the flooded run; then the medians. Everything shares
//! the machine's CPUs, both wrk processes included, so the ratio is what a flood takes from a
//! signed-in user on this machine, not a property of samlgate alone.
//!
//! Knobs: `FLOOD_SECS` (10), `FLOOD_ROUNDS` (3), `FLOOD_CONNS` (64 each), `FLOOD_WORKERS` (2).
//! Without `--bench` it does nothing (needs nginx and wrk: `scripts/install-deps.sh bench`).

#[path = "../tests/support/gateway.rs"]
mod gateway;
#[path = "../tests/support/mint.rs"]
mod mint;
#[path = "../tests/support/nginx.rs"]
mod nginx;

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gateway::{begin_login, client, post_acs, session_cookie, start_gateway, Options};
use mint::{ResponseSpec, TestIdp};
use nginx::{Nginx, NginxOptions};

const FLOOD_CLIENT: &str = "198.51.100.7";

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        })
        .unwrap_or(default)
}

/// Lines and bytes written, in total and for the flooding client's lines.
#[derive(Default)]
struct Counts {
    lines: AtomicU64,
    bytes: AtomicU64,
    flood_lines: AtomicU64,
    flood_bytes: AtomicU64,
}

impl Counts {
    fn snapshot(&self) -> [u64; 4] {
        [
            self.lines.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.flood_lines.load(Ordering::Relaxed),
            self.flood_bytes.load(Ordering::Relaxed),
        ]
    }
}

/// The log file writer: each formatted line arrives in one `write`, as with stdout.
#[derive(Clone)]
struct CountingFile {
    file: Arc<File>,
    counts: Arc<Counts>,
}

impl Write for CountingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        (&*self.file).write_all(buf)?;
        let lines = buf.iter().filter(|&&b| b == b'\n').count() as u64;
        let c = &self.counts;
        c.lines.fetch_add(lines, Ordering::Relaxed);
        c.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        let needle = FLOOD_CLIENT.as_bytes();
        if buf.windows(needle.len()).any(|w| w == needle) {
            c.flood_lines.fetch_add(lines, Ordering::Relaxed);
            c.flood_bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One wrk run: requests per second and responses outside 2xx/3xx.
struct Wrk {
    rps: f64,
    requests: u64,
    non_2xx: u64,
}

fn wrk(secs: u64, conns: u32, url: &str, headers: &[&str]) -> Command {
    let mut c = Command::new("wrk");
    c.args(["-t1", &format!("-c{conns}"), &format!("-d{secs}s")]);
    for h in headers {
        c.arg("-H").arg(h);
    }
    c.arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn finish(label: &str, child: std::process::Child) -> Wrk {
    let out = child.wait_with_output().expect("wrk");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "wrk {label} failed:\n{text}");
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_string()))
    };
    let requests = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("wrk {label}: no request count\n{text}"));
    Wrk {
        rps: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("wrk {label}: no rate\n{text}")),
        requests,
        non_2xx: field("Non-2xx or 3xx responses:").map_or(0, |v| v.parse().unwrap_or(0)),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn sign_in(idp: &TestIdp, gw: &gateway::TestGateway) -> String {
    let c = client();
    let (req_id, relay) = begin_login(&c, gw, "/").await;
    let spec = ResponseSpec::valid(idp, &gw.sp_entity_id(), &gw.acs_url(), Some(&req_id));
    let r = post_acs(&c, gw, &mint::mint_b64(idp, &spec), Some(&relay)).await;
    assert_eq!(r.status(), 303, "sign-in with a minted response failed");
    session_cookie(&r).expect("the ACS set a session cookie")
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("refusal_flood: load test; run it with `cargo bench --bench refusal_flood`");
        return;
    }
    let secs: u64 = env_num("FLOOD_SECS", 10);
    let rounds: usize = env_num("FLOOD_ROUNDS", 3);
    let conns: u32 = env_num("FLOOD_CONNS", 64);
    let workers: usize = env_num("FLOOD_WORKERS", 2);

    let logdir = tempfile::tempdir().unwrap();
    let counts = Arc::new(Counts::default());
    let writer = CountingFile {
        file: Arc::new(File::create(logdir.path().join("samlgate.log")).unwrap()),
        counts: counts.clone(),
    };
    // The production JSON format (src/observability.rs), built here so that this bench also
    // runs on revisions before that module took a writer.
    tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_target(true)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .json()
        .flatten_event(true)
        .init();

    let upstream = Nginx::start_with(
        "upstream",
        "    keepalive_requests 1000000;\n    server {\n        listen 127.0.0.1:{port} backlog=4096;\n        location / { default_type text/plain; return 200 \"ok\\n\"; }\n    }",
        &NginxOptions {
            worker_processes: 1,
            worker_connections: 4096,
            access_log: false,
            error_log_level: "warn",
        },
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap();
    let idp = TestIdp::generate("https://idp.flood.example/metadata");
    let gw = rt.block_on(start_gateway(
        &upstream.url(),
        &idp.metadata_xml("https://idp.flood.example/sso"),
        Options {
            extra_toml: "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n".into(),
            ..Options::default()
        },
    ));
    let cookie = format!("Cookie: {}", rt.block_on(sign_in(&idp, &gw)));
    let url = gw.url("/");
    let flood_headers = [
        "Accept: text/html,application/xhtml+xml",
        &format!("X-Forwarded-For: {FLOOD_CLIENT}") as &str,
    ];

    let mut report = String::new();
    let _ = writeln!(
        report,
        "refusal_flood: {secs} s runs, {conns} connections each, {workers} gateway workers\n\
         round  alone req/s  flooded req/s  ratio  flood req/s  flood refused  flood lines  flood bytes  lines/refusal"
    );
    let (mut ratios, mut alone_rps, mut flooded_rps, mut flood_rps) =
        (vec![], vec![], vec![], vec![]);
    let (mut lines_per_refusal, mut flood_lines) = (vec![], vec![]);
    for round in 1..=rounds {
        let alone = finish("alone", wrk(secs, conns, &url, &[&cookie]).spawn().unwrap());
        assert_eq!(alone.non_2xx, 0, "the signed-in run must be all 2xx");
        let before = counts.snapshot();
        let flood = wrk(secs + 1, conns, &url, &flood_headers).spawn().unwrap();
        // The flood is already running when the measured run starts.
        std::thread::sleep(Duration::from_millis(500));
        let flooded = finish(
            "flooded",
            wrk(secs, conns, &url, &[&cookie]).spawn().unwrap(),
        );
        let flood = finish("flood", flood);
        let after = counts.snapshot();
        assert_eq!(flooded.non_2xx, 0, "the signed-in run must be all 2xx");
        assert!(
            flood.non_2xx * 100 >= flood.requests * 99,
            "the flood must be refused ({} of {})",
            flood.non_2xx,
            flood.requests
        );
        let ratio = flooded.rps / alone.rps;
        let (lines, bytes) = (after[2] - before[2], after[3] - before[3]);
        let per_refusal = lines as f64 / flood.non_2xx.max(1) as f64;
        let _ = writeln!(
            report,
            "{round:>5}  {:>11.0}  {:>13.0}  {ratio:>5.2}  {:>11.0}  {:>13}  {lines:>11}  {bytes:>11}  {per_refusal:>13.4}",
            alone.rps, flooded.rps, flood.rps, flood.non_2xx
        );
        eprint!(
            "{}",
            report
                .lines()
                .last()
                .map(|l| format!("{l}\n"))
                .unwrap_or_default()
        );
        ratios.push(ratio);
        alone_rps.push(alone.rps);
        flooded_rps.push(flooded.rps);
        flood_rps.push(flood.rps);
        lines_per_refusal.push(per_refusal);
        flood_lines.push(lines as f64);
    }
    let _ = writeln!(
        report,
        "median {:>11.0}  {:>13.0}  {:>5.2}  {:>11.0}  {:>13}  {:>11.0}  {:>11}  {:>13.4}",
        median(alone_rps),
        median(flooded_rps),
        median(ratios),
        median(flood_rps),
        "",
        median(flood_lines),
        "",
        median(lines_per_refusal)
    );
    let total = counts.snapshot();
    let _ = writeln!(
        report,
        "all lines logged during the bench: {} ({} bytes), of them the flooding client's: {} ({} bytes)",
        total[0], total[1], total[2], total[3]
    );
    print!("{report}");
    let out =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-refusal-flood.txt");
    let _ = std::fs::write(out, &report);
    drop(gw);
    drop(upstream);
}
