//! The guard in front of the YAML deserializer: a configuration file is untrusted input.
//!
//! Before serde sees the text, one pass over the YAML events (with `saphyr-parser`, which
//! reports syntax errors at the line where they are) checks what the deserializer would not:
//!
//! - the size of the file and that it is UTF-8 text without control characters;
//! - how deep collections nest and how much the document grows when its aliases are expanded
//!   (an "alias bomb" of a few kilobytes can otherwise expand to gigabytes);
//! - that no mapping repeats a key (serde keeps the last one of a free-form map silently);
//! - and it substitutes `${VAR}` inside scalars: a variable's value becomes part of one
//!   scalar, exactly as given, never YAML syntax (no comments, tags, anchors or flow
//!   collections). It is typed by the schema: `port: ${PORT}` with `PORT=6379` is a number.

use std::collections::{HashMap, HashSet};

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use crate::env::{Environment, substitute};
use crate::error::{ConfigError, Location};

/// Limits on a configuration file, checked before it is parsed. The defaults suit every
/// realistic configuration; raise them with [`Config::load_with_limits`](crate::Config::load_with_limits)
/// or, for the file size, the `RT_CONFIG_MAX_BYTES` variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadLimits {
    /// The largest file, in bytes (default 1 MiB). A larger file (or `/dev/zero`) is refused
    /// after reading one byte more than this.
    pub max_bytes: usize,
    /// How deep collections may nest (default 64).
    pub max_depth: usize,
    /// How large the document may grow with its aliases expanded, counted as the bytes of its
    /// scalars plus one per node (default 4 MiB).
    pub max_expanded_bytes: u64,
}

impl Default for LoadLimits {
    fn default() -> Self {
        LoadLimits {
            max_bytes: 1 << 20,
            max_depth: 64,
            max_expanded_bytes: 4 << 20,
        }
    }
}

impl LoadLimits {
    /// The variable that sets [`LoadLimits::max_bytes`].
    pub const MAX_BYTES_VARIABLE: &'static str = "RT_CONFIG_MAX_BYTES";

    /// The defaults, with `RT_CONFIG_MAX_BYTES` from `env` applied.
    pub fn from_env(env: &Environment) -> Result<Self, ConfigError> {
        let mut limits = LoadLimits::default();
        if let Some(value) = env.get(Self::MAX_BYTES_VARIABLE) {
            limits.max_bytes = value
                .trim()
                .parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| ConfigError::Environment {
                    name: Self::MAX_BYTES_VARIABLE.to_owned(),
                    value: ratethrottle::identifier::elide(value).into_owned(),
                    message: "expected a whole number of bytes above 0".to_owned(),
                })?;
        }
        Ok(limits)
    }

    /// Sets [`LoadLimits::max_bytes`].
    #[must_use]
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Sets [`LoadLimits::max_depth`].
    #[must_use]
    pub fn max_depth(mut self, max_depth: usize) -> Self {
        self.max_depth = max_depth;
        self
    }

    /// Sets [`LoadLimits::max_expanded_bytes`].
    #[must_use]
    pub fn max_expanded_bytes(mut self, max_expanded_bytes: u64) -> Self {
        self.max_expanded_bytes = max_expanded_bytes;
        self
    }
}

/// Bytes read from a file as configuration text: refuses UTF-16 and invalid UTF-8 with a
/// message that says which, and where.
pub(crate) fn decode(bytes: Vec<u8>, origin: &str) -> Result<String, ConfigError> {
    let utf16 = bytes.starts_with(&[0xff, 0xfe])
        || bytes.starts_with(&[0xfe, 0xff])
        || (bytes.len() >= 2 && (bytes[0] == 0) != (bytes[1] == 0));
    if utf16 {
        return Err(ConfigError::invalid(
            origin,
            None,
            "the file is UTF-16 encoded; expected UTF-8 (save it as UTF-8)",
        ));
    }
    String::from_utf8(bytes).map_err(|error| {
        let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
        // Everything before the bad byte is valid UTF-8.
        let before = std::str::from_utf8(valid).unwrap_or_default();
        ConfigError::invalid(
            origin,
            Some(location_after(before)),
            "invalid UTF-8 here; expected UTF-8 text",
        )
    })
}

