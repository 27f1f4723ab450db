//! One queue: its ready messages, consumers and unacknowledged deliveries.
//!
//! Pure state, no I/O: the owning shard calls in and ships the resulting
//! [`Delivery`]s to wherever the consumer's connection lives. Message ids are
//! queue-local and increase with publication order, so a requeued message
//! goes back to its original place (RabbitMQ's behaviour) by id order.
#![warn(missing_docs)]
mod consumers;
pub mod message;
pub mod paged;

use ahash::AHashMap;
use std::collections::{BTreeMap, VecDeque};

pub use message::{Message, MessageData};
pub use paged::PagedEntry;

use crate::codec::ShortStr;
use crate::ids::{ChannelRef, ConsumerId, Loc, MsgId};
use crate::metrics::QueueCounters;
use consumers::Consumers;
pub use consumers::{check_consume_arguments, check_single_active_consumer_arg, ConsumerActivity};
use paged::PagedList;

/// Most deliveries a consumer may have on their way to its socket (delivered
/// by the queue, not yet written by the connection). Bounds memory for
/// no-ack and unlimited-prefetch consumers; the connection hands credit back
/// as it writes.
pub const TRANSPORT_WINDOW: u32 = 2048;

/// A durable queue keeps at most this many logged messages' bodies in
/// memory; the rest of its backlog is read back from the log when
/// consumers get near it.
pub const MEMORY_WINDOW_MESSAGES: usize = 8192;
/// The same window in body bytes: whichever limit is reached first sends
/// new logged messages to the paged backlog.
pub const MEMORY_WINDOW_BYTES: u64 = 8 << 20;
/// Below this many ready messages in memory, the shard refills from disk.
pub const REFILL_BELOW: usize = 2048;

/// A consumer as basic.consume asked for it.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Unique broker-wide.
    pub id: ConsumerId,
    /// The channel its deliveries go to.
    pub channel: ChannelRef,
    /// The consumer tag, sent with every delivery.
    pub tag: ShortStr,
    /// Messages count as settled once delivered; prefetch does not apply.
    pub no_ack: bool,
    /// No other consumer may share the queue with this one.
    pub exclusive: bool,
    /// 0 = unlimited.
    pub prefetch: u32,
    /// basic.consume's arguments (`x-priority`...), for listings.
    pub arguments: crate::codec::FieldTable,
}

#[derive(Debug)]
struct Ready {
    id: MsgId,
    msg: Message,
    redelivered: bool,
    /// Where the message is in the shard's log, when it is logged.
    loc: Option<Loc>,
}

#[derive(Debug)]
struct Unacked {
    holder: ChannelRef,
    consumer: Option<ConsumerId>,
    msg: Message,
    loc: Option<Loc>,
}

/// What happened to logged messages; the shard writes these to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEvent {
    /// First delivery to an acking consumer.
    Delivered(MsgId, Loc),
    /// Gone for good: acked, dropped, or delivered without ack.
    Settled(MsgId, Loc),
    /// Purged: every id up to `up_to` except `kept` (unacked).
    Purged {
        /// The last id published before the purge.
        up_to: MsgId,
        /// Unacked ids, which the purge leaves alone.
        kept: Vec<MsgId>,
        /// The places of the purged messages that are logged.
        locs: Vec<Loc>,
    },
}

/// A message handed to a consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The consumer it is for.
    pub consumer: ConsumerId,
    /// The consumer's channel.
    pub channel: ChannelRef,
    /// The consumer's tag, for basic.deliver.
    pub consumer_tag: ShortStr,
    /// The message's id in this queue; settlements name it by this.
    pub msg_id: MsgId,
    /// Whether the message was delivered before.
    pub redelivered: bool,
    /// Sent to a no-ack consumer: the queue no longer holds the message.
    pub no_ack: bool,
    /// The message.
    pub msg: Message,
}

