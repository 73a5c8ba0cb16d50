//! Per-path access rules (`[access]`, `[[access.rules]]`): which requests pass without sign-in
//! (`allow`), which are refused outright (`deny`), and which need sign-in, optionally with their
//! own group and user lists (`authenticate`). The first matching rule wins; a request no rule
//! matches needs sign-in and the global `[authz]` lists.
//!
//! Rules must match what the upstream will serve, so a path is compared in several views: as
//! sent (query dropped), in canonical form (percent-decoded once, `\` read as `/`, `//`
//! collapsed, `.`/`..` resolved, never above the root) and, when it carries `;` parameters,
//! canonical with them stripped (Tomcat reads `/static/..;/admin` as `/admin`). A restrictive
//! rule (`deny`, `authenticate`) matches when ANY view matches; an `allow` rule only when EVERY
//! view matches and the path is unambiguous (no double encoding, bad escape, control character,
//! invalid UTF-8 or `;`). So whatever an upstream makes of an odd path, it can only cost a
//! sign-in, never skip one. Matching is case-sensitive: `/ADMIN` is not `/admin` (use a
//! `(?i)` regex for a case-insensitive upstream).

use std::borrow::Cow;

use http::{header, HeaderMap, Method};
use percent_encoding::percent_decode;
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use crate::authz::AuthzSection;
use crate::session::Identity;

/// The rule name reported for a CORS preflight let through by `allow_cors_preflight`.
pub const CORS_PREFLIGHT_RULE: &str = "cors-preflight";

const MAX_RULES: usize = 1000;
const MAX_NAME_LEN: usize = 100;
const MAX_REGEX_LEN: usize = 4096;
/// Compiled program size per rule; the regex crate matches in linear time, this bounds memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
const KNOWN_METHODS: &[&str] = &[
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "CONNECT",
    "OPTIONS",
    "TRACE",
    "PATCH",
    // WebDAV / CalDAV
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "REPORT",
    "SEARCH",
    "MKCALENDAR",
];

/// A rule `[access]` cannot compile: the key (with the rule's 0-based index) and why.
/// `config::ConfigError` wraps it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {reason}")]
pub struct RuleError {
    /// The key as the operator wrote it (`access.rules[0].path_regex`).
    pub key: String,
    /// What is wrong with its value.
    pub reason: String,
}

impl RuleError {
    fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// `[access]`: per-path rules, checked in order; the first match decides. A request no rule
/// matches needs sign-in and the `[authz]` lists.
#[derive(Debug, Clone, PartialEq, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AccessSection {
    /// Let CORS preflights (`OPTIONS` with an `Origin`, an `Access-Control-Request-Method` naming
    /// one method, and no body: no `Content-Length` other than 0, no `Transfer-Encoding`, and no
    /// HTTP/2 DATA frames) through to the application without sign-in; browsers never send cookies
    /// with them. A `deny` rule that matches the preflight first still refuses it, and an ambiguous
    /// path (see below) still needs sign-in. Logged as rule `cors-preflight`.
    pub allow_cors_preflight: bool,
    /// The `[[access.rules]]` tables, at most 1000 (keys in the next table).
    pub rules: Vec<RuleSection>,
}

/// One `[[access.rules]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RuleSection {
    /// Shown in logs. 1 to 100 characters, unique; `cors-preflight` is reserved. Unset: `"rule N"`
    /// (1-based).
    pub name: Option<String>,
    /// Upper-case methods the rule applies to (`GET`, `HEAD`, `POST`, `PUT`, `DELETE`, `OPTIONS`,
    /// `PATCH`, `CONNECT`, `TRACE`, or a WebDAV method). Empty: any method. For `allow` rules the
    /// method must match exactly (`GET` does not imply `HEAD`). For `deny` and `authenticate` rules
    /// letter case is ignored and `GET` also covers `HEAD`, because applications commonly serve
    /// those alike.
    pub methods: Vec<String>,
    /// The path starts with this text. Write it decoded and canonical: starting with `/`, without
    /// `%` escapes, `\`, `//`, `.`/`..` segments, `;` or control characters. `"/static/"` matches
    /// `/static/app.js` but not `/static`; `"/static"` also matches `/statics`. Exactly one of
    /// `path_prefix` and `path_regex`.
    pub path_prefix: Option<String>,
    /// A [regex](https://docs.rs/regex/latest/regex/#syntax) that must match the **whole** path (it
    /// is wrapped as `^(?:…)$`), e.g. `"/api/v[0-9]+/public/.*"`. At most 4096 characters and 1 MiB
    /// compiled.
    pub path_regex: Option<String>,
    /// `allow`: forward without sign-in and without identity headers. `authenticate`: sign-in
    /// required. `deny`: 403 for everyone, signed in or not. Required.
    pub action: String,
    /// Only with `authenticate`: replaces `[authz]` for the paths this rule matches (same
    /// semantics: listed user **or** member of a listed group **or** holder of a listed role). All
    /// three lists empty: `[authz]` applies.
    pub allowed_groups: Vec<String>,
    /// Only with `authenticate`, as above.
    pub allowed_users: Vec<String>,
    /// Only with `authenticate`, as above: roles from `[[roles]]` admitted on these paths.
    pub allowed_roles: Vec<String>,
    /// Only with `authenticate`: a request without a session may sign in here with `Authorization:
    /// Basic` (API clients), checked by `[password_signin]`. See
    /// [password-signin.md](password-signin.md#http-basic-for-api-clients).
    pub basic_auth: bool,
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'a> {
    /// Forward without sign-in (no identity headers).
    Anonymous { rule: &'a str },
    /// Sign-in required; `rule` is `None` when no rule matched.
    Authenticate {
        rule: Option<&'a str>,
        requirement: Requirement<'a>,
    },
    /// Refuse (403) whoever asks.
    Deny { rule: &'a str },
    /// Refuse (400): the path decodes to something else at an upstream that decodes again
    /// (double encoding, bad escapes, control characters, not UTF-8), and deny or
    /// authenticate rules exist that the other reading might match.
    Ambiguous { reason: &'static str },
}

impl<'a> Decision<'a> {
    /// The matching rule's name, for logs.
    pub fn rule(&self) -> Option<&'a str> {
        match *self {
            Decision::Anonymous { rule } | Decision::Deny { rule } => Some(rule),
            Decision::Authenticate { rule, .. } => rule,
            Decision::Ambiguous { .. } => None,
        }
    }
}

/// Who may pass once signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement<'a> {
    /// The global `[authz]` lists.
    Global,
    /// The rule's own lists (never all empty).
    Only {
        groups: &'a [String],
        users: &'a [String],
        roles: &'a [String],
    },
}

