//! The exchange and queue classes: declare, delete, bind, unbind, purge.
//! Topology changes go to the leader; what needs a queue's state goes to
//! its owner, by way of this shard so that it follows this connection's own
//! publishes (mailboxes keep order per pair of shards).
use super::{Conn, MethodResult, Resource};
use crate::access::PermissionKind::{Configure, Read, Write};
use crate::codec::*;
use crate::error::{describe, AmqpError};
use crate::routing::{Binding, Destination, ExchangeKind};
use crate::shard::{
    Bind, DeclareExchange, DeclareQueue, DeleteExchange, DeleteQueue, PurgeQueue, QueueCounts,
    QueueStats, Unbind,
};
use crate::topology::decide::{QueueDecl, QueuePermit};
use crate::topology::{ExchangeMeta, QueueMeta};

impl Conn {
    pub(super) async fn exchange_declare(
        &mut self,
        number: u16,
        m: ExchangeDeclare,
    ) -> MethodResult {
        let Some(kind) = ExchangeKind::parse(&m.kind) else {
            if m.passive {
                // Passive declares ignore the type.
                if !self.shard.exchange_exists(&self.vhost, &m.exchange) {
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
        // As RabbitMQ: the default exchange is refused first (the leader
        // does), passive declares are not checked.
        if !m.passive && !m.exchange.is_empty() {
            self.permit(number, Configure, Resource::Exchange, &m.exchange)?;
            // A new exchange with an alternate: read on it, write on the
            // alternate, as RabbitMQ's channel checks.
            let ae = m
                .arguments
                .get("alternate-exchange")
                .and_then(|v| v.as_str());
            let ae = ae.map(ShortStr::from).filter(|_| {
                !m.exchange.starts_with("amq.")
                    && !self.shard.exchange_exists(&self.vhost, &m.exchange)
            });
            if let Some(ae) = ae {
                self.permit(number, Read, Resource::Exchange, &m.exchange)?;
                self.permit(number, Write, Resource::Exchange, &ae)?;
            }
        }
        let op = DeclareExchange {
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
        self.shard.leader(op).await?;
        self.reply(
            number,
            m.no_wait,
            Method::ExchangeDeclareOk(ExchangeDeclareOk {}),
        );
        Ok(())
    }

    pub(super) async fn exchange_delete(&mut self, number: u16, m: ExchangeDelete) -> MethodResult {
        // The default and amq.* exchanges are refused first (the leader).
        if !m.exchange.is_empty() && !m.exchange.starts_with("amq.") {
            self.permit(number, Configure, Resource::Exchange, &m.exchange)?;
        }
        let op = DeleteExchange {
            vhost: self.vhost.clone(),
            name: m.exchange,
            if_unused: m.if_unused,
        };
        self.shard.leader(op).await?;
        self.reply(
            number,
            m.no_wait,
            Method::ExchangeDeleteOk(ExchangeDeleteOk {}),
        );
        Ok(())
    }

    pub(super) async fn exchange_bind(&mut self, number: u16, m: ExchangeBind) -> MethodResult {
        let b = Binding {
            source: m.source,
            destination: Destination::Exchange(m.destination),
            routing_key: m.routing_key,
            arguments: m.arguments,
        };
        self.bind(number, b, true).await?;
        self.reply(number, m.no_wait, Method::ExchangeBindOk(ExchangeBindOk {}));
        Ok(())
    }

    pub(super) async fn exchange_unbind(&mut self, number: u16, m: ExchangeUnbind) -> MethodResult {
        let b = Binding {
            source: m.source,
            destination: Destination::Exchange(m.destination),
            routing_key: m.routing_key,
            arguments: m.arguments,
        };
        self.bind(number, b, false).await?;
        self.reply(
            number,
            m.no_wait,
            Method::ExchangeUnbindOk(ExchangeUnbindOk {}),
        );
        Ok(())
    }

    pub(super) async fn queue_declare(&mut self, number: u16, m: QueueDeclare) -> MethodResult {
        if crate::config::failpoints().panic_on_queue.as_deref() == Some(&*m.queue) {
            panic!("failpoint: declare of queue '{}'", m.queue);
        }
        if m.queue.starts_with(crate::shard::REPLY_TO) {
            return self.reply_declare(number, m).await;
        }
        let conn = self.shard.conn_ref(self.handle.id);
        // A reserved name is refused first (by the leader); a server-named
        // queue is checked by the leader once it has its name.
        let named = !m.queue.is_empty() && !m.queue.starts_with("amq.");
        if !m.passive && named {
            self.permit(number, Configure, Resource::Queue, &m.queue)?;
        }
        // The leader checks what needs the final name or whether the
        // queue is new (see `QueueDecl::permit`).
        let permit = (!m.passive).then(|| QueuePermit {
            user: self.user.clone(),
            permission: self.shard.permission(&self.user, &self.vhost),
        });
        let op = DeclareQueue {
            vhost: self.vhost.clone(),
            decl: QueueDecl {
                permit,
                name: m.queue,
                passive: m.passive,
                durable: m.durable,
                exclusive: m.exclusive,
                auto_delete: m.auto_delete,
                arguments: m.arguments,
                conn,
            },
        };
        let declared = self.shard.leader(op).await?;
        let meta = declared.meta;
        // Counts come from the owner by way of this shard, so they include
        // every message this connection published before (mailboxes keep
        // order per pair of shards; the leader's path would not).
        let counts = if declared.created {
            QueueCounts {
                messages: 0,
                consumers: 0,
            }
        } else {
            self.queue_counts(&meta).await?
        };
        let name = meta.name;
        if m.exclusive {
            self.declared_exclusive = true;
        }
        if let Some(ch) = self.channels.get_mut(&number) {
            ch.last_queue = name.clone();
        }
        self.shard.metrics().queues_declared.inc();
        self.reply(
            number,
            m.no_wait,
            Method::QueueDeclareOk(QueueDeclareOk {
                queue: name,
                message_count: counts.messages,
                consumer_count: counts.consumers,
            }),
        );
        Ok(())
    }

    pub(super) async fn queue_bind(&mut self, number: u16, m: QueueBind) -> MethodResult {
        let (queue, routing_key) = self.binding_names(number, m.queue, m.routing_key)?;
        let b = Binding {
            source: m.exchange,
            destination: Destination::Queue(queue),
            routing_key,
            arguments: m.arguments,
        };
        self.bind(number, b, true).await?;
        self.reply(number, m.no_wait, Method::QueueBindOk(QueueBindOk {}));
        Ok(())
    }

    pub(super) async fn queue_unbind(&mut self, number: u16, m: QueueUnbind) -> MethodResult {
        let (queue, routing_key) = self.binding_names(number, m.queue, m.routing_key)?;
        let b = Binding {
            source: m.exchange,
            destination: Destination::Queue(queue),
            routing_key,
            arguments: m.arguments,
        };
        self.bind(number, b, false).await?;
        self.handle
            .send_method(number, &Method::QueueUnbindOk(QueueUnbindOk {}));
        Ok(())
    }

    pub(super) async fn queue_purge(&mut self, number: u16, m: QueuePurge) -> MethodResult {
        let queue = self.queue_name(number, m.queue)?;
        self.permit(number, Read, Resource::Queue, &queue)?;
        let meta = self.usable_queue(&queue)?;
        let count = self
            .shard
            .call(meta.owner_shard, PurgeQueue(meta.id))
            .await?;
        self.reply(
            number,
            m.no_wait,
            Method::QueuePurgeOk(QueuePurgeOk {
                message_count: count,
            }),
        );
        Ok(())
    }

    pub(super) async fn queue_delete(&mut self, number: u16, m: QueueDelete) -> MethodResult {
        let queue = self.queue_name(number, m.queue)?;
        self.permit(number, Configure, Resource::Queue, &queue)?;
        // Let this connection's earlier publishes reach the queue first, so
        // the deleted count includes them.
        if let Ok(meta) = self.usable_queue(&queue) {
            let _ = self.queue_counts(&meta).await;
        }
        let op = DeleteQueue {
            vhost: self.vhost.clone(),
            name: queue,
            if_unused: m.if_unused,
            if_empty: m.if_empty,
            conn: self.shard.conn_ref(self.handle.id),
        };
        let count = self.shard.leader(op).await?;
        self.reply(
            number,
            m.no_wait,
            Method::QueueDeleteOk(QueueDeleteOk {
                message_count: count,
            }),
        );
        Ok(())
    }

    /// RabbitMQ's order for (un)binding: write on the destination, the
    /// default exchange refused at either end, read on the source.
    async fn bind(&mut self, number: u16, binding: Binding, add: bool) -> MethodResult {
        let (dest_res, dest) = match &binding.destination {
            Destination::Queue(q) => (Resource::Queue, q.clone()),
            Destination::Exchange(e) => (Resource::Exchange, e.clone()),
        };
        self.permit(number, Write, dest_res, &dest)?;
        let default_at_either_end =
            binding.source.is_empty() || (dest_res == Resource::Exchange && dest.is_empty());
        if !default_at_either_end {
            self.permit(number, Read, Resource::Exchange, &binding.source)?;
        }
        let conn = self.shard.conn_ref(self.handle.id);
        let vhost = self.vhost.clone();
        if add {
            let op = Bind {
                vhost,
                binding,
                conn,
            };
            self.shard.leader(op).await
        } else {
            let op = Unbind {
                vhost,
                binding,
                conn,
            };
            self.shard.leader(op).await
        }
    }

    /// A queue's counts, asked of its owner from this shard.
    async fn queue_counts(&self, meta: &QueueMeta) -> Result<QueueCounts, AmqpError> {
        self.shard.call(meta.owner_shard, QueueStats(meta.id)).await
    }

    /// The spec's rule: an empty queue name means the channel's last
    /// declared queue; with none, RabbitMQ closes the channel with 404.
    pub(super) fn queue_name(&self, number: u16, name: ShortStr) -> Result<ShortStr, AmqpError> {
        if !name.is_empty() {
            return Ok(name);
        }
        let last = &self.channels[&number].last_queue;
        if last.is_empty() {
            return Err(AmqpError::new(
                reply_code::NOT_FOUND,
                "no previously declared queue",
            ));
        }
        Ok(last.clone())
    }

    /// The queue and routing key a queue.bind or queue.unbind means. The
    /// spec's shortcut (and RabbitMQ's): an empty routing key stands for
    /// the queue's name only when the queue name was empty too; an explicit
    /// queue with key "" binds "" (kombu's default binding).
    fn binding_names(
        &self,
        number: u16,
        queue: ShortStr,
        routing_key: ShortStr,
    ) -> Result<(ShortStr, ShortStr), AmqpError> {
        let shortcut = queue.is_empty() && routing_key.is_empty();
        let queue = self.queue_name(number, queue)?;
        let key = if shortcut { queue.clone() } else { routing_key };
        Ok((queue, key))
    }

    /// A queue this connection may use: exists, and not another
    /// connection's exclusive queue.
    pub(super) fn usable_queue(&self, name: &str) -> Result<QueueMeta, AmqpError> {
        self.shard
            .usable_queue(&self.vhost, name, self.shard.conn_ref(self.handle.id))
    }
}
