//! Configuration: one TOML file plus `SAMLGATE_*` environment overrides, validated once at
//! start into a [`Settings`] value the rest of the gateway trusts without re-checking.
//!
//! This module owns the names users type (TOML keys, environment variables) and every error
//! message about them; it reads files (secrets, metadata) but opens no sockets.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::client_ip::TrustedProxies;
use crate::password::{PasswordSettings, PasswordSigninSection};
use crate::ratelimit::RateLimitSection;
use crate::rules::{AccessRules, AccessSection};

/// A configuration problem, naming the key and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("config error at `{key}`: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The file as written by the operator. Every field has a default except the few that
/// cannot be guessed (`upstream`, `public_url`, `saml.idp_metadata_file`, the cookie secret).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// Address to bind, e.g. `0.0.0.0:8443`.
    pub listen: Option<String>,
    /// The URL browsers use to reach the gateway (scheme, host, port). ACS URL and entity ID
    /// derive from it, so it must be right behind TLS terminators and ingresses.
    pub public_url: Option<String>,
    /// The application behind the gateway, e.g. `http://127.0.0.1:6273`.
    pub upstream: Option<String>,
    pub tls: TlsSection,
    pub saml: SamlSection,
    pub session: SessionSection,
    pub headers: HeadersSection,
    pub authz: AuthzSection,
    pub proxy: ProxySection,
    pub server: ServerSection,
    pub log: LogSection,
    pub forward_auth: ForwardAuthSection,
    pub admin: AdminSection,
    /// `[access]`: per-path rules ([`crate::rules`]).
    pub access: AccessSection,
    pub rate_limits: RateLimitSection,
    /// `[state]`: where sessions and sign-in state live ([`crate::state`]).
    pub state: crate::state::StateSection,
    /// `[password_signin]`: LDAP and local accounts as a fallback ([`crate::password`]).
    pub password_signin: PasswordSigninSection,
    /// `[[roles]]`: role names mapped from groups or users, first match wins
    /// ([`crate::identity::roles`]).
    pub roles: Vec<crate::identity::RoleRule>,
    /// `[scim]`: the SCIM 2.0 endpoint ([`crate::scim::settings`]).
    pub scim: crate::scim::settings::ScimSection,
    /// `[admin_api]`: the admin API's tokens ([`crate::admin::AdminApiSection`]).
    pub admin_api: crate::admin::AdminApiSection,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Lowest TLS version offered: `"1.2"` (default) or `"1.3"`.
    pub min_version: Option<String>,
    /// Seconds between checks of the two files for a change (default 10); 0 = SIGHUP only.
    pub watch_interval_secs: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamlSection {
    pub idp_metadata_file: Option<PathBuf>,
    /// Fetch the IdP metadata from this URL (https; http only for loopback) and refresh it.
    pub idp_metadata_url: Option<String>,
    /// Last good copy of the fetched metadata (default `idp-metadata.cache.xml` next to the
    /// config file); used when the URL cannot be fetched at start.
    pub idp_metadata_cache_file: Option<PathBuf>,
    /// Longest time between metadata refreshes (cacheDuration / validUntil may shorten it).
    pub idp_metadata_refresh_secs: u64,
    /// Pinned certificate (PEM or DER): fetched metadata must carry a valid enveloped
    /// signature by it.
    pub idp_metadata_signing_cert_file: Option<PathBuf>,
    pub idp_metadata_timeout_secs: u64,
    /// Which entity to use when the metadata file is an `EntitiesDescriptor` with several IdPs.
    pub idp_entity_id: Option<String>,
    pub sp_entity_id: Option<String>,
    pub acs_path: String,
    pub path_prefix: String,
    pub sp_key_file: Option<PathBuf>,
    pub sp_cert_file: Option<PathBuf>,
    pub name_id_format: Option<String>,
    pub allow_sha1: bool,
    pub require_signed_response: bool,
    pub require_signed_assertion: bool,
    /// Refuse plaintext assertions: only `EncryptedAssertion` is accepted (needs the SP key).
    pub require_encryption: bool,
    /// Accept `rsa-1_5` key transport in an `EncryptedKey` (Bleichenbacher-prone; off).
    pub allow_rsa1_5: bool,
    pub clock_skew_secs: u64,
    pub max_response_bytes: usize,
    /// How long a started sign-in may take at the IdP (password page, MFA) before it expires.
    pub login_timeout_secs: u64,
    /// Concurrent signature verifications on the blocking pool (0 = number of CPUs).
    pub max_concurrent_verifications: usize,
    /// Sign AuthnRequests (HTTP-Redirect binding, rsa-sha256) with `sp_key_file`.
    pub sign_authn_requests: bool,
    /// `ForceAuthn="true"` on AuthnRequests: the IdP must re-authenticate the person.
    pub force_authn: bool,
    /// `IsPassive="true"` on AuthnRequests: the IdP must not interact with the person.
    pub is_passive: bool,
    /// Requested (exact) and required `AuthnContextClassRef`, e.g. a multi-factor class.
    pub authn_context_class_ref: Option<String>,
    /// Accept unsolicited (IdP-initiated) responses. Off: login CSRF exposure.
    pub allow_idp_initiated: bool,
    /// Where an IdP-initiated sign-in lands without a usable RelayState.
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSection {
    /// Unset: `samlgate_session`, with `__Host-` in front where that prefix holds
    /// ([`crate::session::cookie::effective_name`]).
    pub cookie_name: Option<String>,
    /// Unset: `samlgate_login`, with `__Host-` in front over https without a cookie domain.
    pub login_cookie_name: Option<String>,
    pub cookie_domain: Option<String>,
    pub cookie_path: String,
    /// File holding at least 32 bytes of secret used to sign cookies.
    pub cookie_secret_file: Option<PathBuf>,
    pub idle_timeout_secs: u64,
    pub max_lifetime_secs: u64,
    pub max_sessions: u64,
}

impl Default for SessionSection {
    fn default() -> Self {
        Self {
            cookie_name: None,
            login_cookie_name: None,
            cookie_domain: None,
            cookie_path: "/".into(),
            cookie_secret_file: None,
            idle_timeout_secs: 60 * 60,
            max_lifetime_secs: 12 * 60 * 60,
            max_sessions: 100_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeadersSection {
    pub user: String,
    pub email: String,
    pub groups: String,
    pub preferred_username: String,
    /// Attribute holding the user id; empty means the NameID.
    pub user_attribute: String,
    pub email_attribute: String,
    pub display_name_attribute: String,
    pub groups_attribute: String,
    pub preferred_username_attribute: String,
    pub groups_separator: String,
    /// Strip client copies of the identity headers other gateways use
    /// ([`crate::foreign_headers::FOREIGN_IDENTITY_HEADERS`]); `false` strips only the extra list.
    pub strip_foreign_defaults: bool,
    /// More names (`X-Corp-User`) or prefixes (`X-Corp-*`) stripped from client requests.
    pub strip_foreign_extra: Vec<String>,
    /// How values reach the application: `"rfc2047"` (default), `"quoted-printable"`
    /// (Grafana's `headers_encoded`), `"percent"`, `"refuse"` or `"raw"`
    /// ([`crate::identity::encoding`]).
    pub encoding: crate::identity::HeaderEncoding,
    /// Header carrying the role `[[roles]]` maps (default `X-Forwarded-Role`); sent only when
    /// `[[roles]]` or `authz.default_role` is set, always stripped from client requests.
    pub role: String,
    /// SAML attributes forwarded as headers: attribute Name (or FriendlyName) → header name,
    /// e.g. `{ department = "X-Forwarded-Department" }` (default: none). Values are encoded
    /// like the others; several values are joined like groups.
    pub attributes: BTreeMap<String, String>,
}

impl Default for HeadersSection {
    fn default() -> Self {
        Self {
            user: "X-Forwarded-User".into(),
            email: "X-Forwarded-Email".into(),
            groups: "X-Forwarded-Groups".into(),
            preferred_username: "X-Forwarded-Preferred-Username".into(),
            user_attribute: String::new(),
            email_attribute: "mail".into(),
            display_name_attribute: "displayName".into(),
            groups_attribute: "groups".into(),
            preferred_username_attribute: "displayName".into(),
            groups_separator: ",".into(),
            strip_foreign_defaults: true,
            strip_foreign_extra: Vec::new(),
            encoding: crate::identity::HeaderEncoding::default(),
            role: "X-Forwarded-Role".into(),
            attributes: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthzSection {
    pub allowed_groups: Vec<String>,
    pub allowed_users: Vec<String>,
    /// Roles (`[[roles]]`) admitted besides the users and groups above (default: none).
    pub allowed_roles: Vec<String>,
    /// The role of someone no `[[roles]]` entry matches (default: none, so no role).
    pub default_role: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySection {
    /// Seconds to wait for the upstream's response headers before answering 504.
    pub upstream_timeout_secs: u64,
    pub connect_timeout_secs: u64,
    /// Send the client's `Host` upstream (true) or the upstream's own host (false).
    pub pass_host_header: bool,
    /// Extra CA bundle (PEM) trusted for https upstreams, besides the system roots.
    pub upstream_ca_file: Option<PathBuf>,
    pub pool_idle_timeout_secs: u64,
    /// Seconds an upgraded (WebSocket) tunnel may move no byte either way before it is closed.
    pub upgrade_idle_timeout_secs: u64,
    /// Seconds between an open tunnel's checks that its session still exists: after sign-out,
    /// Single Logout or expiry the tunnel closes within this.
    pub upgrade_session_check_secs: u64,
    /// Requests waiting at once for upstream response heads over the shared pool (HTTP/2
    /// streams); beyond it 503.
    pub max_pooled_requests: usize,
}

impl Default for ProxySection {
    fn default() -> Self {
        Self {
            upstream_timeout_secs: 60,
            connect_timeout_secs: 5,
            pass_host_header: true,
            upstream_ca_file: None,
            pool_idle_timeout_secs: 90,
            upgrade_idle_timeout_secs: 600,
            upgrade_session_check_secs: 10,
            max_pooled_requests: 4096,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    pub header_read_timeout_secs: u64,
    pub max_connections: usize,
    pub shutdown_grace_secs: u64,
    /// Seconds a client connection may sit with no request in flight before it is closed.
    pub idle_timeout_secs: u64,
    /// Addresses / CIDRs whose `X-Forwarded-*` headers count (default: none).
    pub trusted_proxies: Vec<String>,
    /// A plain-HTTP address whose every request is redirected (308) to `public_url`.
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

/// `{path_prefix}/auth`: the check endpoint for nginx `auth_request`, Traefik `forwardAuth`
/// and Envoy `ext_authz`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardAuthSection {
    /// Whether the endpoint answers at all (404 when off).
    pub enabled: bool,
    /// Answer a browser navigation without a session with the 302 to the IdP (what Traefik
    /// users expect) instead of 401 (what nginx `auth_request` needs).
    pub redirect_browsers: bool,
}

impl Default for ForwardAuthSection {
    fn default() -> Self {
        Self {
            enabled: true,
            redirect_browsers: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `human` or `json`.
    pub format: String,
    /// A tracing filter such as `info` or `samlgate=debug`.
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: "human".into(),
            level: "info".into(),
        }
    }
}

/// The admin listener (`/metrics`, `/healthz`); off unless `listen` is set.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// Address to bind, e.g. `127.0.0.1:9090`.
    pub listen: Option<String>,
}

/// Validated settings: every path read, every URL parsed, every bound checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub listen: SocketAddr,
    pub public_url: Url,
    pub upstream: Url,
    pub tls: Option<TlsFiles>,
    pub saml: SamlSettings,
    pub session: SessionSettings,
    pub headers: HeadersSection,
    pub authz: AuthzSection,
    pub proxy: ProxySettings,
    pub server: ServerSettings,
    pub log: LogSection,
    pub forward_auth: ForwardAuthSection,
    /// The admin listener, when `[admin] listen` is set.
    pub admin: Option<AdminSettings>,
    /// Checked by [`AccessRules::compile`]; compiled again into the gateway's policy.
    pub access: AccessSection,
    pub rate_limits: RateLimitSection,
    /// `[state]`, files read ([`crate::state::StateSection::validate`]).
    pub state: crate::state::StateSettings,
    /// `[password_signin]`, validated with its files read; `None` when off.
    pub password_signin: Option<PasswordSettings>,
    /// `server.trusted_proxies`, checked by [`TrustedProxies::parse`].
    pub trusted_proxies: Vec<String>,
    /// `[[roles]]`, checked by [`crate::identity::validate`].
    pub roles: Vec<crate::identity::RoleRule>,
    /// `[scim]`, when enabled.
    pub scim: Option<crate::scim::settings::ScimSettings>,
    /// The admin API's tokens (empty: the API is off).
    pub admin_api_tokens: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdminSettings {
    pub listen: SocketAddr,
}

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

/// Largest value of the duration keys in `[server]` and `[proxy]` (one day).
const MAX_CONNECTION_TIMEOUT_SECS: u64 = 86_400;

/// Default of `tls.watch_interval_secs`.
pub const DEFAULT_TLS_WATCH_INTERVAL_SECS: u64 = 10;
/// Largest `tls.watch_interval_secs` (one day).
pub const MAX_TLS_WATCH_INTERVAL_SECS: u64 = 86_400;

#[derive(Clone, PartialEq)]
pub struct SamlSettings {
    /// The metadata text. With `idp_metadata_url` this is empty after [`validate`] and filled
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

/// `saml.idp_metadata_url` and its companions, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataUrlSettings {
    pub url: Url,
    pub cache_file: PathBuf,
    /// Ceiling between refreshes (config floor 60 s; tests may set it lower on [`Settings`]).
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

/// Largest metadata document fetched from `saml.idp_metadata_url`.
pub const MAX_METADATA_BYTES: usize = 1024 * 1024;

#[derive(Clone, PartialEq)]
pub struct SessionSettings {
    /// The effective names (defaults resolved, see [`SessionSection`]): every lookup, strip
    /// and `Set-Cookie` uses these.
    pub cookie_name: String,
    pub login_cookie_name: String,
    pub cookie_domain: Option<String>,
    pub cookie_path: String,
    pub cookie_secret: Vec<u8>,
    pub idle_timeout: Duration,
    pub max_lifetime: Duration,
    pub max_sessions: u64,
    /// Derived from the public URL's scheme.
    pub secure: bool,
}

impl std::fmt::Debug for SessionSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSettings")
            .field("cookie_name", &self.cookie_name)
            .field("cookie_secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProxySettings {
    pub upstream_timeout: Duration,
    pub connect_timeout: Duration,
    pub pass_host_header: bool,
    pub upstream_ca_pem: Option<Vec<u8>>,
    pub pool_idle_timeout: Duration,
    pub upgrade_idle_timeout: Duration,
    pub upgrade_session_check: Duration,
    pub max_pooled_requests: usize,
}

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

/// The environment keys `SAMLGATE_<SECTION>_<KEY>` may override, and whether each is a list
/// (comma-separated in the environment).
const SECTIONS: &[&str] = &[
    "tls",
    "saml",
    "session",
    "headers",
    "authz",
    "proxy",
    "server",
    "log",
    "admin",
    "forward_auth",
    "access",
    "rate_limits",
    "state",
];
const LIST_KEYS: &[&str] = &[
    "allowed_groups",
    "allowed_users",
    "allowed_roles",
    "trusted_proxies",
    "strip_foreign_extra",
];

/// Reads and validates the config file with environment overrides applied.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new("--config", format!("cannot read {}: {e}", path.display()))
    })?;
    let env: Vec<(String, String)> = std::env::vars().collect();
    let file = parse_with_env(&text, &env)?;
    let base = path.parent().unwrap_or(Path::new("."));
    validate(file, base)
}

/// Environment variables that are not config keys (the binary reads them itself).
const NOT_OVERRIDES: &[&str] = &["SAMLGATE_CONFIG"];

/// Parses TOML text and applies `SAMLGATE_*` overrides from `env` (pure; no I/O).
pub fn parse_with_env(text: &str, env: &[(String, String)]) -> Result<FileConfig, ConfigError> {
    let mut root: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        ConfigError::new("(file)", e.to_string().trim().replace('\n', " "))
    })?;
    let mut from_env: Vec<(String, String, String)> = Vec::new(); // (dotted key, var, raw)
    for (name, value) in env {
        let Some(key) = name.strip_prefix("SAMLGATE_") else {
            continue;
        };
        if NOT_OVERRIDES.contains(&name.as_str()) {
            continue;
        }
        let dotted = apply_env_override(&mut root, &key.to_ascii_lowercase(), value)
            .map_err(|message| ConfigError::new(name.clone(), message))?;
        from_env.push((dotted, name.clone(), value.clone()));
    }
    // An environment value that looks like a number or boolean may be meant as a string
    // (a cookie name "123"): retry such keys as strings before reporting a type error.
    for _ in 0..=from_env.len() {
        match serde_path_to_error::deserialize::<_, FileConfig>(toml::Value::Table(root.clone())) {
            Ok(file) => return Ok(file),
            Err(e) => {
                let path = e.path().to_string();
                let message = e.inner().message().to_string();
                let retry = from_env.iter().find(|(dotted, _, _)| {
                    *dotted == path
                        && message.starts_with("invalid type")
                        && !message.starts_with("invalid type: string")
                });
                match retry {
                    Some((dotted, _, raw)) => {
                        set_dotted(&mut root, dotted, toml::Value::String(raw.clone()))
                    }
                    None => {
                        let key = match unknown_field(&message) {
                            Some(field) if path == "." || path.is_empty() => field,
                            _ => path,
                        };
                        let var = from_env
                            .iter()
                            .find(|(d, _, _)| *d == key)
                            .map(|(_, v, _)| v.clone());
                        return Err(ConfigError::new(var.unwrap_or(key), message));
                    }
                }
            }
        }
    }
    Err(ConfigError::new(
        "(environment)",
        "conflicting SAMLGATE_* overrides",
    ))
}

fn unknown_field(message: &str) -> Option<String> {
    // serde: "unknown field `foo`, expected ..."
    message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
        .map(str::to_string)
}

fn set_dotted(root: &mut toml::Table, dotted: &str, value: toml::Value) {
    match dotted.split_once('.') {
        Some((section, field)) => {
            if let Some(t) = root.get_mut(section).and_then(|v| v.as_table_mut()) {
                t.insert(field.to_string(), value);
            }
        }
        None => {
            root.insert(dotted.to_string(), value);
        }
    }
}

/// Applies one override; returns the dotted key it set (`saml.clock_skew_secs`).
fn apply_env_override(root: &mut toml::Table, key: &str, raw: &str) -> Result<String, String> {
    let section_of = SECTIONS
        .iter()
        .find(|s| key.strip_prefix(**s).is_some_and(|r| r.starts_with('_')))
        .copied();
    let (table, field) = match SECTIONS.iter().find_map(|s| {
        key.strip_prefix(s)
            .and_then(|r| r.strip_prefix('_'))
            .map(|f| (*s, f))
    }) {
        Some((section, field)) => {
            let entry = root
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let table = entry
                .as_table_mut()
                .ok_or_else(|| format!("`{section}` in the file is not a table"))?;
            (table, field)
        }
        None => (root, key),
    };
    let value = if LIST_KEYS.contains(&field) {
        toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        )
    } else if let Ok(b) = raw.parse::<bool>() {
        toml::Value::Boolean(b)
    } else if let Ok(i) = raw.parse::<i64>() {
        toml::Value::Integer(i)
    } else {
        toml::Value::String(raw.to_string())
    };
    table.insert(field.to_string(), value);
    Ok(match section_of {
        Some(section) => format!("{section}.{field}"),
        None => field.to_string(),
    })
}

fn required<T>(value: Option<T>, key: &str, what: &str) -> Result<T, ConfigError> {
    value.ok_or_else(|| ConfigError::new(key, format!("is required: {what}")))
}

pub(crate) fn read_file(base: &Path, path: &Path, key: &str) -> Result<Vec<u8>, ConfigError> {
    let full = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    };
    let cannot =
        |e: std::io::Error| ConfigError::new(key, format!("cannot read {}: {e}", full.display()));
    // Bounded: a key, certificate, secret or metadata file is kilobytes; a path naming
    // /dev/zero or a FIFO must give an error, not fill memory.
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(&full)
        .map_err(cannot)?
        .take(MAX_CONFIG_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_CONFIG_FILE_BYTES {
        return Err(ConfigError::new(
            key,
            format!(
                "{} is larger than {} MiB",
                full.display(),
                MAX_CONFIG_FILE_BYTES >> 20
            ),
        ));
    }
    Ok(bytes)
}

/// The largest file a configuration key may name (IdP metadata of big federations runs to a few
/// MiB; keys, certificates and secrets are kilobytes).
const MAX_CONFIG_FILE_BYTES: u64 = 64 << 20;

pub(crate) fn resolve(base: &Path, path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        path
    } else {
        base.join(path)
    }
}

fn parse_http_url(raw: &str, key: &str) -> Result<Url, ConfigError> {
    let url =
        Url::parse(raw).map_err(|e| ConfigError::new(key, format!("not a URL ({e}): {raw}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::new(
            key,
            format!("must be an http:// or https:// URL with a host: {raw}"),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::new(key, "must not carry a query or fragment"));
    }
    Ok(url)
}

/// Validates `saml.idp_metadata_url` and its companions.
fn metadata_url_settings(
    raw: &str,
    cache_file: Option<PathBuf>,
    refresh_secs: u64,
    signing_cert_file: Option<PathBuf>,
    timeout_secs: u64,
    base: &Path,
) -> Result<MetadataUrlSettings, ConfigError> {
    const KEY: &str = "saml.idp_metadata_url";
    let url =
        Url::parse(raw).map_err(|e| ConfigError::new(KEY, format!("not a URL ({e}): {raw}")))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match url.scheme() {
        "https" if url.host().is_some() => {}
        "http" if loopback => {}
        _ => {
            return Err(ConfigError::new(
                KEY,
                format!("must be an https:// URL (http:// only for a loopback host): {raw}"),
            ))
        }
    }
    if refresh_secs < 60 {
        return Err(ConfigError::new(
            "saml.idp_metadata_refresh_secs",
            "must be at least 60",
        ));
    }
    if !(1..=300).contains(&timeout_secs) {
        return Err(ConfigError::new(
            "saml.idp_metadata_timeout_secs",
            "must be between 1 and 300",
        ));
    }
    let cache_file = resolve(
        base,
        cache_file.unwrap_or_else(|| PathBuf::from("idp-metadata.cache.xml")),
    );
    let signing_cert_der = signing_cert_file
        .map(|p| {
            const CKEY: &str = "saml.idp_metadata_signing_cert_file";
            let bytes = read_file(base, &p, CKEY)?;
            openssl::x509::X509::from_pem(&bytes)
                .or_else(|_| openssl::x509::X509::from_der(&bytes))
                .and_then(|c| c.to_der())
                .map_err(|_| ConfigError::new(CKEY, "is not a PEM or DER X.509 certificate"))
        })
        .transpose()?;
    Ok(MetadataUrlSettings {
        url,
        cache_file,
        refresh: Duration::from_secs(refresh_secs),
        retry: Duration::from_secs(60),
        timeout: Duration::from_secs(timeout_secs),
        signing_cert_der,
        max_bytes: MAX_METADATA_BYTES,
        started_from_cache: false,
    })
}

fn local_path(raw: &str, key: &str) -> Result<String, ConfigError> {
    if !raw.starts_with('/') || raw.starts_with("//") || raw.contains(['?', '#', '\\', ' ']) {
        return Err(ConfigError::new(
            key,
            format!("must be an absolute path like /saml/acs: {raw}"),
        ));
    }
    Ok(raw.trim_end_matches('/').to_string())
}

/// Headers the gateway or HTTP itself owns: an identity header by one of these names would be
/// stripped from every request (or clash with framing, cookies or forwarding).
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "cookie",
    "set-cookie",
    "authorization",
    "proxy-authorization",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
];

/// Most entries `headers.strip_foreign_extra` may hold (each is compared with client headers).
const MAX_STRIP_FOREIGN_EXTRA: usize = 256;

/// Validates `headers.strip_foreign_extra`: names or `Prefix-*` patterns that strip nothing HTTP
/// or the application needs (`Cookie`, `Content-Type`, …).
fn strip_foreign_extra(list: &[String]) -> Result<(), ConfigError> {
    const KEY: &str = "headers.strip_foreign_extra";
    if list.len() > MAX_STRIP_FOREIGN_EXTRA {
        return Err(ConfigError::new(
            KEY,
            format!(
                "holds {} entries; at most {MAX_STRIP_FOREIGN_EXTRA}",
                list.len()
            ),
        ));
    }
    for raw in list {
        let p = crate::foreign_headers::ForeignPattern::parse(raw)
            .map_err(|m| ConfigError::new(KEY, m))?;
        let stem = p.normalized();
        let hit = RESERVED_HEADERS.iter().find(|r| {
            if p.is_exact() {
                **r == stem
            } else {
                r.starts_with(stem)
            }
        });
        if let Some(r) = hit {
            return Err(ConfigError::new(
                KEY,
                format!("{raw:?} would strip {r}, which HTTP or the gateway itself uses"),
            ));
        }
    }
    Ok(())
}

pub(crate) fn header_name(raw: &str, key: &str) -> Result<(), ConfigError> {
    let name = http::HeaderName::from_bytes(raw.as_bytes())
        .map_err(|_| ConfigError::new(key, format!("not a valid HTTP header name: {raw:?}")))?;
    let normalized = crate::proxy::normalize_header_name(name.as_str());
    if RESERVED_HEADERS.contains(&normalized.as_str()) {
        return Err(ConfigError::new(
            key,
            format!("{raw:?} is a header HTTP or the gateway already uses; pick a name of its own"),
        ));
    }
    Ok(())
}

/// Validates `[tls]`: both files or neither, readable; the version floor and watch interval.
fn tls_files(t: TlsSection, base: &Path) -> Result<Option<TlsFiles>, ConfigError> {
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
                    return Err(ConfigError::new(
                        key,
                        "needs tls.cert_file and tls.key_file (without them samlgate speaks plain HTTP)",
                    ));
                }
            }
            return Ok(None);
        }
        (Some(_), None) => {
            return Err(ConfigError::new(
                "tls.key_file",
                "is required when tls.cert_file is set",
            ))
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(
                "tls.cert_file",
                "is required when tls.key_file is set",
            ))
        }
    };
    read_file(base, &cert_file, "tls.cert_file")?;
    read_file(base, &key_file, "tls.key_file")?;
    let min_version = match t.min_version.as_deref().map(str::trim) {
        None | Some("1.2") => TlsMinVersion::Tls12,
        Some("1.3") => TlsMinVersion::Tls13,
        Some(other) => {
            return Err(ConfigError::new(
                "tls.min_version",
                format!("must be \"1.2\" or \"1.3\": {other:?}"),
            ))
        }
    };
    let watch_secs = t
        .watch_interval_secs
        .unwrap_or(DEFAULT_TLS_WATCH_INTERVAL_SECS);
    if watch_secs > MAX_TLS_WATCH_INTERVAL_SECS {
        return Err(ConfigError::new(
            "tls.watch_interval_secs",
            format!("must be at most {MAX_TLS_WATCH_INTERVAL_SECS} (0 = reload on SIGHUP only)"),
        ));
    }
    Ok(Some(TlsFiles {
        cert_file,
        key_file,
        min_version,
        watch_interval: (watch_secs > 0).then(|| Duration::from_secs(watch_secs)),
    }))
}

