//! Self-test of tests/support/simplesamlphp.rs against a real SimpleSAMLphp IdP.
//! Needs the Debian packages simplesamlphp php-cli php-xml php-mbstring php-curl php-sqlite3
//! (scripts/install-deps.sh test); fails - never skips - without them.

#[path = "support/simplesamlphp.rs"]
mod simplesamlphp;

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use samael::metadata::EntityDescriptor;
use samael::service_provider::ServiceProviderBuilder;
use simplesamlphp::*;

const SP_ENTITY: &str = "http://127.0.0.1:1/saml/metadata";
const SP_ACS: &str = "http://127.0.0.1:1/saml/acs";

async fn start_default() -> SimpleSamlPhp {
    let t = Instant::now();
    let idp = SimpleSamlPhp::start(&[SpEntry::new(SP_ENTITY, SP_ACS)], &default_users())
        .await
        .unwrap_or_else(|e| panic!("IdP did not start: {e}"));
    eprintln!(
        "SimpleSamlPhp::start took {:?} (port {}, pid {})",
        t.elapsed(),
        idp.port,
        idp.pid()
    );
    idp
}

fn groups_of(assertion: &samael::schema::Assertion) -> Vec<String> {
    attribute_values(assertion, "groups").expect("no groups attribute")
}

fn attribute_values(assertion: &samael::schema::Assertion, name: &str) -> Option<Vec<String>> {
    assertion
        .attribute_statements
        .iter()
        .flatten()
        .flat_map(|s| s.attributes.iter())
        .find(|a| a.name.as_deref() == Some(name))
        .map(|a| a.values.iter().filter_map(|v| v.value.clone()).collect())
}

#[tokio::test]
async fn alice_logs_in_and_samael_accepts_the_response() {
    let idp = start_default().await;
    assert!(
        idp.metadata_xml.contains(&idp.entity_id),
        "{}",
        idp.metadata_xml
    );
    assert!(
        idp.metadata_xml.contains("X509Certificate"),
        "{}",
        idp.metadata_xml
    );
    assert!(idp.idp_cert_pem.contains("BEGIN CERTIFICATE"));
    assert_eq!(
        idp.entity_id,
        format!("{}/saml2/idp/metadata.php", idp.base_url)
    );

    let client = login_client();
    let request_id = "_samlgate_test_req_1";
    let url = authn_request_url(
        &idp,
        SP_ENTITY,
        SP_ACS,
        request_id,
        Some("/reports?q=1&x=<y>"),
    );
    let t = Instant::now();
    let form = drive_login(&client, &url, &ALICE)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", idp.log_tail(30)));
    eprintln!("drive_login took {:?}", t.elapsed());
    assert_eq!(form.action, SP_ACS);
    assert_eq!(form.relay_state.as_deref(), Some("/reports?q=1&x=<y>"));

    let xml = form.response_xml().unwrap();
    assert!(xml.contains("analysts") && xml.contains("admins"), "{xml}");
    assert!(
        xml.contains(&format!("InResponseTo=\"{request_id}\"")),
        "{xml}"
    );
    assert!(!xml.contains("EncryptedAssertion"), "{xml}");

    let sp = ServiceProviderBuilder::default()
        .entity_id(SP_ENTITY.to_string())
        .acs_url(SP_ACS.to_string())
        .idp_metadata(EntityDescriptor::from_str(&idp.metadata_xml).expect("IdP metadata parses"))
        .build()
        .unwrap();
    let assertion = sp
        .parse_base64_response(&form.saml_response, Some(&[request_id]))
        .unwrap_or_else(|e| panic!("samael rejected the response: {e}\n{xml}"));
    assert_eq!(groups_of(&assertion), vec!["analysts", "admins"]);
    assert_eq!(
        attribute_values(&assertion, "uid"),
        Some(vec!["alice".to_string()])
    );
    assert_eq!(
        attribute_values(&assertion, "mail"),
        Some(vec!["alice@example.com".to_string()])
    );
    assert_eq!(
        attribute_values(&assertion, "displayName"),
        Some(vec!["Alice Analyst".to_string()])
    );
    let name_id = assertion
        .subject
        .as_ref()
        .and_then(|s| s.name_id.as_ref())
        .expect("NameID");
    assert_eq!(name_id.value, "alice");
    assert_eq!(
        name_id.format.as_deref(),
        Some("urn:oasis:names:tc:SAML:2.0:nameid-format:persistent")
    );

    // The same response must not pass for another request ID (the check can fail).
    assert!(sp
        .parse_base64_response(&form.saml_response, Some(&["_other"]))
        .is_err());

    // Second login on the same client: the IdP session is reused, no login form.
    let url2 = authn_request_url(&idp, SP_ENTITY, SP_ACS, "_samlgate_test_req_2", None);
    let form2 = drive_login(&client, &url2, &ALICE).await.unwrap();
    assert_eq!(form2.relay_state, None);
    sp.parse_base64_response(&form2.saml_response, Some(&["_samlgate_test_req_2"]))
        .unwrap();
}

