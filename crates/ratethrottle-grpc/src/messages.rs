//! Message rates per stream: gRPC messages counted as they flow through a body, against a
//! rule's limit for that one stream, decided by the engine's pure strategy functions under the
//! limiter's clock (a stream lives in one process: its count needs no store).

use std::sync::Arc;

use ratethrottle::strategy::{self, Compact, Params, SlidingLog, State};
use ratethrottle::{Rule, Strategy};

/// The clock a stream's count reads (the limiter's), in nanoseconds since the epoch.
pub(crate) type Now = Arc<dyn Fn() -> u64 + Send + Sync>;

/// A rule's limit for the messages of one stream.
#[derive(Clone)]
pub(crate) struct StreamRule {
    pub(crate) name: String,
    params: Params,
    strategy: Strategy,
    pub(crate) now: Now,
}

impl StreamRule {
    pub(crate) fn new(rule: &Rule, now: Now) -> Self {
        StreamRule {
            name: rule.name.clone(),
            params: Params::of(rule),
            strategy: rule.strategy,
            now,
        }
    }
}

/// The messages of one stream so far, as the rule's strategy keeps them.
enum Count {
    Compact(Compact, State),
    Log(Box<SlidingLog>),
}

/// Finds where messages start in a stream of gRPC frames (a flag byte, a 4-byte big-endian
/// length, the message) and asks the rule for each one.
pub(crate) struct MessageLimit {
    rule: StreamRule,
    count: Count,
    /// Header bytes of the current message seen so far (0: between messages).
    header: [u8; 5],
    have: usize,
    /// Bytes of the current message's body still to come.
    left: u64,
    /// Messages admitted.
    pub(crate) admitted: u64,
}

impl MessageLimit {
    pub(crate) fn new(rule: StreamRule) -> Self {
        let count = match Compact::of(rule.strategy) {
            Some(kind) => Count::Compact(kind, State::default()),
            None => Count::Log(Box::default()),
        };
        MessageLimit {
            rule,
            count,
            header: [0; 5],
            have: 0,
            left: 0,
            admitted: 0,
        }
    }

    /// The rule's name.
    pub(crate) fn rule(&self) -> &str {
        &self.rule.name
    }

    /// Whether one more message may start now (counting it when so).
    fn admit(&mut self) -> bool {
        let now = (self.rule.now)();
        let params = &self.rule.params;
        let allowed = match &mut self.count {
            Count::Compact(kind, state) => {
                let (decision, next) = strategy::decide(*kind, params, state, now, 1);
                if decision.allowed {
                    *state = next;
                }
                decision.allowed
            }
            Count::Log(log) => {
                let allowed = log.decide(params, now, 1).allowed;
                if allowed {
                    log.record(now, 1);
                }
                allowed
            }
        };
        self.admitted += u64::from(allowed);
        allowed
    }

    /// Reads `data`; the offset of the first message the rule refuses, if any (everything
    /// before it may pass).
    pub(crate) fn scan(&mut self, data: &[u8]) -> Option<usize> {
        let mut at = 0;
        while at < data.len() {
            if self.left > 0 {
                let skip = self.left.min((data.len() - at) as u64);
                self.left -= skip;
                at += skip as usize;
                continue;
            }
            if self.have == 0 && !self.admit() {
                return Some(at);
            }
            let take = (5 - self.have).min(data.len() - at);
            self.header[self.have..self.have + take].copy_from_slice(&data[at..at + take]);
            self.have += take;
            at += take;
            if self.have == 5 {
                let length = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]);
                self.left = u64::from(length);
                self.have = 0;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn frames(messages: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for message in messages {
            out.push(0);
            out.extend((message.len() as u32).to_be_bytes());
            out.extend(*message);
        }
        out
    }

    fn limit(n: u64) -> MessageLimit {
        let rule = Rule::new("stream", n, Duration::from_secs(60));
        MessageLimit::new(StreamRule::new(
            &rule,
            Arc::new(|| 1_767_225_600_000_000_000),
        ))
    }

    #[test]
    fn messages_are_found_across_any_split_of_the_frames() {
        let data = frames(&[b"one", b"", b"three", b"four!"]);
        for split in 0..data.len() {
            let mut counter = limit(3);
            let cut = counter
                .scan(&data[..split])
                .or_else(|| counter.scan(&data[split..]).map(|at| at + split));
            // The fourth message starts after 3 + 5, 0 + 5 and 5 + 5 bytes.
            assert_eq!(cut, Some(23), "split at {split}");
            assert_eq!(counter.admitted, 3);
        }
        let mut counter = limit(10);
        assert_eq!(counter.scan(&data), None);
        assert_eq!(counter.admitted, 4);
    }
}
