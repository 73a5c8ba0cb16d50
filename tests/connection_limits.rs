//! Connection-level limits of the main listener over real sockets: a connection silent before
//! its first request (or stuck inside the HTTP/2 preface) is closed after
//! `server.header_read_timeout_secs`; an idle HTTP/2 connection after
//! `server.idle_timeout_secs`, while a request in flight or a busy HTTP/1 keep-alive
//! connection is never cut; WebSocket tunnels keep their slot under `server.max_connections`
//! and close after `proxy.upgrade_idle_timeout_secs` without traffic, or once the session
//! they were opened under has ended.
//!
//! Every path is public (an `allow` rule), so no sign-in is needed to reach the upstream,
//! except in the test of a tunnel following its session.

#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/mint.rs"]
mod mint;
#[path = "support/signin.rs"]
mod signin;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gateway::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const ALL_PUBLIC: &str = "[[access.rules]]\npath_prefix = \"/\"\naction = \"allow\"\n";
/// An upper bound for "closed after a 1 s limit", generous for a loaded machine.
const WITHIN: Duration = Duration::from_secs(5);

async fn setup(server_toml: &str) -> (Upstream, TestGateway) {
    let idp = mint::TestIdp::generate("https://idp.test/metadata");
    let up = start_upstream().await;
    let opts = Options {
        extra_toml: format!("{server_toml}\n{ALL_PUBLIC}"),
        ..Options::default()
    };
    let gw = start_gateway(&up.url(), &idp.metadata_xml("https://idp.test/sso"), opts).await;
    (up, gw)
}

