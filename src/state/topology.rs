//! Which Redis deployment the shared backend talks to (`state.redis_mode`): one endpoint, a
//! master found through Redis Sentinel, or a Redis Cluster. Pure checks of the operator's
//! keys, table-tested here; the connections they describe are made in [`super::connection`].
//!
//! Every node list is a list of `redis://` or `rediss://` URLs with one scheme for the whole
//! list (it decides TLS for every server of that deployment, the master Sentinel names
//! included), a host and a port, and nothing else: no password (files only), no user name
//! (`state.redis_username`), no database (Sentinel: `state.redis_database`; Cluster has only
//! database 0).

use std::collections::HashSet;

use super::StateConfigError;

/// Most entries a node list may have: more is a typo or a paste, not a deployment.
pub const MAX_NODES: usize = 32;

/// `state.redis_mode`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Deserialize,
    serde::Serialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// One endpoint, `state.redis_url` (a standalone server, a managed service's primary
    /// endpoint, or a proxy).
    #[default]
    Single,
    /// The master of `state.redis_sentinel_master`, as the Sentinels in
    /// `state.redis_sentinels` name it; found again after a failover.
    Sentinel,
    /// A Redis Cluster reached through any of `state.redis_cluster_nodes`.
    Cluster,
}

impl RedisMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RedisMode::Single => "single",
            RedisMode::Sentinel => "sentinel",
            RedisMode::Cluster => "cluster",
        }
    }
}

/// Where the shared state lives, validated.
#[derive(Clone, PartialEq, Eq)]
pub enum Topology {
    /// `redis://host:port/db` or `rediss://…`, no password in it.
    Single { url: String },
    /// Boxed: the largest variant by far, and settings are cloned rarely.
    Sentinel(Box<SentinelSettings>),
    /// Seed node URLs (the client learns the rest of the cluster from any of them).
    Cluster { nodes: Vec<String> },
}

/// Sentinel mode: where the Sentinels are and which master to ask them for.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelSettings {
    /// Sentinel URLs, one scheme (TLS to the Sentinels and to the master alike).
    pub sentinels: Vec<String>,
    /// The name the Sentinels monitor the master under (`sentinel monitor <name> …`).
    pub master: String,
    /// Database number on the master.
    pub database: u16,
    /// ACL user and password for the Sentinels themselves, when they require one.
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Topology::Single { url } => f.debug_struct("Single").field("url", url).finish(),
            Topology::Sentinel(s) => f
                .debug_struct("Sentinel")
                .field("sentinels", &s.sentinels)
                .field("master", &s.master)
                .field("database", &s.database)
                .field("username", &s.username)
                .field("password", &s.password.as_ref().map(|_| "<redacted>"))
                .finish(),
            Topology::Cluster { nodes } => f.debug_struct("Cluster").field("nodes", nodes).finish(),
        }
    }
}

impl Topology {
    pub fn mode(&self) -> RedisMode {
        match self {
            Topology::Single { .. } => RedisMode::Single,
            Topology::Sentinel(_) => RedisMode::Sentinel,
            Topology::Cluster { .. } => RedisMode::Cluster,
        }
    }

    /// Whether the servers are reached over TLS (`rediss://`).
    pub fn tls(&self) -> bool {
        let first = match self {
            Topology::Single { url } => Some(url),
            Topology::Sentinel(s) => s.sentinels.first(),
            Topology::Cluster { nodes } => nodes.first(),
        };
        first.is_some_and(|u| u.starts_with("rediss://"))
    }
}

/// The topology keys of `[state]` as written, for [`check`].
pub struct TopologyKeys<'a> {
    pub mode: RedisMode,
    pub url: Option<&'a str>,
    pub sentinels: Option<&'a [String]>,
    pub sentinel_master: Option<&'a str>,
    pub sentinel_username: Option<&'a str>,
    pub sentinel_password_set: bool,
    pub database: Option<u16>,
    pub cluster_nodes: Option<&'a [String]>,
    pub key_prefix: &'a str,
}

