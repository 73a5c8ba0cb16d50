//! `samlgate demo` wired in-process (`samlgate::demo::start`) over real loopback sockets:
//! sign in through the gateway and the dev IdP, see the demo app's page with alice's name and
//! groups, echo a WebSocket message through the gateway, and stop everything. Also the
//! `gen-cert` command line (files, modes, refusal to overwrite).

// The development tools are a cargo feature (`dev-tools`, on by default). A production build
// (`--no-default-features`) has nothing here to test, so the file compiles to nothing then.
// (A `required-features` entry in Cargo.toml would do the same, but would make Cargo.toml
// name a file the Docker build context does not carry.)
#![cfg(feature = "dev-tools")]

#[path = "support/forms.rs"]
mod forms;
#[path = "support/gateway.rs"]
mod gateway;

use std::time::Duration;

use forms::{form_action, input};
use futures_util::{SinkExt, StreamExt};
use gateway::{client, session_cookie, HTML};
use samlgate::demo::{DemoHandle, DemoOptions};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

async fn demo() -> DemoHandle {
    samlgate::demo::start(DemoOptions {
        port_base: 0,
        ..Default::default()
    })
    .await
    .unwrap()
}

/// Signs `username` in through the demo as a browser would; returns the session cookie
/// (`name=value`) the gateway set.
async fn sign_in(c: &reqwest::Client, d: &DemoHandle, username: &str) -> String {
    let r = c
        .get(format!("{}/", d.gateway_url))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let sso = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        sso.starts_with(&format!("{}/sso?SAMLRequest=", d.idp_url)),
        "{sso}"
    );

    let page = c.get(&sso).header("accept", HTML).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("DEVELOPMENT ONLY — never use in production"));
    assert!(page.contains(&format!("value=\"{username}\"")), "{page}");
    let token = input(&page, "token").unwrap();

    let r = c
        .post(format!("{}/login", d.idp_url))
        .form(&[("token", token.as_str()), ("username", username)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let auto = r.text().await.unwrap();
    let action = form_action(&auto).unwrap();
    assert_eq!(action, format!("{}/saml/acs", d.gateway_url));
    let form = [
        ("SAMLResponse", input(&auto, "SAMLResponse").unwrap()),
        ("RelayState", input(&auto, "RelayState").unwrap()),
    ];
    let r = c
        .post(&action)
        .header("accept", HTML)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    assert_eq!(r.headers()["location"], "/");
    session_cookie(&r).expect("session cookie")
}

#[tokio::test]
async fn sign_in_through_the_demo_and_see_alice_on_the_app_page() {
    let d = demo().await;
    for url in [&d.gateway_url, &d.idp_url, &d.app_url] {
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    }
    assert!(d.banner().contains(&format!("Open {}/", d.gateway_url)));
    let c = client();
    sign_in(&c, &d, "alice").await;

    let r = c
        .get(format!("{}/", d.gateway_url))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("<h1>Hello, Alice Anderson</h1>"), "{page}");
    assert!(page.contains("<strong>alice</strong>"));
    assert!(page.contains("<code>alice@example.com</code>"));
    assert!(page.contains("<code>analysts,admins</code>"));
    assert!(
        page.contains("<span class=\"group\">analysts</span><span class=\"group\">admins</span>")
    );
    assert!(page.contains("new WebSocket("));

    // Reached directly, the app sees no identity; a spoofed header through the gateway is
    // replaced by the real one.
    let direct = c.get(format!("{}/", d.app_url)).send().await.unwrap();
    assert!(direct
        .text()
        .await
        .unwrap()
        .contains("<h1>No identity</h1>"));
    let spoofed = c
        .get(format!("{}/", d.gateway_url))
        .header("x-forwarded-user", "mallory")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(spoofed.contains("<strong>alice</strong>") && !spoofed.contains("mallory"));

    d.shutdown().await;
}

