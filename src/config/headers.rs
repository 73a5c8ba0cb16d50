//! `[headers]` validation: the identity header names ([`crate::proxy::HeadersSection`] owns
//! the section) must be valid, distinct and not headers HTTP or the gateway already uses;
//! `strip_foreign_extra` must strip nothing HTTP or the application needs.

use std::collections::BTreeMap;

use crate::foreign_headers::ForeignPattern;
use crate::proxy::{normalize_header_name, HeadersSection};

use super::ConfigError;

/// Headers the gateway or HTTP itself owns: an identity header by one of these names would be
/// stripped from every request (or clash with framing, cookies or forwarding).
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "cookie",
    "set-cookie",
    "authorization",
    "proxy-authorization",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
];

/// Most entries `headers.strip_foreign_extra` may hold (each is compared with client headers).
const MAX_STRIP_FOREIGN_EXTRA: usize = 256;

/// Validates `[headers]`.
pub(super) fn validate(h: &HeadersSection) -> Result<(), ConfigError> {
    let names = [
        ("headers.user", &h.user),
        ("headers.email", &h.email),
        ("headers.groups", &h.groups),
        ("headers.preferred_username", &h.preferred_username),
    ];
    for (key, name) in names {
        header_name(name, key)?;
    }
    if h.groups_separator.is_empty() || h.groups_separator.chars().any(|c| c.is_control()) {
        return Err(ConfigError::invalid(
            "headers.groups_separator",
            "must be non-empty and printable",
        ));
    }
    strip_foreign_extra(&h.strip_foreign_extra)?;
    let mut seen = BTreeMap::new();
    for (key, name) in names {
        if let Some(other) = seen.insert(normalize_header_name(name), key) {
            return Err(ConfigError::invalid(
                key,
                format!("names the same header as {other}"),
            ));
        }
    }
    Ok(())
}

/// Validates `headers.strip_foreign_extra`: names or `Prefix-*` patterns that strip nothing HTTP
/// or the application needs (`Cookie`, `Content-Type`, …).
fn strip_foreign_extra(list: &[String]) -> Result<(), ConfigError> {
    const KEY: &str = "headers.strip_foreign_extra";
    if list.len() > MAX_STRIP_FOREIGN_EXTRA {
        return Err(ConfigError::invalid(
            KEY,
            format!(
                "holds {} entries; at most {MAX_STRIP_FOREIGN_EXTRA}",
                list.len()
            ),
        ));
    }
    for raw in list {
        let p = ForeignPattern::parse(raw).map_err(|e| ConfigError::invalid(KEY, e.to_string()))?;
        let stem = p.normalized();
        let hit = RESERVED_HEADERS.iter().find(|r| {
            if p.is_exact() {
                **r == stem
            } else {
                r.starts_with(stem)
            }
        });
        if let Some(r) = hit {
            return Err(ConfigError::invalid(
                KEY,
                format!("{raw:?} would strip {r}, which HTTP or the gateway itself uses"),
            ));
        }
    }
    Ok(())
}

/// A valid header name that HTTP or the gateway does not already use (also checks
/// `headers.role` and `headers.attributes` for [`crate::identity::validate`]).
pub(crate) fn header_name(raw: &str, key: &str) -> Result<(), ConfigError> {
    let name = http::HeaderName::from_bytes(raw.as_bytes())
        .map_err(|_| ConfigError::invalid(key, format!("not a valid HTTP header name: {raw:?}")))?;
    let normalized = normalize_header_name(name.as_str());
    if RESERVED_HEADERS.contains(&normalized.as_str()) {
        return Err(ConfigError::invalid(
            key,
            format!("{raw:?} is a header HTTP or the gateway already uses; pick a name of its own"),
        ));
    }
    Ok(())
}
