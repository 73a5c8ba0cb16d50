//! Per-client rate limits (`[rate_limits]`) for the expensive or abusable endpoints: starting
//! a sign-in, posting to the ACS, and failed authentications. One GCRA limiter (governor) per
//! limit, keyed by the client address: an IPv4 address, or an IPv6 address's /64 (one host
//! usually owns a whole /64). IPv6 space is cheap, so when the table fills up new IPv6
//! clients are tracked by their /48 (half full) or /32 (three quarters full): rotating through
//! the /64s of one allocation fills one entry, not the table ([`tracking_key`]). Memory is
//! bounded by `max_tracked_clients`: past it, idle keys are dropped and, if that is not
//! enough, new clients are refused until room frees up (existing ones keep their budgets).
//! No I/O except the optional cleanup task.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::StateStore;
use governor::{Quota, RateLimiter};
use serde::Deserialize;

use crate::config::ConfigError;

/// How often a full table may trigger an extra cleanup (beyond `retain_recent`'s own calls).
const CLEANUP_THROTTLE: Duration = Duration::from_secs(1);
/// How often [`RateLimits::spawn_cleanup`] drops idle keys.
pub const CLEANUP_INTERVAL: Duration = Duration::from_secs(60);

/// `[rate_limits]` as written by the operator.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSection {
    pub enabled: bool,
    /// Sign-ins started (redirects to the IdP) per client per minute, and the burst allowed.
    pub sign_in_per_minute: u32,
    pub sign_in_burst: u32,
    /// POSTs to the ACS per client per minute, and the burst allowed.
    pub acs_per_minute: u32,
    pub acs_burst: u32,
    /// Requests without a valid session on a path that needs one (proxied, or a forward-auth
    /// check at `/saml/auth`) per client per minute, and the burst allowed.
    pub auth_failures_per_minute: u32,
    pub auth_failures_burst: u32,
    /// Clients tracked at once, over all three limits together.
    pub max_tracked_clients: usize,
}

impl Default for RateLimitSection {
    fn default() -> Self {
        Self {
            enabled: true,
            sign_in_per_minute: 30,
            sign_in_burst: 10,
            acs_per_minute: 30,
            acs_burst: 10,
            auth_failures_per_minute: 120,
            auth_failures_burst: 30,
            max_tracked_clients: 100_000,
        }
    }
}

impl RateLimitSection {
    /// Zeros are refused when enabled (a zero rate would lock everyone out).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        for (name, value) in [
            ("sign_in_per_minute", self.sign_in_per_minute),
            ("sign_in_burst", self.sign_in_burst),
            ("acs_per_minute", self.acs_per_minute),
            ("acs_burst", self.acs_burst),
            ("auth_failures_per_minute", self.auth_failures_per_minute),
            ("auth_failures_burst", self.auth_failures_burst),
        ] {
            if value == 0 {
                return Err(ConfigError::new(
                    format!("rate_limits.{name}"),
                    "must be at least 1 (set rate_limits.enabled = false to turn limits off)",
                ));
            }
        }
        if self.max_tracked_clients == 0 {
            return Err(ConfigError::new(
                "rate_limits.max_tracked_clients",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Which budget a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    SignIn,
    Acs,
    AuthFailure,
}

impl Limit {
    /// For logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::SignIn => "sign_in",
            Limit::Acs => "acs",
            Limit::AuthFailure => "auth_failure",
        }
    }
}

type Store = DashMapStateStore<ClientKey>;

/// The limiter's state store, shared so that [`RateLimits`] can ask whether a key is known.
#[derive(Debug, Default)]
struct SharedStore(Arc<Store>);

impl StateStore for SharedStore {
    type Key = ClientKey;

    fn measure_and_replace<T, F, E>(&self, key: &ClientKey, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<ClientKey> for SharedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&*self.0, drop_below)
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&*self.0)
    }

    fn len(&self) -> usize {
        ShrinkableKeyedStateStore::len(&*self.0)
    }

    fn is_empty(&self) -> bool {
        ShrinkableKeyedStateStore::is_empty(&*self.0)
    }
}

