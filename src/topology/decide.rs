//! The leader's decisions, as pure functions of its replica: each checks a
//! request with RabbitMQ's errors (403 reserved names, 404, 405 another
//! connection's exclusive queue, 406 inequivalent redeclares) and says
//! which [`TopologyChange`] to broadcast, if any. The shard's leader
//! (`shard::leader`) runs them one at a time and does the waiting:
//! persisting, broadcasting, asking queue owners.

use super::{owner_shard, random_name, ExchangeMeta, QueueMeta, Topology, TopologyChange};
use crate::access::PermissionKind::{self, Configure, Read, Write};
use crate::codec::{reply_code, FieldTable, ShortStr};
use crate::error::{describe, exclusive_locked, AmqpError, AmqpResult};
use crate::ids::{ConnRef, QueueId, ShardId};
use crate::queue::config::{self, DeclareArgError, QueueKind};
use crate::routing::{headers, Binding, Destination, ExchangeKind};

/// A queue.declare as the leader receives it.
#[derive(Debug, Clone)]
pub struct QueueDecl {
    /// Empty for a server-named queue.
    pub name: ShortStr,
    /// Only check that the queue exists.
    pub passive: bool,
    /// Survives a restart.
    pub durable: bool,
    /// Only `conn` may use it, and it goes when `conn` closes.
    pub exclusive: bool,
    /// Deleted when its last consumer goes.
    pub auto_delete: bool,
    /// `x-…` arguments.
    pub arguments: FieldTable,
    /// The declaring connection.
    pub conn: ConnRef,
    /// The declarer's permission (a client's declare; operators' have
    /// none), for the checks that need the final name or whether the
    /// queue is new: configure on a server-made name (RabbitMQ checks
    /// `amq.gen-…`), and for a new queue with a dead-letter exchange, read
    /// on the queue and write on that exchange (RabbitMQ's channel).
    pub permit: Option<QueuePermit>,
}

/// Who declares a queue, and what they may do in its vhost.
#[derive(Debug, Clone)]
pub struct QueuePermit {
    /// The user, for the error text.
    pub user: String,
    /// Their permission in the vhost (none: nothing is permitted).
    pub permission: Option<std::sync::Arc<crate::access::Permission>>,
}

impl QueuePermit {
    /// 403 unless the declarer has `kind` on `res` `name`.
    fn check(&self, kind: PermissionKind, res: &str, name: &str, vhost: &str) -> AmqpResult<()> {
        if self
            .permission
            .as_ref()
            .is_some_and(|p| p.permits(kind, name))
        {
            return Ok(());
        }
        Err(AmqpError::access_refused(format!(
            "access to {res} '{name}' in vhost '{vhost}' refused for user '{}'",
            self.user
        )))
    }
}

/// What a queue.declare comes to.
#[derive(Debug)]
pub enum QueueDeclared {
    /// The queue was there (and equivalent): nothing changes.
    Exists(QueueMeta),
    /// A new queue, to be broadcast as [`TopologyChange::QueueAdded`].
    Create(QueueMeta),
}

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

/// exchange.declare: `None` when the exchange is there and equivalent.
pub fn declare_exchange(
    topo: &Topology,
    vhost: &ShortStr,
    meta: ExchangeMeta,
    passive: bool,
) -> AmqpResult<Option<TopologyChange>> {
    let name = meta.name.clone();
    if name.is_empty() {
        return Err(default_exchange_refused());
    }
    match topo.exchange(vhost, &name) {
        None if passive => Err(AmqpError::not_found(describe("exchange", &name, vhost))),
        None if name.starts_with("amq.") => Err(AmqpError::access_refused(format!(
            "exchange name '{name}' contains reserved prefix 'amq.*'"
        ))),
        None => {
            super::alternate::check_argument(&meta.arguments, &name, vhost)?;
            Ok(Some(TopologyChange::ExchangeAdded(vhost.clone(), meta)))
        }
        Some(_) if passive => Ok(None),
        Some(cur) => {
            let ex = |arg, got: &str, c: &str| inequivalent(arg, "exchange", &name, vhost, got, c);
            if cur.kind != meta.kind {
                return Err(ex("type", meta.kind.as_str(), cur.kind.as_str()));
            }
            let flags = [
                ("durable", meta.durable, cur.durable),
                ("auto_delete", meta.auto_delete, cur.auto_delete),
                ("internal", meta.internal, cur.internal),
            ];
            for (arg, got, current) in flags {
                if got != current {
                    return Err(ex(arg, bool_text(got), bool_text(current)));
                }
            }
            super::alternate::check_equivalent(&cur.arguments, &meta.arguments, &name, vhost)?;
            Ok(None)
        }
    }
}

