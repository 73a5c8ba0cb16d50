//! Prometheus metrics: the series samlgate exports, their bounded label sets, and the
//! OpenMetrics text rendering served by [`crate::admin`]. Every label value is a `'static`
//! string chosen by the code (an enum or a known code), never request input, so the number of
//! series is fixed by the program. The per-request path ([`Metrics::request`]) touches only
//! pre-resolved handles: after a series' first use, recording costs a few atomic operations and
//! no map lookup, lock on the family, or allocation.

use std::fmt;
use std::sync::{OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::proxy::ProxyError;
use crate::saml::error::LoginError;

/// What [`Metrics::render`] produces (prometheus-client writes OpenMetrics text).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the request-latency histogram: 100 µs to 10 s.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Which part of the gateway answered a request (the `route` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    Healthz,
    Readyz,
    Login,
    Acs,
    Metadata,
    Logout,
    Slo,
    /// Forward-auth checks (`/saml/auth`).
    ForwardAuth,
    /// Under the gateway's path prefix but not one of its endpoints (404).
    GatewayOther,
    /// Everything forwarded upstream, including the sign-in challenge (302 / 401).
    Protected,
}

impl RouteClass {
    pub const ALL: [RouteClass; 10] = [
        RouteClass::Healthz,
        RouteClass::Readyz,
        RouteClass::Login,
        RouteClass::Acs,
        RouteClass::Metadata,
        RouteClass::Logout,
        RouteClass::Slo,
        RouteClass::ForwardAuth,
        RouteClass::GatewayOther,
        RouteClass::Protected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Healthz => "healthz",
            RouteClass::Readyz => "readyz",
            RouteClass::Login => "login",
            RouteClass::Acs => "acs",
            RouteClass::Metadata => "metadata",
            RouteClass::Logout => "logout",
            RouteClass::Slo => "slo",
            RouteClass::ForwardAuth => "forward_auth",
            RouteClass::GatewayOther => "gateway_other",
            RouteClass::Protected => "protected",
        }
    }
}

/// Why a request to the upstream failed (the `kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// No connection (refused, DNS, TLS handshake).
    Connect,
    /// No response head within `proxy.upstream_timeout_secs`.
    Timeout,
    /// The connection failed during the exchange.
    Other,
    /// Not sent: `proxy.max_pooled_requests` were in flight already (503).
    Busy,
}

impl UpstreamErrorKind {
    pub const ALL: [UpstreamErrorKind; 4] = [
        UpstreamErrorKind::Connect,
        UpstreamErrorKind::Timeout,
        UpstreamErrorKind::Other,
        UpstreamErrorKind::Busy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamErrorKind::Connect => "connect",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Other => "other",
            UpstreamErrorKind::Busy => "busy",
        }
    }

    /// The kind of a forwarding failure; `None` when the upstream was never involved (a
    /// request URI that cannot be rewritten is the client's 400, not an upstream fault).
    pub fn of(e: &ProxyError) -> Option<UpstreamErrorKind> {
        match e {
            ProxyError::Unreachable(_) => Some(UpstreamErrorKind::Connect),
            ProxyError::Timeout(_) => Some(UpstreamErrorKind::Timeout),
            ProxyError::Failed(_) => Some(UpstreamErrorKind::Other),
            ProxyError::Busy(_) => Some(UpstreamErrorKind::Busy),
            ProxyError::BadRequest(_) => None,
        }
    }
}

/// The answer to a forward-auth check (the `result` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardAuthResult {
    Allowed,
    Unauthenticated,
    Denied,
    Anonymous,
}

impl ForwardAuthResult {
    pub const ALL: [ForwardAuthResult; 4] = [
        ForwardAuthResult::Allowed,
        ForwardAuthResult::Unauthenticated,
        ForwardAuthResult::Denied,
        ForwardAuthResult::Anonymous,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ForwardAuthResult::Allowed => "allowed",
            ForwardAuthResult::Unauthenticated => "unauthenticated",
            ForwardAuthResult::Denied => "denied",
            ForwardAuthResult::Anonymous => "anonymous",
        }
    }
}

