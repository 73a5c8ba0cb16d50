//! `[password_signin]`: the operator's switches for signing in with a password when SAML is
//! not the answer (an IdP outage, API clients, the break-glass admin). Everything is off
//! unless configured. [`PasswordSigninSection`] is the file as written; [`validate`] checks it
//! (reading the LDAP service password and the local users file) into [`PasswordSettings`],
//! which the rest of the module trusts without re-checking. Reads files; no sockets.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use url::Url;

use super::local::{LocalUsers, UsersFileError};

/// A password source, tried in the order `[password_signin] methods` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// A directory: OpenLDAP, Active Directory, any LDAPv3 server.
    Ldap,
    /// The users file on the gateway's own disk (argon2id hashes).
    Local,
}

impl Method {
    /// The word in audit lines (`method=ldap`).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Ldap => "ldap",
            Method::Local => "local",
        }
    }
}

/// `[password_signin]` as written by the operator.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordSigninSection {
    /// Master switch for password sign-in (form and HTTP Basic). Default `false`.
    pub enabled: bool,
    /// The sources to try, in order, e.g. `["ldap", "local"]`. The first that accepts the
    /// user and password wins. Default: empty (must be set when `enabled`).
    pub methods: Vec<Method>,
    /// Serve the sign-in form at `{path_prefix}/password` and link it from the sign-in error
    /// pages. Default `true` (when `enabled`).
    pub form: bool,
    /// Answer a missing or wrong `Authorization: Basic` on a `basic_auth` path with
    /// `WWW-Authenticate: Basic`, which makes browsers show their password prompt. Default
    /// `false`: API clients get a 401 JSON without it and browsers are never prompted.
    pub basic_prompt: bool,
    /// Give a request that signed in with HTTP Basic a session cookie too. Default `false`:
    /// Basic requests are stateless (the credential cache spares the directory).
    pub basic_session: bool,
    /// How long a verified user name and password stay cached (by a keyed hash, never in
    /// clear), in seconds. `0` turns the cache off. Default 60.
    pub cache_ttl_secs: u64,
    /// Most credentials cached at once. Default 10 000.
    pub cache_max_entries: u64,
    /// Password checks per client address per minute (cache hits are free).
    pub client_attempts_per_minute: u32,
    /// Password checks a client address may make at once before the per-minute rate applies.
    pub client_attempts_burst: u32,
    /// Password checks per user name per minute.
    pub user_attempts_per_minute: u32,
    /// Password checks for one user name at once before the per-minute rate applies.
    pub user_attempts_burst: u32,
    /// Failed checks for one user name within `lockout_window_secs` that lock it out for
    /// `lockout_secs` (known and unknown names alike).
    pub lockout_failures: u32,
    /// The window in which `lockout_failures` failed checks lock a user name out.
    pub lockout_window_secs: u64,
    /// How long a locked-out user name stays locked.
    pub lockout_secs: u64,
    /// User names and clients tracked by the limits and the lockout. Default 100 000.
    pub max_tracked: u64,
    /// `[password_signin.ldap]`: the directory.
    pub ldap: LdapSection,
    /// `[password_signin.local]`: the users file.
    pub local: LocalSection,
}

impl Default for PasswordSigninSection {
    fn default() -> Self {
        Self {
            enabled: false,
            methods: Vec::new(),
            form: true,
            basic_prompt: false,
            basic_session: false,
            cache_ttl_secs: 60,
            cache_max_entries: 10_000,
            client_attempts_per_minute: 30,
            client_attempts_burst: 10,
            user_attempts_per_minute: 10,
            user_attempts_burst: 5,
            lockout_failures: 10,
            lockout_window_secs: 900,
            lockout_secs: 900,
            max_tracked: 100_000,
            ldap: LdapSection::default(),
            local: LocalSection::default(),
        }
    }
}

/// Where an LDAP user's groups come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupSource {
    /// The user entry's `memberOf` (OpenLDAP's memberof overlay, Active Directory).
    MemberOf,
    /// A search under `group_base` with `group_filter`.
    Search,
    /// No groups.
    None,
}

