//! A real browser signs in through samlgate: Debian's headless Chromium, driven by
//! playwright-core from `tests/browser/login.mjs`, against the echo upstream and samlgate
//! (tests/support/gateway.rs) and one of two IdPs, all on loopback:
//!
//! - the real SimpleSAMLphp (tests/support/simplesamlphp.rs): the browser fills its login form
//!   as alice (username and password) and submits it;
//! - samlgate's own development IdP (`samlgate dev-idp`, src/devidp, started in-process): the
//!   browser presses alice's button on its login page.
//!
//! Either way the IdP answers with a self-submitting POST to the gateway's ACS, and the browser
//! lands on the upstream page, whose text (the echoed request headers) must show the identity
//! headers, and no longer holds the login cookie (the ACS answer clears it). A full-page
//! screenshot of that page is kept as a test artifact
//! (`<target dir>/test-artifacts/browser-{login,devidp}-{http,https}.png`; on failure
//! `browser-*-FAILED.png`), its path printed on stdout.
//!
//! Then the browser signs out: it opens samlgate's sign-out page and presses "Sign out". The
//! gateway has an SP key, so the sign-out goes on to the IdP's SingleLogoutService with a
//! signed LogoutRequest, and the browser must get there (a CSP `form-action` that blocks the
//! step after the form would leave it on samlgate's page) and come to rest on the IdP's
//! signed-out page: the dev IdP's own "Signed out" page; with SimpleSAMLphp, which answers
//! with a LogoutResponse to the gateway's `/saml/slo`, samlgate's "You are signed out" page
//! behind it. Opening the protected URL again must bring the IdP's login form (its session
//! ended too), and Chromium must have reported no CSP violation on any page
//! (`browser-*-signed-out.png` is the final page's screenshot).
//!
//! Two runs per IdP (and a third with SimpleSAMLphp, `browser-login-replicas*.png`: two samlgate
//! replicas sharing Redis, `[state] backend = "redis"`, behind nginx balancing round robin, so
//! the sign-in start, the ACS post and the pages land on different replicas):
//! - plain http, gateway and IdP both on `127.0.0.1` (different ports: same site);
//! - https on the gateway (self-signed, `--ignore-certificate-errors`) at `https://app.test:P`
//!   and the IdP at `http://idp.test:Q` (Chromium's `--host-rules=MAP *.test 127.0.0.1`), so the
//!   IdP's POST back to the ACS is genuinely cross-site: the pending-login cookie must be
//!   `SameSite=None; Secure` to survive it.
//!
//! And one more with SimpleSAMLphp over http, both sides offering Single Logout by HTTP-POST
//! only (`browser-slo-post-http*.png`): "Sign out" answers with samlgate's auto-submit page,
//! whose script (allowed by its hash, the only script the CSP allows) must POST the signed
//! LogoutRequest to the IdP, which POSTs its LogoutResponse back to `/saml/slo`.
//!
//! Needs `node` (>= 20), Debian's `chromium` (/usr/bin/chromium) — `scripts/install-deps.sh
//! test` — and `tests/browser/node_modules` (`npm ci --prefix tests/browser`, which
//! scripts/test.sh runs). Without them the tests FAIL, never skip.

// The development tools are a cargo feature (`dev-tools`, on by default). A production build
// (`--no-default-features`) has no dev IdP, and one harness here drives both IdP kinds, so the
// file compiles to nothing then (the SimpleSAMLphp browser tests run in the default build).
// (A `required-features` entry in Cargo.toml would do the same, but would make Cargo.toml
// name a file the Docker build context does not carry.)
#![cfg(feature = "dev-tools")]

#[path = "support/e2e.rs"]
mod e2e;
#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/nginx.rs"]
mod nginx;
#[path = "support/redis.rs"]
mod redis_server;
#[path = "support/simplesamlphp.rs"]
mod simplesamlphp;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use e2e::{GatewayListener, USER_IS_UID};
use gateway::{start_upstream, Options, TestGateway, Upstream};
use samlgate::devidp;
use serde_json::{json, Value};
use simplesamlphp::{SimpleSamlPhp, SpEntry, ALICE};
use tokio::net::TcpListener;

const CHROMIUM: &str = "/usr/bin/chromium";
/// The whole `node login.mjs` run; the script gives up (and closes the browser) a bit earlier.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(90);
const DRIVER_INNER_TIMEOUT_MS: u64 = 75_000;
const INSTALL_HINT: &str = "run `scripts/install-deps.sh test` (as root: installs chromium, and \
                            node when missing) and `npm ci --prefix tests/browser` (playwright-core)";

// ---------------------------------------------------------------------------------------------
// Setup: listener → IdP (knowing the gateway's public URLs) → gateway on that listener
// ---------------------------------------------------------------------------------------------

/// Which IdP the browser signs in at; `mode()` is login.mjs's `idp` argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IdpKind {
    SimpleSamlPhp,
    DevIdp,
}

impl IdpKind {
    fn mode(self) -> &'static str {
        match self {
            IdpKind::SimpleSamlPhp => "simplesamlphp",
            IdpKind::DevIdp => "devidp",
        }
    }
}

/// How SimpleSAMLphp and samlgate carry Single Logout messages to each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SloBinding {
    /// SimpleSAMLphp publishes its SingleLogoutService with HTTP-Redirect (its default), the
    /// gateway's is offered with both bindings; each side sends by Redirect.
    Redirect,
    /// Each offers the other HTTP-POST only: samlgate's "Sign out" answers with its
    /// auto-submit page carrying a signed LogoutRequest, and SimpleSAMLphp answers with its own
    /// auto-submit page POSTing the LogoutResponse to `/saml/slo`.
    PostOnly,
}

/// A running IdP of either kind.
enum Idp {
    SimpleSamlPhp(SimpleSamlPhp),
    Dev(devidp::Running),
}

