//! Channel methods: exchange, queue, basic, confirm and tx classes.
//!
//! Soft errors (403-406) close the channel; hard errors close the
//! connection, as RabbitMQ scopes them.

use super::content::{Pending, TxPublish};
use super::handle::{ChannelDeliveries, ConsumerInfo, UnackedTag};
use super::{Close, Conn};
use crate::broker::error::{describe, exclusive_locked, random_name};
use crate::broker::messages::{LeaderOp, QueueDecl, QueueOp};
use crate::broker::topology::{ExchangeMeta, QueueMeta};
use crate::broker::{AmqpError, ConfirmRef, QueueRef, Reply, Request};
use crate::codec::*;
use crate::queue::{ConsumerSpec, Settle};
use crate::routing::{Binding, Destination, ExchangeKind};

/// Publisher confirms or transactions: a channel is in at most one mode.
pub(crate) enum Mode {
    Plain,
    /// Publish progress lives in the handle's `PublishTracker`, where
    /// acceptances from other shards land.
    Confirm,
    Tx {
        publishes: Vec<TxPublish>,
        settles: Vec<TxSettle>,
    },
}

pub(crate) struct TxSettle {
    tag: u64,
    multiple: bool,
    how: Settle,
}

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
                Method::ChannelCloseOk(_) => {
                    self.channels.remove(&number);
                    self.handle.channels.borrow_mut().remove(&number);
                }
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
        Ok(())
    }

    /// Epochs tell successive channels with the same number apart.
    fn next_epoch(&mut self) -> u32 {
        let next = self.handle.next_epoch.get() + 1;
        self.handle.next_epoch.set(next);
        next
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

    async fn dispatch(&mut self, number: u16, method: Method) -> MethodResult {
        match method {
            Method::ChannelClose(_) => {
                self.release_channel(number);
                self.channels.remove(&number);
                self.handle.channels.borrow_mut().remove(&number);
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
            Method::ExchangeDelete(m) => {
                let op = LeaderOp::DeleteExchange {
                    vhost: self.vhost.clone(),
                    name: m.exchange,
                    if_unused: m.if_unused,
                };
                self.leader(op).await?;
                self.reply(
                    number,
                    m.no_wait,
                    Method::ExchangeDeleteOk(ExchangeDeleteOk {}),
                );
                Ok(())
            }
            Method::ExchangeBind(m) => {
                let b = Binding {
                    source: m.source,
                    destination: Destination::Exchange(m.destination),
                    routing_key: m.routing_key,
                    arguments: m.arguments,
                };
                self.bind(b, true).await?;
                self.reply(number, m.no_wait, Method::ExchangeBindOk(ExchangeBindOk {}));
                Ok(())
            }
            Method::ExchangeUnbind(m) => {
                let b = Binding {
                    source: m.source,
                    destination: Destination::Exchange(m.destination),
                    routing_key: m.routing_key,
                    arguments: m.arguments,
                };
                self.bind(b, false).await?;
                self.reply(
                    number,
                    m.no_wait,
                    Method::ExchangeUnbindOk(ExchangeUnbindOk {}),
                );
                Ok(())
            }
            Method::QueueDeclare(m) => self.queue_declare(number, m).await,
            Method::QueueBind(m) => {
                let queue = self.queue_name(number, m.queue)?;
                let routing_key =
                    if m.routing_key.is_empty() && self.channels[&number].last_queue == queue {
                        queue.clone()
                    } else {
                        m.routing_key
                    };
                let b = Binding {
                    source: m.exchange,
                    destination: Destination::Queue(queue),
                    routing_key,
                    arguments: m.arguments,
                };
                self.bind(b, true).await?;
                self.reply(number, m.no_wait, Method::QueueBindOk(QueueBindOk {}));
                Ok(())
            }
            Method::QueueUnbind(m) => {
                let queue = self.queue_name(number, m.queue)?;
                let b = Binding {
                    source: m.exchange,
                    destination: Destination::Queue(queue),
                    routing_key: m.routing_key,
                    arguments: m.arguments,
                };
                self.bind(b, false).await?;
                self.handle
                    .send_method(number, &Method::QueueUnbindOk(QueueUnbindOk {}));
                Ok(())
            }
            Method::QueuePurge(m) => {
                let queue = self.queue_name(number, m.queue)?;
                let meta = self.usable_queue(&queue)?;
                let count = match self.queue_call(&meta, QueueOp::Purge).await? {
                    Reply::Count(n) => n,
                    _ => 0,
                };
                self.reply(
                    number,
                    m.no_wait,
                    Method::QueuePurgeOk(QueuePurgeOk {
                        message_count: count,
                    }),
                );
                Ok(())
            }
            Method::QueueDelete(m) => {
                let queue = self.queue_name(number, m.queue)?;
                // Let this connection's earlier publishes reach the queue
                // first, so the deleted count includes them.
                if let Ok(meta) = self.usable_queue(&queue) {
                    let _ = self.queue_call(&meta, QueueOp::Stats).await;
                }
                let op = LeaderOp::DeleteQueue {
                    vhost: self.vhost.clone(),
                    name: queue,
                    if_unused: m.if_unused,
                    if_empty: m.if_empty,
                    conn: self.shard.conn_ref(self.handle.id),
                };
                let count = match self.leader(op).await? {
                    Reply::Count(n) => n,
                    _ => 0,
                };
                self.reply(
                    number,
                    m.no_wait,
                    Method::QueueDeleteOk(QueueDeleteOk {
                        message_count: count,
                    }),
                );
                Ok(())
            }
            Method::BasicQos(m) => {
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
                }
                self.handle
                    .send_method(number, &Method::BasicQosOk(BasicQosOk {}));
                Ok(())
            }
            Method::BasicConsume(m) => self.basic_consume(number, m).await,
            Method::BasicCancel(m) => {
                let info = self
                    .handle
                    .channels
                    .borrow_mut()
                    .get_mut(&number)
                    .and_then(|d| d.consumers.remove(&m.consumer_tag));
                if let Some(info) = info {
                    let req = Request::Queue(info.queue.id, QueueOp::Cancel(info.id));
                    // The queue may be gone already; cancel-ok either way.
                    let _ = self.shard.call(info.queue.owner as usize, req).await;
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
            Method::BasicGet(m) => self.basic_get(number, m).await,
            Method::BasicRecoverAsync(m) => self.recover(number, m.requeue),
            Method::BasicRecover(m) => {
                self.recover(number, m.requeue)?;
                self.handle
                    .send_method(number, &Method::BasicRecoverOk(BasicRecoverOk {}));
                Ok(())
            }
            Method::ConfirmSelect(m) => {
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
            Method::TxSelect(_) => {
                let ch = self.channels.get_mut(&number).expect("channel checked");
                match ch.mode {
                    Mode::Confirm => {
                        return Err(AmqpError::precondition(
                            "cannot switch from confirm to tx mode",
                        ))
                    }
                    Mode::Plain => {
                        ch.mode = Mode::Tx {
                            publishes: Vec::new(),
                            settles: Vec::new(),
                        };
                        self.track_publishes(number, false);
                    }
                    Mode::Tx { .. } => {}
                }
                self.handle
                    .send_method(number, &Method::TxSelectOk(TxSelectOk {}));
                Ok(())
            }
            Method::TxCommit(_) => {
                let ch = self.channels.get_mut(&number).expect("channel checked");
                let Mode::Tx { publishes, settles } = &mut ch.mode else {
                    return Err(AmqpError::precondition("channel is not transactional"));
                };
                let publishes = std::mem::take(publishes);
                let settles = std::mem::take(settles);
                for p in publishes {
                    self.route_publish(number, p)?;
                }
                for s in settles {
                    self.apply_settle(number, s.tag, s.multiple, s.how)?;
                }
                // commit-ok means every queue has the messages.
                self.shard.schedule_pump();
                loop {
                    let accepted = self.handle.accepted.wait();
                    if self.handle.publishes_settled(number) {
                        break;
                    }
                    accepted.await;
                }
                self.handle
                    .send_method(number, &Method::TxCommitOk(TxCommitOk {}));
                Ok(())
            }
            Method::TxRollback(_) => {
                let ch = self.channels.get_mut(&number).expect("channel checked");
                let Mode::Tx { publishes, settles } = &mut ch.mode else {
                    return Err(AmqpError::precondition("channel is not transactional"));
                };
                publishes.clear();
                settles.clear();
                self.handle
                    .send_method(number, &Method::TxRollbackOk(TxRollbackOk {}));
                Ok(())
            }
            other => Err(AmqpError::command_invalid(format!(
                "method {} is not valid from a client",
                other.name()
            ))),
        }
    }

    fn reply(&self, number: u16, no_wait: bool, m: Method) {
        if !no_wait {
            self.handle.send_method(number, &m);
        }
    }

    async fn leader(&self, op: LeaderOp) -> Result<Reply, AmqpError> {
        self.shard.call(0, Request::Leader(op)).await.into_result()
    }

    async fn queue_call(&self, meta: &QueueMeta, op: QueueOp) -> Result<Reply, AmqpError> {
        self.shard
            .call(meta.owner_shard as usize, Request::Queue(meta.id, op))
            .await
            .into_result()
    }

    /// The spec's rule: an empty queue name means the channel's last
    /// declared queue; with none, 530 NOT_ALLOWED (RabbitMQ's answer).
    fn queue_name(&self, number: u16, name: ShortStr) -> Result<ShortStr, AmqpError> {
        if !name.is_empty() {
            return Ok(name);
        }
        let last = &self.channels[&number].last_queue;
        if last.is_empty() {
            return Err(AmqpError::new(
                reply_code::NOT_ALLOWED,
                "no previously declared queue",
            ));
        }
        Ok(last.clone())
    }

    /// A queue this connection may use: exists, and not another
    /// connection's exclusive queue.
    fn usable_queue(&self, name: &str) -> Result<QueueMeta, AmqpError> {
        let topo = self.shard.topology.borrow();
        let meta = topo
            .vhost(&self.vhost)
            .and_then(|v| v.queues.get(name))
            .ok_or_else(|| AmqpError::not_found(describe("queue", name, &self.vhost)))?;
        if meta
            .exclusive
            .is_some_and(|owner| owner != self.shard.conn_ref(self.handle.id))
        {
            return Err(exclusive_locked(name, &self.vhost));
        }
        Ok(meta.clone())
    }

    async fn exchange_declare(&mut self, number: u16, m: ExchangeDeclare) -> MethodResult {
        let Some(kind) = ExchangeKind::parse(&m.kind) else {
            if m.passive {
                // Passive declares ignore the type.
                let exists = self
                    .shard
                    .topology
                    .borrow()
                    .vhost(&self.vhost)
                    .is_some_and(|v| v.exchanges.contains_key(&m.exchange));
                if !exists {
                    return Err(AmqpError::not_found(describe(
                        "exchange",
                        &m.exchange,
                        &self.vhost,
                    )));
                }
                self.reply(
                    number,
                    m.no_wait,
                    Method::ExchangeDeclareOk(ExchangeDeclareOk {}),
                );
                return Ok(());
            }
            return Err(AmqpError::command_invalid(format!(
                "unknown exchange type '{}'",
                m.kind
            )));
        };
        let op = LeaderOp::DeclareExchange {
            vhost: self.vhost.clone(),
            meta: ExchangeMeta {
                name: m.exchange,
                kind,
                durable: m.durable,
                auto_delete: m.auto_delete,
                internal: m.internal,
                arguments: m.arguments,
            },
            passive: m.passive,
        };
        self.leader(op).await?;
        self.reply(
            number,
            m.no_wait,
            Method::ExchangeDeclareOk(ExchangeDeclareOk {}),
        );
        Ok(())
    }

    async fn bind(&mut self, b: Binding, add: bool) -> MethodResult {
        let conn = self.shard.conn_ref(self.handle.id);
        let vhost = self.vhost.clone();
        let op = if add {
            LeaderOp::Bind {
                vhost,
                binding: b,
                conn,
            }
        } else {
            LeaderOp::Unbind {
                vhost,
                binding: b,
                conn,
            }
        };
        self.leader(op).await.map(|_| ())
    }

    async fn queue_declare(&mut self, number: u16, m: QueueDeclare) -> MethodResult {
        let conn = self.shard.conn_ref(self.handle.id);
        let op = LeaderOp::DeclareQueue {
            vhost: self.vhost.clone(),
            decl: QueueDecl {
                name: m.queue,
                passive: m.passive,
                durable: m.durable,
                exclusive: m.exclusive,
                auto_delete: m.auto_delete,
                arguments: m.arguments,
                conn,
            },
        };
        let Reply::Declared { meta, created } = self.leader(op).await? else {
            return Err(AmqpError::new(
                reply_code::INTERNAL_ERROR,
                "bad declare reply",
            ));
        };
        // Counts come from the owner by way of this shard, so they include
        // every message this connection published before (mailboxes keep
        // order per pair of shards; the leader's path would not).
        let (messages, consumers) = if created {
            (0, 0)
        } else {
            match self.queue_call(&meta, QueueOp::Stats).await? {
                Reply::Counts {
                    messages,
                    consumers,
                } => (messages, consumers),
                _ => (0, 0),
            }
        };
        let name = meta.name;
        if m.exclusive {
            self.declared_exclusive = true;
        }
        if let Some(ch) = self.channels.get_mut(&number) {
            ch.last_queue = name.clone();
        }
        self.reply(
            number,
            m.no_wait,
            Method::QueueDeclareOk(QueueDeclareOk {
                queue: name,
                message_count: messages,
                consumer_count: consumers,
            }),
        );
        Ok(())
    }

    async fn basic_consume(&mut self, number: u16, m: BasicConsume) -> MethodResult {
        let queue = self.queue_name(number, m.queue)?;
        let meta = self.usable_queue(&queue)?;
        let tag = if m.consumer_tag.is_empty() {
            random_name("amq.ctag-")
        } else {
            m.consumer_tag
        };
        let qref = QueueRef {
            id: meta.id,
            owner: meta.owner_shard,
        };
        let ch = &self.channels[&number];
        let spec = ConsumerSpec {
            id: self.shard.unique_id(),
            channel: self.shard.channel_ref(self.handle.id, number, ch.epoch),
            tag: tag.clone(),
            no_ack: m.no_ack,
            exclusive: m.exclusive,
            prefetch: ch.prefetch as u32,
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
        if let Err(e) = self.queue_call(&meta, QueueOp::Consume(spec)).await {
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

    async fn basic_get(&mut self, number: u16, m: BasicGet) -> MethodResult {
        let queue = self.queue_name(number, m.queue)?;
        let meta = self.usable_queue(&queue)?;
        let holder = self
            .shard
            .channel_ref(self.handle.id, number, self.channels[&number].epoch);
        let reply = self
            .queue_call(
                &meta,
                QueueOp::Get {
                    holder,
                    no_ack: m.no_ack,
                },
            )
            .await?;
        let Reply::Got(Some(got)) = reply else {
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
                    queue: QueueRef {
                        id: meta.id,
                        owner: meta.owner_shard,
                    },
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

    fn settle(&mut self, number: u16, tag: u64, multiple: bool, how: Settle) -> MethodResult {
        if let Some(Mode::Tx { settles, .. }) = self.channels.get_mut(&number).map(|c| &mut c.mode)
        {
            // Validate now, apply at commit.
            let known = self.handle.channels.borrow().get(&number).is_some_and(|d| {
                (multiple && tag == 0) || d.unacked.binary_search_by_key(&tag, |u| u.tag).is_ok()
            });
            if !known {
                return Err(AmqpError::precondition(format!(
                    "unknown delivery tag {tag}"
                )));
            }
            settles.push(TxSettle { tag, multiple, how });
            return Ok(());
        }
        self.apply_settle(number, tag, multiple, how)
    }

    fn apply_settle(&mut self, number: u16, tag: u64, multiple: bool, how: Settle) -> MethodResult {
        let taken: Vec<UnackedTag> = {
            let mut channels = self.handle.channels.borrow_mut();
            let d = channels.get_mut(&number).expect("channel checked");
            if multiple {
                if tag != 0 && d.unacked.binary_search_by_key(&tag, |u| u.tag).is_err() {
                    return Err(AmqpError::precondition(format!(
                        "unknown delivery tag {tag}"
                    )));
                }
                let upto = if tag == 0 { u64::MAX } else { tag };
                let n = d.unacked.partition_point(|u| u.tag <= upto);
                d.unacked.drain(..n).collect()
            } else {
                match d.unacked.binary_search_by_key(&tag, |u| u.tag) {
                    Ok(i) => d.unacked.remove(i).into_iter().collect(),
                    Err(_) => {
                        return Err(AmqpError::precondition(format!(
                            "unknown delivery tag {tag}"
                        )))
                    }
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

    fn recover(&mut self, number: u16, requeue: bool) -> MethodResult {
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

    fn track_publishes(&self, number: u16, send_confirms: bool) {
        if let Some(d) = self.handle.channels.borrow_mut().get_mut(&number) {
            d.publishes = Some(super::confirm::PublishTracker::new());
            d.send_confirms = send_confirms;
        }
    }

    /// Sends the confirms that became due while handling this batch.
    pub(super) fn flush_confirms(&mut self) {
        for number in std::mem::take(&mut self.confirm_dirty) {
            self.handle.flush_confirms(number);
        }
    }

    /// Routes a complete message (at publish, or at tx.commit).
    pub(super) fn route_publish(&mut self, number: u16, p: TxPublish) -> MethodResult {
        let exchange = &p.msg.exchange;
        {
            let topo = self.shard.topology.borrow();
            let meta = topo
                .vhost(&self.vhost)
                .and_then(|v| v.exchanges.get(exchange))
                .ok_or_else(|| AmqpError::not_found(describe("exchange", exchange, &self.vhost)))?;
            if meta.internal {
                return Err(AmqpError::access_refused(format!(
                    "cannot publish to internal exchange '{exchange}' in vhost '{}'",
                    self.vhost
                )));
            }
        }
        // In confirm and tx mode the publish is numbered, and queues on
        // other shards will say when they have it.
        let seq = self
            .handle
            .channels
            .borrow_mut()
            .get_mut(&number)
            .and_then(|d| d.publishes.as_mut())
            .map(|t| t.next());
        let epoch = self.channels.get(&number).map_or(0, |c| c.epoch);
        let confirm = seq.map(|seq| ConfirmRef {
            ch: self.shard.channel_ref(self.handle.id, number, epoch),
            seq,
        });
        let routed = self.shard.publish(
            &self.vhost,
            exchange,
            &p.msg.routing_key,
            p.headers.as_ref(),
            &p.msg,
            confirm,
        );
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
                t.wait_for(seq, routed.pending);
            }
            self.confirm_dirty.push(number);
        }
        Ok(())
    }
}
