//! Test support: mint signed SAML 2.0 Responses in-process with a freshly generated
//! test key, and build the malicious variants the gateway must refuse.
//!
//! Include from an integration test with
//! `#[path = "support/mint.rs"] mod mint;` (or through `tests/support/mod.rs`).
//!
//! The layout imitates what SimpleSAMLphp emits (tests/support/simplesamlphp.rs runs it): a
//! `samlp:Response` with its enveloped signature right after its `saml:Issuer`, an
//! `saml:Assertion` with its own enveloped signature right after its `saml:Issuer`,
//! exclusive c14n, rsa-sha256, sha256 digests and the certificate in `KeyInfo`.
//!
//! Signing goes through samael's own `Crypto::sign_xml` (libxmlsec1): the assertion is
//! signed as a document of its own first, its text is then embedded into the Response,
//! and the Response's signature template (the first `ds:Signature` in document order)
//! is signed last.
//!
//! Dependencies: `samael` (xmlsec), `openssl`, `base64`, `chrono`. Randomness comes from
//! `openssl::rand`, so no `rand`/`ring` is needed.
#![allow(dead_code)]

use base64::Engine as _;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use samael::crypto::{Crypto, CryptoProvider};

pub const NS_SAMLP: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
pub const NS_SAML: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
pub const NS_MD: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
pub const NS_DS: &str = "http://www.w3.org/2000/09/xmldsig#";
pub const NS_XS: &str = "http://www.w3.org/2001/XMLSchema";
pub const NS_XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

pub const ALG_EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
pub const ALG_ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
pub const ALG_XSLT: &str = "http://www.w3.org/TR/1999/REC-xslt-19991116";
pub const ALG_RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
pub const ALG_RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
pub const ALG_SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
pub const ALG_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";

pub const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
pub const STATUS_REQUESTER: &str = "urn:oasis:names:tc:SAML:2.0:status:Requester";
pub const STATUS_RESPONDER: &str = "urn:oasis:names:tc:SAML:2.0:status:Responder";
pub const STATUS_AUTHN_FAILED: &str = "urn:oasis:names:tc:SAML:2.0:status:AuthnFailed";

pub const NAMEID_PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";
pub const NAMEID_TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";
pub const NAMEID_EMAIL: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
pub const NAMEID_UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";

pub const ATTRNAME_BASIC: &str = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic";
pub const CM_BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
pub const AC_PASSWORD: &str = "urn:oasis:names:tc:SAML:2.0:ac:classes:Password";
pub const BINDING_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
pub const BINDING_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";

/// A fresh IdP identity: RSA-2048 key and a self-signed sha256 certificate.
pub struct TestIdp {
    pub entity_id: String,
    /// PKCS#1 `RSAPrivateKey` DER (what samael's own IdP code passes to `sign_xml`).
    pub key_der: Vec<u8>,
    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub key_pem: String,
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
}

impl TestIdp {
    /// RSA 2048, self-signed X.509 v3 certificate (sha256WithRSAEncryption), valid from
    /// one day ago for ten years.
    pub fn generate(entity_id: &str) -> TestIdp {
        use openssl::asn1::{Asn1Integer, Asn1Time};
        use openssl::bn::BigNum;
        use openssl::hash::MessageDigest;
        use openssl::pkey::PKey;
        use openssl::rsa::Rsa;
        use openssl::x509::extension::{BasicConstraints, KeyUsage};
        use openssl::x509::{X509NameBuilder, X509};

        let rsa = Rsa::generate(2048).expect("RSA key generation");
        let key_der = rsa.private_key_to_der().expect("PKCS#1 DER");
        let pkey = PKey::from_rsa(rsa).expect("PKey");
        let key_pem = String::from_utf8(pkey.private_key_to_pem_pkcs8().expect("PKCS#8 PEM"))
            .expect("PEM is ASCII");

        let mut name = X509NameBuilder::new().expect("name builder");
        name.append_entry_by_text("CN", "samlgate test IdP")
            .expect("CN");
        name.append_entry_by_text("O", "samlgate tests").expect("O");
        let name = name.build();

        let serial = BigNum::from_slice(&random_bytes(16)).expect("serial");
        let serial = Asn1Integer::from_bn(&serial).expect("serial");
        let now = Utc::now().timestamp();
        let mut builder = X509::builder().expect("X509 builder");
        builder.set_version(2).expect("v3");
        builder.set_serial_number(&serial).expect("serial");
        builder.set_subject_name(&name).expect("subject");
        builder.set_issuer_name(&name).expect("issuer");
        builder.set_pubkey(&pkey).expect("pubkey");
        builder
            .set_not_before(&Asn1Time::from_unix(now - 86_400).expect("time"))
            .expect("not before");
        builder
            .set_not_after(&Asn1Time::days_from_now(3650).expect("time"))
            .expect("not after");
        builder
            .append_extension(BasicConstraints::new().critical().build().expect("bc"))
            .expect("bc");
        builder
            .append_extension(
                KeyUsage::new()
                    .critical()
                    .digital_signature()
                    .build()
                    .expect("ku"),
            )
            .expect("ku");
        builder
            .sign(&pkey, MessageDigest::sha256())
            .expect("self-sign");
        let cert = builder.build();

        TestIdp {
            entity_id: entity_id.to_string(),
            key_der,
            key_pem,
            cert_der: cert.to_der().expect("cert DER"),
            cert_pem: String::from_utf8(cert.to_pem().expect("cert PEM")).expect("ASCII"),
        }
    }

    /// The certificate as it appears in `ds:X509Certificate` (single-line base64).
    pub fn cert_b64(&self) -> String {
        cert_b64(&self.cert_der)
    }

    /// `md:EntityDescriptor` with one `IDPSSODescriptor`: a `KeyDescriptor use="signing"`
    /// carrying this IdP's certificate and an HTTP-Redirect `SingleSignOnService`.
    pub fn metadata_xml(&self, sso_redirect_url: &str) -> String {
        self.metadata_xml_with_certs(sso_redirect_url, &[])
    }

    /// Like [`TestIdp::metadata_xml`] but with several signing certificates (key
    /// rollover): this IdP's own certificate first, then each of `extra_cert_ders`, each
    /// in a `KeyDescriptor use="signing"` of its own.
    pub fn metadata_xml_with_certs(
        &self,
        sso_redirect_url: &str,
        extra_cert_ders: &[&[u8]],
    ) -> String {
        let mut certs: Vec<&[u8]> = vec![&self.cert_der];
        certs.extend_from_slice(extra_cert_ders);
        metadata_with_exact_certs(&self.entity_id, sso_redirect_url, &certs)
    }

