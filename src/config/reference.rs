//! The configuration reference, generated from the code's own definitions: [`FileConfig`]'s
//! JSON Schema (`schemars`), which carries every key, its type, its default (from the
//! sections' `Default` impls) and its meaning (the field's `///` comment).
//!
//! [`markdown`] renders `docs/configuration-reference.md`; `tests/config_reference.rs` fails
//! when that file and the rendering differ. [`shape`] gives the `SAMLGATE_*` overrides the
//! sections and list keys, so a new `[section]` in `FileConfig` is documented and overridable
//! without a hand-kept list.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::FileConfig;

/// The path of the generated reference, relative to the repository root.
pub const REFERENCE_PATH: &str = "docs/configuration-reference.md";

/// The sections and list-valued keys the environment may override.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    /// Top-level tables (`saml`, `rate_limits`, …), longest first so `SAMLGATE_FORWARD_AUTH_X`
    /// is read as `forward_auth.x` and not some shorter section.
    pub sections: Vec<String>,
    /// `(section, key)` of every array-of-strings key: comma-separated in the environment.
    pub lists: BTreeSet<(String, String)>,
}

/// [`FileConfig`]'s JSON Schema as a value.
fn file_schema() -> Value {
    schemars::schema_for!(FileConfig).to_value()
}

/// One table of the reference: `[name]` or `[[name]]`.
struct Table<'a> {
    heading: String,
    about: String,
    env_prefix: Option<String>,
    properties: &'a Map<String, Value>,
}

/// The object a property's schema refers to (`$ref` to `$defs`), if it is a table.
fn referenced<'a>(defs: &'a Map<String, Value>, schema: &Value) -> Option<&'a Value> {
    let reference = schema.get("$ref").and_then(Value::as_str).or_else(|| {
        schema
            .get("allOf")?
            .as_array()?
            .iter()
            .find_map(|s| s.get("$ref")?.as_str())
    })?;
    let def = defs.get(reference.strip_prefix("#/$defs/")?)?;
    def.get("properties").is_some().then_some(def)
}

fn properties(schema: &Value) -> Option<&Map<String, Value>> {
    schema.get("properties")?.as_object()
}

