//! Direct reply-to on a channel, as RabbitMQ 3.10's channel does it: the
//! reply consumer (basic.consume of `amq.rabbitmq.reply-to`, no queue),
//! its cancel, the rewrite of `reply_to` on the channel's publishes,
//! queue.declare of the pseudo-queue and of a reply address, and the
//! replies the shard hands to the connection (see `shard/reply_to.rs`).
use bytes::Bytes;

use super::{Conn, MethodResult};
use crate::codec::*;
use crate::connection::handle::{ChannelDeliveries, ConnHandle};
use crate::error::{describe, AmqpError};
use crate::ids::ChannelRef;
use crate::queue::Message;
use crate::shard::{new_reply_key, reply_address, ReplyKey, REPLY_TO};
use crate::topology::random_name;

/// A channel's reply consumer.
#[derive(Debug)]
pub struct ReplyConsumer {
    pub tag: ShortStr,
    pub key: ReplyKey,
    /// `amq.rabbitmq.reply-to.<...>`: what `reply_to` becomes.
    pub address: ShortStr,
}

impl Conn {
    /// basic.consume of `amq.rabbitmq.reply-to`.
    pub(super) fn reply_consume(&mut self, number: u16, m: BasicConsume) -> MethodResult {
        let epoch = self.channels[&number].epoch;
        let ch_ref = self.shard.channel_ref(self.handle.id, number, epoch);
        let tag = {
            let mut channels = self.handle.channels.borrow_mut();
            let d = channels.get_mut(&number).expect("channel checked");
            if d.consumers.contains_key(&m.consumer_tag) {
                return Err(AmqpError::new(
                    reply_code::NOT_ALLOWED,
                    format!("attempt to reuse consumer tag '{}'", m.consumer_tag),
                ));
            }
            if !m.no_ack {
                return Err(AmqpError::precondition("reply consumer cannot acknowledge"));
            }
            if d.reply.is_some() {
                return Err(AmqpError::precondition("reply consumer already set"));
            }
            let tag = if m.consumer_tag.is_empty() {
                random_name("amq.ctag-")
            } else {
                m.consumer_tag
            };
            let key = new_reply_key();
            d.reply = Some(ReplyConsumer {
                tag: tag.clone(),
                key,
                address: reply_address(ch_ref, key),
            });
            tag
        };
        self.reply(
            number,
            m.no_wait,
            Method::BasicConsumeOk(BasicConsumeOk { consumer_tag: tag }),
        );
        Ok(())
    }

    /// basic.cancel: true (and cancel-ok sent) when `tag` is the channel's
    /// reply consumer.
    pub(super) fn reply_cancel(&mut self, number: u16, m: &BasicCancel) -> bool {
        let cancelled = self
            .handle
            .channels
            .borrow_mut()
            .get_mut(&number)
            .is_some_and(|d| {
                d.reply.as_ref().is_some_and(|r| r.tag == m.consumer_tag)
                    && d.reply.take().is_some()
            });
        if cancelled {
            self.reply(
                number,
                m.no_wait,
                Method::BasicCancelOk(BasicCancelOk {
                    consumer_tag: m.consumer_tag.clone(),
                }),
            );
        }
        cancelled
    }

    /// queue.declare of a name starting `amq.rabbitmq.reply-to` (passive
    /// or not, any flags): the pseudo-queue itself, or a reply address
    /// whose consumer exists, is declared with no message and one consumer;
    /// anything else is 404.
    pub(super) async fn reply_declare(&mut self, number: u16, m: QueueDeclare) -> MethodResult {
        let exists = &*m.queue == REPLY_TO || self.shard.reply_consumer_exists(&m.queue).await?;
        if !exists {
            return Err(AmqpError::not_found(describe(
                "queue",
                &m.queue,
                &self.vhost,
            )));
        }
        if let Some(ch) = self.channels.get_mut(&number) {
            ch.last_queue = m.queue.clone();
        }
        self.reply(
            number,
            m.no_wait,
            Method::QueueDeclareOk(QueueDeclareOk {
                queue: m.queue,
                message_count: 0,
                consumer_count: 1,
            }),
        );
        Ok(())
    }
}

/// A publish with `reply_to = "amq.rabbitmq.reply-to"`: its properties with
/// the channel's reply address in its place (406 without a reply consumer).
/// Only these publishes decode and re-encode their properties.
pub(super) fn rewrite_reply_to(
    handle: &ConnHandle,
    number: u16,
    raw: &Bytes,
) -> Result<Bytes, AmqpError> {
    let address = handle
        .channels
        .borrow()
        .get(&number)
        .and_then(|d| d.reply.as_ref().map(|r| r.address.clone()));
    let Some(address) = address else {
        return Err(AmqpError::precondition(
            "fast reply consumer does not exist",
        ));
    };
    let mut props = BasicProperties::decode(raw)
        .map_err(|e| AmqpError::internal(format!("properties decoded twice: {}", e.text)))?;
    props.reply_to = Some(address);
    Ok(props.to_raw())
}

/// The channel's reply consumer `key`, if it (still) has it.
fn live_reply(d: &ChannelDeliveries, ch: ChannelRef, key: ReplyKey) -> Option<&ReplyConsumer> {
    if !d.open || d.epoch != ch.epoch {
        return None;
    }
    d.reply.as_ref().filter(|r| r.key == key)
}

impl ConnHandle {
    /// A reply for one of this connection's reply consumers: delivered
    /// as RabbitMQ 3.10 does, with the channel's next delivery tag, which
    /// it does not use up (nothing to ack); dropped when the consumer is
    /// gone.
    pub(crate) fn deliver_reply_here(&self, ch: ChannelRef, key: ReplyKey, msg: Message) {
        let channels = self.channels.borrow();
        let Some(d) = channels.get(&ch.channel) else {
            return;
        };
        let Some(r) = live_reply(d, ch, key) else {
            return;
        };
        let mut out = self.out.borrow_mut();
        encode_method(
            &mut out,
            ch.channel,
            &Method::BasicDeliver(BasicDeliver {
                consumer_tag: r.tag.clone(),
                delivery_tag: d.next_tag + 1,
                redelivered: false,
                exchange: msg.exchange.clone(),
                routing_key: msg.routing_key.clone(),
            }),
        );
        out.encode_content(
            ch.channel,
            &msg.raw_properties,
            &msg.body,
            self.frame_max.get(),
        );
        drop(out);
        self.write_ready.notify();
    }

    /// Whether channel `ch` has reply consumer `key`.
    pub(crate) fn has_reply_consumer_here(&self, ch: ChannelRef, key: ReplyKey) -> bool {
        self.channels
            .borrow()
            .get(&ch.channel)
            .is_some_and(|d| live_reply(d, ch, key).is_some())
    }
}
