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
    /// The IdP's metadata XML (UTF-8): an `EntityDescriptor`, or an `EntitiesDescriptor` aggregate.
    /// It must have an `IDPSSODescriptor` with an HTTP-Redirect `SingleSignOnService` and at least
    /// one signing certificate: a `KeyDescriptor use="signing"`, or one with no `use`. Several
    /// certificates are all accepted, which allows key rollover. The file is read once at start.
    /// Required.
    pub idp_metadata_file: Option<PathBuf>,
    /// Instead of `idp_metadata_file` (set exactly one): fetch the IdP metadata from this URL at
    /// start and refresh it in the background (see [IdP metadata from a
    /// URL](configuration.md#idp-metadata-from-a-url)). `https://`; `http://` only for a loopback
    /// host.
    pub idp_metadata_url: Option<String>,
    /// With `idp_metadata_url`: the last good copy, written atomically after every accepted fetch
    /// and used when the URL cannot be fetched at start. Must be writable. Unset:
    /// `idp-metadata.cache.xml` next to the config.
    pub idp_metadata_cache_file: Option<PathBuf>,
    /// With `idp_metadata_url`: the longest time between refreshes (at least 60); a shorter
    /// `cacheDuration` or an approaching `validUntil` in the metadata refreshes sooner. A failed
    /// refresh is retried after 60 s.
    pub idp_metadata_refresh_secs: u64,
    /// With `idp_metadata_url`: a pinned certificate (PEM or DER). The metadata must then carry
    /// exactly one enveloped XML signature on its root element (referencing the root's `ID`) that
    /// verifies with this certificate; anything else is refused.
    pub idp_metadata_signing_cert_file: Option<PathBuf>,
    /// With `idp_metadata_url`: connect + download limit per fetch (1–300). Documents over 1 MB are
    /// refused.
    pub idp_metadata_timeout_secs: u64,
    /// Which IdP to use when the metadata file holds several (required then).
    pub idp_entity_id: Option<String>,
    /// Our entity ID: the IdP's Audience for us must equal it. Must not be empty. Unset:
    /// `public_url` + `path_prefix` + `/metadata`.
    pub sp_entity_id: Option<String>,
    /// Where the IdP POSTs. An absolute path with no `//` at the start, `?`, `#`, `\` or space; a
    /// trailing `/` is removed. It may lie outside `path_prefix` (`"/saml-post"`).
    pub acs_path: String,
    /// Prefix of `login`, `metadata` and `logout`. Same rules as `acs_path`; must not be `/`. Every
    /// other path under it returns 404.
    pub path_prefix: String,
    /// SP private key: unencrypted PEM (PKCS#8 or PKCS#1), RSA of 2048 to 8192 bits, checked at
    /// start. It decrypts `EncryptedAssertion` and `EncryptedID`: key transport rsa-oaep-mgf1p
    /// (OAEP digest SHA-1, or SHA-256/384/512 named by a `DigestMethod`), content
    /// aes128/192/256-cbc or aes128/192/256-gcm. Behind an unsigned Response the ciphertext is
    /// unauthenticated until the decrypted assertion's signature verifies, and every failure before
    /// that is reported as the one `decryption` error so that a modified CBC ciphertext answers no
    /// padding or parsing questions; an IdP that signs the Response (enforce it with
    /// `require_signed_response = true`) or encrypts with AES-GCM removes the concern. With
    /// `sign_authn_requests = true` it also signs AuthnRequests.
    pub sp_key_file: Option<PathBuf>,
    /// SP certificate (PEM). Requires `sp_key_file` and must match it. Published in the SP metadata
    /// for signing and for encryption, with the algorithms samlgate decrypts (AES-GCM first), so an
    /// IdP may then encrypt assertions to it (AD FS does whenever it can).
    pub sp_cert_file: Option<PathBuf>,
    /// NameID format URI to request (`NameIDPolicy Format=…`) and advertise (`NameIDFormat`), e.g.
    /// `urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress`. Unset: the IdP chooses.
    pub name_id_format: Option<String>,
    /// Also accept rsa-sha1 signatures and sha1 digests. Otherwise only RSA/ECDSA with SHA-256,
    /// SHA-384 or SHA-512 are accepted.
    pub allow_sha1: bool,
    /// Require a signature on the `Response` element.
    pub require_signed_response: bool,
    /// Require a signature on the `Assertion` element. The metadata advertises
    /// `WantAssertionsSigned` with this value. With `false`, the Response or the Assertion must
    /// still be signed: an unsigned message is never accepted. An encrypted assertion is checked
    /// after decryption: with `true` it must carry its own valid signature even when a signed
    /// Response covers the ciphertext; with `false` that Response signature suffices. Encryption
    /// alone never counts, as anyone can encrypt to the SP certificate.
    pub require_signed_assertion: bool,
    /// Refuse plaintext assertions (`encryption_required`): only an `EncryptedAssertion` is
    /// accepted. Needs `sp_key_file` and `sp_cert_file`. This keeps assertions out of browsers and
    /// logs in clear; signatures are checked either way.
    pub require_encryption: bool,
    /// Also accept rsa-1_5 (PKCS#1 v1.5) key transport, which is open to Bleichenbacher-style
    /// attacks. Only for an IdP that cannot do rsa-oaep-mgf1p.
    pub allow_rsa1_5: bool,
    /// Tolerance for NotBefore and NotOnOrAfter. At most 600.
    pub clock_skew_secs: u64,
    /// Largest decoded SAMLResponse, 4096 to 4194304. The ACS POST body may be at most 2 × this +
    /// 8192 bytes (413 `body_too_large`).
    pub max_response_bytes: usize,
    /// How long a started sign-in may take at the IdP (password, MFA), 30 to 3600. This is the
    /// pending login's lifetime and the login cookie's `Max-Age`.
    pub login_timeout_secs: u64,
    /// Signature verifications running at once on the blocking pool; `0` means the number of CPUs.
    /// A sign-in that waits more than 10 s for a slot gets 503 `busy`.
    pub max_concurrent_verifications: usize,
    /// Sign AuthnRequests with `sp_key_file` (required then): HTTP-Redirect binding signature,
    /// `SigAlg` rsa-sha256, `Signature` over the query octets `SAMLRequest=…&RelayState=…&SigAlg=…`
    /// (SAML bindings §3.4.4.1). The SP metadata then says `AuthnRequestsSigned="true"`; give the
    /// IdP `sp_cert_file` (it is in the metadata) to verify with. Needed by IdPs that refuse
    /// unsigned requests (SimpleSAMLphp `validate.authnrequest`, Shibboleth, AD FS with signing
    /// required).
    pub sign_authn_requests: bool,
    /// Send `ForceAuthn="true"`: the IdP must authenticate the person afresh instead of reusing its
    /// session.
    pub force_authn: bool,
    /// Send `IsPassive="true"`: the IdP must not show any page; without an IdP session it answers
    /// with an error status (`idp_status`). Cannot be combined with `force_authn`.
    pub is_passive: bool,
    /// Request this authentication context (`RequestedAuthnContext Comparison="exact"`), e.g.
    /// `urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract` or your IdP's MFA class,
    /// and require it: an assertion whose `AuthnStatement/AuthnContext/AuthnContextClassRef`
    /// differs is refused (`authn_context`, 403).
    pub authn_context_class_ref: Option<String>,
    /// Accept unsolicited (IdP-initiated) responses: ones with no RelayState matching a pending
    /// sign-in and no `InResponseTo` anywhere. They get every other check (signature, Audience,
    /// Recipient, Destination, times, replay cache), and the assertion's IssueInstant must be at
    /// most 90 s + `clock_skew_secs` old. A response with an `InResponseTo` but no matching pending
    /// sign-in is still refused (`no_pending_login`). Off by default: anyone holding a valid
    /// unsolicited response for a user can sign a victim's browser in as that user (login CSRF).
    pub allow_idp_initiated: bool,
    /// Where an IdP-initiated sign-in lands. A RelayState that is a local path (same rules as
    /// `?rd=`) is honoured instead; anything else (a URL, `//host`) lands here. Must itself be a
    /// local path.
    pub idp_initiated_default_path: String,
    /// Refuse LogoutRequests at `/saml/slo` without a valid signature by one of the IdP's signing
    /// certificates: the Redirect-binding query signature (rsa-sha256) on GET, an enveloped XML
    /// signature on POST. A signature that is present must verify even when this is off. Turning it
    /// off lets anyone who knows a user's NameID sign that user out everywhere.
    pub require_signed_logout_requests: bool,
    /// More Issuer names accepted on logout messages from the IdP (LogoutRequest and
    /// LogoutResponse, never on sign-in responses), besides its entity ID and the derived Entra ID
    /// name (see [Single Logout issuers](configuration.md#single-logout-issuers)). Each must be a
    /// non-empty URI without spaces, at most 1024 characters. Signatures are still checked against
    /// the IdP metadata's certificates.
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
