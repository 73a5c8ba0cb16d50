//! What password sign-in looks like over HTTP, as pure functions: the sign-in form page
//! (`{prefix}/password`), reading its POST body, and the answers to HTTP Basic clients. The
//! gateway (`gateway::password_signin`) wires these to requests, sessions and cookies.

use http::{header, HeaderValue, Response, StatusCode};

use crate::pages;
use crate::proxy::Body;

/// Largest form body read (user name, password, token, return path, encoding overhead).
pub const MAX_FORM_BYTES: usize = 8 * 1024;

/// The fields of a posted sign-in form. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct PasswordForm {
    pub user: String,
    pub password: String,
    pub csrf: String,
    /// Where to go after signing in (checked with `safe_return_path` by the caller).
    pub rd: String,
}

impl std::fmt::Debug for PasswordForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordForm")
            .field("user", &self.user)
            .field("rd", &self.rd)
            .finish_non_exhaustive()
    }
}

/// Reads an `application/x-www-form-urlencoded` sign-in body: each known field at most once,
/// unknown fields refused (nothing else is expected from our own page).
pub fn parse_form(body: &[u8]) -> Result<PasswordForm, &'static str> {
    let mut form = PasswordForm::default();
    let mut seen = [false; 4];
    for (key, value) in url::form_urlencoded::parse(body) {
        let (slot, index) = match key.as_ref() {
            "user" => (&mut form.user, 0),
            "password" => (&mut form.password, 1),
            "csrf" => (&mut form.csrf, 2),
            "rd" => (&mut form.rd, 3),
            _ => return Err("unexpected form field"),
        };
        if seen[index] {
            return Err("a form field appears twice");
        }
        seen[index] = true;
        *slot = value.into_owned();
    }
    if !seen[2] {
        return Err("the form token is missing");
    }
    Ok(form)
}

/// The sign-in form. `error` is shown above it (already a sentence for people); `user` is
/// filled in again after a failure (never the password).
pub fn form_page(
    status: StatusCode,
    action: &str,
    csrf: &str,
    rd: &str,
    user: &str,
    error: Option<&str>,
    saml_url: &str,
) -> Response<Body> {
    let e = pages::html_escape;
    let error_html = error.map_or(String::new(), |m| {
        format!("<p role=\"alert\"><strong>{}</strong></p>", e(m))
    });
    let body = format!(
        "{error_html}<form method=\"post\" action=\"{action}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"rd\" value=\"{rd}\">\
         <p><label>User name<br><input name=\"user\" autocomplete=\"username\" required value=\"{user}\"></label></p>\
         <p><label>Password<br><input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label></p>\
         <p><button type=\"submit\">Sign in</button></p></form>\
         <p class=\"small\">Signing in with your organisation's single sign-on is the usual way: \
         <a href=\"{saml}\">use single sign-on</a>.</p>",
        action = e(action),
        csrf = e(csrf),
        rd = e(rd),
        user = e(user),
        saml = e(saml_url),
    );
    pages::page(status, "Sign in with a password", &body)
}

/// The answer to an API client whose Basic credentials were refused (or missing on a path
/// where no other sign-in fits): JSON, and `WWW-Authenticate: Basic` only when the operator
/// asked for browser prompts (`basic_prompt`).
pub fn basic_refusal(
    status: StatusCode,
    kind: &str,
    message: &str,
    prompt: bool,
    retry_after_secs: Option<u64>,
) -> Response<Body> {
    let mut r = pages::json(status, kind, message, &[]);
    if prompt && status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"samlgate\", charset=\"UTF-8\""),
        );
    }
    if let Some(secs) = retry_after_secs {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_read_strictly() {
        let ok = parse_form(b"user=alice&password=p%26w%3D&csrf=t&rd=%2Fapp").unwrap();
        assert_eq!(
            (
                ok.user.as_str(),
                ok.password.as_str(),
                ok.csrf.as_str(),
                ok.rd.as_str()
            ),
            ("alice", "p&w=", "t", "/app")
        );
        for (body, want) in [
            (&b"user=a&password=b"[..], "the form token is missing"),
            (b"user=a&user=b&csrf=t", "a form field appears twice"),
            (b"user=a&csrf=t&admin=1", "unexpected form field"),
        ] {
            assert_eq!(
                parse_form(body),
                Err(want),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // An empty password is read as such; the sign-in refuses it.
        assert_eq!(parse_form(b"user=a&password=&csrf=t").unwrap().password, "");
        assert!(!format!("{ok:?}").contains("p&w="));
    }

    #[test]
    fn the_page_escapes_what_it_repeats() {
        let r = form_page(
            StatusCode::UNAUTHORIZED,
            "/saml/password",
            "tok\"en",
            "/a?b=<c>",
            "<script>",
            Some("The user name or password is not correct."),
            "/saml/login",
        );
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("form-action 'self'"), "{csp}");
    }

    #[test]
    fn basic_refusals_prompt_only_when_asked() {
        let quiet = basic_refusal(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "x",
            false,
            None,
        );
        assert!(!quiet.headers().contains_key(header::WWW_AUTHENTICATE));
        let prompt = basic_refusal(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "x",
            true,
            None,
        );
        assert_eq!(
            prompt.headers()[header::WWW_AUTHENTICATE],
            "Basic realm=\"samlgate\", charset=\"UTF-8\""
        );
        let limited = basic_refusal(
            StatusCode::TOO_MANY_REQUESTS,
            "locked_out",
            "x",
            true,
            Some(900),
        );
        assert!(!limited.headers().contains_key(header::WWW_AUTHENTICATE));
        assert_eq!(limited.headers()[header::RETRY_AFTER], "900");
    }
}