fn description(schema: &Value) -> String {
    let text = schema
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The sections and list keys of [`FileConfig`], read from its schema.
pub fn shape() -> Shape {
    let root = file_schema();
    let empty = Map::new();
    let defs = root
        .get("$defs")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut shape = Shape::default();
    for (name, prop) in properties(&root).unwrap_or(&empty) {
        let Some(def) = referenced(defs, prop) else {
            continue;
        };
        for (key, field) in properties(def).unwrap_or(&empty) {
            if is_string_list(field) {
                shape.lists.insert((name.clone(), key.clone()));
            }
        }
        shape.sections.push(name.clone());
    }
    shape.sections.sort_by_key(|s| std::cmp::Reverse(s.len()));
    shape
}

fn is_string_list(field: &Value) -> bool {
    type_names(field).contains(&"array")
        && field
            .get("items")
            .is_some_and(|i| type_names(i) == ["string"])
}

fn type_names(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Every table in document order: top-level keys, then each section, each array of tables
/// right after the table that holds it.
fn tables<'a>(top: &'a Map<String, Value>, defs: &'a Map<String, Value>) -> Vec<Table<'a>> {
    let mut out = vec![Table {
        heading: "Top-level keys".into(),
        about: "Keys outside any section.".into(),
        env_prefix: Some("SAMLGATE_".into()),
        properties: top,
    }];
    for (name, prop) in top {
        nested_tables(defs, name, prop, true, &mut out);
    }
    out
}

fn nested_tables<'a>(
    defs: &'a Map<String, Value>,
    path: &str,
    prop: &'a Value,
    top_level: bool,
    out: &mut Vec<Table<'a>>,
) {
    let (heading, def, env_prefix) = if let Some(def) = referenced(defs, prop) {
        let env = top_level.then(|| format!("SAMLGATE_{}_", path.to_ascii_uppercase()));
        (format!("`[{path}]`"), def, env)
    } else if let Some(def) = prop.get("items").and_then(|i| referenced(defs, i)) {
        (format!("`[[{path}]]`"), def, None)
    } else {
        return;
    };
    let Some(props) = properties(def) else {
        return;
    };
    // A section is explained where `FileConfig` names it; an array of tables by its own type.
    let mut about = if heading.starts_with("`[[") {
        description(def)
    } else {
        description(prop)
    };
    if about.is_empty() {
        about = description(def);
    }
    // "`[tls]`: the main listener's …" under the heading `[tls]` says the name twice.
    if let Some(rest) = about.strip_prefix(&format!("{heading}: ")) {
        let mut chars = rest.chars();
        about = chars
            .next()
            .map(|c| c.to_uppercase().chain(chars).collect())
            .unwrap_or_default();
    }
    out.push(Table {
        heading,
        about,
        env_prefix,
        properties: props,
    });
    for (name, inner) in props {
        nested_tables(defs, &format!("{path}.{name}"), inner, false, out);
    }
}

/// Top-level keys are listed only when they are plain values (sections get their own table).
fn is_plain_key(defs: &Map<String, Value>, prop: &Value) -> bool {
    referenced(defs, prop).is_none()
        && prop
            .get("items")
            .and_then(|i| referenced(defs, i))
            .is_none()
}

fn type_label(defs: &Map<String, Value>, field: &Value) -> String {
    let types = type_names(field);
    let optional = types.contains(&"null");
    let base = types.iter().find(|t| **t != "null").copied().unwrap_or("");
    let label = match base {
        "array" => match field.get("items") {
            Some(items) if referenced(defs, items).is_some() => "array of tables".to_string(),
            Some(items) if choice_of(defs, items).is_some() => "array of strings".to_string(),
            Some(items) => format!("array of {}s", type_names(items).join("/")),
            None => "array".to_string(),
        },
        "" if choice_of(defs, field).is_some() => "string".to_string(),
        "" => "table".to_string(),
        other => other.to_string(),
    };
    if optional {
        format!("{label} (optional)")
    } else {
        label
    }
}

/// The values a key that names one of a few choices (a Rust enum) may take.
fn choice_of<'a>(defs: &'a Map<String, Value>, field: &Value) -> Option<Vec<&'a str>> {
    let reference = field.get("$ref").and_then(Value::as_str).or_else(|| {
        field
            .get("allOf")?
            .as_array()?
            .iter()
            .find_map(|s| s.get("$ref")?.as_str())
    })?;
    let def = defs.get(reference.strip_prefix("#/$defs/")?)?;
    if let Some(values) = def.get("enum").and_then(Value::as_array) {
        return Some(values.iter().filter_map(Value::as_str).collect());
    }
    let variants = def.get("oneOf")?.as_array()?;
    variants
        .iter()
        .map(|v| v.get("const").and_then(Value::as_str))
        .collect()
}

fn default_label(field: &Value) -> String {
    match field.get("default") {
        None | Some(Value::Null) => "unset".to_string(),
        Some(Value::Array(a)) if a.is_empty() => "`[]`".to_string(),
        Some(v) => format!("`{v}`"),
    }
}

/// Keeps a table cell on one line and its `|` from ending the cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The whole reference as Markdown.
pub fn markdown() -> String {
    let root = file_schema();
    let empty = Map::new();
    let defs = root
        .get("$defs")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut out = String::from(
        "# Configuration reference\n\n\
         <!-- Generated from the code (src/config/reference.rs renders the section structs' \
         JSON Schema). Do not edit by hand: run `make config-reference` (or \
         `SAMLGATE_WRITE_CONFIG_REFERENCE=1 cargo test --test config_reference`). -->\n\n\
         Every key samlgate reads, with its type, its default and its meaning. How the keys \
         fit together, with examples, is in [configuration.md](configuration.md). A key may \
         also be set by an environment variable `SAMLGATE_<SECTION>_<KEY>` (upper case; lists \
         comma-separated), which wins over the file.\n",
    );
    let top = properties(&root).unwrap_or(&empty);
    for table in tables(top, defs) {
        out.push_str(&format!("\n## {}\n\n", table.heading));
        if !table.about.is_empty() {
            out.push_str(&format!("{}\n\n", table.about));
        }
        if let Some(prefix) = &table.env_prefix {
            out.push_str(&format!("Environment: `{prefix}<KEY>`.\n\n"));
        }
        out.push_str("| key | type | default | meaning |\n|---|---|---|---|\n");
        for (key, field) in table.properties {
            if table.env_prefix.as_deref() == Some("SAMLGATE_") && !is_plain_key(defs, field) {
                continue;
            }
            out.push_str(&format!(
                "| `{key}` | {} | {} | {} |\n",
                type_label(defs, field),
                cell(&default_label(field)),
                cell(&description(field)),
            ));
        }
    }
    out
}
