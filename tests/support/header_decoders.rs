//! Reference decoders for identity header values, independent of samlgate's encoders: Python's
//! standard library (`email.header` for RFC 2047, `quopri` for quoted-printable, as Grafana's
//! Go `mime/quotedprintable` reads it) and the `percent-encoding` crate.
//!
//! Include with `#[path = "support/header_decoders.rs"] mod header_decoders;`.
#![allow(dead_code)]

use std::process::Command;

/// Decodes each value with Python: `rfc2047` by `email.header` (`decode_header` +
/// `make_header`), `qp` by `quopri` (RFC 2045). Panics with an install hint without python3.
pub fn python_decode(scheme: &str, values: &[String]) -> Vec<String> {
    let script = r#"
import sys, json, quopri, email.header
scheme = sys.argv[1]
out = []
for v in sys.argv[2:]:
    if scheme == "rfc2047":
        out.append(str(email.header.make_header(email.header.decode_header(v))))
    else:
        out.append(quopri.decodestring(v.encode("ascii")).decode("utf-8"))
print(json.dumps(out))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(scheme)
        .args(values)
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 is needed as the reference decoder (apt-get install python3): {e}")
        });
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python3 printed a JSON list")
}

/// Decodes header values sent under `headers.encoding = encoding` (`raw`: unchanged).
pub fn decode(encoding: &str, values: &[String]) -> Vec<String> {
    match encoding {
        "rfc2047" => python_decode("rfc2047", values),
        "quoted-printable" => python_decode("qp", values),
        "percent" => values
            .iter()
            .map(|v| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8()
                    .expect("percent-encoded UTF-8")
                    .into_owned()
            })
            .collect(),
        _ => values.to_vec(),
    }
}
