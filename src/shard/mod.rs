//! The per-shard broker: what one executor owns and does.
//!
//! A [`Shard`] owns the queues that hash to it, a replica of the topology
//! and the connections the kernel gave its listener. Work that concerns
//! another shard travels as [`ShardMsg`]s through the batched mailbox
//! ([`Shard::send`] is the one hop: local work runs the same handler
//! directly); requests that want an answer are typed [`Call`]s.
//!
//! State lives in separate `RefCell`s, each borrowed only for the span of
//! one synchronous step: deliveries are queued and routed by
//! [`Shard::pump`] after the step that produced them, so no step re-enters
//! another.
//!
//! - `pump.rs`: the message path: publish, settle, credit, the hop, the pump.
//! - `call.rs`: typed requests to another shard and their replies.
//! - `queues.rs`: the queues this shard owns and the calls on them.
//! - `leader.rs`: shard 0's topology changes: decide, persist, broadcast.
//! - `store.rs`: the storage glue: logging, group commit, paging, compaction.
//! - `messages.rs`: what shards say to each other.
#![warn(missing_docs)]

mod admin;
mod call;
mod dead_letters;
mod info;
mod leader;
mod messages;
mod policies;
mod pump;
mod queues;
mod reply_to;
mod store;
mod timers;

use ahash::AHashMap;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

pub use admin::{Admin, AdminOp};
pub use call::Call;
pub use info::{
    ChannelInfo, CloseConnections, CloseWhich, ConnInfo, ConnState, ConsumerInfo,
    ExchangeStatsInfo, GatherStats, ListConnections, ListQueues, QueueInfo, QueueStatsInfo,
    SetAppRunning, ShardStats,
};
pub use leader::{
    AutoDeleteQueue, Bind, ConnectionClosed, DeclareExchange, DeclareQueue, Declared,
    DeleteExchange, DeleteQueue, Unbind,
};
pub use messages::ShardMsg;
pub use pump::Routed;
pub use queues::{CancelConsumer, Consume, GetMessage, PurgeQueue, QueueCounts, QueueStats};
pub use reply_to::{new_reply_key, reply_address, ReplyKey, REPLY_PREFIX, REPLY_TO};
pub use store::ShardStore;

use crate::codec::ShortStr;
use crate::error::AmqpResult;
use crate::ids::{ChannelRef, ConnId, ConnRef, QueueId, QueueRef, ShardId, UniqueIds};
use crate::queue::{Delivery, Queue};
use crate::runtime::mailbox::Mailbox;
use crate::runtime::sync::{Event, OneshotSender};
use crate::storage::definitions::Definitions;
use crate::topology::{QueueMeta, Topology};

/// How a shard behaves, from the configuration.
#[derive(Debug, Clone)]
pub struct ShardOptions {
    /// How long a call to another shard may take before it fails (541).
    pub call_timeout: std::time::Duration,
    /// Failpoint for tests: this shard never answers calls.
    pub stall_calls: bool,
    /// Who may log in only from loopback, and the defaults `reset` brings
    /// back.
    pub access: std::sync::Arc<crate::config::AccessConfig>,
    /// What connections negotiate.
    pub limits: crate::config::ConnLimits,
}