/// `[password_signin.ldap]` as written by the operator.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LdapSection {
    /// `ldaps://host:636` or `ldap://host:389` (then `starttls = true` unless the host is
    /// loopback). Required when `methods` has `ldap`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before anything is sent. Default `false`.
    pub starttls: bool,
    /// PEM file of the CA certificates that sign the directory's certificate. Default: the
    /// system's roots. Certificates are always verified.
    pub ca_file: Option<PathBuf>,
    /// The service account for search-then-bind, e.g. `cn=samlgate,ou=services,dc=example,dc=org`.
    /// Empty: no service account (use `user_dn_template`).
    pub bind_dn: String,
    /// File holding the service account's password (one line).
    pub bind_password_file: Option<PathBuf>,
    /// Search-then-bind: where users are searched, e.g. `ou=people,dc=example,dc=org`.
    pub user_base: String,
    /// Search-then-bind: the filter; `{user}` becomes the typed name, RFC 4515-escaped.
    /// Default `(uid={user})`; Active Directory: `(sAMAccountName={user})`.
    pub user_filter: String,
    /// Direct bind without a service account: the user's DN, `{user}` RFC 4514-escaped,
    /// e.g. `uid={user},ou=people,dc=example,dc=org` or `{user}@corp.example` (AD).
    pub user_dn_template: String,
    /// The attribute sent as the user header. Default `uid` (AD: `sAMAccountName`).
    pub user_attribute: String,
    /// The attribute sent as the e-mail header. Default `mail`.
    pub email_attribute: String,
    /// The attribute used as the display name. Default `cn` (AD: `displayName`).
    pub display_name_attribute: String,
    /// `member_of` (default), `search` or `none`.
    pub groups: GroupSource,
    /// The user entry's group attribute for `groups = "member_of"`. Default `memberOf`.
    pub member_of_attribute: String,
    /// `groups = "search"`: where groups are searched.
    pub group_base: String,
    /// `groups = "search"`: the filter; `{dn}` is the user's DN and `{user}` the typed name,
    /// both RFC 4515-escaped. Default `(member={dn})`.
    pub group_filter: String,
    /// Which attribute names a group: with `member_of` the first RDN of the group's DN when
    /// it is this attribute, with `search` this attribute of each group entry. Default `cn`.
    pub group_name_attribute: String,
    /// TCP connect (and TLS handshake) timeout, seconds. Default 5.
    pub connect_timeout_secs: u64,
    /// Timeout of each LDAP operation (bind, search), seconds. Default 5.
    pub timeout_secs: u64,
    /// Connections kept open for reuse (binds and searches). Default 4.
    pub pool_size: usize,
    /// Only these users may sign in through LDAP (empty: anyone the directory accepts).
    pub allowed_users: Vec<String>,
    /// Only members of one of these groups may sign in through LDAP (empty: any).
    pub allowed_groups: Vec<String>,
}

impl Default for LdapSection {
    fn default() -> Self {
        Self {
            url: String::new(),
            starttls: false,
            ca_file: None,
            bind_dn: String::new(),
            bind_password_file: None,
            user_base: String::new(),
            user_filter: "(uid={user})".into(),
            user_dn_template: String::new(),
            user_attribute: "uid".into(),
            email_attribute: "mail".into(),
            display_name_attribute: "cn".into(),
            groups: GroupSource::MemberOf,
            member_of_attribute: "memberOf".into(),
            group_base: String::new(),
            group_filter: "(member={dn})".into(),
            group_name_attribute: "cn".into(),
            connect_timeout_secs: 5,
            timeout_secs: 5,
            pool_size: 4,
            allowed_users: Vec::new(),
            allowed_groups: Vec::new(),
        }
    }
}

/// `[password_signin.local]` as written by the operator.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LocalSection {
    /// The users file: `name:argon2id-hash:group1,group2` per line (`samlgate passwd` writes
    /// it). Required when `methods` has `local`.
    pub users_file: Option<PathBuf>,
    /// Only these users may sign in locally, e.g. `["breakglass"]` (empty: anyone in the file).
    pub allowed_users: Vec<String>,
    /// Only members of one of these groups may sign in locally (empty: any).
    pub allowed_groups: Vec<String>,
}

