//! The `list_*` verbs: each gathers the figures of every shard that holds
//! a part (connections, channels, queues and their consumers) through the
//! shards' `info` calls, or reads shard 0's replica (exchanges, bindings),
//! and answers with the columns asked for.
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::rc::Rc;

use super::control::Context;
use super::proto::{items, Reply, Request};
use super::verbs::{software, usage, vhost_of, VerbResult};
use crate::codec::{FieldTable, FieldValue};
use crate::ids::{ChannelRef, ShardId};
use crate::routing::Destination;
use crate::shard::{ConnInfo, ListConnections, ListQueues, QueueInfo, Shard};
use crate::topology::policy::{merged_definition, PolicyTarget};

pub(super) fn table(cols: &[&str], rows: Vec<Vec<Value>>) -> Reply {
    Reply::Table {
        columns: cols.iter().map(|c| c.to_string()).collect(),
        rows,
    }
}

pub(super) fn table_owned(columns: Vec<String>, rows: Vec<Vec<Value>>) -> Reply {
    Reply::Table { columns, rows }
}

/// The info items asked for, or the defaults. `ctl` checks them against
/// rabbitmqctl's lists; one Warren does not track yet is refused rather
/// than answered with a made-up figure.
pub(super) fn columns(
    args: &[String],
    defaults: &[&str],
    untracked: &[&str],
) -> Result<Vec<String>, Reply> {
    if args.is_empty() {
        return Ok(defaults.iter().map(|s| s.to_string()).collect());
    }
    let bad: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| untracked.contains(a))
        .collect();
    if !bad.is_empty() {
        return Err(usage(format!(
            "Info key(s) {} are not supported by Warren yet",
            bad.join(",")
        )));
    }
    Ok(args.to_vec())
}

/// What Warren does not track yet, per listing.
pub(super) const UNTRACKED_QUEUE_ITEMS: &[&str] = &[
    "messages_persistent",
    "message_bytes",
    "message_bytes_ready",
    "message_bytes_unacknowledged",
    "message_bytes_persistent",
    "head_message_timestamp",
    "disk_reads",
    "disk_writes",
    "consumer_utilisation",
    "consumer_capacity",
];
pub(super) const UNTRACKED_CONNECTION_ITEMS: &[&str] = &["send_pend"];
pub(super) const UNTRACKED_CHANNEL_ITEMS: &[&str] = &["messages_uncommitted", "acks_uncommitted"];

pub(super) fn find_queue(
    shard: &Shard,
    vhost: &str,
    name: &str,
) -> Option<crate::topology::QueueMeta> {
    super::ops::find_queue(shard, vhost, name).ok()
}

pub(super) async fn all_connections(shard: &Rc<Shard>) -> Vec<ConnInfo> {
    let mut out = Vec::new();
    for s in 0..shard.shard_count() {
        if let Ok(mut v) = shard.call(ShardId::from_index(s), ListConnections).await {
            out.append(&mut v);
        }
    }
    out.sort_by_key(|c| (c.connected_at_ms, c.id.0));
    out
}

pub(super) fn host(a: Option<std::net::SocketAddr>) -> String {
    a.map(|a| a.ip().to_canonical().to_string())
        .unwrap_or_default()
}

pub(super) fn port(a: Option<std::net::SocketAddr>) -> u16 {
    a.map_or(0, |a| a.port())
}

/// RabbitMQ's connection name: `peer:port -> local:port`.
pub(super) fn connection_name(c: &ConnInfo) -> String {
    let ep = |a: Option<std::net::SocketAddr>| {
        let h = host(a);
        if h.contains(':') {
            format!("[{h}]:{}", port(a))
        } else {
            format!("{h}:{}", port(a))
        }
    };
    format!("{} -> {}", ep(c.peer), ep(c.local))
}

/// An Erlang-pid-like identifier for a connection (or one of its
/// channels), as listings show `pid` and `channel_pid`.
pub(super) fn pid(ctx: &Context, c: &ConnInfo, channel: Option<u16>) -> String {
    channel_pid(ctx, c.id.0, channel)
}

pub(super) fn channel_pid(ctx: &Context, conn: u64, channel: Option<u16>) -> String {
    match channel {
        Some(n) => format!("<{}.{conn}.{n}>", ctx.node),
        None => format!("<{}.{conn}.0>", ctx.node),
    }
}

pub(super) fn client_props(c: &ConnInfo) -> Value {
    table_triples(&c.client_properties)
}