impl Idp {
    /// What to show when the browser fails: SimpleSAMLphp's logs; the dev IdP (in-process,
    /// logging through `tracing`) has none of its own, so its URLs and trusted SPs.
    fn diagnostics(&self) -> String {
        match self {
            Idp::SimpleSamlPhp(idp) => idp.log_tail(20),
            Idp::Dev(idp) => format!(
                "dev IdP {} (listening on {}), SSO {}, trusted SPs {:?}",
                idp.url(),
                idp.addr,
                idp.idp.sso_url(),
                idp.idp.sps()
            ),
        }
    }
}

/// Field order = drop order: the gateway stops before the IdP does.
struct Setup {
    gw: TestGateway,
    /// With [`Transport::HttpReplicas`]: the second replica, the round-robin nginx in front of
    /// both and the Redis they share.
    replicas: Option<Replicas>,
    /// The gateway's `public_url`, e.g. `https://app.test:PORT`.
    public_url: String,
    up: Upstream,
    idp: Idp,
    kind: IdpKind,
    slo: SloBinding,
    /// Origin of the IdP as the browser sees it (`http://idp.test:PORT` when re-hosted).
    idp_origin: String,
}

impl Setup {
    /// `gateway_host`/`idp_host`: the names the browser uses (`127.0.0.1`, or `*.test` names
    /// mapped to loopback by `--host-rules`). `tls`: the gateway serves https. `slo`:
    /// [`SloBinding::PostOnly`] needs SimpleSAMLphp (the dev IdP has no POST SLO).
    async fn start(
        kind: IdpKind,
        gateway_host: &str,
        idp_host: &str,
        tls: bool,
        slo: SloBinding,
    ) -> Setup {
        let t = Instant::now();
        let listener = GatewayListener::bind().await;
        let scheme = if tls { "https" } else { "http" };
        let public_url = format!("{scheme}://{gateway_host}:{}", listener.port());
        let listener = listener.with_public_url(public_url.clone());
        // The gateway's defaults: entity ID = public_url + /saml/metadata, ACS = /saml/acs.
        // An SP key, so that sign-out sends a signed LogoutRequest to the IdP; SimpleSAMLphp
        // checks it with the certificate and answers at the gateway's SLO endpoint.
        let (sp_key, sp_cert) = simplesamlphp::generate_key_pair("samlgate browser test SP")
            .unwrap_or_else(|e| panic!("SP key pair: {e}"));
        let mut entry = listener.sp_entry();
        entry.slo_url = Some(format!("{public_url}/saml/slo"));
        entry.certificate_pem = Some(sp_cert.clone());
        entry.sign_logout = true;
        entry.slo_post_only = slo == SloBinding::PostOnly;
        let (idp, idp_origin, metadata_xml, headers_toml) = match kind {
            // SimpleSAMLphp's NameID is persistent (opaque): the user header is its uid.
            IdpKind::SimpleSamlPhp => {
                let (idp, origin, xml) = start_simplesamlphp(&entry, idp_host, slo).await;
                (Idp::SimpleSamlPhp(idp), origin, xml, USER_IS_UID)
            }
            IdpKind::DevIdp if slo == SloBinding::PostOnly => {
                panic!("the dev IdP has no HTTP-POST SingleLogoutService")
            }
            // The dev IdP's NameID is the user's uid (`alice`), the gateway's default user header.
            IdpKind::DevIdp => {
                let idp = start_dev_idp(&entry.entity_id, &entry.acs_url, idp_host).await;
                let (origin, xml) = (idp.url().to_string(), idp.idp.metadata_xml().to_string());
                (Idp::Dev(idp), origin, xml, "")
            }
        };
        let up = start_upstream().await;
        let gw = listener
            .serve(
                &entry,
                &up.url(),
                &metadata_xml,
                Options {
                    tls: tls.then(gateway::self_signed_tls),
                    extra_toml: headers_toml.to_string(),
                    sp_key: Some((sp_key, sp_cert)),
                    ..Options::default()
                },
            )
            .await;
        eprintln!(
            "setup: {} at {idp_origin} + gateway {public_url} ready in {:?}",
            kind.mode(),
            t.elapsed()
        );
        Setup {
            gw,
            replicas: None,
            public_url,
            up,
            idp,
            kind,
            slo,
            idp_origin,
        }
    }

    /// SimpleSAMLphp and two samlgate replicas sharing one Redis (`[state] backend =
    /// "redis"`), behind nginx balancing round robin, one request at a time: the browser's
    /// sign-in start, ACS post and pages alternate between the replicas. The public URL is
    /// nginx's.
    async fn start_replicas(slo: SloBinding) -> Setup {
        let t = Instant::now();
        let redis = redis_server::RedisServer::start();
        let (l1, l2) = (GatewayListener::bind().await, GatewayListener::bind().await);
        let front = nginx::Nginx::start(
            "replicas",
            &format!(
                "upstream samlgate {{ server 127.0.0.1:{}; server 127.0.0.1:{}; }}\n\
                 server {{\n\
                 \x20   listen 127.0.0.1:{{port}};\n\
                 \x20   location / {{ proxy_pass http://samlgate; proxy_set_header Host $http_host; }}\n\
                 }}",
                l1.port(),
                l2.port()
            ),
        );
        let public_url = front.url();
        let (l1, l2) = (
            l1.with_public_url(public_url.clone()),
            l2.with_public_url(public_url.clone()),
        );
        let (sp_key, sp_cert) = simplesamlphp::generate_key_pair("samlgate browser test SP")
            .unwrap_or_else(|e| panic!("SP key pair: {e}"));
        let mut entry = l1.sp_entry();
        entry.slo_url = Some(format!("{public_url}/saml/slo"));
        entry.certificate_pem = Some(sp_cert.clone());
        entry.sign_logout = true;
        entry.slo_post_only = slo == SloBinding::PostOnly;
        let (idp, idp_origin, metadata_xml) = start_simplesamlphp(&entry, "127.0.0.1", slo).await;
        let up = start_upstream().await;
        let opts = Options {
            extra_toml: format!(
                "{USER_IS_UID}[state]\nbackend = \"redis\"\nredis_url = \"{}\"\n",
                redis.url()
            ),
            sp_key: Some((sp_key, sp_cert)),
            ..Options::default()
        };
        let gw = l1
            .serve(&entry, &up.url(), &metadata_xml, opts.clone())
            .await;
        let second = l2.serve(&entry, &up.url(), &metadata_xml, opts).await;
        eprintln!(
            "setup: simplesamlphp at {idp_origin} + 2 replicas behind {public_url} ready in {:?}",
            t.elapsed()
        );
        Setup {
            gw,
            replicas: Some(Replicas {
                second,
                front,
                _redis: redis,
            }),
            public_url,
            up,
            idp: Idp::SimpleSamlPhp(idp),
            kind: IdpKind::SimpleSamlPhp,
            slo,
            idp_origin,
        }
    }
}

