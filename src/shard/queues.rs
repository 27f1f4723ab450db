//! The queues a shard owns: creating them as the topology says, the calls
//! other shards make on them (counts, consume, cancel, get, purge,
//! delete), and deleting them (auto-delete included).
use futures_lite::future::BoxedLocal;
use std::rc::Rc;

use super::{Call, OwnedQueue, Shard, ShardMsg};
use crate::codec::ShortStr;
use crate::error::{AmqpError, AmqpResult};
use crate::ids::{ChannelRef, ConsumerId, QueueId};
use crate::queue::{ConsumerSpec, GetResult, Queue};
use crate::topology::TopologyChange;

/// A queue's depth and consumers, for declare-ok.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounts {
    /// Ready messages.
    pub messages: u32,
    /// Consumers.
    pub consumers: u32,
}

/// Asks an owned queue for its [`QueueCounts`].
pub struct QueueStats(pub QueueId);

/// Adds a consumer to an owned queue.
pub struct Consume {
    /// The queue.
    pub queue: QueueId,
    /// The consumer.
    pub spec: ConsumerSpec,
}

/// Removes a consumer from an owned queue (which may auto-delete it).
pub struct CancelConsumer {
    /// The queue.
    pub queue: QueueId,
    /// The consumer.
    pub consumer: ConsumerId,
}

/// basic.get on an owned queue.
pub struct GetMessage {
    /// The queue.
    pub queue: QueueId,
    /// The channel that holds the message until it acks (unless `no_ack`).
    pub holder: ChannelRef,
    /// Settled at once.
    pub no_ack: bool,
}

/// Purges an owned queue; answers how many messages went.
pub struct PurgeQueue(pub QueueId);

/// Deletes an owned queue after checking its conditions, in one step;
/// answers how many messages it held. The leader's, not a client's.
pub(super) struct DeleteOwned {
    pub queue: QueueId,
    pub if_unused: bool,
    pub if_empty: bool,
    /// Auto-delete: only if it still has no consumer.
    pub only_if_idle: bool,
    /// `x-expires`: only if it is still unused past its expiry.
    pub only_if_expired: bool,
}

/// A topology change for this shard's replica (the leader's broadcast).
pub(super) struct Apply(pub TopologyChange);

/// Calls that complete in one synchronous step on the target shard.
macro_rules! sync_call {
    ($ty:ty => $out:ty, |$op:ident, $shard:ident| $body:expr) => {
        impl Call for $ty {
            type Output = $out;
            fn run(self, $shard: Rc<Shard>) -> BoxedLocal<AmqpResult<$out>> {
                let $op = self;
                let result = $body;
                Box::pin(std::future::ready(result))
            }
        }
    };
}

sync_call!(QueueStats => QueueCounts, |op, shard| shard.on_queue(op.0, |shard, oq| {
    // A redeclaration counts as use (`x-expires`).
    oq.used();
    oq.touch(&shard.dirty);
    Ok(QueueCounts {
        messages: oq.queue.message_count(),
        consumers: oq.queue.consumer_count(),
    })
}));

sync_call!(Consume => (), |op, shard| shard.on_queue(op.queue, |shard, oq| {
    match oq.queue.add_consumer(op.spec) {
        Ok(()) => {
            oq.had_consumer = true;
            oq.touch(&shard.dirty);
            Ok(())
        }
        Err(_) => Err(AmqpError::access_refused(format!(
            "queue '{}' in vhost '{}' in exclusive use",
            oq.meta.name, oq.vhost
        ))),
    }
}));

sync_call!(CancelConsumer => (), |op, shard| {
    let found = shard.on_queue(op.queue, |shard, oq| {
        oq.queue.remove_consumer(op.consumer);
        // Its expiry may start now. No dispatch: a single active consumer's
        // successor gets messages at the next event, as in RabbitMQ (a
        // closing channel's requeued messages first).
        oq.used();
        shard.rearm(oq);
        Ok(())
    });
    if found.is_ok() {
        shard.maybe_auto_delete(op.queue);
    }
    found
});

sync_call!(GetMessage => Option<GetResult>, |op, shard| shard.on_queue(op.queue, |shard, oq| {
    shard.refill(oq);
    let now = oq.queue.has_deadlines().then(crate::runtime::monotonic_ms);
    let got = oq.queue.get(op.holder, op.no_ack, now);
    shard.log_events(oq);
    oq.used();
    oq.touch(&shard.dirty);
    Ok(got)
}));

sync_call!(PurgeQueue => u32, |op, shard| shard.on_queue(op.0, |shard, oq| {
    let n = oq.queue.purge();
    shard.log_events(oq);
    Ok(n)
}));

sync_call!(DeleteOwned => u32, |op, shard| {
    let checked = shard.on_queue(op.queue, |_, oq| {
        let (name, vhost) = (&oq.meta.name, &oq.vhost);
        if (op.if_unused || op.only_if_idle) && oq.queue.consumer_count() > 0 {
            return Err(AmqpError::precondition(format!(
                "queue '{name}' in vhost '{vhost}' in use"
            )));
        }
        let now = crate::runtime::monotonic_ms();
        if op.only_if_expired && oq.expiry_deadline().is_none_or(|d| d > now) {
            return Err(AmqpError::precondition(format!(
                "queue '{name}' in vhost '{vhost}' in use"
            )));
        }
        if op.if_empty && oq.queue.message_count() > 0 {
            return Err(AmqpError::precondition(format!(
                "queue '{name}' in vhost '{vhost}' not empty"
            )));
        }
        Ok(())
    });
    checked.map(|()| shard.drop_owned_queue(op.queue).unwrap_or(0))
});

