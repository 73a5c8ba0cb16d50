//! How identity values become header text (`headers.encoding`).
//!
//! HTTP field values are visible ASCII; bytes above 0x7F are "obs-text" that RFC 9110 keeps
//! only for old software and gives no character set, so WSGI, Node and Java servlets read a
//! UTF-8 name as Latin-1 ("ZoÃ«"). Every scheme here except `raw` therefore yields visible
//! ASCII, maps distinct values to distinct header text (the escape character itself is always
//! escaped), and leaves plain ASCII values alone as far as the scheme allows, so existing
//! ASCII identities do not change. A list item (groups, multi-valued attributes) also has the
//! list separator's characters escaped, so splitting on the separator before decoding is
//! exact. Each encoder is a pure function, table-tested and round-tripped through a
//! reference decoder.

use std::borrow::Cow;

use base64::Engine;
use serde::Deserialize;

/// `headers.encoding`: how non-ASCII identity values reach the application.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum HeaderEncoding {
    /// RFC 2047 encoded-words (`=?UTF-8?B?…?=`), the default: pure ASCII, decodable with
    /// every mail library (Python `email.header`, Go `mime.WordDecoder`, Java `MimeUtility`);
    /// ASCII values pass unchanged unless they contain `=?` (or, in a list, the separator).
    #[default]
    Rfc2047,
    /// Quoted-printable (RFC 2045: `=C3=AB`), what Grafana's `[auth.proxy] headers_encoded =
    /// true` decodes (Go's `mime/quotedprintable`). `=` is always escaped.
    QuotedPrintable,
    /// Percent-encoding of the UTF-8 bytes (`%C3%AB`), for applications that URL-decode the
    /// header. `%` and `+` are always escaped, so path- and form-style decoders agree.
    Percent,
    /// Refuse a sign-in whose identity values are not all ASCII (clear page, audit
    /// `login_failure` with kind `identity_header`).
    Refuse,
    /// Send the UTF-8 bytes as they are (obs-text): only for applications known to read
    /// header bytes as UTF-8. Values holding the list separator stay ambiguous.
    Raw,
}

impl HeaderEncoding {
    pub fn as_str(self) -> &'static str {
        match self {
            HeaderEncoding::Rfc2047 => "rfc2047",
            HeaderEncoding::QuotedPrintable => "quoted-printable",
            HeaderEncoding::Percent => "percent",
            HeaderEncoding::Refuse => "refuse",
            HeaderEncoding::Raw => "raw",
        }
    }

    /// Why `separator` cannot delimit list items under this encoding (it could occur inside an
    /// encoded item, or decoding could produce it), or `None`.
    pub fn separator_problem(self, separator: &str) -> Option<&'static str> {
        if separator.is_empty() || separator.chars().any(char::is_control) {
            return Some("must be non-empty and printable");
        }
        if self == HeaderEncoding::Raw {
            return None;
        }
        if !separator.is_ascii() {
            return Some("must be ASCII under this headers.encoding");
        }
        let clash: &[char] = match self {
            // Encoded-words are made of these and joined by spaces.
            HeaderEncoding::Rfc2047 => &['=', '?', '+', '/', '_', ' ', '\t'],
            // Spaces inside items are escaped (=20), so a space separator is exact; only '='
            // starts an escape.
            HeaderEncoding::QuotedPrintable => &['='],
            HeaderEncoding::Percent => &['%', '+'],
            HeaderEncoding::Refuse | HeaderEncoding::Raw => &[],
        };
        if separator
            .chars()
            .any(|c| c.is_ascii_alphanumeric() || clash.contains(&c))
        {
            return Some(match self {
                HeaderEncoding::Rfc2047 => {
                    "must not contain letters, digits, spaces or = ? + / _ under rfc2047 (they occur inside and between encoded-words); use \",\" or \";\", or headers.encoding = \"quoted-printable\" or \"percent\" for a space"
                }
                HeaderEncoding::QuotedPrintable => {
                    "must not contain letters, digits or = under quoted-printable (they occur inside escapes)"
                }
                _ => "must not contain letters, digits, % or + under percent (they occur inside escapes)",
            });
        }
        None
    }
}

