//! AuthnRequests: our own ids (128 random bits), the XML, and the HTTP-Redirect binding URL
//! (optionally signed, SAML bindings §3.4.4.1).

use std::io::Write;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use flate2::write::DeflateEncoder;
use flate2::Compression;
use openssl::hash::MessageDigest;
use openssl::sign::Signer;

use super::decrypt::DecryptionKey;
use super::xml_escape;

/// The only signature algorithm we sign AuthnRequests with.
pub const SIG_ALG_RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";

/// A fresh request id: `_` and 32 hex digits (an XML NCName, as `ID` attributes require).
pub fn new_request_id() -> String {
    let id = crate::session::random_id();
    let mut s = String::with_capacity(33);
    s.push('_');
    for b in &id[..16] {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

pub struct AuthnRequestSpec<'a> {
    pub id: &'a str,
    pub issue_instant: chrono::DateTime<chrono::Utc>,
    pub destination: &'a str,
    pub acs_url: &'a str,
    pub sp_entity_id: &'a str,
    pub name_id_format: Option<&'a str>,
    /// `ForceAuthn="true"` (omitted when false).
    pub force_authn: bool,
    /// `IsPassive="true"` (omitted when false).
    pub is_passive: bool,
    /// `RequestedAuthnContext Comparison="exact"` with this class (omitted when `None`).
    pub authn_context_class_ref: Option<&'a str>,
}

pub fn authn_request_xml(spec: &AuthnRequestSpec<'_>) -> String {
    let policy = match spec.name_id_format {
        Some(f) => format!(
            r#"<samlp:NameIDPolicy Format="{}" AllowCreate="true"/>"#,
            xml_escape(f)
        ),
        None => r#"<samlp:NameIDPolicy AllowCreate="true"/>"#.to_string(),
    };
    // Schema order: Issuer, (Subject), NameIDPolicy, (Conditions), RequestedAuthnContext.
    let context = spec
        .authn_context_class_ref
        .map(|c| {
            format!(
                r#"<samlp:RequestedAuthnContext Comparison="exact"><saml:AuthnContextClassRef>{}</saml:AuthnContextClassRef></samlp:RequestedAuthnContext>"#,
                xml_escape(c)
            )
        })
        .unwrap_or_default();
    let mut flags = String::new();
    if spec.force_authn {
        flags.push_str(r#" ForceAuthn="true""#);
    }
    if spec.is_passive {
        flags.push_str(r#" IsPassive="true""#);
    }
    format!(
        r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{instant}" Destination="{dest}" AssertionConsumerServiceURL="{acs}" ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"{flags}><saml:Issuer>{issuer}</saml:Issuer>{policy}{context}</samlp:AuthnRequest>"#,
        id = xml_escape(spec.id),
        instant = spec
            .issue_instant
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        dest = xml_escape(spec.destination),
        acs = xml_escape(spec.acs_url),
        issuer = xml_escape(spec.sp_entity_id),
    )
}

/// The IdP URL carrying the deflated, base64'd request and the RelayState token; with a key,
/// also `SigAlg` (rsa-sha256) and `Signature` over the exact query octets
/// `SAMLRequest=…&RelayState=…&SigAlg=…` as they appear in the URL.
pub fn redirect_url(
    sso_url: &str,
    request_xml: &str,
    relay_state: &str,
    signing_key: Option<&DecryptionKey>,
) -> Result<String, String> {
    redirect_message_url(
        sso_url,
        "SAMLRequest",
        request_xml,
        Some(relay_state),
        signing_key,
    )
}

/// [`redirect_url`] for any message: `param` is `SAMLRequest` or `SAMLResponse` (Single
/// Logout), and the RelayState is left out when `None`.
pub fn redirect_message_url(
    sso_url: &str,
    param: &str,
    request_xml: &str,
    relay_state: Option<&str>,
    signing_key: Option<&DecryptionKey>,
) -> Result<String, String> {
    let mut deflated = Vec::with_capacity(request_xml.len());
    {
        let mut enc = DeflateEncoder::new(&mut deflated, Compression::default());
        enc.write_all(request_xml.as_bytes())
            .map_err(|e| e.to_string())?;
        enc.finish().map_err(|e| e.to_string())?;
    }
    let mut url = url::Url::parse(sso_url).map_err(|e| format!("IdP SSO URL {sso_url:?}: {e}"))?;
    let mut ours = url::form_urlencoded::Serializer::new(String::new());
    ours.append_pair(param, &STANDARD.encode(&deflated));
    if let Some(relay_state) = relay_state {
        ours.append_pair("RelayState", relay_state);
    }
    let mut ours = ours.finish();
    if let Some(key) = signing_key {
        let mut sig_alg = url::form_urlencoded::Serializer::new(String::new());
        sig_alg.append_pair("SigAlg", SIG_ALG_RSA_SHA256);
        ours.push('&');
        ours.push_str(&sig_alg.finish());
        let signature = sign_rsa_sha256(key, ours.as_bytes())?;
        let mut sig = url::form_urlencoded::Serializer::new(String::new());
        sig.append_pair("Signature", &STANDARD.encode(signature));
        ours.push('&');
        ours.push_str(&sig.finish());
    }
    // The serialized pairs hold only characters a query keeps as they are: set_query leaves
    // the signed octets untouched.
    let query = match url.query() {
        Some(q) if !q.is_empty() => format!("{q}&{ours}"),
        _ => ours,
    };
    url.set_query(Some(&query));
    Ok(url.into())
}

fn sign_rsa_sha256(key: &DecryptionKey, data: &[u8]) -> Result<Vec<u8>, String> {
    let mut signer = Signer::new(MessageDigest::sha256(), key.private_key())
        .map_err(|e| format!("cannot sign the SAML message: {e}"))?;
    signer
        .update(data)
        .map_err(|e| format!("cannot sign the SAML message: {e}"))?;
    signer
        .sign_to_vec()
        .map_err(|e| format!("cannot sign the SAML message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Read;

    fn spec<'a>() -> AuthnRequestSpec<'a> {
        AuthnRequestSpec {
            id: "_abc",
            issue_instant: chrono::Utc::now(),
            destination: "https://idp/sso?tenant=1",
            acs_url: "https://app/saml/acs",
            sp_entity_id: "https://app/saml/metadata",
            name_id_format: None,
            force_authn: false,
            is_passive: false,
            authn_context_class_ref: None,
        }
    }

    fn query(url: &str) -> HashMap<String, String> {
        url::Url::parse(url)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect()
    }

    fn inflate(b64: &str) -> String {
        let raw = STANDARD.decode(b64).unwrap();
        let mut out = String::new();
        flate2::read::DeflateDecoder::new(&raw[..])
            .read_to_string(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn request_ids_are_long_random_ncnames() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 33);
        assert!(a.starts_with('_') && a[1..].bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn redirect_url_carries_an_inflatable_request_and_keeps_existing_query() {
        let xml = authn_request_xml(&spec());
        let url = redirect_url("https://idp/sso?tenant=1", &xml, "tok", None).unwrap();
        let pairs = query(&url);
        assert_eq!(pairs["tenant"], "1");
        assert_eq!(pairs["RelayState"], "tok");
        assert!(!pairs.contains_key("SigAlg") && !pairs.contains_key("Signature"));
        let out = inflate(&pairs["SAMLRequest"]);
        assert_eq!(out, xml);
        let parsed: samael::schema::AuthnRequest = out.parse().unwrap();
        assert_eq!(parsed.id, "_abc");
        assert_eq!(
            parsed.assertion_consumer_service_url.as_deref(),
            Some("https://app/saml/acs")
        );
    }

    #[test]
    fn options_are_absent_by_default() {
        let xml = authn_request_xml(&spec());
        assert!(!xml.contains("ForceAuthn"));
        assert!(!xml.contains("IsPassive"));
        assert!(!xml.contains("RequestedAuthnContext"));
        assert!(xml.contains(r#"<samlp:NameIDPolicy AllowCreate="true"/>"#));
    }

    #[test]
    fn options_appear_escaped_and_in_schema_order() {
        let xml = authn_request_xml(&AuthnRequestSpec {
            name_id_format: Some("urn:x:<fmt>&\""),
            force_authn: true,
            is_passive: true,
            authn_context_class_ref: Some("urn:x:mfa?a=1&b=<2>"),
            ..spec()
        });
        assert!(xml.contains(r#" ForceAuthn="true""#), "{xml}");
        assert!(xml.contains(r#" IsPassive="true""#), "{xml}");
        assert!(
            xml.contains(r#"Format="urn:x:&lt;fmt&gt;&amp;&quot;""#),
            "{xml}"
        );
        assert!(xml.contains(
            r#"<samlp:RequestedAuthnContext Comparison="exact"><saml:AuthnContextClassRef>urn:x:mfa?a=1&amp;b=&lt;2&gt;</saml:AuthnContextClassRef></samlp:RequestedAuthnContext></samlp:AuthnRequest>"#
        ), "{xml}");
        assert!(xml.find("NameIDPolicy").unwrap() < xml.find("RequestedAuthnContext").unwrap());
        let parsed: samael::schema::AuthnRequest = xml.parse().expect("samael parses it");
        assert_eq!(parsed.force_authn, Some(true));
        assert_eq!(parsed.is_passive, Some(true));
        let ctx = parsed
            .requested_authn_context
            .expect("RequestedAuthnContext");
        let refs: Vec<String> = ctx
            .authn_context_class_refs
            .into_iter()
            .flatten()
            .filter_map(|r| r.value)
            .collect();
        assert_eq!(refs, vec!["urn:x:mfa?a=1&b=<2>".to_string()]);

        let only_force = authn_request_xml(&AuthnRequestSpec {
            force_authn: true,
            ..spec()
        });
        assert!(only_force.contains("ForceAuthn") && !only_force.contains("IsPassive"));
    }

    fn sp_pair() -> (DecryptionKey, String) {
        let pair = crate::certgen::self_signed(&crate::certgen::CertSpec {
            common_name: "sp".into(),
            rsa_bits: 2048,
            days: 5,
            purpose: crate::certgen::Purpose::Saml,
            san: vec![],
        })
        .unwrap();
        let key = DecryptionKey::from_pem(pair.key_pem().unwrap().as_bytes()).unwrap();
        (key, pair.cert_pem().unwrap())
    }

    /// Verifies a Redirect-binding signature the way an IdP does: over the raw query octets.
    fn verify_query(raw_query: &str, cert_pem: &str) -> bool {
        let parts: Vec<&str> = raw_query.split('&').collect();
        let find = |name: &str| {
            parts
                .iter()
                .copied()
                .find(|p| p.starts_with(&format!("{name}=")))
        };
        let (Some(req), Some(relay), Some(alg), Some(sig)) = (
            find("SAMLRequest"),
            find("RelayState"),
            find("SigAlg"),
            find("Signature"),
        ) else {
            return false;
        };
        let signed = format!("{req}&{relay}&{alg}");
        let sig: String = url::form_urlencoded::parse(sig.as_bytes())
            .next()
            .unwrap()
            .1
            .into_owned();
        let sig = STANDARD.decode(sig).unwrap();
        let cert = openssl::x509::X509::from_pem(cert_pem.as_bytes()).unwrap();
        let public = cert.public_key().unwrap();
        let mut v = openssl::sign::Verifier::new(MessageDigest::sha256(), &public).unwrap();
        v.update(signed.as_bytes()).unwrap();
        v.verify(&sig).unwrap_or(false)
    }

    #[test]
    fn signed_redirect_verifies_with_the_sp_certificate_over_the_query_octets() {
        let (key, cert) = sp_pair();
        let xml = authn_request_xml(&spec());
        // A RelayState needing escapes proves the signature covers the encoded form.
        let url = redirect_url("https://idp/sso?tenant=1", &xml, "t/o+k=n", Some(&key)).unwrap();
        let raw = url::Url::parse(&url).unwrap().query().unwrap().to_string();
        assert!(raw.starts_with("tenant=1&SAMLRequest="), "{raw}");
        let pairs = query(&url);
        assert_eq!(pairs["SigAlg"], SIG_ALG_RSA_SHA256);
        assert_eq!(pairs["RelayState"], "t/o+k=n");
        assert_eq!(inflate(&pairs["SAMLRequest"]), xml);
        // Order of the signed parameters, as §3.4.4.1 requires.
        let names: Vec<&str> = raw
            .split('&')
            .map(|p| p.split('=').next().unwrap())
            .collect();
        assert_eq!(
            names,
            vec!["tenant", "SAMLRequest", "RelayState", "SigAlg", "Signature"]
        );
        assert!(verify_query(&raw, &cert), "signature verifies: {raw}");

        // Tampering with any signed octet breaks it.
        let tampered_relay = raw.replace("RelayState=t", "RelayState=T");
        assert_ne!(tampered_relay, raw);
        assert!(!verify_query(&tampered_relay, &cert));
        let tampered_alg = raw.replace("rsa-sha256", "rsa-sha512");
        assert!(!verify_query(&tampered_alg, &cert));
        let other = authn_request_xml(&AuthnRequestSpec {
            id: "_other",
            ..spec()
        });
        let other_url = redirect_url("https://idp/sso", &other, "t/o+k=n", None).unwrap();
        let other_req = url::Url::parse(&other_url)
            .unwrap()
            .query()
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .to_string();
        let swapped = raw
            .split('&')
            .map(|p| {
                if p.starts_with("SAMLRequest=") {
                    other_req.clone()
                } else {
                    p.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("&");
        assert!(!verify_query(&swapped, &cert), "swapped SAMLRequest fails");
        // Another key's certificate does not verify it.
        let (_, stranger) = sp_pair();
        assert!(!verify_query(&raw, &stranger));
    }
}