/// What the shard needs from a connection that lives on it: the three
/// things queues and other shards tell a connection, and when to confirm. The connection module
/// implements it, so the shard does not depend on the connection.
pub trait LocalConn {
    /// A queue delivers a message to one of this connection's consumers.
    fn deliver(&self, d: RoutedDelivery);
    /// A queue took publish `seq` of channel `ch` (confirms and tx). The
    /// connection sends no confirm yet: it asks for [`Shard::confirms_due`]
    /// and sends them all in [`LocalConn::send_confirms`].
    fn accepted(&self, ch: ChannelRef, seq: u64);
    /// A queue could not store a publish of channel `ch` (the message log
    /// failed): numbered publishes (`seq`) get basic.nack or fail their
    /// commit, a plain one closes the connection with 541.
    fn refused(&self, ch: ChannelRef, seq: Option<u64>);
    /// Sends the confirms that became due since the last call: one
    /// `basic.ack` (with `multiple` when it covers more) per channel.
    fn send_confirms(&self);
    /// The queue behind consumer `tag` went away: basic.cancel from the
    /// server.
    fn server_cancel(&self, ch: ChannelRef, tag: &ShortStr);
    /// What management listings show of it.
    fn info(&self) -> ConnInfo;
    /// A direct reply for channel `ch`'s reply consumer `key` (dropped when
    /// the channel no longer has it).
    fn deliver_reply(&self, ch: ChannelRef, key: u128, msg: crate::queue::Message);
    /// Whether channel `ch` has reply consumer `key`.
    fn has_reply_consumer(&self, ch: ChannelRef, key: u128) -> bool;
    /// An operator (or a deleted vhost) closes it: connection.close with
    /// `code` and `text`, whatever it is doing.
    fn force_close(&self, code: u16, text: String);
}

/// A delivery on its way to a consumer's connection, with the queue it
/// came from so acks and credit find their way back.
#[derive(Debug, Clone)]
pub struct RoutedDelivery {
    /// The queue that delivered.
    pub queue: QueueRef,
    /// The message and the consumer it is for.
    pub delivery: Delivery,
}

/// Asks the queues a publish reaches to say when they have it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfirmRef {
    /// The publishing channel.
    pub ch: ChannelRef,
    /// The publish's number on that channel.
    pub seq: u64,
}

/// Who published a message, so that a queue that cannot store it can say
/// so: a numbered (confirm or tx) publish is refused by number, a plain
/// one costs its connection a 541.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishRef {
    /// The publishing channel.
    pub ch: ChannelRef,
    /// The publish's number when the channel tracks its publishes.
    pub seq: Option<u64>,
}

impl PublishRef {
    /// The confirm this publish asks for, if any.
    pub fn confirm(self) -> Option<ConfirmRef> {
        self.seq.map(|seq| ConfirmRef { ch: self.ch, seq })
    }
}

/// A queue owned by this shard.
struct OwnedQueue {
    meta: QueueMeta,
    vhost: ShortStr,
    queue: Queue,
    /// Auto-delete fires only once a consumer has come and gone.
    had_consumer: bool,
    /// Durable and not exclusive: its persistent messages go to the log.
    logged: bool,
    /// Already on the shard's dispatch list.
    dirty: bool,
    /// The deadline armed on the shard's timer for it, if any.
    armed: Option<u64>,
    /// When it was last used (ms), for `x-expires`.
    last_used: u64,
}

impl OwnedQueue {
    /// Queues this queue for dispatch in the next pump, once.
    fn touch(&mut self, dirty: &RefCell<Vec<QueueId>>) {
        if !self.dirty {
            self.dirty = true;
            dirty.borrow_mut().push(self.meta.id);
        }
    }
}

