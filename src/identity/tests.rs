//! Table tests for rendering identity headers and validating their settings.

use super::*;
use crate::rules::RuleSection;

fn who(user: &str, groups: &[&str]) -> Identity {
    Identity {
        user: user.into(),
        email: Some(format!("{user}@example.com")),
        display_name: Some("Zoë Łukasiewicz".into()),
        groups: groups.iter().map(|s| s.to_string()).collect(),
        ..Identity::default()
    }
}

fn settings(encoding: HeaderEncoding) -> HeaderSettings {
    HeaderSettings {
        encoding,
        separator: ",".into(),
        attributes: vec![(
            "department".into(),
            HeaderName::from_static("x-forwarded-department"),
        )],
    }
}

fn grafana_roles() -> Roles {
    Roles::new(
        vec![
            RoleRule {
                role: "Admin".into(),
                groups: vec!["Администраторы".into()],
                users: vec![],
            },
            RoleRule {
                role: "Editor".into(),
                groups: vec!["Разработчики".into()],
                users: vec![],
            },
        ],
        Some("Viewer".into()),
    )
}

fn text(v: &HeaderValue) -> &str {
    v.to_str().unwrap()
}

#[test]
fn each_encoding_renders_the_same_identity() {
    let mut id = who("zoe", &["Разработчики", "staff"]);
    id.attributes = vec![("department".into(), vec!["Отдел №1".into(), "R&D".into()])];
    let roles = grafana_roles();
    let table: &[(HeaderEncoding, &str, &str, &str)] = &[
        (
            HeaderEncoding::Rfc2047,
            "=?UTF-8?B?Wm/DqyDFgXVrYXNpZXdpY3o=?=",
            "=?UTF-8?B?0KDQsNC30YDQsNCx0L7RgtGH0LjQutC4?=,staff",
            "=?UTF-8?B?0J7RgtC00LXQuyDihJYx?=,R&D",
        ),
        (
            HeaderEncoding::QuotedPrintable,
            "Zo=C3=AB =C5=81ukasiewicz",
            "=D0=A0=D0=B0=D0=B7=D1=80=D0=B0=D0=B1=D0=BE=D1=82=D1=87=D0=B8=D0=BA=D0=B8,staff",
            "=D0=9E=D1=82=D0=B4=D0=B5=D0=BB =E2=84=961,R&D",
        ),
        (
            HeaderEncoding::Percent,
            "Zo%C3%AB %C5%81ukasiewicz",
            "%D0%A0%D0%B0%D0%B7%D1%80%D0%B0%D0%B1%D0%BE%D1%82%D1%87%D0%B8%D0%BA%D0%B8,staff",
            "%D0%9E%D1%82%D0%B4%D0%B5%D0%BB %E2%84%961,R&D",
        ),
    ];
    for (enc, name, groups, dept) in table {
        let v = render_identity_headers(&id, &roles, &settings(*enc)).unwrap();
        assert_eq!(text(&v.user), "zoe", "{enc:?}");
        assert_eq!(text(v.email.as_ref().unwrap()), "zoe@example.com");
        assert_eq!(
            text(v.preferred_username.as_ref().unwrap()),
            *name,
            "{enc:?}"
        );
        assert_eq!(text(v.groups.as_ref().unwrap()), *groups, "{enc:?}");
        assert_eq!(v.role_name.as_deref(), Some("Editor"));
        assert_eq!(text(v.role.as_ref().unwrap()), "Editor");
        assert_eq!(v.attributes.len(), 1);
        assert_eq!(v.attributes[0].0, "x-forwarded-department");
        assert_eq!(text(&v.attributes[0].1), *dept, "{enc:?}");
    }
    let raw = render_identity_headers(&id, &roles, &settings(HeaderEncoding::Raw)).unwrap();
    assert_eq!(
        raw.preferred_username.unwrap().as_bytes(),
        "Zoë Łukasiewicz".as_bytes()
    );
}

#[test]
fn refuse_names_the_value_that_is_not_ascii() {
    let roles = Roles::default();
    let cfg = settings(HeaderEncoding::Refuse);
    let mut ascii = who("zoe", &["staff"]);
    ascii.display_name = Some("Zoe L".into());
    assert!(render_identity_headers(&ascii, &roles, &cfg).is_ok());
    let e = render_identity_headers(&who("zoe", &["staff"]), &roles, &cfg).unwrap_err();
    assert_eq!(e.field, "display name");
    assert_eq!(e.problem, Unencodable::NonAscii);
    assert_eq!(
        e.reason(),
        "the display name value is not ASCII and headers.encoding = \"refuse\""
    );
    let mut cyr = ascii.clone();
    cyr.groups = vec!["Разработчики".into()];
    assert_eq!(
        render_identity_headers(&cyr, &roles, &cfg)
            .unwrap_err()
            .field,
        "groups"
    );
    let mut user = ascii.clone();
    user.user = "zoë".into();
    assert_eq!(
        render_identity_headers(&user, &roles, &cfg)
            .unwrap_err()
            .field,
        "user"
    );
    let mut comma = ascii;
    comma.groups = vec!["a,b".into()];
    let e = render_identity_headers(&comma, &roles, &cfg).unwrap_err();
    assert_eq!(e.problem, Unencodable::HoldsSeparator);
}

