//! Validation tests for the whole file: defaults, bounds, cross-section checks, environment
//! overrides. Each section's own decisions are tested through [`super::validate`].

#[test]
fn files_named_by_keys_are_read_with_a_bound() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("small"), b"abc").unwrap();
    assert_eq!(
        read_file(dir.path(), Path::new("small"), "k").unwrap(),
        b"abc"
    );
    // /dev/zero never ends: refused at the bound instead of filling memory.
    let e = read_file(dir.path(), Path::new("/dev/zero"), "saml.sp_key_file").unwrap_err();
    assert!(e.to_string().contains("larger than 64 MiB"), "{e}");
    assert!(read_file(dir.path(), Path::new("missing"), "k").is_err());
}

use super::files::read_file;
use super::*;
use std::path::Path;
use std::time::Duration;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn env_overrides_nested_and_top_level_keys() {
    let file = parse_with_env(
        "upstream = \"http://a\"\n[session]\ncookie_name = \"x\"\n",
        &env(&[
            ("SAMLGATE_UPSTREAM", "http://b"),
            ("SAMLGATE_SESSION_COOKIE_NAME", "y"),
            ("SAMLGATE_AUTHZ_ALLOWED_GROUPS", "admins, analysts"),
            ("SAMLGATE_SAML_CLOCK_SKEW_SECS", "30"),
            ("OTHER", "ignored"),
        ]),
    )
    .unwrap();
    assert_eq!(file.upstream.as_deref(), Some("http://b"));
    assert_eq!(file.session.cookie_name.as_deref(), Some("y"));
    assert_eq!(file.authz.allowed_groups, vec!["admins", "analysts"]);
    assert_eq!(file.saml.clock_skew_secs, 30);
}

#[test]
fn unknown_keys_are_named() {
    let err = parse_with_env("", &env(&[("SAMLGATE_SESSION_COOKIE_NAM", "x")])).unwrap_err();
    assert_eq!(
        err.key(),
        "SAMLGATE_SESSION_COOKIE_NAM",
        "an override is named by its variable"
    );
}

#[test]
fn keys_are_named_with_their_section() {
    let err = parse_with_env("[saml]\nclock_skew_secs = \"soon\"\n", &[]).unwrap_err();
    assert_eq!(err.key(), "saml.clock_skew_secs");
    let err = parse_with_env("[saml]\nacs_pth = \"/x\"\n", &[]).unwrap_err();
    assert_eq!(err.key(), "saml.acs_pth");
    let err = parse_with_env("[saml\n", &[]).unwrap_err();
    assert!(err.reason().contains("line 1"), "{err}");
}

#[test]
fn env_numbers_for_string_keys_stay_strings_and_config_var_is_not_a_key() {
    let file = parse_with_env(
        "",
        &env(&[
            ("SAMLGATE_SESSION_COOKIE_NAME", "123"),
            ("SAMLGATE_CONFIG", "/etc/samlgate.toml"),
        ]),
    )
    .unwrap();
    assert_eq!(file.session.cookie_name.as_deref(), Some("123"));
    let err = parse_with_env("", &env(&[("SAMLGATE_SAML_CLOCK_SKEW_SECS", "soon")])).unwrap_err();
    assert_eq!(err.key(), "SAMLGATE_SAML_CLOCK_SKEW_SECS");
}

#[test]
fn wrong_types_are_reported() {
    let err = parse_with_env("[saml]\nclock_skew_secs = \"soon\"\n", &[]).unwrap_err();
    assert!(err.reason().contains("invalid type"), "{err}");
}

fn minimal(dir: &Path) -> FileConfig {
    std::fs::write(dir.join("secret"), [7u8; 40]).unwrap();
    std::fs::write(dir.join("idp.xml"), "<EntityDescriptor/>").unwrap();
    parse_with_env(
        "public_url = \"https://app.example.com/\"\nupstream = \"http://127.0.0.1:6273\"\n[saml]\nidp_metadata_file = \"idp.xml\"\n[session]\ncookie_secret_file = \"secret\"\n",
        &[],
    )
    .unwrap()
}