/// Whether the gateway closes `stream` (EOF or reset) within [`WITHIN`], reading and
/// discarding whatever it sends first.
async fn closed_by_gateway(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let result = tokio::time::timeout(WITHIN, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    result.is_ok()
}

#[tokio::test]
async fn silent_connection_is_closed_before_its_first_request() {
    let (_up, gw) = setup("[server]\nheader_read_timeout_secs = 1\n").await;
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    assert!(
        closed_by_gateway(&mut silent).await,
        "a connection that sends nothing is closed"
    );

    // Part of the HTTP/2 preface: hyper-util waits for the rest with no timer of its own.
    let mut partial = TcpStream::connect(gw.addr).await.unwrap();
    partial.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    assert!(
        closed_by_gateway(&mut partial).await,
        "a connection stuck in the HTTP/2 preface is closed"
    );

    // The listener still serves.
    let r = client().get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn silent_connection_after_the_tls_handshake_is_closed() {
    let idp = mint::TestIdp::generate("https://idp.test/metadata");
    let up = start_upstream().await;
    let (cert, key) = self_signed_tls();
    let opts = Options {
        extra_toml: format!("[server]\nheader_read_timeout_secs = 1\n{ALL_PUBLIC}"),
        tls: Some((cert.clone(), key)),
        ..Options::default()
    };
    let gw = start_gateway(&up.url(), &idp.metadata_xml("https://idp.test/sso"), opts).await;

    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(cert.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .expect("TLS handshake");
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(WITHIN, async {
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "a TLS connection that sends no request is closed"
    );
}

/// An h2c (prior knowledge) connection to the gateway: the request sender and the task
/// driving the connection, which ends when the gateway closes it.
async fn h2_connect(
    gw: &TestGateway,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2c prior knowledge is accepted");
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    (sender, driver)
}

async fn h2_get(
    sender: &mut hyper::client::conn::http2::SendRequest<Empty<bytes::Bytes>>,
    gw: &TestGateway,
    path: &str,
) -> (u16, String) {
    let req = hyper::Request::get(gw.url(path))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.expect("request answered");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn idle_http2_connection_is_closed_but_a_slow_request_is_not_cut() {
    let (_up, gw) = setup("[server]\nheader_read_timeout_secs = 1\nidle_timeout_secs = 1\n").await;

    let (mut sender, driver) = h2_connect(&gw).await;
    let (status, _) = h2_get(&mut sender, &gw, "/hello").await;
    assert_eq!(status, 200);
    tokio::time::timeout(WITHIN, driver)
        .await
        .expect("an idle HTTP/2 connection is closed after server.idle_timeout_secs")
        .unwrap();

    // A request taking three times the idle limit (and the closing bound) completes.
    let (mut sender, driver) = h2_connect(&gw).await;
    let (status, body) = h2_get(&mut sender, &gw, "/slow/3000").await;
    assert_eq!((status, body.as_str()), (200, "slept 3000 ms"));
    // Then the connection idles out like the first.
    tokio::time::timeout(WITHIN, driver)
        .await
        .expect("closed once idle")
        .unwrap();
}

#[tokio::test]
async fn busy_http1_keep_alive_connection_is_not_cut() {
    let (_up, gw) = setup("[server]\nheader_read_timeout_secs = 1\nidle_timeout_secs = 1\n").await;
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    // Requests back to back and with pauses shorter than the limit, for over twice the
    // limit, all on this one connection.
    for i in 0..12 {
        if i % 2 == 1 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        sender.ready().await.expect("connection still open");
        let req = hyper::Request::get(format!("/page/{i}"))
            .header("host", gw.addr.to_string())
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.expect("request answered");
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.unwrap();
    }
    assert!(!driver.is_finished());
}

async fn open_tunnel(
    gw: &TestGateway,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>> {
    let (ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.addr))
        .await
        .expect("websocket upgrade through the gateway");
    assert_eq!(resp.status(), 101);
    ws
}

/// Whether a plain `GET /healthz` on a new connection is answered.
async fn new_connection_served(gw: &TestGateway) -> bool {
    let Ok(mut tcp) = TcpStream::connect(gw.addr).await else {
        return false;
    };
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        gw.addr
    );
    if tcp.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WITHIN, tcp.read_to_end(&mut answer)).await;
    matches!(read, Ok(Ok(_))) && answer.starts_with(b"HTTP/1.1 200")
}

#[tokio::test]
async fn websocket_tunnels_keep_their_connection_slot() {
    let (_up, gw) = setup("[server]\nmax_connections = 2\n").await;
    let mut first = open_tunnel(&gw).await;
    let mut second = open_tunnel(&gw).await;
    for ws in [&mut first, &mut second] {
        ws.send(Message::Text("ping".into())).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::Text("ping".into())
        );
    }

    assert!(
        !new_connection_served(&gw).await,
        "two open tunnels fill max_connections = 2"
    );

    first.close(None).await.unwrap();
    while let Some(Ok(_)) = first.next().await {}
    drop(first);
    let deadline = tokio::time::Instant::now() + WITHIN;
    let mut served = false;
    while !served && tokio::time::Instant::now() < deadline {
        served = new_connection_served(&gw).await;
        if !served {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(served, "closing a tunnel frees its slot");

    // The other tunnel still works.
    second
        .send(Message::Text("still here".into()))
        .await
        .unwrap();
    assert_eq!(
        second.next().await.unwrap().unwrap(),
        Message::Text("still here".into())
    );
}

#[tokio::test]
async fn idle_tunnel_is_closed_and_a_busy_one_is_not() {
    let (_up, gw) = setup("[proxy]\nupgrade_idle_timeout_secs = 1\n").await;
    let mut busy = open_tunnel(&gw).await;
    let mut idle = open_tunnel(&gw).await;

    // A message every 300 ms for over twice the limit, echoed each time.
    for i in 0..8 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let text = format!("message {i}");
        busy.send(Message::Text(text.clone())).await.unwrap();
        assert_eq!(busy.next().await.unwrap().unwrap(), Message::Text(text));
    }

    // The silent one has been closed meanwhile (or is within the bound).
    let ended = tokio::time::timeout(WITHIN, async {
        loop {
            match idle.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "a tunnel idle for upgrade_idle_timeout_secs is closed"
    );
}

#[tokio::test]
async fn a_tunnel_closes_once_its_session_is_signed_out() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let (idp, _up, gw) = signin::start_minted("[proxy]\nupgrade_session_check_secs = 1\n").await;
    let (browser, cookie) = signin::sign_in_as(&idp, &gw, "/", |_| {}).await;
    let open = || async {
        let mut req = format!("ws://{}/ws", gw.addr)
            .into_client_request()
            .unwrap();
        req.headers_mut().insert("cookie", cookie.parse().unwrap());
        let (ws, resp) = tokio_tungstenite::connect_async(req)
            .await
            .expect("websocket upgrade through the gateway");
        assert_eq!(resp.status(), 101);
        ws
    };
    let mut ws = open().await;
    // Busy for over twice the check interval while the session lives: it stays open.
    for i in 0..8 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let text = format!("message {i}");
        ws.send(Message::Text(text.clone())).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::Text(text));
    }

    // Sign out in the browser that holds the session.
    let token = logout_csrf_token(&browser, &gw.url("/saml/logout")).await;
    let r = browser
        .post(gw.url("/saml/logout"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "signed out");

    // The tunnel ends, traffic or not, within the check interval (5 s: a generous bound).
    let ended = tokio::time::timeout(WITHIN, async {
        loop {
            let _ = ws.send(Message::Text("still here?".into())).await;
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "a tunnel of a signed-out session is closed");
    // And a new one is refused: the cookie names no session now.
    let mut req = format!("ws://{}/ws", gw.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
}

#[tokio::test]
async fn http2_streams_beyond_the_pool_cap_get_503_and_the_slots_come_back() {
    let (_up, gw) = setup("[proxy]\nmax_pooled_requests = 2\n").await;
    let (sender, _driver) = h2_connect(&gw).await;
    // Four slow requests at once on one connection: two get upstream slots, two are refused
    // at once with 503 (never sent).
    let statuses = futures_util::future::join_all((0..4).map(|_| {
        let mut sender = sender.clone();
        let gw = &gw;
        async move { h2_get(&mut sender, gw, "/slow/1500").await }
    }))
    .await;
    let mut codes: Vec<u16> = statuses.iter().map(|(s, _)| *s).collect();
    codes.sort_unstable();
    assert_eq!(codes, vec![200, 200, 503, 503], "{statuses:?}");
    let busy = statuses.iter().find(|(s, _)| *s == 503).unwrap();
    assert!(busy.1.contains("upstream_busy"), "{}", busy.1);
    // The slots are released with the response bodies: the next ones go through.
    let mut sender = sender.clone();
    for _ in 0..3 {
        assert_eq!(h2_get(&mut sender, &gw, "/hello").await.0, 200);
    }
}