/// What is wrong with `[password_signin]`; `key()` names the setting.
#[derive(Debug, thiserror::Error)]
pub enum PasswordConfigError {
    #[error("`methods` is empty; list `ldap`, `local` or both")]
    NoMethods,
    #[error("`{0}` is listed twice in `methods`")]
    DuplicateMethod(&'static str),
    #[error("`{key}` must be at least 1")]
    Zero { key: &'static str },
    #[error("`ldap.url` is required when `methods` has `ldap`")]
    LdapUrlMissing,
    #[error("`ldap.url` is not a valid ldap:// or ldaps:// URL: {0}")]
    LdapUrlInvalid(String),
    #[error(
        "`ldap.url` is plain ldap:// to a host that is not loopback; use ldaps:// or set \
         `ldap.starttls = true` (passwords are never sent in clear over a network)"
    )]
    LdapCleartext,
    #[error("`ldap.starttls` applies to ldap:// only, not ldaps://")]
    StartTlsOnLdaps,
    #[error("set either `ldap.bind_dn` + `ldap.user_base` (search-then-bind) or `ldap.user_dn_template` (direct bind), not {0}")]
    LdapBindMode(&'static str),
    #[error("`ldap.user_filter` must contain `{{user}}` and be in parentheses")]
    UserFilter,
    #[error("`ldap.user_dn_template` must contain `{{user}}`")]
    UserDnTemplate,
    #[error("`ldap.bind_password_file` is required with `ldap.bind_dn`")]
    BindPasswordMissing,
    #[error("cannot read `{key}` ({path}): {error}")]
    Read {
        key: &'static str,
        path: String,
        error: std::io::Error,
    },
    #[error("`ldap.bind_password_file` is empty (an empty password is an unauthenticated bind)")]
    BindPasswordEmpty,
    #[error("`ldap.group_base` is required with `ldap.groups = \"search\"`")]
    GroupBaseMissing,
    #[error("`ldap.group_filter` must contain `{{dn}}` or `{{user}}` and be in parentheses")]
    GroupFilter,
    #[error("cannot parse `ldap.ca_file`: {0}")]
    CaFile(String),
    #[error("`local.users_file` is required when `methods` has `local`")]
    UsersFileMissing,
    #[error("`local.users_file`: {0}")]
    UsersFile(#[from] UsersFileError),
}

impl PasswordConfigError {
    /// The configuration key the problem is about, for `ConfigError`.
    pub fn key(&self) -> &'static str {
        use PasswordConfigError::*;
        match self {
            NoMethods | DuplicateMethod(_) => "password_signin.methods",
            Zero { key } => key,
            LdapUrlMissing | LdapUrlInvalid(_) | LdapCleartext => "password_signin.ldap.url",
            StartTlsOnLdaps => "password_signin.ldap.starttls",
            LdapBindMode(_) => "password_signin.ldap.bind_dn",
            UserFilter => "password_signin.ldap.user_filter",
            UserDnTemplate => "password_signin.ldap.user_dn_template",
            BindPasswordMissing | BindPasswordEmpty => "password_signin.ldap.bind_password_file",
            Read { key, .. } => key,
            GroupBaseMissing => "password_signin.ldap.group_base",
            GroupFilter => "password_signin.ldap.group_filter",
            CaFile(_) => "password_signin.ldap.ca_file",
            UsersFileMissing | UsersFile(_) => "password_signin.local.users_file",
        }
    }
}

/// How LDAP finds the user's DN. (`Debug` by hand: it holds the service password.)
#[derive(Clone, PartialEq, Eq)]
pub enum BindMode {
    /// Search `user_base` with `user_filter` as the service account, then bind as the entry.
    SearchThenBind {
        bind_dn: String,
        bind_password: String,
        user_base: String,
        user_filter: String,
    },
    /// Bind as `user_dn_template` with `{user}` filled in.
    Direct { user_dn_template: String },
}

impl std::fmt::Debug for BindMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindMode::SearchThenBind {
                bind_dn, user_base, ..
            } => f
                .debug_struct("SearchThenBind")
                .field("bind_dn", bind_dn)
                .field("user_base", user_base)
                .finish_non_exhaustive(),
            BindMode::Direct { user_dn_template } => f
                .debug_struct("Direct")
                .field("user_dn_template", user_dn_template)
                .finish(),
        }
    }
}

