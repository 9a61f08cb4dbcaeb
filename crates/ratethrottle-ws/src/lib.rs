//! WebSocket rate limiting on the [`ratethrottle`] engine: what a client may open, and what
//! each connection may send.
//!
//! - **Connections:** attempts per client per window (a rule), and at most N open at once per
//!   client, each slot given back however the connection ends (closed, failed, task dropped or
//!   panicked): the slot lives in the [`Connection`] value.
//! - **Messages:** a maximum size; messages per window per client and, optionally, per
//!   connection; **bytes** per window per client (the original library counted messages
//!   there). Each is a rule of the limiter, so a Redis store shares them across a fleet.
//! - **Escalation:** a connection over its limits first gets a [`Verdict::Notice`] the
//!   application can send (the connection stays open), then its messages are dropped, then it
//!   is closed with 1008. Violations are forgiven after a quiet spell.
//! - **Close codes:** 1009 for a message over the size cap, 1008 for a policy violation, 1013
//!   ("try again later") for a connection refused for its rate or its count.
//! - **Transports:** [`GuardedSocket`] over axum's `WebSocket` (feature `axum`) or
//!   tokio-tungstenite's stream (feature `tungstenite`); the stream's own frame and message
//!   caps are set from the limits ([`WsGuard::upgrade`], [`WsGuard::websocket_config`]), not
//!   tungstenite's 64 MiB default.
//!
//! ```
//! use ratethrottle::Limiter;
//! use ratethrottle_ws::{Refusal, Verdict, WsGuard, WsLimits};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let limits = WsLimits { messages_per_window: 2, ..WsLimits::default() };
//! let guard = WsGuard::with_limits(Limiter::in_memory(), &limits).unwrap();
//! let mut connection = guard.connect("203.0.113.7").await.unwrap();
//! assert_eq!(connection.judge(5).await, Verdict::Admit);
//! assert_eq!(connection.judge(5).await, Verdict::Admit);
//! assert!(matches!(connection.judge(5).await, Verdict::Notice(Refusal::MessageRate { .. })));
//! assert!(matches!(connection.judge(100_000).await, Verdict::Close(close) if close.code == 1009));
//! # });
//! ```

use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ratethrottle::clock::Nanos;
use ratethrottle::store::{MemoryStore, Store};
use ratethrottle::{Limiter, Rule, RuleHandle, Status, Verdict as RuleVerdict};
use ratethrottle_protect::slots::{SlotPermit, Slots};

mod socket;

pub use socket::{GuardedSocket, Incoming, WsError, WsMessage};

/// Close code 1008: the connection broke a policy (here: it kept sending over its limits).
pub const POLICY_VIOLATION: u16 = 1008;
/// Close code 1009: a message was bigger than the connection accepts.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// Close code 1011: the server failed (here: a limit could not be decided).
pub const INTERNAL_ERROR: u16 = 1011;
/// Close code 1013: try again later (here: too many connections, or opened too often).
pub const TRY_AGAIN_LATER: u16 = 1013;

/// A mistake in the guard's configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A rule the guard was told to use is not in the limiter, or a rule could not be added.
    #[error(transparent)]
    Rule(#[from] ratethrottle::Error),
    /// A maximum message size of 0.
    #[error("the maximum message size must be at least 1 byte")]
    ZeroMessageSize,
    /// A message of the maximum size could never pass the byte rule.
    #[error(
        "max_message_size ({max_message_size} bytes) is above what the byte rule {rule:?} \
         admits at once ({capacity} bytes): such messages could never be sent; lower the size \
         or raise the rule's limit"
    )]
    MessageAboveByteLimit {
        /// The byte rule.
        rule: String,
        /// The most bytes it admits at once.
        capacity: u64,
        /// The configured maximum message size.
        max_message_size: usize,
    },
}