/// Field order = drop order: the replica stops before nginx and Redis.
struct Replicas {
    second: TestGateway,
    front: nginx::Nginx,
    _redis: redis_server::RedisServer,
}

/// Requests a gateway answered, by route, from its metrics.
fn answered(gw: &TestGateway, route: &str) -> u64 {
    let text = gw.gateway.metrics().render().expect("metrics");
    let prefix = format!("samlgate_http_requests_total{{route=\"{route}\"");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// SimpleSAMLphp trusting the gateway; re-hosted on `idp_host` unless that is `127.0.0.1`;
/// with [`SloBinding::PostOnly`], publishing its SingleLogoutService with HTTP-POST only.
/// Returns the IdP, its origin as the browser sees it and its metadata.
async fn start_simplesamlphp(
    entry: &SpEntry,
    idp_host: &str,
    slo: SloBinding,
) -> (SimpleSamlPhp, String, String) {
    let idp = e2e::start_simplesamlphp(std::slice::from_ref(entry)).await;
    if slo == SloBinding::PostOnly {
        offer_slo_by_post_only(&idp);
    }
    let (origin, xml) = match (idp_host, slo) {
        ("127.0.0.1", SloBinding::Redirect) => (idp.base_url.clone(), idp.metadata_xml.clone()),
        ("127.0.0.1", SloBinding::PostOnly) => (idp.base_url.clone(), idp_metadata(&idp).await),
        _ => rehost_idp(&idp, idp_host).await,
    };
    if slo == SloBinding::PostOnly {
        expect_post_only_slo(&idp, &origin, &xml);
    }
    eprintln!("SimpleSAMLphp: php on 127.0.0.1:{}", idp.port);
    (idp, origin, xml)
}

/// Appends a PHP statement to one of SimpleSAMLphp's generated files, which it reads on every
/// request: a later assignment wins over the generated one.
fn append_php(idp: &SimpleSamlPhp, file: &str, php: &str) {
    use std::io::Write as _;
    let path = idp.dir().join(file);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    writeln!(f, "\n// tests/browser_login.rs\n{php}")
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Makes SimpleSAMLphp publish its SingleLogoutService with the HTTP-POST binding only
/// (`SingleLogoutServiceBinding` in its hosted IdP metadata; by default it publishes
/// HTTP-Redirect only). samlgate sends its LogoutRequest by HTTP-Redirect whenever the IdP
/// offers that binding and uses its auto-submit POST page only for an IdP that offers POST
/// alone, so this is what puts a real IdP behind that page. The endpoint itself is unchanged
/// and takes either binding.
fn offer_slo_by_post_only(idp: &SimpleSamlPhp) {
    // Quoted as a PHP single-quoted string below.
    assert!(!idp.entity_id.contains(['\'', '\\']), "{}", idp.entity_id);
    append_php(
        idp,
        "metadata/saml20-idp-hosted.php",
        &format!(
            "$metadata['{}']['SingleLogoutServiceBinding'] = '{}';",
            idp.entity_id,
            simplesamlphp::BINDING_POST
        ),
    );
}

/// The IdP's metadata as samlgate will parse it must offer SLO by HTTP-POST only, at
/// SimpleSAMLphp's endpoint on `origin`.
fn expect_post_only_slo(idp: &SimpleSamlPhp, origin: &str, xml: &str) {
    let endpoint = format!("{origin}/saml2/idp/SingleLogoutService.php");
    let info = samlgate::saml::metadata::parse_idp_metadata(xml, None)
        .unwrap_or_else(|e| panic!("SimpleSAMLphp's metadata: {e}\n{xml}"));
    assert_eq!(
        (info.slo_redirect_url, info.slo_post_url.as_deref()),
        (None, Some(endpoint.as_str())),
        "SimpleSAMLphp's metadata should offer its SingleLogoutService by HTTP-POST only:\n{xml}\n{}",
        idp.log_tail(20)
    );
}

/// SimpleSAMLphp's metadata, fetched now (after a change to its configuration).
async fn idp_metadata(idp: &SimpleSamlPhp) -> String {
    let metadata_url = format!("{}/saml2/idp/metadata.php", idp.base_url);
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    client
        .get(&metadata_url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .unwrap_or_else(|e| panic!("GET {metadata_url}: {e}\n{}", idp.log_tail(20)))
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {metadata_url}: {e}"))
}

/// Makes SimpleSAMLphp build its URLs (metadata endpoints, login page, assets) on
/// `http://HOST:PORT/` instead of `http://127.0.0.1:PORT/`: a later `baseurlpath` assignment
/// appended to its generated config.php wins (the file is read on every request). Returns the
/// IdP's origin and its metadata re-read (its SSO location now names HOST). The entity ID is
/// set explicitly in saml20-idp-hosted.php and stays as it was.
async fn rehost_idp(idp: &SimpleSamlPhp, host: &str) -> (String, String) {
    let origin = format!("http://{host}:{}", idp.port);
    // The browser reaches this IdP by name.
    append_php(
        idp,
        "config/config.php",
        &format!("$config['baseurlpath'] = '{origin}/';"),
    );
    let xml = idp_metadata(idp).await;
    let sso = format!("{origin}/saml2/idp/SSOService.php");
    assert!(
        xml.contains(&sso),
        "after re-hosting, the IdP's metadata should name {sso}:\n{xml}\n{}",
        idp.log_tail(20)
    );
    (origin, xml)
}

/// The dev IdP (default users: alice, bob, carol, dave; no passwords) on a loopback port,
/// publishing `http://IDP_HOST:PORT` (`--public-url`) as the base of its entity ID, SSO URL
/// and login form, and trusting the gateway.
async fn start_dev_idp(sp_entity_id: &str, acs_url: &str, idp_host: &str) -> devidp::Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let public_url = format!("http://{idp_host}:{}", addr.port());
    let idp = devidp::start_on(
        devidp::Options {
            listen: addr,
            public_url: Some(public_url.clone()),
            allow_non_loopback: false,
            users: devidp::users::default_users(),
            // No SLO URL for the gateway: the dev IdP ends a sign-out on its own page.
            sps: vec![devidp::sps::ServiceProvider {
                entity_id: sp_entity_id.to_string(),
                acs_urls: vec![acs_url.to_string()],
                slo_url: None,
            }],
            key: devidp::response::SigningKey::generate("samlgate browser test dev IdP").unwrap(),
        },
        listener,
    )
    .await
    .unwrap_or_else(|e| panic!("dev IdP did not start: {e}"));
    let sso = format!("{public_url}/sso");
    assert_eq!(idp.url(), public_url);
    assert!(
        idp.idp
            .metadata_xml()
            .contains(&format!("Location=\"{sso}\"")),
        "the dev IdP's metadata should name {sso}:\n{}",
        idp.idp.metadata_xml()
    );
    idp
}

// ---------------------------------------------------------------------------------------------
// The browser driver (node tests/browser/login.mjs)
// ---------------------------------------------------------------------------------------------

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `<target dir>/test-artifacts`: the test binary lives in `<target dir>/<profile>/deps/`.
fn artifacts_dir() -> PathBuf {
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .filter(|t| t.join("CACHEDIR.TAG").exists() || t.ends_with("target"))
        .unwrap_or_else(|| manifest_dir().join("target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    dir
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Fails (never skips) with an install hint when node, Chromium or playwright-core is missing.
fn check_browser_tooling() {
    let node = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `node` ({e}): {INSTALL_HINT}"));
    let version = String::from_utf8_lossy(&node.stdout).trim().to_string();
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        node.status.success() && major >= 20,
        "playwright-core 1.64 needs node >= 20, `node --version` says {version:?} (Debian 12's \
         own nodejs is 18: install Node.js 20+, e.g. NodeSource's, which this kind of machine has)"
    );
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: {INSTALL_HINT}"
    );
    let browser_dir = manifest_dir().join("tests/browser");
    let installed = read_json(&browser_dir.join("node_modules/playwright-core/package.json"))
        .unwrap_or_else(|e| panic!("{e}: {INSTALL_HINT}"));
    let lock = read_json(&browser_dir.join("package-lock.json"))
        .unwrap_or_else(|e| panic!("tests/browser/package-lock.json: {e}"));
    let installed_version = installed["version"].as_str();
    let locked_version = lock["packages"]["node_modules/playwright-core"]["version"].as_str();
    assert!(
        installed_version.is_some() && installed_version == locked_version,
        "tests/browser/node_modules has playwright-core {installed_version:?}, \
         package-lock.json pins {locked_version:?}: rerun `npm ci --prefix tests/browser`"
    );
}

struct DriverRun {
    result: Value,
    stderr: String,
    elapsed: Duration,
}

/// Runs `node tests/browser/login.mjs <args>` (blocking; call from `spawn_blocking`) with
/// [`DRIVER_TIMEOUT`]. On timeout node gets SIGTERM (playwright then closes Chromium), and
/// SIGKILL 10 s later. Returns the JSON line it printed last.
fn run_driver(args_json: &str) -> Result<DriverRun, String> {
    let t = Instant::now();
    let script = manifest_dir().join("tests/browser/login.mjs");
    let mut child = Command::new("node")
        .arg(&script)
        .arg(args_json)
        .current_dir(manifest_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run node ({e}): {INSTALL_HINT}"))?;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("wait node: {e}"))? {
            break status;
        }
        if !timed_out && t.elapsed() > DRIVER_TIMEOUT {
            timed_out = true;
            // SAFETY: a plain syscall on our own unreaped child's PID.
            #[allow(unsafe_code)]
            unsafe {
                kill(child.id() as i32, SIGTERM);
            }
        }
        if timed_out && t.elapsed() > DRIVER_TIMEOUT + Duration::from_secs(10) {
            let _ = child.kill();
            break child.wait().map_err(|e| format!("wait node: {e}"))?;
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    let elapsed = t.elapsed();
    if timed_out {
        return Err(format!(
            "node {} did not finish within {DRIVER_TIMEOUT:?} ({status})\n--- stdout ---\n{stdout}\
             \n--- stderr ---\n{stderr}",
            script.display()
        ));
    }
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| {
            format!(
                "node {} ({status}) printed no JSON result\n--- stdout ---\n{stdout}\n--- \
                 stderr ---\n{stderr}",
                script.display()
            )
        })?;
    let result = serde_json::from_str(line)
        .map_err(|e| format!("bad JSON from login.mjs ({e}): {line}\n--- stderr ---\n{stderr}"))?;
    Ok(DriverRun {
        result,
        stderr,
        elapsed,
    })
}

const SIGTERM: i32 = 15;
extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// Where the browser signs in: plain http on loopback, or https cross-site.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// Gateway and IdP both on `http://127.0.0.1` (different ports: same site).
    Http,
    /// Gateway at `https://app.test:P` (self-signed), IdP at `http://idp.test:Q`.
    HttpsCrossSite,
    /// Two gateway replicas sharing Redis behind a round-robin nginx, all on `127.0.0.1`
    /// ([`Setup::start_replicas`]).
    HttpReplicas,
}

/// samlgate's default cookie names: `__Host-` over https (no cookie domain is configured).
fn cookie_names(tls: bool) -> (&'static str, &'static str) {
    if tls {
        ("__Host-samlgate_session", "__Host-samlgate_login")
    } else {
        ("samlgate_session", "samlgate_login")
    }
}

/// Sets up gateway, upstream and the IdP for `kind` over `transport`, drives the browser
/// through the sign-in and the sign-out and checks what is common to all runs: landed on the
/// upstream page showing alice's identity headers, via exactly one ACS POST that carried the
/// pending-login cookie and was answered with a redirect back to the protected path (and the
/// login cookie cleared); over https also that this POST was cross-site and the cookie
/// `SameSite=None; Secure`. Then the sign-out ([`check_sign_out`]). The screenshots are
/// `<target dir>/test-artifacts/browser-{artifact}.png` and `…-signed-out.png`.
async fn sign_in_and_out(kind: IdpKind, transport: Transport, slo: SloBinding, artifact: &str) {
    check_browser_tooling();
    let tls = transport == Transport::HttpsCrossSite;
    let s = match transport {
        Transport::Http => Setup::start(kind, "127.0.0.1", "127.0.0.1", false, slo).await,
        Transport::HttpsCrossSite => Setup::start(kind, "app.test", "idp.test", true, slo).await,
        Transport::HttpReplicas => Setup::start_replicas(slo).await,
    };
    let path = "/reports?q=1";
    let name = artifact;
    let artifacts = artifacts_dir();
    let shot = artifacts.join(format!("browser-{artifact}.png"));
    let out_shot = artifacts.join(format!("browser-{artifact}-signed-out.png"));
    let failed_shot = artifacts.join(format!("browser-{artifact}-FAILED.png"));
    for old in [&shot, &out_shot, &failed_shot] {
        let _ = std::fs::remove_file(old);
    }
    let start_url = format!("{}{path}", s.public_url);
    let signed_out_prefix = signed_out_url_prefix(&s);
    let args = json!({
        "idp": kind.mode(),
        "start_url": start_url,
        "final_url": start_url,
        "acs_url": s.gw.acs_url(),
        "idp_origin": s.idp_origin,
        "username": ALICE.username,
        "password": match kind {
            IdpKind::SimpleSamlPhp => Some(ALICE.password),
            IdpKind::DevIdp => None,
        },
        "screenshot": shot,
        "failure_screenshot": failed_shot,
        "host_rules": tls.then_some("MAP *.test 127.0.0.1"),
        "ignore_certificate_errors": tls,
        "timeout_ms": DRIVER_INNER_TIMEOUT_MS,
        "sign_out": {
            "logout_url": format!("{}/saml/logout", s.public_url),
            "final_url_prefix": signed_out_prefix,
            "screenshot": out_shot,
        },
    })
    .to_string();

    let driven = tokio::task::spawn_blocking(move || run_driver(&args))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("[{name}] {e}\n{}", s.idp.diagnostics()));
    let r = &driven.result;
    eprintln!(
        "--- [{name}] login.mjs stderr ---\n{}--- end ---",
        driven.stderr
    );
    eprintln!(
        "[{name}] node login.mjs took {:?}; Chromium {}; timings (ms since node start) {}",
        driven.elapsed,
        r["browser_version"].as_str().unwrap_or("?"),
        r["timings_ms"]
    );
    let trail = &r["trail"];
    eprintln!("[{name}] navigation trail: {trail}");

    if r["ok"] != json!(true) {
        let shot = r["failure_screenshot"]
            .as_str()
            .map(|p| format!("failure screenshot: {p}"))
            .unwrap_or_else(|| "no failure screenshot".into());
        panic!(
            "[{name}] the browser did not sign in and out: {}\nstage: {}\nat: {}\npage text: {}\n\
             {shot}\nCSP violations: {}\ntrail: {trail}\n{}",
            r["error"].as_str().unwrap_or("?"),
            r["stage"].as_str().unwrap_or("?"),
            r["failure_url"].as_str().unwrap_or("?"),
            r["failure_text"].as_str().unwrap_or(""),
            r["csp_violations"],
            s.idp.diagnostics()
        );
    }
    let shot_path = r["screenshot"].as_str().unwrap_or("");
    let shot_abs = std::fs::canonicalize(shot_path)
        .unwrap_or_else(|e| panic!("[{name}] screenshot {shot_path:?} missing: {e}"));
    let size = std::fs::metadata(&shot_abs).map(|m| m.len()).unwrap_or(0);
    assert!(size > 1000, "[{name}] screenshot is {size} bytes");
    // Straight to stdout, past libtest's capture: the artifact's path shows in every run.
    {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stdout(),
            "[{name}] screenshot of the landing page: {}",
            shot_abs.display()
        );
    }

    // The login page was the IdP's (the dev IdP's, banner and alice's button included).
    let idp_login_url = r["idp_login_url"].as_str().unwrap_or("");
    assert!(
        idp_login_url.starts_with(&format!("{}/", s.idp_origin)),
        "[{name}] the login page was the IdP's: {idp_login_url}"
    );
    if kind == IdpKind::DevIdp {
        assert!(
            idp_login_url.starts_with(&format!("{}/sso?SAMLRequest=", s.idp_origin)),
            "[{name}] the gateway sent the browser to the dev IdP's SSO endpoint: {idp_login_url}"
        );
        let login_text = r["idp_login_text"].as_str().unwrap_or("");
        assert!(
            login_text.contains("DEVELOPMENT ONLY"),
            "[{name}] the dev IdP's login page carries its banner:\n{login_text}"
        );
        assert_eq!(
            r["idp_login_method"], "button",
            "[{name}] alice is signed in with her button (no password): {r}"
        );
    }

    // Landed back where the person started, on the upstream's page.
    assert_eq!(r["final_url"], start_url.as_str(), "[{name}] final URL");
    let text = r["text"].as_str().unwrap_or("");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert_eq!(
        lines.first().copied(),
        Some("upstream page"),
        "[{name}] the page is the upstream's:\n{text}"
    );
    for want in [
        "x-forwarded-user: alice",
        "x-forwarded-groups: analysts,admins",
    ] {
        assert!(
            lines.contains(&want),
            "[{name}] the page shows {want:?}:\n{text}"
        );
    }
    for line in &lines {
        assert!(
            !line.starts_with("cookie:") || !line.contains("samlgate_"),
            "[{name}] gateway cookies must not reach the upstream: {line}"
        );
    }
    // What the upstream itself saw (besides the page, the browser fetches /favicon.ico, which
    // the gateway forwards too once signed in).
    let pages: Vec<gateway::Seen> =
        s.up.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|seen| seen.path == path)
            .cloned()
            .collect();
    assert_eq!(
        pages.len(),
        1,
        "[{name}] the upstream saw the page once: {pages:?}"
    );
    assert_eq!(pages[0].one("x-forwarded-user").as_deref(), Some("alice"));
    assert_eq!(
        pages[0].one("x-forwarded-groups").as_deref(),
        Some("analysts,admins")
    );

    // The IdP's auto-submitted form reached the ACS once, with the pending-login cookie, and
    // the ACS redirected back to the protected path.
    let posts = r["acs_posts"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    assert_eq!(posts.len(), 1, "[{name}] ACS POSTs: {posts:?}");
    let post = &posts[0];
    assert_eq!(
        post["status"], 303,
        "[{name}] the ACS accepts the browser's POST: {post}"
    );
    assert_eq!(
        post["location"], path,
        "[{name}] the ACS sends the browser back to where it started"
    );
    let (session_name, login_name) = cookie_names(tls);
    let sent: Vec<&str> = post["cookie_names"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        sent.contains(&login_name),
        "[{name}] the browser sent the pending-login cookie {login_name} with the IdP's POST to \
         the ACS: sent {sent:?}; {post}"
    );
    assert!(
        cookie(r, "cookies_at_end", session_name).is_some(),
        "[{name}] the browser keeps a session cookie {session_name}: {}",
        r["cookies_at_end"]
    );
    assert!(
        cookie(r, "cookies_at_end", login_name).is_none(),
        "[{name}] the ACS answer cleared the login cookie {login_name}: {}",
        r["cookies_at_end"]
    );
    // The pending-login cookie as Chromium stored it while the person was at the IdP.
    let login = cookie(r, "cookies_at_idp", login_name)
        .unwrap_or_else(|| panic!("[{name}] no {login_name} cookie while at the IdP: {r}"));
    eprintln!(
        "[{name}] ACS POST: {post}\n[{name}] {login_name} as stored by Chromium: {login}\n\
         [{name}] gateway cookies while at the IdP: {}\n[{name}] gateway cookies at the end: {}",
        r["cookies_at_idp"], r["cookies_at_end"]
    );
    if tls {
        assert_cross_site(&s, name, login, post);
    }
    check_sign_out(&s, name, r, &signed_out_prefix);
    if let Some(rep) = &s.replicas {
        // Round robin spread the browser's requests over both replicas, and the one ACS post
        // (on either) completed a sign-in whose pending state the other may have stored.
        let routes = ["protected", "acs", "logout", "slo"];
        let first: u64 = routes.iter().map(|r| answered(&s.gw, r)).sum();
        let second: u64 = routes.iter().map(|r| answered(&rep.second, r)).sum();
        let nginx_log =
            std::fs::read_to_string(rep.front.dir().join("access.log")).unwrap_or_default();
        eprintln!("[{name}] replica 1 answered {first}, replica 2 {second}\n{nginx_log}");
        assert!(
            first > 0 && second > 0,
            "[{name}] both replicas served the browser"
        );
        assert_eq!(
            answered(&s.gw, "acs") + answered(&rep.second, "acs"),
            1,
            "[{name}] one ACS post"
        );
    }
}

