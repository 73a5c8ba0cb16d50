//! XML Encryption for SAML: `saml:EncryptedAssertion` and `saml:EncryptedID` decrypted with the
//! SP's RSA key, in the gateway, with the `openssl` crate.
//!
//! samael 0.0.22 decrypts only inside a signed Response, never checks the inner assertion's own
//! signature, and panics on short ciphertext (`encoded_value[0..iv_len]`,
//! `encoded_value.len() - tag_len`). So samael never sees ciphertext here: [`find_encrypted`]
//! reads the encrypted element out of a document the pre-filter already accepted, [`decrypt`]
//! checks every length before it slices, unwraps the content key and returns the plaintext, and
//! the verifier ([`super::verify`]) runs that plaintext through the pre-filter and the same
//! signature path as a plaintext assertion.
//!
//! Supported:
//! - key transport `rsa-oaep-mgf1p` (OAEP digest SHA-1, or SHA-256/384/512 named by a
//!   `ds:DigestMethod`; MGF1 with SHA-1, which the algorithm fixes) and, only when
//!   `saml.allow_rsa1_5` is on, `rsa-1_5` (with implicit rejection: a failed unwrap continues
//!   with a random key, so padding errors are not told apart from data errors);
//! - content encryption `aes128/192/256-cbc` (XML Encryption padding: only the last byte is
//!   checked, as .NET pads with random bytes) and `aes128/192/256-gcm` (12-byte IV, 16-byte
//!   tag, no AAD);
//! - the `xenc:EncryptedKey` inside `EncryptedData/ds:KeyInfo` (SimpleSAMLphp, Shibboleth,
//!   AD FS) or next to `EncryptedData` in the container (at most four in all; the first that
//!   unwraps to a key of the right length is used).
//!
//! Nothing here panics on any input: lengths are checked before every slice, element counts
//! and depth are capped, and the tests feed random and truncated ciphertexts.

use std::borrow::Cow;

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use openssl::encrypt::Decrypter;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Padding;
use openssl::symm::{Cipher, Crypter, Mode};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

pub const NS_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
pub const NS_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const NS_XENC: &[u8] = b"http://www.w3.org/2001/04/xmlenc#";
const NS_XENC11: &[u8] = b"http://www.w3.org/2009/xmlenc11#";
const NS_DSIG: &[u8] = b"http://www.w3.org/2000/09/xmldsig#";

/// `EncryptedData/@Type` for an encrypted element (the only type SAML uses).
pub const TYPE_ELEMENT: &str = "http://www.w3.org/2001/04/xmlenc#Element";

pub const ALG_RSA_OAEP_MGF1P: &str = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p";
pub const ALG_RSA_1_5: &str = "http://www.w3.org/2001/04/xmlenc#rsa-1_5";
pub const ALG_AES128_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes128-cbc";
pub const ALG_AES192_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes192-cbc";
pub const ALG_AES256_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes256-cbc";
pub const ALG_AES128_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes128-gcm";
pub const ALG_AES192_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes192-gcm";
pub const ALG_AES256_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes256-gcm";

pub const DIGEST_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";
pub const DIGEST_SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
pub const DIGEST_SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#sha384";
pub const DIGEST_SHA512: &str = "http://www.w3.org/2001/04/xmlenc#sha512";

/// `Response/EncryptedAssertion`.
pub const ENCRYPTED_ASSERTION_IN_RESPONSE: &[(&str, &str)] = &[
    (NS_PROTOCOL, "Response"),
    (NS_ASSERTION, "EncryptedAssertion"),
];
/// `Response/Assertion/Subject/EncryptedID` (a plaintext assertion).
pub const ENCRYPTED_ID_IN_RESPONSE: &[(&str, &str)] = &[
    (NS_PROTOCOL, "Response"),
    (NS_ASSERTION, "Assertion"),
    (NS_ASSERTION, "Subject"),
    (NS_ASSERTION, "EncryptedID"),
];
/// `Assertion/Subject/EncryptedID` (a decrypted assertion).
pub const ENCRYPTED_ID_IN_ASSERTION: &[(&str, &str)] = &[
    (NS_ASSERTION, "Assertion"),
    (NS_ASSERTION, "Subject"),
    (NS_ASSERTION, "EncryptedID"),
];

/// At most this many `xenc:EncryptedKey` per encrypted element (each costs an RSA operation).
pub const MAX_ENCRYPTED_KEYS: usize = 4;
/// Elements and nesting inside one encrypted element.
const MAX_NODES: usize = 256;
const MAX_DEPTH: usize = 16;
/// Nesting of the document around it (the pre-filter caps the real documents far lower).
const MAX_WALK_DEPTH: usize = 256;
/// A `CipherValue` longer than this is refused while reading (the policy's own cap is lower).
const MAX_CIPHER_TEXT: usize = 8 * 1024 * 1024;
/// Quoted attacker text in messages.
const EXCERPT_CHARS: usize = 80;

/// Why encrypted content could not be used. Messages are for the audit log: bounded quotes
/// of attacker data, no control characters, never key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    #[error("no SP private key is configured (saml.sp_key_file)")]
    NoKey,
    #[error("{0}")]
    Structure(String),
    #[error("content encryption algorithm not supported: {0}")]
    UnsupportedDataAlgorithm(String),
    #[error("key transport algorithm not supported: {0}")]
    UnsupportedKeyTransport(String),
    #[error("key transport rsa-1_5 is refused (saml.allow_rsa1_5 is off)")]
    Rsa15Refused,
    #[error("rsa-oaep-mgf1p digest not supported: {0}")]
    UnsupportedOaepDigest(String),
    #[error("rsa-oaep-mgf1p with OAEPparams or an MGF element is not supported")]
    OaepParameters,
    #[error("{0} CipherValue is not base64")]
    Base64(&'static str),
    #[error("{what} ciphertext is {size} bytes, more than the {limit}-byte limit")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    #[error("EncryptedKey ciphertext is {got} bytes; the SP key needs exactly {want}")]
    KeyCipherLength { got: usize, want: usize },
    #[error("key transport failed: the EncryptedKey is not for the SP key, or is corrupted")]
    KeyTransport,
    #[error("key transport yielded a {got}-byte key; {alg} needs {want}")]
    KeyLength {
        got: usize,
        want: usize,
        alg: &'static str,
    },
    #[error(
        "{alg} ciphertext of {got} bytes is too short or not block-aligned (IV and tag included)"
    )]
    CiphertextLength { got: usize, alg: &'static str },
    #[error("{alg} decryption failed: bad padding (wrong key or corrupted ciphertext)")]
    Padding { alg: &'static str },
    #[error("{alg} authentication tag mismatch (wrong key or tampered ciphertext)")]
    Tag { alg: &'static str },
    #[error("decrypted content is not UTF-8")]
    NotUtf8,
    #[error("cipher error: {0}")]
    Cipher(String),
}

/// Settings for [`decrypt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecryptPolicy {
    /// Accept `rsa-1_5` key transport (Bleichenbacher-prone; off unless the IdP can do no
    /// better).
    pub allow_rsa1_5: bool,
    /// Largest decoded content ciphertext (IV and tag included) accepted.
    pub max_ciphertext_bytes: usize,
}

impl Default for DecryptPolicy {
    fn default() -> Self {
        DecryptPolicy {
            allow_rsa1_5: false,
            max_ciphertext_bytes: 256 * 1024,
        }
    }
}

/// The SP's RSA private key (2048 to 8192 bits).
pub struct DecryptionKey {
    key: PKey<Private>,
    /// Modulus length in bytes: every RSA ciphertext for this key has exactly this length.
    size: usize,
}

impl std::fmt::Debug for DecryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptionKey")
            .field("bits", &(self.size * 8))
            .finish_non_exhaustive()
    }
}