/// Validates `server.http_redirect_listen`: an address other than `listen`, and only where
/// there is an https site to send people to.
fn http_redirect_listen(
    raw: &str,
    listen: SocketAddr,
    tls: bool,
    public_url: &Url,
) -> Result<SocketAddr, ConfigError> {
    const KEY: &str = "server.http_redirect_listen";
    let addr: SocketAddr = raw
        .parse()
        .map_err(|_| ConfigError::new(KEY, format!("not an address like 0.0.0.0:80: {raw}")))?;
    if !tls {
        return Err(ConfigError::new(
            KEY,
            "needs tls.cert_file and tls.key_file: it redirects plain HTTP to samlgate's own https listener",
        ));
    }
    if public_url.scheme() != "https" {
        return Err(ConfigError::new(
            KEY,
            "needs an https public_url: the redirect target is public_url",
        ));
    }
    if addr == listen {
        return Err(ConfigError::new(KEY, "must differ from listen"));
    }
    Ok(addr)
}

/// Turns the operator's file into [`Settings`], reading secrets relative to `base`.
/// The session and login cookies' effective names: explicit ones as typed (checked against
/// the browsers' `__Host-`/`__Secure-` rules), defaults with `__Host-` where it holds.
fn cookie_names(
    sess: &SessionSection,
    cookie_path: &str,
    secure: bool,
) -> Result<(String, String), ConfigError> {
    use crate::session::cookie::{effective_name, prefix_problem, CookieScope};
    let domain = sess.cookie_domain.as_deref();
    let session_scope = CookieScope {
        secure,
        domain,
        path: cookie_path,
    };
    // The login cookie is always set on `/` (the ACS may lie outside the session's path).
    let login_scope = CookieScope {
        path: "/",
        ..session_scope
    };
    let mut names = Vec::with_capacity(2);
    for (key, explicit, base, scope) in [
        (
            "session.cookie_name",
            &sess.cookie_name,
            "samlgate_session",
            session_scope,
        ),
        (
            "session.login_cookie_name",
            &sess.login_cookie_name,
            "samlgate_login",
            login_scope,
        ),
    ] {
        let name = effective_name(explicit.as_deref(), base, scope);
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ConfigError::new(key, "must be letters, digits, `_` or `-`"));
        }
        if let Some(problem) = prefix_problem(&name, scope) {
            return Err(ConfigError::new(key, problem));
        }
        names.push(name);
    }
    let login = names.pop().unwrap_or_default();
    let session = names.pop().unwrap_or_default();
    if session == login {
        return Err(ConfigError::new(
            "session.login_cookie_name",
            "must differ from session.cookie_name",
        ));
    }
    Ok((session, login))
}

