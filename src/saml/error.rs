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
    /// The whole body did not arrive within the deadline (a client trickling it to hold the
    /// connection and the buffer).
    BodyTimeout {
        after: std::time::Duration,
    },
    /// Missing field, not base64, not UTF-8, wrong content type.
    Malformed(&'static str),
    /// The structural gate refused the XML before any crypto ran.
    Prefilter(PrefilterError),
    /// No pending sign-in matches the RelayState (none sent, unknown, used or expired), yet
    /// the response answers request `got` (on the Response or a SubjectConfirmationData):
    /// an answer to a sign-in we no longer hold, never taken as unsolicited.
    UnknownRequest {
        got: String,
    },
    /// No pending sign-in matches the RelayState and the response answers no request (an
    /// IdP-initiated response), while `saml.allow_idp_initiated` is off.
    Unsolicited {
        /// A RelayState was sent (and matched nothing).
        relay_state: bool,
    },
    /// The pending sign-in exists but this browser did not start it (login CSRF, or the
    /// login cookie did not come back).
    WrongBrowser {
        /// The browser sent a valid login cookie, only not the one that started it.
        login_cookie: bool,
    },
    /// The IdP answered with a non-success status.
    IdpStatus {
        code: String,
        sub_code: Option<String>,
        message: Option<String>,
    },
    Destination {
        got: Option<String>,
    },
    /// A pending sign-in was claimed but the response does not answer it.
    InResponseTo(InResponseToError),
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
    /// An identity value `headers.encoding` cannot send (`refuse` and a non-ASCII name).
    IdentityHeader(crate::identity::HeaderEncodingError),
    DuplicateAttribute(String),
    SpNameQualifier(String),
    /// The AuthnStatement's class is not the one `saml.authn_context_class_ref` requires.
    AuthnContext {
        required: String,
        got: Vec<String>,
    },
    Replay(String),
    /// The assertion is good, but SCIM says this user may not sign in (disabled, deleted, or
    /// never provisioned under `scim.require_provisioned`); `why` is the audit reason.
    AccountDisabled {
        user: String,
        why: &'static str,
    },
    /// samael rejected it for a reason we do not classify more finely.
    Invalid(String),
    /// Too many verifications queued; try again.
    Busy,
    /// The shared state backend (Redis) did not answer: without it a replay cannot be ruled
    /// out, so no sign-in completes.
    StateUnavailable(String),
    /// An IdP-initiated assertion issued before the shared replay cache's memory began (Redis
    /// restarted since): whether it was already used cannot be known.
    IssuedBeforeReplayMemory(String),
    Internal(String),
}

