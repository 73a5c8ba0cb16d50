//! SCIM 2.0 service provider (RFC 7643 / 7644): the IdP provisions Users and Groups into
//! samlgate, and what it says decides who may sign in and which groups they carry.
//!
//! - [`settings`]: `[scim]` (off unless enabled; bearer tokens from files).
//! - [`handler`]: the HTTP side under `scim.path` on the main listener: bearer auth
//!   (constant-time), its own rate limit, a body cap, routing, SCIM error bodies.
//! - [`filter`], [`patch`], [`resources`], [`discovery`]: the protocol, pure and table-tested.
//! - [`store`]: the in-memory [`store::Directory`] written through to a durable backend (an
//!   embedded redb file by default; with `[state] backend = "redis"`, the shared Redis,
//!   [`redis_store`], which every replica follows).
//!
//! The gateway asks [`Scim::admission`] at sign-in and on each authenticated request, and
//! [`Scim::effective_groups`] for the groups to put in headers and access rules
//! (`scim.groups_source`). Disabling or deleting a user ends their sessions through
//! [`crate::deprovision::Deprovisioner`].

pub mod discovery;
pub mod filter;
pub mod handler;
pub mod patch;
pub mod redis_store;
pub mod resources;
pub mod settings;
pub mod store;

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::deprovision::Deprovisioner;
use crate::session::{Identity, IdentityHeaderValues, Session};
use settings::{GroupsSource, ScimSettings};
use store::{Backend, Directory, RedbBackend, Standing, StoreError};

/// The SCIM service: settings, directory, limiter, and the deprovisioning path.
pub struct Scim {
    pub settings: ScimSettings,
    pub directory: Arc<Directory>,
    /// SHA-256 of each accepted token: compared in constant time, and equal lengths always.
    token_digests: Vec<[u8; 32]>,
    limiter: DefaultDirectRateLimiter,
    /// Requests without a valid token: [`FAILURES_PER_SECOND`], [`FAILURES_BURST`].
    failures: DefaultDirectRateLimiter,
    flood_log: FloodLog,
    deprovision: Arc<Deprovisioner>,
    /// `public_url` + `scim.path`, for `meta.location` and `Location`.
    base_url: String,
}

/// What SCIM says about a user signing in or using a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admit,
    /// `active` is false in SCIM.
    Disabled,
    /// Deleted through SCIM.
    Deleted,
    /// SCIM never provisioned the user and `scim.require_provisioned` is on.
    NotProvisioned,
}

impl Admission {
    /// The audit reason.
    pub fn reason(self) -> &'static str {
        match self {
            Admission::Admit => "admitted",
            Admission::Disabled => "account disabled by SCIM (active=false)",
            Admission::Deleted => "account deleted by SCIM",
            Admission::NotProvisioned => {
                "account not provisioned by SCIM (scim.require_provisioned)"
            }
        }
    }
}

/// Why [`Scim::view`] refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewRefusal {
    /// SCIM does not admit the user (their sessions end).
    Account(Admission),
    /// The groups SCIM gives cannot be rendered under `headers.encoding` (the reason).
    Headers(String),
    /// The shared store's SCIM data is not loaded on this replica yet: nobody is admitted on
    /// a guess (503).
    Unavailable(String),
}

/// Pure: the admission for a standing under `require_provisioned`.
pub fn admission_for(standing: Standing, require_provisioned: bool) -> Admission {
    match standing {
        Standing::Active => Admission::Admit,
        Standing::Disabled => Admission::Disabled,
        Standing::Deleted => Admission::Deleted,
        Standing::Unknown if require_provisioned => Admission::NotProvisioned,
        Standing::Unknown => Admission::Admit,
    }
}

/// Pure: the groups a request carries, from the assertion's and SCIM's, per `source`.
/// `None` when they are the assertion's unchanged (no new header values needed).
pub fn merge_groups(
    source: GroupsSource,
    assertion: &[String],
    scim: Vec<String>,
) -> Option<Vec<String>> {
    match source {
        GroupsSource::Assertion => None,
        GroupsSource::Scim if scim.as_slice() == assertion => None,
        GroupsSource::Scim => Some(scim),
        GroupsSource::Both => {
            let extra: Vec<String> = scim
                .into_iter()
                .filter(|g| !assertion.contains(g))
                .collect();
            if extra.is_empty() {
                return None;
            }
            let mut all = assertion.to_vec();
            all.extend(extra);
            Some(all)
        }
    }
}

/// The page a signed-in user SCIM no longer admits sees (headline, sentence).
pub const DISABLED_PAGE: (&str, &str) = (
    "Your account is disabled",
    "Your organisation has turned off your access to this application. If you think this is a mistake, contact your administrator.",
);

