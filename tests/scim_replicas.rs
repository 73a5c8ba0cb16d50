//! SCIM with `[state] backend = "redis"`: three `samlgate` processes with one config, one
//! real `redis-server` (tests/support/redis.rs, no persistence) and SimpleSAMLphp as the IdP.
//! The IdP's provisioning requests reach any replica (as a load balancer sends them); what
//! one replica stores, every replica acts on.
//!
//! What it proves: a user created on A is served by B; a group membership added on A shows in
//! the next request's groups header on C (delay measured, printed); `active=false` on A ends
//! the session C was serving and SimpleSAMLphp's sign-in of that user through B gets the
//! "account is disabled" page; a user deleted through B is gone on A and refused there at
//! sign-in. Then: the data survives a restart of every replica (Redis keeps it, the redb file
//! is never made); a dump of Redis holds no user name, email or group name, and every SCIM key
//! is under one hash tag; a value moved to another entry is refused by a replica loading it
//! (503 and `/readyz` 503, never served) until it is put back; with Redis gone a SCIM write
//! answers 503 and changes nothing, and a Redis that came back empty gets the data back from
//! the replicas' memory, so a deactivated user stays refused. A `scim.redb` left by the
//! embedded store is copied, once, into a Redis that holds no SCIM data yet.
//!
//! Needs `redis-server` and SimpleSAMLphp (scripts/install-deps.sh test); fails, never skips.

#[path = "support/e2e.rs"]
mod e2e;
#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/mint.rs"]
mod mint;
#[path = "support/redis.rs"]
mod redis_server;
#[path = "support/replica.rs"]
mod replica;
#[path = "support/scim.rs"]
mod scim;
#[path = "support/simplesamlphp.rs"]
mod simplesamlphp;

use std::time::{Duration, Instant};

use e2e::{expect_signed_in, login_at_idp, redirect_to_idp, start_simplesamlphp, USER_IS_UID};
use gateway::{
    post_saml_response, session_cookie, write_config, Options, Upstream, HIGH_RATE_LIMITS, HTML,
};
use redis_server::RedisServer;
use replica::{bare_client, free_port, start_three, Replica};
use serde_json::{json, Value};
use simplesamlphp::{login_client, SimpleSamlPhp, SpEntry, TestUser, ALICE, BOB};

const JSON: &str = "application/json";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// The hash tag every SCIM key carries (default `state.key_prefix`).
const TAG: &str = "{samlgate:scim}:";