impl LoginError {
    /// Short stable label for metrics and log filtering.
    pub fn kind(&self) -> &'static str {
        use LoginError::*;
        match self {
            BodyTooLarge { .. } => "body_too_large",
            BodyTimeout { .. } => "body_timeout",
            Malformed(_) => "malformed",
            Prefilter(_) => "prefilter",
            UnknownRequest { .. } | Unsolicited { .. } => "no_pending_login",
            WrongBrowser { .. } => "wrong_browser",
            IdpStatus { .. } => "idp_status",
            Destination { .. } => "destination",
            InResponseTo(_) => "in_response_to",
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
            IdentityHeader(_) => "identity_header",
            DuplicateAttribute(_) => "duplicate_attribute",
            SpNameQualifier(_) => "sp_name_qualifier",
            AuthnContext { .. } => "authn_context",
            Replay(_) => "replay",
            AccountDisabled { .. } => "account_disabled",
            Invalid(_) => "invalid",
            Busy => "busy",
            StateUnavailable(_) => "state_unavailable",
            IssuedBeforeReplayMemory(_) => "issued_before_replay_memory",
            Internal(_) => "internal",
        }
    }

    /// The precise reason for the audit log (attacker-controlled parts are truncated).
    pub fn reason(&self) -> String {
        use LoginError::*;
        match self {
            BodyTooLarge { limit } => format!("POST body exceeds {limit} bytes"),
            BodyTimeout { after } => format!(
                "request body not received in time (deadline {} s)",
                after.as_secs()
            ),
            Malformed(what) => (*what).to_string(),
            Prefilter(e) => format!("pre-filter refused the response: {e}"),
            UnknownRequest { got } => format!("the response answers request {}, but no pending sign-in matches the RelayState (none sent, unknown, used or expired)", clip(got)),
            Unsolicited { relay_state: true } => "RelayState matches no pending sign-in (unknown, used or expired) and the response answers no request: unsolicited, and saml.allow_idp_initiated is off".into(),
            Unsolicited { relay_state: false } => "no RelayState and the response answers no request: unsolicited, and saml.allow_idp_initiated is off".into(),
            WrongBrowser { login_cookie: false } => "pending sign-in is bound to another browser: this one sent no valid login cookie".into(),
            WrongBrowser { login_cookie: true } => "pending sign-in is bound to another browser: this one's login cookie is a different one".into(),
            IdpStatus { code, sub_code, message } => format!(
                "IdP status {}{}{}",
                clip(code),
                sub_code.as_deref().map(|c| format!(" {}", clip(c))).unwrap_or_default(),
                message.as_deref().map(|m| format!(": {}", clip(m))).unwrap_or_default()
            ),
            Destination { got } => format!("Destination {:?} is not our ACS URL", got.as_deref().map(clip)),
            InResponseTo(e) => e.reason(),
            Issuer { got } => format!("Issuer {:?} is not the configured IdP", got.as_deref().map(clip)),
            ResponseNotSigned => "the Response is not signed and saml.require_signed_response is on".into(),
            AssertionNotSigned => "the Assertion is not signed and saml.require_signed_assertion is on".into(),
            Decryption(d) => format!("encrypted content refused: {}", clip_to(d, 240)),
            EncryptionRequired => "the assertion is not encrypted and saml.require_encryption is on".into(),
            Signature(d) => format!("signature verification failed: {}", clip(d)),
            Audience { got } if got.is_empty() => "no AudienceRestriction names our entity ID (missing, or samael refused it)".into(),
            Audience { got } => format!(
                "AudienceRestriction {} does not name our entity ID",
                clip_list(got)
            ),
            Recipient(d) => format!("SubjectConfirmation Recipient mismatch: {}", clip(d)),
            Expired(d) => format!("assertion expired: {}", clip(d)),
            NotYetValid(d) => format!("assertion not yet valid (clock skew?): {}", clip(d)),
            NoAuthnStatement => "assertion has no AuthnStatement".into(),
            NoNameId => "assertion has no NameID".into(),
            BadUserId(why) => format!("user id unusable: {why}"),
            MissingUserAttribute(a) => format!("assertion lacks the user attribute {}", clip(a)),
            IdentityHeader(e) => e.reason(),
            DuplicateAttribute(a) => format!("attribute {} appears more than once", clip(a)),
            SpNameQualifier(q) => format!("NameID SPNameQualifier {} is not our entity ID", clip(q)),
            AuthnContext { required, got } => format!(
                "AuthnContextClassRef {} is not the required {}",
                clip_list(got),
                clip(required)
            ),
            Replay(id) => format!("assertion {} was already used", clip(id)),
            AccountDisabled { user, why } => format!("user {} refused: {why}", clip(user)),
            Invalid(d) => format!("response rejected: {}", clip(d)),
            Busy => "too many sign-ins being verified; request shed".into(),
            StateUnavailable(d) => format!("cannot finish the sign-in: {}", clip(d)),
            IssuedBeforeReplayMemory(id) => format!(
                "IdP-initiated assertion {} was issued before the shared replay cache (Redis) started: a replay cannot be ruled out",
                clip(id)
            ),
            Internal(d) => format!("internal error: {}", clip(d)),
        }
    }

    /// The headline and sentence the person sees.
    pub fn user_message(&self) -> (&'static str, &'static str) {
        use LoginError::*;
        match self {
            UnknownRequest { .. } | Unsolicited { .. } | WrongBrowser { .. } => (
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
            AccountDisabled { .. } => (
                "Your account is disabled",
                "Your organisation has turned off your access to this application. If you think this is a mistake, contact your administrator.",
            ),
            IdentityHeader(e) => e.user_message(),
            Busy => (
                "Too many sign-ins right now",
                "The server is busy. Please wait a moment and try again.",
            ),
            StateUnavailable(_) | IssuedBeforeReplayMemory(_) => (
                "Sign-in is temporarily unavailable",
                "The sign-in service cannot finish sign-ins right now. Please wait a moment and sign in again.",
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
            LoginError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            LoginError::Busy
            | LoginError::StateUnavailable(_)
            | LoginError::IssuedBeforeReplayMemory(_) => StatusCode::SERVICE_UNAVAILABLE,
            LoginError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            LoginError::IdpStatus { .. }
            | LoginError::WrongBrowser { .. }
            | LoginError::AuthnContext { .. }
            | LoginError::AccountDisabled { .. }
            | LoginError::IdentityHeader(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// Where a response names the request it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestRef {
    /// `samlp:Response/@InResponseTo`.
    Response,
    /// `SubjectConfirmationData/@InResponseTo` of a bearer SubjectConfirmation.
    SubjectConfirmationData,
}

impl RequestRef {
    fn name(self) -> &'static str {
        match self {
            RequestRef::Response => "Response",
            RequestRef::SubjectConfirmationData => "SubjectConfirmationData",
        }
    }
}

/// How a response fails to answer the pending sign-in it was posted against (the pending
/// sign-in was found and is this browser's). Each case is its own audit reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InResponseToError {
    /// Neither the Response nor the bearer SubjectConfirmationData names a request.
    Missing,
    /// The Response names the pending request; the bearer SubjectConfirmationData names
    /// none (the Web Browser SSO profile requires it there).
    MissingInSubjectConfirmation,
    /// `at` names request `got`, not the pending one.
    NotThisRequest { at: RequestRef, got: String },
    /// The Response and the SubjectConfirmationData name different requests.
    ResponseVsSubjectConfirmation { response: String, subject: String },
}

impl InResponseToError {
    pub fn reason(&self) -> String {
        use InResponseToError::*;
        match self {
            Missing => "the response answers no request (no InResponseTo on the Response or the SubjectConfirmationData), but was posted against a pending sign-in".into(),
            MissingInSubjectConfirmation => "the Response names the pending request but the bearer SubjectConfirmationData has no InResponseTo".into(),
            NotThisRequest { at, got } => format!(
                "{} InResponseTo {} is not this browser's pending request",
                at.name(),
                clip(got)
            ),
            ResponseVsSubjectConfirmation { response, subject } => format!(
                "Response InResponseTo {} differs from SubjectConfirmationData InResponseTo {}",
                clip(response),
                clip(subject)
            ),
        }
    }
}

/// How many entries of an attacker-sent list a reason shows (the rest are counted).
const LIST_ENTRIES: usize = 4;

/// Bounds attacker-controlled text in log lines and neutralises characters that could
/// forge or disguise a line (see [`clip_to`]).
pub fn clip(s: &str) -> String {
    clip_to(s, 120)
}

/// At most `max` characters of `s`, `…` if cut. Control characters, the Unicode line and
/// paragraph separators and the bidirectional controls (which can make a log line read
/// differently from what it holds) are escaped (`\n`, `\u{202e}`). The one function for
/// attacker-controlled text in reasons, here and in the pre-filter.
pub fn clip_to(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max + 8));
    for (n, c) in s.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters a log line must not carry as they are.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{200e}' | '\u{200f}' | '\u{061c}' // directional marks
            | '\u{202a}'..='\u{202e}' // embeddings and overrides
            | '\u{2066}'..='\u{2069}' // isolates
        )
}

