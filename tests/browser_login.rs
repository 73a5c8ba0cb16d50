//! A real browser signs in through samlgate: Debian's headless Chromium, driven by
//! playwright-core from `tests/browser/login.mjs`, against a real SimpleSAMLphp IdP
//! (tests/support/simplesamlphp.rs), the echo upstream and samlgate (tests/support/gateway.rs),
//! all on loopback.
//!
//! The browser opens a protected URL on the gateway, is redirected to the IdP, fills the
//! SimpleSAMLphp login form as alice, submits it, follows the IdP's self-submitting POST back to
//! the gateway's ACS and lands on the upstream page, whose text (the echoed request headers)
//! must show the identity headers. A full-page screenshot of that page is kept as a test
//! artifact (`<target dir>/test-artifacts/browser-login-{http,https}.png`; on failure
//! `browser-login-*-FAILED.png`).
//!
//! Two runs:
//! - plain http, gateway and IdP both on `127.0.0.1` (different ports: same site);
//! - https on the gateway (self-signed, `--ignore-certificate-errors`) at `https://app.test:P`
//!   and the IdP at `http://idp.test:Q` (Chromium's `--host-rules=MAP *.test 127.0.0.1`), so the
//!   IdP's POST back to the ACS is genuinely cross-site: the pending-login cookie must be
//!   `SameSite=None; Secure` to survive it.
//!
//! Needs `node` (>= 20), Debian's `chromium` (/usr/bin/chromium) — `scripts/install-deps.sh
//! test` — and `tests/browser/node_modules` (`npm ci --prefix tests/browser`, which
//! scripts/test.sh runs). Without them the tests FAIL, never skip.

#[path = "support/gateway.rs"]
mod gateway;
#[path = "support/simplesamlphp.rs"]
mod simplesamlphp;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gateway::{start_upstream, Upstream};
use simplesamlphp::{SimpleSamlPhp, SpEntry, ALICE};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const CHROMIUM: &str = "/usr/bin/chromium";
/// The whole `node login.mjs` run; the script gives up (and closes the browser) a bit earlier.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(60);
const DRIVER_INNER_TIMEOUT_MS: u64 = 45_000;
const INSTALL_HINT: &str = "run `scripts/install-deps.sh test` (as root: installs chromium, and \
                            node when missing) and `npm ci --prefix tests/browser` (playwright-core)";

/// Map the user header to SimpleSAMLphp's `uid` attribute: its NameID is persistent (opaque).
const USER_IS_UID: &str = "[headers]\nuser_attribute = \"uid\"\n";

// ---------------------------------------------------------------------------------------------
// Setup: listener → IdP (knowing the gateway's public URLs) → gateway on that listener
// ---------------------------------------------------------------------------------------------

