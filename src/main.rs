//! The `samlgate` command: `run`, `check-config`, `metadata`, `passwd`, and the development tools
//! `dev-idp`, `demo` and `gen-cert` (only with the `dev-tools` cargo feature, on by default; a
//! `--no-default-features` build has no such subcommands).

// As in lib.rs: nothing here needs `unsafe`, and nothing here unwraps.
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used)]

#[cfg(feature = "dev-tools")]
use std::net::SocketAddr;
#[cfg(feature = "dev-tools")]
use std::path::Path;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "samlgate",
    version,
    about = "SAML 2.0 single sign-on gateway (reverse proxy)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve: authenticate every request and forward it to the upstream.
    Run {
        #[arg(long, short, env = "SAMLGATE_CONFIG")]
        config: PathBuf,
    },
    /// Validate the config (and IdP metadata, keys, upstream URL) without serving.
    CheckConfig {
        #[arg(long, short, env = "SAMLGATE_CONFIG")]
        config: PathBuf,
    },
    /// Print the SP metadata XML to give to the IdP admin.
    Metadata {
        #[arg(long, short, env = "SAMLGATE_CONFIG")]
        config: PathBuf,
    },
    /// Add a user to the local users file (`[password_signin.local] users_file`) or change
    /// their password. The password is read without echo (twice) from the terminal, or as
    /// one line from standard input with --password-stdin.
    Passwd {
        /// The users file (created, mode 0600, when missing).
        #[arg(long, short)]
        file: PathBuf,
        /// The user name.
        user: String,
        /// The user's groups, comma-separated (default: keep an existing user's groups).
        #[arg(long, value_delimiter = ',')]
        groups: Option<Vec<String>>,
        /// Read the password from standard input (one line) instead of the terminal.
        #[arg(long)]
        password_stdin: bool,
    },
    #[cfg(feature = "dev-tools")]
    /// Run a SAML 2.0 IdP for development and tests. DEVELOPMENT ONLY: it signs an
    /// assertion for anyone who picks a user.
    DevIdp {
        /// Users file (TOML `[[users]]`: username, password, uid, email, display_name,
        /// groups). Without it: alice, bob, carol, dave.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Address to bind; loopback only unless --allow-non-loopback.
        #[arg(long, default_value = "127.0.0.1:7000")]
        listen: SocketAddr,
        /// The URL browsers use to reach the IdP (default http://<listen>).
        #[arg(long)]
        public_url: Option<String>,
        /// An SP metadata file to trust (repeatable).
        #[arg(long = "sp-metadata", value_name = "FILE")]
        sp_metadata: Vec<PathBuf>,
        /// An SP entity ID to trust, paired with the --acs-url at the same position
        /// (repeatable).
        #[arg(long = "sp-entity-id", value_name = "ID")]
        sp_entity_id: Vec<String>,
        /// The ACS URL of the --sp-entity-id at the same position (repeatable).
        #[arg(long = "acs-url", value_name = "URL")]
        acs_url: Vec<String>,
        /// Signing key (PEM, RSA) instead of a fresh one; needs --cert.
        #[arg(long, requires = "cert", value_name = "FILE")]
        key: Option<PathBuf>,
        /// Certificate (PEM) of --key.
        #[arg(long, requires = "key", value_name = "FILE")]
        cert: Option<PathBuf>,
        /// Allow a listen address off loopback (never in production).
        #[arg(long)]
        allow_non_loopback: bool,
    },
    #[cfg(feature = "dev-tools")]
    /// Start the dev IdP, a demo app and samlgate in front of it, all on loopback.
    Demo {
        /// Gateway on this port, dev IdP on +1, app on +2 (a taken port falls back to a
        /// free one).
        #[arg(long, default_value_t = 8000)]
        port_base: u16,
    },
    #[cfg(feature = "dev-tools")]
    /// Write an SP key pair (sp.key, sp.crt) and a self-signed TLS pair (tls.key, tls.crt).
    GenCert {
        /// Directory to write to (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Subject common name of both certificates.
        #[arg(long, default_value = "samlgate")]
        cn: String,
        /// Validity in days.
        #[arg(long, default_value_t = 730)]
        days: u32,
        /// Host name for the TLS certificate's SAN (localhost and 127.0.0.1 are always in).
        #[arg(long, default_value = "localhost")]
        tls_host: String,
        /// Prefix for the file names (`example-` writes example-sp.key …).
        #[arg(long, default_value = "")]
        prefix: String,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => run(config),
        Command::Passwd {
            file,
            user,
            groups,
            password_stdin,
        } => passwd(&file, &user, groups.as_deref(), password_stdin),
        Command::CheckConfig { config } => match samlgate::app::build(&config) {
            Ok(app) => {
                println!(
                    "config OK: {} → {} (IdP {}, ACS {})",
                    app.settings.public_url,
                    app.settings.upstream,
                    app.gateway.idp_entity_id(),
                    app.settings.saml.acs_url
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Metadata { config } => match samlgate::app::build(&config) {
            Ok(app) => {
                print!("{}", String::from_utf8_lossy(app.gateway.sp_metadata()));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        #[cfg(feature = "dev-tools")]
        Command::DevIdp {
            config,
            listen,
            public_url,
            sp_metadata,
            sp_entity_id,
            acs_url,
            key,
            cert,
            allow_non_loopback,
        } => {
            let opts = match devidp_options(DevIdpArgs {
                users_file: config.as_deref(),
                listen,
                public_url,
                sp_metadata: &sp_metadata,
                sp_entity_id: &sp_entity_id,
                acs_url: &acs_url,
                key: key.as_deref().zip(cert.as_deref()),
                allow_non_loopback,
            }) {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("dev-idp: {e}");
                    return ExitCode::from(2);
                }
            };
            dev_idp(opts)
        }
        #[cfg(feature = "dev-tools")]
        Command::Demo { port_base } => demo(port_base),
        #[cfg(feature = "dev-tools")]
        Command::GenCert {
            out,
            cn,
            days,
            tls_host,
            prefix,
            force,
        } => gen_cert(samlgate::certgen::GenCertOptions {
            out,
            common_name: cn,
            days,
            tls_host,
            prefix,
            force,
        }),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

#[cfg(feature = "dev-tools")]
struct DevIdpArgs<'a> {
    users_file: Option<&'a Path>,
    listen: SocketAddr,
    public_url: Option<String>,
    sp_metadata: &'a [PathBuf],
    sp_entity_id: &'a [String],
    acs_url: &'a [String],
    key: Option<(&'a Path, &'a Path)>,
    allow_non_loopback: bool,
}

#[cfg(feature = "dev-tools")]
/// Reads the files the dev IdP's flags name and checks the flags.
fn devidp_options(a: DevIdpArgs<'_>) -> Result<samlgate::devidp::Options, String> {
    use samlgate::devidp::{self, response::SigningKey, sps, users};
    devidp::check_listen(a.listen, a.allow_non_loopback)?;
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let users = match a.users_file {
        Some(p) => {
            let text =
                String::from_utf8(read(p)?).map_err(|_| format!("{}: not UTF-8", p.display()))?;
            users::parse_users(&text).map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => users::default_users(),
    };
    let mut trusted = sps::pair_flags(a.sp_entity_id, a.acs_url)?;
    for p in a.sp_metadata {
        let text =
            String::from_utf8(read(p)?).map_err(|_| format!("{}: not UTF-8", p.display()))?;
        trusted.extend(sps::parse_sp_metadata(&text).map_err(|e| format!("{}: {e}", p.display()))?);
    }
    let key = match a.key {
        Some((key, cert)) => SigningKey::from_pem(&read(key)?, &read(cert)?)
            .map_err(|e| format!("--key/--cert: {e}"))?,
        None => SigningKey::generate("samlgate dev IdP - not for production")?,
    };
    Ok(devidp::Options {
        listen: a.listen,
        public_url: a.public_url,
        allow_non_loopback: a.allow_non_loopback,
        users,
        sps: trusted,
        key,
    })
}

#[cfg(feature = "dev-tools")]
fn dev_idp(opts: samlgate::devidp::Options) -> ExitCode {
    samlgate::observability::init("human", "info");
    let rt = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    rt.block_on(async {
        let running = match samlgate::devidp::start(opts).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("dev-idp: {e}");
                return ExitCode::FAILURE;
            }
        };
        let idp = &running.idp;
        println!("samlgate dev IdP: DEVELOPMENT ONLY — never use in production\n");
        println!("  home      {}/", idp.base_url());
        println!("  metadata  {}   (entity ID)", idp.entity_id());
        println!("  SSO       {}   (HTTP-Redirect)", idp.sso_url());
        println!("  SLO       {}   (HTTP-Redirect)", idp.slo_url());
        let sps = idp.sps();
        if sps.is_empty() {
            println!("\n  No SP is trusted: every AuthnRequest will be refused. Add --sp-entity-id ID --acs-url URL or --sp-metadata FILE.");
        }
        for sp in &sps {
            println!("  SP        {} → {}", sp.entity_id, sp.acs_urls.join(", "));
        }
        println!("\n  Users: {}", idp.users().iter().map(|u| u.username.as_str()).collect::<Vec<_>>().join(", "));
        println!("  Press Ctrl-C to stop.");
        samlgate::server::shutdown_signal().await;
        running.shutdown().await;
        ExitCode::SUCCESS
    })
}

#[cfg(feature = "dev-tools")]
fn demo(port_base: u16) -> ExitCode {
    samlgate::observability::init("human", "warn,samlgate::audit=info,samlgate::devidp=info");
    let rt = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    rt.block_on(async {
        let handle = match samlgate::demo::start(samlgate::demo::DemoOptions {
            port_base,
            ..Default::default()
        })
        .await
        {
            Ok(h) => h,
            Err(e) => {
                eprintln!("demo: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("\n{}", handle.banner());
        samlgate::server::shutdown_signal().await;
        println!("stopping the demo…");
        handle.shutdown().await;
        ExitCode::SUCCESS
    })
}

fn passwd(
    file: &std::path::Path,
    user: &str,
    groups: Option<&[String]>,
    from_stdin: bool,
) -> ExitCode {
    let password = match read_new_password(from_stdin) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("passwd: {e}");
            return ExitCode::FAILURE;
        }
    };
    match samlgate::password::local::passwd(file, user, &password, groups) {
        Ok(outcome) => {
            let what = match outcome {
                samlgate::password::local::PasswdOutcome::Added => "added",
                samlgate::password::local::PasswdOutcome::Changed => "changed the password of",
            };
            println!("{what} `{user}` in {}", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("passwd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The new password: one line of standard input, or typed twice on the terminal without echo.
fn read_new_password(from_stdin: bool) -> Result<String, String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    let first = rpassword::prompt_password("New password: ").map_err(|e| {
        format!("cannot read the password from the terminal ({e}); use --password-stdin")
    })?;
    let again = rpassword::prompt_password("Repeat it: ")
        .map_err(|e| format!("cannot read the password from the terminal: {e}"))?;
    if first != again {
        return Err("the two passwords differ; nothing changed".into());
    }
    Ok(first)
}

#[cfg(feature = "dev-tools")]
fn gen_cert(opts: samlgate::certgen::GenCertOptions) -> ExitCode {
    match samlgate::certgen::write_set(&opts) {
        Ok(paths) => {
            for p in paths {
                println!("wrote {}", p.display());
            }
            println!("Keys are mode 0600. Self-signed: the IdP trusts sp.crt through your SP metadata; browsers will warn about tls.crt unless told to trust it.");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen-cert: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: PathBuf) -> ExitCode {
    let app = match samlgate::app::build(&config) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    samlgate::observability::init(&app.settings.log.format, &app.settings.log.level);
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(samlgate::app::serve(
        app,
        samlgate::server::shutdown_signal(),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
