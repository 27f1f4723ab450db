//! One queue: its ready messages, consumers and unacknowledged deliveries.
//!
//! Pure state, no I/O: the owning shard calls in and ships the resulting
//! [`Delivery`]s to wherever the consumer's connection lives. Message ids are
//! queue-local and increase with publication order, so a requeued message
//! goes back to its original place (RabbitMQ's behaviour) by id order.
//!
//! What RabbitMQ's queue arguments ask for lives here too, paid for only
//! by queues that use it: a priority queue keeps one [`Lane`] per priority
//! (others have one); message TTL gives each message a deadline the queue
//! checks at its head; length limits drop the head or refuse the publish;
//! what leaves that way (and rejections) becomes a [`DeadLetter`] for the
//! shard to route.
#![warn(missing_docs)]
pub mod config;
mod consumers;
pub mod dead_letter;
pub mod message;
pub mod paged;

use ahash::AHashMap;
use std::collections::{BTreeMap, VecDeque};

pub use config::{Overflow, QueueConfig, QueueKind};
pub use message::{Message, MessageData};
pub use paged::PagedEntry;

use crate::codec::ShortStr;
use crate::ids::{ChannelRef, ConsumerId, Loc, MsgId};
use crate::metrics::QueueCounters;
use consumers::Consumers;
pub use consumers::{check_consume_arguments, ConsumerActivity};
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

/// A deadline that never comes.
const NEVER: u64 = u64::MAX;

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
    /// When it expires (ms on the shard's clock), or [`NEVER`].
    expires: u64,
    /// Times it came back unacknowledged (quorum queues' delivery count).
    returns: u32,
}

#[derive(Debug)]
struct Unacked {
    holder: ChannelRef,
    consumer: Option<ConsumerId>,
    msg: Message,
    loc: Option<Loc>,
    expires: u64,
    returns: u32,
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
    /// Rejected without requeue: gone (dead-lettered when the queue has
    /// a dead-letter exchange).
    Drop,
}

/// Why a message left its queue as a dead letter: RabbitMQ's `reason`
/// in `x-death`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeathReason {
    /// basic.reject or basic.nack without requeue.
    Rejected,
    /// Its TTL passed.
    Expired,
    /// The queue's length limit pushed it out (or refused it).
    MaxLen,
    /// A quorum queue's delivery limit.
    DeliveryLimit,
}

impl DeathReason {
    /// The reason as `x-death` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            DeathReason::Rejected => "rejected",
            DeathReason::Expired => "expired",
            DeathReason::MaxLen => "maxlen",
            DeathReason::DeliveryLimit => "delivery_limit",
        }
    }
}

/// A message that left the queue for its dead-letter exchange.
#[derive(Debug)]
pub struct DeadLetter {
    /// The message as it was in the queue.
    pub msg: Message,
    /// Why.
    pub reason: DeathReason,
}

/// One priority's messages: ready ones in memory (in id order, requeued
/// ones apart so they regain their place), then the paged backlog.
#[derive(Debug, Default)]
struct Lane {
    ready: VecDeque<Ready>,
    /// Requeued messages (and, in a priority queue, recovered ones read
    /// back into another lane), ordered by id.
    returned: BTreeMap<MsgId, Ready>,
    /// Backlog beyond the memory window, oldest first; after `ready`.
    paged: PagedList,
}

impl Lane {
    fn in_memory(&self) -> usize {
        self.ready.len() + self.returned.len()
    }

    fn len(&self) -> usize {
        self.in_memory() + self.paged.len()
    }

    /// The message that leaves next, of those in memory.
    fn head(&self) -> Option<&Ready> {
        match (self.returned.first_key_value(), self.ready.front()) {
            (Some((_, r)), Some(front)) if front.id < r.id => Some(front),
            (Some((_, r)), _) => Some(r),
            (None, front) => front,
        }
    }

    #[inline(always)]
    fn pop(&mut self) -> Option<Ready> {
        let returned_first = self.returned.keys().next().copied();
        match (returned_first, self.ready.front()) {
            (Some(r), Some(front)) if front.id < r => self.ready.pop_front(),
            (Some(_), _) => self.returned.pop_first().map(|(_, m)| m),
            (None, _) => self.ready.pop_front(),
        }
    }

