//! Single Logout (SAML profiles §4.4) over the HTTP-Redirect and HTTP-POST bindings: the
//! LogoutRequest and LogoutResponse we build, the strict little parser for the ones the IdP
//! sends, bounded inflation of Redirect `SAMLRequest` / `SAMLResponse`, the Redirect-binding
//! signature check over the raw query octets (bindings §3.4.4.1), the POST form, which
//! issuers a logout message may carry, and the auto-submit page a POST answer travels in.
//!
//! A Redirect message carries no XML signature (the binding signs the query string), so it
//! never reaches libxmlsec1: a streaming quick-xml pass refuses DOCTYPE, processing
//! instructions, unknown roots, deep or large documents, and reads only the few fields SLO
//! needs. A POST message carries an enveloped XML signature instead: the gateway screens it
//! with the ACS pre-filter (logout root), has libxmlsec1 verify it, and parses only the bytes
//! the signature covered, with the same strict parser.

use std::io::Read;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use openssl::hash::MessageDigest;
use openssl::x509::X509;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::NsReader;

use super::authn::SIG_ALG_RSA_SHA256;
use super::xml_escape;

const PROTOCOL_NS: &[u8] = b"urn:oasis:names:tc:SAML:2.0:protocol";
const ASSERTION_NS: &[u8] = b"urn:oasis:names:tc:SAML:2.0:assertion";
pub const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
pub const STATUS_REQUESTER: &str = "urn:oasis:names:tc:SAML:2.0:status:Requester";

/// Largest inflated logout message accepted (they are a few hundred bytes in practice).
pub const MAX_LOGOUT_XML_BYTES: usize = 32 * 1024;
/// Largest base64 `SAMLRequest` / `SAMLResponse` accepted before decoding.
pub const MAX_LOGOUT_PARAM_BYTES: usize = 16 * 1024;
const MAX_DEPTH: usize = 8;
const MAX_ELEMENTS: usize = 64;
const MAX_SESSION_INDEXES: usize = 16;

/// A parsed `samlp:LogoutRequest` (unauthenticated until its signature has been checked).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogoutRequest {
    pub id: String,
    pub issue_instant: Option<DateTime<Utc>>,
    pub destination: Option<String>,
    pub not_on_or_after: Option<DateTime<Utc>>,
    pub issuer: Option<String>,
    pub name_id: String,
    pub name_id_format: Option<String>,
    pub session_indexes: Vec<String>,
}

/// A parsed `samlp:LogoutResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogoutResponse {
    pub id: String,
    pub in_response_to: Option<String>,
    pub issue_instant: Option<DateTime<Utc>>,
    pub destination: Option<String>,
    pub issuer: Option<String>,
    pub status_code: Option<String>,
}

/// base64 → raw DEFLATE → UTF-8, bounded at both steps.
pub fn decode_redirect_param(b64: &str) -> Result<String, String> {
    if b64.len() > MAX_LOGOUT_PARAM_BYTES {
        return Err(format!(
            "encoded message is {} bytes, over the {MAX_LOGOUT_PARAM_BYTES}-byte limit",
            b64.len()
        ));
    }
    let compact: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let raw = STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| format!("message is not base64: {e}"))?;
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(&raw[..])
        .take(MAX_LOGOUT_XML_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("message does not inflate: {e}"))?;
    if out.len() > MAX_LOGOUT_XML_BYTES {
        return Err(format!(
            "inflated message exceeds {MAX_LOGOUT_XML_BYTES} bytes"
        ));
    }
    String::from_utf8(out).map_err(|_| "message is not UTF-8".into())
}

fn attr_map(e: &BytesStart<'_>) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|e| format!("bad attribute: {e}"))?;
        let key = a.key.as_ref();
        if key.starts_with(b"xmlns") {
            continue;
        }
        let name = String::from_utf8_lossy(key).into_owned();
        if out.iter().any(|(n, _)| *n == name) {
            return Err(format!("attribute {name} appears twice"));
        }
        let v = a
            .unescape_value()
            .map_err(|e| format!("bad attribute value: {e}"))?
            .into_owned();
        out.push((name, v));
    }
    Ok(out)
}

fn get(attrs: &[(String, String)], name: &str) -> Option<String> {
    attrs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

fn instant(attrs: &[(String, String)], name: &str) -> Result<Option<DateTime<Utc>>, String> {
    match get(attrs, name) {
        None => Ok(None),
        Some(v) => DateTime::parse_from_rfc3339(v.trim())
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| format!("{name} is not an xs:dateTime")),
    }
}

/// One element seen by the walker: its namespace, local name, depth (root = 1), attributes,
/// and (for leaf elements) its text.
struct Node {
    ns: Vec<u8>,
    local: String,
    depth: usize,
    parent: String,
    attrs: Vec<(String, String)>,
    text: String,
}

