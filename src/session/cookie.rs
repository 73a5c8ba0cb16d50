//! The cookie codec: a 256-bit id sealed with HMAC-SHA256 so a forged or altered cookie is
//! refused before any store lookup, the `Set-Cookie` strings the gateway emits, and the
//! rules for the cookies' names (`__Host-` by default where it holds).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;

/// Seals and opens ids for one purpose ("session", "login"); keys for different purposes
/// are derived separately so a login cookie can never pass as a session cookie.
#[derive(Clone)]
pub struct Sealer {
    key: hmac::Key,
}

const ID_B64_LEN: usize = 43; // 32 bytes, base64url without padding
const TAG_B64_LEN: usize = 43;

impl Sealer {
    pub fn new(secret: &[u8], purpose: &str) -> Self {
        let master = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let derived = hmac::sign(
            &master,
            format!("samlgate cookie key: {purpose}").as_bytes(),
        );
        Sealer {
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
        }
    }

    pub fn seal(&self, id: &[u8; 32]) -> String {
        let tag = hmac::sign(&self.key, id);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(id),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    /// Returns the id only when the tag verifies (constant-time comparison).
    pub fn open(&self, value: &str) -> Option<[u8; 32]> {
        let (id_b64, tag_b64) = value.split_once('.')?;
        if id_b64.len() != ID_B64_LEN || tag_b64.len() != TAG_B64_LEN {
            return None;
        }
        let mut id = [0u8; 32];
        let n = URL_SAFE_NO_PAD.decode_slice(id_b64, &mut id).ok()?;
        if n != 32 {
            return None;
        }
        let mut tag = [0u8; 33];
        let n = URL_SAFE_NO_PAD.decode_slice(tag_b64, &mut tag).ok()?;
        hmac::verify(&self.key, &id, &tag[..n]).ok()?;
        Some(id)
    }

    /// A MAC over arbitrary data (CSRF tokens bound to a session).
    pub fn tag(&self, data: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, data).as_ref())
    }

    pub fn verify_tag(&self, data: &[u8], tag_b64: &str) -> bool {
        let mut tag = [0u8; 33];
        match URL_SAFE_NO_PAD.decode_slice(tag_b64, &mut tag) {
            Ok(n) => hmac::verify(&self.key, data, &tag[..n]).is_ok(),
            Err(_) => false,
        }
    }
}

/// Finds the value of cookie `name` in all `Cookie` headers. Returns every value with that
/// name (a duplicate may be planted by a sibling subdomain; callers try each).
pub fn find_cookies<'a>(
    headers: &'a http::HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"'))
        })
}

/// Attributes of a cookie the gateway sets.
#[derive(Debug, Clone)]
pub struct CookieSpec<'a> {
    pub name: &'a str,
    pub path: &'a str,
    pub domain: Option<&'a str>,
    pub secure: bool,
    pub same_site: SameSite,
    pub max_age_secs: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    None,
}

impl CookieSpec<'_> {
    pub fn set(&self, value: &str) -> String {
        let mut c = cookie::Cookie::new(self.name.to_string(), value.to_string());
        c.set_path(self.path.to_string());
        if let Some(d) = self.domain {
            c.set_domain(d.to_string());
        }
        c.set_http_only(true);
        c.set_secure(self.secure);
        c.set_same_site(match self.same_site {
            SameSite::Lax => cookie::SameSite::Lax,
            SameSite::None => cookie::SameSite::None,
        });
        if let Some(age) = self.max_age_secs {
            c.set_max_age(cookie::time::Duration::seconds(age as i64));
        }
        c.to_string()
    }

    pub fn clear(&self) -> String {
        let mut spec = self.clone();
        spec.max_age_secs = Some(0);
        spec.set("")
    }
}

/// Where a cookie is sent: what the `__Host-` and `__Secure-` name prefixes are checked
/// against (RFC 6265bis 4.1.3; browsers match the prefixes case-insensitively).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieScope<'a> {
    /// `Secure` (samlgate is reached over https).
    pub secure: bool,
    /// The `Domain` attribute; `None` is host-only.
    pub domain: Option<&'a str>,
    pub path: &'a str,
}

impl CookieScope<'_> {
    /// `__Host-` needs `Secure`, no `Domain` and `Path=/`: such a cookie can only have been
    /// set by this very host over https, never planted by a sibling subdomain.
    pub fn allows_host_prefix(&self) -> bool {
        self.secure && self.domain.is_none() && self.path == "/"
    }
}

/// samlgate's default cookie names, with and without `__Host-` (earlier versions set the
/// plain ones over https too): stripped before forwarding whatever the configured names are,
/// so a cookie left from an upgrade or a name change never reaches the application.
pub const DEFAULT_NAMES: [&str; 4] = [
    "samlgate_session",
    "samlgate_login",
    "__Host-samlgate_session",
    "__Host-samlgate_login",
];

pub const HOST_PREFIX: &str = "__Host-";
pub const SECURE_PREFIX: &str = "__Secure-";

