//! Password sign-in, for when SAML is not the answer: an IdP outage, API clients and cron
//! jobs that cannot follow a browser redirect, the break-glass admin. Off unless
//! `[password_signin]` enables it. The sources (`ldap`, `local`) are tried in the configured
//! order and the first that accepts the name and password wins; the result is the same
//! [`Identity`] a SAML sign-in gives, so headers, groups and access rules apply unchanged.
//!
//! [`PasswordSignin::sign_in`] is the one entry point (the form and HTTP Basic both call it):
//! input checks → credential cache → rate limits and lockout → each source in order →
//! [`conclude`] (pure) → cache or count the failure. Every source does the same work for an
//! unknown name as for a wrong password (a dummy argon2 hash, a bind to a DN that does not
//! exist), and the client gets one answer for both; only the audit log tells them apart.
//!
//! | file | owns |
//! |---|---|
//! | `settings` | `[password_signin]`, validation, `Method` |
//! | `escape` | RFC 4515 filter and RFC 4514 DN escaping, template filling |
//! | `ldap` | the LDAP source (pool, TLS, search-then-bind or direct bind, groups) |
//! | `local` | the users file (argon2id), `samlgate passwd`'s file rewrite |
//! | `cache` | verified credentials by keyed hash, bounded, short-lived |
//! | `limits` | per-client and per-user GCRA budgets (governor), the lockout |
//! | `basic` | reading `Authorization: Basic` |
//! | `web` | the sign-in form page, its POST body, the answers to Basic clients |

pub mod basic;
pub mod cache;
pub mod escape;
pub mod ldap;
pub mod limits;
pub mod local;
pub mod settings;
pub mod web;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use settings::{Method, PasswordSettings, PasswordSigninSection};

use crate::authz::{authorize_lists, Denial, Lists};
use crate::session::Identity;
use cache::CredentialCache;
use ldap::{LdapAnswer, LdapSource};
use limits::{Brake, Limits};
use local::{LocalUsers, MAX_USER_LEN};

/// Longest password accepted (argon2 and LDAP take more; nobody types more).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// A successful password sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub method: Method,
    pub identity: Identity,
}

/// A sign-in that passed: who, and whether it came from the credential cache (no source
/// was asked; the audit log records only fresh verifications of HTTP Basic credentials).
#[derive(Debug, Clone)]
pub struct SignIn {
    pub verified: Arc<Verified>,
    pub cached: bool,
}

impl std::ops::Deref for SignIn {
    type Target = Verified;
    fn deref(&self) -> &Verified {
        &self.verified
    }
}

/// What one source said.
#[derive(Debug)]
pub enum SourceResult {
    Accepted(Identity),
    /// Refused: `unknown_user`, `wrong_password` or `ambiguous_user` (for the log only).
    Refused(&'static str),
    /// Accepted, but the method is restricted to other users or groups.
    NotAllowed(Denial),
    /// No answer (the directory is down, timed out, refused the service account).
    Unavailable(String),
}

/// Why a sign-in failed. `reason()` is for the audit log, `user_message()` for the client,
/// which never learns whether the name exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigninError {
    /// Wrong name or password (or an empty one, or a method not allowed for the user).
    InvalidCredentials { reason: String },
    /// Rate limit or lockout.
    Braked(Brake),
    /// No source accepted and at least one could not answer.
    Unavailable { reason: String },
}

impl SigninError {
    pub fn reason(&self) -> String {
        match self {
            SigninError::InvalidCredentials { reason } => format!("invalid_credentials: {reason}"),
            SigninError::Braked(b) => b.reason().to_string(),
            SigninError::Unavailable { reason } => format!("source_unavailable: {reason}"),
        }
    }

    /// The audit log's short kind.
    pub fn kind(&self) -> &'static str {
        match self {
            SigninError::InvalidCredentials { .. } => "invalid_credentials",
            SigninError::Braked(b) => b.reason(),
            SigninError::Unavailable { .. } => "source_unavailable",
        }
    }

    pub fn user_message(&self) -> &'static str {
        match self {
            SigninError::InvalidCredentials { .. } => "The user name or password is not correct.",
            SigninError::Braked(_) => "Too many sign-in attempts. Wait a while, then try again.",
            SigninError::Unavailable { .. } => {
                "The sign-in directory cannot be reached right now. Try again later."
            }
        }
    }

    pub fn status(&self) -> http::StatusCode {
        match self {
            SigninError::InvalidCredentials { .. } => http::StatusCode::UNAUTHORIZED,
            SigninError::Braked(_) => http::StatusCode::TOO_MANY_REQUESTS,
            SigninError::Unavailable { .. } => http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The final answer from what each source said, in order: the first acceptance wins;
/// otherwise "unavailable" when a source could not answer, else invalid credentials. The
/// reason lists every source's word (`ldap=unknown_user local=wrong_password`).
pub fn conclude(results: &[(Method, SourceResult)]) -> Result<(Method, Identity), SigninError> {
    let mut words = Vec::new();
    let mut unavailable = false;
    for (method, result) in results {
        let word = match result {
            SourceResult::Accepted(identity) => return Ok((*method, identity.clone())),
            SourceResult::Refused(why) => (*why).to_string(),
            SourceResult::NotAllowed(denial) => format!("not_allowed ({})", denial.reason()),
            SourceResult::Unavailable(why) => {
                unavailable = true;
                format!("unavailable ({why})")
            }
        };
        words.push(format!("{}={word}", method.as_str()));
    }
    let reason = if words.is_empty() {
        "no source".to_string()
    } else {
        words.join(" ")
    };
    Err(if unavailable {
        SigninError::Unavailable { reason }
    } else {
        SigninError::InvalidCredentials { reason }
    })
}

/// Input checks before any source is asked; `Err` is the log reason.
pub fn check_input(user: &str, password: &str) -> Result<(), &'static str> {
    if user.is_empty() || user.len() > MAX_USER_LEN || user.chars().any(char::is_control) {
        return Err("unusable user name");
    }
    if password.is_empty() {
        // An LDAP bind with an empty password is an "unauthenticated bind" that succeeds.
        return Err("empty password");
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err("password too long");
    }
    Ok(())
}

/// How much verification work has been done (for the no-enumeration tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Work {
    pub ldap_binds: u64,
    pub argon2_verifications: u64,
}

