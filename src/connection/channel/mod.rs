//! A channel: its state, its lifecycle (open, close, soft errors) and the
//! dispatch of its methods to the files of each AMQP class:
//! - `declare.rs`: the exchange and queue classes;
//! - `consume.rs`: qos, consume, cancel, get, ack/nack/reject, recover;
//! - `publish.rs` (with `confirm.rs`): publish assembly, routing, returns,
//!   publisher confirms;
//! - `tx.rs`: transactions.
//!
//! Soft errors (403-406) close the channel; hard errors close the
//! connection, as RabbitMQ scopes them.
mod confirm;
mod consume;
mod declare;
mod permit;
mod publish;
mod reply_to;
mod tx;

pub(super) use confirm::{Confirm, PublishTracker};
pub(super) use publish::{Pending, MAX_MESSAGE_SIZE};
pub(super) use reply_to::ReplyConsumer;

use super::handle::ChannelDeliveries;
use super::{Close, Conn};
use crate::codec::*;
use crate::error::AmqpError;
use crate::ids::QueueRef;
use crate::queue::Settle;
pub(crate) use permit::Resource;
use tx::Mode;

/// The reader's side of an open channel. Its delivery side (what queues
/// and other shards reach) is the handle's [`ChannelDeliveries`] of the
/// same number and epoch: both are made by [`Conn::open_channel`] and
/// dropped by [`Conn::forget_channel`], never separately.
pub(crate) struct Channel {
    pub epoch: u32,
    /// We sent channel.close and wait for close-ok.
    pub closing: bool,
    pub content: Option<Pending>,
    /// basic.qos prefetch for consumers created from now on.
    pub prefetch: u16,
    pub mode: Mode,
    /// For the spec's "empty queue name means the last declared queue".
    pub last_queue: ShortStr,
    /// Permission checks that passed.
    pub permits: permit::PermitCache,
}

type MethodResult = Result<(), AmqpError>;

/// A channel method that needs the async path.
pub(super) struct SlowMethod {
    number: u16,
    method: Method,
}

impl Conn {
    /// Handles a method on a channel: the checks every method goes through
    /// and the per-message methods run here, synchronously (the frame loop
    /// calls this without building a future); anything else comes back as
    /// a [`SlowMethod`] for [`Conn::channel_method_slow`].
    pub(super) fn channel_method(
        &mut self,
        number: u16,
        method: Method,
    ) -> Result<Option<SlowMethod>, Close> {
        let (class_id, method_id) = (method.class_id(), method.method_id());
        if let Method::ChannelOpen(_) = method {
            return self
                .open_channel(number, class_id, method_id)
                .map(|()| None);
        }
        let Some(ch) = self.channels.get_mut(&number) else {
            return Err(Close::Error(
                AmqpError::new(reply_code::CHANNEL_ERROR, "expected 'channel.open'"),
                class_id,
                method_id,
            ));
        };
        if ch.closing {
            // Everything but the close handshake is dropped (spec 2.3.7).
            match method {
                Method::ChannelCloseOk(_) => self.forget_channel(number),
                Method::ChannelClose(_) => {
                    self.handle
                        .send_method(number, &Method::ChannelCloseOk(ChannelCloseOk {}));
                }
                _ => {}
            }
            return Ok(None);
        }
        if ch.content.is_some() {
            return Err(Close::Error(
                AmqpError::new(
                    reply_code::UNEXPECTED_FRAME,
                    format!(
                        "expected content header for class 60, got {}",
                        method.name()
                    ),
                ),
                class_id,
                method_id,
            ));
        }
        let hot = matches!(
            method,
            Method::BasicPublish(_)
                | Method::BasicAck(_)
                | Method::BasicNack(_)
                | Method::BasicReject(_)
        );
        if !hot {
            return Ok(Some(SlowMethod { number, method }));
        }
        let result = self.dispatch_hot(number, method);
        self.method_result(number, result, class_id, method_id)
            .map(|()| None)
    }

