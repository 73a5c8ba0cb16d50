//! `[admin]`: the admin listener (`/metrics`, `/healthz`), off unless `listen` is set.

use std::net::SocketAddr;

use serde::Deserialize;

use super::files::socket_addr;
use super::ConfigError;

/// `[admin]` as written by the operator.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// Address of the admin listener, e.g. `"127.0.0.1:9090"` (`"0.0.0.0:9090"` in a container
    /// scraped by Prometheus). An IP, not a host name, and not the same port as `listen`. It serves
    /// `GET`/`HEAD` `/metrics` and `/healthz` (other methods 405), and 404 for every other path.
    /// Request headers must arrive within `server.header_read_timeout_secs`; at most 32 connections
    /// are open at once. It keeps answering while the gateway drains on shutdown and closes after
    /// it.
    pub listen: Option<String>,
}

/// `[admin]` validated.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminSettings {
    pub listen: SocketAddr,
}

/// Validates `[admin]` against the gateway's own `listen`.
pub(super) fn validate(
    section: AdminSection,
    listen: SocketAddr,
) -> Result<Option<AdminSettings>, ConfigError> {
    const KEY: &str = "admin.listen";
    let Some(raw) = section.listen else {
        return Ok(None);
    };
    let addr = socket_addr(raw.trim(), KEY, "127.0.0.1:9090")?;
    let clash = addr.port() != 0
        && addr.port() == listen.port()
        && (addr.ip() == listen.ip() || addr.ip().is_unspecified() || listen.ip().is_unspecified());
    if clash {
        return Err(ConfigError::invalid(
            KEY,
            format!("must differ from listen ({listen}): the admin endpoints get their own port"),
        ));
    }
    Ok(Some(AdminSettings { listen: addr }))
}
