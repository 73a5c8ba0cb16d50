//! The cookie codec: a 256-bit id sealed with HMAC-SHA256 so a forged or altered cookie is
//! refused before any store lookup, plus the `Set-Cookie` strings the gateway emits.

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
}