/// One shard's broker. Everything in it is `!Send` and used only by this
/// shard's executor; other shards reach it through [`ShardMsg`]s.
///
/// Guarantees: a queue is owned by exactly one shard and only that shard
/// touches its state; every replica of the topology applies the leader's
/// changes in the same order; no method hands a delivery to a connection
/// while a queue is borrowed.
pub struct Shard {
    id: ShardId,
    shards: usize,
    options: ShardOptions,
    mailbox: Rc<Mailbox<ShardMsg>>,
    topology: RefCell<Topology>,
    queues: RefCell<AHashMap<QueueId, OwnedQueue>>,
    conns: RefCell<AHashMap<ConnId, Rc<dyn LocalConn>>>,
    /// Owned queues changed since the last pump.
    dirty: RefCell<Vec<QueueId>>,
    /// Connections with confirms to send at the end of the pump: one
    /// `basic.ack multiple` for a whole batch of acceptances.
    confirms_due: RefCell<Vec<ConnId>>,
    /// Reused by `publish` so routing allocates nothing per message.
    route_scratch: RefCell<Vec<ShortStr>>,
    deliveries: RefCell<Vec<RoutedDelivery>>,
    /// The pump's working lists, kept between pumps for their capacity.
    pump_buffers: RefCell<pump::PumpBuffers>,
    pump_scheduled: Cell<bool>,
    /// Calls sent to other shards, waiting for their replies.
    pending_calls: RefCell<AHashMap<u64, OneshotSender<call::AnyReply>>>,
    next_call: Cell<u64>,
    ids: UniqueIds,
    leader: leader::LeaderState,
    store: RefCell<ShardStore>,
    /// Deadlines of owned queues (TTL, expiry).
    timers: timers::Timers,
    /// Something was appended to the log: the committer has work.
    sync_wake: Event,
    /// AMQP connections are accepted (`stop_app` clears it).
    app_running: Cell<bool>,
    app_changed: Event,
    /// Seconds since the shard started, by a once-a-second task: a clock
    /// the message path reads for free.
    seconds: Cell<u32>,
    /// What this shard did (see [`Shard::metrics`]).
    metrics: crate::metrics::ShardCounters,
    /// The counts of the owned queues deleted so far, so the shard's
    /// totals never go back when a queue goes.
    retired: Cell<crate::metrics::QueueCounters>,
}

impl Shard {
    /// Shard `id` of `shards`, with its storage and (on every shard, used
    /// on shard 0) the first queue id the leader may hand out.
    pub fn new(
        id: ShardId,
        shards: usize,
        mailbox: Rc<Mailbox<ShardMsg>>,
        store: ShardStore,
        next_queue_id: QueueId,
        options: ShardOptions,
    ) -> Rc<Self> {
        Rc::new(Shard {
            id,
            shards,
            options,
            mailbox,
            topology: RefCell::new(Topology::empty()),
            queues: RefCell::new(AHashMap::new()),
            conns: RefCell::new(AHashMap::new()),
            dirty: RefCell::new(Vec::new()),
            confirms_due: RefCell::new(Vec::new()),
            route_scratch: RefCell::new(Vec::new()),
            deliveries: RefCell::new(Vec::new()),
            pump_buffers: RefCell::default(),
            pump_scheduled: Cell::new(false),
            pending_calls: RefCell::new(AHashMap::new()),
            next_call: Cell::new(1),
            ids: UniqueIds::new(id),
            leader: leader::LeaderState::new(next_queue_id),
            store: RefCell::new(store),
            timers: Default::default(),
            sync_wake: Event::default(),
            app_running: Cell::new(true),
            app_changed: Event::default(),
            seconds: Cell::new(0),
            metrics: Default::default(),
            retired: Cell::new(Default::default()),
        })
    }

    /// This shard's id.
    pub fn id(&self) -> ShardId {
        self.id
    }

    /// Whole seconds since the shard started (see [`Shard::run_clock`]).
    pub fn seconds(&self) -> u32 {
        self.seconds.get()
    }

    /// Advances [`Shard::seconds`] once a second, for ever.
    pub async fn run_clock(self: Rc<Self>) {
        loop {
            crate::runtime::sleep(std::time::Duration::from_secs(1)).await;
            self.seconds.set(self.seconds.get().wrapping_add(1));
        }
    }

    /// This shard's counters, for the connections on it to count what
    /// they do (publishes, confirms, channels...).
    pub fn metrics(&self) -> &crate::metrics::ShardCounters {
        &self.metrics
    }

    /// How many shards the broker runs.
    pub fn shard_count(&self) -> usize {
        self.shards
    }

    /// A broker-unique id (connections, consumers).
    pub fn unique_id(&self) -> u64 {
        self.ids.next()
    }

    /// The shard that owns queue `queue` of `vhost`.
    pub fn owner_of(&self, vhost: &str, queue: &str) -> ShardId {
        crate::topology::owner_shard(vhost, queue, self.shards)
    }

    /// Channel `channel` (in its `epoch`) of local connection `conn`.
    pub fn channel_ref(&self, conn: ConnId, channel: u16, epoch: u32) -> ChannelRef {
        ChannelRef {
            shard: self.id,
            conn,
            channel,
            epoch,
        }
    }

