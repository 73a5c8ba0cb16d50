//! Ending every session of one user at once: SCIM deprovisioning (`active=false`, delete)
//! and the admin API's "sign this user out everywhere" take the same path. The sessions go
//! from the store ([`SessionStore::remove_by_user`]), whose revocation signal tells every open
//! WebSocket tunnel to ask about its session now instead of at its next periodic check, so a
//! tunnel of the user closes within moments (on every replica with a shared backend).

use std::sync::Arc;

use crate::session::SessionStore;

/// Why sessions were ended, for the audit line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// SCIM set `active` to false.
    ScimDisabled,
    /// SCIM deleted the user.
    ScimDeleted,
    /// The admin API asked.
    Admin,
    /// A request arrived on a session whose user SCIM no longer admits (e.g. a session made
    /// on another replica just before the change).
    NotAdmitted,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::ScimDisabled => "scim_disabled",
            EndReason::ScimDeleted => "scim_deleted",
            EndReason::Admin => "admin",
            EndReason::NotAdmitted => "not_admitted",
        }
    }
}

pub struct Deprovisioner {
    sessions: Arc<dyn SessionStore>,
}

impl Deprovisioner {
    pub fn new(sessions: Arc<dyn SessionStore>) -> Deprovisioner {
        Deprovisioner { sessions }
    }

    /// Ends every session of `user` (case-insensitive) and wakes the tunnels. Returns how
    /// many sessions ended. Always logs an audit `sessions_ended` line.
    pub async fn end_user(&self, user: &str, reason: EndReason) -> usize {
        let ended = self.sessions.remove_by_user(user).await;
        tracing::warn!(target: "samlgate::audit", event = "sessions_ended", user = %crate::saml::error::clip(user), reason = reason.as_str(), sessions = ended);
        ended
    }

    /// The live sessions of `user`, for the admin API.
    pub async fn sessions_of(
        &self,
        user: &str,
    ) -> Vec<(crate::session::SessionKey, Arc<crate::session::Session>)> {
        self.sessions.sessions_of_user(user).await
    }
}
