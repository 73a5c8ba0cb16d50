//! The IdP verification keys that the patched samael keeps per thread
//! (vendor/samael/SAMLGATE-PATCH.md): a cached key verifies only signatures made with its
//! own certificate's key. Every verification here runs on the test's one thread, so all of
//! them go through the same cache, across verifiers with different IdP metadata — as the
//! gateway's blocking threads do across a metadata refresh or a reload.

#[path = "support/mint.rs"]
mod mint;
#[path = "support/verifier.rs"]
mod support_verifier;

use std::path::Path;

use chrono::Utc;
use mint::{ResponseSpec, TestIdp};
use samlgate::saml::verify::Verifier;

const IDP_ENTITY: &str = "https://idp.keys.example/metadata";
const IDP_SSO: &str = "https://idp.keys.example/sso";
const PUBLIC_URL: &str = "https://app.keys.example";

/// A verifier trusting exactly `certs` (DER) for the IdP `idp`, built as the gateway builds
/// it.
fn verifier(idp: &TestIdp, certs: &[&[u8]], dir: &Path) -> Verifier {
    support_verifier::verifier(
        &idp.metadata_xml_exact_certs(IDP_SSO, certs),
        PUBLIC_URL,
        dir,
    )
}

/// Whether `verifier` accepts a fresh response (Response and Assertion signed) from `idp`.
fn accepts(verifier: &Verifier, idp: &TestIdp) -> bool {
    let req_id = mint::new_id();
    let spec = ResponseSpec::valid(
        idp,
        &verifier.sp_entity_id,
        &verifier.acs_url,
        Some(&req_id),
    );
    let (xml, facts) = verifier
        .decode_and_screen(&mint::mint_b64(idp, &spec))
        .unwrap_or_else(|e| panic!("pre-filter refused a valid response: {}", e.reason()));
    match verifier.verify_signed(&xml, &facts, Some(&req_id), Utc::now()) {
        Ok(_) => true,
        Err(e) => {
            assert_eq!(
                e.kind(),
                "signature",
                "refused for another reason: {}",
                e.reason()
            );
            false
        }
    }
}

#[test]
fn a_cached_key_verifies_only_its_own_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let a = TestIdp::generate(IDP_ENTITY);
    let b = TestIdp::generate(IDP_ENTITY);

    let trusts_a = verifier(&a, &[&a.cert_der], dir.path());
    assert!(accepts(&trusts_a, &a), "A's own key");
    assert!(!accepts(&trusts_a, &b), "B is not in A's metadata");

    // A's key is cached on this thread now; metadata that lists only B must not use it.
    let trusts_b = verifier(&a, &[&b.cert_der], dir.path());
    assert!(!accepts(&trusts_b, &a), "A refused after the rollover to B");
    assert!(accepts(&trusts_b, &b), "B accepted after the rollover");
    assert!(
        !accepts(&trusts_a, &b),
        "B still refused by A-only metadata"
    );
    assert!(
        accepts(&trusts_a, &a),
        "A still accepted by A-only metadata"
    );

    // Both listed (rollover window): either.
    let both = verifier(&a, &[&a.cert_der, &b.cert_der], dir.path());
    assert!(accepts(&both, &a) && accepts(&both, &b));
}

#[test]
fn keys_pushed_out_of_the_cache_are_loaded_again() {
    // More certificates than a thread keeps keys for (8): the first ones are evicted and
    // must verify again when they come back, and never verify for another certificate.
    let dir = tempfile::tempdir().unwrap();
    let idps: Vec<TestIdp> = (0..10).map(|_| TestIdp::generate(IDP_ENTITY)).collect();
    for round in 0..2 {
        for (i, idp) in idps.iter().enumerate() {
            let own = verifier(idp, &[&idp.cert_der], dir.path());
            assert!(
                accepts(&own, idp),
                "round {round}: IdP {i} with its own key"
            );
            let other = &idps[(i + 1) % idps.len()];
            assert!(
                !accepts(&own, other),
                "round {round}: IdP {i}'s metadata refuses the next IdP's signature"
            );
        }
    }
}
