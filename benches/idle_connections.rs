//! Memory per idle keep-alive connection, samlgate against nginx, on loopback.
//!
//! One run (`cargo bench --bench idle_connections`):
//! - nginx as the upstream (`return 200 "ok\n"`, `stub_status`), started by
//!   benches/support/load.rs like the proxy load test's;
//! - samlgate as its own process (the `samlgate` binary of this build, `samlgate run` on a
//!   config written by tests/support/gateway.rs), fresh for each scenario, stopped by PID;
//! - per scenario: `IDLE_CONNS` (10,000) client connections opened one after another, one
//!   request each (signed in with a session cookie: 200 from the upstream; anonymous with
//!   `Accept: application/json`: 401), then left idle for `IDLE_SETTLE_SECS` (5). The
//!   process's `VmRSS` before the first connection and after the pause gives the memory
//!   per idle connection; the upstream's `stub_status` tells how many upstream connections
//!   the proxy still holds for those idle clients. Then every 100th connection sends a
//!   second request, which must get the same answer: idle connections still serve;
//! - the same for nginx tuned as a reverse proxy (benches/support/load.rs, RSS of its
//!   worker), for reference.
//!
//! The table is printed and written to `target/bench-idle-connections.txt`. The soft limit
//! on open files is raised to the hard one; each process needs `IDLE_CONNS` plus a few
//! hundred descriptors (samlgate more if it kept one upstream connection per client).
//! Knobs: `IDLE_CONNS`, `IDLE_SETTLE_SECS`, `IDLE_WRAPPER` (a command samlgate is run under,
//! e.g. `heaptrack -o /tmp/ht`; the RSS column is then the wrapper's); `MALLOC_ARENA_MAX`,
//! `LD_PRELOAD` and the like pass through to samlgate.
//!
//! Without `--bench` (as under `cargo test --all-targets`) it does nothing: it needs nginx
//! (`scripts/install-deps.sh bench`).

#[path = "../tests/support/gateway.rs"]
mod gateway;
#[path = "support/load.rs"]
mod load;
#[path = "../tests/support/mint.rs"]
mod mint;
#[path = "../tests/support/nginx.rs"]
mod nginx;

use std::fmt::Write as _;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gateway::{
    begin_login_at, client, post_saml_response, session_cookie, write_config, Options,
    HIGH_RATE_LIMITS, HTML,
};
use load::{env_num, read_response, start_tuned_proxy, start_upstream};
use mint::{ResponseSpec, TestIdp};

const IDP_ENTITY: &str = "https://idp.bench.example/metadata";
const IDP_SSO: &str = "https://idp.bench.example/sso";
/// Every how many idle connections one sends a second request at the end.
const RECHECK_EVERY: usize = 100;

/// Raises the soft limit on open files to the hard limit; returns the new soft limit.
#[allow(unsafe_code)] // setrlimit has no safe wrapper in std; see the SAFETY note
fn raise_open_files_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

/// `VmRSS` of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS for {pid}"))
}

/// Connections open at the upstream (`stub_status`), less the one asking.
fn upstream_connections(port: u16) -> u64 {
    let (status, body) = load::http_get(port, "/nginx_status", &[]);
    assert_eq!(status, 200, "stub_status");
    // "Active connections: 3 \n..."
    body.lines()
        .next()
        .and_then(|l| l.strip_prefix("Active connections:"))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .expect("stub_status's first line")
        .saturating_sub(1)
}

/// One GET on `s`, kept open; returns the status.
fn get_on(s: &TcpStream, port: u16, headers: &[&str]) -> u16 {
    let mut req = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    (&*s).write_all(req.as_bytes()).expect("send");
    // Nothing follows the response, so the reader's buffer holds nothing of the next one.
    read_response(&mut BufReader::new(s)).expect("response").0
}

/// `n` connections, one request each (answered `expect`), left open.
fn open_idle(port: u16, n: usize, headers: &[&str], expect: u16) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let s = TcpStream::connect(("127.0.0.1", port))
                .unwrap_or_else(|e| panic!("connection {i}: {e}"));
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let status = get_on(&s, port, headers);
            assert_eq!(status, expect, "connection {i}");
            s
        })
        .collect()
}

/// One measured scenario.
struct Row {
    label: String,
    conns: usize,
    before_kib: u64,
    after_kib: u64,
    upstream_conns: u64,
    rechecked: usize,
}

impl Row {
    fn per_conn_kib(&self) -> f64 {
        self.after_kib.saturating_sub(self.before_kib) as f64 / self.conns as f64
    }
}

/// Opens the idle connections against `port` and measures `rss_pid` (see the module doc).
fn measure(
    label: &str,
    port: u16,
    rss_pid: u32,
    upstream_port: u16,
    headers: &[&str],
    expect: u16,
) -> Row {
    let conns = env_num("IDLE_CONNS", 10_000usize);
    let settle = Duration::from_secs(env_num("IDLE_SETTLE_SECS", 5));
    let before_kib = rss_kib(rss_pid);
    let t = Instant::now();
    let idle = open_idle(port, conns, headers, expect);
    eprintln!(
        "idle_connections: {label}: {conns} connections in {:?}",
        t.elapsed()
    );
    std::thread::sleep(settle);
    let after_kib = rss_kib(rss_pid);
    let upstream_conns = upstream_connections(upstream_port);
    let rechecked = idle
        .iter()
        .step_by(RECHECK_EVERY)
        .filter(|s| get_on(s, port, headers) == expect)
        .count();
    assert_eq!(
        rechecked,
        idle.len().div_ceil(RECHECK_EVERY),
        "{label}: an idle connection no longer served"
    );
    Row {
        label: label.into(),
        conns,
        before_kib,
        after_kib,
        upstream_conns,
        rechecked,
    }
}

