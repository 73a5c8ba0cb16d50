//! `[forward_auth]`: the check endpoint for reverse proxies; plain values the gateway reads
//! as they are.

use serde::Deserialize;

/// `{path_prefix}/auth`: the check endpoint for nginx `auth_request`, Traefik `forwardAuth`
/// and Envoy `ext_authz`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardAuthSection {
    /// Whether the endpoint answers at all (404 when off).
    pub enabled: bool,
    /// Answer a browser navigation without a session with the 302 to the IdP (what Traefik
    /// users expect) instead of 401 (what nginx `auth_request` needs).
    pub redirect_browsers: bool,
}

impl Default for ForwardAuthSection {
    fn default() -> Self {
        Self {
            enabled: true,
            redirect_browsers: false,
        }
    }
}
