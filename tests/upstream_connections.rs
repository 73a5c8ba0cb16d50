//! Per-connection upstream connections (`proxy::ConnSlot`): requests on one HTTP/1.1 client
//! connection reuse one upstream connection, and every way that connection can end (upstream
//! closes it, client goes away mid-body, timeout) leaves the next request unharmed.
//!
//! The upstream here is a small raw HTTP/1.1 server that numbers its connections, so the
//! tests can see which upstream connection served which request.

#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/mint.rs"]
mod mint;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gateway::*;
use http_body_util::{BodyExt, Empty, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use mint::{ResponseSpec, TestIdp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const IDP_ENTITY: &str = "https://idp.test/metadata";
const IDP_SSO: &str = "https://idp.test/sso";
const BIG: usize = 8 << 20;

/// What the raw upstream saw: (upstream connection number, method, path) per request.
#[derive(Clone, Default)]
struct Log {
    requests: Arc<Mutex<Vec<(usize, String, String)>>>,
    opened: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

impl Log {
    fn requests(&self) -> Vec<(usize, String, String)> {
        self.requests.lock().unwrap().clone()
    }
    fn conn_of(&self, path: &str) -> Vec<usize> {
        self.requests()
            .into_iter()
            .filter(|(_, _, p)| p == path)
            .map(|(c, _, _)| c)
            .collect()
    }
}

/// Starts the raw upstream. Paths: `/close` answers with `Connection: close` and closes;
/// `/drop-after` answers normally, then closes the connection 50 ms later without notice;
/// `/big` sends `BIG` bytes; `/empty` answers 204; `/slow` answers after 3 s; `/early`
/// answers before reading the request body; anything else
/// answers `ok <connection number>`. HEAD gets headers only.
async fn raw_upstream() -> (String, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = Log::default();
    let log2 = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let id = log2.opened.fetch_add(1, Ordering::SeqCst) + 1;
            let log = log2.clone();
            tokio::spawn(async move {
                serve_raw(stream, id, &log).await;
                log.closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (url, log)
}

async fn serve_raw(mut s: TcpStream, id: usize, log: &Log) {
    let mut buf = Vec::new();
    loop {
        // Request head.
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or("").split(' ');
        let method = first.next().unwrap_or("").to_string();
        let path = first.next().unwrap_or("").to_string();
        let length: usize = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        if path == "/early" {
            // Answers before reading the request body (then drains it).
            let r = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nearly";
            if s.write_all(r.as_bytes()).await.is_err() {
                return;
            }
        }
        // Request body (discarded).
        while buf.len() < length {
            let mut chunk = [0u8; 65536];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..length);
        log.requests
            .lock()
            .unwrap()
            .push((id, method.clone(), path.clone()));

        let head_only = method == "HEAD";
        let reply = |status: &str, extra: &str, body: &[u8]| {
            let mut r = format!(
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\n{extra}\r\n",
                body.len()
            )
            .into_bytes();
            if !head_only {
                r.extend_from_slice(body);
            }
            r
        };
        match path.as_str() {
            "/early" => {}
            "/close" => {
                let _ = s
                    .write_all(&reply("200 OK", "connection: close\r\n", b"bye"))
                    .await;
                return;
            }
            "/drop-after" => {
                let _ = s.write_all(&reply("200 OK", "", b"ok")).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
            "/empty" => {
                if s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
            }
            "/big" => {
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {BIG}\r\n\r\n");
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                if !head_only {
                    let chunk = vec![b'x'; 64 * 1024];
                    for _ in 0..BIG / chunk.len() {
                        if s.write_all(&chunk).await.is_err() {
                            return;
                        }
                    }
                }
            }
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                if s.write_all(&reply("200 OK", "", b"late")).await.is_err() {
                    return;
                }
            }
            _ => {
                let body = format!("ok {id}");
                if s.write_all(&reply("200 OK", "", body.as_bytes()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// A gateway in front of the raw upstream, and a session cookie (`name=value`).
async fn setup(extra_toml: &str) -> (TestGateway, Log, String) {
    let idp = TestIdp::generate(IDP_ENTITY);
    let (url, log) = raw_upstream().await;
    let opts = Options {
        extra_toml: extra_toml.into(),
        ..Options::default()
    };
    let gw = start_gateway(&url, &idp.metadata_xml(IDP_SSO), opts).await;
    let c = client();
    let (req_id, relay) = begin_login(&c, &gw, "/").await;
    let spec = ResponseSpec::valid(&idp, &gw.sp_entity_id(), &gw.acs_url(), Some(&req_id));
    let r = post_acs(&c, &gw, &mint::mint_b64(&idp, &spec), Some(&relay)).await;
    assert_eq!(r.status(), 303);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("samlgate_session="))
        .and_then(|v| v.split(';').next())
        .expect("session cookie")
        .to_string();
    (gw, log, cookie)
}

/// One HTTP/1.1 client connection to the gateway: requests on it go one after another.
struct ClientConn {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    cookie: String,
}

impl ClientConn {
    async fn open(gw: &TestGateway, cookie: &str) -> ClientConn {
        let stream = TcpStream::connect(gw.addr).await.unwrap();
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        ClientConn {
            send,
            cookie: cookie.to_string(),
        }
    }

    /// (status, body) of one request on this connection.
    async fn request(&mut self, method: &str, path: &str, body: &'static [u8]) -> (u16, Bytes) {
        self.send
            .ready()
            .await
            .expect("client connection still open");
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "gateway.test")
            .header("cookie", &self.cookie)
            .header("accept", "application/json")
            .body(Full::new(Bytes::from_static(body)))
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(20), self.send.send_request(req))
            .await
            .expect("answered in time")
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    }

    async fn get(&mut self, path: &str) -> (u16, Bytes) {
        self.request("GET", path, b"").await
    }
}

#[tokio::test]
async fn requests_on_one_client_connection_share_one_upstream_connection() {
    let (gw, log, cookie) = setup("").await;
    let mut a = ClientConn::open(&gw, &cookie).await;
    for _ in 0..3 {
        assert_eq!(a.get("/").await.0, 200);
    }
    assert_eq!(a.request("HEAD", "/head", b"").await.0, 200);
    assert_eq!(a.get("/empty").await.0, 204);
    assert_eq!(a.request("POST", "/post", b"form=data").await.0, 200);
    let (status, body) = a.get("/big").await;
    assert_eq!(
        (status, body.len()),
        (200, BIG),
        "large bodies stream through"
    );
    assert_eq!(a.get("/").await.0, 200);

    let conns: Vec<usize> = log.requests().iter().map(|r| r.0).collect();
    assert_eq!(conns.len(), 8, "{:?}", log.requests());
    assert!(
        conns.iter().all(|c| *c == conns[0]),
        "one upstream connection for the whole client connection: {:?}",
        log.requests()
    );

    // Another client connection gets its own upstream connection.
    let mut b = ClientConn::open(&gw, &cookie).await;
    let (status, body) = b.get("/other").await;
    assert_eq!(status, 200);
    assert_ne!(log.conn_of("/other"), vec![conns[0]], "{body:?}");
    assert_eq!(log.opened.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn idle_connections_expire_like_the_pool_s() {
    let (gw, log, cookie) = setup("[proxy]\npool_idle_timeout_secs = 1\n").await;
    let mut a = ClientConn::open(&gw, &cookie).await;
    assert_eq!(a.get("/1").await.0, 200);
    assert_eq!(a.get("/2").await.0, 200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(a.get("/3").await.0, 200);
    assert_eq!(log.conn_of("/2"), log.conn_of("/1"));
    assert_ne!(
        log.conn_of("/3"),
        log.conn_of("/2"),
        "kept past the idle timeout"
    );
    drop(a);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let mut b = ClientConn::open(&gw, &cookie).await;
    assert_eq!(b.get("/4").await.0, 200);
    assert_ne!(
        log.conn_of("/4"),
        log.conn_of("/3"),
        "stashed past the idle timeout"
    );
}

#[tokio::test]
async fn an_upstream_closing_its_connection_is_handled() {
    let (gw, log, cookie) = setup("").await;
    let mut c = ClientConn::open(&gw, &cookie).await;
    assert_eq!(c.get("/").await.0, 200);
    // `Connection: close`: answered, and the next request gets a new upstream connection.
    let (status, body) = c.get("/close").await;
    assert_eq!((status, &body[..]), (200, &b"bye"[..]));
    assert_eq!(c.get("/after-close").await.0, 200);
    assert_ne!(log.conn_of("/after-close"), log.conn_of("/close"));

    // Closed without notice while idle (the upstream's keep-alive timeout): the kept
    // connection is found closed and the request goes out on a new one, not as a 502.
    assert_eq!(c.get("/drop-after").await.0, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.get("/after-drop").await.0, 200);
    assert_ne!(log.conn_of("/after-drop"), log.conn_of("/drop-after"));
    assert_eq!(c.get("/again").await.0, 200);
    assert_eq!(log.conn_of("/again"), log.conn_of("/after-drop"));
}

#[tokio::test]
async fn a_client_gone_mid_body_does_not_poison_what_follows() {
    let (gw, log, cookie) = setup("").await;
    // A raw client asks for the big body, reads a little of it and disconnects.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        format!("GET /big HTTP/1.1\r\nhost: gateway.test\r\ncookie: {cookie}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut first = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < first.len() {
        let n = s.read(&mut first[got..]).await.unwrap();
        assert!(n > 0, "the gateway closed before sending anything");
        got += n;
    }
    assert!(first.starts_with(b"HTTP/1.1 200"));
    drop(s);

    // The upstream connection that carried it is closed, not kept half-read.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while log.closed.load(Ordering::SeqCst) < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upstream connection of the abandoned body was not closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The gateway serves on: new clients, and the same upstream again for a kept connection.
    let mut c = ClientConn::open(&gw, &cookie).await;
    assert_eq!(c.get("/").await.0, 200);
    let (status, body) = c.get("/big").await;
    assert_eq!((status, body.len()), (200, BIG));
    assert_eq!(c.get("/after-big").await.0, 200);
    assert_eq!(log.conn_of("/after-big"), log.conn_of("/"));
}

#[tokio::test]
async fn an_upstream_answering_before_the_whole_request_body_is_handled() {
    let (gw, log, cookie) = setup("").await;
    let mut c = ClientConn::open(&gw, &cookie).await;
    static UPLOAD: [u8; 4 << 20] = [b'u'; 4 << 20];
    let (status, body) = c.request("POST", "/early", &UPLOAD).await;
    assert_eq!((status, &body[..]), (200, &b"early"[..]));
    // What follows works. (The gateway may close that client connection, since the body was
    // still arriving when the answer went out — allowed by HTTP and timing-dependent — so the
    // next requests go on a fresh client connection.)
    drop(c);
    let mut c = ClientConn::open(&gw, &cookie).await;
    let (status, body) = c.get("/next").await;
    assert_eq!(status, 200, "{body:?}");
    assert_eq!(c.get("/").await.0, 200);
    assert_eq!(log.conn_of("/next"), log.conn_of("/"));
    assert_eq!(log.conn_of("/early").len(), 1);
}

#[tokio::test]
async fn a_timed_out_upstream_connection_is_replaced() {
    let (gw, log, cookie) = setup("[proxy]\nupstream_timeout_secs = 1\n").await;
    let mut c = ClientConn::open(&gw, &cookie).await;
    assert_eq!(c.get("/").await.0, 200);
    let started = std::time::Instant::now();
    assert_eq!(c.get("/slow").await.0, 504);
    assert!(started.elapsed() < Duration::from_millis(2900));
    // Same client connection: a fresh upstream connection, not the abandoned one.
    let (status, body) = c.get("/next").await;
    assert_eq!(status, 200, "{body:?}");
    assert_ne!(log.conn_of("/next"), log.conn_of("/slow"));
    // The timer is re-armed for each request, not left expired.
    assert_eq!(c.get("/").await.0, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(c.get("/later").await.0, 200);
    assert_eq!(log.conn_of("/later"), log.conn_of("/next"));
}

#[tokio::test]
async fn unauthenticated_and_gateway_requests_leave_the_upstream_alone() {
    let (gw, log, _cookie) = setup("").await;
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    for path in ["/", "/healthz", "/"] {
        send.ready().await.unwrap();
        let req = Request::builder()
            .uri(path)
            .header("host", "gateway.test")
            .header("accept", "application/json")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let status = send.send_request(req).await.unwrap().status();
        assert!(status == 401 || status == 200, "{path}: {status}");
    }
    assert_eq!(log.opened.load(Ordering::SeqCst), 0);
}

/// Waits until the upstream has seen `n` of its connections closed.
async fn upstream_closed(log: &Log, n: usize, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while log.closed.load(Ordering::SeqCst) < n {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads one response (head, then a `content-length` body) from a raw client connection:
/// (status line, body). `None` when the gateway closed the connection first.
async fn read_raw_response(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await.unwrap() {
            0 => return None,
            n => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let length: usize = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = buf[end..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed mid-body");
        body.extend_from_slice(&chunk[..n]);
    }
    Some((head.lines().next().unwrap_or("").to_string(), body))
}

#[tokio::test]
async fn an_idle_client_connection_gives_its_upstream_connection_back_and_serves_on() {
    let (gw, log, cookie) = setup("").await;
    let mut c = ClientConn::open(&gw, &cookie).await;
    assert_eq!(c.get("/before").await.0, 200);
    // Idle past `connection::PARK_AFTER`: the client connection parks and the upstream
    // connection it kept is closed, so idle clients hold no upstream socket.
    upstream_closed(&log, 1, "the idle client's upstream connection was kept").await;
    // The client connection itself stays open and serves the next request, on a new
    // upstream connection, which it keeps again while busy.
    assert_eq!(c.get("/after").await.0, 200);
    assert_eq!(c.get("/again").await.0, 200);
    assert_ne!(log.conn_of("/after"), log.conn_of("/before"));
    assert_eq!(log.conn_of("/again"), log.conn_of("/after"));
    assert_eq!(log.opened.load(Ordering::SeqCst), 2);
    // It parks again after that request, and serves again.
    upstream_closed(
        &log,
        2,
        "the upstream connection was kept after a second park",
    )
    .await;
    assert_eq!(c.get("/third").await.0, 200);
}

#[tokio::test]
async fn a_request_arriving_while_the_connection_parks_is_served_whole() {
    let (gw, log, cookie) = setup("").await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let request = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nhost: gateway.test\r\ncookie: {cookie}\r\n\r\n")
    };
    s.write_all(request("/first").as_bytes()).await.unwrap();
    let (status, _) = read_raw_response(&mut s).await.expect("answered");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    // Half of the next request head, then nothing until the connection has parked: those
    // bytes, read by hyper but not parsed, must be carried over to the resumed connection.
    let second = request("/second");
    let (head, rest) = second.split_at(20);
    s.write_all(head.as_bytes()).await.unwrap();
    upstream_closed(&log, 1, "the connection did not park").await;
    s.write_all(rest.as_bytes()).await.unwrap();
    let (status, body) = read_raw_response(&mut s)
        .await
        .expect("answered after the park");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(body, b"ok 2", "served on a new upstream connection");
    assert_eq!(log.conn_of("/second"), vec![2]);
}

#[tokio::test]
async fn a_parked_connection_still_closes_at_the_idle_timeout() {
    // Idle HTTP/1.1 connections close after `idle_timeout_secs` or, sooner, after
    // `header_read_timeout_secs` (hyper's header timer runs between requests): parked or not.
    for server in ["idle_timeout_secs = 4", "header_read_timeout_secs = 4"] {
        let (gw, log, cookie) = setup(&format!("[server]\n{server}\n")).await;
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        let request = format!("GET / HTTP/1.1\r\nhost: gateway.test\r\ncookie: {cookie}\r\n\r\n");
        s.write_all(request.as_bytes()).await.unwrap();
        assert!(read_raw_response(&mut s).await.is_some(), "{server}");
        let answered = std::time::Instant::now();
        upstream_closed(&log, 1, "the connection did not park").await;
        // Parked, then closed by the gateway once idle that long, not before.
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
            .await
            .expect("closed at the idle timeout")
            .unwrap_or(0);
        assert_eq!(n, 0, "{server}: nothing sent before closing: {rest:?}");
        assert!(
            answered.elapsed() >= Duration::from_millis(3900),
            "{server}: closed after {:?}, before the idle timeout",
            answered.elapsed()
        );
    }
}
