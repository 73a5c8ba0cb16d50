//! The dev IdP's signed SAML Response, shaped like what SimpleSAMLphp 1.19 (Debian 12) emits
//! with both signatures on: a `samlp:Response` with Destination,
//! InResponseTo and Issuer, its enveloped signature right after its Issuer, and one
//! `saml:Assertion` with its own enveloped signature after its Issuer. Exclusive c14n,
//! rsa-sha256, sha256 digests, the IdP certificate in `KeyInfo`; NameID with
//! SPNameQualifier; a bearer SubjectConfirmation; Conditions with an Audience; an
//! AuthnStatement; attributes `uid`, `mail`, `displayName`, `groups` (NameFormat basic).
//!
//! Reusable on its own: [`ResponseSpec`] is plain data (ids and times included, so the XML
//! is a function of it), [`assertion_xml`] and [`response_xml`] build the unsigned text with
//! signature templates, and [`sign_response`] signs through samael's `Crypto::sign_xml`
//! (libxmlsec1) — the assertion first as a document of its own, then the Response around
//! it. Signing is blocking C code: call it from `spawn_blocking` in async code.

use base64::Engine as _;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use samael::crypto::{Crypto, CryptoProvider};

use super::users::User;
use crate::saml::xml_escape;

pub const NS_SAMLP: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
pub const NS_SAML: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
pub const NS_DS: &str = "http://www.w3.org/2000/09/xmldsig#";
pub const NS_XS: &str = "http://www.w3.org/2001/XMLSchema";
pub const NS_XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

pub const ALG_EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
pub const ALG_ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
pub const ALG_RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
pub const ALG_SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";

pub const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
pub const NAMEID_PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";
pub const NAMEID_TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";
pub const NAMEID_UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";
pub const NAMEID_EMAIL: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
pub const ATTRNAME_BASIC: &str = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic";
pub const CM_BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
pub const AC_PASSWORD_PROTECTED: &str =
    "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport";

/// Lifetimes SimpleSAMLphp uses.
pub const ASSERTION_LIFETIME: Duration = Duration::minutes(5);
pub const NOT_BEFORE_SLACK: Duration = Duration::seconds(30);
pub const SESSION_LIFETIME: Duration = Duration::hours(8);

/// The IdP's signing identity.
#[derive(Clone)]
pub struct SigningKey {
    /// PKCS#1 `RSAPrivateKey` DER, as libxmlsec1 loads it.
    pub key_der: Vec<u8>,
    pub cert_der: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_der", &"<redacted>")
            .field("cert_der_len", &self.cert_der.len())
            .finish()
    }
}

impl SigningKey {
    /// A fresh RSA 2048 key with a self-signed sha256 certificate (ten years).
    pub fn generate(common_name: &str) -> Result<SigningKey, String> {
        let pair = crate::certgen::self_signed(&crate::certgen::CertSpec {
            common_name: common_name.to_string(),
            rsa_bits: 2048,
            days: 3650,
            purpose: crate::certgen::Purpose::Saml,
            san: vec![],
        })?;
        Self::from_pair(&pair)
    }

    /// From PEM files' contents (RSA key, PKCS#1 or PKCS#8; its certificate).
    pub fn from_pem(key_pem: &[u8], cert_pem: &[u8]) -> Result<SigningKey, String> {
        Self::from_pair(&crate::certgen::KeyPair::from_pem(key_pem, cert_pem)?)
    }

    fn from_pair(pair: &crate::certgen::KeyPair) -> Result<SigningKey, String> {
        Ok(SigningKey {
            key_der: pair.key_pkcs1_der()?,
            cert_der: pair.cert_der()?,
        })
    }

    /// The certificate as `ds:X509Certificate` carries it (one line of base64).
    pub fn cert_b64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.cert_der)
    }

    pub fn cert_pem(&self) -> String {
        let b64 = self.cert_b64();
        let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(chunk));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
        out
    }
}

