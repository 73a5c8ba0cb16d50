//! Three `samlgate` processes with one config (`[state] backend = "redis"`), one real
//! `redis-server` (tests/support/redis.rs, no persistence) and SimpleSAMLphp as the IdP: the
//! deployment a load balancer or a Kubernetes Deployment with 3 replicas gives. The replicas
//! differ only in `SAMLGATE_LISTEN`; they share the public URL (the load balancer's — here
//! replica A's address, which every browser cookie and IdP URL names), and each test picks
//! which replica a request reaches, as a load balancer might.
//!
//! What it proves: a sign-in started on A completes on B and browses on C; the same response
//! posted again to C is refused; sign-out on B ends the session on A within a second
//! (measured, printed) and closes a WebSocket tunnel open on C as promptly; a LogoutRequest signed with the IdP's key through one replica ends
//! the subject's sessions on all; a restarted replica keeps serving existing sessions; Redis
//! going away costs sign-ins (503) and, after the grace, cached sessions (503), `/readyz`
//! says so, and everything recovers when Redis is back, without a replica restart.
//!
//! Needs `redis-server` and SimpleSAMLphp (scripts/install-deps.sh test); fails, never skips.

#[path = "support/e2e.rs"]
mod e2e;
#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/logout_messages.rs"]
mod logout_messages;
#[path = "support/redis.rs"]
mod redis_server;
#[path = "support/replica.rs"]
mod replica;
#[path = "support/simplesamlphp.rs"]
mod simplesamlphp;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::{expect_signed_in, login_at_idp, redirect_to_idp, start_simplesamlphp, USER_IS_UID};
use gateway::{
    get_accepting, post_saml_response, session_cookie, write_config, Options, Upstream,
    HIGH_RATE_LIMITS, HTML,
};
use redis_server::RedisServer;
use replica::{bare_client, free_port, start_three, Replica};
use simplesamlphp::{login_client, PostForm, SimpleSamlPhp, SpEntry, TestUser, ALICE, BOB};

const JSON: &str = "application/json";
/// The periodic session check of WebSocket tunnels, 10 minutes away: a tunnel that closes
/// within the test was closed by a revocation relayed from another replica.
const TUNNEL_CHECK_FAR_AWAY: &str = "[proxy]\nupgrade_session_check_secs = 600\n";
/// `state.grace_secs` for these replicas: short, so the test sees it end.
const GRACE: Duration = Duration::from_secs(3);