/// The location just after `before` (the text from the start of the file).
fn location_after(before: &str) -> Location {
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Location {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}

/// Checks `text` against `limits` and returns it with `${VAR}` substituted, plus where the
/// substitutions landed (for naming a variable in later errors).
pub(crate) fn prepare(
    text: &str,
    origin: &str,
    env: &Environment,
    limits: &LoadLimits,
) -> Result<(String, Substitutions), ConfigError> {
    let fail = |location: Option<Location>, message: String| {
        ConfigError::invalid(origin, location, message)
    };
    if text.len() > limits.max_bytes {
        return Err(fail(
            None,
            format!(
                "the file is {} bytes; the limit is {} (set {} to allow more)",
                text.len(),
                limits.max_bytes,
                LoadLimits::MAX_BYTES_VARIABLE
            ),
        ));
    }
    if let Some((at, c)) = text
        .char_indices()
        .find(|&(_, c)| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(fail(
            Some(location_after(&text[..at])),
            format!(
                "control character U+{:04X} is not allowed in a configuration file",
                u32::from(c)
            ),
        ));
    }
    let mut walk = Walk::new(text, env, limits);
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| {
            let mark = e.marker();
            fail(
                Some(Location {
                    line: mark.line(),
                    column: mark.col() + 1,
                }),
                if e.info().contains("recursion limit") {
                    format!(
                        "collections nest too deeply (the limit is {} levels)",
                        limits.max_depth
                    )
                } else {
                    e.info().to_owned()
                },
            )
        })?;
        walk.event(event, span)
            .map_err(|(span, message)| fail(Some(start_of(&span)), message))?;
    }
    Ok(walk.finish())
}

