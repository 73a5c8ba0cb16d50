//! The `ldap` password source: search-then-bind with a service account (or a direct bind with
//! a DN template), groups from `memberOf` or a group search, over LDAPS or StartTLS with the
//! server's certificate verified (rustls, ring; cleartext only to loopback, see
//! `settings::check_transport`). Connections are reused: a small pool of open connections, each
//! bound afresh for every check. Every user-typed value reaches LDAP only through
//! [`super::escape`]. An unknown user costs a bind too (to a DN that does not exist, with the
//! typed password), so the directory's answer time does not reveal which names exist.
//! [`identity_from_entry`] and [`group_names`] are pure; [`LdapSource`] does the I/O.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, SearchOptions};
use rustls::ClientConfig;

use super::escape::{self, Context};
use super::settings::{BindMode, GroupSource, LdapSettings};
use crate::session::Identity;

/// LDAP result codes the flow tells apart.
const RC_SUCCESS: u32 = 0;
const RC_SIZE_LIMIT: u32 = 4;
const RC_INVALID_CREDENTIALS: u32 = 49;
/// Most groups kept for one user (the rest are dropped, with a warning).
const MAX_GROUPS: usize = 256;

/// What the directory said about a user name and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LdapAnswer {
    Accepted(Box<Identity>),
    /// No entry matched (search-then-bind). A dummy bind was still made.
    UnknownUser,
    /// More than one entry matched the filter: refused (the filter is too loose).
    Ambiguous,
    /// The bind was refused (invalid credentials; with a direct bind also an unknown name).
    WrongPassword,
}

/// The directory could not give an answer: the reason is for the log (never a password).
#[derive(Debug, thiserror::Error)]
pub enum LdapError {
    #[error("cannot connect to {url}: {why}")]
    Connect { url: String, why: String },
    #[error("LDAP {op} failed: {why}")]
    Operation { op: &'static str, why: String },
    #[error("LDAP {op} answered result code {rc} ({text})")]
    Code {
        op: &'static str,
        rc: u32,
        text: String,
    },
    #[error("the LDAP service account's bind was refused (result code {0})")]
    ServiceBind(u32),
    #[error("the LDAP check took longer than {0:?}")]
    Timeout(Duration),
    #[error("a search result could not be decoded")]
    Decode,
}

/// The LDAP source, built once per policy.
pub struct LdapSource {
    settings: LdapSettings,
    tls: Option<Arc<ClientConfig>>,
    idle: Mutex<Vec<Ldap>>,
    /// Binds with a user's password (real or dummy): the work an answer cost, for tests.
    password_binds: AtomicU64,
}

impl LdapSource {
    pub fn new(settings: LdapSettings) -> Result<LdapSource, String> {
        let tls = needs_tls(&settings)
            .then(|| client_config(&settings.ca_certs))
            .transpose()?;
        Ok(LdapSource {
            settings,
            tls,
            idle: Mutex::new(Vec::new()),
            password_binds: AtomicU64::new(0),
        })
    }

    /// Binds made with a client's password so far (real or dummy).
    pub fn password_binds(&self) -> u64 {
        self.password_binds.load(Ordering::Relaxed)
    }

    /// Checks `user` and `password` (both non-empty: the caller refuses empty ones). The whole
    /// check is bounded by four operation timeouts.
    pub async fn verify(&self, user: &str, password: &str) -> Result<LdapAnswer, LdapError> {
        let bound = self.settings.timeout * 4 + self.settings.connect_timeout;
        match tokio::time::timeout(bound, self.verify_unbounded(user, password)).await {
            Ok(answer) => answer,
            Err(_) => Err(LdapError::Timeout(bound)),
        }
    }

    async fn verify_unbounded(&self, user: &str, password: &str) -> Result<LdapAnswer, LdapError> {
        let mut ldap = self.connection().await?;
        let answer = match &self.settings.mode {
            BindMode::SearchThenBind { .. } => {
                self.search_then_bind(&mut ldap, user, password).await
            }
            BindMode::Direct { user_dn_template } => {
                let dn = escape::fill(user_dn_template, "user", user, Context::Dn);
                self.direct_bind(&mut ldap, &dn, user, password).await
            }
        };
        // A connection that failed mid-way is dropped, not reused.
        if answer.is_ok() {
            self.give_back(ldap);
        }
        answer
    }

