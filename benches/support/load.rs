//! What the load benchmarks share (`benches/proxy_load.rs`, `benches/idle_connections.rs`):
//! environment knobs, the nginx upstream and the tuned nginx reverse proxy samlgate is
//! compared with (both started by tests/support/nginx.rs), and a tiny blocking HTTP/1.1
//! client for sanity checks.
//!
//! Include with `#[path = "support/load.rs"] mod load;` next to
//! `#[path = "../tests/support/nginx.rs"] mod nginx;` (this file names `super::nginx`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::nginx::{Nginx, NginxOptions};

pub fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

// ---- nginx: tests/support/nginx.rs ----------------------------------------------------------

/// The bench's nginx settings: one worker as samlgate's single-threaded run, no access log,
/// `worker_connections` (4096 is enough for wrk plus the keep-alive pool).
pub fn bench_nginx(name: &str, server: &str, worker_connections: u32) -> Nginx {
    let opts = NginxOptions {
        worker_processes: 1,
        worker_connections,
        access_log: false,
        error_log_level: "warn",
    };
    let body = format!("    keepalive_requests 1000000;\n    keepalive_timeout 75s;\n{server}");
    Nginx::start_with(name, &body, &opts)
}

// ---- tiny blocking HTTP/1.1 client (sanity checks, stub_status, latency probe) --------------

/// Reads one response (status line, headers, body by Content-Length or chunked); returns the
/// status and the body.
pub fn read_response(r: &mut impl BufRead) -> std::io::Result<(u16, Vec<u8>)> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("status line"))?;
    let mut length = None;
    let mut chunked = false;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<usize>().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
            {
                chunked = true;
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| bad("chunk size"))?;
            if size == 0 {
                loop {
                    line.clear();
                    if r.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else if status >= 200 && status != 204 && status != 304 {
        r.read_to_end(&mut body)?;
    }
    Ok((status, body))
}

/// One GET on a fresh connection.
pub fn http_get(port: u16, path: &str, headers: &[&str]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send");
    let (status, body) = read_response(&mut BufReader::new(s)).expect("response");
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The upstream both benchmarks proxy to: `ok\n` for every path, `stub_status` at
/// `/nginx_status` (requests and connections counted at the upstream).
pub fn start_upstream(worker_connections: u32) -> Nginx {
    bench_nginx(
        "upstream",
        "server {\n\
         \x20   listen 127.0.0.1:{port} backlog=4096;\n\
         \x20   location = /nginx_status { stub_status; }\n\
         \x20   location / { default_type text/plain; return 200 \"ok\\n\"; }\n\
         }",
        worker_connections,
    )
}

/// The `upstream` block of the tuned nginx proxy: HTTP/1.1 to the upstream with a keep-alive
/// pool of 64 connections.
pub fn tuned_upstream_block(upstream_port: u16) -> String {
    format!(
        "upstream backend {{\n\
         \x20   server 127.0.0.1:{upstream_port};\n\
         \x20   keepalive 64;\n\
         \x20   keepalive_requests 1000000;\n\
         }}\n"
    )
}

/// The tuned proxy's `location /`: what every request to it takes unless a bench adds more.
pub const TUNED_PROXY_LOCATION: &str = "\x20   location / {\n\
     \x20       proxy_pass http://backend;\n\
     \x20       proxy_http_version 1.1;\n\
     \x20       proxy_set_header Connection \"\";\n\
     \x20   }\n";

/// nginx tuned as a reverse proxy in front of the upstream on `upstream_port` (see
/// [`tuned_upstream_block`] and [`TUNED_PROXY_LOCATION`]), with `more_locations` in its
/// server block.
pub fn start_tuned_proxy(
    upstream_port: u16,
    more_locations: &str,
    worker_connections: u32,
) -> Nginx {
    bench_nginx(
        "proxy",
        &format!(
            "{}server {{\n\
             \x20   listen 127.0.0.1:{{port}} backlog=4096;\n\
             {TUNED_PROXY_LOCATION}{more_locations}}}",
            tuned_upstream_block(upstream_port)
        ),
        worker_connections,
    )
}
