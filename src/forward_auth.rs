//! Forward-auth (`/saml/auth`, for nginx `auth_request`, Traefik `forwardAuth`, Envoy
//! `ext_authz` in HTTP mode): which original request a check is about. Pure: the gateway
//! answers the check from the result.
//!
//! The proxy in front describes the original request in headers — `X-Forwarded-Method` /
//! `X-Original-Method`, `X-Forwarded-Uri` / `X-Original-URI` / `X-Original-URL` (nginx
//! ingress sends the whole URL), `X-Forwarded-Host`, `X-Forwarded-Proto`. A client could send
//! the same headers, so they are honoured only when the TCP peer is a configured trusted
//! proxy (oauth2-proxy's GHSA-7x63-xv5r-3p2x and issue #3506 show what trusting them by
//! default does). Envoy instead appends the original path to the check path
//! (`/saml/auth/<original path>`); that path is the request itself, not a forwarded claim.
//! A header present more than once, synonyms that disagree (the proxy set one, the client sent
//! the other), or a value that is not a plain origin-form URI make the check fail: any doubt
//! means no answer rather than a guess. The refusal is a 403, not a 400: these headers may be
//! a client's that the proxy passed through, and nginx's `auth_request` turns every answer but
//! 2xx, 401 and 403 into a 500, so a 400 would let any client make any request fail with 500.
//! (The example proxy configs overwrite or drop the client's copies, so there the conflict
//! cannot arise.)

use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// Longest original URI accepted (nginx's default large header buffer is 8 KiB).
pub const MAX_URI_LEN: usize = 8192;

const METHOD_HEADERS: [&str; 2] = ["x-forwarded-method", "x-original-method"];
const URI_HEADERS: [&str; 3] = ["x-forwarded-uri", "x-original-uri", "x-original-url"];
const X_FORWARDED_HOST: &str = "x-forwarded-host";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";

/// The request a forward-auth check is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalRequest {
    pub method: Method,
    /// Origin form (`/path?query`), always starting with `/`.
    pub uri: String,
    /// `X-Forwarded-Host` from a trusted proxy.
    pub host: Option<HeaderValue>,
    /// `X-Forwarded-Proto` from a trusted proxy (`http` or `https`).
    pub https: Option<bool>,
    /// Whether the URI came from the proxy (trusted headers or Envoy's path); `false` means
    /// it is `/` for want of anything better.
    pub described: bool,
    /// Whether the method came from the proxy (a trusted header, or Envoy, whose check keeps
    /// the original method); `false` means it is the check's own (nginx's `auth_request`
    /// subrequests are always GET).
    pub method_described: bool,
}

impl OriginalRequest {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.uri.split_once('?').map_or(&self.uri, |(p, _)| p)
    }
}

/// Why a check request was refused (403), for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginalError {
    /// The header occurs more than once (which copy would the proxy have meant?).
    Duplicate(&'static str),
    /// The header's value is not usable (the name says which).
    Invalid(&'static str),
    /// The header disagrees with a synonym (e.g. `X-Forwarded-Uri` vs `X-Original-URI`): one
    /// of them came from the client.
    Conflict(&'static str),
}

impl std::fmt::Display for OriginalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OriginalError::Duplicate(h) => write!(f, "{h} sent more than once"),
            OriginalError::Invalid(h) => write!(f, "{h} is not a valid value"),
            OriginalError::Conflict(h) => {
                write!(
                    f,
                    "{h} disagrees with another header naming the original request"
                )
            }
        }
    }
}

