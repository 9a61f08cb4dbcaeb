//! Small value types of the schema: durations in seconds, secrets, fractions, names.
//!
//! Each one parses inside its own visitor, so a bad value is reported at its own line and
//! column.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::did_you_mean;

/// The longest duration a setting may have: 100 years (as rule windows).
const MAX_DURATION: Duration = ratethrottle::MAX_WINDOW;

/// What `config show` prints instead of a secret.
pub const MASK: &str = "********";

/// A duration written as seconds (`60`, `0.5`) or with a unit (`"90s"`, `"5m"`, `"1h 30m"`,
/// `"250ms"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seconds(pub Duration);

impl Seconds {
    /// `secs` whole seconds.
    pub const fn new(secs: u64) -> Self {
        Seconds(Duration::from_secs(secs))
    }

    /// `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Seconds(Duration::from_millis(millis))
    }

    /// Parses `"60"`, `"0.5"`, `"90s"`, `"5m"`, `"1h 30m"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(secs) = text.parse::<f64>() {
            return Self::from_f64(secs);
        }
        humantime::parse_duration(text).map(Seconds).map_err(|e| {
            format!(
                "invalid duration {text:?} ({e}); write seconds (60, 0.5) or a unit (90s, 5m, 1h)"
            )
        })
    }

    fn from_f64(secs: f64) -> Result<Self, String> {
        if !secs.is_finite() || secs < 0.0 {
            return Err(format!(
                "invalid duration {secs}: must be a non-negative number of seconds"
            ));
        }
        if secs > 0.0 && secs < 1e-9 {
            return Err(format!(
                "invalid duration {secs}: shorter than one nanosecond (write 0 for none)"
            ));
        }
        Duration::try_from_secs_f64(secs)
            .ok()
            .filter(|d| *d <= MAX_DURATION)
            .map(Seconds)
            .ok_or_else(|| format!("invalid duration {secs}: longer than 100 years"))
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0.subsec_nanos() == 0 {
            serializer.serialize_u64(self.0.as_secs())
        } else {
            serializer.serialize_f64(self.0.as_secs_f64())
        }
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecondsVisitor;
        impl Visitor<'_> for SecondsVisitor {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration: seconds (60, 0.5) or a string with a unit (\"5m\")")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                Ok(Seconds::new(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                u64::try_from(v).map(Seconds::new).map_err(|_| {
                    E::custom(format!(
                        "invalid duration {v}: must be a non-negative number of seconds"
                    ))
                })
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Seconds, E> {
                Seconds::from_f64(v).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Seconds, E> {
                Seconds::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SecondsVisitor)
    }
}

/// A password, key or token: never printed (`Debug` and serialization show [`MASK`]).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the code that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no secret was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", if self.0.is_empty() { "" } else { MASK })
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(if self.0.is_empty() { "" } else { MASK })
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Option::<String>::deserialize(deserializer).map(|s| Secret(s.unwrap_or_default()))
    }
}

/// A Redis URL that may carry a password: `Debug` and serialization mask the password.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// Wraps `url`.
    pub fn new(url: impl Into<String>) -> Self {
        RedisUrl(url.into())
    }

    /// The URL with its password, for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL parsed, or why it is not one (naming `storage.url`, password masked).
    pub fn parse(&self) -> Result<url::Url, String> {
        url::Url::parse(&self.0).map_err(|e| {
            format!(
                "storage.url {:?} is not a URL ({e}); write redis://host:6379/0",
                self.masked()
            )
        })
    }

    /// The URL with its password (if any) replaced by [`MASK`].
    pub fn masked(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut parsed) if parsed.password().is_some() => {
                // Setting a password only fails for URLs that cannot have one.
                let _ = parsed.set_password(Some(MASK));
                parsed.to_string()
            }
            Ok(_) => self.0.clone(),
            // Not a URL: only text after an `@` could be a credential.
            Err(_) if !self.0.contains('@') => self.0.clone(),
            Err(_) => MASK.to_owned(),
        }
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({:?})", self.masked())
    }
}

impl Serialize for RedisUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.masked())
    }
}

