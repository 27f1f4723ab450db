//! What shards say to each other. Everything here is `Send`: messages share
//! bodies through `Arc`/`Bytes`, never copies.
use super::topology::{ConnRef, ExchangeMeta, QueueId, QueueMeta, TopologyChange};
use super::{AmqpError, ConfirmRef, RoutedDelivery};
use crate::codec::{FieldTable, ShortStr};
use crate::queue::{ChannelRef, ConsumerId, ConsumerSpec, GetResult, Message, MsgId, Settle};
use crate::routing::Binding;

pub enum ShardMsg {
    /// A routed message for a queue this shard owns.
    Publish {
        queue: QueueId,
        msg: Message,
        confirm: Option<ConfirmRef>,
    },
    /// A queue took a publish that carried a `ConfirmRef`.
    Accepted {
        ch: ChannelRef,
        seq: u64,
    },
    /// A delivery for a connection on this shard.
    Deliver(RoutedDelivery),
    Settle {
        queue: QueueId,
        ids: Vec<MsgId>,
        how: Settle,
    },
    Credit {
        queue: QueueId,
        consumer: ConsumerId,
        n: u32,
    },
    ReleaseChannel {
        queue: QueueId,
        ch: ChannelRef,
    },
    /// The queue went away: tell the consumer with basic.cancel.
    ConsumerCancelled {
        ch: ChannelRef,
        tag: ShortStr,
    },
    Request {
        call: u64,
        req: Request,
    },
    Reply {
        call: u64,
        reply: Reply,
    },
}

pub enum Request {
    /// To shard 0, which orders all topology changes.
    Leader(LeaderOp),
    /// From the leader to every shard.
    Apply(TopologyChange),
    /// To a queue's owner.
    Queue(QueueId, QueueOp),
}

pub enum LeaderOp {
    DeclareExchange {
        vhost: ShortStr,
        meta: ExchangeMeta,
        passive: bool,
    },
    DeleteExchange {
        vhost: ShortStr,
        name: ShortStr,
        if_unused: bool,
    },
    DeclareQueue {
        vhost: ShortStr,
        decl: QueueDecl,
    },
    DeleteQueue {
        vhost: ShortStr,
        name: ShortStr,
        if_unused: bool,
        if_empty: bool,
        conn: ConnRef,
    },
    Bind {
        vhost: ShortStr,
        binding: Binding,
        conn: ConnRef,
    },
    Unbind {
        vhost: ShortStr,
        binding: Binding,
        conn: ConnRef,
    },
    /// The owner saw an auto-delete queue lose its last consumer.
    AutoDeleteQueue {
        vhost: ShortStr,
        name: ShortStr,
        id: QueueId,
    },
    /// A connection closed: its exclusive queues go.
    ConnectionClosed {
        conn: ConnRef,
    },
}

#[derive(Debug, Clone)]
pub struct QueueDecl {
    pub name: ShortStr,
    pub passive: bool,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    pub conn: ConnRef,
}

pub enum QueueOp {
    Stats,
    Consume(ConsumerSpec),
    Cancel(ConsumerId),
    Get {
        holder: ChannelRef,
        no_ack: bool,
    },
    Purge,
    /// Checks the conditions and removes the queue in one step.
    Delete {
        if_unused: bool,
        if_empty: bool,
        only_if_idle: bool,
    },
}

pub enum Reply {
    Ok,
    Err(AmqpError),
    Counts {
        messages: u32,
        consumers: u32,
    },
    Count(u32),
    Got(Option<GetResult>),
    /// The queue as declared; `created` when this declare made it.
    Declared {
        meta: QueueMeta,
        created: bool,
    },
}

impl Reply {
    /// Ok-ish replies become `Ok(self)`, errors `Err`.
    pub fn into_result(self) -> Result<Reply, AmqpError> {
        match self {
            Reply::Err(e) => Err(e),
            r => Ok(r),
        }
    }
}
