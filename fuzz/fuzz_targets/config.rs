//! The configuration parser: TOML text plus `SAMLGATE_*` overrides → `FileConfig` →
//! validated `Settings`. Lines `#!SAMLGATE_NAME=value` (TOML comments) become environment
//! overrides, so one input drives both. Never panics; bounded in time and memory.
//!
//! `validate` reads the files the config names; it runs only when every file setting is a
//! bare file name, so reads stay inside a directory this target filled (a metadata file, a
//! cookie secret, a key and certificate) and never reach `/dev/zero` and the like, which an
//! operator's own config could name but an attacker's input cannot.
#![no_main]

use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use samlgate::certgen::{self_signed, CertSpec, Purpose};
use samlgate::config::{parse_with_env, validate, FileConfig};

fn base_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("samlgate-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let pair = self_signed(&CertSpec {
            common_name: "fuzz.example".into(),
            rsa_bits: 2048,
            days: 30,
            purpose: Purpose::Saml,
            san: vec!["fuzz.example".into()],
        })
        .expect("key pair");
        let files: [(&str, Vec<u8>); 5] = [
            ("secret", vec![7u8; 40]),
            ("idp.xml", IDP_METADATA.as_bytes().to_vec()),
            ("key.pem", pair.key_pem().expect("key pem").into_bytes()),
            ("cert.pem", pair.cert_pem().expect("cert pem").into_bytes()),
            ("ca.pem", pair.cert_pem().expect("cert pem").into_bytes()),
        ];
        for (name, bytes) in files {
            std::fs::write(dir.join(name), bytes).expect("seed file");
        }
        dir
    })
}

const IDP_METADATA: &str = r#"<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.example/"><IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example/sso"/></IDPSSODescriptor></EntityDescriptor>"#;

/// Only a bare file name: one normal component, resolved inside [`base_dir`].
fn confined(path: &Option<PathBuf>) -> bool {
    path.as_deref().is_none_or(|p| {
        let mut parts = p.components();
        matches!(parts.next(), Some(Component::Normal(_))) && parts.next().is_none()
    })
}

fn files_confined(f: &FileConfig) -> bool {
    [
        &f.tls.cert_file,
        &f.tls.key_file,
        &f.saml.idp_metadata_file,
        &f.saml.idp_metadata_cache_file,
        &f.saml.idp_metadata_signing_cert_file,
        &f.saml.sp_key_file,
        &f.saml.sp_cert_file,
        &f.session.cookie_secret_file,
        &f.proxy.upstream_ca_file,
    ]
    .into_iter()
    .all(confined)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#!"))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let Ok(file) = parse_with_env(text, &env) else {
        return;
    };
    if files_confined(&file) {
        let _ = validate(file, base_dir());
    }
});