impl Requirement<'_> {
    /// Checks `identity` (with the `role` `[[roles]]` gave it at sign-in) against this
    /// requirement; `global` is `[authz]`.
    pub fn authorize(
        &self,
        identity: &Identity,
        role: Option<&str>,
        global: &AuthzSection,
    ) -> Result<(), crate::authz::Denial> {
        match self {
            Requirement::Global => crate::authz::authorize(identity, role, global),
            Requirement::Only {
                groups,
                users,
                roles,
            } => crate::authz::authorize_lists(
                identity,
                role,
                &crate::authz::Lists {
                    groups,
                    users,
                    roles,
                },
            ),
        }
    }
}

/// Compiled `[access]`. `Default` has no rules and CORS preflights off.
#[derive(Debug, Clone, Default)]
pub struct AccessRules {
    rules: Vec<Rule>,
    cors_preflight: bool,
    /// Some rule is `deny` or `authenticate` (then an undecidable path is refused).
    restricting: bool,
}

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    /// Empty: any method.
    methods: Vec<Method>,
    path: PathMatcher,
    action: Action,
    /// HTTP Basic sign-in allowed on the paths this rule matches.
    basic_auth: bool,
}

#[derive(Debug, Clone)]
enum PathMatcher {
    Prefix(String),
    /// Anchored: `^(?:…)$`.
    Regex(Regex),
}

impl PathMatcher {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatcher::Prefix(p) => path.starts_with(p.as_str()),
            PathMatcher::Regex(r) => r.is_match(path),
        }
    }
}

#[derive(Debug, Clone)]
enum Action {
    Allow,
    Authenticate {
        groups: Vec<String>,
        users: Vec<String>,
        roles: Vec<String>,
    },
    Deny,
}

impl AccessRules {
    /// Validates and compiles `[access]`. Errors name the key (`access.rules[0].path_regex`;
    /// indices are 0-based like the TOML parser's own messages).
    pub fn compile(section: &AccessSection) -> Result<AccessRules, RuleError> {
        if section.rules.len() > MAX_RULES {
            return Err(RuleError::new(
                "access.rules",
                format!("at most {MAX_RULES} rules"),
            ));
        }
        let mut rules: Vec<Rule> = Vec::with_capacity(section.rules.len());
        for (i, raw) in section.rules.iter().enumerate() {
            let rule = compile_rule(i, raw)?;
            if rules.iter().any(|r| r.name == rule.name) {
                return Err(RuleError::new(
                    format!("access.rules[{i}].name"),
                    format!("{:?} is already the name of another rule", rule.name),
                ));
            }
            rules.push(rule);
        }
        Ok(AccessRules {
            restricting: rules.iter().any(|r| !matches!(r.action, Action::Allow)),
            rules,
            cors_preflight: section.allow_cors_preflight,
        })
    }

    /// Whether the rule named `rule` (from a [`Decision::Authenticate`]) allows HTTP Basic.
    /// No rule (the default requirement): never.
    pub fn allows_basic(&self, rule: Option<&str>) -> bool {
        rule.is_some_and(|name| self.rules.iter().any(|r| r.basic_auth && r.name == name))
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// No rules (CORS preflights may still be exempt).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether every request gets the same decision whatever its method and path (no rules,
    /// no CORS exemption): then a forward-auth check need not know the original request.
    pub fn path_independent(&self) -> bool {
        self.rules.is_empty() && !self.cors_preflight
    }

    /// Whether the method never matters (no rule lists methods, no CORS exemption): then a
    /// forward-auth check need not know the original method.
    pub fn method_independent(&self) -> bool {
        !self.cors_preflight && self.rules.iter().all(|r| r.methods.is_empty())
    }

    /// Decides one request. `path` is the request path; a query, if present, is ignored.
    /// `body_empty`: the request has no body at all (for a CORS preflight; an HTTP/2 request
    /// may carry DATA frames without announcing them in a header). Without rules and with
    /// CORS preflights off this returns at once without allocating.
    pub fn decide(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body_empty: bool,
    ) -> Decision<'_> {
        const GLOBAL: Decision<'static> = Decision::Authenticate {
            rule: None,
            requirement: Requirement::Global,
        };
        if self.rules.is_empty() && !self.cors_preflight {
            return GLOBAL;
        }
        let path = canonicalize(path);
        let unambiguous = path.ambiguity.is_none();
        // Deny and authenticate rules match every reading of the path we can see; a path that
        // another decoding would turn into something else cannot be judged by them.
        if let Some(a) = path.ambiguity {
            let undecidable = matches!(
                a,
                Ambiguity::BadEscape
                    | Ambiguity::DoubleEncoding
                    | Ambiguity::ControlCharacter
                    | Ambiguity::NotUtf8
            );
            if undecidable && self.restricting {
                // A deny rule that matches what we can see still answers 403; anything else
                // (even an authenticate rule: the other reading may be a denied path) is 400.
                let denied = self.rules.iter().find(|r| {
                    matches!(r.action, Action::Deny)
                        && (r.methods.is_empty()
                            || r.methods.iter().any(|m| same_method(m, method)))
                        && path.any_view(|p| r.path.matches(p))
                });
                return match denied {
                    Some(rule) => Decision::Deny { rule: &rule.name },
                    None => Decision::Ambiguous { reason: a.as_str() },
                };
            }
        }
        let preflight =
            self.cors_preflight && unambiguous && body_empty && is_cors_preflight(method, headers);
        for rule in &self.rules {
            // Allow rules take the method exactly; the restricting ones also catch what an
            // upstream may treat alike (`HEAD` as `GET`, `get` as `GET`).
            let method_ok = match rule.action {
                Action::Allow => rule.methods.is_empty() || rule.methods.contains(method),
                _ => rule.methods.is_empty() || rule.methods.iter().any(|m| same_method(m, method)),
            };
            if !method_ok {
                continue;
            }
            match &rule.action {
                Action::Allow => {
                    if unambiguous && path.every_view(|p| rule.path.matches(p)) {
                        return Decision::Anonymous { rule: &rule.name };
                    }
                }
                Action::Deny => {
                    if path.any_view(|p| rule.path.matches(p)) {
                        return Decision::Deny { rule: &rule.name };
                    }
                }
                Action::Authenticate {
                    groups,
                    users,
                    roles,
                } => {
                    if path.any_view(|p| rule.path.matches(p)) {
                        if preflight {
                            return Decision::Anonymous {
                                rule: CORS_PREFLIGHT_RULE,
                            };
                        }
                        let requirement =
                            if groups.is_empty() && users.is_empty() && roles.is_empty() {
                                Requirement::Global
                            } else {
                                Requirement::Only {
                                    groups,
                                    users,
                                    roles,
                                }
                            };
                        return Decision::Authenticate {
                            rule: Some(&rule.name),
                            requirement,
                        };
                    }
                }
            }
        }
        if preflight {
            Decision::Anonymous {
                rule: CORS_PREFLIGHT_RULE,
            }
        } else {
            GLOBAL
        }
    }
}

