//! [`ConfigError`]: every way a configuration can be wrong, each naming where.

use std::fmt;
use std::path::PathBuf;

use ratethrottle::store::StoreError;

/// A line and column in a configuration file (both from 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Why a configuration could not be read, parsed, validated or built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file is not valid YAML, or a value is wrong (type, range, unknown key, bad rate,
    /// missing `${VAR}`). `origin` is the file's path (or `<builtin>`, `<string>`).
    #[error("{origin}{}: {message}", at(*location))]
    Invalid {
        /// The file (or other source) the text came from.
        origin: String,
        /// Where in it, when known.
        location: Option<Location>,
        /// What is wrong, naming the offending key and value.
        message: String,
    },
    /// An `RT_*` environment variable holds a value that does not fit its setting.
    #[error("environment variable {name}={value}: {message}")]
    Environment {
        /// The variable.
        name: String,
        /// Its value (masked for secrets).
        value: String,
        /// What was expected.
        message: String,
    },
    /// The file could not be read.
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configured store could not be set up (e.g. Redis unreachable at start).
    #[error("cannot set up the {kind} store: {source}")]
    Store {
        /// `"memory"` or `"redis"`.
        kind: &'static str,
        /// Why.
        source: StoreError,
    },
}

fn at(location: Option<Location>) -> String {
    location.map(|l| format!(":{l}")).unwrap_or_default()
}

impl ConfigError {
    /// The location in the file, when the error has one.
    pub fn location(&self) -> Option<Location> {
        match self {
            ConfigError::Invalid { location, .. } => *location,
            _ => None,
        }
    }

    pub(crate) fn invalid(
        origin: &str,
        location: Option<Location>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            origin: origin.to_owned(),
            location,
            message: message.into(),
        }
    }

    /// A serde_yaml_ng error, with its trailing "at line L column C" moved to the front and a
    /// "did you mean" hint added to unknown keys and names.
    pub(crate) fn from_yaml(origin: &str, error: &serde_yaml_ng::Error) -> Self {
        let mark = error.location();
        let location = mark.as_ref().map(|l| Location {
            line: l.line(),
            column: l.column(),
        });
        let mut message = error.to_string();
        if let Some(l) = mark {
            for suffix in [
                format!(" at line {} column {}", l.line(), l.column()),
                format!(" at position {}", l.index()),
            ] {
                if let Some(found) = message.find(&suffix) {
                    message.replace_range(found..found + suffix.len(), "");
                }
            }
        }
        if let Some(hint) = did_you_mean_in_serde_message(&message) {
            message.push_str(&hint);
        }
        ConfigError::invalid(origin, location, message)
    }
}

/// `" (did you mean `x`?)"` for the closest of `candidates` to `input`, when one is close.
pub(crate) fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let input = input.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&input, &c.to_ascii_lowercase()), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, best)| format!(" (did you mean `{best}`?)"))
}

/// Finds "unknown field `x`, expected one of `a`, `b`" (or "unknown variant …") in a serde
/// message and suggests the closest expected name.
fn did_you_mean_in_serde_message(message: &str) -> Option<String> {
    let rest = message
        .split_once("unknown field `")
        .or_else(|| message.split_once("unknown variant `"))?
        .1;
    let (unknown, expected) = rest.split_once('`')?;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    did_you_mean(unknown, candidates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_the_closest_name_only_when_close() {
        assert_eq!(
            did_you_mean("limt", ["name", "limit", "window"]).as_deref(),
            Some(" (did you mean `limit`?)")
        );
        assert_eq!(did_you_mean("zzz", ["name", "limit"]), None);
        assert_eq!(
            did_you_mean_in_serde_message(
                "rules[0]: unknown field `stratgy`, expected one of `name`, `strategy`"
            )
            .as_deref(),
            Some(" (did you mean `strategy`?)")
        );
    }
}