/// samlgate as its own process, killed by PID when dropped.
struct Samlgate {
    child: Child,
    port: u16,
    acs_url: String,
    sp_entity_id: String,
    _dir: tempfile::TempDir,
}

impl Drop for Samlgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_samlgate(upstream: &str, idp: &TestIdp, max_connections: usize) -> Samlgate {
    let port = nginx::free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    // hyper's header-read timer runs between requests too, so with the default 10 s the
    // first connections would close before the last ones are open: 60 s keeps them all.
    let opts = Options {
        extra_toml: format!(
            "{HIGH_RATE_LIMITS}[server]\nmax_connections = {max_connections}\n\
             header_read_timeout_secs = 60\n"
        ),
        ..Options::default()
    };
    let (dir, path, _) = write_config(addr, upstream, &idp.metadata_xml(IDP_SSO), &opts, None);
    let settings = samlgate::config::load(&path).expect("bench config");
    let log = std::fs::File::create(dir.path().join("samlgate.log")).unwrap();
    let wrapper = std::env::var("IDLE_WRAPPER").unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    let mut cmd = match words.next() {
        Some(w) => {
            let mut c = Command::new(w);
            c.args(words).arg(env!("CARGO_BIN_EXE_samlgate"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_samlgate")),
    };
    let child = cmd
        .arg("run")
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start samlgate");
    let gw = Samlgate {
        child,
        port,
        acs_url: settings.saml.acs_url.clone(),
        sp_entity_id: settings.saml.sp_entity_id.clone(),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "samlgate did not listen: {}",
            std::fs::read_to_string(gw._dir.path().join("samlgate.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    gw
}

/// Signs in with a minted response; returns the `Cookie:` header.
fn sign_in(rt: &tokio::runtime::Runtime, idp: &TestIdp, gw: &Samlgate) -> String {
    rt.block_on(async {
        let c = client();
        let (req_id, relay) = begin_login_at(&c, &format!("http://127.0.0.1:{}/", gw.port)).await;
        let spec = ResponseSpec::valid(idp, &gw.sp_entity_id, &gw.acs_url, Some(&req_id));
        let r = post_saml_response(
            &c,
            &gw.acs_url,
            &mint::mint_b64(idp, &spec),
            Some(&relay),
            HTML,
        )
        .await;
        assert_eq!(r.status(), 303, "sign-in with a minted response");
        format!("Cookie: {}", session_cookie(&r).expect("session cookie"))
    })
}

fn fmt_mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn report(rows: &[Row], limit: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "idle keep-alive connections, one request each (open files limit {limit})\n"
    );
    let _ = writeln!(
        out,
        "{:<34} {:>7} {:>11} {:>10} {:>10} {:>14} {:>10}",
        "proxy", "conns", "before MiB", "after MiB", "KiB/conn", "upstream conns", "rechecked"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<34} {:>7} {:>11} {:>10} {:>10.2} {:>14} {:>10}",
            r.label,
            r.conns,
            fmt_mib(r.before_kib),
            fmt_mib(r.after_kib),
            r.per_conn_kib(),
            r.upstream_conns,
            r.rechecked
        );
    }
    out
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("idle_connections: run it with `cargo bench --bench idle_connections`");
        return;
    }
    let limit = raise_open_files_limit();
    let conns = env_num("IDLE_CONNS", 10_000usize);
    let room = u32::try_from(conns)
        .unwrap_or(u32::MAX)
        .saturating_add(1_000);
    let upstream = start_upstream(room);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let idp = TestIdp::generate(IDP_ENTITY);
    let mut rows = Vec::new();

    {
        let gw = start_samlgate(&upstream.url(), &idp, conns + 1_000);
        let cookie = sign_in(&rt, &idp, &gw);
        let pid = gw.child.id();
        rows.push(measure(
            "samlgate, signed in (200)",
            gw.port,
            pid,
            upstream.port(),
            &[&cookie],
            200,
        ));
    }
    {
        let gw = start_samlgate(&upstream.url(), &idp, conns + 1_000);
        let pid = gw.child.id();
        rows.push(measure(
            "samlgate, anonymous (401)",
            gw.port,
            pid,
            upstream.port(),
            &["Accept: application/json"],
            401,
        ));
    }
    {
        let proxy = start_tuned_proxy(upstream.port(), "", room);
        let worker = proxy.worker_pid().expect("nginx worker");
        rows.push(measure(
            "nginx tuned proxy (worker)",
            proxy.port(),
            worker,
            upstream.port(),
            &[],
            200,
        ));
    }

    let out = report(&rows, limit);
    print!("{out}");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let file = target.join("bench-idle-connections.txt");
    match std::fs::write(&file, &out) {
        Ok(()) => println!("written to {}", file.display()),
        Err(e) => eprintln!("idle_connections: cannot write {}: {e}", file.display()),
    }
}
