//! The topology replica every shard holds: virtual hosts, exchanges, queue
//! directory and bindings. Shard 0 (the leader) decides every change and
//! broadcasts it; the others only apply, so all replicas see the same
//! sequence of changes. Publishes route against the local replica.
use ahash::AHashMap;

use crate::codec::{FieldTable, ShortStr};
use crate::routing::{Binding, ExchangeKind, RoutingTable};

pub type QueueId = u64;

/// A connection anywhere in the broker (for exclusive queues).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnRef {
    pub shard: u16,
    pub conn: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeMeta {
    pub name: ShortStr,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueueMeta {
    pub id: QueueId,
    pub name: ShortStr,
    pub owner_shard: u16,
    pub durable: bool,
    pub exclusive: Option<ConnRef>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
}

#[derive(Debug, Clone)]
pub enum TopologyChange {
    ExchangeAdded(ShortStr, ExchangeMeta),
    ExchangeRemoved(ShortStr, ShortStr),
    QueueAdded(ShortStr, QueueMeta),
    QueueRemoved(ShortStr, ShortStr),
    BindingAdded(ShortStr, Binding),
    BindingRemoved(ShortStr, Binding),
}

#[derive(Default)]
pub struct VHost {
    pub exchanges: AHashMap<ShortStr, ExchangeMeta>,
    pub queues: AHashMap<ShortStr, QueueMeta>,
    pub routing: RoutingTable,
}

/// The exchanges every virtual host starts with, as RabbitMQ declares them.
const DEFAULT_EXCHANGES: [(&str, ExchangeKind); 6] = [
    ("amq.direct", ExchangeKind::Direct),
    ("amq.fanout", ExchangeKind::Fanout),
    ("amq.topic", ExchangeKind::Topic),
    ("amq.headers", ExchangeKind::Headers),
    ("amq.match", ExchangeKind::Headers),
    ("", ExchangeKind::Direct),
];

impl VHost {
    pub fn new() -> Self {
        let mut v = VHost::default();
        for (name, kind) in DEFAULT_EXCHANGES {
            let name = ShortStr::from_static(name);
            v.add_exchange(ExchangeMeta {
                name,
                kind,
                durable: true,
                auto_delete: false,
                internal: false,
                arguments: FieldTable::default(),
            });
        }
        v
    }

    fn add_exchange(&mut self, meta: ExchangeMeta) {
        self.routing.add_exchange(meta.name.clone(), meta.kind);
        self.exchanges.insert(meta.name.clone(), meta);
    }
}

#[derive(Default)]
pub struct Topology {
    pub vhosts: AHashMap<ShortStr, VHost>,
}

impl Topology {
    pub fn new() -> Self {
        let mut t = Topology::default();
        t.vhosts.insert(ShortStr::from_static("/"), VHost::new());
        t
    }

    pub fn vhost(&self, name: &str) -> Option<&VHost> {
        self.vhosts.get(name)
    }

    pub fn apply(&mut self, change: &TopologyChange) {
        let vhost_name = match change {
            TopologyChange::ExchangeAdded(v, _)
            | TopologyChange::ExchangeRemoved(v, _)
            | TopologyChange::QueueAdded(v, _)
            | TopologyChange::QueueRemoved(v, _)
            | TopologyChange::BindingAdded(v, _)
            | TopologyChange::BindingRemoved(v, _) => v,
        };
        let Some(vhost) = self.vhosts.get_mut(vhost_name) else {
            return;
        };
        match change {
            TopologyChange::ExchangeAdded(_, meta) => vhost.add_exchange(meta.clone()),
            TopologyChange::ExchangeRemoved(_, name) => {
                vhost.exchanges.remove(name);
                vhost.routing.remove_exchange(name);
            }
            TopologyChange::QueueAdded(_, meta) => {
                vhost.queues.insert(meta.name.clone(), meta.clone());
            }
            TopologyChange::QueueRemoved(_, name) => {
                vhost.queues.remove(name);
                vhost.routing.remove_queue(name);
            }
            TopologyChange::BindingAdded(_, b) => {
                vhost.routing.bind(b.clone());
            }
            TopologyChange::BindingRemoved(_, b) => {
                vhost.routing.unbind(b);
            }
        }
    }
}

/// The shard that owns queue `name` of `vhost`: a pure function of the
/// names, so any shard can find a queue's owner without asking.
pub fn owner_shard(vhost: &str, name: &str, shards: usize) -> usize {
    use std::hash::{BuildHasher, Hash, Hasher};
    // Fixed keys: every shard and every restart must agree.
    let state = ahash::RandomState::with_seeds(0x5741_5252, 0x454e_0001, 7, 11);
    let mut h = state.build_hasher();
    vhost.hash(&mut h);
    name.hash(&mut h);
    (h.finish() % shards as u64) as usize
}
