//! `ratethrottle config show|validate|export|init`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ratethrottle_config::{Config, EXAMPLE_YAML, Environment};
use serde_json::json;

use crate::output::{Format, print_json};
use crate::{Outcome, usage};

/// What to do with the configuration.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print the configuration in force (file + RT_* variables), secrets masked.
    Show {
        /// Print the built-in defaults of every setting instead.
        #[arg(long)]
        defaults: bool,
    },
    /// Check a file (or the --config one): exit 0 when valid, 2 with the error otherwise.
    Validate {
        /// The file to check.
        file: Option<PathBuf>,
    },
    /// Write the configuration in force to FILE as YAML (secrets masked: supply them with
    /// RT_* variables or ${VAR} references).
    Export {
        /// Where to write.
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Write a commented example configuration.
    Init {
        /// Where to write.
        #[arg(default_value = "ratethrottle.yaml")]
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
}

/// The commands that do not need the --config file to be valid; `None` for the others.
pub(crate) fn run_standalone(command: &ConfigCommand, format: Format) -> Option<Outcome> {
    match command {
        ConfigCommand::Validate { file: Some(file) } => Some(validate(file, format)),
        ConfigCommand::Init { file, force } => Some(write_new(file, EXAMPLE_YAML, *force)),
        _ => None,
    }
}

pub(crate) fn run(config: &Config, command: &ConfigCommand, format: Format) -> Outcome {
    match command {
        ConfigCommand::Show { defaults } => {
            let defaults_config = Config::default();
            let shown = if *defaults { &defaults_config } else { config };
            match format {
                Format::Json => print_json(&serde_json::to_value(shown)?)?,
                Format::Table => out!("{}", shown.to_yaml()),
            }
            Ok(())
        }
        ConfigCommand::Validate { .. } => {
            // The --config file (or the built-in one) was valid, or we would not be here.
            report_valid(config, "the configuration", format)?;
            Ok(())
        }
        ConfigCommand::Export { file, force } => {
            let text = format!(
                "# Exported by `ratethrottle config export`; secrets are masked as ********:\n\
                 # set them with RT_* variables or ${{VAR}} references before use.\n{}",
                config.to_yaml()
            );
            write_new(file, &text, *force)
        }
        ConfigCommand::Init { .. } => unreachable_standalone(),
    }
}

fn unreachable_standalone() -> Outcome {
    Err(usage(anyhow::anyhow!(
        "`config init` runs before the configuration is loaded"
    )))
}

fn validate(file: &Path, format: Format) -> Outcome {
    match Config::load_with_env(file, &Environment::from_process()) {
        Ok(config) => {
            for warning in &config.warnings {
                eprintln!("warning: {warning}");
            }
            report_valid(&config, &file.display().to_string(), format)
        }
        Err(error) => {
            if format == Format::Json {
                print_json(&json!({"valid": false, "error": error.to_string(),
                    "line": error.location().map(|l| l.line),
                    "column": error.location().map(|l| l.column)}))?;
            }
            Err(usage(error))
        }
    }
}

fn report_valid(config: &Config, what: &str, format: Format) -> Outcome {
    let names: Vec<&str> = config.rules.iter().map(|r| r.name.as_str()).collect();
    match format {
        Format::Json => print_json(&json!({
            "valid": true,
            "rules": names,
            "storage": config.storage.kind.to_string(),
            "warnings": config.warnings,
        }))?,
        Format::Table => outln!(
            "{what} is valid: {} rule(s) ({}), storage {}",
            names.len(),
            names.join(", "),
            config.storage.kind
        ),
    }
    Ok(())
}

fn write_new(file: &Path, text: &str, force: bool) -> Outcome {
    if file.exists() && !force {
        return Err(usage(anyhow::anyhow!(
            "{} exists; pass --force to replace it",
            file.display()
        )));
    }
    std::fs::write(file, text).with_context(|| format!("cannot write {}", file.display()))?;
    eprintln!("wrote {}", file.display());
    Ok(())
}
