//! The checks samael leaves to the gateway (docs/security-model.md, "What the SAML library
//! leaves to samlgate"), as pure functions on parsed data: the envelope facts the pre-filter extracted and
//! the assertion samael returned from signed content. Time is passed in, never read here.

use chrono::{DateTime, Duration, Utc};
use samael::schema::{Assertion, AuthnStatement};

use super::error::{InResponseToError, LoginError, RequestRef};
use super::prefilter::EnvelopeFacts;
use crate::session::Identity;

pub const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";

/// What a response must match: our identity, the IdP's, this browser's request, the clock.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    pub sp_entity_id: &'a str,
    pub acs_url: &'a str,
    pub idp_entity_id: &'a str,
    /// The pending request's id; `None` only for IdP-initiated sign-in when enabled.
    pub request_id: Option<&'a str>,
    pub now: DateTime<Utc>,
    pub skew: Duration,
    pub require_signed_response: bool,
    pub require_signed_assertion: bool,
    /// `saml.authn_context_class_ref`: every AuthnStatement must carry exactly this class.
    pub required_authn_context: Option<&'a str>,
}

/// How old an IssueInstant may be (plus the skew): network time and the person's click.
/// samael's `max_issue_delay` is this plus the skew; unsolicited responses are held to it by
/// our own check too (with only the Assertion signed, samael checks no Response time).
pub const MAX_ISSUE_DELAY_SECS: i64 = 90;

/// Checks on the unsigned-or-signed envelope, before any crypto runs (cheap, and they give the
/// person a precise message for IdP-reported errors): [`check_response_envelope`] then
/// [`check_signature_presence`].
pub fn check_envelope(facts: &EnvelopeFacts, want: &Expectations<'_>) -> Result<(), LoginError> {
    check_response_envelope(facts, want)?;
    check_signature_presence(facts, want)
}

/// The Response element's own facts: Issuer, Status, Destination, InResponseTo, and whether it
/// must be signed. Everything that can be checked before an `EncryptedAssertion` is opened.
pub fn check_response_envelope(
    facts: &EnvelopeFacts,
    want: &Expectations<'_>,
) -> Result<(), LoginError> {
    if let Some(issuer) = &facts.issuer {
        if issuer != want.idp_entity_id {
            return Err(LoginError::Issuer {
                got: Some(issuer.clone()),
            });
        }
    }
    match facts.status_code.as_deref() {
        Some(STATUS_SUCCESS) => {}
        other => {
            return Err(LoginError::IdpStatus {
                code: other.unwrap_or("(no status)").to_string(),
                sub_code: facts.sub_status_code.clone(),
                message: facts.status_message.clone(),
            })
        }
    }
    match &facts.destination {
        Some(d) if d != want.acs_url => {
            return Err(LoginError::Destination {
                got: Some(d.clone()),
            })
        }
        None if facts.response_signed => return Err(LoginError::Destination { got: None }),
        _ => {}
    }
    check_response_in_response_to(facts.in_response_to.as_deref(), want.request_id)?;
    if want.require_signed_response && !facts.response_signed {
        return Err(LoginError::ResponseNotSigned);
    }
    Ok(())
}

/// `Response/@InResponseTo` against the pending request (`None`: an unsolicited response the
/// configuration allows). It is optional in SAML core: absent is fine here, and the bearer
/// SubjectConfirmationData must then name the request ([`check_subject_in_response_to`]).
/// The one place the Response's InResponseTo is judged: samael's own check is off (see
/// `Verifier::new`), as it refuses a signed Response without one.
pub fn check_response_in_response_to(
    response: Option<&str>,
    pending: Option<&str>,
) -> Result<(), LoginError> {
    match (response, pending) {
        (None, _) => Ok(()),
        (Some(got), Some(pending)) if got == pending => Ok(()),
        (Some(got), Some(_)) => Err(LoginError::InResponseTo(
            InResponseToError::NotThisRequest {
                at: RequestRef::Response,
                got: got.to_string(),
            },
        )),
        (Some(got), None) => Err(LoginError::UnknownRequest {
            got: got.to_string(),
        }),
    }
}

/// A bearer `SubjectConfirmationData/@InResponseTo` (`subject`) against the pending request,
/// with the Response's (`response`, already held to the pending one or absent) to name the
/// failure exactly. Solicited: `subject` must be the pending request, whether or not the
/// Response names it too. Unsolicited: `subject` must be absent — an answer to a request we do
/// not hold is never taken as unsolicited.
pub fn check_subject_in_response_to(
    subject: Option<&str>,
    response: Option<&str>,
    pending: Option<&str>,
) -> Result<(), LoginError> {
    use InResponseToError::*;
    let err = match (pending, subject) {
        (None, None) => return Ok(()),
        (Some(pending), Some(got)) if got == pending => return Ok(()),
        (None, Some(got)) => {
            return Err(LoginError::UnknownRequest {
                got: got.to_string(),
            })
        }
        (Some(_), None) if response.is_some() => MissingInSubjectConfirmation,
        (Some(_), None) => Missing,
        (Some(_), Some(got)) => match response {
            Some(r) if r != got => ResponseVsSubjectConfirmation {
                response: r.to_string(),
                subject: got.to_string(),
            },
            _ => NotThisRequest {
                at: RequestRef::SubjectConfirmationData,
                got: got.to_string(),
            },
        },
    };
    Err(LoginError::InResponseTo(err))
}

