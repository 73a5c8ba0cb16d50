//! Test support: a real OpenLDAP server (Debian's `slapd`, `/usr/sbin/slapd`) run as a child
//! process from a temp dir of its own, with a generated `slapd.conf` (mdb backend, the
//! memberof overlay), a small directory of users and groups loaded with `ldapadd`, on free
//! loopback ports: plain `ldap://` (StartTLS offered) and `ldaps://`, both with a server
//! certificate signed by a CA generated for this run ([`Slapd::ca_pem`]). Stopped by PID when
//! the value is dropped (also while unwinding from a panic), or earlier with [`Slapd::stop`]
//! (the "directory is down" tests).
//!
//! Include with `#[path = "support/slapd.rs"] mod slapd;`. Needs the Debian packages `slapd`
//! and `ldap-utils` (`scripts/install-deps.sh test`); without them [`Slapd::start`] panics,
//! never skips.
//!
//! The directory (suffix `dc=example,dc=test`, passwords in clear: slapd compares them):
//!
//! | entry | password | groups |
//! |---|---|---|
//! | `uid=alice,ou=people` | `alice-secret` | engineers, admins |
//! | `uid=bob,ou=people` | `bob-secret` | engineers |
//! | `uid=carol,ou=people` | `carol-secret` | — |
//! | `uid=x*y,ou=people` | `star-secret` | — (a name with a filter metacharacter) |
//! | `uid=dup1` and `uid=dup2` (both `cn: Twin`) | `twin-secret` | — |
//! | `cn=samlgate,ou=services` | [`SERVICE_PASSWORD`] | the search-then-bind account |
//!
//! `allow bind_anon_dn` makes this slapd answer a bind with a DN and an empty password with
//! success (an "unauthenticated bind", as Active Directory does by default), so the tests can
//! show that samlgate never counts one as a sign-in.
#![allow(dead_code)]

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SLAPD_BIN: &str = "/usr/sbin/slapd";
pub const LDAPADD_BIN: &str = "/usr/bin/ldapadd";
pub const SUFFIX: &str = "dc=example,dc=test";
pub const PEOPLE: &str = "ou=people,dc=example,dc=test";
pub const GROUPS: &str = "ou=groups,dc=example,dc=test";
pub const SERVICE_DN: &str = "cn=samlgate,ou=services,dc=example,dc=test";
pub const SERVICE_PASSWORD: &str = "service-secret";
const ROOT_DN: &str = "cn=admin,dc=example,dc=test";
const ROOT_PASSWORD: &str = "root-secret";
const START_TIMEOUT: Duration = Duration::from_secs(15);
const NOT_INSTALLED: &str =
    "install it with `scripts/install-deps.sh test` (Debian: slapd ldap-utils)";

/// A running slapd, stopped on drop.
pub struct Slapd {
    child: Option<Child>,
    pub port: u16,
    pub tls_port: u16,
    ca_pem: String,
    log: PathBuf,
    // Last field: removed only after `drop` has stopped the process writing into it.
    dir: tempfile::TempDir,
}

/// A port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

impl Slapd {
    /// Starts slapd and loads the directory. Panics (with slapd's log) when it cannot.
    pub fn start() -> Slapd {
        for bin in [SLAPD_BIN, LDAPADD_BIN] {
            assert!(Path::new(bin).exists(), "{bin} is missing: {NOT_INSTALLED}");
        }
        let mut last = String::new();
        for _ in 0..5 {
            match Slapd::try_start() {
                Ok(s) => return s,
                Err(why) => last = why,
            }
        }
        panic!("slapd did not start: {last}")
    }

