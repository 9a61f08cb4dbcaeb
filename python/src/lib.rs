//! `ratethrottle._native`: the Rust engine under the `ratethrottle` Python package.
//!
//! The Python modules (`ratethrottle.core`, `ratethrottle.middleware`, ...) keep the original
//! library's names and signatures; everything that decides runs here, in the `ratethrottle`
//! crates. Checks against the in-memory store complete on the caller's thread without
//! releasing the GIL (they take well under a microsecond); checks against Redis release the GIL
//! and run on a shared Tokio runtime, and their async variants resolve as asyncio awaitables.

use pyo3::prelude::*;

mod adaptive;
mod alerting;
mod args;
mod backend;
mod clock;
mod config;
mod core;
mod errors;
mod graphql;
mod http;
mod policy;
mod protect;
mod runtime;
mod status;
mod store;
mod websocket;

/// `(limit, window_seconds)` of a rate such as `"100/minute"`, `"5 per second"` or `"10/30s"`.
///
/// Raises `ValueError` naming the accepted units for anything else (`"100/fortnight"`).
#[pyfunction]
fn parse_rate(rate: &Bound<'_, PyAny>) -> PyResult<(u64, f64)> {
    let text: String = rate.extract().map_err(|_| {
        pyo3::exceptions::PyValueError::new_err(
            "Rate string must be a string such as \"100/minute\"",
        )
    })?;
    ratethrottle::parse_rate(&text)
        .map(|(limit, window)| (limit, window.as_secs_f64()))
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
}

/// Runs the `ratethrottle` command line `argv` (the program name first) and returns its exit
/// code: the same command as the Rust binary (the GIL is released meanwhile).
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<String>) -> u8 {
    py.detach(|| ratethrottle_cli::run_from(argv))
}

/// The extension module.
#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    // The engine logs under `ratethrottle::…` targets: Python's `ratethrottle.…` loggers, whose
    // levels are read at each line (set them any time). Another logger already installed in
    // this process (a second extension) keeps the lines instead.
    let _ = pyo3_log::Logger::new(module.py(), pyo3_log::Caching::Loggers)?
        .filter(log::LevelFilter::Off)
        .filter_target("ratethrottle".to_owned(), log::LevelFilter::Debug)
        .install();
    errors::register(module)?;
    // Results of futures on the runtime are handed over before the interpreter finalizes.
    let settle = wrap_pyfunction!(runtime::settle, module)?;
    module
        .py()
        .import("atexit")?
        .call_method1("register", (settle,))?;
    module.add_class::<core::NativeCore>()?;
    module.add_class::<status::RateThrottleStatus>()?;
    module.add_class::<store::NativeStore>()?;
    module.add_class::<clock::ManualClock>()?;
    module.add_class::<http::ClientIpResolver>()?;
    module.add_class::<policy::NativePolicy>()?;
    module.add_class::<runtime::Ready>()?;
    module.add_class::<protect::NativeDdos>()?;
    module.add_class::<protect::TrafficPattern>()?;
    module.add_class::<protect::NativeAnalytics>()?;
    module.add_class::<adaptive::NativeAdaptive>()?;
    module.add_class::<alerting::NativeAlerts>()?;
    module.add_class::<websocket::NativeWebSocket>()?;
    module.add_class::<graphql::NativeGraphQL>()?;
    module.add_function(wrap_pyfunction!(parse_rate, module)?)?;
    module.add_function(wrap_pyfunction!(cli_main, module)?)?;
    module.add_class::<config::Configuration>()?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