#[test]
fn connection_timeouts_have_a_floor_and_a_one_day_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    let s = validate(minimal(dir.path()), dir.path()).unwrap();
    assert_eq!(s.server.idle_timeout, Duration::from_secs(75));
    assert_eq!(s.proxy.upgrade_idle_timeout, Duration::from_secs(600));
    type Set = fn(&mut FileConfig, u64);
    let keys: [(&str, Set); 8] = [
        ("server.header_read_timeout_secs", |f, v| {
            f.server.header_read_timeout_secs = v
        }),
        ("server.shutdown_grace_secs", |f, v| {
            f.server.shutdown_grace_secs = v
        }),
        ("server.idle_timeout_secs", |f, v| {
            f.server.idle_timeout_secs = v
        }),
        ("proxy.upstream_timeout_secs", |f, v| {
            f.proxy.upstream_timeout_secs = v
        }),
        ("proxy.connect_timeout_secs", |f, v| {
            f.proxy.connect_timeout_secs = v
        }),
        ("proxy.pool_idle_timeout_secs", |f, v| {
            f.proxy.pool_idle_timeout_secs = v
        }),
        ("proxy.upgrade_idle_timeout_secs", |f, v| {
            f.proxy.upgrade_idle_timeout_secs = v
        }),
        ("proxy.upgrade_session_check_secs", |f, v| {
            f.proxy.upgrade_session_check_secs = v
        }),
    ];
    for (key, set) in keys {
        let with = |v: u64| {
            let mut f = minimal(dir.path());
            set(&mut f, v);
            validate(f, dir.path())
        };
        assert!(with(86_400).is_ok(), "{key} = 86400");
        for too_big in [86_401, u64::MAX] {
            let err = with(too_big).unwrap_err();
            assert_eq!(err.key(), key, "{key} = {too_big}");
            assert!(err.reason().contains("at most 86400"), "{err}");
        }
    }
    for key in [
        "server.idle_timeout_secs",
        "proxy.upgrade_idle_timeout_secs",
        "proxy.upgrade_session_check_secs",
    ] {
        let mut f = minimal(dir.path());
        match key {
            "server.idle_timeout_secs" => f.server.idle_timeout_secs = 0,
            "proxy.upgrade_idle_timeout_secs" => f.proxy.upgrade_idle_timeout_secs = 0,
            _ => f.proxy.upgrade_session_check_secs = 0,
        }
        assert_eq!(validate(f, dir.path()).unwrap_err().key(), key);
    }
    let file = parse_with_env(
        "",
        &env(&[
            ("SAMLGATE_SERVER_IDLE_TIMEOUT_SECS", "5"),
            ("SAMLGATE_PROXY_UPGRADE_IDLE_TIMEOUT_SECS", "7"),
        ]),
    )
    .unwrap();
    assert_eq!(file.server.idle_timeout_secs, 5);
    assert_eq!(file.proxy.upgrade_idle_timeout_secs, 7);
    for (v, ok) in [(0, false), (1, true), (1_000_000, true), (1_000_001, false)] {
        let mut f = minimal(dir.path());
        f.proxy.max_pooled_requests = v;
        match validate(f, dir.path()) {
            Ok(s) => assert!(ok && s.proxy.max_pooled_requests == v, "{v}"),
            Err(e) => assert!(!ok && e.key() == "proxy.max_pooled_requests", "{v}: {e}"),
        }
    }
}

