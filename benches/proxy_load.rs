//! Proxy throughput and latency under load, samlgate against nginx, on loopback.
//!
//! One run (`cargo bench --bench proxy_load`):
//! - nginx as the upstream (`return 200 "ok\n"`, 1 worker) and nginx tuned as a reverse
//!   proxy in front of it (upstream keep-alive pool of 64, 1 worker, no access log), both children of this process
//!   started from a temp dir and stopped by PID when done, also on panic
//!   (tests/support/nginx.rs, the same starter the forward-auth tests use);
//! - nginx as a plain reverse proxy, as configured without tuning: a minimal `nginx.conf`
//!   that is only `proxy_pass` (nginx's built-in defaults: 1 worker, access log on, HTTP/1.0
//!   and a new upstream connection per request), and nginx as most installations run it
//!   (Debian's `nginx.conf` defaults, `worker_processes auto`, access log on, and the same
//!   bare `proxy_pass`);
//! - for context, a bare hyper proxy (hyper's HTTP/1 server and client, one upstream
//!   connection per downstream connection, nothing else): the floor of samlgate's own stack;
//!   and, as an upper bound for writing the HTTP/1 path by hand, a forwarder that only finds
//!   message boundaries with httparse and copies bytes (no checks, not a usable proxy), and
//!   hyper's server with such a hand-written upstream leg (which half of hyper costs what);
//! - samlgate in-process in front of the same upstream, on a tokio runtime with 1 worker
//!   thread (same as nginx's single worker) and again with 2, `[log] level = "warn"`;
//! - the tuned nginx proxy once more at the end, to show how far the machine's speed drifted
//!   during the run (ratios are also given against the mean of both nginx runs);
//! - `wrk -t2 -c64 -d10s --latency` against the upstream, nginx, nginx adding the same
//!   identity / `X-Forwarded-*` headers samlgate adds (same byte count), samlgate with a
//!   session cookie (must be all 2xx) and samlgate without a cookie
//!   (`Accept: application/json`, the 401 path); a table with req/s, p50, p90, p99, CPU
//!   per request of the proxy and of the upstream, the CPU share of unrelated processes
//!   (noise) and samlgate/nginx ratios is printed and written to
//!   `target/bench-proxy-load.txt`;
//! - sign-ins: `PROXY_LOAD_BURST` (200) concurrent ACS posts of minted responses on an idle
//!   gateway (wall time, process CPU per sign-in), then the same burst fired 40% into a wrk
//!   run on the authenticated path. Proxied throughput (counted at the upstream via
//!   `stub_status`, including its slowest 100 ms window) and the latency seen by an extra
//!   probe connection inside the burst window are compared with the rest of that run and
//!   with a run without a burst. Logins are started and responses minted (IdP-side RSA
//!   signing) before the measured window, so only the ACS posts compete with the traffic.
//!   Everything shares the machine's CPUs, wrk included: a lower wrk rate during the burst
//!   is partly wrk losing CPU to verification; a stall would show as a near-zero window
//!   and as probe latencies as long as the burst.
//!
//! Knobs (environment): `PROXY_LOAD_SECS` (10), `PROXY_LOAD_WARMUP_SECS` (2),
//! `PROXY_LOAD_CONNS` (64), `PROXY_LOAD_THREADS` (2), `PROXY_LOAD_BURST` (200),
//! `PROXY_LOAD_WORKERS` (`1,2`: the samlgate runtimes to measure, by worker threads; `0` is
//! a current-thread runtime), `PROXY_LOAD_GROUPS` (40: groups of the bench user).
//!
//! Without `--bench` (as under `cargo test --all-targets`) it does nothing: it needs nginx
//! and wrk (`scripts/install-deps.sh bench`) and takes about two minutes.

#[path = "../tests/support/gateway.rs"]
mod gateway;
#[path = "support/load.rs"]
mod load;
#[path = "../tests/support/mint.rs"]
mod mint;
#[path = "../tests/support/nginx.rs"]
mod nginx;

use std::fmt::Write as _;
use std::future::Future;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gateway::{
    begin_login, client, post_acs, session_cookie, start_gateway, Options, TestGateway,
    HIGH_RATE_LIMITS,
};
use load::{env_num, http_get, read_response, start_tuned_proxy, start_upstream};
use mint::{ResponseSpec, TestIdp};
use nginx::{Nginx, NginxOptions};
use tokio::runtime::Runtime;

const IDP_ENTITY: &str = "https://idp.bench.example/metadata";
const IDP_SSO: &str = "https://idp.bench.example/sso";
const SESSION_COOKIE: &str = "samlgate_session";
fn groups() -> usize {
    env_num("PROXY_LOAD_GROUPS", 40)
}

// ---- settings -----------------------------------------------------------------------------

struct Cfg {
    secs: u64,
    warmup_secs: u64,
    conns: u32,
    threads: u32,
    burst: usize,
    workers: Vec<usize>,
}

impl Cfg {
    fn from_env() -> Cfg {
        Cfg {
            secs: env_num("PROXY_LOAD_SECS", 10),
            warmup_secs: env_num("PROXY_LOAD_WARMUP_SECS", 2),
            conns: env_num("PROXY_LOAD_CONNS", 64),
            threads: env_num("PROXY_LOAD_THREADS", 2),
            burst: env_num("PROXY_LOAD_BURST", 200),
            workers: std::env::var("PROXY_LOAD_WORKERS")
                .unwrap_or_else(|_| "1,2".into())
                .split(',')
                .map(|w| {
                    w.trim()
                        .parse()
                        .unwrap_or_else(|_| panic!("PROXY_LOAD_WORKERS: {w:?} is not a number"))
                })
                .collect(),
        }
    }
}

/// The upstream's total request count from `stub_status`.
fn upstream_requests(port: u16) -> Option<u64> {
    let (status, body) = http_get(port, "/nginx_status", &[]);
    if status != 200 {
        return None;
    }
    // "Active connections: 1 \nserver accepts handled requests\n 16 16 16 \n..."
    body.lines().nth(2)?.split_whitespace().nth(2)?.parse().ok()
}

