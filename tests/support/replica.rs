//! Test support: one `samlgate run` process of a multi-replica deployment (its own listen
//! port through `SAMLGATE_LISTEN`, a shared config file), its log in a file, stopped by PID
//! (SIGKILL, like a crash) when dropped. [`Replica::stop`] and [`Replica::spawn`] restart it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Replica {
    pub name: &'static str,
    pub port: u16,
    pub config: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Replica {
    /// A replica (not started) of `config` on `port`, logging to `log`.
    pub fn new(name: &'static str, port: u16, config: PathBuf, log: PathBuf) -> Replica {
        Replica {
            name,
            port,
            config,
            log,
            child: None,
        }
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("replica log");
        let child = Command::new(env!("CARGO_BIN_EXE_samlgate"))
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .env("SAMLGATE_LISTEN", format!("127.0.0.1:{}", self.port))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("run samlgate");
        self.child = Some(child);
    }

    /// Kills the process (SIGKILL: no goodbye to anyone) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Waits (bounded) until `/readyz` answers `status`.
    pub async fn wait_readyz(&self, status: u16) {
        let c = bare_client();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = c.get(self.url("/readyz")).send().await {
                if r.status().as_u16() == status {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "replica {} never answered /readyz {status}:\n{}",
                self.name,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Replicas A, B, C of `config` on `ports`, logging into `dir`, started and ready
/// (`/readyz` 200).
pub async fn start_three(
    config: &std::path::Path,
    dir: &std::path::Path,
    ports: [u16; 3],
) -> Vec<Replica> {
    let mut r = Vec::new();
    for (name, port) in ["A", "B", "C"].into_iter().zip(ports) {
        let log = dir.join(format!("replica-{name}.log"));
        let mut replica = Replica::new(name, port, config.to_path_buf(), log);
        replica.spawn();
        r.push(replica);
    }
    for replica in &r {
        replica.wait_readyz(200).await;
    }
    r
}

/// A client with no cookie store and no redirects: sends exactly the cookie it is given.
pub fn bare_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}
