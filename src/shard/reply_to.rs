//! Direct reply-to (`amq.rabbitmq.reply-to`), as RabbitMQ 3.10 does it:
//! no queue, a reply goes from the replier's shard straight to the
//! requester's channel.
//!
//! A channel's reply consumer has an address,
//! `amq.rabbitmq.reply-to.<where>.<secret>`: `<where>` names the channel
//! (shard, connection, channel number, epoch) and `<secret>` is 128 random
//! bits the channel keeps, so an address cannot be made up. A publish to
//! the default exchange with such a routing key is handed to that
//! channel's connection ([`ShardMsg::DeliverReply`]), which delivers it if
//! the channel still has that reply consumer, and drops it otherwise. It is
//! routed to no queue: a mandatory reply comes back as NO_ROUTE and a
//! confirm is sent at once, as RabbitMQ does.
use std::fmt::Write as _;
use std::rc::Rc;

use futures_lite::future::BoxedLocal;

use super::call::Call;
use super::{Shard, ShardMsg};
use crate::codec::ShortStr;
use crate::error::AmqpResult;
use crate::ids::{ChannelRef, ConnId, ShardId};
use crate::queue::Message;

/// The pseudo-queue a requester consumes from and names as `reply_to`.
pub const REPLY_TO: &str = "amq.rabbitmq.reply-to";
/// What a reply address starts with.
pub const REPLY_PREFIX: &str = "amq.rabbitmq.reply-to.";

/// The unguessable part of a reply address.
pub type ReplyKey = u128;

/// A fresh secret for a new reply consumer.
pub fn new_reply_key() -> ReplyKey {
    rand::random()
}

/// The address (routing key) of the reply consumer `key` of channel `ch`.
pub fn reply_address(ch: ChannelRef, key: ReplyKey) -> ShortStr {
    let mut s = String::with_capacity(REPLY_PREFIX.len() + 32 + 1 + 32);
    s.push_str(REPLY_PREFIX);
    let _ = write!(
        s,
        "{:04x}{:016x}{:04x}{:08x}.{:032x}",
        ch.shard.0, ch.conn.0, ch.channel, ch.epoch, key
    );
    ShortStr::from(s)
}

/// The channel and secret a reply address names; `None` for anything
/// Warren did not make (which, as in RabbitMQ, routes nowhere).
pub fn parse_reply_address(name: &str) -> Option<(ChannelRef, ReplyKey)> {
    let rest = name.strip_prefix(REPLY_PREFIX)?;
    let (place, key) = rest.split_once('.')?;
    if place.len() != 32 || key.len() != 32 {
        return None;
    }
    let hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            .then_some(())
    };
    hex(place)?;
    hex(key)?;
    let ch = ChannelRef {
        shard: ShardId(u16::from_str_radix(&place[0..4], 16).ok()?),
        conn: ConnId(u64::from_str_radix(&place[4..20], 16).ok()?),
        channel: u16::from_str_radix(&place[20..24], 16).ok()?,
        epoch: u32::from_str_radix(&place[24..32], 16).ok()?,
    };
    Some((ch, u128::from_str_radix(key, 16).ok()?))
}

/// Whether channel `ch` has reply consumer `key` (queue.declare of a reply
/// address), asked of the channel's shard.
pub struct HasReplyConsumer {
    /// The channel the address names.
    pub ch: ChannelRef,
    /// The address's secret.
    pub key: ReplyKey,
}

impl Call for HasReplyConsumer {
    type Output = bool;
    fn run(self, shard: Rc<Shard>) -> BoxedLocal<AmqpResult<bool>> {
        let has = shard
            .conn(self.ch.conn)
            .is_some_and(|c| c.has_reply_consumer(self.ch, self.key));
        Box::pin(std::future::ready(Ok(has)))
    }
}

impl Shard {
    /// A publish to the default exchange with routing key
    /// [`REPLY_PREFIX`]`...`: hands it to the reply consumer's connection,
    /// wherever it is. A name that is not an address is dropped.
    pub(super) fn publish_reply(self: &Rc<Self>, routing_key: &str, msg: &Message) {
        let Some((ch, key)) = parse_reply_address(routing_key) else {
            return;
        };
        if ch.shard.index() >= self.shards {
            return;
        }
        self.send(
            ch.shard,
            ShardMsg::DeliverReply {
                ch,
                key,
                msg: msg.clone(),
            },
        );
        if ch.shard != self.id {
            self.schedule_pump();
        }
    }

    /// [`ShardMsg::DeliverReply`] arrived here.
    pub(super) fn deliver_reply(&self, ch: ChannelRef, key: ReplyKey, msg: Message) {
        if let Some(conn) = self.conn(ch.conn) {
            conn.deliver_reply(ch, key, msg);
        }
    }

    /// Whether the reply address `name` has its consumer (queue.declare of
    /// it): asks the channel's shard.
    pub async fn reply_consumer_exists(self: &Rc<Self>, name: &str) -> AmqpResult<bool> {
        let Some((ch, key)) = parse_reply_address(name) else {
            return Ok(false);
        };
        if ch.shard.index() >= self.shards {
            return Ok(false);
        }
        self.call(ch.shard, HasReplyConsumer { ch, key }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_and_forgeries_do_not_parse() {
        let ch = ChannelRef {
            shard: ShardId(2),
            conn: ConnId(0x0002_0000_0000_0011),
            channel: 65535,
            epoch: 7,
        };
        let key = 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef;
        let a = reply_address(ch, key);
        assert!(a.starts_with(REPLY_PREFIX));
        assert_eq!(parse_reply_address(&a), Some((ch, key)));
        for bad in [
            "amq.rabbitmq.reply-to",
            "amq.rabbitmq.reply-to.",
            "amq.rabbitmq.reply-to.garbage",
            "amq.rabbitmq.reply-to.a.b",
            &a[..a.len() - 1],
            &format!("{a}0"),
            &a.to_uppercase(),
        ] {
            assert_eq!(parse_reply_address(bad), None, "{bad}");
        }
    }
}
