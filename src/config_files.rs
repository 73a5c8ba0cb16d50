//! Files named by configuration keys, read relative to the config file's directory and with a
//! bound: a key naming `/dev/zero` or a FIFO must give an error, not fill memory. A leaf
//! module, so the sections that read their own files (`[state]`, `[scim]`, `[admin_api]`) need
//! not import `config` back. Secrets read from such files are checked here too
//! ([`is_placeholder_secret`]), so every section refuses the examples' placeholders alike.

use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest file a configuration key may name (IdP metadata of big federations runs to a few
/// MiB; keys, certificates and secrets are kilobytes).
pub const MAX_CONFIG_FILE_BYTES: u64 = 64 << 20;

/// Why a file a configuration key names could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FileReadError {
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is larger than {} MiB", path.display(), MAX_CONFIG_FILE_BYTES >> 20)]
    TooLarge { path: PathBuf },
}

/// `path` relative to the config file's directory `base` unless absolute.
pub fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// Reads `path` (relative to `base`), at most [`MAX_CONFIG_FILE_BYTES`].
pub fn read(base: &Path, path: &Path) -> Result<Vec<u8>, FileReadError> {
    let full = resolve(base, path);
    let cannot = |source: std::io::Error| FileReadError::Unreadable {
        path: full.clone(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(&full)
        .map_err(cannot)?
        .take(MAX_CONFIG_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_CONFIG_FILE_BYTES {
        return Err(FileReadError::TooLarge { path: full });
    }
    Ok(bytes)
}

/// Values that are obviously the example's placeholder or a default, never a real secret:
/// compared case-insensitively with every character but letters and digits dropped, so
/// `REPLACE-ME`, `replace_me` and `<replace me>` all match.
const PLACEHOLDERS: &[&str] = &[
    "replaceme",
    "changeme",
    "changeit",
    "placeholder",
    "password",
    "secret",
    "redis",
    "example",
    "todo",
    "xxx",
    "yourpassword",
    "redispassword",
];

/// True for an empty secret or one that is an obvious placeholder (see [`PLACEHOLDERS`]), or
/// contains `REPLACE-ME`/`CHANGE-ME` in any spelling: a deployment copied from the examples
/// without filling in its Secret must not start as if it had a password.
pub fn is_placeholder_secret(secret: &str) -> bool {
    secret.chars().all(|c| !c.is_ascii_alphanumeric()) || names_a_placeholder(secret)
}

/// [`is_placeholder_secret`] without the "no letters or digits" rule, for secrets that may be
/// raw random bytes (the cookie secret) and for tokens whose length is checked apart: true when
/// the text, folded as above, is a [`PLACEHOLDERS`] word or contains `REPLACE-ME`/`CHANGE-ME`.
pub fn names_a_placeholder(secret: &str) -> bool {
    let folded: String = secret
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    PLACEHOLDERS.contains(&folded.as_str())
        || folded.contains("replaceme")
        || folded.contains("changeme")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_read_from_the_config_directory_and_reads_are_bounded() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("token"), b"abc").expect("write");
        assert_eq!(read(dir.path(), Path::new("token")).expect("read"), b"abc");
        assert!(matches!(
            read(dir.path(), Path::new("missing")),
            Err(FileReadError::Unreadable { .. })
        ));
        // /dev/zero never ends: the bound turns it into an error.
        assert!(matches!(
            read(dir.path(), Path::new("/dev/zero")),
            Err(FileReadError::TooLarge { .. })
        ));
    }
}
