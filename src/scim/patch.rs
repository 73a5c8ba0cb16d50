//! SCIM PATCH (RFC 7644 §3.5.2) on a resource's JSON (pure): `add`, `replace` and `remove`,
//! with and without `path`, value filters (`members[value eq "…"]`, `emails[type eq
//! "work"].value`), and the shapes the big IdPs send: Entra ID's capitalised ops, its
//! `"False"` string booleans, its path-valued keys in a path-less `value`
//! (`{"name.givenName": …}`) and its `remove` of `members` carrying a `value` list.

use serde_json::{Map, Value};

use super::filter::{self, parse_patch_path, AttrPath, PatchPath};

/// Most operations in one PATCH request.
pub const MAX_OPERATIONS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Replace,
    Remove,
}

/// Why a PATCH was refused, with the SCIM `scimType` it maps to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("the request is not a PatchOp message: {0}")]
    InvalidSyntax(String),
    #[error("invalid path: {0}")]
    InvalidPath(String),
    #[error("the value filter in {0:?} matched nothing")]
    NoTarget(String),
    #[error("{0} cannot be changed")]
    Mutability(String),
    #[error("invalid value: {0}")]
    InvalidValue(String),
}

impl PatchError {
    pub fn scim_type(&self) -> &'static str {
        match self {
            PatchError::InvalidSyntax(_) => "invalidSyntax",
            PatchError::InvalidPath(_) => "invalidPath",
            PatchError::NoTarget(_) => "noTarget",
            PatchError::Mutability(_) => "mutability",
            PatchError::InvalidValue(_) => "invalidValue",
        }
    }
}

pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Applies a PatchOp message to `resource` (a copy: the caller keeps the original if this
/// fails, so a failing operation changes nothing).
pub fn apply(resource: &Value, body: &Value) -> Result<Value, PatchError> {
    let schemas_ok = filter::get_ci(body, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| {
            s.iter().any(|v| {
                v.as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(PATCH_SCHEMA))
            })
        });
    if !schemas_ok {
        return Err(PatchError::InvalidSyntax(format!(
            "schemas must list {PATCH_SCHEMA}"
        )));
    }
    let ops = filter::get_ci(body, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| PatchError::InvalidSyntax("Operations must be a list".into()))?;
    if ops.is_empty() || ops.len() > MAX_OPERATIONS {
        return Err(PatchError::InvalidSyntax(format!(
            "Operations must hold 1 to {MAX_OPERATIONS} operations"
        )));
    }
    let mut out = resource.clone();
    let obj = out
        .as_object_mut()
        .ok_or_else(|| PatchError::InvalidValue("resource is not an object".into()))?;
    for op in ops {
        apply_one(obj, op)?;
    }
    Ok(out)
}

fn apply_one(obj: &mut Map<String, Value>, op: &Value) -> Result<(), PatchError> {
    let kind = match filter::get_ci(op, "op").and_then(Value::as_str) {
        Some(s) if s.eq_ignore_ascii_case("add") => Op::Add,
        Some(s) if s.eq_ignore_ascii_case("replace") => Op::Replace,
        Some(s) if s.eq_ignore_ascii_case("remove") => Op::Remove,
        other => {
            return Err(PatchError::InvalidSyntax(format!(
                "op must be add, replace or remove, not {:?}",
                other.map(|s| crate::saml::error::clip_to(s, 20))
            )))
        }
    };
    let value = filter::get_ci(op, "value");
    // A path that is a whole extension schema (`urn:…:enterprise:2.0:User`) names the
    // extension object itself, not an attribute `User` of a schema `urn:…:2.0`.
    if let Some(Value::String(p)) = filter::get_ci(op, "path") {
        if is_extension_urn(p) && filter::is_known_extension(p) {
            return whole_extension(obj, p, kind, value);
        }
    }
    let path = match filter::get_ci(op, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if p.trim().is_empty() => None,
        Some(Value::String(p)) => {
            Some(parse_patch_path(p).map_err(|e| PatchError::InvalidPath(format!("{p:?}: {e}")))?)
        }
        Some(_) => return Err(PatchError::InvalidPath("path must be a string".into())),
    };
    match (kind, path) {
        (Op::Remove, None) => Err(PatchError::NoTarget("remove without a path".into())),
        (Op::Remove, Some(p)) => remove(obj, &p, value),
        (op, Some(p)) => {
            let v = value.ok_or_else(|| PatchError::InvalidValue("value is required".into()))?;
            set(obj, &p, v.clone(), op)
        }
        (op, None) => {
            // No path: the value is an object of attributes (or of paths, as Entra ID sends).
            let Some(Value::Object(attrs)) = value else {
                return Err(PatchError::InvalidValue(
                    "without a path, value must be an object".into(),
                ));
            };
            for (k, v) in attrs {
                if is_extension_urn(k) && v.is_object() {
                    let ext = child_object(obj, k);
                    for (ek, ev) in v.as_object().into_iter().flatten() {
                        let p = path_of(ek)?;
                        set(ext, &p, ev.clone(), op)?;
                    }
                    continue;
                }
                // Okta's group rename repeats the resource's own `id`: harmless when equal.
                if k.eq_ignore_ascii_case("id") && obj.get("id") == Some(v) {
                    continue;
                }
                let p = path_of(k)?;
                set(obj, &p, v.clone(), op)?;
            }
            Ok(())
        }
    }
}