fn start_of(span: &Span) -> Location {
    Location {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

/// Where substituted values landed in the prepared text: `(line, first column, last column,
/// variables)`, columns from 1.
#[derive(Debug, Default)]
pub(crate) struct Substitutions(Vec<(usize, usize, usize, Vec<String>)>);

impl Substitutions {
    /// " (the value of ${A}, ${B})" when `location` is inside a substituted value.
    pub(crate) fn note_for(&self, location: Option<Location>) -> Option<String> {
        let at = location?;
        let (.., names) = self
            .0
            .iter()
            .find(|(line, from, to, _)| *line == at.line && (*from..=*to).contains(&at.column))?;
        let names: Vec<String> = names.iter().map(|n| format!("${{{n}}}")).collect();
        Some(format!(" (the value of {})", names.join(", ")))
    }
}

/// One open collection.
enum Frame {
    Sequence {
        anchor: usize,
        size: u64,
    },
    Mapping {
        anchor: usize,
        size: u64,
        keys: HashSet<String>,
        expecting_key: bool,
    },
}

/// The state of the pass over the events.
struct Walk<'t> {
    text: &'t str,
    env: &'t Environment,
    limits: &'t LoadLimits,
    stack: Vec<Frame>,
    anchors: HashMap<usize, u64>,
    expanded: u64,
    /// Byte ranges of scalars to replace, and their replacements.
    edits: Vec<(std::ops::Range<usize>, String, Vec<String>)>,
    /// The byte offset of each character, built when the text is not ASCII.
    char_offsets: Option<Vec<usize>>,
}

type Failure = (Span, String);

impl<'t> Walk<'t> {
    fn new(text: &'t str, env: &'t Environment, limits: &'t LoadLimits) -> Self {
        Walk {
            text,
            env,
            limits,
            stack: Vec::new(),
            anchors: HashMap::new(),
            expanded: 0,
            edits: Vec::new(),
            char_offsets: None,
        }
    }

    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), Failure> {
        match event {
            Event::SequenceStart(anchor, _) => {
                self.open(Frame::Sequence { anchor, size: 1 }, span)?
            }
            Event::MappingStart(anchor, _) => self.open(
                Frame::Mapping {
                    anchor,
                    size: 1,
                    keys: HashSet::new(),
                    expecting_key: true,
                },
                span,
            )?,
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(frame) = self.stack.pop() {
                    let (anchor, size) = match frame {
                        Frame::Sequence { anchor, size } | Frame::Mapping { anchor, size, .. } => {
                            (anchor, size)
                        }
                    };
                    if anchor > 0 {
                        self.anchors.insert(anchor, size);
                    }
                    self.node(size, None, span)?;
                }
            }
            Event::Scalar(value, style, anchor, _) => {
                let value = self.substitute(&value, style, span)?;
                let size = value.len() as u64 + 1;
                if anchor > 0 {
                    self.anchors.insert(anchor, size);
                }
                self.expanded = self.expanded.saturating_add(size);
                self.node(size, Some(&value), span)?;
            }
            Event::Alias(anchor) => {
                let size = self.anchors.get(&anchor).copied().unwrap_or(1);
                self.expanded = self.expanded.saturating_add(size);
                self.node(size, None, span)?;
            }
            _ => {}
        }
        if self.expanded > self.limits.max_expanded_bytes {
            return Err((
                span,
                format!(
                    "with its aliases expanded the document exceeds {} bytes (an alias bomb?); \
                     use fewer aliases",
                    self.limits.max_expanded_bytes
                ),
            ));
        }
        Ok(())
    }

    fn open(&mut self, frame: Frame, span: Span) -> Result<(), Failure> {
        if self.stack.len() >= self.limits.max_depth {
            return Err((
                span,
                format!(
                    "collections nest more than {} levels deep",
                    self.limits.max_depth
                ),
            ));
        }
        self.expanded = self.expanded.saturating_add(1);
        self.stack.push(frame);
        Ok(())
    }

    /// A complete node of `size` inside the innermost collection; `key` is its scalar value.
    fn node(&mut self, size: u64, key: Option<&str>, span: Span) -> Result<(), Failure> {
        let Some(frame) = self.stack.last_mut() else {
            return Ok(());
        };
        match frame {
            Frame::Sequence { size: total, .. } => *total = total.saturating_add(size),
            Frame::Mapping {
                size: total,
                keys,
                expecting_key,
                ..
            } => {
                *total = total.saturating_add(size);
                if *expecting_key
                    && let Some(key) = key.filter(|k| *k != "<<")
                    && !keys.insert(key.to_owned())
                {
                    return Err((
                        span,
                        format!(
                            "duplicate key `{}`; each key may appear once in a mapping",
                            ratethrottle::identifier::elide(key)
                        ),
                    ));
                }
                *expecting_key = !*expecting_key;
            }
        }
        Ok(())
    }

    /// The scalar's value with `${VAR}` substituted; records the edit of the text.
    fn substitute(
        &mut self,
        value: &str,
        style: ScalarStyle,
        span: Span,
    ) -> Result<String, Failure> {
        if !value.contains("${") {
            return Ok(value.to_owned());
        }
        let (new, names) = substitute(value, self.env).map_err(|message| (span, message))?;
        if names.is_empty() && !value.contains("$${") {
            return Ok(new);
        }
        let range = self.byte_range(span);
        let raw = &self.text[range.clone()];
        let replacement = match style {
            ScalarStyle::Plain if looks_typed(&new) => new.clone(),
            ScalarStyle::Literal | ScalarStyle::Folded => {
                if new.trim_end_matches('\n').contains('\n')
                    && names
                        .iter()
                        .any(|n| self.env.get(n).is_some_and(|v| v.contains('\n')))
                {
                    return Err((
                        span,
                        format!(
                            "environment variable {} holds a line break, which cannot be substituted into a block scalar",
                            names.join(", ")
                        ),
                    ));
                }
                // Block scalars are content line by line: substitute in the source text.
                substitute(raw, self.env)
                    .map_err(|message| (span, message))?
                    .0
            }
            _ => {
                // One double-quoted scalar, padded with the line breaks the original spanned so
                // that every later line keeps its number.
                let mut quoted = quote(&new);
                quoted.extend(std::iter::repeat_n('\n', raw.matches('\n').count()));
                quoted
            }
        };
        self.edits.push((range, replacement, names));
        Ok(new)
    }

    fn byte_range(&mut self, span: Span) -> std::ops::Range<usize> {
        let text = self.text;
        let offsets = self.char_offsets.get_or_insert_with(|| {
            if text.is_ascii() {
                Vec::new()
            } else {
                text.char_indices()
                    .map(|(i, _)| i)
                    .chain([text.len()])
                    .collect()
            }
        });
        let at = |index: usize| {
            if offsets.is_empty() {
                index.min(text.len())
            } else {
                offsets.get(index).copied().unwrap_or(text.len())
            }
        };
        at(span.start.index())..at(span.end.index())
    }

    fn finish(self) -> (String, Substitutions) {
        if self.edits.is_empty() {
            return (self.text.to_owned(), Substitutions::default());
        }
        let mut out = String::with_capacity(self.text.len());
        let mut spots = Vec::new();
        let mut copied = 0;
        for (range, replacement, names) in self.edits {
            out.push_str(&self.text[copied..range.start]);
            let start = location_after(&out);
            let first_line = replacement.split('\n').next().unwrap_or_default();
            spots.push((
                start.line,
                start.column,
                start.column + first_line.chars().count(),
                names,
            ));
            out.push_str(&replacement);
            copied = range.end;
        }
        out.push_str(&self.text[copied..]);
        (out, Substitutions(spots))
    }
}

