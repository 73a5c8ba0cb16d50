//! Forward-auth mode behind a real nginx from Debian: nginx's `auth_request` asks samlgate's
//! `GET /saml/auth` about every request and proxies the allowed ones to the app itself,
//! passing on the identity headers samlgate answered with; `error_page 401 = /saml/login`
//! starts the sign-in. Everything is real and on loopback: nginx (tests/support/nginx.rs),
//! samlgate in-process, the echo upstream as the app (it records what reached it), responses
//! minted in-process (tests/support/mint.rs) or a real SimpleSAMLphp IdP.
//!
//! nginx runs the `location` blocks of the project's own example
//! (deploy/examples/nginx-forward-auth/nginx.conf, with the header snippet it includes), read
//! from the file. What is proved is what the app and the client observe: who reaches the app,
//! with which identity, what a client without a session gets, path rules judged on the
//! original URI (only when nginx is a trusted proxy), that client-sent identity, URI and method
//! headers change nothing, that no client copy of an identity header (samlgate's or another
//! gateway's) or of a routing override reaches the app, that contradicting original-request
//! headers give a 403 rather than nginx's 500, and that clients cannot call `/saml/auth`.
//!
//! Needs Debian's `nginx-light` and, for the SimpleSAMLphp test, the packages of
//! scripts/install-deps.sh; without them the tests fail, never skip.

#[path = "support/e2e.rs"]
mod e2e;
#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/mint.rs"]
mod mint;
#[path = "support/nginx.rs"]
mod nginx;
#[path = "support/signin.rs"]
mod signin;
#[path = "support/simplesamlphp.rs"]
mod simplesamlphp;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use e2e::GatewayListener;
use gateway::{
    client, get_accepting, parse_idp_redirect, post_acs, session_cookie, start_gateway_on,
    start_upstream, Options, Seen, TestGateway, Upstream, HTML,
};
use mint::{ResponseSpec, TestIdp};
use nginx::Nginx;
use samlgate::foreign_headers::FOREIGN_IDENTITY_HEADERS;
use samlgate::proxy::ROUTING_OVERRIDE_HEADERS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const IDP_ENTITY: &str = "https://idp.test/metadata";
const IDP_SSO: &str = "https://idp.test/sso";
const JSON: &str = "application/json";

/// nginx trusted by the gateway (the only proxy on loopback).
const TRUST_NGINX: &str = "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n";
/// No trusted proxy: the original-request headers must be ignored.
const TRUST_NOBODY: &str = "[server]\ntrusted_proxies = []\n";

/// Path rules used by the rule tests.
const RULES: &str = r#"
[[access.rules]]
name = "public"
path_prefix = "/public/"
action = "allow"

[[access.rules]]
name = "docs-read-only"
path_prefix = "/docs/"
methods = ["GET", "HEAD"]
action = "allow"

[[access.rules]]
name = "files-by-number"
path_regex = "^/files/[0-9]+$"
action = "allow"

[[access.rules]]
name = "blocked"
path_prefix = "/blocked/"
action = "deny"

[[access.rules]]
name = "superusers-only"
path_prefix = "/admin/"
action = "authenticate"
allowed_groups = ["superusers"]
"#;

/// The example's (deploy/examples/nginx-forward-auth/nginx.conf) marked `location` blocks, run
/// as they are: only the include path of the header snippet is made absolute, and the
/// `upstream`s they name (`samlgate`, `app`) point at the test's gateway and app.
fn example_locations() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(EXAMPLE_DIR);
    let conf = std::fs::read_to_string(dir.join("nginx.conf")).expect("the nginx example");
    let begin = conf
        .find("# ---- the locations tests/forward_auth_nginx.rs runs")
        .expect("the begin marker in the nginx example");
    let end = conf
        .find("# ---- END of the locations")
        .expect("the end marker in the nginx example");
    let snippet = dir.join(SNIPPET);
    let locations = conf[begin..end].replace(
        &format!("/etc/nginx/{SNIPPET}"),
        snippet.to_str().expect("a UTF-8 path"),
    );
    assert!(
        locations.contains(&format!("include {};", snippet.display())),
        "the example includes {SNIPPET} in location /"
    );
    locations
}

const EXAMPLE_DIR: &str = "deploy/examples/nginx-forward-auth";
/// The header snippet the example includes in `location /`.
const SNIPPET: &str = "samlgate-client-headers.conf";

const IDENTITY_HEADERS: [&str; 5] = [
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-role",
];

