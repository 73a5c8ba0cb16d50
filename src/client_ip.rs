//! Who the client is when samlgate runs behind proxies: `server.trusted_proxies` (addresses and
//! CIDRs) and the client address derived from the TCP peer and `X-Forwarded-For`. Only a
//! trusted peer's `X-Forwarded-For` is read, from the right, skipping trusted hops; anything
//! malformed stops the walk at the last address a trusted hop vouched for, so a forged or
//! garbled header can never pick an arbitrary address. Pure functions on plain data.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::{IpNet, Ipv4Net};

/// At most this many `X-Forwarded-For` entries are considered (from the right).
pub const MAX_FORWARDED_ENTRIES: usize = 64;
/// At most this many bytes of `X-Forwarded-For` entries are considered (from the right).
pub const MAX_FORWARDED_BYTES: usize = 8 * 1024;
/// Longest entry that can be an address (`[v6]:port` is at most 47 + 2 + 6).
const MAX_ENTRY_LEN: usize = 64;
const MAX_TRUSTED_ENTRIES: usize = 1000;
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// An entry of `server.trusted_proxies` that is not a usable address or network.
/// `config::ConfigError` wraps it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {reason}")]
pub struct TrustedProxyError {
    /// The key as the operator wrote it (`access.rules[0].path_regex`).
    pub key: String,
    /// What is wrong with its value.
    pub reason: String,
}

impl TrustedProxyError {
    fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// The proxies whose `X-Forwarded-For` (and other forwarded headers) samlgate believes.
/// Empty (the default) trusts nobody.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Parses addresses (`10.0.0.7`, `::1`) and CIDRs (`10.0.0.0/8`, `fd00::/8`). `key` names
    /// the config key in errors (`server.trusted_proxies[1]`). Host bits in a CIDR and `/0`
    /// (trust everyone) are refused; IPv4-mapped IPv6 entries are read as IPv4.
    pub fn parse(list: &[String], key: &str) -> Result<TrustedProxies, TrustedProxyError> {
        if list.len() > MAX_TRUSTED_ENTRIES {
            return Err(TrustedProxyError::new(
                key,
                format!("at most {MAX_TRUSTED_ENTRIES} entries"),
            ));
        }
        let mut nets = Vec::with_capacity(list.len());
        for (i, raw) in list.iter().enumerate() {
            let entry_key = format!("{key}[{i}]");
            let text = raw.trim();
            let net = if text.contains('/') {
                let net = IpNet::from_str(text).map_err(|_| {
                    TrustedProxyError::new(
                        &entry_key,
                        format!("not an IP address or CIDR: {raw:?}"),
                    )
                })?;
                if net.addr() != net.network() {
                    return Err(TrustedProxyError::new(
                        &entry_key,
                        format!("{text} has host bits set; did you mean {}?", net.trunc()),
                    ));
                }
                net
            } else {
                let ip = IpAddr::from_str(text).map_err(|_| {
                    TrustedProxyError::new(
                        &entry_key,
                        format!("not an IP address or CIDR: {raw:?}"),
                    )
                })?;
                IpNet::from(ip)
            };
            let net = canonical_net(net);
            if net.prefix_len() == 0 {
                return Err(TrustedProxyError::new(
                    &entry_key,
                    format!(
                        "{text} would trust every address, so any client could forge X-Forwarded-For; list your proxies' addresses or networks"
                    ),
                ));
            }
            nets.push(net);
        }
        Ok(TrustedProxies { nets })
    }

    /// Whether `ip` is a trusted proxy (IPv4-mapped IPv6 is compared as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

/// `::ffff:a.b.c.d/p` (p ≥ 96) as `a.b.c.d/(p-96)`.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let Some(v4) = v6.addr().to_ipv4_mapped() {
            if v6.prefix_len() >= 96 {
                if let Ok(n) = Ipv4Net::new(v4, v6.prefix_len() - 96) {
                    return IpNet::V4(n);
                }
            }
        }
    }
    net
}

/// The client's address: the peer itself unless the peer is a trusted proxy; then the
/// rightmost `X-Forwarded-For` entry that is not a trusted proxy (all header lines, in order,
/// comma-separated). All entries trusted: the leftmost. A malformed or empty entry, or more
/// than [`MAX_FORWARDED_ENTRIES`] entries / [`MAX_FORWARDED_BYTES`] bytes, stops the walk at
/// the last address a trusted hop vouched for. Entries may carry a port (`1.2.3.4:5678`,
/// `[::1]:80`). IPv4-mapped IPv6 addresses are returned as IPv4.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let mut current = peer.to_canonical();
    if !trusted.contains(current) {
        return current;
    }
    let mut entries = 0usize;
    let mut bytes = 0usize;
    for line in headers.get_all(X_FORWARDED_FOR).iter().rev() {
        for entry in line.as_bytes().rsplit(|&b| b == b',') {
            entries += 1;
            bytes += entry.len() + 1;
            if entries > MAX_FORWARDED_ENTRIES || bytes > MAX_FORWARDED_BYTES {
                return current;
            }
            let Some(ip) = parse_entry(entry) else {
                return current;
            };
            current = ip;
            if !trusted.contains(ip) {
                return ip;
            }
        }
    }
    current
}

