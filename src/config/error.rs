//! [`ConfigError`]: every way the configuration can be wrong, each variant carrying the key
//! (as the operator typed it, or the `SAMLGATE_*` variable that set it) and the reason.
//! `Display` reads `config error at `key`: reason`, the line `check-config` prints and a
//! refused reload logs.

use std::path::PathBuf;

use crate::client_ip::TrustedProxyError;
use crate::identity::IdentityConfigError;
use crate::ratelimit::RateLimitError;
use crate::rules::RuleError;

/// A configuration problem, naming the key and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file itself (`--config`) cannot be read.
    #[error("config error at `--config`: cannot read {}: {source}", path.display())]
    ConfigFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("config error at `(file)`: {reason}")]
    Syntax { reason: String },
    /// A key the structs do not know, or a value of the wrong type; `key` is the dotted key or
    /// the environment variable that set it.
    #[error("config error at `{key}`: {reason}")]
    Shape { key: String, reason: String },
    /// A `SAMLGATE_*` variable that cannot be applied.
    #[error("config error at `{var}`: {reason}")]
    Environment { var: String, reason: String },
    /// Numbers or booleans given for string keys in the environment that never settle.
    #[error("config error at `(environment)`: conflicting SAMLGATE_* overrides")]
    ConflictingOverrides,
    /// A key without a default is missing; `what` says what to put there.
    #[error("config error at `{key}`: is required: {what}")]
    Required {
        key: &'static str,
        what: &'static str,
    },
    /// A file named by `key` cannot be read.
    #[error("config error at `{key}`: cannot read {}: {source}", path.display())]
    Unreadable {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file named by `key` is larger than any key, certificate or metadata file should be.
    #[error("config error at `{key}`: {} is larger than {limit_mib} MiB", path.display())]
    TooLarge {
        key: &'static str,
        path: PathBuf,
        limit_mib: u64,
    },
    /// A value out of range, malformed, or in conflict with another key.
    #[error("config error at `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    /// `[access]` does not compile.
    #[error("config error at {0}")]
    Access(#[from] RuleError),
    /// `server.trusted_proxies` holds something that is not a usable network.
    #[error("config error at {0}")]
    TrustedProxies(#[from] TrustedProxyError),
    /// `[rate_limits]` would lock everyone out.
    #[error("config error at {0}")]
    RateLimits(#[from] RateLimitError),
}

/// `[headers]`, `[[roles]]` and `authz` role keys refused by [`crate::identity::validate`].
impl From<IdentityConfigError> for ConfigError {
    fn from(e: IdentityConfigError) -> Self {
        ConfigError::invalid(e.key(), e.to_string())
    }
}

impl ConfigError {
    /// A value that is wrong for the reason given.
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// The key (or environment variable) at fault, as the operator would search for it.
    pub fn key(&self) -> &str {
        match self {
            ConfigError::ConfigFile { .. } => "--config",
            ConfigError::Syntax { .. } => "(file)",
            ConfigError::Shape { key, .. } | ConfigError::Invalid { key, .. } => key,
            ConfigError::Environment { var, .. } => var,
            ConfigError::ConflictingOverrides => "(environment)",
            ConfigError::Required { key, .. }
            | ConfigError::Unreadable { key, .. }
            | ConfigError::TooLarge { key, .. } => key,
            ConfigError::Access(e) => &e.key,
            ConfigError::TrustedProxies(e) => &e.key,
            ConfigError::RateLimits(e) => &e.key,
        }
    }

    /// What is wrong, without the key (for tests and for callers that print the key apart).
    pub fn reason(&self) -> String {
        let full = self.to_string();
        let prefix = format!("config error at `{}`: ", self.key());
        full.strip_prefix(&prefix).unwrap_or(&full).to_string()
    }
}