/// The nginx `http {}` body: the example's locations between `upstream`s for the test's
/// gateway and app.
fn forward_auth_conf(gateway: SocketAddr, app: SocketAddr) -> String {
    conf_around(&example_locations(), gateway, app)
}

fn conf_around(locations: &str, gateway: SocketAddr, app: SocketAddr) -> String {
    format!(
        "underscores_in_headers off;\n\
         ignore_invalid_headers on;\n\
         upstream samlgate {{ server {gateway}; }}\n\
         upstream app {{ server {app}; }}\n\
         server {{\n\
         \x20   listen 127.0.0.1:{{port}};\n\
         {locations}\n\
         }}\n"
    )
}

// ---------------------------------------------------------------------------------------------
// Setup: app + gateway listener → nginx (knows both) → gateway with public_url = nginx
// ---------------------------------------------------------------------------------------------

/// nginx in front of the app, asking samlgate. Field order = drop order.
struct Front {
    nginx: Nginx,
    gw: TestGateway,
    /// The app behind nginx.
    app: Upstream,
    /// samlgate's own `upstream`: in forward-auth mode nothing may be proxied to it.
    decoy: Upstream,
    idp: TestIdp,
}

impl Front {
    /// `extra_toml` goes into the gateway's config (trusted proxies, rules …).
    async fn start(extra_toml: &str) -> Front {
        Front::start_with(extra_toml, &example_locations()).await
    }

    /// [`Front::start`] with other `location` blocks than the example's.
    async fn start_with(extra_toml: &str, locations: &str) -> Front {
        let idp = TestIdp::generate(IDP_ENTITY);
        let app = start_upstream().await;
        let decoy = start_upstream().await;
        // The gateway's address goes into nginx's config and nginx's into the gateway's
        // public_url: bind the gateway's listener first, start nginx (it retries a port taken
        // meanwhile), then build the gateway on the bound listener.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gw_addr = listener.local_addr().unwrap();
        let nginx = Nginx::start("forward-auth", &conf_around(locations, gw_addr, app.addr));
        let gw = start_gateway_on(
            listener,
            &decoy.url(),
            &idp.metadata_xml(IDP_SSO),
            Options {
                public_url: Some(nginx.url()),
                extra_toml: extra_toml.into(),
                ..Options::default()
            },
        )
        .await;
        assert_eq!(gw.acs_url(), format!("{}/saml/acs", nginx.url()));
        Front {
            nginx,
            gw,
            app,
            decoy,
            idp,
        }
    }

    /// A URL on nginx.
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.nginx.url(), path)
    }

    /// Signs a browser in through nginx, starting at `path` (a protected page: the sign-in
    /// starts from nginx's `error_page 401`); `edit` adjusts the minted response. Asserts the
    /// ACS's 303 back to `path`; returns the client (cookie jar) and the session cookie.
    async fn sign_in(
        &self,
        path: &str,
        edit: impl FnOnce(&mut ResponseSpec),
    ) -> (reqwest::Client, String) {
        signin::sign_in_at(&self.idp, &self.gw, &self.url(path), path, edit).await
    }

    /// GET through nginx with extra headers; returns (status, body).
    async fn get(
        &self,
        c: &reqwest::Client,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, String) {
        let mut rb = c.get(self.url(path));
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let r = rb.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    /// Nothing went through samlgate's own proxy: nginx did all proxying.
    fn assert_gateway_proxied_nothing(&self) {
        assert_eq!(
            self.decoy.count(),
            0,
            "in forward-auth mode samlgate proxies nothing itself"
        );
    }
}

/// (status, Location, `name=value` of the session cookie) of an ACS answer.
fn acs_outcome(r: &reqwest::Response) -> (u16, Option<String>, Option<String>) {
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (r.status().as_u16(), location, session_cookie(r))
}

fn bob_the_superuser(spec: &mut ResponseSpec) {
    spec.name_id = "bob".into();
    spec.attributes = vec![
        ("uid".into(), vec!["bob".into()]),
        ("mail".into(), vec!["bob@example.com".into()]),
        ("displayName".into(), vec!["Bob Super".into()]),
        ("groups".into(), vec!["superusers".into()]),
    ];
}

/// No identity header of any spelling reached the app.
fn assert_anonymous(seen: &Seen) {
    for h in IDENTITY_HEADERS {
        assert_eq!(
            seen.any_variant(h),
            vec![],
            "{h} reached the app on an anonymous request"
        );
    }
}

