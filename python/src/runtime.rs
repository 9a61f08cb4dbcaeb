//! Where futures of the engine run: at once on the caller's thread when the store answers at
//! once (memory), else on the shared Tokio runtime with the GIL released.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;

/// The runtime Redis connections live on (also the one `pyo3-async-runtimes` resolves
/// awaitables from).
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    pyo3_async_runtimes::tokio::get_runtime()
}

/// Runs `future` to completion. When `at_once` (the store answers without waiting), it is polled
/// once on this thread, GIL held; otherwise, and should it ever be pending, the GIL is released
/// while the runtime drives it.
pub(crate) fn wait<F>(py: Python<'_>, at_once: bool, future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    let mut future = pin!(future);
    if at_once
        && let Poll::Ready(output) = future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
    {
        return output;
    }
    py.detach(|| runtime().block_on(future))
}

/// An awaitable that is already resolved: what async methods return when the answer was
/// ready at once, so `await` costs no trip through the event loop.
#[pyclass(module = "ratethrottle._native")]
pub(crate) struct Ready {
    value: Option<Py<PyAny>>,
}

impl Ready {
    pub(crate) fn new(value: Py<PyAny>) -> Self {
        Ready { value: Some(value) }
    }
}

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self) -> PyResult<()> {
        let value = self.value.take();
        Err(PyStopIteration::new_err((value,)))
    }

    /// Coroutine protocol, for code that drives awaitables by hand.
    fn send(&mut self, _value: Bound<'_, PyAny>) -> PyResult<()> {
        self.__next__()
    }

    fn close(&mut self) {
        self.value = None;
    }
}
