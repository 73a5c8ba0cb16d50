//! Signing a test browser in with a minted response: the whole SP-initiated flow against a
//! gateway started by `gateway.rs`, with the IdP side from `mint.rs`. Test files include it
//! next to those two (`#[path = "support/signin.rs"] mod signin;`).
#![allow(dead_code)]

use crate::gateway::{
    begin_login_at, client, post_acs, session_cookie, start_gateway, start_upstream, Options,
    TestGateway, Upstream,
};
use crate::mint::{self, ResponseSpec, TestIdp};

/// A minted IdP (`https://idp.test/metadata`), a recording upstream, and a gateway in
/// front of it with `extra_toml` appended to its config.
#[allow(dead_code)]
pub async fn start_minted(extra_toml: &str) -> (TestIdp, Upstream, TestGateway) {
    let idp = TestIdp::generate("https://idp.test/metadata");
    let up = start_upstream().await;
    let opts = Options {
        extra_toml: extra_toml.to_string(),
        ..Options::default()
    };
    let gw = start_gateway(&up.url(), &idp.metadata_xml("https://idp.test/sso"), opts).await;
    (idp, up, gw)
}

/// Signs a browser in through the whole flow from `path`; returns the client holding the
/// session and the session cookie as `name=value`. `adjust` may change the minted response
/// (user, attributes) before it is signed.
pub async fn sign_in_as(
    idp: &TestIdp,
    gw: &TestGateway,
    path: &str,
    adjust: impl FnOnce(&mut ResponseSpec),
) -> (reqwest::Client, String) {
    sign_in_at(idp, gw, &gw.url(path), path, adjust).await
}

/// [`sign_in_as`] starting at the full URL `start_url` (e.g. through a front proxy) of the
/// protected `path`, where the ACS must send the browser back to.
pub async fn sign_in_at(
    idp: &TestIdp,
    gw: &TestGateway,
    start_url: &str,
    path: &str,
    adjust: impl FnOnce(&mut ResponseSpec),
) -> (reqwest::Client, String) {
    let c = client();
    let (req_id, relay) = begin_login_at(&c, start_url).await;
    let mut spec = ResponseSpec::valid(idp, &gw.sp_entity_id(), &gw.acs_url(), Some(&req_id));
    adjust(&mut spec);
    let r = post_acs(&c, gw, &mint::mint_b64(idp, &spec), Some(&relay)).await;
    let status = r.status();
    let loc = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let cookie = session_cookie(&r);
    assert_eq!(
        status,
        303,
        "sign-in succeeds: {}",
        r.text().await.unwrap_or_default()
    );
    assert_eq!(loc.as_deref(), Some(path), "back where the sign-in began");
    (c, cookie.expect("session cookie"))
}

/// Whether a fresh browser signs in with a response minted by `idp` (any refusal: `false`)
/// and then reaches the protected `/app`.
pub async fn signs_in(gw: &TestGateway, idp: &TestIdp) -> bool {
    let c = client();
    let (req_id, relay) = begin_login_at(&c, &gw.url("/app")).await;
    let spec = ResponseSpec::valid(idp, &gw.sp_entity_id(), &gw.acs_url(), Some(&req_id));
    let r = post_acs(&c, gw, &mint::mint_b64(idp, &spec), Some(&relay)).await;
    if r.status() != 303 {
        return false;
    }
    c.get(gw.url("/app")).send().await.unwrap().status() == 200
}