/// A number checked by `accept` inside the visitor (so a bad one is reported where it is).
fn checked_number<'de, D: Deserializer<'de>>(
    deserializer: D,
    expecting: &'static str,
    accept: fn(f64) -> Result<f64, String>,
) -> Result<f64, D::Error> {
    struct NumberVisitor(&'static str, fn(f64) -> Result<f64, String>);
    impl Visitor<'_> for NumberVisitor {
        type Value = f64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
            (self.1)(v).map_err(E::custom)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
            self.visit_f64(v as f64)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
            self.visit_f64(v as f64)
        }
    }
    deserializer.deserialize_any(NumberVisitor(expecting, accept))
}

/// A number in `0.0..=1.0` (a score or a threshold on one).
#[derive(Clone, Copy, Debug, Default, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct Fraction(pub f64);

impl<'de> Deserialize<'de> for Fraction {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked_number(deserializer, "a number from 0.0 to 1.0", |v| {
            Fraction::new(v).map(|f| f.0)
        })
        .map(Fraction)
    }
}

impl Fraction {
    /// `value` when it is in `0.0..=1.0`.
    pub fn new(value: f64) -> Result<Self, String> {
        if (0.0..=1.0).contains(&value) {
            Ok(Fraction(value))
        } else {
            Err(format!("invalid value {value}: must be from 0.0 to 1.0"))
        }
    }
}

/// A positive number (a rate, a multiplier, a score threshold).
#[derive(Clone, Copy, Debug, Default, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct Positive(pub f64);

impl<'de> Deserialize<'de> for Positive {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked_number(deserializer, "a number above 0", |v| {
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(format!("invalid value {v}: must be above 0"))
            }
        })
        .map(Positive)
    }
}

/// A value named by a string, parsed with `FromStr` inside the visitor (so errors point at the
/// value) and hinted with the closest of `names`.
pub(crate) fn named<'de, D, T>(deserializer: D, names: &[&str]) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    struct NamedVisitor<'n, T>(&'n [&'n str], std::marker::PhantomData<T>);
    impl<T> Visitor<'_> for NamedVisitor<'_, T>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "one of {}", self.0.join(", "))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            v.parse().map_err(|e: T::Err| {
                let hint = did_you_mean(v, self.0.iter().copied()).unwrap_or_default();
                E::custom(format!("{e}{hint}"))
            })
        }
    }
    deserializer.deserialize_str(NamedVisitor(names, std::marker::PhantomData))
}

/// Parses a boolean the way the original library reads environment variables:
/// `1/true/yes/on` and `0/false/no/off`, any case.
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected a boolean: 1/true/yes/on or 0/false/no/off".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_accept_numbers_and_units() {
        assert_eq!(Seconds::parse("60"), Ok(Seconds::new(60)));
        assert_eq!(Seconds::parse("0.5"), Ok(Seconds::from_millis(500)));
        assert_eq!(Seconds::parse("5m"), Ok(Seconds::new(300)));
        assert_eq!(Seconds::parse("1h 30m"), Ok(Seconds::new(5400)));
        assert!(Seconds::parse("-1").unwrap_err().contains("non-negative"));
        assert!(Seconds::parse("soon").unwrap_err().contains("\"soon\""));
        assert!(
            Seconds::parse("1e-300")
                .unwrap_err()
                .contains("shorter than one nanosecond")
        );
        assert!(
            Seconds::parse("1180591620717411303424")
                .unwrap_err()
                .contains("longer than 100 years")
        );
    }

    #[test]
    fn secrets_never_show() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(********)");
        assert_eq!(secret.expose(), "hunter2");
        assert!(Secret::default().is_empty());
    }

    #[test]
    fn booleans_read_like_the_original() {
        for yes in ["1", "TRUE", "yes", "On"] {
            assert_eq!(parse_bool(yes), Ok(true));
        }
        for no in ["0", "false", "NO", "off"] {
            assert_eq!(parse_bool(no), Ok(false));
        }
        assert!(parse_bool("maybe").is_err());
    }
}
