//! Parsing: the TOML text, then `SAMLGATE_*` environment overrides, into a [`FileConfig`].
//! `SAMLGATE_<SECTION>_<KEY>` sets `<section>.<key>` and `SAMLGATE_<KEY>` a top-level key;
//! the sections and the comma-separated list keys come from `FileConfig`'s schema
//! ([`super::reference::shape`]), so a new section needs no entry here. Pure: no I/O.

use super::reference::{shape, Shape};
use super::{ConfigError, FileConfig};

/// Environment variables that are not config keys (the binary reads them itself).
const NOT_OVERRIDES: &[&str] = &["SAMLGATE_CONFIG"];

/// One override applied: the dotted key it set, the variable, and its raw value.
struct Applied {
    dotted: String,
    var: String,
    raw: String,
}

/// Parses TOML text and applies `SAMLGATE_*` overrides from `env` (pure; no I/O).
pub fn parse_with_env(text: &str, env: &[(String, String)]) -> Result<FileConfig, ConfigError> {
    let mut root: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            reason: e.to_string().trim().replace('\n', " "),
        })?;
    let shape = shape();
    let mut applied = Vec::new();
    for (name, value) in env {
        let Some(key) = name.strip_prefix("SAMLGATE_") else {
            continue;
        };
        if NOT_OVERRIDES.contains(&name.as_str()) {
            continue;
        }
        let dotted = apply_env_override(&shape, &mut root, name, &key.to_ascii_lowercase(), value)?;
        applied.push(Applied {
            dotted,
            var: name.clone(),
            raw: value.clone(),
        });
    }
    deserialize(root, &applied)
}

/// Deserializes, naming the key (or the variable that set it) on error. An environment value
/// that looks like a number or boolean may be meant as a string (a cookie name "123"): such
/// keys are retried as strings before a type error is reported.
fn deserialize(mut root: toml::Table, applied: &[Applied]) -> Result<FileConfig, ConfigError> {
    for _ in 0..=applied.len() {
        let e = match serde_path_to_error::deserialize::<_, FileConfig>(toml::Value::Table(
            root.clone(),
        )) {
            Ok(file) => return Ok(file),
            Err(e) => e,
        };
        let path = e.path().to_string();
        let reason = e.inner().message().to_string();
        let retry = applied.iter().find(|a| {
            a.dotted == path
                && reason.starts_with("invalid type")
                && !reason.starts_with("invalid type: string")
        });
        if let Some(a) = retry {
            set_dotted(&mut root, &a.dotted, toml::Value::String(a.raw.clone()));
            continue;
        }
        let key = match unknown_field(&reason) {
            Some(field) if path == "." || path.is_empty() => field,
            _ => path,
        };
        let key = applied
            .iter()
            .find(|a| a.dotted == key)
            .map_or(key, |a| a.var.clone());
        return Err(ConfigError::Shape { key, reason });
    }
    Err(ConfigError::ConflictingOverrides)
}

fn unknown_field(message: &str) -> Option<String> {
    // serde: "unknown field `foo`, expected ..."
    message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
        .map(str::to_string)
}

fn set_dotted(root: &mut toml::Table, dotted: &str, value: toml::Value) {
    match dotted.split_once('.') {
        Some((section, field)) => {
            if let Some(t) = root.get_mut(section).and_then(|v| v.as_table_mut()) {
                t.insert(field.to_string(), value);
            }
        }
        None => {
            root.insert(dotted.to_string(), value);
        }
    }
}

/// Applies the override `var` (`key` is its name without `SAMLGATE_`, lower case); returns
/// the dotted key it set (`saml.clock_skew_secs`).
fn apply_env_override(
    shape: &Shape,
    root: &mut toml::Table,
    var: &str,
    key: &str,
    raw: &str,
) -> Result<String, ConfigError> {
    let split = shape.sections.iter().find_map(|s| {
        key.strip_prefix(s.as_str())
            .and_then(|r| r.strip_prefix('_'))
            .map(|f| (s.as_str(), f))
    });
    let (table, section, field) = match split {
        Some((section, field)) => {
            let entry = root
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let table = entry
                .as_table_mut()
                .ok_or_else(|| ConfigError::Environment {
                    var: var.to_string(),
                    reason: format!("`{section}` in the file is not a table"),
                })?;
            (table, Some(section), field)
        }
        None => (root, None, key),
    };
    let is_list =
        section.is_some_and(|s| shape.lists.contains(&(s.to_string(), field.to_string())));
    table.insert(field.to_string(), env_value(raw, is_list));
    Ok(match section {
        Some(section) => format!("{section}.{field}"),
        None => field.to_string(),
    })
}

/// The TOML value an environment string stands for: a comma-separated list for list keys,
/// else a boolean, an integer, or a string.
fn env_value(raw: &str, is_list: bool) -> toml::Value {
    if is_list {
        toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        )
    } else if let Ok(b) = raw.parse::<bool>() {
        toml::Value::Boolean(b)
    } else if let Ok(i) = raw.parse::<i64>() {
        toml::Value::Integer(i)
    } else {
        toml::Value::String(raw.to_string())
    }
}
