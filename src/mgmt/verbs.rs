//! The rabbitmqctl verbs, run against the broker: reads come from shard
//! 0's replica and from every shard's own figures (typed calls; the
//! listings are in `listings.rs`), changes go through the leader. Each
//! answers with data; `ctl` lays it out.
use serde_json::{json, Value};
use std::rc::Rc;

use super::control::Context;
use super::listings::{
    all_connections, columns, connection_name, find_queue, list_bindings, list_channels,
    list_connections, list_consumers, list_exchanges, list_queues, pid, table, table_owned,
};
use super::proto::{exit, items, Reply, Request};
use crate::access::{PasswordHash, PermissionSpec};
use crate::ids::ShardId;
use crate::shard::{Admin, AdminOp, SetAppRunning, Shard};
use crate::topology::admin::AdminError;
use crate::topology::policy::{self, PolicyKind, PolicySpec};

/// Runs one request.
pub async fn run(shard: &Rc<Shard>, ctx: &Context, req: Request) -> Reply {
    match run_verb(shard, ctx, &req).await {
        Ok(r) => r,
        Err(r) => r,
    }
}

pub(super) type VerbResult = Result<Reply, Reply>;

pub(super) fn usage(msg: impl Into<String>) -> Reply {
    Reply::Error {
        code: exit::USAGE,
        message: msg.into(),
    }
}

pub(super) fn software(msg: impl Into<String>) -> Reply {
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
        AdminError::AppRunning => err(exit::USAGE, APP_MUST_BE_STOPPED),
        AdminError::Failed(m) => err(exit::SOFTWARE, m),
        AdminError::PolicyInvalid(m) => err(exit::UNAVAILABLE, m),
        AdminError::NoSuchPolicy(_) => err(exit::UNAVAILABLE, "Parameter does not exist"),
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

pub(super) fn vhost_of(req: &Request) -> String {
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
        "list_policies" | "list_operator_policies" => {
            arity(req, 0)?;
            let vhost = vhost_of(req);
            let kind = if verb == "list_policies" {
                PolicyKind::User
            } else {
                PolicyKind::Operator
            };
            let rows = shard.with_topology(|t| {
                t.vhost(&vhost).map(|v| {
                    policy::sorted(v.policies_of(kind).values())
                        .into_iter()
                        .map(|p| {
                            vec![
                                json!(vhost),
                                json!(p.name),
                                json!(p.pattern),
                                json!(p.apply_to.as_str()),
                                json!(p.definition_text()),
                                json!(p.priority),
                            ]
                        })
                        .collect()
                })
            });
            match rows {
                Some(rows) => Ok(table(
                    &[
                        "vhost",
                        "name",
                        "pattern",
                        "apply-to",
                        "definition",
                        "priority",
                    ],
                    rows,
                )),
                None => Err(err(exit::DATAERR, no_such_vhost(&vhost))),
            }
        }
        "set_policy" | "set_operator_policy" => {
            arity(req, 3)?;
            let definition: Value = serde_json::from_str(&a[2])
                .map_err(|_| err(exit::UNAVAILABLE, "JSON decoding error. Reason: badarg"))?;
            let kind = if verb == "set_policy" {
                PolicyKind::User
            } else {
                PolicyKind::Operator
            };
            let op = AdminOp::SetPolicy {
                vhost: vhost_of(req),
                kind,
                name: a[0].clone(),
                spec: PolicySpec {
                    pattern: json!(a[1]),
                    definition,
                    priority: Some(req.options.get("priority").cloned().unwrap_or(json!(0))),
                    apply_to: Some(req.options.get("apply_to").cloned().unwrap_or(json!("all"))),
                },
            };
            admin(shard, verb, op).await
        }
        "clear_policy" | "clear_operator_policy" => {
            arity(req, 1)?;
            let kind = if verb == "clear_policy" {
                PolicyKind::User
            } else {
                PolicyKind::Operator
            };
            let op = AdminOp::ClearPolicy {
                vhost: vhost_of(req),
                kind,
                name: a[0].clone(),
            };
            match admin(shard, verb, op).await {
                // As RabbitMQ: a vhost that does not exist has no such policy.
                Err(Reply::Error { code, .. }) if code == exit::DATAERR => {
                    Err(err(exit::UNAVAILABLE, "Parameter does not exist"))
                }
                other => other,
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
            find_queue(shard, &vhost, &a[0]).ok_or_else(|| err(exit::UNAVAILABLE, "not_found"))?;
            match super::ops::purge_queue(shard, &vhost, &a[0]).await {
                Ok(n) => Ok(Reply::Document(json!({ "messages": n }))),
                Err(e) => Err(software(e.text)),
            }
        }
        "delete_queue" => {
            arity(req, 1)?;
            let vhost = vhost_of(req);
            find_queue(shard, &vhost, &a[0]).ok_or_else(|| err(exit::USAGE, "Queue not found"))?;
            // rabbitmqctl may delete any queue, exclusive ones too.
            let deleted = super::ops::delete_queue(
                shard,
                &vhost,
                &a[0],
                flag(req, "if_unused"),
                flag(req, "if_empty"),
                super::ops::Exclusive::Override,
            );
            match deleted.await {
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
            let _ = super::ops::close_connection(shard, c, &a[1]).await;
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
                if super::ops::close_connection(shard, &c, &a[0]).await.is_ok() {
                    closed += 1;
                }
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
        "reload_certificates" => super::certs::reload(shard, &ctx.certs, ctx.shards)
            .await
            .map(|_| Reply::Done)
            .map_err(|e| err(exit::DATAERR, e)),
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
    if alarms.memory() {
        v.push("memory".to_string());
    }
    if alarms.disk() {
        v.push("disk".to_string());
    }
    v
}

async fn status(shard: &Rc<Shard>, ctx: &Context) -> Value {
    let (fd_used, fd_total) = super::status::file_descriptors();
    let conns = all_connections(shard).await;
    let (queues, vhosts) = shard.with_topology(|t| {
        (
            t.vhosts.values().map(|v| v.queues.len()).sum::<usize>(),
            t.vhosts.len(),
        )
    });
    // The shape of `rabbitmqctl status --formatter json`, with Warren's
    // own `node` and `shards`.
    let setting = match crate::alarm::memory_watermark() {
        crate::config::MemoryWatermark::Relative(r) => json!({ "relative": r }),
        crate::config::MemoryWatermark::Absolute(b) => json!({ "absolute": b }),
    };
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
        "vm_memory_high_watermark_limit": super::status::memory_limit(),
        "vm_memory_high_watermark_setting": setting,
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