/// Works out the original request of a check.
///
/// `check_method` / `check_path` are the check request's own; `auth_path` is the endpoint
/// (`/saml/auth`); `trusted_peer` says whether the TCP peer is a trusted proxy.
pub fn original_request(
    check_method: &Method,
    check_path: &str,
    check_query: Option<&str>,
    auth_path: &str,
    headers: &HeaderMap,
    trusted_peer: bool,
) -> Result<OriginalRequest, OriginalError> {
    // Envoy: `/saml/auth/<original path>` (its query travels as the check's query).
    let suffix = check_path
        .strip_prefix(auth_path)
        .filter(|rest| rest.starts_with('/'));
    let mut original = OriginalRequest {
        method: check_method.clone(),
        uri: match suffix {
            Some(rest) => match check_query {
                Some(q) => format!("{rest}?{q}"),
                None => rest.to_string(),
            },
            None => "/".to_string(),
        },
        host: None,
        https: None,
        described: suffix.is_some(),
        method_described: suffix.is_some(),
    };
    if !trusted_peer {
        return Ok(original);
    }
    let method = agreed(headers, &METHOD_HEADERS, |name, v| {
        v.to_str()
            .ok()
            .filter(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()))
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
            .ok_or(OriginalError::Invalid(name))
    })?;
    if let Some(m) = method {
        if original.method_described && m != original.method {
            return Err(OriginalError::Conflict("x-forwarded-method"));
        }
        original.method = m;
        original.method_described = true;
    }
    let uri = agreed(headers, &URI_HEADERS, |name, v| {
        origin_form(v, name == "x-original-url").ok_or(OriginalError::Invalid(name))
    })?;
    if let Some(u) = uri {
        // Envoy's path is one more synonym: a header that names another request is the
        // client's (a proxy that passes `x-` headers through).
        if original.described && u != original.uri {
            return Err(OriginalError::Conflict("x-forwarded-uri"));
        }
        original.uri = u;
        original.described = true;
    }
    if let Some(v) = single(headers, X_FORWARDED_HOST)? {
        let ok = v.len() <= 255
            && v.as_bytes()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(b));
        if !ok || v.is_empty() {
            return Err(OriginalError::Invalid(X_FORWARDED_HOST));
        }
        original.host = Some(v.clone());
    }
    if let Some(v) = single(headers, X_FORWARDED_PROTO)? {
        original.https = Some(match v.as_bytes() {
            b"https" => true,
            b"http" => false,
            _ => return Err(OriginalError::Invalid(X_FORWARDED_PROTO)),
        });
    }
    Ok(original)
}

/// The value the headers `names` (synonyms: Traefik's, nginx's, nginx ingress's) agree on,
/// each parsed by `parse`. A proxy overwrites only the names it sets and passes the client's
/// others through, so a synonym the proxy did not set may be the client's: when two
/// present synonyms disagree the check fails rather than trusting either.
fn agreed<T: PartialEq>(
    headers: &HeaderMap,
    names: &[&'static str],
    parse: impl Fn(&'static str, &HeaderValue) -> Result<T, OriginalError>,
) -> Result<Option<T>, OriginalError> {
    let mut found: Option<T> = None;
    for &name in names {
        let Some(v) = single(headers, name)? else {
            continue;
        };
        let value = parse(name, v)?;
        match &found {
            Some(earlier) if *earlier != value => return Err(OriginalError::Conflict(name)),
            Some(_) => {}
            None => found = Some(value),
        }
    }
    Ok(found)
}

fn single<'a>(
    headers: &'a HeaderMap,
    name: &'static str,
) -> Result<Option<&'a HeaderValue>, OriginalError> {
    let name = HeaderName::from_static(name);
    let mut all = headers.get_all(&name).iter();
    let first = all.next();
    if all.next().is_some() {
        return Err(OriginalError::Duplicate(name_str(&name)));
    }
    Ok(first)
}

fn name_str(name: &HeaderName) -> &'static str {
    // The names above are all 'static; map back without allocating.
    METHOD_HEADERS
        .iter()
        .chain(URI_HEADERS.iter())
        .chain([X_FORWARDED_HOST, X_FORWARDED_PROTO].iter())
        .copied()
        .find(|n| *n == name.as_str())
        .unwrap_or("x-forwarded-*")
}

