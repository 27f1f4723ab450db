//! What shards say to each other. Everything here is `Send`: messages share
//! bodies through `Arc`/`Bytes`, never copies.
use super::call::{AnyCall, AnyReply};
use super::{PublishRef, RoutedDelivery};
use crate::codec::ShortStr;
use crate::ids::{ChannelRef, ConsumerId, MsgId, QueueId, ShardId};
use crate::queue::{Message, Settle};

/// One message between shards (or, through [`super::Shard::send`], from a
/// shard to itself).
pub enum ShardMsg {
    /// A routed message for a queue this shard owns.
    Publish {
        /// The owned queue.
        queue: QueueId,
        /// The message.
        msg: Message,
        /// Its publisher: a numbered publish gets `Accepted` once the
        /// queue has it; any gets `Refused` when the queue cannot store it.
        from: PublishRef,
    },
    /// A queue took a numbered publish.
    Accepted {
        /// The publishing channel.
        ch: ChannelRef,
        /// The publish's number.
        seq: u64,
    },
    /// A queue could not store a publish (numbered or not).
    Refused {
        /// The publishing channel.
        ch: ChannelRef,
        /// The publish's number, if it has one.
        seq: Option<u64>,
    },
    /// A delivery for a connection on this shard.
    Deliver(RoutedDelivery),
    /// A reply for the direct reply-to consumer `key` of channel `ch`, a
    /// channel of this shard (see `reply_to.rs`).
    DeliverReply {
        /// The requester's channel.
        ch: ChannelRef,
        /// The reply address's secret.
        key: u128,
        /// The reply.
        msg: Message,
    },
    /// Acks, rejects or requeues for an owned queue.
    Settle {
        /// The owned queue.
        queue: QueueId,
        /// The messages.
        ids: Vec<MsgId>,
        /// What happens to them.
        how: Settle,
    },
    /// A consumer's connection wrote `n` of its deliveries.
    Credit {
        /// The owned queue.
        queue: QueueId,
        /// The consumer.
        consumer: ConsumerId,
        /// How many were written.
        n: u32,
    },
    /// A channel closed: its unacked messages go back, its consumers go.
    ReleaseChannel {
        /// The owned queue.
        queue: QueueId,
        /// The channel that closed.
        ch: ChannelRef,
    },
    /// The queue went away: tell the consumer with basic.cancel.
    ConsumerCancelled {
        /// The consumer's channel.
        ch: ChannelRef,
        /// Its tag.
        tag: ShortStr,
    },
    /// A typed request (see `call.rs`); the answer goes to `from`.
    Call {
        /// The caller's shard.
        from: ShardId,
        /// The caller's number for this call.
        call: u64,
        /// The request.
        op: Box<dyn AnyCall>,
    },
    /// The answer to a [`ShardMsg::Call`].
    Reply {
        /// The caller's number for the call.
        call: u64,
        /// Its result, of the type the call names.
        reply: AnyReply,
    },
}
