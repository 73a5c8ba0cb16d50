//! Reading an HTML page's form the way a browser's form submission would: an `<input>`'s value
//! and the POST form's action, HTML-unescaped. For the pages samlgate's dev IdP serves (login
//! page, auto-submit form) and the gateway's own.
//!
//! Include with `#[path = "support/forms.rs"] mod forms;`.
#![allow(dead_code)]

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The value of the first `<input … name="NAME" value="…">` in the page.
pub fn input(html: &str, name: &str) -> Option<String> {
    let needle = format!("name=\"{name}\" value=\"");
    let start = html.find(&needle)? + needle.len();
    let end = start + html[start..].find('"')?;
    Some(unescape(&html[start..end]))
}

/// The `action` of the first POST form in the page.
pub fn form_action(html: &str) -> Option<String> {
    let needle = "<form method=\"post\" action=\"";
    let start = html.find(needle)? + needle.len();
    let end = start + html[start..].find('"')?;
    Some(unescape(&html[start..end]))
}