sync_call!(Apply => (), |op, shard| {
    shard.apply_change(&op.0);
    Ok(())
});

impl Shard {
    /// Runs `f` on owned queue `id`, or answers 404 if it is gone.
    fn on_queue<T>(
        &self,
        id: QueueId,
        f: impl FnOnce(&Shard, &mut OwnedQueue) -> AmqpResult<T>,
    ) -> AmqpResult<T> {
        let mut queues = self.queues.borrow_mut();
        let oq = queues
            .get_mut(&id)
            .ok_or_else(|| AmqpError::not_found("queue was deleted"))?;
        f(self, oq)
    }

    /// Changes owned queue `id`'s state and marks it for dispatch; a queue
    /// that is gone ignores it.
    pub(super) fn with_queue(&self, id: QueueId, f: impl FnOnce(&mut Queue)) {
        if let Some(oq) = self.queues.borrow_mut().get_mut(&id) {
            f(&mut oq.queue);
            oq.touch(&self.dirty);
        }
    }

    /// A channel closed: the queue takes back what it held.
    pub(super) fn release_local(self: &Rc<Self>, id: QueueId, ch: ChannelRef) {
        let removed = {
            let mut queues = self.queues.borrow_mut();
            let Some(oq) = queues.get_mut(&id) else {
                return;
            };
            let removed = oq.queue.release_channel(ch);
            if !removed.is_empty() {
                oq.used();
            }
            oq.touch(&self.dirty);
            !removed.is_empty()
        };
        if removed {
            self.maybe_auto_delete(id);
        }
    }

    /// Applies a topology change to this shard's replica; the owning shard
    /// also creates the queue itself. Start-up replays the definitions log
    /// through here too.
    pub fn apply_change(self: &Rc<Self>, change: &TopologyChange) {
        if let TopologyChange::QueueAdded(vhost, meta) = change {
            if meta.owner_shard == self.id {
                let mut queues = self.queues.borrow_mut();
                let oq = queues.entry(meta.id).or_insert_with(|| {
                    self.metrics.queues_created.inc();
                    let config = self.queue_config(vhost, meta);
                    let sac = config.single_active_consumer;
                    let mut queue = Queue::with_config(config);
                    queue.set_single_active_consumer(sac);
                    OwnedQueue {
                        meta: meta.clone(),
                        vhost: vhost.clone(),
                        queue,
                        had_consumer: false,
                        logged: meta.durable && meta.exclusive.is_none(),
                        dirty: false,
                        armed: None,
                        last_used: crate::runtime::monotonic_ms(),
                    }
                });
                // Its expiry starts now (after a restart too).
                self.rearm(oq);
            }
        }
        self.topology.borrow_mut().apply(change);
        match change {
            TopologyChange::VhostRemoved(vhost) => self.close_deleted(Some(vhost), None),
            TopologyChange::Access(crate::access::AccessChange::UserRemoved(user)) => {
                self.close_deleted(None, Some(user))
            }
            TopologyChange::PolicySet(vhost, _) | TopologyChange::PolicyCleared(vhost, ..) => {
                self.policies_changed(vhost)
            }
            _ => {}
        }
    }

    /// Deletes an owned queue now: cancels its consumers (who are told with
    /// basic.cancel) and returns how many messages it held.
    fn drop_owned_queue(self: &Rc<Self>, id: QueueId) -> Option<u32> {
        let mut oq = self.queues.borrow_mut().remove(&id)?;
        let count = oq.queue.message_count();
        self.metrics.queues_deleted.inc();
        let mut retired = self.retired.get();
        retired.add(oq.queue.counters());
        self.retired.set(retired);
        if oq.logged {
            // Settlements not yet written count first, then the rest.
            self.log_events(&mut oq);
            self.forget_logged(oq.queue.logged_locs());
        }
        for c in oq.queue.drain_consumers() {
            let msg = ShardMsg::ConsumerCancelled {
                ch: c.channel,
                tag: c.tag,
            };
            self.send(c.channel.shard, msg);
        }
        self.schedule_pump();
        Some(count)
    }

    /// A queue unused past its `x-expires` asks the leader to delete it
    /// (if it is still unused by then).
    pub(super) fn expire_queue(self: &Rc<Self>, id: QueueId) {
        let target = self
            .queues
            .borrow()
            .get(&id)
            .map(|oq| (oq.vhost.clone(), oq.meta.name.clone()));
        if let Some((vhost, name)) = target {
            self.ask_to_delete(vhost, name, id, true);
        }
    }

    /// Asks the leader to delete owned queue `id` (auto-delete, or expired);
    /// the owner checks the condition again when the leader asks.
    fn ask_to_delete(self: &Rc<Self>, vhost: ShortStr, name: ShortStr, id: QueueId, expired: bool) {
        let this = self.clone();
        crate::runtime::spawn(async move {
            let op = super::AutoDeleteQueue {
                vhost,
                name,
                id,
                expired,
            };
            let _ = this.leader(op).await;
        });
    }

    /// An auto-delete queue that lost its last consumer asks the leader to
    /// delete it (if it still has none by then).
    fn maybe_auto_delete(self: &Rc<Self>, id: QueueId) {
        let target = {
            let queues = self.queues.borrow();
            match queues.get(&id) {
                Some(oq)
                    if oq.meta.auto_delete && oq.had_consumer && oq.queue.consumer_count() == 0 =>
                {
                    Some((oq.vhost.clone(), oq.meta.name.clone()))
                }
                _ => None,
            }
        };
        if let Some((vhost, name)) = target {
            self.ask_to_delete(vhost, name, id, false);
        }
    }
}