/// Every identity header arrived exactly once, as samlgate set it.
fn assert_alice(seen: &Seen) {
    let expected = [
        ("x-forwarded-user", "alice"),
        ("x-forwarded-email", "alice@example.com"),
        ("x-forwarded-groups", "analysts,admins"),
        ("x-forwarded-preferred-username", "Alice Example"),
    ];
    for (h, v) in expected {
        assert_eq!(
            seen.any_variant(h),
            vec![(h.to_string(), v.to_string())],
            "{h} as samlgate set it, once"
        );
    }
}

/// One raw HTTP/1.1 GET to nginx with the path and header names exactly as given (reqwest
/// would resolve dot segments and lower-case names). Returns the status code.
async fn raw_get(port: u16, path: &str, headers: &[&str]) -> u16 {
    raw_exchange(port, path, headers).await.0
}

/// [`raw_get`], also returning the response head (status line and headers) in lower case.
async fn raw_exchange(port: u16, path: &str, headers: &[&str]) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line from nginx: {text:?}"));
    (status, head.to_ascii_lowercase())
}

// ---------------------------------------------------------------------------------------------
// a. signed in: the app behind nginx sees the identity, never a client-sent one
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn signed_in_request_reaches_the_app_with_identity_and_never_a_spoofed_one() {
    let f = Front::start(TRUST_NGINX).await;
    let (c, _) = f.sign_in("/reports?x=1", |_| {}).await;
    assert_eq!(f.app.count(), 0, "nothing reached the app while signing in");

    let (status, body) = f
        .get(
            &c,
            "/reports?x=1",
            &[
                ("accept", HTML),
                ("X-Forwarded-User", "mallory"),
                ("X_Forwarded_User", "mallory"),
                ("X-Forwarded-Email", "mallory@evil.example"),
                ("X-Forwarded-Groups", "superusers"),
                ("x_forwarded_groups", "superusers"),
                ("X-Forwarded-Preferred-Username", "Mallory"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("upstream page"), "{body}");
    assert_eq!(f.app.count(), 1);
    let seen = f.app.last();
    assert_eq!(seen.path, "/reports?x=1", "the app gets the original URI");
    assert_alice(&seen);
    assert!(
        !seen
            .headers
            .iter()
            .any(|(_, v)| v.contains("mallory") || v.contains("Mallory") || v == "superusers"),
        "a client-sent identity reached the app: {:?}",
        seen.headers
    );
    f.assert_gateway_proxied_nothing();
}

// ---------------------------------------------------------------------------------------------
// b. no session: nginx's error_page 401 → /saml/login → IdP, back to the original URI
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn without_a_session_nginx_sends_the_browser_to_the_idp_and_back_to_the_original_uri() {
    let f = Front::start(TRUST_NGINX).await;

    // An API client: nothing reaches the app, and nginx's internal redirect to /saml/login
    // starts a sign-in (error_page 401 = /saml/login is the documented setup).
    let c = client();
    let r = get_accepting(&c, &f.url("/reports?x=1"), JSON).await;
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(status, 302, "nginx answers with /saml/login's response");
    assert!(
        location.as_deref().is_some_and(|l| l.starts_with(IDP_SSO)),
        "{location:?}"
    );
    assert_eq!(f.app.count(), 0, "no session, nothing reaches the app");

    // A browser: 302 to the IdP; the pending sign-in returns to the original URI.
    let c = client();
    let r = get_accepting(&c, &f.url("/reports?x=1"), HTML).await;
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(IDP_SSO), "{location}");
    assert!(
        r.headers()
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().unwrap().starts_with("samlgate_login=")),
        "the login cookie is set through nginx"
    );
    let (req_id, relay) = gateway::parse_idp_redirect(&location);
    let spec = ResponseSpec::valid(&f.idp, &f.gw.sp_entity_id(), &f.gw.acs_url(), Some(&req_id));
    let r = post_acs(&c, &f.gw, &mint::mint_b64(&f.idp, &spec), Some(&relay)).await;
    let (status, location, cookie) = acs_outcome(&r);
    assert_eq!(status, 303, "{}", r.text().await.unwrap_or_default());
    assert_eq!(
        location.as_deref(),
        Some("/reports?x=1"),
        "the return path came from nginx's X-Original-URI"
    );
    assert!(cookie.is_some());
    assert_eq!(f.app.count(), 0);

    let (status, _) = f.get(&c, "/reports?x=1", &[("accept", HTML)]).await;
    assert_eq!(status, 200);
    assert_alice(&f.app.last());
    f.assert_gateway_proxied_nothing();
}