    /// Local connection `conn`, as the rest of the broker names it.
    pub fn conn_ref(&self, conn: ConnId) -> ConnRef {
        ConnRef {
            shard: self.id,
            conn,
        }
    }

    // ---- connections -----------------------------------------------------

    /// A connection accepted by this shard starts taking deliveries.
    pub fn register_conn(&self, id: ConnId, conn: Rc<dyn LocalConn>) {
        self.metrics.connections_opened.inc();
        self.conns.borrow_mut().insert(id, conn);
    }

    /// A connection closed: what is still on its way to it is dropped
    /// (its channels' release requeues anything unacked).
    pub fn unregister_conn(&self, id: ConnId) {
        if self.conns.borrow_mut().remove(&id).is_some() {
            self.metrics.connections_closed.inc();
        }
    }

    /// Connection `id` has confirms to send: the pump sends them after
    /// the batch in hand (see [`LocalConn::send_confirms`]).
    pub fn confirms_due(&self, id: ConnId) {
        self.confirms_due.borrow_mut().push(id);
    }

    fn conn(&self, id: ConnId) -> Option<Rc<dyn LocalConn>> {
        self.conns.borrow().get(&id).cloned()
    }

    // ---- the topology replica, read-only -------------------------------

    /// Whether a message may be published to `exchange` (it exists and is
    /// not internal).
    pub fn check_publishable(&self, vhost: &str, exchange: &str) -> AmqpResult<()> {
        self.topology.borrow().check_publishable(vhost, exchange)
    }

    /// Whether `user` has `kind` on the resource `name` in `vhost` (its
    /// permissions there; none: nothing).
    pub fn permits(
        &self,
        user: &str,
        vhost: &str,
        kind: crate::access::PermissionKind,
        name: &str,
    ) -> bool {
        self.topology
            .borrow()
            .access
            .permission(user, vhost)
            .is_some_and(|p| p.permits(kind, name))
    }

    /// `user`'s permission in `vhost`, if any.
    pub fn permission(
        &self,
        user: &str,
        vhost: &str,
    ) -> Option<std::sync::Arc<crate::access::Permission>> {
        self.topology
            .borrow()
            .access
            .permission(user, vhost)
            .cloned()
    }

    /// The options this shard was started with.
    pub fn options(&self) -> &ShardOptions {
        &self.options
    }

    /// Reads the topology replica (users, vhosts, queues...) for one
    /// synchronous step.
    pub fn with_topology<R>(&self, f: impl FnOnce(&Topology) -> R) -> R {
        f(&self.topology.borrow())
    }

    /// Whether virtual host `name` exists.
    pub fn vhost_exists(&self, name: &str) -> bool {
        self.topology.borrow().vhost(name).is_some()
    }

    /// Whether `exchange` exists.
    pub fn exchange_exists(&self, vhost: &str, exchange: &str) -> bool {
        self.topology.borrow().exchange(vhost, exchange).is_some()
    }

    /// A queue connection `conn` may use (see [`Topology::usable_queue`]).
    pub fn usable_queue(&self, vhost: &str, name: &str, conn: ConnRef) -> AmqpResult<QueueMeta> {
        self.topology
            .borrow()
            .usable_queue(vhost, name, conn)
            .cloned()
    }

    // ---- backpressure ----------------------------------------------------

    /// Whether another shard's mailbox is backed up: publishers on this
    /// shard should stop reading their sockets.
    pub fn congested(&self) -> bool {
        self.mailbox.congested()
    }

    /// Waits until no mailbox of this shard is backed up.
    pub async fn until_uncongested(&self) {
        self.mailbox.until_uncongested().await
    }

    // ---- start-up --------------------------------------------------------

    /// Hands the definitions log to the leader (shard 0).
    pub fn set_definitions(&self, defs: Option<Definitions>) {
        *self.leader.definitions.borrow_mut() = defs;
    }
}