/// Field order is drop order: replicas stop before Redis, the IdP and the upstream.
struct Cluster {
    r: Vec<Replica>,
    redis: RedisServer,
    idp: SimpleSamlPhp,
    up: Upstream,
    acs_url: String,
    scim_dir: scim::ScimDir,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        Cluster::start_with(scim::ScimDir::new()).await
    }

    /// Three replicas whose `[scim]` names `scim_dir` (its token files and `state_dir`).
    async fn start_with(scim_dir: scim::ScimDir) -> Cluster {
        let redis = RedisServer::start();
        let ports = [free_port(), free_port(), free_port()];
        let public_url = format!("http://127.0.0.1:{}", ports[0]);
        let entry = SpEntry::new(
            &format!("{public_url}/saml/metadata"),
            &format!("{public_url}/saml/acs"),
        );
        let idp = start_simplesamlphp(std::slice::from_ref(&entry)).await;
        let up = gateway::start_upstream().await;
        let opts = Options {
            public_url: Some(public_url),
            extra_toml: format!(
                "{USER_IS_UID}{HIGH_RATE_LIMITS}{}[state]\nbackend = \"redis\"\nredis_url = \"{}\"\n",
                scim_dir.toml("groups_source = \"both\""),
                redis.url(),
            ),
            ..Options::default()
        };
        let addr = format!("127.0.0.1:{}", ports[0]).parse().expect("addr");
        let (dir, config, _) = write_config(addr, &up.url(), &idp.metadata_xml, &opts, None);
        let r = start_three(&config, dir.path(), ports).await;
        Cluster {
            r,
            redis,
            idp,
            up,
            acs_url: entry.acs_url,
            scim_dir,
            _dir: dir,
        }
    }

    /// The SCIM client of replica `i`.
    fn api(&self, i: usize) -> scim::Scim {
        scim::Scim {
            base: self.r[i].url("/scim/v2"),
            token: scim::TOKEN.into(),
            http: reqwest::Client::new(),
        }
    }

    /// SimpleSAMLphp's sign-in of `user` started on replica `start`, its form posted to
    /// replica `acs`: the ACS's answer.
    async fn try_sign_in(
        &self,
        c: &reqwest::Client,
        start: usize,
        acs: usize,
        path: &str,
        user: &TestUser,
    ) -> reqwest::Response {
        let (loc, _) = redirect_to_idp(c, &self.r[start].url(path), &self.idp).await;
        let form = login_at_idp(c, &self.idp, &loc, user, &self.acs_url).await;
        let acs_url = self.r[acs].url("/saml/acs");
        let relay = form.relay_state.as_deref();
        post_saml_response(c, &acs_url, &form.saml_response, relay, HTML).await
    }

    /// A sign-in that must succeed; the session cookie (`name=value`).
    async fn sign_in(&self, start: usize, acs: usize, path: &str, user: &TestUser) -> String {
        let c = login_client();
        let r = self.try_sign_in(&c, start, acs, path, user).await;
        let cookie = session_cookie(&r).unwrap_or_else(|| {
            panic!(
                "replica {} set no session cookie ({}):\n{}",
                self.r[acs].name,
                r.status(),
                self.r[acs].log_tail()
            )
        });
        expect_signed_in(r, path).await;
        cookie
    }

    /// A sign-in SCIM must refuse: 403 with the "account is disabled" page, no session,
    /// nothing reaching the upstream.
    async fn sign_in_refused(&self, start: usize, acs: usize, user: &TestUser) {
        let c = login_client();
        let before = self.up.count();
        let r = self.try_sign_in(&c, start, acs, "/reports", user).await;
        assert_eq!(r.status(), 403, "{}", self.r[acs].log_tail());
        assert!(
            session_cookie(&r).is_none(),
            "no session for a refused user"
        );
        let page = r.text().await.expect("page");
        assert!(page.contains("Your account is disabled"), "{page}");
        assert_eq!(self.up.count(), before, "nothing reached the upstream");
    }

    /// An API request to `/reports` on replica `i` with `cookie`: status, and the groups
    /// header the upstream saw when it was let through.
    async fn request(&self, i: usize, cookie: &str) -> (u16, Option<String>) {
        let r = bare_client()
            .get(self.r[i].url("/reports"))
            .header("accept", JSON)
            .header("cookie", cookie)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let groups = (status == 200).then(|| self.up.last().one("x-forwarded-groups"));
        (status, groups.flatten())
    }

    /// Every key in Redis with its content (strings, hashes' fields and values, lists).
    async fn dump(&self) -> Vec<(String, Vec<u8>)> {
        let mut c = self
            .redis
            .client()
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut c)
            .await
            .expect("KEYS");
        let mut out = Vec::new();
        for key in keys {
            let kind: String = redis::cmd("TYPE")
                .arg(&key)
                .query_async(&mut c)
                .await
                .expect("TYPE");
            let parts: Vec<Vec<u8>> = match kind.as_str() {
                "string" => vec![redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut c)
                    .await
                    .expect("GET")],
                "hash" => redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async(&mut c)
                    .await
                    .expect("HGETALL"),
                "list" => redis::cmd("LRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut c)
                    .await
                    .expect("LRANGE"),
                "set" => redis::cmd("SMEMBERS")
                    .arg(&key)
                    .query_async(&mut c)
                    .await
                    .expect("SMEMBERS"),
                other => panic!("unexpected type {other} of {key}"),
            };
            out.push((key, parts.concat()));
        }
        out
    }

    async fn redis_cmd<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        let mut c = self
            .redis
            .client()
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        cmd.query_async(&mut c).await.expect("redis command")
    }
}

