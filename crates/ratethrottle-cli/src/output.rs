//! Output: `--format table|json`, aligned tables, durations.

use std::time::Duration;

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

/// Prints `value` as pretty JSON.
pub(crate) fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
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
    fn durations_read_naturally() {
        assert_eq!(duration(None), "-");
        assert_eq!(duration(Some(Duration::from_millis(250))), "250ms");
        assert_eq!(duration(Some(Duration::from_millis(6000))), "6.000s");
        assert_eq!(duration(Some(Duration::from_secs(150))), "2m 30s");
        assert_eq!(duration(Some(Duration::from_secs(3900))), "1h 5m");
    }
}