/// No pending sign-in matched the RelayState (`relay_state_sent`: one was sent): whether the
/// response may go on as an unsolicited (IdP-initiated) one. Only when `allow_idp_initiated`
/// and nothing in the envelope names a request; an `InResponseTo` on the Response or a
/// SubjectConfirmationData answers a sign-in we no longer hold. (Inside an
/// `EncryptedAssertion` it is caught after decryption, by [`check_subject_in_response_to`].)
pub fn check_unsolicited(
    facts: &EnvelopeFacts,
    relay_state_sent: bool,
    allow_idp_initiated: bool,
) -> Result<(), LoginError> {
    let named = facts
        .in_response_to
        .as_ref()
        .or(facts.subject_in_response_to.as_ref());
    if let Some(got) = named {
        return Err(LoginError::UnknownRequest { got: got.clone() });
    }
    if !allow_idp_initiated {
        return Err(LoginError::Unsolicited {
            relay_state: relay_state_sent,
        });
    }
    Ok(())
}

/// Which signatures are present: the Assertion's when required, and at least one of the two.
/// For an encrypted assertion, `facts.assertion_signed` must describe the decrypted one.
pub fn check_signature_presence(
    facts: &EnvelopeFacts,
    want: &Expectations<'_>,
) -> Result<(), LoginError> {
    if want.require_signed_assertion && !facts.assertion_signed {
        return Err(LoginError::AssertionNotSigned);
    }
    if !facts.response_signed && !facts.assertion_signed {
        return Err(LoginError::Signature(
            "neither the Response nor the Assertion carries a signature".into(),
        ));
    }
    Ok(())
}

/// An assertion that passed every check, reduced to what a session needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedAssertion {
    pub assertion_id: String,
    pub name_id: String,
    pub name_id_format: Option<String>,
    pub session_index: Option<String>,
    pub session_not_on_or_after: Option<DateTime<Utc>>,
    /// Until when the assertion id must be remembered to stop replays.
    pub replay_until: DateTime<Utc>,
    /// The assertion's IssueInstant (a shared replay cache refuses an IdP-initiated
    /// assertion issued before its memory began).
    pub issue_instant: DateTime<Utc>,
    pub attributes: Vec<Attribute>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub friendly_name: Option<String>,
    pub values: Vec<String>,
}

