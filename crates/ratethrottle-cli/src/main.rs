//! `ratethrottle`: test rules, show and check the configuration, manage the lists, read fleet
//! metrics, watch them live and measure throughput.
//!
//! Exit codes: 0 ok; 1 a request was denied or a check failed (e.g. Redis unreachable);
//! 2 usage or configuration error.

#[macro_use]
mod output;
mod bench;
mod config_cmd;
mod manage;
mod monitor;
mod report;
mod run_test;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ratethrottle_config::{Config, Environment};

use output::Format;

const EXAMPLES: &str = "\
Examples:
  ratethrottle test --rule api --requests 12          # built-in example rules, in memory
  ratethrottle --config ratethrottle.yaml test --rule login --identifier alice --requests 6
  ratethrottle config init                            # write a commented ratethrottle.yaml
  ratethrottle config validate ratethrottle.yaml
  RT_STORAGE_TYPE=redis ratethrottle manage blacklist add 203.0.113.9 --duration 3600
  ratethrottle --config prod.yaml metrics --format json
  ratethrottle --config prod.yaml monitor             # live dashboard of the fleet (q quits)
  ratethrottle monitor --demo                         # the dashboard on a simulated load
  ratethrottle bench --strategy gcra --keys 10000 --threads 2 --duration 3

Exit codes: 0 ok, 1 denied or failed check, 2 usage or configuration error.";

/// Rate limiting from the command line: test rules, manage lists, watch a fleet.
#[derive(Debug, Parser)]
#[command(name = "ratethrottle", version, about, after_help = EXAMPLES)]
struct Cli {
    /// Configuration file (YAML). Without one, the built-in example rules on the in-memory
    /// store (RT_* variables still apply).
    #[arg(long, short, global = true, env = "RT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Output of read commands.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    format: Format,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send requests through a rule and print each decision and a summary.
    Test(run_test::TestArgs),
    /// Show, validate, export or create a configuration.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Add, remove or list whitelist and blacklist entries in the configured store.
    Manage(manage::ManageArgs),
    /// Fleet metrics: totals and per rule (needs storage.type redis).
    Metrics(report::MetricsArgs),
    /// Fleet statistics: top limited identifiers, recent violations; export to JSON or CSV.
    Stats(report::StatsArgs),
    /// A live terminal dashboard of the fleet (or of a simulated load with --demo).
    Monitor(monitor::MonitorArgs),
    /// Measure check throughput on the configured store.
    Bench(bench::BenchArgs),
}

/// A failure and the exit code it maps to.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Bad usage or configuration: exit 2.
    Usage(anyhow::Error),
    /// A denied request or a failed check: exit 1.
    Failed(anyhow::Error),
    /// Exit 1 with nothing more to say (the output already said it).
    Denied,
    /// Standard output was closed by its reader (`| head -1`): end quietly, exit 0.
    Closed,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure::Failed(error.into())
    }
}

/// Turns a configuration error into a usage failure (exit 2).
pub(crate) fn usage(error: impl Into<anyhow::Error>) -> Failure {
    Failure::Usage(error.into())
}

pub(crate) type Outcome = Result<(), Failure>;

impl Cli {
    /// The configuration in force: `--config`/`RT_CONFIG`, or the built-in example.
    fn load_config(&self) -> Result<Config, Failure> {
        let env = Environment::from_process();
        let mut config = match &self.config {
            Some(path) => Config::load_with_env(path, &env),
            None => Config::builtin(&env),
        }
        .map_err(usage)?;
        // A command runs once: an unreachable Redis is its error, not something to wait out.
        config.storage.require_connection = true;
        for warning in &config.warnings {
            eprintln!("warning: {warning}");
        }
        Ok(config)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(&cli));
    // What is still buffered is written now; failing to write it outranks a denial.
    let outcome = match (outcome, output::flush_out()) {
        (Ok(()) | Err(Failure::Denied), Err(failed @ Failure::Failed(_))) => Err(failed),
        (Ok(()), Err(closed)) => Err(closed),
        (outcome, _) => outcome,
    };
    // Background tasks (telemetry, a demo load) end with the runtime.
    runtime.shutdown_background();
    let report = |error: &anyhow::Error, code: u8| {
        eprintln!("error: {}", output::error_chain(error));
        ExitCode::from(code)
    };
    match outcome {
        Ok(()) | Err(Failure::Closed) => ExitCode::SUCCESS,
        Err(Failure::Denied) => ExitCode::from(1),
        Err(Failure::Failed(error)) => report(&error, 1),
        Err(Failure::Usage(error)) => report(&error, 2),
    }
}

async fn run(cli: &Cli) -> Outcome {
    // `config validate FILE` and `config init` do not need a valid --config.
    if let Command::Config(command) = &cli.command
        && let Some(done) = config_cmd::run_standalone(command, cli.format)
    {
        return done;
    }
    let config = cli.load_config()?;
    init_logging(&config);
    match &cli.command {
        Command::Test(args) => run_test::run(&config, args, cli.format).await,
        Command::Config(command) => config_cmd::run(&config, command, cli.format),
        Command::Manage(args) => manage::run(&config, args, cli.format).await,
        Command::Metrics(args) => report::metrics(&config, args, cli.format).await,
        Command::Stats(args) => report::stats(&config, args, cli.format).await,
        Command::Monitor(args) => monitor::run(&config, cli.config.as_deref(), args).await,
        Command::Bench(args) => bench::run(&config, args, cli.format).await,
    }
}

/// Logs to stderr at `global.log_level` (`RUST_LOG` wins when set).
fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(config.global.log_level.as_filter())
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_parse_into_their_commands() {
        let cli = Cli::parse_from(["ratethrottle", "test", "--rule", "api", "--requests", "3"]);
        let Command::Test(args) = cli.command else {
            panic!("a test command")
        };
        assert_eq!(
            (args.rule.as_str(), args.requests, args.cost),
            ("api", 3, 1)
        );
        assert!(
            Cli::try_parse_from(["ratethrottle", "test"]).is_err(),
            "--rule is required"
        );
        assert!(Cli::try_parse_from(["ratethrottle", "--format", "xml", "metrics"]).is_err());
    }
}
