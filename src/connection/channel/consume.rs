//! The basic class's consumer side: qos, consume, cancel, get, and the
//! settlements (ack, nack, reject, recover) that go back to the queues.
use super::tx::{Mode, TxSettle};
use super::Resource;
use super::{Conn, MethodResult};
use crate::access::PermissionKind;
use crate::codec::*;
use crate::connection::handle::{ConsumerInfo, UnackedTag};
use crate::error::AmqpError;
use crate::ids::{ConsumerId, QueueRef};
use crate::queue::{check_consume_arguments, ConsumerSpec, Settle};
use crate::shard::{CancelConsumer, Consume, GetMessage};
use crate::topology::random_name;

impl Conn {
    pub(super) fn basic_qos(&mut self, number: u16, m: BasicQos) -> MethodResult {
        if m.prefetch_size != 0 {
            return Err(AmqpError::not_implemented(format!(
                "prefetch_size!={}",
                m.prefetch_size
            )));
        }
        if m.global {
            if let Some(d) = self.handle.channels.borrow_mut().get_mut(&number) {
                d.global_prefetch = m.prefetch_count as u32;
            }
            self.handle.release_held(number, 0);
        } else if let Some(ch) = self.channels.get_mut(&number) {
            ch.prefetch = m.prefetch_count;
            if let Some(d) = self.handle.channels.borrow_mut().get_mut(&number) {
                d.prefetch = m.prefetch_count;
            }
        }
        self.handle
            .send_method(number, &Method::BasicQosOk(BasicQosOk {}));
        Ok(())
    }

    pub(super) async fn basic_consume(&mut self, number: u16, m: BasicConsume) -> MethodResult {
        if &*m.queue == crate::shard::REPLY_TO {
            return self.reply_consume(number, m);
        }
        let queue = self.queue_name(number, m.queue)?;
        self.permit(number, PermissionKind::Read, Resource::Queue, &queue)?;
        let meta = self.usable_queue(&queue)?;
        let tag = if m.consumer_tag.is_empty() {
            random_name("amq.ctag-")
        } else {
            m.consumer_tag
        };
        let qref = meta.queue_ref();
        let ch = &self.channels[&number];
        let spec = ConsumerSpec {
            id: ConsumerId(self.shard.unique_id()),
            channel: self.shard.channel_ref(self.handle.id, number, ch.epoch),
            tag: tag.clone(),
            no_ack: m.no_ack,
            exclusive: m.exclusive,
            prefetch: ch.prefetch as u32,
            arguments: m.arguments.clone(),
        };
        {
            let mut channels = self.handle.channels.borrow_mut();
            let d = channels.get_mut(&number).expect("channel checked");
            if d.consumers.contains_key(&tag) {
                return Err(AmqpError::new(
                    reply_code::NOT_ALLOWED,
                    format!("attempt to reuse consumer tag '{tag}'"),
                ));
            }
            check_consume_arguments(&m.arguments, &queue, &self.vhost)
                .map_err(AmqpError::precondition)?;
            d.consumers.insert(
                tag.clone(),
                ConsumerInfo {
                    queue: qref,
                    id: spec.id,
                    ready: false,
                    early: Vec::new(),
                },
            );
        }
        let op = Consume {
            queue: meta.id,
            spec,
        };
        if let Err(e) = self.shard.call(meta.owner_shard, op).await {
            if let Some(d) = self.handle.channels.borrow_mut().get_mut(&number) {
                d.consumers.remove(&tag);
            }
            return Err(e);
        }
        self.reply(
            number,
            m.no_wait,
            Method::BasicConsumeOk(BasicConsumeOk {
                consumer_tag: tag.clone(),
            }),
        );
        self.handle.consumer_ready(number, &tag);
        Ok(())
    }

    pub(super) async fn basic_cancel(&mut self, number: u16, m: BasicCancel) -> MethodResult {
        if self.reply_cancel(number, &m) {
            return Ok(());
        }
        let info = self
            .handle
            .channels
            .borrow_mut()
            .get_mut(&number)
            .and_then(|d| d.consumers.remove(&m.consumer_tag));
        if let Some(info) = info {
            let op = CancelConsumer {
                queue: info.queue.id,
                consumer: info.id,
            };
            // The queue may be gone already; cancel-ok either way.
            let _ = self.shard.call(info.queue.owner, op).await;
        }
        self.reply(
            number,
            m.no_wait,
            Method::BasicCancelOk(BasicCancelOk {
                consumer_tag: m.consumer_tag,
            }),
        );
        Ok(())
    }

