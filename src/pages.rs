//! The few pages people see (sign-in failed, forbidden, signed out, sign-out confirmation,
//! on to the IdP's sign-out, upstream down, too many requests) and their JSON twins for API clients. Every interpolated value is escaped.

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};

use crate::proxy::{full, Body};

/// Escapes text for HTML element content and quoted attributes (the same rules as XML).
pub use crate::saml::xml_escape as html_escape;

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Browsers navigating (GET/HEAD that accept HTML, not XHR/fetch) get pages and redirects;
/// everything else gets JSON and status codes.
pub fn is_browser_navigation(method: &http::Method, headers: &HeaderMap) -> bool {
    if method != http::Method::GET && method != http::Method::HEAD {
        return false;
    }
    accepts_html(headers)
        && !headers
            .get("x-requested-with")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"XMLHttpRequest"))
        && headers
            .get("sec-fetch-mode")
            .is_none_or(|v| v.as_bytes() == b"navigate")
}

pub fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}h1{font-size:1.4rem}a.button,button{display:inline-block;padding:.5rem 1rem;border:1px solid #446;border-radius:4px;background:#335;color:#fff;text-decoration:none;font-size:1rem;cursor:pointer}p.small{color:#666;font-size:.85rem}";

/// A whole HTML page. `body_html` must already be escaped.
pub fn page(status: StatusCode, title: &str, body_html: &str) -> Response<Body> {
    page_with_head(status, title, "", body_html)
}

/// [`page`] with extra elements in `<head>` (`head_html` must already be escaped).
fn page_with_head(
    status: StatusCode,
    title: &str,
    head_html: &str,
    body_html: &str,
) -> Response<Body> {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">{head_html}<title>{t}</title><style>{STYLE}</style></head><body><h1>{t}</h1>{body_html}</body></html>",
        t = html_escape(title)
    );
    respond(status, "text/html; charset=utf-8", html)
}

pub fn json(
    status: StatusCode,
    error: &str,
    message: &str,
    extra: &[(&str, &str)],
) -> Response<Body> {
    let mut s = format!(
        "{{\"error\":\"{}\",\"message\":\"{}\"",
        json_escape(error),
        json_escape(message)
    );
    for (k, v) in extra {
        s.push_str(&format!(",\"{}\":\"{}\"", json_escape(k), json_escape(v)));
    }
    s.push('}');
    respond(status, "application/json", s)
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    set_page_headers(
        r.headers_mut(),
        content_type,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
    );
    r
}

/// The headers every page carries: type, no caching, no sniffing, no framing, no referrer,
/// and the page's content security policy.
pub fn set_page_headers(h: &mut HeaderMap, content_type: &'static str, csp: HeaderValue) {
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("content-security-policy", csp);
}

/// Sign-in failed: headline, sentence, a link to try again.
pub fn login_failed(
    status: StatusCode,
    headline: &str,
    sentence: &str,
    retry_url: &str,
    browser: bool,
    kind: &str,
) -> Response<Body> {
    login_failed_with_password(status, headline, sentence, retry_url, browser, kind, None)
}

/// [`login_failed`] with a link to the password sign-in form (`[password_signin]`) when
/// `password_url` is set, so people still get in while the IdP cannot be used.
pub fn login_failed_with_password(
    status: StatusCode,
    headline: &str,
    sentence: &str,
    retry_url: &str,
    browser: bool,
    kind: &str,
    password_url: Option<&str>,
) -> Response<Body> {
    if !browser {
        return match password_url {
            Some(p) => json(
                status,
                kind,
                sentence,
                &[("login_url", retry_url), ("password_url", p)],
            ),
            None => json(status, kind, sentence, &[("login_url", retry_url)]),
        };
    }
    let password = password_url.map_or(String::new(), |p| {
        format!(
            "<p class=\"small\"><a href=\"{}\">Sign in with a user name and password instead</a></p>",
            html_escape(p)
        )
    });
    page(
        status,
        headline,
        &format!(
            "<p>{}</p><p><a class=\"button\" href=\"{}\">Sign in again</a></p>{password}",
            html_escape(sentence),
            html_escape(retry_url)
        ),
    )
}

