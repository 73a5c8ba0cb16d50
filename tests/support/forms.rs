//! Reading an HTML page's form the way a browser's form submission would: an `<input>`'s value
//! and the POST form's action, HTML-unescaped. For the pages samlgate's dev IdP serves (login
//! page, auto-submit form) and the gateway's own.
//!
//! Include with `#[path = "support/forms.rs"] mod forms;`.
#![allow(dead_code)]

/// The escapes the pages use, `&amp;` last so that it cannot form another one.
const ESCAPES: [(&str, &str); 5] = [
    ("&quot;", "\""),
    ("&#39;", "'"),
    ("&lt;", "<"),
    ("&gt;", ">"),
    ("&amp;", "&"),
];

fn unescape(s: &str) -> String {
    ESCAPES
        .iter()
        .fold(s.to_string(), |s, (escape, c)| s.replace(escape, c))
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
