//! Checks that arrive while others are on their way share one script call.
//!
//! A check goes out at once, alone, while fewer than [`CALLS_IN_FLIGHT`] calls are under way;
//! otherwise it waits in a queue that the next call to finish hands to a flusher task, which
//! sends up to [`CHECKS_PER_CALL`] waiting checks in one `EVALSHA`. A quiet store adds no delay
//! and no task hop; a busy one pays the script call's fixed cost once per batch instead of once
//! per check. Each check is still decided atomically, within one round trip of its own.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use ratethrottle::store::{ListKind, Outcome, Query, StoreError, StoreErrorKind};
use tokio::sync::oneshot;

use crate::RedisStore;
use crate::fast::{self, Reply, Request};

/// The most script calls carrying checks at once (per store).
const CALLS_IN_FLIGHT: usize = 4;
/// The most checks one call carries.
const CHECKS_PER_CALL: usize = 64;

/// One check's keys and arguments for `fast.lua`.
pub(crate) struct Check {
    keys: Vec<String>,
    request: Request,
}

type Answer = Result<(Arc<Reply>, usize), StoreError>;

/// Out at once (with the call slot taken, if any), or waiting for an answer.
type Route<'a> = Result<(Check, Option<Slot<'a>>), oneshot::Receiver<Answer>>;

struct Job {
    check: Check,
    answer: oneshot::Sender<Answer>,
}

/// The checks waiting for a call, and how many calls are under way.
#[derive(Default)]
pub(crate) struct Batcher {
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Job>,
    calls: usize,
}

/// A call slot held by a check that went out alone; gives the queue to a flusher when done,
/// even if the check's future is dropped half-way.
struct Slot<'a>(&'a RedisStore);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.hand_over();
    }
}

impl RedisStore {
    /// Decides `query` with `fast.lua` (`kind` from [`fast::kind`]; `screen` to look up the
    /// list entries in Redis), batched with concurrent checks except on a cluster, where
    /// checks of different identifiers live on different nodes.
    pub(crate) async fn decide_fast(
        &self,
        query: Query<'_>,
        kind: f64,
        screen: bool,
    ) -> Result<Outcome, StoreError> {
        let shared = &*self.shared;
        let mut keys = vec![self.state_key(query.rule, query.identifier)];
        if screen {
            keys.push(self.list_key(ListKind::Whitelist, query.identifier));
            keys.push(self.list_key(ListKind::Blacklist, query.identifier));
        }
        let check = Check {
            keys,
            request: Request::new(&query, kind, self.caller_time(), screen),
        };
        let address = shared.address.as_str();
        match self.route(check) {
            Ok((check, _slot)) => {
                let reply = self.call_fast(std::slice::from_ref(&check)).await?;
                reply.outcome(0, &query, address)
            }
            Err(waiting) => match tokio::time::timeout(shared.config.timeout, waiting).await {
                Ok(Ok(Ok((reply, index)))) => reply.outcome(index, &query, address),
                Ok(Ok(Err(error))) => Err(error),
                Ok(Err(_)) => Err(StoreError::new(
                    StoreErrorKind::Unavailable,
                    format!("redis at {address}: the check was dropped (no async runtime)"),
                )),
                Err(_) => Err(self.timed_out()),
            },
        }
    }

    /// Where `check` goes: out at once (with the call slot it takes, none on a cluster), or
    /// into the queue, to be answered through the receiver.
    fn route(&self, check: Check) -> Route<'_> {
        if self.connection.is_cluster() {
            return Ok((check, None));
        }
        let mut queue = self.shared.batcher.queue.lock();
        if queue.calls < CALLS_IN_FLIGHT && queue.waiting.is_empty() {
            queue.calls += 1;
            return Ok((check, Some(Slot(self))));
        }
        let (answer, waiting) = oneshot::channel();
        queue.waiting.push_back(Job { check, answer });
        Err(waiting)
    }

    /// One `EVALSHA` of `fast.lua` for `checks`.
    async fn call_fast(&self, checks: &[Check]) -> Result<Reply, StoreError> {
        let mut invocation = self.shared.fast_script.prepare_invoke();
        for key in checks.iter().flat_map(|check| &check.keys) {
            invocation.key(key);
        }
        let [rules, requests] = fast::encode(checks.iter().map(|check| &check.request));
        invocation.arg(rules).arg(requests);
        let mut connection = self.connection.clone();
        let integers: Vec<i64> = self.run(invocation.invoke_async(&mut connection)).await?;
        Reply::parse(integers, checks.len(), &self.shared.address)
    }

    /// Called as a call finishes: a flusher takes over the waiting checks, or the slot is free.
    fn hand_over(&self) {
        let mut queue = self.shared.batcher.queue.lock();
        if queue.waiting.is_empty() {
            queue.calls -= 1;
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                drop(queue);
                runtime.spawn(self.clone().flush());
            }
            // Outside a runtime nothing can send them: their callers hear they were dropped.
            Err(_) => {
                queue.waiting.clear();
                queue.calls -= 1;
            }
        }
    }

    /// Sends the waiting checks, a batch per call, until none wait.
    async fn flush(self) {
        loop {
            let jobs: Vec<Job> = {
                let mut queue = self.shared.batcher.queue.lock();
                // Checks whose callers gave up (timed out) are not sent.
                queue.waiting.retain(|job| !job.answer.is_closed());
                if queue.waiting.is_empty() {
                    queue.calls -= 1;
                    return;
                }
                let batch = queue.waiting.len().min(CHECKS_PER_CALL);
                queue.waiting.drain(..batch).collect()
            };
            let (checks, answers): (Vec<Check>, Vec<_>) =
                jobs.into_iter().map(|job| (job.check, job.answer)).unzip();
            let result = self.call_fast(&checks).await.map(Arc::new);
            for (index, answer) in answers.into_iter().enumerate() {
                let _ = answer.send(match &result {
                    Ok(reply) => Ok((Arc::clone(reply), index)),
                    Err(error) => Err(StoreError::new(error.kind(), error.to_string())),
                });
            }
        }
    }
}
