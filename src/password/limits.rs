//! Brakes on password guessing: a GCRA budget (governor) per client address and one per user
//! name, spent by every check that reaches a source (cache hits are free), and a lockout of a
//! user name after `lockout_failures` failures within `lockout_window_secs`. The lockout
//! counts names, not accounts: an unknown name locks exactly as a known one does, so the
//! lockout itself tells nothing about who exists. [`next_lock_state`] is the pure decision
//! (clock passed in); [`Limits`] holds the bounded tables.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use moka::sync::Cache;

use super::settings::PasswordSigninSection;
use crate::ratelimit::{client_key, ClientKey};

/// One user name's recent failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockState {
    /// Failures counted since `window_start`.
    pub failures: u32,
    pub window_start: Instant,
    /// Locked until then, when set.
    pub locked_until: Option<Instant>,
}

/// The lockout's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockPolicy {
    pub failures: u32,
    pub window: Duration,
    pub lockout: Duration,
}

/// The state after one more failure at `now`: a window that has passed starts over; the
/// `failures`-th failure inside one locks the name for `lockout` (and starts a new window).
pub fn next_lock_state(old: Option<LockState>, now: Instant, policy: LockPolicy) -> LockState {
    let fresh = LockState {
        failures: 0,
        window_start: now,
        locked_until: None,
    };
    let mut state = match old {
        Some(s) if now.saturating_duration_since(s.window_start) < policy.window => s,
        Some(s) => LockState {
            locked_until: s.locked_until.filter(|until| *until > now),
            ..fresh
        },
        None => fresh,
    };
    state.failures = state.failures.saturating_add(1);
    if state.failures >= policy.failures {
        state.locked_until = Some(now + policy.lockout);
        state.failures = 0;
        state.window_start = now;
    }
    state
}

/// Whether `state` keeps the name locked at `now`.
pub fn is_locked(state: Option<&LockState>, now: Instant) -> bool {
    state
        .and_then(|s| s.locked_until)
        .is_some_and(|until| until > now)
}

/// Why a check was not even tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Brake {
    /// The client address spent its budget; wait this long.
    Client(Duration),
    /// The user name spent its budget; wait this long.
    User(Duration),
    /// The user name is locked out after repeated failures.
    LockedOut,
}

impl Brake {
    pub fn reason(self) -> &'static str {
        match self {
            Brake::Client(_) => "client_rate_limited",
            Brake::User(_) => "user_rate_limited",
            Brake::LockedOut => "locked_out",
        }
    }

    /// For `Retry-After`.
    pub fn retry_after(self, lockout: Duration) -> Duration {
        match self {
            Brake::Client(d) | Brake::User(d) => d,
            Brake::LockedOut => lockout,
        }
    }
}

pub struct Limits {
    clients: DefaultKeyedRateLimiter<ClientKey>,
    users: DefaultKeyedRateLimiter<String>,
    locks: Cache<String, LockState>,
    policy: LockPolicy,
    max_tracked: usize,
    clock: DefaultClock,
}

/// User names are compared case-insensitively here (directories usually are), so `Alice`
/// and `alice` share one budget and one lockout.
pub fn user_key(user: &str) -> String {
    user.to_lowercase()
}

fn quota(per_minute: u32, burst: u32) -> Quota {
    let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::per_minute(per_minute).allow_burst(burst)
}

impl Limits {
    pub fn new(s: &PasswordSigninSection) -> Limits {
        let policy = LockPolicy {
            failures: s.lockout_failures.max(1),
            window: Duration::from_secs(s.lockout_window_secs),
            lockout: Duration::from_secs(s.lockout_secs),
        };
        Limits {
            clients: RateLimiter::keyed(quota(
                s.client_attempts_per_minute,
                s.client_attempts_burst,
            )),
            users: RateLimiter::keyed(quota(s.user_attempts_per_minute, s.user_attempts_burst)),
            locks: Cache::builder()
                .max_capacity(s.max_tracked)
                .time_to_idle(policy.window.max(policy.lockout))
                .build(),
            policy,
            max_tracked: usize::try_from(s.max_tracked).unwrap_or(usize::MAX),
            clock: DefaultClock::default(),
        }
    }

    pub fn policy(&self) -> LockPolicy {
        self.policy
    }

