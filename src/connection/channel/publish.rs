//! The basic class's publisher side: assembling a message from its
//! method, header and body frames, routing it, basic.return for unroutable
//! mandatory messages, and publisher confirms (confirm.select; the
//! tracking itself is in `confirm.rs`).
//!
//! A body that arrives in one frame is kept as the slice of the read buffer
//! it came in (no copy); only multi-frame bodies are gathered.
use bytes::{Bytes, BytesMut};
use std::sync::Arc;

use super::tx::Mode;
use super::{Conn, MethodResult, PublishTracker, Resource};
use crate::access::PermissionKind;
use crate::codec::*;
use crate::connection::Close;
use crate::error::AmqpError;
use crate::queue::{Message, MessageData};
use crate::shard::PublishRef;

/// RabbitMQ's default max_message_size (128 MiB).
pub const MAX_MESSAGE_SIZE: u64 = 128 << 20;
/// Most memory reserved up front for a multi-frame body: the announced size
/// is only a claim, so memory follows the bytes that actually arrive.
const BODY_RESERVE_LIMIT: u64 = 1 << 20;

enum Body {
    Empty,
    One(Bytes),
    Many(BytesMut),
}

pub(crate) struct Pending {
    publish: BasicPublish,
    header: Option<ContentHeader>,
    body: Body,
    received: u64,
}

/// A complete message waiting to be routed.
pub(crate) struct TxPublish {
    pub msg: Message,
    pub headers: Option<FieldTable>,
    pub mandatory: bool,
}

impl Pending {
    pub fn new(publish: BasicPublish) -> Self {
        Pending {
            publish,
            header: None,
            body: Body::Empty,
            received: 0,
        }
    }
}

fn unexpected(what: &str) -> Close {
    Close::Error(AmqpError::new(reply_code::UNEXPECTED_FRAME, what), 0, 0)
}

impl Conn {
    pub(crate) fn content_header(
        &mut self,
        number: u16,
        header: ContentHeader,
    ) -> Result<(), Close> {
        let Some(ch) = self.channels.get_mut(&number) else {
            return Err(unexpected("content header on a channel that is not open"));
        };
        if ch.closing {
            return Ok(());
        }
        let Some(p) = ch.content.as_mut().filter(|p| p.header.is_none()) else {
            return Err(unexpected(
                "content header without a method expecting content",
            ));
        };
        if header.class_id != 60 {
            return Err(Close::Error(
                AmqpError::new(
                    reply_code::FRAME_ERROR,
                    "content header for a class other than basic",
                ),
                60,
                40,
            ));
        }
        if header.body_size > MAX_MESSAGE_SIZE {
            let e = AmqpError::precondition(format!(
                "message size {} is larger than configured max size {MAX_MESSAGE_SIZE}",
                header.body_size
            ));
            self.channel_error(number, e, 60, 40);
            return Ok(());
        }
        let done = header.body_size == 0;
        p.header = Some(header);
        if done {
            self.complete(number)?;
        }
        Ok(())
    }

    pub(crate) fn content_body(&mut self, number: u16, payload: Bytes) -> Result<(), Close> {
        let Some(ch) = self.channels.get_mut(&number) else {
            return Err(unexpected("content body on a channel that is not open"));
        };
        if ch.closing {
            return Ok(());
        }
        let Some(p) = ch.content.as_mut() else {
            return Err(unexpected(
                "content body without a method expecting content",
            ));
        };
        let Some(size) = p.header.as_ref().map(|h| h.body_size) else {
            return Err(unexpected("content body before its header"));
        };
        p.received += payload.len() as u64;
        if p.received > size {
            return Err(unexpected("content body larger than its header announced"));
        }
        p.body = match std::mem::replace(&mut p.body, Body::Empty) {
            Body::Empty if p.received == size => Body::One(payload),
            Body::Empty => {
                let mut b = BytesMut::with_capacity(size.min(BODY_RESERVE_LIMIT) as usize);
                b.extend_from_slice(&payload);
                Body::Many(b)
            }
            Body::One(first) => {
                let mut b = BytesMut::with_capacity(size.min(BODY_RESERVE_LIMIT) as usize);
                b.extend_from_slice(&first);
                b.extend_from_slice(&payload);
                Body::Many(b)
            }
            Body::Many(mut b) => {
                b.extend_from_slice(&payload);
                Body::Many(b)
            }
        };
        if p.received == size {
            self.complete(number)?;
        }
        Ok(())
    }

