//! The SCIM 2.0 endpoint through the running gateway: request sequences shaped like Okta's,
//! Entra ID's and OneLogin's documented SCIM traffic (create, group membership by PATCH,
//! deactivate, delete) and what each does to sign-in, sessions, WebSocket tunnels and the
//! identity headers the upstream sees; refusals (unauthenticated, malformed, oversized,
//! rate-limited) that change nothing; the data surviving a restart; the admin API.

#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/log_capture.rs"]
mod log_capture;
#[path = "support/mint.rs"]
mod mint;
#[path = "support/scim.rs"]
mod scim;

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use gateway::{
    get_accepting, start_gateway, start_gateway_with_admin, start_upstream, Options, TestGateway,
    Upstream, HTML,
};
use mint::TestIdp;
use scim::{sign_in, try_sign_in, Scim, ScimDir, ADMIN_TOKEN, ROTATED};
use serde_json::{json, Value};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// Every log line of this test binary (JSON), to find the audit line a test caused.
static CAPTURED: LazyLock<log_capture::Captured> = LazyLock::new(|| {
    let captured = log_capture::Captured::default();
    let writer = captured.clone();
    samlgate::observability::init_with_writer("json", "info", false, move || writer.clone());
    captured
});

/// Waits (up to 10 s) for the audit line of `event` for which `matches` holds; tests run in
/// parallel, so each picks its lines by its own user names.
async fn audit(event: &str, matches: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = CAPTURED.text_from(0);
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["target"] == "samlgate::audit" && l["event"] == event && matches(l));
        if let Some(line) = found {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no {event} line matches:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Setup {
    idp: TestIdp,
    up: Upstream,
    gw: TestGateway,
    scim: Scim,
}

async fn start(dir: &ScimDir, scim_keys: &str, extra: &str) -> Setup {
    LazyLock::force(&CAPTURED);
    let idp = TestIdp::generate("https://idp.test/metadata");
    let up = start_upstream().await;
    let opts = Options {
        extra_toml: format!("{}{extra}", dir.toml(scim_keys)),
        ..Options::default()
    };
    let gw = start_gateway(&up.url(), &idp.metadata_xml("https://idp.test/sso"), opts).await;
    let scim = Scim::new(&gw);
    Setup { idp, up, gw, scim }
}

/// A signed-in request to `/app`: the upstream's view of the groups header, or the status
/// when it did not reach the upstream.
async fn app_groups(s: &Setup, c: &reqwest::Client) -> Result<Option<String>, u16> {
    let before = s.up.count();
    let r = get_accepting(c, &s.gw.url("/app"), "application/json").await;
    if r.status() != 200 {
        assert_eq!(
            s.up.count(),
            before,
            "a refused request never reaches the upstream"
        );
        return Err(r.status().as_u16());
    }
    Ok(s.up.last().one("x-forwarded-groups"))
}

fn refused_as_disabled(status: u16, body: &str) {
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("account is disabled") || body.contains("account_disabled"),
        "{body}"
    );
}