/// Status codes reported exactly; any other code is reported as its class (`2xx` … `5xx`),
/// and a code outside 100–599 as `other`. (`status=~"5.."` matches both `503` and `5xx`.)
const EXACT_STATUS: [(u16, &str); 26] = [
    (101, "101"),
    (200, "200"),
    (201, "201"),
    (202, "202"),
    (204, "204"),
    (206, "206"),
    (301, "301"),
    (302, "302"),
    (303, "303"),
    (304, "304"),
    (307, "307"),
    (308, "308"),
    (400, "400"),
    (401, "401"),
    (403, "403"),
    (404, "404"),
    (405, "405"),
    (408, "408"),
    (413, "413"),
    (429, "429"),
    (431, "431"),
    (500, "500"),
    (501, "501"),
    (502, "502"),
    (503, "503"),
    (504, "504"),
];
const CLASS_STATUS: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const OTHER_STATUS: usize = EXACT_STATUS.len() + CLASS_STATUS.len();
const STATUS_SLOTS: usize = OTHER_STATUS + 1;

/// Slot of every code below 600 (built at compile time; one indexed load per request).
const SLOT_OF_CODE: [u8; 600] = slot_table();

const fn slot_table() -> [u8; 600] {
    let mut t = [OTHER_STATUS as u8; 600];
    let mut code = 100;
    while code < 600 {
        t[code] = (EXACT_STATUS.len() + code / 100 - 1) as u8;
        code += 1;
    }
    let mut i = 0;
    while i < EXACT_STATUS.len() {
        t[EXACT_STATUS[i].0 as usize] = i as u8;
        i += 1;
    }
    t
}

fn status_slot(code: u16) -> usize {
    SLOT_OF_CODE
        .get(code as usize)
        .map_or(OTHER_STATUS, |s| *s as usize)
}

fn status_label(slot: usize) -> &'static str {
    if slot < EXACT_STATUS.len() {
        EXACT_STATUS[slot].1
    } else if slot < OTHER_STATUS {
        CLASS_STATUS[slot - EXACT_STATUS.len()]
    } else {
        "other"
    }
}

/// Live sizes read at scrape time (implemented by the gateway). `None`: this process cannot
/// count it (kept in a shared backend), and the series is left out rather than read 0.
pub trait LiveCounts: Send + Sync {
    fn sessions_active(&self) -> u64;
    fn replay_cache_entries(&self) -> Option<u64>;
    fn pending_logins(&self) -> Option<u64>;
}

/// Reads [`LiveCounts`] on each scrape; writes nothing until a source is attached, and
/// nothing once the source is gone.
#[derive(Default)]
struct LiveGauges {
    source: OnceLock<Weak<dyn LiveCounts>>,
}

impl fmt::Debug for LiveGauges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveGauges")
            .field("attached", &self.source.get().is_some())
            .finish()
    }
}

impl Collector for LiveGauges {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let Some(source) = self.source.get().and_then(Weak::upgrade) else {
            return Ok(());
        };
        let gauges: [(&str, &str, Option<u64>); 3] = [
            (
                "samlgate_sessions_active",
                "Signed-in sessions held (approximate).",
                Some(source.sessions_active()),
            ),
            (
                "samlgate_replay_cache_entries",
                "Assertion and logout-message ids remembered against replay.",
                source.replay_cache_entries(),
            ),
            (
                "samlgate_pending_logins",
                "Sign-ins started and not yet completed or expired.",
                source.pending_logins(),
            ),
        ];
        for (name, help, value) in gauges {
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

type Labels<const N: usize> = [(&'static str, &'static str); N];
type HistogramFamily = Family<Labels<1>, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Handles of one route's series, resolved from their families on first use.
struct RouteSeries {
    requests: [OnceLock<Counter>; STATUS_SLOTS],
    duration: OnceLock<Histogram>,
}

/// All of samlgate's metrics. Shared as `Arc<Metrics>`; every method takes `&self`.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<Labels<2>, Counter>,
    http_duration: HistogramFamily,
    routes: [RouteSeries; RouteClass::ALL.len()],
    upstream_errors: [Counter; UpstreamErrorKind::ALL.len()],
    sign_ins: Family<Labels<2>, Counter>,
    sign_in_success: Counter,
    rate_limited: Family<Labels<1>, Counter>,
    forward_auth_family: Family<Labels<1>, Counter>,
    forward_auth: [OnceLock<Counter>; ForwardAuthResult::ALL.len()],
    sign_outs: Counter,
    live: std::sync::Arc<LiveGauges>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::with_state_backend(None)
    }