fn has_prefix(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// The name a gateway cookie goes by: the operator's name as typed when one was set;
/// otherwise `base` with the `__Host-` prefix where the scope allows it (https, host-only,
/// `Path=/`), else `base` alone.
pub fn effective_name(explicit: Option<&str>, base: &str, scope: CookieScope<'_>) -> String {
    match explicit {
        Some(name) => name.to_string(),
        None if scope.allows_host_prefix() => format!("{HOST_PREFIX}{base}"),
        None => base.to_string(),
    }
}

/// Why a browser would refuse a cookie of this name in this scope (a prefixed name whose
/// rules the scope breaks), or `None` when the name fits.
pub fn prefix_problem(name: &str, scope: CookieScope<'_>) -> Option<&'static str> {
    if has_prefix(name, HOST_PREFIX) {
        if !scope.secure {
            return Some("a `__Host-` cookie needs an https `public_url` (Secure)");
        }
        if scope.domain.is_some() {
            return Some("a `__Host-` cookie cannot have a domain: unset `session.cookie_domain`");
        }
        if scope.path != "/" {
            return Some("a `__Host-` cookie needs Path=/: set `session.cookie_path` to \"/\"");
        }
    } else if has_prefix(name, SECURE_PREFIX) && !scope.secure {
        return Some("a `__Secure-` cookie needs an https `public_url` (Secure)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_rejects_tampering() {
        let s = Sealer::new(&[1u8; 32], "session");
        let id = [9u8; 32];
        let sealed = s.seal(&id);
        assert_eq!(s.open(&sealed), Some(id));
        let mut bad = sealed.clone().into_bytes();
        bad[3] = if bad[3] == b'A' { b'B' } else { b'A' };
        assert_eq!(s.open(std::str::from_utf8(&bad).unwrap()), None);
        assert_eq!(s.open(""), None);
        assert_eq!(s.open("."), None);
        assert_eq!(s.open(&sealed[..sealed.len() - 1]), None);
        assert_eq!(s.open(&format!("{sealed}x")), None);
    }

    #[test]
    fn purposes_and_secrets_do_not_mix() {
        let id = [5u8; 32];
        let session = Sealer::new(&[1u8; 32], "session");
        let login = Sealer::new(&[1u8; 32], "login");
        let other = Sealer::new(&[2u8; 32], "session");
        let sealed = session.seal(&id);
        assert_eq!(login.open(&sealed), None);
        assert_eq!(other.open(&sealed), None);
    }

    #[test]
    fn finds_cookie_among_many_headers() {
        let mut h = http::HeaderMap::new();
        h.append(
            http::header::COOKIE,
            "a=1; samlgate_session=abc".parse().unwrap(),
        );
        h.append(
            http::header::COOKIE,
            "samlgate_session=def".parse().unwrap(),
        );
        let found: Vec<_> = find_cookies(&h, "samlgate_session").collect();
        assert_eq!(found, vec!["abc", "def"]);
        assert_eq!(find_cookies(&h, "samlgate").count(), 0);
    }

    #[test]
    fn set_cookie_has_the_flags() {
        let spec = CookieSpec {
            name: "samlgate_login",
            path: "/saml/acs",
            domain: None,
            secure: true,
            same_site: SameSite::None,
            max_age_secs: Some(900),
        };
        let v = spec.set("x.y");
        for part in [
            "samlgate_login=x.y",
            "HttpOnly",
            "Secure",
            "SameSite=None",
            "Path=/saml/acs",
            "Max-Age=900",
        ] {
            assert!(v.contains(part), "{v} lacks {part}");
        }
        assert!(spec.clear().contains("Max-Age=0"));
    }

    const HTTPS_HOST_ONLY: CookieScope<'static> = CookieScope {
        secure: true,
        domain: None,
        path: "/",
    };

    #[test]
    fn default_names_take_the_host_prefix_only_where_it_holds() {
        let cases: &[(CookieScope<'_>, &str)] = &[
            (HTTPS_HOST_ONLY, "__Host-samlgate_session"),
            (
                CookieScope {
                    secure: false,
                    ..HTTPS_HOST_ONLY
                },
                "samlgate_session",
            ),
            (
                CookieScope {
                    domain: Some("example.com"),
                    ..HTTPS_HOST_ONLY
                },
                "samlgate_session",
            ),
            (
                CookieScope {
                    path: "/app",
                    ..HTTPS_HOST_ONLY
                },
                "samlgate_session",
            ),
        ];
        for (scope, want) in cases {
            assert_eq!(
                effective_name(None, "samlgate_session", *scope),
                *want,
                "{scope:?}"
            );
        }
    }

    #[test]
    fn explicit_names_are_kept_as_typed() {
        for scope in [
            HTTPS_HOST_ONLY,
            CookieScope {
                secure: false,
                ..HTTPS_HOST_ONLY
            },
        ] {
            assert_eq!(
                effective_name(Some("sid"), "samlgate_session", scope),
                "sid"
            );
            assert_eq!(
                effective_name(Some("samlgate_session"), "samlgate_session", scope),
                "samlgate_session"
            );
        }
    }

    #[test]
    fn prefixed_names_must_meet_their_rules() {
        let http = CookieScope {
            secure: false,
            ..HTTPS_HOST_ONLY
        };
        let domain = CookieScope {
            domain: Some("example.com"),
            ..HTTPS_HOST_ONLY
        };
        let sub_path = CookieScope {
            path: "/app",
            ..HTTPS_HOST_ONLY
        };
        let cases: &[(&str, CookieScope<'_>, Option<&str>)] = &[
            ("__Host-s", HTTPS_HOST_ONLY, None),
            ("__Host-s", http, Some("https")),
            ("__host-s", http, Some("https")),
            ("__HOST-s", domain, Some("domain")),
            ("__Host-s", sub_path, Some("Path=/")),
            ("__Secure-s", domain, None),
            ("__Secure-s", sub_path, None),
            ("__secure-s", http, Some("https")),
            ("plain", http, None),
            ("_Host-s", http, None),
        ];
        for (name, scope, want) in cases {
            let got = prefix_problem(name, *scope);
            match want {
                None => assert_eq!(got, None, "{name} {scope:?}"),
                Some(word) => assert!(
                    got.is_some_and(|m| m.contains(word)),
                    "{name} {scope:?}: {got:?}"
                ),
            }
        }
    }
}