/// Checks on the assertion samael verified and returned.
pub fn check_assertion(
    a: &Assertion,
    facts: &EnvelopeFacts,
    want: &Expectations<'_>,
) -> Result<AcceptedAssertion, LoginError> {
    if a.issuer.value.as_deref() != Some(want.idp_entity_id) {
        return Err(LoginError::Issuer {
            got: a.issuer.value.clone(),
        });
    }
    if a.id.trim().is_empty() {
        return Err(LoginError::Invalid("assertion has no ID".into()));
    }
    let now = want.now;
    let skew = want.skew;

    // Unsolicited (IdP-initiated): no request of ours bounds its age, so the assertion must
    // be fresh — issued within the issue delay, and not in the future beyond the skew.
    if want.request_id.is_none() {
        let ii = a.issue_instant;
        if ii + Duration::seconds(MAX_ISSUE_DELAY_SECS) + skew < now {
            return Err(LoginError::Expired(format!(
                "unsolicited assertion IssueInstant {ii} is older than the issue delay"
            )));
        }
        if ii > now + skew {
            return Err(LoginError::NotYetValid(format!(
                "unsolicited assertion IssueInstant {ii}"
            )));
        }
    }

    // Conditions: required, with an AudienceRestriction naming us (each one must).
    let conditions = a
        .conditions
        .as_ref()
        .ok_or_else(|| LoginError::Audience { got: vec![] })?;
    let restrictions = conditions
        .audience_restrictions
        .as_deref()
        .unwrap_or_default();
    if restrictions.is_empty() {
        return Err(LoginError::Audience { got: vec![] });
    }
    for r in restrictions {
        if !r.audience.iter().any(|aud| aud == want.sp_entity_id) {
            return Err(LoginError::Audience {
                got: r.audience.clone(),
            });
        }
    }
    if let Some(nb) = conditions.not_before {
        if now + skew < nb {
            return Err(LoginError::NotYetValid(format!(
                "Conditions NotBefore {nb}"
            )));
        }
    }
    if let Some(noa) = conditions.not_on_or_after {
        if now - skew >= noa {
            return Err(LoginError::Expired(format!(
                "Conditions NotOnOrAfter {noa}"
            )));
        }
    }

    // A bearer SubjectConfirmation for our ACS, answering our request, still valid.
    let subject = a.subject.as_ref().ok_or(LoginError::NoNameId)?;
    let mut confirmation_until = None;
    let mut last_problem = LoginError::Invalid("no bearer SubjectConfirmation".into());
    for sc in subject.subject_confirmations.iter().flatten() {
        if sc.method.as_deref() != Some(BEARER) {
            continue;
        }
        let Some(data) = &sc.subject_confirmation_data else {
            last_problem = LoginError::Invalid("bearer SubjectConfirmation without data".into());
            continue;
        };
        if data.recipient.as_deref() != Some(want.acs_url) {
            last_problem = LoginError::Recipient(format!("{:?}", data.recipient));
            continue;
        }
        if let Err(e) = check_subject_in_response_to(
            data.in_response_to.as_deref(),
            facts.in_response_to.as_deref(),
            want.request_id,
        ) {
            last_problem = e;
            continue;
        }
        let Some(noa) = data.not_on_or_after else {
            last_problem =
                LoginError::Invalid("SubjectConfirmationData without NotOnOrAfter".into());
            continue;
        };
        if now - skew >= noa {
            last_problem =
                LoginError::Expired(format!("SubjectConfirmationData NotOnOrAfter {noa}"));
            continue;
        }
        if let Some(nb) = data.not_before {
            if now + skew < nb {
                last_problem =
                    LoginError::NotYetValid(format!("SubjectConfirmationData NotBefore {nb}"));
                continue;
            }
        }
        confirmation_until = Some(noa);
        break;
    }
    let confirmation_until = confirmation_until.ok_or(last_problem)?;

    let name_id = subject.name_id.as_ref().ok_or(LoginError::NoNameId)?;
    let name_id_value = name_id.value.trim();
    if name_id_value.is_empty() {
        return Err(LoginError::NoNameId);
    }
    check_text(name_id_value)?;
    if let Some(q) = &facts.name_id_sp_name_qualifier {
        if q != want.sp_entity_id {
            return Err(LoginError::SpNameQualifier(q.clone()));
        }
    }

    let statements = a.authn_statements.as_deref().unwrap_or_default();
    if statements.is_empty() {
        return Err(LoginError::NoAuthnStatement);
    }
    let session_not_on_or_after = statements
        .iter()
        .filter_map(|s| s.session_not_on_or_after)
        .min();
    if let Some(snoa) = session_not_on_or_after {
        if now >= snoa {
            return Err(LoginError::Expired(format!("SessionNotOnOrAfter {snoa}")));
        }
    }
    let session_index = statements.iter().find_map(|s| s.session_index.clone());
    if let Some(required) = want.required_authn_context {
        check_authn_context(statements, required)?;
    }

    let mut attributes: Vec<Attribute> = Vec::new();
    for st in a.attribute_statements.iter().flatten() {
        for attr in &st.attributes {
            let name = attr.name.clone().unwrap_or_default();
            if name.is_empty() {
                return Err(LoginError::Invalid("attribute without a Name".into()));
            }
            if attributes.iter().any(|x| x.name == name) {
                return Err(LoginError::DuplicateAttribute(name));
            }
            attributes.push(Attribute {
                name,
                friendly_name: attr.friendly_name.clone(),
                values: attr
                    .values
                    .iter()
                    .filter_map(|v| v.value.as_ref())
                    .map(|v| v.trim().to_string())
                    .collect(),
            });
        }
    }

    let replay_until = conditions
        .not_on_or_after
        .map_or(confirmation_until, |c| c.max(confirmation_until))
        + skew;
    Ok(AcceptedAssertion {
        assertion_id: a.id.clone(),
        name_id: name_id_value.to_string(),
        name_id_format: name_id.format.clone(),
        session_index,
        session_not_on_or_after,
        replay_until,
        issue_instant: a.issue_instant,
        attributes,
    })
}

/// The class of every AuthnStatement (`AuthnContext/AuthnContextClassRef`, trimmed).
pub fn authn_context_classes(statements: &[AuthnStatement]) -> Vec<Option<String>> {
    statements
        .iter()
        .map(|s| {
            s.authn_context
                .as_ref()
                .and_then(|c| c.value.as_ref())
                .and_then(|r| r.value.as_deref())
                .map(|v| v.trim().to_string())
        })
        .collect()
}

/// `Comparison="exact"`: each AuthnStatement names exactly the required class.
fn check_authn_context(statements: &[AuthnStatement], required: &str) -> Result<(), LoginError> {
    let classes = authn_context_classes(statements);
    if classes.iter().all(|c| c.as_deref() == Some(required)) {
        return Ok(());
    }
    Err(LoginError::AuthnContext {
        required: required.to_string(),
        got: classes
            .into_iter()
            .map(|c| c.unwrap_or_else(|| "(none)".into()))
            .collect(),
    })
}

