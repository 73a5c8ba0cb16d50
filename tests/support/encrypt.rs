//! Test support: XML Encryption as IdPs write it, for minted responses — an SP key pair,
//! `saml:EncryptedAssertion` / `saml:EncryptedID` around any plaintext element, with every key
//! transport and content algorithm the gateway knows (and some it must refuse).
//!
//! Include with `#[path = "support/encrypt.rs"] mod encrypt;`. Uses only `openssl` and
//! `base64`.
#![allow(dead_code)]

use base64::Engine as _;
use openssl::encrypt::Encrypter;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private, Public};
use openssl::rsa::{Padding, Rsa};
use openssl::symm::{Cipher, Crypter, Mode};

pub const XENC: &str = "http://www.w3.org/2001/04/xmlenc#";
pub const XENC11: &str = "http://www.w3.org/2009/xmlenc11#";
pub const DS: &str = "http://www.w3.org/2000/09/xmldsig#";
pub const TYPE_ELEMENT: &str = "http://www.w3.org/2001/04/xmlenc#Element";

/// The SP's RSA key pair: what `saml.sp_key_file` / `saml.sp_cert_file` hold and the IdP
/// encrypts to.
pub struct SpKeys {
    pub key: PKey<Private>,
    /// PKCS#8 PEM.
    pub key_pem: String,
    pub cert_pem: String,
}

impl SpKeys {
    /// RSA 2048 and a self-signed certificate for it.
    pub fn generate(cn: &str) -> SpKeys {
        use openssl::asn1::Asn1Time;
        use openssl::x509::{X509NameBuilder, X509};
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", cn).unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(365).unwrap())
            .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        let cert = b.build();
        SpKeys {
            key_pem: String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap(),
            cert_pem: String::from_utf8(cert.to_pem().unwrap()).unwrap(),
            key,
        }
    }

    pub fn public(&self) -> PKey<Public> {
        PKey::public_key_from_der(&self.key.public_key_to_der().unwrap()).unwrap()
    }
}

/// Key transport of the content key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// rsa-oaep-mgf1p without a DigestMethod (SHA-1), as SimpleSAMLphp writes it.
    Oaep,
    /// rsa-oaep-mgf1p with an explicit `ds:DigestMethod` SHA-256.
    OaepSha256,
    /// rsa-1_5 (refused unless `saml.allow_rsa1_5`).
    Rsa15,
}

impl Transport {
    pub fn uri(self) -> &'static str {
        match self {
            Transport::Oaep | Transport::OaepSha256 => {
                "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"
            }
            Transport::Rsa15 => "http://www.w3.org/2001/04/xmlenc#rsa-1_5",
        }
    }
}

/// Content encryption.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Data {
    Aes128Cbc,
    Aes192Cbc,
    Aes256Cbc,
    Aes128Gcm,
    Aes192Gcm,
    Aes256Gcm,
}

pub const ALL_DATA: [Data; 6] = [
    Data::Aes128Cbc,
    Data::Aes192Cbc,
    Data::Aes256Cbc,
    Data::Aes128Gcm,
    Data::Aes192Gcm,
    Data::Aes256Gcm,
];

impl Data {
    pub fn uri(self) -> &'static str {
        match self {
            Data::Aes128Cbc => "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
            Data::Aes192Cbc => "http://www.w3.org/2001/04/xmlenc#aes192-cbc",
            Data::Aes256Cbc => "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
            Data::Aes128Gcm => "http://www.w3.org/2009/xmlenc11#aes128-gcm",
            Data::Aes192Gcm => "http://www.w3.org/2009/xmlenc11#aes192-gcm",
            Data::Aes256Gcm => "http://www.w3.org/2009/xmlenc11#aes256-gcm",
        }
    }

    fn cipher(self) -> Cipher {
        match self {
            Data::Aes128Cbc => Cipher::aes_128_cbc(),
            Data::Aes192Cbc => Cipher::aes_192_cbc(),
            Data::Aes256Cbc => Cipher::aes_256_cbc(),
            Data::Aes128Gcm => Cipher::aes_128_gcm(),
            Data::Aes192Gcm => Cipher::aes_192_gcm(),
            Data::Aes256Gcm => Cipher::aes_256_gcm(),
        }
    }

    pub fn key_len(self) -> usize {
        match self {
            Data::Aes128Cbc | Data::Aes128Gcm => 16,
            Data::Aes192Cbc | Data::Aes192Gcm => 24,
            Data::Aes256Cbc | Data::Aes256Gcm => 32,
        }
    }

    fn is_gcm(self) -> bool {
        matches!(self, Data::Aes128Gcm | Data::Aes192Gcm | Data::Aes256Gcm)
    }
}

/// How to encrypt.
#[derive(Clone, Copy, Debug)]
pub struct Enc {
    pub transport: Transport,
    pub data: Data,
    /// `EncryptedKey` inside `EncryptedData/ds:KeyInfo` (SimpleSAMLphp) or, with `false`, next
    /// to `EncryptedData` in the container.
    pub key_inline: bool,
}

