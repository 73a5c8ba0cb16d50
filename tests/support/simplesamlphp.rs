//! A real SAML 2.0 IdP for end-to-end tests: SimpleSAMLphp (Debian package) run by
//! `php -S` on a free loopback port, configured from a temp dir.
//!
//! Include it from an integration test with
//! `#[path = "support/simplesamlphp.rs"] mod simplesamlphp;`.
//!
//! Needs the Debian packages `simplesamlphp php-cli php-xml php-mbstring php-curl php-sqlite3`
//! and the `openssl` command (for the IdP's key pair). When they are missing,
//! [`SimpleSamlPhp::start`] returns an error: tests never skip silently.
//!
//! Dependencies used (all already in samlgate's (dev-)dependencies): `reqwest` (cookies),
//! `tokio` (time), `tempfile`, `base64`, `flate2`, `url`. `kill(2)` is declared here
//! directly (std links libc anyway), so no `libc` crate is needed.
//!
//! Each test should own its IdP: the process group is killed when the [`SimpleSamlPhp`]
//! value is dropped (including during a panic unwind). Keeping one in a `static` means Drop
//! never runs and the `php` processes outlive the test binary.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

/// Where Debian's package puts SimpleSAMLphp's document root.
pub const SSP_WWW: &str = "/usr/share/simplesamlphp/www";
/// Debian's stock config (pulls in the generated secret salt); ours requires it, then overrides.
pub const SSP_STOCK_CONFIG: &str = "/etc/simplesamlphp/config.php";
/// Debian's generated secret salt and admin password, required by the stock config.
pub const SSP_SECRETS: &str = "/var/lib/simplesamlphp/secrets.inc.php";
/// How long [`SimpleSamlPhp::start`] waits for the metadata URL to answer 200.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

const NOT_INSTALLED: &str = "SimpleSAMLphp is not installed: run scripts/install-deps.sh test";

pub const BINDING_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
pub const BINDING_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
pub const NAMEID_PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";

// ---------------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------------

/// A user of the IdP's `exampleauth:UserPass` source. Every attribute is released as-is:
/// `uid`, `mail`, `displayName` (one value each) and `groups` (one `AttributeValue` per group).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestUser {
    pub username: &'static str,
    pub password: &'static str,
    pub uid: &'static str,
    pub mail: &'static str,
    pub display_name: &'static str,
    pub groups: &'static [&'static str],
}

pub const ALICE: TestUser = TestUser {
    username: "alice",
    password: "alicepass",
    uid: "alice",
    mail: "alice@example.com",
    display_name: "Alice Analyst",
    groups: &["analysts", "admins"],
};

pub const BOB: TestUser = TestUser {
    username: "bob",
    password: "bobpass",
    uid: "bob",
    mail: "bob@example.com",
    display_name: "Bob Contractor",
    groups: &["contractors"],
};

/// No groups: SimpleSAMLphp emits `<saml:Attribute Name="groups" NameFormat="…basic"/>`,
/// an `Attribute` element with no `AttributeValue` child at all.
pub const CAROL: TestUser = TestUser {
    username: "carol",
    password: "carolpass",
    uid: "carol",
    mail: "carol@example.com",
    display_name: "Carol Nogroups",
    groups: &[],
};

/// A name and groups beyond ASCII: Latin-2 letters and Cyrillic (identity header encodings).
pub const ZOE: TestUser = TestUser {
    username: "zoe",
    password: "zoepass",
    uid: "zoe",
    mail: "zoe@example.com",
    display_name: "Zoë Łukasiewicz",
    groups: &["Разработчики", "staff"],
};

pub fn default_users() -> Vec<TestUser> {
    vec![ALICE, BOB, CAROL, ZOE]
}

// ---------------------------------------------------------------------------------------------
// SP entries (saml20-sp-remote.php)
// ---------------------------------------------------------------------------------------------

/// One entry of the IdP's `saml20-sp-remote.php`.
#[derive(Clone, Debug)]
pub struct SpEntry {
    pub entity_id: String,
    /// HTTP-POST AssertionConsumerService location.
    pub acs_url: String,
    /// SingleLogoutService location, offered with the HTTP-Redirect and HTTP-POST bindings
    /// (SimpleSAMLphp prefers Redirect whatever the order, unless `slo_post_only`).
    pub slo_url: Option<String>,
    /// Offer `slo_url` with the HTTP-POST binding only, so that SimpleSAMLphp sends its
    /// LogoutRequests and LogoutResponses to this SP by auto-submit form (as Okta does).
    pub slo_post_only: bool,
    /// The SP's certificate (PEM). Needed for `encrypt_assertion` and
    /// `validate_authnrequest`, and used to check signed LogoutRequests.
    pub certificate_pem: Option<String>,
    /// `saml20.sign.response`
    pub sign_response: bool,
    /// `saml20.sign.assertion`
    pub sign_assertion: bool,
    /// `assertion.encryption`: EncryptedAssertion (rsa-oaep-mgf1p + aes128-cbc), needs a cert.
    pub encrypt_assertion: bool,
    /// `validate.authnrequest`: unsigned AuthnRequests are refused (error page, HTTP 200 or 500).
    pub validate_authnrequest: bool,
    /// `sign.logout`: sign LogoutRequest/LogoutResponse sent to this SP.
    pub sign_logout: bool,
}

