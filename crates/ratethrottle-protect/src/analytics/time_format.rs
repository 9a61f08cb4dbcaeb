//! Times as analytics write them: ISO 8601 in UTC, and the timeline's period labels.

use ratethrottle::clock::Nanos;

/// `at` as ISO 8601 in UTC with microseconds, e.g. `2026-01-15T10:30:00.000000+00:00`
/// (Python's `datetime.fromisoformat` reads it).
pub fn iso_timestamp(at: Nanos) -> String {
    let time = utc(at);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second(),
        time.microsecond()
    )
}

fn utc(at: Nanos) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at.as_nanos()))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// The periods of a violation timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// `2026-01-15 10:30`.
    Minute,
    /// `2026-01-15 10:00`.
    Hour,
    /// `2026-01-15`.
    Day,
}

impl Granularity {
    /// The label of the period `at` falls in (UTC).
    pub fn label(self, at: Nanos) -> String {
        let time = utc(at);
        let day = format!(
            "{:04}-{:02}-{:02}",
            time.year(),
            u8::from(time.month()),
            time.day()
        );
        match self {
            Granularity::Minute => format!("{day} {:02}:{:02}", time.hour(), time.minute()),
            Granularity::Hour => format!("{day} {:02}:00", time.hour()),
            Granularity::Day => day,
        }
    }

    /// `minute`, `hour` or `day`; anything else is `hour` (as in the original, which warns).
    pub fn from_name(name: &str) -> Self {
        match name {
            "minute" => Granularity::Minute,
            "day" => Granularity::Day,
            _ => Granularity::Hour,
        }
    }
}
