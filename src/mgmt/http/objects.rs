//! The API's objects as RabbitMQ's JSON: queues, exchanges, bindings,
//! connections, channels, consumers; and the requests on them. Figures
//! come from the same gathering as `warren ctl`'s listings, changes from
//! [`crate::mgmt::ops`].
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::rc::Rc;

use super::auth::{require_vhost, visible_vhosts, Caller};
use super::lists;
use super::request::{
    field_bool, field_str, field_u64, refused, require_keys, ApiError, ApiRequest, ApiResponse,
    ApiResult,
};
use crate::access::PermissionKind;
use crate::codec::{BasicProperties, FieldTable, ShortStr};
use crate::error::AmqpError;
use crate::mgmt::control::Context;
use crate::mgmt::definitions_json::{json_to_table, table_to_json};
use crate::mgmt::listings::{
    all_connections, connection_name, host, policy_names, port, queue_infos,
};
use crate::mgmt::ops::{self, GetMode};
use crate::mgmt::stats::Sampler;
use crate::queue::ConsumerActivity;
use crate::routing::{Binding, Destination};
use crate::shard::{ConnInfo, QueueInfo, Shard};
use crate::topology::policy::PolicyTarget;
use crate::topology::{ExchangeMeta, QueueMeta};

/// An AMQP refusal as the API answers it.
pub fn amqp_error(e: AmqpError) -> ApiError {
    use crate::codec::reply_code as rc;
    let reason = match e.text.split_once(" - ") {
        Some((_, r)) => r.to_string(),
        None => e.text.clone(),
    };
    match e.code {
        rc::NOT_FOUND => ApiError::NotFound,
        rc::ACCESS_REFUSED => ApiError::Forbidden(refused::ACCESS_REFUSED),
        rc::INTERNAL_ERROR => ApiError::Internal(reason),
        _ => ApiError::BadRequest(reason),
    }
}

/// Fails unless `caller` holds `kind` on `name` in `vhost`.
pub fn permit(
    shard: &Shard,
    caller: &Caller,
    vhost: &str,
    kind: PermissionKind,
    name: &str,
) -> Result<(), ApiError> {
    let ok = shard.with_topology(|t| {
        t.access
            .permission(&caller.name, vhost)
            .is_some_and(|p| p.permits(kind, name))
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError::Forbidden(refused::ACCESS_REFUSED))
    }
}

/// A PUT into a missing vhost says so, as RabbitMQ's does.
fn require_vhost_for_put(shard: &Shard, caller: &Caller, vhost: &str) -> Result<(), ApiError> {
    if !shard.vhost_exists(vhost) {
        return Err(ApiError::NotFoundBecause("vhost_not_found".into()));
    }
    require_vhost(shard, caller, vhost)
}

/// An AMQP refusal as the publish endpoint reports it: the code in front.
fn coded(e: AmqpError) -> ApiError {
    ApiError::BadRequest(format!("{} {}", e.code, e.text))
}

/// The vhosts a list covers: one (checked) or every visible one.
fn vhosts_for(shard: &Shard, caller: &Caller, one: Option<&str>) -> Result<Vec<String>, ApiError> {
    match one {
        Some(v) => {
            require_vhost(shard, caller, v)?;
            Ok(vec![v.to_string()])
        }
        None => Ok(visible_vhosts(shard, caller)),
    }
}

fn arguments(table: &FieldTable) -> Value {
    Value::Object(table_to_json(table))
}

fn body_arguments(body: &Map<String, Value>) -> Result<FieldTable, ApiError> {
    match body.get("arguments") {
        None | Some(Value::Null) => Ok(FieldTable::default()),
        Some(Value::Object(m)) => json_to_table(m).map_err(ApiError::BadRequest),
        // rabbitmqadmin sends `"arguments": ""` when none are given.
        Some(Value::String(s)) if s.is_empty() => Ok(FieldTable::default()),
        Some(_) => Err(ApiError::BadRequest("arguments must be an object".into())),
    }
}

// ---- queues ----

