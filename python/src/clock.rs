//! A clock tests set by hand, so windows pass without sleeping.

use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use ratethrottle::clock::Nanos;

/// A clock that only moves when told to: pass it as `RateThrottleCore(clock=...)`.
///
/// ```python
/// clock = ManualClock(1_700_000_000)
/// limiter = RateThrottleCore(clock=clock)
/// clock.advance(60)
/// ```
#[pyclass(frozen, module = "ratethrottle._native")]
#[derive(Clone, Debug)]
pub(crate) struct ManualClock(pub(crate) ratethrottle::clock::ManualClock);

fn duration(seconds: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| PyValueError::new_err(format!("{seconds} is not a number of seconds >= 0")))
}

/// The time `unix_seconds` after the Unix epoch.
fn unix_time(unix_seconds: f64) -> PyResult<Nanos> {
    Ok(Nanos::from_nanos(duration(unix_seconds)?.as_nanos() as u64))
}

#[pymethods]
impl ManualClock {
    /// A clock at `unix_seconds` (default 1,700,000,000).
    #[new]
    #[pyo3(signature = (unix_seconds = 1_700_000_000.0))]
    fn new(unix_seconds: f64) -> PyResult<Self> {
        let at = unix_time(unix_seconds)?;
        Ok(ManualClock(ratethrottle::clock::ManualClock::at(at)))
    }

    /// Moves the clock forward by `seconds`.
    fn advance(&self, seconds: f64) -> PyResult<()> {
        self.0.advance(duration(seconds)?);
        Ok(())
    }

    /// Sets the clock to `unix_seconds`.
    fn set(&self, unix_seconds: f64) -> PyResult<()> {
        self.0.set(unix_time(unix_seconds)?);
        Ok(())
    }

    /// The time, in Unix seconds.
    fn time(&self) -> f64 {
        use ratethrottle::clock::Clock;
        self.0.now().as_nanos() as f64 / 1e9
    }
}
