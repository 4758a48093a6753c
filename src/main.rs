//! The `riskgate` command: all of the command line lives here and in [`cli`]; the library
//! takes plain settings and option structs.

mod cli;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cli::replay::{GenArgs, ReplayArgs};
use cli::settings::SettingsArgs;
use riskgate::config::Config;
use riskgate::service;

// glibc's allocator spends a third of an evaluation consolidating small blocks; mimalloc
// keeps per-thread pools for the many short-lived allocations of a request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for errors other than an invalid policy (configuration, I/O).
const EXIT_ERROR: u8 = 3;

/// Adaptive risk-based authentication: allow, step-up (mfa) or lock each login.
#[derive(Parser)]
#[command(name = "riskgate", version, about)]
struct Cli {
    /// TOML config file [default: ./riskgate.toml when present].
    #[arg(long, env = "RISKGATE_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: SettingsArgs,
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
    /// Print the HTTP API's OpenAPI 3.1 document (as served at `/openapi.json`).
    Openapi,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Compile a policy and report syntax errors with line and column.
    Check {
        /// The `.rhai` file.
        file: PathBuf,
    },
    /// Run the test cases of a policies directory (`DIR/tests/*.toml`): exit 0 when all
    /// pass, 1 when one fails, 2 when they could not run.
    Test {
        /// The policies directory, whose `tests/` holds the cases [default: the configured
        /// policies directory, RISKGATE_POLICIES_DIR].
        dir: Option<PathBuf>,
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
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let Cli {
        config: config_file,
        settings: SettingsArgs(settings),
        command,
    } = cli;
    let config = || -> Result<Config, Box<dyn std::error::Error>> {
        Ok(settings
            .clone()
            .with_file(config_file.as_deref())?
            .resolve()?)
    };
    match command {
        Command::Policy {
            command: PolicyCommand::Check { file },
        } => return cli::policy::check(&file),
        Command::Policy {
            command: PolicyCommand::Test { dir },
        } => return Ok(cli::policy::test(config(), dir.as_deref())),
        Command::Serve => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(service::run(config()?, shutdown_signal()))?;
        }
        Command::Geoip {
            command: GeoipCommand::Lookup { ip },
        } => {
            let geo = service::open_geoip(&config()?)?.lookup(ip);
            let mut json = serde_json::to_value(geo)?;
            if let Some(fields) = json.as_object_mut() {
                fields.insert("ip".into(), serde_json::json!(ip));
            }
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
        Command::Replay(args) => cli::replay::run(args, &config()?)?,
        Command::Openapi => print!("{}", riskgate::openapi_json()),
        Command::Gen(args) => {
            let stats = cli::replay::generate(args)?;
            println!("{}", serde_json::to_string_pretty(&stats)?);
        }
    }
    Ok(ExitCode::SUCCESS)
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn setting_flags_fill_the_settings_and_a_bad_value_names_its_flag_and_variable() {
        let cli = Cli::try_parse_from(["riskgate", "--max-ips", "7", "serve"]).unwrap();
        assert_eq!(cli.settings.0.max_ips, Some(7));
        assert!(matches!(cli.command, Command::Serve));
        let cli = Cli::try_parse_from(["riskgate", "serve", "--fail-safe", "lock"]).unwrap();
        assert_eq!(
            cli.settings.0.fail_safe.as_deref(),
            Some("lock"),
            "flags are global"
        );
        let Err(err) = Cli::try_parse_from(["riskgate", "serve", "--max-ips", "lots"]) else {
            panic!("`lots` is not a number");
        };
        let message = err.to_string();
        assert!(
            message.contains("--max-ips") && message.contains("RISKGATE_MAX_IPS"),
            "{message}"
        );
    }
}
