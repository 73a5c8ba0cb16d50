//! The connection to Redis for each topology ([`super::topology`]), behind one type,
//! [`RedisConn`], that implements redis-rs's `aio::ConnectionLike`: code elsewhere writes
//! `redis::cmd(..).query_async(&mut c)` inside [`super::redis::Shared::run`] whatever the
//! deployment.
//!
//! - Single: redis-rs's `ConnectionManager` (reconnects to the one address with backoff).
//! - Sentinel: [`SentinelConnection`], ours, because redis-rs has no reconnecting Sentinel
//!   connection: it asks the Sentinels for the master (redis-rs checks that the node it names
//!   says `ROLE` master), keeps one multiplexed connection to it, and forgets it on a lost
//!   connection, a timeout or a `READONLY` answer (a demoted master), so that the next command
//!   asks the Sentinels again. It never falls back to anything it has not resolved: no
//!   master, no command (the caller's 503).
//! - Cluster: redis-rs's async `ClusterConnection` (follows MOVED/ASK, refreshes the slot map,
//!   reconnects); every samlgate key carries one hash tag, so a script, MGET or pipeline
//!   never spans slots.
//!
//! The invalidation subscription ([`Connector::subscribe`]) is a plain pub/sub connection: to
//! the single endpoint, to the Sentinel master the commands use (resolved with them), or to
//! one Cluster node chosen in turn (classic PUBLISH reaches every node of a cluster).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, IntoConnectionInfo, Pipeline, RedisError, RedisFuture,
    RedisResult, ServerErrorKind, TlsCertificates, TlsMode, Value,
};

use super::{RedisSettings, SentinelSettings, Topology};

