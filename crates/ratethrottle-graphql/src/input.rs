//! Caps on a query's text, checked before parsing: its size, its tokens and how deeply its
//! braces, parentheses and brackets nest (the parser recurses on nesting).

use crate::AnalysisError;

/// Caps on a query's text, checked in one pass before it is parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct InputLimits {
    /// The longest query, in bytes (100 KiB).
    pub max_bytes: usize,
    /// The most tokens (names, numbers, strings, punctuators) (10,000).
    pub max_tokens: usize,
    /// The deepest nesting of `{`, `(` and `[` (64).
    pub max_nesting: usize,
}

impl Default for InputLimits {
    fn default() -> Self {
        InputLimits {
            max_bytes: 100 * 1024,
            max_tokens: 10_000,
            max_nesting: 64,
        }
    }
}

impl InputLimits {
    /// Checks `query` against the caps.
    pub fn check(&self, query: &str) -> Result<(), AnalysisError> {
        if query.len() > self.max_bytes {
            return Err(AnalysisError::TooLarge {
                bytes: query.len(),
                max: self.max_bytes,
            });
        }
        let bytes = query.as_bytes();
        let (mut at, mut tokens, mut nesting) = (0, 0usize, 0usize);
        while at < bytes.len() {
            let byte = bytes[at];
            at += 1;
            match byte {
                b' ' | b'\t' | b'\n' | b'\r' | b',' | 0xEF | 0xBB | 0xBF => continue,
                b'#' => {
                    while at < bytes.len() && bytes[at] != b'\n' && bytes[at] != b'\r' {
                        at += 1;
                    }
                    continue;
                }
                b'"' => at = skip_string(bytes, at),
                b'{' | b'(' | b'[' => {
                    nesting += 1;
                    if nesting > self.max_nesting {
                        return Err(AnalysisError::TooDeep {
                            max: self.max_nesting,
                        });
                    }
                }
                b'}' | b')' | b']' => nesting = nesting.saturating_sub(1),
                b'.' => {
                    while at < bytes.len() && bytes[at] == b'.' {
                        at += 1;
                    }
                }
                _ if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' => {
                    while at < bytes.len()
                        && (bytes[at].is_ascii_alphanumeric()
                            || matches!(bytes[at], b'_' | b'.' | b'+' | b'-'))
                    {
                        at += 1;
                    }
                }
                _ => {}
            }
            tokens += 1;
            if tokens > self.max_tokens {
                return Err(AnalysisError::TooManyTokens {
                    max: self.max_tokens,
                });
            }
        }
        Ok(())
    }
}

/// The index after the string starting before `at` (just past its opening quote).
fn skip_string(bytes: &[u8], mut at: usize) -> usize {
    if bytes[at..].starts_with(b"\"\"") {
        // A block string: up to the next unescaped `"""`.
        at += 2;
        while at < bytes.len() {
            if bytes[at..].starts_with(b"\\\"\"\"") {
                at += 4;
            } else if bytes[at..].starts_with(b"\"\"\"") {
                return at + 3;
            } else {
                at += 1;
            }
        }
        return at;
    }
    while at < bytes.len() {
        match bytes[at] {
            b'\\' => at += 2,
            b'"' => return at + 1,
            b'\n' | b'\r' => return at,
            _ => at += 1,
        }
    }
    at.min(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_tokens_and_nesting_outside_strings_and_comments() {
        let limits = InputLimits {
            max_bytes: 1000,
            max_tokens: 8,
            max_nesting: 2,
        };
        // { a ( x : "{{{{" ) } # {{{{
        assert!(limits.check(r#"{ a(x: "{{{{") } # {{{{"#).is_ok());
        assert!(limits.check(r#"{ a(x: """ {{{ \""" {{ """) }"#).is_ok());
        assert!(matches!(
            limits.check("{ a { b { c } } }"),
            Err(AnalysisError::TooDeep { max: 2 })
        ));
        assert!(matches!(
            limits.check("{ a b c d e f g h }"),
            Err(AnalysisError::TooManyTokens { max: 8 })
        ));
        assert!(matches!(
            limits.check(&"a".repeat(1001)),
            Err(AnalysisError::TooLarge { bytes: 1001, .. })
        ));
        assert!(limits.check("\"unterminated").is_ok(), "left to the parser");
    }
}
