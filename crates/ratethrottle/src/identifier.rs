//! Identifiers as stored: any string is valid, and very long ones are hashed so a client cannot
//! make the limiter keep megabytes per key.

use std::borrow::Cow;
use std::fmt::Write;

use sha2::{Digest, Sha256};

/// Identifiers longer than this many bytes are stored as a prefix plus a SHA-256 digest.
pub const MAX_IDENTIFIER_LEN: usize = 256;

/// How many bytes of a long identifier are kept readable before its digest.
const KEPT_PREFIX: usize = 64;

/// The form of `identifier` that stores key state by: itself when at most
/// [`MAX_IDENTIFIER_LEN`] bytes, otherwise its first 64 bytes (cut at a character boundary),
/// `…` and the SHA-256 of the whole, in hex — distinct long identifiers stay distinct.
///
/// ```
/// use ratethrottle::identifier::{normalize_identifier, MAX_IDENTIFIER_LEN};
///
/// assert_eq!(normalize_identifier("10.0.0.1"), "10.0.0.1");
/// let long = "x".repeat(10_000);
/// assert!(normalize_identifier(&long).len() <= MAX_IDENTIFIER_LEN);
/// assert_ne!(normalize_identifier(&long), normalize_identifier(&"x".repeat(10_001)));
/// ```
#[inline]
pub fn normalize_identifier(identifier: &str) -> Cow<'_, str> {
    if identifier.len() <= MAX_IDENTIFIER_LEN {
        Cow::Borrowed(identifier)
    } else {
        Cow::Owned(digest_identifier(identifier))
    }
}

#[cold]
fn digest_identifier(identifier: &str) -> String {
    let mut cut = KEPT_PREFIX;
    while !identifier.is_char_boundary(cut) {
        cut -= 1;
    }
    let digest = Sha256::digest(identifier.as_bytes());
    let mut key = String::with_capacity(cut + 3 + 64);
    key.push_str(&identifier[..cut]);
    key.push('…');
    for byte in digest {
        let _ = write!(key, "{byte:02x}");
    }
    key
}

/// How many characters of an untrusted value (a rate string, a rule name asked for) error
/// messages and logs repeat; the rest is summarized by its length.
pub const MAX_ECHO_CHARS: usize = 64;

/// `text` as error messages and logs may repeat it: whole when it has at most
/// [`MAX_ECHO_CHARS`] characters, otherwise its first ones, `…` and its length in bytes — so a
/// 10 MB input never makes a 10 MB message.
///
/// ```
/// use ratethrottle::identifier::elide;
///
/// assert_eq!(elide("api"), "api");
/// assert_eq!(elide(&"x".repeat(1000)), format!("{}… (1000 bytes)", "x".repeat(64)));
/// ```
pub fn elide(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(MAX_ECHO_CHARS) {
        None => Cow::Borrowed(text),
        Some((cut, _)) => Cow::Owned(format!("{}… ({} bytes)", &text[..cut], text.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multibyte_identifiers_are_cut_at_a_character_boundary() {
        let long = "é".repeat(500);
        let key = normalize_identifier(&long);
        assert!(key.starts_with("éé"));
        assert!(key.len() <= MAX_IDENTIFIER_LEN);
    }

    #[test]
    fn identifiers_at_the_limit_are_kept() {
        let exact = "a".repeat(MAX_IDENTIFIER_LEN);
        assert_eq!(normalize_identifier(&exact), exact);
    }
}
