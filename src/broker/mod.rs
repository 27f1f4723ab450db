//! Per-shard broker state and the cross-shard protocol.
//!
//! Each shard owns the queues that hash to it, a replica of the topology and
//! the connections the kernel gave its listener. Work that concerns another
//! shard travels as [`ShardMsg`]s through the batched [`Mailbox`]. State
//! lives in separate `RefCell`s, each borrowed only for the span of one
//! synchronous step: deliveries are queued and routed by [`Shard::pump`]
//! after the step that produced them, so no step re-enters another.
pub mod error;
mod leader;
pub mod messages;
mod store;
pub mod topology;

use ahash::AHashMap;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

pub use error::{AmqpError, AmqpResult};
pub use messages::{Reply, Request, ShardMsg};
pub use store::ShardStore;

use crate::codec::{FieldTable, ShortStr};
use crate::connection::ConnHandle;
use crate::queue::{ChannelRef, ConsumerId, Delivery, Message, MsgId, Queue, Settle};
use crate::shard::mailbox::Mailbox;
use crate::shard::sync::{oneshot, Event, OneshotSender};
use topology::{ConnRef, QueueId, QueueMeta, Topology};

/// The queue a delivery came from, so acks can find their way back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueueRef {
    pub id: QueueId,
    pub owner: u16,
}

/// A delivery on its way to a consumer's connection.
#[derive(Debug, Clone)]
pub struct RoutedDelivery {
    pub queue: QueueRef,
    pub delivery: Delivery,
}

/// A queue owned by this shard.
pub struct OwnedQueue {
    pub meta: QueueMeta,
    pub vhost: ShortStr,
    pub queue: Queue,
    /// Auto-delete fires only once a consumer has come and gone.
    pub had_consumer: bool,
    /// Durable and not exclusive: its persistent messages go to the log.
    pub logged: bool,
    /// Already on the shard's dispatch list.
    dirty: bool,
}

impl OwnedQueue {
    /// Queues this queue for dispatch in the next pump, once.
    fn touch(&mut self, id: QueueId, dirty: &RefCell<Vec<QueueId>>) {
        if !self.dirty {
            self.dirty = true;
            dirty.borrow_mut().push(id);
        }
    }
}

pub struct Shard {
    pub id: usize,
    pub shards: usize,
    pub mailbox: Rc<Mailbox<ShardMsg>>,
    pub topology: RefCell<Topology>,
    pub queues: RefCell<AHashMap<QueueId, OwnedQueue>>,
    pub conns: RefCell<AHashMap<u64, Rc<ConnHandle>>>,
    dirty: RefCell<Vec<QueueId>>,
    /// Reused by `publish` so routing allocates nothing per message.
    route_scratch: RefCell<Vec<ShortStr>>,
    deliveries: RefCell<Vec<RoutedDelivery>>,
    pump_scheduled: Cell<bool>,
    pending_calls: RefCell<AHashMap<u64, OneshotSender<Reply>>>,
    next_call: Cell<u64>,
    next_local_id: Cell<u64>,
    leader: leader::LeaderState,
    pub store: RefCell<ShardStore>,
    /// Something was appended to the log: the committer has work.
    sync_wake: Event,
}

/// Where a publish went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Routed {
    pub queues: usize,
    /// Queues that will answer `Accepted` later when the publish carried a
    /// [`ConfirmRef`]: those on other shards, and those here that log the
    /// message and answer after the group commit.
    pub pending: u32,
}

/// Asks the queues a publish reaches to say when they have it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfirmRef {
    pub ch: ChannelRef,
    pub seq: u64,
}

