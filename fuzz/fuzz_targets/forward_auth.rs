//! Forward-auth's original request from a check's method, path, query and headers. Never
//! panics; an untrusted peer's headers change nothing; an accepted original URI is an
//! origin-form path (one leading `/`, visible ASCII, no fragment, bounded) and agrees with
//! every URI header the trusted proxy sent.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use samlgate::forward_auth::{original_request, MAX_URI_LEN};

/// The input is text, one item a line: the check's method, the rest of its path after
/// `/saml/auth`, its query (`-` for none), `trusted` or anything else, then `name: value`
/// header lines (values are raw bytes, so they may hold anything a header can).
struct Check {
    method: Method,
    check_path: String,
    query: Option<String>,
    trusted: bool,
    headers: HeaderMap,
}

fn parse(data: &[u8]) -> Option<Check> {
    let mut lines = data.split(|b| *b == b'\n');
    let method = Method::from_bytes(lines.next()?).ok()?;
    let suffix = std::str::from_utf8(lines.next()?).ok()?;
    let query = match std::str::from_utf8(lines.next()?).ok()? {
        "-" => None,
        q => Some(q.to_string()),
    };
    let trusted = lines.next()? == b"trusted";
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(n, v);
        }
    }
    Some(Check {
        method,
        check_path: format!("/saml/auth{suffix}"),
        query,
        trusted,
        headers,
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(check) = parse(data) else {
        return;
    };
    let (method, check_path, headers) = (&check.method, &check.check_path, &check.headers);
    let result = original_request(
        method,
        check_path,
        check.query.as_deref(),
        "/saml/auth",
        headers,
        check.trusted,
    );
    if !check.trusted {
        let plain = original_request(
            method,
            check_path,
            check.query.as_deref(),
            "/saml/auth",
            &HeaderMap::new(),
            false,
        );
        assert_eq!(
            result, plain,
            "an untrusted peer's headers changed the answer"
        );
    }
    let Ok(original) = result else {
        return;
    };
    assert!(original.uri.starts_with('/'), "{original:?}");
    assert!(original.path().starts_with('/'), "{original:?}");
    if original.described && check.trusted {
        let from_headers = ["x-forwarded-uri", "x-original-uri", "x-original-url"]
            .iter()
            .any(|n| headers.contains_key(*n));
        if from_headers {
            assert!(!original.uri.starts_with("//"), "{original:?}");
            assert!(original.uri.len() <= MAX_URI_LEN, "{original:?}");
            assert!(!original.uri.contains('#'), "{original:?}");
            assert!(
                original.uri.bytes().all(|b| b.is_ascii_graphic()),
                "{original:?}"
            );
        }
    }
    if !check.trusted {
        assert_eq!(original.host, None);
        assert_eq!(original.https, None);
    }
});