// ---------------------------------------------------------------------------------------------
// c. path rules, judged on the original URI and method nginx reports
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn allow_rules_let_anonymous_requests_through_without_identity() {
    let f = Front::start(&format!("{TRUST_NGINX}{RULES}")).await;
    let c = client();

    let (status, body) = f
        .get(
            &c,
            "/public/readme.txt?v=2",
            &[("accept", JSON), ("X-Forwarded-User", "mallory")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let seen = f.app.last();
    assert_eq!(seen.path, "/public/readme.txt?v=2");
    assert_anonymous(&seen);

    let (status, _) = f.get(&c, "/files/42", &[("accept", JSON)]).await;
    assert_eq!(status, 200, "path_regex allow rule");
    assert_eq!(f.app.last().path, "/files/42");

    let (status, _) = f.get(&c, "/docs/guide", &[("accept", JSON)]).await;
    assert_eq!(status, 200, "GET is allowed on /docs/");
    assert_eq!(f.app.count(), 3);

    // Not covered by an allow rule: no session, nothing reaches the app.
    for path in ["/files/42/raw", "/files/x", "/publicity", "/reports"] {
        let (status, _) = f.get(&c, path, &[("accept", JSON)]).await;
        assert_ne!(status, 200, "{path}");
    }
    // The rule is for GET/HEAD only: nginx reports the POST in X-Original-Method.
    let r = c
        .post(f.url("/docs/guide"))
        .header("accept", JSON)
        .body("edit")
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 200, "POST /docs/ needs a session");
    assert_eq!(f.app.count(), 3, "no anonymous request outside the rules");
    f.assert_gateway_proxied_nothing();
}

#[tokio::test]
async fn deny_and_group_rules_refuse_signed_in_users_with_403() {
    let f = Front::start(&format!("{TRUST_NGINX}{RULES}")).await;
    let (alice, _) = f.sign_in("/reports", |_| {}).await;

    let (status, _) = f.get(&alice, "/reports", &[("accept", HTML)]).await;
    assert_eq!(status, 200, "alice may see what no rule restricts");
    assert_eq!(f.app.count(), 1);

    let (status, _) = f.get(&alice, "/blocked/thing", &[("accept", HTML)]).await;
    assert_eq!(status, 403, "deny rule");
    let (status, _) = f.get(&alice, "/admin/users", &[("accept", HTML)]).await;
    assert_eq!(status, 403, "alice lacks the group superusers");
    assert_eq!(f.app.count(), 1, "refused requests never reach the app");

    let (bob, _) = f.sign_in("/reports", bob_the_superuser).await;
    let (status, _) = f.get(&bob, "/admin/users", &[("accept", HTML)]).await;
    assert_eq!(status, 200, "bob is in superusers");
    let seen = f.app.last();
    assert_eq!(seen.path, "/admin/users");
    assert_eq!(seen.one("x-forwarded-user").as_deref(), Some("bob"));
    assert_eq!(
        seen.one("x-forwarded-groups").as_deref(),
        Some("superusers")
    );
    let (status, _) = f.get(&bob, "/blocked/thing", &[("accept", HTML)]).await;
    assert_eq!(status, 403, "deny applies to everyone");
    assert_eq!(f.app.count(), 2);
    f.assert_gateway_proxied_nothing();
}

/// nginx hands `$request_uri` over as the client wrote it (not normalized) and proxies it to
/// the app the same way; an allow rule must not match a path that only looks like it is
/// under `/public/`.
#[tokio::test]
async fn dot_segments_in_the_original_uri_do_not_match_an_allow_rule() {
    let f = Front::start(&format!("{TRUST_NGINX}{RULES}")).await;
    let port = f.nginx.port();
    assert_eq!(
        raw_get(port, "/public/ok", &["Accept: application/json"]).await,
        200
    );
    assert_eq!(f.app.count(), 1);
    for path in [
        "/public/../reports",
        "/public/%2e%2e/reports",
        "/public/%2E%2E/reports",
        "/public/.%2e/reports",
        "/public/..%2freports",
        "/public/./../reports",
        "/public//../../reports",
    ] {
        let status = raw_get(port, path, &["Accept: application/json"]).await;
        assert_ne!(status, 200, "{path} got through anonymously");
        assert_eq!(
            f.app.count(),
            1,
            "{path} reached the app anonymously as {:?}",
            f.app.last().path
        );
    }
}

/// nginx sets X-Original-URI/-Method but passes any other header the client sent on to the
/// auth subrequest: client-sent X-Forwarded-Uri / X-Forwarded-Method must not let a request
/// pass as another one. Every case is tried; the failure lists each one that got through.
#[tokio::test]
async fn client_sent_forwarded_uri_and_method_do_not_change_the_decision() {
    let f = Front::start(&format!("{TRUST_NGINX}{RULES}")).await;
    let c = client();
    let mut bypasses: Vec<String> = Vec::new();

    let before = f.app.count();
    let (status, _) = f
        .get(
            &c,
            "/reports",
            &[
                ("accept", JSON),
                ("X-Forwarded-Uri", "/public/x"),
                ("X-Original-URI", "/public/x"),
            ],
        )
        .await;
    if status == 200 || f.app.count() != before {
        bypasses.push(format!(
            "anonymous GET /reports + X-Forwarded-Uri: /public/x → {status}, app saw {:?}",
            f.app.last().path
        ));
    }

    let before = f.app.count();
    let r = c
        .post(f.url("/docs/guide"))
        .header("accept", JSON)
        .header("X-Forwarded-Method", "GET")
        .header("X-Original-Method", "GET")
        .body("edit")
        .send()
        .await
        .unwrap();
    if r.status() == 200 || f.app.count() != before {
        bypasses.push(format!(
            "anonymous POST /docs/guide + X-Forwarded-Method: GET → {}",
            r.status()
        ));
    }

    // A signed-in user must not dodge a deny rule by naming another URI: nginx blanks the
    // client's X-Forwarded-Uri in the check, so the deny rule is judged on X-Original-URI.
    let (alice, _) = f.sign_in("/reports", |_| {}).await;
    let before = f.app.count();
    let (status, _) = f
        .get(
            &alice,
            "/blocked/thing",
            &[("accept", HTML), ("X-Forwarded-Uri", "/reports")],
        )
        .await;
    if status != 403 || f.app.count() != before {
        bypasses.push(format!(
            "alice GET /blocked/thing + X-Forwarded-Uri: /reports → {status}"
        ));
    }
    assert!(
        bypasses.is_empty(),
        "client-sent forward-auth headers changed the decision:\n{}",
        bypasses.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// c2. what the client may not tell the app, and the check endpoint from outside
// ---------------------------------------------------------------------------------------------

/// Prefix families whose member names are each deployment's own (Kubernetes' extra
/// attributes, token names): nginx matches exact names only, so the example cannot list them.
const UNLISTABLE_FAMILIES: [&str; 2] = ["x-remote-extra-", "x-token-"];

/// Every header the example's snippet blanks (`proxy_set_header Name "";`), as written there.
fn snippet_blanked() -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(EXAMPLE_DIR)
        .join(SNIPPET);
    let text = std::fs::read_to_string(&path).expect("the header snippet");
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("proxy_set_header "))
        .filter_map(|rest| {
            let (name, value) = rest.split_once(char::is_whitespace)?;
            (value.trim() == "\"\";").then(|| name.to_string())
        })
        .collect()
}

/// The snippet and samlgate's own tables cannot drift apart: every exact foreign name and
/// routing override is blanked, and every prefix family has its members listed.
#[test]
fn the_example_header_snippet_covers_samlgates_tables() {
    let blanked: BTreeSet<String> = snippet_blanked()
        .iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    let mut missing = Vec::new();
    for (pattern, _) in FOREIGN_IDENTITY_HEADERS {
        let p = pattern.to_ascii_lowercase();
        let covered = match p.strip_suffix('*') {
            None => blanked.contains(&p),
            Some(stem) => {
                UNLISTABLE_FAMILIES.contains(&stem) || blanked.iter().any(|b| b.starts_with(stem))
            }
        };
        if !covered {
            missing.push(p);
        }
    }
    for r in ROUTING_OVERRIDE_HEADERS {
        if !blanked.contains(r) {
            missing.push(r.to_string());
        }
    }
    for ours in IDENTITY_HEADERS {
        if !blanked.contains(ours) {
            missing.push(ours.to_string());
        }
    }
    assert!(missing.is_empty(), "{SNIPPET} does not blank: {missing:?}");
}

/// Through the example, none of the headers apps are told to trust (other gateways' identity
/// headers, routing overrides such as X-Rewrite-URL, X-HTTP-Method-Override, X-Original-URI)
/// reaches the app as a client sent it: in the snippet's spelling, upper case, or with `_`.
#[tokio::test]
async fn clients_identity_and_routing_headers_never_reach_the_app_anonymous_or_signed_in() {
    let f = Front::start(&format!("{TRUST_NGINX}{RULES}")).await;
    let port = f.nginx.port();
    let (_, session) = f.sign_in("/reports", |_| {}).await;
    let cookie = format!("Cookie: {session}");
    let mut names: Vec<String> = Vec::new();
    for n in snippet_blanked() {
        names.push(n.clone());
        names.push(n.to_ascii_uppercase());
        names.push(n.replace('-', "_"));
    }
    names.dedup();
    assert!(names.len() > 250, "{} spellings", names.len());

    let mut batches = 0;
    for (who, path) in [("anonymous", "/public/x"), ("alice", "/reports")] {
        // samlgate takes at most 100 header lines, and the check carries the client's.
        for (i, batch) in names.chunks(60).enumerate() {
            let lines: Vec<String> = batch
                .iter()
                .enumerate()
                .map(|(j, n)| format!("{n}: forged-{i}-{j}"))
                .collect();
            let mut headers: Vec<&str> = lines.iter().map(String::as_str).collect();
            headers.push("Accept: application/json");
            if who == "alice" {
                headers.push(&cookie);
            }
            let status = raw_get(port, path, &headers).await;
            assert_eq!(status, 200, "{who}, batch {i}");
            batches += 1;
            let seen = f.app.last();
            assert_eq!(seen.path, path);
            let leaks: Vec<String> = seen
                .headers
                .iter()
                .filter(|(_, v)| v.starts_with("forged-"))
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            assert!(
                leaks.is_empty(),
                "{who}, batch {i}: reached the app:\n{}",
                leaks.join("\n")
            );
            if who == "alice" {
                assert_alice(&seen);
            } else {
                assert_anonymous(&seen);
            }
            // What the app is told about the request is nginx's view.
            assert_eq!(seen.one("x-forwarded-for").as_deref(), Some("127.0.0.1"));
            assert_eq!(seen.one("x-forwarded-proto").as_deref(), Some("http"));
        }
    }
    assert_eq!(f.app.count(), batches);
    f.assert_gateway_proxied_nothing();
}

/// A client's X-Forwarded-Uri / X-Original-URL / X-Forwarded-Method next to nginx's
/// X-Original-URI used to make the check fail with 400, which auth_request turns into a 500
/// for any request. The example blanks them in the check, so the decision is nginx's URI's;
/// behind a proxy that passes them on, samlgate answers 403, which nginx passes to the client.
#[tokio::test]
async fn conflicting_original_request_headers_are_overwritten_or_answer_403_never_500() {
    let conflicting = [
        "X-Forwarded-Uri: /public/x",
        "X-Original-URL: http://app.example.com/public/x",
        "X-Forwarded-Method: HEAD",
    ];
    let mut anonymous = vec!["Accept: application/json"];
    anonymous.extend(conflicting);

    // The example: nginx's description wins, the client's is never seen.
    let f = Front::start(&format!("{TRUST_NGINX}{RULES}")).await;
    let port = f.nginx.port();
    let (_, session) = f.sign_in("/reports", |_| {}).await;
    let cookie = format!("Cookie: {session}");
    let mut alice = anonymous.clone();
    alice.push(&cookie);
    assert_eq!(
        raw_get(port, "/reports", &anonymous).await,
        302,
        "no session: the sign-in starts (error_page 401), judged on /reports"
    );
    assert_eq!(f.app.count(), 0);
    assert_eq!(raw_get(port, "/public/x", &anonymous).await, 200);
    assert_eq!(raw_get(port, "/reports", &alice).await, 200);
    assert_eq!(
        raw_get(port, "/blocked/thing", &alice).await,
        403,
        "deny rule"
    );
    assert_eq!(f.app.count(), 2);
    let seen = f.app.last();
    assert_eq!(seen.path, "/reports");
    for h in ["x-forwarded-uri", "x-original-url", "x-forwarded-method"] {
        assert_eq!(seen.any_variant(h), vec![], "{h} reached the app");
    }
    drop(f);

    // A config that does not blank them: samlgate refuses the contradiction with 403.
    let blanking = [
        "proxy_set_header X-Forwarded-Uri \"\";",
        "proxy_set_header X-Original-URL \"\";",
        "proxy_set_header X-Forwarded-Method \"\";",
    ];
    let mut lax = example_locations();
    for line in blanking {
        assert!(lax.contains(line), "the example blanks {line}");
        lax = lax.replace(line, "");
    }
    let f = Front::start_with(&format!("{TRUST_NGINX}{RULES}"), &lax).await;
    let port = f.nginx.port();
    let (_, session) = f.sign_in("/reports", |_| {}).await;
    let cookie = format!("Cookie: {session}");
    let mut alice = anonymous.clone();
    alice.push(&cookie);
    for (who, headers) in [("anonymous", &anonymous), ("alice", &alice)] {
        for path in ["/reports", "/public/x"] {
            let status = raw_get(port, path, headers).await;
            assert_eq!(
                status, 403,
                "{who} {path}: samlgate's 403 passed on, not a 500"
            );
        }
    }
    assert_eq!(f.app.count(), 0, "refused checks let nothing through");
    // The reason, from samlgate itself (the client above saw nginx's 403 page).
    let r = client()
        .get(f.gw.url("/saml/auth"))
        .header("accept", JSON)
        .header("x-original-uri", "/reports")
        .header("x-original-method", "GET")
        .header("x-forwarded-uri", "/public/x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"], "bad_forward_auth_request", "{body}");
}

