//! The demo's upstream application: one HTML page that shows the identity headers samlgate
//! added (`X-Forwarded-User`, `-Email`, `-Groups`, `-Preferred-Username`) and a WebSocket echo
//! at `/ws` with a tiny inline JavaScript client on the page, to show that WebSockets pass
//! through the gateway. It trusts those headers only because it listens on loopback behind
//! samlgate; reached directly, it shows that no identity arrived.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::pages::html_escape as esc;

/// The headers the page shows, in order, with a label.
pub const IDENTITY_HEADERS: [(&str, &str); 4] = [
    ("X-Forwarded-User", "user"),
    ("X-Forwarded-Email", "email"),
    ("X-Forwarded-Groups", "groups"),
    ("X-Forwarded-Preferred-Username", "preferred username"),
];

/// Other forwarding headers worth seeing.
const FORWARDING_HEADERS: [&str; 3] = ["X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"];

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem;color:#222}table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{padding:.3rem .7rem;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}code{background:#eee;padding:0 .2rem}.missing{color:#999}.group{display:inline-block;background:#e3e8ff;border-radius:3px;padding:0 .4rem;margin:0 .2rem .2rem 0}pre{background:#f4f4f4;padding:.5rem;min-height:3rem}input{font-size:1rem;padding:.3rem;width:60%}button{font-size:1rem;padding:.3rem .8rem}.note{color:#666;font-size:.9rem}";

/// The inline WebSocket client (served with a matching CSP hash).
pub const WS_SCRIPT: &str = "(function(){var log=document.getElementById('ws-log');function say(s){log.textContent+=s+'\\n';}var ws=new WebSocket((location.protocol==='https:'?'wss://':'ws://')+location.host+'/ws');ws.onopen=function(){say('connected to '+ws.url);};ws.onmessage=function(e){say('echo: '+e.data);};ws.onclose=function(e){say('closed (code '+e.code+')');};ws.onerror=function(){say('error');};document.getElementById('ws-form').addEventListener('submit',function(ev){ev.preventDefault();var m=document.getElementById('ws-msg').value;if(ws.readyState===1){ws.send(m);say('sent: '+m);}else{say('not connected');}});})();";

/// The first value of each identity header, as the app received it (`None` when absent or
/// not UTF-8).
pub fn identity(headers: &HeaderMap) -> Vec<(&'static str, Option<String>)> {
    IDENTITY_HEADERS
        .iter()
        .map(|(name, _)| {
            let v = headers
                .get(*name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            (*name, v)
        })
        .collect()
}

/// The page. `headers` are the request headers the app received.
pub fn page_html(headers: &HeaderMap) -> String {
    let id = identity(headers);
    let user = id[0].1.as_deref();
    let mut b = String::new();
    match user {
        Some(u) => {
            let name = id[3].1.as_deref().unwrap_or(u);
            b.push_str(&format!("<h1>Hello, {}</h1><p>samlgate signed you in as <strong>{}</strong> and told this app who you are in request headers.</p>", esc(name), esc(u)));
        }
        None => b.push_str("<h1>No identity</h1><p>This request carried no <code>X-Forwarded-User</code>: it did not come through samlgate. Open the gateway's URL instead.</p>"),
    }
    b.push_str("<h2>Identity headers this app received</h2><table>");
    for ((name, label), (_, value)) in IDENTITY_HEADERS.iter().zip(&id) {
        let cell = match (value, *label) {
            (None, _) => "<span class=\"missing\">(not sent)</span>".to_string(),
            (Some(v), "groups") => {
                let mut s = format!("<code>{}</code><br>", esc(v));
                for g in v.split(',').map(str::trim).filter(|g| !g.is_empty()) {
                    s.push_str(&format!("<span class=\"group\">{}</span>", esc(g)));
                }
                s
            }
            (Some(v), _) => format!("<code>{}</code>", esc(v)),
        };
        b.push_str(&format!(
            "<tr><th>{}</th><td>{}</td><td class=\"note\">{}</td></tr>",
            esc(name),
            cell,
            esc(label)
        ));
    }
    b.push_str("</table><h2>Forwarding headers</h2><table>");
    for name in FORWARDING_HEADERS {
        let v = headers.get(name).and_then(|v| v.to_str().ok());
        b.push_str(&format!(
            "<tr><th>{}</th><td>{}</td></tr>",
            esc(name),
            v.map(|v| format!("<code>{}</code>", esc(v)))
                .unwrap_or_else(|| "<span class=\"missing\">(not sent)</span>".into())
        ));
    }
    b.push_str("</table><h2>WebSocket echo through the gateway</h2><form id=\"ws-form\"><input id=\"ws-msg\" value=\"hello through samlgate\" aria-label=\"message\"> <button type=\"submit\">Send</button></form><pre id=\"ws-log\"></pre>");
    if user.is_some() {
        b.push_str("<p><a href=\"/saml/logout\">Sign out of samlgate</a></p>");
    }
    b.push_str("<p class=\"note\">samlgate demo app. It trusts these headers only because it listens on loopback behind samlgate, which removes any client copy of them.</p>");
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>samlgate demo app</title><style>{STYLE}</style></head><body>{b}<script>{WS_SCRIPT}</script></body></html>"
    )
}

