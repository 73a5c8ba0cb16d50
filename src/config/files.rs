//! Files and small values named by configuration keys: bounded file reads relative to the
//! config file's directory, and the URL, path and address forms several sections share.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use url::Url;

use super::ConfigError;

/// The largest file a configuration key may name (IdP metadata of big federations runs to a few
/// MiB; keys, certificates and secrets are kilobytes).
pub(super) const MAX_CONFIG_FILE_BYTES: u64 = 64 << 20;

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
    if path.is_absolute() {
        path
    } else {
        base.join(path)
    }
}

/// Reads the file `key` names, at most [`MAX_CONFIG_FILE_BYTES`]: a path naming /dev/zero or
/// a FIFO must give an error, not fill memory.
pub(super) fn read_file(
    base: &Path,
    path: &Path,
    key: &'static str,
) -> Result<Vec<u8>, ConfigError> {
    let full = resolve(base, path.to_path_buf());
    let cannot = |source: std::io::Error| ConfigError::Unreadable {
        key,
        path: full.clone(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(&full)
        .map_err(cannot)?
        .take(MAX_CONFIG_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_CONFIG_FILE_BYTES {
        return Err(ConfigError::TooLarge {
            key,
            path: full,
            limit_mib: MAX_CONFIG_FILE_BYTES >> 20,
        });
    }
    Ok(bytes)
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
