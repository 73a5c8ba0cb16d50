//! IdP metadata fetched from a URL (`saml.idp_metadata_url`): fetched at start (falling back
//! to the last good copy on disk), refreshed in the background, and swapped in only when the
//! new document passes every check. A bad refresh never replaces a good copy.
//!
//! Checks on every fetched document, in order: size (1 MB), UTF-8, the pinned signature
//! (`saml.idp_metadata_signing_cert_file`, enveloped, over the root element), `validUntil`
//! not past, then [`parse_idp_metadata`] (entity, Redirect SSO, at least one signing cert).

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use quick_xml::events::Event;
use samael::crypto::{CertificateDer, Crypto, CryptoProvider};

use super::metadata::{parse_idp_metadata, IdpInfo};
use super::verify::Verifier;
use crate::config::{MetadataUrlSettings, SamlSettings};

/// The verifier in use, swapped whole when refreshed metadata is accepted. Readers take a
/// cheap `Arc` clone; a sign-in in flight keeps the verifier it started with.
pub struct CurrentIdp(RwLock<Arc<Verifier>>);

impl CurrentIdp {
    pub fn new(v: Arc<Verifier>) -> CurrentIdp {
        CurrentIdp(RwLock::new(v))
    }

    pub fn get(&self) -> Arc<Verifier> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn set(&self, v: Arc<Verifier>) {
        match self.0.write() {
            Ok(mut g) => *g = v,
            Err(p) => *p.into_inner() = v,
        }
    }
}

/// Parses an `xs:duration` such as `PT1H`, `P1D`, `P1DT12H30M`, `PT90.5S`. Years count
/// 365 days and months 30 (only an upper bound on caching is derived from it). Negative
/// durations and malformed text give `None`.
pub fn parse_xs_duration(s: &str) -> Option<Duration> {
    let rest = s.trim().strip_prefix('P')?;
    if rest.is_empty() {
        return None;
    }
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return None,
        None => (rest, None),
    };
    let mut secs = 0f64;
    let mut take = |part: &str, units: &[(char, f64)], allow_fraction: bool| -> Option<()> {
        let mut num = String::new();
        let mut last = 0usize;
        for c in part.chars() {
            if c.is_ascii_digit() || (allow_fraction && c == '.') {
                num.push(c);
                continue;
            }
            let idx = units.iter().position(|(u, _)| *u == c)?;
            if idx < last || num.is_empty() {
                return None;
            }
            if num.contains('.') && c != 'S' {
                return None;
            }
            secs += num.parse::<f64>().ok()? * units[idx].1;
            last = idx + 1;
            num.clear();
        }
        num.is_empty().then_some(())
    };
    take(
        date,
        &[
            ('Y', 365.0 * 86400.0),
            ('M', 30.0 * 86400.0),
            ('D', 86400.0),
        ],
        false,
    )?;
    if let Some(t) = time {
        take(t, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)], true)?;
    }
    (secs.is_finite() && secs < 1e12).then(|| Duration::from_secs_f64(secs))
}

/// Why fetched (or cached) IdP metadata is not used. Most checks on the document explain
/// themselves in a sentence (`Document`); the others carry what the log line needs.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The document fails a check (XML, attributes, the pinned signature, the IdP's entry).
    #[error("{0}")]
    Document(String),
    /// Larger than `max_bytes`.
    #[error("larger than {0} bytes")]
    TooLarge(usize),
    /// Not UTF-8 text.
    #[error("not UTF-8 text")]
    NotUtf8,
    /// `validUntil` has passed.
    #[error("expired (validUntil {0})")]
    Expired(DateTime<Utc>),
    /// The request failed (connect, TLS, reading the body).
    #[error("{0}")]
    Fetch(String),
    /// The server answered with another status than 2xx (redirects are not followed).
    #[error("HTTP status {0}")]
    Status(http::StatusCode),
    /// No answer within `saml.idp_metadata_timeout_secs`.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The cache file cannot be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// At start: neither the URL nor the cache file gave usable metadata.
    #[error("saml.idp_metadata_url ({url}): cannot fetch the IdP metadata ({fetch}) and saml.idp_metadata_cache_file ({}) is not usable ({cache}); refusing to start", cache_file.display())]
    Unavailable {
        url: String,
        fetch: Box<MetadataError>,
        cache_file: std::path::PathBuf,
        cache: Box<MetadataError>,
    },
}

impl From<String> for MetadataError {
    fn from(reason: String) -> Self {
        MetadataError::Document(reason)
    }
}

impl From<&str> for MetadataError {
    fn from(reason: &str) -> Self {
        MetadataError::Document(reason.to_string())
    }
}

