//! SAML messages the dev IdP reads and writes besides the Response: the HTTP-Redirect
//! binding both ways (raw deflate + base64), AuthnRequest and LogoutRequest parsing (samael's
//! `FromStr`), the LogoutResponse, and the IdP's own metadata. Pure.

use std::io::{Read, Write};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use flate2::Compression;

use super::response::{ts, NAMEID_EMAIL, NAMEID_PERSISTENT, NAMEID_TRANSIENT, NAMEID_UNSPECIFIED};
use super::response::{NS_DS, NS_SAML, NS_SAMLP, STATUS_SUCCESS};
use crate::saml::xml_escape;

pub const BINDING_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
pub const BINDING_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
pub const NS_MD: &str = "urn:oasis:names:tc:SAML:2.0:metadata";

/// Largest inflated message accepted (requests are a few hundred bytes).
pub const MAX_INFLATED: usize = 64 * 1024;
/// Longest request ID echoed back in InResponseTo.
const MAX_ID_LEN: usize = 256;

/// Decodes an HTTP-Redirect binding parameter: base64 (a `+` turned into a space by
/// form decoding is put back), then raw deflate, capped at [`MAX_INFLATED`] bytes, UTF-8.
pub fn decode_redirect(param: &str) -> Result<String, String> {
    let cleaned: String = param
        .chars()
        .filter(|c| !matches!(c, '\r' | '\n' | '\t'))
        .map(|c| if c == ' ' { '+' } else { c })
        .collect();
    if cleaned.len() > MAX_INFLATED * 2 {
        return Err("the message is too large".into());
    }
    let raw = STANDARD
        .decode(cleaned.as_bytes())
        .map_err(|e| format!("not base64: {e}"))?;
    let mut out = Vec::new();
    DeflateDecoder::new(&raw[..])
        .take(MAX_INFLATED as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("not raw deflate: {e}"))?;
    if out.len() > MAX_INFLATED {
        return Err(format!("inflates to more than {MAX_INFLATED} bytes"));
    }
    String::from_utf8(out).map_err(|_| "not UTF-8".to_string())
}

/// Raw deflate + base64: the value of `SAMLRequest` / `SAMLResponse` in a redirect.
pub fn encode_redirect(xml: &str) -> String {
    let mut enc = DeflateEncoder::new(Vec::with_capacity(xml.len()), Compression::default());
    // Writing into a Vec cannot fail.
    let deflated = enc
        .write_all(xml.as_bytes())
        .and_then(|_| enc.finish())
        .unwrap_or_default();
    STANDARD.encode(deflated)
}

/// `endpoint` with `param` (the encoded message) and `RelayState` (if any) appended to its
/// query. Unsigned (no `SigAlg`/`Signature`).
pub fn redirect_url(
    endpoint: &str,
    param: &str,
    xml: &str,
    relay_state: Option<&str>,
) -> Result<String, String> {
    let mut url = url::Url::parse(endpoint).map_err(|e| format!("{endpoint:?}: {e}"))?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair(param, &encode_redirect(xml));
        if let Some(r) = relay_state {
            q.append_pair("RelayState", r);
        }
    }
    Ok(url.into())
}

fn checked_id(id: &str) -> Result<String, String> {
    let id = id.trim();
    if id.is_empty() {
        return Err("the message has no ID".into());
    }
    if id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return Err("the message ID is too long or has control characters".into());
    }
    Ok(id.to_string())
}

/// What the dev IdP uses from an AuthnRequest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthnRequestInfo {
    pub id: String,
    pub issuer: Option<String>,
    pub acs_url: Option<String>,
    pub name_id_format: Option<String>,
}

/// Parses an AuthnRequest. Refuses a request that asks for a binding other than HTTP-POST
/// (the only one the dev IdP answers with) or an ACS index (only URLs are supported).
pub fn parse_authn_request(xml: &str) -> Result<AuthnRequestInfo, String> {
    let req: samael::schema::AuthnRequest = xml
        .parse()
        .map_err(|e| format!("not a SAML AuthnRequest: {e}"))?;
    if let Some(b) = &req.protocol_binding {
        if b != BINDING_POST {
            return Err(format!(
                "the AuthnRequest asks for the binding {b:?}; the dev IdP answers by HTTP-POST only"
            ));
        }
    }
    if req.assertion_consumer_service_index.is_some()
        && req.assertion_consumer_service_url.is_none()
    {
        return Err(
            "AssertionConsumerServiceIndex is not supported; send AssertionConsumerServiceURL"
                .into(),
        );
    }
    Ok(AuthnRequestInfo {
        id: checked_id(&req.id)?,
        issuer: req.issuer.as_ref().and_then(|i| i.value.clone()),
        acs_url: req.assertion_consumer_service_url.clone(),
        name_id_format: req.name_id_policy.as_ref().and_then(|p| p.format.clone()),
    })
}

