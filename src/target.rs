//! Refusals decided from the request line and `Host` alone, before a request is dispatched:
//! a target that is not a path (`CONNECT`, `OPTIONS *`), `Host` headers that disagree with
//! each other or with the URI's authority, a percent-encoded spelling of one of the gateway's
//! own paths, and dot segments in a path that would be forwarded. Pure functions on the
//! method, URI and headers; the gateway turns a [`TargetRefusal`] into a status, a page and
//! an audit line. Each check costs a byte scan on an ordinary request and allocates only when
//! the path holds a `%`.

use std::borrow::Cow;

use http::{header, HeaderMap, Method, StatusCode, Uri};

use crate::gateway::{route, Paths, Route};

/// Why a request was refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetRefusal {
    /// `CONNECT`: the gateway is no tunnel.
    Connect,
    /// The target is not an absolute path (`OPTIONS *`, an authority form, empty).
    NotAPath,
    /// More than one `Host` header.
    SeveralHosts,
    /// `Host` and the authority of the request target (HTTP/2 `:authority`, an HTTP/1
    /// absolute-form target) name different hosts.
    HostMismatch,
    /// Percent-decoding the path turns it into one of the gateway's own paths, which an
    /// upstream that decodes would serve (the gateway never forwards those).
    EncodedGatewayPath,
    /// A `.` or `..` segment (raw or percent-encoded): an upstream that resolves it would
    /// serve another path than the one the access rules judged, possibly outside the
    /// upstream's base path.
    DotSegment,
}

impl TargetRefusal {
    pub fn status(self) -> StatusCode {
        match self {
            TargetRefusal::Connect => StatusCode::METHOD_NOT_ALLOWED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The precise reason for the audit line.
    pub fn reason(self) -> &'static str {
        match self {
            TargetRefusal::Connect => "CONNECT is not served (the gateway is no tunnel)",
            TargetRefusal::NotAPath => "request target is not an absolute path",
            TargetRefusal::SeveralHosts => "more than one Host header",
            TargetRefusal::HostMismatch => "Host header differs from the request URI's authority",
            TargetRefusal::EncodedGatewayPath => {
                "ambiguous path: percent-decoded it is one of the gateway's own paths"
            }
            TargetRefusal::DotSegment => "path contains a dot segment (. or ..)",
        }
    }

    /// The stable code of the JSON answer.
    pub fn code(self) -> &'static str {
        match self {
            TargetRefusal::Connect => "method_not_allowed",
            TargetRefusal::NotAPath => "bad_target",
            TargetRefusal::SeveralHosts | TargetRefusal::HostMismatch => "bad_host",
            TargetRefusal::EncodedGatewayPath | TargetRefusal::DotSegment => "ambiguous_path",
        }
    }

    /// The sentence people and API clients see.
    pub fn message(self) -> &'static str {
        match self {
            TargetRefusal::Connect => "This server does not open tunnels.",
            TargetRefusal::NotAPath => "This request does not name a page on this server.",
            TargetRefusal::SeveralHosts | TargetRefusal::HostMismatch => {
                "This request names more than one host."
            }
            TargetRefusal::EncodedGatewayPath | TargetRefusal::DotSegment => {
                "This address is encoded in a way the gateway cannot check. Use the plain address."
            }
        }
    }
}

/// Checks a request's target before dispatch. `which` is [`route`] of the raw path: the
/// path checks apply only to requests that would be forwarded ([`Route::Protected`]).
pub fn check(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    paths: &Paths,
    which: Route,
) -> Result<(), TargetRefusal> {
    if *method == Method::CONNECT {
        return Err(TargetRefusal::Connect);
    }
    let path = uri.path();
    if !path.starts_with('/') {
        return Err(TargetRefusal::NotAPath);
    }
    host_conflict(headers, uri)?;
    if which == Route::Protected {
        if encoded_gateway_path(path, paths) {
            return Err(TargetRefusal::EncodedGatewayPath);
        }
        if has_dot_segment(path) {
            return Err(TargetRefusal::DotSegment);
        }
    }
    Ok(())
}

