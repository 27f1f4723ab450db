//! The topology: virtual hosts, exchanges, the queue directory and
//! bindings, and the rules that decide every change to them.
//!
//! Every shard holds a [`Topology`] replica. Shard 0 (the leader) decides
//! each change with the pure functions of [`decide`] and broadcasts it; the
//! others only apply, so all replicas see the same sequence of changes.
//! Publishes route against the local replica. [`owner_shard`] places queues.
#![warn(missing_docs)]

pub mod admin;
pub mod alternate;
pub mod args;
pub mod decide;
pub mod policy;

use ahash::AHashMap;

use crate::access::{Access, AccessChange};
use crate::codec::{FieldTable, ShortStr};
use crate::error::{describe, exclusive_locked, AmqpError, AmqpResult};
use crate::ids::{ConnRef, QueueId, QueueRef, ShardId};
use crate::routing::{Binding, ExchangeKind, RoutingTable};
use policy::{Policy, PolicyKind};

/// An exchange as declared.
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeMeta {
    /// The exchange's name in its vhost (`""` is the default exchange).
    pub name: ShortStr,
    /// Its type.
    pub kind: ExchangeKind,
    /// Survives a restart.
    pub durable: bool,
    /// Deleted when its last binding goes.
    pub auto_delete: bool,
    /// Not published to by clients, only through exchange bindings.
    pub internal: bool,
    /// Arguments as declared.
    pub arguments: FieldTable,
}

/// A queue as declared, with its broker-wide id and its owner.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueMeta {
    /// Never reused, so the message log can key messages by it.
    pub id: QueueId,
    /// The queue's name in its vhost.
    pub name: ShortStr,
    /// `owner_shard(vhost, name)`: the only shard that holds its messages.
    pub owner_shard: ShardId,
    /// Survives a restart (with its persistent messages).
    pub durable: bool,
    /// The connection that may use it, for an exclusive queue.
    pub exclusive: Option<ConnRef>,
    /// Deleted when its last consumer goes.
    pub auto_delete: bool,
    /// `x-…` arguments as declared.
    pub arguments: FieldTable,
}

impl QueueMeta {
    /// Its type as listings name it (`x-queue-type`: classic or quorum).
    pub fn queue_type(&self) -> &'static str {
        match self.arguments.get("x-queue-type").and_then(|v| v.as_str()) {
            Some("quorum") => "quorum",
            _ => "classic",
        }
    }

    /// Where to send what concerns this queue.
    pub fn queue_ref(&self) -> QueueRef {
        QueueRef {
            id: self.id,
            owner: self.owner_shard,
        }
    }
}

/// One change to the topology: most in a vhost (the first field).
#[derive(Debug, Clone)]
pub enum TopologyChange {
    /// A vhost was created, with RabbitMQ's predeclared exchanges.
    VhostAdded(ShortStr),
    /// A vhost was deleted with everything in it and every permission in
    /// it (its queues were deleted from their owners first).
    VhostRemoved(ShortStr),
    /// Users and permissions.
    Access(AccessChange),
    /// An exchange was declared.
    ExchangeAdded(ShortStr, ExchangeMeta),
    /// An exchange (by name) was deleted, with its bindings.
    ExchangeRemoved(ShortStr, ShortStr),
    /// A queue was declared.
    QueueAdded(ShortStr, QueueMeta),
    /// A queue (by name) was deleted, with its bindings.
    QueueRemoved(ShortStr, ShortStr),
    /// A binding was added.
    BindingAdded(ShortStr, Binding),
    /// A binding was removed.
    BindingRemoved(ShortStr, Binding),
    /// A policy or operator policy was set (added or replaced by name).
    PolicySet(ShortStr, Box<Policy>),
    /// A policy or operator policy (by kind and name) was cleared.
    PolicyCleared(ShortStr, PolicyKind, String),
}

/// One virtual host's exchanges, queues and bindings.
#[derive(Default)]
pub struct VHost {
    /// Exchanges by name (the default exchange is `""`).
    pub exchanges: AHashMap<ShortStr, ExchangeMeta>,
    /// The queue directory: every queue of the vhost, wherever it lives.
    pub queues: AHashMap<ShortStr, QueueMeta>,
    /// Bindings, compiled for routing.
    pub routing: RoutingTable,
    /// The default exchange's publish counts on this shard (the routing
    /// table counts the others as it routes).
    pub default_exchange: crate::metrics::ExchangeCounters,
    /// Policies by name.
    pub policies: AHashMap<String, Policy>,
    /// Operator policies by name.
    pub operator_policies: AHashMap<String, Policy>,
}

