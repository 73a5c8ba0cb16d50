//! Assembly: config file → validated settings → gateway → listener. Shared by the binary and
//! the integration tests so both start the gateway the same way. Also the process-wide
//! reactions that run beside the listener: SIGHUP ([`on_hangup`]), the TLS file watcher and
//! the optional plain-HTTP redirect listener.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::{self, ConfigError, Settings};
use crate::gateway::Gateway;
use crate::server;
use crate::tls::{self, TlsError, TlsReloader};

/// Why the gateway cannot start: each variant says what failed, and with which key.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The file does not load or validate.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `saml.idp_metadata_url` gave no usable metadata, and neither did the cache file.
    #[error(transparent)]
    Metadata(#[from] crate::saml::metadata_source::MetadataError),
    /// The TLS pair cannot be served.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The settings validated, but the gateway refused them (IdP metadata, SP keys).
    #[error("{0}")]
    Gateway(String),
    /// A listener's address cannot be bound; `key` is the setting that names it.
    #[error("{key} {addr}: {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Binds `addr`, named by `key` in the error.
async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { key, addr, source })
}

pub struct App {
    pub settings: Settings,
    pub gateway: Arc<Gateway>,
    /// The file the settings came from (re-read on `SIGHUP`); `None` when built from settings.
    pub config_path: Option<PathBuf>,
}

/// Loads and validates everything that can be checked without binding a socket.
pub fn build(config_path: &Path) -> Result<App, AppError> {
    let settings = config::load(config_path)?;
    let mut app = from_settings(settings)?;
    app.config_path = Some(config_path.to_path_buf());
    Ok(app)
}

/// Re-reads the config file and applies what may change while serving ([`Gateway::reload`]:
/// rules, authorization, identity headers, forward-auth). A file that does not validate
/// changes nothing: the error is logged and the running configuration stays in force. Both
/// outcomes are audit events (`reload`, `reload_refused`): who may enter can change here.
pub fn reload_config(path: &Path, gateway: &Gateway) {
    match config::load(path) {
        Err(e) => {
            tracing::error!(target: "samlgate::audit", event = "reload_refused", config = %path.display(), error = %e, "config reload rejected; the running configuration stays in force");
        }
        Ok(new) => match gateway.reload(&new) {
            Err(e) => {
                tracing::error!(target: "samlgate::audit", event = "reload_refused", config = %path.display(), error = %e, "config reload rejected; the running configuration stays in force");
            }
            Ok(restart) if restart.is_empty() => {
                tracing::info!(target: "samlgate::audit", event = "reload", config = %path.display(), "config reloaded");
            }
            Ok(restart) => {
                tracing::warn!(target: "samlgate::audit", event = "reload", config = %path.display(), needs_restart = ?restart, "config reloaded; changes to these keys take effect only after a restart");
            }
        },
    }
}

pub fn from_settings(mut settings: Settings) -> Result<App, AppError> {
    // `saml.idp_metadata_url`: fetch now (else the cache file), before anything needs it.
    crate::saml::metadata_source::load_initial(&mut settings.saml)?;
    if let Some(tls) = &settings.tls {
        TlsReloader::new(tls)?;
    }
    let gateway = Gateway::new(settings.clone()).map_err(AppError::Gateway)?;
    Ok(App {
        settings,
        gateway,
        config_path: None,
    })
}

/// Binds `listen` and serves until `shutdown` resolves.
pub async fn serve(app: App, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
    let listener = bind("listen", app.settings.listen).await?;
    serve_on(app, listener, shutdown).await
}