/// `validUntil` and `cacheDuration` of the document's root element.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CacheHints {
    pub valid_until: Option<DateTime<Utc>>,
    pub cache_duration: Option<Duration>,
}

pub fn cache_hints(xml: &str) -> Result<CacheHints, MetadataError> {
    let mut reader = quick_xml::Reader::from_str(xml);
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                let mut hints = CacheHints::default();
                for a in e.attributes() {
                    let a = a.map_err(|e| format!("bad attribute: {e}"))?;
                    let v = a
                        .unescape_value()
                        .map_err(|e| format!("bad attribute: {e}"))?;
                    match a.key.local_name().as_ref() {
                        b"validUntil" => {
                            let t = DateTime::parse_from_rfc3339(v.trim())
                                .map_err(|_| format!("validUntil is not a dateTime: {v}"))?;
                            hints.valid_until = Some(t.with_timezone(&Utc));
                        }
                        b"cacheDuration" => {
                            hints.cache_duration =
                                Some(parse_xs_duration(&v).ok_or_else(|| {
                                    format!("cacheDuration is not a duration: {v}")
                                })?);
                        }
                        _ => {}
                    }
                }
                return Ok(hints);
            }
            Ok(Event::Eof) => return Err("no root element".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("not XML: {e}").into()),
        }
    }
}

/// How long until the next refresh: the configured ceiling, shortened by `cacheDuration`
/// and by the time left before `validUntil`; never below one second.
pub fn next_refresh(ceiling: Duration, hints: &CacheHints, now: DateTime<Utc>) -> Duration {
    let mut d = ceiling;
    if let Some(c) = hints.cache_duration {
        d = d.min(c);
    }
    if let Some(until) = hints.valid_until {
        let left = (until - now).to_std().unwrap_or(Duration::ZERO);
        d = d.min(left);
    }
    d.max(Duration::from_secs(1))
}

/// Checks that the document carries exactly one `ds:Signature`, a child of the root element
/// whose single Reference points at the root's `ID`, and that libxmlsec1 verifies it with
/// the pinned certificate.
pub fn verify_pinned_signature(xml: &str, cert_der: &[u8]) -> Result<(), MetadataError> {
    const DS: &[u8] = b"http://www.w3.org/2000/09/xmldsig#";
    let mut reader = quick_xml::NsReader::from_str(xml);
    let mut depth = 0usize;
    let mut root_id: Option<String> = None;
    let mut signatures = 0usize;
    let mut sig_depth_ok = false;
    let mut in_signed_info_refs: Vec<String> = Vec::new();
    loop {
        let (ns, ev) = reader
            .read_resolved_event()
            .map_err(|e| format!("not XML: {e}"))?;
        let is_ds = matches!(ns, quick_xml::name::ResolveResult::Bound(n) if n.as_ref() == DS);
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                if depth == 0 {
                    for a in e.attributes().flatten() {
                        if a.key.as_ref() == b"ID" {
                            root_id =
                                Some(a.unescape_value().map_err(|e| e.to_string())?.into_owned());
                        }
                    }
                }
                if is_ds && e.local_name().as_ref() == b"Signature" {
                    signatures += 1;
                    sig_depth_ok = depth == 1;
                }
                if is_ds && e.local_name().as_ref() == b"Reference" {
                    let uri = e
                        .attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == b"URI")
                        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
                        .unwrap_or_default();
                    in_signed_info_refs.push(uri);
                }
                if !empty {
                    depth += 1;
                }
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Eof => break,
            _ => {}
        }
    }
    let root_id = root_id.ok_or("the metadata root element has no ID attribute to sign")?;
    if signatures == 0 {
        return Err("the metadata is not signed".into());
    }
    if signatures != 1 || !sig_depth_ok {
        return Err("the metadata must carry exactly one signature, on its root element".into());
    }
    if in_signed_info_refs != [format!("#{root_id}")] {
        return Err("the metadata signature does not reference the root element".into());
    }
    Crypto::verify_signed_xml(
        xml.as_bytes(),
        &CertificateDer::from(cert_der.to_vec()),
        Some("ID"),
    )
    .map_err(|e| {
        MetadataError::Document(format!(
            "the metadata signature does not verify with the pinned certificate: {e}"
        ))
    })
}

