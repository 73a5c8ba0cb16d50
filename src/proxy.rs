//! Forwarding to the upstream application: the pooled client, the header rewrite (hop-by-hop,
//! identity headers, gateway cookies, `X-Forwarded-*`), streamed bodies both ways, and
//! `Upgrade` (WebSocket) passthrough.
//!
//! The header rewrite is a pure function on a `HeaderMap`; only [`Upstream::forward`] does I/O.

use std::future::{poll_fn, Future};
use std::net::IpAddr;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Frame, SizeHint};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http1;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::Deserialize;

use crate::foreign_headers::ForeignHeaders;
use crate::session::IdentityHeaderValues;
use crate::tunnel::{self, SpliceEnd, TunnelPermit, TunnelSession};

/// Every response body the gateway produces: its own pages or the upstream's stream.
pub type Body = BoxBody<Bytes, hyper::Error>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// `[headers]`: the identity headers sent upstream, the SAML attributes they carry, and the
/// client headers stripped. Validated by `config`; used here and at sign-in.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HeadersSection {
    /// Header carrying the user id.
    pub user: String,
    /// Header carrying the email.
    pub email: String,
    /// Header carrying the groups.
    pub groups: String,
    /// Header carrying the display or preferred name.
    pub preferred_username: String,
    /// Attribute holding the user id. Empty means the NameID. If set and the assertion lacks the
    /// attribute, the sign-in fails (`missing_user_attribute`).
    pub user_attribute: String,
    /// Attribute for the email header. Empty means none.
    pub email_attribute: String,
    /// Fallback for the preferred-username header.
    pub display_name_attribute: String,
    /// Multi-valued attribute for the groups header and `authz.allowed_groups`.
    pub groups_attribute: String,
    /// Attribute for the preferred-username header.
    pub preferred_username_attribute: String,
    /// Joins the groups (and several values of a forwarded attribute). Must be non-empty, with no
    /// control characters, and must not be able to occur inside an encoded value: no letters or
    /// digits except under `raw`; under `rfc2047` also no spaces or `= ? + / _`; under
    /// `quoted-printable` no `=`; under `percent` no `%` or `+`. The separator's characters inside
    /// a value are escaped, so splitting on it before decoding is exact.
    pub groups_separator: String,
    /// Strip client copies of other gateways' identity headers, the table under [Identity
    /// headers](how-it-works.md#identity-headers). `false` strips only `strip_foreign_extra` (and
    /// samlgate's own four). Applied on [reload](operations.md#reload).
    pub strip_foreign_defaults: bool,
    /// More header names (`"X-Corp-User"`) or prefixes (`"X-Corp-*"`, a single `*` at the end) to
    /// strip from client requests, compared ignoring case and `_`/`-`. At most 256. Refused: `*`
    /// alone, a `*` elsewhere, or a name or prefix that covers a header HTTP or samlgate uses (the
    /// list above: `Cookie`, `Content-*`, `X-Forwarded-*`, …). Applied on
    /// [reload](operations.md#reload).
    pub strip_foreign_extra: Vec<String>,
    /// How values that are not plain ASCII reach the application: see [Identity
    /// headers](identity-headers.md#encodings). Applies at the next sign-in.
    pub encoding: crate::identity::HeaderEncoding,
    /// Header carrying the role `[[roles]]` maps. Sent only when `[[roles]]` or
    /// `authz.default_role` is set; stripped from client requests always. Same rules as the four
    /// names above.
    pub role: String,
    /// More SAML attributes forwarded as headers, e.g. `{ department = "X-Forwarded-Department" }`.
    /// At most 32. The header names follow the rules above, must differ from every identity header
    /// and from the routing headers samlgate strips (`X-Original-URL`, …), and are stripped from
    /// client requests. Values are encoded by `encoding`; several values are joined with
    /// `groups_separator`. See [Identity headers](identity-headers.md#forwarded-attributes).
    pub attributes: std::collections::BTreeMap<String, String>,
}

impl Default for HeadersSection {
    fn default() -> Self {
        Self {
            user: "X-Forwarded-User".into(),
            email: "X-Forwarded-Email".into(),
            groups: "X-Forwarded-Groups".into(),
            preferred_username: "X-Forwarded-Preferred-Username".into(),
            user_attribute: String::new(),
            email_attribute: "mail".into(),
            display_name_attribute: "displayName".into(),
            groups_attribute: "groups".into(),
            preferred_username_attribute: "displayName".into(),
            groups_separator: ",".into(),
            strip_foreign_defaults: true,
            strip_foreign_extra: Vec::new(),
            encoding: crate::identity::HeaderEncoding::default(),
            role: "X-Forwarded-Role".into(),
            attributes: std::collections::BTreeMap::new(),
        }
    }
}

