//! `[[roles]]`: role names mapped from groups or users, for a role header (Grafana's
//! `X-WEBAUTH-ROLE`) and for `allowed_roles` in access rules.
//!
//! Precedence is the file's order: the first entry whose `users` lists the user id or whose
//! `groups` shares a group with the person decides; nobody matched gets `authz.default_role`,
//! or no role at all (no role header, and every `allowed_roles` check fails). Put the most
//! privileged role first. Matching is exact and case-sensitive, like `allowed_groups`.

use serde::Deserialize;

use crate::session::Identity;

/// One `[[roles]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RoleRule {
    /// The role name sent in `headers.role` and matched by `allowed_roles` (required;
    /// letters, digits and `-_.:@/`, at most 64 characters).
    pub role: String,
    /// Members of any of these groups get the role (default: none).
    pub groups: Vec<String>,
    /// These user ids get the role (default: none). An entry needs `groups` or `users`.
    pub users: Vec<String>,
}

/// The compiled mapping: `[[roles]]` in file order plus `authz.default_role`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles {
    rules: Vec<RoleRule>,
    default_role: Option<String>,
}

/// Longest role name.
pub const MAX_ROLE_LEN: usize = 64;

/// Why a role name cannot be used, or `None`. Role names travel in a header unencoded and
/// are compared with `allowed_roles`, so they are plain ASCII tokens.
pub fn role_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("must not be empty");
    }
    if name.len() > MAX_ROLE_LEN {
        return Some("must be at most 64 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.:@/".contains(&b))
    {
        return Some("may hold only letters, digits and - _ . : @ /");
    }
    None
}

impl Roles {
    pub fn new(rules: Vec<RoleRule>, default_role: Option<String>) -> Self {
        Roles {
            rules,
            default_role,
        }
    }

    /// Whether any role can be assigned (otherwise no role header is sent).
    pub fn is_enabled(&self) -> bool {
        !self.rules.is_empty() || self.default_role.is_some()
    }

    /// Every role name the mapping can yield (for checking `allowed_roles`).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.rules
            .iter()
            .map(|r| r.role.as_str())
            .chain(self.default_role.as_deref())
    }

    /// The person's role: the first entry that names the user or one of their groups, else
    /// the default role, else none.
    pub fn role_for(&self, id: &Identity) -> Option<&str> {
        self.rules
            .iter()
            .find(|r| r.users.contains(&id.user) || id.groups.iter().any(|g| r.groups.contains(g)))
            .map(|r| r.role.as_str())
            .or(self.default_role.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(role: &str, groups: &[&str], users: &[&str]) -> RoleRule {
        RoleRule {
            role: role.into(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            users: users.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn who(user: &str, groups: &[&str]) -> Identity {
        Identity {
            user: user.into(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            ..Identity::default()
        }
    }

    #[test]
    fn first_match_wins_then_default_then_none() {
        let grafana = vec![
            rule("Admin", &["grafana-admins"], &["root@example.com"]),
            rule("Editor", &["developers", "Разработчики"], &[]),
            rule("Viewer", &["staff"], &[]),
        ];
        let with_default = Roles::new(grafana.clone(), Some("Viewer".into()));
        let without = Roles::new(grafana, None);
        /// user, groups, role with the default, role without it
        type Row<'a> = (&'a str, &'a [&'a str], Option<&'a str>, Option<&'a str>);
        let table: &[Row<'_>] = &[
            ("a", &["grafana-admins"], Some("Admin"), Some("Admin")),
            (
                "a",
                &["staff", "developers", "grafana-admins"],
                Some("Admin"),
                Some("Admin"),
            ),
            (
                "a",
                &["staff", "developers"],
                Some("Editor"),
                Some("Editor"),
            ),
            ("a", &["Разработчики"], Some("Editor"), Some("Editor")),
            ("a", &["staff"], Some("Viewer"), Some("Viewer")),
            ("root@example.com", &["staff"], Some("Admin"), Some("Admin")),
            ("a", &[], Some("Viewer"), None),
            ("a", &["Developers"], Some("Viewer"), None), // case-sensitive
            ("grafana-admins", &[], Some("Viewer"), None), // users and groups apart
        ];
        for (user, groups, want_default, want_none) in table {
            let id = who(user, groups);
            assert_eq!(
                with_default.role_for(&id),
                *want_default,
                "{user} {groups:?}"
            );
            assert_eq!(without.role_for(&id), *want_none, "{user} {groups:?}");
        }
    }

    #[test]
    fn enabled_and_names() {
        assert!(!Roles::default().is_enabled());
        assert!(Roles::new(vec![], Some("Viewer".into())).is_enabled());
        let r = Roles::new(vec![rule("Admin", &["x"], &[])], Some("Viewer".into()));
        assert_eq!(r.names().collect::<Vec<_>>(), ["Admin", "Viewer"]);
    }

    #[test]
    fn role_names_are_plain_tokens() {
        for ok in ["Admin", "Editor", "org:1/admin", "a.b-c_d@e"] {
            assert_eq!(role_name_problem(ok), None, "{ok}");
        }
        for bad in ["", "Grafana Admin", "Админ", "a,b", "a\nb", &"x".repeat(65)] {
            assert!(role_name_problem(bad).is_some(), "{bad}");
        }
    }
}
