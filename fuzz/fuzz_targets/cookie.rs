//! Sealed cookies: `open` accepts only what `seal` produced with the same key and purpose
//! (`open(v) == Some(id)` implies `v == seal(id)`, so no second spelling of a cookie passes),
//! seal/open round-trips, a login cookie never opens as a session cookie, `verify_tag`
//! accepts only `tag(data)`, and `find_cookies` never panics on any `Cookie` header.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use samlgate::session::cookie::{find_cookies, Sealer};

struct Keys {
    session: Sealer,
    login: Sealer,
    other_secret: Sealer,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        session: Sealer::new(&[7u8; 40], "session"),
        login: Sealer::new(&[7u8; 40], "login"),
        other_secret: Sealer::new(&[8u8; 40], "session"),
    })
}

fuzz_target!(|data: &[u8]| {
    let k = keys();
    let text = String::from_utf8_lossy(data);
    if let Some(id) = k.session.open(&text) {
        assert_eq!(
            k.session.seal(&id),
            text,
            "opened a value seal() never makes"
        );
    }
    if data.len() >= 32 {
        let id: [u8; 32] = data[..32].try_into().expect("32 bytes");
        let sealed = k.session.seal(&id);
        assert_eq!(k.session.open(&sealed), Some(id));
        assert_eq!(
            k.login.open(&sealed),
            None,
            "a session cookie opened as a login cookie"
        );
        assert_eq!(
            k.other_secret.open(&sealed),
            None,
            "opened under another secret"
        );
    }
    let (tag_part, message) = text.split_once('|').unwrap_or((&text, ""));
    if k.session.verify_tag(message.as_bytes(), tag_part) {
        assert_eq!(
            k.session.tag(message.as_bytes()),
            tag_part,
            "accepted a foreign tag"
        );
    }
    assert!(k
        .session
        .verify_tag(message.as_bytes(), &k.session.tag(message.as_bytes())));

    let mut headers = http::HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        if let Ok(v) = http::HeaderValue::from_bytes(line) {
            headers.append(http::header::COOKIE, v);
        }
    }
    for value in find_cookies(&headers, "samlgate_session") {
        assert!(!value.contains(';'));
        let _ = k.session.open(value);
    }
});