/// Everything the Response says. Plain data: ids and times are fields, so the unsigned XML
/// is a pure function of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseSpec {
    /// The IdP entity ID (`saml:Issuer` of Response and Assertion).
    pub issuer: String,
    /// The ACS URL: `Response/@Destination` and `SubjectConfirmationData/@Recipient`.
    pub destination: String,
    /// The SP entity ID: the `Audience`, and the NameID's `SPNameQualifier`.
    pub audience: String,
    /// The AuthnRequest's ID; `None` for an unsolicited (IdP-initiated) response.
    pub in_response_to: Option<String>,
    pub name_id: String,
    pub name_id_format: String,
    pub response_id: String,
    pub assertion_id: String,
    pub session_index: String,
    pub issue_instant: DateTime<Utc>,
    /// `Conditions/@NotBefore`.
    pub not_before: DateTime<Utc>,
    /// `Conditions/@NotOnOrAfter` and `SubjectConfirmationData/@NotOnOrAfter`.
    pub not_on_or_after: DateTime<Utc>,
    /// `AuthnStatement/@SessionNotOnOrAfter`.
    pub session_not_on_or_after: DateTime<Utc>,
    /// In order; a name with no values gives an empty `saml:Attribute`.
    pub attributes: Vec<(String, Vec<String>)>,
    pub sign_response: bool,
    pub sign_assertion: bool,
}

/// Where a response goes and whom it is about.
#[derive(Debug, Clone)]
pub struct Audience<'a> {
    pub idp_entity_id: &'a str,
    pub sp_entity_id: &'a str,
    pub acs_url: &'a str,
    pub in_response_to: Option<&'a str>,
    /// The AuthnRequest's `NameIDPolicy/@Format`, if any.
    pub requested_name_id_format: Option<&'a str>,
}

impl ResponseSpec {
    /// A response for `user` issued at `now`, with fresh random ids and SimpleSAMLphp's time
    /// windows: NotBefore −30 s, NotOnOrAfter +5 min, SessionNotOnOrAfter +8 h. Both the
    /// Response and the Assertion are signed.
    pub fn for_user(user: &User, to: &Audience<'_>, now: DateTime<Utc>) -> ResponseSpec {
        let (name_id_format, name_id) = name_id_for(user, to.requested_name_id_format);
        ResponseSpec {
            issuer: to.idp_entity_id.to_string(),
            destination: to.acs_url.to_string(),
            audience: to.sp_entity_id.to_string(),
            in_response_to: to.in_response_to.map(str::to_string),
            name_id,
            name_id_format: name_id_format.to_string(),
            response_id: new_id(),
            assertion_id: new_id(),
            session_index: new_id(),
            issue_instant: now,
            not_before: now - NOT_BEFORE_SLACK,
            not_on_or_after: now + ASSERTION_LIFETIME,
            session_not_on_or_after: now + SESSION_LIFETIME,
            attributes: user_attributes(user),
            sign_response: true,
            sign_assertion: true,
        }
    }
}

/// `uid`, `mail`, `displayName`, `groups` (one value per group; empty when none).
pub fn user_attributes(user: &User) -> Vec<(String, Vec<String>)> {
    vec![
        ("uid".into(), vec![user.uid().to_string()]),
        ("mail".into(), vec![user.email()]),
        ("displayName".into(), vec![user.display_name().to_string()]),
        ("groups".into(), user.groups.clone()),
    ]
}

/// The NameID (format, value) for what the SP asked: email → the mail address, transient →
/// a fresh random id, unspecified → the uid as unspecified; persistent, nothing or anything
/// else → the uid as persistent (like SimpleSAMLphp with `nameidattribute = uid`).
pub fn name_id_for(user: &User, requested: Option<&str>) -> (&'static str, String) {
    match requested {
        Some(NAMEID_EMAIL) => (NAMEID_EMAIL, user.email()),
        Some(NAMEID_TRANSIENT) => (NAMEID_TRANSIENT, new_id()),
        Some(NAMEID_UNSPECIFIED) => (NAMEID_UNSPECIFIED, user.uid().to_string()),
        _ => (NAMEID_PERSISTENT, user.uid().to_string()),
    }
}