    /// Spends one check for `client` and `user`, unless the name is locked out (checked first,
    /// so a locked name spends nothing).
    pub fn admit(&self, client: IpAddr, user: &str, now: Instant) -> Result<(), Brake> {
        let user = user_key(user);
        if is_locked(self.locks.get(&user).as_ref(), now) {
            return Err(Brake::LockedOut);
        }
        self.keep_bounded();
        let wait = |nu: governor::NotUntil<_>| nu.wait_time_from(self.clock.now());
        self.clients
            .check_key(&client_key(client))
            .map_err(|nu| Brake::Client(wait(nu)))?;
        self.users
            .check_key(&user)
            .map_err(|nu| Brake::User(wait(nu)))?;
        Ok(())
    }

    /// Counts a failed check of `user`.
    pub fn failed(&self, user: &str, now: Instant) {
        let policy = self.policy;
        self.locks
            .entry(user_key(user))
            .and_upsert_with(|old| next_lock_state(old.map(|e| e.into_value()), now, policy));
    }

    /// Whether `user` is locked out at `now`.
    pub fn locked(&self, user: &str, now: Instant) -> bool {
        is_locked(self.locks.get(&user_key(user)).as_ref(), now)
    }

    /// The governor tables grow with every new key: past `max_tracked`, keys whose budget is
    /// full again are dropped (they are indistinguishable from new ones).
    fn keep_bounded(&self) {
        if self.clients.len() + self.users.len() > self.max_tracked {
            self.clients.retain_recent();
            self.users.retain_recent();
        }
    }

    /// Periodic cleanup (housekeeping).
    pub fn retain_recent(&self) {
        self.clients.retain_recent();
        self.users.retain_recent();
        self.clients.shrink_to_fit();
        self.users.shrink_to_fit();
        self.locks.run_pending_tasks();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: LockPolicy = LockPolicy {
        failures: 3,
        window: Duration::from_secs(60),
        lockout: Duration::from_secs(300),
    };

    #[test]
    fn failures_inside_a_window_lock_and_old_ones_expire() {
        let t0 = Instant::now();
        let s = |secs| t0 + Duration::from_secs(secs);
        // (seconds after t0 of each failure, locked right after it?)
        let table: &[(&[u64], bool)] = &[
            (&[0], false),
            (&[0, 1], false),
            (&[0, 1, 2], true),
            (&[0, 30, 59], true),
            (&[0, 30, 61], false), // the window restarted at 61
            (&[0, 61, 62, 63], true),
        ];
        for (times, want) in table {
            let mut state = None;
            for &t in *times {
                state = Some(next_lock_state(state, s(t), POLICY));
            }
            let last = s(*times.last().unwrap());
            assert_eq!(is_locked(state.as_ref(), last), *want, "{times:?}");
        }
    }

    #[test]
    fn a_lockout_ends_after_its_time() {
        let t0 = Instant::now();
        let mut state = None;
        for _ in 0..3 {
            state = Some(next_lock_state(state, t0, POLICY));
        }
        assert!(is_locked(state.as_ref(), t0 + Duration::from_secs(299)));
        assert!(!is_locked(state.as_ref(), t0 + Duration::from_secs(300)));
        // One more failure after the window keeps the lock it still had, no longer.
        let later = t0 + Duration::from_secs(100);
        let after = next_lock_state(state, later, POLICY);
        assert_eq!(after.locked_until, Some(t0 + Duration::from_secs(300)));
    }

    #[test]
    fn limits_brake_per_client_per_user_and_by_lockout() {
        let section = PasswordSigninSection {
            client_attempts_per_minute: 1,
            client_attempts_burst: 3,
            user_attempts_per_minute: 1,
            user_attempts_burst: 2,
            lockout_failures: 2,
            ..Default::default()
        };
        let limits = Limits::new(&section);
        let now = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(limits.admit(a, "alice", now), Ok(()));
        assert_eq!(limits.admit(a, "ALICE", now), Ok(()));
        // alice's budget (2) is spent, whatever the case or the client.
        assert!(matches!(limits.admit(b, "Alice", now), Err(Brake::User(_))));
        assert_eq!(limits.admit(a, "bob", now), Ok(()));
        // client a's budget (3) is spent.
        assert!(matches!(
            limits.admit(a, "carol", now),
            Err(Brake::Client(_))
        ));
        limits.failed("dave", now);
        limits.failed("DAVE", now);
        assert!(limits.locked("dave", now));
        assert_eq!(limits.admit(b, "dave", now), Err(Brake::LockedOut));
    }
}
