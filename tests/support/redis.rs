//! Test support: a real `redis-server` (Debian's `redis-server` package) run as a child
//! process on a free loopback port, with persistence off (`--save ''`, `--appendonly no`) and
//! its own temp dir, stopped by PID when dropped. [`RedisServer::stop`] and
//! [`RedisServer::restart`] let a test take Redis away and bring it back on the same port —
//! empty, as a restart without persistence leaves it.
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
const NOT_INSTALLED: &str = "install it with `scripts/install-deps.sh test` (Debian: redis-server)";
const START_TIMEOUT: Duration = Duration::from_secs(10);

pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    password: Option<String>,
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
        let dir = tempfile::Builder::new()
            .prefix("redis-")
            .tempdir()
            .expect("temp dir");
        let mut r = RedisServer {
            child: None,
            port: free_port(),
            password: password.map(str::to_string),
            log: dir.path().join("redis.log"),
            dir,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(REDIS_BIN);
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&self.log)
            .arg("--daemonize")
            .arg("no");
        if let Some(p) = &self.password {
            cmd.arg("--requirepass").arg(p);
        }
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
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
