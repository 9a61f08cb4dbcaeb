//! Output: `--format table|json`, aligned tables, durations.

use std::time::Duration;

use crate::Failure;

/// How read commands print.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Aligned text for people.
    Table,
    /// One JSON document for programs.
    Json,
}

/// `rows` under `headers`, columns aligned (numbers right, text left).
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let numeric =
        |cell: &str| !cell.is_empty() && cell.trim_end_matches(['%', 's']).parse::<f64>().is_ok();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, &width)| {
                if numeric(cell) {
                    format!("{cell:>width$}")
                } else {
                    format!("{cell:<width$}")
                }
            })
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = line(headers.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// Writes to standard output. A reader that went away (`| head -1`) ends the command quietly
/// ([`Failure::Closed`]); any other failure (a full disk) is an error naming standard output.
pub(crate) fn write_out(text: std::fmt::Arguments<'_>) -> Result<(), Failure> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_fmt(text).map_err(stdout_failure)
}

/// Flushes standard output (at the end of a command), with [`write_out`]'s errors.
pub(crate) fn flush_out() -> Result<(), Failure> {
    use std::io::Write;
    std::io::stdout().lock().flush().map_err(stdout_failure)
}

fn stdout_failure(error: std::io::Error) -> Failure {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        Failure::Closed
    } else {
        Failure::Failed(anyhow::anyhow!("cannot write to standard output: {error}"))
    }
}

/// `print!` through [`write_out`]: returns the failure with `?`.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_out(format_args!($($arg)*))?
    };
}

/// `println!` through [`write_out`]: returns the failure with `?`.
macro_rules! outln {
    () => {
        $crate::output::write_out(format_args!("\n"))?
    };
    ($($arg:tt)*) => {
        $crate::output::write_out(format_args!("{}\n", format_args!($($arg)*)))?
    };
}

/// Prints `value` as pretty JSON.
pub(crate) fn print_json(value: &serde_json::Value) -> Result<(), Failure> {
    outln!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
    Ok(())
}

/// An error and its causes on one line, each cause once: layers that repeat their source's
/// message in their own are not repeated again.
pub(crate) fn error_chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if !text.contains(&message) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&message);
        }
    }
    text
}

/// `1.5s`, `250ms`, `2m 30s`, or `-` for none.
pub(crate) fn duration(value: Option<Duration>) -> String {
    match value {
        None => "-".to_owned(),
        Some(d) if d < Duration::from_secs(1) => format!("{}ms", d.as_millis()),
        Some(d) if d < Duration::from_secs(60) => format!("{:.3}s", d.as_secs_f64()),
        Some(d) => humantime_like(d),
    }
}

fn humantime_like(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m, s) {
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

/// A percentage with one decimal.
pub(crate) fn percent(value: f64) -> String {
    format!("{value:.1}%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_text_left_and_numbers_right() {
        let rows = vec![
            vec!["api".to_owned(), "10".to_owned()],
            vec!["search".to_owned(), "1500".to_owned()],
        ];
        assert_eq!(
            table(&["rule", "allowed"], &rows),
            "rule    allowed\napi          10\nsearch     1500\n"
        );
    }

    #[test]
    fn error_chains_name_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("redis at h:1 unreachable: {0}")]
        struct Store(#[source] std::io::Error);
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error = anyhow::Error::new(Store(io)).context("cannot set up the redis store");
        assert_eq!(
            error_chain(&error),
            "cannot set up the redis store: redis at h:1 unreachable: refused"
        );
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(None), "-");
        assert_eq!(duration(Some(Duration::from_millis(250))), "250ms");
        assert_eq!(duration(Some(Duration::from_millis(6000))), "6.000s");
        assert_eq!(duration(Some(Duration::from_secs(150))), "2m 30s");
        assert_eq!(duration(Some(Duration::from_secs(3900))), "1h 5m");
    }
}