pub fn validate(file: FileConfig, base: &Path) -> Result<Settings, ConfigError> {
    let listen_raw = file.listen.unwrap_or_else(|| "127.0.0.1:8080".to_string());
    let listen: SocketAddr = listen_raw.parse().map_err(|_| {
        ConfigError::new(
            "listen",
            format!("not an address like 0.0.0.0:8443: {listen_raw}"),
        )
    })?;

    let public_raw = required(
        file.public_url,
        "public_url",
        "the URL browsers use to reach samlgate, e.g. https://app.example.com",
    )?;
    let public_url = parse_http_url(&public_raw, "public_url")?;
    if public_url.path() != "/" {
        // Routing, cookies and redirects are all rooted at `/`; a path here would only
        // change the ACS URL the IdP posts to, and that URL would then not be served.
        return Err(ConfigError::new(
            "public_url",
            "must not carry a path (serve samlgate at the root of its host)",
        ));
    }
    let upstream_raw = required(
        file.upstream,
        "upstream",
        "the application to protect, e.g. http://127.0.0.1:6273",
    )?;
    let upstream = parse_http_url(&upstream_raw, "upstream")?;

    let tls = tls_files(file.tls, base)?;

    let s = file.saml;
    let prefix = local_path(&s.path_prefix, "saml.path_prefix")?;
    if prefix.is_empty() {
        return Err(ConfigError::new(
            "saml.path_prefix",
            "must not be `/`: the gateway's endpoints need their own prefix",
        ));
    }
    let acs_path = local_path(&s.acs_path, "saml.acs_path")?;
    if acs_path.is_empty() {
        return Err(ConfigError::new("saml.acs_path", "must not be `/`"));
    }
    let public_base = public_raw.trim_end_matches('/').to_string();
    let acs_url = format!("{public_base}{acs_path}");
    let sp_entity_id = s
        .sp_entity_id
        .unwrap_or_else(|| format!("{public_base}{prefix}/metadata"));
    if sp_entity_id.trim().is_empty() {
        return Err(ConfigError::new("saml.sp_entity_id", "must not be empty"));
    }
    let (idp_metadata_file, idp_metadata_xml, idp_metadata_url) = match (
        s.idp_metadata_file,
        s.idp_metadata_url,
    ) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "saml.idp_metadata_url",
                "cannot be combined with saml.idp_metadata_file: set exactly one",
            ))
        }
        (None, Some(raw)) => {
            let md = metadata_url_settings(
                &raw,
                s.idp_metadata_cache_file,
                s.idp_metadata_refresh_secs,
                s.idp_metadata_signing_cert_file,
                s.idp_metadata_timeout_secs,
                base,
            )?;
            (md.cache_file.clone(), String::new(), Some(md))
        }
        (md_path, None) => {
            let md_path = required(
                    md_path,
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
                    return Err(ConfigError::new(key, "needs saml.idp_metadata_url"));
                }
            }
            let idp_metadata_file = resolve(base, md_path);
            let md_bytes = read_file(base, &idp_metadata_file, "saml.idp_metadata_file")?;
            let idp_metadata_xml = String::from_utf8(md_bytes)
                .map_err(|_| ConfigError::new("saml.idp_metadata_file", "is not UTF-8 text"))?;
            (idp_metadata_file, idp_metadata_xml, None)
        }
    };
    let sp_key_pem = s
        .sp_key_file
        .map(|p| read_file(base, &p, "saml.sp_key_file"))
        .transpose()?;
    let sp_cert_pem = s
        .sp_cert_file
        .map(|p| read_file(base, &p, "saml.sp_cert_file"))
        .transpose()?
        .map(|b| {
            String::from_utf8(b)
                .map_err(|_| ConfigError::new("saml.sp_cert_file", "is not PEM text"))
        })
        .transpose()?;
    // The key decrypts EncryptedAssertion/EncryptedID; the certificate is published for
    // encryption, so it must come with the key that opens what the IdP encrypts to it.
    if let Some(pem) = &sp_key_pem {
        let key = crate::saml::decrypt::DecryptionKey::from_pem(pem)
            .map_err(|m| ConfigError::new("saml.sp_key_file", m))?;
        if let Some(cert) = &sp_cert_pem {
            key.matches_certificate(cert.as_bytes())
                .map_err(|m| ConfigError::new("saml.sp_cert_file", m))?;
        }
    } else if sp_cert_pem.is_some() {
        return Err(ConfigError::new(
            "saml.sp_key_file",
            "is required when saml.sp_cert_file is set: the certificate is published for encryption and only this key can decrypt",
        ));
    }
    if s.require_encryption && sp_key_pem.is_none() {
        return Err(ConfigError::new(
            "saml.require_encryption",
            "needs saml.sp_key_file and saml.sp_cert_file (the IdP encrypts to that certificate)",
        ));
    }
    if s.sign_authn_requests && sp_key_pem.is_none() {
        return Err(ConfigError::new(
            "saml.sign_authn_requests",
            "needs saml.sp_key_file (and saml.sp_cert_file, published for the IdP to verify with)",
        ));
    }
    let authn_context_class_ref = match s.authn_context_class_ref {
        Some(c) if c.trim().is_empty() || c.trim() != c || c.chars().any(char::is_control) => {
            return Err(ConfigError::new(
                "saml.authn_context_class_ref",
                "must be a URI such as urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract (no surrounding spaces)",
            ))
        }
        other => other,
    };
    if let Some(bad) = s.extra_logout_issuers.iter().find(|i| {
        i.is_empty() || i.len() > 1024 || i.chars().any(|c| c.is_whitespace() || c.is_control())
    }) {
        return Err(ConfigError::new(
            "saml.extra_logout_issuers",
            format!(
                "{:?} is not an issuer name: each must be a non-empty URI without spaces, at most 1024 characters",
                crate::saml::error::clip(bad)
            ),
        ));
    }
    if s.force_authn && s.is_passive {
        return Err(ConfigError::new(
            "saml.is_passive",
            "cannot be combined with saml.force_authn (the IdP could never satisfy both)",
        ));
    }
    if crate::redirect::safe_return_path(&s.idp_initiated_default_path).is_none() {
        return Err(ConfigError::new(
            "saml.idp_initiated_default_path",
            "must be a local path on this site, like /",
        ));
    }
    if s.clock_skew_secs > 600 {
        return Err(ConfigError::new(
            "saml.clock_skew_secs",
            "must be at most 600 (10 minutes); fix the clocks instead",
        ));
    }
    if !(4096..=4 * 1024 * 1024).contains(&s.max_response_bytes) {
        return Err(ConfigError::new(
            "saml.max_response_bytes",
            "must be between 4096 and 4194304",
        ));
    }
    if !(30..=3600).contains(&s.login_timeout_secs) {
        return Err(ConfigError::new(
            "saml.login_timeout_secs",
            "must be between 30 and 3600",
        ));
    }
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let max_concurrent_verifications = if s.max_concurrent_verifications == 0 {
        cpus
    } else {
        s.max_concurrent_verifications
    };

    let sess = file.session;
    let cookie_path = local_path(&sess.cookie_path, "session.cookie_path").map(|p| {
        if p.is_empty() {
            "/".to_string()
        } else {
            p
        }
    })?;
    let secure = public_url.scheme() == "https";
    let (cookie_name, login_cookie_name) = cookie_names(&sess, &cookie_path, secure)?;
    let secret_path = required(
        sess.cookie_secret_file,
        "session.cookie_secret_file",
        "a file with at least 32 random bytes (e.g. `openssl rand -base64 48 > cookie.secret`)",
    )?;
    let cookie_secret = read_file(base, &secret_path, "session.cookie_secret_file")?;
    let cookie_secret: Vec<u8> = {
        // A trailing newline from `echo`/`openssl rand -base64` is not part of the secret.
        let trimmed = cookie_secret.trim_ascii_end();
        trimmed.to_vec()
    };
    if cookie_secret.len() < 32 {
        return Err(ConfigError::new(
            "session.cookie_secret_file",
            format!(
                "holds {} bytes; at least 32 are required",
                cookie_secret.len()
            ),
        ));
    }
    if sess.idle_timeout_secs < 60 || sess.max_lifetime_secs < sess.idle_timeout_secs {
        return Err(ConfigError::new(
            "session.idle_timeout_secs",
            "must be at least 60 and no more than session.max_lifetime_secs",
        ));
    }
    if sess.max_lifetime_secs > 30 * 24 * 3600 {
        return Err(ConfigError::new(
            "session.max_lifetime_secs",
            "must be at most 30 days",
        ));
    }
    if sess.max_sessions == 0 {
        return Err(ConfigError::new(
            "session.max_sessions",
            "must be at least 1",
        ));
    }

    let h = &file.headers;
    for (key, name) in [
        ("headers.user", &h.user),
        ("headers.email", &h.email),
        ("headers.groups", &h.groups),
        ("headers.preferred_username", &h.preferred_username),
    ] {
        header_name(name, key)?;
    }
    if h.groups_separator.is_empty() || h.groups_separator.chars().any(|c| c.is_control()) {
        return Err(ConfigError::new(
            "headers.groups_separator",
            "must be non-empty and printable",
        ));
    }
    strip_foreign_extra(&h.strip_foreign_extra)?;
    crate::identity::validate(h, &file.roles, &file.authz, &file.access, header_name)?;
    let mut seen = BTreeMap::new();
    for (key, name) in [
        ("headers.user", &h.user),
        ("headers.email", &h.email),
        ("headers.groups", &h.groups),
        ("headers.preferred_username", &h.preferred_username),
    ] {
        if let Some(other) = seen.insert(crate::proxy::normalize_header_name(name), key) {
            return Err(ConfigError::new(
                key,
                format!("names the same header as {other}"),
            ));
        }
    }

    let p = file.proxy;
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
            return Err(ConfigError::new(key, "must be at least 1 second"));
        }
    }
    // Bounded above too: the semaphore behind it takes at most `usize::MAX >> 3` permits.
    if !(1..=1_000_000).contains(&p.max_pooled_requests) {
        return Err(ConfigError::new(
            "proxy.max_pooled_requests",
            "must be between 1 and 1000000",
        ));
    }
    let srv = file.server;
    for (key, v) in [
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
        (
            "server.header_read_timeout_secs",
            srv.header_read_timeout_secs,
        ),
        ("server.shutdown_grace_secs", srv.shutdown_grace_secs),
        ("server.idle_timeout_secs", srv.idle_timeout_secs),
    ] {
        // Larger values overflow `Instant + Duration` in the timers (a panic), and no
        // connection should wait a day anyway.
        if v > MAX_CONNECTION_TIMEOUT_SECS {
            return Err(ConfigError::new(
                key,
                format!("must be at most {MAX_CONNECTION_TIMEOUT_SECS} seconds (one day)"),
            ));
        }
    }
    let upstream_ca_pem = p
        .upstream_ca_file
        .map(|f| read_file(base, &f, "proxy.upstream_ca_file"))
        .transpose()?;

    TrustedProxies::parse(&srv.trusted_proxies, "server.trusted_proxies")?;
    let trusted_proxies = srv.trusted_proxies.clone();
    AccessRules::compile(&file.access)?;
    let access = file.access;
    file.rate_limits.validate()?;
    let rate_limits = file.rate_limits;
    let state = file
        .state
        .validate(base)
        .map_err(|e| ConfigError::new("state", e.to_string()))?;
    let password_signin = crate::password::settings::validate(&file.password_signin, base)
        .map_err(|e| ConfigError::new(e.key(), e.to_string()))?;
    if srv.header_read_timeout_secs == 0 {
        return Err(ConfigError::new(
            "server.header_read_timeout_secs",
            "must be at least 1",
        ));
    }
    if srv.idle_timeout_secs == 0 {
        return Err(ConfigError::new(
            "server.idle_timeout_secs",
            "must be at least 1",
        ));
    }
    if srv.max_connections == 0 {
        return Err(ConfigError::new(
            "server.max_connections",
            "must be at least 1",
        ));
    }
    let http_redirect_listen = srv
        .http_redirect_listen
        .as_deref()
        .map(|raw| http_redirect_listen(raw, listen, tls.is_some(), &public_url))
        .transpose()?;
    if !matches!(file.log.format.as_str(), "human" | "json") {
        return Err(ConfigError::new("log.format", "must be `human` or `json`"));
    }
    let admin = file
        .admin
        .listen
        .map(|raw| admin_settings(&raw, listen))
        .transpose()?;

    Ok(Settings {
        listen,
        public_url: public_url.clone(),
        upstream,
        tls,
        saml: SamlSettings {
            idp_metadata_xml,
            idp_metadata_file,
            idp_metadata_url,
            idp_entity_id: s.idp_entity_id,
            sp_entity_id,
            acs_url,
            acs_path,
            path_prefix: prefix,
            sp_key_pem,
            sp_cert_pem,
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
        },
        session: SessionSettings {
            cookie_name,
            login_cookie_name,
            cookie_domain: sess.cookie_domain,
            cookie_path,
            cookie_secret,
            idle_timeout: Duration::from_secs(sess.idle_timeout_secs),
            max_lifetime: Duration::from_secs(sess.max_lifetime_secs),
            max_sessions: sess.max_sessions,
            secure,
        },
        headers: file.headers,
        authz: file.authz,
        proxy: ProxySettings {
            upstream_timeout: Duration::from_secs(p.upstream_timeout_secs),
            connect_timeout: Duration::from_secs(p.connect_timeout_secs),
            pass_host_header: p.pass_host_header,
            upstream_ca_pem,
            pool_idle_timeout: Duration::from_secs(p.pool_idle_timeout_secs),
            upgrade_idle_timeout: Duration::from_secs(p.upgrade_idle_timeout_secs),
            upgrade_session_check: Duration::from_secs(p.upgrade_session_check_secs),
            max_pooled_requests: p.max_pooled_requests,
        },
        server: ServerSettings {
            header_read_timeout: Duration::from_secs(srv.header_read_timeout_secs),
            max_connections: srv.max_connections,
            shutdown_grace: Duration::from_secs(srv.shutdown_grace_secs),
            idle_timeout: Duration::from_secs(srv.idle_timeout_secs),
            http_redirect_listen,
        },
        log: file.log,
        forward_auth: file.forward_auth,
        admin,
        access,
        rate_limits,
        state,
        password_signin,
        trusted_proxies,
        roles: file.roles,
        scim: crate::scim::settings::validate(&file.scim, base)?,
        admin_api_tokens: crate::admin::validate_api(&file.admin_api, base)?,
    })
}