/// Builds the SCIM service when `[scim]` is enabled (refusing to start if its store cannot
/// be opened: provisioned data must not silently vanish). With the shared state backend
/// (`shared`, Redis) the data lives there, and `scim.state_dir` is not used.
pub fn open_for(
    scim: Option<&settings::ScimSettings>,
    public_url: &str,
    deprovision: &Arc<Deprovisioner>,
    shared: Option<&Arc<crate::state::redis::Shared>>,
) -> Result<Option<Arc<Scim>>, String> {
    let Some(s) = scim else {
        return Ok(None);
    };
    let scim = match shared {
        Some(shared) => {
            let backend = Arc::new(redis_store::RedisBackend::new(shared.clone()));
            let scim = Scim::with_backend(s.clone(), public_url, deprovision.clone(), backend);
            // The embedded store's file from before the switch, copied once into an empty
            // Redis; it is never written again.
            if let (Ok(scim), true) = (&scim, s.db_file.exists()) {
                let file = s.db_file.clone();
                scim.directory.offer_import(Box::new(move || {
                    file.exists()
                        .then(|| RedbBackend::read_file(&file))
                        .transpose()
                }));
            }
            scim
        }
        None => Scim::open(s.clone(), public_url, deprovision.clone()),
    };
    scim.map(|s| Some(Arc::new(s)))
        .map_err(|e| format!("scim.state_dir: {e}"))
}

/// The reason a sign-in or request is refused while the shared SCIM data is not loaded.
const NOT_LOADED: &str = "SCIM data not loaded from the shared state backend yet";

impl Scim {
    /// At sign-in: refuses a user SCIM does not admit.
    pub fn check_sign_in(&self, user: &str) -> Result<(), crate::saml::error::LoginError> {
        self.directory.start_sync();
        if !self.directory.is_loaded() {
            return Err(crate::saml::error::LoginError::StateUnavailable(
                NOT_LOADED.into(),
            ));
        }
        match self.admission(user) {
            Admission::Admit => Ok(()),
            refused => Err(crate::saml::error::LoginError::AccountDisabled {
                user: user.to_string(),
                why: refused.reason(),
            }),
        }
    }

    /// On each authenticated request: the session as SCIM sees it now (its groups per
    /// `scim.groups_source`, header values re-rendered by `render` when they changed), or the
    /// refusal.
    pub fn view<E: std::fmt::Display>(
        &self,
        session: &Arc<Session>,
        render: impl FnOnce(&Identity) -> Result<IdentityHeaderValues, E>,
    ) -> Result<Arc<Session>, ViewRefusal> {
        self.directory.start_sync();
        if !self.directory.is_loaded() {
            return Err(ViewRefusal::Unavailable(NOT_LOADED.into()));
        }
        match self.admission(&session.identity.user) {
            Admission::Admit => {}
            refused => return Err(ViewRefusal::Account(refused)),
        }
        let Some(groups) = self.effective_groups(&session.identity.user, &session.identity.groups)
        else {
            return Ok(session.clone());
        };
        let mut changed = (**session).clone();
        changed.identity.groups = groups;
        // Roles follow groups, so everything is rendered again; a value the encoding refuses
        // refuses the request (as it would have refused the sign-in).
        changed.headers =
            render(&changed.identity).map_err(|e| ViewRefusal::Headers(e.to_string()))?;
        Ok(Arc::new(changed))
    }

    /// Opens the embedded store named by the settings and loads it.
    pub fn open(
        settings: ScimSettings,
        public_url: &str,
        deprovision: Arc<Deprovisioner>,
    ) -> Result<Scim, StoreError> {
        let backend: Arc<dyn Backend> = Arc::new(RedbBackend::open(&settings.db_file)?);
        Self::with_backend(settings, public_url, deprovision, backend)
    }

    pub fn with_backend(
        settings: ScimSettings,
        public_url: &str,
        deprovision: Arc<Deprovisioner>,
        backend: Arc<dyn Backend>,
    ) -> Result<Scim, StoreError> {
        let directory = Arc::new(Directory::load(backend)?);
        let one = NonZeroU32::MIN;
        let quota =
            Quota::per_second(NonZeroU32::new(settings.rate_limit_per_second).unwrap_or(one))
                .allow_burst(NonZeroU32::new(settings.rate_limit_burst).unwrap_or(one));
        let token_digests = settings
            .tokens
            .iter()
            .map(|t| digest(t.as_bytes()))
            .collect();
        if directory.is_loaded() {
            tracing::info!(path = %settings.path, resources = directory.count(), store = %settings.db_file.display(), "SCIM endpoint enabled");
        } else {
            tracing::info!(path = %settings.path, store = "shared state backend", "SCIM endpoint enabled");
        }
        Ok(Scim {
            base_url: format!("{}{}", public_url.trim_end_matches('/'), settings.path),
            token_digests,
            limiter: RateLimiter::direct(quota),
            failures: RateLimiter::direct(
                Quota::per_second(NonZeroU32::new(FAILURES_PER_SECOND).unwrap_or(one))
                    .allow_burst(NonZeroU32::new(FAILURES_BURST).unwrap_or(one)),
            ),
            flood_log: FloodLog::default(),
            directory,
            deprovision,
            settings,
        })
    }

