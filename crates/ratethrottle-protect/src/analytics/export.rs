//! The JSON shapes and CSV files of analytics' exports.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use serde_json::{Map, Value, json};

use super::time_format::iso_timestamp;
use super::{Analytics, AnalyticsError, RequestRecord, RuleStatistics, Summary, ViolationRecord};

/// Creates `path` (and its directory) and writes it with `fill`.
pub(super) fn write(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<(), AnalyticsError> {
    let failed = |error: std::io::Error| AnalyticsError::Export {
        path: path.display().to_string(),
        message: error.to_string(),
    };
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    let mut file = BufWriter::new(File::create(path).map_err(failed)?);
    fill(&mut file).map_err(failed)?;
    std::io::Write::flush(&mut file).map_err(failed)
}

/// A summary as the report writes it (the original's `get_summary()` keys).
pub fn summary_json(summary: &Summary) -> Value {
    json!({
        "total_requests": summary.total_requests,
        "total_violations": summary.total_violations,
        "unique_identifiers": summary.unique_identifiers,
        "blocked_identifiers": summary.blocked_identifiers,
        "violation_rate": summary.violation_rate,
        "most_triggered_rule": summary.most_triggered_rule,
        "records_stored": {
            "requests": summary.requests_stored,
            "violations": summary.violations_stored,
        },
    })
}

/// A rule's statistics as the report writes them (the original's keys).
pub fn rule_statistics_json(stats: &RuleStatistics) -> Value {
    json!({
        "total_requests": stats.total_requests,
        "allowed": stats.allowed,
        "blocked": stats.blocked,
        "violation_rate": stats.violation_rate,
        "unique_identifiers": stats.unique_identifiers,
    })
}

pub(super) fn request_json(analytics: &Analytics, request: &RequestRecord) -> Value {
    let mut record = json!({
        "timestamp": iso_timestamp(request.at),
        "identifier": analytics.shown(&request.identifier),
        "rule": request.rule.as_str(),
        "allowed": request.allowed,
    });
    if let Some(metadata) = &request.metadata {
        record["metadata"] = Value::Object((**metadata).clone());
    }
    record
}

/// A violation's fields by name: its extra fields, then the named ones over them.
pub(super) fn violation_fields(
    analytics: &Analytics,
    violation: &ViolationRecord,
) -> Map<String, Value> {
    let mut fields = violation.extra.clone();
    if let Some(at) = violation.at {
        fields.insert("timestamp".into(), iso_timestamp(at).into());
    }
    fields.insert(
        "identifier".into(),
        analytics.shown(&violation.identifier).into(),
    );
    fields.insert("rule_name".into(), violation.rule_name.clone().into());
    fields.insert("requests_made".into(), violation.requests_made.into());
    fields.insert("limit".into(), violation.limit.into());
    fields.insert(
        "blocked_until".into(),
        violation.blocked_until.clone().into(),
    );
    fields.insert("retry_after".into(), violation.retry_after.into());
    fields.insert("scope".into(), violation.scope.clone().into());
    fields.insert("metadata".into(), Value::Object(violation.metadata.clone()));
    fields
}

pub(super) fn violation_json(analytics: &Analytics, violation: &ViolationRecord) -> Value {
    Value::Object(violation_fields(analytics, violation))
}

/// A JSON value as a CSV cell: text as is, `null` empty, booleans as Python writes them.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

pub(super) fn violations_csv<'a>(
    analytics: &Analytics,
    path: &Path,
    violations: impl IntoIterator<Item = &'a ViolationRecord>,
) -> Result<usize, AnalyticsError> {
    let rows: Vec<Map<String, Value>> = violations
        .into_iter()
        .map(|v| violation_fields(analytics, v))
        .collect();
    // The columns: every field that is not a mapping or a list, sorted (as in the original).
    let mut columns: Vec<&String> = rows
        .iter()
        .flat_map(|row| row.iter())
        .filter(|(_, value)| !value.is_object() && !value.is_array())
        .map(|(key, _)| key)
        .collect();
    columns.sort();
    columns.dedup();
    let cells = |row: &Map<String, Value>| -> Vec<String> {
        columns
            .iter()
            .map(|column| row.get(column.as_str()).map(cell).unwrap_or_default())
            .collect()
    };
    write_csv(path, &columns, rows.iter().map(cells))
}

pub(super) fn requests_csv<'a>(
    analytics: &Analytics,
    path: &Path,
    requests: impl IntoIterator<Item = &'a RequestRecord>,
) -> Result<usize, AnalyticsError> {
    let columns = ["allowed", "identifier", "rule", "timestamp"];
    let rows = requests.into_iter().map(|request| {
        vec![
            cell(&Value::Bool(request.allowed)),
            analytics.shown(&request.identifier),
            request.rule.to_string(),
            iso_timestamp(request.at),
        ]
    });
    write_csv(path, &columns, rows)
}

fn write_csv<H: AsRef<[u8]>>(
    path: &Path,
    header: &[H],
    rows: impl Iterator<Item = Vec<String>>,
) -> Result<usize, AnalyticsError> {
    let mut rows = rows.peekable();
    if rows.peek().is_none() {
        return Ok(0);
    }
    let mut written = 0;
    write(path, |file| {
        let mut writer = csv::Writer::from_writer(file);
        writer.write_record(header)?;
        for row in rows {
            writer.write_record(&row)?;
            written += 1;
        }
        writer.flush()
    })?;
    Ok(written)
}
