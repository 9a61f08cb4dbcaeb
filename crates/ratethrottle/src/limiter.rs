//! The [`Limiter`]: rules by name, lists, blocks, violations, callbacks and metrics over a
//! [`Store`].

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::Poll;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::clock::{Clock, ClockSource, Nanos, SystemClock};
use crate::error::{Error, Result};
use crate::identifier::normalize_identifier;
use crate::metrics::{Count, Counters, Metrics, RuleMetrics, Violation, ViolationLog};
use crate::rule::{Rule, Scope};
use crate::status::{Status, Verdict};
use crate::store::{ListEntry, ListKind, MemoryStore, Outcome, Query, RuleSpec, Store, StoreError};

/// How many violations a limiter remembers by default.
pub const DEFAULT_VIOLATION_HISTORY: usize = 1_000;

/// How many violations [`Metrics::recent_violations`] shows, as in the original library.
const RECENT_VIOLATIONS: usize = 10;

mod table;

use table::{RuleTable, SharedRules};

type Callback = Arc<dyn Fn(&Violation) + Send + Sync>;

/// A rule as the limiter holds it.
#[derive(Debug)]
struct RuleEntry {
    rule: Rule,
    spec: Arc<RuleSpec>,
    /// Shared with the entries that replace this one, so counts survive a rule change.
    counters: Arc<Counters>,
    /// Set once the entry has left the rule table (replaced or removed): a [`RuleHandle`]
    /// holding it then looks its rule up by name.
    retired: AtomicBool,
}

impl RuleEntry {
    fn new(rule: Rule, counters: Arc<Counters>) -> Arc<Self> {
        Arc::new(RuleEntry {
            spec: Arc::new(RuleSpec::new(&rule)),
            counters,
            rule,
            retired: AtomicBool::new(false),
        })
    }

    fn name(&self) -> &'static str {
        self.spec.name
    }

    /// The store query for `ask` (its limit and cost checked against the rule). Inlined into
    /// every check; what only a per-call limit or an error needs is out of line.
    #[inline(always)]
    fn query<'a>(&'a self, id: &'a str, ask: Ask, now: Nanos) -> Result<Query<'a>> {
        let mut query = Query::new(&self.spec, id, ask.cost, now);
        query.consume = ask.consume;
        if let Some(limit) = ask.limit {
            query.params = self.params_at(limit)?;
        }
        let capacity = query.params.capacity;
        if ask.refund {
            // Giving back more than a key can hold gives a fresh key: the same as its capacity.
            query.cost = ask.cost.min(capacity);
            query.refund = true;
            return Ok(query);
        }
        if ask.cost == 0 || ask.cost > capacity {
            return Err(self.invalid_cost(ask.cost, capacity));
        }
        Ok(query)
    }

    /// The rule's parameters at a per-call `limit`, or why it cannot be decided at it.
    #[inline(never)]
    fn params_at(&self, limit: u64) -> Result<crate::strategy::Params> {
        match self.rule.check_limit(limit) {
            Ok(()) => Ok(self.spec.params.with_limit(limit)),
            Err(reason) => Err(Error::InvalidLimit {
                rule: self.rule.name.clone(),
                limit,
                reason,
            }),
        }
    }

    #[cold]
    #[inline(never)]
    fn invalid_cost(&self, cost: u64, capacity: u64) -> Error {
        Error::InvalidCost {
            rule: self.rule.name.clone(),
            cost,
            capacity,
        }
    }

    /// The limit `ask` is decided at: its own, or the rule's.
    #[inline]
    fn limit_of(&self, ask: Ask) -> u64 {
        ask.limit.unwrap_or(self.rule.limit)
    }
}

/// What one check asks for: its cost, whether it consumes (a check) or only looks (a peek), and
/// a per-call limit in place of the rule's.
#[derive(Clone, Copy, Debug)]
struct Ask {
    cost: u64,
    consume: bool,
    limit: Option<u64>,
    refund: bool,
}

impl Ask {
    const CHECK: Ask = Ask::check(1);
    const PEEK: Ask = Ask {
        consume: false,
        ..Ask::CHECK
    };

    const fn check(cost: u64) -> Ask {
        Ask {
            cost,
            consume: true,
            limit: None,
            refund: false,
        }
    }

    /// Gives back `amount` units (a peek when it is 0).
    const fn refund(amount: u64) -> Ask {
        if amount == 0 {
            return Ask::PEEK;
        }
        Ask {
            cost: amount,
            consume: false,
            limit: None,
            refund: true,
        }
    }

    const fn at_limit(self, limit: u64) -> Ask {
        Ask {
            limit: Some(limit),
            ..self
        }
    }
}

/// Enforces named [`Rule`]s for identifiers, over a [`Store`].
///
/// Cheap to clone; clones share everything (rules, lists, counters, callbacks).
///
/// ```
/// use ratethrottle::{Limiter, Rule};
/// use ratethrottle::clock::ManualClock;
/// use ratethrottle::store::MemoryStore;
/// use std::time::Duration;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let clock = ManualClock::new();
/// let limiter = Limiter::builder().store(MemoryStore::new()).clock(clock.clone()).build();
/// limiter.add_rule(Rule::new("login", 2, Duration::from_secs(60)).block_duration(Duration::ZERO))?;
///
/// assert!(limiter.check("10.0.0.1", "login").await?.allowed);
/// assert!(limiter.check("10.0.0.1", "login").await?.allowed);
/// let denied = limiter.check("10.0.0.1", "login").await?;
/// assert!(!denied.allowed);
/// clock.advance(denied.retry_after.unwrap());
/// assert!(limiter.check("10.0.0.1", "login").await?.allowed);
/// # Ok::<(), ratethrottle::Error>(())
/// # }).unwrap();
/// ```
pub struct Limiter<S: Store = MemoryStore> {
    shared: Arc<Shared<S>>,
}

