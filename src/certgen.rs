//! Key pairs and self-signed certificates (openssl crate): the `samlgate gen-cert` command
//! (an SP signing pair and a TLS pair written to a directory, keys with mode 0600, never
//! overwriting without `--force`), and the throw-away keys of the dev IdP and the demo.
//!
//! Generation ([`self_signed`]) is pure apart from the random numbers; only [`write_set`]
//! touches the file system. Nothing in the gateway's request path uses this module.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName, SubjectKeyIdentifier,
};
use openssl::x509::{X509NameBuilder, X509};

/// What a certificate is for: decides key usage and extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// SAML signing and encryption (digitalSignature, keyEncipherment; no EKU).
    Saml,
    /// A TLS server (digitalSignature, keyEncipherment; EKU serverAuth; SANs).
    TlsServer,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct CertSpec {
    pub common_name: String,
    pub rsa_bits: u32,
    pub days: u32,
    pub purpose: Purpose,
    /// Subject alternative names: IP addresses become `IP:`, anything else `DNS:`.
    pub san: Vec<String>,
}

/// A private key and its self-signed certificate.
pub struct KeyPair {
    pub key: PKey<Private>,
    pub cert: X509,
}

impl KeyPair {
    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn key_pem(&self) -> Result<String, String> {
        let pem = self
            .key
            .private_key_to_pem_pkcs8()
            .map_err(|e| format!("cannot encode the private key: {e}"))?;
        String::from_utf8(pem).map_err(|e| e.to_string())
    }

    /// PKCS#1 `RSAPrivateKey` DER: what samael's `Crypto::sign_xml` (libxmlsec1) loads.
    pub fn key_pkcs1_der(&self) -> Result<Vec<u8>, String> {
        self.key
            .rsa()
            .and_then(|r| r.private_key_to_der())
            .map_err(|e| format!("the key is not an RSA key: {e}"))
    }

    pub fn cert_pem(&self) -> Result<String, String> {
        let pem = self
            .cert
            .to_pem()
            .map_err(|e| format!("cannot encode the certificate: {e}"))?;
        String::from_utf8(pem).map_err(|e| e.to_string())
    }

    pub fn cert_der(&self) -> Result<Vec<u8>, String> {
        self.cert
            .to_der()
            .map_err(|e| format!("cannot encode the certificate: {e}"))
    }

    /// Loads a PEM private key (PKCS#1 or PKCS#8, RSA) and a PEM certificate, and checks
    /// that they belong together.
    pub fn from_pem(key_pem: &[u8], cert_pem: &[u8]) -> Result<KeyPair, String> {
        let key = PKey::private_key_from_pem(key_pem)
            .map_err(|e| format!("not a PEM private key: {e}"))?;
        if key.rsa().is_err() {
            return Err("the private key is not an RSA key".into());
        }
        let cert = X509::from_pem(cert_pem).map_err(|e| format!("not a PEM certificate: {e}"))?;
        let cert_key = cert
            .public_key()
            .map_err(|e| format!("certificate without a usable public key: {e}"))?;
        if !key.public_eq(&cert_key) {
            return Err("the certificate does not belong to the private key".into());
        }
        Ok(KeyPair { key, cert })
    }
}

fn ssl(what: &'static str) -> impl Fn(openssl::error::ErrorStack) -> String {
    move |e| format!("{what}: {e}")
}

