//! Logging: tracing with a human or JSON formatter. Targets: `samlgate::access` (one line per
//! request), `samlgate::audit` (sign-in success and failure with reason, sign-out, denials),
//! `samlgate::upstream`. Nothing here ever receives a secret, a cookie value or raw SAML.

use tracing_subscriber::EnvFilter;

pub fn init(format: &str, level: &str) {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    let result = if format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}
