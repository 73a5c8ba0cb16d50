//! Escaping of user-typed values before they reach LDAP: RFC 4515 for values inside a search
//! filter, RFC 4514 for attribute values inside a distinguished name, and the substitution of
//! `{user}` / `{dn}` placeholders in the operator's templates with one or the other. A value
//! that is not escaped can rewrite the filter (`*)(uid=*`) or the DN (`x,ou=admins`); nothing
//! typed by a client reaches LDAP except through these functions. Pure.

use std::fmt::Write as _;

/// RFC 4515 section 3: in a filter's assertion value, `*`, `(`, `)`, `\` and NUL must be
/// written as `\XX`. Everything else (UTF-8 included) may stay as it is.
pub fn filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' | '(' | ')' | '\\' | '\0' => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\{:02x}", u32::from(c));
            }
            _ => out.push(c),
        }
    }
    out
}

/// RFC 4514 section 2.4: in an attribute value of a DN, `"`, `+`, `,`, `;`, `<`, `>`, `\`
/// always; `#` or space at the start; space at the end; NUL as `\00`. `=` is escaped too
/// (allowed by the RFC, and it keeps a value from looking like a second attribute).
pub fn dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '\0' => out.push_str("\\00"),
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            _ => out.push(c),
        }
    }
    out
}

/// How a placeholder's value is escaped: which grammar it lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// A search filter (RFC 4515).
    Filter,
    /// A distinguished name (RFC 4514).
    Dn,
}

/// Replaces every `{name}` in `template` with `value`, escaped for `context`. Other text is
/// copied unchanged (the operator wrote it).
pub fn fill(template: &str, name: &str, value: &str, context: Context) -> String {
    let escaped = match context {
        Context::Filter => filter_value(value),
        Context::Dn => dn_value(value),
    };
    template.replace(&format!("{{{name}}}"), &escaped)
}

/// The value of the first RDN of `dn` when its attribute is `attribute` (case-insensitive),
/// unescaped: `cn=engineers,ou=groups,…` → `engineers`. `None` when the DN starts with another
/// attribute or is malformed. Used to name groups found by `memberOf`.
pub fn first_rdn_value(dn: &str, attribute: &str) -> Option<String> {
    let (attr, rest) = dn.split_once('=')?;
    if !attr.trim().eq_ignore_ascii_case(attribute) {
        return None;
    }
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ',' | '+' => break,
            '\\' => {
                let next = chars.next()?;
                if next.is_ascii_hexdigit() {
                    // A `\XX` hex pair (one byte); only ASCII pairs are kept as characters.
                    let low = chars.next()?;
                    let byte = u8::from_str_radix(&format!("{next}{low}"), 16).ok()?;
                    if !byte.is_ascii() {
                        return None;
                    }
                    out.push(byte as char);
                } else {
                    out.push(next);
                }
            }
            _ => out.push(c),
        }
    }
    let value = out.trim().to_string();
    (!value.is_empty() && !value.chars().any(char::is_control)).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_are_escaped_per_rfc_4515() {
        for (input, want) in [
            ("alice", "alice"),
            ("*", "\\2a"),
            ("*)(uid=*", "\\2a\\29\\28uid=\\2a"),
            ("a)(|(objectClass=*)", "a\\29\\28|\\28objectClass=\\2a\\29"),
            ("back\\slash", "back\\5cslash"),
            ("nul\0byte", "nul\\00byte"),
            ("Lucía*", "Lucía\\2a"),
            ("", ""),
        ] {
            assert_eq!(filter_value(input), want, "input {input:?}");
        }
    }

    #[test]
    fn dn_values_are_escaped_per_rfc_4514() {
        for (input, want) in [
            ("alice", "alice"),
            ("x,ou=admins", "x\\,ou\\=admins"),
            ("a+b", "a\\+b"),
            ("#lead", "\\#lead"),
            ("mid#dle", "mid#dle"),
            (" lead and trail ", "\\ lead and trail\\ "),
            ("q\"uote;<>\\", "q\\\"uote\\;\\<\\>\\\\"),
            ("nul\0", "nul\\00"),
            ("Jürgen", "Jürgen"),
        ] {
            assert_eq!(dn_value(input), want, "input {input:?}");
        }
    }

    #[test]
    fn templates_take_escaped_values_only() {
        assert_eq!(
            fill(
                "(&(objectClass=person)(uid={user}))",
                "user",
                "*)(uid=*",
                Context::Filter
            ),
            "(&(objectClass=person)(uid=\\2a\\29\\28uid=\\2a))"
        );
        assert_eq!(
            fill(
                "uid={user},ou=people,dc=example,dc=test",
                "user",
                "x,ou=admins",
                Context::Dn
            ),
            "uid=x\\,ou\\=admins,ou=people,dc=example,dc=test"
        );
        assert_eq!(
            fill("(member={dn})", "dn", "uid=a(b),dc=x", Context::Filter),
            "(member=uid=a\\28b\\29,dc=x)"
        );
    }

    #[test]
    fn group_names_come_from_the_first_rdn() {
        for (dn, attr, want) in [
            (
                "cn=engineers,ou=groups,dc=example,dc=test",
                "cn",
                Some("engineers"),
            ),
            (
                "CN=Domain Admins,CN=Users,DC=corp,DC=test",
                "cn",
                Some("Domain Admins"),
            ),
            ("cn=a\\,b,ou=g", "cn", Some("a,b")),
            ("cn=x\\2cy,ou=g", "cn", Some("x,y")),
            ("ou=engineers,dc=x", "cn", None),
            ("cn=,dc=x", "cn", None),
            ("garbage", "cn", None),
            ("cn=bad\\", "cn", None),
        ] {
            assert_eq!(first_rdn_value(dn, attr).as_deref(), want, "dn {dn:?}");
        }
    }
}