#[test]
fn metadata_url_settings_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let with_url = |url: &str| {
        let mut f = minimal(dir.path());
        f.saml.idp_metadata_file = None;
        f.saml.idp_metadata_url = Some(url.into());
        f
    };
    let s = validate(with_url("https://idp.example.com/md"), dir.path()).unwrap();
    let md = s.saml.idp_metadata_url.unwrap();
    assert_eq!(md.cache_file, dir.path().join("idp-metadata.cache.xml"));
    assert_eq!(md.refresh, Duration::from_secs(3600));
    assert_eq!(md.timeout, Duration::from_secs(10));
    assert_eq!(md.max_bytes, 1024 * 1024);
    assert!(s.saml.idp_metadata_xml.is_empty());
    assert!(validate(with_url("http://127.0.0.1:9/md"), dir.path()).is_ok());
    assert!(validate(with_url("http://localhost:9/md"), dir.path()).is_ok());
    for bad in ["http://idp.example.com/md", "ftp://idp/md", "not a url"] {
        let err = validate(with_url(bad), dir.path()).unwrap_err();
        assert_eq!(err.key(), "saml.idp_metadata_url", "{bad}");
    }
    let mut both = minimal(dir.path());
    both.saml.idp_metadata_url = Some("https://idp.example.com/md".into());
    assert_eq!(
        validate(both, dir.path()).unwrap_err().key(),
        "saml.idp_metadata_url"
    );
    let mut f = with_url("https://idp.example.com/md");
    f.saml.idp_metadata_refresh_secs = 59;
    assert_eq!(
        validate(f, dir.path()).unwrap_err().key(),
        "saml.idp_metadata_refresh_secs"
    );
    let mut f = with_url("https://idp.example.com/md");
    f.saml.idp_metadata_signing_cert_file = Some("secret".into());
    assert_eq!(
        validate(f, dir.path()).unwrap_err().key(),
        "saml.idp_metadata_signing_cert_file"
    );
    let mut f = minimal(dir.path());
    f.saml.idp_metadata_cache_file = Some("c.xml".into());
    assert_eq!(
        validate(f, dir.path()).unwrap_err().key(),
        "saml.idp_metadata_cache_file"
    );
}

#[test]
fn defaults_derive_from_public_url() {
    let dir = tempfile::tempdir().unwrap();
    let s = validate(minimal(dir.path()), dir.path()).unwrap();
    assert_eq!(s.saml.acs_url, "https://app.example.com/saml/acs");
    assert_eq!(s.saml.sp_entity_id, "https://app.example.com/saml/metadata");
    assert!(s.session.secure);
    assert!(s.saml.require_signed_assertion);
    assert!(!s.saml.allow_sha1);
}

#[test]
fn cookie_names_default_to_host_prefix_over_https_only() {
    let dir = tempfile::tempdir().unwrap();
    let names = |edit: &dyn Fn(&mut FileConfig)| {
        let mut f = minimal(dir.path());
        edit(&mut f);
        validate(f, dir.path())
            .map(|s| (s.session.cookie_name, s.session.login_cookie_name))
            .map_err(|e| e.to_string())
    };
    let pair = |a: &str, b: &str| Ok((a.to_string(), b.to_string()));
    assert_eq!(
        names(&|_| {}),
        pair("__Host-samlgate_session", "__Host-samlgate_login")
    );
    assert_eq!(
        names(&|f| f.public_url = Some("http://127.0.0.1:8080".into())),
        pair("samlgate_session", "samlgate_login")
    );
    assert_eq!(
        names(&|f| f.session.cookie_domain = Some("example.com".into())),
        pair("samlgate_session", "samlgate_login")
    );
    // The session cookie on a sub-path cannot be `__Host-`; the login cookie (on `/`) is.
    assert_eq!(
        names(&|f| f.session.cookie_path = "/app".into()),
        pair("samlgate_session", "__Host-samlgate_login")
    );
    // Explicit names are kept as typed, the old defaults included.
    assert_eq!(
        names(&|f| {
            f.session.cookie_name = Some("samlgate_session".into());
            f.session.login_cookie_name = Some("__Host-pending".into());
        }),
        pair("samlgate_session", "__Host-pending")
    );
}

