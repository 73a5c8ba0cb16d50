//! Files named by configuration keys, read relative to the config file's directory and with a
//! bound: a key naming `/dev/zero` or a FIFO must give an error, not fill memory. A leaf
//! module, so the sections that read their own files (`[state]`, `[scim]`, `[admin_api]`) need
//! not import `config` back.

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
