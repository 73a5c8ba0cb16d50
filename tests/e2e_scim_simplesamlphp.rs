//! SCIM with a real IdP: SimpleSAMLphp (Debian) signs the users in, the test plays the IdP's
//! provisioning side over SCIM. A user SCIM deactivated is refused at sign-in with the
//! "account is disabled" page although SimpleSAMLphp authenticated them; a provisioned user
//! carries the groups SCIM pushed next to the assertion's (`groups_source = "both"`), and
//! deactivating them ends the session they already have.

#[path = "support/e2e.rs"]
mod e2e;
#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/mint.rs"]
mod mint;
#[path = "support/scim.rs"]
mod scim;
#[path = "support/simplesamlphp.rs"]
mod simplesamlphp;

use e2e::{submit, SspSetup as Setup, USER_IS_UID};
use gateway::{get_accepting, Options, HTML};
use serde_json::json;
use simplesamlphp::{login_client, ALICE, BOB};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

#[tokio::test]
async fn scim_decides_who_simplesamlphp_users_are_here() {
    let dir = scim::ScimDir::new();
    let opts = Options {
        extra_toml: format!("{USER_IS_UID}{}", dir.toml("groups_source = \"both\"")),
        ..Options::default()
    };
    let s = Setup::start(|_| {}, opts).await;
    let api = scim::Scim::new(&s.gw);

    // Bob is provisioned but deactivated: SimpleSAMLphp signs him in, samlgate refuses him.
    let (status, bob) = api
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": BOB.uid, "active": false}),
        )
        .await;
    assert_eq!((status, &bob["active"]), (201, &json!(false)));
    let c = login_client();
    let (start, _) = s.begin(&c, "/reports").await;
    let form = s.idp_login(&c, &start, &BOB).await;
    let before = s.up.count();
    let r = submit(&c, &form, HTML).await;
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(page.contains("Your account is disabled"), "{page}");
    assert!(s.has_no_session(&c).await, "no session for a disabled user");
    assert_eq!(s.up.count(), before, "nothing reached the upstream");

    // Alice is active and in a SCIM group: both sources' groups reach the upstream.
    let (_, alice) = api
        .post("/Users", json!({"schemas": [USER], "userName": ALICE.uid}))
        .await;
    let alice_id = alice["id"].as_str().unwrap().to_string();
    let (status, _) = api
        .post("/Groups", json!({"schemas": [GROUP], "displayName": "scim-auditors", "members": [{"value": alice_id}]}))
        .await;
    assert_eq!(status, 201);
    let c = login_client();
    s.sign_in(&c, "/reports", &ALICE).await;
    let r = get_accepting(&c, &s.gw.url("/reports"), HTML).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        s.up.last().one("x-forwarded-groups").as_deref(),
        Some("analysts,admins,scim-auditors")
    );

    // Deactivated while signed in: the next request has no session.
    let off = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": false}]});
    assert_eq!(api.patch(&format!("/Users/{alice_id}"), off).await.0, 200);
    assert!(
        s.has_no_session(&c).await,
        "deprovisioning ended Alice's session"
    );
}
