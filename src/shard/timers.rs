//! Deadlines of the queues a shard owns: the head message's TTL and the
//! queue's own expiry (`x-expires`). One entry per queue in one ordered
//! set, and one task that sleeps until the earliest: nothing runs for
//! queues without deadlines, and nothing spins.
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use super::{OwnedQueue, Shard};
use crate::ids::QueueId;
use crate::runtime::{monotonic_ms, sync::Event};

/// The armed deadlines.
#[derive(Default)]
pub(super) struct Timers {
    due: RefCell<BTreeSet<(u64, QueueId)>>,
    /// An earlier deadline was armed: the task re-reads the first one.
    earlier: Event,
}

impl Shard {
    /// Makes sure owned queue `oq` is looked at again by `at` (ms on
    /// [`monotonic_ms`]); a later deadline already armed moves up, an
    /// earlier one stays.
    pub(super) fn arm(&self, oq: &mut OwnedQueue, at: u64) {
        if oq.armed.is_some_and(|a| a <= at) {
            return;
        }
        let mut due = self.timers.due.borrow_mut();
        if let Some(old) = oq.armed.take() {
            due.remove(&(old, oq.meta.id));
        }
        oq.armed = Some(at);
        let first = due.first().is_none_or(|(t, _)| at < *t);
        due.insert((at, oq.meta.id));
        drop(due);
        if first {
            self.timers.earlier.notify();
        }
    }

    /// Arms what `oq` needs after a step: its head message's deadline,
    /// and its expiry while it has no consumer.
    pub(super) fn rearm(&self, oq: &mut OwnedQueue) {
        let message = oq.queue.next_deadline();
        let expiry = oq.expiry_deadline();
        if let Some(at) = [message, expiry].into_iter().flatten().min() {
            self.arm(oq, at);
        }
    }

    /// Wakes each queue when its deadline comes: it is dispatched (which
    /// expires its head) and, past its expiry, deleted.
    pub async fn run_timers(self: Rc<Self>) {
        loop {
            let first = self.timers.due.borrow().first().map(|(t, _)| *t);
            let now = monotonic_ms();
            match first {
                None => {
                    self.timers.earlier.wait().await;
                    continue;
                }
                Some(t) if t > now => {
                    let wait = std::time::Duration::from_millis(t - now);
                    let earlier = self.timers.earlier.wait();
                    futures_lite::future::or(crate::runtime::sleep(wait), earlier).await;
                    continue;
                }
                Some(_) => {}
            }
            let mut fired = Vec::new();
            {
                let mut due = self.timers.due.borrow_mut();
                while let Some(&(t, id)) = due.first() {
                    if t > now {
                        break;
                    }
                    due.pop_first();
                    fired.push(id);
                }
            }
            let mut expired = Vec::new();
            {
                let mut queues = self.queues.borrow_mut();
                for id in fired {
                    if let Some(oq) = queues.get_mut(&id) {
                        oq.armed = None;
                        if oq.expiry_deadline().is_some_and(|d| d <= now) {
                            expired.push(id);
                        }
                        oq.touch(&self.dirty);
                    }
                }
            }
            for id in expired {
                self.expire_queue(id);
            }
            self.schedule_pump();
        }
    }
}

impl OwnedQueue {
    /// When the queue expires if nothing uses it meanwhile (`x-expires`:
    /// no consumer, no basic.get, no redeclaration).
    pub(super) fn expiry_deadline(&self) -> Option<u64> {
        let ttl = self.queue.config().expires?;
        (self.queue.consumer_count() == 0).then(|| self.last_used + ttl as u64)
    }

    /// Something used the queue: its expiry starts again.
    pub(super) fn used(&mut self) {
        if self.queue.config().expires.is_some() {
            self.last_used = monotonic_ms();
        }
    }
}