/// A SAML ID: `_` and 128 random bits in hex (an XML NCName).
pub fn new_id() -> String {
    let bytes = crate::session::random_id();
    let mut s = String::with_capacity(33);
    s.push('_');
    for b in &bytes[..16] {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

pub fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// An enveloped-signature template (empty DigestValue and SignatureValue) for `#ref_id`,
/// with the certificate in KeyInfo.
pub fn signature_template(ref_id: &str, cert_der: &[u8]) -> String {
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
        sig = ALG_RSA_SHA256,
        id = xml_escape(ref_id),
        env = ALG_ENVELOPED,
        dig = ALG_SHA256,
        cert = base64::engine::general_purpose::STANDARD.encode(cert_der),
    )
}

/// The unsigned `saml:Assertion`, with a signature template after its Issuer when
/// `template_cert` is given. Namespaces are declared on the Assertion itself, so the text
/// can be signed alone and embedded anywhere.
pub fn assertion_xml(spec: &ResponseSpec, template_cert: Option<&[u8]>) -> String {
    let e = xml_escape;
    let mut a = String::with_capacity(4096);
    a.push_str(&format!(
        r#"<saml:Assertion xmlns:saml="{NS_SAML}" xmlns:xs="{NS_XS}" xmlns:xsi="{NS_XSI}" ID="{}" Version="2.0" IssueInstant="{}">"#,
        e(&spec.assertion_id),
        ts(&spec.issue_instant),
    ));
    a.push_str(&format!("<saml:Issuer>{}</saml:Issuer>", e(&spec.issuer)));
    if let Some(cert) = template_cert {
        a.push_str(&signature_template(&spec.assertion_id, cert));
    }
    a.push_str(&format!(
        r#"<saml:Subject><saml:NameID SPNameQualifier="{}" Format="{}">{}</saml:NameID>"#,
        e(&spec.audience),
        e(&spec.name_id_format),
        e(&spec.name_id),
    ));
    a.push_str(&format!(
        r#"<saml:SubjectConfirmation Method="{CM_BEARER}"><saml:SubjectConfirmationData NotOnOrAfter="{}" Recipient="{}""#,
        ts(&spec.not_on_or_after),
        e(&spec.destination),
    ));
    if let Some(irt) = &spec.in_response_to {
        a.push_str(&format!(r#" InResponseTo="{}""#, e(irt)));
    }
    a.push_str("/></saml:SubjectConfirmation></saml:Subject>");
    a.push_str(&format!(
        r#"<saml:Conditions NotBefore="{}" NotOnOrAfter="{}"><saml:AudienceRestriction><saml:Audience>{}</saml:Audience></saml:AudienceRestriction></saml:Conditions>"#,
        ts(&spec.not_before),
        ts(&spec.not_on_or_after),
        e(&spec.audience),
    ));
    a.push_str(&format!(
        r#"<saml:AuthnStatement AuthnInstant="{}" SessionNotOnOrAfter="{}" SessionIndex="{}"><saml:AuthnContext><saml:AuthnContextClassRef>{AC_PASSWORD_PROTECTED}</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>"#,
        ts(&spec.issue_instant),
        ts(&spec.session_not_on_or_after),
        e(&spec.session_index),
    ));
    if !spec.attributes.is_empty() {
        a.push_str("<saml:AttributeStatement>");
        for (name, values) in &spec.attributes {
            a.push_str(&format!(
                r#"<saml:Attribute Name="{}" NameFormat="{ATTRNAME_BASIC}">"#,
                e(name)
            ));
            for v in values {
                a.push_str(&format!(
                    r#"<saml:AttributeValue xsi:type="xs:string">{}</saml:AttributeValue>"#,
                    e(v)
                ));
            }
            a.push_str("</saml:Attribute>");
        }
        a.push_str("</saml:AttributeStatement>");
    }
    a.push_str("</saml:Assertion>");
    a
}

/// The `samlp:Response` around `assertion` (inserted verbatim), with a signature template
/// right after its Issuer when `template_cert` is given.
pub fn response_xml(spec: &ResponseSpec, assertion: &str, template_cert: Option<&[u8]>) -> String {
    let e = xml_escape;
    let mut r = String::with_capacity(assertion.len() + 2048);
    r.push_str(&format!(
        r#"<samlp:Response xmlns:samlp="{NS_SAMLP}" xmlns:saml="{NS_SAML}" ID="{}" Version="2.0" IssueInstant="{}" Destination="{}""#,
        e(&spec.response_id),
        ts(&spec.issue_instant),
        e(&spec.destination),
    ));
    if let Some(irt) = &spec.in_response_to {
        r.push_str(&format!(r#" InResponseTo="{}""#, e(irt)));
    }
    r.push('>');
    r.push_str(&format!("<saml:Issuer>{}</saml:Issuer>", e(&spec.issuer)));
    if let Some(cert) = template_cert {
        r.push_str(&signature_template(&spec.response_id, cert));
    }
    r.push_str(&format!(
        r#"<samlp:Status><samlp:StatusCode Value="{STATUS_SUCCESS}"/></samlp:Status>"#
    ));
    r.push_str(assertion);
    r.push_str("</samlp:Response>");
    r
}

/// Fills the first signature template in `xml` (document order) with samael/libxmlsec1 and
/// drops the XML declaration libxml2 adds. Blocking.
pub fn sign_enveloped(xml: &str, key_der: &[u8]) -> Result<String, String> {
    let signed = Crypto::sign_xml(xml, key_der).map_err(|e| format!("signing failed: {e}"))?;
    Ok(strip_xml_decl(&signed).to_string())
}

fn strip_xml_decl(xml: &str) -> &str {
    let t = xml.trim();
    match t.strip_prefix("<?xml") {
        Some(rest) => match rest.find("?>") {
            Some(end) => rest[end + 2..].trim_start(),
            None => t,
        },
        None => t,
    }
}

/// The signed Response text (no XML declaration): the assertion is signed first as a
/// document of its own, embedded, and then the Response is signed. Blocking.
pub fn sign_response(spec: &ResponseSpec, key: &SigningKey) -> Result<String, String> {
    let cert = key.cert_der.as_slice();
    let assertion = if spec.sign_assertion {
        sign_enveloped(&assertion_xml(spec, Some(cert)), &key.key_der)?
    } else {
        assertion_xml(spec, None)
    };
    if spec.sign_response {
        sign_enveloped(&response_xml(spec, &assertion, Some(cert)), &key.key_der)
    } else {
        Ok(response_xml(spec, &assertion, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devidp::users::default_users;

    fn spec(in_response_to: Option<&str>, user: &User) -> ResponseSpec {
        let now = "2030-01-02T03:04:05Z".parse().unwrap();
        ResponseSpec::for_user(
            user,
            &Audience {
                idp_entity_id: "http://127.0.0.1:7000/metadata",
                sp_entity_id: "http://127.0.0.1:8000/saml/metadata",
                acs_url: "http://127.0.0.1:8000/saml/acs",
                in_response_to,
                requested_name_id_format: None,
            },
            now,
        )
    }

    fn count(h: &str, n: &str) -> usize {
        h.matches(n).count()
    }

    #[test]
    fn spec_has_simplesamlphps_time_windows_and_fresh_ids() {
        let alice = &default_users()[0];
        let s = spec(Some("_req"), alice);
        assert_eq!(ts(&s.not_before), "2030-01-02T03:03:35Z");
        assert_eq!(ts(&s.not_on_or_after), "2030-01-02T03:09:05Z");
        assert_eq!(ts(&s.session_not_on_or_after), "2030-01-02T11:04:05Z");
        assert_eq!(s.name_id, "alice");
        assert_eq!(s.name_id_format, NAMEID_PERSISTENT);
        let ids = [&s.response_id, &s.assertion_id, &s.session_index];
        assert!(ids.iter().all(|i| i.len() == 33 && i.starts_with('_')));
        assert_ne!(s.response_id, s.assertion_id);
        assert!(s.sign_response && s.sign_assertion);
    }

    #[test]
    fn unsigned_xml_has_the_documented_shape() {
        let alice = &default_users()[0];
        let s = spec(Some("_req1"), alice);
        let a = assertion_xml(&s, None);
        let r = response_xml(&s, &a, None);
        assert!(r.starts_with("<samlp:Response "));
        assert!(r.contains(r#"Destination="http://127.0.0.1:8000/saml/acs" InResponseTo="_req1">"#));
        assert!(r.contains(
            r#"<saml:NameID SPNameQualifier="http://127.0.0.1:8000/saml/metadata" Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">alice</saml:NameID>"#
        ));
        assert!(r.contains(r#"Recipient="http://127.0.0.1:8000/saml/acs" InResponseTo="_req1"/>"#));
        assert!(r.contains("<saml:Audience>http://127.0.0.1:8000/saml/metadata</saml:Audience>"));
        assert!(
            r.contains(r#"NotBefore="2030-01-02T03:03:35Z" NotOnOrAfter="2030-01-02T03:09:05Z""#)
        );
        assert!(r.contains(r#"SessionNotOnOrAfter="2030-01-02T11:04:05Z""#));
        assert_eq!(
            count(
                &r,
                "<saml:Issuer>http://127.0.0.1:7000/metadata</saml:Issuer>"
            ),
            2
        );
        assert!(r.contains(
            r#"<saml:Attribute Name="groups" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic"><saml:AttributeValue xsi:type="xs:string">analysts</saml:AttributeValue><saml:AttributeValue xsi:type="xs:string">admins</saml:AttributeValue></saml:Attribute>"#
        ));
        for name in ["uid", "mail", "displayName", "groups"] {
            assert_eq!(count(&r, &format!(r#"Name="{name}""#)), 1, "{name}");
        }
        assert!(r.contains(">alice@example.com<") && r.contains(">Alice Anderson<"));
        assert_eq!(count(&r, "Signature"), 0);
        // Parses as a samael Response (the gateway's parser).
        let parsed: samael::schema::Response = r.parse().unwrap();
        assert_eq!(parsed.in_response_to.as_deref(), Some("_req1"));
    }

    #[test]
    fn no_groups_gives_an_empty_attribute_and_unsolicited_has_no_in_response_to() {
        let carol = &default_users()[2];
        let s = spec(None, carol);
        let r = response_xml(&s, &assertion_xml(&s, None), None);
        assert!(r.contains(
            r#"<saml:Attribute Name="groups" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic"></saml:Attribute>"#
        ));
        assert!(!r.contains("InResponseTo"));
    }

    #[test]
    fn every_value_is_xml_escaped() {
        let mut u = default_users()[0].clone();
        u.display_name = Some(r#"<Eve> & "co" 'x'"#.into());
        u.groups = vec!["a<b".into()];
        let s = spec(Some(r#""><evil/>"#), &u);
        let r = response_xml(&s, &assertion_xml(&s, None), None);
        assert!(!r.contains("<evil/>") && !r.contains("<Eve>") && !r.contains("a<b"));
        assert!(r.contains("&lt;Eve&gt; &amp; &quot;co&quot; &#39;x&#39;"));
        assert!(r.contains("&quot;&gt;&lt;evil/&gt;"));
        let parsed: samael::schema::Response = r.parse().unwrap();
        assert_eq!(parsed.in_response_to.as_deref(), Some(r#""><evil/>"#));
    }

    #[test]
    fn name_id_follows_the_requested_format() {
        let alice = &default_users()[0];
        assert_eq!(
            name_id_for(alice, None),
            (NAMEID_PERSISTENT, "alice".into())
        );
        assert_eq!(
            name_id_for(alice, Some(NAMEID_EMAIL)),
            (NAMEID_EMAIL, "alice@example.com".into())
        );
        assert_eq!(
            name_id_for(alice, Some(NAMEID_UNSPECIFIED)),
            (NAMEID_UNSPECIFIED, "alice".into())
        );
        let (f, v) = name_id_for(alice, Some(NAMEID_TRANSIENT));
        assert_eq!(f, NAMEID_TRANSIENT);
        assert_ne!(v, "alice");
        assert_eq!(name_id_for(alice, Some("urn:x")).0, NAMEID_PERSISTENT);
    }

    #[test]
    fn signed_response_has_both_signatures_in_place_and_verifies() {
        let key = SigningKey::generate("dev idp test").unwrap();
        let alice = &default_users()[0];
        let s = spec(Some("_req"), alice);
        let xml = sign_response(&s, &key).unwrap();
        assert!(xml.starts_with("<samlp:Response"));
        assert_eq!(count(&xml, "<ds:Signature "), 2);
        // Response signature right after the Response's Issuer, assertion's after its own.
        let issuer_end = xml.find("</saml:Issuer>").unwrap() + "</saml:Issuer>".len();
        assert!(xml[issuer_end..].starts_with("<ds:Signature"));
        let a = xml.find("<saml:Assertion").unwrap();
        let a_issuer_end = a + xml[a..].find("</saml:Issuer>").unwrap() + "</saml:Issuer>".len();
        assert!(xml[a_issuer_end..].starts_with("<ds:Signature"));
        assert!(!xml.contains("<ds:SignatureValue></ds:SignatureValue>"));
        assert_eq!(count(&xml, &key.cert_b64()), 2);
        // Every signature in the document verifies with the IdP certificate.
        let verify = |xml: &str, cert_der: &[u8]| {
            Crypto::reduce_xml_to_signed(
                xml,
                &[samael::crypto::CertificateDer::from(cert_der.to_vec())],
                samael::crypto::ReduceMode::ValidateAndMarkNoAncestors,
            )
        };
        verify(&xml, &key.cert_der).unwrap();

        // Another key's certificate does not verify it.
        let other = SigningKey::generate("other").unwrap();
        assert!(verify(&xml, &other.cert_der).is_err());

        // Tampering after signing breaks it.
        let tampered = xml.replacen(">alice<", ">mallory<", 1);
        assert!(verify(&tampered, &key.cert_der).is_err());
    }

    #[test]
    fn certificate_pem_round_trips() {
        let key = SigningKey::generate("pem").unwrap();
        let x = openssl::x509::X509::from_pem(key.cert_pem().as_bytes()).unwrap();
        assert_eq!(x.to_der().unwrap(), key.cert_der);
    }
}
