//! The Traefik and Envoy forward-auth examples (deploy/examples/traefik-forward-auth/,
//! deploy/examples/envoy-forward-auth/) against samlgate's own tables: whatever samlgate strips
//! in reverse-proxy mode (its identity headers, other gateways' identity headers, the routing
//! overrides), the example proxy removes from the request it forwards to the application; and
//! what the proxy must keep (cookies, its own forwarding headers, samlgate's answer) it keeps.
//!
//! Neither proxy is installed on the test machines, so this reads the files: Traefik's
//! `authResponseHeadersRegex` is compiled (RE2 and the `regex` crate agree on this subset) and
//! Envoy's Lua name lists are matched the way the Lua code does. The nginx example is run for
//! real in tests/forward_auth_nginx.rs. `check-config` on their samlgate.toml files is
//! tests/deploy_files.rs's.

use std::path::Path;

use samlgate::foreign_headers::FOREIGN_IDENTITY_HEADERS;
use samlgate::proxy::ROUTING_OVERRIDE_HEADERS;

const OURS: [&str; 5] = [
    "X-Forwarded-User",
    "X-Forwarded-Email",
    "X-Forwarded-Groups",
    "X-Forwarded-Preferred-Username",
    "X-Forwarded-Role",
];

/// Headers the proxy must leave alone: the app needs them, or the proxy sets them itself, or
/// they are in samlgate's answer but not identity.
const KEPT: [&str; 15] = [
    "Cookie",
    "Accept",
    "Authorization",
    "Content-Type",
    "Content-Length",
    "Cache-Control",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "X-Real-Ip",
    "X-Envoy-Auth-Headers-To-Remove",
    "Set-Cookie",
    "Location",
    "X-Request-Id",
    "X-Auth-Token",
];

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A header name for each thing samlgate strips: every exact name, a member of every prefix
/// family, the routing overrides, samlgate's own (the four identity headers and the default role header).
fn stripped_samples() -> Vec<String> {
    let mut out: Vec<String> = FOREIGN_IDENTITY_HEADERS
        .iter()
        .map(|(p, _)| match p.strip_suffix('*') {
            Some(stem) => format!("{stem}Probe"),
            None => p.to_string(),
        })
        .collect();
    out.extend(ROUTING_OVERRIDE_HEADERS.iter().map(|s| s.to_string()));
    out.extend(OURS.iter().map(|s| s.to_string()));
    out
}

/// The text after the YAML key `key:` (a line starting with it, not a comment mentioning it).
fn after_key<'a>(text: &'a str, key: &str) -> &'a str {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with(&format!("{key}:")) {
            return &text[offset + line.len()..];
        }
        offset += line.len();
    }
    panic!("no key {key}")
}

/// Original-request descriptions: no client copy may reach the check.
const DESCRIPTIONS: [&str; 5] = [
    "x-original-uri",
    "x-forwarded-uri",
    "x-original-url",
    "x-forwarded-method",
    "x-original-method",
];

/// The YAML double-quoted scalar after `key:`, continued over lines with a trailing `\`.
fn quoted_after(text: &str, key: &str) -> String {
    let mut value = String::new();
    for line in after_key(text, key).lines() {
        let line = line.trim_start();
        match line.strip_suffix('\\') {
            Some(part) => value.push_str(part),
            None => {
                value.push_str(line);
                break;
            }
        }
    }
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{key} is a double-quoted string: {value}"))
        .to_string()
}

