//! The ACS POST body as the gateway reads it: form fields → base64 → size cap → pre-filter →
//! UTF-8. Never panics; whatever passes is a UTF-8 document within `max_bytes` whose
//! pre-filter verdict is the same when asked again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use samlgate::saml::prefilter::{prefilter, PrefilterPolicy};
use samlgate::saml::verify::{acs_form, decode_and_screen};

fuzz_target!(|body: &[u8]| {
    let Ok(form) = acs_form(body) else {
        return;
    };
    let policy = PrefilterPolicy::default();
    let Ok((xml, facts)) = decode_and_screen(&form.saml_response, &policy) else {
        return;
    };
    assert!(xml.len() <= policy.max_bytes);
    assert_eq!(prefilter(xml.as_bytes(), &policy), Ok(facts));
});
