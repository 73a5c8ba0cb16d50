//! Real IdP output that is unusual but safe, checked through the gateway's `Verifier` (the
//! pre-filter, then samael/libxmlsec1, then policy) with real signatures minted by
//! tests/support/mint.rs, and every wrapped, duplicated or forged variant of each shape
//! refused with the exact reason:
//!
//! - a Response signed with `Reference URI=""` (the whole document) around an unsigned
//!   assertion (`saml.require_signed_assertion = false`), or around a signed one;
//! - `ID` values that are not NCNames (a leading digit or `-`, a bare UUID);
//! - `InResponseTo` on the SubjectConfirmationData only, not on the Response.
//!
//! tests/acs_attacks.rs signs in with each shape through a running gateway.

#[path = "support/mint.rs"]
mod mint;
#[path = "support/verifier.rs"]
mod support_verifier;

use chrono::Utc;
use mint::attacks;
use mint::xml::{find_element, first_child, root_start, splice};
use mint::{ResponseSpec, TestIdp};
use samlgate::saml::error::{InResponseToError, LoginError, RequestRef};
use samlgate::saml::policy::AcceptedAssertion;
use samlgate::saml::prefilter::PrefilterError;
use samlgate::saml::verify::Verifier;

const IDP_ENTITY: &str = "https://idp.quirks.example/metadata";
const IDP_SSO: &str = "https://idp.quirks.example/sso";
const PUBLIC_URL: &str = "https://app.quirks.example";
const EVIL: &str = "mallory-admin";

struct Fixture {
    idp: TestIdp,
    /// As configured by default: the Assertion must be signed.
    strict: Verifier,
    /// `saml.require_signed_assertion = false`: one signature (Response or Assertion) is enough.
    relaxed: Verifier,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let idp = TestIdp::generate(IDP_ENTITY);
    let metadata = idp.metadata_xml(IDP_SSO);
    let strict = support_verifier::verifier(&metadata, PUBLIC_URL, dir.path());
    let mut relaxed = support_verifier::verifier(&metadata, PUBLIC_URL, dir.path());
    relaxed.require_signed_assertion = false;
    Fixture {
        idp,
        strict,
        relaxed,
        _dir: dir,
    }
}

impl Fixture {
    /// A valid response answering `req`, both signatures on.
    fn spec(&self, req: &str) -> ResponseSpec {
        ResponseSpec::valid(
            &self.idp,
            &self.strict.sp_entity_id,
            &self.strict.acs_url,
            Some(req),
        )
    }
}

/// The gateway's whole verification of `xml` for the pending request `pending`.
fn verdict(
    v: &Verifier,
    xml: &str,
    pending: Option<&str>,
) -> Result<AcceptedAssertion, LoginError> {
    let (xml, facts) = v.decode_and_screen(&mint::b64(xml))?;
    v.verify_signed(&xml, &facts, pending, Utc::now())
}

fn accepted(v: &Verifier, xml: &str, pending: &str, ctx: &str) {
    match verdict(v, xml, Some(pending)) {
        Ok(a) => assert_eq!(a.name_id, "alice", "{ctx}"),
        Err(e) => panic!("{ctx}: refused: {} ({})", e.reason(), e.kind()),
    }
}

fn refused(v: &Verifier, xml: &str, pending: &str, ctx: &str) -> LoginError {
    match verdict(v, xml, Some(pending)) {
        Ok(a) => panic!("{ctx}: accepted, identity {}", a.name_id),
        Err(e) => e,
    }
}

fn prefilter_refusal(v: &Verifier, xml: &str, pending: &str, ctx: &str) -> PrefilterError {
    match refused(v, xml, pending, ctx) {
        LoginError::Prefilter(p) => p,
        other => panic!("{ctx}: refused after the pre-filter: {}", other.reason()),
    }
}

/// An unsigned Assertion for `EVIL`, with a fresh ID, valid in every other respect.
fn evil_assertion(f: &Fixture, spec: &ResponseSpec) -> String {
    let mut evil = spec.with_fresh_ids();
    evil.name_id = EVIL.into();
    evil.sign_assertion = false;
    mint::assertion_text(&f.idp, &evil)
}

// ---- Reference URI="" ------------------------------------------------------------------

