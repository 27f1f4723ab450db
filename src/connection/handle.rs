//! The side of a connection the rest of the shard sees: its output buffer
//! and its channels' delivery state. Deliveries from queues (local, or
//! forwarded from other shards) land here via [`ConnHandle::deliver`].
use ahash::AHashMap;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Instant;

use super::channel::{Confirm, PublishTracker, ReplyConsumer};
use super::output::Output;
use crate::codec::{self, BasicCancel, BasicDeliver, Method, ShortStr};
use crate::ids::{ChannelRef, ConnId, ConsumerId, MsgId, QueueRef};
use crate::queue::Settle;
use crate::runtime::net::ConnSocket;
use crate::runtime::sync::Event;
use crate::shard::{ChannelInfo, ConnInfo, ConnState, LocalConn, RoutedDelivery, Shard};

/// An unacked delivery as the channel remembers it.
#[derive(Debug, Clone, Copy)]
pub struct UnackedTag {
    pub tag: u64,
    pub queue: QueueRef,
    pub msg_id: MsgId,
    /// False for basic.get, whose messages do not count against qos.
    pub from_consumer: bool,
}

#[derive(Debug)]
pub struct ConsumerInfo {
    pub queue: QueueRef,
    pub id: ConsumerId,
    /// consume-ok written: deliveries may go out.
    pub ready: bool,
    /// Deliveries that arrived before consume-ok went out.
    pub early: Vec<RoutedDelivery>,
}

#[derive(Debug, Default)]
pub struct ChannelDeliveries {
    pub epoch: u32,
    pub open: bool,
    pub next_tag: u64,
    /// Sorted by tag (tags only grow).
    pub unacked: VecDeque<UnackedTag>,
    pub consumers: AHashMap<ShortStr, ConsumerInfo>,
    /// basic.qos global: limit across the channel; 0 = none.
    pub global_prefetch: u32,
    pub consumer_unacked: u32,
    /// Deliveries held back by the global limit.
    pub held: VecDeque<RoutedDelivery>,
    /// Publishes waiting for queues on other shards (confirm or tx mode).
    pub publishes: Option<PublishTracker>,
    /// Confirm mode: acknowledge publishes to the client.
    pub send_confirms: bool,
    /// basic.qos prefetch for new consumers, for listings.
    pub prefetch: u16,
    /// The direct reply-to consumer (`channel/reply_to.rs`).
    pub reply: Option<ReplyConsumer>,
}

/// What the reader learnt about its connection, for listings.
#[derive(Debug, Clone)]
pub struct ConnMeta {
    pub user: String,
    pub vhost: String,
    pub peer: Option<std::net::SocketAddr>,
    pub local: Option<std::net::SocketAddr>,
    pub connected_at_ms: u64,
    pub client_properties: codec::FieldTable,
    pub auth_mechanism: String,
    pub ssl_protocol: Option<&'static str>,
    pub peer_cert_subject: String,
    pub state: ConnState,
    pub heartbeat: u16,
    pub channel_max: u16,
}

/// Deliveries written per (queue, consumer) since the last credit return.
/// Runs of deliveries for one consumer are the common case, so the latest
/// key is counted beside the map and reaches it only when another key
/// comes (callgrind: the map's entry was 71 instructions per delivery).
#[derive(Default)]
pub struct CreditTally {
    last: Option<((QueueRef, ConsumerId), u32)>,
    rest: AHashMap<(QueueRef, ConsumerId), u32>,
}

