//! `[scim]`: the SCIM 2.0 service provider's settings as written (`ScimSection`) and as
//! validated (`ScimSettings`: tokens read, paths resolved, bounds checked). Off unless
//! `enabled = true`; turning it on requires at least one bearer-token file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Shortest bearer token accepted: 32 characters (a random token of ≥ 190 bits in base64).
pub const MIN_TOKEN_LEN: usize = 32;

/// Where the groups in the identity headers and in the access rules come from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum GroupsSource {
    /// The assertion's groups attribute only (SCIM groups are stored but not used).
    #[default]
    Assertion,
    /// The groups SCIM provisioned the user into; the assertion's are ignored.
    Scim,
    /// Both: the assertion's groups followed by the SCIM groups not already among them.
    Both,
}

/// `[scim]` as written.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ScimSection {
    /// Serve the SCIM 2.0 endpoint on the main listener. Default `false`.
    pub enabled: bool,
    /// Base path of the endpoint (`/Users`, `/Groups`, … below it). Default `"/scim/v2"`.
    pub path: String,
    /// Files holding the bearer tokens the IdP may present, one token per line (blank lines
    /// and lines starting with `#` ignored); several tokens allow rotation. Required when
    /// enabled; each token at least 32 characters. Default: none.
    pub token_files: Vec<PathBuf>,
    /// Directory of the embedded store (`scim.redb` inside it), created if missing.
    /// Not used with `[state] backend = "redis"` (the data is in Redis then; a `scim.redb`
    /// found here is copied once into a Redis that holds no SCIM data yet). Default
    /// `"/var/lib/samlgate"`.
    pub state_dir: PathBuf,
    /// Largest request body accepted, in bytes (413 above). Default 1048576 (1 MiB).
    pub max_body_bytes: usize,
    /// Sustained SCIM requests per second allowed (all clients together). Default 50.
    pub rate_limit_per_second: u32,
    /// Requests allowed in a burst above the sustained rate. Default 200.
    pub rate_limit_burst: u32,
    /// Where identity groups come from: `"assertion"`, `"scim"` or `"both"`. Default
    /// `"assertion"`.
    pub groups_source: GroupsSource,
    /// Refuse sign-in to users SCIM never provisioned. Default `false` (admitted).
    pub require_provisioned: bool,
    /// Most Users plus Groups stored; creation beyond it is refused (507-like 409 `tooMany`).
    /// Default 200000.
    pub max_resources: usize,
    /// Largest page a list request returns (`count` above it is lowered). Default 200.
    pub max_page_size: usize,
}

impl Default for ScimSection {
    fn default() -> Self {
        ScimSection {
            enabled: false,
            path: "/scim/v2".into(),
            token_files: Vec::new(),
            state_dir: PathBuf::from("/var/lib/samlgate"),
            max_body_bytes: 1 << 20,
            rate_limit_per_second: 50,
            rate_limit_burst: 200,
            groups_source: GroupsSource::Assertion,
            require_provisioned: false,
            max_resources: 200_000,
            max_page_size: 200,
        }
    }
}

/// Validated `[scim]`.
#[derive(Clone, PartialEq)]
pub struct ScimSettings {
    pub path: String,
    /// The accepted bearer tokens (never logged).
    pub tokens: Vec<String>,
    /// The store's file: `state_dir/scim.redb`.
    pub db_file: PathBuf,
    pub max_body_bytes: usize,
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    pub groups_source: GroupsSource,
    pub require_provisioned: bool,
    pub max_resources: usize,
    pub max_page_size: usize,
}

impl std::fmt::Debug for ScimSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScimSettings")
            .field("path", &self.path)
            .field("tokens", &format_args!("[{} redacted]", self.tokens.len()))
            .field("db_file", &self.db_file)
            .field("groups_source", &self.groups_source)
            .field("require_provisioned", &self.require_provisioned)
            .finish_non_exhaustive()
    }
}

/// Why `[scim]` was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScimConfigError {
    #[error("must start with '/', not end with '/', and hold only path characters: {0:?}")]
    BadPath(String),
    #[error("is required when scim.enabled is true: at least one file of bearer tokens")]
    NoTokenFile,
    #[error("{0}: no token in it")]
    EmptyTokenFile(String),
    #[error("{file}: a token is shorter than {MIN_TOKEN_LEN} characters or holds spaces or control characters")]
    WeakToken { file: String },
    #[error("{file}: a token is a placeholder (REPLACE-ME, CHANGE-ME, …), not a secret")]
    PlaceholderToken { file: String },
    #[error("must be at least {min}: {got}")]
    TooSmall { min: u64, got: u64 },
    #[error("{0}")]
    Read(String),
}

impl ScimConfigError {
    fn at(self, key: &'static str) -> ScimSettingsError {
        ScimSettingsError { key, error: self }
    }
}

/// A refused `[scim]` key and why (the config loader reports it as that key's error).
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{key}: {error}")]
pub struct ScimSettingsError {
    pub key: &'static str,
    pub error: ScimConfigError,
}

impl ScimSettingsError {
    pub fn key(&self) -> &'static str {
        self.key
    }
}

