//! IdP metadata from a URL (`saml.idp_metadata_url`): fetched at start, cached on disk,
//! refreshed in the background. Key rollover through a refresh is used at once; every bad
//! refresh (garbage, HTTP 500, no signing certificate, bad pinned signature) keeps the
//! current copy and leaves the cache file alone. The metadata is served by a tiny in-test
//! HTTP server whose answer the test changes.

#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/mint.rs"]
mod mint;
#[path = "support/signin.rs"]
mod signin;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway::*;
use mint::TestIdp;
use signin::signs_in;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const IDP_ENTITY: &str = "https://idp.test/metadata";
const IDP_SSO: &str = "https://idp.test/sso";

/// Serves `(status, body)` to every request, on a thread and runtime of its own (the
/// gateway's start-up fetch blocks the caller).
struct MetadataServer {
    addr: SocketAddr,
    answer: Arc<Mutex<(u16, String)>>,
    hits: Arc<AtomicUsize>,
}

impl MetadataServer {
    fn start(status: u16, body: &str) -> MetadataServer {
        let answer = Arc::new(Mutex::new((status, body.to_string())));
        let hits = Arc::new(AtomicUsize::new(0));
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (a, h) = (answer.clone(), hits.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                loop {
                    let Ok((mut sock, _)) = listener.accept().await else {
                        return;
                    };
                    let (a, h) = (a.clone(), h.clone());
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 8192];
                        let mut got = Vec::new();
                        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                            match sock.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => got.extend_from_slice(&buf[..n]),
                            }
                        }
                        let (status, body) = a.lock().unwrap().clone();
                        let head = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/samlmetadata+xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = sock.write_all(head.as_bytes()).await;
                        let _ = sock.write_all(body.as_bytes()).await;
                        let _ = sock.shutdown().await;
                        h.fetch_add(1, Ordering::SeqCst);
                    });
                }
            });
        });
        MetadataServer { addr, answer, hits }
    }

    fn url(&self) -> String {
        format!("http://{}/idp/metadata", self.addr)
    }

    fn serve(&self, status: u16, body: &str) {
        *self.answer.lock().unwrap() = (status, body.to_string());
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Waits until the gateway fetched at least `n` more times (the refresh runs every 1 s).
    async fn wait_hits(&self, n: usize) {
        let target = self.hits() + n;
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.hits() < target {
            assert!(Instant::now() < deadline, "the gateway stopped refreshing");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Let the refresh task finish handling what it fetched.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn write_common(dir: &Path) {
    std::fs::write(
        dir.join("cookie.secret"),
        "0123456789abcdef0123456789abcdef-test-secret",
    )
    .unwrap();
}

fn config_text(addr: SocketAddr, upstream: &str, url: &str, saml_extra: &str) -> String {
    format!(
        "listen = \"{addr}\"\npublic_url = \"http://{addr}\"\nupstream = \"{upstream}\"\n[saml]\nidp_metadata_url = \"{url}\"\n{saml_extra}\n[session]\ncookie_secret_file = \"cookie.secret\"\n[log]\nlevel = \"warn\"\n"
    )
}

/// Loads the config in `dir` with the refresh and retry intervals lowered to 1 s (below
/// the 60 s config floor, which only the validated settings can carry).
fn build(dir: &Path) -> Result<samlgate::app::App, String> {
    let mut settings =
        samlgate::config::load(&dir.join("samlgate.toml")).map_err(|e| e.to_string())?;
    let md = settings.saml.idp_metadata_url.as_mut().unwrap();
    md.refresh = Duration::from_secs(1);
    md.retry = Duration::from_secs(1);
    samlgate::app::from_settings(settings).map_err(|e| e.to_string())
}

async fn start(
    dir: tempfile::TempDir,
    listener: TcpListener,
    addr: SocketAddr,
) -> Result<TestGateway, String> {
    let app = build(dir.path())?;
    let gateway = app.gateway.clone();
    let settings = app.settings.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        samlgate::app::serve_on(app, listener, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Ok(TestGateway {
        base: format!("http://{addr}"),
        addr,
        dir,
        gateway,
        settings,
        stop: Some(stop),
        done: Some(done),
    })
}

/// A temp dir with config pointing at `url`, and a bound listener for the gateway.
async fn prepare(
    upstream: &str,
    url: &str,
    saml_extra: &str,
) -> (tempfile::TempDir, TcpListener, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    write_common(dir.path());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    std::fs::write(
        dir.path().join("samlgate.toml"),
        config_text(addr, upstream, url, saml_extra),
    )
    .unwrap();
    (dir, listener, addr)
}

fn cache_path(gw: &TestGateway) -> std::path::PathBuf {
    gw.dir.path().join("idp-metadata.cache.xml")
}

/// Adds `ID="_md"` to the root and signs it (enveloped) with `signer`'s key.
fn signed_metadata(unsigned: &str, signer: &TestIdp) -> String {
    let with_id = unsigned.replacen(
        "<md:EntityDescriptor ",
        "<md:EntityDescriptor ID=\"_md\" ",
        1,
    );
    let open_end = with_id.find("<md:IDPSSODescriptor").unwrap();
    let template = format!(
        concat!(
            r#"<ds:Signature xmlns:ds="{ds}"><ds:SignedInfo>"#,
            r#"<ds:CanonicalizationMethod Algorithm="{c14n}"/>"#,
            r#"<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>"#,
            r##"<ds:Reference URI="#_md"><ds:Transforms>"##,
            r#"<ds:Transform Algorithm="{env}"/><ds:Transform Algorithm="{c14n}"/>"#,
            r#"</ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>"#,
            r#"<ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo>"#,
            r#"<ds:SignatureValue></ds:SignatureValue></ds:Signature>"#
        ),
        ds = mint::NS_DS,
        c14n = mint::ALG_EXC_C14N,
        env = mint::ALG_ENVELOPED,
    );
    let mut xml = with_id.clone();
    xml.insert_str(open_end, &template);
    mint::sign_first_template(signer, &xml)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_uses_rollover_and_keeps_the_good_copy_on_failures() {
    let a = TestIdp::generate(IDP_ENTITY);
    let b = TestIdp::generate(IDP_ENTITY);
    let up = start_upstream().await;
    let md_a = a.metadata_xml(IDP_SSO);
    let srv = MetadataServer::start(200, &md_a);
    let (dir, listener, addr) = prepare(&up.url(), &srv.url(), "").await;
    let mut gw = start(dir, listener, addr)
        .await
        .expect("starts from the URL");
    assert_eq!(std::fs::read_to_string(cache_path(&gw)).unwrap(), md_a);
    assert!(
        !gw.settings
            .saml
            .idp_metadata_url
            .as_ref()
            .unwrap()
            .started_from_cache
    );
    assert!(signs_in(&gw, &a).await, "key A from fetched metadata");
    assert!(!signs_in(&gw, &b).await, "key B not yet published");

    // Rollover: A+B published; after a refresh B's responses are accepted, A's still are.
    let md_ab = a.metadata_xml_with_certs(IDP_SSO, &[&b.cert_der]);
    srv.serve(200, &md_ab);
    srv.wait_hits(1).await;
    assert_eq!(gw.gateway.current_idp().get().idp.signing_cert_count, 2);
    assert!(signs_in(&gw, &b).await, "key B after the refresh");
    assert!(signs_in(&gw, &a).await, "key A still listed");
    assert_eq!(std::fs::read_to_string(cache_path(&gw)).unwrap(), md_ab);

    // Every kind of bad refresh keeps the current copy and the cache file.
    let no_cert = a.metadata_xml_exact_certs(IDP_SSO, &[]);
    let expired = md_ab.replacen(
        "<md:EntityDescriptor ",
        "<md:EntityDescriptor validUntil=\"2001-01-01T00:00:00Z\" ",
        1,
    );
    for (status, body, what) in [
        (200, "this is not XML <<<", "garbage"),
        (500, md_a.as_str(), "HTTP 500"),
        (200, no_cert.as_str(), "no signing certificate"),
        (200, expired.as_str(), "expired validUntil"),
    ] {
        srv.serve(status, body);
        srv.wait_hits(2).await;
        assert_eq!(
            gw.gateway.current_idp().get().idp.signing_cert_count,
            2,
            "{what}: current copy kept"
        );
        assert!(signs_in(&gw, &a).await, "{what}: A still accepted");
        assert!(signs_in(&gw, &b).await, "{what}: B still accepted");
        assert_eq!(
            std::fs::read_to_string(cache_path(&gw)).unwrap(),
            md_ab,
            "{what}: cache untouched"
        );
    }

    // Back to A only (B retired): B is refused after the next refresh.
    srv.serve(200, &md_a);
    srv.wait_hits(1).await;
    assert!(!signs_in(&gw, &b).await, "key B retired");
    assert!(signs_in(&gw, &a).await);
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_from_the_cache_when_the_url_is_down_and_refuses_with_neither() {
    let a = TestIdp::generate(IDP_ENTITY);
    let up = start_upstream().await;
    // A port nothing listens on.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/md", l.local_addr().unwrap())
    };

    // Neither URL nor cache: refuse to start, naming both keys.
    let (dir, _listener, _) = prepare(&up.url(), &down, "idp_metadata_timeout_secs = 2").await;
    let err = build(dir.path())
        .err()
        .expect("nothing to trust: refuse to start");
    assert!(err.contains("saml.idp_metadata_url"), "{err}");
    assert!(err.contains("saml.idp_metadata_cache_file"), "{err}");

    // A cache file present: starts with it and signs in.
    let (dir, listener, addr) = prepare(
        &up.url(),
        &down,
        "idp_metadata_timeout_secs = 2\nidp_metadata_cache_file = \"cached.xml\"",
    )
    .await;
    std::fs::write(dir.path().join("cached.xml"), a.metadata_xml(IDP_SSO)).unwrap();
    let mut gw = start(dir, listener, addr)
        .await
        .expect("starts from the cache");
    assert!(
        gw.settings
            .saml
            .idp_metadata_url
            .as_ref()
            .unwrap()
            .started_from_cache
    );
    assert!(signs_in(&gw, &a).await, "signs in with the cached metadata");
    // Refreshes keep failing; the cached copy stays in use.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(signs_in(&gw, &a).await);
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_signing_certificate_accepts_signed_and_refuses_tampered_metadata() {
    let a = TestIdp::generate(IDP_ENTITY);
    let b = TestIdp::generate(IDP_ENTITY);
    let fed = TestIdp::generate("https://federation.test");
    let up = start_upstream().await;
    let signed_a = signed_metadata(&a.metadata_xml(IDP_SSO), &fed);

    // Tampered at start (no cache): refused, with the signature named.
    let tampered_a = signed_a.replace(IDP_SSO, "https://evil.test/sso");
    let srv = MetadataServer::start(200, &tampered_a);
    let (dir, _l, _) = prepare(
        &up.url(),
        &srv.url(),
        "idp_metadata_signing_cert_file = \"fed.crt\"",
    )
    .await;
    std::fs::write(dir.path().join("fed.crt"), &fed.cert_pem).unwrap();
    let err = build(dir.path()).err().expect("tampered metadata refused");
    assert!(err.contains("signature"), "{err}");

    // Correctly signed: starts and signs in.
    srv.serve(200, &signed_a);
    let (dir, listener, addr) = prepare(
        &up.url(),
        &srv.url(),
        "idp_metadata_signing_cert_file = \"fed.crt\"",
    )
    .await;
    std::fs::write(dir.path().join("fed.crt"), &fed.cert_pem).unwrap();
    let mut gw = start(dir, listener, addr)
        .await
        .expect("signed metadata accepted");
    assert!(signs_in(&gw, &a).await);

    // A+B, but unsigned / tampered (B added after signing) / signed by another key: kept A.
    let ab = a.metadata_xml_with_certs(IDP_SSO, &[&b.cert_der]);
    let b_kd = format!(
        "<md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>",
        b.cert_b64()
    );
    let tampered_ab =
        signed_a.replacen("<md:KeyDescriptor", &format!("{b_kd}<md:KeyDescriptor"), 1);
    let wrong_signer = signed_metadata(&ab, &b);
    for (body, what) in [
        (ab.as_str(), "unsigned"),
        (tampered_ab.as_str(), "tampered"),
        (wrong_signer.as_str(), "signed by another key"),
    ] {
        srv.serve(200, body);
        srv.wait_hits(2).await;
        assert!(!signs_in(&gw, &b).await, "{what}: B not accepted");
        assert!(signs_in(&gw, &a).await, "{what}: A kept");
        assert_eq!(
            std::fs::read_to_string(cache_path(&gw)).unwrap(),
            signed_a,
            "{what}: cache untouched"
        );
    }

    // Correctly signed A+B: B accepted.
    let signed_ab = signed_metadata(&ab, &fed);
    srv.serve(200, &signed_ab);
    srv.wait_hits(1).await;
    assert!(signs_in(&gw, &b).await, "signed rollover accepted");
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_from_the_url_to_a_file_waits_for_a_restart() {
    let a = TestIdp::generate(IDP_ENTITY);
    let b = TestIdp::generate(IDP_ENTITY);
    let up = start_upstream().await;
    let srv = MetadataServer::start(200, &a.metadata_xml(IDP_SSO));
    let (dir, listener, addr) = prepare(&up.url(), &srv.url(), "").await;
    let mut gw = start(dir, listener, addr)
        .await
        .expect("starts from the URL");
    assert!(signs_in(&gw, &a).await, "A from the URL");

    // The operator pins the metadata to a file that lists only B, and sends SIGHUP.
    let config = gw.dir.path().join("samlgate.toml");
    std::fs::write(gw.dir.path().join("idp.xml"), b.metadata_xml(IDP_SSO)).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let url_line = format!("idp_metadata_url = \"{}\"", srv.url());
    assert!(text.contains(&url_line), "{text}");
    std::fs::write(
        &config,
        text.replace(&url_line, "idp_metadata_file = \"idp.xml\""),
    )
    .unwrap();
    samlgate::app::reload_config(&config, &gw.gateway);

    // A switch of source needs a restart: the URL's metadata stays in force, before and
    // after its next refresh (a file applied now would be undone by that refresh).
    assert!(signs_in(&gw, &a).await, "A still trusted");
    assert!(!signs_in(&gw, &b).await, "B's file waits for a restart");
    srv.wait_hits(1).await;
    assert!(signs_in(&gw, &a).await, "A after the refresh");
    assert!(!signs_in(&gw, &b).await, "B after the refresh");
    gw.shutdown().await.unwrap();
}
