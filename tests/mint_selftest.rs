//! Self-test of tests/support/mint.rs against samael 0.0.22 itself.
//!
//! Proves that minted responses verify, that every attack document contains what it
//! claims, and records exactly what samael does with each attack (rejects it, or accepts
//! it but returns only the signed identity "alice"). The gateway must refuse all of them;
//! the ones samael accepts are the gateway's own job (policy checks, pre-filter).

#[path = "support/mint.rs"]
mod mint;

use mint::attacks;
use mint::xml::{count_elements, find_element, naive_name_id};
use mint::{b64, mint, ResponseSpec, SigAlg, TestIdp};
use samael::crypto::AllowedSignatureAlgorithm;
use samael::metadata::EntityDescriptor;
use samael::schema::Assertion;
use samael::service_provider::ServiceProvider;
use std::sync::OnceLock;

const IDP_ENTITY: &str = "http://127.0.0.1:8480/saml2/idp/metadata.php";
const IDP_SSO: &str = "http://127.0.0.1:8480/saml2/idp/SSOService.php";
const SP_ENTITY: &str = "https://app.example.test/saml/metadata";
const ACS: &str = "https://app.example.test/saml/acs";
const REQ_ID: &str = "_5f1b0c5e9d1a4b7c8e2f3a4b5c6d7e8f";
const EVIL: &str = "admin@evil.example";

fn idp() -> &'static TestIdp {
    static IDP: OnceLock<TestIdp> = OnceLock::new();
    IDP.get_or_init(|| TestIdp::generate(IDP_ENTITY))
}

fn sp_with_metadata(
    metadata: &str,
    algs: Option<Vec<AllowedSignatureAlgorithm>>,
) -> ServiceProvider {
    let idp_metadata: EntityDescriptor = metadata.parse().expect("metadata parses");
    ServiceProvider {
        entity_id: Some(SP_ENTITY.to_string()),
        acs_url: Some(ACS.to_string()),
        idp_metadata,
        allowed_signature_algorithms: algs,
        ..ServiceProvider::default()
    }
}

fn sp() -> ServiceProvider {
    sp_with_metadata(
        &idp().metadata_xml(IDP_SSO),
        Some(vec![AllowedSignatureAlgorithm::RsaSha256]),
    )
}

fn valid_spec() -> ResponseSpec {
    ResponseSpec::valid(idp(), SP_ENTITY, ACS, Some(REQ_ID))
}

fn parse(sp: &ServiceProvider, xml: &str) -> Result<Assertion, samael::service_provider::Error> {
    sp.parse_xml_response(xml, Some(&[REQ_ID]))
}

fn name_id(a: &Assertion) -> Option<String> {
    a.subject
        .as_ref()?
        .name_id
        .as_ref()
        .map(|n| n.value.clone())
}

