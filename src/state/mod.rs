//! Where the gateway's per-sign-in state lives: sessions, pending sign-ins, the replay caches
//! and our own LogoutRequest ids. `[state] backend = "memory"` (the default) keeps them in this
//! process (moka, as before); `"redis"` keeps them in Redis or Valkey, shared by every
//! replica, with a local moka cache in front of the sessions ([`redis`]). Redis is one
//! endpoint, a master found through Sentinel, or a Cluster ([`topology`], [`connection`]).
//!
//! The gateway talks to two traits: [`crate::session::SessionStore`] for sessions and
//! [`FlowStore`] for everything a sign-in or sign-out passes through once. Both backends give
//! the same guarantees: a pending sign-in is claimed at most once, a message id is first used
//! at most once, and with Redis neither guarantee survives a lost backend as a "yes" — an
//! unreachable Redis is a [`StateError`], which the gateway turns into a 503, never into a
//! skipped check.

pub mod connection;
pub mod memory;
pub mod redis;
mod redis_sessions;
pub mod seal;
pub mod topology;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::Deserialize;

use crate::session::pending::{ClaimError, PendingLogin};
use crate::session::SessionStore;
pub use topology::{is_placeholder_secret, RedisMode, SentinelSettings, Topology};

/// `[state]` as written by the operator.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StateSection {
    /// Where sessions, pending sign-ins and replay caches live: `"memory"` (default; this
    /// process only, lost on restart) or `"redis"` (shared by every replica).
    pub backend: BackendKind,
    /// How Redis is deployed: `"single"` (default; one endpoint, `redis_url`), `"sentinel"`
    /// (the master that `redis_sentinels` name for `redis_sentinel_master`, found again after
    /// a failover) or `"cluster"` (a Redis Cluster reached through `redis_cluster_nodes`; all
    /// samlgate keys share one hash slot). A key of another mode is refused.
    pub redis_mode: RedisMode,
    /// With `redis_mode = "single"`: `redis://host:port/db` or `rediss://host:port/db` (TLS,
    /// certificate and host name verified). Required then; no default. A password in the URL
    /// is refused: use `redis_password_file`.
    pub redis_url: Option<String>,
    /// With `redis_mode = "sentinel"`: the Sentinels, as `redis://host:port` URLs
    /// (`rediss://` for TLS to the Sentinels and to the master alike; one scheme for all;
    /// no user, password or path). Required then, 1 to 32 entries; no default.
    pub redis_sentinels: Option<Vec<String>>,
    /// With `redis_mode = "sentinel"`: the name the Sentinels monitor the master under
    /// (`sentinel monitor <name> …`). Required then; no default.
    pub redis_sentinel_master: Option<String>,
    /// With `redis_mode = "sentinel"`: ACL user for the Sentinels themselves, when they
    /// require one (`redis_username` is the master's). Default: none.
    pub redis_sentinel_username: Option<String>,
    /// With `redis_mode = "sentinel"`: file holding the Sentinels' password (trailing newline
    /// ignored). Default: none.
    pub redis_sentinel_password_file: Option<PathBuf>,
    /// With `redis_mode = "sentinel"`: database number on the master. Default 0. (Single
    /// mode takes it from `redis_url`'s path; a Cluster has only database 0, so the key is
    /// refused there.)
    pub redis_database: Option<u16>,
    /// With `redis_mode = "cluster"`: seed nodes as `redis://host:port` URLs (`rediss://`
    /// for TLS; one scheme for all; no user, password or database). Any one reachable node is
    /// enough to learn the cluster. Required then, 1 to 32 entries; no default.
    pub redis_cluster_nodes: Option<Vec<String>>,
    /// ACL user name (Redis ≥ 6 `AUTH user password`) on the data nodes, in every mode.
    /// Default: none (the `default` user).
    pub redis_username: Option<String>,
    /// File holding the Redis password for the data nodes, in every mode (trailing newline
    /// ignored; an obvious placeholder such as `REPLACE-ME` is refused). Default: none.
    pub redis_password_file: Option<PathBuf>,
    /// PEM file of the CA that signed the Redis servers' certificates (and the Sentinels'),
    /// for `rediss://` with a private CA. Default: none (the system's trusted roots).
    pub redis_ca_file: Option<PathBuf>,
    /// Prefix of every key and of the invalidation channel, so several gateways (or other
    /// programs) can share one database. With `redis_mode = "cluster"` it is also the hash
    /// tag (`{samlgate:}s:…`), so it must not contain `{` or `}`. Default `"samlgate:"`.
    pub key_prefix: String,
    /// How long sessions already cached on a replica keep working while Redis is
    /// unreachable, in seconds; then those requests get a 503 too. Default 30.
    pub grace_secs: u64,
    /// Longest wait for one Redis command before it counts as a failure, in milliseconds.
    /// Default 1000.
    pub command_timeout_ms: u64,
}

