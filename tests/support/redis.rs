//! Test support: a real `redis-server` (Debian's `redis-server` package) run as a child
//! process on a free loopback port, with persistence off (`--save ''`, `--appendonly no`) and
//! its own temp dir, stopped by PID when dropped. [`RedisServer::stop`] and
//! [`RedisServer::restart`] let a test take Redis away and bring it back on the same port —
//! empty, as a restart without persistence leaves it.
//!
//! [`SentinelGroup`] (a master, a replica and three Sentinels) and [`RedisCluster`] (three
//! masters, `redis-cli --cluster create`) are built from the same servers, each its own
//! process on its own free port.
//!
//! Include with `#[path = "support/redis.rs"] mod redis_server;` (from `benches/`:
//! `#[path = "../tests/support/redis.rs"]`). Without the binary [`RedisServer::start`]
//! panics with the install hint, never skips.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REDIS_BIN: &str = "/usr/bin/redis-server";
pub const REDIS_CLI: &str = "/usr/bin/redis-cli";
const NOT_INSTALLED: &str =
    "install it with `scripts/install-deps.sh test` (Debian: redis-server, redis-tools)";
const START_TIMEOUT: Duration = Duration::from_secs(10);

pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    password: Option<String>,
    /// A config file passed first (Sentinel needs one it can rewrite).
    config: Option<PathBuf>,
    /// More arguments after the common ones (`--replicaof`, `--sentinel`, cluster options).
    extra: Vec<String>,
    /// A Sentinel: no persistence options (it has no data).
    sentinel: bool,
    log: PathBuf,
    // Last: removed after the process writing into it has stopped.
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

impl RedisServer {
    /// A server with no password.
    pub fn start() -> RedisServer {
        RedisServer::start_with(None)
    }

    /// A server whose `default` user needs `password`.
    pub fn start_with(password: Option<&str>) -> RedisServer {
        RedisServer::start_full(password, free_port(), &[], None)
    }

    /// A server with more arguments (e.g. `["--replicaof", "127.0.0.1", "6379"]`).
    pub fn start_args(port: u16, extra: &[&str]) -> RedisServer {
        RedisServer::start_full(None, port, extra, None)
    }

    /// A Sentinel on a free port whose config file holds `config` (plus its port line).
    pub fn start_sentinel(config: &str) -> RedisServer {
        let port = free_port();
        RedisServer::start_full(None, port, &["--sentinel"], Some(config))
    }

    fn start_full(
        password: Option<&str>,
        port: u16,
        extra: &[&str],
        sentinel_config: Option<&str>,
    ) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("redis-")
            .tempdir()
            .expect("temp dir");
        let config = sentinel_config.map(|text| {
            let path = dir.path().join("sentinel.conf");
            std::fs::write(&path, format!("port {port}\n{text}")).expect("write sentinel.conf");
            path
        });
        let mut r = RedisServer {
            child: None,
            port,
            password: password.map(str::to_string),
            sentinel: config.is_some(),
            config,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            log: dir.path().join("redis.log"),
            dir,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(REDIS_BIN);
        if let Some(config) = &self.config {
            cmd.arg(config);
        }
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&self.log)
            .arg("--daemonize")
            .arg("no");
        if !self.sentinel {
            cmd.arg("--save").arg("").arg("--appendonly").arg("no");
        }
        if let Some(p) = &self.password {
            cmd.arg("--requirepass").arg(p);
        }
        cmd.args(&self.extra);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {REDIS_BIN} ({e}); {NOT_INSTALLED}"));
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "redis-server exited at start ({status}) on port {}:\n{}",
                    self.port,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if self.answers_ping() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server not answering on port {} within {START_TIMEOUT:?}:\n{}",
                self.port,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True when the server answers `PING` (with `+PONG`, or `-NOAUTH` when a password is set).
    fn answers_ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        matches!(s.read(&mut buf), Ok(n) if n > 0 && (buf[0] == b'+' || buf[0] == b'-'))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the server (SIGKILL: no chance to save anything, like a crash) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty (no persistence).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// A client connection for tests that look at or edit Redis directly.
    pub fn client(&self) -> redis::Client {
        let mut url = format!("redis://127.0.0.1:{}/0", self.port);
        if let Some(p) = &self.password {
            url = format!("redis://:{p}@127.0.0.1:{}/0", self.port);
        }
        redis::Client::open(url).expect("redis client")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The server's temp dir (Cluster nodes keep their `nodes.conf` there).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The Sentinel name of [`SentinelGroup`]'s master.
pub const SENTINEL_MASTER: &str = "mymaster";

/// A master, one replica and three Sentinels (quorum 2, the master down after 1 s), all on
/// loopback. `SENTINEL FAILOVER` (or stopping the master) promotes the replica.
pub struct SentinelGroup {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinels: Vec<RedisServer>,
}

impl SentinelGroup {
    pub fn start() -> SentinelGroup {
        let master = RedisServer::start();
        let mport = master.port().to_string();
        let replica = RedisServer::start_args(free_port(), &["--replicaof", "127.0.0.1", &mport]);
        wait_until(Duration::from_secs(15), "the replica to sync", || {
            info(&replica, "replication").contains("master_link_status:up")
        });
        let config = format!(
            "sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {mport} 2\n\
             sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
             sentinel failover-timeout {SENTINEL_MASTER} 5000\n\
             sentinel parallel-syncs {SENTINEL_MASTER} 1\n"
        );
        let sentinels: Vec<RedisServer> = (0..3)
            .map(|_| RedisServer::start_sentinel(&config))
            .collect();
        let group = SentinelGroup {
            master,
            replica,
            sentinels,
        };
        // Every Sentinel knows the replica and the other Sentinels (a failover needs both).
        wait_until(Duration::from_secs(20), "the sentinels to meet", || {
            group.sentinels.iter().all(|s| {
                let master: std::collections::HashMap<String, String> =
                    sentinel_query(s, &["SENTINEL", "MASTER", SENTINEL_MASTER]);
                master.get("num-slaves").map(String::as_str) == Some("1")
                    && master.get("num-other-sentinels").map(String::as_str) == Some("2")
            })
        });
        group
    }

    /// `redis://127.0.0.1:PORT` of each Sentinel.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("redis://127.0.0.1:{}", s.port()))
            .collect()
    }

    /// The master's port as each Sentinel reports it.
    pub fn master_ports(&self) -> Vec<u16> {
        self.sentinels
            .iter()
            .map(|s| {
                let addr: Vec<String> =
                    sentinel_query(s, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER]);
                addr.get(1)
                    .and_then(|p| p.parse().ok())
                    .expect("the sentinel names a master")
            })
            .collect()
    }