#[test]
fn no_role_header_without_a_mapping_and_control_characters_never_render() {
    let mut id = who("alice", &["x\ny", "ok"]);
    id.email = Some("a@b\r\nX-Evil: 1".into());
    id.attributes = vec![("department".into(), vec!["\u{7}".into()])];
    let v = render_identity_headers(&id, &Roles::default(), &settings(HeaderEncoding::Rfc2047))
        .unwrap();
    assert!(v.role.is_none() && v.role_name.is_none());
    assert!(v.email.is_none());
    assert_eq!(text(v.groups.as_ref().unwrap()), "ok");
    assert!(v.attributes.is_empty());
    let mut bad = who("al\nice", &[]);
    bad.display_name = None;
    let e = render_identity_headers(&bad, &Roles::default(), &settings(HeaderEncoding::Raw))
        .unwrap_err();
    assert_eq!(
        (e.field.as_str(), e.problem),
        ("user", Unencodable::NotHeaderText)
    );
}

#[test]
fn forwarded_attributes_by_name_or_friendly_name() {
    let attrs = vec![
        Attribute {
            name: "urn:oid:2.5.4.11".into(),
            friendly_name: Some("department".into()),
            values: vec!["R&D".into(), "".into(), "R&D".into(), "Ops\r\n".into()],
        },
        Attribute {
            name: "title".into(),
            friendly_name: None,
            values: vec!["Boss".into()],
        },
    ];
    let got = forwarded_attributes(&attrs, &settings(HeaderEncoding::Rfc2047));
    assert_eq!(
        got,
        vec![("department".to_string(), vec!["R&D".to_string()])]
    );
}

#[test]
fn envoy_removal_list_drops_carried_attributes() {
    let list = HeaderValue::from_static("x-forwarded-role,x-forwarded-department,remote-user");
    let mut v = render_identity_headers(
        &who("a", &[]),
        &Roles::default(),
        &settings(HeaderEncoding::Rfc2047),
    )
    .unwrap();
    v.attributes = vec![(
        HeaderName::from_static("x-forwarded-department"),
        HeaderValue::from_static("x"),
    )];
    assert_eq!(
        without_carried_attributes(&list, &v).unwrap(),
        "x-forwarded-role,remote-user"
    );
    v.attributes = vec![(
        HeaderName::from_static("x_forwarded_department"),
        HeaderValue::from_static("x"),
    )];
    assert_eq!(
        without_carried_attributes(&list, &v).unwrap(),
        "x-forwarded-role,remote-user",
        "an `_` spelling is the same header"
    );
    let only = HeaderValue::from_static("x-forwarded-department");
    assert!(without_carried_attributes(&only, &v).is_none());
}

fn check(
    h: &HeadersSection,
    roles: &[RoleRule],
    authz: &AuthzSection,
    access: &AccessSection,
) -> Result<(), ConfigError> {
    validate(h, roles, authz, access, crate::config::header_name)
}

