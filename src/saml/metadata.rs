//! IdP metadata in (entity ID, SSO endpoint, signing certificates — several at once during
//! key rollover) and SP metadata out (what the IdP admin imports).

use samael::metadata::{EntitiesDescriptor, EntityDescriptor, EntityDescriptorType};

use super::decrypt;
use super::xml_escape;

const REDIRECT_BINDING: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
const POST_BINDING: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";

/// What the gateway needs from the IdP's metadata, checked at start.
#[derive(Debug, Clone)]
pub struct IdpInfo {
    pub entity_id: String,
    pub sso_redirect_url: String,
    /// The IdP's `SingleLogoutService` with the HTTP-Redirect binding, if it has one: where
    /// LogoutRequests and LogoutResponses go (its `ResponseLocation` for responses, if set).
    pub slo_redirect_url: Option<String>,
    pub slo_response_url: Option<String>,
    /// The IdP's `SingleLogoutService` with the HTTP-POST binding: where LogoutRequests and
    /// (at its `ResponseLocation`, if set) LogoutResponses go when it offers no HTTP-Redirect
    /// one.
    pub slo_post_url: Option<String>,
    pub slo_post_response_url: Option<String>,
    pub descriptor: EntityDescriptor,
    pub signing_cert_count: usize,
}

impl IdpInfo {
    /// The signing certificates of this metadata, parsed for openssl (a Redirect-binding
    /// logout signature is checked against these; a certificate openssl cannot read is
    /// left out, so it verifies nothing).
    pub fn signing_x509(&self) -> Vec<openssl::x509::X509> {
        samael::service_provider::ServiceProvider {
            idp_metadata: self.descriptor.clone(),
            ..Default::default()
        }
        .idp_signing_certs()
        .ok()
        .flatten()
        .unwrap_or_default()
        .iter()
        .filter_map(|c| openssl::x509::X509::from_der(c.der_data()).ok())
        .collect()
    }
}

/// The SP metadata served at `{prefix}/metadata`, from the `[saml]` settings and the absolute
/// Single Logout URL.
pub fn sp_metadata_for(s: &crate::config::SamlSettings, slo_url: &str) -> String {
    sp_metadata_xml_with_slo(
        &SpMetadata {
            entity_id: &s.sp_entity_id,
            acs_url: &s.acs_url,
            name_id_format: s.name_id_format.as_deref(),
            cert_pem: s.sp_cert_pem.as_deref(),
            want_assertions_signed: s.require_signed_assertion,
            authn_requests_signed: s.sign_authn_requests,
        },
        Some(slo_url),
    )
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetadataError {
    #[error("IdP metadata is not a SAML EntityDescriptor or EntitiesDescriptor: {0}")]
    Unparseable(String),
    #[error("IdP metadata holds {0} IdP entities; set saml.idp_entity_id to pick one")]
    Ambiguous(usize),
    #[error("IdP metadata has no IdP entity with entityID {0:?}")]
    EntityNotFound(String),
    #[error("IdP metadata has no entityID")]
    NoEntityId,
    #[error("IdP metadata has no SingleSignOnService with the HTTP-Redirect binding")]
    NoRedirectSso,
    #[error("IdP metadata has no signing certificate; without one no response could be verified, so samlgate refuses to start")]
    NoSigningCertificate,
    #[error("IdP metadata has a certificate that is not valid base64 DER: {0}")]
    BadCertificate(String),
}

/// Parses the IdP metadata file's text and checks the startup invariants.
pub fn parse_idp_metadata(
    xml: &str,
    wanted_entity: Option<&str>,
) -> Result<IdpInfo, MetadataError> {
    let candidates: Vec<EntityDescriptor> = match xml.parse::<EntityDescriptor>() {
        Ok(ed) if ed.idp_sso_descriptors.is_some() => vec![ed],
        _ => {
            let all = xml
                .parse::<EntitiesDescriptor>()
                .map_err(|e| MetadataError::Unparseable(e.to_string()))?;
            EntityDescriptorType::EntitiesDescriptor(all)
                .iter()
                .filter(|ed| ed.idp_sso_descriptors.is_some())
                .cloned()
                .collect()
        }
    };
    let descriptor = match wanted_entity {
        Some(id) => candidates
            .into_iter()
            .find(|ed| ed.entity_id.as_deref() == Some(id))
            .ok_or_else(|| MetadataError::EntityNotFound(id.to_string()))?,
        None => match candidates.len() {
            0 => {
                return Err(MetadataError::Unparseable(
                    "no IDPSSODescriptor found".into(),
                ))
            }
            1 => candidates
                .into_iter()
                .next()
                .ok_or(MetadataError::NoEntityId)?,
            n => return Err(MetadataError::Ambiguous(n)),
        },
    };
    let entity_id = descriptor
        .entity_id
        .clone()
        .filter(|e| !e.trim().is_empty())
        .ok_or(MetadataError::NoEntityId)?;
    let sso_redirect_url = descriptor
        .idp_sso_descriptors
        .iter()
        .flatten()
        .flat_map(|d| d.single_sign_on_services.iter())
        .find(|e| e.binding == REDIRECT_BINDING)
        .map(|e| e.location.clone())
        .ok_or(MetadataError::NoRedirectSso)?;
    let slo = |binding: &str| {
        descriptor
            .idp_sso_descriptors
            .iter()
            .flatten()
            .flat_map(|d| d.single_logout_services.iter())
            .find(|e| e.binding == binding)
    };
    let response_url = |e: &samael::metadata::Endpoint| {
        e.response_location
            .clone()
            .unwrap_or_else(|| e.location.clone())
    };
    let slo_redirect_url = slo(REDIRECT_BINDING).map(|e| e.location.clone());
    let slo_response_url = slo(REDIRECT_BINDING).map(response_url);
    let slo_post_url = slo(POST_BINDING).map(|e| e.location.clone());
    let slo_post_response_url = slo(POST_BINDING).map(response_url);
    let sp = samael::service_provider::ServiceProvider {
        idp_metadata: descriptor.clone(),
        ..Default::default()
    };
    let certs = sp
        .idp_signing_certs()
        .map_err(|e| MetadataError::BadCertificate(e.to_string()))?
        .unwrap_or_default();
    if certs.is_empty() {
        return Err(MetadataError::NoSigningCertificate);
    }
    Ok(IdpInfo {
        entity_id,
        sso_redirect_url,
        slo_redirect_url,
        slo_response_url,
        slo_post_url,
        slo_post_response_url,
        descriptor,
        signing_cert_count: certs.len(),
    })
}

/// What goes into our SP metadata.
pub struct SpMetadata<'a> {
    pub entity_id: &'a str,
    pub acs_url: &'a str,
    pub name_id_format: Option<&'a str>,
    /// PEM of the SP certificate, when one is configured. It is published for signing and,
    /// when it holds an RSA key, for encryption: configuration only accepts a certificate
    /// together with its matching private key (`saml.sp_key_file`), which decrypts.
    pub cert_pem: Option<&'a str>,
    pub want_assertions_signed: bool,
    /// `saml.sign_authn_requests`: AuthnRequests carry a Redirect-binding signature.
    pub authn_requests_signed: bool,
}