/// Streams the document with the strict rules and returns its elements in document order.
fn walk(xml: &str, root_local: &str) -> Result<Vec<Node>, String> {
    if xml.len() > MAX_LOGOUT_XML_BYTES {
        return Err("message too large".into());
    }
    let mut reader = NsReader::from_str(xml.strip_prefix('\u{FEFF}').unwrap_or(xml));
    reader.config_mut().check_end_names = true;
    reader.config_mut().check_comments = true;
    let mut nodes: Vec<Node> = Vec::new();
    let mut stack: Vec<usize> = Vec::new();
    let mut first = true;
    let mut root_closed = false;
    loop {
        let (ns, ev) = reader
            .read_resolved_event()
            .map_err(|e| format!("not well-formed XML: {e}"))?;
        let ns_of = |r: ResolveResult<'_>| match r {
            ResolveResult::Bound(Namespace(n)) => n.to_vec(),
            _ => Vec::new(),
        };
        match ev {
            Event::Decl(_) if first => {}
            Event::Decl(_) => return Err("misplaced XML declaration".into()),
            Event::DocType(_) => return Err("DOCTYPE is not allowed".into()),
            Event::PI(_) => return Err("processing instructions are not allowed".into()),
            Event::Start(_) | Event::Empty(_) if root_closed => {
                return Err("content after the root element".into());
            }
            ev @ (Event::Start(_) | Event::Empty(_)) => {
                let empty = matches!(ev, Event::Empty(_));
                let e = match ev {
                    Event::Start(e) | Event::Empty(e) => e,
                    _ => unreachable!("matched above"),
                };
                if nodes.len() >= MAX_ELEMENTS {
                    return Err(format!("more than {MAX_ELEMENTS} elements"));
                }
                let depth = stack.len() + 1;
                if depth > MAX_DEPTH {
                    return Err(format!("nested deeper than {MAX_DEPTH}"));
                }
                let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                let ns = ns_of(ns);
                if depth == 1 && (ns != PROTOCOL_NS || local != root_local) {
                    return Err(format!(
                        "root element is not samlp:{root_local} (found {})",
                        super::error::clip(&local)
                    ));
                }
                let parent = stack
                    .last()
                    .map(|&i| nodes[i].local.clone())
                    .unwrap_or_default();
                nodes.push(Node {
                    ns,
                    local,
                    depth,
                    parent,
                    attrs: attr_map(&e)?,
                    text: String::new(),
                });
                if empty {
                    if depth == 1 {
                        root_closed = true;
                    }
                } else {
                    stack.push(nodes.len() - 1);
                }
            }
            Event::End(_) => {
                stack.pop();
                if stack.is_empty() {
                    root_closed = true;
                }
            }
            Event::Text(t) => {
                let text = t
                    .unescape()
                    .map_err(|e| format!("bad text: {e}"))?
                    .into_owned();
                match stack.last() {
                    Some(&i) => nodes[i].text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err("text outside the root element".into()),
                }
            }
            Event::CData(c) => match stack.last() {
                Some(&i) => nodes[i].text.push_str(&String::from_utf8_lossy(c.as_ref())),
                None => return Err("CDATA outside the root element".into()),
            },
            Event::Comment(_) => {}
            Event::Eof => break,
        }
        first = false;
    }
    if !root_closed || nodes.is_empty() {
        return Err("document has no complete root element".into());
    }
    Ok(nodes)
}

fn single_text(
    nodes: &[Node],
    ns: &[u8],
    local: &str,
    parent: &str,
) -> Result<Option<String>, String> {
    let mut found = nodes
        .iter()
        .filter(|n| n.depth == 2 && n.ns == ns && n.local == local && n.parent == parent);
    let first = found.next().map(|n| n.text.trim().to_string());
    if found.next().is_some() {
        return Err(format!("{local} appears more than once"));
    }
    Ok(first)
}

/// Longest message `ID` accepted. IdPs use 20–60 characters; a longer one is refused rather
/// than remembered.
pub const MAX_MESSAGE_ID_BYTES: usize = 256;

fn require_version_and_id(attrs: &[(String, String)]) -> Result<String, String> {
    if get(attrs, "Version").as_deref() != Some("2.0") {
        return Err("Version is not 2.0".into());
    }
    let id = get(attrs, "ID")
        .filter(|id| !id.trim().is_empty())
        .ok_or("no ID")?;
    if id.len() > MAX_MESSAGE_ID_BYTES {
        return Err(format!(
            "ID is {} bytes long (at most {MAX_MESSAGE_ID_BYTES})",
            id.len()
        ));
    }
    Ok(id)
}

/// Parses an inflated `samlp:LogoutRequest` under the strict rules.
pub fn parse_logout_request(xml: &str) -> Result<LogoutRequest, String> {
    let nodes = walk(xml, "LogoutRequest")?;
    let root = &nodes[0];
    if nodes
        .iter()
        .any(|n| n.depth == 2 && n.local == "EncryptedID")
    {
        return Err("EncryptedID in a LogoutRequest is not supported".into());
    }
    let name_id = single_text(&nodes, ASSERTION_NS, "NameID", "LogoutRequest")?
        .filter(|n| !n.is_empty())
        .ok_or("no NameID")?;
    let name_id_format = nodes
        .iter()
        .find(|n| n.depth == 2 && n.ns == ASSERTION_NS && n.local == "NameID")
        .and_then(|n| get(&n.attrs, "Format"));
    let session_indexes: Vec<String> = nodes
        .iter()
        .filter(|n| n.depth == 2 && n.ns == PROTOCOL_NS && n.local == "SessionIndex")
        .map(|n| n.text.trim().to_string())
        .collect();
    if session_indexes.len() > MAX_SESSION_INDEXES {
        return Err("too many SessionIndex elements".into());
    }
    Ok(LogoutRequest {
        id: require_version_and_id(&root.attrs)?,
        issue_instant: instant(&root.attrs, "IssueInstant")?,
        destination: get(&root.attrs, "Destination"),
        not_on_or_after: instant(&root.attrs, "NotOnOrAfter")?,
        issuer: single_text(&nodes, ASSERTION_NS, "Issuer", "LogoutRequest")?,
        name_id,
        name_id_format,
        session_indexes,
    })
}

/// Parses an inflated `samlp:LogoutResponse` under the strict rules.
pub fn parse_logout_response(xml: &str) -> Result<LogoutResponse, String> {
    let nodes = walk(xml, "LogoutResponse")?;
    let root = &nodes[0];
    let status_code = nodes
        .iter()
        .find(|n| {
            n.depth == 3 && n.ns == PROTOCOL_NS && n.local == "StatusCode" && n.parent == "Status"
        })
        .and_then(|n| get(&n.attrs, "Value"));
    Ok(LogoutResponse {
        id: require_version_and_id(&root.attrs)?,
        in_response_to: get(&root.attrs, "InResponseTo"),
        issue_instant: instant(&root.attrs, "IssueInstant")?,
        destination: get(&root.attrs, "Destination"),
        issuer: single_text(&nodes, ASSERTION_NS, "Issuer", "LogoutResponse")?,
        status_code,
    })
}

/// Checks the times of a LogoutRequest: IssueInstant (required) not in the future beyond the
/// skew nor older than `max_age`; NotOnOrAfter, if present, not passed.
pub fn check_times(
    issue_instant: Option<DateTime<Utc>>,
    not_on_or_after: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    skew: chrono::Duration,
    max_age: chrono::Duration,
) -> Result<(), String> {
    let issued = issue_instant.ok_or("no IssueInstant")?;
    if issued > now + skew {
        return Err(format!("IssueInstant {issued} is in the future"));
    }
    if issued + max_age + skew < now {
        return Err(format!("IssueInstant {issued} is too old"));
    }
    if let Some(end) = not_on_or_after {
        if now >= end + skew {
            return Err(format!("NotOnOrAfter {end} has passed"));
        }
    }
    Ok(())
}