    /// Puts a message back in id order: the back of `ready` when it is
    /// the newest, else among the returned.
    #[inline(always)]
    fn insert(&mut self, r: Ready) {
        if self.ready.back().is_none_or(|b| b.id < r.id) {
            self.ready.push_back(r);
        } else {
            self.returned.insert(r.id, r);
        }
    }

    fn find_mut(&mut self, id: MsgId) -> Option<&mut Ready> {
        if let Ok(i) = self.ready.binary_search_by_key(&id, |r| r.id) {
            return self.ready.get_mut(i);
        }
        self.returned.get_mut(&id)
    }

    fn locs(&self) -> impl Iterator<Item = Loc> + '_ {
        let ready = self.ready.iter().filter_map(|r| r.loc);
        let returned = self.returned.values().filter_map(|r| r.loc);
        let paged = self.paged.iter().filter_map(|e| e.loc());
        ready.chain(returned).chain(paged)
    }
}

/// One queue's state. Messages leave in id order within a priority
/// (requeued ones regain their place), highest priority first, and go to
/// consumers as [`consumers`] chooses.
#[derive(Debug)]
pub struct Queue {
    config: QueueConfig,
    next_id: MsgId,
    /// One lane per priority, lowest first (one for most queues).
    lanes: Vec<Lane>,
    unacked: AHashMap<MsgId, Unacked>,
    consumers: Consumers,
    /// Transient messages that arrived while the backlog was paged: they
    /// keep their place in a lane's `paged` but their bodies stay here.
    paged_mem: AHashMap<MsgId, Message>,
    /// Deadlines of paged messages that have one.
    paged_deadlines: AHashMap<MsgId, u64>,
    /// Messages in memory (all lanes) and their body bytes.
    mem_count: usize,
    mem_bytes: u64,
    /// Body bytes of paged messages, as far as known (those recovered
    /// after a restart count once read back).
    paged_bytes: u64,
    /// Ready messages (anywhere) with a deadline: while 0, no clock is read.
    expiring: usize,
    /// Ids below this were recovered from the log: their TTL starts when
    /// they are read back (the log keeps no enqueue time).
    restored_below: MsgId,
    log_events: Vec<LogEvent>,
    dead: Vec<DeadLetter>,
    /// What the queue did, for message rates.
    counters: QueueCounters,
}

impl Default for Queue {
    fn default() -> Self {
        Self::with_config(QueueConfig::default())
    }
}

impl Queue {
    /// An empty queue with RabbitMQ's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty queue that behaves as `config` says.
    pub fn with_config(config: QueueConfig) -> Self {
        let lanes = config.max_priority.map_or(1, |p| p as usize + 1);
        Queue {
            config,
            next_id: 0,
            lanes: (0..lanes).map(|_| Lane::default()).collect(),
            unacked: AHashMap::new(),
            consumers: Consumers::default(),
            paged_mem: AHashMap::new(),
            paged_deadlines: AHashMap::new(),
            mem_count: 0,
            mem_bytes: 0,
            paged_bytes: 0,
            expiring: 0,
            restored_below: 0,
            log_events: Vec::new(),
            dead: Vec::new(),
            counters: QueueCounters::default(),
        }
    }

    /// What the queue's arguments and policy ask of it.
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// A policy changed the queue's settings (the number of priorities
    /// stays: it is an argument only). New limits apply at once.
    pub fn set_config(&mut self, config: QueueConfig) {
        let max_priority = self.config.max_priority;
        self.config = QueueConfig {
            max_priority,
            ..config
        };
        self.enforce_limits();
    }

    /// Messages ready for delivery, in memory or paged; unacked ones are not
    /// counted.
    pub fn message_count(&self) -> u32 {
        self.lanes.iter().map(Lane::len).sum::<usize>() as u32
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
        self.mem_bytes
    }

