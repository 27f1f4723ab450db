//! Topology decisions. Shard 0 validates every declare, bind, unbind and
//! delete against its replica, one at a time, and broadcasts the change to
//! every shard; the `-ok` goes back only once all shards have applied it.
//! This is the control path: it may wait, the message path never does.
use glommio::sync::Semaphore;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::error::{describe, exclusive_locked, random_name};
use super::messages::{LeaderOp, QueueDecl, QueueOp, Reply, Request};
use super::topology::{ConnRef, ExchangeMeta, QueueId, QueueMeta, TopologyChange};
use super::{AmqpError, Shard};
use crate::codec::{FieldTable, ShortStr};
use crate::routing::{headers, Binding, Destination, ExchangeKind};
use crate::storage::definitions::Definitions;

pub struct LeaderState {
    serial: Semaphore,
    next_queue_id: Cell<QueueId>,
    /// The definitions log (shard 0 only).
    pub definitions: RefCell<Option<Definitions>>,
}

impl LeaderState {
    pub fn new(next_queue_id: QueueId) -> Self {
        LeaderState {
            serial: Semaphore::new(1),
            next_queue_id: Cell::new(next_queue_id.max(1)),
            definitions: RefCell::new(None),
        }
    }
}

/// Queue arguments that change behaviour Warren does not implement yet: a
/// declare that asks for them is refused with 540 rather than ignored.
const UNSUPPORTED_QUEUE_ARGS: [&str; 10] = [
    "x-message-ttl",
    "x-expires",
    "x-max-length",
    "x-max-length-bytes",
    "x-overflow",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-priority",
    "x-single-active-consumer",
    "x-queue-master-locator",
];

