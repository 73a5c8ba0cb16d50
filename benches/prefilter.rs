//! Pre-filter cost on a realistic signed response and on the payloads it exists to stop.
//!
//! Targets: ≤ 50 µs for `accept_10k`; ≤ 1 ms (in practice microseconds) for the refusals.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use samlgate::saml::prefilter::{prefilter, PrefilterError, PrefilterPolicy};

const RESPONSE_ID: &str = "_8e8dc5f69a98cc4c1ff3427e5ce34606fd672f91e6";
const ASSERTION_ID: &str = "_d71a3a8e9fcc45c9e9d248ef7049393fc8f04e5f75";
const ENVELOPED: &str =
    r#"<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>"#;

/// Deterministic base64-alphabet filler standing in for digests, signatures, certificates.
fn filler(len: usize, seed: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    (0..len)
        .map(|i| ALPHABET[(i * 31 + seed * 7 + i / 3) % 64] as char)
        .collect()
}

fn signature(id: &str) -> String {
    format!(
        r##"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
  <ds:SignedInfo>
    <ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
    <ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>
    <ds:Reference URI="#{id}">
      <ds:Transforms>
        <ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
        <ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
      </ds:Transforms>
      <ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
      <ds:DigestValue>{digest}=</ds:DigestValue>
    </ds:Reference>
  </ds:SignedInfo>
  <ds:SignatureValue>{value}==</ds:SignatureValue>
  <ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>
</ds:Signature>"##,
        digest = filler(43, 1),
        value = filler(342, 2),
        cert = filler(1200, 3),
    )
}

/// A SimpleSAMLphp-shaped response: both signatures, persistent NameID, bearer confirmation,
/// audience restriction, AuthnStatement, and an AttributeStatement with 40 group values.
fn realistic_response() -> String {
    let acs = "https://app.example.test/saml/acs";
    let sp = "https://app.example.test/saml/metadata";
    let idp = "http://127.0.0.1:8180/saml2/idp/metadata.php";
    let request = "id-5f0e3a6c2b9d4e8f9a1b7c3d5e7f9a1b";
    let groups: String = (0..40)
        .map(|g| {
            format!(
                r#"<saml:AttributeValue xsi:type="xs:string">team-{g:02}-engineering</saml:AttributeValue>"#
            )
        })
        .collect();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{RESPONSE_ID}" Version="2.0" IssueInstant="2024-05-01T10:00:00Z" Destination="{acs}" InResponseTo="{request}">
  <saml:Issuer>{idp}</saml:Issuer>
  {response_sig}
  <samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>
  <saml:Assertion xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xs="http://www.w3.org/2001/XMLSchema" ID="{ASSERTION_ID}" Version="2.0" IssueInstant="2024-05-01T10:00:00Z">
    <saml:Issuer>{idp}</saml:Issuer>
    {assertion_sig}
    <saml:Subject>
      <saml:NameID SPNameQualifier="{sp}" Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">_2b5c7e9f1a3d5c7e9b1d3f5a7c9e1b3d5f7a9c1e</saml:NameID>
      <saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">
        <saml:SubjectConfirmationData NotOnOrAfter="2024-05-01T10:05:00Z" Recipient="{acs}" InResponseTo="{request}"/>
      </saml:SubjectConfirmation>
    </saml:Subject>
    <saml:Conditions NotBefore="2024-05-01T09:59:30Z" NotOnOrAfter="2024-05-01T10:05:00Z">
      <saml:AudienceRestriction>
        <saml:Audience>{sp}</saml:Audience>
      </saml:AudienceRestriction>
    </saml:Conditions>
    <saml:AuthnStatement AuthnInstant="2024-05-01T10:00:00Z" SessionNotOnOrAfter="2024-05-01T18:00:00Z" SessionIndex="_6a1c3e5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f">
      <saml:AuthnContext>
        <saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:Password</saml:AuthnContextClassRef>
      </saml:AuthnContext>
    </saml:AuthnStatement>
    <saml:AttributeStatement>
      <saml:Attribute Name="uid" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic"><saml:AttributeValue xsi:type="xs:string">alice</saml:AttributeValue></saml:Attribute>
      <saml:Attribute Name="mail" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic"><saml:AttributeValue xsi:type="xs:string">alice@example.test</saml:AttributeValue></saml:Attribute>
      <saml:Attribute Name="displayName" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic"><saml:AttributeValue xsi:type="xs:string">Alice Example</saml:AttributeValue></saml:Attribute>
      <saml:Attribute Name="groups" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic">{groups}</saml:Attribute>
    </saml:AttributeStatement>
  </saml:Assertion>
</samlp:Response>
"#,
        response_sig = signature(RESPONSE_ID),
        assertion_sig = signature(ASSERTION_ID),
    )
}

/// The docs/security-model.md gap 2 probe shape: a recursive XSLT in the Response signature.
fn xslt_payload(base: &str) -> String {
    let xslt = r#"<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116"><xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="1.0"><xsl:template name="r"><xsl:param name="d" select="0"/><xsl:if test="$d &lt; 20"><xsl:call-template name="r"><xsl:with-param name="d" select="$d + 1"/></xsl:call-template><xsl:call-template name="r"><xsl:with-param name="d" select="$d + 1"/></xsl:call-template></xsl:if></xsl:template><xsl:template match="/"><xsl:call-template name="r"/></xsl:template></xsl:stylesheet></ds:Transform>"#;
    base.replacen(ENVELOPED, xslt, 1)
}

fn external_uri_payload(base: &str) -> String {
    base.replacen(
        &format!(r##"<ds:Reference URI="#{RESPONSE_ID}">"##),
        r#"<ds:Reference URI="http://127.0.0.1:1/x">"#,
        1,
    )
}

fn doctype_payload(base: &str) -> String {
    base.replacen(
        "<samlp:Response ",
        "<!DOCTYPE r [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n<samlp:Response ",
        1,
    )
}

fn bench(c: &mut Criterion) {
    let policy = PrefilterPolicy::default();
    let accept = realistic_response();
    let xslt = xslt_payload(&accept);
    let external = external_uri_payload(&accept);
    let doctype = doctype_payload(&accept);

    // Guard the inputs: a bench that measures the wrong path is worse than none.
    assert!(
        (9_000..=12_000).contains(&accept.len()),
        "sample is {} bytes",
        accept.len()
    );
    prefilter(accept.as_bytes(), &policy).expect("realistic sample must pass");
    assert!(matches!(
        prefilter(xslt.as_bytes(), &policy),
        Err(PrefilterError::TransformNotAllowed(_))
    ));
    assert!(matches!(
        prefilter(external.as_bytes(), &policy),
        Err(PrefilterError::ReferenceUriNotAllowed(_))
    ));
    assert_eq!(
        prefilter(doctype.as_bytes(), &policy),
        Err(PrefilterError::Doctype)
    );

    let mut group = c.benchmark_group("prefilter");
    group.bench_function("accept_10k", |b| {
        b.iter(|| prefilter(black_box(accept.as_bytes()), black_box(&policy)))
    });
    group.bench_function("reject_xslt", |b| {
        b.iter(|| prefilter(black_box(xslt.as_bytes()), black_box(&policy)))
    });
    group.bench_function("reject_external_uri", |b| {
        b.iter(|| prefilter(black_box(external.as_bytes()), black_box(&policy)))
    });
    group.bench_function("reject_doctype", |b| {
        b.iter(|| prefilter(black_box(doctype.as_bytes()), black_box(&policy)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
