//! Writes the fuzz targets' seed corpora (`fuzz/seeds/<target>/`) from the test suite's own
//! material: responses minted and signed by `tests/support/mint.rs` in SimpleSAMLphp's layout,
//! the attack variants `tests/acs_attacks.rs` posts, Single Logout messages built by the
//! gateway's own builders, and the example configurations.
//!
//! `cargo run --example fuzz_seeds -- fuzz/seeds` (`scripts/fuzz.sh --seeds` does this).
//! The committed seeds are its output; fuzzers grow their own corpora from them elsewhere.

#[path = "../tests/support/mint.rs"]
mod mint;

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mint::{attacks, ResponseSpec, TestIdp};
use samlgate::saml::logout::{
    logout_request_xml, logout_response_xml, LogoutRequestSpec, LogoutResponseSpec,
};
use samlgate::session::cookie::Sealer;

const SP: &str = "https://app.example.com/saml/metadata";
const ACS: &str = "https://app.example.com/saml/acs";
const SLO: &str = "https://app.example.com/saml/slo";

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).expect("create seed dir");
    std::fs::write(d.join(name), bytes).expect("write seed");
}

/// `SAMLResponse=<base64, form-encoded>&RelayState=<relay>`.
fn acs_body(xml: &str, relay: &str) -> Vec<u8> {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("SAMLResponse", &STANDARD.encode(xml))
        .append_pair("RelayState", relay)
        .finish()
        .into_bytes()
}

fn deflate_b64(xml: &str) -> String {
    use std::io::Write;
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(xml.as_bytes()).expect("deflate");
    STANDARD.encode(e.finish().expect("deflate"))
}

fn response_seeds(dir: &Path) {
    let idp = TestIdp::generate("https://idp.example/saml2/idp/metadata.php");
    let spec = ResponseSpec::valid(&idp, SP, ACS, Some("_0123456789abcdef0123456789abcdef"));
    let valid = mint::mint(&idp, &spec);
    let mut responses: Vec<(String, String)> = vec![
        ("valid".into(), valid.clone()),
        ("unsigned".into(), attacks::strip_signatures(&valid)),
        (
            "comment_in_nameid".into(),
            attacks::comment_injection(&idp, &spec),
        ),
        ("doctype".into(), attacks::prepend_doctype(&valid)),
        ("xxe".into(), attacks::xxe(&valid)),
        (
            "entity_expansion".into(),
            attacks::entity_expansion(&valid, 3),
        ),
        (
            "processing_instruction".into(),
            attacks::processing_instruction(&valid),
        ),
        (
            "xslt_transform".into(),
            attacks::xslt_transform(&idp, &spec, 3),
        ),
        (
            "external_reference".into(),
            attacks::external_reference(&valid, "http://127.0.0.1:9/x"),
        ),
        (
            "manifest".into(),
            attacks::manifest_reference(&valid, "file:///etc/passwd"),
        ),
        (
            "retrieval_method".into(),
            attacks::retrieval_method(&valid, "http://127.0.0.1:9/k"),
        ),
        ("sha1".into(), attacks::sha1_signed(&idp, &spec)),
        ("extra_root".into(), attacks::extra_root(&valid)),
    ];
    for (name, xml) in attacks::xsw_variants(&idp, &spec, "mallory") {
        responses.push((name.to_lowercase(), xml));
    }
    for (name, xml) in &responses {
        // Selector byte: 0 = Response root (allow_sha1 off), 0x80 = Response with SHA-1 on.
        let mut seed = vec![if name == "sha1" { 0x80 } else { 0 }];
        seed.extend_from_slice(xml.as_bytes());
        write(dir, "prefilter", name, &seed);
    }
    let assertion = mint::assertion_text(&idp, &spec);
    write(
        dir,
        "prefilter",
        "assertion_root",
        &[&[1u8][..], assertion.as_bytes()].concat(),
    );
    let name_id = format!(
        r#"<saml:NameID xmlns:saml="{}">alice</saml:NameID>"#,
        mint::NS_SAML
    );
    write(
        dir,
        "prefilter",
        "name_id_root",
        &[&[2u8][..], name_id.as_bytes()].concat(),
    );

    for name in ["valid", "unsigned", "xsw1", "doctype"] {
        let xml = &responses.iter().find(|(n, _)| n == name).expect("seed").1;
        write(dir, "acs_form", name, &acs_body(xml, "opaque-token"));
    }
    let wrapped = STANDARD
        .encode(&valid)
        .as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\r\n");
    let body = format!(
        "SAMLResponse={}&RelayState=%2Fdashboard",
        url::form_urlencoded::byte_serialize(wrapped.as_bytes()).collect::<String>()
    );
    write(dir, "acs_form", "wrapped_base64", body.as_bytes());
}

