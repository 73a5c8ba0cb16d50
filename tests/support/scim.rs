//! Test support for the SCIM endpoint: a state directory and token file that outlive one
//! gateway (restart tests), the `[scim]` TOML naming them, a small SCIM client, and signing a
//! minted user in. Include next to `gateway.rs`, `mint.rs` and `signin.rs`.
#![allow(dead_code)]

use serde_json::Value;

use crate::gateway::{begin_login_at, client, post_acs, session_cookie, TestGateway};
use crate::mint::{self, ResponseSpec, TestIdp};

pub const TOKEN: &str = "scim-test-token-0123456789abcdefghijklmnop";
pub const ROTATED: &str = "scim-rotated-token-0123456789abcdefghijklm";
pub const ADMIN_TOKEN: &str = "admin-api-token-0123456789abcdefghijklmnop";

/// A directory holding the token files and the SCIM state, kept across gateway restarts.
pub struct ScimDir {
    pub dir: tempfile::TempDir,
}

impl ScimDir {
    pub fn new() -> ScimDir {
        let dir = tempfile::tempdir().unwrap();
        // Two files, two tokens: rotation.
        std::fs::write(
            dir.path().join("scim.token"),
            format!("# current\n{TOKEN}\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join("scim-next.token"), format!("{ROTATED}\n")).unwrap();
        std::fs::write(dir.path().join("admin.token"), format!("{ADMIN_TOKEN}\n")).unwrap();
        ScimDir { dir }
    }

    /// `[scim]` (enabled, both token files, the state dir) plus `extra` keys of that section,
    /// and `[admin_api]`.
    pub fn toml(&self, extra: &str) -> String {
        let d = self.dir.path().display();
        format!(
            "[scim]\nenabled = true\ntoken_files = [\"{d}/scim.token\", \"{d}/scim-next.token\"]\nstate_dir = \"{d}/state\"\n{extra}\n[admin_api]\ntoken_files = [\"{d}/admin.token\"]\n"
        )
    }
}

/// A SCIM client for the gateway's endpoint.
pub struct Scim {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Scim {
    pub fn new(gw: &TestGateway) -> Scim {
        Scim {
            base: gw.url("/scim/v2"),
            token: TOKEN.into(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut r = self
            .http
            .request(m, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"))
        };
        (status, v)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send("GET", path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send("POST", path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send("PUT", path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.send("PATCH", path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send("DELETE", path, None).await
    }

    /// `GET /Users?filter=…` (percent-encoded) → the Resources.
    pub async fn find(&self, endpoint: &str, filter: &str) -> Vec<Value> {
        let q = percent_encoding::utf8_percent_encode(filter, percent_encoding::NON_ALPHANUMERIC);
        let (status, body) = self.get(&format!("/{endpoint}?filter={q}")).await;
        assert_eq!(status, 200, "{body}");
        body["Resources"].as_array().cloned().unwrap_or_default()
    }
}

/// Signs `user` in through the whole SP-initiated flow with a minted response whose groups
/// attribute is `groups`; returns the ACS answer (303 with a cookie, or a refusal) and the
/// client.
pub async fn try_sign_in(
    idp: &TestIdp,
    gw: &TestGateway,
    user: &str,
    groups: &[&str],
) -> (reqwest::Response, reqwest::Client) {
    let c = client();
    let (req_id, relay) = begin_login_at(&c, &gw.url("/app")).await;
    let mut spec = ResponseSpec::valid(idp, &gw.sp_entity_id(), &gw.acs_url(), Some(&req_id));
    spec.name_id = user.to_string();
    spec.attributes.retain(|(n, _)| n != "groups" && n != "uid");
    spec.attributes.push(("uid".into(), vec![user.into()]));
    if !groups.is_empty() {
        spec.attributes.push((
            "groups".into(),
            groups.iter().map(|g| g.to_string()).collect(),
        ));
    }
    let r = post_acs(&c, gw, &mint::mint_b64(idp, &spec), Some(&relay)).await;
    (r, c)
}

/// [`try_sign_in`] that must succeed; returns the client and the session cookie.
pub async fn sign_in(
    idp: &TestIdp,
    gw: &TestGateway,
    user: &str,
    groups: &[&str],
) -> (reqwest::Client, String) {
    let (r, c) = try_sign_in(idp, gw, user, groups).await;
    assert_eq!(r.status(), 303, "{user} signs in: {}", r.status());
    let cookie = session_cookie(&r).expect("session cookie");
    (c, cookie)
}