/// /saml/auth answers with the identity of whoever's cookie it gets; through nginx only nginx
/// may ask it. Every spelling nginx normalises to the check (or to Envoy's /saml/auth/<path>)
/// is nginx's 404, never samlgate's answer.
#[tokio::test]
async fn the_check_endpoint_is_not_reachable_through_nginx() {
    let f = Front::start(&format!("{TRUST_NGINX}{RULES}")).await;
    let port = f.nginx.port();
    let (_, session) = f.sign_in("/reports", |_| {}).await;
    let cookie = format!("Cookie: {session}");
    for path in [
        "/saml/auth",
        "/saml/auth?rd=/reports",
        "/saml/auth/",
        "/saml/auth/reports",
        "/saml/auth/public/x",
        "/saml//auth/reports",
        "/saml/auth%2Freports",
        "/saml/%61uth/reports",
        "/saml/x/../auth/reports",
        "/saml/./auth",
    ] {
        let (status, head) = raw_exchange(
            port,
            path,
            &[
                &cookie,
                "Accept: application/json",
                "X-Original-URI: /reports",
            ],
        )
        .await;
        assert_eq!(status, 404, "{path}: {head}");
        for h in IDENTITY_HEADERS {
            assert!(!head.contains(h), "{path} answered with {h}: {head}");
        }
    }
    assert_eq!(f.app.count(), 0);
    f.assert_gateway_proxied_nothing();
}