/// A value the chosen encoding cannot carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unencodable {
    /// `refuse`: the value is not ASCII.
    NonAscii,
    /// `refuse`: a list item holds the separator, so the list could not be split back.
    HoldsSeparator,
    /// Empty, or holds control characters (never encoded, under any scheme).
    NotHeaderText,
}

/// Encodes one value (`separator`: the list separator when the value is a list item, else
/// empty). The value must hold no control characters (the caller drops those values).
pub fn encode<'v>(
    value: &'v str,
    encoding: HeaderEncoding,
    separator: &str,
) -> Result<Cow<'v, str>, Unencodable> {
    let in_separator = |c: char| separator.contains(c);
    match encoding {
        HeaderEncoding::Raw => Ok(Cow::Borrowed(value)),
        HeaderEncoding::Refuse => {
            if !value.is_ascii() {
                Err(Unencodable::NonAscii)
            } else if !separator.is_empty() && value.contains(separator) {
                Err(Unencodable::HoldsSeparator)
            } else {
                Ok(Cow::Borrowed(value))
            }
        }
        HeaderEncoding::Rfc2047 => Ok(
            if value.is_ascii() && !value.contains("=?") && !value.chars().any(in_separator) {
                Cow::Borrowed(value)
            } else {
                Cow::Owned(rfc2047_words(value))
            },
        ),
        HeaderEncoding::QuotedPrintable => Ok(escape_bytes(value, '=', |b, last| {
            b >= 0x80
                || b == b'='
                || in_separator(char::from(b))
                // Decoders drop trailing whitespace (RFC 2045 §6.7 rule 3).
                || (last && (b == b' ' || b == b'\t'))
        })),
        HeaderEncoding::Percent => Ok(escape_bytes(value, '%', |b, _| {
            b >= 0x80 || b == b'%' || b == b'+' || in_separator(char::from(b))
        })),
    }
}

/// `escape` + two upper-case hex digits for every byte `needs(byte, is_last)` picks.
fn escape_bytes(value: &str, escape: char, needs: impl Fn(u8, bool) -> bool) -> Cow<'_, str> {
    let n = value.len();
    if !value.bytes().enumerate().any(|(i, b)| needs(b, i + 1 == n)) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(n * 3);
    for (i, b) in value.bytes().enumerate() {
        if needs(b, i + 1 == n) {
            out.push(escape);
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        } else {
            out.push(char::from(b));
        }
    }
    Cow::Owned(out)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// RFC 2047 §2: an encoded-word is at most 75 characters. `=?UTF-8?B?` and `?=` take 12, so
/// 63 remain for base64: 15 groups of 4, that is 45 bytes of text per word.
const RFC2047_WORD_BYTES: usize = 45;