/// What the dev IdP uses from a LogoutRequest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutRequestInfo {
    pub id: String,
    pub issuer: Option<String>,
    pub name_id: Option<String>,
}

pub fn parse_logout_request(xml: &str) -> Result<LogoutRequestInfo, String> {
    let req: samael::schema::LogoutRequest = xml
        .parse()
        .map_err(|e| format!("not a SAML LogoutRequest: {e}"))?;
    Ok(LogoutRequestInfo {
        id: checked_id(req.id.as_deref().unwrap_or(""))?,
        issuer: req.issuer.as_ref().and_then(|i| i.value.clone()),
        name_id: req.name_id.as_ref().map(|n| n.value.clone()),
    })
}

/// A successful, unsigned `samlp:LogoutResponse`.
pub fn logout_response_xml(
    id: &str,
    issuer: &str,
    destination: &str,
    in_response_to: &str,
    issue_instant: DateTime<Utc>,
) -> String {
    let e = xml_escape;
    format!(
        r#"<samlp:LogoutResponse xmlns:samlp="{NS_SAMLP}" xmlns:saml="{NS_SAML}" ID="{}" Version="2.0" IssueInstant="{}" Destination="{}" InResponseTo="{}"><saml:Issuer>{}</saml:Issuer><samlp:Status><samlp:StatusCode Value="{STATUS_SUCCESS}"/></samlp:Status></samlp:LogoutResponse>"#,
        e(id),
        ts(&issue_instant),
        e(destination),
        e(in_response_to),
        e(issuer),
    )
}

