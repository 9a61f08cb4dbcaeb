//! Caps on a query's text: its size, its tokens and how deeply its braces, parentheses and
//! brackets nest (the parser recurses on nesting), enforced as it is read.

/// Caps on a query's text, enforced by the parser: the size before it starts, the tokens and
/// the nesting as they are read.
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
