//! The `samlgate` command: `run`, `check-config`, `metadata`.

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => run(config),
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
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
