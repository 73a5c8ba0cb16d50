//! Who may enter once signed in: `allowed_users`, `allowed_groups` and `allowed_roles`. All
//! empty means any signed-in user; otherwise a user is admitted when their id is listed, they
//! belong to at least one listed group, or the role `[[roles]]` gave them at sign-in is listed.
//! A user whose groups are unknown is not in any group; one without a role has none of the
//! roles. The same check serves an access rule's own lists (`[[access.rules]]` with
//! `allowed_groups`/`allowed_users`/`allowed_roles`), which replace `[authz]` for the paths
//! the rule matches.

use crate::config::AuthzSection;
use crate::session::Identity;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// Names the groups that would have admitted the user.
    NotInAllowedGroups {
        required: Vec<String>,
    },
    NotAllowedUser,
    /// Names the roles (and groups, if any) that would have admitted the user.
    NoAllowedRole {
        roles: Vec<String>,
        groups: Vec<String>,
        /// The role the user has, if any.
        has: Option<String>,
    },
}

impl Denial {
    pub fn reason(&self) -> String {
        match self {
            Denial::NotInAllowedGroups { required } => format!(
                "not a member of any allowed group ({})",
                required.join(", ")
            ),
            Denial::NotAllowedUser => "user is not in allowed_users".into(),
            Denial::NoAllowedRole { roles, groups, has } => format!(
                "role {} is not an allowed role ({}){}",
                has.as_deref()
                    .map_or("(none)".to_string(), |r| format!("{r:?}")),
                roles.join(", "),
                if groups.is_empty() {
                    String::new()
                } else {
                    format!(
                        " and not a member of any allowed group ({})",
                        groups.join(", ")
                    )
                }
            ),
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
            Denial::NoAllowedRole { roles, .. } => format!(
                "This application requires one of these roles: {}. Ask your administrator for access.",
                roles.join(", ")
            ),
        }
    }
}

/// The lists one check uses: `[authz]`'s, or an access rule's own.
#[derive(Debug, Clone, Copy)]
pub struct Lists<'a> {
    pub groups: &'a [String],
    pub users: &'a [String],
    pub roles: &'a [String],
}

/// Checks the global `[authz]` lists; `role` is the session's (`[[roles]]` at sign-in).
pub fn authorize(id: &Identity, role: Option<&str>, policy: &AuthzSection) -> Result<(), Denial> {
    authorize_lists(
        id,
        role,
        &Lists {
            groups: &policy.allowed_groups,
            users: &policy.allowed_users,
            roles: &policy.allowed_roles,
        },
    )
}

/// Checks one set of lists: the global `[authz]` ones, or an access rule's own
/// (`rules::Requirement::Only`). All empty admits any signed-in user.
pub fn authorize_lists(id: &Identity, role: Option<&str>, lists: &Lists<'_>) -> Result<(), Denial> {
    let Lists {
        groups,
        users,
        roles,
    } = *lists;
    if groups.is_empty() && users.is_empty() && roles.is_empty() {
        return Ok(());
    }
    if users.contains(&id.user) {
        return Ok(());
    }
    if id.groups.iter().any(|g| groups.contains(g)) {
        return Ok(());
    }
    if role.is_some_and(|r| roles.iter().any(|x| x == r)) {
        return Ok(());
    }
    if !roles.is_empty() {
        Err(Denial::NoAllowedRole {
            roles: roles.to_vec(),
            groups: groups.to_vec(),
            has: role.map(str::to_string),
        })
    } else if groups.is_empty() {
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
            ..AuthzSection::default()
        }
    }

    fn l<'a>(groups: &'a [String], users: &'a [String], roles: &'a [String]) -> Lists<'a> {
        Lists {
            groups,
            users,
            roles,
        }
    }

    #[test]
    fn roles_admit_their_holders_alongside_users_and_groups() {
        let roles = vec!["Admin".to_string(), "Editor".to_string()];
        let groups = vec!["ops".to_string()];
        let none: Vec<String> = vec![];
        let table: &[(&str, &[&str], Option<&str>, bool)] = &[
            ("x", &[], Some("Admin"), true),
            ("x", &[], Some("Editor"), true),
            ("x", &[], Some("Viewer"), false),
            ("x", &[], Some("admin"), false), // exact
            ("x", &[], None, false),
            ("x", &["ops"], None, true), // a listed group still admits
        ];
        for (user, gs, role, ok) in table {
            let got = authorize_lists(&who(user, gs), *role, &l(&groups, &none, &roles));
            assert_eq!(got.is_ok(), *ok, "{user} {gs:?} {role:?}");
        }
        let err =
            authorize_lists(&who("x", &[]), Some("Viewer"), &l(&none, &none, &roles)).unwrap_err();
        assert_eq!(
            err,
            Denial::NoAllowedRole {
                roles: roles.clone(),
                groups: vec![],
                has: Some("Viewer".into())
            }
        );
        assert_eq!(
            err.reason(),
            "role \"Viewer\" is not an allowed role (Admin, Editor)"
        );
        assert!(err.user_message().contains("Admin, Editor"));
        let global = AuthzSection {
            allowed_roles: vec!["Admin".into()],
            ..AuthzSection::default()
        };
        assert!(authorize(&who("x", &[]), Some("Admin"), &global).is_ok());
        assert!(authorize(&who("x", &[]), None, &global).is_err());
    }

    #[test]
    fn empty_policy_admits_everyone_signed_in() {
        assert!(authorize(&who("carol", &[]), None, &policy(&[], &[])).is_ok());
    }

    #[test]
    fn groups_admit_members_and_name_what_is_missing() {
        let p = policy(&["analysts"], &[]);
        assert!(authorize(&who("alice", &["admins", "analysts"]), None, &p).is_ok());
        let err = authorize(&who("bob", &["contractors"]), None, &p).unwrap_err();
        assert_eq!(
            err,
            Denial::NotInAllowedGroups {
                required: vec!["analysts".into()]
            }
        );
        assert!(err.user_message().contains("analysts"));
        assert!(
            authorize(&who("carol", &[]), None, &p).is_err(),
            "unknown groups never admit"
        );
    }

    #[test]
    fn group_match_is_exact() {
        let p = policy(&["admins"], &[]);
        assert!(authorize(&who("x", &["Admins"]), None, &p).is_err());
        assert!(authorize(&who("x", &["admins "]), None, &p).is_err());
    }

    #[test]
    fn users_list_admits_listed_users_either_way() {
        let p = policy(&["analysts"], &["bob"]);
        assert!(authorize(&who("bob", &[]), None, &p).is_ok());
        assert_eq!(
            authorize(&who("eve", &[]), None, &policy(&[], &["bob"])).unwrap_err(),
            Denial::NotAllowedUser
        );
    }

    #[test]
    fn rule_lists_are_checked_like_the_global_ones() {
        let groups = vec!["ops".to_string()];
        let users = vec!["dave".to_string()];
        assert!(authorize_lists(&who("x", &["ops"]), None, &l(&groups, &[], &[])).is_ok());
        assert!(authorize_lists(&who("dave", &[]), None, &l(&[], &users, &[])).is_ok());
        assert!(authorize_lists(&who("dave", &[]), None, &l(&groups, &users, &[])).is_ok());
        let err = authorize_lists(&who("eve", &["analysts"]), None, &l(&groups, &users, &[]))
            .unwrap_err();
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
            authorize_lists(&who("eve", &["ops "]), None, &l(&[], &users, &[])).unwrap_err(),
            Denial::NotAllowedUser
        );
        assert!(authorize_lists(&who("anyone", &[]), None, &l(&[], &[], &[])).is_ok());
    }
}
