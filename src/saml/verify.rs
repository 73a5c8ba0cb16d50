//! The ACS verification path from form field to accepted assertion: base64 → pre-filter →
//! envelope checks → samael (libxmlsec1) signature verification → policy checks.
//!
//! Encrypted assertions take a detour that ends on the same path; samael never sees ciphertext:
//!
//! - **Unsigned Response around a signed-then-encrypted Assertion** (SimpleSAMLphp's
//!   `assertion.encryption`, AD FS, Azure): decrypt with the SP key, pre-filter the plaintext
//!   with an Assertion root, and let samael verify the Assertion's own signature against the
//!   IdP certificates, exactly as for a plaintext assertion. The ciphertext is unauthenticated
//!   until then (anyone can encrypt to our public certificate), so every failure before that
//!   signature verifies is reported as one kind (`decryption`): no padding or parsing oracle.
//! - **Signed Response around an EncryptedAssertion**: the Response signature covers the
//!   ciphertext, so it is verified first, over the bytes as received, and only the ciphertext
//!   that signature covered (libxmlsec1's verified pre-digest) is decrypted. The decrypted
//!   Assertion must then carry its own valid signature too while `require_signed_assertion` is
//!   on (the default), as a plaintext one must; with it off, the Response signature over the
//!   ciphertext is what authenticates the assertion.
//!
//! `EncryptedID` in a Subject is decrypted after the assertion around it was authenticated,
//! pre-filtered as a lone `saml:NameID` and put where samael leaves the NameID empty.
//!
//! [`Verifier::verify_signed`] is blocking C code; the gateway runs it on a bounded blocking
//! pool, never on the async workers.

use base64::Engine;
use chrono::{DateTime, Utc};
use samael::crypto::{AllowedSignatureAlgorithm, Crypto, CryptoProvider, ReduceMode};
use samael::schema::{Assertion, SubjectNameID};
use samael::service_provider::{Error as SamaelError, ServiceProvider};

use super::decrypt::{self, DecryptError, DecryptPolicy, DecryptionKey};
use super::error::LoginError;
use super::metadata::IdpInfo;
use super::policy::{self, AcceptedAssertion, Expectations};
use super::prefilter::{self, EnvelopeFacts, PrefilterPolicy, Root};
use crate::config::SamlSettings;

pub struct Verifier {
    sp: ServiceProvider,
    pub idp: IdpInfo,
    pub prefilter: PrefilterPolicy,
    pub sp_entity_id: String,
    pub acs_url: String,
    pub skew: chrono::Duration,
    pub require_signed_response: bool,
    pub require_signed_assertion: bool,
    /// Refuse plaintext assertions.
    pub require_encryption: bool,
    /// The SP key for `EncryptedAssertion` / `EncryptedID` (`saml.sp_key_file`).
    decryption_key: Option<DecryptionKey>,
    pub decrypt_policy: DecryptPolicy,
    /// `saml.authn_context_class_ref`, required of every AuthnStatement.
    pub required_authn_context: Option<String>,
}