/// An AMQP table as rabbitmqctl's JSON has it: `[key, type, value]`
/// triples in order (nested tables alike; arrays as `[type, value]`
/// pairs), so `ctl` prints exact types.
pub(super) fn table_triples(t: &FieldTable) -> Value {
    Value::Array(
        t.iter()
            .map(|(k, v)| {
                let (ty, val) = typed(v);
                json!([k.to_string(), ty, val])
            })
            .collect(),
    )
}

pub(super) fn typed(v: &FieldValue) -> (&'static str, Value) {
    use FieldValue as F;
    match v {
        F::Bool(b) => ("bool", json!(b)),
        F::I8(n) => ("byte", json!(n)),
        F::U8(n) => ("unsignedbyte", json!(n)),
        F::I16(n) => ("short", json!(n)),
        F::U16(n) => ("unsignedshort", json!(n)),
        F::I32(n) => ("signedint", json!(n)),
        F::U32(n) => ("unsignedint", json!(n)),
        F::I64(n) => ("long", json!(n)),
        F::U64(n) => ("long", json!(n)),
        F::F32(n) => ("float", json!(n)),
        F::F64(n) => ("double", json!(n)),
        F::Decimal { scale, value } => ("decimal", json!([scale, value])),
        F::LongStr(b) => ("longstr", json!(String::from_utf8_lossy(b))),
        F::ByteArray(b) => ("binary", json!(String::from_utf8_lossy(b))),
        F::Array(items) => (
            "array",
            Value::Array(
                items
                    .iter()
                    .map(|i| {
                        let (ty, val) = typed(i);
                        json!([ty, val])
                    })
                    .collect(),
            ),
        ),
        F::Timestamp(t) => ("timestamp", json!(t)),
        F::Table(t) => ("table", table_triples(t)),
        F::Void => ("void", Value::Null),
    }
}

pub(super) async fn list_connections(
    shard: &Rc<Shard>,
    ctx: &Context,
    req: &Request,
) -> VerbResult {
    let cols = columns(
        &req.args,
        items::CONNECTIONS_DEFAULT,
        UNTRACKED_CONNECTION_ITEMS,
    )?;
    let rows = all_connections(shard)
        .await
        .iter()
        .filter(|c| c.state != crate::shard::ConnState::Starting || !c.user.is_empty())
        .map(|c| {
            cols.iter()
                .map(|col| match col.as_str() {
                    "pid" => json!(pid(ctx, c, None)),
                    "name" => json!(connection_name(c)),
                    "port" => json!(port(c.local)),
                    "host" => json!(host(c.local)),
                    "peer_port" => json!(port(c.peer)),
                    "peer_host" => json!(host(c.peer)),
                    "ssl" => json!(c.ssl_protocol.is_some()),
                    "ssl_protocol" => json!(c.ssl_protocol.unwrap_or("")),
                    "peer_cert_subject" => json!(c.peer_cert_subject),
                    // Not tracked yet: shown empty, as RabbitMQ shows them
                    // on a plain connection.
                    "ssl_key_exchange" | "ssl_cipher" | "ssl_hash" | "peer_cert_issuer"
                    | "peer_cert_validity" => json!(""),
                    "user" => json!(c.user),
                    "vhost" => json!(c.vhost),
                    "state" => json!(c.state.as_str()),
                    "channels" => json!(c.channels.len()),
                    "protocol" => json!([0, 9, 1]),
                    "auth_mechanism" => json!(c.auth_mechanism),
                    "timeout" => json!(c.heartbeat),
                    "frame_max" => json!(c.frame_max),
                    "channel_max" => json!(c.channel_max),
                    "client_properties" => client_props(c),
                    "recv_oct" => json!(c.stats.recv_oct),
                    "recv_cnt" => json!(c.stats.recv_cnt),
                    "send_oct" => json!(c.stats.send_oct),
                    "send_cnt" => json!(c.stats.send_cnt),
                    _ => json!(c.connected_at_ms),
                })
                .collect()
        })
        .collect();
    Ok(table_owned(cols, rows))
}

pub(super) async fn list_channels(shard: &Rc<Shard>, ctx: &Context, req: &Request) -> VerbResult {
    let cols = columns(&req.args, items::CHANNELS_DEFAULT, UNTRACKED_CHANNEL_ITEMS)?;
    let mut rows = Vec::new();
    for c in all_connections(shard).await {
        for ch in &c.channels {
            rows.push(
                cols.iter()
                    .map(|col| match col.as_str() {
                        "pid" => json!(pid(ctx, &c, Some(ch.number))),
                        "connection" => json!(pid(ctx, &c, None)),
                        "name" => json!(format!("{} ({})", connection_name(&c), ch.number)),
                        "number" => json!(ch.number),
                        "user" => json!(c.user),
                        "vhost" => json!(c.vhost),
                        "transactional" => json!(ch.transactional),
                        "confirm" => json!(ch.confirm),
                        "consumer_count" => json!(ch.consumers),
                        "messages_unacknowledged" => json!(ch.unacked),
                        "messages_unconfirmed" => json!(ch.unconfirmed),
                        "prefetch_count" => json!(ch.prefetch),
                        _ => json!(ch.global_prefetch),
                    })
                    .collect(),
            );
        }
    }
    Ok(table_owned(cols, rows))
}