pub fn queue_json(
    shard: &Shard,
    ctx: &Context,
    stats: &Sampler,
    vhost: &str,
    m: &QueueMeta,
    info: Option<&QueueInfo>,
) -> Value {
    let ready = info.map_or(0, |i| i.ready);
    let unacked = info.map_or(0, |i| i.unacked);
    let (policy, operator_policy, effective) =
        policy_names(shard, vhost, &m.name, PolicyTarget::Queue);
    let mut q = json!({
        "name": m.name.to_string(),
        "vhost": vhost,
        "node": ctx.node,
        "type": m.queue_type(),
        "state": "running",
        "durable": m.durable,
        "auto_delete": m.auto_delete,
        "exclusive": m.exclusive.is_some(),
        "arguments": arguments(&m.arguments),
        "policy": policy,
        "operator_policy": operator_policy,
        "effective_policy_definition": Value::Object(effective),
        "messages": ready + unacked,
        "messages_ready": ready,
        "messages_unacknowledged": unacked,
        "consumers": info.map_or(0, |i| i.consumers.len()),
        "memory": info.map_or(0, |i| i.memory),
        "exclusive_consumer_tag": info
            .and_then(|i| i.consumers.iter().find(|c| c.exclusive))
            .map(|c| c.tag.to_string()),
        "single_active_consumer_tag": info
            .and_then(|i| i.consumers.iter().find(|c| c.activity == ConsumerActivity::SingleActive))
            .map(|c| c.tag.to_string()),
    });
    // Rates exist once the queue has been sampled (RabbitMQ's appear with
    // its first statistics too).
    if let Some(Value::Object(d)) = stats.queue_length_details(vhost, &m.name) {
        for (k, v) in d {
            q[k] = v;
        }
    }
    // Counts are the queue's own now; rates need two samples.
    let sampled = stats.queue_message_stats(vhost, &m.name);
    if let Some(c) = info.map(|i| i.counters) {
        let mut ms = sampled.unwrap_or_else(|| json!({}));
        for (k, n) in [
            ("ack", c.ack),
            ("deliver", c.deliver),
            ("deliver_get", c.deliver_get()),
            ("deliver_no_ack", c.deliver_no_ack),
            ("get", c.get),
            ("get_no_ack", c.get_no_ack),
            ("publish", c.publish),
            ("redeliver", c.redeliver),
        ] {
            ms[k] = json!(n);
            let details = format!("{k}_details");
            if ms.get(&details).is_none() {
                ms[details] = json!({ "rate": 0.0 });
            }
        }
        q["message_stats"] = ms;
    }
    q
}

async fn queues_of(
    shard: &Rc<Shard>,
    vhost: &str,
) -> Result<Vec<(QueueMeta, Option<QueueInfo>)>, ApiError> {
    queue_infos(shard, vhost)
        .await
        .map_err(|_| ApiError::Internal("a shard did not answer".into()))
}

/// `GET /api/queues[/{vhost}]`.
pub async fn list_queues(
    shard: &Rc<Shard>,
    ctx: &Context,
    stats: &Sampler,
    caller: &Caller,
    req: &ApiRequest,
    vhost: Option<&str>,
) -> ApiResult {
    let mut items = Vec::new();
    for v in vhosts_for(shard, caller, vhost)? {
        for (m, info) in queues_of(shard, &v).await? {
            items.push(queue_json(shard, ctx, stats, &v, &m, info.as_ref()));
            super::breathe(items.len()).await;
        }
    }
    // Built in RabbitMQ's order (vhost, then name): no sort needed.
    lists::reply(req, items, &[])
}

/// `GET /api/queues/{vhost}/{name}`.
pub async fn get_queue(
    shard: &Rc<Shard>,
    ctx: &Context,
    stats: &Sampler,
    caller: &Caller,
    vhost: &str,
    name: &str,
) -> ApiResult {
    require_vhost(shard, caller, vhost)?;
    let meta = ops::find_queue(shard, vhost, name).map_err(|_| ApiError::NotFound)?;
    let info = shard
        .call(meta.owner_shard, crate::shard::ListQueues(vec![meta.id]))
        .await
        .map_err(amqp_error)?
        .into_iter()
        .next();
    let mut q = queue_json(shard, ctx, stats, vhost, &meta, info.as_ref());
    let mine: Vec<Value> = consumers(shard, ctx, caller, Some(vhost))
        .await?
        .into_iter()
        .filter(|c| c["queue"]["name"] == name)
        .collect();
    q["consumer_details"] = Value::Array(mine);
    Ok(ApiResponse::ok(q))
}

/// `PUT /api/queues/{vhost}/{name}`.
pub async fn put_queue(
    shard: &Rc<Shard>,
    caller: &Caller,
    req: &ApiRequest,
    vhost: &str,
    name: &str,
) -> ApiResult {
    require_vhost_for_put(shard, caller, vhost)?;
    let body = req.json()?;
    permit(shard, caller, vhost, PermissionKind::Configure, name)?;
    let durable = field_bool(&body, "durable", false)?;
    let auto_delete = field_bool(&body, "auto_delete", false)?;
    let args = body_arguments(&body)?;
    let d = ops::declare_queue(shard, vhost, name, durable, auto_delete, args)
        .await
        .map_err(amqp_error)?;
    Ok(ApiResponse::created(d.created))
}

/// `DELETE /api/queues/{vhost}/{name}` (`?if-empty=true`, `?if-unused=true`).
pub async fn delete_queue(
    shard: &Rc<Shard>,
    caller: &Caller,
    req: &ApiRequest,
    vhost: &str,
    name: &str,
) -> ApiResult {
    require_vhost(shard, caller, vhost)?;
    ops::find_queue(shard, vhost, name).map_err(|_| ApiError::NotFound)?;
    permit(shard, caller, vhost, PermissionKind::Configure, name)?;
    ops::delete_queue(
        shard,
        vhost,
        name,
        req.query_flag("if-unused"),
        req.query_flag("if-empty"),
        ops::Exclusive::Respect,
    )
    .await
    .map_err(amqp_error)?;
    Ok(ApiResponse::no_content())
}