fn attribute(a: &Assertion, name: &str) -> Vec<String> {
    a.attribute_statements
        .iter()
        .flatten()
        .flat_map(|s| s.attributes.iter())
        .filter(|at| at.name.as_deref() == Some(name))
        .flat_map(|at| at.values.iter().filter_map(|v| v.value.clone()))
        .collect()
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Outcome {
    /// samael returned an error.
    Rejected,
    /// samael returned the signed identity "alice" (the attack's evil part was dropped).
    AcceptedAlice,
}

/// Panics if samael returns any identity other than "alice".
fn outcome(label: &str, r: Result<Assertion, samael::service_provider::Error>) -> Outcome {
    match r {
        Err(_) => Outcome::Rejected,
        Ok(a) => {
            let n = name_id(&a);
            assert_eq!(
                n.as_deref(),
                Some("alice"),
                "{label}: samael accepted the attack and returned identity {n:?}"
            );
            Outcome::AcceptedAlice
        }
    }
}

fn assert_alice_with_groups(label: &str, xml: &str) {
    let a = parse(&sp(), xml).unwrap_or_else(|e| panic!("{label}: valid response refused: {e:?}"));
    assert_eq!(name_id(&a).as_deref(), Some("alice"), "{label}");
    assert_eq!(attribute(&a, "groups"), ["analysts", "admins"], "{label}");
    assert_eq!(attribute(&a, "uid"), ["alice"], "{label}");
    assert_eq!(attribute(&a, "mail"), ["alice@example.com"], "{label}");
}

#[test]
fn valid_response_both_signatures() {
    let spec = valid_spec();
    let xml = mint(idp(), &spec);
    assert_eq!(count_elements(&xml, "Signature"), 2);
    assert!(!xml.contains("<ds:DigestValue></ds:DigestValue>"));
    assert!(!xml.contains("<ds:SignatureValue></ds:SignatureValue>"));
    assert!(
        xml.starts_with("<samlp:Response"),
        "no XML declaration, Response root"
    );
    // Response signature sits right after the Response's Issuer, the Assertion's after its own.
    let resp_sig = xml.find("<ds:Signature").unwrap();
    let assertion = xml.find("<saml:Assertion").unwrap();
    assert!(resp_sig < assertion);
    assert!(xml[..resp_sig].ends_with("</saml:Issuer>"));
    assert!(xml[assertion..].contains("</saml:Issuer><ds:Signature"));
    assert!(
        xml.contains(&idp().cert_b64()[..64]),
        "certificate in KeyInfo"
    );
    assert!(xml.contains(mint::ALG_RSA_SHA256) && xml.contains(mint::ALG_SHA256));
    assert!(xml.contains(mint::ALG_EXC_C14N) && xml.contains(mint::ALG_ENVELOPED));
    assert_alice_with_groups("both signed", &xml);

    // And through the base64 entry point the gateway uses.
    let a = sp()
        .parse_base64_response(&b64(&xml), Some(&[REQ_ID]))
        .expect("base64 form parses");
    assert_eq!(name_id(&a).as_deref(), Some("alice"));
}

#[test]
fn valid_response_assertion_only_signed() {
    let mut spec = valid_spec();
    spec.sign_response = false;
    let xml = mint(idp(), &spec);
    assert_eq!(count_elements(&xml, "Signature"), 1);
    assert_alice_with_groups("assertion-only", &xml);
}

#[test]
fn valid_response_response_only_signed() {
    let mut spec = valid_spec();
    spec.sign_assertion = false;
    let xml = mint(idp(), &spec);
    assert_eq!(count_elements(&xml, "Signature"), 1);
    assert_alice_with_groups("response-only", &xml);
}

#[test]
fn spec_fields_reach_the_xml() {
    let mut spec = valid_spec();
    spec.attributes.push(("groups".into(), vec!["dup".into()]));
    spec.attributes.push(("empty".into(), vec![]));
    spec.name_id = "a&b<c>\"'".into();
    spec.status_code = mint::STATUS_RESPONDER.into();
    spec.sub_status_code = Some(mint::STATUS_AUTHN_FAILED.into());
    spec.status_message = Some("nope & <no>".into());
    spec.audience = None;
    spec.authn_statement = false;
    spec.sp_name_qualifier = None;
    let xml = mint(idp(), &spec);
    assert_eq!(count_elements(&xml, "AudienceRestriction"), 0);
    assert_eq!(count_elements(&xml, "AuthnStatement"), 0);
    assert_eq!(count_elements(&xml, "Attribute"), 6);
    assert_eq!(count_elements(&xml, "StatusCode"), 2);
    assert!(xml.contains("nope &amp; &lt;no&gt;"));
    assert!(!xml.contains("SPNameQualifier"));
    assert!(xml.contains(&format!(r#"InResponseTo="{REQ_ID}""#)));
    assert!(xml.contains(&format!(r#"Destination="{ACS}""#)));
    assert!(xml.contains(&format!(r#"Recipient="{ACS}""#)));
    assert_eq!(naive_name_id(&xml).as_deref(), Some("a&b<c>\"'"));
    // Still validly signed: samael refuses only because of the status code.
    assert!(matches!(
        parse(&sp(), &xml),
        Err(samael::service_provider::Error::ResponseBadStatusCode { .. })
    ));

    let mut no_assertion = valid_spec();
    no_assertion.include_assertion = false;
    no_assertion.status_code = mint::STATUS_REQUESTER.into();
    let xml = mint(idp(), &no_assertion);
    assert_eq!(count_elements(&xml, "Assertion"), 0);
    assert_eq!(count_elements(&xml, "Signature"), 1);
}

#[test]
fn ids_are_fresh_and_well_formed() {
    let a = valid_spec();
    let b = valid_spec();
    for id in [
        &a.response_id,
        &a.assertion_id,
        a.session_index.as_ref().unwrap(),
    ] {
        assert_eq!(id.len(), 33);
        assert!(id.starts_with('_'));
        assert!(id[1..]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }
    assert_ne!(a.response_id, b.response_id);
    assert_ne!(a.response_id, a.assertion_id);
    let c = a.with_fresh_ids();
    assert_ne!(a.assertion_id, c.assertion_id);
}

#[test]
fn request_id_and_audience_are_checked_by_samael() {
    // Guards the harness itself: if these passed, the "accepted" results below would
    // mean nothing.
    let xml = mint(idp(), &valid_spec());
    assert!(sp().parse_xml_response(&xml, Some(&["_other"])).is_err());
    let other_sp = ServiceProvider {
        entity_id: Some("https://other.example.test/sp".into()),
        ..sp()
    };
    assert!(parse(&other_sp, &xml).is_err());
}

#[test]
fn metadata_and_key_rollover() {
    let other = TestIdp::generate(IDP_ENTITY);
    let xml = mint(idp(), &valid_spec());

    let md = idp().metadata_xml(IDP_SSO);
    assert!(md.contains(r#"use="signing""#));
    assert!(md.contains(mint::BINDING_REDIRECT));
    let ed: EntityDescriptor = md.parse().unwrap();
    assert_eq!(ed.entity_id.as_deref(), Some(IDP_ENTITY));
    let sp0 = sp();
    assert_eq!(
        sp0.sso_binding_location(mint::BINDING_REDIRECT).as_deref(),
        Some(IDP_SSO)
    );
    assert_eq!(sp0.idp_signing_certs().unwrap().unwrap().len(), 1);

    // Rollover: old and new certificate listed; either key's signature verifies.
    let rollover = idp().metadata_xml_with_certs(IDP_SSO, &[&other.cert_der]);
    let sp2 = sp_with_metadata(&rollover, Some(vec![AllowedSignatureAlgorithm::RsaSha256]));
    assert_eq!(sp2.idp_signing_certs().unwrap().unwrap().len(), 2);
    assert!(parse(&sp2, &xml).is_ok());
    let by_other = mint(&other, &valid_spec());
    assert!(parse(&sp2, &by_other).is_ok());

    // Metadata with only the other certificate: our signature is refused.
    let only_other = idp().metadata_xml_exact_certs(IDP_SSO, &[&other.cert_der]);
    let sp3 = sp_with_metadata(
        &only_other,
        Some(vec![AllowedSignatureAlgorithm::RsaSha256]),
    );
    assert!(parse(&sp3, &xml).is_err());

    // No certificate at all: samael has nothing to verify with (docs/security-model.md gap 1).
    let none = idp().metadata_xml_exact_certs(IDP_SSO, &[]);
    let sp4 = sp_with_metadata(&none, None);
    assert!(sp4.idp_signing_certs().unwrap().is_none());

    // Key material is usable in the other formats too.
    assert!(idp().key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(idp().cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let cert = openssl::x509::X509::from_der(&idp().cert_der).unwrap();
    assert_eq!(
        cert.signature_algorithm().object().nid(),
        openssl::nid::Nid::SHA256WITHRSAENCRYPTION
    );
    let key = openssl::pkey::PKey::private_key_from_pem(idp().key_pem.as_bytes()).unwrap();
    assert_eq!(key.bits(), 2048);
    assert!(cert.public_key().unwrap().public_eq(&key));
}

#[test]
fn strip_signatures_is_refused() {
    let xml = attacks::strip_signatures(&mint(idp(), &valid_spec()));
    assert_eq!(count_elements(&xml, "Signature"), 0);
    assert_eq!(count_elements(&xml, "SignatureValue"), 0);
    assert_eq!(naive_name_id(&xml).as_deref(), Some("alice"));
    assert_eq!(outcome("strip", parse(&sp(), &xml)), Outcome::Rejected);
}

#[test]
fn tamper_name_id_is_refused() {
    for (label, sign_response, sign_assertion) in [
        ("both", true, true),
        ("assertion", false, true),
        ("response", true, false),
    ] {
        let mut spec = valid_spec();
        spec.sign_response = sign_response;
        spec.sign_assertion = sign_assertion;
        let xml = attacks::tamper_name_id(&mint(idp(), &spec), EVIL);
        assert_eq!(naive_name_id(&xml).as_deref(), Some(EVIL), "{label}");
        assert_eq!(
            outcome(label, parse(&sp(), &xml)),
            Outcome::Rejected,
            "{label}"
        );
    }
}

#[test]
fn signed_by_other_key_is_refused() {
    let xml = attacks::signed_by_other_key(&valid_spec());
    assert_eq!(count_elements(&xml, "Signature"), 2);
    assert!(
        !xml.contains(&idp().cert_b64()[..64]),
        "KeyInfo carries the other cert"
    );
    assert_eq!(count_elements(&xml, "X509Certificate"), 2);
    assert_eq!(outcome("other key", parse(&sp(), &xml)), Outcome::Rejected);
}

#[test]
fn sha1_signed_is_valid_but_refused_by_the_allowlist() {
    let xml = attacks::sha1_signed(idp(), &valid_spec());
    assert!(xml.contains(mint::ALG_RSA_SHA1) && xml.contains(mint::ALG_SHA1));
    assert!(!xml.contains(mint::ALG_RSA_SHA256) && !xml.contains(mint::ALG_SHA256));
    assert_eq!(outcome("sha1", parse(&sp(), &xml)), Outcome::Rejected);
    // Proof that it is a genuinely valid signature: without an allowlist samael takes it.
    let lax = sp_with_metadata(&idp().metadata_xml(IDP_SSO), None);
    let a = parse(&lax, &xml).expect("sha1 signature is valid");
    assert_eq!(name_id(&a).as_deref(), Some("alice"));

    let mut spec = valid_spec();
    spec.signature_algorithm = SigAlg::RsaSha1;
    spec.sign_response = false;
    let xml = mint(idp(), &spec);
    assert_eq!(
        outcome("sha1 assertion-only", parse(&sp(), &xml)),
        Outcome::Rejected
    );
}

/// What samael 0.0.22 (libxmlsec1 1.2.37) does with each XSW variant. Rejected =
/// error; AcceptedAlice = returns the signed original's identity, the evil copy dropped.
const XSW_EXPECTED: [(&str, Outcome); 8] = [
    ("XSW1", Outcome::Rejected),
    ("XSW2", Outcome::AcceptedAlice),
    ("XSW3", Outcome::AcceptedAlice),
    ("XSW4", Outcome::AcceptedAlice),
    ("XSW5", Outcome::AcceptedAlice),
    ("XSW6", Outcome::Rejected),
    ("XSW7", Outcome::AcceptedAlice),
    ("XSW8", Outcome::Rejected),
];

#[test]
fn xsw_variants_never_yield_the_evil_identity() {
    let variants = attacks::xsw_variants(idp(), &valid_spec(), EVIL);
    assert_eq!(
        variants.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        ["XSW1", "XSW2", "XSW3", "XSW4", "XSW5", "XSW6", "XSW7", "XSW8"]
    );
    let sp = sp();
    let mut seen = Vec::new();
    for (label, xml) in &variants {
        // The attack is real: a naive reader of /Response/Assertion/Subject/NameID gets
        // the evil identity, and the signed original is still in the document.
        assert_eq!(naive_name_id(xml).as_deref(), Some(EVIL), "{label}");
        assert!(
            xml.contains(">alice</saml:NameID>"),
            "{label}: signed original kept"
        );
        assert!(xml.contains("<ds:SignatureValue>"), "{label}");
        let o = outcome(label, parse(&sp, xml));
        eprintln!("{label}: {o:?}");
        seen.push((*label, o));
    }
    assert_eq!(seen, XSW_EXPECTED);
}

#[test]
fn comment_injection_never_yields_the_truncated_identity() {
    for (label, sign_response, sign_assertion) in [
        ("both", true, true),
        ("assertion", false, true),
        ("response", true, false),
    ] {
        let mut spec = valid_spec();
        spec.sign_response = sign_response;
        spec.sign_assertion = sign_assertion;
        let xml = attacks::comment_injection(idp(), &spec);
        assert!(
            xml.contains(">alice<!---->.evil.com</saml:NameID>"),
            "{label}"
        );
        assert_eq!(
            naive_name_id(&xml).as_deref(),
            Some("alice"),
            "{label}: naive truncation"
        );
        match parse(&sp(), &xml) {
            Err(_) => {}
            Ok(a) => assert_ne!(name_id(&a).as_deref(), Some("alice"), "{label}"),
        }
        // samael fails closed (docs/security-model.md): pinned so a change is noticed.
        assert!(
            parse(&sp(), &xml).is_err(),
            "{label}: samael now accepts comment injection"
        );
    }
}

#[test]
fn extra_root_is_not_read_past_the_first_root() {
    let xml = attacks::extra_root(&mint(idp(), &valid_spec()));
    assert!(xml.ends_with("</saml:Assertion>"));
    assert!(xml.contains(attacks::EXTRA_ROOT_NAME_ID));
    assert!(xml.find("</samlp:Response>").unwrap() < xml.rfind("<saml:Assertion").unwrap());
    // samael (libxml2 recover mode) keeps the first root: docs/security-model.md gap 4.
    assert_eq!(
        outcome("extra root", parse(&sp(), &xml)),
        Outcome::AcceptedAlice
    );
}

// ---- payloads for the gateway's pre-filter: shape only, never fed to samael here ----

#[test]
fn doctype_xxe_entity_pi_payloads_have_their_markup() {
    let signed = mint(idp(), &valid_spec());

    let d = attacks::prepend_doctype(&signed);
    assert!(d.starts_with("<!DOCTYPE samlp:Response>\n<samlp:Response"));
    assert!(d.ends_with(&signed));
    let with_decl = attacks::prepend_doctype(&format!("<?xml version=\"1.0\"?>\n{signed}"));
    assert!(with_decl
        .starts_with("<?xml version=\"1.0\"?>\n<!DOCTYPE samlp:Response>\n<samlp:Response"));

    let x = attacks::xxe(&signed);
    assert!(
        x.starts_with(r#"<!DOCTYPE samlp:Response [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>"#)
    );
    assert!(x.contains(">&xxe;</saml:NameID>"));
    assert_eq!(naive_name_id(&x).as_deref(), Some("&xxe;"));

    let e = attacks::entity_expansion(&signed, 9);
    assert!(e.contains(r#"<!ENTITY lol0 "lol">"#) && e.contains("<!ENTITY lol9 "));
    assert!(e.contains(">&lol9;</saml:NameID>"));

    let p = attacks::processing_instruction(&signed);
    assert!(p.starts_with("<?xml-stylesheet "));
    assert!(p.ends_with(&signed));
    let p = attacks::processing_instruction_inside(&signed);
    assert!(p.contains("</saml:Issuer><?samlgate-test evil?><ds:Signature"));
}

#[test]
fn xslt_payload_shape() {
    let spec = valid_spec();
    let x = attacks::xslt_transform(idp(), &spec, 20);
    assert!(x.len() < 1800, "compact payload, got {} bytes", x.len());
    assert!(x.contains(&format!(r#"<ds:Transform Algorithm="{}">"#, mint::ALG_XSLT)));
    assert!(x.contains(r#"<xsl:with-param name="d" select="20"/>"#));
    assert!(x.contains(&format!(r##"<ds:Reference URI="#{}">"##, spec.response_id)));
    assert!(x.contains(mint::ALG_RSA_SHA256) && x.contains(mint::ALG_SHA256));
    assert!(x.starts_with("<samlp:Response") && x.ends_with("</samlp:Response>"));
    assert_eq!(naive_name_id(&x).as_deref(), Some("alice"));
    let (s, e) = find_element(&x, "stylesheet", 0).unwrap();
    assert!(x[s..e].ends_with("</xsl:stylesheet>"));
    // Well-formed: openssl-free check by the scanner: one root spanning the document.
    assert_eq!(mint::xml::element_end(&x, 0), Some(x.len()));
}

#[test]
fn external_and_manifest_reference_payload_shape() {
    let signed = mint(idp(), &valid_spec());
    let url = "http://127.0.0.1:9/probe?a=1&b=2";

    let r = attacks::external_reference(&signed, url);
    assert!(r.contains(r#"<ds:Reference URI="http://127.0.0.1:9/probe?a=1&amp;b=2">"#));
    // First Reference of the first SignedInfo, before the legitimate "#id" one.
    let first_ref = r.find("<ds:Reference ").unwrap();
    assert!(r[first_ref..].starts_with(r#"<ds:Reference URI="http://"#));
    assert_eq!(count_elements(&r, "Reference"), 3);

    let m = attacks::manifest_reference(&signed, url);
    let (o, oe) = find_element(&m, "Object", 0).unwrap();
    assert!(m[o..oe].contains("<ds:Manifest Id=\"_"));
    assert!(m[o..oe].contains(r#"<ds:Reference URI="http://127.0.0.1:9/probe?a=1&amp;b=2">"#));
    let (s, se) = find_element(&m, "Signature", 0).unwrap();
    assert!(s < o && oe < se, "Object inside the first Signature");

    let f = attacks::external_reference(&signed, "file:///etc/passwd");
    assert!(f.contains(r#"URI="file:///etc/passwd""#));

    let rm = attacks::retrieval_method(&signed, url);
    assert!(rm.contains("<ds:KeyInfo><ds:RetrievalMethod URI=\"http://127.0.0.1:9/probe"));
}
