//! The service providers the dev IdP answers: from SP metadata files or from an entity ID and
//! ACS URL given on the command line, and the check that an AuthnRequest's ACS URL belongs to
//! the SP it claims to come from (a real IdP's main defence against sending assertions to an
//! attacker's URL). Pure.

use samael::metadata::{EntitiesDescriptor, EntityDescriptor, EntityDescriptorType};

const BINDING_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
const BINDING_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";

/// One SP the dev IdP will issue assertions to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceProvider {
    pub entity_id: String,
    /// HTTP-POST ACS URLs, the default first.
    pub acs_urls: Vec<String>,
    /// HTTP-Redirect SingleLogoutService, if the SP has one.
    pub slo_url: Option<String>,
}

impl ServiceProvider {
    /// The ACS URL an unsolicited response goes to.
    pub fn default_acs(&self) -> &str {
        self.acs_urls.first().map(String::as_str).unwrap_or("")
    }
}

fn http_url(raw: &str, what: &str) -> Result<String, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("{what} {raw:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "{what} {raw:?} must be an http:// or https:// URL with a host"
        ));
    }
    Ok(raw.to_string())
}

/// An SP from `--sp-entity-id` and `--acs-url`.
pub fn from_flags(
    entity_id: &str,
    acs_url: &str,
    slo_url: Option<&str>,
) -> Result<ServiceProvider, String> {
    if entity_id.trim().is_empty() {
        return Err("--sp-entity-id must not be empty".into());
    }
    Ok(ServiceProvider {
        entity_id: entity_id.to_string(),
        acs_urls: vec![http_url(acs_url, "--acs-url")?],
        slo_url: slo_url.map(|u| http_url(u, "--slo-url")).transpose()?,
    })
}

/// Pairs repeated `--sp-entity-id` / `--acs-url` flags by position.
pub fn pair_flags(
    entity_ids: &[String],
    acs_urls: &[String],
) -> Result<Vec<ServiceProvider>, String> {
    if entity_ids.len() != acs_urls.len() {
        return Err(format!(
            "every --sp-entity-id needs its --acs-url (got {} entity IDs and {} ACS URLs)",
            entity_ids.len(),
            acs_urls.len()
        ));
    }
    entity_ids
        .iter()
        .zip(acs_urls)
        .map(|(e, a)| from_flags(e, a, None))
        .collect()
}

/// Every SP in an `EntityDescriptor` or `EntitiesDescriptor` document.
pub fn parse_sp_metadata(xml: &str) -> Result<Vec<ServiceProvider>, String> {
    let descriptors: Vec<EntityDescriptor> = match xml.parse::<EntityDescriptor>() {
        Ok(ed) if ed.sp_sso_descriptors.is_some() => vec![ed],
        _ => {
            let all = xml
                .parse::<EntitiesDescriptor>()
                .map_err(|e| format!("not SAML metadata with an SPSSODescriptor: {e}"))?;
            EntityDescriptorType::EntitiesDescriptor(all)
                .iter()
                .filter(|ed| ed.sp_sso_descriptors.is_some())
                .cloned()
                .collect()
        }
    };
    let mut out = Vec::new();
    for ed in descriptors {
        let entity_id = ed
            .entity_id
            .clone()
            .filter(|e| !e.trim().is_empty())
            .ok_or("SP metadata without an entityID")?;
        let sp_descs = ed.sp_sso_descriptors.as_deref().unwrap_or_default();
        let mut acs: Vec<(bool, usize, String)> = sp_descs
            .iter()
            .flat_map(|d| d.assertion_consumer_services.iter())
            .filter(|e| e.binding == BINDING_POST)
            .map(|e| (e.is_default != Some(true), e.index, e.location.clone()))
            .collect();
        acs.sort();
        if acs.is_empty() {
            return Err(format!(
                "SP {entity_id:?} has no AssertionConsumerService with the HTTP-POST binding"
            ));
        }
        let slo_url = sp_descs
            .iter()
            .flat_map(|d| d.single_logout_services.iter().flatten())
            .find(|e| e.binding == BINDING_REDIRECT)
            .map(|e| e.location.clone());
        out.push(ServiceProvider {
            entity_id,
            acs_urls: acs
                .into_iter()
                .map(|(_, _, l)| http_url(&l, "AssertionConsumerService"))
                .collect::<Result<_, _>>()?,
            slo_url,
        });
    }
    if out.is_empty() {
        return Err("no SPSSODescriptor found".into());
    }
    Ok(out)
}

/// Why an AuthnRequest is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpError {
    #[error("the AuthnRequest has no Issuer, so the dev IdP cannot tell which SP sent it")]
    NoIssuer,
    #[error("SP {0:?} is not configured in this dev IdP")]
    UnknownSp(String),
    #[error("ACS URL {acs:?} is not one of SP {entity_id:?}'s configured ACS URLs")]
    WrongAcs { entity_id: String, acs: String },
}