/// A running gateway, started on a listener bound before the IdP was configured (so the IdP's
/// SP entry can name its ACS, and no other process can take the port meanwhile).
struct Gw {
    /// `public_url`, e.g. `https://app.test:PORT`
    base: String,
    acs_url: String,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Gw {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn start_gateway_on(
    listener: TcpListener,
    public_url: &str,
    upstream: &str,
    idp_metadata_xml: &str,
    tls: Option<(String, String)>,
) -> Gw {
    let addr = listener.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("idp.xml"), idp_metadata_xml).unwrap();
    std::fs::write(
        dir.path().join("cookie.secret"),
        "0123456789abcdef0123456789abcdef-browser-secret",
    )
    .unwrap();
    let mut tls_toml = String::new();
    if let Some((cert, key)) = &tls {
        std::fs::write(dir.path().join("tls.crt"), cert).unwrap();
        std::fs::write(dir.path().join("tls.key"), key).unwrap();
        tls_toml = "[tls]\ncert_file = \"tls.crt\"\nkey_file = \"tls.key\"\n".into();
    }
    let toml = format!(
        "listen = \"{addr}\"\npublic_url = \"{public_url}\"\nupstream = \"{upstream}\"\n\n\
         {tls_toml}\n[saml]\nidp_metadata_file = \"idp.xml\"\n\n\
         [session]\ncookie_secret_file = \"cookie.secret\"\n\n[log]\nlevel = \"warn\"\n\n\
         {USER_IS_UID}"
    );
    let path = dir.path().join("samlgate.toml");
    std::fs::write(&path, &toml).unwrap();
    let app = samlgate::app::build(&path)
        .unwrap_or_else(|e| panic!("gateway config refused: {e}\n{toml}"));
    let acs_url = app.settings.saml.acs_url.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        samlgate::app::serve_on(app, listener, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Gw {
        base: public_url.to_string(),
        acs_url,
        _dir: dir,
        stop: Some(stop),
    }
}

/// Field order = drop order: the gateway stops before the IdP's processes are killed.
struct Setup {
    gw: Gw,
    up: Upstream,
    idp: SimpleSamlPhp,
    /// Origin of the IdP as the browser sees it (`http://idp.test:PORT` when re-hosted).
    idp_origin: String,
}

impl Setup {
    /// `gateway_host`/`idp_host`: the names the browser uses (`127.0.0.1`, or `*.test` names
    /// mapped to loopback by `--host-rules`). `tls`: the gateway serves https.
    async fn start(gateway_host: &str, idp_host: &str, tls: bool) -> Setup {
        let t = Instant::now();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let scheme = if tls { "https" } else { "http" };
        let public_url = format!("{scheme}://{gateway_host}:{port}");
        // The gateway's defaults: entity ID = public_url + /saml/metadata, ACS = /saml/acs.
        let entry = SpEntry::new(
            &format!("{public_url}/saml/metadata"),
            &format!("{public_url}/saml/acs"),
        );
        let idp = SimpleSamlPhp::start(
            std::slice::from_ref(&entry),
            &simplesamlphp::default_users(),
        )
        .await
        .unwrap_or_else(|e| panic!("SimpleSAMLphp did not start: {e}"));
        let (idp_origin, metadata_xml) = if idp_host == "127.0.0.1" {
            (idp.base_url.clone(), idp.metadata_xml.clone())
        } else {
            rehost_idp(&idp, idp_host).await
        };
        let up = start_upstream().await;
        let gw = start_gateway_on(
            listener,
            &public_url,
            &up.url(),
            &metadata_xml,
            tls.then(gateway::self_signed_tls),
        )
        .await;
        assert_eq!(
            gw.acs_url, entry.acs_url,
            "the IdP's SP entry must name the gateway's public ACS URL"
        );
        eprintln!(
            "setup: IdP {idp_origin} (php on 127.0.0.1:{}) + gateway {} ready in {:?}",
            idp.port,
            gw.base,
            t.elapsed()
        );
        Setup {
            gw,
            up,
            idp,
            idp_origin,
        }
    }
}

/// Makes SimpleSAMLphp build its URLs (metadata endpoints, login page, assets) on
/// `http://HOST:PORT/` instead of `http://127.0.0.1:PORT/`: a later `baseurlpath` assignment
/// appended to its generated config.php wins (the file is read on every request). Returns the
/// IdP's origin and its metadata re-read (its SSO location now names HOST). The entity ID is
/// set explicitly in saml20-idp-hosted.php and stays as it was.
async fn rehost_idp(idp: &SimpleSamlPhp, host: &str) -> (String, String) {
    use std::io::Write as _;
    let origin = format!("http://{host}:{}", idp.port);
    let config = idp.dir().join("config/config.php");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&config)
        .unwrap_or_else(|e| panic!("open {}: {e}", config.display()));
    writeln!(
        f,
        "\n// tests/browser_login.rs: the browser reaches this IdP by name.\n\
         $config['baseurlpath'] = '{origin}/';"
    )
    .unwrap();
    drop(f);
    let metadata_url = format!("{}/saml2/idp/metadata.php", idp.base_url);
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let xml = client
        .get(&metadata_url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {metadata_url}: {e}"))
        .text()
        .await
        .unwrap();
    let sso = format!("{origin}/saml2/idp/SSOService.php");
    assert!(
        xml.contains(&sso),
        "after re-hosting, the IdP's metadata should name {sso}:\n{xml}\n{}",
        idp.log_tail(20)
    );
    (origin, xml)
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
    let installed = browser_dir.join("node_modules/playwright-core/package.json");
    let installed = std::fs::read_to_string(&installed)
        .unwrap_or_else(|e| panic!("{} is missing ({e}): {INSTALL_HINT}", installed.display()));
    let lock = std::fs::read_to_string(browser_dir.join("package-lock.json"))
        .expect("tests/browser/package-lock.json");
    let installed_version = json::parse(&installed)
        .ok()
        .and_then(|v| v.get("version").and_then(|v| v.as_str().map(String::from)));
    let locked_version = json::parse(&lock).ok().and_then(|v| {
        v.get("packages")?
            .get("node_modules/playwright-core")?
            .get("version")?
            .as_str()
            .map(String::from)
    });
    assert!(
        installed_version.is_some() && installed_version == locked_version,
        "tests/browser/node_modules has playwright-core {installed_version:?}, \
         package-lock.json pins {locked_version:?}: rerun `npm ci --prefix tests/browser`"
    );
}

struct DriverRun {
    result: json::Value,
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
    let result = json::parse(line)
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

/// What one browser sign-in should look like.
struct Run<'a> {
    name: &'a str,
    setup: &'a Setup,
    path: &'a str,
    chromium_host_rules: Option<&'a str>,
    tls: bool,
}

/// Drives the browser and returns its result, after the checks common to both runs: landed
/// on the upstream page showing alice's identity headers, via exactly one ACS POST that
/// carried the pending-login cookie and was answered with a redirect back to `path`.
async fn browser_sign_in(run: &Run<'_>) -> json::Value {
    let s = run.setup;
    let artifacts = artifacts_dir();
    let shot = artifacts.join(format!("browser-login-{}.png", run.name));
    let failed_shot = artifacts.join(format!("browser-login-{}-FAILED.png", run.name));
    let _ = std::fs::remove_file(&shot);
    let _ = std::fs::remove_file(&failed_shot);
    let start_url = format!("{}{}", s.gw.base, run.path);
    let mut args = BTreeMap::new();
    args.insert("start_url", json::str(&start_url));
    args.insert("final_url", json::str(&start_url));
    args.insert("acs_url", json::str(&s.gw.acs_url));
    args.insert("idp_origin", json::str(&s.idp_origin));
    args.insert("username", json::str(ALICE.username));
    args.insert("password", json::str(ALICE.password));
    args.insert("screenshot", json::str(&shot.display().to_string()));
    args.insert(
        "failure_screenshot",
        json::str(&failed_shot.display().to_string()),
    );
    if let Some(rules) = run.chromium_host_rules {
        args.insert("host_rules", json::str(rules));
    }
    args.insert("ignore_certificate_errors", run.tls.to_string());
    args.insert("timeout_ms", DRIVER_INNER_TIMEOUT_MS.to_string());
    let args_json = format!(
        "{{{}}}",
        args.iter()
            .map(|(k, v)| format!("{}:{v}", json::str(k)))
            .collect::<Vec<_>>()
            .join(",")
    );

    let driven = tokio::task::spawn_blocking(move || run_driver(&args_json))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("[{}] {e}\n{}", run.name, s.idp.log_tail(20)));
    let r = &driven.result;
    eprintln!(
        "--- [{}] login.mjs stderr ---\n{}--- end ---",
        run.name, driven.stderr
    );
    eprintln!(
        "[{}] node login.mjs took {:?}; Chromium {}; timings (ms since node start) {}",
        run.name,
        driven.elapsed,
        r.get("browser_version")
            .and_then(|v| v.as_str())
            .unwrap_or("?"),
        r.get("timings_ms")
            .map(|v| v.to_string())
            .unwrap_or_default()
    );
    let trail = r.get("trail").map(|v| v.to_string()).unwrap_or_default();
    eprintln!("[{}] navigation trail: {trail}", run.name);

    if r.get("ok").and_then(|v| v.as_bool()) != Some(true) {
        let shot = r
            .get("failure_screenshot")
            .and_then(|v| v.as_str())
            .map(|p| format!("failure screenshot: {p}"))
            .unwrap_or_else(|| "no failure screenshot".into());
        panic!(
            "[{}] the browser did not sign in: {}\nstage: {}\nat: {}\npage text: {}\n\
             {shot}\ntrail: {trail}\n{}",
            run.name,
            r.get("error").and_then(|v| v.as_str()).unwrap_or("?"),
            r.get("stage").and_then(|v| v.as_str()).unwrap_or("?"),
            r.get("failure_url").and_then(|v| v.as_str()).unwrap_or("?"),
            r.get("failure_text").and_then(|v| v.as_str()).unwrap_or(""),
            s.idp.log_tail(20)
        );
    }
    let shot_path = r.get("screenshot").and_then(|v| v.as_str()).unwrap_or("");
    let shot_abs = std::fs::canonicalize(shot_path)
        .unwrap_or_else(|e| panic!("[{}] screenshot {shot_path:?} missing: {e}", run.name));
    let size = std::fs::metadata(&shot_abs).map(|m| m.len()).unwrap_or(0);
    assert!(size > 1000, "[{}] screenshot is {size} bytes", run.name);
    // Straight to stdout, past libtest's capture: the artifact's path shows in every run.
    {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stdout(),
            "[{}] screenshot of the landing page: {}",
            run.name,
            shot_abs.display()
        );
    }

