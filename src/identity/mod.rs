//! The identity headers an application receives: which values (user, email, groups, display
//! name, the mapped role, forwarded SAML attributes) and in which text encoding.
//!
//! [`render_identity_headers`] is a pure function of the identity, the role mapping and the
//! header settings. The gateway calls it once at sign-in and keeps the result with the
//! session (the hot path only clones header values); whoever changes a session's identity
//! later (groups pushed by SCIM) calls it again, so the next request carries the change.
//!
//! - [`encoding`]: `headers.encoding` (RFC 2047 by default, quoted-printable for Grafana,
//!   percent, refuse, raw);
//! - [`roles`]: `[[roles]]`, first match wins, `authz.default_role`.

pub mod encoding;
pub mod roles;

use std::collections::BTreeSet;

use http::{HeaderName, HeaderValue};

use crate::config::{AuthzSection, ConfigError, HeadersSection};
use crate::rules::AccessSection;
use crate::saml::policy::Attribute;
use crate::session::{Identity, IdentityHeaderValues};
pub use encoding::{HeaderEncoding, Unencodable};
pub use roles::{RoleRule, Roles};

/// Most entries `headers.attributes` may hold.
pub const MAX_FORWARDED_ATTRIBUTES: usize = 32;

/// What [`render_identity_headers`] needs from `[headers]`, compiled once per policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSettings {
    pub encoding: HeaderEncoding,
    /// Joins list values (groups, multi-valued attributes).
    pub separator: String,
    /// `headers.attributes`: SAML attribute (Name or FriendlyName) → header, sorted by
    /// attribute name.
    pub attributes: Vec<(String, HeaderName)>,
}

impl HeaderSettings {
    /// From validated settings; a name that does not parse (validation refused those) is
    /// left out rather than panicking.
    pub fn from_config(h: &HeadersSection) -> Self {
        HeaderSettings {
            encoding: h.encoding,
            separator: h.groups_separator.clone(),
            attributes: h
                .attributes
                .iter()
                .filter_map(|(attr, header)| {
                    HeaderName::from_bytes(header.as_bytes())
                        .ok()
                        .map(|n| (attr.clone(), n))
                })
                .collect(),
        }
    }
}

/// An identity value the configured encoding cannot send: the sign-in is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.reason())]
pub struct HeaderEncodingError {
    /// Which value: `user`, `email`, `groups`, `display name`, `attribute <name>`.
    pub field: String,
    pub problem: Unencodable,
    pub encoding: HeaderEncoding,
}

impl HeaderEncodingError {
    /// The audit log's reason.
    pub fn reason(&self) -> String {
        let enc = self.encoding.as_str();
        match self.problem {
            Unencodable::NonAscii => format!(
                "the {} value is not ASCII and headers.encoding = \"{enc}\"",
                self.field
            ),
            Unencodable::NotHeaderText => {
                format!("the {} value is empty or holds control characters", self.field)
            }
            Unencodable::HoldsSeparator => format!(
                "a {} value contains headers.groups_separator and headers.encoding = \"{enc}\" (the list could not be split back)",
                self.field
            ),
        }
    }

    /// The headline and sentence the person sees.
    pub fn user_message(&self) -> (&'static str, &'static str) {
        (
            "Your account cannot be passed to this application",
            "Your name, user id or group names contain characters this application is configured not to accept. Ask your administrator to change the account or the gateway's headers.encoding.",
        )
    }
}

/// The header values for `id`: each value encoded by `cfg.encoding`, list items joined by
/// the separator, the role from `roles`, the forwarded attributes. Values with control
/// characters are left out (the identity is built without them already); a user id must
/// remain. Under `refuse`, a non-ASCII value fails the whole sign-in.
pub fn render_identity_headers(
    id: &Identity,
    roles: &Roles,
    cfg: &HeaderSettings,
) -> Result<IdentityHeaderValues, HeaderEncodingError> {
    let one = |field: &str, v: &str| single(v, field, cfg);
    // A user id that is empty or holds control characters never gets here (the ACS refuses
    // it first); if it did, no sign-in is better than a wrong header.
    let user = one("user", &id.user)?.ok_or_else(|| HeaderEncodingError {
        field: "user".into(),
        problem: Unencodable::NotHeaderText,
        encoding: cfg.encoding,
    })?;
    let email = id
        .email
        .as_deref()
        .map(|v| one("email", v))
        .transpose()?
        .flatten();
    let preferred_username = id
        .preferred_username
        .as_deref()
        .or(id.display_name.as_deref())
        .map(|v| one("display name", v))
        .transpose()?
        .flatten();
    let groups = list(&id.groups, "groups", cfg)?;
    let role_name = roles.role_for(id).map(str::to_string);
    // Role names are validated ASCII tokens, which no encoding changes.
    let role = role_name
        .as_deref()
        .and_then(|r| HeaderValue::from_str(r).ok());
    let mut attributes = Vec::new();
    for (attr, header) in &cfg.attributes {
        let Some((_, values)) = id.attributes.iter().find(|(name, _)| name == attr) else {
            continue;
        };
        if let Some(v) = list(values, &format!("attribute {attr}"), cfg)? {
            attributes.push((header.clone(), v));
        }
    }
    Ok(IdentityHeaderValues {
        user,
        email,
        groups,
        preferred_username,
        role_name,
        role,
        attributes,
    })
}

