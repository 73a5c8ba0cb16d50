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
    /// Seconds a client has to send a request head (and to finish the TLS handshake); also
    /// bounds an idle HTTP/1 keep-alive connection. 1 to 86400.
    pub header_read_timeout_secs: u64,
    /// Client connections open at once (at least 1); beyond it new ones are closed at once.
    pub max_connections: usize,
    /// Seconds open connections get to finish on SIGTERM before the process exits.
    pub shutdown_grace_secs: u64,
    /// Seconds a client connection may sit with no request in flight before it is closed
    /// (1 to 86400).
    pub idle_timeout_secs: u64,
    /// Addresses / CIDRs whose `X-Forwarded-*` headers count (empty: trust nobody). Host bits
    /// and `/0` are refused; reloadable.
    pub trusted_proxies: Vec<String>,
    /// A plain-HTTP address whose every request is redirected (308) to `public_url` (needs
    /// `[tls]` and an https `public_url`).
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