/// Generates an RSA key and a self-signed sha256 X.509 v3 certificate, valid from one hour
/// ago (small clock differences) for `days` days.
pub fn self_signed(spec: &CertSpec) -> Result<KeyPair, String> {
    if spec.common_name.trim().is_empty() {
        return Err("the common name must not be empty".into());
    }
    if !(2048..=8192).contains(&spec.rsa_bits) {
        return Err(format!(
            "RSA key size {} is outside 2048..=8192",
            spec.rsa_bits
        ));
    }
    if spec.days == 0 {
        return Err("the validity must be at least one day".into());
    }
    let rsa = Rsa::generate(spec.rsa_bits).map_err(ssl("RSA key generation"))?;
    let key = PKey::from_rsa(rsa).map_err(ssl("RSA key"))?;

    let mut name = X509NameBuilder::new().map_err(ssl("subject"))?;
    name.append_entry_by_text("CN", &spec.common_name)
        .map_err(ssl("subject CN"))?;
    let name = name.build();

    let mut serial_bytes = [0u8; 16];
    openssl::rand::rand_bytes(&mut serial_bytes).map_err(ssl("random serial"))?;
    serial_bytes[0] &= 0x7f; // positive
    let serial = BigNum::from_slice(&serial_bytes)
        .and_then(|b| Asn1Integer::from_bn(&b))
        .map_err(ssl("serial"))?;

    let now = chrono::Utc::now().timestamp();
    let mut b = X509::builder().map_err(ssl("certificate"))?;
    b.set_version(2).map_err(ssl("version"))?;
    b.set_serial_number(&serial).map_err(ssl("serial"))?;
    b.set_subject_name(&name).map_err(ssl("subject"))?;
    b.set_issuer_name(&name).map_err(ssl("issuer"))?;
    b.set_pubkey(&key).map_err(ssl("public key"))?;
    let not_before = Asn1Time::from_unix(now - 3600).map_err(ssl("notBefore"))?;
    let not_after = Asn1Time::days_from_now(spec.days).map_err(ssl("notAfter"))?;
    b.set_not_before(&not_before).map_err(ssl("notBefore"))?;
    b.set_not_after(&not_after).map_err(ssl("notAfter"))?;
    b.append_extension(
        BasicConstraints::new()
            .critical()
            .build()
            .map_err(ssl("basicConstraints"))?,
    )
    .map_err(ssl("basicConstraints"))?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .digital_signature()
            .key_encipherment()
            .build()
            .map_err(ssl("keyUsage"))?,
    )
    .map_err(ssl("keyUsage"))?;
    let ski = SubjectKeyIdentifier::new()
        .build(&b.x509v3_context(None, None))
        .map_err(ssl("subjectKeyIdentifier"))?;
    b.append_extension(ski)
        .map_err(ssl("subjectKeyIdentifier"))?;
    if spec.purpose == Purpose::TlsServer {
        b.append_extension(
            ExtendedKeyUsage::new()
                .server_auth()
                .build()
                .map_err(ssl("extendedKeyUsage"))?,
        )
        .map_err(ssl("extendedKeyUsage"))?;
    }
    if !spec.san.is_empty() {
        let mut san = SubjectAlternativeName::new();
        for entry in &spec.san {
            if entry.parse::<IpAddr>().is_ok() {
                san.ip(entry);
            } else {
                san.dns(entry);
            }
        }
        let ext = san
            .build(&b.x509v3_context(None, None))
            .map_err(ssl("subjectAltName"))?;
        b.append_extension(ext).map_err(ssl("subjectAltName"))?;
    }
    b.sign(&key, MessageDigest::sha256())
        .map_err(ssl("self-signing"))?;
    Ok(KeyPair {
        key,
        cert: b.build(),
    })
}

/// The SANs of a TLS certificate for `host`: the host, `localhost` and `127.0.0.1`, without
/// duplicates, in that order.
pub fn tls_san(host: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for h in [host.trim(), "localhost", "127.0.0.1"] {
        if !h.is_empty() && !out.iter().any(|x| x.eq_ignore_ascii_case(h)) {
            out.push(h.to_string());
        }
    }
    out
}

/// Options of `samlgate gen-cert`.
#[derive(Debug, Clone)]
pub struct GenCertOptions {
    pub out: PathBuf,
    pub common_name: String,
    pub days: u32,
    pub tls_host: String,
    /// Prepended to every file name (`example-` gives `example-sp.key` …).
    pub prefix: String,
    pub force: bool,
}

/// The four files `gen-cert` writes, as (file name, is a private key).
pub fn file_names(prefix: &str) -> [(String, bool); 4] {
    [
        (format!("{prefix}sp.key"), true),
        (format!("{prefix}sp.crt"), false),
        (format!("{prefix}tls.key"), true),
        (format!("{prefix}tls.crt"), false),
    ]
}

