//! User identifiers from headers: a plain header, or the subject of a bearer JWT.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Tokens longer than this are not decoded (no real JWT subject needs it).
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Whether `name` is a valid HTTP header name (an RFC 9110 token).
pub(crate) fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header value as an identifier: trimmed UTF-8, else `None`.
pub(crate) fn header_text(value: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(value).ok()?.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// The `sub` claim of `Authorization: Bearer <jwt>`, without verifying the token.
pub(crate) fn jwt_subject(authorization: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(authorization).ok()?.trim();
    let (scheme, token) = text.split_once(' ')?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    let claims = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&claims).ok()?;
    match claims.get("sub")? {
        serde_json::Value::String(sub) => Some(sub.clone()),
        serde_json::Value::Number(sub) => Some(sub.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Issue 15: any Authorization or user header bytes give a bounded subject or none.
        #[test]
        fn any_header_gives_a_bounded_user_or_none(bytes in prop::collection::vec(any::<u8>(), 0..600), claims in any::<String>()) {
            for value in [bytes.clone(), token(&claims).into_bytes(), [b"Bearer ".as_slice(), &bytes].concat()] {
                if let Some(subject) = jwt_subject(&value) {
                    prop_assert!(subject.len() <= MAX_TOKEN_LEN);
                }
                if let Some(text) = header_text(&value) {
                    prop_assert!(text.len() <= value.len());
                }
            }
        }
    }

    fn token(claims: &str) -> String {
        format!(
            "Bearer eyJhbGciOiJIUzI1NiJ9.{}.c2ln",
            URL_SAFE_NO_PAD.encode(claims)
        )
    }

    #[test]
    fn jwt_subjects_are_read_from_bearer_tokens() {
        assert_eq!(
            jwt_subject(token(r#"{"sub":"alice"}"#).as_bytes()).as_deref(),
            Some("alice")
        );
        assert_eq!(
            jwt_subject(token(r#"{"sub":42}"#).as_bytes()).as_deref(),
            Some("42")
        );
        let lower = token(r#"{"sub":"bob"}"#).replace("Bearer", "bearer");
        assert_eq!(jwt_subject(lower.as_bytes()).as_deref(), Some("bob"));
    }

    #[test]
    fn anything_else_has_no_subject() {
        for bad in [
            token(r#"{"name":"alice"}"#),
            token(r#"{"sub":["a"]}"#),
            token("not json"),
            "Bearer a.%%%.c".to_owned(),
            "Bearer onlyonepart".to_owned(),
            "Basic YWxpY2U6c2VjcmV0".to_owned(),
            format!("Bearer a.{}.c", "A".repeat(MAX_TOKEN_LEN)),
        ] {
            assert_eq!(jwt_subject(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(jwt_subject(b"\xff"), None);
    }

    #[test]
    fn header_names_and_values() {
        assert!(is_header_name("X-Api-Key"));
        assert!(!is_header_name("X Api") && !is_header_name("") && !is_header_name("é"));
        assert_eq!(header_text(b"  key-1 ").as_deref(), Some("key-1"));
        assert_eq!(header_text(b"   "), None);
        assert_eq!(header_text(b"\xff"), None);
    }
}