fn bool_text(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

fn inequivalent(arg: &str, kind: &str, name: &str, vhost: &str, got: &str, cur: &str) -> AmqpError {
    AmqpError::precondition(format!(
        "inequivalent arg '{arg}' for {kind} '{name}' in vhost '{vhost}': received '{got}' but current is '{cur}'"
    ))
}

fn default_exchange_refused() -> AmqpError {
    AmqpError::access_refused("operation not permitted on the default exchange")
}

impl Shard {
    pub(super) async fn leader_op(self: &Rc<Self>, op: LeaderOp) -> Reply {
        debug_assert_eq!(self.id, 0, "topology decisions are shard 0's");
        // Serialise decisions: each validates against the state the previous
        // one left, even though broadcasting awaits.
        let Ok(_permit) = self.leader.serial.acquire_permit(1).await else {
            return Reply::Err(AmqpError::new(541, "leader stopped"));
        };
        let result = match op {
            LeaderOp::DeclareExchange {
                vhost,
                meta,
                passive,
            } => self.declare_exchange(vhost, meta, passive).await,
            LeaderOp::DeleteExchange {
                vhost,
                name,
                if_unused,
            } => self.delete_exchange(vhost, name, if_unused).await,
            LeaderOp::DeclareQueue { vhost, decl } => self.declare_queue(vhost, decl).await,
            LeaderOp::DeleteQueue {
                vhost,
                name,
                if_unused,
                if_empty,
                conn,
            } => {
                self.delete_queue(vhost, name, if_unused, if_empty, conn)
                    .await
            }
            LeaderOp::Bind {
                vhost,
                binding,
                conn,
            } => self.set_binding(vhost, binding, conn, true).await,
            LeaderOp::Unbind {
                vhost,
                binding,
                conn,
            } => self.set_binding(vhost, binding, conn, false).await,
            LeaderOp::AutoDeleteQueue { vhost, name, id } => {
                self.auto_delete_queue(vhost, name, id).await
            }
            LeaderOp::ConnectionClosed { conn } => self.connection_closed(conn).await,
        };
        result.unwrap_or_else(Reply::Err)
    }

    /// Makes `change` durable when it concerns durable things, then applies
    /// it on every shard. Either way the caller's `-ok` follows.
    async fn broadcast(self: &Rc<Self>, change: TopologyChange) {
        if self.is_durable_change(&change) {
            if let Err(e) = self.persist_definition(&change).await {
                tracing::error!("definitions log: cannot record a change: {e}");
            }
        }
        for s in 0..self.shards {
            let _ = self.call(s, Request::Apply(change.clone())).await;
        }
    }

    /// Durable exchanges, durable non-exclusive queues and bindings between
    /// durable ends survive a restart; nothing else is written down.
    fn is_durable_change(&self, change: &TopologyChange) -> bool {
        use TopologyChange as C;
        let queue_durable = |v: &str, q: &str| {
            self.queue_meta(v, q)
                .is_some_and(|m| m.durable && m.exclusive.is_none())
        };
        let exchange_durable = |v: &str, e: &str| self.exchange(v, e).is_some_and(|m| m.durable);
        match change {
            C::ExchangeAdded(_, e) => e.durable,
            C::ExchangeRemoved(v, e) => exchange_durable(v, e),
            C::QueueAdded(_, q) => q.durable && q.exclusive.is_none(),
            C::QueueRemoved(v, q) => queue_durable(v, q),
            C::BindingAdded(v, b) | C::BindingRemoved(v, b) => {
                exchange_durable(v, &b.source)
                    && match &b.destination {
                        Destination::Queue(q) => queue_durable(v, q),
                        Destination::Exchange(e) => exchange_durable(v, e),
                    }
            }
        }
    }

    async fn persist_definition(&self, change: &TopologyChange) -> std::io::Result<()> {
        let file = {
            let mut defs = self.leader.definitions.borrow_mut();
            let Some(d) = defs.as_mut() else {
                return Ok(());
            };
            d.append(change)?;
            d.file().try_clone()?
        };
        crate::shard::io::fdatasync(&file).await
    }

    fn exchange(&self, vhost: &str, name: &str) -> Option<ExchangeMeta> {
        self.topology
            .borrow()
            .vhost(vhost)
            .and_then(|v| v.exchanges.get(name).cloned())
    }

    fn queue_meta(&self, vhost: &str, name: &str) -> Option<QueueMeta> {
        self.topology
            .borrow()
            .vhost(vhost)
            .and_then(|v| v.queues.get(name).cloned())
    }

    async fn declare_exchange(
        self: &Rc<Self>,
        vhost: ShortStr,
        meta: ExchangeMeta,
        passive: bool,
    ) -> Result<Reply, AmqpError> {
        let name = meta.name.clone();
        if name.is_empty() {
            return Err(default_exchange_refused());
        }
        match self.exchange(&vhost, &name) {
            None if passive => Err(AmqpError::not_found(describe("exchange", &name, &vhost))),
            None if name.starts_with("amq.") => Err(AmqpError::access_refused(format!(
                "exchange name '{name}' contains reserved prefix 'amq.*'"
            ))),
            None => {
                if meta.arguments.get("alternate-exchange").is_some() {
                    return Err(AmqpError::not_implemented(
                        "exchange argument 'alternate-exchange' is not supported",
                    ));
                }
                self.broadcast(TopologyChange::ExchangeAdded(vhost, meta))
                    .await;
                Ok(Reply::Ok)
            }
            Some(_) if passive => Ok(Reply::Ok),
            Some(cur) => {
                let ex =
                    |arg, got: &str, c: &str| inequivalent(arg, "exchange", &name, &vhost, got, c);
                if cur.kind != meta.kind {
                    return Err(ex("type", meta.kind.as_str(), cur.kind.as_str()));
                }
                if cur.durable != meta.durable {
                    return Err(ex(
                        "durable",
                        bool_text(meta.durable),
                        bool_text(cur.durable),
                    ));
                }
                if cur.auto_delete != meta.auto_delete {
                    return Err(ex(
                        "auto_delete",
                        bool_text(meta.auto_delete),
                        bool_text(cur.auto_delete),
                    ));
                }
                if cur.internal != meta.internal {
                    return Err(ex(
                        "internal",
                        bool_text(meta.internal),
                        bool_text(cur.internal),
                    ));
                }
                Ok(Reply::Ok)
            }
        }
    }

    async fn delete_exchange(
        self: &Rc<Self>,
        vhost: ShortStr,
        name: ShortStr,
        if_unused: bool,
    ) -> Result<Reply, AmqpError> {
        if name.is_empty() {
            return Err(default_exchange_refused());
        }
        if name.starts_with("amq.") {
            return Err(AmqpError::access_refused(format!(
                "deletion of system exchange '{name}' in vhost '{vhost}' is not allowed"
            )));
        }
        if self.exchange(&vhost, &name).is_none() {
            // RabbitMQ treats deleting a missing exchange as done.
            return Ok(Reply::Ok);
        }
        if if_unused && self.has_bindings_from(&vhost, &name) {
            return Err(AmqpError::precondition(format!(
                "exchange '{name}' in vhost '{vhost}' in use"
            )));
        }
        self.broadcast(TopologyChange::ExchangeRemoved(vhost, name))
            .await;
        Ok(Reply::Ok)
    }

    fn has_bindings_from(&self, vhost: &str, exchange: &str) -> bool {
        self.topology
            .borrow()
            .vhost(vhost)
            .is_some_and(|v| v.routing.has_bindings_from(exchange))
    }

    /// A server-generated queue name that the declaring connection's own
    /// shard owns, so reply queues and temporary queues stay local.
    fn server_queue_name(&self, vhost: &str, shard: usize) -> ShortStr {
        loop {
            let name = random_name("amq.gen-");
            if self.owner_of(vhost, &name) == shard && self.queue_meta(vhost, &name).is_none() {
                return name;
            }
        }
    }

    async fn declare_queue(
        self: &Rc<Self>,
        vhost: ShortStr,
        decl: QueueDecl,
    ) -> Result<Reply, AmqpError> {
        let name = if decl.name.is_empty() && !decl.passive {
            self.server_queue_name(&vhost, decl.conn.shard as usize)
        } else {
            decl.name.clone()
        };
        if let Some(cur) = self.queue_meta(&vhost, &name) {
            if cur.exclusive.is_some_and(|owner| owner != decl.conn) {
                return Err(exclusive_locked(&name, &vhost));
            }
            if !decl.passive {
                let ex = |arg, got: bool, c: bool| {
                    inequivalent(arg, "queue", &name, &vhost, bool_text(got), bool_text(c))
                };
                if cur.durable != decl.durable {
                    return Err(ex("durable", decl.durable, cur.durable));
                }
                if cur.exclusive.is_some() != decl.exclusive {
                    return Err(ex("exclusive", decl.exclusive, cur.exclusive.is_some()));
                }
                if cur.auto_delete != decl.auto_delete {
                    return Err(ex("auto_delete", decl.auto_delete, cur.auto_delete));
                }
            }
            return Ok(Reply::Declared {
                meta: cur,
                created: false,
            });
        }
        if decl.passive {
            return Err(AmqpError::not_found(describe("queue", &name, &vhost)));
        }
        if !decl.name.is_empty() && name.starts_with("amq.") {
            return Err(AmqpError::access_refused(format!(
                "queue name '{name}' contains reserved prefix 'amq.*'"
            )));
        }
        check_queue_arguments(&decl.arguments)?;
        let id = self.leader.next_queue_id.get();
        self.leader.next_queue_id.set(id + 1);
        let meta = QueueMeta {
            id,
            name: name.clone(),
            owner_shard: self.owner_of(&vhost, &name) as u16,
            durable: decl.durable,
            exclusive: decl.exclusive.then_some(decl.conn),
            auto_delete: decl.auto_delete,
            arguments: decl.arguments,
        };
        self.broadcast(TopologyChange::QueueAdded(vhost, meta.clone()))
            .await;
        Ok(Reply::Declared {
            meta,
            created: true,
        })
    }

    async fn delete_queue(
        self: &Rc<Self>,
        vhost: ShortStr,
        name: ShortStr,
        if_unused: bool,
        if_empty: bool,
        conn: ConnRef,
    ) -> Result<Reply, AmqpError> {
        let Some(meta) = self.queue_meta(&vhost, &name) else {
            // RabbitMQ answers delete-ok for a queue that is not there.
            return Ok(Reply::Count(0));
        };
        if meta.exclusive.is_some_and(|owner| owner != conn) {
            return Err(exclusive_locked(&name, &vhost));
        }
        let op = QueueOp::Delete {
            if_unused,
            if_empty,
            only_if_idle: false,
        };
        let reply = self
            .call(meta.owner_shard as usize, Request::Queue(meta.id, op))
            .await
            .into_result()?;
        self.remove_queue_everywhere(vhost, meta).await;
        Ok(reply)
    }

    /// Broadcasts a queue's removal, then deletes auto-delete exchanges that
    /// lost their last binding with it.
    async fn remove_queue_everywhere(self: &Rc<Self>, vhost: ShortStr, meta: QueueMeta) {
        let sources: Vec<ShortStr> = self
            .topology
            .borrow()
            .vhost(&vhost)
            .map(|v| {
                v.routing
                    .bindings()
                    .filter(|b| b.destination == Destination::Queue(meta.name.clone()))
                    .map(|b| b.source.clone())
                    .collect()
            })
            .unwrap_or_default();
        self.broadcast(TopologyChange::QueueRemoved(vhost.clone(), meta.name))
            .await;
        for source in sources {
            self.auto_delete_exchange(&vhost, &source).await;
        }
    }

    async fn auto_delete_exchange(self: &Rc<Self>, vhost: &ShortStr, name: &ShortStr) {
        let auto = self.exchange(vhost, name).is_some_and(|e| e.auto_delete);
        if auto && !self.has_bindings_from(vhost, name) {
            self.broadcast(TopologyChange::ExchangeRemoved(vhost.clone(), name.clone()))
                .await;
        }
    }

    /// Checks both ends of a binding; returns the destination queue's
    /// metadata when it is a queue.
    fn check_binding(&self, vhost: &str, b: &Binding, conn: ConnRef) -> Result<(), AmqpError> {
        if b.source.is_empty() {
            return Err(default_exchange_refused());
        }
        let source = self
            .exchange(vhost, &b.source)
            .ok_or_else(|| AmqpError::not_found(describe("exchange", &b.source, vhost)))?;
        match &b.destination {
            Destination::Queue(q) => {
                let meta = self
                    .queue_meta(vhost, q)
                    .ok_or_else(|| AmqpError::not_found(describe("queue", q, vhost)))?;
                if meta.exclusive.is_some_and(|owner| owner != conn) {
                    return Err(exclusive_locked(q, vhost));
                }
            }
            Destination::Exchange(e) => {
                if e.is_empty() {
                    return Err(default_exchange_refused());
                }
                if self.exchange(vhost, e).is_none() {
                    return Err(AmqpError::not_found(describe("exchange", e, vhost)));
                }
            }
        }
        if source.kind == ExchangeKind::Headers {
            headers::validate_x_match(&b.arguments).map_err(AmqpError::precondition)?;
        }
        Ok(())
    }

    /// Adds or removes a binding; both are idempotent, as in RabbitMQ.
    async fn set_binding(
        self: &Rc<Self>,
        vhost: ShortStr,
        b: Binding,
        conn: ConnRef,
        add: bool,
    ) -> Result<Reply, AmqpError> {
        self.check_binding(&vhost, &b, conn)?;
        let exists = self
            .topology
            .borrow()
            .vhost(&vhost)
            .is_some_and(|v| v.routing.has_binding(&b));
        match (add, exists) {
            (true, false) => self.broadcast(TopologyChange::BindingAdded(vhost, b)).await,
            (false, true) => {
                let source = b.source.clone();
                self.broadcast(TopologyChange::BindingRemoved(vhost.clone(), b))
                    .await;
                self.auto_delete_exchange(&vhost, &source).await;
            }
            _ => {}
        }
        Ok(Reply::Ok)
    }

    async fn auto_delete_queue(
        self: &Rc<Self>,
        vhost: ShortStr,
        name: ShortStr,
        id: QueueId,
    ) -> Result<Reply, AmqpError> {
        let Some(meta) = self.queue_meta(&vhost, &name).filter(|m| m.id == id) else {
            return Ok(Reply::Ok);
        };
        let op = QueueOp::Delete {
            if_unused: false,
            if_empty: false,
            only_if_idle: true,
        };
        if let Reply::Count(_) = self
            .call(meta.owner_shard as usize, Request::Queue(id, op))
            .await
        {
            self.remove_queue_everywhere(vhost, meta).await;
        }
        Ok(Reply::Ok)
    }

    async fn connection_closed(self: &Rc<Self>, conn: ConnRef) -> Result<Reply, AmqpError> {
        let exclusive: Vec<(ShortStr, QueueMeta)> = self
            .topology
            .borrow()
            .vhosts
            .iter()
            .flat_map(|(vname, v)| {
                v.queues
                    .values()
                    .filter(|q| q.exclusive == Some(conn))
                    .map(|q| (vname.clone(), q.clone()))
            })
            .collect();
        for (vhost, meta) in exclusive {
            let op = QueueOp::Delete {
                if_unused: false,
                if_empty: false,
                only_if_idle: false,
            };
            let _ = self
                .call(meta.owner_shard as usize, Request::Queue(meta.id, op))
                .await;
            self.remove_queue_everywhere(vhost, meta).await;
        }
        Ok(Reply::Ok)
    }
}

fn check_queue_arguments(args: &FieldTable) -> Result<(), AmqpError> {
    for (key, value) in args.iter() {
        let key: &str = key;
        if UNSUPPORTED_QUEUE_ARGS.contains(&key) {
            return Err(AmqpError::not_implemented(format!(
                "queue argument '{key}' is not supported by Warren yet"
            )));
        }
        if key == "x-queue-type" && value.as_str().is_some_and(|t| t != "classic") {
            return Err(AmqpError::not_implemented(format!(
                "queue type '{}' is not supported by Warren; only classic queues",
                value.as_str().unwrap_or_default()
            )));
        }
    }
    Ok(())
}
