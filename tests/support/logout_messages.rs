//! SAML logout messages as an IdP sends them over the HTTP-Redirect binding, built in-test:
//! a LogoutRequest or LogoutResponse, deflated, base64'd and (optionally) signed over the raw
//! query octets with the IdP's key (PKCS#8 PEM), as SAML bindings §3.4.4.1 says.
#![allow(dead_code)]

use std::io::Write;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;

pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
pub const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
pub const RESPONDER: &str = "urn:oasis:names:tc:SAML:2.0:status:Responder";

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn deflate_b64(xml: &str) -> String {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(xml.as_bytes()).unwrap();
    STANDARD.encode(e.finish().unwrap())
}

fn instant() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The raw Redirect-binding query for `param` (`SAMLRequest` / `SAMLResponse`), signed with
/// `key_pem` when given.
pub fn redirect_query(param: &str, xml: &str, key_pem: Option<&str>) -> String {
    let mut q = format!("{param}={}", enc(&deflate_b64(xml)));
    if let Some(pem) = key_pem {
        q.push_str(&format!("&SigAlg={}", enc(RSA_SHA256)));
        let key = PKey::private_key_from_pem(pem.as_bytes()).unwrap();
        let mut signer = openssl::sign::Signer::new(MessageDigest::sha256(), &key).unwrap();
        signer.update(q.as_bytes()).unwrap();
        let sig = signer.sign_to_vec().unwrap();
        q.push_str(&format!("&Signature={}", enc(&STANDARD.encode(sig))));
    }
    q
}

/// An IdP's LogoutRequest for `name_id`, addressed to `destination`.
pub fn logout_request(id: &str, issuer: &str, destination: &str, name_id: &str) -> String {
    format!(
        r#"<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{}" Destination="{destination}"><saml:Issuer>{issuer}</saml:Issuer><saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">{name_id}</saml:NameID></samlp:LogoutRequest>"#,
        instant()
    )
}

/// An IdP's LogoutResponse to our request `in_response_to`, with `status`.
pub fn logout_response(
    id: &str,
    issuer: &str,
    destination: &str,
    in_response_to: &str,
    status: &str,
) -> String {
    format!(
        r#"<samlp:LogoutResponse xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{}" Destination="{destination}" InResponseTo="{in_response_to}"><saml:Issuer>{issuer}</saml:Issuer><samlp:Status><samlp:StatusCode Value="{status}"/></samlp:Status></samlp:LogoutResponse>"#,
        instant()
    )
}
