//! The spellings of the original `ratethrottle` 1.4 command line, as aliases of ours: its
//! documentation's (`ratethrottle --whitelist-add 10.0.0.1`, `config --validate FILE`,
//! `config --show`, `stats --raw-data`) and its own parser's (`manage --whitelist-add`,
//! `manage --list-all`, `config --validate`, `config --export FILE`). They are rewritten into
//! this command line's words before parsing, so they behave (and exit) exactly as those do,
//! and `--help` shows only ours.

use std::ffi::{OsStr, OsString};

/// The original's list flags and the `manage` words they stand for.
const LIST_FLAGS: [(&str, [&str; 2]); 5] = [
    ("--whitelist-add", ["whitelist", "add"]),
    ("--whitelist-remove", ["whitelist", "remove"]),
    ("--blacklist-add", ["blacklist", "add"]),
    ("--blacklist-remove", ["blacklist", "remove"]),
    ("--list-all", ["all", "list"]),
];

/// Global options that take a value (the value follows unless given with `=`).
const GLOBAL_WITH_VALUE: [&str; 3] = ["--config", "-c", "--format"];

/// `args` (the program name first) with the original's spellings in ours.
pub(crate) fn translate(args: Vec<OsString>) -> Vec<OsString> {
    let Some(at) = command_position(&args) else {
        return args;
    };
    let (head, rest) = args.split_at(at);
    let word = rest[0].to_str().unwrap_or_default();
    let translated: Option<Vec<OsString>> = if word.starts_with("--") {
        // `ratethrottle --whitelist-add X`: the documented form, without `manage`.
        list_flags(rest).map(|manage| prepend("manage", manage))
    } else {
        match word {
            "manage" => list_flags(&rest[1..]).map(|manage| prepend("manage", manage)),
            "config" => config_flags(&rest[1..]).map(|config| prepend("config", config)),
            "stats" => Some(stats_flags(rest)),
            _ => None,
        }
    };
    match translated {
        Some(rest) => head.iter().cloned().chain(rest).collect(),
        None => args,
    }
}

/// Where the command (or, for the original's top-level flags, the first of them) starts:
/// after the program name and the global options.
fn command_position(args: &[OsString]) -> Option<usize> {
    let mut at = 1;
    while let Some(arg) = args.get(at) {
        let text = arg.to_str()?;
        if GLOBAL_WITH_VALUE.contains(&text) {
            at += 2;
        } else if GLOBAL_WITH_VALUE
            .iter()
            .any(|flag| text.starts_with(&format!("{flag}=")))
            || matches!(text, "-v" | "--verbose")
        {
            at += 1;
        } else {
            return Some(at);
        }
    }
    None
}

fn prepend(word: &str, rest: Vec<OsString>) -> Vec<OsString> {
    std::iter::once(OsString::from(word)).chain(rest).collect()
}

/// `--whitelist-add X --duration N` as `whitelist add X --duration N`; `None` when `args`
/// does not start with one of the original's list flags.
fn list_flags(args: &[OsString]) -> Option<Vec<OsString>> {
    let first = args.first()?.to_str()?;
    let (flag, inline) = match first.split_once('=') {
        Some((flag, value)) => (flag, Some(OsString::from(value))),
        None => (first, None),
    };
    let words = LIST_FLAGS
        .iter()
        .find(|(name, _)| *name == flag)
        .map(|(_, words)| words)?;
    let mut out: Vec<OsString> = words.iter().map(OsString::from).collect();
    out.extend(inline);
    out.extend(args[1..].iter().cloned());
    Some(out)
}

/// `--validate [FILE]`, `--show`, `--export FILE` as `validate [FILE]`, `show`,
/// `export FILE`.
fn config_flags(args: &[OsString]) -> Option<Vec<OsString>> {
    let first = args.first()?.to_str()?;
    let (flag, inline) = match first.split_once('=') {
        Some((flag, value)) => (flag, Some(OsString::from(value))),
        None => (first, None),
    };
    let word = match flag {
        "--validate" => "validate",
        "--show" => "show",
        "--export" => "export",
        _ => return None,
    };
    let mut out = vec![OsString::from(word)];
    out.extend(inline);
    out.extend(args[1..].iter().cloned());
    Some(out)
}

/// `stats --raw-data` (the original's "include raw data") as the longest history this
/// command keeps.
fn stats_flags(args: &[OsString]) -> Vec<OsString> {
    args.iter()
        .flat_map(|arg| {
            if arg.as_os_str() == OsStr::new("--raw-data") {
                vec![OsString::from("--seconds"), OsString::from("3600")]
            } else {
                vec![arg.clone()]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(line: &str) -> String {
        let args = line.split(' ').map(OsString::from).collect();
        translate(args)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn the_originals_spellings_become_ours() {
        let cases = [
            (
                "rt --whitelist-add 10.0.0.1",
                "rt manage whitelist add 10.0.0.1",
            ),
            (
                "rt --whitelist-remove 10.0.0.1",
                "rt manage whitelist remove 10.0.0.1",
            ),
            ("rt --list-all", "rt manage all list"),
            (
                "rt --config c.yaml --blacklist-add 1.2.3.4 --duration 60",
                "rt --config c.yaml manage blacklist add 1.2.3.4 --duration 60",
            ),
            (
                "rt -v manage --blacklist-remove=9.9.9.9",
                "rt -v manage blacklist remove 9.9.9.9",
            ),
            ("rt manage --list-all", "rt manage all list"),
            ("rt config --validate c.yaml", "rt config validate c.yaml"),
            (
                "rt --format=json config --validate",
                "rt --format=json config validate",
            ),
            ("rt config --show", "rt config show"),
            ("rt config --export out.yaml", "rt config export out.yaml"),
            (
                "rt stats --export r.json --raw-data",
                "rt stats --export r.json --seconds 3600",
            ),
        ];
        for (original, ours) in cases {
            assert_eq!(rewritten(original), ours, "{original}");
        }
    }

    #[test]
    fn our_own_spellings_are_left_alone() {
        for line in [
            "rt manage whitelist add 10.0.0.1",
            "rt config validate c.yaml",
            "rt --help",
            "rt test --rule api",
            "rt monitor --interval 2",
            "rt",
        ] {
            assert_eq!(rewritten(line), line);
        }
    }
}