    /// Body bytes of every ready message, in memory or paged (what
    /// `x-max-length-bytes` limits).
    pub fn total_bytes(&self) -> u64 {
        self.mem_bytes + self.paged_bytes
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

    /// Whether publishing `msg` needs the clock (a TTL applies to it).
    #[inline]
    pub fn needs_clock(&self, msg: &MessageData) -> bool {
        self.config.message_ttl.is_some() || msg.expiration_ms.is_some()
    }

    /// Whether any ready message has a deadline: the shard passes the
    /// clock to [`dispatch`](Self::dispatch) and arms a timer only then.
    pub fn has_deadlines(&self) -> bool {
        self.expiring > 0
    }

    /// When `msg` would expire if published now (`now` on the shard's
    /// clock), if a TTL applies to it: the log keeps it for restarts.
    pub fn ttl_deadline(&self, msg: &MessageData, now: u64) -> Option<u64> {
        let d = self.deadline(msg, now);
        (d != NEVER).then_some(d)
    }

    fn deadline(&self, msg: &MessageData, now: u64) -> u64 {
        let queue = self.config.message_ttl.map_or(NEVER, |t| now + t as u64);
        let own = msg.expiration_ms.map_or(NEVER, |t| now + t as u64);
        queue.min(own)
    }

    fn lane_of(&self, msg: &MessageData) -> usize {
        match self.config.max_priority {
            None => 0,
            Some(max) => msg.priority.min(max) as usize,
        }
    }

    /// Whether a publish of `msg` is refused by the length limit
    /// (`reject-publish` and `reject-publish-dlx`).
    #[inline]
    pub fn rejects(&self, msg: &MessageData) -> bool {
        if self.config.overflow == Overflow::DropHead {
            return false;
        }
        let full = self
            .config
            .max_length
            .is_some_and(|max| self.message_count() as u64 >= max);
        let too_big = self
            .config
            .max_length_bytes
            .is_some_and(|max| self.total_bytes() + msg.body_size() > max);
        full || too_big
    }

    /// A publish the length limit refused: counted, and dead-lettered
    /// under `reject-publish-dlx`.
    pub fn reject_publish(&mut self, msg: Message) {
        if self.config.overflow == Overflow::RejectPublishDlx && self.config.dead_letter.is_some() {
            self.dead.push(DeadLetter {
                msg,
                reason: DeathReason::MaxLen,
            });
        }
    }

    /// Enqueues a message; `loc` is its place in the log when it is logged,
    /// `now` the shard's clock (read only when [`needs_clock`](Self::needs_clock)).
    /// A logged message beyond the memory window keeps only its place. A
    /// `drop-head` length limit then pushes the oldest messages out.
    pub fn publish(&mut self, msg: Message, loc: Option<Loc>, now: u64) -> MsgId {
        let id = self.next_id;
        self.next_id += 1;
        self.counters.publish += 1;
        let expires = if self.needs_clock(&msg) {
            self.deadline(&msg, now)
        } else {
            NEVER
        };
        if expires != NEVER {
            self.expiring += 1;
        }
        let lane = self.lane_of(&msg);
        let over_window =
            self.mem_count >= MEMORY_WINDOW_MESSAGES || self.mem_bytes >= MEMORY_WINDOW_BYTES;
        if !self.lanes[lane].paged.is_empty() || (loc.is_some() && over_window) {
            self.lanes[lane]
                .paged
                .push_back(PagedEntry::new(id, loc, false));
            self.paged_bytes += msg.body_size();
            if expires != NEVER {
                self.paged_deadlines.insert(id, expires);
            }
            if loc.is_none() {
                self.paged_mem.insert(id, msg);
            }
        } else {
            self.push_ready(
                lane,
                Ready {
                    id,
                    msg,
                    redelivered: false,
                    loc,
                    expires,
                    returns: 0,
                },
            );
        }
        self.enforce_limits();
        id
    }

    #[inline(always)]
    fn push_ready(&mut self, lane: usize, r: Ready) {
        self.mem_count += 1;
        self.mem_bytes += r.msg.body_size();
        self.lanes[lane].insert(r);
    }

    /// Takes the next message in memory, highest priority first. Inlined
    /// into its callers: returned by value, the `Ready` was copied
    /// through the stack twice per delivery (perf: most of dispatch's time).
    #[inline(always)]
    fn pop_ready(&mut self) -> Option<Ready> {
        let r = match self.lanes.as_mut_slice() {
            [one] => one.pop(),
            lanes => lanes.iter_mut().rev().find_map(Lane::pop),
        }?;
        self.mem_count -= 1;
        self.mem_bytes -= r.msg.body_size();
        Some(r)
    }

    /// Takes the next message that has not expired; expired ones on the
    /// way go (dead-lettered when the queue has a dead-letter exchange).
    #[inline(always)]
    fn pop_live(&mut self, now: Option<u64>) -> Option<Ready> {
        loop {
            let r = self.pop_ready()?;
            match now {
                Some(now) if r.expires < now => self.discard(r, DeathReason::Expired),
                _ => return Some(r),
            }
        }
    }

    /// A ready message leaves for good without a consumer: its log
    /// record is released and, with a dead-letter exchange, it becomes a
    /// dead letter.
    fn discard(&mut self, r: Ready, reason: DeathReason) {
        if r.expires != NEVER {
            self.expiring -= 1;
        }
        if let Some(loc) = r.loc {
            self.log_events.push(LogEvent::Settled(r.id, loc));
        }
        self.dead_letter(r.msg, reason);
    }

    fn dead_letter(&mut self, msg: Message, reason: DeathReason) {
        if self.config.dead_letter.is_some() {
            self.dead.push(DeadLetter { msg, reason });
        }
    }

    /// Expired messages at the head of each priority leave (those behind
    /// an unexpired head wait until they reach it, as in RabbitMQ).
    fn expire_heads(&mut self, now: u64) {
        if self.expiring == 0 {
            return;
        }
        for lane in (0..self.lanes.len()).rev() {
            while self.lanes[lane].head().is_some_and(|h| h.expires <= now) {
                let r = self.lanes[lane].pop().expect("a head");
                self.mem_count -= 1;
                self.mem_bytes -= r.msg.body_size();
                self.discard(r, DeathReason::Expired);
            }
        }
    }

    /// The next deadline of a message at a head (in memory, or the front
    /// of a paged backlog when nothing of its lane is in memory).
    pub fn next_deadline(&self) -> Option<u64> {
        if self.expiring == 0 {
            return None;
        }
        self.lanes
            .iter()
            .filter_map(|l| match l.head() {
                Some(h) => Some(h.expires),
                None => l
                    .paged
                    .iter()
                    .next()
                    .and_then(|e| self.paged_deadlines.get(&e.id()).copied()),
            })
            .filter(|d| *d != NEVER)
            .min()
    }

    /// Whether the queue is over its length limit.
    fn over_limit(&self) -> bool {
        let c = &self.config;
        c.max_length
            .is_some_and(|max| self.message_count() as u64 > max)
            || c.max_length_bytes
                .is_some_and(|max| self.total_bytes() > max)
    }

    /// `drop-head`: the oldest messages go until the queue is within its
    /// limits. True when it is still over them with nothing in memory to
    /// drop: the shard reads more of the backlog back and calls again.
    /// (Called on every publish: the check for a queue without limits is
    /// inlined, the dropping is not.)
    #[inline(always)]
    pub fn enforce_limits(&mut self) -> bool {
        if !self.config.is_limited() || self.config.overflow != Overflow::DropHead {
            return false;
        }
        self.drop_head_over_limit()
    }

    #[inline(never)]
    fn drop_head_over_limit(&mut self) -> bool {
        while self.over_limit() {
            match self.pop_ready() {
                Some(r) => self.discard(r, DeathReason::MaxLen),
                None => return true,
            }
        }
        false
    }

    /// Messages recovered from the log: they start on disk, in order. New
    /// messages get ids from `next_id` on (at least): ids the log still
    /// names are never given out again. (A priority queue sorts them into
    /// their priorities as they are read back.)
    pub fn restore(&mut self, messages: impl IntoIterator<Item = PagedEntry>, next_id: MsgId) {
        self.next_id = self.next_id.max(next_id);
        for e in messages {
            self.next_id = self.next_id.max(e.id() + 1);
            self.lanes[0].paged.push_back(e);
        }
        self.restored_below = self.next_id;
    }

    /// True when the in-memory part of some priority runs low and more of
    /// it is on disk.
    pub fn wants_refill(&self) -> bool {
        self.lanes
            .iter()
            .any(|l| !l.paged.is_empty() && l.in_memory() < REFILL_BELOW)
    }

    /// Takes up to `n` entries off the front of the paged backlog (highest
    /// priority that runs low first); load them and hand each back with
    /// [`refill`](Self::refill), in order.
    pub fn take_paged(&mut self, n: usize) -> Vec<PagedEntry> {
        let mut out = Vec::with_capacity(n.min(REFILL_BELOW));
        for lane in self.lanes.iter_mut().rev() {
            if lane.paged.is_empty() || lane.in_memory() >= REFILL_BELOW {
                continue;
            }
            while out.len() < n {
                match lane.paged.pop_front() {
                    Some(e) => out.push(e),
                    None => break,
                }
            }
        }
        out
    }

    /// A paged entry's message, read back (or `None` when it could not be:
    /// then it is gone, and the caller releases its place in the log).
    /// A message recovered after a restart expires at `logged_deadline`
    /// (on the shard's clock), the one its log record kept; a record
    /// without one (written before the log kept deadlines) starts its TTL
    /// at `now`.
    pub fn refill(
        &mut self,
        e: PagedEntry,
        msg: Option<Message>,
        now: u64,
        logged_deadline: Option<u64>,
    ) {
        let msg = match e.loc() {
            None => self.paged_mem.remove(&e.id()),
            Some(_) => msg,
        };
        let expires = self.paged_deadlines.remove(&e.id()).unwrap_or(NEVER);
        let Some(msg) = msg else {
            if expires != NEVER {
                self.expiring -= 1;
            }
            return;
        };
        let expires = if e.id() < self.restored_below && self.needs_clock(&msg) {
            self.expiring += 1;
            logged_deadline.unwrap_or_else(|| self.deadline(&msg, now))
        } else {
            expires
        };
        self.paged_bytes = self.paged_bytes.saturating_sub(msg.body_size());
        let lane = self.lane_of(&msg);
        let r = Ready {
            id: e.id(),
            msg,
            redelivered: e.redelivered(),
            loc: e.loc(),
            expires,
            returns: 0,
        };
        // A recovered message of a priority queue may land behind newer
        // ones of its priority: `insert` keeps the id order.
        self.push_ready(lane, r);
    }

    /// Every logged message's place (for deleting the queue).
    pub fn logged_locs(&self) -> Vec<Loc> {
        let unacked = self.unacked.values().filter_map(|u| u.loc);
        self.lanes
            .iter()
            .flat_map(Lane::locs)
            .chain(unacked)
            .collect()
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
        if let Some(u) = self.unacked.get_mut(&id) {
            return update(&mut u.loc, true, to);
        }
        let lane = self
            .lanes
            .iter_mut()
            .position(|l| l.find_mut(id).is_some() || l.paged.find_mut(id).is_some());
        let Some(lane) = lane.map(|i| &mut self.lanes[i]) else {
            return false;
        };
        if let Some(r) = lane.find_mut(id) {
            let red = r.redelivered;
            return update(&mut r.loc, red, to);
        }
        let Some(e) = lane.paged.find_mut(id) else {
            return false;
        };
        let Some(new) = e.loc().and_then(|l| to(l, e.redelivered())) else {
            return false;
        };
        lane.paged.relocate(id, new)
    }

    /// Log events since the last call.
    pub fn take_log_events(&mut self) -> Vec<LogEvent> {
        std::mem::take(&mut self.log_events)
    }

    /// Whether [`take_log_events`](Self::take_log_events) has anything to return.
    pub fn has_log_events(&self) -> bool {
        !self.log_events.is_empty()
    }

    /// Dead letters since the last call, for the shard to route.
    pub fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.dead)
    }

    /// Whether [`take_dead_letters`](Self::take_dead_letters) has anything to return.
    pub fn has_dead_letters(&self) -> bool {
        !self.dead.is_empty()
    }

    fn note_delivery(&mut self, ready: &Ready, no_ack: bool) {
        if ready.expires != NEVER {
            self.expiring -= 1;
        }
        if let Some(loc) = ready.loc {
            if no_ack {
                self.log_events.push(LogEvent::Settled(ready.id, loc));
            } else if !ready.redelivered {
                self.log_events.push(LogEvent::Delivered(ready.id, loc));
            }
        }
    }

    /// A quorum queue tells a consumer how often a message came back
    /// (`x-delivery-count`, 0 on the first delivery, as RabbitMQ 3.10).
    #[inline]
    fn outgoing(&self, msg: &Message, returns: u32) -> Option<Message> {
        (self.config.kind == QueueKind::Quorum)
            .then(|| dead_letter::with_delivery_count(msg, returns))
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

    /// Hands ready messages to consumers with capacity; `now` is the
    /// shard's clock when [`has_deadlines`](Self::has_deadlines) (expired
    /// messages are never delivered, and expired heads leave even without
    /// consumers).
    pub fn dispatch(&mut self, out: &mut Vec<Delivery>, now: Option<u64>) {
        while !self.consumers.is_empty() && self.mem_count > 0 {
            let Some(idx) = self.consumers.pick() else {
                break;
            };
            let Some(ready) = self.pop_live(now) else {
                break;
            };
            let no_ack = self.consumers.at(idx).spec.no_ack;
            self.note_delivery(&ready, no_ack);
            if no_ack {
                self.counters.deliver_no_ack += 1;
            } else {
                self.counters.deliver += 1;
            }
            self.counters.redeliver += ready.redelivered as u64;
            let rewritten = self.outgoing(&ready.msg, ready.returns);
            let c = self.consumers.at(idx);
            c.unsent += 1;
            let (consumer, channel, tag) = (c.spec.id, c.spec.channel, c.spec.tag.clone());
            // The queue's own reference goes to the consumer when nothing
            // stays unacked (no second reference count change).
            let msg = if no_ack {
                rewritten.unwrap_or(ready.msg)
            } else {
                c.unacked += 1;
                let msg = rewritten.unwrap_or_else(|| ready.msg.clone());
                self.unacked.insert(
                    ready.id,
                    Unacked {
                        holder: channel,
                        consumer: Some(consumer),
                        msg: ready.msg,
                        loc: ready.loc,
                        expires: ready.expires,
                        returns: ready.returns,
                    },
                );
                msg
            };
            out.push(Delivery {
                consumer,
                channel,
                consumer_tag: tag,
                msg_id: ready.id,
                redelivered: ready.redelivered,
                no_ack,
                msg,
            });
        }
        if let Some(now) = now {
            self.expire_heads(now);
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
    pub fn get(&mut self, holder: ChannelRef, no_ack: bool, now: Option<u64>) -> Option<GetResult> {
        let ready = self.pop_live(now);
        if let Some(now) = now {
            self.expire_heads(now);
        }
        let ready = ready?;
        self.note_delivery(&ready, no_ack);
        if no_ack {
            self.counters.get_no_ack += 1;
        } else {
            self.counters.get += 1;
        }
        self.counters.redeliver += ready.redelivered as u64;
        let msg = self
            .outgoing(&ready.msg, ready.returns)
            .unwrap_or_else(|| ready.msg.clone());
        if !no_ack {
            self.unacked.insert(
                ready.id,
                Unacked {
                    holder,
                    consumer: None,
                    msg: ready.msg,
                    loc: ready.loc,
                    expires: ready.expires,
                    returns: ready.returns,
                },
            );
        }
        Some(GetResult {
            msg_id: ready.id,
            redelivered: ready.redelivered,
            msg,
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
            let returns = u.returns + 1;
            let over_limit = how == Settle::Requeue
                && self.config.kind == QueueKind::Quorum
                && self
                    .config
                    .delivery_limit
                    .is_some_and(|limit| returns as u64 > limit);
            if how == Settle::Requeue && !over_limit {
                if u.expires != NEVER {
                    self.expiring += 1;
                }
                let lane = self.lane_of(&u.msg);
                self.push_ready(
                    lane,
                    Ready {
                        id,
                        msg: u.msg,
                        redelivered: true,
                        loc: u.loc,
                        expires: u.expires,
                        returns,
                    },
                );
                continue;
            }
            if let Some(loc) = u.loc {
                self.log_events.push(LogEvent::Settled(id, loc));
            }
            match how {
                Settle::Ack => {}
                Settle::Drop => self.dead_letter(u.msg, DeathReason::Rejected),
                Settle::Requeue => self.dead_letter(u.msg, DeathReason::DeliveryLimit),
            }
        }
    }

    /// A channel closed: its consumers go and its unacked messages return.
    /// Returns the removed consumers.
    pub fn release_channel(&mut self, ch: ChannelRef) -> Vec<ConsumerSpec> {
        let mut ids: Vec<MsgId> = self
            .unacked
            .iter()
            .filter(|(_, u)| u.holder == ch)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        self.settle(&ids, Settle::Requeue);
        self.consumers.remove_channel(ch)
    }

    /// Drops every ready message (unacked ones stay); returns how many.
    pub fn purge(&mut self) -> u32 {
        let n = self.message_count();
        let locs: Vec<Loc> = self.lanes.iter().flat_map(Lane::locs).collect();
        if !locs.is_empty() {
            self.log_events.push(LogEvent::Purged {
                up_to: self.next_id.saturating_sub(1),
                kept: self.unacked.keys().copied().collect(),
                locs,
            });
        }
        for lane in &mut self.lanes {
            *lane = Lane::default();
        }
        self.paged_mem.clear();
        self.paged_deadlines.clear();
        self.mem_count = 0;
        self.mem_bytes = 0;
        self.paged_bytes = 0;
        self.expiring = 0;
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
            expiration_ms: None,
            priority: 0,
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
            q.publish(msg(b), None, 0);
        }
        q.add_consumer(consumer(1, 1, 1, false)).unwrap();
        q.add_consumer(consumer(2, 1, 1, false)).unwrap();
        let mut out = Vec::new();
        q.dispatch(&mut out, None);
        assert_eq!(bodies(&out), vec![&b"a"[..], b"b"]);
        assert_eq!(out[0].consumer, ConsumerId(1));
        assert_eq!(out[1].consumer, ConsumerId(2));
        assert_eq!(q.message_count(), 2);
        // Acking consumer 2's message frees only consumer 2.
        q.settle(&[out[1].msg_id], Settle::Ack);
        let mut more = Vec::new();
        q.dispatch(&mut more, None);
        assert_eq!(bodies(&more), vec![&b"c"[..]]);
        assert_eq!(more[0].consumer, ConsumerId(2));
    }

    #[test]
    fn requeued_messages_keep_their_place() {
        let mut q = Queue::new();
        let holder = ch(1);
        for b in ["a", "b", "c"] {
            q.publish(msg(b), None, 0);
        }
        let a = q.get(holder, false, None).unwrap();
        let b = q.get(holder, false, None).unwrap();
        q.settle(&[b.msg_id, a.msg_id], Settle::Requeue);
        let order: Vec<_> = std::iter::from_fn(|| q.get(holder, true, None))
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
        q.publish(msg("a"), None, 0);
        q.add_consumer(consumer(1, 1, 0, false)).unwrap();
        let mut out = Vec::new();
        q.dispatch(&mut out, None);
        assert_eq!(q.message_count(), 0);
        let removed = q.release_channel(ch(1));
        assert_eq!(removed.len(), 1);
        assert_eq!(q.consumer_count(), 0);
        assert_eq!(q.message_count(), 1);
        assert!(q.get(ch(2), true, None).unwrap().redelivered);
    }

    #[test]
    fn no_ack_consumers_are_bounded_by_transport_credit() {
        let mut q = Queue::new();
        for _ in 0..TRANSPORT_WINDOW + 10 {
            q.publish(msg("x"), None, 0);
        }
        q.add_consumer(consumer(1, 1, 0, true)).unwrap();
        let mut out = Vec::new();
        q.dispatch(&mut out, None);
        assert_eq!(out.len() as u32, TRANSPORT_WINDOW);
        assert_eq!(q.unacked_count(), 0);
        q.credit(ConsumerId(1), 5);
        out.clear();
        q.dispatch(&mut out, None);
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
        q.publish(msg("a"), None, 0);
        q.publish(msg("b"), None, 0);
        let a = q.get(ch(1), false, None).unwrap();
        assert_eq!(q.purge(), 1);
        q.settle(&[a.msg_id], Settle::Requeue);
        assert_eq!(q.message_count(), 1);
    }
}