/// `add` / `replace` / `remove` of a whole extension object.
fn whole_extension(
    obj: &mut Map<String, Value>,
    urn: &str,
    kind: Op,
    value: Option<&Value>,
) -> Result<(), PatchError> {
    match (kind, value) {
        (Op::Remove, _) => {
            if let Some(k) = key_ci(obj, urn) {
                obj.remove(&k);
            }
            Ok(())
        }
        (op, Some(v @ Value::Object(_))) => {
            let ext = child_object(obj, urn);
            if op == Op::Replace {
                ext.clear();
            }
            merge(ext, v);
            Ok(())
        }
        _ => Err(PatchError::InvalidValue(
            "an extension's value must be an object".into(),
        )),
    }
}

fn path_of(k: &str) -> Result<PatchPath, PatchError> {
    parse_patch_path(k).map_err(|e| PatchError::InvalidPath(format!("{k:?}: {e}")))
}

fn is_extension_urn(k: &str) -> bool {
    k.len() > 4 && k[..4].eq_ignore_ascii_case("urn:") && !filter::is_core_schema(k)
}

/// The key of `map` spelled like `name` in any case.
fn key_ci(map: &Map<String, Value>, name: &str) -> Option<String> {
    if map.contains_key(name) {
        return Some(name.to_string());
    }
    map.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

/// The object at `name` in `map`, created empty when missing or not an object.
fn child_object<'a>(map: &'a mut Map<String, Value>, name: &str) -> &'a mut Map<String, Value> {
    let key = key_ci(map, name).unwrap_or_else(|| name.to_string());
    let slot = map.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

fn check_mutable(a: &AttrPath) -> Result<(), PatchError> {
    if a.urn.is_none()
        && ["id", "meta", "schemas"]
            .iter()
            .any(|n| a.attr.eq_ignore_ascii_case(n))
    {
        return Err(PatchError::Mutability(a.attr.clone()));
    }
    Ok(())
}

/// The map the path's attribute lives in (the resource, or its extension object).
fn base_of<'a>(obj: &'a mut Map<String, Value>, a: &AttrPath) -> &'a mut Map<String, Value> {
    match &a.urn {
        Some(urn) => child_object(obj, urn),
        None => obj,
    }
}

/// `add` or `replace` at `p`.
fn set(obj: &mut Map<String, Value>, p: &PatchPath, v: Value, op: Op) -> Result<(), PatchError> {
    check_mutable(&p.attr)?;
    let base = base_of(obj, &p.attr);
    let key = key_ci(base, &p.attr.attr).unwrap_or_else(|| p.attr.attr.clone());
    if let Some(f) = &p.filter {
        let Some(Value::Array(items)) = base.get_mut(&key) else {
            return Err(PatchError::NoTarget(p.attr.attr.clone()));
        };
        let mut hit = false;
        for item in items.iter_mut().filter(|i| filter::matches(f, i)) {
            hit = true;
            match (&p.sub_after_filter, item) {
                (Some(sub), Value::Object(m)) => {
                    let k = key_ci(m, sub).unwrap_or_else(|| sub.clone());
                    m.insert(k, v.clone());
                }
                (None, Value::Object(m)) if v.is_object() => merge(m, &v),
                (None, item) => *item = v.clone(),
                (Some(_), _) => return Err(PatchError::InvalidPath("not a complex value".into())),
            }
        }
        return if hit {
            Ok(())
        } else {
            Err(PatchError::NoTarget(p.attr.attr.clone()))
        };
    }
    if let Some(sub) = &p.attr.sub {
        let parent = child_object(base, &key);
        let k = key_ci(parent, sub).unwrap_or_else(|| sub.clone());
        parent.insert(k, v);
        return Ok(());
    }
    match (op, base.get_mut(&key), v) {
        // `add` to a multi-valued attribute appends what is not already there.
        (Op::Add, Some(Value::Array(items)), new) => {
            let new = match new {
                Value::Array(a) => a,
                one => vec![one],
            };
            for n in new {
                if !items.iter().any(|i| same_element(i, &n)) {
                    items.push(n);
                }
            }
        }
        (Op::Add, Some(Value::Object(m)), Value::Object(new)) => merge(m, &Value::Object(new)),
        (_, _, v) => {
            base.insert(key, v);
        }
    }
    Ok(())
}

