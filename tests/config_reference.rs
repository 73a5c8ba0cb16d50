//! `docs/configuration-reference.md` is generated from the code (`config::reference::markdown`,
//! which renders the section structs' JSON Schema: keys, types, defaults from the `Default`
//! impls, meanings from the `///` comments). This test fails when the file and the code
//! disagree, so a new or changed key cannot ship undocumented.
//!
//! Regenerate with `make config-reference`, which runs this test with
//! `SAMLGATE_WRITE_CONFIG_REFERENCE=1` (the file is then written instead of compared).

use std::path::Path;

use samlgate::config::reference::{markdown, REFERENCE_PATH};

#[test]
fn configuration_reference_matches_the_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(REFERENCE_PATH);
    let rendered = markdown();
    if std::env::var_os("SAMLGATE_WRITE_CONFIG_REFERENCE").is_some() {
        std::fs::write(&path, &rendered).expect("write the configuration reference");
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    if on_disk != rendered {
        let first = on_disk
            .lines()
            .zip(rendered.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || on_disk.lines().count().min(rendered.lines().count()) + 1,
                |i| i + 1,
            );
        panic!(
            "{REFERENCE_PATH} is out of date with the config structs (first difference at line \
             {first}). Regenerate it with `make config-reference` (or \
             `SAMLGATE_WRITE_CONFIG_REFERENCE=1 cargo test --test config_reference`) and commit \
             the result."
        );
    }
}

/// Every key in the reference has a meaning: a field without a `///` comment would leave an
/// empty cell.
#[test]
fn every_key_is_explained() {
    let rendered = markdown();
    let undocumented: Vec<&str> = rendered
        .lines()
        .filter(|l| l.starts_with("| `") && l.trim_end().ends_with("|  |"))
        .collect();
    assert!(
        undocumented.is_empty(),
        "keys without a /// comment: {undocumented:#?}"
    );
}

/// The reference names the sections the gateway reads and takes its defaults from the code.
#[test]
fn reference_lists_sections_and_code_defaults() {
    let rendered = markdown();
    for heading in [
        "## `[tls]`",
        "## `[saml]`",
        "## `[session]`",
        "## `[[access.rules]]`",
        "## `[rate_limits]`",
    ] {
        assert!(rendered.contains(heading), "missing {heading}");
    }
    let saml = samlgate::config::SamlSection::default();
    assert!(
        rendered.contains(&format!("| `acs_path` | string | `{:?}` |", saml.acs_path)),
        "acs_path's default comes from SamlSection::default()"
    );
    let limits = samlgate::config::RateLimitSection::default();
    assert!(rendered.contains(&format!(
        "| `max_tracked_clients` | integer | `{}` |",
        limits.max_tracked_clients
    )));
}

#[test]
fn keys_that_name_a_choice_read_as_strings_with_their_default() {
    let rendered = markdown();
    for row in [
        "| `backend` | string | `\"memory\"` |",
        "| `redis_mode` | string | `\"single\"` |",
        "| `encoding` | string | `\"rfc2047\"` |",
        "| `groups_source` | string | `\"assertion\"` |",
    ] {
        assert!(rendered.contains(row), "missing {row}");
    }
    // "table" is for keys that open a table of their own, never for a plain value.
    for line in rendered.lines().filter(|l| l.contains("| table |")) {
        let key = line.split('`').nth(1).unwrap_or_default();
        assert!(
            rendered.contains(&format!(".{key}]`")) || rendered.contains(&format!("[{key}]`")),
            "{key} is called a table but has no section: {line}"
        );
    }
}