pub fn forbidden(user: &str, sentence: &str, logout_url: &str, browser: bool) -> Response<Body> {
    if !browser {
        return json(
            StatusCode::FORBIDDEN,
            "forbidden",
            sentence,
            &[("user", user)],
        );
    }
    page(
        StatusCode::FORBIDDEN,
        "Access denied",
        &format!(
            "<p>You are signed in as <strong>{}</strong>.</p><p>{}</p><p class=\"small\"><a href=\"{}\">Sign out</a></p>",
            html_escape(user),
            html_escape(sentence),
            html_escape(logout_url)
        ),
    )
}

pub fn logout_confirm(action: &str, csrf: &str) -> Response<Body> {
    page(
        StatusCode::OK,
        "Sign out?",
        &format!(
            "<form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Sign out</button></form>",
            html_escape(action),
            html_escape(csrf)
        ),
    )
}

/// The answer to the sign-out form when the IdP's sign-out comes next: the local session has
/// ended, and the page moves the browser on to `idp_url` (the IdP's SingleLogoutService with
/// the signed LogoutRequest) by a meta refresh, with a link as a fallback.
///
/// Not a redirect: Chromium applies the form's page's CSP `form-action` to every redirect
/// that follows a form submission (a 303 to our own GET endpoint included), so a redirect to
/// the IdP, or the IdP's own redirects to other services, would be blocked. A refresh is a
/// new navigation, outside `form-action`. `idp_url` must be an http(s) URL
/// ([`is_http_url`]).
pub fn signing_out_at_idp(idp_url: &str) -> Response<Body> {
    let url = html_escape(idp_url);
    page_with_head(
        StatusCode::OK,
        "Signing you out",
        &format!("<meta http-equiv=\"refresh\" content=\"0;url={url}\">"),
        &format!(
            "<p>Your session with this application has ended. Your browser now goes on to your identity provider to end your sign-in there too.</p><p><a class=\"button\" id=\"continue\" href=\"{url}\">Continue</a></p>"
        ),
    )
}

/// An absolute `http:` or `https:` URL (what a refresh or link to the IdP may point to; never
/// `javascript:` or `data:` from a metadata document).
pub fn is_http_url(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
}

pub fn signed_out(login_url: &str) -> Response<Body> {
    page(
        StatusCode::OK,
        "You are signed out",
        &format!(
            "<p>Your session with this application has ended.</p><p><a class=\"button\" href=\"{}\">Sign in again</a></p>",
            html_escape(login_url)
        ),
    )
}

