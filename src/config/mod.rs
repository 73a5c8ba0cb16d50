//! Configuration: one TOML file plus `SAMLGATE_*` environment overrides, validated once at
//! start (and on each SIGHUP) into a [`Settings`] value the rest of the gateway trusts without
//! re-checking. What can be compiled is compiled here, once: the access rules
//! ([`AccessRules`]) and the trusted proxies ([`TrustedProxies`]) travel in `Settings`.
//!
//! Split by domain, one file per section: [`env`] (text and environment → [`FileConfig`]),
//! `tls`, `saml` and `metadata_url`, `session`, `headers`, `proxy`, `server`, `admin`, `log`,
//! `forward_auth`; `files` (bounded reads, URL and path forms), [`error`] ([`ConfigError`]) and
//! [`reference`] (the generated `docs/configuration-reference.md`). [`validate`] calls one
//! function per section.
//!
//! Direction: `config` imports the modules whose sections it assembles (`rules`, `ratelimit`,
//! `client_ip`, `authz`, `proxy`, …); they own their section types and error types and never
//! import `config` back (`tests/module_graph.rs` checks it). This module owns the names users
//! type and reads files (secrets, metadata) but opens no sockets.

mod admin;
pub mod env;
pub mod error;
mod files;
mod forward_auth;
mod headers;
mod log;
mod metadata_url;
mod proxy;
pub mod reference;
mod saml;
mod server;
mod session;
#[cfg(test)]
mod tests;
mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use url::Url;

pub use crate::authz::AuthzSection;
pub use crate::client_ip::TrustedProxies;
pub use crate::identity::RoleRule;
pub use crate::password::{PasswordSettings, PasswordSigninSection};
pub use crate::proxy::{HeadersSection, ProxySection, ProxySettings};
pub use crate::ratelimit::RateLimitSection;
pub use crate::rules::{AccessRules, AccessSection};
pub use admin::{AdminSection, AdminSettings};
pub use env::parse_with_env;
pub use error::ConfigError;
pub use forward_auth::ForwardAuthSection;
pub use log::LogSection;
pub use metadata_url::{MetadataUrlSettings, MAX_METADATA_BYTES};
pub use saml::{SamlSection, SamlSettings};
pub use server::{ServerSection, ServerSettings};
pub use session::{SessionSection, SessionSettings};
pub use tls::{
    TlsFiles, TlsMinVersion, TlsSection, DEFAULT_TLS_WATCH_INTERVAL_SECS,
    MAX_TLS_WATCH_INTERVAL_SECS,
};

use files::{parse_http_url, required, socket_addr};
pub(crate) use headers::header_name;

