//! Time sources: the [`Clock`] trait, the real [`SystemClock`] and the test [`ManualClock`].
//!
//! Every time-dependent part of ratethrottle reads time through a [`Clock`], once per decision,
//! as [`Nanos`] since the Unix epoch. Tests use a [`ManualClock`] and never sleep.
//!
//! ```
//! use ratethrottle::clock::{Clock, ManualClock};
//! use std::time::Duration;
//!
//! let clock = ManualClock::new();
//! let start = clock.now();
//! let shared = clock.clone(); // clones share one time
//! shared.advance(Duration::from_secs(2));
//! assert_eq!(clock.now().saturating_sub(start), Duration::from_secs(2));
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time as whole nanoseconds since the Unix epoch (1970-01-01T00:00:00Z).
///
/// Arithmetic saturates instead of overflowing: `u64` nanoseconds reach the year 2554.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(u64);

impl Nanos {
    /// The Unix epoch.
    pub const ZERO: Nanos = Nanos(0);

    /// A time `nanos` nanoseconds after the Unix epoch.
    pub const fn from_nanos(nanos: u64) -> Self {
        Nanos(nanos)
    }

    /// A time `secs` seconds after the Unix epoch (saturating).
    pub const fn from_secs(secs: u64) -> Self {
        Nanos(secs.saturating_mul(1_000_000_000))
    }

    /// Nanoseconds since the Unix epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Whole seconds since the Unix epoch, rounded up.
    pub const fn as_secs_ceil(self) -> u64 {
        self.0.div_ceil(1_000_000_000)
    }

    /// This time plus `duration`, saturating at the largest representable time.
    pub fn saturating_add(self, duration: Duration) -> Self {
        Nanos(self.0.saturating_add(duration_to_nanos(duration)))
    }

    /// The duration from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_sub(self, earlier: Nanos) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// This time as a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.0)
    }

    /// A [`SystemTime`] as `Nanos`; times before the epoch become the epoch, times after 2554
    /// saturate.
    pub fn from_system_time(time: SystemTime) -> Self {
        time.duration_since(UNIX_EPOCH)
            .map_or(Nanos::ZERO, |d| Nanos(duration_to_nanos(d)))
    }
}

impl fmt::Display for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:09}s",
            self.0 / 1_000_000_000,
            self.0 % 1_000_000_000
        )
    }
}

/// A duration as whole nanoseconds, saturating at `u64::MAX` (about 584 years).
pub(crate) fn duration_to_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// A source of the current time.
///
/// Implement it to drive a limiter from your own time source; the limiter reads it once per
/// decision.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> Nanos;
}

/// Wall-clock time, read cheaply.
///
/// Reads the CPU's time-stamp counter (through `quanta`, about 4× cheaper than
/// [`SystemTime::now`] in a VM) and adds an offset to Unix time that is re-taken from
/// [`SystemTime::now`] 10 ms, 100 ms and then every second after start, so it follows the wall
/// clock (and NTP) to within the counter's drift over one interval. Each re-anchoring also
/// checks the counter: if it strayed from the wall clock by more than 0.1% of the interval
/// plus 1 ms — a calibration thrown off by a loaded VM, a wall-clock step — the clock reads
/// [`SystemTime::now`] from then on. Where no usable counter exists, `quanta` falls back
/// to the OS monotonic clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

/// The first re-anchoring's interval; each next one is 10× longer, up to [`RESYNC_NANOS`].
const FIRST_RESYNC_NANOS: u64 = 10_000_000;
/// How often [`SystemClock`] re-anchors the counter to the wall clock once settled.
const RESYNC_NANOS: u64 = 1_000_000_000;
/// How far from the wall clock (beyond 0.1% of the interval) the counter may be found at a
/// re-anchoring before it is no longer trusted.
const STRAY_SLACK_NANOS: u64 = 1_000_000;

struct Anchor {
    counter: quanta::Clock,
    /// Wall time minus counter time, in ns (wrapping arithmetic).
    offset: AtomicU64,
    /// Counter time of the last re-anchoring.
    last_sync: AtomicU64,
    /// Counter time of the next re-anchoring.
    next_sync: AtomicU64,
    /// Whether the counter strayed from the wall clock: then the wall clock is read directly.
    strayed: AtomicBool,
}

impl Anchor {
    #[inline]
    fn counter_nanos(&self) -> u64 {
        self.counter.delta_as_nanos(0, self.counter.raw())
    }

    fn sync(&self, counter_now: u64) -> u64 {
        let wall = Nanos::from_system_time(SystemTime::now()).as_nanos();
        let last = self.last_sync.load(Ordering::Relaxed);
        if last != 0 {
            let elapsed = counter_now.saturating_sub(last);
            let predicted = counter_now.wrapping_add(self.offset.load(Ordering::Relaxed));
            if predicted.abs_diff(wall) > elapsed / 1000 + STRAY_SLACK_NANOS {
                self.strayed.store(true, Ordering::Relaxed);
            }
        }
        let interval = match self.next_sync.load(Ordering::Relaxed).saturating_sub(last) {
            0 => FIRST_RESYNC_NANOS,
            previous => previous.saturating_mul(10).min(RESYNC_NANOS),
        };
        let offset = wall.wrapping_sub(counter_now);
        self.offset.store(offset, Ordering::Relaxed);
        self.last_sync.store(counter_now.max(1), Ordering::Relaxed);
        self.next_sync
            .store(counter_now.saturating_add(interval), Ordering::Relaxed);
        offset
    }
}

