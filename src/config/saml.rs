//! `[saml]`: the IdP's metadata (a file, or a URL with its cache and pinned signer), the SP's
//! entity ID, paths and key pair, and the protocol options. Validated into [`SamlSettings`];
//! the metadata URL's keys are checked in [`super::metadata_url`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::files::{local_path, read_file, required, resolve};
use super::metadata_url::{self, MetadataUrlSettings};
use super::ConfigError;

/// `[saml]` as written by the operator.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SamlSection {
    /// The IdP's metadata XML (`EntityDescriptor`, or an `EntitiesDescriptor` with
    /// `idp_entity_id`). Exactly one of this and `idp_metadata_url` is required.
    pub idp_metadata_file: Option<PathBuf>,
    /// Fetch the IdP metadata from this URL (https; http only for loopback) and refresh it.
    pub idp_metadata_url: Option<String>,
    /// Last good copy of the fetched metadata (unset: `idp-metadata.cache.xml` next to the
    /// config file); used when the URL cannot be fetched at start. Only with `idp_metadata_url`.
    pub idp_metadata_cache_file: Option<PathBuf>,
    /// Longest time between metadata refreshes, at least 60 (cacheDuration / validUntil may
    /// shorten it).
    pub idp_metadata_refresh_secs: u64,
    /// Pinned certificate (PEM or DER): fetched metadata must carry a valid enveloped
    /// signature by it. Only with `idp_metadata_url`.
    pub idp_metadata_signing_cert_file: Option<PathBuf>,
    /// Seconds a metadata fetch may take (1 to 300).
    pub idp_metadata_timeout_secs: u64,
    /// Which entity to use when the metadata file is an `EntitiesDescriptor` with several IdPs.
    pub idp_entity_id: Option<String>,
    /// The SP's entity ID (unset: `{public_url}{path_prefix}/metadata`).
    pub sp_entity_id: Option<String>,
    /// Where the IdP posts responses (the ACS); may lie outside `path_prefix`.
    pub acs_path: String,
    /// Prefix of the gateway's own endpoints (`/login`, `/logout`, `/metadata`, `/slo`,
    /// `/auth`); not `/`.
    pub path_prefix: String,
    /// The SP's private key (PEM, unencrypted): decrypts assertions and signs AuthnRequests
    /// and logout messages.
    pub sp_key_file: Option<PathBuf>,
    /// The SP's certificate (PEM), published in the SP metadata; needs `sp_key_file`, whose
    /// key it must match.
    pub sp_cert_file: Option<PathBuf>,
    /// `NameIDPolicy Format` requested in AuthnRequests (unset: none requested).
    pub name_id_format: Option<String>,
    /// Accept SHA-1 signatures and digests (legacy IdPs only).
    pub allow_sha1: bool,
    /// Require a signature on the `Response` element.
    pub require_signed_response: bool,
    /// Require a signature on the `Assertion` element.
    pub require_signed_assertion: bool,
    /// Refuse plaintext assertions: only `EncryptedAssertion` is accepted (needs the SP key).
    pub require_encryption: bool,
    /// Accept `rsa-1_5` key transport in an `EncryptedKey` (Bleichenbacher-prone; off).
    pub allow_rsa1_5: bool,
    /// Tolerance for the IdP's clock in the time checks, at most 600.
    pub clock_skew_secs: u64,
    /// Largest SAMLResponse accepted, in bytes after base64 decoding (4096 to 4194304).
    pub max_response_bytes: usize,
    /// How long a started sign-in may take at the IdP (password page, MFA) before it expires
    /// (30 to 3600).
    pub login_timeout_secs: u64,
    /// Concurrent signature verifications on the blocking pool (0 = number of CPUs).
    pub max_concurrent_verifications: usize,
    /// Sign AuthnRequests (HTTP-Redirect binding, rsa-sha256) with `sp_key_file`.
    pub sign_authn_requests: bool,
    /// `ForceAuthn="true"` on AuthnRequests: the IdP must re-authenticate the person.
    pub force_authn: bool,
    /// `IsPassive="true"` on AuthnRequests: the IdP must not interact with the person (not
    /// with `force_authn`).
    pub is_passive: bool,
    /// Requested (exact) and required `AuthnContextClassRef`, e.g. a multi-factor class.
    pub authn_context_class_ref: Option<String>,
    /// Accept unsolicited (IdP-initiated) responses. Off: login CSRF exposure.
    pub allow_idp_initiated: bool,
    /// Where an IdP-initiated sign-in lands without a usable RelayState (a local path).
    pub idp_initiated_default_path: String,
    /// Refuse IdP-initiated LogoutRequests (`GET /saml/slo`) without a valid Redirect-binding
    /// signature by one of the IdP's signing certificates.
    pub require_signed_logout_requests: bool,
    /// Issuers accepted on logout messages besides the IdP's entity ID (for an IdP that
    /// signs its logout messages under another name of itself).
    pub extra_logout_issuers: Vec<String>,
}