#[tokio::test]
async fn okta_sequence_pushes_groups_and_deactivation_ends_the_session() {
    let dir = ScimDir::new();
    let s = start(&dir, "groups_source = \"both\"", "").await;
    let name = "test.user@okta.local";

    // Okta looks the user up first, then creates it.
    let found = s
        .scim
        .find("Users", &format!("userName eq \"{name}\""))
        .await;
    assert!(found.is_empty());
    let (status, user) = s
        .scim
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": name,
                "name": {"givenName": "Test", "familyName": "User"},
                "emails": [{"primary": true, "value": name, "type": "work"}],
                "displayName": "Test User", "locale": "en-US",
                "externalId": "00ujl29u0le5T6Aj10h7", "groups": [], "password": "1mz050nq",
                "active": true}),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    let id = user["id"].as_str().unwrap().to_string();
    assert!(
        user.get("password").is_none(),
        "a password is never stored or returned"
    );
    assert_eq!(
        user["meta"]["location"],
        format!("{}/Users/{id}", s.scim.base)
    );
    let (status, again) = s.scim.get(&format!("/Users/{id}")).await;
    assert_eq!((status, &again["userName"]), (200, &json!(name)));
    let found = s
        .scim
        .find("Users", &format!("userName eq \"{}\"", name.to_uppercase()))
        .await;
    assert_eq!(found.len(), 1, "userName is matched case-insensitively");

    // Push group: create it, then add the member.
    let (status, group) = s
        .scim
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "okta-engineering", "members": []}),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    let gid = group["id"].as_str().unwrap().to_string();

    // Signed in with the assertion's groups; SCIM adds its own (groups_source = both).
    let (c, _) = sign_in(&s.idp, &s.gw, name, &["staff"]).await;
    assert_eq!(app_groups(&s, &c).await, Ok(Some("staff".into())));
    let (status, _) = s
        .scim
        .patch(
            &format!("/Groups/{gid}"),
            json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members",
                "value": [{"value": id, "display": name}]}]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        app_groups(&s, &c).await,
        Ok(Some("staff,okta-engineering".into())),
        "a membership change shows in the next request's headers"
    );
    // Okta renames a group with a path-less replace repeating the id.
    let (status, renamed) = s
        .scim
        .patch(
            &format!("/Groups/{gid}"),
            json!({"schemas": [PATCH], "Operations": [{"op": "replace",
                "value": {"id": gid, "displayName": "okta-eng"}}]}),
        )
        .await;
    assert_eq!((status, &renamed["displayName"]), (200, &json!("okta-eng")));
    assert_eq!(app_groups(&s, &c).await, Ok(Some("staff,okta-eng".into())));
    let (status, _) = s
        .scim
        .patch(
            &format!("/Groups/{gid}"),
            json!({"schemas": [PATCH], "Operations": [{"op": "remove",
                "path": format!("members[value eq \"{id}\"]")}]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(app_groups(&s, &c).await, Ok(Some("staff".into())));

    // Deactivate: the open session ends at once, and sign-in is refused.
    let (status, off) = s
        .scim
        .patch(
            &format!("/Users/{id}"),
            json!({"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": false}}]}),
        )
        .await;
    assert_eq!((status, &off["active"]), (200, &json!(false)));
    assert_eq!(app_groups(&s, &c).await, Err(401), "the session is gone");
    let (r, _) = try_sign_in(&s.idp, &s.gw, name, &["staff"]).await;
    let status = r.status().as_u16();
    refused_as_disabled(status, &r.text().await.unwrap());
    let ended = audit("sessions_ended", |l| l["user"] == name).await;
    assert_eq!(
        (&ended["reason"], &ended["sessions"]),
        (&json!("scim_disabled"), &json!(1))
    );
    let refused = audit("login_failure", |l| {
        l["reason"].as_str().is_some_and(|r| r.contains(name))
    })
    .await;
    assert_eq!(refused["kind"], "account_disabled");
    assert_eq!(
        refused["reason"],
        format!("user {name} refused: account disabled by SCIM (active=false)")
    );

    // Reactivated: may sign in again.
    let (status, _) = s
        .scim
        .patch(
            &format!("/Users/{id}"),
            json!({"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": true}}]}),
        )
        .await;
    assert_eq!(status, 200);
    sign_in(&s.idp, &s.gw, name, &[]).await;
}