    /// [`Metrics::new`] plus the shared state backend's series when it is Redis.
    pub fn with_state_backend(redis: Option<&crate::state::redis::Shared>) -> Metrics {
        let mut registry = Registry::default();
        if let Some(r) = redis {
            r.register_metrics(&mut registry);
        }

        let http_requests = Family::<Labels<2>, Counter>::default();
        registry.register(
            "samlgate_http_requests",
            "HTTP requests answered, by route class and status code",
            http_requests.clone(),
        );
        let http_duration: HistogramFamily =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "samlgate_http_request_duration",
            "Time from request head to response head, by route class",
            Unit::Seconds,
            http_duration.clone(),
        );

        let upstream_family = Family::<Labels<1>, Counter>::default();
        registry.register(
            "samlgate_upstream_errors",
            "Forwarded requests that got no response from the upstream, by kind",
            upstream_family.clone(),
        );
        let upstream_errors = UpstreamErrorKind::ALL
            .map(|k| upstream_family.get_or_create_owned(&[("kind", k.as_str())]));

        let sign_ins = Family::<Labels<2>, Counter>::default();
        registry.register(
            "samlgate_sign_ins",
            "Responses posted to the ACS, by outcome and failure reason",
            sign_ins.clone(),
        );
        let sign_in_success =
            sign_ins.get_or_create_owned(&[("outcome", "success"), ("reason", "none")]);

        let rate_limited = Family::<Labels<1>, Counter>::default();
        registry.register(
            "samlgate_rate_limited",
            "Requests refused by a rate limit, by limit",
            rate_limited.clone(),
        );

        let forward_auth_family = Family::<Labels<1>, Counter>::default();
        registry.register(
            "samlgate_forward_auth",
            "Forward-auth checks answered, by result",
            forward_auth_family.clone(),
        );

        let sign_outs = Counter::default();
        registry.register(
            "samlgate_sign_outs",
            "Sessions ended by the sign-out endpoint",
            sign_outs.clone(),
        );

        let live = std::sync::Arc::new(LiveGauges::default());
        registry.register_collector(Box::new(live.clone()));

