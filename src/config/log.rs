//! `[log]`: the log format and level (read by `observability`).

use serde::Deserialize;

use super::ConfigError;

/// `[log]` as written by the operator.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// Log line format (stdout).
    pub format: String,
    /// A tracing filter: `info`, `warn`, `samlgate::audit=info,warn`, … `RUST_LOG`, when set,
    /// replaces it.
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

/// Validates `[log]`.
pub(super) fn validate(log: &LogSection) -> Result<(), ConfigError> {
    if !matches!(log.format.as_str(), "human" | "json") {
        return Err(ConfigError::invalid(
            "log.format",
            "must be `human` or `json`",
        ));
    }
    Ok(())
}
