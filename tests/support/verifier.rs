//! Test support: a [`Verifier`] built exactly as the gateway builds it (config validation from
//! files in a directory, then the IdP metadata parse), without a running gateway. Used by
//! `benches/acs.rs` and `tests/verification_keys.rs`.
#![allow(dead_code)]

use std::path::Path;

use samlgate::config::{FileConfig, SamlSection, SessionSection};
use samlgate::saml::metadata::parse_idp_metadata;
use samlgate::saml::verify::Verifier;

/// A verifier for the SP at `public_url` trusting the IdP described by `idp_metadata_xml`;
/// writes its files (metadata, cookie secret) into `dir`.
pub fn verifier(idp_metadata_xml: &str, public_url: &str, dir: &Path) -> Verifier {
    std::fs::write(dir.join("idp.xml"), idp_metadata_xml).unwrap();
    std::fs::write(
        dir.join("cookie.secret"),
        "0123456789abcdef0123456789abcdef-test-secret",
    )
    .unwrap();
    let file = FileConfig {
        public_url: Some(public_url.to_string()),
        upstream: Some("http://127.0.0.1:9".to_string()),
        saml: SamlSection {
            idp_metadata_file: Some("idp.xml".into()),
            ..SamlSection::default()
        },
        session: SessionSection {
            cookie_secret_file: Some("cookie.secret".into()),
            ..SessionSection::default()
        },
        ..FileConfig::default()
    };
    let settings = samlgate::config::validate(file, dir).expect("test config is valid");
    let info = parse_idp_metadata(&settings.saml.idp_metadata_xml, None)
        .expect("minted IdP metadata parses");
    Verifier::new(&settings.saml, info)
}