/// `DELETE /api/queues/{vhost}/{name}/contents`: purge.
pub async fn purge_queue(shard: &Rc<Shard>, caller: &Caller, vhost: &str, name: &str) -> ApiResult {
    require_vhost(shard, caller, vhost)?;
    ops::find_queue(shard, vhost, name).map_err(|_| ApiError::NotFound)?;
    permit(shard, caller, vhost, PermissionKind::Read, name)?;
    ops::purge_queue(shard, vhost, name)
        .await
        .map_err(amqp_error)?;
    Ok(ApiResponse::no_content())
}

/// `POST /api/queues/{vhost}/{name}/get`.
pub async fn get_messages(
    shard: &Rc<Shard>,
    caller: &Caller,
    req: &ApiRequest,
    vhost: &str,
    name: &str,
) -> ApiResult {
    require_vhost(shard, caller, vhost)?;
    let body = req.json()?;
    if let Err(e) = ops::find_queue(shard, vhost, name) {
        return Err(ApiError::NotFoundBecause(e.text));
    }
    permit(shard, caller, vhost, PermissionKind::Read, name)?;
    require_keys(&body, &["ackmode", "count", "encoding"])?;
    let count = field_u64(&body, "count")?.unwrap_or(0);
    let mode = match field_str(&body, "ackmode")? {
        Some("ack_requeue_true") | Some("reject_requeue_true") => GetMode::Requeue,
        Some("ack_requeue_false") => GetMode::Ack,
        Some("reject_requeue_false") => GetMode::Reject,
        // RabbitMQ answers 500 here; a 400 says more.
        other => {
            return Err(ApiError::BadRequest(format!(
                "Unknown ackmode: {}",
                other.unwrap_or("")
            )))
        }
    };
    let base64_only = match field_str(&body, "encoding")? {
        Some("auto") => false,
        Some("base64") => true,
        _ => {
            return Err(ApiError::BadRequest(
                "Unsupported encoding. Please use auto or base64.".into(),
            ))
        }
    };
    let truncate = field_u64(&body, "truncate")?;
    let got = ops::get(shard, vhost, name, count, mode)
        .await
        .map_err(amqp_error)?;
    let items: Vec<Value> = got
        .iter()
        .map(|g| {
            let body = &g.msg.body;
            let shown = match truncate {
                Some(n) if (n as usize) < body.len() => &body[..n as usize],
                _ => &body[..],
            };
            let (payload, encoding) = match std::str::from_utf8(shown) {
                Ok(s) if !base64_only => (s.to_string(), "string"),
                _ => (
                    base64::engine::general_purpose::STANDARD.encode(shown),
                    "base64",
                ),
            };
            let props = BasicProperties::decode(&g.msg.raw_properties).unwrap_or_default();
            json!({
                "payload_bytes": body.len(),
                "redelivered": g.redelivered,
                "exchange": g.msg.exchange.to_string(),
                "routing_key": g.msg.routing_key.to_string(),
                "message_count": g.remaining,
                // RabbitMQ sends no properties as an empty list.
                "properties": match properties_json(&props) {
                    Value::Object(m) if m.is_empty() => json!([]),
                    p => p,
                },
                "payload": payload,
                "payload_encoding": encoding,
            })
        })
        .collect();
    Ok(ApiResponse::ok(Value::Array(items)))
}

/// Message properties as RabbitMQ's API shows them (only those set).
fn properties_json(p: &BasicProperties) -> Value {
    let mut m = Map::new();
    let mut s = |k: &str, v: &Option<ShortStr>| {
        if let Some(v) = v {
            m.insert(k.into(), json!(v.to_string()));
        }
    };
    s("content_type", &p.content_type);
    s("content_encoding", &p.content_encoding);
    s("correlation_id", &p.correlation_id);
    s("reply_to", &p.reply_to);
    s("expiration", &p.expiration);
    s("message_id", &p.message_id);
    s("type", &p.kind);
    s("user_id", &p.user_id);
    s("app_id", &p.app_id);
    s("cluster_id", &p.cluster_id);
    if let Some(d) = p.delivery_mode {
        m.insert("delivery_mode".into(), json!(d));
    }
    if let Some(pr) = p.priority {
        m.insert("priority".into(), json!(pr));
    }
    if let Some(t) = p.timestamp {
        m.insert("timestamp".into(), json!(t));
    }
    if let Some(h) = &p.headers {
        m.insert("headers".into(), arguments(h));
    }
    Value::Object(m)
}