struct Shared<S> {
    store: S,
    clock: ClockSource,
    rules: SharedRules,
    /// Serializes rule changes (readers never wait: they load the table).
    rule_writes: Mutex<()>,
    /// Counts of checks no rule owns: list decisions for unknown rules, and removed rules.
    unowned: Counters,
    violations: ViolationLog,
    callbacks: RwLock<Vec<Callback>>,
    callback_panics: AtomicU64,
}

impl<S: Store> Clone for Limiter<S> {
    fn clone(&self) -> Self {
        Limiter {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: Store> fmt::Debug for Limiter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("store", &self.shared.store.kind())
            .field("clock", &self.shared.clock)
            .field("rules", &self.rules().len())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Limiter`]: `Limiter::builder().store(..).clock(..).build()`.
#[derive(Debug)]
#[must_use]
pub struct LimiterBuilder<S: Store> {
    store: S,
    clock: ClockSource,
    violation_history: usize,
}

impl<S: Store> LimiterBuilder<S> {
    /// Uses `store` for state (default: a new [`MemoryStore`]).
    pub fn store<T: Store>(self, store: T) -> LimiterBuilder<T> {
        LimiterBuilder {
            store,
            clock: self.clock,
            violation_history: self.violation_history,
        }
    }

    /// Uses `clock` for time (default: [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = ClockSource::new(clock);
        self
    }

    /// Remembers the last `capacity` violations (default [`DEFAULT_VIOLATION_HISTORY`]).
    pub fn violation_history(mut self, capacity: usize) -> Self {
        self.violation_history = capacity;
        self
    }

    /// The limiter, with no rules yet.
    pub fn build(self) -> Limiter<S> {
        if let ClockSource::System = self.clock {
            SystemClock::warm_up();
        }
        Limiter {
            shared: Arc::new(Shared {
                store: self.store,
                clock: self.clock,
                rules: Arc::new(ArcSwap::from_pointee(RuleTable::default())),
                rule_writes: Mutex::new(()),
                unowned: Counters::default(),
                violations: ViolationLog::new(self.violation_history),
                callbacks: RwLock::new(Vec::new()),
                callback_panics: AtomicU64::new(0),
            }),
        }
    }
}

impl Limiter<MemoryStore> {
    /// A builder with the defaults: a new [`MemoryStore`] and the [`SystemClock`].
    pub fn builder() -> LimiterBuilder<MemoryStore> {
        LimiterBuilder {
            store: MemoryStore::new(),
            clock: ClockSource::System,
            violation_history: DEFAULT_VIOLATION_HISTORY,
        }
    }

    /// A limiter over a new [`MemoryStore`] and the [`SystemClock`].
    pub fn in_memory() -> Self {
        Self::builder().build()
    }
}

/// # Rules
impl<S: Store> Limiter<S> {
    /// Adds `rule`, replacing any rule of the same name. An identical replacement keeps the
    /// existing counters and state; a changed one starts the rule's keys fresh.
    pub fn add_rule(&self, rule: Rule) -> Result<()> {
        rule.validate()?;
        self.update_rules(|table| {
            let entry = entry_for(table.get(&rule.name), rule);
            table.insert(entry);
        });
        Ok(())
    }

    /// Replaces the whole rule set at once (all rules are validated first; on error nothing
    /// changes). Unchanged rules keep their state and counters. Used for configuration reloads.
    pub fn set_rules(&self, rules: impl IntoIterator<Item = Rule>) -> Result<()> {
        let rules: Vec<Rule> = rules.into_iter().collect();
        for rule in &rules {
            rule.validate()?;
        }
        self.update_rules(|table| {
            let mut next = RuleTable::default();
            for rule in rules {
                next.insert(entry_for(table.get(&rule.name), rule));
            }
            for old in table.iter() {
                if next.get(old.name()).is_none() {
                    self.shared.unowned.absorb(&old.counters);
                }
            }
            *table = next;
        });
        Ok(())
    }

    /// Removes the rule named `name`; `true` if it existed. Its counts stay in the totals.
    pub fn remove_rule(&self, name: &str) -> bool {
        let mut removed = false;
        self.update_rules(|table| {
            if let Some(old) = table.remove(name) {
                self.shared.unowned.absorb(&old.counters);
                removed = true;
            }
        });
        removed
    }

    /// The rule named `name`.
    pub fn rule(&self, name: &str) -> Option<Rule> {
        self.shared.rules.load().get(name).map(|e| e.rule.clone())
    }

    /// The scope of the rule named `name`, without copying the rule (cheap enough for every
    /// request: adapters use it to pick the identifier).
    pub fn scope_of(&self, name: &str) -> Option<Scope> {
        self.shared.rules.load().get(name).map(|e| e.rule.scope)
    }

    /// All rules, in the order they were first added (a replaced rule keeps its place).
    pub fn rules_as_added(&self) -> Vec<Rule> {
        self.shared
            .rules
            .load()
            .iter()
            .map(|e| e.rule.clone())
            .collect()
    }

    /// All rules, sorted by name.
    pub fn rules(&self) -> Vec<Rule> {
        let mut rules: Vec<Rule> = self
            .shared
            .rules
            .load()
            .iter()
            .map(|e| e.rule.clone())
            .collect();
        rules.sort_by(|a, b| a.name.cmp(&b.name));
        rules
    }

    fn update_rules(&self, change: impl FnOnce(&mut RuleTable)) {
        let _writer = self
            .shared
            .rule_writes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let old = self.shared.rules.load_full();
        let mut table = RuleTable::clone(&old);
        change(&mut table);
        let table = Arc::new(table);
        self.shared.rules.store(Arc::clone(&table));
        for entry in old.iter() {
            if !table.iter().any(|kept| Arc::ptr_eq(kept, entry)) {
                entry.retired.store(true, Ordering::Release);
            }
        }
    }

    /// A handle on the rule named `name`, for checks without a name lookup
    /// ([`RuleHandle::check`]). It follows the rule through replacements (`add_rule`,
    /// `set_rules`); once the rule is removed, its checks fail with [`Error::UnknownRule`].
    pub fn rule_handle(&self, name: &str) -> Result<RuleHandle<S>> {
        let rules = self.shared.rules.load();
        let entry = rules.get(name).ok_or_else(|| unknown_rule(&rules, name))?;
        Ok(RuleHandle {
            limiter: self.clone(),
            entry: Arc::clone(entry),
        })
    }
}

/// The entry for `rule`, reusing `old`'s state if the rule is unchanged and its counters if the
/// name is the same.
fn entry_for(old: Option<&Arc<RuleEntry>>, rule: Rule) -> Arc<RuleEntry> {
    match old {
        Some(old) if old.rule == rule => Arc::clone(old),
        Some(old) => RuleEntry::new(rule, Arc::clone(&old.counters)),
        None => RuleEntry::new(rule, Arc::default()),
    }
}

/// The rule a check names: by name, or through a [`RuleHandle`]'s entry.
#[derive(Clone, Copy)]
enum Target<'a> {
    Name(&'a str),
    Entry(&'a RuleEntry),
}

impl<'a> Target<'a> {
    /// The entry to apply when it is known and current; else the name to look up.
    #[inline(always)]
    fn current(self) -> std::result::Result<&'a RuleEntry, &'a str> {
        match self {
            Target::Entry(entry) if !entry.retired.load(Ordering::Acquire) => Ok(entry),
            Target::Entry(entry) => Err(entry.name()),
            Target::Name(name) => Err(name),
        }
    }
}

/// The future of one decision. On its first poll it decides at once when the store can
/// ([`Store::check_at_once`]), with no state machine in between; otherwise it awaits the store
/// (boxed: such a store does I/O that dwarfs one allocation). Written out, not `async`, so the
/// hot path inlines into the caller's poll.
struct Decide<'a, S: Store> {
    limiter: &'a Limiter<S>,
    identifier: &'a str,
    rule: Target<'a>,
    ask: Ask,
    waiting: Waiting<'a>,
}

enum Waiting<'a> {
    NotYet,
    On(Pin<Box<dyn Future<Output = Result<Status>> + Send + 'a>>),
    Done,
}

impl<S: Store> Future for Decide<'_, S> {
    type Output = Result<Status>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, context: &mut std::task::Context<'_>) -> Poll<Result<Status>> {
        let this = self.get_mut();
        if let Waiting::NotYet = this.waiting {
            let (limiter, id, rule) = (this.limiter, this.identifier, this.rule);
            if let Some(result) = limiter.decide_at_once(id, rule, this.ask) {
                this.waiting = Waiting::Done;
                return Poll::Ready(result);
            }
        }
        this.poll_waiting(context)
    }
}

impl<S: Store> Decide<'_, S> {
    /// The path for a store that must be awaited.
    #[inline(never)]
    fn poll_waiting(&mut self, context: &mut std::task::Context<'_>) -> Poll<Result<Status>> {
        if let Waiting::NotYet = self.waiting {
            let (limiter, id, rule) = (self.limiter, self.identifier, self.rule);
            let future = limiter.decide_waiting(id, rule, self.ask);
            self.waiting = Waiting::On(Box::pin(future));
        }
        // Like an `async fn`: polling again after completion is a bug in the caller, and must
        // not decide (and count) the request a second time.
        let Waiting::On(future) = &mut self.waiting else {
            panic!("a ratethrottle check future was polled after it completed");
        };
        let poll = future.as_mut().poll(context);
        if poll.is_ready() {
            self.waiting = Waiting::Done;
        }
        poll
    }
}

/// A rule of a [`Limiter`], resolved once by name ([`Limiter::rule_handle`]): its checks skip
/// the name lookup. It follows its rule through replacements (`add_rule`, `set_rules`; a
/// reload that leaves the rule as it was keeps the handle on its fast path, one that changes it
/// makes the handle look the rule up by name, as fast as a check by name, until a new handle is
/// made); after the rule is removed, its checks fail with [`Error::UnknownRule`] (until a rule
/// of that name is added again). Cheap to clone.
///
/// ```
/// use ratethrottle::{Limiter, Rule};
/// use std::time::Duration;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let limiter = Limiter::in_memory();
/// limiter.add_rule(Rule::new("api", 2, Duration::from_secs(60)))?;
/// let api = limiter.rule_handle("api")?;
/// assert_eq!(api.check("10.0.0.1").await?.remaining, 1);
/// limiter.set_rules([Rule::new("api", 5, Duration::from_secs(60))])?; // a reload
/// assert_eq!(api.check("10.0.0.1").await?.limit, 5);
/// limiter.remove_rule("api");
/// assert!(api.check("10.0.0.1").await.is_err());
/// # Ok::<(), ratethrottle::Error>(())
/// # }).unwrap();
/// ```
pub struct RuleHandle<S: Store = MemoryStore> {
    limiter: Limiter<S>,
    /// The entry when the handle was made; once retired, the rule is looked up by name.
    entry: Arc<RuleEntry>,
}

impl<S: Store> Clone for RuleHandle<S> {
    fn clone(&self) -> Self {
        RuleHandle {
            limiter: self.limiter.clone(),
            entry: Arc::clone(&self.entry),
        }
    }
}

impl<S: Store> fmt::Debug for RuleHandle<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleHandle")
            .field("rule", &self.name())
            .finish_non_exhaustive()
    }
}

impl<S: Store> RuleHandle<S> {
    /// The rule's name.
    pub fn name(&self) -> &'static str {
        self.entry.name()
    }

