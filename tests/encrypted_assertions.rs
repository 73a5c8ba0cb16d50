//! Encrypted assertions (issue 4, item 1) through the real gateway: responses minted
//! in-process and encrypted to the gateway's SP key, in both shapes IdPs send —
//! (a) an unsigned Response around a signed-then-encrypted Assertion, (b) a signed Response
//! around an EncryptedAssertion — with every supported algorithm, the attacks that must fail,
//! `require_encryption`, `EncryptedID`, the SP metadata, and end to end with SimpleSAMLphp's
//! `assertion.encryption` (rsa-oaep-mgf1p + aes128-cbc, inner assertion signed).
//!
//! The SimpleSAMLphp tests need the Debian packages (scripts/install-deps.sh); without them
//! they fail, never skip.

#[path = "support/e2e.rs"]
mod e2e;
#[path = "support/encrypt.rs"]
mod encrypt;
#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/mint.rs"]
mod mint;
#[path = "support/simplesamlphp.rs"]
mod simplesamlphp;

use chrono::Utc;
use encrypt::{Data, Enc, SpKeys, Transport, ALL_DATA};
use gateway::*;
use mint::{ResponseSpec, TestIdp};
use samlgate::saml::error::LoginError;

const IDP_ENTITY: &str = "https://idp.test/metadata";
const IDP_SSO: &str = "https://idp.test/sso";

struct Env {
    idp: TestIdp,
    sp: SpKeys,
    up: Upstream,
    gw: TestGateway,
}

/// IdP + SP key pair + upstream + gateway configured with the key pair and `saml_toml`.
async fn setup(saml_toml: &str) -> Env {
    setup_with(saml_toml, true).await
}

async fn setup_with(saml_toml: &str, with_sp_key: bool) -> Env {
    let idp = TestIdp::generate(IDP_ENTITY);
    let sp = SpKeys::generate("samlgate test SP");
    let up = start_upstream().await;
    let gw = start_gateway(
        &up.url(),
        &idp.metadata_xml(IDP_SSO),
        Options {
            saml_toml: saml_toml.to_string(),
            sp_key: with_sp_key.then(|| (sp.key_pem.clone(), sp.cert_pem.clone())),
            // Every cipher and shape from one address.
            extra_toml: HIGH_RATE_LIMITS.to_string(),
            ..Options::default()
        },
    )
    .await;
    Env { idp, sp, up, gw }
}

/// Which shape, and what to do to the pieces before they are assembled.
#[derive(Clone, Copy)]
struct Shape {
    sign_response: bool,
    sign_assertion: bool,
    enc: Enc,
}

const SHAPE_A: Shape = Shape {
    sign_response: false,
    sign_assertion: true,
    enc: Enc {
        transport: Transport::Oaep,
        data: Data::Aes128Cbc,
        key_inline: true,
    },
};
const SHAPE_B: Shape = Shape {
    sign_response: true,
    ..SHAPE_A
};

impl Env {
    fn spec(&self, req_id: &str, shape: Shape) -> ResponseSpec {
        let mut spec = ResponseSpec::valid(
            &self.idp,
            &self.gw.sp_entity_id(),
            &self.gw.acs_url(),
            Some(req_id),
        );
        spec.sign_response = shape.sign_response;
        spec.sign_assertion = shape.sign_assertion;
        spec
    }

    /// The Response XML: `spec`'s assertion (signed or not), `edit`ed, encrypted to the SP.
    fn encrypted_response(
        &self,
        spec: &ResponseSpec,
        enc: Enc,
        edit: impl FnOnce(String) -> String,
    ) -> String {
        let assertion = edit(mint::assertion_text(&self.idp, spec));
        let encrypted = encrypt::encrypt(&assertion, &self.sp.public(), enc);
        mint::response_around(&self.idp, spec, &encrypted.encrypted_assertion())
    }

    async fn begin(&self, c: &reqwest::Client) -> (String, String) {
        begin_login(c, &self.gw, "/reports").await
    }

    /// A full sign-in with the response `make` builds for the pending request id; asserts
    /// success and that the upstream then sees alice with her groups.
    async fn expect_sign_in(&self, make: impl FnOnce(&str) -> String) {
        let c = client();
        let (req_id, relay) = self.begin(&c).await;
        let xml = make(&req_id);
        let r = post_acs(&c, &self.gw, &mint::b64(&xml), Some(&relay)).await;
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        assert_eq!(status, 303, "sign-in refused: {body}");
        upstream_sees_alice(&c, &self.gw, &self.up).await;
    }

