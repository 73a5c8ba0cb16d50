//! Cost of the request-header rewrite (`proxy::rewrite_request_headers`) on a typical browser
//! request, with the foreign identity header table on (the default) and off, and on a request
//! that carries a few headers to strip. The table is matched once per header name; it must
//! not make the common request (nothing to strip) noticeably dearer.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue};
use samlgate::config::HeadersSection;
use samlgate::proxy::{rewrite_request_headers, Forwarded, IdentityHeaders};

/// What a browser sends for a page behind samlgate (Chromium, signed in).
const BROWSER: [(&str, &str); 16] = [
    ("host", "app.example.com"),
    ("connection", "keep-alive"),
    ("cache-control", "max-age=0"),
    ("sec-ch-ua", "\"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\""),
    ("sec-ch-ua-mobile", "?0"),
    ("sec-ch-ua-platform", "\"Linux\""),
    ("upgrade-insecure-requests", "1"),
    ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"),
    ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"),
    ("sec-fetch-site", "same-origin"),
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-user", "?1"),
    ("sec-fetch-dest", "document"),
    ("referer", "https://app.example.com/reports"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
    ("cookie", "theme=dark; samlgate_session=abcdefghijklmnopqrstuvwxyz0123456789"),
];

fn request(extra: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in BROWSER.iter().chain(extra) {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    h
}

fn bench(c: &mut Criterion) {
    let fwd = Forwarded {
        client_ip: "203.0.113.7".parse().expect("ip"),
        proto: "https",
        host: Some(HeaderValue::from_static("app.example.com")),
    };
    let with_table = IdentityHeaders::from_config(&HeadersSection::default());
    let without_table = IdentityHeaders::from_config(&HeadersSection {
        strip_foreign_defaults: false,
        ..HeadersSection::default()
    });
    let forged = [
        ("remote-user", "admin"),
        ("x-auth-request-user", "admin"),
        ("x_webauth_user", "admin"),
    ];
    let cases = [
        ("browser/table_on", &with_table, request(&[])),
        ("browser/table_off", &without_table, request(&[])),
        ("browser+3_foreign/table_on", &with_table, request(&forged)),
    ];
    let mut g = c.benchmark_group("rewrite_request_headers");
    for (name, ids, headers) in cases {
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || headers.clone(),
                |h| {
                    rewrite_request_headers(
                        black_box(h),
                        ids,
                        &["samlgate_session", "samlgate_login"],
                        None,
                        &fwd,
                        false,
                    )
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
