//! `[admin_api]`: the bearer tokens of the admin API on the admin listener, read from files.
//! Apart from [`crate::admin`] so that `config` can assemble it without importing the admin
//! listener (which needs the server, which needs the settings).

/// `[admin_api]` as written.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AdminApiSection {
    /// Files of bearer tokens for the admin API on the admin listener, one per line (blank
    /// lines and `#` comments skipped; several allow rotation; each at least 32 characters).
    /// Default: none, and the API is off (404).
    pub token_files: Vec<std::path::PathBuf>,
}

/// Reads `[admin_api] token_files` (relative paths from `base`).
pub fn validate_api(
    raw: &AdminApiSection,
    base: &std::path::Path,
) -> Result<Vec<String>, crate::scim::settings::ScimSettingsError> {
    use crate::scim::settings::ScimConfigError;
    let mut tokens = Vec::new();
    for file in &raw.token_files {
        let at = |error| crate::scim::settings::ScimSettingsError {
            key: "admin_api.token_files",
            error,
        };
        let bytes = crate::config_files::read(base, file)
            .map_err(|e| at(ScimConfigError::Read(e.to_string())))?;
        let found =
            crate::scim::settings::parse_tokens(&bytes, &file.display().to_string()).map_err(at)?;
        tokens.extend(found);
    }
    Ok(tokens)
}
