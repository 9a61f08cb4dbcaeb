//! Finds a key path such as `alerting.webhook.url` or `rules[2].burst` in YAML text, so that
//! errors found after parsing (cross-field checks) still name a line and column.
//!
//! Works on block-style YAML (what configuration files are written in); when the path cannot be
//! found (flow style, or a value that came from the environment) the nearest enclosing key that
//! can be found is returned, or nothing.

use crate::error::Location;

/// One non-blank, non-comment line: its index, indentation and content (after the indent).
struct Line<'a> {
    index: usize,
    indent: usize,
    content: &'a str,
}

fn lines(text: &str) -> Vec<Line<'_>> {
    text.lines()
        .enumerate()
        .filter_map(|(index, raw)| {
            let content = raw.trim_start();
            (!content.is_empty() && !content.starts_with('#')).then(|| Line {
                index,
                indent: raw.len() - content.len(),
                content,
            })
        })
        .collect()
}

/// Whether `content` starts with `key:` (quoted or not).
fn is_key(content: &str, key: &str) -> bool {
    [key.to_owned(), format!("\"{key}\""), format!("'{key}'")]
        .iter()
        .any(|k| {
            content
                .strip_prefix(k.as_str())
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
}

/// The location of `path` (dot-separated keys, `[n]` for the n-th sequence item).
pub(crate) fn locate(text: &str, path: &str) -> Option<Location> {
    let lines = lines(text);
    // The block being searched: lines[from..to], holding keys indented more than `parent`.
    let (mut from, mut to, mut parent) = (0, lines.len(), None::<usize>);
    let mut found: Option<Location> = None;
    for segment in path.split('.') {
        let (key, item) = match segment.split_once('[') {
            Some((key, rest)) => (key, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        // Find `key:` at the block's own indentation (the first key line decides it). A key may
        // also follow the "- " of a sequence item.
        let mut key_at = None;
        let mut block_indent = None;
        for (i, line) in lines.iter().enumerate().take(to).skip(from) {
            let (indent, content) = match line.content.strip_prefix("- ") {
                Some(rest) if i == from && parent.is_some() => (
                    line.indent + 2 + rest.len() - rest.trim_start().len(),
                    rest.trim_start(),
                ),
                _ => (line.indent, line.content),
            };
            if parent.is_some_and(|p| indent <= p) && i > from {
                break;
            }
            let own = *block_indent.get_or_insert(indent);
            if indent == own && is_key(content, key) {
                key_at = Some((i, indent));
                break;
            }
        }
        let Some((i, indent)) = key_at else {
            return found;
        };
        found = Some(Location {
            line: lines[i].index + 1,
            column: indent + 1,
        });
        // The key's block: the following lines indented more than it (or, for a sequence,
        // "- " items at its own indentation).
        let end = lines[i + 1..]
            .iter()
            .position(|l| l.indent < indent || (l.indent == indent && !l.content.starts_with('-')))
            .map_or(to, |p| i + 1 + p);
        (from, to, parent) = (i + 1, end.min(to), Some(indent));
        if let Some(n) = item {
            let items: Vec<usize> = (from..to)
                .filter(|&j| lines[j].content.starts_with('-'))
                .filter(|&j| lines[j].indent == lines[from].indent)
                .collect();
            let Some(&start) = items.get(n) else {
                return found;
            };
            let stop = items.get(n + 1).copied().unwrap_or(to);
            found = Some(Location {
                line: lines[start].index + 1,
                column: lines[start].indent + 1,
            });
            (from, to, parent) = (start, stop, Some(lines[start].indent));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
storage:
  type: redis
# a comment
alerting:
  enabled: true
  webhook:
    enabled: true
    url: \"\"
rules:
  - name: a
    limit: 5
  - name: b
    limit: 6
    burst: 2
other:
- name: c
  burst: 9
";

    fn at(path: &str) -> Option<(usize, usize)> {
        locate(TEXT, path).map(|l| (l.line, l.column))
    }

    #[test]
    fn finds_nested_keys_and_sequence_items() {
        assert_eq!(at("storage.type"), Some((2, 3)));
        assert_eq!(at("alerting.webhook.url"), Some((8, 5)));
        assert_eq!(at("rules[1]"), Some((12, 3)));
        assert_eq!(at("rules[1].burst"), Some((14, 5)));
        assert_eq!(at("rules[0].name"), Some((10, 5)));
        assert_eq!(at("other[0].burst"), Some((17, 3)));
    }

    #[test]
    fn falls_back_to_the_nearest_enclosing_key() {
        assert_eq!(at("rules[0].burst"), Some((10, 3)));
        assert_eq!(at("alerting.email.password"), Some((4, 1)));
        assert_eq!(at("nothing"), None);
    }
}