/// The IdP's `md:EntityDescriptor`: one signing `KeyDescriptor`, HTTP-Redirect
/// SingleLogoutService and SingleSignOnService, the NameID formats it can issue.
pub fn idp_metadata_xml(entity_id: &str, sso_url: &str, slo_url: &str, cert_b64: &str) -> String {
    let e = xml_escape;
    let formats: String = [
        NAMEID_PERSISTENT,
        NAMEID_TRANSIENT,
        NAMEID_EMAIL,
        NAMEID_UNSPECIFIED,
    ]
    .iter()
    .map(|f| format!("<md:NameIDFormat>{f}</md:NameIDFormat>"))
    .collect();
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            "\n",
            r#"<md:EntityDescriptor xmlns:md="{md}" xmlns:ds="{ds}" entityID="{entity}">"#,
            r#"<md:IDPSSODescriptor protocolSupportEnumeration="{samlp}" WantAuthnRequestsSigned="false">"#,
            r#"<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#,
            r#"<md:SingleLogoutService Binding="{redirect}" Location="{slo}"/>"#,
            "{formats}",
            r#"<md:SingleSignOnService Binding="{redirect}" Location="{sso}"/>"#,
            r#"</md:IDPSSODescriptor></md:EntityDescriptor>"#,
            "\n"
        ),
        md = NS_MD,
        ds = NS_DS,
        samlp = NS_SAMLP,
        entity = e(entity_id),
        cert = e(cert_b64),
        redirect = BINDING_REDIRECT,
        slo = e(slo_url),
        sso = e(sso_url),
        formats = formats,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saml::authn::{authn_request_xml, AuthnRequestSpec};

    fn gateway_request() -> String {
        authn_request_xml(&AuthnRequestSpec {
            id: "_0123456789abcdef",
            issue_instant: Utc::now(),
            destination: "http://127.0.0.1:7000/sso",
            acs_url: "http://127.0.0.1:8000/saml/acs",
            sp_entity_id: "http://127.0.0.1:8000/saml/metadata",
            name_id_format: None,
            force_authn: false,
            is_passive: false,
            authn_context_class_ref: None,
        })
    }

    #[test]
    fn reads_the_gateways_own_redirect() {
        let url = crate::saml::authn::redirect_url(
            "http://127.0.0.1:7000/sso",
            &gateway_request(),
            "relay+/=",
            None,
        )
        .unwrap();
        let parsed = url::Url::parse(&url).unwrap();
        let q: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
        let xml = decode_redirect(&q["SAMLRequest"]).unwrap();
        let info = parse_authn_request(&xml).unwrap();
        assert_eq!(
            info,
            AuthnRequestInfo {
                id: "_0123456789abcdef".into(),
                issuer: Some("http://127.0.0.1:8000/saml/metadata".into()),
                acs_url: Some("http://127.0.0.1:8000/saml/acs".into()),
                name_id_format: None,
            }
        );
        assert_eq!(q["RelayState"], "relay+/=");
    }

    #[test]
    fn encode_and_decode_round_trip_and_tolerate_unescaped_plus() {
        let xml = "<x>+++ ??? >>> ~~~ a long enough text to get + and / in base64 ÿÿÿ</x>";
        let enc = encode_redirect(xml);
        assert_eq!(decode_redirect(&enc).unwrap(), xml);
        assert_eq!(decode_redirect(&enc.replace('+', " ")).unwrap(), xml);
        assert_eq!(decode_redirect(&format!("{enc}\n")).unwrap(), xml);
    }

    #[test]
    fn refuses_garbage_and_bombs() {
        assert!(decode_redirect("!!!").is_err());
        assert!(decode_redirect(&STANDARD.encode(b"not deflate at all")).is_err());
        let bomb = encode_redirect(&"a".repeat(MAX_INFLATED + 1));
        assert!(decode_redirect(&bomb).unwrap_err().contains("more than"));
        assert!(decode_redirect(&encode_redirect(&"a".repeat(MAX_INFLATED))).is_ok());
        assert!(parse_authn_request("<nope/>").is_err());
    }

    #[test]
    fn refuses_other_bindings_and_index_only_requests() {
        let artifact = gateway_request().replace(
            BINDING_POST,
            "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact",
        );
        assert!(parse_authn_request(&artifact)
            .unwrap_err()
            .contains("HTTP-POST only"));
        let by_index = r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_a" Version="2.0" IssueInstant="2030-01-01T00:00:00Z" AssertionConsumerServiceIndex="1"><saml:Issuer>sp</saml:Issuer></samlp:AuthnRequest>"#;
        assert!(parse_authn_request(by_index).is_err());
        let no_id = gateway_request().replace("ID=\"_0123456789abcdef\"", "ID=\"\"");
        assert!(parse_authn_request(&no_id).is_err());
    }

    #[test]
    fn logout_request_and_response() {
        let req = r#"<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_lr1" Version="2.0" IssueInstant="2030-01-01T00:00:00Z" Destination="http://127.0.0.1:7000/slo"><saml:Issuer>https://sp</saml:Issuer><saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">alice</saml:NameID><samlp:SessionIndex>_s</samlp:SessionIndex></samlp:LogoutRequest>"#;
        let info = parse_logout_request(req).unwrap();
        assert_eq!(info.id, "_lr1");
        assert_eq!(info.issuer.as_deref(), Some("https://sp"));
        assert_eq!(info.name_id.as_deref(), Some("alice"));

        let resp = logout_response_xml(
            "_r",
            "http://idp/metadata",
            "https://sp/slo",
            "_lr1\"",
            Utc::now(),
        );
        let parsed: samael::schema::LogoutResponse = resp.parse().unwrap();
        assert_eq!(parsed.in_response_to.as_deref(), Some("_lr1\""));
        assert_eq!(
            parsed.status.and_then(|s| s.status_code.value).as_deref(),
            Some(STATUS_SUCCESS)
        );
        let url = redirect_url("https://sp/slo?x=1", "SAMLResponse", &resp, Some("rs")).unwrap();
        let parsed = url::Url::parse(&url).unwrap();
        let q: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
        assert_eq!(q["x"], "1");
        assert_eq!(q["RelayState"], "rs");
        assert_eq!(decode_redirect(&q["SAMLResponse"]).unwrap(), resp);
    }

    #[test]
    fn metadata_is_accepted_by_the_gateway() {
        let cert = crate::devidp::response::SigningKey::generate("md").unwrap();
        let xml = idp_metadata_xml(
            "http://127.0.0.1:7000/metadata",
            "http://127.0.0.1:7000/sso",
            "http://127.0.0.1:7000/slo",
            &cert.cert_b64(),
        );
        let info = crate::saml::metadata::parse_idp_metadata(&xml, None).unwrap();
        assert_eq!(info.entity_id, "http://127.0.0.1:7000/metadata");
        assert_eq!(info.sso_redirect_url, "http://127.0.0.1:7000/sso");
        assert_eq!(info.signing_cert_count, 1);
        let idp = &info.descriptor.idp_sso_descriptors.as_ref().unwrap()[0];
        assert_eq!(
            idp.single_logout_services[0].location,
            "http://127.0.0.1:7000/slo"
        );
    }
}