/// `gen-cert`: an SP pair (RSA 3072, sha256) and a TLS pair (RSA 3072, sha256, SANs for the
/// host, `localhost` and `127.0.0.1`). Refuses to overwrite any existing file unless
/// `force`, checking all four before writing one. Keys get mode 0600. Returns the paths.
pub fn write_set(opts: &GenCertOptions) -> Result<Vec<PathBuf>, String> {
    if opts.prefix.contains(['/', '\\']) {
        return Err("--prefix must not contain a path separator".into());
    }
    let names = file_names(&opts.prefix);
    let paths: Vec<PathBuf> = names.iter().map(|(n, _)| opts.out.join(n)).collect();
    if !opts.force {
        let existing: Vec<String> = paths
            .iter()
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !existing.is_empty() {
            return Err(format!(
                "refusing to overwrite {} (pass --force to replace)",
                existing.join(", ")
            ));
        }
    }
    let sp = self_signed(&CertSpec {
        common_name: opts.common_name.clone(),
        rsa_bits: 3072,
        days: opts.days,
        purpose: Purpose::Saml,
        san: vec![],
    })?;
    let tls = self_signed(&CertSpec {
        common_name: opts.common_name.clone(),
        rsa_bits: 3072,
        days: opts.days,
        purpose: Purpose::TlsServer,
        san: tls_san(&opts.tls_host),
    })?;
    std::fs::create_dir_all(&opts.out)
        .map_err(|e| format!("cannot create {}: {e}", opts.out.display()))?;
    let contents = [
        sp.key_pem()?,
        sp.cert_pem()?,
        tls.key_pem()?,
        tls.cert_pem()?,
    ];
    for ((path, (_, secret)), text) in paths.iter().zip(names.iter()).zip(contents.iter()) {
        write_file(path, text.as_bytes(), *secret, opts.force)?;
    }
    Ok(paths)
}

