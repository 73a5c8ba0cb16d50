//! What the shared backend stores, and how it is kept unreadable there: every value that
//! names a person (sessions, a pending sign-in's return path) is sealed with
//! ChaCha20-Poly1305 under a key derived (HKDF-SHA256) from the cookie secret, with the Redis
//! key it is stored under as associated data, so a value copied to another key, edited, or
//! written by anyone without the secret fails to open. Index keys (a user's sessions, a
//! subject's sessions) are HMACs of the name, never the name.
//!
//! Encoding is JSON inside the seal: a few hundred bytes per session, versioned by the first
//! byte so a later format can be told apart.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine;
use http::HeaderValue;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::{hkdf, hmac};
use serde::{Deserialize, Serialize};

use crate::session::{Identity, IdentityHeaderValues, Session};

/// Format byte of a sealed value.
const VERSION: u8 = 1;

/// Why a stored value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("stored value has an unknown format")]
    Format,
    #[error("stored value fails authentication (edited, foreign, or sealed under another secret)")]
    Tampered,
    #[error("stored value does not decode")]
    Decode,
}

/// The keys derived from the cookie secret for the backend.
pub struct Keys {
    aead: LessSafeKey,
    index: hmac::Key,
}

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn derive(secret: &[u8], info: &str) -> [u8; 32] {
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"samlgate state v1");
    let prk = salt.extract(secret);
    let mut out = [0u8; 32];
    let info = [info.as_bytes()];
    // Both calls fail only for an output longer than 255 × 32 bytes; 32 is fixed here.
    prk.expand(&info, Len(32))
        .and_then(|okm| okm.fill(&mut out))
        .expect("HKDF-SHA256 yields 32 bytes");
    out
}

impl Keys {
    pub fn new(cookie_secret: &[u8]) -> Keys {
        let aead = derive(cookie_secret, "sealed values");
        let index = derive(cookie_secret, "index keys");
        Keys {
            aead: LessSafeKey::new(
                UnboundKey::new(&CHACHA20_POLY1305, &aead).expect("32-byte ChaCha20 key"),
            ),
            index: hmac::Key::new(hmac::HMAC_SHA256, &index),
        }
    }

    /// Lower-case hex of HMAC(`name`): the index key part for a user or subject.
    pub fn index_tag(&self, name: &str) -> String {
        hex(hmac::sign(&self.index, name.as_bytes()).as_ref())
    }

    /// `VERSION ‖ nonce ‖ ciphertext ‖ tag`, bound to `key`.
    pub fn seal(&self, key: &str, plain: &[u8]) -> Vec<u8> {
        let nonce_bytes: [u8; NONCE_LEN] = {
            let id = crate::session::random_id();
            let mut n = [0u8; NONCE_LEN];
            n.copy_from_slice(&id[..NONCE_LEN]);
            n
        };
        let mut buf = plain.to_vec();
        self.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(key.as_bytes()),
                &mut buf,
            )
            .expect("ChaCha20-Poly1305 seals any length the backend stores");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&buf);
        out
    }

    pub fn open(&self, key: &str, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        let (&version, rest) = sealed.split_first().ok_or(OpenError::Format)?;
        if version != VERSION || rest.len() < NONCE_LEN {
            return Err(OpenError::Format);
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError::Format)?;
        let mut buf = body.to_vec();
        let plain = self
            .aead
            .open_in_place(nonce, Aad::from(key.as_bytes()), &mut buf)
            .map_err(|_| OpenError::Tampered)?;
        Ok(plain.to_vec())
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A session as it is encoded inside the seal.
#[derive(Serialize, Deserialize)]
struct StoredSession {
    user: String,
    email: Option<String>,
    display_name: Option<String>,
    preferred_username: Option<String>,
    groups: Vec<String>,
    name_id: String,
    name_id_format: Option<String>,
    session_index: Option<String>,
    attributes: Vec<(String, Vec<String>)>,
    role_name: Option<String>,
    /// The identity header values, base64 (a header value may hold non-UTF-8 bytes).
    h_user: String,
    h_email: Option<String>,
    h_groups: Option<String>,
    h_preferred_username: Option<String>,
    h_role: Option<String>,
    /// Forwarded attributes: (header name, base64 value).
    h_attributes: Vec<(String, String)>,
    created_ms: u64,
    expires_ms: u64,
}

pub fn encode_session(s: &Session) -> Vec<u8> {
    let b64 = |v: &HeaderValue| B64.encode(v.as_bytes());
    let stored = StoredSession {
        user: s.identity.user.clone(),
        email: s.identity.email.clone(),
        display_name: s.identity.display_name.clone(),
        preferred_username: s.identity.preferred_username.clone(),
        groups: s.identity.groups.clone(),
        name_id: s.identity.name_id.clone(),
        name_id_format: s.identity.name_id_format.clone(),
        session_index: s.identity.session_index.clone(),
        attributes: s.identity.attributes.clone(),
        role_name: s.headers.role_name.clone(),
        h_user: b64(&s.headers.user),
        h_email: s.headers.email.as_ref().map(b64),
        h_groups: s.headers.groups.as_ref().map(b64),
        h_preferred_username: s.headers.preferred_username.as_ref().map(b64),
        h_role: s.headers.role.as_ref().map(b64),
        h_attributes: s
            .headers
            .attributes
            .iter()
            .map(|(name, value)| (name.as_str().to_string(), b64(value)))
            .collect(),
        created_ms: millis(s.created_at),
        expires_ms: millis(s.expires_at),
    };
    serde_json::to_vec(&stored).expect("a session serializes")
}

pub fn decode_session(bytes: &[u8]) -> Result<Session, OpenError> {
    let s: StoredSession = serde_json::from_slice(bytes).map_err(|_| OpenError::Decode)?;
    // Header values were valid when sealed; anything else means a foreign writer.
    let header = |v: &str| -> Result<HeaderValue, OpenError> {
        let bytes = B64.decode(v).map_err(|_| OpenError::Decode)?;
        HeaderValue::from_bytes(&bytes).map_err(|_| OpenError::Decode)
    };
    let opt = |v: &Option<String>| v.as_deref().map(header).transpose();
    let attributes = s
        .h_attributes
        .iter()
        .map(|(name, value)| {
            let name =
                http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| OpenError::Decode)?;
            Ok((name, header(value)?))
        })
        .collect::<Result<Vec<_>, OpenError>>()?;
    Ok(Session {
        headers: IdentityHeaderValues {
            user: header(&s.h_user)?,
            email: opt(&s.h_email)?,
            groups: opt(&s.h_groups)?,
            preferred_username: opt(&s.h_preferred_username)?,
            role_name: s.role_name,
            role: opt(&s.h_role)?,
            attributes,
        },
        identity: Identity {
            user: s.user,
            email: s.email,
            display_name: s.display_name,
            preferred_username: s.preferred_username,
            groups: s.groups,
            name_id: s.name_id,
            name_id_format: s.name_id_format,
            session_index: s.session_index,
            attributes: s.attributes,
        },
        created_at: UNIX_EPOCH + Duration::from_millis(s.created_ms),
        expires_at: UNIX_EPOCH + Duration::from_millis(s.expires_ms),
    })
}