/// Whether a substituted plain value is a number or boolean, which stays plain so the schema
/// can type it; everything else is quoted.
fn looks_typed(value: &str) -> bool {
    matches!(value, "true" | "false")
        || (!value.is_empty()
            && value.len() <= 40
            && value.parse::<f64>().is_ok()
            && value
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E')))
}

/// `value` as a YAML double-quoted scalar.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Controls, and what libyaml also reads as line breaks or a byte order mark.
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') => {
                out.push_str(&format!("\\u{:04X}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(text: &str, env: &Environment) -> Result<String, String> {
        prepare(text, "f.yaml", env, &LoadLimits::default())
            .map(|(text, _)| text)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn substituted_values_are_one_scalar_never_syntax() {
        let env = Environment::empty()
            .with("PFX", "abc #def")
            .with("BIN", "!!binary aGVsbG8=")
            .with("STAR", "*x")
            .with("AT", "@x")
            .with("PORT", "6379")
            .with("FLOW", "[1, 2]");
        let text = "a: ${PFX}\nb: ${BIN}\nc: ${STAR}\nd: ${AT}\ne: ${PORT}\nf: x-${FLOW}\n";
        assert_eq!(
            prepared(text, &env).unwrap(),
            "a: \"abc #def\"\nb: \"!!binary aGVsbG8=\"\nc: \"*x\"\nd: \"@x\"\ne: 6379\nf: \"x-[1, 2]\"\n"
        );
    }

    #[test]
    fn multi_line_scalars_keep_later_line_numbers() {
        let env = Environment::empty().with("X", "v");
        let text = "a: one ${X}\n  two\nb: |\n  lit ${X} # kept\nc: 1\n";
        let out = prepared(text, &env).unwrap();
        assert_eq!(out, "a: \"one v two\"\n\nb: |\n  lit v # kept\nc: 1\n");
    }

    #[test]
    fn refuses_what_would_explode_or_mislead() {
        let env = Environment::empty();
        let bomb = format!(
            "a: &a \"{}\"\nwhitelist: [{}]\n",
            "x".repeat(100_000),
            vec!["*a"; 100].join(", ")
        );
        assert!(prepared(&bomb, &env).unwrap_err().contains("alias bomb"));
        let deep = format!(
            "whitelist: {}{}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let error = prepared(&deep, &env).unwrap_err();
        assert!(error.contains("collections nest too deeply"), "{error}");
        let deep = format!("whitelist: {}{}\n", "[".repeat(100), "]".repeat(100));
        let error = prepared(&deep, &env).unwrap_err();
        assert!(error.contains("nest more than 64 levels"), "{error}");
        assert_eq!(
            prepared("storage:\n  type: memory\n  type: redis\n", &env).unwrap_err(),
            "f.yaml:3:3: duplicate key `type`; each key may appear once in a mapping"
        );
        assert_eq!(
            prepared("a: 1\nb: 2\nc: x\0y\n", &env).unwrap_err(),
            "f.yaml:3:5: control character U+0000 is not allowed in a configuration file"
        );
        let error = prepared(
            "rules:\n  - name: api\n    limit: 100\n   window: 60\n",
            &env,
        )
        .unwrap_err();
        assert!(error.starts_with("f.yaml:4:"), "{error}");
        let big = "#".repeat((1 << 20) + 1);
        assert!(
            prepared(&big, &env)
                .unwrap_err()
                .contains("the limit is 1048576")
        );
    }

    #[test]
    fn decodes_only_utf8() {
        let utf16: Vec<u8> = "a: 1\n".encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert!(
            decode(utf16, "f")
                .unwrap_err()
                .to_string()
                .contains("UTF-16")
        );
        let error = decode(b"a: 1\nb: \xff\n".to_vec(), "f").unwrap_err();
        assert_eq!(
            error.to_string(),
            "f:2:4: invalid UTF-8 here; expected UTF-8 text"
        );
    }
}