fn created_id(status: u16, body: &Value) -> String {
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().expect("id").to_string()
}

fn active(on: bool) -> Value {
    json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": on}]})
}

/// Polls `until` every 2 ms for at most 10 s; how long it took.
async fn wait_for<F, Fut>(what: &str, mut until: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    while !until().await {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{what}: not within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    t0.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_replica_provisions_every_replica_enforces() {
    let cl = Cluster::start().await;
    let (a, b) = (cl.api(0), cl.api(1));

    // Created on A, read on B.
    let (status, body) = a
        .post("/Users", json!({"schemas": [USER], "userName": ALICE.uid, "emails": [{"value": ALICE.mail, "primary": true}]}))
        .await;
    let alice = created_id(status, &body);
    let (status, got) = b.get(&format!("/Users/{alice}")).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["userName"], json!(ALICE.uid));
    assert_eq!(got["emails"][0]["value"], json!(ALICE.mail));
    let (status, group) = a
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "scim-auditors"}),
        )
        .await;
    let group = created_id(status, &group);

    // Alice signs in through B (SimpleSAMLphp), browses on C: the assertion's groups only.
    let cookie = cl.sign_in(1, 1, "/reports", &ALICE).await;
    assert_eq!(
        cl.request(2, &cookie).await,
        (200, Some("analysts,admins".to_string()))
    );

    // A membership added on A: C's next requests carry it, without a new sign-in.
    let add = json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": alice}]}]});
    let (status, body) = a.patch(&format!("/Groups/{group}"), add).await;
    assert_eq!(status, 200, "{body}");
    let delay = wait_for("the membership reaches C", || async {
        cl.request(2, &cookie).await.1.as_deref() == Some("analysts,admins,scim-auditors")
    })
    .await;
    eprintln!("group membership PATCHed on A: in C's headers after {delay:?}");

    // Deactivated on A: the session C serves ends, and the IdP's sign-in through B is refused.
    let before = cl.up.count();
    let (status, body) = a.patch(&format!("/Users/{alice}"), active(false)).await;
    assert_eq!((status, &body["active"]), (200, &json!(false)), "{body}");
    let delay = wait_for("C refuses the session", || async {
        cl.request(2, &cookie).await.0 != 200
    })
    .await;
    eprintln!("active=false on A: session refused on C after {delay:?}");
    let (status, _) = cl.request(2, &cookie).await;
    assert!(status == 401 || status == 403, "refused, not {status}");
    assert_eq!(
        cl.up.count(),
        before,
        "no request of Alice's reached the upstream"
    );
    cl.sign_in_refused(1, 1, &ALICE).await;
    // Active again (through C): the sign-in works on B.
    let (status, _) = cl
        .api(2)
        .patch(&format!("/Users/{alice}"), active(true))
        .await;
    assert_eq!(status, 200);
    cl.sign_in(1, 1, "/reports", &ALICE).await;

    // Bob: created on A, deleted through B; A no longer has him and refuses his sign-in.
    let (status, body) = a
        .post("/Users", json!({"schemas": [USER], "userName": BOB.uid}))
        .await;
    let bob = created_id(status, &body);
    assert_eq!(b.delete(&format!("/Users/{bob}")).await.0, 204);
    assert_eq!(a.get(&format!("/Users/{bob}")).await.0, 404);
    cl.sign_in_refused(0, 0, &BOB).await;
    // The store file of the embedded backend was never made: the data is in Redis only.
    assert!(!cl.scim_dir.dir.path().join("state/scim.redb").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_data_survives_restarts_is_sealed_in_redis_and_refused_when_tampered() {
    let mut cl = Cluster::start().await;
    let a = cl.api(0);
    let (status, body) = a
        .post("/Users", json!({"schemas": [USER], "userName": ALICE.uid, "emails": [{"value": ALICE.mail}], "name": {"givenName": "Alice"}}))
        .await;
    let alice = created_id(status, &body);
    let (status, body) = a
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": BOB.uid, "active": false}),
        )
        .await;
    let bob = created_id(status, &body);
    let (status, body) = a
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": "dave.departed@example.com"}),
        )
        .await;
    let dave = created_id(status, &body);
    assert_eq!(a.delete(&format!("/Users/{dave}")).await.0, 204);
    let (status, body) = a
        .post("/Groups", json!({"schemas": [GROUP], "displayName": "scim-auditors", "members": [{"value": alice}]}))
        .await;
    created_id(status, &body);

    // A dump of Redis: no name, email, group name or JSON attribute name in any key or
    // value; the SCIM keys all under one hash tag.
    let dump = cl.dump().await;
    let scim_keys: Vec<&str> = dump
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| k.contains("scim"))
        .collect();
    let mut want: Vec<String> = ["deleted", "groups", "log", "users", "version"]
        .iter()
        .map(|k| format!("{TAG}{k}"))
        .collect();
    let mut got: Vec<String> = scim_keys.iter().map(|k| k.to_string()).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    for (key, value) in &dump {
        for needle in [
            ALICE.uid,
            "example.com",
            "dave.departed",
            "scim-auditors",
            "userName",
            "givenName",
            "displayName",
        ] {
            let n = needle.as_bytes();
            assert!(!key.contains(needle), "{key} names {needle}");
            assert!(
                !value.windows(n.len()).any(|w| w == n),
                "{key} holds {needle} in plain text"
            );
        }
    }

    // Every replica restarts; Redis kept the data.
    for r in &mut cl.r {
        r.stop();
    }
    for r in &mut cl.r {
        r.spawn();
    }
    for r in &cl.r {
        r.wait_readyz(200).await;
    }
    let c = cl.api(2);
    let (status, got) = c.get(&format!("/Users/{alice}")).await;
    assert_eq!(
        (status, &got["emails"][0]["value"]),
        (200, &json!(ALICE.mail))
    );
    assert_eq!(c.get(&format!("/Users/{dave}")).await.0, 404);
    cl.sign_in_refused(2, 2, &BOB).await;
    let cookie = cl.sign_in(2, 1, "/reports", &ALICE).await;
    assert_eq!(
        cl.request(0, &cookie).await,
        (200, Some("analysts,admins,scim-auditors".to_string()))
    );

    // Bob's entry replaced by Alice's sealed value (a valid seal, for another entry): a
    // replica loading it refuses it, says so, and serves nothing from SCIM meanwhile.
    let users = format!("{TAG}users");
    let bob_value: Vec<u8> = cl.redis_cmd(redis::cmd("HGET").arg(&users).arg(&bob)).await;
    let alice_value: Vec<u8> = cl
        .redis_cmd(redis::cmd("HGET").arg(&users).arg(&alice))
        .await;
    let _: i64 = cl
        .redis_cmd(redis::cmd("HSET").arg(&users).arg(&bob).arg(&alice_value))
        .await;
    cl.r[2].stop();
    cl.r[2].spawn();
    cl.r[2].wait_readyz(503).await;
    let (status, body) = cl.api(2).get(&format!("/Users/{bob}")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["schemas"][0],
        json!("urn:ietf:params:scim:api:messages:2.0:Error")
    );
    wait_for("C logs the refused value", || async {
        cl.r[2].log_text().contains("state_value_refused")
    })
    .await;
    let r = bare_client()
        .get(cl.r[2].url("/reports"))
        .header("accept", JSON)
        .header("cookie", &cookie)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 503, "no access on a guess");
    // Put back: C loads it by itself.
    let _: i64 = cl
        .redis_cmd(redis::cmd("HSET").arg(&users).arg(&bob).arg(&bob_value))
        .await;
    cl.r[2].wait_readyz(200).await;
    let (status, got) = cl.api(2).get(&format!("/Users/{bob}")).await;
    assert_eq!((status, &got["userName"]), (200, &json!(BOB.uid)));

    // Redis goes away: a SCIM write answers 503 and changes nothing.
    cl.redis.stop();
    let (status, body) = a.patch(&format!("/Users/{bob}"), active(true)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], json!("503"));
    // Back, empty (no persistence): the replicas put their data back, Bob stays inactive.
    cl.redis.restart();
    for r in &cl.r {
        r.wait_readyz(200).await;
    }
    wait_for("the data is back in Redis", || async {
        let mut c = match cl.redis.client().get_multiplexed_async_connection().await {
            Ok(c) => c,
            Err(_) => return false,
        };
        let n: Option<i64> = redis::cmd("HLEN")
            .arg(&users)
            .query_async(&mut c)
            .await
            .ok();
        n == Some(2)
    })
    .await;
    let restored =
        cl.r.iter()
            .any(|r| r.log_text().contains("scim_store_restored"));
    assert!(restored, "a replica logged the restore");
    let (status, got) = cl.api(1).get(&format!("/Users/{bob}")).await;
    assert_eq!((status, &got["active"]), (200, &json!(false)), "{got}");
    // A replica started now reads it from Redis.
    cl.r[1].stop();
    cl.r[1].spawn();
    cl.r[1].wait_readyz(200).await;
    cl.sign_in_refused(1, 1, &BOB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_store_file_is_imported_once_into_an_empty_redis() {
    // One gateway with the embedded store (the default) provisions, then stops.
    let dir = scim::ScimDir::new();
    let (alice, group) = {
        let idp = mint::TestIdp::generate("https://idp.test/metadata");
        let up = gateway::start_upstream().await;
        let opts = Options {
            extra_toml: dir.toml("groups_source = \"both\""),
            ..Options::default()
        };
        let mut gw =
            gateway::start_gateway(&up.url(), &idp.metadata_xml("https://idp.test/sso"), opts)
                .await;
        let api = scim::Scim::new(&gw);
        let (status, body) = api
            .post("/Users", json!({"schemas": [USER], "userName": ALICE.uid}))
            .await;
        let alice = created_id(status, &body);
        let (status, body) = api
            .post(
                "/Users",
                json!({"schemas": [USER], "userName": BOB.uid, "active": false}),
            )
            .await;
        created_id(status, &body);
        let (status, body) = api
            .post("/Groups", json!({"schemas": [GROUP], "displayName": "scim-auditors", "members": [{"value": alice}]}))
            .await;
        let group = created_id(status, &body);
        gw.shutdown().await.expect("gateway stops");
        (alice, group)
    };
    let file = dir.dir.path().join("state/scim.redb");
    assert!(file.exists());
    let before = std::fs::read(&file).expect("redb file");

    // The replicas with Redis: the first to load copies the file's data into Redis.
    let cl = Cluster::start_with(dir).await;
    let (status, got) = cl.api(1).get(&format!("/Groups/{group}")).await;
    assert_eq!(
        (status, &got["members"][0]["value"]),
        (200, &json!(alice)),
        "{got}"
    );
    let imported =
        cl.r.iter()
            .filter(|r| r.log_text().contains("scim_store_imported"))
            .count();
    assert_eq!(imported, 1, "exactly one replica imported");
    let version: u64 = cl
        .redis_cmd(redis::cmd("GET").arg(format!("{TAG}version")))
        .await;
    assert_eq!(version, 1, "one change: the import");
    cl.sign_in_refused(2, 2, &BOB).await;
    let cookie = cl.sign_in(0, 1, "/reports", &ALICE).await;
    assert_eq!(
        cl.request(2, &cookie).await,
        (200, Some("analysts,admins,scim-auditors".to_string()))
    );
    // Changes go to Redis only; the file is left as it was.
    let (status, _) = cl
        .api(2)
        .patch(&format!("/Users/{alice}"), active(false))
        .await;
    assert_eq!(status, 200);
    let after = std::fs::read(cl.scim_dir.dir.path().join("state/scim.redb")).expect("redb file");
    assert!(before == after, "the embedded store file is not written");
}