/// Checks `[scim]` and reads its token files (relative paths from `base`). `None` when off.
pub fn validate(raw: &ScimSection, base: &Path) -> Result<Option<ScimSettings>, ScimSettingsError> {
    if !raw.enabled {
        return Ok(None);
    }
    if !is_plain_path(&raw.path) {
        return Err(ScimConfigError::BadPath(raw.path.clone()).at("scim.path"));
    }
    if raw.token_files.is_empty() {
        return Err(ScimConfigError::NoTokenFile.at("scim.token_files"));
    }
    let mut tokens = Vec::new();
    for file in &raw.token_files {
        let bytes = crate::config_files::read(base, file)
            .map_err(|e| ScimConfigError::Read(e.to_string()).at("scim.token_files"))?;
        let name = file.display().to_string();
        let found = parse_tokens(&bytes, &name).map_err(|e| e.at("scim.token_files"))?;
        tokens.extend(found);
    }
    for (key, min, got) in [
        ("scim.max_body_bytes", 1024, raw.max_body_bytes as u64),
        (
            "scim.rate_limit_per_second",
            1,
            raw.rate_limit_per_second as u64,
        ),
        ("scim.rate_limit_burst", 1, raw.rate_limit_burst as u64),
        ("scim.max_resources", 1, raw.max_resources as u64),
        ("scim.max_page_size", 1, raw.max_page_size as u64),
    ] {
        if got < min {
            return Err(ScimConfigError::TooSmall { min, got }.at(key));
        }
    }
    Ok(Some(ScimSettings {
        path: raw.path.clone(),
        tokens,
        db_file: crate::config_files::resolve(base, &raw.state_dir).join("scim.redb"),
        max_body_bytes: raw.max_body_bytes,
        rate_limit_per_second: raw.rate_limit_per_second,
        rate_limit_burst: raw.rate_limit_burst,
        groups_source: raw.groups_source,
        require_provisioned: raw.require_provisioned,
        max_resources: raw.max_resources,
        max_page_size: raw.max_page_size,
    }))
}

/// The tokens in a token file: one per line, blank lines and `#` comments skipped (pure).
pub fn parse_tokens(bytes: &[u8], file: &str) -> Result<Vec<String>, ScimConfigError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ScimConfigError::Read(format!("{file} is not UTF-8")))?;
    let mut tokens = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if t.len() < MIN_TOKEN_LEN || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ScimConfigError::WeakToken { file: file.into() });
        }
        if crate::config_files::names_a_placeholder(t) {
            return Err(ScimConfigError::PlaceholderToken { file: file.into() });
        }
        tokens.push(t.to_string());
    }
    if tokens.is_empty() {
        return Err(ScimConfigError::EmptyTokenFile(file.into()));
    }
    Ok(tokens)
}

/// `/a/b` style: leading slash, no trailing slash, no dot segments, unreserved characters.
fn is_plain_path(p: &str) -> bool {
    p.len() > 1
        && p.starts_with('/')
        && !p.ends_with('/')
        && !p.contains("//")
        && p.split('/').all(|s| s != "." && s != "..")
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_need_strong_tokens() {
        let long = "a".repeat(MIN_TOKEN_LEN);
        let ok = format!("# rotation\n{long}\n\n{long}b\n");
        assert_eq!(parse_tokens(ok.as_bytes(), "f").unwrap().len(), 2);
        assert_eq!(
            parse_tokens(b"REPLACE-ME-with-a-long-random-bearer-token\n", "f"),
            Err(ScimConfigError::PlaceholderToken { file: "f".into() })
        );
        assert!(matches!(
            parse_tokens(b"short\n", "f"),
            Err(ScimConfigError::WeakToken { .. })
        ));
        assert!(matches!(
            parse_tokens(b"# nothing\n\n", "f"),
            Err(ScimConfigError::EmptyTokenFile(_))
        ));
        let spaced = format!("{long} {long}\n");
        assert!(parse_tokens(spaced.as_bytes(), "f").is_err());
    }

    #[test]
    fn paths_are_plain() {
        for ok in ["/scim/v2", "/scim", "/_scim/v2.0"] {
            assert!(is_plain_path(ok), "{ok}");
        }
        for bad in [
            "", "/", "scim", "/scim/", "/a//b", "/a/../b", "/a b", "/a%2fb", "/a?b",
        ] {
            assert!(!is_plain_path(bad), "{bad}");
        }
    }

    #[test]
    fn off_unless_enabled_and_needs_a_token_file() {
        let base = Path::new("/nonexistent");
        assert_eq!(validate(&ScimSection::default(), base).unwrap(), None);
        let on = ScimSection {
            enabled: true,
            ..Default::default()
        };
        assert_eq!(validate(&on, base).unwrap_err().key(), "scim.token_files");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t");
        std::fs::write(&f, "x".repeat(40)).unwrap();
        let on = ScimSection {
            enabled: true,
            token_files: vec![f],
            state_dir: "state".into(),
            ..Default::default()
        };
        let s = validate(&on, dir.path()).unwrap().unwrap();
        assert_eq!(s.tokens, vec!["x".repeat(40)]);
        assert_eq!(s.db_file, dir.path().join("state/scim.redb"));
        assert!(!format!("{s:?}").contains("xxxx"), "tokens never printed");
    }
}