impl CreditTally {
    fn add(&mut self, key: (QueueRef, ConsumerId)) {
        match &mut self.last {
            Some((k, n)) if *k == key => *n += 1,
            last => {
                if let Some((k, n)) = last.replace((key, 1)) {
                    *self.rest.entry(k).or_insert(0) += n;
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.last.is_none() && self.rest.is_empty()
    }

    /// Every count, each key once; leaves the tally empty with its map's
    /// capacity kept.
    fn drain(&mut self) -> impl Iterator<Item = ((QueueRef, ConsumerId), u32)> + '_ {
        let mut last = self.last.take();
        if !self.rest.is_empty() {
            if let Some((k, n)) = last.take() {
                *self.rest.entry(k).or_insert(0) += n;
            }
        }
        last.into_iter().chain(self.rest.drain())
    }
}

/// The side of a connection that its shard and the connection's own tasks
/// share: the output buffer the writer drains, and each channel's delivery
/// state. The shard reaches it only through [`LocalConn`].
pub struct ConnHandle {
    pub id: ConnId,
    pub shard: Rc<Shard>,
    pub out: RefCell<Output>,
    pub write_ready: Event,
    pub frame_max: Cell<u32>,
    pub closed: Cell<bool>,
    pub last_write: Cell<Instant>,
    pub cancel_notify: Cell<bool>,
    pub next_epoch: Cell<u32>,
    /// Boxed for the same reason as `Conn::channels`: idle connections.
    pub channels: RefCell<AHashMap<u16, Box<ChannelDeliveries>>>,
    /// Notified whenever a queue accepts one of this connection's publishes.
    pub accepted: Event,
    /// Deliveries written since the last credit return, per consumer.
    pub credits: RefCell<CreditTally>,
    /// Channels whose confirms the shard's pump will have us send.
    confirms_due: RefCell<Vec<u16>>,
    /// A queue could not store one of our plain publishes: the reader
    /// closes the connection with 541.
    pub store_failed: Cell<bool>,
    /// For listings.
    pub meta: RefCell<ConnMeta>,
    /// Bytes and reads, writes, publishes and confirms, for listings and
    /// rates.
    pub stats: crate::metrics::ConnCounters,
    /// An operator closed the connection: the reader sends this
    /// connection.close once its read ends.
    pub forced: RefCell<Option<(u16, String)>>,
    socket: ConnSocket,
}

impl ConnHandle {
    pub fn new(id: ConnId, shard: Rc<Shard>, socket: ConnSocket) -> Rc<Self> {
        let connected_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let meta = ConnMeta {
            user: String::new(),
            vhost: String::new(),
            peer: socket.peer_addr().ok(),
            local: socket.local_addr().ok(),
            connected_at_ms,
            client_properties: codec::FieldTable::new(),
            auth_mechanism: String::new(),
            ssl_protocol: socket.tls_protocol(),
            peer_cert_subject: String::new(),
            state: ConnState::Starting,
            heartbeat: 0,
            channel_max: 0,
        };
        Rc::new(ConnHandle {
            meta: RefCell::new(meta),
            stats: Default::default(),
            forced: RefCell::new(None),
            socket,
            id,
            shard,
            out: RefCell::new(Output::default()),
            write_ready: Event::default(),
            frame_max: Cell::new(codec::FRAME_MIN_SIZE),
            closed: Cell::new(false),
            last_write: Cell::new(Instant::now()),
            cancel_notify: Cell::new(false),
            next_epoch: Cell::new(0),
            channels: RefCell::new(AHashMap::new()),
            accepted: Event::default(),
            credits: RefCell::new(CreditTally::default()),
            confirms_due: RefCell::new(Vec::new()),
            store_failed: Cell::new(false),
        })
    }

    pub fn send_method(&self, channel: u16, method: &Method) {
        codec::encode_method(&mut self.out.borrow_mut(), channel, method);
        self.write_ready.notify();
    }

    fn emit(&self, channel: u16, ch: &mut ChannelDeliveries, d: RoutedDelivery) {
        ch.next_tag += 1;
        let tag = ch.next_tag;
        let del = &d.delivery;
        if !del.no_ack {
            ch.unacked.push_back(UnackedTag {
                tag,
                queue: d.queue,
                msg_id: del.msg_id,
                from_consumer: true,
            });
            ch.consumer_unacked += 1;
        }
        let msg = &del.msg;
        let mut out = self.out.borrow_mut();
        codec::encode_method(
            &mut out,
            channel,
            &Method::BasicDeliver(BasicDeliver {
                consumer_tag: del.consumer_tag.clone(),
                delivery_tag: tag,
                redelivered: del.redelivered,
                exchange: msg.exchange.clone(),
                routing_key: msg.routing_key.clone(),
            }),
        );
        out.encode_content(
            channel,
            &msg.raw_properties,
            &msg.body,
            self.frame_max.get(),
        );
        drop(out);
        self.credits.borrow_mut().add((d.queue, del.consumer));
        self.write_ready.notify();
    }

    /// Marks a consumer's consume-ok as written and sends what waited for it.
    pub fn consumer_ready(&self, channel: u16, tag: &str) {
        let early = {
            let mut channels = self.channels.borrow_mut();
            let Some(c) = channels
                .get_mut(&channel)
                .and_then(|ch| ch.consumers.get_mut(tag))
            else {
                return;
            };
            c.ready = true;
            std::mem::take(&mut c.early)
        };
        for d in early {
            self.deliver(d);
        }
    }

    /// Consumer-acked deliveries left the channel: release held ones.
    pub fn release_held(&self, channel: u16, acked_from_consumers: u32) {
        let mut channels = self.channels.borrow_mut();
        let Some(ch) = channels.get_mut(&channel) else {
            return;
        };
        ch.consumer_unacked = ch.consumer_unacked.saturating_sub(acked_from_consumers);
        while ch.global_prefetch == 0 || ch.consumer_unacked < ch.global_prefetch {
            let Some(d) = ch.held.pop_front() else { break };
            self.emit(channel, ch, d);
        }
    }

    /// Sends the publisher confirm that became due, if any.
    pub fn flush_confirms(&self, channel: u16) {
        let mut confirms: smallvec::SmallVec<[Confirm; 2]> = smallvec::SmallVec::new();
        {
            let mut channels = self.channels.borrow_mut();
            let Some(t) = channels
                .get_mut(&channel)
                .filter(|c| c.open && c.send_confirms)
                .and_then(|c| c.publishes.as_mut())
            else {
                return;
            };
            let acked = t.take_confirms(&mut confirms);
            self.stats.confirmed.add(acked);
            self.shard.metrics().confirmed.add(acked);
        }
        for c in confirms {
            let method = if c.ack {
                Method::BasicAck(codec::BasicAck {
                    delivery_tag: c.tag,
                    multiple: c.multiple,
                })
            } else {
                Method::BasicNack(codec::BasicNack {
                    delivery_tag: c.tag,
                    multiple: c.multiple,
                    requeue: false,
                })
            };
            self.send_method(channel, &method);
        }
    }

    /// Channel `channel` has confirms (or a commit) to release: asks the
    /// shard's pump to have them sent after the batch in hand.
    fn confirm_due(&self, channel: u16) {
        let mut due = self.confirms_due.borrow_mut();
        if due.is_empty() {
            self.shard.confirms_due(self.id);
        }
        if !due.contains(&channel) {
            due.push(channel);
        }
        drop(due);
        self.accepted.notify();
    }

    /// A queue's answer for numbered publish `seq` of `ch_ref`.
    fn answered(&self, ch_ref: ChannelRef, seq: u64, stored: bool) {
        {
            let mut channels = self.channels.borrow_mut();
            let Some(ch) = channels
                .get_mut(&ch_ref.channel)
                .filter(|c| c.open && c.epoch == ch_ref.epoch)
            else {
                return;
            };
            if let Some(t) = ch.publishes.as_mut() {
                t.answered(seq, stored);
            }
        }
        self.confirm_due(ch_ref.channel);
    }

    /// Whether a publish of this channel was refused since the last ask.
    pub fn take_refusals(&self, channel: u16) -> bool {
        self.channels
            .borrow_mut()
            .get_mut(&channel)
            .and_then(|c| c.publishes.as_mut())
            .is_some_and(PublishTracker::take_refusals)
    }

    /// Whether every publish of this channel has been accepted.
    pub fn publishes_settled(&self, channel: u16) -> bool {
        self.channels
            .borrow()
            .get(&channel)
            .and_then(|c| c.publishes.as_ref())
            .is_none_or(PublishTracker::is_idle)
    }

    /// After a write: the written deliveries free their consumers' windows.
    pub fn return_credits(&self) {
        // `Shard::credit` can call back into this connection: it schedules a
        // pump, and `runtime::spawn` runs a new task at once, so
        // dispatch may deliver here (and count credits) before it returns.
        // Drain a map taken out of the cell; put it back, keeping its
        // capacity, unless credits arrived meanwhile.
        let mut credits = std::mem::take(&mut *self.credits.borrow_mut());
        for ((queue, consumer), n) in credits.drain() {
            self.shard.credit(queue, consumer, n);
        }
        let mut cell = self.credits.borrow_mut();
        if cell.is_empty() {
            *cell = credits;
        }
    }
}

impl LocalConn for ConnHandle {
    /// Takes a delivery for one of this connection's consumers.
    fn deliver(&self, d: RoutedDelivery) {
        let ch_ref = d.delivery.channel;
        let mut channels = self.channels.borrow_mut();
        let live = channels
            .get_mut(&ch_ref.channel)
            .filter(|c| c.open && c.epoch == ch_ref.epoch);
        let Some(ch) = live else {
            // The channel closed; its release requeues unacked messages.
            return;
        };
        let consumer = ch.consumers.get_mut(&d.delivery.consumer_tag);
        match consumer {
            Some(c) if c.id == d.delivery.consumer => {
                if !c.ready {
                    c.early.push(d);
                    return;
                }
            }
            _ => {
                // Cancelled while this was on its way: give it back.
                drop(channels);
                if !d.delivery.no_ack {
                    self.shard
                        .settle(d.queue, vec![d.delivery.msg_id], Settle::Requeue);
                }
                self.shard.credit(d.queue, d.delivery.consumer, 1);
                return;
            }
        }
        if !d.delivery.no_ack && ch.global_prefetch > 0 && ch.consumer_unacked >= ch.global_prefetch
        {
            ch.held.push_back(d);
            return;
        }
        self.emit(ch_ref.channel, ch, d);
    }

    /// A queue took publish `seq` of this channel.
    fn accepted(&self, ch_ref: ChannelRef, seq: u64) {
        self.answered(ch_ref, seq, true);
    }

    fn refused(&self, ch_ref: ChannelRef, seq: Option<u64>) {
        match seq {
            Some(seq) => self.answered(ch_ref, seq, false),
            // A plain publish lost: the reader closes the connection (541)
            // when it next looks.
            None => self.store_failed.set(true),
        }
    }

    fn send_confirms(&self) {
        let due = std::mem::take(&mut *self.confirms_due.borrow_mut());
        for channel in due {
            self.flush_confirms(channel);
        }
    }

    fn info(&self) -> ConnInfo {
        let m = self.meta.borrow().clone();
        let mut channels: Vec<ChannelInfo> = self
            .channels
            .borrow()
            .iter()
            .filter(|(_, c)| c.open)
            .map(|(&number, c)| ChannelInfo {
                number,
                consumers: c.consumers.len() as u32,
                unacked: c.unacked.len() as u32,
                prefetch: c.prefetch,
                global_prefetch: c.global_prefetch,
                confirm: c.send_confirms,
                unconfirmed: match &c.publishes {
                    Some(t) if c.send_confirms => t.unconfirmed() as u32,
                    _ => 0,
                },
                transactional: c.publishes.is_some() && !c.send_confirms,
            })
            .collect();
        channels.sort_by_key(|c| c.number);
        ConnInfo {
            id: self.id,
            shard: self.shard.id(),
            user: m.user,
            vhost: m.vhost,
            peer: m.peer,
            local: m.local,
            state: if self.forced.borrow().is_some() {
                ConnState::Closing
            } else {
                m.state
            },
            connected_at_ms: m.connected_at_ms,
            client_properties: m.client_properties,
            auth_mechanism: m.auth_mechanism,
            ssl_protocol: m.ssl_protocol,
            peer_cert_subject: m.peer_cert_subject,
            frame_max: self.frame_max.get(),
            heartbeat: m.heartbeat,
            channel_max: m.channel_max,
            channels,
            stats: self.stats.snapshot(),
        }
    }

    fn deliver_reply(&self, ch: ChannelRef, key: u128, msg: crate::queue::Message) {
        self.deliver_reply_here(ch, key, msg);
    }

    fn has_reply_consumer(&self, ch: ChannelRef, key: u128) -> bool {
        self.has_reply_consumer_here(ch, key)
    }

    fn force_close(&self, code: u16, text: String) {
        let mut forced = self.forced.borrow_mut();
        if forced.is_none() {
            *forced = Some((code, text));
            // Wakes the reader wherever it waits: its read ends at once.
            self.socket.shutdown_read();
        }
    }

    /// The queue behind a consumer went away (basic.cancel from the server).
    fn server_cancel(&self, ch_ref: ChannelRef, tag: &ShortStr) {
        let removed = {
            let mut channels = self.channels.borrow_mut();
            match channels.get_mut(&ch_ref.channel) {
                Some(ch) if ch.open && ch.epoch == ch_ref.epoch => {
                    ch.consumers.remove(tag).is_some()
                }
                _ => false,
            }
        };
        if removed && self.cancel_notify.get() {
            self.send_method(
                ch_ref.channel,
                &Method::BasicCancel(BasicCancel {
                    consumer_tag: tag.clone(),
                    no_wait: true,
                }),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{QueueId, ShardId};

    fn key(q: u64, c: u64) -> (QueueRef, ConsumerId) {
        let queue = QueueRef {
            id: QueueId(q),
            owner: ShardId(0),
        };
        (queue, ConsumerId(c))
    }

    #[test]
    fn credit_tally_sums_each_key_once() {
        let mut t = CreditTally::default();
        assert!(t.is_empty());
        for k in [
            key(1, 1),
            key(1, 1),
            key(2, 7),
            key(1, 1),
            key(2, 7),
            key(3, 3),
        ] {
            t.add(k);
        }
        let mut got: Vec<_> = t.drain().map(|((q, c), n)| (q.id.0, c.0, n)).collect();
        got.sort();
        assert_eq!(got, vec![(1, 1, 3), (2, 7, 2), (3, 3, 1)]);
        assert!(t.is_empty());
        t.add(key(4, 4));
        assert_eq!(t.drain().map(|(_, n)| n).collect::<Vec<_>>(), vec![1]);
    }
}