impl Default for Enc {
    /// What SimpleSAMLphp sends: rsa-oaep-mgf1p + aes128-cbc, key inline.
    fn default() -> Self {
        Enc {
            transport: Transport::Oaep,
            data: Data::Aes128Cbc,
            key_inline: true,
        }
    }
}

pub fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    openssl::rand::rand_bytes(&mut v).unwrap();
    v
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// RSA-encrypts `content_key` for `to`.
pub fn wrap_key(content_key: &[u8], to: &PKey<Public>, transport: Transport) -> Vec<u8> {
    let mut e = Encrypter::new(to).unwrap();
    match transport {
        Transport::Oaep | Transport::OaepSha256 => {
            e.set_rsa_padding(Padding::PKCS1_OAEP).unwrap();
            e.set_rsa_oaep_md(if transport == Transport::Oaep {
                MessageDigest::sha1()
            } else {
                MessageDigest::sha256()
            })
            .unwrap();
            e.set_rsa_mgf1_md(MessageDigest::sha1()).unwrap();
        }
        Transport::Rsa15 => e.set_rsa_padding(Padding::PKCS1).unwrap(),
    }
    let mut out = vec![0u8; e.encrypt_len(content_key).unwrap()];
    let n = e.encrypt(content_key, &mut out).unwrap();
    out.truncate(n);
    out
}

/// IV ‖ ciphertext (‖ tag for GCM); CBC with XML Encryption padding (random bytes, last byte
/// the pad length).
pub fn encrypt_bytes(data: Data, content_key: &[u8], plaintext: &[u8]) -> Vec<u8> {
    if data.is_gcm() {
        let iv = random(12);
        let mut tag = [0u8; 16];
        let ct = openssl::symm::encrypt_aead(
            data.cipher(),
            content_key,
            Some(&iv),
            &[],
            plaintext,
            &mut tag,
        )
        .unwrap();
        [iv, ct, tag.to_vec()].concat()
    } else {
        let iv = random(16);
        let pad = 16 - plaintext.len() % 16;
        let mut padded = plaintext.to_vec();
        padded.extend(random(pad - 1));
        padded.push(pad as u8);
        let mut c = Crypter::new(data.cipher(), Mode::Encrypt, content_key, Some(&iv)).unwrap();
        c.pad(false);
        let mut out = vec![0u8; padded.len() + 16];
        let mut n = c.update(&padded, &mut out).unwrap();
        n += c.finalize(&mut out[n..]).unwrap();
        out.truncate(n);
        [iv, out].concat()
    }
}

/// The raw pieces of one encryption, before they are written as XML.
#[derive(Clone, Debug)]
pub struct Encrypted {
    pub enc: Enc,
    /// IV ‖ ciphertext (‖ tag).
    pub data: Vec<u8>,
    /// The RSA-wrapped content key.
    pub wrapped_key: Vec<u8>,
}

/// Encrypts `plaintext` (an element's text) for `to`.
pub fn encrypt(plaintext: &str, to: &PKey<Public>, enc: Enc) -> Encrypted {
    let content_key = random(enc.data.key_len());
    Encrypted {
        enc,
        data: encrypt_bytes(enc.data, &content_key, plaintext.as_bytes()),
        wrapped_key: wrap_key(&content_key, to, enc.transport),
    }
}

impl Encrypted {
    /// `<saml:{container}>` with `xenc:EncryptedData` (Type Element) and the `EncryptedKey`,
    /// the CipherValues line-wrapped at 76 columns as xmlseclibs writes them. The `saml`
    /// prefix must be bound by the surrounding document.
    pub fn xml(&self, container: &str) -> String {
        let digest = if self.enc.transport == Transport::OaepSha256 {
            format!(
                r#"<ds:DigestMethod xmlns:ds="{DS}" Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>"#
            )
        } else {
            String::new()
        };
        let key = format!(
            r#"<xenc:EncryptedKey xmlns:xenc="{XENC}"><xenc:EncryptionMethod Algorithm="{}">{digest}</xenc:EncryptionMethod><xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedKey>"#,
            self.enc.transport.uri(),
            wrap76(&b64(&self.wrapped_key)),
        );
        let (inside, beside) = if self.enc.key_inline {
            (
                format!(r#"<ds:KeyInfo xmlns:ds="{DS}">{key}</ds:KeyInfo>"#),
                String::new(),
            )
        } else {
            (String::new(), key)
        };
        format!(
            r#"<saml:{container}><xenc:EncryptedData xmlns:xenc="{XENC}" Type="{TYPE_ELEMENT}"><xenc:EncryptionMethod Algorithm="{}"/>{inside}<xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData>{beside}</saml:{container}>"#,
            self.enc.data.uri(),
            wrap76(&b64(&self.data)),
        )
    }

    pub fn encrypted_assertion(&self) -> String {
        self.xml("EncryptedAssertion")
    }

    pub fn encrypted_id(&self) -> String {
        self.xml("EncryptedID")
    }
}

fn wrap76(s: &str) -> String {
    s.as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}
