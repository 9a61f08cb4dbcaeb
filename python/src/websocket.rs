//! `NativeWebSocket`: the engine under `ratethrottle.websocket.WebSocketRateLimiter` (crate
//! `ratethrottle-ws`), deciding on a `NativeCore`'s limiter and its `ws_*` rules.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use parking_lot::Mutex;
use pyo3::prelude::*;
use ratethrottle::clock::Nanos;
use ratethrottle::store::Store;
use ratethrottle_config::ConfiguredStore;
use ratethrottle_protect::slots::SlotPermit;
use ratethrottle_ws::{Connection, Refusal, Refused, WsGuard};

use crate::core::NativeCore;
use crate::errors::{Raise, log};
use crate::runtime::{awaitable, ready};

/// How long a slot reserved by `check_connection` waits for its `register_connection`.
const RESERVATION: Duration = Duration::from_secs(60);

/// Slots reserved by admitted connections not registered yet, oldest first, per client.
type Reserved = HashMap<String, VecDeque<(Nanos, SlotPermit)>>;

/// The guard, the registered connections and the reserved slots.
#[pyclass(frozen, module = "ratethrottle._native")]
pub(crate) struct NativeWebSocket {
    guard: WsGuard<ConfiguredStore>,
    at_once: bool,
    reserved: Mutex<Reserved>,
    connections: Mutex<HashMap<String, Connection<ConfiguredStore>>>,
}

/// A connection refusal as `(kind, current, retry_after)`: kind `concurrent_connections`,
/// `connection_rate` or `internal_error`.
fn refused(py: Python<'_>, refused: Refused) -> (&'static str, u32, u64) {
    match refused {
        Refused::TooManyConnections { held, .. } => ("concurrent_connections", held, 0),
        Refused::ConnectionRate { status } => {
            ("connection_rate", 0, status.retry_after_secs().unwrap_or(0))
        }
        Refused::Blacklisted => ("connection_rate", 0, 0),
        Refused::Internal(error) => {
            log(
                py,
                "error",
                &format!("WebSocket connection check failed: {error}"),
            );
            ("internal_error", 0, 0)
        }
        _ => ("internal_error", 0, 0),
    }
}

/// A message decision as `(reason, retry_after, remaining_bytes)`, reasons as the original's.
fn message_answer(py: Python<'_>, decided: Result<(), Refusal>) -> PyResult<Py<PyAny>> {
    let answer = match decided {
        Ok(()) => ("ok", 0, 0),
        Err(Refusal::Bandwidth { remaining, .. }) => ("bandwidth_exceeded", 0, remaining),
        Err(Refusal::Internal(error)) => {
            log(
                py,
                "error",
                &format!("WebSocket message check failed: {error}"),
            );
            ("internal_error", 0, 0)
        }
        Err(refusal) => {
            let after = refusal
                .retry_after()
                .map_or(0, |d| d.as_nanos().div_ceil(1_000_000_000) as u64);
            (refusal.reason(), after, 0)
        }
    };
    Ok(answer.into_pyobject(py)?.into_any().unbind())
}

#[pymethods]
impl NativeWebSocket {
    /// A guard on `core`'s rules `ws_connections`, `ws_messages` and (with `bandwidth`)
    /// `ws_bandwidth`.
    #[new]
    fn new(
        core: &Bound<'_, NativeCore>,
        max_concurrent: u32,
        max_message_size: usize,
        bandwidth: bool,
    ) -> PyResult<Self> {
        let limiter = core.get().limiter().clone();
        let at_once = limiter.store().answers_at_once();
        let mut builder = WsGuard::builder(limiter)
            .connect_rule("ws_connections")
            .message_rule("ws_messages")
            .max_concurrent(max_concurrent)
            .max_message_size(max_message_size);
        if bandwidth {
            builder = builder.byte_rule("ws_bandwidth");
        }
        let guard = builder
            .build()
            .map_err(|error| Raise::Configuration.err(error.to_string()))?;
        Ok(NativeWebSocket {
            guard,
            at_once,
            reserved: Mutex::new(HashMap::new()),
            connections: Mutex::new(HashMap::new()),
        })
    }

    /// Awaitable of `(kind, current, retry_after)`: kind `ok` (a slot is reserved for the
    /// client's next `register`), or why not.
    fn check_connection<'py>(
        slf: &Bound<'py, Self>,
        client: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let guard = this.guard.clone();
        let native: Py<Self> = slf.clone().unbind();
        let future = async move {
            let admitted = guard.admit(&client).await;
            (native, client, admitted)
        };
        awaitable(
            slf.py(),
            this.at_once,
            future,
            |py, (native, client, admitted)| {
                let answer = match admitted {
                    Ok(slot) => {
                        native.get().reserve(client, slot);
                        ("ok", 0, 0)
                    }
                    Err(refusal) => refused(py, refusal),
                };
                Ok(answer.into_pyobject(py)?.into_any().unbind())
            },
        )
    }

    /// Registers `connection_id` of `client`, with the slot its admission reserved (or one
    /// counted over the limit, for a connection registered without a check).
    fn register(&self, connection_id: String, client: &str) {
        let slot = self
            .reserved
            .lock()
            .get_mut(client)
            .and_then(VecDeque::pop_front)
            .map(|(_, slot)| slot);
        let connection = self.guard.open(client, slot);
        // A connection registered again under the same id replaces the old one.
        let replaced = self.connections.lock().insert(connection_id, connection);
        drop(replaced);
    }

    /// Gives back the oldest slot reserved for `client` (admitted, then its handshake failed).
    fn release(&self, client: &str) {
        let mut reserved = self.reserved.lock();
        if let Some(slots) = reserved.get_mut(client) {
            slots.pop_front();
            if slots.is_empty() {
                reserved.remove(client);
            }
        }
    }

    /// Forgets `connection_id` and gives its slot back; whether it was registered.
    fn unregister(&self, connection_id: &str) -> bool {
        let removed = self.connections.lock().remove(connection_id);
        removed.is_some()
    }

    /// Awaitable of `(reason, retry_after, remaining_bytes)` for a message of `size` bytes
    /// on `connection_id` (reason `connection_not_found` when it is not registered).
    fn check_message<'py>(
        &self,
        py: Python<'py>,
        connection_id: &str,
        size: i64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let size = usize::try_from(size).unwrap_or(0);
        let Some((client, key)) = self
            .connections
            .lock()
            .get(connection_id)
            .map(|c| (c.client().to_owned(), c.key().to_owned()))
        else {
            let answer = ("connection_not_found", 0, 0).into_pyobject(py)?;
            return ready(py, answer.into_any().unbind());
        };
        let guard = self.guard.clone();
        let future = async move { guard.check_message(&client, &key, size).await };
        awaitable(py, self.at_once, future, message_answer)
    }

    /// Slots held by `client`: its registered connections and its admitted, not yet
    /// registered ones.
    fn slots_held(&self, client: &str) -> u32 {
        self.guard.open_connections(client)
    }
}

impl NativeWebSocket {
    /// Keeps `slot` for `client`'s next `register`, forgetting reservations older than
    /// [`RESERVATION`] (connections admitted and never registered).
    fn reserve(&self, client: String, slot: Option<SlotPermit>) {
        let Some(slot) = slot else { return };
        let now = self.guard.limiter().now();
        let mut reserved = self.reserved.lock();
        reserved.retain(|_, slots| {
            slots.retain(|(at, _)| now.saturating_sub(*at) < RESERVATION);
            !slots.is_empty()
        });
        reserved.entry(client).or_default().push_back((now, slot));
    }
}
