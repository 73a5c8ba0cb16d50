//! `[session]`: the session and login cookies (names, scope, secret) and the session
//! lifetimes and store size.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::files::{local_path, read_file, required};
use super::ConfigError;

/// `[session]` as written by the operator.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSection {
    /// Session cookie name: letters, digits, `_` or `-`, used as typed. A `__Host-` name needs an
    /// https `public_url`, no `cookie_domain` and `cookie_path = "/"`; a `__Secure-` one an https
    /// `public_url` ([Cookie names](how-it-works.md#cookie-names)). Unset:
    /// `"__Host-samlgate_session"` over https without `cookie_domain` and with `cookie_path = "/"`,
    /// else `"samlgate_session"`.
    pub cookie_name: Option<String>,
    /// Login cookie name (the pending sign-in binding): same rules, and it must differ from
    /// `cookie_name`. Unset: `"__Host-samlgate_login"` over https without `cookie_domain`, else
    /// `"samlgate_login"`.
    pub login_cookie_name: Option<String>,
    /// `Domain` attribute for both cookies. Unset means host-only, which is the safest choice.
    pub cookie_domain: Option<String>,
    /// `Path` of the session cookie (an absolute path, same rules as `acs_path`). The login cookie
    /// always uses `/`.
    pub cookie_path: String,
    /// File with at least 32 bytes of secret; trailing whitespace and newlines are ignored. Its
    /// contents are used as-is (`openssl rand -base64 48` gives 64 bytes). It keys the HMACs of
    /// both cookies and of the sign-out CSRF token. Changing it invalidates every cookie. Required.
    pub cookie_secret_file: Option<PathBuf>,
    /// A session ends after this long without a request. At least 60 and at most
    /// `max_lifetime_secs`.
    pub idle_timeout_secs: u64,
    /// Absolute session lifetime, at most 30 days (2592000). The IdP's `SessionNotOnOrAfter`
    /// shortens it.
    pub max_lifetime_secs: u64,
    /// Capacity of the in-memory session store, at least 1. When it is full, sessions are evicted
    /// and their users sign in again.
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

/// `[session]` validated: effective cookie names, the secret read.
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

/// Validates `[session]`; `secure` is whether `public_url` is https.
pub(super) fn validate(
    sess: SessionSection,
    secure: bool,
    base: &Path,
) -> Result<SessionSettings, ConfigError> {
    let cookie_path = local_path(&sess.cookie_path, "session.cookie_path")?;
    let cookie_path = if cookie_path.is_empty() {
        "/".to_string()
    } else {
        cookie_path
    };
    let (cookie_name, login_cookie_name) = cookie_names(&sess, &cookie_path, secure)?;
    let cookie_secret = cookie_secret(sess.cookie_secret_file.clone(), base)?;
    check_lifetimes(&sess)?;
    Ok(SessionSettings {
        cookie_name,
        login_cookie_name,
        cookie_domain: sess.cookie_domain,
        cookie_path,
        cookie_secret,
        idle_timeout: Duration::from_secs(sess.idle_timeout_secs),
        max_lifetime: Duration::from_secs(sess.max_lifetime_secs),
        max_sessions: sess.max_sessions,
        secure,
    })
}

fn cookie_secret(path: Option<PathBuf>, base: &Path) -> Result<Vec<u8>, ConfigError> {
    let secret_path = required(
        path,
        "session.cookie_secret_file",
        "a file with at least 32 random bytes (e.g. `openssl rand -base64 48 > cookie.secret`)",
    )?;
    let bytes = read_file(base, &secret_path, "session.cookie_secret_file")?;
    // A trailing newline from `echo`/`openssl rand -base64` is not part of the secret.
    let secret = bytes.trim_ascii_end().to_vec();
    if secret.len() < 32 {
        return Err(ConfigError::invalid(
            "session.cookie_secret_file",
            format!("holds {} bytes; at least 32 are required", secret.len()),
        ));
    }
    // A long placeholder copied from an example ("REPLACE-ME-WITH-…") is no secret either.
    if crate::config_files::names_a_placeholder(&String::from_utf8_lossy(&secret)) {
        return Err(ConfigError::invalid(
            "session.cookie_secret_file",
            "holds a placeholder (REPLACE-ME, CHANGE-ME, …), not a secret: write random bytes, e.g. `openssl rand -base64 48`",
        ));
    }
    Ok(secret)
}

fn check_lifetimes(sess: &SessionSection) -> Result<(), ConfigError> {
    if sess.idle_timeout_secs < 60 || sess.max_lifetime_secs < sess.idle_timeout_secs {
        return Err(ConfigError::invalid(
            "session.idle_timeout_secs",
            "must be at least 60 and no more than session.max_lifetime_secs",
        ));
    }
    if sess.max_lifetime_secs > 30 * 24 * 3600 {
        return Err(ConfigError::invalid(
            "session.max_lifetime_secs",
            "must be at most 30 days",
        ));
    }
    if sess.max_sessions == 0 {
        return Err(ConfigError::invalid(
            "session.max_sessions",
            "must be at least 1",
        ));
    }
    Ok(())
}

/// The session and login cookies' effective names: explicit ones as typed (checked against
/// the browsers' `__Host-`/`__Secure-` rules), defaults with `__Host-` where it holds.
fn cookie_names(
    sess: &SessionSection,
    cookie_path: &str,
    secure: bool,
) -> Result<(String, String), ConfigError> {
    use crate::session::cookie::CookieScope;
    let session_scope = CookieScope {
        secure,
        domain: sess.cookie_domain.as_deref(),
        path: cookie_path,
    };
    // The login cookie is always set on `/` (the ACS may lie outside the session's path).
    let login_scope = CookieScope {
        path: "/",
        ..session_scope
    };
    let session = cookie_name(
        "session.cookie_name",
        sess.cookie_name.as_deref(),
        "samlgate_session",
        session_scope,
    )?;
    let login = cookie_name(
        "session.login_cookie_name",
        sess.login_cookie_name.as_deref(),
        "samlgate_login",
        login_scope,
    )?;
    if session == login {
        return Err(ConfigError::invalid(
            "session.login_cookie_name",
            "must differ from session.cookie_name",
        ));
    }
    Ok((session, login))
}

fn cookie_name(
    key: &str,
    explicit: Option<&str>,
    default: &str,
    scope: crate::session::cookie::CookieScope<'_>,
) -> Result<String, ConfigError> {
    use crate::session::cookie::{effective_name, prefix_problem};
    let name = effective_name(explicit, default, scope);
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ConfigError::invalid(
            key,
            "must be letters, digits, `_` or `-`",
        ));
    }
    if let Some(problem) = prefix_problem(&name, scope) {
        return Err(ConfigError::invalid(key, problem));
    }
    Ok(name)
}
