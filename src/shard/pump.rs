//! The message path on a shard: routing a publish, settlements and credit
//! back to queues, the one cross-shard hop ([`Shard::send`]), and the pump
//! that dispatches changed queues and flushes the mailboxes.
use std::rc::Rc;

use super::store::Enqueued;
use super::{ConfirmRef, PublishRef, RoutedDelivery, Shard, ShardMsg};
use crate::codec::FieldTable;
use crate::ids::{ChannelRef, ConsumerId, MsgId, QueueId, QueueRef, ShardId};
use crate::queue::{Delivery, Message, Settle};

/// The pump's lists, reused from one pump to the next (callgrind: growing
/// fresh ones cost ~120 instructions per message).
#[derive(Default)]
pub struct PumpBuffers {
    scratch: Vec<Delivery>,
    dirty: Vec<QueueId>,
    deliveries: Vec<RoutedDelivery>,
}

/// Where a publish went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Routed {
    /// Queues that got the message.
    pub queues: usize,
    /// Queues that will answer later when the publish is numbered: those
    /// on other shards, and those here that log the message and answer
    /// after the group commit.
    pub pending: u32,
    /// Queues here that could not store the message (it is not in them).
    pub refused: u32,
}

impl Shard {
    /// The hop: handles `msg` here when `to` is this shard, else queues it
    /// in `to`'s mailbox batch (flushed by the pump). The one place that
    /// decides local against remote; [`Shard::handle`] serves both.
    pub(super) fn send(self: &Rc<Self>, to: ShardId, msg: ShardMsg) {
        if to == self.id {
            self.handle(msg);
        } else {
            self.mailbox.push(to.index(), msg);
        }
    }

    /// What a message asks of this shard, wherever it came from.
    fn handle(self: &Rc<Self>, msg: ShardMsg) {
        match msg {
            ShardMsg::Publish { queue, msg, from } => {
                // A queue deleted meanwhile still answers: the publish is
                // settled either way, as RabbitMQ confirms it.
                match self.enqueue(queue, msg, from.confirm()) {
                    Enqueued::Now => {
                        if let Some(c) = from.confirm() {
                            self.accept(c);
                        }
                    }
                    Enqueued::AfterSync => {}
                    Enqueued::Refused => self.refuse(from),
                    Enqueued::Rejected if from.seq.is_some() => self.refuse(from),
                    Enqueued::Rejected => {}
                }
            }
            ShardMsg::Accepted { ch, seq } => {
                if let Some(conn) = self.conn(ch.conn) {
                    conn.accepted(ch, seq);
                }
            }
            ShardMsg::Refused { ch, seq } => {
                if let Some(conn) = self.conn(ch.conn) {
                    conn.refused(ch, seq);
                }
            }
            ShardMsg::Deliver(d) => {
                // A connection that is gone has released (or will release)
                // its channels, which requeues anything unacked.
                if let Some(conn) = self.conn(d.delivery.channel.conn) {
                    conn.deliver(d);
                }
            }
            ShardMsg::DeliverReply { ch, key, msg } => self.deliver_reply(ch, key, msg),
            ShardMsg::Settle { queue, ids, how } => self.with_queue(queue, |q| q.settle(&ids, how)),
            ShardMsg::Credit { queue, consumer, n } => {
                self.with_queue(queue, |q| q.credit(consumer, n))
            }
            ShardMsg::ReleaseChannel { queue, ch } => self.release_local(queue, ch),
            ShardMsg::ConsumerCancelled { ch, tag } => {
                if let Some(conn) = self.conn(ch.conn) {
                    conn.server_cancel(ch, &tag);
                }
            }
            ShardMsg::Call { from, call, op } => self.serve_call(from, call, op),
            ShardMsg::Reply { call, reply } => self.complete_call(call, reply),
        }
    }

    /// A batch from another shard's mailbox.
    pub fn handle_batch(self: &Rc<Self>, batch: Vec<ShardMsg>) {
        self.metrics.mesh_batches_received.inc();
        for msg in batch {
            self.handle(msg);
        }
        self.pump();
    }

    /// Routes one message published on this shard. Queues here get it
    /// directly; others through their shard's mailbox. The caller has
    /// checked the exchange exists and may be published to.
    ///
    /// Local queues are not reached through [`Shard::send`]: their
    /// acceptance counts synchronously (`pending` excludes them unless they
    /// log the message), which the caller needs before any answer arrives.
    pub fn publish(
        self: &Rc<Self>,
        vhost: &str,
        exchange: &str,
        routing_key: &str,
        headers: Option<&FieldTable>,
        msg: &Message,
        from: PublishRef,
    ) -> Routed {
        let mut targets: smallvec::SmallVec<[QueueRef; 4]> = smallvec::SmallVec::new();
        {
            let topo = self.topology.borrow();
            let Some(vh) = topo.vhost(vhost) else {
                return Routed::default();
            };
            if exchange.is_empty() {
                if routing_key.starts_with(super::REPLY_PREFIX) {
                    // Direct reply-to: to a channel, never to a queue.
                    self.publish_reply(routing_key, msg);
                } else if let Some(q) = vh.queues.get(routing_key) {
                    targets.push(q.queue_ref());
                }
                let x = &vh.default_exchange;
                x.publish_in.inc();
                x.publish_out.add(!targets.is_empty() as u64);
            } else {
                let mut names = self.route_scratch.borrow_mut();
                names.clear();
                vh.routing.route(exchange, routing_key, headers, &mut names);
                for name in names.iter() {
                    if let Some(q) = vh.queues.get(name) {
                        targets.push(q.queue_ref());
                    }
                }
            }
        }
        let (mut pending, mut refused) = (0, 0);
        for t in &targets {
            if t.owner == self.id {
                self.metrics.routed_local.inc();
                match self.enqueue(t.id, msg.clone(), from.confirm()) {
                    Enqueued::Now => {}
                    Enqueued::AfterSync => pending += 1,
                    Enqueued::Refused => refused += 1,
                    Enqueued::Rejected if from.seq.is_some() => refused += 1,
                    Enqueued::Rejected => {}
                }
            } else {
                self.metrics.routed_remote.inc();
                pending += 1;
                let publish = ShardMsg::Publish {
                    queue: t.id,
                    msg: msg.clone(),
                    from,
                };
                self.mailbox.push(t.owner.index(), publish);
            }
        }
        if !targets.is_empty() {
            self.schedule_pump();
        }
        Routed {
            queues: targets.len(),
            pending,
            refused,
        }
    }