/// The password sign-in service, built from settings once per policy (a reload builds a new
/// one: cache and counters start over).
pub struct PasswordSignin {
    section: PasswordSigninSection,
    ldap: Option<LdapSource>,
    local: Option<Arc<LocalUsers>>,
    cache: CredentialCache,
    limits: Limits,
    argon2_verifications: AtomicU64,
}

impl std::fmt::Debug for PasswordSignin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordSignin")
            .field("methods", &self.section.methods)
            .finish_non_exhaustive()
    }
}

impl PasswordSignin {
    pub fn new(settings: &PasswordSettings) -> Result<PasswordSignin, String> {
        let ldap = settings.ldap.clone().map(LdapSource::new).transpose()?;
        let s = &settings.section;
        Ok(PasswordSignin {
            section: s.clone(),
            ldap,
            local: settings.local.clone().map(Arc::new),
            cache: CredentialCache::new(Duration::from_secs(s.cache_ttl_secs), s.cache_max_entries),
            limits: Limits::new(s),
            argon2_verifications: AtomicU64::new(0),
        })
    }

    pub fn section(&self) -> &PasswordSigninSection {
        &self.section
    }

    pub fn work(&self) -> Work {
        Work {
            ldap_binds: self.ldap.as_ref().map_or(0, LdapSource::password_binds),
            argon2_verifications: self.argon2_verifications.load(Ordering::Relaxed),
        }
    }

    pub fn cached_credentials(&self) -> u64 {
        self.cache.len()
    }

    /// Periodic cleanup of the limit tables.
    pub fn housekeeping(&self) {
        self.limits.retain_recent();
    }

    /// Checks `user` and `password` from `client`. See the module doc for the order.
    pub async fn sign_in(
        &self,
        client: IpAddr,
        user: &str,
        password: &str,
    ) -> Result<SignIn, SigninError> {
        check_input(user, password).map_err(|why| SigninError::InvalidCredentials {
            reason: why.to_string(),
        })?;
        let key = self.cache.key_of(user, password);
        if let Some(verified) = self.cache.get(&key) {
            return Ok(SignIn {
                verified,
                cached: true,
            });
        }
        self.limits
            .admit(client, user, Instant::now())
            .map_err(SigninError::Braked)?;
        let mut results = Vec::with_capacity(self.section.methods.len());
        for &method in &self.section.methods {
            let result = self.ask(method, user, password).await;
            let accepted = matches!(result, SourceResult::Accepted(_));
            results.push((method, result));
            if accepted {
                break;
            }
        }
        match conclude(&results) {
            Ok((method, identity)) => {
                let verified = Arc::new(Verified { method, identity });
                self.cache.insert(key, verified.clone());
                Ok(SignIn {
                    verified,
                    cached: false,
                })
            }
            Err(e) => {
                if matches!(e, SigninError::InvalidCredentials { .. }) {
                    self.limits.failed(user, Instant::now());
                }
                Err(e)
            }
        }
    }

    /// One source's answer, with the method's user and group restriction applied.
    async fn ask(&self, method: Method, user: &str, password: &str) -> SourceResult {
        let (result, users, groups) = match method {
            Method::Ldap => (
                self.ask_ldap(user, password).await,
                &self.section.ldap.allowed_users,
                &self.section.ldap.allowed_groups,
            ),
            Method::Local => (
                self.ask_local(user, password).await,
                &self.section.local.allowed_users,
                &self.section.local.allowed_groups,
            ),
        };
        match result {
            SourceResult::Accepted(identity) => match authorize_lists(
                &identity,
                None,
                &Lists {
                    groups,
                    users,
                    roles: &[],
                },
            ) {
                Ok(()) => SourceResult::Accepted(identity),
                Err(denial) => SourceResult::NotAllowed(denial),
            },
            other => other,
        }
    }