impl Shard {
    pub fn new(
        id: usize,
        shards: usize,
        mailbox: Rc<Mailbox<ShardMsg>>,
        store: ShardStore,
        next_queue_id: QueueId,
    ) -> Rc<Self> {
        Rc::new(Shard {
            id,
            shards,
            mailbox,
            topology: RefCell::new(Topology::new()),
            queues: RefCell::new(AHashMap::new()),
            conns: RefCell::new(AHashMap::new()),
            dirty: RefCell::new(Vec::new()),
            route_scratch: RefCell::new(Vec::new()),
            deliveries: RefCell::new(Vec::new()),
            pump_scheduled: Cell::new(false),
            pending_calls: RefCell::new(AHashMap::new()),
            next_call: Cell::new(1),
            next_local_id: Cell::new(1),
            leader: leader::LeaderState::new(next_queue_id),
            store: RefCell::new(store),
            sync_wake: Event::default(),
        })
    }

    /// A broker-unique id: the shard in the top 16 bits.
    pub fn unique_id(&self) -> u64 {
        let n = self.next_local_id.get();
        self.next_local_id.set(n + 1);
        ((self.id as u64) << 48) | n
    }

    pub fn owner_of(&self, vhost: &str, queue: &str) -> usize {
        topology::owner_shard(vhost, queue, self.shards)
    }

    // ---- message path ----------------------------------------------------

    /// Routes one message published on this shard. Queues here get it
    /// directly; others through their shard's mailbox. The caller has
    /// checked the exchange exists and may be published to.
    pub fn publish(
        self: &Rc<Self>,
        vhost: &str,
        exchange: &str,
        routing_key: &str,
        headers: Option<&FieldTable>,
        msg: &Message,
        confirm: Option<ConfirmRef>,
    ) -> Routed {
        let mut targets: smallvec::SmallVec<[QueueRef; 4]> = smallvec::SmallVec::new();
        {
            let topo = self.topology.borrow();
            let Some(vh) = topo.vhost(vhost) else {
                return Routed::default();
            };
            if exchange.is_empty() {
                if let Some(q) = vh.queues.get(routing_key) {
                    targets.push(QueueRef {
                        id: q.id,
                        owner: q.owner_shard,
                    });
                }
            } else {
                let mut names = self.route_scratch.borrow_mut();
                names.clear();
                vh.routing.route(exchange, routing_key, headers, &mut names);
                for name in names.iter() {
                    if let Some(q) = vh.queues.get(name) {
                        targets.push(QueueRef {
                            id: q.id,
                            owner: q.owner_shard,
                        });
                    }
                }
            }
        }
        let mut pending = 0;
        for t in &targets {
            if t.owner as usize == self.id {
                if self.enqueue(t.id, msg.clone(), confirm) {
                    pending += 1;
                }
            } else {
                pending += 1;
                let publish = ShardMsg::Publish {
                    queue: t.id,
                    msg: msg.clone(),
                    confirm,
                };
                self.mailbox.push(t.owner as usize, publish);
            }
        }
        if !targets.is_empty() {
            self.schedule_pump();
        }
        Routed {
            queues: targets.len(),
            pending,
        }
    }

    /// Acks, rejects and requeues from a channel, grouped per queue.
    pub fn settle(self: &Rc<Self>, q: QueueRef, ids: Vec<MsgId>, how: Settle) {
        if q.owner as usize == self.id {
            self.settle_local(q.id, &ids, how);
        } else {
            self.mailbox.push(
                q.owner as usize,
                ShardMsg::Settle {
                    queue: q.id,
                    ids,
                    how,
                },
            );
        }
        self.schedule_pump();
    }

    fn settle_local(&self, id: QueueId, ids: &[MsgId], how: Settle) {
        if let Some(oq) = self.queues.borrow_mut().get_mut(&id) {
            oq.queue.settle(ids, how);
            oq.touch(id, &self.dirty);
        }
    }