/// Where the browser comes to rest after "Sign out": the dev IdP ends the sign-out on its own
/// page (it has no SLO URL for the gateway); SimpleSAMLphp answers with a LogoutResponse at the
/// gateway's SLO endpoint, which shows samlgate's signed-out page (by HTTP-POST: the URL has
/// no query).
fn signed_out_url_prefix(s: &Setup) -> String {
    match (s.kind, s.slo) {
        (IdpKind::DevIdp, _) => format!("{}/slo?SAMLRequest=", s.idp_origin),
        (IdpKind::SimpleSamlPhp, SloBinding::Redirect) => {
            format!("{}/saml/slo?SAMLResponse=", s.public_url)
        }
        (IdpKind::SimpleSamlPhp, SloBinding::PostOnly) => format!("{}/saml/slo", s.public_url),
    }
}

/// The sign-out part of a run: the button's POST was answered (200, the page that moves on),
/// the browser went to the IdP's SingleLogoutService with a LogoutRequest and came to rest on
/// the signed-out page; no session cookie is left; the next visit brings the IdP's login form
/// (its session ended too); Chromium reported no CSP violation on any page of the run.
fn check_sign_out(s: &Setup, name: &str, r: &Value, signed_out_prefix: &str) {
    let (session_name, _) = cookie_names(s.public_url.starts_with("https://"));
    let from = r["sign_out_trail_start"].as_u64().unwrap_or(0) as usize;
    let trail: Vec<&str> = r["trail"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .skip(from)
        .filter_map(Value::as_str)
        .collect();
    eprintln!("[{name}] sign-out trail: {trail:#?}");
    let logout = format!("POST {}/saml/logout -> 200", s.public_url);
    assert!(
        trail.contains(&logout.as_str()),
        "[{name}] the sign-out form was answered with the page that moves on: {trail:#?}"
    );
    let slo_request = match s.kind {
        IdpKind::DevIdp => format!("GET {}/slo?SAMLRequest=", s.idp_origin),
        IdpKind::SimpleSamlPhp => format!(
            "GET {}/saml2/idp/SingleLogoutService.php?SAMLRequest=",
            s.idp_origin
        ),
    };
    match s.slo {
        SloBinding::Redirect => assert!(
            trail
                .iter()
                .any(|t| t.starts_with(&slo_request) && t.contains("&Signature=")),
            "[{name}] the browser took a signed LogoutRequest to the IdP: {trail:#?}"
        ),
        SloBinding::PostOnly => {
            assert!(
                !trail.iter().any(|t| t.starts_with(&slo_request)),
                "[{name}] no LogoutRequest by HTTP-Redirect to a POST-only IdP: {trail:#?}"
            );
            check_post_slo(s, name, r, &trail);
        }
    }
    let url = r["signed_out_url"].as_str().unwrap_or("");
    assert!(
        url.starts_with(signed_out_prefix),
        "[{name}] the browser came to rest at {url}, not {signed_out_prefix}…"
    );
    let text = r["signed_out_text"].as_str().unwrap_or("");
    let want = match s.kind {
        IdpKind::DevIdp => "You are signed out of the dev IdP.",
        IdpKind::SimpleSamlPhp => "You are signed out",
    };
    assert!(
        text.contains(want),
        "[{name}] the signed-out page says {want:?}:\n{text}"
    );
    assert!(
        cookie(r, "cookies_after_sign_out", session_name).is_none(),
        "[{name}] the session cookie is gone: {}",
        r["cookies_after_sign_out"]
    );
    // The IdP's session ended too: the next visit asks for the sign-in again.
    let revisit = r["revisit_url"].as_str().unwrap_or("");
    assert!(
        revisit.starts_with(&format!("{}/", s.idp_origin)),
        "[{name}] the next visit goes to the IdP's login page: {revisit}"
    );
    let revisit_text = r["revisit_text"].as_str().unwrap_or("");
    assert!(
        !revisit_text.contains("Continue as"),
        "[{name}] the IdP no longer knows alice:\n{revisit_text}"
    );
    let violations = r["csp_violations"].as_array().map_or(0, Vec::len);
    assert_eq!(
        violations, 0,
        "[{name}] Chromium reported CSP violations: {}",
        r["csp_violations"]
    );
    if let Some(shot) = r["sign_out_screenshot"].as_str() {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stdout(),
            "[{name}] screenshot of the signed-out page: {shot}"
        );
    }
}