impl Verifier {
    pub fn new(s: &SamlSettings, idp: IdpInfo) -> Verifier {
        let skew =
            chrono::Duration::from_std(s.clock_skew).unwrap_or(chrono::Duration::seconds(90));
        let sp = ServiceProvider {
            entity_id: Some(s.sp_entity_id.clone()),
            acs_url: Some(s.acs_url.clone()),
            metadata_url: Some(s.sp_entity_id.clone()),
            idp_metadata: idp.descriptor.clone(),
            max_clock_skew: skew,
            // IssueInstant may lag by network time plus skew.
            max_issue_delay: chrono::Duration::seconds(policy::MAX_ISSUE_DELAY_SECS) + skew,
            // samael's InResponseTo checks are off, whatever `saml.allow_idp_initiated` says
            // (this flag does nothing else in samael): policy owns them, with a reason per case
            // (check_response_in_response_to, check_subject_in_response_to, check_unsolicited).
            // samael would refuse a signed Response without InResponseTo even when the bearer
            // SubjectConfirmationData names the pending request, which SAML core allows.
            // Recipient, Audience and the times stay checked by both.
            allow_idp_initiated: true,
            // With SHA-1 allowed the pre-filter is the algorithm gate (samael cannot express
            // "SHA-256 family plus rsa-sha1"); otherwise both layers enforce the allowlist.
            allowed_signature_algorithms: if s.allow_sha1 {
                None
            } else {
                Some(vec![
                    AllowedSignatureAlgorithm::RsaSha256,
                    AllowedSignatureAlgorithm::RsaSha384,
                    AllowedSignatureAlgorithm::RsaSha512,
                    AllowedSignatureAlgorithm::EcdsaSha256,
                    AllowedSignatureAlgorithm::EcdsaSha384,
                    AllowedSignatureAlgorithm::EcdsaSha512,
                ])
            },
            ..Default::default()
        };
        Verifier {
            sp,
            prefilter: PrefilterPolicy {
                max_bytes: s.max_response_bytes,
                allow_sha1: s.allow_sha1,
                ..PrefilterPolicy::default()
            },
            sp_entity_id: s.sp_entity_id.clone(),
            acs_url: s.acs_url.clone(),
            skew,
            require_signed_response: s.require_signed_response,
            require_signed_assertion: s.require_signed_assertion,
            require_encryption: s.require_encryption,
            // Validated at start (config): an unreadable key never gets here.
            decryption_key: s
                .sp_key_pem
                .as_deref()
                .and_then(|pem| DecryptionKey::from_pem(pem).ok()),
            decrypt_policy: DecryptPolicy {
                allow_rsa1_5: s.allow_rsa1_5,
                max_ciphertext_bytes: s.max_response_bytes,
            },
            required_authn_context: s.authn_context_class_ref.clone(),
            idp,
        }
    }

    /// Whether an SP key is loaded (encrypted assertions can be read).
    pub fn can_decrypt(&self) -> bool {
        self.decryption_key.is_some()
    }

    /// The SP key (`saml.sp_key_file`), also the key AuthnRequests are signed with.
    pub fn sp_key(&self) -> Option<&DecryptionKey> {
        self.decryption_key.as_ref()
    }