/// At most one `Host`, and naming the same host and port as the URI's authority when the
/// request has both (HTTP/2 `:authority`, an HTTP/1 absolute-form target). Compared as
/// RFC 9113 §8.3.1 asks: host names ignoring ASCII case, a missing port as the scheme's
/// default (`app` = `app:443` over https), userinfo in the target ignored. A `Host` that is
/// not a plain `host[:port]` never matches.
pub fn host_conflict(headers: &HeaderMap, uri: &Uri) -> Result<(), TargetRefusal> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err(TargetRefusal::SeveralHosts);
    }
    match (first, uri.authority()) {
        (Some(host), Some(authority)) if !same_host(host.as_bytes(), authority, uri) => {
            Err(TargetRefusal::HostMismatch)
        }
        _ => Ok(()),
    }
}

/// Whatever follows the last `:` after the host (past an IPv6 literal's `]`) is digits only,
/// at most five of them (empty: the default port).
fn numeric_port(authority: &str) -> bool {
    let after_host = authority
        .rfind(']')
        .map_or(authority, |i| &authority[i + 1..]);
    match after_host.rfind(':') {
        None => true,
        Some(i) => {
            let port = &after_host[i + 1..];
            port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
        }
    }
}

fn same_host(host: &[u8], authority: &http::uri::Authority, uri: &Uri) -> bool {
    if host.contains(&b'@') {
        return false;
    }
    let Ok(host) = http::uri::Authority::try_from(host) else {
        return false;
    };
    // A port that is not a number (which the parser treats as no port) matches nothing.
    if !numeric_port(host.as_str()) || !numeric_port(authority.as_str()) {
        return false;
    }
    let default_port = match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => Some(443),
        Some(s) if s.eq_ignore_ascii_case("http") => Some(80),
        _ => None,
    };
    host.host().eq_ignore_ascii_case(authority.host())
        && host.port_u16().or(default_port) == authority.port_u16().or(default_port)
}

/// How many rounds of percent-decoding the path checks see through (`%2573` → `%73` → `s`):
/// an upstream, or a chain of them, may decode more than once.
const DECODE_ROUNDS: usize = 3;

/// The path after each round of percent-decoding that changes it (the raw path first).
fn decodings(path: &str) -> impl Iterator<Item = Cow<'_, str>> {
    let mut next = Some(Cow::Borrowed(path));
    std::iter::from_fn(move || {
        let current = next.take()?;
        if current.contains('%') {
            let decoded: String = percent_encoding::percent_decode_str(&current)
                .decode_utf8_lossy()
                .into_owned();
            if decoded != *current {
                next = Some(Cow::Owned(decoded));
            }
        }
        Some(current)
    })
    .take(DECODE_ROUNDS + 1)
}

/// The raw path routes to the upstream, but a decoded form of it is the gateway's own
/// (`/%73aml/x`, `/saml%2Fx`, `/%2568ealthz`).
pub fn encoded_gateway_path(path: &str, paths: &Paths) -> bool {
    path.contains('%')
        && decodings(path)
            .skip(1)
            .any(|p| route(&p, paths) != Route::Protected)
}

