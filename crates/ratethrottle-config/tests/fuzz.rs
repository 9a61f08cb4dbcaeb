//! Fuzzing the configuration loader (issue 15): YAML built from its own syntax (aliases,
//! anchors, flow and block nesting, tags, comments, `${VAR}`) and arbitrary variable values.
//! No panic, bounded time, and a configuration or an error naming a place.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use ratethrottle_config::{Config, Environment};

/// Pieces of YAML that, strung together, make valid, broken and hostile files.
fn yamlish() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "rules:\n",
        "  - name: api\n",
        "    limit: 5\n",
        "    window: 60\n",
        "    rate: 1/s\n",
        "whitelist: ",
        "[",
        "]",
        "{",
        "}",
        ", ",
        "&a ",
        "*a",
        "!!binary ",
        "!!str ",
        "# c\n",
        "\n",
        "  ",
        "- ",
        ": ",
        "'q'",
        "\"d\\n\"",
        "${V}",
        "${V:-x}",
        "$${V}",
        "|\n  lit\n",
        "storage:\n  type: redis\n  url: ",
        "redis://h:1/0\n",
        "key_prefix: ",
        "\t",
        "\0",
        "global:\n  enabled: ",
        "true\n",
        "---\n",
        "...\n",
        "? k\n",
        "<<: *a\n",
    ]);
    prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

proptest! {
    #[test]
    fn any_yaml_is_a_configuration_or_an_error_quickly(text in yamlish(), value in any::<String>()) {
        let env = Environment::empty().with("V", value);
        let started = Instant::now();
        match Config::from_yaml(&text, "fuzz.yaml", &env) {
            Ok(config) => { let _ = config.to_yaml(); }
            Err(error) => prop_assert!(error.to_string().starts_with("fuzz.yaml") || error.to_string().starts_with("environment")),
        }
        prop_assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_substituted_value_is_taken_exactly(value in any::<String>()) {
        let env = Environment::empty().with("PFX", value.clone());
        let text = "storage:\n  key_prefix: ${PFX}\n";
        let config = Config::from_yaml(text, "fuzz.yaml", &env);
        prop_assert!(config.is_ok(), "{:?}: {:?}", value, config.err());
        prop_assert_eq!(config.unwrap().storage.key_prefix, value);
    }

    #[test]
    fn deep_and_aliased_documents_stay_bounded(depth in 0usize..300, aliases in 0usize..3000) {
        let text = format!(
            "a: &a {}\nwhitelist: {}{}{}\n",
            "x".repeat(2000),
            "[".repeat(depth),
            vec!["*a"; aliases].join(", "),
            "]".repeat(depth),
        );
        let started = Instant::now();
        let _ = Config::from_yaml(&text, "fuzz.yaml", &Environment::empty());
        prop_assert!(started.elapsed() < Duration::from_secs(2));
    }
}