// ---- wrk ---------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Wrk {
    rps: f64,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    requests: u64,
    non_2xx: u64,
    socket_errors: Option<String>,
    /// CPU time (user + system) of the proxy process / the upstream nginx worker per request.
    proxy_cpu: Option<Duration>,
    upstream_cpu: Option<Duration>,
    /// Share of the machine's CPU used by processes other than wrk, the proxy and the
    /// upstream during the run (noise).
    other_cpu_share: Option<f64>,
    raw: String,
}

fn parse_latency(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().ok()?;
    let secs = match unit {
        "us" => v / 1e6,
        "ms" => v / 1e3,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

fn parse_wrk(out: &str) -> Option<Wrk> {
    let mut rps = None;
    let mut pct = [None; 3];
    let mut requests = None;
    let mut non_2xx = 0;
    let mut socket_errors = None;
    for line in out.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("Requests/sec:") {
            rps = v.trim().parse().ok();
        } else if let Some(v) = l.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = v.trim().parse().ok()?;
        } else if let Some(v) = l.strip_prefix("Socket errors:") {
            socket_errors = Some(v.trim().to_string());
        } else if l.contains(" requests in ") {
            requests = l.split_whitespace().next().and_then(|n| n.parse().ok());
        } else {
            let mut it = l.split_whitespace();
            let (Some(p), Some(v), None) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            let idx = match p {
                "50%" => 0,
                "90%" => 1,
                "99%" => 2,
                _ => continue,
            };
            pct[idx] = parse_latency(v);
        }
    }
    Some(Wrk {
        rps: rps?,
        p50: pct[0]?,
        p90: pct[1]?,
        p99: pct[2]?,
        requests: requests?,
        non_2xx,
        socket_errors,
        proxy_cpu: None,
        upstream_cpu: None,
        other_cpu_share: None,
        raw: out.to_string(),
    })
}

fn wrk_command(cfg: &Cfg, secs: u64, url: &str, headers: &[&str]) -> Command {
    let mut c = Command::new("wrk");
    c.arg(format!("-t{}", cfg.threads))
        .arg(format!("-c{}", cfg.conns))
        .arg(format!("-d{secs}s"))
        .arg("--latency");
    for h in headers {
        c.arg("-H").arg(h);
    }
    c.arg(format!("{url}/"));
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn finish_wrk(label: &str, out: std::io::Result<Output>) -> Wrk {
    let out = out.unwrap_or_else(|e| {
        panic!("cannot run wrk ({e}); install it with `scripts/install-deps.sh bench`")
    });
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wrk failed for {label}: {}\n{text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let w =
        parse_wrk(&text).unwrap_or_else(|| panic!("cannot parse wrk output for {label}:\n{text}"));
    assert!(
        w.requests > 0,
        "wrk completed no request for {label}:\n{text}"
    );
    w
}

/// Whose CPU time to charge to a run: the proxy's processes and the upstream worker.
#[derive(Clone)]
struct CpuOf {
    proxy: Vec<u32>,
    upstream: Option<u32>,
}

/// Warm-up run (discarded), then the measured run.
fn run_wrk(cfg: &Cfg, label: &str, url: &str, headers: &[&str], cpu_of: &CpuOf) -> Wrk {
    eprintln!("proxy_load: running {label}");
    if cfg.warmup_secs > 0 {
        let _ = finish_wrk(
            label,
            wrk_command(cfg, cfg.warmup_secs, url, headers).output(),
        );
    }
    let cpu = |pid: Option<u32>| pid.and_then(proc_cpu);
    let proxy_cpu = || -> Option<Duration> {
        if cpu_of.proxy.is_empty() {
            return None;
        }
        cpu_of.proxy.iter().map(|&p| proc_cpu(p)).sum()
    };
    let (p0, u0) = (proxy_cpu(), cpu(cpu_of.upstream));
    let (m0, c0) = (machine_busy(), children_cpu());
    let t0 = Instant::now();
    let mut w = finish_wrk(label, wrk_command(cfg, cfg.secs, url, headers).output());
    let wall = t0.elapsed();
    let (p1, u1) = (proxy_cpu(), cpu(cpu_of.upstream));
    let (m1, c1) = (machine_busy(), children_cpu());
    let delta =
        |a: Option<Duration>, b: Option<Duration>| a.zip(b).map(|(a, b)| b.saturating_sub(a));
    let requests = w.requests as f64;
    w.proxy_cpu = delta(p0, p1).map(|d| d.div_f64(requests));
    w.upstream_cpu = delta(u0, u1).map(|d| d.div_f64(requests));
    // What the rest of the machine used meanwhile (other builds, tests…): a noise indicator.
    let ours = [delta(p0, p1), delta(u0, u1), delta(c0, c1)]
        .into_iter()
        .flatten()
        .sum::<Duration>();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    w.other_cpu_share = delta(m0, m1)
        .map(|busy| busy.saturating_sub(ours).as_secs_f64() / (wall.as_secs_f64() * cpus));
    eprintln!(
        "proxy_load: {label}: {:.0} req/s, p50 {}, p99 {}, non-2xx {}, CPU/req proxy {} upstream {}, \
         other processes {}",
        w.rps,
        fmt_dur(w.p50),
        fmt_dur(w.p99),
        w.non_2xx,
        fmt_cpu(w.proxy_cpu),
        fmt_cpu(w.upstream_cpu),
        fmt_share(w.other_cpu_share)
    );
    w
}

fn fmt_share(s: Option<f64>) -> String {
    s.map_or("-".to_string(), |s| format!("{:.0}%", s * 100.0))
}

// ---- statistics and formatting -------------------------------------------------------------

fn fmt_dur(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0}µs")
    } else if us < 1e6 {
        format!("{:.2}ms", us / 1e3)
    } else {
        format!("{:.2}s", us / 1e6)
    }
}