pub fn upstream_error(status: StatusCode, browser: bool) -> Response<Body> {
    let (title, sentence, kind) = match status {
        StatusCode::GATEWAY_TIMEOUT => ("The application is taking too long", "The application behind this sign-in did not answer in time. Please try again in a moment.", "upstream_timeout"),
        StatusCode::SERVICE_UNAVAILABLE => ("The application is busy", "Too many requests are waiting for the application right now. Please try again in a moment.", "upstream_busy"),
        _ => ("The application is unavailable", "The application behind this sign-in cannot be reached right now. Please try again in a moment.", "upstream_unavailable"),
    };
    let mut r = if browser {
        page(status, title, &format!("<p>{}</p>", html_escape(sentence)))
    } else {
        json(status, kind, sentence, &[])
    };
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// 429 with `Retry-After` in whole seconds (rounded up, at least 1); error code
/// `rate_limited`, and `retry_after` (seconds, as a string) in the JSON body.
/// `Retry-After` in whole seconds: rounded up, at least 1.
pub fn retry_after_secs(retry_after: std::time::Duration) -> u64 {
    retry_after
        .as_secs()
        .saturating_add(u64::from(retry_after.subsec_nanos() > 0))
        .max(1)
}

pub fn too_many_requests(retry_after: std::time::Duration, browser: bool) -> Response<Body> {
    let secs = retry_after_secs(retry_after);
    let secs_text = secs.to_string();
    let sentence = format!(
        "Too many attempts from your network. Please wait {secs} second{} and try again.",
        if secs == 1 { "" } else { "s" }
    );
    let mut response = if browser {
        page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            &format!("<p>{}</p>", html_escape(&sentence)),
        )
    } else {
        json(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            &sentence,
            &[("retry_after", &secs_text)],
        )
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

pub fn simple(status: StatusCode, kind: &str, sentence: &str, browser: bool) -> Response<Body> {
    if browser {
        page(
            status,
            status.canonical_reason().unwrap_or("Error"),
            &format!("<p>{}</p>", html_escape(sentence)),
        )
    } else {
        json(status, kind, sentence, &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    #[test]
    fn navigation_versus_api() {
        let get = http::Method::GET;
        assert!(is_browser_navigation(
            &get,
            &h(&[("accept", "text/html,application/xhtml+xml")])
        ));
        assert!(is_browser_navigation(
            &http::Method::HEAD,
            &h(&[("accept", "text/html")])
        ));
        assert!(!is_browser_navigation(
            &get,
            &h(&[("accept", "application/json")])
        ));
        assert!(!is_browser_navigation(&get, &h(&[])));
        assert!(!is_browser_navigation(
            &http::Method::POST,
            &h(&[("accept", "text/html")])
        ));
        assert!(!is_browser_navigation(
            &get,
            &h(&[
                ("accept", "text/html"),
                ("x-requested-with", "XMLHttpRequest")
            ])
        ));
        assert!(!is_browser_navigation(
            &get,
            &h(&[("accept", "text/html"), ("sec-fetch-mode", "cors")])
        ));
        assert!(is_browser_navigation(
            &get,
            &h(&[("accept", "text/html"), ("sec-fetch-mode", "navigate")])
        ));
    }

    #[test]
    fn values_are_escaped() {
        assert_eq!(
            html_escape("<a href=\"x\">'&"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
        assert_eq!(json_escape("a\"b\\c\n"), "a\\\"b\\\\c\\u000a");
    }

    fn body_text(r: Response<Body>) -> String {
        use http_body_util::BodyExt;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = rt.block_on(r.into_body().collect()).unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn too_many_requests_rounds_retry_after_up() {
        use std::time::Duration;
        for (wait, want) in [
            (Duration::ZERO, "1"),
            (Duration::from_millis(1), "1"),
            (Duration::from_secs(1), "1"),
            (Duration::from_millis(1001), "2"),
            (Duration::from_secs(60), "60"),
        ] {
            let r = too_many_requests(wait, false);
            assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(r.headers()[header::RETRY_AFTER], want, "{wait:?}");
        }
    }

    #[test]
    fn too_many_requests_json_and_html() {
        let r = too_many_requests(std::time::Duration::from_secs(7), false);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            body_text(r),
            "{\"error\":\"rate_limited\",\"message\":\"Too many attempts from your network. Please wait 7 seconds and try again.\",\"retry_after\":\"7\"}"
        );
        let r = too_many_requests(std::time::Duration::from_secs(1), true);
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        assert!(r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let html = body_text(r);
        assert!(html.contains("<title>Too many requests</title>"));
        assert!(html.contains("wait 1 second and"));
    }

    #[test]
    fn signing_out_at_the_idp_refreshes_to_the_escaped_url_without_a_form() {
        let url = "https://idp.example/slo?SAMLRequest=a%2Bb&SigAlg=x&Signature=\"y\"";
        let r = signing_out_at_idp(url);
        assert_eq!(r.status(), StatusCode::OK);
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        let html = body_text(r);
        let escaped =
            "https://idp.example/slo?SAMLRequest=a%2Bb&amp;SigAlg=x&amp;Signature=&quot;y&quot;";
        assert!(
            html.contains(&format!(
                "<meta http-equiv=\"refresh\" content=\"0;url={escaped}\">"
            )),
            "{html}"
        );
        assert!(
            html.contains(&format!("id=\"continue\" href=\"{escaped}\"")),
            "{html}"
        );
        assert!(
            !html.contains("<form") && !html.contains("<script"),
            "{html}"
        );
    }

    #[test]
    fn only_http_urls_may_be_refreshed_to() {
        for (u, ok) in [
            ("https://idp.example/slo", true),
            ("http://127.0.0.1:8080/slo?x=1", true),
            ("javascript:alert(1)", false),
            ("data:text/html,x", false),
            ("/relative", false),
            ("file:///etc/passwd", false),
            ("", false),
        ] {
            assert_eq!(is_http_url(u), ok, "{u}");
        }
    }
}
