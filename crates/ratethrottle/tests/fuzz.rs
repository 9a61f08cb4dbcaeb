//! Fuzzing the core's parsers of untrusted input (issue 15): rate strings, strategy and scope
//! names, identifiers. No panic, bounded messages, and a correct value or a clear error.
//! `PROPTEST_CASES` sets the count (256 by default; `scripts/fuzz.sh` runs 1,000,000).

use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::Strategy as _;
use ratethrottle::identifier::{MAX_IDENTIFIER_LEN, normalize_identifier};
use ratethrottle::{MAX_WINDOW, Scope, Strategy, parse_rate};

/// Text near the rate grammar: counts, separators, units, signs, spaces, junk.
fn rate_like() -> impl proptest::strategy::Strategy<Value = String> {
    let part = prop_oneof![
        "[0-9]{1,25}",
        Just("/".to_owned()),
        Just(" per ".to_owned()),
        prop::sample::select(vec![
            "s",
            "ms",
            "m",
            "min",
            "h",
            "hour",
            "d",
            "w",
            "weeks",
            "fortnight"
        ])
        .prop_map(str::to_owned),
        Just("-".to_owned()),
        " {0,3}",
        any::<String>(),
    ];
    prop::collection::vec(part, 0..6).prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn rates_parse_to_valid_rules_or_clear_errors(input in rate_like()) {
        match parse_rate(&input) {
            Ok((limit, window)) => {
                prop_assert!(limit >= 1);
                prop_assert!(window > Duration::ZERO && window <= MAX_WINDOW);
            }
            Err(error) => {
                let message = error.to_string();
                prop_assert!(message.len() < 1_000, "{} bytes", message.len());
                prop_assert!(message.contains("expected"));
            }
        }
    }

    #[test]
    fn names_parse_or_are_refused_briefly(input in any::<String>()) {
        if let Err(error) = input.parse::<Strategy>() {
            prop_assert!(error.to_string().len() < 1_000);
        }
        if let Err(error) = input.parse::<Scope>() {
            prop_assert!(error.to_string().len() < 1_000);
        }
    }

    #[test]
    fn identifiers_are_bounded_and_distinct(a in any::<String>(), b in any::<String>()) {
        let (ka, kb) = (normalize_identifier(&a), normalize_identifier(&b));
        prop_assert!(ka.len() <= MAX_IDENTIFIER_LEN);
        prop_assert_eq!(ka == kb, a == b);
    }
}