    /// Acks, rejects and requeues from a channel, grouped per queue.
    pub fn settle(self: &Rc<Self>, q: QueueRef, ids: Vec<MsgId>, how: Settle) {
        self.send(
            q.owner,
            ShardMsg::Settle {
                queue: q.id,
                ids,
                how,
            },
        );
        self.schedule_pump();
    }

    /// The connection wrote `n` deliveries of `consumer` to its socket.
    pub fn credit(self: &Rc<Self>, q: QueueRef, consumer: ConsumerId, n: u32) {
        self.send(
            q.owner,
            ShardMsg::Credit {
                queue: q.id,
                consumer,
                n,
            },
        );
        self.schedule_pump();
    }

    /// A channel closed: the queue takes back its unacked messages and drops
    /// its consumers.
    pub fn release_channel(self: &Rc<Self>, q: QueueRef, ch: ChannelRef) {
        self.send(q.owner, ShardMsg::ReleaseChannel { queue: q.id, ch });
        self.schedule_pump();
    }

    /// Tells the publisher's channel that a queue has its message.
    pub(super) fn accept(self: &Rc<Self>, c: ConfirmRef) {
        self.send(
            c.ch.shard,
            ShardMsg::Accepted {
                ch: c.ch,
                seq: c.seq,
            },
        );
    }

    /// Tells the publisher that a queue could not store its message.
    pub(super) fn refuse(self: &Rc<Self>, from: PublishRef) {
        self.send(
            from.ch.shard,
            ShardMsg::Refused {
                ch: from.ch,
                seq: from.seq,
            },
        );
    }

    /// Runs [`Shard::pump`] as its own task after the current step, once
    /// however often it is asked before it runs.
    pub fn schedule_pump(self: &Rc<Self>) {
        if !self.pump_scheduled.replace(true) {
            let this = self.clone();
            crate::runtime::spawn(async move {
                // `runtime::spawn` polls a new task at once, inside the call;
                // yield first so the pump runs after the current step (its
                // caller may hold borrows, e.g. the credit map in
                // `ConnHandle::return_credits`, which `deliver` needs).
                futures_lite::future::yield_now().await;
                this.pump_scheduled.set(false);
                this.pump();
            });
        }
    }

    /// Runs dispatch for queues that changed and routes the deliveries,
    /// then writes the log events and flushes the mailboxes.
    pub fn pump(self: &Rc<Self>) {
        // Taken out of the cell: a pump run from inside this one (through
        // a local delivery) finds empty lists and still works.
        let mut bufs = std::mem::take(&mut *self.pump_buffers.borrow_mut());
        let PumpBuffers {
            scratch,
            dirty,
            deliveries,
        } = &mut bufs;
        let mut dead = Vec::new();
        loop {
            // Swapped, not taken: both lists keep their capacity.
            std::mem::swap(dirty, &mut *self.dirty.borrow_mut());
            if !dirty.is_empty() {
                let mut queues = self.queues.borrow_mut();
                let mut out = self.deliveries.borrow_mut();
                for id in dirty.drain(..) {
                    if let Some(oq) = queues.get_mut(&id) {
                        oq.dirty = false;
                        self.refill(oq);
                        let now = oq.queue.has_deadlines().then(crate::runtime::monotonic_ms);
                        oq.queue.dispatch(scratch, now);
                        self.log_events(oq);
                        if oq.queue.has_dead_letters() {
                            let letters = oq.queue.take_dead_letters();
                            if let Some(to) = oq.queue.config().dead_letter.clone() {
                                dead.push(super::dead_letters::DeadLetters {
                                    vhost: oq.vhost.clone(),
                                    queue: oq.meta.name.clone(),
                                    to,
                                    letters,
                                });
                            }
                        }
                        if now.is_some() || oq.queue.config().expires.is_some() {
                            self.rearm(oq);
                        }
                        let queue = QueueRef { id, owner: self.id };
                        out.extend(
                            scratch
                                .drain(..)
                                .map(|delivery| RoutedDelivery { queue, delivery }),
                        );
                    }
                }
            }
            // Dead letters routed here dirty their (local) queues: one
            // more round dispatches them.
            let routed_dead = !dead.is_empty();
            for batch in dead.drain(..) {
                self.route_dead_letters(batch);
            }
            std::mem::swap(deliveries, &mut *self.deliveries.borrow_mut());
            if deliveries.is_empty() && !routed_dead {
                break;
            }
            for d in deliveries.drain(..) {
                self.send(d.delivery.channel.shard, ShardMsg::Deliver(d));
            }
        }
        *self.pump_buffers.borrow_mut() = bufs;
        let due = std::mem::take(&mut *self.confirms_due.borrow_mut());
        for id in due {
            if let Some(conn) = self.conn(id) {
                conn.send_confirms();
            }
        }
        self.store.borrow_mut().flush_events();
        self.mailbox.flush();
    }
}
