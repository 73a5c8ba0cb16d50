//! The pre-filter on arbitrary bytes, with each root kind (Response, decrypted Assertion,
//! decrypted NameID) and both SHA-1 settings. It must never panic, answer within the run's
//! `-timeout`, and only accept what it promises: UTF-8 within the size cap, facts that
//! agree with themselves.
#![no_main]

use libfuzzer_sys::fuzz_target;
use samlgate::saml::prefilter::{prefilter_root, PrefilterPolicy, Root};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, xml)) = data.split_first() else {
        return;
    };
    let root = match selector % 3 {
        0 => Root::Response,
        1 => Root::Assertion,
        _ => Root::NameId,
    };
    let policy = PrefilterPolicy {
        allow_sha1: selector & 0x80 != 0,
        ..PrefilterPolicy::default()
    };
    let Ok(facts) = prefilter_root(xml, &policy, root) else {
        return;
    };
    assert!(xml.len() <= policy.max_bytes);
    assert!(
        std::str::from_utf8(xml).is_ok(),
        "accepted a document that is not UTF-8"
    );
    let signed = usize::from(facts.response_signed) + usize::from(facts.assertion_signed);
    assert!(facts.signature_count >= signed, "{facts:?}");
    let assertions = facts.assertion_count + facts.encrypted_assertion_count;
    assert!(assertions <= 1, "{facts:?}");
    if root == Root::Response {
        let status = facts
            .status_code
            .as_deref()
            .expect("a Response passed without a status");
        let success = status == "urn:oasis:names:tc:SAML:2.0:status:Success";
        assert!(
            !success || assertions == 1,
            "a successful Response without an assertion"
        );
    }
});