    // Landed back where the person started, on the upstream's page.
    let final_url = r.get("final_url").and_then(|v| v.as_str()).unwrap_or("");
    assert_eq!(final_url, start_url, "[{}] final URL", run.name);
    let idp_login_url = r
        .get("idp_login_url")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    assert!(
        idp_login_url.starts_with(&format!("{}/", s.idp_origin)),
        "[{}] the login form was the IdP's: {idp_login_url}",
        run.name
    );
    let text = r.get("text").and_then(|v| v.as_str()).unwrap_or("");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert_eq!(
        lines.first().copied(),
        Some("upstream page"),
        "[{}] the page is the upstream's:\n{text}",
        run.name
    );
    for want in [
        "x-forwarded-user: alice",
        "x-forwarded-groups: analysts,admins",
    ] {
        assert!(
            lines.contains(&want),
            "[{}] the page shows {want:?}:\n{text}",
            run.name
        );
    }
    for line in &lines {
        assert!(
            !line.starts_with("cookie:") || !line.contains("samlgate_"),
            "[{}] gateway cookies must not reach the upstream: {line}",
            run.name
        );
    }
    // What the upstream itself saw (besides the page, the browser fetches /favicon.ico, which
    // the gateway forwards too once signed in).
    let pages: Vec<gateway::Seen> =
        s.up.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|seen| seen.path == run.path)
            .cloned()
            .collect();
    assert_eq!(
        pages.len(),
        1,
        "[{}] the upstream saw the page once: {pages:?}",
        run.name
    );
    assert_eq!(pages[0].one("x-forwarded-user").as_deref(), Some("alice"));

    // The IdP's auto-submitted form reached the ACS once, with the pending-login cookie, and
    // the ACS redirected back to the protected path.
    let posts = r.get("acs_posts").and_then(|v| v.as_array()).unwrap_or(&[]);
    assert_eq!(posts.len(), 1, "[{}] ACS POSTs: {posts:?}", run.name);
    let post = &posts[0];
    let status = post.get("status").and_then(|v| v.as_f64());
    assert_eq!(
        status,
        Some(303.0),
        "[{}] the ACS accepts the browser's POST: {post}",
        run.name
    );
    assert_eq!(
        post.get("location").and_then(|v| v.as_str()),
        Some(run.path),
        "[{}] the ACS sends the browser back to where it started",
        run.name
    );
    let sent: Vec<&str> = post
        .get("cookie_names")
        .and_then(|v| v.as_array())
        .unwrap_or(&[])
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        sent.contains(&"samlgate_login"),
        "[{}] the browser sent the pending-login cookie with the IdP's POST to the ACS: \
         sent {sent:?}; {post}",
        run.name
    );
    let end = cookie(r, "cookies_at_end", "samlgate_session");
    assert!(
        end.is_some(),
        "[{}] the browser keeps a session cookie: {}",
        run.name,
        r.get("cookies_at_end")
            .map(|v| v.to_string())
            .unwrap_or_default()
    );
    eprintln!(
        "[{}] ACS POST: {post}\n[{}] gateway cookies while at the IdP: {}\n[{}] gateway cookies \
         at the end: {}",
        run.name,
        run.name,
        r.get("cookies_at_idp")
            .map(|v| v.to_string())
            .unwrap_or_default(),
        run.name,
        r.get("cookies_at_end")
            .map(|v| v.to_string())
            .unwrap_or_default()
    );
    driven.result
}