    pub fn expectations<'a>(
        &'a self,
        request_id: Option<&'a str>,
        now: DateTime<Utc>,
    ) -> Expectations<'a> {
        Expectations {
            sp_entity_id: &self.sp_entity_id,
            acs_url: &self.acs_url,
            idp_entity_id: &self.idp.entity_id,
            request_id,
            now,
            skew: self.skew,
            require_signed_response: self.require_signed_response,
            require_signed_assertion: self.require_signed_assertion,
            required_authn_context: self.required_authn_context.as_deref(),
        }
    }

    /// Decodes the form field and runs the pre-filter (cheap; safe on an async worker).
    pub fn decode_and_screen(
        &self,
        saml_response_b64: &str,
    ) -> Result<(String, EnvelopeFacts), LoginError> {
        decode_and_screen(saml_response_b64, &self.prefilter)
    }

    /// Signature verification and every policy check. Blocking (libxmlsec1).
    pub fn verify_signed(
        &self,
        xml: &str,
        facts: &EnvelopeFacts,
        request_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<AcceptedAssertion, LoginError> {
        let want = self.expectations(request_id, now);
        policy::check_response_envelope(facts, &want)?;
        let ids: Vec<&str> = request_id.into_iter().collect();
        if facts.encrypted_assertion_count > 0 {
            return self.verify_encrypted(xml, facts, &want, &ids);
        }
        if self.require_encryption {
            return Err(LoginError::EncryptionRequired);
        }
        policy::check_signature_presence(facts, &want)?;
        // PreDigest: samael hands back exactly the bytes libxmlsec1 digested for the verified
        // reference (the Response when it is signed, else the Assertion) — the strictest mode.
        let mut assertion = self
            .sp
            .parse_xml_response_with_mode(xml, Some(&ids), ReduceMode::PreDigest)
            .map_err(map_samael_error)?;
        let mut facts = facts.clone();
        self.open_encrypted_id(
            &mut assertion,
            &mut facts,
            xml,
            decrypt::ENCRYPTED_ID_IN_RESPONSE,
        )?;
        policy::check_assertion(&assertion, &facts, &want)
    }

    /// A Response carrying an `EncryptedAssertion` (its envelope already checked).
    fn verify_encrypted(
        &self,
        xml: &str,
        facts: &EnvelopeFacts,
        want: &Expectations<'_>,
        ids: &[&str],
    ) -> Result<AcceptedAssertion, LoginError> {
        let key = self.decryption_key.as_ref().ok_or_else(|| {
            LoginError::Decryption(format!(
                "the response holds an EncryptedAssertion: {}",
                DecryptError::NoKey
            ))
        })?;
        // A signed Response covers the ciphertext: verify it over the bytes as received and
        // decrypt only what it covered. Unsigned: the ciphertext is taken from the message and
        // stays unauthenticated until the decrypted assertion's own signature verifies.
        let signed_response;
        let source = if facts.response_signed {
            signed_response = self.verified_response(xml)?;
            signed_response.as_str()
        } else {
            xml
        };
        let (mut assertion, mut merged, plaintext) = self
            .open_encrypted_assertion(source, key, facts, want, ids)
            .map_err(|e| {
                if facts.response_signed {
                    e
                } else {
                    unauthenticated(e)
                }
            })?;
        self.open_encrypted_id(
            &mut assertion,
            &mut merged,
            &plaintext,
            decrypt::ENCRYPTED_ID_IN_ASSERTION,
        )?;
        policy::check_assertion(&assertion, &merged, want)
    }

    /// libxmlsec1 verifies the Response's signature with the IdP certificates (and the same
    /// algorithm allowlist as samael) and returns the canonical bytes it digested.
    fn verified_response(&self, xml: &str) -> Result<String, LoginError> {
        let certs = self
            .sp
            .idp_signing_certs()
            .ok()
            .flatten()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| LoginError::Internal("no IdP signing certificate".into()))?;
        Crypto::reduce_xml_to_signed_with_allowed_algorithms(
            xml,
            &certs,
            ReduceMode::PreDigest,
            self.sp.allowed_signature_algorithms.as_deref(),
        )
        .map_err(|e| LoginError::Signature(format!("Response around the EncryptedAssertion: {e}")))
    }

    /// An HTTP-POST logout message (already through the pre-filter with a logout root): its
    /// enveloped signature verified by libxmlsec1 with the IdP certificates and the sign-in
    /// algorithm allowlist; returns only the bytes that signature covered, the one thing the
    /// caller may parse. Blocking.
    pub fn verify_logout_signature(&self, xml: &str) -> Result<String, String> {
        let certs = self
            .sp
            .idp_signing_certs()
            .ok()
            .flatten()
            .filter(|c| !c.is_empty())
            .ok_or("the IdP metadata has no signing certificate")?;
        Crypto::reduce_xml_to_signed_with_allowed_algorithms(
            xml,
            &certs,
            ReduceMode::PreDigest,
            self.sp.allowed_signature_algorithms.as_deref(),
        )
        .map_err(|e| format!("signature does not verify with the IdP's signing certificates: {e}"))
    }

    /// Decrypts the `EncryptedAssertion` in `source`, screens the plaintext and verifies it.
    /// Returns the assertion, the facts with the decrypted assertion's signature status, and
    /// the plaintext (for an `EncryptedID` inside it).
    fn open_encrypted_assertion(
        &self,
        source: &str,
        key: &DecryptionKey,
        facts: &EnvelopeFacts,
        want: &Expectations<'_>,
        ids: &[&str],
    ) -> Result<(Assertion, EnvelopeFacts, String), LoginError> {
        let parts = decrypt::find_encrypted(source, decrypt::ENCRYPTED_ASSERTION_IN_RESPONSE)
            .map_err(decryption)?
            .ok_or_else(|| {
                LoginError::Decryption(
                    "no Response/EncryptedAssertion in the verified content".into(),
                )
            })?;
        let plaintext = decrypt::decrypt(&parts, key, &self.decrypt_policy).map_err(decryption)?;
        let inner =
            prefilter::prefilter_root(plaintext.as_bytes(), &self.prefilter, Root::Assertion)
                .map_err(|e| {
                    LoginError::Decryption(format!(
                        "decrypted EncryptedAssertion refused by the pre-filter: {e}"
                    ))
                })?;
        let mut merged = facts.clone();
        merged.assertion_count = inner.assertion_count;
        merged.assertion_signed = inner.assertion_signed;
        merged.signature_count += inner.signature_count;
        merged.name_id_sp_name_qualifier = inner.name_id_sp_name_qualifier;
        policy::check_signature_presence(&merged, want)?;
        let assertion = if merged.assertion_signed {
            // The same verification as a plaintext assertion's, on the plaintext alone.
            self.sp
                .parse_xml_response_with_mode(&plaintext, Some(ids), ReduceMode::PreDigest)
                .map_err(map_samael_error)?
        } else if merged.response_signed && !want.require_signed_assertion {
            // Authenticated by the Response signature over the ciphertext (verified above).
            plaintext.parse::<Assertion>().map_err(|e| {
                LoginError::Invalid(format!("decrypted assertion does not parse: {e}"))
            })?
        } else {
            // check_signature_presence refused this already; never accept it unsigned.
            return Err(LoginError::AssertionNotSigned);
        };
        Ok((assertion, merged, plaintext))
    }

    /// Replaces a missing NameID with the decrypted `EncryptedID` of the assertion's Subject,
    /// if `source` (content the verified signature covers) has one at `path`.
    fn open_encrypted_id(
        &self,
        assertion: &mut Assertion,
        facts: &mut EnvelopeFacts,
        source: &str,
        path: &[(&str, &str)],
    ) -> Result<(), LoginError> {
        // An element name cannot be escaped: no literal, no EncryptedID.
        if !source.contains("EncryptedID") {
            return Ok(());
        }
        let Some(parts) = decrypt::find_encrypted(source, path).map_err(decryption_id)? else {
            return Ok(());
        };
        let key = self
            .decryption_key
            .as_ref()
            .ok_or(DecryptError::NoKey)
            .map_err(decryption_id)?;
        let plaintext =
            decrypt::decrypt(&parts, key, &self.decrypt_policy).map_err(decryption_id)?;
        let screened =
            prefilter::prefilter_root(plaintext.as_bytes(), &self.prefilter, Root::NameId)
                .map_err(|e| {
                    LoginError::Decryption(format!(
                        "decrypted EncryptedID refused by the pre-filter: {e}"
                    ))
                })?;
        let name_id = decrypt::parse_name_id(&plaintext).map_err(decryption_id)?;
        let subject = assertion.subject.as_mut().ok_or(LoginError::NoNameId)?;
        if subject.name_id.is_some() {
            return Err(LoginError::Invalid(
                "Subject has both a NameID and an EncryptedID".into(),
            ));
        }
        subject.name_id = Some(SubjectNameID {
            format: name_id.format,
            value: name_id.value,
        });
        facts.name_id_sp_name_qualifier = screened.name_id_sp_name_qualifier;
        Ok(())
    }
}