        registry.register(
            "samlgate_build",
            "samlgate build information",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        let start = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        start.set(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        registry.register_with_unit(
            "process_start_time",
            "Start time of the gateway since the Unix epoch",
            Unit::Seconds,
            start,
        );

        Metrics {
            registry,
            http_requests,
            http_duration,
            routes: std::array::from_fn(|_| RouteSeries {
                requests: std::array::from_fn(|_| OnceLock::new()),
                duration: OnceLock::new(),
            }),
            upstream_errors,
            sign_ins,
            sign_in_success,
            rate_limited,
            forward_auth_family,
            forward_auth: std::array::from_fn(|_| OnceLock::new()),
            sign_outs,
            live,
        }
    }

    /// Attaches the source of the scrape-time gauges (the first attachment wins).
    pub fn watch(&self, source: Weak<dyn LiveCounts>) {
        let _ = self.live.source.set(source);
    }

    /// One answered request. Hot path: an array index, a counter increment and a histogram
    /// observation (after each series' first use).
    pub fn request(&self, route: RouteClass, status: u16, latency: Duration) {
        let series = &self.routes[route as usize];
        let slot = status_slot(status);
        series.requests[slot]
            .get_or_init(|| {
                self.http_requests.get_or_create_owned(&[
                    ("route", route.as_str()),
                    ("status", status_label(slot)),
                ])
            })
            .inc();
        series
            .duration
            .get_or_init(|| {
                self.http_duration
                    .get_or_create_owned(&[("route", route.as_str())])
            })
            .observe(latency.as_secs_f64());
    }

    pub fn upstream_error(&self, kind: UpstreamErrorKind) {
        self.upstream_errors[kind as usize].inc();
    }

    pub fn sign_in_success(&self) {
        self.sign_in_success.inc();
    }

    /// A refused ACS post; the reason is the error's stable kind code.
    pub fn sign_in_failure(&self, e: &LoginError) {
        self.sign_ins
            .get_or_create(&[("outcome", "failure"), ("reason", e.kind())])
            .inc();
    }

    /// A request refused by the rate limit named `limit` (a fixed name from the code).
    pub fn rate_limited(&self, limit: &'static str) {
        self.rate_limited.get_or_create(&[("limit", limit)]).inc();
    }

    pub fn forward_auth(&self, result: ForwardAuthResult) {
        self.forward_auth[result as usize]
            .get_or_init(|| {
                self.forward_auth_family
                    .get_or_create_owned(&[("result", result.as_str())])
            })
            .inc();
    }

    pub fn sign_out(&self) {
        self.sign_outs.inc();
    }

    /// The OpenMetrics text of every series (served with [`CONTENT_TYPE`]).
    pub fn render(&self) -> Result<String, fmt::Error> {
        let mut text = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Arc;

    /// Parses OpenMetrics text into `series{labels}` → value, checking every line's shape.
    fn parse(text: &str) -> HashMap<String, f64> {
        assert!(text.ends_with("# EOF\n"), "{text}");
        let mut out = HashMap::new();
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect(line);
            let value: f64 = value.parse().expect(line);
            assert!(
                out.insert(series.to_string(), value).is_none(),
                "duplicate {series}"
            );
        }
        out
    }

    fn value(m: &Metrics, series: &str) -> Option<f64> {
        parse(&m.render().unwrap()).get(series).copied()
    }

    #[test]
    fn requests_count_by_route_and_status_and_observe_latency() {
        let m = Metrics::new();
        m.request(RouteClass::Protected, 200, Duration::from_micros(300));
        m.request(RouteClass::Protected, 200, Duration::from_millis(20));
        m.request(RouteClass::Protected, 401, Duration::from_micros(50));
        m.request(RouteClass::Acs, 303, Duration::from_secs(20));
        let s = parse(&m.render().unwrap());
        assert_eq!(
            s[r#"samlgate_http_requests_total{route="protected",status="200"}"#],
            2.0
        );
        assert_eq!(
            s[r#"samlgate_http_requests_total{route="protected",status="401"}"#],
            1.0
        );
        assert_eq!(
            s[r#"samlgate_http_requests_total{route="acs",status="303"}"#],
            1.0
        );
        assert!(!s.contains_key(r#"samlgate_http_requests_total{route="healthz",status="200"}"#));
        let h = "samlgate_http_request_duration_seconds";
        assert_eq!(s[&format!(r#"{h}_count{{route="protected"}}"#)], 3.0);
        assert_eq!(
            s[&format!(r#"{h}_bucket{{le="0.0001",route="protected"}}"#)],
            1.0
        );
        assert_eq!(
            s[&format!(r#"{h}_bucket{{le="0.0005",route="protected"}}"#)],
            2.0
        );
        assert_eq!(
            s[&format!(r#"{h}_bucket{{le="0.025",route="protected"}}"#)],
            3.0
        );
        assert_eq!(s[&format!(r#"{h}_bucket{{le="10.0",route="acs"}}"#)], 0.0);
        assert_eq!(s[&format!(r#"{h}_bucket{{le="+Inf",route="acs"}}"#)], 1.0);
        let sum = s[&format!(r#"{h}_sum{{route="protected"}}"#)];
        assert!((sum - 0.02035).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn status_labels_are_bounded() {
        for (code, label) in EXACT_STATUS {
            assert_eq!(label, code.to_string());
            assert_eq!(status_label(status_slot(code)), label);
        }
        assert_eq!(status_label(status_slot(418)), "4xx");
        assert_eq!(status_label(status_slot(299)), "2xx");
        assert_eq!(status_label(status_slot(599)), "5xx");
        assert_eq!(status_label(status_slot(100)), "1xx");
        for code in [0, 99, 600, 999, u16::MAX] {
            assert_eq!(status_label(status_slot(code)), "other");
        }
        let labels: std::collections::HashSet<_> = (0..=u16::MAX)
            .map(|c| status_label(status_slot(c)))
            .collect();
        assert_eq!(labels.len(), STATUS_SLOTS);
    }

    #[test]
    fn every_status_code_lands_in_one_series() {
        let m = Metrics::new();
        for code in 0..=u16::MAX {
            m.request(RouteClass::Protected, code, Duration::ZERO);
        }
        let s = parse(&m.render().unwrap());
        let series: Vec<_> = s
            .iter()
            // \u{7b} is the opening brace, escaped so that a lone brace in a string does not
            // throw off brace-counting tools (the project's function-length check).
            .filter(|(k, _)| k.starts_with("samlgate_http_requests_total\u{7b}"))
            .collect();
        assert_eq!(series.len(), STATUS_SLOTS);
        assert_eq!(
            series.iter().map(|(_, v)| **v).sum::<f64>(),
            65536.0,
            "no request lost or double-counted"
        );
        assert_eq!(
            s[r#"samlgate_http_requests_total{route="protected",status="other"}"#],
            (100 + 65536 - 600) as f64
        );
    }

    #[test]
    fn events_count_with_their_labels() {
        let m = Metrics::new();
        assert_eq!(
            value(&m, r#"samlgate_upstream_errors_total{kind="connect"}"#),
            Some(0.0),
            "upstream error series exist from the start"
        );
        assert_eq!(
            value(
                &m,
                r#"samlgate_sign_ins_total{outcome="success",reason="none"}"#
            ),
            Some(0.0)
        );
        m.upstream_error(UpstreamErrorKind::Timeout);
        m.upstream_error(UpstreamErrorKind::of(&ProxyError::Unreachable("x".into())).unwrap());
        assert_eq!(
            UpstreamErrorKind::of(&ProxyError::BadRequest("x".into())),
            None
        );
        m.sign_in_success();
        m.sign_in_failure(&LoginError::Replay("_id".into()));
        m.sign_in_failure(&LoginError::Replay("_other".into()));
        m.sign_in_failure(&LoginError::Expired("long ago".into()));
        m.rate_limited("acs_per_ip");
        m.forward_auth(ForwardAuthResult::Denied);
        m.forward_auth(ForwardAuthResult::Denied);
        m.sign_out();
        let s = parse(&m.render().unwrap());
        for (series, want) in [
            (r#"samlgate_upstream_errors_total{kind="timeout"}"#, 1.0),
            (r#"samlgate_upstream_errors_total{kind="connect"}"#, 1.0),
            (r#"samlgate_upstream_errors_total{kind="other"}"#, 0.0),
            (
                r#"samlgate_sign_ins_total{outcome="success",reason="none"}"#,
                1.0,
            ),
            (
                r#"samlgate_sign_ins_total{outcome="failure",reason="replay"}"#,
                2.0,
            ),
            (
                r#"samlgate_sign_ins_total{outcome="failure",reason="expired"}"#,
                1.0,
            ),
            (r#"samlgate_rate_limited_total{limit="acs_per_ip"}"#, 1.0),
            (r#"samlgate_forward_auth_total{result="denied"}"#, 2.0),
            ("samlgate_sign_outs_total", 1.0),
            (r#"samlgate_build_info{version="0.1.0"}"#, 1.0),
        ] {
            assert_eq!(s.get(series), Some(&want), "{series}");
        }
        assert!(!s.contains_key(r#"samlgate_forward_auth_total{result="allowed"}"#));
        assert!(s["process_start_time_seconds"] > 1.6e9);
    }

    struct Fixed(u64, Option<u64>, Option<u64>);
    impl LiveCounts for Fixed {
        fn sessions_active(&self) -> u64 {
            self.0
        }
        fn replay_cache_entries(&self) -> Option<u64> {
            self.1
        }
        fn pending_logins(&self) -> Option<u64> {
            self.2
        }
    }

    #[test]
    fn live_gauges_are_read_at_scrape_time_while_the_source_lives() {
        let m = Metrics::new();
        assert_eq!(value(&m, "samlgate_sessions_active"), None);
        let source: Arc<dyn LiveCounts> = Arc::new(Fixed(3, Some(7), Some(2)));
        m.watch(Arc::downgrade(&source));
        let s = parse(&m.render().unwrap());
        assert_eq!(s["samlgate_sessions_active"], 3.0);
        assert_eq!(s["samlgate_replay_cache_entries"], 7.0);
        assert_eq!(s["samlgate_pending_logins"], 2.0);
        drop(source);
        assert_eq!(value(&m, "samlgate_sessions_active"), None);
    }

    #[test]
    fn counts_a_shared_backend_holds_are_left_out_not_zero() {
        let m = Metrics::new();
        let source: Arc<dyn LiveCounts> = Arc::new(Fixed(4, None, None));
        m.watch(Arc::downgrade(&source));
        let text = m.render().unwrap();
        assert_eq!(parse(&text)["samlgate_sessions_active"], 4.0);
        assert!(!text.contains("samlgate_replay_cache_entries"), "{text}");
        assert!(!text.contains("samlgate_pending_logins"), "{text}");
    }

    #[test]
    fn rendering_declares_types_and_units() {
        let m = Metrics::new();
        assert!(
            !m.render().unwrap().contains("samlgate_http_requests"),
            "a family without series is left out"
        );
        m.request(RouteClass::Healthz, 200, Duration::from_micros(80));
        let text = m.render().unwrap();
        for line in [
            "# TYPE samlgate_http_requests counter",
            "# TYPE samlgate_http_request_duration_seconds histogram",
            "# UNIT samlgate_http_request_duration_seconds seconds",
            "# TYPE samlgate_build info",
            "# TYPE process_start_time_seconds gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
