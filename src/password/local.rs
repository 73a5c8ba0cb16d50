//! The `local` password source: a users file on the gateway's own disk, one user a line as
//! `name:argon2id-hash:group1,group2` (blank lines and `#` comments allowed), and what
//! `samlgate passwd` needs to add or change a user in it. Verification is argon2id (the
//! `argon2` crate, PHC strings) and always costs one hash: an unknown user is checked against a
//! dummy hash with the same parameters as the file's users, so the answer time does not tell
//! whether a name exists. Parsing and the file rewrite are pure; [`LocalUsers::load`] reads.

use std::path::Path;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// The longest user name accepted (in the file and from a client).
pub const MAX_USER_LEN: usize = 256;

/// One line of the users file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalUser {
    pub name: String,
    /// The argon2id PHC string (`$argon2id$v=19$m=…`).
    pub hash: String,
    pub groups: Vec<String>,
}

/// The parsed users file, with a dummy hash shaped like the real ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalUsers {
    pub users: Vec<LocalUser>,
    /// Verified for unknown names: same algorithm and parameters as the first user's hash.
    dummy_hash: String,
}

/// Why the users file was refused; carries the line number.
#[derive(Debug, thiserror::Error)]
pub enum UsersFileError {
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("line {line}: expected `name:hash:groups`")]
    Shape { line: usize },
    #[error("line {line}: the user name is empty, too long, or has `:`, `,`, spaces or control characters")]
    BadName { line: usize },
    #[error("line {line}: `{name}` appears twice")]
    Duplicate { line: usize, name: String },
    #[error("line {line}: the hash is not an argon2id PHC string ($argon2id$v=19$m=…): {why}")]
    BadHash { line: usize, why: String },
    #[error("line {line}: a group name is empty or has control characters")]
    BadGroup { line: usize },
}

/// Whether `name` may be a user name: what the users file, headers and logs can carry.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_USER_LEN
        && !name
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == ':' || c == ',')
}

impl LocalUsers {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<LocalUsers, UsersFileError> {
        let text = std::fs::read_to_string(path).map_err(|error| UsersFileError::Read {
            path: path.display().to_string(),
            error,
        })?;
        LocalUsers::parse(&text)
    }

    /// Parses the file's text. Every hash must be argon2id; weaker algorithms are refused.
    pub fn parse(text: &str) -> Result<LocalUsers, UsersFileError> {
        let mut users: Vec<LocalUser> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let user = parse_line(trimmed, line)?;
            if users.iter().any(|u| u.name == user.name) {
                return Err(UsersFileError::Duplicate {
                    line,
                    name: user.name,
                });
            }
            users.push(user);
        }
        let dummy_hash = dummy_like(users.first().map(|u| u.hash.as_str()));
        Ok(LocalUsers { users, dummy_hash })
    }

    pub fn find(&self, name: &str) -> Option<&LocalUser> {
        self.users.iter().find(|u| u.name == name)
    }

    /// Checks `password` for `name`: `Some(user)` when it matches, `None` for an unknown name
    /// or a wrong password, after the same single argon2 verification either way. Blocking
    /// (tens of milliseconds): call it from the blocking pool.
    pub fn verify(&self, name: &str, password: &str) -> Option<&LocalUser> {
        match self.find(name) {
            Some(user) => verify_hash(&user.hash, password).then_some(user),
            None => {
                // Same work as a known name; the result is thrown away.
                let _ = verify_hash(&self.dummy_hash, password);
                None
            }
        }
    }

    /// The file's text with `name` set to `hash` and `groups` (added at the end when new;
    /// comments and the other lines kept as they are). `groups = None` keeps a user's groups.
    pub fn upsert_text(text: &str, name: &str, hash: &str, groups: Option<&[String]>) -> String {
        let mut out = String::with_capacity(text.len() + 128);
        let mut found = false;
        for raw in text.lines() {
            let existing = raw.trim().split(':').next().unwrap_or_default();
            if !raw.trim().starts_with('#') && existing == name {
                found = true;
                let kept: Vec<String> = match groups {
                    Some(g) => g.to_vec(),
                    None => raw
                        .trim()
                        .splitn(3, ':')
                        .nth(2)
                        .map(split_groups)
                        .unwrap_or_default(),
                };
                out.push_str(&format_line(name, hash, &kept));
            } else {
                out.push_str(raw);
            }
            out.push('\n');
        }
        if !found {
            out.push_str(&format_line(name, hash, groups.unwrap_or_default()));
            out.push('\n');
        }
        out
    }
}

