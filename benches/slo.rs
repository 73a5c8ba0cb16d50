//! Cost of authenticating one Single Logout message from the IdP, per binding:
//!
//! - `slo/post_screen`: the HTTP-POST form parsed, base64 decoded and the logout message
//!   pre-filtered (async-worker side, before any libxmlsec1 work);
//! - `slo/post_verify`: its enveloped XML signature verified by libxmlsec1 with the IdP's
//!   certificate, the signed bytes parsed (blocking-pool side);
//! - `slo/redirect`: the HTTP-Redirect query parsed, inflated, parsed and its query
//!   signature verified (openssl), for comparison.
//!
//! The message is a LogoutRequest as SimpleSAMLphp sends it: Issuer, NameID, SessionIndex,
//! an rsa-sha256 signature after the Issuer with the certificate in KeyInfo.
//!
//! Run: `cargo bench --bench slo`.

#[path = "../tests/support/mint.rs"]
mod mint;
#[path = "../tests/support/verifier.rs"]
mod support_verifier;

use std::hint::black_box;

use chrono::Utc;
use criterion::Criterion;
use mint::TestIdp;
use samlgate::saml::logout::{self, LogoutRequestSpec};
use samlgate::saml::prefilter::{prefilter_root, Root};

const IDP_ENTITY: &str = "https://idp.bench.example/metadata";
const IDP_SSO: &str = "https://idp.bench.example/sso";
const PUBLIC_URL: &str = "https://app.bench.example";

/// The LogoutRequest with an empty signature template after its Issuer.
fn unsigned_with_template(idp: &TestIdp, id: &str) -> String {
    let xml = logout::logout_request_xml(&LogoutRequestSpec {
        id,
        issue_instant: Utc::now(),
        destination: &format!("{PUBLIC_URL}/saml/slo"),
        issuer: IDP_ENTITY,
        name_id: "alice@example.com",
        name_id_format: Some("urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"),
        session_index: Some("_be9967abd904ddcae3c0eb4189adbe3f71e327cf93"),
    });
    let template = format!(
        r##"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><ds:Reference URI="#{id}"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue></ds:SignatureValue><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>"##,
        idp.cert_b64()
    );
    xml.replacen("</saml:Issuer>", &format!("</saml:Issuer>{template}"), 1)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let idp = TestIdp::generate(IDP_ENTITY);
    let verifier = support_verifier::verifier(&idp.metadata_xml(IDP_SSO), PUBLIC_URL, dir.path());
    let id = mint::new_id();
    let signed = mint::sign_first_template(&idp, &unsigned_with_template(&idp, &id));
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("SAMLRequest", &mint::b64(&signed))
        .append_pair("RelayState", "_3f2b6c0e9a")
        .finish();
    let policy = logout::prefilter_policy(&verifier.prefilter);
    let screen = |body: &[u8]| {
        let m = logout::parse_post_form(body).expect("form parses");
        let facts =
            prefilter_root(m.xml.as_bytes(), &policy, Root::LogoutRequest).expect("pre-filter");
        assert!(facts.response_signed);
        m.xml
    };
    let xml = screen(body.as_bytes());
    let verify = |xml: &str| {
        let signed = verifier.verify_logout_signature(xml).expect("signature");
        logout::parse_logout_request(&signed).expect("parses")
    };
    assert_eq!(verify(&xml).id, id);
    println!(
        "slo: LogoutRequest {} bytes XML, POST body {} bytes",
        xml.len(),
        body.len()
    );

    // The same message by Redirect, signed over the query octets with the same key.
    let plain = logout::logout_request_xml(&LogoutRequestSpec {
        id: &id,
        issue_instant: Utc::now(),
        destination: &format!("{PUBLIC_URL}/saml/slo"),
        issuer: IDP_ENTITY,
        name_id: "alice@example.com",
        name_id_format: Some("urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"),
        session_index: Some("_be9967abd904ddcae3c0eb4189adbe3f71e327cf93"),
    });
    let key = samlgate::saml::decrypt::DecryptionKey::from_pem(idp.key_pem.as_bytes()).unwrap();
    let url = samlgate::saml::authn::redirect_message_url(
        &format!("{PUBLIC_URL}/saml/slo"),
        "SAMLRequest",
        &plain,
        Some("_3f2b6c0e9a"),
        Some(&key),
    )
    .unwrap();
    let query = url::Url::parse(&url).unwrap().query().unwrap().to_string();
    let cert = openssl::x509::X509::from_der(&idp.cert_der).unwrap();
    let redirect = |q: &str| {
        let m = logout::parse_redirect_query(q).expect("query parses");
        let xml = logout::decode_redirect_param(&m.message).expect("inflates");
        let lr = logout::parse_logout_request(&xml).expect("parses");
        assert!(m.signature_valid(std::slice::from_ref(&cert)));
        lr
    };
    assert_eq!(redirect(&query).id, id);

    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("slo");
    g.bench_function("post_screen", |b| {
        b.iter(|| screen(black_box(body.as_bytes())))
    });
    g.bench_function("post_verify", |b| b.iter(|| verify(black_box(&xml))));
    g.bench_function("redirect", |b| b.iter(|| redirect(black_box(&query))));
    g.finish();
    c.final_summary();
}