#[test]
fn explicit_prefixed_cookie_names_must_meet_the_prefix_rules() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |edit: &dyn Fn(&mut FileConfig)| {
        let mut f = minimal(dir.path());
        edit(&mut f);
        validate(f, dir.path())
            .err()
            .map(|e| (e.key().to_string(), e.reason()))
    };
    let http = |f: &mut FileConfig| f.public_url = Some("http://127.0.0.1:8080".into());
    let (key, message) = refused(&|f| {
        http(f);
        f.session.cookie_name = Some("__Host-sid".into());
    })
    .unwrap();
    assert_eq!(key, "session.cookie_name");
    assert!(message.contains("https"), "{message}");
    let (key, message) = refused(&|f| {
        f.session.cookie_domain = Some("example.com".into());
        f.session.login_cookie_name = Some("__host-pending".into());
    })
    .unwrap();
    assert_eq!(key, "session.login_cookie_name");
    assert!(message.contains("cookie_domain"), "{message}");
    let (key, message) = refused(&|f| {
        f.session.cookie_path = "/app".into();
        f.session.cookie_name = Some("__Host-sid".into());
    })
    .unwrap();
    assert_eq!(key, "session.cookie_name");
    assert!(message.contains("cookie_path"), "{message}");
    let (key, _) = refused(&|f| {
        http(f);
        f.session.login_cookie_name = Some("__Secure-pending".into());
    })
    .unwrap();
    assert_eq!(key, "session.login_cookie_name");
    // The same names where their rules hold are accepted.
    assert_eq!(
        refused(&|f| {
            f.session.cookie_name = Some("__Host-sid".into());
            f.session.login_cookie_name = Some("__Secure-pending".into());
        }),
        None
    );
    // Explicit names that equal the other cookie's effective default are refused.
    assert_eq!(
        refused(&|f| f.session.cookie_name = Some("__Host-samlgate_login".into()))
            .map(|(k, _)| k)
            .as_deref(),
        Some("session.login_cookie_name")
    );
    assert_eq!(
        refused(&|f| f.session.cookie_name = Some("a b".into()))
            .map(|(k, _)| k)
            .as_deref(),
        Some("session.cookie_name")
    );
}

#[test]
fn short_secret_and_missing_metadata_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = minimal(dir.path());
    std::fs::write(dir.path().join("secret"), b"short\n").unwrap();
    let err = validate(file.clone(), dir.path()).unwrap_err();
    assert_eq!(err.key(), "session.cookie_secret_file");
    // Long enough, but the example's placeholder.
    std::fs::write(
        dir.path().join("secret"),
        b"REPLACE-ME-with-48-random-bytes-from-openssl-rand\n",
    )
    .unwrap();
    let err = validate(file.clone(), dir.path()).unwrap_err();
    assert_eq!(err.key(), "session.cookie_secret_file");
    assert!(err.reason().contains("placeholder"), "{}", err.reason());
    let mut file = minimal(dir.path());
    file.saml.idp_metadata_file = None;
    assert_eq!(
        validate(file, dir.path()).unwrap_err().key(),
        "saml.idp_metadata_file"
    );
}

#[test]
fn bad_paths_urls_and_headers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = minimal(dir.path());
    f.saml.acs_path = "saml-post".into();
    assert_eq!(validate(f, dir.path()).unwrap_err().key(), "saml.acs_path");
    let mut f = minimal(dir.path());
    f.public_url = Some("https://app.example.com/sub/".into());
    assert_eq!(validate(f, dir.path()).unwrap_err().key(), "public_url");
    let mut f = minimal(dir.path());
    f.saml.acs_path = "/".into();
    assert_eq!(validate(f, dir.path()).unwrap_err().key(), "saml.acs_path");
    let mut f = minimal(dir.path());
    f.upstream = Some("ftp://x".into());
    assert_eq!(validate(f, dir.path()).unwrap_err().key(), "upstream");
    let mut f = minimal(dir.path());
    f.headers.email = "X-Forwarded_User".into();
    assert_eq!(validate(f, dir.path()).unwrap_err().key(), "headers.email");
    let mut f = minimal(dir.path());
    f.headers.groups = "bad header".into();
    assert_eq!(validate(f, dir.path()).unwrap_err().key(), "headers.groups");
    for reserved in [
        "Host",
        "Cookie",
        "X_Forwarded_For",
        "authorization",
        "Content-Length",
    ] {
        let mut f = minimal(dir.path());
        f.headers.user = reserved.into();
        let e = validate(f, dir.path()).unwrap_err();
        assert_eq!(e.key(), "headers.user", "{reserved}");
        assert!(e.reason().contains("already uses"), "{}", e.reason());
    }
}