/// The exchanges every virtual host starts with, as RabbitMQ declares them
/// (`amq.rabbitmq.trace` is internal: only the firehose tracer, which
/// Warren does not have, publishes to it).
const DEFAULT_EXCHANGES: [(&str, ExchangeKind, bool); 7] = [
    ("amq.direct", ExchangeKind::Direct, false),
    ("amq.fanout", ExchangeKind::Fanout, false),
    ("amq.topic", ExchangeKind::Topic, false),
    ("amq.headers", ExchangeKind::Headers, false),
    ("amq.match", ExchangeKind::Headers, false),
    ("amq.rabbitmq.trace", ExchangeKind::Topic, true),
    ("", ExchangeKind::Direct, false),
];

impl VHost {
    /// A vhost with RabbitMQ's predeclared exchanges (what a new vhost
    /// gets; `default()` is an empty one).
    pub fn predeclared() -> Self {
        let mut v = VHost::default();
        for (name, kind, internal) in DEFAULT_EXCHANGES {
            let name = ShortStr::from_static(name);
            v.add_exchange(ExchangeMeta {
                name,
                kind,
                durable: true,
                auto_delete: false,
                internal,
                arguments: FieldTable::default(),
            });
        }
        v
    }

    /// The policies of one kind.
    pub fn policies_of(&self, kind: PolicyKind) -> &AHashMap<String, Policy> {
        match kind {
            PolicyKind::User => &self.policies,
            PolicyKind::Operator => &self.operator_policies,
        }
    }

    fn policies_mut(&mut self, kind: PolicyKind) -> &mut AHashMap<String, Policy> {
        match kind {
            PolicyKind::User => &mut self.policies,
            PolicyKind::Operator => &mut self.operator_policies,
        }
    }

    fn add_exchange(&mut self, meta: ExchangeMeta) {
        self.routing.add_exchange(meta.name.clone(), meta.kind);
        let alternate = alternate::alternate_exchange(&meta, self.policy_alternate(&meta.name));
        if alternate.is_some() {
            self.routing.set_alternate_exchange(&meta.name, alternate);
        }
        self.exchanges.insert(meta.name.clone(), meta);
    }

    /// The `alternate-exchange` of the policy that applies to exchange
    /// `name`, if any.
    fn policy_alternate(&self, name: &str) -> Option<&str> {
        let p = policy::best(self.policies.values(), name, policy::PolicyTarget::Exchange)?;
        p.parsed.alternate_exchange.as_deref()
    }

    /// A policy changed: every exchange's alternate is decided again.
    fn refresh_alternates(&mut self) {
        let decided: Vec<(ShortStr, Option<ShortStr>)> = self
            .exchanges
            .values()
            .map(|m| {
                let ae = alternate::alternate_exchange(m, self.policy_alternate(&m.name));
                (m.name.clone(), ae)
            })
            .collect();
        for (name, ae) in decided {
            self.routing.set_alternate_exchange(&name, ae);
        }
    }
}

/// A shard's replica of the whole topology.
#[derive(Default)]
pub struct Topology {
    /// Virtual hosts by name.
    pub vhosts: AHashMap<ShortStr, VHost>,
    /// Users and their permissions.
    pub access: Access,
}

impl Topology {
    /// Vhost `/` with its exchanges and no users (unit tests' start).
    pub fn new() -> Self {
        let mut t = Topology::default();
        t.vhosts
            .insert(ShortStr::from_static("/"), VHost::predeclared());
        t
    }

    /// Nothing at all: what a replica starts from before the definitions
    /// log's replay (which creates even `/`, unless it was deleted).
    pub fn empty() -> Self {
        Topology::default()
    }

    /// Vhost names, sorted.
    pub fn vhost_names(&self) -> Vec<ShortStr> {
        let mut v: Vec<ShortStr> = self.vhosts.keys().cloned().collect();
        v.sort();
        v
    }

    /// A vhost by name.
    pub fn vhost(&self, name: &str) -> Option<&VHost> {
        self.vhosts.get(name)
    }

