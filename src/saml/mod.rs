//! SAML 2.0 service-provider logic: everything between "this browser needs to sign in" and
//! "this verified person signed in".
//!
//! - [`metadata`]: the IdP's metadata (entity ID, SSO URL, signing certificates) and ours.
//! - [`metadata_source`]: metadata fetched from a URL, cached on disk and refreshed.
//! - [`authn`]: AuthnRequests by HTTP-Redirect binding, with our own 128-bit ids.
//! - [`prefilter`]: the strict structural gate that runs before libxmlsec1 sees a byte.
//! - [`decrypt`]: `EncryptedAssertion` / `EncryptedID` opened with the SP key (XML Encryption).
//! - [`verify`]: base64 → pre-filter → samael signature verification → [`policy`].
//! - [`policy`]: the checks samael leaves to us, as pure functions on parsed data.
//! - [`logout`]: Single Logout messages (Redirect and POST bindings): build, parse strictly,
//!   verify, answer.
//! - [`replay`]: assertion ids already used.
//! - [`error`]: why a sign-in failed, for the log and for the person.
//!
//! Nothing here touches sockets; the gateway calls in with bytes and gets decisions back.

pub mod authn;
pub mod decrypt;
pub mod error;
pub mod logout;
pub mod metadata;
pub mod metadata_source;
pub mod policy;
pub mod prefilter;
pub mod replay;
pub mod verify;

/// Escapes text for XML (and HTML) element content and quoted attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}
