//! `ratethrottle`: test rules, show and check the configuration, manage the lists, read fleet
//! metrics, watch them live and measure throughput.
//!
//! Exit codes: 0 ok; 1 a request was denied or a check failed (e.g. Redis unreachable);
//! 2 usage or configuration error; 130 interrupted (Ctrl-C).
//!
//! The `ratethrottle` binary and the Python package's `ratethrottle` command both run
//! [`run_from`].

#[macro_use]
mod output;
mod bench;
mod config_cmd;
mod legacy;
mod manage;
mod monitor;
mod protect;
mod report;
mod run_test;
#[cfg(feature = "serve")]
mod serve;

use std::ffi::OsString;
use std::path::PathBuf;

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

Exit codes: 0 ok, 1 denied or failed check, 2 usage or configuration error, 130 interrupted.";

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

    /// Log at DEBUG (RUST_LOG, when set, wins).
    #[arg(long, short, global = true)]
    verbose: bool,

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
    /// DDoS protection: replay traffic and see who would be blocked.
    #[command(subcommand)]
    Protect(protect::ProtectCommand),
    /// Run the limiter as an HTTP service (check, peek, rules, metrics, lists).
    #[cfg(feature = "serve")]
    Serve(serve::ServeArgs),
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
    /// Whether the command is `serve`.
    fn serves(&self) -> bool {
        #[cfg(feature = "serve")]
        if matches!(self.command, Command::Serve(_)) {
            return true;
        }
        false
    }

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

/// Runs the command line `args` (the program name first) and returns the exit code. The
/// spellings of the original `ratethrottle` 1.4 (`--whitelist-add 10.0.0.1`,
/// `config --validate`, `manage --list-all`, ...) are accepted as aliases of these commands.
pub fn run_from<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let args = legacy::translate(args.into_iter().map(Into::into).collect());
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return u8::try_from(error.exit_code()).unwrap_or(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return 1;
        }
    };
    let outcome = runtime.block_on(async {
        // A server drains on its signals itself.
        if cli.serves() {
            return Some(run(&cli).await);
        }
        tokio::select! {
            outcome = run(&cli) => Some(outcome),
            _ = tokio::signal::ctrl_c() => None,
        }
    });
    // What is still buffered is written now; failing to write it outranks a denial.
    let flushed = output::flush_out();
    // Background tasks (telemetry, a demo load) end with the runtime.
    runtime.shutdown_background();
    let Some(outcome) = outcome else {
        eprintln!("interrupted");
        return 130;
    };
    let outcome = match (outcome, flushed) {
        (Ok(()) | Err(Failure::Denied), Err(failed @ Failure::Failed(_))) => Err(failed),
        (Ok(()), Err(closed)) => Err(closed),
        (outcome, _) => outcome,
    };
    let report = |error: &anyhow::Error, code: u8| {
        eprintln!("error: {}", output::error_chain(error));
        code
    };
    match outcome {
        Ok(()) | Err(Failure::Closed) => 0,
        Err(Failure::Denied) => 1,
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
    init_logging(&config, cli.verbose);
    match &cli.command {
        Command::Test(args) => run_test::run(&config, args, cli.format).await,
        Command::Config(command) => config_cmd::run(&config, command, cli.format),
        Command::Manage(args) => manage::run(&config, args, cli.format).await,
        Command::Metrics(args) => report::metrics(&config, args, cli.format).await,
        Command::Stats(args) => report::stats(&config, args, cli.format).await,
        Command::Monitor(args) => monitor::run(&config, cli.config.as_deref(), args).await,
        Command::Bench(args) => bench::run(&config, args, cli.format).await,
        Command::Protect(command) => protect::run(&config, command, cli.format).await,
        #[cfg(feature = "serve")]
        Command::Serve(args) => serve::run(&config, args).await,
    }
}

/// Logs to stderr at `global.log_level`, or DEBUG with `--verbose` (`RUST_LOG` wins when
/// set).
fn init_logging(config: &Config, verbose: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let level = if verbose {
            "debug"
        } else {
            config.global.log_level.as_filter()
        };
        tracing_subscriber::EnvFilter::new(level)
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
