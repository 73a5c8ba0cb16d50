//! `samlgate demo`: the whole picture on one machine, on loopback. It starts the dev IdP
//! ([`crate::devidp`]), the demo app ([`app`]: shows the identity headers, echoes WebSockets)
//! and samlgate in front of the app, wires them together and prints where to go. DEVELOPMENT
//! ONLY.
//!
//! The gateway is built exactly as `samlgate run` builds it, through
//! [`crate::config::validate`], [`crate::app::from_settings`] and [`crate::app::serve_on`],
//! from a config whose files (the dev IdP's metadata, a fresh cookie secret, a throw-away SP
//! key pair) are written to a private temporary directory removed at shutdown.
//!
//! Ports: gateway `port_base`, IdP `port_base + 1`, app `port_base + 2`; a taken port falls
//! back to any free one, and the banner says so. `port_base = 0` takes free ports throughout
//! (the tests do).

pub mod app;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::config::{FileConfig, Settings};
use crate::devidp::{self, response::SigningKey, sps::ServiceProvider, users::User};

/// How to start the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Gateway on this port, dev IdP on +1, app on +2; 0 = any free ports.
    pub port_base: u16,
    pub users: Vec<User>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            port_base: 8000,
            users: devidp::users::default_users(),
        }
    }
}

/// The running demo. Dropping it stops the servers; [`DemoHandle::shutdown`] also waits.
pub struct DemoHandle {
    /// Where to point the browser: samlgate in front of the app.
    pub gateway_url: String,
    pub idp_url: String,
    /// The app itself (no identity when reached directly).
    pub app_url: String,
    pub sp_entity_id: String,
    pub idp_metadata_url: String,
    pub users: Vec<User>,
    /// Ports that were taken and replaced, in words.
    pub notes: Vec<String>,
    /// The temporary directory with the gateway's files (removed on drop).
    pub dir: PathBuf,
    idp: Option<devidp::Running>,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _tempdir: tempfile::TempDir,
}

impl DemoHandle {
    /// Stops all three servers and waits for them.
    pub async fn shutdown(mut self) {
        for s in self.stops.drain(..) {
            let _ = s.send(());
        }
        if let Some(idp) = self.idp.take() {
            idp.shutdown().await;
        }
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }

    /// The text `samlgate demo` prints.
    pub fn banner(&self) -> String {
        banner(&BannerView {
            gateway_url: &self.gateway_url,
            idp_url: &self.idp_url,
            app_url: &self.app_url,
            sp_entity_id: &self.sp_entity_id,
            idp_metadata_url: &self.idp_metadata_url,
            users: &self.users,
            notes: &self.notes,
        })
    }
}

impl Drop for DemoHandle {
    fn drop(&mut self) {
        for s in self.stops.drain(..) {
            let _ = s.send(());
        }
    }
}

/// What the banner shows.
pub struct BannerView<'a> {
    pub gateway_url: &'a str,
    pub idp_url: &'a str,
    pub app_url: &'a str,
    pub sp_entity_id: &'a str,
    pub idp_metadata_url: &'a str,
    pub users: &'a [User],
    pub notes: &'a [String],
}

/// The banner: what runs where, whom to sign in as, how to stop. Pure.
pub fn banner(v: &BannerView<'_>) -> String {
    let mut s = String::new();
    s.push_str("samlgate demo: DEVELOPMENT ONLY — never use in production\n\n");
    s.push_str(&format!(
        "  Open {}/ in a browser and sign in as one of the users below.\n\n",
        v.gateway_url
    ));
    s.push_str(&format!(
        "  gateway   {:<24}  samlgate, SP entity ID {}\n",
        v.gateway_url, v.sp_entity_id
    ));
    s.push_str(&format!(
        "  dev IdP   {:<24}  SAML IdP, metadata {}\n",
        v.idp_url, v.idp_metadata_url
    ));
    s.push_str(&format!(
        "  demo app  {:<24}  the upstream: shows identity headers, echoes WebSockets at /ws\n",
        v.app_url
    ));
    for n in v.notes {
        s.push_str(&format!("  note: {n}\n"));
    }
    let quick = v.users.iter().all(|u| !u.needs_password());
    s.push_str(&format!(
        "\n  Users ({}):\n",
        if quick {
            "no passwords; pick one on the IdP's login page"
        } else {
            "pick one on the IdP's login page; some need their password"
        }
    ));
    let width = v.users.iter().map(|u| u.username.len()).max().unwrap_or(0);
    let name_width = v
        .users
        .iter()
        .map(|u| u.display_name().chars().count())
        .max()
        .unwrap_or(0);
    for u in v.users {
        let groups = if u.groups.is_empty() {
            "(no groups)".to_string()
        } else {
            u.groups.join(", ")
        };
        s.push_str(&format!(
            "    {:<width$}  {:<name_width$}  groups: {}\n",
            u.username,
            u.display_name(),
            groups,
        ));
    }
    s.push_str(&format!(
        "\n  Sign out: {}/saml/logout (samlgate), {}/slo (dev IdP).\n",
        v.gateway_url, v.idp_url
    ));
    s.push_str("  Press Ctrl-C to stop all three.\n");
    s
}

