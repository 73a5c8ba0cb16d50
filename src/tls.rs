//! TLS for the client-facing listener: the rustls server config (ring provider only, ALPN `h2`
//! and `http/1.1`, `tls.min_version`) and the certificate behind it, which can be replaced
//! while serving.
//!
//! The config is built once; its certificate comes from a resolver holding the current
//! [`CertifiedKey`]. [`TlsReloader::reload`] re-reads `tls.cert_file` and `tls.key_file` and
//! swaps the certificate only when the new pair is complete and consistent (the key's public
//! key is the certificate's); on any problem it logs why and keeps serving the old one.
//! Handshakes after a swap get the new certificate; connections already open are untouched.
//! Triggers: SIGHUP (see `app::on_hangup`) and [`watch_files`], which polls modification
//! time, length and a SHA-256 of both files (Kubernetes swaps a symlink when it updates a
//! mounted Secret, so watching the files themselves with inotify would miss it).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::{TlsFiles, TlsMinVersion};

/// Largest certificate or key file read (a chain of a few certificates is a few KB).
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// The client-facing TLS: a fixed acceptor whose certificate [`TlsReloader::reload`] replaces.
pub struct TlsReloader {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Arc<CurrentCert>,
    acceptor: TlsAcceptor,
    /// What the files looked like when the current certificate was read; also serializes
    /// reloads so that two triggers at once cannot interleave.
    loaded: Mutex<FilesStamp>,
}

impl std::fmt::Debug for TlsReloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsReloader")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

/// The certificate new handshakes are given.
#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl CurrentCert {
    fn get(&self) -> Arc<CertifiedKey> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
    fn set(&self, key: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = key;
    }
}

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// What a log line says about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// `CN=app.example.com, O=…` (empty if the certificate has no subject).
    pub subject: String,
    /// `notAfter` as openssl prints it (`Mar  1 12:00:00 2027 GMT`).
    pub not_after: String,
    /// SHA-256 of the leaf certificate's DER, lowercase hex.
    pub sha256: String,
}

/// Why a certificate pair cannot be served; each names the config key and file at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// `key` (`tls.cert_file` or `tls.key_file`) names a file that cannot be read or parsed.
    #[error("{key} {}: {reason}", path.display())]
    File {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// Both files parse, but the key is not the certificate's.
    #[error("tls.key_file {} does not belong to the certificate in tls.cert_file {} (their public keys differ)", key_file.display(), cert_file.display())]
    KeyMismatch {
        cert_file: PathBuf,
        key_file: PathBuf,
    },
    /// rustls refused the protocol versions (`tls.min_version`).
    #[error("tls: {0}")]
    Versions(String),
}

impl TlsReloader {
    /// Reads the pair and builds the acceptor; an error names the file and the reason.
    pub fn new(files: &TlsFiles) -> Result<TlsReloader, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (key, stamp) = read_pair(&files.cert_file, &files.key_file, &provider)?;
        let current = Arc::new(CurrentCert(RwLock::new(Arc::new(key))));
        let versions: &[&'static rustls::SupportedProtocolVersion] = match files.min_version {
            TlsMinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsMinVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| TlsError::Versions(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsReloader {
            cert_file: files.cert_file.clone(),
            key_file: files.key_file.clone(),
            provider,
            current,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            loaded: Mutex::new(stamp),
        })
    }

    /// The acceptor for the listener; it always serves the current certificate.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// The certificate new connections get.
    pub fn current_summary(&self) -> CertSummary {
        summarize(&self.current.get())
    }

