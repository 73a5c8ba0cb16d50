//! Files and small values named by configuration keys: bounded file reads relative to the
//! config file's directory, and the URL, path and address forms several sections share.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use url::Url;

use crate::config_files::{FileReadError, MAX_CONFIG_FILE_BYTES};

use super::ConfigError;

/// `value`, or the error that `key` is required and what it should hold.
pub(super) fn required<T>(
    value: Option<T>,
    key: &'static str,
    what: &'static str,
) -> Result<T, ConfigError> {
    value.ok_or(ConfigError::Required { key, what })
}

/// `path` relative to the config file's directory unless absolute.
pub(super) fn resolve(base: &Path, path: PathBuf) -> PathBuf {
    crate::config_files::resolve(base, &path)
}

/// Reads the file `key` names ([`crate::config_files::read`]: relative to the config file's
/// directory, bounded).
pub(crate) fn read_file(
    base: &Path,
    path: &Path,
    key: &'static str,
) -> Result<Vec<u8>, ConfigError> {
    crate::config_files::read(base, path).map_err(|e| match e {
        FileReadError::Unreadable { path, source } => ConfigError::Unreadable { key, path, source },
        FileReadError::TooLarge { path } => ConfigError::TooLarge {
            key,
            path,
            limit_mib: MAX_CONFIG_FILE_BYTES >> 20,
        },
    })
}

/// An `http://` or `https://` URL with a host and no query or fragment.
pub(super) fn parse_http_url(raw: &str, key: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(raw)
        .map_err(|e| ConfigError::invalid(key, format!("not a URL ({e}): {raw}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::invalid(
            key,
            format!("must be an http:// or https:// URL with a host: {raw}"),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::invalid(
            key,
            "must not carry a query or fragment",
        ));
    }
    Ok(url)
}

/// An absolute local path like `/saml/acs`, without its trailing `/`.
pub(super) fn local_path(raw: &str, key: &str) -> Result<String, ConfigError> {
    if !raw.starts_with('/') || raw.starts_with("//") || raw.contains(['?', '#', '\\', ' ']) {
        return Err(ConfigError::invalid(
            key,
            format!("must be an absolute path like /saml/acs: {raw}"),
        ));
    }
    Ok(raw.trim_end_matches('/').to_string())
}

/// A socket address; `example` shows the form in the error.
pub(super) fn socket_addr(raw: &str, key: &str, example: &str) -> Result<SocketAddr, ConfigError> {
    raw.parse()
        .map_err(|_| ConfigError::invalid(key, format!("not an address like {example}: {raw}")))
}