    /// Metadata listing only `cert_ders` (possibly none, possibly not including this
    /// IdP's own certificate) — for "no signing cert" / "wrong cert" start-up tests.
    pub fn metadata_xml_exact_certs(&self, sso_redirect_url: &str, cert_ders: &[&[u8]]) -> String {
        metadata_with_exact_certs(&self.entity_id, sso_redirect_url, cert_ders)
    }
}

fn metadata_with_exact_certs(
    entity_id: &str,
    sso_redirect_url: &str,
    cert_ders: &[&[u8]],
) -> String {
    let mut key_descriptors = String::new();
    for der in cert_ders {
        key_descriptors.push_str(&format!(
            r#"<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#,
            cert_b64(der)
        ));
    }
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            "\n",
            r#"<md:EntityDescriptor xmlns:md="{md}" xmlns:ds="{ds}" entityID="{entity}">"#,
            r#"<md:IDPSSODescriptor protocolSupportEnumeration="{samlp}" WantAuthnRequestsSigned="false">"#,
            "{kds}",
            r#"<md:NameIDFormat>{persistent}</md:NameIDFormat>"#,
            r#"<md:NameIDFormat>{transient}</md:NameIDFormat>"#,
            r#"<md:SingleSignOnService Binding="{redirect}" Location="{sso}"/>"#,
            r#"</md:IDPSSODescriptor>"#,
            r#"</md:EntityDescriptor>"#,
            "\n"
        ),
        md = NS_MD,
        ds = NS_DS,
        entity = xml_escape(entity_id),
        samlp = NS_SAMLP,
        kds = key_descriptors,
        persistent = NAMEID_PERSISTENT,
        transient = NAMEID_TRANSIENT,
        redirect = BINDING_REDIRECT,
        sso = xml_escape(sso_redirect_url),
    )
}

/// Signature algorithm for minted signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SigAlg {
    /// rsa-sha256 SignatureMethod, sha256 DigestMethod.
    #[default]
    RsaSha256,
    /// rsa-sha1 SignatureMethod, sha1 DigestMethod (downgrade tests).
    RsaSha1,
}

impl SigAlg {
    pub fn signature_uri(self) -> &'static str {
        match self {
            SigAlg::RsaSha256 => ALG_RSA_SHA256,
            SigAlg::RsaSha1 => ALG_RSA_SHA1,
        }
    }
    pub fn digest_uri(self) -> &'static str {
        match self {
            SigAlg::RsaSha256 => ALG_SHA256,
            SigAlg::RsaSha1 => ALG_SHA1,
        }
    }
}

/// Everything that goes into a minted Response. Start from [`ResponseSpec::valid`] and
/// change fields.
#[derive(Clone, Debug)]
pub struct ResponseSpec {
    pub response_id: String,
    pub assertion_id: String,
    /// Issuer of both the Response and the Assertion.
    pub issuer: String,
    /// Response `Destination` attribute; `None` leaves it out.
    pub destination: Option<String>,
    /// Response `InResponseTo` attribute; `None` leaves it out.
    pub in_response_to: Option<String>,
    pub status_code: String,
    /// Nested second-level `StatusCode`.
    pub sub_status_code: Option<String>,
    pub status_message: Option<String>,
    /// NameID text (XML-escaped on output; may be empty).
    pub name_id: String,
    /// NameID `Format`; empty leaves the attribute out.
    pub name_id_format: String,
    pub sp_name_qualifier: Option<String>,
    /// `SubjectConfirmationData/@Recipient`.
    pub recipient: String,
    /// `SubjectConfirmationData/@InResponseTo`; `None` leaves it out.
    pub subject_in_response_to: Option<String>,
    /// `None` = no `AudienceRestriction` at all.
    pub audience: Option<String>,
    /// IssueInstant of Response and Assertion, AuthnInstant.
    pub issue_instant: DateTime<Utc>,
    /// `Conditions/@NotBefore`.
    pub not_before: DateTime<Utc>,
    /// `Conditions/@NotOnOrAfter`.
    pub not_on_or_after: DateTime<Utc>,
    /// `SubjectConfirmationData/@NotOnOrAfter`.
    pub subject_not_on_or_after: DateTime<Utc>,
    pub authn_statement: bool,
    /// `AuthnStatement/AuthnContext/AuthnContextClassRef` text (XML-escaped on output);
    /// defaults to [`AC_PASSWORD`].
    pub authn_context_class_ref: String,
    pub session_index: Option<String>,
    pub session_not_on_or_after: Option<DateTime<Utc>>,
    /// `(Name, values)`: NameFormat basic, one `AttributeValue xsi:type="xs:string"` per
    /// value, order kept; duplicate names allowed; no values = empty `Attribute`.
    /// An empty list leaves the `AttributeStatement` out.
    pub attributes: Vec<(String, Vec<String>)>,
    pub sign_response: bool,
    pub sign_assertion: bool,
    pub signature_algorithm: SigAlg,
    /// `false` = a Response without any Assertion (e.g. an error status response).
    pub include_assertion: bool,
}

impl ResponseSpec {
    /// A valid response for this SP: fresh random ids (`_` + 32 hex), now-30s..now+5min,
    /// audience = `sp_entity_id`, recipient = destination = `acs_url`, status Success,
    /// persistent NameID "alice" with SPNameQualifier = `sp_entity_id`, AuthnStatement
    /// with SessionIndex and SessionNotOnOrAfter now+8h, attributes uid / mail /
    /// displayName / groups (analysts, admins), both signatures on, rsa-sha256.
    pub fn valid(
        idp: &TestIdp,
        sp_entity_id: &str,
        acs_url: &str,
        in_response_to: Option<&str>,
    ) -> Self {
        let now = Utc::now();
        ResponseSpec {
            response_id: new_id(),
            assertion_id: new_id(),
            issuer: idp.entity_id.clone(),
            destination: Some(acs_url.to_string()),
            in_response_to: in_response_to.map(str::to_string),
            status_code: STATUS_SUCCESS.to_string(),
            sub_status_code: None,
            status_message: None,
            name_id: "alice".to_string(),
            name_id_format: NAMEID_PERSISTENT.to_string(),
            sp_name_qualifier: Some(sp_entity_id.to_string()),
            recipient: acs_url.to_string(),
            subject_in_response_to: in_response_to.map(str::to_string),
            audience: Some(sp_entity_id.to_string()),
            issue_instant: now,
            not_before: now - Duration::seconds(30),
            not_on_or_after: now + Duration::minutes(5),
            subject_not_on_or_after: now + Duration::minutes(5),
            authn_statement: true,
            authn_context_class_ref: AC_PASSWORD.to_string(),
            session_index: Some(new_id()),
            session_not_on_or_after: Some(now + Duration::hours(8)),
            attributes: vec![
                ("uid".to_string(), vec!["alice".to_string()]),
                ("mail".to_string(), vec!["alice@example.com".to_string()]),
                ("displayName".to_string(), vec!["Alice Example".to_string()]),
                (
                    "groups".to_string(),
                    vec!["analysts".to_string(), "admins".to_string()],
                ),
            ],
            sign_response: true,
            sign_assertion: true,
            signature_algorithm: SigAlg::RsaSha256,
            include_assertion: true,
        }
    }

