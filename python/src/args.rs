//! Arguments converted with the documented errors: a `cost` that is not a whole number from 1
//! up raises `ValueError` (not `OverflowError`), and an identifier that cannot be UTF-8 (a lone
//! surrogate) raises `ValueError` (not a bare `UnicodeEncodeError`).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;

/// A request's cost: a whole number from 1 to 2**64 - 1.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cost(pub(crate) u64);

impl<'a, 'py> FromPyObject<'a, 'py> for Cost {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        match obj.extract::<u64>() {
            Ok(cost) if cost >= 1 => Ok(Cost(cost)),
            _ => Err(PyValueError::new_err(format!(
                "cost must be a whole number from 1 to the rule's capacity, got {}",
                shown(&obj)
            ))),
        }
    }
}

/// An identifier or rule name: text that can be UTF-8.
#[derive(Debug)]
pub(crate) struct Text(pub(crate) PyBackedStr);

impl<'a, 'py> FromPyObject<'a, 'py> for Text {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        obj.extract::<PyBackedStr>().map(Text).map_err(|error| {
            if obj.is_instance_of::<pyo3::types::PyString>() {
                PyValueError::new_err(
                    "identifier is not valid text: it contains a lone surrogate, which cannot be encoded as UTF-8",
                )
            } else {
                error
            }
        })
    }
}

impl std::ops::Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

/// `repr(obj)`, cut to 64 characters.
fn shown(obj: &Borrowed<'_, '_, PyAny>) -> String {
    let text = obj
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "?".to_owned());
    ratethrottle::identifier::elide(&text).into_owned()
}