#[tokio::test]
async fn wrong_password_and_error_pages_are_errors() {
    // A second SP that insists on signed AuthnRequests (and has SLO with signed logout
    // messages, to check that such an entry is valid PHP for SimpleSAMLphp).
    let (_key, cert) = generate_key_pair("strict SP").unwrap();
    let mut strict = SpEntry::new(
        "http://127.0.0.1:2/saml/metadata",
        "http://127.0.0.1:2/saml/acs",
    );
    strict.validate_authnrequest = true;
    strict.certificate_pem = Some(cert);
    strict.slo_url = Some("http://127.0.0.1:2/saml/slo".into());
    strict.sign_logout = true;
    let idp = SimpleSamlPhp::start(
        &[SpEntry::new(SP_ENTITY, SP_ACS), strict.clone()],
        &default_users(),
    )
    .await
    .unwrap();

    let mut mallory = ALICE;
    mallory.password = "not-alices-password";
    let url = authn_request_url(&idp, SP_ENTITY, SP_ACS, "_wrong_pw", None);
    let err = drive_login(&login_client(), &url, &mallory)
        .await
        .expect_err("a wrong password must not log in");
    eprintln!("wrong password: {err}");
    assert!(err.contains("rejected"), "{err}");

    // An unknown SP gives an error page, reported as an error too.
    let url = authn_request_url(
        &idp,
        "http://unknown.example/sp",
        SP_ACS,
        "_unknown_sp",
        None,
    );
    let err = drive_login(&login_client(), &url, &ALICE)
        .await
        .expect_err("unknown SP");
    eprintln!("unknown SP: {err}");
    assert!(
        err.contains("Metadata not found") && err.contains("200 OK"),
        "{err}"
    );

    // Unsigned AuthnRequest to an SP entry with validate.authnrequest.
    let url = authn_request_url(&idp, &strict.entity_id, &strict.acs_url, "_unsigned", None);
    let err = drive_login(&login_client(), &url, &ALICE)
        .await
        .expect_err("unsigned request");
    eprintln!("unsigned AuthnRequest: {err}");
    assert!(err.contains("no signature found"), "{err}");
}

#[tokio::test]
async fn bob_and_carol_groups() {
    let idp = start_default().await;
    let sp = ServiceProviderBuilder::default()
        .entity_id(SP_ENTITY.to_string())
        .acs_url(SP_ACS.to_string())
        .idp_metadata(EntityDescriptor::from_str(&idp.metadata_xml).unwrap())
        .build()
        .unwrap();

    let url = authn_request_url(&idp, SP_ENTITY, SP_ACS, "_bob", None);
    let form = drive_login(&login_client(), &url, &BOB).await.unwrap();
    let assertion = sp
        .parse_base64_response(&form.saml_response, Some(&["_bob"]))
        .unwrap();
    assert_eq!(groups_of(&assertion), vec!["contractors"]);

    let url = authn_request_url(&idp, SP_ENTITY, SP_ACS, "_carol", None);
    let form = drive_login(&login_client(), &url, &CAROL).await.unwrap();
    let xml = form.response_xml().unwrap();
    let start = xml
        .find("Name=\"groups\"")
        .expect("groups attribute present");
    let elem_start = xml[..start].rfind('<').unwrap();
    let snippet: String = xml[elem_start..].chars().take(160).collect();
    eprintln!("carol's groups attribute: {snippet}");
    // SimpleSAMLphp emits an Attribute element with no AttributeValue child.
    assert!(
        snippet.starts_with(
            "<saml:Attribute Name=\"groups\" NameFormat=\"urn:oasis:names:tc:SAML:2.0:attrname-format:basic\"/>"
        ),
        "{snippet}"
    );
    let assertion = sp
        .parse_base64_response(&form.saml_response, Some(&["_carol"]))
        .unwrap();
    assert_eq!(groups_of(&assertion), Vec::<String>::new());
}

#[tokio::test]
async fn drop_kills_the_process_group() {
    let idp = start_default().await;
    let pid = idp.pid();
    // Let the workers answer something so they exist.
    let _ = login_client().get(&idp.entity_id).send().await.unwrap();
    let members = idp.group_pids();
    eprintln!("process group {pid}: {members:?}");
    assert!(members.contains(&pid), "{members:?}");
    assert!(
        members.len() >= 3,
        "expected master + 2 workers, got {members:?}"
    );
    let dir = idp.dir().to_path_buf();
    let base = idp.base_url.clone();
    drop(idp);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "php master {pid} still there"
    );
    for m in &members {
        let stat = std::fs::read_to_string(format!("/proc/{m}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        assert!(
            stat.is_empty() || state == Some("Z"),
            "worker {m} still alive: {stat}"
        );
    }
    assert!(!dir.exists(), "temp dir {} not removed", dir.display());
    let refused = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
        .get(&base)
        .send()
        .await;
    assert!(refused.is_err(), "something still answers on {base}");
}

#[tokio::test]
async fn encrypted_assertion() {
    let (_sp_key, sp_cert) = generate_key_pair("test SP").unwrap();
    let mut sp = SpEntry::new(SP_ENTITY, SP_ACS);
    sp.encrypt_assertion = true;
    sp.certificate_pem = Some(sp_cert);
    let t = Instant::now();
    let idp = SimpleSamlPhp::start(&[sp], &default_users()).await.unwrap();
    eprintln!("start (encrypting SP) took {:?}", t.elapsed());
    let url = authn_request_url(&idp, SP_ENTITY, SP_ACS, "_enc", None);
    let form = drive_login(&login_client(), &url, &ALICE).await.unwrap();
    let xml = form.response_xml().unwrap();
    assert!(xml.contains("EncryptedAssertion"), "{xml}");
    assert!(
        xml.contains("http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"),
        "{xml}"
    );
    assert!(
        xml.contains("http://www.w3.org/2001/04/xmlenc#aes128-cbc"),
        "{xml}"
    );
    assert!(
        !xml.contains("analysts"),
        "attributes visible in clear: {xml}"
    );
    assert!(!xml.contains("<saml:Assertion"), "{xml}");
}