/// The whole-document signature covers the unsigned assertion: with one signature enough,
/// both layers accept it. With the default (Assertion signature required) it is refused for
/// that reason alone, and with a signed Assertion inside it signs in either way.
#[test]
fn whole_document_signature_is_accepted_where_one_signature_is_enough() {
    let f = fixture();
    let req = mint::new_id();
    let mut unsigned_inside = f.spec(&req);
    unsigned_inside.sign_assertion = false;
    let xml = mint::mint_whole_document_signed(&f.idp, &unsigned_inside);
    assert!(xml.contains(r#"<ds:Reference URI="">"#), "{xml}");
    accepted(&f.relaxed, &xml, &req, "URI=\"\", unsigned assertion");
    // With an XML declaration and a comment before the root, as some IdPs send.
    let decorated = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- IdP -->\n{}",
        mint::mint_whole_document_signed(&f.idp, &unsigned_inside.with_fresh_ids())
    );
    accepted(&f.relaxed, &decorated, &req, "URI=\"\" with a declaration");
    assert_eq!(
        refused(
            &f.strict,
            &mint::mint_whole_document_signed(&f.idp, &unsigned_inside.with_fresh_ids()),
            &req,
            "strict"
        ),
        LoginError::AssertionNotSigned
    );
    let signed_inside = f.spec(&req);
    for v in [&f.strict, &f.relaxed] {
        let xml = mint::mint_whole_document_signed(&f.idp, &signed_inside.with_fresh_ids());
        accepted(v, &xml, &req, "URI=\"\", signed assertion");
    }
}

/// Everything an attacker can do to a whole-document-signed response: the digest covers
/// every byte libxmlsec1 canonicalizes, and the pre-filter refuses what it would not (a
/// second root, content inside the enveloped signature, a second assertion, comments in
/// identity text).
#[test]
fn whole_document_signature_refuses_every_wrapped_or_forged_variant() {
    let f = fixture();
    let req = mint::new_id();
    let mut spec = f.spec(&req);
    spec.sign_assertion = false;
    let signed = || mint::mint_whole_document_signed(&f.idp, &spec.with_fresh_ids());
    let v = &f.relaxed;

    // The NameID changed after signing.
    let e = refused(
        v,
        &attacks::tamper_name_id(&signed(), EVIL),
        &req,
        "tampered",
    );
    assert!(matches!(e, LoginError::Signature(_)), "{}", e.reason());

    // An unsigned evil assertion beside the covered one.
    let xml = signed();
    let root = root_start(&xml).unwrap();
    let (a, _) = first_child(&xml, root, "Assertion").unwrap();
    let beside = splice(&xml, a, a, &evil_assertion(&f, &spec));
    assert_eq!(
        prefilter_refusal(v, &beside, &req, "beside"),
        PrefilterError::TooManyAssertions
    );

    // Inside the enveloped signature, which the enveloped-signature transform leaves out of
    // the digest: after SignatureValue, and inside KeyInfo.
    let xml = signed();
    let (ss, se) = first_child(&xml, root_start(&xml).unwrap(), "Signature").unwrap();
    let close = ss + xml[ss..se].rfind("</ds:Signature>").unwrap();
    let inside = splice(&xml, close, close, &evil_assertion(&f, &spec));
    assert!(matches!(
        prefilter_refusal(v, &inside, &req, "inside Signature"),
        PrefilterError::UnexpectedElement { .. }
    ));
    let key_info = xml.find("</ds:KeyInfo>").unwrap();
    let in_key_info = splice(&xml, key_info, key_info, &evil_assertion(&f, &spec));
    assert!(matches!(
        prefilter_refusal(v, &in_key_info, &req, "inside KeyInfo"),
        PrefilterError::UnexpectedElement { .. }
    ));

    // A second root after the signed one (libxml2 would read only the first).
    assert_eq!(
        prefilter_refusal(v, &attacks::extra_root(&signed()), &req, "second root"),
        PrefilterError::MultipleRoots
    );

    // The signed document moved inside an evil Response (the reference now covers the evil
    // document, and the signature is no longer the root's).
    let original = signed();
    let mut evil = spec.with_fresh_ids();
    evil.name_id = EVIL.into();
    evil.sign_response = false;
    let evil_doc = mint::mint(&f.idp, &evil);
    let at = evil_doc.find("<samlp:Status>").unwrap();
    let wrapped = splice(
        &evil_doc,
        at,
        at,
        &format!(
            r#"<samlp:Extensions>{}</samlp:Extensions>"#,
            original.trim_start_matches('\u{feff}')
        ),
    );
    assert!(matches!(
        prefilter_refusal(v, &wrapped, &req, "wrapped in an evil Response"),
        PrefilterError::MisplacedSignature(_)
    ));

    // Comment injection: the c14n of URI="" drops comments, the pre-filter refuses them in
    // identity text.
    let xml = signed();
    let (ns, _) = find_element(&xml, "NameID", 0).unwrap();
    let text = ns + xml[ns..].find('>').unwrap() + 1;
    let injected = splice(&xml, text + 2, text + 2, "<!---->");
    assert!(matches!(
        prefilter_refusal(v, &injected, &req, "comment in NameID"),
        PrefilterError::CommentNotAllowed(_)
    ));

    // URI="" is the Response's own signature's only: on the Assertion's it is refused.
    let both = mint::mint(&f.idp, &f.spec(&req));
    let assertion_ref = format!(r##"URI="#{}""##, spec_assertion_id(&both));
    let whole_on_assertion = both.replacen(&assertion_ref, r#"URI="""#, 1);
    assert_eq!(
        prefilter_refusal(
            &f.strict,
            &whole_on_assertion,
            &req,
            "URI=\"\" on the Assertion"
        ),
        PrefilterError::ReferenceTargetMismatch {
            uri: String::new(),
            signed: "saml:Assertion"
        }
    );
}

/// The `ID` of the (only) Assertion in a minted document.
fn spec_assertion_id(xml: &str) -> String {
    let (a, _) = find_element(xml, "Assertion", 0).unwrap();
    let tag = &xml[a..a + xml[a..].find('>').unwrap()];
    let v = tag.split(" ID=\"").nth(1).unwrap();
    v[..v.find('"').unwrap()].to_string()
}

// ---- IDs that are not NCNames -----------------------------------------------------------

/// IDs as some production IdPs send them.
const ODD_IDS: [(&str, &str); 3] = [
    (
        "0d1c6f2a-93b4-4f7e-8a51-2c9e7b3d4f60",
        "7e4b2a91-5c3d-4e8f-9a0b-1c2d3e4f5a6b",
    ),
    ("1681234567890123", "1681234567890124"),
    ("-Rp.9", "-As.9"),
];

fn odd_spec(f: &Fixture, req: &str, ids: (&str, &str)) -> ResponseSpec {
    let mut s = f.spec(req);
    s.response_id = ids.0.into();
    s.assertion_id = ids.1.into();
    s
}

/// Signed by libxmlsec1 with `#<digit…>` references, verified by it, accepted by every
/// layer: both signatures, the Response's only, the Assertion's only.
#[test]
fn ids_that_are_not_ncnames_sign_in() {
    let f = fixture();
    let req = mint::new_id();
    for ids in ODD_IDS {
        let both = mint::mint(&f.idp, &odd_spec(&f, &req, ids));
        assert!(both.contains(&format!(r##"URI="#{}""##, ids.0)), "{both}");
        accepted(&f.strict, &both, &req, ids.0);
        let mut response_only = odd_spec(&f, &req, ids);
        response_only.sign_assertion = false;
        accepted(&f.relaxed, &mint::mint(&f.idp, &response_only), &req, ids.0);
        let mut assertion_only = odd_spec(&f, &req, ids);
        assertion_only.sign_response = false;
        accepted(&f.strict, &mint::mint(&f.idp, &assertion_only), &req, ids.0);
    }
}

/// Duplicated IDs, a wrapper carrying the signed element's ID, a reference to nothing, an
/// unsigned assertion beside the signed one, and XSW1–8: all refused with these IDs too.
#[test]
fn ids_that_are_not_ncnames_refuse_wrapped_and_duplicated_variants() {
    let f = fixture();
    let req = mint::new_id();
    for ids in ODD_IDS {
        let (response_id, assertion_id) = ids;
        // One ID on both elements, signed that way by the IdP.
        let mut dup = odd_spec(&f, &req, ids);
        dup.assertion_id = response_id.into();
        assert_eq!(
            prefilter_refusal(&f.strict, &mint::mint(&f.idp, &dup), &req, "duplicate"),
            PrefilterError::DuplicateId(response_id.into())
        );

        // A wrapper element carrying the signed Assertion's ID.
        let xml = mint::mint(&f.idp, &odd_spec(&f, &req, ids));
        let at = xml.find("<samlp:Status>").unwrap();
        let wrapper = splice(
            &xml,
            at,
            at,
            &format!(
                r#"<samlp:Extensions><w:Wrap xmlns:w="urn:x" ID="{assertion_id}"/></samlp:Extensions>"#
            ),
        );
        assert_eq!(
            prefilter_refusal(&f.strict, &wrapper, &req, "wrapper"),
            PrefilterError::DuplicateId(assertion_id.into())
        );

        // The Assertion's reference names an ID no element has.
        let nowhere = xml.replacen(
            &format!(r##"URI="#{assertion_id}""##),
            r##"URI="#9nothing""##,
            1,
        );
        assert_eq!(
            prefilter_refusal(&f.strict, &nowhere, &req, "reference to nothing"),
            PrefilterError::ReferenceTargetMismatch {
                uri: "#9nothing".into(),
                signed: "saml:Assertion"
            }
        );

        // An unsigned evil assertion beside the signed one.
        let root = root_start(&xml).unwrap();
        let (a, _) = first_child(&xml, root, "Assertion").unwrap();
        let beside = splice(&xml, a, a, &evil_assertion(&f, &odd_spec(&f, &req, ids)));
        assert_eq!(
            prefilter_refusal(&f.relaxed, &beside, &req, "beside"),
            PrefilterError::TooManyAssertions
        );

        // XSW1–8 with these IDs, against both configurations.
        for (name, xml) in attacks::xsw_variants(&f.idp, &odd_spec(&f, &req, ids), EVIL) {
            for v in [&f.strict, &f.relaxed] {
                prefilter_refusal(v, &xml, &req, name);
            }
        }
    }
}

/// Without the pre-filter, samael (patched to accept these IDs) still refuses a duplicated
/// ID and a reference that resolves to nothing: the two layers agree.
#[test]
fn samael_alone_refuses_duplicate_and_dangling_odd_ids() {
    use samael::crypto::{Crypto, CryptoProvider, ReduceMode};
    let f = fixture();
    let req = mint::new_id();
    let (response_id, assertion_id) = ODD_IDS[0];
    let cert = samael::crypto::CertificateDer::from(f.idp.cert_der.clone());
    let reduce = |xml: &str| {
        Crypto::reduce_xml_to_signed_with_allowed_algorithms(
            xml,
            std::slice::from_ref(&cert),
            ReduceMode::PreDigest,
            None,
        )
    };
    let xml = mint::mint(&f.idp, &odd_spec(&f, &req, ODD_IDS[0]));
    assert!(reduce(&xml).is_ok(), "the valid document verifies");
    let mut dup = odd_spec(&f, &req, ODD_IDS[0]);
    dup.assertion_id = response_id.into();
    assert!(reduce(&mint::mint(&f.idp, &dup)).is_err(), "duplicate ID");
    let nowhere = xml.replacen(
        &format!(r##"URI="#{assertion_id}""##),
        r##"URI="#9nothing""##,
        1,
    );
    assert!(reduce(&nowhere).is_err(), "dangling reference");
}

// ---- InResponseTo on the SubjectConfirmationData only ------------------------------------

/// Signature layouts an IdP may use; each is checked for every InResponseTo case.
fn layouts(f: &Fixture) -> [(&'static str, &Verifier, bool, bool); 3] {
    [
        ("both signed", &f.strict, true, true),
        ("assertion signed", &f.strict, false, true),
        ("response signed", &f.relaxed, true, false),
    ]
}

#[test]
fn in_response_to_on_the_subject_confirmation_alone_is_solicited() {
    let f = fixture();
    let req = mint::new_id();
    for (layout, v, sign_response, sign_assertion) in layouts(&f) {
        let mut s = f.spec(&req);
        s.in_response_to = None;
        s.sign_response = sign_response;
        s.sign_assertion = sign_assertion;
        accepted(v, &mint::mint(&f.idp, &s), &req, layout);
        // Never as unsolicited: with no pending request it answers one we do not hold.
        assert_eq!(
            verdict(v, &mint::mint(&f.idp, &s.with_fresh_ids()), None).unwrap_err(),
            LoginError::UnknownRequest { got: req.clone() },
            "{layout}"
        );
    }
}

#[test]
fn in_response_to_failures_have_exact_reasons() {
    use InResponseToError::*;
    let f = fixture();
    let req = mint::new_id();
    let other = mint::new_id();
    let cases: Vec<(&str, Option<&str>, Option<&str>, InResponseToError)> = vec![
        (
            "subject names another request",
            None,
            Some(&other),
            NotThisRequest {
                at: RequestRef::SubjectConfirmationData,
                got: other.clone(),
            },
        ),
        (
            "response and subject differ",
            Some(&req),
            Some(&other),
            ResponseVsSubjectConfirmation {
                response: req.clone(),
                subject: other.clone(),
            },
        ),
        (
            "response names another request",
            Some(&other),
            Some(&req),
            NotThisRequest {
                at: RequestRef::Response,
                got: other.clone(),
            },
        ),
        ("neither names one", None, None, Missing),
        (
            "subject names none",
            Some(&req),
            None,
            MissingInSubjectConfirmation,
        ),
    ];
    for (layout, v, sign_response, sign_assertion) in layouts(&f) {
        for (case, response, subject, want) in &cases {
            let mut s = f.spec(&req);
            s.in_response_to = response.map(str::to_string);
            s.subject_in_response_to = subject.map(str::to_string);
            s.sign_response = sign_response;
            s.sign_assertion = sign_assertion;
            let e = refused(v, &mint::mint(&f.idp, &s), &req, case);
            assert_eq!(
                e,
                LoginError::InResponseTo(want.clone()),
                "{layout}: {case}"
            );
            assert_eq!(e.kind(), "in_response_to");
        }
    }
}