/// `listen` when unset.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The file as written by the operator. Every field has a default except the few that
/// cannot be guessed (`upstream`, `public_url`, `saml.idp_metadata_file`, the cookie secret).
/// Each section's type lives with the module that owns the behaviour (or in this module's
/// file for that section); `docs/configuration-reference.md` is generated from these types.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// Address to bind. An IP, not a host name (`0.0.0.0:8443`, `[::]:8443`).
    #[schemars(extend("default" = DEFAULT_LISTEN))]
    pub listen: Option<String>,
    /// The URL browsers use to reach samlgate: `http://` or `https://` with a host, and no query or
    /// fragment. The ACS URL (`public_url` + `saml.acs_path`) and the default SP entity ID derive
    /// from it. The scheme decides the cookies' `Secure` flag, the login cookie's `SameSite` and
    /// `X-Forwarded-Proto`. Serve samlgate at the root of its host: the endpoints and redirects
    /// ignore any path here. Required.
    pub public_url: Option<String>,
    /// The application: `http://` or `https://` with a host, and no query or fragment. A path
    /// becomes a prefix: with `http://10.0.0.5:8080/app`, a request for `/x` is sent to `/app/x`.
    /// Required.
    pub upstream: Option<String>,
    /// `[tls]`: the main listener's certificate; without it samlgate speaks plain HTTP.
    pub tls: TlsSection,
    /// `[saml]`: the IdP, the SP's identity and keys, and the protocol options.
    pub saml: SamlSection,
    /// `[session]`: cookies and session lifetimes.
    pub session: SessionSection,
    /// `[headers]`: the identity headers sent upstream and the attributes they carry.
    pub headers: HeadersSection,
    /// `[authz]`: who may enter once signed in (no lists: everyone signed in).
    pub authz: AuthzSection,
    /// `[proxy]`: how samlgate talks to the upstream.
    pub proxy: ProxySection,
    /// `[server]`: the main listener's limits, trusted proxies, the HTTP redirect listener.
    pub server: ServerSection,
    /// `[log]`: log format and level.
    pub log: LogSection,
    /// `[forward_auth]`: the `{path_prefix}/auth` check endpoint for nginx, Traefik and Envoy.
    pub forward_auth: ForwardAuthSection,
    /// `[admin]`: the admin listener (`/metrics`, `/healthz`).
    pub admin: AdminSection,
    /// `[access]`: per-path rules that let paths through without sign-in, refuse them, or
    /// give them their own lists (`src/rules.rs`).
    pub access: AccessSection,
    /// `[rate_limits]`: per-client budgets for sign-ins, ACS posts and failed forward-auth
    /// checks.
    pub rate_limits: RateLimitSection,
    /// `[state]`: where sessions and sign-in state live: this process's memory, or Redis
    /// shared by every replica (`src/state/`).
    pub state: crate::state::StateSection,
    /// `[password_signin]`: LDAP and local accounts as a fallback (`src/password/`).
    pub password_signin: PasswordSigninSection,
    /// `[[roles]]`: role names mapped from groups or users, first match wins
    /// (`src/identity/roles.rs`).
    pub roles: Vec<RoleRule>,
    /// `[scim]`: the SCIM 2.0 endpoint the IdP provisions users and groups into (`src/scim/`).
    pub scim: crate::scim::settings::ScimSection,
    /// `[admin_api]`: the admin API's bearer tokens on the admin listener (`src/admin.rs`).
    pub admin_api: crate::admin_api_settings::AdminApiSection,
}

/// Validated settings: every path read, every URL parsed, every bound checked, the access
/// rules and trusted proxies compiled.
#[derive(Debug, Clone)]
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
    /// `[access]`, compiled once here; the gateway's policy shares it.
    pub access: Arc<AccessRules>,
    pub rate_limits: RateLimitSection,
    /// `[state]`, validated with its files read ([`crate::state::StateSection::validate`]).
    pub state: crate::state::StateSettings,
    /// `[password_signin]`, validated with its files read; `None` when off.
    pub password_signin: Option<PasswordSettings>,
    /// `server.trusted_proxies`, compiled.
    pub trusted_proxies: TrustedProxies,
    /// `[[roles]]`, checked by [`crate::identity::validate`].
    pub roles: Vec<RoleRule>,
    /// `[scim]`, when enabled.
    pub scim: Option<crate::scim::settings::ScimSettings>,
    /// The admin API's tokens (empty: the API is off).
    pub admin_api_tokens: Vec<String>,
}

/// Largest value of the duration keys in `[server]` and `[proxy]` (one day).
const MAX_CONNECTION_TIMEOUT_SECS: u64 = 86_400;

/// Larger values overflow `Instant + Duration` in the timers (a panic), and no connection
/// should wait a day anyway.
fn check_at_most_a_day(keys: &[(&str, u64)]) -> Result<(), ConfigError> {
    match keys.iter().find(|(_, v)| *v > MAX_CONNECTION_TIMEOUT_SECS) {
        Some((key, _)) => Err(ConfigError::invalid(
            *key,
            format!("must be at most {MAX_CONNECTION_TIMEOUT_SECS} seconds (one day)"),
        )),
        None => Ok(()),
    }
}