/// Limits in plain numbers, as the original's `WebSocketLimits` (its defaults) plus what it
/// lacked; [`WsLimits::rules`] are the limiter rules enforcing them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsLimits {
    /// New connections per window from one client (60).
    pub connections_per_window: u64,
    /// Messages per window from one client, over all its connections (1000).
    pub messages_per_window: u64,
    /// Messages per window on one connection (none).
    pub messages_per_connection: Option<u64>,
    /// Bytes of messages per window from one client (none).
    pub bytes_per_window: Option<u64>,
    /// Connections one client may hold open at once (10).
    pub max_concurrent_connections: u32,
    /// The largest message, in bytes (65,536).
    pub max_message_size: usize,
    /// The window of the rates (60 s).
    pub window: Duration,
}

impl Default for WsLimits {
    fn default() -> Self {
        WsLimits {
            connections_per_window: 60,
            messages_per_window: 1000,
            messages_per_connection: None,
            bytes_per_window: None,
            max_concurrent_connections: 10,
            max_message_size: 65_536,
            window: Duration::from_secs(60),
        }
    }
}

impl WsLimits {
    /// The rule of connection attempts per client.
    pub const CONNECT_RULE: &'static str = "ws_connections";
    /// The rule of messages per client.
    pub const MESSAGE_RULE: &'static str = "ws_messages";
    /// The rule of messages per connection.
    pub const CONNECTION_MESSAGE_RULE: &'static str = "ws_connection_messages";
    /// The rule of bytes per client.
    pub const BYTE_RULE: &'static str = "ws_bandwidth";

    /// The rules enforcing these limits (sliding_counter, no block after a violation: the
    /// next window decides), named by the constants above.
    pub fn rules(&self) -> Vec<Rule> {
        let rule = |name: &str, limit: u64| {
            Rule::new(name, limit, self.window).block_duration(Duration::ZERO)
        };
        let mut rules = vec![
            rule(Self::CONNECT_RULE, self.connections_per_window),
            rule(Self::MESSAGE_RULE, self.messages_per_window),
        ];
        if let Some(limit) = self.messages_per_connection {
            rules.push(rule(Self::CONNECTION_MESSAGE_RULE, limit));
        }
        if let Some(limit) = self.bytes_per_window {
            rules.push(rule(Self::BYTE_RULE, limit));
        }
        rules
    }
}

/// When a connection over its limits is told, ignored, then closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Escalation {
    /// Refused messages answered with a [`Verdict::Notice`] (1).
    pub notices: u32,
    /// Refused messages then dropped silently (4); the next one closes the connection.
    pub drops: u32,
    /// A connection without a refused message for this long starts over (60 s).
    pub forgive_after: Duration,
}

impl Default for Escalation {
    fn default() -> Self {
        Escalation {
            notices: 1,
            drops: 4,
            forgive_after: Duration::from_secs(60),
        }
    }
}

impl Escalation {
    /// Staged escalation with `notices` notices and `drops` dropped messages before a close.
    pub fn new(notices: u32, drops: u32, forgive_after: Duration) -> Self {
        Escalation {
            notices,
            drops,
            forgive_after,
        }
    }
}

/// Why a connection was refused.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Refused {
    /// The client holds its maximum of open connections.
    TooManyConnections {
        /// Connections it holds.
        held: u32,
        /// The maximum.
        max: u32,
    },
    /// The client opened too many connections in the window.
    ConnectionRate {
        /// The decision.
        status: Status,
    },
    /// The client is blacklisted.
    Blacklisted,
    /// The limit could not be decided (unknown rule, failing store with `fail_closed`).
    Internal(String),
}

impl Refused {
    /// The close code for a connection accepted and then refused: 1008 for a blacklisted
    /// client, 1011 for a failure, 1013 (try again later) otherwise.
    pub fn close_code(&self) -> u16 {
        match self {
            Refused::Blacklisted => POLICY_VIOLATION,
            Refused::Internal(_) => INTERNAL_ERROR,
            _ => TRY_AGAIN_LATER,
        }
    }

