//! User and Group resources (RFC 7643 §4) as JSON: what a client's document must hold
//! (`check_user`, `check_group`, pure), what the server owns (`id`, `meta`, `schemas`), what
//! is never stored (`password`), and how a stored resource is shown (`render`: `meta.location`,
//! `attributes` / `excludedAttributes`).

use serde_json::{json, Map, Value};

use super::filter::get_ci;

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// Longest `userName` / `displayName` / `externalId` kept (they reach logs and headers).
pub const MAX_NAME_LEN: usize = 512;
/// Most members one group holds.
pub const MAX_MEMBERS: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    User,
    Group,
}

impl Kind {
    pub fn endpoint(self) -> &'static str {
        match self {
            Kind::User => "Users",
            Kind::Group => "Groups",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Group => "Group",
        }
    }
    pub fn schema(self) -> &'static str {
        match self {
            Kind::User => USER_SCHEMA,
            Kind::Group => GROUP_SCHEMA,
        }
    }
}

/// Why a resource document was refused (SCIM 400 `invalidValue` / `invalidSyntax`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error("the body must be a JSON object")]
    NotAnObject,
    #[error("{0} is required and must be a non-empty string")]
    Required(&'static str),
    #[error("{0} is longer than {MAX_NAME_LEN} characters or holds control characters")]
    BadName(&'static str),
    #[error("{0} must be a boolean")]
    NotBoolean(&'static str),
    #[error("members must be a list of objects with a string value, at most {MAX_MEMBERS}")]
    BadMembers,
    #[error("schemas must list {0}")]
    MissingSchema(&'static str),
}

/// Server-owned attributes a client cannot set; `password` is never stored.
const DROPPED: [&str; 3] = ["id", "meta", "password"];

fn drop_server_owned(m: &mut Map<String, Value>) {
    m.retain(|k, _| !DROPPED.iter().any(|d| k.eq_ignore_ascii_case(d)));
}

fn name_ok(s: &str) -> bool {
    !s.is_empty() && s.chars().count() <= MAX_NAME_LEN && !s.chars().any(char::is_control)
}

fn required_name(m: &Map<String, Value>, key: &'static str) -> Result<String, ResourceError> {
    let v = get_ci(&Value::Object(m.clone()), key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .filter(|s| !s.trim().is_empty())
        .ok_or(ResourceError::Required(key))?;
    if !name_ok(&v) {
        return Err(ResourceError::BadName(key));
    }
    Ok(v)
}

fn check_schemas(m: &Map<String, Value>, want: &'static str) -> Result<(), ResourceError> {
    let ok = m
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("schemas"))
        .and_then(|(_, v)| v.as_array())
        .is_some_and(|a| {
            a.iter()
                .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(want)))
        });
    if ok {
        Ok(())
    } else {
        Err(ResourceError::MissingSchema(want))
    }
}

/// `"True"` / `"false"` (Entra ID) become booleans; anything else not boolean is refused.
fn coerce_bool(m: &mut Map<String, Value>, key: &'static str) -> Result<(), ResourceError> {
    let Some(k) = m.keys().find(|k| k.eq_ignore_ascii_case(key)).cloned() else {
        return Ok(());
    };
    let v = match &m[&k] {
        Value::Bool(b) => *b,
        Value::String(s) if s.eq_ignore_ascii_case("true") => true,
        Value::String(s) if s.eq_ignore_ascii_case("false") => false,
        Value::Null => {
            m.remove(&k);
            return Ok(());
        }
        _ => return Err(ResourceError::NotBoolean(key)),
    };
    m.remove(&k);
    m.insert(key.to_string(), Value::Bool(v));
    Ok(())
}

/// Puts `key`'s value under its canonical spelling.
fn canonical_key(m: &mut Map<String, Value>, key: &str) {
    if let Some(k) = m
        .keys()
        .find(|k| k.eq_ignore_ascii_case(key) && k.as_str() != key)
        .cloned()
    {
        if let Some(v) = m.remove(&k) {
            m.insert(key.to_string(), v);
        }
    }
}

/// A User document from a client, made ready to store: `userName` present and sane,
/// `active` a boolean (default true), server-owned attributes dropped. Returns it with its
/// `userName`. `require_schema`: POST/PUT bodies must name the User schema; a PATCH result
/// keeps what was stored.
pub fn check_user(
    doc: Value,
    require_schema: bool,
) -> Result<(Map<String, Value>, String), ResourceError> {
    let Value::Object(mut m) = doc else {
        return Err(ResourceError::NotAnObject);
    };
    if require_schema {
        check_schemas(&m, USER_SCHEMA)?;
    }
    drop_server_owned(&mut m);
    for k in [
        "userName",
        "externalId",
        "displayName",
        "schemas",
        "emails",
        "name",
    ] {
        canonical_key(&mut m, k);
    }
    let user_name = required_name(&m, "userName")?;
    if let Some(e) = m.get("externalId") {
        if !e.as_str().is_some_and(name_ok) {
            return Err(ResourceError::BadName("externalId"));
        }
    }
    // No `active` means active (RFC 7643 leaves the default to the provider).
    coerce_bool(&mut m, "active")?;
    if let Some(Value::Array(emails)) = m.get_mut("emails") {
        for e in emails.iter_mut() {
            if let Value::Object(em) = e {
                coerce_bool(em, "primary")?;
            }
        }
    }
    Ok((m, user_name))
}

/// A Group document from a client, made ready to store: `displayName` present, members a
/// bounded list of `{value}` objects.
pub fn check_group(
    doc: Value,
    require_schema: bool,
) -> Result<(Map<String, Value>, String), ResourceError> {
    let Value::Object(mut m) = doc else {
        return Err(ResourceError::NotAnObject);
    };
    if require_schema {
        check_schemas(&m, GROUP_SCHEMA)?;
    }
    drop_server_owned(&mut m);
    for k in ["displayName", "externalId", "members", "schemas"] {
        canonical_key(&mut m, k);
    }
    let name = required_name(&m, "displayName")?;
    match m.get_mut("members") {
        None | Some(Value::Null) => {
            m.remove("members");
        }
        Some(Value::Array(list)) => {
            if list.len() > MAX_MEMBERS {
                return Err(ResourceError::BadMembers);
            }
            for item in list.iter_mut() {
                let Value::Object(im) = item else {
                    return Err(ResourceError::BadMembers);
                };
                canonical_key(im, "value");
                if !im.get("value").and_then(Value::as_str).is_some_and(name_ok) {
                    return Err(ResourceError::BadMembers);
                }
            }
        }
        Some(_) => return Err(ResourceError::BadMembers),
    }
    Ok((m, name))
}

/// The member ids of a stored group.
pub fn member_ids(group: &Value) -> impl Iterator<Item = &str> {
    group
        .get("members")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("value").and_then(Value::as_str))
}