/// Field order is drop order: replicas stop before Redis, the IdP and the upstream.
struct Cluster {
    r: Vec<Replica>,
    redis: RedisServer,
    idp: SimpleSamlPhp,
    up: Upstream,
    acs_url: String,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
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
                "{USER_IS_UID}{HIGH_RATE_LIMITS}{TUNNEL_CHECK_FAR_AWAY}[state]\nbackend = \"redis\"\nredis_url = \"{}\"\ngrace_secs = {}\n",
                redis.url(),
                GRACE.as_secs()
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
            _dir: dir,
        }
    }

    /// Browser sign-in of `user` started on replica `start` at `path`, the IdP's form posted
    /// to replica `acs`. Returns the form and the session cookie (`name=value`).
    async fn sign_in(
        &self,
        c: &reqwest::Client,
        start: usize,
        acs: usize,
        path: &str,
        user: &TestUser,
    ) -> (PostForm, String) {
        let (loc, _) = redirect_to_idp(c, &self.r[start].url(path), &self.idp).await;
        let form = login_at_idp(c, &self.idp, &loc, user, &self.acs_url).await;
        let r = self.post_form(c, acs, &form, HTML).await;
        let cookie = session_cookie(&r).unwrap_or_else(|| {
            panic!(
                "replica {} set no session cookie ({}):\n{}",
                self.r[acs].name,
                r.status(),
                self.r[acs].log_tail()
            )
        });
        expect_signed_in(r, path).await;
        (form, cookie)
    }

    async fn post_form(
        &self,
        c: &reqwest::Client,
        replica: usize,
        form: &PostForm,
        accept: &str,
    ) -> reqwest::Response {
        let acs = self.r[replica].url("/saml/acs");
        post_saml_response(
            c,
            &acs,
            &form.saml_response,
            form.relay_state.as_deref(),
            accept,
        )
        .await
    }

    /// The status replica `i` answers an API request to `/reports` carrying `cookie`.
    async fn status_with(&self, i: usize, cookie: &str) -> u16 {
        bare_client()
            .get(self.r[i].url("/reports"))
            .header("accept", JSON)
            .header("cookie", cookie)
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    }

    /// A WebSocket to the upstream's echo endpoint through replica `i`, under `cookie`.
    async fn open_tunnel(
        &self,
        i: usize,
        cookie: &str,
    ) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>
    {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://127.0.0.1:{}/ws", self.r[i].port)
            .into_client_request()
            .expect("ws request");
        req.headers_mut()
            .insert("cookie", cookie.parse().expect("cookie header"));
        let (ws, resp) = tokio_tungstenite::connect_async(req)
            .await
            .expect("websocket through the replica");
        assert_eq!(resp.status(), 101);
        ws
    }

    /// Polls replica `i` with `cookie` until it answers 401; how long after `since`.
    async fn time_until_refused(&self, i: usize, cookie: &str, since: Instant) -> Duration {
        let deadline = since + Duration::from_secs(10);
        loop {
            let status = self.status_with(i, cookie).await;
            if status == 401 {
                return since.elapsed();
            }
            assert_eq!(status, 200, "replica {} answered {status}", self.r[i].name);
            assert!(
                Instant::now() < deadline,
                "replica {} still serves the session 10 s after its end",
                self.r[i].name
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// The page or JSON error names `kind`.
async fn expect_error(r: reqwest::Response, status: u16, kind: &str) {
    let got = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    assert_eq!(got, status, "{body}");
    assert!(
        body.contains(&format!("\"error\":\"{kind}\"")),
        "{kind}: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_spans_replicas_a_replay_is_refused_and_sign_out_reaches_every_replica() {
    let cl = Cluster::start().await;
    let c = login_client();

    // Started on A, completed on B, browsing on C.
    let (form, cookie) = cl.sign_in(&c, 0, 1, "/reports/q3", &ALICE).await;
    let r = get_accepting(&c, &cl.r[2].url("/reports/q3"), HTML).await;
    assert_eq!(r.status(), 200, "C serves the session B created");
    let seen = cl.up.last();
    assert_eq!(seen.path, "/reports/q3");
    assert_eq!(seen.one("x-forwarded-user").as_deref(), Some(ALICE.uid));
    assert_eq!(cl.status_with(0, &cookie).await, 200, "and so does A");

    // The same response posted again, to C: refused, nothing reaches the upstream.
    let before = cl.up.count();
    let replay = cl.post_form(&c, 2, &form, JSON).await;
    expect_error(replay, 400, "no_pending_login").await;
    // And to B, where it completed: refused as well.
    let replay = cl.post_form(&c, 1, &form, JSON).await;
    expect_error(replay, 400, "no_pending_login").await;
    assert_eq!(
        cl.up.count(),
        before,
        "no replayed request reached the upstream"
    );

    // A WebSocket tunnel open on C under the session.
    let mut ws = cl.open_tunnel(2, &cookie).await;

    // Sign-out on B; A and C (which served it from their caches) refuse the old cookie
    // within a second, and C closes the tunnel.
    let logout = cl.r[1].url("/saml/logout");
    let token = gateway::logout_csrf_token(&c, &logout).await;
    let t0 = Instant::now();
    let r = c
        .post(&logout)
        .header("accept", HTML)
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .expect("sign-out");
    assert!(
        r.status().is_success() || r.status().is_redirection(),
        "{}",
        r.status()
    );
    let on_a = cl.time_until_refused(0, &cookie, t0).await;
    let on_c = cl.time_until_refused(2, &cookie, t0).await;
    eprintln!("sign-out on B: refused on A after {on_a:?}, on C after {on_c:?}");
    assert!(on_a < Duration::from_secs(1) && on_c < Duration::from_secs(1));
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        use futures_util::StreamExt;
        while let Some(Ok(_)) = ws.next().await {}
        t0.elapsed()
    })
    .await
    .unwrap_or_else(|_| panic!("C keeps the tunnel open:\n{}", cl.r[2].log_tail()));
    eprintln!("sign-out on B: tunnel on C closed after {closed:?}");
    assert!(closed < Duration::from_secs(1));
}

/// The persistent NameID SimpleSAMLphp put in a response.
fn name_id(form: &PostForm) -> String {
    let xml = form.response_xml().expect("response xml");
    let after = xml.split("NameID").nth(1).expect("NameID");
    let value = after.split('>').nth(1).and_then(|s| s.split('<').next());
    value.expect("NameID value").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_logout_through_one_replica_ends_the_subjects_sessions_on_all() {
    let cl = Cluster::start().await;
    // Alice in two browsers (signed in through different replicas), Bob in a third.
    let (c1, c2, c3) = (login_client(), login_client(), login_client());
    let (form, alice1) = cl.sign_in(&c1, 0, 1, "/a", &ALICE).await;
    let (_, alice2) = cl.sign_in(&c2, 2, 0, "/b", &ALICE).await;
    let (_, bob) = cl.sign_in(&c3, 1, 2, "/c", &BOB).await;
    // Every replica serves every session (and caches it).
    for i in 0..3 {
        for cookie in [&alice1, &alice2, &bob] {
            assert_eq!(cl.status_with(i, cookie).await, 200);
        }
    }

    // The IdP's LogoutRequest for Alice's NameID, signed with its key (Redirect binding), to
    // the public SLO URL; it arrives at replica B.
    let key = std::fs::read_to_string(cl.idp.dir().join("cert/idp.key")).expect("IdP key");
    let public_slo = cl.acs_url.replace("/saml/acs", "/saml/slo");
    let xml = logout_messages::logout_request(
        "_slo-replicas-1",
        &cl.idp.entity_id,
        &public_slo,
        &name_id(&form),
    );
    let query = logout_messages::redirect_query("SAMLRequest", &xml, Some(&key));
    let t0 = Instant::now();
    let r = bare_client()
        .get(format!("{}?{query}", cl.r[1].url("/saml/slo")))
        .header("accept", HTML)
        .send()
        .await
        .expect("slo");
    let status = r.status();
    let location = r.headers().get("location").cloned();
    assert!(
        status.is_redirection(),
        "the LogoutResponse goes back to the IdP: {status}\n{}",
        cl.r[1].log_tail()
    );
    assert!(location.is_some_and(|l| l.to_str().is_ok_and(|l| l.contains("SAMLResponse="))));
    let mut delays = Vec::new();
    for i in 0..3 {
        delays.push(cl.time_until_refused(i, &alice1, t0).await);
        delays.push(cl.time_until_refused(i, &alice2, t0).await);
        assert_eq!(cl.status_with(i, &bob).await, 200, "Bob is not Alice");
    }
    let worst = delays.iter().max().copied().unwrap_or_default();
    eprintln!("SLO via B: Alice's sessions refused on every replica within {worst:?}");
    assert!(worst < Duration::from_secs(1));

    // The same LogoutRequest again, to another replica: a replay, refused.
    let again = bare_client()
        .get(format!("{}?{query}", cl.r[2].url("/saml/slo")))
        .header("accept", JSON)
        .send()
        .await
        .expect("slo");
    expect_error(again, 400, "slo_refused").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replica_keeps_sessions_and_redis_down_then_up_is_survived() {
    let mut cl = Cluster::start().await;
    let c = login_client();
    let (old_form, cookie) = cl.sign_in(&c, 0, 1, "/x", &ALICE).await;
    assert_eq!(cl.status_with(2, &cookie).await, 200, "cached on C");

    // A rolling update: A goes away and comes back; the session is still good there.
    cl.r[0].stop();
    cl.r[0].spawn();
    cl.r[0].wait_readyz(200).await;
    assert_eq!(
        cl.status_with(0, &cookie).await,
        200,
        "restarted A serves it"
    );

    // A sign-in is in flight (started on B, IdP answered) when Redis goes away.
    let c2 = login_client();
    let (loc, _) = redirect_to_idp(&c2, &cl.r[1].url("/y"), &cl.idp).await;
    let pending_form = login_at_idp(&c2, &cl.idp, &loc, &BOB, &cl.acs_url).await;

    // Traffic on C with the session cookie, all through the outage: what it saw is checked
    // at the end.
    let stop_traffic = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (url, cookie, stop) = (
            cl.r[2].url("/reports"),
            cookie.clone(),
            stop_traffic.clone(),
        );
        tokio::spawn(async move {
            let c = bare_client();
            let mut seen: Vec<u16> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = c
                    .get(&url)
                    .header("accept", JSON)
                    .header("cookie", &cookie)
                    .send()
                    .await;
                let status = r.map_or(0, |r| r.status().as_u16());
                if seen.last() != Some(&status) {
                    seen.push(status);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;

    cl.redis.stop();
    let down_at = Instant::now();
    // The ACS cannot rule out a replay: it refuses with a 503, and no session is made.
    let r = cl.post_form(&c2, 2, &pending_form, JSON).await;
    expect_error(r, 503, "state_unavailable").await;
    // Readiness reports it on every replica.
    for replica in &cl.r {
        replica.wait_readyz(503).await;
    }
    // Within the grace, the session cached on C keeps working; A's cache has it too.
    assert_eq!(
        cl.status_with(2, &cookie).await,
        200,
        "cached on C, within the grace"
    );
    // After the grace: 503, not a sign-in loop and not access.
    while down_at.elapsed() < GRACE + Duration::from_millis(500) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cl.status_with(2, &cookie).await, 503, "grace over");
    let r = get_accepting(&c, &cl.r[2].url("/x"), HTML).await;
    assert_eq!(r.status(), 503);

    // Redis is back (empty: no persistence). Every replica recovers by itself.
    cl.redis.restart();
    for replica in &cl.r {
        replica.wait_readyz(200).await;
    }
    // Sessions were lost with Redis's memory: signed out, not let in.
    for i in 0..3 {
        assert_eq!(cl.status_with(i, &cookie).await, 401, "replica {i}");
    }
    stop_traffic.store(true, Ordering::Relaxed);
    let seen = traffic.await.expect("traffic");
    eprintln!("statuses on C through the outage, in order: {seen:?}");
    // Served while Redis was up and within the grace, then 503, then (Redis back, the session
    // gone with its memory) 401: never a 200 after the first refusal, never anything else.
    assert_eq!(seen.first(), Some(&200), "{seen:?}");
    assert_eq!(seen.last(), Some(&401), "{seen:?}");
    assert!(seen.contains(&503), "{seen:?}");
    let first_refusal = seen.iter().position(|s| *s != 200).expect("a refusal");
    assert!(
        seen[first_refusal..].iter().all(|s| *s == 503 || *s == 401),
        "nobody let in after the grace: {seen:?}"
    );
    // Responses from before the restart complete nothing.
    let r = cl.post_form(&c2, 0, &pending_form, JSON).await;
    expect_error(r, 400, "no_pending_login").await;
    let r = cl.post_form(&c, 1, &old_form, JSON).await;
    expect_error(r, 400, "no_pending_login").await;
    // A new sign-in works across replicas again.
    let (_, fresh) = cl.sign_in(&c, 2, 0, "/z", &ALICE).await;
    assert_eq!(cl.status_with(1, &fresh).await, 200);
}