    /// Seconds until trying again may succeed (rate refusals).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Refused::ConnectionRate { status } => status.retry_after,
            _ => None,
        }
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::TooManyConnections { held, max } => {
                write!(f, "too many connections ({held} open, at most {max})")
            }
            Refused::ConnectionRate { .. } => f.write_str("too many new connections"),
            Refused::Blacklisted => f.write_str("client blacklisted"),
            Refused::Internal(error) => write!(f, "limit not decided: {error}"),
        }
    }
}

/// Which message limit refused a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageScope {
    /// The client's messages over all its connections.
    Client,
    /// This connection's messages.
    Connection,
}

/// Why a message was refused.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Refusal {
    /// The message is over the maximum size.
    TooLarge {
        /// Its size in bytes.
        size: usize,
        /// The maximum.
        max: usize,
    },
    /// Too many messages in the window.
    MessageRate {
        /// The limit that refused it.
        scope: MessageScope,
        /// The decision.
        status: Status,
    },
    /// Too many bytes in the window.
    Bandwidth {
        /// The message's size.
        size: usize,
        /// Bytes left in the window.
        remaining: u64,
        /// The decision (none when the message can never fit the byte rule).
        status: Option<Status>,
    },
    /// The client is blacklisted.
    Blacklisted,
    /// The limit could not be decided (unknown rule, failing store with `fail_closed`).
    Internal(String),
}

impl Refusal {
    /// How long until the refused limit may admit again (rate and byte refusals).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Refusal::MessageRate { status, .. } => status.retry_after,
            Refusal::Bandwidth {
                status: Some(status),
                ..
            } => status.retry_after,
            _ => None,
        }
    }

    /// The original library's reason: `message_too_large`, `rate_limit_exceeded`,
    /// `bandwidth_exceeded` or `internal_error` (a blacklisted client counts as rate limited).
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::TooLarge { .. } => "message_too_large",
            Refusal::MessageRate { .. } | Refusal::Blacklisted => "rate_limit_exceeded",
            Refusal::Bandwidth { .. } => "bandwidth_exceeded",
            Refusal::Internal(_) => "internal_error",
        }
    }

    /// A JSON notice for the client: `{"error":"rate_limit_exceeded","retry_after":3}`
    /// (whole seconds, rounded up; absent when unknown).
    pub fn notice_json(&self) -> String {
        match self.retry_after() {
            Some(after) => format!(
                r#"{{"error":"{}","retry_after":{}}}"#,
                self.reason(),
                after.as_nanos().div_ceil(1_000_000_000)
            ),
            None => format!(r#"{{"error":"{}"}}"#, self.reason()),
        }
    }
}

/// How a connection ends: its close code and reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseWith {
    /// The close code (1008, 1009, 1011 or 1013).
    pub code: u16,
    /// A short reason for the close frame.
    pub reason: &'static str,
}

/// What to do with a message, escalation included.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Process it.
    Admit,
    /// Refused: do not process it, tell the client (the connection stays open).
    Notice(Refusal),
    /// Refused: drop it without a word.
    Drop(Refusal),
    /// Close the connection with this code.
    Close(CloseWith),
}

/// The guard: limits of connections and messages over a limiter. Cheap to clone (shared).
pub struct WsGuard<S: Store = MemoryStore> {
    shared: Arc<Shared<S>>,
}

struct Shared<S: Store> {
    limiter: Limiter<S>,
    connect: Option<RuleHandle<S>>,
    client_messages: Option<RuleHandle<S>>,
    connection_messages: Option<RuleHandle<S>>,
    bytes: Option<RuleHandle<S>>,
    slots: Option<Slots>,
    max_message_size: usize,
    escalation: Escalation,
    /// Makes connection keys unique across processes sharing a store.
    process: u64,
    next_connection: AtomicU64,
}