/// Validated `[password_signin.ldap]`.
#[derive(Clone, PartialEq, Eq)]
pub struct LdapSettings {
    pub url: Url,
    pub starttls: bool,
    /// DER certificates from `ca_file`; empty: the system's roots.
    pub ca_certs: Vec<Vec<u8>>,
    pub mode: BindMode,
    pub section: LdapSection,
    pub connect_timeout: Duration,
    pub timeout: Duration,
}

impl std::fmt::Debug for LdapSettings {
    // The service password never reaches a log line, even at debug level.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapSettings")
            .field("url", &self.url.as_str())
            .field("starttls", &self.starttls)
            .field("ca_certs", &self.ca_certs.len())
            .finish_non_exhaustive()
    }
}

/// Validated `[password_signin]`; `None` in `Settings` when disabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordSettings {
    pub section: PasswordSigninSection,
    pub ldap: Option<LdapSettings>,
    pub local: Option<LocalUsers>,
}

/// Checks the section and reads its files (relative paths from `base`, the config file's
/// directory). `Ok(None)` when password sign-in is off.
pub fn validate(
    section: &PasswordSigninSection,
    base: &Path,
) -> Result<Option<PasswordSettings>, PasswordConfigError> {
    if !section.enabled {
        return Ok(None);
    }
    check_methods(&section.methods)?;
    check_numbers(section)?;
    let ldap = if section.methods.contains(&Method::Ldap) {
        Some(validate_ldap(&section.ldap, base)?)
    } else {
        None
    };
    let local = if section.methods.contains(&Method::Local) {
        let path = section
            .local
            .users_file
            .as_ref()
            .ok_or(PasswordConfigError::UsersFileMissing)?;
        Some(LocalUsers::load(&base.join(path))?)
    } else {
        None
    };
    Ok(Some(PasswordSettings {
        section: section.clone(),
        ldap,
        local,
    }))
}

fn check_methods(methods: &[Method]) -> Result<(), PasswordConfigError> {
    if methods.is_empty() {
        return Err(PasswordConfigError::NoMethods);
    }
    for (i, m) in methods.iter().enumerate() {
        if methods[..i].contains(m) {
            return Err(PasswordConfigError::DuplicateMethod(m.as_str()));
        }
    }
    Ok(())
}

fn check_numbers(s: &PasswordSigninSection) -> Result<(), PasswordConfigError> {
    for (key, value) in [
        (
            "password_signin.client_attempts_per_minute",
            u64::from(s.client_attempts_per_minute),
        ),
        (
            "password_signin.client_attempts_burst",
            u64::from(s.client_attempts_burst),
        ),
        (
            "password_signin.user_attempts_per_minute",
            u64::from(s.user_attempts_per_minute),
        ),
        (
            "password_signin.user_attempts_burst",
            u64::from(s.user_attempts_burst),
        ),
        (
            "password_signin.lockout_failures",
            u64::from(s.lockout_failures),
        ),
        ("password_signin.lockout_window_secs", s.lockout_window_secs),
        ("password_signin.lockout_secs", s.lockout_secs),
        ("password_signin.max_tracked", s.max_tracked),
        ("password_signin.cache_max_entries", s.cache_max_entries),
        (
            "password_signin.ldap.connect_timeout_secs",
            s.ldap.connect_timeout_secs,
        ),
        ("password_signin.ldap.timeout_secs", s.ldap.timeout_secs),
        ("password_signin.ldap.pool_size", s.ldap.pool_size as u64),
    ] {
        if value == 0 {
            return Err(PasswordConfigError::Zero { key });
        }
    }
    Ok(())
}