/// Longest wait between two reconnection attempts of the single-endpoint manager.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// One connection to the configured Redis, cheap to clone (all clones share it).
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Sentinel(SentinelConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Sentinel(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Sentinel(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

impl RedisConn {
    /// A command gave no answer in time: with Sentinel the master may be gone (partitioned
    /// rather than refusing), so the next command resolves it again.
    pub(super) fn timed_out(&self) {
        if let RedisConn::Sentinel(c) = self {
            c.forget_current();
        }
    }

    /// The generation of the Sentinel master in use (0 while none is, and in the other
    /// modes): the invalidation watcher re-subscribes when it differs from the one it
    /// subscribed on, i.e. when commands moved (or may move) to another master.
    pub(super) fn epoch(&self) -> u64 {
        match self {
            RedisConn::Sentinel(c) => c.current().map_or(0, |r| r.generation),
            _ => 0,
        }
    }
}

/// Whether an error means "this server is not (or no longer) the master we should talk to".
fn needs_new_master(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || is_readonly(e)
}

/// `READONLY`: a write reached a replica (a master demoted by a failover). A Lua script that
/// writes on a replica fails with the same code (tests/state_redis_topologies.rs checks both
/// against a real replica).
pub fn is_readonly(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly) || e.code() == Some("READONLY")
}

/// The master of a Sentinel-monitored group, resolved on first use and again after a loss.
#[derive(Clone)]
pub struct SentinelConnection(Arc<SentinelInner>);

struct SentinelInner {
    /// Asks the Sentinels; one resolution at a time (the others wait and reuse its result).
    resolver: tokio::sync::Mutex<SentinelClient>,
    current: Mutex<Option<Resolved>>,
    generation: AtomicU64,
    config: AsyncConnectionConfig,
    db: i64,
}

/// The master as last resolved: its connection for commands, a client for the subscription
/// (so that it listens where the commands go), and the generation both belong to.
#[derive(Clone)]
struct Resolved {
    generation: u64,
    conn: MultiplexedConnection,
    client: redis::Client,
}

impl SentinelConnection {
    fn current(&self) -> Option<Resolved> {
        self.0
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The current master, resolved if needed. The resolution runs as its own task, so a
    /// command that gives up waiting (its timeout) does not cancel it: with a Sentinel that
    /// hangs, one resolution may take longer than one command, and the next command finds it
    /// done instead of starting over.
    async fn resolved(&self) -> RedisResult<Resolved> {
        if let Some(r) = self.current() {
            return Ok(r);
        }
        let this = self.clone();
        tokio::spawn(async move { this.resolve().await })
            .await
            .map_err(|e| RedisError::from((ErrorKind::Io, "sentinel resolution", e.to_string())))?
    }

    async fn resolve(&self) -> RedisResult<Resolved> {
        let mut resolver = self.0.resolver.lock().await;
        if let Some(r) = self.current() {
            return Ok(r);
        }
        // redis-rs checks that the node the Sentinels name answers `ROLE` as a master.
        let client = resolver.async_get_client().await?;
        let conn = client
            .get_multiplexed_async_connection_with_config(&self.0.config)
            .await?;
        let generation = self.0.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let r = Resolved {
            generation,
            conn,
            client,
        };
        *self.0.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(r.clone());
        Ok(r)
    }

    /// Drops the master of `generation` (not a newer one another task resolved since).
    fn forget(&self, generation: u64) {
        let mut current = self.0.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.as_ref().is_some_and(|r| r.generation == generation) {
            *current = None;
        }
    }

    fn forget_current(&self) {
        *self.0.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// A pub/sub connection to the master commands go to now, and its generation.
    async fn subscriber(&self) -> RedisResult<(u64, redis::aio::PubSub)> {
        let r = self.resolved().await?;
        Ok((r.generation, r.client.get_async_pubsub().await?))
    }

    /// Sends on the current master; a `READONLY` answer (nothing was written) is sent once
    /// more to the master the Sentinels name now.
    async fn send<T, F, Fut>(&self, mut request: F) -> RedisResult<T>
    where
        F: FnMut(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        let mut retried = false;
        loop {
            let r = self.resolved().await?;
            let result = request(r.conn).await;
            if let Err(e) = &result {
                if needs_new_master(e) {
                    self.forget(r.generation);
                    if is_readonly(e) && !retried {
                        retried = true;
                        tracing::warn!(target: "samlgate::audit", event = "state_backend_failover", "redis master demoted; asking the sentinels again");
                        continue;
                    }
                }
            }
            return result;
        }
    }
}

impl ConnectionLike for SentinelConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(self.send(move |mut c| async move { c.req_packed_command(cmd).await }))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(
            self.send(
                move |mut c| async move { c.req_packed_commands(pipeline, offset, count).await },
            ),
        )
    }

    fn get_db(&self) -> i64 {
        self.0.db
    }
}

/// What is needed to connect, and the connection once made (lazily: redis-rs spawns its
/// driver tasks then, which needs the runtime `check-config` does not start).
pub struct Connector {
    kind: Kind,
    conn: OnceLock<RedisConn>,
    /// Turns with each subscription attempt in Cluster mode (which node to try next).
    subscribe_turn: AtomicU64,
}

enum Kind {
    Single {
        client: redis::Client,
        config: ConnectionManagerConfig,
    },
    Sentinel(SentinelConnection),
    Cluster {
        client: redis::cluster::ClusterClient,
        /// One plain client per seed node, for the subscription.
        nodes: Vec<redis::Client>,
    },
}

impl Connector {
    pub fn new(r: &RedisSettings) -> Result<Connector, String> {
        // redis-rs's rustls builds its config from the process default provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certs = r.ca_pem.as_ref().map(|ca| TlsCertificates {
            client_tls: None,
            root_cert: Some(ca.clone()),
        });
        let kind = match &r.topology {
            Topology::Single { url } => Kind::Single {
                client: node_client(url, r, certs.as_ref())
                    .map_err(|e| format!("state.redis_url: {e}"))?,
                config: ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(r.command_timeout))
                    .set_response_timeout(Some(r.command_timeout))
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(MAX_BACKOFF)
                    .set_number_of_retries(2),
            },
            Topology::Sentinel(s) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(r.command_timeout))
                    .set_response_timeout(Some(r.command_timeout));
                let resolver = sentinel_client(s, r, certs.clone())
                    .map_err(|e| format!("state.redis_sentinels: {e}"))?;
                Kind::Sentinel(SentinelConnection(Arc::new(SentinelInner {
                    resolver: tokio::sync::Mutex::new(resolver),
                    current: Mutex::new(None),
                    generation: AtomicU64::new(0),
                    config,
                    db: i64::from(s.database),
                })))
            }
            Topology::Cluster { nodes } => {
                let mut b = redis::cluster::ClusterClient::builder(nodes.clone())
                    .connection_timeout(r.command_timeout)
                    .response_timeout(r.command_timeout)
                    .retries(2)
                    .min_retry_wait(50)
                    .max_retry_wait(MAX_BACKOFF.as_millis() as u64);
                if let Some(u) = &r.username {
                    b = b.username(u);
                }
                if let Some(p) = &r.password {
                    b = b.password(p);
                }
                if let Some(c) = &certs {
                    b = b.certs(c.clone());
                }
                let client = b
                    .build()
                    .map_err(|e| format!("state.redis_cluster_nodes: {e}"))?;
                let nodes = nodes
                    .iter()
                    .map(|n| node_client(n, r, certs.as_ref()))
                    .collect::<RedisResult<Vec<_>>>()
                    .map_err(|e| format!("state.redis_cluster_nodes: {e}"))?;
                Kind::Cluster { client, nodes }
            }
        };
        Ok(Connector {
            kind,
            conn: OnceLock::new(),
            subscribe_turn: AtomicU64::new(0),
        })
    }

    /// The shared connection, made at the first call (inside the runtime).
    pub fn connection(&self) -> &RedisConn {
        self.conn.get_or_init(|| match &self.kind {
            Kind::Single { client, config } => RedisConn::Single(
                client
                    .get_connection_manager_lazy(config.clone())
                    // Fails only for a push-based config (automatic resubscription), not used here.
                    .expect("a lazy connection manager without push messages"),
            ),
            Kind::Sentinel(c) => RedisConn::Sentinel(c.clone()),
            Kind::Cluster { client, .. } => {
                RedisConn::Cluster(client.get_pending_async_connection_with_config(
                    redis::cluster::ClusterConfig::default(),
                ))
            }
        })
    }

    /// A pub/sub connection for the invalidation channel and the epoch it belongs to (see
    /// [`RedisConn::epoch`]): the single endpoint, the master the commands go to now
    /// (Sentinel), or the next Cluster node in turn.
    pub async fn subscribe(&self, channel: &str) -> RedisResult<(u64, redis::aio::PubSub)> {
        let (epoch, mut pubsub) = match &self.kind {
            Kind::Single { client, .. } => (0, client.get_async_pubsub().await?),
            Kind::Sentinel(c) => c.subscriber().await?,
            Kind::Cluster { nodes, .. } => {
                let turn = self.subscribe_turn.fetch_add(1, Ordering::AcqRel);
                let i = usize::try_from(turn).unwrap_or(0) % nodes.len().max(1);
                match nodes.get(i) {
                    Some(c) => (0, c.get_async_pubsub().await?),
                    None => return Err((ErrorKind::InvalidClientConfig, "no cluster node").into()),
                }
            }
        };
        pubsub.subscribe(channel).await?;
        Ok((epoch, pubsub))
    }
}

