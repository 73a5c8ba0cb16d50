//! Small answers and log helpers the flows share: plain-text bodies, refusals of the request
//! target and of ambiguous paths, and clipping of paths and methods for log lines.

use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};

use super::ConnInfo;
use crate::log_throttle::LogThrottle;
use crate::pages;
use crate::proxy::{self, Body};
use crate::target::TargetRefusal;

pub(super) fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(proxy::full(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(super) fn clip_path(p: &str) -> String {
    crate::saml::error::clip(p)
}

/// Longest method a log line shows whole (an extension method may be as long as the request
/// line); hyper admits only token characters, so nothing else needs neutralising.
const METHOD_LOG_CHARS: usize = 32;

/// The method for a log line: borrowed when short (every real one), clipped otherwise.
pub(super) fn clip_method(m: &Method) -> std::borrow::Cow<'_, str> {
    let m = m.as_str();
    if m.len() <= METHOD_LOG_CHARS {
        std::borrow::Cow::Borrowed(m)
    } else {
        std::borrow::Cow::Owned(crate::saml::error::clip_to(m, METHOD_LOG_CHARS))
    }
}

/// The answer to a request [`target::check`] refused: audited with its precise reason,
/// never dispatched.
pub(super) fn refuse_target(
    refusal: TargetRefusal,
    method: &Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    conn: ConnInfo,
    logs: &LogThrottle,
) -> Response<Body> {
    let reason = refusal.reason();
    match refusal {
        TargetRefusal::EncodedGatewayPath | TargetRefusal::DotSegment => {
            return ambiguous_path(reason, uri.path(), headers, conn, logs)
        }
        _ => {
            if logs.audit(conn.client, "request_refused", reason) {
                tracing::warn!(target: "samlgate::audit", event = "request_refused", reason, method = %clip_method(method), request_target = %clip_path(&uri.to_string()), client = %conn.client);
            }
        }
    }
    let mut response = pages::simple(
        refusal.status(),
        refusal.code(),
        refusal.message(),
        pages::accepts_html(headers),
    );
    if refusal == TargetRefusal::Connect {
        // A 405 names what is allowed (RFC 9110 §15.5.6): any method but CONNECT goes on.
        response.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
        );
    }
    response
}

/// 400 for a path that another decoding would read differently while rules restrict paths.
pub(super) fn ambiguous_path(
    reason: &'static str,
    path: &str,
    headers: &HeaderMap,
    conn: ConnInfo,
    logs: &LogThrottle,
) -> Response<Body> {
    if logs.audit(conn.client, "path_refused", reason) {
        tracing::warn!(target: "samlgate::audit", event = "path_refused", reason, path = %clip_path(path), client = %conn.client);
    }
    pages::simple(
        StatusCode::BAD_REQUEST,
        "ambiguous_path",
        "This address is encoded in a way the gateway cannot check. Use the plain address.",
        pages::accepts_html(headers),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_methods_are_clipped_in_logs() {
        assert!(matches!(
            clip_method(&Method::GET),
            std::borrow::Cow::Borrowed("GET")
        ));
        let long = Method::from_bytes("X".repeat(400_000).as_bytes()).unwrap();
        let shown = clip_method(&long);
        assert_eq!(shown.chars().count(), METHOD_LOG_CHARS + 1, "{shown}");
        assert!(shown.ends_with('…'));
    }
}
