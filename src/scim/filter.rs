//! SCIM filters (RFC 7644 §3.4.2.2) and PATCH paths (§3.5.2): a small recursive-descent
//! parser into [`Filter`] / [`PatchPath`], and evaluation against a resource's JSON (pure).
//! Attribute names and operators are case-insensitive; string comparison is too, except for
//! `id`, `externalId` and `$ref`-like values (caseExact in RFC 7643). Input is bounded in
//! length and nesting so a hostile filter cannot exhaust the stack.

use serde_json::Value;

/// Longest filter or path accepted, in bytes.
pub const MAX_FILTER_LEN: usize = 4096;
/// Deepest nesting of parentheses, `not` and value filters.
const MAX_DEPTH: usize = 16;

/// An attribute path: optional schema URN (extension attributes live under it), the
/// attribute, an optional sub-attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrPath {
    pub urn: Option<String>,
    pub attr: String,
    pub sub: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Present(AttrPath),
    Compare(AttrPath, CompareOp, Value),
    /// `emails[type eq "work"]`: some element of the multi-valued `attr` matches `inner`.
    ValuePath(AttrPath, Box<Filter>),
}

/// A PATCH `path`: `attr`, `attr.sub`, `attr[filter]` or `attr[filter].sub`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    /// The sub-attribute after a value filter (`emails[…].value`).
    pub sub_after_filter: Option<String>,
}

/// Why a filter or path was refused (SCIM `invalidFilter` / `invalidPath`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("longer than {MAX_FILTER_LEN} bytes")]
    TooLong,
    #[error("nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("unterminated string")]
    UnterminatedString,
    #[error("unexpected {0}")]
    Unexpected(String),
    #[error("unknown operator {0:?}")]
    UnknownOperator(String),
    #[error("invalid attribute path {0:?}")]
    BadAttribute(String),
    #[error("invalid value {0:?}")]
    BadValue(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    Str(String),
    Word(String),
}

fn describe(t: Option<&Token>) -> String {
    match t {
        None => "end of filter".into(),
        Some(Token::Open) => "'('".into(),
        Some(Token::Close) => "')'".into(),
        Some(Token::OpenBracket) => "'['".into(),
        Some(Token::CloseBracket) => "']'".into(),
        Some(Token::Str(_)) => "a string".into(),
        Some(Token::Word(w)) => format!("{:?}", crate::saml::error::clip_to(w, 40)),
    }
}

fn lex(input: &str) -> Result<Vec<Token>, FilterError> {
    if input.len() > MAX_FILTER_LEN {
        return Err(FilterError::TooLong);
    }
    let mut out = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | '[' | ']' => {
                chars.next();
                out.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    '[' => Token::OpenBracket,
                    _ => Token::CloseBracket,
                });
            }
            '"' => {
                chars.next();
                out.push(Token::Str(lex_string(&mut chars)?));
            }
            _ => {
                let mut w = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || "()[]\"".contains(c) {
                        break;
                    }
                    w.push(c);
                    chars.next();
                }
                out.push(Token::Word(w));
            }
        }
    }
    Ok(out)
}