// ---------------------------------------------------------------------------------------------
// d. the original-request headers count only from a trusted proxy
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn untrusted_nginx_cannot_make_a_path_public() {
    let f = Front::start(&format!("{TRUST_NOBODY}{RULES}")).await;
    let c = client();
    // The gateway does not know which request an untrusted nginx asks about, and its rules
    // depend on the path: the check is refused (400), which nginx turns into a 500.
    let (status, _) = f.get(&c, "/public/x", &[("accept", JSON)]).await;
    assert_eq!(status, 500);
    assert_eq!(
        f.app.count(),
        0,
        "X-Original-URI from an untrusted peer was honoured"
    );

    // A sign-in started directly with an untrusted X-Original-URI ignores it as well: back
    // to "/".
    let r = c
        .get(f.gw.url("/saml/login"))
        .header("accept", HTML)
        .header("x-original-uri", "/public/x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let (req_id, relay) = parse_idp_redirect(r.headers()["location"].to_str().unwrap());
    let spec = ResponseSpec::valid(&f.idp, &f.gw.sp_entity_id(), &f.gw.acs_url(), Some(&req_id));
    let r = post_acs(&c, &f.gw, &mint::mint_b64(&f.idp, &spec), Some(&relay)).await;
    let (status, location, _) = acs_outcome(&r);
    assert_eq!(status, 303);
    assert_eq!(location.as_deref(), Some("/"));
    assert_eq!(f.app.count(), 0);
}

// ---------------------------------------------------------------------------------------------
// e. /saml/auth called directly
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn auth_endpoint_directly_answers_200_with_identity_or_401_json() {
    let f = Front::start(&format!("{TRUST_NGINX}{RULES}")).await;
    let (_, session) = f.sign_in("/reports", |_| {}).await;
    let auth = f.gw.url("/saml/auth");

    // No cookie: 401 JSON with a login URL, also for a browser (a 302 here would make
    // nginx's auth_request answer 500).
    for accept in [JSON, HTML] {
        let r = client()
            .get(&auth)
            .header("x-original-uri", "/reports")
            .header("x-original-method", "GET")
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "Accept: {accept}");
        for h in IDENTITY_HEADERS {
            assert!(r.headers().get(h).is_none(), "{h} on a 401");
        }
        if accept == JSON {
            let body: serde_json::Value =
                serde_json::from_slice(&r.bytes().await.unwrap()).expect("a JSON body");
            assert_eq!(body["error"], "unauthenticated", "{body}");
            assert!(
                body["login_url"]
                    .as_str()
                    .is_some_and(|u| u.contains("/saml/login")),
                "{body}"
            );
        }
    }

    // A forged cookie is no session.
    let r = client()
        .get(&auth)
        .header("x-original-uri", "/reports")
        .header("x-original-method", "GET")
        .header("cookie", "samlgate_session=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A trusted peer that does not say which request it asks about gets no answer: the
    // rules here depend on the path.
    let r = client()
        .get(&auth)
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        400,
        "no original request with path rules configured"
    );

    // With the session: 200, empty body, the identity headers.
    let r = client()
        .get(&auth)
        .header("x-original-uri", "/reports")
        .header("x-original-method", "GET")
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(r.bytes().await.unwrap().len(), 0, "empty body");
    let get = |n: &str| h.get(n).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(get("x-forwarded-user").as_deref(), Some("alice"));
    assert_eq!(
        get("x-forwarded-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        get("x-forwarded-groups").as_deref(),
        Some("analysts,admins")
    );
    assert_eq!(
        get("x-forwarded-preferred-username").as_deref(),
        Some("Alice Example")
    );

    // The test client is on 127.0.0.1, a trusted proxy here: its X-Original-URI counts.
    let r = client()
        .get(&auth)
        .header("cookie", &session)
        .header("X-Original-URI", "/blocked/thing")
        .header("X-Original-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "deny rule on the original URI");
    let r = client()
        .get(&auth)
        .header("X-Original-URI", "/public/x")
        .header("X-Original-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "allow rule on the original URI, no session"
    );
    assert!(r.headers().get("x-forwarded-user").is_none());
    f.assert_gateway_proxied_nothing();
}

#[tokio::test]
async fn auth_endpoint_ignores_original_uri_from_an_untrusted_peer() {
    let f = Front::start(&format!("{TRUST_NOBODY}{RULES}")).await;
    let r = client()
        .get(f.gw.url("/saml/auth"))
        .header("accept", JSON)
        .header("X-Original-URI", "/public/x")
        .header("X-Forwarded-Uri", "/public/x")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        400,
        "an untrusted peer's description is ignored, and with path rules an undescribed check gets no answer"
    );
}

// ---------------------------------------------------------------------------------------------
// f. a real IdP: SimpleSAMLphp, alice signs in through nginx
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_signs_in_through_nginx_with_simplesamlphp() {
    use simplesamlphp::{login_client, ALICE};

    let app = start_upstream().await;
    let decoy = start_upstream().await;
    let listener = GatewayListener::bind().await;
    let nginx = Nginx::start(
        "forward-auth-ssp",
        &forward_auth_conf(listener.addr(), app.addr),
    );
    // The gateway's defaults under public_url = nginx.
    let listener = listener.with_public_url(nginx.url());
    let entry = listener.sp_entry();
    let idp = e2e::start_simplesamlphp(std::slice::from_ref(&entry)).await;
    let gw = listener
        .serve(
            &entry,
            &decoy.url(),
            &idp.metadata_xml,
            Options {
                // SimpleSAMLphp's NameID is persistent (opaque): the user header is its uid.
                extra_toml: format!("{TRUST_NGINX}{}", e2e::USER_IS_UID),
                ..Options::default()
            },
        )
        .await;

    // nginx's error_page 401 starts the sign-in; the IdP posts to the ACS on nginx.
    let c = login_client();
    let (location, _) =
        e2e::redirect_to_idp(&c, &format!("{}/reports?x=1", nginx.url()), &idp).await;
    let form = e2e::login_at_idp(&c, &idp, &location, &ALICE, &entry.acs_url).await;
    e2e::expect_signed_in(e2e::submit(&c, &form, HTML).await, "/reports?x=1").await;
    assert_eq!(app.count(), 0);

    let r = c
        .get(format!("{}/reports?x=1", nginx.url()))
        .header("accept", HTML)
        .header("X-Forwarded-User", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = app.last();
    assert_eq!(seen.path, "/reports?x=1");
    assert_eq!(
        seen.any_variant("x-forwarded-user"),
        vec![("x-forwarded-user".to_string(), ALICE.uid.to_string())]
    );
    assert_eq!(
        seen.one("x-forwarded-groups").as_deref(),
        Some(ALICE.groups.join(",").as_str())
    );
    assert_eq!(seen.one("x-forwarded-email").as_deref(), Some(ALICE.mail));
    assert_eq!(decoy.count(), 0, "samlgate proxied nothing itself");
    drop(gw);
    drop(nginx);
}