impl<S: Store> Clone for WsGuard<S> {
    fn clone(&self) -> Self {
        WsGuard {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: Store> fmt::Debug for WsGuard<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |rule: &Option<RuleHandle<S>>| rule.as_ref().map(RuleHandle::name);
        let s = &self.shared;
        f.debug_struct("WsGuard")
            .field("connect", &name(&s.connect))
            .field("client_messages", &name(&s.client_messages))
            .field("connection_messages", &name(&s.connection_messages))
            .field("bytes", &name(&s.bytes))
            .field("max_concurrent", &s.slots.as_ref().map(Slots::max))
            .field("max_message_size", &s.max_message_size)
            .field("escalation", &s.escalation)
            .finish()
    }
}

/// Builds a [`WsGuard`]: which rules limit what.
#[derive(Debug)]
pub struct WsGuardBuilder<S: Store> {
    limiter: Limiter<S>,
    connect: Option<String>,
    client_messages: Option<String>,
    connection_messages: Option<String>,
    bytes: Option<String>,
    max_concurrent: Option<u32>,
    max_message_size: usize,
    escalation: Escalation,
}

impl<S: Store> WsGuardBuilder<S> {
    /// The rule of connection attempts per client.
    pub fn connect_rule(mut self, rule: &str) -> Self {
        self.connect = Some(rule.to_owned());
        self
    }

    /// The rule of messages per client (over all its connections).
    pub fn message_rule(mut self, rule: &str) -> Self {
        self.client_messages = Some(rule.to_owned());
        self
    }

    /// The rule of messages per connection.
    pub fn connection_message_rule(mut self, rule: &str) -> Self {
        self.connection_messages = Some(rule.to_owned());
        self
    }

    /// The rule of bytes per client: each message costs its size.
    pub fn byte_rule(mut self, rule: &str) -> Self {
        self.bytes = Some(rule.to_owned());
        self
    }

    /// At most `max` open connections per client (in this process).
    pub fn max_concurrent(mut self, max: u32) -> Self {
        self.max_concurrent = Some(max);
        self
    }

    /// The largest message accepted, in bytes (default 65,536).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// How a connection over its limits is told, ignored, then closed.
    pub fn escalation(mut self, escalation: Escalation) -> Self {
        self.escalation = escalation;
        self
    }

    /// Every limit of `limits`, under the rule names of [`WsLimits`] (which must be in the
    /// limiter: [`WsLimits::rules`]).
    pub fn limits(mut self, limits: &WsLimits) -> Self {
        self = self
            .connect_rule(WsLimits::CONNECT_RULE)
            .message_rule(WsLimits::MESSAGE_RULE)
            .max_concurrent(limits.max_concurrent_connections)
            .max_message_size(limits.max_message_size);
        if limits.messages_per_connection.is_some() {
            self = self.connection_message_rule(WsLimits::CONNECTION_MESSAGE_RULE);
        }
        if limits.bytes_per_window.is_some() {
            self = self.byte_rule(WsLimits::BYTE_RULE);
        }
        self
    }

    /// The guard; an error names a rule missing from the limiter or a size that cannot work.
    pub fn build(self) -> Result<WsGuard<S>, Error> {
        if self.max_message_size == 0 {
            return Err(Error::ZeroMessageSize);
        }
        let handle = |rule: &Option<String>| {
            rule.as_deref()
                .map(|name| self.limiter.rule_handle(name))
                .transpose()
        };
        let bytes = handle(&self.bytes)?;
        if let Some(rule) = bytes.as_ref().and_then(|h| self.limiter.rule(h.name()))
            && (self.max_message_size as u64) > rule.capacity()
        {
            return Err(Error::MessageAboveByteLimit {
                capacity: rule.capacity(),
                rule: rule.name,
                max_message_size: self.max_message_size,
            });
        }
        let process = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        Ok(WsGuard {
            shared: Arc::new(Shared {
                connect: handle(&self.connect)?,
                client_messages: handle(&self.client_messages)?,
                connection_messages: handle(&self.connection_messages)?,
                bytes,
                slots: self.max_concurrent.map(Slots::new),
                max_message_size: self.max_message_size,
                escalation: self.escalation,
                process,
                next_connection: AtomicU64::new(0),
                limiter: self.limiter,
            }),
        })
    }
}

impl<S: Store> WsGuard<S> {
    /// A guard over `limiter` with no limits yet: name its rules on the builder.
    pub fn builder(limiter: Limiter<S>) -> WsGuardBuilder<S> {
        WsGuardBuilder {
            limiter,
            connect: None,
            client_messages: None,
            connection_messages: None,
            bytes: None,
            max_concurrent: None,
            max_message_size: 65_536,
            escalation: Escalation::default(),
        }
    }

