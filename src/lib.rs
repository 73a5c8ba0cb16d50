//! # samlgate
//!
//! A SAML 2.0 single sign-on gateway: a reverse proxy that signs every browser in through the
//! organisation's IdP and forwards requests to the application behind it with the verified
//! identity in headers no client can forge.
//!
//! ## Map of the modules
//!
//! | module | owns |
//! |---|---|
//! | [`config_files`] | files named by config keys: read relative to the config file, bounded (a leaf: sections reading their own files need not import `config`) |
//! | [`config`] | the TOML file, `SAMLGATE_*` overrides, one validation function per section (`config/<section>.rs`) into [`config::Settings`] (access rules and trusted proxies compiled once), [`config::ConfigError`], and the generated reference (`config::reference`, `docs/configuration-reference.md`). It imports the modules that own a section (`rules`, `ratelimit`, `client_ip`, `authz`, `proxy`); they never import it back |
//! | [`app`] | assembly: settings → gateway → listener (shared by binary and tests) |
//! | [`server`] | TCP/TLS listeners, connection cap, graceful shutdown, the HTTP→HTTPS redirect listener |
//! | [`connection`] | one client connection: HTTP/1.1 or HTTP/2, header and idle timeouts, parking idle HTTP/1.1 connections without buffers |
//! | [`tls`] | the rustls server config (`tls.min_version`, ALPN) and live certificate reload (SIGHUP, file watch) |
//! | [`identity`] | the identity headers: `headers.encoding` (RFC 2047, quoted-printable, percent, refuse, raw), `[[roles]]`, forwarded attributes; `render_identity_headers` |
//! | [`gateway`] | the [`gateway::Gateway`] and its flows, one file each: `pipeline` (**route → authenticate → authorize → rewrite → forward**, in one place), `admission` (the shared route → authenticate → authorize step), `signin`, `acs`, `signout`, `slo`, `forward_auth` (how forward-auth answers), `reload` (the swappable [`gateway::Policy`]) |
//! | [`saml`] | AuthnRequests, the pre-filter, signature verification (samael), policy checks, replay cache, metadata |
//! | [`session`] | session ids and sealed cookies, the store trait and its moka backend, pending sign-ins |
//! | [`state`] | `[state]`: the memory or Redis backend for sessions, pending sign-ins, replay caches; the local cache and its invalidation |
//! | [`foreign_headers`] | other gateways' identity headers (`Remote-User`, `X-Auth-Request-*`, …): the default table and the compiled matcher |
//! | [`forward_auth`] | `/saml/auth` checks: which original request a trusted proxy describes |
//! | [`authz`] | `[authz]` (`AuthzSection`): `allowed_users` / `allowed_groups` (global, or an access rule's own lists) |
//! | [`rules`] | `[access]` (`AccessSection`, `RuleError`): per-path allow / authenticate / deny rules on canonical paths, CORS preflights |
//! | [`client_ip`] | `server.trusted_proxies` (`TrustedProxyError`) and the client address (`X-Forwarded-For` from trusted peers) |
//! | [`ratelimit`] | `[rate_limits]` (`RateLimitSection`, `RateLimitError`): per-client GCRA limits (governor) for sign-in, ACS and auth failures |
//! | [`redirect`] | which return paths are local (no open redirect) |
//! | [`target`] | refusals from the request line and `Host` before dispatch: `CONNECT`, non-path targets, conflicting hosts, encoded gateway paths, dot segments |
//! | [`proxy`] | `[headers]` and `[proxy]` (`HeadersSection`, `ProxySection`, `ProxySettings`, `UpstreamError`), the upstream client, header rewrite, streaming, WebSocket/`Upgrade` passthrough |
//! | [`tunnel`] | upgraded (WebSocket) tunnels: the connection slot they hold, the splice with its idle limit |
//! | [`password`] | `[password_signin]`: LDAP and local accounts as an ordered fallback (form, HTTP Basic) |
//! | [`pages`] | the HTML pages and JSON errors people and API clients see |
//! | [`observability`] | tracing setup: access and audit log targets, colour only on a terminal |
//! | [`log_throttle`] | repeated refusals logged once per client and interval, then as a `suppressed=N` summary |
//! | [`metrics`] | Prometheus series (bounded labels, lock-free hot path) and their text rendering |
//! | [`admin`] | the optional admin listener: `/metrics` and `/healthz` on their own port, and the admin API (`/admin/users/{user}/sessions`) |
//! | [`admin_api_settings`] | `[admin_api]`: the admin API's bearer tokens, read from files (kept apart so `config` does not import the listener) |
//! | [`scim`] | the SCIM 2.0 service provider (`[scim]`): Users and Groups the IdP provisions, stored durably; who may sign in, which groups they carry |
//! | [`deprovision`] | ending every session (and tunnel) of one user: SCIM deprovisioning and the admin API |
//! | `devidp` | `samlgate dev-idp`: a SAML IdP for development and tests (never imported by gateway code) |
//! | `demo` | `samlgate demo`: dev IdP + demo app + gateway on loopback |
//! | `certgen` | `samlgate gen-cert`: key pairs and self-signed certificates |
//!
//! The last three are the development tools, compiled only with the `dev-tools` cargo feature
//! (on by default; production images build with `--no-default-features`). `certgen` is also
//! compiled for the crate's own unit tests, which mint key pairs with it.
//!
//! Pure decisions (policy, authorization, redirects, header rewrite, routing, the ACS's
//! solicited/unsolicited decision) are functions on plain data with their own unit tests; the
//! gateway's sockets live only in `server`, `connection` and `proxy` (the development tools
//! `devidp` and `demo` run their own small servers).

// Memory safety is the libraries' business (rustls, hyper, ring, the xmlsec bindings); the
// gateway's own code has no reason for `unsafe`, with one audited exception:
// `connection::trim_heap` calls glibc's `malloc_trim` (no pointers, no state), which returns
// the memory parked connections freed (docs/development.md, idle connections). `deny`, not
// `forbid`, so that one function can say `allow` next to its SAFETY comment; a new `unsafe`
// anywhere else fails the build.
#![deny(unsafe_code)]
// No `unwrap` in the product: input-derived values get a typed error, and a true invariant says
// why in `expect("…")`. Set here rather than in Cargo.toml's [lints] so that the test
// harnesses, where a panic is the failure report, are not held to it (clippy.toml exempts the
// unit tests).
#![warn(clippy::unwrap_used)]

pub mod admin;
pub mod admin_api_settings;
pub mod app;
pub mod authz;
#[cfg(any(feature = "dev-tools", test))]
pub mod certgen;
pub mod client_ip;
pub mod config;
pub mod config_files;
pub mod connection;
#[cfg(feature = "dev-tools")]
pub mod demo;
pub mod deprovision;
#[cfg(feature = "dev-tools")]
pub mod devidp;
pub mod foreign_headers;
pub mod forward_auth;
pub mod gateway;
pub mod identity;
pub mod log_throttle;
pub mod metrics;
pub mod observability;
pub mod pages;
pub mod password;
pub mod proxy;
pub mod ratelimit;
pub mod redirect;
pub mod rules;
pub mod saml;
pub mod scim;
pub mod server;
pub mod session;
pub mod state;
pub mod target;
pub mod tls;
pub mod tunnel;