/// The sign-out by HTTP-POST both ways ([`SloBinding::PostOnly`]), from what Chromium did:
///
/// 1. samlgate answered "Sign out" with its auto-submit page, whose CSP allows scripts only by
///    one hash (and has no `form-action`);
/// 2. that page's script ran: nothing in login.mjs clicks after "Sign out", so the browser's
///    next document request, a POST of a signed LogoutRequest to SimpleSAMLphp's
///    SingleLogoutService, was the script's `submit()` (had the CSP blocked it, the browser
///    would have stayed on the page and Chromium would have reported the violation);
/// 3. SimpleSAMLphp answered by POSTing a signed LogoutResponse to that request to samlgate's
///    `/saml/slo`, which showed its signed-out page (200) where the browser came to rest.
fn check_post_slo(s: &Setup, name: &str, r: &Value, trail: &[&str]) {
    let logout_url = format!("{}/saml/logout", s.public_url);
    let idp_slo = format!("{}/saml2/idp/SingleLogoutService.php", s.idp_origin);
    let gateway_slo = format!("{}/saml/slo", s.public_url);

    // 1. The auto-submit page and its CSP, as Chromium received them.
    let page = r["documents"]
        .as_array()
        .and_then(|d| {
            d.iter()
                .rev()
                .find(|d| d["method"] == "POST" && d["url"] == logout_url.as_str())
        })
        .unwrap_or_else(|| {
            panic!(
                "[{name}] no answer to POST {logout_url}: {}",
                r["documents"]
            )
        });
    assert_eq!(page["status"], 200, "[{name}] {page}");
    let csp = page["csp"].as_str().unwrap_or("");
    let script_src: Vec<&str> = csp
        .split(';')
        .map(str::trim)
        .find_map(|d| d.strip_prefix("script-src "))
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert!(
        script_src.len() == 1 && script_src[0].starts_with("'sha256-"),
        "[{name}] the auto-submit page allows its one script by hash only: {csp:?}"
    );
    assert!(
        csp.starts_with("default-src 'none';") && !csp.contains("form-action"),
        "[{name}] {csp:?}"
    );

    // 2 and 3. The document requests after "Sign out", in order.
    let at = |want: &str| {
        trail
            .iter()
            .position(|t| *t == want || t.starts_with(&format!("{want} -> ")))
            .unwrap_or_else(|| panic!("[{name}] the browser made no {want}: {trail:#?}"))
    };
    let (sign_out, to_idp, to_gateway) = (
        at(&format!("POST {logout_url}")),
        at(&format!("POST {idp_slo}")),
        at(&format!("POST {gateway_slo}")),
    );
    assert!(
        sign_out < to_idp && to_idp < to_gateway,
        "[{name}] sign-out form, then the IdP, then samlgate: {trail:#?}"
    );
    assert_eq!(
        trail[to_gateway],
        format!("POST {gateway_slo} -> 200"),
        "[{name}] samlgate accepted the IdP's LogoutResponse"
    );
    assert!(
        !trail
            .iter()
            .any(|t| t.starts_with(&format!("GET {gateway_slo}?"))),
        "[{name}] nothing reached /saml/slo by HTTP-Redirect: {trail:#?}"
    );

    // What travelled in those two POSTs.
    let request = saml_post(r, name, &idp_slo, "SAMLRequest");
    assert!(
        request.contains(":LogoutRequest ") && request.contains("<ds:Signature"),
        "[{name}] samlgate POSTed a signed LogoutRequest: {request}"
    );
    let parsed: samael::schema::LogoutRequest = request
        .parse()
        .unwrap_or_else(|e| panic!("[{name}] LogoutRequest: {e}\n{request}"));
    assert_eq!(parsed.destination.as_deref(), Some(idp_slo.as_str()));
    let request_id = parsed.id.unwrap_or_default();
    let response = saml_post(r, name, &gateway_slo, "SAMLResponse");
    assert!(
        response.contains(":LogoutResponse ")
            && response.contains("<ds:Signature")
            && response.contains(&format!("InResponseTo=\"{request_id}\""))
            && response.contains("urn:oasis:names:tc:SAML:2.0:status:Success"),
        "[{name}] SimpleSAMLphp POSTed a signed, successful LogoutResponse to {request_id}: \
         {response}"
    );
}

