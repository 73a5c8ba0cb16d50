//! The dev IdP's people: the users file (`[[users]]` tables in TOML), the built-in defaults
//! (alice, bob, carol, dave) and the password check. Pure: parsing takes text, not a path.

use serde::Deserialize;

/// One person the dev IdP can sign in.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// What is typed or picked on the login page.
    pub username: String,
    /// With a password the user must type it; without one a button signs them in.
    #[serde(default)]
    pub password: Option<String>,
    /// The `uid` attribute and the persistent NameID. Defaults to the username.
    #[serde(default)]
    pub uid: Option<String>,
    /// The `mail` attribute. Defaults to `<username>@example.com`.
    #[serde(default)]
    pub email: Option<String>,
    /// The `displayName` attribute. Defaults to the username.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The `groups` attribute, one value per group (an empty attribute when none).
    #[serde(default)]
    pub groups: Vec<String>,
}

impl User {
    pub fn uid(&self) -> &str {
        self.uid.as_deref().unwrap_or(&self.username)
    }
    pub fn email(&self) -> String {
        self.email
            .clone()
            .unwrap_or_else(|| format!("{}@example.com", self.username))
    }
    pub fn display_name(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.username)
    }
    /// Whether signing in needs the password (a quick-pick button does not ask for one).
    pub fn needs_password(&self) -> bool {
        self.password.is_some()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    users: Vec<User>,
}

fn user(name: &str, display: &str, groups: &[&str]) -> User {
    User {
        username: name.into(),
        password: None,
        uid: None,
        email: Some(format!("{name}@example.com")),
        display_name: Some(display.into()),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

/// Used when no users file is given.
pub fn default_users() -> Vec<User> {
    vec![
        user("alice", "Alice Anderson", &["analysts", "admins"]),
        user("bob", "Bob Brown", &["contractors"]),
        user("carol", "Carol Clark", &[]),
        user("dave", "Dave Davis", &["analysts"]),
    ]
}

/// Parses and checks a users file: at least one user, usernames unique and non-empty, no
/// control characters anywhere (they could not travel in a SAML attribute or a header).
pub fn parse_users(text: &str) -> Result<Vec<User>, String> {
    let file: UsersFile = toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?;
    if file.users.is_empty() {
        return Err("the users file defines no [[users]]".into());
    }
    for (i, u) in file.users.iter().enumerate() {
        let at = |what: &str| format!("users[{i}] ({:?}): {what}", u.username);
        if u.username.trim().is_empty() || u.username.trim() != u.username {
            return Err(at("username must be non-empty without surrounding spaces"));
        }
        if file.users[..i].iter().any(|o| o.username == u.username) {
            return Err(at("username appears twice"));
        }
        let texts = [
            Some(u.username.as_str()),
            u.uid.as_deref(),
            u.email.as_deref(),
            u.display_name.as_deref(),
        ];
        if texts
            .into_iter()
            .flatten()
            .chain(u.groups.iter().map(String::as_str))
            .any(|s| s.chars().any(char::is_control))
        {
            return Err(at("values must not contain control characters"));
        }
        if u.uid.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err(at("uid must not be empty"));
        }
        if u.groups.iter().any(|g| g.trim().is_empty()) {
            return Err(at("a group name is empty"));
        }
    }
    Ok(file.users)
}

/// The user a login form names, if the password fits: users with a password need exactly
/// it; users without one accept any (or no) password.
pub fn authenticate<'a>(
    users: &'a [User],
    username: &str,
    password: Option<&str>,
) -> Option<&'a User> {
    let u = users.iter().find(|u| u.username == username.trim())?;
    match &u.password {
        None => Some(u),
        Some(want) => {
            let got = password.unwrap_or("");
            // Constant time is not a goal here (development only), exactness is.
            (want.len() == got.len() && want.as_bytes() == got.as_bytes()).then_some(u)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_four() {
        let u = default_users();
        let names: Vec<&str> = u.iter().map(|u| u.username.as_str()).collect();
        assert_eq!(names, ["alice", "bob", "carol", "dave"]);
        assert_eq!(u[0].groups, ["analysts", "admins"]);
        assert_eq!(u[1].groups, ["contractors"]);
        assert!(u[2].groups.is_empty());
        assert_eq!(u[3].groups, ["analysts"]);
        assert!(u.iter().all(|u| !u.needs_password()));
        assert_eq!(u[0].email(), "alice@example.com");
        assert_eq!(u[0].uid(), "alice");
    }

    #[test]
    fn parses_a_users_file_with_defaults_for_missing_fields() {
        let users = parse_users(
            r#"
[[users]]
username = "erin"
password = "s3cret"
uid = "e.rin"
email = "erin@corp.test"
display_name = "Erin <Ops>"
groups = ["ops", "on-call"]

[[users]]
username = "frank"
"#,
        )
        .unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].uid(), "e.rin");
        assert_eq!(users[0].display_name(), "Erin <Ops>");
        assert!(users[0].needs_password());
        assert_eq!(users[1].uid(), "frank");
        assert_eq!(users[1].email(), "frank@example.com");
        assert_eq!(users[1].display_name(), "frank");
        assert!(users[1].groups.is_empty());
    }

    #[test]
    fn refuses_bad_files() {
        for (text, want) in [
            ("", "no [[users]]"),
            (
                "[[users]]\nusername = \"a\"\n[[users]]\nusername = \"a\"\n",
                "twice",
            ),
            ("[[users]]\nusername = \"\"\n", "non-empty"),
            ("[[users]]\nusername = \" a\"\n", "non-empty"),
            (
                "[[users]]\nusername = \"a\"\ncolour = \"red\"\n",
                "unknown field",
            ),
            (
                "[[users]]\nusername = \"a\"\ngroups = [\"x\\ny\"]\n",
                "control",
            ),
            (
                "[[users]]\nusername = \"a\"\ngroups = [\" \"]\n",
                "group name is empty",
            ),
            (
                "[[users]]\nusername = \"a\"\nuid = \"\"\n",
                "uid must not be empty",
            ),
            ("users = 3", "invalid type"),
        ] {
            let err = parse_users(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn password_check() {
        let users = parse_users(
            "[[users]]\nusername = \"erin\"\npassword = \"pw\"\n[[users]]\nusername = \"frank\"\n",
        )
        .unwrap();
        assert!(authenticate(&users, "erin", Some("pw")).is_some());
        assert!(authenticate(&users, "erin", Some("pw ")).is_none());
        assert!(authenticate(&users, "erin", Some("")).is_none());
        assert!(authenticate(&users, "erin", None).is_none());
        assert!(authenticate(&users, "frank", None).is_some());
        assert!(authenticate(&users, "frank", Some("anything")).is_some());
        assert!(authenticate(&users, " frank ", None).is_some());
        assert!(authenticate(&users, "mallory", None).is_none());
    }
}