/// The keys whose change a reload (`SIGHUP`) cannot apply: everything except `[authz]`,
/// `[headers]`, `[forward_auth]`, `[access]`, `[rate_limits]` and `server.trusted_proxies`
/// (and the TLS files' contents, which the TLS reloader re-reads). Pure: compares two
/// validated settings.
pub fn restart_needed(running: &Settings, new: &Settings) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |key: &'static str, same: bool| {
        if !same {
            changed.push(key);
        }
    };
    check("listen", running.listen == new.listen);
    check("public_url", running.public_url == new.public_url);
    check("upstream", running.upstream == new.upstream);
    check("tls", running.tls == new.tls);
    check("saml", running.saml == new.saml);
    check("session", running.session == new.session);
    check("proxy", running.proxy == new.proxy);
    check("server", running.server == new.server);
    check("log", running.log == new.log);
    check("admin", running.admin == new.admin);
    check("state", running.state == new.state);
    check("scim", running.scim == new.scim);
    check(
        "admin_api",
        running.admin_api_tokens == new.admin_api_tokens,
    );
    changed
}

/// Validates `admin.listen` against the gateway's own `listen`.
fn admin_settings(raw: &str, listen: SocketAddr) -> Result<AdminSettings, ConfigError> {
    const KEY: &str = "admin.listen";
    let addr: SocketAddr = raw
        .trim()
        .parse()
        .map_err(|_| ConfigError::new(KEY, format!("not an address like 127.0.0.1:9090: {raw}")))?;
    let clash = addr.port() != 0
        && addr.port() == listen.port()
        && (addr.ip() == listen.ip() || addr.ip().is_unspecified() || listen.ip().is_unspecified());
    if clash {
        return Err(ConfigError::new(
            KEY,
            format!("must differ from listen ({listen}): the admin endpoints get their own port"),
        ));
    }
    Ok(AdminSettings { listen: addr })
}