    /// The limiter the rule belongs to.
    pub fn limiter(&self) -> &Limiter<S> {
        &self.limiter
    }

    /// [`Limiter::check`] for this rule.
    pub fn check<'a>(
        &'a self,
        identifier: &'a str,
    ) -> impl Future<Output = Result<Status>> + Send + 'a {
        self.limiter
            .decide(identifier, Target::Entry(&self.entry), Ask::CHECK)
    }

    /// [`Limiter::check_n`] for this rule.
    pub fn check_n<'a>(
        &'a self,
        identifier: &'a str,
        cost: u64,
    ) -> impl Future<Output = Result<Status>> + Send + 'a {
        self.limiter
            .decide(identifier, Target::Entry(&self.entry), Ask::check(cost))
    }

    /// [`Limiter::refund`] for this rule.
    pub fn refund<'a>(
        &'a self,
        identifier: &'a str,
        amount: u64,
    ) -> impl Future<Output = Result<Status>> + Send + 'a {
        self.limiter
            .decide(identifier, Target::Entry(&self.entry), Ask::refund(amount))
    }

    /// [`Limiter::refund`] answered without a future, when the store can (see
    /// [`Limiter::check_now`]).
    #[inline]
    pub fn refund_now(&self, identifier: &str, amount: u64) -> Option<Result<Status>> {
        self.limiter
            .decide_at_once(identifier, Target::Entry(&self.entry), Ask::refund(amount))
    }

    /// [`Limiter::check_now`] for this rule.
    #[inline]
    pub fn check_now(&self, identifier: &str, cost: u64) -> Option<Result<Status>> {
        self.limiter
            .decide_at_once(identifier, Target::Entry(&self.entry), Ask::check(cost))
    }

    /// [`Limiter::peek_now`] for this rule.
    #[inline]
    pub fn peek_now(&self, identifier: &str) -> Option<Result<Status>> {
        self.limiter
            .decide_at_once(identifier, Target::Entry(&self.entry), Ask::PEEK)
    }

    /// [`Limiter::check_n_at_limit`] for this rule.
    pub fn check_n_at_limit<'a>(
        &'a self,
        identifier: &'a str,
        cost: u64,
        limit: u64,
    ) -> impl Future<Output = Result<Status>> + Send + 'a {
        let ask = Ask::check(cost).at_limit(limit);
        self.limiter
            .decide(identifier, Target::Entry(&self.entry), ask)
    }

    /// [`Limiter::check_n_at_limit`] answered without a future, when the store can (see
    /// [`Limiter::check_now`]).
    #[inline]
    pub fn check_n_now_at_limit(
        &self,
        identifier: &str,
        cost: u64,
        limit: u64,
    ) -> Option<Result<Status>> {
        let ask = Ask::check(cost).at_limit(limit);
        self.limiter
            .decide_at_once(identifier, Target::Entry(&self.entry), ask)
    }

    /// [`Limiter::peek_at_limit`] for this rule.
    pub fn peek_at_limit<'a>(
        &'a self,
        identifier: &'a str,
        limit: u64,
    ) -> impl Future<Output = Result<Status>> + Send + 'a {
        let ask = Ask::PEEK.at_limit(limit);
        self.limiter
            .decide(identifier, Target::Entry(&self.entry), ask)
    }

    /// [`Limiter::peek_at_limit`] answered without a future, when the store can.
    #[inline]
    pub fn peek_now_at_limit(&self, identifier: &str, limit: u64) -> Option<Result<Status>> {
        let ask = Ask::PEEK.at_limit(limit);
        self.limiter
            .decide_at_once(identifier, Target::Entry(&self.entry), ask)
    }

    /// [`Limiter::peek`] for this rule.
    pub fn peek<'a>(
        &'a self,
        identifier: &'a str,
    ) -> impl Future<Output = Result<Status>> + Send + 'a {
        self.limiter
            .decide(identifier, Target::Entry(&self.entry), Ask::PEEK)
    }

    /// The rule's scope, as it is now.
    pub fn scope(&self) -> Option<Scope> {
        match Target::Entry(&self.entry).current() {
            Ok(entry) => Some(entry.rule.scope),
            Err(name) => self.limiter.scope_of(name),
        }
    }
}