    async fn ask_ldap(&self, user: &str, password: &str) -> SourceResult {
        let Some(ldap) = &self.ldap else {
            return SourceResult::Unavailable("ldap not configured".into());
        };
        match ldap.verify(user, password).await {
            Ok(LdapAnswer::Accepted(identity)) => SourceResult::Accepted(*identity),
            Ok(LdapAnswer::UnknownUser) => SourceResult::Refused("unknown_user"),
            Ok(LdapAnswer::Ambiguous) => SourceResult::Refused("ambiguous_user"),
            Ok(LdapAnswer::WrongPassword) => SourceResult::Refused("wrong_password"),
            Err(e) => SourceResult::Unavailable(e.to_string()),
        }
    }

    async fn ask_local(&self, user: &str, password: &str) -> SourceResult {
        let Some(local) = self.local.clone() else {
            return SourceResult::Unavailable("local users not configured".into());
        };
        self.argon2_verifications.fetch_add(1, Ordering::Relaxed);
        let (user, password) = (user.to_string(), password.to_string());
        // argon2 costs tens of milliseconds of CPU: off the async workers.
        let answer = tokio::task::spawn_blocking(move || {
            let known = local.find(&user).is_some();
            let matched = local.verify(&user, &password).map(|u| Identity {
                user: u.name.clone(),
                name_id: u.name.clone(),
                preferred_username: Some(u.name.clone()),
                groups: u.groups.clone(),
                ..Identity::default()
            });
            (known, matched)
        })
        .await;
        match answer {
            Ok((_, Some(identity))) => SourceResult::Accepted(identity),
            Ok((true, None)) => SourceResult::Refused("wrong_password"),
            Ok((false, None)) => SourceResult::Refused("unknown_user"),
            Err(e) => SourceResult::Unavailable(format!("local check failed: {e}")),
        }
    }

    /// How long a locked-out client is told to wait.
    pub fn lockout(&self) -> Duration {
        self.limits.policy().lockout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(user: &str) -> Identity {
        Identity {
            user: user.into(),
            ..Identity::default()
        }
    }

    #[test]
    fn the_first_acceptance_wins_and_failures_are_told_apart() {
        use Method::{Ldap, Local};
        use SourceResult::*;
        type Case = (
            Vec<(Method, SourceResult)>,
            Result<(Method, &'static str), &'static str>,
        );
        let cases: Vec<Case> = vec![
            (vec![(Ldap, Accepted(id("a")))], Ok((Ldap, "a"))),
            (
                vec![(Ldap, Refused("unknown_user")), (Local, Accepted(id("b")))],
                Ok((Local, "b")),
            ),
            (
                vec![
                    (Ldap, Unavailable("down".into())),
                    (Local, Accepted(id("c"))),
                ],
                Ok((Local, "c")),
            ),
            (
                vec![
                    (Ldap, Refused("wrong_password")),
                    (Local, Refused("unknown_user")),
                ],
                Err("invalid_credentials: ldap=wrong_password local=unknown_user"),
            ),
            (
                vec![
                    (Ldap, Unavailable("down".into())),
                    (Local, Refused("unknown_user")),
                ],
                Err("source_unavailable: ldap=unavailable (down) local=unknown_user"),
            ),
            (
                vec![(Local, NotAllowed(Denial::NotAllowedUser))],
                Err("invalid_credentials: local=not_allowed (user is not in allowed_users)"),
            ),
            (vec![], Err("invalid_credentials: no source")),
        ];
        for (results, want) in cases {
            let got = conclude(&results);
            match (got, want) {
                (Ok((m, identity)), Ok((wm, wu))) => {
                    assert_eq!((m, identity.user.as_str()), (wm, wu));
                }
                (Err(e), Err(reason)) => assert_eq!(e.reason(), reason),
                (got, want) => panic!("{results:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn input_is_checked_before_any_source() {
        for (user, password, want) in [
            ("alice", "pw", Ok(())),
            ("alice", "", Err("empty password")),
            ("", "pw", Err("unusable user name")),
            ("al\u{0}ice", "pw", Err("unusable user name")),
            (
                &"u".repeat(MAX_USER_LEN + 1),
                "pw",
                Err("unusable user name"),
            ),
            (
                "alice",
                &"p".repeat(MAX_PASSWORD_LEN + 1),
                Err("password too long"),
            ),
        ] {
            assert_eq!(check_input(user, password), want, "{user:?}");
        }
    }

    #[test]
    fn every_failure_has_one_answer_for_the_client() {
        let wrong = SigninError::InvalidCredentials {
            reason: "ldap=wrong_password".into(),
        };
        let unknown = SigninError::InvalidCredentials {
            reason: "ldap=unknown_user".into(),
        };
        assert_eq!(wrong.user_message(), unknown.user_message());
        assert_eq!(wrong.status(), unknown.status());
        assert_eq!(wrong.kind(), unknown.kind());
    }
}
