//! Throttled logging of refusals, so that no flood can fill a disk. A refusal's log line (an
//! audit event such as `rate_limited`, or the access line of a request samlgate answered
//! itself with a 4xx) is written the first time a client earns it in an interval
//! ([`INTERVAL`]); further ones from the same client, of the same kind, in the same interval
//! are only counted, and one summary line (`suppressed=N`) reports them when the interval is
//! over. The table is capped ([`MAX_TRACKED`]): when it is full, new clients share one
//! "other clients" entry per kind instead of growing it. The decision ([`Table::decide`],
//! [`Table::sweep`]) is pure, with the clock passed in; [`LogThrottle`] wraps it in a mutex
//! and writes the summary lines.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::ratelimit::{client_key, ClientKey};

/// How long one client's repeated refusals of one kind are summarised together.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Entries (client × kind) tracked at once; about 100 bytes each.
pub const MAX_TRACKED: usize = 8192;

/// Marks a response the upstream gave (in its extensions): a 4xx there is the application's
/// answer, not a refusal of samlgate's, and keeps its own access line.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamAnswer;

/// Which line is throttled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A `samlgate::audit` event, with a fixed discriminator (the limit, the reason) so that
    /// a refusal of another kind is still logged the first time.
    Audit {
        event: &'static str,
        reason: &'static str,
    },
    /// The `samlgate::access` line of a request samlgate refused itself, by status.
    Access { status: u16 },
}

/// Whose refusals: a client (IPv6 by /64, as the rate limits count) or, when the table is
/// full, every client not yet in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Who {
    Client(ClientKey),
    OtherClients,
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Who::Client(k) if k.addr.is_ipv6() && k.prefix < 128 => {
                write!(f, "{}/{}", k.addr, k.prefix)
            }
            Who::Client(k) => write!(f, "{}", k.addr),
            Who::OtherClients => f.write_str("other"),
        }
    }
}

/// What to do with one occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Write the line.
    Log,
    /// Write the summary of the interval that just ended, then the line.
    LogAfterSummary(Summary),
    /// Count it; the summary reports it.
    Suppress,
}

/// Occurrences not written during one interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub who: Who,
    pub kind: Kind,
    pub suppressed: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    since: Instant,
    suppressed: u64,
}

/// The pure part: entries keyed by who and kind, at most `max` of them.
#[derive(Debug)]
pub struct Table {
    entries: HashMap<(Who, Kind), Entry>,
    interval: Duration,
    max: usize,
}

impl Table {
    pub fn new(interval: Duration, max: usize) -> Table {
        Table {
            entries: HashMap::new(),
            interval,
            max,
        }
    }

    /// One occurrence of `kind` from `client` at `now`.
    pub fn decide(&mut self, client: IpAddr, kind: Kind, now: Instant) -> Verdict {
        let mut who = Who::Client(client_key(client));
        if !self.entries.contains_key(&(who, kind)) && self.entries.len() >= self.max {
            who = Who::OtherClients;
        }
        let Some(entry) = self.entries.get_mut(&(who, kind)) else {
            // A new entry: the client's own while there is room, else the shared "other
            // clients" one (one per kind: the table stays within `max` plus a few kinds).
            self.entries.insert(
                (who, kind),
                Entry {
                    since: now,
                    suppressed: 0,
                },
            );
            return Verdict::Log;
        };
        if now.saturating_duration_since(entry.since) < self.interval {
            entry.suppressed += 1;
            return Verdict::Suppress;
        }
        let suppressed = std::mem::replace(
            entry,
            Entry {
                since: now,
                suppressed: 0,
            },
        )
        .suppressed;
        if suppressed == 0 {
            Verdict::Log
        } else {
            Verdict::LogAfterSummary(Summary {
                who,
                kind,
                suppressed,
            })
        }
    }