/// exchange.delete: `None` when there is nothing to delete (RabbitMQ
/// treats deleting a missing exchange as done).
pub fn delete_exchange(
    topo: &Topology,
    vhost: &ShortStr,
    name: &ShortStr,
    if_unused: bool,
) -> AmqpResult<Option<TopologyChange>> {
    if name.is_empty() {
        return Err(default_exchange_refused());
    }
    if name.starts_with("amq.") {
        return Err(AmqpError::access_refused(format!(
            "deletion of system exchange '{name}' in vhost '{vhost}' is not allowed"
        )));
    }
    if topo.exchange(vhost, name).is_none() {
        return Ok(None);
    }
    if if_unused && has_bindings_from(topo, vhost, name) {
        return Err(AmqpError::precondition(format!(
            "exchange '{name}' in vhost '{vhost}' in use"
        )));
    }
    Ok(Some(TopologyChange::ExchangeRemoved(
        vhost.clone(),
        name.clone(),
    )))
}

fn has_bindings_from(topo: &Topology, vhost: &str, exchange: &str) -> bool {
    topo.vhost(vhost)
        .is_some_and(|v| v.routing.has_bindings_from(exchange))
}

/// A server-generated queue name that shard `shard` owns, so reply queues
/// and temporary queues stay on the declaring connection's shard.
fn server_queue_name(topo: &Topology, vhost: &str, shard: ShardId, shards: usize) -> ShortStr {
    loop {
        let name = random_name("amq.gen-");
        if owner_shard(vhost, &name, shards) == shard && topo.queue(vhost, &name).is_none() {
            return name;
        }
    }
}

/// queue.declare. A new queue gets id `next_id` (the caller advances its
/// counter when the answer is [`QueueDeclared::Create`]).
pub fn declare_queue(
    topo: &Topology,
    vhost: &ShortStr,
    decl: QueueDecl,
    next_id: QueueId,
    shards: usize,
) -> AmqpResult<QueueDeclared> {
    let name = if decl.name.is_empty() && !decl.passive {
        server_queue_name(topo, vhost, decl.conn.shard, shards)
    } else {
        decl.name.clone()
    };
    if let Some(p) = decl.permit.as_ref().filter(|_| decl.name.is_empty()) {
        p.check(Configure, "queue", &name, vhost)?;
    }
    // RabbitMQ refuses every non-passive declare of a reserved name, even
    // of a server-named queue that exists.
    if !decl.passive && !decl.name.is_empty() && name.starts_with("amq.") {
        return Err(AmqpError::access_refused(format!(
            "queue name '{name}' contains reserved prefix 'amq.*'"
        )));
    }
    // An exclusive queue is never durable, as in RabbitMQ (it goes with
    // its connection): the flag is dropped, never compared.
    let durable = decl.durable && !decl.exclusive;
    if let Some(cur) = topo.queue(vhost, &name) {
        if cur.exclusive.is_some_and(|owner| owner != decl.conn) {
            return Err(exclusive_locked(&name, vhost));
        }
        if !decl.passive {
            // RabbitMQ checks exclusivity strictly on a redeclare, before
            // the other flags: the owner asking for a shared queue (or
            // anyone asking for an exclusive one that is shared) is 405.
            if cur.exclusive != decl.exclusive.then_some(decl.conn) {
                return Err(exclusive_locked(&name, vhost));
            }
            let flags = [
                ("durable", durable, cur.durable),
                ("auto_delete", decl.auto_delete, cur.auto_delete),
            ];
            for (arg, got, current) in flags {
                if got != current {
                    return Err(inequivalent(
                        arg,
                        "queue",
                        &name,
                        vhost,
                        bool_text(got),
                        bool_text(current),
                    ));
                }
            }
            check_equivalent_arguments(cur, &decl.arguments, vhost)?;
        }
        return Ok(QueueDeclared::Exists(cur.clone()));
    }
    if decl.passive {
        return Err(AmqpError::not_found(describe("queue", &name, vhost)));
    }
    let dlx = decl.arguments.get("x-dead-letter-exchange");
    if let (Some(p), Some(dlx)) = (&decl.permit, dlx.and_then(|v| v.as_str())) {
        p.check(Read, "queue", &name, vhost)?;
        // The default exchange is checked as `amq.default`, as everywhere.
        let dlx = if dlx.is_empty() { "amq.default" } else { dlx };
        p.check(Write, "exchange", dlx, vhost)?;
    }
    if check_queue_arguments(&decl.arguments, &name, vhost)? == QueueKind::Quorum {
        check_quorum_flags(&decl, durable, &name, vhost)?;
    }
    Ok(QueueDeclared::Create(QueueMeta {
        id: next_id,
        owner_shard: owner_shard(vhost, &name, shards),
        name,
        durable,
        exclusive: decl.exclusive.then_some(decl.conn),
        auto_delete: decl.auto_delete,
        arguments: decl.arguments,
    }))
}

