//! Signing a test browser in with a minted response: the whole SP-initiated flow against a
//! gateway started by `gateway.rs`, with the IdP side from `mint.rs`. Test files include it
//! next to those two (`#[path = "support/signin.rs"] mod signin;`).

use crate::gateway::{begin_login, client, post_acs, TestGateway};
use crate::mint::{self, ResponseSpec, TestIdp};

/// Signs a browser in through the whole flow from `path`; returns the client holding the
/// session and the session cookie as `name=value`. `adjust` may change the minted response
/// (user, attributes) before it is signed.
pub async fn sign_in_as(
    idp: &TestIdp,
    gw: &TestGateway,
    path: &str,
    adjust: impl FnOnce(&mut ResponseSpec),
) -> (reqwest::Client, String) {
    let c = client();
    let (req_id, relay) = begin_login(&c, gw, path).await;
    let mut spec = ResponseSpec::valid(idp, &gw.sp_entity_id(), &gw.acs_url(), Some(&req_id));
    adjust(&mut spec);
    let r = post_acs(&c, gw, &mint::mint_b64(idp, &spec), Some(&relay)).await;
    let status = r.status();
    let loc = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("samlgate_session="))
        .map(|v| v.split(';').next().unwrap().to_string());
    assert_eq!(
        status,
        303,
        "sign-in succeeds: {}",
        r.text().await.unwrap_or_default()
    );
    assert_eq!(loc.as_deref(), Some(path));
    (c, cookie.expect("session cookie"))
}
