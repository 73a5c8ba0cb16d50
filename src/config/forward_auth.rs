//! `[forward_auth]`: the check endpoint for reverse proxies; plain values the gateway reads
//! as they are.

use serde::Deserialize;

/// `{path_prefix}/auth`: the check endpoint for nginx `auth_request`, Traefik `forwardAuth`
/// and Envoy `ext_authz`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardAuthSection {
    /// Answer checks at `/saml/auth` and below it. `false`: 404, as for any unknown path under the
    /// prefix. Without a forward-auth proxy, a client calling it learns only what its own cookie
    /// may reach; turn it off if you do not use it.
    pub enabled: bool,
    /// For a check without a valid session whose original request is a browser navigation (judged
    /// from the original method and the check's `Accept`, `Sec-Fetch-Mode` and `X-Requested-With`),
    /// answer the 302 to the IdP, with the login cookie, instead of 401. Traefik and Envoy pass
    /// that answer to the browser. nginx's `auth_request` cannot: keep it off there and use
    /// `error_page 401 = /saml/login`.
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