impl SpEntry {
    /// Both signatures on; no SLO, no certificate, no encryption, no request validation.
    pub fn new(entity_id: &str, acs_url: &str) -> Self {
        SpEntry {
            entity_id: entity_id.to_string(),
            acs_url: acs_url.to_string(),
            slo_url: None,
            slo_post_only: false,
            certificate_pem: None,
            sign_response: true,
            sign_assertion: true,
            encrypt_assertion: false,
            validate_authnrequest: false,
            sign_logout: false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The IdP process
// ---------------------------------------------------------------------------------------------

/// A running SimpleSAMLphp IdP. Dropping it kills its whole process group and waits.
pub struct SimpleSamlPhp {
    /// `http://127.0.0.1:PORT` (no trailing slash)
    pub base_url: String,
    /// `http://127.0.0.1:PORT/saml2/idp/metadata.php`
    pub entity_id: String,
    /// `http://127.0.0.1:PORT/saml2/idp/SSOService.php` (Redirect and POST bindings)
    pub sso_url: String,
    /// `http://127.0.0.1:PORT/saml2/idp/SingleLogoutService.php`
    pub slo_url: String,
    /// The IdP's metadata, as served by `GET /saml2/idp/metadata.php`.
    pub metadata_xml: String,
    /// The IdP's signing (and only) certificate, PEM.
    pub idp_cert_pem: String,
    pub port: u16,
    // Declared before `dir`: killed before the temp dir is removed.
    process: ProcessGroup,
    dir: tempfile::TempDir,
}

impl SimpleSamlPhp {
    /// Starts the IdP and waits (up to 20 s) until its metadata URL answers 200.
    ///
    /// The IdP key pair comes from the `openssl` command. Everything lives in a fresh temp
    /// dir: config, metadata, keys, PHP sessions, `php.log` (the server's stdout+stderr) and
    /// `log/simplesamlphp.log`. The error message carries the tails of both logs.
    pub async fn start(sps: &[SpEntry], users: &[TestUser]) -> Result<SimpleSamlPhp, String> {
        check_installed()?;
        let dir = tempfile::Builder::new()
            .prefix("samlgate-ssp-")
            .tempdir()
            .map_err(|e| format!("cannot create temp dir for SimpleSAMLphp: {e}"))?;
        let root = dir.path().to_path_buf();
        for sub in [
            "config", "metadata", "cert", "data", "tmp", "log", "sessions",
        ] {
            fs::create_dir_all(root.join(sub)).map_err(|e| format!("mkdir {sub}: {e}"))?;
        }
        let (_, idp_cert_pem) = openssl_self_signed(&root.join("cert"), "idp", "test IdP")?;
        write_file(
            &root.join("config/authsources.php"),
            &authsources_php(users),
        )?;
        let mut sp_cert_paths = Vec::new();
        for (i, sp) in sps.iter().enumerate() {
            match &sp.certificate_pem {
                Some(pem) => {
                    let path = root.join(format!("cert/sp-{i}.crt"));
                    write_file(&path, pem)?;
                    sp_cert_paths.push(Some(path));
                }
                None => sp_cert_paths.push(None),
            }
        }
        write_file(
            &root.join("metadata/saml20-sp-remote.php"),
            &sp_remote_php(sps, &sp_cert_paths),
        )?;

        // A port picked by free_port() can be taken by someone else before php binds it:
        // retry with a new port when php says so.
        let mut last_err = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            let base_url = format!("http://127.0.0.1:{port}");
            let entity_id = format!("{base_url}/saml2/idp/metadata.php");
            write_file(&root.join("config/config.php"), &config_php(&root, port))?;
            write_file(
                &root.join("metadata/saml20-idp-hosted.php"),
                &idp_hosted_php(&entity_id, &root),
            )?;
            let mut process = ProcessGroup::spawn(&root, port)?;
            match wait_ready(&mut process, &root, port).await {
                Ok(metadata_xml) => {
                    return Ok(SimpleSamlPhp {
                        sso_url: format!("{base_url}/saml2/idp/SSOService.php"),
                        slo_url: format!("{base_url}/saml2/idp/SingleLogoutService.php"),
                        base_url,
                        entity_id,
                        metadata_xml,
                        idp_cert_pem,
                        port,
                        process,
                        dir,
                    });
                }
                Err((retry, msg)) => {
                    process.stop();
                    last_err = msg;
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(last_err)
    }

    /// PID of the `php -S` master process (also its process group ID).
    pub fn pid(&self) -> u32 {
        self.process.pid
    }

    /// The temp dir holding config, keys, sessions and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// PIDs of every live (non-zombie) process in the IdP's process group: the master and
    /// the `PHP_CLI_SERVER_WORKERS` workers.
    pub fn group_pids(&self) -> Vec<u32> {
        live_group_members(self.process.pid)
    }

    /// Last `lines` lines of `php.log` (server stdout/stderr) and of SimpleSAMLphp's log.
    pub fn log_tail(&self, lines: usize) -> String {
        logs_tail(self.dir.path(), lines)
    }
}

impl Drop for SimpleSamlPhp {
    fn drop(&mut self) {
        self.process.stop();
    }
}

/// The `php -S` master, leader of its own process group (its workers are in it too).
struct ProcessGroup {
    child: Option<Child>,
    pid: u32,
}

impl ProcessGroup {
    fn spawn(root: &Path, port: u16) -> Result<ProcessGroup, String> {
        let log_path = root.join("php.log");
        let log = fs::File::create(&log_path).map_err(|e| format!("create php.log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("dup php.log: {e}"))?;
        let mut cmd = Command::new("php");
        cmd.arg("-d")
            .arg("opcache.enable_cli=1")
            .arg("-S")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-t")
            .arg(SSP_WWW)
            .current_dir(root)
            .env("SIMPLESAMLPHP_CONFIG_DIR", root.join("config"))
            .env("PHP_CLI_SERVER_WORKERS", "2")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        {
            use std::os::unix::process::CommandExt as _;
            cmd.process_group(0);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run php: {e} ({NOT_INSTALLED})"))?;
        Ok(ProcessGroup {
            pid: child.id(),
            child: Some(child),
        })
    }

    /// SIGKILLs the whole group, reaps the master, and waits (up to 2 s) until no live
    /// process is left in the group. Idempotent.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: a plain syscall. The group ID is our child's PID; Linux does not hand that
        // number out again while the child is unreaped or any member of its group lives.
        #[allow(unsafe_code)]
        unsafe {
            kill(-(self.pid as i32), SIGKILL);
        }
        let _ = child.kill();
        let _ = child.wait();
        // The workers die asynchronously (and get reparented); wait until they are gone or
        // zombies.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !live_group_members(self.pid).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn wait_ready(
    process: &mut ProcessGroup,
    root: &Path,
    port: u16,
) -> Result<String, (bool, String)> {
    let url = format!("http://127.0.0.1:{port}/saml2/idp/metadata.php");
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| (false, format!("reqwest client: {e}")))?;
    let deadline = Instant::now() + START_TIMEOUT;
    let mut listening = false;
    loop {
        if let Some(child) = process.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                let tail = logs_tail(root, 40);
                let retry =
                    tail.contains("Address already in use") || tail.contains("Failed to listen");
                return Err((
                    retry,
                    format!(
                        "SimpleSAMLphp (php -S 127.0.0.1:{port}) exited with {status} before \
                         answering {url}\n{tail}"
                    ),
                ));
            }
        }
        // Probe only once php says it listens: if the port was taken meanwhile, the probe
        // could otherwise reach someone else's server.
        if !listening {
            let log = fs::read_to_string(root.join("php.log")).unwrap_or_default();
            if log.contains("Failed to listen") {
                return Err((
                    true,
                    format!("php -S could not bind 127.0.0.1:{port}: {log}"),
                ));
            }
            listening = log.contains("Development Server") && log.contains("started");
            if !listening {
                if Instant::now() >= deadline {
                    return Err((
                        false,
                        format!(
                            "php -S did not report listening on 127.0.0.1:{port} within \
                             {START_TIMEOUT:?}\n{}",
                            logs_tail(root, 40)
                        ),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        }
        let last = match client.get(&url).send().await {
            Ok(resp) => {
                // php -S answers only once it is up; from then on anything but the metadata
                // is a broken configuration (SimpleSAMLphp shows even a config syntax error
                // as an HTTP 200 error page), not a slow start: fail fast.
                let status = resp.status();
                let body = resp
                    .text()
                    .await
                    .map_err(|e| (false, format!("reading {url}: {e}")))?;
                if status == reqwest::StatusCode::OK && body.contains("EntityDescriptor") {
                    return Ok(body);
                }
                return Err((
                    false,
                    format!(
                        "SimpleSAMLphp answered {status} without metadata on {url}{}: {}\n{}",
                        ssp_error_summary(&body)
                            .map(|s| format!(" [{s}]"))
                            .unwrap_or_default(),
                        head(&body, 300),
                        logs_tail(root, 40)
                    ),
                ));
            }
            Err(e) => format!("{e}"),
        };
        if Instant::now() >= deadline {
            return Err((
                false,
                format!(
                    "SimpleSAMLphp did not answer 200 on {url} within {START_TIMEOUT:?} \
                     (last: {last})\n{}",
                    logs_tail(root, 40)
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const SIGKILL: i32 = 9;
extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

fn live_group_members(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ..." - comm may contain spaces/parens: split after ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() >= 3 && fields[2] == pgid.to_string() && fields[0] != "Z" {
            out.push(pid);
        }
    }
    out
}

fn check_installed() -> Result<(), String> {
    let php_ok = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join("php").is_file()))
        .unwrap_or(false);
    if !php_ok
        || !Path::new(SSP_WWW).join("saml2/idp/metadata.php").is_file()
        || !Path::new(SSP_STOCK_CONFIG).is_file()
    {
        return Err(NOT_INSTALLED.to_string());
    }
    // Debian's config.php require_once's this root:www-data 0640 file (the secret salt).
    if Path::new(SSP_SECRETS).exists() {
        fs::File::open(SSP_SECRETS).map_err(|e| {
            format!(
                "cannot read {SSP_SECRETS} ({e}), which {SSP_STOCK_CONFIG} requires: run the \
                 tests as root or as a member of group www-data"
            )
        })?;
    }
    Ok(())
}

fn write_file(path: &Path, contents: &str) -> Result<(), String> {
    let mut f = fs::File::create(path).map_err(|e| format!("create {}: {e}", path.display()))?;
    f.write_all(contents.as_bytes())
        .map_err(|e| format!("write {}: {e}", path.display()))
}

fn head(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn file_tail(path: &Path, lines: usize) -> String {
    match fs::read_to_string(path) {
        Ok(s) => {
            let all: Vec<&str> = s.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({e})"),
    }
}

fn logs_tail(root: &Path, lines: usize) -> String {
    format!(
        "--- php.log (tail) ---\n{}\n--- log/simplesamlphp.log (tail) ---\n{}",
        file_tail(&root.join("php.log"), lines),
        file_tail(&root.join("log/simplesamlphp.log"), lines)
    )
}

/// Makes an RSA-2048 self-signed certificate with the `openssl` command in `dir`
/// (`NAME.key`, `NAME.crt`); returns (private key PEM, certificate PEM).
pub fn openssl_self_signed(dir: &Path, name: &str, cn: &str) -> Result<(String, String), String> {
    let key = dir.join(format!("{name}.key"));
    let crt = dir.join(format!("{name}.crt"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-sha256", "-nodes", "-days", "3650",
        ])
        .arg("-subj")
        .arg(format!("/CN={cn}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run openssl (package openssl): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl req failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let key_pem = fs::read_to_string(&key).map_err(|e| format!("read {}: {e}", key.display()))?;
    let crt_pem = fs::read_to_string(&crt).map_err(|e| format!("read {}: {e}", crt.display()))?;
    Ok((key_pem, crt_pem))
}

/// A fresh RSA-2048 key pair and self-signed certificate (e.g. for an SP):
/// (private key PEM, certificate PEM). Uses the `openssl` command.
pub fn generate_key_pair(cn: &str) -> Result<(String, String), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    openssl_self_signed(dir.path(), "pair", cn)
}

/// A port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

// ---------------------------------------------------------------------------------------------
// Config files
// ---------------------------------------------------------------------------------------------

/// A PHP single-quoted string literal.
fn php_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn php_list(items: &[&str]) -> String {
    let inner: Vec<String> = items.iter().map(|s| php_str(s)).collect();
    format!("[{}]", inner.join(", "))
}

fn php_bool(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

fn dir_str(p: &Path) -> String {
    let mut s = p.display().to_string();
    if !s.ends_with('/') {
        s.push('/');
    }
    s
}

fn config_php(root: &Path, port: u16) -> String {
    format!(
        r#"<?php
// Generated by samlgate's tests/support/simplesamlphp.rs
require '{stock}';
$config['baseurlpath'] = {base};
$config['certdir'] = {cert};
$config['metadatadir'] = {meta};
$config['datadir'] = {data};
$config['tempdir'] = {tmp};
$config['loggingdir'] = {log};
$config['logging.handler'] = 'file';
$config['logging.logfile'] = 'simplesamlphp.log';
$config['logging.level'] = SimpleSAML\Logger::INFO;
$config['session.phpsession.savepath'] = {sessions};
$config['store.type'] = 'phpsession';
$config['enable.saml20-idp'] = true;
$config['module.enable'] = ['exampleauth' => true, 'core' => true, 'saml' => true, 'admin' => true];
// Plain http on loopback: SimpleSAMLphp refuses to set Secure cookies without https, and
// SameSite=None without Secure would be dropped by browsers, so leave SameSite unset (Lax).
$config['session.cookie.secure'] = false;
$config['session.cookie.samesite'] = null;
$config['errorreporting'] = false;
$config['showerrors'] = true;
$config['timezone'] = 'UTC';
$config['metadata.sources'] = [['type' => 'flatfile']];
"#,
        stock = SSP_STOCK_CONFIG,
        base = php_str(&format!("http://127.0.0.1:{port}/")),
        cert = php_str(&dir_str(&root.join("cert"))),
        meta = php_str(&dir_str(&root.join("metadata"))),
        data = php_str(&dir_str(&root.join("data"))),
        tmp = php_str(&dir_str(&root.join("tmp"))),
        log = php_str(&dir_str(&root.join("log"))),
        sessions = php_str(&root.join("sessions").display().to_string()),
    )
}

fn authsources_php(users: &[TestUser]) -> String {
    let mut s = String::from(
        "<?php\n// Generated by samlgate's tests/support/simplesamlphp.rs\n$config = [\n    'admin' => ['core:AdminPassword'],\n    'example-userpass' => [\n        'exampleauth:UserPass',\n",
    );
    for u in users {
        let _ = writeln!(
            s,
            "        {} => ['uid' => {}, 'mail' => {}, 'displayName' => {}, 'groups' => {}],",
            php_str(&format!("{}:{}", u.username, u.password)),
            php_list(&[u.uid]),
            php_list(&[u.mail]),
            php_list(&[u.display_name]),
            php_list(u.groups),
        );
    }
    s.push_str("    ],\n];\n");
    s
}

fn idp_hosted_php(entity_id: &str, root: &Path) -> String {
    format!(
        r#"<?php
// Generated by samlgate's tests/support/simplesamlphp.rs
$metadata[{entity}] = [
    'host' => '__DEFAULT__',
    'privatekey' => {key},
    'certificate' => {crt},
    'auth' => 'example-userpass',
    'saml20.sign.response' => true,
    'saml20.sign.assertion' => true,
    'signature.algorithm' => 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
    'NameIDFormat' => '{persistent}',
    'simplesaml.nameidattribute' => 'uid',
    'attributes.NameFormat' => 'urn:oasis:names:tc:SAML:2.0:attrname-format:basic',
];
"#,
        entity = php_str(entity_id),
        key = php_str(&root.join("cert/idp.key").display().to_string()),
        crt = php_str(&root.join("cert/idp.crt").display().to_string()),
        persistent = NAMEID_PERSISTENT,
    )
}

fn sp_remote_php(sps: &[SpEntry], cert_paths: &[Option<PathBuf>]) -> String {
    let mut s = String::from("<?php\n// Generated by samlgate's tests/support/simplesamlphp.rs\n");
    for (sp, cert) in sps.iter().zip(cert_paths) {
        let _ = writeln!(s, "$metadata[{}] = [", php_str(&sp.entity_id));
        let _ = writeln!(
            s,
            "    'AssertionConsumerService' => [['Binding' => '{BINDING_POST}', 'Location' => {}, 'index' => 0]],",
            php_str(&sp.acs_url)
        );
        if let (Some(slo), true) = (&sp.slo_url, sp.slo_post_only) {
            let _ = writeln!(
                s,
                "    'SingleLogoutService' => [['Binding' => '{BINDING_POST}', 'Location' => {0}]],",
                php_str(slo)
            );
        } else if let Some(slo) = &sp.slo_url {
            let _ = writeln!(
                s,
                "    'SingleLogoutService' => [['Binding' => '{BINDING_REDIRECT}', 'Location' => {0}], ['Binding' => '{BINDING_POST}', 'Location' => {0}]],",
                php_str(slo)
            );
        }
        if let Some(path) = cert {
            let _ = writeln!(
                s,
                "    'certificate' => {},",
                php_str(&path.display().to_string())
            );
        }
        let _ = writeln!(
            s,
            "    'saml20.sign.response' => {},",
            php_bool(sp.sign_response)
        );
        let _ = writeln!(
            s,
            "    'saml20.sign.assertion' => {},",
            php_bool(sp.sign_assertion)
        );
        let _ = writeln!(
            s,
            "    'assertion.encryption' => {},",
            php_bool(sp.encrypt_assertion)
        );
        let _ = writeln!(
            s,
            "    'validate.authnrequest' => {},",
            php_bool(sp.validate_authnrequest)
        );
        let _ = writeln!(s, "    'sign.logout' => {},", php_bool(sp.sign_logout));
        let _ = writeln!(s, "    'NameIDFormat' => '{NAMEID_PERSISTENT}',");
        let _ = writeln!(s, "    'simplesaml.nameidattribute' => 'uid',");
        let _ = writeln!(
            s,
            "    'attributes' => ['uid', 'mail', 'displayName', 'groups'],"
        );
        s.push_str("];\n");
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Driving a login
// ---------------------------------------------------------------------------------------------

/// The auto-submit form the IdP returns after a successful login.
#[derive(Clone, Debug)]
pub struct PostForm {
    /// The form's `action`: the SP's ACS URL.
    pub action: String,
    /// Base64 of the `samlp:Response` XML (HTML-unescaped).
    pub saml_response: String,
    pub relay_state: Option<String>,
}

impl PostForm {
    /// The decoded `samlp:Response` XML.
    pub fn response_xml(&self) -> Result<String, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.saml_response.as_bytes())
            .map_err(|e| format!("SAMLResponse is not base64: {e}"))?;
        String::from_utf8(bytes).map_err(|e| format!("SAMLResponse is not UTF-8: {e}"))
    }

    /// POSTs the form (SAMLResponse, RelayState) to its action, as the browser's auto-submit
    /// would. The response is returned as-is (redirects are not followed by a
    /// `redirect(Policy::none())` client).
    pub async fn submit(&self, client: &reqwest::Client) -> Result<reqwest::Response, String> {
        let mut fields = vec![("SAMLResponse", self.saml_response.as_str())];
        if let Some(rs) = &self.relay_state {
            fields.push(("RelayState", rs.as_str()));
        }
        client
            .post(&self.action)
            .form(&fields)
            .send()
            .await
            .map_err(|e| format!("POST {}: {e}", self.action))
    }
}

/// A client fit for [`drive_login`]: cookie store, no redirect following, no proxy.
pub fn login_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}

/// Follows redirects by hand from `start` (the gateway's protected URL, or an SSO URL with a
/// SAMLRequest) through SSOService → `loginuserpass.php`, posts the user's credentials with
/// the page's AuthState, and returns the auto-submit form (values HTML-unescaped). An
/// intermediate page with an auto-submit `SAMLRequest` form (HTTP-POST binding) is
/// submitted too. When the IdP already has a session for this client, no login form shows
/// up and the form comes straight back.
///
/// `client` must have a cookie store and `redirect(Policy::none())` (see [`login_client`]).
/// Errors on a rejected password (the form is shown again) and on any other page (with its
/// URL, status and the first 300 characters of the body).
pub async fn drive_login(
    client: &reqwest::Client,
    start: &str,
    user: &TestUser,
) -> Result<PostForm, String> {
    let mut url = url::Url::parse(start).map_err(|e| format!("bad start URL {start:?}: {e}"))?;
    let mut post: Option<Vec<(String, String)>> = None;
    let mut submitted_password = false;
    let mut trail: Vec<String> = Vec::new();
    for _ in 0..30 {
        let method = if post.is_some() { "POST" } else { "GET" };
        trail.push(format!("{method} {}", head(url.as_str(), 120)));
        let req = match post.take() {
            Some(fields) => client.post(url.clone()).form(&fields),
            None => client.get(url.clone()),
        };
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let status = resp.status();
        if status.is_redirection() {
            let loc = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| format!("{method} {url}: {status} without a Location header"))?
                .to_string();
            url = url
                .join(&loc)
                .map_err(|e| format!("{method} {url}: bad Location {loc:?}: {e}"))?;
            continue;
        }
        let body = resp
            .text()
            .await
            .map_err(|e| format!("{method} {url}: reading body: {e}"))?;
        let unexpected = |what: &str| {
            format!(
                "drive_login({}): {what}: {method} {url} answered {status}{}; body starts: {}\n(trail: {})",
                user.username,
                ssp_error_summary(&body)
                    .map(|s| format!(" [{s}]"))
                    .unwrap_or_default(),
                head(&body, 300),
                trail.join(" -> ")
            )
        };
        if !status.is_success() {
            return Err(unexpected("unexpected status"));
        }
        let forms = parse_forms(&body);
        if let Some(f) = forms.iter().find(|f| f.value("SAMLResponse").is_some()) {
            let action = url
                .join(&f.action)
                .map_err(|e| format!("bad form action {:?}: {e}", f.action))?;
            return Ok(PostForm {
                action: action.to_string(),
                saml_response: f.value("SAMLResponse").unwrap_or_default().to_string(),
                relay_state: f.value("RelayState").map(str::to_string),
            });
        }
        if let Some(f) = forms.iter().find(|f| f.has_field("password")) {
            if submitted_password {
                return Err(format!(
                    "drive_login: SimpleSAMLphp rejected username {:?} with password {:?}: the \
                     login form came back{} ({method} {url}, {status})",
                    user.username,
                    user.password,
                    if body.contains("WRONGUSERPASS") || body.contains("ncorrect username") {
                        " with an \"incorrect username or password\" error"
                    } else {
                        ""
                    }
                ));
            }
            let auth_state = f
                .value("AuthState")
                .ok_or_else(|| unexpected("login form without an AuthState field"))?
                .to_string();
            url = url
                .join(if f.action.is_empty() { "?" } else { &f.action })
                .map_err(|e| format!("bad login form action {:?}: {e}", f.action))?;
            post = Some(vec![
                ("username".into(), user.username.into()),
                ("password".into(), user.password.into()),
                ("AuthState".into(), auth_state),
            ]);
            submitted_password = true;
            continue;
        }
        if let Some(f) = forms.iter().find(|f| f.value("SAMLRequest").is_some()) {
            url = url
                .join(&f.action)
                .map_err(|e| format!("bad form action {:?}: {e}", f.action))?;
            post = Some(f.fields.clone());
            continue;
        }
        return Err(unexpected("neither a login form nor a SAMLResponse form"));
    }
    Err(format!(
        "drive_login({}): more than 30 steps (redirect loop?): {}",
        user.username,
        trail.join(" -> ")
    ))
}

/// Pulls the useful part out of a SimpleSAMLphp error page (served with HTTP 200!): its
/// title, the exception line from "Debug information" and the track ID (grep the log for it).
fn ssp_error_summary(body: &str) -> Option<String> {
    if !body.contains("trackid") && !body.contains("SimpleSAML\\Error") {
        return None;
    }
    let mut parts = Vec::new();
    if let Some(t) = first_element_text(body, "<h2", "h2") {
        parts.push(format!("SimpleSAMLphp error page: {t}"));
    }
    if let Some(t) = first_element_text(body, "<p style=\"margin: 1px\"", "p") {
        parts.push(head(&t, 400));
    }
    for line in body
        .lines()
        .filter(|l| l.trim_start().starts_with("Caused by: "))
    {
        parts.push(html_unescape(head(line.trim(), 400).as_str()));
    }
    if let Some(t) = first_element_text(body, "<pre id=\"trackid\"", "pre") {
        parts.push(format!("trackid {t}"));
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join(" | "))
    }
}

/// Text of the first element whose start tag begins with `opening` (e.g. `<h2`).
fn first_element_text(body: &str, opening: &str, tag: &str) -> Option<String> {
    let lower = body.to_ascii_lowercase();
    let open = lower.find(&opening.to_ascii_lowercase())?;
    let start = open + lower[open..].find('>')? + 1;
    let end = start + lower[start..].find(&format!("</{tag}"))?;
    let text = strip_tags(&body[start..end]);
    Some(html_unescape(
        text.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .as_str(),
    ))
}

fn strip_tags(s: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Minimal HTML form parsing
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct HtmlForm {
    action: String,
    /// (name, value) of every named `<input>` (value HTML-unescaped, "" if absent).
    fields: Vec<(String, String)>,
}

impl HtmlForm {
    fn value(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    fn has_field(&self, name: &str) -> bool {
        self.fields.iter().any(|(n, _)| n == name)
    }
}

fn parse_forms(html: &str) -> Vec<HtmlForm> {
    let lower = html.to_ascii_lowercase();
    let mut forms = Vec::new();
    let mut pos = 0;
    while let Some(rel) = lower[pos..].find("<form") {
        let start = pos + rel;
        let Some(tag_end) = find_tag_end(html, start) else {
            break;
        };
        let attrs = parse_attrs(&html[start + 5..tag_end]);
        let close = lower[tag_end..]
            .find("</form")
            .map(|i| tag_end + i)
            .unwrap_or(html.len());
        let inner = &html[tag_end..close];
        let inner_lower = &lower[tag_end..close];
        let mut fields = Vec::new();
        let mut ip = 0;
        while let Some(r) = inner_lower[ip..].find("<input") {
            let s = ip + r;
            let Some(e) = find_tag_end(inner, s) else {
                break;
            };
            let a = parse_attrs(&inner[s + 6..e]);
            if let Some(name) = attr(&a, "name") {
                fields.push((
                    name.to_string(),
                    attr(&a, "value").unwrap_or("").to_string(),
                ));
            }
            ip = e;
        }
        forms.push(HtmlForm {
            action: attr(&attrs, "action").unwrap_or("").to_string(),
            fields,
        });
        pos = close.max(tag_end);
        if pos >= html.len() {
            break;
        }
    }
    forms
}

fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Index just past the `>` closing the tag that starts at `start`, honouring quotes.
fn find_tag_end(html: &str, start: usize) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in html[start..].char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"') | (None, '\'') => quote = Some(c),
            (None, '>') => return Some(start + i + 1),
            _ => {}
        }
    }
    None
}

/// Attributes of a tag body (`name="v" name='v' name=v name`), values HTML-unescaped.
fn parse_attrs(s: &str) -> Vec<(String, String)> {
    let s = s.trim_end_matches('>').trim_end_matches('/');
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        while i < chars.len() && (chars[i].is_whitespace() || chars[i] == '/') {
            i += 1;
        }
        let ns = i;
        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '=' && chars[i] != '/' {
            i += 1;
        }
        let name: String = chars[ns..i].iter().collect();
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < chars.len() && chars[i] == '=' {
            i += 1;
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            if i < chars.len() && (chars[i] == '"' || chars[i] == '\'') {
                let q = chars[i];
                i += 1;
                let vs = i;
                while i < chars.len() && chars[i] != q {
                    i += 1;
                }
                value = chars[vs..i].iter().collect();
                i += 1;
            } else {
                let vs = i;
                while i < chars.len() && !chars[i].is_whitespace() {
                    i += 1;
                }
                value = chars[vs..i].iter().collect();
            }
        }
        if !name.is_empty() {
            out.push((name, html_unescape(&value)));
        }
    }
    out
}

/// Undoes `htmlspecialchars` (and numeric character references).
pub fn html_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest[..rest.len().min(12)].find(';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let ent = &rest[1..semi];
        let decoded = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ if ent.starts_with("#x") || ent.starts_with("#X") => {
                u32::from_str_radix(&ent[2..], 16)
                    .ok()
                    .and_then(char::from_u32)
            }
            _ if ent.starts_with('#') => ent[1..].parse::<u32>().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------------------------
// SP-initiated AuthnRequest (HTTP-Redirect binding)
// ---------------------------------------------------------------------------------------------

/// An SP-initiated SSO URL for `idp`: a minimal unsigned AuthnRequest (HTTP-POST ACS binding,
/// persistent NameIDPolicy), raw-deflated, base64'd and URL-encoded as `SAMLRequest`
/// (HTTP-Redirect binding), plus `RelayState` when given. `request_id` must be an XML NCName
/// (start it with a letter or `_`); the Response's `InResponseTo` will carry it.
pub fn authn_request_url(
    idp: &SimpleSamlPhp,
    sp_entity_id: &str,
    acs_url: &str,
    request_id: &str,
    relay_state: Option<&str>,
) -> String {
    let xml = format!(
        concat!(
            r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" "#,
            r#"xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" "#,
            r#"IssueInstant="{now}" Destination="{dest}" AssertionConsumerServiceURL="{acs}" "#,
            r#"ProtocolBinding="{binding}">"#,
            r#"<saml:Issuer>{issuer}</saml:Issuer>"#,
            r#"<samlp:NameIDPolicy Format="{fmt}" AllowCreate="true"/>"#,
            r#"</samlp:AuthnRequest>"#
        ),
        id = xml_escape(request_id),
        now = utc_now_saml(),
        dest = xml_escape(&idp.sso_url),
        acs = xml_escape(acs_url),
        binding = BINDING_POST,
        issuer = xml_escape(sp_entity_id),
        fmt = NAMEID_PERSISTENT,
    );
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(xml.as_bytes()).expect("deflate");
    let deflated = enc.finish().expect("deflate");
    let b64 = base64::engine::general_purpose::STANDARD.encode(deflated);
    let mut url = url::Url::parse(&idp.sso_url).expect("sso_url");
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("SAMLRequest", &b64);
        if let Some(rs) = relay_state {
            q.append_pair("RelayState", rs);
        }
    }
    url.to_string()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// Now as `YYYY-MM-DDThh:mm:ssZ`.
fn utc_now_saml() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        tod / 3600,
        (tod % 3600) / 60,
        tod % 60
    )
}