    /// Same spec with fresh response/assertion/session ids (for replay-free re-minting).
    pub fn with_fresh_ids(&self) -> Self {
        let mut s = self.clone();
        s.response_id = new_id();
        s.assertion_id = new_id();
        if s.session_index.is_some() {
            s.session_index = Some(new_id());
        }
        s
    }

    /// Same spec with the attributes a directory-backed IdP sends: givenName, sn,
    /// eduPersonPrincipalName besides the usual ones, and `groups` LDAP-style group DNs
    /// (`cn=app-NN-users,ou=groups,dc=example,dc=com`, `groups` of them).
    pub fn with_directory_attributes(mut self, groups: usize) -> Self {
        let groups = (1..=groups)
            .map(|i| format!("cn=app-{i:02}-users,ou=groups,dc=example,dc=com"))
            .collect();
        self.attributes.retain(|(name, _)| name != "groups");
        self.attributes.extend([
            ("givenName".to_string(), vec!["Alice".to_string()]),
            ("sn".to_string(), vec!["Example".to_string()]),
            (
                "eduPersonPrincipalName".to_string(),
                vec!["alice@example.com".to_string()],
            ),
            ("groups".to_string(), groups),
        ]);
        self
    }
}

/// `_` followed by 32 lowercase hex digits (128 random bits).
pub fn new_id() -> String {
    let mut s = String::with_capacity(33);
    s.push('_');
    for b in random_bytes(16) {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    openssl::rand::rand_bytes(&mut buf).expect("random bytes");
    buf
}

/// Mint the Response XML text (no XML declaration), signed as `spec` asks.
pub fn mint(idp: &TestIdp, spec: &ResponseSpec) -> String {
    let assertion = if spec.include_assertion {
        let unsigned = assertion_xml(idp, spec, spec.sign_assertion);
        if spec.sign_assertion {
            sign(&unsigned, &idp.key_der)
        } else {
            unsigned
        }
    } else {
        String::new()
    };
    let response = response_xml(idp, spec, &assertion, spec.sign_response);
    if spec.sign_response {
        sign(&response, &idp.key_der)
    } else {
        response
    }
}

/// Like [`mint`], but the Response signature's `ds:Reference` has `URI=""` (the whole
/// document, as some IdPs sign) instead of `#<Response ID>`; the Assertion is signed as
/// `spec.sign_assertion` says. The Response is always signed.
pub fn mint_whole_document_signed(idp: &TestIdp, spec: &ResponseSpec) -> String {
    let assertion = if spec.include_assertion {
        assertion_text(idp, spec)
    } else {
        String::new()
    };
    let template = response_xml(idp, spec, &assertion, true);
    let by_id = format!(r##"URI="#{}""##, xml_escape(&spec.response_id));
    assert!(
        template.contains(&by_id),
        "response template references its ID"
    );
    sign(&template.replacen(&by_id, r#"URI="""#, 1), &idp.key_der)
}

/// `mint` then [`b64`].
pub fn mint_b64(idp: &TestIdp, spec: &ResponseSpec) -> String {
    b64(&mint(idp, spec))
}

/// The Assertion text exactly as [`mint`] embeds it: signed as a document of its own when
/// `spec.sign_assertion` (namespaces declared on the Assertion, so it stands alone).
pub fn assertion_text(idp: &TestIdp, spec: &ResponseSpec) -> String {
    let unsigned = assertion_xml(idp, spec, spec.sign_assertion);
    if spec.sign_assertion {
        sign(&unsigned, &idp.key_der)
    } else {
        unsigned
    }
}

/// The `samlp:Response` of `spec` around `inner` (inserted verbatim where the Assertion goes,
/// e.g. an `EncryptedAssertion`), signed when `spec.sign_response`: the signature covers
/// `inner` as written.
pub fn response_around(idp: &TestIdp, spec: &ResponseSpec, inner: &str) -> String {
    let response = response_xml(idp, spec, inner, spec.sign_response);
    if spec.sign_response {
        sign(&response, &idp.key_der)
    } else {
        response
    }
}

/// Signs the first empty signature template in `xml` with the IdP's key (libxmlsec1).
pub fn sign_first_template(idp: &TestIdp, xml: &str) -> String {
    sign(xml, &idp.key_der)
}

/// Standard (padded) base64, as in the `SAMLResponse` form field of the POST binding.
pub fn b64(xml: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(xml.as_bytes())
}

/// Escape text for use in XML character data and double- or single-quoted attributes.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            _ => out.push(c),
        }
    }
    out
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#13;", "\r")
        .replace("&#xD;", "\r")
        .replace("&amp;", "&")
}

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn cert_b64(der: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(der)
}

/// Sign the first signature template in `xml` with samael/libxmlsec1 and drop the XML
/// declaration libxml2 adds.
fn sign(xml: &str, key_der: &[u8]) -> String {
    let signed = Crypto::sign_xml(xml, key_der).expect("samael Crypto::sign_xml failed");
    strip_xml_decl(&signed)
}

fn strip_xml_decl(xml: &str) -> String {
    let t = xml.trim();
    let t = match t.strip_prefix("<?xml") {
        Some(rest) => rest[rest.find("?>").expect("end of XML declaration") + 2..].trim_start(),
        None => t,
    };
    t.to_string()
}

/// An enveloped-signature template (empty DigestValue / SignatureValue) for `#ref_id`.
fn signature_template(ref_id: &str, cert_der: &[u8], alg: SigAlg) -> String {
    format!(
        concat!(
            r#"<ds:Signature xmlns:ds="{ds}">"#,
            r#"<ds:SignedInfo>"#,
            r#"<ds:CanonicalizationMethod Algorithm="{c14n}"/>"#,
            r#"<ds:SignatureMethod Algorithm="{sig}"/>"#,
            r##"<ds:Reference URI="#{id}">"##,
            r#"<ds:Transforms>"#,
            r#"<ds:Transform Algorithm="{env}"/>"#,
            r#"<ds:Transform Algorithm="{c14n}"/>"#,
            r#"</ds:Transforms>"#,
            r#"<ds:DigestMethod Algorithm="{dig}"/>"#,
            r#"<ds:DigestValue></ds:DigestValue>"#,
            r#"</ds:Reference>"#,
            r#"</ds:SignedInfo>"#,
            r#"<ds:SignatureValue></ds:SignatureValue>"#,
            r#"<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>"#,
            r#"</ds:Signature>"#
        ),
        ds = NS_DS,
        c14n = ALG_EXC_C14N,
        sig = alg.signature_uri(),
        id = xml_escape(ref_id),
        env = ALG_ENVELOPED,
        dig = alg.digest_uri(),
        cert = cert_b64(cert_der),
    )
}

/// The unsigned `saml:Assertion` text (with an empty signature template after its
/// Issuer when `with_template`). Namespaces are declared on the Assertion itself so the
/// text can stand alone or be embedded anywhere.
pub fn assertion_xml(idp: &TestIdp, spec: &ResponseSpec, with_template: bool) -> String {
    let mut a = String::with_capacity(4096);
    a.push_str(&format!(
        r#"<saml:Assertion xmlns:saml="{saml}" xmlns:xs="{xs}" xmlns:xsi="{xsi}" ID="{id}" Version="2.0" IssueInstant="{ii}">"#,
        saml = NS_SAML,
        xs = NS_XS,
        xsi = NS_XSI,
        id = xml_escape(&spec.assertion_id),
        ii = ts(&spec.issue_instant),
    ));
    a.push_str(&format!(
        "<saml:Issuer>{}</saml:Issuer>",
        xml_escape(&spec.issuer)
    ));
    if with_template {
        a.push_str(&signature_template(
            &spec.assertion_id,
            &idp.cert_der,
            spec.signature_algorithm,
        ));
    }

    // Subject
    a.push_str("<saml:Subject><saml:NameID");
    if let Some(q) = &spec.sp_name_qualifier {
        a.push_str(&format!(r#" SPNameQualifier="{}""#, xml_escape(q)));
    }
    if !spec.name_id_format.is_empty() {
        a.push_str(&format!(
            r#" Format="{}""#,
            xml_escape(&spec.name_id_format)
        ));
    }
    a.push_str(&format!(">{}</saml:NameID>", xml_escape(&spec.name_id)));
    a.push_str(&format!(
        r#"<saml:SubjectConfirmation Method="{CM_BEARER}"><saml:SubjectConfirmationData NotOnOrAfter="{}" Recipient="{}""#,
        ts(&spec.subject_not_on_or_after),
        xml_escape(&spec.recipient),
    ));
    if let Some(irt) = &spec.subject_in_response_to {
        a.push_str(&format!(r#" InResponseTo="{}""#, xml_escape(irt)));
    }
    a.push_str("/></saml:SubjectConfirmation></saml:Subject>");

    // Conditions
    a.push_str(&format!(
        r#"<saml:Conditions NotBefore="{}" NotOnOrAfter="{}">"#,
        ts(&spec.not_before),
        ts(&spec.not_on_or_after),
    ));
    if let Some(aud) = &spec.audience {
        a.push_str(&format!(
            "<saml:AudienceRestriction><saml:Audience>{}</saml:Audience></saml:AudienceRestriction>",
            xml_escape(aud)
        ));
    }
    a.push_str("</saml:Conditions>");

    // AuthnStatement
    if spec.authn_statement {
        a.push_str(&format!(
            r#"<saml:AuthnStatement AuthnInstant="{}""#,
            ts(&spec.issue_instant)
        ));
        if let Some(t) = &spec.session_not_on_or_after {
            a.push_str(&format!(r#" SessionNotOnOrAfter="{}""#, ts(t)));
        }
        if let Some(si) = &spec.session_index {
            a.push_str(&format!(r#" SessionIndex="{}""#, xml_escape(si)));
        }
        a.push_str(&format!(
            "><saml:AuthnContext><saml:AuthnContextClassRef>{}</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>",
            xml_escape(&spec.authn_context_class_ref)
        ));
    }

    // AttributeStatement
    if !spec.attributes.is_empty() {
        a.push_str("<saml:AttributeStatement>");
        for (name, values) in &spec.attributes {
            a.push_str(&format!(
                r#"<saml:Attribute Name="{}" NameFormat="{ATTRNAME_BASIC}">"#,
                xml_escape(name)
            ));
            for v in values {
                a.push_str(&format!(
                    r#"<saml:AttributeValue xsi:type="xs:string">{}</saml:AttributeValue>"#,
                    xml_escape(v)
                ));
            }
            a.push_str("</saml:Attribute>");
        }
        a.push_str("</saml:AttributeStatement>");
    }
    a.push_str("</saml:Assertion>");
    a
}

/// The `samlp:Response` text around `assertion` (inserted verbatim), with an empty
/// signature template right after its Issuer when `with_template`.
fn response_xml(
    idp: &TestIdp,
    spec: &ResponseSpec,
    assertion: &str,
    with_template: bool,
) -> String {
    let mut r = String::with_capacity(assertion.len() + 4096);
    r.push_str(&format!(
        r#"<samlp:Response xmlns:samlp="{NS_SAMLP}" xmlns:saml="{NS_SAML}" ID="{}" Version="2.0" IssueInstant="{}""#,
        xml_escape(&spec.response_id),
        ts(&spec.issue_instant),
    ));
    if let Some(d) = &spec.destination {
        r.push_str(&format!(r#" Destination="{}""#, xml_escape(d)));
    }
    if let Some(irt) = &spec.in_response_to {
        r.push_str(&format!(r#" InResponseTo="{}""#, xml_escape(irt)));
    }
    r.push('>');
    r.push_str(&format!(
        "<saml:Issuer>{}</saml:Issuer>",
        xml_escape(&spec.issuer)
    ));
    if with_template {
        r.push_str(&signature_template(
            &spec.response_id,
            &idp.cert_der,
            spec.signature_algorithm,
        ));
    }
    r.push_str(&format!(
        r#"<samlp:Status><samlp:StatusCode Value="{}""#,
        xml_escape(&spec.status_code)
    ));
    match &spec.sub_status_code {
        Some(sub) => r.push_str(&format!(
            r#"><samlp:StatusCode Value="{}"/></samlp:StatusCode>"#,
            xml_escape(sub)
        )),
        None => r.push_str("/>"),
    }
    if let Some(m) = &spec.status_message {
        r.push_str(&format!(
            "<samlp:StatusMessage>{}</samlp:StatusMessage>",
            xml_escape(m)
        ));
    }
    r.push_str("</samlp:Status>");
    r.push_str(assertion);
    r.push_str("</samlp:Response>");
    r
}

// ---------------------------------------------------------------------------------------
// Minimal string-level XML navigation for the documents minted here (and for
// SimpleSAMLphp's output). Not a general XML parser: no CDATA, no '>' inside attribute
// values (libxml2 and `xml_escape` both escape it).
// ---------------------------------------------------------------------------------------

/// Helpers to look into and cut up minted XML text.
pub mod xml {
    fn tag_name(s: &str) -> &str {
        let end = s
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .unwrap_or(s.len());
        &s[..end]
    }

    fn local(qname: &str) -> &str {
        qname.rsplit(':').next().unwrap_or(qname)
    }

    fn skip_markup(xml: &str, lt: usize) -> Option<usize> {
        let rest = &xml[lt..];
        if rest.starts_with("<!--") {
            Some(lt + rest.find("-->")? + 3)
        } else if rest.starts_with("<?") {
            Some(lt + rest.find("?>")? + 2)
        } else if rest.starts_with("<!") {
            // DOCTYPE with an internal subset: skip to "]>" if there is a '[' first.
            let gt = rest.find('>')?;
            match rest.find('[') {
                Some(b) if b < gt => Some(lt + rest.find("]>")? + 2),
                _ => Some(lt + gt + 1),
            }
        } else {
            None
        }
    }

    /// End (exclusive byte offset) of the element whose start tag begins at `start`.
    pub fn element_end(xml: &str, start: usize) -> Option<usize> {
        let qname = tag_name(&xml[start + 1..]);
        let gt = start + xml[start..].find('>')?;
        if xml.as_bytes()[gt - 1] == b'/' {
            return Some(gt + 1);
        }
        let mut depth = 1usize;
        let mut i = gt + 1;
        loop {
            let lt = i + xml[i..].find('<')?;
            if let Some(next) = skip_markup(xml, lt) {
                i = next;
                continue;
            }
            let gt = lt + xml[lt..].find('>')?;
            let rest = &xml[lt + 1..];
            if let Some(close) = rest.strip_prefix('/') {
                if tag_name(close) == qname {
                    depth -= 1;
                    if depth == 0 {
                        return Some(gt + 1);
                    }
                }
            } else if tag_name(rest) == qname && xml.as_bytes()[gt - 1] != b'/' {
                depth += 1;
            }
            i = gt + 1;
        }
    }

    /// Start offset of the document element (skips declaration, DOCTYPE, comments, PIs).
    pub fn root_start(xml: &str) -> Option<usize> {
        let mut i = 0;
        loop {
            let lt = i + xml[i..].find('<')?;
            match skip_markup(xml, lt) {
                Some(next) => i = next,
                None => return Some(lt),
            }
        }
    }

    /// Span of the first element (any depth, document order) with this local name at or
    /// after `from`.
    pub fn find_element(xml: &str, local_name: &str, from: usize) -> Option<(usize, usize)> {
        let mut i = from;
        loop {
            let lt = i + xml[i..].find('<')?;
            if let Some(next) = skip_markup(xml, lt) {
                i = next;
                continue;
            }
            let rest = &xml[lt + 1..];
            if !rest.starts_with('/') && local(tag_name(rest)) == local_name {
                return Some((lt, element_end(xml, lt)?));
            }
            i = lt + 1;
        }
    }

    /// Spans of the direct child elements of the element starting at `start`.
    pub fn child_elements(xml: &str, start: usize) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let Some(gt) = xml[start..].find('>').map(|g| start + g) else {
            return out;
        };
        if xml.as_bytes()[gt - 1] == b'/' {
            return out;
        }
        let mut i = gt + 1;
        while let Some(off) = xml[i..].find('<') {
            let lt = i + off;
            if let Some(next) = skip_markup(xml, lt) {
                i = next;
                continue;
            }
            if xml[lt + 1..].starts_with('/') {
                break;
            }
            let Some(end) = element_end(xml, lt) else {
                break;
            };
            out.push((lt, end));
            i = end;
        }
        out
    }

    /// Span of the first direct child of the element at `start` with this local name.
    pub fn first_child(xml: &str, start: usize, local_name: &str) -> Option<(usize, usize)> {
        child_elements(xml, start)
            .into_iter()
            .find(|&(s, _)| local(tag_name(&xml[s + 1..])) == local_name)
    }

    /// Replace the byte range `s..e` with `repl`.
    pub fn splice(xml: &str, s: usize, e: usize, repl: &str) -> String {
        let mut out = String::with_capacity(xml.len() + repl.len());
        out.push_str(&xml[..s]);
        out.push_str(repl);
        out.push_str(&xml[e..]);
        out
    }

    /// Insert `text` right after the root element's first direct child named `local_name`.
    pub fn insert_after_root_child(xml: &str, local_name: &str, text: &str) -> String {
        let root = root_start(xml).expect("root element");
        let (_, e) = first_child(xml, root, local_name)
            .unwrap_or_else(|| panic!("root has no child {local_name}"));
        splice(xml, e, e, text)
    }

    /// Insert `text` as the last child of the element `elem` (a complete element's text).
    pub fn insert_before_close(elem: &str, text: &str) -> String {
        let pos = elem.rfind("</").expect("element with a closing tag");
        splice(elem, pos, pos, text)
    }

    /// Set (replace) attribute `name` in the start tag at `start`; it must exist.
    pub fn set_attr(xml: &str, start: usize, name: &str, value: &str) -> String {
        let gt = start + xml[start..].find('>').expect("start tag end");
        let tag = &xml[start..gt];
        let needle = format!(" {name}=\"");
        let a = start
            + tag
                .find(&needle)
                .unwrap_or_else(|| panic!("no attribute {name}"))
            + needle.len();
        let b = a + xml[a..].find('"').expect("attribute end");
        splice(xml, a, b, &super::xml_escape(value))
    }

    /// Raw text between the start and end tag of the element spanning `s..e`.
    pub fn inner(xml: &str, s: usize, e: usize) -> &str {
        let gt = s + xml[s..].find('>').expect("start tag end");
        if xml.as_bytes()[gt - 1] == b'/' {
            return "";
        }
        let close = s + xml[s..e].rfind("</").expect("end tag");
        &xml[gt + 1..close]
    }

    /// What a naive SP would read as the identity: root → first child `Assertion` →
    /// child `Subject` → child `NameID`, text up to the first markup (so a comment
    /// truncates it), unescaped. Used to check that an attack really places its evil
    /// identity where naive code looks.
    pub fn naive_name_id(xml: &str) -> Option<String> {
        let root = root_start(xml)?;
        let (a, _) = first_child(xml, root, "Assertion")?;
        let (s, _) = first_child(xml, a, "Subject")?;
        let (n, ne) = first_child(xml, s, "NameID")?;
        let text = inner(xml, n, ne);
        let text = &text[..text.find('<').unwrap_or(text.len())];
        Some(super::xml_unescape(text))
    }

    /// Number of elements with this local name anywhere in the document.
    pub fn count_elements(xml: &str, local_name: &str) -> usize {
        let mut n = 0;
        let mut i = 0;
        while let Some((s, _)) = find_element(xml, local_name, i) {
            n += 1;
            i = s + 1;
        }
        n
    }
}

/// Malicious variants. Every function returns the attack document as XML text; feed it
/// through [`b64`] for the `SAMLResponse` form field.
pub mod attacks {
    use super::xml::{
        element_end, find_element, first_child, insert_after_root_child, insert_before_close,
        root_start, set_attr, splice,
    };
    use super::{
        assertion_xml, mint, new_id, xml_escape, ResponseSpec, SigAlg, TestIdp, ALG_ENVELOPED,
        ALG_EXC_C14N, ALG_RSA_SHA256, ALG_SHA256, ALG_XSLT, NS_DS, NS_SAML, NS_SAMLP,
    };

    /// Suffix [`comment_injection`] appends to the victim's NameID for the signed value.
    pub const COMMENT_INJECTION_SUFFIX: &str = ".evil.com";
    /// NameID of the unsigned Assertion [`extra_root`] appends as a second root.
    pub const EXTRA_ROOT_NAME_ID: &str = "evil-second-root";

    /// A syntactically valid base64 placeholder for DigestValue (32 zero bytes).
    const FAKE_DIGEST: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    /// A syntactically valid base64 placeholder for SignatureValue.
    const FAKE_SIGNATURE: &str = "AAAA";

    fn evil_assertion(idp: &TestIdp, spec: &ResponseSpec, evil_name_id: &str) -> String {
        let mut evil = spec.clone();
        evil.name_id = evil_name_id.to_string();
        evil.assertion_id = new_id();
        assertion_xml(idp, &evil, false)
    }

    /// **XML signature wrapping, XSW1–XSW8** (Somorovsky et al., "On Breaking SAML: Be
    /// Whoever You Want to Be", USENIX Security 2012; the SAML Raider set).
    ///
    /// Each variant keeps a validly signed original somewhere the signature still
    /// resolves (`#ID` reference) and puts an unsigned evil copy — NameID
    /// `evil_name_id`, a *different* ID — at `/Response/Assertion`, where naive code
    /// reads the identity ([`super::xml::naive_name_id`] returns `evil_name_id` for all
    /// eight).
    ///
    /// Response-signature variants (minted with `sign_response = true,
    /// sign_assertion = false`):
    /// - `XSW1`: evil Response (new ID, evil Assertion) holding the original Signature,
    ///   the original Response (minus its Signature) appended inside that Signature.
    /// - `XSW2`: as XSW1 but the original Response sits before the Signature as a
    ///   sibling (detached signature).
    ///
    /// Assertion-signature variants (minted with `sign_response = false,
    /// sign_assertion = true`):
    /// - `XSW3`: evil Assertion inserted before the signed one, as a sibling.
    /// - `XSW4`: evil Assertion wraps the signed one (signed one = its last child).
    /// - `XSW5`: the original Signature moved into the evil Assertion; the original
    ///   Assertion (minus Signature) appended after it.
    /// - `XSW6`: the original Signature moved into the evil Assertion; the original
    ///   Assertion (minus Signature) placed inside that Signature.
    /// - `XSW7`: the signed Assertion moved into `samlp:Extensions`; the evil
    ///   Assertion takes its place.
    /// - `XSW8`: the original Signature moved into the evil Assertion; the original
    ///   Assertion (minus Signature) inside a `ds:Object` of that Signature.
    pub fn xsw_variants(
        idp: &TestIdp,
        spec: &ResponseSpec,
        evil_name_id: &str,
    ) -> Vec<(&'static str, String)> {
        let evil_a = evil_assertion(idp, spec, evil_name_id);
        let mut out = Vec::with_capacity(8);

        // --- Response signature: XSW1, XSW2 ---
        let mut rs = spec.clone();
        rs.sign_response = true;
        rs.sign_assertion = false;
        rs.include_assertion = true;
        let signed = mint(idp, &rs);
        let root = root_start(&signed).expect("root");
        let (ss, se) = first_child(&signed, root, "Signature").expect("response signature");
        let sig = &signed[ss..se];
        let orig_nosig = splice(&signed, ss, se, "");
        let evil_resp = {
            let r = set_attr(&orig_nosig, root, "ID", &new_id());
            let (a, ae) = first_child(&r, root, "Assertion").expect("assertion");
            splice(&r, a, ae, &evil_a)
        };
        out.push((
            "XSW1",
            insert_after_root_child(&evil_resp, "Issuer", &insert_before_close(sig, &orig_nosig)),
        ));
        out.push((
            "XSW2",
            insert_after_root_child(&evil_resp, "Issuer", &format!("{orig_nosig}{sig}")),
        ));

        // --- Assertion signature: XSW3 .. XSW8 ---
        let mut as_ = spec.clone();
        as_.sign_response = false;
        as_.sign_assertion = true;
        as_.include_assertion = true;
        let signed = mint(idp, &as_);
        let root = root_start(&signed).expect("root");
        let (a_s, a_e) = first_child(&signed, root, "Assertion").expect("assertion");
        let signed_a = &signed[a_s..a_e];
        let (ss, se) = first_child(signed_a, 0, "Signature").expect("assertion signature");
        let sig = &signed_a[ss..se];
        let a_nosig = splice(signed_a, ss, se, "");
        let evil_with_sig = |inside_sig: &str| {
            insert_after_root_child(&evil_a, "Issuer", &insert_before_close(sig, inside_sig))
        };
        let replace_assertion = |repl: &str| splice(&signed, a_s, a_e, repl);

        out.push(("XSW3", replace_assertion(&format!("{evil_a}{signed_a}"))));
        out.push((
            "XSW4",
            replace_assertion(&insert_before_close(&evil_a, signed_a)),
        ));
        out.push((
            "XSW5",
            replace_assertion(&format!("{}{a_nosig}", evil_with_sig(""))),
        ));
        out.push(("XSW6", replace_assertion(&evil_with_sig(&a_nosig))));
        out.push((
            "XSW7",
            insert_after_root_child(
                &replace_assertion(&evil_a),
                "Issuer",
                &format!(
                    r#"<samlp:Extensions xmlns:samlp="{NS_SAMLP}">{signed_a}</samlp:Extensions>"#
                ),
            ),
        ));
        out.push((
            "XSW8",
            replace_assertion(&evil_with_sig(&format!("<ds:Object>{a_nosig}</ds:Object>"))),
        ));
        out
    }

    /// **Signature exclusion**: remove every `Signature` element (any prefix) so an SP
    /// that only verifies signatures that are present accepts the message.
    pub fn strip_signatures(xml: &str) -> String {
        let mut out = xml.to_string();
        while let Some((s, e)) = find_element(&out, "Signature", 0) {
            out = splice(&out, s, e, "");
        }
        out
    }

    /// **Post-signing tampering** (digest mismatch): replace the text of the first
    /// `NameID` with `new` (XML-escaped) after signing.
    pub fn tamper_name_id(xml: &str, new: &str) -> String {
        let (s, e) = find_element(xml, "NameID", 0).expect("NameID");
        let gt = s + xml[s..].find('>').expect("start tag end") + 1;
        let close = s + xml[s..e].rfind("</").expect("end tag");
        splice(xml, gt, close, &xml_escape(new))
    }

    /// **Comment injection in NameID** (CVE-2017-11427 / -11428, CVE-2018-7340, Duo
    /// 2018): the IdP signs NameID `<spec.name_id>.evil.com` (an identity the attacker
    /// may legitimately own), then `<!---->` is inserted after `spec.name_id`. Exclusive
    /// c14n without comments drops the comment, so every signature still verifies; a
    /// parser that reads only the first text node sees `spec.name_id` (the victim).
    /// Signatures as in `spec`.
    pub fn comment_injection(idp: &TestIdp, spec: &ResponseSpec) -> String {
        comment_injection_with(idp, spec, &spec.name_id, COMMENT_INJECTION_SUFFIX)
    }

    /// [`comment_injection`] with explicit victim and suffix: signs NameID
    /// `victim + suffix`, then inserts `<!---->` between them.
    pub fn comment_injection_with(
        idp: &TestIdp,
        spec: &ResponseSpec,
        victim: &str,
        suffix: &str,
    ) -> String {
        let mut s = spec.clone();
        s.name_id = format!("{victim}{suffix}");
        let signed = mint(idp, &s);
        let (n, _) = find_element(&signed, "NameID", 0).expect("NameID");
        let text = n + signed[n..].find('>').expect("start tag end") + 1;
        let victim_esc = xml_escape(victim);
        assert!(
            signed[text..].starts_with(&victim_esc),
            "signed NameID text does not start with the victim's name"
        );
        splice(
            &signed,
            text + victim_esc.len(),
            text + victim_esc.len(),
            "<!---->",
        )
    }

    fn insert_doctype(xml: &str, doctype: &str) -> String {
        let t = xml.trim_start();
        if t.starts_with("<?xml") {
            let end = t.find("?>").expect("end of XML declaration") + 2;
            format!("{}\n{doctype}\n{}", &t[..end], t[end..].trim_start())
        } else {
            format!("{doctype}\n{t}")
        }
    }

    /// **DTD present** (parser-differential / XXE groundwork): a `<!DOCTYPE>` without
    /// internal subset put before an otherwise valid signed response. samael (libxml2
    /// in recover mode) accepts it; the gateway's pre-filter must refuse any DTD.
    pub fn prepend_doctype(xml: &str) -> String {
        insert_doctype(xml, "<!DOCTYPE samlp:Response>")
    }

    /// **XXE**: an internal subset declaring `<!ENTITY xxe SYSTEM "file:///etc/passwd">`
    /// and the first NameID's text replaced by `&xxe;`.
    pub fn xxe(xml: &str) -> String {
        xxe_with(xml, "file:///etc/passwd")
    }

    /// [`xxe`] with another system identifier (e.g. `http://127.0.0.1:PORT/xxe`).
    pub fn xxe_with(xml: &str, system_uri: &str) -> String {
        let (s, e) = find_element(xml, "NameID", 0).expect("NameID");
        let gt = s + xml[s..].find('>').expect("start tag end") + 1;
        let close = s + xml[s..e].rfind("</").expect("end tag");
        let body = splice(xml, gt, close, "&xxe;");
        insert_doctype(
            &body,
            &format!(
                r#"<!DOCTYPE samlp:Response [<!ENTITY xxe SYSTEM "{}">]>"#,
                xml_escape(system_uri)
            ),
        )
    }

    /// **Entity expansion** ("billion laughs"): `levels` nested entities, each
    /// referencing the previous ten times, the last referenced in the first NameID.
    pub fn entity_expansion(xml: &str, levels: u32) -> String {
        let levels = levels.max(1);
        let mut subset = String::from(r#"<!ENTITY lol0 "lol">"#);
        for i in 1..=levels {
            let refs = format!("&lol{};", i - 1).repeat(10);
            subset.push_str(&format!(r#"<!ENTITY lol{i} "{refs}">"#));
        }
        let (s, e) = find_element(xml, "NameID", 0).expect("NameID");
        let gt = s + xml[s..].find('>').expect("start tag end") + 1;
        let close = s + xml[s..e].rfind("</").expect("end tag");
        let body = splice(xml, gt, close, &format!("&lol{levels};"));
        insert_doctype(&body, &format!("<!DOCTYPE samlp:Response [{subset}]>"))
    }

    /// **Processing instruction** in the prolog, before the document element (after an
    /// XML declaration if there is one) — outside every signed element, so the
    /// signatures still verify; the pre-filter refuses PIs anywhere.
    pub fn processing_instruction(xml: &str) -> String {
        insert_doctype(
            xml,
            r#"<?xml-stylesheet type="text/xsl" href="http://127.0.0.1:9/evil.xsl"?>"#,
        )
    }

    /// A processing instruction *inside* the Response, right after its Issuer (covered
    /// by the Response signature if there is one, so that signature breaks).
    pub fn processing_instruction_inside(xml: &str) -> String {
        insert_after_root_child(xml, "Issuer", "<?samlgate-test evil?>")
    }

    /// **XSLT transform DoS** (docs/security-model.md gap 2): a forged, *unsigned* ~1.5 KB
    /// Response whose Signature Reference carries an XSLT `ds:Transform` that builds a
    /// complete binary tree of depth `depth` (2^depth elements) by recursive template
    /// calls. libxmlsec1 runs reference transforms before it checks SignatureValue, so
    /// this costs the server CPU and memory pre-authentication. Measured through
    /// samael 0.0.22 / libxmlsec1 1.2.37 on one core: depth 16 ≈ 0.1 s, 18 ≈ 0.3 s /
    /// 50 MB peak RSS, 20 ≈ 1.3 s / 155 MB; about ×4 per +2 depth. The payload stays
    /// ~1.8 KB whatever the depth. SignatureMethod / DigestMethod are rsa-sha256 /
    /// sha256, so samael's algorithm allowlist does not stop it. Do not feed it to
    /// samael in fast tests.
    pub fn xslt_transform(_idp: &TestIdp, spec: &ResponseSpec, depth: u32) -> String {
        // One <a> per call with d > 0, each recursing twice: 2^depth - 1 elements.
        let call = |d: &str| {
            format!(
                r#"<xsl:call-template name="t"><xsl:with-param name="d" select="{d}"/></xsl:call-template>"#
            )
        };
        let stylesheet = format!(
            concat!(
                r#"<xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="1.0">"#,
                r#"<xsl:template match="/">{top}</xsl:template>"#,
                r#"<xsl:template name="t"><xsl:param name="d"/><xsl:if test="$d"><a>{rec}{rec}</a></xsl:if></xsl:template>"#,
                r#"</xsl:stylesheet>"#
            ),
            top = call(&depth.to_string()),
            rec = call("$d - 1"),
        );
        let rid = xml_escape(&spec.response_id);
        format!(
            concat!(
                r#"<samlp:Response xmlns:samlp="{samlp}" xmlns:saml="{saml}" ID="{rid}" Version="2.0" IssueInstant="{ii}">"#,
                r#"<saml:Issuer>{iss}</saml:Issuer>"#,
                r#"<ds:Signature xmlns:ds="{ds}"><ds:SignedInfo>"#,
                r#"<ds:CanonicalizationMethod Algorithm="{c14n}"/><ds:SignatureMethod Algorithm="{rsa}"/>"#,
                r##"<ds:Reference URI="#{rid}"><ds:Transforms><ds:Transform Algorithm="{env}"/>"##,
                r#"<ds:Transform Algorithm="{xslt}">{xsl}</ds:Transform></ds:Transforms>"#,
                r#"<ds:DigestMethod Algorithm="{sha}"/><ds:DigestValue>{dv}</ds:DigestValue></ds:Reference>"#,
                r#"</ds:SignedInfo><ds:SignatureValue>{sv}</ds:SignatureValue></ds:Signature>"#,
                r#"<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>"#,
                r#"<saml:Assertion ID="{aid}" Version="2.0" IssueInstant="{ii}">"#,
                r#"<saml:Subject><saml:NameID>{nid}</saml:NameID></saml:Subject></saml:Assertion>"#,
                r#"</samlp:Response>"#
            ),
            samlp = NS_SAMLP,
            saml = NS_SAML,
            rid = rid,
            ii = super::ts(&spec.issue_instant),
            iss = xml_escape(&spec.issuer),
            ds = NS_DS,
            c14n = ALG_EXC_C14N,
            rsa = ALG_RSA_SHA256,
            env = ALG_ENVELOPED,
            xslt = ALG_XSLT,
            xsl = stylesheet,
            sha = ALG_SHA256,
            dv = FAKE_DIGEST,
            sv = FAKE_SIGNATURE,
            aid = xml_escape(&spec.assertion_id),
            nid = xml_escape(&spec.name_id),
        )
    }

    fn external_ref_element(url: &str) -> String {
        format!(
            r#"<ds:Reference URI="{}"><ds:DigestMethod Algorithm="{ALG_SHA256}"/><ds:DigestValue>{FAKE_DIGEST}</ds:DigestValue></ds:Reference>"#,
            xml_escape(url)
        )
    }

    /// **SSRF / local file read via Reference URI**: a `ds:Reference URI="<url>"`
    /// (e.g. `http://127.0.0.1:PORT/probe` or `file:///etc/passwd`) inserted as the
    /// *first* Reference of the first signature's SignedInfo (before the legitimate
    /// one, so it is dereferenced before anything can fail). The SignatureValue no
    /// longer matches, but libxmlsec1 dereferences references before checking it
    /// (probed with samael 0.0.22: one `GET`, then an error).
    /// Input: any signed response (e.g. from [`super::mint`]).
    pub fn external_reference(xml: &str, url: &str) -> String {
        let (sig, _) = find_element(xml, "Signature", 0).expect("a signed response");
        let (_, sm_end) = find_element(xml, "SignatureMethod", sig).expect("SignatureMethod");
        splice(xml, sm_end, sm_end, &external_ref_element(url))
    }

    /// **SSRF via `ds:Object/ds:Manifest`**: appends to the first signature a
    /// `<ds:Object><ds:Manifest Id=…><ds:Reference URI="<url>">…` after its KeyInfo.
    /// `ds:Object` is not covered by SignedInfo, so on a validly signed input the
    /// signature itself still verifies. Probed with samael 0.0.22: one `GET` and the
    /// response is *accepted* (identity of the signed original); on a tampered input
    /// still one `GET`, then an error.
    pub fn manifest_reference(xml: &str, url: &str) -> String {
        let (sig, sig_end) = find_element(xml, "Signature", 0).expect("a signed response");
        let object = format!(
            r#"<ds:Object><ds:Manifest Id="{}">{}</ds:Manifest></ds:Object>"#,
            new_id(),
            external_ref_element(url)
        );
        let close = sig + xml[sig..sig_end].rfind("</").expect("Signature end tag");
        splice(xml, close, close, &object)
    }

    /// **KeyInfo RetrievalMethod** pointing at `url` (SSRF through key resolution),
    /// inserted at the start of the first signature's KeyInfo. (samael ignores
    /// KeyInfo: probed, no request, response accepted; the pre-filter refuses it.)
    pub fn retrieval_method(xml: &str, url: &str) -> String {
        let (sig, _) = find_element(xml, "Signature", 0).expect("a signed response");
        let (ki, _) = find_element(xml, "KeyInfo", sig).expect("KeyInfo");
        let gt = ki + xml[ki..].find('>').expect("start tag end") + 1;
        splice(
            xml,
            gt,
            gt,
            &format!(
                r#"<ds:RetrievalMethod URI="{}" Type="http://www.w3.org/2000/09/xmldsig#X509Data"/>"#,
                xml_escape(url)
            ),
        )
    }

    /// **Certificate faking**: a fresh key (same entity ID) signs the response; each
    /// signature's KeyInfo carries that key's own self-signed certificate. Correct SPs
    /// verify with the metadata certificate only and refuse it.
    pub fn signed_by_other_key(spec: &ResponseSpec) -> String {
        let other = TestIdp::generate(&spec.issuer);
        mint(&other, spec)
    }

    /// **Algorithm downgrade**: validly signed by the real IdP key with rsa-sha1 and
    /// sha1 digests (both signatures as in `spec`).
    pub fn sha1_signed(idp: &TestIdp, spec: &ResponseSpec) -> String {
        let mut s = spec.clone();
        s.signature_algorithm = SigAlg::RsaSha1;
        mint(idp, &s)
    }

    /// **More than one root element**: an unsigned Assertion with NameID
    /// [`EXTRA_ROOT_NAME_ID`] appended after the document element. libxml2 (recover
    /// mode) keeps the first root only; other parsers may take the last.
    pub fn extra_root(xml: &str) -> String {
        let second = format!(
            r#"<saml:Assertion xmlns:saml="{NS_SAML}" ID="{}" Version="2.0"><saml:Subject><saml:NameID>{EXTRA_ROOT_NAME_ID}</saml:NameID></saml:Subject></saml:Assertion>"#,
            new_id()
        );
        extra_root_with(xml, &second)
    }

    /// Append `second_root` (any text) after the document element of `xml`.
    pub fn extra_root_with(xml: &str, second_root: &str) -> String {
        let root = root_start(xml).expect("root");
        let end = element_end(xml, root).expect("root end");
        splice(xml, end, end, second_root)
    }
}