/// Why the SP key (`saml.sp_key_file`) or its certificate (`saml.sp_cert_file`) is refused.
/// The sentences follow the key name in config errors ("saml.sp_key_file: is …").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpKeyError {
    #[error("is an encrypted (passphrase-protected) key; samlgate needs it unencrypted (`openssl pkey -in sp.key -out sp-plain.key`)")]
    Encrypted,
    #[error("is not a PEM private key (PKCS#8 or PKCS#1)")]
    NotPemKey,
    #[error("is not an RSA key: XML Encryption key transport (rsa-oaep-mgf1p) needs RSA")]
    NotRsa,
    #[error("is a {0}-bit RSA key; 2048 to 8192 bits are accepted")]
    Size(u32),
    #[error("is not a PEM certificate")]
    NotPemCertificate,
    #[error("has an unreadable public key")]
    UnreadablePublicKey,
    #[error(
        "does not match saml.sp_key_file (the IdP would encrypt to a key samlgate does not hold)"
    )]
    CertificateMismatch,
}

impl DecryptionKey {
    /// An unencrypted PEM private key (PKCS#8 or PKCS#1), RSA of 2048 to 8192 bits.
    pub fn from_pem(pem: &[u8]) -> Result<DecryptionKey, SpKeyError> {
        if pem.windows(9).any(|w| w == b"ENCRYPTED") {
            return Err(SpKeyError::Encrypted);
        }
        // The callback refuses any passphrase prompt (OpenSSL's default would read the tty).
        let key = PKey::private_key_from_pem_callback(pem, |_| Ok(0))
            .map_err(|_| SpKeyError::NotPemKey)?;
        if key.rsa().is_err() {
            return Err(SpKeyError::NotRsa);
        }
        let bits = key.bits();
        if !(2048..=8192).contains(&bits) {
            return Err(SpKeyError::Size(bits));
        }
        let size = key.size();
        Ok(DecryptionKey { key, size })
    }

    /// Whether the PEM certificate carries this key's public half.
    pub fn matches_certificate(&self, cert_pem: &[u8]) -> Result<(), SpKeyError> {
        let cert =
            openssl::x509::X509::from_pem(cert_pem).map_err(|_| SpKeyError::NotPemCertificate)?;
        let public = cert
            .public_key()
            .map_err(|_| SpKeyError::UnreadablePublicKey)?;
        if self.key.public_eq(&public) {
            Ok(())
        } else {
            Err(SpKeyError::CertificateMismatch)
        }
    }

    /// Modulus length in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The same key, for signing AuthnRequests ([`super::authn`]): one loader for the SP key.
    pub(crate) fn private_key(&self) -> &PKey<Private> {
        &self.key
    }
}

/// One encrypted element as written, not yet decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedParts {
    /// `EncryptedData/EncryptionMethod/@Algorithm`.
    pub data_algorithm: String,
    /// `EncryptedData/CipherData/CipherValue` text (base64, whitespace allowed).
    pub data_cipher_value: String,
    /// Every `EncryptedKey` (in `ds:KeyInfo`, then siblings of `EncryptedData`).
    pub keys: Vec<EncryptedKeyParts>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedKeyParts {
    /// `EncryptionMethod/@Algorithm`.
    pub algorithm: String,
    /// `EncryptionMethod/ds:DigestMethod/@Algorithm` (OAEP digest), if given.
    pub digest: Option<String>,
    /// `EncryptionMethod` carries `xenc:OAEPparams` or `xenc11:MGF`.
    pub oaep_parameters: bool,
    /// `CipherData/CipherValue` text.
    pub cipher_value: String,
}

/// A decrypted `saml:NameID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecryptedNameId {
    pub value: String,
    pub format: Option<String>,
    pub sp_name_qualifier: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chaining {
    Cbc,
    Gcm,
}

/// A content-encryption algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DataAlg {
    mode: Chaining,
    key_len: usize,
}

impl DataAlg {
    fn from_uri(uri: &str) -> Option<DataAlg> {
        let (mode, key_len) = match uri {
            ALG_AES128_CBC => (Chaining::Cbc, 16),
            ALG_AES192_CBC => (Chaining::Cbc, 24),
            ALG_AES256_CBC => (Chaining::Cbc, 32),
            ALG_AES128_GCM => (Chaining::Gcm, 16),
            ALG_AES192_GCM => (Chaining::Gcm, 24),
            ALG_AES256_GCM => (Chaining::Gcm, 32),
            _ => return None,
        };
        Some(DataAlg { mode, key_len })
    }

    fn name(self) -> &'static str {
        match (self.mode, self.key_len) {
            (Chaining::Cbc, 16) => "aes128-cbc",
            (Chaining::Cbc, 24) => "aes192-cbc",
            (Chaining::Cbc, _) => "aes256-cbc",
            (Chaining::Gcm, 16) => "aes128-gcm",
            (Chaining::Gcm, 24) => "aes192-gcm",
            (Chaining::Gcm, _) => "aes256-gcm",
        }
    }

    fn cipher(self) -> Cipher {
        match (self.mode, self.key_len) {
            (Chaining::Cbc, 16) => Cipher::aes_128_cbc(),
            (Chaining::Cbc, 24) => Cipher::aes_192_cbc(),
            (Chaining::Cbc, _) => Cipher::aes_256_cbc(),
            (Chaining::Gcm, 16) => Cipher::aes_128_gcm(),
            (Chaining::Gcm, 24) => Cipher::aes_192_gcm(),
            (Chaining::Gcm, _) => Cipher::aes_256_gcm(),
        }
    }
}

const AES_BLOCK: usize = 16;
const GCM_IV: usize = 12;
const GCM_TAG: usize = 16;

/// Decrypts one encrypted element with `key` and returns the plaintext (UTF-8 XML, not yet
/// checked in any other way).
pub fn decrypt(
    parts: &EncryptedParts,
    key: &DecryptionKey,
    policy: &DecryptPolicy,
) -> Result<String, DecryptError> {
    let alg = DataAlg::from_uri(&parts.data_algorithm)
        .ok_or_else(|| DecryptError::UnsupportedDataAlgorithm(excerpt(&parts.data_algorithm)))?;
    let data = decode_base64(
        &parts.data_cipher_value,
        policy.max_ciphertext_bytes,
        "EncryptedData",
    )?;
    // Cheap shape checks before any RSA operation.
    let shape_ok = match alg.mode {
        Chaining::Cbc => data.len() >= 2 * AES_BLOCK && data.len() % AES_BLOCK == 0,
        Chaining::Gcm => data.len() >= GCM_IV + GCM_TAG,
    };
    if !shape_ok {
        return Err(DecryptError::CiphertextLength {
            got: data.len(),
            alg: alg.name(),
        });
    }
    let content_key = unwrap_content_key(&parts.keys, key, alg, policy)?;
    let plaintext = match alg.mode {
        Chaining::Cbc => decrypt_cbc(alg, &content_key, &data)?,
        Chaining::Gcm => decrypt_gcm(alg, &content_key, &data)?,
    };
    String::from_utf8(plaintext).map_err(|_| DecryptError::NotUtf8)
}