    async fn search_then_bind(
        &self,
        ldap: &mut Ldap,
        user: &str,
        password: &str,
    ) -> Result<LdapAnswer, LdapError> {
        let BindMode::SearchThenBind {
            user_base,
            user_filter,
            ..
        } = &self.settings.mode
        else {
            return Err(LdapError::Decode);
        };
        self.service_bind(ldap).await?;
        let filter = escape::fill(user_filter, "user", user, Context::Filter);
        let entries = self
            .search(ldap, user_base, Scope::Subtree, &filter, 2)
            .await?;
        let entry = match entries.as_slice() {
            [one] => one.clone(),
            found => {
                // Same cost as a real check: one bind with the typed password, to a DN that
                // does not exist (invalid credentials, whatever the password).
                let dummy = format!("cn=samlgate-no-such-user,{user_base}");
                let _ = self.password_bind(ldap, &dummy, password).await?;
                return Ok(if found.is_empty() {
                    LdapAnswer::UnknownUser
                } else {
                    LdapAnswer::Ambiguous
                });
            }
        };
        if !self.password_bind(ldap, &entry.dn, password).await? {
            return Ok(LdapAnswer::WrongPassword);
        }
        let groups = match self.settings.section.groups {
            GroupSource::Search => {
                self.service_bind(ldap).await?;
                self.search_groups(ldap, &entry.dn, user).await?
            }
            GroupSource::MemberOf => group_names(
                entry_values(&entry.attrs, &self.settings.section.member_of_attribute),
                &self.settings.section.group_name_attribute,
            ),
            GroupSource::None => Vec::new(),
        };
        Ok(LdapAnswer::Accepted(Box::new(identity_from_entry(
            &entry.attrs,
            user,
            groups,
            &self.settings,
        ))))
    }

    async fn direct_bind(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        user: &str,
        password: &str,
    ) -> Result<LdapAnswer, LdapError> {
        if !self.password_bind(ldap, dn, password).await? {
            return Ok(LdapAnswer::WrongPassword);
        }
        // Read the user's own entry for its attributes (as the user: it may read itself).
        let entries = self
            .search(ldap, dn, Scope::Base, "(objectClass=*)", 1)
            .await
            .unwrap_or_default();
        let attrs = entries.first().map(|e| e.attrs.clone()).unwrap_or_default();
        let groups = match self.settings.section.groups {
            GroupSource::Search => self.search_groups(ldap, dn, user).await?,
            GroupSource::MemberOf => group_names(
                entry_values(&attrs, &self.settings.section.member_of_attribute),
                &self.settings.section.group_name_attribute,
            ),
            GroupSource::None => Vec::new(),
        };
        Ok(LdapAnswer::Accepted(Box::new(identity_from_entry(
            &attrs,
            user,
            groups,
            &self.settings,
        ))))
    }

    async fn search_groups(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        user: &str,
    ) -> Result<Vec<String>, LdapError> {
        let s = &self.settings.section;
        let filter = escape::fill(&s.group_filter, "dn", dn, Context::Filter);
        let filter = escape::fill(&filter, "user", user, Context::Filter);
        let limit = i32::try_from(MAX_GROUPS).unwrap_or(i32::MAX);
        let entries = self
            .search(ldap, &s.group_base, Scope::Subtree, &filter, limit)
            .await?;
        let mut groups = Vec::new();
        for e in &entries {
            for name in entry_values(&e.attrs, &s.group_name_attribute) {
                push_group(&mut groups, name);
            }
        }
        Ok(groups)
    }