/// A message taken by basic.get.
#[derive(Debug)]
pub struct GetResult {
    /// The message's id in this queue; settlements name it by this.
    pub msg_id: MsgId,
    /// Whether the message was delivered before.
    pub redelivered: bool,
    /// The message.
    pub msg: Message,
    /// Messages left ready after this one.
    pub remaining: u32,
}

/// Why a consumer could not be added.
#[derive(Debug, PartialEq, Eq)]
pub enum ConsumeError {
    /// 403 ACCESS_REFUSED: an exclusive consumer holds the queue, or one was
    /// asked for while others consume.
    ExclusiveInUse,
}

/// What becomes of an unacked message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Acknowledged: the message is gone.
    Ack,
    /// Back to the queue at its original place, marked redelivered.
    Requeue,
    /// Rejected without requeue: gone, as if acked.
    Drop,
}

/// One queue's state. Messages leave in id order (requeued ones regain
/// their place) and go to consumers round-robin.
#[derive(Debug, Default)]
pub struct Queue {
    next_id: MsgId,
    ready: VecDeque<Ready>,
    /// Requeued messages, ordered by their original id.
    returned: BTreeMap<MsgId, Ready>,
    unacked: AHashMap<MsgId, Unacked>,
    consumers: Consumers,
    /// Backlog beyond the memory window, oldest first; after `ready`.
    paged: PagedList,
    /// Transient messages that arrived while the backlog was paged: they
    /// keep their place in `paged` but their bodies stay here.
    paged_mem: AHashMap<MsgId, Message>,
    /// Body bytes of the messages in `ready`.
    ready_bytes: u64,
    log_events: Vec<LogEvent>,
    /// What the queue did, for message rates.
    counters: QueueCounters,
}

