//! Test support: a real nginx (Debian's `nginx-light`, `/usr/sbin/nginx`) run as a child
//! process from a temp dir of its own, on a free loopback port. The caller gives the body of
//! the `http {}` block; this file adds everything that would otherwise touch `/etc` or `/var`
//! (pid file, error and access logs, temp paths, `daemon off`), picks the port, waits until
//! nginx really listens, and stops the whole process group by PID when the value is dropped
//! (also while unwinding from a panic). It is the only nginx starter: the forward-auth tests
//! and `benches/proxy_load.rs` both use it.
//!
//! Include with `#[path = "support/nginx.rs"] mod nginx;` (from `benches/`:
//! `#[path = "../tests/support/nginx.rs"]`). Needs the Debian package `nginx-light`
//! (`scripts/install-deps.sh test`); without it [`Nginx::start`] panics, never skips.
//!
//! Blocking (std only): it waits with `std::thread::sleep` for at most a few seconds; from
//! async tests that is fine as long as nothing else on the same runtime thread has to answer
//! meanwhile (nginx does not call its upstreams while starting).
#![allow(dead_code)]

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's nginx packages put the binary.
pub const NGINX_BIN: &str = "/usr/sbin/nginx";
/// How long [`Nginx::try_start_on`] waits for the pid file and a listening port. nginx itself
/// retries a failed `bind()` for about 2.5 s before it gives up.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Ports tried by [`Nginx::start`] before giving up on bind races.
pub const PORT_ATTEMPTS: usize = 5;

const NOT_INSTALLED: &str = "install it with `scripts/install-deps.sh test` (Debian: nginx-light)";

/// Settings of the generated main context, besides what the caller's `http {}` body says.
#[derive(Clone, Debug)]
pub struct NginxOptions {
    pub worker_processes: u32,
    pub worker_connections: u32,
    /// `false` writes `access_log off;` (benchmarks); `true` logs to `access.log` in the
    /// temp dir (see [`Nginx::access_log`]).
    pub access_log: bool,
    /// `error_log` level.
    pub error_log_level: &'static str,
}

impl Default for NginxOptions {
    fn default() -> Self {
        NginxOptions {
            worker_processes: 1,
            worker_connections: 1024,
            access_log: true,
            error_log_level: "info",
        }
    }
}

/// Why one start attempt failed.
#[derive(Debug)]
pub enum StartError {
    /// The port was taken between choosing it and nginx's `bind()`: try another one.
    PortTaken(String),
    /// Anything else (bad config, missing binary, timeout); carries nginx's own words.
    Failed(String),
}

/// A running nginx: master (+ workers) in their own process group, stopped on drop.
pub struct Nginx {
    name: String,
    child: Child,
    port: u16,
    error_log: PathBuf,
    access_log: PathBuf,
    stderr_log: PathBuf,
    conf_path: PathBuf,
    workers: u32,
    // Last field: removed only after `drop` has stopped the processes writing into it.
    dir: tempfile::TempDir,
}

/// A port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

impl Nginx {
    /// Starts nginx with `http_body` inside `http {}`, every `{port}` in it replaced by a free
    /// loopback port (so `listen 127.0.0.1:{port};`), default [`NginxOptions`]. Panics with
    /// nginx's error log when it cannot start.
    pub fn start(name: &str, http_body: &str) -> Nginx {
        Nginx::start_with(name, http_body, &NginxOptions::default())
    }

