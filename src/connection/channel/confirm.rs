//! Tracking when a channel's publishes have been accepted by every queue
//! they were routed to. Publisher confirms (and tx.commit-ok) must not go
//! out before then: a client that sees the confirm may immediately ask the
//! queue for its depth, as it can with RabbitMQ.
//!
//! Queues on the publisher's shard accept synchronously; each queue on
//! another shard answers with `ShardMsg::Accepted`. Confirms go out as
//! `basic.ack` with `multiple` for the longest fully accepted prefix.
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct PublishTracker {
    /// Sequence number of the next publish (the first is 1).
    next_seq: u64,
    /// Publishes still waiting for queues on other shards: seq → how many.
    pending: BTreeMap<u64, u32>,
    /// Highest seq already confirmed to the client.
    acked_upto: u64,
}

impl PublishTracker {
    pub fn new() -> Self {
        PublishTracker {
            next_seq: 1,
            ..Default::default()
        }
    }

    /// Numbers the next publish.
    pub fn next(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// `seq` waits for `queues` queues to accept it later.
    pub fn wait_for(&mut self, seq: u64, queues: u32) {
        if queues > 0 {
            self.pending.insert(seq, queues);
        }
    }

    /// One queue accepted `seq`.
    pub fn accepted(&mut self, seq: u64) {
        if let Some(n) = self.pending.get_mut(&seq) {
            *n -= 1;
            if *n == 0 {
                self.pending.remove(&seq);
            }
        }
    }

    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// The confirm to send now, if any: (delivery tag, multiple).
    pub fn take_ack(&mut self) -> Option<(u64, bool)> {
        let upto = match self.pending.keys().next() {
            Some(&first) => first - 1,
            None => self.next_seq - 1,
        };
        if upto <= self.acked_upto {
            return None;
        }
        let multiple = upto - self.acked_upto > 1;
        self.acked_upto = upto;
        Some((upto, multiple))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_only_the_accepted_prefix() {
        let mut t = PublishTracker::new();
        let a = t.next();
        t.wait_for(a, 0); // local only: accepted at once
        let b = t.next();
        t.wait_for(b, 2); // two remote queues
        let c = t.next();
        t.wait_for(c, 1);
        assert_eq!(t.take_ack(), Some((1, false)));
        t.accepted(c);
        assert_eq!(t.take_ack(), None, "b still pending holds c back");
        t.accepted(b);
        assert_eq!(t.take_ack(), None, "b needs both queues");
        t.accepted(b);
        assert_eq!(t.take_ack(), Some((3, true)));
        assert!(t.is_idle());
        assert_eq!(t.take_ack(), None);
    }
}