/// `[proxy]` as written by the operator: how the gateway talks to the upstream.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySection {
    /// Wait this long for the upstream's response headers, then answer 504. 1 to 86400. Once the
    /// headers arrive, the body streams with no timeout.
    pub upstream_timeout_secs: u64,
    /// TCP connect timeout to the upstream. 1 to 86400. Unreachable: 502.
    pub connect_timeout_secs: u64,
    /// Send the client's `Host` (true) or the upstream's `host:port` (false).
    pub pass_host_header: bool,
    /// Extra PEM CA bundle trusted for an `https` upstream, in addition to the system roots.
    pub upstream_ca_file: Option<std::path::PathBuf>,
    /// Idle keep-alive connections to the upstream are closed after this. At most 86400.
    pub pool_idle_timeout_secs: u64,
    /// An upgraded connection (WebSocket) is closed when no byte has moved in either direction for
    /// this long. While open it keeps its client connection's place under `server.max_connections`.
    /// 1 to 86400.
    pub upgrade_idle_timeout_secs: u64,
    /// An upgraded connection opened with a session looks its session up this often and is closed
    /// once the session has ended (idle or absolute expiry; audit `event="tunnel_closed"`). A
    /// revocation (sign-out, Single Logout, SCIM, the admin API, on any replica) makes it look at
    /// once instead. Each lookup counts as use of the session, so an open tunnel keeps it from
    /// expiring idle when this is shorter than `session.idle_timeout_secs` (never past its
    /// absolute lifetime). 1 to 86400.
    pub upgrade_session_check_secs: u64,
    /// Requests waiting at once for the upstream's response head over the shared connection pool,
    /// which HTTP/2 clients' streams use, as do HTTP/1.1 requests while their connection's own
    /// upstream connection is busy (an HTTP/1.1 client connection otherwise has an upstream
    /// connection of its own while it is busy, bounded by `server.max_connections` and closed when
    /// the client connection parks after 2 s idle, and upgraded connections hold their client
    /// connection's place). Beyond it a request is not sent and gets 503 `upstream_busy` with
    /// `Retry-After: 1`. A slot is held until the response head arrives (at most
    /// `upstream_timeout_secs`), not while the body downloads, so a client that stops reading holds
    /// none. Bounds the upstream connections a slow upstream can make HTTP/2 clients open. 1 to
    /// 1000000.
    pub max_pooled_requests: usize,
}

impl Default for ProxySection {
    fn default() -> Self {
        Self {
            upstream_timeout_secs: 60,
            connect_timeout_secs: 5,
            pass_host_header: true,
            upstream_ca_file: None,
            pool_idle_timeout_secs: 90,
            upgrade_idle_timeout_secs: 600,
            upgrade_session_check_secs: 10,
            max_pooled_requests: 4096,
        }
    }
}