/// `listed` (a rule's method) covers `method` for a restricting rule: the same letters in any
/// case, and `GET` also covers `HEAD`.
fn same_method(listed: &Method, method: &Method) -> bool {
    listed.as_str().eq_ignore_ascii_case(method.as_str())
        || (*listed == Method::GET && method.as_str().eq_ignore_ascii_case("HEAD"))
}

/// A real preflight: `OPTIONS` with an `Origin`, a valid `Access-Control-Request-Method`
/// token, and no body (a preflight never has one; a body would reach the upstream anonymously).
fn is_cors_preflight(method: &Method, headers: &HeaderMap) -> bool {
    let no_body = !headers.contains_key(header::TRANSFER_ENCODING)
        && headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .all(|v| v.as_bytes() == b"0");
    method == Method::OPTIONS
        && no_body
        && headers.get(header::ORIGIN).is_some_and(|v| !v.is_empty())
        && headers
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .is_some_and(|v| Method::from_bytes(v.as_bytes()).is_ok())
}

fn compile_rule(i: usize, raw: &RuleSection) -> Result<Rule, RuleError> {
    let name = compile_name(i, raw)?;
    let methods = compile_methods(i, raw)?;
    let path = compile_path(i, raw)?;
    let action = compile_action(i, raw)?;
    check_authenticate_only_fields(i, raw, &action)?;
    Ok(Rule {
        name,
        methods,
        path,
        action,
        basic_auth: raw.basic_auth,
    })
}

/// The config key of one field of rule `i`, as error messages name it.
fn rule_key(i: usize, field: &str) -> String {
    format!("access.rules[{i}].{field}")
}

/// The rule's name, or "rule N" when unnamed; the preflight rule's name is reserved.
fn compile_name(i: usize, raw: &RuleSection) -> Result<String, RuleError> {
    let Some(n) = &raw.name else {
        return Ok(format!("rule {}", i + 1));
    };
    if n.is_empty() || n.len() > MAX_NAME_LEN || n.chars().any(char::is_control) {
        return Err(RuleError::new(
            rule_key(i, "name"),
            format!("must be 1 to {MAX_NAME_LEN} characters without control characters"),
        ));
    }
    if n == CORS_PREFLIGHT_RULE {
        return Err(RuleError::new(
            rule_key(i, "name"),
            format!("{CORS_PREFLIGHT_RULE:?} is reserved for allow_cors_preflight"),
        ));
    }
    Ok(n.clone())
}

/// The listed methods, each known and upper case, duplicates dropped.
fn compile_methods(i: usize, raw: &RuleSection) -> Result<Vec<Method>, RuleError> {
    let mut methods = Vec::with_capacity(raw.methods.len());
    for m in &raw.methods {
        if !KNOWN_METHODS.contains(&m.as_str()) {
            return Err(RuleError::new(
                rule_key(i, "methods"),
                format!(
                    "unknown method {m:?}; methods are upper case, one of {}",
                    KNOWN_METHODS.join(", ")
                ),
            ));
        }
        let method = Method::from_bytes(m.as_bytes())
            .map_err(|_| RuleError::new(rule_key(i, "methods"), format!("invalid method {m:?}")))?;
        if !methods.contains(&method) {
            methods.push(method);
        }
    }
    Ok(methods)
}

/// Exactly one of path_prefix and path_regex, checked or compiled.
fn compile_path(i: usize, raw: &RuleSection) -> Result<PathMatcher, RuleError> {
    match (&raw.path_prefix, &raw.path_regex) {
        (Some(_), Some(_)) => Err(RuleError::new(
            rule_key(i, "path_regex"),
            "cannot be combined with path_prefix: set exactly one of them",
        )),
        (None, None) => Err(RuleError::new(
            format!("access.rules[{i}]"),
            "needs path_prefix or path_regex",
        )),
        (Some(prefix), None) => Ok(PathMatcher::Prefix(check_prefix(
            prefix,
            &rule_key(i, "path_prefix"),
        )?)),
        (None, Some(src)) => Ok(PathMatcher::Regex(compile_regex(
            src,
            &rule_key(i, "path_regex"),
        )?)),
    }
}

/// The action; for "authenticate", its allowed groups, users and roles are checked too.
fn compile_action(i: usize, raw: &RuleSection) -> Result<Action, RuleError> {
    match raw.action.as_str() {
        "allow" => Ok(Action::Allow),
        "deny" => Ok(Action::Deny),
        "authenticate" => {
            check_names(&raw.allowed_groups, &rule_key(i, "allowed_groups"))?;
            check_names(&raw.allowed_users, &rule_key(i, "allowed_users"))?;
            check_names(&raw.allowed_roles, &rule_key(i, "allowed_roles"))?;
            Ok(Action::Authenticate {
                groups: raw.allowed_groups.clone(),
                users: raw.allowed_users.clone(),
                roles: raw.allowed_roles.clone(),
            })
        }
        "" => Err(RuleError::new(
            rule_key(i, "action"),
            "is required: \"allow\", \"authenticate\" or \"deny\"",
        )),
        other => Err(RuleError::new(
            rule_key(i, "action"),
            format!("must be \"allow\", \"authenticate\" or \"deny\", not {other:?}"),
        )),
    }
}

/// basic_auth and the allowed_* lists mean nothing outside "authenticate": refuse them
/// there rather than let an operator believe they restrict an allow or deny rule.
fn check_authenticate_only_fields(
    i: usize,
    raw: &RuleSection,
    action: &Action,
) -> Result<(), RuleError> {
    if matches!(action, Action::Authenticate { .. }) {
        return Ok(());
    }
    let misplaced = |field: &str| {
        RuleError::new(
            rule_key(i, field),
            format!(
                "only applies to action = \"authenticate\", not {:?}",
                raw.action
            ),
        )
    };
    if raw.basic_auth {
        return Err(misplaced("basic_auth"));
    }
    for (field, list) in [
        ("allowed_groups", &raw.allowed_groups),
        ("allowed_users", &raw.allowed_users),
        ("allowed_roles", &raw.allowed_roles),
    ] {
        if !list.is_empty() {
            return Err(misplaced(field));
        }
    }
    Ok(())
}

fn check_prefix(prefix: &str, key: &str) -> Result<String, RuleError> {
    if !prefix.starts_with('/') {
        return Err(RuleError::new(
            key,
            format!("must start with '/': {prefix:?}"),
        ));
    }
    let canonical = canonicalize(prefix);
    if canonical.ambiguity.is_some() || canonical.canonical != prefix || prefix.contains('%') {
        return Err(RuleError::new(
            key,
            format!(
                "must be a canonical path, as matched after decoding: no '%' escapes, '\\\\', '//', '.' or '..' segments, ';' or control characters: {prefix:?}"
            ),
        ));
    }
    Ok(prefix.to_string())
}