/// Nearest-rank percentile of unsorted samples.
fn percentile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut v = samples.to_vec();
    v.sort_unstable();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn summary(samples: &[Duration]) -> String {
    format!(
        "n={} p50 {} p99 {} max {}",
        samples.len(),
        fmt_dur(percentile(samples, 50.0)),
        fmt_dur(percentile(samples, 99.0)),
        fmt_dur(samples.iter().copied().max().unwrap_or_default())
    )
}

fn fmt_cpu(d: Option<Duration>) -> String {
    d.map_or("-".to_string(), |d| {
        format!("{:.1}µs", d.as_secs_f64() * 1e6)
    })
}

fn ticks(n: u64) -> Duration {
    static HZ: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let hz = *HZ.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
    });
    Duration::from_secs_f64(n as f64 / hz as f64)
}

/// Fields 3.. of `/proc/<pid>/stat` (after the command name, which may contain spaces).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// CPU time (user + system, all threads, including exited ones) of process `pid`.
fn proc_cpu(pid: u32) -> Option<Duration> {
    let f = stat_fields(pid)?;
    Some(ticks(f.get(11)? + f.get(12)?))
}

/// CPU time of this process's waited-for children (wrk).
fn children_cpu() -> Option<Duration> {
    let f = stat_fields(std::process::id())?;
    Some(ticks(f.get(13)? + f.get(14)?))
}

/// Busy CPU time of the whole machine (everything but idle and iowait; steal included).
fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal
    Some(ticks(f.iter().take(8).sum::<u64>() - f.get(3)? - f.get(4)?))
}

fn process_cpu() -> Option<Duration> {
    proc_cpu(std::process::id())
}

// ---- sign-ins ------------------------------------------------------------------------------

/// The realistic response of `benches/acs.rs`: both signatures, usual attributes, 40 groups.
fn realistic_spec(idp: &TestIdp, gw: &TestGateway, req_id: &str) -> ResponseSpec {
    ResponseSpec::valid(idp, &gw.sp_entity_id(), &gw.acs_url(), Some(req_id))
        .with_directory_attributes(groups())
}

/// A browser part-way through sign-in: its cookies (login cookie), the RelayState and the
/// IdP's minted answer, ready to POST to the ACS.
struct Pending {
    client: reqwest::Client,
    relay: String,
    saml_response: String,
}

async fn prepare_sign_ins(idp: &TestIdp, gw: &TestGateway, n: usize) -> Vec<Pending> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let c = client();
        let (req_id, relay) = begin_login(&c, gw, "/").await;
        let saml_response = mint::mint_b64(idp, &realistic_spec(idp, gw, &req_id));
        out.push(Pending {
            client: c,
            relay,
            saml_response,
        });
    }
    out
}

/// One sign-in's outcome: (latency, HTTP status, session cookie set).
type SignIn = (Duration, u16, bool);

/// POSTs every pending sign-in at once.
async fn fire_sign_ins(gw: &TestGateway, pending: &[Pending]) -> Vec<SignIn> {
    futures_util::future::join_all(pending.iter().map(|p| async move {
        let t = Instant::now();
        let r = post_acs(&p.client, gw, &p.saml_response, Some(&p.relay)).await;
        let elapsed = t.elapsed();
        (elapsed, r.status().as_u16(), session_cookie(&r).is_some())
    }))
    .await
}

async fn sign_in(idp: &TestIdp, gw: &TestGateway) -> String {
    let p = prepare_sign_ins(idp, gw, 1).await.pop().unwrap();
    let r = post_acs(&p.client, gw, &p.saml_response, Some(&p.relay)).await;
    let status = r.status();
    let cookie = session_cookie(&r);
    let body = r.text().await.unwrap_or_default();
    assert_eq!(status, 303, "sign-in with a minted response failed: {body}");
    cookie.expect("the ACS set a session cookie")
}

// ---- latency probe and upstream counter sampler ---------------------------------------------

/// A keep-alive connection issuing authenticated GETs back to back, recording
/// (time since start, latency) per request.
struct Probe {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<(Vec<(Duration, Duration)>, usize)>,
}

fn start_probe(port: u16, cookie: &str, t0: Instant) -> Probe {
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let req = format!("GET /probe HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n\r\n");
    let handle = std::thread::spawn(move || {
        let mut samples = Vec::new();
        let mut errors = 0;
        'outer: while !stop2.load(Ordering::Relaxed) {
            let Ok(s) = TcpStream::connect(("127.0.0.1", port)) else {
                errors += 1;
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let _ = s.set_nodelay(true);
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let mut w = s.try_clone().expect("clone socket");
            let mut r = BufReader::new(s);
            while !stop2.load(Ordering::Relaxed) {
                let start = Instant::now();
                let ok = w.write_all(req.as_bytes()).is_ok()
                    && matches!(read_response(&mut r), Ok((200, _)));
                if !ok {
                    errors += 1;
                    continue 'outer;
                }
                samples.push((start - t0, start.elapsed()));
            }
        }
        (samples, errors)
    });
    Probe { stop, handle }
}

impl Probe {
    fn finish(self) -> (Vec<(Duration, Duration)>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("probe thread")
    }
}

/// Samples the upstream's request counter every 25 ms: (time since start, requests).
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<(Duration, u64)>>,
}

fn start_sampler(upstream_port: u16, t0: Instant) -> Sampler {
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut out = Vec::new();
        while !stop2.load(Ordering::Relaxed) {
            if let Some(n) = upstream_requests(upstream_port) {
                out.push((t0.elapsed(), n));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        out
    });
    Sampler { stop, handle }
}

impl Sampler {
    fn finish(self) -> Vec<(Duration, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("sampler thread")
    }
}

/// The counter at `t`, linearly interpolated between samples.
fn counter_at(samples: &[(Duration, u64)], t: Duration) -> Option<f64> {
    let i = samples.iter().position(|(at, _)| *at >= t)?;
    if i == 0 {
        return Some(samples[0].1 as f64);
    }
    let (t0, c0) = samples[i - 1];
    let (t1, c1) = samples[i];
    let f = (t - t0).as_secs_f64() / (t1 - t0).as_secs_f64().max(1e-9);
    Some(c0 as f64 + f * (c1 as f64 - c0 as f64))
}