struct Keyed<C: Clock> {
    limiter: RateLimiter<ClientKey, SharedStore, C, NoOpMiddleware<C::Instant>>,
    store: Arc<Store>,
    /// How long a refused new client should wait: a full burst's refill plus one interval,
    /// after which an idle key is dropped by `retain_recent`.
    refill: Duration,
}

impl<C: Clock> Keyed<C> {
    fn new(per_minute: u32, burst: u32, clock: C) -> Option<Self> {
        let quota =
            Quota::per_minute(NonZeroU32::new(per_minute)?).allow_burst(NonZeroU32::new(burst)?);
        let store = Arc::new(Store::default());
        Some(Keyed {
            limiter: RateLimiter::new(quota, SharedStore(Arc::clone(&store)), clock),
            store,
            refill: quota.burst_size_replenished_in() + quota.replenish_interval(),
        })
    }
}

struct Enabled<C: Clock> {
    sign_in: Keyed<C>,
    acs: Keyed<C>,
    auth_failure: Keyed<C>,
    max_tracked: usize,
    clock: C,
    start: C::Instant,
    /// Nanoseconds since `start` of the last capacity-triggered cleanup; `u64::MAX` = never.
    last_cleanup: AtomicU64,
}

/// The three limits. Generic over governor's clock so tests can use `FakeRelativeClock`.
pub struct RateLimits<C: Clock = DefaultClock> {
    inner: Option<Enabled<C>>,
}

impl<C: Clock> std::fmt::Debug for RateLimits<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("enabled", &self.inner.is_some())
            .field("tracked", &self.tracked())
            .finish()
    }
}

impl RateLimits<DefaultClock> {
    /// Validates the section and builds the limits on the monotonic clock.
    pub fn new(section: &RateLimitSection) -> Result<Self, ConfigError> {
        Self::with_clock(section, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimits<C> {
    /// As [`RateLimits::new`], on the given clock.
    pub fn with_clock(section: &RateLimitSection, clock: C) -> Result<Self, ConfigError> {
        section.validate()?;
        if !section.enabled {
            return Ok(RateLimits { inner: None });
        }
        let keyed = |per_minute, burst, key: &str| {
            Keyed::new(per_minute, burst, clock.clone()).ok_or_else(|| {
                // Unreachable after validate(); kept as an error rather than a panic.
                ConfigError::new(format!("rate_limits.{key}"), "must be at least 1")
            })
        };
        let sign_in = keyed(
            section.sign_in_per_minute,
            section.sign_in_burst,
            "sign_in_per_minute",
        )?;
        let acs = keyed(section.acs_per_minute, section.acs_burst, "acs_per_minute")?;
        let auth_failure = keyed(
            section.auth_failures_per_minute,
            section.auth_failures_burst,
            "auth_failures_per_minute",
        )?;
        let start = clock.now();
        Ok(RateLimits {
            inner: Some(Enabled {
                sign_in,
                acs,
                auth_failure,
                max_tracked: section.max_tracked_clients,
                clock,
                start,
                last_cleanup: AtomicU64::new(u64::MAX),
            }),
        })
    }
}

impl<C: Clock> RateLimits<C> {
    /// Spends one unit of `limit` for `client`. `Err` carries how long to wait (for
    /// `Retry-After`). Disabled limits always pass. When the table is full and `client` is
    /// new, idle keys are dropped first (at most once a second); if it is still full the new
    /// client is refused, while clients already tracked keep working.
    pub fn check(&self, limit: Limit, client: IpAddr) -> Result<(), Duration> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let keyed = inner.keyed(limit);
        let key = tracking_key(
            client,
            || inner.tracked(),
            inner.max_tracked,
            |k| keyed.store.contains_key(k),
        );
        if !keyed.store.contains_key(&key) && inner.tracked() >= inner.max_tracked {
            inner.cleanup_if_due();
            if inner.tracked() >= inner.max_tracked {
                return Err(keyed.refill);
            }
        }
        keyed
            .limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(inner.clock.now()))
    }

    /// Keys held over all three limits.
    pub fn tracked(&self) -> usize {
        self.inner.as_ref().map_or(0, Enabled::tracked)
    }

    /// Drops keys whose budget is full again (indistinguishable from a new client).
    pub fn retain_recent(&self) {
        if let Some(inner) = &self.inner {
            inner.retain_recent();
        }
    }
}

impl<C> RateLimits<C>
where
    C: Clock + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    /// Runs [`RateLimits::retain_recent`] every [`CLEANUP_INTERVAL`] on the tokio runtime,
    /// until the last `Arc` to these limits is dropped.
    pub fn spawn_cleanup(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        self.spawn_cleanup_every(CLEANUP_INTERVAL)
    }

