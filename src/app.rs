//! Assembly: config file → validated settings → gateway → listener. Shared by the binary and
//! the integration tests so both start the gateway the same way.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::{self, Settings};
use crate::gateway::Gateway;
use crate::server;

pub struct App {
    pub settings: Settings,
    pub gateway: Arc<Gateway>,
    /// The file the settings came from (re-read on `SIGHUP`); `None` when built from settings.
    pub config_path: Option<PathBuf>,
}

/// Loads and validates everything that can be checked without binding a socket.
pub fn build(config_path: &Path) -> Result<App, String> {
    let settings = config::load(config_path).map_err(|e| e.to_string())?;
    let mut app = from_settings(settings)?;
    app.config_path = Some(config_path.to_path_buf());
    Ok(app)
}

/// Re-reads the config file and applies what may change while serving ([`Gateway::reload`]:
/// rules, authorization, identity headers, forward-auth). A file that does not validate
/// changes nothing: the error is logged and the running configuration stays in force.
pub fn reload_config(path: &Path, gateway: &Gateway) {
    match config::load(path) {
        Err(e) => {
            tracing::error!(config = %path.display(), error = %e, "config reload rejected; the running configuration stays in force");
        }
        Ok(new) => {
            let restart = gateway.reload(&new);
            if restart.is_empty() {
                tracing::info!(config = %path.display(), "config reloaded");
            } else {
                tracing::warn!(config = %path.display(), needs_restart = ?restart, "config reloaded; changes to these keys take effect only after a restart");
            }
        }
    }
}

pub fn from_settings(mut settings: Settings) -> Result<App, String> {
    // `saml.idp_metadata_url`: fetch now (else the cache file), before anything needs it.
    crate::saml::metadata_source::load_initial(&mut settings.saml)?;
    if let Some(tls) = &settings.tls {
        server::tls_acceptor(&tls.cert_file, &tls.key_file)?;
    }
    let gateway = Gateway::new(settings.clone())?;
    Ok(App {
        settings,
        gateway,
        config_path: None,
    })
}

/// Binds `listen` and serves until `shutdown` resolves.
pub async fn serve(app: App, shutdown: impl Future<Output = ()>) -> Result<(), String> {
    let listener = TcpListener::bind(app.settings.listen)
        .await
        .map_err(|e| format!("listen {}: {e}", app.settings.listen))?;
    serve_on(app, listener, shutdown).await
}

/// Serves on an already-bound listener (tests bind port 0 first to learn the address); binds
/// the admin listener (`[admin] listen`) when one is configured.
pub async fn serve_on(
    app: App,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let admin = match &app.settings.admin {
        Some(a) => Some(
            TcpListener::bind(a.listen)
                .await
                .map_err(|e| format!("admin.listen {}: {e}", a.listen))?,
        ),
        None => None,
    };
    serve_on_with_admin(app, listener, admin, shutdown).await
}

/// Like [`serve_on`] with the admin listener already bound (or none). The admin listener
/// keeps answering while the gateway drains, and stops after it.
pub async fn serve_on_with_admin(
    app: App,
    listener: TcpListener,
    admin: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let tls = match &app.settings.tls {
        Some(t) => Some(server::tls_acceptor(&t.cert_file, &t.key_file)?),
        None => None,
    };
    tracing::info!(
        listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        public_url = %app.settings.public_url,
        upstream = %app.settings.upstream,
        idp = %app.gateway.idp_entity_id(),
        tls = tls.is_some(),
        "samlgate serving"
    );
    // `saml.idp_metadata_url`: refresh in the background until shutdown.
    let refresh = crate::saml::metadata_source::spawn_refresh(
        app.gateway.current_idp(),
        app.settings.saml.clone(),
    );
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin = admin.map(|l| {
        tokio::spawn(crate::admin::serve(
            l,
            app.gateway.metrics(),
            app.settings.server.header_read_timeout,
            async move {
                let _ = admin_stopped.await;
            },
        ))
    });
    server::serve(
        app.gateway,
        listener,
        tls,
        app.settings.server.clone(),
        shutdown,
    )
    .await;
    if let Some(r) = refresh {
        r.abort();
    }
    let _ = admin_stop.send(());
    if let Some(a) = admin {
        let _ = a.await;
    }
    Ok(())
}