/// Requests per second at the upstream between `a` and `b`.
fn rate(samples: &[(Duration, u64)], a: Duration, b: Duration) -> Option<f64> {
    Some((counter_at(samples, b)? - counter_at(samples, a)?) / (b - a).as_secs_f64())
}

// ---- one samlgate configuration --------------------------------------------------------------

struct LoadRun {
    wrk: Wrk,
    probe: Vec<(Duration, Duration)>,
    probe_errors: usize,
    counter: Vec<(Duration, u64)>,
    /// The burst window (since start) and each sign-in's (latency, status, cookie set).
    burst: Option<(Duration, Duration, Vec<SignIn>)>,
}

/// wrk on the authenticated path with the probe and the upstream sampler running; fires the
/// sign-ins in `pending` (if any) 40% into the run.
#[allow(clippy::too_many_arguments)]
fn loaded_run(
    cfg: &Cfg,
    cl_rt: &Runtime,
    gw: &TestGateway,
    cookie_header: &str,
    cookie: &str,
    upstream_port: u16,
    pending: Option<Vec<Pending>>,
) -> LoadRun {
    let t0 = Instant::now();
    let wrk = wrk_command(cfg, cfg.secs, &gw.base, &[cookie_header])
        .spawn()
        .expect("start wrk");
    let probe = start_probe(gw.addr.port(), cookie, t0);
    let sampler = start_sampler(upstream_port, t0);
    std::thread::sleep(Duration::from_secs_f64(cfg.secs as f64 * 0.4));
    let burst = pending.map(|p| {
        let start = t0.elapsed();
        let results = cl_rt.block_on(fire_sign_ins(gw, &p));
        let end = t0.elapsed();
        (start, end, results)
    });
    let wrk = finish_wrk("burst", wrk.wait_with_output());
    let (probe, probe_errors) = probe.finish();
    let counter = sampler.finish();
    LoadRun {
        wrk,
        probe,
        probe_errors,
        counter,
        burst,
    }
}

struct GatewayResult {
    workers: usize,
    session: Wrk,
    unauth: Wrk,
    baseline: LoadRun,
    burst: LoadRun,
    idle_signins: usize,
    idle_wall: Duration,
    idle_cpu: Option<Duration>,
}

fn samlgate_runs(
    cfg: &Cfg,
    workers: usize,
    cl_rt: &Runtime,
    idp: &TestIdp,
    upstream: &Nginx,
    upstream_worker: Option<u32>,
) -> GatewayResult {
    // `0` workers: a current-thread runtime driven by a thread of its own.
    let (gw_rt, driver) = if workers == 0 {
        let rt = Arc::new(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let driven = rt.clone();
        let thread = std::thread::Builder::new()
            .name("samlgate-worker".into())
            .spawn(move || {
                driven.block_on(async {
                    let _ = stopped.await;
                })
            })
            .unwrap();
        (rt, Some((stop, thread)))
    } else {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("samlgate-worker")
            .enable_all()
            .build()
            .unwrap();
        (Arc::new(rt), None)
    };
    let gw = gw_rt.handle().block_on(start_gateway(
        &upstream.url(),
        &idp.metadata_xml(IDP_SSO),
        // The sign-in burst comes from one address: per-client limits out of its way.
        Options {
            extra_toml: HIGH_RATE_LIMITS.into(),
            ..Options::default()
        },
    ));
    let port = gw.addr.port();
    let label = |what: &str| format!("samlgate {workers}w {what}");
    let cpu_of = &CpuOf {
        proxy: vec![std::process::id()],
        upstream: upstream_worker,
    };

    let cookie = cl_rt.block_on(sign_in(idp, &gw));
    let cookie_header = format!("Cookie: {cookie}");
    let (status, body) = http_get(port, "/", &[&cookie_header]);
    assert_eq!(
        (status, body.as_str()),
        (200, "ok\n"),
        "the session cookie does not reach the upstream"
    );
    let json = "Accept: application/json";
    let (status, _) = http_get(port, "/", &[json]);
    assert_eq!(status, 401, "no cookie + Accept: application/json → 401");

    let session = run_wrk(cfg, &label("session"), &gw.base, &[&cookie_header], cpu_of);
    if session.non_2xx != 0 {
        panic!(
            "samlgate answered {} non-2xx responses on the authenticated path: the session did \
             not work.\n{}",
            session.non_2xx, session.raw
        );
    }
    let unauth = run_wrk(cfg, &label("401"), &gw.base, &[json], cpu_of);
    assert_eq!(
        unauth.non_2xx, unauth.requests,
        "every unauthenticated request is refused"
    );

    // Sign-ins on an idle gateway: wall time and process CPU per sign-in.
    let pending = cl_rt.block_on(prepare_sign_ins(idp, &gw, cfg.burst));
    let cpu0 = process_cpu();
    let t = Instant::now();
    let idle = cl_rt.block_on(fire_sign_ins(&gw, &pending));
    let idle_wall = t.elapsed();
    let idle_cpu = process_cpu().zip(cpu0).map(|(b, a)| b.saturating_sub(a));
    let idle_signins = idle.iter().filter(|r| r.1 == 303 && r.2).count();
    assert_eq!(idle_signins, cfg.burst, "idle sign-ins: {idle:?}");
    drop(pending);

    eprintln!("proxy_load: {}", label("baseline (probe, no burst)"));
    let baseline = loaded_run(
        cfg,
        cl_rt,
        &gw,
        &cookie_header,
        &cookie,
        upstream.port(),
        None,
    );
    let pending = cl_rt.block_on(prepare_sign_ins(idp, &gw, cfg.burst));
    eprintln!("proxy_load: {}", label("sign-in burst"));
    let burst = loaded_run(
        cfg,
        cl_rt,
        &gw,
        &cookie_header,
        &cookie,
        upstream.port(),
        Some(pending),
    );
    for run in [&baseline, &burst] {
        assert_eq!(
            run.wrk.non_2xx, 0,
            "non-2xx on the authenticated path during the burst runs:\n{}",
            run.wrk.raw
        );
    }

    drop(gw);
    if let Some((stop, thread)) = driver {
        let _ = stop.send(());
        let _ = thread.join();
    }
    if let Ok(rt) = Arc::try_unwrap(gw_rt) {
        rt.shutdown_timeout(Duration::from_secs(2));
    }
    GatewayResult {
        workers,
        session,
        unauth,
        baseline,
        burst,
        idle_signins,
        idle_wall,
        idle_cpu,
    }
}

// ---- in-process forwarders: the stack's floor and a hand-written bound ---------------------

/// A connection of the in-process forwarders (the blocking `TcpStream` above is the probes').
type Conn = tokio::net::TcpStream;

/// A forwarder's work on one client connection, given the client's connection and a fresh
/// connection to the upstream (both with `TCP_NODELAY`).
type Forward = fn(Conn, Conn) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs `forward` for every connection to a fresh loopback port, on a runtime with 1 worker
/// thread like samlgate's first run. Returns the runtime (keep it alive) and the port.
/// Starts nginx with `http_body` (access log on), checks it proxies, runs wrk against it,
/// and stops it.
fn measure_plain_nginx(
    cfg: &Cfg,
    label: &str,
    http_body: &str,
    worker_processes: u32,
    worker_connections: u32,
    upstream_worker: Option<u32>,
) -> Wrk {
    let n = Nginx::start_with(
        "proxy-plain",
        http_body,
        &NginxOptions {
            worker_processes,
            worker_connections,
            access_log: true,
            error_log_level: "error",
        },
    );
    let (status, body) = http_get(n.port(), "/", &[]);
    assert_eq!((status, body.as_str()), (200, "ok\n"), "{label}");
    run_wrk(
        cfg,
        label,
        &n.url(),
        &[],
        &CpuOf {
            proxy: n.worker_pids(),
            upstream: upstream_worker,
        },
    )
}

fn start_forwarder(upstream_port: u16, forward: Forward) -> (Runtime, u16) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(async move {
        loop {
            let Ok((down, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let Ok(up) = Conn::connect(("127.0.0.1", upstream_port)).await else {
                    return;
                };
                if down.set_nodelay(true).is_ok() && up.set_nodelay(true).is_ok() {
                    forward(down, up).await;
                }
            });
        }
    });
    (rt, port)
}