    pub(super) async fn basic_get(&mut self, number: u16, m: BasicGet) -> MethodResult {
        let queue = self.queue_name(number, m.queue)?;
        self.permit(number, PermissionKind::Read, Resource::Queue, &queue)?;
        let meta = self.usable_queue(&queue)?;
        let holder = self
            .shard
            .channel_ref(self.handle.id, number, self.channels[&number].epoch);
        let op = GetMessage {
            queue: meta.id,
            holder,
            no_ack: m.no_ack,
        };
        let Some(got) = self.shard.call(meta.owner_shard, op).await? else {
            self.shard.metrics().get_empty.inc();
            self.handle
                .send_method(number, &Method::BasicGetEmpty(BasicGetEmpty {}));
            return Ok(());
        };
        let tag = {
            let mut channels = self.handle.channels.borrow_mut();
            let d = channels.get_mut(&number).expect("channel checked");
            d.next_tag += 1;
            if !m.no_ack {
                d.unacked.push_back(UnackedTag {
                    tag: d.next_tag,
                    queue: meta.queue_ref(),
                    msg_id: got.msg_id,
                    from_consumer: false,
                });
            }
            d.next_tag
        };
        let msg = &got.msg;
        let mut out = self.handle.out.borrow_mut();
        encode_method(
            &mut out,
            number,
            &Method::BasicGetOk(BasicGetOk {
                delivery_tag: tag,
                redelivered: got.redelivered,
                exchange: msg.exchange.clone(),
                routing_key: msg.routing_key.clone(),
                message_count: got.remaining,
            }),
        );
        encode_content(
            &mut out,
            number,
            msg.body_size(),
            &msg.raw_properties,
            &msg.body,
            self.handle.frame_max.get(),
        );
        drop(out);
        self.handle.write_ready.notify();
        Ok(())
    }

    pub(super) fn settle(
        &mut self,
        number: u16,
        tag: u64,
        multiple: bool,
        how: Settle,
    ) -> MethodResult {
        if let Some(Mode::Tx { settles, .. }) = self.channels.get_mut(&number).map(|c| &mut c.mode)
        {
            // Validate now, apply at commit.
            let known = self.handle.channels.borrow().get(&number).is_some_and(|d| {
                (multiple && tag == 0) || d.unacked.binary_search_by_key(&tag, |u| u.tag).is_ok()
            });
            if !known {
                return Err(unknown_tag(tag));
            }
            settles.push(TxSettle { tag, multiple, how });
            return Ok(());
        }
        self.apply_settle(number, tag, multiple, how)
    }

    pub(super) fn apply_settle(
        &mut self,
        number: u16,
        tag: u64,
        multiple: bool,
        how: Settle,
    ) -> MethodResult {
        let taken: Vec<UnackedTag> = {
            let mut channels = self.handle.channels.borrow_mut();
            let d = channels.get_mut(&number).expect("channel checked");
            if multiple {
                if tag != 0 && d.unacked.binary_search_by_key(&tag, |u| u.tag).is_err() {
                    return Err(unknown_tag(tag));
                }
                let upto = if tag == 0 { u64::MAX } else { tag };
                let n = d.unacked.partition_point(|u| u.tag <= upto);
                d.unacked.drain(..n).collect()
            } else {
                match d.unacked.binary_search_by_key(&tag, |u| u.tag) {
                    Ok(i) => d.unacked.remove(i).into_iter().collect(),
                    Err(_) => return Err(unknown_tag(tag)),
                }
            }
        };
        self.settle_tags(number, taken, how);
        Ok(())
    }

    /// Sends settlements to the queues, one batch per queue.
    fn settle_tags(&self, number: u16, taken: Vec<UnackedTag>, how: Settle) {
        let from_consumers = taken.iter().filter(|u| u.from_consumer).count() as u32;
        // Almost always one queue per ack: a linear scan beats a hash map.
        let mut by_queue: smallvec::SmallVec<[(QueueRef, Vec<u64>); 2]> = smallvec::SmallVec::new();
        for u in taken {
            match by_queue.iter_mut().find(|(q, _)| *q == u.queue) {
                Some((_, ids)) => ids.push(u.msg_id),
                None => by_queue.push((u.queue, vec![u.msg_id])),
            }
        }
        for (q, ids) in by_queue {
            self.shard.settle(q, ids, how);
        }
        if from_consumers > 0 {
            self.handle.release_held(number, from_consumers);
        }
    }

    pub(super) fn recover(&mut self, number: u16, requeue: bool) -> MethodResult {
        if !requeue {
            return Err(AmqpError::not_implemented("requeue=false"));
        }
        let taken: Vec<UnackedTag> = self
            .handle
            .channels
            .borrow_mut()
            .get_mut(&number)
            .map(|d| d.unacked.drain(..).collect())
            .unwrap_or_default();
        self.settle_tags(number, taken, Settle::Requeue);
        Ok(())
    }
}

/// 406 for an ack, nack or reject of a tag the channel does not hold.
fn unknown_tag(tag: u64) -> AmqpError {
    AmqpError::precondition(format!("unknown delivery tag {tag}"))
}
