//! Other gateways' identity headers (`Remote-User`, `X-Auth-Request-*`, `X-WEBAUTH-*`, … the
//! table in `src/foreign_headers.rs`) sent by a client never reach the upstream through the
//! running gateway, in any case or `_`/`-` spelling, on signed-in and on anonymous paths; and
//! `headers.strip_foreign_defaults` / `headers.strip_foreign_extra` change what is stripped.
//!
//! Requests are written by hand on a TCP socket, so each header name goes out exactly as
//! spelled here (an HTTP client library would normalise the case). What is checked is what the
//! recording upstream received.

#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/mint.rs"]
mod mint;
#[path = "support/signin.rs"]
mod signin;

use samlgate::foreign_headers::FOREIGN_IDENTITY_HEADERS;
use samlgate::proxy::ROUTING_OVERRIDE_HEADERS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use gateway::{Seen, TestGateway};

const PUBLIC_RULE: &str = r#"
[[access.rules]]
name = "public"
path_prefix = "/public/"
action = "allow"
"#;

/// Every spelling a client might use for `name`: as written, lower, upper, `_` for every
/// `-`, `_` for the first `-` only.
fn spellings(name: &str) -> Vec<String> {
    let mut out = vec![
        name.to_string(),
        name.to_ascii_lowercase(),
        name.to_ascii_uppercase(),
        name.replace('-', "_"),
        name.replacen('-', "_", 1),
    ];
    out.dedup();
    out
}

/// A header name for each table entry: the name itself, or a member of a prefix family.
fn table_names() -> Vec<String> {
    FOREIGN_IDENTITY_HEADERS
        .iter()
        .map(|(p, _)| match p.strip_suffix('*') {
            Some(stem) => format!("{stem}Probe"),
            None => p.to_string(),
        })
        .collect()
}

/// `(header line, value)` for every spelling of every name; values are `forged-N`.
fn forged_headers(names: &[String]) -> Vec<(String, String)> {
    names
        .iter()
        .flat_map(|n| spellings(n))
        .enumerate()
        .map(|(i, n)| (n, format!("forged-{i}")))
        .collect()
}

/// One HTTP/1.1 GET written by hand; returns the status code.
async fn raw_get(gw: &TestGateway, path: &str, headers: &[(String, String)]) -> u16 {
    let url = url::Url::parse(&gw.url("/")).unwrap();
    let port = url.port().unwrap();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\nConnection: close\r\nX-Innocent: kept\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"))
}

/// The forged headers that reached the upstream (none expected).
fn leaked(seen: &Seen) -> Vec<(String, String)> {
    seen.headers
        .iter()
        .filter(|(_, v)| v.starts_with("forged-"))
        .cloned()
        .collect()
}

#[tokio::test]
async fn foreign_identity_headers_never_reach_the_upstream_signed_in_or_anonymous() {
    let (idp, up, gw) = signin::start_minted(PUBLIC_RULE).await;
    let (_, cookie) = signin::sign_in_as(&idp, &gw, "/reports", |_| {}).await;
    let mut names = table_names();
    names.extend(ROUTING_OVERRIDE_HEADERS.iter().map(|s| s.to_string()));
    let forged = forged_headers(&names);
    assert!(forged.len() > 200, "{} spellings", forged.len());

    // The gateway takes at most 100 header lines a request: in batches.
    let batches: Vec<&[(String, String)]> = forged.chunks(80).collect();
    for batch in &batches {
        let mut signed_in = batch.to_vec();
        signed_in.push(("Cookie".into(), cookie.clone()));
        assert_eq!(raw_get(&gw, "/reports", &signed_in).await, 200);
        let seen = up.last();
        assert_eq!(seen.path, "/reports");
        assert_eq!(seen.one("x-innocent").as_deref(), Some("kept"));
        assert_eq!(seen.one("x-forwarded-user").as_deref(), Some("alice"));
        assert_eq!(leaked(&seen), vec![], "signed in");

        assert_eq!(raw_get(&gw, "/public/logo.png", batch).await, 200);
        let seen = up.last();
        assert_eq!(seen.path, "/public/logo.png");
        assert_eq!(seen.one("x-innocent").as_deref(), Some("kept"));
        assert_eq!(seen.any_variant("x-forwarded-user"), vec![]);
        assert_eq!(leaked(&seen), vec![], "anonymous");
    }
    assert_eq!(up.count(), 2 * batches.len());
}

#[tokio::test]
async fn the_foreign_list_can_be_emptied_or_replaced_by_the_operators_own() {
    let config = format!(
        "[headers]\nstrip_foreign_defaults = false\nstrip_foreign_extra = [\"X-Corp-User\", \"X-Corp-Claim-*\"]\n{PUBLIC_RULE}"
    );
    let (_idp, up, gw) = signin::start_minted(&config).await;
    let headers = [
        ("Remote-User", "table-name"),
        ("X-Auth-Request-User", "table-name"),
        ("X_Corp_User", "forged-1"),
        ("x-corp-claim-role", "forged-2"),
        ("X-CORP-CLAIM-", "forged-3"),
        ("X-Forwarded-User", "forged-4"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    assert_eq!(raw_get(&gw, "/public/x", &headers).await, 200);
    let seen = up.last();
    assert_eq!(leaked(&seen), vec![], "the operator's names and ours go");
    // Without the table, other gateways' names pass: the operator chose so.
    assert_eq!(seen.one("remote-user").as_deref(), Some("table-name"));
    assert_eq!(
        seen.one("x-auth-request-user").as_deref(),
        Some("table-name")
    );
}