/// Every check a fetched (or cached) document must pass before it is used.
pub fn check_document(
    bytes: &[u8],
    md: &MetadataUrlSettings,
    wanted_entity: Option<&str>,
) -> Result<(String, IdpInfo, CacheHints), MetadataError> {
    if bytes.len() > md.max_bytes {
        return Err(MetadataError::TooLarge(md.max_bytes));
    }
    let xml = std::str::from_utf8(bytes).map_err(|_| MetadataError::NotUtf8)?;
    if let Some(der) = &md.signing_cert_der {
        verify_pinned_signature(xml, der)?;
    }
    let hints = cache_hints(xml)?;
    if let Some(until) = hints.valid_until {
        if until <= Utc::now() {
            return Err(MetadataError::Expired(until));
        }
    }
    let info = parse_idp_metadata(xml, wanted_entity).map_err(|e| e.to_string())?;
    Ok((xml.to_string(), info, hints))
}

/// GETs the metadata, following no redirects, within the timeout and the size limit.
pub async fn fetch(md: &MetadataUrlSettings) -> Result<Vec<u8>, MetadataError> {
    let tls = client_tls()?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(md.timeout));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let req = http::Request::get(md.url.as_str())
        .header(
            http::header::ACCEPT,
            "application/samlmetadata+xml, application/xml, text/xml",
        )
        .header(http::header::USER_AGENT, "samlgate")
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let work = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| MetadataError::Fetch(format!("{e:?}")))?;
        if !resp.status().is_success() {
            return Err(MetadataError::Status(resp.status()));
        }
        let body = Limited::new(resp.into_body(), md.max_bytes)
            .collect()
            .await
            .map_err(|e| MetadataError::Fetch(format!("reading the body: {e}")))?;
        Ok(body.to_bytes().to_vec())
    };
    tokio::time::timeout(md.timeout, work)
        .await
        .map_err(|_| MetadataError::Timeout(md.timeout))?
}

fn client_tls() -> Result<rustls::ClientConfig, MetadataError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| MetadataError::Fetch(e.to_string()))
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

/// Writes the cache file atomically (temporary file in the same directory, then rename).
pub fn write_cache(path: &Path, xml: &str) -> Result<(), MetadataError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, xml.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

async fn fetch_and_check(
    md: &MetadataUrlSettings,
    wanted_entity: Option<String>,
) -> Result<(String, IdpInfo, CacheHints), MetadataError> {
    let bytes = fetch(md).await?;
    let md2 = md.clone();
    tokio::task::spawn_blocking(move || check_document(&bytes, &md2, wanted_entity.as_deref()))
        .await
        .map_err(|e| e.to_string())?
}

/// At start, with `saml.idp_metadata_url`: fetch (and cache) the metadata, else read the
/// cache file; fills `saml.idp_metadata_xml`. Safe to call inside or outside a runtime
/// (the fetch runs on a thread of its own).
pub fn load_initial(saml: &mut SamlSettings) -> Result<(), MetadataError> {
    let Some(md) = saml.idp_metadata_url.clone() else {
        return Ok(());
    };
    let wanted = saml.idp_entity_id.clone();
    let fetched = {
        let md = md.clone();
        let wanted = wanted.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let bytes = fetch(&md).await?;
                check_document(&bytes, &md, wanted.as_deref())
            })
        })
        .join()
        .map_err(|_| "metadata fetch thread panicked".to_string())?
    };
    match fetched {
        Ok((xml, _, _)) => {
            if let Err(e) = write_cache(&md.cache_file, &xml) {
                tracing::warn!(cache_file = %md.cache_file.display(), error = %e, "cannot write the IdP metadata cache file");
            }
            saml.idp_metadata_xml = xml;
            Ok(())
        }
        Err(fetch_err) => {
            let cached = std::fs::read(&md.cache_file)
                .map_err(MetadataError::from)
                .and_then(|b| check_document(&b, &md, wanted.as_deref()));
            match cached {
                Ok((xml, _, _)) => {
                    tracing::warn!(url = %md.url, error = %fetch_err, cache_file = %md.cache_file.display(), "cannot fetch the IdP metadata; starting with the cached copy");
                    saml.idp_metadata_xml = xml;
                    if let Some(m) = saml.idp_metadata_url.as_mut() {
                        m.started_from_cache = true;
                    }
                    Ok(())
                }
                Err(cache_err) => Err(MetadataError::Unavailable {
                    url: md.url.to_string(),
                    fetch: Box::new(fetch_err),
                    cache_file: md.cache_file.clone(),
                    cache: Box::new(cache_err),
                }),
            }
        }
    }
}