    fn complete(&mut self, number: u16) -> Result<(), Close> {
        // Under a resource alarm this connection now counts as a publisher.
        self.published = true;
        let Some(ch) = self.channels.get_mut(&number) else {
            return Ok(());
        };
        let Some(Pending {
            publish,
            header: Some(header),
            body,
            ..
        }) = ch.content.take()
        else {
            return Ok(());
        };
        let body = match body {
            Body::Empty => Bytes::new(),
            Body::One(b) => b,
            Body::Many(b) => b.freeze(),
        };
        let props = header.properties;
        // One channel lookup per message: the permission check works on the
        // channel in hand.
        let write = super::permit::check(
            &self.shard,
            &self.user,
            &self.vhost,
            &mut ch.permits,
            PermissionKind::Write,
            Resource::Exchange,
            &publish.exchange,
        );
        let claimed = props.user_id.as_ref();
        let mut raw_properties = header.raw_properties;
        let refused = write.err().or_else(|| {
            // Direct reply-to: the one case that re-encodes properties.
            if !props.direct_reply_to {
                return None;
            }
            let rewritten =
                super::reply_to::rewrite_reply_to(&self.handle, number, &raw_properties);
            rewritten.map(|r| raw_properties = r).err()
        });
        let refused = refused.or_else(|| {
            let uid = claimed.filter(|u| **u != self.user && !self.impersonator)?;
            // RabbitMQ's validated user-id: a publisher cannot claim to be
            // someone else (unless tagged impersonator).
            Some(AmqpError::precondition(format!(
                "user_id property set to '{uid}' but authenticated user was '{}'",
                self.user
            )))
        });
        let refused = refused.or_else(|| {
            (props.expiration == Expiration::Invalid).then(|| {
                let text = BasicProperties::decode(&raw_properties)
                    .ok()
                    .and_then(|p| p.expiration)
                    .unwrap_or_default();
                AmqpError::precondition(expiration_error(&text))
            })
        });
        if let Some(e) = refused {
            self.channel_error(number, e, 60, 40);
            return Ok(());
        }
        let msg = Arc::new(MessageData {
            exchange: publish.exchange,
            routing_key: publish.routing_key,
            raw_properties,
            body,
            persistent: props.delivery_mode == Some(2),
            expiration_ms: props.expiration.ms(),
            priority: props.priority,
        });
        let p = TxPublish {
            msg,
            headers: props.headers,
            mandatory: publish.mandatory,
        };
        if let Mode::Tx { publishes, .. } = &mut ch.mode {
            publishes.push(p);
            return Ok(());
        }
        match self.route_publish(number, p) {
            Ok(()) => Ok(()),
            Err(e) if e.is_connection_error() => Err(Close::Error(e, 60, 40)),
            Err(e) => {
                self.channel_error(number, e, 60, 40);
                Ok(())
            }
        }
    }

    /// Routes a complete message (at publish, or at tx.commit).
    pub(super) fn route_publish(&mut self, number: u16, p: TxPublish) -> MethodResult {
        let exchange = &p.msg.exchange;
        self.shard.check_publishable(&self.vhost, exchange)?;
        // In confirm and tx mode the publish is numbered, and queues on
        // other shards will say when they have it.
        let (epoch, confirm_mode, numbered) =
            self.channels.get(&number).map_or((0, false, false), |c| {
                let numbered = !matches!(c.mode, Mode::Plain);
                (c.epoch, matches!(c.mode, Mode::Confirm), numbered)
            });
        // Only numbered (confirm, tx) channels have a tracker: plain ones
        // skip the lookup.
        let seq = numbered
            .then(|| {
                self.handle
                    .channels
                    .borrow_mut()
                    .get_mut(&number)
                    .and_then(|d| d.publishes.as_mut())
                    .map(|t| t.next())
            })
            .flatten();
        let from = PublishRef {
            ch: self.shard.channel_ref(self.handle.id, number, epoch),
            seq,
        };
        let routed = self.shard.publish(
            &self.vhost,
            exchange,
            &p.msg.routing_key,
            p.headers.as_ref(),
            &p.msg,
            from,
        );
        // Counted where RabbitMQ's channel counts them: received, and then
        // routed or unroutable (returned when mandatory, else dropped).
        let m = self.shard.metrics();
        m.received.inc();
        self.handle.stats.published.inc();
        m.received_confirm.add(confirm_mode as u64);
        if routed.queues > 0 {
            m.routed.inc();
        } else if p.mandatory {
            m.unroutable_returned.inc();
        } else {
            m.unroutable_dropped.inc();
        }
        if routed.refused > 0 && seq.is_none() {
            // Not stored, and no confirm to say so: as a failed write in
            // RabbitMQ, the connection goes.
            return Err(AmqpError::internal(
                "a queue could not store the message (see the broker's log)",
            ));
        }
        if routed.queues == 0 && p.mandatory {
            let mut out = self.handle.out.borrow_mut();
            encode_method(
                &mut out,
                number,
                &Method::BasicReturn(BasicReturn {
                    reply_code: reply_code::NO_ROUTE,
                    reply_text: ShortStr::from_static("NO_ROUTE"),
                    exchange: p.msg.exchange.clone(),
                    routing_key: p.msg.routing_key.clone(),
                }),
            );
            encode_content(
                &mut out,
                number,
                p.msg.body_size(),
                &p.msg.raw_properties,
                &p.msg.body,
                self.handle.frame_max.get(),
            );
            drop(out);
            self.handle.write_ready.notify();
        }
        if let Some(seq) = seq {
            if let Some(t) = self
                .handle
                .channels
                .borrow_mut()
                .get_mut(&number)
                .and_then(|d| d.publishes.as_mut())
            {
                t.wait_for(seq, routed.pending, routed.refused > 0);
            }
            self.confirm_dirty.push(number);
        }
        Ok(())
    }

    pub(super) fn confirm_select(&mut self, number: u16, m: ConfirmSelect) -> MethodResult {
        let ch = self.channels.get_mut(&number).expect("channel checked");
        match ch.mode {
            Mode::Tx { .. } => {
                return Err(AmqpError::precondition(
                    "cannot switch from tx to confirm mode",
                ))
            }
            Mode::Plain => {
                ch.mode = Mode::Confirm;
                self.track_publishes(number, true);
            }
            Mode::Confirm => {}
        }
        self.reply(
            number,
            m.nowait,
            Method::ConfirmSelectOk(ConfirmSelectOk {}),
        );
        Ok(())
    }

    pub(super) fn track_publishes(&self, number: u16, send_confirms: bool) {
        if let Some(d) = self.handle.channels.borrow_mut().get_mut(&number) {
            d.publishes = Some(PublishTracker::new());
            d.send_confirms = send_confirms;
        }
    }

    /// Sends the confirms that became due while handling this batch.
    pub(crate) fn flush_confirms(&mut self) {
        for number in std::mem::take(&mut self.confirm_dirty) {
            self.handle.flush_confirms(number);
        }
    }
}