    /// Re-reads both files and, if they hold a usable pair with a different certificate
    /// chain, serves it to new connections. `Ok(false)`: the same certificate as before.
    /// On an error the current certificate stays. Logs the outcome either way; `why` says
    /// what triggered it (`SIGHUP`, `file change`).
    pub fn reload(&self, why: &str) -> Result<bool, TlsError> {
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        let (key, stamp) = match read_pair(&self.cert_file, &self.key_file, &self.provider) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::error!(trigger = why, error = %e, "TLS reload failed; keeping the current certificate");
                return Err(e);
            }
        };
        *loaded = stamp;
        if key.cert == self.current.get().cert {
            tracing::info!(
                trigger = why,
                "TLS files re-read; the certificate is unchanged"
            );
            return Ok(false);
        }
        let summary = summarize(&key);
        self.current.set(Arc::new(key));
        tracing::info!(
            trigger = why,
            subject = %summary.subject,
            not_after = %summary.not_after,
            sha256 = %summary.sha256,
            "TLS certificate reloaded; new connections get it"
        );
        Ok(true)
    }

    /// What the files looked like when they were last read successfully.
    fn loaded_stamp(&self) -> FilesStamp {
        self.loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn stamp_files_now(&self) -> FilesStamp {
        FilesStamp {
            cert: FileStamp::read(&self.cert_file).ok(),
            key: FileStamp::read(&self.key_file).ok(),
        }
    }
}

/// Every `interval`, compares the two files with what was last seen and reloads when either
/// changed. Runs until aborted.
pub async fn watch_files(reloader: Arc<TlsReloader>, interval: Duration) {
    let mut seen = reloader.loaded_stamp();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // the first tick is immediate
    loop {
        ticks.tick().await;
        let r = reloader.clone();
        let Ok(now) = tokio::task::spawn_blocking(move || r.stamp_files_now()).await else {
            continue;
        };
        if now == seen {
            continue;
        }
        // Remember what was seen even if the reload fails: a broken pair is reported once,
        // and the next change (the missing half arriving) triggers another attempt.
        seen = now;
        let r = reloader.clone();
        let _ = tokio::task::spawn_blocking(move || r.reload("file change")).await;
    }
}

/// Both files as last seen; `None` for a file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FilesStamp {
    cert: Option<FileStamp>,
    key: Option<FileStamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    sha256: [u8; 32],
}

impl FileStamp {
    fn read(path: &Path) -> std::io::Result<FileStamp> {
        Ok(FileStamp::of(path, &read_bounded(path)?))
    }

    fn of(path: &Path, bytes: &[u8]) -> FileStamp {
        // metadata() follows symlinks: a swapped `..data` link shows the new file's time.
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
        FileStamp {
            modified,
            len: bytes.len() as u64,
            sha256,
        }
    }
}

fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_PEM_BYTES} bytes"),
        ));
    }
    Ok(bytes)
}

/// Reads and checks a certificate chain and its key. Errors name the config key, the file
/// and the reason.
fn read_pair(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<(CertifiedKey, FilesStamp), TlsError> {
    let cert_err = |e: &dyn std::fmt::Display| TlsError::File {
        key: "tls.cert_file",
        path: cert_file.to_path_buf(),
        reason: e.to_string(),
    };
    let key_err = |e: &dyn std::fmt::Display| TlsError::File {
        key: "tls.key_file",
        path: key_file.to_path_buf(),
        reason: e.to_string(),
    };
    let cert_bytes = read_bounded(cert_file).map_err(|e| cert_err(&e))?;
    let key_bytes = read_bounded(key_file).map_err(|e| key_err(&e))?;
    let stamp = FilesStamp {
        cert: Some(FileStamp::of(cert_file, &cert_bytes)),
        key: Some(FileStamp::of(key_file, &key_bytes)),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(&e))?;
    if chain.is_empty() {
        return Err(cert_err(&"no PEM certificate found"));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
        key_err(&format_args!(
            "no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"
        ))
    })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| key_err(&format_args!("unsupported private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing_key);
    // Every ring key reports its public key, so an unknown answer is refused too.
    certified.keys_match().map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
        },
        other => cert_err(&format_args!("unusable leaf certificate: {other}")),
    })?;
    Ok((certified, stamp))
}

