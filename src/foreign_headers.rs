//! Foreign identity headers: the names other gateways and web servers use to tell an
//! application who the user is (`Remote-User`, `X-Auth-Request-*`, `X-WEBAUTH-*`, …). An
//! application behind samlgate may have been told to trust one of them, so a client's copy is
//! stripped like samlgate's own identity headers.
//!
//! [`FOREIGN_IDENTITY_HEADERS`] is the documented default table; `headers.strip_foreign_defaults`
//! and `headers.strip_foreign_extra` choose what [`ForeignHeaders::compile`] builds, once at
//! config time. Matching is then allocation-free: names are compared ignoring case and treating
//! `_` and `-` alike, and a 256-entry index on the first byte skips every pattern that cannot
//! match (most request headers are looked at once and passed over).

use http::HeaderName;

/// Identity headers of other gateways, proxies and servers that applications are often told to
/// trust, with who sets them. A trailing `*` makes a prefix pattern. Stripped from client
/// requests unless `headers.strip_foreign_defaults = false`. Names a TLS terminator in front of
/// samlgate may set legitimately (client-certificate headers such as `X-SSL-Client-*`) are
/// deliberately absent: add them with `headers.strip_foreign_extra` when nothing in front does.
pub const FOREIGN_IDENTITY_HEADERS: &[(&str, &str)] = &[
    ("Remote-User", "Authelia; Apache `REMOTE_USER` passed as a header (JupyterHub, Airflow, Superset remote-user setups)"),
    ("Remote-Groups", "Authelia"),
    ("Remote-Email", "Authelia"),
    ("Remote-Name", "Authelia"),
    ("X-Remote-User", "Kubernetes authenticating proxy, JupyterHub remote-user authenticators"),
    ("X-Remote-Group", "Kubernetes authenticating proxy"),
    ("X-Remote-Groups", "authenticating proxies"),
    ("X-Remote-Email", "authenticating proxies"),
    ("X-Remote-Extra-*", "Kubernetes authenticating proxy"),
    ("X-Auth-Request-*", "oauth2-proxy (`--set-xauthrequest`: `-User`, `-Email`, `-Groups`, `-Preferred-Username`, `-Access-Token`)"),
    ("X-Forwarded-User", "oauth2-proxy, traefik-forward-auth; samlgate's own default name"),
    ("X-Forwarded-Email", "oauth2-proxy; samlgate's own default name"),
    ("X-Forwarded-Groups", "oauth2-proxy; samlgate's own default name"),
    ("X-Forwarded-Preferred-Username", "oauth2-proxy; samlgate's own default name"),
    ("X-Forwarded-Access-Token", "oauth2-proxy (`--pass-access-token`)"),
    ("X-Forwarded-Login", "authenticating proxies"),
    ("X-WEBAUTH-*", "Grafana and Gitea/Forgejo auth proxy (`-USER`, `-EMAIL`, `-NAME`, `-GROUPS`, `-ROLE`, `-FULLNAME`)"),
    ("X-User", "authenticating proxies"),
    ("X-Username", "authenticating proxies"),
    ("X-Email", "authenticating proxies"),
    ("X-Authenticated-User", "Squid, ICAP and authenticating proxies"),
    ("X-Authenticated-Userid", "Kong"),
    ("X-Authenticated-Scope", "Kong"),
    ("X-Consumer-*", "Kong (`-ID`, `-Username`, `-Custom-ID`, `-Groups`)"),
    ("X-Credential-Identifier", "Kong"),
    ("X-Anonymous-Consumer", "Kong"),
    ("X-Auth-Username", "Keycloak Gatekeeper / Louketo"),
    ("X-Auth-Userid", "Keycloak Gatekeeper / Louketo"),
    ("X-Auth-Email", "Keycloak Gatekeeper / Louketo"),
    ("X-Auth-Subject", "Keycloak Gatekeeper / Louketo"),
    ("X-Auth-Roles", "Keycloak Gatekeeper / Louketo"),
    ("X-Auth-Groups", "Keycloak Gatekeeper / Louketo"),
    ("X-Proxy-User", "authenticating proxies"),
    ("Auth-User", "authenticating proxies"),
    ("X-Token-*", "token-passing proxies"),
    ("X-MS-CLIENT-PRINCIPAL*", "Azure App Service / Container Apps authentication (`-NAME`, `-ID`, `-IDP`)"),
    ("X-MS-TOKEN-*", "Azure App Service token store"),
    ("Cf-Access-*", "Cloudflare Access (`-Authenticated-User-Email`, `-Jwt-Assertion`)"),
    ("X-Goog-Authenticated-User-*", "Google Cloud IAP"),
    ("X-Goog-IAP-JWT-Assertion", "Google Cloud IAP"),
    ("X-Amzn-Oidc-*", "AWS Application Load Balancer (`-Identity`, `-Data`, `-Accesstoken`)"),
    ("X-Pomerium-*", "Pomerium (`-Jwt-Assertion`, `-Claim-*`)"),
    ("X-Vouch-*", "Vouch Proxy (`-User`, `-Idp-Claims-*`)"),
    ("Tailscale-User-*", "Tailscale Serve (`-Login`, `-Name`, `-Profile-Pic`)"),
    ("Mellon-*", "mod_auth_mellon (`MELLON_NAME_ID` and the attributes it exports)"),
    ("Shib-*", "Shibboleth SP (`Shib-Session-ID`, `Shib-Identity-Provider`, …)"),
    ("Eppn", "Shibboleth SP attribute"),
    ("Persistent-Id", "Shibboleth SP attribute"),
    ("Affiliation", "Shibboleth SP attribute"),
    ("Unscoped-Affiliation", "Shibboleth SP attribute"),
    ("Entitlement", "Shibboleth SP attribute"),
    ("Oidc-Claim-*", "mod_auth_openidc (`OIDC_CLAIM_*`)"),
    ("Oidc-Access-Token", "mod_auth_openidc"),
    ("Oidc-Id-Token", "mod_auth_openidc"),
];