/// Whether any segment of the path, raw or percent-decoded, is `.` or `..`. Segments are
/// split at `/` and `\` (some servers take both), and a `;parameter` is ignored (`..;` is
/// `..` to Tomcat and others).
pub fn has_dot_segment(path: &str) -> bool {
    if !path.bytes().any(|b| b == b'.' || b == b'%') {
        return false;
    }
    decodings(path).any(|p| {
        p.split(['/', '\\']).any(|segment| {
            let segment = segment.split(';').next().unwrap_or(segment);
            segment == "." || segment == ".."
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn paths() -> Paths {
        Paths {
            prefix: "/saml".into(),
            login: "/saml/login".into(),
            acs: "/saml-post".into(),
            metadata: "/saml/metadata".into(),
            logout: "/saml/logout".into(),
            slo: "/saml/slo".into(),
            auth: "/saml/auth".into(),
            scim: Some("/scim/v2".into()),
        }
    }

    fn checked(method: &str, target: &str, hosts: &[&str]) -> Result<(), TargetRefusal> {
        let uri: Uri = target.parse().unwrap();
        let mut headers = HeaderMap::new();
        for h in hosts {
            headers.append(header::HOST, HeaderValue::from_str(h).unwrap());
        }
        let which = route(uri.path(), &paths());
        check(
            &Method::from_bytes(method.as_bytes()).unwrap(),
            &uri,
            &headers,
            &paths(),
            which,
        )
    }

    #[test]
    fn only_path_targets_are_served() {
        assert_eq!(checked("GET", "/app", &["a"]), Ok(()));
        assert_eq!(
            checked("CONNECT", "example.com:443", &["example.com:443"]),
            Err(TargetRefusal::Connect)
        );
        assert_eq!(checked("CONNECT", "/app", &[]), Err(TargetRefusal::Connect));
        assert_eq!(
            checked("OPTIONS", "*", &["a"]),
            Err(TargetRefusal::NotAPath)
        );
        assert_eq!(
            checked("GET", "example.com:80", &["example.com:80"]),
            Err(TargetRefusal::NotAPath)
        );
        assert_eq!(
            TargetRefusal::Connect.status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(TargetRefusal::NotAPath.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn host_must_be_single_and_agree_with_the_authority() {
        assert_eq!(checked("GET", "/app", &[]), Ok(()));
        assert_eq!(
            checked("GET", "/app", &["a", "a"]),
            Err(TargetRefusal::SeveralHosts)
        );
        assert_eq!(
            checked("GET", "/app", &["a", "b"]),
            Err(TargetRefusal::SeveralHosts)
        );
        assert_eq!(checked("GET", "http://App.Test/x", &["app.test"]), Ok(()));
        assert_eq!(checked("GET", "http://app.test/x", &[]), Ok(()));
        assert_eq!(
            checked("GET", "http://app.test/x", &["evil.test"]),
            Err(TargetRefusal::HostMismatch)
        );
        assert_eq!(
            checked("GET", "http://app.test:8080/x", &["app.test"]),
            Err(TargetRefusal::HostMismatch)
        );
        // The scheme's default port may be written on either side, and userinfo is no host.
        for (target, host) in [
            ("http://app.test/x", "app.test:80"),
            ("http://app.test:80/x", "app.test"),
            ("https://app.test:443/x", "APP.test"),
            ("https://app.test/x", "app.test:443"),
            ("http://u@app.test/x", "app.test"),
            ("http://[::1]:8080/x", "[::1]:8080"),
        ] {
            assert_eq!(checked("GET", target, &[host]), Ok(()), "{target} {host}");
        }
        for (target, host) in [
            ("http://app.test/x", "app.test:443"),
            ("https://app.test/x", "app.test:80"),
            ("http://app.test/x", "u@app.test"),
            ("http://app.test/x", "app.test:x"),
            ("http://[::1]/x", "[::2]"),
            ("http://app.test/x", "app.test.evil"),
        ] {
            assert_eq!(
                checked("GET", target, &[host]),
                Err(TargetRefusal::HostMismatch),
                "{target} {host}"
            );
        }
    }

    #[test]
    fn encoded_spellings_of_gateway_paths_are_refused() {
        let p = paths();
        for path in [
            "/%73aml/x",
            "/%73%61%6D%6c/login",
            "/saml%2Fx",
            "/saml%2fmetadata",
            "/%2573aml/x",
            "/%68ealthz",
            "/saml%2Dpost",
            "/%73aml",
        ] {
            assert!(encoded_gateway_path(path, &p), "{path}");
            assert_eq!(
                checked("GET", path, &[]),
                Err(TargetRefusal::EncodedGatewayPath),
                "{path}"
            );
        }
        for path in ["/app%20x", "/samlx%2F", "/%73amlx/y", "/saml", "/app"] {
            assert!(!encoded_gateway_path(path, &p), "{path}");
        }
        // Raw gateway paths route to the gateway itself: nothing to refuse here.
        assert_eq!(checked("GET", "/saml/x%20y", &[]), Ok(()));
    }

    #[test]
    fn dot_segments_in_any_spelling_are_refused() {
        for path in [
            "/../admin",
            "/a/./b",
            "/a/..",
            "/.",
            "/%2e%2e/admin",
            "/%2E%2e/admin",
            "/.%2E/admin",
            "/a/%2e/b",
            "/a/..%2fadmin",
            "/a%2f..%2fadmin",
            "/%252e%252e/admin",
            "/a/..;/admin",
            "/a\\..\\admin",
        ] {
            assert!(has_dot_segment(path), "{path}");
            assert_eq!(
                checked("GET", path, &[]),
                Err(TargetRefusal::DotSegment),
                "{path}"
            );
        }
        for path in [
            "/",
            "/a.b",
            "/...",
            "/.well-known/x",
            "/a/..b",
            "/a/b..",
            "/%2e%2e%2e",
        ] {
            assert!(!has_dot_segment(path), "{path}");
        }
        // Only forwarded paths: the gateway's own are routed exactly and never forwarded.
        assert_eq!(checked("GET", "/saml/../x", &[]), Ok(()));
    }
}