/// # Checks
impl<S: Store> Limiter<S> {
    /// Checks one request of `identifier` against the rule named `rule`, and counts it if
    /// admitted.
    ///
    /// Order: whitelisted → allowed; blacklisted → denied (`blocked`); unknown rule → error;
    /// blocked after a violation → denied; else the rule's strategy decides. A denial by the
    /// strategy records a [`Violation`], runs the callbacks and starts the rule's block.
    pub fn check<'a>(
        &'a self,
        identifier: &'a str,
        rule: &'a str,
    ) -> impl Future<Output = Result<Status>> + Send + 'a {
        self.decide(identifier, Target::Name(rule), Ask::CHECK)
    }

    /// [`Limiter::check`] for a request that costs `cost` units (`1..=` the rule's capacity).
    pub fn check_n<'a>(
        &'a self,
        identifier: &'a str,
        rule: &'a str,
        cost: u64,
    ) -> impl Future<Output = Result<Status>> + Send + 'a {
        self.decide(identifier, Target::Name(rule), Ask::check(cost))
    }

    /// Gives back `amount` units of `rule` to `identifier`: what a check took and turned out
    /// not to need (a GraphQL query charged its requested cost up front, then its actual
    /// cost). The key's state becomes what it would be had `amount` fewer been admitted, never
    /// beyond a fresh key; the status is a peek at it (`remaining` is the allowance now).
    /// Nothing is counted. A refund does not lift a block, and a key serving one is not
    /// refunded; an amount of 0 is a peek.
    ///
    /// ```
    /// use ratethrottle::{Limiter, Rule, Strategy};
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let limiter = Limiter::in_memory();
    /// limiter.add_rule(Rule::new("points", 1000, Duration::from_secs(20)).strategy(Strategy::TokenBucket))?;
    /// assert_eq!(limiter.check_n("client", "points", 300).await?.remaining, 700);
    /// assert_eq!(limiter.refund("client", "points", 250).await?.remaining, 950);
    /// # Ok::<(), ratethrottle::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn refund<'a>(
        &'a self,
        identifier: &'a str,
        rule: &'a str,
        amount: u64,
    ) -> impl Future<Output = Result<Status>> + Send + 'a {
        self.decide(identifier, Target::Name(rule), Ask::refund(amount))
    }

    /// [`Limiter::check_n`] answered without a future, when the store can decide at once (the
    /// memory store always can; a Redis store only for listed identifiers, or while its fault
    /// policy answers): `None` means the check must be awaited instead — also for a rule that
    /// does not exist (the lists may still decide). For services that answer at once when they
    /// can, and for callers outside async code.
    #[inline]
    pub fn check_now(&self, identifier: &str, rule: &str, cost: u64) -> Option<Result<Status>> {
        self.decide_at_once(identifier, Target::Name(rule), Ask::check(cost))
    }

    /// [`Limiter::peek`] answered without a future, when the store can (see
    /// [`Limiter::check_now`]).
    #[inline]
    pub fn peek_now(&self, identifier: &str, rule: &str) -> Option<Result<Status>> {
        self.decide_at_once(identifier, Target::Name(rule), Ask::PEEK)
    }

    /// [`Limiter::check`] decided at `limit` instead of the rule's limit, for a limit computed
    /// per client (the adaptive limiter's). The same key, state and strategy code as every
    /// check of the rule: what was consumed at one limit counts at the next, and for a given
    /// `limit` the store admits no more than a rule of that limit would, across threads and
    /// processes. A burst keeps its ratio to the limit
    /// ([`Params::with_limit`](crate::strategy::Params::with_limit)); the status reports
    /// `limit`. A limit of 0, or beyond what the strategy can enforce, is an
    /// [`Error::InvalidLimit`].
    ///
    /// ```
    /// use ratethrottle::{Limiter, Rule};
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let limiter = Limiter::in_memory();
    /// limiter.add_rule(Rule::new("adaptive", 100, Duration::from_secs(60)))?;
    /// let status = limiter.check_at_limit("10.0.0.1", "adaptive", 2).await?;
    /// assert_eq!((status.limit, status.remaining), (2, 1));
    /// assert!(limiter.check_at_limit("10.0.0.1", "adaptive", 2).await?.allowed);
    /// assert!(!limiter.check_at_limit("10.0.0.1", "adaptive", 2).await?.allowed);
    /// assert!(limiter.check_at_limit("10.0.0.1", "adaptive", 0).await.is_err());
    /// # Ok::<(), ratethrottle::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn check_at_limit<'a>(
        &'a self,
        identifier: &'a str,
        rule: &'a str,
        limit: u64,
    ) -> impl Future<Output = Result<Status>> + Send + 'a {
        self.decide(identifier, Target::Name(rule), Ask::CHECK.at_limit(limit))
    }

    /// [`Limiter::check_n`] decided at `limit` (see [`Limiter::check_at_limit`]).
    pub fn check_n_at_limit<'a>(
        &'a self,
        identifier: &'a str,
        rule: &'a str,
        cost: u64,
        limit: u64,
    ) -> impl Future<Output = Result<Status>> + Send + 'a {
        self.decide(
            identifier,
            Target::Name(rule),
            Ask::check(cost).at_limit(limit),
        )
    }

    /// [`Limiter::peek`] decided at `limit` (see [`Limiter::check_at_limit`]).
    pub fn peek_at_limit<'a>(
        &'a self,
        identifier: &'a str,
        rule: &'a str,
        limit: u64,
    ) -> impl Future<Output = Result<Status>> + Send + 'a {
        self.decide(identifier, Target::Name(rule), Ask::PEEK.at_limit(limit))
    }

    /// What [`Limiter::check`] would answer now, without counting anything: `remaining` is the
    /// allowance before the request. Records no violation and starts no block.
    pub fn peek<'a>(
        &'a self,
        identifier: &'a str,
        rule: &'a str,
    ) -> impl Future<Output = Result<Status>> + Send + 'a {
        self.decide(identifier, Target::Name(rule), Ask::PEEK)
    }

    /// Forgets `identifier`'s state and block under `rule`.
    pub async fn reset(&self, identifier: &str, rule: &str) -> Result<()> {
        let rules = self.shared.rules.load();
        let entry = rules.get(rule).ok_or_else(|| unknown_rule(&rules, rule))?;
        let id = normalize_identifier(identifier);
        Ok(self.shared.store.reset(&entry.spec, &id).await?)
    }

    /// The future of one decision (see [`Decide`]).
    fn decide<'a>(
        &'a self,
        identifier: &'a str,
        rule: Target<'a>,
        ask: Ask,
    ) -> impl Future<Output = Result<Status>> + Send + 'a {
        Decide {
            limiter: self,
            identifier,
            rule,
            ask,
            waiting: Waiting::NotYet,
        }
    }

    /// The hot path for stores that answer without waiting ([`Store::check_at_once`]): no
    /// future state machine in between. `None` when the store must be awaited or the rule is
    /// unknown (the lists may still decide, which can need I/O).
    #[inline(always)]
    fn decide_at_once(
        &self,
        identifier: &str,
        rule: Target<'_>,
        ask: Ask,
    ) -> Option<Result<Status>> {
        let now = self.shared.clock.now();
        let id = normalize_identifier(identifier);
        let decide = |entry: &RuleEntry| self.decide_entry_at_once(entry, &id, ask, now);
        match rule.current() {
            Ok(entry) => decide(entry),
            Err(name) => decide(self.shared.rules.load().get(name)?),
        }
    }

    #[inline(always)]
    fn decide_entry_at_once(
        &self,
        entry: &RuleEntry,
        id: &str,
        ask: Ask,
        now: Nanos,
    ) -> Option<Result<Status>> {
        let query = match entry.query(id, ask, now) {
            Ok(query) => query,
            Err(error) => return Some(Err(error)),
        };
        Some(match self.shared.store.check_at_once(&query)? {
            Ok(outcome) => Ok(self.conclude(entry, id, ask, outcome, now)),
            Err(error) => self.undecided(entry, id, ask, error, now),
        })
    }

    /// The general path: awaits the store.
    async fn decide_waiting(&self, identifier: &str, rule: Target<'_>, ask: Ask) -> Result<Status> {
        let shared = &*self.shared;
        let now = shared.clock.now();
        let id = normalize_identifier(identifier);
        // The table is loaded only for a lookup by name; a handle's entry needs none.
        let rules;
        let entry = match rule.current() {
            Ok(entry) => entry,
            Err(name) => {
                rules = shared.rules.load();
                match rules.get(name) {
                    Some(entry) => entry,
                    None => {
                        return self
                            .decide_without_rule(&id, name, now, ask.consume, &rules)
                            .await;
                    }
                }
            }
        };
        let query = entry.query(&id, ask, now)?;
        match shared.store.check(query).await {
            Ok(outcome) => Ok(self.conclude(entry, &id, ask, outcome, now)),
            Err(error) => self.undecided(entry, &id, ask, error, now),
        }
    }

    /// A check the store could not decide: the fault policy's answer when the store gave one
    /// (marked degraded), else the error. Either way it is counted as a degraded decision, an
    /// error as a denial (callers refuse the request: HTTP 503).
    #[cold]
    fn undecided(
        &self,
        entry: &RuleEntry,
        id: &str,
        ask: Ask,
        error: StoreError,
        now: Nanos,
    ) -> Result<Status> {
        if ask.consume {
            entry.counters.add(Count::Degraded);
        }
        match error.fallback() {
            Some(outcome) => {
                let mut status = self.conclude(entry, id, ask, outcome, now);
                status.degraded = true;
                Ok(status)
            }
            None => {
                if ask.consume {
                    entry.counters.add(Count::Denied);
                }
                Err(error.into())
            }
        }
    }

    /// Counts a decided request, records a violation, and builds the [`Status`].
    #[inline(always)]
    fn conclude(
        &self,
        entry: &RuleEntry,
        id: &str,
        ask: Ask,
        outcome: Outcome,
        now: Nanos,
    ) -> Status {
        if ask.consume {
            entry.counters.add(if outcome.admits() {
                Count::Allowed
            } else {
                Count::Denied
            });
            if outcome.is_violation() {
                entry.counters.add(Count::Violations);
                self.violated(entry, id, ask, outcome, now);
            }
        }
        status_of(
            &entry.rule,
            entry.limit_of(ask),
            entry.spec.name,
            outcome,
            now,
        )
    }

    /// A check naming a rule that does not exist: the lists still apply first.
    async fn decide_without_rule(
        &self,
        id: &str,
        rule: &str,
        now: Nanos,
        consume: bool,
        rules: &RuleTable,
    ) -> Result<Status> {
        let store = &self.shared.store;
        let outcome = if store.list_contains(ListKind::Whitelist, id, now).await? {
            Outcome::Whitelisted
        } else if store.list_contains(ListKind::Blacklist, id, now).await? {
            Outcome::Blacklisted { until: None }
        } else {
            return Err(unknown_rule(rules, rule));
        };
        let status = status_of(&Rule::new("", 0, Duration::ZERO), 0, "", outcome, now);
        if consume {
            self.shared.unowned.add(if status.allowed {
                Count::Allowed
            } else {
                Count::Denied
            });
        }
        Ok(status)
    }

    /// Records a violation and runs the callbacks, each isolated from the others' panics.
    #[cold]
    fn violated(&self, entry: &RuleEntry, id: &str, ask: Ask, outcome: Outcome, now: Nanos) {
        let (rule, name, limit) = (&entry.rule, entry.name(), entry.limit_of(ask));
        let status = status_of(rule, limit, name, outcome, now);
        let blocked_until = match outcome {
            Outcome::Decided {
                blocked_until: Some(until),
                ..
            } => Some(until.to_system_time()),
            _ => None,
        };
        let violation = Violation {
            identifier: id.to_owned(),
            rule: name,
            scope: rule.scope,
            limit,
            window: rule.window,
            cost: ask.cost,
            at: now.to_system_time(),
            retry_after: status.retry_after.unwrap_or_default(),
            blocked_until,
        };
        tracing::debug!(identifier = id, rule = name, "rate limit exceeded");
        let callbacks = self
            .shared
            .callbacks
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        for callback in callbacks {
            if catch_unwind(AssertUnwindSafe(|| callback(&violation))).is_err() {
                self.shared.callback_panics.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    rule = name,
                    "a violation callback panicked; the panic was caught"
                );
            }
        }
        self.shared.violations.push(violation);
    }

    /// Runs `callback` for every violation, after the check that caused it has decided. A
    /// panicking callback is caught and counted in [`Metrics::callback_panics`]; it affects
    /// neither the check nor the other callbacks.
    pub fn on_violation<F>(&self, callback: F)
    where
        F: Fn(&Violation) + Send + Sync + 'static,
    {
        self.shared
            .callbacks
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(Arc::new(callback));
    }
}