    /// The connection wrote `n` deliveries of `consumer` to its socket.
    pub fn credit(self: &Rc<Self>, q: QueueRef, consumer: ConsumerId, n: u32) {
        if q.owner as usize == self.id {
            if let Some(oq) = self.queues.borrow_mut().get_mut(&q.id) {
                oq.queue.credit(consumer, n);
                oq.touch(q.id, &self.dirty);
            }
        } else {
            self.mailbox.push(
                q.owner as usize,
                ShardMsg::Credit {
                    queue: q.id,
                    consumer,
                    n,
                },
            );
        }
        self.schedule_pump();
    }

    /// A channel closed: the queue takes back its unacked messages and drops
    /// its consumers.
    pub fn release_channel(self: &Rc<Self>, q: QueueRef, ch: ChannelRef) {
        if q.owner as usize == self.id {
            self.release_local(q.id, ch);
        } else {
            self.mailbox.push(
                q.owner as usize,
                ShardMsg::ReleaseChannel { queue: q.id, ch },
            );
        }
        self.schedule_pump();
    }

    fn release_local(self: &Rc<Self>, id: QueueId, ch: ChannelRef) {
        let removed = {
            let mut queues = self.queues.borrow_mut();
            let Some(oq) = queues.get_mut(&id) else {
                return;
            };
            let removed = oq.queue.release_channel(ch);
            oq.touch(id, &self.dirty);
            !removed.is_empty()
        };
        if removed {
            self.maybe_auto_delete(id);
        }
    }

    /// Runs dispatch for queues that changed and routes the deliveries, then
    /// flushes the mailboxes. Runs as its own task after the current step.
    pub fn schedule_pump(self: &Rc<Self>) {
        if !self.pump_scheduled.replace(true) {
            let this = self.clone();
            glommio::spawn_local(async move {
                // glommio 0.9 polls a new task at once, inside spawn_local;
                // yield first so the pump runs after the current step (its
                // caller may hold borrows, e.g. the credit map in
                // `ConnHandle::return_credits`, which `deliver` needs).
                futures_lite::future::yield_now().await;
                this.pump_scheduled.set(false);
                this.pump();
            })
            .detach();
        }
    }

    pub fn pump(self: &Rc<Self>) {
        let mut scratch = Vec::new();
        loop {
            let dirty = std::mem::take(&mut *self.dirty.borrow_mut());
            if !dirty.is_empty() {
                let mut queues = self.queues.borrow_mut();
                let mut out = self.deliveries.borrow_mut();
                for id in dirty {
                    if let Some(oq) = queues.get_mut(&id) {
                        oq.dirty = false;
                        self.refill(oq);
                        oq.queue.dispatch(&mut scratch);
                        self.log_events(oq);
                        let queue = QueueRef {
                            id,
                            owner: self.id as u16,
                        };
                        out.extend(
                            scratch
                                .drain(..)
                                .map(|delivery| RoutedDelivery { queue, delivery }),
                        );
                    }
                }
            }
            let deliveries = std::mem::take(&mut *self.deliveries.borrow_mut());
            if deliveries.is_empty() {
                break;
            }
            for d in deliveries {
                self.route_delivery(d);
            }
        }
        self.store.borrow_mut().flush_events();
        self.mailbox.flush();
    }

    fn route_delivery(&self, d: RoutedDelivery) {
        let ch = d.delivery.channel;
        if ch.shard as usize == self.id {
            let conn = self.conns.borrow().get(&ch.conn).cloned();
            // A connection that is gone has released (or will release) its
            // channels, which requeues anything unacked.
            if let Some(conn) = conn {
                conn.deliver(d);
            }
        } else {
            self.mailbox.push(ch.shard as usize, ShardMsg::Deliver(d));
        }
    }

    // ---- incoming mesh traffic -------------------------------------------

