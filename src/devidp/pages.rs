//! The dev IdP's HTML: the login page (a button per user, or username and password), the
//! auto-submitting POST form that carries the SAMLResponse to the ACS, the home page, the
//! "unknown SP" refusal, the signed-out page and plain errors. Every page carries the
//! "DEVELOPMENT ONLY" banner, and every interpolated value is HTML-escaped. Pure: strings in,
//! a string out.

use crate::pages::html_escape as esc;

use super::sps::ServiceProvider;
use super::users::User;

pub const BANNER: &str = "DEVELOPMENT ONLY — never use in production";

/// The only script the dev IdP serves: submit the first form (the SAMLResponse POST).
pub const AUTO_POST_SCRIPT: &str = "document.forms[0].submit();";

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:40rem;margin:0 auto;padding:0 1rem 3rem;color:#222}.banner{background:#b00020;color:#fff;font-weight:700;text-align:center;padding:.6rem;margin:0 -1rem 1.5rem;letter-spacing:.02em}h1{font-size:1.4rem}button{display:block;width:100%;text-align:left;padding:.6rem .9rem;margin:.4rem 0;border:1px solid #446;border-radius:4px;background:#335;color:#fff;font-size:1rem;cursor:pointer}button small{color:#ccd;margin-left:.5rem}label{display:block;margin:.5rem 0}input[type=text],input[type=password]{width:100%;padding:.4rem;font-size:1rem;box-sizing:border-box}.error{background:#fde;border:1px solid #b00020;padding:.5rem}.small{color:#666;font-size:.85rem}code{background:#eee;padding:0 .2rem;word-break:break-all}table{border-collapse:collapse}td,th{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left}";

/// A whole page: banner, title, `body_html` (already escaped).
pub fn layout(title: &str, body_html: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><meta name=\"robots\" content=\"noindex\"><title>{t} · samlgate dev IdP</title><style>{STYLE}</style></head><body><div class=\"banner\" role=\"alert\">{BANNER}</div><h1>{t}</h1>{body_html}<p class=\"small\">samlgate dev IdP: a SAML 2.0 identity provider for development and tests.</p></body></html>",
        t = esc(title)
    )
}

fn groups_label(u: &User) -> String {
    if u.groups.is_empty() {
        "no groups".to_string()
    } else {
        u.groups.join(", ")
    }
}

/// What the login page shows.
pub struct LoginView<'a> {
    /// The pending sign-in's token, carried in every form.
    pub token: &'a str,
    pub sp_entity_id: &'a str,
    pub users: &'a [User],
    /// Who is signed in at the dev IdP already (offered as "continue as").
    pub session_user: Option<&'a str>,
    pub error: Option<&'a str>,
    /// An unsolicited (IdP-initiated) sign-in.
    pub idp_initiated: bool,
}

pub fn login_page(v: &LoginView<'_>) -> String {
    let token = esc(v.token);
    let mut b = String::new();
    b.push_str(&format!(
        "<p>{} <code>{}</code>.</p>",
        if v.idp_initiated {
            "Sign in and go to the service provider"
        } else {
            "The service provider asks who you are:"
        },
        esc(v.sp_entity_id)
    ));
    if let Some(e) = v.error {
        b.push_str(&format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)));
    }
    if let Some(user) = v.session_user {
        b.push_str(&format!(
            "<form method=\"post\" action=\"/login\"><input type=\"hidden\" name=\"token\" value=\"{token}\"><input type=\"hidden\" name=\"continue\" value=\"1\"><button type=\"submit\" name=\"username\" value=\"{u}\">Continue as {u}<small>(signed in at this IdP)</small></button></form>",
            u = esc(user)
        ));
    }
    let quick: Vec<&User> = v.users.iter().filter(|u| !u.needs_password()).collect();
    if !quick.is_empty() {
        b.push_str(&format!(
            "<h2>Pick a user</h2><form method=\"post\" action=\"/login\"><input type=\"hidden\" name=\"token\" value=\"{token}\">"
        ));
        for u in quick {
            b.push_str(&format!(
                "<button type=\"submit\" name=\"username\" value=\"{}\">{} — {}<small>{}</small></button>",
                esc(&u.username),
                esc(&u.username),
                esc(u.display_name()),
                esc(&groups_label(u)),
            ));
        }
        b.push_str("</form>");
    }
    b.push_str(&format!(
        "<h2>Or type a username and password</h2><form method=\"post\" action=\"/login\"><input type=\"hidden\" name=\"token\" value=\"{token}\"><label>Username <input type=\"text\" name=\"username\" autocomplete=\"username\" required></label><label>Password <input type=\"password\" name=\"password\" autocomplete=\"current-password\"></label><button type=\"submit\">Sign in</button></form><p class=\"small\">Users without a password accept any password.</p>"
    ));
    layout("Sign in", &b)
}