/// `state.backend`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    #[default]
    Memory,
    Redis,
}

impl Default for StateSection {
    fn default() -> Self {
        StateSection {
            backend: BackendKind::Memory,
            redis_mode: RedisMode::Single,
            redis_url: None,
            redis_sentinels: None,
            redis_sentinel_master: None,
            redis_sentinel_username: None,
            redis_sentinel_password_file: None,
            redis_database: None,
            redis_cluster_nodes: None,
            redis_username: None,
            redis_password_file: None,
            redis_ca_file: None,
            key_prefix: "samlgate:".into(),
            grace_secs: 30,
            command_timeout_ms: 1000,
        }
    }
}

/// A `[state]` section that cannot work, naming the key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateConfigError {
    #[error("state.redis_url is required with state.backend = \"redis\"")]
    MissingUrl,
    #[error("state.redis_url: {0}")]
    BadUrl(String),
    #[error("state.{0} must not carry a password; put it in state.redis_password_file")]
    PasswordInUrl(&'static str),
    #[error("state.{key} is set but state.redis_mode is \"{mode}\"")]
    KeyNotForMode {
        key: &'static str,
        mode: &'static str,
    },
    #[error("state.{key} is required with state.redis_mode = \"{mode}\"")]
    MissingForMode {
        key: &'static str,
        mode: &'static str,
    },
    #[error("state.{0} must list at least one node")]
    EmptyList(&'static str),
    #[error("state.{0} lists more than {1} nodes")]
    TooManyNodes(&'static str, usize),
    #[error("state.{key}: `{node}`: {reason}")]
    BadNode {
        key: &'static str,
        node: String,
        reason: String,
    },
    #[error("state.{0} mixes redis:// and rediss://; use one scheme for every node")]
    MixedSchemes(&'static str),
    #[error("a Redis Cluster has only database 0: no state.redis_database and no path in state.redis_cluster_nodes")]
    DatabaseWithCluster,
    #[error("state.key_prefix must not contain `{{` or `}}` with state.redis_mode = \"cluster\" (it becomes the keys' hash tag)")]
    BraceInClusterPrefix,
    #[error(
        "state.redis_sentinel_master must be 1 to 128 printable ASCII characters without spaces"
    )]
    BadMasterName,
    #[error("state.{0} holds a placeholder, not a password (fill in the Secret or file it names)")]
    PlaceholderPassword(&'static str),
    #[error("state.{key}: cannot read {path}: {error}")]
    File {
        key: &'static str,
        path: String,
        error: String,
    },
    #[error("state.{0} is set but state.backend is \"memory\"")]
    RedisKeyWithMemory(&'static str),
    #[error("state.key_prefix must be 1 to 64 printable ASCII characters without spaces")]
    BadPrefix,
    #[error("state.{0} must be between {1} and {2}")]
    OutOfRange(&'static str, u64, u64),
}

/// Validated `[state]`.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub enum StateSettings {
    #[default]
    Memory,
    Redis(RedisSettings),
}

/// Everything needed to reach Redis, files already read.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// Which servers: one URL (no password in it), Sentinels, or Cluster nodes.
    pub topology: Topology,
    /// ACL user and password on the data nodes, in every mode.
    pub username: Option<String>,
    pub password: Option<String>,
    pub ca_pem: Option<Vec<u8>>,
    pub key_prefix: String,
    pub grace: Duration,
    pub command_timeout: Duration,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("topology", &self.topology)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .field("key_prefix", &self.key_prefix)
            .field("grace", &self.grace)
            .field("command_timeout", &self.command_timeout)
            .finish()
    }
}

impl RedisSettings {
    /// A single endpoint with the defaults of `[state]` (prefix `samlgate:`, 30 s grace,
    /// 1 s command timeout), for tests and benches that build settings by hand.
    pub fn single(url: impl Into<String>) -> RedisSettings {
        let d = StateSection::default();
        RedisSettings {
            topology: Topology::Single { url: url.into() },
            username: None,
            password: None,
            ca_pem: None,
            key_prefix: d.key_prefix,
            grace: Duration::from_secs(d.grace_secs),
            command_timeout: Duration::from_millis(d.command_timeout_ms),
        }
    }
}

impl StateSection {
    /// Checks the section and reads the files it names (relative to `base`).
    pub fn validate(self, base: &Path) -> Result<StateSettings, StateConfigError> {
        if self.backend == BackendKind::Memory {
            return self.refuse_redis_keys().map(|()| StateSettings::Memory);
        }
        let mut topology = topology::check(&topology::TopologyKeys {
            mode: self.redis_mode,
            url: self.redis_url.as_deref(),
            sentinels: self.redis_sentinels.as_deref(),
            sentinel_master: self.redis_sentinel_master.as_deref(),
            sentinel_username: self.redis_sentinel_username.as_deref(),
            sentinel_password_set: self.redis_sentinel_password_file.is_some(),
            database: self.redis_database,
            cluster_nodes: self.redis_cluster_nodes.as_deref(),
            key_prefix: &self.key_prefix,
        })?;
        let prefix_ok = (1..=64).contains(&self.key_prefix.len())
            && self.key_prefix.bytes().all(|b| b.is_ascii_graphic());
        if !prefix_ok {
            return Err(StateConfigError::BadPrefix);
        }
        if !(1..=3600).contains(&self.grace_secs) {
            return Err(StateConfigError::OutOfRange("grace_secs", 1, 3600));
        }
        if !(10..=60_000).contains(&self.command_timeout_ms) {
            return Err(StateConfigError::OutOfRange(
                "command_timeout_ms",
                10,
                60_000,
            ));
        }
        let password = read_password(
            base,
            self.redis_password_file.as_deref(),
            "redis_password_file",
        )?;
        if let Topology::Sentinel(s) = &mut topology {
            s.password = read_password(
                base,
                self.redis_sentinel_password_file.as_deref(),
                "redis_sentinel_password_file",
            )?;
        }
        let ca_pem = match &self.redis_ca_file {
            Some(p) => Some(read_small(base, p, "redis_ca_file")?),
            None => None,
        };
        Ok(StateSettings::Redis(RedisSettings {
            topology,
            username: self.redis_username,
            password,
            ca_pem,
            key_prefix: self.key_prefix,
            grace: Duration::from_secs(self.grace_secs),
            command_timeout: Duration::from_millis(self.command_timeout_ms),
        }))
    }

    /// With `backend = "memory"` no Redis key may be set: it would be a config that does not
    /// do what its author thinks.
    fn refuse_redis_keys(&self) -> Result<(), StateConfigError> {
        for (set, key) in [
            (self.redis_mode != RedisMode::Single, "redis_mode"),
            (self.redis_url.is_some(), "redis_url"),
            (self.redis_sentinels.is_some(), "redis_sentinels"),
            (
                self.redis_sentinel_master.is_some(),
                "redis_sentinel_master",
            ),
            (
                self.redis_sentinel_username.is_some(),
                "redis_sentinel_username",
            ),
            (
                self.redis_sentinel_password_file.is_some(),
                "redis_sentinel_password_file",
            ),
            (self.redis_database.is_some(), "redis_database"),
            (self.redis_cluster_nodes.is_some(), "redis_cluster_nodes"),
            (self.redis_username.is_some(), "redis_username"),
            (self.redis_password_file.is_some(), "redis_password_file"),
            (self.redis_ca_file.is_some(), "redis_ca_file"),
        ] {
            if set {
                return Err(StateConfigError::RedisKeyWithMemory(key));
            }
        }
        Ok(())
    }
}

/// Reads a password file (trailing whitespace dropped) and refuses a placeholder.
fn read_password(
    base: &Path,
    path: Option<&Path>,
    key: &'static str,
) -> Result<Option<String>, StateConfigError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let bytes = read_small(base, path, key)?;
    let text = String::from_utf8_lossy(&bytes).trim_end().to_string();
    if is_placeholder_secret(&text) {
        return Err(StateConfigError::PlaceholderPassword(key));
    }
    Ok(Some(text))
}