/// Why an entry of `headers.strip_foreign_extra` is refused; each carries the entry as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForeignPatternError {
    #[error("{0:?} would strip every header; name a header or a prefix like X-Corp-*")]
    Everything(String),
    #[error("{0:?}: `*` may only end a prefix, as in X-Corp-*")]
    InnerStar(String),
    #[error("{0:?} is not a header name, or a prefix followed by a single trailing *")]
    NotAHeaderName(String),
}

/// One entry of the list: an exact name or a prefix, stored lower case with `-` for `_`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignPattern {
    normalized: Box<[u8]>,
    prefix: bool,
}

impl ForeignPattern {
    /// `X-Name` (exact) or `X-Prefix-*` (every name starting with `X-Prefix-`). The part before
    /// the `*` must be a header name; `*` alone, or anywhere but at the end, is refused.
    pub fn parse(raw: &str) -> Result<ForeignPattern, ForeignPatternError> {
        let (stem, prefix) = match raw.strip_suffix('*') {
            Some(stem) => (stem, true),
            None => (raw, false),
        };
        if stem.is_empty() {
            return Err(ForeignPatternError::Everything(raw.to_string()));
        }
        if stem.contains('*') {
            return Err(ForeignPatternError::InnerStar(raw.to_string()));
        }
        HeaderName::from_bytes(stem.as_bytes())
            .map_err(|_| ForeignPatternError::NotAHeaderName(raw.to_string()))?;
        let normalized = stem
            .bytes()
            .map(|b| {
                if b == b'_' {
                    b'-'
                } else {
                    b.to_ascii_lowercase()
                }
            })
            .collect();
        Ok(ForeignPattern { normalized, prefix })
    }

    /// Whether this pattern is an exact name.
    pub fn is_exact(&self) -> bool {
        !self.prefix
    }

    /// The name or prefix, lower case with `-` (always ASCII: it parsed as a header name).
    pub fn normalized(&self) -> &str {
        std::str::from_utf8(&self.normalized).unwrap_or_default()
    }

    /// `name` is lower case already (as [`HeaderName`] keeps it); `_` in it matches `-` here.
    fn matches(&self, name: &[u8]) -> bool {
        let p = &self.normalized;
        let head = if self.prefix {
            match name.get(..p.len()) {
                Some(head) => head,
                None => return false,
            }
        } else if name.len() == p.len() {
            name
        } else {
            return false;
        };
        head.iter()
            .zip(p.iter())
            .all(|(&n, &w)| n == w || (n == b'_' && w == b'-'))
    }
}

/// The compiled list: patterns grouped by their first byte, with a range per byte.
#[derive(Debug, Clone, Default)]
pub struct ForeignHeaders {
    /// Sorted by first byte.
    patterns: Vec<ForeignPattern>,
    /// `(start, end)` into `patterns` for names starting with each byte (`_` maps to `-`'s).
    by_first: Vec<(u16, u16)>,
}

impl ForeignHeaders {
    /// The default table (when `defaults`) plus `extra`. Entries were checked by config
    /// validation; one that does not parse here is skipped rather than trusted.
    pub fn compile(defaults: bool, extra: &[String]) -> ForeignHeaders {
        let table = FOREIGN_IDENTITY_HEADERS
            .iter()
            .filter(|_| defaults)
            .map(|(p, _)| *p);
        let mut patterns: Vec<ForeignPattern> = table
            .chain(extra.iter().map(String::as_str))
            .filter_map(|raw| ForeignPattern::parse(raw).ok())
            .collect();
        patterns.sort_by(|a, b| a.normalized.cmp(&b.normalized));
        patterns.dedup();
        let mut by_first = vec![(0u16, 0u16); 256];
        for (i, p) in patterns.iter().enumerate() {
            // At most a few hundred entries (config validation caps the extra list).
            let i = u16::try_from(i).unwrap_or(u16::MAX);
            let slot = &mut by_first[usize::from(p.normalized[0])];
            if slot.0 == slot.1 {
                *slot = (i, i);
            }
            slot.1 = i.saturating_add(1);
        }
        ForeignHeaders { patterns, by_first }
    }