fn summarize(key: &CertifiedKey) -> CertSummary {
    let der: &[u8] = key.cert.first().map(|c| c.as_ref()).unwrap_or_default();
    let sha256 = ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (subject, not_after) = match openssl::x509::X509::from_der(der) {
        Ok(cert) => (
            cert.subject_name()
                .entries()
                .map(|e| {
                    let name = e.object().nid().short_name().unwrap_or("?");
                    let value: String = e
                        .data()
                        .to_string()
                        .unwrap_or_else(|_| "?".into())
                        .chars()
                        .map(|c| if c.is_control() { '?' } else { c })
                        .collect();
                    format!("{name}={value}")
                })
                .collect::<Vec<_>>()
                .join(", "),
            cert.not_after().to_string(),
        ),
        Err(_) => ("(unparsed)".into(), "(unparsed)".into()),
    };
    CertSummary {
        subject,
        not_after,
        sha256,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certgen::{self_signed, CertSpec, Purpose};

    fn pair(cn: &str) -> (String, String) {
        let c = self_signed(&CertSpec {
            common_name: cn.into(),
            rsa_bits: 2048,
            days: 5,
            purpose: Purpose::TlsServer,
            san: vec![],
        })
        .unwrap();
        (c.cert_pem().unwrap(), c.key_pem().unwrap())
    }

    fn files(dir: &Path) -> TlsFiles {
        TlsFiles {
            cert_file: dir.join("tls.crt"),
            key_file: dir.join("tls.key"),
            min_version: TlsMinVersion::Tls12,
            watch_interval: None,
        }
    }

    fn write(dir: &Path, (cert, key): &(String, String)) {
        std::fs::write(dir.join("tls.crt"), cert).unwrap();
        std::fs::write(dir.join("tls.key"), key).unwrap();
    }

    #[test]
    fn reload_swaps_only_a_good_new_pair() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (pair("a.test"), pair("b.test"));
        write(dir.path(), &a);
        let r = TlsReloader::new(&files(dir.path())).unwrap();
        let first = r.current_summary();
        assert!(first.subject.contains("CN=a.test"), "{first:?}");
        assert_eq!(first.sha256.len(), 64);
        assert!(first.not_after.ends_with("GMT"), "{first:?}");

        assert_eq!(r.reload("test"), Ok(false), "same files: unchanged");

        // A's certificate with B's key: refused, A stays.
        std::fs::write(dir.path().join("tls.key"), &b.1).unwrap();
        let err = r.reload("test").unwrap_err().to_string();
        assert!(err.contains("does not belong to the certificate"), "{err}");
        assert!(err.contains("tls.key"), "{err}");
        assert_eq!(r.current_summary(), first);

        // Garbage certificate, empty key, missing file: refused with the file named.
        std::fs::write(dir.path().join("tls.crt"), "not a certificate").unwrap();
        let err = r.reload("test").unwrap_err().to_string();
        assert!(
            err.starts_with("tls.cert_file") && err.contains("no PEM certificate"),
            "{err}"
        );
        write(dir.path(), &(a.0.clone(), String::new()));
        let err = r.reload("test").unwrap_err().to_string();
        assert!(err.starts_with("tls.key_file"), "{err}");
        std::fs::remove_file(dir.path().join("tls.crt")).unwrap();
        let err = r.reload("test").unwrap_err().to_string();
        assert!(err.starts_with("tls.cert_file"), "{err}");
        assert_eq!(r.current_summary(), first);

        write(dir.path(), &b);
        assert_eq!(r.reload("test"), Ok(true));
        assert!(r.current_summary().subject.contains("CN=b.test"));
    }

    #[test]
    fn a_bad_pair_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (pair("a.test"), pair("b.test"));
        write(dir.path(), &(a.0, b.1));
        let err = TlsReloader::new(&files(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not belong"), "{err}");
    }

    #[test]
    fn stamps_see_content_changes_of_equal_length() {
        let dir = tempfile::tempdir().unwrap();
        let a = pair("a.test");
        write(dir.path(), &a);
        let r = TlsReloader::new(&files(dir.path())).unwrap();
        assert_eq!(r.stamp_files_now(), r.loaded_stamp());
        let mut changed = a.1.clone().into_bytes();
        let i = changed.len() / 2;
        changed[i] ^= 1;
        std::fs::write(dir.path().join("tls.key"), &changed).unwrap();
        let now = r.stamp_files_now();
        assert_ne!(now, r.loaded_stamp());
        assert_eq!(now.cert, r.loaded_stamp().cert);
        std::fs::remove_file(dir.path().join("tls.key")).unwrap();
        assert_eq!(r.stamp_files_now().key, None);
    }
}
