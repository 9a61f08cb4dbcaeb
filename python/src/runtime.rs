//! Where futures of the engine run: at once on the caller's thread when the store answers at
//! once (memory), else on the shared Tokio runtime with the GIL released.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

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

/// An awaitable of `future`'s output made a Python value by `finish`. When `at_once` (the
/// store answers without waiting) and the future is ready on its first poll, it is resolved
/// already ([`Ready`]: `await` costs no trip through the event loop); otherwise the future
/// runs on the runtime and never blocks the event loop.
pub(crate) fn awaitable<'py, F>(
    py: Python<'py>,
    at_once: bool,
    future: F,
    finish: fn(Python<'_>, F::Output) -> PyResult<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>>
where
    F: Future + Send + 'static,
    F::Output: Send,
{
    let mut future = Box::pin(future);
    if at_once
        && let Poll::Ready(output) = future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
    {
        return ready(py, finish(py, output)?);
    }
    spawn(py, async move {
        let output = future.await;
        Python::attach(|py| finish(py, output))
    })
}

/// Futures run by [`spawn`] whose result is not handed to their event loop yet.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// One future in [`IN_FLIGHT`], until dropped.
struct InFlight;

impl InFlight {
    fn start() -> Self {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An asyncio future of the running event loop, resolved with `future`'s output, which runs on
/// the runtime and never blocks the loop.
///
/// In place of pyo3-async-runtimes' `future_into_py`: a completion of its can still be inside
/// the interpreter (it runs Python code to wake the loop, which lets the main thread run on)
/// when the program exits, and the process then aborts during finalization ("PyGILState_Release:
/// thread state must be current"). Ours are counted, and [`settle`], run at exit, waits for them.
pub(crate) fn spawn<F, T>(py: Python<'_>, future: F) -> PyResult<Bound<'_, PyAny>>
where
    F: Future<Output = PyResult<Py<T>>> + Send + 'static,
{
    static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let event_loop = GET_RUNNING_LOOP
        .import(py, "asyncio", "get_running_loop")?
        .call0()?;
    let waiting = event_loop.call_method0(pyo3::intern!(py, "create_future"))?;
    let (event_loop, target) = (event_loop.unbind(), waiting.clone().unbind());
    let in_flight = InFlight::start();
    runtime().spawn(async move {
        let output = future.await;
        Python::attach(|py| {
            let (value, error) = match output {
                Ok(value) => (value.into_any(), None),
                Err(error) => (py.None(), Some(error.into_value(py))),
            };
            let resolved = wrap_pyfunction!(resolve, py).and_then(|resolve| {
                event_loop.bind(py).call_method1(
                    pyo3::intern!(py, "call_soon_threadsafe"),
                    (resolve, target, value, error),
                )
            });
            // A closed loop: nobody waits for the answer any more.
            drop(resolved);
        });
        drop(in_flight);
    });
    Ok(waiting)
}

/// Hands `value` (or `error`) to `future`, unless it was cancelled meanwhile.
#[pyfunction]
fn resolve(
    future: &Bound<'_, PyAny>,
    value: Bound<'_, PyAny>,
    error: Option<Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = future.py();
    if future
        .call_method0(pyo3::intern!(py, "done"))?
        .is_truthy()?
    {
        return Ok(());
    }
    match error {
        Some(error) => future.call_method1(pyo3::intern!(py, "set_exception"), (error,)),
        None => future.call_method1(pyo3::intern!(py, "set_result"), (value,)),
    }
    .map(drop)
}

/// Waits (GIL released, at most 2 s) until every [`spawn`]ed future has handed over its
/// result: registered with `atexit`, so that none is inside the interpreter as it finalizes.
#[pyfunction]
pub(crate) fn settle(py: Python<'_>) {
    let deadline = Instant::now() + Duration::from_secs(2);
    py.detach(|| {
        while IN_FLIGHT.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

/// An awaitable resolved to `value` already.
pub(crate) fn ready(py: Python<'_>, value: Py<PyAny>) -> PyResult<Bound<'_, PyAny>> {
    Ok(Bound::new(py, Ready::new(value))?.into_any())
}