/// `[proxy]` validated (by `config`): durations, and the CA bundle's bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxySettings {
    pub upstream_timeout: Duration,
    pub connect_timeout: Duration,
    pub pass_host_header: bool,
    pub upstream_ca_pem: Option<Vec<u8>>,
    pub pool_idle_timeout: Duration,
    pub upgrade_idle_timeout: Duration,
    pub upgrade_session_check: Duration,
    pub max_pooled_requests: usize,
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
    /// `headers.role`: stripped always, sent only when `[[roles]]` gave a role.
    pub role: HeaderName,
    /// Normalized names stripped from client requests: the five above, the forwarded
    /// attributes' (`headers.attributes`), plus any retired by a reload
    /// ([`IdentityHeaders::also_strip`]).
    normalized: Vec<String>,
    /// Other gateways' identity headers (`headers.strip_foreign_*`), stripped from client
    /// requests like our own.
    foreign: ForeignHeaders,
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
        let role = name(&h.role, "x-forwarded-role");
        let mut normalized = vec![
            normalize_header_name(user.as_str()),
            normalize_header_name(email.as_str()),
            normalize_header_name(groups.as_str()),
            normalize_header_name(preferred_username.as_str()),
            normalize_header_name(role.as_str()),
        ];
        for header in h.attributes.values() {
            let n = normalize_header_name(header);
            if !normalized.contains(&n) {
                normalized.push(n);
            }
        }
        IdentityHeaders {
            user,
            email,
            groups,
            preferred_username,
            role,
            normalized,
            foreign: ForeignHeaders::compile(h.strip_foreign_defaults, &h.strip_foreign_extra),
        }
    }

    /// Adds a session's identity headers (after the client's copies were stripped): the
    /// values of its sign-in under the current names; forwarded attributes under the names
    /// of its sign-in.
    pub fn insert_values(&self, headers: &mut HeaderMap, v: &IdentityHeaderValues) {
        headers.insert(self.user.clone(), v.user.clone());
        if let Some(e) = &v.email {
            headers.insert(self.email.clone(), e.clone());
        }
        if let Some(g) = &v.groups {
            headers.insert(self.groups.clone(), g.clone());
        }
        if let Some(p) = &v.preferred_username {
            headers.insert(self.preferred_username.clone(), p.clone());
        }
        if let Some(r) = &v.role {
            headers.insert(self.role.clone(), r.clone());
        }
        for (name, value) in &v.attributes {
            headers.insert(name.clone(), value.clone());
        }
    }

    /// Keeps stripping `older`'s names too (after a reload renamed a header, the upstream may
    /// still trust the old name until it is reconfigured).
    pub fn also_strip(&mut self, older: &IdentityHeaders) {
        for n in &older.normalized {
            if !self.normalized.contains(n) {
                self.normalized.push(n.clone());
            }
        }
    }

    /// Every name stripped from client requests (lower case, `-` form): the configured
    /// identity, role and attribute headers, and any a reload retired.
    pub fn stripped_names(&self) -> impl Iterator<Item = &str> {
        self.normalized.iter().map(String::as_str)
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

    /// Whether a client-sent header is another gateway's identity header
    /// ([`crate::foreign_headers`]), in any case and `_`/`-` spelling.
    pub fn is_foreign(&self, name: &HeaderName) -> bool {
        self.foreign.matches(name)
    }

    /// Exact names a forward-auth proxy should remove from the request it forwards, besides
    /// [`IdentityHeaders::stripped_names`]: the foreign names that are not one of ours, and
    /// the routing overrides (lower case, `-` form). Prefix patterns cannot be named here:
    /// the proxy examples remove those by their own means.
    pub fn removable_names(&self) -> impl Iterator<Item = &str> {
        self.foreign
            .patterns()
            .filter(|p| p.is_exact())
            .map(|p| p.normalized())
            .filter(|n| !self.normalized.iter().any(|ours| ours == n))
            .chain(ROUTING_OVERRIDE_HEADERS)
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
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

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
    // One pass over the names first: most messages carry none of these, or only
    // `Connection`, and each removal below is a hash lookup.
    if !upgrade
        && !headers
            .keys()
            .any(|n| HOP_BY_HOP.contains(n) || *n == PROXY_CONNECTION)
    {
        return;
    }
    // Names listed in `Connection` that the fixed list below does not already cover (usually
    // none: `keep-alive`, `upgrade`), so the common case allocates nothing.
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| !HOP_BY_HOP.contains(n))
        .collect();
    let upgrade_value = if upgrade {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    for name in listed.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(PROXY_CONNECTION);
    if let Some(v) = upgrade_value {
        headers.insert(header::UPGRADE, v);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// A `Cookie` value exactly as the rewrite below would rebuild it: pairs joined by `"; "`,
/// none empty, no whitespace around them.
fn is_canonical_cookie(s: &str) -> bool {
    s.split("; ")
        .all(|p| !p.is_empty() && !p.contains(';') && p.trim() == p)
}

fn cookie_name(pair: &str) -> &str {
    pair.split_once('=').map_or(pair, |(n, _)| n).trim()
}

/// Removes the gateway's own cookies from `Cookie`, joining what is left into one header
/// (HTTP/2 clients send one per cookie; HTTP/1.1 upstreams expect one).
pub fn strip_gateway_cookies(headers: &mut HeaderMap, names: &[&str]) {
    let mut all = headers.get_all(header::COOKIE).iter();
    let Some(first) = all.next() else {
        return;
    };
    // One header naming none of ours, already in the joined form: nothing to rebuild.
    if all.next().is_none() {
        if let Ok(s) = first.to_str() {
            if is_canonical_cookie(s) && !s.split(';').any(|p| names.contains(&cookie_name(p))) {
                return;
            }
        }
    }
    let mut kept = String::new();
    for v in headers.get_all(header::COOKIE) {
        let Ok(s) = v.to_str() else { continue };
        for pair in s.split(';') {
            let pair = pair.trim();
            if pair.is_empty() || names.contains(&cookie_name(pair)) {
                continue;
            }
            if !kept.is_empty() {
                kept.push_str("; ");
            }
            kept.push_str(pair);
        }
    }
    headers.remove(header::COOKIE);
    if !kept.is_empty() {
        if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(kept)) {
            headers.insert(header::COOKIE, v);
        }
    }
}

/// Removes every client copy of every identity header, ours and other gateways'.
pub fn strip_identity_headers(headers: &mut HeaderMap, ids: &IdentityHeaders) {
    strip_matching(headers, |n| ids.is_identity(n) || ids.is_foreign(n));
}

/// Removes every header `doomed` picks. Requests almost never carry one: one pass over the
/// names first, and a list is collected only when something matched.
fn strip_matching(headers: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    if !headers.keys().any(&doomed) {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().filter(|n| doomed(n)).cloned().collect();
    for n in names {
        headers.remove(n);
    }
}

/// Client headers that some upstreams take as the request's real path, method, host or
/// scheme (IIS URL Rewrite and ASP.NET, Symfony, Zend, Spring, Rack, Rails, Traefik-style
/// `X-Forwarded-*`): left in, the upstream would run another path or method than the one the
/// access rules judged, or believe another origin. Stripped in every case and `_`/`-`
/// spelling.
pub const ROUTING_OVERRIDE_HEADERS: [&str; 19] = [
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-forwarded-uri",
    "x-forwarded-path",
    "x-forwarded-prefix",
    "x-forwarded-port",
    "x-forwarded-method",
    "x-original-method",
    "x-forwarded-server",
    "x-original-host",
    "x-host",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-forwarded-ssl",
    "x-forwarded-scheme",
    "x-url-scheme",
    "front-end-https",
];

/// The forwarding headers the gateway sets itself: the `-` spelling is replaced on insert,
/// an `_` spelling (the same header to nginx, CGI, WSGI) is stripped.
const REPLACED_HEADERS: [&str; 4] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
];

/// `name` (lower case, as `HeaderName` keeps it) is `wanted` with any `-` written as `_`.
fn same_header(name: &[u8], wanted: &str) -> bool {
    name.len() == wanted.len()
        && wanted
            .bytes()
            .zip(name)
            .all(|(w, &n)| w == n || (w == b'-' && n == b'_'))
}

/// Whether a client header is a routing override ([`ROUTING_OVERRIDE_HEADERS`]) or an `_`
/// spelling of a forwarding header the gateway sets. Allocation-free; names starting with
/// neither `x-`/`x_` nor `fr` (`Front-End-Https`) are passed over after two bytes.
fn is_client_override(name: &HeaderName) -> bool {
    let n = name.as_str().as_bytes();
    if !matches!(n, [b'x', b'-' | b'_', ..] | [b'f', b'r', ..]) {
        return false;
    }
    ROUTING_OVERRIDE_HEADERS.iter().any(|w| same_header(n, w))
        || (n.contains(&b'_') && REPLACED_HEADERS.iter().any(|w| same_header(n, w)))
}

/// The client address as a header value, formatted without an intermediate `String`.
fn ip_header_value(ip: IpAddr) -> Option<HeaderValue> {
    let mut buf = [0u8; 48]; // the longest IPv6 text is 45 bytes
    let len = match ip {
        IpAddr::V4(v4) => {
            let mut n = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                if octet >= 100 {
                    buf[n] = b'0' + octet / 100;
                    n += 1;
                }
                if octet >= 10 {
                    buf[n] = b'0' + octet / 10 % 10;
                    n += 1;
                }
                buf[n] = b'0' + octet % 10;
                n += 1;
            }
            n
        }
        IpAddr::V6(v6) => {
            use std::io::Write;
            let mut rest = &mut buf[..];
            write!(rest, "{v6}").ok()?;
            48 - rest.len()
        }
    };
    HeaderValue::from_bytes(&buf[..len]).ok()
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
    // Identity headers (ours and other gateways') and routing overrides in one pass over the
    // names.
    strip_matching(headers, |n| {
        ids.is_identity(n) || is_client_override(n) || ids.is_foreign(n)
    });
    strip_gateway_cookies(headers, gateway_cookies);
    if let Some(v) = identity {
        ids.insert_values(headers, v);
    }
    // The client's own forwarding headers are not trusted: we are the edge.
    headers.remove(header::FORWARDED);
    headers.remove(X_REAL_IP);
    if let Some(v) = ip_header_value(fwd.client_ip) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(fwd.proto));
    match &fwd.host {
        Some(h) => {
            headers.insert(X_FORWARDED_HOST, h.clone());
        }
        None => {
            headers.remove(X_FORWARDED_HOST);
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
    #[error("{0} requests to the upstream over the shared pool are in flight already")]
    Busy(usize),
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

type HttpsConnector = hyper_rustls::HttpsConnector<HttpConnector>;
type UpstreamIo = hyper_rustls::MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The upstream application. Requests arriving on a downstream HTTP/1 connection use that
/// connection's own upstream connection ([`ConnSlot`]); everything else (HTTP/2 streams,
/// upgrades, a busy slot) goes through a shared keep-alive pool.
pub struct Upstream {
    client: Client<HttpsConnector, Incoming>,
    connector: HttpsConnector,
    /// `scheme://authority/`, what [`Upstream::connector`] is asked to connect to.
    origin: Uri,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    base_path: String,
    own_host: HeaderValue,
    timeout: Duration,
    pool_idle_timeout: Duration,
    upgrade_idle_timeout: Duration,
    pass_host_header: bool,
    /// Requests waiting for the upstream's response head over the shared pool
    /// (`proxy.max_pooled_requests`): HTTP/2 streams at a slow upstream could otherwise open
    /// one upstream connection each, without bound.
    pooled_slots: Arc<tokio::sync::Semaphore>,
    pooled_limit: usize,
}

/// Why the upstream client cannot be built; each names the key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// `upstream` is not a URL hyper can send requests to.
    #[error("upstream: {0}")]
    Url(String),
    /// `proxy.upstream_ca_file` holds something that is not a usable certificate.
    #[error("proxy.upstream_ca_file: {0}")]
    CaFile(String),
    /// `proxy.upstream_ca_file` holds no certificate at all.
    #[error("proxy.upstream_ca_file holds no PEM certificate")]
    NoCaCertificate,
    /// rustls refused its own safe defaults (a build problem, not a setting).
    #[error("upstream TLS: {0}")]
    Tls(String),
}

/// The gateway still reports start-up problems as text.
impl From<UpstreamError> for String {
    fn from(e: UpstreamError) -> String {
        e.to_string()
    }
}

fn client_tls(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, UpstreamError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(pem) = ca_pem {
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| UpstreamError::CaFile(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| UpstreamError::CaFile(e.to_string()))?;
            n += 1;
        }
        if n == 0 {
            return Err(UpstreamError::NoCaCertificate);
        }
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| UpstreamError::Tls(e.to_string()))
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

impl Upstream {
    pub fn new(url: &url::Url, p: &ProxySettings) -> Result<Upstream, UpstreamError> {
        let bad = |e: &dyn std::fmt::Display| UpstreamError::Url(e.to_string());
        let uri: Uri = url.as_str().parse().map_err(|e| bad(&e))?;
        let scheme = uri.scheme().cloned().ok_or_else(|| bad(&"no scheme"))?;
        let authority = uri.authority().cloned().ok_or_else(|| bad(&"no host"))?;
        let base_path = url.path().trim_end_matches('/').to_string();
        let own_host = HeaderValue::from_str(authority.as_str()).map_err(|e| bad(&e))?;
        let origin = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| bad(&e))?;

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
            .build(connector.clone());
        Ok(Upstream {
            client,
            connector,
            origin,
            scheme,
            authority,
            base_path,
            own_host,
            timeout: p.upstream_timeout,
            pool_idle_timeout: p.pool_idle_timeout,
            upgrade_idle_timeout: p.upgrade_idle_timeout,
            pass_host_header: p.pass_host_header,
            pooled_slots: Arc::new(tokio::sync::Semaphore::new(p.max_pooled_requests)),
            pooled_limit: p.max_pooled_requests,
        })
    }

    /// The upstream path: the configured base path, then the client's path and query.
    fn upstream_path(&self, original: &Uri) -> Result<PathAndQuery, ProxyError> {
        let pq = original.path_and_query().map_or("/", |pq| pq.as_str());
        let mut path = String::with_capacity(self.base_path.len() + pq.len());
        path.push_str(&self.base_path);
        path.push_str(pq);
        PathAndQuery::from_maybe_shared(Bytes::from(path))
            .map_err(|e| ProxyError::BadRequest(e.to_string()))
    }

    /// Absolute form, for the pooled client (which picks the connection by it).
    fn upstream_uri(&self, original: &Uri) -> Result<Uri, ProxyError> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(self.upstream_path(original)?);
        Uri::from_parts(parts).map_err(|e| ProxyError::BadRequest(e.to_string()))
    }

    /// Origin form (`/path?query`), what goes on the wire to an origin server. A request that
    /// already has that form and no base path to add is left as it is.
    fn set_origin_form(&self, uri: &mut Uri) -> Result<(), ProxyError> {
        if self.base_path.is_empty()
            && uri.scheme().is_none()
            && uri.authority().is_none()
            && uri.path().starts_with('/')
        {
            return Ok(());
        }
        let mut parts = http::uri::Parts::default();
        parts.path_and_query = Some(self.upstream_path(uri)?);
        *uri = Uri::from_parts(parts).map_err(|e| ProxyError::BadRequest(e.to_string()))?;
        Ok(())
    }

    /// Sends the (already rewritten) request upstream through the shared pool and streams
    /// the answer back. For an accepted upgrade, splices the two connections together in a
    /// background task.
    pub async fn forward(
        &self,
        req: Request<Incoming>,
        client_host: Option<HeaderValue>,
        upgrade: bool,
    ) -> Result<Response<Body>, ProxyError> {
        self.forward_on(req, client_host, upgrade, None).await
    }

    /// Like [`Upstream::forward`], on the downstream connection's own upstream connection
    /// when `slot` is given and the request can use it (HTTP/1.x, not an upgrade or
    /// `CONNECT`, slot not busy).
    pub async fn forward_on(
        &self,
        mut req: Request<Incoming>,
        client_host: Option<HeaderValue>,
        upgrade: bool,
        slot: Option<ConnSlot>,
    ) -> Result<Response<Body>, ProxyError> {
        let host = match (self.pass_host_header, client_host) {
            (true, Some(h)) => h,
            _ => self.own_host.clone(),
        };
        req.headers_mut().insert(header::HOST, host);
        let inline = slot
            .filter(|_| {
                !upgrade
                    && matches!(req.version(), Version::HTTP_10 | Version::HTTP_11)
                    && req.method() != Method::CONNECT
            })
            .and_then(ConnSlot::claim);
        let Some((mut claim, idle)) = inline else {
            // Boxed: rare next to the inline path, and it keeps this future small.
            return Box::pin(self.forward_pooled(req, upgrade)).await;
        };
        if let Err(e) = self.set_origin_form(req.uri_mut()) {
            claim.release(idle);
            return Err(e);
        }
        *req.version_mut() = Version::HTTP_11;

        // Bounded like the pooled path (`tokio::time::timeout`), with the slot's own timer:
        // re-arming it is an atomic update, not a timer allocation and registration.
        let now = tokio::time::Instant::now();
        let deadline = now + self.timeout;
        let mut timer = match claim.timer.take() {
            Some(mut t) => {
                t.as_mut().reset(deadline);
                t
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        let mut exchange = pin!(self.exchange(req, idle, now));
        let outcome = poll_fn(|cx| {
            if let Poll::Ready(r) = exchange.as_mut().poll(cx) {
                return Poll::Ready(r);
            }
            match timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(ProxyError::Timeout(self.timeout))),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        claim.timer = Some(timer);
        let (resp, conn) = outcome?;

        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        let body = match conn {
            // The connection ended with the response (closed, or switched protocols).
            None => {
                drop(claim);
                body.boxed()
            }
            // No body to stream (HEAD, 204, 304, empty): the exchange is over.
            Some(conn) if body.is_end_stream() => {
                let mut lease = Some(Lease { conn, claim });
                poll_fn(|cx| {
                    if let Some(lease) = lease.take() {
                        lease.finish(cx);
                    }
                    Poll::Ready(())
                })
                .await;
                body.boxed()
            }
            Some(conn) => InlineBody {
                inner: body,
                lease: Some(Lease { conn, claim }),
            }
            .boxed(),
        };
        Ok(Response::from_parts(parts, body))
    }

    async fn forward_pooled(
        &self,
        mut req: Request<Incoming>,
        upgrade: bool,
    ) -> Result<Response<Body>, ProxyError> {
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        // The client connection's slot, for the tunnel to hold (see `crate::tunnel`).
        let permit = req.extensions_mut().remove::<TunnelPermit>();
        // The session it was opened under, for the tunnel to follow (none on anonymous paths).
        let session = req.extensions_mut().remove::<TunnelSession>();
        let user = session.as_ref().map(|s| s.user.clone());
        // A slot under the cap until the response head arrives (upgrades hold their client
        // connection's slot instead: see `crate::tunnel`). Not held for the body: a client
        // that stops reading would keep it for as long as it likes, and a few could then
        // starve everyone; the head wait is bounded by `upstream_timeout`.
        let pooled_slot = if upgrade {
            None
        } else {
            let slot = self.pooled_slots.clone().try_acquire_owned();
            Some(slot.map_err(|_| ProxyError::Busy(self.pooled_limit))?)
        };
        *req.uri_mut() = self.upstream_uri(req.uri())?;
        *req.version_mut() = Version::HTTP_11;

        let mut resp = match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => return Err(ProxyError::Timeout(self.timeout)),
            Ok(Err(e)) if e.is_connect() => return Err(ProxyError::Unreachable(error_chain(&e))),
            Ok(Err(e)) => return Err(ProxyError::Failed(error_chain(&e))),
            Ok(Ok(r)) => r,
        };
        drop(pooled_slot);

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_side) = client_upgrade {
                let upstream_side = hyper::upgrade::on(&mut resp);
                let idle_limit = self.upgrade_idle_timeout;
                tokio::spawn(async move {
                    let (Ok(client_io), Ok(upstream_io)) = (client_side.await, upstream_side.await)
                    else {
                        tracing::debug!("upgrade abandoned before both sides switched");
                        return;
                    };
                    let (client_io, upstream_io) =
                        (TokioIo::new(client_io), TokioIo::new(upstream_io));
                    match tunnel::splice(client_io, upstream_io, idle_limit, permit, session).await
                    {
                        SpliceEnd::Idle => {
                            tracing::debug!(idle = ?idle_limit, "upgraded connection closed: idle")
                        }
                        SpliceEnd::SessionEnded => {
                            tracing::info!(target: "samlgate::audit", event = "tunnel_closed", reason = "the session ended", user = user.as_deref().unwrap_or("-"), "upgraded connection closed: its session ended")
                        }
                        SpliceEnd::Closed => {}
                    }
                });
                strip_hop_by_hop(resp.headers_mut(), true);
                return Ok(resp.map(|b| b.boxed()));
            }
        }
        strip_hop_by_hop(resp.headers_mut(), false);
        Ok(resp.map(|b| b.boxed()))
    }

    /// Writes the request on the kept connection (or a new one) and waits for the response
    /// head, polling the connection in this task. Returns the connection unless it ended with
    /// the response.
    async fn exchange(
        &self,
        mut req: Request<Incoming>,
        idle: Option<Box<Inline>>,
        now: tokio::time::Instant,
    ) -> Result<(Response<Incoming>, Option<Box<Inline>>), ProxyError> {
        // Unused for longer than the pool keeps idle connections: start afresh. (Counted from
        // the start of its last request, so a little early rather than late.)
        let mut idle =
            idle.filter(|c| now.saturating_duration_since(c.last_used) < self.pool_idle_timeout);
        loop {
            let reused = idle.is_some();
            let mut c = match idle.take() {
                Some(c) => c,
                None => Box::pin(self.connect_inline()).await?,
            };
            c.last_used = now;
            // Lets the connection finish the previous exchange, or notice that the upstream
            // closed it meanwhile.
            if let Err(e) = poll_fn(|cx| c.poll_usable(cx)).await {
                if reused {
                    tracing::debug!(error = %error_chain(&*e), "kept upstream connection closed; reconnecting");
                    continue;
                }
                return Err(ProxyError::Failed(error_chain(&*e)));
            }
            let mut sent = pin!(c.sender.try_send_request(req));
            let mut conn = Some(c);
            let result = poll_fn(|cx| {
                if let Poll::Ready(r) = sent.as_mut().poll(cx) {
                    return Poll::Ready(r);
                }
                let Some(c) = conn.as_mut() else {
                    return Poll::Pending;
                };
                if Pin::new(&mut c.conn).poll(cx).is_ready() {
                    // Closed, failed or switched protocols: dropping it settles `sent`.
                    conn = None;
                }
                sent.as_mut().poll(cx)
            })
            .await;
            match result {
                Ok(resp) => return Ok((resp, conn)),
                Err(mut e) => match e.take_message() {
                    // The kept connection turned out closed before the request went out:
                    // once more on a fresh one, as the pool would.
                    Some(r) if reused => {
                        tracing::debug!(error = %error_chain(e.error()), "kept upstream connection closed; reconnecting");
                        req = r;
                    }
                    _ => return Err(ProxyError::Failed(error_chain(e.error()))),
                },
            }
        }
    }

    async fn connect_inline(&self) -> Result<Box<Inline>, ProxyError> {
        use tower_service::Service;
        let mut connector = self.connector.clone();
        let io = async {
            poll_fn(|cx| connector.poll_ready(cx)).await?;
            connector.call(self.origin.clone()).await
        }
        .await
        .map_err(|e| ProxyError::Unreachable(error_chain(&*e)))?;
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| ProxyError::Failed(error_chain(&e)))?;
        Ok(Box::new(Inline {
            sender,
            conn,
            last_used: tokio::time::Instant::now(),
        }))
    }
}