/// The three ports to try: base, base + 1, base + 2 (0 where out of range or base is 0).
pub fn preferred_ports(base: u16) -> [u16; 3] {
    if base == 0 {
        return [0; 3];
    }
    [
        base,
        base.checked_add(1).unwrap_or(0),
        base.checked_add(2).unwrap_or(0),
    ]
}

/// Binds 127.0.0.1:`port`, or any free loopback port if that one is taken. The note says
/// what happened, for the banner.
async fn bind(port: u16, what: &str) -> Result<(TcpListener, Option<String>), String> {
    let loopback = Ipv4Addr::LOCALHOST;
    match TcpListener::bind(SocketAddr::from((loopback, port))).await {
        Ok(l) => Ok((l, None)),
        Err(first) if port != 0 => {
            let l = TcpListener::bind(SocketAddr::from((loopback, 0)))
                .await
                .map_err(|e| format!("{what}: no free loopback port: {e}"))?;
            let got = l.local_addr().map(|a| a.port()).unwrap_or(0);
            Ok((
                l,
                Some(format!(
                    "port {port} for the {what} is taken ({first}); using {got}"
                )),
            ))
        }
        Err(e) => Err(format!("{what}: cannot bind a loopback port: {e}")),
    }
}

fn random_secret() -> Result<String, String> {
    let mut buf = [0u8; 48];
    openssl::rand::rand_bytes(&mut buf).map_err(|e| format!("random cookie secret: {e}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(buf))
}

/// Starts the dev IdP, the demo app and the gateway, wired together.
pub async fn start(opts: DemoOptions) -> Result<DemoHandle, String> {
    let ([gw_listener, idp_listener, app_listener], notes) = bind_all(opts.port_base).await?;
    let addr = |l: &TcpListener| l.local_addr().map_err(|e| e.to_string());
    let gw_addr = addr(&gw_listener)?;
    let app_addr = addr(&app_listener)?;
    let gateway_url = format!("http://{gw_addr}");
    let app_url = format!("http://{app_addr}");

    // 1. The dev IdP (the SP is registered once the gateway's settings say its URLs).
    let idp = start_dev_idp(idp_listener, opts.users.clone()).await?;

    // 2. The gateway's files, in a private temporary directory.
    let dir = tempfile::Builder::new()
        .prefix("samlgate-demo-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    write_gateway_files(dir.path(), &idp).await?;

    // 3. The gateway, built as `samlgate run` builds it.
    let settings = gateway_settings(dir.path(), gw_addr, &gateway_url, &app_url)?;
    idp.idp.register_sp(ServiceProvider {
        entity_id: settings.saml.sp_entity_id.clone(),
        acs_urls: vec![settings.saml.acs_url.clone()],
        slo_url: None,
    });
    let sp_entity_id = settings.saml.sp_entity_id.clone();
    let gateway = crate::app::from_settings(settings).map_err(|e| e.to_string())?;
    let (stops, tasks) = spawn_servers(app_listener, gateway, gw_listener);

    Ok(DemoHandle {
        gateway_url,
        idp_url: idp.url().to_string(),
        app_url,
        sp_entity_id,
        idp_metadata_url: idp.idp.entity_id().to_string(),
        users: opts.users,
        notes,
        dir: dir.path().to_path_buf(),
        idp: Some(idp),
        stops,
        tasks,
        _tempdir: dir,
    })
}

/// Binds the gateway, dev IdP and demo app listeners, in that order, with a note for each
/// port that had to fall back.
async fn bind_all(port_base: u16) -> Result<([TcpListener; 3], Vec<String>), String> {
    let [gw_port, idp_port, app_port] = preferred_ports(port_base);
    let mut notes = Vec::new();
    let (gw_listener, n) = bind(gw_port, "gateway").await?;
    notes.extend(n);
    let (idp_listener, n) = bind(idp_port, "dev IdP").await?;
    notes.extend(n);
    let (app_listener, n) = bind(app_port, "demo app").await?;
    notes.extend(n);
    Ok(([gw_listener, idp_listener, app_listener], notes))
}

/// Starts the dev IdP on its listener with a fresh signing key and no SP yet.
async fn start_dev_idp(listener: TcpListener, users: Vec<User>) -> Result<devidp::Running, String> {
    let key = tokio::task::spawn_blocking(|| SigningKey::generate("samlgate demo dev IdP"))
        .await
        .map_err(|e| e.to_string())??;
    let listen = listener.local_addr().map_err(|e| e.to_string())?;
    devidp::start_on(
        devidp::Options {
            listen,
            public_url: None,
            allow_non_loopback: false,
            users,
            sps: vec![],
            key,
        },
        listener,
    )
    .await
}

/// Writes the files the gateway's config names into `dir`: the dev IdP's metadata, a fresh
/// cookie secret and a throw-away SP key pair (secrets with owner-only permissions).
async fn write_gateway_files(dir: &Path, idp: &devidp::Running) -> Result<(), String> {
    let sp = tokio::task::spawn_blocking(|| {
        crate::certgen::self_signed(&crate::certgen::CertSpec {
            common_name: "samlgate demo SP - not for production".into(),
            rsa_bits: 2048,
            days: 30,
            purpose: crate::certgen::Purpose::Saml,
            san: vec![],
        })
    })
    .await
    .map_err(|e| e.to_string())??;
    let write = |name: &str, data: &[u8], secret: bool| {
        crate::certgen::write_file(&dir.join(name), data, secret, false)
    };
    write("idp-metadata.xml", idp.idp.metadata_xml().as_bytes(), false)?;
    write("cookie.secret", random_secret()?.as_bytes(), true)?;
    write("sp.key", sp.key_pem()?.as_bytes(), true)?;
    write("sp.crt", sp.cert_pem()?.as_bytes(), false)?;
    Ok(())
}

/// The gateway's settings, validated as `samlgate run` validates its config file.
fn gateway_settings(
    dir: &Path,
    gw_addr: SocketAddr,
    gateway_url: &str,
    app_url: &str,
) -> Result<Settings, String> {
    let mut file = FileConfig {
        listen: Some(gw_addr.to_string()),
        public_url: Some(gateway_url.to_string()),
        upstream: Some(app_url.to_string()),
        ..FileConfig::default()
    };
    file.saml.idp_metadata_file = Some("idp-metadata.xml".into());
    file.saml.sp_key_file = Some("sp.key".into());
    file.saml.sp_cert_file = Some("sp.crt".into());
    file.session.cookie_secret_file = Some("cookie.secret".into());
    file.server.shutdown_grace_secs = 2;
    crate::config::validate(file, dir).map_err(|e| e.to_string())
}

/// Spawns the demo app and the gateway; each stops when its sender is sent to or dropped.
fn spawn_servers(
    app_listener: TcpListener,
    gateway: crate::app::App,
    gw_listener: TcpListener,
) -> (Vec<oneshot::Sender<()>>, Vec<tokio::task::JoinHandle<()>>) {
    let mut stops = Vec::new();
    let mut tasks = Vec::new();
    let (stop, stopped) = oneshot::channel::<()>();
    stops.push(stop);
    tasks.push(tokio::spawn(app::serve_on(app_listener, async {
        let _ = stopped.await;
    })));
    let (stop, stopped) = oneshot::channel::<()>();
    stops.push(stop);
    tasks.push(tokio::spawn(async move {
        let result = crate::app::serve_on(gateway, gw_listener, async {
            let _ = stopped.await;
        })
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "demo gateway stopped");
        }
    }));
    (stops, tasks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_follow_the_base() {
        assert_eq!(preferred_ports(8000), [8000, 8001, 8002]);
        assert_eq!(preferred_ports(0), [0, 0, 0]);
        assert_eq!(preferred_ports(65535), [65535, 0, 0]);
    }

    #[test]
    fn banner_names_everything_a_newcomer_needs() {
        let users = devidp::users::default_users();
        let b = banner(&BannerView {
            gateway_url: "http://127.0.0.1:8000",
            idp_url: "http://127.0.0.1:8001",
            app_url: "http://127.0.0.1:8002",
            sp_entity_id: "http://127.0.0.1:8000/saml/metadata",
            idp_metadata_url: "http://127.0.0.1:8001/metadata",
            users: &users,
            notes: &["port 8002 for the demo app is taken; using 40000".into()],
        });
        assert!(b.starts_with("samlgate demo: DEVELOPMENT ONLY — never use in production"));
        assert!(b.contains("Open http://127.0.0.1:8000/ in a browser"));
        assert!(b.contains("alice  Alice Anderson  groups: analysts, admins"));
        assert!(b.contains("carol  Carol Clark     groups: (no groups)"));
        assert!(b.contains("note: port 8002 for the demo app is taken; using 40000"));
        assert!(b.contains("no passwords"));
        assert!(b.contains("Ctrl-C"));
    }

    #[tokio::test]
    async fn a_taken_port_falls_back_with_a_note() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = taken.local_addr().unwrap().port();
        let (l, note) = bind(port, "gateway").await.unwrap();
        assert_ne!(l.local_addr().unwrap().port(), port);
        assert!(note
            .unwrap()
            .contains(&format!("port {port} for the gateway is taken")));
        let (_, note) = bind(0, "gateway").await.unwrap();
        assert!(note.is_none());
    }
}