    /// Posts the response `make` builds as an API client; returns (status, error kind).
    async fn refusal(&self, make: impl FnOnce(&str) -> String) -> (u16, String) {
        let c = client();
        let (req_id, relay) = self.begin(&c).await;
        let xml = make(&req_id);
        let r = c
            .post(self.gw.acs_url())
            .header("accept", "application/json")
            .form(&[("SAMLResponse", mint::b64(&xml)), ("RelayState", relay)])
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let has_session = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().unwrap_or("").starts_with("samlgate_session="));
        let body = r.text().await.unwrap();
        assert!(!has_session, "a refused sign-in set a session: {body}");
        let kind = body
            .split("\"error\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
            .to_string();
        (status, kind)
    }

    /// The gateway's own verifier path (decode, pre-filter, verify) for precise reasons.
    fn verify_direct(
        &self,
        xml: &str,
        req_id: &str,
        tweak: impl FnOnce(&mut samlgate::config::SamlSettings),
    ) -> Result<samlgate::saml::policy::AcceptedAssertion, LoginError> {
        let mut settings = self.gw.settings.saml.clone();
        tweak(&mut settings);
        let idp =
            samlgate::saml::metadata::parse_idp_metadata(&settings.idp_metadata_xml, None).unwrap();
        let v = samlgate::saml::verify::Verifier::new(&settings, idp);
        let (xml, facts) = v.decode_and_screen(&mint::b64(xml))?;
        v.verify_signed(&xml, &facts, Some(req_id), Utc::now())
    }
}

/// A browser with a session gets /reports proxied, and the upstream sees alice with her groups.
async fn upstream_sees_alice(c: &reqwest::Client, gw: &TestGateway, up: &Upstream) {
    let r = get_accepting(c, &gw.url("/reports"), HTML).await;
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(seen.one("x-forwarded-user").as_deref(), Some("alice"));
    assert_eq!(
        seen.one("x-forwarded-groups").as_deref(),
        Some("analysts,admins")
    );
}

/// Replaces the NameID text inside a signed assertion (the signature no longer matches).
fn tamper_name_id(assertion: String) -> String {
    let out = assertion.replacen(">alice</saml:NameID>", ">mallory</saml:NameID>", 1);
    assert_ne!(out, assertion);
    out
}

// ---------------------------------------------------------------------------------------------
// Accepted
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn shape_a_every_algorithm_signs_in() {
    let env = setup("").await;
    for data in ALL_DATA {
        for (transport, key_inline) in [(Transport::Oaep, true), (Transport::OaepSha256, false)] {
            let enc = Enc {
                transport,
                data,
                key_inline,
            };
            env.expect_sign_in(|req| {
                let spec = env.spec(req, SHAPE_A);
                env.encrypted_response(&spec, enc, |a| a)
            })
            .await;
        }
    }
}

#[tokio::test]
async fn shape_b_signed_response_around_encrypted_signed_assertion_signs_in() {
    let env = setup("").await;
    for data in [Data::Aes128Cbc, Data::Aes256Gcm] {
        env.expect_sign_in(|req| {
            let spec = env.spec(req, SHAPE_B);
            env.encrypted_response(
                &spec,
                Enc {
                    data,
                    ..SHAPE_B.enc
                },
                |a| a,
            )
        })
        .await;
    }
}

#[tokio::test]
async fn shape_b_with_unsigned_inner_assertion_needs_require_signed_assertion_off() {
    let unsigned_inner = Shape {
        sign_assertion: false,
        ..SHAPE_B
    };
    let env = setup("").await;
    let (status, kind) = env
        .refusal(|req| {
            let spec = env.spec(req, unsigned_inner);
            env.encrypted_response(&spec, unsigned_inner.enc, |a| a)
        })
        .await;
    assert_eq!(
        (status, kind.as_str()),
        (400, "assertion_not_signed"),
        "the default requires the decrypted assertion's own signature"
    );

    // Opted out: the Response signature over the ciphertext authenticates it.
    let env = setup("require_signed_assertion = false\n").await;
    env.expect_sign_in(|req| {
        let spec = env.spec(req, unsigned_inner);
        env.encrypted_response(&spec, unsigned_inner.enc, |a| a)
    })
    .await;
}

