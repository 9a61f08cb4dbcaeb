//! What leaves analytics: identifiers masked, secrets in metadata redacted.

use std::net::{IpAddr, Ipv6Addr};

use serde_json::Value;

use super::Metadata;

/// What a secret's value becomes.
pub const REDACTED: &str = "***REDACTED***";

/// Metadata keys that hold secrets: any key containing one of these, in any case.
const SECRETS: [&str; 7] = [
    "password",
    "token",
    "api_key",
    "secret",
    "authorization",
    "cookie",
    "session",
];

/// An identifier as analytics show it: an IPv4 address as `a.b.c.xxx`, an IPv6 address as
/// its /64 network, anything else as its first and last four characters (`abcd...wxyz`) or
/// `****` when it has eight or fewer.
///
/// ```
/// use ratethrottle_protect::analytics::sanitize_identifier;
///
/// assert_eq!(sanitize_identifier("192.168.1.100"), "192.168.1.xxx");
/// assert_eq!(sanitize_identifier("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
/// assert_eq!(sanitize_identifier("user-123456789"), "user...6789");
/// assert_eq!(sanitize_identifier("bob"), "****");
/// ```
pub fn sanitize_identifier(identifier: &str) -> String {
    match identifier.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            let [a, b, c, _] = ip.octets();
            format!("{a}.{b}.{c}.xxx")
        }
        Ok(IpAddr::V6(ip)) => {
            let network = u128::from(ip) & !((1u128 << 64) - 1);
            format!("{}/64", Ipv6Addr::from(network))
        }
        Err(_) => {
            let chars = identifier.chars().count();
            if chars > 8 {
                let head: String = identifier.chars().take(4).collect();
                let tail: String = identifier.chars().skip(chars - 4).collect();
                format!("{head}...{tail}")
            } else {
                "****".to_owned()
            }
        }
    }
}

/// `metadata` with the value of every key that names a secret (`password`, `token`,
/// `api_key`, `secret`, `authorization`, `cookie`, `session`, in any case, anywhere in the
/// key) replaced by [`REDACTED`], in nested mappings too.
pub fn sanitize_metadata(metadata: Metadata) -> Metadata {
    metadata
        .into_iter()
        .map(|(key, value)| {
            let lower = key.to_ascii_lowercase();
            let value = if SECRETS.iter().any(|secret| lower.contains(secret)) {
                Value::from(REDACTED)
            } else if let Value::Object(inner) = value {
                Value::Object(sanitize_metadata(inner))
            } else {
                value
            };
            (key, value)
        })
        .collect()
}
