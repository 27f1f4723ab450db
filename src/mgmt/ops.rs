//! The operator's changes to the topology and its messages, done as a
//! client would do them (through the leader, or on the queue's owner) but
//! by the broker's own operator connection: declare and delete queues and
//! exchanges, bind, purge, publish, get, close connections. `warren ctl`'s
//! verbs and the HTTP API both call these; neither has a copy of its own.
//! Permission checks are the caller's (ctl is trusted; HTTP checks the
//! user's).
use bytes::Bytes;
use std::rc::Rc;

use crate::codec::{BasicProperties, FieldTable, ShortStr};
use crate::error::{AmqpError, AmqpResult};
use crate::ids::{ConnId, ConnRef};
use crate::queue::{GetResult, MessageData, Settle};
use crate::routing::{Binding, ExchangeKind};
use crate::shard::{
    Bind, CloseConnections, CloseWhich, ConnInfo, DeclareExchange, DeclareQueue, Declared,
    DeleteExchange, DeleteQueue, GetMessage, PublishRef, PurgeQueue, Shard, Unbind,
};
use crate::topology::decide::QueueDecl;
use crate::topology::{ExchangeMeta, QueueMeta};

/// The operator's connection: owns nothing, so never exclusive.
fn operator(shard: &Shard) -> ConnRef {
    shard.conn_ref(ConnId::OPERATOR)
}

fn not_found(what: &str, name: &str, vhost: &str) -> AmqpError {
    AmqpError::new(
        crate::codec::reply_code::NOT_FOUND,
        format!("no {what} '{name}' in vhost '{vhost}'"),
    )
}

/// The queue `name` in `vhost`.
pub fn find_queue(shard: &Shard, vhost: &str, name: &str) -> AmqpResult<QueueMeta> {
    shard
        .with_topology(|t| t.queue(vhost, name).cloned())
        .ok_or_else(|| not_found("queue", name, vhost))
}

/// queue.declare, not passive. Answers whether it was created.
pub async fn declare_queue(
    shard: &Rc<Shard>,
    vhost: &str,
    name: &str,
    durable: bool,
    auto_delete: bool,
    arguments: FieldTable,
) -> AmqpResult<Declared> {
    let op = DeclareQueue {
        vhost: vhost.into(),
        decl: QueueDecl {
            name: name.into(),
            passive: false,
            durable,
            exclusive: false,
            auto_delete,
            arguments,
            conn: operator(shard),
            permit: None,
        },
    };
    shard.leader(op).await
}

/// Whether an operator's delete may take another connection's exclusive
/// queue: rabbitmqctl's may, the HTTP API's may not (as in RabbitMQ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exclusive {
    Override,
    Respect,
}

/// queue.delete; answers how many messages it held.
pub async fn delete_queue(
    shard: &Rc<Shard>,
    vhost: &str,
    name: &str,
    if_unused: bool,
    if_empty: bool,
    exclusive: Exclusive,
) -> AmqpResult<u32> {
    let meta = find_queue(shard, vhost, name)?;
    let conn = match (exclusive, meta.exclusive) {
        (Exclusive::Override, Some(owner)) => owner,
        _ => operator(shard),
    };
    let op = DeleteQueue {
        vhost: vhost.into(),
        name: meta.name.clone(),
        if_unused,
        if_empty,
        conn,
    };
    shard.leader(op).await
}

/// queue.purge; answers how many messages went.
pub async fn purge_queue(shard: &Rc<Shard>, vhost: &str, name: &str) -> AmqpResult<u32> {
    let meta = find_queue(shard, vhost, name)?;
    shard.call(meta.owner_shard, PurgeQueue(meta.id)).await
}

/// exchange.declare, not passive.
pub async fn declare_exchange(
    shard: &Rc<Shard>,
    vhost: &str,
    meta: ExchangeMeta,
) -> AmqpResult<()> {
    let op = DeclareExchange {
        vhost: vhost.into(),
        meta,
        passive: false,
    };
    shard.leader(op).await.map(|_| ())
}

/// exchange.delete.
pub async fn delete_exchange(
    shard: &Rc<Shard>,
    vhost: &str,
    name: &str,
    if_unused: bool,
) -> AmqpResult<()> {
    let op = DeleteExchange {
        vhost: vhost.into(),
        name: name.into(),
        if_unused,
    };
    shard.leader(op).await.map(|_| ())
}