/// Serves on an already-bound listener (tests bind port 0 first to learn the address); binds
/// the admin listener (`[admin] listen`) when one is configured.
pub async fn serve_on(
    app: App,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AppError> {
    let admin = match &app.settings.admin {
        Some(a) => Some(bind("admin.listen", a.listen).await?),
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
) -> Result<(), AppError> {
    let tls = match &app.settings.tls {
        Some(files) => Some(Arc::new(TlsReloader::new(files)?)),
        None => None,
    };
    let redirect_listener = match app.settings.server.http_redirect_listen {
        Some(addr) => Some(bind("server.http_redirect_listen", addr).await?),
        None => None,
    };
    // Registered before serving: from here on SIGHUP reloads instead of ending the process.
    let hangups = hangup_signals();
    tracing::info!(
        listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        public_url = %app.settings.public_url,
        upstream = %app.settings.upstream,
        idp = %app.gateway.idp_entity_id(),
        tls = tls.is_some(),
        http_redirect_listen = %redirect_listener.as_ref().and_then(|l| l.local_addr().ok()).map(|a| a.to_string()).unwrap_or_default(),
        "samlgate serving"
    );
    if let Some(t) = &tls {
        let cert = t.current_summary();
        tracing::info!(subject = %cert.subject, not_after = %cert.not_after, sha256 = %cert.sha256, "TLS certificate in service");
    }
    let mut background = Vec::new();
    background.push(tokio::spawn(housekeeping(app.gateway.clone())));
    background.push(tokio::spawn(log_summaries(app.gateway.clone())));
    // `saml.idp_metadata_url`: refresh in the background until shutdown.
    background.extend(crate::saml::metadata_source::spawn_refresh(
        app.gateway.current_idp(),
        app.settings.saml.clone(),
    ));
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin = admin.map(|l| {
        tokio::spawn(crate::admin::serve(
            l,
            app.gateway.metrics(),
            app.gateway.admin_api(),
            app.settings.server.header_read_timeout,
            async move {
                let _ = admin_stopped.await;
            },
        ))
    });
    if let (Some(t), Some(interval)) = (
        &tls,
        app.settings.tls.as_ref().and_then(|f| f.watch_interval),
    ) {
        background.push(tokio::spawn(tls::watch_files(t.clone(), interval)));
    }
    if let Some(hangups) = hangups {
        let config = app
            .config_path
            .clone()
            .map(|path| (path, app.gateway.clone()));
        background.push(tokio::spawn(on_hangup(hangups, tls.clone(), config)));
    }
    // One shutdown for both listeners: the main one resolves `shutdown`, the redirect
    // listener follows.
    let (stopping, stopped) = tokio::sync::watch::channel(false);
    let redirect = redirect_listener.map(|l| {
        let origin = app.settings.public_url.origin().ascii_serialization();
        let mut stopped = stopped.clone();
        tokio::spawn(server::serve_http_redirect(
            l,
            origin,
            app.settings.server.clone(),
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        ))
    });
    server::serve(
        app.gateway,
        listener,
        tls.as_ref().map(|t| t.acceptor()),
        app.settings.server.clone(),
        async {
            shutdown.await;
            let _ = stopping.send(true);
        },
    )
    .await;
    let _ = stopping.send(true);
    if let Some(r) = redirect {
        let _ = r.await;
    }
    for task in background {
        task.abort();
    }
    let _ = admin_stop.send(());
    if let Some(a) = admin {
        let _ = a.await;
    }
    Ok(())
}

/// Every minute: [`Gateway::housekeeping`] (rate-limit entries of idle clients).
async fn housekeeping(gateway: Arc<Gateway>) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        gateway.housekeeping();
    }
}

/// Every [`crate::log_throttle::INTERVAL`]: the summaries of refusals not logged one by one
/// (a flood that stopped still gets its count written).
async fn log_summaries(gateway: Arc<Gateway>) {
    let mut every = tokio::time::interval(crate::log_throttle::INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        gateway.flush_log_summaries(std::time::Instant::now());
    }
}

#[cfg(unix)]
type Hangups = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangups = std::convert::Infallible;

fn hangup_signals() -> Option<Hangups> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reload by restarting");
                None
            }
        }
    }
    #[cfg(not(unix))]
    None
}

/// What SIGHUP does: re-read what can change while serving, once per signal. Runs until
/// aborted at shutdown.
async fn on_hangup(
    mut hangups: Hangups,
    tls: Option<Arc<TlsReloader>>,
    config: Option<(PathBuf, Arc<Gateway>)>,
) {
    #[cfg(unix)]
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading");
        if let Some(tls) = &tls {
            let tls = tls.clone();
            // Errors are logged by `reload`; the old certificate stays in service.
            let _ = tokio::task::spawn_blocking(move || tls.reload("SIGHUP")).await;
        }
        if let Some((path, gateway)) = &config {
            let (path, gateway) = (path.clone(), gateway.clone());
            // Reads files (config, IdP metadata, secrets): off the async workers.
            let _ = tokio::task::spawn_blocking(move || reload_config(&path, &gateway)).await;
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (tls, config);
        match hangups {}
    }
}