#[test]
fn foreign_header_list_is_extended_or_emptied_from_file_or_environment() {
    let dir = tempfile::tempdir().unwrap();
    let base = minimal(dir.path());
    let h = &validate(base.clone(), dir.path()).unwrap().headers;
    assert!(h.strip_foreign_defaults, "the table is on by default");
    assert!(h.strip_foreign_extra.is_empty());

    let file = parse_with_env(
        "[headers]\nstrip_foreign_extra = [\"X-Corp-User\", \"X-Corp-Claim-*\"]\n",
        &[],
    )
    .unwrap();
    assert!(file.headers.strip_foreign_defaults);
    assert_eq!(
        file.headers.strip_foreign_extra,
        ["X-Corp-User", "X-Corp-Claim-*"]
    );
    let file = parse_with_env(
        "[headers]\nstrip_foreign_extra = [\"X-Corp-User\"]\n",
        &env(&[
            ("SAMLGATE_HEADERS_STRIP_FOREIGN_DEFAULTS", "false"),
            ("SAMLGATE_HEADERS_STRIP_FOREIGN_EXTRA", ""),
        ]),
    )
    .unwrap();
    assert!(!file.headers.strip_foreign_defaults, "emptied");
    assert!(file.headers.strip_foreign_extra.is_empty(), "emptied");
    let file = parse_with_env(
        "",
        &env(&[("SAMLGATE_HEADERS_STRIP_FOREIGN_EXTRA", "X-A, X-B-*")]),
    )
    .unwrap();
    assert_eq!(file.headers.strip_foreign_extra, ["X-A", "X-B-*"]);

    let mut f = base.clone();
    f.headers.strip_foreign_extra = vec!["X-Corp-*".into(), "x_corp_login".into()];
    let s = validate(f, dir.path()).unwrap();
    assert_eq!(s.headers.strip_foreign_extra.len(), 2);

    for (bad, says) in [
        ("*", "every header"),
        ("X-*-User", "may only end"),
        ("X Corp", "not a header name"),
        ("Cookie", "would strip cookie"),
        ("content-*", "would strip content-length"),
        ("X-Forwarded-*", "would strip x-forwarded-for"),
        ("C*", "would strip c"),
    ] {
        let mut f = base.clone();
        f.headers.strip_foreign_extra = vec!["X-Fine".into(), bad.into()];
        let e = validate(f, dir.path()).unwrap_err();
        assert_eq!(e.key(), "headers.strip_foreign_extra", "{bad}");
        assert!(e.reason().contains(says), "{bad}: {}", e.reason());
    }
    let mut f = base;
    f.headers.strip_foreign_extra = (0..257).map(|i| format!("X-N{i}")).collect();
    let e = validate(f, dir.path()).unwrap_err();
    assert!(e.reason().contains("at most 256"), "{}", e.reason());
}