#[tokio::test]
async fn encrypted_name_id_is_decrypted_in_plaintext_and_encrypted_assertions() {
    let env = setup("").await;
    let name_id = |spec: &ResponseSpec| {
        format!(
            r#"<saml:NameID xmlns:saml="{}" SPNameQualifier="{}" Format="{}">alice</saml:NameID>"#,
            mint::NS_SAML,
            spec.sp_name_qualifier.as_deref().unwrap(),
            spec.name_id_format
        )
    };
    // The assertion with an EncryptedID in place of its NameID, then signed.
    let assertion_with_encrypted_id = |spec: &ResponseSpec, enc: Enc| {
        let unsigned = mint::assertion_xml(&env.idp, spec, true);
        let (s, e) = mint::xml::find_element(&unsigned, "NameID", 0).unwrap();
        let encrypted_id = encrypt::encrypt(&name_id(spec), &env.sp.public(), enc).encrypted_id();
        mint::sign_first_template(&env.idp, &mint::xml::splice(&unsigned, s, e, &encrypted_id))
    };
    // A plaintext assertion (both signatures) with an EncryptedID.
    env.expect_sign_in(|req| {
        let mut spec = env.spec(req, SHAPE_B);
        spec.sign_response = false;
        let assertion = assertion_with_encrypted_id(&spec, Enc::default());
        mint::response_around(&env.idp, &spec, &assertion)
    })
    .await;
    // Inside an encrypted assertion (aes256-gcm for the NameID, aes128-cbc around it).
    env.expect_sign_in(|req| {
        let spec = env.spec(req, SHAPE_A);
        let assertion = assertion_with_encrypted_id(
            &spec,
            Enc {
                data: Data::Aes256Gcm,
                ..Enc::default()
            },
        );
        let encrypted = encrypt::encrypt(&assertion, &env.sp.public(), Enc::default());
        mint::response_around(&env.idp, &spec, &encrypted.encrypted_assertion())
    })
    .await;
    // An EncryptedID for someone else's key: refused with the reason.
    let c = client();
    let (req, _) = env.begin(&c).await;
    let mut spec = env.spec(&req, SHAPE_A);
    spec.sign_response = false;
    let unsigned = mint::assertion_xml(&env.idp, &spec, true);
    let (s, e) = mint::xml::find_element(&unsigned, "NameID", 0).unwrap();
    let other = SpKeys::generate("other SP");
    let foreign = encrypt::encrypt(&name_id(&spec), &other.public(), Enc::default()).encrypted_id();
    let assertion =
        mint::sign_first_template(&env.idp, &mint::xml::splice(&unsigned, s, e, &foreign));
    let xml = mint::response_around(&env.idp, &spec, &assertion);
    let err = env.verify_direct(&xml, &req, |_| {}).unwrap_err();
    assert_eq!(err.kind(), "decryption");
    assert!(
        err.reason().contains("EncryptedID: key transport failed"),
        "{}",
        err.reason()
    );
}