    /// Binds as the service account; a refusal is a configuration fault, not the user's.
    async fn service_bind(&self, ldap: &mut Ldap) -> Result<(), LdapError> {
        let BindMode::SearchThenBind {
            bind_dn,
            bind_password,
            ..
        } = &self.settings.mode
        else {
            return Ok(());
        };
        let result = ldap
            .with_timeout(self.settings.timeout)
            .simple_bind(bind_dn, bind_password)
            .await
            .map_err(|e| LdapError::Operation {
                op: "service bind",
                why: e.to_string(),
            })?;
        match result.rc {
            RC_SUCCESS => Ok(()),
            rc => Err(LdapError::ServiceBind(rc)),
        }
    }

    /// Binds with a client's password: `true` accepted, `false` invalid credentials. Never
    /// called with an empty password (an unauthenticated bind would "succeed").
    async fn password_bind(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        password: &str,
    ) -> Result<bool, LdapError> {
        if password.is_empty() {
            return Ok(false);
        }
        self.password_binds.fetch_add(1, Ordering::Relaxed);
        let result = ldap
            .with_timeout(self.settings.timeout)
            .simple_bind(dn, password)
            .await
            .map_err(|e| LdapError::Operation {
                op: "bind",
                why: e.to_string(),
            })?;
        match result.rc {
            RC_SUCCESS => Ok(true),
            RC_INVALID_CREDENTIALS => Ok(false),
            rc => Err(LdapError::Code {
                op: "bind",
                rc,
                text: result.text,
            }),
        }
    }

    async fn search(
        &self,
        ldap: &mut Ldap,
        base: &str,
        scope: Scope,
        filter: &str,
        size_limit: i32,
    ) -> Result<Vec<SearchEntry>, LdapError> {
        let s = &self.settings.section;
        let attrs = [
            s.user_attribute.as_str(),
            s.email_attribute.as_str(),
            s.display_name_attribute.as_str(),
            s.member_of_attribute.as_str(),
            s.group_name_attribute.as_str(),
        ];
        let result = ldap
            .with_search_options(SearchOptions::new().sizelimit(size_limit))
            .with_timeout(self.settings.timeout)
            .search(base, scope, filter, attrs)
            .await
            .map_err(|e| LdapError::Operation {
                op: "search",
                why: e.to_string(),
            })?;
        let (entries, outcome) = (result.0, result.1);
        if outcome.rc != RC_SUCCESS && outcome.rc != RC_SIZE_LIMIT {
            return Err(LdapError::Code {
                op: "search",
                rc: outcome.rc,
                text: outcome.text,
            });
        }
        // `SearchEntry::construct` panics on undecodable BER; a broken server must not take
        // the request task down with it.
        std::panic::catch_unwind(move || {
            entries
                .into_iter()
                .map(SearchEntry::construct)
                .collect::<Vec<_>>()
        })
        .map_err(|_| LdapError::Decode)
    }

    /// An open connection: an idle one from the pool, or a new one.
    async fn connection(&self) -> Result<Ldap, LdapError> {
        loop {
            let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
            match idle {
                Some(mut ldap) => {
                    if !ldap.is_closed() {
                        return Ok(ldap);
                    }
                }
                None => return self.connect().await,
            }
        }
    }

    fn give_back(&self, ldap: Ldap) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.settings.section.pool_size {
                idle.push(ldap);
            }
        }
    }

    async fn connect(&self) -> Result<Ldap, LdapError> {
        let mut conn_settings = LdapConnSettings::new()
            .set_conn_timeout(self.settings.connect_timeout)
            .set_starttls(self.settings.starttls);
        if let Some(tls) = &self.tls {
            conn_settings = conn_settings.set_config(tls.clone());
        }
        let url = self.settings.url.as_str();
        let (conn, ldap) = LdapConnAsync::with_settings(conn_settings, url)
            .await
            .map_err(|e| LdapError::Connect {
                url: url.to_string(),
                why: e.to_string(),
            })?;
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "LDAP connection ended");
            }
        });
        Ok(ldap)
    }
}

fn needs_tls(s: &LdapSettings) -> bool {
    s.starttls || s.url.scheme() == "ldaps"
}

