//! `[tls]`: the listener's certificate and key files, the lowest protocol version, and how
//! often the files are checked for a change.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::files::{read_file, resolve};
use super::ConfigError;

/// Default of `tls.min_version`.
pub const DEFAULT_TLS_MIN_VERSION: &str = "1.2";
/// Default of `tls.watch_interval_secs`.
pub const DEFAULT_TLS_WATCH_INTERVAL_SECS: u64 = 10;
/// Largest `tls.watch_interval_secs` (one day).
pub const MAX_TLS_WATCH_INTERVAL_SECS: u64 = 86_400;

/// `[tls]` as written by the operator.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// PEM certificate chain, leaf first. Both keys or neither.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the certificate's public key; a key that does
    /// not match is refused. Re-read on SIGHUP and when either file changes (see [Certificate
    /// rotation](configuration.md#certificate-rotation)). The listener offers ALPN `h2` and
    /// `http/1.1`.
    pub key_file: Option<PathBuf>,
    /// Lowest TLS version accepted: `"1.2"` offers TLS 1.2 and 1.3, `"1.3"` refuses TLS 1.2 clients
    /// during the handshake. Any other value is a config error. Needs `cert_file` and `key_file`.
    #[schemars(extend("default" = DEFAULT_TLS_MIN_VERSION))]
    pub min_version: Option<String>,
    /// How often (seconds) samlgate checks both files for a change: modification time, length and a
    /// SHA-256 of the content. `0` turns the check off and leaves SIGHUP as the only trigger. At
    /// most 86400. Needs `cert_file` and `key_file`.
    #[schemars(extend("default" = DEFAULT_TLS_WATCH_INTERVAL_SECS))]
    pub watch_interval_secs: Option<u64>,
}

/// `[tls]` validated: both files readable.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub min_version: TlsMinVersion,
    /// How often the files are checked for a change; `None`: only on SIGHUP.
    pub watch_interval: Option<Duration>,
}

/// `tls.min_version`: the lowest protocol version the listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMinVersion {
    Tls12,
    Tls13,
}

/// Validates `[tls]`: both files or neither, readable; the version floor and watch interval.
pub(super) fn validate(t: TlsSection, base: &Path) -> Result<Option<TlsFiles>, ConfigError> {
    let (cert_file, key_file) = match (t.cert_file, t.key_file) {
        (Some(c), Some(k)) => (resolve(base, c), resolve(base, k)),
        (None, None) => {
            // A version floor or watch interval without TLS files would suggest a protection
            // that is not there.
            for (set, key) in [
                (t.min_version.is_some(), "tls.min_version"),
                (t.watch_interval_secs.is_some(), "tls.watch_interval_secs"),
            ] {
                if set {
                    return Err(ConfigError::invalid(
                        key,
                        "needs tls.cert_file and tls.key_file (without them samlgate speaks plain HTTP)",
                    ));
                }
            }
            return Ok(None);
        }
        (Some(_), None) => {
            return Err(ConfigError::invalid(
                "tls.key_file",
                "is required when tls.cert_file is set",
            ))
        }
        (None, Some(_)) => {
            return Err(ConfigError::invalid(
                "tls.cert_file",
                "is required when tls.key_file is set",
            ))
        }
    };
    read_file(base, &cert_file, "tls.cert_file")?;
    read_file(base, &key_file, "tls.key_file")?;
    Ok(Some(TlsFiles {
        cert_file,
        key_file,
        min_version: min_version(t.min_version.as_deref())?,
        watch_interval: watch_interval(t.watch_interval_secs)?,
    }))
}

fn min_version(raw: Option<&str>) -> Result<TlsMinVersion, ConfigError> {
    match raw.map_or(DEFAULT_TLS_MIN_VERSION, str::trim) {
        "1.2" => Ok(TlsMinVersion::Tls12),
        "1.3" => Ok(TlsMinVersion::Tls13),
        other => Err(ConfigError::invalid(
            "tls.min_version",
            format!("must be \"1.2\" or \"1.3\": {other:?}"),
        )),
    }
}

fn watch_interval(secs: Option<u64>) -> Result<Option<Duration>, ConfigError> {
    let secs = secs.unwrap_or(DEFAULT_TLS_WATCH_INTERVAL_SECS);
    if secs > MAX_TLS_WATCH_INTERVAL_SECS {
        return Err(ConfigError::invalid(
            "tls.watch_interval_secs",
            format!("must be at most {MAX_TLS_WATCH_INTERVAL_SECS} (0 = reload on SIGHUP only)"),
        ));
    }
    Ok((secs > 0).then(|| Duration::from_secs(secs)))
}