/// Starts `forward` in front of `upstream`, checks one request gets through, and measures it.
fn measure_forwarder(
    cfg: &Cfg,
    label: &str,
    forward: Forward,
    upstream: &Nginx,
    upstream_worker: Option<u32>,
) -> Wrk {
    let (rt, port) = start_forwarder(upstream.port(), forward);
    let (status, body) = http_get(port, "/", &[]);
    assert_eq!((status, body.as_str()), (200, "ok\n"), "{label}");
    let w = run_wrk(
        cfg,
        label,
        &format!("http://127.0.0.1:{port}"),
        &[],
        &CpuOf {
            proxy: vec![std::process::id()],
            upstream: upstream_worker,
        },
    );
    rt.shutdown_timeout(Duration::from_secs(2));
    w
}

/// The stack's floor: hyper's HTTP/1 server in front of a hyper HTTP/1 client connection,
/// forwarding every request unchanged: no authentication, no header rewrite, no logging or
/// metrics. What samlgate's stack (hyper + tokio) costs by itself.
fn bare_hyper(down: Conn, up: Conn) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    use hyper::client::conn::http1 as client;
    use hyper::server::conn::http1 as server;
    use hyper_util::rt::TokioIo;

    Box::pin(async move {
        let Ok((sender, conn)) = client::handshake(TokioIo::new(up)).await else {
            return;
        };
        tokio::spawn(conn);
        let sender = Arc::new(tokio::sync::Mutex::new(sender));
        let service =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let sender = sender.clone();
                async move { sender.lock().await.send_request(req).await }
            });
        let _ = server::Builder::new()
            .serve_connection(TokioIo::new(down), service)
            .await;
    })
}

/// What a hand-written HTTP/1 path could reach, for comparison with [`bare_hyper`]: httparse
/// finds the request head, its bytes go to the upstream unchanged, httparse finds the
/// response head and its `Content-Length`, and head + body go back. Bodyless requests and
/// `Content-Length` responses only (what wrk and the upstream here send), no validation, no
/// timeouts: an upper bound for the technique, not a proxy.
fn handwritten(down: Conn, up: Conn) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn serve(mut down: Conn, mut up: Conn) -> std::io::Result<()> {
        let mut request = Vec::with_capacity(8192);
        let mut response = Vec::with_capacity(8192);
        loop {
            let head = loop {
                let mut headers = [httparse::EMPTY_HEADER; 64];
                match httparse::Request::new(&mut headers).parse(&request) {
                    Ok(httparse::Status::Complete(n)) => break n,
                    Ok(httparse::Status::Partial) => {}
                    Err(_) => return Ok(()),
                }
                if down.read_buf(&mut request).await? == 0 {
                    return Ok(());
                }
            };
            up.write_all(&request[..head]).await?;
            request.drain(..head);
            let whole = loop {
                let mut headers = [httparse::EMPTY_HEADER; 64];
                let mut parsed = httparse::Response::new(&mut headers);
                if let Ok(httparse::Status::Complete(n)) = parsed.parse(&response) {
                    let length = parsed
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                        .unwrap_or(0usize);
                    if response.len() >= n + length {
                        break n + length;
                    }
                }
                if up.read_buf(&mut response).await? == 0 {
                    return Ok(());
                }
            };
            down.write_all(&response[..whole]).await?;
            response.drain(..whole);
        }
    }

    Box::pin(async move {
        let _ = serve(down, up).await;
    })
}