/// The background refresh: runs until the returned handle is aborted.
pub fn spawn_refresh(
    current: Arc<CurrentIdp>,
    saml: SamlSettings,
) -> Option<tokio::task::JoinHandle<()>> {
    let md = saml.idp_metadata_url.clone()?;
    let first = match cache_hints(&saml.idp_metadata_xml) {
        Ok(h) if !md.started_from_cache => next_refresh(md.refresh, &h, Utc::now()),
        _ => md.retry,
    };
    Some(tokio::spawn(async move {
        let mut wait = first;
        loop {
            tokio::time::sleep(wait).await;
            match fetch_and_check(&md, saml.idp_entity_id.clone()).await {
                Ok((xml, info, hints)) => {
                    let certs = info.signing_cert_count;
                    current.set(Arc::new(Verifier::new(&saml, info)));
                    if let Err(e) = write_cache(&md.cache_file, &xml) {
                        tracing::warn!(cache_file = %md.cache_file.display(), error = %e, "cannot write the IdP metadata cache file");
                    }
                    wait = next_refresh(md.refresh, &hints, Utc::now());
                    tracing::info!(url = %md.url, signing_certs = certs, next_refresh_secs = wait.as_secs(), "IdP metadata refreshed");
                }
                Err(e) => {
                    wait = md.retry;
                    tracing::warn!(url = %md.url, error = %e, retry_secs = wait.as_secs(), "IdP metadata refresh failed; keeping the current copy");
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xs_durations() {
        let d = |s: &str| parse_xs_duration(s).map(|d| d.as_secs());
        assert_eq!(d("PT1H"), Some(3600));
        assert_eq!(d("P1D"), Some(86400));
        assert_eq!(d("P1DT12H30M"), Some(86400 + 12 * 3600 + 1800));
        assert_eq!(d("PT90S"), Some(90));
        assert_eq!(d("PT0.5S").map(|_| ()), Some(()));
        assert_eq!(d("P1Y"), Some(365 * 86400));
        assert_eq!(d("P1M"), Some(30 * 86400));
        assert_eq!(d("PT1M"), Some(60));
        for bad in [
            "", "P", "PT", "1H", "-PT1H", "PT1H1H", "PT1M1H", "P1H", "PTS", "P1.5D", "PT1X",
        ] {
            assert_eq!(parse_xs_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn hints_and_next_refresh() {
        let xml = r#"<?xml version="1.0"?><md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="x" cacheDuration="PT10M" validUntil="2030-01-01T00:00:00Z"><a/></md:EntityDescriptor>"#;
        let h = cache_hints(xml).unwrap();
        assert_eq!(h.cache_duration, Some(Duration::from_secs(600)));
        let now: DateTime<Utc> = "2029-12-31T23:55:00Z".parse().unwrap();
        assert_eq!(
            next_refresh(Duration::from_secs(3600), &h, now),
            Duration::from_secs(300)
        );
        let early: DateTime<Utc> = "2029-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            next_refresh(Duration::from_secs(3600), &h, early),
            Duration::from_secs(600)
        );
        assert_eq!(
            next_refresh(Duration::from_secs(60), &h, early),
            Duration::from_secs(60)
        );
        let late: DateTime<Utc> = "2031-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            next_refresh(Duration::from_secs(60), &h, late),
            Duration::from_secs(1)
        );
        assert!(cache_hints("<a cacheDuration=\"soon\"/>").is_err());
        assert_eq!(cache_hints("<a/>").unwrap(), CacheHints::default());
    }

    #[test]
    fn unsigned_or_misplaced_signatures_are_refused_before_xmlsec() {
        let e = verify_pinned_signature("<a ID=\"x\"><b/></a>", b"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not signed"), "{e}");
        let e = verify_pinned_signature("<a><b/></a>", b"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no ID"), "{e}");
        let ds = "http://www.w3.org/2000/09/xmldsig#";
        let nested = format!(
            "<a ID=\"x\"><b><ds:Signature xmlns:ds=\"{ds}\"><ds:SignedInfo><ds:Reference URI=\"#x\"/></ds:SignedInfo></ds:Signature></b></a>"
        );
        assert!(verify_pinned_signature(&nested, b"")
            .unwrap_err()
            .to_string()
            .contains("exactly one"));
        let other_ref = format!(
            "<a ID=\"x\"><ds:Signature xmlns:ds=\"{ds}\"><ds:SignedInfo><ds:Reference URI=\"#y\"/></ds:SignedInfo></ds:Signature><b ID=\"y\"/></a>"
        );
        assert!(verify_pinned_signature(&other_ref, b"")
            .unwrap_err()
            .to_string()
            .contains("does not reference"));
    }

    #[test]
    fn cache_file_is_written_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("md.xml");
        write_cache(&p, "one").unwrap();
        write_cache(&p, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
