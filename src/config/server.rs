//! `[server]`: the main listener's connection limits and timeouts, the trusted proxies
//! (compiled here, once, into [`TrustedProxies`]) and the plain-HTTP redirect listener.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::client_ip::TrustedProxies;

use super::files::socket_addr;
use super::{check_at_most_a_day, ConfigError};

/// `[server]` as written by the operator.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Time allowed for a client's request headers (HTTP/1.1), for the TLS handshake, and for a new
    /// connection's first request to arrive (HTTP/1.1 or HTTP/2, counted after the handshake); a
    /// connection that sends nothing, or only part of the HTTP/2 preface, is closed then. Also how
    /// long a connection asked to close (idle, or shutdown) may take before it is dropped. A body
    /// samlgate reads itself (ACS post, sign-out form) must arrive whole within 3 × this, else 408.
    /// 1 to 86400.
    pub header_read_timeout_secs: u64,
    /// Open client connections; beyond this, new connections are closed at once. At least 1.
    pub max_connections: usize,
    /// On SIGTERM/SIGINT, how long in-flight requests may finish before the rest are cut. At most
    /// 86400.
    pub shutdown_grace_secs: u64,
    /// A client connection with no request in flight for this long after its last response is
    /// closed: HTTP/2 gets GOAWAY. A request in flight, including its response body, is never cut.
    /// Like nginx's `keepalive_timeout`. An idle HTTP/1.1 keep-alive connection is closed sooner,
    /// after `header_read_timeout_secs` without the next request's head (hyper's header timer also
    /// runs while the connection waits). After 2 s without a request an HTTP/1.1 connection is
    /// *parked*: its buffers and its upstream connection are released and it waits for the client's
    /// next byte with no buffer (these limits still apply), so idle keep-alive clients cost little
    /// memory. 1 to 86400.
    pub idle_timeout_secs: u64,
    /// Addresses (`10.0.0.7`, `::1`) and CIDRs (`10.0.0.0/8`, `fd00::/8`) of the proxies in front
    /// of samlgate (load balancer, ingress). Only when the TCP peer is listed is `X-Forwarded-For`
    /// read: samlgate walks it from the right (all header lines in order, comma-separated,
    /// `1.2.3.4:5678` and `[::1]:80` forms accepted), skips listed addresses, and takes the first
    /// unlisted one as the client address; if all are listed, the leftmost. A malformed or empty
    /// entry, or more than 64 entries or 8 KiB, stops the walk at the last listed hop, so a forged
    /// header can never pick an arbitrary address. Empty trusts nobody: the client is the TCP peer.
    /// IPv4-mapped IPv6 addresses count as IPv4. A CIDR with host bits set (`10.0.0.1/8`) and `/0`
    /// are refused. `[rate_limits]` counts per client address, and the logs show it. A listed
    /// peer's `X-Forwarded-Method` / `X-Original-Method` and `X-Forwarded-Uri` / `X-Original-URI` /
    /// `X-Original-URL` also say which request a forward-auth check is about (see
    /// [Forward-auth](forward-auth.md#forward-auth)): list only proxies that set those headers
    /// themselves. Applied on [reload](operations.md#reload).
    pub trusted_proxies: Vec<String>,
    /// A second, plain-HTTP listener (`0.0.0.0:80`). It answers `/healthz` with 200 and every other
    /// request with `308` to `public_url`'s scheme, host and port plus the request's path and
    /// query. The request's `Host` header is never used, so the listener cannot redirect anywhere
    /// else. It serves no other content and forwards nothing. One request per connection,
    /// `header_read_timeout_secs` for the request headers, and its own cap of `max_connections`
    /// open connections. Requires `[tls]` and an `https` `public_url`, and must differ from
    /// `listen`.
    pub http_redirect_listen: Option<String>,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: 10,
            max_connections: 10_000,
            shutdown_grace_secs: 30,
            idle_timeout_secs: 75,
            trusted_proxies: Vec::new(),
            http_redirect_listen: None,
        }
    }
}

/// `[server]` validated (without `trusted_proxies`, which [`super::Settings`] carries
/// compiled, apart, because a reload may change it).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
    /// How long a client connection may have no request in flight (after its first).
    pub idle_timeout: Duration,
    /// Plain-HTTP listener that redirects to `public_url` (only with TLS and an https
    /// `public_url`).
    pub http_redirect_listen: Option<SocketAddr>,
}

/// What `[server]` is checked against: the main listener and whether it serves https.
pub(super) struct Listener<'a> {
    pub listen: SocketAddr,
    pub tls: bool,
    pub public_url: &'a Url,
}

/// Validates `[server]`: the settings, and the trusted proxies compiled.
pub(super) fn validate(
    srv: ServerSection,
    main: Listener<'_>,
) -> Result<(ServerSettings, TrustedProxies), ConfigError> {
    check_at_most_a_day(&[
        (
            "server.header_read_timeout_secs",
            srv.header_read_timeout_secs,
        ),
        ("server.shutdown_grace_secs", srv.shutdown_grace_secs),
        ("server.idle_timeout_secs", srv.idle_timeout_secs),
    ])?;
    let trusted = TrustedProxies::parse(&srv.trusted_proxies, "server.trusted_proxies")?;
    for (key, v) in [
        (
            "server.header_read_timeout_secs",
            srv.header_read_timeout_secs as usize,
        ),
        ("server.idle_timeout_secs", srv.idle_timeout_secs as usize),
        ("server.max_connections", srv.max_connections),
    ] {
        if v == 0 {
            return Err(ConfigError::invalid(key, "must be at least 1"));
        }
    }
    let http_redirect_listen = srv
        .http_redirect_listen
        .as_deref()
        .map(|raw| http_redirect_listen(raw, &main))
        .transpose()?;
    let settings = ServerSettings {
        header_read_timeout: Duration::from_secs(srv.header_read_timeout_secs),
        max_connections: srv.max_connections,
        shutdown_grace: Duration::from_secs(srv.shutdown_grace_secs),
        idle_timeout: Duration::from_secs(srv.idle_timeout_secs),
        http_redirect_listen,
    };
    Ok((settings, trusted))
}

/// Validates `server.http_redirect_listen`: an address other than `listen`, and only where
/// there is an https site to send people to.
fn http_redirect_listen(raw: &str, main: &Listener<'_>) -> Result<SocketAddr, ConfigError> {
    const KEY: &str = "server.http_redirect_listen";
    let addr = socket_addr(raw, KEY, "0.0.0.0:80")?;
    if !main.tls {
        return Err(ConfigError::invalid(
            KEY,
            "needs tls.cert_file and tls.key_file: it redirects plain HTTP to samlgate's own https listener",
        ));
    }
    if main.public_url.scheme() != "https" {
        return Err(ConfigError::invalid(
            KEY,
            "needs an https public_url: the redirect target is public_url",
        ));
    }
    if addr == main.listen {
        return Err(ConfigError::invalid(KEY, "must differ from listen"));
    }
    Ok(addr)
}