    fn try_start() -> Result<Slapd, String> {
        let dir = tempfile::Builder::new()
            .prefix("slapd-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let d = dir.path();
        fs::create_dir(d.join("db")).map_err(|e| e.to_string())?;
        let ca = tls::Ca::new();
        let (cert_pem, key_pem) = ca.issue_server("127.0.0.1");
        fs::write(d.join("ca.pem"), ca.cert_pem()).map_err(|e| e.to_string())?;
        fs::write(d.join("server.pem"), cert_pem).map_err(|e| e.to_string())?;
        fs::write(d.join("server.key"), key_pem).map_err(|e| e.to_string())?;
        fs::write(d.join("slapd.conf"), config(d)).map_err(|e| e.to_string())?;
        let (port, tls_port) = (free_port(), free_port());
        let log = d.join("slapd.log");
        let log_file = fs::File::create(&log).map_err(|e| e.to_string())?;
        let urls = format!("ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/");
        // `-d 0`: stay in the foreground (our child, stopped by PID) and log only errors.
        let child = Command::new(SLAPD_BIN)
            .args([
                "-f",
                &d.join("slapd.conf").to_string_lossy(),
                "-h",
                &urls,
                "-d",
                "0",
            ])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("spawn {SLAPD_BIN}: {e} ({NOT_INSTALLED})"))?;
        let mut slapd = Slapd {
            child: Some(child),
            port,
            tls_port,
            ca_pem: ca.cert_pem(),
            log,
            dir,
        };
        slapd.wait_ready()?;
        slapd.load_directory()?;
        Ok(slapd)
    }