/// The first [`LIST_ENTRIES`] entries of `list`, each clipped, then how many more there were.
fn clip_list(list: &[String]) -> String {
    let shown: Vec<String> = list.iter().take(LIST_ENTRIES).map(|e| clip(e)).collect();
    match list.len().saturating_sub(LIST_ENTRIES) {
        0 => format!("{shown:?}"),
        more => format!("{shown:?} and {more} more"),
    }
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
    fn long_lists_are_cut_and_counted() {
        let got: Vec<String> = (0..10_000).map(|i| format!("https://sp{i}.test")).collect();
        let r = LoginError::Audience { got }.reason();
        assert!(r.contains("sp3.test") && !r.contains("sp4.test"), "{r}");
        assert!(r.contains("and 9996 more"), "{r}");
        assert!(r.len() < 400, "{r}");
        let r = LoginError::AuthnContext {
            required: "mfa".into(),
            got: vec!["a".into(), "b".into()],
        }
        .reason();
        assert_eq!(
            r,
            "AuthnContextClassRef [\"a\", \"b\"] is not the required mfa"
        );
    }

    #[test]
    fn separators_and_bidi_controls_are_escaped() {
        for c in [
            '\u{2028}', '\u{2029}', '\u{202e}', '\u{2066}', '\u{200f}', '\n', '\u{7f}',
        ] {
            let clipped = clip(&format!("a{c}b"));
            assert!(!clipped.contains(c), "{c:?} survived: {clipped:?}");
            assert!(
                clipped.contains("\\u{") || clipped.contains("\\n"),
                "{clipped:?}"
            );
        }
        assert_eq!(clip("plain é"), "plain é");
        assert_eq!(clip_to("abcdef", 3), "abc…");
    }

    #[test]
    fn body_timeouts_answer_408() {
        let e = LoginError::BodyTimeout {
            after: std::time::Duration::from_secs(30),
        };
        assert_eq!(e.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(e.kind(), "body_timeout");
        assert!(e.reason().starts_with("request body not received in time"));
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
            LoginError::Unsolicited { relay_state: true }
                .user_message()
                .0,
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