/// The whole value as B-encoded words joined by single spaces (which decoders drop between
/// adjacent encoded-words), each holding whole characters (RFC 2047 §5: a multi-byte
/// character is never split across words).
fn rfc2047_words(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 2 + 16);
    let mut rest = value;
    while !rest.is_empty() {
        let mut cut = rest.len().min(RFC2047_WORD_BYTES);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (word, tail) = rest.split_at(cut);
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str("=?UTF-8?B?");
        base64::engine::general_purpose::STANDARD.encode_string(word.as_bytes(), &mut out);
        out.push_str("?=");
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use HeaderEncoding::*;

    /// A reference RFC 2047 decoder for B-encoded UTF-8 words (the only form we emit),
    /// written from the RFC, independent of the encoder: whitespace between adjacent
    /// encoded-words is dropped; anything else is literal.
    fn decode_rfc2047(s: &str) -> Option<String> {
        let mut bytes = Vec::new();
        let mut prev_word = false;
        let tokens: Vec<&str> = s.split(' ').collect();
        for (i, tok) in tokens.iter().enumerate() {
            let word = tok
                .strip_prefix("=?")
                .and_then(|t| t.strip_suffix("?="))
                .and_then(|t| {
                    let mut p = t.splitn(3, '?');
                    let (cs, enc, text) = (p.next()?, p.next()?, p.next()?);
                    (cs.eq_ignore_ascii_case("utf-8") && enc.eq_ignore_ascii_case("b"))
                        .then_some(text)
                });
            match word {
                Some(text) => {
                    if i > 0 && !prev_word {
                        bytes.push(b' ');
                    }
                    assert!(tok.len() <= 75, "encoded-word longer than 75: {tok}");
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .ok()?;
                    // Each word must hold whole characters on its own.
                    std::str::from_utf8(&raw).ok()?;
                    bytes.extend(raw);
                    prev_word = true;
                }
                None => {
                    if i > 0 {
                        bytes.push(b' ');
                    }
                    bytes.extend(tok.as_bytes());
                    prev_word = false;
                }
            }
        }
        String::from_utf8(bytes).ok()
    }

    /// RFC 2045 quoted-printable for one line, as Go's `mime/quotedprintable` reads it.
    fn decode_qp(s: &str) -> Option<String> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'=' {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).ok()
    }

    fn enc(v: &str, e: HeaderEncoding, sep: &str) -> String {
        encode(v, e, sep).unwrap().into_owned()
    }

    #[test]
    fn ascii_values_pass_unchanged_where_the_scheme_allows() {
        for e in [Rfc2047, QuotedPrintable, Percent, Refuse, Raw] {
            for v in ["alice", "alice@example.com", "Alice Smith", "a-b_c.d~e"] {
                assert!(
                    matches!(encode(v, e, ",").unwrap(), Cow::Borrowed(_)),
                    "{e:?} {v}"
                );
            }
        }
        assert_eq!(enc("a+b@x", Rfc2047, ""), "a+b@x");
        assert_eq!(enc("a+b@x", QuotedPrintable, ""), "a+b@x");
        assert_eq!(
            enc("a+b@x", Percent, ""),
            "a%2Bb@x",
            "form decoders read + as space"
        );
        assert_eq!(enc("50%", Percent, ""), "50%25");
        assert_eq!(enc("a=b", QuotedPrintable, ""), "a=3Db");
    }

    #[test]
    fn known_encodings() {
        let table: &[(&str, HeaderEncoding, &str, &str)] = &[
            ("Zoë", Rfc2047, "", "=?UTF-8?B?Wm/Dqw==?="),
            ("Zoë", QuotedPrintable, "", "Zo=C3=AB"),
            ("Zoë", Percent, "", "Zo%C3%AB"),
            ("Zoë Łukasiewicz", Percent, "", "Zo%C3%AB %C5%81ukasiewicz"),
            (
                "Zoë Łukasiewicz",
                QuotedPrintable,
                "",
                "Zo=C3=AB =C5=81ukasiewicz",
            ),
            (
                "Разработчики",
                Percent,
                ",",
                "%D0%A0%D0%B0%D0%B7%D1%80%D0%B0%D0%B1%D0%BE%D1%82%D1%87%D0%B8%D0%BA%D0%B8",
            ),
            // Text that looks like an encoded-word is encoded, so no ASCII value can pose as
            // another value's encoding.
            (
                "=?UTF-8?B?Wm/Dqw==?=",
                Rfc2047,
                "",
                "=?UTF-8?B?PT9VVEYtOD9CP1dtL0Rxdz09Pz0=?=",
            ),
            // The separator inside a list item.
            ("a,b", Rfc2047, ",", "=?UTF-8?B?YSxi?="),
            ("a,b", QuotedPrintable, ",", "a=2Cb"),
            ("a,b", Percent, ",", "a%2Cb"),
            ("a;b", Percent, ",", "a;b"),
            ("trailing ", QuotedPrintable, "", "trailing=20"),
        ];
        for (v, e, sep, want) in table {
            assert_eq!(enc(v, *e, sep), *want, "{e:?} {v}");
        }
    }

    #[test]
    fn refuse_and_raw() {
        assert_eq!(encode("Zoë", Refuse, ""), Err(Unencodable::NonAscii));
        assert_eq!(encode("a,b", Refuse, ","), Err(Unencodable::HoldsSeparator));
        assert_eq!(encode("a,b", Refuse, ""), Ok(Cow::Borrowed("a,b")));
        assert_eq!(enc("Zoë", Raw, ","), "Zoë");
        // What samlgate sent before `headers.encoding`: the `http` crate takes UTF-8 bytes as
        // obs-text without complaint, so nothing but the encoder keeps them out.
        assert_eq!(
            http::HeaderValue::from_str("Zoë").unwrap().as_bytes(),
            "Zoë".as_bytes()
        );
    }

    #[test]
    fn every_encoding_round_trips_through_a_reference_decoder() {
        let long = "Łukasiewicz-Żółć-Разработчики-".repeat(5);
        let samples = [
            "Zoë Łukasiewicz",
            "Разработчики",
            "Администраторы домена",
            "日本語のグループ",
            "emoji 🎉 group",
            "plain",
            "100% sure",
            "a+b=c?d_e/f",
            "=?UTF-8?Q?x?=",
            long.as_str(),
        ];
        for v in samples {
            let p = enc(v, Percent, ",");
            assert!(p.is_ascii(), "{p}");
            assert_eq!(
                percent_encoding::percent_decode_str(&p)
                    .decode_utf8()
                    .unwrap(),
                v
            );
            let q = enc(v, QuotedPrintable, ",");
            assert!(q.bytes().all(|b| (0x20..0x7f).contains(&b)), "{q}");
            assert_eq!(decode_qp(&q).as_deref(), Some(v), "{q}");
            let w = enc(v, Rfc2047, ",");
            assert!(w.is_ascii(), "{w}");
            assert_eq!(decode_rfc2047(&w).as_deref(), Some(v), "{w}");
            for e in [Percent, QuotedPrintable, Rfc2047] {
                assert!(http::HeaderValue::from_str(&enc(v, e, ",")).is_ok());
            }
        }
    }

    #[test]
    fn rfc2047_words_hold_whole_characters_and_stay_within_75() {
        // 4-byte characters straddle every 45-byte boundary.
        let v = "🎉".repeat(40);
        let w = enc(&v, Rfc2047, "");
        for word in w.split(' ') {
            assert!(word.len() <= 75, "{word}");
            let text = &word[10..word.len() - 2];
            let raw = base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap();
            assert!(std::str::from_utf8(&raw).is_ok(), "split character");
        }
        assert_eq!(decode_rfc2047(&w).unwrap(), v);
        // 45 ASCII-safe bytes fit one word exactly.
        let v = "é".repeat(22) + "x";
        assert_eq!(enc(&v, Rfc2047, "").matches("=?UTF-8?B?").count(), 1);
        let v = "é".repeat(23);
        assert_eq!(enc(&v, Rfc2047, "").matches("=?UTF-8?B?").count(), 2);
    }

    #[test]
    fn lists_split_exactly_before_decoding() {
        let groups = ["a,b", "Разработчики", "x y", "c"];
        for (e, sep) in [
            (Percent, ","),
            (QuotedPrintable, ","),
            (QuotedPrintable, " "),
            (Rfc2047, ","),
        ] {
            let joined: Vec<String> = groups.iter().map(|g| enc(g, e, sep)).collect();
            let header = joined.join(sep);
            let back: Vec<String> = header
                .split(sep)
                .map(|item| match e {
                    Percent => percent_encoding::percent_decode_str(item)
                        .decode_utf8()
                        .unwrap()
                        .into_owned(),
                    QuotedPrintable => decode_qp(item).unwrap(),
                    _ => decode_rfc2047(item).unwrap(),
                })
                .collect();
            assert_eq!(back, groups, "{e:?}: {header}");
        }
    }

    #[test]
    fn separators_that_would_be_ambiguous_are_named() {
        assert_eq!(Rfc2047.separator_problem(","), None);
        assert_eq!(Rfc2047.separator_problem(";"), None);
        assert_eq!(Rfc2047.separator_problem("|"), None);
        assert!(Rfc2047.separator_problem(" ").is_some());
        assert!(Rfc2047.separator_problem(", ").is_some());
        assert!(Rfc2047.separator_problem("=").is_some());
        assert!(QuotedPrintable.separator_problem("=").is_some());
        assert_eq!(QuotedPrintable.separator_problem(","), None);
        assert_eq!(
            QuotedPrintable.separator_problem(" "),
            None,
            "Grafana splits on spaces"
        );
        assert!(Percent.separator_problem("%").is_some());
        assert!(Percent.separator_problem("x").is_some());
        assert_eq!(Percent.separator_problem(", "), None);
        assert_eq!(Raw.separator_problem(" and "), None);
        assert!(Raw.separator_problem("").is_some());
        assert!(Refuse.separator_problem("·").is_some());
    }
}