fn csp() -> String {
    use base64::Engine as _;
    let digest = ring::digest::digest(&ring::digest::SHA256, WS_SCRIPT.as_bytes());
    format!(
        "default-src 'none'; style-src 'unsafe-inline'; connect-src 'self' ws: wss:; script-src 'sha256-{}'; form-action 'self'; frame-ancestors 'none'",
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    )
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Serves one request: `/` (and any other GET) the page, `/ws` the WebSocket echo.
pub async fn handle<B>(mut req: Request<B>) -> Response<Full<Bytes>> {
    if req.uri().path() == "/ws" {
        let key = req.headers().get("sec-websocket-key").cloned();
        let is_upgrade = req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        let Some(key) = key.filter(|_| is_upgrade) else {
            return text(StatusCode::BAD_REQUEST, "this is a WebSocket endpoint\n");
        };
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                None,
            )
            .await;
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_close() {
                    break;
                }
                if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                    break;
                }
            }
        });
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            h.insert("sec-websocket-accept", v);
        }
        return r;
    }
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "the demo app only serves GET\n",
        );
    }
    if req.uri().path() == "/favicon.ico" {
        return text(StatusCode::NOT_FOUND, "no icon\n");
    }
    let mut r = Response::new(Full::new(Bytes::from(page_html(req.headers()))));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&csp()) {
        h.insert("content-security-policy", v);
    }
    r
}

/// Serves the app on `listener` (HTTP/1.1 and h2c, upgrades) until `shutdown` resolves.
pub async fn serve_on(listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let service = service_fn(|req| async move { Ok::<_, Infallible>(handle(req).await) });
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            let _ = watcher.watch(conn.into_owned()).await;
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {},
        _ = tokio::time::sleep(Duration::from_secs(2)) => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn page_shows_the_identity_and_groups() {
        let h = headers(&[
            ("x-forwarded-user", "alice"),
            ("x-forwarded-email", "alice@example.com"),
            ("x-forwarded-groups", "analysts,admins"),
            ("x-forwarded-preferred-username", "Alice Anderson"),
            ("x-forwarded-proto", "http"),
        ]);
        let html = page_html(&h);
        assert!(html.contains("<h1>Hello, Alice Anderson</h1>"));
        assert!(html.contains("<strong>alice</strong>"));
        assert!(html.contains("<code>alice@example.com</code>"));
        assert!(html
            .contains("<span class=\"group\">analysts</span><span class=\"group\">admins</span>"));
        assert!(html.contains("/saml/logout"));
        assert!(html.contains(&format!("<script>{WS_SCRIPT}</script>")));
        assert!(
            html.contains("<th>X-Forwarded-For</th><td><span class=\"missing\">(not sent)</span>")
        );
    }

    #[test]
    fn page_without_identity_says_so() {
        let html = page_html(&HeaderMap::new());
        assert!(html.contains("<h1>No identity</h1>"));
        assert_eq!(html.matches("(not sent)").count(), 7);
        assert!(!html.contains("/saml/logout"));
    }

    #[test]
    fn page_escapes_header_values() {
        let h = headers(&[
            ("x-forwarded-user", "<script>x</script>"),
            ("x-forwarded-groups", "<b>,\"q\""),
        ]);
        let html = page_html(&h);
        assert!(!html.contains("<script>x"));
        assert!(!html.contains("<b>"));
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(html.contains("<span class=\"group\">&quot;q&quot;</span>"));
    }

    #[test]
    fn csp_hash_matches_the_script() {
        use base64::Engine as _;
        let d = ring::digest::digest(&ring::digest::SHA256, WS_SCRIPT.as_bytes());
        let c = csp();
        assert!(c.contains(&base64::engine::general_purpose::STANDARD.encode(d.as_ref())));
        assert!(c.contains("connect-src 'self' ws: wss:"));
    }

    #[tokio::test]
    async fn ws_path_without_upgrade_is_a_400() {
        let r = handle(Request::get("/ws").body(Full::new(Bytes::new())).unwrap()).await;
        assert_eq!(r.status(), 400);
        let r = handle(Request::post("/").body(Full::new(Bytes::new())).unwrap()).await;
        assert_eq!(r.status(), 405);
        let r = handle(
            Request::get("/anything")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
        assert_eq!(r.status(), 200);
    }
}