/// Finds the SP an AuthnRequest names and the ACS URL to answer at: the request's own
/// `AssertionConsumerServiceURL` when it is one of the SP's, else the SP's default.
pub fn resolve<'a>(
    sps: &'a [ServiceProvider],
    issuer: Option<&str>,
    requested_acs: Option<&str>,
) -> Result<(&'a ServiceProvider, String), SpError> {
    let issuer = issuer
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(SpError::NoIssuer)?;
    let sp = sps
        .iter()
        .find(|sp| sp.entity_id == issuer)
        .ok_or_else(|| SpError::UnknownSp(issuer.to_string()))?;
    match requested_acs {
        None => Ok((sp, sp.default_acs().to_string())),
        Some(acs) if sp.acs_urls.iter().any(|a| a == acs) => Ok((sp, acs.to_string())),
        Some(acs) => Err(SpError::WrongAcs {
            entity_id: sp.entity_id.clone(),
            acs: acs.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp() -> ServiceProvider {
        from_flags("https://app/saml/metadata", "https://app/saml/acs", None).unwrap()
    }

    #[test]
    fn resolves_known_sp_and_its_acs() {
        let sps = [sp()];
        let (found, acs) = resolve(&sps, Some("https://app/saml/metadata"), None).unwrap();
        assert_eq!(found.entity_id, "https://app/saml/metadata");
        assert_eq!(acs, "https://app/saml/acs");
        let (_, acs) = resolve(
            &sps,
            Some("https://app/saml/metadata"),
            Some("https://app/saml/acs"),
        )
        .unwrap();
        assert_eq!(acs, "https://app/saml/acs");
    }

    #[test]
    fn refuses_unknown_sp_wrong_acs_and_no_issuer() {
        let sps = [sp()];
        assert_eq!(
            resolve(&sps, Some("https://evil"), None).unwrap_err(),
            SpError::UnknownSp("https://evil".into())
        );
        assert!(matches!(
            resolve(
                &sps,
                Some("https://app/saml/metadata"),
                Some("https://evil/acs")
            ),
            Err(SpError::WrongAcs { .. })
        ));
        assert_eq!(resolve(&sps, None, None).unwrap_err(), SpError::NoIssuer);
        assert_eq!(
            resolve(&sps, Some(" "), None).unwrap_err(),
            SpError::NoIssuer
        );
        assert!(resolve(&[], Some("https://app/saml/metadata"), None).is_err());
    }

    #[test]
    fn flags_pair_by_position_and_need_urls() {
        let ok = pair_flags(
            &["a".into(), "b".into()],
            &["http://a/acs".into(), "http://b/acs".into()],
        )
        .unwrap();
        assert_eq!(ok[1].entity_id, "b");
        assert_eq!(ok[1].default_acs(), "http://b/acs");
        assert!(pair_flags(&["a".into()], &[]).is_err());
        assert!(pair_flags(&["a".into()], &["javascript:alert(1)".into()]).is_err());
        assert!(pair_flags(&["".into()], &["http://a/acs".into()]).is_err());
    }

    #[test]
    fn reads_sp_metadata_like_samlgates_own() {
        let xml = crate::saml::metadata::sp_metadata_xml(&crate::saml::metadata::SpMetadata {
            entity_id: "http://127.0.0.1:8000/saml/metadata",
            acs_url: "http://127.0.0.1:8000/saml/acs",
            name_id_format: None,
            cert_pem: None,
            want_assertions_signed: true,
            authn_requests_signed: false,
        });
        let sps = parse_sp_metadata(&xml).unwrap();
        assert_eq!(
            sps,
            [ServiceProvider {
                entity_id: "http://127.0.0.1:8000/saml/metadata".into(),
                acs_urls: vec!["http://127.0.0.1:8000/saml/acs".into()],
                slo_url: None,
            }]
        );
    }

    #[test]
    fn reads_default_acs_first_and_redirect_slo() {
        let xml = r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://sp"><md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://sp/slo"/><md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp/acs0" index="0"/><md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact" Location="https://sp/art" index="1"/><md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp/acs2" index="2" isDefault="true"/></md:SPSSODescriptor></md:EntityDescriptor>"#;
        let sps = parse_sp_metadata(xml).unwrap();
        assert_eq!(sps[0].acs_urls, ["https://sp/acs2", "https://sp/acs0"]);
        assert_eq!(sps[0].slo_url.as_deref(), Some("https://sp/slo"));
    }

    #[test]
    fn refuses_metadata_without_sp_or_post_acs() {
        assert!(parse_sp_metadata("<x/>").is_err());
        let idp_only = r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>"#;
        assert!(parse_sp_metadata(idp_only).is_err());
    }
}