fn usable(v: &str) -> bool {
    !v.is_empty() && !v.chars().any(char::is_control)
}

fn header_value(text: &str, encoding: HeaderEncoding) -> Option<HeaderValue> {
    match encoding {
        // obs-text on purpose; still no control characters (checked by the caller).
        HeaderEncoding::Raw => HeaderValue::from_bytes(text.as_bytes()).ok(),
        _ => HeaderValue::from_str(text).ok(),
    }
}

fn single(
    v: &str,
    field: &str,
    cfg: &HeaderSettings,
) -> Result<Option<HeaderValue>, HeaderEncodingError> {
    if !usable(v) {
        return Ok(None);
    }
    let text = encoding::encode(v, cfg.encoding, "").map_err(|problem| HeaderEncodingError {
        field: field.into(),
        problem,
        encoding: cfg.encoding,
    })?;
    Ok(header_value(&text, cfg.encoding))
}

fn list(
    items: &[String],
    field: &str,
    cfg: &HeaderSettings,
) -> Result<Option<HeaderValue>, HeaderEncodingError> {
    let mut joined = String::new();
    for item in items.iter().filter(|v| usable(v)) {
        let text = encoding::encode(item, cfg.encoding, &cfg.separator).map_err(|problem| {
            HeaderEncodingError {
                field: field.into(),
                problem,
                encoding: cfg.encoding,
            }
        })?;
        if !joined.is_empty() {
            joined.push_str(&cfg.separator);
        }
        joined.push_str(&text);
    }
    if joined.is_empty() {
        return Ok(None);
    }
    Ok(header_value(&joined, cfg.encoding))
}

/// The values of the attributes `headers.attributes` forwards, found by Name, else by
/// FriendlyName (as the other attribute keys are). Empty values and values with control
/// characters are dropped; repeats are kept once.
pub fn forwarded_attributes(
    attrs: &[Attribute],
    cfg: &HeaderSettings,
) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for (wanted, _) in &cfg.attributes {
        let found = attrs.iter().find(|a| a.name == *wanted).or_else(|| {
            attrs
                .iter()
                .find(|a| a.friendly_name.as_deref() == Some(wanted.as_str()))
        });
        let Some(a) = found else { continue };
        let mut values: Vec<String> = Vec::new();
        for v in &a.values {
            if usable(v) && !values.contains(v) {
                values.push(v.clone());
            }
        }
        if !values.is_empty() {
            out.push((wanted.clone(), values));
        }
    }
    out
}

/// A forward-auth answer's `x-envoy-auth-headers-to-remove` list (comma-separated, lower
/// case) without the forwarded attribute headers `v` carries; `None` when nothing is left.
pub fn without_carried_attributes(
    list: &HeaderValue,
    v: &IdentityHeaderValues,
) -> Option<HeaderValue> {
    let kept: Vec<&str> = list
        .to_str()
        .ok()?
        .split(',')
        // The list holds normalized names (`-` for `_`).
        .filter(|n| {
            !v.attributes
                .iter()
                .any(|(name, _)| crate::proxy::normalize_header_name(name.as_str()) == *n)
        })
        .collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join(",")).ok()
}

/// Validation of the identity-header and role settings, each naming its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityConfigError {
    #[error("{problem}")]
    Separator { problem: &'static str },
    #[error("{problem}: {name:?}")]
    RoleName {
        key: String,
        name: String,
        problem: &'static str,
    },
    #[error("needs groups or users (a catch-all role is authz.default_role)")]
    RoleMatchesNobody { key: String },
    #[error("holds an empty name")]
    EmptyName { key: String },
    #[error("names role {role:?}, which no [[roles]] entry or authz.default_role defines")]
    UnknownRole { key: String, role: String },
    #[error("at most {MAX_FORWARDED_ATTRIBUTES} attributes may be forwarded")]
    TooManyAttributes,
    #[error("the attribute name must be non-empty and printable: {name:?}")]
    AttributeName { name: String },
    #[error("{header:?} is a routing header the gateway strips from every request")]
    RoutingHeader { key: String, header: String },
    #[error("names the same header as {other}")]
    Duplicate { key: String, other: String },
}

