//! Topology changes, on shard 0 (the leader). Each request is a [`Call`]:
//! the leader takes them one at a time, decides with
//! [`crate::topology::decide`] against its replica, writes a change that
//! concerns durable things to the definitions log (fdatasync'd), and
//! broadcasts it to every shard; the `-ok` goes back only once all shards
//! have applied it. This is the control path: it may wait, the message
//! path never does.
use futures_lite::future::BoxedLocal;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::queues::{Apply, DeleteOwned};
use super::{Call, Shard};
use crate::codec::ShortStr;
use crate::error::{AmqpError, AmqpResult};
use crate::ids::{ConnRef, QueueId, ShardId};
use crate::routing::Binding;
use crate::runtime::sync::Serial;
use crate::storage::definitions::Definitions;
use crate::topology::decide::{self, QueueDecl, QueueDeclared};
use crate::topology::{ExchangeMeta, QueueMeta, TopologyChange};

/// The leader's own state (used on shard 0 only).
pub(super) struct LeaderState {
    /// One decision at a time: each validates against the state the
    /// previous one left, even though broadcasting awaits.
    pub(super) serial: Serial,
    next_queue_id: Cell<QueueId>,
    /// The definitions log.
    pub(super) definitions: RefCell<Option<Definitions>>,
}

impl LeaderState {
    pub(super) fn new(next_queue_id: QueueId) -> Self {
        LeaderState {
            serial: Serial::default(),
            next_queue_id: Cell::new(QueueId(next_queue_id.0.max(1))),
            definitions: RefCell::new(None),
        }
    }
}

/// exchange.declare.
pub struct DeclareExchange {
    /// The vhost.
    pub vhost: ShortStr,
    /// The exchange as declared.
    pub meta: ExchangeMeta,
    /// Only check that it exists.
    pub passive: bool,
}

/// exchange.delete.
pub struct DeleteExchange {
    /// The vhost.
    pub vhost: ShortStr,
    /// The exchange.
    pub name: ShortStr,
    /// Refuse if it has bindings.
    pub if_unused: bool,
}

/// queue.declare.
pub struct DeclareQueue {
    /// The vhost.
    pub vhost: ShortStr,
    /// The declaration.
    pub decl: QueueDecl,
}

/// The queue a declare named or made.
#[derive(Debug)]
pub struct Declared {
    /// The queue.
    pub meta: QueueMeta,
    /// This declare created it.
    pub created: bool,
}

/// queue.delete; answers how many messages the queue held.
pub struct DeleteQueue {
    /// The vhost.
    pub vhost: ShortStr,
    /// The queue.
    pub name: ShortStr,
    /// Refuse if it has consumers.
    pub if_unused: bool,
    /// Refuse if it has messages.
    pub if_empty: bool,
    /// The deleting connection (exclusive queues are its own).
    pub conn: ConnRef,
}

/// queue.bind and exchange.bind.
pub struct Bind {
    /// The vhost.
    pub vhost: ShortStr,
    /// The binding.
    pub binding: Binding,
    /// The binding connection (exclusive queues are its own).
    pub conn: ConnRef,
}

/// queue.unbind and exchange.unbind.
pub struct Unbind {
    /// The vhost.
    pub vhost: ShortStr,
    /// The binding.
    pub binding: Binding,
    /// The unbinding connection.
    pub conn: ConnRef,
}

/// The owner saw an auto-delete queue lose its last consumer.
pub struct AutoDeleteQueue {
    /// The vhost.
    pub vhost: ShortStr,
    /// The queue.
    pub name: ShortStr,
    /// Its id: a queue declared again under the name since is not deleted.
    pub id: QueueId,
    /// It expired (`x-expires`) rather than lost its last consumer.
    pub expired: bool,
}

/// A connection closed: its exclusive queues go.
pub struct ConnectionClosed {
    /// The connection.
    pub conn: ConnRef,
}

/// A leader request: runs on shard 0 in the leader's serial section.
macro_rules! leader_call {
    ($ty:ty => $out:ty, |$op:ident, $shard:ident| $body:expr) => {
        impl Call for $ty {
            type Output = $out;
            fn run(self, $shard: Rc<Shard>) -> BoxedLocal<AmqpResult<$out>> {
                let $op = self;
                Box::pin(async move {
                    debug_assert_eq!(
                        $shard.id,
                        ShardId::LEADER,
                        "topology decisions are shard 0's"
                    );
                    let _turn = $shard.leader.serial.enter().await;
                    $body
                })
            }
        }
    };
}

leader_call!(DeclareExchange => (), |op, shard| {
    let change = decide::declare_exchange(&shard.topology.borrow(), &op.vhost, op.meta, op.passive)?;
    if let Some(change) = change {
        shard.broadcast(change).await?;
    }
    Ok(())
});

leader_call!(DeleteExchange => (), |op, shard| {
    let change = decide::delete_exchange(&shard.topology.borrow(), &op.vhost, &op.name, op.if_unused)?;
    if let Some(change) = change {
        shard.broadcast(change).await?;
    }
    Ok(())
});

leader_call!(DeclareQueue => Declared, |op, shard| {
    let next_id = shard.leader.next_queue_id.get();
    let decided =
        decide::declare_queue(&shard.topology.borrow(), &op.vhost, op.decl, next_id, shard.shards)?;
    match decided {
        QueueDeclared::Exists(meta) => Ok(Declared { meta, created: false }),
        QueueDeclared::Create(meta) => {
            shard.leader.next_queue_id.set(QueueId(next_id.0 + 1));
            shard
                .broadcast(TopologyChange::QueueAdded(op.vhost, meta.clone()))
                .await?;
            Ok(Declared { meta, created: true })
        }
    }
});