// ---- per-connection upstream connections ---------------------------------------------------

/// One upstream HTTP/1.1 connection, driven by whichever task is using it: no connection
/// task of its own.
struct Inline {
    sender: http1::SendRequest<Incoming>,
    conn: http1::Connection<UpstreamIo, Incoming>,
    /// When its latest request started.
    last_used: tokio::time::Instant,
}

impl Inline {
    /// Ready for a request: polling the connection first lets it finish the previous exchange
    /// and notice an upstream that closed it meanwhile.
    fn poll_usable(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if let Poll::Ready(r) = Pin::new(&mut self.conn).poll(cx) {
            return Poll::Ready(Err(match r {
                Err(e) => e.into(),
                Ok(()) => "the upstream closed the connection".into(),
            }));
        }
        self.sender.poll_ready(cx).map_err(Into::into)
    }
}

/// The upstream connection belonging to one downstream HTTP/1 connection (created per
/// connection by the server, handed to [`crate::gateway::Gateway::handle`] with each
/// request). Requests on that connection come one at a time, so they reuse one upstream
/// connection that the task serving the downstream connection drives itself: no hand-over
/// between tasks, no pool lock. Dropped, with the connection it keeps, when the downstream connection ends;
/// the connection alone is closed when the downstream connection parks ([`ConnSlot::release_idle`]).
#[derive(Clone, Default)]
pub struct ConnSlot(Arc<Mutex<SlotInner>>);