/// The vhost's queues (sorted by name) with their owners' figures.
pub(super) async fn queue_infos(
    shard: &Rc<Shard>,
    vhost: &str,
) -> Result<Vec<(crate::topology::QueueMeta, Option<QueueInfo>)>, Reply> {
    let mut metas = shard.with_topology(|t| {
        t.vhost(vhost)
            .map(|v| v.queues.values().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
    });
    metas.sort_by(|a, b| a.name.cmp(&b.name));
    let mut by_owner: BTreeMap<usize, Vec<crate::ids::QueueId>> = BTreeMap::new();
    for m in &metas {
        by_owner
            .entry(m.owner_shard.index())
            .or_default()
            .push(m.id);
    }
    let mut infos = ahash::AHashMap::new();
    for (owner, ids) in by_owner {
        match shard
            .call(ShardId::from_index(owner), ListQueues(ids))
            .await
        {
            Ok(v) => {
                for i in v {
                    infos.insert(i.id, i);
                }
            }
            Err(e) => return Err(software(e.text)),
        }
    }
    Ok(metas
        .into_iter()
        .map(|m| {
            let info = infos.remove(&m.id);
            (m, info)
        })
        .collect())
}

/// The names of the user and operator policies in effect for `name` in
/// `vhost`, and RabbitMQ's `effective_policy_definition` of the two.
pub(crate) fn policy_names(
    shard: &Shard,
    vhost: &str,
    name: &str,
    target: PolicyTarget,
) -> (
    Option<String>,
    Option<String>,
    serde_json::Map<String, Value>,
) {
    shard.with_topology(|t| {
        let (u, o) = t.effective_policies(vhost, name, target);
        (
            u.map(|p| p.name.clone()),
            o.map(|p| p.name.clone()),
            merged_definition(u, o),
        )
    })
}

pub(super) async fn list_queues(shard: &Rc<Shard>, ctx: &Context, req: &Request) -> VerbResult {
    let cols = columns(&req.args, items::QUEUES_DEFAULT, UNTRACKED_QUEUE_ITEMS)?;
    let vhost = vhost_of(req);
    let rows = queue_infos(shard, &vhost)
        .await?
        .into_iter()
        .map(|(m, info)| {
            let ready = info.as_ref().map_or(0, |i| i.ready);
            let unacked = info.as_ref().map_or(0, |i| i.unacked);
            let consumers = info.as_ref().map_or(0, |i| i.consumers.len());
            let exclusive_consumer = info
                .as_ref()
                .and_then(|i| i.consumers.iter().find(|c| c.exclusive).cloned());
            cols.iter()
                .map(|col| match col.as_str() {
                    "name" => json!(m.name.to_string()),
                    "durable" => json!(m.durable),
                    "auto_delete" => json!(m.auto_delete),
                    "arguments" => table_triples(&m.arguments),
                    "policy" => json!(policy_names(shard, &vhost, &m.name, PolicyTarget::Queue)
                        .0
                        .unwrap_or_default()),
                    "pid" => json!(channel_pid(ctx, m.id.0, None)),
                    "owner_pid" => json!(m
                        .exclusive
                        .map_or(String::new(), |c| channel_pid(ctx, c.conn.0, None))),
                    "exclusive" => json!(m.exclusive.is_some()),
                    "exclusive_consumer_pid" => json!(exclusive_consumer
                        .as_ref()
                        .map_or(String::new(), |c| consumer_channel(ctx, c.channel))),
                    "exclusive_consumer_tag" => json!(exclusive_consumer
                        .as_ref()
                        .map_or(String::new(), |c| c.tag.to_string())),
                    "messages_ready" | "messages_ready_ram" => json!(ready),
                    "messages_unacknowledged" | "messages_unacknowledged_ram" => json!(unacked),
                    "messages" | "messages_ram" => json!(ready + unacked),
                    "consumers" => json!(consumers),
                    "memory" | "message_bytes_ram" => json!(info.as_ref().map_or(0, |i| i.memory)),
                    "state" => json!("running"),
                    "type" => json!(m.queue_type()),
                    // A classic queue on one node: no replicas, as RabbitMQ
                    // shows them.
                    _ => json!(""),
                })
                .collect()
        })
        .collect();
    Ok(table_owned(cols, rows))
}

pub(super) fn consumer_channel(ctx: &Context, ch: ChannelRef) -> String {
    channel_pid(ctx, ch.conn.0, Some(ch.channel))
}

pub(super) async fn list_consumers(shard: &Rc<Shard>, ctx: &Context, req: &Request) -> VerbResult {
    let cols = columns(&req.args, items::CONSUMERS_DEFAULT, &[])?;
    let vhost = vhost_of(req);
    let mut rows = Vec::new();
    for (m, info) in queue_infos(shard, &vhost).await? {
        for c in info.map(|i| i.consumers).unwrap_or_default() {
            rows.push(
                cols.iter()
                    .map(|col| match col.as_str() {
                        "queue_name" => json!(m.name.to_string()),
                        "channel_pid" => json!(consumer_channel(ctx, c.channel)),
                        "consumer_tag" => json!(c.tag.to_string()),
                        "ack_required" => json!(c.ack_required),
                        "prefetch_count" => json!(c.prefetch),
                        "active" => json!(c.activity.is_active()),
                        "activity_status" => json!(c.activity.as_str()),
                        _ => table_triples(&c.arguments),
                    })
                    .collect(),
            );
        }
    }
    Ok(table_owned(cols, rows))
}

pub(super) fn list_exchanges(shard: &Rc<Shard>, req: &Request) -> VerbResult {
    let cols = columns(&req.args, items::EXCHANGES_DEFAULT, &[])?;
    let vhost = vhost_of(req);
    let rows = shard.with_topology(|t| {
        let mut ex: Vec<_> = t
            .vhost(&vhost)
            .map(|v| v.exchanges.values().collect())
            .unwrap_or_default();
        ex.sort_by(|a: &&crate::topology::ExchangeMeta, b| a.name.cmp(&b.name));
        ex.iter()
            .map(|e| {
                cols.iter()
                    .map(|col| match col.as_str() {
                        "name" => json!(e.name.to_string()),
                        "type" => json!(e.kind.as_str()),
                        "durable" => json!(e.durable),
                        "auto_delete" => json!(e.auto_delete),
                        "internal" => json!(e.internal),
                        "arguments" => table_triples(&e.arguments),
                        "policy" => json!(t
                            .effective_policies(&vhost, &e.name, PolicyTarget::Exchange)
                            .0
                            .map_or("", |p| p.name.as_str())),
                        _ => json!(""),
                    })
                    .collect()
            })
            .collect()
    });
    Ok(table_owned(cols, rows))
}

pub(super) fn list_bindings(shard: &Rc<Shard>, req: &Request) -> VerbResult {
    let cols = columns(&req.args, items::BINDINGS_DEFAULT, &[])?;
    let vhost = vhost_of(req);
    let rows = shard.with_topology(|t| {
        let Some(v) = t.vhost(&vhost) else {
            return Vec::new();
        };
        // The default exchange's implicit binding to every queue first, as
        // RabbitMQ lists them.
        let mut queues: Vec<_> = v.queues.keys().cloned().collect();
        queues.sort();
        let mut list: Vec<(String, String, &'static str, String, Value)> = queues
            .into_iter()
            .map(|q| {
                (
                    String::new(),
                    q.to_string(),
                    "queue",
                    q.to_string(),
                    json!([]),
                )
            })
            .collect();
        let mut explicit: Vec<_> = v
            .routing
            .bindings()
            .map(|b| {
                let (kind, dest) = match &b.destination {
                    Destination::Queue(q) => ("queue", q.to_string()),
                    Destination::Exchange(e) => ("exchange", e.to_string()),
                };
                (
                    b.source.to_string(),
                    dest,
                    kind,
                    b.routing_key.to_string(),
                    table_triples(&b.arguments),
                )
            })
            .collect();
        explicit.sort_by(|a, b| (&a.0, &a.1, &a.3).cmp(&(&b.0, &b.1, &b.3)));
        list.extend(explicit);
        list.into_iter()
            .map(|(source, dest, kind, key, args)| {
                cols.iter()
                    .map(|col| match col.as_str() {
                        "source_name" => json!(source),
                        "source_kind" => json!("exchange"),
                        "destination_name" => json!(dest),
                        "destination_kind" => json!(kind),
                        "routing_key" => json!(key),
                        "arguments" => args.clone(),
                        _ => json!(vhost),
                    })
                    .collect()
            })
            .collect()
    });
    Ok(table_owned(cols, rows))
}
