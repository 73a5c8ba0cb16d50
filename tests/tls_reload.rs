//! Live TLS reload, `tls.min_version` and the HTTP→HTTPS redirect listener, against the real
//! `samlgate run` binary as a child process on loopback:
//!
//! - SIGHUP swaps the certificate for new connections while a connection opened before keeps
//!   working (one hyper HTTP/1 connection over tokio-rustls, so the test owns that socket);
//! - a file change alone (a Kubernetes-style symlink swap) is picked up by the watcher;
//! - a mismatched or garbage pair is refused with a log line naming the reason, and the old
//!   certificate stays in service;
//! - `tls.min_version = "1.3"` refuses a TLS-1.2-only client and serves a 1.3 one;
//! - the redirect listener answers 308 to `public_url` + path and query whatever the `Host`,
//!   answers `/healthz`, and does not hold up shutdown;
//! - SIGHUP also re-reads the config file: access rules change on the open connection, and a
//!   file that does not validate is refused with a log line while the old rules stay.

#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/mint.rs"]
mod mint;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous bound for anything the gateway does in the background (start, reload).
const DEADLINE: Duration = Duration::from_secs(30);

const SIGHUP: i32 = 1;
const SIGTERM: i32 = 15;
extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// A certificate and key in PEM, and the certificate's DER for comparing with what a
/// handshake presents.
#[derive(Clone)]
struct Pair {
    cert_pem: String,
    key_pem: String,
    cert_der: Vec<u8>,
}

fn new_pair() -> Pair {
    let (cert_pem, key_pem) = gateway::self_signed_tls();
    let cert_der = openssl::x509::X509::from_pem(cert_pem.as_bytes())
        .unwrap()
        .to_der()
        .unwrap();
    Pair {
        cert_pem,
        key_pem,
        cert_der,
    }
}

fn write_pair(dir: &Path, cert_pem: &str, key_pem: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("tls.crt"), cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), key_pem).unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process, killed (by its own handle) and reaped when dropped, also on a panic.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The running gateway. Field order is drop order: the process goes before its directory.
struct Gate {
    child: ChildGuard,
    addr: SocketAddr,
    redirect_addr: Option<SocketAddr>,
    dir: tempfile::TempDir,
}

#[derive(Default)]
struct GateOptions {
    /// Lines for `[tls]` besides cert_file/key_file.
    tls_toml: String,
    redirect: bool,
    public_url: Option<String>,
    /// Appended to the config file (whole sections).
    extra_toml: String,
}

fn read_logs(dir: &Path) -> String {
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap_or_default();
    format!("{}{}", read("stdout.log"), read("stderr.log"))
}

impl Gate {
    /// Starts `samlgate run` serving the pair under `dir/tls/` and waits until `/healthz`
    /// answers over TLS. Retries with new ports if one was taken between choosing and
    /// binding it.
    async fn start(dir: tempfile::TempDir, opts: GateOptions) -> Gate {
        let idp = mint::TestIdp::generate("https://idp.example.test/metadata");
        std::fs::write(
            dir.path().join("idp.xml"),
            idp.metadata_xml("https://idp.example.test/sso"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("cookie.secret"),
            "0123456789abcdef0123456789abcdef-test-secret",
        )
        .unwrap();
        for _attempt in 0..5 {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let redirect_addr: Option<SocketAddr> = opts
                .redirect
                .then(|| format!("127.0.0.1:{}", free_port()).parse().unwrap());
            let public_url = opts
                .public_url
                .clone()
                .unwrap_or_else(|| format!("https://127.0.0.1:{}", addr.port()));
            let redirect_toml = redirect_addr
                .map(|a| format!("http_redirect_listen = \"{a}\"\n"))
                .unwrap_or_default();
            let config = format!(
                "listen = \"{addr}\"\npublic_url = \"{public_url}\"\nupstream = \"http://127.0.0.1:9\"\n\
                 [tls]\ncert_file = \"tls/tls.crt\"\nkey_file = \"tls/tls.key\"\n{tls}\n\
                 [saml]\nidp_metadata_file = \"idp.xml\"\n\
                 [session]\ncookie_secret_file = \"cookie.secret\"\n\
                 [server]\nheader_read_timeout_secs = 60\nshutdown_grace_secs = 5\n{redirect_toml}\n\
                 [log]\nlevel = \"info\"\n{extra}",
                tls = opts.tls_toml,
                extra = opts.extra_toml,
            );
            let config_path = dir.path().join("samlgate.toml");
            std::fs::write(&config_path, config).unwrap();
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_samlgate"));
            cmd.arg("run")
                .arg("--config")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(dir.path().join("stdout.log")).unwrap())
                .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
                .env_remove("RUST_LOG")
                .env("NO_COLOR", "1");
            for (k, _) in std::env::vars() {
                if k.starts_with("SAMLGATE_") {
                    cmd.env_remove(k);
                }
            }
            let mut child = ChildGuard(cmd.spawn().unwrap());
            match wait_ready(&mut child, dir.path(), addr).await {
                Ok(()) => {
                    return Gate {
                        child,
                        addr,
                        redirect_addr,
                        dir,
                    }
                }
                Err(logs) if logs.contains("Address already in use") => drop(child),
                Err(logs) => panic!("samlgate did not start:\n{logs}"),
            }
        }
        panic!("no free ports after 5 attempts");
    }