/// Adds the server-owned parts to a checked document: `id`, `schemas`, `meta` (created is
/// kept from `previous`, version counts writes).
pub fn finish(
    kind: Kind,
    mut m: Map<String, Value>,
    id: &str,
    previous: Option<&Value>,
    now: &str,
) -> Value {
    let created = previous
        .and_then(|p| p.pointer("/meta/created"))
        .and_then(Value::as_str)
        .unwrap_or(now)
        .to_string();
    let version = previous
        .and_then(|p| p.pointer("/meta/version"))
        .and_then(Value::as_str)
        .and_then(|v| {
            v.trim_start_matches("W/")
                .trim_matches('"')
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0)
        + 1;
    let mut schemas: Vec<Value> = match m.remove("schemas") {
        Some(Value::Array(a)) => a.into_iter().filter(|s| s.is_string()).collect(),
        _ => Vec::new(),
    };
    // Empty extension objects go; a `urn:` schema is listed exactly when its object is there.
    m.retain(|k, v| !(k.starts_with("urn:") && v.as_object().is_some_and(Map::is_empty)));
    schemas.retain(|s| {
        s.as_str().is_some_and(|s| {
            !s.starts_with("urn:") || s.eq_ignore_ascii_case(kind.schema()) || m.contains_key(s)
        })
    });
    if !schemas.iter().any(|s| {
        s.as_str()
            .is_some_and(|s| s.eq_ignore_ascii_case(kind.schema()))
    }) {
        schemas.insert(0, json!(kind.schema()));
    }
    // Extension objects present but not declared get their schema listed.
    for k in m.keys() {
        if k.starts_with("urn:") && !schemas.iter().any(|s| s.as_str() == Some(k.as_str())) {
            schemas.push(json!(k));
        }
    }
    m.insert("schemas".into(), Value::Array(schemas));
    m.insert("id".into(), json!(id));
    m.insert(
        "meta".into(),
        json!({
            "resourceType": kind.name(),
            "created": created,
            "lastModified": now,
            "version": format!("W/\"{version}\""),
        }),
    );
    Value::Object(m)
}

/// Which attributes a response shows (`attributes` / `excludedAttributes`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Projection {
    pub only: Vec<String>,
    pub excluded: Vec<String>,
}

impl Projection {
    pub fn parse(attributes: Option<&str>, excluded: Option<&str>) -> Projection {
        let list = |s: Option<&str>| -> Vec<String> {
            s.map(|s| {
                s.split(',')
                    .map(|a| {
                        let a = a.trim();
                        // `urn:…:User:name.givenName` → `name` (top level decides).
                        let a = match a.rfind(':') {
                            Some(i)
                                if a.starts_with("urn:")
                                    && super::filter::is_core_schema(&a[..i]) =>
                            {
                                &a[i + 1..]
                            }
                            _ => a,
                        };
                        a.split('.').next().unwrap_or(a).to_ascii_lowercase()
                    })
                    .filter(|a| !a.is_empty())
                    .collect()
            })
            .unwrap_or_default()
        };
        Projection {
            only: list(attributes),
            excluded: list(excluded),
        }
    }
}