    pub fn handle_batch(self: &Rc<Self>, from: usize, batch: Vec<ShardMsg>) {
        for msg in batch {
            match msg {
                ShardMsg::Publish {
                    queue,
                    msg,
                    confirm,
                } => {
                    // A queue deleted meanwhile still answers: the publish
                    // is settled either way, as RabbitMQ confirms it.
                    if !self.enqueue(queue, msg, confirm) {
                        if let Some(c) = confirm {
                            self.accept(c);
                        }
                    }
                }
                ShardMsg::Accepted { ch, seq } => {
                    let conn = self.conns.borrow().get(&ch.conn).cloned();
                    if let Some(conn) = conn {
                        conn.accepted(ch, seq);
                    }
                }
                ShardMsg::Deliver(d) => self.deliveries.borrow_mut().push(d),
                ShardMsg::Settle { queue, ids, how } => self.settle_local(queue, &ids, how),
                ShardMsg::Credit { queue, consumer, n } => {
                    if let Some(oq) = self.queues.borrow_mut().get_mut(&queue) {
                        oq.queue.credit(consumer, n);
                        oq.touch(queue, &self.dirty);
                    }
                }
                ShardMsg::ReleaseChannel { queue, ch } => self.release_local(queue, ch),
                ShardMsg::ConsumerCancelled { ch, tag } => {
                    let conn = self.conns.borrow().get(&ch.conn).cloned();
                    if let Some(conn) = conn {
                        conn.server_cancel(ch, &tag);
                    }
                }
                ShardMsg::Request { call, req } => {
                    let this = self.clone();
                    glommio::spawn_local(async move {
                        let reply = this.handle_request(req).await;
                        this.mailbox.push(from, ShardMsg::Reply { call, reply });
                        this.schedule_pump();
                    })
                    .detach();
                }
                ShardMsg::Reply { call, reply } => {
                    if let Some(tx) = self.pending_calls.borrow_mut().remove(&call) {
                        tx.send(reply);
                    }
                }
            }
        }
        self.pump();
    }

    /// Sends `req` to shard `to` (or runs it here) and waits for the reply.
    pub async fn call(self: &Rc<Self>, to: usize, req: Request) -> Reply {
        if to == self.id {
            let reply = self.handle_request(req).await;
            self.schedule_pump();
            return reply;
        }
        let call = self.next_call.get();
        self.next_call.set(call + 1);
        let (tx, rx) = oneshot();
        self.pending_calls.borrow_mut().insert(call, tx);
        self.mailbox.push(to, ShardMsg::Request { call, req });
        self.schedule_pump();
        rx.await
            .unwrap_or_else(|| Reply::Err(AmqpError::new(541, "shard did not answer")))
    }

    /// Boxed: leader operations call back into this (broadcasts reach the
    /// leader's own shard too), which would make the future recursive.
    fn handle_request(self: &Rc<Self>, req: Request) -> futures_lite::future::BoxedLocal<Reply> {
        let this = self.clone();
        Box::pin(async move {
            match req {
                Request::Leader(op) => this.leader_op(op).await,
                Request::Apply(change) => {
                    this.apply_change(&change);
                    Reply::Ok
                }
                Request::Queue(id, op) => this.queue_op(id, op),
            }
        })
    }

    /// Applies a topology change to this shard's replica; the owning shard
    /// also creates or drops the queue itself. Startup replays the
    /// definitions log through here too.
    pub fn apply_change(self: &Rc<Self>, change: &topology::TopologyChange) {
        use topology::TopologyChange as C;
        if let C::QueueAdded(vhost, meta) = change {
            if meta.owner_shard as usize == self.id {
                self.queues
                    .borrow_mut()
                    .entry(meta.id)
                    .or_insert_with(|| OwnedQueue {
                        meta: meta.clone(),
                        vhost: vhost.clone(),
                        queue: Queue::new(),
                        had_consumer: false,
                        logged: meta.durable && meta.exclusive.is_none(),
                        dirty: false,
                    });
            }
        }
        self.topology.borrow_mut().apply(change);
    }

    pub fn definitions_slot(&self) -> &RefCell<Option<crate::storage::definitions::Definitions>> {
        &self.leader.definitions
    }