fn format_line(name: &str, hash: &str, groups: &[String]) -> String {
    format!("{name}:{hash}:{}", groups.join(","))
}

fn split_groups(field: &str) -> Vec<String> {
    field
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse_line(line: &str, number: usize) -> Result<LocalUser, UsersFileError> {
    let mut parts = line.splitn(3, ':');
    let (Some(name), Some(hash)) = (parts.next(), parts.next()) else {
        return Err(UsersFileError::Shape { line: number });
    };
    let groups_field = parts.next().unwrap_or_default();
    if !valid_user_name(name) {
        return Err(UsersFileError::BadName { line: number });
    }
    check_hash(hash).map_err(|why| UsersFileError::BadHash { line: number, why })?;
    let groups = split_groups(groups_field);
    if groups.iter().any(|g| g.chars().any(char::is_control)) {
        return Err(UsersFileError::BadGroup { line: number });
    }
    Ok(LocalUser {
        name: name.to_string(),
        hash: hash.to_string(),
        groups,
    })
}

/// A PHC string that is argon2id (not argon2i/argon2d or anything else).
fn check_hash(hash: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(hash).map_err(|e| e.to_string())?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!("algorithm `{}`", parsed.algorithm));
    }
    Params::try_from(&parsed).map_err(|e| e.to_string())?;
    if parsed.hash.is_none() || parsed.salt.is_none() {
        return Err("no salt or no hash".into());
    }
    Ok(())
}

/// Constant-time (inside argon2) comparison of `password` with a PHC hash.
fn verify_hash(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of a random password with the parameters of `like` (or the defaults), so verifying
/// it costs what verifying a real user's costs.
fn dummy_like(like: Option<&str>) -> String {
    let params = like
        .and_then(|h| PasswordHash::new(h).ok())
        .and_then(|p| Params::try_from(&p).ok())
        .unwrap_or_default();
    let random = crate::session::random_token();
    hash_with(&random, params).unwrap_or_default()
}

/// An argon2id PHC string for `password` with a fresh random salt and `params`.
fn hash_with(password: &str, params: Params) -> Result<String, argon2::password_hash::Error> {
    let salt_bytes = crate::session::random_id();
    let salt = SaltString::encode_b64(&salt_bytes[..16])?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
}

/// An argon2id PHC string for `password` with the crate's default (OWASP) parameters:
/// what `samlgate passwd` writes.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    hash_with(password, Params::default())
}

/// What `samlgate passwd` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswdOutcome {
    Added,
    Changed,
}

/// Why `samlgate passwd` changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum PasswdError {
    #[error("`{0}` cannot be a user name (empty, too long, or with `:`, `,`, spaces or control characters)")]
    BadName(String),
    #[error("the password is empty")]
    EmptyPassword,
    #[error("a group name is empty or has `:`, `,` or control characters")]
    BadGroup,
    #[error("the users file as it is now does not parse, so it is left alone: {0}")]
    Existing(UsersFileError),
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error("cannot write {path}: {error}")]
    Write { path: String, error: std::io::Error },
}