impl Default for SamlSection {
    fn default() -> Self {
        Self {
            idp_metadata_file: None,
            idp_metadata_url: None,
            idp_metadata_cache_file: None,
            idp_metadata_refresh_secs: 3600,
            idp_metadata_signing_cert_file: None,
            idp_metadata_timeout_secs: 10,
            idp_entity_id: None,
            sp_entity_id: None,
            acs_path: "/saml/acs".into(),
            path_prefix: "/saml".into(),
            sp_key_file: None,
            sp_cert_file: None,
            name_id_format: None,
            allow_sha1: false,
            require_signed_response: false,
            require_signed_assertion: true,
            require_encryption: false,
            allow_rsa1_5: false,
            clock_skew_secs: 90,
            max_response_bytes: 256 * 1024,
            login_timeout_secs: 15 * 60,
            max_concurrent_verifications: 0,
            sign_authn_requests: false,
            force_authn: false,
            is_passive: false,
            authn_context_class_ref: None,
            allow_idp_initiated: false,
            idp_initiated_default_path: "/".into(),
            require_signed_logout_requests: true,
            extra_logout_issuers: Vec::new(),
        }
    }
}

/// `[saml]` validated: files read, paths checked, defaults derived from `public_url`.
#[derive(Clone, PartialEq)]
pub struct SamlSettings {
    /// The metadata text. With `idp_metadata_url` this is empty after validation and filled
    /// by [`crate::saml::metadata_source::load_initial`] (fetch, else the cache file).
    pub idp_metadata_xml: String,
    /// The metadata file, or with `idp_metadata_url` the cache file.
    pub idp_metadata_file: PathBuf,
    /// Set when the metadata comes from a URL (`saml.idp_metadata_url`).
    pub idp_metadata_url: Option<MetadataUrlSettings>,
    pub idp_entity_id: Option<String>,
    pub sp_entity_id: String,
    pub acs_url: String,
    pub acs_path: String,
    pub path_prefix: String,
    pub sp_key_pem: Option<Vec<u8>>,
    pub sp_cert_pem: Option<String>,
    pub name_id_format: Option<String>,
    pub allow_sha1: bool,
    pub require_signed_response: bool,
    pub require_signed_assertion: bool,
    pub require_encryption: bool,
    pub allow_rsa1_5: bool,
    pub clock_skew: Duration,
    pub max_response_bytes: usize,
    pub login_timeout: Duration,
    pub max_concurrent_verifications: usize,
    pub sign_authn_requests: bool,
    pub force_authn: bool,
    pub is_passive: bool,
    pub authn_context_class_ref: Option<String>,
    pub allow_idp_initiated: bool,
    pub idp_initiated_default_path: String,
    pub require_signed_logout_requests: bool,
    /// `saml.extra_logout_issuers`: more names the IdP's logout messages may carry as Issuer.
    pub extra_logout_issuers: Vec<String>,
}

