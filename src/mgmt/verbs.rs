//! The rabbitmqctl verbs, run against the broker: reads come from shard
//! 0's replica and from every shard's own figures (typed calls), changes go
//! through the leader. Each answers with data; `ctl` lays it out.
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::rc::Rc;

use super::control::Context;
use super::proto::{exit, items, Reply, Request};
use crate::access::{PasswordHash, PermissionSpec};
use crate::codec::{FieldTable, FieldValue};
use crate::ids::{ChannelRef, ShardId};
use crate::routing::Destination;
use crate::shard::{
    Admin, AdminOp, CloseConnections, CloseWhich, ConnInfo, ListConnections, ListQueues, QueueInfo,
    SetAppRunning, Shard,
};
use crate::topology::admin::AdminError;

/// Runs one request.
pub async fn run(shard: &Rc<Shard>, ctx: &Context, req: Request) -> Reply {
    match run_verb(shard, ctx, &req).await {
        Ok(r) => r,
        Err(r) => r,
    }
}

type VerbResult = Result<Reply, Reply>;

fn usage(msg: impl Into<String>) -> Reply {
    Reply::Error {
        code: exit::USAGE,
        message: msg.into(),
    }
}

fn software(msg: impl Into<String>) -> Reply {
    Reply::Error {
        code: exit::SOFTWARE,
        message: msg.into(),
    }
}

fn err(code: i32, message: impl Into<String>) -> Reply {
    Reply::Error {
        code,
        message: message.into(),
    }
}

/// rabbitmqctl's failure texts and exit codes for the operator's changes.
/// They differ from verb to verb as RabbitMQ 3.10's do (quotes or none,
/// 65, 67 or 69): `verb` picks the form.
fn admin_error(verb: &str, e: AdminError) -> Reply {
    let bare = matches!(verb, "set_permissions" | "clear_permissions");
    match e {
        AdminError::UserExists(u) => err(exit::SOFTWARE, format!("User \"{u}\" already exists")),
        AdminError::NoSuchUser(u) if bare => err(exit::NOUSER, format!("User {u} does not exist")),
        AdminError::NoSuchUser(u) => err(exit::NOUSER, format!("User \"{u}\" does not exist")),
        AdminError::VhostExists(v) => {
            err(exit::SOFTWARE, format!("Virtual host '{v}' already exists"))
        }
        AdminError::NoSuchVhost(v) if bare => err(
            exit::UNAVAILABLE,
            format!("Virtual host {v} does not exist"),
        ),
        AdminError::NoSuchVhost(v) => err(exit::DATAERR, no_such_vhost(&v)),
        AdminError::Invalid(m) if bare => {
            err(exit::UNAVAILABLE, format!("{{:invalid_regexp, {m}}}"))
        }
        AdminError::Invalid(m) => err(exit::DATAERR, m),
        AdminError::Failed(m) if m == crate::shard::APP_RUNNING => {
            err(exit::USAGE, APP_MUST_BE_STOPPED)
        }
        AdminError::Failed(m) => err(exit::SOFTWARE, m),
    }
}

/// The bare form rabbitmqctl prints for a missing vhost (`ctl` prints it
/// without `Error:`).
fn no_such_vhost(v: &str) -> String {
    format!("Virtual host '{v}' does not exist")
}

const APP_MUST_RUN: &str = "this command requires the 'rabbit' app to be running on the target node. Start it with 'rabbitmqctl start_app'.";
const APP_MUST_BE_STOPPED: &str = "this command requires the 'rabbit' app to be stopped on the target node. Stop it with 'rabbitmqctl stop_app'.";

/// Verbs that work while the app is stopped, as in RabbitMQ.
const WITHOUT_APP: [&str; 8] = [
    "stop",
    "stop_app",
    "start_app",
    "reset",
    "force_reset",
    "ping",
    "check_running",
    "await_startup",
];