/// Algorithms advertised with the encryption key (rsa-1_5 never is, even when allowed).
const ENCRYPTION_METHODS: &[&str] = &[
    decrypt::ALG_AES256_GCM,
    decrypt::ALG_AES128_GCM,
    decrypt::ALG_AES256_CBC,
    decrypt::ALG_AES128_CBC,
    decrypt::ALG_RSA_OAEP_MGF1P,
];

/// Whether the PEM certificate parses and carries an RSA public key.
fn holds_rsa_key(pem: &str) -> bool {
    openssl::x509::X509::from_pem(pem.as_bytes())
        .and_then(|c| c.public_key())
        .is_ok_and(|k| k.rsa().is_ok())
}

/// Renders an `md:EntityDescriptor` for the IdP admin to import.
pub fn sp_metadata_xml(md: &SpMetadata<'_>) -> String {
    sp_metadata_xml_with_slo(md, None)
}

/// [`sp_metadata_xml`] plus, with `slo_url`, a `SingleLogoutService` for each binding the
/// endpoint accepts: HTTP-Redirect first (what most IdPs pick), then HTTP-POST (Okta's choice).
pub fn sp_metadata_xml_with_slo(md: &SpMetadata<'_>, slo_url: Option<&str>) -> String {
    let slo = slo_url
        .map(|u| {
            [REDIRECT_BINDING, POST_BINDING]
                .iter()
                .map(|b| {
                    format!(
                        "<md:SingleLogoutService Binding=\"{b}\" Location=\"{}\"/>",
                        xml_escape(u)
                    )
                })
                .collect::<String>()
        })
        .unwrap_or_default();
    let mut key = String::new();
    if let Some(pem) = md.cert_pem {
        let b64: String = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .join("");
        if !b64.is_empty() {
            let key_info = format!(
                "<ds:KeyInfo xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>",
                xml_escape(&b64)
            );
            key.push_str(&format!(
                "<md:KeyDescriptor use=\"signing\">{key_info}</md:KeyDescriptor>"
            ));
            if holds_rsa_key(pem) {
                // What we decrypt, preferred first: IdPs that read EncryptionMethod (Shibboleth)
                // then choose authenticated AES-GCM over CBC.
                let methods: String = ENCRYPTION_METHODS
                    .iter()
                    .map(|a| format!("<md:EncryptionMethod Algorithm=\"{a}\"/>"))
                    .collect();
                key.push_str(&format!(
                    "<md:KeyDescriptor use=\"encryption\">{key_info}{methods}</md:KeyDescriptor>"
                ));
            }
        }
    }
    let name_id = md
        .name_id_format
        .map(|f| format!("<md:NameIDFormat>{}</md:NameIDFormat>", xml_escape(f)))
        .unwrap_or_default();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" entityID=\"{entity}\"><md:SPSSODescriptor AuthnRequestsSigned=\"{ars}\" WantAssertionsSigned=\"{was}\" protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">{key}{slo}{name_id}<md:AssertionConsumerService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\" Location=\"{acs}\" index=\"0\" isDefault=\"true\"/></md:SPSSODescriptor></md:EntityDescriptor>\n",
        entity = xml_escape(md.entity_id),
        acs = xml_escape(md.acs_url),
        was = md.want_assertions_signed,
        ars = md.authn_requests_signed,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "MIIBszCCAVmgAwIBAgIUYm9ndXMgY2VydCBmb3IgdGVzdHMwCgYIKoZIzj0EAwIwEDEOMAwGA1UEAwwFdGVzdHMwHhcNMjQwMTAxMDAwMDAwWhcNMzQwMTAxMDAwMDAwWjAQMQ4wDAYDVQQDDAV0ZXN0czBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABA==";

    fn idp(entity: &str, keys: &str, sso_binding: &str) -> String {
        format!(
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{entity}"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">{keys}<md:SingleSignOnService Binding="{sso_binding}" Location="https://idp.example.com/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>"#
        )
    }

    fn key(usage: &str) -> String {
        format!(
            r#"<md:KeyDescriptor use="{usage}"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>{CERT}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#
        )
    }

    #[test]
    fn reads_entity_sso_and_all_signing_certs() {
        let xml = idp(
            "https://idp",
            &format!("{}{}", key("signing"), key("signing")),
            REDIRECT_BINDING,
        );
        let info = parse_idp_metadata(&xml, None).unwrap();
        assert_eq!(info.entity_id, "https://idp");
        assert_eq!(info.sso_redirect_url, "https://idp.example.com/sso");
        assert_eq!(info.signing_cert_count, 2);
    }

    #[test]
    fn reads_the_redirect_single_logout_service() {
        let xml = idp("https://idp", &key("signing"), REDIRECT_BINDING);
        let info = parse_idp_metadata(&xml, None).unwrap();
        assert_eq!(info.slo_redirect_url, None);
        assert_eq!(info.slo_response_url, None);
        let post = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
        let with_slo = xml.replace(
            "<md:SingleSignOnService",
            &format!(
                r#"<md:SingleLogoutService Binding="{post}" Location="https://idp.example.com/slo-post"/><md:SingleLogoutService Binding="{REDIRECT_BINDING}" Location="https://idp.example.com/slo" ResponseLocation="https://idp.example.com/slo-resp"/><md:SingleSignOnService"#
            ),
        );
        let info = parse_idp_metadata(&with_slo, None).unwrap();
        assert_eq!(
            info.slo_redirect_url.as_deref(),
            Some("https://idp.example.com/slo")
        );
        assert_eq!(
            info.slo_response_url.as_deref(),
            Some("https://idp.example.com/slo-resp")
        );
        assert_eq!(
            info.slo_post_url.as_deref(),
            Some("https://idp.example.com/slo-post")
        );
        assert_eq!(
            info.slo_post_response_url.as_deref(),
            Some("https://idp.example.com/slo-post")
        );
    }

    #[test]
    fn sp_metadata_lists_the_slo_endpoint_when_given() {
        let md = SpMetadata {
            entity_id: "https://app/saml/metadata",
            acs_url: "https://app/saml/acs",
            name_id_format: None,
            cert_pem: None,
            want_assertions_signed: true,
            authn_requests_signed: false,
        };
        assert!(!sp_metadata_xml(&md).contains("SingleLogoutService"));
        let xml = sp_metadata_xml_with_slo(&md, Some("https://app/saml/slo"));
        assert!(xml.contains(&format!(
            r#"<md:SingleLogoutService Binding="{REDIRECT_BINDING}" Location="https://app/saml/slo"/>"#
        )));
        let parsed: EntityDescriptor = xml.parse().expect("samael parses it");
        let sp = &parsed.sp_sso_descriptors.unwrap()[0];
        let slo: Vec<(&str, &str)> = sp
            .single_logout_services
            .iter()
            .flatten()
            .map(|e| (e.binding.as_str(), e.location.as_str()))
            .collect();
        assert_eq!(
            slo,
            [
                (REDIRECT_BINDING, "https://app/saml/slo"),
                (POST_BINDING, "https://app/saml/slo")
            ]
        );
    }

    #[test]
    fn refuses_metadata_without_a_signing_certificate() {
        let xml = idp("https://idp", &key("encryption"), REDIRECT_BINDING);
        assert_eq!(
            parse_idp_metadata(&xml, None).unwrap_err(),
            MetadataError::NoSigningCertificate
        );
        let xml = idp("https://idp", "", REDIRECT_BINDING);
        assert_eq!(
            parse_idp_metadata(&xml, None).unwrap_err(),
            MetadataError::NoSigningCertificate
        );
    }

    #[test]
    fn refuses_metadata_without_redirect_sso() {
        let xml = idp(
            "https://idp",
            &key("signing"),
            "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST",
        );
        assert_eq!(
            parse_idp_metadata(&xml, None).unwrap_err(),
            MetadataError::NoRedirectSso
        );
    }

    #[test]
    fn picks_the_named_entity_from_an_aggregate() {
        let xml = format!(
            r#"<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata">{}{}</md:EntitiesDescriptor>"#,
            idp("https://a", &key("signing"), REDIRECT_BINDING),
            idp("https://b", &key("signing"), REDIRECT_BINDING)
        );
        assert_eq!(
            parse_idp_metadata(&xml, None).unwrap_err(),
            MetadataError::Ambiguous(2)
        );
        assert_eq!(
            parse_idp_metadata(&xml, Some("https://b"))
                .unwrap()
                .entity_id,
            "https://b"
        );
        assert!(matches!(
            parse_idp_metadata(&xml, Some("https://c")),
            Err(MetadataError::EntityNotFound(_))
        ));
    }

    #[test]
    fn sp_metadata_names_entity_acs_and_cert() {
        let xml = sp_metadata_xml(&SpMetadata {
            entity_id: "https://app/saml/metadata",
            acs_url: "https://app/saml/acs?x=<y>",
            name_id_format: Some("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"),
            cert_pem: Some("-----BEGIN CERTIFICATE-----\nAAAA\nBBBB\n-----END CERTIFICATE-----\n"),
            want_assertions_signed: true,
            authn_requests_signed: false,
        });
        assert!(xml.contains(r#"entityID="https://app/saml/metadata""#));
        assert!(xml.contains(r#"AuthnRequestsSigned="false""#));
        assert!(xml.contains(r#"Location="https://app/saml/acs?x=&lt;y&gt;""#));
        assert!(xml.contains("<ds:X509Certificate>AAAABBBB</ds:X509Certificate>"));
        assert!(xml.contains("emailAddress</md:NameIDFormat>"));
        assert!(xml.parse::<EntityDescriptor>().is_ok());
        // Not a real certificate: signing only, never advertised for encryption.
        assert!(!xml.contains("use=\"encryption\""));
    }

    #[test]
    fn sp_metadata_publishes_an_rsa_cert_for_encryption_too() {
        let pair = crate::certgen::self_signed(&crate::certgen::CertSpec {
            common_name: "sp".into(),
            rsa_bits: 2048,
            days: 5,
            purpose: crate::certgen::Purpose::Saml,
            san: vec![],
        })
        .unwrap();
        let pem = pair.cert_pem().unwrap();
        let xml = sp_metadata_xml(&SpMetadata {
            entity_id: "https://app/saml/metadata",
            acs_url: "https://app/saml/acs",
            name_id_format: None,
            cert_pem: Some(&pem),
            want_assertions_signed: true,
            authn_requests_signed: true,
        });
        assert!(xml.contains(r#"AuthnRequestsSigned="true""#));
        let ed: EntityDescriptor = xml.parse().expect("samael parses our metadata");
        let sp = &ed.sp_sso_descriptors.as_ref().unwrap()[0];
        let kds = sp.key_descriptors.as_ref().unwrap();
        let uses: Vec<Option<&str>> = kds.iter().map(|k| k.key_use.as_deref()).collect();
        assert_eq!(uses, vec![Some("signing"), Some("encryption")]);
        let methods: Vec<String> = kds[1]
            .encryption_methods
            .iter()
            .flatten()
            .map(|m| m.algorithm.clone())
            .collect();
        assert_eq!(
            methods.first().map(String::as_str),
            Some(decrypt::ALG_AES256_GCM)
        );
        assert!(methods.iter().any(|m| m == decrypt::ALG_RSA_OAEP_MGF1P));
        assert!(!xml.contains("rsa-1_5"));
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert_eq!(xml.matches(&format!(">{b64}<")).count(), 2, "{xml}");
    }
}