leader_call!(DeleteQueue => u32, |op, shard| {
    let found = decide::delete_queue(&shard.topology.borrow(), &op.vhost, &op.name, op.conn)?;
    let Some(meta) = found else {
        return Ok(0);
    };
    let delete = DeleteOwned {
        queue: meta.id,
        if_unused: op.if_unused,
        if_empty: op.if_empty,
        only_if_idle: false,
        only_if_expired: false,
    };
    let count = shard.call(meta.owner_shard, delete).await?;
    shard.remove_queue_everywhere(op.vhost, meta).await?;
    Ok(count)
});

leader_call!(Bind => (), |op, shard| {
    let change = decide::set_binding(&shard.topology.borrow(), &op.vhost, op.binding, op.conn, true)?;
    if let Some(change) = change {
        shard.broadcast(change).await?;
    }
    Ok(())
});

leader_call!(Unbind => (), |op, shard| {
    let source = op.binding.source.clone();
    let change =
        decide::set_binding(&shard.topology.borrow(), &op.vhost, op.binding, op.conn, false)?;
    if let Some(change) = change {
        shard.broadcast(change).await?;
        shard.auto_delete_exchange(&op.vhost, &source).await?;
    }
    Ok(())
});

leader_call!(AutoDeleteQueue => (), |op, shard| {
    let meta = shard.topology.borrow().queue(&op.vhost, &op.name).filter(|m| m.id == op.id).cloned();
    let Some(meta) = meta else {
        return Ok(());
    };
    let delete = DeleteOwned {
        queue: op.id,
        if_unused: false,
        if_empty: false,
        only_if_idle: !op.expired,
        only_if_expired: op.expired,
    };
    // Refused when a consumer came back meanwhile: then the queue stays.
    if shard.call(meta.owner_shard, delete).await.is_ok() {
        shard.remove_queue_everywhere(op.vhost, meta).await?;
    }
    Ok(())
});

leader_call!(ConnectionClosed => (), |op, shard| {
    let exclusive = decide::exclusive_queues(&shard.topology.borrow(), op.conn);
    for (vhost, meta) in exclusive {
        let delete = DeleteOwned {
            queue: meta.id,
            if_unused: false,
            if_empty: false,
            only_if_idle: false,
            only_if_expired: false,
        };
        // Gone from its owner either way; the directory follows.
        let _ = shard.call(meta.owner_shard, delete).await;
        // Exclusive queues are never durable: nothing to store that fails.
        let _ = shard.remove_queue_everywhere(vhost, meta).await;
    }
    Ok(())
});

impl Shard {
    /// Makes `change` durable when it concerns durable things, then applies
    /// it on every shard. A change that cannot be stored is not applied and
    /// fails the caller (541): nothing is reported stored that is not. The
    /// one exception is a queue's removal: its owner has already dropped
    /// it, so the replicas follow, and the caller still hears that the
    /// removal is not on disk (the queue may come back at a restart).
    pub(super) async fn broadcast(self: &Rc<Self>, change: TopologyChange) -> AmqpResult<()> {
        let durable = decide::is_durable_change(&self.topology.borrow(), &change);
        let stored = if durable {
            self.persist_definition(&change).await.map_err(|e| {
                tracing::error!("definitions log: cannot record a change, refused: {e}");
                AmqpError::internal(format!("cannot store the change on disk: {e}"))
            })
        } else {
            Ok(())
        };
        if stored.is_err() && !matches!(change, TopologyChange::QueueRemoved(..)) {
            return stored;
        }
        for s in 0..self.shards {
            let _ = self
                .call(ShardId::from_index(s), Apply(change.clone()))
                .await;
        }
        stored
    }

    /// Appends `change` to the definitions log and syncs it; a change whose
    /// sync fails is taken back out of the file.
    async fn persist_definition(&self, change: &TopologyChange) -> std::io::Result<()> {
        let (file, before) = {
            let mut defs = self.leader.definitions.borrow_mut();
            let Some(d) = defs.as_mut() else {
                return Ok(());
            };
            let before = d.append(change)?;
            (d.file().try_clone()?, before)
        };
        let synced = crate::runtime::io::fdatasync(&file).await;
        if synced.is_err() {
            if let Some(d) = self.leader.definitions.borrow_mut().as_mut() {
                let _ = d.undo(before);
            }
        }
        synced
    }

    /// Broadcasts a queue's removal, then deletes auto-delete exchanges that
    /// lost their last binding with it.
    async fn remove_queue_everywhere(
        self: &Rc<Self>,
        vhost: ShortStr,
        meta: QueueMeta,
    ) -> AmqpResult<()> {
        let sources = decide::sources_of_queue(&self.topology.borrow(), &vhost, &meta.name);
        self.broadcast(TopologyChange::QueueRemoved(vhost.clone(), meta.name))
            .await?;
        for source in sources {
            self.auto_delete_exchange(&vhost, &source).await?;
        }
        Ok(())
    }

    async fn auto_delete_exchange(
        self: &Rc<Self>,
        vhost: &ShortStr,
        name: &ShortStr,
    ) -> AmqpResult<()> {
        let change = decide::auto_delete_exchange(&self.topology.borrow(), vhost, name);
        match change {
            Some(change) => self.broadcast(change).await,
            None => Ok(()),
        }
    }
}