fn merge(m: &mut Map<String, Value>, v: &Value) {
    for (k, val) in v.as_object().into_iter().flatten() {
        let key = key_ci(m, k).unwrap_or_else(|| k.clone());
        m.insert(key, val.clone());
    }
}

/// Two elements of a multi-valued attribute are the same when equal, or when both are
/// objects with the same `value` (members, emails).
fn same_element(a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    match (filter::get_ci(a, "value"), filter::get_ci(b, "value")) {
        (Some(x), Some(y)) => {
            x == y
                && a.is_object()
                && b.is_object()
                && (filter::get_ci(a, "type") == filter::get_ci(b, "type"))
        }
        _ => false,
    }
}

fn remove(
    obj: &mut Map<String, Value>,
    p: &PatchPath,
    value: Option<&Value>,
) -> Result<(), PatchError> {
    check_mutable(&p.attr)?;
    let base = base_of(obj, &p.attr);
    let Some(key) = key_ci(base, &p.attr.attr) else {
        // Removing what is not there changes nothing (Entra ID and Okta send such removes).
        return Ok(());
    };
    if let Some(f) = &p.filter {
        let Some(Value::Array(items)) = base.get_mut(&key) else {
            return Err(PatchError::NoTarget(p.attr.attr.clone()));
        };
        match &p.sub_after_filter {
            None => items.retain(|i| !filter::matches(f, i)),
            Some(sub) => {
                for item in items.iter_mut().filter(|i| filter::matches(f, i)) {
                    if let Value::Object(m) = item {
                        if let Some(k) = key_ci(m, sub) {
                            m.remove(&k);
                        }
                    }
                }
            }
        }
        if matches!(base.get(&key), Some(Value::Array(a)) if a.is_empty()) {
            base.remove(&key);
        }
        return Ok(());
    }
    if let Some(sub) = &p.attr.sub {
        match base.get_mut(&key) {
            Some(Value::Object(m)) => {
                if let Some(k) = key_ci(m, sub) {
                    m.remove(&k);
                }
                if m.is_empty() {
                    base.remove(&key);
                }
            }
            Some(Value::Array(items)) => {
                for item in items.iter_mut() {
                    if let Value::Object(m) = item {
                        if let Some(k) = key_ci(m, sub) {
                            m.remove(&k);
                        }
                    }
                }
            }
            _ => {}
        }
        return Ok(());
    }
    // `remove` of `members` with a value list (Entra ID): only the listed elements go.
    if let (Some(Value::Array(items)), Some(v)) = (base.get_mut(&key), value) {
        let gone: Vec<Value> = match v {
            Value::Array(a) => a.clone(),
            one => vec![one.clone()],
        };
        items.retain(|i| {
            !gone.iter().any(|g| {
                same_element(i, g) || filter::get_ci(i, "value") == filter::get_ci(g, "value")
            })
        });
        if items.is_empty() {
            base.remove(&key);
        }
        return Ok(());
    }
    base.remove(&key);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patch(ops: Value) -> Value {
        json!({"schemas": [PATCH_SCHEMA], "Operations": ops})
    }

    fn group() -> Value {
        json!({"id": "g1", "displayName": "Admins", "members": [{"value": "u1"}, {"value": "u2"}]})
    }

    #[test]
    fn operations_as_the_idps_send_them() {
        let user = json!({"id": "u1", "userName": "alice", "active": true,
            "name": {"givenName": "Alice"},
            "emails": [{"value": "a@x", "type": "work", "primary": true}]});
        let g = group();
        let table: Vec<(&str, &Value, Value, Value)> = vec![
            // Okta: deactivate with a path-less replace
            (
                "okta deactivate",
                &user,
                json!([{"op": "replace", "value": {"active": false}}]),
                json!({"active": false}),
            ),
            // Entra ID: capitalised op, path, string boolean kept for normalisation
            (
                "entra deactivate",
                &user,
                json!([{"op": "Replace", "path": "active", "value": "False"}]),
                json!({"active": "False"}),
            ),
            // Entra ID: path-valued keys in a path-less value
            (
                "entra name",
                &user,
                json!([{"op": "Add", "value": {"name.familyName": "Smith", "displayName": "A S"}}]),
                json!({"name": {"givenName": "Alice", "familyName": "Smith"}, "displayName": "A S"}),
            ),
            (
                "value filter with sub",
                &user,
                json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "b@x"}]),
                json!({"emails": [{"value": "b@x", "type": "work", "primary": true}]}),
            ),
            (
                "extension attr",
                &user,
                json!([{"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Ops"}]),
                json!({"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Ops"}}),
            ),
            (
                "remove sub",
                &user,
                json!([{"op": "remove", "path": "name.givenName"}]),
                json!({"name": null}),
            ),
            (
                "whole extension",
                &user,
                json!([{"op": "add",
                    "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
                    "value": {"department": "Ops"}}]),
                json!({"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":
                    {"department": "Ops"}}),
            ),
            (
                "add member",
                &g,
                json!([{"op": "add", "path": "members", "value": [{"value": "u3"}, {"value": "u1"}]}]),
                json!({"members": [{"value": "u1"}, {"value": "u2"}, {"value": "u3"}]}),
            ),
            (
                "okta remove member by filter",
                &g,
                json!([{"op": "remove", "path": "members[value eq \"u1\"]"}]),
                json!({"members": [{"value": "u2"}]}),
            ),
            (
                "entra remove member by value",
                &g,
                json!([{"op": "Remove", "path": "members", "value": [{"value": "u2"}]}]),
                json!({"members": [{"value": "u1"}]}),
            ),
            (
                "okta replace members",
                &g,
                json!([{"op": "replace", "path": "members", "value": [{"value": "u9"}]}]),
                json!({"members": [{"value": "u9"}]}),
            ),
            (
                "remove all members",
                &g,
                json!([{"op": "remove", "path": "members"}]),
                json!({"members": null}),
            ),
            (
                "rename group",
                &g,
                json!([{"op": "replace", "value": {"id": "g1", "displayName": "Ops"}}]),
                json!({"displayName": "Ops"}),
            ),
        ];
        for (name, start, ops, want) in table {
            let got = apply(start, &patch(ops.clone())).unwrap_or_else(|e| panic!("{name}: {e}"));
            for (k, v) in want.as_object().unwrap() {
                if v.is_null() {
                    assert!(got.get(k).is_none(), "{name}: {k} should be gone: {got}");
                } else {
                    assert_eq!(got.get(k), Some(v), "{name}: {k} in {got}");
                }
            }
        }
    }

    #[test]
    fn refusals_change_nothing_and_name_their_scim_type() {
        let g = group();
        let table: Vec<(Value, &str)> = vec![
            (json!({"Operations": []}), "invalidSyntax"),
            (patch(json!([])), "invalidSyntax"),
            (patch(json!([{"op": "move", "path": "x"}])), "invalidSyntax"),
            (patch(json!([{"op": "remove"}])), "noTarget"),
            (
                patch(json!([{"op": "add", "path": "members[", "value": 1}])),
                "invalidPath",
            ),
            (
                patch(json!([{"op": "replace", "path": "id", "value": "x"}])),
                "mutability",
            ),
            (
                patch(json!([{"op": "replace", "value": {"id": "other"}}])),
                "mutability",
            ),
            (
                patch(
                    json!([{"op": "replace", "path": "members[value eq \"zz\"]", "value": {"value": "a"}}]),
                ),
                "noTarget",
            ),
            (
                patch(json!([{"op": "add", "path": "displayName"}])),
                "invalidValue",
            ),
            (patch(json!([{"op": "add", "value": "x"}])), "invalidValue"),
        ];
        for (body, want) in table {
            let e = apply(&g, &body).unwrap_err();
            assert_eq!(e.scim_type(), want, "{body}: {e}");
        }
    }
}