    /// The methods that may wait (declarations, consume, get, close...).
    /// Boxed, so every connection's task is sized for the hot path, not for
    /// the largest declare (idle connections pay for task size).
    pub(super) async fn channel_method_slow(&mut self, slow: SlowMethod) -> Result<(), Close> {
        let SlowMethod { number, method } = slow;
        let (class_id, method_id) = (method.class_id(), method.method_id());
        let result = Box::pin(self.dispatch(number, method)).await;
        self.method_result(number, result, class_id, method_id)
    }

    /// A channel error closes the channel; a connection error the connection.
    fn method_result(
        &mut self,
        number: u16,
        result: MethodResult,
        class_id: u16,
        method_id: u16,
    ) -> Result<(), Close> {
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.is_connection_error() => Err(Close::Error(e, class_id, method_id)),
            Err(e) => {
                self.channel_error(number, e, class_id, method_id);
                Ok(())
            }
        }
    }

    fn open_channel(&mut self, number: u16, class_id: u16, method_id: u16) -> Result<(), Close> {
        // Like RabbitMQ, channel_max limits how many channels are open, not
        // which numbers they use.
        if self.channels.len() >= self.channel_max as usize && !self.channels.contains_key(&number)
        {
            return Err(Close::Error(
                AmqpError::new(
                    reply_code::NOT_ALLOWED,
                    format!(
                        "number of channels opened ({}) has reached the negotiated channel_max ({})",
                        self.channels.len(),
                        self.channel_max
                    ),
                ),
                class_id,
                method_id,
            ));
        }
        if self.channels.contains_key(&number) {
            return Err(Close::Error(
                AmqpError::new(reply_code::CHANNEL_ERROR, "second 'channel.open' seen"),
                class_id,
                method_id,
            ));
        }
        let epoch = self.next_epoch();
        self.channels.insert(
            number,
            Box::new(Channel {
                epoch,
                closing: false,
                content: None,
                prefetch: 0,
                mode: Mode::Plain,
                last_queue: ShortStr::new(),
                permits: Default::default(),
            }),
        );
        self.handle.channels.borrow_mut().insert(
            number,
            Box::new(ChannelDeliveries {
                epoch,
                open: true,
                ..Default::default()
            }),
        );
        self.handle
            .send_method(number, &Method::ChannelOpenOk(ChannelOpenOk {}));
        self.shard.metrics().channels_opened.inc();
        Ok(())
    }

    /// Epochs tell successive channels with the same number apart.
    fn next_epoch(&mut self) -> u32 {
        let next = self.handle.next_epoch.get() + 1;
        self.handle.next_epoch.set(next);
        next
    }

    /// Drops channel `number` (both sides) once it is released or closed.
    pub(super) fn forget_channel(&mut self, number: u16) {
        if self.channels.remove(&number).is_some() {
            self.shard.metrics().channels_closed.inc();
        }
        self.handle.channels.borrow_mut().remove(&number);
    }

    /// Closes a channel because of a soft error.
    pub(super) fn channel_error(
        &mut self,
        number: u16,
        e: AmqpError,
        class_id: u16,
        method_id: u16,
    ) {
        self.release_channel(number);
        if let Some(ch) = self.channels.get_mut(&number) {
            ch.closing = true;
            ch.content = None;
        }
        self.handle.send_method(
            number,
            &Method::ChannelClose(ChannelClose {
                reply_code: e.code,
                reply_text: ShortStr::from(super::truncate_text(&e.text)),
                class_id,
                method_id,
            }),
        );
    }

    /// Gives back everything a channel holds at its queues.
    pub(super) fn release_channel(&mut self, number: u16) {
        let Some(ch) = self.channels.get(&number) else {
            return;
        };
        let ch_ref = self.shard.channel_ref(self.handle.id, number, ch.epoch);
        let queues: Vec<QueueRef> = {
            let mut channels = self.handle.channels.borrow_mut();
            let Some(d) = channels.get_mut(&number) else {
                return;
            };
            d.open = false;
            let mut qs: Vec<QueueRef> = d.unacked.iter().map(|u| u.queue).collect();
            qs.extend(d.consumers.values().map(|c| c.queue));
            qs.extend(d.held.iter().map(|h| h.queue));
            qs.sort_by_key(|q| (q.owner, q.id));
            qs.dedup();
            d.unacked.clear();
            d.consumers.clear();
            d.held.clear();
            qs
        };
        for q in queues {
            self.shard.release_channel(q, ch_ref);
        }
    }

    /// Publish and settlement: synchronous, on every message. Every other
    /// method goes to [`dispatch`](Self::dispatch).
    fn dispatch_hot(&mut self, number: u16, method: Method) -> MethodResult {
        let requeue = |r: bool| if r { Settle::Requeue } else { Settle::Drop };
        match method {
            Method::BasicPublish(m) => {
                if m.immediate {
                    return Err(AmqpError::not_implemented("immediate=true"));
                }
                if let Some(ch) = self.channels.get_mut(&number) {
                    ch.content = Some(Pending::new(m));
                }
                Ok(())
            }
            Method::BasicAck(m) => self.settle(number, m.delivery_tag, m.multiple, Settle::Ack),
            Method::BasicNack(m) => {
                self.settle(number, m.delivery_tag, m.multiple, requeue(m.requeue))
            }
            Method::BasicReject(m) => {
                self.settle(number, m.delivery_tag, false, requeue(m.requeue))
            }
            other => Err(AmqpError::new(
                reply_code::INTERNAL_ERROR,
                format!("{} is not a per-message method", other.name()),
            )),
        }
    }
    /// Every method but the per-message ones, by class.
    async fn dispatch(&mut self, number: u16, method: Method) -> MethodResult {
        match method {
            Method::ChannelClose(_) => {
                self.release_channel(number);
                self.forget_channel(number);
                self.handle
                    .send_method(number, &Method::ChannelCloseOk(ChannelCloseOk {}));
                Ok(())
            }
            Method::ChannelCloseOk(_) => Ok(()),
            Method::ChannelFlow(f) => {
                if !f.active {
                    // RabbitMQ does not implement client-initiated flow stops.
                    return Err(AmqpError::not_implemented("active=false"));
                }
                self.handle.send_method(
                    number,
                    &Method::ChannelFlowOk(ChannelFlowOk { active: true }),
                );
                Ok(())
            }
            Method::ExchangeDeclare(m) => self.exchange_declare(number, m).await,
            Method::ExchangeDelete(m) => self.exchange_delete(number, m).await,
            Method::ExchangeBind(m) => self.exchange_bind(number, m).await,
            Method::ExchangeUnbind(m) => self.exchange_unbind(number, m).await,
            Method::QueueDeclare(m) => self.queue_declare(number, m).await,
            Method::QueueBind(m) => self.queue_bind(number, m).await,
            Method::QueueUnbind(m) => self.queue_unbind(number, m).await,
            Method::QueuePurge(m) => self.queue_purge(number, m).await,
            Method::QueueDelete(m) => self.queue_delete(number, m).await,
            Method::BasicQos(m) => self.basic_qos(number, m),
            Method::BasicConsume(m) => self.basic_consume(number, m).await,
            Method::BasicCancel(m) => self.basic_cancel(number, m).await,
            Method::BasicGet(m) => self.basic_get(number, m).await,
            Method::BasicRecoverAsync(m) => self.recover(number, m.requeue),
            Method::BasicRecover(m) => {
                self.recover(number, m.requeue)?;
                self.handle
                    .send_method(number, &Method::BasicRecoverOk(BasicRecoverOk {}));
                Ok(())
            }
            Method::ConfirmSelect(m) => self.confirm_select(number, m),
            Method::TxSelect(_) => self.tx_select(number),
            Method::TxCommit(_) => self.tx_commit(number).await,
            Method::TxRollback(_) => self.tx_rollback(number),
            other => Err(AmqpError::command_invalid(format!(
                "method {} is not valid from a client",
                other.name()
            ))),
        }
    }

    /// Sends a method's `-ok` unless the client asked for no-wait.
    fn reply(&self, number: u16, no_wait: bool, m: Method) {
        if !no_wait {
            self.handle.send_method(number, &m);
        }
    }
}