fn compile_regex(src: &str, key: &str) -> Result<Regex, RuleError> {
    if src.is_empty() || src.len() > MAX_REGEX_LEN {
        return Err(RuleError::new(
            key,
            format!("must be 1 to {MAX_REGEX_LEN} characters"),
        ));
    }
    RegexBuilder::new(&format!("^(?:{src})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            RuleError::new(
                key,
                format!(
                    "not a valid regex (or too large): {}",
                    e.to_string().replace('\n', " ")
                ),
            )
        })
}

fn check_names(list: &[String], key: &str) -> Result<(), RuleError> {
    if list.iter().any(|s| s.is_empty()) {
        return Err(RuleError::new(key, "must not contain an empty name"));
    }
    Ok(())
}

/// Why a path is ambiguous: `allow` rules and the CORS exemption do not apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ambiguity {
    /// Does not start with `/` (`*`, authority form).
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// Still contains `%XX` after one decoding (`%252e`).
    DoubleEncoding,
    /// NUL or another control character after decoding.
    ControlCharacter,
    /// Not UTF-8 after decoding.
    NotUtf8,
    /// A `;`: some servers strip `;parameters` from segments (`..;` = `..`).
    PathParameter,
}

impl Ambiguity {
    pub fn as_str(self) -> &'static str {
        match self {
            Ambiguity::NotAbsolute => "not_absolute",
            Ambiguity::BadEscape => "bad_escape",
            Ambiguity::DoubleEncoding => "double_encoding",
            Ambiguity::ControlCharacter => "control_character",
            Ambiguity::NotUtf8 => "not_utf8",
            Ambiguity::PathParameter => "path_parameter",
        }
    }
}

/// The views of one request path that rules are matched against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath<'a> {
    /// As sent, query dropped.
    pub raw: &'a str,
    /// Percent-decoded once (invalid UTF-8 replaced by U+FFFD), `\` read as `/`, `//`
    /// collapsed, `.` and `..` resolved (never above `/`). Borrowed when equal to `raw`.
    pub canonical: Cow<'a, str>,
    /// When the path has a `;`: canonical after removing `;…` from every segment first.
    pub without_parameters: Option<String>,
    /// Set when `allow` rules must not apply.
    pub ambiguity: Option<Ambiguity>,
}

impl CanonicalPath<'_> {
    fn views(&self) -> impl Iterator<Item = &str> {
        let canonical = match &self.canonical {
            Cow::Borrowed(_) => None, // the same text as `raw`
            Cow::Owned(s) => Some(s.as_str()),
        };
        std::iter::once(self.raw)
            .chain(canonical)
            .chain(self.without_parameters.as_deref())
    }

    fn any_view(&self, mut f: impl FnMut(&str) -> bool) -> bool {
        self.views().any(&mut f)
    }

    fn every_view(&self, mut f: impl FnMut(&str) -> bool) -> bool {
        self.views().all(&mut f)
    }
}

/// Splits off the query and computes the views of a request path (see [`CanonicalPath`]).
pub fn canonicalize(path: &str) -> CanonicalPath<'_> {
    let raw = path.split_once('?').map_or(path, |(p, _)| p);
    if is_plain(raw) {
        return CanonicalPath {
            raw,
            canonical: Cow::Borrowed(raw),
            without_parameters: None,
            ambiguity: None,
        };
    }
    let (canonical, mut ambiguity) = canonical_form(raw);
    let without_parameters = raw
        .contains(';')
        .then(|| canonical_form(&strip_parameters(raw)).0);
    if ambiguity.is_none() && canonical.contains(';') {
        ambiguity = Some(Ambiguity::PathParameter);
    }
    if ambiguity.is_none() && !raw.starts_with('/') {
        ambiguity = Some(Ambiguity::NotAbsolute);
    }
    CanonicalPath {
        raw,
        canonical: if canonical == raw {
            Cow::Borrowed(raw)
        } else {
            Cow::Owned(canonical)
        },
        without_parameters,
        ambiguity,
    }
}

/// True when canonicalization cannot change the path: absolute, only unreserved characters
/// and sub-delimiters other than `;`, no `%`, `\`, `//` or dot segments.
fn is_plain(raw: &str) -> bool {
    let b = raw.as_bytes();
    if b.first() != Some(&b'/') {
        return false;
    }
    let chars_ok = b.iter().all(|&c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'/' | b'-'
                    | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b'='
                    | b':'
                    | b'@'
            )
    });
    chars_ok
        && !raw.contains("//")
        && raw
            .split('/')
            .all(|segment| segment != "." && segment != "..")
}

/// Decodes once, flags ambiguity, and normalizes separators and dot segments.
fn canonical_form(raw: &str) -> (String, Option<Ambiguity>) {
    let mut ambiguity = None;
    let mut note = |a: Ambiguity| {
        if ambiguity.is_none() {
            ambiguity = Some(a);
        }
    };
    if has_bad_escape(raw.as_bytes()) {
        note(Ambiguity::BadEscape);
    }
    let decoded: Cow<'_, [u8]> = percent_decode(raw.as_bytes()).into();
    if has_escape(&decoded) {
        note(Ambiguity::DoubleEncoding);
    }
    if decoded.iter().any(|&c| c < 0x20 || c == 0x7f) {
        note(Ambiguity::ControlCharacter);
    }
    let text = match std::str::from_utf8(&decoded) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => {
            note(Ambiguity::NotUtf8);
            String::from_utf8_lossy(&decoded)
        }
    };
    if text.chars().any(char::is_control) {
        note(Ambiguity::ControlCharacter); // C1 controls (U+0080..U+009F)
    }
    (normalize_segments(&text), ambiguity)
}

fn is_hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

fn has_escape(b: &[u8]) -> bool {
    b.windows(3)
        .any(|w| w[0] == b'%' && is_hex(w[1]) && is_hex(w[2]))
}

fn has_bad_escape(b: &[u8]) -> bool {
    b.iter().enumerate().any(|(i, &c)| {
        c == b'%'
            && !(b.get(i + 1).copied().is_some_and(is_hex)
                && b.get(i + 2).copied().is_some_and(is_hex))
    })
}