#[cfg(test)]
mod tests {
    #[test]
    fn files_named_by_keys_are_read_with_a_bound() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("small"), b"abc").unwrap();
        assert_eq!(
            read_file(dir.path(), Path::new("small"), "k").unwrap(),
            b"abc"
        );
        // /dev/zero never ends: refused at the bound instead of filling memory.
        let e = read_file(dir.path(), Path::new("/dev/zero"), "saml.sp_key_file").unwrap_err();
        assert!(e.to_string().contains("larger than 64 MiB"), "{e}");
        assert!(read_file(dir.path(), Path::new("missing"), "k").is_err());
    }

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_overrides_nested_and_top_level_keys() {
        let file = parse_with_env(
            "upstream = \"http://a\"\n[session]\ncookie_name = \"x\"\n",
            &env(&[
                ("SAMLGATE_UPSTREAM", "http://b"),
                ("SAMLGATE_SESSION_COOKIE_NAME", "y"),
                ("SAMLGATE_AUTHZ_ALLOWED_GROUPS", "admins, analysts"),
                ("SAMLGATE_SAML_CLOCK_SKEW_SECS", "30"),
                ("OTHER", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(file.upstream.as_deref(), Some("http://b"));
        assert_eq!(file.session.cookie_name.as_deref(), Some("y"));
        assert_eq!(file.authz.allowed_groups, vec!["admins", "analysts"]);
        assert_eq!(file.saml.clock_skew_secs, 30);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse_with_env("", &env(&[("SAMLGATE_SESSION_COOKIE_NAM", "x")])).unwrap_err();
        assert_eq!(
            err.key, "SAMLGATE_SESSION_COOKIE_NAM",
            "an override is named by its variable"
        );
    }

    #[test]
    fn keys_are_named_with_their_section() {
        let err = parse_with_env("[saml]\nclock_skew_secs = \"soon\"\n", &[]).unwrap_err();
        assert_eq!(err.key, "saml.clock_skew_secs");
        let err = parse_with_env("[saml]\nacs_pth = \"/x\"\n", &[]).unwrap_err();
        assert_eq!(err.key, "saml.acs_pth");
        let err = parse_with_env("[saml\n", &[]).unwrap_err();
        assert!(err.message.contains("line 1"), "{err}");
    }

    #[test]
    fn env_numbers_for_string_keys_stay_strings_and_config_var_is_not_a_key() {
        let file = parse_with_env(
            "",
            &env(&[
                ("SAMLGATE_SESSION_COOKIE_NAME", "123"),
                ("SAMLGATE_CONFIG", "/etc/samlgate.toml"),
            ]),
        )
        .unwrap();
        assert_eq!(file.session.cookie_name.as_deref(), Some("123"));
        let err =
            parse_with_env("", &env(&[("SAMLGATE_SAML_CLOCK_SKEW_SECS", "soon")])).unwrap_err();
        assert_eq!(err.key, "SAMLGATE_SAML_CLOCK_SKEW_SECS");
    }

    #[test]
    fn wrong_types_are_reported() {
        let err = parse_with_env("[saml]\nclock_skew_secs = \"soon\"\n", &[]).unwrap_err();
        assert!(err.message.contains("invalid type"), "{err}");
    }

    fn minimal(dir: &Path) -> FileConfig {
        std::fs::write(dir.join("secret"), [7u8; 40]).unwrap();
        std::fs::write(dir.join("idp.xml"), "<EntityDescriptor/>").unwrap();
        parse_with_env(
            "public_url = \"https://app.example.com/\"\nupstream = \"http://127.0.0.1:6273\"\n[saml]\nidp_metadata_file = \"idp.xml\"\n[session]\ncookie_secret_file = \"secret\"\n",
            &[],
        )
        .unwrap()
    }

    #[test]
    fn connection_timeouts_have_a_floor_and_a_one_day_ceiling() {
        let dir = tempfile::tempdir().unwrap();
        let s = validate(minimal(dir.path()), dir.path()).unwrap();
        assert_eq!(s.server.idle_timeout, Duration::from_secs(75));
        assert_eq!(s.proxy.upgrade_idle_timeout, Duration::from_secs(600));
        type Set = fn(&mut FileConfig, u64);
        let keys: [(&str, Set); 8] = [
            ("server.header_read_timeout_secs", |f, v| {
                f.server.header_read_timeout_secs = v
            }),
            ("server.shutdown_grace_secs", |f, v| {
                f.server.shutdown_grace_secs = v
            }),
            ("server.idle_timeout_secs", |f, v| {
                f.server.idle_timeout_secs = v
            }),
            ("proxy.upstream_timeout_secs", |f, v| {
                f.proxy.upstream_timeout_secs = v
            }),
            ("proxy.connect_timeout_secs", |f, v| {
                f.proxy.connect_timeout_secs = v
            }),
            ("proxy.pool_idle_timeout_secs", |f, v| {
                f.proxy.pool_idle_timeout_secs = v
            }),
            ("proxy.upgrade_idle_timeout_secs", |f, v| {
                f.proxy.upgrade_idle_timeout_secs = v
            }),
            ("proxy.upgrade_session_check_secs", |f, v| {
                f.proxy.upgrade_session_check_secs = v
            }),
        ];
        for (key, set) in keys {
            let with = |v: u64| {
                let mut f = minimal(dir.path());
                set(&mut f, v);
                validate(f, dir.path())
            };
            assert!(with(86_400).is_ok(), "{key} = 86400");
            for too_big in [86_401, u64::MAX] {
                let err = with(too_big).unwrap_err();
                assert_eq!(err.key, key, "{key} = {too_big}");
                assert!(err.message.contains("at most 86400"), "{err}");
            }
        }
        for key in [
            "server.idle_timeout_secs",
            "proxy.upgrade_idle_timeout_secs",
            "proxy.upgrade_session_check_secs",
        ] {
            let mut f = minimal(dir.path());
            match key {
                "server.idle_timeout_secs" => f.server.idle_timeout_secs = 0,
                "proxy.upgrade_idle_timeout_secs" => f.proxy.upgrade_idle_timeout_secs = 0,
                _ => f.proxy.upgrade_session_check_secs = 0,
            }
            assert_eq!(validate(f, dir.path()).unwrap_err().key, key);
        }
        let file = parse_with_env(
            "",
            &env(&[
                ("SAMLGATE_SERVER_IDLE_TIMEOUT_SECS", "5"),
                ("SAMLGATE_PROXY_UPGRADE_IDLE_TIMEOUT_SECS", "7"),
            ]),
        )
        .unwrap();
        assert_eq!(file.server.idle_timeout_secs, 5);
        assert_eq!(file.proxy.upgrade_idle_timeout_secs, 7);
        for (v, ok) in [(0, false), (1, true), (1_000_000, true), (1_000_001, false)] {
            let mut f = minimal(dir.path());
            f.proxy.max_pooled_requests = v;
            match validate(f, dir.path()) {
                Ok(s) => assert!(ok && s.proxy.max_pooled_requests == v, "{v}"),
                Err(e) => assert!(!ok && e.key == "proxy.max_pooled_requests", "{v}: {e}"),
            }
        }
    }

    #[test]
    fn metadata_url_settings_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let with_url = |url: &str| {
            let mut f = minimal(dir.path());
            f.saml.idp_metadata_file = None;
            f.saml.idp_metadata_url = Some(url.into());
            f
        };
        let s = validate(with_url("https://idp.example.com/md"), dir.path()).unwrap();
        let md = s.saml.idp_metadata_url.unwrap();
        assert_eq!(md.cache_file, dir.path().join("idp-metadata.cache.xml"));
        assert_eq!(md.refresh, Duration::from_secs(3600));
        assert_eq!(md.timeout, Duration::from_secs(10));
        assert_eq!(md.max_bytes, 1024 * 1024);
        assert!(s.saml.idp_metadata_xml.is_empty());
        assert!(validate(with_url("http://127.0.0.1:9/md"), dir.path()).is_ok());
        assert!(validate(with_url("http://localhost:9/md"), dir.path()).is_ok());
        for bad in ["http://idp.example.com/md", "ftp://idp/md", "not a url"] {
            let err = validate(with_url(bad), dir.path()).unwrap_err();
            assert_eq!(err.key, "saml.idp_metadata_url", "{bad}");
        }
        let mut both = minimal(dir.path());
        both.saml.idp_metadata_url = Some("https://idp.example.com/md".into());
        assert_eq!(
            validate(both, dir.path()).unwrap_err().key,
            "saml.idp_metadata_url"
        );
        let mut f = with_url("https://idp.example.com/md");
        f.saml.idp_metadata_refresh_secs = 59;
        assert_eq!(
            validate(f, dir.path()).unwrap_err().key,
            "saml.idp_metadata_refresh_secs"
        );
        let mut f = with_url("https://idp.example.com/md");
        f.saml.idp_metadata_signing_cert_file = Some("secret".into());
        assert_eq!(
            validate(f, dir.path()).unwrap_err().key,
            "saml.idp_metadata_signing_cert_file"
        );
        let mut f = minimal(dir.path());
        f.saml.idp_metadata_cache_file = Some("c.xml".into());
        assert_eq!(
            validate(f, dir.path()).unwrap_err().key,
            "saml.idp_metadata_cache_file"
        );
    }

    #[test]
    fn defaults_derive_from_public_url() {
        let dir = tempfile::tempdir().unwrap();
        let s = validate(minimal(dir.path()), dir.path()).unwrap();
        assert_eq!(s.saml.acs_url, "https://app.example.com/saml/acs");
        assert_eq!(s.saml.sp_entity_id, "https://app.example.com/saml/metadata");
        assert!(s.session.secure);
        assert!(s.saml.require_signed_assertion);
        assert!(!s.saml.allow_sha1);
    }

    #[test]
    fn cookie_names_default_to_host_prefix_over_https_only() {
        let dir = tempfile::tempdir().unwrap();
        let names = |edit: &dyn Fn(&mut FileConfig)| {
            let mut f = minimal(dir.path());
            edit(&mut f);
            validate(f, dir.path())
                .map(|s| (s.session.cookie_name, s.session.login_cookie_name))
                .map_err(|e| e.to_string())
        };
        let pair = |a: &str, b: &str| Ok((a.to_string(), b.to_string()));
        assert_eq!(
            names(&|_| {}),
            pair("__Host-samlgate_session", "__Host-samlgate_login")
        );
        assert_eq!(
            names(&|f| f.public_url = Some("http://127.0.0.1:8080".into())),
            pair("samlgate_session", "samlgate_login")
        );
        assert_eq!(
            names(&|f| f.session.cookie_domain = Some("example.com".into())),
            pair("samlgate_session", "samlgate_login")
        );
        // The session cookie on a sub-path cannot be `__Host-`; the login cookie (on `/`) is.
        assert_eq!(
            names(&|f| f.session.cookie_path = "/app".into()),
            pair("samlgate_session", "__Host-samlgate_login")
        );
        // Explicit names are kept as typed, the old defaults included.
        assert_eq!(
            names(&|f| {
                f.session.cookie_name = Some("samlgate_session".into());
                f.session.login_cookie_name = Some("__Host-pending".into());
            }),
            pair("samlgate_session", "__Host-pending")
        );
    }

    #[test]
    fn explicit_prefixed_cookie_names_must_meet_the_prefix_rules() {
        let dir = tempfile::tempdir().unwrap();
        let refused = |edit: &dyn Fn(&mut FileConfig)| {
            let mut f = minimal(dir.path());
            edit(&mut f);
            validate(f, dir.path()).err().map(|e| (e.key, e.message))
        };
        let http = |f: &mut FileConfig| f.public_url = Some("http://127.0.0.1:8080".into());
        let (key, message) = refused(&|f| {
            http(f);
            f.session.cookie_name = Some("__Host-sid".into());
        })
        .unwrap();
        assert_eq!(key, "session.cookie_name");
        assert!(message.contains("https"), "{message}");
        let (key, message) = refused(&|f| {
            f.session.cookie_domain = Some("example.com".into());
            f.session.login_cookie_name = Some("__host-pending".into());
        })
        .unwrap();
        assert_eq!(key, "session.login_cookie_name");
        assert!(message.contains("cookie_domain"), "{message}");
        let (key, message) = refused(&|f| {
            f.session.cookie_path = "/app".into();
            f.session.cookie_name = Some("__Host-sid".into());
        })
        .unwrap();
        assert_eq!(key, "session.cookie_name");
        assert!(message.contains("cookie_path"), "{message}");
        let (key, _) = refused(&|f| {
            http(f);
            f.session.login_cookie_name = Some("__Secure-pending".into());
        })
        .unwrap();
        assert_eq!(key, "session.login_cookie_name");
        // The same names where their rules hold are accepted.
        assert_eq!(
            refused(&|f| {
                f.session.cookie_name = Some("__Host-sid".into());
                f.session.login_cookie_name = Some("__Secure-pending".into());
            }),
            None
        );
        // Explicit names that equal the other cookie's effective default are refused.
        assert_eq!(
            refused(&|f| f.session.cookie_name = Some("__Host-samlgate_login".into()))
                .map(|(k, _)| k)
                .as_deref(),
            Some("session.login_cookie_name")
        );
        assert_eq!(
            refused(&|f| f.session.cookie_name = Some("a b".into()))
                .map(|(k, _)| k)
                .as_deref(),
            Some("session.cookie_name")
        );
    }

    #[test]
    fn short_secret_and_missing_metadata_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = minimal(dir.path());
        std::fs::write(dir.path().join("secret"), b"short\n").unwrap();
        let err = validate(file.clone(), dir.path()).unwrap_err();
        assert_eq!(err.key, "session.cookie_secret_file");
        let mut file = minimal(dir.path());
        file.saml.idp_metadata_file = None;
        assert_eq!(
            validate(file, dir.path()).unwrap_err().key,
            "saml.idp_metadata_file"
        );
    }

    #[test]
    fn bad_paths_urls_and_headers_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = minimal(dir.path());
        f.saml.acs_path = "saml-post".into();
        assert_eq!(validate(f, dir.path()).unwrap_err().key, "saml.acs_path");
        let mut f = minimal(dir.path());
        f.public_url = Some("https://app.example.com/sub/".into());
        assert_eq!(validate(f, dir.path()).unwrap_err().key, "public_url");
        let mut f = minimal(dir.path());
        f.saml.acs_path = "/".into();
        assert_eq!(validate(f, dir.path()).unwrap_err().key, "saml.acs_path");
        let mut f = minimal(dir.path());
        f.upstream = Some("ftp://x".into());
        assert_eq!(validate(f, dir.path()).unwrap_err().key, "upstream");
        let mut f = minimal(dir.path());
        f.headers.email = "X-Forwarded_User".into();
        assert_eq!(validate(f, dir.path()).unwrap_err().key, "headers.email");
        let mut f = minimal(dir.path());
        f.headers.groups = "bad header".into();
        assert_eq!(validate(f, dir.path()).unwrap_err().key, "headers.groups");
        for reserved in [
            "Host",
            "Cookie",
            "X_Forwarded_For",
            "authorization",
            "Content-Length",
        ] {
            let mut f = minimal(dir.path());
            f.headers.user = reserved.into();
            let e = validate(f, dir.path()).unwrap_err();
            assert_eq!(e.key, "headers.user", "{reserved}");
            assert!(e.message.contains("already uses"), "{}", e.message);
        }
    }

    #[test]
    fn foreign_header_list_is_extended_or_emptied_from_file_or_environment() {
        let dir = tempfile::tempdir().unwrap();
        let base = minimal(dir.path());
        let h = &validate(base.clone(), dir.path()).unwrap().headers;
        assert!(h.strip_foreign_defaults, "the table is on by default");
        assert!(h.strip_foreign_extra.is_empty());

        let file = parse_with_env(
            "[headers]\nstrip_foreign_extra = [\"X-Corp-User\", \"X-Corp-Claim-*\"]\n",
            &[],
        )
        .unwrap();
        assert!(file.headers.strip_foreign_defaults);
        assert_eq!(
            file.headers.strip_foreign_extra,
            ["X-Corp-User", "X-Corp-Claim-*"]
        );
        let file = parse_with_env(
            "[headers]\nstrip_foreign_extra = [\"X-Corp-User\"]\n",
            &env(&[
                ("SAMLGATE_HEADERS_STRIP_FOREIGN_DEFAULTS", "false"),
                ("SAMLGATE_HEADERS_STRIP_FOREIGN_EXTRA", ""),
            ]),
        )
        .unwrap();
        assert!(!file.headers.strip_foreign_defaults, "emptied");
        assert!(file.headers.strip_foreign_extra.is_empty(), "emptied");
        let file = parse_with_env(
            "",
            &env(&[("SAMLGATE_HEADERS_STRIP_FOREIGN_EXTRA", "X-A, X-B-*")]),
        )
        .unwrap();
        assert_eq!(file.headers.strip_foreign_extra, ["X-A", "X-B-*"]);

        let mut f = base.clone();
        f.headers.strip_foreign_extra = vec!["X-Corp-*".into(), "x_corp_login".into()];
        let s = validate(f, dir.path()).unwrap();
        assert_eq!(s.headers.strip_foreign_extra.len(), 2);

        for (bad, says) in [
            ("*", "every header"),
            ("X-*-User", "may only end"),
            ("X Corp", "not a header name"),
            ("Cookie", "would strip cookie"),
            ("content-*", "would strip content-length"),
            ("X-Forwarded-*", "would strip x-forwarded-for"),
            ("C*", "would strip c"),
        ] {
            let mut f = base.clone();
            f.headers.strip_foreign_extra = vec!["X-Fine".into(), bad.into()];
            let e = validate(f, dir.path()).unwrap_err();
            assert_eq!(e.key, "headers.strip_foreign_extra", "{bad}");
            assert!(e.message.contains(says), "{bad}: {}", e.message);
        }
        let mut f = base;
        f.headers.strip_foreign_extra = (0..257).map(|i| format!("X-N{i}")).collect();
        let e = validate(f, dir.path()).unwrap_err();
        assert!(e.message.contains("at most 256"), "{}", e.message);
    }

    #[test]
    fn sp_key_pair_is_checked_and_required_for_encryption() {
        let pair = |bits| {
            crate::certgen::self_signed(&crate::certgen::CertSpec {
                common_name: "sp".into(),
                rsa_bits: bits,
                days: 5,
                purpose: crate::certgen::Purpose::Saml,
                san: vec![],
            })
            .unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (pair(2048), pair(2048));
        std::fs::write(dir.path().join("a.key"), a.key_pem().unwrap()).unwrap();
        std::fs::write(dir.path().join("a.crt"), a.cert_pem().unwrap()).unwrap();
        std::fs::write(dir.path().join("b.crt"), b.cert_pem().unwrap()).unwrap();
        let with = |key: Option<&str>, cert: Option<&str>, require: bool| {
            let mut f = minimal(dir.path());
            f.saml.sp_key_file = key.map(Into::into);
            f.saml.sp_cert_file = cert.map(Into::into);
            f.saml.require_encryption = require;
            validate(f, dir.path())
        };
        let s = with(Some("a.key"), Some("a.crt"), true).unwrap();
        assert!(s.saml.require_encryption && !s.saml.allow_rsa1_5);
        assert!(with(Some("a.key"), None, false).is_ok());
        assert_eq!(
            with(Some("a.key"), Some("b.crt"), false).unwrap_err().key,
            "saml.sp_cert_file"
        );
        assert_eq!(
            with(None, Some("a.crt"), false).unwrap_err().key,
            "saml.sp_key_file"
        );
        assert_eq!(
            with(Some("a.crt"), Some("a.crt"), false).unwrap_err().key,
            "saml.sp_key_file"
        );
        assert_eq!(
            with(None, None, true).unwrap_err().key,
            "saml.require_encryption"
        );
        assert!(!with(None, None, false).unwrap().saml.require_encryption);
    }

    #[test]
    fn admin_listener_is_off_by_default_and_validated() {
        let dir = tempfile::tempdir().unwrap();
        assert!(validate(minimal(dir.path()), dir.path())
            .unwrap()
            .admin
            .is_none());
        let with = |listen: &str, admin: &str| {
            let mut f = minimal(dir.path());
            f.listen = Some(listen.into());
            f.admin.listen = Some(admin.into());
            validate(f, dir.path())
        };
        let s = with("0.0.0.0:8443", "127.0.0.1:9090").unwrap();
        assert_eq!(
            s.admin.unwrap().listen,
            "127.0.0.1:9090".parse::<SocketAddr>().unwrap()
        );
        assert!(with("127.0.0.1:8080", "127.0.0.2:8080").is_ok());
        assert!(
            with("127.0.0.1:0", "127.0.0.1:0").is_ok(),
            "port 0 picks a free port"
        );
        for (listen, admin) in [
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("0.0.0.0:8080", "127.0.0.1:8080"),
            ("127.0.0.1:8080", "[::]:8080"),
            ("127.0.0.1:8080", "localhost:9090"),
            ("127.0.0.1:8080", "9090"),
            ("127.0.0.1:8080", ""),
        ] {
            let err = with(listen, admin).unwrap_err();
            assert_eq!(err.key, "admin.listen", "{listen} / {admin}");
        }
    }

    #[test]
    fn admin_listen_has_an_environment_override() {
        let file = parse_with_env(
            "[admin]\nlisten = \"127.0.0.1:1\"\n",
            &env(&[("SAMLGATE_ADMIN_LISTEN", "127.0.0.1:9191")]),
        )
        .unwrap();
        assert_eq!(file.admin.listen.as_deref(), Some("127.0.0.1:9191"));
        let err = parse_with_env("[admin]\nport = 9090\n", &[]).unwrap_err();
        assert_eq!(err.key, "admin.port");
    }

    #[test]
    fn heavy_ai_acs_path_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = minimal(dir.path());
        f.saml.acs_path = "/saml-post".into();
        let s = validate(f, dir.path()).unwrap();
        assert_eq!(s.saml.acs_url, "https://app.example.com/saml-post");
    }

    fn with_tls_files(dir: &Path) -> FileConfig {
        std::fs::write(dir.join("tls.crt"), "stand-in").unwrap();
        std::fs::write(dir.join("tls.key"), "stand-in").unwrap();
        let mut f = minimal(dir);
        f.tls.cert_file = Some("tls.crt".into());
        f.tls.key_file = Some("tls.key".into());
        f
    }

    #[test]
    fn tls_min_version_and_watch_interval_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let t = validate(with_tls_files(dir.path()), dir.path())
            .unwrap()
            .tls
            .unwrap();
        assert_eq!(t.min_version, TlsMinVersion::Tls12);
        assert_eq!(t.watch_interval, Some(Duration::from_secs(10)));
        assert_eq!(t.cert_file, dir.path().join("tls.crt"));

        let mut f = with_tls_files(dir.path());
        f.tls.min_version = Some("1.3".into());
        f.tls.watch_interval_secs = Some(0);
        let t = validate(f, dir.path()).unwrap().tls.unwrap();
        assert_eq!(t.min_version, TlsMinVersion::Tls13);
        assert_eq!(t.watch_interval, None, "0 = SIGHUP only");

        for bad in ["1.1", "1.0", "TLSv1.3", "", "1.4"] {
            let mut f = with_tls_files(dir.path());
            f.tls.min_version = Some(bad.into());
            let err = validate(f, dir.path()).unwrap_err();
            assert_eq!(err.key, "tls.min_version", "{bad:?}");
            assert!(err.message.contains("\"1.2\" or \"1.3\""), "{err}");
        }
        let mut f = with_tls_files(dir.path());
        f.tls.watch_interval_secs = Some(86_401);
        assert_eq!(
            validate(f, dir.path()).unwrap_err().key,
            "tls.watch_interval_secs"
        );
        // Without TLS files these keys would promise a protection that is not there.
        let mut f = minimal(dir.path());
        f.tls.min_version = Some("1.3".into());
        assert_eq!(validate(f, dir.path()).unwrap_err().key, "tls.min_version");
        let mut f = minimal(dir.path());
        f.tls.watch_interval_secs = Some(5);
        assert_eq!(
            validate(f, dir.path()).unwrap_err().key,
            "tls.watch_interval_secs"
        );
        // From the environment, "1.3" stays a string.
        let f = parse_with_env(
            "[tls]\ncert_file = \"tls.crt\"\nkey_file = \"tls.key\"\n",
            &env(&[
                ("SAMLGATE_TLS_MIN_VERSION", "1.3"),
                ("SAMLGATE_TLS_WATCH_INTERVAL_SECS", "2"),
            ]),
        )
        .unwrap();
        assert_eq!(f.tls.min_version.as_deref(), Some("1.3"));
        assert_eq!(f.tls.watch_interval_secs, Some(2));
    }

    #[test]
    fn http_redirect_listen_needs_tls_and_an_https_public_url() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = with_tls_files(dir.path());
        f.server.http_redirect_listen = Some("0.0.0.0:8080".into());
        f.listen = Some("0.0.0.0:8443".into());
        let s = validate(f, dir.path()).unwrap();
        assert_eq!(
            s.server.http_redirect_listen,
            Some("0.0.0.0:8080".parse().unwrap())
        );
        assert_eq!(
            validate(with_tls_files(dir.path()), dir.path())
                .unwrap()
                .server
                .http_redirect_listen,
            None
        );

        let mut f = minimal(dir.path());
        f.server.http_redirect_listen = Some("0.0.0.0:8080".into());
        let err = validate(f, dir.path()).unwrap_err();
        assert_eq!(err.key, "server.http_redirect_listen");
        assert!(err.message.contains("tls.cert_file"), "{err}");

        let mut f = with_tls_files(dir.path());
        f.public_url = Some("http://app.example.com".into());
        f.server.http_redirect_listen = Some("0.0.0.0:8080".into());
        let err = validate(f, dir.path()).unwrap_err();
        assert_eq!(err.key, "server.http_redirect_listen");
        assert!(err.message.contains("https public_url"), "{err}");

        for bad in ["localhost:80", "80", "0.0.0.0:8443"] {
            let mut f = with_tls_files(dir.path());
            f.listen = Some("0.0.0.0:8443".into());
            f.server.http_redirect_listen = Some(bad.into());
            assert_eq!(
                validate(f, dir.path()).unwrap_err().key,
                "server.http_redirect_listen",
                "{bad}"
            );
        }
    }
}
