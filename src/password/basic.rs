//! HTTP Basic (RFC 7617) as API clients send it: `Authorization: Basic base64(user:password)`.
//! [`parse`] is the whole decision, pure: exactly one `Authorization` header, the `Basic`
//! scheme (any case), strict base64 of at most [`MAX_ENCODED`] bytes, UTF-8, a colon, a user
//! name without control characters. What it returns is checked again by the sign-in flow
//! (empty password refused there, with the same answer as a wrong one).

use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::HeaderMap;

/// Longest encoded credentials accepted (about 768 bytes of name and password).
pub const MAX_ENCODED: usize = 1024;

/// A user name and password from a request. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// What the `Authorization` header said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BasicHeader {
    /// No `Authorization` header at all.
    Absent,
    /// Another scheme (`Bearer …`): not ours to judge.
    OtherScheme,
    /// `Basic` with usable credentials.
    Credentials(Credentials),
    /// `Basic` (or several headers) that cannot be read; the reason is for the audit log.
    Malformed(&'static str),
}

/// Reads the `Authorization` header(s) of a request.
pub fn parse(headers: &HeaderMap) -> BasicHeader {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return BasicHeader::Absent;
    };
    if values.next().is_some() {
        return BasicHeader::Malformed("several Authorization headers");
    }
    let Ok(text) = value.to_str() else {
        return BasicHeader::Malformed("Authorization is not visible ASCII");
    };
    let (scheme, rest) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return BasicHeader::OtherScheme;
    }
    decode(rest.trim())
}

fn decode(encoded: &str) -> BasicHeader {
    if encoded.is_empty() {
        return BasicHeader::Malformed("Basic without credentials");
    }
    if encoded.len() > MAX_ENCODED {
        return BasicHeader::Malformed("Basic credentials too long");
    }
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
        return BasicHeader::Malformed("Basic credentials are not base64");
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return BasicHeader::Malformed("Basic credentials are not UTF-8");
    };
    let Some((user, password)) = text.split_once(':') else {
        return BasicHeader::Malformed("Basic credentials without `:`");
    };
    if user.is_empty() || user.chars().any(char::is_control) {
        return BasicHeader::Malformed("Basic user name empty or with control characters");
    }
    BasicHeader::Credentials(Credentials {
        user: user.to_string(),
        password: password.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn authorization_headers_are_read_strictly() {
        let creds = |u: &str, p: &str| {
            BasicHeader::Credentials(Credentials {
                user: u.into(),
                password: p.into(),
            })
        };
        let cases: Vec<(Vec<String>, BasicHeader)> = vec![
            (vec![], BasicHeader::Absent),
            (
                vec![format!("Basic {}", b64("alice:pw"))],
                creds("alice", "pw"),
            ),
            (
                vec![format!("basic  {}", b64("alice:p:w"))],
                creds("alice", "p:w"),
            ),
            (vec![format!("Basic {}", b64("alice:"))], creds("alice", "")),
            (
                vec![format!("Basic {}", b64("jürgen:pässword"))],
                creds("jürgen", "pässword"),
            ),
            (vec!["Bearer abc".into()], BasicHeader::OtherScheme),
            (
                vec!["Basic".into()],
                BasicHeader::Malformed("Basic without credentials"),
            ),
            (
                vec![format!("Basic {}", b64("alice:pw")), "Basic eA==".into()],
                BasicHeader::Malformed("several Authorization headers"),
            ),
            (
                vec!["Basic !!!".into()],
                BasicHeader::Malformed("Basic credentials are not base64"),
            ),
            (
                vec![format!("Basic {}", b64("alicepw"))],
                BasicHeader::Malformed("Basic credentials without `:`"),
            ),
            (
                vec![format!("Basic {}", b64(":pw"))],
                BasicHeader::Malformed("Basic user name empty or with control characters"),
            ),
            (
                vec![format!("Basic {}", b64("al\nice:pw"))],
                BasicHeader::Malformed("Basic user name empty or with control characters"),
            ),
            (
                vec![format!("Basic {}", "QUFB".repeat(300))],
                BasicHeader::Malformed("Basic credentials too long"),
            ),
        ];
        for (values, want) in cases {
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            assert_eq!(parse(&with(&refs)), want, "{values:?}");
        }
    }

    #[test]
    fn invalid_utf8_is_refused() {
        let encoded = base64::engine::general_purpose::STANDARD.encode([b'a', b':', 0xff]);
        assert_eq!(
            parse(&with(&[&format!("Basic {encoded}")])),
            BasicHeader::Malformed("Basic credentials are not UTF-8")
        );
    }

    #[test]
    fn debug_hides_the_password() {
        let c = Credentials {
            user: "alice".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