#[test]
fn sp_key_pair_is_checked_and_required_for_encryption() {
    let pair = |bits| {
        crate::certgen::self_signed(&crate::certgen::CertSpec {
            common_name: "sp".into(),
            rsa_bits: bits,
            days: 5,
            purpose: crate::certgen::Purpose::Saml,
            san: vec![],
        })
        .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (pair(2048), pair(2048));
    std::fs::write(dir.path().join("a.key"), a.key_pem().unwrap()).unwrap();
    std::fs::write(dir.path().join("a.crt"), a.cert_pem().unwrap()).unwrap();
    std::fs::write(dir.path().join("b.crt"), b.cert_pem().unwrap()).unwrap();
    let with = |key: Option<&str>, cert: Option<&str>, require: bool| {
        let mut f = minimal(dir.path());
        f.saml.sp_key_file = key.map(Into::into);
        f.saml.sp_cert_file = cert.map(Into::into);
        f.saml.require_encryption = require;
        validate(f, dir.path())
    };
    let s = with(Some("a.key"), Some("a.crt"), true).unwrap();
    assert!(s.saml.require_encryption && !s.saml.allow_rsa1_5);
    assert!(with(Some("a.key"), None, false).is_ok());
    assert_eq!(
        with(Some("a.key"), Some("b.crt"), false).unwrap_err().key(),
        "saml.sp_cert_file"
    );
    assert_eq!(
        with(None, Some("a.crt"), false).unwrap_err().key(),
        "saml.sp_key_file"
    );
    assert_eq!(
        with(Some("a.crt"), Some("a.crt"), false).unwrap_err().key(),
        "saml.sp_key_file"
    );
    assert_eq!(
        with(None, None, true).unwrap_err().key(),
        "saml.require_encryption"
    );
    assert!(!with(None, None, false).unwrap().saml.require_encryption);
}

#[test]
fn admin_listener_is_off_by_default_and_validated() {
    let dir = tempfile::tempdir().unwrap();
    assert!(validate(minimal(dir.path()), dir.path())
        .unwrap()
        .admin
        .is_none());
    let with = |listen: &str, admin: &str| {
        let mut f = minimal(dir.path());
        f.listen = Some(listen.into());
        f.admin.listen = Some(admin.into());
        validate(f, dir.path())
    };
    let s = with("0.0.0.0:8443", "127.0.0.1:9090").unwrap();
    assert_eq!(
        s.admin.unwrap().listen,
        "127.0.0.1:9090".parse::<SocketAddr>().unwrap()
    );
    assert!(with("127.0.0.1:8080", "127.0.0.2:8080").is_ok());
    assert!(
        with("127.0.0.1:0", "127.0.0.1:0").is_ok(),
        "port 0 picks a free port"
    );
    for (listen, admin) in [
        ("127.0.0.1:8080", "127.0.0.1:8080"),
        ("0.0.0.0:8080", "127.0.0.1:8080"),
        ("127.0.0.1:8080", "[::]:8080"),
        ("127.0.0.1:8080", "localhost:9090"),
        ("127.0.0.1:8080", "9090"),
        ("127.0.0.1:8080", ""),
    ] {
        let err = with(listen, admin).unwrap_err();
        assert_eq!(err.key(), "admin.listen", "{listen} / {admin}");
    }
}

#[test]
fn admin_listen_has_an_environment_override() {
    let file = parse_with_env(
        "[admin]\nlisten = \"127.0.0.1:1\"\n",
        &env(&[("SAMLGATE_ADMIN_LISTEN", "127.0.0.1:9191")]),
    )
    .unwrap();
    assert_eq!(file.admin.listen.as_deref(), Some("127.0.0.1:9191"));
    let err = parse_with_env("[admin]\nport = 9090\n", &[]).unwrap_err();
    assert_eq!(err.key(), "admin.port");
}

#[test]
fn heavy_ai_acs_path_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = minimal(dir.path());
    f.saml.acs_path = "/saml-post".into();
    let s = validate(f, dir.path()).unwrap();
    assert_eq!(s.saml.acs_url, "https://app.example.com/saml-post");
}

fn with_tls_files(dir: &Path) -> FileConfig {
    std::fs::write(dir.join("tls.crt"), "stand-in").unwrap();
    std::fs::write(dir.join("tls.key"), "stand-in").unwrap();
    let mut f = minimal(dir);
    f.tls.cert_file = Some("tls.crt".into());
    f.tls.key_file = Some("tls.key".into());
    f
}