/// queue.bind or exchange.bind.
pub async fn bind(shard: &Rc<Shard>, vhost: &str, binding: Binding) -> AmqpResult<()> {
    let op = Bind {
        vhost: vhost.into(),
        binding,
        conn: operator(shard),
    };
    shard.leader(op).await.map(|_| ())
}

/// queue.unbind or exchange.unbind.
pub async fn unbind(shard: &Rc<Shard>, vhost: &str, binding: Binding) -> AmqpResult<()> {
    let op = Unbind {
        vhost: vhost.into(),
        binding,
        conn: operator(shard),
    };
    shard.leader(op).await.map(|_| ())
}

/// basic.publish without confirms; answers whether any queue took it.
pub fn publish(
    shard: &Rc<Shard>,
    vhost: &str,
    exchange: &str,
    routing_key: &str,
    properties: &BasicProperties,
    body: Bytes,
) -> AmqpResult<bool> {
    shard.check_publishable(vhost, exchange)?;
    let data = MessageData {
        exchange: ShortStr::from(exchange),
        routing_key: ShortStr::from(routing_key),
        raw_properties: properties.to_raw(),
        body,
        persistent: properties.delivery_mode == Some(2),
        expiration_ms: properties
            .expiration
            .as_deref()
            .and_then(|e| crate::codec::Expiration::parse(e).ms()),
        priority: properties.priority.unwrap_or(0),
    };
    let msg = std::sync::Arc::new(data);
    let from = PublishRef {
        ch: shard.channel_ref(ConnId::OPERATOR, 0, 0),
        seq: None,
    };
    let routed = shard.publish(
        vhost,
        exchange,
        routing_key,
        properties.headers.as_ref(),
        &msg,
        from,
    );
    Ok(routed.queues > 0)
}

/// What happens to messages an operator gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetMode {
    /// Acknowledged: gone.
    Ack,
    /// Back in the queue, marked redelivered.
    Requeue,
    /// Rejected without requeue (dead-lettered once that exists).
    Reject,
}

/// Up to `count` basic.gets; the messages are settled as `mode` says once
/// all are taken, so a requeueing get of 2 shows two messages.
pub async fn get(
    shard: &Rc<Shard>,
    vhost: &str,
    queue: &str,
    count: u64,
    mode: GetMode,
) -> AmqpResult<Vec<GetResult>> {
    let meta = find_queue(shard, vhost, queue)?;
    let holder = shard.channel_ref(ConnId::OPERATOR, 0, 0);
    let mut got = Vec::new();
    for _ in 0..count {
        let op = GetMessage {
            queue: meta.id,
            holder,
            no_ack: mode == GetMode::Ack,
        };
        match shard.call(meta.owner_shard, op).await {
            Ok(Some(m)) => got.push(m),
            Ok(None) => break,
            Err(e) => {
                settle_got(shard, &meta, &got, mode);
                return Err(e);
            }
        }
    }
    settle_got(shard, &meta, &got, mode);
    Ok(got)
}

fn settle_got(shard: &Rc<Shard>, meta: &QueueMeta, got: &[GetResult], mode: GetMode) {
    let how = match mode {
        GetMode::Ack => return,
        GetMode::Requeue => Settle::Requeue,
        GetMode::Reject => Settle::Drop,
    };
    if !got.is_empty() {
        let ids = got.iter().map(|g| g.msg_id).collect();
        shard.settle(meta.queue_ref(), ids, how);
    }
}

/// Closes a connection with 320 CONNECTION_FORCED and `reason`; fails
/// when it was gone already.
pub async fn close_connection(shard: &Rc<Shard>, c: &ConnInfo, reason: &str) -> AmqpResult<()> {
    let op = CloseConnections {
        which: CloseWhich::One(c.id),
        code: crate::codec::reply_code::CONNECTION_FORCED,
        text: reason.to_string(),
    };
    match shard.call(c.shard, op).await? {
        0 => Err(AmqpError::new(
            crate::codec::reply_code::NOT_FOUND,
            "connection gone",
        )),
        _ => Ok(()),
    }
}

/// An exchange type by name, as declare takes it.
pub fn exchange_kind(name: &str) -> Option<ExchangeKind> {
    ExchangeKind::parse(name)
}