/// The ACS form's two SAML fields, each at most once (`application/x-www-form-urlencoded`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcsForm {
    /// `SAMLResponse`, still base64.
    pub saml_response: String,
    pub relay_state: Option<String>,
}

/// Reads the ACS POST body: exactly one `SAMLResponse`, at most one `RelayState`; other
/// fields are ignored.
pub fn acs_form(body: &[u8]) -> Result<AcsForm, LoginError> {
    let mut saml_response = None;
    let mut relay_state = None;
    for (k, v) in url::form_urlencoded::parse(body) {
        match k.as_ref() {
            "SAMLResponse" if saml_response.is_some() => {
                return Err(LoginError::Malformed("SAMLResponse appears twice"))
            }
            "SAMLResponse" => saml_response = Some(v.into_owned()),
            "RelayState" if relay_state.is_some() => {
                return Err(LoginError::Malformed("RelayState appears twice"))
            }
            "RelayState" => relay_state = Some(v.into_owned()),
            _ => {}
        }
    }
    Ok(AcsForm {
        saml_response: saml_response
            .ok_or(LoginError::Malformed("no SAMLResponse field in the POST"))?,
        relay_state,
    })
}

/// base64 (IdPs may wrap it at 64/76 columns) → size cap → pre-filter → UTF-8.
pub fn decode_and_screen(
    saml_response_b64: &str,
    policy: &PrefilterPolicy,
) -> Result<(String, EnvelopeFacts), LoginError> {
    let compact: Vec<u8> = saml_response_b64
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if compact.len() > policy.max_bytes.saturating_mul(4) / 3 + 4 {
        return Err(LoginError::BodyTooLarge {
            limit: policy.max_bytes,
        });
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .map_err(|_| LoginError::Malformed("SAMLResponse is not valid base64"))?;
    let facts = prefilter::prefilter(&bytes, policy).map_err(LoginError::Prefilter)?;
    let xml =
        String::from_utf8(bytes).map_err(|_| LoginError::Malformed("SAMLResponse is not UTF-8"))?;
    Ok((xml, facts))
}

fn decryption(e: DecryptError) -> LoginError {
    LoginError::Decryption(format!("EncryptedAssertion: {e}"))
}

fn decryption_id(e: DecryptError) -> LoginError {
    LoginError::Decryption(format!("EncryptedID: {e}"))
}

/// Before a signature has authenticated the plaintext, the kind an attacker sees must not
/// depend on it (a CBC padding or XML parsing oracle): those failures become `Decryption`,
/// with the precise reason kept for the log. Failures that need a verified signature first
/// (expired, audience, recipient …) are left as they are.
fn unauthenticated(e: LoginError) -> LoginError {
    match e {
        LoginError::Signature(_)
        | LoginError::Invalid(_)
        | LoginError::Prefilter(_)
        | LoginError::Malformed(_)
        | LoginError::AssertionNotSigned => {
            LoginError::Decryption(format!("unauthenticated plaintext: {}", e.reason()))
        }
        other => other,
    }
}

/// Classifies samael's verdict so the person sees the right message.
pub fn map_samael_error(e: SamaelError) -> LoginError {
    use SamaelError::*;
    let detail = e.to_string();
    match e {
        FailedToValidateSignature | CryptoXmlError(_) => LoginError::Signature(detail),
        AssertionExpired { .. }
        | AssertionConditionExpired { .. }
        | AssertionSubjectConfirmationExpired { .. }
        | ResponseExpired { .. } => LoginError::Expired(detail),
        AssertionConditionExpiredBefore { .. }
        | AssertionSubjectConfirmationExpiredBefore { .. } => LoginError::NotYetValid(detail),
        AssertionConditionAudienceRestrictionFailed { .. } => LoginError::Audience { got: vec![] },
        AssertionRecipientMismatch { .. } => LoginError::Recipient(detail),
        DestinationValidationError {
            response_destination,
            ..
        } => LoginError::Destination {
            got: response_destination,
        },
        AssertionIssuerMismatch { issuer, .. } | ResponseIssuerMismatch { issuer, .. } => {
            LoginError::Issuer { got: issuer }
        }
        ResponseBadStatusCode { code } => LoginError::IdpStatus {
            code,
            sub_code: None,
            message: None,
        },
        _ => LoginError::Invalid(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acs_form_takes_each_saml_field_once() {
        let form = acs_form(b"x=1&SAMLResponse=PHg%2B&RelayState=%2Fhome&y").unwrap();
        assert_eq!(form.saml_response, "PHg+");
        assert_eq!(form.relay_state.as_deref(), Some("/home"));
        let table: [(&[u8], &str); 4] = [
            (b"", "no SAMLResponse field in the POST"),
            (b"RelayState=a", "no SAMLResponse field in the POST"),
            (
                b"SAMLResponse=a&SAMLResponse=a",
                "SAMLResponse appears twice",
            ),
            (
                b"SAMLResponse=a&RelayState=&RelayState=",
                "RelayState appears twice",
            ),
        ];
        for (body, reason) in table {
            match acs_form(body) {
                Err(LoginError::Malformed(r)) => assert_eq!(r, reason, "{body:?}"),
                other => panic!("{body:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn decode_and_screen_refuses_before_the_prefilter_parses() {
        let policy = PrefilterPolicy {
            max_bytes: 30,
            ..PrefilterPolicy::default()
        };
        assert!(matches!(
            decode_and_screen(&"A".repeat(48), &policy),
            Err(LoginError::BodyTooLarge { limit: 30 })
        ));
        assert!(matches!(
            decode_and_screen("not base64!", &policy),
            Err(LoginError::Malformed("SAMLResponse is not valid base64"))
        ));
        // Wrapped base64 is fine; `<x/>` then fails the pre-filter, not the decoding.
        assert!(matches!(
            decode_and_screen("PH\r\ngv\nPg==", &policy),
            Err(LoginError::Prefilter(_))
        ));
    }
}