/// The HTTP-POST binding: a form to the ACS with `SAMLResponse` and `RelayState`, submitted
/// by [`AUTO_POST_SCRIPT`], with a button for browsers without JavaScript.
pub fn auto_post_page(acs_url: &str, saml_response_b64: &str, relay_state: Option<&str>) -> String {
    let relay = relay_state
        .map(|r| {
            format!(
                "<input type=\"hidden\" name=\"RelayState\" value=\"{}\">",
                esc(r)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<form method=\"post\" action=\"{acs}\"><input type=\"hidden\" name=\"SAMLResponse\" value=\"{resp}\">{relay}<noscript><p>JavaScript is off: press the button to continue.</p><button type=\"submit\">Continue to {acs}</button></noscript></form><p class=\"small\">Sending you back to the service provider…</p><script>{AUTO_POST_SCRIPT}</script>",
        acs = esc(acs_url),
        resp = esc(saml_response_b64),
    );
    layout("Signing you in", &body)
}

/// The AuthnRequest came from an SP this IdP does not know, or asked for an ACS URL that is
/// not the SP's: say which, and how to configure it.
pub fn unknown_sp_page(
    problem: &str,
    entity_id: Option<&str>,
    acs: Option<&str>,
    known: &[ServiceProvider],
) -> String {
    let mut b = format!(
        "<p class=\"error\" role=\"alert\">{}</p><p>The dev IdP only answers service providers it was started with, so that assertions never go to a URL nobody configured.</p>",
        esc(problem)
    );
    if let Some(e) = entity_id {
        b.push_str(&format!(
            "<p>To trust this SP, restart with:</p><p><code>samlgate dev-idp --sp-entity-id {} --acs-url {}</code></p><p>or pass its metadata with <code>--sp-metadata FILE</code>.</p>",
            esc(&shell_quote(e)),
            esc(&shell_quote(acs.unwrap_or("<its ACS URL>"))),
        ));
    }
    b.push_str(&sp_list(known));
    layout("Unknown service provider", &b)
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn sp_list(sps: &[ServiceProvider]) -> String {
    if sps.is_empty() {
        return "<p>No service provider is configured.</p>".to_string();
    }
    let mut b = String::from("<table><tr><th>SP entity ID</th><th>ACS URL</th><th></th></tr>");
    for sp in sps {
        let link = format!(
            "/idp-initiated?sp={}",
            url::form_urlencoded::byte_serialize(sp.entity_id.as_bytes()).collect::<String>()
        );
        b.push_str(&format!(
            "<tr><td><code>{}</code></td><td><code>{}</code></td><td><a href=\"{}\">IdP-initiated sign-in</a></td></tr>",
            esc(&sp.entity_id),
            esc(&sp.acs_urls.join(" ")),
            esc(&link),
        ));
    }
    b.push_str("</table>");
    b
}

/// What the home page shows.
pub struct HomeView<'a> {
    pub entity_id: &'a str,
    pub sso_url: &'a str,
    pub slo_url: &'a str,
    pub metadata_url: &'a str,
    pub users: &'a [User],
    pub sps: &'a [ServiceProvider],
    pub session_user: Option<&'a str>,
}

pub fn home_page(v: &HomeView<'_>) -> String {
    let mut b = String::new();
    match v.session_user {
        Some(u) => b.push_str(&format!(
            "<p>Signed in at this IdP as <strong>{}</strong>. <a href=\"/slo\">Sign out</a></p>",
            esc(u)
        )),
        None => b.push_str("<p>Nobody is signed in at this IdP.</p>"),
    }
    b.push_str(&format!(
        "<table><tr><th>entity ID</th><td><code>{}</code></td></tr><tr><th>metadata</th><td><a href=\"{}\"><code>{}</code></a></td></tr><tr><th>SSO (Redirect)</th><td><code>{}</code></td></tr><tr><th>SLO (Redirect)</th><td><code>{}</code></td></tr></table>",
        esc(v.entity_id),
        esc(v.metadata_url),
        esc(v.metadata_url),
        esc(v.sso_url),
        esc(v.slo_url),
    ));
    b.push_str("<h2>Service providers</h2>");
    b.push_str(&sp_list(v.sps));
    b.push_str("<h2>Users</h2><table><tr><th>username</th><th>name</th><th>mail</th><th>groups</th><th>password</th></tr>");
    for u in v.users {
        b.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&u.username),
            esc(u.display_name()),
            esc(&u.email()),
            esc(&groups_label(u)),
            if u.needs_password() { "yes" } else { "none" },
        ));
    }
    b.push_str("</table>");
    layout("samlgate dev IdP", &b)
}

pub fn signed_out_page() -> String {
    layout(
        "Signed out",
        "<p>You are signed out of the dev IdP. Service providers may still hold their own sessions.</p><p><a href=\"/\">Dev IdP home</a></p>",
    )
}