/// The [`Status`] for `outcome` under `rule`, decided at `limit`.
#[inline(always)]
fn status_of(rule: &Rule, limit: u64, name: &'static str, outcome: Outcome, now: Nanos) -> Status {
    let until = |at: Nanos| at.saturating_sub(now);
    let mut status = Status {
        allowed: false,
        remaining: 0,
        limit,
        window: rule.window,
        reset_after: Duration::ZERO,
        retry_after: None,
        rule: name,
        strategy: rule.strategy,
        blocked: false,
        verdict: Verdict::Limited,
        checked_at: now,
        degraded: false,
    };
    match outcome {
        Outcome::Whitelisted => {
            status.allowed = true;
            status.remaining = limit;
            status.rule = "whitelist";
            status.verdict = Verdict::Whitelisted;
        }
        Outcome::Blacklisted { until: expiry } => {
            status.rule = "blacklist";
            status.blocked = true;
            status.verdict = Verdict::Blacklisted;
            status.retry_after = expiry.map(until);
            status.reset_after = status.retry_after.unwrap_or_default();
        }
        Outcome::Blocked { until: end } => {
            status.blocked = true;
            status.verdict = Verdict::Blocked;
            status.retry_after = Some(until(end));
            status.reset_after = until(end);
        }
        Outcome::Decided {
            decision,
            blocked_until,
        } => {
            status.allowed = decision.allowed;
            status.remaining = decision.remaining;
            status.reset_after = Duration::from_nanos(decision.reset_after);
            status.verdict = if decision.allowed {
                Verdict::Allowed
            } else {
                Verdict::Limited
            };
            if !decision.allowed {
                let block = blocked_until.map(until).unwrap_or_default();
                status.retry_after = decision
                    .retry_after
                    .map(|retry| Duration::from_nanos(retry).max(block));
                // The full allowance cannot return before the client may retry.
                status.reset_after = status
                    .reset_after
                    .max(block)
                    .max(status.retry_after.unwrap_or_default());
            }
        }
    }
    status
}

