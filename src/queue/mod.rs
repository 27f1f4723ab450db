//! One queue: its ready messages, consumers and unacknowledged deliveries.
//!
//! Pure state, no I/O: the owning shard calls in and ships the resulting
//! [`Delivery`]s to wherever the consumer's connection lives. Message ids are
//! queue-local and increase with publication order, so a requeued message
//! goes back to its original place (RabbitMQ's behaviour) by id order.
pub mod message;

use ahash::AHashMap;
use std::collections::{BTreeMap, VecDeque};

pub use message::{Message, MessageData};

use crate::codec::ShortStr;

pub type MsgId = u64;
/// Globally unique (the creating shard is in the high bits).
pub type ConsumerId = u64;

/// Most deliveries a consumer may have on their way to its socket (delivered
/// by the queue, not yet written by the connection). Bounds memory for
/// no-ack and unlimited-prefetch consumers; the connection hands credit back
/// as it writes.
pub const TRANSPORT_WINDOW: u32 = 2048;

/// A channel anywhere in the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelRef {
    pub shard: u16,
    pub conn: u64,
    pub channel: u16,
    /// Tells a reopened channel number from the one that was closed, so a
    /// late delivery to the old one is not taken by the new one.
    pub epoch: u32,
}

#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub id: ConsumerId,
    pub channel: ChannelRef,
    pub tag: ShortStr,
    pub no_ack: bool,
    pub exclusive: bool,
    /// 0 = unlimited.
    pub prefetch: u32,
}

#[derive(Debug)]
struct Consumer {
    spec: ConsumerSpec,
    unacked: u32,
    unsent: u32,
}

impl Consumer {
    fn has_capacity(&self) -> bool {
        self.unsent < TRANSPORT_WINDOW
            && (self.spec.no_ack || self.spec.prefetch == 0 || self.unacked < self.spec.prefetch)
    }
}

#[derive(Debug)]
struct Ready {
    id: MsgId,
    msg: Message,
    redelivered: bool,
}

#[derive(Debug)]
struct Unacked {
    holder: ChannelRef,
    consumer: Option<ConsumerId>,
    msg: Message,
}

/// A message handed to a consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub consumer: ConsumerId,
    pub channel: ChannelRef,
    pub consumer_tag: ShortStr,
    pub msg_id: MsgId,
    pub redelivered: bool,
    pub no_ack: bool,
    pub msg: Message,
}

/// A message taken by basic.get.
#[derive(Debug)]
pub struct GetResult {
    pub msg_id: MsgId,
    pub redelivered: bool,
    pub msg: Message,
    /// Messages left ready after this one.
    pub remaining: u32,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ConsumeError {
    /// 403 ACCESS_REFUSED: an exclusive consumer holds the queue, or one was
    /// asked for while others consume.
    ExclusiveInUse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    Ack,
    Requeue,
    Drop,
}

#[derive(Debug, Default)]
pub struct Queue {
    next_id: MsgId,
    ready: VecDeque<Ready>,
    /// Requeued messages, ordered by their original id.
    returned: BTreeMap<MsgId, Ready>,
    unacked: AHashMap<MsgId, Unacked>,
    consumers: VecDeque<Consumer>,
    /// Next consumer to try, for round-robin.
    cursor: usize,
}

impl Queue {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn message_count(&self) -> u32 {
        (self.ready.len() + self.returned.len()) as u32
    }

    pub fn consumer_count(&self) -> u32 {
        self.consumers.len() as u32
    }

    pub fn unacked_count(&self) -> u32 {
        self.unacked.len() as u32
    }

    pub fn has_consumer(&self, id: ConsumerId) -> bool {
        self.consumers.iter().any(|c| c.spec.id == id)
    }

    pub fn publish(&mut self, msg: Message) -> MsgId {
        let id = self.next_id;
        self.next_id += 1;
        self.ready.push_back(Ready {
            id,
            msg,
            redelivered: false,
        });
        id
    }

    fn pop_ready(&mut self) -> Option<Ready> {
        let returned_first = self.returned.keys().next().copied();
        match (returned_first, self.ready.front()) {
            (Some(r), Some(front)) if front.id < r => self.ready.pop_front(),
            (Some(_), _) => self.returned.pop_first().map(|(_, m)| m),
            (None, _) => self.ready.pop_front(),
        }
    }

    pub fn add_consumer(&mut self, spec: ConsumerSpec) -> Result<(), ConsumeError> {
        let exclusive_held = self.consumers.iter().any(|c| c.spec.exclusive);
        if exclusive_held || (spec.exclusive && !self.consumers.is_empty()) {
            return Err(ConsumeError::ExclusiveInUse);
        }
        self.consumers.push_back(Consumer {
            spec,
            unacked: 0,
            unsent: 0,
        });
        Ok(())
    }