#[tokio::test]
async fn bob_and_carol_see_their_own_groups() {
    let d = demo().await;
    let bob = client();
    sign_in(&bob, &d, "bob").await;
    let page = bob
        .get(format!("{}/", d.gateway_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<code>contractors</code>"), "{page}");

    let carol = client();
    sign_in(&carol, &d, "carol").await;
    let page = carol
        .get(format!("{}/", d.gateway_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<strong>carol</strong>"));
    assert!(page
        .contains("<tr><th>X-Forwarded-Groups</th><td><span class=\"missing\">(not sent)</span>"));
    d.shutdown().await;
}

#[tokio::test]
async fn websocket_echo_through_the_gateway_needs_the_session() {
    let d = demo().await;
    let ws_url = format!("{}/ws", d.gateway_url.replacen("http://", "ws://", 1));

    // Without a session the gateway refuses the upgrade.
    let err = match tokio_tungstenite::connect_async(ws_url.as_str()).await {
        Ok(_) => panic!("the gateway upgraded a WebSocket without a session"),
        Err(e) => e,
    };
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 401),
        other => panic!("unexpected error: {other}"),
    }

    let c = client();
    let cookie = sign_in(&c, &d, "alice").await;
    let mut req = ws_url.as_str().into_client_request().unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    let (mut ws, resp) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .expect("handshake in time")
    .unwrap();
    assert_eq!(resp.status(), 101);
    for msg in ["hello through samlgate", "second message ✓"] {
        ws.send(Message::Text(msg.into())).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("echo in time")
            .unwrap()
            .unwrap();
        assert_eq!(echoed, Message::Text(msg.into()));
    }
    ws.close(None).await.unwrap();
    d.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_all_three_and_removes_the_temp_dir() {
    let d = demo().await;
    let urls = [d.gateway_url.clone(), d.idp_url.clone(), d.app_url.clone()];
    let dir = d.dir.clone();
    assert!(dir.join("cookie.secret").exists());
    assert!(dir.join("idp-metadata.xml").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("cookie.secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let c = client();
    for u in &urls {
        assert!(
            c.get(format!("{u}/healthz")).send().await.is_ok(),
            "{u} answers"
        );
    }
    tokio::time::timeout(Duration::from_secs(15), d.shutdown())
        .await
        .expect("the demo stops promptly");
    for u in &urls {
        let fresh = client();
        assert!(
            fresh.get(format!("{u}/")).send().await.is_err(),
            "{u} still answers after shutdown"
        );
    }
    assert!(!dir.exists(), "temporary directory removed");
}

#[tokio::test]
async fn taken_ports_fall_back_and_are_reported() {
    let blocker = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = blocker.local_addr().unwrap().port();
    // base = the taken port: the gateway must move; the others take base+1/+2 or move too.
    let d = samlgate::demo::start(DemoOptions {
        port_base: port,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_ne!(d.gateway_url, format!("http://127.0.0.1:{port}"));
    assert!(
        d.notes
            .iter()
            .any(|n| n.contains(&format!("port {port} for the gateway is taken"))),
        "{:?}",
        d.notes
    );
    assert!(d.banner().contains("note: port"));
    let c = client();
    sign_in(&c, &d, "dave").await;
    d.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// gen-cert
// ---------------------------------------------------------------------------------------

#[test]
fn gen_cert_writes_parseable_pairs_with_private_keys_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_samlgate"))
            .args(["gen-cert", "--out"])
            .arg(&out)
            .args([
                "--cn",
                "samlgate test",
                "--days",
                "7",
                "--tls-host",
                "app.test",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let first = run(&[]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let read = |n: &str| std::fs::read(out.join(n)).unwrap();
    let sp_key = openssl::pkey::PKey::private_key_from_pem(&read("sp.key")).unwrap();
    let sp_crt = openssl::x509::X509::from_pem(&read("sp.crt")).unwrap();
    assert!(sp_key.public_eq(&sp_crt.public_key().unwrap()));
    assert_eq!(sp_key.bits(), 3072);
    assert_eq!(
        sp_crt.signature_algorithm().object().nid(),
        openssl::nid::Nid::SHA256WITHRSAENCRYPTION
    );
    let tls_key = openssl::pkey::PKey::private_key_from_pem(&read("tls.key")).unwrap();
    let tls_crt = openssl::x509::X509::from_pem(&read("tls.crt")).unwrap();
    assert!(tls_key.public_eq(&tls_crt.public_key().unwrap()));
    let sans = tls_crt.subject_alt_names().unwrap();
    let dns: Vec<&str> = sans.iter().filter_map(|n| n.dnsname()).collect();
    assert_eq!(dns, ["app.test", "localhost"]);
    assert!(sans
        .iter()
        .any(|n| n.ipaddress() == Some(&[127, 0, 0, 1][..])));
    // rustls (the gateway's TLS) loads the pair.
    samlgate::tls::TlsReloader::new(&samlgate::config::TlsFiles {
        cert_file: out.join("tls.crt"),
        key_file: out.join("tls.key"),
        min_version: samlgate::config::TlsMinVersion::Tls12,
        watch_interval: None,
    })
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for (n, want) in [("sp.key", 0o600), ("tls.key", 0o600), ("sp.crt", 0o644)] {
            let mode = std::fs::metadata(out.join(n)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, want, "{n}");
        }
    }

    let before = read("sp.key");
    let again = run(&[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    assert_eq!(
        read("sp.key"),
        before,
        "a refused run leaves the files alone"
    );
    let forced = run(&["--force"]);
    assert!(forced.status.success());
    assert_ne!(read("sp.key"), before);
}
