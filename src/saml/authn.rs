//! AuthnRequests: our own ids (128 random bits), the XML, and the HTTP-Redirect binding URL.

use std::io::Write;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use flate2::write::DeflateEncoder;
use flate2::Compression;

use super::xml_escape;

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
}

pub fn authn_request_xml(spec: &AuthnRequestSpec<'_>) -> String {
    let policy = match spec.name_id_format {
        Some(f) => format!(
            r#"<samlp:NameIDPolicy Format="{}" AllowCreate="true"/>"#,
            xml_escape(f)
        ),
        None => r#"<samlp:NameIDPolicy AllowCreate="true"/>"#.to_string(),
    };
    format!(
        r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{instant}" Destination="{dest}" AssertionConsumerServiceURL="{acs}" ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"><saml:Issuer>{issuer}</saml:Issuer>{policy}</samlp:AuthnRequest>"#,
        id = xml_escape(spec.id),
        instant = spec
            .issue_instant
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        dest = xml_escape(spec.destination),
        acs = xml_escape(spec.acs_url),
        issuer = xml_escape(spec.sp_entity_id),
    )
}

/// The IdP URL carrying the deflated, base64'd request and the RelayState token.
pub fn redirect_url(sso_url: &str, request_xml: &str, relay_state: &str) -> Result<String, String> {
    let mut deflated = Vec::with_capacity(request_xml.len());
    {
        let mut enc = DeflateEncoder::new(&mut deflated, Compression::default());
        enc.write_all(request_xml.as_bytes())
            .map_err(|e| e.to_string())?;
        enc.finish().map_err(|e| e.to_string())?;
    }
    let mut url = url::Url::parse(sso_url).map_err(|e| format!("IdP SSO URL {sso_url:?}: {e}"))?;
    url.query_pairs_mut()
        .append_pair("SAMLRequest", &STANDARD.encode(&deflated))
        .append_pair("RelayState", relay_state);
    Ok(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

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
        let xml = authn_request_xml(&AuthnRequestSpec {
            id: "_abc",
            issue_instant: chrono::Utc::now(),
            destination: "https://idp/sso?tenant=1",
            acs_url: "https://app/saml/acs",
            sp_entity_id: "https://app/saml/metadata",
            name_id_format: None,
        });
        let url = redirect_url("https://idp/sso?tenant=1", &xml, "tok").unwrap();
        let parsed = url::Url::parse(&url).unwrap();
        let pairs: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
        assert_eq!(pairs["tenant"], "1");
        assert_eq!(pairs["RelayState"], "tok");
        let raw = STANDARD.decode(&pairs["SAMLRequest"]).unwrap();
        let mut out = String::new();
        flate2::read::DeflateDecoder::new(&raw[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, xml);
        let parsed: samael::schema::AuthnRequest = out.parse().unwrap();
        assert_eq!(parsed.id, "_abc");
        assert_eq!(
            parsed.assertion_consumer_service_url.as_deref(),
            Some("https://app/saml/acs")
        );
    }
}