    /// Ready: both ports accept connections while our child still runs.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Err(format!("slapd exited ({status}): {}", self.log_text()));
            }
            let up = |p| TcpStream::connect(("127.0.0.1", p)).is_ok();
            if up(self.port) && up(self.tls_port) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "slapd not listening after {START_TIMEOUT:?}: {}",
            self.log_text()
        ))
    }

    fn load_directory(&self) -> Result<(), String> {
        let ldif = self.dir.path().join("data.ldif");
        fs::write(&ldif, DIRECTORY).map_err(|e| e.to_string())?;
        let out = Command::new(LDAPADD_BIN)
            .args([
                "-x",
                "-H",
                &self.url(),
                "-D",
                ROOT_DN,
                "-w",
                ROOT_PASSWORD,
                "-f",
            ])
            .arg(&ldif)
            .output()
            .map_err(|e| format!("ldapadd: {e} ({NOT_INSTALLED})"))?;
        if !out.status.success() {
            return Err(format!(
                "ldapadd failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// `ldap://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:<tls_port>`.
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port)
    }

    /// The PEM of the CA that signed the server's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops slapd now (SIGTERM, then SIGKILL after 5 s) and waits for it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        let pid = child.id() as i32;
        for (signal, wait) in [
            (libc::SIGTERM, Duration::from_secs(5)),
            (libc::SIGKILL, Duration::MAX),
        ] {
            // SAFETY: a plain syscall on our own unreaped child's process group, so Linux
            // cannot have handed that number to anyone else.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(-pid, signal);
            }
            let deadline = Instant::now().checked_add(wait);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                if deadline.is_some_and(|d| Instant::now() > d) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config(d: &Path) -> String {
    let p = |name: &str| d.join(name).display().to_string();
    format!(
        "include /etc/ldap/schema/core.schema\n\
         include /etc/ldap/schema/cosine.schema\n\
         include /etc/ldap/schema/inetorgperson.schema\n\
         modulepath /usr/lib/ldap\n\
         moduleload back_mdb\n\
         moduleload memberof\n\
         pidfile {pid}\n\
         argsfile {args}\n\
         allow bind_anon_dn\n\
         TLSCACertificateFile {ca}\n\
         TLSCertificateFile {cert}\n\
         TLSCertificateKeyFile {key}\n\
         database mdb\n\
         suffix \"{SUFFIX}\"\n\
         rootdn \"{ROOT_DN}\"\n\
         rootpw {ROOT_PASSWORD}\n\
         directory {db}\n\
         maxsize 10485760\n\
         overlay memberof\n\
         access to attrs=userPassword by self =xw by anonymous auth by * none\n\
         access to * by dn.exact=\"{SERVICE_DN}\" read by users read by * none\n",
        pid = p("slapd.pid"),
        args = p("slapd.args"),
        ca = p("ca.pem"),
        cert = p("server.pem"),
        key = p("server.key"),
        db = p("db"),
    )
}

const DIRECTORY: &str = "\
dn: dc=example,dc=test
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,dc=example,dc=test
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=example,dc=test
objectClass: organizationalUnit
ou: groups

dn: ou=services,dc=example,dc=test
objectClass: organizationalUnit
ou: services

dn: cn=samlgate,ou=services,dc=example,dc=test
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: samlgate
userPassword: service-secret

dn: uid=alice,ou=people,dc=example,dc=test
objectClass: inetOrgPerson
uid: alice
cn: Alice Example
sn: Example
mail: alice@example.test
userPassword: alice-secret

dn: uid=bob,ou=people,dc=example,dc=test
objectClass: inetOrgPerson
uid: bob
cn: Bob Example
sn: Example
mail: bob@example.test
userPassword: bob-secret

dn: uid=carol,ou=people,dc=example,dc=test
objectClass: inetOrgPerson
uid: carol
cn: Carol Example
sn: Example
userPassword: carol-secret

dn: uid=x\\2ay,ou=people,dc=example,dc=test
objectClass: inetOrgPerson
uid: x*y
cn: Star Name
sn: Star
userPassword: star-secret

dn: uid=dup1,ou=people,dc=example,dc=test
objectClass: inetOrgPerson
uid: dup1
cn: Twin
sn: Twin
userPassword: twin-secret

dn: uid=dup2,ou=people,dc=example,dc=test
objectClass: inetOrgPerson
uid: dup2
cn: Twin
sn: Twin
userPassword: twin-secret

dn: cn=engineers,ou=groups,dc=example,dc=test
objectClass: groupOfNames
cn: engineers
member: uid=alice,ou=people,dc=example,dc=test
member: uid=bob,ou=people,dc=example,dc=test

dn: cn=admins,ou=groups,dc=example,dc=test
objectClass: groupOfNames
cn: admins
member: uid=alice,ou=people,dc=example,dc=test
";

/// A throwaway CA and the server certificates it signs (openssl).
pub mod tls {
    use openssl::asn1::Asn1Time;
    use openssl::bn::{BigNum, MsbOption};
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};
    use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
    use openssl::x509::{X509NameBuilder, X509};

    pub struct Ca {
        key: PKey<Private>,
        cert: X509,
    }

    fn new_key() -> PKey<Private> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
    }

    fn builder(cn: &str, key: &PKey<Private>) -> openssl::x509::X509Builder {
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", cn).unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        let mut serial = BigNum::new().unwrap();
        serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
        b.set_serial_number(&serial.to_asn1_integer().unwrap())
            .unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_pubkey(key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
            .unwrap();
        b
    }

    impl Ca {
        pub fn new() -> Ca {
            let key = new_key();
            let mut b = builder("samlgate test LDAP CA", &key);
            let subject = {
                let mut n = X509NameBuilder::new().unwrap();
                n.append_entry_by_text("CN", "samlgate test LDAP CA")
                    .unwrap();
                n.build()
            };
            b.set_issuer_name(&subject).unwrap();
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .build()
                    .unwrap(),
            )
            .unwrap();
            b.sign(&key, MessageDigest::sha256()).unwrap();
            Ca {
                key,
                cert: b.build(),
            }
        }

        pub fn cert_pem(&self) -> String {
            String::from_utf8(self.cert.to_pem().unwrap()).unwrap()
        }

        /// A server certificate for `ip` (as an IP SAN), and its key, both PEM.
        pub fn issue_server(&self, ip: &str) -> (String, String) {
            let key = new_key();
            let mut b = builder(ip, &key);
            b.set_issuer_name(self.cert.subject_name()).unwrap();
            let san = SubjectAlternativeName::new()
                .ip(ip)
                .build(&b.x509v3_context(Some(&self.cert), None))
                .unwrap();
            b.append_extension(san).unwrap();
            b.sign(&self.key, MessageDigest::sha256()).unwrap();
            let cert = String::from_utf8(b.build().to_pem().unwrap()).unwrap();
            let key = String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap();
            (cert, key)
        }
    }
}