#[tokio::test]
async fn rsa_1_5_only_with_the_opt_in() {
    let rsa15 = Enc {
        transport: Transport::Rsa15,
        ..Enc::default()
    };
    let env = setup("").await;
    let (status, kind) = env
        .refusal(|req| {
            let spec = env.spec(req, SHAPE_A);
            env.encrypted_response(&spec, rsa15, |a| a)
        })
        .await;
    assert_eq!((status, kind.as_str()), (400, "decryption"));
    let c = client();
    let (req, _) = env.begin(&c).await;
    let xml = env.encrypted_response(&env.spec(&req, SHAPE_A), rsa15, |a| a);
    let err = env.verify_direct(&xml, &req, |_| {}).unwrap_err();
    assert!(
        err.reason().contains("rsa-1_5 is refused"),
        "{}",
        err.reason()
    );

    let env = setup("allow_rsa1_5 = true\n").await;
    env.expect_sign_in(|req| {
        let spec = env.spec(req, SHAPE_A);
        env.encrypted_response(&spec, rsa15, |a| a)
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Refused
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn tampered_inner_signature_is_refused_in_both_shapes() {
    let env = setup("").await;
    // (a): the ciphertext is unauthenticated, so the refusal is the uniform `decryption`.
    let (status, kind) = env
        .refusal(|req| {
            let spec = env.spec(req, SHAPE_A);
            env.encrypted_response(&spec, SHAPE_A.enc, tamper_name_id)
        })
        .await;
    assert_eq!((status, kind.as_str()), (400, "decryption"));
    // (b): the Response signature is valid (it covers the ciphertext of the tampered
    // assertion), but the assertion's own signature is not.
    let (status, kind) = env
        .refusal(|req| {
            let spec = env.spec(req, SHAPE_B);
            env.encrypted_response(&spec, SHAPE_B.enc, tamper_name_id)
        })
        .await;
    assert_eq!((status, kind.as_str()), (400, "signature"));

    // The audit reasons say what happened.
    let c = client();
    let (req, _) = env.begin(&c).await;
    let xml = env.encrypted_response(&env.spec(&req, SHAPE_A), SHAPE_A.enc, tamper_name_id);
    let reason = env.verify_direct(&xml, &req, |_| {}).unwrap_err().reason();
    assert!(
        reason.contains("unauthenticated plaintext") && reason.contains("signature"),
        "{reason}"
    );
}

#[tokio::test]
async fn unsigned_inner_assertion_in_an_unsigned_response_is_refused() {
    let unsigned = Shape {
        sign_assertion: false,
        ..SHAPE_A
    };
    // Anyone can encrypt to the SP's public certificate: encryption is not authentication.
    for toml in ["", "require_signed_assertion = false\n"] {
        let env = setup(toml).await;
        let (status, kind) = env
            .refusal(|req| {
                let spec = env.spec(req, unsigned);
                env.encrypted_response(&spec, unsigned.enc, |a| a)
            })
            .await;
        assert_eq!((status, kind.as_str()), (400, "decryption"), "{toml}");
        let c = client();
        let (req, _) = env.begin(&c).await;
        let xml = env.encrypted_response(&env.spec(&req, unsigned), unsigned.enc, |a| a);
        let reason = env
            .verify_direct(&xml, &req, |s| {
                s.require_signed_assertion = !toml.contains("false")
            })
            .unwrap_err()
            .reason();
        assert!(
            reason.contains("not signed") || reason.contains("neither"),
            "{reason}"
        );
    }
}

#[tokio::test]
async fn shape_b_response_signature_covers_the_ciphertext() {
    let env = setup("").await;
    // Swap in another ciphertext (validly encrypted and signed by the IdP, for another
    // request) after the Response was signed.
    let (status, kind) = env
        .refusal(|req| {
            let spec = env.spec(req, SHAPE_B);
            let signed = env.encrypted_response(&spec, SHAPE_B.enc, |a| a);
            let other = env.encrypted_response(&env.spec(req, SHAPE_B), SHAPE_B.enc, |a| a);
            let (s, e) = mint::xml::find_element(&signed, "EncryptedAssertion", 0).unwrap();
            let (os, oe) = mint::xml::find_element(&other, "EncryptedAssertion", 0).unwrap();
            mint::xml::splice(&signed, s, e, &other[os..oe])
        })
        .await;
    assert_eq!((status, kind.as_str()), (400, "signature"));
}

#[tokio::test]
async fn require_encryption_refuses_plaintext() {
    let env = setup("require_encryption = true\n").await;
    let (status, kind) = env
        .refusal(|req| mint::mint(&env.idp, &env.spec(req, SHAPE_B)))
        .await;
    assert_eq!((status, kind.as_str()), (400, "encryption_required"));
    // An IdP error status still says what the IdP said.
    let (_, kind) = env
        .refusal(|req| {
            let mut spec = env.spec(req, SHAPE_B);
            spec.status_code = mint::STATUS_RESPONDER.into();
            spec.include_assertion = false;
            mint::mint(&env.idp, &spec)
        })
        .await;
    assert_eq!(kind, "idp_status");
    env.expect_sign_in(|req| {
        let spec = env.spec(req, SHAPE_A);
        env.encrypted_response(&spec, SHAPE_A.enc, |a| a)
    })
    .await;
    // Plaintext still works without the setting.
    let env = setup("").await;
    env.expect_sign_in(|req| mint::mint(&env.idp, &env.spec(req, SHAPE_B)))
        .await;
}

#[tokio::test]
async fn wrong_key_and_missing_key_are_decryption_failures() {
    let env = setup("").await;
    let other = SpKeys::generate("other SP");
    let (status, kind) = env
        .refusal(|req| {
            let spec = env.spec(req, SHAPE_A);
            let assertion = mint::assertion_text(&env.idp, &spec);
            let encrypted = encrypt::encrypt(&assertion, &other.public(), SHAPE_A.enc);
            mint::response_around(&env.idp, &spec, &encrypted.encrypted_assertion())
        })
        .await;
    assert_eq!((status, kind.as_str()), (400, "decryption"));

    let env = setup_with("", false).await;
    let c = client();
    let (req, _) = env.begin(&c).await;
    let xml = env.encrypted_response(&env.spec(&req, SHAPE_A), SHAPE_A.enc, |a| a);
    let err = env.verify_direct(&xml, &req, |_| {}).unwrap_err();
    assert_eq!(err.kind(), "decryption");
    assert!(
        err.reason().contains("saml.sp_key_file"),
        "{}",
        err.reason()
    );
    let (status, kind) = env
        .refusal(|req| env.encrypted_response(&env.spec(req, SHAPE_A), SHAPE_A.enc, |a| a))
        .await;
    assert_eq!((status, kind.as_str()), (400, "decryption"));
}

/// Every failure before the inner signature verifies looks the same from outside in shape
/// (a): bad padding, a wrong tag, garbage plaintext, a well-formed but unsigned or tampered
/// assertion — no oracle on the plaintext.
#[tokio::test]
async fn unauthenticated_failures_are_indistinguishable() {
    let env = setup("").await;
    let cbc = Enc::default();
    let gcm = Enc {
        data: Data::Aes128Gcm,
        ..Enc::default()
    };
    type Make<'a> = Box<dyn Fn(&str) -> String + 'a>;
    let raw = |spec: &ResponseSpec, enc: Enc, plaintext: &str, mangle: fn(&mut Vec<u8>)| {
        let mut e = encrypt::encrypt(plaintext, &env.sp.public(), enc);
        mangle(&mut e.data);
        mint::response_around(&env.idp, spec, &e.encrypted_assertion())
    };
    let cases: Vec<(&str, Make<'_>)> = vec![
        (
            "bad CBC padding",
            Box::new(|req| {
                let spec = env.spec(req, SHAPE_A);
                raw(&spec, cbc, &mint::assertion_text(&env.idp, &spec), |d| {
                    let n = d.len();
                    d[n - 17] ^= 0x40; // last byte of the second-to-last block → pad byte
                })
            }),
        ),
        (
            "bad GCM tag",
            Box::new(|req| {
                let spec = env.spec(req, SHAPE_A);
                raw(&spec, gcm, &mint::assertion_text(&env.idp, &spec), |d| {
                    let n = d.len();
                    d[n - 1] ^= 1;
                })
            }),
        ),
        (
            "not XML",
            Box::new(|req| raw(&env.spec(req, SHAPE_A), cbc, "<<not xml", |_| {})),
        ),
        (
            "wrong root",
            Box::new(|req| {
                raw(
                    &env.spec(req, SHAPE_A),
                    cbc,
                    &format!(
                        r#"<saml:NameID xmlns:saml="{}">x</saml:NameID>"#,
                        mint::NS_SAML
                    ),
                    |_| {},
                )
            }),
        ),
        (
            "unsigned assertion",
            Box::new(|req| {
                let mut spec = env.spec(req, SHAPE_A);
                spec.sign_assertion = false;
                raw(&spec, cbc, &mint::assertion_text(&env.idp, &spec), |_| {})
            }),
        ),
        (
            "tampered assertion",
            Box::new(|req| {
                let spec = env.spec(req, SHAPE_A);
                let a = tamper_name_id(mint::assertion_text(&env.idp, &spec));
                raw(&spec, cbc, &a, |_| {})
            }),
        ),
    ];
    for (name, make) in &cases {
        let (status, kind) = env.refusal(make).await;
        assert_eq!((status, kind.as_str()), (400, "decryption"), "{name}");
    }
}

#[tokio::test]
async fn random_and_truncated_ciphertexts_never_crash_the_gateway() {
    let env = setup("").await;
    let c = client();
    let (req, _) = env.begin(&c).await;
    let spec = env.spec(&req, SHAPE_A);
    let assertion = mint::assertion_text(&env.idp, &spec);
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // Directly through the verifier: many shapes quickly.
    for round in 0..200u32 {
        let data = ALL_DATA[(next() % 6) as usize];
        let mut e = encrypt::encrypt(
            &assertion,
            &env.sp.public(),
            Enc {
                data,
                ..Enc::default()
            },
        );
        match round % 4 {
            0 => {
                let cut = (next() as usize) % (e.data.len() + 1);
                e.data.truncate(cut);
            }
            1 => e.data = encrypt::random((next() % 64) as usize),
            2 => {
                let cut = (next() as usize) % (e.wrapped_key.len() + 1);
                e.wrapped_key.truncate(cut);
            }
            _ => e.wrapped_key = encrypt::random(256),
        }
        let xml = mint::response_around(&env.idp, &spec, &e.encrypted_assertion());
        let err = env.verify_direct(&xml, &req, |_| {}).unwrap_err();
        assert_eq!(err.kind(), "decryption", "round {round}: {}", err.reason());
    }
    // And a few through the server: 400, never a 500 from a caught panic.
    for round in 0..12u32 {
        let (status, kind) = env
            .refusal(|req| {
                let spec = env.spec(req, SHAPE_A);
                let mut e = encrypt::encrypt(
                    &mint::assertion_text(&env.idp, &spec),
                    &env.sp.public(),
                    Enc {
                        data: ALL_DATA[(round % 6) as usize],
                        ..Enc::default()
                    },
                );
                e.data.truncate(round as usize * 3);
                mint::response_around(&env.idp, &spec, &e.encrypted_assertion())
            })
            .await;
        assert_eq!(
            (status, kind.as_str()),
            (400, "decryption"),
            "round {round}"
        );
    }
}

#[tokio::test]
async fn sp_metadata_publishes_the_certificate_for_encryption_when_a_key_is_configured() {
    let env = setup("").await;
    let md = sp_metadata(&env.gw).await;
    assert!(md.contains(r#"<md:KeyDescriptor use="signing">"#), "{md}");
    assert!(
        md.contains(r#"<md:KeyDescriptor use="encryption">"#),
        "{md}"
    );
    assert!(md.contains("xmlenc11#aes256-gcm"), "{md}");
    let b64: String = env
        .sp
        .cert_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert_eq!(md.matches(&b64).count(), 2);

    let env = setup_with("", false).await;
    let md = sp_metadata(&env.gw).await;
    assert!(!md.contains("KeyDescriptor"), "{md}");
}

// ---------------------------------------------------------------------------------------------
// End to end with SimpleSAMLphp (`assertion.encryption`)
// ---------------------------------------------------------------------------------------------

mod ssp {
    use super::*;
    use e2e::{expect_signed_in, submit, SspSetup};
    use simplesamlphp::{login_client, ALICE};

    /// SimpleSAMLphp encrypting to the gateway, the gateway holding the key; alice signs in.
    /// `sign_response` false: shape (a); true: shape (b).
    pub async fn alice_signs_in(sign_response: bool) {
        let sp = SpKeys::generate("samlgate e2e SP");
        let mut s = SspSetup::start(
            |entry| {
                entry.encrypt_assertion = true;
                entry.sign_response = sign_response;
                entry.sign_assertion = true;
                entry.certificate_pem = Some(sp.cert_pem.clone());
            },
            Options {
                saml_toml: "require_encryption = true\n".to_string(),
                sp_key: Some((sp.key_pem.clone(), sp.cert_pem.clone())),
                extra_toml: e2e::USER_IS_UID.to_string(),
                ..Options::default()
            },
        )
        .await;

        let c = login_client();
        let (loc, _) = s.begin(&c, "/reports").await;
        let form = s.idp_login(&c, &loc, &ALICE).await;
        let xml = form.response_xml().unwrap();
        assert!(xml.contains("EncryptedAssertion"), "{xml}");
        assert!(xml.contains("xmlenc#rsa-oaep-mgf1p") && xml.contains("xmlenc#aes128-cbc"));
        assert!(!xml.contains("analysts"), "attributes in clear: {xml}");
        let response_signed = xml
            .find("<ds:Signature")
            .is_some_and(|s| s < xml.find("EncryptedAssertion").unwrap());
        assert_eq!(response_signed, sign_response, "{xml}");
        // The gateway accepts the encrypted response.
        expect_signed_in(submit(&c, &form, HTML).await, "/reports").await;

        upstream_sees_alice(&c, &s.gw, &s.up).await;
        assert_eq!(
            s.up.last().one("x-forwarded-email").as_deref(),
            Some("alice@example.com")
        );
        let _ = s.gw.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simplesamlphp_unsigned_response_encrypted_signed_assertion() {
    ssp::alice_signs_in(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simplesamlphp_signed_response_encrypted_signed_assertion() {
    ssp::alice_signs_in(true).await;
}
