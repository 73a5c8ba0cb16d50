//! Forwarding to the upstream application: the pooled client, the header rewrite (hop-by-hop,
//! identity headers, gateway cookies, `X-Forwarded-*`), streamed bodies both ways, and
//! `Upgrade` (WebSocket) passthrough.
//!
//! The header rewrite is a pure function on a `HeaderMap`; only [`Upstream::forward`] does I/O.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::config::{HeadersSection, ProxySettings};
use crate::session::{Identity, IdentityHeaderValues};

/// Every response body the gateway produces: its own pages or the upstream's stream.
pub type Body = BoxBody<Bytes, hyper::Error>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// `X-Forwarded_User` and `x-forwarded-user` are the same header to many apps (nginx, CGI,
/// WSGI map `_` and `-` together): compare names in this form.
pub fn normalize_header_name(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b == b'_' {
                '-'
            } else {
                b.to_ascii_lowercase() as char
            }
        })
        .collect()
}

/// The configured identity header names.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub user: HeaderName,
    pub email: HeaderName,
    pub groups: HeaderName,
    pub preferred_username: HeaderName,
    normalized: [String; 4],
    separator: String,
}

impl IdentityHeaders {
    /// Names were validated by config; an invalid one here is a programming error upstream of
    /// us, so fall back to the defaults rather than panic.
    pub fn from_config(h: &HeadersSection) -> Self {
        let name = |raw: &str, default: &'static str| {
            HeaderName::from_bytes(raw.as_bytes()).unwrap_or(HeaderName::from_static(default))
        };
        let user = name(&h.user, "x-forwarded-user");
        let email = name(&h.email, "x-forwarded-email");
        let groups = name(&h.groups, "x-forwarded-groups");
        let preferred_username = name(&h.preferred_username, "x-forwarded-preferred-username");
        let normalized = [
            normalize_header_name(user.as_str()),
            normalize_header_name(email.as_str()),
            normalize_header_name(groups.as_str()),
            normalize_header_name(preferred_username.as_str()),
        ];
        IdentityHeaders {
            user,
            email,
            groups,
            preferred_username,
            normalized,
            separator: h.groups_separator.clone(),
        }
    }

    /// Whether a client-sent header is any case or `_`/`-` variant of an identity header.
    pub fn is_identity(&self, name: &HeaderName) -> bool {
        let n = name.as_str(); // always lowercase
        if n.contains('_') {
            let norm = normalize_header_name(n);
            self.normalized.contains(&norm)
        } else {
            self.normalized.iter().any(|x| x == n)
        }
    }

    /// Header values for a signed-in identity, computed once at sign-in. Values that are not
    /// valid header text (control characters) are left out; the user id must be valid.
    pub fn values(&self, id: &Identity) -> Result<IdentityHeaderValues, &'static str> {
        let clean = |s: &str| -> Option<HeaderValue> {
            if s.is_empty() || s.chars().any(char::is_control) {
                return None;
            }
            HeaderValue::from_str(s).ok()
        };
        let user = clean(&id.user).ok_or("user id is not valid header text")?;
        let groups = if id.groups.is_empty() {
            None
        } else {
            clean(&id.groups.join(&self.separator))
        };
        Ok(IdentityHeaderValues {
            user,
            email: id.email.as_deref().and_then(clean),
            groups,
            preferred_username: id
                .preferred_username
                .as_deref()
                .or(id.display_name.as_deref())
                .and_then(clean),
        })
    }
}

/// What the upstream is told about the original request.
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub client_ip: IpAddr,
    pub proto: &'static str,
    pub host: Option<HeaderValue>,
}

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Whether the request asks to switch protocols (WebSocket and friends), HTTP/1.1 only.
pub fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && connection_has_token(req.headers(), "upgrade")
}

fn connection_has_token(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes hop-by-hop headers and those named in `Connection`. For an upgrade the `Upgrade`
/// header and `Connection: upgrade` survive, since the next hop must see them.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    let upgrade_value = if upgrade {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    for name in listed.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove("proxy-connection");
    if let Some(v) = upgrade_value {
        headers.insert(header::UPGRADE, v);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Removes the gateway's own cookies from `Cookie`, joining what is left into one header
/// (HTTP/2 clients send one per cookie; HTTP/1.1 upstreams expect one).
pub fn strip_gateway_cookies(headers: &mut HeaderMap, names: &[&str]) {
    if !headers.contains_key(header::COOKIE) {
        return;
    }
    let mut kept: Vec<String> = Vec::new();
    for v in headers.get_all(header::COOKIE) {
        let Ok(s) = v.to_str() else { continue };
        for pair in s.split(';') {
            let pair = pair.trim();
            if pair.is_empty() {
                continue;
            }
            let name = pair.split_once('=').map_or(pair, |(n, _)| n).trim();
            if !names.contains(&name) {
                kept.push(pair.to_string());
            }
        }
    }
    headers.remove(header::COOKIE);
    if !kept.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&kept.join("; ")) {
            headers.insert(header::COOKIE, v);
        }
    }
}