    /// Whether a client header is one of the listed names, in any case and `_`/`-` spelling.
    pub fn matches(&self, name: &HeaderName) -> bool {
        let n = name.as_str().as_bytes();
        let Some(&first) = n.first() else {
            return false;
        };
        let first = if first == b'_' { b'-' } else { first };
        let Some(&(start, end)) = self.by_first.get(usize::from(first)) else {
            return false;
        };
        self.patterns
            .get(usize::from(start)..usize::from(end))
            .is_some_and(|ps| ps.iter().any(|p| p.matches(n)))
    }

    /// Every pattern (lower case, `-` form).
    pub fn patterns(&self) -> impl Iterator<Item = &ForeignPattern> {
        self.patterns.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> HeaderName {
        HeaderName::from_bytes(s.as_bytes()).unwrap()
    }

    #[test]
    fn every_default_entry_parses_and_matches_itself_in_every_spelling() {
        let f = ForeignHeaders::compile(true, &[]);
        for (raw, _) in FOREIGN_IDENTITY_HEADERS {
            let p = ForeignPattern::parse(raw).unwrap();
            let stem = raw.trim_end_matches('*');
            let sample = if p.is_exact() {
                stem.to_string()
            } else {
                format!("{stem}Anything")
            };
            for spelling in [
                sample.clone(),
                sample.to_ascii_lowercase(),
                sample.to_ascii_uppercase(),
                sample.replace('-', "_"),
            ] {
                assert!(f.matches(&name(&spelling)), "{raw}: {spelling}");
            }
        }
    }

    #[test]
    fn exact_names_do_not_match_longer_ones_and_prefixes_need_the_whole_prefix() {
        let f = ForeignHeaders::compile(true, &[]);
        for kept in [
            "x-remote-users",
            "remote-use",
            "x-auth-request",
            "x-webauth",
            "x-auth-token",
            "authorization",
            "accept",
            "cookie",
            "user-agent",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-ssl-client-s-dn",
            "shi",
            "x",
        ] {
            assert!(!f.matches(&name(kept)), "{kept} must pass");
        }
        for gone in [
            "x-auth-request-user",
            "X_AUTH_REQUEST_EMAIL",
            "x-webauth-role",
            "x-ms-client-principal",
            "x-ms-client-principal-name",
            "cf-access-authenticated-user-email",
            "mellon-name-id",
            "MELLON_NAME_ID",
            "shib-session-id",
            "x-pomerium-claim-email",
        ] {
            assert!(f.matches(&name(gone)), "{gone} must be stripped");
        }
    }

    #[test]
    fn the_list_can_be_extended_or_emptied() {
        let empty = ForeignHeaders::compile(false, &[]);
        assert!(empty.is_empty());
        assert!(!empty.matches(&name("remote-user")));

        let extra = ["X-Corp-User".to_string(), "X-Corp-Claim-*".to_string()];
        let only_extra = ForeignHeaders::compile(false, &extra);
        assert!(only_extra.matches(&name("x_corp_user")));
        assert!(only_extra.matches(&name("X-CORP-CLAIM-ROLE")));
        assert!(!only_extra.matches(&name("remote-user")));
        assert!(!only_extra.matches(&name("x-corp-users")));

        let both = ForeignHeaders::compile(true, &extra);
        assert!(both.matches(&name("remote-user")) && both.matches(&name("x-corp-user")));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["*", "", "X-*-User", "X Corp", "X-Corp-**", "Ü-User"] {
            assert!(ForeignPattern::parse(bad).is_err(), "{bad:?}");
        }
        let p = ForeignPattern::parse("X_Corp-*").unwrap();
        assert_eq!(p.normalized(), "x-corp-");
        assert!(!p.is_exact());
    }

    #[test]
    fn the_docs_list_every_entry_of_the_table() {
        let readme = include_str!("../docs/how-it-works.md");
        let missing: Vec<&str> = FOREIGN_IDENTITY_HEADERS
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| !readme.contains(&format!("| `{p}` |")))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/how-it-works.md lacks: {missing:?}"
        );
    }

    #[test]
    fn names_starting_with_an_underscore_use_the_dash_bucket() {
        let f = ForeignHeaders::compile(false, &["-Odd-Name".to_string()]);
        assert!(f.matches(&name("_odd_name")));
        assert!(f.matches(&name("-ODD-NAME")));
    }
}
