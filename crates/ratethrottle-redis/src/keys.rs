//! Key names (all of one identifier's keys in one Redis Cluster slot) and how values are
//! written in Redis.

use ratethrottle::clock::Nanos;
use ratethrottle::store::{ListKind, RuleSpec};

use crate::RedisStore;

impl RedisStore {
    /// `<prefix>{i:<identifier>}:<suffix>`: the braces put all of an identifier's keys in one
    /// Redis Cluster slot, so one script call can touch them all.
    pub(crate) fn key(&self, identifier: &str, suffix: &str) -> String {
        format!(
            "{}{{i:{identifier}}}:{suffix}",
            self.shared.config.key_prefix
        )
    }

    /// The state of `identifier` under `rule` (by the rule's fingerprint).
    pub(crate) fn state_key(&self, rule: &RuleSpec, identifier: &str) -> String {
        self.key(identifier, &format!("{:016x}", rule.fingerprint))
    }

    /// `identifier`'s entry on `list` (its expiry, or empty for none).
    pub(crate) fn list_key(&self, list: ListKind, identifier: &str) -> String {
        self.key(identifier, list_suffix(list))
    }

    /// The set of the identifiers on `list`.
    pub(crate) fn index_key(&self, list: ListKind) -> String {
        format!("{}{}", self.shared.config.key_prefix, list.as_str())
    }

    /// A fleet telemetry key (all in one cluster slot).
    pub(crate) fn telemetry_key(&self, name: &str) -> String {
        format!("{}{{telemetry}}:{name}", self.shared.config.key_prefix)
    }

    /// The counter every list change increments.
    pub(crate) fn list_version_key(&self) -> String {
        format!("{}lists_version", self.shared.config.key_prefix)
    }
}

/// The script's number format: hexadecimal, six digits to one of its limbs.
pub(crate) fn hex(value: u64) -> String {
    format!("{value:x}")
}

/// A list entry's expiry as stored: `"seconds:nanoseconds"`, or `""` for none.
pub(crate) fn list_expiry(expires_at: Option<Nanos>) -> String {
    expires_at.map_or_else(String::new, |at| {
        let nanos = at.as_nanos();
        format!("{}:{}", nanos / 1_000_000_000, nanos % 1_000_000_000)
    })
}

/// A time written as `"seconds:nanoseconds"` (a list expiry, or a script's time), read back;
/// `None` for `""` or anything unreadable.
pub(crate) fn parse_seconds_nanos(expiry: &str) -> Option<Nanos> {
    let (seconds, nanos) = expiry.split_once(':')?;
    let nanos: u64 = nanos.parse().ok().filter(|&n| n < 1_000_000_000)?;
    let at = seconds.parse::<u64>().ok()?.checked_mul(1_000_000_000)?;
    Some(Nanos::from_nanos(at.checked_add(nanos)?))
}

pub(crate) fn list_suffix(list: ListKind) -> &'static str {
    match list {
        ListKind::Whitelist => "wl",
        ListKind::Blacklist => "bl",
    }
}

/// Whether a list entry's stored expiry (see [`list_expiry`]) is after `now`.
pub(crate) fn unexpired(expiry: &str, now: Nanos) -> bool {
    expiry.is_empty() || parse_seconds_nanos(expiry).is_some_and(|at| at > now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_expiries_compare_exactly() {
        let now = Nanos::from_nanos(1_767_225_600_000_000_000);
        assert!(unexpired("", now));
        let at = |nanos| list_expiry(Some(Nanos::from_nanos(nanos)));
        assert_eq!(at(1_767_225_600_000_000_001), "1767225600:1");
        assert!(unexpired(&at(1_767_225_600_000_000_001), now));
        assert!(!unexpired(&at(1_767_225_600_000_000_000), now));
        assert!(!unexpired("1767225600:1000000000", now));
        assert!(!unexpired("garbage", now));
    }
}
