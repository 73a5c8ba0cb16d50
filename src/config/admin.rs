//! `[admin]`: the admin listener (`/metrics`, `/healthz`), off unless `listen` is set.

use std::net::SocketAddr;

use serde::Deserialize;

use super::files::socket_addr;
use super::ConfigError;

/// `[admin]` as written by the operator.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// Address of the admin listener (`/metrics`, `/healthz`), e.g. `127.0.0.1:9090`; unset:
    /// no admin listener. Must not share the main listener's port.
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
