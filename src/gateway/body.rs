//! Request bodies the gateway reads itself (ACS posts, the sign-out form, HTTP-POST logout
//! messages): only HTML forms, bounded in size and in time.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::Gateway;
use crate::saml::error::LoginError;

/// A request body the gateway reads itself (ACS post, sign-out form) must arrive whole within
/// this many times `server.header_read_timeout`: the setting operators already fit to their
/// slowest clients, and 3 × the default 10 s leaves a half-megabyte form room on a slow link.
const BODY_READ_TIMEOUT_FACTOR: u32 = 3;

impl Gateway {
    /// Deadline for a whole request body the gateway reads itself.
    pub(super) fn body_read_timeout(&self) -> Duration {
        self.settings
            .server
            .header_read_timeout
            .saturating_mul(BODY_READ_TIMEOUT_FACTOR)
    }
}

/// Reads a request body up to `limit` bytes within `deadline`; larger bodies are refused
/// without buffering them, and one still arriving at the deadline is dropped (its
/// connection with it).
pub(super) async fn read_limited(
    body: Incoming,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, LoginError> {
    match tokio::time::timeout(deadline, Limited::new(body, limit).collect()).await {
        Err(_elapsed) => Err(LoginError::BodyTimeout { after: deadline }),
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(LoginError::BodyTooLarge { limit })
        }
        Ok(Err(_)) => Err(LoginError::Malformed("the request body could not be read")),
    }
}

/// Whether a POST carries an HTML form (`application/x-www-form-urlencoded`, any parameters):
/// the only body the ACS and the HTTP-POST binding of `/saml/slo` read.
pub(super) fn is_form_urlencoded(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn only_html_forms_are_read_as_saml_posts() {
        for (content_type, form) in [
            (Some("application/x-www-form-urlencoded"), true),
            (
                Some(" Application/X-WWW-Form-Urlencoded; charset=UTF-8"),
                true,
            ),
            (Some("multipart/form-data; boundary=x"), false),
            (Some("application/json"), false),
            (Some("text/plain"), false),
            (None, false),
        ] {
            let mut h = HeaderMap::new();
            if let Some(v) = content_type {
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
            }
            assert_eq!(super::is_form_urlencoded(&h), form, "{content_type:?}");
        }
    }
}