/// A JSON string body after the opening quote: the JSON escapes are honoured.
fn lex_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<String, FilterError> {
    let mut raw = String::from("\"");
    loop {
        match chars.next() {
            None => return Err(FilterError::UnterminatedString),
            Some('\\') => {
                raw.push('\\');
                raw.push(chars.next().ok_or(FilterError::UnterminatedString)?);
            }
            Some('"') => {
                raw.push('"');
                break;
            }
            Some(c) => raw.push(c),
        }
    }
    serde_json::from_str::<String>(&raw).map_err(|_| FilterError::BadValue(raw))
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn peek_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn expect(&mut self, want: Token) -> Result<(), FilterError> {
        match self.next() {
            Some(t) if t == want => Ok(()),
            other => Err(FilterError::Unexpected(describe(other.as_ref()))),
        }
    }

    fn deeper(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FilterError::TooDeep);
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.and()?;
        while self.peek_keyword("or") {
            self.next();
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.unary()?;
        while self.peek_keyword("and") {
            self.next();
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, FilterError> {
        if self.peek_keyword("not") {
            self.next();
            self.deeper()?;
            self.expect(Token::Open)?;
            let inner = self.or()?;
            self.expect(Token::Close)?;
            self.depth -= 1;
            return Ok(Filter::Not(Box::new(inner)));
        }
        if self.peek() == Some(&Token::Open) {
            self.next();
            self.deeper()?;
            let inner = self.or()?;
            self.expect(Token::Close)?;
            self.depth -= 1;
            return Ok(inner);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Filter, FilterError> {
        let word = match self.next() {
            Some(Token::Word(w)) => w,
            other => return Err(FilterError::Unexpected(describe(other.as_ref()))),
        };
        let path = parse_attr_path(&word)?;
        if self.peek() == Some(&Token::OpenBracket) {
            self.next();
            self.deeper()?;
            let inner = self.or()?;
            self.expect(Token::CloseBracket)?;
            self.depth -= 1;
            return Ok(Filter::ValuePath(path, Box::new(inner)));
        }
        let op = match self.next() {
            Some(Token::Word(w)) => w.to_ascii_lowercase(),
            other => return Err(FilterError::Unexpected(describe(other.as_ref()))),
        };
        let op = match op.as_str() {
            "pr" => return Ok(Filter::Present(path)),
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => {
                return Err(FilterError::UnknownOperator(crate::saml::error::clip_to(
                    &op, 20,
                )))
            }
        };
        let value = match self.next() {
            Some(Token::Str(s)) => Value::String(s),
            Some(Token::Word(w)) => literal(&w)?,
            other => return Err(FilterError::Unexpected(describe(other.as_ref()))),
        };
        Ok(Filter::Compare(path, op, value))
    }
}

fn literal(w: &str) -> Result<Value, FilterError> {
    match w.to_ascii_lowercase().as_str() {
        "true" => Ok(Value::Bool(true)),
        "false" => Ok(Value::Bool(false)),
        "null" => Ok(Value::Null),
        _ => serde_json::from_str::<serde_json::Number>(w)
            .map(Value::Number)
            .map_err(|_| FilterError::BadValue(crate::saml::error::clip_to(w, 40))),
    }
}

/// `userName`, `name.givenName`, `urn:…:User:userName`, `urn:…:enterprise:2.0:User:manager.value`.
pub fn parse_attr_path(word: &str) -> Result<AttrPath, FilterError> {
    let bad = || FilterError::BadAttribute(crate::saml::error::clip_to(word, 80));
    let (urn, rest) = if word.len() > 4 && word[..4].eq_ignore_ascii_case("urn:") {
        let cut = word.rfind(':').ok_or_else(bad)?;
        (Some(&word[..cut]), &word[cut + 1..])
    } else {
        (None, word)
    };
    let (attr, sub) = match rest.split_once('.') {
        Some((a, s)) => (a, Some(s)),
        None => (rest, None),
    };
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
    };
    if !name_ok(attr) || sub.is_some_and(|s| !name_ok(s)) {
        return Err(bad());
    }
    // Core schema URNs name the resource itself: `urn:…:core:2.0:User:userName` = `userName`.
    let urn = urn.filter(|u| !is_core_schema(u)).map(str::to_string);
    Ok(AttrPath {
        urn,
        attr: attr.to_string(),
        sub: sub.map(str::to_string),
    })
}

/// The core schemas, whose attributes sit at the top level of a resource.
pub fn is_core_schema(urn: &str) -> bool {
    urn.eq_ignore_ascii_case(super::resources::USER_SCHEMA)
        || urn.eq_ignore_ascii_case(super::resources::GROUP_SCHEMA)
}

/// The extension schemas this server publishes (a path equal to one names the extension
/// object itself).
pub fn is_known_extension(urn: &str) -> bool {
    urn.eq_ignore_ascii_case(super::resources::ENTERPRISE_SCHEMA)
}

/// Parses a `filter` query parameter.
pub fn parse_filter(input: &str) -> Result<Filter, FilterError> {
    let mut p = Parser {
        tokens: lex(input)?,
        pos: 0,
        depth: 0,
    };
    let f = p.or()?;
    match p.peek() {
        None => Ok(f),
        other => Err(FilterError::Unexpected(describe(other))),
    }
}

/// Parses a PATCH operation's `path`.
pub fn parse_patch_path(input: &str) -> Result<PatchPath, FilterError> {
    let mut p = Parser {
        tokens: lex(input)?,
        pos: 0,
        depth: 0,
    };
    let word = match p.next() {
        Some(Token::Word(w)) => w,
        other => return Err(FilterError::Unexpected(describe(other.as_ref()))),
    };
    let attr = parse_attr_path(&word)?;
    let mut out = PatchPath {
        attr,
        filter: None,
        sub_after_filter: None,
    };
    if p.peek() == Some(&Token::OpenBracket) {
        p.next();
        out.filter = Some(p.or()?);
        p.expect(Token::CloseBracket)?;
        if let Some(Token::Word(w)) = p.peek().cloned() {
            let sub = w
                .strip_prefix('.')
                .ok_or_else(|| FilterError::Unexpected(w.clone()))?;
            if sub.is_empty() || !sub.chars().all(|c| c.is_ascii_alphanumeric() || c == '$') {
                return Err(FilterError::BadAttribute(w));
            }
            out.sub_after_filter = Some(sub.to_string());
            p.next();
        }
    }
    match p.peek() {
        None => Ok(out),
        other => Err(FilterError::Unexpected(describe(other))),
    }
}

/// The member of `obj` named `key`, compared case-insensitively.
pub fn get_ci<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    let map = obj.as_object()?;
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// Every value `path` names in `resource` (multi-valued attributes flattened).
fn values_at<'a>(resource: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    let base = match &path.urn {
        Some(urn) => match get_ci(resource, urn) {
            Some(v) => v,
            None => return Vec::new(),
        },
        None => resource,
    };
    let Some(top) = get_ci(base, &path.attr) else {
        return Vec::new();
    };
    let items: Vec<&Value> = match top {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    match &path.sub {
        Some(sub) => items.into_iter().filter_map(|v| get_ci(v, sub)).collect(),
        // A complex multi-valued attribute compared whole means its `value`.
        None => items
            .into_iter()
            .map(|v| match v {
                Value::Object(_) => get_ci(v, "value").unwrap_or(v),
                _ => v,
            })
            .collect(),
    }
}

fn case_exact(path: &AttrPath) -> bool {
    let name = path.sub.as_deref().unwrap_or(&path.attr);
    ["id", "externalId", "$ref"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
        || (path.sub.is_none() && path.attr.eq_ignore_ascii_case("members"))
}

/// Whether `resource` matches `f`.
pub fn matches(f: &Filter, resource: &Value) -> bool {
    match f {
        Filter::And(a, b) => matches(a, resource) && matches(b, resource),
        Filter::Or(a, b) => matches(a, resource) || matches(b, resource),
        Filter::Not(a) => !matches(a, resource),
        Filter::Present(p) => values_at(resource, p).iter().any(|v| match v {
            Value::Null => false,
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            _ => true,
        }),
        Filter::Compare(p, op, lit) => {
            let exact = case_exact(p);
            let found = values_at(resource, p);
            if *op == CompareOp::Ne {
                return !found.iter().any(|v| compare(v, CompareOp::Eq, lit, exact));
            }
            found.iter().any(|v| compare(v, *op, lit, exact))
        }
        Filter::ValuePath(p, inner) => element_matches(resource, p, inner),
    }
}

/// Whether some element of the multi-valued attribute `p` matches `inner` (evaluated with
/// the element as the resource).
fn element_matches(resource: &Value, p: &AttrPath, inner: &Filter) -> bool {
    let base = match &p.urn {
        Some(urn) => get_ci(resource, urn),
        None => Some(resource),
    };
    match base.and_then(|b| get_ci(b, &p.attr)) {
        Some(Value::Array(items)) => items.iter().any(|e| matches(inner, e)),
        Some(v @ Value::Object(_)) => matches(inner, v),
        _ => false,
    }
}

/// Compares one attribute value with a filter literal.
pub fn compare(v: &Value, op: CompareOp, lit: &Value, exact: bool) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (v, lit) {
        // Equality, the IdPs' lookup (`userName eq "…"`), without allocating per resource.
        (Value::String(a), Value::String(b))
            if op == CompareOp::Eq && (exact || (a.is_ascii() && b.is_ascii())) =>
        {
            return if exact {
                a == b
            } else {
                a.eq_ignore_ascii_case(b)
            };
        }
        (Value::String(a), Value::String(b)) => {
            let (a, b) = if exact {
                (a.clone(), b.clone())
            } else {
                (a.to_lowercase(), b.to_lowercase())
            };
            match op {
                CompareOp::Co => return a.contains(&b),
                CompareOp::Sw => return a.starts_with(&b),
                CompareOp::Ew => return a.ends_with(&b),
                _ => Some(a.cmp(&b)),
            }
        }
        (Value::Bool(a), Value::Bool(b)) => match op {
            CompareOp::Eq => return a == b,
            _ => return false,
        },
        // Entra ID and others sometimes store booleans as strings.
        (Value::String(a), Value::Bool(b)) => {
            return op == CompareOp::Eq && a.eq_ignore_ascii_case(if *b { "true" } else { "false" })
        }
        (Value::Number(a), Value::Number(b)) => a
            .as_f64()
            .zip(b.as_f64())
            .and_then(|(a, b)| a.partial_cmp(&b)),
        (_, Value::Null) => return false,
        _ => None,
    };
    let Some(ord) = ord else { return false };
    match op {
        CompareOp::Eq => ord == Ordering::Equal,
        CompareOp::Gt => ord == Ordering::Greater,
        CompareOp::Ge => ord != Ordering::Less,
        CompareOp::Lt => ord == Ordering::Less,
        CompareOp::Le => ord != Ordering::Greater,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Value {
        json!({
            "id": "2819c223",
            "externalId": "00ujl29u0le5T6Aj10h7",
            "userName": "Alice@Example.com",
            "displayName": "Alice Smith",
            "active": true,
            "name": {"givenName": "Alice", "familyName": "Smith"},
            "emails": [
                {"value": "alice@example.com", "type": "work", "primary": true},
                {"value": "al@home.example", "type": "home"}
            ],
            "meta": {"lastModified": "2026-12-01T10:00:00Z"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "42"}
        })
    }

    #[test]
    fn filters_the_big_idps_send() {
        let u = user();
        let table: &[(&str, bool)] = &[
            // Okta
            (r#"userName eq "alice@example.com""#, true),
            (r#"userName eq "bob@example.com""#, false),
            // Entra ID (capitalised operators, externalId is case-exact)
            (r#"externalId EQ "00ujl29u0le5T6Aj10h7""#, true),
            (r#"externalId eq "00UJL29U0LE5T6AJ10H7""#, false),
            // OneLogin / generic
            (r#"id eq "2819c223""#, true),
            (r#"displayName eq "alice smith""#, true),
            (
                r#"userName eq "alice@example.com" and active eq true"#,
                true,
            ),
            (
                r#"userName eq "x" or externalId eq "00ujl29u0le5T6Aj10h7""#,
                true,
            ),
            (
                r#"userName eq "x" or (active eq true and displayName sw "Ali")"#,
                true,
            ),
            (r#"not (active eq true)"#, false),
            (r#"emails[type eq "work" and value co "example.com"]"#, true),
            (r#"emails[type eq "other"]"#, false),
            (r#"emails.value eq "al@home.example""#, true),
            (r#"emails eq "al@home.example""#, true),
            (r#"name.familyName ew "ith""#, true),
            (r#"title pr"#, false),
            (r#"name pr"#, true),
            (r#"meta.lastModified gt "2026-11-30T00:00:00Z""#, true),
            (
                r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "ALICE@example.com""#,
                true,
            ),
            (
                r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "42""#,
                true,
            ),
            (r#"userName ne "alice@example.com""#, false),
            (r#"userName ne "bob""#, true),
            (r#"userName eq "a \"quoted\" name""#, false),
        ];
        for (f, want) in table {
            let parsed = parse_filter(f).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert_eq!(matches(&parsed, &u), *want, "{f}");
        }
    }

    #[test]
    fn bad_filters_are_refused_with_a_reason() {
        let table: &[(&str, FilterError)] = &[
            (
                "userName eq",
                FilterError::Unexpected("end of filter".into()),
            ),
            (
                "userName xx \"a\"",
                FilterError::UnknownOperator("xx".into()),
            ),
            ("userName eq \"a", FilterError::UnterminatedString),
            (
                "(userName eq \"a\"",
                FilterError::Unexpected("end of filter".into()),
            ),
            ("userName eq \"a\")", FilterError::Unexpected("')'".into())),
            ("1abc eq \"a\"", FilterError::BadAttribute("1abc".into())),
            ("userName eq bare", FilterError::BadValue("bare".into())),
        ];
        for (f, want) in table {
            assert_eq!(parse_filter(f).unwrap_err(), *want, "{f}");
        }
        let deep = format!("{}userName pr{}", "(".repeat(40), ")".repeat(40));
        assert_eq!(parse_filter(&deep).unwrap_err(), FilterError::TooDeep);
        let long = format!("userName eq \"{}\"", "a".repeat(MAX_FILTER_LEN));
        assert_eq!(parse_filter(&long).unwrap_err(), FilterError::TooLong);
    }

    #[test]
    fn patch_paths() {
        let p = parse_patch_path(r#"members[value eq "2819c223"]"#).unwrap();
        assert_eq!(p.attr.attr, "members");
        assert!(p.filter.is_some());
        let p = parse_patch_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(p.sub_after_filter.as_deref(), Some("value"));
        let p = parse_patch_path("name.givenName").unwrap();
        assert_eq!(p.attr.sub.as_deref(), Some("givenName"));
        let p =
            parse_patch_path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager")
                .unwrap();
        assert_eq!(
            p.attr.urn.as_deref(),
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
        );
        assert_eq!(p.attr.attr, "manager");
        for bad in [
            "",
            "members[",
            "members[value eq \"a\"] x",
            "a..b",
            "members]",
        ] {
            assert!(parse_patch_path(bad).is_err(), "{bad}");
        }
    }
}