    /// Deletes an owned queue now: cancels its consumers (who are told with
    /// basic.cancel) and returns how many messages it held.
    fn drop_owned_queue(self: &Rc<Self>, id: QueueId) -> Option<u32> {
        let mut oq = self.queues.borrow_mut().remove(&id)?;
        let count = oq.queue.message_count();
        if oq.logged {
            // Settlements not yet written count first, then the rest.
            self.log_events(&mut oq);
            self.forget_logged(oq.queue.logged_locs());
        }
        for c in oq.queue.drain_consumers() {
            if c.channel.shard as usize == self.id {
                let conn = self.conns.borrow().get(&c.channel.conn).cloned();
                if let Some(conn) = conn {
                    conn.server_cancel(c.channel, &c.tag);
                }
            } else {
                let msg = ShardMsg::ConsumerCancelled {
                    ch: c.channel,
                    tag: c.tag,
                };
                self.mailbox.push(c.channel.shard as usize, msg);
            }
        }
        self.schedule_pump();
        Some(count)
    }

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
            let this = self.clone();
            glommio::spawn_local(async move {
                let _ = this
                    .call(
                        0,
                        Request::Leader(messages::LeaderOp::AutoDeleteQueue { vhost, name, id }),
                    )
                    .await;
            })
            .detach();
        }
    }

    fn queue_op(self: &Rc<Self>, id: QueueId, op: messages::QueueOp) -> Reply {
        use messages::QueueOp as Op;
        let mut queues = self.queues.borrow_mut();
        let Some(oq) = queues.get_mut(&id) else {
            return Reply::Err(AmqpError::not_found("queue was deleted"));
        };
        match op {
            Op::Stats => Reply::Counts {
                messages: oq.queue.message_count(),
                consumers: oq.queue.consumer_count(),
            },
            Op::Consume(spec) => match oq.queue.add_consumer(spec) {
                Ok(()) => {
                    oq.had_consumer = true;
                    oq.touch(id, &self.dirty);
                    Reply::Ok
                }
                Err(_) => Reply::Err(AmqpError::access_refused(format!(
                    "queue '{}' in vhost '{}' in exclusive use",
                    oq.meta.name, oq.vhost
                ))),
            },
            Op::Cancel(consumer) => {
                oq.queue.remove_consumer(consumer);
                drop(queues);
                self.maybe_auto_delete(id);
                Reply::Ok
            }
            Op::Get { holder, no_ack } => {
                self.refill(oq);
                let got = oq.queue.get(holder, no_ack);
                self.log_events(oq);
                oq.touch(id, &self.dirty);
                Reply::Got(got)
            }
            Op::Purge => {
                let n = oq.queue.purge();
                self.log_events(oq);
                Reply::Count(n)
            }
            Op::Delete {
                if_unused,
                if_empty,
                only_if_idle,
            } => {
                let (name, vhost) = (&oq.meta.name, &oq.vhost);
                if (if_unused || only_if_idle) && oq.queue.consumer_count() > 0 {
                    return Reply::Err(AmqpError::precondition(format!(
                        "queue '{name}' in vhost '{vhost}' in use"
                    )));
                }
                if if_empty && oq.queue.message_count() > 0 {
                    return Reply::Err(AmqpError::precondition(format!(
                        "queue '{name}' in vhost '{vhost}' is not empty"
                    )));
                }
                drop(queues);
                Reply::Count(self.drop_owned_queue(id).unwrap_or(0))
            }
        }
    }

    pub fn channel_ref(&self, conn: u64, channel: u16, epoch: u32) -> ChannelRef {
        ChannelRef {
            shard: self.id as u16,
            conn,
            channel,
            epoch,
        }
    }

    pub fn conn_ref(&self, conn: u64) -> ConnRef {
        ConnRef {
            shard: self.id as u16,
            conn,
        }
    }
}