/// Outcome of one EncryptedKey.
enum Unwrap {
    Key(Vec<u8>),
    /// rsa-1_5 failed or gave the wrong length: continue with a random key if nothing else
    /// works (implicit rejection).
    Rejected,
    Failed(DecryptError),
}

fn unwrap_content_key(
    keys: &[EncryptedKeyParts],
    key: &DecryptionKey,
    alg: DataAlg,
    policy: &DecryptPolicy,
) -> Result<Vec<u8>, DecryptError> {
    if keys.is_empty() {
        return Err(DecryptError::Structure(
            "no xenc:EncryptedKey carries the content key".into(),
        ));
    }
    if keys.len() > MAX_ENCRYPTED_KEYS {
        return Err(DecryptError::Structure(format!(
            "more than {MAX_ENCRYPTED_KEYS} xenc:EncryptedKey elements"
        )));
    }
    let mut first_error = None;
    let mut rejected = false;
    for k in keys {
        match unwrap_one(k, key, alg, policy) {
            Unwrap::Key(content_key) => return Ok(content_key),
            Unwrap::Rejected => rejected = true,
            Unwrap::Failed(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if rejected {
        let mut random = vec![0u8; alg.key_len];
        openssl::rand::rand_bytes(&mut random)
            .map_err(|e| DecryptError::Cipher(excerpt(&e.to_string())))?;
        return Ok(random);
    }
    Err(first_error.unwrap_or(DecryptError::KeyTransport))
}

fn unwrap_one(
    k: &EncryptedKeyParts,
    key: &DecryptionKey,
    alg: DataAlg,
    policy: &DecryptPolicy,
) -> Unwrap {
    let oaep_digest = match k.algorithm.as_str() {
        ALG_RSA_OAEP_MGF1P => {
            if k.oaep_parameters {
                return Unwrap::Failed(DecryptError::OaepParameters);
            }
            Some(match k.digest.as_deref() {
                None | Some(DIGEST_SHA1) => MessageDigest::sha1(),
                Some(DIGEST_SHA256) => MessageDigest::sha256(),
                Some(DIGEST_SHA384) => MessageDigest::sha384(),
                Some(DIGEST_SHA512) => MessageDigest::sha512(),
                Some(other) => {
                    return Unwrap::Failed(DecryptError::UnsupportedOaepDigest(excerpt(other)))
                }
            })
        }
        ALG_RSA_1_5 if policy.allow_rsa1_5 => None,
        ALG_RSA_1_5 => return Unwrap::Failed(DecryptError::Rsa15Refused),
        other => {
            return Unwrap::Failed(DecryptError::UnsupportedKeyTransport(excerpt(other)));
        }
    };
    // An RSA ciphertext is exactly as long as the modulus; anything else is refused before
    // OpenSSL sees it.
    let wrapped = match decode_base64(&k.cipher_value, key.size, "EncryptedKey") {
        Ok(w) => w,
        Err(DecryptError::TooLarge { size, .. }) => {
            return Unwrap::Failed(DecryptError::KeyCipherLength {
                got: size,
                want: key.size,
            })
        }
        Err(e) => return Unwrap::Failed(e),
    };
    if wrapped.len() != key.size {
        return Unwrap::Failed(DecryptError::KeyCipherLength {
            got: wrapped.len(),
            want: key.size,
        });
    }
    let result = rsa_decrypt(&key.key, &wrapped, oaep_digest);
    match (oaep_digest, result) {
        (_, Ok(content_key)) if content_key.len() == alg.key_len => Unwrap::Key(content_key),
        (Some(_), Ok(content_key)) => Unwrap::Failed(DecryptError::KeyLength {
            got: content_key.len(),
            want: alg.key_len,
            alg: alg.name(),
        }),
        (Some(_), Err(())) => Unwrap::Failed(DecryptError::KeyTransport),
        (None, _) => Unwrap::Rejected,
    }
}

/// RSA-OAEP (MGF1-SHA1, `digest`) or, with `None`, PKCS#1 v1.5.
fn rsa_decrypt(
    key: &PKey<Private>,
    wrapped: &[u8],
    oaep_digest: Option<MessageDigest>,
) -> Result<Vec<u8>, ()> {
    let mut d = Decrypter::new(key).map_err(|_| ())?;
    match oaep_digest {
        Some(md) => {
            d.set_rsa_padding(Padding::PKCS1_OAEP).map_err(|_| ())?;
            d.set_rsa_oaep_md(md).map_err(|_| ())?;
            d.set_rsa_mgf1_md(MessageDigest::sha1()).map_err(|_| ())?;
        }
        None => d.set_rsa_padding(Padding::PKCS1).map_err(|_| ())?,
    }
    let len = d.decrypt_len(wrapped).map_err(|_| ())?;
    let mut out = vec![0u8; len];
    let n = d.decrypt(wrapped, &mut out).map_err(|_| ())?;
    out.truncate(n);
    Ok(out)
}

fn decrypt_cbc(alg: DataAlg, key: &[u8], data: &[u8]) -> Result<Vec<u8>, DecryptError> {
    // Length checked by the caller; re-checked here so this function stands on its own.
    if data.len() < 2 * AES_BLOCK || data.len() % AES_BLOCK != 0 || key.len() != alg.key_len {
        return Err(DecryptError::CiphertextLength {
            got: data.len(),
            alg: alg.name(),
        });
    }
    let (iv, ciphertext) = data.split_at(AES_BLOCK);
    let cipher_err = |e: openssl::error::ErrorStack| DecryptError::Cipher(excerpt(&e.to_string()));
    let mut c = Crypter::new(alg.cipher(), Mode::Decrypt, key, Some(iv)).map_err(cipher_err)?;
    // XML Encryption padding is not PKCS#7: only the last byte (the pad length) is defined.
    c.pad(false);
    let mut out = vec![0u8; ciphertext.len() + AES_BLOCK];
    let mut n = c.update(ciphertext, &mut out).map_err(cipher_err)?;
    n += c.finalize(&mut out[n..]).map_err(cipher_err)?;
    out.truncate(n);
    let pad = out.last().copied().map_or(0, usize::from);
    if pad == 0 || pad > AES_BLOCK || pad > out.len() {
        return Err(DecryptError::Padding { alg: alg.name() });
    }
    out.truncate(out.len() - pad);
    Ok(out)
}

fn decrypt_gcm(alg: DataAlg, key: &[u8], data: &[u8]) -> Result<Vec<u8>, DecryptError> {
    if data.len() < GCM_IV + GCM_TAG || key.len() != alg.key_len {
        return Err(DecryptError::CiphertextLength {
            got: data.len(),
            alg: alg.name(),
        });
    }
    let (iv, rest) = data.split_at(GCM_IV);
    let (ciphertext, tag) = rest.split_at(rest.len() - GCM_TAG);
    openssl::symm::decrypt_aead(alg.cipher(), key, Some(iv), &[], ciphertext, tag)
        .map_err(|_| DecryptError::Tag { alg: alg.name() })
}

/// Base64 with whitespace (line breaks) allowed and padding optional; the decoded length is
/// bounded before decoding.
fn decode_base64(text: &str, limit: usize, what: &'static str) -> Result<Vec<u8>, DecryptError> {
    const B64: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let decoded_max = compact.len() / 4 * 3 + 3;
    // Every 4 characters give 3 bytes; refuse before allocating for the decode.
    if compact.len().saturating_sub(4) / 4 * 3 > limit {
        return Err(DecryptError::TooLarge {
            what,
            size: decoded_max,
            limit,
        });
    }
    let decoded = B64
        .decode(&compact)
        .map_err(|_| DecryptError::Base64(what))?;
    if decoded.len() > limit {
        return Err(DecryptError::TooLarge {
            what,
            size: decoded.len(),
            limit,
        });
    }
    Ok(decoded)
}

// ---------------------------------------------------------------------------------------------
// Reading the encrypted element out of a document
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ns {
    Xenc,
    Xenc11,
    Dsig,
    Other,
}

fn classify(resolved: &ResolveResult<'_>) -> Ns {
    match resolved {
        ResolveResult::Bound(ns) => match ns.as_ref() {
            NS_XENC => Ns::Xenc,
            NS_XENC11 => Ns::Xenc11,
            NS_DSIG => Ns::Dsig,
            _ => Ns::Other,
        },
        _ => Ns::Other,
    }
}

/// One element inside the encrypted element: a tiny tree, at most [`MAX_NODES`] of them.
#[derive(Debug)]
struct Node {
    ns: Ns,
    local: String,
    algorithm: Option<String>,
    type_attr: Option<String>,
    /// Text, kept for `CipherValue` only.
    text: String,
    children: Vec<Node>,
}

impl Node {
    fn is(&self, ns: Ns, local: &str) -> bool {
        self.ns == ns && self.local == local
    }

    fn display(&self) -> String {
        let prefix = match self.ns {
            Ns::Xenc => "xenc:",
            Ns::Xenc11 => "xenc11:",
            Ns::Dsig => "ds:",
            Ns::Other => "",
        };
        format!("{prefix}{}", excerpt(&self.local))
    }
}

fn structure(message: impl Into<String>) -> DecryptError {
    DecryptError::Structure(message.into())
}

fn xml_error(e: impl std::fmt::Display) -> DecryptError {
    structure(format!(
        "malformed XML around the encrypted element: {}",
        excerpt(&e.to_string())
    ))
}

/// Finds the element at `path` (namespace URI and local name of each element from the root
/// down) and reads its `EncryptedData` and `EncryptedKey`s. `Ok(None)`: not present; an error
/// if it appears twice or is malformed. `xml` must already have passed the pre-filter (or be
/// libxmlsec1's canonical output of such a document).
pub fn find_encrypted(
    xml: &str,
    path: &[(&str, &str)],
) -> Result<Option<EncryptedParts>, DecryptError> {
    let Some(&(_, container)) = path.last() else {
        return Ok(None);
    };
    let mut reader = NsReader::from_str(xml);
    {
        let config = reader.config_mut();
        config.expand_empty_elements = true;
        config.trim_text(false);
        config.check_end_names = true;
    }
    // on_path[d]: the open element at depth d and all its ancestors follow `path`.
    let mut on_path: Vec<bool> = Vec::new();
    let mut found = None;
    loop {
        let (resolved, event) = reader.read_resolved_event().map_err(xml_error)?;
        match event {
            Event::Start(start) => {
                let depth = on_path.len();
                if depth >= MAX_WALK_DEPTH {
                    return Err(structure("document nests too deeply"));
                }
                let parent_ok = depth == 0 || on_path[depth - 1];
                let matches = parent_ok
                    && path.get(depth).is_some_and(|(ns, local)| {
                        matches!(&resolved, ResolveResult::Bound(b) if b.as_ref() == ns.as_bytes())
                            && start.local_name().as_ref() == local.as_bytes()
                    });
                let ns = classify(&resolved);
                if matches && depth + 1 == path.len() {
                    if found.is_some() {
                        return Err(structure(format!("more than one saml:{container}")));
                    }
                    let mut budget = MAX_NODES;
                    let node = read_element(&mut reader, ns, &start, 0, &mut budget)?;
                    found = Some(interpret_container(&node, container)?);
                    // read_element consumed the end tag: the depth is unchanged.
                    continue;
                }
                on_path.push(matches);
            }
            Event::End(_) => {
                on_path.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(found)
}

/// Reads one element (whose start tag was just read) and everything in it, up to its end tag.
fn read_element(
    reader: &mut NsReader<&[u8]>,
    ns: Ns,
    start: &BytesStart<'_>,
    depth: usize,
    budget: &mut usize,
) -> Result<Node, DecryptError> {
    let mut node = Node {
        ns,
        local: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
        algorithm: None,
        type_attr: None,
        text: String::new(),
        children: Vec::new(),
    };
    for attr in start.attributes() {
        let attr = attr.map_err(xml_error)?;
        let slot = match attr.key.as_ref() {
            b"Algorithm" => &mut node.algorithm,
            b"Type" => &mut node.type_attr,
            _ => continue,
        };
        let value = attr
            .decode_and_unescape_value(reader.decoder())
            .map_err(xml_error)?;
        *slot = Some(value.trim().to_string());
    }
    let keeps_text = node.local == "CipherValue";
    loop {
        let (resolved, event) = reader.read_resolved_event().map_err(xml_error)?;
        let child_ns = classify(&resolved);
        match event {
            Event::Start(child) => {
                if depth + 1 >= MAX_DEPTH {
                    return Err(structure("encrypted element nests too deeply"));
                }
                if *budget == 0 {
                    return Err(structure("encrypted element has too many elements"));
                }
                *budget -= 1;
                let child = read_element(reader, child_ns, &child, depth + 1, budget)?;
                node.children.push(child);
            }
            Event::End(_) => return Ok(node),
            Event::Text(t) if keeps_text => {
                let text: Cow<'_, str> = t.unescape().map_err(xml_error)?;
                if node.text.len() + text.len() > MAX_CIPHER_TEXT {
                    return Err(DecryptError::TooLarge {
                        what: "CipherValue",
                        size: node.text.len() + text.len(),
                        limit: MAX_CIPHER_TEXT,
                    });
                }
                node.text.push_str(&text);
            }
            Event::CData(_) if keeps_text => {
                return Err(structure("CDATA in a CipherValue"));
            }
            Event::Eof => return Err(structure("document ends inside the encrypted element")),
            _ => {}
        }
    }
}

fn interpret_container(node: &Node, container: &str) -> Result<EncryptedParts, DecryptError> {
    let mut data = None;
    let mut keys = Vec::new();
    for child in &node.children {
        if child.is(Ns::Xenc, "EncryptedData") {
            if data.replace(child).is_some() {
                return Err(structure(format!(
                    "saml:{container} has more than one xenc:EncryptedData"
                )));
            }
        } else if child.is(Ns::Xenc, "EncryptedKey") {
            keys.push(encrypted_key(child)?);
        } else {
            return Err(structure(format!(
                "unexpected {} in saml:{container}",
                child.display()
            )));
        }
    }
    let data =
        data.ok_or_else(|| structure(format!("saml:{container} has no xenc:EncryptedData")))?;
    if let Some(t) = &data.type_attr {
        if t != TYPE_ELEMENT {
            return Err(structure(format!(
                "EncryptedData Type {} is not an encrypted element",
                excerpt(t)
            )));
        }
    }
    let mut algorithm = None;
    let mut cipher = None;
    let mut inline_keys = Vec::new();
    for child in &data.children {
        if child.is(Ns::Xenc, "EncryptionMethod") {
            let alg = child
                .algorithm
                .clone()
                .ok_or_else(|| structure("EncryptedData EncryptionMethod has no Algorithm"))?;
            if algorithm.replace(alg).is_some() {
                return Err(structure(
                    "EncryptedData has more than one EncryptionMethod",
                ));
            }
        } else if child.is(Ns::Dsig, "KeyInfo") {
            for k in &child.children {
                if k.is(Ns::Xenc, "EncryptedKey") {
                    inline_keys.push(encrypted_key(k)?);
                }
                // KeyName, X509Data …: hints only; the SP has one key.
            }
        } else if child.is(Ns::Xenc, "CipherData") {
            if cipher
                .replace(cipher_value(child, "EncryptedData")?)
                .is_some()
            {
                return Err(structure("EncryptedData has more than one CipherData"));
            }
        } else if !child.is(Ns::Xenc, "EncryptionProperties") {
            return Err(structure(format!(
                "unexpected {} in xenc:EncryptedData",
                child.display()
            )));
        }
    }
    inline_keys.append(&mut keys);
    if inline_keys.len() > MAX_ENCRYPTED_KEYS {
        return Err(structure(format!(
            "more than {MAX_ENCRYPTED_KEYS} xenc:EncryptedKey elements"
        )));
    }
    Ok(EncryptedParts {
        data_algorithm: algorithm
            .ok_or_else(|| structure("EncryptedData has no EncryptionMethod"))?,
        data_cipher_value: cipher.ok_or_else(|| structure("EncryptedData has no CipherData"))?,
        keys: inline_keys,
    })
}

fn cipher_value(cipher_data: &Node, owner: &str) -> Result<String, DecryptError> {
    match cipher_data.children.as_slice() {
        [only] if only.is(Ns::Xenc, "CipherValue") => Ok(only.text.clone()),
        [only] if only.is(Ns::Xenc, "CipherReference") => Err(structure(format!(
            "{owner} uses a CipherReference (not supported)"
        ))),
        _ => Err(structure(format!(
            "{owner} CipherData must hold exactly one CipherValue"
        ))),
    }
}

fn encrypted_key(node: &Node) -> Result<EncryptedKeyParts, DecryptError> {
    let mut method = None;
    let mut cipher = None;
    for child in &node.children {
        if child.is(Ns::Xenc, "EncryptionMethod") {
            if method.replace(child).is_some() {
                return Err(structure("EncryptedKey has more than one EncryptionMethod"));
            }
        } else if child.is(Ns::Xenc, "CipherData") {
            if cipher
                .replace(cipher_value(child, "EncryptedKey")?)
                .is_some()
            {
                return Err(structure("EncryptedKey has more than one CipherData"));
            }
        } else if !(child.is(Ns::Dsig, "KeyInfo")
            || child.is(Ns::Xenc, "ReferenceList")
            || child.is(Ns::Xenc, "CarriedKeyName"))
        {
            return Err(structure(format!(
                "unexpected {} in xenc:EncryptedKey",
                child.display()
            )));
        }
    }
    let method = method.ok_or_else(|| structure("EncryptedKey has no EncryptionMethod"))?;
    let algorithm = method
        .algorithm
        .clone()
        .ok_or_else(|| structure("EncryptedKey EncryptionMethod has no Algorithm"))?;
    let mut digest = None;
    let mut oaep_parameters = false;
    for p in &method.children {
        if p.is(Ns::Dsig, "DigestMethod") {
            let alg = p
                .algorithm
                .clone()
                .ok_or_else(|| structure("OAEP DigestMethod has no Algorithm"))?;
            if digest.replace(alg).is_some() {
                return Err(structure("EncryptedKey names more than one DigestMethod"));
            }
        } else if p.is(Ns::Xenc, "OAEPparams") || p.is(Ns::Xenc11, "MGF") {
            oaep_parameters = true;
        } else if !p.is(Ns::Xenc, "KeySize") {
            return Err(structure(format!(
                "unexpected {} in the EncryptedKey EncryptionMethod",
                p.display()
            )));
        }
    }
    Ok(EncryptedKeyParts {
        algorithm,
        digest,
        oaep_parameters,
        cipher_value: cipher.ok_or_else(|| structure("EncryptedKey has no CipherData"))?,
    })
}

/// Reads a decrypted `saml:NameID` (which must already have passed the pre-filter with
/// [`super::prefilter::Root::NameId`]).
pub fn parse_name_id(xml: &str) -> Result<DecryptedNameId, DecryptError> {
    let mut reader = NsReader::from_str(xml);
    {
        let config = reader.config_mut();
        config.expand_empty_elements = true;
        config.trim_text(false);
    }
    let mut name_id: Option<DecryptedNameId> = None;
    let mut depth = 0usize;
    loop {
        let (resolved, event) = reader.read_resolved_event().map_err(xml_error)?;
        match event {
            Event::Start(start) => {
                let is_name_id = matches!(&resolved, ResolveResult::Bound(b) if b.as_ref() == NS_ASSERTION.as_bytes())
                    && start.local_name().as_ref() == b"NameID";
                if depth != 0 || name_id.is_some() || !is_name_id {
                    return Err(structure(
                        "decrypted EncryptedID is not a single saml:NameID",
                    ));
                }
                let mut n = DecryptedNameId {
                    value: String::new(),
                    format: None,
                    sp_name_qualifier: None,
                };
                for attr in start.attributes() {
                    let attr = attr.map_err(xml_error)?;
                    let slot = match attr.key.as_ref() {
                        b"Format" => &mut n.format,
                        b"SPNameQualifier" => &mut n.sp_name_qualifier,
                        _ => continue,
                    };
                    *slot = Some(
                        attr.decode_and_unescape_value(reader.decoder())
                            .map_err(xml_error)?
                            .into_owned(),
                    );
                }
                name_id = Some(n);
                depth = 1;
            }
            Event::Text(t) if depth == 1 => {
                if let Some(n) = name_id.as_mut() {
                    n.value.push_str(&t.unescape().map_err(xml_error)?);
                }
            }
            Event::End(_) => depth = 0,
            Event::Eof => break,
            _ => {}
        }
    }
    name_id.ok_or_else(|| structure("decrypted EncryptedID holds no saml:NameID"))
}

/// At most [`EXCERPT_CHARS`] characters, control characters escaped.
fn excerpt(s: &str) -> String {
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n == EXCERPT_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::encrypt::Encrypter;
    use openssl::pkey::Public;
    use std::sync::OnceLock;

    /// Two RSA-2048 keys, generated once for the whole test binary.
    fn keys() -> &'static (Vec<u8>, Vec<u8>) {
        static KEYS: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
        KEYS.get_or_init(|| {
            let gen = || {
                PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap())
                    .unwrap()
                    .private_key_to_pem_pkcs8()
                    .unwrap()
            };
            (gen(), gen())
        })
    }

    fn sp_key() -> DecryptionKey {
        DecryptionKey::from_pem(&keys().0).unwrap()
    }

    fn other_key() -> DecryptionKey {
        DecryptionKey::from_pem(&keys().1).unwrap()
    }

    fn public(k: &DecryptionKey) -> PKey<Public> {
        PKey::public_key_from_der(&k.key.public_key_to_der().unwrap()).unwrap()
    }

    #[derive(Clone, Copy, Debug)]
    enum Transport {
        /// OAEP with this DigestMethod (None: element left out, SHA-1).
        Oaep(Option<&'static str>),
        Rsa15,
    }

    const ALL_DATA: [&str; 6] = [
        ALG_AES128_CBC,
        ALG_AES192_CBC,
        ALG_AES256_CBC,
        ALG_AES128_GCM,
        ALG_AES192_GCM,
        ALG_AES256_GCM,
    ];

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn random(n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        openssl::rand::rand_bytes(&mut v).unwrap();
        v
    }

    fn wrap(content_key: &[u8], to: &PKey<Public>, transport: Transport) -> Vec<u8> {
        let mut e = Encrypter::new(to).unwrap();
        match transport {
            Transport::Oaep(digest) => {
                e.set_rsa_padding(Padding::PKCS1_OAEP).unwrap();
                let md = match digest {
                    None | Some(DIGEST_SHA1) => MessageDigest::sha1(),
                    Some(DIGEST_SHA256) => MessageDigest::sha256(),
                    Some(DIGEST_SHA512) => MessageDigest::sha512(),
                    Some(_) => MessageDigest::sha384(),
                };
                e.set_rsa_oaep_md(md).unwrap();
                e.set_rsa_mgf1_md(MessageDigest::sha1()).unwrap();
            }
            Transport::Rsa15 => e.set_rsa_padding(Padding::PKCS1).unwrap(),
        }
        let mut out = vec![0u8; e.encrypt_len(content_key).unwrap()];
        let n = e.encrypt(content_key, &mut out).unwrap();
        out.truncate(n);
        out
    }

    /// Encrypts like an IdP: XML Encryption padding for CBC (random bytes, last = length).
    fn encrypt_data(alg: &str, content_key: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let a = DataAlg::from_uri(alg).unwrap();
        match a.mode {
            Chaining::Cbc => {
                let iv = random(16);
                let pad = 16 - plaintext.len() % 16;
                let mut padded = plaintext.to_vec();
                padded.extend(random(pad - 1));
                padded.push(pad as u8);
                let mut c =
                    Crypter::new(a.cipher(), Mode::Encrypt, content_key, Some(&iv)).unwrap();
                c.pad(false);
                let mut out = vec![0u8; padded.len() + 16];
                let mut n = c.update(&padded, &mut out).unwrap();
                n += c.finalize(&mut out[n..]).unwrap();
                out.truncate(n);
                [iv, out].concat()
            }
            Chaining::Gcm => {
                let iv = random(12);
                let mut tag = [0u8; 16];
                let ct = openssl::symm::encrypt_aead(
                    a.cipher(),
                    content_key,
                    Some(&iv),
                    &[],
                    plaintext,
                    &mut tag,
                )
                .unwrap();
                [iv, ct, tag.to_vec()].concat()
            }
        }
    }

    fn encrypt(
        plaintext: &str,
        to: &DecryptionKey,
        transport: Transport,
        data_alg: &str,
    ) -> EncryptedParts {
        let content_key = random(DataAlg::from_uri(data_alg).unwrap().key_len);
        EncryptedParts {
            data_algorithm: data_alg.into(),
            data_cipher_value: b64(&encrypt_data(data_alg, &content_key, plaintext.as_bytes())),
            keys: vec![EncryptedKeyParts {
                algorithm: match transport {
                    Transport::Oaep(_) => ALG_RSA_OAEP_MGF1P.into(),
                    Transport::Rsa15 => ALG_RSA_1_5.into(),
                },
                digest: match transport {
                    Transport::Oaep(d) => d.map(str::to_string),
                    Transport::Rsa15 => None,
                },
                oaep_parameters: false,
                cipher_value: b64(&wrap(&content_key, &public(to), transport)),
            }],
        }
    }

    /// Renders parts as a `saml:EncryptedAssertion` in a Response; the key inline (in
    /// `ds:KeyInfo`, SimpleSAMLphp) or next to EncryptedData (`inline = false`).
    fn render(parts: &EncryptedParts, inline: bool) -> String {
        let mut keys = String::new();
        for k in &parts.keys {
            let digest = k
                .digest
                .as_ref()
                .map(|d| format!(r#"<ds:DigestMethod Algorithm="{d}"/>"#))
                .unwrap_or_default();
            keys.push_str(&format!(
                r#"<xenc:EncryptedKey xmlns:xenc="http://www.w3.org/2001/04/xmlenc#"><xenc:EncryptionMethod Algorithm="{}">{digest}</xenc:EncryptionMethod><xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedKey>"#,
                k.algorithm, k.cipher_value
            ));
        }
        let (inside, beside) = if inline {
            (format!("<ds:KeyInfo>{keys}</ds:KeyInfo>"), String::new())
        } else {
            (String::new(), keys)
        };
        // Line-wrapped base64, as libxmlsec1 and xmlseclibs write it.
        let wrapped: Vec<String> = parts
            .data_cipher_value
            .as_bytes()
            .chunks(76)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        format!(
            r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" ID="_r"><saml:Issuer>x</saml:Issuer><saml:EncryptedAssertion><xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" Type="{TYPE_ELEMENT}"><xenc:EncryptionMethod Algorithm="{}"/>{inside}<xenc:CipherData><xenc:CipherValue>
{}
</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData>{beside}</saml:EncryptedAssertion></samlp:Response>"#,
            parts.data_algorithm,
            wrapped.join("\n"),
        )
    }

    const PLAIN: &str = r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_a">héllo &amp; more</saml:Assertion>"#;

    fn allow15() -> DecryptPolicy {
        DecryptPolicy {
            allow_rsa1_5: true,
            ..DecryptPolicy::default()
        }
    }

    #[test]
    fn every_algorithm_combination_round_trips_through_xml() {
        let key = sp_key();
        let transports = [
            Transport::Oaep(None),
            Transport::Oaep(Some(DIGEST_SHA1)),
            Transport::Oaep(Some(DIGEST_SHA256)),
            Transport::Oaep(Some(DIGEST_SHA512)),
            Transport::Rsa15,
        ];
        for transport in transports {
            for data in ALL_DATA {
                for inline in [true, false] {
                    let parts = encrypt(PLAIN, &key, transport, data);
                    let xml = render(&parts, inline);
                    let found = find_encrypted(&xml, ENCRYPTED_ASSERTION_IN_RESPONSE)
                        .unwrap()
                        .expect("EncryptedAssertion found");
                    assert_eq!(found.data_algorithm, data);
                    assert_eq!(found.keys.len(), 1);
                    let plain = decrypt(&found, &key, &allow15())
                        .unwrap_or_else(|e| panic!("{transport:?} {data}: {e}"));
                    assert_eq!(plain, PLAIN, "{transport:?} {data} inline={inline}");
                }
            }
        }
    }

    #[test]
    fn rsa_1_5_is_refused_by_default() {
        let key = sp_key();
        let parts = encrypt(PLAIN, &key, Transport::Rsa15, ALG_AES128_CBC);
        assert_eq!(
            decrypt(&parts, &key, &DecryptPolicy::default()).unwrap_err(),
            DecryptError::Rsa15Refused
        );
    }

    #[test]
    fn wrong_key_is_refused() {
        for data in ALL_DATA {
            let parts = encrypt(PLAIN, &other_key(), Transport::Oaep(None), data);
            assert_eq!(
                decrypt(&parts, &sp_key(), &DecryptPolicy::default()).unwrap_err(),
                DecryptError::KeyTransport,
                "{data}"
            );
            // rsa-1_5: implicit rejection, so the failure shows up at the data layer.
            let parts = encrypt(PLAIN, &other_key(), Transport::Rsa15, data);
            let err = decrypt(&parts, &sp_key(), &allow15()).unwrap_err();
            assert!(
                matches!(
                    err,
                    DecryptError::Padding { .. } | DecryptError::Tag { .. } | DecryptError::NotUtf8
                ),
                "{data}: {err}"
            );
        }
    }

    #[test]
    fn truncated_and_short_ciphertexts_are_refused_without_panic() {
        let key = sp_key();
        for data in ALL_DATA {
            let parts = encrypt(PLAIN, &key, Transport::Oaep(None), data);
            let raw = base64::engine::general_purpose::STANDARD
                .decode(&parts.data_cipher_value)
                .unwrap();
            for cut in 0..raw.len() {
                let mut p = parts.clone();
                p.data_cipher_value = b64(&raw[..cut]);
                assert!(
                    decrypt(&p, &key, &DecryptPolicy::default()).is_err(),
                    "{data} cut at {cut}"
                );
            }
            // IV only / IV + tag only.
            let mut p = parts.clone();
            let short = if data.ends_with("cbc") { 16 } else { 27 };
            p.data_cipher_value = b64(&raw[..short]);
            assert!(matches!(
                decrypt(&p, &key, &DecryptPolicy::default()).unwrap_err(),
                DecryptError::CiphertextLength { .. }
            ));
            // The encrypted key, truncated.
            let wrapped = base64::engine::general_purpose::STANDARD
                .decode(&parts.keys[0].cipher_value)
                .unwrap();
            for cut in [0, 1, 16, 255] {
                let mut p = parts.clone();
                p.keys[0].cipher_value = b64(&wrapped[..cut]);
                assert_eq!(
                    decrypt(&p, &key, &DecryptPolicy::default()).unwrap_err(),
                    DecryptError::KeyCipherLength {
                        got: cut,
                        want: 256
                    }
                );
            }
        }
    }

    #[test]
    fn bad_tag_and_tampered_cbc_are_refused() {
        let key = sp_key();
        for data in [ALG_AES128_GCM, ALG_AES192_GCM, ALG_AES256_GCM] {
            let parts = encrypt(PLAIN, &key, Transport::Oaep(None), data);
            let mut raw = base64::engine::general_purpose::STANDARD
                .decode(&parts.data_cipher_value)
                .unwrap();
            let last = raw.len() - 1;
            raw[last] ^= 1;
            let mut p = parts.clone();
            p.data_cipher_value = b64(&raw);
            assert!(matches!(
                decrypt(&p, &key, &DecryptPolicy::default()).unwrap_err(),
                DecryptError::Tag { .. }
            ));
            // A flipped ciphertext byte, too.
            raw[last] ^= 1;
            raw[14] ^= 0x80;
            p.data_cipher_value = b64(&raw);
            assert!(matches!(
                decrypt(&p, &key, &DecryptPolicy::default()).unwrap_err(),
                DecryptError::Tag { .. }
            ));
        }
        // CBC has no integrity: a flipped IV byte changes the plaintext (the signature check
        // after decryption is what refuses it); a bad last byte breaks the padding.
        let parts = encrypt(PLAIN, &key, Transport::Oaep(None), ALG_AES128_CBC);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&parts.data_cipher_value)
            .unwrap();
        let mut flipped = raw.clone();
        flipped[3] ^= 0x20;
        let mut p = parts.clone();
        p.data_cipher_value = b64(&flipped);
        assert_ne!(
            decrypt(&p, &key, &DecryptPolicy::default()).as_deref(),
            Ok(PLAIN)
        );
    }

    #[test]
    fn wrong_key_length_and_oversize_are_refused() {
        let key = sp_key();
        // A 16-byte key where aes256 needs 32.
        let mut parts = encrypt(PLAIN, &key, Transport::Oaep(None), ALG_AES128_CBC);
        parts.data_algorithm = ALG_AES256_CBC.into();
        assert_eq!(
            decrypt(&parts, &key, &DecryptPolicy::default()).unwrap_err(),
            DecryptError::KeyLength {
                got: 16,
                want: 32,
                alg: "aes256-cbc"
            }
        );
        let big = "A".repeat(400_000);
        let mut parts = encrypt(PLAIN, &key, Transport::Oaep(None), ALG_AES128_GCM);
        parts.data_cipher_value = big.clone();
        assert!(matches!(
            decrypt(&parts, &key, &DecryptPolicy::default()).unwrap_err(),
            DecryptError::TooLarge {
                what: "EncryptedData",
                ..
            }
        ));
        let mut parts = encrypt(PLAIN, &key, Transport::Oaep(None), ALG_AES128_GCM);
        parts.keys[0].cipher_value = big;
        assert!(matches!(
            decrypt(&parts, &key, &DecryptPolicy::default()).unwrap_err(),
            DecryptError::KeyCipherLength { want: 256, .. }
        ));
        // The policy bound is exact.
        let parts = encrypt(
            &"x".repeat(1000),
            &key,
            Transport::Oaep(None),
            ALG_AES128_GCM,
        );
        let small = DecryptPolicy {
            max_ciphertext_bytes: 1000,
            ..DecryptPolicy::default()
        };
        assert!(matches!(
            decrypt(&parts, &key, &small).unwrap_err(),
            DecryptError::TooLarge { .. }
        ));
    }

    #[test]
    fn unsupported_algorithms_and_parameters_are_named() {
        let key = sp_key();
        let mut parts = encrypt(PLAIN, &key, Transport::Oaep(None), ALG_AES128_CBC);
        parts.data_algorithm = "http://www.w3.org/2001/04/xmlenc#tripledes-cbc".into();
        assert!(matches!(
            decrypt(&parts, &key, &DecryptPolicy::default()).unwrap_err(),
            DecryptError::UnsupportedDataAlgorithm(a) if a.ends_with("tripledes-cbc")
        ));
        let mut parts = encrypt(PLAIN, &key, Transport::Oaep(None), ALG_AES128_CBC);
        parts.keys[0].algorithm = "http://www.w3.org/2009/xmlenc11#rsa-oaep".into();
        assert!(matches!(
            decrypt(&parts, &key, &DecryptPolicy::default()).unwrap_err(),
            DecryptError::UnsupportedKeyTransport(_)
        ));
        let mut parts = encrypt(PLAIN, &key, Transport::Oaep(None), ALG_AES128_CBC);
        parts.keys[0].digest = Some("http://www.w3.org/2001/04/xmldsig-more#md5".into());
        assert!(matches!(
            decrypt(&parts, &key, &DecryptPolicy::default()).unwrap_err(),
            DecryptError::UnsupportedOaepDigest(_)
        ));
        let mut parts = encrypt(PLAIN, &key, Transport::Oaep(None), ALG_AES128_CBC);
        parts.keys[0].oaep_parameters = true;
        assert_eq!(
            decrypt(&parts, &key, &DecryptPolicy::default()).unwrap_err(),
            DecryptError::OaepParameters
        );
        let mut parts = encrypt(PLAIN, &key, Transport::Oaep(None), ALG_AES128_CBC);
        parts.keys[0].cipher_value = "not*base64".into();
        assert_eq!(
            decrypt(&parts, &key, &DecryptPolicy::default()).unwrap_err(),
            DecryptError::Base64("EncryptedKey")
        );
        let mut parts = encrypt(PLAIN, &key, Transport::Oaep(None), ALG_AES128_CBC);
        parts.keys.clear();
        assert!(matches!(
            decrypt(&parts, &key, &DecryptPolicy::default()).unwrap_err(),
            DecryptError::Structure(_)
        ));
    }

    #[test]
    fn a_second_key_for_someone_else_is_skipped() {
        let key = sp_key();
        let mut parts = encrypt(PLAIN, &key, Transport::Oaep(None), ALG_AES256_GCM);
        let foreign = encrypt(PLAIN, &other_key(), Transport::Oaep(None), ALG_AES256_GCM);
        parts.keys.insert(0, foreign.keys[0].clone());
        assert_eq!(
            decrypt(&parts, &key, &DecryptPolicy::default()).unwrap(),
            PLAIN
        );
        parts.keys = vec![foreign.keys[0].clone(); MAX_ENCRYPTED_KEYS + 1];
        assert!(matches!(
            decrypt(&parts, &key, &DecryptPolicy::default()).unwrap_err(),
            DecryptError::Structure(_)
        ));
    }

    #[test]
    fn structure_errors_are_precise() {
        let key = sp_key();
        let good = render(
            &encrypt(PLAIN, &key, Transport::Oaep(None), ALG_AES128_CBC),
            true,
        );
        let err = |xml: &str| find_encrypted(xml, ENCRYPTED_ASSERTION_IN_RESPONSE).unwrap_err();
        let twice = good.replace(
            "</saml:EncryptedAssertion>",
            "</saml:EncryptedAssertion><saml:EncryptedAssertion/>",
        );
        assert!(
            err(&twice).to_string().contains("more than one"),
            "{}",
            err(&twice)
        );
        let reference = good.replacen(
            "<xenc:CipherData><xenc:CipherValue>",
            r#"<xenc:CipherData><xenc:CipherReference URI="file:///etc/passwd"/></xenc:CipherData><xenc:CipherData><xenc:CipherValue>"#,
            1,
        );
        assert!(err(&reference).to_string().contains("CipherReference"));
        let content = good.replace(TYPE_ELEMENT, "http://www.w3.org/2001/04/xmlenc#Content");
        assert!(err(&content).to_string().contains("Type"));
        let foreign = good.replace(
            "</saml:EncryptedAssertion>",
            "<evil/></saml:EncryptedAssertion>",
        );
        assert!(err(&foreign).to_string().contains("unexpected"));
        // Absent: None. Elsewhere than the path: None.
        assert_eq!(
            find_encrypted(
                "<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\"/>",
                ENCRYPTED_ASSERTION_IN_RESPONSE
            ),
            Ok(None)
        );
        assert_eq!(find_encrypted(&good, ENCRYPTED_ID_IN_RESPONSE), Ok(None));
    }

    #[test]
    fn name_ids_parse() {
        let n = parse_name_id(r#"<saml:NameID xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" Format="urn:f" SPNameQualifier="https://sp">a&amp;b</saml:NameID>"#).unwrap();
        assert_eq!(
            n,
            DecryptedNameId {
                value: "a&b".into(),
                format: Some("urn:f".into()),
                sp_name_qualifier: Some("https://sp".into())
            }
        );
        assert!(parse_name_id("<NameID>x</NameID>").is_err());
        assert!(parse_name_id(
            r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"/>"#
        )
        .is_err());
    }

    #[test]
    fn keys_are_checked_at_load() {
        assert!(DecryptionKey::from_pem(b"junk").is_err());
        let ec = PKey::from_ec_key(
            openssl::ec::EcKey::generate(
                &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)
                    .unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        let err = DecryptionKey::from_pem(&ec.private_key_to_pem_pkcs8().unwrap()).unwrap_err();
        assert_eq!(err, SpKeyError::NotRsa);
        let small = PKey::from_rsa(openssl::rsa::Rsa::generate(1024).unwrap()).unwrap();
        let err = DecryptionKey::from_pem(&small.private_key_to_pem_pkcs8().unwrap()).unwrap_err();
        assert_eq!(err, SpKeyError::Size(1024));
        assert!(err.to_string().contains("1024-bit"), "{err}");
        let encrypted = small
            .private_key_to_pem_pkcs8_passphrase(openssl::symm::Cipher::aes_128_cbc(), b"pw")
            .unwrap();
        let err = DecryptionKey::from_pem(&encrypted).unwrap_err();
        assert_eq!(err, SpKeyError::Encrypted);
        let key = sp_key();
        assert_eq!(key.size(), 256);
        assert!(format!("{key:?}").contains("2048"));
        assert!(!format!("{key:?}").contains("BEGIN"));
    }

    /// Deterministic xorshift: the same "random" inputs on every run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    #[test]
    fn fuzz_random_and_truncated_inputs_never_panic() {
        let key = sp_key();
        let mut rng = Rng(0x5eed_cafe_f00d_d00d);
        let transports = [ALG_RSA_OAEP_MGF1P, ALG_RSA_1_5, "urn:x"];
        let valid: Vec<EncryptedParts> = ALL_DATA
            .iter()
            .map(|d| encrypt(PLAIN, &key, Transport::Oaep(None), d))
            .collect();
        for round in 0..600 {
            let base = &valid[rng.below(valid.len())];
            let mut p = base.clone();
            match round % 6 {
                // Random ciphertext of random length (including the boundaries).
                0 => {
                    let n = rng.below(80);
                    p.data_cipher_value = b64(&rng.bytes(n));
                }
                // Random bytes in the key slot, any length, sometimes the right one.
                1 => {
                    let n = if rng.below(2) == 0 {
                        256
                    } else {
                        rng.below(300)
                    };
                    p.keys[0].cipher_value = b64(&rng.bytes(n));
                    p.keys[0].algorithm = transports[rng.below(3)].into();
                }
                // Truncated base64 text (may be invalid base64).
                2 => {
                    let cut = rng.below(p.data_cipher_value.len() + 1);
                    p.data_cipher_value.truncate(cut);
                }
                // Random algorithm swap: the key length no longer matches.
                3 => p.data_algorithm = ALL_DATA[rng.below(ALL_DATA.len())].into(),
                // Garbage characters.
                4 => {
                    let n = rng.below(40);
                    let junk: String = rng
                        .bytes(n)
                        .iter()
                        .map(|b| char::from(b % 96 + 32))
                        .collect();
                    p.data_cipher_value = junk;
                }
                // One flipped bit anywhere in the data.
                _ => {
                    let mut raw = base64::engine::general_purpose::STANDARD
                        .decode(&p.data_cipher_value)
                        .unwrap();
                    let i = rng.below(raw.len());
                    raw[i] ^= 1 << rng.below(8);
                    p.data_cipher_value = b64(&raw);
                }
            }
            let policy = if rng.below(2) == 0 {
                allow15()
            } else {
                DecryptPolicy::default()
            };
            let _ = decrypt(&p, &key, &policy);
        }
        // Truncated and mangled XML around a valid encrypted element.
        let xml = render(&valid[0], true);
        for cut in (0..xml.len()).step_by(7) {
            let _ = find_encrypted(&xml[..cut], ENCRYPTED_ASSERTION_IN_RESPONSE);
            let _ = parse_name_id(&xml[..cut]);
        }
        for _ in 0..300 {
            let mut bytes = xml.clone().into_bytes();
            for _ in 0..4 {
                let i = rng.below(bytes.len());
                bytes[i] = b"<>/\"=& x:"[rng.below(9)];
            }
            if let Ok(s) = String::from_utf8(bytes) {
                if let Ok(Some(parts)) = find_encrypted(&s, ENCRYPTED_ASSERTION_IN_RESPONSE) {
                    let _ = decrypt(&parts, &key, &allow15());
                }
            }
        }
    }
}