/// Reads and validates the config file with environment overrides applied.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ConfigFile {
        path: path.to_path_buf(),
        source,
    })?;
    let env: Vec<(String, String)> = std::env::vars().collect();
    let file = parse_with_env(&text, &env)?;
    let base = path.parent().unwrap_or(Path::new("."));
    validate(file, base)
}

/// `listen`, `public_url` and `upstream`: where samlgate listens, how it is reached, and
/// what it protects.
struct Site {
    listen: SocketAddr,
    public_url: Url,
    /// `public_url` without its trailing `/`.
    public_base: String,
    upstream: Url,
}

fn site(
    listen: Option<String>,
    public_url: Option<String>,
    upstream: Option<String>,
) -> Result<Site, ConfigError> {
    let listen = socket_addr(
        listen.as_deref().unwrap_or(DEFAULT_LISTEN),
        "listen",
        "0.0.0.0:8443",
    )?;
    let public_raw = required(
        public_url,
        "public_url",
        "the URL browsers use to reach samlgate, e.g. https://app.example.com",
    )?;
    let public_url = parse_http_url(&public_raw, "public_url")?;
    if public_url.path() != "/" {
        // Routing, cookies and redirects are all rooted at `/`; a path here would only
        // change the ACS URL the IdP posts to, and that URL would then not be served.
        return Err(ConfigError::invalid(
            "public_url",
            "must not carry a path (serve samlgate at the root of its host)",
        ));
    }
    let upstream_raw = required(
        upstream,
        "upstream",
        "the application to protect, e.g. http://127.0.0.1:6273",
    )?;
    Ok(Site {
        listen,
        public_base: public_raw.trim_end_matches('/').to_string(),
        public_url,
        upstream: parse_http_url(&upstream_raw, "upstream")?,
    })
}

/// Turns the operator's file into [`Settings`], reading files relative to `base` (the config
/// file's directory): one call per section, in the order errors are reported.
pub fn validate(file: FileConfig, base: &Path) -> Result<Settings, ConfigError> {
    let site = site(file.listen, file.public_url, file.upstream)?;
    let tls = tls::validate(file.tls, base)?;
    let saml = saml::validate(file.saml, &site.public_base, base)?;
    let secure = site.public_url.scheme() == "https";
    let session = session::validate(file.session, secure, base)?;
    headers::validate(&file.headers)?;
    crate::identity::validate(
        &file.headers,
        &file.roles,
        &file.authz,
        &file.access,
        header_name,
    )?;
    let proxy = proxy::validate(file.proxy, base)?;
    let main = server::Listener {
        listen: site.listen,
        tls: tls.is_some(),
        public_url: &site.public_url,
    };
    let (server, trusted_proxies) = server::validate(file.server, main)?;
    let access = Arc::new(AccessRules::compile(&file.access)?);
    file.rate_limits.validate()?;
    let state = file
        .state
        .validate(base)
        .map_err(|e| ConfigError::invalid("state", e.to_string()))?;
    let password_signin = crate::password::settings::validate(&file.password_signin, base)
        .map_err(|e| ConfigError::invalid(e.key(), e.to_string()))?;
    log::validate(&file.log)?;
    let admin = admin::validate(file.admin, site.listen)?;
    Ok(Settings {
        listen: site.listen,
        public_url: site.public_url,
        upstream: site.upstream,
        tls,
        saml,
        session,
        headers: file.headers,
        authz: file.authz,
        proxy,
        server,
        log: file.log,
        forward_auth: file.forward_auth,
        admin,
        access,
        rate_limits: file.rate_limits,
        state,
        password_signin,
        trusted_proxies,
        roles: file.roles,
        scim: crate::scim::settings::validate(&file.scim, base)
            .map_err(|e| ConfigError::invalid(e.key, e.error.to_string()))?,
        admin_api_tokens: crate::admin_api_settings::validate_api(&file.admin_api, base)
            .map_err(|e| ConfigError::invalid(e.key, e.error.to_string()))?,
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