impl IdentityConfigError {
    /// The config key the problem is at.
    pub fn key(&self) -> String {
        use IdentityConfigError::*;
        match self {
            Separator { .. } => "headers.groups_separator".into(),
            TooManyAttributes | AttributeName { .. } => "headers.attributes".into(),
            RoleName { key, .. }
            | RoleMatchesNobody { key }
            | EmptyName { key }
            | UnknownRole { key, .. }
            | RoutingHeader { key, .. }
            | Duplicate { key, .. } => key.clone(),
        }
    }
}

impl From<IdentityConfigError> for ConfigError {
    fn from(e: IdentityConfigError) -> Self {
        ConfigError::new(e.key(), e.to_string())
    }
}

/// Validates `headers.encoding` with the separator, `headers.role`, `headers.attributes`,
/// `[[roles]]`, `authz.default_role` and every `allowed_roles`. Header names are checked by
/// `header_name` (the config module's rules for identity header names).
pub fn validate(
    h: &HeadersSection,
    roles: &[RoleRule],
    authz: &AuthzSection,
    access: &AccessSection,
    header_name: impl Fn(&str, &str) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    if let Some(problem) = h.encoding.separator_problem(&h.groups_separator) {
        return Err(IdentityConfigError::Separator { problem }.into());
    }
    header_name(&h.role, "headers.role")?;
    if h.attributes.len() > MAX_FORWARDED_ATTRIBUTES {
        return Err(IdentityConfigError::TooManyAttributes.into());
    }
    let mut seen: Vec<(String, String)> = [
        ("headers.user", &h.user),
        ("headers.email", &h.email),
        ("headers.groups", &h.groups),
        ("headers.preferred_username", &h.preferred_username),
        ("headers.role", &h.role),
    ]
    .iter()
    .map(|(k, n)| (crate::proxy::normalize_header_name(n), k.to_string()))
    .collect();
    // The four identity names are checked against each other by the config module.
    let role = &seen[4].0;
    if let Some((_, other)) = seen[..4].iter().find(|(n, _)| n == role) {
        return Err(IdentityConfigError::Duplicate {
            key: "headers.role".into(),
            other: other.clone(),
        }
        .into());
    }
    for (attr, header) in &h.attributes {
        let key = format!("headers.attributes.{attr}");
        if attr.trim().is_empty() || attr.chars().any(char::is_control) {
            return Err(IdentityConfigError::AttributeName { name: attr.clone() }.into());
        }
        header_name(header, &key)?;
        let norm = crate::proxy::normalize_header_name(header);
        if crate::proxy::ROUTING_OVERRIDE_HEADERS.contains(&norm.as_str()) {
            return Err(IdentityConfigError::RoutingHeader {
                key,
                header: header.clone(),
            }
            .into());
        }
        if let Some((_, other)) = seen.iter().find(|(n, _)| *n == norm) {
            return Err(IdentityConfigError::Duplicate {
                key,
                other: other.clone(),
            }
            .into());
        }
        seen.push((norm, key));
    }
    validate_roles(roles, authz, access)
}

fn validate_roles(
    roles: &[RoleRule],
    authz: &AuthzSection,
    access: &AccessSection,
) -> Result<(), ConfigError> {
    let role_name = |key: String, name: &str| match roles::role_name_problem(name) {
        Some(problem) => Err(IdentityConfigError::RoleName {
            key,
            name: name.into(),
            problem,
        }),
        None => Ok(()),
    };
    for (i, r) in roles.iter().enumerate() {
        role_name(format!("roles[{i}].role"), &r.role)?;
        if r.groups.is_empty() && r.users.is_empty() {
            return Err(IdentityConfigError::RoleMatchesNobody {
                key: format!("roles[{i}]"),
            }
            .into());
        }
        for (field, list) in [("groups", &r.groups), ("users", &r.users)] {
            if list.iter().any(|n| n.is_empty()) {
                return Err(IdentityConfigError::EmptyName {
                    key: format!("roles[{i}].{field}"),
                }
                .into());
            }
        }
    }
    if let Some(d) = &authz.default_role {
        role_name("authz.default_role".into(), d)?;
    }
    let defined: BTreeSet<&str> = roles
        .iter()
        .map(|r| r.role.as_str())
        .chain(authz.default_role.as_deref())
        .collect();
    let lists = std::iter::once(("authz.allowed_roles".to_string(), &authz.allowed_roles)).chain(
        access
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("access.rules[{i}].allowed_roles"), &r.allowed_roles)),
    );
    for (key, list) in lists {
        // An unknown name is a typo that would lock everyone out, or (worse) a role meant
        // to exist that silently never matches; refuse it at load.
        if let Some(role) = list.iter().find(|r| !defined.contains(r.as_str())) {
            return Err(IdentityConfigError::UnknownRole {
                key,
                role: role.clone(),
            }
            .into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