    /// Removes a consumer. Its unacked messages stay unacked on its channel
    /// (AMQP: cancelling does not requeue).
    pub fn remove_consumer(&mut self, id: ConsumerId) -> Option<ConsumerSpec> {
        let pos = self.consumers.iter().position(|c| c.spec.id == id)?;
        if pos < self.cursor {
            self.cursor -= 1;
        }
        self.consumers.remove(pos).map(|c| c.spec)
    }

    /// Removes every consumer and returns them (queue deletion).
    pub fn drain_consumers(&mut self) -> Vec<ConsumerSpec> {
        self.cursor = 0;
        self.consumers.drain(..).map(|c| c.spec).collect()
    }

    fn consumer_mut(&mut self, id: ConsumerId) -> Option<&mut Consumer> {
        self.consumers.iter_mut().find(|c| c.spec.id == id)
    }

    /// Hands ready messages to consumers with capacity, round-robin.
    pub fn dispatch(&mut self, out: &mut Vec<Delivery>) {
        if self.consumers.is_empty() {
            return;
        }
        while self.message_count() > 0 {
            let n = self.consumers.len();
            let Some(offset) =
                (0..n).find(|i| self.consumers[(self.cursor + i) % n].has_capacity())
            else {
                return;
            };
            let idx = (self.cursor + offset) % n;
            self.cursor = (idx + 1) % n;
            let Some(ready) = self.pop_ready() else {
                return;
            };
            let c = &mut self.consumers[idx];
            c.unsent += 1;
            if !c.spec.no_ack {
                c.unacked += 1;
                self.unacked.insert(
                    ready.id,
                    Unacked {
                        holder: c.spec.channel,
                        consumer: Some(c.spec.id),
                        msg: ready.msg.clone(),
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
        if let Some(c) = self.consumer_mut(consumer) {
            c.unsent = c.unsent.saturating_sub(n);
        }
    }

    pub fn get(&mut self, holder: ChannelRef, no_ack: bool) -> Option<GetResult> {
        let ready = self.pop_ready()?;
        if !no_ack {
            self.unacked.insert(
                ready.id,
                Unacked {
                    holder,
                    consumer: None,
                    msg: ready.msg.clone(),
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
            if let Some(cid) = u.consumer {
                if let Some(c) = self.consumer_mut(cid) {
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
                    },
                );
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
        let mut removed = Vec::new();
        while let Some(pos) = self.consumers.iter().position(|c| c.spec.channel == ch) {
            if pos < self.cursor {
                self.cursor -= 1;
            }
            if let Some(c) = self.consumers.remove(pos) {
                removed.push(c.spec);
            }
        }
        if self.cursor >= self.consumers.len() {
            self.cursor = 0;
        }
        removed
    }

    /// Drops every ready message (unacked ones stay); returns how many.
    pub fn purge(&mut self) -> u32 {
        let n = self.message_count();
        self.ready.clear();
        self.returned.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            shard: 0,
            conn: 1,
            channel: n,
            epoch: 0,
        }
    }

    fn consumer(id: u64, channel: u16, prefetch: u32, no_ack: bool) -> ConsumerSpec {
        ConsumerSpec {
            id,
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
            q.publish(msg(b));
        }
        q.add_consumer(consumer(1, 1, 1, false)).unwrap();
        q.add_consumer(consumer(2, 1, 1, false)).unwrap();
        let mut out = Vec::new();
        q.dispatch(&mut out);
        assert_eq!(bodies(&out), vec![&b"a"[..], b"b"]);
        assert_eq!(out[0].consumer, 1);
        assert_eq!(out[1].consumer, 2);
        assert_eq!(q.message_count(), 2);
        // Acking consumer 2's message frees only consumer 2.
        q.settle(&[out[1].msg_id], Settle::Ack);
        let mut more = Vec::new();
        q.dispatch(&mut more);
        assert_eq!(bodies(&more), vec![&b"c"[..]]);
        assert_eq!(more[0].consumer, 2);
    }

    #[test]
    fn requeued_messages_keep_their_place() {
        let mut q = Queue::new();
        let holder = ch(1);
        for b in ["a", "b", "c"] {
            q.publish(msg(b));
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
        q.publish(msg("a"));
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
            q.publish(msg("x"));
        }
        q.add_consumer(consumer(1, 1, 0, true)).unwrap();
        let mut out = Vec::new();
        q.dispatch(&mut out);
        assert_eq!(out.len() as u32, TRANSPORT_WINDOW);
        assert_eq!(q.unacked_count(), 0);
        q.credit(1, 5);
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
        q.remove_consumer(1);
        q.add_consumer(ex).unwrap();
        assert_eq!(
            q.add_consumer(consumer(3, 1, 0, false)),
            Err(ConsumeError::ExclusiveInUse)
        );
    }

    #[test]
    fn purge_keeps_unacked() {
        let mut q = Queue::new();
        q.publish(msg("a"));
        q.publish(msg("b"));
        let a = q.get(ch(1), false).unwrap();
        assert_eq!(q.purge(), 1);
        q.settle(&[a.msg_id], Settle::Requeue);
        assert_eq!(q.message_count(), 1);
    }
}