/// hyper's HTTP/1 server in front of a hand-written upstream leg: the request head is
/// written out by hand on the connection's own upstream socket, httparse reads the response
/// head, the `Content-Length` body is read whole. Shows how much of hyper's cost is its
/// client side (compare [`bare_hyper`] and [`handwritten`]); bodyless requests and
/// `Content-Length` responses only, no checks.
fn hyper_server_handwritten_client(
    down: Conn,
    io: Conn,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    use hyper::server::conn::http1 as server;
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct UpstreamLeg {
        io: Conn,
        buf: Vec<u8>,
        head: Vec<u8>,
    }

    async fn exchange(
        leg: &mut UpstreamLeg,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> std::io::Result<hyper::Response<http_body_util::Full<bytes::Bytes>>> {
        let head = &mut leg.head;
        head.clear();
        head.extend_from_slice(req.method().as_str().as_bytes());
        head.push(b' ');
        head.extend_from_slice(
            req.uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .as_bytes(),
        );
        head.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in req.headers() {
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        leg.io.write_all(head).await?;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(n)) = parsed.parse(&leg.buf) {
                let mut length = 0usize;
                let mut builder = hyper::Response::builder().status(parsed.code.unwrap_or(502));
                for h in parsed.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                    }
                    builder = builder.header(h.name, h.value);
                }
                if leg.buf.len() >= n + length {
                    let body = bytes::Bytes::copy_from_slice(&leg.buf[n..n + length]);
                    leg.buf.drain(..n + length);
                    return builder
                        .body(http_body_util::Full::new(body))
                        .map_err(std::io::Error::other);
                }
            }
            if leg.io.read_buf(&mut leg.buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    Box::pin(async move {
        let leg = Arc::new(tokio::sync::Mutex::new(UpstreamLeg {
            io,
            buf: Vec::with_capacity(8192),
            head: Vec::with_capacity(4096),
        }));
        let service =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let leg = leg.clone();
                async move { exchange(&mut *leg.lock().await, req).await }
            });
        let _ = server::Builder::new()
            .serve_connection(TokioIo::new(down), service)
            .await;
    })
}

// ---- report ----------------------------------------------------------------------------------

fn row(out: &mut String, label: &str, w: &Wrk, nginx: Option<&Wrk>) {
    let cpu = format!(
        "{:>9} {:>9} {:>6}",
        fmt_cpu(w.proxy_cpu),
        fmt_cpu(w.upstream_cpu),
        fmt_share(w.other_cpu_share)
    );
    let ratio = nginx.map_or(String::new(), |n| {
        format!(
            "{:>9.2}x {:>9.2}x",
            w.rps / n.rps,
            w.p99.as_secs_f64() / n.p99.as_secs_f64()
        )
    });
    let _ = writeln!(
        out,
        "{label:<46} {:>8.0} {:>8} {:>8} {:>8} {:>8} {cpu} {ratio}",
        w.rps,
        fmt_dur(w.p50),
        fmt_dur(w.p90),
        fmt_dur(w.p99),
        w.non_2xx
    );
}