impl Queue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Messages ready for delivery, in memory or paged; unacked ones are not
    /// counted.
    pub fn message_count(&self) -> u32 {
        (self.ready.len() + self.returned.len() + self.paged.len()) as u32
    }

    /// Number of consumers.
    pub fn consumer_count(&self) -> u32 {
        self.consumers.len() as u32
    }

    /// Messages delivered and not yet settled.
    pub fn unacked_count(&self) -> u32 {
        self.unacked.len() as u32
    }

    /// The consumers, highest priority first, each priority in
    /// round-robin order.
    pub fn consumers(&self) -> impl Iterator<Item = &ConsumerSpec> {
        self.consumers.specs()
    }

    /// `x-single-active-consumer`: only one consumer gets messages, the
    /// next one in priority order once it goes. Set as the queue is made.
    pub fn set_single_active_consumer(&mut self, on: bool) {
        self.consumers.set_single_active(on);
    }

    /// The single active consumer (none without single active consumer).
    pub fn single_active_consumer(&self) -> Option<&ConsumerSpec> {
        self.consumers.single_active()
    }

    /// Whether consumer `id` gets messages, for listings.
    pub fn consumer_activity(&self, id: ConsumerId) -> ConsumerActivity {
        self.consumers.activity(id)
    }

    /// Body bytes of the ready messages held in memory (RabbitMQ's
    /// `message_bytes_ram`, the bulk of a queue's `memory`).
    pub fn ready_bytes(&self) -> u64 {
        self.ready_bytes
    }

    /// What the queue did so far (publishes, deliveries, acks...).
    pub fn counters(&self) -> &QueueCounters {
        &self.counters
    }

    /// Whether consumer `id` consumes from this queue.
    pub fn has_consumer(&self, id: ConsumerId) -> bool {
        self.consumers.contains(id)
    }

    /// The id the next published message will get (the log records it).
    pub fn next_id(&self) -> MsgId {
        self.next_id
    }

    /// Enqueues a message; `loc` is its place in the log when it is logged.
    /// A logged message beyond the memory window keeps only its place.
    pub fn publish(&mut self, msg: Message, loc: Option<Loc>) -> MsgId {
        let id = self.next_id;
        self.next_id += 1;
        self.counters.publish += 1;
        let over_window =
            self.ready.len() >= MEMORY_WINDOW_MESSAGES || self.ready_bytes >= MEMORY_WINDOW_BYTES;
        if !self.paged.is_empty() || (loc.is_some() && over_window) {
            self.paged.push_back(PagedEntry::new(id, loc, false));
            if loc.is_none() {
                self.paged_mem.insert(id, msg);
            }
            return id;
        }
        self.push_ready(id, msg, false, loc);
        id
    }

    fn push_ready(&mut self, id: MsgId, msg: Message, redelivered: bool, loc: Option<Loc>) {
        self.ready_bytes += msg.body_size();
        self.ready.push_back(Ready {
            id,
            msg,
            redelivered,
            loc,
        });
    }

    fn pop_ready(&mut self) -> Option<Ready> {
        let returned_first = self.returned.keys().next().copied();
        let r = match (returned_first, self.ready.front()) {
            (Some(r), Some(front)) if front.id < r => self.ready.pop_front(),
            (Some(_), _) => return self.returned.pop_first().map(|(_, m)| m),
            (None, _) => self.ready.pop_front(),
        };
        if let Some(r) = &r {
            self.ready_bytes -= r.msg.body_size();
        }
        r
    }

    /// Messages recovered from the log: they start on disk, in order. New
    /// messages get ids from `next_id` on (at least): ids the log still
    /// names are never given out again.
    pub fn restore(&mut self, messages: impl IntoIterator<Item = PagedEntry>, next_id: MsgId) {
        self.next_id = self.next_id.max(next_id);
        for e in messages {
            self.next_id = self.next_id.max(e.id() + 1);
            self.paged.push_back(e);
        }
    }

    /// True when the in-memory part runs low and more is on disk.
    pub fn wants_refill(&self) -> bool {
        !self.paged.is_empty() && self.ready.len() < REFILL_BELOW
    }

    /// Takes up to `n` entries off the front of the paged backlog; load
    /// them and hand each back with [`refill`](Self::refill), in order.
    pub fn take_paged(&mut self, n: usize) -> Vec<PagedEntry> {
        let mut out = Vec::with_capacity(n.min(self.paged.len()));
        while out.len() < n {
            match self.paged.pop_front() {
                Some(e) => out.push(e),
                None => break,
            }
        }
        out
    }

    /// A paged entry's message, read back (or `None` when it could not be:
    /// then it is gone, and the caller releases its place in the log).
    pub fn refill(&mut self, e: PagedEntry, msg: Option<Message>) {
        let msg = match e.loc() {
            None => self.paged_mem.remove(&e.id()),
            Some(_) => msg,
        };
        if let Some(msg) = msg {
            self.push_ready(e.id(), msg, e.redelivered(), e.loc());
        }
    }

    /// Every logged message's place (for deleting the queue).
    pub fn logged_locs(&self) -> Vec<Loc> {
        let ready = self.ready.iter().filter_map(|r| r.loc);
        let returned = self.returned.values().filter_map(|r| r.loc);
        let unacked = self.unacked.values().filter_map(|u| u.loc);
        let paged = self.paged.iter().filter_map(|e| e.loc());
        ready.chain(returned).chain(unacked).chain(paged).collect()
    }

    /// Compaction moved message `id`: returns its current place and
    /// redelivered flag if it is still here, and records the new place
    /// `to(old, redelivered)` gives.
    pub fn relocate(&mut self, id: MsgId, to: impl FnOnce(Loc, bool) -> Option<Loc>) -> bool {
        fn update(
            loc: &mut Option<Loc>,
            red: bool,
            to: impl FnOnce(Loc, bool) -> Option<Loc>,
        ) -> bool {
            match loc.and_then(|l| to(l, red)) {
                Some(new) => {
                    *loc = Some(new);
                    true
                }
                None => false,
            }
        }
        if let Ok(i) = self.ready.binary_search_by_key(&id, |r| r.id) {
            let r = &mut self.ready[i];
            return update(&mut r.loc, r.redelivered, to);
        }
        if let Some(r) = self.returned.get_mut(&id) {
            return update(&mut r.loc, r.redelivered, to);
        }
        if let Some(u) = self.unacked.get_mut(&id) {
            return update(&mut u.loc, true, to);
        }
        if let Some(e) = self.paged.find_mut(id) {
            let Some(new) = e.loc().and_then(|l| to(l, e.redelivered())) else {
                return false;
            };
            return self.paged.relocate(id, new);
        }
        false
    }

    /// Log events since the last call.
    pub fn take_log_events(&mut self) -> Vec<LogEvent> {
        std::mem::take(&mut self.log_events)
    }

    /// Whether [`take_log_events`](Self::take_log_events) has anything to return.
    pub fn has_log_events(&self) -> bool {
        !self.log_events.is_empty()
    }

    fn note_delivery(&mut self, ready: &Ready, no_ack: bool) {
        if let Some(loc) = ready.loc {
            if no_ack {
                self.log_events.push(LogEvent::Settled(ready.id, loc));
            } else if !ready.redelivered {
                self.log_events.push(LogEvent::Delivered(ready.id, loc));
            }
        }
    }

    /// Adds a consumer, last of its priority (`x-priority`) in the
    /// round-robin. Fails if an exclusive consumer holds the queue, if this
    /// one is exclusive and others consume, or if it is exclusive and the
    /// queue has single active consumer.
    pub fn add_consumer(&mut self, spec: ConsumerSpec) -> Result<(), ConsumeError> {
        self.consumers.add(spec)
    }

    /// Removes a consumer. Its unacked messages stay unacked on its channel
    /// (AMQP: cancelling does not requeue). A single active consumer hands
    /// over to the next, who gets messages from the next dispatch on (the
    /// caller does not dispatch, as RabbitMQ does not on a cancel).
    pub fn remove_consumer(&mut self, id: ConsumerId) -> Option<ConsumerSpec> {
        self.consumers.remove(id)
    }

    /// Removes every consumer and returns them (queue deletion).
    pub fn drain_consumers(&mut self) -> Vec<ConsumerSpec> {
        self.consumers.drain()
    }

    /// Hands ready messages to consumers with capacity, round-robin.
    pub fn dispatch(&mut self, out: &mut Vec<Delivery>) {
        if self.consumers.is_empty() {
            return;
        }
        while !self.ready.is_empty() || !self.returned.is_empty() {
            let Some(idx) = self.consumers.pick() else {
                return;
            };
            let Some(ready) = self.pop_ready() else {
                return;
            };
            let no_ack = self.consumers.at(idx).spec.no_ack;
            self.note_delivery(&ready, no_ack);
            if no_ack {
                self.counters.deliver_no_ack += 1;
            } else {
                self.counters.deliver += 1;
            }
            self.counters.redeliver += ready.redelivered as u64;
            let c = self.consumers.at(idx);
            c.unsent += 1;
            if !c.spec.no_ack {
                c.unacked += 1;
                self.unacked.insert(
                    ready.id,
                    Unacked {
                        holder: c.spec.channel,
                        consumer: Some(c.spec.id),
                        msg: ready.msg.clone(),
                        loc: ready.loc,
                    },
                );
            }
            out.push(Delivery {
                consumer: c.spec.id,
                channel: c.spec.channel,
                consumer_tag: c.spec.tag.clone(),
                msg_id: ready.id,
                redelivered: ready.redelivered,
                no_ack: c.spec.no_ack,
                msg: ready.msg,
            });
        }
    }

    /// The connection wrote `n` deliveries of this consumer to its socket.
    pub fn credit(&mut self, consumer: ConsumerId, n: u32) {
        if let Some(c) = self.consumers.get_mut(consumer) {
            c.unsent = c.unsent.saturating_sub(n);
        }
    }

    /// basic.get: takes the next message; unless `no_ack`, it stays unacked on
    /// `holder` until settled.
    pub fn get(&mut self, holder: ChannelRef, no_ack: bool) -> Option<GetResult> {
        let ready = self.pop_ready()?;
        self.note_delivery(&ready, no_ack);
        if no_ack {
            self.counters.get_no_ack += 1;
        } else {
            self.counters.get += 1;
        }
        self.counters.redeliver += ready.redelivered as u64;
        if !no_ack {
            self.unacked.insert(
                ready.id,
                Unacked {
                    holder,
                    consumer: None,
                    msg: ready.msg.clone(),
                    loc: ready.loc,
                },
            );
        }
        Some(GetResult {
            msg_id: ready.id,
            redelivered: ready.redelivered,
            msg: ready.msg,
            remaining: self.message_count(),
        })
    }

    /// Settles unacked messages. Unknown ids are ignored: the channel
    /// validated its delivery tags, and a queue that was purged or
    /// re-created no longer holds them.
    pub fn settle(&mut self, ids: &[MsgId], how: Settle) {
        for &id in ids {
            let Some(u) = self.unacked.remove(&id) else {
                continue;
            };
            self.counters.ack += (how == Settle::Ack) as u64;
            if let Some(cid) = u.consumer {
                if let Some(c) = self.consumers.get_mut(cid) {
                    c.unacked = c.unacked.saturating_sub(1);
                }
            }
            if how == Settle::Requeue {
                self.returned.insert(
                    id,
                    Ready {
                        id,
                        msg: u.msg,
                        redelivered: true,
                        loc: u.loc,
                    },
                );
            } else if let Some(loc) = u.loc {
                self.log_events.push(LogEvent::Settled(id, loc));
            }
        }
    }

    /// A channel closed: its consumers go and its unacked messages return.
    /// Returns the removed consumers.
    pub fn release_channel(&mut self, ch: ChannelRef) -> Vec<ConsumerSpec> {
        let ids: Vec<MsgId> = self
            .unacked
            .iter()
            .filter(|(_, u)| u.holder == ch)
            .map(|(id, _)| *id)
            .collect();
        self.settle(&ids, Settle::Requeue);
        self.consumers.remove_channel(ch)
    }

    /// Drops every ready message (unacked ones stay); returns how many.
    pub fn purge(&mut self) -> u32 {
        let n = self.message_count();
        let locs: Vec<Loc> = {
            let ready = self.ready.iter().filter_map(|r| r.loc);
            let returned = self.returned.values().filter_map(|r| r.loc);
            let paged = self.paged.iter().filter_map(|e| e.loc());
            ready.chain(returned).chain(paged).collect()
        };
        if !locs.is_empty() {
            self.log_events.push(LogEvent::Purged {
                up_to: self.next_id.saturating_sub(1),
                kept: self.unacked.keys().copied().collect(),
                locs,
            });
        }
        self.ready.clear();
        self.returned.clear();
        self.paged.clear();
        self.paged_mem.clear();
        self.ready_bytes = 0;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ConnId, ShardId};
    use bytes::Bytes;
    use std::sync::Arc;

    fn msg(body: &'static str) -> Message {
        Arc::new(MessageData {
            exchange: ShortStr::from_static(""),
            routing_key: ShortStr::from_static("q"),
            raw_properties: Bytes::from_static(&[0, 0]),
            body: Bytes::from_static(body.as_bytes()),
            persistent: false,
        })
    }

    fn ch(n: u16) -> ChannelRef {
        ChannelRef {
            shard: ShardId(0),
            conn: ConnId(1),
            channel: n,
            epoch: 0,
        }
    }

    fn consumer(id: u64, channel: u16, prefetch: u32, no_ack: bool) -> ConsumerSpec {
        ConsumerSpec {
            arguments: Default::default(),
            id: ConsumerId(id),
            channel: ch(channel),
            tag: ShortStr::from(format!("c{id}")),
            no_ack,
            exclusive: false,
            prefetch,
        }
    }

    fn bodies(d: &[Delivery]) -> Vec<&[u8]> {
        d.iter().map(|d| &d.msg.body[..]).collect()
    }

    #[test]
    fn round_robin_respects_prefetch() {
        let mut q = Queue::new();
        for b in ["a", "b", "c", "d"] {
            q.publish(msg(b), None);
        }
        q.add_consumer(consumer(1, 1, 1, false)).unwrap();
        q.add_consumer(consumer(2, 1, 1, false)).unwrap();
        let mut out = Vec::new();
        q.dispatch(&mut out);
        assert_eq!(bodies(&out), vec![&b"a"[..], b"b"]);
        assert_eq!(out[0].consumer, ConsumerId(1));
        assert_eq!(out[1].consumer, ConsumerId(2));
        assert_eq!(q.message_count(), 2);
        // Acking consumer 2's message frees only consumer 2.
        q.settle(&[out[1].msg_id], Settle::Ack);
        let mut more = Vec::new();
        q.dispatch(&mut more);
        assert_eq!(bodies(&more), vec![&b"c"[..]]);
        assert_eq!(more[0].consumer, ConsumerId(2));
    }

    #[test]
    fn requeued_messages_keep_their_place() {
        let mut q = Queue::new();
        let holder = ch(1);
        for b in ["a", "b", "c"] {
            q.publish(msg(b), None);
        }
        let a = q.get(holder, false).unwrap();
        let b = q.get(holder, false).unwrap();
        q.settle(&[b.msg_id, a.msg_id], Settle::Requeue);
        let order: Vec<_> = std::iter::from_fn(|| q.get(holder, true))
            .map(|g| (g.msg.body.clone(), g.redelivered))
            .collect();
        assert_eq!(
            order,
            vec![
                (Bytes::from_static(b"a"), true),
                (Bytes::from_static(b"b"), true),
                (Bytes::from_static(b"c"), false)
            ]
        );
    }

    #[test]
    fn closing_a_channel_requeues_and_removes_consumers() {
        let mut q = Queue::new();
        q.publish(msg("a"), None);
        q.add_consumer(consumer(1, 1, 0, false)).unwrap();
        let mut out = Vec::new();
        q.dispatch(&mut out);
        assert_eq!(q.message_count(), 0);
        let removed = q.release_channel(ch(1));
        assert_eq!(removed.len(), 1);
        assert_eq!(q.consumer_count(), 0);
        assert_eq!(q.message_count(), 1);
        assert!(q.get(ch(2), true).unwrap().redelivered);
    }

    #[test]
    fn no_ack_consumers_are_bounded_by_transport_credit() {
        let mut q = Queue::new();
        for _ in 0..TRANSPORT_WINDOW + 10 {
            q.publish(msg("x"), None);
        }
        q.add_consumer(consumer(1, 1, 0, true)).unwrap();
        let mut out = Vec::new();
        q.dispatch(&mut out);
        assert_eq!(out.len() as u32, TRANSPORT_WINDOW);
        assert_eq!(q.unacked_count(), 0);
        q.credit(ConsumerId(1), 5);
        out.clear();
        q.dispatch(&mut out);
        assert_eq!(out.len(), 5);
    }

    #[test]
    fn exclusive_consumers_exclude() {
        let mut q = Queue::new();
        q.add_consumer(consumer(1, 1, 0, false)).unwrap();
        let mut ex = consumer(2, 1, 0, false);
        ex.exclusive = true;
        assert_eq!(
            q.add_consumer(ex.clone()),
            Err(ConsumeError::ExclusiveInUse)
        );
        q.remove_consumer(ConsumerId(1));
        q.add_consumer(ex).unwrap();
        assert_eq!(
            q.add_consumer(consumer(3, 1, 0, false)),
            Err(ConsumeError::ExclusiveInUse)
        );
    }

    #[test]
    fn purge_keeps_unacked() {
        let mut q = Queue::new();
        q.publish(msg("a"), None);
        q.publish(msg("b"), None);
        let a = q.get(ch(1), false).unwrap();
        assert_eq!(q.purge(), 1);
        q.settle(&[a.msg_id], Settle::Requeue);
        assert_eq!(q.message_count(), 1);
    }
}
