//! The `ratethrottle` command (see the library's documentation for the commands).

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(ratethrottle_cli::run_from(std::env::args_os()))
}