    /// An exchange by vhost and name.
    pub fn exchange(&self, vhost: &str, name: &str) -> Option<&ExchangeMeta> {
        self.vhost(vhost).and_then(|v| v.exchanges.get(name))
    }

    /// A queue by vhost and name.
    pub fn queue(&self, vhost: &str, name: &str) -> Option<&QueueMeta> {
        self.vhost(vhost).and_then(|v| v.queues.get(name))
    }

    /// A queue that connection `conn` may use: it exists and is not
    /// another connection's exclusive queue.
    pub fn usable_queue(&self, vhost: &str, name: &str, conn: ConnRef) -> AmqpResult<&QueueMeta> {
        let meta = self
            .queue(vhost, name)
            .ok_or_else(|| AmqpError::not_found(describe("queue", name, vhost)))?;
        if meta.exclusive.is_some_and(|owner| owner != conn) {
            return Err(exclusive_locked(name, vhost));
        }
        Ok(meta)
    }

    /// Whether a message may be published to `exchange`: it exists and is
    /// not internal.
    pub fn check_publishable(&self, vhost: &str, exchange: &str) -> AmqpResult<()> {
        // The default exchange is in every vhost and never internal; the
        // connection's vhost existed when it opened (routing copes if it
        // has gone since). Two lookups per message saved.
        if exchange.is_empty() {
            return Ok(());
        }
        let meta = self
            .exchange(vhost, exchange)
            .ok_or_else(|| AmqpError::not_found(describe("exchange", exchange, vhost)))?;
        if meta.internal {
            return Err(AmqpError::access_refused(format!(
                "cannot publish to internal exchange '{exchange}' in vhost '{vhost}'"
            )));
        }
        Ok(())
    }

    /// Applies a change the leader decided.
    pub fn apply(&mut self, change: &TopologyChange) {
        let vhost_name = match change {
            TopologyChange::VhostAdded(name) => {
                self.vhosts
                    .entry(name.clone())
                    .or_insert_with(VHost::predeclared);
                return;
            }
            TopologyChange::VhostRemoved(name) => {
                self.vhosts.remove(name);
                self.access.vhost_removed(name);
                return;
            }
            TopologyChange::Access(c) => {
                self.access.apply(c);
                return;
            }
            TopologyChange::ExchangeAdded(v, _)
            | TopologyChange::ExchangeRemoved(v, _)
            | TopologyChange::QueueAdded(v, _)
            | TopologyChange::QueueRemoved(v, _)
            | TopologyChange::BindingAdded(v, _)
            | TopologyChange::BindingRemoved(v, _)
            | TopologyChange::PolicySet(v, _)
            | TopologyChange::PolicyCleared(v, ..) => v,
        };
        let Some(vhost) = self.vhosts.get_mut(vhost_name) else {
            return;
        };
        match change {
            TopologyChange::VhostAdded(_)
            | TopologyChange::VhostRemoved(_)
            | TopologyChange::Access(_) => {}
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
            TopologyChange::PolicySet(_, p) => {
                vhost
                    .policies_mut(p.kind)
                    .insert(p.name.clone(), (**p).clone());
                vhost.refresh_alternates();
            }
            TopologyChange::PolicyCleared(_, kind, name) => {
                vhost.policies_mut(*kind).remove(name);
                vhost.refresh_alternates();
            }
        }
    }
}

/// The shard that owns queue `name` of `vhost`: a pure function of the
/// names, so any shard can find a queue's owner without asking.
pub fn owner_shard(vhost: &str, name: &str, shards: usize) -> ShardId {
    use std::hash::{BuildHasher, Hash, Hasher};
    // Fixed keys: every shard and every restart must agree.
    let state = ahash::RandomState::with_seeds(0x5741_5252, 0x454e_0001, 7, 11);
    let mut h = state.build_hasher();
    vhost.hash(&mut h);
    name.hash(&mut h);
    ShardId::from_index((h.finish() % shards as u64) as usize)
}

/// A name with `prefix` and 22 random URL-safe characters, the shape of
/// RabbitMQ's `amq.gen-…` queue names and `amq.ctag-…` consumer tags.
pub fn random_name(prefix: &str) -> ShortStr {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::thread_rng();
    let suffix: String = (0..22)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    ShortStr::from(format!("{prefix}{suffix}"))
}
