//! `saml.idp_metadata_url` and its companions (`idp_metadata_cache_file`,
//! `idp_metadata_refresh_secs`, `idp_metadata_signing_cert_file`, `idp_metadata_timeout_secs`),
//! validated into [`MetadataUrlSettings`] for [`crate::saml::metadata_source`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use super::files::{read_file, resolve};
use super::saml::SamlSection;
use super::ConfigError;

/// Largest metadata document fetched from `saml.idp_metadata_url`.
pub const MAX_METADATA_BYTES: usize = 1024 * 1024;

/// `saml.idp_metadata_url` and its companions, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataUrlSettings {
    pub url: Url,
    pub cache_file: PathBuf,
    /// Ceiling between refreshes (config floor 60 s; tests may set it lower on `Settings`).
    pub refresh: Duration,
    /// Delay before retrying after a failed refresh.
    pub retry: Duration,
    pub timeout: Duration,
    /// DER of the pinned metadata signing certificate.
    pub signing_cert_der: Option<Vec<u8>>,
    pub max_bytes: usize,
    /// Set at start when the URL could not be fetched and the cache file was used: the
    /// first refresh then comes after `retry`, not the full interval.
    pub started_from_cache: bool,
}

const KEY: &str = "saml.idp_metadata_url";

/// Validates `raw` (the URL) with the companion keys of `s`; files relative to `base`.
pub(super) fn validate(
    raw: &str,
    s: &SamlSection,
    base: &Path,
) -> Result<MetadataUrlSettings, ConfigError> {
    let url = fetchable_url(raw)?;
    if s.idp_metadata_refresh_secs < 60 {
        return Err(ConfigError::invalid(
            "saml.idp_metadata_refresh_secs",
            "must be at least 60",
        ));
    }
    if !(1..=300).contains(&s.idp_metadata_timeout_secs) {
        return Err(ConfigError::invalid(
            "saml.idp_metadata_timeout_secs",
            "must be between 1 and 300",
        ));
    }
    let cache_file = resolve(
        base,
        s.idp_metadata_cache_file
            .clone()
            .unwrap_or_else(|| PathBuf::from("idp-metadata.cache.xml")),
    );
    let signing_cert_der = s
        .idp_metadata_signing_cert_file
        .as_deref()
        .map(|p| signing_cert(base, p))
        .transpose()?;
    Ok(MetadataUrlSettings {
        url,
        cache_file,
        refresh: Duration::from_secs(s.idp_metadata_refresh_secs),
        retry: Duration::from_secs(60),
        timeout: Duration::from_secs(s.idp_metadata_timeout_secs),
        signing_cert_der,
        max_bytes: MAX_METADATA_BYTES,
        started_from_cache: false,
    })
}

/// https, or http to a loopback host (a local test IdP): metadata carries the keys every
/// signature is checked with, so it is never fetched in the clear over a network.
fn fetchable_url(raw: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(raw)
        .map_err(|e| ConfigError::invalid(KEY, format!("not a URL ({e}): {raw}")))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(ConfigError::invalid(
            KEY,
            format!("must be an https:// URL (http:// only for a loopback host): {raw}"),
        )),
    }
}

/// The pinned signer's certificate as DER (the file may hold PEM or DER).
fn signing_cert(base: &Path, path: &Path) -> Result<Vec<u8>, ConfigError> {
    const CKEY: &str = "saml.idp_metadata_signing_cert_file";
    let bytes = read_file(base, path, CKEY)?;
    openssl::x509::X509::from_pem(&bytes)
        .or_else(|_| openssl::x509::X509::from_der(&bytes))
        .and_then(|c| c.to_der())
        .map_err(|_| ConfigError::invalid(CKEY, "is not a PEM or DER X.509 certificate"))
}