/// An origin-form URI (`/path?query`) from a header value: visible ASCII only, bounded, no
/// fragment. With `absolute_ok`, an `http(s)://host/path?query` URL is reduced to its path
/// and query (nginx ingress's `X-Original-URL`).
fn origin_form(v: &HeaderValue, absolute_ok: bool) -> Option<String> {
    let s = v.to_str().ok()?;
    if s.is_empty() || s.len() > MAX_URI_LEN || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    if s.contains('#') {
        return None;
    }
    if s.starts_with('/') {
        // `//host/...` is a network-path reference, not a path.
        return (!s.starts_with("//")).then(|| s.to_string());
    }
    if !absolute_ok {
        return None;
    }
    // `http(s)://authority/path?query`, taken apart by hand: a URL parser would read `\` in
    // the authority as a path separator, `?` as the query, and resolve `..`, so a client's
    // Host header (nginx ingress builds this from `$http_host`) could pick the path judged.
    // The path stays exactly as sent, like X-Original-URI's.
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &s[8..]
    } else if lower.starts_with("http://") {
        &s[7..]
    } else {
        return None;
    };
    let slash = rest.find('/')?;
    let (authority, path) = rest.split_at(slash);
    let authority_ok = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    (authority_ok && !path.starts_with("//")).then(|| path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    fn orig(
        pairs: &[(&'static str, &str)],
        trusted: bool,
    ) -> Result<OriginalRequest, OriginalError> {
        original_request(
            &Method::GET,
            "/saml/auth",
            None,
            "/saml/auth",
            &h(pairs),
            trusted,
        )
    }

    #[test]
    fn untrusted_peers_cannot_describe_the_original_request() {
        let o = orig(
            &[
                ("x-forwarded-uri", "/public/x"),
                ("x-forwarded-method", "POST"),
                ("x-forwarded-host", "evil.example"),
                ("x-forwarded-proto", "https"),
            ],
            false,
        )
        .unwrap();
        assert_eq!(o.uri, "/");
        assert_eq!(o.method, Method::GET);
        assert_eq!(o.host, None);
        assert_eq!(o.https, None);
    }

    #[test]
    fn synonyms_that_disagree_fail_the_check() {
        // nginx sets X-Original-URI; a client adds X-Forwarded-Uri (or the other way round).
        assert_eq!(
            orig(
                &[
                    ("x-forwarded-uri", "/public/x"),
                    ("x-original-uri", "/reports")
                ],
                true
            ),
            Err(OriginalError::Conflict("x-original-uri"))
        );
        assert_eq!(
            orig(
                &[("x-original-method", "POST"), ("x-forwarded-method", "GET")],
                true
            ),
            Err(OriginalError::Conflict("x-original-method"))
        );
        assert_eq!(
            orig(
                &[
                    ("x-original-uri", "/a?b"),
                    ("x-original-url", "https://app.example.com/other")
                ],
                true
            ),
            Err(OriginalError::Conflict("x-original-url"))
        );
        // Synonyms that agree are fine (a proxy may set both).
        let o = orig(
            &[
                ("x-forwarded-uri", "/a?b"),
                ("x-original-uri", "/a?b"),
                ("x-original-url", "https://app.example.com/a?b"),
            ],
            true,
        )
        .unwrap();
        assert_eq!(o.uri, "/a?b");
    }

    #[test]
    fn trusted_proxies_headers_are_used() {
        let o = orig(
            &[
                ("x-forwarded-uri", "/reports?x=1"),
                ("x-forwarded-method", "DELETE"),
                ("x-forwarded-host", "app.example.com"),
                ("x-forwarded-proto", "https"),
            ],
            true,
        )
        .unwrap();
        assert_eq!(o.uri, "/reports?x=1");
        assert_eq!(o.path(), "/reports");
        assert_eq!(o.method, Method::DELETE);
        assert_eq!(o.host.unwrap(), "app.example.com");
        assert_eq!(o.https, Some(true));

        let o = orig(
            &[
                ("x-original-uri", "/a%20b?c=d&e"),
                ("x-original-method", "PUT"),
            ],
            true,
        )
        .unwrap();
        assert_eq!(o.uri, "/a%20b?c=d&e");
        assert_eq!(o.method, Method::PUT);
    }

    #[test]
    fn nginx_ingress_original_url_is_reduced_to_path_and_query() {
        let o = orig(
            &[(
                "x-original-url",
                "https://app.example.com/asdf/hjkl?ab=1&cd=2",
            )],
            true,
        )
        .unwrap();
        assert_eq!(o.uri, "/asdf/hjkl?ab=1&cd=2");
        assert_eq!(
            orig(&[("x-original-url", "javascript:alert(1)")], true),
            Err(OriginalError::Invalid("x-original-url"))
        );
        // The authority is checked, not parsed: `\`, `?`, `@`, `%` and empty are refused, and the
        // path is kept as sent (no dot-segment resolution, no decoding).
        for bad in [
            "https://app.example.com\\static/admin/secret",
            "https://app.example.com?/x",
            "https://user@app.example.com/x",
            "https://app%2eexample.com/x",
            "https:///x",
            "https://app.example.com",
            "https://app.example.com//evil/x",
        ] {
            assert_eq!(
                orig(&[("x-original-url", bad)], true),
                Err(OriginalError::Invalid("x-original-url")),
                "{bad}"
            );
        }
        let o = orig(
            &[(
                "x-original-url",
                "HTTPS://app.example.com:8443/secret/%2e%2e/static/x",
            )],
            true,
        )
        .unwrap();
        assert_eq!(o.uri, "/secret/%2e%2e/static/x");
        // Only X-Original-URL may be absolute.
        assert_eq!(
            orig(&[("x-forwarded-uri", "https://app.example.com/x")], true),
            Err(OriginalError::Invalid("x-forwarded-uri"))
        );
    }

    #[test]
    fn duplicates_and_bad_values_fail_the_check() {
        assert_eq!(
            orig(
                &[("x-forwarded-uri", "/a"), ("x-forwarded-uri", "/public")],
                true
            ),
            Err(OriginalError::Duplicate("x-forwarded-uri"))
        );
        for bad in [
            "//evil.example/x",
            "relative",
            "/a#frag",
            &"/x".repeat(5000),
        ] {
            assert!(orig(&[("x-forwarded-uri", bad)], true).is_err(), "{bad}");
        }
        assert!(orig(&[("x-forwarded-method", "get")], true).is_err());
        assert!(orig(&[("x-forwarded-method", "")], true).is_err());
        assert!(orig(&[("x-forwarded-proto", "gopher")], true).is_err());
        assert!(orig(&[("x-forwarded-host", "a b")], true).is_err());
        assert!(orig(&[("x-forwarded-host", "a/b")], true).is_err());
    }

    #[test]
    fn envoy_appends_the_original_path_to_the_check_path() {
        let o = original_request(
            &Method::POST,
            "/saml/auth/api/v1/items",
            Some("page=2"),
            "/saml/auth",
            &HeaderMap::new(),
            false,
        )
        .unwrap();
        assert_eq!(o.uri, "/api/v1/items?page=2");
        assert_eq!(o.method, Method::POST);
        assert!(o.described && o.method_described);
        // A trusted header naming another request or method than Envoy's own: refused.
        for (name, value, conflict) in [
            ("x-forwarded-uri", "/public/x", "x-forwarded-uri"),
            ("x-forwarded-method", "GET", "x-forwarded-method"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(value));
            assert_eq!(
                original_request(
                    &Method::DELETE,
                    "/saml/auth/admin/users/7",
                    None,
                    "/saml/auth",
                    &h,
                    true
                ),
                Err(OriginalError::Conflict(conflict))
            );
        }
        // `/saml/authx` is not the endpoint with a suffix.
        let o = original_request(
            &Method::GET,
            "/saml/authx",
            None,
            "/saml/auth",
            &HeaderMap::new(),
            false,
        )
        .unwrap();
        assert_eq!(o.uri, "/");
    }
}