/// Checks that the keys fit the mode and builds the topology (the Sentinel password is read
/// by the caller, which owns the file access).
pub fn check(k: &TopologyKeys<'_>) -> Result<Topology, StateConfigError> {
    let mode = k.mode;
    let foreign: &[(bool, &'static str)] = match mode {
        RedisMode::Single => &[
            (k.sentinels.is_some(), "redis_sentinels"),
            (k.sentinel_master.is_some(), "redis_sentinel_master"),
            (k.sentinel_username.is_some(), "redis_sentinel_username"),
            (k.sentinel_password_set, "redis_sentinel_password_file"),
            (k.database.is_some(), "redis_database"),
            (k.cluster_nodes.is_some(), "redis_cluster_nodes"),
        ],
        RedisMode::Sentinel => &[
            (k.url.is_some(), "redis_url"),
            (k.cluster_nodes.is_some(), "redis_cluster_nodes"),
        ],
        RedisMode::Cluster => &[
            (k.url.is_some(), "redis_url"),
            (k.sentinels.is_some(), "redis_sentinels"),
            (k.sentinel_master.is_some(), "redis_sentinel_master"),
            (k.sentinel_username.is_some(), "redis_sentinel_username"),
            (k.sentinel_password_set, "redis_sentinel_password_file"),
        ],
    };
    if let Some((_, key)) = foreign.iter().find(|(set, _)| *set) {
        return Err(StateConfigError::KeyNotForMode {
            key,
            mode: mode.as_str(),
        });
    }
    match mode {
        RedisMode::Single => {
            let url = k.url.ok_or(StateConfigError::MissingUrl)?;
            check_redis_url(url)?;
            Ok(Topology::Single { url: url.into() })
        }
        RedisMode::Sentinel => {
            let list = k.sentinels.ok_or(StateConfigError::MissingForMode {
                key: "redis_sentinels",
                mode: "sentinel",
            })?;
            let sentinels = check_node_list("redis_sentinels", list)?;
            let master = k.sentinel_master.ok_or(StateConfigError::MissingForMode {
                key: "redis_sentinel_master",
                mode: "sentinel",
            })?;
            let name_ok =
                (1..=128).contains(&master.len()) && master.bytes().all(|b| b.is_ascii_graphic());
            if !name_ok {
                return Err(StateConfigError::BadMasterName);
            }
            Ok(Topology::Sentinel(Box::new(SentinelSettings {
                sentinels,
                master: master.into(),
                database: k.database.unwrap_or(0),
                username: k.sentinel_username.map(str::to_string),
                password: None,
            })))
        }
        RedisMode::Cluster => {
            if k.database.is_some() {
                return Err(StateConfigError::DatabaseWithCluster);
            }
            // The key prefix becomes the hash tag `{prefix}`: a brace in it would end the tag
            // early and scatter the keys over slots.
            if k.key_prefix.contains(['{', '}']) {
                return Err(StateConfigError::BraceInClusterPrefix);
            }
            let list = k.cluster_nodes.ok_or(StateConfigError::MissingForMode {
                key: "redis_cluster_nodes",
                mode: "cluster",
            })?;
            let nodes = check_node_list("redis_cluster_nodes", list)?;
            Ok(Topology::Cluster { nodes })
        }
    }
}

/// `redis://` or `rediss://`, a host, no password, a database number as the path if any.
pub fn check_redis_url(raw: &str) -> Result<(), StateConfigError> {
    let url = parse_url("redis_url", raw)?;
    let db = url.path().trim_start_matches('/');
    if !db.is_empty() && db.parse::<u16>().is_err() {
        return Err(StateConfigError::BadUrl(format!(
            "the path must be a database number, not `{db}`"
        )));
    }
    Ok(())
}

fn parse_url(key: &'static str, raw: &str) -> Result<url::Url, StateConfigError> {
    let bad = |reason: String| {
        if key == "redis_url" {
            StateConfigError::BadUrl(reason)
        } else {
            StateConfigError::BadNode {
                key,
                node: raw.into(),
                reason,
            }
        }
    };
    let url = url::Url::parse(raw).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "redis" | "rediss") {
        return Err(bad("the scheme must be redis:// or rediss:// (TLS)".into()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host".into()));
    }
    if url.password().is_some() {
        return Err(StateConfigError::PasswordInUrl(key));
    }
    Ok(url)
}

/// A Sentinel or Cluster node list: 1 to [`MAX_NODES`] distinct `scheme://host:port` URLs of
/// one scheme.
fn check_node_list(key: &'static str, list: &[String]) -> Result<Vec<String>, StateConfigError> {
    if list.is_empty() {
        return Err(StateConfigError::EmptyList(key));
    }
    if list.len() > MAX_NODES {
        return Err(StateConfigError::TooManyNodes(key, MAX_NODES));
    }
    let mut seen = HashSet::new();
    let mut scheme = None;
    for raw in list {
        let url = parse_url(key, raw)?;
        let bad = |reason: &str| StateConfigError::BadNode {
            key,
            node: raw.clone(),
            reason: reason.into(),
        };
        if !url.username().is_empty() {
            return Err(bad(
                "no user name here: state.redis_username (or redis_sentinel_username) applies",
            ));
        }
        if url.port().is_none() {
            return Err(bad("a port is required"));
        }
        let path = url.path().trim_start_matches('/');
        if !path.is_empty() {
            return Err(if key == "redis_cluster_nodes" {
                StateConfigError::DatabaseWithCluster
            } else {
                bad("no database here: state.redis_database names the master's")
            });
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("no query or fragment"));
        }
        if *scheme.get_or_insert(url.scheme().to_string()) != url.scheme() {
            return Err(StateConfigError::MixedSchemes(key));
        }
        let addr = format!(
            "{}:{}",
            url.host_str().unwrap_or(""),
            url.port().unwrap_or(0)
        );
        if !seen.insert(addr) {
            return Err(bad("listed twice"));
        }
    }
    Ok(list.to_vec())
}

pub use crate::config_files::is_placeholder_secret;

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(mode: RedisMode) -> TopologyKeys<'static> {
        TopologyKeys {
            mode,
            url: None,
            sentinels: None,
            sentinel_master: None,
            sentinel_username: None,
            sentinel_password_set: false,
            database: None,
            cluster_nodes: None,
            key_prefix: "samlgate:",
        }
    }

    fn list(items: &[&str]) -> &'static [String] {
        Box::leak(
            items
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        )
    }

    fn sentinel(nodes: &[&str]) -> TopologyKeys<'static> {
        TopologyKeys {
            sentinels: Some(list(nodes)),
            sentinel_master: Some("mymaster"),
            ..keys(RedisMode::Sentinel)
        }
    }

    fn cluster(nodes: &[&str]) -> TopologyKeys<'static> {
        TopologyKeys {
            cluster_nodes: Some(list(nodes)),
            ..keys(RedisMode::Cluster)
        }
    }

    #[test]
    fn keys_must_fit_the_mode() {
        let s1 = "redis://10.0.0.1:26379";
        let cases: Vec<(TopologyKeys<'static>, StateConfigError)> = vec![
            (keys(RedisMode::Single), StateConfigError::MissingUrl),
            (
                TopologyKeys {
                    url: Some("redis://r:6379"),
                    sentinels: Some(list(&[s1])),
                    ..keys(RedisMode::Single)
                },
                StateConfigError::KeyNotForMode {
                    key: "redis_sentinels",
                    mode: "single",
                },
            ),
            (
                TopologyKeys {
                    url: Some("redis://r:6379"),
                    database: Some(2),
                    ..keys(RedisMode::Single)
                },
                StateConfigError::KeyNotForMode {
                    key: "redis_database",
                    mode: "single",
                },
            ),
            (
                TopologyKeys {
                    url: Some("redis://r:6379"),
                    ..sentinel(&[s1])
                },
                StateConfigError::KeyNotForMode {
                    key: "redis_url",
                    mode: "sentinel",
                },
            ),
            (
                TopologyKeys {
                    sentinel_master: Some("m"),
                    ..cluster(&["redis://c1:7000"])
                },
                StateConfigError::KeyNotForMode {
                    key: "redis_sentinel_master",
                    mode: "cluster",
                },
            ),
            (
                TopologyKeys {
                    sentinel_master: None,
                    ..sentinel(&[s1])
                },
                StateConfigError::MissingForMode {
                    key: "redis_sentinel_master",
                    mode: "sentinel",
                },
            ),
            (
                TopologyKeys {
                    sentinel_master: Some("my master"),
                    ..sentinel(&[s1])
                },
                StateConfigError::BadMasterName,
            ),
            (
                keys(RedisMode::Sentinel),
                StateConfigError::MissingForMode {
                    key: "redis_sentinels",
                    mode: "sentinel",
                },
            ),
            (
                keys(RedisMode::Cluster),
                StateConfigError::MissingForMode {
                    key: "redis_cluster_nodes",
                    mode: "cluster",
                },
            ),
        ];
        for (k, want) in cases {
            assert_eq!(check(&k), Err(want));
        }
    }

    #[test]
    fn node_lists_and_the_cluster_prefix_are_checked() {
        let s1 = "redis://10.0.0.1:26379";
        let cases: Vec<(TopologyKeys<'static>, StateConfigError)> = vec![
            (
                sentinel(&[]),
                StateConfigError::EmptyList("redis_sentinels"),
            ),
            (
                cluster(&[]),
                StateConfigError::EmptyList("redis_cluster_nodes"),
            ),
            (
                TopologyKeys {
                    database: Some(1),
                    ..cluster(&["redis://c1:7000"])
                },
                StateConfigError::DatabaseWithCluster,
            ),
            (
                cluster(&["redis://c1:7000/1"]),
                StateConfigError::DatabaseWithCluster,
            ),
            (
                TopologyKeys {
                    key_prefix: "app{1}:",
                    ..cluster(&["redis://c1:7000"])
                },
                StateConfigError::BraceInClusterPrefix,
            ),
            (
                cluster(&["redis://:pw@c1:7000"]),
                StateConfigError::PasswordInUrl("redis_cluster_nodes"),
            ),
            (
                sentinel(&["redis://u:pw@s1:26379"]),
                StateConfigError::PasswordInUrl("redis_sentinels"),
            ),
            (
                sentinel(&[s1, "rediss://10.0.0.2:26379"]),
                StateConfigError::MixedSchemes("redis_sentinels"),
            ),
        ];
        for (k, want) in cases {
            assert_eq!(check(&k), Err(want));
        }
        let too_many: Vec<String> = (0..=MAX_NODES)
            .map(|i| format!("redis://c{i}:7000"))
            .collect();
        assert_eq!(
            check(&TopologyKeys {
                cluster_nodes: Some(Box::leak(too_many.into_boxed_slice())),
                ..keys(RedisMode::Cluster)
            }),
            Err(StateConfigError::TooManyNodes(
                "redis_cluster_nodes",
                MAX_NODES
            ))
        );
    }

    #[test]
    fn node_urls_carry_a_host_and_port_only() {
        let reason = |k: TopologyKeys<'static>| match check(&k) {
            Err(StateConfigError::BadNode { reason, .. }) => reason,
            other => panic!("expected BadNode, got {other:?}"),
        };
        assert_eq!(
            reason(sentinel(&["http://s1:26379"])),
            "the scheme must be redis:// or rediss:// (TLS)"
        );
        assert_eq!(reason(sentinel(&["redis://s1"])), "a port is required");
        assert_eq!(
            reason(sentinel(&["redis://s1:26379/2"])),
            "no database here: state.redis_database names the master's"
        );
        assert!(reason(sentinel(&["redis://admin@s1:26379"])).starts_with("no user name"));
        assert_eq!(
            reason(cluster(&["redis://c1:7000", "redis://c1:7000"])),
            "listed twice"
        );
        assert_eq!(
            reason(cluster(&["redis://c1:7000?x=1"])),
            "no query or fragment"
        );
        assert_eq!(
            reason(cluster(&["not a url"])),
            "relative URL without a base"
        );
    }

    #[test]
    fn valid_topologies_are_built() {
        let t = check(&TopologyKeys {
            database: Some(3),
            sentinel_username: Some("sentinel-user"),
            ..sentinel(&["rediss://s1:26379", "rediss://s2:26379"])
        })
        .expect("valid");
        assert_eq!(t.mode(), RedisMode::Sentinel);
        assert!(t.tls());
        let Topology::Sentinel(s) = t else {
            panic!("sentinel expected")
        };
        assert_eq!(
            (s.master.as_str(), s.database, s.username.as_deref()),
            ("mymaster", 3, Some("sentinel-user"))
        );
        let c = check(&cluster(&["redis://c1:7000", "redis://c2:7000"])).expect("valid");
        assert_eq!(c.mode(), RedisMode::Cluster);
        assert!(!c.tls());
        let s = check(&TopologyKeys {
            url: Some("redis://r:6379/2"),
            ..keys(RedisMode::Single)
        })
        .expect("valid");
        assert_eq!(
            s,
            Topology::Single {
                url: "redis://r:6379/2".into()
            }
        );
    }

    #[test]
    fn placeholder_secrets_are_recognised() {
        for p in [
            "REPLACE-ME",
            "replace_me",
            "<replace me>",
            "REPLACE-ME-with-a-long-random-password",
            "changeme",
            "Password",
            "",
            "  \n",
            "redis",
        ] {
            assert!(is_placeholder_secret(p), "{p:?} should be refused");
        }
        for real in ["k3JqV9x2LmPq8Ztr", "correct horse battery staple"] {
            assert!(!is_placeholder_secret(real), "{real:?} is a real secret");
        }
    }
}