fn unknown_rule(rules: &RuleTable, rule: &str) -> Error {
    let mut known: Vec<String> = rules.iter().map(|e| e.name().to_owned()).collect();
    known.sort();
    Error::UnknownRule {
        rule: crate::identifier::elide(rule).into_owned(),
        known,
    }
}

/// # Whitelist and blacklist
impl<S: Store> Limiter<S> {
    /// Whitelists `identifier`: it bypasses every rule.
    pub async fn whitelist_add(&self, identifier: &str) -> Result<()> {
        self.list_add(ListKind::Whitelist, identifier, None).await
    }

    /// Removes `identifier` from the whitelist; `true` if it was there.
    pub async fn whitelist_remove(&self, identifier: &str) -> Result<bool> {
        self.list_remove(ListKind::Whitelist, identifier).await
    }

    /// Whether `identifier` is whitelisted.
    pub async fn is_whitelisted(&self, identifier: &str) -> Result<bool> {
        self.list_contains(ListKind::Whitelist, identifier).await
    }

    /// Blacklists `identifier`, for `duration` or (with `None`) until removed. Its checks are
    /// denied with `blocked` set (HTTP 403).
    pub async fn blacklist_add(&self, identifier: &str, duration: Option<Duration>) -> Result<()> {
        let expires = duration.map(|d| self.shared.clock.now().saturating_add(d));
        self.list_add(ListKind::Blacklist, identifier, expires)
            .await
    }