    /// [`Nginx::start`] with options. A bind race (another process took the chosen port
    /// before nginx bound it) is retried on a fresh port, up to [`PORT_ATTEMPTS`] times.
    pub fn start_with(name: &str, http_body: &str, opts: &NginxOptions) -> Nginx {
        let mut races = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            match Nginx::try_start_on(name, free_port(), http_body, opts) {
                Ok(n) => return n,
                Err(StartError::PortTaken(log)) => races.push(log),
                Err(StartError::Failed(why)) => panic!("nginx {name} did not start: {why}"),
            }
        }
        panic!(
            "nginx {name}: every one of {PORT_ATTEMPTS} ports was taken before nginx could \
             bind it:\n{}",
            races.join("\n---\n")
        )
    }

    /// One attempt on `port`. Ready means: the pid file holds our child's PID (nginx writes
    /// it only after binding every listening socket) and the port accepts connections. The
    /// pid file matters: while nginx is still retrying a taken port, a connect would reach
    /// the other process.
    pub fn try_start_on(
        name: &str,
        port: u16,
        http_body: &str,
        opts: &NginxOptions,
    ) -> Result<Nginx, StartError> {
        let failed = |what: &str, e: std::io::Error| StartError::Failed(format!("{what}: {e}"));
        let dir = tempfile::Builder::new()
            .prefix(&format!("nginx-{name}-"))
            .tempdir()
            .map_err(|e| failed("temp dir", e))?;
        // A root master runs its workers as `nobody`: they must be able to reach the temp
        // paths below (the master creates and chowns those, but not their parent).
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .map_err(|e| failed("chmod temp dir", e))?;
        let d = dir.path();
        let error_log = d.join("error.log");
        let access_log = d.join("access.log");
        let stderr_log = d.join("stderr.log");
        let pid_file = d.join("nginx.pid");
        let conf_path = d.join("nginx.conf");
        let access = if opts.access_log {
            format!("access_log {};", access_log.display())
        } else {
            "access_log off;".to_string()
        };
        let conf = format!(
            "daemon off;\n\
             master_process on;\n\
             worker_processes {workers};\n\
             pid {pid};\n\
             error_log {err} {level};\n\
             events {{ worker_connections {conns}; }}\n\
             http {{\n\
             \x20   {access}\n\
             \x20   client_body_temp_path {tmp}/body;\n\
             \x20   proxy_temp_path {tmp}/proxy;\n\
             \x20   fastcgi_temp_path {tmp}/fastcgi;\n\
             \x20   uwsgi_temp_path {tmp}/uwsgi;\n\
             \x20   scgi_temp_path {tmp}/scgi;\n\
             {body}\n\
             }}\n",
            workers = opts.worker_processes,
            pid = pid_file.display(),
            err = error_log.display(),
            level = opts.error_log_level,
            conns = opts.worker_connections,
            tmp = d.display(),
            body = http_body.replace("{port}", &port.to_string()),
        );
        fs::write(&conf_path, &conf).map_err(|e| failed("write nginx.conf", e))?;
        let stderr = fs::File::create(&stderr_log).map_err(|e| failed("create stderr.log", e))?;
        let child = Command::new(NGINX_BIN)
            // -p: relative paths and the compiled-in defaults resolve inside the temp dir;
            // -e: even the error log used before the config is read stays there.
            .arg("-p")
            .arg(d)
            .arg("-e")
            .arg(&error_log)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            // Own process group: drop signals master and workers together, and a terminal's
            // Ctrl-C to the test does not race with that.
            .process_group(0)
            .spawn()
            .map_err(|e| {
                StartError::Failed(format!("cannot run {NGINX_BIN} ({e}); {NOT_INSTALLED}"))
            })?;
        let mut n = Nginx {
            name: name.to_string(),
            child,
            port,
            error_log,
            access_log,
            stderr_log,
            conf_path,
            workers: opts.worker_processes,
            dir,
        };
        n.wait_ready(&pid_file)?;
        Ok(n)
    }

    fn wait_ready(&mut self, pid_file: &std::path::Path) -> Result<(), StartError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let pid = self.child.id().to_string();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let logs = self.logs();
                return Err(if logs.contains("Address already in use") {
                    StartError::PortTaken(format!("port {}: {logs}", self.port))
                } else {
                    StartError::Failed(format!(
                        "exited at start ({status}) on port {}:\n{logs}\nconfig:\n{}",
                        self.port,
                        fs::read_to_string(&self.conf_path).unwrap_or_default()
                    ))
                });
            }
            let pid_written = fs::read_to_string(pid_file).is_ok_and(|p| p.trim() == pid);
            if pid_written && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                // Drop stops it.
                return Err(StartError::Failed(format!(
                    "not listening on port {} within {START_TIMEOUT:?}:\n{}",
                    self.port,
                    self.logs()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The master's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The temp dir holding the config, logs and temp files.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The generated `nginx.conf`.
    pub fn config(&self) -> String {
        fs::read_to_string(&self.conf_path).unwrap_or_default()
    }

    /// The access log so far (empty with `access_log: false`).
    pub fn access_log(&self) -> String {
        fs::read_to_string(&self.access_log).unwrap_or_default()
    }

    /// The error log and anything nginx printed to stderr, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "{}{}",
            fs::read_to_string(&self.stderr_log).unwrap_or_default(),
            fs::read_to_string(&self.error_log).unwrap_or_default()
        )
    }

    /// The first worker process (to read its CPU time), once the master has forked it.
    pub fn worker_pid(&self) -> Option<u32> {
        self.worker_pids().into_iter().next()
    }

    /// Every worker process, once the master has forked them (waits up to 2 s for all of
    /// `worker_processes`; a master that forked fewer meanwhile returns those).
    pub fn worker_pids(&self) -> Vec<u32> {
        let master = self.child.id();
        let mut pids = Vec::new();
        for _ in 0..100 {
            let Ok(children) = fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
            else {
                return Vec::new();
            };
            pids = children
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            if pids.len() >= self.workers as usize {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        pids
    }
}

const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;
extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

impl Drop for Nginx {
    /// SIGTERM to the group (nginx's fast shutdown), SIGKILL to the group after 5 s.
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pgid = self.child.id() as i32;
        // SAFETY: a plain syscall. The group ID is our unreaped child's PID, so Linux cannot
        // have handed that number to anyone else.
        #[allow(unsafe_code)]
        unsafe {
            kill(-pgid, SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!(
            "nginx {} (pid {pgid}) ignored SIGTERM for 5 s; killing its process group",
            self.name
        );
        // SAFETY: as above; the master is still unreaped.
        #[allow(unsafe_code)]
        unsafe {
            kill(-pgid, SIGKILL);
        }
        let _ = self.child.wait();
    }
}