/// Adds `name` to the users file at `path` (created when missing, mode 0600) or changes its
/// password; `groups = None` keeps an existing user's groups. The file is replaced
/// atomically (a temp file in the same directory, renamed).
pub fn passwd(
    path: &Path,
    name: &str,
    password: &str,
    groups: Option<&[String]>,
) -> Result<PasswdOutcome, PasswdError> {
    if !valid_user_name(name) {
        return Err(PasswdError::BadName(name.to_string()));
    }
    if password.is_empty() {
        return Err(PasswdError::EmptyPassword);
    }
    if groups.is_some_and(|g| {
        g.iter()
            .any(|g| g.is_empty() || g.chars().any(|c| c.is_control() || c == ':' || c == ','))
    }) {
        return Err(PasswdError::BadGroup);
    }
    let write_err = |error| PasswdError::Write {
        path: path.display().to_string(),
        error,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(write_err(e)),
    };
    let existing = LocalUsers::parse(&text).map_err(PasswdError::Existing)?;
    let outcome = if existing.find(name).is_some() {
        PasswdOutcome::Changed
    } else {
        PasswdOutcome::Added
    };
    let hash = hash_password(password).map_err(|e| PasswdError::Hash(e.to_string()))?;
    let new_text = LocalUsers::upsert_text(&text, name, &hash, groups);
    write_atomically(path, &new_text).map_err(write_err)?;
    Ok(outcome)
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Low-cost parameters keep the unit tests fast; the format is the same.
    fn quick_hash(password: &str) -> String {
        hash_with(password, Params::new(256, 1, 1, None).unwrap()).unwrap()
    }

    #[test]
    fn a_users_file_parses_and_verifies() {
        let text = format!(
            "# comment\n\nalice:{}:engineers, admins\nbreakglass:{}:\n",
            quick_hash("alice-pw"),
            quick_hash("glass-pw")
        );
        let users = LocalUsers::parse(&text).unwrap();
        assert_eq!(users.users.len(), 2);
        assert_eq!(
            users.find("alice").unwrap().groups,
            vec!["engineers", "admins"]
        );
        assert!(users.find("breakglass").unwrap().groups.is_empty());
        assert_eq!(
            users.verify("alice", "alice-pw").map(|u| u.name.as_str()),
            Some("alice")
        );
        assert!(users.verify("alice", "wrong").is_none());
        assert!(users.verify("alice", "").is_none());
        assert!(users.verify("nobody", "alice-pw").is_none());
        // The dummy hash has the real users' parameters.
        assert!(
            users.dummy_hash.contains("m=256,t=1,p=1"),
            "{}",
            users.dummy_hash
        );
    }

    #[test]
    fn bad_lines_are_refused_with_their_number() {
        let good = quick_hash("x");
        let argon2i = good.replace("$argon2id$", "$argon2i$");
        for (text, want) in [
            ("alice".to_string(), "line 1: expected"),
            (format!("\n:{good}:"), "line 2: the user name"),
            (format!("al ice:{good}:"), "line 1: the user name"),
            (
                "alice:$2y$10$abcdefghijklmnopqrstuv:".to_string(),
                "line 1: the hash",
            ),
            (format!("alice:{argon2i}:"), "argon2i"),
            (
                format!("alice:{good}:\nalice:{good}:"),
                "line 2: `alice` appears twice",
            ),
            (format!("alice:{good}:a\u{7}b"), "line 1: a group"),
        ] {
            let err = LocalUsers::parse(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn upsert_adds_or_replaces_one_line() {
        let text = "# users\nalice:OLD:engineers\nbob:B:\n";
        let changed = LocalUsers::upsert_text(text, "alice", "NEW", None);
        assert_eq!(changed, "# users\nalice:NEW:engineers\nbob:B:\n");
        let regrouped = LocalUsers::upsert_text(
            text,
            "bob",
            "B2",
            Some(&["ops".to_string(), "x".to_string()]),
        );
        assert_eq!(regrouped, "# users\nalice:OLD:engineers\nbob:B2:ops,x\n");
        let added = LocalUsers::upsert_text(text, "carol", "C", Some(&["breakglass".to_string()]));
        assert_eq!(
            added,
            "# users\nalice:OLD:engineers\nbob:B:\ncarol:C:breakglass\n"
        );
        assert_eq!(LocalUsers::upsert_text("", "d", "D", None), "d:D:\n");
    }

    #[test]
    fn hash_password_writes_argon2id_that_verifies() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        check_hash(&hash).unwrap();
        assert!(verify_hash(&hash, "correct horse"));
        assert!(!verify_hash(&hash, "correct horsE"));
    }

    #[test]
    fn passwd_adds_then_changes_and_keeps_groups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        let groups = ["breakglass".to_string()];
        assert_eq!(
            passwd(&path, "root2", "first", Some(&groups)).unwrap(),
            PasswdOutcome::Added
        );
        assert_eq!(
            passwd(&path, "root2", "second", None).unwrap(),
            PasswdOutcome::Changed
        );
        let users = LocalUsers::load(&path).unwrap();
        assert_eq!(users.find("root2").unwrap().groups, groups);
        assert!(users.verify("root2", "second").is_some());
        assert!(users.verify("root2", "first").is_none());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        for (name, pw, want) in [
            ("a:b", "x", "cannot be a user name"),
            ("ok", "", "the password is empty"),
        ] {
            let err = passwd(&path, name, pw, None).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
        std::fs::write(&path, "broken line\n").unwrap();
        let err = passwd(&path, "x", "y", None).unwrap_err().to_string();
        assert!(err.contains("left alone"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "broken line\n");
    }

    #[test]
    fn user_names_are_checked() {
        for (name, ok) in [
            ("alice", true),
            ("svc.backup-01@corp", true),
            ("", false),
            ("a:b", false),
            ("a,b", false),
            ("a b", false),
            ("a\nb", false),
            (&"x".repeat(MAX_USER_LEN + 1), false),
        ] {
            assert_eq!(valid_user_name(name), ok, "{name:?}");
        }
    }
}