pub struct LogoutRequestSpec<'a> {
    pub id: &'a str,
    pub issue_instant: DateTime<Utc>,
    pub destination: &'a str,
    pub issuer: &'a str,
    pub name_id: &'a str,
    pub name_id_format: Option<&'a str>,
    pub session_index: Option<&'a str>,
}

pub fn logout_request_xml(spec: &LogoutRequestSpec<'_>) -> String {
    let format = spec
        .name_id_format
        .map(|f| format!(r#" Format="{}""#, xml_escape(f)))
        .unwrap_or_default();
    let index = spec
        .session_index
        .map(|s| format!("<samlp:SessionIndex>{}</samlp:SessionIndex>", xml_escape(s)))
        .unwrap_or_default();
    format!(
        r#"<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{instant}" Destination="{dest}"><saml:Issuer>{issuer}</saml:Issuer><saml:NameID{format}>{name_id}</saml:NameID>{index}</samlp:LogoutRequest>"#,
        id = xml_escape(spec.id),
        instant = spec
            .issue_instant
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        dest = xml_escape(spec.destination),
        issuer = xml_escape(spec.issuer),
        name_id = xml_escape(spec.name_id),
    )
}

pub struct LogoutResponseSpec<'a> {
    pub id: &'a str,
    pub issue_instant: DateTime<Utc>,
    pub destination: &'a str,
    pub in_response_to: &'a str,
    pub issuer: &'a str,
    pub status_code: &'a str,
}

pub fn logout_response_xml(spec: &LogoutResponseSpec<'_>) -> String {
    format!(
        r#"<samlp:LogoutResponse xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{instant}" Destination="{dest}" InResponseTo="{irt}"><saml:Issuer>{issuer}</saml:Issuer><samlp:Status><samlp:StatusCode Value="{status}"/></samlp:Status></samlp:LogoutResponse>"#,
        id = xml_escape(spec.id),
        instant = spec
            .issue_instant
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        dest = xml_escape(spec.destination),
        irt = xml_escape(spec.in_response_to),
        issuer = xml_escape(spec.issuer),
        status = xml_escape(spec.status_code),
    )
}

/// The SAML parameters of a Redirect-binding query, decoded, plus whether (and how) they were
/// signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectMessage {
    /// `SAMLRequest` or `SAMLResponse`.
    pub param: &'static str,
    /// The decoded (still base64) message.
    pub message: String,
    pub relay_state: Option<String>,
    /// The query carried `Signature` and `SigAlg`.
    pub signed: bool,
    /// Raw signed octets and the decoded signature, when signed.
    signed_octets: String,
    signature: Vec<u8>,
}