    /// stdout and stderr so far (logs go to stdout).
    fn logs(&self) -> String {
        read_logs(self.dir.path())
    }

    fn signal(&self, sig: i32) {
        // SAFETY: a plain syscall on our own child's PID, which is not reaped while `self`
        // holds it.
        #[allow(unsafe_code)]
        let rc = unsafe { kill(self.child.0.id() as i32, sig) };
        assert_eq!(rc, 0, "kill({sig}) failed");
    }

    fn tls_dir(&self) -> PathBuf {
        self.dir.path().join("tls")
    }

    /// Opens new connections until one presents `want` (DER).
    async fn wait_for_served_cert(&self, want: &[u8]) {
        let start = Instant::now();
        loop {
            let mut c = Conn::open(self.addr, ANY_VERSION).await.unwrap();
            if c.peer_cert == want {
                assert_eq!(c.get("/healthz").await.unwrap().0, 200);
                return;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "the new certificate was not served within {DEADLINE:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the logs contain `needle` at least `times` times.
    async fn wait_for_log(&self, needle: &str, times: usize) -> String {
        let start = Instant::now();
        loop {
            let logs = self.logs();
            if logs.matches(needle).count() >= times {
                return logs;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "no {times}× {needle:?} in the logs within {DEADLINE:?}\n{logs}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Ok once `/healthz` answers over TLS; Err(logs) if the process exits or the deadline
/// passes.
async fn wait_ready(child: &mut ChildGuard, dir: &Path, addr: SocketAddr) -> Result<(), String> {
    let start = Instant::now();
    loop {
        if let Ok(mut c) = Conn::open(addr, ANY_VERSION).await {
            if c.get("/healthz").await.map(|(s, _)| s) == Ok(200) {
                return Ok(());
            }
        }
        if let Some(status) = child.0.try_wait().unwrap() {
            return Err(format!("exited with {status}\n{}", read_logs(dir)));
        }
        if start.elapsed() > DEADLINE {
            return Err(format!("not ready within {DEADLINE:?}\n{}", read_logs(dir)));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Accepts any server certificate (the tests compare it themselves) but checks the
/// handshake signatures with ring, so a server without the matching key still fails.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

const ANY_VERSION: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];
const TLS12_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
const TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// One TLS connection carrying HTTP/1.1 requests, and the certificate it was shown.
struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    peer_cert: Vec<u8>,
    version: rustls::ProtocolVersion,
}

impl Conn {
    async fn open(
        addr: SocketAddr,
        versions: &[&'static SupportedProtocolVersion],
    ) -> Result<Conn, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth();
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let tls = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(ServerName::try_from("localhost").unwrap(), tcp),
        )
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| format!("handshake: {e}"))?;
        let (_, session) = tls.get_ref();
        let peer_cert = session
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .ok_or("no peer certificate")?;
        let version = session.protocol_version().ok_or("no protocol version")?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(Conn {
            sender,
            peer_cert,
            version,
        })
    }

    /// GET `path` on this same connection: (status, body).
    async fn get(&mut self, path: &str) -> Result<(u16, String), String> {
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let req = http::Request::get(path)
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

fn dir_with_pair(pair: &Pair) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_pair(&dir.path().join("tls"), &pair.cert_pem, &pair.key_pem);
    dir
}

#[tokio::test]
async fn sighup_serves_the_new_certificate_to_new_connections_and_keeps_open_ones() {
    let (old, new) = (new_pair(), new_pair());
    assert_ne!(old.cert_der, new.cert_der);
    let gate = Gate::start(
        dir_with_pair(&old),
        GateOptions {
            // No polling: only the signal can make the swap happen.
            tls_toml: "watch_interval_secs = 0\n".into(),
            ..Default::default()
        },
    )
    .await;

    let mut before = Conn::open(gate.addr, ANY_VERSION).await.unwrap();
    assert_eq!(before.peer_cert, old.cert_der);
    assert_eq!(before.get("/healthz").await.unwrap(), (200, "ok\n".into()));
    // With the default tls.min_version a TLS-1.2-only client is served.
    let mut tls12 = Conn::open(gate.addr, TLS12_ONLY).await.unwrap();
    assert_eq!(tls12.version, rustls::ProtocolVersion::TLSv1_2);
    assert_eq!(tls12.get("/healthz").await.unwrap().0, 200);

    write_pair(&gate.tls_dir(), &new.cert_pem, &new.key_pem);
    gate.signal(SIGHUP);
    gate.wait_for_served_cert(&new.cert_der).await;
    let logs = gate.wait_for_log("TLS certificate reloaded", 1).await;
    let line = logs
        .lines()
        .find(|l| l.contains("TLS certificate reloaded"))
        .unwrap();
    assert!(
        line.contains("SIGHUP") && line.contains("sha256="),
        "{line}"
    );

    // The connection opened before the change still works, on the same socket, and saw
    // the old certificate.
    assert_eq!(before.get("/healthz").await.unwrap(), (200, "ok\n".into()));
    assert_eq!(before.get("/readyz").await.unwrap().0, 200);
    assert_eq!(before.peer_cert, old.cert_der);

    // A second SIGHUP with the same files changes nothing and does not end the process.
    gate.signal(SIGHUP);
    gate.wait_for_log("certificate is unchanged", 1).await;
    let mut after = Conn::open(gate.addr, ANY_VERSION).await.unwrap();
    assert_eq!(after.peer_cert, new.cert_der);
    assert_eq!(after.get("/healthz").await.unwrap().0, 200);
}

#[tokio::test]
async fn a_file_change_alone_is_picked_up_including_a_symlink_swap() {
    let (first, second, third) = (new_pair(), new_pair(), new_pair());
    // Kubernetes layout: the configured paths go through a directory symlink that the
    // kubelet swaps atomically (`tls -> data-1` becomes `tls -> data-2`).
    let dir = tempfile::tempdir().unwrap();
    write_pair(&dir.path().join("data-1"), &first.cert_pem, &first.key_pem);
    std::os::unix::fs::symlink("data-1", dir.path().join("tls")).unwrap();
    let gate = Gate::start(
        dir,
        GateOptions {
            tls_toml: "watch_interval_secs = 1\n".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        Conn::open(gate.addr, ANY_VERSION).await.unwrap().peer_cert,
        first.cert_der
    );

    write_pair(
        &gate.dir.path().join("data-2"),
        &second.cert_pem,
        &second.key_pem,
    );
    let swap = gate.dir.path().join("tls.new");
    std::os::unix::fs::symlink("data-2", &swap).unwrap();
    std::fs::rename(&swap, gate.dir.path().join("tls")).unwrap();
    gate.wait_for_served_cert(&second.cert_der).await;
    let logs = gate.wait_for_log("TLS certificate reloaded", 1).await;
    let line = logs
        .lines()
        .find(|l| l.contains("TLS certificate reloaded"))
        .unwrap();
    assert!(line.contains("file change"), "{line}");

    // Files rewritten in place are picked up too.
    write_pair(
        &gate.dir.path().join("data-2"),
        &third.cert_pem,
        &third.key_pem,
    );
    gate.wait_for_served_cert(&third.cert_der).await;
}

#[tokio::test]
async fn a_broken_pair_is_refused_and_the_old_certificate_stays() {
    let (good, other) = (new_pair(), new_pair());
    let gate = Gate::start(
        dir_with_pair(&good),
        GateOptions {
            tls_toml: "watch_interval_secs = 0\n".into(),
            ..Default::default()
        },
    )
    .await;
    const FAILED: &str = "TLS reload failed; keeping the current certificate";

    // The other certificate with the old key: they do not belong together.
    write_pair(&gate.tls_dir(), &other.cert_pem, &good.key_pem);
    gate.signal(SIGHUP);
    let logs = gate.wait_for_log(FAILED, 1).await;
    let line = logs.lines().find(|l| l.contains(FAILED)).unwrap();
    assert!(
        line.contains("does not belong to the certificate"),
        "{line}"
    );
    assert!(line.contains("tls.key"), "the key file is named: {line}");
    let mut c = Conn::open(gate.addr, ANY_VERSION).await.unwrap();
    assert_eq!(c.peer_cert, good.cert_der, "the old certificate stays");
    assert_eq!(c.get("/healthz").await.unwrap().0, 200);

    // Garbage in place of the certificate.
    write_pair(&gate.tls_dir(), "-----BEGIN GARBAGE-----\n", &other.key_pem);
    gate.signal(SIGHUP);
    let logs = gate.wait_for_log(FAILED, 2).await;
    let line = logs.lines().filter(|l| l.contains(FAILED)).nth(1).unwrap();
    assert!(line.contains("tls.cert_file"), "{line}");
    let mut c = Conn::open(gate.addr, ANY_VERSION).await.unwrap();
    assert_eq!(c.peer_cert, good.cert_der);
    assert_eq!(c.get("/healthz").await.unwrap().0, 200);

    // A garbage key.
    write_pair(&gate.tls_dir(), &other.cert_pem, "not a key\n");
    gate.signal(SIGHUP);
    let logs = gate.wait_for_log(FAILED, 3).await;
    let line = logs.lines().filter(|l| l.contains(FAILED)).nth(2).unwrap();
    assert!(line.contains("tls.key_file"), "{line}");
    assert_eq!(
        Conn::open(gate.addr, ANY_VERSION).await.unwrap().peer_cert,
        good.cert_der
    );

    // Once the pair is whole, it is taken.
    write_pair(&gate.tls_dir(), &other.cert_pem, &other.key_pem);
    gate.signal(SIGHUP);
    gate.wait_for_served_cert(&other.cert_der).await;
}

#[tokio::test]
async fn min_version_1_3_refuses_a_tls_1_2_client() {
    let pair = new_pair();
    let gate = Gate::start(
        dir_with_pair(&pair),
        GateOptions {
            tls_toml: "min_version = \"1.3\"\n".into(),
            ..Default::default()
        },
    )
    .await;
    let err = Conn::open(gate.addr, TLS12_ONLY)
        .await
        .err()
        .expect("a TLS-1.2-only client is refused");
    assert!(err.starts_with("handshake"), "{err}");
    let mut c = Conn::open(gate.addr, TLS13_ONLY).await.unwrap();
    assert_eq!(c.version, rustls::ProtocolVersion::TLSv1_3);
    assert_eq!(c.get("/healthz").await.unwrap().0, 200);
}

/// Sends `request` as raw bytes and reads until the server closes: (status, headers
/// lowercased, body).
async fn raw_http(addr: SocketAddr, request: &str) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("the redirect listener closes the connection after one response")
        .unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn the_redirect_listener_sends_everything_to_public_url() {
    let pair = new_pair();
    let mut gate = Gate::start(
        dir_with_pair(&pair),
        GateOptions {
            redirect: true,
            public_url: Some("https://gate.example.test:8443".into()),
            ..Default::default()
        },
    )
    .await;
    let redirect = gate.redirect_addr.unwrap();

    let (status, headers, body) = raw_http(
        redirect,
        "GET /reports/q1?year=2024&x=%2F HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    )
    .await;
    assert_eq!(status, 308);
    assert_eq!(
        header(&headers, "location"),
        Some("https://gate.example.test:8443/reports/q1?year=2024&x=%2F"),
        "public_url's host, the request's path and query; the Host header is ignored"
    );
    assert!(body.len() < 200, "small body: {body:?}");

    // An absolute-form target names a host too; it is ignored as well.
    let (status, headers, _) = raw_http(
        redirect,
        "POST http://evil.example/login?next=/x HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(status, 308);
    assert_eq!(
        header(&headers, "location"),
        Some("https://gate.example.test:8443/login?next=/x")
    );

    let (status, headers, body) =
        raw_http(redirect, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert_eq!(header(&headers, "location"), None);

    // Shutdown stops both listeners and the process exits cleanly.
    gate.signal(SIGTERM);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = gate.child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no exit after SIGTERM\n{}",
            gate.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}\n{}", gate.logs());
    assert!(
        TcpStream::connect(redirect).await.is_err(),
        "redirect listener closed"
    );
}

#[tokio::test]
async fn sighup_reloads_access_rules_and_refuses_a_bad_file() {
    const OPEN: &str = "[[access.rules]]\npath_prefix = \"/public/\"\naction = \"allow\"\n";
    let gate = Gate::start(
        dir_with_pair(&new_pair()),
        GateOptions {
            extra_toml: OPEN.into(),
            ..GateOptions::default()
        },
    )
    .await;
    let mut conn = Conn::open(gate.addr, ANY_VERSION).await.unwrap();
    // Anonymous and forwarded: the upstream (port 9) is down, so 502 — not 401.
    assert_eq!(conn.get("/public/x").await.unwrap().0, 502);

    let config = gate.dir.path().join("samlgate.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace(OPEN, "")).unwrap();
    gate.signal(SIGHUP);
    gate.wait_for_log("config reloaded", 1).await;
    assert_eq!(
        conn.get("/public/x").await.unwrap().0,
        401,
        "the rule is gone, on the connection opened before the reload"
    );

    // Not valid: an unknown action. Refused, logged, and the running rules stay.
    std::fs::write(
        &config,
        text.replace("action = \"allow\"", "action = \"maybe\""),
    )
    .unwrap();
    gate.signal(SIGHUP);
    let logs = gate
        .wait_for_log(
            "config reload rejected; the running configuration stays in force",
            1,
        )
        .await;
    assert!(logs.contains("access.rules[0].action"), "{logs}");
    assert_eq!(conn.get("/public/x").await.unwrap().0, 401);
    assert_eq!(gate.logs().matches("config reloaded").count(), 1);
}