/// Refuses text that must never reach a header or a log: control characters, or absurd length.
fn check_text(s: &str) -> Result<(), LoginError> {
    if s.chars().any(char::is_control) {
        return Err(LoginError::BadUserId("contains control characters"));
    }
    if s.len() > 1024 {
        return Err(LoginError::BadUserId("longer than 1024 bytes"));
    }
    Ok(())
}

/// Which attributes feed the identity (from `[headers]`).
#[derive(Debug, Clone)]
pub struct AttributeMap<'a> {
    /// Empty: the NameID is the user id.
    pub user: &'a str,
    pub email: &'a str,
    pub display_name: &'a str,
    pub groups: &'a str,
    pub preferred_username: &'a str,
}

fn lookup<'a>(attrs: &'a [Attribute], wanted: &str) -> Option<&'a Attribute> {
    if wanted.is_empty() {
        return None;
    }
    attrs.iter().find(|a| a.name == wanted).or_else(|| {
        attrs
            .iter()
            .find(|a| a.friendly_name.as_deref() == Some(wanted))
    })
}

fn clean_single(attrs: &[Attribute], wanted: &str) -> Option<String> {
    lookup(attrs, wanted)?
        .values
        .iter()
        .find(|v| !v.is_empty() && !v.chars().any(char::is_control))
        .cloned()
}

