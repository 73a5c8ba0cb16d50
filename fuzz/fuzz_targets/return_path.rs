//! Return paths (RelayState of IdP-initiated sign-in, `?rd=`, forward-auth's original URI):
//! whatever `safe_return_path` accepts is returned unchanged, is a local path starting with
//! exactly one `/`, and, resolved by a WHATWG URL parser (what a browser does with a
//! `Location`) against the gateway's origin, stays on that origin — also after every
//! percent-decoding of it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode_str;
use samlgate::redirect::safe_return_path;

const ORIGIN: &str = "https://gate.example";

fn stays_home(path: &str) {
    let base = url::Url::parse(ORIGIN).expect("origin parses");
    // A path a browser cannot resolve is no redirect anywhere; only one that resolves counts.
    if let Ok(target) = base.join(path) {
        assert_eq!(
            target.origin(),
            base.origin(),
            "{path:?} resolves to {target}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Some(path) = safe_return_path(raw) else {
        return;
    };
    assert_eq!(path, raw, "the path must come back unchanged");
    assert!(path.starts_with('/'), "{path:?}");
    assert!(
        !path.starts_with("//") && !path.starts_with("/\\"),
        "{path:?}"
    );
    assert!(!path.chars().any(|c| c.is_control()), "{path:?}");
    let mut current = path.to_string();
    for _ in 0..4 {
        stays_home(&current);
        let Ok(decoded) = percent_decode_str(&current).decode_utf8() else {
            break;
        };
        if decoded == current {
            break;
        }
        current = decoded.into_owned();
    }
});