    /// Whether the SCIM data is here to judge users (`/readyz`): always with the embedded
    /// store; with the shared one once it was read (starting that, on the first call).
    pub fn ready(&self) -> bool {
        self.directory.start_sync();
        self.directory.is_loaded()
    }

    /// Whether `user` ([`crate::session::Identity::user`]) may sign in / go on.
    pub fn admission(&self, user: &str) -> Admission {
        admission_for(
            self.directory.standing(user),
            self.settings.require_provisioned,
        )
    }

    /// The groups for headers and access rules, or `None` to keep the assertion's.
    pub fn effective_groups(&self, user: &str, assertion: &[String]) -> Option<Vec<String>> {
        if self.settings.groups_source == GroupsSource::Assertion {
            return None;
        }
        merge_groups(
            self.settings.groups_source,
            assertion,
            self.directory.groups_of(user),
        )
    }

    pub fn deprovisioner(&self) -> &Arc<Deprovisioner> {
        &self.deprovision
    }
}

/// Sustained rate and burst of SCIM requests without a valid token (all clients together).
pub const FAILURES_PER_SECOND: u32 = 5;
pub const FAILURES_BURST: u32 = 20;

/// Lets one 429 line a second through; counts the others.
#[derive(Default)]
struct FloodLog {
    second: std::sync::atomic::AtomicU64,
    suppressed: std::sync::atomic::AtomicU64,
}

impl FloodLog {
    /// `Some(suppressed since the last line)` when this one may be logged.
    fn admit(&self) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.second.swap(now, Relaxed) == now {
            self.suppressed.fetch_add(1, Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Relaxed))
    }
}

fn digest(b: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Whether `presented` equals one of `accepted` (digests), in time independent of where they
/// differ and of which token matched.
pub fn token_matches(accepted: &[[u8; 32]], presented: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let p = digest(presented);
    let mut found = subtle::Choice::from(0);
    for a in accepted {
        found |= a.ct_eq(&p);
    }
    found.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_table() {
        use Standing::*;
        let table = [
            (Active, false, Admission::Admit),
            (Active, true, Admission::Admit),
            (Disabled, false, Admission::Disabled),
            (Deleted, false, Admission::Deleted),
            (Unknown, false, Admission::Admit),
            (Unknown, true, Admission::NotProvisioned),
        ];
        for (standing, require, want) in table {
            assert_eq!(
                admission_for(standing, require),
                want,
                "{standing:?} {require}"
            );
        }
    }

    #[test]
    fn groups_source_table() {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let a = v(&["staff", "ops"]);
        assert_eq!(merge_groups(GroupsSource::Assertion, &a, v(&["x"])), None);
        assert_eq!(
            merge_groups(GroupsSource::Scim, &a, v(&["x"])),
            Some(v(&["x"]))
        );
        // Unknown to SCIM (no groups there): none at all, not the assertion's.
        assert_eq!(merge_groups(GroupsSource::Scim, &a, v(&[])), Some(v(&[])));
        assert_eq!(merge_groups(GroupsSource::Scim, &a, a.clone()), None);
        assert_eq!(
            merge_groups(GroupsSource::Both, &a, v(&["ops", "x"])),
            Some(v(&["staff", "ops", "x"]))
        );
        assert_eq!(merge_groups(GroupsSource::Both, &a, v(&["ops"])), None);
        // Entra ID group overage: the assertion carries none, SCIM has them all.
        assert_eq!(
            merge_groups(GroupsSource::Both, &[], v(&["g1"])),
            Some(v(&["g1"]))
        );
    }

    #[test]
    fn tokens_compare_whole() {
        let accepted = [
            digest(b"first-token-0123456789abcdef0123"),
            digest(b"second-token-0123456789abcdef012"),
        ];
        assert!(token_matches(
            &accepted,
            b"first-token-0123456789abcdef0123"
        ));
        assert!(token_matches(
            &accepted,
            b"second-token-0123456789abcdef012"
        ));
        for wrong in [
            &b""[..],
            b"first-token",
            b"first-token-0123456789abcdef01234",
            b"FIRST-token-0123456789abcdef0123",
        ] {
            assert!(!token_matches(&accepted, wrong));
        }
    }
}