/// A stored resource as a client sees it: `meta.location` added, projection applied
/// (`id`, `schemas` and `meta` are always returned, RFC 7643 §7 `returned: always`).
pub fn render(stored: &Value, base_url: &str, kind: Kind, projection: &Projection) -> Value {
    let mut v = stored.clone();
    if let Some(m) = v.as_object_mut() {
        let id = m
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if let Some(Value::Object(meta)) = m.get_mut("meta") {
            meta.insert(
                "location".into(),
                json!(format!("{base_url}/{}/{id}", kind.endpoint())),
            );
        }
        let always = |k: &str| ["id", "schemas", "meta"].contains(&k);
        if !projection.only.is_empty() {
            m.retain(|k, _| always(k) || projection.only.iter().any(|a| a.eq_ignore_ascii_case(k)));
        }
        if !projection.excluded.is_empty() {
            m.retain(|k, _| {
                always(k)
                    || !projection
                        .excluded
                        .iter()
                        .any(|a| a.eq_ignore_ascii_case(k))
            });
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_checked_and_normalised() {
        let (m, name) = check_user(
            json!({"schemas": [USER_SCHEMA], "UserName": "alice", "id": "forged",
                   "password": "p", "active": "False",
                   "emails": [{"value": "a@x", "primary": "True"}]}),
            true,
        )
        .unwrap();
        assert_eq!(name, "alice");
        assert!(m.get("id").is_none() && m.get("password").is_none());
        assert_eq!(m["active"], json!(false));
        assert_eq!(m["emails"][0]["primary"], json!(true));

        let table = [
            (json!([]), ResourceError::NotAnObject),
            (
                json!({"userName": "a"}),
                ResourceError::MissingSchema(USER_SCHEMA),
            ),
            (
                json!({"schemas": [USER_SCHEMA]}),
                ResourceError::Required("userName"),
            ),
            (
                json!({"schemas": [USER_SCHEMA], "userName": " "}),
                ResourceError::Required("userName"),
            ),
            (
                json!({"schemas": [USER_SCHEMA], "userName": "a\nb"}),
                ResourceError::BadName("userName"),
            ),
            (
                json!({"schemas": [USER_SCHEMA], "userName": "a", "active": "maybe"}),
                ResourceError::NotBoolean("active"),
            ),
            (
                json!({"schemas": [USER_SCHEMA], "userName": "a", "externalId": 5}),
                ResourceError::BadName("externalId"),
            ),
        ];
        for (doc, want) in table {
            assert_eq!(check_user(doc.clone(), true).unwrap_err(), want, "{doc}");
        }
    }

    #[test]
    fn groups_are_checked() {
        let (m, name) = check_group(
            json!({"schemas": [GROUP_SCHEMA], "displayName": "Admins", "members": [{"Value": "u1"}]}),
            true,
        )
        .unwrap();
        assert_eq!(name, "Admins");
        assert_eq!(member_ids(&Value::Object(m)).collect::<Vec<_>>(), ["u1"]);
        for bad in [
            json!({"schemas": [GROUP_SCHEMA], "displayName": "A", "members": "u1"}),
            json!({"schemas": [GROUP_SCHEMA], "displayName": "A", "members": [{"display": "x"}]}),
            json!({"schemas": [GROUP_SCHEMA], "displayName": "A", "members": ["u1"]}),
        ] {
            assert_eq!(
                check_group(bad, true).unwrap_err(),
                ResourceError::BadMembers
            );
        }
    }

    #[test]
    fn rendering_adds_location_and_projects() {
        let (m, _) = check_user(
            json!({"schemas": [USER_SCHEMA], "userName": "a", "title": "t"}),
            true,
        )
        .unwrap();
        let stored = finish(Kind::User, m, "u1", None, "2026-12-06T00:00:00Z");
        assert_eq!(stored["meta"]["version"], "W/\"1\"");
        let again = finish(
            Kind::User,
            stored.as_object().unwrap().clone(),
            "u1",
            Some(&stored),
            "later",
        );
        assert_eq!(again["meta"]["version"], "W/\"2\"");
        assert_eq!(again["meta"]["created"], "2026-12-06T00:00:00Z");
        let shown = render(
            &stored,
            "https://gw/scim/v2",
            Kind::User,
            &Projection::parse(Some("userName"), None),
        );
        assert_eq!(shown["meta"]["location"], "https://gw/scim/v2/Users/u1");
        assert_eq!(shown["userName"], "a");
        assert!(shown.get("title").is_none() && shown.get("id").is_some());
        let shown = render(
            &stored,
            "b",
            Kind::User,
            &Projection::parse(
                None,
                Some("title,urn:ietf:params:scim:schemas:core:2.0:User:active"),
            ),
        );
        assert!(
            shown.get("title").is_none()
                && shown.get("active").is_none()
                && shown.get("userName").is_some()
        );
    }
}