    /// A guard enforcing `limits`, adding their rules ([`WsLimits::rules`]) to `limiter`.
    pub fn with_limits(limiter: Limiter<S>, limits: &WsLimits) -> Result<Self, Error> {
        for rule in limits.rules() {
            limiter.add_rule(rule)?;
        }
        Self::builder(limiter).limits(limits).build()
    }

    /// The limiter deciding.
    pub fn limiter(&self) -> &Limiter<S> {
        &self.shared.limiter
    }

    /// The largest message accepted, in bytes.
    pub fn max_message_size(&self) -> usize {
        self.shared.max_message_size
    }

    /// The most connections one client may hold open (none: no bound).
    pub fn max_concurrent(&self) -> Option<u32> {
        self.shared.slots.as_ref().map(Slots::max)
    }

    /// Connections `client` holds open.
    pub fn open_connections(&self, client: &str) -> u32 {
        self.shared.slots.as_ref().map_or(0, |s| s.held(client))
    }

    /// Connections all clients hold open (0 when the concurrency is not bounded).
    pub fn total_open(&self) -> u64 {
        self.shared.slots.as_ref().map_or(0, Slots::total)
    }

    /// A new connection of `client`: a slot under its concurrency limit, then one attempt
    /// under its connection rule. The slot is given back when the [`Connection`] is dropped.
    pub async fn connect(&self, client: &str) -> Result<Connection<S>, Refused> {
        let slot = self.admit(client).await?;
        Ok(self.open(client, slot))
    }

    /// The admission part of [`connect`](Self::connect): the slot, or why not. Hold it until
    /// the connection is [`open`](Self::open)ed (an accepted handshake), or drop it.
    pub async fn admit(&self, client: &str) -> Result<Option<SlotPermit>, Refused> {
        let slot = match &self.shared.slots {
            Some(slots) => Some(slots.acquire(client).ok_or(Refused::TooManyConnections {
                held: slots.held(client),
                max: slots.max(),
            })?),
            None => None,
        };
        if let Some(rule) = &self.shared.connect {
            let status = rule
                .check(client)
                .await
                .map_err(|error| Refused::Internal(error.to_string()))?;
            match status.verdict {
                RuleVerdict::Blacklisted => return Err(Refused::Blacklisted),
                _ if !status.allowed => return Err(Refused::ConnectionRate { status }),
                _ => {}
            }
        }
        Ok(slot)
    }

    /// A connection of `client` holding `slot` (from [`admit`](Self::admit); `None` takes a
    /// slot even over the limit, so that it is counted).
    pub fn open(&self, client: &str, slot: Option<SlotPermit>) -> Connection<S> {
        let slot = slot.or_else(|| self.shared.slots.as_ref().map(|s| s.acquire_over(client)));
        let number = self.shared.next_connection.fetch_add(1, Ordering::Relaxed);
        Connection {
            guard: self.clone(),
            client: Arc::from(client),
            key: format!("{:016x}-{number}", self.shared.process).into_boxed_str(),
            _slot: slot,
            strikes: 0,
            last_strike: Nanos::ZERO,
        }
    }

