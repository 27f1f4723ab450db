//! Tracking when a channel's publishes have been accepted by every queue
//! they were routed to. Publisher confirms (and tx.commit-ok) must not go
//! out before then: a client that sees the confirm may immediately ask the
//! queue for its depth, as it can with RabbitMQ.
//!
//! Queues on the publisher's shard accept synchronously; each queue on
//! another shard answers with `ShardMsg::Accepted`, or `Refused` when it
//! could not store the message. Confirms go out as `basic.ack` with
//! `multiple` for the longest fully accepted prefix; a refused publish
//! gets its own `basic.nack` in its place in the sequence.
use std::collections::{BTreeMap, BTreeSet};

/// One publish still waiting for queues.
#[derive(Debug)]
struct Waiting {
    /// Queues yet to answer.
    queues: u32,
    /// Some queue refused it: it ends as a nack.
    refused: bool,
}

/// A confirm to send: `basic.ack` or `basic.nack` up to `tag`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirm {
    pub tag: u64,
    pub multiple: bool,
    /// `false`: basic.nack (the message could not be stored).
    pub ack: bool,
}

#[derive(Debug, Default)]
pub struct PublishTracker {
    /// Sequence number of the next publish (the first is 1).
    next_seq: u64,
    /// Publishes still waiting for queues on other shards.
    pending: BTreeMap<u64, Waiting>,
    /// Publishes that ended refused and are not yet reported.
    refused: BTreeSet<u64>,
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

    /// `seq` waits for `queues` queues to answer later; `refused`: a queue
    /// already could not store it.
    pub fn wait_for(&mut self, seq: u64, queues: u32, refused: bool) {
        if queues > 0 {
            self.pending.insert(seq, Waiting { queues, refused });
        } else if refused {
            self.refused.insert(seq);
        }
    }

    /// One queue answered for `seq`: it has the message (`stored`) or not.
    pub fn answered(&mut self, seq: u64, stored: bool) {
        if let Some(w) = self.pending.get_mut(&seq) {
            w.refused |= !stored;
            w.queues -= 1;
            if w.queues == 0 {
                if w.refused {
                    self.refused.insert(seq);
                }
                self.pending.remove(&seq);
            }
        }
    }

    /// Publishes numbered but not yet confirmed to the client.
    pub fn unconfirmed(&self) -> u64 {
        (self.next_seq - 1).saturating_sub(self.acked_upto)
    }

    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// Whether some publish was refused since the last call, forgetting
    /// them (a transaction's commit asks).
    pub fn take_refusals(&mut self) -> bool {
        let any = !self.refused.is_empty();
        self.refused.clear();
        any
    }

    /// The confirms to send now, in order: acks with `multiple` for runs
    /// of stored publishes, a nack for each refused one. Answers how many
    /// publishes the acks confirm.
    pub fn take_confirms(&mut self, out: &mut impl Extend<Confirm>) -> u64 {
        let upto = match self.pending.keys().next() {
            Some(&first) => first - 1,
            None => self.next_seq - 1,
        };
        if upto <= self.acked_upto {
            return 0;
        }
        let mut from = self.acked_upto;
        let refused: Vec<u64> = self.refused.range(..=upto).copied().collect();
        let acked = upto - from - refused.len() as u64;
        for r in refused {
            self.refused.remove(&r);
            if r - 1 > from {
                out.extend(Some(Confirm {
                    tag: r - 1,
                    multiple: r - 1 - from > 1,
                    ack: true,
                }));
            }
            out.extend(Some(Confirm {
                tag: r,
                multiple: false,
                ack: false,
            }));
            from = r;
        }
        if upto > from {
            out.extend(Some(Confirm {
                tag: upto,
                multiple: upto - from > 1,
                ack: true,
            }));
        }
        self.acked_upto = upto;
        acked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confirms(t: &mut PublishTracker) -> Vec<(u64, bool, bool)> {
        let mut out = Vec::new();
        t.take_confirms(&mut out);
        out.iter().map(|c| (c.tag, c.multiple, c.ack)).collect()
    }

    #[test]
    fn acks_only_the_accepted_prefix() {
        let mut t = PublishTracker::new();
        let a = t.next();
        t.wait_for(a, 0, false); // local only: accepted at once
        let b = t.next();
        t.wait_for(b, 2, false); // two remote queues
        let c = t.next();
        t.wait_for(c, 1, false);
        assert_eq!(confirms(&mut t), [(1, false, true)]);
        t.answered(c, true);
        assert!(confirms(&mut t).is_empty(), "b still pending holds c back");
        t.answered(b, true);
        assert!(confirms(&mut t).is_empty(), "b needs both queues");
        t.answered(b, true);
        assert_eq!(confirms(&mut t), [(3, true, true)]);
        assert!(t.is_idle());
        assert!(confirms(&mut t).is_empty());
    }

    #[test]
    fn a_refused_publish_is_nacked_in_its_place() {
        let mut t = PublishTracker::new();
        for _ in 0..3 {
            let s = t.next();
            t.wait_for(s, 0, false);
        }
        let bad = t.next(); // 4: one of two queues refuses it
        t.wait_for(bad, 2, false);
        let local_bad = t.next(); // 5: refused here at once
        t.wait_for(local_bad, 0, true);
        let s = t.next(); // 6
        t.wait_for(s, 0, false);
        assert_eq!(confirms(&mut t), [(3, true, true)]);
        t.answered(bad, true);
        t.answered(bad, false);
        assert_eq!(
            confirms(&mut t),
            [(4, false, false), (5, false, false), (6, false, true)]
        );
        assert!(!t.take_refusals(), "reported refusals are forgotten");
        let s = t.next();
        t.wait_for(s, 0, true);
        assert!(t.take_refusals());
    }
}
