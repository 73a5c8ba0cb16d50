//! The ACS verification path from form field to accepted assertion: base64 → pre-filter →
//! envelope checks → samael (libxmlsec1) signature verification → policy checks.
//!
//! [`Verifier::verify_signed`] is blocking C code; the gateway runs it on a bounded blocking
//! pool, never on the async workers.

use base64::Engine;
use chrono::{DateTime, Utc};
use samael::crypto::{AllowedSignatureAlgorithm, ReduceMode};
use samael::service_provider::{Error as SamaelError, ServiceProvider};

use super::error::LoginError;
use super::metadata::IdpInfo;
use super::policy::{self, AcceptedAssertion, Expectations};
use super::prefilter::{self, EnvelopeFacts, PrefilterPolicy};
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
            max_issue_delay: chrono::Duration::seconds(90) + skew,
            allow_idp_initiated: false,
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
            idp,
        }
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
        }
    }

    /// Decodes the form field and runs the pre-filter (cheap; safe on an async worker).
    pub fn decode_and_screen(
        &self,
        saml_response_b64: &str,
    ) -> Result<(String, EnvelopeFacts), LoginError> {
        // IdPs may wrap base64 at 64/76 columns.
        let compact: String = saml_response_b64
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        if compact.len() > self.prefilter.max_bytes.saturating_mul(4) / 3 + 4 {
            return Err(LoginError::BodyTooLarge {
                limit: self.prefilter.max_bytes,
            });
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map_err(|_| LoginError::Malformed("SAMLResponse is not valid base64"))?;
        let facts = prefilter::prefilter(&bytes, &self.prefilter).map_err(LoginError::Prefilter)?;
        let xml = String::from_utf8(bytes)
            .map_err(|_| LoginError::Malformed("SAMLResponse is not UTF-8"))?;
        Ok((xml, facts))
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
        policy::check_envelope(facts, &want)?;
        let ids: Vec<&str> = request_id.into_iter().collect();
        // PreDigest: samael hands back exactly the bytes libxmlsec1 digested for the verified
        // reference (the Response when it is signed, else the Assertion) — the strictest mode.
        let assertion = self
            .sp
            .parse_xml_response_with_mode(xml, Some(&ids), ReduceMode::PreDigest)
            .map_err(map_samael_error)?;
        policy::check_assertion(&assertion, facts, &want)
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
        AssertionInResponseToInvalid { .. } | ResponseInResponseToInvalid { .. } => {
            LoginError::InResponseTo { got: None }
        }
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