/// A client for one node URL with the data nodes' user, password and CA.
fn node_client(
    url: &str,
    r: &RedisSettings,
    certs: Option<&TlsCertificates>,
) -> RedisResult<redis::Client> {
    let info = url.into_connection_info()?;
    let mut redis_info = info.redis_settings().clone();
    if let Some(u) = &r.username {
        redis_info = redis_info.set_username(u);
    }
    if let Some(p) = &r.password {
        redis_info = redis_info.set_password(p);
    }
    let info = info.set_redis_settings(redis_info);
    match certs {
        Some(c) => redis::Client::build_with_tls(info, c.clone()),
        None => redis::Client::open(info),
    }
}

/// Asks the Sentinels in `s` for its master, with the data nodes' credentials for the master
/// and the Sentinels' own for them; TLS to both when the Sentinel URLs say `rediss://`.
fn sentinel_client(
    s: &SentinelSettings,
    r: &RedisSettings,
    certs: Option<TlsCertificates>,
) -> RedisResult<SentinelClient> {
    let addrs = s
        .sentinels
        .iter()
        .map(|u| u.as_str().into_connection_info().map(|i| i.addr().clone()))
        .collect::<RedisResult<Vec<_>>>()?;
    let mut b = SentinelClientBuilder::new(addrs, &s.master, SentinelServerType::Master)?
        .set_client_to_redis_db(i64::from(s.database));
    if let Some(u) = &r.username {
        b = b.set_client_to_redis_username(u);
    }
    if let Some(p) = &r.password {
        b = b.set_client_to_redis_password(p);
    }
    if let Some(u) = &s.username {
        b = b.set_client_to_sentinel_username(u);
    }
    if let Some(p) = &s.password {
        b = b.set_client_to_sentinel_password(p);
    }
    if r.topology.tls() {
        b = b.set_client_to_redis_tls_mode(TlsMode::Secure);
        if let Some(c) = certs {
            b = b
                .set_client_to_redis_certificates(c.clone())
                .set_client_to_sentinel_certificates(c);
        }
    }
    b.build()
}

/// What `Shared::run` hands its callers (the SCIM store among them) must stay usable as
/// redis-rs's async connection, cloned into tasks.
const _: fn() = || {
    fn usable<T: ConnectionLike + Clone + Send + Sync + 'static>() {}
    usable::<RedisConn>();
};