    /// The master's port as the first Sentinel reports it.
    pub fn master_port(&self) -> u16 {
        let addr: Vec<String> = sentinel_query(
            &self.sentinels[0],
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER],
        );
        addr.get(1)
            .and_then(|p| p.parse().ok())
            .expect("the sentinel names a master")
    }

    /// Asks a Sentinel to fail over and waits until every Sentinel names the replica as the
    /// master, the replica says it is one, and the old master says it is a replica.
    pub fn failover(&self) {
        let old = self.master_port();
        let (new, demoted) = if old == self.master.port() {
            (&self.replica, &self.master)
        } else {
            (&self.master, &self.replica)
        };
        let _: String = sentinel_query(
            &self.sentinels[0],
            &["SENTINEL", "FAILOVER", SENTINEL_MASTER],
        );
        wait_until(Duration::from_secs(30), "the failover", || {
            self.sentinels.iter().all(|s| {
                let addr: Vec<String> =
                    sentinel_query(s, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER]);
                addr.get(1).map(String::as_str) == Some(new.port().to_string().as_str())
            }) && info(new, "replication").contains("role:master")
                && info(demoted, "replication").contains("role:slave")
        });
    }
}

/// Three Redis Cluster masters (no replicas) with all 16384 slots assigned.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Three masters, no replicas.
    pub fn start() -> RedisCluster {
        RedisCluster::start_with(0)
    }

    /// Three masters with `replicas` replicas each (`nodes[0..3]` are the masters, as
    /// `redis-cli --cluster create` assigns them).
    pub fn start_with(replicas: usize) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3 * (1 + replicas))
            .map(|_| {
                RedisServer::start_args(
                    cluster_port(),
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "2000",
                        // A node lost must not stop the slots the others still serve.
                        "--cluster-require-full-coverage",
                        "no",
                    ],
                )
            })
            .collect();
        let mut cmd = Command::new(REDIS_CLI);
        cmd.arg("--cluster").arg("create");
        for n in &nodes {
            cmd.arg(format!("127.0.0.1:{}", n.port()));
        }
        let out = cmd
            .arg("--cluster-replicas")
            .arg(replicas.to_string())
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {REDIS_CLI} ({e}); {NOT_INSTALLED}"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { nodes };
        wait_until(Duration::from_secs(20), "the cluster to be ok", || {
            cluster.nodes.iter().all(|n| {
                let text: String = query(n, &["CLUSTER", "INFO"]);
                text.contains("cluster_state:ok")
            })
        });
        if replicas > 0 {
            wait_until(Duration::from_secs(20), "every replica in sync", || {
                cluster.nodes[3..]
                    .iter()
                    .all(|n| info(n, "replication").contains("master_link_status:up"))
            });
        }
        cluster
    }

    /// `redis://127.0.0.1:PORT` of each node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port()))
            .collect()
    }
}

/// A free port whose cluster bus port (+10000) is free too.
fn cluster_port() -> u16 {
    loop {
        let p = free_port();
        if p < 55000 && TcpListener::bind(("127.0.0.1", p + 10000)).is_ok() {
            return p;
        }
    }
}

/// One command on a server, answered or the test fails.
pub fn query<T: redis::FromRedisValue>(server: &RedisServer, args: &[&str]) -> T {
    let mut conn = server
        .client()
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to port {}: {e}", server.port()));
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut conn)
        .unwrap_or_else(|e| panic!("{args:?} on port {}: {e}", server.port()))
}

fn sentinel_query<T: redis::FromRedisValue>(sentinel: &RedisServer, args: &[&str]) -> T {
    let url = format!("redis://127.0.0.1:{}", sentinel.port());
    let mut conn = redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
        .unwrap_or_else(|e| panic!("connect to sentinel {}: {e}", sentinel.port()));
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut conn)
        .unwrap_or_else(|e| panic!("{args:?} on sentinel {}: {e}", sentinel.port()))
}

/// `INFO <section>` of a server.
pub fn info(server: &RedisServer, section: &str) -> String {
    query(server, &["INFO", section])
}

/// Polls `done` every 50 ms until it holds; fails the test after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
