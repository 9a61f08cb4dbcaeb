//! The README's configuration reference is checked against the schema: its defaults block is
//! exactly what the code serializes, and every RT_* variable is listed.

use ratethrottle_config::{Config, override_names};

const README: &str = include_str!("../../../README.md");
const START: &str = "<!-- config-defaults:start -->\n```yaml\n";
const END: &str = "```\n<!-- config-defaults:end -->";

#[test]
fn the_readme_lists_the_schema_defaults_as_the_code_has_them() {
    let start = README
        .find(START)
        .expect("README has the config-defaults block")
        + START.len();
    let end = README[start..].find(END).expect("the block ends") + start;
    let expected = Config::default().to_yaml();
    assert!(
        README[start..end] == expected,
        "README.md's configuration defaults are out of date; replace the block with the output \
         of `cargo run -p ratethrottle-cli -- config show --defaults`:\n{expected}"
    );
}

#[test]
fn the_readme_lists_every_environment_variable() {
    for name in override_names() {
        assert!(
            README.contains(&format!("`{name}`")),
            "README.md does not document {name}"
        );
    }
}