#[tokio::test]
async fn entra_sequence_fixes_group_overage_and_delete_refuses_sign_in() {
    let dir = ScimDir::new();
    let s = start(&dir, "groups_source = \"scim\"", "").await;
    let name = "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1";
    assert!(s
        .scim
        .find("Users", &format!("userName eq \"{name}\""))
        .await
        .is_empty());
    let (status, user) = s
        .scim
        .post(
            "/Users",
            json!({"schemas": [USER, ENTERPRISE],
                "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef", "userName": name,
                "active": true,
                "emails": [{"primary": true, "type": "work", "value": "Test_User@testuser.com"}],
                "meta": {"resourceType": "User"},
                "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
                "roles": [],
                ENTERPRISE: {"department": "Ops"}}),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    let id = user["id"].as_str().unwrap().to_string();
    // Entra also finds users by externalId, with its capitalised operators.
    let found = s
        .scim
        .find(
            "Users",
            "externalId EQ \"0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef\" and active eq true",
        )
        .await;
    assert_eq!(found.len(), 1);
    let (status, patched) = s
        .scim
        .patch(
            &format!("/Users/{id}"),
            json!({"schemas": [PATCH], "Operations": [
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updated@testuser.com"},
                {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
                {"op": "Add", "path": format!("{ENTERPRISE}:manager"), "value": {"value": "2819c223"}}]}),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["emails"][0]["value"], "updated@testuser.com");
    assert_eq!(patched["name"]["familyName"], "updatedFamilyName");
    assert_eq!(patched[ENTERPRISE]["manager"]["value"], "2819c223");

    let (status, group) = s
        .scim
        .post(
            "/Groups",
            json!({"schemas": [GROUP, "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
                "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159", "displayName": "entra-admins",
                "meta": {"resourceType": "Group"}}),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    let gid = group["id"].as_str().unwrap().to_string();
    let (status, list) = s
        .scim
        .get("/Groups?excludedAttributes=members&filter=displayName%20eq%20%22entra-admins%22")
        .await;
    assert_eq!((status, &list["totalResults"]), (200, &json!(1)));
    let add = json!({"schemas": [PATCH], "Operations": [{"op": "Add", "path": "members",
        "value": [{"$ref": null, "value": id}]}]});
    assert_eq!(s.scim.patch(&format!("/Groups/{gid}"), add).await.0, 200);

    // Over 150 groups the token carries none: the SCIM groups stand in.
    let (c, _) = sign_in(&s.idp, &s.gw, name, &[]).await;
    assert_eq!(app_groups(&s, &c).await, Ok(Some("entra-admins".into())));
    let remove = json!({"schemas": [PATCH], "Operations": [{"op": "Remove", "path": "members",
        "value": [{"$ref": null, "value": id}]}]});
    assert_eq!(s.scim.patch(&format!("/Groups/{gid}"), remove).await.0, 200);
    assert_eq!(app_groups(&s, &c).await, Ok(None), "no group left");

    // Soft-delete as Entra sends it: a string boolean.
    let off = json!({"schemas": [PATCH], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]});
    let (status, body) = s.scim.patch(&format!("/Users/{id}"), off).await;
    assert_eq!((status, &body["active"]), (200, &json!(false)));
    assert_eq!(app_groups(&s, &c).await, Err(401));

    // Hard delete: gone from SCIM, and still refused at sign-in.
    let (status, body) = s.scim.delete(&format!("/Users/{id}")).await;
    assert_eq!((status, body), (204, Value::Null));
    assert_eq!(s.scim.get(&format!("/Users/{id}")).await.0, 404);
    let (r, _) = try_sign_in(&s.idp, &s.gw, name, &[]).await;
    let status = r.status().as_u16();
    refused_as_disabled(status, &r.text().await.unwrap());
}

#[tokio::test]
async fn onelogin_sequence_replaces_with_put_and_deletes() {
    let dir = ScimDir::new();
    let s = start(&dir, "", "").await;
    let name = "jane.doe@onelogin.example";
    let body = |active: bool| {
        json!({"schemas": [USER], "userName": name, "externalId": "36152711",
            "name": {"givenName": "Jane", "familyName": "Doe"},
            "emails": [{"value": name, "primary": true}], "active": active})
    };
    // OneLogin sends plain application/json.
    let r = s
        .scim
        .http
        .post(format!("{}/Users", s.scim.base))
        .bearer_auth(&s.scim.token)
        .header("content-type", "application/json; charset=utf-8")
        .body(body(true).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with(&s.scim.base));
    let id = serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (c, _) = sign_in(&s.idp, &s.gw, name, &["staff"]).await;
    assert_eq!(
        app_groups(&s, &c).await,
        Ok(Some("staff".into())),
        "groups_source defaults to the assertion"
    );

    let (status, replaced) = s.scim.put(&format!("/Users/{id}"), body(false)).await;
    assert_eq!((status, &replaced["active"]), (200, &json!(false)));
    assert_eq!(replaced["meta"]["version"], "W/\"2\"");
    assert_eq!(
        app_groups(&s, &c).await,
        Err(401),
        "PUT with active=false ends the session"
    );

    // Group membership by OneLogin's PATCH, paging over the list.
    for n in 0..3 {
        let (status, _) = s
            .scim
            .post("/Groups", json!({"schemas": [GROUP], "displayName": format!("ol-{n}"), "members": [{"value": id}]}))
            .await;
        assert_eq!(status, 201);
    }
    let (_, page) = s.scim.get("/Groups?startIndex=2&count=1").await;
    assert_eq!(
        (
            &page["totalResults"],
            &page["startIndex"],
            &page["itemsPerPage"]
        ),
        (&json!(3), &json!(2), &json!(1))
    );
    assert_eq!(
        page["Resources"][0]["displayName"], "ol-1",
        "stable order: creation"
    );
    assert_eq!(s.scim.delete(&format!("/Users/{id}")).await.0, 204);
    let (_, groups) = s.scim.get("/Groups").await;
    for g in groups["Resources"].as_array().unwrap() {
        assert!(
            g.get("members")
                .is_none_or(|m| m.as_array().unwrap().is_empty()),
            "a deleted user leaves its groups: {g}"
        );
    }
    let (r, _) = try_sign_in(&s.idp, &s.gw, name, &[]).await;
    let status = r.status().as_u16();
    refused_as_disabled(status, &r.text().await.unwrap());
}

#[tokio::test]
async fn deprovisioning_closes_an_open_websocket_tunnel() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let dir = ScimDir::new();
    // The periodic check is 10 minutes away: only the deprovisioning can close it in time.
    let s = start(&dir, "", "[proxy]\nupgrade_session_check_secs = 600\n").await;
    let (status, user) = s
        .scim
        .post("/Users", json!({"schemas": [USER], "userName": "wendy"}))
        .await;
    assert_eq!(status, 201);
    let (_, cookie) = sign_in(&s.idp, &s.gw, "wendy", &[]).await;
    let mut req = format!("ws://{}/ws", s.gw.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);

    let id = user["id"].as_str().unwrap();
    let off = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": false}]});
    assert_eq!(s.scim.patch(&format!("/Users/{id}"), off).await.0, 200);
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the tunnel was closed by the deprovisioning");
    let closed = audit("tunnel_closed", |l| l["user"] == "wendy").await;
    assert_eq!(closed["reason"], "the session ended");
}

#[tokio::test]
async fn bad_requests_get_scim_errors_and_change_nothing() {
    let dir = ScimDir::new();
    let s = start(&dir, "max_body_bytes = 4096", "").await;
    let (status, _) = s
        .scim
        .post("/Users", json!({"schemas": [USER], "userName": "kept"}))
        .await;
    assert_eq!(status, 201);
    let snapshot = || async { s.scim.get("/Users").await.1 };
    let before = snapshot().await;
    let url = |p: &str| format!("{}{p}", s.scim.base);
    let new_user = json!({"schemas": [USER], "userName": "intruder"}).to_string();
    let http = &s.scim.http;

    // (request, status, scimType)
    let cases: Vec<(reqwest::RequestBuilder, u16, Option<&str>)> = vec![
        (http.post(url("/Users")).header("content-type", "application/scim+json").body(new_user.clone()), 401, None),
        (http.post(url("/Users")).bearer_auth("wrong-token-0123456789abcdefghijklmnop").header("content-type", "application/scim+json").body(new_user.clone()), 401, None),
        (http.post(url("/Users")).basic_auth("admin", Some(scim::TOKEN)).header("content-type", "application/scim+json").body(new_user.clone()), 401, None),
        (http.get(url("/Users")).bearer_auth(&scim::TOKEN[1..]), 401, None),
        (http.post(url("/Users")).bearer_auth(scim::TOKEN).header("content-type", "application/scim+json").body("{\"userName\": "), 400, Some("invalidSyntax")),
        (http.post(url("/Users")).bearer_auth(scim::TOKEN).header("content-type", "text/plain").body(new_user.clone()), 415, Some("invalidSyntax")),
        (http.post(url("/Users")).bearer_auth(scim::TOKEN).header("content-type", "application/scim+json").body(format!("{{\"schemas\":[\"{USER}\"],\"userName\":\"intruder\",\"title\":\"{}\"}}", "x".repeat(5000))), 413, None),
        (http.post(url("/Users")).bearer_auth(scim::TOKEN).header("content-type", "application/scim+json").body(json!({"userName": "intruder"}).to_string()), 400, Some("invalidSyntax")),
        (http.post(url("/Users")).bearer_auth(scim::TOKEN).header("content-type", "application/scim+json").body(json!({"schemas": [USER], "userName": "KEPT"}).to_string()), 409, Some("uniqueness")),
        (http.post(url("/Users")).bearer_auth(scim::TOKEN).header("content-type", "application/scim+json").body(json!({"schemas": [USER], "userName": "a\u{0}b"}).to_string()), 400, Some("invalidValue")),
        (http.get(url("/Users?filter=userName%20xx%20%22a%22")).bearer_auth(scim::TOKEN), 400, Some("invalidFilter")),
        (http.get(url("/Users?count=ten")).bearer_auth(scim::TOKEN), 400, Some("invalidValue")),
        (http.get(url("/Users/no-such-id")).bearer_auth(scim::TOKEN), 404, None),
        (http.delete(url("/Users/no-such-id")).bearer_auth(scim::TOKEN), 404, None),
        (http.get(url("/Bulk")).bearer_auth(scim::TOKEN), 404, None),
        (http.patch(url("/Users/no-such-id")).bearer_auth(scim::TOKEN).header("content-type", "application/scim+json").body(json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": false}]}).to_string()), 404, None),
        (http.delete(url("/Users")).bearer_auth(scim::TOKEN), 405, None),
    ];
    for (i, (req, want_status, want_type)) in cases.into_iter().enumerate() {
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        assert_eq!(
            r.headers()["content-type"],
            "application/scim+json",
            "case {i}"
        );
        if status == 401 {
            assert!(r.headers().contains_key("www-authenticate"), "case {i}");
        }
        let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(status, want_status, "case {i}: {body}");
        assert_eq!(body["schemas"], json!([ERROR]), "case {i}");
        assert_eq!(body["status"], json!(want_status.to_string()), "case {i}");
        assert_eq!(body["scimType"].as_str(), want_type, "case {i}: {body}");
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "case {i}"
        );
    }
    // A PATCH whose second operation fails applies neither.
    let id = before["Resources"][0]["id"].as_str().unwrap().to_string();
    let (status, body) = s
        .scim
        .patch(
            &format!("/Users/{id}"),
            json!({"schemas": [PATCH], "Operations": [
                {"op": "replace", "path": "displayName", "value": "changed"},
                {"op": "replace", "path": "id", "value": "forged"}]}),
        )
        .await;
    assert_eq!((status, &body["scimType"]), (400, &json!("mutability")));
    let after = snapshot().await;
    assert_eq!(before, after, "nothing changed");
    assert_eq!(s.up.count(), 0, "no SCIM request reached the upstream");

    // The rotated token works as well.
    let rotated = Scim {
        token: ROTATED.into(),
        ..Scim::new(&s.gw)
    };
    assert_eq!(rotated.get("/Users").await.0, 200);
}

#[tokio::test]
async fn the_scim_rate_limit_answers_429() {
    let dir = ScimDir::new();
    let s = start(&dir, "rate_limit_per_second = 1\nrate_limit_burst = 3", "").await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let (status, body) = s.scim.get("/Users").await;
        if status == 429 {
            assert_eq!(body["schemas"], json!([ERROR]));
        }
        statuses.push(status);
    }
    assert_eq!(statuses[..3], [200, 200, 200], "the burst passes");
    assert!(statuses[3..].contains(&429), "then the limit: {statuses:?}");

    // Requests without a valid token have a budget of their own (20, then 5/s): a flood of
    // them is refused with 429 and does not use up the IdP's.
    let dir = ScimDir::new();
    let s = start(&dir, "", "").await;
    let anonymous = Scim {
        token: "not-the-token-0123456789abcdefghijklmn".into(),
        ..Scim::new(&s.gw)
    };
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(anonymous.get("/Users").await.0);
    }
    assert_eq!(statuses[..20], [401; 20], "{statuses:?}");
    assert!(statuses[20..].contains(&429), "{statuses:?}");
    assert_eq!(s.scim.get("/Users").await.0, 200, "the IdP is still served");
}

#[tokio::test]
async fn restart_keeps_the_provisioned_data() {
    let dir = ScimDir::new();
    let (uid, gid) = {
        let mut s = start(&dir, "groups_source = \"both\"", "").await;
        let (_, u) = s
            .scim
            .post("/Users", json!({"schemas": [USER], "userName": "rita"}))
            .await;
        let (_, off) = s
            .scim
            .post(
                "/Users",
                json!({"schemas": [USER], "userName": "otto", "active": false}),
            )
            .await;
        assert_eq!(off["active"], false);
        let (_, gone) = s
            .scim
            .post("/Users", json!({"schemas": [USER], "userName": "dora"}))
            .await;
        assert_eq!(
            s.scim
                .delete(&format!("/Users/{}", gone["id"].as_str().unwrap()))
                .await
                .0,
            204
        );
        let (_, g) = s
            .scim
            .post("/Groups", json!({"schemas": [GROUP], "displayName": "keepers", "members": [{"value": u["id"]}]}))
            .await;
        s.gw.shutdown().await.unwrap();
        (
            u["id"].as_str().unwrap().to_string(),
            g["id"].as_str().unwrap().to_string(),
        )
    };
    let s = start(&dir, "groups_source = \"both\"", "").await;
    let (status, u) = s.scim.get(&format!("/Users/{uid}")).await;
    assert_eq!((status, &u["userName"]), (200, &json!("rita")));
    let (status, g) = s.scim.get(&format!("/Groups/{gid}")).await;
    assert_eq!((status, &g["members"][0]["value"]), (200, &json!(uid)));
    let (c, _) = sign_in(&s.idp, &s.gw, "rita", &[]).await;
    assert_eq!(app_groups(&s, &c).await, Ok(Some("keepers".into())));
    for refused in ["otto", "dora"] {
        let (r, _) = try_sign_in(&s.idp, &s.gw, refused, &[]).await;
        let status = r.status().as_u16();
        refused_as_disabled(status, &r.text().await.unwrap());
    }
}

#[tokio::test]
async fn require_provisioned_refuses_users_scim_never_saw() {
    let dir = ScimDir::new();
    let s = start(&dir, "require_provisioned = true", "").await;
    let (r, _) = try_sign_in(&s.idp, &s.gw, "stranger", &[]).await;
    let status = r.status().as_u16();
    refused_as_disabled(status, &r.text().await.unwrap());
    assert_eq!(
        s.scim
            .post("/Users", json!({"schemas": [USER], "userName": "stranger"}))
            .await
            .0,
        201
    );
    sign_in(&s.idp, &s.gw, "stranger", &[]).await;
}

#[tokio::test]
async fn without_scim_the_path_is_the_upstreams() {
    let idp = TestIdp::generate("https://idp.test/metadata");
    let up = start_upstream().await;
    let gw = start_gateway(
        &up.url(),
        &idp.metadata_xml("https://idp.test/sso"),
        Options::default(),
    )
    .await;
    // Protected like any other upstream path: a browser is sent to sign in.
    let r = get_accepting(&gateway::client(), &gw.url("/scim/v2/Users"), HTML).await;
    assert_eq!(r.status(), 302);
}

#[tokio::test]
async fn admin_api_lists_and_ends_a_users_sessions() {
    LazyLock::force(&CAPTURED);
    let dir = ScimDir::new();
    let idp = TestIdp::generate("https://idp.test/metadata");
    let up = start_upstream().await;
    let opts = Options {
        extra_toml: dir.toml(""),
        ..Options::default()
    };
    let (gw, admin) =
        start_gateway_with_admin(&up.url(), &idp.metadata_xml("https://idp.test/sso"), opts).await;
    let (c1, _) = sign_in(&idp, &gw, "Mallory", &["ops"]).await;
    let (c2, _) = sign_in(&idp, &gw, "mallory", &[]).await;
    let (c3, _) = sign_in(&idp, &gw, "trent", &[]).await;
    let http = reqwest::Client::new();
    let api = |p: &str| format!("http://{admin}{p}");

    let r = http
        .get(api("/admin/users/mallory/sessions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a token is required");
    let r = http
        .get(api("/admin/users/mallory/sessions"))
        .bearer_auth(scim::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the SCIM token is not an admin token");
    let r = http
        .get(api("/admin/users/MALLORY/sessions"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(body["sessions"].as_array().unwrap().len(), 2, "{body}");
    assert!(body.to_string().len() < 2000 && !body.to_string().contains("cookie"));

    let r = http
        .delete(api("/admin/users/mallory/sessions"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap()["ended"],
        2
    );
    let ended = audit("sessions_ended", |l| l["user"] == "mallory").await;
    assert_eq!(
        (&ended["reason"], &ended["sessions"]),
        (&json!("admin"), &json!(2))
    );
    for c in [&c1, &c2] {
        let r = get_accepting(c, &gw.url("/app"), "application/json").await;
        assert_eq!(r.status(), 401);
    }
    let r = get_accepting(&c3, &gw.url("/app"), "application/json").await;
    assert_eq!(r.status(), 200, "another user keeps their session");
    assert_eq!(
        http.get(api("/metrics")).send().await.unwrap().status(),
        200,
        "metrics stay open"
    );
}

#[tokio::test]
async fn forward_auth_checks_answer_with_scim_groups_and_refuse_disabled_users() {
    let dir = ScimDir::new();
    let s = start(
        &dir,
        "groups_source = \"scim\"",
        "[forward_auth]\nenabled = true\n",
    )
    .await;
    let (_, u) = s
        .scim
        .post("/Users", json!({"schemas": [USER], "userName": "fay"}))
        .await;
    let uid = u["id"].as_str().unwrap().to_string();
    s.scim
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "fa-ops", "members": [{"value": uid}]}),
        )
        .await;
    let (c, _) = sign_in(&s.idp, &s.gw, "fay", &["from-assertion"]).await;
    let check = || async {
        let r = c
            .get(s.gw.url("/saml/auth"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        let groups = r
            .headers()
            .get("x-forwarded-groups")
            .map(|v| v.to_str().unwrap().to_string());
        (r.status().as_u16(), groups)
    };
    assert_eq!(
        check().await,
        (200, Some("fa-ops".into())),
        "SCIM's groups, not the assertion's"
    );
    let off = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": false}]});
    assert_eq!(s.scim.patch(&format!("/Users/{uid}"), off).await.0, 200);
    assert_eq!(check().await.0, 401, "the session is gone");
    assert_eq!(
        s.up.count(),
        0,
        "forward-auth checks never reach the upstream"
    );
}

#[tokio::test]
async fn scim_groups_decide_roles_and_access_on_the_next_request() {
    let dir = ScimDir::new();
    let extra = "[authz]\nallowed_roles = [\"Admin\"]\n\n[[roles]]\nrole = \"Admin\"\ngroups = [\"scim-admins\"]\n";
    let s = start(&dir, "groups_source = \"scim\"", extra).await;
    let (_, u) = s
        .scim
        .post("/Users", json!({"schemas": [USER], "userName": "rosa"}))
        .await;
    let uid = u["id"].as_str().unwrap().to_string();
    let (_, g) = s
        .scim
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "scim-admins", "members": []}),
        )
        .await;
    let gid = g["id"].as_str().unwrap().to_string();
    // The assertion's group would match the role; with groups_source = scim it does not count.
    let (c, _) = sign_in(&s.idp, &s.gw, "rosa", &["scim-admins"]).await;
    assert_eq!(
        app_groups(&s, &c).await,
        Err(403),
        "not in the SCIM group: no role, no access"
    );

    let add = json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": uid}]}]});
    assert_eq!(s.scim.patch(&format!("/Groups/{gid}"), add).await.0, 200);
    assert_eq!(app_groups(&s, &c).await, Ok(Some("scim-admins".into())));
    assert_eq!(
        s.up.last().one("x-forwarded-role").as_deref(),
        Some("Admin"),
        "the role follows the SCIM group"
    );

    let remove = json!({"schemas": [PATCH], "Operations": [{"op": "remove", "path": format!("members[value eq \"{uid}\"]")}]});
    assert_eq!(s.scim.patch(&format!("/Groups/{gid}"), remove).await.0, 200);
    assert_eq!(
        app_groups(&s, &c).await,
        Err(403),
        "membership removed: access ends on the next request"
    );
}