    /// Removes `identifier` from the blacklist; `true` if it was there.
    pub async fn blacklist_remove(&self, identifier: &str) -> Result<bool> {
        self.list_remove(ListKind::Blacklist, identifier).await
    }

    /// Whether `identifier` is blacklisted now.
    pub async fn is_blacklisted(&self, identifier: &str) -> Result<bool> {
        self.list_contains(ListKind::Blacklist, identifier).await
    }

    /// The entries of `list` that have not expired, sorted by identifier.
    pub async fn list_entries(&self, list: ListKind) -> Result<Vec<ListEntry>> {
        let now = self.shared.clock.now();
        Ok(self.shared.store.list_entries(list, now).await?)
    }

    async fn list_add(
        &self,
        list: ListKind,
        identifier: &str,
        expires: Option<Nanos>,
    ) -> Result<()> {
        let id = normalize_identifier(identifier);
        Ok(self.shared.store.list_add(list, &id, expires).await?)
    }

    async fn list_remove(&self, list: ListKind, identifier: &str) -> Result<bool> {
        let id = normalize_identifier(identifier);
        Ok(self.shared.store.list_remove(list, &id).await?)
    }

    async fn list_contains(&self, list: ListKind, identifier: &str) -> Result<bool> {
        let id = normalize_identifier(identifier);
        let now = self.shared.clock.now();
        Ok(self.shared.store.list_contains(list, &id, now).await?)
    }
}