/// Properties a publish request gives (RabbitMQ's names).
fn properties_from(v: Option<&Value>) -> Result<BasicProperties, ApiError> {
    let Some(Value::Object(m)) = v else {
        return Ok(BasicProperties::default());
    };
    let text = |k: &str| -> Result<Option<ShortStr>, ApiError> {
        match m.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str().into())),
            Some(other) => Ok(Some(other.to_string().as_str().into())),
        }
    };
    let small = |k: &str| -> Result<Option<u8>, ApiError> {
        Ok(field_u64(m, k)?.map(|n| n.min(255) as u8))
    };
    Ok(BasicProperties {
        content_type: text("content_type")?,
        content_encoding: text("content_encoding")?,
        headers: match m.get("headers") {
            Some(Value::Object(h)) => Some(json_to_table(h).map_err(ApiError::BadRequest)?),
            _ => None,
        },
        delivery_mode: small("delivery_mode")?,
        priority: small("priority")?,
        correlation_id: text("correlation_id")?,
        reply_to: text("reply_to")?,
        expiration: text("expiration")?,
        message_id: text("message_id")?,
        timestamp: field_u64(m, "timestamp")?,
        kind: text("type")?,
        user_id: text("user_id")?,
        app_id: text("app_id")?,
        cluster_id: None,
    })
}

// ---- exchanges ----

/// The default exchange's name in paths.
pub fn exchange_name(path_name: &str) -> &str {
    if path_name == "amq.default" {
        ""
    } else {
        path_name
    }
}

fn exchange_json(shard: &Shard, stats: &Sampler, vhost: &str, x: &ExchangeMeta) -> Value {
    let mut v = json!({
        "name": x.name.to_string(),
        "vhost": vhost,
        "type": x.kind.as_str(),
        "durable": x.durable,
        "auto_delete": x.auto_delete,
        "internal": x.internal,
        "arguments": arguments(&x.arguments),
        "user_who_performed_action": "rmq-internal",
    });
    // As RabbitMQ: `policy` only where one applies.
    if let (Some(p), ..) = policy_names(shard, vhost, &x.name, PolicyTarget::Exchange) {
        v["policy"] = json!(p);
    }
    if let Some(s) = stats.exchange_message_stats(vhost, &x.name) {
        v["message_stats"] = s;
    }
    v
}

/// `GET /api/exchanges[/{vhost}]`.
pub async fn list_exchanges(
    shard: &Rc<Shard>,
    stats: &Sampler,
    caller: &Caller,
    req: &ApiRequest,
    vhost: Option<&str>,
) -> ApiResult {
    let mut items = Vec::new();
    for v in vhosts_for(shard, caller, vhost)? {
        let mut metas: Vec<ExchangeMeta> = shard.with_topology(|t| {
            t.vhost(&v)
                .map(|vh| vh.exchanges.values().cloned().collect())
                .unwrap_or_default()
        });
        metas.sort_by(|a, b| a.name.cmp(&b.name));
        for x in &metas {
            items.push(exchange_json(shard, stats, &v, x));
            super::breathe(items.len()).await;
        }
    }
    // Built in RabbitMQ's order (vhost, then name): no sort needed.
    lists::reply(req, items, &[])
}

/// `GET /api/exchanges/{vhost}/{name}`.
pub fn get_exchange(
    shard: &Shard,
    stats: &Sampler,
    caller: &Caller,
    vhost: &str,
    name: &str,
) -> ApiResult {
    require_vhost(shard, caller, vhost)?;
    shard
        .with_topology(|t| {
            t.exchange(vhost, exchange_name(name))
                .map(|x| exchange_json(shard, stats, vhost, x))
        })
        .map(ApiResponse::ok)
        .ok_or(ApiError::NotFound)
}

/// `PUT /api/exchanges/{vhost}/{name}`.
pub async fn put_exchange(
    shard: &Rc<Shard>,
    caller: &Caller,
    req: &ApiRequest,
    vhost: &str,
    name: &str,
) -> ApiResult {
    require_vhost_for_put(shard, caller, vhost)?;
    let body = req.json()?;
    let name = exchange_name(name);
    if name.is_empty() {
        return Err(ApiError::Forbidden(refused::ACCESS_REFUSED));
    }
    permit(shard, caller, vhost, PermissionKind::Configure, name)?;
    require_keys(&body, &["type"])?;
    let kind_name = field_str(&body, "type")?.unwrap_or("");
    let kind = ops::exchange_kind(kind_name)
        .ok_or_else(|| ApiError::BadRequest(format!("invalid exchange type '{kind_name}'")))?;
    let existed = shard.exchange_exists(vhost, name);
    let meta = ExchangeMeta {
        name: name.into(),
        kind,
        durable: field_bool(&body, "durable", false)?,
        auto_delete: field_bool(&body, "auto_delete", false)?,
        internal: field_bool(&body, "internal", false)?,
        arguments: body_arguments(&body)?,
    };
    ops::declare_exchange(shard, vhost, meta)
        .await
        .map_err(amqp_error)?;
    Ok(ApiResponse::created(!existed))
}