#[test]
fn traefik_deletes_every_header_samlgate_strips_and_keeps_the_rest() {
    let text = read("deploy/examples/traefik-forward-auth/dynamic.yml");
    let re = regex::Regex::new(&quoted_after(&text, "authResponseHeadersRegex"))
        .expect("the expression compiles");
    let mut missed = Vec::new();
    for name in stripped_samples() {
        // Go keeps an `_` name's spelling (canonicalising the case only): every form counts.
        for spelling in [
            name.clone(),
            name.to_ascii_uppercase(),
            name.replace('-', "_"),
        ] {
            if !re.is_match(&spelling) {
                missed.push(spelling);
            }
        }
    }
    assert!(missed.is_empty(), "not deleted by Traefik: {missed:?}");
    for kept in KEPT {
        assert!(!re.is_match(kept), "{kept} would be deleted");
    }
    assert!(!re.is_match("X-Forwarded-Users"), "anchored at both ends");

    // Only these client headers reach the check: never an original-request description.
    let request_headers: Vec<String> = after_key(&text, "authRequestHeaders")
        .lines()
        .map_while(|l| l.trim().strip_prefix("- "))
        .map(str::to_ascii_lowercase)
        .collect();
    assert!(request_headers.contains(&"cookie".to_string()));
    for never in DESCRIPTIONS {
        assert!(
            !request_headers.contains(&never.to_string()),
            "authRequestHeaders passes a client's {never}"
        );
    }
    assert!(text.contains("trustForwardHeader: false"));
    // The check is not routed to samlgate from outside.
    assert!(
        text.contains("PathPrefix(`/saml/`) && !PathPrefix(`/saml/auth`)"),
        "the samlgate router excludes /saml/auth"
    );
}

/// Envoy's Lua filter: the names between the markers, as its code matches them (lower case;
/// `_` spellings never get that far, `headers_with_underscores_action: REJECT_REQUEST`).
#[test]
fn envoy_removes_every_header_samlgate_strips_and_keeps_the_rest() {
    let text = read("deploy/examples/envoy-forward-auth/envoy.yaml");
    let lists = text
        .split("-- ---- names (lower case)")
        .nth(1)
        .and_then(|rest| rest.split("-- ---- end of the names").next())
        .expect("the marked Lua lists");
    let (exact_part, prefix_part) = lists
        .split_once("local prefixes")
        .expect("exact names, then prefixes");
    let quoted = |part: &str| -> Vec<String> {
        part.split('"')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    };
    let exact = quoted(exact_part);
    let prefixes = quoted(prefix_part);
    assert!(exact.len() > 50 && prefixes.len() > 10);
    let removed = |name: &str| {
        let n = name.to_ascii_lowercase();
        exact.contains(&n) || prefixes.iter().any(|p| n.starts_with(p.as_str()))
    };
    let missed: Vec<String> = stripped_samples()
        .into_iter()
        .filter(|n| !removed(n))
        .collect();
    assert!(missed.is_empty(), "not removed by Envoy: {missed:?}");
    for kept in KEPT {
        assert!(!removed(kept), "{kept} would be removed");
    }

    assert!(text.contains("headers_with_underscores_action: REJECT_REQUEST"));
    let filter = |name: &str| {
        text.find(&format!("- name: {name}"))
            .unwrap_or_else(|| panic!("{name}"))
    };
    assert!(
        filter("envoy.filters.http.lua") < filter("envoy.filters.http.ext_authz"),
        "the client's copies go before the check adds samlgate's"
    );
    // /saml/auth from outside: 404, matched before the /saml/ route to samlgate.
    let auth_route = text
        .find("prefix: \"/saml/auth\" }")
        .expect("a /saml/auth route");
    let saml_route = text.find("prefix: \"/saml/\" }").expect("a /saml/ route");
    assert!(auth_route < saml_route);
    assert!(text[auth_route..saml_route].contains("direct_response: { status: 404 }"));
    let allowed: Vec<&str> = after_key(&text, "allowed_headers")
        .lines()
        .skip(1) // patterns:
        .map_while(|l| l.trim().strip_prefix("- exact: "))
        .collect();
    assert!(allowed.contains(&"cookie"), "{allowed:?}");
    for never in DESCRIPTIONS {
        assert!(
            !allowed.contains(&never),
            "allowed_headers passes a client's {never}"
        );
    }
}