fn slo_seeds(dir: &Path) {
    let now = chrono::Utc::now();
    let request = logout_request_xml(&LogoutRequestSpec {
        id: "_a1b2c3",
        issue_instant: now,
        destination: SLO,
        issuer: "https://idp.example/saml2/idp/metadata.php",
        name_id: "alice",
        name_id_format: Some("urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"),
        session_index: Some("_session1"),
    });
    let response = logout_response_xml(&LogoutResponseSpec {
        id: "_r1",
        issue_instant: now,
        destination: SLO,
        in_response_to: "_a1b2c3",
        issuer: "https://idp.example/saml2/idp/metadata.php",
        status_code: "urn:oasis:names:tc:SAML:2.0:status:Success",
    });
    for (name, xml, param) in [
        ("request", &request, "SAMLRequest"),
        ("response", &response, "SAMLResponse"),
    ] {
        write(
            dir,
            "slo_redirect",
            &format!("{name}_xml"),
            &[&[1u8][..], xml.as_bytes()].concat(),
        );
        let b64 = deflate_b64(xml);
        let enc: String = url::form_urlencoded::byte_serialize(b64.as_bytes()).collect();
        let query = format!(
            "{param}={enc}&RelayState=%2Fhome&SigAlg=http%3A%2F%2Fwww.w3.org%2F2001%2F04%2Fxmldsig-more%23rsa-sha256&Signature=AAAA"
        );
        write(
            dir,
            "slo_redirect",
            &format!("{name}_query"),
            &[&[0u8][..], query.as_bytes()].concat(),
        );
        write(
            dir,
            "slo_redirect",
            &format!("{name}_b64"),
            &[&[2u8][..], b64.as_bytes()].concat(),
        );
    }
}

fn small_seeds(dir: &Path) {
    let sealer = Sealer::new(&[7u8; 40], "session");
    let sealed = sealer.seal(&[42u8; 32]);
    write(dir, "cookie", "sealed", sealed.as_bytes());
    write(
        dir,
        "cookie",
        "header",
        format!("a=b; samlgate_session=\"{sealed}\"; c=d\nsamlgate_session=x.y").as_bytes(),
    );
    write(
        dir,
        "cookie",
        "tag",
        format!("{}|csrf-data", sealer.tag(b"csrf-data")).as_bytes(),
    );
    for (i, p) in [
        "/",
        "/dashboard",
        "/a/b?x=1&y=%2F#frag",
        "/caf%C3%A9",
        "/%2F%2Fevil.example",
        "/%255Cevil.example",
        "//evil.example",
        "/x%0d%0aSet-Cookie:%20a=b",
        "/..%2F..%2F",
    ]
    .iter()
    .enumerate()
    {
        write(dir, "return_path", &format!("path{i}"), p.as_bytes());
    }
    for (name, path) in [
        ("example", "config/samlgate.example.toml"),
        (
            "nginx_forward_auth",
            "deploy/examples/nginx-forward-auth/samlgate.toml",
        ),
    ] {
        let text = std::fs::read(path).expect("example config");
        write(dir, "config", name, &text);
    }
    let minimal = "public_url = \"https://app.example.com/\"\nupstream = \"http://127.0.0.1:6273\"\n#!SAMLGATE_SESSION_COOKIE_NAME=123\n[saml]\nidp_metadata_file = \"idp.xml\"\nsp_key_file = \"key.pem\"\nsp_cert_file = \"cert.pem\"\n[session]\ncookie_secret_file = \"secret\"\n[tls]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n[[access.rules]]\nname = \"admin\"\npath_regex = \"/admin(/.*)?\"\naction = \"authenticate\"\nallowed_groups = [\"admins\"]\n";
    write(dir, "config", "minimal_with_files", minimal.as_bytes());
}

/// The forward_auth target's line format: method, path after `/saml/auth`, query or `-`,
/// `trusted` or not, then headers.
fn forward_auth_seeds(dir: &Path) {
    for (name, text) in [
        ("nginx", "GET\n\n-\ntrusted\nx-original-uri: /admin/users?x=1\nx-original-method: POST\nx-forwarded-host: app.example.com\nx-forwarded-proto: https"),
        ("traefik", "GET\n\n-\ntrusted\nx-forwarded-method: GET\nx-forwarded-uri: /static/app.js\nx-forwarded-proto: http"),
        ("ingress", "GET\n\n-\ntrusted\nx-original-url: https://app.example.com/a/b?c=d\nx-original-uri: /a/b?c=d"),
        ("envoy", "DELETE\n/api/items/7\nforce=1\ntrusted\nx-forwarded-uri: /api/items/7?force=1"),
        ("untrusted", "GET\n\n-\nno\nx-original-uri: /admin\nx-original-uri: /other"),
    ] {
        write(dir, "forward_auth", name, text.as_bytes());
    }
}

fn main() {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/seeds".into()),
    );
    response_seeds(&dir);
    slo_seeds(&dir);
    small_seeds(&dir);
    forward_auth_seeds(&dir);
    println!("seeds written to {}", dir.display());
}