/// `DELETE /api/exchanges/{vhost}/{name}` (`?if-unused=true`).
pub async fn delete_exchange(
    shard: &Rc<Shard>,
    caller: &Caller,
    req: &ApiRequest,
    vhost: &str,
    name: &str,
) -> ApiResult {
    require_vhost(shard, caller, vhost)?;
    let name = exchange_name(name);
    if !shard.exchange_exists(vhost, name) {
        return Err(ApiError::NotFound);
    }
    permit(shard, caller, vhost, PermissionKind::Configure, name)?;
    ops::delete_exchange(shard, vhost, name, req.query_flag("if-unused"))
        .await
        .map_err(amqp_error)?;
    Ok(ApiResponse::no_content())
}

/// `POST /api/exchanges/{vhost}/{name}/publish`.
pub fn publish(
    shard: &Rc<Shard>,
    caller: &Caller,
    req: &ApiRequest,
    vhost: &str,
    name: &str,
) -> ApiResult {
    require_vhost(shard, caller, vhost)?;
    let body = req.json()?;
    let name = exchange_name(name);
    permit(shard, caller, vhost, PermissionKind::Write, name)?;
    require_keys(
        &body,
        &["routing_key", "properties", "payload", "payload_encoding"],
    )?;
    let routing_key = field_str(&body, "routing_key")?.unwrap_or("");
    let payload = field_str(&body, "payload")?.unwrap_or("");
    let encoding = field_str(&body, "payload_encoding")?.unwrap_or("");
    let payload = match encoding {
        "string" => Bytes::copy_from_slice(payload.as_bytes()),
        "base64" => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(payload)
                .map_err(|_| ApiError::BadRequest("payload is not valid base64".into()))?,
        ),
        other => {
            return Err(ApiError::BadRequest(format!(
                "Unknown payload_encoding: {other}"
            )))
        }
    };
    let props = properties_from(body.get("properties"))?;
    let routed = ops::publish(shard, vhost, name, routing_key, &props, payload).map_err(coded)?;
    Ok(ApiResponse::ok(json!({ "routed": routed })))
}

// ---- bindings ----

/// RabbitMQ's name for a binding in paths: its key (`~` for an empty
/// one), and with arguments a digest of them after a `~`.
pub fn properties_key(routing_key: &str, args: &FieldTable) -> String {
    let key = routing_key.replace('~', "%7E");
    if args.is_empty() {
        if key.is_empty() {
            "~".into()
        } else {
            key
        }
    } else {
        use sha2::Digest;
        let canon = serde_json::to_vec(&table_to_json(args)).unwrap_or_default();
        let digest = sha2::Sha256::digest(&canon);
        let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..12]);
        format!("{key}~{tag}")
    }
}

fn binding_json(
    vhost: &str,
    source: &str,
    dest: &str,
    kind: &str,
    key: &str,
    args: &FieldTable,
) -> Value {
    json!({
        "source": source,
        "vhost": vhost,
        "destination": dest,
        "destination_type": kind,
        "routing_key": key,
        "arguments": arguments(args),
        "properties_key": properties_key(key, args),
    })
}

/// Every binding in `vhost`, the default exchange's implicit ones first.
/// Copied out of the replica in one step (cheap: shared strings), then
/// turned into JSON with turns for the reactor.
async fn bindings_in(shard: &Shard, vhost: &str) -> Vec<Value> {
    let (queues, explicit) = shard.with_topology(|t| {
        let Some(v) = t.vhost(vhost) else {
            return (Vec::new(), Vec::new());
        };
        let mut queues: Vec<ShortStr> = v.queues.keys().cloned().collect();
        queues.sort();
        let mut explicit: Vec<Binding> = v.routing.bindings().cloned().collect();
        explicit.sort_by(|a, b| {
            (&a.source, dest_name(&a.destination), &a.routing_key).cmp(&(
                &b.source,
                dest_name(&b.destination),
                &b.routing_key,
            ))
        });
        (queues, explicit)
    });
    let empty = FieldTable::default();
    let mut out = Vec::with_capacity(queues.len() + explicit.len());
    for q in &queues {
        out.push(binding_json(vhost, "", q, "queue", q, &empty));
        super::breathe(out.len()).await;
    }
    for b in &explicit {
        let (kind, dest) = dest_parts(&b.destination);
        out.push(binding_json(
            vhost,
            &b.source,
            dest,
            kind,
            &b.routing_key,
            &b.arguments,
        ));
        super::breathe(out.len()).await;
    }
    out
}

fn dest_name(d: &Destination) -> &str {
    dest_parts(d).1
}

fn dest_parts(d: &Destination) -> (&'static str, &str) {
    match d {
        Destination::Queue(q) => ("queue", q),
        Destination::Exchange(e) => ("exchange", e),
    }
}