    fn spawn_cleanup_every(self: &Arc<Self>, period: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first tick is immediate
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(limits) => limits.retain_recent(),
                    None => break,
                }
            }
        })
    }
}

impl<C: Clock> Enabled<C> {
    fn keyed(&self, limit: Limit) -> &Keyed<C> {
        match limit {
            Limit::SignIn => &self.sign_in,
            Limit::Acs => &self.acs,
            Limit::AuthFailure => &self.auth_failure,
        }
    }

    fn tracked(&self) -> usize {
        self.sign_in.store.len() + self.acs.store.len() + self.auth_failure.store.len()
    }

    fn retain_recent(&self) {
        for keyed in [&self.sign_in, &self.acs, &self.auth_failure] {
            keyed.limiter.retain_recent();
            keyed.limiter.shrink_to_fit();
        }
    }

    /// A full table under a flood of new clients must not turn every request into a scan.
    fn cleanup_if_due(&self) {
        let now = self.clock.now().duration_since(self.start).as_u64();
        let last = self.last_cleanup.load(Ordering::Relaxed);
        let due =
            last == u64::MAX || now.saturating_sub(last) >= Nanos::from(CLEANUP_THROTTLE).as_u64();
        if due
            && self
                .last_cleanup
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.retain_recent();
        }
    }
}

/// What a budget is kept for: a network (`addr` with its host bits zero) and its prefix
/// length, so that a /48 aggregate never shares an entry with the /64 at its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl ClientKey {
    fn v6(addr: Ipv6Addr, prefix: u8) -> ClientKey {
        let mask = u128::MAX << (128 - u32::from(prefix));
        ClientKey {
            addr: IpAddr::V6(Ipv6Addr::from(u128::from(addr) & mask)),
            prefix,
        }
    }
}

/// A client's own key: IPv4 (including IPv4-mapped IPv6) by address, IPv6 by its /64.
pub fn client_key(ip: IpAddr) -> ClientKey {
    match ip.to_canonical() {
        IpAddr::V4(v4) => ClientKey {
            addr: IpAddr::V4(v4),
            prefix: 32,
        },
        IpAddr::V6(v6) => ClientKey::v6(v6, 64),
    }
}