#[derive(Default)]
struct SlotInner {
    state: SlotState,
    /// The upstream timeout's timer, re-armed for each request.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

#[derive(Default)]
enum SlotState {
    #[default]
    Empty,
    Idle(Box<Inline>),
    InUse,
}

impl ConnSlot {
    pub fn new() -> ConnSlot {
        ConnSlot::default()
    }

    /// Takes the slot for one exchange, with its idle connection if it has one; `None` when
    /// another exchange holds it.
    fn claim(self) -> Option<(Claim, Option<Box<Inline>>)> {
        let mut inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let idle = match std::mem::replace(&mut inner.state, SlotState::InUse) {
            SlotState::InUse => return None,
            SlotState::Empty => None,
            SlotState::Idle(c) => Some(c),
        };
        let timer = inner.timer.take();
        drop(inner);
        Some((
            Claim {
                slot: Some(self),
                timer,
            },
            idle,
        ))
    }

    /// Closes the idle upstream connection it keeps, if any, and drops its timer: the
    /// downstream connection has parked (`crate::connection`), and an upstream socket with
    /// its buffers would cost more than the parked client itself. Its next request connects
    /// afresh. A slot in use is left alone.
    pub fn release_idle(&self) {
        let mut inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let idle = match inner.state {
            SlotState::Idle(_) => std::mem::take(&mut inner.state),
            _ => SlotState::Empty,
        };
        let timer = inner.timer.take();
        drop(inner);
        drop((idle, timer));
    }

