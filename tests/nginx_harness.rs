//! The nginx test harness itself (tests/support/nginx.rs): a plain reverse proxy in front
//! of the echo upstream works, a taken port is reported as a bind race (so `start` retries)
//! and a broken config as a failure with nginx's own message, and the processes are gone
//! after a drop — also when the owner panicked.
//!
//! Needs Debian's `nginx-light` (scripts/install-deps.sh test); fails without it.

#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/nginx.rs"]
mod nginx;

use std::path::Path;

use gateway::start_upstream;
use nginx::{Nginx, NginxOptions, StartError};

fn alive(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie still has one, marked "Z".
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| s[i + 1..].split_whitespace().next() != Some("Z"))
        })
        .unwrap_or(false)
}

fn reverse_proxy_to(upstream: std::net::SocketAddr) -> String {
    format!(
        "server {{\n\
         \x20   listen 127.0.0.1:{{port}};\n\
         \x20   location / {{\n\
         \x20       proxy_pass http://{upstream};\n\
         \x20       proxy_set_header X-Forwarded-For $remote_addr;\n\
         \x20       proxy_set_header X-Test-Via nginx;\n\
         \x20   }}\n\
         }}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_reverse_proxy_reaches_upstream_and_stops_on_drop() {
    let up = start_upstream().await;
    let n = Nginx::start("plain", &reverse_proxy_to(up.addr));
    let master = n.pid();
    let worker = n.worker_pid().expect("nginx forked a worker");
    assert!(
        n.config().contains(&n.dir().display().to_string()),
        "pid, logs and temp paths live in the temp dir:\n{}",
        n.config()
    );
    assert!(!n.config().contains("/var/"), "{}", n.config());

    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/some/path?q=1", n.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.count(), 1, "nginx forwarded the request");
    let seen = up.last();
    assert_eq!(seen.path, "/some/path?q=1");
    assert_eq!(seen.one("x-test-via").as_deref(), Some("nginx"));
    assert_eq!(seen.one("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    // nginx writes the access line in its log phase, after the response has gone out: the
    // client can see the answer before the line is on disk.
    let logged = async {
        while !n.access_log().contains("GET /some/path?q=1") {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    assert!(
        tokio::time::timeout(std::time::Duration::from_secs(5), logged)
            .await
            .is_ok(),
        "access log in the temp dir: {:?}",
        n.access_log()
    );

    let dir = n.dir().to_path_buf();
    let port = n.port();
    drop(n);
    assert!(!alive(master), "master {master} stopped");
    assert!(!alive(worker), "worker {worker} stopped");
    assert!(!Path::new(&dir).exists(), "temp dir removed");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens on {port} any more"
    );
}

#[test]
fn a_taken_port_is_a_bind_race_and_start_moves_on() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let body = "server { listen 127.0.0.1:{port}; location / { return 204; } }";
    match Nginx::try_start_on("taken", port, body, &NginxOptions::default()) {
        Err(StartError::PortTaken(log)) => {
            assert!(log.contains("Address already in use"), "{log}")
        }
        Err(StartError::Failed(why)) => panic!("reported as a plain failure: {why}"),
        Ok(n) => panic!("nginx claims to listen on a held port {}", n.port()),
    }
    let n = Nginx::start("moved-on", body);
    assert_ne!(n.port(), port);
}

#[test]
fn a_broken_config_fails_with_nginx_words() {
    let body = "server { listen 127.0.0.1:{port}; no_such_directive on; }";
    match Nginx::try_start_on("broken", nginx::free_port(), body, &NginxOptions::default()) {
        Err(StartError::Failed(why)) => assert!(
            why.contains("unknown directive \"no_such_directive\""),
            "{why}"
        ),
        Err(StartError::PortTaken(log)) => panic!("not a bind race: {log}"),
        Ok(_) => panic!("nginx accepted an unknown directive"),
    }
}

#[test]
fn stopped_when_the_owner_panics() {
    let (tx, rx) = std::sync::mpsc::channel();
    let owner = std::thread::spawn(move || {
        let n = Nginx::start(
            "panicking",
            "server { listen 127.0.0.1:{port}; location / { return 204; } }",
        );
        tx.send((n.pid(), n.worker_pid())).unwrap();
        panic!("test owner panics while nginx runs");
    });
    assert!(owner.join().is_err(), "the owner thread panicked");
    let (master, worker) = rx.recv().unwrap();
    assert!(!alive(master), "master {master} stopped during unwinding");
    let worker = worker.expect("nginx forked a worker");
    assert!(!alive(worker), "worker {worker} stopped during unwinding");
}