/// Builds the identity from an accepted assertion. Values with control characters are dropped
/// (and a user id with them refuses the sign-in): they are never forwarded.
pub fn identity(a: &AcceptedAssertion, map: &AttributeMap<'_>) -> Result<Identity, LoginError> {
    let user = if map.user.is_empty() {
        a.name_id.clone()
    } else {
        let attr = lookup(&a.attributes, map.user)
            .ok_or_else(|| LoginError::MissingUserAttribute(map.user.to_string()))?;
        let v = attr
            .values
            .first()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| LoginError::MissingUserAttribute(map.user.to_string()))?;
        check_text(v)?;
        v.clone()
    };
    let mut groups: Vec<String> = Vec::new();
    if let Some(attr) = lookup(&a.attributes, map.groups) {
        for g in &attr.values {
            if !g.is_empty() && !g.chars().any(char::is_control) && !groups.contains(g) {
                groups.push(g.clone());
            }
        }
    }
    Ok(Identity {
        user,
        email: clean_single(&a.attributes, map.email),
        display_name: clean_single(&a.attributes, map.display_name),
        preferred_username: clean_single(&a.attributes, map.preferred_username),
        groups,
        name_id: a.name_id.clone(),
        name_id_format: a.name_id_format.clone(),
        session_index: a.session_index.clone(),
        // Filled by the caller from `headers.attributes` (crate::identity::forwarded_attributes).
        attributes: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SP: &str = "https://app/saml/metadata";
    const ACS: &str = "https://app/saml/acs";
    const IDP: &str = "https://idp/metadata";

    fn want(now: DateTime<Utc>) -> Expectations<'static> {
        Expectations {
            sp_entity_id: SP,
            acs_url: ACS,
            idp_entity_id: IDP,
            request_id: Some("_req1"),
            now,
            skew: Duration::seconds(90),
            require_signed_response: false,
            require_signed_assertion: true,
            required_authn_context: None,
        }
    }

    fn facts() -> EnvelopeFacts {
        EnvelopeFacts {
            destination: Some(ACS.into()),
            in_response_to: Some("_req1".into()),
            issuer: Some(IDP.into()),
            status_code: Some(STATUS_SUCCESS.into()),
            response_signed: true,
            assertion_signed: true,
            assertion_count: 1,
            signature_count: 2,
            ..Default::default()
        }
    }

    /// Assertion XML with knobs; `t0` is the issue time.
    #[derive(Clone, Copy)]
    struct A {
        audience: Option<&'static str>,
        recipient: &'static str,
        irt: &'static str,
        method: &'static str,
        name_id: &'static str,
        authn: bool,
        attrs: &'static str,
        noa_secs: i64,
        nb_secs: i64,
        issuer: &'static str,
        /// AuthnContextClassRef text (raw XML); empty leaves the AuthnContext empty.
        class: &'static str,
    }

    impl Default for A {
        fn default() -> Self {
            A {
                audience: Some(SP),
                recipient: ACS,
                irt: "_req1",
                method: BEARER,
                name_id: "alice",
                authn: true,
                attrs: r#"<saml:Attribute Name="groups" FriendlyName="memberOf"><saml:AttributeValue>analysts</saml:AttributeValue><saml:AttributeValue>admins</saml:AttributeValue></saml:Attribute><saml:Attribute Name="urn:oid:0.9.2342.19200300.100.1.3" FriendlyName="mail"><saml:AttributeValue>alice@example.com</saml:AttributeValue></saml:Attribute>"#,
                noa_secs: 300,
                nb_secs: -30,
                issuer: IDP,
                class: "urn:oasis:names:tc:SAML:2.0:ac:classes:Password",
            }
        }
    }

    fn assertion(a: &A, t0: DateTime<Utc>) -> Assertion {
        let ts =
            |s: i64| (t0 + Duration::seconds(s)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let audience = a
            .audience
            .map(|au| format!("<saml:AudienceRestriction><saml:Audience>{au}</saml:Audience></saml:AudienceRestriction>"))
            .unwrap_or_default();
        let authn = if a.authn {
            let class = if a.class.is_empty() {
                String::new()
            } else {
                format!(
                    "<saml:AuthnContextClassRef>{}</saml:AuthnContextClassRef>",
                    a.class
                )
            };
            format!(
                r#"<saml:AuthnStatement AuthnInstant="{}" SessionIndex="_s1" SessionNotOnOrAfter="{}"><saml:AuthnContext>{class}</saml:AuthnContext></saml:AuthnStatement>"#,
                ts(0),
                ts(8 * 3600)
            )
        } else {
            String::new()
        };
        let xml = format!(
            r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_a1" Version="2.0" IssueInstant="{t}"><saml:Issuer>{issuer}</saml:Issuer><saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">{nid}</saml:NameID><saml:SubjectConfirmation Method="{m}"><saml:SubjectConfirmationData NotOnOrAfter="{noa}" Recipient="{r}"{irt}/></saml:SubjectConfirmation></saml:Subject><saml:Conditions NotBefore="{nb}" NotOnOrAfter="{noa}">{audience}</saml:Conditions>{authn}<saml:AttributeStatement>{attrs}</saml:AttributeStatement></saml:Assertion>"#,
            t = ts(0),
            issuer = a.issuer,
            nid = a.name_id,
            m = a.method,
            noa = ts(a.noa_secs),
            nb = ts(a.nb_secs),
            r = a.recipient,
            irt = if a.irt.is_empty() {
                String::new()
            } else {
                format!(r#" InResponseTo="{}""#, a.irt)
            },
            attrs = a.attrs,
        );
        xml.parse().expect("test assertion parses")
    }

    fn check(a: &A, now_offset: i64) -> Result<AcceptedAssertion, LoginError> {
        let t0 = Utc::now();
        check_assertion(
            &assertion(a, t0),
            &facts(),
            &want(t0 + Duration::seconds(now_offset)),
        )
    }

    #[test]
    fn a_good_assertion_is_accepted() {
        let ok = check(&A::default(), 0).unwrap();
        assert_eq!(ok.name_id, "alice");
        assert_eq!(ok.session_index.as_deref(), Some("_s1"));
        assert_eq!(ok.attributes.len(), 2);
    }

    #[test]
    fn audience_is_required_and_must_name_us() {
        assert_eq!(
            check(
                &A {
                    audience: None,
                    ..A::default()
                },
                0
            )
            .unwrap_err()
            .kind(),
            "audience"
        );
        assert_eq!(
            check(
                &A {
                    audience: Some("https://other-sp"),
                    ..A::default()
                },
                0
            )
            .unwrap_err()
            .kind(),
            "audience"
        );
    }

    #[test]
    fn recipient_in_response_to_and_method_are_checked() {
        assert_eq!(
            check(
                &A {
                    recipient: "https://evil/acs",
                    ..A::default()
                },
                0
            )
            .unwrap_err()
            .kind(),
            "recipient"
        );
        assert_eq!(
            check(
                &A {
                    irt: "_other",
                    ..A::default()
                },
                0
            )
            .unwrap_err()
            .kind(),
            "in_response_to"
        );
        assert_eq!(
            check(
                &A {
                    method: "urn:oasis:names:tc:SAML:2.0:cm:holder-of-key",
                    ..A::default()
                },
                0
            )
            .unwrap_err()
            .kind(),
            "invalid"
        );
    }

    #[test]
    fn time_window_honours_skew() {
        // Expires at +300 s; skew 90 s: fine at +350, refused at +400.
        assert!(check(&A::default(), 350).is_ok());
        assert_eq!(check(&A::default(), 400).unwrap_err().kind(), "expired");
        // Not before -30 s: a clock 60 s behind is within skew, 200 s behind is not.
        assert!(check(
            &A {
                nb_secs: 60,
                ..A::default()
            },
            0
        )
        .is_ok());
        assert_eq!(
            check(
                &A {
                    nb_secs: 200,
                    noa_secs: 900,
                    ..A::default()
                },
                0
            )
            .unwrap_err()
            .kind(),
            "not_yet_valid"
        );
    }

    #[test]
    fn authn_statement_and_name_id_are_required() {
        assert_eq!(
            check(
                &A {
                    authn: false,
                    ..A::default()
                },
                0
            )
            .unwrap_err()
            .kind(),
            "no_authn_statement"
        );
        assert_eq!(
            check(
                &A {
                    name_id: "&#160;",
                    ..A::default()
                },
                0
            )
            .unwrap_err()
            .kind(),
            "no_name_id"
        );
        assert_eq!(
            check(
                &A {
                    name_id: "alice&#10;X-Evil: 1",
                    ..A::default()
                },
                0
            )
            .unwrap_err()
            .kind(),
            "bad_user_id"
        );
    }

    #[test]
    fn duplicate_attributes_and_wrong_issuer_are_refused() {
        let dup = r#"<saml:Attribute Name="groups"><saml:AttributeValue>a</saml:AttributeValue></saml:Attribute><saml:Attribute Name="groups"><saml:AttributeValue>admins</saml:AttributeValue></saml:Attribute>"#;
        assert_eq!(
            check(
                &A {
                    attrs: dup,
                    ..A::default()
                },
                0
            )
            .unwrap_err(),
            LoginError::DuplicateAttribute("groups".into())
        );
        assert_eq!(
            check(
                &A {
                    issuer: "https://evil-idp",
                    ..A::default()
                },
                0
            )
            .unwrap_err()
            .kind(),
            "issuer"
        );
    }

    #[test]
    fn sp_name_qualifier_must_be_ours() {
        let t0 = Utc::now();
        let mut f = facts();
        f.name_id_sp_name_qualifier = Some("https://other-sp".into());
        assert_eq!(
            check_assertion(&assertion(&A::default(), t0), &f, &want(t0))
                .unwrap_err()
                .kind(),
            "sp_name_qualifier"
        );
        f.name_id_sp_name_qualifier = Some(SP.into());
        assert!(check_assertion(&assertion(&A::default(), t0), &f, &want(t0)).is_ok());
    }

    /// Each envelope check refuses with its own variant (matched as a variant, not by text).
    #[test]
    fn envelope_checks() {
        let w = want(Utc::now());
        assert_eq!(check_envelope(&facts(), &w), Ok(()));
        let mut strict = w.clone();
        strict.require_signed_response = true;
        let mut lax = w.clone();
        lax.require_signed_assertion = false;
        type Refused = fn(&LoginError) -> bool;
        type Case<'a> = (
            &'a str,
            fn(&mut EnvelopeFacts),
            &'a Expectations<'a>,
            Option<Refused>,
        );
        #[rustfmt::skip]
        let cases: [Case<'_>; 9] = [
            ("IdP status", |f| {
                f.status_code = Some("urn:oasis:names:tc:SAML:2.0:status:Responder".into());
                f.status_message = Some("user locked".into());
            }, &w, Some(|e| matches!(e, LoginError::IdpStatus { code, message, .. }
                if code.ends_with(":Responder") && message.as_deref() == Some("user locked")))),
            ("another Destination", |f| f.destination = Some("https://evil/acs".into()), &w,
                Some(|e| matches!(e, LoginError::Destination { got: Some(d) } if d == "https://evil/acs"))),
            ("signed, no Destination", |f| f.destination = None, &w,
                Some(|e| matches!(e, LoginError::Destination { got: None }))),
            ("unsigned envelope may omit Destination", |f| {
                f.destination = None;
                f.response_signed = false;
            }, &w, None),
            ("another request", |f| f.in_response_to = Some("_someone_elses".into()), &w,
                Some(|e| matches!(e, LoginError::InResponseTo(_)))),
            ("assertion unsigned", |f| f.assertion_signed = false, &w,
                Some(|e| matches!(e, LoginError::AssertionNotSigned))),
            ("response unsigned, required", |f| f.response_signed = false, &strict,
                Some(|e| matches!(e, LoginError::ResponseNotSigned))),
            ("nothing signed", |f| {
                f.response_signed = false;
                f.assertion_signed = false;
            }, &lax, Some(|e| matches!(e, LoginError::Signature(_)))),
            ("another Issuer", |f| f.issuer = Some("https://evil-idp".into()), &w,
                Some(|e| matches!(e, LoginError::Issuer { got: Some(i) } if i == "https://evil-idp"))),
        ];
        for (name, change, want, refused) in cases {
            let mut f = facts();
            change(&mut f);
            match (check_envelope(&f, want), refused) {
                (Ok(()), None) => {}
                (Err(e), Some(is)) => assert!(is(&e), "{name}: {e:?}"),
                (got, _) => panic!("{name}: {got:?}"),
            }
        }
    }

    /// Every way a response can fail to answer the pending request, one variant each.
    #[test]
    fn in_response_to_decisions_name_each_case() {
        use InResponseToError::*;
        const P: Option<&str> = Some("_req1");
        let other = || "_other".to_string();
        let not_this = |at, got: &str| {
            Err(LoginError::InResponseTo(NotThisRequest {
                at,
                got: got.into(),
            }))
        };
        // (Response InResponseTo, pending) → verdict on the envelope.
        for (response, pending, want) in [
            (None, P, Ok(())),
            (Some("_req1"), P, Ok(())),
            (None, None, Ok(())),
            (Some("_other"), P, not_this(RequestRef::Response, "_other")),
            (
                Some("_other"),
                None,
                Err(LoginError::UnknownRequest { got: other() }),
            ),
        ] {
            assert_eq!(
                check_response_in_response_to(response, pending),
                want,
                "{response:?} {pending:?}"
            );
        }
        // (SubjectConfirmationData, Response, pending) → verdict on the assertion.
        for (subject, response, pending, want) in [
            (Some("_req1"), Some("_req1"), P, Ok(())),
            // Solicited, named on the SubjectConfirmationData only.
            (Some("_req1"), None, P, Ok(())),
            (None, None, None, Ok(())),
            (None, None, P, Err(LoginError::InResponseTo(Missing))),
            (
                None,
                Some("_req1"),
                P,
                Err(LoginError::InResponseTo(MissingInSubjectConfirmation)),
            ),
            (
                Some("_other"),
                None,
                P,
                not_this(RequestRef::SubjectConfirmationData, "_other"),
            ),
            (
                Some("_other"),
                Some("_req1"),
                P,
                Err(LoginError::InResponseTo(ResponseVsSubjectConfirmation {
                    response: "_req1".into(),
                    subject: other(),
                })),
            ),
            // Never unsolicited when it names a request.
            (
                Some("_other"),
                None,
                None,
                Err(LoginError::UnknownRequest { got: other() }),
            ),
        ] {
            assert_eq!(
                check_subject_in_response_to(subject, response, pending),
                want,
                "{subject:?} {response:?} {pending:?}"
            );
        }
        for (e, kind) in [
            (LoginError::InResponseTo(Missing), "in_response_to"),
            (
                LoginError::UnknownRequest { got: other() },
                "no_pending_login",
            ),
            (
                LoginError::Unsolicited { relay_state: false },
                "no_pending_login",
            ),
        ] {
            assert_eq!(e.kind(), kind);
        }
    }

    /// No pending sign-in matched: unsolicited only when allowed and nothing names a request.
    #[test]
    fn unsolicited_needs_the_setting_and_no_request_named() {
        let named = |response: Option<&str>, subject: Option<&str>| EnvelopeFacts {
            in_response_to: response.map(str::to_string),
            subject_in_response_to: subject.map(str::to_string),
            ..facts()
        };
        let unknown = |got: &str| {
            Err(LoginError::UnknownRequest {
                got: got.to_string(),
            })
        };
        for (facts, relay, allowed, want) in [
            (named(None, None), false, true, Ok(())),
            (named(None, None), true, true, Ok(())),
            (
                named(None, None),
                true,
                false,
                Err(LoginError::Unsolicited { relay_state: true }),
            ),
            (
                named(None, None),
                false,
                false,
                Err(LoginError::Unsolicited { relay_state: false }),
            ),
            (named(Some("_gone"), None), true, true, unknown("_gone")),
            (named(None, Some("_gone")), true, true, unknown("_gone")),
            (named(None, Some("_gone")), false, false, unknown("_gone")),
            (named(Some("_r"), Some("_s")), true, true, unknown("_r")),
        ] {
            assert_eq!(
                check_unsolicited(&facts, relay, allowed),
                want,
                "{facts:?} {relay} {allowed}"
            );
        }
    }

    #[test]
    fn subject_confirmation_alone_may_name_the_request() {
        let t0 = Utc::now();
        let mut f = facts();
        f.in_response_to = None;
        assert!(check_envelope(&f, &want(t0)).is_ok());
        assert!(check_assertion(&assertion(&A::default(), t0), &f, &want(t0)).is_ok());
        // … but it must be there then, and be the pending one.
        let none = A {
            irt: "",
            ..A::default()
        };
        assert_eq!(
            check_assertion(&assertion(&none, t0), &f, &want(t0)).unwrap_err(),
            LoginError::InResponseTo(InResponseToError::Missing)
        );
        let other = A {
            irt: "_other",
            ..A::default()
        };
        assert_eq!(
            check_assertion(&assertion(&other, t0), &f, &want(t0)).unwrap_err(),
            LoginError::InResponseTo(InResponseToError::NotThisRequest {
                at: RequestRef::SubjectConfirmationData,
                got: "_other".into()
            })
        );
        // With the Response naming the pending request, a different one below it is a
        // mismatch between the two.
        assert_eq!(
            check_assertion(&assertion(&other, t0), &facts(), &want(t0)).unwrap_err(),
            LoginError::InResponseTo(InResponseToError::ResponseVsSubjectConfirmation {
                response: "_req1".into(),
                subject: "_other".into()
            })
        );
    }

    fn map() -> AttributeMap<'static> {
        AttributeMap {
            user: "",
            email: "mail",
            display_name: "displayName",
            groups: "groups",
            preferred_username: "uid",
        }
    }

    #[test]
    fn identity_by_name_or_friendly_name() {
        let ok = check(&A::default(), 0).unwrap();
        let id = identity(&ok, &map()).unwrap();
        assert_eq!(id.user, "alice");
        assert_eq!(
            id.email.as_deref(),
            Some("alice@example.com"),
            "found by FriendlyName"
        );
        assert_eq!(id.groups, vec!["analysts", "admins"]);
        let by_attr = AttributeMap {
            user: "mail",
            ..map()
        };
        assert_eq!(identity(&ok, &by_attr).unwrap().user, "alice@example.com");
        let missing = AttributeMap {
            user: "employeeNumber",
            ..map()
        };
        assert_eq!(
            identity(&ok, &missing).unwrap_err().kind(),
            "missing_user_attribute"
        );
    }

    #[test]
    fn control_characters_never_reach_identity() {
        let attrs = r#"<saml:Attribute Name="groups"><saml:AttributeValue>ok</saml:AttributeValue><saml:AttributeValue>bad&#13;&#10;X-Evil: 1</saml:AttributeValue></saml:Attribute><saml:Attribute Name="mail"><saml:AttributeValue>a&#10;b</saml:AttributeValue></saml:Attribute>"#;
        let ok = check(
            &A {
                attrs,
                ..A::default()
            },
            0,
        )
        .unwrap();
        let id = identity(&ok, &map()).unwrap();
        assert_eq!(id.groups, vec!["ok"]);
        assert_eq!(id.email, None);
    }

    const MFA: &str = "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract";

    fn check_with(
        a: &A,
        now_offset: i64,
        tweak: impl FnOnce(&mut Expectations<'static>),
    ) -> Result<AcceptedAssertion, LoginError> {
        let t0 = Utc::now();
        let mut w = want(t0 + Duration::seconds(now_offset));
        tweak(&mut w);
        check_assertion(&assertion(a, t0), &facts(), &w)
    }

    #[test]
    fn required_authn_context_must_match_exactly() {
        let require = |w: &mut Expectations<'static>| w.required_authn_context = Some(MFA);
        // Not required: any class (or none) passes.
        assert!(check(&A::default(), 0).is_ok());
        assert!(check(
            &A {
                class: "",
                ..A::default()
            },
            0
        )
        .is_ok());
        // Required: the same class passes (surrounding whitespace tolerated) …
        assert!(check_with(
            &A {
                class: MFA,
                ..A::default()
            },
            0,
            require
        )
        .is_ok());
        assert!(check_with(
            &A {
                class: "\n  urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract ",
                ..A::default()
            },
            0,
            require
        )
        .is_ok());
        // … a weaker one, a missing one, or a prefix of it does not.
        let err = check_with(&A::default(), 0, require).unwrap_err();
        assert_eq!(err.kind(), "authn_context");
        assert!(err.reason().contains("Password"), "{}", err.reason());
        assert!(err.user_message().1.contains("stronger sign-in"));
        assert_eq!(err.status(), http::StatusCode::FORBIDDEN);
        for class in ["", "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwo"] {
            assert_eq!(
                check_with(
                    &A {
                        class,
                        ..A::default()
                    },
                    0,
                    require
                )
                .unwrap_err()
                .kind(),
                "authn_context",
                "{class:?}"
            );
        }
    }

    #[test]
    fn unsolicited_assertions_must_be_fresh_and_answer_nothing() {
        let unsolicited = |w: &mut Expectations<'static>| w.request_id = None;
        let a = A {
            irt: "",
            ..A::default()
        };
        assert!(check_with(&a, 0, unsolicited).is_ok());
        // IssueInstant 90 s + skew (90 s) old is the limit.
        assert!(check_with(&a, 170, unsolicited).is_ok());
        let old = check_with(&A { noa_secs: 900, ..a }, 200, unsolicited).unwrap_err();
        assert_eq!(old.kind(), "expired", "{}", old.reason());
        assert!(old.reason().contains("IssueInstant"));
        // Issued in the future beyond the skew.
        assert_eq!(
            check_with(&A { nb_secs: -300, ..a }, -120, unsolicited)
                .unwrap_err()
                .kind(),
            "not_yet_valid"
        );
        // An InResponseTo in an unsolicited assertion answers a request we do not hold.
        assert_eq!(
            check_with(&A::default(), 0, unsolicited).unwrap_err(),
            LoginError::UnknownRequest {
                got: "_req1".into()
            }
        );
        // Recipient and audience are still required.
        assert_eq!(
            check_with(
                &A {
                    recipient: "https://evil/acs",
                    ..a
                },
                0,
                unsolicited
            )
            .unwrap_err()
            .kind(),
            "recipient"
        );
        assert_eq!(
            check_with(
                &A {
                    audience: None,
                    ..a
                },
                0,
                unsolicited
            )
            .unwrap_err()
            .kind(),
            "audience"
        );
        // A solicited assertion without InResponseTo is still refused.
        assert_eq!(
            check(&a, 0).unwrap_err(),
            LoginError::InResponseTo(InResponseToError::MissingInSubjectConfirmation)
        );
        // The envelope: no InResponseTo expected, none allowed.
        let mut w = want(Utc::now());
        w.request_id = None;
        let mut f = facts();
        assert_eq!(
            check_envelope(&f, &w).unwrap_err(),
            LoginError::UnknownRequest {
                got: "_req1".into()
            }
        );
        f.in_response_to = None;
        assert!(check_envelope(&f, &w).is_ok());
    }
}