    /// Whether it keeps an idle connection (tests).
    pub fn has_idle_connection(&self) -> bool {
        matches!(
            self.0.lock().unwrap_or_else(PoisonError::into_inner).state,
            SlotState::Idle(_)
        )
    }
}

/// The slot, held for one exchange; frees it (empty) when dropped without [`Claim::release`].
struct Claim {
    slot: Option<ConnSlot>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Claim {
    fn release(mut self, conn: Option<Box<Inline>>) {
        self.put_back(conn);
    }

    fn put_back(&mut self, conn: Option<Box<Inline>>) {
        if let Some(slot) = self.slot.take() {
            let mut inner = slot.0.lock().unwrap_or_else(PoisonError::into_inner);
            inner.state = match conn {
                Some(c) => SlotState::Idle(c),
                None => SlotState::Empty,
            };
            if self.timer.is_some() {
                inner.timer = self.timer.take();
            }
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.put_back(None);
    }
}

/// A connection in use by one exchange, and the slot it goes back to.
struct Lease {
    conn: Box<Inline>,
    claim: Claim,
}

impl Lease {
    /// The response is complete: keep the connection for the next request if it is idle.
    fn finish(self, cx: &mut Context<'_>) {
        let Lease { mut conn, claim } = self;
        match Pin::new(&mut conn.conn).poll(cx) {
            // Closed (`Connection: close`, HTTP/1.0 upstream) or failed.
            Poll::Ready(_) => claim.release(None),
            Poll::Pending if conn.sender.is_ready() => claim.release(Some(conn)),
            Poll::Pending => {
                // Still busy, say writing a request body the upstream answered before reading
                // all of: let it finish on its own, as a pooled connection would, and use a
                // new connection next time.
                claim.release(None);
                let Inline { sender, conn, .. } = *conn;
                drop(sender);
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move {
                        let _ = conn.await;
                    });
                }
            }
        }
    }
}

/// The upstream's response body; polling it also drives the connection it arrives on, and
/// once it is complete the connection goes back to the slot.
struct InlineBody {
    inner: Incoming,
    lease: Option<Lease>,
}

impl http_body::Body for InlineBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let mut drove = false;
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if this.inner.is_end_stream() {
                        if let Some(lease) = this.lease.take() {
                            lease.finish(cx);
                        }
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(None) => {
                    if let Some(lease) = this.lease.take() {
                        lease.finish(cx);
                    }
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(e))) => {
                    this.lease = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Pending if drove => return Poll::Pending,
                Poll::Pending => {}
            }
            drove = true;
            let Some(lease) = this.lease.as_mut() else {
                return Poll::Pending;
            };
            if Pin::new(&mut lease.conn.conn).poll(cx).is_ready() {
                // Finished or failed: dropping it ends the body (with an error if cut short).
                this.lease = None;
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for InlineBody {
    fn drop(&mut self) {
        // Complete but not polled to its end (the server stops at the last byte of a known
        // length): the connection is reusable. Dropped part-way (client gone): it closes.
        if let Some(lease) = self.lease.take() {
            if self.inner.is_end_stream() {
                lease.finish(&mut Context::from_waker(Waker::noop()));
            }
        }
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
    use crate::session::Identity;

    fn ids() -> IdentityHeaders {
        IdentityHeaders::from_config(&HeadersSection::default())
    }

    /// The values a sign-in with default `[headers]` and no roles computes.
    fn render(id: &Identity) -> IdentityHeaderValues {
        let settings = crate::identity::HeaderSettings::from_config(&HeadersSection::default());
        crate::identity::render_identity_headers(id, &Default::default(), &settings).unwrap()
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
    fn routing_overrides_are_removed_in_every_spelling() {
        let mut pairs: Vec<(String, &str)> = Vec::new();
        for name in ROUTING_OVERRIDE_HEADERS {
            pairs.push((name.to_string(), "/admin"));
            pairs.push((name.to_ascii_uppercase(), "/admin"));
            pairs.push((name.replace('-', "_"), "/admin"));
            pairs.push((name.replacen('-', "_", 1), "DELETE"));
        }
        pairs.push(("X_Forwarded_Host".into(), "evil.test"));
        pairs.push(("x_real_ip".into(), "10.9.9.9"));
        pairs.push(("x-original-urls".into(), "kept"));
        pairs.push(("x-custom".into(), "kept"));
        pairs.push(("front-door-id".into(), "kept"));
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let mut h = map(&refs);
        rewrite_request_headers(&mut h, &ids(), &[], None, &fwd(), false);
        for name in ROUTING_OVERRIDE_HEADERS {
            assert!(!h.contains_key(name), "{name} survived");
            assert!(
                !h.contains_key(name.replace('-', "_")),
                "{name} (_) survived"
            );
            assert!(
                !h.contains_key(name.replacen('-', "_", 1)),
                "{name} (mixed) survived"
            );
        }
        assert!(!h.contains_key("x_forwarded_host") && !h.contains_key("x_real_ip"));
        assert_eq!(h["x-forwarded-host"], "app.example.com:8443");
        assert_eq!(h["x-original-urls"], "kept");
        assert_eq!(h["x-custom"], "kept");
        assert_eq!(h["front-door-id"], "kept");
    }

    #[test]
    fn override_matching_is_exact_up_to_dash_and_underscore() {
        let name = |s: &str| HeaderName::from_bytes(s.as_bytes()).unwrap();
        assert!(is_client_override(&name("x-http-method-override")));
        assert!(is_client_override(&name("X_HTTP_METHOD")));
        assert!(is_client_override(&name("x_forwarded_for")));
        assert!(
            !is_client_override(&name("x-forwarded-for")),
            "replaced, not stripped"
        );
        assert!(!is_client_override(&name("x-http-methods")));
        assert!(!is_client_override(&name("accept")));
        assert!(!is_client_override(&name("x")));
    }

    #[test]
    fn identity_is_injected_and_forwarding_headers_are_ours() {
        let id = Identity {
            user: "alice".into(),
            email: Some("alice@example.com".into()),
            groups: vec!["analysts".into(), "admins".into()],
            ..Identity::default()
        };
        let values = render(&id);
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
    fn foreign_identity_headers_go_and_ours_under_a_foreign_name_are_still_set() {
        // Grafana's names are in the foreign table (X-WEBAUTH-*): stripped first, then ours.
        let cfg = HeadersSection {
            user: "X-WEBAUTH-USER".into(),
            ..HeadersSection::default()
        };
        let ids = IdentityHeaders::from_config(&cfg);
        let id = Identity {
            user: "alice".into(),
            ..Identity::default()
        };
        let values = render(&id);
        let mut h = map(&[
            ("X-WEBAUTH-USER", "admin"),
            ("x_webauth_role", "Admin"),
            ("Remote-User", "admin"),
            ("X-Auth-Request-Email", "admin@evil"),
            ("X-Forwarded-User", "admin"),
            ("accept", "*/*"),
        ]);
        rewrite_request_headers(&mut h, &ids, &[], Some(&values), &fwd(), false);
        assert_eq!(h.get_all("x-webauth-user").iter().count(), 1);
        assert_eq!(h["x-webauth-user"], "alice");
        for gone in [
            "x_webauth_role",
            "remote-user",
            "x-auth-request-email",
            "x-forwarded-user",
        ] {
            assert!(!h.contains_key(gone), "{gone} survived");
        }
        assert_eq!(h["accept"], "*/*");

        // Emptied: other gateways' names pass (ours never do).
        let cfg = HeadersSection {
            strip_foreign_defaults: false,
            ..HeadersSection::default()
        };
        let ids = IdentityHeaders::from_config(&cfg);
        let mut h = map(&[("remote-user", "x"), ("x-forwarded-user", "m")]);
        strip_identity_headers(&mut h, &ids);
        assert_eq!(h["remote-user"], "x");
        assert!(!h.contains_key("x-forwarded-user"));
    }

    #[test]
    fn removable_names_are_exact_foreign_names_not_ours_and_the_routing_overrides() {
        let defaults = ids();
        let names: Vec<&str> = defaults.removable_names().collect();
        assert!(names.contains(&"remote-user") && names.contains(&"x-forwarded-login"));
        assert!(
            !names.contains(&"x-forwarded-user"),
            "ours, carried or listed apart"
        );
        assert!(
            !names.iter().any(|n| n.ends_with('-')),
            "no prefixes: {names:?}"
        );
        for r in ROUTING_OVERRIDE_HEADERS {
            assert!(names.contains(&r), "{r}");
        }
        let cfg = HeadersSection {
            user: "Remote-User".into(),
            ..HeadersSection::default()
        };
        let ids = IdentityHeaders::from_config(&cfg);
        let names: Vec<&str> = ids.removable_names().collect();
        assert!(!names.contains(&"remote-user"), "now ours");
        assert!(names.contains(&"x-forwarded-user"), "now foreign");
    }

    #[test]
    fn control_characters_are_never_forwarded() {
        let id = Identity {
            user: "alice".into(),
            email: Some("a@b\r\nX-Evil: 1".into()),
            groups: vec!["a\tb".into()],
            ..Identity::default()
        };
        let v = render(&id);
        assert!(v.email.is_none());
        assert!(v.groups.is_none());
        let bad = Identity {
            user: "al\nice".into(),
            ..Identity::default()
        };
        let settings = crate::identity::HeaderSettings::from_config(&HeadersSection::default());
        assert!(
            crate::identity::render_identity_headers(&bad, &Default::default(), &settings).is_err()
        );
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
