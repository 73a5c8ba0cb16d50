//! Why a sign-in failed: one enum carrying the precise reason for the audit log and the plain
//! sentence the person sees. Neither ever contains a raw SAML message or a cookie value.

use http::StatusCode;

use super::prefilter::PrefilterError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// POST body over the configured cap.
    BodyTooLarge {
        limit: usize,
    },
    /// Missing field, not base64, not UTF-8, wrong content type.
    Malformed(&'static str),
    /// The structural gate refused the XML before any crypto ran.
    Prefilter(PrefilterError),
    /// RelayState unknown, already used, or expired.
    NoPendingLogin,
    /// The pending login exists but this browser did not start it (login CSRF).
    WrongBrowser,
    /// The IdP answered with a non-success status.
    IdpStatus {
        code: String,
        sub_code: Option<String>,
        message: Option<String>,
    },
    Destination {
        got: Option<String>,
    },
    InResponseTo {
        got: Option<String>,
    },
    Issuer {
        got: Option<String>,
    },
    ResponseNotSigned,
    AssertionNotSigned,
    /// An `EncryptedAssertion` or `EncryptedID` could not be decrypted or its plaintext was
    /// refused. While the ciphertext is unauthenticated (no verified signature covers it yet),
    /// every failure up to the inner signature check is reported as this one kind, so the
    /// answer is no padding or parsing oracle; the audit reason stays precise.
    Decryption(String),
    /// A plaintext assertion arrived and `saml.require_encryption` is on.
    EncryptionRequired,
    /// Signature missing, invalid, from an unknown key, or with a refused algorithm.
    Signature(String),
    Audience {
        got: Vec<String>,
    },
    Recipient(String),
    Expired(String),
    NotYetValid(String),
    NoAuthnStatement,
    NoNameId,
    /// A NameID or user id with control characters or otherwise unusable.
    BadUserId(&'static str),
    MissingUserAttribute(String),
    DuplicateAttribute(String),
    SpNameQualifier(String),
    /// The AuthnStatement's class is not the one `saml.authn_context_class_ref` requires.
    AuthnContext {
        required: String,
        got: Vec<String>,
    },
    Replay(String),
    /// samael rejected it for a reason we do not classify more finely.
    Invalid(String),
    /// Too many verifications queued; try again.
    Busy,
    Internal(String),
}

impl LoginError {
    /// Short stable label for metrics and log filtering.
    pub fn kind(&self) -> &'static str {
        use LoginError::*;
        match self {
            BodyTooLarge { .. } => "body_too_large",
            Malformed(_) => "malformed",
            Prefilter(_) => "prefilter",
            NoPendingLogin => "no_pending_login",
            WrongBrowser => "wrong_browser",
            IdpStatus { .. } => "idp_status",
            Destination { .. } => "destination",
            InResponseTo { .. } => "in_response_to",
            Issuer { .. } => "issuer",
            ResponseNotSigned => "response_not_signed",
            AssertionNotSigned => "assertion_not_signed",
            Decryption(_) => "decryption",
            EncryptionRequired => "encryption_required",
            Signature(_) => "signature",
            Audience { .. } => "audience",
            Recipient(_) => "recipient",
            Expired(_) => "expired",
            NotYetValid(_) => "not_yet_valid",
            NoAuthnStatement => "no_authn_statement",
            NoNameId => "no_name_id",
            BadUserId(_) => "bad_user_id",
            MissingUserAttribute(_) => "missing_user_attribute",
            DuplicateAttribute(_) => "duplicate_attribute",
            SpNameQualifier(_) => "sp_name_qualifier",
            AuthnContext { .. } => "authn_context",
            Replay(_) => "replay",
            Invalid(_) => "invalid",
            Busy => "busy",
            Internal(_) => "internal",
        }
    }

    /// The precise reason for the audit log (attacker-controlled parts are truncated).
    pub fn reason(&self) -> String {
        use LoginError::*;
        match self {
            BodyTooLarge { limit } => format!("POST body exceeds {limit} bytes"),
            Malformed(what) => (*what).to_string(),
            Prefilter(e) => format!("pre-filter refused the response: {e}"),
            NoPendingLogin => "RelayState does not match a pending sign-in (unknown, used, or expired)".into(),
            WrongBrowser => "pending sign-in was started by a different browser (login cookie missing or different)".into(),
            IdpStatus { code, sub_code, message } => format!(
                "IdP status {} {}{}",
                clip(code),
                sub_code.as_deref().map(clip).unwrap_or_default(),
                message.as_deref().map(|m| format!(": {}", clip(m))).unwrap_or_default()
            ),
            Destination { got } => format!("Destination {:?} is not our ACS URL", got.as_deref().map(clip)),
            InResponseTo { got } => format!("InResponseTo {:?} is not this browser's pending request", got.as_deref().map(clip)),
            Issuer { got } => format!("Issuer {:?} is not the configured IdP", got.as_deref().map(clip)),
            ResponseNotSigned => "the Response is not signed and saml.require_signed_response is on".into(),
            AssertionNotSigned => "the Assertion is not signed and saml.require_signed_assertion is on".into(),
            Decryption(d) => format!("encrypted content refused: {}", clip_to(d, 240)),
            EncryptionRequired => "the assertion is not encrypted and saml.require_encryption is on".into(),
            Signature(d) => format!("signature verification failed: {}", clip(d)),
            Audience { got } if got.is_empty() => "no AudienceRestriction names our entity ID (missing, or samael refused it)".into(),
            Audience { got } => format!(
                "AudienceRestriction {:?} does not name our entity ID",
                got.iter().map(|a| clip(a)).collect::<Vec<_>>()
            ),
            Recipient(d) => format!("SubjectConfirmation Recipient mismatch: {}", clip(d)),
            Expired(d) => format!("assertion expired: {}", clip(d)),
            NotYetValid(d) => format!("assertion not yet valid (clock skew?): {}", clip(d)),
            NoAuthnStatement => "assertion has no AuthnStatement".into(),
            NoNameId => "assertion has no NameID".into(),
            BadUserId(why) => format!("user id unusable: {why}"),
            MissingUserAttribute(a) => format!("assertion lacks the user attribute {}", clip(a)),
            DuplicateAttribute(a) => format!("attribute {} appears more than once", clip(a)),
            SpNameQualifier(q) => format!("NameID SPNameQualifier {} is not our entity ID", clip(q)),
            AuthnContext { required, got } => format!(
                "AuthnContextClassRef {:?} is not the required {}",
                got.iter().take(4).map(|c| clip(c)).collect::<Vec<_>>(),
                clip(required)
            ),
            Replay(id) => format!("assertion {} was already used", clip(id)),
            Invalid(d) => format!("response rejected: {}", clip(d)),
            Busy => "too many sign-ins being verified; request shed".into(),
            Internal(d) => format!("internal error: {}", clip(d)),
        }
    }

    /// The headline and sentence the person sees.
    pub fn user_message(&self) -> (&'static str, &'static str) {
        use LoginError::*;
        match self {
            NoPendingLogin | WrongBrowser => (
                "Your sign-in expired",
                "The sign-in took too long, was already used, or was started in another browser. Please sign in again.",
            ),
            Expired(_) | Replay(_) => (
                "Your sign-in expired",
                "The answer from your identity provider is no longer valid. Please sign in again.",
            ),
            NotYetValid(_) => (
                "Sign-in could not be completed",
                "The identity provider's clock and this server's clock disagree. Please try again in a minute; if it persists, tell your administrator.",
            ),
            IdpStatus { .. } => (
                "Your identity provider reported a problem",
                "The identity provider did not sign you in. Please try again, or contact your administrator if it keeps happening.",
            ),
            Audience { .. } | Recipient(_) | Destination { .. } | SpNameQualifier(_) => (
                "Sign-in not meant for this application",
                "The identity provider issued a sign-in for a different application. Your administrator needs to check the SAML settings.",
            ),
            AuthnContext { .. } => (
                "A stronger sign-in is required",
                "This application requires a stronger sign-in (for example multi-factor) than the one your identity provider reported. Please sign in again using it, or contact your administrator.",
            ),
            Busy => (
                "Too many sign-ins right now",
                "The server is busy. Please wait a moment and try again.",
            ),
            Internal(_) => (
                "Something went wrong",
                "Sign-in failed because of an error on this server. Please try again.",
            ),
            _ => (
                "Sign-in failed",
                "The answer from your identity provider could not be accepted. Please try again, or contact your administrator.",
            ),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            LoginError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            LoginError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            LoginError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            LoginError::IdpStatus { .. }
            | LoginError::WrongBrowser
            | LoginError::AuthnContext { .. } => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// Bounds attacker-controlled text in log lines and strips control characters.
pub fn clip(s: &str) -> String {
    clip_to(s, 120)
}

/// [`clip`] to `max` characters (for reasons that nest another reason).
pub fn clip_to(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_bounded_and_single_line() {
        let e = LoginError::Destination {
            got: Some(format!("{}\r\nX-Evil: 1", "a".repeat(500))),
        };
        let r = e.reason();
        assert!(!r.contains('\n') && !r.contains('\r'));
        assert!(r.len() < 200);
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn decryption_reasons_are_bounded_and_generic_for_people() {
        let e = LoginError::Decryption(format!("aes128-cbc\n{}", "x".repeat(1000)));
        assert_eq!(e.kind(), "decryption");
        let r = e.reason();
        assert!(!r.contains('\n') && r.chars().count() < 300, "{r}");
        assert_eq!(e.user_message().0, "Sign-in failed");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(LoginError::EncryptionRequired.kind(), "encryption_required");
        assert!(LoginError::EncryptionRequired
            .reason()
            .contains("saml.require_encryption"));
    }

    #[test]
    fn people_see_plain_words() {
        assert_eq!(
            LoginError::Replay("x".into()).user_message().0,
            "Your sign-in expired"
        );
        assert_eq!(
            LoginError::NoPendingLogin.user_message().0,
            "Your sign-in expired"
        );
        assert!(LoginError::IdpStatus {
            code: "x".into(),
            sub_code: None,
            message: None
        }
        .user_message()
        .0
        .contains("identity provider"));
    }
}
