//! Where a browser may be sent after sign-in: only a path on this site. Absolute URLs,
//! protocol-relative `//host`, backslashes (browsers read `/\host` as `//host`) and their
//! percent-encoded forms are refused, so RelayState and `?rd=` can never become an open
//! redirect.

use percent_encoding::percent_decode_str;

const MAX_LEN: usize = 2048;

/// Returns the path unchanged when it is a safe local path, `None` otherwise.
pub fn safe_return_path(raw: &str) -> Option<&str> {
    if raw.is_empty() || raw.len() > MAX_LEN {
        return None;
    }
    // Check the raw form and every percent-decoding of it (double encoding included).
    let mut current = raw.to_string();
    for _ in 0..4 {
        if !looks_local(&current) {
            return None;
        }
        let decoded = percent_decode_str(&current)
            .decode_utf8()
            .ok()?
            .into_owned();
        if decoded == current {
            return Some(raw);
        }
        current = decoded;
    }
    None
}

fn looks_local(p: &str) -> bool {
    let b = p.as_bytes();
    b.first() == Some(&b'/')
        && !matches!(b.get(1), Some(b'/') | Some(b'\\'))
        && !p.contains('\\')
        && !p.chars().any(|c| c.is_control() || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_pass_unchanged() {
        for p in [
            "/",
            "/dashboard",
            "/a/b?x=1&y=%2F#frag",
            "/api/v1/items?next=/home",
            "/caf%C3%A9",
        ] {
            assert_eq!(safe_return_path(p), Some(p), "{p}");
        }
    }

    #[test]
    fn open_redirects_are_refused() {
        for p in [
            "",
            "https://evil.example",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/%2F%2Fevil.example",
            "/%2fevil.example",
            "%2F%2Fevil.example",
            "/%5Cevil.example",
            "/%255Cevil.example",
            "/%25252F/evil",
            "javascript:alert(1)",
            " /x",
            "/x\r\nSet-Cookie: a=b",
            "/x%0d%0aSet-Cookie:%20a=b",
            "/a\tb",
            "evil.example/path",
        ] {
            assert_eq!(safe_return_path(p), None, "{p:?} should be refused");
        }
        assert_eq!(safe_return_path(&format!("/{}", "a".repeat(3000))), None);
    }
}
