//! `[proxy]` validation: [`crate::proxy::ProxySection`] (owned by the module that forwards)
//! into [`crate::proxy::ProxySettings`].

use std::path::Path;
use std::time::Duration;

use crate::proxy::{ProxySection, ProxySettings};

use super::files::read_file;
use super::{check_at_most_a_day, ConfigError};

/// Validates `[proxy]`, reading the CA bundle relative to `base`.
pub(super) fn validate(p: ProxySection, base: &Path) -> Result<ProxySettings, ConfigError> {
    for (key, v) in [
        ("proxy.upstream_timeout_secs", p.upstream_timeout_secs),
        ("proxy.connect_timeout_secs", p.connect_timeout_secs),
        (
            "proxy.upgrade_idle_timeout_secs",
            p.upgrade_idle_timeout_secs,
        ),
        (
            "proxy.upgrade_session_check_secs",
            p.upgrade_session_check_secs,
        ),
    ] {
        if v == 0 {
            return Err(ConfigError::invalid(key, "must be at least 1 second"));
        }
    }
    // Bounded above too: the semaphore behind it takes at most `usize::MAX >> 3` permits.
    if !(1..=1_000_000).contains(&p.max_pooled_requests) {
        return Err(ConfigError::invalid(
            "proxy.max_pooled_requests",
            "must be between 1 and 1000000",
        ));
    }
    check_at_most_a_day(&[
        ("proxy.upstream_timeout_secs", p.upstream_timeout_secs),
        ("proxy.connect_timeout_secs", p.connect_timeout_secs),
        ("proxy.pool_idle_timeout_secs", p.pool_idle_timeout_secs),
        (
            "proxy.upgrade_idle_timeout_secs",
            p.upgrade_idle_timeout_secs,
        ),
        (
            "proxy.upgrade_session_check_secs",
            p.upgrade_session_check_secs,
        ),
    ])?;
    let upstream_ca_pem = p
        .upstream_ca_file
        .as_ref()
        .map(|f| read_file(base, f, "proxy.upstream_ca_file"))
        .transpose()?;
    Ok(ProxySettings {
        upstream_timeout: Duration::from_secs(p.upstream_timeout_secs),
        connect_timeout: Duration::from_secs(p.connect_timeout_secs),
        pass_host_header: p.pass_host_header,
        upstream_ca_pem,
        pool_idle_timeout: Duration::from_secs(p.pool_idle_timeout_secs),
        upgrade_idle_timeout: Duration::from_secs(p.upgrade_idle_timeout_secs),
        upgrade_session_check: Duration::from_secs(p.upgrade_session_check_secs),
        max_pooled_requests: p.max_pooled_requests,
    })
}