/// queue.delete: the queue to delete, `None` when it is not there
/// (RabbitMQ answers delete-ok for a missing queue).
pub fn delete_queue(
    topo: &Topology,
    vhost: &str,
    name: &str,
    conn: ConnRef,
) -> AmqpResult<Option<QueueMeta>> {
    let Some(meta) = topo.queue(vhost, name) else {
        return Ok(None);
    };
    if meta.exclusive.is_some_and(|owner| owner != conn) {
        return Err(exclusive_locked(name, vhost));
    }
    Ok(Some(meta.clone()))
}

/// The exchanges bound to queue `name`: candidates for auto-delete once the
/// queue is gone.
pub fn sources_of_queue(topo: &Topology, vhost: &str, name: &ShortStr) -> Vec<ShortStr> {
    let dest = Destination::Queue(name.clone());
    topo.vhost(vhost)
        .map(|v| {
            v.routing
                .bindings()
                .filter(|b| b.destination == dest)
                .map(|b| b.source.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// The removal of an auto-delete exchange that has no bindings left.
pub fn auto_delete_exchange(
    topo: &Topology,
    vhost: &ShortStr,
    name: &ShortStr,
) -> Option<TopologyChange> {
    let auto = topo.exchange(vhost, name).is_some_and(|e| e.auto_delete);
    (auto && !has_bindings_from(topo, vhost, name))
        .then(|| TopologyChange::ExchangeRemoved(vhost.clone(), name.clone()))
}

/// Checks both ends of a binding, and a new one's arguments.
fn check_binding(
    topo: &Topology,
    vhost: &str,
    b: &Binding,
    conn: ConnRef,
    add: bool,
) -> AmqpResult<()> {
    if b.source.is_empty() {
        return Err(default_exchange_refused());
    }
    let source = topo
        .exchange(vhost, &b.source)
        .ok_or_else(|| AmqpError::not_found(describe("exchange", &b.source, vhost)))?;
    match &b.destination {
        Destination::Queue(q) => {
            topo.usable_queue(vhost, q, conn)?;
        }
        Destination::Exchange(e) => {
            if e.is_empty() {
                return Err(default_exchange_refused());
            }
            if topo.exchange(vhost, e).is_none() {
                return Err(AmqpError::not_found(describe("exchange", e, vhost)));
            }
        }
    }
    if add && source.kind == ExchangeKind::Headers {
        headers::validate_x_match(&b.arguments).map_err(AmqpError::precondition)?;
    }
    Ok(())
}

/// queue.bind/exchange.bind (`add`) or their unbinds: both idempotent, as
/// in RabbitMQ, so `None` when the binding already is (or is not) there,
/// or, for an unbind, when either end is missing.
pub fn set_binding(
    topo: &Topology,
    vhost: &ShortStr,
    b: Binding,
    conn: ConnRef,
    add: bool,
) -> AmqpResult<Option<TopologyChange>> {
    match check_binding(topo, vhost, &b, conn, add) {
        // RabbitMQ 3.10 answers unbind-ok when an end is missing: clean-up
        // after an auto-delete must not fail.
        Err(e) if !add && e.code == reply_code::NOT_FOUND => return Ok(None),
        res => res?,
    }
    let exists = topo.vhost(vhost).is_some_and(|v| v.routing.has_binding(&b));
    Ok(match (add, exists) {
        (true, false) => Some(TopologyChange::BindingAdded(vhost.clone(), b)),
        (false, true) => Some(TopologyChange::BindingRemoved(vhost.clone(), b)),
        _ => None,
    })
}

/// The exclusive queues of a connection, which go when it closes.
pub fn exclusive_queues(topo: &Topology, conn: ConnRef) -> Vec<(ShortStr, QueueMeta)> {
    topo.vhosts
        .iter()
        .flat_map(|(vname, v)| {
            v.queues
                .values()
                .filter(|q| q.exclusive == Some(conn))
                .map(|q| (vname.clone(), q.clone()))
        })
        .collect()
}

/// Durable exchanges, durable non-exclusive queues and bindings between
/// durable ends survive a restart; nothing else is written down. Asked
/// before the change is applied.
pub fn is_durable_change(topo: &Topology, change: &TopologyChange) -> bool {
    use TopologyChange as C;
    let queue_durable = |v: &str, q: &str| {
        topo.queue(v, q)
            .is_some_and(|m| m.durable && m.exclusive.is_none())
    };
    let exchange_durable = |v: &str, e: &str| topo.exchange(v, e).is_some_and(|m| m.durable);
    match change {
        C::VhostAdded(_)
        | C::VhostRemoved(_)
        | C::Access(_)
        | C::PolicySet(..)
        | C::PolicyCleared(..) => true,
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

/// A declaration's arguments, checked as RabbitMQ checks them (406 with
/// its texts); `x-queue-type: stream` is not implemented (540).
fn check_queue_arguments(args: &FieldTable, name: &str, vhost: &str) -> AmqpResult<QueueKind> {
    config::check_arguments(args).map_err(|e| match e {
        DeclareArgError::Invalid(key, why) => AmqpError::precondition(format!(
            "invalid arg '{key}' for queue '{name}' in vhost '{vhost}': {why}"
        )),
        DeclareArgError::WrongType(key, kind) => AmqpError::precondition(format!(
            "invalid arg '{key}' for queue '{name}' in vhost '{vhost}' of queue type {}",
            config::type_module(kind)
        )),
        DeclareArgError::Stream => {
            AmqpError::not_implemented("queue type 'stream' is not supported by Warren")
        }
    })
}

/// A quorum queue is durable, shared and kept: RabbitMQ refuses the rest
/// in this order.
fn check_quorum_flags(decl: &QueueDecl, durable: bool, name: &str, vhost: &str) -> AmqpResult<()> {
    let refused = if decl.auto_delete {
        Some("auto-delete")
    } else if decl.exclusive {
        Some("exclusive-owner")
    } else if !durable {
        Some("non-durable")
    } else {
        None
    };
    match refused {
        Some(prop) => Err(AmqpError::precondition(format!(
            "invalid property '{prop}' for queue '{name}' in vhost '{vhost}'"
        ))),
        None => Ok(()),
    }
}

/// A redeclaration must ask for the same arguments of those the queue's
/// type takes (integers of any width compare by value), as RabbitMQ.
fn check_equivalent_arguments(cur: &QueueMeta, new: &FieldTable, vhost: &str) -> AmqpResult<()> {
    let kind = config::QueueConfig::from_arguments(&cur.arguments).kind;
    let resource = format!("queue '{}' in vhost '{vhost}'", cur.name);
    for key in config::type_arguments(kind) {
        super::args::check_equivalent(key, &cur.arguments, new, &resource)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::FieldValue;
    use crate::ids::ConnId;

    fn conn(n: u64) -> ConnRef {
        ConnRef {
            shard: ShardId(0),
            conn: ConnId(n),
        }
    }

    fn decl(name: &str, exclusive: bool, c: ConnRef) -> QueueDecl {
        QueueDecl {
            permit: None,
            name: ShortStr::from(name.to_string()),
            passive: false,
            durable: false,
            exclusive,
            auto_delete: false,
            arguments: FieldTable::default(),
            conn: c,
        }
    }

    /// A fresh topology with the queue `d` declares (id 1, one shard).
    fn with_queue(d: QueueDecl) -> Topology {
        let mut topo = Topology::new();
        let v = ShortStr::from_static("/");
        let meta = created(declare_queue(&topo, &v, d, QueueId(1), 1));
        topo.apply(&TopologyChange::QueueAdded(v, meta));
        topo
    }

    fn created(d: AmqpResult<QueueDeclared>) -> QueueMeta {
        match d {
            Ok(QueueDeclared::Create(m)) => m,
            other => panic!("expected a new queue, got {other:?}"),
        }
    }

    #[test]
    fn a_new_queue_needs_read_on_itself_and_write_on_its_dead_letter_exchange() {
        use crate::access::{Permission, PermissionSpec};
        let v = ShortStr::from_static("/");
        let with = |configure: &str, write: &str, read: &str, dlx: &str| {
            let spec = PermissionSpec {
                configure: configure.into(),
                write: write.into(),
                read: read.into(),
            };
            let mut d = decl("q", false, conn(1));
            d.arguments
                .insert("x-dead-letter-exchange", FieldValue::from(dlx));
            d.permit = Some(QueuePermit {
                user: "u".into(),
                permission: Some(std::sync::Arc::new(Permission::compile(&spec).unwrap())),
            });
            declare_queue(&Topology::new(), &v, d, QueueId(1), 1)
        };
        created(with(".*", "^dlx$", "^q$", "dlx"));
        // The default exchange is checked as `amq.default`.
        created(with(".*", "^amq\\.default$", "^q$", ""));
        let err = with(".*", "^other$", "^q$", "dlx").unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.text,
            "ACCESS_REFUSED - access to exchange 'dlx' in vhost '/' refused for user 'u'"
        );
        let err = with(".*", ".*", "^other$", "dlx").unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.text,
            "ACCESS_REFUSED - access to queue 'q' in vhost '/' refused for user 'u'"
        );
        // Only a new queue is checked, and only its dead-letter exchange:
        // a named queue's configure permission is the channel's check.
        let mut topo = Topology::new();
        topo.apply(&TopologyChange::QueueAdded(
            v.clone(),
            created(with(".*", ".*", ".*", "dlx")),
        ));
        let mut again = decl("q", false, conn(1));
        again
            .arguments
            .insert("x-dead-letter-exchange", FieldValue::from("dlx"));
        again.permit = Some(QueuePermit {
            user: "u".into(),
            permission: None,
        });
        assert!(matches!(
            declare_queue(&topo, &v, again, QueueId(2), 1),
            Ok(QueueDeclared::Exists(_))
        ));
    }

    #[test]
    fn a_redeclare_must_be_equivalent() {
        let mut topo = Topology::new();
        let v = ShortStr::from_static("/");
        let meta = created(declare_queue(
            &topo,
            &v,
            decl("q", false, conn(1)),
            QueueId(7),
            3,
        ));
        assert_eq!(meta.id, QueueId(7));
        assert_eq!(meta.owner_shard, owner_shard("/", "q", 3));
        topo.apply(&TopologyChange::QueueAdded(v.clone(), meta));
        assert!(matches!(
            declare_queue(&topo, &v, decl("q", false, conn(2)), QueueId(8), 3),
            Ok(QueueDeclared::Exists(m)) if m.id == QueueId(7)
        ));
        let mut durable = decl("q", false, conn(1));
        durable.durable = true;
        let err = declare_queue(&topo, &v, durable, QueueId(8), 3).unwrap_err();
        assert_eq!(err.code, 406);
        assert!(
            err.text.contains("inequivalent arg 'durable'"),
            "{}",
            err.text
        );
    }

    #[test]
    fn exclusive_queues_are_locked_to_their_connection() {
        let v = ShortStr::from_static("/");
        let topo = with_queue(decl("x", true, conn(1)));
        let err = declare_queue(&topo, &v, decl("x", true, conn(2)), QueueId(2), 1).unwrap_err();
        assert_eq!(err.code, 405);
        assert_eq!(
            delete_queue(&topo, "/", "x", conn(2)).unwrap_err().code,
            405
        );
        assert!(delete_queue(&topo, "/", "x", conn(1)).unwrap().is_some());
        // An exclusive queue's durable flag is not compared (never durable).
        let mut durable = decl("x", true, conn(1));
        durable.durable = true;
        assert!(declare_queue(&topo, &v, durable, QueueId(2), 1).is_ok());
        // The owner redeclaring it as shared is 405 too, as in RabbitMQ.
        let err = declare_queue(&topo, &v, decl("x", false, conn(1)), QueueId(2), 1).unwrap_err();
        assert_eq!(err.code, 405);
        let shared = with_queue(decl("s", false, conn(1)));
        let err = declare_queue(&shared, &v, decl("s", true, conn(1)), QueueId(2), 1).unwrap_err();
        assert_eq!(err.code, 405);
        assert_eq!(exclusive_queues(&topo, conn(1)).len(), 1);
        assert!(exclusive_queues(&topo, conn(2)).is_empty());
    }

    #[test]
    fn a_server_named_queue_cannot_be_redeclared_by_name() {
        let topo = Topology::new();
        let v = ShortStr::from_static("/");
        let meta = created(declare_queue(
            &topo,
            &v,
            decl("", true, conn(1)),
            QueueId(1),
            1,
        ));
        let mut topo = topo;
        topo.apply(&TopologyChange::QueueAdded(v.clone(), meta.clone()));
        let again = decl(&meta.name, true, conn(1));
        let err = declare_queue(&topo, &v, again, QueueId(2), 1).unwrap_err();
        assert_eq!(err.code, 403);
        let mut passive = decl(&meta.name, true, conn(1));
        passive.passive = true;
        assert!(declare_queue(&topo, &v, passive, QueueId(2), 1).is_ok());
    }

    #[test]
    fn server_named_queues_live_on_the_declaring_shard() {
        let topo = Topology::new();
        let v = ShortStr::from_static("/");
        for shard in 0..4 {
            let c = ConnRef {
                shard: ShardId(shard),
                conn: ConnId(1),
            };
            let meta = created(declare_queue(&topo, &v, decl("", false, c), QueueId(1), 4));
            assert!(meta.name.starts_with("amq.gen-"));
            assert_eq!(meta.owner_shard, ShardId(shard));
        }
    }

    #[test]
    fn reserved_names_bad_arguments_and_streams_are_refused() {
        let topo = Topology::new();
        let v = ShortStr::from_static("/");
        let err = declare_queue(&topo, &v, decl("amq.mine", false, conn(1)), QueueId(1), 1);
        assert_eq!(err.unwrap_err().code, 403);
        let mut ttl = decl("t", false, conn(1));
        ttl.arguments
            .insert("x-message-ttl", crate::codec::FieldValue::I32(-1));
        let err = declare_queue(&topo, &v, ttl, QueueId(1), 1).unwrap_err();
        assert_eq!(err.code, 406);
        assert_eq!(
            err.text,
            "PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue 't' in vhost '/': {value_negative,-1}"
        );
        let mut stream = decl("s", false, conn(1));
        stream.arguments.insert("x-queue-type", "stream".into());
        let err = declare_queue(&topo, &v, stream, QueueId(1), 1).unwrap_err();
        assert_eq!(err.code, 540);
        let err = delete_exchange(&topo, &v, &ShortStr::from_static("amq.direct"), false);
        assert_eq!(err.unwrap_err().code, 403);
        assert!(matches!(
            delete_exchange(&topo, &v, &ShortStr::from_static("missing"), false),
            Ok(None)
        ));
    }

    #[test]
    fn bindings_are_idempotent() {
        let v = ShortStr::from_static("/");
        let mut topo = with_queue(decl("q", false, conn(1)));
        let b = Binding {
            source: ShortStr::from_static("amq.direct"),
            destination: Destination::Queue(ShortStr::from_static("q")),
            routing_key: ShortStr::from_static("k"),
            arguments: FieldTable::default(),
        };
        let add = set_binding(&topo, &v, b.clone(), conn(1), true).unwrap();
        let Some(change) = add else {
            panic!("a new binding is a change")
        };
        topo.apply(&change);
        assert!(set_binding(&topo, &v, b.clone(), conn(1), true)
            .unwrap()
            .is_none());
        assert!(matches!(
            set_binding(&topo, &v, b.clone(), conn(1), false),
            Ok(Some(TopologyChange::BindingRemoved(..)))
        ));
        // Unbinding from a missing exchange or queue is unbind-ok.
        for (source, queue) in [("nope", "q"), ("amq.direct", "nope")] {
            let missing = Binding {
                source: ShortStr::from(source),
                destination: Destination::Queue(ShortStr::from(queue)),
                ..b.clone()
            };
            assert!(matches!(
                set_binding(&topo, &v, missing.clone(), conn(1), false),
                Ok(None)
            ));
            let err = set_binding(&topo, &v, missing, conn(1), true).unwrap_err();
            assert_eq!(err.code, 404);
        }
        assert_eq!(
            sources_of_queue(&topo, "/", &ShortStr::from_static("q")),
            vec![ShortStr::from_static("amq.direct")]
        );
    }
}