#[test]
fn settings_are_validated_with_the_key_named() {
    let h = HeadersSection::default();
    let roles = vec![RoleRule {
        role: "Admin".into(),
        groups: vec!["admins".into()],
        users: vec![],
    }];
    let authz = AuthzSection::default();
    let access = AccessSection::default();
    assert!(check(&h, &roles, &authz, &access).is_ok());

    let key =
        |h: &HeadersSection, roles: &[RoleRule], authz: &AuthzSection, access: &AccessSection| {
            check(h, roles, authz, access).unwrap_err().key
        };
    let mut sep = h.clone();
    sep.groups_separator = " ".into();
    assert_eq!(
        key(&sep, &roles, &authz, &access),
        "headers.groups_separator"
    );
    sep.encoding = HeaderEncoding::Raw;
    assert!(check(&sep, &roles, &authz, &access).is_ok());

    let mut role_header = h.clone();
    role_header.role = "X-Forwarded-User".into();
    assert_eq!(key(&role_header, &roles, &authz, &access), "headers.role");
    role_header.role = "Cookie".into();
    assert_eq!(key(&role_header, &roles, &authz, &access), "headers.role");

    for (header, why) in [
        ("X-Forwarded-Email", "identity header"),
        ("x_forwarded_role", "role header, other spelling"),
        ("X-Original-URL", "routing header"),
        ("Connection", "hop-by-hop"),
        ("bad header", "not a name"),
    ] {
        let mut a = h.clone();
        a.attributes.insert("department".into(), header.into());
        assert_eq!(
            key(&a, &roles, &authz, &access),
            "headers.attributes.department",
            "{why}"
        );
    }
    let mut two = h.clone();
    two.attributes.insert("a".into(), "X-Dept".into());
    two.attributes.insert("b".into(), "x_dept".into());
    assert_eq!(key(&two, &roles, &authz, &access), "headers.attributes.b");
    let mut many = h.clone();
    for i in 0..=MAX_FORWARDED_ATTRIBUTES {
        many.attributes.insert(format!("a{i}"), format!("X-A{i}"));
    }
    assert_eq!(key(&many, &roles, &authz, &access), "headers.attributes");

    let bad_role = vec![RoleRule {
        role: "Grafana Admin".into(),
        groups: vec!["x".into()],
        users: vec![],
    }];
    assert_eq!(key(&h, &bad_role, &authz, &access), "roles[0].role");
    let nobody = vec![RoleRule {
        role: "Admin".into(),
        ..RoleRule::default()
    }];
    assert_eq!(key(&h, &nobody, &authz, &access), "roles[0]");
    let empty = vec![RoleRule {
        role: "Admin".into(),
        users: vec![String::new()],
        ..RoleRule::default()
    }];
    assert_eq!(key(&h, &empty, &authz, &access), "roles[0].users");

    let unknown = AuthzSection {
        allowed_roles: vec!["Admn".into()],
        ..AuthzSection::default()
    };
    let e = check(&h, &roles, &unknown, &access).unwrap_err();
    assert_eq!(e.key, "authz.allowed_roles");
    assert!(e.message.contains("\"Admn\""), "{e}");
    let by_default = AuthzSection {
        allowed_roles: vec!["Viewer".into()],
        default_role: Some("Viewer".into()),
        ..AuthzSection::default()
    };
    assert!(check(&h, &[], &by_default, &access).is_ok());
    let bad_default = AuthzSection {
        default_role: Some("a b".into()),
        ..AuthzSection::default()
    };
    assert_eq!(key(&h, &[], &bad_default, &access), "authz.default_role");
    let rule_roles = AccessSection {
        rules: vec![RuleSection {
            action: "authenticate".into(),
            path_prefix: Some("/admin/".into()),
            allowed_roles: vec!["Editor".into()],
            ..RuleSection::default()
        }],
        ..AccessSection::default()
    };
    assert_eq!(
        key(&h, &roles, &authz, &rule_roles),
        "access.rules[0].allowed_roles"
    );
}

#[test]
fn the_toml_and_environment_spellings_parse() {
    let text = r#"
[headers]
encoding = "quoted-printable"
role = "X-WEBAUTH-ROLE"

[headers.attributes]
department = "X-Forwarded-Department"

[authz]
allowed_roles = ["Admin"]
default_role = "Viewer"

[[roles]]
role = "Admin"
groups = ["admins"]

[[roles]]
role = "Editor"
users = ["zoe"]
"#;
    let f = crate::config::parse_with_env(text, &[]).unwrap();
    assert_eq!(f.headers.encoding, HeaderEncoding::QuotedPrintable);
    assert_eq!(f.headers.role, "X-WEBAUTH-ROLE");
    assert_eq!(f.headers.attributes["department"], "X-Forwarded-Department");
    assert_eq!(f.roles.len(), 2);
    assert_eq!(f.roles[1].users, ["zoe"]);
    assert_eq!(f.authz.default_role.as_deref(), Some("Viewer"));
    assert!(check(&f.headers, &f.roles, &f.authz, &f.access).is_ok());

    let env = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
    let f =
        crate::config::parse_with_env("", &env("SAMLGATE_HEADERS_ENCODING", "percent")).unwrap();
    assert_eq!(f.headers.encoding, HeaderEncoding::Percent);
    let f =
        crate::config::parse_with_env("", &env("SAMLGATE_AUTHZ_ALLOWED_ROLES", "Admin, Editor"))
            .unwrap();
    assert_eq!(f.authz.allowed_roles, ["Admin", "Editor"]);
    assert!(crate::config::parse_with_env("[headers]\nencoding = \"utf8\"\n", &[]).is_err());
    assert!(
        crate::config::parse_with_env("[[roles]]\nrole = \"A\"\ngroup = [\"x\"]\n", &[]).is_err()
    );
    // Defaults: RFC 2047, X-Forwarded-Role, nothing forwarded, no roles.
    let f = crate::config::parse_with_env("", &[]).unwrap();
    assert_eq!(f.headers.encoding, HeaderEncoding::Rfc2047);
    assert_eq!(f.headers.role, "X-Forwarded-Role");
    assert!(f.headers.attributes.is_empty() && f.roles.is_empty());
}