fn arity(req: &Request, n: usize) -> Result<(), Reply> {
    match req.args.len().cmp(&n) {
        std::cmp::Ordering::Less => Err(usage("not enough arguments")),
        std::cmp::Ordering::Greater => Err(usage("too many arguments")),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

fn vhost_of(req: &Request) -> String {
    req.vhost.clone().unwrap_or_else(|| "/".into())
}

fn flag(req: &Request, name: &str) -> bool {
    req.options
        .get(name)
        .is_some_and(|v| v.as_bool().unwrap_or(false))
}

async fn admin(shard: &Rc<Shard>, verb: &str, op: AdminOp) -> VerbResult {
    match shard.leader(Admin(op)).await {
        Ok(Ok(())) => Ok(Reply::Done),
        // As RabbitMQ: adding a vhost that exists succeeds.
        Ok(Err(AdminError::VhostExists(_))) if verb == "add_vhost" => Ok(Reply::Done),
        Ok(Err(e)) => Err(admin_error(verb, e)),
        Err(e) => Err(software(e.text)),
    }
}

async fn run_verb(shard: &Rc<Shard>, ctx: &Context, req: &Request) -> VerbResult {
    let a = &req.args;
    let verb = req.verb.as_str();
    if !shard.app_running() && !WITHOUT_APP.contains(&verb) {
        return Err(err(exit::USAGE, APP_MUST_RUN));
    }
    match verb {
        "ping" | "await_startup" => Ok(Reply::Done),
        "check_running" => {
            if shard.app_running() {
                Ok(Reply::Done)
            } else {
                Err(Reply::Error {
                    code: exit::UNAVAILABLE,
                    message: format!("RabbitMQ on node {} is not running or has not fully booted yet (check with is_booting)", ctx.node),
                })
            }
        }
        "check_local_alarms" => {
            let alarms = alarm_names();
            if alarms.is_empty() {
                Ok(Reply::Done)
            } else {
                let lines: Vec<String> = alarms
                    .iter()
                    .map(|a| match a.as_str() {
                        "disk" => format!("Free disk space alarm on node {}", ctx.node),
                        _ => format!("Memory alarm on node {}", ctx.node),
                    })
                    .collect();
                Err(err(exit::UNAVAILABLE, lines.join("\n")))
            }
        }
        "check_port_connectivity" => {
            let listener = amqp_listener(ctx);
            let ip = match ctx.amqp.ip() {
                ip if ip.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
                ip => ip,
            };
            let ok = std::net::TcpStream::connect_timeout(
                &std::net::SocketAddr::new(ip, ctx.amqp.port()),
                std::time::Duration::from_secs(5),
            )
            .is_ok();
            if ok {
                Ok(Reply::Document(json!({ "listeners": [listener] })))
            } else {
                Err(err(
                    exit::UNAVAILABLE,
                    format!(
                        "Connection to ports of the following listeners on node {} failed: \nInterface: {}, port: {}, protocol: amqp, purpose: AMQP 0-9-1 and AMQP 1.0",
                        ctx.node,
                        listener["interface"].as_str().unwrap_or(""),
                        ctx.amqp.port()
                    ),
                ))
            }
        }
        "status" => Ok(Reply::Document(status(shard, ctx).await)),
        "list_users" => {
            let rows = shard.with_topology(|t| {
                t.access
                    .users()
                    .into_iter()
                    .map(|u| vec![json!(u.name), json!(u.tags)])
                    .collect()
            });
            Ok(table(&["user", "tags"], rows))
        }
        "list_vhosts" => {
            let cols = columns(a, items::VHOSTS_DEFAULT, &[])?;
            let cfg_default = shard.options().access.default_vhost.clone();
            let rows = shard.with_topology(|t| {
                t.vhost_names()
                    .into_iter()
                    .map(|v| {
                        cols.iter()
                            .map(|c| match c.as_str() {
                                "name" => json!(v.to_string()),
                                // RabbitMQ describes the vhost it creates at boot.
                                "description" if *v == *cfg_default => {
                                    json!("Default virtual host")
                                }
                                "description" => json!(""),
                                "tags" => json!([]),
                                "tracing" => json!(false),
                                "cluster_state" => json!(format!("[{{{}, running}}]", ctx.node)),
                                _ => json!("undefined"),
                            })
                            .collect()
                    })
                    .collect()
            });
            Ok(table_owned(cols, rows))
        }
        "list_permissions" => {
            arity(req, 0)?;
            let vhost = vhost_of(req);
            if !shard.vhost_exists(&vhost) {
                return Err(err(exit::DATAERR, no_such_vhost(&vhost)));
            }
            let rows = shard.with_topology(|t| {
                t.access
                    .all_permissions()
                    .into_iter()
                    .filter(|(_, v, _)| *v == vhost)
                    .map(|(u, _, p)| {
                        vec![
                            json!(u),
                            json!(p.spec.configure),
                            json!(p.spec.write),
                            json!(p.spec.read),
                        ]
                    })
                    .collect()
            });
            Ok(table(&["user", "configure", "write", "read"], rows))
        }
        "list_user_permissions" => {
            arity(req, 1)?;
            let user = &a[0];
            let rows = shard.with_topology(|t| {
                t.access.user(user)?;
                Some(
                    t.access
                        .all_permissions()
                        .into_iter()
                        .filter(|(u, _, _)| u == user)
                        .map(|(_, v, p)| {
                            vec![
                                json!(v),
                                json!(p.spec.configure),
                                json!(p.spec.write),
                                json!(p.spec.read),
                            ]
                        })
                        .collect(),
                )
            });
            match rows {
                Some(rows) => Ok(table(&["vhost", "configure", "write", "read"], rows)),
                None => Err(err(
                    exit::UNAVAILABLE,
                    format!("{{:no_such_user, \"{user}\"}}"),
                )),
            }
        }
        "list_queues" => list_queues(shard, ctx, req).await,
        "list_exchanges" => list_exchanges(shard, req),
        "list_bindings" => list_bindings(shard, req),
        "list_connections" => list_connections(shard, ctx, req).await,
        "list_channels" => list_channels(shard, ctx, req).await,
        "list_consumers" => list_consumers(shard, ctx, req).await,
        "add_user" => {
            arity(req, 2)?;
            let op = AdminOp::AddUser {
                name: a[0].clone(),
                hash: PasswordHash::new(&a[1]),
                tags: Vec::new(),
            };
            admin(shard, verb, op).await
        }
        "delete_user" => {
            arity(req, 1)?;
            admin(shard, verb, AdminOp::DeleteUser(a[0].clone())).await
        }
        "change_password" => {
            arity(req, 2)?;
            let op = AdminOp::ChangePassword {
                name: a[0].clone(),
                hash: PasswordHash::new(&a[1]),
            };
            admin(shard, verb, op).await
        }
        "clear_password" => {
            arity(req, 1)?;
            let op = AdminOp::ChangePassword {
                name: a[0].clone(),
                hash: PasswordHash::none(),
            };
            admin(shard, verb, op).await
        }
        "authenticate_user" => {
            arity(req, 2)?;
            let ok = shard.with_topology(|t| t.access.login(&a[0], &a[1], false, false).is_ok());
            if ok {
                Ok(Reply::Done)
            } else {
                Err(err(
                    exit::DATAERR,
                    format!(
                        "Error: failed to authenticate user \"{}\"\nuser '{}' - invalid credentials",
                        a[0], a[0]
                    ),
                ))
            }
        }
        "set_user_tags" => {
            if a.is_empty() {
                return Err(usage("not enough arguments"));
            }
            let op = AdminOp::SetTags {
                name: a[0].clone(),
                tags: a[1..].to_vec(),
            };
            admin(shard, verb, op).await
        }
        "add_vhost" => {
            arity(req, 1)?;
            admin(shard, verb, AdminOp::AddVhost(a[0].clone())).await
        }
        "delete_vhost" => {
            arity(req, 1)?;
            admin(shard, verb, AdminOp::DeleteVhost(a[0].clone())).await
        }
        "set_permissions" => {
            arity(req, 4)?;
            let op = AdminOp::SetPermissions {
                user: a[0].clone(),
                vhost: vhost_of(req),
                spec: PermissionSpec {
                    configure: a[1].clone(),
                    write: a[2].clone(),
                    read: a[3].clone(),
                },
            };
            admin(shard, verb, op).await
        }
        "clear_permissions" => {
            arity(req, 1)?;
            let op = AdminOp::ClearPermissions {
                user: a[0].clone(),
                vhost: vhost_of(req),
            };
            admin(shard, verb, op).await
        }
        "purge_queue" => {
            arity(req, 1)?;
            let vhost = vhost_of(req);
            let meta = find_queue(shard, &vhost, &a[0])
                .ok_or_else(|| err(exit::UNAVAILABLE, "not_found"))?;
            match shard
                .call(meta.owner_shard, crate::shard::PurgeQueue(meta.id))
                .await
            {
                Ok(n) => Ok(Reply::Document(json!({ "messages": n }))),
                Err(e) => Err(software(e.text)),
            }
        }
        "delete_queue" => {
            arity(req, 1)?;
            let vhost = vhost_of(req);
            let meta = find_queue(shard, &vhost, &a[0])
                .ok_or_else(|| err(exit::USAGE, "Queue not found"))?;
            let op = crate::shard::DeleteQueue {
                vhost: vhost.as_str().into(),
                name: meta.name.clone(),
                if_unused: flag(req, "if_unused"),
                if_empty: flag(req, "if_empty"),
                // The operator may delete any queue, exclusive ones too.
                conn: meta
                    .exclusive
                    .unwrap_or(shard.conn_ref(crate::ids::ConnId::OPERATOR)),
            };
            match shard.leader(op).await {
                Ok(n) => Ok(Reply::Document(json!({ "messages": n }))),
                Err(e) if e.text.ends_with("in use") => Err(err(exit::USAGE, "Queue is in use")),
                Err(e) if e.text.ends_with("not empty") => {
                    Err(err(exit::USAGE, "Queue is not empty"))
                }
                Err(e) if e.code == crate::codec::reply_code::NOT_FOUND => {
                    Err(err(exit::USAGE, "Queue not found"))
                }
                Err(e) => Err(software(e.text)),
            }
        }
        "close_connection" => {
            arity(req, 2)?;
            let conns = all_connections(shard).await;
            let Some(c) = conns
                .iter()
                .find(|c| connection_name(c) == a[0] || pid(ctx, c, None) == a[0])
            else {
                // As RabbitMQ: a connection that is gone already is no
                // error, but something that names none cannot be one.
                let named = a[0].contains(" -> ") || (a[0].starts_with('<') && a[0].ends_with('>'));
                if named {
                    return Ok(Reply::Done);
                }
                return Err(err(
                    exit::UNAVAILABLE,
                    format!("Error:\n{{:invalid_pid_syntax, \"{}\"}}", a[0]),
                ));
            };
            let op = CloseConnections {
                which: CloseWhich::One(c.id),
                code: crate::codec::reply_code::CONNECTION_FORCED,
                text: a[1].clone(),
            };
            let _ = shard.call(c.shard, op).await;
            Ok(Reply::Done)
        }
        "close_all_connections" => {
            arity(req, 1)?;
            let vhost = vhost_of(req);
            let limit = req
                .options
                .get("limit")
                .and_then(Value::as_u64)
                .filter(|&n| n > 0)
                .unwrap_or(u64::MAX);
            let delay = req
                .options
                .get("per_connection_delay")
                .and_then(Value::as_u64);
            let mut closed = 0u64;
            for c in all_connections(shard).await {
                if closed >= limit {
                    break;
                }
                if c.vhost != vhost && !flag(req, "global") {
                    continue;
                }
                if let (Some(ms), true) = (delay, closed > 0) {
                    crate::runtime::sleep(std::time::Duration::from_millis(ms)).await;
                }
                let op = CloseConnections {
                    which: CloseWhich::One(c.id),
                    code: crate::codec::reply_code::CONNECTION_FORCED,
                    text: a[0].clone(),
                };
                closed += shard.call(c.shard, op).await.unwrap_or(0) as u64;
            }
            Ok(Reply::Document(json!({ "closed": closed })))
        }
        "stop" => Ok(Reply::Done),
        "stop_app" | "start_app" => {
            let running = req.verb == "start_app";
            for s in 0..ctx.shards {
                if let Err(e) = shard
                    .call(ShardId::from_index(s), SetAppRunning(running))
                    .await
                {
                    return Err(software(e.text));
                }
            }
            Ok(Reply::Done)
        }
        "reset" | "force_reset" => admin(shard, verb, AdminOp::Reset).await,
        "export_definitions" => Ok(Reply::Document(super::definitions::export(shard))),
        "import_definitions" => {
            let Some(doc) = req.options.get("definitions") else {
                return Err(usage("no definitions given"));
            };
            super::definitions::import(shard, doc).await
        }
        other => Err(usage(format!("unknown command '{other}'"))),
    }
}

fn alarm_names() -> Vec<String> {
    let alarms = crate::alarm::local();
    let mut v = Vec::new();
    if alarms.disk() {
        v.push("disk".to_string());
    }
    v
}

async fn status(shard: &Rc<Shard>, ctx: &Context) -> Value {
    let total = super::status::total_memory();
    let (fd_used, fd_total) = super::status::file_descriptors();
    let conns = all_connections(shard).await;
    let (queues, vhosts, users) = shard.with_topology(|t| {
        (
            t.vhosts.values().map(|v| v.queues.len()).sum::<usize>(),
            t.vhosts.len(),
            t.access.users().len(),
        )
    });
    // The shape of `rabbitmqctl status --formatter json`, with Warren's
    // own `node` and `shards`.
    let limit = (total as f64 * super::status::MEMORY_HIGH_WATERMARK) as u64;
    let listeners: Vec<Value> = if shard.app_running() {
        let mut l = amqp_listener(ctx);
        l["node"] = json!(ctx.node);
        l["purpose"] = json!("AMQP 0-9-1 and AMQP 1.0");
        vec![l]
    } else {
        Vec::new()
    };
    json!({
        "node": ctx.node,
        "os": "Linux",
        "product_name": "Warren",
        "product_version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "uptime": ctx.started.elapsed().as_secs(),
        "shards": ctx.shards,
        "data_directory": ctx.data_dir.display().to_string(),
        "memory": {
            "total": { "rss": super::status::resident_memory() },
            "strategy": "rss",
        },
        "vm_memory_calculation_strategy": "rss",
        "vm_memory_high_watermark_limit": limit,
        "vm_memory_high_watermark_setting": { "relative": super::status::MEMORY_HIGH_WATERMARK },
        "alarms": alarm_names(),
        "listeners": listeners,
        "disk_free": super::status::disk_free(&ctx.data_dir),
        "disk_free_limit": ctx.disk_free_limit,
        "file_descriptors": { "total_used": fd_used, "total_limit": fd_total },
        "totals": {
            "virtual_host_count": vhosts,
            "connection_count": conns.len(),
            "queue_count": queues,
        },
        "users": users,
    })
}

/// The AMQP listener as `status` and `check_port_connectivity` show it
/// (IPv6 addresses bracketed).
fn amqp_listener(ctx: &Context) -> Value {
    let ip = ctx.amqp.ip();
    let interface = if ip.is_ipv6() {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    json!({ "interface": interface, "port": ctx.amqp.port(), "protocol": "amqp" })
}

fn table(cols: &[&str], rows: Vec<Vec<Value>>) -> Reply {
    Reply::Table {
        columns: cols.iter().map(|c| c.to_string()).collect(),
        rows,
    }
}

fn table_owned(columns: Vec<String>, rows: Vec<Vec<Value>>) -> Reply {
    Reply::Table { columns, rows }
}

/// The info items asked for, or the defaults. `ctl` checks them against
/// rabbitmqctl's lists; one Warren does not track yet is refused rather
/// than answered with a made-up figure.
fn columns(args: &[String], defaults: &[&str], untracked: &[&str]) -> Result<Vec<String>, Reply> {
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
const UNTRACKED_QUEUE_ITEMS: &[&str] = &[
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
const UNTRACKED_CONNECTION_ITEMS: &[&str] =
    &["recv_oct", "recv_cnt", "send_oct", "send_cnt", "send_pend"];
const UNTRACKED_CHANNEL_ITEMS: &[&str] = &[
    "messages_uncommitted",
    "acks_uncommitted",
    "messages_unconfirmed",
];

fn find_queue(shard: &Shard, vhost: &str, name: &str) -> Option<crate::topology::QueueMeta> {
    shard.with_topology(|t| t.queue(vhost, name).cloned())
}

async fn all_connections(shard: &Rc<Shard>) -> Vec<ConnInfo> {
    let mut out = Vec::new();
    for s in 0..shard.shard_count() {
        if let Ok(mut v) = shard.call(ShardId::from_index(s), ListConnections).await {
            out.append(&mut v);
        }
    }
    out.sort_by_key(|c| (c.connected_at_ms, c.id.0));
    out
}

fn host(a: Option<std::net::SocketAddr>) -> String {
    a.map(|a| a.ip().to_canonical().to_string())
        .unwrap_or_default()
}

fn port(a: Option<std::net::SocketAddr>) -> u16 {
    a.map_or(0, |a| a.port())
}

/// RabbitMQ's connection name: `peer:port -> local:port`.
fn connection_name(c: &ConnInfo) -> String {
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
fn pid(ctx: &Context, c: &ConnInfo, channel: Option<u16>) -> String {
    channel_pid(ctx, c.id.0, channel)
}

fn channel_pid(ctx: &Context, conn: u64, channel: Option<u16>) -> String {
    match channel {
        Some(n) => format!("<{}.{conn}.{n}>", ctx.node),
        None => format!("<{}.{conn}.0>", ctx.node),
    }
}

fn client_props(c: &ConnInfo) -> Value {
    table_triples(&c.client_properties)
}

/// An AMQP table as rabbitmqctl's JSON has it: `[key, type, value]`
/// triples in order (nested tables alike; arrays as `[type, value]`
/// pairs), so `ctl` prints exact types.
pub fn table_triples(t: &FieldTable) -> Value {
    Value::Array(
        t.iter()
            .map(|(k, v)| {
                let (ty, val) = typed(v);
                json!([k.to_string(), ty, val])
            })
            .collect(),
    )
}

fn typed(v: &FieldValue) -> (&'static str, Value) {
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

async fn list_connections(shard: &Rc<Shard>, ctx: &Context, req: &Request) -> VerbResult {
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
                    "ssl" => json!(false),
                    // No TLS yet: RabbitMQ shows these empty on a plain
                    // connection.
                    "ssl_protocol" | "ssl_key_exchange" | "ssl_cipher" | "ssl_hash"
                    | "peer_cert_subject" | "peer_cert_issuer" | "peer_cert_validity" => json!(""),
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
                    _ => json!(c.connected_at_ms),
                })
                .collect()
        })
        .collect();
    Ok(table_owned(cols, rows))
}

async fn list_channels(shard: &Rc<Shard>, ctx: &Context, req: &Request) -> VerbResult {
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
async fn queue_infos(
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

async fn list_queues(shard: &Rc<Shard>, ctx: &Context, req: &Request) -> VerbResult {
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
                    "policy" => json!(""),
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
                    "type" => json!("classic"),
                    // A classic queue on one node: no replicas, as RabbitMQ
                    // shows them.
                    _ => json!(""),
                })
                .collect()
        })
        .collect();
    Ok(table_owned(cols, rows))
}

fn consumer_channel(ctx: &Context, ch: ChannelRef) -> String {
    channel_pid(ctx, ch.conn.0, Some(ch.channel))
}

async fn list_consumers(shard: &Rc<Shard>, ctx: &Context, req: &Request) -> VerbResult {
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
                        "active" => json!(true),
                        "activity_status" => json!("up"),
                        _ => table_triples(&c.arguments),
                    })
                    .collect(),
            );
        }
    }
    Ok(table_owned(cols, rows))
}

fn list_exchanges(shard: &Rc<Shard>, req: &Request) -> VerbResult {
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
                        _ => json!(""),
                    })
                    .collect()
            })
            .collect()
    });
    Ok(table_owned(cols, rows))
}

fn list_bindings(shard: &Rc<Shard>, req: &Request) -> VerbResult {
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
