//! Single Logout by Redirect binding: the raw query split, the `SAMLRequest`/`SAMLResponse`
//! inflated (base64 → raw DEFLATE, bounded) and parsed as a LogoutRequest and as a
//! LogoutResponse. The first byte picks what the rest is:
//!
//! - `0`: a raw query string (the gateway's `/saml/slo` input);
//! - `1`: XML that is deflated and base64-encoded into a query (reaches the parsers with
//!   inputs the fuzzer can shape as text);
//! - otherwise: a base64 parameter value on its own (inflate paths, bombs).
//!
//! Never panics; inflated output stays within its cap.
#![no_main]

use std::io::Write;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use samlgate::saml::logout::{
    decode_redirect_param, parse_logout_request, parse_logout_response, parse_redirect_query,
    MAX_LOGOUT_XML_BYTES,
};

fn inflate_and_parse(b64: &str) {
    let Ok(xml) = decode_redirect_param(b64) else {
        return;
    };
    assert!(xml.len() <= MAX_LOGOUT_XML_BYTES);
    parse_both(&xml);
}

fn parse_both(xml: &str) {
    if let Ok(request) = parse_logout_request(xml) {
        assert!(!request.id.is_empty());
        assert!(!request.name_id.is_empty());
    }
    if let Ok(response) = parse_logout_response(xml) {
        assert!(!response.id.is_empty());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match mode {
        0 => {
            if let Ok(message) = parse_redirect_query(&text) {
                inflate_and_parse(&message.message);
            }
        }
        1 => {
            parse_both(&text);
            let mut deflate =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
            if deflate.write_all(text.as_bytes()).is_err() {
                return;
            }
            let Ok(compressed) = deflate.finish() else {
                return;
            };
            let query = format!(
                "SAMLRequest={}&RelayState=%2Fhome",
                url::form_urlencoded::byte_serialize(STANDARD.encode(compressed).as_bytes())
                    .collect::<String>()
            );
            let message = parse_redirect_query(&query).expect("a query we built must split");
            inflate_and_parse(&message.message);
        }
        _ => inflate_and_parse(&text),
    }
});