/// Removes every client copy of every identity header.
pub fn strip_identity_headers(headers: &mut HeaderMap, ids: &IdentityHeaders) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| ids.is_identity(n))
        .cloned()
        .collect();
    for n in doomed {
        headers.remove(n);
    }
}

/// The whole request rewrite for the upstream (pure).
pub fn rewrite_request_headers(
    headers: &mut HeaderMap,
    ids: &IdentityHeaders,
    gateway_cookies: &[&str],
    identity: Option<&IdentityHeaderValues>,
    fwd: &Forwarded,
    upgrade: bool,
) {
    strip_hop_by_hop(headers, upgrade);
    strip_identity_headers(headers, ids);
    strip_gateway_cookies(headers, gateway_cookies);
    if let Some(v) = identity {
        headers.insert(ids.user.clone(), v.user.clone());
        if let Some(e) = &v.email {
            headers.insert(ids.email.clone(), e.clone());
        }
        if let Some(g) = &v.groups {
            headers.insert(ids.groups.clone(), g.clone());
        }
        if let Some(p) = &v.preferred_username {
            headers.insert(ids.preferred_username.clone(), p.clone());
        }
    }
    // The client's own forwarding headers are not trusted: we are the edge.
    headers.remove(header::FORWARDED);
    headers.remove("x-real-ip");
    if let Ok(v) = HeaderValue::from_str(&fwd.client_ip.to_string()) {
        headers.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(fwd.proto),
    );
    match &fwd.host {
        Some(h) => {
            headers.insert(HeaderName::from_static("x-forwarded-host"), h.clone());
        }
        None => {
            headers.remove("x-forwarded-host");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("upstream request failed: {0}")]
    Failed(String),
    #[error("cannot build upstream request: {0}")]
    BadRequest(String),
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

type HttpsConnector = hyper_rustls::HttpsConnector<HttpConnector>;

/// The upstream application and a keep-alive pool of connections to it.
pub struct Upstream {
    client: Client<HttpsConnector, Incoming>,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    base_path: String,
    own_host: HeaderValue,
    timeout: Duration,
    pass_host_header: bool,
}

fn client_tls(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(pem) = ca_pem {
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("proxy.upstream_ca_file: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("proxy.upstream_ca_file: {e}"))?;
            n += 1;
        }
        if n == 0 {
            return Err("proxy.upstream_ca_file holds no PEM certificate".into());
        }
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

impl Upstream {
    pub fn new(url: &url::Url, p: &ProxySettings) -> Result<Upstream, String> {
        let uri: Uri = url.as_str().parse().map_err(|e| format!("upstream: {e}"))?;
        let scheme = uri.scheme().cloned().ok_or("upstream: no scheme")?;
        let authority = uri.authority().cloned().ok_or("upstream: no host")?;
        let base_path = url.path().trim_end_matches('/').to_string();
        let own_host = HeaderValue::from_str(authority.as_str()).map_err(|e| e.to_string())?;

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(p.connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(client_tls(p.upstream_ca_pem.as_deref())?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(p.pool_idle_timeout)
            .pool_max_idle_per_host(1024)
            .build(connector);
        Ok(Upstream {
            client,
            scheme,
            authority,
            base_path,
            own_host,
            timeout: p.upstream_timeout,
            pass_host_header: p.pass_host_header,
        })
    }

    fn upstream_uri(&self, original: &Uri) -> Result<Uri, ProxyError> {
        let pq = original.path_and_query().map_or("/", |pq| pq.as_str());
        let path = format!("{}{}", self.base_path, pq);
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|e| ProxyError::BadRequest(e.to_string()))
    }

    /// Sends the (already rewritten) request upstream and streams the answer back. For an
    /// accepted upgrade, splices the two connections together in a background task.
    pub async fn forward(
        &self,
        mut req: Request<Incoming>,
        client_host: Option<HeaderValue>,
        upgrade: bool,
    ) -> Result<Response<Body>, ProxyError> {
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        *req.uri_mut() = self.upstream_uri(req.uri())?;
        *req.version_mut() = Version::HTTP_11;
        let host = match (self.pass_host_header, client_host) {
            (true, Some(h)) => h,
            _ => self.own_host.clone(),
        };
        req.headers_mut().insert(header::HOST, host);

        let mut resp = match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => return Err(ProxyError::Timeout(self.timeout)),
            Ok(Err(e)) if e.is_connect() => return Err(ProxyError::Unreachable(error_chain(&e))),
            Ok(Err(e)) => return Err(ProxyError::Failed(error_chain(&e))),
            Ok(Ok(r)) => r,
        };

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_side) = client_upgrade {
                let upstream_side = hyper::upgrade::on(&mut resp);
                tokio::spawn(async move {
                    let (Ok(client_io), Ok(upstream_io)) = (client_side.await, upstream_side.await)
                    else {
                        tracing::debug!("upgrade abandoned before both sides switched");
                        return;
                    };
                    let mut client_io = TokioIo::new(client_io);
                    let mut upstream_io = TokioIo::new(upstream_io);
                    let _ = tokio::io::copy_bidirectional(&mut client_io, &mut upstream_io).await;
                });
                strip_hop_by_hop(resp.headers_mut(), true);
                return Ok(resp.map(|b| b.boxed()));
            }
        }
        strip_hop_by_hop(resp.headers_mut(), false);
        Ok(resp.map(|b| b.boxed()))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> IdentityHeaders {
        IdentityHeaders::from_config(&HeadersSection::default())
    }

    fn fwd() -> Forwarded {
        Forwarded {
            client_ip: "10.1.2.3".parse().unwrap(),
            proto: "https",
            host: Some(HeaderValue::from_static("app.example.com:8443")),
        }
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn every_variant_of_identity_headers_is_removed() {
        let mut h = map(&[
            ("X-Forwarded-User", "mallory"),
            ("x-forwarded-user", "mallory2"),
            ("X_Forwarded_User", "mallory3"),
            ("x-forwarded_user", "mallory4"),
            ("X-FORWARDED-EMAIL", "m@evil"),
            ("x_forwarded_groups", "admins"),
            ("X-Forwarded-Preferred-Username", "root"),
            ("X-Forwarded-Users", "not ours"),
            ("accept", "text/html"),
        ]);
        rewrite_request_headers(&mut h, &ids(), &[], None, &fwd(), false);
        for n in [
            "x-forwarded-user",
            "x_forwarded_user",
            "x-forwarded_user",
            "x-forwarded-email",
            "x_forwarded_groups",
            "x-forwarded-preferred-username",
        ] {
            assert!(!h.contains_key(n), "{n} survived");
        }
        assert_eq!(h["x-forwarded-users"], "not ours");
        assert_eq!(h["accept"], "text/html");
    }

    #[test]
    fn identity_is_injected_and_forwarding_headers_are_ours() {
        let id = Identity {
            user: "alice".into(),
            email: Some("alice@example.com".into()),
            groups: vec!["analysts".into(), "admins".into()],
            ..Identity::default()
        };
        let values = ids().values(&id).unwrap();
        let mut h = map(&[
            ("x-forwarded-user", "mallory"),
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-host", "evil"),
        ]);
        rewrite_request_headers(&mut h, &ids(), &[], Some(&values), &fwd(), false);
        assert_eq!(h.get_all("x-forwarded-user").iter().count(), 1);
        assert_eq!(h["x-forwarded-user"], "alice");
        assert_eq!(h["x-forwarded-email"], "alice@example.com");
        assert_eq!(h["x-forwarded-groups"], "analysts,admins");
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "app.example.com:8443");
        assert!(!h.contains_key("forwarded") && !h.contains_key("x-real-ip"));
    }

    #[test]
    fn custom_header_names_are_stripped_too() {
        let cfg = HeadersSection {
            user: "X-WEBAUTH-USER".into(),
            ..HeadersSection::default()
        };
        let ids = IdentityHeaders::from_config(&cfg);
        let mut h = map(&[("x_webauth_user", "admin"), ("X-Webauth-User", "admin")]);
        strip_identity_headers(&mut h, &ids);
        assert!(h.is_empty());
    }

    #[test]
    fn control_characters_are_never_forwarded() {
        let id = Identity {
            user: "alice".into(),
            email: Some("a@b\r\nX-Evil: 1".into()),
            groups: vec!["a\tb".into()],
            ..Identity::default()
        };
        let v = ids().values(&id).unwrap();
        assert!(v.email.is_none());
        assert!(v.groups.is_none());
        let bad = Identity {
            user: "al\nice".into(),
            ..Identity::default()
        };
        assert!(ids().values(&bad).is_err());
    }

    #[test]
    fn gateway_cookies_are_removed_and_the_rest_joined() {
        let mut h = map(&[
            ("cookie", "a=1; samlgate_session=xyz"),
            ("cookie", "samlgate_login=q; b=2"),
        ]);
        strip_gateway_cookies(&mut h, &["samlgate_session", "samlgate_login"]);
        assert_eq!(h["cookie"], "a=1; b=2");
        let mut h = map(&[("cookie", "samlgate_session=xyz")]);
        strip_gateway_cookies(&mut h, &["samlgate_session"]);
        assert!(!h.contains_key("cookie"));
    }

    #[test]
    fn hop_by_hop_headers_go_but_upgrades_survive() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic x"),
            ("upgrade", "websocket"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert!(h.is_empty(), "{h:?}");
        let mut h = map(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "k"),
        ]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["sec-websocket-key"], "k");
    }

    #[test]
    fn upgrade_detection_needs_both_headers_on_http11() {
        let req = Request::builder()
            .header("upgrade", "websocket")
            .header("connection", "keep-alive, Upgrade")
            .body(())
            .unwrap();
        assert!(is_upgrade_request(&req));
        let req = Request::builder()
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        assert!(!is_upgrade_request(&req));
        let req = Request::builder()
            .version(Version::HTTP_2)
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .body(())
            .unwrap();
        assert!(!is_upgrade_request(&req));
    }
}