/// The sealed part of a pending sign-in.
#[derive(Serialize, Deserialize)]
pub struct StoredPending {
    pub request_id: String,
    pub return_path: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        let now = SystemTime::now();
        Session {
            identity: Identity {
                user: "alice@example.com".into(),
                email: Some("alice@example.com".into()),
                groups: vec!["admins".into(), "analysts".into()],
                name_id: "n-1".into(),
                session_index: Some("_s1".into()),
                attributes: vec![("department".into(), vec!["finance".into()])],
                ..Identity::default()
            },
            headers: IdentityHeaderValues {
                user: HeaderValue::from_static("alice@example.com"),
                email: None,
                groups: Some(HeaderValue::from_bytes(b"admins,analysts\xe9").expect("obs-text")),
                preferred_username: None,
                role_name: Some("admin".into()),
                role: Some(HeaderValue::from_static("admin")),
                attributes: vec![(
                    http::HeaderName::from_static("x-forwarded-department"),
                    HeaderValue::from_static("finance"),
                )],
            },
            created_at: now,
            expires_at: now + Duration::from_secs(3600),
        }
    }

    #[test]
    fn sessions_round_trip_through_the_seal() {
        let keys = Keys::new(&[7; 32]);
        let s = session();
        let sealed = keys.seal("k1", &encode_session(&s));
        let plain = keys.open("k1", &sealed).expect("opens");
        let back = decode_session(&plain).expect("decodes");
        assert_eq!(back.identity, s.identity);
        assert_eq!(back.headers.groups, s.headers.groups);
        assert_eq!(back.headers.role, s.headers.role);
        assert_eq!(back.headers.role_name, s.headers.role_name);
        assert_eq!(back.headers.attributes, s.headers.attributes);
        assert_eq!(millis(back.expires_at), millis(s.expires_at));
        // Nothing readable: the user name is not in the stored bytes.
        let needle = b"alice";
        assert!(!sealed.windows(needle.len()).any(|w| w == needle));
    }

    #[test]
    fn edited_moved_foreign_and_garbled_values_are_refused() {
        let keys = Keys::new(&[7; 32]);
        let sealed = keys.seal("k1", &encode_session(&session()));
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let mut mid = sealed.clone();
        mid[20] ^= 0x80;
        let cases: &[(&str, &[u8], OpenError)] = &[
            ("k1", &flipped, OpenError::Tampered),
            ("k1", &mid, OpenError::Tampered),
            ("k2", &sealed, OpenError::Tampered),
            ("k1", b"", OpenError::Format),
            ("k1", b"\x02abc", OpenError::Format),
            ("k1", b"\x01short", OpenError::Format),
            ("k1", b"{\"user\":\"mallory\"}", OpenError::Format),
        ];
        for (key, value, want) in cases {
            assert_eq!(keys.open(key, value), Err(*want), "{key}");
        }
        let other = Keys::new(&[8; 32]);
        assert_eq!(other.open("k1", &sealed), Err(OpenError::Tampered));
        // A valid seal around garbage does not decode into a session.
        let junk = keys.seal("k1", b"not json");
        let plain = keys.open("k1", &junk).expect("opens");
        assert!(matches!(decode_session(&plain), Err(OpenError::Decode)));
    }

    #[test]
    fn index_tags_hide_the_name_and_depend_on_the_secret() {
        let a = Keys::new(&[7; 32]);
        let b = Keys::new(&[8; 32]);
        assert_eq!(a.index_tag("alice"), a.index_tag("alice"));
        assert_ne!(a.index_tag("alice"), a.index_tag("bob"));
        assert_ne!(a.index_tag("alice"), b.index_tag("alice"));
        assert_eq!(a.index_tag("alice").len(), 64);
    }
}