/// The key `client` spends from, given how many keys are tracked (`tracked`, of at most
/// `max`; asked only for a new IPv6 client, since counting visits every shard) and which keys
/// exist (`known`). A known key is kept (its budget is not reset by a
/// change of key); otherwise a new IPv6 client joins an existing aggregate of its /32 or
/// /48, and while the table is at least half full (three quarters) it starts one for its /48
/// (/32). IPv4 clients always have their own key.
pub fn tracking_key(
    client: IpAddr,
    tracked: impl FnOnce() -> usize,
    max: usize,
    known: impl Fn(&ClientKey) -> bool,
) -> ClientKey {
    let own = client_key(client);
    let IpAddr::V6(v6) = own.addr else {
        return own;
    };
    if known(&own) {
        return own;
    }
    let (wide, narrow) = (ClientKey::v6(v6, 32), ClientKey::v6(v6, 48));
    if let Some(existing) = [wide, narrow].into_iter().find(|k| known(k)) {
        return existing;
    }
    let tracked = tracked();
    if tracked.saturating_mul(4) >= max.saturating_mul(3) {
        wide
    } else if tracked.saturating_mul(2) >= max {
        narrow
    } else {
        own
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn section(per_minute: u32, burst: u32, max: usize) -> RateLimitSection {
        RateLimitSection {
            enabled: true,
            sign_in_per_minute: per_minute,
            sign_in_burst: burst,
            acs_per_minute: per_minute,
            acs_burst: burst,
            auth_failures_per_minute: per_minute,
            auth_failures_burst: burst,
            max_tracked_clients: max,
        }
    }

    fn limits(s: &RateLimitSection) -> (RateLimits<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (RateLimits::with_clock(s, clock.clone()).unwrap(), clock)
    }

    #[test]
    fn burst_then_refusal_with_retry_after_then_refill() {
        // 6 per minute = one every 10 s; burst 3.
        let (l, clock) = limits(&section(6, 3, 100));
        let a = ip("203.0.113.5");
        for _ in 0..3 {
            assert_eq!(l.check(Limit::SignIn, a), Ok(()));
        }
        let wait = l.check(Limit::SignIn, a).unwrap_err();
        assert_eq!(wait, Duration::from_secs(10));
        clock.advance(Duration::from_secs(4));
        assert_eq!(
            l.check(Limit::SignIn, a).unwrap_err(),
            Duration::from_secs(6)
        );
        clock.advance(Duration::from_secs(6));
        assert_eq!(l.check(Limit::SignIn, a), Ok(()));
        assert!(l.check(Limit::SignIn, a).is_err());
    }

    #[test]
    fn limits_and_clients_are_independent() {
        let (l, _clock) = limits(&section(60, 1, 100));
        let a = ip("203.0.113.5");
        assert_eq!(l.check(Limit::SignIn, a), Ok(()));
        assert!(l.check(Limit::SignIn, a).is_err());
        assert_eq!(l.check(Limit::Acs, a), Ok(()), "another budget");
        assert_eq!(l.check(Limit::AuthFailure, a), Ok(()));
        assert_eq!(l.check(Limit::SignIn, ip("203.0.113.6")), Ok(()));
        assert_eq!(l.tracked(), 4);
    }

    #[test]
    fn ipv6_clients_share_their_slash_64() {
        let (l, _clock) = limits(&section(60, 1, 100));
        assert_eq!(l.check(Limit::Acs, ip("2001:db8:1:2::1")), Ok(()));
        assert!(l.check(Limit::Acs, ip("2001:db8:1:2:ffff::9")).is_err());
        assert_eq!(l.check(Limit::Acs, ip("2001:db8:1:3::1")), Ok(()));
        // IPv4-mapped is the IPv4 address.
        assert_eq!(l.check(Limit::Acs, ip("192.0.2.1")), Ok(()));
        assert!(l.check(Limit::Acs, ip("::ffff:192.0.2.1")).is_err());
        assert_eq!(
            client_key(ip("2001:db8:1:2:3:4:5:6")).addr,
            ip("2001:db8:1:2::")
        );
        assert_eq!(client_key(ip("::ffff:192.0.2.1")).addr, ip("192.0.2.1"));
    }

    fn key(addr: &str, prefix: u8) -> ClientKey {
        ClientKey {
            addr: ip(addr),
            prefix,
        }
    }

    #[test]
    fn tracking_key_aggregates_new_ipv6_clients_under_pressure() {
        let none = |_: &ClientKey| false;
        let c = ip("2001:db8:1:2:3:4:5:6");
        // Room: the /64. Half full: the /48. Three quarters: the /32.
        assert_eq!(tracking_key(c, || 49, 100, none), key("2001:db8:1:2::", 64));
        assert_eq!(tracking_key(c, || 50, 100, none), key("2001:db8:1::", 48));
        assert_eq!(tracking_key(c, || 75, 100, none), key("2001:db8::", 32));
        // IPv4 never aggregates.
        assert_eq!(
            tracking_key(
                ip("192.0.2.7"),
                || unreachable!("IPv4 needs no count"),
                100,
                none
            ),
            key("192.0.2.7", 32)
        );
        // A known own key is kept under pressure; an existing aggregate is joined even
        // without pressure (a rotating client cannot get a fresh budget when it eases).
        let own = key("2001:db8:1:2::", 64);
        let no_count = || -> usize { unreachable!("a known key needs no count") };
        assert_eq!(tracking_key(c, no_count, 100, |k| *k == own), own);
        let agg = key("2001:db8:1::", 48);
        assert_eq!(tracking_key(c, || 0, 100, |k| *k == agg), agg);
        let wide = key("2001:db8::", 32);
        assert_eq!(
            tracking_key(c, || 0, 100, |k| *k == wide || *k == agg),
            wide
        );
        // The /48 aggregate is not the /64 that starts at the same address.
        assert_ne!(
            tracking_key(ip("2001:db8:1::1"), || 0, 100, none),
            tracking_key(ip("2001:db8:1::1"), || 50, 100, none)
        );
    }

    #[test]
    fn rotating_through_slash_64s_fills_one_entry_once_the_table_is_half_full() {
        // Table of 8, burst 1: four distinct /64s fill half of it; from then on every new /64
        // of 2001:db8:1::/48 shares one budget, and other clients still get in.
        let (l, _clock) = limits(&section(60, 1, 8));
        for i in 0..4 {
            assert_eq!(
                l.check(Limit::Acs, ip(&format!("2001:db8:9:{i}::1"))),
                Ok(())
            );
        }
        assert_eq!(l.tracked(), 4);
        assert_eq!(l.check(Limit::Acs, ip("2001:db8:1:100::1")), Ok(()));
        for i in 101..200 {
            assert!(
                l.check(Limit::Acs, ip(&format!("2001:db8:1:{i:x}::1")))
                    .is_err(),
                "/64 number {i} of the same /48 shares the spent budget"
            );
        }
        assert_eq!(l.tracked(), 5, "one entry for the whole /48");
        assert_eq!(l.check(Limit::Acs, ip("192.0.2.1")), Ok(()));
        assert_eq!(l.check(Limit::Acs, ip("2001:db8:2::1")), Ok(()));
    }

    #[test]
    fn retain_recent_drops_only_idle_keys() {
        // One unit every 10 s. governor drops a key once its theoretical arrival time (10 s
        // after the unit was spent) is one more interval in the past.
        let (l, clock) = limits(&section(6, 2, 100));
        l.check(Limit::SignIn, ip("192.0.2.1")).unwrap(); // TAT 10 s
        clock.advance(Duration::from_secs(15));
        l.check(Limit::SignIn, ip("192.0.2.2")).unwrap(); // TAT 25 s
        assert_eq!(l.tracked(), 2);
        clock.advance(Duration::from_secs(5)); // 20 s
        l.retain_recent();
        assert_eq!(l.tracked(), 1);
        clock.advance(Duration::from_secs(10)); // 30 s: the second is still recent
        l.retain_recent();
        assert_eq!(l.tracked(), 1);
        clock.advance(Duration::from_secs(5)); // 35 s
        l.retain_recent();
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn full_table_refuses_new_clients_but_not_known_ones() {
        // One unit every 10 s, burst 5, room for 2 keys over all limits.
        let (l, clock) = limits(&section(6, 5, 2));
        let (a, b, c) = (ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.3"));
        l.check(Limit::SignIn, a).unwrap();
        l.check(Limit::SignIn, b).unwrap();
        assert_eq!(l.tracked(), 2);
        // Full, nothing idle: the newcomer waits a full refill plus one interval.
        assert_eq!(l.check(Limit::SignIn, c), Err(Duration::from_secs(60)));
        assert_eq!(l.tracked(), 2, "a refused client is not tracked");
        // A known client keeps its budget in this limit (TAT now 20 s)...
        assert_eq!(l.check(Limit::SignIn, a), Ok(()));
        // ...but is new to another limit, and the total is what counts.
        assert!(l.check(Limit::Acs, a).is_err());
        // At 20 s b is idle (TAT 10 s), a is not: the cleanup frees exactly one slot.
        clock.advance(Duration::from_secs(20));
        assert_eq!(l.check(Limit::SignIn, c), Ok(()));
        assert_eq!(l.tracked(), 2);
        assert!(
            l.check(Limit::SignIn, b).is_err(),
            "b was dropped; no room again"
        );
        assert_eq!(l.check(Limit::SignIn, a), Ok(()));
    }

    #[test]
    fn capacity_cleanup_runs_at_most_once_a_second() {
        // One unit every 100 ms, burst 1, room for one key.
        let (l, clock) = limits(&section(600, 1, 1));
        let (a, b, c) = (ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.3"));
        clock.advance(Duration::from_millis(100));
        l.check(Limit::SignIn, a).unwrap(); // TAT 200 ms
        assert!(l.check(Limit::SignIn, b).is_err()); // cleanup at 100 ms; a is recent
        clock.advance(Duration::from_millis(400)); // 500 ms: a is idle now...
        assert!(
            l.check(Limit::SignIn, b).is_err(),
            "...but the last capacity cleanup was 400 ms ago"
        );
        assert_eq!(l.tracked(), 1);
        l.retain_recent(); // the periodic cleanup is not throttled
        assert_eq!(l.tracked(), 0);
        assert_eq!(l.check(Limit::SignIn, b), Ok(())); // TAT 600 ms
        assert!(l.check(Limit::SignIn, c).is_err()); // 500 ms: not due
        clock.advance(Duration::from_millis(700)); // 1.2 s: due again, b is idle
        assert_eq!(l.check(Limit::SignIn, c), Ok(()));
        assert_eq!(l.tracked(), 1);
    }

    #[test]
    fn disabled_always_passes() {
        let s = RateLimitSection {
            enabled: false,
            sign_in_per_minute: 0,
            ..RateLimitSection::default()
        };
        let l = RateLimits::new(&s).unwrap();
        for _ in 0..1000 {
            assert_eq!(l.check(Limit::SignIn, ip("192.0.2.1")), Ok(()));
        }
        assert_eq!(l.tracked(), 0);
        l.retain_recent();
    }

    #[test]
    fn zeros_are_refused_when_enabled() {
        for field in [
            "sign_in_per_minute",
            "sign_in_burst",
            "acs_per_minute",
            "acs_burst",
            "auth_failures_per_minute",
            "auth_failures_burst",
            "max_tracked_clients",
        ] {
            let text = format!("{field} = 0");
            let s: RateLimitSection = toml::from_str(&text).unwrap();
            let e = RateLimits::new(&s).unwrap_err();
            assert_eq!(e.key, format!("rate_limits.{field}"));
        }
        assert!(RateLimits::new(&RateLimitSection::default()).is_ok());
        assert!(toml::from_str::<RateLimitSection>("sign_in_per_minute = -1").is_err());
        assert!(toml::from_str::<RateLimitSection>("per_minute = 1").is_err());
    }

    #[test]
    fn defaults_and_names() {
        let d = RateLimitSection::default();
        assert!(d.enabled);
        assert_eq!((d.sign_in_per_minute, d.sign_in_burst), (30, 10));
        assert_eq!((d.acs_per_minute, d.acs_burst), (30, 10));
        assert_eq!(
            (d.auth_failures_per_minute, d.auth_failures_burst),
            (120, 30)
        );
        assert_eq!(d.max_tracked_clients, 100_000);
        assert_eq!(Limit::SignIn.as_str(), "sign_in");
        assert_eq!(Limit::Acs.as_str(), "acs");
        assert_eq!(Limit::AuthFailure.as_str(), "auth_failure");
    }

    #[tokio::test]
    async fn cleanup_task_runs_and_ends_with_the_limits() {
        let clock = FakeRelativeClock::default();
        let l = Arc::new(RateLimits::with_clock(&section(60, 1, 100), clock.clone()).unwrap());
        l.check(Limit::SignIn, ip("192.0.2.1")).unwrap();
        clock.advance(Duration::from_secs(2)); // the key is idle on the limiter's clock
        let task = l.spawn_cleanup_every(Duration::from_millis(10));
        let dropped = tokio::time::timeout(Duration::from_secs(10), async {
            while l.tracked() != 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(dropped.is_ok(), "the periodic cleanup dropped the idle key");
        drop(l);
        let ended = tokio::time::timeout(Duration::from_secs(10), task).await;
        assert!(
            matches!(ended, Ok(Ok(()))),
            "the task ends once the limits are gone"
        );
    }
}