fn read_small(base: &Path, path: &Path, key: &'static str) -> Result<Vec<u8>, StateConfigError> {
    crate::config_files::read(base, path).map_err(|e| StateConfigError::File {
        key,
        path: crate::config_files::resolve(base, path)
            .display()
            .to_string(),
        error: e.to_string(),
    })
}

/// The shared backend could not answer: the caller refuses (503), it never guesses.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    /// Redis did not answer (connection refused or lost, timeout, server error).
    #[error("state backend unavailable: {0}")]
    Unavailable(String),
    /// Redis has been unreachable for longer than `state.grace_secs`: cached sessions stop.
    #[error("state backend unreachable for longer than the grace period")]
    GraceExpired,
}

/// Which replay cache: assertion ids and logout message ids are kept apart, so a flood of
/// one cannot push the other out (memory backend) and the key spaces never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayKind {
    Assertion,
    Logout,
}

/// What [`FlowStore::first_use`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstUse {
    /// Recorded now: go on.
    Fresh,
    /// Already recorded: a replay.
    Replay,
    /// The message was issued before the replay cache's memory began (the Redis server
    /// started after it), so whether it was already used cannot be known: refused.
    BeforeMemory,
}

/// The backend's state for `/readyz` and the grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Unreachable since this long ago.
    Down(Duration),
}

