//! The discovery endpoints (RFC 7644 §4): `ServiceProviderConfig`, `ResourceTypes` and
//! `Schemas`, built once as JSON from the settings (pure).

use serde_json::{json, Value};

use super::resources::{ENTERPRISE_SCHEMA, GROUP_SCHEMA, LIST_SCHEMA, USER_SCHEMA};

const SPC_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
const RT_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

pub fn service_provider_config(base: &str, max_results: usize, max_body: usize) -> Value {
    json!({
        "schemas": [SPC_SCHEMA],
        "documentationUri": "https://github.com/samlgate/samlgate/blob/main/docs/scim.md",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": max_body},
        "filter": {"supported": true, "maxResults": max_results},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": false},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "Authentication with a bearer token from scim.token_files",
            "primary": true
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")}
    })
}

pub fn resource_types(base: &str) -> Vec<Value> {
    vec![
        json!({
            "schemas": [RT_SCHEMA], "id": "User", "name": "User", "endpoint": "/Users",
            "description": "User Account", "schema": USER_SCHEMA,
            "schemaExtensions": [{"schema": ENTERPRISE_SCHEMA, "required": false}],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User")}
        }),
        json!({
            "schemas": [RT_SCHEMA], "id": "Group", "name": "Group", "endpoint": "/Groups",
            "description": "Group", "schema": GROUP_SCHEMA, "schemaExtensions": [],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group")}
        }),
    ]
}

/// One attribute definition; `sub` are its sub-attributes (complex types).
fn attr(
    name: &str,
    ty: &str,
    multi: bool,
    required: bool,
    mutability: &str,
    sub: Vec<Value>,
) -> Value {
    let mut a = json!({
        "name": name, "type": ty, "multiValued": multi, "description": name,
        "required": required, "caseExact": false, "mutability": mutability,
        "returned": "default", "uniqueness": "none"
    });
    if ty == "complex" {
        a["subAttributes"] = Value::Array(sub);
    }
    if ty == "reference" {
        a["referenceTypes"] = json!(["User", "Group", "external"]);
    }
    a
}

fn s(name: &str) -> Value {
    attr(name, "string", false, false, "readWrite", vec![])
}

fn multi_sub() -> Vec<Value> {
    vec![
        s("value"),
        s("display"),
        s("type"),
        attr("primary", "boolean", false, false, "readWrite", vec![]),
    ]
}

pub fn schemas(base: &str) -> Vec<Value> {
    let mut user_name = attr("userName", "string", false, true, "readWrite", vec![]);
    user_name["uniqueness"] = json!("server");
    let user_attrs = vec![
        user_name,
        attr(
            "name",
            "complex",
            false,
            false,
            "readWrite",
            [
                "formatted",
                "familyName",
                "givenName",
                "middleName",
                "honorificPrefix",
                "honorificSuffix",
            ]
            .iter()
            .map(|n| s(n))
            .collect(),
        ),
        s("displayName"),
        s("nickName"),
        s("title"),
        s("userType"),
        s("preferredLanguage"),
        s("locale"),
        s("timezone"),
        attr("active", "boolean", false, false, "readWrite", vec![]),
        attr("emails", "complex", true, false, "readWrite", multi_sub()),
        attr(
            "phoneNumbers",
            "complex",
            true,
            false,
            "readWrite",
            multi_sub(),
        ),
    ];
    let mut member_value = attr("value", "string", false, false, "immutable", vec![]);
    member_value["caseExact"] = json!(true);
    let group_attrs = vec![
        attr("displayName", "string", false, true, "readWrite", vec![]),
        attr(
            "members",
            "complex",
            true,
            false,
            "readWrite",
            vec![member_value, s("display"), s("type")],
        ),
    ];
    let enterprise_attrs = vec![
        s("employeeNumber"),
        s("costCenter"),
        s("organization"),
        s("division"),
        s("department"),
        attr(
            "manager",
            "complex",
            false,
            false,
            "readWrite",
            vec![s("value"), s("displayName")],
        ),
    ];
    [
        (USER_SCHEMA, "User", "User Account", user_attrs),
        (GROUP_SCHEMA, "Group", "Group", group_attrs),
        (
            ENTERPRISE_SCHEMA,
            "EnterpriseUser",
            "Enterprise User",
            enterprise_attrs,
        ),
    ]
    .into_iter()
    .map(|(id, name, description, attributes)| {
        json!({
            "schemas": [SCHEMA_SCHEMA], "id": id, "name": name, "description": description,
            "attributes": attributes,
            "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{id}")}
        })
    })
    .collect()
}

/// A ListResponse of every item (discovery lists are not paged).
pub fn list(items: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": items.len(),
        "startIndex": 1,
        "itemsPerPage": items.len(),
        "Resources": items
    })
}