impl Anchor {
    fn new() -> Self {
        let anchor = Anchor {
            counter: quanta::Clock::new(),
            offset: AtomicU64::new(0),
            last_sync: AtomicU64::new(0),
            next_sync: AtomicU64::new(0),
            strayed: AtomicBool::new(false),
        };
        anchor.sync(anchor.counter_nanos());
        anchor
    }
}

static ANCHOR: std::sync::LazyLock<Anchor> = std::sync::LazyLock::new(Anchor::new);

impl SystemClock {
    /// Makes sure the time-stamp counter is calibrated (under a millisecond, once per process),
    /// so the first check does not pay for it.
    pub fn warm_up() {
        std::sync::LazyLock::force(&ANCHOR);
    }
}

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Nanos {
        let anchor = &*ANCHOR;
        if anchor.strayed.load(Ordering::Relaxed) {
            return Nanos::from_system_time(SystemTime::now());
        }
        let counter = anchor.counter_nanos();
        let offset = if counter >= anchor.next_sync.load(Ordering::Relaxed) {
            anchor.sync(counter)
        } else {
            anchor.offset.load(Ordering::Relaxed)
        };
        Nanos(counter.wrapping_add(offset))
    }
}

/// The clock a limiter reads: the [`SystemClock`] called directly (inlined on the hot path),
/// any other clock through a pointer.
#[derive(Clone, Debug)]
pub(crate) enum ClockSource {
    System,
    Custom(Arc<dyn Clock>),
}

impl ClockSource {
    pub(crate) fn new(clock: impl Clock) -> Self {
        if (&clock as &dyn std::any::Any).is::<SystemClock>() {
            ClockSource::System
        } else {
            ClockSource::Custom(Arc::new(clock))
        }
    }

    #[inline]
    pub(crate) fn now(&self) -> Nanos {
        match self {
            ClockSource::System => SystemClock.now(),
            ClockSource::Custom(clock) => clock.now(),
        }
    }
}

/// A clock that only moves when told to. Clones share the same time.
///
/// Starts at 2026-01-01T00:00:00Z, a multiple of every common window, so windowed strategies
/// start at the beginning of a window.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// 2026-01-01T00:00:00Z, where [`ManualClock::new`] starts.
    pub const START: Nanos = Nanos::from_secs(1_767_225_600);

    /// A clock at [`ManualClock::START`].
    pub fn new() -> Self {
        Self::at(Self::START)
    }

    /// A clock at `time`.
    pub fn at(time: Nanos) -> Self {
        ManualClock(Arc::new(AtomicU64::new(time.as_nanos())))
    }

    /// Moves the time forward by `duration` (saturating).
    pub fn advance(&self, duration: Duration) {
        let step = duration_to_nanos(duration);
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(step))
            });
    }

    /// Sets the time; it may move backwards, which the strategies tolerate.
    pub fn set(&self, time: Nanos) {
        self.0.store(time.as_nanos(), Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now(&self) -> Nanos {
        Nanos(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_saturates_instead_of_overflowing() {
        let clock = ManualClock::at(Nanos::from_nanos(u64::MAX - 5));
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.now().as_nanos(), u64::MAX);
    }

    #[test]
    fn system_clock_follows_the_wall_clock() {
        for _ in 0..3 {
            let wall = Nanos::from_system_time(SystemTime::now());
            let ours = SystemClock.now();
            let gap = ours.as_nanos().abs_diff(wall.as_nanos());
            assert!(gap < 50_000_000, "{ours} vs wall {wall}");
        }
    }

    #[test]
    fn the_counter_is_re_anchored_sooner_at_first_and_distrusted_when_it_strays() {
        let anchor = Anchor::new();
        let first = anchor.last_sync.load(Ordering::Relaxed);
        assert_eq!(
            anchor.next_sync.load(Ordering::Relaxed) - first,
            FIRST_RESYNC_NANOS
        );
        anchor.sync(anchor.counter_nanos());
        assert!(
            !anchor.strayed.load(Ordering::Relaxed),
            "an honest counter is kept"
        );
        let last = anchor.last_sync.load(Ordering::Relaxed);
        assert_eq!(
            anchor.next_sync.load(Ordering::Relaxed) - last,
            10 * FIRST_RESYNC_NANOS
        );
        // A counter that claims 50 ms passed while the wall clock moved far less.
        anchor.sync(last + 50_000_000);
        assert!(anchor.strayed.load(Ordering::Relaxed));
    }

    #[test]
    fn display_shows_seconds_and_nanos() {
        assert_eq!(Nanos::from_nanos(1_500_000_001).to_string(), "1.500000001s");
        assert_eq!(Nanos::from_nanos(1_000_000_001).as_secs_ceil(), 2);
    }
}