fn burst_report(out: &mut String, cfg: &Cfg, g: &GatewayResult) {
    let w = g.workers;
    let _ = writeln!(
        out,
        "\nsamlgate, {w} worker thread(s): sign-ins (verification on the blocking pool)"
    );
    let per = g.idle_wall / g.idle_signins.max(1) as u32;
    let _ = writeln!(
        out,
        "  idle gateway: {} concurrent sign-ins in {} ({:.0}/s){}",
        g.idle_signins,
        fmt_dur(g.idle_wall),
        g.idle_signins as f64 / g.idle_wall.as_secs_f64(),
        g.idle_cpu.map_or(String::new(), |c| format!(
            ", process CPU per sign-in {} (gateway + in-process HTTP client; wall/sign-in {})",
            fmt_dur(c / g.idle_signins.max(1) as u32),
            fmt_dur(per)
        ))
    );
    let Some((a, b, results)) = &g.burst.burst else {
        return;
    };
    let ok = results.iter().filter(|r| r.1 == 303 && r.2).count();
    let lat: Vec<Duration> = results.iter().map(|r| r.0).collect();
    let _ = writeln!(
        out,
        "  burst under load: {ok}/{} sign-ins OK in {} ({:.0}/s), sign-in latency {}",
        results.len(),
        fmt_dur(*b - *a),
        results.len() as f64 / (*b - *a).as_secs_f64(),
        summary(&lat)
    );
    // Proxied throughput (at the upstream) inside the burst window versus the steady part
    // of the same run (from 1 s in to the burst, and from 0.5 s after it to 0.5 s before
    // the end) and versus the run without a burst.
    let end = Duration::from_secs(cfg.secs) - Duration::from_millis(500);
    let one = Duration::from_secs(1);
    let c = &g.burst.counter;
    let in_rate = rate(c, *a, *b);
    let steady = {
        let after = *b + Duration::from_millis(500);
        let before = rate(c, one, *a).map(|r| (r, (*a - one).as_secs_f64()));
        let later = (after < end)
            .then(|| rate(c, after, end).map(|r| (r, (end - after).as_secs_f64())))
            .flatten();
        let parts: Vec<(f64, f64)> = before.into_iter().chain(later).collect();
        let total: f64 = parts.iter().map(|p| p.1).sum();
        (total > 0.0).then(|| parts.iter().map(|p| p.0 * p.1).sum::<f64>() / total)
    };
    let base_rate = rate(&g.baseline.counter, one, end);
    let f = |r: Option<f64>| r.map_or("n/a".to_string(), |r| format!("{r:.0} req/s"));
    // A stall would show as a window with (almost) nothing proxied.
    let window = Duration::from_millis(100);
    let step = Duration::from_millis(25);
    let mut worst: Option<f64> = None;
    let mut t = *a;
    while t + window <= *b {
        if let Some(r) = rate(c, t, t + window) {
            worst = Some(worst.map_or(r, |w| w.min(r)));
        }
        t += step;
    }
    let _ = writeln!(
        out,
        "  proxied throughput (upstream count): during burst {} (slowest 100 ms window {}), \
         same run outside burst {}, run without burst {}",
        f(in_rate),
        f(worst),
        f(steady),
        f(base_rate)
    );
    let inside: Vec<Duration> = g
        .burst
        .probe
        .iter()
        .filter(|(t, _)| t >= a && t <= b)
        .map(|s| s.1)
        .collect();
    let outside: Vec<Duration> = g
        .burst
        .probe
        .iter()
        .filter(|(t, _)| (*t >= one && *t < *a) || (*t > *b && *t < end))
        .map(|s| s.1)
        .collect();
    let base: Vec<Duration> = g
        .baseline
        .probe
        .iter()
        .filter(|(t, _)| *t >= one && *t < end)
        .map(|s| s.1)
        .collect();
    let _ = writeln!(
        out,
        "  probe latency (65th connection): during burst {}; outside burst {}; run without burst {} (probe errors {}/{})",
        summary(&inside),
        summary(&outside),
        summary(&base),
        g.burst.probe_errors,
        g.baseline.probe_errors
    );
    let _ = writeln!(
        out,
        "  wrk over the whole {} s: with burst {:.0} req/s p99 {}; without burst {:.0} req/s p99 {}",
        cfg.secs,
        g.burst.wrk.rps,
        fmt_dur(g.burst.wrk.p99),
        g.baseline.wrk.rps,
        fmt_dur(g.baseline.wrk.p99)
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("proxy_load: load test; run it with `cargo bench --bench proxy_load`");
        return;
    }
    let cfg = Cfg::from_env();
    let nginx_version = Command::new(nginx::NGINX_BIN)
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
        .unwrap_or_else(|e| {
            panic!("nginx not found ({e}); install it with `scripts/install-deps.sh bench`")
        });
    Command::new("wrk").arg("-v").output().unwrap_or_else(|e| {
        panic!("wrk not found ({e}); install it with `scripts/install-deps.sh bench`")
    });
    samlgate::observability::init("human", "warn");

    let upstream = start_upstream(4096);
    // `/` only proxies; `/id/` also does what samlgate does to a request's headers, with
    // the same sizes: identity headers for the bench user (40 groups), X-Forwarded-*, and the
    // session cookie removed.
    let groups: Vec<String> = (1..=groups())
        .map(|i| format!("cn=app-{i:02}-users,ou=groups,dc=example,dc=com"))
        .collect();
    let proxy = start_tuned_proxy(
        upstream.port(),
        &format!(
            "\x20   location /id/ {{\n\
             \x20       proxy_pass http://backend/;\n\
             \x20       proxy_http_version 1.1;\n\
             \x20       proxy_set_header Connection \"\";\n\
             \x20       proxy_set_header Cookie \"\";\n\
             \x20       proxy_set_header X-Forwarded-For $remote_addr;\n\
             \x20       proxy_set_header X-Forwarded-Proto $scheme;\n\
             \x20       proxy_set_header X-Forwarded-Host $http_host;\n\
             \x20       proxy_set_header X-Forwarded-User \"alice\";\n\
             \x20       proxy_set_header X-Forwarded-Email \"alice@example.com\";\n\
             \x20       proxy_set_header X-Forwarded-Groups \"{}\";\n\
             \x20       proxy_set_header X-Forwarded-Preferred-Username \"Alice Example\";\n\
             \x20   }}\n",
            groups.join(",")
        ),
        4096,
    );
    let upstream_worker = upstream.worker_pid();
    let proxy_worker = proxy.worker_pid();
    for n in [&upstream, &proxy] {
        let (status, body) = http_get(n.port(), "/", &[]);
        assert_eq!((status, body.as_str()), (200, "ok\n"), "nginx {}", n.name());
    }

    let cl_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let idp = TestIdp::generate(IDP_ENTITY);

    let direct = run_wrk(
        &cfg,
        "upstream direct",
        &upstream.url(),
        &[],
        &CpuOf {
            proxy: Vec::new(),
            upstream: upstream_worker,
        },
    );
    let nginx_cpu = &CpuOf {
        proxy: proxy_worker.into_iter().collect(),
        upstream: upstream_worker,
    };
    let nginx = run_wrk(&cfg, "nginx proxy", &proxy.url(), &[], nginx_cpu);
    // A session cookie of samlgate's size, which this location removes like samlgate does.
    let fake_cookie = format!("Cookie: {SESSION_COOKIE}={}", "x".repeat(120));
    let nginx_id = run_wrk(
        &cfg,
        "nginx proxy + identity headers",
        &format!("{}/id", proxy.url()),
        &[&fake_cookie],
        nginx_cpu,
    );
    // nginx as a plain reverse proxy: a site that is only `proxy_pass` (HTTP/1.0 to the
    // upstream, a new upstream connection per request, access log on), first as most
    // installations run it (Debian's nginx.conf: `worker_processes auto`, sendfile,
    // tcp_nopush, gzip), then in the most literal sense (a minimal nginx.conf, everything else
    // at nginx's built-in defaults: 1 worker).
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let plain_site = format!(
        "server {{\n\
         \x20   listen 127.0.0.1:{{port}};\n\
         \x20   location / {{ proxy_pass http://127.0.0.1:{}; }}\n\
         }}",
        upstream.port()
    );
    let nginx_stock = measure_plain_nginx(
        &cfg,
        "nginx proxy, Debian defaults",
        &format!(
            "sendfile on;\n\
             tcp_nopush on;\n\
             types_hash_max_size 2048;\n\
             include /etc/nginx/mime.types;\n\
             default_type application/octet-stream;\n\
             gzip on;\n\
             {plain_site}"
        ),
        cpus,
        768,
        upstream_worker,
    );
    let nginx_minimal = measure_plain_nginx(
        &cfg,
        "nginx proxy, minimal config",
        &plain_site,
        1,
        512,
        upstream_worker,
    );
    let bare = measure_forwarder(
        &cfg,
        "bare hyper proxy",
        bare_hyper,
        &upstream,
        upstream_worker,
    );
    let handwritten = measure_forwarder(
        &cfg,
        "hand-written HTTP/1 forwarder",
        handwritten,
        &upstream,
        upstream_worker,
    );
    let split = measure_forwarder(
        &cfg,
        "hyper server + hand-written upstream leg",
        hyper_server_handwritten_client,
        &upstream,
        upstream_worker,
    );
    let gateways: Vec<GatewayResult> = cfg
        .workers
        .iter()
        .copied()
        .map(|w| samlgate_runs(&cfg, w, &cl_rt, &idp, &upstream, upstream_worker))
        .collect();
    // The tuned nginx again, last: how far the machine drifted over the run (a VM's speed
    // varies; ratios against nginx mean something only if this stays small).
    let nginx_again = run_wrk(&cfg, "nginx proxy (again)", &proxy.url(), &[], nginx_cpu);
    drop(proxy);
    drop(upstream);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "proxy load: wrk -t{} -c{} -d{}s --latency, GET / → upstream `return 200 \"ok\\n\"` \
         ({nginx_version}, 1 worker), loopback, {cpus} CPUs",
        cfg.threads, cfg.conns, cfg.secs
    );
    let _ = writeln!(
        out,
        "{:<46} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>6} {:>10} {:>10}",
        "target",
        "req/s",
        "p50",
        "p90",
        "p99",
        "non-2xx",
        "CPU/req",
        "upstr/req",
        "other",
        "req/s÷ngx",
        "p99÷ngx"
    );
    row(&mut out, "upstream direct (nginx, 1 worker)", &direct, None);
    row(
        &mut out,
        "nginx proxy, tuned (1 worker, keepalive 64)",
        &nginx,
        None,
    );
    row(
        &mut out,
        "nginx proxy + identity headers, cookie strip",
        &nginx_id,
        Some(&nginx),
    );
    row(
        &mut out,
        &format!("nginx proxy, Debian defaults ({cpus} workers)"),
        &nginx_stock,
        Some(&nginx),
    );
    row(
        &mut out,
        "nginx proxy, minimal nginx.conf (1 worker)",
        &nginx_minimal,
        Some(&nginx),
    );
    row(
        &mut out,
        "bare hyper proxy (1 worker thread, no auth)",
        &bare,
        Some(&nginx),
    );
    row(
        &mut out,
        "hand-written h1 forwarder (bound, no checks)",
        &handwritten,
        Some(&nginx),
    );
    row(
        &mut out,
        "hyper server + hand-written upstream leg",
        &split,
        Some(&nginx),
    );
    let runtime = |w: usize| match w {
        0 => "current-thread runtime".to_string(),
        1 => "1 worker thread".to_string(),
        w => format!("{w} worker threads"),
    };
    for g in &gateways {
        let rt = runtime(g.workers);
        row(
            &mut out,
            &format!("samlgate {rt}, session cookie"),
            &g.session,
            Some(&nginx),
        );
        row(
            &mut out,
            &format!("samlgate {rt}, no cookie → 401"),
            &g.unauth,
            Some(&nginx),
        );
    }
    row(
        &mut out,
        "nginx proxy, tuned, again after the rest",
        &nginx_again,
        Some(&nginx),
    );
    let _ = writeln!(
        out,
        "CPU/req: proxy CPU (nginx worker / whole samlgate process) per request; upstr/req: \
         upstream nginx worker per request; other: machine CPU used by unrelated processes \
         meanwhile (noise); ÷ngx: against the tuned nginx proxy row (1 worker, upstream \
         keep-alive pool, no access log: the fastest nginx here)."
    );
    let nginx_mean = (nginx.rps + nginx_again.rps) / 2.0;
    let _ = writeln!(
        out,
        "machine drift: the tuned nginx proxy did {:.0} req/s first and {:.0} last ({:+.1}%)",
        nginx.rps,
        nginx_again.rps,
        (nginx_again.rps / nginx.rps - 1.0) * 100.0
    );
    for g in &gateways {
        let _ = writeln!(
            out,
            "samlgate {}, session cookie ÷ mean of both tuned nginx runs: {:.2}x req/s",
            runtime(g.workers),
            g.session.rps / nginx_mean
        );
    }
    for (which, plain) in [
        ("Debian's defaults", &nginx_stock),
        ("a minimal nginx.conf", &nginx_minimal),
    ] {
        for g in &gateways {
            let _ = writeln!(
                out,
                "samlgate {}, session cookie ÷ nginx with {which}: {:.2}x req/s, {:.2}x p99",
                runtime(g.workers),
                g.session.rps / plain.rps,
                g.session.p99.as_secs_f64() / plain.p99.as_secs_f64()
            );
        }
    }
    // The speed target of the core-gateway issue: authenticated proxied throughput at least
    // that of nginx as a plain reverse proxy (only `proxy_pass`, no tuning), same run.
    let plain_best = nginx_minimal.rps.max(nginx_stock.rps);
    for g in &gateways {
        let ratio = g.session.rps / plain_best;
        let _ = writeln!(
            out,
            "target, samlgate {} with a session ≥ nginx as a plain reverse proxy (the faster of \
             the minimal nginx.conf and Debian's defaults): {:.2}x, {}; against the tuned nginx \
             (mean of both runs): {:.2}x",
            runtime(g.workers),
            ratio,
            if ratio >= 1.0 { "met" } else { "NOT met" },
            g.session.rps / nginx_mean
        );
    }
    for g in &gateways {
        burst_report(&mut out, &cfg, g);
    }
    for (label, w) in [("upstream direct", &direct), ("nginx proxy", &nginx)]
        .into_iter()
        .chain(gateways.iter().map(|g| ("samlgate session", &g.session)))
    {
        if let Some(e) = &w.socket_errors {
            let _ = writeln!(out, "note: wrk socket errors for {label}: {e}");
        }
    }

    print!("{out}");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let file = target.join("bench-proxy-load.txt");
    match std::fs::write(&file, &out) {
        Ok(()) => println!("written to {}", file.display()),
        Err(e) => eprintln!("proxy_load: cannot write {}: {e}", file.display()),
    }
}
