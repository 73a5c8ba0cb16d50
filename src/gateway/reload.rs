//! What `SIGHUP` may change while serving: the [`Policy`] (access rules, authorization,
//! identity header names, trusted proxies, rate limits, forward-auth), built from settings and
//! swapped whole, and [`Gateway::reload`], which also applies a changed IdP metadata file.

use std::sync::{Arc, PoisonError};

use http::{HeaderMap, Response};

use super::forward_auth::EnvoyRemovals;
use super::password_signin::PasswordGate;
use super::{ConnInfo, Gateway};
use crate::client_ip::TrustedProxies;
use crate::config::{AuthzSection, ForwardAuthSection, HeadersSection, Settings};
use crate::log_throttle::LogThrottle;
use crate::metrics::Metrics;
use crate::pages;
use crate::proxy::{Body, IdentityHeaders};
use crate::ratelimit::{Limit, RateLimitSection, RateLimits};
use crate::rules::AccessRules;
use crate::saml::metadata::parse_idp_metadata;
use crate::saml::verify::Verifier;

/// The settings `SIGHUP` reloads without dropping sessions or connections: access rules,
/// authorization, identity header names and attribute mapping, trusted proxies, rate limits,
/// forward-auth. Swapped whole, so each request sees one consistent version.
pub struct Policy {
    pub rules: AccessRules,
    pub authz: AuthzSection,
    pub trusted: TrustedProxies,
    /// Per-client limits; kept across a reload unless `[rate_limits]` changed.
    pub limits: Arc<RateLimits>,
    limits_section: RateLimitSection,
    /// Names to inject, plus every name used earlier in this process for stripping: an
    /// upstream may still trust a header name that a reload retired.
    pub ids: IdentityHeaders,
    /// Attribute mapping, used at sign-in (existing sessions keep their values).
    pub headers: HeadersSection,
    /// `[[roles]]` and `headers.encoding`/`attributes`, for rendering identity headers.
    pub roles: crate::identity::Roles,
    pub header_settings: crate::identity::HeaderSettings,
    pub forward_auth: ForwardAuthSection,
    pub(super) envoy_removals: EnvoyRemovals,
    /// Repeated refusals' log lines, summarised per client; kept across every reload.
    pub logs: Arc<LogThrottle>,
    /// `[password_signin]` (form and HTTP Basic), when on.
    pub password: Option<Arc<PasswordGate>>,
}

impl Policy {
    /// Fails only on what validation already refused (settings come validated).
    pub(super) fn from_settings(s: &Settings, previous: Option<&Policy>) -> Result<Policy, String> {
        let mut ids = IdentityHeaders::from_config(&s.headers);
        if let Some(p) = previous {
            ids.also_strip(&p.ids);
        }
        Ok(Policy {
            rules: AccessRules::compile(&s.access).map_err(|e| e.to_string())?,
            authz: s.authz.clone(),
            trusted: TrustedProxies::parse(&s.trusted_proxies, "server.trusted_proxies")
                .map_err(|e| e.to_string())?,
            limits: match previous {
                Some(p) if p.limits_section == s.rate_limits => p.limits.clone(),
                _ => Arc::new(RateLimits::new(&s.rate_limits).map_err(|e| e.to_string())?),
            },
            limits_section: s.rate_limits.clone(),
            envoy_removals: EnvoyRemovals::new(&ids),
            ids,
            headers: s.headers.clone(),
            roles: crate::identity::Roles::new(s.roles.clone(), s.authz.default_role.clone()),
            header_settings: crate::identity::HeaderSettings::from_config(&s.headers),
            forward_auth: s.forward_auth.clone(),
            logs: previous.map_or_else(Default::default, |p| p.logs.clone()),
            password: PasswordGate::build(s, previous)?,
        })
    }

    /// Checks `limit` for this client: `Some` is the 429 to answer (logged and counted).
    pub(super) fn over_limit(
        &self,
        limit: Limit,
        conn: ConnInfo,
        headers: &HeaderMap,
        metrics: &Metrics,
    ) -> Option<Response<Body>> {
        let retry_after = self.limits.check(limit, conn.client).err()?;
        if self.logs.audit(conn.client, "rate_limited", limit.as_str()) {
            tracing::warn!(target: "samlgate::audit", event = "rate_limited", limit = limit.as_str(), retry_after_secs = pages::retry_after_secs(retry_after), client = %conn.client);
        }
        metrics.rate_limited(limit.as_str());
        Some(pages::too_many_requests(
            retry_after,
            pages::accepts_html(headers),
        ))
    }
}

impl Gateway {
    /// Applies a reloaded configuration: the [`Policy`] part, and a changed IdP metadata file
    /// (a new verifier), are swapped in at once (sessions and open connections are
    /// untouched); nothing changes unless all of it validates. The keys that need a restart
    /// are returned (and keep running as they are).
    pub fn reload(&self, new: &Settings) -> Result<Vec<&'static str>, String> {
        let mut new = new.clone();
        // Only `[saml]`'s other keys decide whether a restart is needed: the metadata file's
        // content is applied here (file mode) or refreshes on its own (URL mode).
        let metadata_xml = std::mem::replace(
            &mut new.saml.idp_metadata_xml,
            self.settings.saml.idp_metadata_xml.clone(),
        );
        new.saml.idp_metadata_file = self.settings.saml.idp_metadata_file.clone();
        let mut applied = self
            .applied_idp_metadata
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // A changed file gets a new verifier under the running `[saml]` settings. Only when
        // the gateway runs from a file and still does: a switch between file and URL needs a
        // restart (the URL refresh task would undo the file's metadata).
        let file_mode =
            self.settings.saml.idp_metadata_url.is_none() && new.saml.idp_metadata_url.is_none();
        let next_verifier = if file_mode && metadata_xml != *applied {
            let running = &self.settings.saml;
            let idp = parse_idp_metadata(&metadata_xml, running.idp_entity_id.as_deref())
                .map_err(|e| format!("saml.idp_metadata_file: {e}"))?;
            Some((idp.signing_cert_count, Verifier::new(running, idp)))
        } else {
            None
        };
        let restart = crate::config::restart_needed(&self.settings, &new);
        let old = self.policy.load();
        let next = Policy::from_settings(&new, Some(&old))?;
        // Everything validated: apply it all.
        self.policy.store(Arc::new(next));
        if let Some((signing_certs, verifier)) = next_verifier {
            let previous = self.verifier.get();
            if previous.idp.entity_id != verifier.idp.entity_id {
                tracing::warn!(from = %previous.idp.entity_id, to = %verifier.idp.entity_id, "the reloaded IdP metadata names another IdP; existing sessions stay until they expire or the process restarts");
            }
            self.verifier.set(Arc::new(verifier));
            *applied = metadata_xml;
            tracing::info!(signing_certs, "IdP metadata file reloaded");
        }
        Ok(restart)
    }
}