/// Which bindings a list shows.
pub enum BindingFilter<'a> {
    All,
    /// Of a queue (as destination).
    Queue(&'a str),
    /// From an exchange.
    Source(&'a str),
    /// To an exchange.
    Destination(&'a str),
    /// Between two objects: source, destination kind (`q`/`e`), name.
    Between(&'a str, &'a str, &'a str),
}

/// `GET /api/bindings[/{vhost}]` and the per-object lists.
pub async fn list_bindings(
    shard: &Shard,
    caller: &Caller,
    req: &ApiRequest,
    vhost: Option<&str>,
    filter: BindingFilter<'_>,
) -> ApiResult {
    if let (Some(v), BindingFilter::Queue(q)) = (vhost, &filter) {
        require_vhost(shard, caller, v)?;
        if shard.with_topology(|t| t.queue(v, q).is_none()) {
            return Err(ApiError::NotFound);
        }
    }
    if let (Some(v), BindingFilter::Source(x) | BindingFilter::Destination(x)) = (vhost, &filter) {
        require_vhost(shard, caller, v)?;
        if !shard.exchange_exists(v, exchange_name(x)) {
            return Err(ApiError::NotFound);
        }
    }
    let mut items = Vec::new();
    for v in vhosts_for(shard, caller, vhost)? {
        items.extend(bindings_in(shard, &v).await.into_iter().filter(|b| {
            let s = |k: &str| b[k].as_str().unwrap_or("");
            match filter {
                BindingFilter::All => true,
                BindingFilter::Queue(q) => {
                    s("destination_type") == "queue" && s("destination") == q
                }
                BindingFilter::Source(x) => s("source") == exchange_name(x),
                BindingFilter::Destination(x) => {
                    s("destination_type") == "exchange" && s("destination") == exchange_name(x)
                }
                BindingFilter::Between(src, kind, dest) => {
                    s("source") == exchange_name(src)
                        && s("destination") == dest
                        && s("destination_type") == kind_name(kind)
                }
            }
        }));
    }
    lists::reply(req, items, &[])
}

fn kind_name(k: &str) -> &'static str {
    if k == "e" {
        "exchange"
    } else {
        "queue"
    }
}

fn destination(kind: &str, name: &str) -> Destination {
    if kind == "e" {
        Destination::Exchange(name.into())
    } else {
        Destination::Queue(name.into())
    }
}

/// Checks both ends of a binding exist and the caller may bind them.
fn binding_ends(
    shard: &Shard,
    caller: &Caller,
    vhost: &str,
    source: &str,
    kind: &str,
    dest: &str,
) -> Result<(), ApiError> {
    require_vhost(shard, caller, vhost)?;
    let dest_exists = if kind == "e" {
        shard.exchange_exists(vhost, dest)
    } else {
        shard.with_topology(|t| t.queue(vhost, dest).is_some())
    };
    if !shard.exchange_exists(vhost, source) {
        return Err(ApiError::NotFoundBecause(format!(
            "no exchange '{source}' in vhost '{vhost}'"
        )));
    }
    if !dest_exists {
        let what = if kind == "e" { "exchange" } else { "queue" };
        return Err(ApiError::NotFoundBecause(format!(
            "no {what} '{dest}' in vhost '{vhost}'"
        )));
    }
    permit(shard, caller, vhost, PermissionKind::Write, dest)?;
    permit(shard, caller, vhost, PermissionKind::Read, source)
}

/// `POST /api/bindings/{vhost}/e/{source}/{q|e}/{dest}`: 201 with the new
/// binding's address in `Location`.
pub async fn create_binding(
    shard: &Rc<Shard>,
    caller: &Caller,
    req: &ApiRequest,
    vhost: &str,
    (source, kind, dest): (&str, &str, &str),
) -> ApiResult {
    let source = exchange_name(source);
    if source.is_empty() {
        return Err(ApiError::Forbidden(refused::ACCESS_REFUSED));
    }
    binding_ends(shard, caller, vhost, source, kind, dest)?;
    let body = req.json()?;
    let key = field_str(&body, "routing_key")?.unwrap_or("").to_string();
    let args = body_arguments(&body)?;
    let pkey = properties_key(&key, &args);
    let binding = Binding {
        source: source.into(),
        destination: destination(kind, dest),
        routing_key: key.as_str().into(),
        arguments: args,
    };
    ops::bind(shard, vhost, binding).await.map_err(amqp_error)?;
    // RabbitMQ's Location is relative to the URL posted to.
    let mut r = ApiResponse::created(true);
    r.location = Some(format!("{dest}/{pkey}"));
    Ok(r)
}

/// `GET|DELETE /api/bindings/{vhost}/e/{source}/{q|e}/{dest}/{props}`.
pub async fn one_binding(
    shard: &Rc<Shard>,
    caller: &Caller,
    delete: bool,
    vhost: &str,
    (source, kind, dest, pkey): (&str, &str, &str, &str),
) -> ApiResult {
    let source = exchange_name(source);
    require_vhost(shard, caller, vhost)?;
    let found = bindings_in(shard, vhost).await.into_iter().find(|b| {
        b["source"] == source
            && b["destination"] == dest
            && b["destination_type"] == kind_name(kind)
            && b["properties_key"] == pkey
    });
    let Some(b) = found else {
        return Err(ApiError::NotFound);
    };
    if !delete {
        return Ok(ApiResponse::ok(b));
    }
    binding_ends(shard, caller, vhost, source, kind, dest)?;
    let args = match &b["arguments"] {
        Value::Object(m) => json_to_table(m).map_err(ApiError::BadRequest)?,
        _ => FieldTable::default(),
    };
    let binding = Binding {
        source: source.into(),
        destination: destination(kind, dest),
        routing_key: b["routing_key"].as_str().unwrap_or("").into(),
        arguments: args,
    };
    ops::unbind(shard, vhost, binding)
        .await
        .map_err(amqp_error)?;
    Ok(ApiResponse::no_content())
}

// ---- connections, channels, consumers ----

pub fn connection_json(ctx: &Context, stats: &Sampler, c: &ConnInfo) -> Value {
    let mut v = json!({
        "name": connection_name(c),
        "node": ctx.node,
        "type": "network",
        "user": c.user,
        "user_who_performed_action": c.user,
        "vhost": c.vhost,
        "state": c.state.as_str(),
        "channels": c.channels.len(),
        "peer_host": host(c.peer),
        "peer_port": port(c.peer),
        "host": host(c.local),
        "port": port(c.local),
        "protocol": "AMQP 0-9-1",
        "auth_mechanism": c.auth_mechanism,
        "ssl": c.ssl_protocol.is_some(),
        "timeout": c.heartbeat,
        "frame_max": c.frame_max,
        "channel_max": c.channel_max,
        "client_properties": arguments(&c.client_properties),
        "user_provided_name": c
            .client_properties
            .get("connection_name")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        "connected_at": c.connected_at_ms,
    });
    // Counts are the connection's own now; rates need two samples.
    let s = &c.stats;
    for (k, n) in [
        ("recv_oct", s.recv_oct),
        ("recv_cnt", s.recv_cnt),
        ("send_oct", s.send_oct),
        ("send_cnt", s.send_cnt),
    ] {
        v[k] = json!(n);
    }
    let sampled = stats.connection_stats(c.id);
    for k in ["recv_oct_details", "send_oct_details"] {
        v[k] = sampled
            .as_ref()
            .and_then(|s| s.get(k).cloned())
            .unwrap_or_else(|| json!({ "rate": 0.0 }));
    }
    v
}

/// The connections `caller` sees: all for monitors, else its own.
async fn visible_connections(shard: &Rc<Shard>, caller: &Caller) -> Vec<ConnInfo> {
    all_connections(shard)
        .await
        .into_iter()
        .filter(|c| !c.user.is_empty())
        .filter(|c| caller.monitoring() || c.user == caller.name)
        .collect()
}

/// `GET /api/connections` and `/api/vhosts/{vhost}/connections`.
pub async fn list_connections(
    shard: &Rc<Shard>,
    ctx: &Context,
    stats: &Sampler,
    caller: &Caller,
    req: &ApiRequest,
    vhost: Option<&str>,
) -> ApiResult {
    if let Some(v) = vhost {
        require_vhost(shard, caller, v)?;
    }
    let items = visible_connections(shard, caller)
        .await
        .iter()
        .filter(|c| vhost.is_none_or(|v| c.vhost == v))
        .map(|c| connection_json(ctx, stats, c))
        .collect();
    lists::reply(req, items, &[])
}

async fn find_connection(
    shard: &Rc<Shard>,
    caller: &Caller,
    name: &str,
) -> Result<ConnInfo, ApiError> {
    let c = all_connections(shard)
        .await
        .into_iter()
        .filter(|c| !c.user.is_empty())
        .find(|c| connection_name(c) == name)
        .ok_or(ApiError::NotFound)?;
    if caller.monitoring() || c.user == caller.name {
        Ok(c)
    } else {
        Err(ApiError::NotYours)
    }
}

/// `GET /api/connections/{name}`.
pub async fn get_connection(
    shard: &Rc<Shard>,
    ctx: &Context,
    stats: &Sampler,
    caller: &Caller,
    name: &str,
) -> ApiResult {
    let c = find_connection(shard, caller, name).await?;
    Ok(ApiResponse::ok(connection_json(ctx, stats, &c)))
}

/// `DELETE /api/connections/{name}` with `X-Reason`.
pub async fn close_connection(
    shard: &Rc<Shard>,
    caller: &Caller,
    req: &ApiRequest,
    name: &str,
) -> ApiResult {
    let c = find_connection(shard, caller, name).await?;
    let reason = req
        .reason
        .clone()
        .unwrap_or_else(|| "Closed via management plugin".into());
    ops::close_connection(shard, &c, &reason)
        .await
        .map_err(amqp_error)?;
    Ok(ApiResponse::no_content())
}

fn channel_json(ctx: &Context, c: &ConnInfo, ch: &crate::shard::ChannelInfo) -> Value {
    let mut v = json!({
        "name": format!("{} ({})", connection_name(c), ch.number),
        "number": ch.number,
        "node": ctx.node,
        "user": c.user,
        "user_who_performed_action": c.user,
        "vhost": c.vhost,
        "state": "running",
        "consumer_count": ch.consumers,
        "messages_unacknowledged": ch.unacked,
        "prefetch_count": ch.prefetch,
        "global_prefetch_count": ch.global_prefetch,
        "confirm": ch.confirm,
        "transactional": ch.transactional,
        "messages_unconfirmed": ch.unconfirmed,
        "connection_details": {
            "name": connection_name(c),
            "peer_host": host(c.peer),
            "peer_port": port(c.peer),
        },
    });
    // Outside a transaction nothing is uncommitted; inside one Warren does
    // not count yet, so the figures are left out rather than made up.
    if !ch.transactional {
        v["messages_uncommitted"] = json!(0);
        v["acks_uncommitted"] = json!(0);
    }
    v
}

/// Which channels a list shows.
pub enum ChannelFilter<'a> {
    All,
    Vhost(&'a str),
    Connection(&'a str),
    One(&'a str),
}

/// `GET /api/channels`, per vhost, per connection, and one.
pub async fn list_channels(
    shard: &Rc<Shard>,
    ctx: &Context,
    caller: &Caller,
    req: &ApiRequest,
    filter: ChannelFilter<'_>,
) -> ApiResult {
    if let ChannelFilter::Vhost(v) = filter {
        require_vhost(shard, caller, v)?;
    }
    let conns = visible_connections(shard, caller).await;
    if let ChannelFilter::Connection(name) = filter {
        if !conns.iter().any(|c| connection_name(c) == name) {
            return Err(ApiError::NotFound);
        }
    }
    let mut items = Vec::new();
    for c in &conns {
        for ch in &c.channels {
            let keep = match filter {
                ChannelFilter::All => true,
                ChannelFilter::Vhost(v) => c.vhost == v,
                ChannelFilter::Connection(n) => connection_name(c) == n,
                ChannelFilter::One(n) => format!("{} ({})", connection_name(c), ch.number) == n,
            };
            if keep {
                items.push(channel_json(ctx, c, ch));
            }
        }
    }
    if let ChannelFilter::One(name) = filter {
        let mut one = items.into_iter().next().ok_or(ApiError::NotFound)?;
        let mine: Vec<Value> = consumers(shard, ctx, caller, None)
            .await?
            .into_iter()
            .filter(|c| c["channel_details"]["name"] == name)
            .collect();
        one["consumer_details"] = Value::Array(mine);
        return Ok(ApiResponse::ok(one));
    }
    lists::reply(req, items, &[])
}

/// `GET /api/consumers[/{vhost}]`.
pub async fn list_consumers(
    shard: &Rc<Shard>,
    ctx: &Context,
    caller: &Caller,
    req: &ApiRequest,
    vhost: Option<&str>,
) -> ApiResult {
    let items = consumers(shard, ctx, caller, vhost).await?;
    lists::reply(req, items, &[])
}

async fn consumers(
    shard: &Rc<Shard>,
    ctx: &Context,
    caller: &Caller,
    vhost: Option<&str>,
) -> Result<Vec<Value>, ApiError> {
    let conns: HashMap<u64, ConnInfo> = all_connections(shard)
        .await
        .into_iter()
        .map(|c| (c.id.0, c))
        .collect();
    let mut items = Vec::new();
    for v in vhosts_for(shard, caller, vhost)? {
        for (m, info) in queues_of(shard, &v).await? {
            for c in info.map(|i| i.consumers).unwrap_or_default() {
                let conn = conns.get(&c.channel.conn.0);
                let conn_name = conn.map(connection_name).unwrap_or_default();
                items.push(json!({
                    "consumer_tag": c.tag.to_string(),
                    "queue": { "name": m.name.to_string(), "vhost": v },
                    "channel_details": {
                        "name": format!("{conn_name} ({})", c.channel.channel),
                        "number": c.channel.channel,
                        "connection_name": conn_name,
                        "peer_host": conn.map(|c| host(c.peer)).unwrap_or_default(),
                        "peer_port": conn.map(|c| port(c.peer)).unwrap_or_default(),
                        "user": conn.map(|c| c.user.clone()).unwrap_or_default(),
                        "node": ctx.node,
                    },
                    "ack_required": c.ack_required,
                    "exclusive": c.exclusive,
                    "prefetch_count": c.prefetch,
                    "arguments": arguments(&c.arguments),
                    "active": c.activity.is_active(),
                    "activity_status": c.activity.as_str(),
                }));
            }
        }
    }
    Ok(items)
}
