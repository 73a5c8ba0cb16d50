//! Logging: tracing with a human or JSON formatter. Targets: `samlgate::access` (one line per
//! request), `samlgate::audit` (sign-in success and failure with reason, sign-out, denials),
//! `samlgate::upstream`. Nothing here ever receives a secret, a cookie value or raw SAML.
//! Colour codes only reach a terminal: a log file or a pipe gets plain text. Repeated refusals
//! are summarised before they get here ([`crate::log_throttle`]).

use std::io::IsTerminal;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Installs the process-wide subscriber writing to stdout (`format`: `"json"` or human).
pub fn init(format: &str, level: &str) {
    let ansi = use_colour(
        std::io::stdout().is_terminal(),
        std::env::var("NO_COLOR").ok().as_deref(),
    );
    init_with_writer(format, level, ansi, std::io::stdout);
}

/// [`init`] with another writer (tests capture lines with it) and an explicit colour choice.
/// A second init (tests) keeps the first subscriber.
pub fn init_with_writer<W>(format: &str, level: &str, ansi: bool, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_writer(writer);
    let result = if format == "json" {
        // JSON has no colours; the escape codes would only corrupt the values.
        builder
            .with_ansi(false)
            .json()
            .flatten_event(true)
            .try_init()
    } else {
        builder.with_ansi(ansi).try_init()
    };
    let _ = result;
}

/// Colours only for a terminal, and never when `NO_COLOR` is set to a non-empty value
/// (<https://no-color.org>): a log file full of escape sequences is unreadable and ungreppable.
pub fn use_colour(stdout_is_terminal: bool, no_color: Option<&str>) -> bool {
    stdout_is_terminal && no_color.is_none_or(str::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        for (terminal, no_color, want) in [
            (true, None, true),
            (true, Some(""), true),
            (true, Some("1"), false),
            (false, None, false),
            (false, Some(""), false),
            (false, Some("1"), false),
        ] {
            assert_eq!(
                use_colour(terminal, no_color),
                want,
                "{terminal} {no_color:?}"
            );
        }
    }
}