/// `\` as `/`, empty segments dropped, `.` dropped, `..` removes the previous segment (never
/// above the root); a trailing `/`, `.` or `..` leaves a trailing `/` (RFC 3986 §5.2.4).
fn normalize_segments(decoded: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in decoded.split(['/', '\\']) {
        match segment {
            "" | "." => trailing_slash = true,
            ".." => {
                kept.pop();
                trailing_slash = true;
            }
            s => {
                kept.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(decoded.len() + 1);
    for s in &kept {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || kept.is_empty() {
        out.push('/');
    }
    out
}

/// Removes `;…` up to the next `/` or `\` from the raw path (before decoding, as Tomcat does).
fn strip_parameters(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut skipping = false;
    for c in raw.chars() {
        match c {
            ';' => skipping = true,
            '/' | '\\' => {
                skipping = false;
                out.push(c);
            }
            c if !skipping => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(action: &str, prefix: Option<&str>, regex: Option<&str>) -> RuleSection {
        RuleSection {
            action: action.into(),
            path_prefix: prefix.map(str::to_string),
            path_regex: regex.map(str::to_string),
            ..RuleSection::default()
        }
    }

    fn named(mut r: RuleSection, name: &str) -> RuleSection {
        r.name = Some(name.into());
        r
    }

    fn compile(rules: Vec<RuleSection>) -> AccessRules {
        AccessRules::compile(&AccessSection {
            allow_cors_preflight: false,
            rules,
        })
        .unwrap()
    }

    fn get<'r>(rules: &'r AccessRules, path: &str) -> Decision<'r> {
        rules.decide(&Method::GET, path, &HeaderMap::new(), true)
    }

    const GLOBAL: Decision<'static> = Decision::Authenticate {
        rule: None,
        requirement: Requirement::Global,
    };

    fn canon(p: &str) -> String {
        canonicalize(p).canonical.into_owned()
    }

    #[test]
    fn basic_auth_is_a_property_of_authenticate_rules() {
        let api = RuleSection {
            basic_auth: true,
            ..named(rule("authenticate", Some("/api/"), None), "api")
        };
        let rules = compile(vec![
            api,
            named(rule("authenticate", Some("/app/"), None), "app"),
        ]);
        for (path, want) in [("/api/x", true), ("/app/x", false), ("/other", false)] {
            assert_eq!(rules.allows_basic(get(&rules, path).rule()), want, "{path}");
        }
        let on_allow = RuleSection {
            basic_auth: true,
            ..rule("allow", Some("/pub/"), None)
        };
        let err = AccessRules::compile(&AccessSection {
            allow_cors_preflight: false,
            rules: vec![on_allow],
        })
        .unwrap_err();
        assert_eq!(err.key, "access.rules[0].basic_auth");
    }

    #[test]
    fn canonical_form_decodes_once_and_resolves_segments() {
        for (input, want) in [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("/a//b", "/a/b"),
            ("//admin", "/admin"),
            ("/a/./b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/static/../admin", "/admin"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/static/%2e%2e/admin", "/admin"),
            ("/static/%2E%2E/admin", "/admin"),
            ("/static/..%2fadmin", "/admin"),
            ("/static%2f..%2fadmin", "/admin"),
            ("/static\\..\\admin", "/admin"),
            ("/static/%5c..%5cadmin", "/admin"),
            ("/admin%2fsecret", "/admin/secret"),
            ("/caf%C3%A9", "/café"),
            ("/a?b=/../c", "/a"),
            ("/a%3Fb", "/a?b"),
            ("/a%23b", "/a#b"),
            ("/static/%252e%252e/admin", "/static/%2e%2e/admin"),
        ] {
            assert_eq!(canon(input), want, "{input}");
        }
    }

    #[test]
    fn plain_paths_are_borrowed() {
        for p in ["/", "/static/app.js", "/a-b_c~d/e.f", "/x/y:z@w"] {
            let c = canonicalize(p);
            assert!(matches!(c.canonical, Cow::Borrowed(_)), "{p}");
            assert_eq!(c.ambiguity, None);
            assert_eq!(c.without_parameters, None);
        }
        assert!(matches!(
            canonicalize("/a/b?q=1").canonical,
            Cow::Borrowed("/a/b")
        ));
        assert!(matches!(canonicalize("/a%20b").canonical, Cow::Owned(_)));
        // Not plain, but canonical equals raw: borrowed (and ambiguous).
        let c = canonicalize("/a;b");
        assert!(matches!(c.canonical, Cow::Borrowed("/a;b")));
        assert_eq!(c.ambiguity, Some(Ambiguity::PathParameter));
    }

    #[test]
    fn ambiguity_is_detected() {
        for (input, want) in [
            ("/static/%252e%252e/admin", Ambiguity::DoubleEncoding),
            ("/a%2541", Ambiguity::DoubleEncoding),
            ("/a%zz", Ambiguity::BadEscape),
            ("/a%4", Ambiguity::BadEscape),
            ("/a%", Ambiguity::BadEscape),
            ("/a%00b", Ambiguity::ControlCharacter),
            ("/a%0d%0ab", Ambiguity::ControlCharacter),
            ("/a%7f", Ambiguity::ControlCharacter),
            ("/a%C2%85", Ambiguity::ControlCharacter),
            ("/a%ff", Ambiguity::NotUtf8),
            ("/a%c0%ae%c0%ae/x", Ambiguity::NotUtf8),
            ("/static/..;/admin", Ambiguity::PathParameter),
            ("/a;jsessionid=1", Ambiguity::PathParameter),
            ("/a%3bb", Ambiguity::PathParameter),
            ("*", Ambiguity::NotAbsolute),
            ("static/x", Ambiguity::NotAbsolute),
        ] {
            assert_eq!(canonicalize(input).ambiguity, Some(want), "{input}");
        }
        for fine in ["/a%20b", "/caf%C3%A9", "/static/..%2fadmin", "/a\\b", "//x"] {
            assert_eq!(canonicalize(fine).ambiguity, None, "{fine}");
        }
    }

    #[test]
    fn parameters_are_stripped_in_their_own_view() {
        let c = canonicalize("/static/..;/admin");
        assert_eq!(c.canonical, "/static/..;/admin");
        assert_eq!(c.without_parameters.as_deref(), Some("/admin"));
        let c = canonicalize("/admin;x=1/secret");
        assert_eq!(c.without_parameters.as_deref(), Some("/admin/secret"));
    }

    fn static_and_admin() -> AccessRules {
        compile(vec![
            named(rule("deny", Some("/admin"), None), "no-admin"),
            named(rule("allow", Some("/static/"), None), "static"),
        ])
    }

    #[test]
    fn allow_and_deny_on_plain_paths() {
        let r = static_and_admin();
        assert_eq!(
            get(&r, "/static/app.js"),
            Decision::Anonymous { rule: "static" }
        );
        assert_eq!(get(&r, "/admin"), Decision::Deny { rule: "no-admin" });
        assert_eq!(get(&r, "/admin/users"), Decision::Deny { rule: "no-admin" });
        assert_eq!(get(&r, "/home"), GLOBAL);
        assert_eq!(
            get(&r, "/static"),
            GLOBAL,
            "prefix /static/ needs the slash"
        );
    }

    #[test]
    fn traversal_out_of_an_allowed_prefix_needs_sign_in_or_is_denied() {
        let r = static_and_admin();
        for p in [
            "/static/../admin",
            "/static/%2e%2e/admin",
            "/static/..%2fadmin",
            "/static%2f..%2fadmin",
            "/static/%2E%2E/admin",
            "/static\\..\\admin",
            "/static/..\\admin",
            "/static/%5c..%5cadmin",
            "//admin",
            "///admin",
            "/./admin",
            "/admin?x=/static/",
        ] {
            assert_eq!(get(&r, p), Decision::Deny { rule: "no-admin" }, "{p}");
        }
    }

    #[test]
    fn traversal_out_of_an_allowed_prefix_without_a_deny_rule_needs_sign_in() {
        let r = compile(vec![rule("allow", Some("/static/"), None)]);
        for p in [
            "/static/../admin",
            "/static/%2e%2e/admin",
            "/static/..%2fadmin",
            "/static%2f..%2fadmin",
            "/static/%252e%252e/admin",
            "/static/..;/admin",
            "/static/.%2e/admin",
            "/static/%c0%ae%c0%ae/admin",
            "/static/x%00.js",
            "/static/x%0a",
            "/static/a%zz",
            "/st%61tic/app.js",
            "/static%2fapp.js",
            "/static\\app.js",
        ] {
            assert_eq!(get(&r, p), GLOBAL, "{p}");
        }
        // Legitimate spellings still pass.
        for p in [
            "/static/app.js",
            "/static/a%20b.png",
            "/static//app.js",
            "/static/a%2fb.js",
            "/static/app.js?v=../../admin",
        ] {
            assert_eq!(get(&r, p), Decision::Anonymous { rule: "rule 1" }, "{p}");
        }
    }

    #[test]
    fn an_allowed_prefix_reached_by_traversal_from_elsewhere_is_not_allowed() {
        // A naive upstream that does not resolve `..` would serve /admin/... for these.
        let r = compile(vec![rule("allow", Some("/static/"), None)]);
        for p in [
            "/admin/../static/x",
            "/admin/%2e%2e/static/x",
            "/admin%2f..%2fstatic/x",
            "/admin/..;/static/x",
        ] {
            assert_eq!(get(&r, p), GLOBAL, "{p}");
        }
    }

    #[test]
    fn double_encoding_still_hits_deny_and_authenticate_rules() {
        let r = compile(vec![
            named(rule("deny", Some("/admin/"), None), "deny-admin"),
            named(rule("allow", Some("/"), None), "everything"),
        ]);
        assert_eq!(
            get(&r, "/admin/%252e%252e/x"),
            Decision::Deny { rule: "deny-admin" }
        );
        assert_eq!(
            get(&r, "/x/%252e%252e/y"),
            Decision::Ambiguous {
                reason: "double_encoding"
            },
            "ambiguous: the allow rule does not apply, and the deny rule might under another decoding"
        );
        // Without restricting rules an ambiguous path simply needs sign-in.
        let only_allow = compile(vec![named(rule("allow", Some("/"), None), "everything")]);
        assert_eq!(get(&only_allow, "/x/%252e%252e/y"), GLOBAL);
        assert_eq!(get(&r, "/x/y"), Decision::Anonymous { rule: "everything" });
    }

    #[test]
    fn encoded_slash_and_parameters_hit_a_deny_prefix() {
        let r = compile(vec![named(rule("deny", Some("/admin/"), None), "d")]);
        for p in [
            "/admin%2fsecret",
            "/admin%2Fsecret",
            "/admin%5csecret",
            "/admin\\secret",
            "/admin;x/secret",
            "/admin/",
            "/x/../admin/y",
            // As sent, this is under /admin/: an upstream that does not resolve `..` serves it.
            "/admin/../x",
            "/admin/%2e%2e/x",
        ] {
            assert_eq!(get(&r, p), Decision::Deny { rule: "d" }, "{p}");
        }
        // Not under /admin/ in any view.
        assert_eq!(get(&r, "/admin"), GLOBAL);
        assert_eq!(get(&r, "/administrator"), GLOBAL);
    }

    #[test]
    fn matching_is_case_sensitive() {
        // Documented: /ADMIN is a different path; a case-insensitive upstream needs (?i).
        let r = compile(vec![named(rule("deny", Some("/admin"), None), "d")]);
        assert_eq!(get(&r, "/ADMIN"), GLOBAL);
        let r = compile(vec![named(
            rule("deny", None, Some("(?i)/admin(/.*)?")),
            "d",
        )]);
        assert_eq!(get(&r, "/ADMIN"), Decision::Deny { rule: "d" });
        assert_eq!(get(&r, "/Admin/x"), Decision::Deny { rule: "d" });
    }

    #[test]
    fn regex_must_match_the_whole_path() {
        let r = compile(vec![named(
            rule("allow", None, Some("/api/v[0-9]+/public/.*")),
            "public-api",
        )]);
        assert_eq!(
            get(&r, "/api/v2/public/items"),
            Decision::Anonymous { rule: "public-api" }
        );
        assert_eq!(
            get(&r, "/x/api/v2/public/items"),
            GLOBAL,
            "anchored at start"
        );
        let r = compile(vec![rule("allow", None, Some("/health"))]);
        assert_eq!(get(&r, "/health"), Decision::Anonymous { rule: "rule 1" });
        assert_eq!(get(&r, "/healthz"), GLOBAL, "anchored at end");
        assert_eq!(get(&r, "/health/../admin"), GLOBAL);
        let r = compile(vec![rule("allow", None, Some("a|/b"))]);
        assert_eq!(
            get(&r, "/b/c"),
            GLOBAL,
            "alternation stays inside the anchors"
        );
    }

    #[test]
    fn first_matching_rule_wins_and_methods_filter() {
        let mut health = named(rule("allow", Some("/health"), None), "health");
        health.methods = vec!["GET".into(), "HEAD".into()];
        let r = compile(vec![
            health,
            named(rule("deny", Some("/"), None), "deny-all"),
        ]);
        assert_eq!(get(&r, "/health"), Decision::Anonymous { rule: "health" });
        assert_eq!(
            r.decide(&Method::HEAD, "/health", &HeaderMap::new(), true),
            Decision::Anonymous { rule: "health" }
        );
        assert_eq!(
            r.decide(&Method::POST, "/health", &HeaderMap::new(), true),
            Decision::Deny { rule: "deny-all" }
        );
        assert_eq!(get(&r, "/other"), Decision::Deny { rule: "deny-all" });
    }

    #[test]
    fn a_rule_with_only_allowed_roles_is_its_own_requirement() {
        let mut admin = named(rule("authenticate", Some("/admin/"), None), "admin");
        admin.allowed_roles = vec!["Admin".into()];
        let r = compile(vec![admin]);
        match get(&r, "/admin/x") {
            Decision::Authenticate {
                rule: Some("admin"),
                requirement:
                    Requirement::Only {
                        groups,
                        users,
                        roles,
                    },
            } => {
                assert!(groups.is_empty() && users.is_empty());
                assert_eq!(roles, ["Admin".to_string()]);
            }
            other => panic!("{other:?}"),
        }
        let mut bad = rule("allow", Some("/x/"), None);
        bad.allowed_roles = vec!["Admin".into()];
        assert_eq!(compile_err(vec![bad]).key, "access.rules[0].allowed_roles");
        let mut empty = rule("authenticate", Some("/x/"), None);
        empty.allowed_roles = vec![String::new()];
        assert_eq!(
            compile_err(vec![empty]).key,
            "access.rules[0].allowed_roles"
        );
    }

    #[test]
    fn authenticate_rules_carry_their_lists() {
        let mut ops = named(rule("authenticate", Some("/ops/"), None), "ops");
        ops.allowed_groups = vec!["sre".into()];
        ops.allowed_users = vec!["root@example.com".into()];
        let r = compile(vec![
            ops,
            named(rule("authenticate", Some("/app/"), None), "app"),
        ]);
        match r.decide(&Method::GET, "/ops/x", &HeaderMap::new(), true) {
            Decision::Authenticate {
                rule: Some("ops"),
                requirement: Requirement::Only { groups, users, .. },
            } => {
                assert_eq!(groups, ["sre".to_string()]);
                assert_eq!(users, ["root@example.com".to_string()]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            get(&r, "/app/x"),
            Decision::Authenticate {
                rule: Some("app"),
                requirement: Requirement::Global
            }
        );
        // The rule's lists apply in every view, including traversal into it.
        assert!(matches!(
            get(&r, "/public/..%2fops/x"),
            Decision::Authenticate {
                rule: Some("ops"),
                ..
            }
        ));
    }

    #[test]
    fn requirement_checks_the_right_lists() {
        let who = |user: &str, groups: &[&str]| Identity {
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Identity::default()
        };
        let global = AuthzSection {
            allowed_groups: vec!["staff".into()],
            ..AuthzSection::default()
        };
        let groups = vec!["sre".to_string()];
        let only = Requirement::Only {
            groups: &groups,
            users: &[],
            roles: &[],
        };
        assert!(only.authorize(&who("a", &["sre"]), None, &global).is_ok());
        assert!(only
            .authorize(&who("a", &["staff"]), None, &global)
            .is_err());
        assert!(Requirement::Global
            .authorize(&who("a", &["staff"]), None, &global)
            .is_ok());
        assert!(Requirement::Global
            .authorize(&who("a", &["sre"]), None, &global)
            .is_err());
        let admins = vec!["Admin".to_string()];
        let by_role = Requirement::Only {
            groups: &[],
            users: &[],
            roles: &admins,
        };
        assert!(by_role
            .authorize(&who("a", &[]), Some("Admin"), &global)
            .is_ok());
        assert!(by_role
            .authorize(&who("a", &["staff"]), Some("Viewer"), &global)
            .is_err());
        assert!(by_role
            .authorize(&who("a", &["staff"]), None, &global)
            .is_err());
    }

    fn preflight_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, "https://other.example".parse().unwrap());
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            "PUT".parse().unwrap(),
        );
        h
    }

    #[test]
    fn cors_preflight_exemption() {
        let section = AccessSection {
            allow_cors_preflight: true,
            rules: vec![
                named(rule("deny", Some("/admin/"), None), "no-admin"),
                named(rule("authenticate", Some("/api/"), None), "api"),
            ],
        };
        let r = AccessRules::compile(&section).unwrap();
        let h = preflight_headers();
        let cors = Decision::Anonymous {
            rule: CORS_PREFLIGHT_RULE,
        };
        assert_eq!(r.decide(&Method::OPTIONS, "/api/x", &h, true), cors);
        assert_eq!(r.decide(&Method::OPTIONS, "/other", &h, true), cors);
        assert_eq!(
            r.decide(&Method::OPTIONS, "/admin/x", &h, true),
            Decision::Deny { rule: "no-admin" },
            "deny wins"
        );
        assert_eq!(
            r.decide(&Method::OPTIONS, "/x/%252e%252e/y", &h, true),
            Decision::Ambiguous {
                reason: "double_encoding"
            },
            "ambiguous path: no exemption"
        );
        // Not a preflight: a plain OPTIONS, a missing header, another method.
        let mut only_origin = HeaderMap::new();
        only_origin.insert(header::ORIGIN, "https://o.example".parse().unwrap());
        assert_eq!(
            r.decide(&Method::OPTIONS, "/other", &only_origin, true),
            GLOBAL
        );
        assert_eq!(
            r.decide(&Method::OPTIONS, "/other", &HeaderMap::new(), true),
            GLOBAL
        );
        assert_eq!(r.decide(&Method::GET, "/other", &h, true), GLOBAL);
        let mut empty = preflight_headers();
        empty.insert(header::ORIGIN, "".parse().unwrap());
        assert_eq!(r.decide(&Method::OPTIONS, "/other", &empty, true), GLOBAL);

        // Off (the default): a preflight needs sign-in like anything else.
        let off = AccessRules::compile(&AccessSection::default()).unwrap();
        assert_eq!(off.decide(&Method::OPTIONS, "/api/x", &h, true), GLOBAL);
    }

    #[test]
    fn no_rules_means_global_for_everything() {
        let r = AccessRules::default();
        for p in ["/", "/admin", "/static/../x", "/%00", "*"] {
            assert_eq!(get(&r, p), GLOBAL, "{p}");
        }
        assert!(r.is_empty());
    }

    fn compile_err(rules: Vec<RuleSection>) -> RuleError {
        AccessRules::compile(&AccessSection {
            allow_cors_preflight: false,
            rules,
        })
        .unwrap_err()
    }

    #[test]
    fn config_errors_name_the_key() {
        let e = compile_err(vec![
            rule("allow", Some("/a/"), None),
            rule("allow", Some("/b/"), Some("/c")),
        ]);
        assert_eq!(e.key, "access.rules[1].path_regex");
        let e = compile_err(vec![rule("allow", None, None)]);
        assert_eq!(e.key, "access.rules[0]");
        assert!(e.reason.contains("path_prefix or path_regex"));

        let e = compile_err(vec![rule("permit", Some("/a"), None)]);
        assert_eq!(e.key, "access.rules[0].action");
        assert!(e.reason.contains("permit"));
        let e = compile_err(vec![rule("", Some("/a"), None)]);
        assert_eq!(e.key, "access.rules[0].action");
        assert!(e.reason.contains("required"));

        let mut g = rule("allow", Some("/a"), None);
        g.allowed_groups = vec!["x".into()];
        let e = compile_err(vec![g]);
        assert_eq!(e.key, "access.rules[0].allowed_groups");
        let mut u = rule("deny", Some("/a"), None);
        u.allowed_users = vec!["x".into()];
        assert_eq!(compile_err(vec![u]).key, "access.rules[0].allowed_users");
        let mut empty = rule("authenticate", Some("/a"), None);
        empty.allowed_groups = vec![String::new()];
        assert_eq!(
            compile_err(vec![empty]).key,
            "access.rules[0].allowed_groups"
        );

        for bad in ["(", "a{99999}{99999}", ""] {
            let e = compile_err(vec![rule("deny", None, Some(bad))]);
            assert_eq!(e.key, "access.rules[0].path_regex", "{bad}");
            assert!(!e.reason.contains('\n'));
        }
        let long = "(a|b)".repeat(1000);
        assert_eq!(
            compile_err(vec![rule("deny", None, Some(&long))]).key,
            "access.rules[0].path_regex"
        );
        // Short to write, too large compiled (Unicode \w 2000 times).
        let e = compile_err(vec![rule("deny", None, Some("\\w{2000}"))]);
        assert_eq!(e.key, "access.rules[0].path_regex");
        assert!(e.reason.contains("size limit"), "{}", e.reason);

        for bad in [
            "static/",
            "",
            "/static/../admin",
            "//x",
            "/a/./b",
            "/a%2fb",
            "/a\\b",
            "/a;b",
            "/a\u{0}b",
        ] {
            let e = compile_err(vec![rule("allow", Some(bad), None)]);
            assert_eq!(e.key, "access.rules[0].path_prefix", "{bad:?}");
        }

        let mut m = rule("allow", Some("/a"), None);
        m.methods = vec!["get".into()];
        let e = compile_err(vec![m]);
        assert_eq!(e.key, "access.rules[0].methods");
        assert!(e.reason.contains("\"get\""));
        let mut m = rule("allow", Some("/a"), None);
        m.methods = vec!["GETT".into()];
        assert_eq!(compile_err(vec![m]).key, "access.rules[0].methods");

        let e = compile_err(vec![
            named(rule("allow", Some("/a"), None), "x"),
            named(rule("deny", Some("/b"), None), "x"),
        ]);
        assert_eq!(e.key, "access.rules[1].name");
        assert_eq!(
            compile_err(vec![named(
                rule("allow", Some("/a"), None),
                "cors-preflight"
            )])
            .key,
            "access.rules[0].name"
        );
        assert_eq!(
            compile_err(vec![named(rule("allow", Some("/a"), None), "")]).key,
            "access.rules[0].name"
        );
    }

    #[test]
    fn section_parses_from_toml() {
        let text = r#"
            allow_cors_preflight = true
            [[rules]]
            name = "health"
            methods = ["GET", "HEAD"]
            path_prefix = "/healthz"
            action = "allow"
            [[rules]]
            path_regex = "/ops/.*"
            action = "authenticate"
            allowed_groups = ["sre"]
        "#;
        let section: AccessSection = toml::from_str(text).unwrap();
        let r = AccessRules::compile(&section).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(get(&r, "/healthz"), Decision::Anonymous { rule: "health" });
        assert_eq!(get(&r, "/ops/x").rule(), Some("rule 2"));
        assert!(toml::from_str::<AccessSection>("[[rules]]\npath = \"/x\"").is_err());
        assert!(toml::from_str::<AccessSection>("allow_preflight = true").is_err());
    }

    #[test]
    fn restricting_rules_catch_head_and_any_letter_case_allow_rules_do_not() {
        let mut deny = named(rule("deny", Some("/admin/"), None), "deny-get");
        deny.methods = vec!["GET".into()];
        let mut open = named(rule("allow", Some("/public/"), None), "public-get");
        open.methods = vec!["GET".into()];
        let r = compile(vec![deny, open]);
        let h = HeaderMap::new();
        for m in ["GET", "HEAD", "get", "gEt", "head"] {
            let method = Method::from_bytes(m.as_bytes()).unwrap();
            assert_eq!(
                r.decide(&method, "/admin/x", &h, true),
                Decision::Deny { rule: "deny-get" },
                "{m}"
            );
        }
        // The allow rule names GET exactly: HEAD and `get` are not let through anonymously.
        assert_eq!(
            r.decide(&Method::GET, "/public/x", &h, true),
            Decision::Anonymous { rule: "public-get" }
        );
        for m in ["HEAD", "get"] {
            let method = Method::from_bytes(m.as_bytes()).unwrap();
            assert!(
                matches!(
                    r.decide(&method, "/public/x", &h, true),
                    Decision::Authenticate { .. }
                ),
                "{m}"
            );
        }
        assert!(!r.method_independent());
        assert!(compile(vec![rule("deny", Some("/a/"), None)]).method_independent());
    }

    #[test]
    fn a_preflight_carries_no_body_and_names_a_method() {
        let r = AccessRules::compile(&AccessSection {
            allow_cors_preflight: true,
            rules: vec![],
        })
        .unwrap();
        let cors = Decision::Anonymous {
            rule: CORS_PREFLIGHT_RULE,
        };
        assert_eq!(
            r.decide(&Method::OPTIONS, "/api", &preflight_headers(), true),
            cors
        );
        let mut with_length = preflight_headers();
        with_length.insert(header::CONTENT_LENGTH, "0".parse().unwrap());
        assert_eq!(r.decide(&Method::OPTIONS, "/api", &with_length, true), cors);
        let mut with_body = preflight_headers();
        with_body.insert(header::CONTENT_LENGTH, "12".parse().unwrap());
        assert_ne!(r.decide(&Method::OPTIONS, "/api", &with_body, true), cors);
        let mut chunked = preflight_headers();
        chunked.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        assert_ne!(r.decide(&Method::OPTIONS, "/api", &chunked, true), cors);
        let mut bad_method = preflight_headers();
        bad_method.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            "PUT, GET".parse().unwrap(),
        );
        assert_ne!(r.decide(&Method::OPTIONS, "/api", &bad_method, true), cors);
        // A body no header announces (HTTP/2 DATA frames) makes it an ordinary request.
        assert_eq!(
            r.decide(&Method::OPTIONS, "/api", &preflight_headers(), false),
            GLOBAL
        );
    }
}
