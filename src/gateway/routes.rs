//! Which flow a request takes: the gateway's endpoint [`Paths`], derived once from config,
//! and [`route`], a pure exact match from a path to a [`Route`].

use crate::metrics::RouteClass;

/// The gateway's endpoint paths, derived once from config.
#[derive(Debug, Clone)]
pub struct Paths {
    pub prefix: String,
    pub login: String,
    pub acs: String,
    pub metadata: String,
    pub logout: String,
    /// Forward-auth checks (`/saml/auth`, and `/saml/auth/<original path>` from Envoy).
    pub auth: String,
    /// Single Logout (HTTP-Redirect binding): LogoutRequests and LogoutResponses from the IdP.
    pub slo: String,
    /// The SCIM endpoint's base path, when `[scim]` is enabled.
    pub scim: Option<String>,
}

/// Which phase handles a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Healthz,
    Readyz,
    Login,
    Acs,
    Metadata,
    Logout,
    Slo,
    ForwardAuth,
    /// The password sign-in form (`{prefix}/password`, `[password_signin]`).
    Password,
    /// The SCIM endpoint (`scim.path` and below): bearer-token protected, never forwarded.
    Scim,
    /// Under the gateway prefix but not an endpoint: 404, never forwarded.
    UnknownGatewayPath,
    Protected,
}

impl Route {
    /// The `route` label of this route's metrics.
    pub fn class(self) -> RouteClass {
        match self {
            Route::Healthz => RouteClass::Healthz,
            Route::Readyz => RouteClass::Readyz,
            Route::Login => RouteClass::Login,
            Route::Acs => RouteClass::Acs,
            Route::Metadata => RouteClass::Metadata,
            Route::Logout => RouteClass::Logout,
            Route::Slo => RouteClass::Slo,
            Route::ForwardAuth => RouteClass::ForwardAuth,
            Route::Password => RouteClass::Login,
            Route::UnknownGatewayPath | Route::Scim => RouteClass::GatewayOther,
            Route::Protected => RouteClass::Protected,
        }
    }
}

/// Route by exact path (pure).
pub fn route(path: &str, p: &Paths) -> Route {
    match path {
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        _ if path == p.acs => Route::Acs,
        _ if p.scim.as_deref().is_some_and(|s| is_under(path, s)) => Route::Scim,
        _ if path == p.login => Route::Login,
        _ if path == p.metadata => Route::Metadata,
        _ if path == p.logout => Route::Logout,
        _ if path == p.slo => Route::Slo,
        _ if is_under(path, &p.auth) => Route::ForwardAuth,
        _ if super::password_signin::is_password_path(path, p) => Route::Password,
        _ if is_under(path, &p.prefix) => Route::UnknownGatewayPath,
        _ => Route::Protected,
    }
}

/// `path` is `base` or below it (`base/...`).
fn is_under(path: &str, base: &str) -> bool {
    path.strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(acs: &str) -> Paths {
        Paths {
            prefix: "/saml".into(),
            login: "/saml/login".into(),
            acs: acs.into(),
            metadata: "/saml/metadata".into(),
            logout: "/saml/logout".into(),
            slo: "/saml/slo".into(),
            auth: "/saml/auth".into(),
            scim: None,
        }
    }

    #[test]
    fn scim_routes_only_when_enabled() {
        let mut p = paths("/saml/acs");
        assert_eq!(route("/scim/v2/Users", &p), Route::Protected);
        p.scim = Some("/scim/v2".into());
        assert_eq!(route("/scim/v2", &p), Route::Scim);
        assert_eq!(route("/scim/v2/Users/x", &p), Route::Scim);
        assert_eq!(route("/scim/v2x", &p), Route::Protected);
        assert_eq!(route("/scim", &p), Route::Protected);
    }

    #[test]
    fn routes() {
        let p = paths("/saml/acs");
        assert_eq!(route("/saml/acs", &p), Route::Acs);
        assert_eq!(route("/saml/login", &p), Route::Login);
        assert_eq!(route("/saml/metadata", &p), Route::Metadata);
        assert_eq!(route("/saml/logout", &p), Route::Logout);
        assert_eq!(route("/saml/slo", &p), Route::Slo);
        assert_eq!(route("/healthz", &p), Route::Healthz);
        assert_eq!(route("/readyz", &p), Route::Readyz);
        assert_eq!(route("/saml", &p), Route::UnknownGatewayPath);
        assert_eq!(route("/saml/other", &p), Route::UnknownGatewayPath);
        assert_eq!(route("/samlx", &p), Route::Protected);
        assert_eq!(route("/", &p), Route::Protected);
        assert_eq!(route("/saml/acs/", &p), Route::UnknownGatewayPath);
        assert_eq!(route("/saml/auth", &p), Route::ForwardAuth);
        assert_eq!(route("/saml/auth/api/items", &p), Route::ForwardAuth);
        assert_eq!(route("/saml/authx", &p), Route::UnknownGatewayPath);
    }

    #[test]
    fn heavy_ai_acs_path_routes_outside_the_prefix() {
        let p = paths("/saml-post");
        assert_eq!(route("/saml-post", &p), Route::Acs);
        assert_eq!(route("/saml/acs", &p), Route::UnknownGatewayPath);
    }
}