/// # Metrics
impl<S: Store> Limiter<S> {
    /// A snapshot of the counters (see [`Metrics`]).
    pub fn metrics(&self) -> Metrics {
        let shared = &*self.shared;
        let rules = shared.rules.load();
        let mut per_rule: Vec<RuleMetrics> = rules
            .iter()
            .map(|entry| RuleMetrics {
                rule: entry.spec.name,
                allowed: entry.counters.get(Count::Allowed),
                denied: entry.counters.get(Count::Denied),
                violations: entry.counters.get(Count::Violations),
                degraded: entry.counters.get(Count::Degraded),
            })
            .collect();
        per_rule.sort_by_key(|m| m.rule);
        let sum = |count: Count, of_rule: fn(&RuleMetrics) -> u64| {
            shared.unowned.get(count) + per_rule.iter().map(of_rule).sum::<u64>()
        };
        let allowed = sum(Count::Allowed, |m| m.allowed);
        let denied = sum(Count::Denied, |m| m.denied);
        let total = allowed + denied;
        let now = shared.clock.now();
        let faults = shared.store.fault_stats().unwrap_or_default();
        Metrics {
            total_requests: total,
            allowed_requests: allowed,
            blocked_requests: denied,
            block_rate: if total == 0 {
                0.0
            } else {
                denied as f64 * 100.0 / total as f64
            },
            violations: sum(Count::Violations, |m| m.violations),
            degraded_requests: sum(Count::Degraded, |m| m.degraded),
            store_errors: faults.errors,
            store_circuit_opens: faults.circuit_opens,
            store_circuit_open: faults.circuit_open,
            callback_panics: shared.callback_panics.load(Ordering::Relaxed),
            active_rules: rules.len(),
            whitelisted: shared.store.list_len_hint(ListKind::Whitelist, now),
            blacklisted: shared.store.list_len_hint(ListKind::Blacklist, now),
            recent_violations: shared.violations.latest(RECENT_VIOLATIONS),
            rules: per_rule,
        }
    }

    /// Sets every counter to zero and forgets the violation history.
    pub fn reset_metrics(&self) {
        let shared = &*self.shared;
        shared.unowned.reset();
        for entry in shared.rules.load().iter() {
            entry.counters.reset();
        }
        shared.callback_panics.store(0, Ordering::Relaxed);
        shared.violations.clear();
    }

    /// The remembered violations (the last 1,000 by default), oldest first.
    pub fn violations(&self) -> Vec<Violation> {
        self.shared.violations.latest(usize::MAX)
    }

    /// The store behind this limiter.
    pub fn store(&self) -> &S {
        &self.shared.store
    }

    /// The current time on this limiter's clock.
    pub fn now(&self) -> Nanos {
        self.shared.clock.now()
    }
}