/// The rustls client config: ring, TLS 1.2+, the operator's CA file or the system's roots.
fn client_config(ca_certs: &[Vec<u8>]) -> Result<Arc<ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    if ca_certs.is_empty() {
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
    } else {
        for der in ca_certs {
            roots
                .add(rustls_pki_types::CertificateDer::from(der.clone()))
                .map_err(|e| format!("ldap.ca_file: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The values of `attribute` (case-insensitive, as LDAP attribute names are).
fn entry_values<'a>(attrs: &'a HashMap<String, Vec<String>>, attribute: &str) -> &'a [String] {
    attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attribute))
        .map_or(&[], |(_, v)| v.as_slice())
}

fn push_group(groups: &mut Vec<String>, name: &str) {
    if groups.len() < MAX_GROUPS
        && !name.is_empty()
        && !name.chars().any(char::is_control)
        && !groups.iter().any(|g| g == name)
    {
        groups.push(name.to_string());
    }
}

/// Group names from `memberOf` DNs: the value of each DN's first RDN when that RDN is
/// `name_attribute` (`cn=engineers,ou=groups,…` → `engineers`); other DNs are skipped.
pub fn group_names(dns: &[String], name_attribute: &str) -> Vec<String> {
    let mut groups = Vec::new();
    for dn in dns {
        if let Some(name) = escape::first_rdn_value(dn, name_attribute) {
            push_group(&mut groups, &name);
        }
    }
    groups
}

/// The identity a directory entry gives: the user attribute's value (else the typed name),
/// e-mail and display name when single-valued and clean, and the groups.
pub fn identity_from_entry(
    attrs: &HashMap<String, Vec<String>>,
    typed_user: &str,
    groups: Vec<String>,
    settings: &LdapSettings,
) -> Identity {
    let s = &settings.section;
    let single = |attribute: &str| match entry_values(attrs, attribute) {
        [one] if !one.is_empty() && !one.chars().any(char::is_control) => Some(one.clone()),
        _ => None,
    };
    let user = single(&s.user_attribute).unwrap_or_else(|| typed_user.to_string());
    Identity {
        name_id: user.clone(),
        preferred_username: Some(user.clone()),
        user,
        email: single(&s.email_attribute),
        display_name: single(&s.display_name_attribute),
        groups,
        name_id_format: None,
        session_index: None,
        attributes: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::password::settings::LdapSection;

    fn settings() -> LdapSettings {
        LdapSettings {
            url: url::Url::parse("ldap://127.0.0.1:389").unwrap(),
            starttls: false,
            ca_certs: Vec::new(),
            mode: BindMode::Direct {
                user_dn_template: "uid={user},dc=x".into(),
            },
            section: LdapSection::default(),
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn member_of_dns_become_group_names() {
        let dns: Vec<String> = [
            "cn=engineers,ou=groups,dc=example,dc=test",
            "CN=Domain Users,CN=Users,DC=corp,DC=test",
            "ou=not-a-group,dc=x",
            "cn=engineers,ou=other,dc=x",
            "cn=bad\u{7}name,dc=x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(group_names(&dns, "cn"), vec!["engineers", "Domain Users"]);
    }

    #[test]
    fn identities_take_clean_single_values() {
        let mut attrs = HashMap::new();
        attrs.insert("uid".to_string(), vec!["alice".to_string()]);
        attrs.insert("MAIL".to_string(), vec!["alice@example.test".to_string()]);
        attrs.insert("cn".to_string(), vec!["A".to_string(), "B".to_string()]);
        let id = identity_from_entry(&attrs, "ALICE", vec!["g".into()], &settings());
        assert_eq!(id.user, "alice");
        assert_eq!(id.email.as_deref(), Some("alice@example.test"));
        assert_eq!(id.display_name, None, "two values: none chosen");
        assert_eq!(id.groups, vec!["g"]);
        let bare = identity_from_entry(&HashMap::new(), "bob", vec![], &settings());
        assert_eq!(bare.user, "bob");
        let mut evil = HashMap::new();
        evil.insert("uid".to_string(), vec!["a\r\nX-Injected: 1".to_string()]);
        assert_eq!(
            identity_from_entry(&evil, "a", vec![], &settings()).user,
            "a"
        );
    }
}