/// Single-use records of sign-in and sign-out flows.
#[async_trait]
pub trait FlowStore: Send + Sync + 'static {
    /// Remembers a started sign-in under its RelayState token until it expires.
    async fn put_pending(&self, relay_token: &str, login: &PendingLogin) -> Result<(), StateError>;
    /// Removes and returns the sign-in when `browser_ids` (login-cookie ids, HMAC-checked)
    /// contains the one that started it. Atomic: of two concurrent claims one wins.
    async fn claim_pending(
        &self,
        relay_token: &str,
        browser_ids: &[[u8; 32]],
    ) -> Result<Result<PendingLogin, ClaimError>, StateError>;
    /// Records the message id `id` for `ttl`. `issued` (IdP-initiated responses, which no
    /// pending sign-in vouches for) is checked against the start of the cache's memory.
    async fn first_use(
        &self,
        kind: ReplayKind,
        id: &str,
        ttl: Duration,
        issued: Option<SystemTime>,
    ) -> Result<FirstUse, StateError>;
    /// Remembers the id of a LogoutRequest we sent.
    async fn put_logout_request(&self, id: &str, ttl: Duration) -> Result<(), StateError>;
    /// Removes our LogoutRequest id; true when it was there (single use).
    async fn take_logout_request(&self, id: &str) -> Result<bool, StateError>;
    fn readiness(&self) -> Readiness;
    /// Pending sign-ins and replay-cache entries held, for metrics; `None` when this process
    /// cannot count them (they live in a shared backend), so no gauge reads a false 0.
    fn pending_len(&self) -> Option<u64>;
    fn replay_len(&self) -> Option<u64>;
}