/// The decoded `field` of the one SAML form POST the browser made to `url`.
fn saml_post(r: &Value, name: &str, url: &str, field: &str) -> String {
    let posts: Vec<&Value> = r["saml_posts"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .filter(|p| p["url"] == url)
        .collect();
    assert_eq!(
        posts.len(),
        1,
        "[{name}] one SAML POST to {url}: {}",
        r["saml_posts"]
    );
    let b64 = posts[0]["fields"][field]
        .as_str()
        .unwrap_or_else(|| panic!("[{name}] the POST to {url} has no {field}: {}", posts[0]));
    let xml = STANDARD
        .decode(b64)
        .unwrap_or_else(|e| panic!("[{name}] {field} is not base64: {e}"));
    String::from_utf8(xml).unwrap_or_else(|e| panic!("[{name}] {field} is not UTF-8: {e}"))
}

/// Over https (gateway `https://app.test`, IdP `http://idp.test`): the pending-login cookie is
/// `SameSite=None; Secure` for app.test, and the ACS POST was genuinely cross-site.
fn assert_cross_site(s: &Setup, name: &str, login: &Value, post: &Value) {
    assert_eq!(
        login["sameSite"], "None",
        "[{name}] samlgate_login must be SameSite=None to survive the IdP's cross-site POST: \
         {login}"
    );
    assert_eq!(
        login["secure"], true,
        "[{name}] samlgate_login must be Secure: {login}"
    );
    assert_eq!(login["domain"], "app.test", "[{name}] {login}");
    assert_eq!(
        post["sec_fetch_site"], "cross-site",
        "[{name}] the IdP's POST to the ACS is cross-site: {post}"
    );
    assert!(
        s.idp_origin.starts_with("http://idp.test:"),
        "[{name}] {}",
        s.idp_origin
    );
    // The POST's Origin: SimpleSAMLphp's page sends its own; the dev IdP's pages carry
    // `Referrer-Policy: no-referrer`, under which a cross-origin form POST says `Origin: null`.
    let want_origin = match s.kind {
        IdpKind::SimpleSamlPhp => s.idp_origin.as_str(),
        IdpKind::DevIdp => "null",
    };
    assert_eq!(post["origin"], want_origin, "[{name}] {post}");
}

/// The cookie `name` from the result's cookie list `list`.
fn cookie<'a>(r: &'a Value, list: &str, name: &str) -> Option<&'a Value> {
    r[list].as_array()?.iter().find(|c| c["name"] == name)
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_signs_in_and_out_through_two_replicas_behind_round_robin_nginx() {
    let t = Instant::now();
    sign_in_and_out(
        IdpKind::SimpleSamlPhp,
        Transport::HttpReplicas,
        SloBinding::Redirect,
        "login-replicas",
    )
    .await;
    eprintln!("browser replicas: {:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_signs_in_and_out_over_http() {
    let t = Instant::now();
    sign_in_and_out(
        IdpKind::SimpleSamlPhp,
        Transport::Http,
        SloBinding::Redirect,
        "login-http",
    )
    .await;
    eprintln!("browser_signs_in_and_out_over_http: {:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_signs_in_and_out_over_https_with_a_cross_site_post() {
    let t = Instant::now();
    sign_in_and_out(
        IdpKind::SimpleSamlPhp,
        Transport::HttpsCrossSite,
        SloBinding::Redirect,
        "login-https",
    )
    .await;
    eprintln!(
        "browser_signs_in_and_out_over_https_with_a_cross_site_post: {:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_signs_in_and_out_via_dev_idp_over_http() {
    let t = Instant::now();
    sign_in_and_out(
        IdpKind::DevIdp,
        Transport::Http,
        SloBinding::Redirect,
        "devidp-http",
    )
    .await;
    eprintln!(
        "browser_signs_in_and_out_via_dev_idp_over_http: {:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_signs_in_and_out_via_dev_idp_over_https_cross_site() {
    let t = Instant::now();
    sign_in_and_out(
        IdpKind::DevIdp,
        Transport::HttpsCrossSite,
        SloBinding::Redirect,
        "devidp-https",
    )
    .await;
    eprintln!(
        "browser_signs_in_and_out_via_dev_idp_over_https_cross_site: {:?}",
        t.elapsed()
    );
}

/// SimpleSAMLphp offers Single Logout by HTTP-POST only (both ways): "Sign out" brings
/// samlgate's auto-submit page, whose script (allowed by hash, nothing else) POSTs the signed
/// LogoutRequest to the IdP; the IdP POSTs its LogoutResponse back to `/saml/slo`; the browser
/// ends on samlgate's signed-out page with no CSP violation, and the IdP asks for the password
/// again. Over http (the https runs cover the cross-site cookies).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_signs_out_by_post_when_the_idp_offers_only_post() {
    let t = Instant::now();
    sign_in_and_out(
        IdpKind::SimpleSamlPhp,
        Transport::Http,
        SloBinding::PostOnly,
        "slo-post-http",
    )
    .await;
    eprintln!(
        "browser_signs_out_by_post_when_the_idp_offers_only_post: {:?}",
        t.elapsed()
    );
}
