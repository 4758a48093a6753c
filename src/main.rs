//! The `riskgate` command: parses configuration and calls the library.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use riskgate::config::Settings;
use riskgate::policy::{Limits, Runtime};
use riskgate::replay::command::{GenArgs, ReplayArgs, run_gen, run_replay};
use riskgate::service;

// glibc's allocator spends a third of an evaluation consolidating small blocks; mimalloc
// keeps per-thread pools for the many short-lived allocations of a request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code when a policy is invalid.
const EXIT_INVALID: u8 = 1;
/// Exit code for other errors (configuration, I/O).
const EXIT_ERROR: u8 = 3;

/// Adaptive risk-based authentication: allow, step-up (mfa) or lock each login.
#[derive(Parser)]
#[command(name = "riskgate", version, about)]
struct Cli {
    /// TOML config file [default: ./riskgate.toml when present].
    #[arg(long, env = "RISKGATE_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the risk API over HTTP.
    Serve,
    /// Work with policy scripts.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Replay a login log through a fresh engine: decisions, metrics, A/B, report.
    Replay(ReplayArgs),
    /// Write a labelled synthetic login corpus (RBA dataset schema).
    Gen(GenArgs),
    /// Query the GeoIP databases.
    Geoip {
        #[command(subcommand)]
        command: GeoipCommand,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Compile a policy and report syntax errors with line and column.
    Check {
        /// The `.rhai` file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum GeoipCommand {
    /// Show what the configured databases say about an IP.
    Lookup {
        /// The address.
        ip: IpAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RISKGATE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli.command, cli.settings, cli.config) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn run(
    command: Command,
    settings: Settings,
    config_file: Option<PathBuf>,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let config = || settings.with_file(config_file.as_deref())?.resolve();
    match command {
        Command::Policy {
            command: PolicyCommand::Check { file },
        } => return check_policy(&file),
        Command::Serve => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(service::run(config()?, shutdown_signal()))?;
        }
        Command::Geoip {
            command: GeoipCommand::Lookup { ip },
        } => {
            let geo = service::open_geoip(&config()?)?.lookup(ip);
            let json = serde_json::json!({
                "ip": ip,
                "country": geo.country,
                "city": geo.city,
                "lat": geo.lat,
                "lon": geo.lon,
                "accuracy_km": geo.accuracy_km,
                "asn": geo.asn,
                "as_org": geo.as_org,
                "private": geo.private,
            });
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
        Command::Replay(args) => {
            riskgate::alloc::keep_freed_memory();
            let report = args.report.clone();
            print!("{}", run_replay(args, config()?)?.render());
            if let Some(dir) = report {
                println!("report: {}", dir.join("report.html").display());
            }
        }
        Command::Gen(args) => {
            let stats = run_gen(args)?;
            println!("{}", serde_json::to_string_pretty(&stats)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Compiles a policy file: exit 0 when valid, [`EXIT_INVALID`] when not.
fn check_policy(file: &std::path::Path) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let source = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
    let name = file.file_stem().unwrap_or_default().to_string_lossy();
    let runtime = Runtime::new(Limits::default());
    match runtime.compile(&name, &file.display().to_string(), &source) {
        Ok(policy) => {
            let r = policy.reference();
            println!("{}: ok ({} {})", file.display(), r.name, r.version);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(EXIT_INVALID))
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