impl std::fmt::Debug for SamlSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamlSettings")
            .field("idp_metadata_file", &self.idp_metadata_file)
            .field("sp_entity_id", &self.sp_entity_id)
            .field("acs_url", &self.acs_url)
            .field("sp_key", &self.sp_key_pem.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// The SP's endpoints under `public_url`.
struct SpPaths {
    prefix: String,
    acs_path: String,
    acs_url: String,
    sp_entity_id: String,
}

/// Where the metadata comes from: the file's path and text, or the URL (the path is then
/// the cache file and the text is filled at start).
struct MetadataSource {
    file: PathBuf,
    xml: String,
    url: Option<MetadataUrlSettings>,
}

/// The SP key (PEM) and certificate (PEM text), checked to belong together.
struct SpKeyPair {
    key_pem: Option<Vec<u8>>,
    cert_pem: Option<String>,
}

/// Validates `[saml]`; `public_base` is `public_url` without its trailing `/`.
pub(super) fn validate(
    s: SamlSection,
    public_base: &str,
    base: &Path,
) -> Result<SamlSettings, ConfigError> {
    let paths = sp_paths(&s, public_base)?;
    let metadata = metadata_source(&s, base)?;
    let keys = sp_key_pair(&s, base)?;
    check_options(&s, &keys)?;
    check_bounds(&s)?;
    let authn_context_class_ref = authn_context_class_ref(s.authn_context_class_ref)?;
    let max_concurrent_verifications = match s.max_concurrent_verifications {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    Ok(SamlSettings {
        idp_metadata_xml: metadata.xml,
        idp_metadata_file: metadata.file,
        idp_metadata_url: metadata.url,
        idp_entity_id: s.idp_entity_id,
        sp_entity_id: paths.sp_entity_id,
        acs_url: paths.acs_url,
        acs_path: paths.acs_path,
        path_prefix: paths.prefix,
        sp_key_pem: keys.key_pem,
        sp_cert_pem: keys.cert_pem,
        name_id_format: s.name_id_format,
        allow_sha1: s.allow_sha1,
        require_signed_response: s.require_signed_response,
        require_signed_assertion: s.require_signed_assertion,
        require_encryption: s.require_encryption,
        allow_rsa1_5: s.allow_rsa1_5,
        clock_skew: Duration::from_secs(s.clock_skew_secs),
        max_response_bytes: s.max_response_bytes,
        login_timeout: Duration::from_secs(s.login_timeout_secs),
        max_concurrent_verifications,
        sign_authn_requests: s.sign_authn_requests,
        force_authn: s.force_authn,
        is_passive: s.is_passive,
        authn_context_class_ref,
        allow_idp_initiated: s.allow_idp_initiated,
        idp_initiated_default_path: s.idp_initiated_default_path,
        require_signed_logout_requests: s.require_signed_logout_requests,
        extra_logout_issuers: s.extra_logout_issuers,
    })
}

fn sp_paths(s: &SamlSection, public_base: &str) -> Result<SpPaths, ConfigError> {
    let prefix = local_path(&s.path_prefix, "saml.path_prefix")?;
    if prefix.is_empty() {
        return Err(ConfigError::invalid(
            "saml.path_prefix",
            "must not be `/`: the gateway's endpoints need their own prefix",
        ));
    }
    let acs_path = local_path(&s.acs_path, "saml.acs_path")?;
    if acs_path.is_empty() {
        return Err(ConfigError::invalid("saml.acs_path", "must not be `/`"));
    }
    let sp_entity_id = s
        .sp_entity_id
        .clone()
        .unwrap_or_else(|| format!("{public_base}{prefix}/metadata"));
    if sp_entity_id.trim().is_empty() {
        return Err(ConfigError::invalid(
            "saml.sp_entity_id",
            "must not be empty",
        ));
    }
    Ok(SpPaths {
        acs_url: format!("{public_base}{acs_path}"),
        prefix,
        acs_path,
        sp_entity_id,
    })
}

fn metadata_source(s: &SamlSection, base: &Path) -> Result<MetadataSource, ConfigError> {
    match (&s.idp_metadata_file, &s.idp_metadata_url) {
        (Some(_), Some(_)) => Err(ConfigError::invalid(
            "saml.idp_metadata_url",
            "cannot be combined with saml.idp_metadata_file: set exactly one",
        )),
        (None, Some(raw)) => {
            let md = metadata_url::validate(raw, s, base)?;
            Ok(MetadataSource {
                file: md.cache_file.clone(),
                xml: String::new(),
                url: Some(md),
            })
        }
        (md_path, None) => {
            let md_path = required(
                md_path.clone(),
                "saml.idp_metadata_file",
                "the IdP's metadata XML (EntityDescriptor) downloaded from the IdP, or saml.idp_metadata_url",
            )?;
            for (set, key) in [
                (
                    s.idp_metadata_cache_file.is_some(),
                    "saml.idp_metadata_cache_file",
                ),
                (
                    s.idp_metadata_signing_cert_file.is_some(),
                    "saml.idp_metadata_signing_cert_file",
                ),
            ] {
                if set {
                    return Err(ConfigError::invalid(key, "needs saml.idp_metadata_url"));
                }
            }
            let file = resolve(base, md_path);
            let bytes = read_file(base, &file, "saml.idp_metadata_file")?;
            let xml = String::from_utf8(bytes)
                .map_err(|_| ConfigError::invalid("saml.idp_metadata_file", "is not UTF-8 text"))?;
            Ok(MetadataSource {
                file,
                xml,
                url: None,
            })
        }
    }
}

/// The key decrypts EncryptedAssertion/EncryptedID; the certificate is published for
/// encryption, so it must come with the key that opens what the IdP encrypts to it.
fn sp_key_pair(s: &SamlSection, base: &Path) -> Result<SpKeyPair, ConfigError> {
    let key_pem = s
        .sp_key_file
        .as_ref()
        .map(|p| read_file(base, p, "saml.sp_key_file"))
        .transpose()?;
    let cert_pem = s
        .sp_cert_file
        .as_ref()
        .map(|p| read_file(base, p, "saml.sp_cert_file"))
        .transpose()?
        .map(|b| {
            String::from_utf8(b)
                .map_err(|_| ConfigError::invalid("saml.sp_cert_file", "is not PEM text"))
        })
        .transpose()?;
    if let Some(pem) = &key_pem {
        let key = crate::saml::decrypt::DecryptionKey::from_pem(pem)
            .map_err(|e| ConfigError::invalid("saml.sp_key_file", e.to_string()))?;
        if let Some(cert) = &cert_pem {
            key.matches_certificate(cert.as_bytes())
                .map_err(|e| ConfigError::invalid("saml.sp_cert_file", e.to_string()))?;
        }
    } else if cert_pem.is_some() {
        return Err(ConfigError::invalid(
            "saml.sp_key_file",
            "is required when saml.sp_cert_file is set: the certificate is published for encryption and only this key can decrypt",
        ));
    }
    Ok(SpKeyPair { key_pem, cert_pem })
}

/// Options that need the SP key, or exclude each other, or name things.
fn check_options(s: &SamlSection, keys: &SpKeyPair) -> Result<(), ConfigError> {
    if s.require_encryption && keys.key_pem.is_none() {
        return Err(ConfigError::invalid(
            "saml.require_encryption",
            "needs saml.sp_key_file and saml.sp_cert_file (the IdP encrypts to that certificate)",
        ));
    }
    if s.sign_authn_requests && keys.key_pem.is_none() {
        return Err(ConfigError::invalid(
            "saml.sign_authn_requests",
            "needs saml.sp_key_file (and saml.sp_cert_file, published for the IdP to verify with)",
        ));
    }
    if let Some(bad) = s.extra_logout_issuers.iter().find(|i| {
        i.is_empty() || i.len() > 1024 || i.chars().any(|c| c.is_whitespace() || c.is_control())
    }) {
        return Err(ConfigError::invalid(
            "saml.extra_logout_issuers",
            format!(
                "{:?} is not an issuer name: each must be a non-empty URI without spaces, at most 1024 characters",
                crate::saml::error::clip(bad)
            ),
        ));
    }
    if s.force_authn && s.is_passive {
        return Err(ConfigError::invalid(
            "saml.is_passive",
            "cannot be combined with saml.force_authn (the IdP could never satisfy both)",
        ));
    }
    if crate::redirect::safe_return_path(&s.idp_initiated_default_path).is_none() {
        return Err(ConfigError::invalid(
            "saml.idp_initiated_default_path",
            "must be a local path on this site, like /",
        ));
    }
    Ok(())
}

fn authn_context_class_ref(raw: Option<String>) -> Result<Option<String>, ConfigError> {
    match raw {
        Some(c) if c.trim().is_empty() || c.trim() != c || c.chars().any(char::is_control) => {
            Err(ConfigError::invalid(
                "saml.authn_context_class_ref",
                "must be a URI such as urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract (no surrounding spaces)",
            ))
        }
        other => Ok(other),
    }
}

/// The numeric keys' ranges.
fn check_bounds(s: &SamlSection) -> Result<(), ConfigError> {
    if s.clock_skew_secs > 600 {
        return Err(ConfigError::invalid(
            "saml.clock_skew_secs",
            "must be at most 600 (10 minutes); fix the clocks instead",
        ));
    }
    if !(4096..=4 * 1024 * 1024).contains(&s.max_response_bytes) {
        return Err(ConfigError::invalid(
            "saml.max_response_bytes",
            "must be between 4096 and 4194304",
        ));
    }
    if !(30..=3600).contains(&s.login_timeout_secs) {
        return Err(ConfigError::invalid(
            "saml.login_timeout_secs",
            "must be between 30 and 3600",
        ));
    }
    Ok(())
}
