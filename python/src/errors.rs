//! Raising the original library's exception classes (defined in `ratethrottle.exceptions`).

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

/// The exception classes this module raises, by their names in `ratethrottle.exceptions`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Raise {
    Configuration,
    Storage,
    InvalidRule,
    StrategyNotFound,
    RuleNotFound,
}

impl Raise {
    fn class_name(self) -> &'static str {
        match self {
            Raise::Configuration => "ConfigurationError",
            Raise::Storage => "StorageError",
            Raise::InvalidRule => "InvalidRuleError",
            Raise::StrategyNotFound => "StrategyNotFoundError",
            Raise::RuleNotFound => "RuleNotFoundError",
        }
    }

    /// The exception to raise, with `message`.
    pub(crate) fn err(self, message: impl Into<String>) -> PyErr {
        let message = message.into();
        Python::attach(|py| match class(py, self) {
            Ok(class) => PyErr::from_type(class.clone(), message),
            Err(import_failed) => import_failed,
        })
    }
}

static CLASSES: [PyOnceLock<Py<PyType>>; 5] = [const { PyOnceLock::new() }; 5];

fn class(py: Python<'_>, which: Raise) -> PyResult<Bound<'_, PyType>> {
    CLASSES[which as usize]
        .get_or_try_init(py, || {
            let class = py
                .import("ratethrottle.exceptions")?
                .getattr(which.class_name())?;
            Ok::<_, PyErr>(class.cast_into::<PyType>()?.unbind())
        })
        .map(|class| class.bind(py).clone())
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