/// The two halves of a backend, built from settings.
#[derive(Clone)]
pub struct State {
    pub sessions: Arc<dyn SessionStore>,
    pub flows: Arc<dyn FlowStore>,
    /// The Redis backend's counters and health (none for memory).
    pub redis: Option<Arc<redis::Shared>>,
}

/// Sizes and lifetimes the backend needs from the rest of the settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_sessions: u64,
    pub idle_timeout: Duration,
    pub login_timeout: Duration,
    pub clock_skew: Duration,
}

impl State {
    /// Builds the configured backend. Redis is connected lazily: a gateway starts while Redis
    /// is down and reports it on `/readyz` until it comes up.
    pub fn new(
        settings: &StateSettings,
        cookie_secret: &[u8],
        limits: Limits,
    ) -> Result<State, String> {
        match settings {
            StateSettings::Memory => Ok(memory::state(limits)),
            StateSettings::Redis(r) => redis::state(r, cookie_secret, limits),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis_section(url: &str) -> StateSection {
        StateSection {
            backend: BackendKind::Redis,
            redis_url: Some(url.into()),
            ..StateSection::default()
        }
    }

    #[test]
    fn sections_are_checked() {
        let base = Path::new("/nonexistent");
        assert_eq!(
            StateSection::default().validate(base),
            Ok(StateSettings::Memory)
        );
        let cases: &[(StateSection, StateConfigError)] = &[
            (
                StateSection {
                    backend: BackendKind::Redis,
                    ..StateSection::default()
                },
                StateConfigError::MissingUrl,
            ),
            (
                redis_section("redis://:secret@127.0.0.1/0"),
                StateConfigError::PasswordInUrl("redis_url"),
            ),
            (
                redis_section("http://127.0.0.1/0"),
                StateConfigError::BadUrl("the scheme must be redis:// or rediss:// (TLS)".into()),
            ),
            (
                redis_section("redis://127.0.0.1/sessions"),
                StateConfigError::BadUrl(
                    "the path must be a database number, not `sessions`".into(),
                ),
            ),
            (
                StateSection {
                    key_prefix: "has space".into(),
                    ..redis_section("redis://127.0.0.1")
                },
                StateConfigError::BadPrefix,
            ),
            (
                StateSection {
                    grace_secs: 0,
                    ..redis_section("redis://127.0.0.1")
                },
                StateConfigError::OutOfRange("grace_secs", 1, 3600),
            ),
            (
                StateSection {
                    redis_url: Some("redis://127.0.0.1".into()),
                    ..StateSection::default()
                },
                StateConfigError::RedisKeyWithMemory("redis_url"),
            ),
        ];
        for (section, want) in cases {
            assert_eq!(section.clone().validate(base).as_ref(), Err(want));
        }
        let ok = redis_section("rediss://redis.internal:6380/3")
            .validate(base)
            .expect("valid");
        match ok {
            StateSettings::Redis(r) => {
                assert_eq!(r.grace, Duration::from_secs(30));
                assert_eq!(r.key_prefix, "samlgate:");
            }
            StateSettings::Memory => panic!("redis expected"),
        }
    }

    #[test]
    fn topology_keys_reach_the_settings_and_memory_refuses_them() {
        let base = Path::new("/nonexistent");
        let memory_with = |section: StateSection| section.validate(base);
        assert_eq!(
            memory_with(StateSection {
                redis_mode: RedisMode::Cluster,
                ..StateSection::default()
            }),
            Err(StateConfigError::RedisKeyWithMemory("redis_mode"))
        );
        assert_eq!(
            memory_with(StateSection {
                redis_sentinels: Some(vec!["redis://s:26379".into()]),
                ..StateSection::default()
            }),
            Err(StateConfigError::RedisKeyWithMemory("redis_sentinels"))
        );
        let sentinel = StateSection {
            backend: BackendKind::Redis,
            redis_mode: RedisMode::Sentinel,
            redis_sentinels: Some(vec!["redis://s1:26379".into(), "redis://s2:26379".into()]),
            redis_sentinel_master: Some("mymaster".into()),
            redis_database: Some(4),
            ..StateSection::default()
        };
        let StateSettings::Redis(r) = sentinel.clone().validate(base).expect("valid") else {
            panic!("redis expected")
        };
        let Topology::Sentinel(t) = &r.topology else {
            panic!("sentinel expected")
        };
        assert_eq!((t.master.as_str(), t.database), ("mymaster", 4));
        // A sentinel key with mode single, a database with cluster.
        assert_eq!(
            StateSection {
                redis_mode: RedisMode::Single,
                redis_url: Some("redis://r:6379".into()),
                ..sentinel.clone()
            }
            .validate(base),
            Err(StateConfigError::KeyNotForMode {
                key: "redis_sentinels",
                mode: "single"
            })
        );
        assert_eq!(
            StateSection {
                redis_mode: RedisMode::Cluster,
                redis_sentinels: None,
                redis_sentinel_master: None,
                redis_cluster_nodes: Some(vec!["redis://c:7000".into()]),
                ..sentinel
            }
            .validate(base),
            Err(StateConfigError::DatabaseWithCluster)
        );
    }

    #[test]
    fn placeholder_passwords_are_refused_for_redis_and_its_sentinels() {
        let dir = tempfile::tempdir().expect("tempdir");
        // What deploy/kubernetes/replicas/redis.yaml ships in its Secret.
        std::fs::write(dir.path().join("placeholder"), "REPLACE-ME\n").expect("write");
        std::fs::write(dir.path().join("empty"), "\n").expect("write");
        std::fs::write(dir.path().join("real"), "k3JqV9x2LmPq8Ztr\n").expect("write");
        for file in ["placeholder", "empty"] {
            assert_eq!(
                StateSection {
                    redis_password_file: Some(file.into()),
                    ..redis_section("redis://127.0.0.1")
                }
                .validate(dir.path()),
                Err(StateConfigError::PlaceholderPassword("redis_password_file")),
                "{file}"
            );
        }
        let sentinel = |file: &str| StateSection {
            backend: BackendKind::Redis,
            redis_mode: RedisMode::Sentinel,
            redis_sentinels: Some(vec!["redis://s1:26379".into()]),
            redis_sentinel_master: Some("mymaster".into()),
            redis_password_file: Some("real".into()),
            redis_sentinel_password_file: Some(file.into()),
            ..StateSection::default()
        };
        assert_eq!(
            sentinel("placeholder").validate(dir.path()),
            Err(StateConfigError::PlaceholderPassword(
                "redis_sentinel_password_file"
            ))
        );
        let StateSettings::Redis(r) = sentinel("real").validate(dir.path()).expect("valid") else {
            panic!("redis expected")
        };
        let Topology::Sentinel(t) = &r.topology else {
            panic!("sentinel expected")
        };
        assert_eq!(t.password.as_deref(), Some("k3JqV9x2LmPq8Ztr"));
        assert_eq!(r.password.as_deref(), Some("k3JqV9x2LmPq8Ztr"));
        assert!(!format!("{r:?}").contains("k3JqV9x2LmPq8Ztr"), "redacted");
    }

    #[test]
    fn the_password_comes_from_its_file_and_is_not_printed() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("pw"), "s3cret\n").expect("write");
        let s = StateSection {
            redis_password_file: Some("pw".into()),
            redis_username: Some("samlgate".into()),
            ..redis_section("redis://127.0.0.1:6379/2")
        }
        .validate(dir.path())
        .expect("valid");
        let StateSettings::Redis(r) = s else {
            panic!("redis expected")
        };
        assert_eq!(r.password.as_deref(), Some("s3cret"));
        assert!(!format!("{r:?}").contains("s3cret"));
        let missing = StateSection {
            redis_password_file: Some("nope".into()),
            ..redis_section("redis://127.0.0.1")
        }
        .validate(dir.path());
        assert!(matches!(
            missing,
            Err(StateConfigError::File {
                key: "redis_password_file",
                ..
            })
        ));
    }
}