fn decoded(raw: &str) -> String {
    url::form_urlencoded::parse(format!("v={raw}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Splits a raw Redirect-binding query: exactly one of `SAMLRequest` / `SAMLResponse`, each
/// SAML parameter at most once, `SigAlg` = rsa-sha256 when signed.
pub fn parse_redirect_query(raw_query: &str) -> Result<RedirectMessage, String> {
    let mut found: [Option<&str>; 5] = [None; 5];
    const NAMES: [&str; 5] = [
        "SAMLRequest",
        "SAMLResponse",
        "RelayState",
        "SigAlg",
        "Signature",
    ];
    for part in raw_query.split('&') {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        if let Some(i) = NAMES.iter().position(|n| *n == name) {
            if found[i].is_some() {
                return Err(format!("{name} appears twice"));
            }
            found[i] = Some(value);
        }
    }
    let (param, raw_msg) = match (found[0], found[1]) {
        (Some(r), None) => ("SAMLRequest", r),
        (None, Some(r)) => ("SAMLResponse", r),
        (Some(_), Some(_)) => return Err("both SAMLRequest and SAMLResponse".into()),
        (None, None) => return Err("no SAMLRequest or SAMLResponse".into()),
    };
    let mut out = RedirectMessage {
        param,
        message: decoded(raw_msg),
        relay_state: found[2].map(decoded),
        signed: false,
        signed_octets: String::new(),
        signature: Vec::new(),
    };
    match (found[3], found[4]) {
        (None, None) => {}
        (Some(alg), Some(sig)) => {
            if decoded(alg) != SIG_ALG_RSA_SHA256 {
                return Err(format!(
                    "SigAlg {} is not rsa-sha256",
                    super::error::clip(&decoded(alg))
                ));
            }
            let mut octets = format!("{param}={raw_msg}");
            if let Some(relay) = found[2] {
                octets.push_str(&format!("&RelayState={relay}"));
            }
            octets.push_str(&format!("&SigAlg={alg}"));
            out.signature = STANDARD
                .decode(decoded(sig).as_bytes())
                .map_err(|_| "Signature is not base64")?;
            out.signed_octets = octets;
            out.signed = true;
        }
        _ => return Err("SigAlg without Signature or Signature without SigAlg".into()),
    }
    Ok(out)
}

impl RedirectMessage {
    /// Whether the signature verifies with one of `certs` (the IdP's signing certificates).
    pub fn signature_valid(&self, certs: &[X509]) -> bool {
        self.signed
            && certs.iter().any(|cert| {
                let Ok(public) = cert.public_key() else {
                    return false;
                };
                let Ok(mut v) = openssl::sign::Verifier::new(MessageDigest::sha256(), &public)
                else {
                    return false;
                };
                v.update(self.signed_octets.as_bytes()).is_ok()
                    && v.verify(&self.signature).unwrap_or(false)
            })
    }
}

/// Checks a Redirect-binding signature against the IdP's signing certificates: a present
/// signature must verify; an absent one is accepted only when `required` is off.
pub fn check_redirect_signature(
    m: &RedirectMessage,
    certs: &[X509],
    required: bool,
) -> Result<(), String> {
    if m.signed {
        if m.signature_valid(certs) {
            Ok(())
        } else {
            Err("signature does not verify with the IdP's signing certificates".into())
        }
    } else if required {
        Err("message is not signed".into())
    } else {
        Ok(())
    }
}

// ---- HTTP-POST binding ----------------------------------------------------------------------

/// Largest base64 `SAMLRequest` / `SAMLResponse` form field: a signed message with its
/// certificate is 4–8 KB; this leaves room for the whole [`MAX_LOGOUT_XML_BYTES`].
pub const MAX_LOGOUT_POST_PARAM_BYTES: usize = MAX_LOGOUT_XML_BYTES / 3 * 4 + 4;
/// Largest POST body read at `/saml/slo`: form encoding may triple `+`, `/` and `=`, so twice
/// the field plus room for `RelayState` (the ACS sizes its body the same way).
pub const MAX_LOGOUT_FORM_BYTES: usize = 2 * MAX_LOGOUT_POST_PARAM_BYTES + 8192;

/// Longest `RelayState` accepted in a POST form; it is echoed to the IdP. The bindings ask for
/// at most 80 bytes; IdPs that send more stay far below this.
pub const MAX_RELAY_STATE_BYTES: usize = 4096;

/// The SAML fields of an HTTP-POST binding form (bindings §3.5.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostMessage {
    /// `SAMLRequest` or `SAMLResponse`.
    pub param: &'static str,
    /// The decoded XML (unauthenticated until its signature has been verified).
    pub xml: String,
    pub relay_state: Option<String>,
}

/// Splits a urlencoded POST body: exactly one of `SAMLRequest` / `SAMLResponse`, each SAML
/// field at most once, no `SigAlg` / `Signature` (those belong to the POST-SimpleSign
/// binding, which samlgate does not accept), then base64 → UTF-8 with the size bound.
pub fn parse_post_form(body: &[u8]) -> Result<PostMessage, String> {
    let mut fields: [Option<String>; 3] = [None, None, None];
    const NAMES: [&str; 3] = ["SAMLRequest", "SAMLResponse", "RelayState"];
    for (k, v) in url::form_urlencoded::parse(body) {
        if k == "SigAlg" || k == "Signature" {
            return Err(format!(
                "form field {k} belongs to the POST-SimpleSign binding, which is not accepted"
            ));
        }
        if let Some(i) = NAMES.iter().position(|n| *n == k) {
            if fields[i].is_some() {
                return Err(format!("{k} appears twice"));
            }
            fields[i] = Some(v.into_owned());
        }
    }
    let [request, response, relay_state] = fields;
    if let Some(r) = relay_state
        .as_ref()
        .filter(|r| r.len() > MAX_RELAY_STATE_BYTES)
    {
        return Err(format!(
            "RelayState is {} bytes long (at most {MAX_RELAY_STATE_BYTES})",
            r.len()
        ));
    }
    let (param, b64) = match (request, response) {
        (Some(r), None) => ("SAMLRequest", r),
        (None, Some(r)) => ("SAMLResponse", r),
        (Some(_), Some(_)) => return Err("both SAMLRequest and SAMLResponse".into()),
        (None, None) => return Err("no SAMLRequest or SAMLResponse".into()),
    };
    Ok(PostMessage {
        param,
        xml: decode_post_param(&b64)?,
        relay_state,
    })
}

/// base64 (line breaks allowed) → UTF-8, bounded.
pub fn decode_post_param(b64: &str) -> Result<String, String> {
    let compact: Vec<u8> = b64.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if compact.len() > MAX_LOGOUT_POST_PARAM_BYTES {
        return Err(format!(
            "encoded message is {} bytes, over the {MAX_LOGOUT_POST_PARAM_BYTES}-byte limit",
            compact.len()
        ));
    }
    let raw = STANDARD
        .decode(&compact)
        .map_err(|e| format!("message is not base64: {e}"))?;
    String::from_utf8(raw).map_err(|_| "message is not UTF-8".into())
}

/// The pre-filter's limits for a POST logout message: the ACS policy (algorithms, SHA-1
/// opt-in) with this module's size and shape caps, which no real logout message comes near.
pub fn prefilter_policy(
    acs: &super::prefilter::PrefilterPolicy,
) -> super::prefilter::PrefilterPolicy {
    super::prefilter::PrefilterPolicy {
        max_bytes: MAX_LOGOUT_XML_BYTES,
        max_depth: MAX_DEPTH,
        max_elements: MAX_ELEMENTS,
        ..acs.clone()
    }
}

// ---- who may sign a logout message ----------------------------------------------------------

/// Microsoft Entra ID's second name for a tenant. Its metadata (and its assertions) name the
/// IdP `https://sts.windows.net/<tenant>/`, but its LogoutResponse carries
/// `https://login.microsoftonline.com/<tenant>/`. Derived only from an entity ID of exactly
/// that first form with a GUID tenant, so it names the same tenant on another
/// Microsoft-controlled host; the message must still be signed by the metadata's certificates.
pub fn entra_logout_issuer(entity_id: &str) -> Option<String> {
    let tenant = entity_id
        .strip_prefix("https://sts.windows.net/")?
        .strip_suffix('/')?;
    is_guid(tenant).then(|| format!("https://login.microsoftonline.com/{tenant}/"))
}

/// `8-4-4-4-12` hexadecimal digits.
fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Every Issuer a logout message from the IdP may carry: its entity ID, Entra's derived
/// variant ([`entra_logout_issuer`]) and `saml.extra_logout_issuers`.
pub fn accepted_issuers(entity_id: &str, extra: &[String]) -> Vec<String> {
    let mut out = vec![entity_id.to_string()];
    out.extend(entra_logout_issuer(entity_id));
    out.extend(extra.iter().cloned());
    out
}

/// The checks a LogoutRequest and a LogoutResponse from the IdP share: the Issuer is one of
/// `issuers`, and a Destination, if present, is our SLO URL.
pub fn check_envelope(
    issuer: Option<&str>,
    destination: Option<&str>,
    issuers: &[String],
    slo_url: &str,
) -> Result<(), String> {
    match issuer {
        Some(i) if issuers.iter().any(|a| a == i) => {}
        Some(i) => return Err(format!("Issuer {} is not the IdP", super::error::clip(i))),
        None => return Err("no Issuer".into()),
    }
    match destination {
        Some(d) if d != slo_url => Err(format!(
            "Destination {} is not our SLO URL",
            super::error::clip(d)
        )),
        _ => Ok(()),
    }
}

// ---- answering by HTTP-POST -----------------------------------------------------------------

/// The only script on the auto-submit page; the page's CSP allows exactly its hash.
const AUTO_SUBMIT_SCRIPT: &str = "document.forms[0].submit();";

/// An auto-submit page carrying `param` (`xml`, base64-encoded) and `relay_state` to `action`, and its
/// Content-Security-Policy: the one script by hash. No `form-action`: Chromium applies it to
/// every redirect after the form's POST, and the IdP answers with redirects to its own pages,
/// to samlgate or to other service providers, which a `form-action` naming only the IdP would
/// block (the sign-out would stall half-way). The page has no text an attacker chooses
/// unescaped and runs no other script, so there is no injected form for `form-action` to stop.
/// Without JavaScript the person presses the button.
pub fn auto_post_page(
    action: &str,
    param: &str,
    xml: &str,
    relay_state: Option<&str>,
) -> Result<(String, String), String> {
    let url = url::Url::parse(action).map_err(|e| format!("bad SLO URL: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!(
            "SLO URL {} is not http(s)",
            super::error::clip(action)
        ));
    }
    let digest = openssl::sha::sha256(AUTO_SUBMIT_SCRIPT.as_bytes());
    let csp = format!(
        "default-src 'none'; script-src 'sha256-{}'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        STANDARD.encode(digest)
    );
    let relay = relay_state
        .map(|r| {
            format!(
                r#"<input type="hidden" name="RelayState" value="{}">"#,
                xml_escape(r)
            )
        })
        .unwrap_or_default();
    let html = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Signing out</title></head><body><form method="post" action="{action}"><input type="hidden" name="{param}" value="{value}">{relay}<p>Finishing sign-out at your identity provider.</p><button type="submit">Continue</button></form><script>{AUTO_SUBMIT_SCRIPT}</script></body></html>"#,
        action = xml_escape(action),
        param = xml_escape(param),
        value = STANDARD.encode(xml.as_bytes()),
    );
    Ok((html, csp))
}