/// Writes a file: mode 0600 for secrets (also when replacing an existing file), 0644 else.
/// Without `overwrite`, fails if the file exists (atomically, `create_new`).
pub fn write_file(path: &Path, data: &[u8], secret: bool, overwrite: bool) -> Result<(), String> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true);
    if overwrite {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut f = o
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    #[cfg(unix)]
    if secret {
        // `mode` applies only to newly created files; tighten a replaced one too.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot chmod 600 {}: {e}", path.display()))?;
    }
    f.write_all(data)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(purpose: Purpose, san: Vec<String>) -> CertSpec {
        CertSpec {
            common_name: "samlgate test".into(),
            rsa_bits: 2048,
            days: 30,
            purpose,
            san,
        }
    }

    #[test]
    fn generated_pair_parses_back_with_openssl_and_matches() {
        let pair = self_signed(&spec(Purpose::Saml, vec![])).unwrap();
        let cert = X509::from_pem(pair.cert_pem().unwrap().as_bytes()).unwrap();
        let key = PKey::private_key_from_pem(pair.key_pem().unwrap().as_bytes()).unwrap();
        assert!(key.public_eq(&cert.public_key().unwrap()));
        assert_eq!(key.rsa().unwrap().size() * 8, 2048);
        let cn = cert
            .subject_name()
            .entries_by_nid(openssl::nid::Nid::COMMONNAME)
            .next()
            .unwrap()
            .data()
            .to_string()
            .unwrap();
        assert_eq!(cn, "samlgate test");
        assert_eq!(
            cert.signature_algorithm().object().nid(),
            openssl::nid::Nid::SHA256WITHRSAENCRYPTION
        );
        // Self-signed: verifies with its own key.
        assert!(cert.verify(&key).unwrap());
        // Valid now, not for much longer than asked.
        let now = Asn1Time::days_from_now(0).unwrap();
        assert!(cert.not_before() <= now && now < cert.not_after());
        let diff = now.diff(cert.not_after()).unwrap();
        assert!((29..=30).contains(&diff.days), "{diff:?}");
        // PKCS#1 DER for libxmlsec1 round-trips.
        Rsa::private_key_from_der(&pair.key_pkcs1_der().unwrap()).unwrap();
        KeyPair::from_pem(
            pair.key_pem().unwrap().as_bytes(),
            pair.cert_pem().unwrap().as_bytes(),
        )
        .unwrap();
    }

    #[test]
    fn tls_certificate_carries_the_sans() {
        let pair = self_signed(&spec(Purpose::TlsServer, tls_san("app.test"))).unwrap();
        let sans = pair.cert.subject_alt_names().unwrap();
        let dns: Vec<&str> = sans.iter().filter_map(|n| n.dnsname()).collect();
        let ips: Vec<&[u8]> = sans.iter().filter_map(|n| n.ipaddress()).collect();
        assert_eq!(dns, ["app.test", "localhost"]);
        assert_eq!(ips, [&[127u8, 0, 0, 1][..]]);
    }

    #[test]
    fn tls_san_deduplicates() {
        assert_eq!(tls_san("localhost"), ["localhost", "127.0.0.1"]);
        assert_eq!(tls_san("127.0.0.1"), ["127.0.0.1", "localhost"]);
        assert_eq!(tls_san(""), ["localhost", "127.0.0.1"]);
    }

    #[test]
    fn refuses_bad_specs() {
        let mut s = spec(Purpose::Saml, vec![]);
        s.rsa_bits = 1024;
        assert!(self_signed(&s).is_err());
        let mut s = spec(Purpose::Saml, vec![]);
        s.days = 0;
        assert!(self_signed(&s).is_err());
        let mut s = spec(Purpose::Saml, vec![]);
        s.common_name = " ".into();
        assert!(self_signed(&s).is_err());
    }

    #[test]
    fn mismatched_key_and_certificate_are_refused() {
        let a = self_signed(&spec(Purpose::Saml, vec![])).unwrap();
        let b = self_signed(&spec(Purpose::Saml, vec![])).unwrap();
        let err = KeyPair::from_pem(
            a.key_pem().unwrap().as_bytes(),
            b.cert_pem().unwrap().as_bytes(),
        )
        .err()
        .unwrap();
        assert!(err.contains("does not belong"), "{err}");
        assert!(KeyPair::from_pem(b"junk", b"junk").is_err());
    }

    #[test]
    fn write_set_writes_four_files_keys_private_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let opts = GenCertOptions {
            out: dir.path().join("certs"),
            common_name: "samlgate".into(),
            days: 10,
            tls_host: "localhost".into(),
            prefix: "example-".into(),
            force: false,
        };
        let paths = write_set(&opts).unwrap();
        let names: Vec<String> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "example-sp.key",
                "example-sp.crt",
                "example-tls.key",
                "example-tls.crt"
            ]
        );
        let sp_key = std::fs::read(&paths[0]).unwrap();
        let sp_crt = std::fs::read(&paths[1]).unwrap();
        let pair = KeyPair::from_pem(&sp_key, &sp_crt).unwrap();
        assert_eq!(pair.key.rsa().unwrap().size() * 8, 3072);
        let tls = KeyPair::from_pem(
            &std::fs::read(&paths[2]).unwrap(),
            &std::fs::read(&paths[3]).unwrap(),
        )
        .unwrap();
        assert!(tls.cert.subject_alt_names().is_some());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&paths[0]), 0o600);
            assert_eq!(mode(&paths[2]), 0o600);
            assert_eq!(mode(&paths[1]), 0o644);
        }

        // A second run refuses and leaves the files alone.
        let err = write_set(&opts).unwrap_err();
        assert!(err.contains("refusing to overwrite"), "{err}");
        assert_eq!(std::fs::read(&paths[0]).unwrap(), sp_key);

        // One existing file is enough to refuse, and nothing is written.
        let other = GenCertOptions {
            prefix: "other-".into(),
            ..opts.clone()
        };
        std::fs::write(opts.out.join("other-tls.crt"), "keep").unwrap();
        assert!(write_set(&other).is_err());
        assert!(!opts.out.join("other-sp.key").exists());

        // --force replaces, keeping keys at 0600.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&paths[0], std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        write_set(&GenCertOptions {
            force: true,
            ..opts.clone()
        })
        .unwrap();
        assert_ne!(std::fs::read(&paths[0]).unwrap(), sp_key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&paths[0]).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn prefix_with_a_path_separator_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let opts = GenCertOptions {
            out: dir.path().to_path_buf(),
            common_name: "x".into(),
            days: 1,
            tls_host: "localhost".into(),
            prefix: "../x".into(),
            force: false,
        };
        assert!(write_set(&opts).is_err());
    }
}