/// Whether `host` (a URL host) is a loopback address or `localhost`, where a cleartext
/// connection never leaves the machine.
pub fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        // ldap:// is not a "special" scheme for the URL parser: an IPv4 address stays a
        // domain string.
        url::Host::Domain(d) => {
            d.eq_ignore_ascii_case("localhost")
                || d.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        url::Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        url::Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

/// The transport rule as a pure decision: TLS (LDAPS or StartTLS) unless loopback.
pub fn check_transport(url: &Url, starttls: bool) -> Result<(), PasswordConfigError> {
    let host = url
        .host()
        .ok_or_else(|| PasswordConfigError::LdapUrlInvalid("no host".into()))?;
    match url.scheme() {
        "ldaps" if starttls => Err(PasswordConfigError::StartTlsOnLdaps),
        "ldaps" => Ok(()),
        "ldap" if starttls || is_loopback_host(&host) => Ok(()),
        "ldap" => Err(PasswordConfigError::LdapCleartext),
        other => Err(PasswordConfigError::LdapUrlInvalid(format!(
            "scheme `{other}`"
        ))),
    }
}

fn validate_ldap(s: &LdapSection, base: &Path) -> Result<LdapSettings, PasswordConfigError> {
    if s.url.is_empty() {
        return Err(PasswordConfigError::LdapUrlMissing);
    }
    let url = Url::parse(&s.url).map_err(|e| PasswordConfigError::LdapUrlInvalid(e.to_string()))?;
    check_transport(&url, s.starttls)?;
    let mode = bind_mode(s, base)?;
    if s.groups == GroupSource::Search {
        if s.group_base.is_empty() {
            return Err(PasswordConfigError::GroupBaseMissing);
        }
        if !is_filter_template(&s.group_filter, &["{dn}", "{user}"]) {
            return Err(PasswordConfigError::GroupFilter);
        }
    }
    let ca_certs = match &s.ca_file {
        Some(path) => read_ca_file(&base.join(path))?,
        None => Vec::new(),
    };
    Ok(LdapSettings {
        url,
        starttls: s.starttls,
        ca_certs,
        mode,
        section: s.clone(),
        connect_timeout: Duration::from_secs(s.connect_timeout_secs),
        timeout: Duration::from_secs(s.timeout_secs),
    })
}

fn is_filter_template(filter: &str, placeholders: &[&str]) -> bool {
    filter.starts_with('(')
        && filter.ends_with(')')
        && placeholders.iter().any(|p| filter.contains(p))
}

fn bind_mode(s: &LdapSection, base: &Path) -> Result<BindMode, PasswordConfigError> {
    let search = !s.bind_dn.is_empty() || !s.user_base.is_empty();
    let direct = !s.user_dn_template.is_empty();
    match (search, direct) {
        (true, true) => Err(PasswordConfigError::LdapBindMode("both")),
        (false, false) => Err(PasswordConfigError::LdapBindMode("neither")),
        (false, true) => {
            if !s.user_dn_template.contains("{user}") {
                return Err(PasswordConfigError::UserDnTemplate);
            }
            Ok(BindMode::Direct {
                user_dn_template: s.user_dn_template.clone(),
            })
        }
        (true, false) => {
            if s.bind_dn.is_empty() || s.user_base.is_empty() {
                return Err(PasswordConfigError::LdapBindMode("only half of the first"));
            }
            if !is_filter_template(&s.user_filter, &["{user}"]) {
                return Err(PasswordConfigError::UserFilter);
            }
            let path = s
                .bind_password_file
                .as_ref()
                .ok_or(PasswordConfigError::BindPasswordMissing)?;
            let path = base.join(path);
            let text =
                std::fs::read_to_string(&path).map_err(|error| PasswordConfigError::Read {
                    key: "password_signin.ldap.bind_password_file",
                    path: path.display().to_string(),
                    error,
                })?;
            let bind_password = text.trim_end_matches(['\r', '\n']).to_string();
            if bind_password.is_empty() {
                return Err(PasswordConfigError::BindPasswordEmpty);
            }
            Ok(BindMode::SearchThenBind {
                bind_dn: s.bind_dn.clone(),
                bind_password,
                user_base: s.user_base.clone(),
                user_filter: s.user_filter.clone(),
            })
        }
    }
}

fn read_ca_file(path: &Path) -> Result<Vec<Vec<u8>>, PasswordConfigError> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::CertificateDer;
    let pem = std::fs::read(path).map_err(|error| PasswordConfigError::Read {
        key: "password_signin.ldap.ca_file",
        path: path.display().to_string(),
        error,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PasswordConfigError::CaFile(e.to_string()))?;
    if certs.is_empty() {
        return Err(PasswordConfigError::CaFile("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn transport_needs_tls_off_loopback() {
        for (u, starttls, ok) in [
            ("ldaps://ldap.example.org", false, true),
            ("ldaps://ldap.example.org", true, false),
            ("ldap://ldap.example.org", true, true),
            ("ldap://ldap.example.org", false, false),
            ("ldap://10.0.0.5:389", false, false),
            ("ldap://127.0.0.1:389", false, true),
            ("ldap://127.9.9.9:389", false, true),
            ("ldap://[::1]:389", false, true),
            ("ldap://localhost:389", false, true),
            ("ldap://localhost.evil.example:389", false, false),
            ("http://ldap.example.org", false, false),
        ] {
            assert_eq!(
                check_transport(&url(u), starttls).is_ok(),
                ok,
                "{u} starttls={starttls}"
            );
        }
    }

    #[test]
    fn disabled_is_none_and_enabled_needs_methods() {
        let dir = tempfile::tempdir().unwrap();
        assert!(validate(&PasswordSigninSection::default(), dir.path())
            .unwrap()
            .is_none());
        let mut s = PasswordSigninSection {
            enabled: true,
            ..Default::default()
        };
        assert!(matches!(
            validate(&s, dir.path()),
            Err(PasswordConfigError::NoMethods)
        ));
        s.methods = vec![Method::Local, Method::Local];
        assert!(matches!(
            validate(&s, dir.path()),
            Err(PasswordConfigError::DuplicateMethod("local"))
        ));
        s.methods = vec![Method::Local];
        let err = validate(&s, dir.path()).unwrap_err();
        assert_eq!(err.key(), "password_signin.local.users_file");
    }

    #[test]
    fn ldap_bind_modes_are_exclusive_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "secret\n").unwrap();
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let base = LdapSection {
            url: "ldap://127.0.0.1:3890".into(),
            ..Default::default()
        };
        let cases: Vec<(LdapSection, Option<&str>)> = vec![
            (base.clone(), Some("neither")),
            (
                LdapSection {
                    user_dn_template: "uid={user},dc=x".into(),
                    ..base.clone()
                },
                None,
            ),
            (
                LdapSection {
                    user_dn_template: "uid=fixed,dc=x".into(),
                    ..base.clone()
                },
                Some("{user}"),
            ),
            (
                LdapSection {
                    bind_dn: "cn=svc".into(),
                    user_base: "dc=x".into(),
                    bind_password_file: Some("pw".into()),
                    ..base.clone()
                },
                None,
            ),
            (
                LdapSection {
                    bind_dn: "cn=svc".into(),
                    user_base: "dc=x".into(),
                    bind_password_file: Some("empty".into()),
                    ..base.clone()
                },
                Some("empty"),
            ),
            (
                LdapSection {
                    bind_dn: "cn=svc".into(),
                    user_base: "dc=x".into(),
                    user_filter: "uid={user}".into(),
                    bind_password_file: Some("pw".into()),
                    ..base.clone()
                },
                Some("parentheses"),
            ),
            (
                LdapSection {
                    bind_dn: "cn=svc".into(),
                    user_base: "dc=x".into(),
                    user_dn_template: "uid={user}".into(),
                    ..base.clone()
                },
                Some("both"),
            ),
        ];
        for (section, want_err) in cases {
            let got = validate_ldap(&section, dir.path());
            match (got, want_err) {
                (Ok(_), None) => {}
                (Err(e), Some(part)) => assert!(e.to_string().contains(part), "{e}"),
                (got, want) => panic!("{section:?}: got {got:?}, want error {want:?}"),
            }
        }
    }

    #[test]
    fn the_service_password_stays_out_of_debug_output() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "hunter2-service\n").unwrap();
        let s = LdapSection {
            url: "ldaps://ldap.example.org".into(),
            bind_dn: "cn=svc".into(),
            user_base: "dc=x".into(),
            bind_password_file: Some("pw".into()),
            ..Default::default()
        };
        let settings = validate_ldap(&s, dir.path()).unwrap();
        assert!(!format!("{settings:?}").contains("hunter2"));
    }
}
