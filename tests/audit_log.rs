//! The audit log for requests the gateway never sees whole: hyper refuses a malformed or
//! oversized request head itself (400 / 431) and closes the connection, and samlgate still
//! writes one `samlgate::audit` line with `event="bad_request"` and the reason.
//!
//! This file installs its own process-wide log subscriber that records every line, so it
//! holds a single test of that kind; the other runs the binary, whose log on stdout must be
//! free of colour codes when stdout is a file.
//! The other audit events are tested in `audit_events.rs`.

#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/log_capture.rs"]
mod log_capture;
#[path = "support/mint.rs"]
mod mint;

use std::time::{Duration, Instant};

use gateway::*;
use log_capture::Captured;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

impl Captured {
    /// The lines containing all of `needles`, waiting up to 5 s for the first to appear.
    async fn lines_with(&self, needles: &[&str]) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found: Vec<String> = self
                .text_from(0)
                .lines()
                .filter(|l| needles.iter().all(|n| l.contains(n)))
                .map(str::to_string)
                .collect();
            if !found.is_empty() || Instant::now() > deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Sends `request` on a fresh connection and returns everything the gateway answers until it
/// closes the connection.
async fn raw_exchange(gw: &TestGateway, request: &[u8]) -> String {
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn requests_refused_by_the_http_parser_leave_an_audit_line() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_target(true)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let idp = mint::TestIdp::generate("https://idp.test/metadata");
    let up = start_upstream().await;
    let gw = start_gateway(
        &up.url(),
        &idp.metadata_xml("https://idp.test/sso"),
        Options::default(),
    )
    .await;

    let answer = raw_exchange(&gw, b"GET / HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let lines = captured
        .lines_with(&[
            "samlgate::audit",
            "event=\"bad_request\"",
            "malformed HTTP request",
            "peer=127.0.0.1",
        ])
        .await;
    assert_eq!(lines.len(), 1, "{}", captured.text_from(0));

    let huge = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let answer = raw_exchange(&gw, huge.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let lines = captured
        .lines_with(&["event=\"bad_request\"", "request head too large"])
        .await;
    assert_eq!(lines.len(), 1, "{}", captured.text_from(0));

    // A client that just connects and leaves is no bad request.
    drop(TcpStream::connect(gw.addr).await.unwrap());
    // The gateway still serves, and the two refusals are the only audit lines of the kind.
    let r = client().get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        captured
            .text_from(0)
            .matches("event=\"bad_request\"")
            .count(),
        2,
        "{}",
        captured.text_from(0)
    );
}

/// The binary's log on stdout redirected to a file (no terminal, no `NO_COLOR`) is plain
/// text: not one ANSI escape byte.
#[tokio::test]
async fn log_lines_written_to_a_file_carry_no_colour_codes() {
    let idp = mint::TestIdp::generate("https://idp.test/metadata");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("idp.xml"),
        idp.metadata_xml("https://idp.test/sso"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("cookie.secret"),
        "0123456789abcdef0123456789abcdef-test-secret",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let config = dir.path().join("samlgate.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n\
             upstream = \"http://127.0.0.1:9\"\n[saml]\nidp_metadata_file = \"idp.xml\"\n\
             [session]\ncookie_secret_file = \"cookie.secret\"\n[log]\nlevel = \"info\"\n"
        ),
    )
    .unwrap();
    let stdout = dir.path().join("stdout.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_samlgate"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::process::Stdio::null())
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .spawn()
        .unwrap();
    // Ready when it serves; then a request adds an access line at info level.
    let deadline = Instant::now() + Duration::from_secs(20);
    let url = format!("http://127.0.0.1:{port}/healthz");
    let served = loop {
        if let Ok(r) = client().get(&url).send().await {
            break r.status() == 200;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read(&stdout).unwrap();
    let text = String::from_utf8_lossy(&log);
    assert!(served, "samlgate did not start:\n{text}");
    assert!(text.contains("samlgate serving"), "{text}");
    assert!(text.contains("INFO"), "{text}");
    assert!(
        !log.contains(&0x1b),
        "escape codes in a log file:\n{text:?}"
    );
}
