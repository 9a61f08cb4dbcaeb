//! The original library's exception classes that the engine raises, defined here (and
//! re-exported by `ratethrottle.exceptions`), so raising one never imports Python code.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

create_exception!(
    ratethrottle.exceptions,
    RateThrottleException,
    PyException,
    "Base exception for all RateThrottle errors"
);
create_exception!(
    ratethrottle.exceptions,
    ConfigurationError,
    RateThrottleException,
    "Raised when there's a configuration error"
);
create_exception!(
    ratethrottle.exceptions,
    StorageError,
    RateThrottleException,
    "Raised when there's a storage backend error"
);
create_exception!(
    ratethrottle.exceptions,
    InvalidRuleError,
    RateThrottleException,
    "Raised when a rule configuration is invalid"
);
create_exception!(
    ratethrottle.exceptions,
    StrategyNotFoundError,
    RateThrottleException,
    "Raised when a rate limiting strategy is not found"
);
create_exception!(
    ratethrottle.exceptions,
    RuleNotFoundError,
    RateThrottleException,
    "Raised when a rate limiting rule is not found"
);

/// Adds the exception classes to the extension module.
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    module.add(
        "RateThrottleException",
        py.get_type::<RateThrottleException>(),
    )?;
    module.add("ConfigurationError", py.get_type::<ConfigurationError>())?;
    module.add("StorageError", py.get_type::<StorageError>())?;
    module.add("InvalidRuleError", py.get_type::<InvalidRuleError>())?;
    module.add(
        "StrategyNotFoundError",
        py.get_type::<StrategyNotFoundError>(),
    )?;
    module.add("RuleNotFoundError", py.get_type::<RuleNotFoundError>())?;
    Ok(())
}

/// The exception classes this module raises.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Raise {
    Configuration,
    Storage,
    InvalidRule,
    StrategyNotFound,
    RuleNotFound,
}

impl Raise {
    /// The exception to raise, with `message`.
    pub(crate) fn err(self, message: impl Into<String>) -> PyErr {
        let message = message.into();
        match self {
            Raise::Configuration => ConfigurationError::new_err(message),
            Raise::Storage => StorageError::new_err(message),
            Raise::InvalidRule => InvalidRuleError::new_err(message),
            Raise::StrategyNotFound => StrategyNotFoundError::new_err(message),
            Raise::RuleNotFound => RuleNotFoundError::new_err(message),
        }
    }
}

/// The exception for a failed check or list operation of the engine.
pub(crate) fn engine_error(error: ratethrottle::Error) -> PyErr {
    match &error {
        ratethrottle::Error::UnknownRule { .. } => Raise::RuleNotFound.err(error.to_string()),
        ratethrottle::Error::InvalidRule(_) => Raise::InvalidRule.err(error.to_string()),
        ratethrottle::Error::InvalidCost { .. } => {
            pyo3::exceptions::PyValueError::new_err(error.to_string())
        }
        _ => Raise::Storage.err(error.to_string()),
    }
}

/// Logs `message` on the `ratethrottle.core` Python logger at `level` (`"error"`,
/// `"warning"`), as the original logs such events. A failure to log is ignored.
pub(crate) fn log(py: Python<'_>, level: &str, message: &str) {
    static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let logger = LOGGER.get_or_try_init(py, || {
        py.import("logging")?
            .call_method1("getLogger", ("ratethrottle.core",))
            .map(Bound::unbind)
    });
    if let Ok(logger) = logger {
        let _ = logger.bind(py).call_method1(level, (message,));
    }
}