/// The cookie `name` from the result's cookie list `list`.
fn cookie<'a>(r: &'a json::Value, list: &str, name: &str) -> Option<&'a json::Value> {
    r.get(list)?
        .as_array()?
        .iter()
        .find(|c| c.get("name").and_then(|n| n.as_str()) == Some(name))
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_signs_in_over_http() {
    let t = Instant::now();
    check_browser_tooling();
    let s = Setup::start("127.0.0.1", "127.0.0.1", false).await;
    let r = browser_sign_in(&Run {
        name: "http",
        setup: &s,
        path: "/reports?q=1",
        chromium_host_rules: None,
        tls: false,
    })
    .await;
    let login = cookie(&r, "cookies_at_idp", "samlgate_login")
        .unwrap_or_else(|| panic!("no samlgate_login cookie while at the IdP: {r}"));
    eprintln!("[http] samlgate_login as stored by Chromium: {login}");
    eprintln!("browser_signs_in_over_http: {:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_signs_in_over_https_with_a_cross_site_post() {
    let t = Instant::now();
    check_browser_tooling();
    let s = Setup::start("app.test", "idp.test", true).await;
    let r = browser_sign_in(&Run {
        name: "https",
        setup: &s,
        path: "/reports?q=1",
        chromium_host_rules: Some("MAP *.test 127.0.0.1"),
        tls: true,
    })
    .await;
    // The pending-login cookie as Chromium stored it while the person was at the IdP.
    let login = cookie(&r, "cookies_at_idp", "samlgate_login")
        .unwrap_or_else(|| panic!("no samlgate_login cookie while at the IdP: {r}"));
    eprintln!("[https] samlgate_login as stored by Chromium: {login}");
    assert_eq!(
        login.get("sameSite").and_then(|v| v.as_str()),
        Some("None"),
        "samlgate_login must be SameSite=None to survive the IdP's cross-site POST: {login}"
    );
    assert_eq!(
        login.get("secure").and_then(|v| v.as_bool()),
        Some(true),
        "samlgate_login must be Secure: {login}"
    );
    assert_eq!(
        login.get("domain").and_then(|v| v.as_str()),
        Some("app.test"),
        "{login}"
    );
    // The POST was genuinely cross-site (http://idp.test → https://app.test).
    let post = &r.get("acs_posts").and_then(|v| v.as_array()).unwrap()[0];
    assert_eq!(
        post.get("sec_fetch_site").and_then(|v| v.as_str()),
        Some("cross-site"),
        "the IdP's POST to the ACS is cross-site: {post}"
    );
    assert_eq!(
        post.get("origin").and_then(|v| v.as_str()),
        Some(s.idp_origin.as_str()),
        "{post}"
    );
    eprintln!(
        "browser_signs_in_over_https_with_a_cross_site_post: {:?}",
        t.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// A minimal JSON reader/writer (no serde_json among the dev-dependencies)
// ---------------------------------------------------------------------------------------------

mod json {
    use std::fmt;

    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Null,
        Bool(bool),
        Num(f64),
        Str(String),
        Arr(Vec<Value>),
        Obj(Vec<(String, Value)>),
    }

    impl Value {
        pub fn get(&self, key: &str) -> Option<&Value> {
            match self {
                Value::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                _ => None,
            }
        }
        pub fn as_str(&self) -> Option<&str> {
            match self {
                Value::Str(s) => Some(s),
                _ => None,
            }
        }
        pub fn as_bool(&self) -> Option<bool> {
            match self {
                Value::Bool(b) => Some(*b),
                _ => None,
            }
        }
        pub fn as_f64(&self) -> Option<f64> {
            match self {
                Value::Num(n) => Some(*n),
                _ => None,
            }
        }
        pub fn as_array(&self) -> Option<&[Value]> {
            match self {
                Value::Arr(a) => Some(a),
                _ => None,
            }
        }
    }

    impl fmt::Display for Value {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Value::Null => f.write_str("null"),
                Value::Bool(b) => write!(f, "{b}"),
                Value::Num(n) => write!(f, "{n}"),
                Value::Str(s) => f.write_str(&str(s)),
                Value::Arr(a) => {
                    f.write_str("[")?;
                    for (i, v) in a.iter().enumerate() {
                        if i > 0 {
                            f.write_str(",")?;
                        }
                        write!(f, "{v}")?;
                    }
                    f.write_str("]")
                }
                Value::Obj(m) => {
                    f.write_str("{")?;
                    for (i, (k, v)) in m.iter().enumerate() {
                        if i > 0 {
                            f.write_str(",")?;
                        }
                        write!(f, "{}:{v}", str(k))?;
                    }
                    f.write_str("}")
                }
            }
        }
    }

    /// A JSON string literal.
    pub fn str(s: &str) -> String {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    pub fn parse(s: &str) -> Result<Value, String> {
        let mut p = Parser {
            b: s.as_bytes(),
            i: 0,
        };
        let v = p.value(0)?;
        p.ws();
        if p.i != p.b.len() {
            return Err(format!("trailing characters at byte {}", p.i));
        }
        Ok(v)
    }

    struct Parser<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
                self.i += 1;
            }
        }
        fn err<T>(&self, what: &str) -> Result<T, String> {
            Err(format!("{what} at byte {}", self.i))
        }
        fn eat(&mut self, lit: &str) -> bool {
            if self.b[self.i..].starts_with(lit.as_bytes()) {
                self.i += lit.len();
                true
            } else {
                false
            }
        }
        fn value(&mut self, depth: usize) -> Result<Value, String> {
            if depth > 64 {
                return self.err("nested too deeply");
            }
            self.ws();
            match self.b.get(self.i) {
                None => self.err("unexpected end"),
                Some(b'{') => {
                    self.i += 1;
                    let mut m = Vec::new();
                    self.ws();
                    if self.eat("}") {
                        return Ok(Value::Obj(m));
                    }
                    loop {
                        self.ws();
                        if self.b.get(self.i) != Some(&b'"') {
                            return self.err("expected a key");
                        }
                        let k = self.string()?;
                        self.ws();
                        if !self.eat(":") {
                            return self.err("expected ':'");
                        }
                        let v = self.value(depth + 1)?;
                        m.push((k, v));
                        self.ws();
                        if self.eat("}") {
                            return Ok(Value::Obj(m));
                        }
                        if !self.eat(",") {
                            return self.err("expected ',' or '}'");
                        }
                    }
                }
                Some(b'[') => {
                    self.i += 1;
                    let mut a = Vec::new();
                    self.ws();
                    if self.eat("]") {
                        return Ok(Value::Arr(a));
                    }
                    loop {
                        a.push(self.value(depth + 1)?);
                        self.ws();
                        if self.eat("]") {
                            return Ok(Value::Arr(a));
                        }
                        if !self.eat(",") {
                            return self.err("expected ',' or ']'");
                        }
                    }
                }
                Some(b'"') => Ok(Value::Str(self.string()?)),
                Some(_) if self.eat("true") => Ok(Value::Bool(true)),
                Some(_) if self.eat("false") => Ok(Value::Bool(false)),
                Some(_) if self.eat("null") => Ok(Value::Null),
                Some(_) => {
                    let start = self.i;
                    while self.i < self.b.len()
                        && matches!(
                            self.b[self.i],
                            b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                        )
                    {
                        self.i += 1;
                    }
                    std::str::from_utf8(&self.b[start..self.i])
                        .ok()
                        .and_then(|n| n.parse().ok())
                        .map(Value::Num)
                        .map_or_else(|| self.err("bad value"), Ok)
                }
            }
        }
        fn hex4(&mut self) -> Result<u32, String> {
            let h = self
                .b
                .get(self.i..self.i + 4)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u32::from_str_radix(h, 16).ok());
            match h {
                Some(v) => {
                    self.i += 4;
                    Ok(v)
                }
                None => self.err("bad \\u escape"),
            }
        }
        fn string(&mut self) -> Result<String, String> {
            self.i += 1; // opening quote
            let mut out = Vec::new();
            loop {
                match self.b.get(self.i) {
                    None => return self.err("unterminated string"),
                    Some(b'"') => {
                        self.i += 1;
                        return String::from_utf8(out).map_err(|e| e.to_string());
                    }
                    Some(b'\\') => {
                        self.i += 1;
                        let e = self.b.get(self.i).copied();
                        self.i += 1;
                        let c = match e {
                            Some(b'"') => '"',
                            Some(b'\\') => '\\',
                            Some(b'/') => '/',
                            Some(b'b') => '\u{8}',
                            Some(b'f') => '\u{c}',
                            Some(b'n') => '\n',
                            Some(b'r') => '\r',
                            Some(b't') => '\t',
                            Some(b'u') => {
                                let hi = self.hex4()?;
                                let cp = if (0xD800..0xDC00).contains(&hi) && self.eat("\\u") {
                                    let lo = self.hex4()?;
                                    0x10000
                                        + ((hi - 0xD800) << 10)
                                        + (lo.wrapping_sub(0xDC00) & 0x3FF)
                                } else {
                                    hi
                                };
                                char::from_u32(cp).unwrap_or('\u{FFFD}')
                            }
                            _ => return self.err("bad escape"),
                        };
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                    Some(&c) => {
                        out.push(c);
                        self.i += 1;
                    }
                }
            }
        }
    }
}