    /// Ends every interval that is over at `now`: returns their summaries (those that
    /// suppressed anything) and forgets the entries, so an idle client costs nothing.
    pub fn sweep(&mut self, now: Instant) -> Vec<Summary> {
        let mut summaries = Vec::new();
        self.entries.retain(|&(who, kind), e| {
            if now.saturating_duration_since(e.since) < self.interval {
                return true;
            }
            if e.suppressed > 0 {
                summaries.push(Summary {
                    who,
                    kind,
                    suppressed: e.suppressed,
                });
            }
            false
        });
        summaries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The gateway's throttle: [`Table`] behind a mutex, writing the summary lines.
#[derive(Debug)]
pub struct LogThrottle {
    table: Mutex<Table>,
}

impl Default for LogThrottle {
    fn default() -> Self {
        LogThrottle {
            table: Mutex::new(Table::new(INTERVAL, MAX_TRACKED)),
        }
    }
}

impl LogThrottle {
    /// Whether this occurrence's line is to be written. Writes the previous interval's
    /// summary first when one is due.
    pub fn admit(&self, client: IpAddr, kind: Kind) -> bool {
        let verdict = self
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .decide(client, kind, Instant::now());
        match verdict {
            Verdict::Log => true,
            Verdict::LogAfterSummary(s) => {
                write_summary(&s);
                true
            }
            Verdict::Suppress => false,
        }
    }

    /// [`LogThrottle::admit`] for an audit event.
    pub fn audit(&self, client: IpAddr, event: &'static str, reason: &'static str) -> bool {
        self.admit(client, Kind::Audit { event, reason })
    }

    /// Writes the summaries of every interval over at `now` (called every [`INTERVAL`]).
    pub fn flush(&self, now: Instant) {
        let summaries = self
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sweep(now);
        for s in &summaries {
            write_summary(s);
        }
    }

    /// Entries tracked (for tests).
    pub fn tracked(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

const SUMMARY: &str = "repeated refusals not logged one by one";

fn write_summary(s: &Summary) {
    let interval_secs = INTERVAL.as_secs();
    match s.kind {
        Kind::Audit { event, reason } => {
            tracing::warn!(target: "samlgate::audit", event, reason, client = %s.who, suppressed = s.suppressed, interval_secs, "{SUMMARY}")
        }
        Kind::Access { status } => {
            tracing::info!(target: "samlgate::access", status, client = %s.who, suppressed = s.suppressed, interval_secs, "{SUMMARY}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Kind = Kind::Audit {
        event: "rate_limited",
        reason: "sign_in",
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn table() -> Table {
        Table::new(Duration::from_secs(10), 4)
    }

    #[test]
    fn first_occurrence_logged_then_counted_then_summarised() {
        let mut t = table();
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        assert_eq!(t.decide(a, RATE, t0), Verdict::Log);
        for i in 1..=5 {
            assert_eq!(
                t.decide(a, RATE, t0 + Duration::from_secs(i)),
                Verdict::Suppress
            );
        }
        // The next interval's first occurrence is logged after the summary of the last one.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(
            t.decide(a, RATE, later),
            Verdict::LogAfterSummary(Summary {
                who: Who::Client(client_key(a)),
                kind: RATE,
                suppressed: 5
            })
        );
        // Nothing suppressed in an interval: no summary.
        assert_eq!(
            t.decide(a, RATE, later + Duration::from_secs(10)),
            Verdict::Log
        );
    }

    #[test]
    fn clients_kinds_and_reasons_are_counted_apart() {
        let mut t = Table::new(Duration::from_secs(10), 100);
        let now = Instant::now();
        let other_reason = Kind::Audit {
            event: "rate_limited",
            reason: "acs",
        };
        let access = Kind::Access { status: 429 };
        for kind in [RATE, other_reason, access] {
            for client in ["192.0.2.1", "192.0.2.2", "2001:db8::1"] {
                assert_eq!(t.decide(ip(client), kind, now), Verdict::Log);
            }
        }
        // The same /64 is the same client, as for the rate limits.
        assert_eq!(t.decide(ip("2001:db8::2"), RATE, now), Verdict::Suppress);
        assert_eq!(t.decide(ip("2001:db8:0:1::1"), RATE, now), Verdict::Log);
        assert_eq!(t.len(), 10);
    }

    #[test]
    fn sweep_reports_ended_intervals_and_forgets_them() {
        let mut t = table();
        let t0 = Instant::now();
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        t.decide(a, RATE, t0);
        t.decide(a, RATE, t0);
        t.decide(a, RATE, t0);
        t.decide(b, RATE, t0 + Duration::from_secs(5));
        assert_eq!(t.sweep(t0 + Duration::from_secs(9)), vec![]);
        let swept = t.sweep(t0 + Duration::from_secs(10));
        assert_eq!(
            swept,
            vec![Summary {
                who: Who::Client(client_key(a)),
                kind: RATE,
                suppressed: 2
            }]
        );
        assert_eq!(t.len(), 1, "b's interval is still running");
        assert!(
            t.sweep(t0 + Duration::from_secs(15)).is_empty(),
            "b had nothing suppressed"
        );
        assert!(t.is_empty());
        // After a sweep a client starts afresh: its next refusal is logged.
        assert_eq!(
            t.decide(a, RATE, t0 + Duration::from_secs(16)),
            Verdict::Log
        );
    }

    #[test]
    fn a_full_table_aggregates_new_clients_instead_of_growing() {
        let mut t = table();
        let now = Instant::now();
        for i in 1..=4 {
            assert_eq!(
                t.decide(ip(&format!("192.0.2.{i}")), RATE, now),
                Verdict::Log
            );
        }
        // Full: the first newcomer's line is written (as "other"), then newcomers are counted.
        assert_eq!(t.decide(ip("198.51.100.1"), RATE, now), Verdict::Log);
        for i in 2..=200 {
            assert_eq!(
                t.decide(ip(&format!("198.51.100.{}", i % 250)), RATE, now),
                Verdict::Suppress
            );
        }
        assert_eq!(t.len(), 5, "four clients and one 'other clients' entry");
        // Clients already tracked keep their own entries.
        assert_eq!(t.decide(ip("192.0.2.1"), RATE, now), Verdict::Suppress);
        let summaries = t.sweep(now + Duration::from_secs(10));
        assert!(summaries.contains(&Summary {
            who: Who::OtherClients,
            kind: RATE,
            suppressed: 199
        }));
        assert_eq!(Who::OtherClients.to_string(), "other");
    }

    #[test]
    fn who_is_shown_as_the_address_or_the_network() {
        assert_eq!(
            Who::Client(client_key(ip("192.0.2.7"))).to_string(),
            "192.0.2.7"
        );
        assert_eq!(
            Who::Client(client_key(ip("2001:db8::7"))).to_string(),
            "2001:db8::/64"
        );
    }

    #[test]
    fn a_clock_going_backwards_suppresses_rather_than_panicking() {
        let mut t = table();
        let t0 = Instant::now() + Duration::from_secs(100);
        let a = ip("192.0.2.1");
        t.decide(a, RATE, t0);
        assert_eq!(
            t.decide(a, RATE, t0 - Duration::from_secs(50)),
            Verdict::Suppress
        );
        assert!(t.sweep(t0 - Duration::from_secs(50)).is_empty());
    }
}