/// One `X-Forwarded-For` element: an address, optionally with a port.
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry)
        .ok()?
        .trim_matches(|c| c == ' ' || c == '\t');
    if text.is_empty() || text.len() > MAX_ENTRY_LEN {
        return None;
    }
    let ip = if let Ok(ip) = IpAddr::from_str(text) {
        ip
    } else if let Ok(sa) = SocketAddr::from_str(text) {
        sa.ip()
    } else {
        let inner = text.strip_prefix('[')?.strip_suffix(']')?;
        IpAddr::V6(Ipv6Addr::from_str(inner).ok()?)
    };
    Some(ip.to_canonical())
}

/// A header set by the trusted proxy in front (e.g. `X-Forwarded-Proto`): `Some` only when
/// the peer is trusted and the header occurs exactly once.
pub fn trusted_header<'a>(
    peer: IpAddr,
    headers: &'a HeaderMap,
    name: &HeaderName,
    trusted: &TrustedProxies,
) -> Option<&'a HeaderValue> {
    if !trusted.contains(peer) {
        return None;
    }
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    Some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        TrustedProxies::parse(&list, "server.trusted_proxies").unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(
                X_FORWARDED_FOR,
                HeaderValue::from_bytes(l.as_bytes()).unwrap(),
            );
        }
        h
    }

    #[test]
    fn parse_accepts_addresses_and_networks() {
        let t = proxies(&[
            "10.0.0.0/8",
            "192.0.2.7",
            "fd00::/8",
            "::1",
            " 198.51.100.0/24 ",
        ]);
        assert!(t.contains(ip("10.1.2.3")));
        assert!(t.contains(ip("192.0.2.7")));
        assert!(!t.contains(ip("192.0.2.8")));
        assert!(t.contains(ip("fd12::1")));
        assert!(t.contains(ip("::1")));
        assert!(t.contains(ip("198.51.100.9")));
        assert!(!t.contains(ip("11.0.0.1")));
        assert!(!t.is_empty());
    }

    #[test]
    fn mapped_ipv6_is_ipv4() {
        let t = proxies(&["10.0.0.0/8"]);
        assert!(t.contains(ip("::ffff:10.0.0.1")));
        assert!(!t.contains(ip("::ffff:11.0.0.1")));
        let t = proxies(&["::ffff:10.0.0.0/104", "::ffff:192.0.2.1"]);
        assert!(t.contains(ip("10.9.9.9")));
        assert!(t.contains(ip("192.0.2.1")));
        assert!(!t.contains(ip("11.0.0.1")));
    }

    #[test]
    fn parse_errors_name_the_entry() {
        for (list, index) in [
            (vec!["10.0.0.1", "nonsense"], 1),
            (vec!["10.0.0.1/8"], 0),
            (vec!["0.0.0.0/0"], 0),
            (vec!["::/0"], 0),
            (vec!["10.0.0.0/33"], 0),
            (vec![""], 0),
            (vec!["proxy.example.com"], 0),
        ] {
            let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
            let e = TrustedProxies::parse(&list, "server.trusted_proxies").unwrap_err();
            assert_eq!(
                e.key,
                format!("server.trusted_proxies[{index}]"),
                "{list:?}"
            );
        }
        let e = TrustedProxies::parse(&["10.0.0.1/8".into()], "k").unwrap_err();
        assert!(e.reason.contains("10.0.0.0/8"), "{}", e.reason);
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_says() {
        let t = proxies(&["10.0.0.0/8"]);
        let h = xff(&["1.2.3.4"]);
        assert_eq!(client_ip(ip("203.0.113.5"), &h, &t), ip("203.0.113.5"));
        let nobody = TrustedProxies::default();
        assert!(nobody.is_empty());
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &nobody), ip("10.0.0.1"));
        assert_eq!(
            client_ip(ip("::ffff:203.0.113.5"), &h, &nobody),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn trusted_peer_walks_from_the_right() {
        let t = proxies(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.1");
        // The client forged a leftmost entry; the proxy appended the real address.
        let h = xff(&["6.6.6.6, 203.0.113.5"]);
        assert_eq!(client_ip(peer, &h, &t), ip("203.0.113.5"));
        // Two trusted hops.
        let h = xff(&["6.6.6.6, 203.0.113.5, 10.0.0.9"]);
        assert_eq!(client_ip(peer, &h, &t), ip("203.0.113.5"));
        // Several header lines are one list, in order.
        let h = xff(&["6.6.6.6", "203.0.113.5", "10.0.0.9"]);
        assert_eq!(client_ip(peer, &h, &t), ip("203.0.113.5"));
        // All trusted: the leftmost.
        let h = xff(&["10.0.0.3, 10.0.0.9"]);
        assert_eq!(client_ip(peer, &h, &t), ip("10.0.0.3"));
        // No header: the peer.
        assert_eq!(client_ip(peer, &HeaderMap::new(), &t), peer);
    }

    #[test]
    fn ports_and_brackets_are_accepted() {
        let t = proxies(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.1");
        assert_eq!(
            client_ip(peer, &xff(&["203.0.113.5:5678"]), &t),
            ip("203.0.113.5")
        );
        assert_eq!(
            client_ip(peer, &xff(&["[2001:db8::1]:80"]), &t),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_ip(peer, &xff(&["[2001:db8::1]"]), &t),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_ip(peer, &xff(&["2001:db8::1"]), &t),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_ip(peer, &xff(&["\t203.0.113.5 "]), &t),
            ip("203.0.113.5")
        );
        assert_eq!(
            client_ip(peer, &xff(&["::ffff:203.0.113.5"]), &t),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn malformed_entries_stop_at_the_last_vouched_address() {
        let t = proxies(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.1");
        for bad in [
            "unknown",
            "",
            "1.2.3.4.5",
            "203.0.113.5:port",
            "fe80::1%eth0",
            "[1.2.3.4]:80",
            "_hidden",
            "203.0.113.5 6.6.6.6",
        ] {
            let h = xff(&[&format!("6.6.6.6, {bad}")]);
            assert_eq!(client_ip(peer, &h, &t), peer, "{bad:?}");
            // Behind a second trusted hop the walk stops at that hop.
            let h = xff(&[&format!("6.6.6.6, {bad}, 10.0.0.9")]);
            assert_eq!(client_ip(peer, &h, &t), ip("10.0.0.9"), "{bad:?}");
        }
        // A trailing comma is an empty entry.
        assert_eq!(client_ip(peer, &xff(&["203.0.113.5,"]), &t), peer);
        // Garbage left of an untrusted address is never reached.
        assert_eq!(
            client_ip(peer, &xff(&["garbage, 203.0.113.5"]), &t),
            ip("203.0.113.5")
        );
        // Non-UTF-8 bytes.
        let mut h = HeaderMap::new();
        h.insert(
            X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"1.2.3.4\xff").unwrap(),
        );
        assert_eq!(client_ip(peer, &h, &t), peer);
    }

    #[test]
    fn work_is_bounded() {
        let t = proxies(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.1");
        // 64 trusted entries: the walk gives up at the 65th and keeps the last vouched one.
        let mut list = vec!["203.0.113.5".to_string()];
        list.extend((0..MAX_FORWARDED_ENTRIES).map(|i| format!("10.0.0.{}", i % 250 + 2)));
        let h = xff(&[&list.join(",")]);
        let last_vouched = ip(&format!("10.0.0.{}", 2));
        assert_eq!(client_ip(peer, &h, &t), last_vouched);
        // With one entry less the client is reached.
        let h = xff(&[&list[..MAX_FORWARDED_ENTRIES].join(",")]);
        assert_eq!(client_ip(peer, &h, &t), ip("203.0.113.5"));
        // A huge entry exceeds the byte budget before it is parsed.
        let huge = format!("{}203.0.113.5", " ".repeat(MAX_FORWARDED_BYTES));
        assert_eq!(client_ip(peer, &xff(&[&huge]), &t), peer);
    }

    #[test]
    fn trusted_header_only_from_trusted_peers_and_only_once() {
        let t = proxies(&["10.0.0.0/8"]);
        let name = HeaderName::from_static("x-forwarded-proto");
        let mut h = HeaderMap::new();
        h.insert(name.clone(), HeaderValue::from_static("https"));
        assert_eq!(
            trusted_header(ip("10.0.0.1"), &h, &name, &t),
            Some(&HeaderValue::from_static("https"))
        );
        assert_eq!(
            trusted_header(ip("::ffff:10.0.0.1"), &h, &name, &t),
            Some(&HeaderValue::from_static("https"))
        );
        assert_eq!(trusted_header(ip("203.0.113.5"), &h, &name, &t), None);
        assert_eq!(
            trusted_header(ip("10.0.0.1"), &HeaderMap::new(), &name, &t),
            None
        );
        h.append(name.clone(), HeaderValue::from_static("http"));
        assert_eq!(trusted_header(ip("10.0.0.1"), &h, &name, &t), None);
    }
}