/// A plain error: `sentence` is text (escaped here).
pub fn error_page(title: &str, sentence: &str) -> String {
    layout(
        title,
        &format!(
            "<p class=\"error\" role=\"alert\">{}</p><p><a href=\"/\">Dev IdP home</a></p>",
            esc(sentence)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devidp::users::default_users;

    const HOSTILE: &str = "<script>alert('x')</script>\"&";

    fn assert_escaped(html: &str) {
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;"));
    }

    #[test]
    fn every_page_has_the_banner() {
        let users = default_users();
        let pages = [
            login_page(&LoginView {
                token: "t",
                sp_entity_id: "sp",
                users: &users,
                session_user: None,
                error: None,
                idp_initiated: false,
            }),
            auto_post_page("http://sp/acs", "UkVTUA==", Some("r")),
            unknown_sp_page("nope", None, None, &[]),
            home_page(&HomeView {
                entity_id: "e",
                sso_url: "s",
                slo_url: "l",
                metadata_url: "m",
                users: &users,
                sps: &[],
                session_user: None,
            }),
            signed_out_page(),
            error_page("Oops", "bad"),
        ];
        for p in pages {
            assert!(p.contains(BANNER), "{p}");
            assert!(p.starts_with("<!doctype html>"));
        }
    }

    #[test]
    fn login_page_offers_buttons_for_passwordless_users_only() {
        let mut users = default_users();
        users[1].password = Some("pw".into());
        let html = login_page(&LoginView {
            token: "tok",
            sp_entity_id: "http://sp/metadata",
            users: &users,
            session_user: Some("dave"),
            error: Some("Wrong username or password."),
            idp_initiated: false,
        });
        assert!(html.contains(
            r#"name="username" value="alice">alice — Alice Anderson<small>analysts, admins</small>"#
        ));
        assert!(html.contains("carol — Carol Clark<small>no groups</small>"));
        assert!(!html.contains(r#"value="bob""#));
        assert!(html.contains("Continue as dave"));
        assert!(html.contains("Wrong username or password."));
        assert_eq!(html.matches(r#"name="token" value="tok""#).count(), 3);
    }

    #[test]
    fn login_page_escapes_everything() {
        let mut users = default_users();
        users[0].display_name = Some(HOSTILE.into());
        users[0].groups = vec![HOSTILE.into()];
        users[0].username = HOSTILE.into();
        let html = login_page(&LoginView {
            token: HOSTILE,
            sp_entity_id: HOSTILE,
            users: &users,
            session_user: Some(HOSTILE),
            error: Some(HOSTILE),
            idp_initiated: true,
        });
        assert_escaped(&html);
    }

    #[test]
    fn auto_post_page_escapes_and_carries_both_fields() {
        let html = auto_post_page("http://sp/acs?a=1&b=\"2\"", "PHg+", Some(HOSTILE));
        assert_escaped(&html);
        assert!(html.contains(r#"action="http://sp/acs?a=1&amp;b=&quot;2&quot;""#));
        assert!(html.contains(r#"name="SAMLResponse" value="PHg+""#));
        assert!(html.contains("<noscript>"));
        assert!(html.contains(&format!("<script>{AUTO_POST_SCRIPT}</script>")));
        let without = auto_post_page("http://sp/acs", "PHg+", None);
        assert!(!without.contains("RelayState"));
    }

    #[test]
    fn unknown_sp_page_escapes_and_shows_the_flags() {
        let html = unknown_sp_page(HOSTILE, Some(HOSTILE), Some("http://x/acs"), &[]);
        assert_escaped(&html);
        assert!(html.contains("--acs-url http://x/acs"));
        let html = unknown_sp_page("p", Some("http://sp/metadata"), None, &[]);
        assert!(html
            .contains("--sp-entity-id http://sp/metadata --acs-url &#39;&lt;its ACS URL&gt;&#39;"));
    }

    #[test]
    fn home_page_escapes_and_links_idp_initiated() {
        let mut users = default_users();
        users[0].email = Some(HOSTILE.into());
        let sps = [ServiceProvider {
            entity_id: "http://sp/metadata?x=1&y".into(),
            acs_urls: vec!["http://sp/acs".into()],
            slo_url: None,
        }];
        let html = home_page(&HomeView {
            entity_id: "e",
            sso_url: "s",
            slo_url: "l",
            metadata_url: "m",
            users: &users,
            sps: &sps,
            session_user: Some(HOSTILE),
        });
        assert_escaped(&html);
        assert!(html.contains("/idp-initiated?sp=http%3A%2F%2Fsp%2Fmetadata%3Fx%3D1%26y"));
    }

    #[test]
    fn shell_quote_quotes_only_when_needed() {
        assert_eq!(shell_quote("http://a/b"), "http://a/b");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
