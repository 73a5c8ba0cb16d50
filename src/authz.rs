//! Who may enter once signed in: `allowed_users` and `allowed_groups`. Both empty means any
//! signed-in user; otherwise a user is admitted when their id is listed or they belong to at
//! least one listed group. A user whose groups are unknown is not in any group. The same check
//! serves an access rule's own lists (`[[access.rules]]` with `allowed_groups`/`allowed_users`),
//! which replace `[authz]` for the paths the rule matches.

use serde::Deserialize;

use crate::session::Identity;

/// `[authz]`: who may enter once signed in, on every path no access rule gives lists of its own.
#[derive(Debug, Clone, PartialEq, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AuthzSection {
    /// Admit members of any of these groups (exact, case-sensitive match).
    pub allowed_groups: Vec<String>,
    /// Admit these user ids (exact match against the user header's value).
    pub allowed_users: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// Names the groups that would have admitted the user.
    NotInAllowedGroups {
        required: Vec<String>,
    },
    NotAllowedUser,
}

impl Denial {
    pub fn reason(&self) -> String {
        match self {
            Denial::NotInAllowedGroups { required } => format!(
                "not a member of any allowed group ({})",
                required.join(", ")
            ),
            Denial::NotAllowedUser => "user is not in allowed_users".into(),
        }
    }

    /// What the person is told is missing.
    pub fn user_message(&self) -> String {
        match self {
            Denial::NotInAllowedGroups { required } => format!(
                "This application requires membership in one of these groups: {}. Ask your administrator to add you to one of them.",
                required.join(", ")
            ),
            Denial::NotAllowedUser => "Your account is not on this application's list of allowed users. Ask your administrator for access.".into(),
        }
    }
}

/// Checks the global `[authz]` lists.
pub fn authorize(id: &Identity, policy: &AuthzSection) -> Result<(), Denial> {
    authorize_lists(id, &policy.allowed_groups, &policy.allowed_users)
}

/// Checks one pair of lists: the global `[authz]` ones, or an access rule's own
/// (`rules::Requirement::Only`). Both empty admits any signed-in user.
pub fn authorize_lists(id: &Identity, groups: &[String], users: &[String]) -> Result<(), Denial> {
    if groups.is_empty() && users.is_empty() {
        return Ok(());
    }
    if users.contains(&id.user) {
        return Ok(());
    }
    if id.groups.iter().any(|g| groups.contains(g)) {
        return Ok(());
    }
    if groups.is_empty() {
        Err(Denial::NotAllowedUser)
    } else {
        Err(Denial::NotInAllowedGroups {
            required: groups.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(user: &str, groups: &[&str]) -> Identity {
        Identity {
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Identity::default()
        }
    }

    fn policy(groups: &[&str], users: &[&str]) -> AuthzSection {
        AuthzSection {
            allowed_groups: groups.iter().map(|s| s.to_string()).collect(),
            allowed_users: users.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn empty_policy_admits_everyone_signed_in() {
        assert!(authorize(&who("carol", &[]), &policy(&[], &[])).is_ok());
    }

    #[test]
    fn groups_admit_members_and_name_what_is_missing() {
        let p = policy(&["analysts"], &[]);
        assert!(authorize(&who("alice", &["admins", "analysts"]), &p).is_ok());
        let err = authorize(&who("bob", &["contractors"]), &p).unwrap_err();
        assert_eq!(
            err,
            Denial::NotInAllowedGroups {
                required: vec!["analysts".into()]
            }
        );
        assert!(err.user_message().contains("analysts"));
        assert!(
            authorize(&who("carol", &[]), &p).is_err(),
            "unknown groups never admit"
        );
    }

    #[test]
    fn group_match_is_exact() {
        let p = policy(&["admins"], &[]);
        assert!(authorize(&who("x", &["Admins"]), &p).is_err());
        assert!(authorize(&who("x", &["admins "]), &p).is_err());
    }

    #[test]
    fn users_list_admits_listed_users_either_way() {
        let p = policy(&["analysts"], &["bob"]);
        assert!(authorize(&who("bob", &[]), &p).is_ok());
        assert_eq!(
            authorize(&who("eve", &[]), &policy(&[], &["bob"])).unwrap_err(),
            Denial::NotAllowedUser
        );
    }

    #[test]
    fn rule_lists_are_checked_like_the_global_ones() {
        let groups = vec!["ops".to_string()];
        let users = vec!["dave".to_string()];
        assert!(authorize_lists(&who("x", &["ops"]), &groups, &[]).is_ok());
        assert!(authorize_lists(&who("dave", &[]), &[], &users).is_ok());
        assert!(authorize_lists(&who("dave", &[]), &groups, &users).is_ok());
        let err = authorize_lists(&who("eve", &["analysts"]), &groups, &users).unwrap_err();
        assert_eq!(
            err,
            Denial::NotInAllowedGroups {
                required: vec!["ops".into()]
            }
        );
        assert!(
            err.user_message().contains("ops"),
            "names the missing group"
        );
        assert_eq!(
            authorize_lists(&who("eve", &["ops "]), &[], &users).unwrap_err(),
            Denial::NotAllowedUser
        );
        assert!(authorize_lists(&who("anyone", &[]), &[], &[]).is_ok());
    }
}