    /// Whether a message of `size` bytes from `client` on the connection `connection` may be
    /// processed: its size, then the connection's and the client's message rules, then the
    /// byte rule (a message refused by the byte rule has been counted as a message).
    pub async fn check_message(
        &self,
        client: &str,
        connection: &str,
        size: usize,
    ) -> Result<(), Refusal> {
        let s = &self.shared;
        if size > s.max_message_size {
            return Err(Refusal::TooLarge {
                size,
                max: s.max_message_size,
            });
        }
        for (rule, key, scope) in [
            (&s.connection_messages, connection, MessageScope::Connection),
            (&s.client_messages, client, MessageScope::Client),
        ] {
            if let Some(rule) = rule {
                let status = decided(rule.check(key).await)?;
                if !status.allowed {
                    return Err(Refusal::MessageRate { scope, status });
                }
            }
        }
        let Some(rule) = s.bytes.as_ref().filter(|_| size > 0) else {
            return Ok(());
        };
        match rule.check_n(client, size as u64).await {
            Ok(status) if status.allowed => Ok(()),
            Ok(status) => Err(Refusal::Bandwidth {
                size,
                remaining: status.remaining,
                status: Some(status),
            }),
            // Bigger than the rule admits at once (its limit was lowered under the guard).
            Err(ratethrottle::Error::InvalidCost { .. }) => Err(Refusal::Bandwidth {
                size,
                remaining: 0,
                status: None,
            }),
            Err(error) => Err(Refusal::Internal(error.to_string())),
        }
    }
}

/// A check's status, or the refusal for a blacklisted client or a failure.
fn decided(result: ratethrottle::Result<Status>) -> Result<Status, Refusal> {
    match result {
        Ok(status) if status.verdict == RuleVerdict::Blacklisted => Err(Refusal::Blacklisted),
        Ok(status) => Ok(status),
        Err(error) => Err(Refusal::Internal(error.to_string())),
    }
}

/// One open connection: its client, its slot (given back when dropped) and its escalation.
pub struct Connection<S: Store = MemoryStore> {
    guard: WsGuard<S>,
    client: Arc<str>,
    key: Box<str>,
    _slot: Option<SlotPermit>,
    strikes: u32,
    last_strike: Nanos,
}

impl<S: Store> fmt::Debug for Connection<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("client", &self.client)
            .field("key", &self.key)
            .field("strikes", &self.strikes)
            .finish()
    }
}

impl<S: Store> Connection<S> {
    /// The client it counts for.
    pub fn client(&self) -> &str {
        &self.client
    }

    /// Its key under the per-connection message rule (unique across processes).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The guard.
    pub fn guard(&self) -> &WsGuard<S> {
        &self.guard
    }

    /// Whether a message of `size` bytes may be processed ([`WsGuard::check_message`]),
    /// without escalation.
    pub async fn check(&self, size: usize) -> Result<(), Refusal> {
        self.guard
            .check_message(&self.client, &self.key, size)
            .await
    }

    /// What to do with a message of `size` bytes: [`check`](Self::check), then the
    /// escalation for a refusal. A message over the size cap closes with 1009 at once; a
    /// failure to decide closes with 1011.
    pub async fn judge(&mut self, size: usize) -> Verdict {
        let refusal = match self.check(size).await {
            Ok(()) => return Verdict::Admit,
            Err(refusal) => refusal,
        };
        match refusal {
            Refusal::TooLarge { .. } => {
                return Verdict::Close(CloseWith {
                    code: MESSAGE_TOO_BIG,
                    reason: "message too big",
                });
            }
            Refusal::Internal(error) => {
                tracing::error!(client = %self.client, "closing a WebSocket: {error}");
                return Verdict::Close(CloseWith {
                    code: INTERNAL_ERROR,
                    reason: "rate limit unavailable",
                });
            }
            Refusal::Blacklisted => {
                return Verdict::Close(CloseWith {
                    code: POLICY_VIOLATION,
                    reason: "blacklisted",
                });
            }
            _ => {}
        }
        let now = self.guard.limiter().now();
        let escalation = self.guard.shared.escalation;
        if self.strikes > 0 && now.saturating_sub(self.last_strike) >= escalation.forgive_after {
            self.strikes = 0;
        }
        self.strikes = self.strikes.saturating_add(1);
        self.last_strike = now;
        if self.strikes <= escalation.notices {
            Verdict::Notice(refusal)
        } else if self.strikes <= escalation.notices.saturating_add(escalation.drops) {
            Verdict::Drop(refusal)
        } else {
            Verdict::Close(CloseWith {
                code: POLICY_VIOLATION,
                reason: "rate limit exceeded",
            })
        }
    }
}

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