/// Signs `xml` (whose root has `ID="{id}"`) with an enveloped rsa-sha256 signature placed
/// after its Issuer, as SAML core §5.4 asks, by libxmlsec1. `key_pem` is the SP key;
/// `cert_pem`, when set, goes into KeyInfo. Blocking.
pub fn sign_enveloped(
    xml: &str,
    id: &str,
    key_pem: &[u8],
    cert_pem: Option<&str>,
) -> Result<String, String> {
    let key_der = openssl::pkey::PKey::private_key_from_pem(key_pem)
        .and_then(|k| k.rsa())
        .and_then(|r| r.private_key_to_der())
        .map_err(|e| format!("SP key unusable for XML signing: {e}"))?;
    let key_info = match cert_pem {
        Some(pem) => {
            let der = X509::from_pem(pem.as_bytes())
                .and_then(|c| c.to_der())
                .map_err(|e| format!("SP certificate unreadable: {e}"))?;
            format!(
                "<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>",
                STANDARD.encode(der)
            )
        }
        None => String::new(),
    };
    let template = format!(
        r##"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="{SIG_ALG_RSA_SHA256}"/><ds:Reference URI="#{id}"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue></ds:SignatureValue>{key_info}</ds:Signature>"##,
        id = xml_escape(id),
    );
    let at = xml
        .find("</saml:Issuer>")
        .map(|i| i + "</saml:Issuer>".len())
        .ok_or("message has no saml:Issuer to place the signature after")?;
    let unsigned = format!("{}{template}{}", &xml[..at], &xml[at..]);
    use samael::crypto::CryptoProvider;
    let signed = samael::crypto::Crypto::sign_xml(&unsigned, &key_der)
        .map_err(|e| format!("XML signing failed: {e}"))?;
    // libxml2 adds an XML declaration; the form carries the element alone.
    Ok(match signed.trim().strip_prefix("<?xml") {
        Some(rest) => rest
            .find("?>")
            .map(|end| rest[end + 2..].trim_start().to_string())
            .unwrap_or(signed),
        None => signed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn deflate_b64(xml: &str) -> String {
        let mut enc =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(xml.as_bytes()).unwrap();
        STANDARD.encode(enc.finish().unwrap())
    }

    fn request(now: DateTime<Utc>) -> String {
        logout_request_xml(&LogoutRequestSpec {
            id: "_r1",
            issue_instant: now,
            destination: "https://app/saml/slo",
            issuer: "https://idp",
            name_id: "alice<&>",
            name_id_format: Some("urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"),
            session_index: Some("_s1"),
        })
    }

    #[test]
    fn built_request_parses_back() {
        let now = Utc::now();
        let xml = request(now);
        let r = parse_logout_request(&xml).unwrap();
        assert_eq!(r.id, "_r1");
        assert_eq!(r.name_id, "alice<&>");
        assert_eq!(r.issuer.as_deref(), Some("https://idp"));
        assert_eq!(r.destination.as_deref(), Some("https://app/saml/slo"));
        assert_eq!(r.session_indexes, vec!["_s1".to_string()]);
        assert_eq!(
            r.name_id_format.as_deref(),
            Some("urn:oasis:names:tc:SAML:2.0:nameid-format:persistent")
        );
        let samael: samael::schema::LogoutRequest = xml.parse().expect("samael parses it");
        assert_eq!(samael.id.as_deref(), Some("_r1"));
    }

    #[test]
    fn an_overlong_message_id_is_refused() {
        let spec = |id: &str| {
            logout_request_xml(&LogoutRequestSpec {
                id,
                issue_instant: Utc::now(),
                destination: "https://app/saml/slo",
                issuer: "https://idp",
                name_id: "alice",
                name_id_format: None,
                session_index: None,
            })
        };
        let longest = format!("_{}", "a".repeat(MAX_MESSAGE_ID_BYTES - 1));
        assert_eq!(parse_logout_request(&spec(&longest)).unwrap().id, longest);
        let err = parse_logout_request(&spec(&format!("{longest}b"))).unwrap_err();
        assert!(err.contains("ID is 257 bytes long"), "{err}");
    }

    #[test]
    fn built_response_parses_back() {
        let xml = logout_response_xml(&LogoutResponseSpec {
            id: "_p1",
            issue_instant: Utc::now(),
            destination: "https://idp/slo",
            in_response_to: "_r1",
            issuer: "https://app/saml/metadata",
            status_code: STATUS_SUCCESS,
        });
        let r = parse_logout_response(&xml).unwrap();
        assert_eq!(r.in_response_to.as_deref(), Some("_r1"));
        assert_eq!(r.status_code.as_deref(), Some(STATUS_SUCCESS));
        assert_eq!(r.issuer.as_deref(), Some("https://app/saml/metadata"));
        assert!(parse_logout_request(&xml).is_err(), "wrong root");
    }

    #[test]
    fn strict_parser_refuses_dangerous_or_odd_documents() {
        let ok = request(Utc::now());
        let doctype = format!("<!DOCTYPE x [<!ENTITY e \"boom\">]>{ok}");
        assert!(parse_logout_request(&doctype)
            .unwrap_err()
            .contains("DOCTYPE"));
        let pi = format!("<?xml-stylesheet href=\"x\"?>{ok}");
        assert!(parse_logout_request(&pi).is_err());
        let two_names = ok.replace(
            "</samlp:LogoutRequest>",
            "<saml:NameID>bob</saml:NameID></samlp:LogoutRequest>",
        );
        assert!(parse_logout_request(&two_names)
            .unwrap_err()
            .contains("more than once"));
        let wrong_ns = ok.replace(
            "xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\"",
            "xmlns:samlp=\"urn:evil\"",
        );
        assert!(parse_logout_request(&wrong_ns).is_err());
        let no_name = ok.replace("alice&lt;&amp;&gt;", "");
        assert!(parse_logout_request(&no_name).is_err());
        let deep = format!(
            "{}{}{}",
            ok.replace("</samlp:LogoutRequest>", ""),
            "<a>".repeat(20) + &"</a>".repeat(20),
            "</samlp:LogoutRequest>"
        );
        assert!(parse_logout_request(&deep).unwrap_err().contains("deeper"));
        let trailing = format!("{ok}<x/>");
        assert!(parse_logout_request(&trailing).is_err());
        assert!(parse_logout_request("<samlp:LogoutRequest").is_err());
    }

    #[test]
    fn inflation_is_bounded() {
        let xml = request(Utc::now());
        assert_eq!(decode_redirect_param(&deflate_b64(&xml)).unwrap(), xml);
        // A deflate bomb: small on the wire, huge inflated.
        let bomb = deflate_b64(&" ".repeat(10 * 1024 * 1024));
        assert!(bomb.len() < MAX_LOGOUT_PARAM_BYTES);
        assert!(decode_redirect_param(&bomb)
            .unwrap_err()
            .contains("exceeds"));
        assert!(decode_redirect_param("!!!").is_err());
        assert!(decode_redirect_param(&"A".repeat(MAX_LOGOUT_PARAM_BYTES + 4)).is_err());
    }

    #[test]
    fn times_are_checked() {
        let now = Utc::now();
        let skew = chrono::Duration::seconds(90);
        let age = chrono::Duration::minutes(10);
        assert!(check_times(Some(now), None, now, skew, age).is_ok());
        assert!(check_times(None, None, now, skew, age).is_err());
        assert!(check_times(Some(now + chrono::Duration::hours(1)), None, now, skew, age).is_err());
        assert!(check_times(Some(now - chrono::Duration::hours(1)), None, now, skew, age).is_err());
        let past = now - chrono::Duration::minutes(5);
        assert!(check_times(Some(now), Some(past), now, skew, age).is_err());
    }

    #[test]
    fn redirect_query_signature_round_trip() {
        let pair = key_pair();
        let key =
            super::super::decrypt::DecryptionKey::from_pem(pair.key_pem().unwrap().as_bytes())
                .unwrap();
        let cert = X509::from_pem(pair.cert_pem().unwrap().as_bytes()).unwrap();
        let xml = request(Utc::now());
        let url = super::super::authn::redirect_message_url(
            "https://app/saml/slo",
            "SAMLRequest",
            &xml,
            Some("r/s+1"),
            Some(&key),
        )
        .unwrap();
        let raw = url::Url::parse(&url).unwrap().query().unwrap().to_string();
        let m = parse_redirect_query(&raw).unwrap();
        assert_eq!(m.param, "SAMLRequest");
        assert_eq!(m.relay_state.as_deref(), Some("r/s+1"));
        assert!(m.signed && m.signature_valid(std::slice::from_ref(&cert)));
        assert_eq!(decode_redirect_param(&m.message).unwrap(), xml);
        let tampered = parse_redirect_query(&raw.replace("RelayState=r", "RelayState=x")).unwrap();
        assert!(!tampered.signature_valid(std::slice::from_ref(&cert)));
        let unsigned = super::super::authn::redirect_message_url(
            "https://app/saml/slo",
            "SAMLRequest",
            &xml,
            None,
            None,
        )
        .unwrap();
        let raw = url::Url::parse(&unsigned)
            .unwrap()
            .query()
            .unwrap()
            .to_string();
        let m = parse_redirect_query(&raw).unwrap();
        assert!(!m.signed && !m.signature_valid(&[cert]));
        assert!(m.relay_state.is_none());
        assert!(parse_redirect_query("SAMLRequest=a&SAMLRequest=b").is_err());
        assert!(parse_redirect_query("RelayState=a").is_err());
        assert!(parse_redirect_query("SAMLRequest=a&Signature=b").is_err());
    }

    #[test]
    fn redirect_signatures_are_required_or_verified() {
        let pair = key_pair();
        let key =
            super::super::decrypt::DecryptionKey::from_pem(pair.key_pem().unwrap().as_bytes())
                .unwrap();
        let cert = X509::from_pem(pair.cert_pem().unwrap().as_bytes()).unwrap();
        let xml = request(Utc::now());
        let query = |key| {
            let url = super::super::authn::redirect_message_url(
                "https://app/saml/slo",
                "SAMLRequest",
                &xml,
                Some("r"),
                key,
            )
            .unwrap();
            url::Url::parse(&url).unwrap().query().unwrap().to_string()
        };
        let signed = parse_redirect_query(&query(Some(&key))).unwrap();
        let tampered =
            parse_redirect_query(&query(Some(&key)).replace("RelayState=r", "RelayState=x"))
                .unwrap();
        let unsigned = parse_redirect_query(&query(None)).unwrap();
        let certs = std::slice::from_ref(&cert);
        for (m, certs, required, ok) in [
            (&signed, certs, true, true),
            (&signed, certs, false, true),
            (&signed, &[][..], false, false),
            (&tampered, certs, false, false),
            (&unsigned, certs, false, true),
            (&unsigned, certs, true, false),
        ] {
            assert_eq!(
                check_redirect_signature(m, certs, required).is_ok(),
                ok,
                "signed={} required={required} certs={}",
                m.signed,
                certs.len()
            );
        }
    }

    fn key_pair() -> crate::certgen::KeyPair {
        crate::certgen::self_signed(&crate::certgen::CertSpec {
            common_name: "samlgate logout test".into(),
            rsa_bits: 2048,
            days: 5,
            purpose: crate::certgen::Purpose::Saml,
            san: vec![],
        })
        .unwrap()
    }

    fn form(fields: &[(&str, &str)]) -> Vec<u8> {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish()
            .into_bytes()
    }

    #[test]
    fn post_form_takes_exactly_one_message_and_no_simplesign_fields() {
        let xml = request(Utc::now());
        let b64 = STANDARD.encode(&xml);
        let m = parse_post_form(&form(&[("SAMLRequest", &b64), ("RelayState", "r+1")])).unwrap();
        assert_eq!(m.param, "SAMLRequest");
        assert_eq!(m.xml, xml);
        assert_eq!(m.relay_state.as_deref(), Some("r+1"));
        // IdPs wrap base64 at 64 or 76 columns.
        let wrapped: String = b64
            .as_bytes()
            .chunks(64)
            .map(|c| format!("{}\r\n", std::str::from_utf8(c).unwrap()))
            .collect();
        let m = parse_post_form(&form(&[("SAMLResponse", &wrapped)])).unwrap();
        assert_eq!((m.param, m.xml.as_str()), ("SAMLResponse", xml.as_str()));
        let long_relay = "r".repeat(MAX_RELAY_STATE_BYTES + 1);
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("SAMLRequest", &b64), ("SAMLRequest", &b64)],
                "SAMLRequest appears twice",
            ),
            (
                &[("SAMLRequest", &b64), ("SAMLResponse", &b64)],
                "both SAMLRequest and SAMLResponse",
            ),
            (&[("RelayState", "x")], "no SAMLRequest or SAMLResponse"),
            (
                &[
                    ("SAMLRequest", &b64),
                    ("RelayState", "a"),
                    ("RelayState", "b"),
                ],
                "RelayState appears twice",
            ),
            (&[("SAMLRequest", &b64), ("SigAlg", "x")], "POST-SimpleSign"),
            (&[("SAMLRequest", "!!!")], "not base64"),
            (
                &[("SAMLRequest", &b64), ("RelayState", &long_relay)],
                "RelayState is 4097 bytes long (at most 4096)",
            ),
            (
                &[("SAMLRequest", &STANDARD.encode([0xff, 0xfe]))],
                "not UTF-8",
            ),
        ];
        for (fields, want) in cases {
            let err = parse_post_form(&form(fields)).unwrap_err();
            assert!(err.contains(want), "{fields:?}: {err}");
        }
        let big = "A".repeat(MAX_LOGOUT_POST_PARAM_BYTES + 4);
        let err = parse_post_form(&form(&[("SAMLRequest", &big)])).unwrap_err();
        assert!(err.contains("over the"), "{err}");
    }

    #[test]
    fn entra_variant_is_derived_only_from_an_exact_sts_entity_with_a_guid_tenant() {
        let guid = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        let cases: &[(String, Option<String>)] = &[
            (
                format!("https://sts.windows.net/{guid}/"),
                Some(format!("https://login.microsoftonline.com/{guid}/")),
            ),
            (
                format!("https://sts.windows.net/{}/", guid.to_uppercase()),
                Some(format!(
                    "https://login.microsoftonline.com/{}/",
                    guid.to_uppercase()
                )),
            ),
            // No trailing slash, another scheme or host, a path, a name for a tenant.
            (format!("https://sts.windows.net/{guid}"), None),
            (format!("http://sts.windows.net/{guid}/"), None),
            (format!("https://sts.windows.net.evil.test/{guid}/"), None),
            (format!("https://evil.test/sts.windows.net/{guid}/"), None),
            (format!("https://sts.windows.net/{guid}/x/"), None),
            (
                "https://sts.windows.net/contoso.onmicrosoft.com/".into(),
                None,
            ),
            (
                "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db4/".into(),
                None,
            ),
            (
                "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db4g/".into(),
                None,
            ),
            ("https://sts.windows.net//".into(), None),
            (format!("https://login.microsoftonline.com/{guid}/"), None),
        ];
        for (entity, want) in cases {
            assert_eq!(&entra_logout_issuer(entity), want, "{entity}");
        }
        let issuers = accepted_issuers(
            &format!("https://sts.windows.net/{guid}/"),
            &["https://extra.test/".to_string()],
        );
        assert_eq!(issuers.len(), 3);
        assert_eq!(
            accepted_issuers("https://idp.test", &[]),
            ["https://idp.test"]
        );
    }

    #[test]
    fn logout_messages_must_come_from_an_accepted_issuer_to_our_slo_url() {
        let idp = vec!["https://idp.test/metadata".to_string()];
        let slo = "https://app.test/saml/slo";
        let i = Some(idp[0].as_str());
        assert_eq!(check_envelope(i, Some(slo), &idp, slo), Ok(()));
        assert_eq!(check_envelope(i, None, &idp, slo), Ok(()));
        assert_eq!(
            check_envelope(None, Some(slo), &idp, slo).unwrap_err(),
            "no Issuer"
        );
        assert!(
            check_envelope(Some("https://evil.test"), Some(slo), &idp, slo)
                .unwrap_err()
                .contains("not the IdP")
        );
        // Exact match only: no prefix, case or slash leniency.
        for near in [
            "https://idp.test/metadata/",
            "HTTPS://idp.test/metadata",
            "https://idp.test/",
        ] {
            assert!(
                check_envelope(Some(near), None, &idp, slo).is_err(),
                "{near}"
            );
        }
        assert!(check_envelope(i, Some("https://app.test/other"), &idp, slo)
            .unwrap_err()
            .contains("not our SLO URL"));
        let two = vec![idp[0].clone(), "https://second.test/".to_string()];
        assert_eq!(
            check_envelope(Some("https://second.test/"), None, &two, slo),
            Ok(())
        );
    }

    #[test]
    fn auto_post_page_allows_only_its_own_script() {
        let (html, csp) = auto_post_page(
            "https://idp.example.com:8443/slo?x=1&y=2",
            "SAMLResponse",
            "<x/>",
            Some("r\"<script>"),
        )
        .unwrap();
        let hash = STANDARD.encode(openssl::sha::sha256(AUTO_SUBMIT_SCRIPT.as_bytes()));
        assert!(
            csp.contains(&format!("script-src 'sha256-{hash}';")),
            "{csp}"
        );
        // No form-action: it would block the IdP's redirects after the POST.
        assert!(!csp.contains("form-action"), "{csp}");
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        assert!(html.contains(&format!("<script>{AUTO_SUBMIT_SCRIPT}</script>")));
        assert_eq!(html.matches("<script").count(), 1, "{html}");
        assert!(html.contains(r#"action="https://idp.example.com:8443/slo?x=1&amp;y=2""#));
        assert!(html.contains(&format!(
            r#"name="SAMLResponse" value="{}""#,
            STANDARD.encode("<x/>")
        )));
        assert!(html.contains(r#"value="r&quot;&lt;script&gt;""#), "{html}");
        assert!(
            html.contains(r#"<button type="submit">"#),
            "works without JavaScript"
        );
        assert!(auto_post_page("javascript:alert(1)", "SAMLResponse", "", None).is_err());
        assert!(auto_post_page("not a url", "SAMLResponse", "", None).is_err());
    }

    /// What we sign by POST passes our own pre-filter and libxmlsec1 verification, and the
    /// verified bytes parse back; a changed byte fails.
    #[test]
    fn enveloped_signature_round_trip_through_prefilter_and_libxmlsec1() {
        use samael::crypto::{CertificateDer, Crypto, CryptoProvider, ReduceMode};
        let pair = key_pair();
        let xml = logout_response_xml(&LogoutResponseSpec {
            id: "_p1",
            issue_instant: Utc::now(),
            destination: "https://idp/slo",
            in_response_to: "_r1",
            issuer: "https://app/saml/metadata",
            status_code: STATUS_SUCCESS,
        });
        let cert_pem = pair.cert_pem().unwrap();
        let signed = sign_enveloped(
            &xml,
            "_p1",
            pair.key_pem().unwrap().as_bytes(),
            Some(&cert_pem),
        )
        .unwrap();
        assert!(!signed.starts_with("<?xml"));
        assert!(
            signed.find("</saml:Issuer><ds:Signature").is_some(),
            "after the Issuer"
        );
        let policy = prefilter_policy(&super::super::prefilter::PrefilterPolicy::default());
        let root = super::super::prefilter::Root::LogoutResponse;
        let facts =
            super::super::prefilter::prefilter_root(signed.as_bytes(), &policy, root).unwrap();
        assert!(facts.response_signed);
        let der = X509::from_pem(cert_pem.as_bytes())
            .unwrap()
            .to_der()
            .unwrap();
        let certs = [CertificateDer::from(der)];
        let verified =
            Crypto::reduce_xml_to_signed(&signed, &certs, ReduceMode::PreDigest).unwrap();
        let back = parse_logout_response(&verified).unwrap();
        assert_eq!(back.in_response_to.as_deref(), Some("_r1"));
        assert_eq!(back.status_code.as_deref(), Some(STATUS_SUCCESS));
        let tampered = signed.replace("InResponseTo=\"_r1\"", "InResponseTo=\"_r2\"");
        assert!(Crypto::reduce_xml_to_signed(&tampered, &certs, ReduceMode::PreDigest).is_err());
    }

    #[test]
    fn prefilter_screens_logout_messages_like_responses() {
        use super::super::prefilter::{prefilter_root, PrefilterError, Root};
        let policy = prefilter_policy(&super::super::prefilter::PrefilterPolicy::default());
        let ok = request(Utc::now());
        let facts = prefilter_root(ok.as_bytes(), &policy, Root::LogoutRequest).unwrap();
        assert_eq!(facts.response_id.as_deref(), Some("_r1"));
        assert_eq!(facts.issuer.as_deref(), Some("https://idp"));
        assert!(!facts.response_signed);
        // The other logout root, a Response, a DOCTYPE, an assertion smuggled in.
        assert!(matches!(
            prefilter_root(ok.as_bytes(), &policy, Root::LogoutResponse),
            Err(PrefilterError::WrongDecryptedRoot {
                expected: "samlp:LogoutResponse",
                ..
            })
        ));
        let doctype = format!("<!DOCTYPE x [<!ENTITY e \"boom\">]>{ok}");
        assert_eq!(
            prefilter_root(doctype.as_bytes(), &policy, Root::LogoutRequest),
            Err(PrefilterError::Doctype)
        );
        let with_assertion = ok.replace(
            "</samlp:LogoutRequest>",
            r#"<saml:Assertion ID="_a" Version="2.0"/></samlp:LogoutRequest>"#,
        );
        assert_eq!(
            prefilter_root(with_assertion.as_bytes(), &policy, Root::LogoutRequest)
                .unwrap_err()
                .to_string(),
            "element saml:Assertion not allowed inside samlp:LogoutRequest"
        );
        // A signature whose Reference names another element, or with an XSLT transform.
        let sig = |uri: &str, transform: &str| {
            ok.replace(
                "</saml:Issuer>",
                &format!(
                    r#"</saml:Issuer><ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><ds:Reference URI="{uri}"><ds:Transforms><ds:Transform Algorithm="{transform}"/></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue>AA==</ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue>AA==</ds:SignatureValue></ds:Signature>"#
                ),
            )
        };
        let env = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
        let signed = prefilter_root(sig("#_r1", env).as_bytes(), &policy, Root::LogoutRequest);
        assert!(signed.unwrap().response_signed);
        assert_eq!(
            prefilter_root(sig("#_other", env).as_bytes(), &policy, Root::LogoutRequest)
                .unwrap_err()
                .to_string(),
            "Reference URI #_other does not point at the ID of the signed samlp:LogoutRequest"
        );
        assert!(matches!(
            prefilter_root(
                sig("http://127.0.0.1/x", env).as_bytes(),
                &policy,
                Root::LogoutRequest
            ),
            Err(PrefilterError::ReferenceUriNotAllowed(_))
        ));
        assert!(matches!(
            prefilter_root(
                sig("#_r1", "http://www.w3.org/TR/1999/REC-xslt-19991116").as_bytes(),
                &policy,
                Root::LogoutRequest
            ),
            Err(PrefilterError::TransformNotAllowed(_))
        ));
    }
}