#[test]
fn tls_min_version_and_watch_interval_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let t = validate(with_tls_files(dir.path()), dir.path())
        .unwrap()
        .tls
        .unwrap();
    assert_eq!(t.min_version, TlsMinVersion::Tls12);
    assert_eq!(t.watch_interval, Some(Duration::from_secs(10)));
    assert_eq!(t.cert_file, dir.path().join("tls.crt"));

    let mut f = with_tls_files(dir.path());
    f.tls.min_version = Some("1.3".into());
    f.tls.watch_interval_secs = Some(0);
    let t = validate(f, dir.path()).unwrap().tls.unwrap();
    assert_eq!(t.min_version, TlsMinVersion::Tls13);
    assert_eq!(t.watch_interval, None, "0 = SIGHUP only");

    for bad in ["1.1", "1.0", "TLSv1.3", "", "1.4"] {
        let mut f = with_tls_files(dir.path());
        f.tls.min_version = Some(bad.into());
        let err = validate(f, dir.path()).unwrap_err();
        assert_eq!(err.key(), "tls.min_version", "{bad:?}");
        assert!(err.reason().contains("\"1.2\" or \"1.3\""), "{err}");
    }
    let mut f = with_tls_files(dir.path());
    f.tls.watch_interval_secs = Some(86_401);
    assert_eq!(
        validate(f, dir.path()).unwrap_err().key(),
        "tls.watch_interval_secs"
    );
    // Without TLS files these keys would promise a protection that is not there.
    let mut f = minimal(dir.path());
    f.tls.min_version = Some("1.3".into());
    assert_eq!(
        validate(f, dir.path()).unwrap_err().key(),
        "tls.min_version"
    );
    let mut f = minimal(dir.path());
    f.tls.watch_interval_secs = Some(5);
    assert_eq!(
        validate(f, dir.path()).unwrap_err().key(),
        "tls.watch_interval_secs"
    );
    // From the environment, "1.3" stays a string.
    let f = parse_with_env(
        "[tls]\ncert_file = \"tls.crt\"\nkey_file = \"tls.key\"\n",
        &env(&[
            ("SAMLGATE_TLS_MIN_VERSION", "1.3"),
            ("SAMLGATE_TLS_WATCH_INTERVAL_SECS", "2"),
        ]),
    )
    .unwrap();
    assert_eq!(f.tls.min_version.as_deref(), Some("1.3"));
    assert_eq!(f.tls.watch_interval_secs, Some(2));
}

#[test]
fn http_redirect_listen_needs_tls_and_an_https_public_url() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = with_tls_files(dir.path());
    f.server.http_redirect_listen = Some("0.0.0.0:8080".into());
    f.listen = Some("0.0.0.0:8443".into());
    let s = validate(f, dir.path()).unwrap();
    assert_eq!(
        s.server.http_redirect_listen,
        Some("0.0.0.0:8080".parse().unwrap())
    );
    assert_eq!(
        validate(with_tls_files(dir.path()), dir.path())
            .unwrap()
            .server
            .http_redirect_listen,
        None
    );

    let mut f = minimal(dir.path());
    f.server.http_redirect_listen = Some("0.0.0.0:8080".into());
    let err = validate(f, dir.path()).unwrap_err();
    assert_eq!(err.key(), "server.http_redirect_listen");
    assert!(err.reason().contains("tls.cert_file"), "{err}");

    let mut f = with_tls_files(dir.path());
    f.public_url = Some("http://app.example.com".into());
    f.server.http_redirect_listen = Some("0.0.0.0:8080".into());
    let err = validate(f, dir.path()).unwrap_err();
    assert_eq!(err.key(), "server.http_redirect_listen");
    assert!(err.reason().contains("https public_url"), "{err}");

    for bad in ["localhost:80", "80", "0.0.0.0:8443"] {
        let mut f = with_tls_files(dir.path());
        f.listen = Some("0.0.0.0:8443".into());
        f.server.http_redirect_listen = Some(bad.into());
        assert_eq!(
            validate(f, dir.path()).unwrap_err().key(),
            "server.http_redirect_listen",
            "{bad}"
        );
    }
}
